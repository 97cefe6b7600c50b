/* composites.c - DSL composites expanded into primitives: layers (linear,
 * conv with bias, batchnorm), normalizers (softmax family), losses (cross
 * entropy, weighted sigmoid BCE, MMCE) and statistics. The IR, autodiff and
 * fusion only ever see the primitives these emit. */
#include "frontend.h"

#include <stdio.h>
#include <string.h>

static const struct oc_node *node(struct oc_graph *g, oc_tensor t) { return g->nodes[t.id]; }
#define OK(t) (oc_valid(t) && !g->err.code)

static int64_t reduced_count(struct oc_graph *g, oc_tensor x, uint32_t axes)
{
    int64_t n = 1;
    const struct oc_shape *s = &node(g, x)->shape;
    for (int i = 0; i < s->rank; i++)
        if (axes & (1u << i)) n *= s->dim[i];
    return n;
}

/* Shape of x with `axis` set to 1 (for keepdims-style broadcasting of a
 * per-channel vector). */
static struct oc_shape channel_shape(const struct oc_shape *x, int axis)
{
    struct oc_shape s = *x;
    for (int i = 0; i < s.rank; i++) s.dim[i] = i == axis ? x->dim[i] : 1;
    return s;
}

oc_tensor oc_linear(struct oc_graph *g, oc_tensor x, oc_tensor w, oc_tensor b)
{
    if (!OK(x) || !OK(w)) return OC_NONE;
    struct oc_shape xs = node(g, x)->shape;
    oc_tensor x2 = x;
    if (xs.rank != 2) {
        if (xs.rank < 1) {
            oc_err_set(&g->err, OC_ERR_SHAPE, "linear: input %%%d must have rank >= 1", x.id);
            return OC_NONE;
        }
        int64_t k = xs.dim[xs.rank - 1];
        x2 = oc_reshape(g, x, OC_SHAPE(oc_shape_numel(&xs) / (k ? k : 1), k));
    }
    oc_tensor y = oc_matmul(g, x2, w, 0, 1);
    if (xs.rank != 2 && OK(y)) {
        struct oc_shape ys = xs;
        ys.dim[ys.rank - 1] = node(g, w)->shape.dim[0];
        y = oc_reshape(g, y, ys);
    }
    if (oc_valid(b)) y = oc_add(g, y, b);
    return y;
}

oc_tensor oc_conv2d_bias(struct oc_graph *g, oc_tensor x, oc_tensor w, oc_tensor b, int stride,
                         int pad)
{
    oc_tensor y = oc_conv2d(g, x, w, stride, pad);
    if (!oc_valid(b) || !OK(y)) return y;
    return oc_add(g, y, oc_reshape(g, b, channel_shape(&node(g, y)->shape, 1)));
}

oc_tensor oc_mean(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims)
{
    if (!OK(x)) return OC_NONE;
    int64_t n = reduced_count(g, x, axes);
    oc_tensor s = oc_sum(g, x, axes, keepdims);
    return oc_scale(g, s, n ? 1.0 / (double)n : 0.0);
}

oc_tensor oc_variance(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims)
{
    oc_tensor d = oc_sub(g, x, oc_mean(g, x, axes, 1));
    return oc_mean(g, oc_mul(g, d, d), axes, keepdims);
}

oc_tensor oc_batchnorm(struct oc_graph *g, oc_tensor x, oc_tensor gamma, oc_tensor beta,
                       oc_tensor running_mean, oc_tensor running_var, int train, double momentum,
                       double eps)
{
    if (!OK(x)) return OC_NONE;
    struct oc_shape xs = node(g, x)->shape;
    if (xs.rank != 2 && xs.rank != 4) {
        char b[128];
        oc_err_set(&g->err, OC_ERR_SHAPE, "batchnorm: input %%%d %s must be [N,C] or [N,C,H,W]",
                   x.id, oc_shape_str(&xs, b, sizeof b));
        return OC_NONE;
    }
    struct oc_shape cs = channel_shape(&xs, 1);
    struct oc_shape c1 = OC_SHAPE(xs.dim[1]);
    uint32_t axes = oc_all_axes(g, x) & ~2u;
    oc_tensor mean, var;
    if (train) {
        mean = oc_mean(g, x, axes, 1);
        oc_tensor d = oc_sub(g, x, mean);
        var = oc_mean(g, oc_mul(g, d, d), axes, 1);
        /* running statistics: PyTorch's update, unbiased variance */
        int64_t n = reduced_count(g, x, axes);
        double unbias = n > 1 ? (double)n / (double)(n - 1) : 1.0;
        oc_tensor m1 = oc_reshape(g, oc_stop_gradient(g, mean), c1);
        oc_tensor v1 = oc_reshape(g, oc_stop_gradient(g, var), c1);
        oc_assign(g, running_mean,
                  oc_add(g, oc_scale(g, running_mean, 1.0 - momentum), oc_scale(g, m1, momentum)));
        oc_assign(g, running_var,
                  oc_add(g, oc_scale(g, running_var, 1.0 - momentum),
                         oc_scale(g, v1, momentum * unbias)));
        oc_tensor y = oc_mul(g, d, oc_rsqrt(g, oc_add_scalar(g, var, eps)));
        return oc_add(g, oc_mul(g, y, oc_reshape(g, gamma, cs)), oc_reshape(g, beta, cs));
    }
    mean = oc_reshape(g, running_mean, cs);
    var = oc_reshape(g, running_var, cs);
    oc_tensor y = oc_mul(g, oc_sub(g, x, mean), oc_rsqrt(g, oc_add_scalar(g, var, eps)));
    return oc_add(g, oc_mul(g, y, oc_reshape(g, gamma, cs)), oc_reshape(g, beta, cs));
}

oc_tensor oc_batchnorm_layer(struct oc_graph *g, const char *prefix, oc_tensor x, int train)
{
    if (!OK(x)) return OC_NONE;
    enum oc_dtype dt = node(g, x)->dtype;
    struct oc_shape c1 = OC_SHAPE(node(g, x)->shape.dim[1]);
    char n[4][256];
    snprintf(n[0], sizeof n[0], "%s.weight", prefix);
    snprintf(n[1], sizeof n[1], "%s.bias", prefix);
    snprintf(n[2], sizeof n[2], "%s.running_mean", prefix);
    snprintf(n[3], sizeof n[3], "%s.running_var", prefix);
    oc_tensor gamma = oc_param(g, n[0], dt, c1, OC_INIT_ONES, 0, 0);
    oc_tensor beta = oc_param(g, n[1], dt, c1, OC_INIT_ZEROS, 0, 0);
    oc_tensor rm = oc_state(g, n[2], dt, c1, OC_INIT_ZEROS, 0);
    oc_tensor rv = oc_state(g, n[3], dt, c1, OC_INIT_ONES, 0);
    return oc_batchnorm(g, x, gamma, beta, rm, rv, train, 0.1, 1e-5);
}

/* The row maximum, held constant for differentiation: softmax and friends
 * are invariant to the shift, so its gradient contribution is exactly zero. */
static oc_tensor row_max(struct oc_graph *g, oc_tensor x, int axis)
{
    return oc_stop_gradient(g, oc_reduce_max(g, x, 1u << axis, 1));
}

oc_tensor oc_softmax(struct oc_graph *g, oc_tensor x, int axis)
{
    if (!OK(x)) return OC_NONE;
    oc_tensor e = oc_exp(g, oc_sub(g, x, row_max(g, x, axis)));
    return oc_div(g, e, oc_sum(g, e, 1u << axis, 1));
}

oc_tensor oc_log_softmax(struct oc_graph *g, oc_tensor x, int axis)
{
    if (!OK(x)) return OC_NONE;
    oc_tensor z = oc_sub(g, x, row_max(g, x, axis));
    return oc_sub(g, z, oc_log(g, oc_sum(g, oc_exp(g, z), 1u << axis, 1)));
}

oc_tensor oc_logsumexp(struct oc_graph *g, oc_tensor x, int axis, int keepdims)
{
    if (!OK(x)) return OC_NONE;
    oc_tensor m = row_max(g, x, axis);
    oc_tensor s = oc_add(g, m, oc_log(g, oc_sum(g, oc_exp(g, oc_sub(g, x, m)), 1u << axis, 1)));
    if (keepdims || !OK(s)) return s;
    struct oc_shape rs = node(g, x)->shape;
    for (int i = axis; i < rs.rank - 1; i++) rs.dim[i] = rs.dim[i + 1];
    rs.rank--;
    return oc_reshape(g, s, rs);
}

oc_tensor oc_cross_entropy(struct oc_graph *g, oc_tensor logits, oc_tensor labels)
{
    if (!OK(logits) || !OK(labels)) return OC_NONE;
    if (node(g, logits)->shape.rank != 2) {
        oc_err_set(&g->err, OC_ERR_SHAPE, "cross_entropy: logits %%%d must be [B,K]", logits.id);
        return OC_NONE;
    }
    oc_tensor picked = oc_gather(g, oc_log_softmax(g, logits, 1), labels, 1);
    return oc_neg(g, oc_mean(g, picked, 1u, 0));
}

oc_tensor oc_sigmoid_bce(struct oc_graph *g, oc_tensor logits, oc_tensor targets,
                         double neg_weight)
{
    if (!OK(logits) || !OK(targets)) return OC_NONE;
    /* -log sigmoid(x) = softplus(-x);  -log(1 - sigmoid(x)) = softplus(x) */
    oc_tensor pos = oc_mul(g, targets, oc_softplus(g, oc_neg(g, logits)));
    oc_tensor nott = oc_sub(g, oc_scalar_like(g, targets, 1.0), targets);
    oc_tensor neg = oc_scale(g, oc_mul(g, nott, oc_softplus(g, logits)), neg_weight);
    oc_tensor l = oc_add(g, pos, neg);
    if (!OK(l)) return OC_NONE;
    int r = node(g, l)->shape.rank;
    if (r == 0) return l;
    oc_tensor per_row = oc_sum(g, l, 1u << (r - 1), 0);
    if (r == 1) return per_row;
    return oc_mean(g, per_row, oc_all_axes(g, per_row), 0);
}

oc_tensor oc_global_avg_pool(struct oc_graph *g, oc_tensor x)
{
    if (!OK(x)) return OC_NONE;
    if (node(g, x)->shape.rank != 4) {
        oc_err_set(&g->err, OC_ERR_SHAPE, "global_avg_pool: input %%%d must be [N,C,H,W]", x.id);
        return OC_NONE;
    }
    return oc_mean(g, x, 4u | 8u, 0);
}

oc_tensor oc_kl_diag_gaussian(struct oc_graph *g, oc_tensor mu_q, oc_tensor sd_q, oc_tensor mu_p,
                              oc_tensor sd_p)
{
    /* KL = log(sd_p/sd_q) + (sd_q^2 + (mu_q - mu_p)^2) / (2 sd_p^2) - 1/2 */
    oc_tensor d = oc_sub(g, mu_q, mu_p);
    oc_tensor num = oc_add(g, oc_mul(g, sd_q, sd_q), oc_mul(g, d, d));
    oc_tensor den = oc_scale(g, oc_mul(g, sd_p, sd_p), 2.0);
    oc_tensor kl = oc_add(g, oc_sub(g, oc_log(g, sd_p), oc_log(g, sd_q)),
                          oc_add_scalar(g, oc_div(g, num, den), -0.5));
    if (!OK(kl)) return OC_NONE;
    int r = node(g, kl)->shape.rank;
    return r ? oc_sum(g, kl, 1u << (r - 1), 0) : kl;
}

/* Weighted MMCE (Kumar, Sarawagi & Jain, ICML 2018, sec. 4):
 *   MMCE_w^2 = sum_{i,j in C} (1-r_i)(1-r_j) k_ij / m^2 + sum_{i,j in W} r_i r_j k_ij / n^2
 *              - 2 sum_{i in C, j in W} (1-r_i) r_j k_ij / (m n)
 * with C the correct and W the wrong predictions, m = |C|, n = |W|. That is
 * the quadratic form v^T K v with v_i = c_i (1-r_i)/m - (1-c_i) r_i/n, which
 * is what is built: one pairwise sum. Normalization: m and n are the batch's
 * counts plus 1e-5 (a batch with no correct or no wrong prediction gives the
 * remaining term alone, as in the reference code), and the result is
 * sqrt(v^T K v + 1e-10) (the reference code's epsilon keeps the gradient
 * finite at 0). The reference code's extra factor (|C| |W|) is not applied:
 * lambda alone scales the term, as in the paper's eq. (4). */
oc_tensor oc_mmce_weighted(struct oc_graph *g, oc_tensor conf, oc_tensor correct,
                           double bandwidth)
{
    if (!OK(conf) || !OK(correct)) return OC_NONE;
    if (node(g, conf)->shape.rank != 1) {
        oc_err_set(&g->err, OC_ERR_SHAPE, "mmce: confidences %%%d must be rank 1", conf.id);
        return OC_NONE;
    }
    int64_t b = node(g, conf)->shape.dim[0];
    oc_tensor c = oc_stop_gradient(g, correct);
    oc_tensor w = oc_sub(g, oc_scalar_like(g, c, 1.0), c);
    oc_tensor m = oc_add_scalar(g, oc_sum(g, c, 1u, 0), 1e-5);
    oc_tensor n = oc_add_scalar(g, oc_sum(g, w, 1u, 0), 1e-5);
    oc_tensor one_minus_r = oc_sub(g, oc_scalar_like(g, conf, 1.0), conf);
    oc_tensor v = oc_sub(g, oc_div(g, oc_mul(g, c, one_minus_r), m),
                         oc_div(g, oc_mul(g, w, conf), n));
    oc_tensor rc = oc_reshape(g, conf, OC_SHAPE(b, 1)), rr = oc_reshape(g, conf, OC_SHAPE(1, b));
    oc_tensor k = oc_exp(g, oc_scale(g, oc_abs(g, oc_sub(g, rc, rr)), -1.0 / bandwidth));
    oc_tensor vc = oc_reshape(g, v, OC_SHAPE(b, 1)), vr = oc_reshape(g, v, OC_SHAPE(1, b));
    oc_tensor q = oc_sum(g, oc_mul(g, oc_mul(g, vc, k), vr), 3u, 0);
    return oc_sqrt(g, oc_add_scalar(g, q, 1e-10));
}
