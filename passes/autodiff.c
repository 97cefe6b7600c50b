/* autodiff.c - reverse-mode differentiation, graph to graph.
 *
 * oc_pass_autodiff appends the adjoint (reverse) graph of a loss to the graph
 * that computes it, one VJP rule per primitive of ir/ops.def. The rules are
 * written with the DSL builders, so the backward graph is made of ordinary
 * primitives and goes through simplify, fusion and codegen like the forward
 * one. Data flow:
 *
 *   forward nodes 0..loss
 *     -> dep[]: which nodes depend (differentiably) on a requested tensor
 *     -> anc[]: which nodes the loss depends on
 *     -> walk loss..0 in reverse topological order: a node on both sets
 *        with a complete adjoint pushes contributions to its operands
 *        (a later consumer always has a larger id, so the adjoint of node i
 *        is complete when the walk reaches i; fan-out terms are added)
 *     -> grads_out[i] = adjoint of wrt[i], or a zero constant.
 *
 * Conventions at non-smooth points (chosen to be deterministic and to match
 * PyTorch where it has one): relu'(0) = 0, abs'(0) = 0 (sign), max/min ties
 * split 0.5/0.5, reduce_max divides the gradient equally among all elements
 * equal to the maximum, d pow(a,b)/db = 0 where a == 0.
 */
#include "passes.h"

#include "../frontend/frontend.h"

#include <stdlib.h>
#include <string.h>

/* How the pass treats an op. */
enum rule_kind {
    RK_NONE,  /* no rule: a gradient that must flow through it is an error */
    RK_LEAF,  /* a source: the gradient stops here */
    RK_VJP,   /* a vector-Jacobian product rule below */
    RK_ZERO,  /* differentiable, piecewise constant: zero gradient */
    RK_BLOCK, /* deliberately not differentiated through (stop_gradient, assign) */
};

/* Every op is listed: a new op in ops.def defaults to RK_NONE, which the
 * coverage test flags if the op is marked OC_F_DIFF. */
static enum rule_kind rule_kind(enum oc_op op)
{
    switch (op) {
    case OC_OP_INPUT:
    case OC_OP_PARAM:
        return RK_LEAF;
    case OC_OP_NEG: case OC_OP_EXP: case OC_OP_LOG: case OC_OP_SQRT: case OC_OP_RSQRT:
    case OC_OP_RECIP: case OC_OP_ABS: case OC_OP_RELU: case OC_OP_SIGMOID: case OC_OP_TANH:
    case OC_OP_SOFTPLUS: case OC_OP_LOG1P:
    case OC_OP_ADD: case OC_OP_SUB: case OC_OP_MUL: case OC_OP_DIV: case OC_OP_POW:
    case OC_OP_MAX: case OC_OP_MIN: case OC_OP_SELECT: case OC_OP_CAST:
    case OC_OP_RESHAPE: case OC_OP_PERMUTE: case OC_OP_BROADCAST: case OC_OP_SLICE:
    case OC_OP_PAD: case OC_OP_CONCAT: case OC_OP_SUM: case OC_OP_REDUCE_MAX:
    case OC_OP_MATMUL: case OC_OP_CONV2D: case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT: case OC_OP_GATHER:
        return RK_VJP;
    case OC_OP_SIGN:
    case OC_OP_LT: case OC_OP_LE: case OC_OP_EQ: case OC_OP_NE: case OC_OP_GE: case OC_OP_GT:
        return RK_ZERO;
    case OC_OP_STOP_GRADIENT:
    case OC_OP_ASSIGN:
        return RK_BLOCK;
    case OC_OP_STATE: case OC_OP_CONST: case OC_OP_RNG_NORMAL: case OC_OP_RNG_UNIFORM:
    case OC_OP_ARGMAX: case OC_OP_ONE_HOT:
    case OC_OP_COUNT:
        return RK_NONE;
    }
    return RK_NONE;
}

int oc_autodiff_has_rule(enum oc_op op)
{
    if ((unsigned)op >= OC_OP_COUNT) return 0;
    enum rule_kind k = rule_kind(op);
    return k == RK_LEAF || k == RK_VJP || k == RK_ZERO;
}

/* Which operands of a node can carry gradient (the others are conditions,
 * indices or counters). */
static int diff_operand(const struct oc_node *n, int k)
{
    switch (n->op) {
    case OC_OP_SELECT: return k != 0;
    case OC_OP_GATHER: return k == 0;
    default: return 1;
    }
}

/* ---------------------------------------------------------------- context */

struct ad {
    struct oc_graph *g;
    int n;    /* forward nodes: ids < n */
    int *adj; /* adjoint node id per forward node, -1 if none yet */
    unsigned char *dep, *anc, *recv;
};

static const struct oc_node *nd(const struct ad *a, int id) { return a->g->nodes[id]; }
static oc_tensor T(int id) { return (oc_tensor){id}; }

static void describe(const struct oc_graph *g, int id, char *buf, size_t n)
{
    const struct oc_node *x = g->nodes[id];
    const char *lab = x->label ? x->label : x->attrs.name;
    if (lab)
        snprintf(buf, n, "%%%d %s \"%s\"", id, oc_op_name(x->op), lab);
    else
        snprintf(buf, n, "%%%d %s", id, oc_op_name(x->op));
}

/* Adds a contribution to the adjoint of forward node k. */
static void accum(struct ad *a, int k, oc_tensor c)
{
    if (!oc_valid(c)) return; /* builder error, already sticky in g */
    OC_ASSERT(nd(a, c.id)->dtype == nd(a, k)->dtype);
    OC_ASSERT(oc_shape_eq(&nd(a, c.id)->shape, &nd(a, k)->shape));
    if (a->adj[k] < 0)
        a->adj[k] = c.id;
    else
        a->adj[k] = oc_add(a->g, T(a->adj[k]), c).id;
}

static int wants(const struct ad *a, const struct oc_node *n, int k)
{
    return diff_operand(n, k) && a->dep[n->inputs[k]];
}

/* ---------------------------------------------------------------- layout helpers */

/* Sum dy (the broadcast's output shape) back to the operand shape xs. */
static oc_tensor unbroadcast(struct oc_graph *g, oc_tensor dy, const struct oc_shape *xs)
{
    const struct oc_shape *ys = &g->nodes[dy.id]->shape;
    int off = ys->rank - xs->rank;
    uint32_t axes = 0;
    for (int i = 0; i < ys->rank; i++) {
        if (i < off)
            axes |= 1u << i;
        else if (xs->dim[i - off] == 1 && ys->dim[i] != 1)
            axes |= 1u << i;
    }
    oc_tensor s = axes ? oc_sum(g, dy, axes, 1) : dy;
    return oc_reshape(g, s, *xs);
}

/* dy of a reduction's output (keepdims or not) broadcast back to xs. */
static oc_tensor expand_reduced(struct oc_graph *g, oc_tensor dy, const struct oc_shape *xs,
                                uint32_t axes)
{
    struct oc_shape keep = *xs;
    for (int i = 0; i < xs->rank; i++)
        if (axes & (1u << i)) keep.dim[i] = 1;
    return oc_broadcast(g, oc_reshape(g, dy, keep), *xs);
}

/* Spreads dy along axis `ax` so that element j lands at position j*step:
 * [.., n, ..] -> [.., (n-1)*step+1, ..], zeros between. Done on a rank-3 view
 * [A, n, B] so it works at any rank: add a unit axis, pad it to `step`,
 * merge, drop the trailing step-1 zeros. */
static oc_tensor spread(struct oc_graph *g, oc_tensor dy, int ax, int64_t step)
{
    struct oc_shape s = g->nodes[dy.id]->shape;
    int64_t A = 1, B = 1, n = s.dim[ax];
    for (int i = 0; i < ax; i++) A *= s.dim[i];
    for (int i = ax + 1; i < s.rank; i++) B *= s.dim[i];
    oc_tensor t = oc_reshape(g, dy, OC_SHAPE(A, n, 1, B));
    t = oc_pad(g, t, (const int64_t[]){0, 0, 0, 0}, (const int64_t[]){0, 0, step - 1, 0}, 0.0);
    t = oc_reshape(g, t, OC_SHAPE(A, n * step, B));
    int64_t len = (n - 1) * step + 1;
    t = oc_slice(g, t, (const int64_t[]){0, 0, 0}, (const int64_t[]){A, len, B}, NULL);
    s.dim[ax] = len;
    return oc_reshape(g, t, s);
}

static oc_tensor zeros_like_node(struct oc_graph *g, const struct oc_node *x)
{
    return oc_const_fill(g, x->dtype, x->shape, 0.0);
}

/* ---------------------------------------------------------------- rules */

static oc_tensor sc(struct oc_graph *g, oc_tensor like, double v) { return oc_scalar_like(g, like, v); }

/* Pushes the adjoint of node i to its operands. */
static void vjp(struct ad *a, int i)
{
    struct oc_graph *g = a->g;
    const struct oc_node *n = nd(a, i);
    oc_tensor dy = T(a->adj[i]);
    oc_tensor y = T(i);
    oc_tensor x = n->ninputs > 0 ? T(n->inputs[0]) : OC_NONE;
    oc_tensor x1 = n->ninputs > 1 ? T(n->inputs[1]) : OC_NONE;
    const struct oc_shape *xs = n->ninputs > 0 ? &nd(a, x.id)->shape : NULL;
    int w0 = n->ninputs > 0 && wants(a, n, 0);
    int w1 = n->ninputs > 1 && wants(a, n, 1);
    /* a requested intermediate may have no requested tensor upstream; the
     * cases below may then push to operand 0 unconditionally */
    int any = 0;
    for (int k = 0; k < n->ninputs; k++) any |= wants(a, n, k);
    if (!any) return;

    switch (n->op) {
    /* unary elementwise */
    case OC_OP_NEG:
        accum(a, x.id, oc_neg(g, dy));
        break;
    case OC_OP_EXP:
        accum(a, x.id, oc_mul(g, dy, y));
        break;
    case OC_OP_LOG:
        accum(a, x.id, oc_div(g, dy, x));
        break;
    case OC_OP_SQRT: /* 1 / (2 sqrt x) */
        accum(a, x.id, oc_div(g, dy, oc_scale(g, y, 2.0)));
        break;
    case OC_OP_RSQRT: /* -x^(-3/2) / 2 = -y^3 / 2 */
        accum(a, x.id, oc_mul(g, dy, oc_scale(g, oc_mul(g, y, oc_mul(g, y, y)), -0.5)));
        break;
    case OC_OP_RECIP: /* -1/x^2 = -y^2 */
        accum(a, x.id, oc_neg(g, oc_mul(g, dy, oc_mul(g, y, y))));
        break;
    case OC_OP_ABS: /* sign(0) = 0 */
        accum(a, x.id, oc_mul(g, dy, oc_sign(g, x)));
        break;
    case OC_OP_RELU: /* relu'(0) = 0 */
        accum(a, x.id, oc_select(g, oc_gt(g, x, sc(g, x, 0.0)), dy, sc(g, dy, 0.0)));
        break;
    case OC_OP_SIGMOID: /* y (1 - y) */
        accum(a, x.id, oc_mul(g, dy, oc_mul(g, y, oc_sub(g, sc(g, y, 1.0), y))));
        break;
    case OC_OP_TANH: /* 1 - y^2 */
        accum(a, x.id, oc_mul(g, dy, oc_sub(g, sc(g, y, 1.0), oc_mul(g, y, y))));
        break;
    case OC_OP_SOFTPLUS:
        accum(a, x.id, oc_mul(g, dy, oc_sigmoid(g, x)));
        break;
    case OC_OP_LOG1P:
        accum(a, x.id, oc_div(g, dy, oc_add_scalar(g, x, 1.0)));
        break;
    /* binary elementwise */
    case OC_OP_ADD:
        if (w0) accum(a, x.id, dy);
        if (w1) accum(a, x1.id, dy);
        break;
    case OC_OP_SUB:
        if (w0) accum(a, x.id, dy);
        if (w1) accum(a, x1.id, oc_neg(g, dy));
        break;
    case OC_OP_MUL:
        if (w0) accum(a, x.id, oc_mul(g, dy, x1));
        if (w1) accum(a, x1.id, oc_mul(g, dy, x));
        break;
    case OC_OP_DIV: /* y = a / b: da = dy / b, db = -dy y / b */
        if (w0) accum(a, x.id, oc_div(g, dy, x1));
        if (w1) accum(a, x1.id, oc_neg(g, oc_div(g, oc_mul(g, dy, y), x1)));
        break;
    case OC_OP_POW: /* y = a^b: da = dy b a^(b-1), db = dy y log a (0 where a == 0) */
        if (w0)
            accum(a, x.id, oc_mul(g, dy, oc_mul(g, x1, oc_pow(g, x, oc_add_scalar(g, x1, -1.0)))));
        if (w1) {
            oc_tensor l = oc_mul(g, y, oc_log(g, x));
            l = oc_select(g, oc_eq(g, x, sc(g, x, 0.0)), sc(g, x, 0.0), l);
            accum(a, x1.id, oc_mul(g, dy, l));
        }
        break;
    case OC_OP_MAX:
    case OC_OP_MIN: {
        /* the winner takes dy; a tie gives each side half */
        enum oc_op win = n->op == OC_OP_MAX ? OC_OP_GT : OC_OP_LT;
        enum oc_op lose = n->op == OC_OP_MAX ? OC_OP_LT : OC_OP_GT;
        oc_tensor half = oc_scale(g, oc_eq(g, x, x1), 0.5);
        if (w0) accum(a, x.id, oc_mul(g, dy, oc_add(g, oc_binary(g, win, x, x1), half)));
        if (w1) accum(a, x1.id, oc_mul(g, dy, oc_add(g, oc_binary(g, lose, x, x1), half)));
        break;
    }
    case OC_OP_SELECT: {
        oc_tensor c = x, zero = sc(g, dy, 0.0);
        if (w1) accum(a, n->inputs[1], oc_select(g, c, dy, zero));
        if (n->ninputs > 2 && wants(a, n, 2)) accum(a, n->inputs[2], oc_select(g, c, zero, dy));
        break;
    }
    case OC_OP_CAST:
        accum(a, x.id, oc_cast(g, dy, nd(a, x.id)->dtype));
        break;
    /* layout */
    case OC_OP_RESHAPE:
        accum(a, x.id, oc_reshape(g, dy, *xs));
        break;
    case OC_OP_PERMUTE: {
        int inv[OC_MAX_RANK];
        for (int k = 0; k < xs->rank; k++) inv[n->attrs.perm[k]] = k;
        accum(a, x.id, oc_permute(g, dy, inv));
        break;
    }
    case OC_OP_BROADCAST:
        accum(a, x.id, unbroadcast(g, dy, xs));
        break;
    case OC_OP_SLICE: {
        if (oc_shape_numel(&n->shape) == 0) {
            accum(a, x.id, zeros_like_node(g, nd(a, x.id)));
            break;
        }
        oc_tensor t = dy;
        int64_t lo[OC_MAX_RANK], hi[OC_MAX_RANK];
        for (int k = 0; k < xs->rank; k++) {
            int64_t st = n->attrs.step[k], len = n->shape.dim[k];
            if (st > 1 && len > 1) {
                t = spread(g, t, k, st);
                len = (len - 1) * st + 1;
            }
            lo[k] = n->attrs.start[k];
            hi[k] = xs->dim[k] - lo[k] - len;
        }
        accum(a, x.id, oc_pad(g, t, lo, hi, 0.0));
        break;
    }
    case OC_OP_PAD: {
        int64_t st[OC_MAX_RANK], sp[OC_MAX_RANK];
        for (int k = 0; k < xs->rank; k++) {
            st[k] = n->attrs.lo[k];
            sp[k] = st[k] + xs->dim[k];
        }
        accum(a, x.id, oc_slice(g, dy, st, sp, NULL));
        break;
    }
    case OC_OP_CONCAT: {
        int ax = n->attrs.axis;
        int64_t off = 0;
        for (int k = 0; k < n->ninputs; k++) {
            const struct oc_shape *ks = &nd(a, n->inputs[k])->shape;
            if (wants(a, n, k)) {
                int64_t st[OC_MAX_RANK], sp[OC_MAX_RANK];
                for (int d = 0; d < ks->rank; d++) {
                    st[d] = 0;
                    sp[d] = n->shape.dim[d];
                }
                st[ax] = off;
                sp[ax] = off + ks->dim[ax];
                accum(a, n->inputs[k], oc_slice(g, dy, st, sp, NULL));
            }
            off += ks->dim[ax];
        }
        break;
    }
    /* reductions */
    case OC_OP_SUM:
        accum(a, x.id, expand_reduced(g, dy, xs, n->attrs.axes));
        break;
    case OC_OP_REDUCE_MAX: {
        /* every element equal to the max gets dy / (number of such elements) */
        oc_tensor mask = oc_eq(g, x, expand_reduced(g, y, xs, n->attrs.axes));
        oc_tensor cnt = oc_sum(g, mask, n->attrs.axes, n->attrs.keepdims);
        oc_tensor share = oc_div(g, dy, cnt);
        accum(a, x.id, oc_mul(g, mask, expand_reduced(g, share, xs, n->attrs.axes)));
        break;
    }
    /* contractions */
    case OC_OP_MATMUL: {
        int ta = n->attrs.trans_a, tb = n->attrs.trans_b;
        oc_tensor A = x, B = x1;
        if (w0) {
            oc_tensor dA;
            if (!ta && !tb) dA = oc_matmul(g, dy, B, 0, 1);       /* dC B^T */
            else if (!ta && tb) dA = oc_matmul(g, dy, B, 0, 0);   /* dC B */
            else if (ta && !tb) dA = oc_matmul(g, B, dy, 0, 1);   /* B dC^T */
            else dA = oc_matmul(g, B, dy, 1, 1);                  /* B^T dC^T */
            accum(a, A.id, dA);
        }
        if (w1) {
            oc_tensor dB;
            if (!ta && !tb) dB = oc_matmul(g, A, dy, 1, 0);       /* A^T dC */
            else if (!ta && tb) dB = oc_matmul(g, dy, A, 1, 0);   /* dC^T A */
            else if (ta && !tb) dB = oc_matmul(g, A, dy, 0, 0);   /* A dC */
            else dB = oc_matmul(g, dy, A, 1, 1);                  /* dC^T A^T */
            accum(a, B.id, dB);
        }
        break;
    }
    case OC_OP_CONV2D:
    case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT: {
        /* conv2d is bilinear: <conv(x,w), dy> = <x, gi(dy,w)> = <w, gw(x,dy)>,
         * so each of the three is the adjoint of the others in one operand. */
        struct oc_attrs at;
        memset(&at, 0, sizeof at);
        for (int k = 0; k < 2; k++) {
            at.stride[k] = n->attrs.stride[k];
            at.padding[k] = n->attrs.padding[k];
        }
        const struct oc_node *n0 = nd(a, x.id), *n1 = nd(a, x1.id);
        if (n->op == OC_OP_CONV2D) { /* y = conv(x, w) */
            if (w0)
                accum(a, x.id, oc_graph_add(g, OC_OP_CONV2D_GRAD_INPUT, (oc_tensor[]){dy, x1}, 2,
                                            &at, n0->dtype, &n0->shape));
            if (w1)
                accum(a, x1.id, oc_graph_add(g, OC_OP_CONV2D_GRAD_WEIGHT, (oc_tensor[]){x, dy}, 2,
                                             &at, n1->dtype, &n1->shape));
        } else if (n->op == OC_OP_CONV2D_GRAD_INPUT) { /* y = gi(d, w), y has x's shape */
            if (w0) accum(a, x.id, oc_graph_add(g, OC_OP_CONV2D, (oc_tensor[]){dy, x1}, 2, &at, 0, NULL));
            if (w1)
                accum(a, x1.id, oc_graph_add(g, OC_OP_CONV2D_GRAD_WEIGHT, (oc_tensor[]){dy, x}, 2,
                                             &at, n1->dtype, &n1->shape));
        } else { /* y = gw(x, d), y has w's shape */
            if (w0)
                accum(a, x.id, oc_graph_add(g, OC_OP_CONV2D_GRAD_INPUT, (oc_tensor[]){x1, dy}, 2,
                                            &at, n0->dtype, &n0->shape));
            if (w1) accum(a, x1.id, oc_graph_add(g, OC_OP_CONV2D, (oc_tensor[]){x, dy}, 2, &at, 0, NULL));
        }
        break;
    }
    case OC_OP_GATHER: {
        /* dx = one_hot(idx) * dy, built with the gathered axis last, then
         * permuted into place */
        int ax = n->attrs.axis, r = xs->rank;
        const struct oc_node *xn = nd(a, x.id);
        oc_tensor oh = oc_one_hot(g, x1, xs->dim[ax], xn->dtype);
        struct oc_shape ds = n->shape; /* idx shape */
        ds.dim[ds.rank++] = 1;
        oc_tensor t = oc_mul(g, oh, oc_reshape(g, dy, ds));
        if (ax != r - 1) {
            int perm[OC_MAX_RANK];
            for (int k = 0; k < r; k++) perm[k] = k < ax ? k : k == ax ? r - 1 : k - 1;
            t = oc_permute(g, t, perm);
        }
        accum(a, x.id, t);
        break;
    }
    default:
        OC_ASSERT(!"vjp: op without a rule reached");
    }
}

/* ---------------------------------------------------------------- the pass */

/* First node on a path from `from` to the loss that no gradient can cross
 * (an op without a rule, e.g. argmax), or -1. */
static int find_blocker(const struct ad *a, int from, int loss)
{
    unsigned char *r = calloc((size_t)a->n, 1);
    if (!r) return -1;
    r[from] = 1;
    int found = -1;
    for (int i = from + 1; i <= loss && found < 0; i++) {
        const struct oc_node *n = nd(a, i);
        for (int k = 0; k < n->ninputs; k++)
            if (r[n->inputs[k]]) r[i] = 1;
        if (r[i] && a->anc[i] && rule_kind(n->op) == RK_NONE) found = i;
    }
    free(r);
    return found;
}

enum oc_status oc_pass_autodiff(struct oc_graph *g, int loss, int seed, const int *wrt, int nwrt,
                                int *grads_out, struct oc_err *err)
{
    char what[256];
    if (oc_graph_status(g))
        return oc_err_set(err, g->err.code, "autodiff: graph has a build error: %s", g->err.msg);
    int n = g->nnodes;
    if (loss < 0 || loss >= n)
        return oc_err_set(err, OC_ERR_INVALID, "autodiff: loss %%%d is not a node of the graph",
                          loss);
    if (nwrt < 0 || (nwrt > 0 && (!wrt || !grads_out)))
        return oc_err_set(err, OC_ERR_INVALID, "autodiff: bad list of tensors to differentiate");
    const struct oc_node *ln = g->nodes[loss];
    describe(g, loss, what, sizeof what);
    if (!oc_dtype_is_float(ln->dtype))
        return oc_err_set(err, OC_ERR_DTYPE, "autodiff: loss %s is %s, not a float tensor", what,
                          oc_dtype_name(ln->dtype));
    if (seed < 0 && ln->shape.rank != 0) {
        char s[128];
        return oc_err_set(err, OC_ERR_SHAPE,
                          "autodiff: loss %s has shape %s: a non-scalar loss needs a seed (cotangent)",
                          what, oc_shape_str(&ln->shape, s, sizeof s));
    }
    if (seed >= 0) {
        if (seed >= n)
            return oc_err_set(err, OC_ERR_INVALID, "autodiff: seed %%%d is not a node", seed);
        const struct oc_node *sn = g->nodes[seed];
        if (sn->dtype != ln->dtype || !oc_shape_eq(&sn->shape, &ln->shape)) {
            char s1[128], s2[128];
            return oc_err_set(err, OC_ERR_SHAPE,
                              "autodiff: seed %%%d is %s%s but loss %s is %s%s", seed,
                              oc_dtype_name(sn->dtype), oc_shape_str(&sn->shape, s1, 128), what,
                              oc_dtype_name(ln->dtype), oc_shape_str(&ln->shape, s2, 128));
        }
    }
    for (int i = 0; i < nwrt; i++)
        if (wrt[i] < 0 || wrt[i] >= n)
            return oc_err_set(err, OC_ERR_INVALID,
                              "autodiff: tensor %d to differentiate (%%%d) is not a node", i,
                              wrt[i]);

    struct ad a = {.g = g, .n = n};
    a.adj = malloc(sizeof(int) * (size_t)n);
    a.dep = calloc((size_t)n, 1);
    a.anc = calloc((size_t)n, 1);
    a.recv = calloc((size_t)n, 1);
    enum oc_status st = OC_OK;
    if (!a.adj || !a.dep || !a.anc || !a.recv) {
        st = oc_err_set(err, OC_ERR_NOMEM, "autodiff: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) a.adj[i] = -1;

    /* dep: float nodes reached from a wrt through ops that pass gradient */
    for (int i = 0; i < nwrt; i++)
        if (oc_dtype_is_float(g->nodes[wrt[i]]->dtype)) a.dep[wrt[i]] = 1;
    for (int i = 0; i <= loss; i++) {
        const struct oc_node *x = g->nodes[i];
        if (a.dep[i] || !oc_dtype_is_float(x->dtype)) continue;
        enum rule_kind k = rule_kind(x->op);
        for (int j = 0; j < x->ninputs; j++) {
            if (!diff_operand(x, j) || !a.dep[x->inputs[j]]) continue;
            if (k == RK_VJP) a.dep[i] = 1;
            else if (k == RK_NONE) a.dep[i] = 2; /* checked below if it matters */
        }
    }
    /* anc: nodes the loss depends on */
    a.anc[loss] = 1;
    for (int i = loss; i >= 0; i--) {
        if (!a.anc[i]) continue;
        const struct oc_node *x = g->nodes[i];
        for (int j = 0; j < x->ninputs; j++) a.anc[x->inputs[j]] = 1;
    }
    for (int i = 0; i <= loss; i++) {
        if (a.dep[i] == 2 && a.anc[i]) {
            describe(g, i, what, sizeof what);
            st = oc_err_set(err, OC_ERR_UNSUPPORTED,
                            "autodiff: the gradient must flow through node %s, which has no "
                            "gradient rule", what);
            goto out;
        }
    }
    /* recv: nodes the reverse walk will give an adjoint (every VJP rule
     * contributes to each wanted operand), computed before anything is
     * appended so that a failed request leaves the graph untouched */
    a.recv[loss] = a.dep[loss] ? 1 : 0;
    for (int i = loss; i >= 0; i--) {
        const struct oc_node *x = g->nodes[i];
        if (!a.recv[i] || rule_kind(x->op) != RK_VJP) continue;
        for (int k = 0; k < x->ninputs; k++)
            if (wants(&a, x, k)) a.recv[x->inputs[k]] = 1;
    }
    /* a float wrt that influences the loss only through e.g. argmax is a
     * request that cannot be met: say which node blocks it */
    for (int i = 0; i < nwrt; i++) {
        int w = wrt[i];
        if (!a.dep[w] || !a.anc[w] || a.recv[w]) continue;
        int b = find_blocker(&a, w, loss);
        if (b >= 0) {
            char wb[256];
            describe(g, w, wb, sizeof wb);
            describe(g, b, what, sizeof what);
            st = oc_err_set(err, OC_ERR_UNSUPPORTED,
                            "autodiff: no gradient of the loss can reach %s: its path to the "
                            "loss passes through node %s, which is not differentiable",
                            wb, what);
            goto out;
        }
    }

    /* the reverse walk */
    a.adj[loss] = seed >= 0 ? seed : oc_scalar(g, ln->dtype, 1.0).id;
    for (int i = loss; i >= 0 && !g->err.code; i--) {
        if (!a.recv[i] || rule_kind(g->nodes[i]->op) != RK_VJP) continue;
        OC_ASSERT(a.adj[i] >= 0);
        vjp(&a, i);
    }
    if (g->err.code) {
        describe(g, loss, what, sizeof what);
        st = oc_err_set(err, g->err.code, "autodiff of %s: %s", what, g->err.msg);
        goto out;
    }
    for (int i = 0; i < nwrt; i++) {
        int w = wrt[i];
        if (a.recv[w]) {
            grads_out[i] = a.adj[w];
        } else {
            grads_out[i] = zeros_like_node(g, g->nodes[w]).id;
        }
    }
    if (g->err.code) st = oc_err_set(err, g->err.code, "autodiff: %s", g->err.msg);
out:
    free(a.adj);
    free(a.dep);
    free(a.anc);
    free(a.recv);
    return st;
}
