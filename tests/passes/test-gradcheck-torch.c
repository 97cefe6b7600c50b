/* test-gradcheck-torch.c - oodc's autodiff against a second framework:
 * gradients made by PyTorch autograd (tests/fixtures/torch_grad, written by
 * make_fixture.py there) for a small conv net and for WRN-16-1, both with
 * train-mode BN and cross-entropy, w.r.t. every parameter and the input.
 * The same graphs are built with the DSL under PyTorch's parameter names and
 * layouts (conv [O,C,KH,KW], linear [out,in]; the WRN is models/wrn.c, so its
 * parameter names and shapes are checked against the reference PyTorch
 * module too), differentiated, and run by the interpreter twice:
 *  - in f64 they must match autograd's (f64) answer to 1e-6 relative, which
 *    is only the f32 rounding of the stored fixture;
 *  - in f32 mode, the arithmetic of a real run, to 1e-4 relative.
 * See agree() for how elements far smaller than their tensor's largest are
 * held to the tensor's scale. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../models/models.h"
#include "../../passes/passes.h"
#include "../helpers/helpers.h"

#define FIX OC_SOURCE_DIR "/tests/fixtures/torch_grad/"

static struct oc_buf load(const char *model, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s/%s", model, file);
    struct oc_buf b;
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_read(path, &b, &err), OC_OK, "%s", err.msg);
    return b;
}

struct entry {
    char name[128];
    struct oc_shape shape;
    int64_t off;
};

static int read_manifest(const char *model, struct entry *e, int max)
{
    char path[512], line[512];
    snprintf(path, sizeof path, FIX "%s/manifest.txt", model);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char dims[128];
        long long off;
        if (sscanf(line, "%127s %127s %lld", e[n].name, dims, &off) != 3) continue;
        cr_assert_lt(n, max);
        e[n].off = off;
        memset(&e[n].shape, 0, sizeof e[n].shape);
        for (char *p = strtok(dims, ","); p; p = strtok(NULL, ","))
            e[n].shape.dim[e[n].shape.rank++] = atoll(p);
        n++;
    }
    fclose(f);
    return n;
}

/* Element i agrees when |got - want| <= rtol (|want_i| + small max|want|):
 * relative for every element above `small` of the tensor's largest, held
 * to the tensor's scale below that (a gradient of 1e-9 next to ones of 1e-2
 * has no meaningful f32 relative error). The whole tensor must also agree
 * in norm: ||got - want|| <= rtol ||want||. */
static int agree(const char *what, const float *want, const struct oc_buf *got, int64_t n,
                 double rtol, double small)
{
    double mx = 0, nd = 0, nw = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = oc_buf_get(got, i), b = want[i];
        double lim = rtol * (fabs(b) + small * mx), d = fabs(a - b);
        nd += d * d;
        nw += b * b;
        if (lim > 0 && d / lim > worst) worst = d / lim;
        if (!(d <= lim)) {
            if (bad < 5)
                fprintf(stderr, "%s[%lld]: oodc %.9g, pytorch %.9g (diff %.3g, allowed %.3g)\n",
                        what, (long long)i, a, b, d, lim);
            bad++;
        }
    }
    double rel = nw > 0 ? sqrt(nd / nw) : sqrt(nd);
    if (!(rel <= rtol)) {
        fprintf(stderr, "%s: relative error in norm %.3g > %.3g\n", what, rel, rtol);
        bad++;
    }
    if (getenv("OC_GRADCHECK_VERBOSE"))
        fprintf(stderr, "%s: %lld elements, worst %.3g of the tolerance, norm-wise %.3g\n", what,
                (long long)n, worst, rel);
    return bad == 0;
}

static int run_and_compare(struct oc_graph *g, const char *model, const struct entry *e, int n,
                           const int *gr, oc_tensor loss, int f64, const struct oc_buf *params,
                           const struct oc_buf *grads, const struct oc_buf *xb,
                           const struct oc_buf *lb, const struct oc_buf *gx,
                           const struct oc_buf *lossb)
{
    struct oc_err err = {0};
    struct oc_interp *it = oc_interp_new(g, f64);
    const float *pv = params->data;
    for (int i = 0; i < n; i++) {
        struct oc_buf v;
        cr_assert_eq(oc_buf_alloc(&v, OC_F32, &e[i].shape), OC_OK);
        memcpy(v.data, pv + e[i].off, sizeof(float) * (size_t)oc_shape_numel(&e[i].shape));
        cr_assert_eq(oc_interp_set(it, e[i].name, &v, &err), OC_OK, "%s", err.msg);
        oc_buf_free(&v);
    }
    cr_assert_eq(oc_interp_set(it, "x", xb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "labels", lb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "%s", err.msg);

    int ok = 1;
    double rtol = f64 ? 1e-6 : 1e-4, small = f64 ? 1e-3 : 1e-2;
    const char *mode = f64 ? "f64" : "f32";
    double l = oc_buf_get(oc_interp_value(it, loss.id), 0), lt = oc_buf_get(lossb, 0);
    cr_expect(fabs(l - lt) <= (f64 ? 2e-7 : 1e-5) * fabs(lt), "%s (%s): loss %.9g, PyTorch %.9g",
              model, mode, l, lt);
    const float *gv = grads->data;
    for (int i = 0; i < n; i++) {
        const struct oc_buf *a = oc_interp_value(it, gr[i]);
        cr_assert_eq(a->dtype, f64 ? OC_F64 : OC_F32);
        char what[256];
        snprintf(what, sizeof what, "%s (%s): d loss / d %s", model, mode, e[i].name);
        ok &= agree(what, gv + e[i].off, a, oc_shape_numel(&e[i].shape), rtol, small);
    }
    char what[256];
    snprintf(what, sizeof what, "%s (%s): d loss / d x", model, mode);
    ok &= agree(what, gx->data, oc_interp_value(it, gr[n]), oc_shape_numel(&gx->shape), rtol, small);

    oc_interp_free(it);
    return ok;
}

/* Binds the fixture's parameters, differentiates `loss` w.r.t. all of them
 * and x, runs in f32 and compares with PyTorch. */
static void compare(struct oc_graph *g, const char *model, oc_tensor x, oc_tensor loss)
{
    struct entry *e = calloc(256, sizeof *e);
    cr_assert_not_null(e);
    int n = read_manifest(model, e, 256);
    cr_assert_gt(n, 0);
    struct oc_buf params = load(model, "params.npy"), grads = load(model, "grads.npy");
    struct oc_buf xb = load(model, "x.npy"), lb = load(model, "labels.npy");
    struct oc_buf gx = load(model, "grad_x.npy"), lossb = load(model, "loss.npy");
    cr_assert_eq(params.dtype, OC_F32);
    cr_assert_eq(grads.dtype, OC_F32);

    /* the graph's parameters are exactly the fixture's, same shapes */
    int nparams = 0;
    for (int i = 0; i < g->nnodes; i++) nparams += g->nodes[i]->op == OC_OP_PARAM;
    cr_assert_eq(nparams, n, "%s: graph has %d params, PyTorch %d", model, nparams, n);
    int *wrt = calloc((size_t)n + 1, sizeof *wrt), *gr = calloc((size_t)n + 1, sizeof *gr);
    for (int i = 0; i < n; i++) {
        wrt[i] = oc_graph_find_named(g, e[i].name);
        cr_assert(wrt[i] >= 0, "%s: no parameter named %s", model, e[i].name);
        char s1[128], s2[128];
        cr_assert(oc_shape_eq(&g->nodes[wrt[i]]->shape, &e[i].shape), "%s: %s is %s in oodc, %s in PyTorch",
                  model, e[i].name, oc_shape_str(&g->nodes[wrt[i]]->shape, s1, 128),
                  oc_shape_str(&e[i].shape, s2, 128));
    }
    wrt[n] = x.id;
    struct oc_err err = {0};
    int ok = 1;
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, n + 1, gr, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);

    /* f64: autodiff must reproduce autograd up to the fixture's f32 storage;
     * f32: the arithmetic of a real run, to 1e-4 */
    for (int f64 = 1; f64 >= 0; f64--)
        ok &= run_and_compare(g, model, e, n, gr, loss, f64, &params, &grads, &xb, &lb, &gx, &lossb);
    cr_expect(ok, "%s: gradients differ from PyTorch's (see above)", model);

    free(wrt);
    free(gr);
    free(e);
    oc_buf_free(&params);
    oc_buf_free(&grads);
    oc_buf_free(&xb);
    oc_buf_free(&lb);
    oc_buf_free(&gx);
    oc_buf_free(&lossb);
}

Test(gradcheck_torch, small_conv_net)
{
    struct oc_graph *g = oc_graph_new("smallnet");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 3, 8, 8));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(4));
    oc_tensor w1 = oc_param(g, "conv1.weight", OC_F32, OC_SHAPE(8, 3, 3, 3), OC_INIT_ZEROS, 0, 0);
    oc_tensor w2 = oc_param(g, "conv2.weight", OC_F32, OC_SHAPE(16, 8, 3, 3), OC_INIT_ZEROS, 0, 0);
    oc_tensor b2 = oc_param(g, "conv2.bias", OC_F32, OC_SHAPE(16), OC_INIT_ZEROS, 0, 0);
    oc_tensor h = oc_conv2d(g, x, w1, 1, 1);
    h = oc_relu(g, oc_batchnorm_layer(g, "bn1", h, 1));
    h = oc_global_avg_pool(g, oc_conv2d_bias(g, h, w2, b2, 2, 1));
    oc_tensor fw = oc_param(g, "fc.weight", OC_F32, OC_SHAPE(10, 16), OC_INIT_ZEROS, 0, 0);
    oc_tensor fb = oc_param(g, "fc.bias", OC_F32, OC_SHAPE(10), OC_INIT_ZEROS, 0, 0);
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, h, fw, fb), lab);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    compare(g, "smallnet", x, loss);
    oc_graph_free(g);
}

Test(gradcheck_torch, wrn16_1)
{
    struct oc_graph *g = oc_graph_new("wrn16_1");
    struct oc_wrn_config cfg = {.depth = 16, .width = 1, .in_ch = 3, .size = 8, .nclasses = 10};
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 3, 8, 8));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    oc_tensor f = oc_wrn_trunk(g, &cfg, x, 1);
    oc_tensor fw = oc_param(g, "fc.weight", OC_F32, OC_SHAPE(10, 64), OC_INIT_ZEROS, 0, 0);
    oc_tensor fb = oc_param(g, "fc.bias", OC_F32, OC_SHAPE(10), OC_INIT_ZEROS, 0, 0);
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, f, fw, fb), lab);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    compare(g, "wrn16_1", x, loss);
    oc_graph_free(g);
}
