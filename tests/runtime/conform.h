/* conform.h - shared by the runtime test files: run a graph in the f64
 * reference interpreter and through oc_compile on the CPU (fused and
 * unfused), binding the same random inputs, and compare every output and
 * every param/state after the step with f32 tolerance (the first
 * mismatches are printed). */
#ifndef OODC_TEST_CONFORM_H
#define OODC_TEST_CONFORM_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

struct conform_opts {
    double lo, hi;  /* range of random float inputs */
    int ihi;        /* i32/u8 inputs are integers in [0, ihi) */
    double rtol, atol;
    int runs;       /* steps (assigns carry state between them) */
    int poison;     /* NaN-fill the arena before every run */
    int inplace;
};

static inline struct conform_opts conform_defaults(void)
{
    struct conform_opts o = {-2, 2, 4, 2e-4, 2e-5, 1, 0, 1};
    return o;
}

/* Returns 1 if every output and param/state matches. `tag` names the case
 * in messages. fusion selects the compile mode. */
static inline int conform_run(struct oc_rt *rt, const struct oc_graph *g, const char *tag,
                              int fusion, const struct conform_opts *co)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: graph build failed: %s", tag, g->err.msg);
    struct oc_interp *it = oc_interp_new(g, 1);
    struct oc_compile_opts o = oc_compile_defaults();
    o.fusion = fusion;
    o.rt = rt;
    o.poison = co->poison;
    o.inplace = co->inplace;
    struct oc_exec *ex = NULL;
    if (oc_compile(g, "cpu", &o, &ex, &err)) {
        fprintf(stderr, "%s (fusion %d): compile failed: %s\n", tag, fusion, err.msg);
        oc_interp_free(it);
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_INPUT) continue;
        uint64_t seed = 1000 + (uint64_t)i * 77;
        struct oc_buf b = oc_dtype_is_float(n->dtype)
                              ? oc_test_random(n->dtype, n->shape, seed, co->lo, co->hi)
                              : oc_test_random(n->dtype, n->shape, seed, 0, co->ihi);
        cr_assert_eq(oc_interp_set(it, n->attrs.name, &b, &err), OC_OK, "%s: %s", tag, err.msg);
        cr_assert_eq(oc_exec_set(ex, n->attrs.name, &b, &err), OC_OK, "%s: %s", tag, err.msg);
        oc_buf_free(&b);
    }
    for (int r = 0; r < co->runs && ok; r++) {
        cr_assert_eq(oc_interp_run(it, 42 + (uint64_t)r, &err), OC_OK, "%s: interp: %s", tag, err.msg);
        cr_assert_eq(oc_exec_run(ex, 42 + (uint64_t)r, &err), OC_OK, "%s: exec: %s", tag, err.msg);
        char what[256];
        for (int i = 0; i < g->noutputs; i++) {
            struct oc_buf got;
            cr_assert_eq(oc_exec_get(ex, g->outputs[i].name, &got, &err), OC_OK, "%s", err.msg);
            const struct oc_buf *want = oc_interp_output(it, g->outputs[i].name);
            snprintf(what, sizeof what, "%s fusion=%d run %d output %s", tag, fusion, r,
                     g->outputs[i].name);
            ok &= oc_test_allclose(what, &got, want, co->rtol, co->atol);
            oc_buf_free(&got);
        }
        for (int i = 0; i < g->nnodes; i++) {
            const struct oc_node *n = g->nodes[i];
            if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
            struct oc_buf got;
            cr_assert_eq(oc_exec_get(ex, n->attrs.name, &got, &err), OC_OK, "%s", err.msg);
            snprintf(what, sizeof what, "%s fusion=%d run %d %s", tag, fusion, r, n->attrs.name);
            ok &= oc_test_allclose(what, &got, oc_interp_named(it, n->attrs.name), co->rtol,
                                   co->atol);
            oc_buf_free(&got);
        }
    }
    oc_exec_free(ex);
    oc_interp_free(it);
    return ok;
}

#endif
