/* test-aot.c - ahead-of-time compiled scorers (ood/aot.c, `oodc compile`).
 *
 * End to end: a tiny WRN-10-1 is trained on a synthetic Fashion-MNIST
 * (train-util.h), a scorer is compiled, a C program is built against the
 * artifact with `cc`, and its scores and predicted classes for 12 images
 * must equal what `oodc eval`'s JIT pieces give for the same images
 * (oc_eval_forward / oc_eval_perturb + the score graphs) within 1e-5
 * (relative for scores beyond 1 in magnitude). Covered: Baseline+T at
 * batch 8 called with 4 then 8 images (a batch smaller than --batch), ODIN
 * at batch 1 (two programs: gradient pass, perturbed scoring pass; the
 * runtime's one-image convolution paths, forced on three threads),
 * Mahalanobis with eps through the CLI (class statistics fitted as eval
 * fits them) and VIB (a sampling head: Philox in the artifact's runtime).
 * The program also checks the error codes for NULL pointers, n < 0,
 * n > batch and a NaN pixel, and the header's constants. Also: two
 * compilations give byte-identical files, the embedded runtime source
 * matches runtime/aot-rt/, the runtime and plan compile warning-free, the
 * generated example builds and runs, and the CLI's usage errors. */
#include "train-util.h"

#include <math.h>

#include "../../ood/aot.h"
#include "../../ood/eval.h"
#include "../../ood/train.h"
#include "../helpers/helpers.h"

#include "../../cli/cmd-compile.c"

#define B 8  /* the compiled batch */
#define NIMG 12

/* ---------------------------------------------------------------- fixtures */

static char data_spec[600];

/* A trained checkpoint of the head in a fresh folder; returns its path. */
static char *train_checkpoint(const char *head, char **data_dir, char **out_dir)
{
    *data_dir = tu_fake_fashion(200, 24);
    *out_dir = tu_tmpdir();
    snprintf(data_spec, sizeof data_spec, "fashion-mnist:%s", *data_dir);
    struct oc_train_cfg c = oc_train_cfg_default();
    c.model = "wrn-10-1";
    c.head = head;
    c.data = data_spec;
    c.out_dir = *out_dir;
    c.batch = 32;
    c.train_limit = 192; /* 6 steps */
    c.epochs = 1;
    c.lr = 0.05;
    c.seed = 5;
    c.quiet = 1;
    c.threads = 1;
    c.augment = 0;
    struct oc_train_result r;
    struct oc_err err = {0};
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    return tu_join(*out_dir, OC_CHECKPOINT_FILE);
}

static struct oc_checkpoint *load_ck(const char *path)
{
    struct oc_checkpoint *ck = NULL;
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_load(path, &ck, &err), OC_OK, "%s", err.msg);
    return ck;
}

/* NIMG images: the synthetic test split, with every third image replaced
 * by uniform noise (out-of-distribution inputs). */
static float *test_images(const char *data_dir)
{
    struct oc_dataset ds, noise;
    struct oc_err err = {0};
    char spec[600];
    snprintf(spec, sizeof spec, "fashion-mnist:%s", data_dir);
    cr_assert_eq(oc_train_data_load(spec, 0, &ds, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_data_noise(OC_NOISE_UNIFORM, NIMG, 1, 28, 28, 7, &noise, &err), OC_OK, "%s", err.msg);
    float *x = malloc(sizeof(float) * NIMG * 784);
    cr_assert(x && ds.n >= NIMG);
    for (int i = 0; i < NIMG; i++)
        memcpy(x + i * 784, (i % 3 == 2 ? noise.images : ds.images) + i * 784, sizeof(float) * 784);
    oc_dataset_free(&ds);
    oc_dataset_free(&noise);
    return x;
}

static enum oc_status bind_ck(void *ctx, struct oc_exec *ex, const struct oc_graph *g, struct oc_err *err)
{
    return oc_checkpoint_bind(ctx, ex, g, err);
}

/* The reference: eval's JIT pieces at batch B. */
static void eval_scores(struct oc_checkpoint *ck, const char *scorer, double T, double eps,
                        const struct oc_class_stats *cs, const float *x, double *scores, int *pred)
{
    struct oc_err err = {0};
    const struct oc_scorer *s = oc_scorer_find(scorer);
    cr_assert(s);
    struct oc_eval_model m = {.name = ck->head, .cfg = ck->model, .bind = bind_ck, .bind_ctx = ck};
    struct oc_eval_opts o = oc_eval_opts_default();
    o.batch = B;
    struct oc_head_vals plain, pert;
    memset(&pert, 0, sizeof pert);
    cr_assert_eq(oc_eval_forward(&m, x, NIMG, s->needs, &o, &plain, &err), OC_OK, "%s", err.msg);
    const struct oc_head_vals *v = &plain;
    if ((s->flags & OC_SC_TUNE_EPS) && eps != 0) {
        float *xp = malloc(sizeof(float) * NIMG * 784);
        cr_assert(xp);
        cr_assert_eq(oc_eval_perturb(&m, s, cs, x, NIMG, T, eps, &o, xp, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_eval_forward(&m, xp, NIMG, s->needs, &o, &pert, &err), OC_OK, "%s", err.msg);
        v = &pert;
        free(xp);
    }
    struct oc_score_exec *se;
    cr_assert_eq(oc_score_exec_new(s, &v->d, 500, cs, "cpu", NULL, &se, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_score_exec_run(se, v, T, scores, &err), OC_OK, "%s", err.msg);
    oc_score_exec_free(se);
    for (int i = 0; i < NIMG; i++) {
        const float *l = plain.logits + i * plain.d.k;
        int best = 0;
        for (int k = 1; k < plain.d.k; k++)
            if (l[k] > l[best]) best = k;
        pred[i] = best;
    }
    oc_head_vals_free(&plain);
    oc_head_vals_free(&pert);
}

/* The class statistics as eval fits them (and as `oodc compile` does). */
static void fit_class_stats(struct oc_checkpoint *ck, struct oc_class_stats *cs)
{
    struct oc_err err = {0};
    struct oc_dataset full, train, val;
    cr_assert_eq(oc_train_data_load(ck->data, 1, &full, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_train_data_split(&full, ck->train_limit, ck->seed, &train, &val, &err), OC_OK, "%s", err.msg);
    struct oc_eval_model m = {.name = ck->head, .cfg = ck->model, .bind = bind_ck, .bind_ctx = ck};
    struct oc_eval_opts o = oc_eval_opts_default();
    struct oc_head_vals v;
    cr_assert_eq(oc_eval_forward(&m, train.images, train.n, OC_SC_FEATURES, &o, &v, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_class_stats_fit(v.features, train.labels, train.n, ck->model.hc.nclasses,
                                    oc_wrn_features(&ck->model.wrn), cs, &err),
                 OC_OK, "%s", err.msg);
    oc_head_vals_free(&v);
    oc_dataset_free(&full);
    oc_dataset_free(&train);
    oc_dataset_free(&val);
}

/* ---------------------------------------------------------------- the C program */

static const char *const prog_src =
    "#include <math.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"scorer.h\"\n"
    "#define ISZ (OC_SCORER_C * OC_SCORER_H * OC_SCORER_W)\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "    if (argc != 4) return 2;\n"
    "    int n = atoi(argv[2]), first = atoi(argv[3]);\n"
    "    float *x = malloc(sizeof(float) * ISZ * n);\n"
    "    FILE *f = fopen(argv[1], \"rb\");\n"
    "    if (!f || fread(x, sizeof(float) * ISZ, n, f) != (size_t)n) return 3;\n"
    "    fclose(f);\n"
    "    struct oc_scorer *s = oc_scorer_create();\n"
    "    if (!s) return 4;\n"
    "    float sc[OC_SCORER_MAX_BATCH + 1];\n"
    "    int cl[OC_SCORER_MAX_BATCH + 1];\n"
    "    for (int off = 0; off < n;) {\n"
    "        int m = off == 0 ? first : n - off;\n"
    "        if (m > OC_SCORER_MAX_BATCH) m = OC_SCORER_MAX_BATCH;\n"
    "        int rc = oc_scorer_score(s, x + (size_t)off * ISZ, m, sc, cl);\n"
    "        if (rc) { printf(\"error %d %s\\n\", rc, oc_scorer_error(s)); return 5; }\n"
    "        for (int i = 0; i < m; i++) printf(\"score %d %.9g %d\\n\", off + i, sc[i], cl[i]);\n"
    "        off += m;\n"
    "    }\n"
    "    /* bad inputs: codes, messages, outputs untouched */\n"
    "    sc[0] = 42;\n"
    "    printf(\"null_images %d\\n\", oc_scorer_score(s, NULL, 1, sc, cl));\n"
    "    printf(\"null_scores %d\\n\", oc_scorer_score(s, x, 1, NULL, cl));\n"
    "    printf(\"negative %d\\n\", oc_scorer_score(s, x, -1, sc, cl));\n"
    "    printf(\"too_many %d %s\\n\", oc_scorer_score(s, x, OC_SCORER_MAX_BATCH + 1, sc, cl), oc_scorer_error(s));\n"
    "    x[5] = NAN;\n"
    "    printf(\"nan %d\\n\", oc_scorer_score(s, x, 1, sc, cl));\n"
    "    printf(\"null_scorer %d %d\\n\", oc_scorer_score(NULL, x, 1, sc, cl), oc_scorer_error(NULL)[0] != 0);\n"
    "    printf(\"untouched %g\\n\", sc[0]);\n"
    "    printf(\"zero %d\\n\", oc_scorer_score(s, x, 0, sc, NULL));\n"
    "    printf(\"consts %d %d %d %d %d\\n\", OC_SCORER_C, OC_SCORER_H, OC_SCORER_W, OC_SCORER_MAX_BATCH, OC_SCORER_CLASSES);\n"
    "    oc_scorer_destroy(s);\n"
    "    oc_scorer_destroy(NULL);\n"
    "    return 0;\n"
    "}\n";

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

/* Builds the program against dir's libscorer.so, runs it on x (NIMG
 * images, first call `first` images) and parses its output. */
static void run_program(const char *dir, const float *x, int first, int batch, double *scores, int *pred)
{
    char *src = tu_join(dir, "prog.c"), *bin = tu_join(dir, "prog"), *img = tu_join(dir, "images.f32");
    tu_write(src, prog_src, strlen(prog_src));
    tu_write(img, x, sizeof(float) * NIMG * 784);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cc -std=c11 -Wall -Wextra -Werror %s -I%s -L%s -lscorer -Wl,-rpath,%s -o %s",
             src, dir, dir, dir, bin);
    cr_assert_eq(sh(cmd), 0, "%s", cmd);
    /* three threads, and every one-image convolution split over them: the
     * runtime's parallel paths run whatever the machine */
    snprintf(cmd, sizeof cmd, "OC_SCORER_THREADS=3 OC_SCORER_SPLIT_FLOPS=0 %s %s %d %d", bin, img,
             NIMG, first);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    char line[512];
    int nscore = 0, seen = 0;
    while (fgets(line, sizeof line, p)) {
        int i, c, code, flag;
        double v;
        char msg[400];
        if (sscanf(line, "score %d %lf %d", &i, &v, &c) == 3) {
            cr_assert(i >= 0 && i < NIMG);
            scores[i] = v, pred[i] = c, nscore++;
        } else if (sscanf(line, "null_images %d", &code) == 1) {
            cr_expect_eq(code, -1, "NULL images");
            seen++;
        } else if (sscanf(line, "null_scores %d", &code) == 1) {
            cr_expect_eq(code, -1, "NULL scores");
            seen++;
        } else if (sscanf(line, "negative %d", &code) == 1) {
            cr_expect_eq(code, -1, "n < 0");
            seen++;
        } else if (sscanf(line, "too_many %d %399[^\n]", &code, msg) == 2) {
            cr_expect_eq(code, -2, "n > batch");
            char want[64];
            snprintf(want, sizeof want, "larger than the compiled batch %d", batch);
            cr_expect(strstr(msg, want), "%s", msg);
            seen++;
        } else if (sscanf(line, "nan %d", &code) == 1) {
            cr_expect_eq(code, -3, "a NaN pixel");
            seen++;
        } else if (sscanf(line, "null_scorer %d %d", &code, &flag) == 2) {
            cr_expect(code == -1 && flag, "NULL scorer");
            seen++;
        } else if (sscanf(line, "untouched %lf", &v) == 1) {
            cr_expect_eq(v, 42.0, "scores written by a failed call");
            seen++;
        } else if (sscanf(line, "zero %d", &code) == 1) {
            cr_expect_eq(code, 0, "n = 0");
            seen++;
        } else if (!strncmp(line, "consts ", 7)) {
            char want[64];
            snprintf(want, sizeof want, "consts 1 28 28 %d 10\n", batch);
            cr_expect(!strcmp(line, want), "%s", line);
            seen++;
        } else {
            cr_assert_fail("unexpected output: %s", line);
        }
    }
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    cr_assert_eq(nscore, NIMG);
    cr_assert_eq(seen, 9);
    free(src);
    free(bin);
    free(img);
}

static void expect_close(const char *what, const double *got, const int *gpred, const double *want,
                         const int *wpred)
{
    for (int i = 0; i < NIMG; i++) {
        if (getenv("OC_TEST_VERBOSE"))
            fprintf(stderr, "%s %2d: compiled %.9g eval %.9g (diff %.2g) class %d %d\n", what, i, got[i],
                    want[i], got[i] - want[i], gpred[i], wpred[i]);
        double tol = 1e-5 * fmax(1.0, fabs(want[i]));
        cr_expect(fabs(got[i] - want[i]) <= tol, "%s: image %d: compiled %.9g, eval %.9g", what, i,
                  got[i], want[i]);
        cr_expect_eq(gpred[i], wpred[i], "%s: image %d: class %d vs %d", what, i, gpred[i], wpred[i]);
    }
}

/* Compiles through the library, runs the program, compares with eval. */
static void check_scorer(struct oc_checkpoint *ck, const char *scorer, double T, double eps,
                         const struct oc_class_stats *cs, const float *x, const char *dir, int batch,
                         int first)
{
    struct oc_aot_opts o = oc_aot_opts_default();
    o.ck = ck;
    o.scorer = scorer;
    o.T = T;
    o.eps = eps;
    o.batch = batch;
    o.cs = cs;
    struct oc_aot_result r;
    struct oc_err err = {0};
    cr_assert_eq(oc_aot_compile(&o, dir, &r, &err), OC_OK, "%s", err.msg);
    cr_expect_eq(r.nprog, eps != 0 ? 2 : 1);
    cr_expect(r.nkernels > 5 && r.nloop > 0 && r.blob_bytes > 0);
    double got[NIMG], want[NIMG];
    int gp[NIMG], wp[NIMG];
    run_program(dir, x, first, batch, got, gp);
    eval_scores(ck, scorer, T, eps, cs, x, want, wp);
    expect_close(scorer, got, gp, want, wp);
}

/* ---------------------------------------------------------------- tests */

Test(aot, runtime_blob_is_current)
{
    static const char *const names[2] = {"aot-rt.h", "aot-rt.c"};
    const char *blobs[2] = {oc_aot_rt_h, oc_aot_rt_c};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/runtime/aot-rt/%s", OC_SOURCE_DIR, names[i]);
        size_t n;
        char *text = (char *)tu_read(path, &n);
        cr_assert(text, "cannot read %s", path);
        text[n] = 0;
        cr_expect(!strcmp(text, blobs[i]), "%s changed: run sh runtime/aot-rt/embed.sh", names[i]);
        free(text);
    }
}

Test(aot, baseline_head_scorers_match_eval, .timeout = 180)
{
    char *data, *run;
    char *ckp = train_checkpoint("baseline", &data, &run);
    struct oc_checkpoint *ck = load_ck(ckp);
    float *x = test_images(data);
    char *d1 = tu_join(run, "baseline-t"), *d2 = tu_join(run, "odin");
    check_scorer(ck, "baseline+t", 10, 0, NULL, x, d1, B, 4); /* a call of 4, then of 8 */
    /* batch 1: the runtime's one-image paths (GEMMs split by columns) */
    check_scorer(ck, "odin", 1000, 0.002, NULL, x, d2, 1, 1);

    /* reproducible: the same inputs again give byte-identical files */
    char *d3 = tu_join(run, "odin-again");
    struct oc_aot_opts o = oc_aot_opts_default();
    o.ck = ck, o.scorer = "odin", o.T = 1000, o.eps = 0.002, o.batch = 1, o.keep_build = 1;
    struct oc_err err = {0};
    cr_assert_eq(oc_aot_compile(&o, d3, NULL, &err), OC_OK, "%s", err.msg);
    static const char *const files[] = {"scorer.h", "libscorer.so", "scorer.o", "README",
                                        "CMakeLists.txt", "scorer.pc", "example.c", NULL};
    for (int i = 0; files[i]; i++) {
        char *a = tu_join(d2, files[i]), *b = tu_join(d3, files[i]);
        cr_expect(tu_same_file(a, b), "%s differs between two compilations", files[i]);
        free(a);
        free(b);
    }
    /* the runtime compiles without a warning; the example builds and runs */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s/.oodc-build && cc -std=c11 -Wall -Wextra -Wshadow -Werror -c aot-rt.c -o /dev/null && "
             "cc -std=c11 -Wall -Wextra -Werror -c plan.c -o /dev/null && cd .. && "
             "cc -std=c11 -Wall -Wextra -Werror example.c -I. -L. -lscorer -Wl,-rpath,%s -o example && "
             "./example > example.out",
             d3, d3);
    cr_assert_eq(sh(cmd), 0, "%s", cmd);
    free(d3);

    /* Mahalanobis through the CLI: statistics fitted on the training split */
    struct oc_class_stats cs;
    fit_class_stats(ck, &cs);
    char *d4 = tu_join(run, "maha");
    char *argv[] = {"compile", "--checkpoint", ckp, "--scorer", "mahalanobis", "--eps", "0.001",
                    "--batch", "8", "--out", d4, "--quiet", NULL};
    char *out, *errs;
    int rc = tu_capture(oc_cmd_compile, 12, argv, &out, &errs);
    cr_assert_eq(rc, 0, "oodc compile: %s", errs);
    free(out);
    free(errs);
    double got[NIMG], want[NIMG];
    int gp[NIMG], wp[NIMG];
    run_program(d4, x, 8, B, got, gp);
    eval_scores(ck, "mahalanobis", 1, 0.001, &cs, x, want, wp);
    expect_close("mahalanobis", got, gp, want, wp);
    oc_class_stats_free(&cs);
    free(d4);

    free(d1);
    free(d2);
    free(x);
    oc_checkpoint_free(ck);
    free(ckp);
    tu_rmtree(run);
    tu_rmtree(data);
    free(run);
    free(data);
}

Test(aot, vib_matches_eval, .timeout = 120)
{
    char *data, *run;
    char *ckp = train_checkpoint("vib", &data, &run);
    struct oc_checkpoint *ck = load_ck(ckp);
    float *x = test_images(data);
    char *d = tu_join(run, "vib");
    /* calls of 8 and 4 as eval's batches: the head samples z per batch position */
    check_scorer(ck, "vib", 1, 0, NULL, x, d, B, 8);
    free(d);
    free(x);
    oc_checkpoint_free(ck);
    free(ckp);
    tu_rmtree(run);
    tu_rmtree(data);
    free(run);
    free(data);
}

static void expect_usage(char **argv, int argc, const char *needle)
{
    char *out, *errs;
    int rc = tu_capture(oc_cmd_compile, argc, argv, &out, &errs);
    cr_expect_eq(rc, 2, "exit %d for %s (%s)", rc, argv[argc - 1], errs);
    cr_expect(strstr(errs, needle), "message '%s' lacks '%s'", errs, needle);
    free(out);
    free(errs);
}

Test(aot, cli_usage_errors)
{
    {
        char *a[] = {"compile", "--scorer", "odin", "--out", "/tmp/x", NULL};
        expect_usage(a, 5, "--checkpoint FILE is required");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin2", "--out", "/tmp/x", NULL};
        expect_usage(a, 7, "unknown scorer 'odin2'");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "baseline", "--T", "2", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "scorer baseline has no temperature");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--T", "-1", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "--T: '-1'");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--batch", "0", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "--batch: '0'");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "cuda", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "--target cuda: not built yet");
    }
    {
        char *a[] = {"compile", "--checkpoint", "/nonexistent/oc.safetensors", "--scorer", "odin", "--out", "/tmp/x", "--quiet", NULL};
        expect_usage(a, 8, "/nonexistent/oc.safetensors");
    }
    {
        char *a[] = {"compile", "--bogus", NULL};
        expect_usage(a, 2, "unknown option '--bogus'");
    }
}
