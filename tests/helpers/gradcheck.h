/* gradcheck.h - checks gradients from oc_pass_autodiff against central
 * finite differences, both evaluated in f64 by the reference interpreter.
 *
 * The graph under test is copied (assign nodes dropped: their writes would
 * change params between the finite-difference runs, and no gradient flows
 * through them anyway); a non-scalar output y is reduced to sum(w * y) with
 * fixed random weights w in +-[0.5, 1.5] so that every element matters.
 * Each requested tensor is checked on all its coordinates, or on a random
 * subset of max_coords of them. A coordinate agrees when
 *   |analytic - numeric| <= atol + noise + rtol * max(|analytic|, |numeric|)
 * where noise = 32 eps max(1, |f(x+h)|, |f(x-h)|) / h is the rounding floor of
 * a central difference in double. Kinks (relu at 0, max ties, abs at 0) must
 * be kept away from the evaluation point by the test's choice of inputs.
 * OC_GRADCHECK_VERBOSE=1 prints a summary line for every passing check too.
 */
#ifndef OODC_TEST_GRADCHECK_H
#define OODC_TEST_GRADCHECK_H

#include "helpers.h"

struct oc_gc_opts {
    double rtol;    /* default 1e-6 */
    double atol;    /* absolute floor, default 1e-10 */
    double h;       /* step: h * max(1, |x|); default 1e-6 */
    int max_coords; /* per tensor; 0: all coordinates */
    uint64_t seed;  /* picks the coordinates and the output weights */
    int quiet;      /* 1: do not print mismatches */
};

struct oc_gc_report {
    int nchecked, nbad;
    int nsignificant; /* coordinates whose gradient is well above the noise (|g| > 100 (atol + noise)) */
    double worst;    /* worst |a-n| / (atol + noise + rtol max(|a|,|n|)); <= 1 passes */
    double worst_rel; /* worst |a-n| / max(|a|,|n|) over coordinates with a nonzero value */
    char where[256]; /* the coordinate of `worst` */
};

/* Defaults as documented in struct oc_gc_opts. */
struct oc_gc_opts oc_gc_defaults(void);

/* Checks d output / d wrt[i] for each named input/param/state wrt[i] of g.
 * binds give values to inputs (and optionally params/state; unbound ones
 * take their initializers with seed 0). Returns 1 when every checked
 * coordinate agrees (rep, when given, holds the statistics); prints the
 * first mismatches to stderr. Setup failures (unknown names, autodiff or
 * interpreter errors) fail the current Criterion test. */
int oc_gradcheck(const struct oc_graph *g, const char *output, const struct oc_test_bind *binds,
                 int nbinds, const char *const *wrt, int nwrt, const struct oc_gc_opts *opts,
                 struct oc_gc_report *rep);

/* Copy of g without assign nodes (uses of an assign read its value);
 * map (may be NULL) receives old id -> new id. Caller frees. */
struct oc_graph *oc_gc_strip_assigns(const struct oc_graph *g, int *map);

/* ---------------------------------------------------------------- building cases */

/* A gradcheck case: a graph under construction plus the values bound to
 * its inputs and the names to differentiate, drawn from its own seeded
 * generator so every case is reproducible. */
enum oc_gc_vals {
    OC_GC_UNIFORM,  /* uniform in [lo, hi) */
    OC_GC_AWAY,     /* random sign times [lo, hi): away from 0 (relu, abs) */
    OC_GC_DISTINCT, /* shuffled multiples of lo: all values at least lo apart */
    OC_GC_BINARY,   /* 0 or 1 */
};

#define OC_GC_MAXV 128
struct oc_gc_case {
    struct oc_graph *g;
    uint64_t rng;
    int n;
    struct oc_buf v[OC_GC_MAXV];
    struct oc_test_bind b[OC_GC_MAXV];
    const char *names[OC_GC_MAXV]; /* to differentiate */
    int nwrt;
    struct oc_gc_opts opts; /* oc_gc_defaults(); tests may adjust */
    struct oc_gc_report last; /* of the last oc_gc_check */
};

void oc_gc_begin(struct oc_gc_case *t, const char *graph_name, uint64_t seed);
uint64_t oc_gc_next(struct oc_gc_case *t);
double oc_gc_uniform(struct oc_gc_case *t, double lo, double hi);
int64_t oc_gc_dim(struct oc_gc_case *t, int64_t lo, int64_t hi); /* in [lo, hi] */
struct oc_shape oc_gc_shape(struct oc_gc_case *t, int rmin, int rmax, int64_t dmin, int64_t dmax);
/* Values for a tensor of shape s, drawn as `how` says (caller frees). */
struct oc_buf oc_gc_values(struct oc_gc_case *t, struct oc_shape s, enum oc_gc_vals how,
                           double lo, double hi);
/* Declares an input (name must outlive the case) and binds values to it;
 * diff != 0 adds it to the tensors to differentiate. */
oc_tensor oc_gc_input(struct oc_gc_case *t, const char *name, enum oc_dtype dt, struct oc_shape s,
                      enum oc_gc_vals how, double lo, double hi, int diff);
/* An f64 input whose values are the previous input's plus a random sign
 * times [lo, hi): separated from it (max/min/compare without ties). */
oc_tensor oc_gc_near(struct oc_gc_case *t, const char *name, struct oc_shape s, double lo,
                     double hi);
/* An i32 input with values in [0, hi). */
oc_tensor oc_gc_index(struct oc_gc_case *t, const char *name, struct oc_shape s, int hi);
/* Binds values to an existing input/param/state of t->g (e.g. declared by a
 * DSL layer) by name; diff as above. */
void oc_gc_bind(struct oc_gc_case *t, const char *name, enum oc_gc_vals how, double lo,
                double hi, int diff);
/* Names y as output "y", checks d y / d every requested tensor with t->opts
 * (seeded from the case), fails the test (cr_expect) on a mismatch, frees
 * the case. Returns 1 when all coordinates agreed. */
int oc_gc_check(struct oc_gc_case *t, oc_tensor y, const char *what);

/* The smallest distance of the evaluation point to a kink: over every relu
 * operand element |x|, every max/min element |a - b|. Tests assert it is
 * well above the finite-difference step, which is how kinks are avoided by
 * construction. (abs is left out: MMCE's |r_i - r_i| = 0 on the diagonal is
 * not a kink any perturbation can cross.) */
double oc_gc_kink_margin(const struct oc_graph *g, const struct oc_test_bind *binds, int nbinds);

#endif
