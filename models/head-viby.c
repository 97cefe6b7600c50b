/* head-viby.c - the VIBY head (paper, section 3): VIB with one trainable
 * Gaussian prior per class. Training bottlenecks q(z|x) through the prior
 * of the true class:
 *   loss = CE(decode(mu + sd * eps), y) + beta * KL(q(z|x) || N(prior_mu[y], prior_sd[y]^2)),
 * beta = 0.01. The confidences weigh the per-class KLs by the predicted
 * class probabilities (VIBY-I, eq. 6) or take the smallest (VIBY-II, eq. 7);
 * both are scorers in ood/scorers.c. */
#include "vib-impl.h"

static void build(struct oc_graph *g, oc_tensor f, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    oc_vib_encode(g, f, c, &out->mu, &out->sd);
    oc_vib_priors(g, dt, c->nclasses, c->zdim, &out->prior_mu, &out->prior_sd);
    out->logits = oc_vib_decode(g, out->mu, out->sd, step, c, train);
    if (!oc_valid(labels)) return;
    /* the rows of the true classes' priors: one_hot(y) @ prior, [B,Z] */
    oc_tensor t = oc_one_hot(g, labels, c->nclasses, dt);
    oc_tensor pm = oc_matmul(g, t, out->prior_mu, 0, 0);
    oc_tensor ps = oc_matmul(g, t, out->prior_sd, 0, 0);
    oc_tensor kl = oc_kl_diag_gaussian(g, out->mu, out->sd, pm, ps); /* [B] */
    out->loss = oc_add(g, oc_cross_entropy(g, out->logits, labels),
                       oc_scale(g, oc_mean(g, kl, 1u, 0), c->beta));
}

const struct oc_head oc_head_viby = {
    .name = "viby",
    .summary = "VIB with a trainable Gaussian prior per class (KL to the true class's prior)",
    .build = build,
};
