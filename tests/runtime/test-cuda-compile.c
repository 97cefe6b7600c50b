/* test-cuda-compile.c - every kernel of every graph of the CPU conformance
 * table (tests/runtime/test-conformance.c, fused and unfused, every shape)
 * is generated as CUDA C and compiled by NVRTC for sm_80 and sm_90 (no GPU
 * needed), and ptxas's report shows no local-memory spill or stack frame
 * in any of them (they are all elementwise or row kernels); so do the
 * kernels of split reductions, transposed reductions, MMCE's pairwise
 * sums and in-place BN updates (cuda-graphs.h), which the table's small
 * graphs never produce. The
 * generated text is deterministic.
 *
 * The table is the CPU suite's own: its file is included with Criterion's
 * Test/TestSuite macros turned into unused functions, so this file follows
 * the table as it grows. (Requested: the table moving into a header of its
 * own, tests/runtime/conform-table.h, would make this include plain.) */
#include <criterion/criterion.h>

#include "../../frontend/frontend.h"
#include "cuda-check.h"
#include "cuda-graphs.h"

static void collect_conformance(struct kset *s);

static struct kset all;

static void gather(void)
{
    if (!all.n) collect_conformance(&all);
}

Test(cuda_compile, conformance_kernels_sm80)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    cr_assert_gt(all.n, 50, "the table yields many distinct kernels (%d)", all.n);
    int bad = kset_compile(nv, &all, 0, all.n, "sm_80");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_80 (see stderr)", bad);
    oc_nvrtc_close(nv);
}

Test(cuda_compile, conformance_kernels_sm90)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    int bad = kset_compile(nv, &all, 0, all.n, "sm_90");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_90 (see stderr)", bad);
    int maps[3] = {0};
    for (int i = 0; i < all.n; i++) maps[all.e[i].map]++;
    cr_expect(maps[OC_CUDA_MAP_THREAD] && maps[OC_CUDA_MAP_WARP] && maps[OC_CUDA_MAP_BLOCK],
              "every mapping is exercised (thread %d, warp %d, block %d)", maps[0], maps[1], maps[2]);
    oc_nvrtc_close(nv);
}

/* Names carry the structural hash and the ops; the text is a function of
 * the kernel's structure alone. */
Test(cuda_compile, names_and_determinism)
{
    gather();
    for (int i = 0; i < all.n; i++) {
        const char *nm = all.e[i].name;
        cr_assert_eq(strncmp(nm, "k_", 2), 0, "%s", nm);
        cr_assert_eq(strspn(nm + 2, "0123456789abcdef"), 16, "%s: 16 hex digits", nm);
        cr_assert(nm[18] == '_' && nm[19], "%s: then the ops", nm);
        char want[128];
        snprintf(want, sizeof want, "extern \"C\" __global__ void __launch_bounds__(%d)\n%s(",
                 OC_CUDA_BLOCK, nm);
        cr_assert(strstr(all.e[i].text, want), "%s: one extern \"C\" __global__ function", nm);
    }
    /* a second collection gives the same text, byte for byte */
    struct kset again = {0};
    collect_conformance(&again);
    cr_assert_eq(again.n, all.n);
    for (int i = 0; i < all.n; i++) {
        cr_assert_eq(again.e[i].hash, all.e[i].hash);
        cr_assert_str_eq(again.e[i].text, all.e[i].text, "%s differs between two emissions",
                         all.e[i].name);
    }
    kset_free(&again);
}

/* Spaces of 2^30 elements and more take 64-bit indices (never allocated
 * here: the kernels are only generated and compiled). */
Test(cuda_compile, sixty_four_bit_indices)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    struct kset s = {0};
    for (int v = 0; v < 4; v++) {
        struct oc_graph *g = oc_graph_new("big");
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(40000, 40000));
        oc_tensor y;
        if (v == 0) y = oc_exp(g, oc_add(g, x, oc_input(g, "z", OC_F32, OC_SHAPE(40000, 40000))));
        else if (v == 1) y = oc_softmax(g, x, 1);
        else if (v == 2) y = oc_sum(g, x, 1u, 0);
        else y = oc_pad(g, x, (const int64_t[]){1, 0}, (const int64_t[]){0, 3}, 0.5);
        oc_output(g, "y", y);
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
        kset_add_graph(&s, g, 1, "big");
        oc_graph_free(g);
    }
    for (int i = 0; i < s.n; i++)
        cr_assert(strstr(s.e[i].text, "64-bit indices") && strstr(s.e[i].text, "long long"), "%s", s.e[i].name);
    int bad = kset_compile(nv, &s, 0, s.n, "sm_90");
    cr_assert_eq(bad, 0);
    kset_free(&s);
    oc_nvrtc_close(nv);
}

/* Split reductions (one-row final sums, partials in extra nodes), square
 * spaces reduced along both axes (one read transposed), MMCE's forward
 * and backward pairwise kernels and BN backward kernels updating gamma in
 * place (a barrier before their row stores): generated (fused) and
 * compiled for sm_80 and sm_90 without spills. */
Test(cuda_compile, fusion_shapes_beyond_the_table)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    struct kset s = {0};
    for (int v = 0; v < CG_COUNT; v++) {
        struct oc_graph *g = cg_build(v);
        cg_check_program(v, g);
        kset_add_graph(&s, g, 1, cg_name(v)); /* unfused: the table's primitives again */
        oc_graph_free(g);
    }
    int maps[3] = {0};
    for (int i = 0; i < s.n; i++) maps[s.e[i].map] += s.e[i].rowk;
    cr_expect(maps[OC_CUDA_MAP_WARP] && maps[OC_CUDA_MAP_BLOCK],
              "row kernels of both group mappings (warp %d, block %d)", maps[1], maps[2]);
    int bad = kset_compile(nv, &s, 0, s.n, "sm_80") + kset_compile(nv, &s, 0, s.n, "sm_90");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems (see stderr)", bad);
    kset_free(&s);
    oc_nvrtc_close(nv);
}

/* ---------------------------------------------------------------- the CPU table */

#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#undef Test
#define Test(suite, name, ...) static void cpu_##suite##_##name(void)
#undef TestSuite
#define TestSuite(...) typedef int cpu_suite_unused
#include "test-conformance.c"

static void collect_conformance(struct kset *s)
{
    make_table();
    for (int i = 0; i < ntable; i++) {
        const struct ccase *cc = &table[i];
        int ns = cc->nshape ? cc->nshape : 1;
        for (int si = 0; si < ns; si++) {
            struct oc_graph *g = oc_graph_new(cc->name);
            cc->build(g, shapes[si], cc->variant);
            cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", cc->name, g->err.msg);
            char tag[128];
            snprintf(tag, sizeof tag, "%s#%d shape %d", cc->name, cc->variant, si);
            for (int fusion = 1; fusion >= 0; fusion--) kset_add_graph(s, g, fusion, tag);
            oc_graph_free(g);
        }
    }
}
