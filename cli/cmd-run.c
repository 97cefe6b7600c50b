/* cmd-run.c - `oodc run` (what `make run` does): trains the paper's five
 * models or reuses their checkpoints (runs/<head>/), evaluates every scorer
 * on every OOD set, prints Table 1 and Table 2 and writes report/.
 * ood/run.c does the work; this file parses the flags.
 *
 * Exit codes: 0 done; 2 usage or input error (bad flag, missing data or
 * photographs, unknown head or method, unavailable device); 1 failure while
 * running.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/eval.h"
#include "cli.h"


static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc run [--preset cpu|paper] [options]\n"
            "\n"
            "Trains Baseline, BIN, BINC, VIB and VIBY (a Wide ResNet with each head) or\n"
            "reuses runs/<head>/checkpoint.safetensors when it was trained with the same\n"
            "configuration, evaluates every scorer (Baseline, Baseline+T, ODIN, BIN,\n"
            "BINC, VIB, VIBY-I, VIBY-II, Energy, MaxLogit, Mahalanobis) on Gaussian noise,\n"
            "uniform noise and crop/resize sets of photographs, prints Table 1 and\n"
            "Table 2 and writes report/ (results.md, results.csv, results.json,\n"
            "index.html, scores/).\n"
            "\n"
            "  --preset cpu         (default) Fashion-MNIST, WRN-10-1, 3 epochs on 6000\n"
            "                       images, 2000 test images, T/eps tuned on 200\n"
            "                       validation images per set; photographs from\n"
            "                       /usr/share/backgrounds (lomiri-wallpapers-16.04);\n"
            "                       minutes on 2 CPU cores\n"
            "  --preset paper       the paper: CIFAR-10 (--cifar DIR), WRN-28-10, 200\n"
            "                       epochs, device cuda, TinyImageNet crop/resize from an\n"
            "                       image folder (--tiny DIR), full test and validation sets\n"
            "  --cifar DIR          CIFAR-10 binary batches (cifar-10-batches-bin)\n"
            "  --tiny DIR           TinyImageNet images (e.g. its test/images folder)\n"
            "  --data SPEC          in-distribution data: fashion-mnist[:DIR] | cifar10:DIR\n"
            "  --photos DIR         folder of photographs for the crop/resize sets\n"
            "  --arch wrn-D-W       model (cpu preset: wrn-10-1)\n"
            "  --epochs N  --batch N  --limit N (training images)  --seed S\n"
            "  --test-n N           in-distribution test images (0: all)\n"
            "  --tune-n N           validation images per set for tuning (0: all)\n"
            "  --fit-n N            training images for Mahalanobis statistics (0: all)\n"
            "  --heads LIST         comma-separated heads (default baseline,bin,binc,vib,viby)\n"
            "  --method LIST        comma-separated methods (default: all)\n"
            "  --device cpu|cuda    --runs DIR (default runs)  --report DIR (default report)\n"
            "  --retrain            train anew even when a matching checkpoint exists\n"
            "  -h, --help           show this help\n");
}

int oc_cmd_run(int argc, char **argv)
{
    /* the preset first: the other flags override it */
    const char *preset = "cpu";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[i + 1];
        else if (!strncmp(argv[i], "--preset=", 9)) preset = argv[i] + 9;
    }
    struct oc_run_cfg c;
    if (!oc_run_cfg_preset(preset, &c))
        return oc_cli_usage_error("run", "--preset: '%s' is not cpu or paper", preset);
    char cifar_spec[4200];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int missing = 0;
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--retrain")) {
            c.retrain = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--preset", &v, &missing)) {
            /* read above */
        } else if (oc_cli_flag(argc, argv, &i, "--cifar", &v, &missing)) {
            if (!missing) {
                snprintf(cifar_spec, sizeof cifar_spec, "cifar10:%s", v);
                c.data = cifar_spec;
            }
        } else if (oc_cli_flag(argc, argv, &i, "--tiny", &v, &missing) ||
                   oc_cli_flag(argc, argv, &i, "--photos", &v, &missing)) {
            c.photos = v;
        } else if (oc_cli_flag(argc, argv, &i, "--data", &v, &missing)) {
            c.data = v;
        } else if (oc_cli_flag(argc, argv, &i, "--arch", &v, &missing) ||
                   oc_cli_flag(argc, argv, &i, "--model", &v, &missing)) {
            c.arch = v;
        } else if (oc_cli_flag(argc, argv, &i, "--device", &v, &missing)) {
            c.device = v;
        } else if (oc_cli_flag(argc, argv, &i, "--runs", &v, &missing)) {
            c.runs_dir = v;
        } else if (oc_cli_flag(argc, argv, &i, "--report", &v, &missing)) {
            c.report_dir = v;
        } else if (oc_cli_flag(argc, argv, &i, "--heads", &v, &missing)) {
            c.heads = v;
        } else if (oc_cli_flag(argc, argv, &i, "--method", &v, &missing) ||
                   oc_cli_flag(argc, argv, &i, "--methods", &v, &missing)) {
            c.methods = v;
        } else if (oc_cli_flag(argc, argv, &i, "--epochs", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 100000, &n))
                return oc_cli_usage_error("run", "--epochs: '%s' is not a number of epochs", v);
            c.epochs = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--batch", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 1 << 16, &n))
                return oc_cli_usage_error("run", "--batch: '%s' is not a batch size", v);
            c.batch = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--limit", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 0, INT64_MAX, &n))
                return oc_cli_usage_error("run", "--limit: '%s' is not a number of images", v);
            c.train_limit = n;
        } else if (oc_cli_flag(argc, argv, &i, "--test-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 0, INT64_MAX, &n))
                return oc_cli_usage_error("run", "--test-n: '%s' is not a number of images", v);
            c.test_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--tune-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 0, INT64_MAX, &n))
                return oc_cli_usage_error("run", "--tune-n: '%s' is not a number of images", v);
            c.tune_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--fit-n", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 0, INT64_MAX, &n))
                return oc_cli_usage_error("run", "--fit-n: '%s' is not a number of images", v);
            c.fit_n = n;
        } else if (oc_cli_flag(argc, argv, &i, "--seed", &v, &missing)) {
            char *end;
            errno = 0;
            unsigned long long s = missing ? 0 : strtoull(v, &end, 10);
            if (!missing && (errno || end == v || *end || *v == '-'))
                return oc_cli_usage_error("run", "--seed: '%s' is not an unsigned integer", v);
            c.seed = s;
        } else {
            fprintf(stderr, "oodc run: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (missing) return oc_cli_usage_error("run", "%s needs a value", a);
    }
    if (!strcmp(c.preset, "paper") && !c.data)
        return oc_cli_usage_error("run", "--preset paper needs --cifar DIR (CIFAR-10 binary batches)");
    if (!strcmp(c.preset, "paper") && !c.photos)
        return oc_cli_usage_error("run", "--preset paper needs --tiny DIR (a folder of TinyImageNet images)");
    c.log = stderr;
    struct oc_err err = {0};
    int input_error = 0;
    enum oc_status st = oc_run(&c, &input_error, &err);
    if (st == OC_OK) return 0;
    if (input_error) return oc_cli_usage_error("run", "%s", err.msg);
    fprintf(stderr, "oodc run: %s\n", err.msg);
    return 1;
}
