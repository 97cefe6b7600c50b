/* test-gradcheck-wrn.c - the gradient of a whole WRN-16-1 (models/wrn.c:
 * 3 groups of 2 pre-activation blocks, 16/16/32/64 channels) with a linear
 * classifier and cross-entropy, in train-mode BN, against central finite
 * differences in f64 on random coordinates of every parameter and of the
 * input (a 2x3x8x8 batch keeps it fast).
 *
 * Kinks are avoided by construction, not by skipping: every BN gets gamma in
 * [0.05, 0.15] and |beta| in [0.6, 1] (negative for a quarter of them), so
 * each channel after BN-ReLU is either strictly positive or strictly zero; the
 * margin is asserted, and so is that most checked gradients are well above
 * the finite-difference noise (not trivially zero). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../models/models.h"
#include "../helpers/gradcheck.h"
#include "../helpers/helpers.h"

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Builds WRN-16-1 + fc + CE and binds every parameter. */
static oc_tensor build(struct oc_gc_case *t)
{
    struct oc_wrn_config cfg = {.depth = 16, .width = 1, .in_ch = 3, .size = 8, .nclasses = 10};
    oc_tensor x = oc_gc_input(t, "x", OC_F64, OC_SHAPE(2, 3, 8, 8), OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor lab = oc_gc_index(t, "labels", OC_SHAPE(2), 10);
    oc_tensor f = oc_wrn_trunk(t->g, &cfg, x, 1);
    oc_tensor fw = oc_param(t->g, "fc.weight", OC_F64, OC_SHAPE(10, oc_wrn_features(&cfg)),
                            OC_INIT_ZEROS, 0, 0);
    oc_tensor fb = oc_param(t->g, "fc.bias", OC_F64, OC_SHAPE(10), OC_INIT_ZEROS, 0, 0);
    oc_tensor loss = oc_cross_entropy(t->g, oc_linear(t->g, f, fw, fb), lab);
    cr_assert_eq(oc_graph_status(t->g), OC_OK, "%s", t->g->err.msg);

    int nparams = 0, nbn = 0, nconv = 0;
    for (int i = 0; i < t->g->nnodes; i++) {
        const struct oc_node *n = t->g->nodes[i];
        if (n->op != OC_OP_PARAM) continue;
        const char *name = n->attrs.name;
        nparams++;
        if (!strcmp(name, "fc.weight")) {
            oc_gc_bind(t, name, OC_GC_UNIFORM, -1, 1, 1);
        } else if (!strcmp(name, "fc.bias")) {
            oc_gc_bind(t, name, OC_GC_UNIFORM, -0.5, 0.5, 1);
        } else if (n->shape.rank == 1 && ends_with(name, ".weight")) {
            oc_gc_bind(t, name, OC_GC_UNIFORM, 0.05, 0.15, 1); /* BN gamma */
            nbn++;
        } else if (n->shape.rank == 1 && ends_with(name, ".bias")) {
            /* BN beta: a quarter of the channels dead, the rest strictly alive */
            oc_gc_bind(t, name, OC_GC_UNIFORM, 0.6, 1.0, 1);
            struct oc_buf *v = &t->v[t->n - 1];
            for (int64_t k = 0; k < oc_shape_numel(&v->shape); k++)
                if (oc_gc_next(t) % 4 == 0) oc_buf_set(v, k, -oc_buf_get(v, k));
        } else {
            cr_assert_eq(n->shape.rank, 4, "unexpected parameter %s", name);
            double fan = (double)(n->shape.dim[1] * n->shape.dim[2] * n->shape.dim[3]);
            oc_gc_bind(t, name, OC_GC_UNIFORM, -2 / sqrt(fan), 2 / sqrt(fan), 1);
            nconv++;
        }
    }
    /* conv1 + 6 blocks x 2 convs + 2 shortcuts; 6 x 2 BNs + the final one */
    cr_assert_eq(nconv, 15, "WRN-16-1 has 15 convolutions, found %d", nconv);
    cr_assert_eq(nbn, 13, "WRN-16-1 has 13 batchnorms, found %d", nbn);
    cr_assert_eq(nparams, 15 + 2 * 13 + 2);
    double m = oc_gc_kink_margin(t->g, t->b, t->n);
    cr_assert_gt(m, 1e-3, "a relu input is within %g of the kink", m);
    return loss;
}

/* Split in two halves of the parameter list so each process stays short. */
static void check_half(int half)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, "wrn-16-1", 16);
    oc_tensor loss = build(&t);
    /* keep the input and every other parameter of this half */
    const char *keep[OC_GC_MAXV];
    int nk = 0;
    for (int i = 0; i < t.nwrt; i++)
        if (i == 0 || (i % 2) == half) keep[nk++] = t.names[i];
    memcpy(t.names, keep, sizeof(const char *) * (size_t)nk);
    t.nwrt = nk;
    t.opts.max_coords = 6;
    oc_gc_check(&t, loss, half ? "wrn-16-1 + ce (odd params)" : "wrn-16-1 + ce (even params)");
    cr_expect_gt(t.last.nsignificant, t.last.nchecked / 2, "only %d of %d gradients are significant",
                 t.last.nsignificant, t.last.nchecked);
}

Test(gradcheck_wrn, wrn16_1_ce_even_params) { check_half(0); }
Test(gradcheck_wrn, wrn16_1_ce_odd_params) { check_half(1); }
