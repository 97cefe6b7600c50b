/* cuda-conform-table.h - the second half of cuda-conform.h, included at the
 * end of a test file (after its Test definitions): the CPU suite's table
 * (its file included with Criterion's macros neutralized) and the CUDA
 * runs over it. (Requested: the table in a header of its own would make
 * the include plain.) */
#ifndef OODC_TEST_CUDA_CONFORM_TABLE_H
#define OODC_TEST_CUDA_CONFORM_TABLE_H

#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#undef Test
#define Test(suite, name, ...) static void cpu_##suite##_##name(void)
#undef TestSuite
#define TestSuite(...) typedef int cpu_suite_unused
#include "test-conformance.c"

static const struct {
    const char *name;
    enum cat c;
} categories[] = {
    {"elementwise", C_ELEM},  {"layout", C_LAYOUT},   {"reductions", C_REDUCE},
    {"contractions", C_CONTRACT}, {"indexing", C_INDEX}, {"sources_and_state", C_SOURCE},
    {"composites", C_COMPOSITE},
};

static void cuda_conform_category(struct oc_cuda *cu, const char *category)
{
    int ci = -1;
    for (size_t i = 0; i < sizeof categories / sizeof *categories; i++)
        if (!strcmp(categories[i].name, category)) ci = (int)i;
    cr_assert_geq(ci, 0, "unknown category %s", category);
    make_table();
    int bad = 0, total = 0;
    for (int i = 0; i < ntable; i++) {
        const struct ccase *cc = &table[i];
        if (cc->cat != categories[ci].c) continue;
        int ns = cc->nshape ? cc->nshape : 1;
        for (int si = 0; si < ns; si++) {
            struct oc_graph *g = oc_graph_new(cc->name);
            cc->build(g, shapes[si], cc->variant);
            char tag[128];
            snprintf(tag, sizeof tag, "%s#%d shape %d", cc->name, cc->variant, si);
            struct conform_opts co = conform_defaults();
            co.lo = cc->lo, co.hi = cc->hi, co.ihi = cc->ihi;
            co.runs = 2;
            co.poison = 1; /* temps must be written before they are read */
            for (int fusion = 1; fusion >= 0; fusion--) {
                total++;
                if (!cuda_conform_run(cu, g, tag, fusion, &co)) {
                    bad++;
                    cr_expect_fail("%s fusion=%d differs from the interpreter on cuda", tag, fusion);
                }
            }
            oc_graph_free(g);
        }
    }
    cr_expect_eq(bad, 0, "%d of %d cases differ", bad, total);
    cr_expect_gt(total, 0);
}

static void collect_all(struct kset *s)
{
    make_table();
    for (int i = 0; i < ntable; i++) {
        const struct ccase *cc = &table[i];
        int ns = cc->nshape ? cc->nshape : 1;
        for (int si = 0; si < ns; si++) {
            struct oc_graph *g = oc_graph_new(cc->name);
            cc->build(g, shapes[si], cc->variant);
            for (int fusion = 1; fusion >= 0; fusion--) kset_add_graph(s, g, fusion, cc->name);
            oc_graph_free(g);
        }
    }
}

static struct oc_cuda *conform_device(void)
{
    struct oc_err err = {0};
    struct oc_cuda *cu = NULL;
    struct oc_cuda_opts o = oc_cuda_opts_default();
    /* OC_CUDA_EMULATE=1 runs the GPU suite on the host emulation too (how
     * bench/gpu/check.sh's runner is checked on machines without a GPU) */
    if (CUDA_CONFORM_EMULATED || o.emulate) {
        /* one C++ compile of every kernel of the table (kept across the
         * test processes), then each case's module is found in it */
        setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
        o.emulate = 1;
        cr_assert_eq(oc_cuda_new(&cu, &o, &err), OC_OK, "%s", err.msg);
        struct kset all = {0};
        collect_all(&all);
        size_t len = strlen(oc_cuda_prelude()) + 64;
        for (int i = 0; i < all.n; i++) len += strlen(all.e[i].text) + 2;
        char *src = malloc(len);
        cr_assert_not_null(src);
        size_t p = (size_t)snprintf(src, len, "%s", oc_cuda_prelude());
        for (int i = 0; i < all.n; i++) p += (size_t)snprintf(src + p, len - p, "\n%s", all.e[i].text);
        cr_assert_eq(oc_emu_preload(oc_cuda_emulator(cu), src, &err), OC_OK, "%s", err.msg);
        free(src);
        kset_free(&all);
        return cu;
    }
    if (oc_cuda_probe(&err) != OC_OK) cr_skip_test("no CUDA device here: %s", err.msg);
    o.tf32 = 0; /* the table checks fp32 against the interpreter */
    cr_assert_eq(oc_cuda_new(&cu, &o, &err), OC_OK, "%s", err.msg);
    return cu;
}

#endif
