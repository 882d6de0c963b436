#!/usr/bin/env bash
# Builds the native core and its C++ tests without the addon, then runs every
# test under valgrind memcheck: once on the system allocator and once on
# tcmalloc. Exits non-zero when any run reports an error or a definite or
# indirect leak.
#
#   BUILD_DIR  build folder (default: build-valgrind in the repository)
#   JOBS       parallel build jobs (default: 2)
set -u -o pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$root/build-valgrind}"
jobs="${JOBS:-2}"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "test-valgrind: valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
fi

# -O1 keeps stack traces readable while still running the tests at a usable
# speed under valgrind.
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DMQSA_BUILD_TESTS=ON >/dev/null || {
  echo "test-valgrind: cmake configure failed" >&2
  exit 2
}
cmake --build "$build_dir" -j "$jobs" >/dev/null || {
  echo "test-valgrind: build failed; rerun 'cmake --build $build_dir' to see the errors" >&2
  exit 2
}

tests=()
for path in "$build_dir"/test_*; do
  if [[ -f "$path" && -x "$path" ]]; then tests+=("$path"); fi
done
if [[ ${#tests[@]} -eq 0 ]]; then
  echo "test-valgrind: no test executables found in $build_dir" >&2
  exit 2
fi

# --fair-sched=yes hands the lock valgrind runs threads under in turn, so the
# contention tests' spinning threads cannot starve the others.
memcheck=(valgrind --tool=memcheck --leak-check=full --fair-sched=yes
  --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --quiet)

# The tcmalloc pass needs the library the backend loads at run time.
tcmalloc_present=0
# grep reads the whole list: with -q it would exit at the first match, and
# under pipefail the SIGPIPE that ldconfig then gets would make the check false.
if { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep 'libtcmalloc_minimal\.so\.4 ' >/dev/null; then
  tcmalloc_present=1
fi

runs=0
failed=()
log_dir="$build_dir/valgrind-logs"
mkdir -p "$log_dir"

# run_pass BACKEND [extra valgrind options...]
run_pass() {
  local backend="$1"
  shift
  local test name log
  for test in "${tests[@]}"; do
    name="$(basename -- "$test")"
    log="$log_dir/$backend-$name.log"
    runs=$((runs + 1))
    if MQTT_ALLOCATOR_BACKEND="$backend" "${memcheck[@]}" "$@" "$test" >"$log" 2>&1; then
      echo "ok    $backend $name"
      # Checks skipped on this backend stay visible, with the test that
      # skipped them (the harness prints a test's name after its output).
      awk '/^  skipped: / { sub(/^  skipped: /, ""); reasons[n++] = $0; next }
           /^(ok|FAIL) / { for (i = 0; i < n; i++) print "      skipped in " $2 ": " reasons[i]; n = 0 }' "$log"
    else
      echo "FAIL  $backend $name (log: $log)"
      sed 's/^/      /' "$log"
      failed+=("$backend/$name")
    fi
  done
}

run_pass system

if [[ $tcmalloc_present -eq 1 ]]; then
  # --soname-synonyms makes memcheck replace the allocation functions of
  # libtcmalloc* with its own, so it checks every block the tcmalloc backend
  # hands out. tcmalloc's nallocx and statistics stay tcmalloc's, so the tests
  # skip the checks that need them to agree with the blocks.
  #
  # RUNNING_ON_VALGRIND=1 makes gperftools assume its malloc is replaced. Without
  # it, loading libtcmalloc_minimal.so.4 (gperftools 2.10) leaks one 8-byte
  # default MallocExtension object that MallocExtension::Register() drops, and
  # memcheck reports it as a definite leak in every test that loads tcmalloc.
  echo "note: tcmalloc pass runs with RUNNING_ON_VALGRIND=1; see the comment in $0"
  RUNNING_ON_VALGRIND=1 run_pass tcmalloc '--soname-synonyms=somalloc=*tcmalloc*'
else
  echo "note: libtcmalloc_minimal.so.4 not found, so the tcmalloc pass was skipped"
fi

if [[ ${#failed[@]} -eq 0 ]]; then
  echo "valgrind: all $runs runs passed"
  exit 0
fi
echo "valgrind: ${#failed[@]} of $runs runs failed: ${failed[*]}"
exit 1
