/* test-gradcheck-composites.c - gradients of the DSL composites the OOD
 * heads are built from, against central finite differences in f64: cross
 * entropy, log_softmax with a temperature, the BIN loss (sigmoid BCE with a
 * weight on the negative terms), batchnorm (train and eval), the diagonal
 * Gaussian KL of VIB, logsumexp, the MMCE estimator (Kumar et al. 2018,
 * Laplacian kernel over confidences, bandwidth 0.4), a pre-activation WRN
 * block, and a double backward (a gradient penalty). ReLU kinks are avoided
 * by construction: each BN before a ReLU gets a small gamma and a beta of
 * magnitude >= 0.6, so every channel sits strictly on one side of 0
 * (asserted with oc_gc_kink_margin). */
#include <criterion/criterion.h>
#include <math.h>

#include "../../passes/passes.h"
#include "../helpers/gradcheck.h"
#include "../helpers/helpers.h"

Test(gradcheck_composite, cross_entropy)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "ce", 1);
    oc_tensor x = oc_gc_input(&t, "logits", OC_F64, OC_SHAPE(5, 7), OC_GC_UNIFORM, -3, 3, 1);
    oc_tensor lab = oc_gc_index(&t, "labels", OC_SHAPE(5), 7);
    oc_gc_check(&t, oc_cross_entropy(t.g, x, lab), "cross_entropy");

    /* behind a linear layer, large logits (the max-subtracted form) */
    oc_gc_begin(&t, "ce-linear", 2);
    x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(4, 6), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor w = oc_gc_input(&t, "w", OC_F64, OC_SHAPE(3, 6), OC_GC_UNIFORM, -5, 5, 1);
    oc_tensor b = oc_gc_input(&t, "b", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, -1, 1, 1);
    lab = oc_gc_index(&t, "labels", OC_SHAPE(4), 3);
    oc_gc_check(&t, oc_cross_entropy(t.g, oc_linear(t.g, x, w, b), lab), "cross_entropy(linear)");
}

Test(gradcheck_composite, log_softmax_with_temperature)
{
    for (int axis = 0; axis < 2; axis++) {
        struct oc_gc_case t;
        oc_gc_begin(&t, "lsm", 10 + (uint64_t)axis);
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(3, 5), OC_GC_UNIFORM, -4, 4, 1);
        oc_tensor temp = oc_gc_input(&t, "T", OC_F64, OC_SCALAR, OC_GC_UNIFORM, 0.5, 3, 1);
        oc_gc_check(&t, oc_log_softmax(t.g, oc_div(t.g, x, temp), axis), "log_softmax(x/T)");
    }
    struct oc_gc_case t;
    oc_gc_begin(&t, "softmax", 12);
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 4), OC_GC_UNIFORM, -4, 4, 1);
    oc_gc_check(&t, oc_softmax(t.g, oc_scale(t.g, x, 1.0 / 1000), 2), "softmax(x/1000)");
}

/* BIN (paper eq. 3): per-class sigmoid on logits, negative terms weighted by
 * zeta = 0.05, targets are the one-hot labels */
Test(gradcheck_composite, sigmoid_bce_bin_loss)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "bin", 20);
    oc_tensor x = oc_gc_input(&t, "logits", OC_F64, OC_SHAPE(4, 6), OC_GC_UNIFORM, -6, 6, 1);
    oc_tensor lab = oc_gc_index(&t, "labels", OC_SHAPE(4), 6);
    oc_tensor tg = oc_one_hot(t.g, lab, 6, OC_F64);
    oc_gc_check(&t, oc_sigmoid_bce(t.g, x, tg, 0.05), "sigmoid_bce(zeta=0.05)");

    oc_gc_begin(&t, "bce-soft", 21);
    x = oc_gc_input(&t, "logits", OC_F64, OC_SHAPE(3, 2, 5), OC_GC_UNIFORM, -3, 3, 1);
    oc_tensor soft = oc_gc_input(&t, "t", OC_F64, OC_SHAPE(3, 2, 5), OC_GC_UNIFORM, 0, 1, 1);
    oc_gc_check(&t, oc_sigmoid_bce(t.g, x, soft, 0.3), "sigmoid_bce(soft targets)");
}

Test(gradcheck_composite, batchnorm_train)
{
    struct oc_shape shapes[2] = {OC_SHAPE(6, 3), OC_SHAPE(2, 3, 4, 3)};
    for (int k = 0; k < 2; k++) {
        struct oc_gc_case t;
        oc_gc_begin(&t, "bn", 30 + (uint64_t)k);
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, shapes[k], OC_GC_UNIFORM, -2, 2, 1);
        oc_tensor ga = oc_gc_input(&t, "gamma", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, 0.5, 1.5, 1);
        oc_tensor be = oc_gc_input(&t, "beta", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, -1, 1, 1);
        oc_tensor rm = oc_state(t.g, "rm", OC_F64, OC_SHAPE(3), OC_INIT_ZEROS, 0);
        oc_tensor rv = oc_state(t.g, "rv", OC_F64, OC_SHAPE(3), OC_INIT_ONES, 0);
        oc_tensor y = oc_batchnorm(t.g, x, ga, be, rm, rv, 1, 0.1, 1e-5);
        /* square: the weighted sum of a normalized tensor alone is nearly flat in x */
        oc_gc_check(&t, oc_mul(t.g, y, y), "batchnorm(train)");
    }
}

Test(gradcheck_composite, batchnorm_eval_wrt_running_stats)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "bn-eval", 33);
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 2, 2), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor ga = oc_gc_input(&t, "gamma", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, 0.5, 1.5, 1);
    oc_tensor be = oc_gc_input(&t, "beta", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor rm = oc_state(t.g, "rm", OC_F64, OC_SHAPE(3), OC_INIT_ZEROS, 0);
    oc_tensor rv = oc_state(t.g, "rv", OC_F64, OC_SHAPE(3), OC_INIT_ONES, 0);
    oc_gc_bind(&t, "rm", OC_GC_UNIFORM, -0.5, 0.5, 1);
    oc_gc_bind(&t, "rv", OC_GC_UNIFORM, 0.5, 2, 1);
    oc_gc_check(&t, oc_batchnorm(t.g, x, ga, be, rm, rv, 0, 0.1, 1e-5), "batchnorm(eval)");
}

Test(gradcheck_composite, kl_diag_gaussian)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "kl", 40);
    oc_tensor mq = oc_gc_input(&t, "mu_q", OC_F64, OC_SHAPE(3, 4), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor sq = oc_gc_input(&t, "sd_q", OC_F64, OC_SHAPE(3, 4), OC_GC_UNIFORM, 0.3, 2, 1);
    oc_tensor mp = oc_gc_input(&t, "mu_p", OC_F64, OC_SHAPE(4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor sp = oc_gc_input(&t, "sd_p", OC_F64, OC_SHAPE(4), OC_GC_UNIFORM, 0.5, 2, 1);
    oc_gc_check(&t, oc_kl_diag_gaussian(t.g, mq, sq, mp, sp), "kl_diag_gaussian");
    /* VIB's form: sd from softplus of a pre-activation, standard normal prior */
    oc_gc_begin(&t, "kl-vib", 41);
    mq = oc_gc_input(&t, "mu", OC_F64, OC_SHAPE(2, 5), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor pre = oc_gc_input(&t, "pre", OC_F64, OC_SHAPE(2, 5), OC_GC_UNIFORM, -3, 3, 1);
    sq = oc_add_scalar(t.g, oc_softplus(t.g, pre), 1e-3);
    oc_tensor kl = oc_kl_diag_gaussian(t.g, mq, sq, oc_scalar(t.g, OC_F64, 0.0),
                                       oc_scalar(t.g, OC_F64, 1.0));
    oc_gc_check(&t, oc_mean(t.g, kl, 1u, 0), "kl_diag_gaussian(vib)");
}

Test(gradcheck_composite, logsumexp)
{
    for (int k = 0; k < 4; k++) {
        struct oc_gc_case t;
        oc_gc_begin(&t, "lse", 50 + (uint64_t)k);
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(3, 5, 2), OC_GC_UNIFORM, -5, 5, 1);
        oc_gc_check(&t, oc_logsumexp(t.g, x, k % 3, k / 2), "logsumexp");
    }
}

/* MMCE (Kumar et al. 2018) over given confidences and correctness */
Test(gradcheck_composite, mmce_direct)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "mmce", 60);
    /* distinct confidences (0.05 apart) so |r_i - r_j| stays away from 0 */
    struct oc_buf r = oc_gc_values(&t, OC_SHAPE(10), OC_GC_DISTINCT, 0.05, 0.05);
    for (int i = 0; i < 10; i++) oc_buf_set(&r, i, oc_buf_get(&r, i) + 0.5 + oc_gc_uniform(&t, 0, 0.01));
    oc_tensor conf = oc_gc_input(&t, "conf", OC_F64, OC_SHAPE(10), OC_GC_UNIFORM, 0, 1, 1);
    oc_buf_free(&t.v[t.n - 1]);
    t.v[t.n - 1] = r;
    struct oc_buf c = oc_test_buf(OC_F64, OC_SHAPE(10), (double[]){1, 0, 1, 1, 0, 1, 0, 1, 1, 1});
    /* correctness is a label, not differentiated (MMCE stops its gradient) */
    oc_tensor cor = oc_gc_input(&t, "correct", OC_F64, OC_SHAPE(10), OC_GC_UNIFORM, 0, 1, 0);
    oc_buf_free(&t.v[t.n - 1]);
    t.v[t.n - 1] = c;
    oc_gc_check(&t, oc_mmce_weighted(t.g, conf, cor, 0.4), "mmce_weighted(bw=0.4)");
}

/* BINC's calibration term end to end: confidences are the max softmax
 * probability, correctness compares argmax with the label (no gradient) */
Test(gradcheck_composite, mmce_from_logits)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "mmce-logits", 61);
    oc_tensor x = oc_gc_input(&t, "logits", OC_F64, OC_SHAPE(8, 4), OC_GC_UNIFORM, -3, 3, 1);
    oc_tensor lab = oc_gc_index(&t, "labels", OC_SHAPE(8), 4);
    oc_tensor conf = oc_reduce_max(t.g, oc_softmax(t.g, x, 1), 2u, 0);
    oc_tensor cor = oc_cast(t.g, oc_eq(t.g, oc_argmax(t.g, x, 1, 0), lab), OC_F64);
    oc_tensor l = oc_add(t.g, oc_cross_entropy(t.g, x, lab),
                         oc_scale(t.g, oc_mmce_weighted(t.g, conf, cor, 0.4), 0.5));
    oc_gc_check(&t, l, "ce + 0.5 mmce");
}

Test(gradcheck_composite, reductions_and_layers)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "mean-var", 70);
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(3, 4, 2), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor y = oc_add(t.g, oc_mean(t.g, x, 5u, 1), oc_variance(t.g, x, 5u, 1));
    oc_gc_check(&t, y, "mean + variance");

    oc_gc_begin(&t, "gap", 71);
    x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 4, 5), OC_GC_UNIFORM, -2, 2, 1);
    oc_gc_check(&t, oc_exp(t.g, oc_global_avg_pool(t.g, x)), "global_avg_pool");

    oc_gc_begin(&t, "linear3", 72);
    x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 4), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor w = oc_gc_input(&t, "w", OC_F64, OC_SHAPE(5, 4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor b = oc_gc_input(&t, "b", OC_F64, OC_SHAPE(5), OC_GC_UNIFORM, -1, 1, 1);
    oc_gc_check(&t, oc_tanh(t.g, oc_linear(t.g, x, w, b)), "linear(rank 3)");

    oc_gc_begin(&t, "conv-bias", 73);
    x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 2, 5, 5), OC_GC_UNIFORM, -1, 1, 1);
    w = oc_gc_input(&t, "w", OC_F64, OC_SHAPE(3, 2, 3, 3), OC_GC_UNIFORM, -1, 1, 1);
    b = oc_gc_input(&t, "b", OC_F64, OC_SHAPE(3), OC_GC_UNIFORM, -1, 1, 1);
    oc_gc_check(&t, oc_sigmoid(t.g, oc_conv2d_bias(t.g, x, w, b, 2, 1)), "conv2d_bias");
}

/* ---------------------------------------------------------------- WRN block */

/* BN (train) whose affine parameters keep every channel on one side of
 * the following ReLU's kink: gamma in [0.05, 0.15], |beta| in [0.6, 1]. */
static oc_tensor bn_away(struct oc_gc_case *t, const char *prefix, oc_tensor x)
{
    char n[4][64];
    int c = (int)t->g->nodes[x.id]->shape.dim[1];
    snprintf(n[0], 64, "%s.weight", prefix);
    snprintf(n[1], 64, "%s.bias", prefix);
    snprintf(n[2], 64, "%s.running_mean", prefix);
    snprintf(n[3], 64, "%s.running_var", prefix);
    oc_tensor ga = oc_param(t->g, n[0], OC_F64, OC_SHAPE(c), OC_INIT_ONES, 0, 0);
    oc_tensor be = oc_param(t->g, n[1], OC_F64, OC_SHAPE(c), OC_INIT_ZEROS, 0, 0);
    oc_tensor rm = oc_state(t->g, n[2], OC_F64, OC_SHAPE(c), OC_INIT_ZEROS, 0);
    oc_tensor rv = oc_state(t->g, n[3], OC_F64, OC_SHAPE(c), OC_INIT_ONES, 0);
    oc_gc_bind(t, n[0], OC_GC_UNIFORM, 0.05, 0.15, 1);
    oc_gc_bind(t, n[1], OC_GC_AWAY, 0.6, 1.0, 1);
    return oc_batchnorm(t->g, x, ga, be, rm, rv, 1, 0.1, 1e-5);
}

static oc_tensor conv_w(struct oc_gc_case *t, const char *name, int o, int i, int k)
{
    oc_tensor w = oc_param(t->g, name, OC_F64, OC_SHAPE(o, i, k, k), OC_INIT_ZEROS, 0, 0);
    double s = 1.0 / sqrt((double)(i * k * k));
    oc_gc_bind(t, t->g->nodes[w.id]->attrs.name, OC_GC_UNIFORM, -2 * s, 2 * s, 1);
    return w;
}

/* BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut (identity, or a 1x1 conv of the
 * activated input when the shape changes), as in models/wrn.c */
static oc_tensor wrn_block(struct oc_gc_case *t, oc_tensor x, int in, int out, int stride)
{
    oc_tensor o1 = oc_relu(t->g, bn_away(t, "bn1", x));
    oc_tensor y = oc_conv2d(t->g, o1, conv_w(t, "conv1.weight", out, in, 3), stride, 1);
    oc_tensor o2 = oc_relu(t->g, bn_away(t, "bn2", y));
    oc_tensor z = oc_conv2d(t->g, o2, conv_w(t, "conv2.weight", out, out, 3), 1, 1);
    oc_tensor sc = x;
    if (in != out || stride != 1)
        sc = oc_conv2d(t->g, o1, conv_w(t, "convShortcut.weight", out, in, 1), stride, 0);
    return oc_add(t->g, z, sc);
}

Test(gradcheck_composite, wrn_block)
{
    static const int cfg[2][3] = {{3, 3, 1}, {3, 4, 2}};
    for (int k = 0; k < 2; k++) {
        struct oc_gc_case t;
        oc_gc_begin(&t, "wrn-block", 80 + (uint64_t)k);
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, cfg[k][0], 5, 5), OC_GC_UNIFORM,
                                  -2, 2, 1);
        oc_tensor y = wrn_block(&t, x, cfg[k][0], cfg[k][1], cfg[k][2]);
        cr_assert_eq(oc_graph_status(t.g), OC_OK, "%s", t.g->err.msg);
        double m = oc_gc_kink_margin(t.g, t.b, t.n);
        cr_assert_gt(m, 1e-3, "relu input within %g of the kink", m);
        /* every coordinate of every parameter and of the input */
        oc_gc_check(&t, y, k ? "wrn block (projection shortcut)" : "wrn block (identity shortcut)");
    }
}

/* ---------------------------------------------------------------- double backward */

/* An input-gradient penalty, sum((d CE / d x)^2), differentiated again: the
 * rules' own outputs (conv2d_grad_*, unbroadcast sums, the one_hot of
 * gather's VJP, the max rule's comparisons) go through their rules. */
Test(gradcheck_composite, double_backward_gradient_penalty)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "penalty", 90);
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 2, 4, 4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor w = oc_gc_input(&t, "w", OC_F64, OC_SHAPE(3, 2, 3, 3), OC_GC_UNIFORM, -0.5, 0.5, 1);
    oc_tensor fw = oc_gc_input(&t, "fw", OC_F64, OC_SHAPE(4, 3), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor lab = oc_gc_index(&t, "labels", OC_SHAPE(2), 4);
    oc_tensor h = oc_tanh(t.g, oc_conv2d(t.g, x, w, 2, 1));
    h = oc_max(t.g, h, oc_scalar(t.g, OC_F64, -2.0)); /* tanh > -1: never a tie */
    oc_tensor loss = oc_cross_entropy(t.g, oc_linear(t.g, oc_global_avg_pool(t.g, h), fw, OC_NONE), lab);
    int wrt = x.id, gx;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(t.g, loss.id, -1, &wrt, 1, &gx, &err), OC_OK, "%s", err.msg);
    oc_tensor pen = oc_sum(t.g, oc_mul(t.g, (oc_tensor){gx}, (oc_tensor){gx}), 15u, 0);
    oc_gc_check(&t, oc_add(t.g, loss, pen), "ce + |d ce / d x|^2");
}
