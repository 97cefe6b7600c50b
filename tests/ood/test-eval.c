/* test-eval.c - evaluation (ood/eval.c) and the experiment (ood/run.c):
 * OOD set specs and their errors, method selection, and tiny end-to-end
 * experiments on Fashion-MNIST (the Debian package dataset-fashion-mnist):
 * WRN-10-1 trained for one epoch on a few hundred images, evaluated with
 * every scorer of its head (ODIN's full 10 x 12 grid on a few validation
 * images), checking that every score is finite, the metrics and chosen
 * values are in range, the .npy score files and the report are written;
 * and `oodc run` at a tiny scale, which must reuse its checkpoints on a
 * second call. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../ood/eval.h"
#include "../../ood/train.h"
#include "../helpers/helpers.h"

#define FIX OC_SOURCE_DIR "/tests/fixtures/data"

/* ---------------------------------------------------------------- OOD sets */

Test(eval, ood_noise_sets)
{
    struct oc_ood_set a, b;
    struct oc_err err = {0};
    cr_assert_eq(oc_ood_set_load("gaussian", 1, 28, 28, 0, 3, &a, &err), OC_OK, "%s", err.msg);
    cr_expect_str_eq(a.name, "gaussian");
    cr_expect_eq(a.test.n, 1000);
    cr_expect_eq(a.val.n, 500);
    cr_expect(a.test.c == 1 && a.test.h == 28 && a.test.w == 28);
    int64_t sz = oc_dataset_image_size(&a.test) * a.test.n;
    for (int64_t i = 0; i < sz; i++) cr_assert(a.test.images[i] >= 0 && a.test.images[i] <= 1);
    /* seeded: the same set again */
    cr_assert_eq(oc_ood_set_load("noise=gaussian", 1, 28, 28, 0, 3, &b, &err), OC_OK, "%s", err.msg);
    cr_expect_str_eq(b.name, "noise");
    cr_expect_eq(memcmp(a.test.images, b.test.images, sizeof(float) * (size_t)sz), 0);
    oc_ood_set_free(&b);
    cr_assert_eq(oc_ood_set_load("u=uniform", 3, 8, 8, 30, 4, &b, &err), OC_OK, "%s", err.msg);
    cr_expect(b.test.c == 3 && b.test.n == 20 && b.val.n == 10, "n = 30 splits 20/10");
    oc_ood_set_free(&a);
    oc_ood_set_free(&b);
}

Test(eval, ood_file_sets)
{
    struct oc_ood_set s;
    struct oc_err err = {0};
    /* an explicit validation file: the files are the splits */
    const char *spec = "tiny=idx:" FIX "/idx/tiny-images-idx3-ubyte,val=" FIX "/idx/tiny-images-idx3-ubyte.gz";
    cr_assert_eq(oc_ood_set_load(spec, 1, 4, 4, 0, 0, &s, &err), OC_OK, "%s", err.msg);
    cr_expect_str_eq(s.name, "tiny");
    cr_expect_gt(s.test.n, 0);
    cr_expect_eq(s.test.n, s.val.n);
    cr_expect_eq(memcmp(s.test.images, s.val.images, sizeof(float) * (size_t)(s.test.n * 16)), 0);
    oc_ood_set_free(&s);
    /* a folder of 4 images: split 2:1 */
    for (int mode = 0; mode < 2; mode++) {
        const char *fs = mode ? "folder:" FIX "/images:resize" : "folder:" FIX "/images:crop";
        cr_assert_eq(oc_ood_set_load(fs, 3, 2, 2, 0, 0, &s, &err), OC_OK, "%s: %s", fs, err.msg);
        cr_expect_str_eq(s.name, mode ? "folder-resize" : "folder-crop");
        cr_expect_eq(s.test.n + s.val.n, 4);
        cr_expect_eq(s.test.n, 2);
        cr_expect(s.test.c == 3 && s.test.h == 2);
        oc_ood_set_free(&s);
    }
}

static void expect_bad(const char *spec, enum oc_status code, const char *needle)
{
    struct oc_ood_set s;
    struct oc_err err = {0};
    cr_expect_eq(oc_ood_set_load(spec, 1, 4, 4, 0, 0, &s, &err), code, "%s: %s", spec, err.msg);
    cr_expect(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", spec, err.msg, needle);
}

Test(eval, ood_spec_errors)
{
    expect_bad("bogus", OC_ERR_INVALID, "unknown OOD spec 'bogus'");
    expect_bad("x=bogus:1", OC_ERR_INVALID, "unknown OOD spec");
    expect_bad("folder:" FIX "/images", OC_ERR_INVALID, "crop or folder:DIR:resize");
    expect_bad("folder:" FIX "/images:zoom", OC_ERR_INVALID, "folder:DIR:crop");
    expect_bad("gaussian,val=x", OC_ERR_INVALID, "only idx: and cifar:");
    expect_bad("a b=gaussian", OC_ERR_INVALID, "name 'a b'");
    expect_bad("cifar:", OC_ERR_INVALID, "unknown OOD spec");
    expect_bad("idx:/nonexistent/oc-images", OC_ERR_IO, "/nonexistent/oc-images");
    expect_bad("folder:" FIX "/images-bad:crop", OC_ERR_PARSE, "broken.png");
}

Test(eval, method_selection)
{
    struct oc_err err = {0};
    cr_expect_eq(oc_eval_check_methods(NULL, "baseline", &err), OC_OK);
    cr_expect_eq(oc_eval_check_methods("odin,Baseline+T", "baseline", &err), OC_OK, "%s", err.msg);
    cr_expect_eq(oc_eval_check_methods("viby-ii", "viby", &err), OC_OK, "%s", err.msg);
    cr_expect_eq(oc_eval_check_methods("odin2", "baseline", &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "unknown method 'odin2'") && strstr(err.msg, "mahalanobis"), "%s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_eval_check_methods("odin", "vib", &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "applies to the baseline head") && strstr(err.msg, "methods for vib: vib"),
              "%s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_eval_check_methods("odin,,baseline", "baseline", &err), OC_ERR_INVALID);
}

/* ---------------------------------------------------------------- input perturbation */

/* mean over images of log max softmax(logits / T) */
static double mean_log_s(const struct oc_head_vals *v, double T, double *per)
{
    double sum = 0;
    for (int64_t i = 0; i < v->n; i++) {
        const float *l = v->logits + i * v->d.k;
        double mx = -INFINITY, z = 0;
        for (int c = 0; c < v->d.k; c++) mx = fmax(mx, l[c] / T);
        for (int c = 0; c < v->d.k; c++) z += exp(l[c] / T - mx);
        per[i] = -log(z);
        sum += per[i];
    }
    return sum / (double)v->n;
}

/* ODIN's x' = x - eps sign(-grad log S(y^, x; T)) moves every pixel by
 * exactly eps (or 0) and increases log S: checked on a randomly
 * initialized WRN-10-1 (its inputs are raw pixels; normalization is in the
 * graph) for a low and a high temperature. */
Test(eval, odin_perturbation_increases_log_s, .timeout = 120)
{
    struct oc_err err = {0};
    struct oc_eval_model m = {.name = "baseline"};
    cr_assert_eq(oc_train_model_cfg("wrn-10-1", "baseline", 1, 28, 10, &m.cfg, &err), OC_OK, "%s", err.msg);
    struct oc_dataset ds;
    cr_assert_eq(oc_data_noise(OC_NOISE_UNIFORM, 32, 1, 28, 28, 9, &ds, &err), OC_OK, "%s", err.msg);
    struct oc_eval_opts o = oc_eval_opts_default();
    o.batch = 32;
    struct oc_head_vals v0, v1;
    cr_assert_eq(oc_eval_forward(&m, ds.images, ds.n, 0, &o, &v0, &err), OC_OK, "%s", err.msg);
    float *xp = malloc(sizeof(float) * 32 * 784);
    double per0[32], per1[32];
    const double Ts[] = {1, 1000}, eps = 0.002;
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(oc_eval_perturb(&m, oc_scorer_find("odin"), NULL, ds.images, ds.n, Ts[t], eps, &o,
                                     xp, &err),
                     OC_OK, "%s", err.msg);
        int moved = 0;
        for (int i = 0; i < 32 * 784; i++) {
            double d = fabs((double)xp[i] - ds.images[i]);
            cr_assert(d < 1e-7 || fabs(d - eps) < 1e-6, "pixel %d moved by %g", i, d);
            moved += d > 1e-7;
        }
        cr_expect_gt(moved, 32 * 784 / 2, "most pixels have a nonzero gradient");
        cr_assert_eq(oc_eval_forward(&m, xp, ds.n, 0, &o, &v1, &err), OC_OK, "%s", err.msg);
        double a = mean_log_s(&v0, Ts[t], per0), b = mean_log_s(&v1, Ts[t], per1);
        int up = 0;
        for (int i = 0; i < 32; i++) up += per1[i] > per0[i];
        cr_expect_gt(b, a, "T=%g: mean log S %g -> %g", Ts[t], a, b);
        cr_expect_geq(up, 28, "T=%g: log S rose for only %d of 32 images", Ts[t], up);
        oc_head_vals_free(&v1);
    }
    /* Mahalanobis without class statistics is an error, not a crash */
    cr_expect_eq(oc_eval_perturb(&m, oc_scorer_find("mahalanobis"), NULL, ds.images, ds.n, 1, eps, &o, xp, &err),
                 OC_ERR_INVALID);
    free(xp);
    oc_head_vals_free(&v0);
    oc_dataset_free(&ds);
}

/* ---------------------------------------------------------------- end to end */

static char tmp[64];

static void mktmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/oc-test-eval-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    cr_expect_eq(system(cmd), 0);
}

/* One epoch of WRN-10-1 with `head` on n Fashion-MNIST images into dir. */
static void train(const char *head, const char *dir, int64_t n)
{
    struct oc_train_cfg c = oc_train_cfg_default();
    c.model = "wrn-10-1";
    c.head = head;
    c.data = "fashion-mnist";
    c.out_dir = dir;
    c.epochs = 1;
    c.batch = 50;
    c.train_limit = n;
    c.quiet = 1;
    c.progress = 0;
    c.log = fopen("/dev/null", "w");
    struct oc_train_result r;
    struct oc_err err = {0};
    enum oc_status st = oc_train(&c, &r, &err);
    fclose(c.log);
    cr_assert_eq(st, OC_OK, "training %s: %s", head, err.msg);
}

static enum oc_status bind_ck(void *ctx, struct oc_exec *ex, const struct oc_graph *g,
                              struct oc_err *err)
{
    return oc_checkpoint_bind(ctx, ex, g, err);
}

/* A small unlabeled noise set split 100 test / 50 validation. */
static void small_set(struct oc_ood_set *s, const char *name, enum oc_noise_kind kind, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->label, sizeof s->label, "%s", name);
    struct oc_dataset all;
    struct oc_err err = {0};
    cr_assert_eq(oc_data_noise(kind, 150, 1, 28, 28, seed, &all, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_split(&all, 100, seed, &s->test, &s->val, &err), OC_OK, "%s", err.msg);
    oc_dataset_free(&all);
}

/* Trains `head`, evaluates every scorer of it on two noise sets, checks
 * the results, and writes the report. */
static void experiment(const char *head, int expect_rows)
{
    mktmp();
    char run[128], ck_path[160], scores[160];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(ck_path, sizeof ck_path, "%s/%s", run, OC_CHECKPOINT_FILE);
    snprintf(scores, sizeof scores, "%s/report/scores", tmp);
    train(head, run, 200);
    struct oc_err err = {0};
    struct oc_checkpoint *ck;
    cr_assert_eq(oc_checkpoint_load(ck_path, &ck, &err), OC_OK, "%s", err.msg);
    struct oc_dataset full, trn, val, test, test_sub;
    cr_assert_eq(oc_train_data_load("fashion-mnist", 1, &full, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_train_data_split(&full, ck->train_limit, ck->seed, &trn, &val, &err), OC_OK, "%s", err.msg);
    oc_dataset_free(&full);
    cr_assert_eq(oc_train_data_load("fashion-mnist", 0, &test, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_split(&test, 150, 1, &test_sub, NULL, &err), OC_OK, "%s", err.msg);
    oc_dataset_free(&test);
    struct oc_ood_set sets[2];
    small_set(&sets[0], "gaussian", OC_NOISE_GAUSSIAN, 1);
    small_set(&sets[1], "uniform", OC_NOISE_UNIFORM, 2);
    struct oc_eval_model m = {.name = head, .cfg = ck->model, .bind = bind_ck, .bind_ctx = ck};
    struct oc_eval_data d = {&test_sub, &val, &trn, sets, 2};
    struct oc_eval_opts o = oc_eval_opts_default();
    o.batch = 32; /* the 12 + 2 x 10 tuning images are one batch */
    o.tune_in_n = 12;
    o.tune_ood_n = 10;
    o.scores_dir = scores;
    struct oc_eval_result r;
    cr_assert_eq(oc_eval_run(&m, &d, &o, &r, &err), OC_OK, "%s", err.msg);
    cr_expect(r.started);
    cr_expect_eq(r.nrows, expect_rows);
    cr_expect(r.accuracy >= 0 && r.accuracy <= 100);
    cr_expect_eq(r.n_test, 150);
    for (int i = 0; i < r.nrows; i++) {
        const struct oc_eval_row *row = &r.rows[i];
        const struct oc_scorer *s = row->scorer;
        cr_expect(oc_scorer_applies(s, head));
        cr_expect_eq(row->n_in, 150);
        cr_expect_eq(row->n_out, 100);
        for (int64_t k = 0; k < row->n_in; k++) cr_assert(isfinite(row->in_scores[k]), "%s: in[%lld]", s->name, (long long)k);
        for (int64_t k = 0; k < row->n_out; k++) cr_assert(isfinite(row->out_scores[k]), "%s: out[%lld]", s->name, (long long)k);
        const struct oc_metrics *mt = &row->m;
        cr_expect(mt->fpr95 >= 0 && mt->fpr95 <= 1 && mt->auroc >= 0 && mt->auroc <= 1);
        cr_expect(mt->aupr_in >= 0 && mt->aupr_in <= 1 && mt->aupr_out >= 0 && mt->aupr_out <= 1);
        int tuned_t = 0, tuned_e = 0;
        for (int t = 0; t < OC_GRID_NT; t++) tuned_t |= row->T == oc_grid_T[t];
        for (int e = 0; e < OC_GRID_NEPS; e++) tuned_e |= row->eps == oc_grid_eps[e];
        cr_expect_eq(tuned_t, (s->flags & OC_SC_TUNE_T) != 0, "%s: T %g", s->name, row->T);
        cr_expect_eq(tuned_e, (s->flags & OC_SC_TUNE_EPS) != 0, "%s: eps %g", s->name, row->eps);
        cr_expect_eq(isnan(row->T), !(s->flags & OC_SC_TUNE_T));
        /* the per-image scores, as written */
        char path[256];
        double *v;
        int64_t n;
        snprintf(path, sizeof path, "%s/%s/%s-out.npy", scores, s->name, sets[row->ood].name);
        cr_assert_eq(oc_scores_read(path, &v, &n, &err), OC_OK, "%s", err.msg);
        cr_expect_eq(n, 100);
        cr_expect_eq(v[7], row->out_scores[7]);
        free(v);
        snprintf(path, sizeof path, "%s/%s/%s-in.npy", scores, s->name, sets[row->ood].name);
        cr_assert_eq(oc_scores_read(path, &v, &n, &err), OC_OK, "%s", err.msg);
        cr_expect_eq(n, 150);
        free(v);
    }
    /* the report of this model */
    char rep_dir[128];
    snprintf(rep_dir, sizeof rep_dir, "%s/report", tmp);
    struct oc_report rep = {.title = head, .nmodels = 1, .models = &r, .nood = 2, .ood = sets};
    cr_assert_eq(oc_report_write(rep_dir, &rep, &err), OC_OK, "%s", err.msg);
    const char *files[] = {"results.md", "results.csv", "results.json", "index.html"};
    for (int i = 0; i < 4; i++) {
        char p[192];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", rep_dir, files[i]);
        cr_expect(!stat(p, &sb) && sb.st_size > 0, "%s", p);
    }
    oc_eval_result_free(&r);
    /* a checkpoint of another head does not fit this model */
    struct oc_eval_model wrong = m;
    wrong.cfg.head = oc_head_find(strcmp(head, "viby") ? "viby" : "vib");
    wrong.cfg.hc = oc_head_cfg_default(wrong.cfg.head->name, 10);
    o.scores_dir = NULL;
    cr_expect_neq(oc_eval_run(&wrong, &d, &o, &r, &err), OC_OK);
    cr_expect(!r.started, "a bind error is the caller's input");
    cr_expect(strstr(err.msg, "fc") || strstr(err.msg, "enc_") || strstr(err.msg, "prior"), "%s", err.msg);
    for (int j = 0; j < 2; j++) oc_ood_set_free(&sets[j]);
    oc_dataset_free(&test_sub);
    oc_dataset_free(&trn);
    oc_dataset_free(&val);
    oc_checkpoint_free(ck);
    rm_rf(tmp);
}

/* Baseline: Baseline, Baseline+T, ODIN, Energy, MaxLogit, Mahalanobis. */
Test(eval, end_to_end_baseline, .timeout = 240) { experiment("baseline", 6 * 2); }
Test(eval, end_to_end_binc, .timeout = 120) { experiment("binc", 2); }
Test(eval, end_to_end_viby, .timeout = 120) { experiment("viby", 2 * 2); }

/* `oodc run` at a tiny scale: one head, two methods, the fixture images
 * as photographs; the second call reuses the checkpoint, a third with
 * another number of epochs trains anew. */
Test(eval, run_reuses_checkpoints, .timeout = 240)
{
    mktmp();
    char runs[128], report[128], ck[192];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    snprintf(report, sizeof report, "%s/report", tmp);
    struct oc_run_cfg c;
    cr_assert(oc_run_cfg_preset("cpu", &c));
    c.runs_dir = runs;
    c.report_dir = report;
    c.photos = FIX "/images";
    c.epochs = 1;
    c.train_limit = 150;
    c.test_n = 100;
    c.tune_n = 20;
    c.fit_n = 150;
    c.ood_n = 60;
    c.heads = "baseline";
    c.methods = "baseline,energy";
    c.log = fopen("/dev/null", "w");
    c.tables = c.log;
    struct oc_err err = {0};
    int input_error = -1;
    cr_assert_eq(oc_run(&c, &input_error, &err), OC_OK, "%s", err.msg);
    snprintf(ck, sizeof ck, "%s/baseline/%s", runs, OC_CHECKPOINT_FILE);
    struct stat s1, s2;
    cr_assert_eq(stat(ck, &s1), 0);
    char p[192];
    snprintf(p, sizeof p, "%s/results.json", report);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    /* 4 OOD sets x 2 methods */
    int objs = 0;
    for (char *q = buf; (q = strchr(q, '{')); q++) objs++;
    cr_expect_eq(objs, 4 * 2, "%s", buf);
    cr_expect(strstr(buf, "\"ood\": \"photos-crop\"") && strstr(buf, "\"ood\": \"photos-resize\""));
    snprintf(p, sizeof p, "%s/index.html", report);
    cr_expect_eq(access(p, F_OK), 0);
    /* again: nothing is trained */
    sleep(1);
    cr_assert_eq(oc_run(&c, &input_error, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(stat(ck, &s2), 0);
    cr_expect_eq(s1.st_mtime, s2.st_mtime, "the checkpoint was rewritten");
    cr_expect_eq(s1.st_ino, s2.st_ino, "the checkpoint was replaced");
    /* another configuration: the old checkpoint is moved aside and a new
     * one trained */
    c.epochs = 2;
    cr_assert_eq(oc_run(&c, &input_error, &err), OC_OK, "%s", err.msg);
    char old[224];
    snprintf(old, sizeof old, "%s.old", ck);
    cr_expect_eq(access(old, F_OK), 0, "the mismatching checkpoint was not kept");
    struct oc_checkpoint *k;
    cr_assert_eq(oc_checkpoint_load(ck, &k, &err), OC_OK, "%s", err.msg);
    cr_expect_eq(k->epoch, 2);
    oc_checkpoint_free(k);
    /* bad input is reported as such */
    c.heads = "baseline,nope";
    cr_expect_neq(oc_run(&c, &input_error, &err), OC_OK);
    cr_expect(input_error);
    cr_expect(strstr(err.msg, "unknown head 'nope'"), "%s", err.msg);
    oc_err_clear(&err);
    c.heads = "baseline";
    c.photos = "/nonexistent/photos";
    cr_expect_neq(oc_run(&c, &input_error, &err), OC_OK);
    cr_expect(input_error);
    cr_expect(strstr(err.msg, "lomiri-wallpapers-16.04"), "%s", err.msg);
    fclose(c.log);
    rm_rf(tmp);
}
