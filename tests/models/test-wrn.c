/* test-wrn.c - the Wide ResNet trunk and the SGD-Nesterov update: parameter
 * counts equal the reference PyTorch module's (bench/peer/wrn.py), a forward
 * pass runs, and the optimizer matches torch.optim.SGD's update rule. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../models/models.h"
#include "../helpers/helpers.h"

static struct oc_graph *build(const char *spec, int in_ch, int size, int batch, int train,
                              oc_tensor *logits)
{
    struct oc_err err = {0};
    struct oc_wrn_config c = {0};
    cr_assert_eq(oc_wrn_parse(spec, &c, &err), OC_OK, "%s", err.msg);
    c.in_ch = in_ch, c.size = size, c.nclasses = 10;
    struct oc_graph *g = oc_graph_new(spec);
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, in_ch, size, size));
    oc_tensor f = oc_wrn_trunk(g, &c, x, train);
    oc_tensor w = oc_param(g, "fc.weight", OC_F32, OC_SHAPE(10, oc_wrn_features(&c)),
                           OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b = oc_param(g, "fc.bias", OC_F32, OC_SHAPE(10), OC_INIT_ZEROS, 0, 0);
    *logits = oc_linear(g, f, w, b);
    oc_output(g, "logits", *logits);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

static void count(const struct oc_graph *g, int64_t *params, int *tensors)
{
    *params = 0;
    *tensors = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op == OC_OP_PARAM) *params += oc_shape_numel(&n->shape);
        if (n->op == OC_OP_PARAM || n->op == OC_OP_STATE) (*tensors)++;
    }
}

/* Figures printed by bench/peer/wrn.py (PyTorch); the reference state_dict also
 * holds one num_batches_tracked per BN, which oodc does not keep. */
Test(wrn, parameter_counts_match_pytorch)
{
    struct {
        const char *spec;
        int in_ch, size;
        int64_t params;
        int tensors;
    } cases[] = {{"wrn-10-1", 1, 28, 77562, 46}, {"wrn-16-4", 1, 28, 2748602, 83},
                 {"wrn-28-10", 3, 32, 36479194, 155}};
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        oc_tensor logits;
        struct oc_graph *g = build(cases[i].spec, cases[i].in_ch, cases[i].size, 2, 1, &logits);
        int64_t p;
        int t;
        count(g, &p, &t);
        int depth = atoi(cases[i].spec + 4), nbn = (depth - 4) / 6 * 3 * 2 + 1;
        cr_assert_eq(p, cases[i].params, "%s: %lld params", cases[i].spec, (long long)p);
        cr_assert_eq(t, cases[i].tensors - nbn, "%s: %d tensors", cases[i].spec, t);
        const struct oc_node *ln = g->nodes[logits.id];
        cr_assert_eq(ln->shape.rank, 2);
        cr_assert_eq(ln->shape.dim[1], 10);
        oc_graph_free(g);
    }
}

Test(wrn, forward_runs_in_the_interpreter)
{
    oc_tensor logits;
    struct oc_graph *g = build("wrn-10-1", 1, 28, 2, 0, &logits);
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(2, 1, 28, 28), 1, 0, 1);
    struct oc_test_bind b[] = {{"x", &x}};
    struct oc_buf y = oc_test_run(g, 0, b, 1, "logits");
    cr_assert_eq(y.shape.dim[0], 2);
    double mag = 0;
    for (int i = 0; i < 20; i++) {
        cr_assert(isfinite(oc_buf_get(&y, i)));
        mag += fabs(oc_buf_get(&y, i));
    }
    cr_assert_gt(mag, 0);
    oc_buf_free(&x);
    oc_buf_free(&y);
    oc_graph_free(g);
}

Test(wrn, bad_model_strings_rejected)
{
    struct oc_err err = {0};
    struct oc_wrn_config c;
    const char *bad[] = {"wrn-15-4", "wrn-16", "resnet-16-4", "wrn-16-4x", "wrn-4-1", "wrn-16-0"};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        oc_err_clear(&err);
        cr_assert_eq(oc_wrn_parse(bad[i], &c, &err), OC_ERR_INVALID, "%s accepted", bad[i]);
        cr_assert(strstr(err.msg, bad[i]), "%s", err.msg);
    }
}

/* torch.optim.SGD(lr, momentum=mu, weight_decay=wd, nesterov=True), two steps */
Test(optim, sgd_nesterov_matches_torch_rule)
{
    struct oc_graph *g = oc_graph_new("sgd");
    oc_tensor p = oc_param(g, "w", OC_F64, OC_SHAPE(3), OC_INIT_CONST, 0, 0);
    oc_tensor grad = oc_input(g, "grad", OC_F64, OC_SHAPE(3));
    oc_tensor lr = oc_input(g, "lr", OC_F64, OC_SCALAR);
    oc_sgd_nesterov(g, &p, &grad, 1, lr, 0.9, 5e-4, NULL);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    double p0[] = {1, -2, 0.5}, g1[] = {0.1, 0.2, -0.3}, g2[] = {-1, 0.5, 2};
    struct oc_buf pv = oc_test_buf(OC_F64, OC_SHAPE(3), p0), lrv = oc_test_buf(OC_F64, OC_SCALAR, (double[]){0.1});
    struct oc_interp *it = oc_interp_new(g, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_set(it, "w", &pv, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "lr", &lrv, &err), OC_OK, "%s", err.msg);
    double w[3], buf[3] = {0, 0, 0};
    memcpy(w, p0, sizeof w);
    const double *gs[2] = {g1, g2};
    for (int step = 0; step < 2; step++) {
        struct oc_buf gv = oc_test_buf(OC_F64, OC_SHAPE(3), gs[step]);
        cr_assert_eq(oc_interp_set(it, "grad", &gv, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "%s", err.msg);
        oc_buf_free(&gv);
        for (int i = 0; i < 3; i++) {
            double d = gs[step][i] + 5e-4 * w[i];
            buf[i] = 0.9 * buf[i] + d;
            w[i] -= 0.1 * (d + 0.9 * buf[i]);
        }
        const struct oc_buf *wv = oc_interp_named(it, "w"), *bv = oc_interp_named(it, "w.momentum_buffer");
        for (int i = 0; i < 3; i++) {
            cr_assert_float_eq(oc_buf_get(wv, i), w[i], 1e-15);
            cr_assert_float_eq(oc_buf_get(bv, i), buf[i], 1e-15);
        }
    }
    oc_interp_free(it);
    oc_buf_free(&pv);
    oc_buf_free(&lrv);
    oc_graph_free(g);
}
