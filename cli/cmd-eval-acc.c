/* cmd-eval-acc.c - `oodc eval-acc`: test accuracy and per-class accuracy of
 * a checkpoint. Loads the checkpoint (ood/checkpoint.c), compiles the
 * inference graph the trainer validates with (oc_train_eval_graph), binds
 * the checkpoint's tensors and counts argmax(logits) == label over the test
 * split of the checkpoint's dataset (or --data).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ood/train.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc eval-acc --checkpoint FILE [--data SPEC] [--json]\n"
            "\n"
            "Test accuracy and per-class accuracy (percentages) of a checkpoint written\n"
            "by `oodc train` (or a PyTorch WideResNet state_dict saved as safetensors).\n"
            "\n"
            "  --checkpoint FILE    the checkpoint (e.g. DIR/checkpoint.safetensors)\n"
            "  --data SPEC          test set: fashion-mnist[:DIR] or cifar10:DIR (default:\n"
            "                       the dataset the checkpoint was trained on)\n"
            "  --json               print one JSON object with keys accuracy, per_class,\n"
            "                       per_class_count, n, checkpoint, arch, head, epoch, data\n"
            "  --batch N            images per step (default 128)\n"
            "  --limit N            only the first N test images\n"
            "  --device cpu|cuda    (default cpu)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  -h, --help           show this help\n");
}

static int parse_pos(const char *s, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > hi) return -1;
    *out = v;
    return 0;
}

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

int oc_cmd_eval_acc(int argc, char **argv)
{
    const char *path = NULL, *data = NULL, *device = "cpu";
    int json = 0;
    long long batch = 128, limit = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (oc_cli_flag(argc, argv, &i, "--checkpoint", &v, &missing)) {
            path = v;
        } else if (oc_cli_flag(argc, argv, &i, "--data", &v, &missing)) {
            data = v;
        } else if (oc_cli_flag(argc, argv, &i, "--device", &v, &missing)) {
            device = v;
        } else if (oc_cli_flag(argc, argv, &i, "--batch", &v, &missing)) {
            if (!missing && parse_pos(v, 1 << 20, &batch))
                return oc_cli_usage_error("eval-acc", "--batch: '%s' is not a batch size", v);
        } else if (oc_cli_flag(argc, argv, &i, "--limit", &v, &missing)) {
            if (!missing && parse_pos(v, 1LL << 40, &limit))
                return oc_cli_usage_error("eval-acc", "--limit: '%s' is not a positive number", v);
        } else if (oc_cli_flag(argc, argv, &i, "--threads", &v, &missing)) {
            if (!missing && parse_pos(v, 1024, &threads))
                return oc_cli_usage_error("eval-acc", "--threads: '%s' is not a thread count", v);
        } else {
            fprintf(stderr, "oodc eval-acc: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (missing) return oc_cli_usage_error("eval-acc", "%s needs a value", a);
    }
    if (!path) return oc_cli_usage_error("eval-acc", "--checkpoint FILE is required");
    if (strcmp(device, "cpu") && strcmp(device, "cuda"))
        return oc_cli_usage_error("eval-acc", "--device: unknown device '%s' (cpu or cuda)", device);

    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    struct oc_dataset ds = {0};
    struct oc_graph *g = NULL;
    struct oc_exec *ex = NULL;
    double *per = NULL;
    int64_t *cnt = NULL;
    int rc = 2;
    enum oc_status st = oc_checkpoint_load(path, &ck, &err);
    if (st) goto fail;
    if (!data) data = ck->data;
    if (!data || !*data) {
        oc_err_set(&err, OC_ERR_INVALID, "%s does not name its dataset: give --data", path);
        goto fail;
    }
    if ((st = oc_train_data_load(data, 0, &ds, &err))) goto fail;
    const struct oc_wrn_config *w = &ck->model.wrn;
    if (ds.c != w->in_ch || ds.h != w->size || ds.w != w->size) {
        oc_err_set(&err, OC_ERR_SHAPE, "%s is %d x %d x %d, but the checkpoint's model takes %d x %d x %d",
                   ds.source, ds.c, ds.h, ds.w, w->in_ch, w->size, w->size);
        goto fail;
    }
    if (ds.nclasses > w->nclasses) {
        oc_err_set(&err, OC_ERR_SHAPE, "%s has %d classes, the checkpoint's model %d", ds.source,
                   ds.nclasses, w->nclasses);
        goto fail;
    }
    if (limit > 0 && limit < ds.n) ds.n = limit; /* the first N, in file order */
    if (batch > ds.n) batch = ds.n;
    if ((st = oc_train_eval_graph(&ck->model, (int)batch, &g, &err))) goto fail;
    struct oc_compile_opts o = oc_compile_defaults();
    o.nthreads = (int)threads;
    if ((st = oc_compile(g, device, &o, &ex, &err))) {
        if (strcmp(device, "cpu")) {
            rc = oc_cli_usage_error("eval-acc", "--device %s: %s", device, err.msg);
            goto done;
        }
        rc = 1;
        goto fail;
    }
    rc = 1;
    if ((st = oc_checkpoint_bind(ck, ex, g, &err))) goto fail;
    int K = ds.nclasses;
    per = calloc((size_t)K, sizeof *per);
    cnt = calloc((size_t)K, sizeof *cnt);
    if (!per || !cnt) {
        oc_err_set(&err, OC_ERR_NOMEM, "out of memory");
        goto fail;
    }
    double acc;
    if ((st = oc_train_accuracy(ex, (int)batch, &ds, &acc, per, cnt, &err))) goto fail;
    if (json) {
        printf("{\"accuracy\": %.4f, \"per_class\": [", acc);
        for (int c = 0; c < K; c++) printf("%s%.4f", c ? ", " : "", per[c]);
        printf("], \"per_class_count\": [");
        for (int c = 0; c < K; c++) printf("%s%lld", c ? ", " : "", (long long)cnt[c]);
        printf("], \"n\": %lld, \"checkpoint\": ", (long long)ds.n);
        json_str(path);
        printf(", \"arch\": ");
        json_str(ck->arch);
        printf(", \"head\": ");
        json_str(ck->head);
        printf(", \"epoch\": %d, \"data\": ", ck->epoch);
        json_str(ds.source ? ds.source : data);
        printf("}\n");
    } else {
        printf("checkpoint %s: %s, head %s, %d epoch(s)\n", path, ck->arch, ck->head, ck->epoch);
        printf("test set %s: %lld images\n", ds.source ? ds.source : data, (long long)ds.n);
        printf("accuracy %.2f%%\n\n%-6s %9s %7s\n", acc, "class", "accuracy", "images");
        for (int c = 0; c < K; c++) printf("%-6d %8.2f%% %7lld\n", c, per[c], (long long)cnt[c]);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "oodc eval-acc: %s\n", err.msg);
done:
    free(per);
    free(cnt);
    oc_exec_free(ex);
    oc_graph_free(g);
    oc_dataset_free(&ds);
    oc_checkpoint_free(ck);
    return rc;
}
