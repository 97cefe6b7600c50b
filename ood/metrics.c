/* metrics.c - FPR at 95% TPR, detection error, AUROC, AUPR-In and AUPR-Out
 * (paper section 4), bit-for-bit the definitions scikit-learn implements,
 * plus the ROC / PR curves behind them and the score-file reader.
 *
 * Everything derives from one tie-grouped table: both score sets are sorted
 * in descending order and merged; each distinct score closes a group and
 * records the cumulative counts tp (in-distribution) and fp (OOD) at or above
 * it. This is sklearn's _binary_clf_curve with the origin prepended, i.e. the
 * roc_curve(drop_intermediate=False) points as integer counts. Keeping the
 * counts as integers makes AUROC exact (it equals the pairwise-ordering
 * probability with ties counted 1/2) and leaves floating point only in the
 * final divisions, which are the same divisions sklearn performs.
 */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- checks */

static enum oc_status check_set(const double *s, int64_t n, const char *what, struct oc_err *err)
{
    if (n <= 0) return oc_err_set(err, OC_ERR_INVALID, "no %s scores", what);
    if (n > OC_METRICS_MAX_N)
        return oc_err_set(err, OC_ERR_INVALID, "too many %s scores: %lld (the limit is %lld)", what,
                          (long long)n, (long long)OC_METRICS_MAX_N);
    if (!s)
        return oc_err_set(err, OC_ERR_INVALID, "%s scores: NULL array of %lld", what,
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return oc_err_set(err, OC_ERR_INVALID, "%s score at index %lld is %s", what,
                              (long long)i, isnan(s[i]) ? "NaN" : s[i] > 0 ? "+inf" : "-inf");
    return OC_OK;
}

static enum oc_status check_inputs(const double *in, int64_t n_in, const double *out,
                                   int64_t n_out, struct oc_err *err)
{
    enum oc_status st = check_set(in, n_in, "in-distribution", err);
    if (st == OC_OK) st = check_set(out, n_out, "OOD", err);
    return st;
}

/* ---------------------------------------------------------------- the grouped table */

/* Entries 0..k: entry 0 is the origin (threshold +inf, nothing above it);
 * entry i >= 1 is the i-th distinct score in descending order, tp[i] / fp[i]
 * the number of in-distribution / OOD scores >= thr[i]. tp[k] = n_in and
 * fp[k] = n_out. */
struct groups {
    int64_t k;
    int64_t *tp, *fp;
    double *thr;
};

static void groups_free(struct groups *g)
{
    free(g->tp);
    free(g->fp);
    free(g->thr);
    memset(g, 0, sizeof *g);
}

static int cmp_desc(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a < b) - (a > b);
}

static double *sorted_desc(const double *s, int64_t n)
{
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return NULL;
    memcpy(c, s, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_desc);
    return c;
}

/* The inputs must have passed check_inputs. */
static enum oc_status groups_build(const double *in, int64_t n_in, const double *out,
                                   int64_t n_out, struct groups *g, struct oc_err *err)
{
    memset(g, 0, sizeof *g);
    size_t cap = (size_t)(n_in + n_out) + 1;
    double *a = sorted_desc(in, n_in), *b = sorted_desc(out, n_out);
    g->tp = malloc(cap * sizeof *g->tp);
    g->fp = malloc(cap * sizeof *g->fp);
    g->thr = malloc(cap * sizeof *g->thr);
    if (!a || !b || !g->tp || !g->fp || !g->thr) {
        free(a);
        free(b);
        groups_free(g);
        return oc_err_set(err, OC_ERR_NOMEM, "metrics: out of memory for %lld scores",
                          (long long)(n_in + n_out));
    }
    g->tp[0] = g->fp[0] = 0;
    g->thr[0] = INFINITY;
    int64_t i = 0, j = 0, k = 0;
    while (i < n_in || j < n_out) {
        double t = (j >= n_out || (i < n_in && a[i] >= b[j])) ? a[i] : b[j];
        /* == groups +0.0 with -0.0, as numpy's diff-based grouping does */
        while (i < n_in && a[i] == t) i++;
        while (j < n_out && b[j] == t) j++;
        k++;
        g->tp[k] = i;
        g->fp[k] = j;
        g->thr[k] = t;
    }
    g->k = k;
    free(a);
    free(b);
    return OC_OK;
}

/* Counts at PR point p (1..k) when OOD is the positive class with scores
 * negated: the points run over the groups in ascending score order, and
 * "-score >= -thr" means score <= thr. */
static void pr_out_counts(const struct groups *g, int64_t n_in, int64_t n_out, int64_t p,
                          int64_t *tp, int64_t *fp, double *thr)
{
    int64_t gi = g->k + 1 - p; /* the group whose score is the threshold */
    *tp = n_out - g->fp[gi - 1];
    *fp = n_in - g->tp[gi - 1];
    *thr = -g->thr[gi];
}

/* Neumaier-compensated sum: average precision adds up to n terms. */
struct ksum {
    double s, c;
};
static void ksum_add(struct ksum *k, double v)
{
    double t = k->s + v;
    if (fabs(k->s) >= fabs(v))
        k->c += (k->s - t) + v;
    else
        k->c += (v - t) + k->s;
    k->s = t;
}

/* ---------------------------------------------------------------- metrics */

enum oc_status oc_metrics_compute(const double *in, int64_t n_in, const double *out, int64_t n_out,
                                  struct oc_metrics *m, struct oc_err *err)
{
    enum oc_status st = check_inputs(in, n_in, out, n_out, err);
    if (st != OC_OK) return st;
    struct groups g;
    if ((st = groups_build(in, n_in, out, n_out, &g, err)) != OC_OK) return st;
    const double P = (double)n_in, N = (double)n_out;
    memset(m, 0, sizeof *m);

    /* FPR at 95% TPR: the first ROC point with TPR >= 0.95. TPR is computed
     * as sklearn does (tps / tps[-1] in float64) so ties with 0.95 resolve
     * identically; the last point has TPR 1, so one is always found. */
    for (int64_t i = 0; i <= g.k; i++) {
        double tpr = (double)g.tp[i] / P;
        if (tpr >= 0.95) {
            double fpr = (double)g.fp[i] / N;
            m->fpr95 = fpr;
            m->tpr_at = tpr;
            m->threshold = g.thr[i];
            m->detection_error = 0.5 * (1.0 - tpr) + 0.5 * fpr;
            break;
        }
    }

    /* AUROC: twice the trapezoid area in count units, exact in uint64 since
     * it is at most 2 * n_in * n_out <= 2^63. */
    uint64_t area2 = 0;
    for (int64_t i = 1; i <= g.k; i++)
        area2 += (uint64_t)(g.fp[i] - g.fp[i - 1]) * (uint64_t)(g.tp[i] + g.tp[i - 1]);
    m->auroc = (double)area2 / (2.0 * P * N);

    /* Average precision, in-distribution positive: sum_n (R_n - R_{n-1}) P_n. */
    struct ksum ap = {0, 0};
    for (int64_t i = 1; i <= g.k; i++) {
        if (g.tp[i] == g.tp[i - 1]) continue; /* recall step 0 */
        double dr = (double)g.tp[i] / P - (double)g.tp[i - 1] / P;
        ksum_add(&ap, dr * ((double)g.tp[i] / (double)(g.tp[i] + g.fp[i])));
    }
    m->aupr_in = ap.s + ap.c;

    /* Average precision, OOD positive, scores negated. */
    ap = (struct ksum){0, 0};
    int64_t prev_tp = 0;
    for (int64_t p = 1; p <= g.k; p++) {
        int64_t tp, fp;
        double thr;
        pr_out_counts(&g, n_in, n_out, p, &tp, &fp, &thr);
        if (tp != prev_tp) {
            double dr = (double)tp / N - (double)prev_tp / N;
            ksum_add(&ap, dr * ((double)tp / (double)(tp + fp)));
        }
        prev_tp = tp;
    }
    m->aupr_out = ap.s + ap.c;

    groups_free(&g);
    return OC_OK;
}

/* ---------------------------------------------------------------- curves */

void oc_curve_free(struct oc_curve *c)
{
    if (!c) return;
    free(c->x);
    free(c->y);
    free(c->thr);
    memset(c, 0, sizeof *c);
}

static enum oc_status curve_alloc(struct oc_curve *c, int64_t n, struct oc_err *err)
{
    c->n = n;
    c->x = malloc((size_t)n * sizeof *c->x);
    c->y = malloc((size_t)n * sizeof *c->y);
    c->thr = malloc((size_t)n * sizeof *c->thr);
    if (!c->x || !c->y || !c->thr) {
        oc_curve_free(c);
        return oc_err_set(err, OC_ERR_NOMEM, "metrics: out of memory for a curve of %lld points",
                          (long long)n);
    }
    return OC_OK;
}

enum oc_status oc_metrics_roc(const double *in, int64_t n_in, const double *out, int64_t n_out,
                              struct oc_curve *roc, struct oc_err *err)
{
    memset(roc, 0, sizeof *roc);
    enum oc_status st = check_inputs(in, n_in, out, n_out, err);
    if (st != OC_OK) return st;
    struct groups g;
    if ((st = groups_build(in, n_in, out, n_out, &g, err)) != OC_OK) return st;
    if ((st = curve_alloc(roc, g.k + 1, err)) != OC_OK) {
        groups_free(&g);
        return st;
    }
    for (int64_t i = 0; i <= g.k; i++) {
        roc->x[i] = (double)g.fp[i] / (double)n_out;
        roc->y[i] = (double)g.tp[i] / (double)n_in;
        roc->thr[i] = g.thr[i];
    }
    groups_free(&g);
    return OC_OK;
}

enum oc_status oc_metrics_pr(const double *in, int64_t n_in, const double *out, int64_t n_out,
                             int ood_positive, struct oc_curve *pr, struct oc_err *err)
{
    memset(pr, 0, sizeof *pr);
    enum oc_status st = check_inputs(in, n_in, out, n_out, err);
    if (st != OC_OK) return st;
    struct groups g;
    if ((st = groups_build(in, n_in, out, n_out, &g, err)) != OC_OK) return st;
    if ((st = curve_alloc(pr, g.k + 1, err)) != OC_OK) {
        groups_free(&g);
        return st;
    }
    double npos = (double)(ood_positive ? n_out : n_in);
    pr->x[0] = 0.0;
    pr->y[0] = 1.0;
    pr->thr[0] = INFINITY;
    for (int64_t p = 1; p <= g.k; p++) {
        int64_t tp, fp;
        double thr;
        if (ood_positive) {
            pr_out_counts(&g, n_in, n_out, p, &tp, &fp, &thr);
        } else {
            tp = g.tp[p];
            fp = g.fp[p];
            thr = g.thr[p];
        }
        pr->x[p] = (double)tp / npos;
        pr->y[p] = (double)tp / (double)(tp + fp);
        pr->thr[p] = thr;
    }
    groups_free(&g);
    return OC_OK;
}

/* ---------------------------------------------------------------- score files */

static enum oc_status read_npy_scores(const char *path, double **out, int64_t *n,
                                      struct oc_err *err)
{
    struct oc_buf b;
    memset(&b, 0, sizeof b);
    enum oc_status st = oc_npy_read(path, &b, err);
    if (st != OC_OK) return st;
    int big = 0;
    for (int d = 0; d < b.shape.rank; d++) big += b.shape.dim[d] > 1;
    int64_t numel = oc_shape_numel(&b.shape);
    char sh[128];
    if (big > 1) {
        st = oc_err_set(err, OC_ERR_SHAPE, "%s: expected a flat array of scores, got shape %s",
                        path, oc_shape_str(&b.shape, sh, sizeof sh));
    } else if (numel <= 0) {
        st = oc_err_set(err, OC_ERR_INVALID, "%s: no scores (the array is empty)", path);
    } else if (numel > OC_METRICS_MAX_N) {
        st = oc_err_set(err, OC_ERR_INVALID, "%s: too many scores: %lld (the limit is %lld)", path,
                        (long long)numel, (long long)OC_METRICS_MAX_N);
    }
    double *v = NULL;
    if (st == OC_OK && !(v = malloc((size_t)numel * sizeof *v)))
        st = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %lld scores", path,
                        (long long)numel);
    for (int64_t i = 0; st == OC_OK && i < numel; i++) {
        v[i] = oc_buf_get(&b, i);
        if (!isfinite(v[i]))
            st = oc_err_set(err, OC_ERR_INVALID, "%s: score at index %lld is %s", path,
                            (long long)i, isnan(v[i]) ? "NaN" : v[i] > 0 ? "+inf" : "-inf");
    }
    oc_buf_free(&b);
    if (st != OC_OK) {
        free(v);
        return st;
    }
    *out = v;
    *n = numel;
    return OC_OK;
}

/* At most 40 characters of s up to the end of the line, for messages. */
static const char *excerpt(const char *s, char *buf, size_t n)
{
    size_t len = strcspn(s, "\r\n");
    if (len > 40) len = 40;
    if (len >= n) len = n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return buf;
}

static enum oc_status read_text_scores(FILE *f, const char *path, double **out, int64_t *n,
                                       struct oc_err *err)
{
    char *line = NULL, ex[48];
    size_t linecap = 0;
    double *v = NULL;
    int64_t cnt = 0, cap = 0, lineno = 0;
    enum oc_status st = OC_OK;
    while (st == OC_OK && getline(&line, &linecap, f) >= 0) {
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '\v' || *p == '\f') p++;
        if (*p == 0 || *p == '#') continue;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p) {
            st = oc_err_set(err, OC_ERR_PARSE, "%s:%lld: expected a score, got '%s'", path,
                            (long long)lineno, excerpt(p, ex, sizeof ex));
            break;
        }
        const char *q = end;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n' || *q == '\v' || *q == '\f') q++;
        if (*q != 0 && *q != '#') {
            st = oc_err_set(err, OC_ERR_PARSE,
                            "%s:%lld: expected one score per line, found '%s' after the number",
                            path, (long long)lineno, excerpt(q, ex, sizeof ex));
            break;
        }
        if (!isfinite(x)) {
            st = oc_err_set(err, OC_ERR_INVALID, "%s:%lld: score is not finite ('%.*s')", path,
                            (long long)lineno, (int)(end - p), p);
            break;
        }
        if (cnt == OC_METRICS_MAX_N) {
            st = oc_err_set(err, OC_ERR_INVALID, "%s:%lld: too many scores (the limit is %lld)",
                            path, (long long)lineno, (long long)OC_METRICS_MAX_N);
            break;
        }
        if (cnt == cap) {
            int64_t ncap = cap ? cap * 2 : 1024;
            double *nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv) {
                st = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory after %lld scores", path,
                                (long long)cnt);
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[cnt++] = x;
    }
    if (st == OC_OK && ferror(f))
        st = oc_err_set(err, OC_ERR_IO, "%s: read error after line %lld", path, (long long)lineno);
    if (st == OC_OK && cnt == 0)
        st = oc_err_set(err, OC_ERR_INVALID, "%s: no scores (the file is empty or only comments)",
                        path);
    free(line);
    if (st != OC_OK) {
        free(v);
        return st;
    }
    *out = v;
    *n = cnt;
    return OC_OK;
}

enum oc_status oc_scores_read(const char *path, double **out, int64_t *n, struct oc_err *err)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return oc_err_set(err, OC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    unsigned char magic[6];
    size_t got = fread(magic, 1, sizeof magic, f);
    if (got == sizeof magic && memcmp(magic, "\x93NUMPY", 6) == 0) {
        fclose(f);
        return read_npy_scores(path, out, n, err);
    }
    rewind(f);
    enum oc_status st = read_text_scores(f, path, out, n, err);
    fclose(f);
    return st;
}
