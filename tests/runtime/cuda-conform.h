/* cuda-conform.h - the CPU conformance table (tests/runtime/test-conformance.c)
 * run through the CUDA executor and compared with the f64 interpreter, as
 * conform.h does for the CPU: every case, every shape, fused and unfused,
 * two runs (state carried by assigns).
 *
 * Included by test-cuda-conform.c (a real GPU: skipped with the reason
 * when none is present) and test-cuda-emu.c (the host emulation: the same
 * generated CUDA C compiled as C++, runnable anywhere), which define
 * CUDA_CONFORM_EMULATED to 0 or 1 first. The including file's tests come
 * before the table: the table's file is included last with Criterion's
 * Test/TestSuite turned into unused functions. */
#ifndef OODC_TEST_CUDA_CONFORM_H
#define OODC_TEST_CUDA_CONFORM_H

#include "conform.h"
#include "cuda-check.h"

#include <stdlib.h>

/* conform_run for the CUDA executor on device cu. */
static int cuda_conform_run(struct oc_cuda *cu, const struct oc_graph *g, const char *tag, int fusion,
                            const struct conform_opts *co)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: graph build failed: %s", tag, g->err.msg);
    struct oc_interp *it = oc_interp_new(g, 1);
    struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
    o.fusion = fusion;
    o.cu = cu;
    o.poison = co->poison;
    o.inplace = co->inplace;
    o.graph = 0;
    struct oc_cuda_exec *ex = NULL;
    if (oc_cuda_exec_new(g, &o, &ex, &err)) {
        fprintf(stderr, "%s (fusion %d): cuda compile failed: %s\n", tag, fusion, err.msg);
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
        cr_assert_eq(oc_cuda_exec_set(ex, n->attrs.name, &b, &err), OC_OK, "%s: %s", tag, err.msg);
        oc_buf_free(&b);
    }
    for (int r = 0; r < co->runs && ok; r++) {
        cr_assert_eq(oc_interp_run(it, 42 + (uint64_t)r, &err), OC_OK, "%s: interp: %s", tag, err.msg);
        if (oc_cuda_exec_run(ex, 42 + (uint64_t)r, &err)) {
            fprintf(stderr, "%s (fusion %d): cuda run failed: %s\n", tag, fusion, err.msg);
            ok = 0;
            break;
        }
        char what[256];
        for (int i = 0; i < g->noutputs; i++) {
            struct oc_buf got;
            cr_assert_eq(oc_cuda_exec_get(ex, g->outputs[i].name, &got, &err), OC_OK, "%s", err.msg);
            const struct oc_buf *want = oc_interp_output(it, g->outputs[i].name);
            snprintf(what, sizeof what, "%s cuda fusion=%d run %d output %s", tag, fusion, r,
                     g->outputs[i].name);
            ok &= oc_test_allclose(what, &got, want, co->rtol, co->atol);
            oc_buf_free(&got);
        }
        for (int i = 0; i < g->nnodes; i++) {
            const struct oc_node *n = g->nodes[i];
            if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
            struct oc_buf got;
            cr_assert_eq(oc_cuda_exec_get(ex, n->attrs.name, &got, &err), OC_OK, "%s", err.msg);
            snprintf(what, sizeof what, "%s cuda fusion=%d run %d %s", tag, fusion, r, n->attrs.name);
            ok &= oc_test_allclose(what, &got, oc_interp_named(it, n->attrs.name), co->rtol, co->atol);
            oc_buf_free(&got);
        }
    }
    oc_cuda_exec_free(ex);
    oc_interp_free(it);
    return ok;
}

/* A device for the tests of this file: the host emulation, or the GPU
 * (the test is skipped, with the reason, when there is none). */
static struct oc_cuda *conform_device(void);

/* Runs the table's cases of one category (by the CPU suite's Test name). */
static void cuda_conform_category(struct oc_cuda *cu, const char *category);

#endif
