/* cmd-train.c - `oodc train`: trains a Wide ResNet with a head on a dataset
 * with the paper's recipe (ood/train.c does the work), writing
 * DIR/checkpoint.safetensors after every epoch and DIR/train.json.
 *
 * Exit codes: 0 done (or stopped by --stop-after), 1 failure while training
 * (a NaN/Inf loss, a write error), 2 usage or input error (bad flag, unknown
 * model, missing or malformed dataset, unavailable device): in that case
 * nothing in DIR has been written.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/train.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc train --model wrn-D-W --data SPEC --out DIR [options]\n"
            "\n"
            "Trains a Wide ResNet with a head: SGD with Nesterov momentum 0.9, weight\n"
            "decay 5e-4, batch 128, learning rate 0.1 dropped x0.1 at 50%% and 75%% of the\n"
            "optimizer steps, random crop (pad 2 for 28 px, 4 for 32 px) + horizontal\n"
            "flip; 5000 training images are held out for validation (55k/5k\n"
            "Fashion-MNIST, 45k/5k CIFAR-10). After every epoch it writes\n"
            "DIR/checkpoint.safetensors (parameters, BN statistics, momentum buffers,\n"
            "normalization, progress and configuration; PyTorch-compatible names) and\n"
            "DIR/train.json (per-epoch loss, accuracy, validation accuracy, images/s).\n"
            "\n"
            "  --model wrn-D-W      Wide ResNet depth D = 6n+4, width W (e.g. wrn-16-4)\n"
            "  --data SPEC          fashion-mnist[:DIR] (default DIR: the Debian package\n"
            "                       dataset-fashion-mnist) or cifar10:DIR\n"
            "  --out DIR            output folder (created; must not hold a checkpoint\n"
            "                       unless --resume)\n"
            "  --epochs N           epochs (default 5)\n"
            "  --head NAME          head from the registry (default baseline)\n"
            "  --device cpu|cuda    (default cpu)\n"
            "  --seed S             initialization, split, shuffling, augmentation (default 0)\n"
            "  --batch N            batch size (default 128)\n"
            "  --lr X               initial learning rate (default 0.1)\n"
            "  --limit N            train on a seeded subset of N images (validate on at\n"
            "                       most N)\n"
            "  --resume             continue DIR/checkpoint.safetensors at the epoch after\n"
            "                       it; the result equals an uninterrupted run on the same\n"
            "                       machine. --model/--data/--head may be omitted then.\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --no-augment         no random crop / flip\n"
            "  --no-fusion          one kernel per primitive (the benchmarks' baseline)\n"
            "  --stop-after N       return after N epochs of this run, as an interrupted\n"
            "                       run would (for testing --resume)\n"
            "  --progress bar|lines progress display (default: a bar on a terminal)\n"
            "  --quiet              no progress output\n"
            "  -h, --help           show this help\n");
}

int oc_cmd_train(int argc, char **argv)
{
    struct oc_train_cfg c = oc_train_cfg_default();
    char model_buf[32], data_buf[256], head_buf[32];
    c.head = NULL; /* NULL: baseline, or the checkpoint's with --resume */
    int batch_given = 0, lr_given = 0, epochs_given = 0, seed_given = 0, limit_given = 0;
    int augment_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int missing = 0;
        int64_t n = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resume")) {
            c.resume = 1;
        } else if (!strcmp(a, "--no-augment")) {
            c.augment = 0;
            augment_given = 1;
        } else if (!strcmp(a, "--no-fusion")) {
            c.fusion = 0;
        } else if (!strcmp(a, "--quiet")) {
            c.quiet = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--model", &v, &missing)) {
            c.model = v;
        } else if (oc_cli_flag(argc, argv, &i, "--data", &v, &missing)) {
            c.data = v;
        } else if (oc_cli_flag(argc, argv, &i, "--out", &v, &missing)) {
            c.out_dir = v;
        } else if (oc_cli_flag(argc, argv, &i, "--head", &v, &missing)) {
            c.head = v;
        } else if (oc_cli_flag(argc, argv, &i, "--device", &v, &missing)) {
            c.device = v;
        } else if (oc_cli_flag(argc, argv, &i, "--progress", &v, &missing)) {
            if (!missing && strcmp(v, "bar") && strcmp(v, "lines"))
                return oc_cli_usage_error("train", "--progress: '%s' is not bar or lines", v);
            if (!missing) c.progress = !strcmp(v, "bar");
        } else if (oc_cli_flag(argc, argv, &i, "--epochs", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 100000, &n))
                return oc_cli_usage_error("train", "--epochs: '%s' is not a number of epochs (1..100000)", v);
            c.epochs = (int)n;
            epochs_given = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--batch", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 1 << 20, &n))
                return oc_cli_usage_error("train", "--batch: '%s' is not a batch size (1..1048576)", v);
            c.batch = (int)n;
            batch_given = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--limit", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, INT64_MAX, &n))
                return oc_cli_usage_error("train", "--limit: '%s' is not a positive number of images", v);
            c.train_limit = n;
            limit_given = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--threads", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 1024, &n))
                return oc_cli_usage_error("train", "--threads: '%s' is not a thread count (1..1024)", v);
            c.threads = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--stop-after", &v, &missing)) {
            if (!missing && oc_cli_i64(v, 1, 100000, &n))
                return oc_cli_usage_error("train", "--stop-after: '%s' is not a number of epochs", v);
            c.stop_after = (int)n;
        } else if (oc_cli_flag(argc, argv, &i, "--seed", &v, &missing)) {
            char *end;
            errno = 0;
            unsigned long long s = missing ? 0 : strtoull(v, &end, 10);
            if (!missing && (errno || end == v || *end || *v == '-'))
                return oc_cli_usage_error("train", "--seed: '%s' is not an unsigned integer", v);
            c.seed = s;
            seed_given = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--lr", &v, &missing)) {
            char *end;
            errno = 0;
            double x = missing ? 0 : strtod(v, &end);
            if (!missing && (errno || end == v || *end || !(x > 0) || x > 1e300))
                return oc_cli_usage_error("train", "--lr: '%s' is not a positive number", v);
            c.lr = x;
            lr_given = 1;
        } else {
            fprintf(stderr, "oodc train: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (missing) return oc_cli_usage_error("train", "%s needs a value", a);
    }
    if (!c.out_dir) return oc_cli_usage_error("train", "--out DIR is required");
    if (!c.resume) {
        if (!c.model) return oc_cli_usage_error("train", "--model is required (e.g. --model wrn-16-4)");
        if (!c.data)
            return oc_cli_usage_error("train", "--data is required (fashion-mnist[:DIR] or cifar10:DIR)");
    } else {
        /* What is not given comes from the checkpoint; oc_train reports a
         * missing or unreadable one. */
        size_t n = strlen(c.out_dir) + sizeof "/" OC_CHECKPOINT_FILE;
        char *p = malloc(n);
        struct oc_checkpoint *ck = NULL;
        struct oc_err e = {0};
        if (p) snprintf(p, n, "%s/%s", c.out_dir, OC_CHECKPOINT_FILE);
        if (p && oc_checkpoint_load(p, &ck, &e) == OC_OK && !ck->foreign) {
            if (!batch_given) c.batch = ck->batch;
            if (!lr_given) c.lr = ck->lr;
            if (!epochs_given) c.epochs = ck->epochs;
            if (!seed_given) c.seed = ck->seed;
            if (!limit_given) c.train_limit = ck->train_limit;
            if (!augment_given) c.augment = ck->augment;
            if (!c.model) c.model = model_buf;
            if (!c.data) c.data = data_buf;
            if (!c.head) c.head = head_buf;
            snprintf(model_buf, sizeof model_buf, "%s", ck->arch);
            snprintf(data_buf, sizeof data_buf, "%s", ck->data);
            snprintf(head_buf, sizeof head_buf, "%s", ck->head);
        }
        oc_checkpoint_free(ck);
        free(p);
    }

    struct oc_train_result r;
    struct oc_err err = {0};
    enum oc_status st = oc_train(&c, &r, &err);
    if (st == OC_OK) return 0;
    const char *dev = c.device ? c.device : "cpu";
    if (!r.started && strcmp(dev, "cpu") && (st == OC_ERR_UNSUPPORTED || st == OC_ERR_DEVICE))
        return oc_cli_usage_error("train", "--device %s: %s", dev, err.msg);
    if (!r.started && st != OC_ERR_NOMEM) return oc_cli_usage_error("train", "%s", err.msg);
    fprintf(stderr, "oodc train: %s\n", err.msg);
    return 1;
}
