/* metrics.h - the OOD detection metrics of the paper (section 4), computed
 * exactly as scikit-learn computes them, and a reader for score files.
 *
 * Data flow: the evaluation layer scores the in-distribution test set and an
 * OOD set with one scorer, hands the two float64 score arrays here, and the
 * report layer turns the fractions returned into the paper's percentages.
 *
 * Conventions throughout: in-distribution samples are the positives, and a
 * higher score means "more in-distribution". The ROC is the tie-grouped curve
 * of sklearn.metrics.roc_curve(drop_intermediate=False): samples sorted by
 * descending score, one point per distinct score, plus the origin.
 */
#ifndef OODC_OOD_METRICS_H
#define OODC_OOD_METRICS_H

#include <stdint.h>

#include "../ir/ir.h"

/* The largest number of scores accepted per set: keeps the pair counts used
 * for AUROC (2 * n_in * n_out) inside uint64. */
#define OC_METRICS_MAX_N (INT64_C(1) << 31)

/* All values are fractions in [0, 1] (multiply by 100 for the paper's tables). */
struct oc_metrics {
    double fpr95;           /* FPR at the first ROC point with TPR >= 0.95 */
    double detection_error; /* 0.5 * (1 - TPR) + 0.5 * FPR at that point */
    double auroc;           /* trapezoid under the ROC = sklearn roc_auc_score */
    double aupr_in;         /* sklearn average_precision_score, in-distribution positive */
    double aupr_out;        /* the same with OOD positive and the scores negated */
    double tpr_at;          /* the TPR of the FPR95 point (>= 0.95) */
    double threshold;       /* its threshold: score >= threshold is called in-distribution */
};

/* Computes every metric. `in` holds n_in in-distribution scores, `out` n_out
 * OOD scores; neither is modified. Fails with OC_ERR_INVALID (message naming
 * the set and index) if a set is empty or larger than OC_METRICS_MAX_N, or a
 * score is NaN or infinite; OC_ERR_NOMEM if scratch memory runs out.
 * O((n_in + n_out) log(n_in + n_out)). */
enum oc_status oc_metrics_compute(const double *in, int64_t n_in, const double *out, int64_t n_out,
                                  struct oc_metrics *m, struct oc_err *err);

/* A curve for plotting: n points, malloc'd arrays the caller frees with
 * oc_curve_free. Points go by decreasing threshold; point 0 is the curve's
 * start at threshold +inf (ROC: (0, 0); PR: recall 0, precision 1), then one
 * point per distinct score: thr[i] is that score and samples with
 * score >= thr[i] are called positive. */
struct oc_curve {
    int64_t n;
    double *x;   /* ROC: FPR; PR: recall */
    double *y;   /* ROC: TPR; PR: precision */
    double *thr;
};
void oc_curve_free(struct oc_curve *c);

/* The ROC: sklearn roc_curve(drop_intermediate=False), except that the first
 * threshold is +inf (as in scikit-learn >= 1.3) rather than max + 1. */
enum oc_status oc_metrics_roc(const double *in, int64_t n_in, const double *out, int64_t n_out,
                              struct oc_curve *roc, struct oc_err *err);

/* The precision-recall curve with in-distribution positive (ood_positive = 0)
 * or OOD positive and scores negated (ood_positive = 1; thr then holds the
 * negated scores). sklearn precision_recall_curve returns these points in
 * reverse order. Average precision is sum_i (x[i] - x[i-1]) * y[i]. */
enum oc_status oc_metrics_pr(const double *in, int64_t n_in, const double *out, int64_t n_out,
                             int ood_positive, struct oc_curve *pr, struct oc_err *err);

/* Reads scores from `path`: a .npy file (recognized by its magic bytes; any
 * dtype, rank 1 or with at most one dimension > 1) or text with one number
 * per line, where blank lines and '#' comments are skipped. Fails naming
 * path:line for a malformed line, and for a file with no scores or a NaN or
 * infinite score. On success *out is malloc'd (caller frees) and *n > 0. */
enum oc_status oc_scores_read(const char *path, double **out, int64_t *n, struct oc_err *err);

#endif
