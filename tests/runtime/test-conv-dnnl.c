/* test-conv-dnnl.c - the two CPU convolution implementations: im2col +
 * OpenBLAS (runtime/cpu-lib.c) and oneDNN (runtime/cpu-dnnl.c). For every
 * case (stride 1/2, pad 0/1, 1x1 and 3x3 and 3x1 kernels, C = 1, odd and
 * non-square sizes, batch 1) the forward convolution and both adjoints run
 * through each implementation called directly (oneDNN on 1 and 2 threads,
 * asserting it really took the kernel) and through oc_compile with OC_CONV
 * forced; each result must match the f64 interpreter, and the two must
 * match each other. Also: OC_CONV parsing and the auto rule's fixed
 * choices. Without oneDNN in the build the oneDNN half checks that
 * OC_CONV=dnnl is a clear compile error instead. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../passes/fuse.h"
#include "../../runtime/cpu-dnnl.h"
#include "../../runtime/cpu-impl.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

struct ccase {
    int N, C, H, W, O, KH, KW, s, p;
};

static const struct ccase cases[] = {
    {2, 3, 8, 8, 4, 3, 3, 1, 1},   /* WRN 3x3 pad 1 */
    {2, 4, 9, 7, 5, 3, 3, 2, 1},   /* stride 2, odd and non-square */
    {1, 1, 5, 5, 3, 3, 3, 1, 0},   /* C = 1, pad 0, batch 1 */
    {3, 6, 8, 8, 4, 1, 1, 1, 0},   /* 1x1 */
    {2, 6, 9, 9, 8, 1, 1, 2, 0},   /* 1x1 stride 2, odd: the last row/column unread */
    {1, 16, 7, 7, 16, 3, 3, 1, 1}, /* batch 1, 7x7 */
    {2, 3, 6, 6, 2, 3, 3, 2, 0},   /* stride 2 pad 0 */
    {2, 5, 10, 6, 7, 3, 3, 2, 1},  /* stride 2, even sizes */
    {1, 4, 6, 5, 3, 3, 1, 1, 1},   /* 3x1 kernel, pad 1 in both dims */
    {2, 8, 5, 5, 8, 1, 1, 1, 1},   /* 1x1 with pad 1: a zero border */
};
#define NCASE (int)(sizeof cases / sizeof *cases)

static const char *opname[3] = {"forward", "grad_input", "grad_weight"};
static const char *inname[3][2] = {{"x", "w"}, {"dy", "w"}, {"x", "dy"}};

static struct oc_shape xshape(const struct ccase *c) { return OC_SHAPE(c->N, c->C, c->H, c->W); }
static struct oc_shape wshape(const struct ccase *c) { return OC_SHAPE(c->O, c->C, c->KH, c->KW); }
static struct oc_shape yshape(const struct ccase *c)
{
    return OC_SHAPE(c->N, c->O, (c->H + 2 * c->p - c->KH) / c->s + 1,
                    (c->W + 2 * c->p - c->KW) / c->s + 1);
}

/* conv2d's symmetric padding is one attribute for both dims: the test
 * graphs use it for both (cases with p != 0 pad both). */
static struct oc_graph *graph(const struct ccase *c, int op, struct oc_shape in[2])
{
    struct oc_graph *g = oc_graph_new("conv");
    in[0] = op == 1 ? yshape(c) : xshape(c);
    in[1] = op == 2 ? yshape(c) : wshape(c);
    oc_tensor a = oc_input(g, inname[op][0], OC_F32, in[0]);
    oc_tensor b = oc_input(g, inname[op][1], OC_F32, in[1]);
    oc_tensor r = op == 0   ? oc_conv2d(g, a, b, c->s, c->p)
                  : op == 1 ? oc_conv2d_grad_input(g, a, b, xshape(c), c->s, c->p)
                            : oc_conv2d_grad_weight(g, a, b, wshape(c), c->s, c->p);
    oc_output(g, "r", r);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

/* The fused program's one convolution kernel (and its index). */
static const struct oc_kernel *conv_kernel(struct oc_kprog *p, int *idx)
{
    for (int i = 0; i < p->nkernel; i++)
        if (p->kernel[i]->kind >= OC_K_CONV2D) {
            *idx = i;
            return p->kernel[i];
        }
    cr_assert_fail("no convolution kernel in the program");
    return NULL;
}

/* Runs the kernel directly: impl 0 im2col on `nt` threads, 1 oneDNN. */
static struct oc_buf run_direct(const struct oc_graph *g, int impl, int nt, const struct oc_buf *a,
                                const struct oc_buf *b)
{
    struct oc_err err = {0};
    struct oc_kprog *p = NULL;
    struct oc_fuse_opts fo = {1, 0, NULL};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s", err.msg);
    int idx = -1;
    const struct oc_kernel *k = conv_kernel(p, &idx);
    struct oc_buf r;
    cr_assert_eq(oc_buf_alloc(&r, OC_F32, &k->lib_shape[0]), OC_OK);
    cr_assert(oc_shape_eq(&k->lib_shape[1], &a->shape) && oc_shape_eq(&k->lib_shape[2], &b->shape));
    void *args[3] = {r.data, a->data, b->data};
    memset(r.data, 0xff,
           (size_t)oc_shape_numel(&r.shape) * sizeof(float)); /* NaNs: must be written */
    if (impl == 0) {
        struct oc_pool *pool = oc_pool_new(nt);
        cr_assert_not_null(pool);
        void *scratch = malloc(oc_cpu_lib_scratch(k) * (size_t)nt + 64);
        cr_assert_not_null(scratch);
        oc_cpu_lib_run(k, args, scratch, pool);
        free(scratch);
        oc_pool_free(pool);
    } else {
        struct oc_dnnl *d = NULL;
        struct oc_pool *pool = oc_pool_new(nt);
        cr_assert_not_null(pool);
        cr_assert_eq(oc_dnnl_new(&d, p->kernel, p->nkernel, nt, OC_CONV_DNNL, 0, &err), OC_OK, "%s",
                     err.msg);
        cr_assert(oc_dnnl_uses(d, idx), "oneDNN did not take the kernel");
        cr_assert_eq(oc_dnnl_run(d, idx, args, pool), 1);
        oc_dnnl_free(d);
        oc_pool_free(pool);
    }
    oc_kprog_free(p);
    return r;
}

/* Runs g through oc_compile with OC_CONV=mode. */
static struct oc_buf run_exec(const struct oc_graph *g, int op, const char *mode,
                              const struct oc_buf *a, const struct oc_buf *b)
{
    struct oc_err err = {0};
    struct oc_exec *ex = NULL;
    struct oc_compile_opts o = oc_compile_defaults();
    o.nthreads = 2;
    setenv("OC_CONV", mode, 1);
    enum oc_status st = oc_compile(g, "cpu", &o, &ex, &err);
    unsetenv("OC_CONV");
    cr_assert_eq(st, OC_OK, "OC_CONV=%s: %s", mode, err.msg);
    cr_assert_eq(oc_exec_set(ex, inname[op][0], a, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_set(ex, inname[op][1], b, &err), OC_OK, "%s", err.msg);
    struct oc_buf r;
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_get(ex, "r", &r, &err), OC_OK, "%s", err.msg);
    oc_exec_free(ex);
    return r;
}

static void check_case(int ci, int op)
{
    const struct ccase *c = &cases[ci];
    struct oc_shape in[2];
    struct oc_graph *g = graph(c, op, in);
    struct oc_buf a = oc_test_random(OC_F32, in[0], 100 + (uint64_t)ci, -1, 1);
    struct oc_buf b = oc_test_random(OC_F32, in[1], 200 + (uint64_t)ci, -1, 1);
    struct oc_test_bind binds[2] = {{inname[op][0], &a}, {inname[op][1], &b}};
    struct oc_buf want = oc_test_run(g, 1, binds, 2, "r");
    char what[128];
    snprintf(what, sizeof what, "case %d %s", ci, opname[op]);

    struct oc_buf im = run_direct(g, 0, 2, &a, &b);
    cr_expect(oc_test_allclose(what, &im, &want, 1e-4, 1e-4), "%s: im2col vs f64", what);
    struct oc_buf ie = run_exec(g, op, "im2col", &a, &b);
    cr_expect(oc_test_allclose(what, &ie, &want, 1e-4, 1e-4), "%s: OC_CONV=im2col vs f64", what);
    if (oc_dnnl_available()) {
        for (int nt = 1; nt <= 2; nt++) {
            struct oc_buf dn = run_direct(g, 1, nt, &a, &b);
            cr_expect(oc_test_allclose(what, &dn, &want, 1e-4, 1e-4),
                      "%s: oneDNN (%d threads) vs f64", what, nt);
            cr_expect(oc_test_allclose(what, &dn, &im, 1e-4, 1e-5), "%s: oneDNN vs im2col", what);
            oc_buf_free(&dn);
        }
        struct oc_buf de = run_exec(g, op, "dnnl", &a, &b);
        cr_expect(oc_test_allclose(what, &de, &want, 1e-4, 1e-4), "%s: OC_CONV=dnnl vs f64", what);
        oc_buf_free(&de);
        struct oc_buf au = run_exec(g, op, "auto", &a, &b);
        cr_expect(oc_test_allclose(what, &au, &want, 1e-4, 1e-4), "%s: OC_CONV=auto vs f64", what);
        oc_buf_free(&au);
    } else {
        struct oc_err err = {0};
        struct oc_exec *ex = NULL;
        setenv("OC_CONV", "dnnl", 1);
        enum oc_status st = oc_compile(g, "cpu", NULL, &ex, &err);
        unsetenv("OC_CONV");
        cr_expect_eq(st, OC_ERR_UNSUPPORTED, "OC_CONV=dnnl without oneDNN compiled");
        cr_expect(strstr(err.msg, "oneDNN") != NULL, "%s", err.msg);
        oc_exec_free(ex);
    }
    oc_buf_free(&im);
    oc_buf_free(&ie);
    oc_buf_free(&want);
    oc_buf_free(&a);
    oc_buf_free(&b);
    oc_graph_free(g);
}

Test(conv_dnnl, forward)
{
    for (int i = 0; i < NCASE; i++) check_case(i, 0);
}

Test(conv_dnnl, grad_input)
{
    for (int i = 0; i < NCASE; i++) check_case(i, 1);
}

Test(conv_dnnl, grad_weight)
{
    for (int i = 0; i < NCASE; i++) check_case(i, 2);
}

Test(conv_dnnl, bad_oc_conv_is_an_error)
{
    struct ccase c = cases[0];
    struct oc_shape in[2];
    struct oc_graph *g = graph(&c, 0, in);
    struct oc_err err = {0};
    struct oc_exec *ex = NULL;
    setenv("OC_CONV", "fastest", 1);
    enum oc_status st = oc_compile(g, "cpu", NULL, &ex, &err);
    unsetenv("OC_CONV");
    cr_expect_eq(st, OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "OC_CONV") && strstr(err.msg, "fastest"), "%s", err.msg);
    cr_expect_null(ex);
    oc_exec_free(ex);
    enum oc_conv_impl m;
    setenv("OC_CONV", "im2col", 1);
    cr_expect_eq(oc_dnnl_mode_env(&m, &err), OC_OK);
    cr_expect_eq(m, OC_CONV_IM2COL);
    unsetenv("OC_CONV");
    cr_expect_eq(oc_dnnl_mode_env(&m, &err), OC_OK);
    cr_expect_eq(m, OC_CONV_AUTO);
    oc_graph_free(g);
}

/* The measured rule (cpu-dnnl.c): oneDNN for the WRN 3x3 layers, im2col
 * for the stem's backward-data and 1x1 convolutions; f64 never goes to
 * oneDNN. */
Test(conv_dnnl, auto_rule)
{
    struct oc_kconv mid = {128, 64, 14, 14, 64, 3, 3, 14, 14, 576, 196, 1, 1, 1, 1};
    struct oc_kconv stem = {128, 1, 28, 28, 16, 3, 3, 28, 28, 9, 784, 1, 1, 1, 1};
    struct oc_kconv one = {128, 16, 28, 28, 32, 1, 1, 28, 28, 16, 784, 1, 1, 0, 0};
    for (int nt = 1; nt <= 2; nt++) {
        cr_expect(oc_dnnl_prefer(OC_K_CONV2D, &mid, nt));
        cr_expect(oc_dnnl_prefer(OC_K_CONV2D_GRAD_INPUT, &mid, nt));
        cr_expect(oc_dnnl_prefer(OC_K_CONV2D_GRAD_WEIGHT, &mid, nt));
        cr_expect(!oc_dnnl_prefer(OC_K_CONV2D_GRAD_INPUT, &stem, nt));
        cr_expect(oc_dnnl_prefer(OC_K_CONV2D, &stem, nt));
        cr_expect(!oc_dnnl_prefer(OC_K_CONV2D, &one, nt));
        cr_expect(!oc_dnnl_prefer(OC_K_CONV2D_GRAD_WEIGHT, &one, nt));
    }
    struct oc_graph *g = oc_graph_new("conv64");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(1, 2, 5, 5));
    oc_tensor w = oc_input(g, "w", OC_F64, OC_SHAPE(2, 2, 3, 3));
    oc_output(g, "r", oc_conv2d(g, x, w, 1, 1));
    struct oc_err err = {0};
    struct oc_kprog *p = NULL;
    struct oc_fuse_opts fo = {1, 0, NULL};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s", err.msg);
    struct oc_dnnl *d = (struct oc_dnnl *)1;
    cr_expect_eq(oc_dnnl_new(&d, p->kernel, p->nkernel, 1, OC_CONV_DNNL, 0, &err), OC_OK, "%s",
                 err.msg);
    cr_expect_null(d, "an f64 convolution went to oneDNN");
    oc_dnnl_free(d);
    oc_kprog_free(p);
    oc_graph_free(g);
}
