/* cmd-metrics.c - `oodc metrics`: the paper's OOD metrics (section 4) for two
 * score files, one in-distribution and one OOD, as a table or as JSON.
 *
 * The files are read by oc_scores_read and the metrics computed by
 * oc_metrics_compute (ood/metrics.c), the same code the evaluation layer
 * uses, so numbers printed here match the reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/metrics.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc metrics --in FILE --out FILE [--json]\n"
            "\n"
            "OOD detection metrics of two score sets, computed as scikit-learn does:\n"
            "FPR at 95%% TPR, detection error, AUROC, AUPR-In and AUPR-Out.\n"
            "In-distribution samples are the positives; a higher score means\n"
            "more in-distribution.\n"
            "\n"
            "  --in FILE    scores of the in-distribution test set\n"
            "  --out FILE   scores of the out-of-distribution set\n"
            "  --json       print one JSON object with keys fpr95, detection_error,\n"
            "               auroc, aupr_in, aupr_out\n"
            "  -h, --help   show this help\n"
            "\n"
            "A score file is a .npy array (any float or int dtype, flat) or text with\n"
            "one number per line; blank lines and '#' comments are ignored.\n"
            "All values are printed as percentages (fractions x 100), as in the\n"
            "paper's tables.\n");
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value. */
/* Bad input is a usage error (2); running out of memory is a failure (1). */
static int fail(enum oc_status st, const char *flag, const char *msg)
{
    if (st == OC_ERR_NOMEM) {
        fprintf(stderr, "oodc metrics: %s%s%s\n", flag ? flag : "", flag ? ": " : "", msg);
        return 1;
    }
    if (flag) return oc_cli_usage_error("metrics", "%s: %s", flag, msg);
    return oc_cli_usage_error("metrics", "%s", msg);
}

int oc_cmd_metrics(int argc, char **argv)
{
    const char *in_path = NULL, *out_path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int missing = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--in", &in_path, &missing) ||
                   oc_cli_flag(argc, argv, &i, "--out", &out_path, &missing)) {
            if (missing) return oc_cli_usage_error("metrics", "%s needs a FILE argument", a);
        } else {
            usage(stderr);
            return oc_cli_usage_error("metrics", "unknown argument '%s'", a);
        }
    }
    if (!in_path || !out_path) {
        usage(stderr);
        return oc_cli_usage_error("metrics", "%s", !in_path ? "--in FILE is required"
                                                             : "--out FILE is required");
    }
    if (!*in_path || !*out_path)
        return oc_cli_usage_error("metrics", "empty file name for %s",
                                  !*in_path ? "--in" : "--out");

    struct oc_err err = {0};
    double *s_in = NULL, *s_out = NULL;
    int64_t n_in = 0, n_out = 0;
    enum oc_status st = oc_scores_read(in_path, &s_in, &n_in, &err);
    if (st == OC_OK) st = oc_scores_read(out_path, &s_out, &n_out, &err);
    if (st != OC_OK) {
        const char *flag = s_in ? "--out" : "--in";
        free(s_in);
        return fail(st, flag, err.msg);
    }
    struct oc_metrics m;
    st = oc_metrics_compute(s_in, n_in, s_out, n_out, &m, &err);
    free(s_in);
    free(s_out);
    if (st != OC_OK) return fail(st, NULL, err.msg);

    if (json) {
        printf("{\"fpr95\": %.15g, \"detection_error\": %.15g, \"auroc\": %.15g, "
               "\"aupr_in\": %.15g, \"aupr_out\": %.15g}\n",
               100.0 * m.fpr95, 100.0 * m.detection_error, 100.0 * m.auroc, 100.0 * m.aupr_in,
               100.0 * m.aupr_out);
    } else {
        printf("in-distribution: %s (%lld scores)\n", in_path, (long long)n_in);
        printf("OOD:             %s (%lld scores)\n", out_path, (long long)n_out);
        printf("\n%-10s %-10s %-10s %-10s %-10s\n", "FPR95", "Det.Err", "AUROC", "AUPR-In",
               "AUPR-Out");
        printf("%-10.2f %-10.2f %-10.2f %-10.2f %-10.2f\n", 100.0 * m.fpr95,
               100.0 * m.detection_error, 100.0 * m.auroc, 100.0 * m.aupr_in, 100.0 * m.aupr_out);
        printf("\n(percentages; FPR95 and detection error at TPR %.2f%%, threshold %.9g)\n",
               100.0 * m.tpr_at, m.threshold);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
