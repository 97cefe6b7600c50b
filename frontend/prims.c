/* prims.c - DSL builders for the primitive ops: thin wrappers over
 * oc_graph_add that fill attributes and insert numpy-style broadcasts for
 * binary elementwise ops. */
#include "frontend.h"

#include <string.h>

static struct oc_attrs no_attrs(void)
{
    struct oc_attrs a;
    memset(&a, 0, sizeof a);
    return a;
}

static const struct oc_node *node(struct oc_graph *g, oc_tensor t) { return g->nodes[t.id]; }

/* ---------------------------------------------------------------- sources */

oc_tensor oc_input(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s)
{
    struct oc_attrs a = no_attrs();
    a.name = name;
    return oc_graph_add(g, OC_OP_INPUT, NULL, 0, &a, dt, &s);
}

oc_tensor oc_param(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s,
                   enum oc_init init, double init_a, double init_b)
{
    struct oc_attrs a = no_attrs();
    a.name = name;
    a.init = init;
    a.init_a = init_a;
    a.init_b = init_b;
    return oc_graph_add(g, OC_OP_PARAM, NULL, 0, &a, dt, &s);
}

oc_tensor oc_state(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s,
                   enum oc_init init, double init_a)
{
    struct oc_attrs a = no_attrs();
    a.name = name;
    a.init = init;
    a.init_a = init_a;
    return oc_graph_add(g, OC_OP_STATE, NULL, 0, &a, dt, &s);
}

oc_tensor oc_const_fill(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, double v)
{
    struct oc_attrs a = no_attrs();
    a.value = v;
    return oc_graph_add(g, OC_OP_CONST, NULL, 0, &a, dt, &s);
}

oc_tensor oc_const_data(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s,
                        const double *values)
{
    struct oc_attrs a = no_attrs();
    a.data = values;
    return oc_graph_add(g, OC_OP_CONST, NULL, 0, &a, dt, &s);
}

oc_tensor oc_scalar(struct oc_graph *g, enum oc_dtype dt, double v)
{
    return oc_const_fill(g, dt, OC_SCALAR, v);
}

oc_tensor oc_scalar_like(struct oc_graph *g, oc_tensor x, double v)
{
    if (!oc_valid(x)) return OC_NONE;
    return oc_scalar(g, node(g, x)->dtype, v);
}

static oc_tensor rng(struct oc_graph *g, enum oc_op op, enum oc_dtype dt, struct oc_shape s,
                     uint64_t seed, oc_tensor counter)
{
    struct oc_attrs a = no_attrs();
    a.seed = seed;
    return oc_graph_add(g, op, &counter, 1, &a, dt, &s);
}

oc_tensor oc_rng_normal(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, uint64_t seed,
                        oc_tensor counter)
{
    return rng(g, OC_OP_RNG_NORMAL, dt, s, seed, counter);
}

oc_tensor oc_rng_uniform(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, uint64_t seed,
                         oc_tensor counter)
{
    return rng(g, OC_OP_RNG_UNIFORM, dt, s, seed, counter);
}

/* ---------------------------------------------------------------- elementwise */

oc_tensor oc_unary(struct oc_graph *g, enum oc_op op, oc_tensor x)
{
    return oc_graph_add(g, op, &x, 1, NULL, 0, NULL);
}

#define UNARY(fn, OP)                                                                              \
    oc_tensor fn(struct oc_graph *g, oc_tensor x) { return oc_unary(g, OC_OP_##OP, x); }
UNARY(oc_neg, NEG)
UNARY(oc_exp, EXP)
UNARY(oc_log, LOG)
UNARY(oc_sqrt, SQRT)
UNARY(oc_rsqrt, RSQRT)
UNARY(oc_recip, RECIP)
UNARY(oc_abs, ABS)
UNARY(oc_sign, SIGN)
UNARY(oc_relu, RELU)
UNARY(oc_sigmoid, SIGMOID)
UNARY(oc_tanh, TANH)
UNARY(oc_softplus, SOFTPLUS)
UNARY(oc_log1p, LOG1P)
UNARY(oc_stop_gradient, STOP_GRADIENT)
#undef UNARY

oc_tensor oc_cast(struct oc_graph *g, oc_tensor x, enum oc_dtype to)
{
    if (!oc_valid(x)) return OC_NONE;
    if (node(g, x)->dtype == to) return x;
    struct oc_shape s = node(g, x)->shape;
    return oc_graph_add(g, OC_OP_CAST, &x, 1, NULL, to, &s);
}

/* numpy broadcasting of two shapes; -1 if incompatible */
static int broadcast_shapes(const struct oc_shape *a, const struct oc_shape *b,
                            struct oc_shape *out)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1) return -1;
        out->dim[i] = da == 1 ? db : da;
    }
    return 0;
}

static oc_tensor broadcast_to(struct oc_graph *g, oc_tensor x, const struct oc_shape *s)
{
    if (!oc_valid(x)) return OC_NONE;
    if (oc_shape_eq(&node(g, x)->shape, s)) return x;
    return oc_graph_add(g, OC_OP_BROADCAST, &x, 1, NULL, node(g, x)->dtype, s);
}

oc_tensor oc_binary(struct oc_graph *g, enum oc_op op, oc_tensor a, oc_tensor b)
{
    if (!oc_valid(a) || !oc_valid(b) || g->err.code) return OC_NONE;
    struct oc_shape s;
    if (broadcast_shapes(&node(g, a)->shape, &node(g, b)->shape, &s)) {
        char s1[128], s2[128];
        oc_err_set(&g->err, OC_ERR_SHAPE, "node %%%d (%s): cannot broadcast %%%d %s with %%%d %s",
                   g->nnodes, oc_op_name(op), a.id, oc_shape_str(&node(g, a)->shape, s1, 128), b.id,
                   oc_shape_str(&node(g, b)->shape, s2, 128));
        return OC_NONE;
    }
    oc_tensor in[2] = {broadcast_to(g, a, &s), broadcast_to(g, b, &s)};
    return oc_graph_add(g, op, in, 2, NULL, 0, NULL);
}

#define BINARY(fn, OP)                                                                             \
    oc_tensor fn(struct oc_graph *g, oc_tensor a, oc_tensor b)                                     \
    {                                                                                              \
        return oc_binary(g, OC_OP_##OP, a, b);                                                     \
    }
BINARY(oc_add, ADD)
BINARY(oc_sub, SUB)
BINARY(oc_mul, MUL)
BINARY(oc_div, DIV)
BINARY(oc_pow, POW)
BINARY(oc_max, MAX)
BINARY(oc_min, MIN)
BINARY(oc_lt, LT)
BINARY(oc_le, LE)
BINARY(oc_eq, EQ)
BINARY(oc_ne, NE)
BINARY(oc_ge, GE)
BINARY(oc_gt, GT)
#undef BINARY

oc_tensor oc_scale(struct oc_graph *g, oc_tensor x, double s)
{
    return oc_mul(g, x, oc_scalar_like(g, x, s));
}

oc_tensor oc_add_scalar(struct oc_graph *g, oc_tensor x, double s)
{
    return oc_add(g, x, oc_scalar_like(g, x, s));
}

oc_tensor oc_select(struct oc_graph *g, oc_tensor c, oc_tensor a, oc_tensor b)
{
    if (!oc_valid(c) || !oc_valid(a) || !oc_valid(b) || g->err.code) return OC_NONE;
    struct oc_shape s1, s;
    if (broadcast_shapes(&node(g, a)->shape, &node(g, b)->shape, &s1) ||
        broadcast_shapes(&node(g, c)->shape, &s1, &s)) {
        oc_err_set(&g->err, OC_ERR_SHAPE, "node %%%d (select): operands do not broadcast",
                   g->nnodes);
        return OC_NONE;
    }
    oc_tensor in[3] = {broadcast_to(g, c, &s), broadcast_to(g, a, &s), broadcast_to(g, b, &s)};
    return oc_graph_add(g, OC_OP_SELECT, in, 3, NULL, 0, NULL);
}

/* ---------------------------------------------------------------- layout */

oc_tensor oc_reshape(struct oc_graph *g, oc_tensor x, struct oc_shape s)
{
    if (!oc_valid(x)) return OC_NONE;
    if (oc_shape_eq(&node(g, x)->shape, &s)) return x;
    return oc_graph_add(g, OC_OP_RESHAPE, &x, 1, NULL, node(g, x)->dtype, &s);
}

oc_tensor oc_permute(struct oc_graph *g, oc_tensor x, const int *perm)
{
    if (!oc_valid(x)) return OC_NONE;
    struct oc_attrs a = no_attrs();
    for (int i = 0; i < node(g, x)->shape.rank; i++) a.perm[i] = perm[i];
    return oc_graph_add(g, OC_OP_PERMUTE, &x, 1, &a, 0, NULL);
}

oc_tensor oc_broadcast(struct oc_graph *g, oc_tensor x, struct oc_shape s)
{
    if (!oc_valid(x)) return OC_NONE;
    return oc_graph_add(g, OC_OP_BROADCAST, &x, 1, NULL, node(g, x)->dtype, &s);
}

oc_tensor oc_slice(struct oc_graph *g, oc_tensor x, const int64_t *start, const int64_t *stop,
                   const int64_t *step)
{
    if (!oc_valid(x)) return OC_NONE;
    struct oc_attrs a = no_attrs();
    for (int i = 0; i < node(g, x)->shape.rank; i++) {
        a.start[i] = start[i];
        a.stop[i] = stop[i];
        a.step[i] = step ? step[i] : 1;
    }
    return oc_graph_add(g, OC_OP_SLICE, &x, 1, &a, 0, NULL);
}

oc_tensor oc_pad(struct oc_graph *g, oc_tensor x, const int64_t *lo, const int64_t *hi,
                 double value)
{
    if (!oc_valid(x)) return OC_NONE;
    struct oc_attrs a = no_attrs();
    for (int i = 0; i < node(g, x)->shape.rank; i++) {
        a.lo[i] = lo[i];
        a.hi[i] = hi[i];
    }
    a.pad_value = value;
    return oc_graph_add(g, OC_OP_PAD, &x, 1, &a, 0, NULL);
}

oc_tensor oc_concat(struct oc_graph *g, const oc_tensor *xs, int n, int axis)
{
    struct oc_attrs a = no_attrs();
    a.axis = axis;
    return oc_graph_add(g, OC_OP_CONCAT, xs, n, &a, 0, NULL);
}

/* ---------------------------------------------------------------- reductions */

uint32_t oc_all_axes(struct oc_graph *g, oc_tensor x)
{
    if (!oc_valid(x)) return 0;
    return (1u << node(g, x)->shape.rank) - 1;
}

static oc_tensor reduce(struct oc_graph *g, enum oc_op op, oc_tensor x, uint32_t axes, int keep)
{
    struct oc_attrs a = no_attrs();
    a.axes = axes;
    a.keepdims = keep;
    return oc_graph_add(g, op, &x, 1, &a, 0, NULL);
}

oc_tensor oc_sum(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims)
{
    return reduce(g, OC_OP_SUM, x, axes, keepdims);
}

oc_tensor oc_reduce_max(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims)
{
    return reduce(g, OC_OP_REDUCE_MAX, x, axes, keepdims);
}

oc_tensor oc_argmax(struct oc_graph *g, oc_tensor x, int axis, int keepdims)
{
    struct oc_attrs a = no_attrs();
    a.axis = axis;
    a.keepdims = keepdims;
    return oc_graph_add(g, OC_OP_ARGMAX, &x, 1, &a, 0, NULL);
}

/* ---------------------------------------------------------------- contractions */

oc_tensor oc_matmul(struct oc_graph *g, oc_tensor x, oc_tensor y, int trans_a, int trans_b)
{
    struct oc_attrs a = no_attrs();
    a.trans_a = trans_a;
    a.trans_b = trans_b;
    oc_tensor in[2] = {x, y};
    return oc_graph_add(g, OC_OP_MATMUL, in, 2, &a, 0, NULL);
}

static struct oc_attrs conv_attrs(int stride, int pad)
{
    struct oc_attrs a = no_attrs();
    a.stride[0] = a.stride[1] = stride;
    a.padding[0] = a.padding[1] = pad;
    return a;
}

oc_tensor oc_conv2d(struct oc_graph *g, oc_tensor x, oc_tensor w, int stride, int pad)
{
    struct oc_attrs a = conv_attrs(stride, pad);
    oc_tensor in[2] = {x, w};
    return oc_graph_add(g, OC_OP_CONV2D, in, 2, &a, 0, NULL);
}

oc_tensor oc_conv2d_grad_input(struct oc_graph *g, oc_tensor dy, oc_tensor w,
                               struct oc_shape x_shape, int stride, int pad)
{
    if (!oc_valid(dy)) return OC_NONE;
    struct oc_attrs a = conv_attrs(stride, pad);
    oc_tensor in[2] = {dy, w};
    return oc_graph_add(g, OC_OP_CONV2D_GRAD_INPUT, in, 2, &a, node(g, dy)->dtype, &x_shape);
}

oc_tensor oc_conv2d_grad_weight(struct oc_graph *g, oc_tensor x, oc_tensor dy,
                                struct oc_shape w_shape, int stride, int pad)
{
    if (!oc_valid(x)) return OC_NONE;
    struct oc_attrs a = conv_attrs(stride, pad);
    oc_tensor in[2] = {x, dy};
    return oc_graph_add(g, OC_OP_CONV2D_GRAD_WEIGHT, in, 2, &a, node(g, x)->dtype, &w_shape);
}

/* ---------------------------------------------------------------- indexing, effects */

oc_tensor oc_one_hot(struct oc_graph *g, oc_tensor idx, int64_t depth, enum oc_dtype dt)
{
    struct oc_attrs a = no_attrs();
    a.depth = depth;
    return oc_graph_add(g, OC_OP_ONE_HOT, &idx, 1, &a, dt, NULL);
}

oc_tensor oc_gather(struct oc_graph *g, oc_tensor x, oc_tensor idx, int axis)
{
    struct oc_attrs a = no_attrs();
    a.axis = axis;
    oc_tensor in[2] = {x, idx};
    return oc_graph_add(g, OC_OP_GATHER, in, 2, &a, 0, NULL);
}

oc_tensor oc_assign(struct oc_graph *g, oc_tensor target, oc_tensor value)
{
    oc_tensor in[2] = {target, value};
    return oc_graph_add(g, OC_OP_ASSIGN, in, 2, NULL, 0, NULL);
}

void oc_output(struct oc_graph *g, const char *name, oc_tensor t)
{
    if (!oc_valid(t)) return; /* the builder error is already recorded */
    oc_graph_set_output(g, name, t);
}
