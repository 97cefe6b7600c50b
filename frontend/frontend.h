/* frontend.h - the oodc DSL: C builder calls that create IR nodes.
 *
 * Builders take the graph first and return a tensor handle, like ggml's op
 * calls. Binary elementwise builders broadcast their operands numpy-style by
 * inserting explicit `broadcast` nodes (the IR's elementwise ops require equal
 * shapes). Errors are sticky in the graph: a failed builder returns OC_NONE,
 * later builders pass it on, and oc_graph_status(g) reports the first error.
 * Composites expand into primitives here; the IR never sees them.
 */
#ifndef OODC_FRONTEND_H
#define OODC_FRONTEND_H

#include "../ir/ir.h"

/* ---------------------------------------------------------------- sources */

oc_tensor oc_input(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s);
/* Trainable parameter. init_a/init_b as described at enum oc_init. */
oc_tensor oc_param(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s,
                   enum oc_init init, double init_a, double init_b);
/* Non-trained persistent state (BN running statistics, momenta). */
oc_tensor oc_state(struct oc_graph *g, const char *name, enum oc_dtype dt, struct oc_shape s,
                   enum oc_init init, double init_a);
oc_tensor oc_const_fill(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, double v);
oc_tensor oc_const_data(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s,
                        const double *values);
oc_tensor oc_scalar(struct oc_graph *g, enum oc_dtype dt, double v);
/* A rank-0 constant of x's dtype. */
oc_tensor oc_scalar_like(struct oc_graph *g, oc_tensor x, double v);
/* Counter-based random draws (Philox); `counter` is an i32 scalar tensor
 * (usually the training step) so every step draws a fresh, reproducible
 * stream. */
oc_tensor oc_rng_normal(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, uint64_t seed,
                        oc_tensor counter);
oc_tensor oc_rng_uniform(struct oc_graph *g, enum oc_dtype dt, struct oc_shape s, uint64_t seed,
                         oc_tensor counter);

/* ---------------------------------------------------------------- elementwise */

oc_tensor oc_neg(struct oc_graph *g, oc_tensor x);
oc_tensor oc_exp(struct oc_graph *g, oc_tensor x);
oc_tensor oc_log(struct oc_graph *g, oc_tensor x);
oc_tensor oc_sqrt(struct oc_graph *g, oc_tensor x);
oc_tensor oc_rsqrt(struct oc_graph *g, oc_tensor x);
oc_tensor oc_recip(struct oc_graph *g, oc_tensor x);
oc_tensor oc_abs(struct oc_graph *g, oc_tensor x);
oc_tensor oc_sign(struct oc_graph *g, oc_tensor x);
oc_tensor oc_relu(struct oc_graph *g, oc_tensor x);
oc_tensor oc_sigmoid(struct oc_graph *g, oc_tensor x);
oc_tensor oc_tanh(struct oc_graph *g, oc_tensor x);
oc_tensor oc_softplus(struct oc_graph *g, oc_tensor x);
oc_tensor oc_log1p(struct oc_graph *g, oc_tensor x);
oc_tensor oc_stop_gradient(struct oc_graph *g, oc_tensor x);
oc_tensor oc_cast(struct oc_graph *g, oc_tensor x, enum oc_dtype to);
/* Any unary op by enum (the ops.def name table drives tests and tools). */
oc_tensor oc_unary(struct oc_graph *g, enum oc_op op, oc_tensor x);

/* Binary ops broadcast numpy-style. */
oc_tensor oc_add(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_sub(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_mul(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_div(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_pow(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_max(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_min(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_lt(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_le(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_eq(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_ne(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_ge(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_gt(struct oc_graph *g, oc_tensor a, oc_tensor b);
oc_tensor oc_binary(struct oc_graph *g, enum oc_op op, oc_tensor a, oc_tensor b);
/* x * s and x + s for a double s (a scalar const of x's dtype). */
oc_tensor oc_scale(struct oc_graph *g, oc_tensor x, double s);
oc_tensor oc_add_scalar(struct oc_graph *g, oc_tensor x, double s);
/* cond != 0 ? a : b, broadcasting all three. */
oc_tensor oc_select(struct oc_graph *g, oc_tensor cond, oc_tensor a, oc_tensor b);

/* ---------------------------------------------------------------- layout */

oc_tensor oc_reshape(struct oc_graph *g, oc_tensor x, struct oc_shape s);
oc_tensor oc_permute(struct oc_graph *g, oc_tensor x, const int *perm);
oc_tensor oc_broadcast(struct oc_graph *g, oc_tensor x, struct oc_shape s);
/* step == NULL means 1 everywhere */
oc_tensor oc_slice(struct oc_graph *g, oc_tensor x, const int64_t *start, const int64_t *stop,
                   const int64_t *step);
oc_tensor oc_pad(struct oc_graph *g, oc_tensor x, const int64_t *lo, const int64_t *hi,
                 double value);
oc_tensor oc_concat(struct oc_graph *g, const oc_tensor *xs, int n, int axis);

/* ---------------------------------------------------------------- reductions */

/* axes is a bit mask (bit i = axis i). */
oc_tensor oc_sum(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims);
oc_tensor oc_reduce_max(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims);
oc_tensor oc_argmax(struct oc_graph *g, oc_tensor x, int axis, int keepdims);
/* All axes of x. */
uint32_t oc_all_axes(struct oc_graph *g, oc_tensor x);

/* ---------------------------------------------------------------- contractions */

oc_tensor oc_matmul(struct oc_graph *g, oc_tensor a, oc_tensor b, int trans_a, int trans_b);
oc_tensor oc_conv2d(struct oc_graph *g, oc_tensor x, oc_tensor w, int stride, int pad);
oc_tensor oc_conv2d_grad_input(struct oc_graph *g, oc_tensor dy, oc_tensor w,
                               struct oc_shape x_shape, int stride, int pad);
oc_tensor oc_conv2d_grad_weight(struct oc_graph *g, oc_tensor x, oc_tensor dy,
                                struct oc_shape w_shape, int stride, int pad);

/* ---------------------------------------------------------------- indexing, effects */

oc_tensor oc_one_hot(struct oc_graph *g, oc_tensor idx, int64_t depth, enum oc_dtype dt);
/* out[..] = x[.., idx[..], ..] along axis; idx has x's shape without axis. */
oc_tensor oc_gather(struct oc_graph *g, oc_tensor x, oc_tensor idx, int axis);
/* At the end of a step, target (a param or state) takes value. */
oc_tensor oc_assign(struct oc_graph *g, oc_tensor target, oc_tensor value);
/* Names an output. */
void oc_output(struct oc_graph *g, const char *name, oc_tensor t);

/* ---------------------------------------------------------------- composites */

/* x[..., in] @ w[out, in]^T + b[out] (PyTorch's nn.Linear layout); b may be OC_NONE. */
oc_tensor oc_linear(struct oc_graph *g, oc_tensor x, oc_tensor w, oc_tensor b);
/* conv2d plus a per-output-channel bias b[O] (may be OC_NONE). */
oc_tensor oc_conv2d_bias(struct oc_graph *g, oc_tensor x, oc_tensor w, oc_tensor b, int stride,
                         int pad);
/* Batch normalization over axis 1 of [N,C] or [N,C,H,W]. Train mode uses the
 * batch's statistics and assigns running_mean/var <- (1-m)*running + m*batch
 * (running variance unbiased, as PyTorch); eval mode uses the running ones. */
oc_tensor oc_batchnorm(struct oc_graph *g, oc_tensor x, oc_tensor gamma, oc_tensor beta,
                       oc_tensor running_mean, oc_tensor running_var, int train, double momentum,
                       double eps);
/* Declares gamma/beta params and running-stat state named prefix.{weight,
 * bias,running_mean,running_var} (PyTorch names) and applies oc_batchnorm. */
oc_tensor oc_batchnorm_layer(struct oc_graph *g, const char *prefix, oc_tensor x, int train);
oc_tensor oc_softmax(struct oc_graph *g, oc_tensor x, int axis);
/* Max-subtracted, stable for logits of any magnitude. */
oc_tensor oc_log_softmax(struct oc_graph *g, oc_tensor x, int axis);
oc_tensor oc_logsumexp(struct oc_graph *g, oc_tensor x, int axis, int keepdims);
/* Mean over the batch of -log softmax(logits)[label]; logits [B,K], labels i32[B]. */
oc_tensor oc_cross_entropy(struct oc_graph *g, oc_tensor logits, oc_tensor labels);
/* Binary cross-entropy on logits with targets t in {0,1} (same shape):
 * mean over rows of the sum over the last axis of
 *   -[t log sigmoid(x) + neg_weight (1-t) log(1 - sigmoid(x))],
 * computed with softplus so it is stable for large |x|. */
oc_tensor oc_sigmoid_bce(struct oc_graph *g, oc_tensor logits, oc_tensor targets,
                         double neg_weight);
oc_tensor oc_mean(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims);
/* Biased (population) variance. */
oc_tensor oc_variance(struct oc_graph *g, oc_tensor x, uint32_t axes, int keepdims);
/* [N,C,H,W] -> [N,C] */
oc_tensor oc_global_avg_pool(struct oc_graph *g, oc_tensor x);
/* KL(N(mu_q, sd_q^2) || N(mu_p, sd_p^2)) of diagonal Gaussians, summed over
 * the last axis (operands broadcast). */
oc_tensor oc_kl_diag_gaussian(struct oc_graph *g, oc_tensor mu_q, oc_tensor sd_q,
                              oc_tensor mu_p, oc_tensor sd_p);
/* Weighted MMCE (Kumar, Sarawagi & Jain 2018) over a batch: conf[B] are the
 * confidences r_i, correct[B] in {0,1} the correctness c_i; Laplacian kernel
 * k(r, r') = exp(-|r - r'| / bandwidth). See frontend/composites.c for the
 * normalization. */
oc_tensor oc_mmce_weighted(struct oc_graph *g, oc_tensor conf, oc_tensor correct,
                           double bandwidth);

#endif
