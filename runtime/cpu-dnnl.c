/* cpu-dnnl.c - CPU convolutions through oneDNN (Debian libdnnl-dev, the
 * library PyTorch's CPU convolutions use), beside im2col + OpenBLAS
 * (cpu-lib.c); the executor asks here first for every library kernel.
 *
 * Which one runs is decided per kernel when the executable is compiled:
 *   OC_CONV=auto    (default) oc_dnnl_prefer: a static rule from measured
 *                   times on the WRN layer shapes (bench/conv.c; the table
 *                   is in the rule's comment below)
 *   OC_CONV=im2col  every convolution on im2col + OpenBLAS
 *   OC_CONV=dnnl    every f32 convolution on oneDNN (compile fails if
 *                   oneDNN is missing or refuses a kernel)
 * f64 convolutions (gradient checks) always use im2col: oneDNN has no f64.
 *
 * Each chosen kernel gets, at compile time, its primitives (forward,
 * backward-data or backward-weights, the last two with a forward hint as
 * oneDNN requires) and memory objects over oodc's own buffers, which stay
 * plain NCHW / OIHW f32; a run only points them at the kernel's buffers
 * and executes. oneDNN picks blocked layouts (nChw16c and the like: 1.3-2x
 * faster than its plain-layout path, which is an im2col GEMM no faster than
 * ours), so the operands are reordered into a per-executable workspace and
 * the result back, on every run (reorders included in every measurement).
 * OC_DNNL_LAYOUT=plain makes oneDNN use the plain layouts directly (for
 * measurements only).
 *
 * Geometry: oodc's conv has symmetric zero padding (p, p) and
 * OH = (H + 2p - KH) / s + 1 rounded down (ir/graph.c); oneDNN's
 * descriptor takes padding_l = padding_r = p and checks the same rounded
 * formula, so windows and the zero rows past the last window agree.
 *
 * Threads: Debian's oneDNN runs on OpenMP (DNNL_CPU_RUNTIME = OMP, libgomp;
 * dnnl_version()->cpu_runtime, printed with OC_DEBUG=1). An OpenMP team
 * beside oodc's pool oversubscribes the cores: libgomp's idle threads spin
 * (GOMP_SPINCOUNT, ~300k pauses) after every oneDNN call, right when oodc's
 * pool runs the next loop kernel (tests/ood/test-eval ran 1.6-2.4x slower
 * that way on 2 cores).
 * So, as cpu-lib.c does with BLAS, oneDNN runs single-threaded and the work
 * is split over oodc's pool: the batch is cut into min(N, nthreads) slices,
 * each with its own primitive (the same compiled kernel: oneDNN's primitive
 * cache), memory objects, stream, workspace part and user-managed
 * scratchpad (oneDNN's library-managed scratchpad is shared between
 * primitives and raced between concurrent slices), and each pool thread
 * runs one with omp_set_num_threads(1) on itself (looked up with dlsym: a
 * sequential or TBB build has none and needs none). No OpenMP team is
 * ever started. Weight gradients are summed over slices afterwards, in
 * slice order (deterministic).
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "cpu-dnnl.h"
#include "cpu-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_DNNL
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#endif

int oc_dnnl_available(void)
{
#ifdef OC_HAVE_DNNL
    return 1;
#else
    return 0;
#endif
}

enum oc_status oc_dnnl_mode_env(enum oc_conv_impl *mode, struct oc_err *err)
{
    const char *s = getenv("OC_CONV");
    *mode = OC_CONV_AUTO;
    if (!s || !*s || !strcmp(s, "auto")) return OC_OK;
    if (!strcmp(s, "im2col"))
        *mode = OC_CONV_IM2COL;
    else if (!strcmp(s, "dnnl") || !strcmp(s, "onednn"))
        *mode = OC_CONV_DNNL;
    else
        return oc_err_set(err, OC_ERR_INVALID,
                          "compile: OC_CONV=\"%s\" is not one of auto, im2col, dnnl", s);
    return OC_OK;
}

/* The auto rule, from bench/conv.c (`oodc bench conv`) on every layer
 * shape of WRN-10-2 (1x28x28) and WRN-28-10 (3x32x32) at batch 128 and 1,
 * 1 thread, oneDNN with blocked layouts (reorders included). CPU ms per
 * call, im2col / oneDNN, a few rows of the tables in the report:
 *   3x3 s1, 32->32 @28, b128       fwd 32.9/15.3  d/dx 34.4/17.1  d/dw 38.7/16.5
 *   3x3 s1, 160->160 @32, b128     fwd 547/329    d/dx 512/396    d/dw 508/397
 *   3x3 s1, 640->640 @8, b128      fwd 651/310    d/dx 526/344    d/dw 432/391
 *   3x3 s2, 320->640 @16, b128     fwd 295/178    d/dx 266/220    d/dw 226/275
 *   3x3 s1, 640->640 @8, b1        fwd 4.53/4.65  d/dx 4.62/4.55  d/dw 6.66/6.92
 *   1x1 s1, 16->160 @32, b128      fwd 20.1/22.9  d/dx 17.5/25.0  d/dw 16.9/25.8
 *   stem 3->16 @32, b128           fwd 4.42/2.14  d/dx 4.78/6.20  d/dw 5.31/1.65
 * Over a whole step's convolutions (each shape times its count, the three
 * ops): WRN-10-2 b128 401 -> 240 ms, WRN-28-10 b128 33.3 -> 23.9 s,
 * WRN-10-2 b1 3.3 -> 1.7 ms, WRN-28-10 b1 289 -> 252 ms. So oneDNN takes the
 * 3x3 convolutions, except: the stem's backward-data (few input channels);
 * 1x1 convolutions (im2col of a 1x1 is a plain copy, and OpenBLAS's GEMM
 * beat oneDNN's by 10-35% at batch 128); calls with under 128 output
 * pixels (batch 1 on 8x8: the weight reorder, paid every call, costs
 * about what the convolution saves); and the wide stride-2 backward-
 * weights (C*O above 16384: 0.82-0.93x at batch 128). Measured on one
 * thread; with more, oneDNN splits batch-1 calls that im2col (one image
 * group) cannot, so the rule does not depend on nthreads. */
int oc_dnnl_prefer(enum oc_kkind kind, const struct oc_kconv *c, int nthreads)
{
    (void)nthreads;
    if (c->KH == 1 && c->KW == 1) return 0;
    if (c->N * c->P < 128) return 0;
    if (c->C < 8) return kind != OC_K_CONV2D_GRAD_INPUT;
    if (kind == OC_K_CONV2D_GRAD_WEIGHT && (c->sh > 1 || c->sw > 1) && c->C * c->O > 16384)
        return 0;
    return 1;
}

#ifndef OC_HAVE_DNNL

struct oc_dnnl {
    int unused;
};

enum oc_status oc_dnnl_new(struct oc_dnnl **out, struct oc_kernel *const *kernels, int n,
                           int nthreads, enum oc_conv_impl mode, int debug, struct oc_err *err)
{
    *out = NULL;
    if (mode == OC_CONV_ENV) {
        enum oc_status st = oc_dnnl_mode_env(&mode, err);
        if (st) return st;
    }
    if (mode != OC_CONV_DNNL) return OC_OK;
    for (int i = 0; i < n; i++)
        if (kernels[i]->kind >= OC_K_CONV2D && kernels[i]->lib->dtype == OC_F32)
            return oc_err_set(err, OC_ERR_UNSUPPORTED,
                              "compile: OC_CONV=dnnl, but this build has no oneDNN "
                              "(install libdnnl-dev: scripts/deps.sh, and reconfigure)");
    return OC_OK;
}

int oc_dnnl_uses(const struct oc_dnnl *d, int i) { return 0; }
int oc_dnnl_run(struct oc_dnnl *d, int i, void **args, struct oc_pool *pool) { return 0; }
void oc_dnnl_free(struct oc_dnnl *d) { free(d); }

#else

typedef void (*omp_set_fn)(int);

/* One slice of the batch (images n0 .. n0+nb) of one kernel, run by one
 * pool thread. Slot s (0 the result, 1..2 the operands, as in struct
 * oc_kernel) is execute argument arg[s] of the kernel; user[s] wraps
 * oodc's buffer (at this slice's images), inner[s] is what the primitive
 * reads or writes: user[s] itself, or a blocked copy in the workspace at
 * off[s] with reorder[s] between the two. */
struct dslice {
    int64_t n0, nb;
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t user[3], inner[3];
    dnnl_primitive_t reorder[3];
    size_t off[3];
    /* oneDNN's scratch (user-managed: the library's shared one is not safe
     * for concurrent slices): [s] of reorder s, [3] of the primitive, all
     * over one region at sp_off (they run one after another) */
    dnnl_memory_t scratch[4];
    size_t sp_off;
    int partial; /* weight gradients, slices after the first: into the workspace at part */
    size_t part;
};

struct dconv {
    int on, nslice;
    int arg[3];
    size_t per_image[3]; /* bytes a slot advances per image (0: the weights) */
    size_t wbytes;       /* bytes of the weights */
    struct dslice *sl;
};

struct oc_dnnl {
    dnnl_engine_t eng;
    omp_set_fn omp_set;
    int nthreads, n, debug;
    struct dconv *k;
    void *ws; /* blocked copies and partial weight gradients; kernels run one at a time */
    size_t ws_bytes;
};

static const char *runtime_name(unsigned r)
{
    switch (r) {
    case DNNL_RUNTIME_SEQ: return "sequential";
    case DNNL_RUNTIME_OMP: return "OpenMP";
    case DNNL_RUNTIME_TBB: return "TBB";
    case DNNL_RUNTIME_THREADPOOL: return "threadpool";
    default: return "unknown";
    }
}

static void dslice_free(struct dslice *sl)
{
    if (sl->prim) dnnl_primitive_destroy(sl->prim);
    for (int s = 0; s < 3; s++) {
        if (sl->reorder[s]) dnnl_primitive_destroy(sl->reorder[s]);
        if (sl->inner[s] && sl->inner[s] != sl->user[s]) dnnl_memory_destroy(sl->inner[s]);
        if (sl->user[s]) dnnl_memory_destroy(sl->user[s]);
    }
    for (int s = 0; s < 4; s++)
        if (sl->scratch[s]) dnnl_memory_destroy(sl->scratch[s]);
    if (sl->stream) dnnl_stream_destroy(sl->stream);
    memset(sl, 0, sizeof *sl);
}

static void dconv_free(struct dconv *k)
{
    for (int i = 0; i < k->nslice; i++) dslice_free(&k->sl[i]);
    free(k->sl);
    memset(k, 0, sizeof *k);
}

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

/* The scratch memory object of pd, if it needs one; *sp grows to its size. */
static dnnl_status_t make_scratch(dnnl_engine_t eng, const_dnnl_primitive_desc_t pd,
                                  dnnl_memory_t *out, size_t *sp)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t b = md ? dnnl_memory_desc_get_size(md) : 0;
    if (!b) return dnnl_success;
    if (round64(b) > *sp) *sp = round64(b);
    return dnnl_memory_create(out, md, eng, DNNL_MEMORY_NONE);
}

/* A reorder primitive from -> to, and its scratch. */
static dnnl_status_t make_reorder(dnnl_engine_t eng, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, const_dnnl_primitive_attr_t attr,
                                  dnnl_primitive_t *out, dnnl_memory_t *scratch, size_t *sp)
{
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(out, pd);
    if (!s) s = make_scratch(eng, pd, scratch, sp);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

/* Builds slice sl of kernel k (its nb images): primitive, stream, memory
 * objects, reorders; *ws grows by the workspace bytes it needs. Returns a
 * oneDNN status and the step that failed in *what. */
static dnnl_status_t dslice_init(struct oc_dnnl *d, const struct oc_kernel *k, struct dconv *dk,
                                 struct dslice *sl, int blocked, size_t *ws, const char **what)
{
    struct oc_kconv c = oc_kir_conv(k);
    dnnl_dims_t xd = {sl->nb, c.C, c.H, c.W}, wd = {c.O, c.C, c.KH, c.KW};
    dnnl_dims_t yd = {sl->nb, c.O, c.OH, c.OW};
    dnnl_dims_t st = {c.sh, c.sw}, pad = {c.ph, c.pw};
    dnnl_memory_desc_t xp, wp, yp, xa, wa, ya; /* plain, and what the conv descriptor asks */
    dnnl_status_t s;
    *what = "memory descriptor";
    if ((s = dnnl_memory_desc_init_by_tag(&xp, 4, xd, dnnl_f32, dnnl_nchw)) ||
        (s = dnnl_memory_desc_init_by_tag(&wp, 4, wd, dnnl_f32, dnnl_oihw)) ||
        (s = dnnl_memory_desc_init_by_tag(&yp, 4, yd, dnnl_f32, dnnl_nchw)))
        return s;
    if (blocked) {
        if ((s = dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any)) ||
            (s = dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any)) ||
            (s = dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, dnnl_format_tag_any)))
            return s;
    } else {
        xa = xp, wa = wp, ya = yp;
    }

    /* the forward descriptor: the kernel itself, or the adjoints' hint */
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    *what = "attributes";
    if ((s = dnnl_primitive_attr_create(&attr))) return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    *what = "forward descriptor";
    if (!s)
        s = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                               &xa, &wa, NULL, &ya, st, pad, pad);
    if (!s) s = dnnl_primitive_desc_create(&fpd, &fd, attr, d->eng, NULL);
    if (s) {
        dnnl_primitive_attr_destroy(attr);
        return s;
    }
    const dnnl_memory_desc_t *plain[3];
    if (k->kind == OC_K_CONV2D) {
        pd = fpd, fpd = NULL;
        dk->arg[0] = DNNL_ARG_DST, dk->arg[1] = DNNL_ARG_SRC, dk->arg[2] = DNNL_ARG_WEIGHTS;
        plain[0] = &yp, plain[1] = &xp, plain[2] = &wp;
    } else {
        if (k->kind == OC_K_CONV2D_GRAD_INPUT) {
            *what = "backward-data descriptor";
            s = dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &xa, &wa,
                                                         &ya, st, pad, pad);
            dk->arg[0] = DNNL_ARG_DIFF_SRC, dk->arg[1] = DNNL_ARG_DIFF_DST;
            dk->arg[2] = DNNL_ARG_WEIGHTS;
            plain[0] = &xp, plain[1] = &yp, plain[2] = &wp;
        } else {
            *what = "backward-weights descriptor";
            s = dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &xa, &wa,
                                                            NULL, &ya, st, pad, pad);
            dk->arg[0] = DNNL_ARG_DIFF_WEIGHTS, dk->arg[1] = DNNL_ARG_SRC;
            dk->arg[2] = DNNL_ARG_DIFF_DST;
            plain[0] = &wp, plain[1] = &xp, plain[2] = &yp;
        }
        if (!s) s = dnnl_primitive_desc_create(&pd, &bd, attr, d->eng, fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (s) {
            dnnl_primitive_attr_destroy(attr);
            return s;
        }
    }
    *what = "primitive";
    size_t sp = 0;
    s = dnnl_primitive_create(&sl->prim, pd);
    if (!s) s = make_scratch(d->eng, pd, &sl->scratch[3], &sp);
    if (!s) s = dnnl_stream_create(&sl->stream, d->eng, dnnl_stream_default_flags);
    for (int i = 0; i < 3 && !s; i++) {
        *what = "memory object";
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, dk->arg[i]);
        if (!md) {
            s = dnnl_runtime_error;
            break;
        }
        s = dnnl_memory_create(&sl->user[i], plain[i], d->eng, DNNL_MEMORY_NONE);
        if (s) break;
        if (dnnl_memory_desc_equal(md, plain[i])) {
            sl->inner[i] = sl->user[i];
            continue;
        }
        s = dnnl_memory_create(&sl->inner[i], md, d->eng, DNNL_MEMORY_NONE);
        if (s) break;
        *what = "reorder";
        s = i == 0
                ? make_reorder(d->eng, md, plain[i], attr, &sl->reorder[i], &sl->scratch[i], &sp)
                : make_reorder(d->eng, plain[i], md, attr, &sl->reorder[i], &sl->scratch[i], &sp);
        sl->off[i] = *ws;
        *ws += round64(dnnl_memory_desc_get_size(md));
    }
    sl->sp_off = *ws;
    *ws += sp;
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Builds kernel k's slices for d->nthreads threads. */
static dnnl_status_t dconv_init(struct oc_dnnl *d, const struct oc_kernel *k, int blocked,
                                struct dconv *dk, size_t *ws, const char **what)
{
    struct oc_kconv c = oc_kir_conv(k);
    int64_t ns = c.N < d->nthreads ? c.N : d->nthreads;
    int64_t per = (c.N + ns - 1) / ns;
    ns = (c.N + per - 1) / per;
    *what = "slices";
    if (!(dk->sl = calloc((size_t)ns, sizeof *dk->sl))) return dnnl_out_of_memory;
    dk->nslice = (int)ns;
    size_t xi = (size_t)(c.C * c.H * c.W) * sizeof(float), yi = (size_t)(c.O * c.P) * sizeof(float);
    dk->wbytes = (size_t)(c.O * c.CK) * sizeof(float);
    dk->per_image[0] = k->kind == OC_K_CONV2D ? yi : k->kind == OC_K_CONV2D_GRAD_INPUT ? xi : 0;
    dk->per_image[1] = k->kind == OC_K_CONV2D_GRAD_INPUT ? yi : xi;
    dk->per_image[2] = k->kind == OC_K_CONV2D_GRAD_WEIGHT ? yi : 0;
    for (int i = 0; i < dk->nslice; i++) {
        struct dslice *sl = &dk->sl[i];
        sl->n0 = i * per;
        sl->nb = c.N - sl->n0 < per ? c.N - sl->n0 : per;
        dnnl_status_t s = dslice_init(d, k, dk, sl, blocked, ws, what);
        if (s) return s;
        if (k->kind == OC_K_CONV2D_GRAD_WEIGHT && i > 0) {
            sl->partial = 1, sl->part = *ws;
            *ws += round64(dk->wbytes);
        }
    }
    return dnnl_success;
}

enum oc_status oc_dnnl_new(struct oc_dnnl **out, struct oc_kernel *const *kernels, int n,
                           int nthreads, enum oc_conv_impl mode, int debug, struct oc_err *err)
{
    *out = NULL;
    enum oc_status st;
    if (mode == OC_CONV_ENV && (st = oc_dnnl_mode_env(&mode, err))) return st;
    if (mode == OC_CONV_IM2COL) return OC_OK;
    if (nthreads < 1) nthreads = 1;
    int any = 0;
    for (int i = 0; i < n; i++) {
        const struct oc_kernel *k = kernels[i];
        if (k->kind < OC_K_CONV2D || k->lib->dtype != OC_F32) continue;
        struct oc_kconv c = oc_kir_conv(k);
        if (mode == OC_CONV_DNNL || oc_dnnl_prefer(k->kind, &c, nthreads)) any = 1;
    }
    if (!any) return OC_OK;

    const char *lay = getenv("OC_DNNL_LAYOUT");
    int blocked = !(lay && !strcmp(lay, "plain"));
    struct oc_dnnl *d = calloc(1, sizeof *d);
    if (!d || !(d->k = calloc((size_t)n, sizeof *d->k))) {
        free(d);
        return oc_err_set(err, OC_ERR_NOMEM, "compile: out of memory for oneDNN convolutions");
    }
    d->n = n, d->nthreads = nthreads, d->debug = debug;
    d->omp_set = (omp_set_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    const dnnl_version_t *v = dnnl_version();
    if (dnnl_engine_create(&d->eng, dnnl_cpu, 0)) {
        oc_dnnl_free(d);
        return oc_err_set(err, OC_ERR_DEVICE, "compile: cannot create oneDNN's CPU engine");
    }
    if (debug >= 1)
        fprintf(stderr,
                "oneDNN %d.%d.%d (%s runtime, run single-threaded on each of %d pool "
                "thread%s), %s layouts, OC_CONV=%s\n",
                v->major, v->minor, v->patch, runtime_name(v->cpu_runtime), nthreads,
                nthreads == 1 ? "" : "s", blocked ? "blocked" : "plain",
                mode == OC_CONV_DNNL ? "dnnl" : "auto");
    /* primitives plan their work for the thread count they see when made */
    if (d->omp_set) d->omp_set(1);
    size_t ws = 0;
    int used = 0;
    for (int i = 0; i < n; i++) {
        const struct oc_kernel *k = kernels[i];
        if (k->kind < OC_K_CONV2D || k->lib->dtype != OC_F32) continue;
        struct oc_kconv c = oc_kir_conv(k);
        if (mode != OC_CONV_DNNL && !oc_dnnl_prefer(k->kind, &c, nthreads)) {
            if (debug >= 1) fprintf(stderr, "  conv %3d %-44s im2col\n", i, k->name);
            continue;
        }
        const char *what = "";
        size_t ws_k = 0; /* kernels run one at a time: they share the workspace */
        dnnl_status_t s = dconv_init(d, k, blocked, &d->k[i], &ws_k, &what);
        if (s != dnnl_success) {
            dconv_free(&d->k[i]);
            if (mode == OC_CONV_DNNL) {
                oc_dnnl_free(d);
                return oc_err_set(err, OC_ERR_UNSUPPORTED,
                                  "compile: OC_CONV=dnnl: oneDNN refused kernel %d (%s, x "
                                  "[%lld,%lld,%lld,%lld], w [%lld,%lld,%lld,%lld], stride %d, "
                                  "pad %d) at its %s: status %d",
                                  i, k->name, (long long)c.N, (long long)c.C, (long long)c.H,
                                  (long long)c.W, (long long)c.O, (long long)c.C, (long long)c.KH,
                                  (long long)c.KW, c.sh, c.ph, what, (int)s);
            }
            if (debug >= 1)
                fprintf(stderr, "  conv %3d %-44s im2col (oneDNN refused it: %s, status %d)\n", i,
                        k->name, what, (int)s);
            continue;
        }
        if (ws_k > ws) ws = ws_k;
        d->k[i].on = 1;
        used = 1;
        if (debug >= 1) {
            const_dnnl_primitive_desc_t pd = NULL;
            const char *impl = NULL;
            dnnl_primitive_get_primitive_desc(d->k[i].sl[0].prim, &pd);
            if (pd) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            fprintf(stderr, "  conv %3d %-44s oneDNN %s, %d slice%s\n", i, k->name,
                    impl ? impl : "?", d->k[i].nslice, d->k[i].nslice == 1 ? "" : "s");
        }
    }
    if (!used) {
        oc_dnnl_free(d);
        return OC_OK;
    }
    if (ws) {
        d->ws = aligned_alloc(64, round64(ws));
        d->ws_bytes = ws;
        if (!d->ws) {
            oc_dnnl_free(d);
            return oc_err_set(err, OC_ERR_NOMEM,
                              "compile: out of memory for a %zu-byte oneDNN workspace", ws);
        }
    }
    *out = d;
    return OC_OK;
}

int oc_dnnl_uses(const struct oc_dnnl *d, int i) { return d && i >= 0 && i < d->n && d->k[i].on; }

/* A reorder. Primitives were built with every argument valid: a failure
 * is a bug. */
static void reorder(dnnl_stream_t stream, dnnl_primitive_t p, dnnl_memory_t from, dnnl_memory_t to,
                    dnnl_memory_t scratch)
{
    dnnl_exec_arg_t a[3] = {
        {DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, scratch}};
    dnnl_status_t s = dnnl_primitive_execute(p, stream, scratch ? 3 : 2, a);
    OC_ASSERT(s == dnnl_success);
}

struct djob {
    struct oc_dnnl *d;
    struct dconv *k;
    void **args;
};

static void run_slices(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct djob *j = ctx;
    if (j->d->omp_set) j->d->omp_set(1); /* per thread: no OpenMP team */
    for (int64_t i = b; i < e; i++) {
        const struct dconv *k = j->k;
        const struct dslice *sl = &k->sl[i];
        dnnl_exec_arg_t a[4];
        for (int s = 0; s < 4; s++)
            if (sl->scratch[s])
                dnnl_memory_set_data_handle(sl->scratch[s], (char *)j->d->ws + sl->sp_off);
        for (int s = 0; s < 3; s++) {
            char *h = (char *)j->args[s] + (size_t)sl->n0 * k->per_image[s];
            if (s == 0 && sl->partial) h = (char *)j->d->ws + sl->part; /* a partial dW */
            dnnl_memory_set_data_handle(sl->user[s], h);
            if (sl->inner[s] != sl->user[s])
                dnnl_memory_set_data_handle(sl->inner[s], (char *)j->d->ws + sl->off[s]);
            a[s].arg = k->arg[s];
            a[s].memory = sl->inner[s];
        }
        a[3].arg = DNNL_ARG_SCRATCHPAD, a[3].memory = sl->scratch[3];
        for (int s = 1; s < 3; s++)
            if (sl->reorder[s])
                reorder(sl->stream, sl->reorder[s], sl->user[s], sl->inner[s], sl->scratch[s]);
        dnnl_status_t st = dnnl_primitive_execute(sl->prim, sl->stream, sl->scratch[3] ? 4 : 3, a);
        OC_ASSERT(st == dnnl_success);
        if (sl->reorder[0])
            reorder(sl->stream, sl->reorder[0], sl->inner[0], sl->user[0], sl->scratch[0]);
        dnnl_stream_wait(sl->stream);
    }
}

int oc_dnnl_run(struct oc_dnnl *d, int i, void **args, struct oc_pool *pool)
{
    if (!oc_dnnl_uses(d, i)) return 0;
    struct dconv *k = &d->k[i];
    struct djob j = {d, k, args};
    if (k->nslice == 1 || oc_pool_size(pool) <= 1)
        run_slices(&j, 0, k->nslice, 0);
    else
        oc_pool_run_tid(pool, k->nslice, 1, run_slices, &j);
    if (k->arg[0] == DNNL_ARG_DIFF_WEIGHTS && k->nslice > 1) {
        /* dW = slice 0's (in place) + the others' partials, in slice order */
        float *dw = args[0];
        size_t nw = k->wbytes / sizeof(float);
        for (int s = 1; s < k->nslice; s++) {
            const float *p = (const float *)((char *)d->ws + k->sl[s].part);
            for (size_t e = 0; e < nw; e++) dw[e] += p[e];
        }
    }
    return 1;
}

void oc_dnnl_free(struct oc_dnnl *d)
{
    if (!d) return;
    if (d->k)
        for (int i = 0; i < d->n; i++) dconv_free(&d->k[i]);
    free(d->k);
    free(d->ws);
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
}

#endif
