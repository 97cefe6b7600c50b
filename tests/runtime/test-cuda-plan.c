/* test-cuda-plan.c - the GPU library calls as plans (runtime/cuda-blas.c):
 * every matmul flavour and every convolution and adjoint, planned with
 * scratch budgets from "everything at once" down to "one image per chunk",
 * executed on the host with the reference column-major GEMM and the helper
 * index math the GPU kernels are generated from, and compared with the
 * f64 interpreter. This checks cuBLAS's argument mapping (row-major oodc
 * onto column-major cuBLAS), the im2col/col2im/permute layouts and the
 * chunking without a GPU. Needs no CUDA toolkit. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/cuda-impl.h"
#include "../helpers/helpers.h"

/* Plans the one library kernel of g's program, runs it on the host with
 * random operands, compares with the interpreter. */
static void check(struct oc_graph *g, size_t budget, int min_chunks, const char *tag)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", tag, g->err.msg);
    const struct oc_node *n = g->nodes[g->outputs[0].node];
    struct oc_kernel *k = NULL;
    struct oc_arena a = {0};
    k = oc_kir_build_lib(&a, g, n->id, &err);
    cr_assert_not_null(k, "%s: %s", tag, err.msg);
    struct oc_lplan p;
    cr_assert_eq(oc_cuda_plan_lib(k, budget, &p, &err), OC_OK, "%s: %s", tag, err.msg);
    int gemms = 0;
    for (int i = 0; i < p.nstep; i++) gemms += p.step[i].kind == OC_LS_GEMM;
    cr_assert_geq(gemms, min_chunks, "%s: %d GEMM step(s), at least %d expected", tag, gemms, min_chunks);

    struct oc_buf in[2], out;
    struct oc_interp *it = oc_interp_new(g, 1);
    for (int i = 0; i < 2; i++) {
        const struct oc_node *x = g->nodes[n->inputs[i]];
        in[i] = oc_test_random(x->dtype, x->shape, 7 + (uint64_t)i, -1, 1);
        cr_assert_eq(oc_interp_set(it, x->attrs.name, &in[i], &err), OC_OK, "%s", err.msg);
    }
    cr_assert_eq(oc_interp_run(it, 1, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_buf_alloc(&out, n->dtype, &n->shape), 0);
    /* garbage first: every output element must be written */
    memset(out.data, 0x7f, (size_t)oc_shape_numel(&n->shape) * oc_dtype_size(n->dtype));
    void *bufs[3] = {out.data, in[0].data, in[1].data};
    cr_assert_eq(oc_cuda_plan_run_host(&p, bufs, &err), OC_OK, "%s", err.msg);
    int ok = oc_test_allclose(tag, &out, oc_interp_output(it, g->outputs[0].name), 1e-4, 1e-5);
    cr_assert(ok, "%s: the plan's result differs from the interpreter", tag);
    oc_buf_free(&out);
    oc_buf_free(&in[0]);
    oc_buf_free(&in[1]);
    oc_interp_free(it);
    oc_cuda_plan_free(&p);
    oc_arena_free(&a);
}

Test(cuda_plan, matmul_every_transpose_and_batching)
{
    for (int v = 0; v < 16; v++) {
        int ta = v & 1, tb = (v >> 1) & 1, batched = (v >> 2) & 1, f64 = v >> 3;
        int64_t M = 5, K = 7, N = 3, B = 3;
        struct oc_shape as = ta ? OC_SHAPE(K, M) : OC_SHAPE(M, K);
        struct oc_shape bs = tb ? OC_SHAPE(N, K) : OC_SHAPE(K, N);
        if (batched) {
            as = ta ? OC_SHAPE(B, K, M) : OC_SHAPE(B, M, K);
            bs = tb ? OC_SHAPE(B, N, K) : OC_SHAPE(B, K, N);
        }
        enum oc_dtype dt = f64 ? OC_F64 : OC_F32;
        struct oc_graph *g = oc_graph_new("mm");
        oc_output(g, "y", oc_matmul(g, oc_input(g, "a", dt, as), oc_input(g, "b", dt, bs), ta, tb));
        char tag[64];
        snprintf(tag, sizeof tag, "matmul ta=%d tb=%d batched=%d %s", ta, tb, batched, oc_dtype_name(dt));
        check(g, 0, 1, tag);
        oc_graph_free(g);
    }
}

Test(cuda_plan, matmul_with_an_empty_inner_dimension_writes_zeros)
{
    struct oc_graph *g = oc_graph_new("mm0");
    oc_output(g, "y", oc_matmul(g, oc_input(g, "a", OC_F32, OC_SHAPE(4, 0)), oc_input(g, "b", OC_F32, OC_SHAPE(0, 3)), 0, 0));
    check(g, 0, 0, "matmul K=0");
    oc_graph_free(g);
}

/* kernel, stride, pad, size: the shapes of WRN's convolutions and a few odd ones */
static const int cfg[][4] = {{3, 1, 1, 7}, {3, 2, 1, 8}, {1, 1, 0, 5}, {1, 2, 0, 6}, {2, 2, 1, 6}, {3, 2, 0, 9}};

Test(cuda_plan, conv_and_adjoints_for_every_chunking)
{
    /* budgets: the default (one chunk), about two images, one image (clamped) */
    const size_t budgets[] = {0, 2 * 4 * 3 * 9 * 81 + 64, 1};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++)
        for (int which = 0; which < 3; which++)
            for (size_t b = 0; b < 3; b++)
                for (int f64 = 0; f64 < 2; f64++) {
                    const int *k = cfg[c];
                    int64_t N = 5, C = 3, O = 4, H = k[3];
                    int64_t OH = (H + 2 * k[2] - k[0]) / k[1] + 1;
                    enum oc_dtype dt = f64 ? OC_F64 : OC_F32;
                    struct oc_shape xs = OC_SHAPE(N, C, H, H), ws = OC_SHAPE(O, C, k[0], k[0]),
                                    ys = OC_SHAPE(N, O, OH, OH);
                    struct oc_graph *g = oc_graph_new("conv");
                    oc_tensor y;
                    if (which == 0)
                        y = oc_conv2d(g, oc_input(g, "x", dt, xs), oc_input(g, "w", dt, ws), k[1], k[2]);
                    else if (which == 1)
                        y = oc_conv2d_grad_input(g, oc_input(g, "dy", dt, ys), oc_input(g, "w", dt, ws), xs, k[1], k[2]);
                    else
                        y = oc_conv2d_grad_weight(g, oc_input(g, "x", dt, xs), oc_input(g, "dy", dt, ys), ws, k[1], k[2]);
                    oc_output(g, "y", y);
                    int direct = k[0] == 1 && k[1] == 1 && k[2] == 0 && which < 2;
                    int chunks = budgets[b] == 1 && !direct ? (int)N : 1;
                    char tag[128];
                    snprintf(tag, sizeof tag, "%s k%d s%d p%d H%d budget %zu %s",
                             which == 0 ? "conv2d" : which == 1 ? "grad_input" : "grad_weight", k[0], k[1],
                             k[2], k[3], budgets[b], oc_dtype_name(dt));
                    check(g, budgets[b], chunks, tag);
                    oc_graph_free(g);
                }
}

/* The helper source carries the same index math as the host reference. */
Test(cuda_plan, helper_source_is_the_shared_index_math)
{
    const char *src = oc_cuda_lib_source();
    cr_assert(strstr(src, "oc_im2col_src"));
    cr_assert(strstr(src, "oc_col2im_tap"));
    cr_assert(strstr(src, "oc_permute_src"));
    static const char *const names[] = {"oc_im2col_f32", "oc_col2im_f32", "oc_permute_f32",
                                        "oc_im2col_f64", "oc_col2im_f64", "oc_permute_f64"};
    for (int i = 0; i < 6; i++) {
        char want[96];
        snprintf(want, sizeof want, "extern \"C\" __global__ void %s(", names[i]);
        cr_assert(strstr(src, want), "%s", names[i]);
    }
}
