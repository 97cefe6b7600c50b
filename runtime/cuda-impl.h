/* cuda-impl.h - the CUDA runtime (runtime/cuda*.c): what the executor needs
 * to run a kernel program on an NVIDIA GPU, and what the tests reach into.
 *
 *   kernel program (passes/kir.h)
 *     -> CUDA C (codegen/cuda-emit.c), one translation unit per program
 *     -> kernel cache (runtime/kcache.c: memory, then disk) or NVRTC
 *        (cuda-nvrtc.c: CUBIN for the device's own sm_XY, else PTX)
 *     -> cuModuleLoadData, cuModuleGetFunction (cuda-driver.c)
 *     -> per step: cuLaunchKernel in plan order, cuBLAS for matmul and
 *        im2col convolution (cuda-blas.c), device copies for assigns,
 *        optionally captured once into a CUDA graph and replayed
 *        (cuda-exec.c).
 *
 * Nothing is linked against CUDA: libcuda.so.1, libnvrtc and libcublas are
 * dlopen'd when first needed, so an oodc built with the toolkit's headers
 * starts and runs on the CPU on a machine without an NVIDIA driver, and
 * asking for the GPU there is a clear error naming what is missing. Every
 * driver, NVRTC and cuBLAS call is checked; an error names the call and
 * the library's own error name and text.
 *
 * Without the toolkit at build time (OC_HAVE_CUDA unset) these functions
 * exist and fail with OC_ERR_UNSUPPORTED "built without CUDA".
 *
 * Knobs: OC_CUDA_DEVICE (ordinal), OC_CUDA_ARCH (force "sm_80" for a CUBIN
 * or "compute_80" for PTX), OC_TF32=0/1, OC_CUDA_GRAPH=1,
 * OC_DUMP_ON_ERROR=1 (write the source and log of a failed NVRTC compile),
 * OC_CACHE_DIR / OC_NO_CACHE=1 (runtime/kcache.h), OC_DEBUG=1 (kernels,
 * cache hits and misses, per-kernel CUDA-event timings).
 */
#ifndef OODC_CUDA_IMPL_H
#define OODC_CUDA_IMPL_H

#include "../codegen/cuda.h"
#include "../passes/kir.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* 1 when this build has the CUDA backend (toolkit headers at build time). */
int oc_cuda_built(void);

/* dlopen's the first of `names` that loads, trying each as given (the
 * loader's path), then under $CUDA_HOME, $CUDA_PATH and the toolkit found
 * at build time (lib64/, lib/). NULL when none loads; `why` then lists
 * what was tried and the loader's last message. */
void *oc_cuda_dlopen(const char *const *names, char *why, size_t n);

/* ---------------------------------------------------------------- NVRTC (cuda-nvrtc.c) */

struct oc_nvrtc;

enum oc_status oc_nvrtc_open(struct oc_nvrtc **out, struct oc_err *err);
void oc_nvrtc_close(struct oc_nvrtc *nv);
void oc_nvrtc_version(const struct oc_nvrtc *nv, int *major, int *minor);
/* 1 when NVRTC can produce a CUBIN for sm (e.g. 90 for sm_90). */
int oc_nvrtc_has_arch(const struct oc_nvrtc *nv, int sm);
/* The "--gpu-architecture" value for a device of compute capability sm:
 * "sm_<sm>" when NVRTC supports it (CUBIN), else "compute_<best>" for the
 * highest supported arch below it (PTX the driver JIT-compiles); empty
 * when NVRTC supports nothing that old. */
void oc_nvrtc_arch_for(const struct oc_nvrtc *nv, int sm, char *buf, size_t n);

struct oc_nvrtc_opts {
    const char *arch;   /* "sm_90" (CUBIN) or "compute_90" (PTX) */
    int resource_usage; /* ask ptxas for its report (registers, spills) in the log */
    int lineinfo;       /* -lineinfo, for profilers */
    int no_fmad;        /* -fmad=false (contraction is on by default) */
};

struct oc_nvrtc_out {
    char *image; /* CUBIN bytes, or PTX text (NUL-terminated) */
    size_t size;
    int cubin;
    char *log;   /* the compiler's log, NUL-terminated (maybe empty) */
};
void oc_nvrtc_out_free(struct oc_nvrtc_out *o);

/* The options a compile passes, one string (part of the cache key). */
void oc_nvrtc_options_str(const struct oc_nvrtc_opts *o, char *buf, size_t n);

/* Compiles src (`name` labels it in messages and dumps). A failure carries
 * NVRTC's error and log; with OC_DUMP_ON_ERROR=1 the source and the log are
 * written to $OC_DUMP_DIR (default $TMPDIR or /tmp) and the message names
 * the files. */
enum oc_status oc_nvrtc_compile(struct oc_nvrtc *nv, const char *src, const char *name,
                                const struct oc_nvrtc_opts *o, struct oc_nvrtc_out *out,
                                struct oc_err *err);

/* One function of ptxas's -v report. */
struct oc_ptxas_fn {
    char name[128];
    int regs, stack, spill_stores, spill_loads;
};
/* Parses a "--ptxas-options=-v" log; returns the number of functions
 * found (at most max are stored). */
int oc_ptxas_parse(const char *log, struct oc_ptxas_fn *fns, int max);

/* ---------------------------------------------------------------- the device (cuda-driver.c) */

typedef unsigned long long oc_devptr;

struct oc_cuda;

struct oc_cuda_opts {
    int device;       /* ordinal (default: $OC_CUDA_DEVICE or 0) */
    const char *arch; /* force an NVRTC arch (default: $OC_CUDA_ARCH, else the device's own) */
    int tf32;         /* cuBLAS fp32 GEMMs may use TF32 tensor cores (default: $OC_TF32 or 0) */
    int debug;        /* as OC_DEBUG (the larger applies) */
    int emulate;      /* run on the host emulation (default: $OC_CUDA_EMULATE or 0) */
};
struct oc_cuda_opts oc_cuda_opts_default(void);

/* OC_OK when a CUDA device can be used here; otherwise the reason, in
 * words a user can act on (no driver, no device, built without CUDA).
 * Creates no context. */
enum oc_status oc_cuda_probe(struct oc_err *err);

/* A device context: the driver, the device's primary context, one stream,
 * the caching allocator, the loaded modules (in-memory cache), NVRTC,
 * cuBLAS and the on-disk kernel cache. Not shared between threads. */
enum oc_status oc_cuda_new(struct oc_cuda **out, const struct oc_cuda_opts *o, struct oc_err *err);
void oc_cuda_free(struct oc_cuda *cu);

struct oc_cuda_info {
    char name[256];
    int sm;         /* compute capability, e.g. 90 */
    int sm_count;   /* multiprocessors */
    size_t memory;  /* bytes */
    int driver;     /* driver API version, e.g. 13000 */
    char arch[32];  /* what NVRTC compiles for */
    int nvrtc_major, nvrtc_minor;
};
void oc_cuda_get_info(const struct oc_cuda *cu, struct oc_cuda_info *out);
/* The host emulator of an emulated context (NULL for a real device). */
struct oc_emu *oc_cuda_emulator(struct oc_cuda *cu);
int oc_cuda_is_emulated(const struct oc_cuda *cu);
int oc_cuda_debug(const struct oc_cuda *cu);
int oc_cuda_tf32(const struct oc_cuda *cu);
/* Makes the context current on the calling thread (every executable entry
 * point does: a context can be used from another thread than its maker's). */
enum oc_status oc_cuda_bind(struct oc_cuda *cu, struct oc_err *err);
/* The context's CUstream (NULL when emulated). */
void *oc_cuda_stream(struct oc_cuda *cu);
/* Where the context keeps its cuBLAS handle (created on first use). */
struct oc_cublas **oc_cuda_blas_slot(struct oc_cuda *cu);

/* Device memory from the caching allocator: a block released goes back to
 * a per-size free list and is reused by the next request it fits (at most
 * twice its size); a failed cuMemAlloc frees the cached blocks and retries. */
enum oc_status oc_cuda_alloc(struct oc_cuda *cu, size_t bytes, oc_devptr *out, struct oc_err *err);
void oc_cuda_release(struct oc_cuda *cu, oc_devptr p);
struct oc_cuda_mem_stats {
    size_t in_use, cached, peak;
    long allocs, reuses, frees;
};
void oc_cuda_mem_stats(const struct oc_cuda *cu, struct oc_cuda_mem_stats *st);

/* Copies and fills on the context's stream; the *_sync variants wait. */
enum oc_status oc_cuda_htod(struct oc_cuda *cu, oc_devptr dst, const void *src, size_t n,
                            struct oc_err *err);
enum oc_status oc_cuda_dtoh(struct oc_cuda *cu, void *dst, oc_devptr src, size_t n,
                            struct oc_err *err); /* synchronous */
enum oc_status oc_cuda_dtod(struct oc_cuda *cu, oc_devptr dst, oc_devptr src, size_t n,
                            struct oc_err *err);
enum oc_status oc_cuda_memset8(struct oc_cuda *cu, oc_devptr dst, unsigned char v, size_t n,
                               struct oc_err *err);
enum oc_status oc_cuda_sync(struct oc_cuda *cu, struct oc_err *err);

/* A module from CUDA C: looked up by the key of (source, options, arch,
 * NVRTC version, oodc version) in the context's loaded modules, then the
 * kernel cache, else compiled by NVRTC and stored. `tag` names it in
 * messages. The module lives until oc_cuda_free. */
struct oc_cuda_module;
enum oc_status oc_cuda_module_get(struct oc_cuda *cu, const char *src, const char *tag,
                                  struct oc_cuda_module **out, struct oc_err *err);
enum oc_status oc_cuda_function(struct oc_cuda *cu, struct oc_cuda_module *m, const char *name,
                                void **fn, struct oc_err *err);
enum oc_status oc_cuda_launch(struct oc_cuda *cu, void *fn, unsigned grid, unsigned block,
                              void **args, const char *what, struct oc_err *err);
/* The device code of src for arch, from the kernel cache kc or compiled
 * by NVRTC and stored there (what oc_cuda_module_get does before loading;
 * needs no GPU). *image is malloc'd; *hit says where it came from. */
struct oc_kcache;
enum oc_status oc_cuda_compile_cached(struct oc_nvrtc *nv, struct oc_kcache *kc, const char *src,
                                      const char *tag, const char *arch, int debug, void **image,
                                      size_t *size, int *hit, struct oc_err *err);
/* Modules compiled by NVRTC / found in the kernel cache / already loaded. */
void oc_cuda_module_stats(const struct oc_cuda *cu, int *compiled, int *cached, int *loaded);

/* CUDA events on the stream, for timing. */
struct oc_cuda_timer;
enum oc_status oc_cuda_timer_new(struct oc_cuda *cu, struct oc_cuda_timer **out, struct oc_err *err);
void oc_cuda_timer_free(struct oc_cuda *cu, struct oc_cuda_timer *t);
enum oc_status oc_cuda_timer_start(struct oc_cuda *cu, struct oc_cuda_timer *t, struct oc_err *err);
enum oc_status oc_cuda_timer_stop(struct oc_cuda *cu, struct oc_cuda_timer *t, struct oc_err *err);
/* Milliseconds between start and stop (waits for stop). */
enum oc_status oc_cuda_timer_ms(struct oc_cuda *cu, struct oc_cuda_timer *t, double *ms,
                                struct oc_err *err);

/* Stream capture into a CUDA graph, then replay. */
enum oc_status oc_cuda_capture_begin(struct oc_cuda *cu, struct oc_err *err);
enum oc_status oc_cuda_capture_end(struct oc_cuda *cu, void **graph_exec, struct oc_err *err);
enum oc_status oc_cuda_graph_launch(struct oc_cuda *cu, void *graph_exec, struct oc_err *err);
void oc_cuda_graph_free(struct oc_cuda *cu, void *graph_exec);

/* ---------------------------------------------------------------- library calls (cuda-blas.c) */

/* A library kernel (matmul, conv2d and its adjoints) as a short list of
 * steps over the kernel's buffers (0 the result, 1 and 2 the operands) and
 * two scratch buffers: cuBLAS GEMMs in cuBLAS's column-major terms, the
 * im2col / col2im / permute helper kernels and fills. The plan is pure
 * data, so tests run it on the host with reference GEMM and helpers
 * (oc_cuda_plan_run_host) and compare with the interpreter. */
enum oc_lstep_kind {
    OC_LS_GEMM,    /* C = alpha op(A) op(B) + beta C, strided-batched, column-major */
    OC_LS_IM2COL,  /* scratch col <- patches of images [n0, n0+nc) of buffer src */
    OC_LS_COL2IM,  /* dst images [n0, n0+nc) <- sums of col's entries over the taps */
    OC_LS_PERMUTE, /* dst[(o*nc + n)*P + p] = src[((n0+n)*O + o)*P + p] */
    OC_LS_ZERO,    /* dst[0 .. count) = 0 */
};

/* The convolution geometry the helpers share with the host reference. */
#include "cuda-lib.h"

struct oc_lstep {
    enum oc_lstep_kind kind;
    /* GEMM */
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc, batch;
    double alpha, beta;
    int a, b, c;          /* buffers: 0..2 kernel slots, 3 col scratch, 4 aux scratch */
    int64_t aoff, boff, coff; /* element offsets */
    /* helpers */
    int src, dst;
    struct oc_convp cp;   /* geometry, chunk and layout */
    int64_t count;        /* elements the helper writes */
};

struct oc_lplan {
    int nstep, cap;
    struct oc_lstep *step; /* malloc'd */
    int64_t scratch[2];    /* elements of the col and aux scratch buffers */
    int dtype;             /* OC_F32 or OC_F64 */
};

/* Plans library kernel k with at most `budget` bytes of scratch (0: the
 * default, 256 MiB); images are processed in chunks that fit. */
enum oc_status oc_cuda_plan_lib(const struct oc_kernel *k, size_t budget, struct oc_lplan *p,
                                struct oc_err *err);
void oc_cuda_plan_free(struct oc_lplan *p);
/* Runs a plan on host buffers (reference GEMM and helpers): the tests'
 * check of the plans without a GPU. bufs[0..2] the kernel's slots. */
enum oc_status oc_cuda_plan_run_host(const struct oc_lplan *p, void *const bufs[3],
                                     struct oc_err *err);

/* The CUDA C of the helper kernels (oc_im2col_f32, ...). */
const char *oc_cuda_lib_source(void);

struct oc_cublas;
enum oc_status oc_cublas_new(struct oc_cuda *cu, struct oc_cublas **out, struct oc_err *err);
void oc_cublas_free(struct oc_cublas *b);
/* Runs plan p on the device (bufs: slots 0..2, then the two scratch);
 * tf32 lets cuBLAS use TF32 tensor cores for f32 GEMMs. */
enum oc_status oc_cuda_plan_run(struct oc_cuda *cu, const struct oc_lplan *p,
                                const oc_devptr bufs[5], int tf32, struct oc_err *err);

/* ---------------------------------------------------------------- host emulation (cuda-emu.c) */

/* The generated CUDA C compiled as host C++ ($OC_EMU_CXX, else the C++
 * compiler found at build time) and run with one fiber per GPU thread:
 * the tests' way to run the CUDA backend without a GPU. oc_cuda_new with
 * opts.emulate (or OC_CUDA_EMULATE=1) gives a device context on it. */
struct oc_emu;
enum oc_status oc_emu_new(struct oc_emu **out, struct oc_err *err);
void oc_emu_free(struct oc_emu *e);
/* Compiles src now, so later modules made of its kernels need no compile. */
enum oc_status oc_emu_preload(struct oc_emu *e, const char *src, struct oc_err *err);
enum oc_status oc_emu_load(struct oc_emu *e, const char *src, void **module, struct oc_err *err);
enum oc_status oc_emu_function(struct oc_emu *e, void *module, const char *name, void **fn,
                               struct oc_err *err);
enum oc_status oc_emu_launch(struct oc_emu *e, void *fn, unsigned grid, unsigned block, void **args,
                             struct oc_err *err);
long oc_emu_launches(const struct oc_emu *e);

/* ---------------------------------------------------------------- executables (cuda-exec.c) */

struct oc_cuda_exec_opts {
    int fusion;      /* 1: fuse (OC_FUSION=0 forces 0) */
    int debug;       /* the larger of this and OC_DEBUG */
    int inplace;     /* the memory planner may write a result over a dying operand */
    int poison;      /* fill the arena with NaN bytes before every run */
    int graph;       /* capture a step into a CUDA graph at the second run, replay after */
    int tf32;        /* -1: the context's setting */
    int profile;     /* time every kernel with CUDA events (eager runs), quietly */
    struct oc_cuda *cu; /* shared device context, or NULL for a private one */
};
struct oc_cuda_exec_opts oc_cuda_exec_defaults(void);

/* The CUDA side of oc_compile(g, "cuda", ...): the same semantics as the
 * CPU executor (runtime/exec.c, runtime.h) - Philox draws, params and state
 * initialized at the first run when unbound, assigns at the end of the
 * step, outputs that read an assigned param snapshotted first. */
struct oc_cuda_exec;
enum oc_status oc_cuda_exec_new(const struct oc_graph *g, const struct oc_cuda_exec_opts *o,
                                struct oc_cuda_exec **out, struct oc_err *err);
enum oc_status oc_cuda_exec_set(struct oc_cuda_exec *ex, const char *name, const struct oc_buf *v,
                                struct oc_err *err);
enum oc_status oc_cuda_exec_run(struct oc_cuda_exec *ex, uint64_t seed, struct oc_err *err);
enum oc_status oc_cuda_exec_get(struct oc_cuda_exec *ex, const char *name, struct oc_buf *out,
                                struct oc_err *err);
void oc_cuda_exec_free(struct oc_cuda_exec *ex);
const struct oc_kprog *oc_cuda_exec_program(const struct oc_cuda_exec *ex);
/* Per-kernel timing (CUDA events; OC_DEBUG >= 1), slowest first. */
void oc_cuda_exec_profile(const struct oc_cuda_exec *ex, FILE *f);
/* What runtime.h's oc_exec_stats reports, for a CUDA executable. */
struct oc_exec_stats;
void oc_cuda_exec_fill_stats(const struct oc_cuda_exec *ex, struct oc_exec_stats *st);
/* Kernel i's measured time so far (profile or OC_DEBUG >= 1). */
void oc_cuda_exec_kernel_time(const struct oc_cuda_exec *ex, int i, double *seconds, long *calls);
/* Milliseconds of the last run as the stream saw it (events around the step). */
double oc_cuda_exec_last_ms(const struct oc_cuda_exec *ex);
struct oc_cuda *oc_cuda_exec_device(struct oc_cuda_exec *ex);

#endif
