/* heads.c - the registry of heads and the whole-model builder. A new head
 * is one file defining a `const struct oc_head` and one line in the table
 * below. */
#include "models.h"

#include <string.h>

extern const struct oc_head oc_head_baseline;
extern const struct oc_head oc_head_bin, oc_head_binc, oc_head_vib, oc_head_viby;

const struct oc_head *const oc_heads[] = {
    &oc_head_baseline,
    &oc_head_bin,
    &oc_head_binc,
    &oc_head_vib,
    &oc_head_viby,
    NULL,
};

const struct oc_head *oc_head_find(const char *name)
{
    for (int i = 0; oc_heads[i]; i++)
        if (!strcmp(oc_heads[i]->name, name)) return oc_heads[i];
    return NULL;
}

struct oc_head_cfg oc_head_cfg_default(const char *head, int nclasses)
{
    struct oc_head_cfg c = {
        .nclasses = nclasses,
        .zdim = 64,
        .zeta = 0.05,
        .lambda = 0.5,
        .mmce_bw = 0.4,
        .beta = head && !strcmp(head, "viby") ? 0.01 : 0.005,
        .test_samples = 12,
    };
    return c;
}

void oc_model_build(struct oc_graph *g, const struct oc_model_cfg *c, oc_tensor x,
                    oc_tensor labels, oc_tensor step, int train, struct oc_head_out *out)
{
    memset(out, 0, sizeof *out);
    out->logits = out->loss = out->bin_logits = out->mu = out->sd = OC_NONE;
    out->prior_mu = out->prior_sd = out->features = OC_NONE;
    if (!oc_valid(x) || g->err.code) return;
    enum oc_dtype dt = g->nodes[x.id]->dtype;
    struct oc_shape cs = OC_SHAPE(c->wrn.in_ch);
    struct oc_shape bs = OC_SHAPE(1, c->wrn.in_ch, 1, 1);
    oc_tensor mean = oc_state(g, "normalize.mean", dt, cs, OC_INIT_ZEROS, 0);
    oc_tensor std = oc_state(g, "normalize.std", dt, cs, OC_INIT_ONES, 0);
    oc_tensor xn = oc_div(g, oc_sub(g, x, oc_reshape(g, mean, bs)), oc_reshape(g, std, bs));
    oc_tensor f = oc_wrn_trunk(g, &c->wrn, xn, train);
    c->head->build(g, f, labels, step, &c->hc, train, out);
    out->features = f;
}
