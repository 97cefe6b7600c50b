/* test-conformance.c - the op conformance table for the CPU (LLVM) backend:
 * every primitive and composite x shapes x {fused, unfused}, compiled with
 * oc_compile and compared with the f64 reference interpreter at f32
 * tolerance (first mismatches printed). A coverage test checks that the
 * table exercises every op of ops.def. Graphs are tiny and share one
 * runtime context, so identical kernels compile once. */
#include "conform.h"

enum cat { C_ELEM, C_LAYOUT, C_REDUCE, C_CONTRACT, C_INDEX, C_SOURCE, C_COMPOSITE };

typedef void (*build_fn)(struct oc_graph *g, struct oc_shape s, int variant);

struct ccase {
    const char *name;
    enum cat cat;
    build_fn build;
    int variant;
    double lo, hi;
    int ihi;
    int nshape; /* 0: the builder picks its own shapes */
};

static const struct oc_shape shapes[2] = {{1, {37}}, {3, {3, 5, 6}}};

static oc_tensor in_f(struct oc_graph *g, const char *n, struct oc_shape s)
{
    return oc_input(g, n, OC_F32, s);
}

/* ---------------------------------------------------------------- elementwise */

static const enum oc_op unary_ops[] = {OC_OP_NEG,  OC_OP_EXP,     OC_OP_LOG,      OC_OP_SQRT,
                                       OC_OP_RSQRT, OC_OP_RECIP,  OC_OP_ABS,      OC_OP_SIGN,
                                       OC_OP_RELU, OC_OP_SIGMOID, OC_OP_TANH,     OC_OP_SOFTPLUS,
                                       OC_OP_LOG1P, OC_OP_STOP_GRADIENT};
static const enum oc_op binary_ops[] = {OC_OP_ADD, OC_OP_SUB, OC_OP_MUL, OC_OP_DIV,
                                        OC_OP_POW, OC_OP_MAX, OC_OP_MIN, OC_OP_LT,
                                        OC_OP_LE,  OC_OP_EQ,  OC_OP_NE,  OC_OP_GE, OC_OP_GT};

static void b_unary(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_output(g, "y", oc_unary(g, (enum oc_op)op, in_f(g, "a", s)));
}

static void b_unary_f64(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_output(g, "y", oc_unary(g, (enum oc_op)op, oc_input(g, "a", OC_F64, s)));
}

static void b_unary_i32(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_tensor a = oc_sub(g, oc_input(g, "a", OC_I32, s), oc_scalar(g, OC_I32, 5));
    oc_output(g, "y", oc_unary(g, (enum oc_op)op, a));
}

static void b_binary(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_output(g, "y", oc_binary(g, (enum oc_op)op, in_f(g, "a", s), in_f(g, "b", s)));
}

/* integer-valued floats, so that eq/ne/le/ge see ties */
static void b_binary_ties(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_tensor a = oc_cast(g, oc_input(g, "a", OC_I32, s), OC_F32);
    oc_tensor b = oc_cast(g, oc_input(g, "b", OC_I32, s), OC_F32);
    oc_output(g, "y", oc_binary(g, (enum oc_op)op, a, b));
}

static void b_binary_i32(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_tensor a = oc_input(g, "a", OC_I32, s), b = oc_input(g, "b", OC_I32, s);
    oc_output(g, "y", oc_binary(g, (enum oc_op)op, oc_sub(g, a, oc_scalar(g, OC_I32, 2)), b));
}

static void b_broadcast_binary(struct oc_graph *g, struct oc_shape s, int op)
{
    oc_tensor a = in_f(g, "a", OC_SHAPE(3, 1, 6)), b = in_f(g, "b", OC_SHAPE(5, 1));
    oc_output(g, "y", oc_binary(g, (enum oc_op)op, a, b));
}

static void b_select(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor a = in_f(g, "a", s), b = in_f(g, "b", s);
    oc_tensor c = v == 0 ? oc_gt(g, a, b) : v == 1 ? oc_input(g, "c", OC_I32, s) : oc_input(g, "c", OC_F32, s);
    oc_output(g, "y", oc_select(g, c, a, oc_neg(g, b)));
}

static void b_cast(struct oc_graph *g, struct oc_shape s, int v)
{
    static const enum oc_dtype from[] = {OC_F32, OC_F32, OC_I32, OC_F32, OC_F64, OC_U8, OC_I32, OC_U8};
    static const enum oc_dtype to[] = {OC_I32, OC_U8, OC_F32, OC_F64, OC_F32, OC_F32, OC_U8, OC_I32};
    oc_tensor a = oc_input(g, "a", from[v], s);
    if (from[v] == OC_I32) a = oc_mul(g, oc_sub(g, a, oc_scalar(g, OC_I32, 3)), oc_scalar(g, OC_I32, 100));
    oc_output(g, "y", oc_cast(g, a, to[v]));
}

/* a longer chain with shared subexpressions */
static void b_chain(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor a = in_f(g, "a", s), b = in_f(g, "b", s);
    oc_tensor t = oc_tanh(g, oc_add(g, oc_mul(g, a, b), a));
    oc_tensor u = oc_sigmoid(g, oc_sub(g, t, b));
    oc_output(g, "y", oc_add(g, oc_mul(g, t, u), oc_exp(g, oc_neg(g, oc_abs(g, u)))));
    oc_output(g, "t", t);
}

/* ---------------------------------------------------------------- layout */

static void b_layout(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor a = in_f(g, "a", OC_SHAPE(3, 5, 6));
    oc_tensor y;
    switch (v) {
    case 0: y = oc_exp(g, oc_reshape(g, a, OC_SHAPE(15, 6))); break;
    case 1: y = oc_permute(g, a, (const int[]){2, 0, 1}); break;
    case 2: y = oc_add(g, oc_permute(g, a, (const int[]){1, 2, 0}), in_f(g, "b", OC_SHAPE(5, 6, 3))); break;
    case 3: /* a non-affine map: reshape of a permute */
        y = oc_neg(g, oc_reshape(g, oc_permute(g, a, (const int[]){2, 0, 1}), OC_SHAPE(9, 10)));
        break;
    case 4: y = oc_broadcast(g, in_f(g, "b", OC_SHAPE(5, 1)), OC_SHAPE(3, 5, 6)); break;
    case 5:
        y = oc_slice(g, a, (const int64_t[]){1, 0, 1}, (const int64_t[]){3, 5, 6},
                     (const int64_t[]){1, 2, 2});
        break;
    case 6: y = oc_pad(g, a, (const int64_t[]){1, 0, 2}, (const int64_t[]){0, 2, 1}, -1.5); break;
    case 7: {
        oc_tensor xs[3] = {a, in_f(g, "b", OC_SHAPE(3, 2, 6)), oc_exp(g, in_f(g, "c", OC_SHAPE(3, 1, 6)))};
        y = oc_concat(g, xs, 3, 1);
        break;
    }
    case 8: /* slice of a pad of a permute, then a reduction */
        y = oc_sum(g, oc_slice(g, oc_pad(g, oc_permute(g, a, (const int[]){0, 2, 1}),
                                         (const int64_t[]){0, 1, 1}, (const int64_t[]){0, 1, 1}, 0.5),
                               (const int64_t[]){0, 0, 0}, (const int64_t[]){3, 8, 7}, NULL),
                   2u, 0);
        break;
    case 9: /* reshape splitting and merging dims around a broadcast */
        y = oc_mul(g, oc_reshape(g, a, OC_SHAPE(3, 30)),
                   oc_reshape(g, oc_broadcast(g, in_f(g, "b", OC_SHAPE(5, 1)), OC_SHAPE(3, 5, 6)),
                              OC_SHAPE(3, 30)));
        break;
    default: /* concat along the last axis, of i32 */
    {
        oc_tensor xs[2] = {oc_input(g, "i", OC_I32, OC_SHAPE(4, 3)), oc_input(g, "j", OC_I32, OC_SHAPE(4, 2))};
        y = oc_concat(g, xs, 2, 1);
        break;
    }
    }
    oc_output(g, "y", y);
}

/* ---------------------------------------------------------------- reductions */

static void b_reduce(struct oc_graph *g, struct oc_shape s, int v)
{
    static const uint32_t axes[] = {1, 2, 4, 5, 6, 7};
    oc_tensor a = in_f(g, "a", OC_SHAPE(4, 5, 6));
    int which = v / 12, ax = v % 6, keep = (v / 6) % 2;
    oc_tensor y;
    if (which == 0) y = oc_sum(g, oc_mul(g, a, a), axes[ax], keep);
    else if (which == 1) y = oc_reduce_max(g, a, axes[ax], keep);
    else y = oc_argmax(g, a, ax % 3, keep);
    oc_output(g, "y", y);
}

static void b_reduce_int(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor a = oc_sub(g, oc_input(g, "a", OC_I32, OC_SHAPE(5, 7)), oc_scalar(g, OC_I32, 2));
    oc_tensor y = v == 0 ? oc_sum(g, a, 2u, 0) : v == 1 ? oc_reduce_max(g, a, 1u, 1) : oc_argmax(g, a, 1, 0);
    oc_output(g, "y", y);
}

/* argmax ties: the first maximum wins */
static void b_argmax_ties(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor a = oc_cast(g, oc_input(g, "a", OC_I32, OC_SHAPE(9, 8)), OC_F32);
    oc_output(g, "y", oc_argmax(g, a, v, 0));
}

/* ---------------------------------------------------------------- contractions */

static void b_matmul(struct oc_graph *g, struct oc_shape s, int v)
{
    int ta = v & 1, tb = (v >> 1) & 1, batched = v >> 2;
    int64_t M = 4, K = 5, N = 3;
    struct oc_shape as = ta ? OC_SHAPE(K, M) : OC_SHAPE(M, K);
    struct oc_shape bs = tb ? OC_SHAPE(N, K) : OC_SHAPE(K, N);
    if (batched) {
        as = ta ? OC_SHAPE(2, K, M) : OC_SHAPE(2, M, K);
        bs = tb ? OC_SHAPE(2, N, K) : OC_SHAPE(2, K, N);
    }
    /* elementwise neighbours on both sides */
    oc_tensor a = oc_relu(g, in_f(g, "a", as));
    oc_tensor y = oc_matmul(g, a, in_f(g, "b", bs), ta, tb);
    oc_output(g, "y", oc_tanh(g, oc_add_scalar(g, y, 0.5)));
}

static void b_matmul_f64(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_output(g, "y", oc_matmul(g, oc_input(g, "a", OC_F64, OC_SHAPE(3, 4)),
                                oc_input(g, "b", OC_F64, OC_SHAPE(4, 2)), 0, 0));
}

static void b_conv(struct oc_graph *g, struct oc_shape s, int v)
{
    static const int cfg[][4] = {/* k, stride, pad, H */ {3, 1, 1, 7}, {3, 2, 0, 8}, {1, 1, 0, 5}, {2, 2, 1, 6}};
    int which = v / 4;
    const int *c = cfg[v % 4];
    int64_t nb = v % 4 == 3 ? 5 : 2; /* 5 images: uneven GEMM groups below */
    struct oc_shape xs = OC_SHAPE(nb, 3, c[3], c[3]), ws = OC_SHAPE(4, 3, c[0], c[0]);
    int64_t oh = (c[3] + 2 * c[2] - c[0]) / c[1] + 1;
    struct oc_shape ys = OC_SHAPE(nb, 4, oh, oh);
    oc_tensor y;
    if (which == 0) y = oc_conv2d(g, in_f(g, "x", xs), in_f(g, "w", ws), c[1], c[2]);
    else if (which == 1) y = oc_conv2d_grad_input(g, in_f(g, "dy", ys), in_f(g, "w", ws), xs, c[1], c[2]);
    else y = oc_conv2d_grad_weight(g, in_f(g, "x", xs), in_f(g, "dy", ys), ws, c[1], c[2]);
    oc_output(g, "y", y);
}

/* ---------------------------------------------------------------- indexing */

static void b_index(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor y;
    switch (v) {
    case 0: y = oc_one_hot(g, oc_input(g, "i", OC_I32, OC_SHAPE(6)), 5, OC_F32); break;
    case 1: /* indices outside [0, depth) give zero rows */
        y = oc_one_hot(g, oc_sub(g, oc_input(g, "i", OC_I32, OC_SHAPE(2, 4)), oc_scalar(g, OC_I32, 1)), 3, OC_F32);
        break;
    case 2: y = oc_gather(g, in_f(g, "x", OC_SHAPE(6, 5)), oc_input(g, "i", OC_I32, OC_SHAPE(6)), 1); break;
    case 3: y = oc_gather(g, in_f(g, "x", OC_SHAPE(4, 3)), oc_input(g, "i", OC_I32, OC_SHAPE(3)), 0); break;
    default: /* gather through a computed index */
        y = oc_exp(g, oc_gather(g, oc_log_softmax(g, in_f(g, "x", OC_SHAPE(5, 4)), 1),
                                oc_argmax(g, in_f(g, "z", OC_SHAPE(5, 4)), 1, 0), 1));
        break;
    }
    oc_output(g, "y", y);
}

/* ---------------------------------------------------------------- sources */

static void b_source(struct oc_graph *g, struct oc_shape s, int v)
{
    switch (v) {
    case 0:
        oc_output(g, "y", oc_add(g, in_f(g, "a", OC_SHAPE(2, 3)),
                                 oc_const_data(g, OC_F32, OC_SHAPE(2, 3), (const double[]){1, -2, 3.5, 0.25, 7, -1e3})));
        break;
    case 1: oc_output(g, "y", oc_const_fill(g, OC_F32, OC_SHAPE(4, 2), 2.5)); break;
    case 2: oc_output(g, "y", in_f(g, "a", OC_SHAPE(3))); break;
    case 3: {
        oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(3, 4), OC_INIT_KAIMING_NORMAL, 0, 0);
        oc_output(g, "y", oc_mul(g, w, in_f(g, "a", OC_SHAPE(3, 4))));
        oc_output(g, "w", w);
        break;
    }
    case 4: {
        oc_tensor c = oc_input(g, "step", OC_I32, OC_SCALAR);
        oc_output(g, "n", oc_rng_normal(g, OC_F32, OC_SHAPE(3, 41), 77, c));
        oc_output(g, "u", oc_add(g, oc_rng_uniform(g, OC_F32, OC_SHAPE(41), 9, c), in_f(g, "a", OC_SHAPE(41))));
        break;
    }
    case 5: { /* state updated every step, read back as an output */
        oc_tensor st = oc_state(g, "acc", OC_F32, OC_SHAPE(4), OC_INIT_CONST, 0.5);
        oc_tensor a = in_f(g, "a", OC_SHAPE(4));
        oc_tensor nv = oc_add(g, oc_scale(g, st, 0.5), a);
        oc_assign(g, st, nv);
        oc_output(g, "y", oc_assign(g, st, oc_mul(g, nv, nv)));
        oc_output(g, "old", st);
        break;
    }
    default: { /* i32 and u8 through a graph */
        oc_tensor i = oc_input(g, "i", OC_I32, OC_SHAPE(5));
        oc_tensor u = oc_input(g, "u", OC_U8, OC_SHAPE(5));
        oc_output(g, "y", oc_add(g, oc_mul(g, i, oc_cast(g, u, OC_I32)), oc_const_fill(g, OC_I32, OC_SHAPE(5), 7)));
        oc_output(g, "u2", oc_select(g, i, u, oc_cast(g, oc_const_fill(g, OC_F32, OC_SHAPE(5), 300), OC_U8)));
        break;
    }
    }
}

/* ---------------------------------------------------------------- composites */

static void b_composite(struct oc_graph *g, struct oc_shape s, int v)
{
    oc_tensor y;
    switch (v) {
    case 0: y = oc_softmax(g, in_f(g, "x", OC_SHAPE(6, 10)), 1); break;
    case 1: y = oc_softmax(g, in_f(g, "x", OC_SHAPE(6, 10)), 0); break;
    case 2: y = oc_log_softmax(g, in_f(g, "x", OC_SHAPE(4, 3, 5)), 2); break;
    case 3: y = oc_logsumexp(g, in_f(g, "x", OC_SHAPE(6, 10)), 1, 0); break;
    case 4: y = oc_cross_entropy(g, in_f(g, "x", OC_SHAPE(8, 10)), oc_input(g, "l", OC_I32, OC_SHAPE(8))); break;
    case 5:
        y = oc_sigmoid_bce(g, in_f(g, "x", OC_SHAPE(8, 10)),
                           oc_cast(g, oc_input(g, "t", OC_I32, OC_SHAPE(8, 10)), OC_F32), 0.3);
        break;
    case 6: y = oc_batchnorm_layer(g, "bn", in_f(g, "x", OC_SHAPE(8, 4)), 1); break;
    case 7: y = oc_batchnorm_layer(g, "bn", in_f(g, "x", OC_SHAPE(4, 3, 5, 5)), 1); break;
    case 8: y = oc_batchnorm_layer(g, "bn", in_f(g, "x", OC_SHAPE(4, 3, 5, 5)), 0); break;
    case 9: y = oc_variance(g, in_f(g, "x", OC_SHAPE(4, 7)), 1u, 0); break;
    case 10: y = oc_mean(g, in_f(g, "x", OC_SHAPE(4, 7, 3)), 5u, 1); break;
    case 11: y = oc_global_avg_pool(g, in_f(g, "x", OC_SHAPE(2, 3, 4, 4))); break;
    case 12: {
        oc_tensor sq = oc_exp(g, in_f(g, "a", OC_SHAPE(5, 6)));
        y = oc_kl_diag_gaussian(g, in_f(g, "mq", OC_SHAPE(5, 6)), sq, oc_scalar(g, OC_F32, 0),
                                oc_scalar(g, OC_F32, 1));
        break;
    }
    case 13: {
        oc_tensor conf = oc_sigmoid(g, in_f(g, "c", OC_SHAPE(16)));
        oc_tensor ok = oc_cast(g, oc_input(g, "ok", OC_I32, OC_SHAPE(16)), OC_F32);
        y = oc_mmce_weighted(g, conf, ok, 0.4);
        break;
    }
    case 14: {
        oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(3, 5), OC_INIT_NORMAL, 0, 0.5);
        oc_tensor b = oc_param(g, "b", OC_F32, OC_SHAPE(3), OC_INIT_UNIFORM, -1, 1);
        y = oc_relu(g, oc_linear(g, in_f(g, "x", OC_SHAPE(4, 5)), w, b));
        break;
    }
    default: {
        oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(4, 3, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
        oc_tensor b = oc_param(g, "b", OC_F32, OC_SHAPE(4), OC_INIT_UNIFORM, -1, 1);
        oc_tensor h = oc_conv2d_bias(g, in_f(g, "x", OC_SHAPE(2, 3, 6, 6)), w, b, 1, 1);
        y = oc_relu(g, oc_batchnorm_layer(g, "bn", h, 1));
        break;
    }
    }
    oc_output(g, "y", y);
}

/* ---------------------------------------------------------------- the table */

#define NUNARY (int)(sizeof unary_ops / sizeof *unary_ops)
#define NBINARY (int)(sizeof binary_ops / sizeof *binary_ops)

static struct ccase table[512];
static int ntable;

static void add(const char *name, enum cat c, build_fn b, int v, double lo, double hi, int ihi, int nshape)
{
    cr_assert_lt(ntable, 512);
    table[ntable++] = (struct ccase){name, c, b, v, lo, hi, ihi, nshape};
}

static void make_table(void)
{
    ntable = 0;
    for (int i = 0; i < NUNARY; i++) {
        enum oc_op op = unary_ops[i];
        double lo = -3, hi = 3;
        if (op == OC_OP_LOG || op == OC_OP_SQRT || op == OC_OP_RSQRT) lo = 0.05;
        if (op == OC_OP_RECIP) lo = 0.2;
        if (op == OC_OP_LOG1P) lo = -0.9;
        add(oc_op_name(op), C_ELEM, b_unary, op, lo, hi, 4, 2);
        add(oc_op_name(op), C_ELEM, b_unary_f64, op, lo, hi, 4, 1);
    }
    add("neg i32", C_ELEM, b_unary_i32, OC_OP_NEG, 0, 0, 10, 2);
    add("abs i32", C_ELEM, b_unary_i32, OC_OP_ABS, 0, 0, 10, 2);
    add("sign i32", C_ELEM, b_unary_i32, OC_OP_SIGN, 0, 0, 10, 2);
    for (int i = 0; i < NBINARY; i++) {
        enum oc_op op = binary_ops[i];
        double lo = -3, hi = 3;
        if (op == OC_OP_POW) lo = 0.1;
        if (op == OC_OP_DIV) lo = 0.3;
        add(oc_op_name(op), C_ELEM, b_binary, op, lo, hi, 4, 2);
        if (op != OC_OP_DIV && op != OC_OP_POW) {
            add(oc_op_name(op), C_ELEM, b_binary_ties, op, 0, 0, 3, 1);
            add(oc_op_name(op), C_ELEM, b_binary_i32, op, 0, 0, 5, 2);
        }
    }
    add("broadcast add", C_ELEM, b_broadcast_binary, OC_OP_ADD, -2, 2, 4, 0);
    add("broadcast div", C_ELEM, b_broadcast_binary, OC_OP_DIV, 0.5, 2, 4, 0);
    for (int v = 0; v < 3; v++) add("select", C_ELEM, b_select, v, -2, 2, 2, 2);
    for (int v = 0; v < 8; v++) add("cast", C_ELEM, b_cast, v, -300.7, 300.7, 7, 1);
    add("chain", C_ELEM, b_chain, 0, -2, 2, 4, 2);
    for (int v = 0; v < 11; v++) add("layout", C_LAYOUT, b_layout, v, -2, 2, 9, 0);
    for (int v = 0; v < 36; v++) add("reduce", C_REDUCE, b_reduce, v, -2, 2, 4, 0);
    for (int v = 0; v < 3; v++) add("reduce i32", C_REDUCE, b_reduce_int, v, 0, 0, 6, 0);
    for (int v = 0; v < 2; v++) add("argmax ties", C_REDUCE, b_argmax_ties, v, 0, 0, 3, 0);
    for (int v = 0; v < 8; v++) add("matmul", C_CONTRACT, b_matmul, v, -1, 1, 4, 0);
    add("matmul f64", C_CONTRACT, b_matmul_f64, 0, -1, 1, 4, 0);
    for (int v = 0; v < 12; v++) add("conv2d", C_CONTRACT, b_conv, v, -1, 1, 4, 0);
    for (int v = 0; v < 5; v++) add("index", C_INDEX, b_index, v, -2, 2, 5, 0);
    for (int v = 0; v < 7; v++) add("source", C_SOURCE, b_source, v, -2, 2, 4, 0);
    for (int v = 0; v < 16; v++) add("composite", C_COMPOSITE, b_composite, v, -2, 2, 2, 0);
}

/* ---------------------------------------------------------------- running */

static struct oc_rt *rt;

static void setup(void)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
    make_table();
}

static void teardown(void) { oc_rt_free(rt); }

TestSuite(conformance, .init = setup, .fini = teardown);

static void run_category(enum cat c)
{
    int bad = 0, total = 0;
    for (int i = 0; i < ntable; i++) {
        const struct ccase *cc = &table[i];
        if (cc->cat != c) continue;
        int ns = cc->nshape ? cc->nshape : 1;
        for (int si = 0; si < ns; si++) {
            struct oc_graph *g = oc_graph_new(cc->name);
            cc->build(g, shapes[si], cc->variant);
            char tag[128];
            snprintf(tag, sizeof tag, "%s#%d shape %d", cc->name, cc->variant, si);
            struct conform_opts co = conform_defaults();
            co.lo = cc->lo, co.hi = cc->hi, co.ihi = cc->ihi;
            co.runs = 2;
            for (int fusion = 1; fusion >= 0; fusion--) {
                total++;
                if (!conform_run(rt, g, tag, fusion, &co)) {
                    bad++;
                    cr_expect_fail("%s fusion=%d differs from the interpreter", tag, fusion);
                }
            }
            oc_graph_free(g);
        }
    }
    cr_expect_eq(bad, 0, "%d of %d cases differ", bad, total);
    cr_expect_gt(total, 0);
}

Test(conformance, elementwise) { run_category(C_ELEM); }
Test(conformance, layout) { run_category(C_LAYOUT); }
Test(conformance, reductions) { run_category(C_REDUCE); }
Test(conformance, contractions) { run_category(C_CONTRACT); }
/* Convolutions run several images per GEMM; cap the group at 2 so that
 * 5 images make groups of 2, 2 and 1. */
Test(conformance, contractions_in_image_groups)
{
    setenv("OC_CONV_GROUP", "2", 1);
    run_category(C_CONTRACT);
}
Test(conformance, indexing) { run_category(C_INDEX); }
Test(conformance, sources_and_state) { run_category(C_SOURCE); }
Test(conformance, composites) { run_category(C_COMPOSITE); }

/* Every op of ops.def appears in some graph of the table. */
Test(conformance, covers_every_op)
{
    int seen[OC_OP_COUNT] = {0};
    for (int i = 0; i < ntable; i++) {
        struct oc_graph *g = oc_graph_new("cov");
        table[i].build(g, shapes[0], table[i].variant);
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", table[i].name, g->err.msg);
        for (int n = 0; n < g->nnodes; n++) seen[g->nodes[n]->op] = 1;
        oc_graph_free(g);
    }
    for (int op = 0; op < OC_OP_COUNT; op++)
        cr_expect(seen[op], "op %s is not covered by the conformance table", oc_op_name((enum oc_op)op));
}
