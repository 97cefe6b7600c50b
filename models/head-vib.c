/* head-vib.c - the VIB head (Alemi et al. 2016; for OOD, Alemi et al. 2018):
 * the trunk's features parameterize a Gaussian q(z|x) over a z-dimensional
 * latent (z = 64), a sample of it is decoded to class logits, and the
 * information in z is bottlenecked by a trainable prior:
 *   loss = CE(decode(mu + sd * eps), y) + beta * KL(q(z|x) || N(prior_mu, prior_sd^2)).
 * The OOD confidence is exp(-KL(q(z|x) || prior)) (eq. 5; scorer "vib").
 * The encoder, decoder and priors are shared with VIBY (vib-impl.h). */
#include "vib-impl.h"

#include <math.h>

void oc_vib_encode(struct oc_graph *g, oc_tensor f, const struct oc_head_cfg *c, oc_tensor *mu,
                   oc_tensor *sd)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    int64_t fdim = g->nodes[f.id]->shape.dim[1], z = c->zdim;
    oc_tensor wm = oc_param(g, "enc_mu.weight", dt, OC_SHAPE(z, fdim), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor bm = oc_param(g, "enc_mu.bias", dt, OC_SHAPE(z), OC_INIT_ZEROS, 0, 0);
    oc_tensor ws = oc_param(g, "enc_sd.weight", dt, OC_SHAPE(z, fdim), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor bs = oc_param(g, "enc_sd.bias", dt, OC_SHAPE(z), OC_INIT_ZEROS, 0, 0);
    *mu = oc_linear(g, f, wm, bm);
    *sd = oc_softplus(g, oc_add_scalar(g, oc_linear(g, f, ws, bs), -5.0));
}

/* A fixed seed for the latent noise; the step counter varies the draws. */
#define VIB_SEED 0x5649425aULL

oc_tensor oc_vib_decode(struct oc_graph *g, oc_tensor mu, oc_tensor sd, oc_tensor step,
                        const struct oc_head_cfg *c, int train)
{
    if (!oc_valid(mu) || g->err.code) return OC_NONE;
    enum oc_dtype dt = g->nodes[mu.id]->dtype;
    struct oc_shape ms = g->nodes[mu.id]->shape;
    int64_t b = ms.dim[0], z = ms.dim[1], k = c->nclasses;
    oc_tensor w = oc_param(g, "fc.weight", dt, OC_SHAPE(k, z), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor bias = oc_param(g, "fc.bias", dt, OC_SHAPE(k), OC_INIT_ZEROS, 0, 0);
    oc_tensor ctr = oc_valid(step) ? step : oc_scalar(g, OC_I32, 0);
    if (train) {
        oc_tensor eps = oc_rng_normal(g, dt, OC_SHAPE(b, z), VIB_SEED, ctr);
        return oc_linear(g, oc_add(g, mu, oc_mul(g, sd, eps)), w, bias);
    }
    if (c->test_samples <= 0) return oc_linear(g, mu, w, bias);
    int64_t s = c->test_samples;
    oc_tensor eps = oc_rng_normal(g, dt, OC_SHAPE(s, b, z), VIB_SEED, ctr);
    oc_tensor zs = oc_add(g, mu, oc_mul(g, sd, eps));               /* [S,B,Z] */
    oc_tensor ls = oc_log_softmax(g, oc_linear(g, zs, w, bias), 2); /* [S,B,K] */
    /* log of the sample mean of the softmax, computed stably */
    return oc_add_scalar(g, oc_logsumexp(g, ls, 0, 0), -log((double)s));
}

void oc_vib_priors(struct oc_graph *g, enum oc_dtype dt, int64_t p, int64_t z, oc_tensor *prior_mu,
                   oc_tensor *prior_sd)
{
    *prior_mu = oc_param(g, "prior_mu", dt, OC_SHAPE(p, z), OC_INIT_ZEROS, 0, 0);
    oc_tensor rho = oc_param(g, "prior_rho", dt, OC_SHAPE(p, z), OC_INIT_CONST, 0.54132485461291810 /* log(e - 1) */, 0);
    *prior_sd = oc_softplus(g, rho);
}

static void build(struct oc_graph *g, oc_tensor f, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    oc_vib_encode(g, f, c, &out->mu, &out->sd);
    oc_vib_priors(g, dt, 1, c->zdim, &out->prior_mu, &out->prior_sd);
    out->logits = oc_vib_decode(g, out->mu, out->sd, step, c, train);
    if (!oc_valid(labels)) return;
    oc_tensor kl = oc_kl_diag_gaussian(g, out->mu, out->sd, out->prior_mu, out->prior_sd); /* [B] */
    out->loss = oc_add(g, oc_cross_entropy(g, out->logits, labels),
                       oc_scale(g, oc_mean(g, kl, 1u, 0), c->beta));
}

const struct oc_head oc_head_vib = {
    .name = "vib",
    .summary = "variational information bottleneck, z = 64, one trainable Gaussian prior",
    .build = build,
};
