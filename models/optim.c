/* optim.c - the optimizer step as graph nodes: SGD with Nesterov momentum and
 * weight decay, written as assigns so the update is part of the compiled
 * training step and fusion can merge it across parameters. */
#include "models.h"

#include <stdio.h>

void oc_sgd_nesterov(struct oc_graph *g, const oc_tensor *params, const oc_tensor *grads, int n,
                     oc_tensor lr, double momentum, double weight_decay, const int *wd_mask)
{
    for (int i = 0; i < n; i++) {
        if (!oc_valid(params[i]) || !oc_valid(grads[i]) || g->err.code) return;
        const struct oc_node *p = g->nodes[params[i].id];
        char name[512];
        snprintf(name, sizeof name, "%s.momentum_buffer", p->attrs.name ? p->attrs.name : "param");
        oc_tensor buf = oc_state(g, name, p->dtype, p->shape, OC_INIT_ZEROS, 0);
        oc_tensor d = grads[i];
        if (weight_decay != 0 && (!wd_mask || wd_mask[i]))
            d = oc_add(g, d, oc_scale(g, params[i], weight_decay));
        oc_tensor nb = oc_add(g, oc_scale(g, buf, momentum), d);
        oc_tensor step = oc_add(g, d, oc_scale(g, nb, momentum));
        oc_assign(g, buf, nb);
        oc_assign(g, params[i], oc_sub(g, params[i], oc_mul(g, lr, step)));
    }
}
