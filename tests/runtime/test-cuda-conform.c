/* test-cuda-conform.c - the CPU backend's conformance table on a real GPU:
 * every primitive and composite x shapes x {fused, unfused}, compiled for
 * the device (NVRTC, cuBLAS with fp32 math) and compared with the f64
 * interpreter; plus split reductions, transposed reductions, MMCE's
 * pairwise kernels and in-place BN updates (cuda-graphs.h), the kernel
 * cache's second compile of the same program being served without NVRTC,
 * and graph capture matching eager runs.
 * Without a driver or a device every test is skipped with the reason
 * (cr_skip_test); the device context is made inside each test, after
 * Criterion forks. On a GPU machine without Criterion, the same file is
 * built into build/oc-gpu-check against bench/gpu/shim (cmake/cuda.cmake). */
#define CUDA_CONFORM_EMULATED 0
#include "cuda-conform.h"
#include "cuda-graphs.h"

#define CASE(cat)                                                                                  \
    Test(cuda_gpu, cat, .timeout = 300)                                                            \
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

/* Reductions to one value split into per-row partials and a one-row sum,
 * reductions over both axes of a square tensor in one kernel, MMCE over a
 * batch of 300 with its gradient, and BN steps updating gamma in place in
 * the row kernel that reads it (cuda-graphs.h), fused and unfused. */
Test(cuda_gpu, fusion_shapes_beyond_the_table, .timeout = 120)
{
    struct oc_cuda *cu = conform_device();
    int bad = 0;
    for (int v = 0; v < CG_COUNT; v++) {
        struct oc_graph *g = cg_build(v);
        cg_check_program(v, g);
        struct conform_opts co = conform_defaults();
        co.runs = 2;
        co.poison = 1;
        co.ihi = 4; /* labels of 4 classes */
        for (int f = 1; f >= 0; f--) bad += !cuda_conform_run(cu, g, cg_name(v), f, &co);
        oc_graph_free(g);
    }
    cr_assert_eq(bad, 0, "%d case(s) differ from the interpreter", bad);
    oc_cuda_free(cu);
}

/* A softmax + matmul step, eager and captured into a CUDA graph, on the
 * device; and a second context finds the module in the kernel cache. */
Test(cuda_gpu, graph_capture_and_kernel_cache, .timeout = 120)
{
    struct oc_cuda *cu = conform_device();
    struct oc_err err = {0};
    struct oc_graph *g = oc_graph_new("gpu-step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(64, 96));
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(96, 32), OC_INIT_NORMAL, 0, 0.2);
    oc_tensor y = oc_softmax(g, oc_matmul(g, x, w, 0, 0), 1);
    oc_tensor gw = oc_matmul(g, x, oc_scale(g, y, 0.01), 1, 0);
    oc_assign(g, w, oc_sub(g, w, gw));
    oc_output(g, "loss", oc_sum(g, oc_mul(g, y, y), 3u, 0));
    struct oc_buf xb = oc_test_random(OC_F32, OC_SHAPE(64, 96), 9, -1, 1);
    struct oc_buf res[2][3];
    for (int graph = 0; graph < 2; graph++) {
        struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
        o.cu = cu;
        o.graph = graph;
        struct oc_cuda_exec *ex;
        cr_assert_eq(oc_cuda_exec_new(g, &o, &ex, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_cuda_exec_set(ex, "x", &xb, &err), OC_OK, "%s", err.msg);
        for (int r = 0; r < 3; r++) {
            cr_assert_eq(oc_cuda_exec_run(ex, 3, &err), OC_OK, "%s", err.msg);
            cr_assert_eq(oc_cuda_exec_get(ex, "loss", &res[graph][r], &err), OC_OK, "%s", err.msg);
        }
        oc_cuda_exec_free(ex);
    }
    for (int r = 0; r < 3; r++)
        cr_expect(oc_test_allclose("graph replay vs eager", &res[1][r], &res[0][r], 1e-6, 1e-7), "run %d", r);
    for (int r = 0; r < 3; r++) oc_buf_free(&res[0][r]), oc_buf_free(&res[1][r]);
    int compiled, cached, loaded;
    oc_cuda_module_stats(cu, &compiled, &cached, &loaded);
    cr_expect_gt(loaded, 0, "the second executable reuses the loaded module");
    int emulated = oc_cuda_is_emulated(cu);
    oc_cuda_free(cu);

    /* a fresh context: the kernel cache (unless OC_NO_CACHE) serves the module
     * (the emulation has no kernel cache) */
    if (!getenv("OC_NO_CACHE") && !emulated) {
        cu = conform_device();
        struct oc_cuda_exec *ex;
        struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
        o.cu = cu;
        cr_assert_eq(oc_cuda_exec_new(g, &o, &ex, &err), OC_OK, "%s", err.msg);
        oc_cuda_module_stats(cu, &compiled, &cached, &loaded);
        cr_expect_eq(compiled, 0, "no NVRTC compile the second time");
        cr_expect_gt(cached, 0, "served by the kernel cache");
        oc_cuda_exec_free(ex);
        oc_cuda_free(cu);
    }
    oc_buf_free(&xb);
    oc_graph_free(g);
}

#include "cuda-conform-table.h"
