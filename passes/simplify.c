/* simplify.c - constant folding, algebraic identities, CSE and DCE.
 *
 * Runs between autodiff and fusion: autodiff emits many trivially
 * simplifiable nodes (zero gradients added to others, broadcast scalars,
 * reshape chains, duplicated forward values), and every node left here
 * becomes work for fusion, memory planning and codegen.
 *
 * Graphs are append-only arrays whose ids are positions, so each pass is one
 * forward sweep that rebuilds the graph: for every old node it either copies
 * it (operands remapped), emits a replacement (a folded const, a composed
 * reshape/permute), or maps it onto a node already in the new graph (an
 * identity's operand, an earlier equal node). Because the sweep looks at the
 * new graph, chains collapse in one pass: reshape(reshape(reshape x)) is one
 * reshape after a single sweep. Passes other than dce leave the nodes they
 * bypass in place; dce removes them. A pass that changes nothing leaves *g
 * as it was.
 *
 * Which identities are exact in IEEE 754 (and so are done here):
 *   x*1, 1*x, x/1          exact for every x, NaN and infinities included;
 *   x-(+0)                 exact, also for x = -0 (-0 - +0 = -0);
 *   x+(-0), (-0)+x         exact for every x;
 *   x+(+0), (+0)+x, x-(-0) exact except for x = -0, where IEEE gives +0 and
 *                          the rewrite keeps -0. Done anyway (as LLVM with
 *                          nsz, XLA and TVM do): the values compare equal,
 *                          only 1/x of the result could tell them apart, and
 *                          autodiff's zero gradients make these common;
 *   neg(neg x)             exact (a sign flip, twice);
 *   layout and cast rules  move or copy values, never compute them.
 * Rewrites that are NOT done, because they change values:
 *   x*0 -> 0          NaN*0 and inf*0 are NaN, -x*0 is -0;
 *   x-x -> 0          inf-inf is NaN;
 *   exp(log x) -> x   log of x < 0 is NaN, and exp(log x) is x only up to
 *                     rounding (a few ulps) even for x > 0;
 *   log(exp x) -> x   exp overflows to inf for x > ~88.7 (f32) / ~709.8
 *                     (f64) and underflows to 0 for x < ~-103 / ~-745, and
 *                     for small |x| exp(x) rounds to 1 so log(exp(1e-20))
 *                     is 0, not 1e-20: more accurate, but not the value the
 *                     unsimplified graph computes, which the interpreter
 *                     oracle and every backend must agree on.
 */
#include "simplify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- rebuilding */

/* One forward sweep from `old` into `ng`. map[i] is the new id computing old
 * node i's value, or -1 when it was dropped (dce only). */
struct rw {
    const struct oc_graph *old;
    struct oc_graph *ng;
    int *map;
    int changed;
    void *ctx; /* the pass's own state */
};

enum { RW_ERROR = -1, RW_DROP = -2, RW_NONE = -3 };

/* Returns the new node's id, or RW_ERROR with ng->err set. */
typedef int (*rw_visit)(struct rw *r, const struct oc_node *n, const int *ins);

static int emit(struct rw *r, enum oc_op op, const int *ins, int nin, const struct oc_attrs *a,
                enum oc_dtype dt, const struct oc_shape *sh, const char *label)
{
    oc_tensor in[64];
    OC_ASSERT(nin <= 64);
    for (int k = 0; k < nin; k++) in[k] = (oc_tensor){ins[k]};
    oc_tensor t = oc_graph_add(r->ng, op, nin ? in : NULL, nin, a, dt, sh);
    if (t.id < 0) return RW_ERROR;
    if (label) r->ng->nodes[t.id]->label = oc_arena_strdup(&r->ng->arena, label);
    return t.id;
}

static int emit_copy(struct rw *r, const struct oc_node *n, const int *ins)
{
    return emit(r, n->op, ins, n->ninputs, &n->attrs, n->dtype, &n->shape, n->label);
}

static int emit_splat(struct rw *r, enum oc_dtype dt, const struct oc_shape *sh, double v,
                      const char *label)
{
    struct oc_attrs a;
    memset(&a, 0, sizeof a);
    a.value = v;
    return emit(r, OC_OP_CONST, NULL, 0, &a, dt, sh, label);
}

static const struct oc_node *nnode(const struct rw *r, int id) { return r->ng->nodes[id]; }

/* Runs `visit` over every node of *g. On success swaps the new graph in (or
 * keeps the old one when nothing changed) and fills map (old nnodes entries,
 * may be NULL). */
static enum oc_status rw_run(struct oc_graph **g, const char *pass, rw_visit visit, void *ctx,
                             int *map_out, int *changed_out, struct oc_err *err)
{
    const struct oc_graph *old = *g;
    if (old->err.code)
        return oc_err_set(err, old->err.code, "%s: the graph has a build error: %s", pass,
                          old->err.msg);
    struct rw r = {.old = old, .ctx = ctx};
    r.ng = oc_graph_new(old->name);
    r.map = malloc(sizeof(int) * (size_t)(old->nnodes ? old->nnodes : 1));
    if (!r.ng || !r.map) {
        oc_graph_free(r.ng);
        free(r.map);
        return oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", pass);
    }
    enum oc_status st = OC_OK;
    for (int i = 0; i < old->nnodes; i++) {
        const struct oc_node *n = old->nodes[i];
        int ins[64];
        OC_ASSERT(n->ninputs <= 64);
        int dead_operand = 0;
        for (int k = 0; k < n->ninputs; k++) {
            ins[k] = r.map[n->inputs[k]];
            dead_operand |= ins[k] < 0;
        }
        int id = visit(&r, n, ins);
        OC_ASSERT(!dead_operand || id == RW_DROP); /* users of dropped nodes are dead too */
        if (id == RW_ERROR) {
            st = oc_err_set(err, r.ng->err.code ? r.ng->err.code : OC_ERR_INVALID,
                            "%s: rewriting node %%%d (%s): %s", pass, i, oc_op_name(n->op),
                            r.ng->err.code ? r.ng->err.msg : "internal error");
            goto fail;
        }
        if (id == RW_DROP) {
            r.changed = 1;
            id = -1;
        }
        r.map[i] = id;
    }
    if (r.changed) {
        for (int i = 0; i < old->noutputs; i++) {
            int id = r.map[old->outputs[i].node];
            OC_ASSERT(id >= 0); /* outputs are roots */
            oc_graph_set_output(r.ng, old->outputs[i].name, (oc_tensor){id});
        }
        if (r.ng->err.code) {
            st = oc_err_set(err, r.ng->err.code, "%s: %s", pass, r.ng->err.msg);
            goto fail;
        }
    }
    if (map_out) {
        for (int i = 0; i < old->nnodes; i++) map_out[i] = r.changed ? r.map[i] : i;
    }
    if (changed_out) *changed_out = r.changed;
    free(r.map);
    if (r.changed) {
        oc_graph_free(*g);
        *g = r.ng;
    } else {
        oc_graph_free(r.ng);
    }
    return OC_OK;
fail:
    free(r.map);
    oc_graph_free(r.ng);
    return st;
}

/* ---------------------------------------------------------------- values */

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The value an element of dtype dt holds when v is stored into it, by the
 * interpreter's rule: integers truncate toward zero and clamp, NaN becomes
 * 0. Float values are compared as written: the interpreter's f64 mode keeps
 * an f32 constant's double value, so two f32 constants equal only after
 * rounding to float are different constants there. */
static double to_dtype(enum oc_dtype dt, double v)
{
    switch (dt) {
    case OC_I32:
        if (isnan(v)) return 0;
        v = trunc(v);
        return v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : v;
    case OC_U8:
        if (isnan(v)) return 0;
        v = trunc(v);
        return v < 0 ? 0 : v > 255 ? 255 : v;
    default: return v;
    }
}

/* 1 if const node c holds one value in every element (stored in *v). */
static int const_splat(const struct oc_node *c, double *v)
{
    if (c->op != OC_OP_CONST) return 0;
    if (!c->attrs.data) {
        *v = to_dtype(c->dtype, c->attrs.value);
        return 1;
    }
    int64_t n = oc_shape_numel(&c->shape);
    if (n == 0) {
        *v = 0;
        return 1;
    }
    double first = to_dtype(c->dtype, c->attrs.data[0]);
    for (int64_t i = 1; i < n; i++)
        if (!same_bits(to_dtype(c->dtype, c->attrs.data[i]), first)) return 0;
    *v = first;
    return 1;
}

/* 1 if node id of the new graph is a splat constant, looking through layout
 * ops that only move its (equal) values around. */
static int splat_of(const struct rw *r, int id, double *v)
{
    const struct oc_node *n = nnode(r, id);
    while (n->op == OC_OP_BROADCAST || n->op == OC_OP_RESHAPE || n->op == OC_OP_PERMUTE)
        n = nnode(r, n->inputs[0]);
    return const_splat(n, v);
}

static int is_splat_val(const struct rw *r, int id, double want)
{
    double v;
    return splat_of(r, id, &v) && v == want;
}

/* ---------------------------------------------------------------- fold */

static int foldable_op(enum oc_op op)
{
    const struct oc_op_info *in = &oc_op_table[op];
    if (in->flags & (OC_F_SOURCE | OC_F_EFFECT)) return 0;
    /* An rng node with a constant counter is deterministic, but folding would
     * bake up to OC_FOLD_MAX_NUMEL random numbers into the graph text, and a
     * backend draws them as cheaply as it loads them. */
    if (op == OC_OP_RNG_NORMAL || op == OC_OP_RNG_UNIFORM) return 0;
    return in->arity != 0 && oc_interp_supports(op);
}

/* Evaluates node n on the constants ins (new-graph ids) with the reference
 * interpreter in dtype-faithful (f32) mode. With `scalar`, every operand is a
 * splat and n is elementwise: one rank-0 element is computed. On success
 * returns 0 and a malloc'd array of the result's elements in *out. */
static int fold_eval(const struct rw *r, const struct oc_node *n, const int *ins, int scalar,
                     double **out, int64_t *count)
{
    struct oc_graph *sg = oc_graph_new("fold");
    if (!sg) return -1;
    oc_tensor in[64];
    const struct oc_shape scal = OC_SCALAR;
    for (int k = 0; k < n->ninputs; k++) {
        const struct oc_node *c = nnode(r, ins[k]);
        struct oc_attrs a;
        memset(&a, 0, sizeof a);
        if (scalar) {
            double v = 0;
            OC_ASSERT(const_splat(c, &v));
            a.value = v;
        } else {
            a.value = c->attrs.value;
            a.data = c->attrs.data;
        }
        in[k] = oc_graph_add(sg, OC_OP_CONST, NULL, 0, &a, c->dtype, scalar ? &scal : &c->shape);
    }
    oc_tensor t = oc_graph_add(sg, n->op, in, n->ninputs, &n->attrs, n->dtype,
                               scalar ? &scal : &n->shape);
    int rc = -1;
    struct oc_interp *it = NULL;
    if (t.id < 0) goto done;
    it = oc_interp_new(sg, 0);
    if (!it) goto done;
    struct oc_err e = {0};
    if (oc_interp_run(it, 0, &e)) goto done; /* left for the runtime to report */
    const struct oc_buf *v = oc_interp_value(it, t.id);
    if (!v) goto done;
    int64_t cnt = oc_shape_numel(&v->shape);
    double *d = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
    if (!d) goto done;
    for (int64_t i = 0; i < cnt; i++) d[i] = oc_buf_get(v, i);
    *out = d;
    *count = cnt;
    rc = 0;
done:
    oc_interp_free(it);
    oc_graph_free(sg);
    return rc;
}

static int fold_visit(struct rw *r, const struct oc_node *n, const int *ins)
{
    double v;
    if (n->op == OC_OP_CONST) {
        /* canonical form: equal data values become a splat, so identities
         * and cse see through it */
        if (n->attrs.data && const_splat(n, &v)) {
            r->changed = 1;
            return emit_splat(r, n->dtype, &n->shape, v, n->label);
        }
        return emit_copy(r, n, ins);
    }
    if (!foldable_op(n->op)) return emit_copy(r, n, ins);
    int all_splat = 1;
    for (int k = 0; k < n->ninputs; k++) {
        const struct oc_node *c = nnode(r, ins[k]);
        if (c->op != OC_OP_CONST) return emit_copy(r, n, ins);
        if (!const_splat(c, &v)) all_splat = 0;
    }
    const struct oc_op_info *info = &oc_op_table[n->op];

    /* splat in, splat out: no size limit, nothing materialized */
    if (all_splat) {
        double v0 = 0;
        const_splat(nnode(r, ins[0]), &v0);
        int same = 1;
        for (int k = 1; k < n->ninputs; k++) {
            const_splat(nnode(r, ins[k]), &v);
            if (!same_bits(v, v0)) same = 0;
        }
        int moves = n->op == OC_OP_RESHAPE || n->op == OC_OP_PERMUTE ||
                    n->op == OC_OP_BROADCAST || n->op == OC_OP_SLICE ||
                    (n->op == OC_OP_CONCAT && same) ||
                    (n->op == OC_OP_PAD && same_bits(to_dtype(n->dtype, n->attrs.pad_value), v0));
        if (moves) {
            r->changed = 1;
            return emit_splat(r, n->dtype, &n->shape, v0, n->label);
        }
        if (info->fclass == OC_FC_ELEMWISE) {
            double *d = NULL;
            int64_t cnt = 0;
            if (fold_eval(r, n, ins, 1, &d, &cnt) == 0) {
                v = d[0];
                free(d);
                r->changed = 1;
                return emit_splat(r, n->dtype, &n->shape, v, n->label);
            }
            return emit_copy(r, n, ins);
        }
    }

    /* general case: bounded result and operand sizes */
    if (oc_shape_numel(&n->shape) > OC_FOLD_MAX_NUMEL) return emit_copy(r, n, ins);
    for (int k = 0; k < n->ninputs; k++)
        if (oc_shape_numel(&nnode(r, ins[k])->shape) > OC_FOLD_MAX_OPERAND)
            return emit_copy(r, n, ins);
    double *d = NULL;
    int64_t cnt = 0;
    if (fold_eval(r, n, ins, 0, &d, &cnt)) return emit_copy(r, n, ins);
    int splat = 1;
    for (int64_t i = 1; i < cnt && splat; i++) splat = same_bits(d[i], d[0]);
    r->changed = 1;
    int id;
    if (splat) {
        id = emit_splat(r, n->dtype, &n->shape, cnt ? d[0] : 0.0, n->label);
    } else {
        struct oc_attrs a;
        memset(&a, 0, sizeof a);
        a.data = d;
        id = emit(r, OC_OP_CONST, NULL, 0, &a, n->dtype, &n->shape, n->label);
    }
    free(d);
    return id;
}

enum oc_status oc_pass_fold(struct oc_graph **g, struct oc_err *err)
{
    return rw_run(g, "fold", fold_visit, NULL, NULL, NULL, err);
}

/* ---------------------------------------------------------------- identities */

/* Maps n onto existing node id when the types agree (they always do for the
 * rules below; the check keeps a wrong rule from corrupting the graph). */
static int alias(const struct rw *r, const struct oc_node *n, int id)
{
    const struct oc_node *m = nnode(r, id);
    if (m->dtype != n->dtype || !oc_shape_eq(&m->shape, &n->shape)) return RW_NONE;
    return id;
}

static int ident_try(struct rw *r, const struct oc_node *n, const int *ins)
{
    double v;
    switch (n->op) {
    case OC_OP_MUL:
        if (is_splat_val(r, ins[1], 1.0)) return alias(r, n, ins[0]);
        if (is_splat_val(r, ins[0], 1.0)) return alias(r, n, ins[1]);
        return RW_NONE;
    case OC_OP_DIV:
        if (is_splat_val(r, ins[1], 1.0)) return alias(r, n, ins[0]);
        return RW_NONE;
    case OC_OP_ADD: /* 0.0 == -0.0: both signs (see the banner) */
        if (is_splat_val(r, ins[1], 0.0)) return alias(r, n, ins[0]);
        if (is_splat_val(r, ins[0], 0.0)) return alias(r, n, ins[1]);
        return RW_NONE;
    case OC_OP_SUB:
        if (is_splat_val(r, ins[1], 0.0)) return alias(r, n, ins[0]);
        return RW_NONE;
    case OC_OP_NEG: {
        const struct oc_node *m = nnode(r, ins[0]);
        if (m->op == OC_OP_NEG) return alias(r, n, m->inputs[0]);
        return RW_NONE;
    }
    case OC_OP_CAST:
        return nnode(r, ins[0])->dtype == n->dtype ? alias(r, n, ins[0]) : RW_NONE;
    case OC_OP_BROADCAST: {
        const struct oc_node *m = nnode(r, ins[0]);
        if (splat_of(r, ins[0], &v)) return emit_splat(r, n->dtype, &n->shape, v, n->label);
        if (oc_shape_eq(&m->shape, &n->shape)) return alias(r, n, ins[0]);
        if (m->op == OC_OP_BROADCAST) {
            /* both align trailing dims, so one broadcast of the inner operand
             * reads the same element for every output index */
            int x = m->inputs[0];
            if (oc_shape_eq(&nnode(r, x)->shape, &n->shape)) return alias(r, n, x);
            return emit(r, OC_OP_BROADCAST, &x, 1, &n->attrs, n->dtype, &n->shape, n->label);
        }
        return RW_NONE;
    }
    case OC_OP_RESHAPE: {
        const struct oc_node *m = nnode(r, ins[0]);
        if (oc_shape_eq(&m->shape, &n->shape)) return alias(r, n, ins[0]);
        if (m->op == OC_OP_RESHAPE) {
            int x = m->inputs[0];
            if (oc_shape_eq(&nnode(r, x)->shape, &n->shape)) return alias(r, n, x);
            return emit(r, OC_OP_RESHAPE, &x, 1, &n->attrs, n->dtype, &n->shape, n->label);
        }
        return RW_NONE;
    }
    case OC_OP_PERMUTE: {
        const struct oc_node *m = nnode(r, ins[0]);
        int rank = n->shape.rank, ident = 1;
        for (int i = 0; i < rank; i++) ident &= n->attrs.perm[i] == i;
        if (ident) return alias(r, n, ins[0]);
        if (m->op == OC_OP_PERMUTE) {
            /* output axis i is the middle's axis q[i], which is x's axis
             * p[q[i]] */
            struct oc_attrs a = n->attrs;
            ident = 1;
            for (int i = 0; i < rank; i++) {
                a.perm[i] = m->attrs.perm[n->attrs.perm[i]];
                ident &= a.perm[i] == i;
            }
            int x = m->inputs[0];
            if (ident) return alias(r, n, x);
            return emit(r, OC_OP_PERMUTE, &x, 1, &a, n->dtype, &n->shape, n->label);
        }
        return RW_NONE;
    }
    case OC_OP_SELECT: {
        if (ins[1] == ins[2]) return alias(r, n, ins[1]);
        /* the interpreter's rule: cond != 0 picks a (so a NaN picks a) */
        if (splat_of(r, ins[0], &v)) return alias(r, n, v != 0 ? ins[1] : ins[2]);
        const struct oc_node *c = nnode(r, ins[0]);
        while (c->op == OC_OP_BROADCAST || c->op == OC_OP_RESHAPE || c->op == OC_OP_PERMUTE)
            c = nnode(r, c->inputs[0]); /* they read every element of c */
        if (c->op == OC_OP_CONST && c->attrs.data) {
            int64_t cnt = oc_shape_numel(&c->shape), nz = 0;
            for (int64_t i = 0; i < cnt; i++) nz += to_dtype(c->dtype, c->attrs.data[i]) != 0;
            if (nz == cnt) return alias(r, n, ins[1]);
            if (nz == 0) return alias(r, n, ins[2]);
        }
        return RW_NONE;
    }
    case OC_OP_SLICE: {
        /* same shape from start 0: every step is 1 or the dim is <= 1 */
        const struct oc_node *m = nnode(r, ins[0]);
        if (!oc_shape_eq(&m->shape, &n->shape)) return RW_NONE;
        for (int i = 0; i < n->shape.rank; i++)
            if (n->attrs.start[i] != 0) return RW_NONE;
        return alias(r, n, ins[0]);
    }
    case OC_OP_PAD:
        for (int i = 0; i < n->shape.rank; i++)
            if (n->attrs.lo[i] || n->attrs.hi[i]) return RW_NONE;
        return alias(r, n, ins[0]);
    case OC_OP_CONCAT:
        return n->ninputs == 1 ? alias(r, n, ins[0]) : RW_NONE;
    default:
        return RW_NONE;
    }
}

static int ident_visit(struct rw *r, const struct oc_node *n, const int *ins)
{
    int id = ident_try(r, n, ins);
    if (id == RW_NONE) return emit_copy(r, n, ins);
    if (id >= 0) r->changed = 1;
    return id;
}

enum oc_status oc_pass_identities(struct oc_graph **g, struct oc_err *err)
{
    return rw_run(g, "identities", ident_visit, NULL, NULL, NULL, err);
}

/* ---------------------------------------------------------------- cse */

/* add, mul, eq and ne give the same value for swapped operands in IEEE
 * arithmetic (max/min do not: which NaN or which signed zero wins depends on
 * the order). */
static int commutative(enum oc_op op)
{
    return op == OC_OP_ADD || op == OC_OP_MUL || op == OC_OP_EQ || op == OC_OP_NE;
}

static int never_merge(enum oc_op op)
{
    return op == OC_OP_INPUT || op == OC_OP_PARAM || op == OC_OP_STATE || op == OC_OP_ASSIGN;
}

struct cse_tab {
    int *slot; /* new-graph ids, -1 empty */
    size_t mask;
};

/* The operands as compared: sorted for commutative ops. */
static void cse_key_ins(enum oc_op op, const int *ins, int nin, int *out)
{
    for (int k = 0; k < nin; k++) out[k] = ins[k];
    if (commutative(op) && nin == 2 && out[0] > out[1]) {
        int t = out[0];
        out[0] = out[1];
        out[1] = t;
    }
}

static uint64_t hash_dbl(double d, uint64_t h) { return oc_hash64(&d, sizeof d, h); }

static uint64_t cse_hash(const struct oc_node *n, const int *kins, int64_t numel)
{
    uint64_t h = oc_hash64(&n->op, sizeof n->op, 0);
    h = oc_hash64(&n->dtype, sizeof n->dtype, h);
    h = oc_hash64(&n->shape.rank, sizeof n->shape.rank, h);
    h = oc_hash64(n->shape.dim, sizeof(int64_t) * (size_t)n->shape.rank, h);
    h = oc_hash64(kins, sizeof(int) * (size_t)n->ninputs, h);
    const struct oc_attrs *a = &n->attrs;
    h = hash_dbl(a->value, h);
    h = oc_hash64(&a->seed, sizeof a->seed, h);
    h = oc_hash64(&a->axes, sizeof a->axes, h);
    h = oc_hash64(&a->axis, sizeof a->axis, h);
    h = oc_hash64(a->perm, sizeof a->perm, h);
    if (a->data) h = oc_hash64(a->data, sizeof(double) * (size_t)numel, h);
    return h;
}

static int str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

#define ARR_EQ(x, y) (memcmp((x), (y), sizeof(x)) == 0)

/* Every field, doubles bit for bit (0.0 and -0.0 are different constants). */
static int attrs_eq(const struct oc_attrs *a, const struct oc_attrs *b, int64_t numel)
{
    if (!str_eq(a->name, b->name) || a->init != b->init || !same_bits(a->init_a, b->init_a) ||
        !same_bits(a->init_b, b->init_b) || !same_bits(a->value, b->value) || a->seed != b->seed ||
        !ARR_EQ(a->perm, b->perm) || !ARR_EQ(a->start, b->start) || !ARR_EQ(a->stop, b->stop) ||
        !ARR_EQ(a->step, b->step) || !ARR_EQ(a->lo, b->lo) || !ARR_EQ(a->hi, b->hi) ||
        !same_bits(a->pad_value, b->pad_value) || a->axis != b->axis || a->depth != b->depth ||
        a->axes != b->axes || a->keepdims != b->keepdims || a->trans_a != b->trans_a ||
        a->trans_b != b->trans_b || !ARR_EQ(a->stride, b->stride) ||
        !ARR_EQ(a->padding, b->padding))
        return 0;
    if (!a->data || !b->data) return a->data == b->data;
    return memcmp(a->data, b->data, sizeof(double) * (size_t)numel) == 0;
}

static int cse_same(const struct rw *r, const struct oc_node *n, const int *kins, int64_t numel,
                    int id)
{
    const struct oc_node *m = nnode(r, id);
    if (m->op != n->op || m->dtype != n->dtype || !oc_shape_eq(&m->shape, &n->shape) ||
        m->ninputs != n->ninputs)
        return 0;
    int mk[64];
    cse_key_ins(m->op, m->inputs, m->ninputs, mk);
    if (memcmp(mk, kins, sizeof(int) * (size_t)n->ninputs)) return 0;
    return attrs_eq(&m->attrs, &n->attrs, numel);
}

static int cse_visit(struct rw *r, const struct oc_node *n, const int *ins)
{
    struct cse_tab *t = r->ctx;
    if (never_merge(n->op)) return emit_copy(r, n, ins);
    int kins[64];
    cse_key_ins(n->op, ins, n->ninputs, kins);
    int64_t numel = oc_shape_numel(&n->shape);
    size_t s = (size_t)cse_hash(n, kins, numel) & t->mask;
    for (; t->slot[s] >= 0; s = (s + 1) & t->mask) {
        int id = t->slot[s];
        if (cse_same(r, n, kins, numel, id)) {
            struct oc_node *m = r->ng->nodes[id];
            if (!m->label && n->label) m->label = oc_arena_strdup(&r->ng->arena, n->label);
            r->changed = 1;
            return id;
        }
    }
    int id = emit_copy(r, n, ins);
    if (id >= 0) t->slot[s] = id;
    return id;
}

static enum oc_status cse_run(struct oc_graph **g, int *map, int *changed, struct oc_err *err)
{
    struct cse_tab t;
    size_t cap = 16;
    while (cap < 2 * (size_t)(*g)->nnodes + 16) cap *= 2;
    t.slot = malloc(sizeof(int) * cap);
    if (!t.slot) return oc_err_set(err, OC_ERR_NOMEM, "cse: out of memory");
    memset(t.slot, 0xff, sizeof(int) * cap); /* all -1: empty */
    t.mask = cap - 1;
    enum oc_status st = rw_run(g, "cse", cse_visit, &t, map, changed, err);
    free(t.slot);
    return st;
}

enum oc_status oc_pass_cse(struct oc_graph **g, struct oc_err *err)
{
    return cse_run(g, NULL, NULL, err);
}

/* ---------------------------------------------------------------- dce */

static int dce_visit(struct rw *r, const struct oc_node *n, const int *ins)
{
    const unsigned char *live = r->ctx;
    if (!live[n->id]) return RW_DROP;
    return emit_copy(r, n, ins);
}

static enum oc_status dce_run(struct oc_graph **g, int *map, int *changed, struct oc_err *err)
{
    const struct oc_graph *old = *g;
    unsigned char *live = calloc((size_t)old->nnodes + 1, 1);
    if (!live) return oc_err_set(err, OC_ERR_NOMEM, "dce: out of memory");
    for (int i = 0; i < old->noutputs; i++) {
        int id = old->outputs[i].node;
        if (id >= 0 && id < old->nnodes) live[id] = 1;
    }
    for (int i = old->nnodes - 1; i >= 0; i--) {
        const struct oc_node *n = old->nodes[i];
        if (n->op == OC_OP_INPUT || n->op == OC_OP_PARAM || n->op == OC_OP_STATE ||
            n->op == OC_OP_ASSIGN)
            live[i] = 1;
        if (!live[i]) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] >= 0 && n->inputs[k] < i) live[n->inputs[k]] = 1;
    }
    enum oc_status st = rw_run(g, "dce", dce_visit, live, map, changed, err);
    free(live);
    return st;
}

enum oc_status oc_pass_dce(struct oc_graph **g, struct oc_err *err)
{
    return dce_run(g, NULL, NULL, err);
}

/* ---------------------------------------------------------------- simplify */

static enum oc_status run_one(int which, struct oc_graph **g, int *map, int *changed,
                              struct oc_err *err)
{
    switch (which) {
    case 0: return rw_run(g, "fold", fold_visit, NULL, map, changed, err);
    case 1: return rw_run(g, "identities", ident_visit, NULL, map, changed, err);
    case 2: return cse_run(g, map, changed, err);
    default: return dce_run(g, map, changed, err);
    }
}

static int debug_level(void)
{
    const char *s = getenv("OC_DEBUG");
    return s ? atoi(s) : 0;
}

enum oc_status oc_pass_simplify_map(struct oc_graph **g, int *map, struct oc_err *err)
{
    static const char *const names[4] = {"fold", "identities", "cse", "dce"};
    int n0 = (*g)->nnodes, dbg = debug_level();
    int *total = malloc(sizeof(int) * (size_t)(n0 ? n0 : 1));
    int *step = NULL;
    if (!total) return oc_err_set(err, OC_ERR_NOMEM, "simplify: out of memory");
    for (int i = 0; i < n0; i++) total[i] = i;
    enum oc_status st = OC_OK;
    for (int round = 0; round < OC_SIMPLIFY_MAX_ROUNDS; round++) {
        int any = 0;
        for (int p = 0; p < 4; p++) {
            int changed = 0;
            free(step);
            step = malloc(sizeof(int) * (size_t)((*g)->nnodes ? (*g)->nnodes : 1));
            if (!step) {
                st = oc_err_set(err, OC_ERR_NOMEM, "simplify: out of memory");
                goto done;
            }
            if ((st = run_one(p, g, step, &changed, err))) goto done;
            if (!changed) continue;
            any = 1;
            for (int i = 0; i < n0; i++)
                if (total[i] >= 0) total[i] = step[total[i]];
            if (dbg >= 4) {
                fprintf(stderr, "--- simplify round %d, after %s: %d nodes\n", round + 1,
                        names[p], (*g)->nnodes);
                oc_graph_print(*g, stderr);
            }
        }
        if (!any) break;
    }
#if !defined(NDEBUG) || defined(OC_DEBUG_CHECKS)
    dbg = dbg ? dbg : 1;
#endif
    if (dbg) {
        struct oc_err e = {0};
        if (oc_graph_verify(*g, &e)) {
            st = oc_err_set(err, e.code, "simplify produced an invalid graph: %s", e.msg);
            goto done;
        }
    }
    if (map) memcpy(map, total, sizeof(int) * (size_t)n0);
done:
    free(step);
    free(total);
    return st;
}

enum oc_status oc_pass_simplify(struct oc_graph **g, struct oc_err *err)
{
    return oc_pass_simplify_map(g, NULL, err);
}
