/* cmd-compile.c - `oodc compile`: a checkpoint and a scorer become a
 * deployable artifact (scorer.h, libscorer.so, scorer.o, README,
 * CMakeLists.txt, scorer.pc, example.c) that a C program links without
 * oodc. ood/aot.c does the work; this file parses flags and, for the
 * Mahalanobis scorer, fits the class statistics on the training split the
 * way `oodc eval` does.
 *
 * Exit codes: 0 done; 2 usage or input error (bad flag, unknown scorer, a
 * checkpoint that cannot be read, --target cuda in a build without the
 * CUDA backend or where NVRTC cannot be loaded); 1 failure while building
 * (LLVM, NVRTC compiling a kernel, the C compiler, the file system).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/aot.h"
#include "../ood/eval.h"
#include "../ood/train.h"
#include "cli.h"

int oc_cmd_compile(int argc, char **argv);

static void compile_usage(FILE *f)
{
    fprintf(f,
            "usage: oodc compile --checkpoint FILE --scorer NAME [--T t] [--eps e]\n"
            "                    [--target cpu|cuda] [--batch N] --out DIR [options]\n"
            "\n"
            "Compiles the checkpoint's model and an OOD scorer ahead of time into DIR:\n"
            "scorer.h (the C API), libscorer.so and scorer.o (kernels, weights, runtime),\n"
            "README, CMakeLists.txt, scorer.pc and example.c. A C program then scores\n"
            "images with it without oodc; see DIR/README. The scores equal `oodc eval`'s.\n"
            "Target cuda: the same API; PTX kernels compiled by NVRTC, run through the\n"
            "CUDA driver API and cuBLAS (loaded with dlopen when the scorer is created).\n"
            "\n"
            "  --checkpoint FILE    a checkpoint written by oodc train (or oodc run)\n"
            "  --scorer NAME        one of:");
    for (int i = 0; oc_scorers[i]; i++) fprintf(f, " %s", oc_scorers[i]->name);
    fprintf(f,
            "\n"
            "  --T t                temperature of baseline+t and odin (default 1)\n"
            "  --eps e              input perturbation of odin and mahalanobis (default 0)\n"
            "  --target cpu|cuda    (default cpu)\n"
            "  --arch sm_XY         cuda: PTX for compute_XY, runs on sm_XY and newer\n"
            "                       (default sm_80)\n"
            "  --batch N            the most images per call (default 1)\n"
            "  --out DIR            output folder (created)\n"
            "  --native             generate the kernels for this machine's CPU (default:\n"
            "                       a portable x86-64-v3, i.e. AVX2 and FMA)\n"
            "  --cpu NAME           LLVM CPU name instead (x86-64-v2, skylake-avx512, ...)\n"
            "  --features STR       LLVM feature string with --cpu (e.g. +avx2,+fma)\n"
            "  --data SPEC          mahalanobis: training data for the class statistics\n"
            "                       (default: the checkpoint's)\n"
            "  --fit-n N            mahalanobis: statistics of N training images (default all)\n"
            "  --cc CMD             the C compiler that builds the runtime and links\n"
            "                       (default $CC, else cc)\n"
            "  --no-blas            plain loops instead of OpenBLAS for GEMM/convolution\n"
            "  --no-fusion          one kernel per primitive (for comparisons)\n"
            "  --keep-build         keep DIR/.oodc-build (plan.c, runtime source, objects)\n"
            "  --quiet              no progress output\n"
            "  -h, --help           show this help\n");
}

static int cparse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static enum oc_status compile_bind(void *ctx, struct oc_exec *ex, const struct oc_graph *g,
                                   struct oc_err *err)
{
    return oc_checkpoint_bind(ctx, ex, g, err);
}

/* The Mahalanobis class statistics as `oodc eval` fits them: the
 * trainer's training split of the data (checkpoint seed and limit), a
 * seeded subset of fit_n images, features of the model in test mode. */
static enum oc_status fit_stats(const struct oc_checkpoint *ck, const char *data, int64_t fit_n,
                                struct oc_class_stats *cs, struct oc_err *err)
{
    struct oc_dataset full, train, val, sub;
    memset(&full, 0, sizeof full);
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    memset(&sub, 0, sizeof sub);
    struct oc_head_vals v;
    memset(&v, 0, sizeof v);
    enum oc_status st = oc_train_data_load(data, 1, &full, err);
    if (!st) st = oc_train_data_split(&full, ck->train_limit, ck->seed, &train, &val, err);
    const struct oc_dataset *tr = &train;
    /* eval.c's subset(): seed 0x65766131 ^ 0x666974 */
    if (!st && fit_n > 0 && fit_n < train.n) {
        st = oc_data_split(&train, fit_n, 0x65766131ull ^ 0x666974ull, &sub, NULL, err);
        tr = &sub;
    }
    if (!st && !tr->labels) st = oc_err_set(err, OC_ERR_INVALID, "the training data %s has no labels", data);
    struct oc_eval_model m = {.name = ck->head, .cfg = ck->model, .bind = compile_bind, .bind_ctx = (void *)ck};
    struct oc_eval_opts o = oc_eval_opts_default();
    if (!st) st = oc_eval_forward(&m, tr->images, tr->n, OC_SC_FEATURES, &o, &v, err);
    if (!st)
        st = oc_class_stats_fit(v.features, tr->labels, tr->n, ck->model.hc.nclasses,
                                oc_wrn_features(&ck->model.wrn), cs, err);
    oc_head_vals_free(&v);
    oc_dataset_free(&sub);
    oc_dataset_free(&full);
    oc_dataset_free(&train);
    oc_dataset_free(&val);
    return st;
}

int oc_cmd_compile(int argc, char **argv)
{
    const char *ck_path = NULL, *out = NULL, *data = NULL;
    int quiet = 0, have_T = 0, have_eps = 0;
    int64_t fit_n = 0;
    struct oc_aot_opts o = oc_aot_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int missing = 0;
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            compile_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--native")) {
            o.native = 1;
        } else if (!strcmp(a, "--no-blas")) {
            o.blas = 0;
        } else if (!strcmp(a, "--no-fusion")) {
            o.fusion = 0;
        } else if (!strcmp(a, "--keep-build")) {
            o.keep_build = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--checkpoint", &v, &missing)) {
            ck_path = v;
        } else if (oc_cli_flag(argc, argv, &i, "--scorer", &v, &missing)) {
            o.scorer = v;
        } else if (oc_cli_flag(argc, argv, &i, "--out", &v, &missing)) {
            out = v;
        } else if (oc_cli_flag(argc, argv, &i, "--target", &v, &missing)) {
            o.target = v;
        } else if (oc_cli_flag(argc, argv, &i, "--arch", &v, &missing)) {
            o.arch = v;
        } else if (oc_cli_flag(argc, argv, &i, "--cpu", &v, &missing)) {
            o.cpu = v;
        } else if (oc_cli_flag(argc, argv, &i, "--features", &v, &missing)) {
            o.features = v;
        } else if (oc_cli_flag(argc, argv, &i, "--data", &v, &missing)) {
            data = v;
        } else if (oc_cli_flag(argc, argv, &i, "--cc", &v, &missing)) {
            o.cc = v;
        } else if (oc_cli_flag(argc, argv, &i, "--T", &v, &missing)) {
            if (!missing && (cparse_double(v, &o.T) || !(o.T > 0) || o.T > 1e30))
                return oc_cli_usage_error("compile", "--T: '%s' is not a temperature > 0", v);
            have_T = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--eps", &v, &missing)) {
            if (!missing && (cparse_double(v, &o.eps) || !(o.eps >= 0) || o.eps > 1e30))
                return oc_cli_usage_error("compile", "--eps: '%s' is not a perturbation >= 0", v);
            have_eps = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--batch", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 1 << 16, &n))
                return oc_cli_usage_error("compile", "--batch: '%s' is not a batch size (1..65536)", v);
            o.batch = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--fit-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, INT64_MAX, &n))
                return oc_cli_usage_error("compile", "--fit-n: '%s' is not a positive number", v);
            fit_n = n;
        } else {
            fprintf(stderr, "oodc compile: unknown option '%s'\n\n", a);
            compile_usage(stderr);
            return 2;
        }
        if (missing) return oc_cli_usage_error("compile", "%s needs a value", a);
    }
    if (!ck_path) return oc_cli_usage_error("compile", "--checkpoint FILE is required");
    if (!o.scorer) return oc_cli_usage_error("compile", "--scorer NAME is required");
    if (!out) return oc_cli_usage_error("compile", "--out DIR is required");
    if (strcmp(o.target, "cpu") && strcmp(o.target, "cuda"))
        return oc_cli_usage_error("compile", "--target: '%s' is not cpu or cuda", o.target);
    int cuda = !strcmp(o.target, "cuda");
    if (cuda && (o.native || o.cpu || o.features || !o.blas))
        return oc_cli_usage_error("compile", "--native, --cpu, --features and --no-blas are for --target cpu");
    if (o.arch && !cuda) return oc_cli_usage_error("compile", "--arch is for --target cuda");
    if (cuda) {
        struct oc_err e = {0};
        int sm = 0;
        if (oc_aot_cuda_arch(o.arch, &sm, &e) || oc_aot_cuda_check(sm, NULL, 0, &e))
            return oc_cli_usage_error("compile", "%s", e.msg);
    }
    if (o.native && (o.cpu || o.features))
        return oc_cli_usage_error("compile", "--native and --cpu/--features exclude each other");
    const struct oc_scorer *s = oc_scorer_find(o.scorer);
    if (!s) {
        char all[512] = "";
        for (int i = 0; oc_scorers[i]; i++) {
            if (i) strncat(all, ", ", sizeof all - strlen(all) - 1);
            strncat(all, oc_scorers[i]->name, sizeof all - strlen(all) - 1);
        }
        return oc_cli_usage_error("compile", "unknown scorer '%s' (known: %s)", o.scorer, all);
    }
    if (have_T && !(s->flags & OC_SC_TUNE_T))
        return oc_cli_usage_error("compile", "--T: scorer %s has no temperature", s->name);
    if (have_eps && !(s->flags & OC_SC_TUNE_EPS))
        return oc_cli_usage_error("compile", "--eps: scorer %s has no input perturbation", s->name);
    if (!(s->needs & OC_SC_FEATURES) && (data || fit_n))
        return oc_cli_usage_error("compile", "--data/--fit-n: only the mahalanobis scorer uses them");
    if (!quiet && (s->flags & OC_SC_TUNE_T) && !have_T)
        fprintf(stderr, "oodc compile: note: no --T given, %s uses T = 1\n", s->name);
    if (!quiet && (s->flags & OC_SC_TUNE_EPS) && !have_eps)
        fprintf(stderr, "oodc compile: note: no --eps given, %s uses eps = 0 (no perturbation)\n", s->name);

    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    if (oc_checkpoint_load(ck_path, &ck, &err)) return oc_cli_usage_error("compile", "%s", err.msg);
    int rc = 2;
    struct oc_class_stats cs;
    memset(&cs, 0, sizeof cs);
    if (!oc_scorer_applies(s, ck->model.head->name)) {
        oc_cli_usage_error("compile", "scorer %s applies to the %s head; %s has head %s", s->name,
                           s->heads, ck_path, ck->model.head->name);
        goto done;
    }
    if (s->needs & OC_SC_FEATURES) {
        if (!data) data = ck->data[0] ? ck->data : NULL;
        if (!data) {
            oc_cli_usage_error("compile", "%s does not name its training data: give --data SPEC", ck_path);
            goto done;
        }
        if (!quiet) fprintf(stderr, "oodc compile: class statistics of the training split of %s\n", data);
        if (fit_stats(ck, data, fit_n, &cs, &err)) {
            oc_cli_usage_error("compile", "class statistics: %s", err.msg);
            goto done;
        }
        o.cs = &cs;
    }
    o.ck = ck;
    o.log = quiet ? NULL : stderr;
    struct oc_aot_result res;
    enum oc_status st = oc_aot_compile(&o, out, &res, &err);
    if (st) {
        int input = st == OC_ERR_INVALID || st == OC_ERR_UNSUPPORTED || st == OC_ERR_SHAPE ||
                    st == OC_ERR_DTYPE || st == OC_ERR_PARSE;
        if (input) oc_cli_usage_error("compile", "%s", err.msg);
        else fprintf(stderr, "oodc compile: %s\n", err.msg), rc = 1;
        goto done;
    }
    if (!quiet)
        fprintf(stderr,
                "oodc compile: %s for batch %d: %d program(s), %d kernel(s) per call (%d generated), "
                "%zu bytes of weights; see %s/README\n",
                s->name, o.batch, res.nprog, res.nkernels, res.nloop, res.blob_bytes, out);
    rc = 0;
done:
    oc_class_stats_free(&cs);
    oc_checkpoint_free(ck);
    return rc;
}
