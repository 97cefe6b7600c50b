/* test-llvm-speed.c - the CPU backend's fast paths against the reference
 * interpreter and libm: exp of an argument known to be <= 0 (one clamp,
 * one scale factor: softplus, sigmoid, MMCE's kernel, a softmax's
 * exp(x - max)), f32 products rebuilt in a canonical order (the chain
 * rule's many orders of one product share code; sign(b - a) = -sign(a - b)
 * and |b - a| = |a - b|), short rows (10 classes) run 32 rows side by side
 * (keeping what several stages need in per-block arrays), and horizontal
 * sums as trees (codegen/llvm-jit.c). Each fast path is also compared with
 * its switched-off form (OC_REASSOC=0, OC_ROW_BLOCK_SHORT=0,
 * OC_STAGE_CACHE=0, OC_TREE_SUMS=0). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../codegen/codegen.h"
#include "../../passes/fuse.h"
#include "../../passes/passes.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

static struct oc_rt *rt;

static void setup(void)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
}

static void teardown(void) { oc_rt_free(rt); }

TestSuite(llvm_speed, .init = setup, .fini = teardown);

/* Units in the last place between two floats (NaN only matches NaN,
 * infinities must match exactly). */
static double ulps(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INFINITY;
    if (isinf(a) || isinf(b)) return a == b ? 0 : INFINITY;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    int64_t la = ia < 0 ? -(int64_t)(ia & 0x7fffffff) : ia, lb = ib < 0 ? -(int64_t)(ib & 0x7fffffff) : ib;
    return (double)llabs(la - lb);
}

/* Compiles g on the CPU, binds the buffers, runs once; the caller reads
 * outputs with oc_exec_get and frees. fresh: in a runtime of its own,
 * whose JIT has compiled nothing yet (the shared one's cache is keyed by
 * kernel structure, not by the OC_* switches read while emitting). */
static struct oc_exec *run_compiled_in(const struct oc_graph *g, const char *const *names,
                                       const struct oc_buf *vals, int n, int fresh)
{
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = fresh ? NULL : rt;
    o.nthreads = 2;
    struct oc_exec *ex;
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) cr_assert_eq(oc_exec_set(ex, names[i], &vals[i], &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_OK, "%s", err.msg);
    return ex;
}

static struct oc_exec *run_compiled(const struct oc_graph *g, const char *const *names,
                                    const struct oc_buf *vals, int n)
{
    return run_compiled_in(g, names, vals, n, 0);
}

/* Every output of g, compiled, against the f64 interpreter. */
static int matches_interpreter(const struct oc_graph *g, const char *const *names,
                               const struct oc_buf *vals, int n, double rtol, double atol, int fresh)
{
    struct oc_test_bind binds[8];
    for (int i = 0; i < n; i++) binds[i] = (struct oc_test_bind){names[i], &vals[i]};
    struct oc_exec *ex = run_compiled_in(g, names, vals, n, fresh);
    int ok = 1;
    for (int i = 0; i < g->noutputs; i++) {
        struct oc_err err = {0};
        struct oc_buf got, want = oc_test_run(g, 1, binds, n, g->outputs[i].name);
        cr_assert_eq(oc_exec_get(ex, g->outputs[i].name, &got, &err), OC_OK, "%s", err.msg);
        ok &= oc_test_allclose(g->outputs[i].name, &got, &want, rtol, atol);
        oc_buf_free(&got);
        oc_buf_free(&want);
    }
    oc_exec_free(ex);
    return ok;
}

/* ---------------------------------------------------------------- exp(x <= 0) */

Test(llvm_speed, exp_of_nonpositive_arguments_within_2_ulp)
{
    /* special values, the denormal range of the results, and a dense sweep */
    enum { N = 1 << 15, C = 16 };
    static float xs[N];
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -1e-45f,
                                    1.17549435e-38f, 3.4028235e38f, -3.4028235e38f, 87.33654f,
                                    -87.33654f, 103.9720f, 41.58883f, 41.5889f, 0.34657359f};
    int n = 0;
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) xs[n++] = special[i];
    uint64_t h = 0x9e3779b97f4a7c15ull;
    while (n < N) {
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        xs[n++] = -110.0f + 220.0f * (float)((h >> 11) * 0x1.0p-53);
    }
    struct oc_graph *g = oc_graph_new("exp_nonpos");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(N));
    oc_output(g, "e_negabs", oc_exp(g, oc_neg(g, oc_abs(g, x))));
    oc_output(g, "e_laplace", oc_exp(g, oc_scale(g, oc_abs(g, x), -2.5)));
    /* x - max(x) over rows of C, computed in the row kernel of the max */
    oc_tensor xr = oc_reshape(g, x, OC_SHAPE(N / C, C));
    oc_tensor m = oc_broadcast(g, oc_reduce_max(g, xr, 2u, 1), OC_SHAPE(N / C, C));
    oc_output(g, "e_submax", oc_exp(g, oc_sub(g, xr, m)));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    const char *names[] = {"x"};
    struct oc_buf xb = {OC_F32, OC_SHAPE(N), xs};
    struct oc_exec *ex = run_compiled(g, names, &xb, 1);
    struct oc_err err = {0};
    struct oc_buf y[3];
    cr_assert_eq(oc_exec_get(ex, "e_negabs", &y[0], &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_get(ex, "e_laplace", &y[1], &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_get(ex, "e_submax", &y[2], &err), OC_OK, "%s", err.msg);
    double worst[3] = {0, 0, 0};
    int at[3] = {-1, -1, -1};
    for (int j = 0; j < N; j++) {
        int row = j / C;
        float mx = -INFINITY;
        int nan = 0;
        for (int c = 0; c < C; c++) {
            float v = xs[row * C + c];
            nan |= isnan(v);
            if (v > mx) mx = v;
        }
        float args[3] = {-fabsf(xs[j]), fabsf(xs[j]) * -2.5f, nan ? NAN : xs[j] - mx};
        for (int k = 0; k < 3; k++) {
            double d = ulps(((const float *)y[k].data)[j], (float)exp((double)args[k]));
            if (d > worst[k]) worst[k] = d, at[k] = j;
        }
    }
    static const char *what[] = {"exp(-|x|)", "exp(-2.5 |x|)", "exp(x - max)"};
    for (int k = 0; k < 3; k++) {
        cr_expect_leq(worst[k], 2, "%s: %.0f ulp at x = %.9g (got %.9g)", what[k], worst[k],
                      at[k] >= 0 ? xs[at[k]] : 0.0, at[k] >= 0 ? ((const float *)y[k].data)[at[k]] : 0.0);
        oc_buf_free(&y[k]);
    }
    oc_exec_free(ex);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- products */

/* The shapes of MMCE's backward pair kernel: one product in several
 * orders, signs of a - b and b - a, sums over either axis of [B,B]. */
static struct oc_graph *pair_products(int B)
{
    struct oc_graph *g = oc_graph_new("pair_products");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(B));
    oc_tensor w = oc_input(g, "w", OC_F32, OC_SHAPE(B));
    oc_tensor k = oc_input(g, "k", OC_F32, OC_SCALAR);
    struct oc_shape sq = OC_SHAPE(B, B);
    oc_tensor ai = oc_broadcast(g, oc_reshape(g, a, OC_SHAPE(B, 1)), sq);
    oc_tensor aj = oc_broadcast(g, oc_reshape(g, a, OC_SHAPE(1, B)), sq);
    oc_tensor wi = oc_broadcast(g, oc_reshape(g, w, OC_SHAPE(B, 1)), sq);
    oc_tensor wj = oc_broadcast(g, oc_reshape(g, w, OC_SHAPE(1, B)), sq);
    oc_tensor kk = oc_broadcast(g, oc_reshape(g, k, OC_SHAPE(1, 1)), sq);
    oc_tensor d = oc_sub(g, ai, aj), d2 = oc_sub(g, aj, ai);
    oc_tensor e = oc_exp(g, oc_scale(g, oc_abs(g, d2), -2.5));
    oc_tensor p1 = oc_mul(g, kk, oc_mul(g, wi, e));
    oc_tensor p2 = oc_mul(g, oc_mul(g, kk, wi), e);
    oc_tensor p3 = oc_neg(g, oc_mul(g, oc_scale(g, oc_mul(g, oc_mul(g, oc_mul(g, kk, wj), wi), e), -2.5),
                                    oc_sign(g, d)));
    oc_tensor p4 = oc_mul(g, oc_scale(g, oc_mul(g, oc_mul(g, oc_mul(g, kk, wi), wj), e), -2.5), oc_sign(g, d2));
    oc_output(g, "s1", oc_sum(g, p1, 1u, 0));
    oc_output(g, "s2", oc_sum(g, p2, 1u, 0));
    oc_output(g, "s3", oc_sum(g, p3, 1u, 0));
    oc_output(g, "s4", oc_sum(g, p4, 1u, 0));
    oc_output(g, "t1", oc_sum(g, p1, 2u, 0));
    oc_output(g, "t3", oc_sum(g, oc_mul(g, p3, p4), 2u, 0));
    return g;
}

static void pair_inputs(int B, struct oc_buf *v, int specials)
{
    v[0] = oc_test_random(OC_F32, OC_SHAPE(B), 11, 0, 1);
    v[1] = oc_test_random(OC_F32, OC_SHAPE(B), 12, -1, 1);
    v[2] = oc_test_random(OC_F32, OC_SCALAR, 13, 0.5, 2);
    if (specials) {
        oc_buf_set(&v[0], 3, NAN);
        oc_buf_set(&v[0], 5, oc_buf_get(&v[0], 6)); /* a tie: sign(0) */
        oc_buf_set(&v[1], 7, INFINITY);
        oc_buf_set(&v[1], 9, 0.0);
    }
}

Test(llvm_speed, reassociated_products_match_the_interpreter)
{
    enum { B = 70 };
    struct oc_graph *g = pair_products(B);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    const char *names[] = {"a", "w", "k"};
    for (int sp = 0; sp < 2; sp++) {
        struct oc_buf v[3];
        pair_inputs(B, v, sp);
        cr_expect(matches_interpreter(g, names, v, 3, 1e-4, 1e-5, 0), "specials %d", sp);
        for (int i = 0; i < 3; i++) oc_buf_free(&v[i]);
    }
    oc_graph_free(g);
}

Test(llvm_speed, reassociation_off_gives_the_same_sums)
{
    enum { B = 70 };
    struct oc_graph *g = pair_products(B);
    const char *names[] = {"a", "w", "k"};
    struct oc_buf v[3];
    pair_inputs(B, v, 0);
    struct oc_exec *on = run_compiled(g, names, v, 3);
    setenv("OC_REASSOC", "0", 1);
    struct oc_exec *off = run_compiled_in(g, names, v, 3, 1);
    unsetenv("OC_REASSOC");
    for (int i = 0; i < g->noutputs; i++) {
        struct oc_err err = {0};
        struct oc_buf a, b;
        cr_assert_eq(oc_exec_get(on, g->outputs[i].name, &a, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_get(off, g->outputs[i].name, &b, &err), OC_OK, "%s", err.msg);
        cr_expect(oc_test_allclose(g->outputs[i].name, &a, &b, 1e-5, 1e-6));
        oc_buf_free(&a);
        oc_buf_free(&b);
    }
    oc_exec_free(on);
    oc_exec_free(off);
    for (int i = 0; i < 3; i++) oc_buf_free(&v[i]);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- short rows */

/* Softmax, log-softmax (cross-entropy's), max, argmax and a sum over rows
 * of 10 classes, with a NaN row, ties, +-inf, and row counts that leave a
 * partial block of 32. */
static struct oc_graph *short_rows(int R, struct oc_buf *x, struct oc_buf *y)
{
    struct oc_graph *g = oc_graph_new("short_rows");
    oc_tensor xt = oc_input(g, "x", OC_F32, OC_SHAPE(R, 10));
    oc_tensor yt = oc_input(g, "y", OC_I32, OC_SHAPE(R));
    oc_output(g, "softmax", oc_softmax(g, xt, 1));
    oc_output(g, "max", oc_reduce_max(g, xt, 2u, 0));
    oc_output(g, "argmax", oc_argmax(g, xt, 1, 0));
    oc_output(g, "sumexp", oc_sum(g, oc_exp(g, xt), 2u, 0));
    oc_output(g, "ce", oc_cross_entropy(g, xt, yt));
    *x = oc_test_random(OC_F32, OC_SHAPE(R, 10), 21, -3, 3);
    *y = oc_test_random(OC_I32, OC_SHAPE(R), 22, 0, 10);
    oc_buf_set(x, 10 * 1 + 4, NAN);
    oc_buf_set(x, 10 * 2 + 3, 5.0), oc_buf_set(x, 10 * 2 + 7, 5.0); /* tie: the first wins */
    oc_buf_set(x, 10 * 3 + 0, -INFINITY);
    oc_buf_set(x, 10 * (R - 1) + 9, 40.0);
    return g;
}

Test(llvm_speed, short_rows_run_in_blocks_and_match_the_interpreter)
{
    static const int rows[] = {37, 100, 1000};
    for (int t = 0; t < 3; t++) {
        struct oc_buf v[2];
        struct oc_graph *g = short_rows(rows[t], &v[0], &v[1]);
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
        const char *names[] = {"x", "y"};
        /* the ce output is a mean over rows that hold NaN: NaN both ways */
        cr_expect(matches_interpreter(g, names, v, 2, 1e-5, 1e-6, 0), "%d rows", rows[t]);
        struct oc_exec *ex = run_compiled(g, names, v, 2);
        const struct oc_kprog *p = oc_exec_program(ex);
        int blocked = 0;
        for (int i = 0; i < p->nkernel; i++) blocked += oc_llvm_row_block(p->kernel[i]) == OC_LLVM_ROW_BLOCK;
        if (rows[t] >= 64) /* fewer rows stay one at a time */
            cr_expect_geq(blocked, 1, "a row kernel over 10 classes runs 32 rows at a time");
        oc_exec_free(ex);
        /* switched off: one row at a time, the same values */
        setenv("OC_ROW_BLOCK_SHORT", "0", 1);
        setenv("OC_TREE_SUMS", "0", 1);
        setenv("OC_STAGE_CACHE", "0", 1);
        ex = run_compiled_in(g, names, v, 2, 1);
        p = oc_exec_program(ex);
        for (int i = 0; i < p->nkernel; i++)
            cr_expect_eq(oc_llvm_row_block(p->kernel[i]), 0, "kernel %s", p->kernel[i]->name);
        oc_exec_free(ex);
        cr_expect(matches_interpreter(g, names, v, 2, 1e-5, 1e-6, 1), "%d rows, fast paths off", rows[t]);
        unsetenv("OC_ROW_BLOCK_SHORT");
        unsetenv("OC_TREE_SUMS");
        unsetenv("OC_STAGE_CACHE");
        oc_buf_free(&v[0]);
        oc_buf_free(&v[1]);
        oc_graph_free(g);
    }
}

/* Sums whose result is exactly known: rows of 10 and of 1000 small
 * integers (exact in f32 in any order), -0.0 and infinities. */
Test(llvm_speed, tree_sums_are_exact_where_every_order_is)
{
    enum { R = 64 };
    struct oc_graph *g = oc_graph_new("sums");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(R, 10));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(4, 1000));
    oc_output(g, "sa", oc_sum(g, a, 2u, 0));
    oc_output(g, "sb", oc_sum(g, b, 2u, 0));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_buf v[2];
    struct oc_shape sa = OC_SHAPE(R, 10), sb = OC_SHAPE(4, 1000);
    cr_assert_eq(oc_buf_alloc(&v[0], OC_F32, &sa), OC_OK);
    cr_assert_eq(oc_buf_alloc(&v[1], OC_F32, &sb), OC_OK);
    for (int i = 0; i < R * 10; i++) oc_buf_set(&v[0], i, (double)((i * 7) % 13) - 6);
    for (int i = 0; i < 4000; i++) oc_buf_set(&v[1], i, (double)((i * 5) % 9) - 4);
    oc_buf_set(&v[0], 10 * 5 + 2, INFINITY);
    oc_buf_set(&v[0], 10 * 6 + 2, INFINITY), oc_buf_set(&v[0], 10 * 6 + 8, -INFINITY);
    for (int c = 0; c < 10; c++) oc_buf_set(&v[0], 10 * 7 + c, -0.0);
    const char *names[] = {"a", "b"};
    cr_expect(matches_interpreter(g, names, v, 2, 0, 0, 0));
    oc_buf_free(&v[0]);
    oc_buf_free(&v[1]);
    oc_graph_free(g);
}

/* The MMCE head, forward and backward, over 10 classes: the softmax,
 * confidence and argmax kernel and the gradient's kernel run in row
 * blocks with values kept across stages, next to rebuilt products; once
 * with every fast path and once with the stage cache off. */
Test(llvm_speed, mmce_head_in_row_blocks_matches_the_interpreter)
{
    enum { B = 100 };
    struct oc_graph *g = oc_graph_new("mmce");
    oc_tensor logits = oc_input(g, "logits", OC_F32, OC_SHAPE(B, 10));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(B));
    oc_tensor p = oc_softmax(g, logits, 1);
    oc_tensor conf = oc_reduce_max(g, p, 2u, 0);
    oc_tensor correct = oc_cast(g, oc_eq(g, oc_argmax(g, p, 1, 0), labels), OC_F32);
    oc_tensor loss = oc_mmce_weighted(g, conf, correct, 0.4);
    int gl;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, &logits.id, 1, &gl, &err), OC_OK, "%s", err.msg);
    oc_output(g, "loss", loss);
    oc_output(g, "grad", (oc_tensor){gl});
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_buf v[2];
    v[0] = oc_test_random(OC_F32, OC_SHAPE(B, 10), 31, -3, 3);
    v[1] = oc_test_random(OC_I32, OC_SHAPE(B), 32, 0, 10);
    const char *names[] = {"logits", "labels"};
    cr_expect(matches_interpreter(g, names, v, 2, 1e-3, 1e-4, 0));
    setenv("OC_STAGE_CACHE", "0", 1);
    cr_expect(matches_interpreter(g, names, v, 2, 1e-3, 1e-4, 1), "stage cache off");
    unsetenv("OC_STAGE_CACHE");
    oc_buf_free(&v[0]);
    oc_buf_free(&v[1]);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- column sums, divisions */

/* Sums over the batch of [N, R, C] tensors (VIBY's priors: several row
 * axes, blocks of 32 rows decoded per line of C when C is a multiple of
 * 32, row by row otherwise) with divisions by a per-row value (one
 * reciprocal per row and a correction step, fast_div) that takes 0, -0,
 * inf, NaN, a denormal and a huge value; the f32 interpreter models the
 * rounding op by op. */
Test(llvm_speed, column_sums_with_per_row_divisors_match_the_interpreter)
{
    enum { N = 37 };
    struct oc_graph *g = oc_graph_new("columns");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(N, 4, 64));
    oc_tensor y = oc_input(g, "y", OC_F32, OC_SHAPE(N, 4, 64));
    oc_tensor v = oc_input(g, "v", OC_F32, OC_SHAPE(4, 64));
    oc_tensor z = oc_input(g, "z", OC_F32, OC_SHAPE(N, 3, 40));
    oc_tensor u = oc_input(g, "u", OC_F32, OC_SHAPE(3, 40));
    oc_tensor vb = oc_broadcast(g, oc_reshape(g, v, OC_SHAPE(1, 4, 64)), OC_SHAPE(N, 4, 64));
    oc_tensor ub = oc_broadcast(g, oc_reshape(g, u, OC_SHAPE(1, 3, 40)), OC_SHAPE(N, 3, 40));
    oc_output(g, "a", oc_sum(g, oc_div(g, oc_mul(g, x, y), vb), 1u, 0));
    oc_output(g, "b", oc_sum(g, oc_add(g, oc_div(g, x, vb), oc_div(g, y, vb)), 1u, 0));
    oc_output(g, "c", oc_sum(g, oc_div(g, z, ub), 1u, 0));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_buf b[5];
    b[0] = oc_test_random(OC_F32, OC_SHAPE(N, 4, 64), 41, -1, 1);
    b[1] = oc_test_random(OC_F32, OC_SHAPE(N, 4, 64), 42, -1, 1);
    b[2] = oc_test_random(OC_F32, OC_SHAPE(4, 64), 43, 0.5, 2);
    b[3] = oc_test_random(OC_F32, OC_SHAPE(N, 3, 40), 44, -1, 1);
    b[4] = oc_test_random(OC_F32, OC_SHAPE(3, 40), 45, -2, -0.5);
    static const double special[] = {0.0, -0.0, INFINITY, NAN, 1e-40, 3e38, -1e-39};
    for (int i = 0; i < 7; i++) {
        oc_buf_set(&b[2], 1 + 9 * i, special[i]);
        oc_buf_set(&b[4], 2 + 5 * i, special[i]);
    }
    const char *names[] = {"x", "y", "v", "z", "u"};
    struct oc_test_bind binds[5];
    for (int i = 0; i < 5; i++) binds[i] = (struct oc_test_bind){names[i], &b[i]};
    /* sums of 37 terms of either sign: absolute tolerance for cancellation */
    static const char *fast[] = {NULL, "0"};
    struct oc_buf first[3];
    for (int f = 0; f < 2; f++) {
        if (fast[f]) setenv("OC_FAST_DIV", fast[f], 1);
        struct oc_exec *ex = run_compiled_in(g, names, b, 5, f);
        for (int o = 0; o < g->noutputs; o++) {
            struct oc_err err = {0};
            struct oc_buf got, want = oc_test_run(g, 0, binds, 5, g->outputs[o].name);
            cr_assert_eq(oc_exec_get(ex, g->outputs[o].name, &got, &err), OC_OK, "%s", err.msg);
            cr_expect(oc_test_allclose(g->outputs[o].name, &got, &want, 1e-5, 2e-5), "fast division %s",
                      fast[f] ? "off" : "on");
            /* the quotients differ by an ulp at most, the sums' order not at all */
            if (f) cr_expect(oc_test_allclose(g->outputs[o].name, &first[o], &got, 1e-6, 1e-38), "on vs off");
            if (f) oc_buf_free(&first[o]), oc_buf_free(&got);
            else first[o] = got;
            oc_buf_free(&want);
        }
        oc_exec_free(ex);
        unsetenv("OC_FAST_DIV");
    }
    for (int i = 0; i < 5; i++) oc_buf_free(&b[i]);
    oc_graph_free(g);
}
