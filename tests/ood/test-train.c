/* test-train.c - the trainer (ood/train.c) and `oodc train` on a tiny
 * synthetic Fashion-MNIST (train-util.h) with WRN-10-1: the loss decreases,
 * a resumed run equals an uninterrupted one bit for bit, a diverging run
 * stops with a message and keeps the last good checkpoint, the learning-rate
 * schedule, the split, and bad command lines exit 2 without writing.
 */
#include "train-util.h"

#include <math.h>

#include "../../ood/train.h"
#include "../helpers/helpers.h"

/* `oodc train` itself, compiled in (its verb is not wired into every build). */
#include "../../cli/cmd-train.c"

static char spec[600];

static struct oc_train_cfg tiny_cfg(const char *data_dir, const char *out)
{
    snprintf(spec, sizeof spec, "fashion-mnist:%s", data_dir);
    struct oc_train_cfg c = oc_train_cfg_default();
    c.model = "wrn-10-1";
    c.data = spec;
    c.out_dir = out;
    c.batch = 32;
    c.train_limit = 128; /* 4 steps per epoch */
    c.lr = 0.05;
    c.seed = 3;
    c.quiet = 1;
    c.threads = 1; /* a test shares the machine: no pool to oversubscribe */
    return c;
}

/* "loss" of every epoch, from a checkpoint's history. */
static int history_losses(const char *ck_path, double *loss, int max)
{
    struct oc_checkpoint *ck = NULL;
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_load(ck_path, &ck, &err), OC_OK, "%s", err.msg);
    int n = 0;
    for (const char *p = ck->history; p && (p = strstr(p, "\"loss\": ")) && n < max; p++)
        loss[n++] = strtod(p + 8, NULL);
    oc_checkpoint_free(ck);
    return n;
}

Test(train, loss_decreases_and_files_are_written)
{
    char *data = tu_fake_fashion(400, 40), *out = tu_tmpdir();
    struct oc_train_cfg c = tiny_cfg(data, out);
    c.epochs = 3;
    struct oc_train_result r;
    struct oc_err err = {0};
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(r.epochs_done, 3);
    cr_assert_eq(r.steps_done, 12);
    cr_assert(r.started);
    cr_assert(isfinite(r.final_loss) && r.images_per_s > 0);
    char *ck = tu_join(out, OC_CHECKPOINT_FILE), *js = tu_join(out, "train.json");
    double loss[8];
    cr_assert_eq(history_losses(ck, loss, 8), 3);
    cr_assert_lt(loss[2], loss[0], "loss %g -> %g did not decrease", loss[0], loss[2]);
    cr_assert_float_eq(loss[2], r.final_loss, 1e-5 * fabs(r.final_loss));
    size_t n;
    char *j = (char *)tu_read(js, &n);
    cr_assert(j, "no train.json");
    j[n - 1] = 0;
    cr_assert(strstr(j, "\"status\": \"complete\""), "%s", j);
    cr_assert(strstr(j, "\"epochs_done\": 3"), "%s", j);
    cr_assert(strstr(j, "\"images_per_s\": "), "%s", j);
    cr_assert(strstr(j, "\"val_acc\": "), "%s", j);
    cr_assert(strstr(j, "\"train_images\": 128"), "%s", j);
    cr_assert(strstr(j, "\"val_images\": 40"), "%s", j);
    free(j);
    /* the checkpoint carries the normalization of the training images */
    struct oc_checkpoint *k = NULL;
    cr_assert_eq(oc_checkpoint_load(ck, &k, &err), OC_OK, "%s", err.msg);
    const struct oc_st_tensor *sd = oc_st_find(k->st, "normalize.std");
    cr_assert(sd && ((const float *)sd->data)[0] > 0.1f && ((const float *)sd->data)[0] != 1.0f);
    cr_assert_eq(k->epoch, 3);
    cr_assert_eq(k->step, 12);
    oc_checkpoint_free(k);
    tu_rmtree(data), tu_rmtree(out);
    free(data), free(out), free(ck), free(js);
}

Test(train, resume_equals_uninterrupted_bit_for_bit)
{
    char *data = tu_fake_fashion(400, 40), *a = tu_tmpdir(), *b = tu_tmpdir();
    struct oc_err err = {0};
    struct oc_train_result r;
    struct oc_train_cfg c = tiny_cfg(data, a);
    c.epochs = 2;
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    /* the same run, interrupted after its first epoch, then resumed */
    c.out_dir = b;
    c.stop_after = 1;
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(r.epochs_done, 1);
    /* a run killed while writing leaves a temp file; the next run removes it */
    char *stale = tu_join(b, OC_CHECKPOINT_FILE ".tmp.2147483646");
    tu_write(stale, "partial", 7);
    c.stop_after = 0;
    c.resume = 1;
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(r.epochs_done, 2);
    cr_assert_neq(access(stale, F_OK), 0, "stale temp file left");
    free(stale);

    char *pa = tu_join(a, OC_CHECKPOINT_FILE), *pb = tu_join(b, OC_CHECKPOINT_FILE);
    struct oc_safetensors sa, sb;
    cr_assert_eq(oc_st_read(pa, &sa, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_st_read(pb, &sb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(sa.ntensors, sb.ntensors);
    int params = 0;
    for (int i = 0; i < sa.ntensors; i++) {
        const struct oc_st_tensor *x = &sa.tensors[i], *y = oc_st_find(&sb, x->name);
        cr_assert(y, "resumed run lacks %s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert(!memcmp(x->data, y->data, x->nbytes), "%s differs after resume", x->name);
        params += strstr(x->name, "momentum_buffer") != NULL;
    }
    cr_assert_gt(params, 10);
    cr_assert_str_eq(oc_st_meta(&sa, "step"), oc_st_meta(&sb, "step"));
    cr_assert_str_eq(oc_st_meta(&sa, "epoch"), "2");
    cr_assert_str_eq(oc_st_meta(&sb, "epoch"), "2");
    /* the resumed history keeps the first epoch's record */
    double la[4], lb[4];
    cr_assert_eq(history_losses(pa, la, 4), 2);
    cr_assert_eq(history_losses(pb, lb, 4), 2);
    cr_assert_eq(la[0], lb[0]);
    cr_assert_eq(la[1], lb[1]);
    oc_st_free(&sa), oc_st_free(&sb);
    /* resuming a finished run does nothing */
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(r.epochs_done, 2);
    cr_assert_eq(r.started, 0);
    tu_rmtree(data), tu_rmtree(a), tu_rmtree(b);
    free(data), free(a), free(b), free(pa), free(pb);
}

Test(train, nan_loss_stops_and_keeps_the_last_good_checkpoint)
{
    char *data = tu_fake_fashion(400, 40), *out = tu_tmpdir();
    struct oc_err err = {0};
    struct oc_train_result r;
    struct oc_train_cfg c = tiny_cfg(data, out);
    c.epochs = 3;
    c.batch = 16;
    c.train_limit = 128; /* 8 steps per epoch */
    c.stop_after = 1;
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    char *ck = tu_join(out, OC_CHECKPOINT_FILE), *keep = tu_join(out, "keep");
    size_t n;
    unsigned char *b = tu_read(ck, &n);
    tu_write(keep, b, n);
    free(b);
    /* continue with an absurd learning rate: the weights overflow */
    c.stop_after = 0;
    c.resume = 1;
    c.lr = 1e30;
    enum oc_status s = oc_train(&c, &r, &err);
    cr_assert_eq(s, OC_ERR_NUMERIC, "status %d: %s", s, err.msg);
    cr_assert(r.started);
    cr_assert(strstr(err.msg, "epoch 2"), "%s", err.msg);
    cr_assert(strstr(err.msg, "step "), "%s", err.msg);
    cr_assert(strstr(err.msg, "NaN") || strstr(err.msg, "infinite"), "%s", err.msg);
    cr_assert(strstr(err.msg, "epoch 1) is kept"), "%s", err.msg);
    cr_assert(tu_same_file(ck, keep), "the last good checkpoint was changed");
    char *js = tu_join(out, "train.json");
    char *j = (char *)tu_read(js, &n);
    j[n - 1] = 0;
    cr_assert(strstr(j, "\"status\": \"diverged\""), "%s", j);
    free(j);
    /* from a fresh start, the same through the CLI: exit 1, no checkpoint */
    char *out2 = tu_tmpdir();
    char *argv[] = {"train", "--model", "wrn-10-1", "--data", spec, "--out", out2, "--batch", "16",
                    "--limit", "128", "--lr", "1e30", "--quiet", "--threads", "1", NULL};
    char *o, *e;
    int rc = tu_capture(oc_cmd_train, 16, argv, &o, &e);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, e);
    cr_assert(strstr(e, "diverged") && strstr(e, "epoch 1"), "%s", e);
    cr_assert(strstr(e, "no checkpoint was written"), "%s", e);
    char *ck2 = tu_join(out2, OC_CHECKPOINT_FILE);
    cr_assert_neq(access(ck2, F_OK), 0, "a diverged run wrote a checkpoint");
    free(o), free(e);
    tu_rmtree(data), tu_rmtree(out), tu_rmtree(out2);
    free(data), free(out), free(out2), free(ck), free(ck2), free(keep), free(js);
}

Test(train, lr_schedule_and_split)
{
    cr_assert_eq(oc_train_lr_at(0.1, 0, 100), 0.1);
    cr_assert_eq(oc_train_lr_at(0.1, 49, 100), 0.1);
    cr_assert_float_eq(oc_train_lr_at(0.1, 50, 100), 0.01, 1e-15);
    cr_assert_float_eq(oc_train_lr_at(0.1, 74, 100), 0.01, 1e-15);
    cr_assert_float_eq(oc_train_lr_at(0.1, 75, 100), 0.001, 1e-15);
    cr_assert_float_eq(oc_train_lr_at(0.1, 99, 100), 0.001, 1e-15);
    /* 5 epochs of 429 steps: drops at step 1073 (epoch 3) and 1609 */
    cr_assert_eq(oc_train_lr_at(0.1, 1072, 2145), 0.1);
    cr_assert_float_eq(oc_train_lr_at(0.1, 1073, 2145), 0.01, 1e-15);

    /* 55k/5k for 60000 images, seeded; --limit caps both parts */
    struct oc_dataset full = {0}, tr, va;
    full.n = 60000, full.c = 1, full.h = 1, full.w = 1, full.nclasses = 10;
    full.images = calloc(60000, sizeof(float));
    full.labels = calloc(60000, sizeof(int32_t));
    for (int i = 0; i < 60000; i++) full.images[i] = (float)i, full.labels[i] = i % 10;
    struct oc_err err = {0};
    cr_assert_eq(oc_train_data_split(&full, 0, 1, &tr, &va, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(tr.n, 55000);
    cr_assert_eq(va.n, 5000);
    /* disjoint: every index once */
    unsigned char *seen = calloc(60000, 1);
    for (int64_t i = 0; i < tr.n; i++) seen[(int)tr.images[i]]++;
    for (int64_t i = 0; i < va.n; i++) seen[(int)va.images[i]]++;
    for (int i = 0; i < 60000; i++) cr_assert_eq(seen[i], 1, "image %d", i);
    struct oc_dataset tr2, va2;
    cr_assert_eq(oc_train_data_split(&full, 1000, 1, &tr2, &va2, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(tr2.n, 1000);
    cr_assert_eq(va2.n, 1000);
    /* the validation images do not depend on --limit */
    for (int64_t i = 0; i < va2.n; i++) {
        int found = 0;
        for (int64_t k = 0; k < va.n && !found; k++) found = va.images[k] == va2.images[i];
        cr_assert(found, "validation image %g is new", (double)va2.images[i]);
    }
    oc_dataset_free(&tr), oc_dataset_free(&va), oc_dataset_free(&tr2), oc_dataset_free(&va2);
    oc_dataset_free(&full);
    free(seen);
}

/* ---------------------------------------------------------------- the CLI */

/* Runs `oodc train` with space-separated args in which the tokens DATA,
 * TRUNC, OUT and SUB stand for the paths in tok[0..3]. */
static int run_cli(const char *args, const char *const tok[4], char **o, char **e)
{
    static const char *names[4] = {"DATA", "TRUNC", "OUT", "SUB"};
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", args);
    char *argv[40];
    int argc = 0;
    argv[argc++] = "train";
    for (char *t = strtok(buf, " "); t && argc < 38; t = strtok(NULL, " ")) {
        argv[argc] = t;
        for (int k = 0; k < 4; k++)
            if (!strcmp(t, names[k])) argv[argc] = (char *)tok[k];
        argc++;
    }
    argv[argc] = NULL;
    return tu_capture(oc_cmd_train, argc, argv, o, e);
}

Test(cli, bad_input_exits_2_and_writes_nothing)
{
    char *data = tu_fake_fashion(400, 40), *out = tu_tmpdir(), *empty = tu_tmpdir();
    char *fresh = tu_join(empty, "fresh");
    snprintf(spec, sizeof spec, "fashion-mnist:%s", data);
    /* a good run first, whose checkpoint must then survive every bad one */
    char *o, *e;
    const char *tok0[4] = {spec, spec, out, fresh};
    int rc = run_cli("--model wrn-10-1 --data DATA --out OUT --epochs 1 --batch 32 --limit 64 --quiet --threads 1",
                     tok0, &o, &e);
    cr_assert_eq(rc, 0, "good run: %s", e);
    free(o), free(e);
    char *ck = tu_join(out, OC_CHECKPOINT_FILE), *keep = tu_join(empty, "keep");
    size_t n;
    unsigned char *b = tu_read(ck, &n);
    tu_write(keep, b, n);
    free(b);

    /* a folder with a truncated IDX file under the standard name */
    char *trunc = tu_tmpdir();
    size_t tn;
    unsigned char *tb = tu_read(OC_SOURCE_DIR "/tests/fixtures/data/idx/trunc-images-idx3-ubyte", &tn);
    cr_assert(tb);
    char *tp = tu_join(trunc, "train-images-idx3-ubyte");
    tu_write(tp, tb, tn);
    free(tb);
    unsigned char *lb = tu_read(OC_SOURCE_DIR "/tests/fixtures/data/idx/tiny-labels-idx1-ubyte", &tn);
    char *lp = tu_join(trunc, "train-labels-idx1-ubyte");
    tu_write(lp, lb, tn);
    free(lb);
    char trunc_spec[600];
    snprintf(trunc_spec, sizeof trunc_spec, "fashion-mnist:%s", trunc);

    const char *tok[4] = {spec, trunc_spec, out, fresh};
    struct {
        const char *args, *needle;
    } cases[] = {
        {"", "--out"},
        {"--model wrn-10-1 --out SUB", "--data"},
        {"--data DATA --out SUB", "--model"},
        {"--model resnet-50 --data DATA --out SUB", "unknown model 'resnet-50'"},
        {"--model wrn-11-1 --data DATA --out SUB", "6n+4"},
        {"--model wrn-10-1 --head nope --data DATA --out SUB", "unknown head 'nope'"},
        {"--model wrn-10-1 --data mnist --out SUB", "unknown dataset 'mnist'"},
        {"--model wrn-10-1 --data fashion-mnist:/nonexistent/fm --out SUB", "dataset-fashion-mnist"},
        {"--model wrn-10-1 --data cifar10 --out SUB", "cifar-10-binary"},
        {"--model wrn-10-1 --data cifar10:/nonexistent/c --out SUB", "data_batch_1.bin"},
        {"--model wrn-10-1 --data TRUNC --out SUB", "train-images-idx3-ubyte"},
        {"--model wrn-10-1 --data DATA --out SUB --device cuda", "--device cuda: "},
        {"--model wrn-10-1 --data DATA --out SUB --device tpu", "tpu"},
        {"--model wrn-10-1 --data DATA --out SUB --epochs abc", "--epochs"},
        {"--model wrn-10-1 --data DATA --out SUB --batch 0", "--batch"},
        {"--model wrn-10-1 --data DATA --out SUB --lr -1", "--lr"},
        {"--model wrn-10-1 --data DATA --out SUB --seed x", "--seed"},
        {"--model wrn-10-1 --data DATA --out SUB --frobnicate", "--frobnicate"},
        {"--model wrn-10-1 --data DATA --out SUB --epochs", "needs a value"},
        {"--model wrn-10-1 --data DATA --out SUB --limit 10", "fewer than one batch"},
        {"--out SUB --resume", "no checkpoint"},
        /* the folder of the good run */
        {"--model wrn-10-1 --data DATA --out OUT --epochs 2 --batch 32 --limit 64", "--resume"},
        {"--model wrn-10-2 --data DATA --out OUT --resume", "wrn-10-1"},
        {"--data fashion-mnist --out OUT --resume", "fashion-mnist"},
        {"--out OUT --resume --seed 9", "seed"},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        rc = run_cli(cases[i].args, tok, &o, &e);
        cr_assert_eq(rc, 2, "case %u (%s): rc %d: %s", i, cases[i].args, rc, e);
        cr_assert(strstr(e, "oodc train: "), "case %u: %s", i, e);
        cr_assert(strstr(e, cases[i].needle), "case %u (%s): '%s' not in: %s", i, cases[i].args,
                  cases[i].needle, e);
        cr_assert_neq(access(fresh, F_OK), 0, "case %u created %s", i, fresh);
        cr_assert(tu_same_file(ck, keep), "case %u (%s) changed the checkpoint", i, cases[i].args);
        free(o), free(e);
    }
    /* --help is not an error */
    rc = run_cli("--help", tok, &o, &e);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(o, "--resume"));
    free(o), free(e);
    tu_rmtree(data), tu_rmtree(out), tu_rmtree(empty), tu_rmtree(trunc);
    free(data), free(out), free(empty), free(fresh), free(ck), free(keep), free(trunc), free(tp), free(lp);
}
