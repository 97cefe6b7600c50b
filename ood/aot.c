/* aot.c - `oodc compile`: a checkpoint and a scorer become a deployable
 * artifact (see aot.h for the data flow and the files).
 *
 * The graphs are the ones `oodc eval` (ood/eval.c) compiles, so the
 * artifact's scores are eval's within rounding: the model in test mode in
 * f32, the head outputs cast (exactly) to f64 and scored in f64 as the
 * standalone score graphs do, the input perturbation x + eps * sign(grad)
 * in f32 with the objective at T in f32. Fixed inputs (T, the Mahalanobis
 * class statistics, the RNG step 0 of sampling heads) are embedded like
 * the weights, as values of the graph's own input nodes, so the kernels are
 * those eval runs, not constant-folded variants.
 *
 * The kernel programs come from the CPU executor's passes (oc_pass_fuse,
 * oc_pass_memplan); their loop kernels from codegen's oc_llvm_emit_object
 * (target cuda: CUDA C and NVRTC's PTX with launch tables, aot-cuda.c);
 * the weights blob from codegen's oc_llvm_emit_data; the tables the artifact's runtime
 * (runtime/aot-rt/) walks are generated here as C (plan.c). The system C
 * compiler then builds the runtime and links, with fixed flags, relative
 * file names in a private build folder and the library's API as its only
 * exported symbols.
 */
#include "aot.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../codegen/codegen.h"
#include "../passes/passes.h"

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)
#define BUILD_DIR ".oodc-build"
#define BLOB_ALIGN 64

struct oc_aot_opts oc_aot_opts_default(void)
{
    struct oc_aot_opts o;
    memset(&o, 0, sizeof o);
    o.T = 1;
    o.eps = 0;
    o.batch = 1;
    o.target = "cpu";
    o.blas = 1;
    o.fusion = 1;
    return o;
}

/* ---------------------------------------------------------------- state */

enum { IO_X, IO_DIR, IO_SCORE, IO_PRED, IO_COUNT };
static const char *const io_names[IO_COUNT] = {"x", "dir", "score", "pred"};

struct prog {
    const char *name;
    struct oc_graph *g;
    struct oc_kprog *kp;
    int base; /* first global buffer */
};

/* One entry of the weights blob: a param/state, a fixed input or a
 * constant, keyed so that programs sharing a tensor share its bytes. */
struct blob_ent {
    char key[192];
    struct oc_buf val;
    int64_t offset;
};

/* A buffer of the global table (aot-rt.h struct ocrt_buf). */
struct gbuf {
    int where; /* 0 arena, 1 blob, 2 io, 3 own (as enum ocrt_where) */
    int io, ent;
    int64_t offset, bytes;
    const char *what; /* for plan.c's comments */
};

struct aot {
    const struct oc_aot_opts *o;
    const struct oc_scorer *s;
    const struct oc_checkpoint *ck;
    const struct oc_model_cfg *mc;
    int B, C, H, W, K;
    int perturb;
    struct prog prog[2];
    int nprog;
    struct blob_ent *ent;
    int nent, capent;
    unsigned char *blob;
    size_t blob_bytes;
    struct gbuf *gb;
    int ngb;
    int64_t io_bytes[IO_COUNT];
    int io_index[IO_COUNT]; /* position in the plan's IO table, -1 if unused */
    int score_f64;
    size_t arena;
    int blas;
    int cuda, sm;         /* target cuda, for compute_<sm> */
    char *cuda_tables;    /* plan.c's cuda part (aot-cuda.c) */
    size_t ptx_bytes;
    char triple[128], cpu[128];
    const char *llvm_cpu, *llvm_features;
    char *dir, *build;
};

static void aot_free(struct aot *a)
{
    for (int p = 0; p < a->nprog; p++) {
        oc_kprog_free(a->prog[p].kp);
        oc_graph_free(a->prog[p].g);
    }
    for (int i = 0; i < a->nent; i++) oc_buf_free(&a->ent[i].val);
    free(a->ent);
    free(a->blob);
    free(a->gb);
    free(a->cuda_tables);
    free(a->dir);
    free(a->build);
}

/* ---------------------------------------------------------------- graphs */

static enum oc_status graph_ok(struct oc_graph *g, const char *what, struct oc_err *err)
{
    enum oc_status st = oc_graph_status(g);
    if (st) return oc_err_set(err, st, "aot: building the %s graph: %s", what, g->err.msg);
    return OC_OK;
}

static oc_tensor classifier_logits(const struct oc_head_out *h)
{
    return oc_valid(h->logits) ? h->logits : h->bin_logits;
}

/* The gradient pass of a perturbing scorer: eval.c's perturbation graph
 * (x, step, T and the class statistics in f32; the objective summed over
 * the batch; autodiff w.r.t. x; "dir" = sign(grad)), plus "pred", the
 * classifier's argmax on the unperturbed image. */
static enum oc_status build_perturb(struct aot *a, struct oc_graph **out, struct oc_err *err)
{
    const struct oc_scorer *s = a->s;
    struct oc_graph *g = oc_graph_new("aot-perturb");
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(a->B, a->C, a->H, a->W));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_score_in in;
    memset(&in, 0, sizeof in);
    oc_model_build(g, a->mc, x, OC_NONE, step, 0, &in.h);
    in.T = in.class_mean = in.precision = OC_NONE;
    if (s->flags & OC_SC_TUNE_T) in.T = oc_input(g, "T", OC_F32, OC_SCALAR);
    if (s->needs & OC_SC_FEATURES) {
        int f = oc_wrn_features(&a->mc->wrn);
        in.class_mean = oc_input(g, "class_mean", OC_F32, OC_SHAPE(a->K, f));
        in.precision = oc_input(g, "precision", OC_F32, OC_SHAPE(f, f));
    }
    oc_tensor obj = s->objective ? s->objective(g, &in) : s->score(g, &in);
    oc_tensor total = oc_sum(g, obj, oc_all_axes(g, obj), 0);
    oc_tensor logits = classifier_logits(&in.h);
    enum oc_status st = graph_ok(g, "perturbation", err);
    int gx = -1;
    if (!st) st = oc_pass_autodiff(g, total.id, -1, &x.id, 1, &gx, err);
    if (!st) {
        oc_output(g, "dir", oc_sign(g, (oc_tensor){gx}));
        oc_output(g, "pred", oc_argmax(g, logits, 1, 0));
        st = graph_ok(g, "perturbation", err);
    }
    if (!st) st = oc_pass_simplify(&g, err);
    if (st) {
        oc_graph_free(g);
        return st;
    }
    *out = g;
    return OC_OK;
}

static oc_tensor to_f64(struct oc_graph *g, oc_tensor t)
{
    return oc_valid(t) ? oc_cast(g, t, OC_F64) : OC_NONE;
}

/* The scoring pass: the model on x (+ eps * dir) in f32 as eval's forward
 * graph, its head outputs cast to f64 and the scorer's score in f64 as
 * eval's standalone score graph (T, class statistics as f64 inputs). */
static enum oc_status build_score(struct aot *a, struct oc_graph **out, struct oc_err *err)
{
    const struct oc_scorer *s = a->s;
    struct oc_graph *g = oc_graph_new("aot-score");
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    struct oc_shape xs = OC_SHAPE(a->B, a->C, a->H, a->W);
    oc_tensor x = oc_input(g, "x", OC_F32, xs);
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    oc_tensor xin = x;
    if (a->perturb) {
        /* eval.c's stage(): x[i] + (float)eps * dir[i] */
        oc_tensor dir = oc_input(g, "dir", OC_F32, xs);
        xin = oc_add(g, x, oc_scale(g, dir, (double)(float)a->o->eps));
    }
    struct oc_head_out h;
    oc_model_build(g, a->mc, xin, OC_NONE, step, 0, &h);
    if (!oc_valid(h.logits) && oc_valid(h.bin_logits)) h.logits = h.bin_logits;
    enum oc_status st = graph_ok(g, "scoring", err);
    if (st) {
        oc_graph_free(g);
        return st;
    }
    struct oc_score_in in;
    memset(&in, 0, sizeof in);
    in.h.logits = in.h.loss = in.h.bin_logits = in.h.mu = in.h.sd = OC_NONE;
    in.h.prior_mu = in.h.prior_sd = in.h.features = in.T = in.class_mean = in.precision = OC_NONE;
    const char *missing = NULL;
    if (s->needs & OC_SC_LOGITS) {
        if (!oc_valid(h.logits)) missing = "logits";
        in.h.logits = to_f64(g, h.logits);
    }
    if (s->needs & OC_SC_BIN) {
        if (!oc_valid(h.bin_logits)) missing = "one-vs-rest logits";
        in.h.bin_logits = to_f64(g, h.bin_logits);
    }
    if (s->needs & OC_SC_LATENT) {
        if (!oc_valid(h.mu) || !oc_valid(h.prior_mu)) missing = "latent Gaussian";
        in.h.mu = to_f64(g, h.mu);
        in.h.sd = to_f64(g, h.sd);
        in.h.prior_mu = to_f64(g, h.prior_mu);
        in.h.prior_sd = to_f64(g, h.prior_sd);
    }
    if (s->needs & OC_SC_FEATURES) {
        int f = oc_wrn_features(&a->mc->wrn);
        in.h.features = to_f64(g, h.features);
        in.class_mean = oc_input(g, "class_mean", OC_F64, OC_SHAPE(a->K, f));
        in.precision = oc_input(g, "precision", OC_F64, OC_SHAPE(f, f));
    }
    if (missing) {
        oc_graph_free(g);
        return oc_err_set(err, OC_ERR_INVALID, "aot: scorer %s needs the head's %s; head %s has none",
                          s->name, missing, a->mc->head->name);
    }
    if (s->flags & OC_SC_TUNE_T) in.T = oc_input(g, "T", OC_F64, OC_SCALAR);
    oc_tensor sc = s->score(g, &in);
    oc_output(g, "score", sc);
    if (!a->perturb) oc_output(g, "pred", oc_argmax(g, h.logits, 1, 0));
    st = graph_ok(g, "scoring", err);
    if (!st) {
        const struct oc_node *n = g->nodes[sc.id];
        if (n->shape.rank != 1 || n->shape.dim[0] != a->B || !oc_dtype_is_float(n->dtype))
            st = oc_err_set(err, OC_ERR_SHAPE, "aot: scorer %s gives %s%s, not one float per image",
                            s->name, oc_dtype_name(n->dtype), SHP(n->shape));
        else a->score_f64 = n->dtype == OC_F64;
    }
    if (!st) st = oc_pass_simplify(&g, err);
    if (st) {
        oc_graph_free(g);
        return st;
    }
    *out = g;
    return OC_OK;
}

/* ---------------------------------------------------------------- values */

static enum oc_status alloc_like(const struct oc_node *n, struct oc_buf *b, struct oc_err *err)
{
    if (oc_buf_alloc(b, n->dtype, &n->shape)) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    return OC_OK;
}

/* A param or state from the checkpoint, as oc_checkpoint_bind binds it: a
 * foreign checkpoint without normalization gets the identity. */
static enum oc_status param_value(const struct aot *a, const struct oc_node *n, struct oc_buf *out,
                                  struct oc_err *err)
{
    const char *name = n->attrs.name;
    const char *path = a->ck->path ? a->ck->path : "the checkpoint";
    const struct oc_st_tensor *t = oc_st_find(a->ck->st, name);
    enum oc_status st;
    int64_t cnt = oc_shape_numel(&n->shape);
    if (!t && a->ck->foreign && (!strcmp(name, "normalize.mean") || !strcmp(name, "normalize.std"))) {
        if ((st = alloc_like(n, out, err))) return st;
        for (int64_t i = 0; i < cnt; i++) oc_buf_set(out, i, strcmp(name, "normalize.std") ? 0.0 : 1.0);
        return OC_OK;
    }
    if (!t)
        return oc_err_set(err, OC_ERR_INVALID, "aot: %s has no tensor \"%s\" (%s%s) that the model needs",
                          path, name, oc_dtype_name(n->dtype), SHP(n->shape));
    int same = t->rank == n->shape.rank;
    for (int d = 0; same && d < t->rank; d++) same = t->shape[d] == n->shape.dim[d];
    if (!same)
        return oc_err_set(err, OC_ERR_SHAPE, "aot: %s: tensor \"%s\" has another shape than the model's %s",
                          path, name, SHP(n->shape));
    struct oc_buf b;
    if ((st = oc_st_to_buf(t, &b, err))) return st;
    if (oc_dtype_is_float(n->dtype) ? !oc_dtype_is_float(b.dtype) : b.dtype != n->dtype) {
        st = oc_err_set(err, OC_ERR_DTYPE, "aot: %s: tensor \"%s\" is %s, the model's is %s", path, name,
                        oc_dtype_name(b.dtype), oc_dtype_name(n->dtype));
        oc_buf_free(&b);
        return st;
    }
    if ((st = alloc_like(n, out, err))) {
        oc_buf_free(&b);
        return st;
    }
    for (int64_t i = 0; i < cnt; i++) oc_buf_set(out, i, oc_kir_round(n->dtype, oc_buf_get(&b, i)));
    oc_buf_free(&b);
    return OC_OK;
}

/* A graph input other than the image: its fixed value. */
static enum oc_status input_value(const struct aot *a, const struct oc_node *n, struct oc_buf *out,
                                  struct oc_err *err)
{
    const char *name = n->attrs.name;
    const double *src = NULL;
    double v = 0;
    if (!strcmp(name, "step")) v = 0; /* eval binds step 0: sampling heads draw counter 0 */
    else if (!strcmp(name, "T")) v = a->o->T;
    else if (!strcmp(name, "class_mean") && a->o->cs) src = a->o->cs->mean;
    else if (!strcmp(name, "precision") && a->o->cs) src = a->o->cs->precision;
    else
        return oc_err_set(err, OC_ERR_INVALID, "aot: internal error: no value for graph input \"%s\"", name);
    enum oc_status st = alloc_like(n, out, err);
    if (st) return st;
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++) oc_buf_set(out, i, oc_kir_round(n->dtype, src ? src[i] : v));
    return OC_OK;
}

/* A constant with data, as the executor fills it (runtime/exec.c). */
static enum oc_status const_value(const struct oc_node *n, struct oc_buf *out, struct oc_err *err)
{
    enum oc_status st = alloc_like(n, out, err);
    if (st) return st;
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++)
        oc_buf_set(out, i, oc_kir_round(n->dtype, n->attrs.data ? n->attrs.data[i] : n->attrs.value));
    return OC_OK;
}

/* The blob entry for key (made from the node when new); its index. */
static int blob_entry(struct aot *a, const char *key, const struct oc_node *n, int kind,
                      struct oc_err *err)
{
    for (int i = 0; i < a->nent; i++)
        if (!strcmp(a->ent[i].key, key)) return i;
    if (a->nent == a->capent) {
        int nc = a->capent ? 2 * a->capent : 64;
        struct blob_ent *e = realloc(a->ent, sizeof *e * (size_t)nc);
        if (!e) {
            oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
            return -1;
        }
        a->ent = e;
        a->capent = nc;
    }
    struct blob_ent *e = &a->ent[a->nent];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    enum oc_status st = kind == OC_KB_INPUT ? input_value(a, n, &e->val, err)
                        : kind == OC_KB_CONST ? const_value(n, &e->val, err)
                                              : param_value(a, n, &e->val, err);
    if (st) return -1;
    return a->nent++;
}

/* ---------------------------------------------------------------- buffers */

/* A node of the program: the graph's, or one fusion added (split
 * reductions' partial sums, ids from g->nnodes on). */
static const struct oc_node *prog_node(const struct oc_kprog *kp, int id)
{
    const struct oc_graph *g = kp->g;
    if (id < g->nnodes) return g->nodes[id];
    OC_ASSERT(id - g->nnodes < kp->nextra);
    return kp->extra[id - g->nnodes];
}

static int output_of(const struct oc_graph *g, const struct oc_kprog *kp, int b)
{
    for (int i = 0; i < g->noutputs; i++)
        if (kp->out_buf[i] == b) return i;
    return -1;
}

static int io_by_name(const char *name)
{
    for (int i = 0; i < IO_COUNT; i++)
        if (!strcmp(io_names[i], name)) return i;
    return -1;
}

static enum oc_status map_buffers(struct aot *a, struct oc_err *err)
{
    int total = 0;
    for (int p = 0; p < a->nprog; p++) total += a->prog[p].kp->nbuf;
    a->gb = calloc((size_t)total + 1, sizeof *a->gb);
    if (!a->gb) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    for (int p = 0; p < a->nprog; p++) {
        struct prog *pr = &a->prog[p];
        const struct oc_kprog *kp = pr->kp;
        const struct oc_graph *g = pr->g;
        OC_ASSERT(kp->nassign == 0);
        pr->base = a->ngb;
        if (kp->arena_bytes > a->arena) a->arena = kp->arena_bytes;
        for (int b = 0; b < kp->nbuf; b++) {
            const struct oc_kbuf *kb = &kp->buf[b];
            const struct oc_node *n = prog_node(kp, kb->node);
            struct gbuf *gb = &a->gb[a->ngb++];
            gb->bytes = (int64_t)kb->bytes;
            gb->ent = gb->io = -1;
            int o = output_of(g, kp, b);
            char key[192];
            if (kb->kind == OC_KB_TEMP && o >= 0) {
                int io = io_by_name(g->outputs[o].name);
                OC_ASSERT(io >= 0);
                gb->where = 2, gb->io = io, gb->what = io_names[io];
                a->io_bytes[io] = gb->bytes;
            } else if (o >= 0) {
                return oc_err_set(err, OC_ERR_UNSUPPORTED,
                                  "aot: output \"%s\" of the %s graph is a %s buffer, not a computed one",
                                  g->outputs[o].name, pr->name, oc_op_name(n->op));
            } else if (kb->kind == OC_KB_TEMP) {
                if (kb->pinned || kb->offset < 0) gb->where = 3, gb->what = "temp (own)";
                else gb->where = 0, gb->offset = kb->offset, gb->what = "temp";
            } else if (kb->kind == OC_KB_INPUT && io_by_name(n->attrs.name) >= 0) {
                int io = io_by_name(n->attrs.name);
                gb->where = 2, gb->io = io, gb->what = io_names[io];
                a->io_bytes[io] = gb->bytes;
            } else {
                if (kb->kind == OC_KB_INPUT)
                    snprintf(key, sizeof key, "input %s %s", n->attrs.name, oc_dtype_name(n->dtype));
                else if (kb->kind == OC_KB_CONST)
                    snprintf(key, sizeof key, "const %d %06d", p, kb->node);
                else
                    snprintf(key, sizeof key, "param %s", n->attrs.name);
                int e = blob_entry(a, key, n, kb->kind, err);
                if (e < 0) return err->code;
                if ((int64_t)oc_shape_numel(&a->ent[e].val.shape) * (int64_t)oc_dtype_size(a->ent[e].val.dtype) !=
                    gb->bytes)
                    return oc_err_set(err, OC_ERR_SHAPE, "aot: \"%s\" has two sizes in two graphs", key);
                gb->where = 1, gb->ent = e;
                gb->what = kb->kind == OC_KB_INPUT ? "fixed input" : kb->kind == OC_KB_CONST ? "constant" : "weight";
            }
        }
    }
    return OC_OK;
}

/* Lays the entries out by key (64-byte aligned) and copies them in. */
static enum oc_status make_blob(struct aot *a, struct oc_err *err)
{
    int *ord = malloc(sizeof(int) * ((size_t)a->nent + 1));
    if (!ord) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    for (int i = 0; i < a->nent; i++) ord[i] = i;
    /* insertion sort by key: a few hundred entries at most */
    for (int i = 1; i < a->nent; i++)
        for (int j = i; j > 0 && strcmp(a->ent[ord[j - 1]].key, a->ent[ord[j]].key) > 0; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    size_t off = 0;
    for (int r = 0; r < a->nent; r++) {
        struct blob_ent *e = &a->ent[ord[r]];
        e->offset = (int64_t)off;
        size_t n = (size_t)oc_shape_numel(&e->val.shape) * oc_dtype_size(e->val.dtype);
        off += (n + BLOB_ALIGN - 1) / BLOB_ALIGN * BLOB_ALIGN;
    }
    a->blob_bytes = off;
    a->blob = calloc(off ? off : 1, 1);
    if (!a->blob) {
        free(ord);
        return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory for %zu bytes of weights", off);
    }
    for (int i = 0; i < a->nent; i++) {
        struct blob_ent *e = &a->ent[i];
        size_t n = (size_t)oc_shape_numel(&e->val.shape) * oc_dtype_size(e->val.dtype);
        if (n) memcpy(a->blob + e->offset, e->val.data, n);
    }
    for (int b = 0; b < a->ngb; b++)
        if (a->gb[b].where == 1) a->gb[b].offset = a->ent[a->gb[b].ent].offset;
    free(ord);
    int nio = 0;
    for (int i = 0; i < IO_COUNT; i++) a->io_index[i] = a->io_bytes[i] ? nio++ : -1;
    return OC_OK;
}

/* ---------------------------------------------------------------- plan.c */

static const char *kind_name(enum oc_kkind k)
{
    switch (k) {
    case OC_K_LOOP: return "OCRT_LOOP";
    case OC_K_MATMUL: return "OCRT_MATMUL";
    case OC_K_CONV2D: return "OCRT_CONV2D";
    case OC_K_CONV2D_GRAD_INPUT: return "OCRT_CONV2D_GRAD_INPUT";
    default: return "OCRT_CONV2D_GRAD_WEIGHT";
    }
}

/* The library parameters of aot-rt.h for a matmul / conv kernel, as
 * runtime/cpu-lib.c derives them. */
static void lib_params(const struct oc_kernel *k, int64_t *p)
{
    memset(p, 0, sizeof(int64_t) * 13);
    if (k->kind == OC_K_MATMUL) {
        const struct oc_shape *as = &k->lib_shape[1], *bs = &k->lib_shape[2], *ys = &k->lib_shape[0];
        int r = as->rank, ta = k->lib->attrs.trans_a, tb = k->lib->attrs.trans_b;
        int64_t batch = 1;
        for (int d = 0; d < r - 2; d++) batch *= as->dim[d];
        p[0] = batch;
        p[1] = ys->dim[r - 2];
        p[2] = ys->dim[r - 1];
        p[3] = ta ? as->dim[r - 2] : as->dim[r - 1];
        p[4] = ta, p[5] = tb;
        p[6] = as->dim[r - 1] > 0 ? as->dim[r - 1] : 1;
        p[7] = bs->dim[r - 1] > 0 ? bs->dim[r - 1] : 1;
        p[8] = as->dim[r - 2] * as->dim[r - 1];
        p[9] = bs->dim[r - 2] * bs->dim[r - 1];
        return;
    }
    const struct oc_shape *xs, *ws, *ys;
    switch (k->kind) {
    case OC_K_CONV2D: ys = &k->lib_shape[0], xs = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    case OC_K_CONV2D_GRAD_INPUT: xs = &k->lib_shape[0], ys = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    default: ws = &k->lib_shape[0], xs = &k->lib_shape[1], ys = &k->lib_shape[2]; break;
    }
    p[0] = xs->dim[0], p[1] = xs->dim[1], p[2] = xs->dim[2], p[3] = xs->dim[3];
    p[4] = ws->dim[0], p[5] = ws->dim[2], p[6] = ws->dim[3];
    p[7] = ys->dim[2], p[8] = ys->dim[3];
    p[9] = k->lib->attrs.stride[0], p[10] = k->lib->attrs.stride[1];
    p[11] = k->lib->attrs.padding[0], p[12] = k->lib->attrs.padding[1];
}

static const char *where_name(int w)
{
    static const char *const n[] = {"OCRT_ARENA", "OCRT_BLOB", "OCRT_IO", "OCRT_OWN"};
    return n[w];
}

static char *plan_text(struct aot *a)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fprintf(f,
            "/* plan.c - the kernel programs of an oodc compiled scorer (GENERATED by\n"
            " * `oodc compile`; the tables of runtime/aot-rt/aot-rt.h). */\n"
            "#include \"aot-rt.h\"\n"
            "\n"
            "#define HIDDEN __attribute__((visibility(\"hidden\")))\n"
            "\n");
    if (!a->cuda) fprintf(f, "/* the loop kernels (kernels.o) */\n");
    /* each distinct symbol once, in order of first use */
    for (int p = 0; p < a->nprog && !a->cuda; p++) {
        const struct oc_kprog *kp = a->prog[p].kp;
        for (int i = 0; i < kp->nkernel; i++) {
            const struct oc_kernel *k = kp->kernel[i];
            if (k->kind != OC_K_LOOP) continue;
            int seen = 0;
            for (int q = 0; q <= p && !seen; q++) {
                const struct oc_kprog *kq = a->prog[q].kp;
                int lim = q == p ? i : kq->nkernel;
                for (int j = 0; j < lim && !seen; j++)
                    seen = kq->kernel[j]->kind == OC_K_LOOP && !strcmp(kq->kernel[j]->sym, k->sym);
            }
            if (!seen) fprintf(f, "HIDDEN void %s(void **, int64_t, int64_t);\n", k->sym);
        }
    }
    fprintf(f, "\n/* the weights and constants (%s) */\n"
               "HIDDEN extern const unsigned char ocrt_blob[];\n\n",
            a->cuda ? "weights.bin, below" : "weights.o");
    fprintf(f, "static const struct ocrt_buf bufs[%d] = {\n", a->ngb > 0 ? a->ngb : 1);
    for (int b = 0; b < a->ngb; b++) {
        const struct gbuf *g = &a->gb[b];
        fprintf(f, "    {%s, %d, %lld, %lld}, /* %d: %s", where_name(g->where),
                g->where == 2 ? a->io_index[g->io] : 0, (long long)g->offset, (long long)g->bytes, b,
                g->what);
        if (g->where == 1) fprintf(f, " \"%s\"", a->ent[g->ent].key);
        fprintf(f, " */\n");
    }
    if (!a->ngb) fprintf(f, "    {0, 0, 0, 0},\n");
    fprintf(f, "};\n");
    for (int p = 0; p < a->nprog; p++) {
        const struct prog *pr = &a->prog[p];
        const struct oc_kprog *kp = pr->kp;
        fprintf(f, "\n/* program %d: %s, %d kernel(s) */\n", p, pr->name, kp->nkernel);
        for (int i = 0; i < kp->nkernel; i++) {
            const struct oc_kernel *k = kp->kernel[i];
            fprintf(f, "static const int32_t p%dk%d[] = {", p, i);
            for (int s = 0; s < k->nslot; s++)
                fprintf(f, "%s%d", s ? ", " : "", pr->base + k->slot[s].buf);
            if (!k->nslot) fprintf(f, "0");
            fprintf(f, "};\n");
        }
        fprintf(f, "static const struct ocrt_kernel prog%d[] = {\n", p);
        for (int i = 0; i < kp->nkernel; i++) {
            const struct oc_kernel *k = kp->kernel[i];
            if (k->kind == OC_K_LOOP) {
                fprintf(f, "    {OCRT_LOOP, %d, p%dk%d, %s, %lld, %d, %lld, 0, {0}}, /* %s %s",
                        k->nslot, p, i, a->cuda ? "0" : k->sym, (long long)oc_kir_outer_extent(k),
                        oc_llvm_row_block(k), (long long)oc_kir_points(k), k->name, SHP(k->space));
                if (k->rmask) fprintf(f, " reduce 0x%x", k->rmask);
                fprintf(f, " */\n");
            } else {
                int64_t q[13];
                lib_params(k, q);
                fprintf(f, "    {%s, %d, p%dk%d, 0, 0, 0, 0, %d, {", kind_name(k->kind), k->nslot, p, i,
                        k->lib->dtype == OC_F64);
                for (int j = 0; j < 13; j++) fprintf(f, "%s%lld", j ? ", " : "", (long long)q[j]);
                fprintf(f, "}}, /* %s */\n", k->name);
            }
        }
        if (!kp->nkernel) fprintf(f, "    {0, 0, 0, 0, 0, 0, 0, 0, {0}},\n");
        fprintf(f, "};\n");
    }
    fprintf(f, "\nstatic const struct ocrt_prog progs[] = {\n");
    for (int p = 0; p < a->nprog; p++)
        fprintf(f, "    {\"%s\", %d, prog%d},\n", a->prog[p].name, a->prog[p].kp->nkernel, p);
    fprintf(f, "};\n\nstatic const struct ocrt_io ios[] = {\n");
    for (int i = 0; i < IO_COUNT; i++)
        if (a->io_index[i] >= 0) fprintf(f, "    {\"%s\", %lld},\n", io_names[i], (long long)a->io_bytes[i]);
    fprintf(f, "};\n\n");
    fprintf(f,
            "HIDDEN const struct ocrt_plan ocrt_plan = {\n"
            "    %d, %d, %d, %d, %d, /* batch, c, h, w, classes */\n"
            "    %d, bufs,\n"
            "    %d, progs,\n"
            "    %d, ios,\n"
            "    %d, %d, %d, /* x, score, pred */\n"
            "    %d, /* score in double */\n"
            "    %lld, /* arena bytes */\n"
            "    ocrt_blob, %lld,\n"
            "};\n",
            a->B, a->C, a->H, a->W, a->K, a->ngb, a->nprog,
            (a->io_index[IO_X] >= 0) + (a->io_index[IO_DIR] >= 0) + (a->io_index[IO_SCORE] >= 0) +
                (a->io_index[IO_PRED] >= 0),
            a->io_index[IO_X], a->io_index[IO_SCORE], a->io_index[IO_PRED], a->score_f64,
            (long long)a->arena, (long long)a->blob_bytes);
    if (a->cuda_tables) fputs(a->cuda_tables, f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---------------------------------------------------------------- files and tools */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static enum oc_status write_bytes(const char *dir, const char *name, const void *data, size_t n,
                                  struct oc_err *err)
{
    char *path = join(dir, name);
    if (!path) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    FILE *f = fopen(path, "wb");
    enum oc_status st = OC_OK;
    if (!f || fwrite(data, 1, n, f) != n)
        st = oc_err_set(err, OC_ERR_IO, "aot: cannot write %s: %s", path, strerror(errno));
    if (f && fclose(f) && !st) st = oc_err_set(err, OC_ERR_IO, "aot: cannot write %s: %s", path, strerror(errno));
    free(path);
    return st;
}

static enum oc_status write_text(const char *dir, const char *name, const char *text,
                                 struct oc_err *err)
{
    if (!text) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory for %s", name);
    return write_bytes(dir, name, text, strlen(text), err);
}

static enum oc_status mkdirs(const char *path, struct oc_err *err)
{
    char p[4096];
    if (strlen(path) >= sizeof p) return oc_err_set(err, OC_ERR_IO, "aot: path too long: %s", path);
    strcpy(p, path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST)
            return oc_err_set(err, OC_ERR_IO, "aot: cannot create folder %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) && errno != EEXIST)
        return oc_err_set(err, OC_ERR_IO, "aot: cannot create folder %s: %s", p, strerror(errno));
    struct stat sb;
    if (stat(p, &sb) || !S_ISDIR(sb.st_mode))
        return oc_err_set(err, OC_ERR_IO, "aot: %s is not a folder", p);
    return OC_OK;
}

/* Everything the build folder may hold. */
static const char *const build_files[] = {
    "scorer.h", "aot-rt.h", "aot-rt.c", "plan.c", "scorer.map", "kernels.o", "kernels.o.tmp",
    "weights.o", "weights.o.tmp", "aot-rt.o", "plan.o", "libscorer.so", "scorer.o", "README",
    "CMakeLists.txt", "scorer.pc", "example.c", "tool.log", "aot-rt-api.h", "aot-rt-cuda.c",
    "aot-rt-cuda.o", "weights.bin", "kernels.cu", "kernels.ptx", "lib.cu", "lib.ptx", NULL,
};

static void clean_build(const char *build)
{
    for (int i = 0; build_files[i]; i++) {
        char *p = join(build, build_files[i]);
        if (p) remove(p);
        free(p);
    }
    rmdir(build);
}

/* Runs argv in folder cwd, output to cwd/tool.log; a failure carries the
 * command and the start of its output. */
static enum oc_status run_tool(const char *cwd, char *const *argv, struct oc_err *err)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return oc_err_set(err, OC_ERR_IO, "aot: cannot start %s: %s", argv[0], strerror(errno));
    if (pid == 0) {
        if (chdir(cwd)) _exit(126);
        int fd = open("tool.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return oc_err_set(err, OC_ERR_IO, "aot: waiting for %s: %s", argv[0], strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return OC_OK;
    char cmd[600] = "", out[500] = "";
    for (int i = 0; argv[i] && strlen(cmd) < sizeof cmd - 2; i++) {
        if (i) strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    char *log = join(cwd, "tool.log");
    FILE *f = log ? fopen(log, "rb") : NULL;
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
    }
    free(log);
    return oc_err_set(err, OC_ERR_IO, "aot: `%s` failed (%s %d)%s%s", cmd,
                      WIFEXITED(status) ? "exit status" : "signal",
                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), out[0] ? ": " : "", out);
}

#define MAX_ARGS 64

struct argv {
    char *v[MAX_ARGS + 1];
    int n;
    char words[512];
};

/* The C compiler command: o->cc, $CC or "cc", split at spaces. */
static int argv_cc(struct argv *a, const char *cc)
{
    a->n = 0;
    snprintf(a->words, sizeof a->words, "%s", cc);
    for (char *p = strtok(a->words, " \t"); p && a->n < 8; p = strtok(NULL, " \t")) a->v[a->n++] = p;
    a->v[a->n] = NULL;
    return a->n;
}

static void argv_add(struct argv *a, const char *s)
{
    if (a->n < MAX_ARGS) a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

/* The C side of the artifact: compile the runtime and the plan, link the
 * shared library (only the API exported) and the relocatable object. */
static enum oc_status build_c(struct aot *a, const char *cc, struct oc_err *err)
{
    static const char *const common[] = {"-std=c11", "-O2", "-fPIC", "-fvisibility=hidden",
                                         "-fno-strict-aliasing", NULL};
    char prefix_map[4200];
    snprintf(prefix_map, sizeof prefix_map, "-ffile-prefix-map=%s=.", a->build);
    static const char *const srcs_cpu[2][2] = {{"aot-rt.c", "aot-rt.o"}, {"plan.c", "plan.o"}};
    static const char *const srcs_cuda[2][2] = {{"aot-rt-cuda.c", "aot-rt-cuda.o"}, {"plan.c", "plan.o"}};
    const char *const(*srcs)[2] = a->cuda ? srcs_cuda : srcs_cpu;
    enum oc_status st = OC_OK;
    for (int i = 0; i < 2 && !st; i++) {
        struct argv v;
        if (!argv_cc(&v, cc)) return oc_err_set(err, OC_ERR_INVALID, "aot: empty C compiler command");
        for (int j = 0; common[j]; j++) argv_add(&v, common[j]);
        argv_add(&v, prefix_map);
        if (!a->blas && !a->cuda) argv_add(&v, "-DOCRT_NO_BLAS");
        argv_add(&v, "-c");
        argv_add(&v, srcs[i][0]);
        argv_add(&v, "-o");
        argv_add(&v, srcs[i][1]);
        st = run_tool(a->build, v.v, err);
    }
    static const char *const objs_cpu[] = {"aot-rt.o", "plan.o", "kernels.o", "weights.o", NULL};
    /* cuda: the weights and PTX are in plan.o (.incbin) */
    static const char *const objs_cuda[] = {"aot-rt-cuda.o", "plan.o", NULL};
    const char *const *objs = a->cuda ? objs_cuda : objs_cpu;
    if (!st) {
        struct argv v;
        argv_cc(&v, cc);
        argv_add(&v, "-shared");
        argv_add(&v, "-o");
        argv_add(&v, "libscorer.so");
        for (int j = 0; objs[j]; j++) argv_add(&v, objs[j]);
        argv_add(&v, "-Wl,--version-script=scorer.map");
        argv_add(&v, "-Wl,-soname,libscorer.so");
        argv_add(&v, "-Wl,--build-id=sha1");
        argv_add(&v, "-Wl,-z,noexecstack");
        if (a->blas && !a->cuda) argv_add(&v, "-lopenblas");
        if (a->cuda) argv_add(&v, "-ldl"); /* the driver and cuBLAS are dlopen'd */
        argv_add(&v, "-lm");
        argv_add(&v, "-lpthread");
        st = run_tool(a->build, v.v, err);
    }
    if (!st) {
        struct argv v;
        argv_cc(&v, cc);
        argv_add(&v, "-r");
        argv_add(&v, "-nostdlib");
        argv_add(&v, "-o");
        argv_add(&v, "scorer.o");
        for (int j = 0; objs[j]; j++) argv_add(&v, objs[j]);
        st = run_tool(a->build, v.v, err);
    }
    return st;
}

/* The 64-bit content hash of a checkpoint's tensors (names, dtypes,
 * shapes, bytes), independent of its path and metadata. */
static uint64_t ck_hash(const struct oc_checkpoint *ck)
{
    uint64_t h = 0x6f6f6463616f74ull;
    for (int i = 0; i < ck->st->ntensors; i++) {
        const struct oc_st_tensor *t = &ck->st->tensors[i];
        int32_t meta[2 + OC_MAX_RANK] = {(int32_t)t->dtype, t->rank};
        for (int d = 0; d < t->rank; d++) meta[2 + d] = (int32_t)t->shape[d];
        h = oc_hash64(t->name, strlen(t->name) + 1, h);
        h = oc_hash64(meta, sizeof meta, h);
        h = oc_hash64(t->data, t->nbytes, h);
    }
    return h;
}

/* ---------------------------------------------------------------- the driver */

static void logf_(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(FILE *f, const char *fmt, ...)
{
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

static enum oc_status check_opts(struct aot *a, struct oc_err *err)
{
    const struct oc_aot_opts *o = a->o;
    if (!o->ck) return oc_err_set(err, OC_ERR_INVALID, "aot: no checkpoint");
    const char *target = o->target ? o->target : "cpu";
    if (strcmp(target, "cpu") && strcmp(target, "cuda"))
        return oc_err_set(err, OC_ERR_INVALID, "aot: unknown target \"%s\" (cpu or cuda)", target);
    a->cuda = !strcmp(target, "cuda");
    enum oc_status st;
    if (a->cuda) {
        if ((st = oc_aot_cuda_arch(o->arch, &a->sm, err))) return st;
        if ((st = oc_aot_cuda_check(a->sm, NULL, 0, err))) return st;
    } else if (!oc_llvm_available()) {
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "aot: --target cpu needs LLVM: this oodc was built without it");
    }
    a->ck = o->ck;
    a->mc = &o->ck->model;
    const char *head = a->mc->head->name;
    a->s = o->scorer ? oc_scorer_find(o->scorer) : NULL;
    if (!a->s) {
        char all[512] = "";
        for (int i = 0; oc_scorers[i]; i++) {
            if (i) strncat(all, ", ", sizeof all - strlen(all) - 1);
            strncat(all, oc_scorers[i]->name, sizeof all - strlen(all) - 1);
        }
        return oc_err_set(err, OC_ERR_INVALID, "aot: unknown scorer '%s' (known: %s)",
                          o->scorer ? o->scorer : "(none)", all);
    }
    if (!oc_scorer_applies(a->s, head))
        return oc_err_set(err, OC_ERR_INVALID, "aot: scorer %s applies to the %s head, not %s", a->s->name,
                          a->s->heads, head);
    if (o->batch < 1 || o->batch > (1 << 16))
        return oc_err_set(err, OC_ERR_INVALID, "aot: batch %d is not in 1..65536", o->batch);
    if ((a->s->flags & OC_SC_TUNE_T) && !(o->T > 0 && isfinite(o->T)))
        return oc_err_set(err, OC_ERR_INVALID, "aot: T = %g: the temperature must be > 0", o->T);
    if ((a->s->flags & OC_SC_TUNE_EPS) && !(o->eps >= 0 && isfinite(o->eps)))
        return oc_err_set(err, OC_ERR_INVALID, "aot: eps = %g: the perturbation must be >= 0", o->eps);
    if ((a->s->needs & OC_SC_FEATURES)) {
        int f = oc_wrn_features(&a->mc->wrn);
        if (!o->cs || o->cs->k != a->mc->hc.nclasses || o->cs->f != f)
            return oc_err_set(err, OC_ERR_INVALID,
                              "aot: scorer %s needs class statistics of %d classes x %d features",
                              a->s->name, a->mc->hc.nclasses, f);
    }
    a->B = o->batch;
    a->C = a->mc->wrn.in_ch;
    a->H = a->W = a->mc->wrn.size;
    a->K = a->mc->hc.nclasses;
    a->perturb = (a->s->flags & OC_SC_TUNE_EPS) && o->eps != 0;
#ifdef OC_HAVE_OPENBLAS
    a->blas = o->blas;
#else
    a->blas = 0;
#endif
    if (a->cuda) {
        a->blas = 1; /* cuBLAS */
        snprintf(a->cpu, sizeof a->cpu, "compute_%d", a->sm);
        snprintf(a->triple, sizeof a->triple, "nvptx64-nvidia-cuda");
        return OC_OK;
    }
    char hostcpu[128];
    oc_llvm_host(a->triple, sizeof a->triple, hostcpu, sizeof hostcpu);
    if (o->native) {
        snprintf(a->cpu, sizeof a->cpu, "%s", hostcpu);
        a->llvm_cpu = a->llvm_features = NULL;
    } else {
        const char *dflt = !strncmp(a->triple, "x86_64", 6) ? "x86-64-v3" : "generic";
        snprintf(a->cpu, sizeof a->cpu, "%s", o->cpu ? o->cpu : dflt);
        a->llvm_cpu = a->cpu;
        a->llvm_features = o->features ? o->features : "";
    }
    return OC_OK;
}

static enum oc_status plan_programs(struct aot *a, struct oc_err *err)
{
    enum oc_status st = OC_OK;
    if (a->perturb) {
        a->prog[a->nprog].name = "perturb";
        st = build_perturb(a, &a->prog[a->nprog].g, err);
        if (!st) a->nprog++;
    }
    if (!st) {
        a->prog[a->nprog].name = "score";
        st = build_score(a, &a->prog[a->nprog].g, err);
        if (!st) a->nprog++;
    }
    struct oc_fuse_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.fusion = a->o->fusion;
    for (int p = 0; p < a->nprog && !st; p++) {
        st = oc_pass_fuse(a->prog[p].g, &fo, &a->prog[p].kp, err);
        if (!st) st = oc_pass_memplan(a->prog[p].kp, 1, err);
    }
    if (!st) st = map_buffers(a, err);
    if (!st) st = make_blob(a, err);
    return st;
}

static enum oc_status emit(struct aot *a, const struct oc_aot_desc *d, struct oc_err *err)
{
    int nk = 0;
    for (int p = 0; p < a->nprog; p++) nk += a->prog[p].kp->nkernel;
    struct oc_kernel **ks = malloc(sizeof *ks * ((size_t)nk + 1));
    if (!ks) return oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    nk = 0;
    for (int p = 0; p < a->nprog; p++)
        for (int i = 0; i < a->prog[p].kp->nkernel; i++) ks[nk++] = a->prog[p].kp->kernel[i];
    char *kpath = join(a->build, "kernels.o"), *wpath = join(a->build, "weights.o");
    enum oc_status st = kpath && wpath ? OC_OK : oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    if (!st && a->cuda) {
        struct oc_kprog *kps[2] = {a->prog[0].kp, a->nprog > 1 ? a->prog[1].kp : NULL};
        struct oc_aot_cuda_out co;
        st = oc_aot_cuda_build(kps, a->nprog, a->sm, a->build, &co, err);
        if (!st) {
            a->cuda_tables = co.tables;
            a->ptx_bytes = co.ptx_bytes + co.lib_ptx_bytes;
            st = write_bytes(a->build, "weights.bin", a->blob, a->blob_bytes, err);
        }
    } else if (!st) {
        st = oc_llvm_emit_object(ks, nk, kpath, NULL, a->llvm_cpu, a->llvm_features, err);
        if (!st) st = oc_llvm_emit_data(wpath, "ocrt_blob", a->blob, a->blob_bytes, err);
    }
    free(ks);
    free(kpath);
    free(wpath);
    if (st) return st;
    char *plan = plan_text(a);
    if ((st = write_text(a->build, "plan.c", plan, err))) {
        free(plan);
        return st;
    }
    free(plan);
    const char *map = "{\n  global:\n    oc_scorer_create;\n    oc_scorer_score;\n"
                      "    oc_scorer_error;\n    oc_scorer_destroy;\n  local:\n    *;\n};\n";
    char *texts[5] = {oc_aot_header_text(d), oc_aot_readme_text(d), oc_aot_cmake_text(d),
                      oc_aot_pc_text(d), oc_aot_example_text(d)};
    static const char *const names[5] = {"scorer.h", "README", "CMakeLists.txt", "scorer.pc", "example.c"};
    if ((st = write_text(a->build, "aot-rt.h", oc_aot_rt_h, err)) ||
        (st = write_text(a->build, "aot-rt-api.h", oc_aot_rt_api_h, err)) ||
        (st = a->cuda ? write_text(a->build, "aot-rt-cuda.c", oc_aot_rt_cuda_c, err)
                      : write_text(a->build, "aot-rt.c", oc_aot_rt_c, err)) ||
        (st = write_text(a->build, "scorer.map", map, err))) {
    }
    for (int i = 0; i < 5; i++) {
        if (!st) st = write_text(a->build, names[i], texts[i], err);
        free(texts[i]);
    }
    return st;
}

/* Moves the products from the build folder into DIR. */
static enum oc_status publish(struct aot *a, struct oc_err *err)
{
    static const char *const outs[] = {"scorer.h", "libscorer.so", "scorer.o", "README",
                                       "CMakeLists.txt", "scorer.pc", "example.c", NULL};
    for (int i = 0; outs[i]; i++) {
        char *from = join(a->build, outs[i]), *to = join(a->dir, outs[i]);
        enum oc_status st = OC_OK;
        if (!from || !to) {
            st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
        } else {
            /* --keep-build keeps the build folder whole: a hard link, not a move */
            if (a->o->keep_build) remove(to);
            if (a->o->keep_build ? link(from, to) : rename(from, to))
                st = oc_err_set(err, OC_ERR_IO, "aot: cannot move %s to %s: %s", from, to, strerror(errno));
        }
        free(from);
        free(to);
        if (st) return st;
    }
    return OC_OK;
}

enum oc_status oc_aot_compile(const struct oc_aot_opts *o, const char *out_dir,
                              struct oc_aot_result *r, struct oc_err *err)
{
    struct aot a;
    memset(&a, 0, sizeof a);
    a.o = o;
    if (r) memset(r, 0, sizeof *r);
    enum oc_status st = check_opts(&a, err);
    if (st) return st;
    if (!out_dir || !*out_dir) return oc_err_set(err, OC_ERR_INVALID, "aot: no output folder");
    FILE *log = o->log;
    logf_(log, "oodc compile: %s on %s (head %s), batch %d, %s %s%s\n", a.s->name,
          a.ck->arch[0] ? a.ck->arch : "the checkpoint's model", a.mc->head->name, a.B,
          a.cuda ? "cuda" : "cpu", a.cpu, a.cuda ? " PTX, cuBLAS" : a.blas ? ", OpenBLAS" : ", no BLAS");
    st = plan_programs(&a, err);
    if (!st) st = mkdirs(out_dir, err);
    if (!st) {
        /* absolute, for -ffile-prefix-map; the outputs never contain it */
        char cwd[4096];
        if (out_dir[0] == '/' || !getcwd(cwd, sizeof cwd)) a.dir = strdup(out_dir);
        else a.dir = join(cwd, out_dir);
        a.build = a.dir ? join(a.dir, BUILD_DIR) : NULL;
        if (!a.dir || !a.build) st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    }
    if (!st) {
        clean_build(a.build);
        if (mkdir(a.build, 0777))
            st = oc_err_set(err, OC_ERR_IO, "aot: cannot create %s: %s (remove it)", a.build, strerror(errno));
    }
    char arch[48];
    snprintf(arch, sizeof arch, "wrn-%d-%d", a.mc ? a.mc->wrn.depth : 0, a.mc ? a.mc->wrn.width : 0);
    struct oc_aot_desc d = {
        .scorer = a.s->name, .label = a.s->label, .summary = a.s->summary,
        .arch = a.ck->arch[0] ? a.ck->arch : arch, .head = a.mc->head->name,
        .c = a.C, .h = a.H, .w = a.W, .classes = a.K, .batch = a.B,
        .T = o->T, .eps = o->eps,
        .uses_T = (a.s->flags & OC_SC_TUNE_T) != 0, .uses_eps = (a.s->flags & OC_SC_TUNE_EPS) != 0,
        .native = o->native, .cpu = a.cpu, .triple = a.triple, .blas = a.blas,
#ifdef OC_HAVE_OPENBLAS
        .blas_available = 1,
#endif
        .ck_hash = ck_hash(a.ck),
        .cuda = a.cuda, .sm = a.sm,
    };
    if (!st) {
        int nk = 0;
        for (int p = 0; p < a.nprog; p++) nk += a.prog[p].kp->nkernel;
        logf_(log, "  %d program(s), %d kernel(s), %zu bytes of weights, arena %zu bytes\n", a.nprog,
              nk, a.blob_bytes, a.arena);
        st = emit(&a, &d, err);
    }
    if (!st) {
        const char *cc = o->cc && *o->cc ? o->cc : getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
        logf_(log, "  compiling the runtime and linking with `%s`\n", cc);
        st = build_c(&a, cc, err);
    }
    if (!st) st = publish(&a, err);
    if (a.build && !o->keep_build) clean_build(a.build);
    if (!st && r) {
        r->nprog = a.nprog;
        for (int p = 0; p < a.nprog; p++) {
            const struct oc_kprog *kp = a.prog[p].kp;
            r->nkernels += kp->nkernel;
            for (int i = 0; i < kp->nkernel; i++) {
                if (kp->kernel[i]->kind != OC_K_LOOP) continue;
                int dup = 0;
                for (int q = 0; q <= p && !dup; q++) {
                    const struct oc_kprog *kq = a.prog[q].kp;
                    for (int j = 0; j < (q == p ? i : kq->nkernel) && !dup; j++)
                        dup = kq->kernel[j]->kind == OC_K_LOOP && !strcmp(kq->kernel[j]->sym, kp->kernel[i]->sym);
                }
                r->nloop += !dup;
            }
        }
        r->blob_bytes = a.blob_bytes;
        r->arena_bytes = a.arena;
        snprintf(r->cpu, sizeof r->cpu, "%s", a.cpu);
        r->blas = a.blas;
        r->cuda = a.cuda;
        r->ptx_bytes = a.ptx_bytes;
    }
    if (!st) logf_(log, "  wrote %s/{scorer.h,libscorer.so,scorer.o,README,CMakeLists.txt,scorer.pc,example.c}\n", a.dir);
    aot_free(&a);
    return st;
}
