/* test-cuda-models.c - the kernels of the real workloads compile with NVRTC
 * for sm_80 and sm_90 without local-memory spills or stack frames. This
 * file: a WRN-28-10 training step on CIFAR-shaped batches of 128 (forward,
 * backward, Nesterov SGD update, BN statistics: oc_model_build +
 * oc_pass_autodiff + oc_sgd_nesterov + oc_pass_simplify, then
 * oc_pass_fuse), fused and unfused. Built with CUDA_MODELS_SCORERS defined
 * (test-cuda-scorers.c), the same file checks instead every head's scorers
 * on WRN-16-4 (max softmax, with temperature, max sigmoid for one-vs-rest
 * heads), the ODIN input-perturbation step on WRN-16-4 and WRN-28-10 and
 * the standalone score graph of every scorer of the registry
 * (ood/scorers.c, oc_scorer_graph: f64, on WRN-28-10-sized head outputs).
 * Two files, so each stays short on a small machine. */
#include <criterion/criterion.h>

#include "../../models/models.h"
#include "../../ood/eval.h"
#include "../../passes/passes.h"
#include "cuda-check.h"

static struct oc_model_cfg model(const char *arch, const char *head)
{
    struct oc_model_cfg m;
    struct oc_err err = {0};
    memset(&m, 0, sizeof m);
    cr_assert_eq(oc_wrn_parse(arch, &m.wrn, &err), OC_OK, "%s", err.msg);
    m.wrn.in_ch = 3;
    m.wrn.size = 32;
    m.wrn.nclasses = 10;
    m.head = oc_head_find(head);
    cr_assert_not_null(m.head, "head %s", head);
    m.hc = oc_head_cfg_default(head, 10);
    return m;
}

static void finish(struct oc_graph **g)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(*g), OC_OK, "%s: %s", (*g)->name, (*g)->err.msg);
    cr_assert_eq(oc_pass_simplify(g, &err), OC_OK, "%s", err.msg);
}

/* Gradients of `loss` w.r.t. the nodes of op `op` (or the single node `one`). */
static int grads_of(struct oc_graph *g, oc_tensor loss, enum oc_op op, int one, int **wrt, int **grad)
{
    struct oc_err err = {0};
    int n = 0;
    *wrt = malloc(sizeof(int) * (size_t)(g->nnodes + 1));
    *grad = malloc(sizeof(int) * (size_t)(g->nnodes + 1));
    if (one >= 0) (*wrt)[n++] = one;
    else
        for (int i = 0; i < g->nnodes; i++)
            if (g->nodes[i]->op == op) (*wrt)[n++] = i;
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, *wrt, n, *grad, &err), OC_OK, "%s", err.msg);
    return n;
}

#ifndef CUDA_MODELS_SCORERS
static struct oc_graph *train_step(const char *arch, const char *head, int batch)
{
    struct oc_model_cfg m = model(arch, head);
    struct oc_graph *g = oc_graph_new("train-step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, 3, 32, 32));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(batch));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, labels, step, 1, &o);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    int *wrt, *grad;
    int np = grads_of(g, o.loss, OC_OP_PARAM, -1, &wrt, &grad);
    oc_tensor *pt = malloc(sizeof *pt * (size_t)np), *gt = malloc(sizeof *gt * (size_t)np);
    for (int i = 0; i < np; i++) pt[i].id = wrt[i], gt[i].id = grad[i];
    oc_sgd_nesterov(g, pt, gt, np, lr, 0.9, 5e-4, NULL);
    oc_output(g, "loss", o.loss);
    free(wrt), free(grad), free(pt), free(gt);
    finish(&g);
    return g;
}

#else

/* A head's scores of a batch (train = 0). */
static struct oc_graph *scorers(const char *arch, const char *head, int batch)
{
    struct oc_model_cfg m = model(arch, head);
    struct oc_graph *g = oc_graph_new("scorers");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, 3, 32, 32));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, OC_NONE, step, 0, &o);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    if (oc_valid(o.logits)) {
        oc_output(g, "msp", oc_reduce_max(g, oc_softmax(g, o.logits, 1), 2u, 0));
        oc_output(g, "msp_t", oc_reduce_max(g, oc_softmax(g, oc_scale(g, o.logits, 1e-3), 1), 2u, 0));
        oc_output(g, "pred", oc_argmax(g, o.logits, 1, 0));
    }
    if (oc_valid(o.bin_logits))
        oc_output(g, "sig", oc_reduce_max(g, oc_sigmoid(g, o.bin_logits), 2u, 0));
    finish(&g);
    return g;
}

/* ODIN (Liang et al. 2018): x' = x - eps * sign(-d log S_y(x; T) / dx),
 * then the temperature-scaled max softmax of x'. The second forward's
 * kernels are the first's (same shapes), so one forward is built. */
static struct oc_graph *odin(const char *arch, int batch)
{
    struct oc_model_cfg m = model(arch, "baseline");
    struct oc_graph *g = oc_graph_new("odin");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, 3, 32, 32));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, OC_NONE, step, 0, &o);
    oc_tensor ls = oc_log_softmax(g, oc_scale(g, o.logits, 1e-3), 1);
    oc_tensor s = oc_sum(g, oc_reduce_max(g, ls, 2u, 0), 1u, 0);
    int *wrt, *grad;
    grads_of(g, s, OC_OP_INPUT, x.id, &wrt, &grad);
    oc_tensor gx = {grad[0]};
    oc_tensor xp = oc_sub(g, x, oc_scale(g, oc_sign(g, oc_neg(g, gx)), 0.0014));
    oc_output(g, "x_perturbed", xp);
    oc_output(g, "score", oc_exp(g, oc_reduce_max(g, ls, 2u, 0)));
    free(wrt), free(grad);
    finish(&g);
    return g;
}

#endif

static struct kset all;

#ifndef CUDA_MODELS_SCORERS
static void gather(void)
{
    if (all.n) return;
    struct oc_graph *g = train_step("wrn-28-10", "baseline", 128);
    for (int f = 1; f >= 0; f--) kset_add_graph(&all, g, f, "WRN-28-10 training step");
    oc_graph_free(g);
}

Test(cuda_models, training_step_sm80, .timeout = 600)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    cr_assert_gt(all.n, 100, "fused and unfused kernels (%d)", all.n);
    cr_assert_gt(all.nlib, 0, "the convolutions are library calls");
    int bad = kset_compile(nv, &all, 0, all.n, "sm_80");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_80 (see stderr)", bad);
    oc_nvrtc_close(nv);
}

Test(cuda_models, training_step_sm90, .timeout = 600)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    int bad = kset_compile(nv, &all, 0, all.n, "sm_90");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_90 (see stderr)", bad);
    oc_nvrtc_close(nv);
}
#else
static void gather(void)
{
    if (all.n) return;
    struct oc_graph *g;
    for (int h = 0; oc_heads[h]; h++) {
        g = scorers("wrn-16-4", oc_heads[h]->name, 128);
        for (int f = 1; f >= 0; f--) kset_add_graph(&all, g, f, oc_heads[h]->name);
        oc_graph_free(g);
    }
    int nsc = 0;
    for (int i = 0; oc_scorers[i]; i++) {
        const struct oc_scorer *sc = oc_scorers[i];
        int viby = strstr(sc->heads, "viby") != NULL;
        struct oc_head_dims d = {10, 64, viby ? 10 : 1, 640};
        struct oc_err err = {0};
        cr_assert_eq(oc_scorer_graph(sc, 128, &d, &g, &err), OC_OK, "scorer %s: %s", sc->name, err.msg);
        for (int f = 1; f >= 0; f--) kset_add_graph(&all, g, f, sc->name);
        oc_graph_free(g);
        nsc++;
    }
    cr_assert_gt(nsc, 5, "the registry's scorers");
    const char *archs[] = {"wrn-16-4", "wrn-28-10"};
    for (int a = 0; a < 2; a++) {
        g = odin(archs[a], 128);
        for (int f = 1; f >= 0; f--) kset_add_graph(&all, g, f, "ODIN");
        oc_graph_free(g);
    }
}

Test(cuda_scorers, scorers_sm80, .timeout = 600)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    cr_assert_gt(all.n, 20);
    int bad = kset_compile(nv, &all, 0, all.n, "sm_80");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_80 (see stderr)", bad);
    oc_nvrtc_close(nv);
}

Test(cuda_scorers, scorers_sm90, .timeout = 600)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    gather();
    int bad = kset_compile(nv, &all, 0, all.n, "sm_90");
    cr_assert_eq(bad, 0, "%d kernel(s) with problems for sm_90 (see stderr)", bad);
    oc_nvrtc_close(nv);
}
#endif
