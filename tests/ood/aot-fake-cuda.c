/* aot-fake-cuda.c - a stand-in for libcuda.so.1 and libcublas, built as a
 * shared library for tests/ood/test-aot-cuda.c: it lets the launcher of a
 * `oodc compile --target cuda` artifact (runtime/aot-rt/aot-rt-cuda.c) run
 * end to end without a GPU, selected with the launcher's
 * OC_SCORER_CUDA_DRIVER / OC_SCORER_CUBLAS knobs.
 *
 * "Device" memory is host memory. cuModuleLoadData gets the artifact's
 * embedded PTX; since PTX cannot run here, the module is the CUDA C that
 * NVRTC compiled it from (the artifact's build folder kept with
 * --keep-build: kernels.cu, lib.cu, listed in OC_FAKE_CUDA_SOURCES,
 * colon-separated), chosen by matching the PTX's .entry names against the
 * source's kernels exactly, and run on oodc's host emulation
 * (runtime/cuda-emu.c: one fiber per GPU thread, real barriers). cuBLAS's
 * strided-batched GEMMs are reference column-major loops in double. So
 * what the test checks is the artifact's own launcher, tables, buffer
 * layout, weights, grids and library steps; only the machine code is
 * replaced by the emulation of its source. On cuDevicePrimaryCtxRelease it
 * appends "launches L gemms G modules M" to $OC_FAKE_CUDA_LOG.
 */
#include "../../runtime/cuda-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))

enum { FAKE_OK = 0, FAKE_INVALID_VALUE = 1, FAKE_NOT_INITIALIZED = 3, FAKE_INVALID_IMAGE = 200,
       FAKE_NOT_FOUND = 500, FAKE_LAUNCH_FAILED = 719 };

static struct oc_emu *emu;
static char *sources[8];
static int nsources;
static long nlaunch, ngemm, nmodule;

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

API int cuInit(unsigned flags)
{
    (void)flags;
    if (emu) return FAKE_OK;
    const char *list = getenv("OC_FAKE_CUDA_SOURCES");
    char buf[8192];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    for (char *save = NULL, *p = strtok_r(buf, ":", &save); p && nsources < 8; p = strtok_r(NULL, ":", &save)) {
        char *s = read_all(p);
        if (!s) {
            fprintf(stderr, "fake cuda: cannot read %s\n", p);
            return FAKE_NOT_INITIALIZED;
        }
        sources[nsources++] = s;
    }
    struct oc_err err = {0};
    if (oc_emu_new(&emu, &err)) {
        fprintf(stderr, "fake cuda: %s\n", err.msg);
        return FAKE_NOT_INITIALIZED;
    }
    return FAKE_OK;
}

API int cuDeviceGetCount(int *n) { return *n = 1, FAKE_OK; }
API int cuDeviceGet(int *d, int ordinal) { return *d = 0, ordinal == 0 ? FAKE_OK : FAKE_INVALID_VALUE; }

API int cuDeviceGetName(char *buf, int n, int dev)
{
    (void)dev;
    snprintf(buf, (size_t)n, "oodc host emulation (test driver)");
    return FAKE_OK;
}

API int cuDeviceGetAttribute(int *v, int attr, int dev)
{
    (void)dev;
    /* 16 multiprocessors: 1 (the emulation's own choice); 75 / 76 compute capability 9.0 */
    *v = attr == 16 ? 1 : attr == 75 ? 9 : 0;
    return FAKE_OK;
}

API int cuDevicePrimaryCtxRetain(void **ctx, int dev)
{
    (void)dev;
    *ctx = (void *)&emu;
    return FAKE_OK;
}

API int cuDevicePrimaryCtxRelease_v2(int dev)
{
    (void)dev;
    const char *log = getenv("OC_FAKE_CUDA_LOG");
    FILE *f = log && *log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "launches %ld gemms %ld modules %ld\n", nlaunch, ngemm, nmodule);
        fclose(f);
    }
    return FAKE_OK;
}

API int cuCtxSetCurrent(void *ctx) { return ctx == (void *)&emu ? FAKE_OK : FAKE_INVALID_VALUE; }
API int cuStreamCreate(void **s, unsigned flags) { return (void)flags, *s = (void *)&nlaunch, FAKE_OK; }
API int cuStreamDestroy_v2(void *s) { return (void)s, FAKE_OK; }
API int cuStreamSynchronize(void *s) { return (void)s, FAKE_OK; }

API int cuMemAlloc_v2(unsigned long long *p, size_t n)
{
    void *h = NULL;
    if (posix_memalign(&h, 256, n ? n : 1)) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    *p = (unsigned long long)(uintptr_t)h;
    return FAKE_OK;
}

API int cuMemFree_v2(unsigned long long p) { return free((void *)(uintptr_t)p), FAKE_OK; }

API int cuMemcpyHtoDAsync_v2(unsigned long long dst, const void *src, size_t n, void *s)
{
    (void)s;
    memcpy((void *)(uintptr_t)dst, src, n);
    return FAKE_OK;
}

API int cuMemcpyDtoHAsync_v2(void *dst, unsigned long long src, size_t n, void *s)
{
    (void)s;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return FAKE_OK;
}

API int cuMemsetD8Async(unsigned long long dst, unsigned char v, size_t n, void *s)
{
    (void)s;
    memset((void *)(uintptr_t)dst, v, n);
    return FAKE_OK;
}

/* The source whose kernels are exactly the PTX's entries. */
static const char *source_of(const char *ptx)
{
    if (!strstr(ptx, ".version") || !strstr(ptx, ".target")) return NULL;
    for (int i = 0; i < nsources; i++) {
        int entries = 0, found = 0, kernels = 0;
        for (const char *p = strstr(ptx, ".entry "); p; p = strstr(p + 1, ".entry ")) {
            char name[128];
            if (sscanf(p + 7, "%127[A-Za-z0-9_]", name) != 1) return NULL;
            entries++;
            char want[160];
            snprintf(want, sizeof want, "%s(", name);
            found += strstr(sources[i], want) != NULL;
        }
        for (const char *p = strstr(sources[i], "__global__"); p; p = strstr(p + 1, "__global__")) kernels++;
        if (entries && found == entries && kernels == entries) return sources[i];
    }
    return NULL;
}

API int cuModuleLoadData(void **mod, const void *image)
{
    const char *src = source_of(image);
    if (!src) {
        fprintf(stderr, "fake cuda: no source in OC_FAKE_CUDA_SOURCES has this PTX's kernels\n");
        return FAKE_INVALID_IMAGE;
    }
    struct oc_err err = {0};
    if (oc_emu_load(emu, src, mod, &err)) {
        fprintf(stderr, "fake cuda: %s\n", err.msg);
        return FAKE_INVALID_IMAGE;
    }
    nmodule++;
    return FAKE_OK;
}

API int cuModuleUnload(void *mod) { return (void)mod, FAKE_OK; }

API int cuModuleGetFunction(void **fn, void *mod, const char *name)
{
    struct oc_err err = {0};
    return oc_emu_function(emu, mod, name, fn, &err) ? FAKE_NOT_FOUND : FAKE_OK;
}

API int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shared, void *stream, void **params, void **extra)
{
    (void)stream;
    if (gy != 1 || gz != 1 || by != 1 || bz != 1 || shared || extra || !gx) return FAKE_INVALID_VALUE;
    struct oc_err err = {0};
    if (oc_emu_launch(emu, fn, gx, bx, params, &err)) {
        fprintf(stderr, "fake cuda: %s\n", err.msg);
        return FAKE_LAUNCH_FAILED;
    }
    nlaunch++;
    return FAKE_OK;
}

API int cuGetErrorName(int r, const char **s)
{
    *s = r == FAKE_INVALID_IMAGE ? "CUDA_ERROR_INVALID_IMAGE" : r == FAKE_NOT_FOUND ? "CUDA_ERROR_NOT_FOUND"
                                                              : "CUDA_ERROR_FAKE";
    return FAKE_OK;
}

API int cuGetErrorString(int r, const char **s) { return (void)r, *s = "test driver", FAKE_OK; }

/* ---------------------------------------------------------------- cuBLAS */

API int cublasCreate_v2(void **h) { return *h = (void *)&ngemm, 0; }
API int cublasDestroy_v2(void *h) { return (void)h, 0; }
API int cublasSetStream_v2(void *h, void *s) { return (void)h, (void)s, 0; }
API int cublasSetMathMode(void *h, int mode) { return (void)h, mode == 0 ? 0 : 7; /* INVALID_VALUE */ }

#define GEMM(NAME, T)                                                                             \
    API int NAME(void *h, int ta, int tb, int m, int n, int k, const T *alpha, const T *A, int lda, \
                 long long sa, const T *B, int ldb, long long sb, const T *beta, T *C, int ldc,     \
                 long long sc, int batch)                                                          \
    {                                                                                              \
        (void)h;                                                                                   \
        for (int q = 0; q < batch; q++)                                                            \
            for (int j = 0; j < n; j++)                                                            \
                for (int i = 0; i < m; i++) {                                                      \
                    double acc = 0;                                                                \
                    for (int l = 0; l < k; l++) {                                                  \
                        double x = ta ? A[q * sa + l + (long long)i * lda] : A[q * sa + i + (long long)l * lda]; \
                        double y = tb ? B[q * sb + j + (long long)l * ldb] : B[q * sb + l + (long long)j * ldb]; \
                        acc += x * y;                                                              \
                    }                                                                              \
                    T *o = &C[q * sc + i + (long long)j * ldc];                                    \
                    *o = (T)(*alpha * acc + (*beta != 0 ? *beta * (double)*o : 0.0));              \
                }                                                                                  \
        ngemm++;                                                                                   \
        return 0;                                                                                  \
    }
GEMM(cublasSgemmStridedBatched, float)
GEMM(cublasDgemmStridedBatched, double)
