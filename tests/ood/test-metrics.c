/* test-metrics.c - the OOD metrics (ood/metrics.c) against scikit-learn
 * fixtures (tests/fixtures/metrics/, made by make_metrics.py), hand-checked
 * cases, brute-force pairwise definitions, error handling, a 10^6-score run,
 * and the score-file reader (text and .npy). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ood/metrics.h"
#include "../helpers/helpers.h"

#define FIXTURE OC_SOURCE_DIR "/tests/fixtures/metrics/metrics.txt"

/* ---------------------------------------------------------------- helpers */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return ((double)(mix(s) >> 11) + 0.5) * 0x1.0p-53; }
static double normal(uint64_t *s)
{
    return sqrt(-2.0 * log(unif(s))) * cos(6.283185307179586 * unif(s));
}
/* n draws of N(mean, 1), rounded to `step` when step > 0 (to make ties). */
static double *normals(int64_t n, double mean, double step, uint64_t seed)
{
    double *v = malloc((size_t)n * sizeof *v);
    cr_assert_not_null(v);
    for (int64_t i = 0; i < n; i++) {
        double x = mean + normal(&seed);
        v[i] = step > 0 ? round(x / step) * step : x;
    }
    return v;
}

static struct oc_metrics compute_ok(const double *in, int64_t n_in, const double *out,
                                    int64_t n_out)
{
    struct oc_err err = {0};
    struct oc_metrics m;
    enum oc_status st = oc_metrics_compute(in, n_in, out, n_out, &m, &err);
    cr_assert_eq(st, OC_OK, "oc_metrics_compute failed: %s", err.msg);
    return m;
}

/* The area under a curve by the trapezoid rule / the step rule of AP. */
static double trapz(const struct oc_curve *c)
{
    double a = 0;
    for (int64_t i = 1; i < c->n; i++) a += (c->x[i] - c->x[i - 1]) * (c->y[i] + c->y[i - 1]) / 2;
    return a;
}
static double steps(const struct oc_curve *c)
{
    double a = 0;
    for (int64_t i = 1; i < c->n; i++) a += (c->x[i] - c->x[i - 1]) * c->y[i];
    return a;
}

/* The curves must reproduce the metrics computed directly. */
static void check_curves(const char *name, const double *in, int64_t n_in, const double *out,
                         int64_t n_out, const struct oc_metrics *m)
{
    struct oc_err err = {0};
    struct oc_curve roc, pri, pro;
    cr_assert_eq(oc_metrics_roc(in, n_in, out, n_out, &roc, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_metrics_pr(in, n_in, out, n_out, 0, &pri, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_metrics_pr(in, n_in, out, n_out, 1, &pro, &err), OC_OK, "%s", err.msg);
    cr_expect(isinf(roc.thr[0]) && roc.x[0] == 0 && roc.y[0] == 0, "%s: ROC starts at origin",
              name);
    cr_expect(roc.x[roc.n - 1] == 1 && roc.y[roc.n - 1] == 1, "%s: ROC ends at (1, 1)", name);
    cr_expect(pri.x[0] == 0 && pri.y[0] == 1 && pro.x[0] == 0 && pro.y[0] == 1,
              "%s: PR starts at recall 0, precision 1", name);
    cr_expect_eq(pri.n, roc.n, "%s", name);
    cr_expect_eq(pro.n, roc.n, "%s", name);
    /* counted, not asserted per point: a million passing asserts are slow */
    int64_t bad = -1;
    for (int64_t i = 1; i < roc.n && bad < 0; i++)
        if (!(roc.thr[i] < roc.thr[i - 1] && roc.x[i] >= roc.x[i - 1] && roc.y[i] >= roc.y[i - 1]))
            bad = i;
    cr_expect_eq(bad, -1, "%s: ROC not monotone at point %lld", name, (long long)bad);
    cr_expect(fabs(trapz(&roc) - m->auroc) < 1e-12, "%s: trapz(ROC) %.17g vs auroc %.17g", name,
              trapz(&roc), m->auroc);
    cr_expect(fabs(steps(&pri) - m->aupr_in) < 1e-12, "%s: AP(PR in) %.17g vs %.17g", name,
              steps(&pri), m->aupr_in);
    cr_expect(fabs(steps(&pro) - m->aupr_out) < 1e-12, "%s: AP(PR out) %.17g vs %.17g", name,
              steps(&pro), m->aupr_out);
    oc_curve_free(&roc);
    oc_curve_free(&pri);
    oc_curve_free(&pro);
}

/* ---------------------------------------------------------------- sklearn fixtures */

static double *read_block(FILE *f, const char *tag, int64_t *n)
{
    char tok[64];
    long long cnt;
    cr_assert_eq(fscanf(f, "%63s %lld", tok, &cnt), 2, "fixture: expected '%s N'", tag);
    cr_assert_str_eq(tok, tag);
    double *v = malloc((size_t)cnt * sizeof *v);
    cr_assert_not_null(v);
    for (long long i = 0; i < cnt; i++)
        cr_assert_eq(fscanf(f, "%lf", &v[i]), 1, "fixture: %s score %lld", tag, i);
    *n = cnt;
    return v;
}

Test(metrics, sklearn_fixtures)
{
    FILE *f = fopen(FIXTURE, "r");
    cr_assert_not_null(f, "cannot open %s", FIXTURE);
    char tok[256];
    int ncases = 0;
    while (fscanf(f, "%255s", tok) == 1) {
        if (tok[0] == '#') {
            cr_assert_geq(fscanf(f, "%*[^\n]"), 0);
            continue;
        }
        cr_assert_str_eq(tok, "case");
        char name[256];
        cr_assert_eq(fscanf(f, "%255s", name), 1);
        int64_t n_in, n_out;
        double *in = read_block(f, "in", &n_in);
        double *out = read_block(f, "out", &n_out);
        double e[7];
        cr_assert_eq(fscanf(f, "%255s", tok), 1);
        cr_assert_str_eq(tok, "expect");
        for (int i = 0; i < 7; i++) cr_assert_eq(fscanf(f, "%lf", &e[i]), 1, "%s: expect", name);
        cr_assert_eq(fscanf(f, "%255s", tok), 1);
        cr_assert_str_eq(tok, "end");

        struct oc_metrics m = compute_ok(in, n_in, out, n_out);
        const double got[6] = {m.fpr95,   m.detection_error, m.auroc,
                               m.aupr_in, m.aupr_out,        m.tpr_at};
        static const char *what[6] = {"fpr95", "detection_error", "auroc",
                                      "aupr_in", "aupr_out", "tpr_at"};
        for (int i = 0; i < 6; i++)
            cr_expect(fabs(got[i] - e[i]) <= 1e-9, "%s: %s = %.17g, sklearn %.17g", name, what[i],
                      got[i], e[i]);
        cr_expect(m.threshold == e[6], "%s: threshold = %.17g, sklearn %.17g", name, m.threshold,
                  e[6]);
        check_curves(name, in, n_in, out, n_out, &m);
        free(in);
        free(out);
        ncases++;
    }
    fclose(f);
    cr_assert_geq(ncases, 15, "only %d fixture cases read", ncases);
}

/* ---------------------------------------------------------------- hand-checked */

Test(metrics, sklearn_doc_example_by_hand)
{
    /* y = [0, 0, 1, 1], s = [0.1, 0.4, 0.35, 0.8] (the roc_curve docstring) */
    const double in[] = {0.35, 0.8}, out[] = {0.1, 0.4};
    struct oc_metrics m = compute_ok(in, 2, out, 2);
    cr_expect_float_eq(m.auroc, 0.75, 1e-15);
    cr_expect_float_eq(m.aupr_in, 0.5 * 1.0 + 0.5 * (2.0 / 3.0), 1e-15);
    cr_expect_float_eq(m.aupr_out, 0.5 * 1.0 + 0.5 * (2.0 / 3.0), 1e-15);
    /* TPR first reaches 1 at threshold 0.35, where FPR = 1/2 */
    cr_expect_eq(m.fpr95, 0.5);
    cr_expect_eq(m.tpr_at, 1.0);
    cr_expect_eq(m.threshold, 0.35);
    cr_expect_eq(m.detection_error, 0.25);

    struct oc_err err = {0};
    struct oc_curve c;
    cr_assert_eq(oc_metrics_roc(in, 2, out, 2, &c, &err), OC_OK);
    const double fpr[] = {0, 0, 0.5, 0.5, 1}, tpr[] = {0, 0.5, 0.5, 1, 1};
    const double thr[] = {INFINITY, 0.8, 0.4, 0.35, 0.1};
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(c.x[i], fpr[i], "fpr[%d]", i);
        cr_expect_eq(c.y[i], tpr[i], "tpr[%d]", i);
        cr_expect_eq(c.thr[i], thr[i], "thr[%d]", i);
    }
    oc_curve_free(&c);

    /* sklearn precision_recall_curve gives precision [0.5, 2/3, 0.5, 1, 1],
     * recall [1, 1, 0.5, 0.5, 0]: our points are the same, reversed */
    cr_assert_eq(oc_metrics_pr(in, 2, out, 2, 0, &c, &err), OC_OK);
    const double prec[] = {1, 1, 0.5, 2.0 / 3.0, 0.5}, rec[] = {0, 0.5, 0.5, 1, 1};
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(c.y[i], prec[i], "precision[%d]", i);
        cr_expect_eq(c.x[i], rec[i], "recall[%d]", i);
        cr_expect_eq(c.thr[i], thr[i], "thr[%d]", i);
    }
    oc_curve_free(&c);

    /* OOD positive, scores negated: -s descending is -0.1 (out), -0.35 (in),
     * -0.4 (out), -0.8 (in) */
    cr_assert_eq(oc_metrics_pr(in, 2, out, 2, 1, &c, &err), OC_OK);
    const double prec_o[] = {1, 1, 0.5, 2.0 / 3.0, 0.5}, rec_o[] = {0, 0.5, 0.5, 1, 1};
    const double thr_o[] = {INFINITY, -0.1, -0.35, -0.4, -0.8};
    cr_assert_eq(c.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(c.y[i], prec_o[i], "precision[%d]", i);
        cr_expect_eq(c.x[i], rec_o[i], "recall[%d]", i);
        cr_expect_eq(c.thr[i], thr_o[i], "thr[%d]", i);
    }
    oc_curve_free(&c);
}

Test(metrics, all_equal_scores)
{
    const double in[] = {1.5, 1.5, 1.5}, out[] = {1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5};
    struct oc_metrics m = compute_ok(in, 3, out, 7);
    cr_expect_eq(m.fpr95, 1.0);
    cr_expect_eq(m.detection_error, 0.5);
    cr_expect_eq(m.auroc, 0.5);
    cr_expect_float_eq(m.aupr_in, 0.3, 1e-15);
    cr_expect_float_eq(m.aupr_out, 0.7, 1e-15);
    cr_expect_eq(m.threshold, 1.5);
}

Test(metrics, separated_and_inverted)
{
    const double hi[] = {3, 4, 5, 6}, lo[] = {-1, 0, 1};
    struct oc_metrics m = compute_ok(hi, 4, lo, 3);
    cr_expect_eq(m.fpr95, 0.0);
    cr_expect_eq(m.auroc, 1.0);
    cr_expect_eq(m.aupr_in, 1.0);
    cr_expect_eq(m.aupr_out, 1.0);
    cr_expect_eq(m.threshold, 3.0); /* TPR first >= 0.95 when all 4 are in */
    cr_expect_eq(m.detection_error, 0.0);

    m = compute_ok(lo, 3, hi, 4);
    cr_expect_eq(m.fpr95, 1.0);
    cr_expect_eq(m.auroc, 0.0);
    cr_expect_eq(m.detection_error, 0.5);
    /* AP with every positive ranked last: mean over positives of k / (4 + k) */
    cr_expect_float_eq(m.aupr_in, (1.0 / 5 + 2.0 / 6 + 3.0 / 7) / 3, 1e-15);
}

Test(metrics, tpr_exactly_095_counts)
{
    /* 20 in-distribution scores 20..1; the 19th (score 2) gives TPR 19/20 = 0.95
     * exactly, so that is the operating point; OOD scores 10.5 and 1.5 split
     * around it: only 10.5 is above 2, FPR = 1/2. */
    double in[20];
    for (int i = 0; i < 20; i++) in[i] = 20 - i;
    const double out[] = {10.5, 1.5};
    struct oc_metrics m = compute_ok(in, 20, out, 2);
    cr_expect_eq(m.threshold, 2.0);
    cr_expect_eq(m.tpr_at, 0.95);
    cr_expect_eq(m.fpr95, 0.5);
    cr_expect_float_eq(m.detection_error, 0.5 * 0.05 + 0.25, 1e-15);
}

/* ---------------------------------------------------------------- brute force */

/* The definitions without sorting: AUROC as the probability that an
 * in-distribution score beats an OOD one (ties 1/2); AP as the mean over the
 * positives of the precision at their own score; FPR95 at the largest score
 * threshold whose TPR reaches 0.95. */
Test(metrics, brute_force_2000x2000)
{
    const int64_t n = 2000;
    double *in = normals(n, 0.7, 0.05, 11), *out = normals(n, 0.0, 0.05, 12);
    uint64_t gt = 0, eq = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            gt += in[i] > out[j];
            eq += in[i] == out[j];
        }
    cr_assert_gt(eq, 1000, "the rounding should make ties");
    struct oc_metrics m = compute_ok(in, n, out, n);
    double want = (double)(2 * gt + eq) / (2.0 * (double)n * (double)n);
    cr_expect_eq(m.auroc, want, "auroc %.17g, pairwise %.17g", m.auroc, want);

    double ap_in = 0, ap_out = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t tp = 0, fp = 0, tpo = 0, fpo = 0;
        for (int64_t j = 0; j < n; j++) {
            tp += in[j] >= in[i];
            fp += out[j] >= in[i];
            tpo += out[j] <= out[i];
            fpo += in[j] <= out[i];
        }
        ap_in += (double)tp / (double)(tp + fp);
        ap_out += (double)tpo / (double)(tpo + fpo);
    }
    cr_expect(fabs(m.aupr_in - ap_in / n) < 1e-12, "aupr_in %.17g brute %.17g", m.aupr_in,
              ap_in / n);
    cr_expect(fabs(m.aupr_out - ap_out / n) < 1e-12, "aupr_out %.17g brute %.17g", m.aupr_out,
              ap_out / n);

    double best = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        int64_t tp = 0;
        for (int64_t j = 0; j < n; j++) tp += in[j] >= in[i];
        if ((double)tp / (double)n >= 0.95 && in[i] > best) best = in[i];
    }
    int64_t fp = 0, tp = 0;
    for (int64_t j = 0; j < n; j++) {
        fp += out[j] >= best;
        tp += in[j] >= best;
    }
    cr_expect_eq(m.threshold, best);
    cr_expect_eq(m.fpr95, (double)fp / (double)n);
    cr_expect_eq(m.tpr_at, (double)tp / (double)n);
    free(in);
    free(out);
}

Test(metrics, million_scores)
{
    /* 600k vs 400k normal scores, mean shift 1, rounded to 1e-3: many ties. */
    const int64_t n_in = 600000, n_out = 400000;
    double *in = normals(n_in, 1.0, 1e-3, 21), *out = normals(n_out, 0.0, 1e-3, 22);
    struct oc_metrics m = compute_ok(in, n_in, out, n_out);
    /* AUROC = Phi(1 / sqrt(2)) = 0.7602 for unit normals one apart */
    cr_expect(fabs(m.auroc - 0.76025) < 0.003, "auroc %.6f", m.auroc);
    /* TPR 95% sits at 1 - 1.645 = -0.645 -> FPR = 1 - Phi(-0.645) = 0.7405 */
    cr_expect(fabs(m.fpr95 - 0.7405) < 0.005, "fpr95 %.6f", m.fpr95);
    cr_expect(m.tpr_at >= 0.95 && m.tpr_at < 0.9501, "tpr %.6f", m.tpr_at);
    cr_expect(m.aupr_in > 0.8 && m.aupr_in < 0.9, "aupr_in %.6f", m.aupr_in);
    cr_expect(m.aupr_out > 0.6 && m.aupr_out < 0.75, "aupr_out %.6f", m.aupr_out);
    check_curves("million", in, n_in, out, n_out, &m);
    free(in);
    free(out);
}

/* ---------------------------------------------------------------- errors */

static void expect_error(const double *in, int64_t n_in, const double *out, int64_t n_out,
                         const char *needle)
{
    struct oc_err err = {0};
    struct oc_metrics m;
    cr_expect_eq(oc_metrics_compute(in, n_in, out, n_out, &m, &err), OC_ERR_INVALID,
                 "expected an error with '%s'", needle);
    cr_expect(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    struct oc_curve c;
    oc_err_clear(&err);
    cr_expect_eq(oc_metrics_roc(in, n_in, out, n_out, &c, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, needle), "roc: message '%s' lacks '%s'", err.msg, needle);
    oc_err_clear(&err);
    cr_expect_eq(oc_metrics_pr(in, n_in, out, n_out, 1, &c, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, needle), "pr: message '%s' lacks '%s'", err.msg, needle);
}

Test(metrics, errors)
{
    const double ok[] = {1, 2, 3, 4};
    expect_error(ok, 0, ok, 4, "no in-distribution scores");
    expect_error(ok, 4, ok, 0, "no OOD scores");
    expect_error(ok, -1, ok, 4, "no in-distribution scores");
    const double with_nan[] = {1, 2, 3, NAN, 5};
    expect_error(ok, 4, with_nan, 5, "OOD score at index 3 is NaN");
    const double with_inf[] = {INFINITY, 2};
    expect_error(with_inf, 2, ok, 4, "in-distribution score at index 0 is +inf");
    const double with_minf[] = {1, -INFINITY};
    expect_error(ok, 4, with_minf, 2, "OOD score at index 1 is -inf");
    expect_error(ok, OC_METRICS_MAX_N + 1, ok, 4, "too many in-distribution scores");
}

/* ---------------------------------------------------------------- score files */

static char *tmp_file(const void *bytes, size_t n)
{
    char *path = malloc(512);
    cr_assert_not_null(path);
    snprintf(path, 512, "%s/tests/tmp-metrics-XXXXXX", OC_BINARY_DIR);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp %s", path);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    return path;
}
static char *tmp_text(const char *text) { return tmp_file(text, strlen(text)); }

/* A .npy (format 1.0) file from a descr, a shape literal and raw data. */
static char *tmp_npy(const char *descr, const char *shape, const void *data, size_t n)
{
    char hdr[256];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       descr, shape);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(hdr + len, ' ', (size_t)pad);
    hdr[len + pad] = '\n';
    int hlen = len + pad + 1;
    unsigned char *buf = malloc(10 + (size_t)hlen + n);
    cr_assert_not_null(buf);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, hdr, (size_t)hlen);
    memcpy(buf + 10 + hlen, data, n);
    char *path = tmp_file(buf, 10 + (size_t)hlen + n);
    free(buf);
    return path;
}

static void read_ok(const char *path, const double *want, int64_t n_want)
{
    struct oc_err err = {0};
    double *v;
    int64_t n;
    cr_assert_eq(oc_scores_read(path, &v, &n, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(n, n_want);
    for (int64_t i = 0; i < n; i++) cr_expect_eq(v[i], want[i], "score %lld", (long long)i);
    free(v);
}

static void read_fails(const char *path, enum oc_status code, const char *needle)
{
    struct oc_err err = {0};
    double *v = (double *)&err;
    int64_t n = 7;
    cr_expect_eq(oc_scores_read(path, &v, &n, &err), code, "'%s' for %s", err.msg, needle);
    cr_expect(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_expect(strstr(err.msg, path), "message '%s' does not name the file", err.msg);
    cr_expect_null(v);
    cr_expect_eq(n, 0);
}

Test(scores, text)
{
    char *p = tmp_text("# scores of the test set\n0.5\n\n  -1.25e-3  \r\n# another comment\n"
                       "3  # trailing comment\n\t7\n1e300");
    const double want[] = {0.5, -1.25e-3, 3, 7, 1e300};
    read_ok(p, want, 5);
    unlink(p);
    free(p);
}

Test(scores, text_errors)
{
    char *p = tmp_text("1.0\n2.0\nabc\n");
    char needle[600];
    snprintf(needle, sizeof needle, "%s:3:", p);
    read_fails(p, OC_ERR_PARSE, needle);
    unlink(p);
    free(p);

    p = tmp_text("1.0\n2.0 3.0\n");
    snprintf(needle, sizeof needle, "%s:2:", p);
    read_fails(p, OC_ERR_PARSE, needle);
    unlink(p);
    free(p);

    p = tmp_text("1.0\n\nnan\n");
    snprintf(needle, sizeof needle, "%s:3: score is not finite", p);
    read_fails(p, OC_ERR_INVALID, needle);
    unlink(p);
    free(p);

    p = tmp_text("\n# nothing here\n   \n");
    read_fails(p, OC_ERR_INVALID, "no scores");
    unlink(p);
    free(p);

    p = tmp_text("");
    read_fails(p, OC_ERR_INVALID, "no scores");
    unlink(p);
    free(p);

    read_fails(OC_BINARY_DIR "/tests/no-such-scores.txt", OC_ERR_IO, "cannot open");
}

Test(scores, npy)
{
    const float f4[] = {0.25f, -1.5f, 3.0f};
    char *p = tmp_npy("<f4", "(3,)", f4, sizeof f4);
    const double want_f[] = {0.25, -1.5, 3.0};
    read_ok(p, want_f, 3);
    unlink(p);
    free(p);

    const int32_t i4[] = {4, -2, 0, 9};
    p = tmp_npy("<i4", "(4, 1)", i4, sizeof i4);
    const double want_i[] = {4, -2, 0, 9};
    read_ok(p, want_i, 4);
    unlink(p);
    free(p);

    const double f8[] = {1, 2, 3, 4, 5, 6};
    p = tmp_npy("<f8", "(2, 3)", f8, sizeof f8);
    read_fails(p, OC_ERR_SHAPE, "expected a flat array");
    unlink(p);
    free(p);

    const double f8nan[] = {1, 2, NAN};
    p = tmp_npy("<f8", "(3,)", f8nan, sizeof f8nan);
    read_fails(p, OC_ERR_INVALID, "score at index 2 is NaN");
    unlink(p);
    free(p);

    p = tmp_npy("<f8", "(0,)", f8, 0);
    read_fails(p, OC_ERR_INVALID, "no scores");
    unlink(p);
    free(p);
}
