/* test-heads.c - the OOD heads (models/head-*.c) on features given as an
 * input: every registered head builds in train and test mode and exposes
 * what its scorers read; the losses match hand computations; each loss and
 * its gradients (autodiff) run the same compiled on the CPU as in the
 * reference interpreter; and the gradients of the new heads' losses agree
 * with central finite differences in f64. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../models/models.h"
#include "../../passes/passes.h"
#include "../helpers/gradcheck.h"
#include "../helpers/helpers.h"
#include "../runtime/conform.h"

#define B 6
#define F 8
#define K 4

static struct oc_head_cfg cfg(const char *head)
{
    struct oc_head_cfg c = oc_head_cfg_default(head, K);
    c.zdim = 5;
    c.test_samples = 3;
    return c;
}

/* The head on an input "f" [B,F] with labels "y" and step "step". */
static struct oc_head_out build(struct oc_graph *g, const char *head, enum oc_dtype dt, int train,
                                int with_labels, const struct oc_head_cfg *c)
{
    const struct oc_head *h = oc_head_find(head);
    cr_assert(h, "head %s is not registered", head);
    oc_tensor f = oc_input(g, "f", dt, OC_SHAPE(B, F));
    oc_tensor y = with_labels ? oc_input(g, "y", OC_I32, OC_SHAPE(B)) : OC_NONE;
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    memset(&o, 0, sizeof o);
    o.logits = o.loss = o.bin_logits = o.mu = o.sd = o.prior_mu = o.prior_sd = o.features = OC_NONE;
    h->build(g, f, y, step, c, train, &o);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", head, g->err.msg);
    return o;
}

static void expect_shape(struct oc_graph *g, oc_tensor t, int64_t d0, int64_t d1, const char *what)
{
    cr_assert(oc_valid(t), "%s missing", what);
    const struct oc_shape *s = &g->nodes[t.id]->shape;
    cr_expect(s->rank == 2 && s->dim[0] == d0 && s->dim[1] == d1, "%s has the wrong shape", what);
}

Test(heads, registry_and_outputs)
{
    const char *names[] = {"baseline", "bin", "binc", "vib", "viby"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        for (int train = 0; train < 2; train++) {
            struct oc_graph *g = oc_graph_new(names[i]);
            struct oc_head_cfg c = cfg(names[i]);
            struct oc_head_out o = build(g, names[i], OC_F32, train, 1, &c);
            expect_shape(g, o.logits, B, K, "logits");
            cr_expect(oc_valid(o.loss) && g->nodes[o.loss.id]->shape.rank == 0, "%s: scalar loss",
                      names[i]);
            int bin = !strcmp(names[i], "bin") || !strcmp(names[i], "binc");
            int vib = !strcmp(names[i], "vib") || !strcmp(names[i], "viby");
            cr_expect_eq(oc_valid(o.bin_logits), bin, "%s: bin_logits", names[i]);
            cr_expect_eq(oc_valid(o.mu) && oc_valid(o.sd), vib, "%s: mu/sd", names[i]);
            if (bin) expect_shape(g, o.bin_logits, B, K, "bin_logits");
            if (vib) {
                expect_shape(g, o.mu, B, 5, "mu");
                expect_shape(g, o.sd, B, 5, "sd");
                int64_t p = !strcmp(names[i], "viby") ? K : 1;
                expect_shape(g, o.prior_mu, p, 5, "prior_mu");
                expect_shape(g, o.prior_sd, p, 5, "prior_sd");
            }
            oc_graph_free(g);
        }
        /* without labels there is no loss */
        struct oc_graph *g = oc_graph_new(names[i]);
        struct oc_head_cfg c = cfg(names[i]);
        struct oc_head_out o = build(g, names[i], OC_F32, 0, 0, &c);
        cr_expect(!oc_valid(o.loss), "%s: a loss without labels", names[i]);
        oc_graph_free(g);
    }
    cr_expect_null(oc_head_find("nope"));
}

/* ------------------------------------------------------------ closed forms */

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static double at(const struct oc_buf *b, int64_t r, int64_t c)
{
    return oc_buf_get(b, r * b->shape.dim[b->shape.rank - 1] + c);
}

/* Runs the f64 interpreter on the head with random features and labels. */
struct run {
    struct oc_graph *g;
    struct oc_interp *it;
    struct oc_buf f, y, step;
};

static void run_head(struct run *r, struct oc_graph *g, uint64_t seed)
{
    struct oc_err err = {0};
    r->g = g;
    r->f = oc_test_random(OC_F64, OC_SHAPE(B, F), seed, -1, 1);
    r->y = oc_test_random(OC_I32, OC_SHAPE(B), seed + 1, 0, K);
    r->step = oc_test_buf(OC_I32, OC_SCALAR, (double[]){3});
    r->it = oc_interp_new(g, 1);
    cr_assert_eq(oc_interp_set(r->it, "f", &r->f, &err), OC_OK, "%s", err.msg);
    if (oc_graph_find_named(g, "y") >= 0)
        cr_assert_eq(oc_interp_set(r->it, "y", &r->y, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(r->it, "step", &r->step, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(r->it, 7, &err), OC_OK, "%s", err.msg);
}

static void run_free(struct run *r)
{
    oc_interp_free(r->it);
    oc_graph_free(r->g);
    oc_buf_free(&r->f);
    oc_buf_free(&r->y);
    oc_buf_free(&r->step);
}

static const struct oc_buf *val(struct run *r, oc_tensor t) { return oc_interp_value(r->it, t.id); }

Test(heads, bin_loss_is_weighted_log_likelihood)
{
    struct oc_graph *g = oc_graph_new("bin");
    struct oc_head_cfg c = cfg("bin");
    c.zeta = 0.3;
    struct oc_head_out o = build(g, "bin", OC_F64, 1, 1, &c);
    struct run r;
    run_head(&r, g, 11);
    const struct oc_buf *p = val(&r, o.bin_logits);
    double want = 0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            double x = at(p, b, k);
            want += k == (int)oc_buf_get(&r.y, b) ? softplus(-x) : c.zeta * softplus(x);
        }
    want /= B;
    cr_expect(fabs(oc_buf_get(val(&r, o.loss), 0) - want) < 1e-12, "BIN loss %g, want %g",
              oc_buf_get(val(&r, o.loss), 0), want);
    /* the prediction is the largest sigmoid */
    cr_expect_eq(o.logits.id, o.bin_logits.id);
    run_free(&r);
}

static double kl1(double mq, double sq, double mp, double sp)
{
    return log(sp / sq) + (sq * sq + (mq - mp) * (mq - mp)) / (2 * sp * sp) - 0.5;
}

static double ce_row(const struct oc_buf *l, int b, int y)
{
    double m = -INFINITY, s = 0;
    for (int k = 0; k < K; k++) m = fmax(m, at(l, b, k));
    for (int k = 0; k < K; k++) s += exp(at(l, b, k) - m);
    return -(at(l, b, y) - m - log(s));
}

static void check_vib_loss(const char *head)
{
    struct oc_graph *g = oc_graph_new(head);
    struct oc_head_cfg c = cfg(head);
    struct oc_head_out o = build(g, head, OC_F64, 1, 1, &c);
    struct run r;
    run_head(&r, g, 21);
    /* make the priors non-trivial: bind random values and rerun */
    struct oc_err err = {0};
    int64_t p = !strcmp(head, "viby") ? K : 1;
    struct oc_buf pm = oc_test_random(OC_F64, OC_SHAPE(p, 5), 5, -1, 1);
    struct oc_buf pr = oc_test_random(OC_F64, OC_SHAPE(p, 5), 6, -1, 1);
    cr_assert_eq(oc_interp_set(r.it, "prior_mu", &pm, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(r.it, "prior_rho", &pr, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(r.it, 7, &err), OC_OK, "%s", err.msg);
    const struct oc_buf *mu = val(&r, o.mu), *sd = val(&r, o.sd), *lg = val(&r, o.logits);
    double ce = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        int y = (int)oc_buf_get(&r.y, b);
        int row = p == 1 ? 0 : y; /* VIBY: the true class's prior */
        ce += ce_row(lg, b, y);
        for (int z = 0; z < 5; z++)
            kl += kl1(at(mu, b, z), at(sd, b, z), at(&pm, row, z), softplus(at(&pr, row, z)));
    }
    double want = ce / B + c.beta * kl / B;
    double got = oc_buf_get(val(&r, o.loss), 0);
    cr_expect(fabs(got - want) < 1e-10 * fmax(1, fabs(want)), "%s loss %.15g, want %.15g", head,
              got, want);
    /* sd = softplus(a - 5) > 0 */
    for (int64_t i = 0; i < B * 5; i++) cr_expect_gt(oc_buf_get(sd, i), 0);
    oc_buf_free(&pm);
    oc_buf_free(&pr);
    run_free(&r);
}

Test(heads, vib_loss_closed_form) { check_vib_loss("vib"); }
Test(heads, viby_loss_uses_true_class_prior) { check_vib_loss("viby"); }

/* At test time the logits are log(mean_s softmax(logits_s)): a proper
 * log-distribution; with test_samples = 0 they are the decoder of the mean. */
Test(heads, vib_test_time_logits)
{
    struct oc_graph *g = oc_graph_new("vib");
    struct oc_head_cfg c = cfg("vib");
    struct oc_head_out o = build(g, "vib", OC_F64, 0, 0, &c);
    struct run r;
    run_head(&r, g, 31);
    const struct oc_buf *lg = val(&r, o.logits);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += exp(at(lg, b, k));
        cr_expect(fabs(s - 1) < 1e-12, "row %d: sum of exp(logits) = %.15g", b, s);
    }
    run_free(&r);

    g = oc_graph_new("vib0");
    c.test_samples = 0;
    o = build(g, "vib", OC_F64, 0, 0, &c);
    run_head(&r, g, 31);
    lg = val(&r, o.logits);
    const struct oc_buf *mu = val(&r, o.mu);
    const struct oc_buf *w = oc_interp_named(r.it, "fc.weight");
    const struct oc_buf *bias = oc_interp_named(r.it, "fc.bias");
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            double want = oc_buf_get(bias, k);
            for (int z = 0; z < 5; z++) want += at(mu, b, z) * at(w, k, z);
            cr_expect(fabs(at(lg, b, k) - want) < 1e-12);
        }
    run_free(&r);
}

/* BINC's loss = CE + BIN + lambda * MMCE; with lambda = 0 it is the sum of
 * the two branch losses (checked by hand), and MMCE adds a positive term. */
Test(heads, binc_loss_terms)
{
    double loss[2];
    for (int pass = 0; pass < 2; pass++) {
        struct oc_graph *g = oc_graph_new("binc");
        struct oc_head_cfg c = cfg("binc");
        if (pass == 0) c.lambda = 0;
        struct oc_head_out o = build(g, "binc", OC_F64, 1, 1, &c);
        struct run r;
        run_head(&r, g, 41);
        const struct oc_buf *lg = val(&r, o.logits), *bl = val(&r, o.bin_logits);
        double want = 0;
        for (int b = 0; b < B; b++) {
            int y = (int)oc_buf_get(&r.y, b);
            want += ce_row(lg, b, y);
            for (int k = 0; k < K; k++)
                want += k == y ? softplus(-at(bl, b, k)) : c.zeta * softplus(at(bl, b, k));
        }
        want /= B;
        loss[pass] = oc_buf_get(val(&r, o.loss), 0);
        if (pass == 0)
            cr_expect(fabs(loss[0] - want) < 1e-12, "BINC loss %g, want %g", loss[0], want);
        run_free(&r);
    }
    cr_expect_gt(loss[1], loss[0] + 1e-6, "MMCE adds nothing");
}

/* ------------------------------------------------- compiled vs interpreter */

/* The loss and the gradients w.r.t. every parameter and the features. */
static struct oc_graph *train_graph(const char *head)
{
    struct oc_graph *g = oc_graph_new(head);
    struct oc_head_cfg c = cfg(head);
    struct oc_head_out o = build(g, head, OC_F32, 1, 1, &c);
    int wrt[64], n = 0, grads[64];
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OC_OP_PARAM || (g->nodes[i]->op == OC_OP_INPUT &&
                                              !strcmp(g->nodes[i]->attrs.name, "f")))
            wrt[n++] = i;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, o.loss.id, -1, wrt, n, grads, &err), OC_OK, "%s", err.msg);
    oc_output(g, "loss", o.loss);
    for (int i = 0; i < n; i++) {
        char *name = oc_arena_alloc(&g->arena, 96);
        snprintf(name, 96, "grad.%s", g->nodes[wrt[i]]->attrs.name);
        oc_output(g, name, (oc_tensor){grads[i]});
    }
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

static void compiled_matches(const char *head)
{
    struct oc_rt *rt;
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 1, 0, &err), OC_OK, "%s", err.msg);
    struct oc_graph *g = train_graph(head);
    struct conform_opts co = conform_defaults();
    co.ihi = K; /* labels and the step */
    co.lo = -1;
    co.hi = 1;
    co.rtol = 1e-3;
    co.atol = 1e-4;
    cr_expect(conform_run(rt, g, head, 1, &co), "%s: fused CPU code differs", head);
    cr_expect(conform_run(rt, g, head, 0, &co), "%s: unfused CPU code differs", head);
    oc_graph_free(g);
    oc_rt_free(rt);
}

Test(heads, compiled_bin) { compiled_matches("bin"); }
Test(heads, compiled_binc) { compiled_matches("binc"); }
Test(heads, compiled_vib) { compiled_matches("vib"); }
Test(heads, compiled_viby) { compiled_matches("viby"); }

/* ------------------------------------------------------------- gradchecks */

static void gradcheck_head(const char *head, double lambda)
{
    struct oc_gc_case t;
    oc_gc_begin(&t, head, 99);
    struct oc_head_cfg c = cfg(head);
    if (lambda >= 0) c.lambda = lambda;
    const struct oc_head *h = oc_head_find(head);
    oc_tensor f = oc_gc_input(&t, "f", OC_F64, OC_SHAPE(B, F), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor y = oc_gc_index(&t, "y", OC_SHAPE(B), K);
    oc_tensor step = oc_gc_index(&t, "step", OC_SCALAR, 5);
    struct oc_head_out o;
    memset(&o, 0, sizeof o);
    h->build(t.g, f, y, step, &c, 1, &o);
    cr_assert_eq(oc_graph_status(t.g), OC_OK, "%s", t.g->err.msg);
    for (int i = 0; i < t.g->nnodes; i++) {
        const struct oc_node *n = t.g->nodes[i];
        if (n->op != OC_OP_PARAM) continue;
        oc_gc_bind(&t, n->attrs.name, OC_GC_UNIFORM, -0.8, 0.8, 1);
    }
    t.opts.rtol = 1e-5;
    char what[64];
    snprintf(what, sizeof what, "%s loss", head);
    oc_gc_check(&t, o.loss, what);
    cr_expect_gt(t.last.nsignificant, t.last.nchecked / 2, "%s: only %d of %d significant", head,
                 t.last.nsignificant, t.last.nchecked);
}

Test(heads, gradcheck_bin) { gradcheck_head("bin", -1); }
Test(heads, gradcheck_binc) { gradcheck_head("binc", -1); }
Test(heads, gradcheck_binc_strong_mmce) { gradcheck_head("binc", 5.0); }
Test(heads, gradcheck_vib) { gradcheck_head("vib", -1); }
Test(heads, gradcheck_viby) { gradcheck_head("viby", -1); }
