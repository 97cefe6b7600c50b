/* aot-rt-cuda.c - the launcher linked into every `oodc compile --target
 * cuda` scorer: the API of scorer.h over the CUDA driver API and cuBLAS,
 * both loaded with dlopen at oc_scorer_create (never linked), so the
 * library needs only libc, libm, libdl and pthreads and loads anywhere.
 *
 *   oc_scorer_create: the driver (libcuda.so.1), device
 *     $OC_SCORER_CUDA_DEVICE (default 0) and its primary context, one
 *     stream, the embedded PTX modules (the driver JIT-compiles them for
 *     the device), the kernels' functions and grids, cuBLAS when a GEMM
 *     is planned, device memory (the weights blob uploaded once, the
 *     arena, IO buffers, own buffers and the two library scratch buffers)
 *   oc_scorer_score: images -> IO "x" on the device (rows past n zeroed),
 *     every program's kernels in plan order (cuLaunchKernel; library
 *     kernels as their steps: cublas[SD]gemmStridedBatched, helper
 *     kernels, fills), "score" and "pred" back to the host, one
 *     synchronization per call.
 * It is runtime/cuda-exec.c's run without the compiler: the programs,
 * buffer layout, grids (oc_cuda_grid) and library steps (cuda-blas.c's
 * plans) were decided by oodc and are tables in plan.c (aot-rt.h).
 *
 * oc_scorer_create returns NULL when no driver, device or cuBLAS can be
 * had, with the reason in oc_scorer_error(NULL). Knobs read by
 * oc_scorer_create: OC_SCORER_CUDA_DEVICE=N, OC_SCORER_TF32=1 (cuBLAS may
 * use TF32 tensor cores for f32 GEMMs; default off, as oodc eval), and
 * OC_SCORER_CUDA_DRIVER=path / OC_SCORER_CUBLAS=path (another driver or
 * cuBLAS library: unusual installs, and the test hook that runs the
 * launcher on oodc's host emulation without a GPU).
 */
#define _POSIX_C_SOURCE 200809L

#include "aot-rt-api.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

/* The driver API's types and the few constants used (cuda.h, cublas_api.h). */
typedef unsigned long long ocrt_dptr;
enum {
    CU_OK = 0,
    CU_ERROR_NO_DEVICE = 100,
    CU_ATTR_MULTIPROCESSOR_COUNT = 16,
    CU_ATTR_CC_MAJOR = 75,
    CU_ATTR_CC_MINOR = 76,
    CU_STREAM_NON_BLOCKING = 1,
    CUBLAS_OK = 0,
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
};

struct drv {
    void *lib;
    int (*Init)(unsigned);
    int (*DeviceGetCount)(int *);
    int (*DeviceGet)(int *, int);
    int (*DeviceGetName)(char *, int, int);
    int (*DeviceGetAttribute)(int *, int, int);
    int (*DevicePrimaryCtxRetain)(void **, int);
    int (*DevicePrimaryCtxRelease)(int);
    int (*CtxSetCurrent)(void *);
    int (*StreamCreate)(void **, unsigned);
    int (*StreamDestroy)(void *);
    int (*StreamSynchronize)(void *);
    int (*MemAlloc)(ocrt_dptr *, size_t);
    int (*MemFree)(ocrt_dptr);
    int (*MemcpyHtoDAsync)(ocrt_dptr, const void *, size_t, void *);
    int (*MemcpyDtoHAsync)(void *, ocrt_dptr, size_t, void *);
    int (*MemsetD8Async)(ocrt_dptr, unsigned char, size_t, void *);
    int (*ModuleLoadData)(void **, const void *);
    int (*ModuleUnload)(void *);
    int (*ModuleGetFunction)(void **, void *, const char *);
    int (*LaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                        void *, void **, void **);
    int (*GetErrorName)(int, const char **);
    int (*GetErrorString)(int, const char **);
};

struct blas {
    void *lib;
    void *handle;
    int math; /* the mode last set, -1 unknown */
    int (*Create)(void **);
    int (*Destroy)(void *);
    int (*SetStream)(void *, void *);
    int (*SetMathMode)(void *, int);
    int (*Sgemm)(void *, int, int, int, int, int, const float *, const float *, int, long long,
                 const float *, int, long long, const float *, float *, int, long long, int);
    int (*Dgemm)(void *, int, int, int, int, int, const double *, const double *, int, long long,
                 const double *, int, long long, const double *, double *, int, long long, int);
    const char *(*StatusName)(int);
};

struct oc_scorer {
    struct ocrt_common c; /* plan, valid rows, error message (aot-rt-api.h) */
    const struct ocrt_cuda *cu;
    struct drv d;
    struct blas b;
    int dev, sm_count, tf32;
    void *ctx, *stream, *mod, *lib_mod;
    void *helper[6];  /* im2col, col2im, permute x f32, f64 */
    void **fn;        /* per kernel */
    unsigned *grid;   /* per kernel */
    ocrt_dptr blob, arena, scratch[2];
    ocrt_dptr *bufp;  /* per buffer */
    ocrt_dptr *own;   /* per buffer: its own allocation, or 0 */
    ocrt_dptr *iop;   /* per IO buffer */
    ocrt_dptr *argv;  /* per kernel: its slots' pointers, OCRT_MAX_SLOTS apart */
    void **args;      /* pointers to those (cuLaunchKernel's kernelParams) */
    int maxslot;
    void *host_score; /* the batch's scores and classes, copied back */
    int32_t *host_pred;
};

static const char *const helper_names[6] = {"oc_im2col_f32", "oc_col2im_f32", "oc_permute_f32",
                                            "oc_im2col_f64", "oc_col2im_f64", "oc_permute_f64"};

/* "cuMemAlloc(1024 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
static void cu_text(const struct drv *d, int r, char *buf, size_t n)
{
    const char *name = NULL, *text = NULL;
    if (d->GetErrorName && d->GetErrorName(r, &name) != CU_OK) name = NULL;
    if (d->GetErrorString && d->GetErrorString(r, &text) != CU_OK) text = NULL;
    if (name) snprintf(buf, n, "%s%s%s%s", name, text ? " (" : "", text ? text : "", text ? ")" : "");
    else snprintf(buf, n, "CUresult %d", r);
}

static int cu_fail(struct oc_scorer *s, int r, const char *what)
{
    char t[256];
    cu_text(&s->d, r, t, sizeof t);
    return ocrt_fail(&s->c, OC_SCORER_EDEVICE, "oc_scorer: %s: %s", what, t);
}

/* dlopen's the first of names that loads; the loader's message for the
 * first one tried (the one wanted most) in why. */
static void *open_first(const char *const *names, char *why, size_t n)
{
    for (int i = 0; names[i]; i++) {
        if (!*names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        const char *m = dlerror();
        if (!why[0]) snprintf(why, n, "%s", m ? m : names[i]);
    }
    return NULL;
}

static int load_syms(void *lib, const char *const *names, void **slots, int n, const char **missing)
{
    for (int i = 0; i < n; i++) {
        /* "a|b": the versioned name, then the plain one */
        char nm[64];
        snprintf(nm, sizeof nm, "%s", names[i]);
        char *alt = strchr(nm, '|');
        if (alt) *alt++ = 0;
        slots[i] = dlsym(lib, nm);
        if (!slots[i] && alt) slots[i] = dlsym(lib, alt);
        if (!slots[i] && missing) {
            *missing = names[i];
            return -1;
        }
    }
    return 0;
}

static int drv_open(struct oc_scorer *s)
{
    const char *own = getenv("OC_SCORER_CUDA_DRIVER");
    const char *const names[] = {own && *own ? own : "", "libcuda.so.1", "libcuda.so", NULL};
    char why[400] = "";
    s->d.lib = open_first(names, why, sizeof why);
    if (!s->d.lib) {
        ocrt_create_failed("oc_scorer_create: no NVIDIA driver on this machine (%s)",
                           why);
        return -1;
    }
    static const char *const syms[] = {
        "cuInit", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName", "cuDeviceGetAttribute",
        "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2|cuDevicePrimaryCtxRelease",
        "cuCtxSetCurrent", "cuStreamCreate", "cuStreamDestroy_v2", "cuStreamSynchronize",
        "cuMemAlloc_v2", "cuMemFree_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
        "cuMemsetD8Async", "cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction",
        "cuLaunchKernel", "cuGetErrorName", "cuGetErrorString",
    };
    void *slots[sizeof syms / sizeof *syms];
    const char *missing = NULL;
    if (load_syms(s->d.lib, syms, slots, (int)(sizeof syms / sizeof *syms), &missing)) {
        ocrt_create_failed("oc_scorer_create: the NVIDIA driver is too old: it has no %s", missing);
        return -1;
    }
    int i = 0;
#define TAKE(f) memcpy(&s->d.f, &slots[i++], sizeof(void *))
    TAKE(Init), TAKE(DeviceGetCount), TAKE(DeviceGet), TAKE(DeviceGetName), TAKE(DeviceGetAttribute);
    TAKE(DevicePrimaryCtxRetain), TAKE(DevicePrimaryCtxRelease), TAKE(CtxSetCurrent);
    TAKE(StreamCreate), TAKE(StreamDestroy), TAKE(StreamSynchronize), TAKE(MemAlloc), TAKE(MemFree);
    TAKE(MemcpyHtoDAsync), TAKE(MemcpyDtoHAsync), TAKE(MemsetD8Async), TAKE(ModuleLoadData);
    TAKE(ModuleUnload), TAKE(ModuleGetFunction), TAKE(LaunchKernel), TAKE(GetErrorName), TAKE(GetErrorString);
#undef TAKE
    return 0;
}

static int blas_open(struct oc_scorer *s)
{
    const char *own = getenv("OC_SCORER_CUBLAS");
    const char *const names[] = {own && *own ? own : "", "libcublas.so.13", "libcublas.so.12",
                                 "libcublas.so.11", "libcublas.so", NULL};
    char why[400] = "";
    s->b.lib = open_first(names, why, sizeof why);
    if (!s->b.lib) {
        ocrt_create_failed("oc_scorer_create: cuBLAS cannot be loaded (libcublas.so.13 or .12: %s)",
                           why);
        return -1;
    }
    static const char *const syms[] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2",
                                       "cublasSetMathMode", "cublasSgemmStridedBatched",
                                       "cublasDgemmStridedBatched"};
    void *slots[6];
    const char *missing = NULL;
    if (load_syms(s->b.lib, syms, slots, 6, &missing)) {
        ocrt_create_failed("oc_scorer_create: the loaded cuBLAS has no %s", missing);
        return -1;
    }
    memcpy(&s->b.Create, &slots[0], sizeof(void *));
    memcpy(&s->b.Destroy, &slots[1], sizeof(void *));
    memcpy(&s->b.SetStream, &slots[2], sizeof(void *));
    memcpy(&s->b.SetMathMode, &slots[3], sizeof(void *));
    memcpy(&s->b.Sgemm, &slots[4], sizeof(void *));
    memcpy(&s->b.Dgemm, &slots[5], sizeof(void *));
    void *nm = dlsym(s->b.lib, "cublasGetStatusName");
    memcpy(&s->b.StatusName, &nm, sizeof nm);
    s->b.math = -1;
    int r = s->b.Create(&s->b.handle);
    if (r != CUBLAS_OK) {
        s->b.handle = NULL;
        ocrt_create_failed("oc_scorer_create: cublasCreate failed: %s (status %d)",
                           s->b.StatusName ? s->b.StatusName(r) : "cuBLAS error", r);
        return -1;
    }
    if ((r = s->b.SetStream(s->b.handle, s->stream)) != CUBLAS_OK) {
        ocrt_create_failed("oc_scorer_create: cublasSetStream failed (status %d)", r);
        return -1;
    }
    return 0;
}

OCRT_API void oc_scorer_destroy(struct oc_scorer *s)
{
    if (!s) return;
    const struct ocrt_plan *pl = s->c.plan;
    if (s->ctx) {
        s->d.CtxSetCurrent(s->ctx);
        if (s->stream) s->d.StreamSynchronize(s->stream);
        if (s->b.handle) s->b.Destroy(s->b.handle);
        for (int b = 0; s->own && b < pl->nbuf; b++)
            if (s->own[b]) s->d.MemFree(s->own[b]);
        for (int i = 0; s->iop && i < pl->nio; i++)
            if (s->iop[i]) s->d.MemFree(s->iop[i]);
        ocrt_dptr all[4] = {s->blob, s->arena, s->scratch[0], s->scratch[1]};
        for (int i = 0; i < 4; i++)
            if (all[i]) s->d.MemFree(all[i]);
        if (s->mod) s->d.ModuleUnload(s->mod);
        if (s->lib_mod) s->d.ModuleUnload(s->lib_mod);
        if (s->stream) s->d.StreamDestroy(s->stream);
        s->d.DevicePrimaryCtxRelease(s->dev);
    }
    if (s->b.lib) dlclose(s->b.lib);
    if (s->d.lib) dlclose(s->d.lib);
    free(s->fn);
    free(s->grid);
    free(s->bufp);
    free(s->own);
    free(s->iop);
    free(s->argv);
    free(s->args);
    free(s->host_score);
    free(s->host_pred);
    free(s);
}

/* A create step that failed: the reason, then everything freed. */
static struct oc_scorer *create_fail(struct oc_scorer *s, int r, const char *what)
{
    if (r != CU_OK) {
        char t[256];
        cu_text(&s->d, r, t, sizeof t);
        ocrt_create_failed("oc_scorer_create: %s: %s", what, t);
    }
    oc_scorer_destroy(s);
    return NULL;
}

static int dalloc(struct oc_scorer *s, size_t n, ocrt_dptr *p)
{
    int r = s->d.MemAlloc(p, n ? n : 256);
    if (r == CU_OK) r = s->d.MemsetD8Async(*p, 0, n ? n : 256, s->stream);
    return r;
}

/* Device setup: driver, device, context, stream (create's first half). */
static struct oc_scorer *open_device(struct oc_scorer *s)
{
    const struct ocrt_cuda *cu = s->cu;
    if (drv_open(s)) return create_fail(s, CU_OK, NULL);
    int r = s->d.Init(0), count = 0;
    if (r == CU_ERROR_NO_DEVICE || (r == CU_OK && s->d.DeviceGetCount(&count) == CU_OK && count == 0)) {
        ocrt_create_failed("oc_scorer_create: the NVIDIA driver is installed but there is no CUDA device");
        return create_fail(s, CU_OK, NULL);
    }
    if (r != CU_OK) return create_fail(s, r, "cuInit(0)");
    const char *e = getenv("OC_SCORER_CUDA_DEVICE");
    s->dev = e && *e ? atoi(e) : 0;
    if (s->dev < 0 || s->dev >= count) {
        ocrt_create_failed("oc_scorer_create: OC_SCORER_CUDA_DEVICE=%d: there are %d device(s), 0..%d", s->dev,
                           count, count - 1);
        return create_fail(s, CU_OK, NULL);
    }
    int dev = 0, ma = 0, mi = 0;
    char name[256] = "";
    if ((r = s->d.DeviceGet(&dev, s->dev)) != CU_OK) return create_fail(s, r, "cuDeviceGet");
    s->dev = dev;
    if ((r = s->d.DeviceGetName(name, (int)sizeof name, dev)) != CU_OK ||
        (r = s->d.DeviceGetAttribute(&ma, CU_ATTR_CC_MAJOR, dev)) != CU_OK ||
        (r = s->d.DeviceGetAttribute(&mi, CU_ATTR_CC_MINOR, dev)) != CU_OK ||
        (r = s->d.DeviceGetAttribute(&s->sm_count, CU_ATTR_MULTIPROCESSOR_COUNT, dev)) != CU_OK)
        return create_fail(s, r, "cuDeviceGetAttribute");
    if (ma * 10 + mi < cu->min_sm) {
        ocrt_create_failed("oc_scorer_create: %s is sm_%d%d; this scorer's kernels (%s PTX) need sm_%d or newer "
                           "(compile it with oodc compile --arch sm_%d%d)",
                           name, ma, mi, cu->arch, cu->min_sm, ma, mi);
        return create_fail(s, CU_OK, NULL);
    }
    void *ctx = NULL;
    if ((r = s->d.DevicePrimaryCtxRetain(&ctx, dev)) != CU_OK) return create_fail(s, r, "cuDevicePrimaryCtxRetain");
    s->ctx = ctx;
    if ((r = s->d.CtxSetCurrent(ctx)) != CU_OK) return create_fail(s, r, "cuCtxSetCurrent");
    if ((r = s->d.StreamCreate(&s->stream, CU_STREAM_NON_BLOCKING)) != CU_OK)
        return create_fail(s, r, "cuStreamCreate");
    return s;
}

/* The grid of a loop kernel: oodc's oc_cuda_grid. */
static unsigned grid_of(const struct ocrt_cuda_kernel *k, int sm_count)
{
    if (k->units <= 0) return 0;
    int64_t upb = k->units_per_block > 0 ? k->units_per_block : 1;
    int64_t need = (k->units + upb - 1) / upb;
    int64_t wave = (int64_t)(sm_count > 0 ? sm_count : 1) * (2048 / OCRT_CUDA_BLOCK);
    if (need > wave) need = wave;
    return need < 1 ? 1u : (unsigned)need;
}

OCRT_API struct oc_scorer *oc_scorer_create(void)
{
    const struct ocrt_plan *pl = &ocrt_plan;
    const struct ocrt_cuda *cu = &ocrt_cuda;
    struct oc_scorer *s = calloc(1, sizeof *s);
    if (!s) {
        ocrt_create_failed("oc_scorer_create: out of memory");
        return NULL;
    }
    s->c.plan = pl;
    s->cu = cu;
    const char *t = getenv("OC_SCORER_TF32");
    s->tf32 = t && *t && strcmp(t, "0");
    if (!open_device(s)) return NULL;
    int r;
    if ((r = s->d.ModuleLoadData(&s->mod, cu->ptx)) != CU_OK)
        return create_fail(s, r, "cuModuleLoadData (the scorer's kernels)");
    if (cu->lib_ptx) {
        if ((r = s->d.ModuleLoadData(&s->lib_mod, cu->lib_ptx)) != CU_OK)
            return create_fail(s, r, "cuModuleLoadData (the convolution helpers)");
        for (int i = 0; i < 6; i++)
            if ((r = s->d.ModuleGetFunction(&s->helper[i], s->lib_mod, helper_names[i])) != CU_OK)
                return create_fail(s, r, helper_names[i]);
    }
    if (cu->gemm && blas_open(s)) return create_fail(s, CU_OK, NULL);
    /* per kernel: function, grid, argument block */
    int nk = cu->nkernel;
    for (int p = 0; p < pl->nprog; p++)
        for (int i = 0; i < pl->prog[p].nkernel; i++)
            if (pl->prog[p].kernel[i].nslot > s->maxslot) s->maxslot = pl->prog[p].kernel[i].nslot;
    if (s->maxslot < 3) s->maxslot = 3;
    s->fn = calloc((size_t)nk + 1, sizeof *s->fn);
    s->grid = calloc((size_t)nk + 1, sizeof *s->grid);
    s->argv = calloc((size_t)(nk + 1) * (size_t)s->maxslot, sizeof *s->argv);
    s->args = calloc((size_t)(nk + 1) * (size_t)s->maxslot, sizeof *s->args);
    s->bufp = calloc((size_t)pl->nbuf + 1, sizeof *s->bufp);
    s->own = calloc((size_t)pl->nbuf + 1, sizeof *s->own);
    s->iop = calloc((size_t)pl->nio + 1, sizeof *s->iop);
    s->host_score = calloc((size_t)pl->batch, pl->score_f64 ? sizeof(double) : sizeof(float));
    s->host_pred = calloc((size_t)pl->batch, sizeof(int32_t));
    if (!s->fn || !s->grid || !s->argv || !s->args || !s->bufp || !s->own || !s->iop || !s->host_score ||
        !s->host_pred) {
        ocrt_create_failed("oc_scorer_create: out of memory");
        return create_fail(s, CU_OK, NULL);
    }
    for (int k = 0; k < nk; k++) {
        const struct ocrt_cuda_kernel *ck = &cu->kernel[k];
        if (!ck->fn) continue;
        if ((r = s->d.ModuleGetFunction(&s->fn[k], s->mod, ck->fn)) != CU_OK) return create_fail(s, r, ck->fn);
        s->grid[k] = grid_of(ck, s->sm_count);
    }
    /* memory: the weights once, then the arena, IO, own and scratch buffers (zeroed) */
    if ((r = s->d.MemAlloc(&s->blob, pl->blob_bytes ? (size_t)pl->blob_bytes : 256)) != CU_OK ||
        (r = s->d.MemcpyHtoDAsync(s->blob, pl->blob, (size_t)pl->blob_bytes, s->stream)) != CU_OK)
        return create_fail(s, r, "uploading the weights");
    if ((r = dalloc(s, (size_t)pl->arena_bytes, &s->arena)) != CU_OK) return create_fail(s, r, "cuMemAlloc (arena)");
    for (int i = 0; i < 2; i++)
        if (cu->scratch_bytes[i] && (r = dalloc(s, (size_t)cu->scratch_bytes[i], &s->scratch[i])) != CU_OK)
            return create_fail(s, r, "cuMemAlloc (convolution scratch)");
    for (int i = 0; i < pl->nio; i++)
        if ((r = dalloc(s, (size_t)pl->io[i].bytes, &s->iop[i])) != CU_OK) return create_fail(s, r, "cuMemAlloc (IO)");
    for (int b = 0; b < pl->nbuf; b++) {
        const struct ocrt_buf *kb = &pl->buf[b];
        switch (kb->where) {
        case OCRT_ARENA: s->bufp[b] = s->arena + (ocrt_dptr)kb->offset; break;
        case OCRT_BLOB: s->bufp[b] = s->blob + (ocrt_dptr)kb->offset; break;
        case OCRT_IO: s->bufp[b] = s->iop[kb->io]; break;
        default:
            if ((r = dalloc(s, (size_t)kb->bytes, &s->own[b])) != CU_OK) return create_fail(s, r, "cuMemAlloc");
            s->bufp[b] = s->own[b];
            break;
        }
    }
    for (int p = 0, ki = 0; p < pl->nprog; p++)
        for (int i = 0; i < pl->prog[p].nkernel; i++, ki++) {
            const struct ocrt_kernel *k = &pl->prog[p].kernel[i];
            for (int q = 0; q < k->nslot; q++) {
                s->argv[ki * s->maxslot + q] = s->bufp[k->slot[q]];
                s->args[ki * s->maxslot + q] = &s->argv[ki * s->maxslot + q];
            }
        }
    if ((r = s->d.StreamSynchronize(s->stream)) != CU_OK) return create_fail(s, r, "cuStreamSynchronize");
    ocrt_create_err[0] = 0;
    return s;
}

/* One library step (cuda-blas.c's oc_cuda_plan_run); bufs: the kernel's
 * three slots, then the two scratch buffers. */
static int run_step(struct oc_scorer *s, const struct ocrt_step *st, const ocrt_dptr bufs[5])
{
    size_t es = st->f64 ? sizeof(double) : sizeof(float);
    int r;
    if (st->kind == OCRT_STEP_ZERO) {
        if (st->count <= 0) return 0;
        r = s->d.MemsetD8Async(bufs[st->dst], 0, (size_t)st->count * es, s->stream);
        return r == CU_OK ? 0 : cu_fail(s, r, "cuMemsetD8Async");
    }
    if (st->kind != OCRT_STEP_GEMM) {
        int which = st->kind == OCRT_STEP_IM2COL ? 0 : st->kind == OCRT_STEP_COL2IM ? 1 : 2;
        ocrt_dptr dst = bufs[st->dst], src = bufs[st->src];
        long long cp[18], n = st->count;
        for (int i = 0; i < 18; i++) cp[i] = st->cp[i];
        void *args[4] = {&dst, &src, cp, &n};
        int64_t blocks = (st->count + OCRT_CUDA_BLOCK - 1) / OCRT_CUDA_BLOCK;
        int64_t wave = (int64_t)(s->sm_count > 0 ? s->sm_count : 1) * (2048 / OCRT_CUDA_BLOCK);
        unsigned grid = (unsigned)(blocks < wave ? blocks : wave);
        if (!grid) return 0;
        r = s->d.LaunchKernel(s->helper[(st->f64 ? 3 : 0) + which], grid, 1, 1, OCRT_CUDA_BLOCK, 1, 1, 0,
                              s->stream, args, NULL);
        return r == CU_OK ? 0 : cu_fail(s, r, helper_names[(st->f64 ? 3 : 0) + which]);
    }
    int mode = !st->f64 && s->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (mode != s->b.math) {
        if ((r = s->b.SetMathMode(s->b.handle, mode)) != CUBLAS_OK)
            return ocrt_fail(&s->c, OC_SCORER_EDEVICE, "oc_scorer: cublasSetMathMode failed (status %d)", r);
        s->b.math = mode;
    }
    ocrt_dptr A = bufs[st->a] + (ocrt_dptr)((size_t)st->aoff * es);
    ocrt_dptr B = bufs[st->b] + (ocrt_dptr)((size_t)st->boff * es);
    ocrt_dptr C = bufs[st->c] + (ocrt_dptr)((size_t)st->coff * es);
    int ta = st->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = st->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!st->f64) {
        float alpha = (float)st->alpha, beta = (float)st->beta;
        r = s->b.Sgemm(s->b.handle, ta, tb, (int)st->m, (int)st->n, (int)st->k, &alpha,
                       (const float *)(uintptr_t)A, (int)st->lda, st->sa, (const float *)(uintptr_t)B,
                       (int)st->ldb, st->sb, &beta, (float *)(uintptr_t)C, (int)st->ldc, st->sc, (int)st->batch);
    } else {
        double alpha = st->alpha, beta = st->beta;
        r = s->b.Dgemm(s->b.handle, ta, tb, (int)st->m, (int)st->n, (int)st->k, &alpha,
                       (const double *)(uintptr_t)A, (int)st->lda, st->sa, (const double *)(uintptr_t)B,
                       (int)st->ldb, st->sb, &beta, (double *)(uintptr_t)C, (int)st->ldc, st->sc, (int)st->batch);
    }
    if (r == CUBLAS_OK) return 0;
    return ocrt_fail(&s->c, OC_SCORER_EDEVICE, "oc_scorer: cublas%cgemmStridedBatched(m %lld, n %lld, k %lld, batch %lld) failed: %s (status %d)",
                     st->f64 ? 'D' : 'S', (long long)st->m, (long long)st->n, (long long)st->k,
                     (long long)st->batch, s->b.StatusName ? s->b.StatusName(r) : "cuBLAS error", r);
}

OCRT_API int oc_scorer_score(struct oc_scorer *s, const float *images, int n, float *scores,
                             int *predicted_class)
{
    if (!s) return OC_SCORER_EINVAL;
    const struct ocrt_plan *pl = s->c.plan;
    const struct ocrt_cuda *cu = s->cu;
    int chk = ocrt_check_call(&s->c, images, n, scores);
    if (chk) return chk < 0 ? chk : OC_SCORER_OK;
    size_t row = sizeof(float) * (size_t)pl->c * (size_t)pl->h * (size_t)pl->w;
    ocrt_dptr x = s->iop[pl->io_x];
    int r;
    if ((r = s->d.CtxSetCurrent(s->ctx)) != CU_OK) return cu_fail(s, r, "cuCtxSetCurrent");
    if ((r = s->d.MemcpyHtoDAsync(x, images, row * (size_t)n, s->stream)) != CU_OK)
        return cu_fail(s, r, "cuMemcpyHtoDAsync (images)");
    /* the batch is compiled: rows past n are zero images, as oodc eval pads */
    if (s->c.valid_rows > n &&
        (r = s->d.MemsetD8Async(x + row * (size_t)n, 0, row * (size_t)(s->c.valid_rows - n), s->stream)) != CU_OK)
        return cu_fail(s, r, "cuMemsetD8Async (padding rows)");
    s->c.valid_rows = n;
    for (int p = 0, ki = 0; p < pl->nprog; p++)
        for (int i = 0; i < pl->prog[p].nkernel; i++, ki++) {
            const struct ocrt_cuda_kernel *ck = &cu->kernel[ki];
            if (ck->fn) {
                if (!s->grid[ki]) continue;
                r = s->d.LaunchKernel(s->fn[ki], s->grid[ki], 1, 1, OCRT_CUDA_BLOCK, 1, 1, 0, s->stream,
                                      &s->args[ki * s->maxslot], NULL);
                if (r != CU_OK) return cu_fail(s, r, ck->fn);
                continue;
            }
            const ocrt_dptr *a = &s->argv[ki * s->maxslot];
            ocrt_dptr bufs[5] = {a[0], a[1], a[2], s->scratch[0], s->scratch[1]};
            for (int j = 0; j < ck->nstep; j++) {
                int e = run_step(s, &cu->step[ck->first_step + j], bufs);
                if (e) return e;
            }
        }
    size_t ssz = pl->score_f64 ? sizeof(double) : sizeof(float);
    if ((r = s->d.MemcpyDtoHAsync(s->host_score, s->iop[pl->io_score], ssz * (size_t)n, s->stream)) != CU_OK)
        return cu_fail(s, r, "cuMemcpyDtoHAsync (scores)");
    if (pl->io_pred >= 0 &&
        (r = s->d.MemcpyDtoHAsync(s->host_pred, s->iop[pl->io_pred], sizeof(int32_t) * (size_t)n, s->stream)) != CU_OK)
        return cu_fail(s, r, "cuMemcpyDtoHAsync (classes)");
    if ((r = s->d.StreamSynchronize(s->stream)) != CU_OK)
        return cu_fail(s, r, "running the scorer's kernels (cuStreamSynchronize)");
    ocrt_outputs(pl, s->host_score, pl->io_pred >= 0 ? s->host_pred : NULL, n, scores, predicted_class);
    return OC_SCORER_OK;
}
