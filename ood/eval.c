/* eval.c - evaluation of one model: every applicable scorer on every OOD
 * set, with T and epsilon tuned per OOD set on the validation splits to
 * minimize FPR at 95% TPR (paper, section 5.3), then the test splits scored
 * and measured (metrics.c). Also the OOD set specs of `oodc eval --ood`.
 *
 * Cost (ODIN's 10 x 12 grid): the unperturbed head outputs of every set are
 * computed once per model and reused by every scorer and every T (the
 * score graphs read stored outputs). A perturbation scorer costs, per T, one
 * gradient pass over the validation images (gradient w.r.t. x only) and one
 * forward pass per nonzero eps; eps = 0 reuses the unperturbed outputs.
 * Only validation images take part in tuning; the test images are perturbed
 * once per distinct chosen (T, eps).
 *
 * ODIN is implemented as two compiled graphs: the gradient graph (model,
 * the scorer's objective log S(y^, x; T) summed over the batch, autodiff
 * w.r.t. "x", output sign(grad)) and the model's forward graph, which takes
 * x' = x + eps * sign(grad) computed on the host. The model normalizes its
 * raw [0,1] input inside the graph, so eps is in pixel units (the ODIN
 * reference code's eps / std). x' is not clipped to [0,1], as in ODIN.
 */
#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../passes/passes.h"

struct oc_eval_opts oc_eval_opts_default(void)
{
    struct oc_eval_opts o;
    memset(&o, 0, sizeof o);
    o.device = "cpu";
    o.batch = 250;
    return o;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void logf_(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(FILE *f, const char *fmt, ...)
{
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

/* ---------------------------------------------------------------- tuning rule */

int oc_tune_pick(const double *fpr95, const double *auroc, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (fpr95[i] < fpr95[best] || (fpr95[i] == fpr95[best] && auroc[i] > auroc[best]))
            best = i;
    return best;
}

enum oc_status oc_tune_T(struct oc_score_exec *se, const struct oc_head_vals *in_val,
                         const struct oc_head_vals *out_val, int *best, double *fpr,
                         struct oc_err *err)
{
    double f[OC_GRID_NT], a[OC_GRID_NT];
    double *si = malloc(sizeof *si * (size_t)in_val->n);
    double *so = malloc(sizeof *so * (size_t)out_val->n);
    enum oc_status st = OC_OK;
    if (!si || !so) st = oc_err_set(err, OC_ERR_NOMEM, "tuning T: out of memory");
    for (int t = 0; t < OC_GRID_NT && !st; t++) {
        struct oc_metrics m;
        if ((st = oc_score_exec_run(se, in_val, oc_grid_T[t], si, err)) ||
            (st = oc_score_exec_run(se, out_val, oc_grid_T[t], so, err)) ||
            (st = oc_metrics_compute(si, in_val->n, so, out_val->n, &m, err)))
            break;
        f[t] = m.fpr95;
        a[t] = m.auroc;
    }
    free(si);
    free(so);
    if (st) return st;
    *best = oc_tune_pick(f, a, OC_GRID_NT);
    if (fpr) memcpy(fpr, f, sizeof f);
    return OC_OK;
}

/* ---------------------------------------------------------------- OOD sets */

void oc_ood_set_free(struct oc_ood_set *s)
{
    oc_dataset_free(&s->test);
    oc_dataset_free(&s->val);
}

static int name_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == '+'))
            return 0;
    return 1;
}

#define OOD_SET_N 1500

enum oc_status oc_ood_set_load(const char *name_spec, int c, int h, int w, int64_t n,
                               uint64_t seed, struct oc_ood_set *out, struct oc_err *err)
{
    if (n <= 0) n = OOD_SET_N;
    memset(out, 0, sizeof *out);
    char buf[1024];
    if (strlen(name_spec) >= sizeof buf)
        return oc_err_set(err, OC_ERR_INVALID, "OOD set spec too long: %.40s...", name_spec);
    strcpy(buf, name_spec);
    char *spec = buf, *eq = strchr(buf, '=');
    /* NAME=SPEC, unless the '=' belongs to ",val=" */
    if (eq && (eq - buf < 4 || strncmp(eq - 4, ",val", 4))) {
        *eq = 0;
        spec = eq + 1;
        if (!name_ok(buf))
            return oc_err_set(err, OC_ERR_INVALID,
                              "OOD set name '%s': use letters, digits, '-', '_', '.' or '+'", buf);
        snprintf(out->name, sizeof out->name, "%s", buf);
    }
    char val_path[1024] = "";
    char *v = strstr(spec, ",val=");
    if (v) {
        snprintf(val_path, sizeof val_path, "%s", v + 5);
        *v = 0;
    }
    char data_spec[1100];
    const char *kind = NULL;
    if (!strcmp(spec, "gaussian") || !strcmp(spec, "uniform")) {
        snprintf(data_spec, sizeof data_spec, "%s", spec);
        kind = spec;
    } else if (!strncmp(spec, "idx:", 4) && spec[4]) {
        snprintf(data_spec, sizeof data_spec, "%s", spec);
        kind = "idx";
    } else if (!strncmp(spec, "cifar:", 6) && spec[6]) {
        snprintf(data_spec, sizeof data_spec, "cifar-bin:%s", spec + 6);
        kind = "cifar";
    } else if (!strncmp(spec, "folder:", 7)) {
        char *mode = strrchr(spec + 7, ':');
        if (!mode || mode == spec + 7 || (strcmp(mode + 1, "crop") && strcmp(mode + 1, "resize")))
            return oc_err_set(err, OC_ERR_INVALID,
                              "OOD spec '%s': expected folder:DIR:crop or folder:DIR:resize", spec);
        *mode = 0;
        snprintf(data_spec, sizeof data_spec, "%s:%s", mode + 1, spec + 7);
        kind = "folder";
    }
    if (!kind)
        return oc_err_set(err, OC_ERR_INVALID,
                          "unknown OOD spec '%s' (expected gaussian, uniform, idx:PATH[,val=PATH], "
                          "cifar:PATH[,val=PATH] or folder:DIR:crop|resize)",
                          spec);
    if (*val_path && strcmp(kind, "idx") && strcmp(kind, "cifar"))
        return oc_err_set(err, OC_ERR_INVALID, "OOD spec '%s': only idx: and cifar: sets take ,val=",
                          name_spec);
    snprintf(out->spec, sizeof out->spec, "%s", name_spec);
    if (!out->name[0]) {
        /* a bare spec is named after its kind (and folder mode) */
        if (!strcmp(kind, "folder"))
            snprintf(out->name, sizeof out->name, "folder-%s", data_spec[0] == 'c' ? "crop" : "resize");
        else
            snprintf(out->name, sizeof out->name, "%s", kind);
    }
    snprintf(out->label, sizeof out->label, "%s", out->name);
    enum oc_status st;
    if (*val_path) {
        char vspec[1100];
        snprintf(vspec, sizeof vspec, "%s%s", !strcmp(kind, "idx") ? "idx:" : "cifar-bin:", val_path);
        if ((st = oc_data_load_spec(data_spec, c, h, w, 0, seed, &out->test, err)) ||
            (st = oc_data_load_spec(vspec, c, h, w, 0, seed, &out->val, err))) {
            oc_ood_set_free(out);
            return st;
        }
    } else {
        struct oc_dataset all;
        if ((st = oc_data_load_spec(data_spec, c, h, w, n, seed, &all, err))) return st;
        if (all.n < 3) {
            oc_dataset_free(&all);
            return oc_err_set(err, OC_ERR_INVALID, "OOD set %s (%s): %lld images, need at least 3",
                              out->name, spec, (long long)all.n);
        }
        int64_t nt = all.n * 2 / 3;
        st = oc_data_split(&all, nt, seed ^ 0x6f6f64ull, &out->test, &out->val, err);
        oc_dataset_free(&all);
        if (st) return st;
    }
    if (out->test.n < 1 || out->val.n < 1) {
        oc_ood_set_free(out);
        return oc_err_set(err, OC_ERR_INVALID, "OOD set %s: an empty test or validation split",
                          out->name);
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- methods */

static void applicable_names(const char *head, char *buf, size_t n)
{
    buf[0] = 0;
    for (int i = 0; oc_scorers[i]; i++) {
        if (!oc_scorer_applies(oc_scorers[i], head)) continue;
        if (buf[0]) strncat(buf, ", ", n - strlen(buf) - 1);
        strncat(buf, oc_scorers[i]->name, n - strlen(buf) - 1);
    }
}

/* Splits a comma list into the scorers it names (in registry order). */
static enum oc_status select_scorers(const char *methods, const char *head,
                                     const struct oc_scorer **sel, int *nsel, struct oc_err *err)
{
    int want[64] = {0};
    char names[512];
    applicable_names(head, names, sizeof names);
    if (methods && *methods) {
        char item[64];
        for (const char *p = methods; *p;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len == 0 || len >= sizeof item)
                return oc_err_set(err, OC_ERR_INVALID, "bad method list '%s'", methods);
            memcpy(item, p, len);
            item[len] = 0;
            const struct oc_scorer *s = oc_scorer_find(item);
            if (!s) {
                char all[512] = "";
                for (int i = 0; oc_scorers[i]; i++) {
                    if (i) strncat(all, ", ", sizeof all - strlen(all) - 1);
                    strncat(all, oc_scorers[i]->name, sizeof all - strlen(all) - 1);
                }
                return oc_err_set(err, OC_ERR_INVALID, "unknown method '%s' (known: %s)", item, all);
            }
            if (!oc_scorer_applies(s, head))
                return oc_err_set(err, OC_ERR_INVALID,
                                  "method '%s' applies to the %s head, not %s (methods for %s: %s)",
                                  s->name, s->heads, head, head, names);
            for (int i = 0; oc_scorers[i]; i++)
                if (oc_scorers[i] == s) want[i] = 1;
            p = e ? e + 1 : p + len;
        }
    } else {
        for (int i = 0; oc_scorers[i]; i++) want[i] = oc_scorer_applies(oc_scorers[i], head);
    }
    *nsel = 0;
    for (int i = 0; oc_scorers[i]; i++)
        if (want[i]) sel[(*nsel)++] = oc_scorers[i];
    if (!*nsel) return oc_err_set(err, OC_ERR_INVALID, "no method applies to the %s head", head);
    return OC_OK;
}

enum oc_status oc_eval_check_methods(const char *methods, const char *head, struct oc_err *err)
{
    const struct oc_scorer *sel[64];
    int n;
    return select_scorers(methods, head, sel, &n, err);
}

/* ---------------------------------------------------------------- the model's graphs */

struct ectx {
    const struct oc_eval_model *m;
    const struct oc_eval_opts *o;
    const char *device;
    int B, c, h, w;
    int64_t isz;            /* c*h*w */
    unsigned outs;          /* OC_SC_* bits of the head outputs kept */
    struct oc_head_dims d;
    struct oc_graph *fg;    /* forward */
    struct oc_exec *fx;
    struct oc_buf x, step;  /* staging */
    float *prior_mu, *prior_sd;
};

static enum oc_status finish_graph(struct oc_graph **g, struct oc_err *err)
{
    enum oc_status st = oc_graph_status(*g);
    if (st) return oc_err_set(err, st, "building graph \"%s\": %s", (*g)->name, (*g)->err.msg);
    return oc_pass_simplify(g, err);
}

static enum oc_status compile_bind(struct ectx *e, struct oc_graph *g, struct oc_exec **ex,
                                   struct oc_err *err)
{
    struct oc_compile_opts co = oc_compile_defaults();
    co.rt = e->o->rt;
    enum oc_status st = oc_compile(g, e->device, &co, ex, err);
    if (!st && e->m->bind) st = e->m->bind(e->m->bind_ctx, *ex, g, err);
    if (!st && oc_graph_find_named(g, "step") >= 0) st = oc_exec_set(*ex, "step", &e->step, err);
    if (st && *ex) {
        oc_exec_free(*ex);
        *ex = NULL;
    }
    return st;
}

static enum oc_status build_forward(struct ectx *e, struct oc_err *err)
{
    const struct oc_model_cfg *mc = &e->m->cfg;
    struct oc_graph *g = oc_graph_new("eval-forward");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(e->B, e->c, e->h, e->w));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out h;
    oc_model_build(g, mc, x, OC_NONE, step, 0, &h);
    if (!oc_valid(h.logits) && oc_valid(h.bin_logits)) h.logits = h.bin_logits;
    if (oc_valid(h.logits)) oc_output(g, "logits", h.logits);
    if (oc_valid(h.bin_logits) && (e->outs & OC_SC_BIN)) oc_output(g, "bin_logits", h.bin_logits);
    if (oc_valid(h.mu) && (e->outs & OC_SC_LATENT)) {
        oc_output(g, "mu", h.mu);
        oc_output(g, "sd", h.sd);
        oc_output(g, "prior_mu", h.prior_mu);
        oc_output(g, "prior_sd", h.prior_sd);
    }
    if (e->outs & OC_SC_FEATURES) oc_output(g, "features", h.features);
    e->d.k = mc->hc.nclasses;
    e->d.f = oc_wrn_features(&mc->wrn);
    if (oc_valid(h.mu)) {
        e->d.z = (int)g->nodes[h.mu.id]->shape.dim[1];
        e->d.p = (int)g->nodes[h.prior_mu.id]->shape.dim[0];
    }
    if (!oc_valid(h.bin_logits)) e->outs &= ~(unsigned)OC_SC_BIN;
    if (!oc_valid(h.mu)) e->outs &= ~(unsigned)OC_SC_LATENT;
    enum oc_status st = finish_graph(&g, err);
    if (st) {
        oc_graph_free(g);
        return st;
    }
    e->fg = g;
    return compile_bind(e, g, &e->fx, err);
}

static void free_ectx(struct ectx *e)
{
    oc_exec_free(e->fx);
    oc_graph_free(e->fg);
    oc_buf_free(&e->x);
    oc_buf_free(&e->step);
    free(e->prior_mu);
    free(e->prior_sd);
}

static enum oc_status alloc_vals(struct ectx *e, int64_t n, struct oc_head_vals *v,
                                 struct oc_err *err)
{
    memset(v, 0, sizeof *v);
    v->n = n;
    v->d = e->d;
    size_t nn = (size_t)(n > 0 ? n : 1);
    v->logits = malloc(sizeof(float) * nn * (size_t)e->d.k);
    int ok = v->logits != NULL;
    if (e->outs & OC_SC_BIN) ok &= (v->bin_logits = malloc(sizeof(float) * nn * (size_t)e->d.k)) != NULL;
    if (e->outs & OC_SC_LATENT) {
        ok &= (v->mu = malloc(sizeof(float) * nn * (size_t)e->d.z)) != NULL;
        ok &= (v->sd = malloc(sizeof(float) * nn * (size_t)e->d.z)) != NULL;
        size_t pz = (size_t)e->d.p * (size_t)e->d.z;
        ok &= (v->prior_mu = malloc(sizeof(float) * pz)) != NULL;
        ok &= (v->prior_sd = malloc(sizeof(float) * pz)) != NULL;
        if (ok && e->prior_mu) {
            memcpy(v->prior_mu, e->prior_mu, sizeof(float) * pz);
            memcpy(v->prior_sd, e->prior_sd, sizeof(float) * pz);
        }
    }
    if (e->outs & OC_SC_FEATURES) ok &= (v->features = malloc(sizeof(float) * nn * (size_t)e->d.f)) != NULL;
    if (!ok) {
        oc_head_vals_free(v);
        return oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory for %lld head outputs",
                          (long long)n);
    }
    return OC_OK;
}

static enum oc_status get_rows(struct oc_exec *ex, const char *name, float *dst, int64_t m, int w,
                               struct oc_err *err)
{
    struct oc_buf b;
    enum oc_status st = oc_exec_get(ex, name, &b, err);
    if (st) return st;
    memcpy(dst, b.data, sizeof(float) * (size_t)(m * w));
    oc_buf_free(&b);
    return OC_OK;
}

/* Fills the staging input with images [off, off+m) of x (+ eps * dir),
 * zero-padding a partial batch. */
static void stage(struct ectx *e, const float *x, const float *dir, double eps, int64_t off,
                  int64_t m)
{
    float *dst = e->x.data;
    const float *src = x + off * e->isz;
    int64_t cnt = m * e->isz;
    if (dir && eps != 0) {
        const float *ds = dir + off * e->isz;
        float fe = (float)eps;
        for (int64_t i = 0; i < cnt; i++) dst[i] = src[i] + fe * ds[i];
    } else {
        memcpy(dst, src, sizeof(float) * (size_t)cnt);
    }
    memset(dst + cnt, 0, sizeof(float) * (size_t)((e->B - m) * e->isz));
}

/* The head outputs of n images x (+ eps * dir). */
static enum oc_status forward(struct ectx *e, const float *x, int64_t n, const float *dir,
                              double eps, struct oc_head_vals *v, struct oc_err *err)
{
    enum oc_status st = alloc_vals(e, n, v, err);
    for (int64_t off = 0; off < n && !st; off += e->B) {
        int64_t m = n - off < e->B ? n - off : e->B;
        stage(e, x, dir, eps, off, m);
        if ((st = oc_exec_set(e->fx, "x", &e->x, err)) || (st = oc_exec_run(e->fx, 0, err))) break;
        st = get_rows(e->fx, "logits", v->logits + off * e->d.k, m, e->d.k, err);
        if (!st && v->bin_logits)
            st = get_rows(e->fx, "bin_logits", v->bin_logits + off * e->d.k, m, e->d.k, err);
        if (!st && v->mu) st = get_rows(e->fx, "mu", v->mu + off * e->d.z, m, e->d.z, err);
        if (!st && v->sd) st = get_rows(e->fx, "sd", v->sd + off * e->d.z, m, e->d.z, err);
        if (!st && v->features)
            st = get_rows(e->fx, "features", v->features + off * e->d.f, m, e->d.f, err);
        if (!st && v->prior_mu && off == 0) {
            st = get_rows(e->fx, "prior_mu", v->prior_mu, e->d.p, e->d.z, err);
            if (!st) st = get_rows(e->fx, "prior_sd", v->prior_sd, e->d.p, e->d.z, err);
        }
    }
    if (st) oc_head_vals_free(v);
    return st;
}

/* The perturbation graph of scorer s: output "dir" = sign(grad_x objective). */
struct pgraph {
    struct oc_graph *g;
    struct oc_exec *ex;
    struct oc_buf T;
};

static void pgraph_free(struct pgraph *p)
{
    oc_exec_free(p->ex);
    oc_graph_free(p->g);
    oc_buf_free(&p->T);
    memset(p, 0, sizeof *p);
}

static enum oc_status build_pgraph(struct ectx *e, const struct oc_scorer *s,
                                   const struct oc_class_stats *cs, struct pgraph *p,
                                   struct oc_err *err)
{
    memset(p, 0, sizeof *p);
    struct oc_graph *g = oc_graph_new("eval-perturb");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(e->B, e->c, e->h, e->w));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_score_in in;
    memset(&in, 0, sizeof in);
    oc_model_build(g, &e->m->cfg, x, OC_NONE, step, 0, &in.h);
    in.T = in.class_mean = in.precision = OC_NONE;
    if (s->flags & OC_SC_TUNE_T) in.T = oc_input(g, "T", OC_F32, OC_SCALAR);
    if (s->needs & OC_SC_FEATURES) {
        in.class_mean = oc_input(g, "class_mean", OC_F32, OC_SHAPE(e->d.k, e->d.f));
        in.precision = oc_input(g, "precision", OC_F32, OC_SHAPE(e->d.f, e->d.f));
    }
    oc_tensor obj = s->objective ? s->objective(g, &in) : s->score(g, &in);
    oc_tensor total = oc_sum(g, obj, oc_all_axes(g, obj), 0);
    enum oc_status st = oc_graph_status(g);
    if (st) {
        st = oc_err_set(err, st, "perturbation graph of %s: %s", s->name, g->err.msg);
        oc_graph_free(g);
        return st;
    }
    int gx;
    if ((st = oc_pass_autodiff(g, total.id, -1, &x.id, 1, &gx, err))) {
        oc_graph_free(g);
        return st;
    }
    oc_output(g, "dir", oc_sign(g, (oc_tensor){gx}));
    if ((st = finish_graph(&g, err))) {
        oc_graph_free(g);
        return st;
    }
    p->g = g;
    if ((st = compile_bind(e, g, &p->ex, err))) goto fail;
    if (s->needs & OC_SC_FEATURES) {
        struct oc_buf cm = {OC_F64, OC_SHAPE(cs->k, cs->f), cs->mean};
        struct oc_buf pr = {OC_F64, OC_SHAPE(cs->f, cs->f), cs->precision};
        if ((st = oc_exec_set(p->ex, "class_mean", &cm, err)) ||
            (st = oc_exec_set(p->ex, "precision", &pr, err)))
            goto fail;
    }
    struct oc_shape s0 = OC_SCALAR;
    if ((st = oc_buf_alloc(&p->T, OC_F32, &s0))) goto fail;
    return OC_OK;
fail:
    pgraph_free(p);
    return st;
}

/* dir[n * isz] = sign(grad_x objective(x; T)) for n images. */
static enum oc_status perturb_dirs(struct ectx *e, struct pgraph *p, const float *x, int64_t n,
                                   double T, float **dir_out, struct oc_err *err)
{
    float *dir = malloc(sizeof(float) * (size_t)(n * e->isz + 1));
    if (!dir) return oc_err_set(err, OC_ERR_NOMEM, "perturbation: out of memory");
    enum oc_status st = OC_OK;
    if (oc_graph_find_named(p->g, "T") >= 0) {
        ((float *)p->T.data)[0] = (float)T;
        st = oc_exec_set(p->ex, "T", &p->T, err);
    }
    for (int64_t off = 0; off < n && !st; off += e->B) {
        int64_t m = n - off < e->B ? n - off : e->B;
        stage(e, x, NULL, 0, off, m);
        if ((st = oc_exec_set(p->ex, "x", &e->x, err)) || (st = oc_exec_run(p->ex, 0, err))) break;
        st = get_rows(p->ex, "dir", dir + off * e->isz, m, (int)e->isz, err);
    }
    if (st) {
        free(dir);
        return st;
    }
    *dir_out = dir;
    return OC_OK;
}

/* ---------------------------------------------------------------- the evaluation */

static int isdir_or_mkdir(const char *path)
{
    struct stat sb;
    if (!stat(path, &sb)) return S_ISDIR(sb.st_mode);
    return mkdir(path, 0777) == 0 || errno == EEXIST;
}

/* mkdir -p */
static enum oc_status mkdirs(const char *path, struct oc_err *err)
{
    char p[1024];
    if (strlen(path) >= sizeof p) return oc_err_set(err, OC_ERR_IO, "path too long: %s", path);
    strcpy(p, path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (!isdir_or_mkdir(p)) return oc_err_set(err, OC_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (!isdir_or_mkdir(p)) return oc_err_set(err, OC_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
    return OC_OK;
}

static enum oc_status write_scores(const char *dir, const char *method, const char *ood,
                                   const char *which, const double *v, int64_t n,
                                   struct oc_err *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, method);
    enum oc_status st = mkdirs(path, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/%s/%s-%s.npy", dir, method, ood, which);
    struct oc_buf b = {OC_F64, OC_SHAPE(n), (void *)v};
    return oc_npy_write(path, &b, err);
}

void oc_eval_result_free(struct oc_eval_result *r)
{
    for (int i = 0; i < r->nrows; i++) {
        free(r->rows[i].in_scores);
        free(r->rows[i].out_scores);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* A seeded subset of at most n images (n <= 0: all), as a view or a copy. */
static enum oc_status subset(const struct oc_dataset *ds, int64_t n, uint64_t seed,
                             struct oc_dataset *out, int *owned, struct oc_err *err)
{
    if (n <= 0 || n >= ds->n) {
        *out = *ds;
        *owned = 0;
        return OC_OK;
    }
    *owned = 1;
    return oc_data_split(ds, n, seed, out, NULL, err);
}

/* Everything one model's evaluation holds. The validation images of the
 * tuning (in-distribution first, then each OOD set's) are one array, so a
 * gradient or forward pass over all of them pads one batch at most; the
 * per-set head outputs are views into tune_v. */
struct run {
    struct ectx e;
    float *tune_x;          /* the validation images, concatenated */
    int64_t *tune_off;      /* nood + 2 offsets: set s is [tune_off[s], tune_off[s+1]) */
    struct oc_head_vals tune_v, in_val_v, *ood_val_v; /* owned / views / views */
    struct oc_head_vals in_test, *ood_test;
    struct oc_class_stats cs;
    int nood;
};

/* Rows [off, off + n) of v, sharing its storage. */
static struct oc_head_vals vals_view(const struct oc_head_vals *v, int64_t off, int64_t n)
{
    struct oc_head_vals w = *v;
    w.n = n;
    if (v->logits) w.logits = v->logits + off * v->d.k;
    if (v->bin_logits) w.bin_logits = v->bin_logits + off * v->d.k;
    if (v->mu) w.mu = v->mu + off * v->d.z;
    if (v->sd) w.sd = v->sd + off * v->d.z;
    if (v->features) w.features = v->features + off * v->d.f;
    return w;
}

static void run_free(struct run *R)
{
    oc_head_vals_free(&R->in_test);
    oc_head_vals_free(&R->tune_v);
    for (int j = 0; j < R->nood; j++)
        if (R->ood_test) oc_head_vals_free(&R->ood_test[j]);
    free(R->ood_test);
    free(R->ood_val_v);
    free(R->tune_x);
    free(R->tune_off);
    oc_class_stats_free(&R->cs);
    free_ectx(&R->e);
}

/* Concatenates seeded subsets of the validation sets into R->tune_x. */
static enum oc_status gather_tuning(struct run *R, const struct oc_eval_data *d,
                                    const struct oc_eval_opts *o, uint64_t seed,
                                    struct oc_err *err)
{
    int ns = d->nood + 1;
    struct oc_dataset *sub = calloc((size_t)ns, sizeof *sub);
    int *owned = calloc((size_t)ns, sizeof *owned);
    R->tune_off = calloc((size_t)ns + 1, sizeof *R->tune_off);
    enum oc_status st = OC_OK;
    if (!sub || !owned || !R->tune_off) st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    for (int s = 0; s < ns && !st; s++) {
        const struct oc_dataset *src = s ? &d->ood[s - 1].val : d->in_val;
        st = subset(src, s ? o->tune_ood_n : o->tune_in_n, seed + (uint64_t)s, &sub[s], &owned[s], err);
        if (!st) R->tune_off[s + 1] = R->tune_off[s] + sub[s].n;
    }
    if (!st) {
        R->tune_x = malloc(sizeof(float) * (size_t)(R->tune_off[ns] * R->e.isz));
        if (!R->tune_x) st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    }
    for (int s = 0; s < ns && !st; s++)
        memcpy(R->tune_x + R->tune_off[s] * R->e.isz, sub[s].images,
               sizeof(float) * (size_t)(sub[s].n * R->e.isz));
    for (int s = 0; s < ns && sub; s++)
        if (owned && owned[s]) oc_dataset_free(&sub[s]);
    free(sub);
    free(owned);
    return st;
}

static enum oc_status add_row(struct oc_eval_result *r, const struct oc_scorer *s, int ood,
                              double T, double eps, double *in, int64_t n_in, double *out,
                              int64_t n_out, const struct oc_eval_opts *o, const char *ood_name,
                              struct oc_err *err)
{
    struct oc_eval_row *row = &r->rows[r->nrows];
    memset(row, 0, sizeof *row);
    row->scorer = s;
    row->ood = ood;
    row->T = T;
    row->eps = eps;
    row->n_in = n_in;
    row->n_out = n_out;
    row->in_scores = malloc(sizeof(double) * (size_t)n_in);
    row->out_scores = out;
    if (!row->in_scores) {
        free(out);
        return oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    }
    memcpy(row->in_scores, in, sizeof(double) * (size_t)n_in);
    r->nrows++;
    enum oc_status st = oc_metrics_compute(row->in_scores, n_in, out, n_out, &row->m, err);
    if (st) return st;
    if (o->scores_dir) {
        if ((st = write_scores(o->scores_dir, s->name, ood_name, "in", row->in_scores, n_in, err)) ||
            (st = write_scores(o->scores_dir, s->name, ood_name, "out", out, n_out, err)))
            return st;
    }
    return OC_OK;
}

/* A scorer without input perturbation: T tuned per OOD set (or none). */
static enum oc_status eval_plain(struct run *R, const struct oc_scorer *s,
                                 const struct oc_eval_data *d, const struct oc_eval_opts *o,
                                 struct oc_eval_result *r, struct oc_err *err)
{
    struct oc_score_exec *se;
    int64_t batch = 500;
    enum oc_status st =
        oc_score_exec_new(s, &R->e.d, batch, &R->cs, R->e.device, o->rt, &se, err);
    if (st) return st;
    double *in = malloc(sizeof(double) * (size_t)R->in_test.n);
    double cache_T = NAN;
    int cached = 0;
    if (!in) st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    for (int j = 0; j < R->nood && !st; j++) {
        double T = NAN;
        if (s->flags & OC_SC_TUNE_T) {
            int best;
            if ((st = oc_tune_T(se, &R->in_val_v, &R->ood_val_v[j], &best, NULL, err))) break;
            T = oc_grid_T[best];
        }
        /* the in-distribution test scores depend on T only */
        if (!cached || !(cache_T == T || (isnan(cache_T) && isnan(T)))) {
            if ((st = oc_score_exec_run(se, &R->in_test, isnan(T) ? 1 : T, in, err))) break;
            cache_T = T;
            cached = 1;
        }
        double *out = malloc(sizeof(double) * (size_t)R->ood_test[j].n);
        if (!out) {
            st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
            break;
        }
        if ((st = oc_score_exec_run(se, &R->ood_test[j], isnan(T) ? 1 : T, out, err))) {
            free(out);
            break;
        }
        st = add_row(r, s, j, T, NAN, in, R->in_test.n, out, R->ood_test[j].n, o, d->ood[j].name,
                     err);
    }
    free(in);
    oc_score_exec_free(se);
    return st;
}

/* Scores of n images at (T, eps): gradient pass, perturbed forward, score. */
static enum oc_status perturbed_scores(struct run *R, struct pgraph *p, struct oc_score_exec *se,
                                       const struct oc_dataset *ds, const struct oc_head_vals *plain,
                                       double T, double eps, double *scores, struct oc_err *err)
{
    if (eps == 0) return oc_score_exec_run(se, plain, T, scores, err);
    float *dir;
    enum oc_status st = perturb_dirs(&R->e, p, ds->images, ds->n, T, &dir, err);
    if (st) return st;
    struct oc_head_vals v;
    st = forward(&R->e, ds->images, ds->n, dir, eps, &v, err);
    free(dir);
    if (!st) st = oc_score_exec_run(se, &v, T, scores, err);
    oc_head_vals_free(&v);
    return st;
}

/* A scorer with input perturbation: (T, eps) tuned per OOD set. Per T:
 * one gradient pass over all the validation images, then per nonzero eps
 * one forward pass and one scoring of all of them; eps = 0 reuses the
 * unperturbed outputs. */
static enum oc_status eval_perturbed(struct run *R, const struct oc_scorer *s,
                                     const struct oc_eval_data *d, const struct oc_eval_opts *o,
                                     struct oc_eval_result *r, struct oc_err *err)
{
    struct ectx *e = &R->e;
    int nT = (s->flags & OC_SC_TUNE_T) ? OC_GRID_NT : 1;
    int nood = R->nood, ncomb = nT * OC_GRID_NEPS;
    int64_t ntune = R->tune_off[nood + 1];
    struct oc_score_exec *se = NULL;
    struct pgraph p;
    memset(&p, 0, sizeof p);
    enum oc_status st = oc_score_exec_new(s, &e->d, 500, &R->cs, e->device, o->rt, &se, err);
    if (!st) st = build_pgraph(e, s, &R->cs, &p, err);
    double *fpr = malloc(sizeof(double) * (size_t)(ncomb * nood));
    double *auc = malloc(sizeof(double) * (size_t)(ncomb * nood));
    int64_t maxn = ntune > R->in_test.n ? ntune : R->in_test.n;
    double *sc = malloc(sizeof(double) * (size_t)maxn);
    if (!st && (!fpr || !auc || !sc)) st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    double t0 = now_s();
    for (int ti = 0; ti < nT && !st; ti++) {
        double T = nT > 1 ? oc_grid_T[ti] : 1.0;
        float *dir = NULL;
        st = perturb_dirs(e, &p, R->tune_x, ntune, T, &dir, err);
        for (int ei = 0; ei < OC_GRID_NEPS && !st; ei++) {
            double eps = oc_grid_eps[ei];
            struct oc_head_vals v;
            memset(&v, 0, sizeof v);
            const struct oc_head_vals *pv = &R->tune_v;
            if (eps != 0) {
                if ((st = forward(e, R->tune_x, ntune, dir, eps, &v, err))) break;
                pv = &v;
            }
            st = oc_score_exec_run(se, pv, T, sc, err);
            int64_t n_in = R->tune_off[1];
            for (int j = 0; j < nood && !st; j++) {
                struct oc_metrics m;
                int64_t a = R->tune_off[j + 1], b = R->tune_off[j + 2];
                if ((st = oc_metrics_compute(sc, n_in, sc + a, b - a, &m, err))) break;
                fpr[j * ncomb + ti * OC_GRID_NEPS + ei] = m.fpr95;
                auc[j * ncomb + ti * OC_GRID_NEPS + ei] = m.auroc;
            }
            oc_head_vals_free(&v);
        }
        free(dir);
        if (!st)
            logf_(o->log, "  %s: tuning on %lld validation images, T %d/%d (%.0f s)\n", s->name,
                  (long long)ntune, ti + 1, nT, now_s() - t0);
    }
    /* the test splits at each OOD set's (T, eps); the in-distribution test
     * scores are computed once per distinct pair */
    int *pick = calloc((size_t)nood, sizeof *pick);
    if (!st && !pick) st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    for (int j = 0; j < nood && !st; j++) pick[j] = oc_tune_pick(fpr + j * ncomb, auc + j * ncomb, ncomb);
    for (int j = 0; j < nood && !st; j++) {
        int ti = pick[j] / OC_GRID_NEPS, ei = pick[j] % OC_GRID_NEPS;
        double T = nT > 1 ? oc_grid_T[ti] : 1.0, eps = oc_grid_eps[ei];
        int same = -1;
        for (int q = 0; q < j; q++)
            if (pick[q] == pick[j]) same = q;
        if (same >= 0) {
            /* this scorer's rows so far are the last j of r */
            memcpy(sc, r->rows[r->nrows - j + same].in_scores, sizeof(double) * (size_t)R->in_test.n);
        } else if ((st = perturbed_scores(R, &p, se, d->in_test, &R->in_test, T, eps, sc, err))) {
            break;
        }
        double *out = malloc(sizeof(double) * (size_t)R->ood_test[j].n);
        if (!out) {
            st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
            break;
        }
        if ((st = perturbed_scores(R, &p, se, &d->ood[j].test, &R->ood_test[j], T, eps, out, err))) {
            free(out);
            break;
        }
        st = add_row(r, s, j, (s->flags & OC_SC_TUNE_T) ? T : NAN, eps, sc, R->in_test.n, out,
                     R->ood_test[j].n, o, d->ood[j].name, err);
    }
    free(pick);
    free(fpr);
    free(auc);
    free(sc);
    pgraph_free(&p);
    oc_score_exec_free(se);
    return st;
}

/* An evaluation context for the standalone entry points. */
static enum oc_status ectx_open(struct ectx *e, const struct oc_eval_model *m,
                                const struct oc_eval_opts *o, unsigned needs, struct oc_err *err)
{
    memset(e, 0, sizeof *e);
    e->m = m;
    e->o = o;
    e->device = o->device ? o->device : "cpu";
    e->B = o->batch > 0 ? o->batch : 250;
    e->c = m->cfg.wrn.in_ch;
    e->h = e->w = m->cfg.wrn.size;
    e->isz = (int64_t)e->c * e->h * e->w;
    e->outs = needs | OC_SC_LOGITS;
    struct oc_shape s0 = OC_SCALAR, xs = OC_SHAPE(e->B, e->c, e->h, e->w);
    enum oc_status st = oc_buf_alloc(&e->step, OC_I32, &s0);
    if (!st) st = oc_buf_alloc(&e->x, OC_F32, &xs);
    if (!st) st = build_forward(e, err);
    return st;
}

enum oc_status oc_eval_forward(const struct oc_eval_model *m, const float *x, int64_t n,
                               unsigned needs, const struct oc_eval_opts *o,
                               struct oc_head_vals *out, struct oc_err *err)
{
    struct ectx e;
    enum oc_status st = ectx_open(&e, m, o, needs, err);
    if (!st) st = forward(&e, x, n, NULL, 0, out, err);
    free_ectx(&e);
    return st;
}

enum oc_status oc_eval_perturb(const struct oc_eval_model *m, const struct oc_scorer *s,
                               const struct oc_class_stats *cs, const float *x, int64_t n,
                               double T, double eps, const struct oc_eval_opts *o, float *out,
                               struct oc_err *err)
{
    if ((s->needs & OC_SC_FEATURES) && !cs)
        return oc_err_set(err, OC_ERR_INVALID, "perturbation of %s needs class statistics", s->name);
    struct ectx e;
    struct pgraph p;
    float *dir = NULL;
    memset(&p, 0, sizeof p);
    enum oc_status st = ectx_open(&e, m, o, s->needs, err);
    if (!st) st = build_pgraph(&e, s, cs, &p, err);
    if (!st) st = perturb_dirs(&e, &p, x, n, T, &dir, err);
    for (int64_t i = 0; !st && i < n * e.isz; i++) out[i] = x[i] + (float)eps * dir[i];
    free(dir);
    pgraph_free(&p);
    free_ectx(&e);
    return st;
}

static double accuracy_of(const struct oc_head_vals *v, const int32_t *labels)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < v->n; i++) {
        const float *l = v->logits + i * v->d.k;
        int best = 0;
        for (int k = 1; k < v->d.k; k++)
            if (l[k] > l[best]) best = k;
        ok += best == labels[i];
    }
    return v->n ? 100.0 * (double)ok / (double)v->n : 0;
}

static enum oc_status check_set(const char *what, const struct oc_dataset *ds, int c, int h, int w,
                                struct oc_err *err)
{
    if (!ds || ds->n < 1) return oc_err_set(err, OC_ERR_INVALID, "evaluation: the %s set is empty", what);
    if (ds->c != c || ds->h != h || ds->w != w)
        return oc_err_set(err, OC_ERR_SHAPE, "evaluation: the %s set has %dx%dx%d images, the model takes %dx%dx%d",
                          what, ds->c, ds->h, ds->w, c, h, w);
    return OC_OK;
}

enum oc_status oc_eval_run(const struct oc_eval_model *m, const struct oc_eval_data *d,
                           const struct oc_eval_opts *o, struct oc_eval_result *r,
                           struct oc_err *err)
{
    memset(r, 0, sizeof *r);
    const char *head = m->cfg.head->name;
    const struct oc_scorer *sel[64];
    int nsel;
    enum oc_status st = select_scorers(o->methods, head, sel, &nsel, err);
    if (st) return st;
    /* Mahalanobis needs training features; without them it is left out
     * unless it was asked for by name */
    int k = 0;
    for (int i = 0; i < nsel; i++) {
        if ((sel[i]->needs & OC_SC_FEATURES) && !d->in_train) {
            if (o->methods && *o->methods)
                return oc_err_set(err, OC_ERR_INVALID, "method %s needs the training set", sel[i]->name);
            continue;
        }
        sel[k++] = sel[i];
    }
    nsel = k;
    const struct oc_wrn_config *wc = &m->cfg.wrn;
    if ((st = check_set("in-distribution test", d->in_test, wc->in_ch, wc->size, wc->size, err)) ||
        (st = check_set("in-distribution validation", d->in_val, wc->in_ch, wc->size, wc->size, err)))
        return st;
    if (!d->in_test->labels)
        return oc_err_set(err, OC_ERR_INVALID, "evaluation: the in-distribution test set has no labels");
    for (int j = 0; j < d->nood; j++) {
        char what[128];
        snprintf(what, sizeof what, "OOD %s test", d->ood[j].name);
        if ((st = check_set(what, &d->ood[j].test, wc->in_ch, wc->size, wc->size, err))) return st;
        snprintf(what, sizeof what, "OOD %s validation", d->ood[j].name);
        if ((st = check_set(what, &d->ood[j].val, wc->in_ch, wc->size, wc->size, err))) return st;
    }
    if (d->nood < 1) return oc_err_set(err, OC_ERR_INVALID, "evaluation: no OOD set given");

    struct run R;
    memset(&R, 0, sizeof R);
    R.nood = d->nood;
    struct ectx *e = &R.e;
    e->m = m;
    e->o = o;
    e->device = o->device ? o->device : "cpu";
    e->B = o->batch > 0 ? o->batch : 250;
    e->c = wc->in_ch;
    e->h = e->w = wc->size;
    e->isz = (int64_t)e->c * e->h * e->w;
    for (int i = 0; i < nsel; i++) e->outs |= sel[i]->needs;
    snprintf(r->model, sizeof r->model, "%s", m->name ? m->name : head);
    r->rows = calloc((size_t)(nsel * d->nood), sizeof *r->rows);
    R.ood_test = calloc((size_t)d->nood, sizeof *R.ood_test);
    R.ood_val_v = calloc((size_t)d->nood, sizeof *R.ood_val_v);
    struct oc_shape s0 = OC_SCALAR, xs = OC_SHAPE(e->B, e->c, e->h, e->w);
    if (!r->rows || !R.ood_test || !R.ood_val_v)
        st = oc_err_set(err, OC_ERR_NOMEM, "evaluation: out of memory");
    if (!st) st = oc_buf_alloc(&e->step, OC_I32, &s0);
    if (!st) st = oc_buf_alloc(&e->x, OC_F32, &xs);
    double t0 = now_s();
    if (!st) st = build_forward(e, err);
    if (!st) r->started = 1;
    /* the unperturbed head outputs of every set, once */
    uint64_t seed = 0x65766131ull;
    if (!st) st = forward(e, d->in_test->images, d->in_test->n, NULL, 0, &R.in_test, err);
    for (int j = 0; j < d->nood && !st; j++)
        st = forward(e, d->ood[j].test.images, d->ood[j].test.n, NULL, 0, &R.ood_test[j], err);
    if (!st) st = gather_tuning(&R, d, o, seed, err);
    if (!st) st = forward(e, R.tune_x, R.tune_off[d->nood + 1], NULL, 0, &R.tune_v, err);
    if (!st) {
        R.in_val_v = vals_view(&R.tune_v, 0, R.tune_off[1]);
        for (int j = 0; j < d->nood; j++)
            R.ood_val_v[j] = vals_view(&R.tune_v, R.tune_off[j + 1], R.tune_off[j + 2] - R.tune_off[j + 1]);
    }
    if (!st) {
        r->accuracy = accuracy_of(&R.in_test, d->in_test->labels);
        r->n_test = d->in_test->n;
        logf_(o->log, "[%s] accuracy %.2f%% on %lld test images; head outputs of every set in %.1f s\n",
              r->model, r->accuracy, (long long)r->n_test, now_s() - t0);
    }
    /* class statistics of the training features (Mahalanobis) */
    if (!st && (e->outs & OC_SC_FEATURES)) {
        struct oc_dataset tr;
        int owned = 0;
        struct oc_head_vals tv;
        memset(&tv, 0, sizeof tv);
        double t1 = now_s();
        st = check_set("in-distribution training", d->in_train, e->c, e->h, e->w, err);
        if (!st && !d->in_train->labels)
            st = oc_err_set(err, OC_ERR_INVALID, "evaluation: the training set has no labels");
        if (!st) st = subset(d->in_train, o->fit_n, seed ^ 0x666974ull, &tr, &owned, err);
        if (!st) st = forward(e, tr.images, tr.n, NULL, 0, &tv, err);
        if (!st) st = oc_class_stats_fit(tv.features, tr.labels, tr.n, e->d.k, e->d.f, &R.cs, err);
        if (!st)
            logf_(o->log, "[%s] class means and tied covariance of %lld training images (%.1f s)\n",
                  r->model, (long long)tr.n, now_s() - t1);
        oc_head_vals_free(&tv);
        if (owned) oc_dataset_free(&tr);
    }
    for (int i = 0; i < nsel && !st; i++) {
        const struct oc_scorer *s = sel[i];
        double t1 = now_s();
        st = (s->flags & OC_SC_TUNE_EPS) ? eval_perturbed(&R, s, d, o, r, err)
                                         : eval_plain(&R, s, d, o, r, err);
        if (!st) {
            logf_(o->log, "[%s] %-12s", r->model, s->label);
            for (int j = 0; j < d->nood; j++) {
                const struct oc_eval_row *row = &r->rows[r->nrows - d->nood + j];
                logf_(o->log, "  %s: FPR95 %.1f AUROC %.2f", d->ood[j].name, 100 * row->m.fpr95,
                      100 * row->m.auroc);
            }
            logf_(o->log, "  (%.1f s)\n", now_s() - t1);
        }
    }
    run_free(&R);
    if (st) {
        int started = r->started;
        oc_eval_result_free(r);
        r->started = started;
    }
    return st;
}
