/* vib-impl.h - what the VIB and VIBY heads share (models/head-vib.c defines
 * it): the Gaussian encoder q(z|x), the sampling decoder and the trainable
 * diagonal Gaussian priors. Kept inside models/. */
#ifndef OODC_MODELS_VIB_IMPL_H
#define OODC_MODELS_VIB_IMPL_H

#include "models.h"

/* q(z|x) = N(mu, diag(sd^2)) from the trunk's features: two linear layers
 * "enc_mu" and "enc_sd" ([Z, F]); sd = softplus(a - 5) as in Alemi et al.'s
 * reference code, so training starts from a nearly deterministic encoder. */
void oc_vib_encode(struct oc_graph *g, oc_tensor f, const struct oc_head_cfg *c, oc_tensor *mu,
                   oc_tensor *sd);

/* The decoder "fc" (linear z -> K) applied to samples z = mu + sd * eps,
 * eps ~ N(0, I) drawn by oc_rng_normal with counter `step` (a constant 0
 * when step is OC_NONE). Training: one reparameterized sample; the result
 * is its logits. Test: c->test_samples samples, and the result is
 * log(mean_s softmax(logits_s)), so softmax(result) is the predictive
 * distribution averaged over samples and argmax(result) the prediction;
 * test_samples <= 0 decodes the mean mu instead. */
oc_tensor oc_vib_decode(struct oc_graph *g, oc_tensor mu, oc_tensor sd, oc_tensor step,
                        const struct oc_head_cfg *c, int train);

/* P trainable priors N(prior_mu, diag(softplus(prior_rho)^2)), each [P, Z]:
 * params "prior_mu" (zeros) and "prior_rho" (log(e - 1), so sd starts at 1). */
void oc_vib_priors(struct oc_graph *g, enum oc_dtype dt, int64_t p, int64_t z, oc_tensor *prior_mu,
                   oc_tensor *prior_sd);

#endif
