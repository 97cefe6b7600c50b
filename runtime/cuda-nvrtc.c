/* cuda-nvrtc.c - loading CUDA's libraries at run time, and NVRTC: CUDA C ->
 * CUBIN (or PTX) for one architecture.
 *
 * NVRTC is dlopen'd like the driver, so a build with the toolkit's headers
 * runs where the toolkit is absent. The architecture is the device's own
 * when this NVRTC knows it (a CUBIN: no JIT at load), otherwise PTX for the
 * newest one it knows below (the driver JIT-compiles it); OC_CUDA_ARCH or
 * the caller can force either. A failed compile carries NVRTC's log and,
 * with OC_DUMP_ON_ERROR=1, leaves the source and the log in files named in
 * the message. NVRTC needs no GPU, so the tests compile every generated
 * kernel on any machine with the toolkit.
 */
#include "cuda-impl.h"

#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_CUDA

#include <dlfcn.h>
#include <errno.h>
#include <nvrtc.h>
#include <stdarg.h>
#include <unistd.h>

#ifndef OC_CUDA_LIBDIR
#define OC_CUDA_LIBDIR ""
#endif

int oc_cuda_built(void) { return 1; }

static void *try_open(const char *path, char *why, size_t n)
{
    /* NODELETE: NVRTC carries its own C++ runtime, whose exception pool
     * would otherwise be reported as leaked once the library is unloaded */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h && why) {
        const char *m = dlerror();
        snprintf(why, n, "%.400s", m ? m : path);
    }
    return h;
}

void *oc_cuda_dlopen(const char *const *names, char *why, size_t n)
{
    char last[512] = "";
    for (int i = 0; names[i]; i++) {
        void *h = try_open(names[i], last, sizeof last);
        if (h) return h;
    }
    const char *roots[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), OC_CUDA_LIBDIR};
    for (size_t r = 0; r < sizeof roots / sizeof *roots; r++) {
        if (!roots[r] || !*roots[r]) continue;
        static const char *const subs[] = {"lib64", "lib", ""};
        for (size_t s = 0; s < 3; s++)
            for (int i = 0; names[i]; i++) {
                char path[1024];
                snprintf(path, sizeof path, "%s%s%s/%s", roots[r], *subs[s] ? "/" : "", subs[s], names[i]);
                if (access(path, R_OK)) continue;
                void *h = try_open(path, last, sizeof last);
                if (h) return h;
            }
    }
    if (why) {
        size_t p = (size_t)snprintf(why, n, "cannot load");
        for (int i = 0; names[i] && p < n; i++)
            p += (size_t)snprintf(why + p, n - p, "%s %s", i ? "," : "", names[i]);
        if (p < n) snprintf(why + p, n - p, " (%s)", last);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the library */

struct oc_nvrtc {
    void *lib;
    int major, minor;
    int *archs, narch;
    const char *(*GetErrorString)(nvrtcResult);
    nvrtcResult (*Version)(int *, int *);
    nvrtcResult (*GetNumSupportedArchs)(int *);
    nvrtcResult (*GetSupportedArchs)(int *);
    nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                                 const char *const *);
    nvrtcResult (*DestroyProgram)(nvrtcProgram *);
    nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
    nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetPTX)(nvrtcProgram, char *);
    nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
};

static void *sym(void *lib, const char *name, int *missing, char *which, size_t n)
{
    void *p = dlsym(lib, name);
    if (!p && !*missing) {
        *missing = 1;
        snprintf(which, n, "%s", name);
    }
    return p;
}

enum oc_status oc_nvrtc_open(struct oc_nvrtc **out, struct oc_err *err)
{
    *out = NULL;
    static const char *const names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12",
                                        "libnvrtc.so.11.2", NULL};
    char why[1024];
    void *lib = oc_cuda_dlopen(names, why, sizeof why);
    if (!lib)
        return oc_err_set(err, OC_ERR_DEVICE,
                          "nvrtc: the CUDA runtime compiler is not available: %s (install the CUDA "
                          "toolkit's NVRTC or set CUDA_HOME)",
                          why);
    struct oc_nvrtc *nv = calloc(1, sizeof *nv);
    if (!nv) {
        dlclose(lib);
        return oc_err_set(err, OC_ERR_NOMEM, "nvrtc: out of memory");
    }
    nv->lib = lib;
    int miss = 0;
    char which[64] = "";
#define LOAD(f) *(void **)&nv->f = sym(lib, "nvrtc" #f, &miss, which, sizeof which)
    LOAD(GetErrorString);
    LOAD(Version);
    LOAD(CreateProgram);
    LOAD(DestroyProgram);
    LOAD(CompileProgram);
    LOAD(GetProgramLogSize);
    LOAD(GetProgramLog);
    LOAD(GetPTXSize);
    LOAD(GetPTX);
    if (miss) {
        oc_nvrtc_close(nv);
        return oc_err_set(err, OC_ERR_DEVICE, "nvrtc: the loaded NVRTC has no %s", which);
    }
    /* newer entry points: without them, PTX only and no arch list */
    int opt = 0;
    char ign[64];
    *(void **)&nv->GetNumSupportedArchs = sym(lib, "nvrtcGetNumSupportedArchs", &opt, ign, sizeof ign);
    *(void **)&nv->GetSupportedArchs = sym(lib, "nvrtcGetSupportedArchs", &opt, ign, sizeof ign);
    *(void **)&nv->GetCUBINSize = sym(lib, "nvrtcGetCUBINSize", &opt, ign, sizeof ign);
    *(void **)&nv->GetCUBIN = sym(lib, "nvrtcGetCUBIN", &opt, ign, sizeof ign);
#undef LOAD
    nvrtcResult r = nv->Version(&nv->major, &nv->minor);
    if (r != NVRTC_SUCCESS) {
        oc_err_set(err, OC_ERR_DEVICE, "nvrtc: nvrtcVersion failed: %s", nv->GetErrorString(r));
        oc_nvrtc_close(nv);
        return OC_ERR_DEVICE;
    }
    if (nv->GetNumSupportedArchs && nv->GetSupportedArchs &&
        nv->GetNumSupportedArchs(&nv->narch) == NVRTC_SUCCESS && nv->narch > 0) {
        nv->archs = calloc((size_t)nv->narch, sizeof *nv->archs);
        if (!nv->archs || nv->GetSupportedArchs(nv->archs) != NVRTC_SUCCESS) {
            free(nv->archs);
            nv->archs = NULL;
            nv->narch = 0;
        }
    }
    *out = nv;
    return OC_OK;
}

void oc_nvrtc_close(struct oc_nvrtc *nv)
{
    if (!nv) return;
    free(nv->archs);
    if (nv->lib) dlclose(nv->lib);
    free(nv);
}

void oc_nvrtc_version(const struct oc_nvrtc *nv, int *major, int *minor)
{
    *major = nv ? nv->major : 0;
    *minor = nv ? nv->minor : 0;
}

int oc_nvrtc_has_arch(const struct oc_nvrtc *nv, int sm)
{
    if (!nv->GetCUBIN) return 0;
    for (int i = 0; i < nv->narch; i++)
        if (nv->archs[i] == sm) return 1;
    return 0;
}

void oc_nvrtc_arch_for(const struct oc_nvrtc *nv, int sm, char *buf, size_t n)
{
    if (oc_nvrtc_has_arch(nv, sm)) {
        snprintf(buf, n, "sm_%d", sm);
        return;
    }
    int best = 0;
    for (int i = 0; i < nv->narch; i++)
        if (nv->archs[i] <= sm && nv->archs[i] > best) best = nv->archs[i];
    if (!nv->narch) best = sm; /* an old NVRTC without the list: let it decide */
    if (best) snprintf(buf, n, "compute_%d", best);
    else if (n) buf[0] = 0;
}

/* ---------------------------------------------------------------- compiling */

void oc_nvrtc_out_free(struct oc_nvrtc_out *o)
{
    if (!o) return;
    free(o->image);
    free(o->log);
    memset(o, 0, sizeof *o);
}

static int build_opts(const struct oc_nvrtc_opts *o, char store[4][64], const char **opts)
{
    int n = 0;
    snprintf(store[0], sizeof store[0], "--gpu-architecture=%s", o->arch ? o->arch : "");
    opts[n++] = store[0];
    if (o->no_fmad) opts[n++] = "--fmad=false";
    if (o->lineinfo) opts[n++] = "--generate-line-info";
    if (o->resource_usage && o->arch && !strncmp(o->arch, "sm_", 3)) opts[n++] = "--ptxas-options=-v";
    return n;
}

void oc_nvrtc_options_str(const struct oc_nvrtc_opts *o, char *buf, size_t n)
{
    char store[4][64];
    const char *opts[8];
    int k = build_opts(o, store, opts);
    size_t p = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < k && p < n; i++) p += (size_t)snprintf(buf + p, n - p, "%s%s", i ? " " : "", opts[i]);
}

/* Writes src and log next to each other; returns the source's path in path. */
static int dump(const char *src, const char *log, const char *name, char *path, size_t n)
{
    const char *dir = getenv("OC_DUMP_DIR");
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    uint64_t h = oc_hash64(src, strlen(src), 0);
    char base[900];
    snprintf(base, sizeof base, "%s/oodc-nvrtc-%.40s-%016llx", dir, name, (unsigned long long)h);
    for (char *c = base + strlen(dir) + 1; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            *c = '_';
    snprintf(path, n, "%s.cu", base);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(src, f);
    int bad = fclose(f) != 0;
    char lp[1024];
    snprintf(lp, sizeof lp, "%s.log", base);
    f = fopen(lp, "w");
    if (!f) return -1;
    fputs(log ? log : "", f);
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

enum oc_status oc_nvrtc_compile(struct oc_nvrtc *nv, const char *src, const char *name,
                                const struct oc_nvrtc_opts *o, struct oc_nvrtc_out *out,
                                struct oc_err *err)
{
    memset(out, 0, sizeof *out);
    if (!o->arch || !*o->arch)
        return oc_err_set(err, OC_ERR_INVALID, "nvrtc: compiling %s: no target architecture", name);
    int cubin = !strncmp(o->arch, "sm_", 3);
    if (cubin && !nv->GetCUBIN)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "nvrtc: NVRTC %d.%d cannot emit a CUBIN for %s (use compute_XY for PTX)",
                          nv->major, nv->minor, o->arch);
    char store[4][64];
    const char *opts[8];
    int nopt = build_opts(o, store, opts);
    nvrtcProgram prog;
    nvrtcResult r = nv->CreateProgram(&prog, src, name, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS)
        return oc_err_set(err, OC_ERR_DEVICE, "nvrtc: nvrtcCreateProgram(%s) failed: %s", name,
                          nv->GetErrorString(r));
    enum oc_status st = OC_OK;
    nvrtcResult cr = nv->CompileProgram(prog, nopt, opts);
    size_t ls = 0;
    r = nv->GetProgramLogSize(prog, &ls);
    out->log = malloc(ls + 1);
    if (!out->log) {
        st = oc_err_set(err, OC_ERR_NOMEM, "nvrtc: out of memory");
        goto done;
    }
    out->log[0] = 0;
    if (r == NVRTC_SUCCESS && ls > 0) {
        r = nv->GetProgramLog(prog, out->log);
        if (r != NVRTC_SUCCESS) out->log[0] = 0;
        out->log[ls] = 0;
    }
    if (cr != NVRTC_SUCCESS) {
        char where[1100] = "";
        const char *d = getenv("OC_DUMP_ON_ERROR");
        if (d && *d && strcmp(d, "0")) {
            char path[1024];
            if (dump(src, out->log, name, path, sizeof path) == 0)
                snprintf(where, sizeof where, "; source and log written to %s and .log", path);
            else
                snprintf(where, sizeof where, "; could not write the dump (%s)", strerror(errno));
        } else {
            snprintf(where, sizeof where, "; set OC_DUMP_ON_ERROR=1 to keep the source");
        }
        st = oc_err_set(err, OC_ERR_DEVICE, "nvrtc: compiling %s for %s failed: %s%s\n%.700s", name,
                        o->arch, nv->GetErrorString(cr), where, out->log);
        goto done;
    }
    size_t sz = 0;
    r = cubin ? nv->GetCUBINSize(prog, &sz) : nv->GetPTXSize(prog, &sz);
    if (r != NVRTC_SUCCESS) {
        st = oc_err_set(err, OC_ERR_DEVICE, "nvrtc: %s(%s) failed: %s",
                        cubin ? "nvrtcGetCUBINSize" : "nvrtcGetPTXSize", name, nv->GetErrorString(r));
        goto done;
    }
    out->image = malloc(sz + 1);
    if (!out->image) {
        st = oc_err_set(err, OC_ERR_NOMEM, "nvrtc: out of memory for a %zu-byte image", sz);
        goto done;
    }
    r = cubin ? nv->GetCUBIN(prog, out->image) : nv->GetPTX(prog, out->image);
    if (r != NVRTC_SUCCESS) {
        st = oc_err_set(err, OC_ERR_DEVICE, "nvrtc: %s(%s) failed: %s", cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX",
                        name, nv->GetErrorString(r));
        goto done;
    }
    out->image[sz] = 0;
    out->size = sz;
    out->cubin = cubin;
done:
    nv->DestroyProgram(&prog);
    if (st) {
        free(out->image);
        out->image = NULL;
        out->size = 0;
        /* the log stays for the caller */
    }
    return st;
}

#else /* !OC_HAVE_CUDA */

int oc_cuda_built(void) { return 0; }

void *oc_cuda_dlopen(const char *const *names, char *why, size_t n)
{
    if (why && n) snprintf(why, n, "built without CUDA");
    return NULL;
}

enum oc_status oc_nvrtc_open(struct oc_nvrtc **out, struct oc_err *err)
{
    *out = NULL;
    return oc_err_set(err, OC_ERR_UNSUPPORTED,
                      "nvrtc: this oodc was built without CUDA (no toolkit found at build time)");
}
void oc_nvrtc_close(struct oc_nvrtc *nv) { (void)nv; }
void oc_nvrtc_version(const struct oc_nvrtc *nv, int *major, int *minor) { *major = *minor = 0; }
int oc_nvrtc_has_arch(const struct oc_nvrtc *nv, int sm) { return 0; }
void oc_nvrtc_arch_for(const struct oc_nvrtc *nv, int sm, char *buf, size_t n)
{
    if (n) buf[0] = 0;
}
void oc_nvrtc_out_free(struct oc_nvrtc_out *o) { (void)o; }
void oc_nvrtc_options_str(const struct oc_nvrtc_opts *o, char *buf, size_t n)
{
    if (n) buf[0] = 0;
}
enum oc_status oc_nvrtc_compile(struct oc_nvrtc *nv, const char *src, const char *name,
                                const struct oc_nvrtc_opts *o, struct oc_nvrtc_out *out,
                                struct oc_err *err)
{
    memset(out, 0, sizeof *out);
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "nvrtc: this oodc was built without CUDA");
}

#endif /* OC_HAVE_CUDA */

/* ---------------------------------------------------------------- ptxas reports (no CUDA needed) */

/* ptxas -v prints, per entry function:
 *   ptxas info    : Compiling entry function 'k_...' for 'sm_90'
 *   ptxas info    : Function properties for k_...
 *   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
 *   ptxas info    : Used 14 registers, used 0 barriers, ... */
int oc_ptxas_parse(const char *log, struct oc_ptxas_fn *fns, int max)
{
    int n = 0, cur = -1;
    for (const char *l = log; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char buf[512];
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, l, len);
        buf[len] = 0;
        const char *q;
        if ((q = strstr(buf, "Compiling entry function '"))) {
            q += strlen("Compiling entry function '");
            const char *end = strchr(q, '\'');
            cur = n < max ? n : -1;
            if (cur >= 0) {
                memset(&fns[cur], 0, sizeof fns[cur]);
                size_t k = end ? (size_t)(end - q) : strlen(q);
                if (k >= sizeof fns[cur].name) k = sizeof fns[cur].name - 1;
                memcpy(fns[cur].name, q, k);
                fns[cur].name[k] = 0;
            }
            n++;
        } else if (cur >= 0 && (q = strstr(buf, "bytes stack frame"))) {
            int a = 0, b = 0, c = 0;
            const char *s = buf;
            while (*s && !(*s >= '0' && *s <= '9')) s++;
            if (sscanf(s, "%d bytes stack frame, %d bytes spill stores, %d bytes spill loads", &a, &b, &c) == 3) {
                fns[cur].stack = a;
                fns[cur].spill_stores = b;
                fns[cur].spill_loads = c;
            }
        } else if (cur >= 0 && (q = strstr(buf, "Used "))) {
            int r = 0;
            if (sscanf(q, "Used %d registers", &r) == 1) fns[cur].regs = r;
        }
        l = e ? e + 1 : l + len;
    }
    return n;
}
