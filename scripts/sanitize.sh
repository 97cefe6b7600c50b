#!/usr/bin/env bash
# sanitize.sh - builds the project and its Criterion suite with
# AddressSanitizer + UndefinedBehaviorSanitizer (-DOC_SANITIZE=ON) in its own
# build folder and runs it, leak checking on. Fails on any test failure, any
# ASan/UBSan report (they abort the process that hits them) and any leak.
#
#   scripts/sanitize.sh [ctest args...]     e.g. scripts/sanitize.sh -R ood
#
# Environment: SAN_BUILD (default build-asan), JOBS (default nproc),
# CMAKE_FLAGS (extra configure flags, e.g. -DOC_WERROR=ON as in CI).
#
# Why the leak scan: Criterion runs each test in a worker process and takes
# its verdict before the worker exits, so a leak LeakSanitizer reports at the
# worker's exit does not fail the test. ctest keeps every test's output in
# Testing/Temporary/LastTest.log; any LeakSanitizer report there fails the run
# and names the test executable.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SAN_BUILD:-build-asan}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# halt_on_error: the first report ends the process (Criterion shows a crash);
# detect_leaks: LeakSanitizer at exit; abort_on_error=0: exit code instead of
# SIGABRT, which Criterion reports with the test's name.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:print_stacktrace=1:strict_string_checks=1:detect_stack_use_after_return=0:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0}

# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOC_SANITIZE=ON ${CMAKE_FLAGS:-} >/dev/null
cmake --build "$build" -j "$jobs"

set +e
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
rc=$?
set -e

log=$build/Testing/Temporary/LastTest.log
if [ -f "$log" ] && grep -q 'ERROR: LeakSanitizer' "$log"; then
  echo "sanitize.sh: LeakSanitizer found leaks in:" >&2
  # LastTest.log blocks start with 'N/M Testing: NAME' and hold the output.
  awk '/^[0-9]+\/[0-9]+ Testing: /{t=$3} /ERROR: LeakSanitizer/{print "  " t}' "$log" | sort -u >&2
  grep -A12 'ERROR: LeakSanitizer' "$log" | grep -E 'leak of|#[0-9]+ ' | head -60 >&2
  [ $rc -eq 0 ] && rc=1
fi
if [ $rc -eq 0 ]; then
  echo "sanitize.sh: the ASan+UBSan suite is clean (leak checking on)"
fi
exit $rc
