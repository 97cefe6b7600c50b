/* cuda-emu.c - a host emulation of the CUDA device, for testing the CUDA
 * backend where no GPU is: the generated CUDA C is compiled as host C++
 * (the system's C++ compiler, behind a small header that defines the CUDA
 * built-ins) and every launch runs its grid on the CPU, each GPU thread a
 * fiber (ucontext) of its block. Fibers switch only at __syncthreads and
 * at warp shuffles, which are real barriers over the block / warp here, so
 * warp-shuffle and shared-memory reductions run exactly as written.
 *
 * What it checks: the generated kernels' semantics (index maps, guards,
 * stages, reductions, the vector path, the grid-stride loops, the helper
 * kernels of the library calls) and, through struct oc_cuda in emulation
 * mode, the executor's whole path (allocation, copies, launches, assigns,
 * snapshots). What it cannot check: the device's math library (host libm
 * stands in), real concurrency and timing. A fiber is entered once with
 * setcontext and afterwards switched with sigsetjmp/siglongjmp without the
 * signal mask, which (unlike swapcontext) makes no system call.
 *
 * Compiles are slow next to NVRTC, so a test first compiles everything it
 * will need in one translation unit (oc_emu_preload); a later module whose
 * functions are all preloaded is resolved without compiling.
 */
/* fibers switch with sigsetjmp/siglongjmp between their own stacks, which
 * fortified longjmp would refuse */
#undef _FORTIFY_SOURCE
#include "cuda-impl.h"

#include <dlfcn.h>
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef OC_HOST_CXX
#define OC_HOST_CXX "c++"
#endif

/* The CUDA built-ins as host C++. The emulator fills oc_emu_ctx. */
static const char emu_header[] =
    "// oodc host emulation of the CUDA built-ins (runtime/cuda-emu.c)\n"
    "#include <math.h>\n"
    "#include <string.h>\n"
    "#define __global__\n"
    "#define __device__\n"
    "#define __host__\n"
    "#define __forceinline__ inline\n"
    "#define __launch_bounds__(...)\n"
    "#define __shared__ static\n"
    "struct oc_emu_api {\n"
    "    unsigned tid, bid, bdim, gdim;\n"
    "    void *self;\n"
    "    void (*sync)(void *self);\n"
    "    unsigned long long (*shfl_xor)(void *self, unsigned long long v, int lanemask);\n"
    "};\n"
    "extern \"C\" { oc_emu_api *oc_emu_ctx = 0; }\n"
    "struct oc_d3 { unsigned x, y, z; };\n"
    "#define threadIdx (oc_d3{oc_emu_ctx->tid, 0u, 0u})\n"
    "#define blockIdx (oc_d3{oc_emu_ctx->bid, 0u, 0u})\n"
    "#define blockDim (oc_d3{oc_emu_ctx->bdim, 1u, 1u})\n"
    "#define gridDim (oc_d3{oc_emu_ctx->gdim, 1u, 1u})\n"
    "static inline void __syncthreads() { oc_emu_ctx->sync(oc_emu_ctx->self); }\n"
    /* a warp barrier: a shuffle that exchanges nothing */
    "static inline void __syncwarp(unsigned = 0xffffffffu) { oc_emu_ctx->shfl_xor(oc_emu_ctx->self, 0, 0); }\n"
    "template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int o)\n"
    "{\n"
    "    unsigned long long b = 0;\n"
    "    memcpy(&b, &v, sizeof v);\n"
    "    b = oc_emu_ctx->shfl_xor(oc_emu_ctx->self, b, o);\n"
    "    T r;\n"
    "    memcpy(&r, &b, sizeof r);\n"
    "    return r;\n"
    "}\n"
    "static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }\n"
    "static inline float rsqrtf(float x) { return (float)(1.0 / sqrt((double)x)); }\n"
    "static inline float __frcp_rn(float x) { return (float)(1.0 / (double)x); }\n"
    "static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }\n"
    "struct alignas(16) float4 { float x, y, z, w; };\n"
    "struct alignas(16) int4 { int x, y, z, w; };\n"
    "struct alignas(16) double2 { double x, y; };\n"
    "struct alignas(4) uchar4 { unsigned char x, y, z, w; };\n"
    "static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }\n"
    "static inline int4 make_int4(int a, int b, int c, int d) { return int4{a, b, c, d}; }\n"
    "static inline double2 make_double2(double a, double b) { return double2{a, b}; }\n"
    "static inline uchar4 make_uchar4(unsigned char a, unsigned char b, unsigned char c, unsigned char d) { return uchar4{a, b, c, d}; }\n"
    "#line 1 \"generated.cu\"\n";

/* ---------------------------------------------------------------- fibers */

#define MAXBLOCK 1024
#define STACK (128 * 1024)

struct emu_api {
    unsigned tid, bid, bdim, gdim;
    void *self;
    void (*sync)(void *self);
    unsigned long long (*shfl_xor)(void *self, unsigned long long v, int lanemask);
};

struct fiber {
    ucontext_t uc;
    sigjmp_buf jb;
    int started, done;
};

struct emu_lib {
    void *dl;
    struct emu_api **ctx; /* the library's oc_emu_ctx */
    char **names;         /* its kernels */
    int nnames;
};

struct oc_emu {
    char cxx[512];
    char dir[512]; /* scratch for sources and libraries */
    int seq;
    struct emu_lib **libs; /* each on its own: modules point at them */
    int nlibs;
    /* the launch in progress */
    struct emu_api api;
    struct fiber *f;
    char *stacks;
    ucontext_t sched;
    sigjmp_buf sched_jb;
    void (*tramp)(void **);
    void **args;
    int cur;
    int bar_count, bar_gen;
    int wcount[MAXBLOCK / 32], wgen[MAXBLOCK / 32];
    unsigned long long slot[MAXBLOCK];
    long launches;
};

static void yield(struct oc_emu *e)
{
    if (!sigsetjmp(e->f[e->cur].jb, 0)) siglongjmp(e->sched_jb, 1);
}

static void emu_sync(void *self)
{
    struct oc_emu *e = self;
    int gen = e->bar_gen;
    if (++e->bar_count == (int)e->api.bdim) {
        e->bar_count = 0;
        e->bar_gen++;
        return;
    }
    while (e->bar_gen == gen) yield(e);
}

static void warp_barrier(struct oc_emu *e, int w)
{
    int gen = e->wgen[w];
    if (++e->wcount[w] == 32) {
        e->wcount[w] = 0;
        e->wgen[w]++;
        return;
    }
    while (e->wgen[w] == gen) yield(e);
}

static unsigned long long emu_shfl_xor(void *self, unsigned long long v, int o)
{
    struct oc_emu *e = self;
    int t = e->cur, w = t >> 5;
    e->slot[t] = v;
    warp_barrier(e, w);
    unsigned long long r = e->slot[(t & ~31) | ((t & 31) ^ (o & 31))];
    warp_barrier(e, w);
    return r;
}

/* makecontext passes ints: the emulator's address in two halves */
static void fiber_main(int hi, int lo)
{
    struct oc_emu *e = (struct oc_emu *)(((uintptr_t)(unsigned)hi << 32) | (uintptr_t)(unsigned)lo);
    e->tramp(e->args);
    e->f[e->cur].done = 1;
    siglongjmp(e->sched_jb, 1);
}

/* ---------------------------------------------------------------- setup */

enum oc_status oc_emu_new(struct oc_emu **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_emu *e = calloc(1, sizeof *e);
    if (!e) return oc_err_set(err, OC_ERR_NOMEM, "cuda emulation: out of memory");
    const char *cxx = getenv("OC_EMU_CXX");
    snprintf(e->cxx, sizeof e->cxx, "%s", cxx && *cxx ? cxx : OC_HOST_CXX);
    e->f = calloc(MAXBLOCK, sizeof *e->f);
    if (!e->f) {
        oc_emu_free(e);
        return oc_err_set(err, OC_ERR_NOMEM, "cuda emulation: out of memory");
    }
    e->api.self = e;
    e->api.sync = emu_sync;
    e->api.shfl_xor = emu_shfl_xor;
    *out = e;
    return OC_OK;
}

void oc_emu_free(struct oc_emu *e)
{
    if (!e) return;
    for (int i = 0; i < e->nlibs; i++) {
        if (e->libs[i]->dl) dlclose(e->libs[i]->dl);
        for (int j = 0; j < e->libs[i]->nnames; j++) free(e->libs[i]->names[j]);
        free(e->libs[i]->names);
        free(e->libs[i]);
    }
    free(e->libs);
    free(e->f);
    free(e->stacks);
    if (e->dir[0]) rmdir(e->dir); /* empty: sources and libraries are removed after loading */
    free(e);
}

/* ---------------------------------------------------------------- sources */

struct sig {
    char name[128];
    char params[2048];
};

/* The kernels of a source: every `extern "C" __global__ void` function. */
static int scan(const char *src, struct sig **out)
{
    int n = 0, cap = 0;
    struct sig *v = NULL;
    const char *key = "extern \"C\" __global__ void";
    for (const char *p = strstr(src, key); p; p = strstr(p + 1, key)) {
        const char *q = p + strlen(key);
        while (*q == ' ' || *q == '\n') q++;
        if (!strncmp(q, "__launch_bounds__(", 18)) {
            q = strchr(q, ')');
            if (!q) break;
            q++;
        }
        while (*q == ' ' || *q == '\n') q++;
        const char *lp = strchr(q, '(');
        if (!lp) break;
        const char *rp = strchr(lp, ')');
        if (!rp) break;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            struct sig *nv = realloc(v, sizeof *v * (size_t)cap);
            if (!nv) break;
            v = nv;
        }
        struct sig *s = &v[n++];
        snprintf(s->name, sizeof s->name, "%.*s", (int)(lp - q), q);
        snprintf(s->params, sizeof s->params, "%.*s", (int)(rp - lp - 1), lp + 1);
    }
    *out = v;
    return n;
}

/* "const float *__restrict__ s1" -> "const float *" */
static void param_type(const char *p, char *buf, size_t n)
{
    char t[512];
    snprintf(t, sizeof t, "%s", p);
    char *r;
    while ((r = strstr(t, "__restrict__"))) memmove(r, r + 12, strlen(r + 12) + 1);
    size_t l = strlen(t);
    while (l && t[l - 1] == ' ') t[--l] = 0;
    while (l && (t[l - 1] == '_' || (t[l - 1] >= '0' && t[l - 1] <= '9') ||
                 (t[l - 1] >= 'a' && t[l - 1] <= 'z') || (t[l - 1] >= 'A' && t[l - 1] <= 'Z')))
        t[--l] = 0;
    const char *s = t;
    while (*s == ' ') s++;
    snprintf(buf, n, "%s", s);
}

static int write_file(const char *path, const char *a, const char *b, const char *c)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(a, f);
    fputs(b, f);
    fputs(c, f);
    return fclose(f);
}

static int run_compiler(struct oc_emu *e, const char *src, const char *lib, const char *log)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        FILE *lf = freopen(log, "w", stderr);
        (void)lf;
        execlp(e->cxx, e->cxx, "-std=c++17", "-O1", "-w", "-fPIC", "-shared", "-x", "c++", src, "-o",
               lib, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static enum oc_status compile_lib(struct oc_emu *e, const char *src, struct emu_lib **out,
                                  struct oc_err *err)
{
    struct sig *sg = NULL;
    int ns = scan(src, &sg);
    struct { char *p; size_t n, cap; } tr = {0};
    /* trampolines: kernel(args...) from an array of pointers to the arguments */
    for (int i = 0; i < ns; i++) {
        char line[8192];
        size_t p = (size_t)snprintf(line, sizeof line, "extern \"C\" void oc_emu_tramp_%s(void **a) { %s(",
                                    sg[i].name, sg[i].name);
        char *save = NULL, params[2048];
        snprintf(params, sizeof params, "%s", sg[i].params);
        int k = 0;
        for (char *tok = strtok_r(params, ",", &save); tok && strcmp(tok, "void"); tok = strtok_r(NULL, ",", &save), k++) {
            char ty[512];
            param_type(tok, ty, sizeof ty);
            p += (size_t)snprintf(line + p, sizeof line - p, "%s*(%s *)a[%d]", k ? ", " : "", ty, k);
        }
        p += (size_t)snprintf(line + p, sizeof line - p, "); }\n");
        if (tr.n + p + 1 > tr.cap) {
            tr.cap = (tr.n + p + 1) * 2 + 4096;
            char *q = realloc(tr.p, tr.cap);
            if (!q) break;
            tr.p = q;
        }
        memcpy(tr.p + tr.n, line, p + 1);
        tr.n += p;
    }
    char base[700] = "", srcp[800] = "", libp[800] = "", logp[800] = "";
    enum oc_status st = OC_OK;
    /* OC_EMU_CACHE_DIR keeps compiled libraries across processes, by the
     * hash of everything compiled (tests reuse one big compile) */
    const char *cdir = getenv("OC_EMU_CACHE_DIR");
    int cached = 0;
    if (cdir && *cdir) {
        uint64_t h = oc_hash64(emu_header, strlen(emu_header), 0);
        h = oc_hash64(src, strlen(src), h);
        h = oc_hash64(tr.p ? tr.p : "", tr.n, h);
        h = oc_hash64(e->cxx, strlen(e->cxx), h);
        mkdir(cdir, 0755);
        snprintf(libp, sizeof libp, "%s/emu-%016llx.so", cdir, (unsigned long long)h);
        cached = access(libp, R_OK) == 0;
    }
    if (!cached) {
        /* the scratch directory, made at the first compile */
        if (!e->dir[0]) {
            const char *tmp = getenv("TMPDIR");
            snprintf(e->dir, sizeof e->dir, "%s/oodc-emu-XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (!mkdtemp(e->dir)) {
                st = oc_err_set(err, OC_ERR_IO, "cuda emulation: cannot make a scratch directory %s: %s",
                                e->dir, strerror(errno));
                e->dir[0] = 0;
                goto out;
            }
        }
        snprintf(base, sizeof base, "%s/m%d", e->dir, e->seq++);
        if (!libp[0]) snprintf(libp, sizeof libp, "%s.so", base);
        snprintf(srcp, sizeof srcp, "%s.cpp", base);
        snprintf(logp, sizeof logp, "%s.log", base);
    }
    if (!cached) {
        char outp[800];
        snprintf(outp, sizeof outp, "%s.tmp.so", base);
        if (write_file(srcp, emu_header, src, tr.p ? tr.p : "")) {
            st = oc_err_set(err, OC_ERR_IO, "cuda emulation: cannot write %s: %s", srcp, strerror(errno));
            goto out;
        }
        int rc = run_compiler(e, srcp, outp, logp);
        if (rc) {
            char msg[700] = "";
            FILE *f = fopen(logp, "r");
            if (f) {
                size_t m = fread(msg, 1, sizeof msg - 1, f);
                msg[m] = 0;
                fclose(f);
            }
            st = oc_err_set(err, OC_ERR_DEVICE, "cuda emulation: %s failed (exit %d) on %s:\n%s", e->cxx, rc,
                            srcp, msg);
            goto out; /* keep the source for the reader */
        }
        if (rename(outp, libp)) {
            st = oc_err_set(err, OC_ERR_IO, "cuda emulation: rename %s: %s", outp, strerror(errno));
            goto out;
        }
        unlink(srcp);
        unlink(logp);
    }
    void *dl = dlopen(libp, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        st = oc_err_set(err, OC_ERR_DEVICE, "cuda emulation: dlopen %s: %s", libp, dlerror());
        goto out;
    }
    struct emu_lib **nl = realloc(e->libs, sizeof *nl * (size_t)(e->nlibs + 1));
    struct emu_lib *L = calloc(1, sizeof *L);
    if (!nl || !L) {
        if (nl) e->libs = nl;
        free(L);
        dlclose(dl);
        st = oc_err_set(err, OC_ERR_NOMEM, "cuda emulation: out of memory");
        goto out;
    }
    e->libs = nl;
    e->libs[e->nlibs++] = L;
    L->dl = dl;
    L->ctx = dlsym(dl, "oc_emu_ctx");
    if (L->ctx) *L->ctx = &e->api;
    L->names = calloc((size_t)ns + 1, sizeof *L->names);
    for (int i = 0; L->names && i < ns; i++) L->names[L->nnames++] = strdup(sg[i].name);
    *out = L;
    if (!cdir || !*cdir) unlink(libp); /* the mapping stays valid */
out:
    free(sg);
    free(tr.p);
    return st;
}

enum oc_status oc_emu_preload(struct oc_emu *e, const char *src, struct oc_err *err)
{
    struct emu_lib *L;
    return compile_lib(e, src, &L, err);
}

/* A module: the library that defines every kernel of src (a preloaded one
 * when possible). */
enum oc_status oc_emu_load(struct oc_emu *e, const char *src, void **module, struct oc_err *err)
{
    struct sig *sg = NULL;
    int ns = scan(src, &sg);
    for (int l = e->nlibs - 1; l >= 0; l--) {
        int all = 1;
        for (int i = 0; i < ns && all; i++) {
            int found = 0;
            for (int j = 0; j < e->libs[l]->nnames && !found; j++) found = !strcmp(e->libs[l]->names[j], sg[i].name);
            all = found;
        }
        if (all && ns) {
            free(sg);
            *module = e->libs[l];
            return OC_OK;
        }
    }
    free(sg);
    struct emu_lib *L;
    enum oc_status st = compile_lib(e, src, &L, err);
    if (!st) *module = L;
    return st;
}

enum oc_status oc_emu_function(struct oc_emu *e, void *module, const char *name, void **fn,
                               struct oc_err *err)
{
    struct emu_lib *L = module;
    char sym[256];
    snprintf(sym, sizeof sym, "oc_emu_tramp_%s", name);
    *fn = dlsym(L->dl, sym);
    if (!*fn)
        return oc_err_set(err, OC_ERR_DEVICE, "cuda emulation: no kernel %s in the module", name);
    return OC_OK;
}

/* ---------------------------------------------------------------- launching */

/* Runs fiber t until it yields at a barrier or returns. */
static void resume(struct oc_emu *e, unsigned t)
{
    e->cur = (int)t;
    e->api.tid = t;
    struct fiber *f = &e->f[t];
    if (!sigsetjmp(e->sched_jb, 0)) {
        if (!f->started) {
            f->started = 1;
            setcontext(&f->uc);
        }
        siglongjmp(f->jb, 1);
    }
}

enum oc_status oc_emu_launch(struct oc_emu *e, void *fn, unsigned grid, unsigned block, void **args,
                             struct oc_err *err)
{
    if (block == 0 || block > MAXBLOCK || block % 32)
        return oc_err_set(err, OC_ERR_INVALID, "cuda emulation: block of %u threads", block);
    if (!e->stacks && !(e->stacks = malloc((size_t)MAXBLOCK * STACK)))
        return oc_err_set(err, OC_ERR_NOMEM, "cuda emulation: out of memory for fiber stacks");
    *(void **)&e->tramp = fn;
    e->args = args;
    e->api.bdim = block;
    e->api.gdim = grid;
    uintptr_t self = (uintptr_t)e;
    for (unsigned b = 0; b < grid; b++) {
        e->api.bid = b;
        e->bar_count = 0;
        memset(e->wcount, 0, sizeof e->wcount);
        for (unsigned t = 0; t < block; t++) {
            struct fiber *f = &e->f[t];
            f->done = 0;
            f->started = 0;
            getcontext(&f->uc);
            f->uc.uc_stack.ss_sp = e->stacks + (size_t)t * STACK;
            f->uc.uc_stack.ss_size = STACK;
            f->uc.uc_link = &e->sched;
            makecontext(&f->uc, (void (*)(void))fiber_main, 2, (int)(unsigned)(self >> 32),
                        (int)(unsigned)(self & 0xffffffffu));
        }
        /* round robin until every thread of the block has returned */
        for (unsigned live = block; live;) {
            live = 0;
            for (unsigned t = 0; t < block; t++) {
                if (e->f[t].done) continue;
                resume(e, t);
                live += !e->f[t].done;
            }
        }
    }
    e->launches++;
    return OC_OK;
}

long oc_emu_launches(const struct oc_emu *e) { return e ? e->launches : 0; }
