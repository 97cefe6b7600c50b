/* test-checkpoint.c - training checkpoints (ood/checkpoint.c): round trip,
 * corruption detection, atomic replacement, bind errors, `oodc eval-acc`,
 * and interoperability with PyTorch in both directions against committed
 * fixtures (tests/fixtures/interop, made by make_interop.py there):
 *
 *  torch -> oodc: a PyTorch WRN-10-1 state_dict saved as safetensors loads
 *    as a "foreign" checkpoint and oodc's logits equal PyTorch's;
 *  oodc -> torch: the checkpoint oodc writes after one deterministic
 *    training step is regenerated here and must equal the committed one
 *    tensor for tensor; PyTorch's logits from the committed file equal
 *    oodc's; and PyTorch's own training step from the same start (momentum
 *    buffers, updated parameters, BN running statistics) equals oodc's.
 *
 * OC_WRITE_FIXTURES=1 makes the oodc -> torch test (re)write its files
 * into the fixture folder instead of comparing (see make_interop.py).
 */
#include "train-util.h"

#include <math.h>

#include "../../ood/train.h"
#include "../helpers/helpers.h"

/* `oodc eval-acc` itself, compiled in (its verb is not wired into every build). */
#include "../../cli/cmd-eval-acc.c"

#define FIX OC_SOURCE_DIR "/tests/fixtures/interop"

static struct oc_model_cfg tiny_model(void)
{
    struct oc_model_cfg m;
    struct oc_err err = {0};
    cr_assert_eq(oc_train_model_cfg("wrn-10-1", "baseline", 1, 28, 10, &m, &err), OC_OK, "%s", err.msg);
    return m;
}

static struct oc_exec *compile(const struct oc_graph *g)
{
    struct oc_exec *ex = NULL;
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.nthreads = 1; /* a test shares the machine: no pool to oversubscribe */
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    return ex;
}

static void set(struct oc_exec *ex, const char *name, const struct oc_buf *b)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_exec_set(ex, name, b, &err), OC_OK, "%s", err.msg);
}

static struct oc_buf scalar(enum oc_dtype dt, double v)
{
    struct oc_buf b;
    struct oc_shape s = OC_SCALAR;
    cr_assert_eq(oc_buf_alloc(&b, dt, &s), OC_OK);
    oc_buf_set(&b, 0, v);
    return b;
}

/* The deterministic batch of the interop training step: pixels k/255 from
 * a hash, labels i % 10. */
#define STEP_B 8
static void step_batch(struct oc_buf *x, struct oc_buf *y)
{
    struct oc_shape xs = OC_SHAPE(STEP_B, 1, 28, 28), ys = OC_SHAPE(STEP_B);
    cr_assert_eq(oc_buf_alloc(x, OC_F32, &xs), OC_OK);
    cr_assert_eq(oc_buf_alloc(y, OC_I32, &ys), OC_OK);
    for (int64_t i = 0; i < oc_shape_numel(&xs); i++)
        ((float *)x->data)[i] = (float)(tu_hash((uint32_t)i * 31u + 7u) % 256u) / 255.0f;
    for (int i = 0; i < STEP_B; i++) ((int32_t *)y->data)[i] = i % 10;
}

static struct oc_checkpoint meta_of(const struct oc_model_cfg *m, int epoch, int64_t step)
{
    struct oc_checkpoint meta;
    memset(&meta, 0, sizeof meta);
    meta.model = *m;
    snprintf(meta.arch, sizeof meta.arch, "wrn-10-1");
    snprintf(meta.head, sizeof meta.head, "baseline");
    snprintf(meta.data, sizeof meta.data, "fashion-mnist");
    meta.epoch = epoch;
    meta.step = step;
    meta.epochs = 1;
    meta.seed = 7;
    meta.batch = STEP_B;
    meta.lr = 0.1;
    meta.momentum = 0.9;
    meta.weight_decay = 5e-4;
    meta.augment = 1;
    meta.history = "[{\"epoch\": 1, \"loss\": 2.5}]";
    return meta;
}

/* The oodc side of the interop fixture: WRN-10-1 initialized from seed 7,
 * normalization mean 0.25 / std 0.4, one training step (lr 0.1) on
 * step_batch. Returns the training-step executable and its graph. */
static struct oc_exec *one_step(struct oc_graph **gout)
{
    struct oc_model_cfg m = tiny_model();
    struct oc_err err = {0};
    struct oc_graph *g = NULL;
    cr_assert_eq(oc_train_step_graph(&m, STEP_B, 0.9, 5e-4, &g, &err), OC_OK, "%s", err.msg);
    struct oc_exec *ex = compile(g);
    cr_assert_eq(oc_train_init_params(ex, g, 7, &err), OC_OK, "%s", err.msg);
    struct oc_buf mean = scalar(OC_F32, 0), sd = scalar(OC_F32, 0), lr = scalar(OC_F32, 0.1),
                  st = scalar(OC_I32, 0), x, y;
    struct oc_shape c1 = OC_SHAPE(1);
    mean.shape = c1, sd.shape = c1;
    ((float *)mean.data)[0] = 0.25f;
    ((float *)sd.data)[0] = 0.4f;
    step_batch(&x, &y);
    set(ex, "normalize.mean", &mean);
    set(ex, "normalize.std", &sd);
    set(ex, "lr", &lr);
    set(ex, "step", &st);
    set(ex, "x", &x);
    set(ex, "labels", &y);
    cr_assert_eq(oc_exec_run(ex, 7, &err), OC_OK, "%s", err.msg);
    if (getenv("OC_WRITE_FIXTURES")) {
        cr_assert_eq(oc_npy_write(FIX "/oodc_step_x.npy", &x, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_npy_write(FIX "/oodc_step_labels.npy", &y, &err), OC_OK, "%s", err.msg);
    }
    oc_buf_free(&mean), oc_buf_free(&sd), oc_buf_free(&lr), oc_buf_free(&st);
    oc_buf_free(&x), oc_buf_free(&y);
    *gout = g;
    return ex;
}

/* Logits of a checkpoint on x through the inference graph. */
static struct oc_buf ck_logits(const struct oc_checkpoint *ck, const struct oc_buf *x)
{
    struct oc_err err = {0};
    struct oc_graph *g = NULL;
    cr_assert_eq(oc_train_eval_graph(&ck->model, (int)x->shape.dim[0], &g, &err), OC_OK, "%s", err.msg);
    struct oc_exec *ex = compile(g);
    cr_assert_eq(oc_checkpoint_bind(ck, ex, g, &err), OC_OK, "%s", err.msg);
    struct oc_buf st = scalar(OC_I32, 0), out;
    set(ex, "x", x);
    set(ex, "step", &st);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_get(ex, "logits", &out, &err), OC_OK, "%s", err.msg);
    oc_buf_free(&st);
    oc_exec_free(ex);
    oc_graph_free(g);
    return out;
}

static struct oc_buf npy(const char *path)
{
    struct oc_buf b;
    struct oc_err err = {0};
    cr_assert_eq(oc_npy_read(path, &b, &err), OC_OK, "%s", err.msg);
    return b;
}

/* Every tensor of `want` is in `got` with the same dtype and shape and
 * values within the tolerance (bit-equal when both are 0). */
static void same_tensors(const struct oc_safetensors *got, const struct oc_safetensors *want,
                         const char *what, double rtol, double atol, const char *only_suffix)
{
    int checked = 0;
    for (int i = 0; i < want->ntensors; i++) {
        const struct oc_st_tensor *w = &want->tensors[i];
        if (only_suffix && !strstr(w->name, only_suffix)) continue;
        const struct oc_st_tensor *g = oc_st_find(got, w->name);
        cr_assert(g, "%s: no tensor %s", what, w->name);
        cr_assert_eq(g->dtype, w->dtype, "%s: %s dtype", what, w->name);
        cr_assert_eq(g->rank, w->rank, "%s: %s rank", what, w->name);
        for (int d = 0; d < w->rank; d++) cr_assert_eq(g->shape[d], w->shape[d], "%s: %s shape", what, w->name);
        if (w->dtype == OC_ST_I64) {
            cr_assert(!memcmp(g->data, w->data, w->nbytes), "%s: %s differs", what, w->name);
        } else if (rtol == 0 && atol == 0) {
            cr_assert(!memcmp(g->data, w->data, w->nbytes), "%s: %s is not bit-equal", what, w->name);
        } else {
            struct oc_buf a, b;
            struct oc_err err = {0};
            cr_assert_eq(oc_st_to_buf(g, &a, &err), OC_OK, "%s", err.msg);
            cr_assert_eq(oc_st_to_buf(w, &b, &err), OC_OK, "%s", err.msg);
            char label[256];
            snprintf(label, sizeof label, "%s: %s", what, w->name);
            cr_assert(oc_test_allclose(label, &a, &b, rtol, atol), "%s", label);
            oc_buf_free(&a), oc_buf_free(&b);
        }
        checked++;
    }
    cr_assert_gt(checked, 0, "%s: nothing compared", what);
}

/* ---------------------------------------------------------------- round trip */

Test(checkpoint, round_trip)
{
    char *dir = tu_tmpdir();
    char *p1 = tu_join(dir, "a.safetensors"), *p2 = tu_join(dir, "b.safetensors");
    struct oc_graph *g;
    struct oc_exec *ex = one_step(&g);
    struct oc_model_cfg m = tiny_model();
    struct oc_checkpoint meta = meta_of(&m, 1, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_save(p1, &meta, ex, g, &err), OC_OK, "%s", err.msg);

    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(p1, &ck, &err), OC_OK, "%s", err.msg);
    cr_assert_str_eq(ck->arch, "wrn-10-1");
    cr_assert_str_eq(ck->head, "baseline");
    cr_assert_str_eq(ck->data, "fashion-mnist");
    cr_assert_eq(ck->epoch, 1);
    cr_assert_eq(ck->step, 1);
    cr_assert_eq(ck->seed, 7);
    cr_assert_eq(ck->batch, STEP_B);
    cr_assert_eq(ck->lr, 0.1);
    cr_assert_eq(ck->weight_decay, 5e-4);
    cr_assert_eq(ck->foreign, 0);
    cr_assert_str_eq(ck->history, meta.history);
    cr_assert_eq(ck->model.wrn.depth, 10);
    cr_assert_eq(ck->model.wrn.width, 1);
    cr_assert_eq(ck->model.wrn.in_ch, 1);
    cr_assert_eq(ck->model.hc.zdim, m.hc.zdim);
    cr_assert_eq(ck->model.hc.beta, m.hc.beta);
    /* every param and state, bit for bit, plus the PyTorch-only counters */
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
        struct oc_buf v;
        cr_assert_eq(oc_exec_get(ex, n->attrs.name, &v, &err), OC_OK, "%s", err.msg);
        const struct oc_st_tensor *t = oc_st_find(ck->st, n->attrs.name);
        cr_assert(t, "missing %s", n->attrs.name);
        cr_assert_eq(t->nbytes, (size_t)oc_shape_numel(&v.shape) * 4);
        cr_assert(!memcmp(t->data, v.data, t->nbytes), "%s differs", n->attrs.name);
        oc_buf_free(&v);
    }
    const struct oc_st_tensor *nbt = oc_st_find(ck->st, "block1.layer.0.bn1.num_batches_tracked");
    cr_assert(nbt && nbt->dtype == OC_ST_I64 && nbt->rank == 0 && *(const int64_t *)nbt->data == 1);
    cr_assert(oc_st_find(ck->st, "conv1.weight.momentum_buffer"));

    /* bound into a fresh executable and saved again: the same bytes */
    struct oc_exec *ex2 = compile(g);
    cr_assert_eq(oc_checkpoint_bind(ck, ex2, g, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_checkpoint_save(p2, &meta, ex2, g, &err), OC_OK, "%s", err.msg);
    cr_assert(tu_same_file(p1, p2), "re-saved checkpoint differs");

    oc_checkpoint_free(ck);
    oc_exec_free(ex2);
    oc_exec_free(ex);
    oc_graph_free(g);
    tu_rmtree(dir);
    free(p1), free(p2), free(dir);
}

/* ---------------------------------------------------------------- corruption */

static void expect_rejected(const char *path, const char *what, const char *needle)
{
    struct oc_checkpoint *ck = NULL;
    struct oc_err err = {0};
    enum oc_status s = oc_checkpoint_load(path, &ck, &err);
    cr_assert_neq(s, OC_OK, "%s: accepted", what);
    cr_assert_null(ck);
    cr_assert(strstr(err.msg, path), "%s: message does not name the file: %s", what, err.msg);
    if (needle) cr_assert(strstr(err.msg, needle), "%s: message lacks '%s': %s", what, needle, err.msg);
}

Test(checkpoint, rejects_truncated_and_corrupt_files)
{
    char *dir = tu_tmpdir();
    char *p = tu_join(dir, "c.safetensors"), *q = tu_join(dir, "bad.safetensors");
    struct oc_graph *g;
    struct oc_exec *ex = one_step(&g);
    struct oc_model_cfg m = tiny_model();
    struct oc_checkpoint meta = meta_of(&m, 1, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_save(p, &meta, ex, g, &err), OC_OK, "%s", err.msg);
    size_t n;
    unsigned char *b = tu_read(p, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];

    /* truncated: inside the length, the header, the data, by one byte */
    size_t cuts[] = {4, 8 + hlen / 2, 8 + hlen + (n - 8 - hlen) / 2, n - 1};
    for (unsigned i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        tu_write(q, b, cuts[i]);
        expect_rejected(q, "truncated", NULL);
    }
    /* a flipped bit in the tensor data: the container is still valid */
    b[8 + hlen + (n - 8 - hlen) / 3] ^= 0x10;
    tu_write(q, b, n);
    expect_rejected(q, "bit flip in the data", "checksum");
    b[8 + hlen + (n - 8 - hlen) / 3] ^= 0x10;
    /* a changed metadata value ("epoch":"1" -> "3"): still valid JSON */
    char *hdr = (char *)b + 8;
    char *e = NULL;
    for (size_t i = 0; i + 11 <= hlen && !e; i++)
        if (!memcmp(hdr + i, "\"epoch\":\"1\"", 11)) e = hdr + i;
    cr_assert(e, "no epoch in the header");
    e[9] = '3';
    tu_write(q, b, n);
    expect_rejected(q, "changed epoch", "checksum");
    e[9] = '1';
    tu_write(q, b, n);
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(q, &ck, &err), OC_OK, "restored copy: %s", err.msg);
    oc_checkpoint_free(ck);
    /* not a checkpoint at all, and a missing file */
    tu_write(q, "hello", 5);
    expect_rejected(q, "garbage", NULL);
    unlink(q);
    expect_rejected(q, "missing", NULL);

    free(b);
    oc_exec_free(ex);
    oc_graph_free(g);
    tu_rmtree(dir);
    free(p), free(q), free(dir);
}

Test(checkpoint, failed_write_keeps_the_old_file)
{
    char *dir = tu_tmpdir();
    char *p = tu_join(dir, OC_CHECKPOINT_FILE), *keep = tu_join(dir, "keep");
    struct oc_graph *g;
    struct oc_exec *ex = one_step(&g);
    struct oc_model_cfg m = tiny_model();
    struct oc_checkpoint meta = meta_of(&m, 1, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_save(p, &meta, ex, g, &err), OC_OK, "%s", err.msg);
    size_t n;
    unsigned char *b = tu_read(p, &n);
    tu_write(keep, b, n);
    free(b);
    /* The writer's temp file cannot be created: a folder sits at its name. */
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    cr_assert_eq(mkdir(tmp, 0700), 0);
    meta.epoch = 2, meta.step = 2;
    cr_assert_neq(oc_checkpoint_save(p, &meta, ex, g, &err), OC_OK);
    cr_assert(strstr(err.msg, p), "message: %s", err.msg);
    cr_assert(tu_same_file(p, keep), "the old checkpoint was changed");
    rmdir(tmp);
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(p, &ck, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(ck->epoch, 1);
    oc_checkpoint_free(ck);
    /* and with the obstacle gone, the new one replaces it */
    cr_assert_eq(oc_checkpoint_save(p, &meta, ex, g, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_checkpoint_load(p, &ck, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(ck->epoch, 2);
    oc_checkpoint_free(ck);
    oc_exec_free(ex);
    oc_graph_free(g);
    tu_rmtree(dir);
    free(p), free(keep), free(dir);
}

Test(checkpoint, bind_names_missing_and_mismatched_tensors)
{
    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(FIX "/torch_wrn10_1.safetensors", &ck, &err), OC_OK, "%s", err.msg);
    /* a foreign file has no momentum buffers: the training step cannot bind */
    struct oc_graph *g = NULL;
    cr_assert_eq(oc_train_step_graph(&ck->model, 2, 0.9, 5e-4, &g, &err), OC_OK, "%s", err.msg);
    struct oc_exec *ex = compile(g);
    cr_assert_neq(oc_checkpoint_bind(ck, ex, g, &err), OC_OK);
    cr_assert(strstr(err.msg, "momentum_buffer"), "%s", err.msg);
    oc_exec_free(ex);
    oc_graph_free(g);
    /* another architecture: a shape mismatch names the tensor */
    struct oc_model_cfg wide;
    cr_assert_eq(oc_train_model_cfg("wrn-10-2", "baseline", 1, 28, 10, &wide, &err), OC_OK);
    cr_assert_eq(oc_train_eval_graph(&wide, 2, &g, &err), OC_OK, "%s", err.msg);
    ex = compile(g);
    memset(&err, 0, sizeof err);
    cr_assert_neq(oc_checkpoint_bind(ck, ex, g, &err), OC_OK);
    cr_assert(strstr(err.msg, "block1.layer.0.") || strstr(err.msg, "weight"), "%s", err.msg);
    cr_assert(strstr(err.msg, "torch_wrn10_1.safetensors"), "%s", err.msg);
    oc_exec_free(ex);
    oc_graph_free(g);
    oc_checkpoint_free(ck);
}

/* ---------------------------------------------------------------- interop */

Test(interop, torch_to_oodc)
{
    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(FIX "/torch_wrn10_1.safetensors", &ck, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(ck->foreign, 1);
    cr_assert_str_eq(ck->arch, "wrn-10-1");
    cr_assert_eq(ck->model.wrn.in_ch, 1);
    cr_assert_eq(ck->model.wrn.nclasses, 10);
    struct oc_buf x = npy(FIX "/x.npy"), want = npy(FIX "/torch_logits.npy");
    struct oc_buf got = ck_logits(ck, &x);
    cr_assert(oc_test_allclose("torch -> oodc logits", &got, &want, 0, 1e-4));
    oc_buf_free(&x), oc_buf_free(&want), oc_buf_free(&got);
    oc_checkpoint_free(ck);
}

Test(interop, oodc_to_torch)
{
    struct oc_err err = {0};
    struct oc_graph *g;
    struct oc_exec *ex = one_step(&g);
    struct oc_model_cfg m = tiny_model();
    struct oc_checkpoint meta = meta_of(&m, 0, 1);
    meta.history = "[]";
    char *dir = tu_tmpdir();
    char *p = tu_join(dir, "oodc.safetensors");
    const char *committed = FIX "/oodc_wrn10_1.safetensors";
    int write = getenv("OC_WRITE_FIXTURES") != NULL;
    cr_assert_eq(oc_checkpoint_save(write ? committed : p, &meta, ex, g, &err), OC_OK, "%s", err.msg);
    if (!write) {
        /* Regenerated = committed, tensor for tensor. Not bit for bit: the
         * JIT specializes kernels to the host CPU and BLAS blocking depends
         * on it, so another machine may round differently. */
        struct oc_safetensors a, b;
        cr_assert_eq(oc_st_read(p, &a, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_st_read(committed, &b, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(a.ntensors, b.ntensors);
        same_tensors(&a, &b, "regenerated vs committed", 1e-4, 1e-6, NULL);
        oc_st_free(&a), oc_st_free(&b);
    }
    /* PyTorch's logits from the committed checkpoint = oodc's */
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(committed, &ck, &err), OC_OK, "%s", err.msg);
    if (!write) {
        struct oc_buf x = npy(FIX "/x.npy"), want = npy(FIX "/torch_from_oodc_logits.npy");
        struct oc_buf got = ck_logits(ck, &x);
        cr_assert(oc_test_allclose("oodc -> torch logits", &got, &want, 0, 1e-4));
        oc_buf_free(&x), oc_buf_free(&want), oc_buf_free(&got);
        /* PyTorch's training step from the same start = oodc's step */
        struct oc_safetensors t;
        cr_assert_eq(oc_st_read(FIX "/torch_step.safetensors", &t, &err), OC_OK, "%s", err.msg);
        same_tensors(ck->st, &t, "torch step vs oodc step", 1e-3, 1e-5, NULL);
        oc_st_free(&t);
    }
    oc_checkpoint_free(ck);
    oc_exec_free(ex);
    oc_graph_free(g);
    tu_rmtree(dir);
    free(p), free(dir);
}

/* ---------------------------------------------------------------- oodc eval-acc */

static int eval_acc(char **out, char **errs, int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    return tu_capture(oc_cmd_eval_acc, argc, argv, out, errs);
}

Test(eval_acc, json_and_bad_input)
{
    char *data = tu_fake_fashion(40, 50);
    char spec[600];
    snprintf(spec, sizeof spec, "fashion-mnist:%s", data);
    char *dir = tu_tmpdir(), *p = tu_join(dir, "ck.safetensors");
    struct oc_graph *g;
    struct oc_exec *ex = one_step(&g);
    struct oc_model_cfg m = tiny_model();
    struct oc_checkpoint meta = meta_of(&m, 1, 1);
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_save(p, &meta, ex, g, &err), OC_OK, "%s", err.msg);
    char *out, *errs;
    int rc = eval_acc(&out, &errs, 8, "eval-acc", "--checkpoint", p, "--data", spec, "--json",
                      "--threads", "1");
    cr_assert_eq(rc, 0, "rc %d: %s", rc, errs);
    cr_assert(strstr(out, "\"accuracy\": "), "%s", out);
    cr_assert(strstr(out, "\"per_class\": ["), "%s", out);
    cr_assert(strstr(out, "\"n\": 50"), "%s", out);
    double acc = -1;
    cr_assert_eq(sscanf(strstr(out, "\"accuracy\": ") + 12, "%lf", &acc), 1);
    cr_assert(acc >= 0 && acc <= 100, "%g", acc);
    free(out), free(errs);
    /* text output */
    rc = eval_acc(&out, &errs, 5, "eval-acc", "--checkpoint", p, "--data", spec);
    cr_assert_eq(rc, 0, "%s", errs);
    cr_assert(strstr(out, "accuracy "), "%s", out);
    free(out), free(errs);
    /* bad input: exit 2 with a message */
    struct {
        int argc;
        char *argv[8];
        const char *needle;
    } bad[] = {
        {1, {"eval-acc"}, "--checkpoint"},
        {3, {"eval-acc", "--checkpoint", "/nonexistent/ck.safetensors"}, "/nonexistent/ck.safetensors"},
        {5, {"eval-acc", "--checkpoint", p, "--data", "cifar10:" OC_SOURCE_DIR "/tests/fixtures/data/cifar"}, "3 x 32 x 32"},
        {5, {"eval-acc", "--checkpoint", p, "--data", "fashion-mnist:/nonexistent"}, "dataset-fashion-mnist"},
        {7, {"eval-acc", "--checkpoint", p, "--data", spec, "--device", "cuda"}, "--device cuda"},
        {4, {"eval-acc", "--checkpoint", p, "--bogus"}, "--bogus"},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = tu_capture(oc_cmd_eval_acc, bad[i].argc, bad[i].argv, &out, &errs);
        cr_assert_eq(rc, 2, "case %u: rc %d: %s", i, rc, errs);
        cr_assert(strstr(errs, bad[i].needle), "case %u: '%s' not in: %s", i, bad[i].needle, errs);
        free(out), free(errs);
    }
    oc_exec_free(ex);
    oc_graph_free(g);
    tu_rmtree(dir);
    tu_rmtree(data);
    free(p), free(dir), free(data);
}
