/* aot-util.h - what the tests of `oodc compile` share (test-aot.c for the
 * cpu target, test-aot-cuda.c for the cuda target): a tiny trained
 * checkpoint, test images (in- and out-of-distribution), the reference
 * scores from `oodc eval`'s JIT pieces, and a C program built with `cc`
 * against an artifact's libscorer.so that scores the images and probes
 * every error code. */
#ifndef OODC_TESTS_OOD_AOT_UTIL_H
#define OODC_TESTS_OOD_AOT_UTIL_H

#include "train-util.h"

#include <math.h>

#include "../../cli/cli.h"
#include "../../ood/aot.h"
#include "../../ood/eval.h"
#include "../../ood/train.h"
#include "../helpers/helpers.h"

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
    "    if (!s) { printf(\"create_failed %s\\n\", oc_scorer_error(NULL)); return 0; }\n"
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
 * images, first call `first` images; `env` a prefix of variable
 * assignments for the command) and parses its output. Returns 1 when it
 * scored, 0 when oc_scorer_create returned NULL (the reason in why). */
static int run_program_env(const char *dir, const float *x, int first, int batch, const char *env,
                           double *scores, int *pred, char *why, size_t nwhy)
{
    char *src = tu_join(dir, "prog.c"), *bin = tu_join(dir, "prog"), *img = tu_join(dir, "images.f32");
    tu_write(src, prog_src, strlen(prog_src));
    tu_write(img, x, sizeof(float) * NIMG * 784);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cc -std=c11 -Wall -Wextra -Werror %s -I%s -L%s -lscorer -Wl,-rpath,%s -o %s",
             src, dir, dir, dir, bin);
    cr_assert_eq(sh(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s %s %s %d %d", env, bin, img, NIMG, first);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    char line[512];
    int nscore = 0, seen = 0, failed = 0;
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
        } else if (!strncmp(line, "create_failed ", 14)) {
            snprintf(why, nwhy, "%s", line + 14);
            failed = 1;
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
    free(src);
    free(bin);
    free(img);
    if (failed) return 0;
    cr_assert_eq(nscore, NIMG);
    cr_assert_eq(seen, 9);
    return 1;
}

static void expect_close_tol(const char *what, const double *got, const int *gpred, const double *want,
                             const int *wpred, double rel)
{
    for (int i = 0; i < NIMG; i++) {
        if (getenv("OC_TEST_VERBOSE"))
            fprintf(stderr, "%s %2d: compiled %.9g eval %.9g (diff %.2g) class %d %d\n", what, i, got[i],
                    want[i], got[i] - want[i], gpred[i], wpred[i]);
        double tol = rel * fmax(1.0, fabs(want[i]));
        cr_expect(fabs(got[i] - want[i]) <= tol, "%s: image %d: compiled %.9g, eval %.9g", what, i,
                  got[i], want[i]);
        cr_expect_eq(gpred[i], wpred[i], "%s: image %d: class %d vs %d", what, i, gpred[i], wpred[i]);
    }
}

/* `oodc compile` with these arguments exits 2 with a message containing needle. */
static void expect_usage(char **argv, int argc, const char *needle)
{
    char *out, *errs;
    int rc = tu_capture(oc_cmd_compile, argc, argv, &out, &errs);
    cr_expect_eq(rc, 2, "exit %d for %s (%s)", rc, argv[argc - 1], errs);
    cr_expect(strstr(errs, needle), "message '%s' lacks '%s'", errs, needle);
    free(out);
    free(errs);
}

#endif
