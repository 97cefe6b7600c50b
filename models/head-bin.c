/* head-bin.c - the BIN head (paper, section 3): K independent sigmoid
 * classifiers on the trunk's features, one per class, trained one-vs-rest.
 * The confidence is the largest sigmoid (scorer "bin" in ood/scorers.c), so
 * an input unlike every class can have low confidence for all of them,
 * which a softmax cannot express. */
#include "models.h"

static void build(struct oc_graph *g, oc_tensor f, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    int64_t fdim = g->nodes[f.id]->shape.dim[1];
    oc_tensor w = oc_param(g, "fc.weight", dt, OC_SHAPE(c->nclasses, fdim), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b = oc_param(g, "fc.bias", dt, OC_SHAPE(c->nclasses), OC_INIT_ZEROS, 0, 0);
    out->bin_logits = oc_linear(g, f, w, b);
    /* sigmoid is monotone: the predicted class is the argmax of the logits */
    out->logits = out->bin_logits;
    if (!oc_valid(labels)) return;
    /* Eq. (3) as printed sums the sigmoid probabilities themselves; the
     * method it describes (per-class binary classifiers, the negatives
     * weighted by zeta against the k-1 : 1 imbalance) is the weighted
     * log-likelihood, which is what is minimized here:
     *   -sum_k [ t_k log s(p_k) + zeta (1 - t_k) log(1 - s(p_k)) ],
     * averaged over the batch (oc_sigmoid_bce, stable via softplus). */
    oc_tensor t = oc_one_hot(g, labels, c->nclasses, dt);
    out->loss = oc_sigmoid_bce(g, out->bin_logits, t, c->zeta);
}

const struct oc_head oc_head_bin = {
    .name = "bin",
    .summary = "K sigmoid one-vs-rest classifiers, zeta-weighted binary cross-entropy",
    .build = build,
};
