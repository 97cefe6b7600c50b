#!/usr/bin/env bash
# fuzz.sh - builds and runs one libFuzzer target of tests/fuzz (clang, ASan +
# UBSan), or merges what a run found back into the committed seed corpus.
#
#   scripts/fuzz.sh                      list the targets
#   scripts/fuzz.sh NAME SECONDS [ARGS]  fuzz tests/fuzz/fuzz-NAME.c for SECONDS
#                                        (extra ARGS go to libFuzzer)
#   scripts/fuzz.sh merge NAME           add to tests/fuzz/corpus/NAME the inputs of
#                                        the last run that reach new coverage
#   scripts/fuzz.sh repro NAME FILE      run the target once on FILE
#
# The run starts from a copy of tests/fuzz/corpus/NAME (so the repo is not
# touched), in $FUZZ_BUILD (default build-fuzz): corpus/NAME, crashes/NAME
# (crash-*, leak-*, oom-*, timeout-* inputs) and logs/NAME.log. It runs one
# process at a time (-fork=1) and keeps going after a crash, OOM or timeout
# so that a long run reports all it finds; FUZZ_FORK=0 stops at the first.
# FUZZ_NO_BUILD=1 runs the binary already built (no reconfigure/rebuild).
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${FUZZ_BUILD:-build-fuzz}
targets() { ls tests/fuzz/fuzz-*.c 2>/dev/null | sed 's|.*/fuzz-||; s|\.c$||'; }

if [ $# -eq 0 ]; then
  echo "usage: $0 NAME SECONDS [libFuzzer args] | merge NAME | repro NAME FILE"
  echo "targets: $(targets | tr '\n' ' ')"
  exit 2
fi

configure_and_build() {
  local name=$1
  [ -f "tests/fuzz/fuzz-$name.c" ] || { echo "fuzz.sh: no target '$name' (tests/fuzz/fuzz-$name.c); targets: $(targets | tr '\n' ' ')" >&2; exit 2; }
  if [ "${FUZZ_NO_BUILD:-0}" != 0 ] && [ -x "$build/fuzz/fuzz-$name" ]; then return; fi
  command -v clang >/dev/null || { echo "fuzz.sh: clang not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
  mkdir -p "$build"
  local extra=()
  if ! grep -q 'cmake/fuzz.cmake' CMakeLists.txt; then
    # CMakeLists.txt does not include cmake/fuzz.cmake (yet): run it after
    # the top-level file has defined every target.
    echo 'cmake_language(DEFER CALL include ${CMAKE_SOURCE_DIR}/cmake/fuzz.cmake)' \
      > "$build/oc-fuzz-shim.cmake"
    extra+=(-DCMAKE_PROJECT_INCLUDE="$root/$build/oc-fuzz-shim.cmake")
  fi
  # The fuzz targets need neither the test suite nor the LLVM backend.
  cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DOC_FUZZ=ON -DOC_TESTS=OFF -DOC_LLVM=OFF "${extra[@]}" >/dev/null
  cmake --build "$build" --target "fuzz-$name" -j "${FUZZ_JOBS:-2}" >/dev/null ||
    cmake --build "$build" --target "fuzz-$name" -j 1
}

# Per-target input size limit (bytes): room for a few CIFAR records or a
# small image; libFuzzer's default (4096) elsewhere.
max_len() {
  case $1 in
    cifar) echo 10000 ;;
    image) echo 20000 ;;
    *) echo 4096 ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1:print_stacktrace=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:symbolize=1}

if [ "$1" = merge ]; then
  name=${2:?usage: $0 merge NAME}
  configure_and_build "$name"
  seeds=tests/fuzz/corpus/$name
  work=$build/corpus/$name
  mkdir -p "$seeds" "$work"
  before=$(ls "$seeds" | wc -l)
  # libFuzzer adds to the first folder only the inputs of the others that
  # reach coverage it lacks (named by their SHA-1); the seeds stay.
  "$build/fuzz/fuzz-$name" -merge=1 -max_len="$(max_len "$name")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=512 "$seeds" "$work" 2>&1 | tail -2
  echo "fuzz.sh: $seeds: $before -> $(ls "$seeds" | wc -l) inputs ($(du -sh "$seeds" | cut -f1))"
  exit 0
fi

if [ "$1" = repro ]; then
  name=${2:?usage: $0 repro NAME FILE}
  file=${3:?usage: $0 repro NAME FILE}
  configure_and_build "$name"
  exec "$build/fuzz/fuzz-$name" "$file"
fi

name=$1
secs=${2:?usage: $0 NAME SECONDS}
shift 2
configure_and_build "$name"
work=$build/corpus/$name
crashes=$build/crashes/$name
mkdir -p "$work" "$crashes" "$build/logs"
[ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
# A single allocation above 512 MB is reported as an OOM: no input of a few
# KB has a reason to ask for that much.
args=(-max_total_time="$secs" -max_len="$(max_len "$name")" -timeout=10 -rss_limit_mb=2048
      -malloc_limit_mb=512
      -print_final_stats=1 -artifact_prefix="$crashes/")
[ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
if [ "${FUZZ_FORK:-1}" != 0 ]; then
  args+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
fi
log=$build/logs/$name.log
# The targets' scratch folders (one per process; a crashing process cannot
# remove its own): under one folder removed when the run ends.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/oc-fuzz-run.XXXXXX")
[ -w /dev/shm ] && { rmdir "$scratch"; scratch=$(mktemp -d /dev/shm/oc-fuzz-run.XXXXXX); }
trap 'rm -rf "$scratch"' EXIT
export OC_FUZZ_TMPDIR=$scratch
echo "fuzz.sh: fuzz-$name for ${secs}s, corpus $work, crashes $crashes, log $log"
# Output dirs: the working corpus, then the seeds (read only).
set +e
"$build/fuzz/fuzz-$name" "${args[@]}" "$@" "$work" >"$log" 2>&1
rc=$?
set -e
echo "fuzz.sh: exit $rc; last status line:"
grep -E '^#[0-9]+' "$log" | tail -1 || true
grep -E 'stat::|INFO: (exiting|fuzzed)' "$log" | tail -8 || true
n=$(find "$crashes" -type f | wc -l)
echo "fuzz.sh: corpus $(ls "$work" | wc -l) inputs; $n crash/leak/oom/timeout inputs in $crashes"
exit $rc
