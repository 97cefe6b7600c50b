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
 * generated example builds and runs, and the CLI's usage errors. The
 * fixtures are in aot-util.h (shared with test-aot-cuda.c). */
#include "aot-util.h"

#include "../../cli/cmd-compile.c"

/* The cpu runtime's parallel paths: three threads, and every one-image
 * convolution split over them, whatever the machine. */
static void run_program(const char *dir, const float *x, int first, int batch, double *scores, int *pred)
{
    char why[512] = "";
    cr_assert(run_program_env(dir, x, first, batch, "OC_SCORER_THREADS=3 OC_SCORER_SPLIT_FLOPS=0", scores,
                              pred, why, sizeof why),
              "oc_scorer_create failed: %s", why);
}

static void expect_close(const char *what, const double *got, const int *gpred, const double *want,
                         const int *wpred)
{
    expect_close_tol(what, got, gpred, want, wpred, 1e-5);
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
    static const char *const names[4] = {"aot-rt.h", "aot-rt-api.h", "aot-rt.c", "aot-rt-cuda.c"};
    const char *blobs[4] = {oc_aot_rt_h, oc_aot_rt_api_h, oc_aot_rt_c, oc_aot_rt_cuda_c};
    for (int i = 0; i < 4; i++) {
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
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--arch", "sm_80", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "--arch is for --target cuda");
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
