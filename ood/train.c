/* train.c - the trainer: the paper's recipe (SGD with Nesterov momentum 0.9,
 * weight decay 5e-4, batch 128, lr 0.1 dropped x0.1 at 50% and 75% of
 * training, random crop + horizontal flip) around one compiled training
 * step, with validation, progress output, atomic per-epoch checkpoints,
 * train.json, resume and a NaN guard.
 *
 * Data flow: data spec -> train split -> train/validation split (seeded)
 * -> per-channel statistics into the model's "normalize.*" state -> the
 * batcher (shuffle + augmentation keyed by (seed, epoch, position), raw
 * pixels) -> training-step executable (x, labels, lr, step) -> "loss",
 * "correct" -> per-epoch validation on the inference executable ->
 * checkpoint + train.json in the output folder.
 *
 * Resume is exact because everything a step depends on is either in the
 * checkpoint (params, momentum buffers, BN statistics, normalization, the
 * global step that drives the lr schedule and the RNG counter) or a pure
 * function of the configuration and the epoch (the batches): a resumed run
 * starts at the epoch after the last checkpoint and, on the same machine
 * with the same thread count, reproduces the uninterrupted run bit for bit.
 */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct oc_train_cfg oc_train_cfg_default(void)
{
    struct oc_train_cfg c;
    memset(&c, 0, sizeof c);
    c.head = "baseline";
    c.device = "cpu";
    c.epochs = 5;
    c.batch = 128;
    c.lr = 0.1;
    c.momentum = 0.9;
    c.weight_decay = 5e-4;
    c.augment = 1;
    c.fusion = 1;
    c.progress = -1;
    return c;
}

/* ---------------------------------------------------------------- data */

static int spec_is(const char *spec, const char *kind, const char **arg)
{
    size_t n = strlen(kind);
    if (strncmp(spec, kind, n) || (spec[n] && spec[n] != ':')) return 0;
    *arg = spec[n] == ':' && spec[n + 1] ? spec + n + 1 : NULL;
    return 1;
}

enum oc_status oc_train_data_shape(const char *spec, int *in_ch, int *size, int *nclasses,
                                   struct oc_err *err)
{
    const char *arg;
    if (!spec) return oc_err_set(err, OC_ERR_INVALID, "no dataset given (fashion-mnist[:DIR] or cifar10:DIR)");
    if (spec_is(spec, "fashion-mnist", &arg)) {
        *in_ch = 1, *size = 28, *nclasses = 10;
        return OC_OK;
    }
    if (spec_is(spec, "cifar10", &arg)) {
        if (!arg) {
            struct oc_dataset d;
            return oc_data_load_cifar10(NULL, 1, &d, err); /* its message says where to get it */
        }
        *in_ch = 3, *size = 32, *nclasses = 10;
        return OC_OK;
    }
    return oc_err_set(err, OC_ERR_INVALID,
                      "unknown dataset '%s' (expected fashion-mnist[:DIR] or cifar10:DIR)", spec);
}

enum oc_status oc_train_data_load(const char *spec, int train, struct oc_dataset *out,
                                  struct oc_err *err)
{
    int c, sz, k;
    enum oc_status s = oc_train_data_shape(spec, &c, &sz, &k, err);
    if (s) return s;
    const char *arg;
    struct oc_dataset d;
    memset(&d, 0, sizeof d);
    if (spec_is(spec, "fashion-mnist", &arg))
        s = oc_data_load_fashion_mnist(arg, train, &d, err);
    else if (spec_is(spec, "cifar10", &arg))
        s = oc_data_load_cifar10(arg, train, &d, err);
    if (s) return s;
    if (d.c != c || d.h != sz || d.w != sz || d.nclasses > k || !d.labels) {
        s = oc_err_set(err, OC_ERR_SHAPE,
                       "%s: %d x %d x %d images with %d classes, expected %d x %d x %d with %d",
                       d.source ? d.source : spec, d.c, d.h, d.w, d.nclasses, c, sz, sz, k);
        oc_dataset_free(&d);
        return s;
    }
    d.nclasses = k;
    *out = d;
    return OC_OK;
}

enum oc_status oc_train_data_split(const struct oc_dataset *full, int64_t limit, uint64_t seed,
                                   struct oc_dataset *train, struct oc_dataset *val,
                                   struct oc_err *err)
{
    int64_t nval = full->n >= 10000 ? 5000 : full->n / 10;
    if (nval < 1 || full->n - nval < 1)
        return oc_err_set(err, OC_ERR_INVALID, "%s: %lld images are too few to split off a validation set",
                          full->source ? full->source : "dataset", (long long)full->n);
    struct oc_dataset a = {0}, b = {0};
    enum oc_status s = oc_data_split(full, full->n - nval, seed, &a, &b, err);
    if (s) return s;
    /* Subsets are drawn with their own seeds, so --limit never changes
     * which images are held out for validation. */
    if (!s && limit > 0 && limit < a.n) {
        struct oc_dataset t;
        s = oc_data_split(&a, limit, seed ^ 0x6c696d6974ull, &t, NULL, err);
        if (!s) oc_dataset_free(&a), a = t;
    }
    if (!s && limit > 0 && limit < b.n) {
        struct oc_dataset t;
        s = oc_data_split(&b, limit, seed ^ 0x76616c6964ull, &t, NULL, err);
        if (!s) oc_dataset_free(&b), b = t;
    }
    if (s) {
        oc_dataset_free(&a);
        oc_dataset_free(&b);
        return s;
    }
    *train = a;
    *val = b;
    return OC_OK;
}

/* ---------------------------------------------------------------- small helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* mkdir -p */
static enum oc_status make_dirs(const char *dir, struct oc_err *err)
{
    char *p = strdup(dir);
    if (!p) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q) continue;
        char c = *q;
        *q = 0;
        if (mkdir(p, 0777) && errno != EEXIST) {
            enum oc_status s = oc_err_set(err, OC_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return s;
        }
        *q = c;
        if (!c) break;
    }
    struct stat sb;
    int ok = stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
    free(p);
    if (!ok) return oc_err_set(err, OC_ERR_IO, "%s is not a folder", dir);
    return OC_OK;
}

/* Removes temp files ("NAME.tmp.PID") that a killed run left behind while
 * writing NAME, when process PID no longer exists. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    static const char *const names[] = {OC_CHECKPOINT_FILE ".tmp.", "train.json.tmp."};
    struct dirent *e;
    while ((e = readdir(d))) {
        for (int i = 0; i < 2; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(e->d_name, names[i], n)) continue;
            char *end;
            long pid = strtol(e->d_name + n, &end, 10);
            if (*end || pid <= 0 || pid == (long)getpid()) continue;
            if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            char *p = join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    }
    closedir(d);
}

/* A growing string. */
struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void sb_json_str(struct sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
        else if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

/* fsyncs the directory holding path (best effort: some file systems refuse
 * it, and the data itself is already synced). */
static void sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) > 0 ? (int)(slash - path) : 1, path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* Writes text to path through a temp file and a rename. */
static enum oc_status write_atomic(const char *path, const char *text, struct oc_err *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    enum oc_status s = OC_OK;
    if (fd < 0) {
        s = oc_err_set(err, OC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s = oc_err_set(err, OC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (!s && fsync(fd)) s = oc_err_set(err, OC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (close(fd) && !s) s = oc_err_set(err, OC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path))
        s = oc_err_set(err, OC_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s) unlink(tmp);
    free(tmp);
    if (!s) sync_dir_of(path); /* the rename itself survives a power loss */
    return s;
}

static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* ---------------------------------------------------------------- the run */

struct run {
    const struct oc_train_cfg *c;
    FILE *log;
    int bar;              /* progress bar (terminal) instead of log lines */
    const char *model, *head, *data;
    int batch, epochs;
    double lr;
    struct oc_model_cfg m;
    char *ck_path, *json_path;
    struct oc_dataset full, train, val;
    float mean[OC_DATA_MAX_CHANNELS], std[OC_DATA_MAX_CHANNELS];
    struct oc_rt *rt;
    struct oc_graph *tg, *eg;
    struct oc_exec *tx, *ex;
    struct oc_batcher *bat;
    struct oc_checkpoint *ck; /* the one resumed from */
    int64_t nbatches, total_steps, step;
    int epoch;             /* epochs completed */
    struct sbuf history;   /* JSON array */
    int last_ck_epoch;     /* epoch of the last checkpoint written or resumed (-1: none) */
    double compile_s;
};

static void say(struct run *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct run *R, const char *fmt, ...)
{
    if (R->c->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    if (R->bar) fputs("\r\033[K", R->log);
    vfprintf(R->log, fmt, ap);
    fputc('\n', R->log);
    fflush(R->log);
    va_end(ap);
}

static enum oc_status write_json(struct run *R, const char *status, const char *message,
                                 struct oc_err *err)
{
    const struct oc_train_cfg *c = R->c;
    struct sbuf b = {0};
    sb_printf(&b, "{\n  \"model\": ");
    sb_json_str(&b, R->model);
    sb_printf(&b, ",\n  \"head\": ");
    sb_json_str(&b, R->head);
    sb_printf(&b, ",\n  \"data\": ");
    sb_json_str(&b, R->data);
    sb_printf(&b, ",\n  \"device\": ");
    sb_json_str(&b, c->device ? c->device : "cpu");
    sb_printf(&b,
              ",\n  \"threads\": %d,\n  \"fusion\": %s,\n  \"epochs\": %d,\n  \"batch\": %d,\n"
              "  \"lr\": %.10g,\n  \"lr_schedule\": \"x0.1 at 50%% and 75%% of the optimizer steps\",\n"
              "  \"momentum\": %.10g,\n  \"weight_decay\": %.10g,\n  \"seed\": %" PRIu64 ",\n"
              "  \"train_limit\": %" PRId64 ",\n  \"augment\": %s,\n  \"train_images\": %" PRId64 ",\n"
              "  \"val_images\": %" PRId64 ",\n  \"steps_per_epoch\": %" PRId64 ",\n"
              "  \"normalize_mean\": [",
              oc_rt_nthreads(R->rt), c->fusion ? "true" : "false", R->epochs, R->batch, R->lr,
              c->momentum, c->weight_decay, c->seed, c->train_limit, c->augment ? "true" : "false",
              R->train.n, R->val.n, R->nbatches);
    for (int i = 0; i < R->m.wrn.in_ch; i++) sb_printf(&b, "%s%.9g", i ? ", " : "", (double)R->mean[i]);
    sb_printf(&b, "],\n  \"normalize_std\": [");
    for (int i = 0; i < R->m.wrn.in_ch; i++) sb_printf(&b, "%s%.9g", i ? ", " : "", (double)R->std[i]);
    sb_printf(&b, "],\n  \"epochs_done\": %d,\n  \"steps_done\": %" PRId64 ",\n  \"status\": ",
              R->epoch, R->step);
    sb_json_str(&b, status);
    if (message) {
        sb_printf(&b, ",\n  \"message\": ");
        sb_json_str(&b, message);
    }
    sb_printf(&b, ",\n  \"checkpoint\": ");
    sb_json_str(&b, OC_CHECKPOINT_FILE);
    sb_printf(&b, ",\n  \"history\": %s\n}\n", R->history.s ? R->history.s : "[]");
    enum oc_status s = b.oom ? oc_err_set(err, OC_ERR_NOMEM, "out of memory")
                             : write_atomic(R->json_path, b.s, err);
    free(b.s);
    return s;
}

static enum oc_status save_checkpoint(struct run *R, struct oc_err *err)
{
    struct oc_checkpoint meta;
    memset(&meta, 0, sizeof meta);
    meta.model = R->m;
    snprintf(meta.arch, sizeof meta.arch, "%s", R->model);
    snprintf(meta.head, sizeof meta.head, "%s", R->head);
    snprintf(meta.data, sizeof meta.data, "%s", R->data);
    meta.epoch = R->epoch;
    meta.step = R->step;
    meta.epochs = R->epochs;
    meta.seed = R->c->seed;
    meta.batch = R->batch;
    meta.lr = R->lr;
    meta.momentum = R->c->momentum;
    meta.weight_decay = R->c->weight_decay;
    meta.train_limit = R->c->train_limit;
    meta.augment = R->c->augment;
    meta.history = R->history.s;
    return oc_checkpoint_save(R->ck_path, &meta, R->tx, R->tg, err);
}

/* The checkpoint's configuration must be the one asked for. */
static enum oc_status check_resume(struct run *R, struct oc_err *err)
{
    const struct oc_checkpoint *k = R->ck;
    const struct oc_train_cfg *c = R->c;
    const char *p = R->ck_path;
    if (k->foreign)
        return oc_err_set(err, OC_ERR_INVALID, "--resume: %s is not an oodc training checkpoint", p);
#define SAME_STR(field, given, name)                                                              \
    if ((given) && strcmp((given), k->field))                                                     \
        return oc_err_set(err, OC_ERR_INVALID,                                                    \
                          "--resume: %s was trained with %s %s, not %s", p, name, k->field, given);
    SAME_STR(arch, c->model, "model");
    SAME_STR(head, c->head, "head");
    SAME_STR(data, c->data, "data");
#undef SAME_STR
#define SAME_NUM(a, b, name, fmt)                                                                 \
    if ((a) != (b))                                                                               \
        return oc_err_set(err, OC_ERR_INVALID, "--resume: %s was trained with %s " fmt ", not " fmt, \
                          p, name, b, a);
    if (c->batch > 0) SAME_NUM(c->batch, k->batch, "batch", "%d");
    SAME_NUM(c->seed, k->seed, "seed", "%" PRIu64);
    SAME_NUM(c->momentum, k->momentum, "momentum", "%g");
    SAME_NUM(c->weight_decay, k->weight_decay, "weight decay", "%g");
    SAME_NUM(c->train_limit > 0 ? c->train_limit : 0, k->train_limit, "limit", "%" PRId64);
    SAME_NUM(c->augment ? 1 : 0, k->augment, "augment", "%d");
#undef SAME_NUM
    R->model = k->arch;
    R->head = k->head;
    R->data = k->data;
    R->batch = k->batch;
    /* A new learning rate is allowed (fine-tuning); the run then differs
     * from an uninterrupted one, which oc_train says. */
    R->lr = c->lr > 0 ? c->lr : k->lr;
    return OC_OK;
}

static void progress(struct run *R, int epoch, int64_t k, double loss_sum, int64_t right,
                     int64_t seen, double t_epoch, int final)
{
    if (R->c->quiet) return;
    double ips = t_epoch > 0 ? (double)seen / t_epoch : 0;
    double per_step = k > 0 ? t_epoch / (double)k : 0;
    int64_t left = R->total_steps - R->step;
    char eta[32];
    fmt_duration(eta, sizeof eta, per_step * (double)left);
    double loss = k ? loss_sum / (double)k : 0, acc = seen ? 100.0 * (double)right / (double)seen : 0;
    if (R->bar) {
        int width = 24, fill = (int)(width * k / (R->nbatches ? R->nbatches : 1));
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[width] = 0;
        fprintf(R->log, "\r\033[Kepoch %d/%d [%s] %" PRId64 "/%" PRId64
                        " loss %.4f acc %.2f%% %.0f img/s ETA %s",
                epoch + 1, R->epochs, bar, k, R->nbatches, loss, acc, ips, eta);
        fflush(R->log);
    } else if (!final) {
        fprintf(R->log, "epoch %d/%d step %" PRId64 "/%" PRId64 " loss %.4f acc %.2f%% %.0f img/s ETA %s\n",
                epoch + 1, R->epochs, k, R->nbatches, loss, acc, ips, eta);
        fflush(R->log);
    }
}

static enum oc_status set_scalar(struct oc_exec *ex, const char *name, enum oc_dtype dt, double v,
                                 struct oc_err *err)
{
    struct oc_buf b;
    struct oc_shape s = OC_SCALAR;
    if (oc_buf_alloc(&b, dt, &s)) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    oc_buf_set(&b, 0, v);
    enum oc_status st = oc_exec_set(ex, name, &b, err);
    oc_buf_free(&b);
    return st;
}

/* One epoch of training steps. */
/* Where a stopped run leaves the user: the checkpoint that is kept. */
static void kept_checkpoint(const struct run *R, char *where, size_t n)
{
    if (R->last_ck_epoch >= 1)
        snprintf(where, n, "the last good checkpoint (epoch %d) is kept in %s", R->last_ck_epoch,
                 R->ck_path);
    else
        snprintf(where, n, "no checkpoint was written");
}

static enum oc_status run_epoch(struct run *R, struct oc_train_result *res, double *loss_out,
                                double *acc_out, double *ips_out, struct oc_err *err)
{
    int epoch = R->epoch;
    enum oc_status s = oc_batcher_start_epoch(R->bat, epoch, err);
    if (s) return s;
    const int64_t B = R->batch;
    struct oc_shape xs = OC_SHAPE(B, R->m.wrn.in_ch, R->m.wrn.size, R->m.wrn.size), ls = OC_SHAPE(B);
    double t0 = now_s(), t_last = t0;
    double loss_sum = 0;
    int64_t right = 0, seen = 0, k = 0;
    const float *img;
    const int32_t *lab;
    int64_t n;
    int every = (int)(R->nbatches / 10 > 0 ? R->nbatches / 10 : 1);
    while (oc_batcher_next(R->bat, &img, &lab, &n)) {
        OC_ASSERT(n == B); /* drop_last */
        struct oc_buf xb = {OC_F32, xs, (void *)img}, lb = {OC_I32, ls, (void *)lab};
        double lr = oc_train_lr_at(R->lr, R->step, R->total_steps);
        if ((s = oc_exec_set(R->tx, "x", &xb, err)) || (s = oc_exec_set(R->tx, "labels", &lb, err)) ||
            (s = set_scalar(R->tx, "lr", OC_F32, lr, err)) ||
            (s = set_scalar(R->tx, "step", OC_I32, (double)R->step, err)) ||
            (s = oc_exec_run(R->tx, R->c->seed, err))) {
            if (s == OC_ERR_NUMERIC) {
                /* OC_CHECK_NUMERICS stopped the step: say where in training */
                char msg[sizeof err->msg], where[256];
                snprintf(msg, sizeof msg, "%s", err->msg);
                oc_err_clear(err);
                kept_checkpoint(R, where, sizeof where);
                return oc_err_set(err, OC_ERR_NUMERIC,
                                  "training diverged at epoch %d, step %" PRId64 "/%" PRId64
                                  " (global step %" PRId64 ", lr %g): %s; stopped: %s",
                                  epoch + 1, k + 1, R->nbatches, R->step + 1, lr, msg, where);
            }
            return s;
        }
        struct oc_buf lo = {0}, co = {0};
        if ((s = oc_exec_get(R->tx, "loss", &lo, err)) || (s = oc_exec_get(R->tx, "correct", &co, err))) {
            oc_buf_free(&lo);
            return s;
        }
        double loss = oc_buf_get(&lo, 0);
        int64_t corr = (int64_t)oc_buf_get(&co, 0);
        oc_buf_free(&lo);
        oc_buf_free(&co);
        if (!isfinite(loss)) {
            char where[256];
            kept_checkpoint(R, where, sizeof where);
            return oc_err_set(err, OC_ERR_NUMERIC,
                              "training diverged: the loss is %s at epoch %d, step %" PRId64 "/%" PRId64
                              " (global step %" PRId64 ", lr %g); stopped: %s; rerun with "
                              "OC_CHECK_NUMERICS=1 (oodc --check-numerics) to name the first kernel "
                              "and graph node that produced it",
                              isnan(loss) ? "NaN" : "infinite", epoch + 1, k + 1, R->nbatches,
                              R->step + 1, lr, where);
        }
        loss_sum += loss;
        right += corr;
        seen += n;
        k++;
        R->step++;
        res->steps_done = R->step;
        double t = now_s();
        if (R->bar ? (t - t_last > 0.25 || k == R->nbatches) : (k % every == 0 && k < R->nbatches)) {
            progress(R, epoch, k, loss_sum, right, seen, t - t0, 0);
            t_last = t;
        }
    }
    double dt = now_s() - t0;
    *loss_out = k ? loss_sum / (double)k : 0;
    *acc_out = seen ? 100.0 * (double)right / (double)seen : 0;
    *ips_out = dt > 0 ? (double)seen / dt : 0;
    return OC_OK;
}

static void run_free(struct run *R)
{
    oc_batcher_free(R->bat);
    oc_exec_free(R->tx);
    oc_exec_free(R->ex);
    oc_graph_free(R->tg);
    oc_graph_free(R->eg);
    oc_rt_free(R->rt);
    oc_dataset_free(&R->full);
    oc_dataset_free(&R->train);
    oc_dataset_free(&R->val);
    oc_checkpoint_free(R->ck);
    free(R->ck_path);
    free(R->json_path);
    free(R->history.s);
}

/* Checks, loads and compiles everything; nothing is written. */
static enum oc_status setup(struct run *R, struct oc_err *err)
{
    const struct oc_train_cfg *c = R->c;
    enum oc_status s;
    if (!c->out_dir || !*c->out_dir) return oc_err_set(err, OC_ERR_INVALID, "no output folder given");
    if (c->epochs < 1 && !c->resume)
        return oc_err_set(err, OC_ERR_INVALID, "epochs %d must be at least 1", c->epochs);
    if (!c->resume && c->batch < 1) return oc_err_set(err, OC_ERR_INVALID, "batch %d must be at least 1", c->batch);
    if (!c->resume && !(c->lr > 0 && isfinite(c->lr)))
        return oc_err_set(err, OC_ERR_INVALID, "learning rate %g must be a positive number", c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1) || !(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return oc_err_set(err, OC_ERR_INVALID, "momentum %g must be in [0, 1) and weight decay %g >= 0",
                          c->momentum, c->weight_decay);
    const char *dev = c->device ? c->device : "cpu";
    if (strcmp(dev, "cpu") && strcmp(dev, "cuda"))
        return oc_err_set(err, OC_ERR_INVALID, "unknown device '%s' (cpu or cuda)", dev);
    R->ck_path = join(c->out_dir, OC_CHECKPOINT_FILE);
    R->json_path = join(c->out_dir, "train.json");
    if (!R->ck_path || !R->json_path) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    R->model = c->model;
    R->head = c->head ? c->head : "baseline";
    R->data = c->data;
    R->batch = c->batch;
    R->lr = c->lr;
    R->epochs = c->epochs;
    R->last_ck_epoch = -1;
    if (c->resume) {
        if (access(R->ck_path, F_OK))
            return oc_err_set(err, OC_ERR_IO, "--resume: no checkpoint at %s", R->ck_path);
        if ((s = oc_checkpoint_load(R->ck_path, &R->ck, err)) || (s = check_resume(R, err))) return s;
        R->epoch = R->ck->epoch;
        R->step = R->ck->step;
        R->last_ck_epoch = R->ck->epoch;
        if (R->epochs < 1) R->epochs = R->ck->epochs;
        if (R->epoch >= R->epochs) return OC_OK; /* nothing to do: oc_train says so */
    } else if (!access(R->ck_path, F_OK)) {
        return oc_err_set(err, OC_ERR_INVALID,
                          "%s already holds a checkpoint: add --resume to continue it, or choose "
                          "another output folder",
                          c->out_dir);
    }
    int in_ch, size, k;
    if ((s = oc_train_data_shape(R->data, &in_ch, &size, &k, err))) return s;
    if ((s = oc_train_model_cfg(R->model, R->head, in_ch, size, k, &R->m, err))) return s;

    /* The device first: a missing backend is reported before any loading. */
    if ((s = oc_rt_new(&R->rt, c->threads, 0, err))) return s;
    if (strcmp(dev, "cpu")) {
        struct oc_graph *pg = oc_graph_new("device-probe");
        oc_output(pg, "y", oc_neg(pg, oc_input(pg, "x", OC_F32, OC_SHAPE(1))));
        struct oc_compile_opts o = oc_compile_defaults();
        o.rt = R->rt;
        struct oc_exec *pe = NULL;
        struct oc_err e = {0};
        s = oc_compile(pg, dev, &o, &pe, &e);
        oc_exec_free(pe);
        oc_graph_free(pg);
        if (s) return oc_err_set(err, s, "%s", e.msg); /* oc_compile names the device */
    }

    if ((s = oc_train_data_load(R->data, 1, &R->full, err))) return s;
    if ((s = oc_train_data_split(&R->full, c->train_limit, c->seed, &R->train, &R->val, err))) return s;
    oc_dataset_free(&R->full);
    if ((s = oc_data_channel_stats(&R->train, R->mean, R->std, err))) return s;
    for (int i = 0; i < in_ch; i++)
        if (!(R->std[i] > 0))
            return oc_err_set(err, OC_ERR_NUMERIC, "%s: channel %d is constant (std 0): cannot normalize",
                              R->train.source, i);

    struct oc_batcher_opts bo;
    memset(&bo, 0, sizeof bo);
    bo.batch = R->batch;
    bo.seed = c->seed;
    bo.shuffle = 1;
    bo.drop_last = 1;
    bo.crop_pad = c->augment ? (size <= 28 ? 2 : 4) : 0;
    bo.flip = c->augment;
    bo.has_norm = 0; /* the model normalizes */
    if ((s = oc_batcher_new(&R->train, &bo, &R->bat, err))) return s;
    R->nbatches = oc_batcher_nbatches(R->bat);
    R->total_steps = R->nbatches * R->epochs;
    if (R->total_steps > INT32_MAX)
        return oc_err_set(err, OC_ERR_INVALID, "%" PRId64 " steps overflow the i32 step counter", R->total_steps);
    if (R->ck && R->ck->step != (int64_t)R->ck->epoch * R->nbatches)
        return oc_err_set(err, OC_ERR_INVALID,
                          "--resume: %s is at step %" PRId64 " after %d epochs, but an epoch here has %" PRId64
                          " steps (was the dataset changed?)",
                          R->ck_path, R->ck->step, R->ck->epoch, R->nbatches);

    double t0 = now_s();
    if ((s = oc_train_step_graph(&R->m, R->batch, c->momentum, c->weight_decay, &R->tg, err)) ||
        (s = oc_train_eval_graph(&R->m, R->batch, &R->eg, err)))
        return s;
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = R->rt;
    o.fusion = c->fusion;
    struct oc_err e = {0};
    if ((s = oc_compile(R->tg, dev, &o, &R->tx, &e)) || (s = oc_compile(R->eg, dev, &o, &R->ex, &e)))
        return oc_err_set(err, s, "%s", e.msg);
    R->compile_s = now_s() - t0;
    if (R->ck) {
        if ((s = oc_checkpoint_bind(R->ck, R->tx, R->tg, err))) return s;
        const struct oc_st_tensor *m = oc_st_find(R->ck->st, "normalize.mean");
        const struct oc_st_tensor *sd = oc_st_find(R->ck->st, "normalize.std");
        for (int i = 0; i < in_ch; i++) {
            R->mean[i] = ((const float *)m->data)[i];
            R->std[i] = ((const float *)sd->data)[i];
        }
        const char *h = R->ck->history ? R->ck->history : "[]";
        sb_printf(&R->history, "%s", h);
    } else {
        if ((s = oc_train_init_params(R->tx, R->tg, c->seed, err))) return s;
        struct oc_buf mb, sb;
        struct oc_shape cs = OC_SHAPE(in_ch);
        if (oc_buf_alloc(&mb, OC_F32, &cs)) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        if (oc_buf_alloc(&sb, OC_F32, &cs)) {
            oc_buf_free(&mb);
            return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        }
        memcpy(mb.data, R->mean, sizeof(float) * (size_t)in_ch);
        memcpy(sb.data, R->std, sizeof(float) * (size_t)in_ch);
        s = oc_exec_set(R->tx, "normalize.mean", &mb, err);
        if (!s) s = oc_exec_set(R->tx, "normalize.std", &sb, err);
        oc_buf_free(&mb);
        oc_buf_free(&sb);
        if (s) return s;
        sb_printf(&R->history, "[]");
    }
    return R->history.oom ? oc_err_set(err, OC_ERR_NOMEM, "out of memory") : OC_OK;
}

enum oc_status oc_train(const struct oc_train_cfg *c, struct oc_train_result *r,
                        struct oc_err *err)
{
    struct oc_train_result res_local;
    struct oc_train_result *res = r ? r : &res_local;
    memset(res, 0, sizeof *res);
    struct run R;
    memset(&R, 0, sizeof R);
    R.c = c;
    R.log = c->log ? c->log : stderr;
    R.bar = c->progress == 1 || (c->progress < 0 && isatty(fileno(R.log)));

    enum oc_status s = setup(&R, err);
    if (s) {
        run_free(&R);
        return s;
    }
    res->epochs_done = R.epoch;
    res->steps_done = R.step;
    if (R.epoch >= R.epochs) {
        say(&R, "oodc train: %s has already trained %d of %d epochs: nothing to do", R.ck_path,
            R.epoch, R.epochs);
        run_free(&R);
        return OC_OK;
    }
    say(&R, "oodc train: %s, head %s, %s: %" PRId64 " train / %" PRId64 " validation images, "
            "%" PRId64 " steps/epoch of %d, %d epoch(s), lr %g, %s %d thread(s), fusion %s; "
            "compiled in %.1f s",
        R.model, R.head, R.data, R.train.n, R.val.n, R.nbatches, R.batch, R.epochs, R.lr,
        c->device ? c->device : "cpu", oc_rt_nthreads(R.rt), c->fusion ? "on" : "off", R.compile_s);
    if (R.ck)
        say(&R, "oodc train: resuming %s at epoch %d (step %" PRId64 ")", R.ck_path, R.epoch + 1, R.step);
    if (R.ck && (R.lr != R.ck->lr || R.epochs != R.ck->epochs))
        say(&R, "oodc train: note: lr %g and %d epochs instead of the checkpoint's %g and %d: the "
                "result will differ from an uninterrupted run",
            R.lr, R.epochs, R.ck->lr, R.ck->epochs);
    if ((s = make_dirs(c->out_dir, err))) {
        run_free(&R);
        return s;
    }
    res->started = 1;
    remove_stale_temps(c->out_dir);

    int ran = 0;
    while (R.epoch < R.epochs && !(c->stop_after > 0 && ran >= c->stop_after)) {
        double loss = 0, acc = 0, ips = 0, val_acc = 0;
        double te = now_s();
        s = run_epoch(&R, res, &loss, &acc, &ips, err);
        double t_train = now_s() - te;
        if (s) {
            if (!c->quiet && R.bar) fputc('\n', R.log);
            struct oc_err e2 = {0};
            write_json(&R, s == OC_ERR_NUMERIC ? "diverged" : "failed", err->msg, &e2);
            break;
        }
        if ((s = oc_train_copy_params(R.tx, R.ex, R.eg, err)) ||
            (s = oc_train_accuracy(R.ex, R.batch, &R.val, &val_acc, NULL, NULL, err)))
            break;
        R.epoch++;
        ran++;
        double lr_end = oc_train_lr_at(R.lr, R.step - 1, R.total_steps);
        if (R.history.n > 2) R.history.n--, R.history.s[R.history.n] = 0; /* drop ']' */
        else R.history.n = 0, sb_printf(&R.history, "[");
        sb_printf(&R.history,
                  "%s{\"epoch\": %d, \"steps\": %" PRId64 ", \"loss\": %.6g, \"train_acc\": %.4f, "
                  "\"val_acc\": %.4f, \"images_per_s\": %.1f, \"lr\": %g, \"seconds\": %.2f}]",
                  R.history.n > 1 ? ", " : "", R.epoch, R.step, loss, acc, val_acc, ips, lr_end,
                  t_train);
        if (R.history.oom) {
            s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
            break;
        }
        if ((s = save_checkpoint(&R, err))) break;
        R.last_ck_epoch = R.epoch;
        const char *status = R.epoch >= R.epochs ? "complete" : "running";
        if ((s = write_json(&R, status, NULL, err))) break;
        res->epochs_done = R.epoch;
        res->final_loss = loss;
        res->train_acc = acc;
        res->val_acc = val_acc;
        res->images_per_s = ips;
        say(&R, "epoch %d/%d: loss %.4f, train accuracy %.2f%%, validation accuracy %.2f%%, %.0f images/s, "
                "%.1f s; wrote %s",
            R.epoch, R.epochs, loss, acc, val_acc, ips, now_s() - te, R.ck_path);
    }
    if (!s && R.epoch < R.epochs) {
        struct oc_err e2 = {0};
        write_json(&R, "stopped", NULL, &e2);
        say(&R, "oodc train: stopped after %d epoch(s) of this run; continue with --resume", ran);
    }
    run_free(&R);
    return s;
}
