/* cmd-eval.c - `oodc eval`: scores a checkpoint's in-distribution test set
 * and the given OOD sets with every applicable scorer (or those named),
 * tunes T and eps on the validation splits, prints Table 1 and writes
 * DIR/results.json (plus results.md, results.csv, index.html) and the
 * per-image test scores DIR/scores/<method>/<ood>-{in,out}.npy.
 * ood/eval.c does the work.
 *
 * Exit codes: 0 done; 2 usage or input error (bad flag, unknown method or
 * OOD spec, unreadable data, a checkpoint that does not fit its model, NaN
 * scores); 1 failure while running.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/eval.h"
#include "../ood/train.h"
#include "cli.h"


static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc eval --checkpoint FILE --ood NAME=SPEC [--ood NAME=SPEC ...] --out DIR\n"
            "                 [--method NAME,...] [options]\n"
            "\n"
            "Scores the checkpoint's in-distribution test split and every OOD set with\n"
            "each method, tunes T and eps per OOD set on its validation split (the\n"
            "in-distribution validation split is the trainer's held-out one) to minimize\n"
            "FPR at 95%% TPR, and reports FPR95, detection error, AUROC, AUPR-In and\n"
            "AUPR-Out (percent) in DIR/results.json, with per-image scores as .npy.\n"
            "\n"
            "  --checkpoint FILE    a checkpoint written by oodc train (or oodc run)\n"
            "  --ood NAME=SPEC      an OOD set (repeat the flag); SPEC is one of\n"
            "                         gaussian | uniform          1500 generated images\n"
            "                         idx:PATH[,val=PATH]          IDX images\n"
            "                         cifar:PATH[,val=PATH]        CIFAR-10 binary records\n"
            "                         folder:DIR:crop|resize       PNG/JPEG folder, random\n"
            "                                                      crops or downsampled\n"
            "                       without val= a seeded 1500 images are split 1000 test\n"
            "                       / 500 validation\n"
            "  --out DIR            output folder (created)\n"
            "  --method LIST        comma-separated methods (default: all for the head):\n"
            "                      ");
    for (int i = 0; oc_scorers[i]; i++) fprintf(f, " %s", oc_scorers[i]->name);
    fprintf(f,
            "\n"
            "  --data SPEC          in-distribution data (default: the checkpoint's)\n"
            "  --device cpu|cuda    (default cpu)\n"
            "  --batch N            images per forward pass (default 250)\n"
            "  --test-n N           score a seeded subset of N test images (default all)\n"
            "  --tune-n N           tune on at most N validation images per set (default all)\n"
            "  --fit-n N            Mahalanobis statistics from N training images (default all)\n"
            "  --seed S             noise and splits of the OOD sets (default 0)\n"
            "  --quiet              no progress output\n"
            "  -h, --help           show this help\n");
}

static enum oc_status bind_checkpoint(void *ctx, struct oc_exec *ex, const struct oc_graph *g,
                                      struct oc_err *err)
{
    return oc_checkpoint_bind(ctx, ex, g, err);
}

#define MAX_OOD 32

int oc_cmd_eval(int argc, char **argv)
{
    const char *ck_path = NULL, *out = NULL, *methods = NULL, *data = NULL;
    const char *ood_specs[MAX_OOD];
    int nood = 0, quiet = 0;
    int64_t test_n = 0;
    uint64_t seed = 0;
    struct oc_eval_opts o = oc_eval_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int missing = 0;
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--checkpoint", &v, &missing)) {
            ck_path = v;
        } else if (oc_cli_flag(argc, argv, &i, "--out", &v, &missing)) {
            out = v;
        } else if (oc_cli_flag(argc, argv, &i, "--method", &v, &missing) ||
                   oc_cli_flag(argc, argv, &i, "--methods", &v, &missing)) {
            methods = v;
        } else if (oc_cli_flag(argc, argv, &i, "--data", &v, &missing)) {
            data = v;
        } else if (oc_cli_flag(argc, argv, &i, "--device", &v, &missing)) {
            o.device = v;
        } else if (oc_cli_flag(argc, argv, &i, "--ood", &v, &missing)) {
            if (!missing && nood == MAX_OOD)
                return oc_cli_usage_error("eval", "at most %d OOD sets", MAX_OOD);
            if (!missing) ood_specs[nood++] = v;
        } else if (oc_cli_flag(argc, argv, &i, "--batch", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 1 << 16, &n))
                return oc_cli_usage_error("eval", "--batch: '%s' is not a batch size (1..65536)", v);
            o.batch = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--test-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, INT64_MAX, &n))
                return oc_cli_usage_error("eval", "--test-n: '%s' is not a positive number", v);
            test_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--tune-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, INT64_MAX, &n))
                return oc_cli_usage_error("eval", "--tune-n: '%s' is not a positive number", v);
            o.tune_in_n = o.tune_ood_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--fit-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, INT64_MAX, &n))
                return oc_cli_usage_error("eval", "--fit-n: '%s' is not a positive number", v);
            o.fit_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--seed", &v, &missing)) {
            char *end;
            errno = 0;
            unsigned long long s = missing ? 0 : strtoull(v, &end, 10);
            if (!missing && (errno || end == v || *end || *v == '-'))
                return oc_cli_usage_error("eval", "--seed: '%s' is not an unsigned integer", v);
            seed = s;
        } else {
            fprintf(stderr, "oodc eval: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (missing) return oc_cli_usage_error("eval", "%s needs a value", a);
    }
    if (!ck_path) return oc_cli_usage_error("eval", "--checkpoint FILE is required");
    if (!out) return oc_cli_usage_error("eval", "--out DIR is required");
    if (!nood) return oc_cli_usage_error("eval", "at least one --ood NAME=SPEC is required");

    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    if (oc_checkpoint_load(ck_path, &ck, &err)) return oc_cli_usage_error("eval", "%s", err.msg);
    int rc = 2;
    struct oc_dataset full, train, val, test, test_sub;
    memset(&full, 0, sizeof full);
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    memset(&test, 0, sizeof test);
    memset(&test_sub, 0, sizeof test_sub);
    struct oc_ood_set sets[MAX_OOD];
    int nsets = 0;
    struct oc_eval_result res;
    memset(&res, 0, sizeof res);
    struct oc_rt *rt = NULL;
    const char *head = ck->model.head->name;
    if (oc_eval_check_methods(methods, head, &err)) {
        oc_cli_usage_error("eval", "%s", err.msg);
        goto done;
    }
    if (!data) data = ck->data[0] ? ck->data : NULL;
    if (!data) {
        oc_cli_usage_error("eval", "%s does not name its training data: give --data SPEC", ck_path);
        goto done;
    }
    const struct oc_wrn_config *wc = &ck->model.wrn;
    for (int j = 0; j < nood; j++) {
        if (oc_ood_set_load(ood_specs[j], wc->in_ch, wc->size, wc->size, 0, seed, &sets[j], &err)) {
            oc_cli_usage_error("eval", "--ood %s: %s", ood_specs[j], err.msg);
            goto done;
        }
        nsets++;
        for (int q = 0; q < j; q++)
            if (!strcmp(sets[q].name, sets[j].name)) {
                oc_cli_usage_error("eval", "two OOD sets are named '%s': use NAME=SPEC", sets[j].name);
                goto done;
            }
    }
    /* the in-distribution splits the trainer used: validation for tuning,
     * training images for the Mahalanobis statistics */
    if (oc_train_data_load(data, 1, &full, &err) ||
        oc_train_data_split(&full, ck->train_limit, ck->seed, &train, &val, &err) ||
        oc_train_data_load(data, 0, &test, &err)) {
        oc_cli_usage_error("eval", "%s", err.msg);
        goto done;
    }
    oc_dataset_free(&full);
    const struct oc_dataset *tp = &test;
    if (test_n > 0 && test_n < test.n) {
        if (oc_data_split(&test, test_n, seed ^ 0x74657374ull, &test_sub, NULL, &err)) {
            oc_cli_usage_error("eval", "%s", err.msg);
            goto done;
        }
        tp = &test_sub;
    }
    if (oc_rt_new(&rt, 0, 0, &err)) {
        fprintf(stderr, "oodc eval: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    struct oc_eval_model m = {.name = head, .cfg = ck->model, .bind = bind_checkpoint, .bind_ctx = ck};
    struct oc_eval_data d = {tp, &val, &train, sets, nsets};
    char scores[4200];
    snprintf(scores, sizeof scores, "%s/scores", out);
    o.methods = methods;
    o.scores_dir = scores;
    o.log = quiet ? NULL : stderr;
    o.rt = rt;
    if (!quiet)
        fprintf(stderr, "oodc eval: %s (%s, head %s): %lld test images, %d OOD set(s)\n", ck_path,
                ck->arch, head, (long long)tp->n, nsets);
    enum oc_status st = oc_eval_run(&m, &d, &o, &res, &err);
    if (st) {
        const char *dev = o.device ? o.device : "cpu";
        if (!res.started && strcmp(dev, "cpu") && (st == OC_ERR_UNSUPPORTED || st == OC_ERR_DEVICE))
            oc_cli_usage_error("eval", "--device %s: %s", dev, err.msg);
        else if (!res.started || st == OC_ERR_NUMERIC || st == OC_ERR_INVALID)
            oc_cli_usage_error("eval", "%s", err.msg);
        else
            fprintf(stderr, "oodc eval: %s\n", err.msg), rc = 1;
        goto done;
    }
    struct oc_report rep = {.title = "oodc eval",
                            .config = ck_path,
                            .nmodels = 1,
                            .models = &res,
                            .nood = nsets,
                            .ood = sets};
    oc_report_tables(stdout, &rep);
    if (oc_report_write(out, &rep, &err)) {
        fprintf(stderr, "oodc eval: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (!quiet) fprintf(stderr, "oodc eval: wrote %s/results.json and %s/*/*.npy\n", out, scores);
    rc = 0;
done:
    oc_eval_result_free(&res);
    oc_rt_free(rt);
    for (int j = 0; j < nsets; j++) oc_ood_set_free(&sets[j]);
    oc_dataset_free(&full);
    oc_dataset_free(&train);
    oc_dataset_free(&val);
    oc_dataset_free(&test);
    oc_dataset_free(&test_sub);
    oc_checkpoint_free(ck);
    return rc;
}
