/* head-baseline.c - the Baseline head (Hendrycks & Gimpel 2016): a linear
 * layer to K logits trained with softmax cross-entropy. Baseline, Baseline+T,
 * ODIN, Energy, MaxLogit and Mahalanobis all score this head. */
#include "models.h"

static void build(struct oc_graph *g, oc_tensor f, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    int64_t fdim = g->nodes[f.id]->shape.dim[1];
    oc_tensor w = oc_param(g, "fc.weight", dt, OC_SHAPE(c->nclasses, fdim), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b = oc_param(g, "fc.bias", dt, OC_SHAPE(c->nclasses), OC_INIT_ZEROS, 0, 0);
    out->logits = oc_linear(g, f, w, b);
    if (oc_valid(labels)) out->loss = oc_cross_entropy(g, out->logits, labels);
}

const struct oc_head oc_head_baseline = {
    .name = "baseline",
    .summary = "linear head, softmax cross-entropy",
    .build = build,
};
