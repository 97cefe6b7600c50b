/* checkpoint.c - training checkpoints as safetensors files (layout and
 * metadata keys are documented in train.h).
 *
 * Data flow: the trainer's executable holds every param and state; save
 * copies them out (oc_exec_get), adds the PyTorch-only num_batches_tracked
 * counters, the metadata and a checksum, and commits the file with
 * oc_st_write (temp file + fsync + rename). Load reads the file
 * (oc_st_read validates the container), verifies the checksum, parses the
 * metadata into the model configuration and checks, by building the
 * inference graph, that every param and state the model needs is present
 * with the right shape, so a bad file fails at load with a message instead
 * of at bind time. A file without oodc metadata (PyTorch's) is accepted with
 * the architecture inferred from its tensors.
 */
#include "train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

/* ---------------------------------------------------------------- checksum */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return oc_hash64(s, strlen(s) + 1, h);
}

/* Hash of the metadata (except "checksum") and of every tensor, each in name
 * order, so the value does not depend on how the writer or reader orders
 * them. The header's layout (offsets, padding) is not hashed: oc_st_read
 * already checks that it is consistent. */
static enum oc_status checksum(const struct oc_st_tensor *t, int n, const struct oc_st_kv *kv,
                               int nkv, uint64_t *out, struct oc_err *err)
{
    const char **keys = malloc(sizeof *keys * (size_t)(n + nkv + 1));
    if (!keys) return oc_err_set(err, OC_ERR_NOMEM, "checkpoint: out of memory");
    uint64_t h = hash_str(0, "oodc checkpoint 1");
    int m = 0;
    for (int i = 0; i < nkv; i++)
        if (strcmp(kv[i].key, "checksum")) keys[m++] = kv[i].key;
    qsort(keys, (size_t)m, sizeof *keys, cmp_str_ptr);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < nkv; j++)
            if (!strcmp(kv[j].key, keys[i])) {
                h = hash_str(hash_str(h, kv[j].key), kv[j].value);
                break;
            }
    for (int i = 0; i < n; i++) keys[i] = t[i].name;
    qsort(keys, (size_t)n, sizeof *keys, cmp_str_ptr);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (t[j].name != keys[i]) continue;
            h = hash_str(hash_str(h, t[j].name), oc_st_dtype_name(t[j].dtype));
            int64_t r = t[j].rank;
            h = oc_hash64(&r, sizeof r, h);
            h = oc_hash64(t[j].shape, sizeof(int64_t) * (size_t)t[j].rank, h);
            h = oc_hash64(t[j].data, t[j].nbytes, h);
            break;
        }
    free(keys);
    *out = h;
    return OC_OK;
}

/* ---------------------------------------------------------------- save */

struct kvbuf {
    struct oc_st_kv kv[40];
    char val[40][96];
    int n;
};

static void kv_add(struct kvbuf *b, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kv_add(struct kvbuf *b, const char *key, const char *fmt, ...)
{
    OC_ASSERT(b->n < 40);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->val[b->n], sizeof b->val[b->n], fmt, ap);
    va_end(ap);
    b->kv[b->n].key = key;
    b->kv[b->n].value = b->val[b->n];
    b->n++;
}

/* The shortest decimal that reads back as the same double. */
static void kv_double(struct kvbuf *b, const char *key, double v)
{
    char buf[64];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    kv_add(b, key, "%s", buf);
}

static int is_source(const struct oc_node *n)
{
    return n->op == OC_OP_PARAM || n->op == OC_OP_STATE;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

enum oc_status oc_checkpoint_save(const char *path, const struct oc_checkpoint *meta,
                                  struct oc_exec *ex, const struct oc_graph *g,
                                  struct oc_err *err)
{
    int nsrc = 0, nbn = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (is_source(g->nodes[i])) {
            nsrc++;
            if (ends_with(g->nodes[i]->attrs.name, ".running_mean")) nbn++;
        }
    int cap = nsrc + nbn;
    struct oc_buf *bufs = calloc((size_t)nsrc + 1, sizeof *bufs);
    struct oc_st_tensor *t = calloc((size_t)cap + 1, sizeof *t);
    char **names = calloc((size_t)nbn + 1, sizeof *names);
    int64_t nbt = meta->step;
    enum oc_status s = OC_OK;
    int n = 0, nb = 0, nn = 0;
    if (!bufs || !t || !names) {
        s = oc_err_set(err, OC_ERR_NOMEM, "checkpoint %s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < g->nnodes && !s; i++) {
        const struct oc_node *nd = g->nodes[i];
        if (!is_source(nd)) continue;
        s = oc_exec_get(ex, nd->attrs.name, &bufs[nb], err);
        if (s) break;
        t[n++] = oc_st_from_buf(nd->attrs.name, &bufs[nb]);
        nb++;
        if (ends_with(nd->attrs.name, ".running_mean")) {
            size_t len = strlen(nd->attrs.name) - strlen(".running_mean");
            names[nn] = malloc(len + sizeof ".num_batches_tracked");
            if (!names[nn]) {
                s = oc_err_set(err, OC_ERR_NOMEM, "checkpoint %s: out of memory", path);
                break;
            }
            memcpy(names[nn], nd->attrs.name, len);
            strcpy(names[nn] + len, ".num_batches_tracked");
            struct oc_st_tensor c = {.name = names[nn], .dtype = OC_ST_I64, .rank = 0,
                                     .data = &nbt, .nbytes = sizeof nbt};
            t[n++] = c;
            nn++;
        }
    }
    if (s) goto done;

    struct kvbuf kv = {0};
    const struct oc_head_cfg *hc = &meta->model.hc;
    kv_add(&kv, "oodc.checkpoint", "1");
    kv_add(&kv, "format", "pt");
    kv_add(&kv, "arch", "%s", meta->arch);
    kv_add(&kv, "head", "%s", meta->head);
    kv_add(&kv, "head.zdim", "%d", hc->zdim);
    kv_double(&kv, "head.zeta", hc->zeta);
    kv_double(&kv, "head.lambda", hc->lambda);
    kv_double(&kv, "head.mmce_bw", hc->mmce_bw);
    kv_double(&kv, "head.beta", hc->beta);
    kv_add(&kv, "head.test_samples", "%d", hc->test_samples);
    kv_add(&kv, "in_ch", "%d", meta->model.wrn.in_ch);
    kv_add(&kv, "size", "%d", meta->model.wrn.size);
    kv_add(&kv, "nclasses", "%d", meta->model.wrn.nclasses);
    kv_add(&kv, "epoch", "%d", meta->epoch);
    kv_add(&kv, "step", "%" PRId64, meta->step);
    kv_add(&kv, "epochs", "%d", meta->epochs);
    kv_add(&kv, "seed", "%" PRIu64, meta->seed);
    kv_add(&kv, "batch", "%d", meta->batch);
    kv_double(&kv, "lr", meta->lr);
    kv_add(&kv, "lr_schedule", "x0.1 at 50%% and 75%% of the optimizer steps");
    kv_double(&kv, "momentum", meta->momentum);
    kv_double(&kv, "weight_decay", meta->weight_decay);
    kv_add(&kv, "train_limit", "%" PRId64, meta->train_limit);
    kv_add(&kv, "augment", "%d", meta->augment);
    /* long strings do not fit the fixed slots */
    int ndyn = kv.n;
    kv.kv[ndyn].key = "data";
    kv.kv[ndyn].value = meta->data;
    kv.kv[ndyn + 1].key = "history";
    kv.kv[ndyn + 1].value = meta->history ? meta->history : "[]";
    kv.n = ndyn + 2;
    uint64_t h;
    s = checksum(t, n, kv.kv, kv.n, &h, err);
    if (s) goto done;
    kv_add(&kv, "checksum", "%016" PRIx64, h);
    s = oc_st_write(path, t, n, kv.kv, kv.n, err);
done:
    for (int i = 0; i < nb; i++) oc_buf_free(&bufs[i]);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(bufs);
    free(t);
    free(names);
    return s;
}

/* ---------------------------------------------------------------- load */

static enum oc_status meta_str(const struct oc_safetensors *st, const char *path, const char *key,
                               const char **out, struct oc_err *err)
{
    *out = oc_st_meta(st, key);
    if (!*out)
        return oc_err_set(err, OC_ERR_PARSE, "checkpoint %s: metadata has no \"%s\"", path, key);
    return OC_OK;
}

static enum oc_status meta_i64(const struct oc_safetensors *st, const char *path, const char *key,
                               int64_t lo, int64_t hi, int64_t *out, struct oc_err *err)
{
    const char *v;
    enum oc_status s = meta_str(st, path, key, &v, err);
    if (s) return s;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: metadata \"%s\" is \"%s\" (expected an integer in "
                          "%lld..%lld)",
                          path, key, v, (long long)lo, (long long)hi);
    *out = x;
    return OC_OK;
}

static enum oc_status meta_u64(const struct oc_safetensors *st, const char *path, const char *key,
                               uint64_t *out, struct oc_err *err)
{
    const char *v;
    enum oc_status s = meta_str(st, path, key, &v, err);
    if (s) return s;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-')
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: metadata \"%s\" is \"%s\" (expected an unsigned integer)",
                          path, key, v);
    *out = x;
    return OC_OK;
}

static enum oc_status meta_int(const struct oc_safetensors *st, const char *path, const char *key,
                               int lo, int hi, int *out, struct oc_err *err)
{
    int64_t x;
    enum oc_status s = meta_i64(st, path, key, lo, hi, &x, err);
    if (!s) *out = (int)x;
    return s;
}

static enum oc_status meta_double(const struct oc_safetensors *st, const char *path,
                                  const char *key, double *out, struct oc_err *err)
{
    const char *v;
    enum oc_status s = meta_str(st, path, key, &v, err);
    if (s) return s;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: metadata \"%s\" is \"%s\" (expected a finite number)",
                          path, key, v);
    *out = x;
    return OC_OK;
}

static enum oc_status copy_field(char *dst, size_t cap, const char *v, const char *path,
                                 const char *key, struct oc_err *err)
{
    if (strlen(v) >= cap)
        return oc_err_set(err, OC_ERR_PARSE, "checkpoint %s: metadata \"%s\" is too long", path,
                          key);
    strcpy(dst, v);
    return OC_OK;
}

static enum oc_status load_ours(const char *path, struct oc_checkpoint *ck, struct oc_err *err)
{
    const struct oc_safetensors *st = ck->st;
    const char *v, *sum;
    enum oc_status s = meta_str(st, path, "oodc.checkpoint", &v, err);
    if (s) return s;
    if (strcmp(v, "1"))
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "checkpoint %s: format version \"%s\" (this oodc reads version 1)", path,
                          v);
    s = meta_str(st, path, "checksum", &sum, err);
    if (s) return s;
    uint64_t h;
    s = checksum(st->tensors, st->ntensors, st->meta, st->nmeta, &h, err);
    if (s) return s;
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, h);
    if (strcmp(hex, sum))
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: checksum mismatch (stored %s, contents hash to %s): the "
                          "file is corrupt",
                          path, sum, hex);

    int in_ch, size, nclasses;
    const char *arch, *head, *data;
    if ((s = meta_str(st, path, "arch", &arch, err)) ||
        (s = meta_str(st, path, "head", &head, err)) ||
        (s = meta_str(st, path, "data", &data, err)) ||
        (s = meta_int(st, path, "in_ch", 1, OC_DATA_MAX_CHANNELS, &in_ch, err)) ||
        (s = meta_int(st, path, "size", 1, 4096, &size, err)) ||
        (s = meta_int(st, path, "nclasses", 1, 100000, &nclasses, err)))
        return s;
    if ((s = copy_field(ck->arch, sizeof ck->arch, arch, path, "arch", err)) ||
        (s = copy_field(ck->head, sizeof ck->head, head, path, "head", err)) ||
        (s = copy_field(ck->data, sizeof ck->data, data, path, "data", err)))
        return s;
    struct oc_err e = {0};
    if (oc_train_model_cfg(arch, head, in_ch, size, nclasses, &ck->model, &e))
        return oc_err_set(err, OC_ERR_PARSE, "checkpoint %s: %s", path, e.msg);
    struct oc_head_cfg *hc = &ck->model.hc;
    int64_t step, limit;
    if ((s = meta_int(st, path, "head.zdim", 1, 1 << 20, &hc->zdim, err)) ||
        (s = meta_double(st, path, "head.zeta", &hc->zeta, err)) ||
        (s = meta_double(st, path, "head.lambda", &hc->lambda, err)) ||
        (s = meta_double(st, path, "head.mmce_bw", &hc->mmce_bw, err)) ||
        (s = meta_double(st, path, "head.beta", &hc->beta, err)) ||
        (s = meta_int(st, path, "head.test_samples", 1, 1 << 20, &hc->test_samples, err)) ||
        (s = meta_int(st, path, "epoch", 0, 1 << 30, &ck->epoch, err)) ||
        (s = meta_i64(st, path, "step", 0, INT32_MAX, &step, err)) ||
        (s = meta_int(st, path, "epochs", 0, 1 << 30, &ck->epochs, err)) ||
        (s = meta_u64(st, path, "seed", &ck->seed, err)) ||
        (s = meta_int(st, path, "batch", 1, 1 << 30, &ck->batch, err)) ||
        (s = meta_double(st, path, "lr", &ck->lr, err)) ||
        (s = meta_double(st, path, "momentum", &ck->momentum, err)) ||
        (s = meta_double(st, path, "weight_decay", &ck->weight_decay, err)) ||
        (s = meta_i64(st, path, "train_limit", 0, INT64_MAX, &limit, err)) ||
        (s = meta_int(st, path, "augment", 0, 1, &ck->augment, err)))
        return s;
    ck->step = step;
    ck->train_limit = limit;
    ck->history = oc_st_meta(st, "history");
    return OC_OK;
}

/* The architecture of a PyTorch WideResNet state_dict (bench/peer/wrn.py). */
static enum oc_status load_foreign(const char *path, struct oc_checkpoint *ck, struct oc_err *err)
{
    const struct oc_safetensors *st = ck->st;
    const struct oc_st_tensor *c1 = oc_st_find(st, "conv1.weight");
    const struct oc_st_tensor *fc = oc_st_find(st, "fc.weight");
    if (!c1 || !fc || c1->rank != 4 || fc->rank != 2)
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: no oodc metadata, and not a Wide ResNet state_dict "
                          "(needs conv1.weight [16,C,3,3] and fc.weight [K,64*width])",
                          path);
    int in_ch = (int)c1->shape[1], nclasses = (int)fc->shape[0];
    int64_t feat = fc->shape[1];
    if (feat % 64 || feat == 0)
        return oc_err_set(err, OC_ERR_PARSE,
                          "checkpoint %s: fc.weight has %lld inputs, not a multiple of 64", path,
                          (long long)feat);
    int nb = 0;
    for (;; nb++) {
        char name[96];
        snprintf(name, sizeof name, "block1.layer.%d.conv1.weight", nb);
        if (!oc_st_find(st, name)) break;
    }
    if (nb == 0)
        return oc_err_set(err, OC_ERR_PARSE, "checkpoint %s: no block1.layer.0.conv1.weight", path);
    snprintf(ck->arch, sizeof ck->arch, "wrn-%d-%d", 6 * nb + 4, (int)(feat / 64));
    snprintf(ck->head, sizeof ck->head, "baseline");
    struct oc_err e = {0};
    if (oc_train_model_cfg(ck->arch, ck->head, in_ch, in_ch == 1 ? 28 : 32, nclasses, &ck->model,
                           &e))
        return oc_err_set(err, OC_ERR_PARSE, "checkpoint %s: inferred %s: %s", path, ck->arch,
                          e.msg);
    const char *data = oc_st_meta(st, "data");
    snprintf(ck->data, sizeof ck->data, "%s", data ? data : (in_ch == 1 ? "fashion-mnist" : ""));
    ck->foreign = 1;
    return OC_OK;
}

static int is_normalize(const char *name)
{
    return !strcmp(name, "normalize.mean") || !strcmp(name, "normalize.std");
}

/* Checks one param/state node against the file. */
static enum oc_status check_tensor(const struct oc_checkpoint *ck, const struct oc_node *n,
                                   const char *path, struct oc_err *err)
{
    const struct oc_st_tensor *t = oc_st_find(ck->st, n->attrs.name);
    if (!t) {
        if (ck->foreign && is_normalize(n->attrs.name)) return OC_OK;
        return oc_err_set(err, OC_ERR_SHAPE, "checkpoint %s: no tensor \"%s\" (%s %s%s of %s)",
                          path, n->attrs.name, oc_op_name(n->op), oc_dtype_name(n->dtype),
                          SHP(n->shape), ck->arch);
    }
    struct oc_shape sh = oc_shape_make(t->rank, t->shape);
    int dt_ok = t->dtype == OC_ST_F32 || t->dtype == OC_ST_F64;
    if (!dt_ok || !oc_shape_eq(&sh, &n->shape))
        return oc_err_set(err, dt_ok ? OC_ERR_SHAPE : OC_ERR_DTYPE,
                          "checkpoint %s: tensor \"%s\" is %s%s, the model (%s) needs %s%s", path,
                          n->attrs.name, oc_st_dtype_name(t->dtype), SHP(sh), ck->arch,
                          oc_dtype_name(n->dtype), SHP(n->shape));
    return OC_OK;
}

enum oc_status oc_checkpoint_load(const char *path, struct oc_checkpoint **out,
                                  struct oc_err *err)
{
    *out = NULL;
    struct oc_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->st = calloc(1, sizeof *ck->st))) {
        free(ck);
        return oc_err_set(err, OC_ERR_NOMEM, "checkpoint %s: out of memory", path);
    }
    enum oc_status s = oc_st_read(path, ck->st, err);
    if (!s && !(ck->path = oc_arena_strdup(&ck->st->arena, path)))
        s = oc_err_set(err, OC_ERR_NOMEM, "checkpoint %s: out of memory", path);
    if (!s) s = oc_st_meta(ck->st, "oodc.checkpoint") ? load_ours(path, ck, err)
                                                      : load_foreign(path, ck, err);
    if (!s) {
        /* Every tensor of the inference graph must be there with its shape. */
        struct oc_graph *g = NULL;
        s = oc_train_eval_graph(&ck->model, 1, &g, err);
        for (int i = 0; !s && i < g->nnodes; i++)
            if (is_source(g->nodes[i])) s = check_tensor(ck, g->nodes[i], path, err);
        oc_graph_free(g);
    }
    if (!s && !ck->foreign) {
        const struct oc_st_tensor *m = oc_st_find(ck->st, "normalize.std");
        for (int64_t i = 0; m && i < m->shape[0]; i++) {
            float v = m->dtype == OC_ST_F32 ? ((const float *)m->data)[i]
                                            : (float)((const double *)m->data)[i];
            if (!(v > 0) || !isfinite(v))
                s = oc_err_set(err, OC_ERR_NUMERIC,
                               "checkpoint %s: normalize.std[%lld] = %g is not a positive number",
                               path, (long long)i, (double)v);
        }
    }
    if (s) {
        oc_checkpoint_free(ck);
        return s;
    }
    *out = ck;
    return OC_OK;
}

void oc_checkpoint_free(struct oc_checkpoint *ck)
{
    if (!ck) return;
    if (ck->st) {
        oc_st_free(ck->st);
        free(ck->st);
    }
    free(ck);
}

enum oc_status oc_checkpoint_bind(const struct oc_checkpoint *ck, struct oc_exec *ex,
                                  const struct oc_graph *g, struct oc_err *err)
{
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (!is_source(n)) continue;
        const struct oc_st_tensor *t = oc_st_find(ck->st, n->attrs.name);
        struct oc_buf b;
        enum oc_status s;
        if (!t && ck->foreign && is_normalize(n->attrs.name)) {
            /* A foreign model takes its input as it is: identity normalization. */
            s = oc_init_fill(n, 0, &b, err);
            if (!s) {
                double v = strcmp(n->attrs.name, "normalize.std") ? 0.0 : 1.0;
                for (int64_t k = 0; k < oc_shape_numel(&b.shape); k++) oc_buf_set(&b, k, v);
            }
        } else {
            s = check_tensor(ck, n, ck->path ? ck->path : "(in memory)", err);
            if (!s) s = oc_st_to_buf(t, &b, err);
        }
        if (s) return s;
        s = oc_exec_set(ex, n->attrs.name, &b, err);
        oc_buf_free(&b);
        if (s) return s;
    }
    return OC_OK;
}
