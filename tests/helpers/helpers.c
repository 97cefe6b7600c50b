/* helpers.c - shared test helpers (see helpers.h). */
#include "helpers.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

struct oc_buf oc_test_random(enum oc_dtype dt, struct oc_shape s, uint64_t seed, double lo,
                             double hi)
{
    struct oc_buf b;
    cr_assert_eq(oc_buf_alloc(&b, dt, &s), OC_OK);
    uint64_t st = seed * 7919 + 17;
    int64_t n = oc_shape_numel(&s);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix(&st) >> 11) * 0x1.0p-53;
        double v = lo + (hi - lo) * u;
        if (!oc_dtype_is_float(dt)) v = floor(v);
        oc_buf_set(&b, i, v);
    }
    return b;
}

struct oc_buf oc_test_buf(enum oc_dtype dt, struct oc_shape s, const double *values)
{
    struct oc_buf b;
    cr_assert_eq(oc_buf_alloc(&b, dt, &s), OC_OK);
    int64_t n = oc_shape_numel(&s);
    for (int64_t i = 0; i < n; i++) oc_buf_set(&b, i, values[i]);
    return b;
}

struct oc_buf oc_test_copy(const struct oc_buf *b)
{
    struct oc_buf c;
    cr_assert_eq(oc_buf_alloc(&c, b->dtype, &b->shape), OC_OK);
    memcpy(c.data, b->data, (size_t)oc_shape_numel(&b->shape) * oc_dtype_size(b->dtype));
    return c;
}

int oc_test_allclose(const char *what, const struct oc_buf *got, const struct oc_buf *want,
                     double rtol, double atol)
{
    char s1[128], s2[128];
    if (!oc_shape_eq(&got->shape, &want->shape)) {
        fprintf(stderr, "%s: shape %s, expected %s\n", what, oc_shape_str(&got->shape, s1, 128),
                oc_shape_str(&want->shape, s2, 128));
        return 0;
    }
    int64_t n = oc_shape_numel(&got->shape), bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = oc_buf_get(got, i), b = oc_buf_get(want, i);
        int ok = (isnan(a) && isnan(b)) || (a == b) || fabs(a - b) <= atol + rtol * fabs(b);
        if (!ok) {
            if (bad < 8)
                fprintf(stderr, "%s: element %lld: got %.17g, expected %.17g (diff %.3g)\n", what,
                        (long long)i, a, b, fabs(a - b));
            bad++;
        }
    }
    if (bad) fprintf(stderr, "%s: %lld of %lld elements differ\n", what, (long long)bad, (long long)n);
    return bad == 0;
}

struct oc_buf oc_test_run(const struct oc_graph *g, int f64, const struct oc_test_bind *binds,
                          int nbinds, const char *out)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "graph build failed: %s", g->err.msg);
    struct oc_interp *it = oc_interp_new(g, f64);
    cr_assert_not_null(it);
    for (int i = 0; i < nbinds; i++)
        cr_assert_eq(oc_interp_set(it, binds[i].name, binds[i].value, &err), OC_OK, "%s",
                     err.msg);
    cr_assert_eq(oc_interp_run(it, 1234, &err), OC_OK, "interp: %s", err.msg);
    const struct oc_buf *v = oc_interp_output(it, out);
    cr_assert_not_null(v, "no output %s", out);
    struct oc_buf c = oc_test_copy(v);
    oc_interp_free(it);
    return c;
}
