#!/usr/bin/env bash
# Builds the native core and its C++ tests with sanitizers and runs them:
#
#   1. AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer: every
#      native test, once on the system allocator and once on tcmalloc (when
#      libtcmalloc_minimal.so.4 is installed);
#   2. ThreadSanitizer: the concurrency tests (test_threads, test_registry) on
#      the system allocator, and test_backend, whose threads allocate while
#      the backend switches, on tcmalloc.
#
# Each sanitizer gets its own build folder, because their instrumentation
# cannot be mixed. Every report stops the test (halt_on_error, and
# -fno-sanitize-recover=all for UBSan) and fails the script.
#
#   ASAN_BUILD_DIR  (default: build-asan in the repository)
#   TSAN_BUILD_DIR  (default: build-tsan in the repository)
#   JOBS            parallel build jobs (default: 2)
#   CXX             compiler (default: g++; clang++ works as well)
set -u -o pipefail

root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
asan_dir="${ASAN_BUILD_DIR:-$root/build-asan}"
tsan_dir="${TSAN_BUILD_DIR:-$root/build-tsan}"
jobs="${JOBS:-2}"
cxx="${CXX:-g++}"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "test-sanitizers: compiler $cxx not found" >&2
  exit 2
fi

# configure_and_build DIR FLAGS TARGET...
configure_and_build() {
  local dir="$1" flags="$2"
  shift 2
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g $flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DMQSA_BUILD_TESTS=ON >/dev/null || {
    echo "test-sanitizers: cmake configure of $dir failed" >&2
    return 2
  }
  local target
  for target in "$@"; do
    cmake --build "$dir" -j "$jobs" --target "$target" >/dev/null || {
      echo "test-sanitizers: build of $target failed; rerun 'cmake --build $dir --target $target' to see the errors" >&2
      return 2
    }
  done
}

all_tests=(test_allocator test_backend test_copy_out test_errors_tags test_live_table test_registry test_threads)
concurrency_tests=(test_registry test_threads)

# Frame pointers keep the reports' stacks complete at -O1.
asan_flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
tsan_flags="-fsanitize=thread -fno-omit-frame-pointer"

configure_and_build "$asan_dir" "$asan_flags" "${all_tests[@]}" || exit 2
configure_and_build "$tsan_dir" "$tsan_flags" "${concurrency_tests[@]}" test_backend || exit 2

# detect_leaks is on by default on Linux x86-64; set explicitly so a platform
# default cannot turn the leak check off unnoticed.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
# The one suppression covers an object gperftools leaks when it loads; the
# file says why it is not this package's.
export LSAN_OPTIONS="suppressions=$root/test/sanitizers/lsan.supp:print_suppressions=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

tcmalloc_present=0
# grep reads the whole list: with -q it would exit at the first match, and
# under pipefail the SIGPIPE that ldconfig then gets would make the check false.
if { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep 'libtcmalloc_minimal\.so\.4 ' >/dev/null; then
  tcmalloc_present=1
fi

log_dir="$root/build-asan/sanitizer-logs"
[[ -n "${ASAN_BUILD_DIR:-}" ]] && log_dir="$asan_dir/sanitizer-logs"
mkdir -p "$log_dir"
runs=0
failed=()

# run_test LABEL BACKEND EXECUTABLE
# A run fails on a non-zero exit or on any sanitizer line in its output, so a
# report from a code path that exits 0 anyway (for example a detached
# thread) still counts.
run_test() {
  local label="$1" backend="$2" test="$3"
  local name log
  name="$(basename -- "$test")"
  log="$log_dir/$label-$backend-$name.log"
  runs=$((runs + 1))
  if MQTT_ALLOCATOR_BACKEND="$backend" "$test" >"$log" 2>&1 &&
     ! grep -qE '^(==[0-9]+==ERROR|WARNING: ThreadSanitizer|SUMMARY: [A-Za-z]+Sanitizer)|runtime error:' "$log"; then
    echo "ok    $label $backend $name"
  else
    echo "FAIL  $label $backend $name (log: $log)"
    sed 's/^/      /' "$log"
    failed+=("$label/$backend/$name")
  fi
}

for name in "${all_tests[@]}"; do run_test asan+ubsan system "$asan_dir/$name"; done
if [[ $tcmalloc_present -eq 1 ]]; then
  # tcmalloc's blocks are invisible to ASan (it only sees its own malloc), so
  # this pass checks the core's logic and the backend's loading on tcmalloc,
  # not overruns inside tcmalloc blocks; the system pass and valgrind cover
  # those.
  for name in "${all_tests[@]}"; do run_test asan+ubsan tcmalloc "$asan_dir/$name"; done
else
  echo "note: libtcmalloc_minimal.so.4 not found, so the ASan tcmalloc pass was skipped"
fi

# tcmalloc is not instrumented, so TSan cannot see that a block freed on one
# thread and handed out again on another was synchronized inside tcmalloc,
# and would report writes to the reused block as a race that is not one.
# test_backend's threads never write to their blocks, so it runs on tcmalloc,
# which its switch test needs (the test is skipped on the system allocator).
for name in "${concurrency_tests[@]}"; do run_test tsan system "$tsan_dir/$name"; done
if [[ $tcmalloc_present -eq 1 ]]; then
  run_test tsan tcmalloc "$tsan_dir/test_backend"
else
  echo "note: libtcmalloc_minimal.so.4 not found, so the TSan tcmalloc pass was skipped"
fi

if [[ ${#failed[@]} -eq 0 ]]; then
  echo "sanitizers: all $runs runs passed"
  exit 0
fi
echo "sanitizers: ${#failed[@]} of $runs runs failed: ${failed[*]}"
exit 1
