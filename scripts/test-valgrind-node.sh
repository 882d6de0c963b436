#!/usr/bin/env bash
# Runs test/valgrind/workload.js, a small workload of the compiled package
# (dist/ and the addon in build/), under valgrind memcheck with the system
# allocator backend, so memcheck sees every block the addon hands out. Exits
# non-zero when memcheck reports an error or a definite or indirect leak, or
# when the workload's own accounting checks fail.
#
# Run `npm run build` first. test/valgrind/node.supp suppresses only noise of
# Node and V8 themselves; each entry says why.
#
#   VALGRIND_LOG  where memcheck's report goes (default: build/valgrind-node.log)
set -u -o pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
log="${VALGRIND_LOG:-$root/build/valgrind-node.log}"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "test-valgrind-node: valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
fi
if [[ ! -f "$root/dist/index.js" ]]; then
  echo "test-valgrind-node: $root/dist/index.js is missing; run 'npm run build' first" >&2
  exit 2
fi
mkdir -p "$(dirname -- "$log")"

# --expose-gc: the workload collects garbage to free dropped Buffers.
# --num-callers: enough frames to reach the addon below V8's builtins.
# The workload must end naturally (no process.exit()), so that the teardown
# of the main thread frees its remaining buffers and memcheck judges it.
MQTT_ALLOCATOR_BACKEND=system valgrind --tool=memcheck --leak-check=full \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
  --suppressions="$root/test/valgrind/node.supp" --num-callers=40 \
  --log-file="$log" \
  node --expose-gc "$root/test/valgrind/workload.js" "$root"
status=$?

# Memcheck's verdict and leak summary, to make the result readable in CI.
grep -E 'ERROR SUMMARY|definitely lost:|indirectly lost:|possibly lost:' "$log" | sed 's/^==[0-9]*== */  /'
if [[ $status -eq 0 ]]; then
  echo "valgrind-node: passed (report: $log)"
  exit 0
fi
echo "valgrind-node: failed with status $status; memcheck's report follows" >&2
cat "$log" >&2
exit 1
