/* head-binc.c - the BINC head (paper, section 3, eq. 4): the trunk's
 * features go through a linear layer to a z-dimensional output space, from
 * which two linear heads read independently: a softmax classifier (cross
 * entropy; it makes the predictions) and a BIN branch (K sigmoids, the
 * zeta-weighted BIN loss; its largest sigmoid is the OOD confidence). The
 * trainable calibration loss MMCE (Kumar, Sarawagi & Jain 2018), weighted by
 * lambda, is applied to the softmax branch's confidence. */
#include "models.h"

static void build(struct oc_graph *g, oc_tensor f, oc_tensor labels, oc_tensor step,
                  const struct oc_head_cfg *c, int train, struct oc_head_out *out)
{
    enum oc_dtype dt = g->nodes[f.id]->dtype;
    int64_t fdim = g->nodes[f.id]->shape.dim[1];
    int64_t k = c->nclasses, z = c->zdim;
    oc_tensor wz = oc_param(g, "fc_z.weight", dt, OC_SHAPE(z, fdim), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor bz = oc_param(g, "fc_z.bias", dt, OC_SHAPE(z), OC_INIT_ZEROS, 0, 0);
    oc_tensor h = oc_linear(g, f, wz, bz);
    oc_tensor w = oc_param(g, "fc.weight", dt, OC_SHAPE(k, z), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b = oc_param(g, "fc.bias", dt, OC_SHAPE(k), OC_INIT_ZEROS, 0, 0);
    oc_tensor wb = oc_param(g, "fc_bin.weight", dt, OC_SHAPE(k, z), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor bb = oc_param(g, "fc_bin.bias", dt, OC_SHAPE(k), OC_INIT_ZEROS, 0, 0);
    out->logits = oc_linear(g, h, w, b);
    out->bin_logits = oc_linear(g, h, wb, bb);
    if (!oc_valid(labels)) return;
    /* K(theta): softmax cross-entropy of the first branch */
    oc_tensor ce = oc_cross_entropy(g, out->logits, labels);
    /* L_BIN(theta): the BIN loss of the second branch (see head-bin.c for
     * why it is the weighted log-likelihood rather than eq. 3 as printed) */
    oc_tensor t = oc_one_hot(g, labels, k, dt);
    oc_tensor lbin = oc_sigmoid_bce(g, out->bin_logits, t, c->zeta);
    /* MMCE_w of the softmax branch: confidence = max softmax probability,
     * correctness = (argmax == label) as 0/1, a constant for the gradient */
    oc_tensor conf = oc_reduce_max(g, oc_softmax(g, out->logits, 1), 2u, 0);
    oc_tensor pred = oc_argmax(g, out->logits, 1, 0);
    oc_tensor correct = oc_stop_gradient(g, oc_cast(g, oc_eq(g, pred, labels), dt));
    oc_tensor mmce = oc_mmce_weighted(g, conf, correct, c->mmce_bw);
    out->loss = oc_add(g, oc_add(g, ce, lbin), oc_scale(g, mmce, c->lambda));
}

const struct oc_head oc_head_binc = {
    .name = "binc",
    .summary = "z-dim layer, softmax + BIN branches, lambda * MMCE on the softmax confidence",
    .build = build,
};
