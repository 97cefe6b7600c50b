#!/usr/bin/env bash
# check.sh - the GPU check of oodc's CUDA backend, in one go (< 8 minutes on
# one H100): build a CUDA-only oodc, run the GPU tests, benchmark against
# PyTorch eager, and write bench/RESULTS-gpu.md with the card's name.
#
#   bench/gpu/check.sh            (from anywhere; needs an NVIDIA GPU, the CUDA
#                                  toolkit, CMake, a C compiler, python3 with torch)
#
# 1. build: cmake with -DOC_LLVM=OFF (the CPU JIT is not needed here) and
#    -DOC_TESTS=ON only when Criterion is installed; cmake/cuda.cmake is
#    included from CMakeLists.txt, or injected with CMAKE_PROJECT_INCLUDE
#    when the tree does not include it yet.
# 2. tests: the GPU conformance suite (tests/runtime/test-cuda-conform.c) -
#    under Criterion when present, else build/oc-gpu-check (the same file
#    against bench/gpu/shim) - plus, with Criterion, the NVRTC, cache,
#    plan and emulation suites.
# 3. benchmarks (build/oc-gpu-bench and the PyTorch peers):
#    heads fused vs unfused vs eager; ODIN scoring on WRN-16-4 and WRN-28-10;
#    the WRN-28-10 training step (batch 128, 3x32x32, TF32) eager, with CUDA
#    graph capture and unfused; DRAM GB/s of the step's kernels vs a measured
#    device-to-device copy.
# Everything goes to $BUILD/check-gpu.log; each phase has a time limit and
# a failed phase is reported in the results, not fatal to the others.
# Knobs: OC_GPU_BUILD (build folder, default build-gpu), OC_CHECK_QUICK=1
# (fewer batches and steps), CC.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
BUILD=${OC_GPU_BUILD:-build-gpu}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
mkdir -p "$BUILD"
LOG=$BUILD/check-gpu.log
RES=$BUILD/results.jsonl
TESTS=$BUILD/tests.txt
: >"$LOG"
: >"$RES"
: >"$TESTS"
START=$(date +%s)
export OC_CACHE_DIR=${OC_CACHE_DIR:-$BUILD/kcache}
export PYTHONUNBUFFERED=1
STEPS=20
BATCHES=128,4096,65536
if [ "${OC_CHECK_QUICK:-0}" = 1 ]; then STEPS=5; BATCHES=128,4096; fi

say() { echo "== $* ($(($(date +%s) - START)) s)" | tee -a "$LOG" >&2; }
# run LIMIT_SECONDS WHAT CMD...: stdout JSON to results, everything to the log
run() {
    local limit=$1 what=$2
    shift 2
    say "$what"
    timeout "$limit" "$@" 2>>"$LOG" | tee -a "$LOG" >>"$RES"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
        echo "FAILED ($rc): $what" | tee -a "$LOG" >>"$TESTS"
    fi
    return 0
}

say "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true; nvcc --version 2>&1 | tail -2; } | tee -a "$LOG" >&2

# ---------------------------------------------------------------- build
say "configure"
CRIT=OFF
if [ -f /usr/include/criterion/criterion.h ] || [ -f /usr/local/include/criterion/criterion.h ]; then CRIT=ON; fi
EXTRA=()
grep -q "cmake/cuda.cmake" CMakeLists.txt || EXTRA+=("-DCMAKE_PROJECT_INCLUDE=$ROOT/cmake/cuda.cmake")
if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DOC_LLVM=OFF -DOC_TESTS=$CRIT "${EXTRA[@]}" >>"$LOG" 2>&1; then
    echo "configure failed: see $LOG" >&2
    tail -30 "$LOG" >&2
    exit 1
fi
say "build"
TARGETS=(oc-gpu-check oc-gpu-bench)
if [ $CRIT = ON ]; then
    TARGETS+=(test-runtime-cuda-conform test-runtime-cuda-emu test-runtime-cuda-device test-runtime-cuda-plan
        test-runtime-kcache test-codegen-cuda-golden test-runtime-cuda-compile)
fi
if ! cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}" >>"$LOG" 2>&1; then
    echo "build failed: see $LOG" >&2
    grep -E "error" "$LOG" | head -20 >&2
    exit 1
fi

# ---------------------------------------------------------------- tests
say "GPU tests"
if [ $CRIT = ON ]; then
    for t in test-runtime-cuda-conform test-runtime-cuda-device test-runtime-cuda-plan test-runtime-kcache \
        test-codegen-cuda-golden test-runtime-cuda-emu test-runtime-cuda-compile; do
        out=$(timeout 300 "$BUILD/tests/$t" --jobs 1 2>&1)
        rc=$?
        echo "$out" >>"$LOG"
        echo "$t: $(echo "$out" | grep -E "Synthesis" | tail -1 | sed 's/\[====\] //') (exit $rc)" | tee -a "$TESTS" >&2
    done
else
    out=$(timeout 300 "$BUILD/oc-gpu-check" 2>&1)
    rc=$?
    echo "$out" >>"$LOG"
    echo "oc-gpu-check (GPU conformance, no Criterion here): $(echo "$out" | grep Synthesis | tail -1 | sed 's/\[====\] //') (exit $rc)" | tee -a "$TESTS" >&2
    echo "$out" | grep -E "^\[FAIL\]|differ" | head -20 | tee -a "$TESTS" >&2
fi

# ---------------------------------------------------------------- benchmarks
B=$BUILD/oc-gpu-bench
say "device"
if ! timeout 60 "$B" info >>"$RES" 2>>"$LOG"; then
    echo "no usable GPU here ($(tail -1 "$LOG")): benchmarks skipped, bench/RESULTS-gpu.md left as it was" >&2
    exit 1
fi
run 60 "copy (oodc)" "$B" copy --mib 1024 --steps $STEPS
run 60 "copy (PyTorch)" python3 bench/gpu/torch_gpu.py copy --mib 1024 --steps $STEPS
run 150 "heads (oodc)" "$B" heads --batches $BATCHES --steps $STEPS
run 120 "heads (PyTorch eager)" python3 bench/peer/torch_heads.py --device cuda --batches $BATCHES --repeat $STEPS
for a in wrn-16-4 wrn-28-10; do
    run 120 "ODIN $a (oodc)" "$B" odin --arch $a --batch 128 --steps $STEPS
    run 90 "ODIN $a (PyTorch eager)" python3 bench/gpu/torch_gpu.py odin --arch $a --batch 128 --steps $STEPS
done
run 150 "train wrn-28-10 (oodc, TF32)" "$B" train --arch wrn-28-10 --batch 128 --tf32 1 --steps $STEPS
run 90 "train wrn-28-10 (oodc, TF32, CUDA graph)" "$B" train --arch wrn-28-10 --batch 128 --tf32 1 --graph 1 --steps $STEPS
run 120 "train wrn-28-10 (oodc, TF32, unfused)" "$B" train --arch wrn-28-10 --batch 128 --tf32 1 --fusion 0 --steps $STEPS
run 120 "train wrn-28-10 (PyTorch eager, TF32)" python3 bench/gpu/torch_gpu.py train --arch wrn-28-10 --batch 128 --tf32 1 --steps $STEPS

# ---------------------------------------------------------------- report
say "report"
if python3 bench/gpu/report.py "$RES" "$TESTS" >bench/RESULTS-gpu.md.tmp 2>>"$LOG"; then
    mv bench/RESULTS-gpu.md.tmp bench/RESULTS-gpu.md
    echo "wrote bench/RESULTS-gpu.md" >&2
else
    rm -f bench/RESULTS-gpu.md.tmp
    echo "report failed: see $LOG" >&2
fi
say "done"
grep -q FAILED "$TESTS" && exit 1
grep -qE "Failing: [1-9]|exit [1-9]" "$TESTS" && exit 1
exit 0
