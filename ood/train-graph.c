/* train-graph.c - the graphs the trainer compiles and the small pieces
 * around them: the model configuration from its spec, the training-step
 * graph (model -> autodiff -> SGD-Nesterov -> loss and correct count ->
 * simplify), the inference graph, parameter initialization and transfer
 * between executables, the learning-rate schedule, and accuracy.
 *
 * Everything here is shared by the trainer (train.c), checkpoint loading,
 * `oodc eval-acc` and `oodc bench train`, so all of them compile the same
 * graphs.
 */
#include "train.h"

#include <stdlib.h>
#include <string.h>

#include "../passes/passes.h"

enum oc_status oc_train_model_cfg(const char *arch, const char *head, int in_ch, int size,
                                  int nclasses, struct oc_model_cfg *out, struct oc_err *err)
{
    struct oc_model_cfg m;
    memset(&m, 0, sizeof m);
    if (!arch) return oc_err_set(err, OC_ERR_INVALID, "no model given (e.g. wrn-16-4)");
    enum oc_status s = oc_wrn_parse(arch, &m.wrn, err);
    if (s) return s;
    const char *hn = head ? head : "baseline";
    m.head = oc_head_find(hn);
    if (!m.head) {
        char names[256] = "";
        for (int i = 0; oc_heads[i]; i++) {
            if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, oc_heads[i]->name, sizeof names - strlen(names) - 1);
        }
        return oc_err_set(err, OC_ERR_INVALID, "unknown head '%s' (available: %s)", hn, names);
    }
    if (in_ch < 1 || in_ch > OC_DATA_MAX_CHANNELS || size < 4 || nclasses < 2)
        return oc_err_set(err, OC_ERR_INVALID,
                          "model %s: unsupported input %d x %d x %d with %d classes", arch, in_ch,
                          size, size, nclasses);
    m.wrn.in_ch = in_ch;
    m.wrn.size = size;
    m.wrn.nclasses = nclasses;
    m.hc = oc_head_cfg_default(hn, nclasses);
    *out = m;
    return OC_OK;
}

double oc_train_lr_at(double lr, int64_t step, int64_t total)
{
    /* step >= 0.5 * total, in integers so that no rounding moves a drop */
    if (2 * step >= total) lr *= 0.1;
    if (4 * step >= 3 * total) lr *= 0.1;
    return lr;
}

static enum oc_status finish(struct oc_graph *g, struct oc_graph **out, struct oc_err *err)
{
    enum oc_status s = oc_graph_status(g);
    if (s) {
        oc_err_set(err, s, "building graph \"%s\": %s", g->name, g->err.msg);
    } else {
        s = oc_pass_simplify(&g, err);
    }
    if (s) {
        oc_graph_free(g);
        return s;
    }
    *out = g;
    return OC_OK;
}

static oc_tensor prediction_logits(const struct oc_head_out *o)
{
    return oc_valid(o->logits) ? o->logits : o->bin_logits;
}

enum oc_status oc_train_step_graph(const struct oc_model_cfg *m, int batch, double momentum,
                                   double weight_decay, struct oc_graph **out, struct oc_err *err)
{
    *out = NULL;
    if (batch < 1) return oc_err_set(err, OC_ERR_INVALID, "batch size %d must be positive", batch);
    const struct oc_wrn_config *w = &m->wrn;
    struct oc_graph *g = oc_graph_new("train-step");
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, w->in_ch, w->size, w->size));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(batch));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, m, x, labels, step, 1, &o);
    if (oc_graph_status(g) == OC_OK && !oc_valid(o.loss))
        oc_err_set(&g->err, OC_ERR_INVALID, "head %s built no loss", m->head->name);
    if (oc_graph_status(g)) return finish(g, out, err);

    int np = 0;
    for (int i = 0; i < g->nnodes; i++) np += g->nodes[i]->op == OC_OP_PARAM;
    int *wrt = malloc(sizeof *wrt * (size_t)(np + 1));
    int *grad = malloc(sizeof *grad * (size_t)(np + 1));
    oc_tensor *pt = malloc(sizeof *pt * (size_t)(np + 1));
    oc_tensor *gt = malloc(sizeof *gt * (size_t)(np + 1));
    enum oc_status s = OC_OK;
    if (!wrt || !grad || !pt || !gt) s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    for (int i = 0, k = 0; !s && i < g->nnodes; i++)
        if (g->nodes[i]->op == OC_OP_PARAM) wrt[k++] = i;
    if (!s) s = oc_pass_autodiff(g, o.loss.id, -1, wrt, np, grad, err);
    if (!s) {
        for (int i = 0; i < np; i++) {
            pt[i].id = wrt[i];
            gt[i].id = grad[i];
        }
        oc_sgd_nesterov(g, pt, gt, np, lr, momentum, weight_decay, NULL);
        oc_tensor pred = oc_argmax(g, prediction_logits(&o), 1, 0);
        oc_tensor correct = oc_sum(g, oc_eq(g, pred, labels), 1u, 0);
        oc_output(g, "loss", o.loss);
        oc_output(g, "correct", correct);
    }
    free(wrt);
    free(grad);
    free(pt);
    free(gt);
    if (s) {
        oc_graph_free(g);
        return s;
    }
    return finish(g, out, err);
}

enum oc_status oc_train_eval_graph(const struct oc_model_cfg *m, int batch, struct oc_graph **out,
                                   struct oc_err *err)
{
    *out = NULL;
    if (batch < 1) return oc_err_set(err, OC_ERR_INVALID, "batch size %d must be positive", batch);
    const struct oc_wrn_config *w = &m->wrn;
    struct oc_graph *g = oc_graph_new("eval");
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(batch, w->in_ch, w->size, w->size));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, m, x, OC_NONE, step, 0, &o);
    oc_output(g, "logits", prediction_logits(&o));
    return finish(g, out, err);
}

enum oc_status oc_train_init_params(struct oc_exec *ex, const struct oc_graph *g, uint64_t seed,
                                    struct oc_err *err)
{
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
        struct oc_buf b;
        enum oc_status s = oc_init_fill(n, seed, &b, err);
        if (s) return s;
        s = oc_exec_set(ex, n->attrs.name, &b, err);
        oc_buf_free(&b);
        if (s) return s;
    }
    return OC_OK;
}

enum oc_status oc_train_copy_params(struct oc_exec *from, struct oc_exec *to,
                                    const struct oc_graph *to_g, struct oc_err *err)
{
    for (int i = 0; i < to_g->nnodes; i++) {
        const struct oc_node *n = to_g->nodes[i];
        if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
        struct oc_buf b;
        enum oc_status s = oc_exec_get(from, n->attrs.name, &b, err);
        if (!s) s = oc_exec_set(to, n->attrs.name, &b, err);
        oc_buf_free(&b);
        if (s) return s;
    }
    return OC_OK;
}

enum oc_status oc_train_accuracy(struct oc_exec *ev, int batch, const struct oc_dataset *ds,
                                 double *accuracy, double *per_class, int64_t *counts,
                                 struct oc_err *err)
{
    if (!ds->labels || ds->nclasses < 1)
        return oc_err_set(err, OC_ERR_INVALID, "accuracy: %s has no labels",
                          ds->source ? ds->source : "dataset");
    int K = ds->nclasses;
    int64_t isz = oc_dataset_image_size(ds);
    int64_t *hit = calloc((size_t)K, sizeof *hit), *tot = calloc((size_t)K, sizeof *tot);
    struct oc_buf x = {0}, step = {0};
    struct oc_shape xs = OC_SHAPE(batch, ds->c, ds->h, ds->w), ss = OC_SCALAR;
    enum oc_status s = OC_OK;
    if (!hit || !tot || oc_buf_alloc(&x, OC_F32, &xs) || oc_buf_alloc(&step, OC_I32, &ss))
        s = oc_err_set(err, OC_ERR_NOMEM, "accuracy: out of memory");
    if (!s) {
        *(int32_t *)step.data = 0;
        s = oc_exec_set(ev, "step", &step, err);
    }
    int64_t right = 0;
    for (int64_t first = 0; !s && first < ds->n; first += batch) {
        int64_t n = ds->n - first < batch ? ds->n - first : batch;
        memcpy(x.data, ds->images + first * isz, sizeof(float) * (size_t)(n * isz));
        if (n < batch) memset((float *)x.data + n * isz, 0, sizeof(float) * (size_t)((batch - n) * isz));
        struct oc_buf logits = {0};
        if ((s = oc_exec_set(ev, "x", &x, err)) || (s = oc_exec_run(ev, 0, err)) ||
            (s = oc_exec_get(ev, "logits", &logits, err)))
            break;
        int64_t k = logits.shape.dim[1];
        const float *l = logits.data;
        for (int64_t i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (l[i * k + j] > l[i * k + best]) best = j;
            int32_t y = ds->labels[first + i];
            if (y < 0 || y >= K) continue;
            tot[y]++;
            if (best == y) hit[y]++, right++;
        }
        oc_buf_free(&logits);
    }
    if (!s) {
        *accuracy = ds->n ? 100.0 * (double)right / (double)ds->n : 0;
        for (int c = 0; c < K; c++) {
            if (per_class) per_class[c] = tot[c] ? 100.0 * (double)hit[c] / (double)tot[c] : 0;
            if (counts) counts[c] = tot[c];
        }
    }
    oc_buf_free(&x);
    oc_buf_free(&step);
    free(hit);
    free(tot);
    return s;
}
