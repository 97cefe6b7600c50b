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
# 4. compiled cuda scorers (oodc compile --target cuda): a WRN-10-2 trained
#    for one epoch on a synthetic Fashion-MNIST (written here with numpy);
#    Baseline compiled for batch 128 must give `oodc eval --device cuda`'s
#    scores on the test images (max |diff| <= 1e-3, same run); Baseline,
#    Baseline+T and ODIN (T 1000, eps 0.0014) batch-1 latency and
#    batch-128 throughput (medians of repeated oc_scorer_score calls), as
#    lines of the tests summary.
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
TARGETS=(oc-gpu-check oc-gpu-bench oodc)
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

# ---------------------------------------------------------------- compiled cuda scorers
aot_cuda() {
    local A=$BUILD/aot-cuda O=$BUILD/oodc
    rm -rf "$A"
    mkdir -p "$A/data"
    # a synthetic Fashion-MNIST (class k: a bright bar of k-dependent size), IDX files
    python3 - "$A/data" <<'PY' || return 1
import sys, numpy as np
d = sys.argv[1]
for prefix, n, seed in (("train", 4096, 1), ("t10k", 512, 2)):
    r = np.random.default_rng(seed)
    lab = r.integers(0, 10, n).astype(np.uint8)
    img = r.integers(0, 50, (n, 28, 28)).astype(np.int32)
    for i, k in enumerate(lab):
        hw, hh, cy = 2 + k, 1 + (k % 4) * 2, 14 + (3 if k >= 5 else -3)
        img[i, cy - hh:cy + hh + 1, 14 - hw:14 + hw] += 180
    img = np.minimum(img, 255).astype(np.uint8)
    open(f"{d}/{prefix}-images-idx3-ubyte", "wb").write(np.array([0x803, n, 28, 28], ">u4").tobytes() + img.tobytes())
    open(f"{d}/{prefix}-labels-idx1-ubyte", "wb").write(np.array([0x801, n], ">u4").tobytes() + lab.tobytes())
    if prefix == "t10k":
        (img.astype(np.float32) / np.float32(255)).tofile(f"{d}/test.f32")
PY
    timeout 300 "$O" train --model wrn-10-2 --data "fashion-mnist:$A/data" --epochs 1 --limit 3072 --device cuda \
        --out "$A/run" --quiet >>"$LOG" 2>&1 || return 1
    local CK=$A/run/checkpoint.safetensors
    timeout 300 "$O" eval --checkpoint "$CK" --method baseline --ood gaussian=gaussian --device cuda \
        --out "$A/eval" --quiet >>"$LOG" 2>&1 || return 1
    cat >"$A/run.c" <<'C'
/* scores FILE (n images) in calls of OC_SCORER_MAX_BATCH and prints the
 * scores; then times REPS full calls and prints the median on stderr */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "scorer.h"
#define ISZ (OC_SCORER_C * OC_SCORER_H * OC_SCORER_W)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    FILE *f = fopen(argv[1], "rb");
    int n = atoi(argv[2]), reps = atoi(argv[3]);
    float *x = malloc(sizeof(float) * ISZ * n), sc[OC_SCORER_MAX_BATCH];
    if (!f || !x || fread(x, sizeof(float) * ISZ, n, f) != (size_t)n) return 3;
    struct oc_scorer *s = oc_scorer_create();
    if (!s) { fprintf(stderr, "%s\n", oc_scorer_error(NULL)); return 4; }
    for (int off = 0; off < n; off += OC_SCORER_MAX_BATCH) {
        int m = n - off < OC_SCORER_MAX_BATCH ? n - off : OC_SCORER_MAX_BATCH;
        if (oc_scorer_score(s, x + (size_t)off * ISZ, m, sc, NULL)) { fprintf(stderr, "%s\n", oc_scorer_error(s)); return 5; }
        for (int i = 0; i < m; i++) printf("%.9g\n", sc[i]);
    }
    double *t = malloc(sizeof(double) * (reps > 0 ? reps : 1));
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (oc_scorer_score(s, x, OC_SCORER_MAX_BATCH <= n ? OC_SCORER_MAX_BATCH : n, sc, NULL)) return 5;
        t[r] = now() - t0;
    }
    qsort(t, reps, sizeof *t, cmp);
    if (reps > 0) fprintf(stderr, "median_ms %.4f\n", 1e3 * t[reps / 2]);
    oc_scorer_destroy(s);
    return 0;
}
C
    local sc b dir ms
    local -a args
    for sc in baseline baseline+t odin; do
        for b in 1 128; do
            dir=$A/$sc-b$b
            args=()
            [ $sc = baseline+t ] && args=(--T 1000)
            [ $sc = odin ] && args=(--T 1000 --eps 0.0014)
            if ! timeout 120 "$O" compile --checkpoint "$CK" --scorer $sc "${args[@]}" --target cuda --batch $b \
                --out "$dir" --quiet >>"$LOG" 2>&1; then
                echo "FAILED: oodc compile --target cuda --scorer $sc --batch $b" | tee -a "$TESTS" >&2
                continue
            fi
            if ! cc -O2 "$A/run.c" -I"$dir" -L"$dir" -lscorer -Wl,-rpath,"$dir" -o "$dir/run" >>"$LOG" 2>&1; then
                echo "FAILED: building against the $sc batch $b artifact" | tee -a "$TESTS" >&2
                continue
            fi
            if ! timeout 120 "$dir/run" "$A/data/test.f32" 512 $((b == 1 ? 200 : 50)) >"$dir/scores.txt" 2>"$dir/time.txt"; then
                echo "FAILED: the $sc batch $b artifact: $(tail -1 "$dir/time.txt")" | tee -a "$TESTS" >&2
                continue
            fi
            ms=$(awk '/median_ms/ {print $2}' "$dir/time.txt")
            echo "aot-cuda $sc batch $b: $ms ms per call ($(awk -v m="$ms" -v b=$b 'BEGIN {printf "%.0f", b * 1000 / m}') img/s)" | tee -a "$TESTS" >&2
        done
    done
    # the compiled Baseline against eval --device cuda, image by image
    python3 - "$A" <<'PY' 2>>"$LOG" | tee -a "$TESTS" >&2
import glob, sys, numpy as np
a = sys.argv[1]
found = glob.glob(f"{a}/eval/**/baseline/gaussian-in.npy", recursive=True)
if not found:
    sys.exit(print("FAILED: aot-cuda: no baseline/gaussian-in.npy from oodc eval"))
want, got = np.load(found[0]), np.loadtxt(f"{a}/baseline-b128/scores.txt")
if want.shape != got.shape:
    print(f"FAILED: aot-cuda baseline vs eval: {got.shape} scores, eval has {want.shape}")
else:
    d = float(np.max(np.abs(got - want)))
    print(f"aot-cuda baseline vs oodc eval --device cuda: max |diff| {d:.3g} over {len(got)} images" + (" (ok)" if d <= 1e-3 else " FAILED"))
PY
}
say "compiled cuda scorers"
aot_cuda || echo "FAILED: compiled cuda scorers (see $LOG)" | tee -a "$TESTS" >&2

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
