/* test-backward.c - forward + backward graphs on the CPU backend: the loss
 * of every registered head and its gradients (autodiff) w.r.t. all params
 * and the features, a whole SGD-Nesterov training step (assigns of params
 * and momenta over two steps), and a tiny Wide ResNet forward+backward
 * (conv adjoints, batchnorm), each compiled fused and unfused and compared
 * with the f64 interpreter. */
#include "conform.h"

#include "../../models/models.h"
#include "../../passes/passes.h"

static struct oc_rt *rt;

static void setup(void)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
}

static void teardown(void) { oc_rt_free(rt); }

TestSuite(backward, .init = setup, .fini = teardown);

/* Appends d loss / d {every param, extra} as outputs "d:<name>" (or "d:x"). */
static void add_grads(struct oc_graph *g, oc_tensor loss, oc_tensor extra, int *params, int *np)
{
    int wrt[256], n = 0;
    for (int i = 0; i < g->nnodes && n < 255; i++)
        if (g->nodes[i]->op == OC_OP_PARAM) wrt[n++] = i;
    if (np) {
        for (int i = 0; i < n; i++) params[i] = wrt[i];
        *np = n;
    }
    if (oc_valid(extra)) wrt[n++] = extra.id;
    int grads[256];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, n, grads, &err), OC_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        char name[300];
        const char *pn = g->nodes[wrt[i]]->attrs.name;
        snprintf(name, sizeof name, "d:%s", pn ? pn : "x");
        oc_output(g, name, (oc_tensor){grads[i]});
    }
}

static struct oc_graph *head_graph(const struct oc_head *h, int with_grads)
{
    struct oc_graph *g = oc_graph_new(h->name);
    struct oc_head_cfg c = oc_head_cfg_default(h->name, 4);
    c.zdim = 3;
    c.test_samples = 2;
    oc_tensor f = oc_input(g, "features", OC_F32, OC_SHAPE(6, 8));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(6));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out out;
    memset(&out, 0, sizeof out);
    out.logits = out.loss = out.bin_logits = out.mu = out.sd = OC_NONE;
    out.prior_mu = out.prior_sd = out.features = OC_NONE;
    h->build(g, f, labels, step, &c, 1, &out);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", h->name, g->err.msg);
    cr_assert(oc_valid(out.loss), "%s has no loss", h->name);
    oc_output(g, "loss", out.loss);
    if (oc_valid(out.logits)) oc_output(g, "logits", out.logits);
    if (with_grads) add_grads(g, out.loss, f, NULL, NULL);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", h->name, g->err.msg);
    return g;
}

Test(backward, every_head_loss_and_gradients)
{
    int nheads = 0;
    for (int i = 0; oc_heads[i]; i++, nheads++) {
        struct oc_graph *g = head_graph(oc_heads[i], 1);
        struct conform_opts co = conform_defaults();
        co.ihi = 4;
        co.rtol = 1e-3, co.atol = 1e-4;
        char tag[64];
        snprintf(tag, sizeof tag, "head %s", oc_heads[i]->name);
        cr_expect(conform_run(rt, g, tag, 1, &co), "%s fused", tag);
        cr_expect(conform_run(rt, g, tag, 0, &co), "%s unfused", tag);
        oc_graph_free(g);
    }
    cr_expect_geq(nheads, 5);
}

Test(backward, sgd_nesterov_training_step)
{
    struct oc_graph *g = oc_graph_new("train");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(6, 5));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(6));
    oc_tensor w1 = oc_param(g, "w1", OC_F32, OC_SHAPE(7, 5), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b1 = oc_param(g, "b1", OC_F32, OC_SHAPE(7), OC_INIT_ZEROS, 0, 0);
    oc_tensor w2 = oc_param(g, "w2", OC_F32, OC_SHAPE(3, 7), OC_INIT_NORMAL, 0, 0.3);
    oc_tensor h = oc_relu(g, oc_batchnorm_layer(g, "bn", oc_linear(g, x, w1, b1), 1));
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, h, w2, OC_NONE), labels);
    oc_output(g, "loss", loss);
    oc_tensor ps[8] = {w1, b1, w2, {oc_graph_find_named(g, "bn.weight")}, {oc_graph_find_named(g, "bn.bias")}};
    int wrt[8], grads[8];
    for (int i = 0; i < 5; i++) wrt[i] = ps[i].id;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, 5, grads, &err), OC_OK, "%s", err.msg);
    oc_tensor gt[8];
    for (int i = 0; i < 5; i++) gt[i] = (oc_tensor){grads[i]};
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    const int mask[5] = {1, 0, 1, 0, 0};
    oc_sgd_nesterov(g, ps, gt, 5, lr, 0.9, 5e-4, mask);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct conform_opts co = conform_defaults();
    co.lo = 0, co.hi = 0.5; /* lr drawn from [0, 0.5) too */
    co.ihi = 3;
    co.runs = 3;
    co.rtol = 1e-3, co.atol = 1e-4;
    cr_expect(conform_run(rt, g, "sgd step", 1, &co));
    cr_expect(conform_run(rt, g, "sgd step", 0, &co));
    oc_graph_free(g);
}

Test(backward, tiny_wide_resnet, .timeout = 60)
{
    struct oc_wrn_config c = {10, 1, 3, 8, 4};
    struct oc_graph *g = oc_graph_new("wrn");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 3, 8, 8));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    oc_tensor f = oc_wrn_trunk(g, &c, x, 1);
    oc_tensor w = oc_param(g, "fc.weight", OC_F32, OC_SHAPE(4, oc_wrn_features(&c)), OC_INIT_NORMAL, 0, 0.2);
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, f, w, OC_NONE), labels);
    oc_output(g, "loss", loss);
    add_grads(g, loss, x, NULL, NULL);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct conform_opts co = conform_defaults();
    co.lo = 0, co.hi = 1;
    co.rtol = 2e-3, co.atol = 2e-4;
    cr_expect(conform_run(rt, g, "wrn-10-1", 1, &co));
    cr_expect(conform_run(rt, g, "wrn-10-1", 0, &co));
    oc_graph_free(g);
}
