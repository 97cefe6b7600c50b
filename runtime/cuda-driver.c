/* cuda-driver.c - the CUDA device context: the driver API loaded at run
 * time, the device's primary context and one stream, the caching
 * allocator, copies, module loading through the kernel cache and NVRTC,
 * launches, CUDA events and graph capture.
 *
 * libcuda.so.1 is dlopen'd, never linked, so oodc starts everywhere; every
 * driver call is checked and a failure names the call, its arguments and
 * the driver's error name and text ("cuda: cuMemAlloc(268435456 bytes):
 * CUDA_ERROR_OUT_OF_MEMORY (out of memory)"). A context can instead run on
 * the host emulation (cuda-emu.c; opts.emulate or OC_CUDA_EMULATE=1): the
 * same allocator bookkeeping, module cache and launch path, with host
 * memory and fibers, which is how the tests run the executor without a
 * GPU.
 *
 * A module's key is the kernel cache's key of (source, NVRTC options,
 * architecture, NVRTC version, oodc's codegen version): a context keeps
 * every module it loaded under its key (the in-memory level), and asks the
 * kernel cache (memory, then disk) before compiling.
 */
#include "cuda-impl.h"
#include "kcache.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Part of every module's cache key: bump when generated code changes
 * meaning without its text changing (it never should). */
#define OC_CUDA_CODEGEN_VERSION "oodc 0.1.0 cuda-codegen 1"

struct oc_cuda_module {
    struct oc_kkey key;
    char tag[96];
    void *mod; /* CUmodule, or the emulator's library */
};

struct blk {
    oc_devptr p;
    size_t size;
};

struct oc_cuda_timer {
    void *start, *stop; /* CUevent, or host times (emulation) */
    double t0, t1;
};

#ifdef OC_HAVE_CUDA
#include <cuda.h>
#include <dlfcn.h>

/* The driver entry points, resolved by dlsym (the versioned names the
 * headers map the plain ones to). */
struct drv {
    void *lib;
    CUresult (*Init)(unsigned);
    CUresult (*DriverGetVersion)(int *);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*DeviceTotalMem)(size_t *, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*MemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
    CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
    CUresult (*EventCreate)(CUevent *, unsigned);
    CUresult (*EventDestroy)(CUevent);
    CUresult (*EventRecord)(CUevent, CUstream);
    CUresult (*EventSynchronize)(CUevent);
    CUresult (*EventElapsedTime)(float *, CUevent, CUevent);
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*GetErrorString)(CUresult, const char **);
    CUresult (*StreamBeginCapture)(CUstream, CUstreamCaptureMode);
    CUresult (*StreamEndCapture)(CUstream, CUgraph *);
    CUresult (*GraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*GraphLaunch)(CUgraphExec, CUstream);
    CUresult (*GraphExecDestroy)(CUgraphExec);
    CUresult (*GraphDestroy)(CUgraph);
};
#endif

struct oc_cuda {
    int emulated;
    int debug;
    struct oc_cuda_opts o;
    struct oc_cuda_info info;
    struct oc_emu *emu;
#ifdef OC_HAVE_CUDA
    struct drv d;
    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
#endif
    struct oc_nvrtc *nv;
    struct oc_kcache *kc;
    struct oc_cublas *blas;
    /* caching allocator */
    struct blk *freel, *used;
    int nfree, capfree, nused, capused;
    struct oc_cuda_mem_stats ms;
    /* modules */
    struct oc_cuda_module **mods;
    int nmods, capmods;
    int ncompiled, ncached, nloaded;
};

static int env_int(const char *name, int dflt)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

struct oc_cuda_opts oc_cuda_opts_default(void)
{
    struct oc_cuda_opts o;
    memset(&o, 0, sizeof o);
    o.device = env_int("OC_CUDA_DEVICE", 0);
    const char *a = getenv("OC_CUDA_ARCH");
    o.arch = a && *a ? a : NULL;
    o.tf32 = env_int("OC_TF32", 0);
    o.emulate = env_int("OC_CUDA_EMULATE", 0);
    return o;
}

struct oc_emu *oc_cuda_emulator(struct oc_cuda *cu) { return cu ? cu->emu : NULL; }
int oc_cuda_is_emulated(const struct oc_cuda *cu) { return cu && cu->emulated; }
int oc_cuda_debug(const struct oc_cuda *cu) { return cu ? cu->debug : 0; }
int oc_cuda_tf32(const struct oc_cuda *cu) { return cu ? cu->o.tf32 : 0; }

void oc_cuda_get_info(const struct oc_cuda *cu, struct oc_cuda_info *out) { *out = cu->info; }

/* ---------------------------------------------------------------- the driver */

#ifdef OC_HAVE_CUDA

static const char *const libcuda_names[] = {"libcuda.so.1", "libcuda.so", NULL};

static enum oc_status cu_fail(struct drv *d, struct oc_err *err, CUresult r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum oc_status cu_fail(struct drv *d, struct oc_err *err, CUresult r, const char *fmt, ...)
{
    const char *name = NULL, *text = NULL;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (d->GetErrorName && d->GetErrorName(r, &name) != CUDA_SUCCESS) name = NULL;
    if (d->GetErrorString && d->GetErrorString(r, &text) != CUDA_SUCCESS) text = NULL;
    char code[64];
    snprintf(code, sizeof code, "CUresult %d", (int)r);
    return oc_err_set(err, r == CUDA_ERROR_OUT_OF_MEMORY ? OC_ERR_NOMEM : OC_ERR_DEVICE,
                      "cuda: %s: %s%s%s%s", what, name ? name : code, text ? " (" : "", text ? text : "",
                      text ? ")" : "");
}

#define CK(cu, call, ...)                                                                          \
    do {                                                                                           \
        CUresult r_ = (call);                                                                      \
        if (r_ != CUDA_SUCCESS) return cu_fail(&(cu)->d, err, r_, __VA_ARGS__);                   \
    } while (0)

static enum oc_status drv_load(struct drv *d, struct oc_err *err)
{
    char why[1024];
    /* OC_LIBCUDA: an explicit driver library (an unusual install; the
     * tests load the toolkit's stub through it) */
    const char *own = getenv("OC_LIBCUDA");
    const char *const names1[] = {own, NULL};
    d->lib = own && *own ? oc_cuda_dlopen(names1, why, sizeof why) : NULL;
    if (!d->lib) d->lib = oc_cuda_dlopen(libcuda_names, why, sizeof why);
    if (!d->lib)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "cuda: no NVIDIA driver on this machine (%s); use --device cpu", why);
    struct {
        void **slot;
        const char *names[3];
    } t[] = {
#define E(f, ...) {(void **)&d->f, {__VA_ARGS__}}
        E(Init, "cuInit"),
        E(DriverGetVersion, "cuDriverGetVersion"),
        E(DeviceGetCount, "cuDeviceGetCount"),
        E(DeviceGet, "cuDeviceGet"),
        E(DeviceGetName, "cuDeviceGetName"),
        E(DeviceGetAttribute, "cuDeviceGetAttribute"),
        E(DeviceTotalMem, "cuDeviceTotalMem_v2"),
        E(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
        E(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
        E(CtxSetCurrent, "cuCtxSetCurrent"),
        E(StreamCreate, "cuStreamCreate"),
        E(StreamDestroy, "cuStreamDestroy_v2"),
        E(StreamSynchronize, "cuStreamSynchronize"),
        E(MemAlloc, "cuMemAlloc_v2"),
        E(MemFree, "cuMemFree_v2"),
        E(MemGetInfo, "cuMemGetInfo_v2"),
        E(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
        E(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
        E(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
        E(MemsetD8Async, "cuMemsetD8Async"),
        E(ModuleLoadData, "cuModuleLoadData"),
        E(ModuleUnload, "cuModuleUnload"),
        E(ModuleGetFunction, "cuModuleGetFunction"),
        E(LaunchKernel, "cuLaunchKernel"),
        E(EventCreate, "cuEventCreate"),
        E(EventDestroy, "cuEventDestroy_v2"),
        E(EventRecord, "cuEventRecord"),
        E(EventSynchronize, "cuEventSynchronize"),
        E(EventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime"),
        E(GetErrorName, "cuGetErrorName"),
        E(GetErrorString, "cuGetErrorString"),
        E(StreamBeginCapture, "cuStreamBeginCapture_v2"),
        E(StreamEndCapture, "cuStreamEndCapture"),
        E(GraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"),
        E(GraphLaunch, "cuGraphLaunch"),
        E(GraphExecDestroy, "cuGraphExecDestroy"),
        E(GraphDestroy, "cuGraphDestroy"),
#undef E
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        for (int j = 0; j < 3 && t[i].names[j] && !*t[i].slot; j++) *t[i].slot = dlsym(d->lib, t[i].names[j]);
        if (!*t[i].slot) {
            const char *nm = t[i].names[0];
            dlclose(d->lib);
            d->lib = NULL;
            return oc_err_set(err, OC_ERR_UNSUPPORTED,
                              "cuda: the NVIDIA driver is too old: libcuda.so.1 has no %s", nm);
        }
    }
    return OC_OK;
}

/* cuInit and the device count, with errors a user can act on. */
static enum oc_status drv_init(struct drv *d, int *count, struct oc_err *err)
{
    CUresult r = d->Init(0);
    if (r == CUDA_ERROR_NO_DEVICE || (r == CUDA_SUCCESS && d->DeviceGetCount(count) == CUDA_SUCCESS && *count == 0))
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "cuda: the NVIDIA driver is installed but there is no CUDA device; use --device cpu");
    if (r != CUDA_SUCCESS) {
        cu_fail(d, err, r, "cuInit(0) failed; use --device cpu");
        err->code = OC_ERR_UNSUPPORTED;
        return OC_ERR_UNSUPPORTED;
    }
    return OC_OK;
}

enum oc_status oc_cuda_probe(struct oc_err *err)
{
    struct drv d;
    memset(&d, 0, sizeof d);
    enum oc_status st = drv_load(&d, err);
    if (st) return st;
    int count = 0;
    st = drv_init(&d, &count, err);
    dlclose(d.lib);
    return st;
}

static enum oc_status real_new(struct oc_cuda *cu, struct oc_err *err)
{
    enum oc_status st = drv_load(&cu->d, err);
    if (st) return st;
    int count = 0;
    if ((st = drv_init(&cu->d, &count, err))) return st;
    if (cu->o.device < 0 || cu->o.device >= count)
        return oc_err_set(err, OC_ERR_INVALID, "cuda: device %d does not exist (%d device(s): 0..%d)",
                          cu->o.device, count, count - 1);
    CK(cu, cu->d.DeviceGet(&cu->dev, cu->o.device), "cuDeviceGet(%d)", cu->o.device);
    CK(cu, cu->d.DeviceGetName(cu->info.name, (int)sizeof cu->info.name, cu->dev), "cuDeviceGetName");
    int ma = 0, mi = 0, sms = 0;
    CK(cu, cu->d.DeviceGetAttribute(&ma, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, cu->dev),
       "cuDeviceGetAttribute(compute capability major)");
    CK(cu, cu->d.DeviceGetAttribute(&mi, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, cu->dev),
       "cuDeviceGetAttribute(compute capability minor)");
    CK(cu, cu->d.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, cu->dev),
       "cuDeviceGetAttribute(multiprocessor count)");
    CK(cu, cu->d.DeviceTotalMem(&cu->info.memory, cu->dev), "cuDeviceTotalMem");
    CK(cu, cu->d.DriverGetVersion(&cu->info.driver), "cuDriverGetVersion");
    cu->info.sm = ma * 10 + mi;
    cu->info.sm_count = sms;
    CK(cu, cu->d.DevicePrimaryCtxRetain(&cu->ctx, cu->dev), "cuDevicePrimaryCtxRetain(device %d)", cu->o.device);
    CK(cu, cu->d.CtxSetCurrent(cu->ctx), "cuCtxSetCurrent");
    CK(cu, cu->d.StreamCreate(&cu->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    return OC_OK;
}

static void real_free(struct oc_cuda *cu)
{
    if (!cu->d.lib) return;
    if (cu->stream) cu->d.StreamDestroy(cu->stream);
    if (cu->ctx) cu->d.DevicePrimaryCtxRelease(cu->dev);
    dlclose(cu->d.lib);
}

#else /* !OC_HAVE_CUDA */

enum oc_status oc_cuda_probe(struct oc_err *err)
{
    return oc_err_set(err, OC_ERR_UNSUPPORTED,
                      "cuda: this oodc was built without the CUDA toolkit; use --device cpu "
                      "(or rebuild where the toolkit is installed)");
}

static enum oc_status real_new(struct oc_cuda *cu, struct oc_err *err) { return oc_cuda_probe(err); }
static void real_free(struct oc_cuda *cu) { (void)cu; }

#endif /* OC_HAVE_CUDA */

/* ---------------------------------------------------------------- contexts */

enum oc_status oc_cuda_new(struct oc_cuda **out, const struct oc_cuda_opts *o, struct oc_err *err)
{
    *out = NULL;
    struct oc_cuda *cu = calloc(1, sizeof *cu);
    if (!cu) return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory");
    cu->o = o ? *o : oc_cuda_opts_default();
    int envdbg = env_int("OC_DEBUG", 0);
    cu->debug = cu->o.debug > envdbg ? cu->o.debug : envdbg;
    cu->emulated = cu->o.emulate;
    enum oc_status st;
    if (cu->emulated) {
        st = oc_emu_new(&cu->emu, err);
        snprintf(cu->info.name, sizeof cu->info.name, "host emulation (oodc)");
        cu->info.sm = 90;
        cu->info.sm_count = 1;
        cu->info.memory = (size_t)1 << 32;
        snprintf(cu->info.arch, sizeof cu->info.arch, "host");
    } else {
        st = real_new(cu, err);
    }
    if (st) {
        oc_cuda_free(cu);
        return st;
    }
    if (!cu->emulated) {
        /* NVRTC now, so a missing compiler is reported before anything runs */
        if ((st = oc_nvrtc_open(&cu->nv, err))) {
            oc_cuda_free(cu);
            return st;
        }
        oc_nvrtc_version(cu->nv, &cu->info.nvrtc_major, &cu->info.nvrtc_minor);
        if (cu->o.arch) snprintf(cu->info.arch, sizeof cu->info.arch, "%s", cu->o.arch);
        else oc_nvrtc_arch_for(cu->nv, cu->info.sm, cu->info.arch, sizeof cu->info.arch);
        if (!cu->info.arch[0]) {
            oc_err_set(err, OC_ERR_UNSUPPORTED, "cuda: NVRTC %d.%d cannot compile for %s (sm_%d)",
                       cu->info.nvrtc_major, cu->info.nvrtc_minor, cu->info.name, cu->info.sm);
            oc_cuda_free(cu);
            return OC_ERR_UNSUPPORTED;
        }
        if ((st = oc_kcache_open(&cu->kc, NULL, cu->debug, err))) {
            oc_cuda_free(cu);
            return st;
        }
    }
    if (cu->debug >= 1)
        fprintf(stderr, "cuda: %s (sm_%d, %d SMs, %.1f GiB), kernels for %s%s\n", cu->info.name,
                cu->info.sm, cu->info.sm_count, (double)cu->info.memory / (1 << 30), cu->info.arch,
                cu->o.tf32 ? ", TF32 allowed" : "");
    *out = cu;
    return OC_OK;
}

void oc_cuda_free(struct oc_cuda *cu)
{
    if (!cu) return;
    struct oc_err ignore = {0};
    if (!cu->emulated) oc_cuda_sync(cu, &ignore);
    oc_cublas_free(cu->blas);
    cu->blas = NULL;
    for (int i = 0; i < cu->nmods; i++) {
#ifdef OC_HAVE_CUDA
        if (!cu->emulated && cu->mods[i]->mod) cu->d.ModuleUnload((CUmodule)cu->mods[i]->mod);
#endif
        free(cu->mods[i]);
    }
    free(cu->mods);
    /* every block, cached or still in use, goes back to the driver */
    for (int i = 0; i < cu->nfree; i++) {
#ifdef OC_HAVE_CUDA
        if (!cu->emulated) cu->d.MemFree(cu->freel[i].p);
#endif
        if (cu->emulated) free((void *)(uintptr_t)cu->freel[i].p);
    }
    for (int i = 0; i < cu->nused; i++) {
#ifdef OC_HAVE_CUDA
        if (!cu->emulated) cu->d.MemFree(cu->used[i].p);
#endif
        if (cu->emulated) free((void *)(uintptr_t)cu->used[i].p);
    }
    free(cu->freel);
    free(cu->used);
    oc_kcache_close(cu->kc);
    oc_nvrtc_close(cu->nv);
    oc_emu_free(cu->emu);
    if (!cu->emulated) real_free(cu);
    free(cu);
}

struct oc_cublas **oc_cuda_blas_slot(struct oc_cuda *cu) { return &cu->blas; }

/* ---------------------------------------------------------------- memory */

/* Sizes round up to 512 bytes below 1 MiB and to 2 MiB above, so freed
 * blocks fit later requests of about the same size. */
static size_t round_size(size_t n)
{
    if (n == 0) n = 1;
    if (n < ((size_t)1 << 20)) return (n + 511) & ~(size_t)511;
    return (n + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
}

static int push_blk(struct blk **v, int *n, int *cap, struct blk b)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        struct blk *q = realloc(*v, sizeof *q * (size_t)nc);
        if (!q) return -1;
        *v = q;
        *cap = nc;
    }
    (*v)[(*n)++] = b;
    return 0;
}

static enum oc_status raw_alloc(struct oc_cuda *cu, size_t size, oc_devptr *p, struct oc_err *err)
{
    if (cu->emulated) {
        void *h = NULL;
        if (posix_memalign(&h, 256, size))
            return oc_err_set(err, OC_ERR_NOMEM, "cuda emulation: out of memory for %zu bytes", size);
        memset(h, 0, size);
        *p = (oc_devptr)(uintptr_t)h;
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CUdeviceptr d = 0;
    CK(cu, cu->d.MemAlloc(&d, size), "cuMemAlloc(%zu bytes)", size);
    *p = d;
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

static void raw_free(struct oc_cuda *cu, oc_devptr p)
{
    if (cu->emulated) free((void *)(uintptr_t)p);
#ifdef OC_HAVE_CUDA
    else cu->d.MemFree(p);
#endif
}

/* Frees every cached block (before retrying a failed allocation). */
static void trim(struct oc_cuda *cu)
{
    struct oc_err ignore = {0};
    if (!cu->emulated) oc_cuda_sync(cu, &ignore);
    for (int i = 0; i < cu->nfree; i++) {
        raw_free(cu, cu->freel[i].p);
        cu->ms.frees++;
    }
    cu->nfree = 0;
    cu->ms.cached = 0;
}

enum oc_status oc_cuda_alloc(struct oc_cuda *cu, size_t bytes, oc_devptr *out, struct oc_err *err)
{
    *out = 0;
    size_t size = round_size(bytes);
    int best = -1;
    for (int i = 0; i < cu->nfree; i++) {
        size_t s = cu->freel[i].size;
        if (s >= size && s <= 2 * size && (best < 0 || s < cu->freel[best].size)) best = i;
    }
    struct blk b;
    if (best >= 0) {
        b = cu->freel[best];
        cu->freel[best] = cu->freel[--cu->nfree];
        cu->ms.cached -= b.size;
        cu->ms.reuses++;
    } else {
        b.size = size;
        enum oc_status st = raw_alloc(cu, size, &b.p, err);
        if (st == OC_ERR_NOMEM && cu->nfree) {
            oc_err_clear(err);
            trim(cu);
            st = raw_alloc(cu, size, &b.p, err);
        }
        if (st) return st;
        cu->ms.allocs++;
    }
    if (push_blk(&cu->used, &cu->nused, &cu->capused, b)) {
        raw_free(cu, b.p);
        return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of host memory for the allocator");
    }
    cu->ms.in_use += b.size;
    if (cu->ms.in_use > cu->ms.peak) cu->ms.peak = cu->ms.in_use;
    *out = b.p;
    return OC_OK;
}

void oc_cuda_release(struct oc_cuda *cu, oc_devptr p)
{
    if (!cu || !p) return;
    for (int i = cu->nused - 1; i >= 0; i--) {
        if (cu->used[i].p != p) continue;
        struct blk b = cu->used[i];
        cu->used[i] = cu->used[--cu->nused];
        cu->ms.in_use -= b.size;
        if (push_blk(&cu->freel, &cu->nfree, &cu->capfree, b)) {
            raw_free(cu, b.p);
            cu->ms.frees++;
        } else {
            cu->ms.cached += b.size;
        }
        return;
    }
    OC_ASSERT(!"oc_cuda_release of a pointer the allocator did not give out");
}

void oc_cuda_mem_stats(const struct oc_cuda *cu, struct oc_cuda_mem_stats *st) { *st = cu->ms; }

/* ---------------------------------------------------------------- copies */

#define HOST(p) ((void *)(uintptr_t)(p))

enum oc_status oc_cuda_htod(struct oc_cuda *cu, oc_devptr dst, const void *src, size_t n,
                            struct oc_err *err)
{
    if (!n) return OC_OK;
    if (cu->emulated) {
        memcpy(HOST(dst), src, n);
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.MemcpyHtoDAsync(dst, src, n, cu->stream), "cuMemcpyHtoDAsync(%zu bytes)", n);
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_dtoh(struct oc_cuda *cu, void *dst, oc_devptr src, size_t n,
                            struct oc_err *err)
{
    if (!n) return OC_OK;
    if (cu->emulated) {
        memcpy(dst, HOST(src), n);
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.MemcpyDtoHAsync(dst, src, n, cu->stream), "cuMemcpyDtoHAsync(%zu bytes)", n);
    CK(cu, cu->d.StreamSynchronize(cu->stream), "cuStreamSynchronize (after a %zu-byte copy to the host)", n);
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_dtod(struct oc_cuda *cu, oc_devptr dst, oc_devptr src, size_t n,
                            struct oc_err *err)
{
    if (!n || dst == src) return OC_OK;
    if (cu->emulated) {
        memmove(HOST(dst), HOST(src), n);
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.MemcpyDtoDAsync(dst, src, n, cu->stream), "cuMemcpyDtoDAsync(%zu bytes)", n);
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_memset8(struct oc_cuda *cu, oc_devptr dst, unsigned char v, size_t n,
                               struct oc_err *err)
{
    if (!n) return OC_OK;
    if (cu->emulated) {
        memset(HOST(dst), v, n);
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.MemsetD8Async(dst, v, n, cu->stream), "cuMemsetD8Async(%zu bytes)", n);
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_sync(struct oc_cuda *cu, struct oc_err *err)
{
    if (cu->emulated) return OC_OK;
#ifdef OC_HAVE_CUDA
    if (!cu->stream) return OC_OK;
    CK(cu, cu->d.StreamSynchronize(cu->stream), "cuStreamSynchronize");
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_bind(struct oc_cuda *cu, struct oc_err *err)
{
    if (cu->emulated) return OC_OK;
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.CtxSetCurrent(cu->ctx), "cuCtxSetCurrent");
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

void *oc_cuda_stream(struct oc_cuda *cu)
{
#ifdef OC_HAVE_CUDA
    return cu->emulated ? NULL : (void *)cu->stream;
#else
    return NULL;
#endif
}

/* ---------------------------------------------------------------- modules */

void oc_cuda_module_stats(const struct oc_cuda *cu, int *compiled, int *cached, int *loaded)
{
    *compiled = cu->ncompiled;
    *cached = cu->ncached;
    *loaded = cu->nloaded;
}

static enum oc_status add_module(struct oc_cuda *cu, struct oc_cuda_module *m, struct oc_err *err)
{
    if (cu->nmods == cu->capmods) {
        int nc = cu->capmods ? cu->capmods * 2 : 16;
        struct oc_cuda_module **q = realloc(cu->mods, sizeof *q * (size_t)nc);
        if (!q) return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory");
        cu->mods = q;
        cu->capmods = nc;
    }
    cu->mods[cu->nmods++] = m;
    return OC_OK;
}

static struct oc_kkey oc_cuda_module_key(const char *src, const char *arch, int nvrtc_major, int nvrtc_minor)
{
    struct oc_nvrtc_opts no = {arch, 0, 0, 0};
    char opts[256], ver[64];
    oc_nvrtc_options_str(&no, opts, sizeof opts);
    if (nvrtc_major < 0) snprintf(ver, sizeof ver, "host emulation");
    else snprintf(ver, sizeof ver, "nvrtc %d.%d", nvrtc_major, nvrtc_minor);
    const char *parts[] = {src, opts, arch, ver, OC_CUDA_CODEGEN_VERSION};
    return oc_kcache_key(parts, 5);
}

enum oc_status oc_cuda_compile_cached(struct oc_nvrtc *nv, struct oc_kcache *kc, const char *src,
                                      const char *tag, const char *arch, int debug, void **image,
                                      size_t *size, int *hit, struct oc_err *err)
{
    *image = NULL;
    *size = 0;
    *hit = 0;
    int ma, mi;
    oc_nvrtc_version(nv, &ma, &mi);
    struct oc_kkey key = oc_cuda_module_key(src, arch, ma, mi);
    if (oc_kcache_get(kc, key, tag, image, size)) {
        *hit = 1;
        return OC_OK;
    }
    struct oc_nvrtc_opts no = {arch, 0, 0, 0};
    struct oc_nvrtc_out nvo;
    char name[128];
    snprintf(name, sizeof name, "%s.cu", tag);
    enum oc_status st = oc_nvrtc_compile(nv, src, name, &no, &nvo, err);
    if (!st) {
        if (debug >= 3) fprintf(stderr, "cuda: %s\n%s\n", tag, src);
        *image = nvo.image;
        *size = nvo.size + (nvo.cubin ? 0 : 1); /* PTX keeps its NUL */
        nvo.image = NULL;
        oc_kcache_put(kc, key, tag, *image, *size);
    }
    oc_nvrtc_out_free(&nvo);
    return st;
}

enum oc_status oc_cuda_module_get(struct oc_cuda *cu, const char *src, const char *tag,
                                  struct oc_cuda_module **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_kkey key = oc_cuda_module_key(src, cu->info.arch, cu->emulated ? -1 : cu->info.nvrtc_major,
                                            cu->info.nvrtc_minor);
    for (int i = 0; i < cu->nmods; i++)
        if (cu->mods[i]->key.h[0] == key.h[0] && cu->mods[i]->key.h[1] == key.h[1]) {
            cu->nloaded++;
            *out = cu->mods[i];
            return OC_OK;
        }
    struct oc_cuda_module *m = calloc(1, sizeof *m);
    if (!m) return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory");
    m->key = key;
    snprintf(m->tag, sizeof m->tag, "%s", tag);
    enum oc_status st = OC_OK;
    if (cu->emulated) {
        st = oc_emu_load(cu->emu, src, &m->mod, err);
        if (!st) cu->ncompiled++;
    }
#ifdef OC_HAVE_CUDA
    else {
        void *image = NULL;
        size_t size = 0;
        int hit = 0;
        st = oc_cuda_compile_cached(cu->nv, cu->kc, src, tag, cu->info.arch, cu->debug, &image, &size,
                                    &hit, err);
        if (!st) {
            if (hit) cu->ncached++;
            else cu->ncompiled++;
            CUmodule mod = NULL;
            CUresult r = cu->d.ModuleLoadData(&mod, image);
            if (r != CUDA_SUCCESS)
                st = cu_fail(&cu->d, err, r, "cuModuleLoadData(%s, %zu bytes%s)", tag, size,
                             hit ? ", from the kernel cache: OC_NO_CACHE=1 bypasses it" : "");
            m->mod = mod;
        }
        free(image);
    }
#endif
    if (!st) st = add_module(cu, m, err);
    if (st) {
        free(m);
        return st;
    }
    *out = m;
    return OC_OK;
}

enum oc_status oc_cuda_function(struct oc_cuda *cu, struct oc_cuda_module *m, const char *name,
                                void **fn, struct oc_err *err)
{
    *fn = NULL;
    if (cu->emulated) return oc_emu_function(cu->emu, m->mod, name, fn, err);
#ifdef OC_HAVE_CUDA
    CUfunction f = NULL;
    CK(cu, cu->d.ModuleGetFunction(&f, (CUmodule)m->mod, name), "cuModuleGetFunction(%s in %s)", name, m->tag);
    *fn = f;
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_launch(struct oc_cuda *cu, void *fn, unsigned grid, unsigned block,
                              void **args, const char *what, struct oc_err *err)
{
    if (!grid) return OC_OK;
    if (cu->emulated) return oc_emu_launch(cu->emu, fn, grid, block, args, err);
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.LaunchKernel((CUfunction)fn, grid, 1, 1, block, 1, 1, 0, cu->stream, args, NULL),
       "cuLaunchKernel(%s, grid %u, block %u)", what, grid, block);
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

/* ---------------------------------------------------------------- events */

#include <time.h>

static double host_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

enum oc_status oc_cuda_timer_new(struct oc_cuda *cu, struct oc_cuda_timer **out, struct oc_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory");
    if (cu->emulated) return OC_OK;
#ifdef OC_HAVE_CUDA
    CUevent a = NULL, b = NULL;
    CUresult r = cu->d.EventCreate(&a, CU_EVENT_DEFAULT);
    if (r == CUDA_SUCCESS) r = cu->d.EventCreate(&b, CU_EVENT_DEFAULT);
    (*out)->start = a;
    (*out)->stop = b;
    if (r != CUDA_SUCCESS) {
        oc_cuda_timer_free(cu, *out);
        *out = NULL;
        return cu_fail(&cu->d, err, r, "cuEventCreate");
    }
#endif
    return OC_OK;
}

void oc_cuda_timer_free(struct oc_cuda *cu, struct oc_cuda_timer *t)
{
    if (!t) return;
#ifdef OC_HAVE_CUDA
    if (!cu->emulated) {
        if (t->start) cu->d.EventDestroy((CUevent)t->start);
        if (t->stop) cu->d.EventDestroy((CUevent)t->stop);
    }
#endif
    free(t);
}

enum oc_status oc_cuda_timer_start(struct oc_cuda *cu, struct oc_cuda_timer *t, struct oc_err *err)
{
    if (cu->emulated) {
        t->t0 = host_ms();
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.EventRecord((CUevent)t->start, cu->stream), "cuEventRecord(start)");
#endif
    return OC_OK;
}

enum oc_status oc_cuda_timer_stop(struct oc_cuda *cu, struct oc_cuda_timer *t, struct oc_err *err)
{
    if (cu->emulated) {
        t->t1 = host_ms();
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.EventRecord((CUevent)t->stop, cu->stream), "cuEventRecord(stop)");
#endif
    return OC_OK;
}

enum oc_status oc_cuda_timer_ms(struct oc_cuda *cu, struct oc_cuda_timer *t, double *ms,
                                struct oc_err *err)
{
    *ms = 0;
    if (cu->emulated) {
        *ms = t->t1 - t->t0;
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    float f = 0;
    CK(cu, cu->d.EventSynchronize((CUevent)t->stop), "cuEventSynchronize");
    CK(cu, cu->d.EventElapsedTime(&f, (CUevent)t->start, (CUevent)t->stop), "cuEventElapsedTime");
    *ms = f;
#endif
    return OC_OK;
}

/* ---------------------------------------------------------------- graphs */

enum oc_status oc_cuda_capture_begin(struct oc_cuda *cu, struct oc_err *err)
{
    if (cu->emulated) return OC_OK; /* the emulation replays by re-running */
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.StreamBeginCapture(cu->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
       "cuStreamBeginCapture");
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_capture_end(struct oc_cuda *cu, void **graph_exec, struct oc_err *err)
{
    *graph_exec = NULL;
    if (cu->emulated) return OC_OK;
#ifdef OC_HAVE_CUDA
    CUgraph g = NULL;
    CK(cu, cu->d.StreamEndCapture(cu->stream, &g), "cuStreamEndCapture");
    CUgraphExec ge = NULL;
    CUresult r = cu->d.GraphInstantiateWithFlags(&ge, g, 0);
    cu->d.GraphDestroy(g);
    if (r != CUDA_SUCCESS) return cu_fail(&cu->d, err, r, "cuGraphInstantiateWithFlags");
    *graph_exec = ge;
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_graph_launch(struct oc_cuda *cu, void *graph_exec, struct oc_err *err)
{
    if (cu->emulated || !graph_exec) return OC_OK;
#ifdef OC_HAVE_CUDA
    CK(cu, cu->d.GraphLaunch((CUgraphExec)graph_exec, cu->stream), "cuGraphLaunch");
    return OC_OK;
#else
    return oc_cuda_probe(err);
#endif
}

void oc_cuda_graph_free(struct oc_cuda *cu, void *graph_exec)
{
    if (!graph_exec || cu->emulated) return;
#ifdef OC_HAVE_CUDA
    cu->d.GraphExecDestroy((CUgraphExec)graph_exec);
#endif
}
