/* test-rng.c - Philox4x32-10 against the Random123 known-answer vectors, the
 * counter/key layout every backend must reproduce, the uniform/normal
 * transforms, and the parameter initializers built on them. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../helpers/helpers.h"

static void check_kat(const uint32_t ctr[4], const uint32_t key[2], const uint32_t want[4])
{
    uint32_t out[4];
    oc_philox4x32(ctr, key, out);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(out[i], want[i], "word %d: got %08x, want %08x", i, out[i], want[i]);
}

/* Random123 kat_vectors, philox4x32_10. */
Test(rng, philox_kat_zeros)
{
    const uint32_t ctr[4] = {0, 0, 0, 0}, key[2] = {0, 0};
    const uint32_t want[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    check_kat(ctr, key, want);
}

Test(rng, philox_kat_ones)
{
    const uint32_t ctr[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
    const uint32_t key[2] = {0xffffffff, 0xffffffff};
    const uint32_t want[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
    check_kat(ctr, key, want);
}

Test(rng, philox_kat_pi)
{
    const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    const uint32_t key[2] = {0xa4093822, 0x299f31d0};
    const uint32_t want[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
    check_kat(ctr, key, want);
}

/* The stream layout is a cross-backend contract: ctr {lo32(i), c, hi32(i), 0},
 * key {lo32(seed), hi32(seed)}, uniform from the top 24 bits of word 0. */
Test(rng, stream_layout)
{
    const uint64_t seed = 0x0123456789abcdefull;
    const uint64_t is[] = {0, 1, 77, 0xffffffffull, 0x100000005ull};
    for (unsigned k = 0; k < sizeof is / sizeof *is; k++) {
        uint64_t i = is[k];
        uint32_t c = 42;
        const uint32_t ctr[4] = {(uint32_t)i, c, (uint32_t)(i >> 32), 0};
        const uint32_t key[2] = {0x89abcdef, 0x01234567};
        uint32_t o[4];
        oc_philox4x32(ctr, key, o);
        double u = oc_rng_uniform_at(seed, c, i);
        cr_expect_eq(u, (double)(o[0] >> 8) / 16777216.0, "uniform at i=%llu",
                     (unsigned long long)i);
        double u1 = ((o[0] >> 8) + 1) / 16777216.0, u2 = (o[1] >> 8) / 16777216.0;
        double z = sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979323846 * u2);
        cr_expect_float_eq(oc_rng_normal_at(seed, c, i), z, 1e-15, "normal at i=%llu",
                           (unsigned long long)i);
    }
    /* Elements past 2^32 do not alias the low ones. */
    cr_expect_neq(oc_rng_uniform_at(seed, 3, 5), oc_rng_uniform_at(seed, 3, 0x100000005ull));
    /* Counter and seed change the stream. */
    cr_expect_neq(oc_rng_uniform_at(seed, 3, 5), oc_rng_uniform_at(seed, 4, 5));
    cr_expect_neq(oc_rng_uniform_at(seed, 3, 5), oc_rng_uniform_at(seed + 1, 3, 5));
    cr_expect_neq(oc_rng_uniform_at(1, 0, 0), oc_rng_uniform_at(1ull << 32, 0, 0));
}

Test(rng, uniform_moments)
{
    const int n = 200000;
    double s = 0, s2 = 0, lo = 1, hi = 0;
    int below_quarter = 0;
    for (int i = 0; i < n; i++) {
        double u = oc_rng_uniform_at(7, 3, (uint64_t)i);
        cr_assert(u >= 0 && u < 1, "uniform %g out of [0,1)", u);
        /* 24-bit grid: u * 2^24 is an integer */
        cr_assert_eq(u * 16777216.0, floor(u * 16777216.0));
        s += u;
        s2 += u * u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        below_quarter += u < 0.25;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    /* standard error of the mean: sqrt(1/12/n) ~ 6.5e-4 */
    cr_expect(fabs(mean - 0.5) < 4e-3, "mean %g", mean);
    cr_expect(fabs(var - 1.0 / 12) < 2e-3, "variance %g", var);
    cr_expect(lo < 1e-3 && hi > 1 - 1e-3, "range [%g, %g]", lo, hi);
    cr_expect(fabs(below_quarter / (double)n - 0.25) < 5e-3, "P(u<1/4) = %g",
              below_quarter / (double)n);
}

Test(rng, normal_moments)
{
    const int n = 200000;
    double s = 0, s2 = 0, s3 = 0, s4 = 0;
    int within1 = 0;
    for (int i = 0; i < n; i++) {
        double z = oc_rng_normal_at(11, 0, (uint64_t)i);
        cr_assert(isfinite(z) && fabs(z) < 5.8, "normal %g", z);
        s += z;
        s2 += z * z;
        s3 += z * z * z;
        s4 += z * z * z * z;
        within1 += fabs(z) < 1;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    cr_expect(fabs(mean) < 0.01, "mean %g", mean);
    cr_expect(fabs(var - 1) < 0.02, "variance %g", var);
    cr_expect(fabs(s3 / n) < 0.05, "third moment %g", s3 / n);
    cr_expect(fabs(s4 / n - 3) < 0.1, "fourth moment %g", s4 / n);
    cr_expect(fabs(within1 / (double)n - 0.6827) < 0.005, "P(|z|<1) = %g", within1 / (double)n);
}

/* ---------------------------------------------------------------- initializers */

static struct oc_buf fill(struct oc_graph *g, oc_tensor t, uint64_t seed)
{
    struct oc_buf b;
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    cr_assert_eq(oc_init_fill(oc_node_of(g, t), seed, &b, &err), OC_OK, "%s", err.msg);
    return b;
}

static void moments(const struct oc_buf *b, double *mean, double *sd)
{
    int64_t n = oc_shape_numel(&b->shape);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = oc_buf_get(b, i);
        s += v;
        s2 += v * v;
    }
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

Test(rng, init_constant_kinds)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor z = oc_param(g, "z", OC_F32, OC_SHAPE(2, 3), OC_INIT_ZEROS, 0, 0);
    oc_tensor o = oc_param(g, "o", OC_F64, OC_SHAPE(4), OC_INIT_ONES, 0, 0);
    oc_tensor c = oc_state(g, "c", OC_F32, OC_SCALAR, OC_INIT_CONST, 0.1);
    oc_tensor k = oc_state(g, "step", OC_I32, OC_SHAPE(2), OC_INIT_CONST, 7);
    struct oc_buf bz = fill(g, z, 1), bo = fill(g, o, 1), bc = fill(g, c, 1), bk = fill(g, k, 1);
    cr_assert_eq(bz.dtype, OC_F32);
    cr_assert_eq(bo.dtype, OC_F64);
    cr_assert_eq(bk.dtype, OC_I32);
    struct oc_shape s23 = OC_SHAPE(2, 3);
    cr_assert(oc_shape_eq(&bz.shape, &s23));
    for (int i = 0; i < 6; i++) cr_expect_eq(oc_buf_get(&bz, i), 0.0);
    for (int i = 0; i < 4; i++) cr_expect_eq(oc_buf_get(&bo, i), 1.0);
    cr_expect_eq(bc.shape.rank, 0);
    cr_expect_eq(oc_buf_get(&bc, 0), (double)0.1f, "f32 const is rounded like float");
    cr_expect_eq(((int32_t *)bk.data)[0], 7);
    cr_expect_eq(((int32_t *)bk.data)[1], 7);
    oc_buf_free(&bz);
    oc_buf_free(&bo);
    oc_buf_free(&bc);
    oc_buf_free(&bk);
    oc_graph_free(g);
}

Test(rng, init_normal_and_uniform)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor n = oc_param(g, "n", OC_F64, OC_SHAPE(100, 100), OC_INIT_NORMAL, 2.0, 0.5);
    oc_tensor u = oc_param(g, "u", OC_F32, OC_SHAPE(100, 100), OC_INIT_UNIFORM, -3.0, 1.0);
    struct oc_buf bn = fill(g, n, 5), bu = fill(g, u, 5);
    double m, sd;
    moments(&bn, &m, &sd);
    cr_expect(fabs(m - 2.0) < 0.02, "normal mean %g", m);
    cr_expect(fabs(sd - 0.5) < 0.02, "normal std %g", sd);
    moments(&bu, &m, &sd);
    cr_expect(fabs(m - -1.0) < 0.05, "uniform mean %g", m);
    cr_expect(fabs(sd - 4.0 / sqrt(12.0)) < 0.03, "uniform std %g", sd);
    for (int i = 0; i < 10000; i++) {
        double v = oc_buf_get(&bu, i);
        cr_assert(v >= -3.0 && v < 1.0, "uniform value %g at %d", v, i);
    }
    /* Element i is exactly the documented draw from the name-keyed stream. */
    uint64_t s = oc_hash64("n", 1, 5 ^ 0x6f6f6463u);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(oc_buf_get(&bn, i), 2.0 + 0.5 * oc_rng_normal_at(s, 0, (uint64_t)i));
    uint64_t su = oc_hash64("u", 1, 5 ^ 0x6f6f6463u);
    cr_expect_eq(oc_buf_get(&bu, 3), (double)(float)(-3.0 + 4.0 * oc_rng_uniform_at(su, 0, 3)));
    oc_buf_free(&bn);
    oc_buf_free(&bu);
    oc_graph_free(g);
}

Test(rng, init_kaiming_fans)
{
    struct oc_graph *g = oc_graph_new("t");
    /* linear [out=64, in=128]: fan_in 128, std 0.125 */
    oc_tensor lin =
        oc_param(g, "fc.weight", OC_F64, OC_SHAPE(64, 128), OC_INIT_KAIMING_NORMAL, 0, 0);
    /* conv [O=32, C=8, 3, 3]: fan_in 72 */
    oc_tensor conv = oc_param(g, "conv.weight", OC_F64, OC_SHAPE(32, 8, 3, 3),
                              OC_INIT_KAIMING_NORMAL, 0, 0);
    /* explicit fan a = 8: std 0.5 */
    oc_tensor fan = oc_param(g, "f", OC_F64, OC_SHAPE(100, 80), OC_INIT_KAIMING_NORMAL, 8, 0);
    /* rank 1: fan = numel = 5000 */
    oc_tensor vec = oc_param(g, "v", OC_F64, OC_SHAPE(5000), OC_INIT_KAIMING_NORMAL, 0, 0);
    struct oc_buf b1 = fill(g, lin, 9), b2 = fill(g, conv, 9), b3 = fill(g, fan, 9),
                  b4 = fill(g, vec, 9);
    double m, sd;
    moments(&b1, &m, &sd);
    cr_expect(fabs(sd - 0.125) < 0.004, "linear kaiming std %g", sd);
    cr_expect(fabs(m) < 0.005, "linear kaiming mean %g", m);
    moments(&b2, &m, &sd);
    cr_expect(fabs(sd - sqrt(2.0 / 72)) < 0.006, "conv kaiming std %g", sd);
    moments(&b3, &m, &sd);
    cr_expect(fabs(sd - 0.5) < 0.015, "explicit-fan kaiming std %g", sd);
    moments(&b4, &m, &sd);
    cr_expect(fabs(sd - sqrt(2.0 / 5000)) < 0.001, "rank-1 kaiming std %g", sd);
    /* exact: element 0 of the linear weight */
    uint64_t s = oc_hash64("fc.weight", 9, 9 ^ 0x6f6f6463u);
    cr_expect_float_eq(oc_buf_get(&b1, 0), 0.125 * oc_rng_normal_at(s, 0, 0), 1e-15);
    oc_buf_free(&b1);
    oc_buf_free(&b2);
    oc_buf_free(&b3);
    oc_buf_free(&b4);
    oc_graph_free(g);
}

/* a + (b-a)u < b in double may round up to b in f32; the range stays [a, b). */
Test(rng, init_uniform_f32_excludes_upper_bound)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor u = oc_param(g, "u", OC_F32, OC_SHAPE(1000), OC_INIT_UNIFORM, 1.0, 1.0000001);
    struct oc_buf b = fill(g, u, 1);
    for (int i = 0; i < 1000; i++) {
        double v = oc_buf_get(&b, i);
        cr_assert(v >= 1.0 && v < 1.0000001, "value %.17g at %d", v, i);
    }
    oc_buf_free(&b);
    oc_graph_free(g);
}

/* Adding a parameter does not change the others; the name and the graph
 * seed both key the stream. */
Test(rng, init_keyed_by_name)
{
    struct oc_graph *g1 = oc_graph_new("a"), *g2 = oc_graph_new("b");
    oc_tensor a1 = oc_param(g1, "w", OC_F32, OC_SHAPE(16), OC_INIT_NORMAL, 0, 1);
    oc_param(g2, "extra", OC_F32, OC_SHAPE(16), OC_INIT_NORMAL, 0, 1);
    oc_tensor a2 = oc_param(g2, "w", OC_F32, OC_SHAPE(16), OC_INIT_NORMAL, 0, 1);
    oc_tensor b2 = oc_param(g2, "w2", OC_F32, OC_SHAPE(16), OC_INIT_NORMAL, 0, 1);
    struct oc_buf x1 = fill(g1, a1, 3), x2 = fill(g2, a2, 3), y2 = fill(g2, b2, 3),
                  z1 = fill(g1, a1, 4);
    cr_expect_eq(memcmp(x1.data, x2.data, 16 * sizeof(float)), 0, "same name, same seed");
    cr_expect_neq(memcmp(x1.data, y2.data, 16 * sizeof(float)), 0, "different names");
    cr_expect_neq(memcmp(x1.data, z1.data, 16 * sizeof(float)), 0, "different seeds");
    oc_buf_free(&x1);
    oc_buf_free(&x2);
    oc_buf_free(&y2);
    oc_buf_free(&z1);
    oc_graph_free(g1);
    oc_graph_free(g2);
}

Test(rng, init_errors)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor k = oc_state(g, "k", OC_I32, OC_SHAPE(3), OC_INIT_NORMAL, 0);
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(3));
    oc_tensor u = oc_param(g, "u", OC_F32, OC_SHAPE(3), OC_INIT_UNIFORM, 1, -1);
    oc_tensor n = oc_param(g, "n", OC_F32, OC_SHAPE(3), OC_INIT_NORMAL, 0, -1);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_buf b;
    struct oc_err err = {0};
    cr_expect_eq(oc_init_fill(oc_node_of(g, k), 1, &b, &err), OC_ERR_DTYPE);
    cr_expect(strstr(err.msg, "\"k\"") && strstr(err.msg, "i32"), "message: %s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_init_fill(oc_node_of(g, x), 1, &b, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "input"), "message: %s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_init_fill(oc_node_of(g, u), 1, &b, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "\"u\""), "message: %s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_init_fill(oc_node_of(g, n), 1, &b, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "\"n\""), "message: %s", err.msg);
    oc_graph_free(g);
}
