/* helpers.h - shared test helpers: random tensors, a tolerance compare that
 * prints the first mismatches, and running a graph through the reference
 * interpreter with named inputs. Finite differences live in gradcheck.h. */
#ifndef OODC_TEST_HELPERS_H
#define OODC_TEST_HELPERS_H

#include "../../frontend/frontend.h"
#include "../../ir/ir.h"

/* Uniform values in [lo, hi) from a seeded generator (i32/u8: integers in
 * [lo, hi)). The caller frees with oc_buf_free. */
struct oc_buf oc_test_random(enum oc_dtype dt, struct oc_shape s, uint64_t seed, double lo,
                             double hi);
/* A buffer from literal values. */
struct oc_buf oc_test_buf(enum oc_dtype dt, struct oc_shape s, const double *values);

/* |got - want| <= atol + rtol * |want| elementwise, shapes equal, NaNs equal
 * only to NaNs. Prints up to 8 mismatches (with `what`) to stderr. */
int oc_test_allclose(const char *what, const struct oc_buf *got, const struct oc_buf *want,
                     double rtol, double atol);

/* Binding of a name to a value for oc_test_run. */
struct oc_test_bind {
    const char *name;
    const struct oc_buf *value;
};
/* Runs g in the interpreter (f64 if f64 != 0) with the bindings and returns
 * a copy of output `out` (caller frees). Fails the current test on error. */
struct oc_buf oc_test_run(const struct oc_graph *g, int f64, const struct oc_test_bind *binds,
                          int nbinds, const char *out);
/* Copies a buffer. */
struct oc_buf oc_test_copy(const struct oc_buf *b);

#endif
