/* test-composites.c - DSL composites against closed forms, evaluated by the
 * reference interpreter in f64 (and f32 where stability is the point). */
#include <criterion/criterion.h>
#include <math.h>

#include "../helpers/helpers.h"

static struct oc_graph *G;
static void setup(void) { G = oc_graph_new("t"); }
static void teardown(void) { oc_graph_free(G); }
TestSuite(composites, .init = setup, .fini = teardown);

#define B1(name, buf) ((struct oc_test_bind){name, &(buf)})

Test(composites, softmax_rows_sum_to_one)
{
    oc_tensor x = oc_input(G, "x", OC_F32, OC_SHAPE(3, 5));
    oc_output(G, "y", oc_softmax(G, x, 1));
    struct oc_buf xv = oc_test_random(OC_F32, OC_SHAPE(3, 5), 1, -5, 5);
    struct oc_test_bind b[] = {B1("x", xv)};
    struct oc_buf y = oc_test_run(G, 1, b, 1, "y");
    for (int r = 0; r < 3; r++) {
        double s = 0, z = 0;
        for (int c = 0; c < 5; c++) z += exp(oc_buf_get(&xv, r * 5 + c));
        for (int c = 0; c < 5; c++) {
            double want = exp(oc_buf_get(&xv, r * 5 + c)) / z;
            cr_assert_float_eq(oc_buf_get(&y, r * 5 + c), want, 1e-12);
            s += oc_buf_get(&y, r * 5 + c);
        }
        cr_assert_float_eq(s, 1.0, 1e-12);
    }
    oc_buf_free(&xv);
    oc_buf_free(&y);
}

Test(composites, log_softmax_stable_at_huge_logits)
{
    oc_tensor x = oc_input(G, "x", OC_F32, OC_SHAPE(2, 3));
    oc_output(G, "y", oc_log_softmax(G, x, 1));
    oc_output(G, "lse", oc_logsumexp(G, x, 1, 0));
    double v[] = {1e4, 1e4, 1e4 - 1, -1e4, 0, 1e4};
    struct oc_buf xv = oc_test_buf(OC_F32, OC_SHAPE(2, 3), v);
    struct oc_test_bind b[] = {B1("x", xv)};
    struct oc_buf y = oc_test_run(G, 0, b, 1, "y");
    struct oc_buf l = oc_test_run(G, 0, b, 1, "lse");
    cr_assert_eq(y.dtype, OC_F32);
    double z0 = log(2 + exp(-1.0));
    double want[] = {-z0, -z0, -1 - z0, -2e4, -1e4, 0};
    for (int i = 0; i < 6; i++) {
        double got = oc_buf_get(&y, i);
        cr_assert(isfinite(got), "element %d not finite", i);
        cr_assert_float_eq(got, want[i], 1e-3, "element %d: %g vs %g", i, got, want[i]);
    }
    cr_assert_float_eq(oc_buf_get(&l, 0), 1e4 + z0, 1e-2);
    cr_assert_float_eq(oc_buf_get(&l, 1), 1e4, 1e-2);
    cr_assert_eq(l.shape.rank, 1);
    oc_buf_free(&xv);
    oc_buf_free(&y);
    oc_buf_free(&l);
}

Test(composites, cross_entropy_matches_hand_computation)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(2, 3));
    oc_tensor t = oc_input(G, "t", OC_I32, OC_SHAPE(2));
    oc_output(G, "ce", oc_cross_entropy(G, x, t));
    double xs[] = {1, 2, 3, 0, 0, 0}, ts[] = {2, 0};
    struct oc_buf xv = oc_test_buf(OC_F64, OC_SHAPE(2, 3), xs);
    struct oc_buf tv = oc_test_buf(OC_I32, OC_SHAPE(2), ts);
    struct oc_test_bind b[] = {B1("x", xv), B1("t", tv)};
    struct oc_buf ce = oc_test_run(G, 1, b, 2, "ce");
    double l0 = -(3 - log(exp(1) + exp(2) + exp(3))), l1 = log(3.0);
    cr_assert_eq(ce.shape.rank, 0);
    cr_assert_float_eq(oc_buf_get(&ce, 0), (l0 + l1) / 2, 1e-12);
    oc_buf_free(&xv);
    oc_buf_free(&tv);
    oc_buf_free(&ce);
}

Test(composites, sigmoid_bce_weights_negative_terms)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(2, 2));
    oc_tensor t = oc_input(G, "t", OC_F64, OC_SHAPE(2, 2));
    oc_output(G, "l", oc_sigmoid_bce(G, x, t, 0.05));
    double xs[] = {0.5, -2, 40, -40}, ts[] = {1, 0, 0, 1};
    struct oc_buf xv = oc_test_buf(OC_F64, OC_SHAPE(2, 2), xs);
    struct oc_buf tv = oc_test_buf(OC_F64, OC_SHAPE(2, 2), ts);
    struct oc_test_bind b[] = {B1("x", xv), B1("t", tv)};
    struct oc_buf l = oc_test_run(G, 1, b, 2, "l");
    double sig0 = 1 / (1 + exp(-0.5)), sig1 = 1 / (1 + exp(2.0));
    double row0 = -log(sig0) - 0.05 * log(1 - sig1);
    /* log(1 - sigmoid(40)) = -softplus(40) ~ -40; -log sigmoid(-40) ~ 40 */
    double row1 = 0.05 * (40 + log1p(exp(-40))) + (40 + log1p(exp(-40)));
    cr_assert_float_eq(oc_buf_get(&l, 0), (row0 + row1) / 2, 1e-12);
    oc_buf_free(&xv);
    oc_buf_free(&tv);
    oc_buf_free(&l);
}

Test(composites, mean_variance_global_avg_pool)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(2, 3, 2, 2));
    oc_output(G, "m", oc_mean(G, x, 2u | 4u | 8u, 0));
    oc_output(G, "v", oc_variance(G, x, 2u | 4u | 8u, 0));
    oc_output(G, "p", oc_global_avg_pool(G, x));
    struct oc_buf xv = oc_test_random(OC_F64, OC_SHAPE(2, 3, 2, 2), 3, -1, 1);
    struct oc_test_bind b[] = {B1("x", xv)};
    struct oc_buf m = oc_test_run(G, 1, b, 1, "m"), v = oc_test_run(G, 1, b, 1, "v"),
                  p = oc_test_run(G, 1, b, 1, "p");
    cr_assert_eq(m.shape.rank, 1);
    cr_assert_eq(p.shape.rank, 2);
    cr_assert_eq(p.shape.dim[1], 3);
    for (int n = 0; n < 2; n++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < 12; i++) s += oc_buf_get(&xv, n * 12 + i);
        s /= 12;
        for (int i = 0; i < 12; i++) s2 += pow(oc_buf_get(&xv, n * 12 + i) - s, 2);
        cr_assert_float_eq(oc_buf_get(&m, n), s, 1e-12);
        cr_assert_float_eq(oc_buf_get(&v, n), s2 / 12, 1e-12);
        for (int c = 0; c < 3; c++) {
            double q = 0;
            for (int i = 0; i < 4; i++) q += oc_buf_get(&xv, n * 12 + c * 4 + i);
            cr_assert_float_eq(oc_buf_get(&p, n * 3 + c), q / 4, 1e-12);
        }
    }
    oc_buf_free(&xv);
    oc_buf_free(&m);
    oc_buf_free(&v);
    oc_buf_free(&p);
}

Test(composites, kl_diag_gaussian_closed_form)
{
    oc_tensor mq = oc_input(G, "mq", OC_F64, OC_SHAPE(2, 3));
    oc_tensor sq = oc_input(G, "sq", OC_F64, OC_SHAPE(2, 3));
    oc_tensor mp = oc_input(G, "mp", OC_F64, OC_SHAPE(3)); /* broadcast over rows */
    oc_tensor sp = oc_input(G, "sp", OC_F64, OC_SHAPE(3));
    oc_output(G, "kl", oc_kl_diag_gaussian(G, mq, sq, mp, sp));
    struct oc_buf a = oc_test_random(OC_F64, OC_SHAPE(2, 3), 1, -1, 1),
                  b = oc_test_random(OC_F64, OC_SHAPE(2, 3), 2, 0.5, 2),
                  c = oc_test_random(OC_F64, OC_SHAPE(3), 3, -1, 1),
                  d = oc_test_random(OC_F64, OC_SHAPE(3), 4, 0.5, 2);
    struct oc_test_bind bb[] = {B1("mq", a), B1("sq", b), B1("mp", c), B1("sp", d)};
    struct oc_buf kl = oc_test_run(G, 1, bb, 4, "kl");
    cr_assert_eq(kl.shape.rank, 1);
    for (int r = 0; r < 2; r++) {
        double want = 0;
        for (int j = 0; j < 3; j++) {
            double m1 = oc_buf_get(&a, r * 3 + j), s1 = oc_buf_get(&b, r * 3 + j);
            double m2 = oc_buf_get(&c, j), s2 = oc_buf_get(&d, j);
            want += log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5;
        }
        cr_assert_float_eq(oc_buf_get(&kl, r), want, 1e-12);
    }
    oc_buf_free(&a);
    oc_buf_free(&b);
    oc_buf_free(&c);
    oc_buf_free(&d);
    oc_buf_free(&kl);
}

Test(composites, kl_of_identical_gaussians_is_zero)
{
    oc_tensor m = oc_input(G, "m", OC_F64, OC_SHAPE(4));
    oc_tensor s = oc_input(G, "s", OC_F64, OC_SHAPE(4));
    oc_output(G, "kl", oc_kl_diag_gaussian(G, m, s, m, s));
    struct oc_buf a = oc_test_random(OC_F64, OC_SHAPE(4), 5, -3, 3),
                  b = oc_test_random(OC_F64, OC_SHAPE(4), 6, 0.1, 3);
    struct oc_test_bind bb[] = {B1("m", a), B1("s", b)};
    struct oc_buf kl = oc_test_run(G, 1, bb, 2, "kl");
    cr_assert_float_eq(oc_buf_get(&kl, 0), 0.0, 1e-15);
    oc_buf_free(&a);
    oc_buf_free(&b);
    oc_buf_free(&kl);
}

Test(composites, batchnorm_train_normalizes_and_updates_running_stats)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(4, 2, 3, 3));
    oc_output(G, "y", oc_batchnorm_layer(G, "bn", x, 1));
    struct oc_buf xv = oc_test_random(OC_F64, OC_SHAPE(4, 2, 3, 3), 7, -2, 5);
    struct oc_interp *it = oc_interp_new(G, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(G), OC_OK, "%s", G->err.msg);
    cr_assert_eq(oc_interp_set(it, "x", &xv, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(it, 1, &err), OC_OK, "%s", err.msg);
    const struct oc_buf *y = oc_interp_output(it, "y");
    const struct oc_buf *rm = oc_interp_named(it, "bn.running_mean");
    const struct oc_buf *rv = oc_interp_named(it, "bn.running_var");
    for (int c = 0; c < 2; c++) {
        double s = 0, s2 = 0, xm = 0, xq = 0;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 9; i++) {
                double yy = oc_buf_get(y, (n * 2 + c) * 9 + i), xx = oc_buf_get(&xv, (n * 2 + c) * 9 + i);
                s += yy, s2 += yy * yy, xm += xx;
            }
        xm /= 36;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 9; i++) xq += pow(oc_buf_get(&xv, (n * 2 + c) * 9 + i) - xm, 2);
        cr_assert_float_eq(s / 36, 0.0, 1e-12);
        /* variance of the normalized output is var/(var+eps) */
        double var = xq / 36;
        cr_assert_float_eq(s2 / 36, var / (var + 1e-5), 1e-12);
        cr_assert_float_eq(oc_buf_get(rm, c), 0.1 * xm, 1e-12);
        cr_assert_float_eq(oc_buf_get(rv, c), 0.9 + 0.1 * xq / 35, 1e-12);
    }
    oc_interp_free(it);
    oc_buf_free(&xv);
}

Test(composites, batchnorm_eval_uses_running_stats)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(3, 2));
    oc_output(G, "y", oc_batchnorm_layer(G, "bn", x, 0));
    double xs[] = {1, 2, 3, 4, 5, 6}, mu[] = {1, -1}, var[] = {4, 0.25}, ga[] = {2, 3}, be[] = {0.5, -0.5};
    struct oc_buf xv = oc_test_buf(OC_F64, OC_SHAPE(3, 2), xs), m = oc_test_buf(OC_F64, OC_SHAPE(2), mu),
                  v = oc_test_buf(OC_F64, OC_SHAPE(2), var), g = oc_test_buf(OC_F64, OC_SHAPE(2), ga),
                  b = oc_test_buf(OC_F64, OC_SHAPE(2), be);
    struct oc_test_bind bb[] = {B1("x", xv), B1("bn.running_mean", m), B1("bn.running_var", v),
                                B1("bn.weight", g), B1("bn.bias", b)};
    struct oc_buf y = oc_test_run(G, 1, bb, 5, "y");
    for (int i = 0; i < 6; i++) {
        int c = i % 2;
        double want = (xs[i] - mu[c]) / sqrt(var[c] + 1e-5) * ga[c] + be[c];
        cr_assert_float_eq(oc_buf_get(&y, i), want, 1e-12);
    }
    oc_buf_free(&xv), oc_buf_free(&m), oc_buf_free(&v), oc_buf_free(&g), oc_buf_free(&b),
        oc_buf_free(&y);
}

Test(composites, linear_and_conv_bias)
{
    oc_tensor x = oc_input(G, "x", OC_F64, OC_SHAPE(2, 3));
    oc_tensor w = oc_input(G, "w", OC_F64, OC_SHAPE(4, 3));
    oc_tensor b = oc_input(G, "b", OC_F64, OC_SHAPE(4));
    oc_output(G, "y", oc_linear(G, x, w, b));
    oc_tensor im = oc_input(G, "im", OC_F64, OC_SHAPE(1, 1, 3, 3));
    oc_tensor k = oc_input(G, "k", OC_F64, OC_SHAPE(2, 1, 1, 1));
    oc_tensor kb = oc_input(G, "kb", OC_F64, OC_SHAPE(2));
    oc_output(G, "c", oc_conv2d_bias(G, im, k, kb, 1, 0));
    struct oc_buf xv = oc_test_random(OC_F64, OC_SHAPE(2, 3), 1, -1, 1),
                  wv = oc_test_random(OC_F64, OC_SHAPE(4, 3), 2, -1, 1),
                  bv = oc_test_random(OC_F64, OC_SHAPE(4), 3, -1, 1),
                  imv = oc_test_random(OC_F64, OC_SHAPE(1, 1, 3, 3), 4, -1, 1);
    double ks[] = {2, -1}, kbs[] = {0.5, 10};
    struct oc_buf kv = oc_test_buf(OC_F64, OC_SHAPE(2, 1, 1, 1), ks),
                  kbv = oc_test_buf(OC_F64, OC_SHAPE(2), kbs);
    struct oc_test_bind bb[] = {B1("x", xv), B1("w", wv), B1("b", bv), B1("im", imv),
                                B1("k", kv), B1("kb", kbv)};
    struct oc_buf y = oc_test_run(G, 1, bb, 6, "y"), c = oc_test_run(G, 1, bb, 6, "c");
    for (int i = 0; i < 2; i++)
        for (int o = 0; o < 4; o++) {
            double s = oc_buf_get(&bv, o);
            for (int j = 0; j < 3; j++) s += oc_buf_get(&xv, i * 3 + j) * oc_buf_get(&wv, o * 3 + j);
            cr_assert_float_eq(oc_buf_get(&y, i * 4 + o), s, 1e-12);
        }
    for (int o = 0; o < 2; o++)
        for (int p = 0; p < 9; p++)
            cr_assert_float_eq(oc_buf_get(&c, o * 9 + p), ks[o] * oc_buf_get(&imv, p) + kbs[o], 1e-12);
    oc_buf_free(&xv), oc_buf_free(&wv), oc_buf_free(&bv), oc_buf_free(&imv), oc_buf_free(&kv),
        oc_buf_free(&kbv), oc_buf_free(&y), oc_buf_free(&c);
}

/* MMCE_w by its definition (three double sums over correct/wrong pairs). */
static double mmce_direct(const double *r, const double *c, int n, double bw)
{
    double m = 0, w = 0, cc = 0, ww = 0, cw = 0;
    for (int i = 0; i < n; i++) m += c[i], w += 1 - c[i];
    m += 1e-5, w += 1e-5;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double k = exp(-fabs(r[i] - r[j]) / bw);
            if (c[i] && c[j]) cc += (1 - r[i]) * (1 - r[j]) * k;
            if (!c[i] && !c[j]) ww += r[i] * r[j] * k;
            if (c[i] && !c[j]) cw += (1 - r[i]) * r[j] * k;
        }
    return sqrt(cc / (m * m) + ww / (w * w) - 2 * cw / (m * w) + 1e-10);
}

Test(composites, mmce_weighted_matches_definition)
{
    oc_tensor r = oc_input(G, "r", OC_F64, OC_SHAPE(7));
    oc_tensor c = oc_input(G, "c", OC_F64, OC_SHAPE(7));
    oc_output(G, "mmce", oc_mmce_weighted(G, r, c, 0.4));
    double rs[] = {0.9, 0.2, 0.55, 0.99, 0.4, 0.7, 0.1}, cs[] = {1, 0, 1, 1, 0, 0, 1};
    struct oc_buf rv = oc_test_buf(OC_F64, OC_SHAPE(7), rs), cv = oc_test_buf(OC_F64, OC_SHAPE(7), cs);
    struct oc_test_bind bb[] = {B1("r", rv), B1("c", cv)};
    struct oc_buf y = oc_test_run(G, 1, bb, 2, "mmce");
    cr_assert_float_eq(oc_buf_get(&y, 0), mmce_direct(rs, cs, 7, 0.4), 1e-12);
    cr_assert_gt(oc_buf_get(&y, 0), 1e-3);
    oc_buf_free(&rv), oc_buf_free(&cv), oc_buf_free(&y);
}

Test(composites, errors_are_sticky_and_name_the_shapes)
{
    oc_tensor a = oc_input(G, "a", OC_F32, OC_SHAPE(2, 3));
    oc_tensor b = oc_input(G, "b", OC_F32, OC_SHAPE(4, 3));
    oc_tensor s = oc_add(G, a, b);
    cr_assert(!oc_valid(s));
    cr_assert_eq(oc_graph_status(G), OC_ERR_SHAPE);
    cr_assert(strstr(G->err.msg, "[2,3]") && strstr(G->err.msg, "[4,3]"), "%s", G->err.msg);
    /* later builders propagate without replacing the first message */
    char first[1024];
    strcpy(first, G->err.msg);
    oc_tensor t = oc_softmax(G, oc_exp(G, s), 1);
    cr_assert(!oc_valid(t));
    cr_assert_str_eq(G->err.msg, first);
}

Test(composites, dtype_and_rank_errors)
{
    oc_tensor i = oc_input(G, "i", OC_I32, OC_SHAPE(3));
    cr_assert(!oc_valid(oc_exp(G, i)));
    cr_assert_eq(oc_graph_status(G), OC_ERR_DTYPE);
    cr_assert(strstr(G->err.msg, "exp"), "%s", G->err.msg);
}

Test(composites, empty_reductions_rejected)
{
    oc_tensor x = oc_input(G, "x", OC_F32, OC_SHAPE(0, 3));
    cr_assert(!oc_valid(oc_sum(G, x, 1u, 0)));
    cr_assert_eq(oc_graph_status(G), OC_ERR_SHAPE);
    cr_assert(strstr(G->err.msg, "empty"), "%s", G->err.msg);
}

Test(composites, no_axes_rejected)
{
    oc_tensor x = oc_input(G, "x", OC_F32, OC_SHAPE(2, 3));
    cr_assert(!oc_valid(oc_sum(G, x, 0u, 0)));
    cr_assert_eq(oc_graph_status(G), OC_ERR_SHAPE);
}
