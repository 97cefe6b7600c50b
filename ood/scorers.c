/* scorers.c - the OOD scorers: each one a registry entry whose confidence
 * is written in the DSL over a head's outputs (in-distribution high), plus
 * the standalone score graphs that evaluate them on head outputs kept on
 * the host, and the class statistics of the Mahalanobis scorer.
 *
 * A score function never runs the model: it reads the tensors of struct
 * oc_score_in, which are inputs of a small f64 graph when scoring stored
 * outputs (ood/eval.c runs it for every T of the grid without a new forward
 * pass), and the model's own tensors inside the perturbation graph, where
 * autodiff differentiates the scorer's objective w.r.t. the input image. */
#include "eval.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const double oc_grid_T[OC_GRID_NT] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
const double oc_grid_eps[OC_GRID_NEPS] = {0,      0.0005, 0.001, 0.0014, 0.002, 0.0024,
                                          0.005, 0.01,   0.02,  0.05,   0.1,   0.2};

/* ---------------------------------------------------------------- score functions */

static oc_tensor max_over_classes(struct oc_graph *g, oc_tensor x)
{
    return oc_reduce_max(g, x, 2u, 0);
}

/* Baseline (Hendrycks & Gimpel 2016): the largest softmax probability. */
static oc_tensor sc_baseline(struct oc_graph *g, const struct oc_score_in *in)
{
    return max_over_classes(g, oc_softmax(g, in->h.logits, 1));
}

/* Baseline+T and ODIN's score: S(y^, x; T) = max_y softmax(p / T) (eq. 1). */
static oc_tensor sc_softmax_T(struct oc_graph *g, const struct oc_score_in *in)
{
    return max_over_classes(g, oc_softmax(g, oc_div(g, in->h.logits, in->T), 1));
}

/* ODIN (Liang et al. 2017, eq. 2) perturbs the input to increase
 * log S(y^, x; T): x' = x - eps sign(-grad log S) = x + eps sign(grad log S).
 * The max of the log-softmax is log S of the predicted class, and the
 * gradient of reduce_max flows to that class alone. */
static oc_tensor obj_odin(struct oc_graph *g, const struct oc_score_in *in)
{
    return max_over_classes(g, oc_log_softmax(g, oc_div(g, in->h.logits, in->T), 1));
}

/* BIN and BINC: the largest of the K sigmoid probabilities (sigmoid is
 * monotone, so it is the sigmoid of the largest logit). */
static oc_tensor sc_bin(struct oc_graph *g, const struct oc_score_in *in)
{
    return oc_sigmoid(g, max_over_classes(g, in->h.bin_logits));
}

/* KL(q(z|x) || prior_p) for every prior p: [B, P]. */
static oc_tensor kl_all_priors(struct oc_graph *g, const struct oc_score_in *in)
{
    const struct oc_shape *ms = &g->nodes[in->h.mu.id]->shape;
    const struct oc_shape *ps = &g->nodes[in->h.prior_mu.id]->shape;
    int64_t b = ms->dim[0], z = ms->dim[1], p = ps->dim[0];
    oc_tensor mu = oc_reshape(g, in->h.mu, OC_SHAPE(b, 1, z));
    oc_tensor sd = oc_reshape(g, in->h.sd, OC_SHAPE(b, 1, z));
    oc_tensor pm = oc_reshape(g, in->h.prior_mu, OC_SHAPE(1, p, z));
    oc_tensor psd = oc_reshape(g, in->h.prior_sd, OC_SHAPE(1, p, z));
    return oc_kl_diag_gaussian(g, mu, sd, pm, psd);
}

/* VIB (eq. 5): r = exp(-KL(q(z|x) || prior)); the score is log r. */
static oc_tensor sc_vib(struct oc_graph *g, const struct oc_score_in *in)
{
    return oc_neg(g, max_over_classes(g, kl_all_priors(g, in))); /* P = 1 */
}

/* VIBY-I (eq. 6): r = exp(-sum_y p(y|x) KL_y), p(y|x) the predictive softmax. */
static oc_tensor sc_viby1(struct oc_graph *g, const struct oc_score_in *in)
{
    oc_tensor p = oc_softmax(g, in->h.logits, 1);
    return oc_neg(g, oc_sum(g, oc_mul(g, p, kl_all_priors(g, in)), 2u, 0));
}

/* VIBY-II (eq. 7): r = exp(-min_y KL_y). */
static oc_tensor sc_viby2(struct oc_graph *g, const struct oc_score_in *in)
{
    return max_over_classes(g, oc_neg(g, kl_all_priors(g, in)));
}

/* Energy (Liu et al. 2020): the negative free energy T log sum exp(p / T)
 * at T = 1, their choice; in-distribution high. */
static oc_tensor sc_energy(struct oc_graph *g, const struct oc_score_in *in)
{
    return oc_logsumexp(g, in->h.logits, 1, 0);
}

/* MaxLogit (Hendrycks et al. 2019): the largest logit. */
static oc_tensor sc_maxlogit(struct oc_graph *g, const struct oc_score_in *in)
{
    return max_over_classes(g, in->h.logits);
}

/* Mahalanobis (Lee et al. 2018): -min_c (f - mu_c)^T Sigma^-1 (f - mu_c)
 * with the class means and tied covariance of the training features. */
static oc_tensor sc_mahalanobis(struct oc_graph *g, const struct oc_score_in *in)
{
    const struct oc_shape *fs = &g->nodes[in->h.features.id]->shape;
    const struct oc_shape *cs = &g->nodes[in->class_mean.id]->shape;
    int64_t b = fs->dim[0], f = fs->dim[1], k = cs->dim[0];
    oc_tensor d = oc_sub(g, oc_reshape(g, in->h.features, OC_SHAPE(b, 1, f)),
                         oc_reshape(g, in->class_mean, OC_SHAPE(1, k, f))); /* [B,K,F] */
    oc_tensor d2 = oc_reshape(g, d, OC_SHAPE(b * k, f));
    oc_tensor q = oc_sum(g, oc_mul(g, oc_matmul(g, d2, in->precision, 0, 0), d2), 2u, 0);
    return max_over_classes(g, oc_neg(g, oc_reshape(g, q, OC_SHAPE(b, k))));
}

/* ---------------------------------------------------------------- the registry */

#define SCORER(id, ...) static const struct oc_scorer id = {__VA_ARGS__};

SCORER(s_baseline, .name = "baseline", .label = "Baseline", .heads = "baseline",
       .summary = "max softmax probability", .needs = OC_SC_LOGITS, .score = sc_baseline)
SCORER(s_baseline_t, .name = "baseline+t", .label = "Baseline+T", .heads = "baseline",
       .summary = "max softmax of logits / T, T tuned", .needs = OC_SC_LOGITS,
       .flags = OC_SC_TUNE_T, .score = sc_softmax_T)
SCORER(s_odin, .name = "odin", .label = "ODIN", .heads = "baseline",
       .summary = "max softmax of f(x')/T, x' perturbed along grad log S; T, eps tuned",
       .needs = OC_SC_LOGITS, .flags = OC_SC_TUNE_T | OC_SC_TUNE_EPS, .score = sc_softmax_T,
       .objective = obj_odin)
SCORER(s_bin, .name = "bin", .label = "BIN", .heads = "bin", .summary = "max sigmoid",
       .needs = OC_SC_BIN, .score = sc_bin)
SCORER(s_binc, .name = "binc", .label = "BINC", .heads = "binc",
       .summary = "max sigmoid of the BIN branch", .needs = OC_SC_BIN, .score = sc_bin)
SCORER(s_vib, .name = "vib", .label = "VIB", .heads = "vib",
       .summary = "log r = -KL(q(z|x) || prior)", .needs = OC_SC_LATENT, .flags = OC_SC_LOG,
       .score = sc_vib)
SCORER(s_viby1, .name = "viby-i", .label = "VIBY-I", .heads = "viby",
       .summary = "log r = -sum_y p(y|x) KL(q(z|x) || prior_y)",
       .needs = OC_SC_LATENT | OC_SC_LOGITS, .flags = OC_SC_LOG, .score = sc_viby1)
SCORER(s_viby2, .name = "viby-ii", .label = "VIBY-II", .heads = "viby",
       .summary = "log r = -min_y KL(q(z|x) || prior_y)", .needs = OC_SC_LATENT,
       .flags = OC_SC_LOG, .score = sc_viby2)
SCORER(s_energy, .name = "energy", .label = "Energy", .heads = "baseline",
       .summary = "negative energy logsumexp(logits) (T = 1)", .needs = OC_SC_LOGITS,
       .score = sc_energy)
SCORER(s_maxlogit, .name = "maxlogit", .label = "MaxLogit", .heads = "baseline",
       .summary = "largest logit", .needs = OC_SC_LOGITS, .score = sc_maxlogit)
SCORER(s_maha, .name = "mahalanobis", .label = "Mahalanobis", .heads = "baseline",
       .summary = "-min_c Mahalanobis distance of the features (tied covariance); eps tuned",
       .needs = OC_SC_FEATURES, .flags = OC_SC_TUNE_EPS, .score = sc_mahalanobis)

const struct oc_scorer *const oc_scorers[] = {
    &s_baseline, &s_baseline_t, &s_odin,   &s_bin,      &s_binc, &s_vib,
    &s_viby1,    &s_viby2,      &s_energy, &s_maxlogit, &s_maha, NULL,
};

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

const struct oc_scorer *oc_scorer_find(const char *name)
{
    for (int i = 0; oc_scorers[i]; i++)
        if (ieq(oc_scorers[i]->name, name)) return oc_scorers[i];
    return NULL;
}

int oc_scorer_applies(const struct oc_scorer *s, const char *head)
{
    size_t n = strlen(head);
    for (const char *p = s->heads; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, head, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- score graphs */

enum oc_status oc_scorer_graph(const struct oc_scorer *s, int64_t batch,
                               const struct oc_head_dims *d, struct oc_graph **out,
                               struct oc_err *err)
{
    if (batch < 1 || d->k < 1)
        return oc_err_set(err, OC_ERR_INVALID, "scorer %s: bad batch %lld or %d classes", s->name,
                          (long long)batch, d->k);
    if ((s->needs & OC_SC_LATENT) && (d->z < 1 || d->p < 1))
        return oc_err_set(err, OC_ERR_INVALID, "scorer %s needs a latent Gaussian (mu, sd, priors)",
                          s->name);
    if ((s->needs & OC_SC_FEATURES) && d->f < 1)
        return oc_err_set(err, OC_ERR_INVALID, "scorer %s needs features", s->name);
    struct oc_graph *g = oc_graph_new(s->name);
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "scorer %s: out of memory", s->name);
    struct oc_score_in in;
    memset(&in, 0, sizeof in);
    in.h.logits = in.h.loss = in.h.bin_logits = in.h.mu = in.h.sd = OC_NONE;
    in.h.prior_mu = in.h.prior_sd = in.h.features = in.T = in.class_mean = in.precision = OC_NONE;
    const enum oc_dtype dt = OC_F64;
    if (s->needs & OC_SC_LOGITS) in.h.logits = oc_input(g, "logits", dt, OC_SHAPE(batch, d->k));
    if (s->needs & OC_SC_BIN) in.h.bin_logits = oc_input(g, "bin_logits", dt, OC_SHAPE(batch, d->k));
    if (s->needs & OC_SC_LATENT) {
        in.h.mu = oc_input(g, "mu", dt, OC_SHAPE(batch, d->z));
        in.h.sd = oc_input(g, "sd", dt, OC_SHAPE(batch, d->z));
        in.h.prior_mu = oc_input(g, "prior_mu", dt, OC_SHAPE(d->p, d->z));
        in.h.prior_sd = oc_input(g, "prior_sd", dt, OC_SHAPE(d->p, d->z));
    }
    if (s->needs & OC_SC_FEATURES) {
        in.h.features = oc_input(g, "features", dt, OC_SHAPE(batch, d->f));
        in.class_mean = oc_input(g, "class_mean", dt, OC_SHAPE(d->k, d->f));
        in.precision = oc_input(g, "precision", dt, OC_SHAPE(d->f, d->f));
    }
    if (s->flags & OC_SC_TUNE_T) in.T = oc_input(g, "T", dt, OC_SCALAR);
    oc_tensor sc = s->score(g, &in);
    if (oc_valid(sc)) oc_output(g, "score", sc);
    if (oc_graph_status(g) == OC_OK) {
        const struct oc_node *n = g->nodes[sc.id];
        if (n->shape.rank != 1 || n->shape.dim[0] != batch)
            oc_err_set(&g->err, OC_ERR_SHAPE, "scorer %s: the score must be [%lld]", s->name,
                       (long long)batch);
    }
    if (oc_graph_status(g) != OC_OK) {
        enum oc_status st = oc_err_set(err, g->err.code, "scorer %s: %s", s->name, g->err.msg);
        oc_graph_free(g);
        return st;
    }
    *out = g;
    return OC_OK;
}

void oc_head_vals_free(struct oc_head_vals *v)
{
    free(v->logits);
    free(v->bin_logits);
    free(v->mu);
    free(v->sd);
    free(v->features);
    free(v->prior_mu);
    free(v->prior_sd);
    memset(v, 0, sizeof *v);
}

/* ---------------------------------------------------------------- running score graphs */

struct oc_score_exec {
    const struct oc_scorer *s;
    struct oc_head_dims d;
    int64_t batch;
    struct oc_graph *g;
    struct oc_exec *ex;
    struct oc_buf in[5]; /* logits, bin_logits, mu, sd, features: [batch, w] f32 */
};

static const char *const row_names[5] = {"logits", "bin_logits", "mu", "sd", "features"};

static int row_width(const struct oc_score_exec *se, int i)
{
    return i < 2 ? se->d.k : i < 4 ? se->d.z : se->d.f;
}

static int row_needed(const struct oc_scorer *s, int i)
{
    static const unsigned need[5] = {OC_SC_LOGITS, OC_SC_BIN, OC_SC_LATENT, OC_SC_LATENT,
                                     OC_SC_FEATURES};
    return (s->needs & need[i]) != 0;
}

static const float *row_src(const struct oc_head_vals *v, int i)
{
    const float *src[5] = {v->logits, v->bin_logits, v->mu, v->sd, v->features};
    return src[i];
}

void oc_score_exec_free(struct oc_score_exec *se)
{
    if (!se) return;
    oc_exec_free(se->ex);
    oc_graph_free(se->g);
    for (int i = 0; i < 5; i++) oc_buf_free(&se->in[i]);
    free(se);
}

static enum oc_status set_f64(struct oc_exec *ex, const char *name, const double *v,
                              struct oc_shape s, struct oc_err *err)
{
    struct oc_buf b = {OC_F64, s, (void *)v};
    return oc_exec_set(ex, name, &b, err);
}

enum oc_status oc_score_exec_new(const struct oc_scorer *s, const struct oc_head_dims *d,
                                 int64_t batch, const struct oc_class_stats *cs,
                                 const char *device, struct oc_rt *rt,
                                 struct oc_score_exec **out, struct oc_err *err)
{
    if ((s->needs & OC_SC_FEATURES) && (!cs || cs->k != d->k || cs->f != d->f))
        return oc_err_set(err, OC_ERR_INVALID,
                          "scorer %s needs class statistics of %d classes x %d features", s->name,
                          d->k, d->f);
    struct oc_score_exec *se = calloc(1, sizeof *se);
    if (!se) return oc_err_set(err, OC_ERR_NOMEM, "scorer %s: out of memory", s->name);
    se->s = s;
    se->d = *d;
    se->batch = batch;
    enum oc_status st = oc_scorer_graph(s, batch, d, &se->g, err);
    struct oc_compile_opts co = oc_compile_defaults();
    co.rt = rt;
    if (!st) st = oc_compile(se->g, device, &co, &se->ex, err);
    for (int i = 0; i < 5 && !st; i++)
        if (row_needed(s, i)) {
            struct oc_shape rs = OC_SHAPE(batch, row_width(se, i));
            st = oc_buf_alloc(&se->in[i], OC_F32, &rs);
        }
    if (!st && (s->needs & OC_SC_FEATURES)) {
        st = set_f64(se->ex, "class_mean", cs->mean, OC_SHAPE(cs->k, cs->f), err);
        if (!st) st = set_f64(se->ex, "precision", cs->precision, OC_SHAPE(cs->f, cs->f), err);
    }
    if (st) {
        oc_score_exec_free(se);
        return st;
    }
    *out = se;
    return OC_OK;
}

enum oc_status oc_score_exec_run(struct oc_score_exec *se, const struct oc_head_vals *v,
                                 double T, double *scores, struct oc_err *err)
{
    const struct oc_scorer *s = se->s;
    if (v->d.k != se->d.k || (row_needed(s, 2) && v->d.z != se->d.z) ||
        (row_needed(s, 4) && v->d.f != se->d.f))
        return oc_err_set(err, OC_ERR_SHAPE, "scorer %s: head outputs of another model", s->name);
    for (int i = 0; i < 5; i++)
        if (row_needed(s, i) && !row_src(v, i))
            return oc_err_set(err, OC_ERR_INVALID, "scorer %s: the head has no %s", s->name,
                              row_names[i]);
    enum oc_status st = OC_OK;
    if (row_needed(s, 2)) {
        if (!v->prior_mu || !v->prior_sd || v->d.p != se->d.p)
            return oc_err_set(err, OC_ERR_INVALID, "scorer %s: the head has no priors", s->name);
        struct oc_buf pm = {OC_F32, OC_SHAPE(v->d.p, v->d.z), v->prior_mu};
        struct oc_buf ps = {OC_F32, OC_SHAPE(v->d.p, v->d.z), v->prior_sd};
        if ((st = oc_exec_set(se->ex, "prior_mu", &pm, err)) ||
            (st = oc_exec_set(se->ex, "prior_sd", &ps, err)))
            return st;
    }
    if (s->flags & OC_SC_TUNE_T) {
        if (!(T > 0)) return oc_err_set(err, OC_ERR_INVALID, "scorer %s: T must be > 0", s->name);
        if ((st = set_f64(se->ex, "T", &T, OC_SCALAR, err))) return st;
    }
    for (int64_t off = 0; off < v->n; off += se->batch) {
        int64_t m = v->n - off < se->batch ? v->n - off : se->batch;
        for (int i = 0; i < 5; i++) {
            if (!row_needed(s, i)) continue;
            int w = row_width(se, i);
            float *dst = se->in[i].data;
            const float *src = row_src(v, i) + off * w;
            memcpy(dst, src, sizeof(float) * (size_t)(m * w));
            /* pad with the last row: finite, and ignored */
            for (int64_t r = m; r < se->batch; r++)
                memcpy(dst + r * w, src + (m - 1) * w, sizeof(float) * (size_t)w);
            if ((st = oc_exec_set(se->ex, row_names[i], &se->in[i], err))) return st;
        }
        if ((st = oc_exec_run(se->ex, 0, err))) return st;
        struct oc_buf sc;
        if ((st = oc_exec_get(se->ex, "score", &sc, err))) return st;
        for (int64_t r = 0; r < m; r++) {
            double x = oc_buf_get(&sc, r);
            if (isnan(x)) {
                oc_buf_free(&sc);
                return oc_err_set(err, OC_ERR_NUMERIC, "scorer %s: NaN score for input %lld",
                                  s->name, (long long)(off + r));
            }
            scores[off + r] = x;
        }
        oc_buf_free(&sc);
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- class statistics */

void oc_class_stats_free(struct oc_class_stats *cs)
{
    free(cs->mean);
    free(cs->precision);
    memset(cs, 0, sizeof *cs);
}

/* In-place Cholesky a = L L^T (lower triangle); 0 if a is not positive
 * definite. */
static int cholesky(double *a, int n)
{
    for (int j = 0; j < n; j++) {
        double d = a[(size_t)j * n + j];
        for (int k = 0; k < j; k++) d -= a[(size_t)j * n + k] * a[(size_t)j * n + k];
        if (!(d > 0)) return 0;
        d = sqrt(d);
        a[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = a[(size_t)i * n + j];
            for (int k = 0; k < j; k++) s -= a[(size_t)i * n + k] * a[(size_t)j * n + k];
            a[(size_t)i * n + j] = s / d;
        }
    }
    return 1;
}

/* inv = (L L^T)^-1 from the Cholesky factor: solves L L^T x = e_c per column. */
static void cholesky_inverse(const double *l, int n, double *inv, double *col)
{
    for (int c = 0; c < n; c++) {
        for (int i = 0; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int k = 0; k < i; k++) s -= l[(size_t)i * n + k] * col[k];
            col[i] = s / l[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = col[i];
            for (int k = i + 1; k < n; k++) s -= l[(size_t)k * n + i] * col[k];
            col[i] = s / l[(size_t)i * n + i];
        }
        for (int i = 0; i < n; i++) inv[(size_t)i * n + c] = col[i];
    }
}

enum oc_status oc_class_stats_fit(const float *features, const int32_t *labels, int64_t n, int k,
                                  int f, struct oc_class_stats *out, struct oc_err *err)
{
    if (n < 2 || k < 1 || f < 1)
        return oc_err_set(err, OC_ERR_INVALID, "class statistics: %lld images, %d classes, %d features",
                          (long long)n, k, f);
    double *mean = calloc((size_t)k * f, sizeof *mean);
    double *cov = calloc((size_t)f * f, sizeof *cov);
    double *prec = calloc((size_t)f * f, sizeof *prec);
    double *d = malloc(sizeof *d * (size_t)f);
    int64_t *count = calloc((size_t)k, sizeof *count);
    enum oc_status st = OC_OK;
    if (!mean || !cov || !prec || !d || !count) {
        st = oc_err_set(err, OC_ERR_NOMEM, "class statistics: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        int y = labels[i];
        if (y < 0 || y >= k) {
            st = oc_err_set(err, OC_ERR_INVALID, "class statistics: label %d of image %lld is not in [0, %d)",
                            y, (long long)i, k);
            goto done;
        }
        count[y]++;
        for (int j = 0; j < f; j++) mean[(size_t)y * f + j] += features[i * f + j];
    }
    for (int c = 0; c < k; c++) {
        if (!count[c]) {
            st = oc_err_set(err, OC_ERR_INVALID,
                            "class statistics: class %d has no training images (use more)", c);
            goto done;
        }
        for (int j = 0; j < f; j++) mean[(size_t)c * f + j] /= (double)count[c];
    }
    /* the tied covariance: the mean over all images of (f - mu_y)(f - mu_y)^T */
    for (int64_t i = 0; i < n; i++) {
        const double *m = mean + (size_t)labels[i] * f;
        for (int j = 0; j < f; j++) d[j] = features[i * f + j] - m[j];
        for (int a = 0; a < f; a++) {
            double da = d[a];
            double *row = cov + (size_t)a * f;
            for (int b = a; b < f; b++) row[b] += da * d[b];
        }
    }
    double tr = 0;
    for (int a = 0; a < f; a++) {
        for (int b = a; b < f; b++) {
            cov[(size_t)a * f + b] /= (double)n;
            cov[(size_t)b * f + a] = cov[(size_t)a * f + b];
        }
        tr += cov[(size_t)a * f + a];
    }
    /* a ridge keeps a rank-deficient covariance (dead ReLU features, fewer
     * images than features) invertible; it grows until Cholesky succeeds */
    double ridge = 1e-6 * (tr > 0 ? tr / f : 1.0);
    for (int attempt = 0;; attempt++) {
        memcpy(prec, cov, sizeof *prec * (size_t)f * f);
        for (int a = 0; a < f; a++) prec[(size_t)a * f + a] += ridge;
        if (cholesky(prec, f)) break;
        if (attempt == 12) {
            st = oc_err_set(err, OC_ERR_NUMERIC, "class statistics: the covariance is not positive definite");
            goto done;
        }
        ridge *= 10;
    }
    memcpy(cov, prec, sizeof *cov * (size_t)f * f); /* the factor */
    cholesky_inverse(cov, f, prec, d);
    out->k = k;
    out->f = f;
    out->mean = mean;
    out->precision = prec;
    mean = prec = NULL;
done:
    free(mean);
    free(cov);
    free(prec);
    free(d);
    free(count);
    return st;
}
