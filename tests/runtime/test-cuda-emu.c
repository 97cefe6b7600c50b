/* test-cuda-emu.c - the CPU backend's conformance table through the CUDA
 * executor on the host emulation of the device (runtime/cuda-emu.c): the
 * generated CUDA C of every kernel, compiled as host C++ and run with one
 * fiber per GPU thread (warp shuffles and __syncthreads are real barriers),
 * the library calls through their cuBLAS plans (reference GEMM) and the
 * im2col/col2im helper kernels, the executor's buffers, snapshots and
 * assigns - all compared with the f64 interpreter; then larger shapes, a
 * training step, and the kernels the table's small shapes never produce
 * (cuda-graphs.h: split reductions, whose partials are nodes fusion added,
 * transposed reductions, MMCE over a batch of 300 and its gradient, BN
 * parameters updated in place by the row kernel that reads them). This
 * is the semantic check of the CUDA backend that runs without a GPU;
 * test-cuda-conform.c runs the same on a real one. */
#define CUDA_CONFORM_EMULATED 1
#include "cuda-conform.h"

#define CASE(cat)                                                                                  \
    Test(cuda_emu, cat, .timeout = 300)                                                            \
    {                                                                                              \
        struct oc_cuda *cu = conform_device();                                                     \
        cuda_conform_category(cu, #cat);                                                           \
        oc_cuda_free(cu);                                                                          \
    }
CASE(elementwise)
CASE(layout)
CASE(reductions)
CASE(contractions)
CASE(indexing)
CASE(sources_and_state)
CASE(composites)

/* Shapes beyond the table's: more rows than the grid (grid-stride loops
 * over rows and groups), long rows (block reductions across warps), odd
 * sizes (the 4-wide path's tail), reductions over middle and leading axes,
 * and a small Wide ResNet training step (convolutions through their plans,
 * BN, SGD) - each through the emulated device against the interpreter. */
static void big_graph(struct oc_graph *g, int v)
{
    switch (v) {
    case 0: oc_output(g, "y", oc_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(300, 1500)), 1)); break;
    case 1: oc_output(g, "y", oc_batchnorm_layer(g, "bn", oc_input(g, "x", OC_F32, OC_SHAPE(16, 8, 20, 20)), 1)); break;
    case 2: {
        oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(10007)), b = oc_input(g, "b", OC_F32, OC_SHAPE(10007));
        oc_output(g, "y", oc_add(g, oc_mul(g, oc_sigmoid(g, a), b), oc_scale(g, a, 0.5)));
        break;
    }
    case 3: oc_output(g, "y", oc_argmax(g, oc_cast(g, oc_input(g, "a", OC_I32, OC_SHAPE(3, 5000)), OC_F32), 1, 0)); break;
    case 4: oc_output(g, "y", oc_sum(g, oc_input(g, "x", OC_F32, OC_SHAPE(2000, 3)), 1u, 0)); break;
    case 5: oc_output(g, "y", oc_reduce_max(g, oc_input(g, "x", OC_F32, OC_SHAPE(7, 300, 5)), 2u, 1)); break;
    default: oc_output(g, "y", oc_log_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(40, 3, 700)), 2)); break;
    }
}
#define NBIG 7

#include "../../models/models.h"
#include "../../passes/passes.h"
#include "cuda-graphs.h"

/* WRN-10-1 on 3x8x8 images, batch 4: forward, backward, SGD, BN state. */
static struct oc_graph *small_wrn_step(void)
{
    struct oc_err err = {0};
    struct oc_model_cfg m;
    memset(&m, 0, sizeof m);
    cr_assert_eq(oc_wrn_parse("wrn-10-1", &m.wrn, &err), OC_OK, "%s", err.msg);
    m.wrn.in_ch = 3, m.wrn.size = 8, m.wrn.nclasses = 10;
    m.head = oc_head_find("baseline");
    m.hc = oc_head_cfg_default("baseline", 10);
    struct oc_graph *g = oc_graph_new("wrn-10-1-step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 3, 8, 8));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(4));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, labels, step, 1, &o);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    int n = 0, *wrt = malloc(sizeof(int) * (size_t)g->nnodes), *grad = malloc(sizeof(int) * (size_t)g->nnodes);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OC_OP_PARAM) wrt[n++] = i;
    cr_assert_eq(oc_pass_autodiff(g, o.loss.id, -1, wrt, n, grad, &err), OC_OK, "%s", err.msg);
    oc_tensor *pt = malloc(sizeof *pt * (size_t)n), *gt = malloc(sizeof *gt * (size_t)n);
    for (int i = 0; i < n; i++) pt[i].id = wrt[i], gt[i].id = grad[i];
    oc_sgd_nesterov(g, pt, gt, n, lr, 0.9, 5e-4, NULL);
    oc_output(g, "loss", o.loss);
    free(wrt), free(grad), free(pt), free(gt);
    cr_assert_eq(oc_pass_simplify(&g, &err), OC_OK, "%s", err.msg);
    return g;
}

Test(cuda_emu, larger_shapes_and_a_training_step, .timeout = 600)
{
    struct oc_err err = {0};
    setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
    struct oc_cuda_opts o = oc_cuda_opts_default();
    o.emulate = 1;
    struct oc_cuda *cu = NULL;
    cr_assert_eq(oc_cuda_new(&cu, &o, &err), OC_OK, "%s", err.msg);
    struct oc_graph *gs[NBIG + 1];
    struct kset all = {0};
    for (int v = 0; v <= NBIG; v++) {
        if (v < NBIG) {
            gs[v] = oc_graph_new("big");
            big_graph(gs[v], v);
        } else {
            gs[v] = small_wrn_step();
        }
        cr_assert_eq(oc_graph_status(gs[v]), OC_OK, "%s", gs[v]->err.msg);
        for (int f = 1; f >= 0; f--) kset_add_graph(&all, gs[v], f, "big");
    }
    /* one compile for all of them */
    size_t len = strlen(oc_cuda_prelude()) + 64;
    for (int i = 0; i < all.n; i++) len += strlen(all.e[i].text) + 2;
    char *src = malloc(len);
    size_t p = (size_t)snprintf(src, len, "%s", oc_cuda_prelude());
    for (int i = 0; i < all.n; i++) p += (size_t)snprintf(src + p, len - p, "\n%s", all.e[i].text);
    cr_assert_eq(oc_emu_preload(oc_cuda_emulator(cu), src, &err), OC_OK, "%s", err.msg);
    free(src);
    kset_free(&all);
    int bad = 0;
    for (int v = 0; v <= NBIG; v++) {
        struct conform_opts co = conform_defaults();
        co.runs = 2;
        co.poison = 1;
        co.ihi = v == 3 ? 3 : 10; /* ties for argmax; labels for the WRN */
        co.lo = v == NBIG ? 0 : -2, co.hi = v == NBIG ? 1 : 2;
        if (v == NBIG) co.rtol = 2e-3, co.atol = 2e-4; /* a deep net in f32 against f64 */
        char tag[64];
        snprintf(tag, sizeof tag, "big #%d", v);
        for (int f = 1; f >= 0; f--) bad += !cuda_conform_run(cu, gs[v], tag, f, &co);
        oc_graph_free(gs[v]);
    }
    cr_assert_eq(bad, 0, "%d case(s) differ from the interpreter", bad);
    oc_cuda_free(cu);
}

/* Split reductions (partials in nodes fusion added, one-row final sums),
 * reductions over both axes of a square tensor in one kernel (one read
 * transposed, argmax included), MMCE over a batch of 300 with its
 * gradient (a split pairwise sum, a backward pair kernel over both axes),
 * and BN training steps whose gamma update is written in place by a
 * block- or warp-mapped row kernel that reads gamma for every point:
 * fused and unfused, against the interpreter. */
Test(cuda_emu, fusion_shapes_beyond_the_table, .timeout = 300)
{
    struct oc_err err = {0};
    setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
    struct oc_cuda_opts o = oc_cuda_opts_default();
    o.emulate = 1;
    struct oc_cuda *cu = NULL;
    cr_assert_eq(oc_cuda_new(&cu, &o, &err), OC_OK, "%s", err.msg);
    struct oc_graph *gs[CG_COUNT];
    struct kset all = {0};
    for (int v = 0; v < CG_COUNT; v++) {
        gs[v] = cg_build(v);
        cg_check_program(v, gs[v]);
        for (int f = 1; f >= 0; f--) kset_add_graph(&all, gs[v], f, cg_name(v));
    }
    size_t len = strlen(oc_cuda_prelude()) + 64;
    for (int i = 0; i < all.n; i++) len += strlen(all.e[i].text) + 2;
    char *src = malloc(len);
    cr_assert_not_null(src);
    size_t p = (size_t)snprintf(src, len, "%s", oc_cuda_prelude());
    for (int i = 0; i < all.n; i++) p += (size_t)snprintf(src + p, len - p, "\n%s", all.e[i].text);
    cr_assert_eq(oc_emu_preload(oc_cuda_emulator(cu), src, &err), OC_OK, "%s", err.msg);
    free(src);
    kset_free(&all);
    int bad = 0;
    for (int v = 0; v < CG_COUNT; v++) {
        struct conform_opts co = conform_defaults();
        co.runs = 2;
        co.poison = 1;
        co.ihi = 4; /* labels of 4 classes */
        for (int f = 1; f >= 0; f--) bad += !cuda_conform_run(cu, gs[v], cg_name(v), f, &co);
        oc_graph_free(gs[v]);
    }
    cr_assert_eq(bad, 0, "%d case(s) differ from the interpreter", bad);
    oc_cuda_free(cu);
}

#include "cuda-conform-table.h"
