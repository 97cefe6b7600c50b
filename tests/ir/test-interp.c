/* test-interp.c - the reference interpreter against hand-computed values.
 *
 * The interpreter is the oracle of every later test, so each primitive is
 * checked here against literal arrays worked out by hand (transcendental
 * values and the multi-channel convolution come from numpy / PyTorch; the
 * one-liners are quoted beside them). Also: broadcasting through the DSL,
 * size-1 dims, rank-0 tensors, f32 vs f64 mode, state persistence and
 * assign, binding and run-time errors, and op coverage from ops.def. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../helpers/helpers.h"

/* ---------------------------------------------------------------- helpers */

static void expect_vals(const char *what, const struct oc_buf *got, enum oc_dtype dt,
                        struct oc_shape s, const double *want, double rtol)
{
    cr_assert_not_null(got, "%s: no value", what);
    cr_expect_eq(got->dtype, dt, "%s: dtype %s, expected %s", what, oc_dtype_name(got->dtype),
                 oc_dtype_name(dt));
    struct oc_buf w = oc_test_buf(dt == OC_F32 ? OC_F64 : dt, s, want);
    /* want values given as doubles: for f32 results compare with the float rounding */
    if (dt == OC_F32)
        for (int64_t i = 0; i < oc_shape_numel(&s); i++)
            ((double *)w.data)[i] = (double)(float)want[i];
    cr_expect(oc_test_allclose(what, got, &w, rtol, 0), "%s differs", what);
    oc_buf_free(&w);
}

/* A graph run in one interpreter: bind, run, then read outputs. */
struct sess {
    struct oc_graph *g;
    struct oc_interp *it;
    struct oc_buf owned[8];
    int nowned;
};

static void sess_begin(struct sess *s, struct oc_graph *g, int f64)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(oc_graph_status(g), OC_OK, "graph: %s", g->err.msg);
    s->g = g;
    s->it = oc_interp_new(g, f64);
    cr_assert_not_null(s->it);
}

static void sess_bind(struct sess *s, const char *name, enum oc_dtype dt, struct oc_shape sh,
                      const double *v)
{
    struct oc_err err = {0};
    cr_assert_lt(s->nowned, 8);
    s->owned[s->nowned] = oc_test_buf(dt, sh, v);
    cr_assert_eq(oc_interp_set(s->it, name, &s->owned[s->nowned], &err), OC_OK, "%s", err.msg);
    s->nowned++;
}

static void sess_run(struct sess *s)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_run(s->it, 1234, &err), OC_OK, "run: %s", err.msg);
}

static const struct oc_buf *out(struct sess *s, const char *name)
{
    const struct oc_buf *b = oc_interp_output(s->it, name);
    cr_assert_not_null(b, "no output %s", name);
    return b;
}

static void sess_end(struct sess *s)
{
    for (int i = 0; i < s->nowned; i++) oc_buf_free(&s->owned[i]);
    oc_interp_free(s->it);
    oc_graph_free(s->g);
}

#define V(...) ((const double[]){__VA_ARGS__})

static int count_op(const struct oc_graph *g, enum oc_op op)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) k += g->nodes[i]->op == op;
    return k;
}

/* ---------------------------------------------------------------- coverage */

Test(interp, supports_every_op)
{
    for (int op = 0; op < OC_OP_COUNT; op++)
        cr_expect(oc_interp_supports((enum oc_op)op), "interpreter lacks op %s",
                  oc_op_name((enum oc_op)op));
    cr_expect(!oc_interp_supports(OC_OP_COUNT));
}

/* ---------------------------------------------------------------- elementwise */

Test(interp, unary_float)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(5));       /* -2 -0.5 0 1 3 */
    oc_tensor p = oc_input(g, "p", OC_F64, OC_SHAPE(5));       /* 0.25 0.5 1 2 4 */
    oc_tensor q = oc_input(g, "q", OC_F64, OC_SHAPE(5));       /* -0.5 0 1e-10 1 3 */
    oc_tensor big = oc_input(g, "big", OC_F64, OC_SHAPE(7));   /* -800 -2 -0.5 0 1 3 800 */
    oc_output(g, "neg", oc_neg(g, x));
    oc_output(g, "abs", oc_abs(g, x));
    oc_output(g, "sign", oc_sign(g, x));
    oc_output(g, "relu", oc_relu(g, x));
    oc_output(g, "recip", oc_recip(g, x));
    oc_output(g, "exp", oc_exp(g, x));
    oc_output(g, "tanh", oc_tanh(g, x));
    oc_output(g, "sg", oc_stop_gradient(g, x));
    oc_output(g, "log", oc_log(g, p));
    oc_output(g, "sqrt", oc_sqrt(g, p));
    oc_output(g, "rsqrt", oc_rsqrt(g, p));
    oc_output(g, "log1p", oc_log1p(g, q));
    oc_output(g, "sigmoid", oc_sigmoid(g, big));
    oc_output(g, "softplus", oc_softplus(g, big));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "x", OC_F64, OC_SHAPE(5), V(-2, -0.5, 0, 1, 3));
    sess_bind(&s, "p", OC_F64, OC_SHAPE(5), V(0.25, 0.5, 1, 2, 4));
    sess_bind(&s, "q", OC_F64, OC_SHAPE(5), V(-0.5, 0, 1e-10, 1, 3));
    sess_bind(&s, "big", OC_F64, OC_SHAPE(7), V(-800, -2, -0.5, 0, 1, 3, 800));
    sess_run(&s);
    struct oc_shape s5 = OC_SHAPE(5), s7 = OC_SHAPE(7);
    const double rt = 1e-14;
    expect_vals("neg", out(&s, "neg"), OC_F64, s5, V(2, 0.5, 0, -1, -3), 0);
    expect_vals("abs", out(&s, "abs"), OC_F64, s5, V(2, 0.5, 0, 1, 3), 0);
    expect_vals("sign", out(&s, "sign"), OC_F64, s5, V(-1, -1, 0, 1, 1), 0);
    expect_vals("relu", out(&s, "relu"), OC_F64, s5, V(0, 0, 0, 1, 3), 0);
    expect_vals("recip", out(&s, "recip"), OC_F64, s5, V(-0.5, -2, INFINITY, 1, 1.0 / 3), 0);
    expect_vals("sg", out(&s, "sg"), OC_F64, s5, V(-2, -0.5, 0, 1, 3), 0);
    /* numpy.exp / numpy.tanh of the same values */
    expect_vals("exp", out(&s, "exp"), OC_F64, s5,
                V(0.13533528323661267, 0.6065306597126334, 1.0, 2.718281828459045,
                  20.085536923187668), rt);
    expect_vals("tanh", out(&s, "tanh"), OC_F64, s5,
                V(-0.9640275800758169, -0.46211715726000974, 0.0, 0.7615941559557649,
                  0.9950547536867305), rt);
    expect_vals("log", out(&s, "log"), OC_F64, s5,
                V(-1.3862943611198906, -0.6931471805599453, 0.0, 0.6931471805599453,
                  1.3862943611198906), rt);
    expect_vals("sqrt", out(&s, "sqrt"), OC_F64, s5,
                V(0.5, 0.7071067811865476, 1.0, 1.4142135623730951, 2.0), rt);
    expect_vals("rsqrt", out(&s, "rsqrt"), OC_F64, s5,
                V(2.0, 1.414213562373095, 1.0, 0.7071067811865475, 0.5), rt);
    /* log1p keeps tiny arguments exact where log(1+x) would not */
    expect_vals("log1p", out(&s, "log1p"), OC_F64, s5,
                V(-0.6931471805599453, 0.0, 9.999999999500001e-11, 0.6931471805599453,
                  1.3862943611198906), rt);
    /* stable forms: no NaN or overflow at +-800 (torch.sigmoid / softplus) */
    expect_vals("sigmoid", out(&s, "sigmoid"), OC_F64, s7,
                V(0.0, 0.11920292202211755, 0.37754066879814546, 0.5, 0.7310585786300049,
                  0.9525741268224334, 1.0), rt);
    expect_vals("softplus", out(&s, "softplus"), OC_F64, s7,
                V(0.0, 0.1269280110429725, 0.4740769841801067, 0.6931471805599453,
                  1.3132616875182228, 3.048587351573742, 800.0), rt);
    sess_end(&s);
}

Test(interp, unary_nan_and_int)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2));
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(4));
    oc_output(g, "relu", oc_relu(g, x));
    oc_output(g, "sign", oc_sign(g, x));
    oc_output(g, "neg", oc_neg(g, k));
    oc_output(g, "abs", oc_abs(g, k));
    oc_output(g, "ksign", oc_sign(g, k));
    oc_output(g, "ksg", oc_stop_gradient(g, k));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "x", OC_F32, OC_SHAPE(2), V(NAN, -0.0));
    sess_bind(&s, "k", OC_I32, OC_SHAPE(4), V(-3, 0, 5, -2147483648.0));
    sess_run(&s);
    struct oc_shape s2 = OC_SHAPE(2), s4 = OC_SHAPE(4);
    expect_vals("relu", out(&s, "relu"), OC_F32, s2, V(NAN, 0), 0);
    expect_vals("sign", out(&s, "sign"), OC_F32, s2, V(NAN, 0), 0);
    /* i32 keeps integer values; -INT_MIN wraps to INT_MIN */
    expect_vals("neg", out(&s, "neg"), OC_I32, s4, V(3, 0, -5, -2147483648.0), 0);
    expect_vals("abs", out(&s, "abs"), OC_I32, s4, V(3, 0, 5, -2147483648.0), 0);
    expect_vals("ksign", out(&s, "ksign"), OC_I32, s4, V(-1, 0, 1, -1), 0);
    expect_vals("ksg", out(&s, "ksg"), OC_I32, s4, V(-3, 0, 5, -2147483648.0), 0);
    sess_end(&s);
}

Test(interp, binary_broadcast_through_dsl)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F64, OC_SHAPE(2, 3)); /* 1 2 3 / 4 5 6 */
    oc_tensor r = oc_input(g, "r", OC_F64, OC_SHAPE(3));    /* 10 20 30 */
    oc_tensor c = oc_input(g, "c", OC_F64, OC_SHAPE(2, 1)); /* 2 / 4 */
    oc_tensor t = oc_input(g, "t", OC_F64, OC_SHAPE(1, 3)); /* 1 0.5 -1 */
    oc_tensor k = oc_scalar(g, OC_F64, 2.0);
    oc_output(g, "add", oc_add(g, a, r));
    oc_output(g, "sub", oc_sub(g, r, a));
    oc_output(g, "mul", oc_mul(g, a, k));
    oc_output(g, "div", oc_div(g, a, c));
    oc_output(g, "pow", oc_pow(g, c, t));       /* [2,1] ^ [1,3] -> [2,3] */
    oc_output(g, "max", oc_max(g, a, oc_scalar(g, OC_F64, 3.5)));
    oc_output(g, "min", oc_min(g, t, c));
    struct sess s;
    sess_begin(&s, g, 1);
    /* every binary above had at least one operand broadcast by the DSL */
    cr_expect_geq(count_op(g, OC_OP_BROADCAST), 8);
    sess_bind(&s, "a", OC_F64, OC_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    sess_bind(&s, "r", OC_F64, OC_SHAPE(3), V(10, 20, 30));
    sess_bind(&s, "c", OC_F64, OC_SHAPE(2, 1), V(2, 4));
    sess_bind(&s, "t", OC_F64, OC_SHAPE(1, 3), V(1, 0.5, -1));
    sess_run(&s);
    struct oc_shape s23 = OC_SHAPE(2, 3);
    expect_vals("add", out(&s, "add"), OC_F64, s23, V(11, 22, 33, 14, 25, 36), 0);
    expect_vals("sub", out(&s, "sub"), OC_F64, s23, V(9, 18, 27, 6, 15, 24), 0);
    expect_vals("mul", out(&s, "mul"), OC_F64, s23, V(2, 4, 6, 8, 10, 12), 0);
    expect_vals("div", out(&s, "div"), OC_F64, s23, V(0.5, 1, 1.5, 1, 1.25, 1.5), 0);
    expect_vals("pow", out(&s, "pow"), OC_F64, s23,
                V(2, 1.4142135623730951, 0.5, 4, 2, 0.25), 1e-15);
    expect_vals("max", out(&s, "max"), OC_F64, s23, V(3.5, 3.5, 3.5, 4, 5, 6), 0);
    expect_vals("min", out(&s, "min"), OC_F64, s23, V(1, 0.5, -1, 1, 0.5, -1), 0);
    sess_end(&s);
}

Test(interp, max_min_nan_propagate)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F64, OC_SHAPE(3));
    oc_tensor b = oc_input(g, "b", OC_F64, OC_SHAPE(3));
    oc_output(g, "max", oc_max(g, a, b));
    oc_output(g, "min", oc_min(g, a, b));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "a", OC_F64, OC_SHAPE(3), V(NAN, 1, 2));
    sess_bind(&s, "b", OC_F64, OC_SHAPE(3), V(0, NAN, 3));
    sess_run(&s);
    struct oc_shape s3 = OC_SHAPE(3);
    expect_vals("max", out(&s, "max"), OC_F64, s3, V(NAN, NAN, 3), 0);
    expect_vals("min", out(&s, "min"), OC_F64, s3, V(NAN, NAN, 2), 0);
    sess_end(&s);
}

Test(interp, comparisons)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(3));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(3));
    oc_tensor ia = oc_input(g, "ia", OC_I32, OC_SHAPE(3));
    oc_tensor ib = oc_scalar(g, OC_I32, 2);
    oc_output(g, "lt", oc_lt(g, a, b));
    oc_output(g, "le", oc_le(g, a, b));
    oc_output(g, "eq", oc_eq(g, a, b));
    oc_output(g, "ne", oc_ne(g, a, b));
    oc_output(g, "ge", oc_ge(g, a, b));
    oc_output(g, "gt", oc_gt(g, a, b));
    oc_output(g, "ilt", oc_lt(g, ia, ib));
    oc_output(g, "ieq", oc_eq(g, ia, ib));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "a", OC_F32, OC_SHAPE(3), V(1, 2, 3));
    sess_bind(&s, "b", OC_F32, OC_SHAPE(3), V(2, 2, 2));
    sess_bind(&s, "ia", OC_I32, OC_SHAPE(3), V(1, 2, 3));
    sess_run(&s);
    struct oc_shape s3 = OC_SHAPE(3);
    expect_vals("lt", out(&s, "lt"), OC_F32, s3, V(1, 0, 0), 0);
    expect_vals("le", out(&s, "le"), OC_F32, s3, V(1, 1, 0), 0);
    expect_vals("eq", out(&s, "eq"), OC_F32, s3, V(0, 1, 0), 0);
    expect_vals("ne", out(&s, "ne"), OC_F32, s3, V(1, 0, 1), 0);
    expect_vals("ge", out(&s, "ge"), OC_F32, s3, V(0, 1, 1), 0);
    expect_vals("gt", out(&s, "gt"), OC_F32, s3, V(0, 0, 1), 0);
    expect_vals("ilt", out(&s, "ilt"), OC_I32, s3, V(1, 0, 0), 0);
    expect_vals("ieq", out(&s, "ieq"), OC_I32, s3, V(0, 1, 0), 0);
    sess_end(&s);
}

Test(interp, int_arithmetic_wraps)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_I32, OC_SHAPE(3));
    oc_tensor b = oc_input(g, "b", OC_I32, OC_SHAPE(3));
    oc_output(g, "add", oc_add(g, a, b));
    oc_output(g, "sub", oc_sub(g, a, b));
    oc_output(g, "mul", oc_mul(g, a, b));
    oc_output(g, "max", oc_max(g, a, b));
    oc_output(g, "sum", oc_sum(g, a, 1, 0));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "a", OC_I32, OC_SHAPE(3), V(2147483647, 65536, -7));
    sess_bind(&s, "b", OC_I32, OC_SHAPE(3), V(1, 65536, 3));
    sess_run(&s);
    struct oc_shape s3 = OC_SHAPE(3);
    expect_vals("add", out(&s, "add"), OC_I32, s3, V(-2147483648.0, 131072, -4), 0);
    expect_vals("sub", out(&s, "sub"), OC_I32, s3, V(2147483646, 0, -10), 0);
    expect_vals("mul", out(&s, "mul"), OC_I32, s3, V(2147483647, 0, -21), 0);
    expect_vals("max", out(&s, "max"), OC_I32, s3, V(2147483647, 65536, 3), 0);
    /* 2147483647 + 65536 - 7 wraps */
    expect_vals("sum", out(&s, "sum"), OC_I32, OC_SCALAR, V(-2147418120.0), 0);
    sess_end(&s);
}

Test(interp, select)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor c = oc_input(g, "c", OC_F32, OC_SHAPE(4));
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(4));
    oc_tensor ci = oc_input(g, "ci", OC_I32, OC_SHAPE(2, 1));
    oc_output(g, "sel", oc_select(g, c, a, oc_scalar(g, OC_F32, -1)));
    oc_output(g, "seli", oc_select(g, ci, oc_scalar(g, OC_F32, 7), a));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "c", OC_F32, OC_SHAPE(4), V(1, 0, 2, -0.0));
    sess_bind(&s, "a", OC_F32, OC_SHAPE(4), V(10, 20, 30, 40));
    sess_bind(&s, "ci", OC_I32, OC_SHAPE(2, 1), V(0, 3));
    sess_run(&s);
    expect_vals("sel", out(&s, "sel"), OC_F32, OC_SHAPE(4), V(10, -1, 30, -1), 0);
    expect_vals("seli", out(&s, "seli"), OC_F32, OC_SHAPE(2, 4), V(10, 20, 30, 40, 7, 7, 7, 7), 0);
    sess_end(&s);
}

Test(interp, cast)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(8));
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(3));
    oc_tensor u = oc_input(g, "u", OC_U8, OC_SHAPE(3));
    oc_output(g, "i32", oc_cast(g, x, OC_I32));
    oc_output(g, "u8", oc_cast(g, x, OC_U8));
    oc_output(g, "f32", oc_cast(g, x, OC_F32));
    oc_output(g, "k2f", oc_cast(g, k, OC_F32));
    oc_output(g, "k2u", oc_cast(g, k, OC_U8));
    oc_output(g, "u2f", oc_cast(g, u, OC_F64));
    oc_output(g, "u2i", oc_cast(g, u, OC_I32));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "x", OC_F64, OC_SHAPE(8), V(-2.7, -0.5, 0.5, 2.7, 300, 0.1, NAN, 1e10));
    sess_bind(&s, "k", OC_I32, OC_SHAPE(3), V(-5, 255, 256));
    sess_bind(&s, "u", OC_U8, OC_SHAPE(3), V(0, 128, 255));
    sess_run(&s);
    struct oc_shape s8 = OC_SHAPE(8), s3 = OC_SHAPE(3);
    /* truncation toward zero, then saturation; NaN -> 0 */
    expect_vals("i32", out(&s, "i32"), OC_I32, s8, V(-2, 0, 0, 2, 300, 0, 0, 2147483647), 0);
    expect_vals("u8", out(&s, "u8"), OC_U8, s8, V(0, 0, 0, 2, 255, 0, 0, 255), 0);
    const struct oc_buf *f = out(&s, "f32");
    cr_expect_eq(f->dtype, OC_F32);
    cr_expect_eq(((float *)f->data)[5], 0.1f);
    cr_expect_eq(((float *)f->data)[0], -2.7f);
    expect_vals("k2f", out(&s, "k2f"), OC_F32, s3, V(-5, 255, 256), 0);
    expect_vals("k2u", out(&s, "k2u"), OC_U8, s3, V(0, 255, 255), 0);
    expect_vals("u2f", out(&s, "u2f"), OC_F64, s3, V(0, 128, 255), 0);
    expect_vals("u2i", out(&s, "u2i"), OC_I32, s3, V(0, 128, 255), 0);
    sess_end(&s);
}

/* ---------------------------------------------------------------- precision modes */

Test(interp, f32_rounds_op_by_op)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SCALAR);
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SCALAR);
    oc_tensor one = oc_scalar(g, OC_F32, 1.0);
    oc_output(g, "sum", oc_add(g, a, b));
    /* (1 + 1e-8) - 1: the intermediate rounds to 1 in f32 */
    oc_output(g, "cancel", oc_sub(g, oc_add(g, one, oc_scalar(g, OC_F32, 1e-8)), one));
    cr_assert_eq(oc_graph_status(g), OC_OK);

    volatile float fa = 0.1f, fb = 0.2f;
    float fsum = fa + fb;
    for (int mode = 0; mode < 2; mode++) {
        struct oc_interp *it = oc_interp_new(g, mode);
        struct oc_err err = {0};
        /* f64 buffers bound to f32 nodes: rounded in f32 mode, exact in f64 mode */
        struct oc_buf va = oc_test_buf(OC_F64, OC_SCALAR, V(0.1));
        struct oc_buf vb = oc_test_buf(OC_F64, OC_SCALAR, V(0.2));
        cr_assert_eq(oc_interp_set(it, "a", &va, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_set(it, "b", &vb, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_run(it, 1, &err), OC_OK, "%s", err.msg);
        const struct oc_buf *sum = oc_interp_output(it, "sum");
        const struct oc_buf *cancel = oc_interp_output(it, "cancel");
        if (mode == 0) {
            cr_expect_eq(sum->dtype, OC_F32);
            cr_expect_eq(((float *)sum->data)[0], fsum, "0.1f+0.2f");
            cr_expect_neq((double)((float *)sum->data)[0], 0.1 + 0.2);
            cr_expect_eq(((float *)cancel->data)[0], 0.0f);
        } else {
            cr_expect_eq(sum->dtype, OC_F64, "f64 mode reports float nodes as f64");
            cr_expect_eq(((double *)sum->data)[0], 0.1 + 0.2);
            cr_expect_float_eq(((double *)cancel->data)[0], 1e-8, 1e-16);
        }
        oc_buf_free(&va);
        oc_buf_free(&vb);
        oc_interp_free(it);
    }
    oc_graph_free(g);
}

Test(interp, dtypes_reported_per_mode)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2));
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(2));
    oc_tensor u = oc_input(g, "u", OC_U8, OC_SHAPE(2));
    oc_output(g, "x", oc_neg(g, x));
    oc_output(g, "k", oc_neg(g, k));
    oc_output(g, "u", oc_reshape(g, u, OC_SHAPE(1, 2)));
    oc_output(g, "h", oc_cast(g, x, OC_F64));
    for (int mode = 0; mode < 2; mode++) {
        struct sess s;
        sess_begin(&s, oc_graph_clone(g), mode);
        sess_bind(&s, "x", OC_F32, OC_SHAPE(2), V(1, 2));
        sess_bind(&s, "k", OC_I32, OC_SHAPE(2), V(1, 2));
        sess_bind(&s, "u", OC_U8, OC_SHAPE(2), V(1, 2));
        sess_run(&s);
        cr_expect_eq(out(&s, "x")->dtype, mode ? OC_F64 : OC_F32);
        cr_expect_eq(out(&s, "k")->dtype, OC_I32);
        cr_expect_eq(out(&s, "u")->dtype, OC_U8);
        cr_expect_eq(out(&s, "h")->dtype, OC_F64);
        expect_vals("u", out(&s, "u"), OC_U8, OC_SHAPE(1, 2), V(1, 2), 0);
        sess_end(&s);
    }
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- rank 0, size 1 */

Test(interp, rank0_and_size1)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor s0 = oc_input(g, "s", OC_F64, OC_SCALAR);
    oc_tensor m = oc_input(g, "m", OC_F64, OC_SHAPE(1, 3, 1)); /* 1 2 3 */
    oc_tensor e = oc_exp(g, s0);
    oc_output(g, "e", e);
    oc_output(g, "s2", oc_mul(g, s0, s0));
    oc_output(g, "bc", oc_add(g, m, oc_reshape(g, oc_const_data(g, OC_F64, OC_SHAPE(2), V(10, 20)),
                                               OC_SHAPE(2, 1, 1))));
    oc_output(g, "sum_all", oc_sum(g, m, oc_all_axes(g, m), 0));
    oc_output(g, "sum_keep", oc_sum(g, m, 0x5, 1));
    oc_output(g, "max0", oc_reduce_max(g, oc_reshape(g, s0, OC_SHAPE(1)), 1, 0));
    oc_output(g, "bc0", oc_broadcast(g, s0, OC_SHAPE(2, 2)));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "s", OC_F64, OC_SCALAR, V(2));
    sess_bind(&s, "m", OC_F64, OC_SHAPE(1, 3, 1), V(1, 2, 3));
    sess_run(&s);
    const struct oc_buf *eb = out(&s, "e");
    cr_expect_eq(eb->shape.rank, 0);
    expect_vals("e", eb, OC_F64, OC_SCALAR, V(7.38905609893065), 1e-14);
    expect_vals("s2", out(&s, "s2"), OC_F64, OC_SCALAR, V(4), 0);
    /* [1,3,1] + [2,1,1] -> [2,3,1] */
    expect_vals("bc", out(&s, "bc"), OC_F64, OC_SHAPE(2, 3, 1), V(11, 12, 13, 21, 22, 23), 0);
    expect_vals("sum_all", out(&s, "sum_all"), OC_F64, OC_SCALAR, V(6), 0);
    /* size-1 axes reduced with keepdims: [1,3,1] -> [1,3,1] unchanged */
    expect_vals("sum_keep", out(&s, "sum_keep"), OC_F64, OC_SHAPE(1, 3, 1), V(1, 2, 3), 0);
    expect_vals("max0", out(&s, "max0"), OC_F64, OC_SCALAR, V(2), 0);
    expect_vals("bc0", out(&s, "bc0"), OC_F64, OC_SHAPE(2, 2), V(2, 2, 2, 2), 0);
    sess_end(&s);
}

/* ---------------------------------------------------------------- sources */

Test(interp, const_and_rng)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor ctr = oc_input(g, "step", OC_I32, OC_SCALAR);
    oc_output(g, "splat", oc_const_fill(g, OC_F32, OC_SHAPE(2), 0.1));
    oc_output(g, "data", oc_const_data(g, OC_I32, OC_SHAPE(3), V(1, -2, 3.9)));
    oc_output(g, "u", oc_rng_uniform(g, OC_F32, OC_SHAPE(2, 3), 99, ctr));
    oc_output(g, "n", oc_rng_normal(g, OC_F64, OC_SHAPE(4), 0x100000007ull, ctr));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "step", OC_I32, OC_SCALAR, V(5));
    sess_run(&s);
    expect_vals("splat", out(&s, "splat"), OC_F32, OC_SHAPE(2), V(0.1, 0.1), 0);
    expect_vals("data", out(&s, "data"), OC_I32, OC_SHAPE(3), V(1, -2, 3), 0);
    double wu[6], wn[4];
    for (int i = 0; i < 6; i++) wu[i] = oc_rng_uniform_at(99, 5, (uint64_t)i);
    for (int i = 0; i < 4; i++) wn[i] = oc_rng_normal_at(0x100000007ull, 5, (uint64_t)i);
    expect_vals("u", out(&s, "u"), OC_F32, OC_SHAPE(2, 3), wu, 0);
    expect_vals("n", out(&s, "n"), OC_F64, OC_SHAPE(4), wn, 0);
    /* a new counter draws a new stream */
    struct oc_buf first = oc_test_copy(out(&s, "u"));
    sess_bind(&s, "step", OC_I32, OC_SCALAR, V(6));
    sess_run(&s);
    for (int i = 0; i < 6; i++) wu[i] = oc_rng_uniform_at(99, 6, (uint64_t)i);
    expect_vals("u at 6", out(&s, "u"), OC_F32, OC_SHAPE(2, 3), wu, 0);
    cr_expect_neq(memcmp(first.data, out(&s, "u")->data, 6 * sizeof(float)), 0);
    oc_buf_free(&first);
    sess_end(&s);
}

/* ---------------------------------------------------------------- layout */

Test(interp, reshape_permute_broadcast)
{
    double v24[24];
    for (int i = 0; i < 24; i++) v24[i] = i;
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3, 4));
    oc_output(g, "perm", oc_permute(g, x, (const int[]){2, 0, 1}));
    oc_output(g, "resh", oc_reshape(g, x, OC_SHAPE(4, 6)));
    oc_tensor r = oc_input(g, "r", OC_F64, OC_SHAPE(3, 1)); /* 1 2 3 */
    oc_output(g, "bc", oc_broadcast(g, r, OC_SHAPE(2, 3, 2)));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "x", OC_F64, OC_SHAPE(2, 3, 4), v24);
    sess_bind(&s, "r", OC_F64, OC_SHAPE(3, 1), V(1, 2, 3));
    sess_run(&s);
    /* out[i,j,k] = x[j,k,i] = 12j + 4k + i */
    expect_vals("perm", out(&s, "perm"), OC_F64, OC_SHAPE(4, 2, 3),
                V(0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15,
                  19, 23), 0);
    expect_vals("resh", out(&s, "resh"), OC_F64, OC_SHAPE(4, 6), v24, 0);
    expect_vals("bc", out(&s, "bc"), OC_F64, OC_SHAPE(2, 3, 2),
                V(1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3), 0);
    sess_end(&s);
}

Test(interp, slice_pad_concat)
{
    double v12[12];
    for (int i = 0; i < 12; i++) v12[i] = i;
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(3, 4));
    oc_output(g, "slice", oc_slice(g, x, (const int64_t[]){0, 1}, (const int64_t[]){3, 4},
                                   (const int64_t[]){2, 2}));
    oc_output(g, "slice1", oc_slice(g, x, (const int64_t[]){1, 0}, (const int64_t[]){2, 3}, NULL));
    oc_tensor p = oc_input(g, "p", OC_F32, OC_SHAPE(2, 2));
    oc_output(g, "pad", oc_pad(g, p, (const int64_t[]){1, 0}, (const int64_t[]){0, 1}, -1));
    oc_tensor c1 = oc_input(g, "c1", OC_F32, OC_SHAPE(2, 1));
    oc_output(g, "cat1", oc_concat(g, (const oc_tensor[]){c1, p}, 2, 1));
    oc_output(g, "cat0", oc_concat(g, (const oc_tensor[]){p, p, oc_reshape(g, c1, OC_SHAPE(1, 2))},
                                   3, 0));
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(2));
    oc_output(g, "padi", oc_pad(g, k, (const int64_t[]){2}, (const int64_t[]){1}, 7.9));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "x", OC_F32, OC_SHAPE(3, 4), v12);
    sess_bind(&s, "p", OC_F32, OC_SHAPE(2, 2), V(1, 2, 3, 4));
    sess_bind(&s, "c1", OC_F32, OC_SHAPE(2, 1), V(8, 9));
    sess_bind(&s, "k", OC_I32, OC_SHAPE(2), V(5, 6));
    sess_run(&s);
    expect_vals("slice", out(&s, "slice"), OC_F32, OC_SHAPE(2, 2), V(1, 3, 9, 11), 0);
    expect_vals("slice1", out(&s, "slice1"), OC_F32, OC_SHAPE(1, 3), V(4, 5, 6), 0);
    expect_vals("pad", out(&s, "pad"), OC_F32, OC_SHAPE(3, 3), V(-1, -1, -1, 1, 2, -1, 3, 4, -1),
                0);
    expect_vals("cat1", out(&s, "cat1"), OC_F32, OC_SHAPE(2, 3), V(8, 1, 2, 9, 3, 4), 0);
    expect_vals("cat0", out(&s, "cat0"), OC_F32, OC_SHAPE(5, 2), V(1, 2, 3, 4, 1, 2, 3, 4, 8, 9),
                0);
    /* an i32 pad value truncates like a cast */
    expect_vals("padi", out(&s, "padi"), OC_I32, OC_SHAPE(5), V(7, 7, 5, 6, 7), 0);
    sess_end(&s);
}

/* ---------------------------------------------------------------- reductions */

Test(interp, sum_and_reduce_max)
{
    double v12[12];
    for (int i = 0; i < 12; i++) v12[i] = i;
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F64, OC_SHAPE(2, 3)); /* 1 5 3 / -4 -2 -9 */
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3, 2)); /* 6a + 2b + c */
    oc_output(g, "s1", oc_sum(g, a, 0x2, 0));
    oc_output(g, "s0k", oc_sum(g, a, 0x1, 1));
    oc_output(g, "sall", oc_sum(g, a, 0x3, 0));
    oc_output(g, "s02", oc_sum(g, x, 0x5, 0));
    oc_output(g, "s02k", oc_sum(g, x, 0x5, 1));
    oc_output(g, "m1", oc_reduce_max(g, a, 0x2, 0));
    oc_output(g, "m0k", oc_reduce_max(g, a, 0x1, 1));
    oc_output(g, "m12", oc_reduce_max(g, x, 0x6, 0));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "a", OC_F64, OC_SHAPE(2, 3), V(1, 5, 3, -4, -2, -9));
    sess_bind(&s, "x", OC_F64, OC_SHAPE(2, 3, 2), v12);
    sess_run(&s);
    expect_vals("s1", out(&s, "s1"), OC_F64, OC_SHAPE(2), V(9, -15), 0);
    expect_vals("s0k", out(&s, "s0k"), OC_F64, OC_SHAPE(1, 3), V(-3, 3, -6), 0);
    expect_vals("sall", out(&s, "sall"), OC_F64, OC_SCALAR, V(-6), 0);
    expect_vals("s02", out(&s, "s02"), OC_F64, OC_SHAPE(3), V(14, 22, 30), 0);
    expect_vals("s02k", out(&s, "s02k"), OC_F64, OC_SHAPE(1, 3, 1), V(14, 22, 30), 0);
    expect_vals("m1", out(&s, "m1"), OC_F64, OC_SHAPE(2), V(5, -2), 0);
    expect_vals("m0k", out(&s, "m0k"), OC_F64, OC_SHAPE(1, 3), V(1, 5, 3), 0);
    expect_vals("m12", out(&s, "m12"), OC_F64, OC_SHAPE(2), V(5, 11), 0);
    sess_end(&s);
}

Test(interp, argmax_ties_and_nan)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(3, 4));
    oc_output(g, "am1", oc_argmax(g, a, 1, 0));
    oc_output(g, "am0k", oc_argmax(g, a, 0, 1));
    oc_output(g, "max1", oc_reduce_max(g, a, 0x2, 0));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "a", OC_F32, OC_SHAPE(3, 4), 
              V(1, 3, 3, 2, /**/ NAN, 5, NAN, 1, /**/ -1, -1, -1, -1));
    sess_run(&s);
    /* ties: first index; NaN counts as the maximum (first NaN) */
    expect_vals("am1", out(&s, "am1"), OC_I32, OC_SHAPE(3), V(1, 0, 0), 0);
    expect_vals("am0k", out(&s, "am0k"), OC_I32, OC_SHAPE(1, 4), V(1, 1, 1, 0), 0);
    expect_vals("max1", out(&s, "max1"), OC_F32, OC_SHAPE(3), V(3, NAN, -1), 0);
    sess_end(&s);
}

/* ---------------------------------------------------------------- contractions */

Test(interp, matmul)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F64, OC_SHAPE(2, 3));   /* 1 2 3 / 4 5 6 */
    oc_tensor b = oc_input(g, "b", OC_F64, OC_SHAPE(3, 2));   /* 7 8 / 9 10 / 11 12 */
    oc_tensor at = oc_input(g, "at", OC_F64, OC_SHAPE(3, 2)); /* a^T stored */
    oc_tensor bt = oc_input(g, "bt", OC_F64, OC_SHAPE(2, 3)); /* b^T stored */
    oc_tensor ba = oc_input(g, "ba", OC_F64, OC_SHAPE(2, 2, 2));
    oc_tensor bb = oc_input(g, "bb", OC_F64, OC_SHAPE(2, 2, 2));
    oc_output(g, "nn", oc_matmul(g, a, b, 0, 0));
    oc_output(g, "tn", oc_matmul(g, at, b, 1, 0));
    oc_output(g, "nt", oc_matmul(g, a, bt, 0, 1));
    oc_output(g, "tt", oc_matmul(g, at, bt, 1, 1));
    oc_output(g, "outer", oc_matmul(g, a, at, 1, 1)); /* a^T [3,2] x (a^T)^T [2,3] */
    oc_output(g, "batch", oc_matmul(g, ba, bb, 0, 0));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "a", OC_F64, OC_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    sess_bind(&s, "b", OC_F64, OC_SHAPE(3, 2), V(7, 8, 9, 10, 11, 12));
    sess_bind(&s, "at", OC_F64, OC_SHAPE(3, 2), V(1, 4, 2, 5, 3, 6));
    sess_bind(&s, "bt", OC_F64, OC_SHAPE(2, 3), V(7, 9, 11, 8, 10, 12));
    sess_bind(&s, "ba", OC_F64, OC_SHAPE(2, 2, 2), V(1, 2, 3, 4, 1, 0, 0, 1));
    sess_bind(&s, "bb", OC_F64, OC_SHAPE(2, 2, 2), V(5, 6, 7, 8, 2, 3, 4, 5));
    sess_run(&s);
    struct oc_shape s22 = OC_SHAPE(2, 2);
    expect_vals("nn", out(&s, "nn"), OC_F64, s22, V(58, 64, 139, 154), 0);
    expect_vals("tn", out(&s, "tn"), OC_F64, s22, V(58, 64, 139, 154), 0);
    expect_vals("nt", out(&s, "nt"), OC_F64, s22, V(58, 64, 139, 154), 0);
    expect_vals("tt", out(&s, "tt"), OC_F64, s22, V(58, 64, 139, 154), 0);
    /* a^T [3,2] x at^T [2,3]: (a^T a)[i][j] = sum_k a[k][i] a[k][j] */
    expect_vals("outer", out(&s, "outer"), OC_F64, OC_SHAPE(3, 3),
                V(17, 22, 27, 22, 29, 36, 27, 36, 45), 0);
    expect_vals("batch", out(&s, "batch"), OC_F64, OC_SHAPE(2, 2, 2),
                V(19, 22, 43, 50, 2, 3, 4, 5), 0);
    sess_end(&s);
}

Test(interp, conv2d_by_hand)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(1, 1, 3, 3)); /* 1..9 */
    oc_tensor w = oc_input(g, "w", OC_F64, OC_SHAPE(1, 1, 2, 2)); /* 1 2 / 3 4 */
    oc_tensor dy = oc_input(g, "dy", OC_F64, OC_SHAPE(1, 1, 2, 2));
    oc_output(g, "y", oc_conv2d(g, x, w, 1, 0));
    oc_output(g, "ysp", oc_conv2d(g, x, w, 2, 1));
    oc_output(g, "dx", oc_conv2d_grad_input(g, dy, w, OC_SHAPE(1, 1, 3, 3), 1, 0));
    oc_output(g, "dw", oc_conv2d_grad_weight(g, x, dy, OC_SHAPE(1, 1, 2, 2), 1, 0));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "x", OC_F64, OC_SHAPE(1, 1, 3, 3), V(1, 2, 3, 4, 5, 6, 7, 8, 9));
    sess_bind(&s, "w", OC_F64, OC_SHAPE(1, 1, 2, 2), V(1, 2, 3, 4));
    sess_bind(&s, "dy", OC_F64, OC_SHAPE(1, 1, 2, 2), V(1, 1, 1, 1));
    sess_run(&s);
    /* y00 = 1*1 + 2*2 + 3*4 + 4*5 = 37, ... (cross-correlation, as PyTorch) */
    expect_vals("y", out(&s, "y"), OC_F64, OC_SHAPE(1, 1, 2, 2), V(37, 47, 67, 77), 0);
    /* stride 2, padding 1: windows at rows/cols {-1,0} and {1,2}:
     * (0,0): x00*w11 = 4; (0,1): x01*w10 + x02*w11 = 6 + 12;
     * (1,0): x10*w01 + x20*w11 = 8 + 28; (1,1): 5 + 12 + 24 + 36 */
    expect_vals("ysp", out(&s, "ysp"), OC_F64, OC_SHAPE(1, 1, 2, 2), V(4, 18, 36, 77), 0);
    /* dy = ones: dx[h][w] sums the taps that read x[h][w] */
    expect_vals("dx", out(&s, "dx"), OC_F64, OC_SHAPE(1, 1, 3, 3), V(1, 3, 2, 4, 10, 6, 3, 7, 4),
                0);
    /* dw[kh][kw] = sum of the 2x2 block of x at offset (kh, kw) */
    expect_vals("dw", out(&s, "dw"), OC_F64, OC_SHAPE(1, 1, 2, 2), V(12, 16, 24, 28), 0);
    sess_end(&s);
}

/* Multi-channel, non-square kernel, stride 2, padding 1; expected values from
 *   x = (arange(24)*0.5 - 3).reshape(1,2,3,4); w = (arange(24) - 11.5).reshape(2,2,2,3)/4
 *   y = F.conv2d(x, w, stride=2, padding=1); dy = (arange(8) - 3).reshape(y.shape)
 *   y.backward(dy) -> x.grad, w.grad      (PyTorch 2, float64) */
Test(interp, conv2d_matches_pytorch)
{
    double xv[24], wv[24];
    for (int i = 0; i < 24; i++) xv[i] = i * 0.5 - 3, wv[i] = (i - 11.5) / 4;
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(1, 2, 3, 4));
    oc_tensor w = oc_input(g, "w", OC_F32, OC_SHAPE(2, 2, 2, 3));
    oc_tensor dy = oc_input(g, "dy", OC_F32, OC_SHAPE(1, 2, 2, 2));
    oc_output(g, "y", oc_conv2d(g, x, w, 2, 1));
    oc_output(g, "dx", oc_conv2d_grad_input(g, dy, w, OC_SHAPE(1, 2, 3, 4), 2, 1));
    oc_output(g, "dw", oc_conv2d_grad_weight(g, x, dy, OC_SHAPE(2, 2, 2, 3), 2, 1));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "x", OC_F32, OC_SHAPE(1, 2, 3, 4), xv);
    sess_bind(&s, "w", OC_F32, OC_SHAPE(2, 2, 2, 3), wv);
    sess_bind(&s, "dy", OC_F32, OC_SHAPE(1, 2, 2, 2), V(-3, -2, -1, 0, 1, 2, 3, 4));
    sess_run(&s);
    expect_vals("y", out(&s, "y"), OC_F32, OC_SHAPE(1, 2, 2, 2),
                V(8.125, 7.25, -14.5, -39.5, 11.125, 25.25, 63.5, 104.5), 0);
    expect_vals("dx", out(&s, "dx"), OC_F32, OC_SHAPE(1, 2, 3, 4),
                V(6.75, 12.25, 6.0, 6.0, 3.75, 4.75, 1.5, 2.5, 5.25, 9.25, 4.5, 5.5, 3.75, 9.25,
                  6.0, 6.0, 6.75, 13.75, 7.5, 8.5, 8.25, 18.25, 10.5, 11.5), 0);
    expect_vals("dw", out(&s, "dw"), OC_F32, OC_SHAPE(2, 2, 2, 3),
                V(0.0, 1.0, 0.5, 5.0, 12.0, 9.0, 0.0, -5.0, -5.5, -7.0, -24.0, -27.0, -2.0, -3.0,
                  0.5, 1.0, 4.0, 9.0, 22.0, 39.0, 42.5, 37.0, 64.0, 69.0), 0);
    sess_end(&s);
}

static double dot(const struct oc_buf *a, const struct oc_buf *b)
{
    int64_t n = oc_shape_numel(&a->shape);
    cr_assert_eq(n, oc_shape_numel(&b->shape));
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += oc_buf_get(a, i) * oc_buf_get(b, i);
    return s;
}

/* <conv(x,w), dy> == <x, grad_input(dy,w)> == <w, grad_weight(x,dy)>: the two
 * adjoints are the transposes of the forward map in x and in w. */
static void check_adjoints(struct oc_shape xs, struct oc_shape ws, int stride, int pad,
                           double rtol)
{
    struct oc_graph *g = oc_graph_new("adj");
    oc_tensor x = oc_input(g, "x", OC_F64, xs);
    oc_tensor w = oc_input(g, "w", OC_F64, ws);
    oc_tensor y = oc_conv2d(g, x, w, stride, pad);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_shape ys = oc_node_of(g, y)->shape;
    oc_tensor dy = oc_input(g, "dy", OC_F64, ys);
    oc_output(g, "y", y);
    oc_output(g, "dx", oc_conv2d_grad_input(g, dy, w, xs, stride, pad));
    oc_output(g, "dw", oc_conv2d_grad_weight(g, x, dy, ws, stride, pad));
    struct oc_buf bx = oc_test_random(OC_F64, xs, 1, -1, 1);
    struct oc_buf bw = oc_test_random(OC_F64, ws, 2, -1, 1);
    struct oc_buf bdy = oc_test_random(OC_F64, ys, 3, -1, 1);
    struct oc_interp *it = oc_interp_new(g, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_set(it, "x", &bx, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "w", &bw, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "dy", &bdy, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(it, 1, &err), OC_OK, "%s", err.msg);
    double d1 = dot(oc_interp_output(it, "y"), &bdy);
    double d2 = dot(&bx, oc_interp_output(it, "dx"));
    double d3 = dot(&bw, oc_interp_output(it, "dw"));
    cr_expect(fabs(d1) > 1e-3, "degenerate test: <y,dy> = %g", d1);
    cr_expect(fabs(d1 - d2) <= rtol * fabs(d1), "<conv(x,w),dy> %.17g vs <x,dx> %.17g", d1, d2);
    cr_expect(fabs(d1 - d3) <= rtol * fabs(d1), "<conv(x,w),dy> %.17g vs <w,dw> %.17g", d1, d3);
    oc_interp_free(it);
    oc_buf_free(&bx);
    oc_buf_free(&bw);
    oc_buf_free(&bdy);
    oc_graph_free(g);
}

Test(interp, conv2d_adjoint_identities)
{
    /* odd sizes, stride 2, padding 1 */
    check_adjoints(OC_SHAPE(2, 3, 7, 5), OC_SHAPE(4, 3, 3, 3), 2, 1, 1e-10);
    /* non-square kernel whose windows skip the last row/column */
    check_adjoints(OC_SHAPE(3, 2, 8, 9), OC_SHAPE(5, 2, 2, 3), 2, 1, 1e-10);
    check_adjoints(OC_SHAPE(1, 1, 5, 5), OC_SHAPE(2, 1, 3, 3), 1, 0, 1e-10);
    /* the size the tests of later layers use */
    check_adjoints(OC_SHAPE(8, 16, 16, 16), OC_SHAPE(16, 16, 3, 3), 1, 1, 1e-10);
}

/* ---------------------------------------------------------------- indexing */

Test(interp, one_hot)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(4));
    oc_output(g, "f", oc_one_hot(g, k, 4, OC_F32));
    oc_output(g, "i", oc_one_hot(g, oc_reshape(g, k, OC_SHAPE(2, 2)), 3, OC_I32));
    struct sess s;
    sess_begin(&s, g, 0);
    sess_bind(&s, "k", OC_I32, OC_SHAPE(4), V(3, -1, 0, 5));
    sess_run(&s);
    /* out-of-range indices give all-zero rows */
    expect_vals("f", out(&s, "f"), OC_F32, OC_SHAPE(4, 4),
                V(0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0), 0);
    expect_vals("i", out(&s, "i"), OC_I32, OC_SHAPE(2, 2, 3),
                V(0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0), 0);
    sess_end(&s);
}

Test(interp, gather)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3)); /* 1 2 3 / 4 5 6 */
    oc_tensor i1 = oc_input(g, "i1", OC_I32, OC_SHAPE(2));
    oc_tensor i0 = oc_input(g, "i0", OC_I32, OC_SHAPE(3));
    oc_tensor x3 = oc_input(g, "x3", OC_F64, OC_SHAPE(2, 2, 2)); /* 0..7 */
    oc_tensor i3 = oc_input(g, "i3", OC_I32, OC_SHAPE(2, 2));
    oc_output(g, "g1", oc_gather(g, x, i1, 1));
    oc_output(g, "g0", oc_gather(g, x, i0, 0));
    oc_output(g, "g3", oc_gather(g, x3, i3, 1));
    struct sess s;
    sess_begin(&s, g, 1);
    sess_bind(&s, "x", OC_F64, OC_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    sess_bind(&s, "i1", OC_I32, OC_SHAPE(2), V(2, 0));
    sess_bind(&s, "i0", OC_I32, OC_SHAPE(3), V(1, 0, 1));
    sess_bind(&s, "x3", OC_F64, OC_SHAPE(2, 2, 2), V(0, 1, 2, 3, 4, 5, 6, 7));
    sess_bind(&s, "i3", OC_I32, OC_SHAPE(2, 2), V(1, 0, 0, 1));
    sess_run(&s);
    expect_vals("g1", out(&s, "g1"), OC_F64, OC_SHAPE(2), V(3, 4), 0);
    expect_vals("g0", out(&s, "g0"), OC_F64, OC_SHAPE(3), V(4, 2, 6), 0);
    /* out[a][c] = x3[a][i3[a][c]][c] */
    expect_vals("g3", out(&s, "g3"), OC_F64, OC_SHAPE(2, 2), V(2, 1, 4, 7), 0);
    sess_end(&s);
}

Test(interp, gather_out_of_range_is_an_error)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 3));
    oc_tensor k = oc_input(g, "k", OC_I32, OC_SHAPE(2));
    oc_tensor y = oc_gather(g, x, k, 1);
    oc_output(g, "y", y);
    cr_assert_eq(oc_graph_status(g), OC_OK);
    struct oc_interp *it = oc_interp_new(g, 0);
    struct oc_buf bx = oc_test_buf(OC_F32, OC_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    struct oc_buf bk = oc_test_buf(OC_I32, OC_SHAPE(2), V(0, 3));
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_set(it, "x", &bx, &err), OC_OK);
    cr_assert_eq(oc_interp_set(it, "k", &bk, &err), OC_OK);
    cr_expect_neq(oc_interp_run(it, 1, &err), OC_OK);
    char node[32];
    snprintf(node, sizeof node, "%%%d", y.id);
    cr_expect(strstr(err.msg, "gather") && strstr(err.msg, "index 3") && strstr(err.msg, node),
              "message: %s", err.msg);
    cr_expect_null(oc_interp_output(it, "y"), "no values after a failed run");
    /* negative indices too; a fixed binding then runs */
    struct oc_buf bn = oc_test_buf(OC_I32, OC_SHAPE(2), V(-1, 0));
    oc_err_clear(&err);
    cr_assert_eq(oc_interp_set(it, "k", &bn, &err), OC_OK);
    cr_expect_neq(oc_interp_run(it, 1, &err), OC_OK);
    cr_expect(strstr(err.msg, "index -1"), "message: %s", err.msg);
    struct oc_buf bg = oc_test_buf(OC_I32, OC_SHAPE(2), V(2, 1));
    oc_err_clear(&err);
    cr_assert_eq(oc_interp_set(it, "k", &bg, &err), OC_OK);
    cr_assert_eq(oc_interp_run(it, 1, &err), OC_OK, "%s", err.msg);
    expect_vals("y", oc_interp_output(it, "y"), OC_F32, OC_SHAPE(2), V(3, 5), 0);
    oc_buf_free(&bx);
    oc_buf_free(&bk);
    oc_buf_free(&bn);
    oc_buf_free(&bg);
    oc_interp_free(it);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- state */

Test(interp, state_persists_and_assign_applies_at_end_of_step)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor cnt = oc_state(g, "count", OC_F32, OC_SHAPE(2), OC_INIT_ZEROS, 0);
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(2), OC_INIT_CONST, 1.5, 0);
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2));
    oc_tensor inc = oc_add_scalar(g, cnt, 1);
    oc_output(g, "read", cnt);
    oc_output(g, "new", oc_assign(g, cnt, inc));
    oc_output(g, "wx", oc_mul(g, w, x)); /* uses the old w */
    oc_assign(g, w, oc_sub(g, w, oc_scale(g, x, 0.5)));
    /* a read after the assign node still sees the start-of-step value */
    oc_output(g, "late", oc_add_scalar(g, cnt, 0));
    struct sess s;
    sess_begin(&s, g, 0);
    cr_expect_null(oc_interp_named(s.it, "count"), "not initialized before the first run");
    sess_bind(&s, "x", OC_F32, OC_SHAPE(2), V(1, 2));
    sess_run(&s);
    struct oc_shape s2 = OC_SHAPE(2);
    expect_vals("read 1", out(&s, "read"), OC_F32, s2, V(0, 0), 0);
    expect_vals("new 1", out(&s, "new"), OC_F32, s2, V(1, 1), 0);
    expect_vals("late 1", out(&s, "late"), OC_F32, s2, V(0, 0), 0);
    expect_vals("wx 1", out(&s, "wx"), OC_F32, s2, V(1.5, 3), 0);
    expect_vals("count 1", oc_interp_named(s.it, "count"), OC_F32, s2, V(1, 1), 0);
    expect_vals("w 1", oc_interp_named(s.it, "w"), OC_F32, s2, V(1, 0.5), 0);
    sess_run(&s);
    expect_vals("read 2", out(&s, "read"), OC_F32, s2, V(1, 1), 0);
    expect_vals("wx 2", out(&s, "wx"), OC_F32, s2, V(1, 1), 0);
    expect_vals("count 2", oc_interp_named(s.it, "count"), OC_F32, s2, V(2, 2), 0);
    expect_vals("w 2", oc_interp_named(s.it, "w"), OC_F32, s2, V(0.5, -0.5), 0);
    /* binding a state overrides the persistent value */
    sess_bind(&s, "count", OC_F64, s2, V(10, 20));
    sess_run(&s);
    expect_vals("read 3", out(&s, "read"), OC_F32, s2, V(10, 20), 0);
    expect_vals("count 3", oc_interp_named(s.it, "count"), OC_F32, s2, V(11, 21), 0);
    sess_end(&s);
}

Test(interp, unbound_params_use_init_fill)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(3, 4), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_output(g, "w", oc_stop_gradient(g, w));
    struct oc_buf want;
    struct oc_err err = {0};
    cr_assert_eq(oc_init_fill(oc_node_of(g, w), 1234, &want, &err), OC_OK, "%s", err.msg);
    struct oc_buf got = oc_test_run(g, 0, NULL, 0, "w");
    cr_expect(oc_test_allclose("w", &got, &want, 0, 0));
    oc_buf_free(&got);
    /* f64 mode starts from the same (f32-rounded) initial values */
    got = oc_test_run(g, 1, NULL, 0, "w");
    cr_expect_eq(got.dtype, OC_F64);
    cr_expect(oc_test_allclose("w f64", &got, &want, 0, 0));
    oc_buf_free(&got);
    oc_buf_free(&want);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- errors */

Test(interp, missing_input_is_an_error)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "images", OC_F32, OC_SHAPE(2, 3));
    oc_output(g, "y", oc_relu(g, x));
    struct oc_interp *it = oc_interp_new(g, 0);
    struct oc_err err = {0};
    cr_expect_neq(oc_interp_run(it, 1, &err), OC_OK);
    cr_expect(strstr(err.msg, "\"images\"") && strstr(err.msg, "not bound"), "message: %s",
              err.msg);
    cr_expect_null(oc_interp_output(it, "y"));
    oc_interp_free(it);
    oc_graph_free(g);
}

Test(interp, binding_errors_name_input_and_types)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_input(g, "images", OC_F32, OC_SHAPE(2, 3));
    oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    struct oc_interp *it = oc_interp_new(g, 0);
    struct oc_err err = {0};
    struct oc_buf wrong_shape = oc_test_buf(OC_F32, OC_SHAPE(3, 2), V(1, 2, 3, 4, 5, 6));
    cr_expect_eq(oc_interp_set(it, "images", &wrong_shape, &err), OC_ERR_SHAPE);
    cr_expect(strstr(err.msg, "\"images\"") && strstr(err.msg, "[2,3]") && strstr(err.msg, "[3,2]"),
              "message: %s", err.msg);
    struct oc_buf wrong_dtype = oc_test_buf(OC_F32, OC_SHAPE(2), V(1, 2));
    oc_err_clear(&err);
    cr_expect_eq(oc_interp_set(it, "labels", &wrong_dtype, &err), OC_ERR_DTYPE);
    cr_expect(strstr(err.msg, "\"labels\"") && strstr(err.msg, "i32") && strstr(err.msg, "f32"),
              "message: %s", err.msg);
    oc_err_clear(&err);
    cr_expect_neq(oc_interp_set(it, "nope", &wrong_dtype, &err), OC_OK);
    cr_expect(strstr(err.msg, "\"nope\""), "message: %s", err.msg);
    /* any float dtype binds to a float node */
    struct oc_buf f64v = oc_test_buf(OC_F64, OC_SHAPE(2, 3), V(1, 2, 3, 4, 5, 6));
    oc_err_clear(&err);
    cr_expect_eq(oc_interp_set(it, "images", &f64v, &err), OC_OK, "%s", err.msg);
    oc_buf_free(&wrong_shape);
    oc_buf_free(&wrong_dtype);
    oc_buf_free(&f64v);
    oc_interp_free(it);
    oc_graph_free(g);
}

Test(interp, build_error_is_reported_by_run)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(2, 3));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(4));
    oc_output(g, "c", oc_add(g, a, b)); /* does not broadcast */
    cr_assert_neq(oc_graph_status(g), OC_OK);
    struct oc_interp *it = oc_interp_new(g, 0);
    cr_assert_not_null(it);
    struct oc_err err = {0};
    cr_expect_neq(oc_interp_run(it, 1, &err), OC_OK);
    cr_expect(strstr(err.msg, "broadcast"), "message: %s", err.msg);
    oc_interp_free(it);
    oc_graph_free(g);
}
