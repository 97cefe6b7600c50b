/* eval.h - OOD evaluation: the scorers (confidence functions written in
 * the DSL), tuning of T and epsilon on validation splits, scoring of every
 * OOD set with every applicable scorer, the report, and the whole
 * experiment of `oodc run`.
 *
 * Data flow of one model's evaluation (oc_eval_run):
 *   model cfg + params (a checkpoint) -> forward graph (test mode) compiled
 *     once -> head outputs (logits, bin_logits, mu, sd, priors, features)
 *     of every image of every set, kept on the host
 *   scorer -> a small score graph over those outputs (f64), compiled once,
 *     run for every T of the grid (no new forward pass)
 *   input perturbation (ODIN, Mahalanobis) -> a second graph: the model,
 *     the scorer's objective and its gradient w.r.t. the input x (autodiff),
 *     output sign(grad); x' = x + eps * sign(grad) then goes through the
 *     forward graph (one gradient pass per T, one forward per eps)
 *   validation splits -> (T, eps) minimizing FPR at 95% TPR per OOD set ->
 *     the test splits scored with them -> oc_metrics_compute -> rows
 * The report (report.c) turns rows into the paper's tables, CSV, JSON and
 * an HTML page with ROC/PR curves and score histograms.
 *
 * Conventions: scores are confidences, in-distribution high. The
 * in-distribution validation set used for tuning is the trainer's held-out
 * validation split of the training data (oc_train_data_split with the
 * checkpoint's seed and limit), so the test set stays the whole test split
 * as in the paper.
 */
#ifndef OODC_OOD_EVAL_H
#define OODC_OOD_EVAL_H

#include <stdio.h>

#include "../models/models.h"
#include "../runtime/runtime.h"
#include "data.h"
#include "metrics.h"

/* ---------------------------------------------------------------- scorers */

/* What a scorer reads (bits of oc_scorer.needs). */
enum {
    OC_SC_LOGITS = 1 << 0,   /* logits */
    OC_SC_BIN = 1 << 1,      /* bin_logits */
    OC_SC_LATENT = 1 << 2,   /* mu, sd, prior_mu, prior_sd */
    OC_SC_FEATURES = 1 << 3, /* trunk features + class statistics */
};
/* How it is tuned and what its score means (bits of oc_scorer.flags). */
enum {
    OC_SC_TUNE_T = 1 << 0,   /* temperature T from oc_grid_T, input "T" */
    OC_SC_TUNE_EPS = 1 << 1, /* input perturbation eps from oc_grid_eps */
    OC_SC_LOG = 1 << 2,      /* the score is log r: r = exp(-KL) underflows for OOD inputs */
};

/* The tensors a score is built from: in a standalone score graph they are
 * inputs named "logits", "bin_logits", "mu", "sd", "prior_mu", "prior_sd",
 * "features", "T", "class_mean" ([K,F]) and "precision" ([F,F]); in the
 * perturbation graph they are the model's own tensors. Unneeded ones are
 * OC_NONE. */
struct oc_score_in {
    struct oc_head_out h;
    oc_tensor T;
    oc_tensor class_mean, precision;
};

/* A scorer is one registry entry (ood/scorers.c). */
struct oc_scorer {
    const char *name;    /* CLI name, lower case: "baseline+t" */
    const char *label;   /* table label: "Baseline+T" */
    const char *heads;   /* the heads it applies to, comma-separated */
    const char *summary;
    unsigned needs, flags;
    /* The confidence of each input, [B]. */
    oc_tensor (*score)(struct oc_graph *g, const struct oc_score_in *in);
    /* What the input perturbation increases (x' = x + eps sign(grad_x
     * objective), summed over the batch); NULL: the score. */
    oc_tensor (*objective)(struct oc_graph *g, const struct oc_score_in *in);
};

/* NULL-terminated, in the paper's order, then the scorers beyond it. */
extern const struct oc_scorer *const oc_scorers[];
const struct oc_scorer *oc_scorer_find(const char *name); /* case-insensitive */
/* 1 if the scorer applies to head `head`. */
int oc_scorer_applies(const struct oc_scorer *s, const char *head);

/* The tuning grids (paper, section 5.3; ODIN's grid). */
#define OC_GRID_NT 10
#define OC_GRID_NEPS 12
extern const double oc_grid_T[OC_GRID_NT];
extern const double oc_grid_eps[OC_GRID_NEPS];

/* Sizes of a model's head outputs. */
struct oc_head_dims {
    int k;     /* classes */
    int z;     /* latent width (0: none) */
    int p;     /* priors: 1 (VIB) or k (VIBY) */
    int f;     /* feature width */
};

/* A standalone score graph for `batch` inputs, every tensor f64: inputs as
 * described at struct oc_score_in (only those the scorer needs), output
 * "score" [batch]. */
enum oc_status oc_scorer_graph(const struct oc_scorer *s, int64_t batch,
                               const struct oc_head_dims *d, struct oc_graph **out,
                               struct oc_err *err);

/* ---------------------------------------------------------------- head outputs on the host */

/* The head outputs of n inputs, row-major float arrays (NULL when the head
 * has no such output); the priors are shared by all inputs. */
struct oc_head_vals {
    int64_t n;
    struct oc_head_dims d;
    float *logits, *bin_logits, *mu, *sd, *features; /* n x (k | k | z | z | f) */
    float *prior_mu, *prior_sd;                      /* p x z */
};
void oc_head_vals_free(struct oc_head_vals *v);

/* Class means [k*f] and the inverse of the tied (shared) covariance [f*f]
 * of labelled features (Lee et al. 2018), in double. */
struct oc_class_stats {
    int k, f;
    double *mean, *precision;
};
enum oc_status oc_class_stats_fit(const float *features, const int32_t *labels, int64_t n, int k,
                                  int f, struct oc_class_stats *out, struct oc_err *err);
void oc_class_stats_free(struct oc_class_stats *cs);

/* A compiled score graph, bound to the class statistics once and run on
 * any number of inputs, at any T. */
struct oc_score_exec;
/* batch: rows per run of the graph (the last partial batch is padded with
 * copies of the last row). cs: required when the scorer needs features. */
enum oc_status oc_score_exec_new(const struct oc_scorer *s, const struct oc_head_dims *d,
                                 int64_t batch, const struct oc_class_stats *cs,
                                 const char *device, struct oc_rt *rt,
                                 struct oc_score_exec **out, struct oc_err *err);
/* Scores the v->n inputs of v at temperature T (ignored unless the scorer
 * tunes T) into scores[v->n]. A NaN score is OC_ERR_NUMERIC naming the
 * input. */
enum oc_status oc_score_exec_run(struct oc_score_exec *se, const struct oc_head_vals *v,
                                 double T, double *scores, struct oc_err *err);
void oc_score_exec_free(struct oc_score_exec *se);

/* Tuning of T alone (no input perturbation): scores the validation sets at
 * every T of the grid and returns in *best the index that minimizes FPR at
 * 95% TPR (ties: the higher AUROC, then the first in the grid); fpr (may be
 * NULL) receives the OC_GRID_NT values. */
enum oc_status oc_tune_T(struct oc_score_exec *se, const struct oc_head_vals *in_val,
                         const struct oc_head_vals *out_val, int *best, double *fpr,
                         struct oc_err *err);
/* The tuning rule on its own: the index of the smallest fpr95, ties broken
 * by the larger auroc, then by the lower index. */
int oc_tune_pick(const double *fpr95, const double *auroc, int n);

/* ---------------------------------------------------------------- OOD sets */

/* An OOD set: its test and validation splits (unlabelled, conformed to the
 * model's input). */
struct oc_ood_set {
    char name[64];   /* file-name safe: "gaussian", "photos-crop" */
    char label[64];  /* for tables: "Gaussian Noise" */
    char spec[512];
    struct oc_dataset test, val;
};

/* Loads "NAME=SPEC" (or a bare SPEC, named after it) for inputs of c x h x w:
 *   gaussian | uniform             generated images
 *   idx:PATH[,val=PATH]            IDX images
 *   cifar:PATH[,val=PATH]          CIFAR-10 binary records
 *   folder:DIR:crop|resize         an image folder (random crops or downsampled)
 * Without ",val=" a seeded random n images (n <= 0: 1500, the paper's) are
 * split 2:1 into test and validation (1000 / 500); with it the files are
 * the two splits. */
enum oc_status oc_ood_set_load(const char *name_spec, int c, int h, int w, int64_t n,
                               uint64_t seed, struct oc_ood_set *out, struct oc_err *err);
void oc_ood_set_free(struct oc_ood_set *s);

/* ---------------------------------------------------------------- evaluation */

/* The model under evaluation: its configuration and how to bind its
 * params and state into an executable of a graph built from cfg. bind NULL
 * leaves every param at its initializer (oc_init_fill with seed 0). */
struct oc_eval_model {
    const char *name; /* head name or a label, for messages and the report */
    struct oc_model_cfg cfg;
    enum oc_status (*bind)(void *ctx, struct oc_exec *ex, const struct oc_graph *g,
                           struct oc_err *err);
    void *bind_ctx;
};

struct oc_eval_data {
    const struct oc_dataset *in_test;  /* labelled */
    const struct oc_dataset *in_val;   /* for tuning */
    const struct oc_dataset *in_train; /* labelled; class statistics (NULL: no Mahalanobis) */
    const struct oc_ood_set *ood;
    int nood;
};

struct oc_eval_opts {
    const char *device;     /* "cpu" (default) */
    int batch;              /* images per forward pass (default 250) */
    const char *methods;    /* comma-separated scorer names; NULL: all that apply */
    int64_t tune_in_n;      /* in-distribution validation images used for tuning (0: all) */
    int64_t tune_ood_n;     /* validation images per OOD set used for tuning (0: all) */
    int64_t fit_n;          /* training images for the class statistics (0: all) */
    const char *scores_dir; /* per-image test scores as .npy here (NULL: none) */
    FILE *log;              /* progress (NULL: none) */
    struct oc_rt *rt;       /* shared runtime context (NULL: private ones) */
};
struct oc_eval_opts oc_eval_opts_default(void);

/* One (method, OOD set) result. */
struct oc_eval_row {
    const struct oc_scorer *scorer;
    int ood;                  /* index into the OOD sets */
    struct oc_metrics m;
    double T, eps;            /* chosen on validation; NAN when not tuned */
    double *in_scores, *out_scores; /* test scores (owned) */
    int64_t n_in, n_out;
};

struct oc_eval_result {
    char model[32];
    int started;              /* 1 once the model's graph compiled and its params bound: an
                               * error before that is the caller's input (a checkpoint that
                               * does not fit its model, a bad set), after it a failure */
    double accuracy;          /* percent, on in_test */
    int64_t n_test;
    int nrows;
    struct oc_eval_row *rows;
};

/* Checks a comma-separated method list against the registry and the head:
 * an unknown name or one that does not apply is OC_ERR_INVALID naming it
 * and the methods that do. */
enum oc_status oc_eval_check_methods(const char *methods, const char *head, struct oc_err *err);

/* The pieces of oc_eval_run on their own (each call compiles its graphs;
 * for tests and tools). oc_eval_forward: the test-mode head outputs of n
 * images of the model's input size (needs: OC_SC_* bits of the outputs to
 * keep; logits always). oc_eval_perturb: out = x + eps * sign(grad_x of the
 * scorer's objective at T), the input perturbation of ODIN and
 * Mahalanobis; cs for the feature scorers. */
enum oc_status oc_eval_forward(const struct oc_eval_model *m, const float *x, int64_t n,
                               unsigned needs, const struct oc_eval_opts *o,
                               struct oc_head_vals *out, struct oc_err *err);
enum oc_status oc_eval_perturb(const struct oc_eval_model *m, const struct oc_scorer *s,
                               const struct oc_class_stats *cs, const float *x, int64_t n,
                               double T, double eps, const struct oc_eval_opts *o, float *out,
                               struct oc_err *err);

enum oc_status oc_eval_run(const struct oc_eval_model *m, const struct oc_eval_data *d,
                           const struct oc_eval_opts *o, struct oc_eval_result *r,
                           struct oc_err *err);
void oc_eval_result_free(struct oc_eval_result *r);

/* ---------------------------------------------------------------- report */

/* What the report shows: per model its accuracy and its rows. */
struct oc_report {
    const char *title;
    const char *config;  /* a line describing the configuration (may be NULL) */
    int nmodels;
    const struct oc_eval_result *models;
    int nood;
    const struct oc_ood_set *ood; /* names and labels only */
};

/* Table 1 (per OOD set x method: FPR95, detection error, AUROC, AUPR-In,
 * AUPR-Out, in percent) and Table 2 (accuracy per model) as Markdown. */
void oc_report_tables(FILE *f, const struct oc_report *r);
/* Writes dir/results.md, results.csv, results.json and index.html (the
 * tables, and per OOD set ROC and PR curves and score histograms as inline
 * SVG; no network). */
enum oc_status oc_report_write(const char *dir, const struct oc_report *r, struct oc_err *err);
/* Writes the results list as JSON: objects with method, ood, fpr95,
 * detection_error, auroc, aupr_in, aupr_out (percent), T, eps (null when
 * not tuned), plus head and label. */
enum oc_status oc_report_write_json(const char *path, const struct oc_report *r,
                                    struct oc_err *err);

/* ---------------------------------------------------------------- the experiment */

struct oc_run_cfg {
    const char *preset;     /* "cpu" (default) or "paper" */
    const char *arch;       /* Wide ResNet */
    const char *data;       /* in-distribution training data spec */
    const char *device;
    const char *runs_dir;   /* checkpoints: runs/<head>/ */
    const char *report_dir; /* report/ */
    const char *photos;     /* folder of photographs for the crop/resize sets */
    int epochs, batch;
    int64_t train_limit;    /* training images (0: all) */
    int64_t test_n;         /* in-distribution test images (0: all) */
    int64_t tune_n;         /* validation images per set used for tuning (0: all) */
    int64_t fit_n;          /* training images for Mahalanobis statistics (0: all) */
    int64_t ood_n;          /* images per OOD set, split 2:1 test/validation (0: 1500) */
    const char *heads;      /* comma-separated (default: all five) */
    const char *methods;    /* comma-separated (default: all) */
    uint64_t seed;
    int retrain;            /* ignore existing checkpoints */
    FILE *log;              /* progress (NULL: stderr) */
    FILE *tables;           /* Table 1 and 2 (NULL: stdout) */
};
/* The preset's configuration ("cpu" or "paper"); NULL for an unknown name. */
int oc_run_cfg_preset(const char *preset, struct oc_run_cfg *c);
/* Trains (or reuses) every model, evaluates every scorer, prints the
 * tables and writes the report. *input_error tells a caller's input error
 * (exit 2) from a failure while running. */
enum oc_status oc_run(const struct oc_run_cfg *c, int *input_error, struct oc_err *err);

#endif
