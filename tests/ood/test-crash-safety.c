/* test-crash-safety.c - checkpoints and kernel-cache entries survive a
 * SIGKILL at any moment of their writing, a killed training run resumes to
 * the same result as an uninterrupted one, and a damaged file is detected
 * and reported, never loaded.
 *
 *  - writer_killed_at_random_points: a child process writes numbered
 *    checkpoints of a real WRN-10-1 training state with the real writer
 *    (oc_checkpoint_save; versions alternate between two parameter states,
 *    the step says which version a file is) and reports each one committed
 *    through a pipe. OC_CKPT_SLOW_WRITE makes the writer write in small
 *    pieces with a pause after each (runtime/safetensors.c), so one file
 *    takes tens of milliseconds. The parent SIGKILLs the child at seeded
 *    random points: after a random delay, or as soon as the temp file has
 *    reached a random size (polled), which lands inside the data. After
 *    every kill the file at the final path is absent (nothing committed
 *    yet), the last version the child reported, or the one it was writing,
 *    complete: it loads (checksum verified), and every tensor equals that
 *    version's state bit for bit. Temp files are the only other files, a
 *    partial one does not load, and the next child writes over the debris.
 *  - killed_training_resumes_bit_identical: `oodc train` (the verb, in a
 *    child) is killed while it writes the epoch-2 checkpoint; `--resume`
 *    continues from epoch 1, removes the dead run's temp file and ends with
 *    the same tensors, bit for bit, as an uninterrupted run
 *    (test-train.c's resume test, with a real kill instead of --stop-after).
 *  - kcache_writer_killed: the same protocol for kernel-cache entries.
 *  - damaged files: a seeded sample of single-bit flips over a checkpoint's
 *    length prefix, JSON header and data, and truncations, are all refused
 *    with a message naming the file (test-checkpoint.c checks one of each);
 *    every single-bit flip and every truncation of a kernel-cache entry is
 *    rejected, counted and removed (test-kcache.c checks four damages).
 *
 * Seeds: OC_TEST_SEED=N replays another set of kill points (the default is
 * fixed); failures print the seed.
 */
#include "train-util.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "../../ood/train.h"
#include "../../runtime/kcache.h"
#include "../helpers/helpers.h"

/* `oodc train` itself, compiled in (its verb is not wired into every build). */
#include "../../cli/cmd-train.c"

/* ---------------------------------------------------------------- helpers */

static uint64_t seed0, rng;

static void seed_rng(uint64_t salt)
{
    const char *s = getenv("OC_TEST_SEED");
    seed0 = s && *s ? strtoull(s, NULL, 10) : 20261127u;
    rng = seed0 * 0x9e3779b97f4a7c15ull + salt;
}

static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static int64_t rand_in(int64_t lo, int64_t hi)
{
    return hi <= lo ? lo : lo + (int64_t)(next_u64() % (uint64_t)(hi - lo + 1));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Size of a file, -1 when absent. */
static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) ? -1 : (long long)sb.st_size;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
}

/* Reads every int the child sent until it died: the last one, or `none`. */
static int last_reported(int fd, int none)
{
    int32_t v, last = none;
    while (read(fd, &v, sizeof v) == (ssize_t)sizeof v) last = v;
    close(fd);
    return last;
}

/* Silences a child's output (it shares the test's stderr). */
static void quiet_child(void)
{
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
}

/* ---------------------------------------------------------------- a model state */

#define STEP_B 8

struct state {
    int n;
    const char **name;
    struct oc_buf *v;
};

struct fixture {
    struct oc_graph *g;
    struct oc_exec *ex;
    struct oc_checkpoint meta;
    struct state st[2]; /* after one and after two training steps */
};

static struct oc_buf scalar(enum oc_dtype dt, double v)
{
    struct oc_buf b;
    struct oc_shape s = OC_SCALAR;
    cr_assert_eq(oc_buf_alloc(&b, dt, &s), OC_OK);
    oc_buf_set(&b, 0, v);
    return b;
}

static void set(struct oc_exec *ex, const char *name, const struct oc_buf *b)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_exec_set(ex, name, b, &err), OC_OK, "%s", err.msg);
}

static void snapshot(struct fixture *F, struct state *s)
{
    struct oc_err err = {0};
    s->name = calloc((size_t)F->g->nnodes, sizeof *s->name);
    s->v = calloc((size_t)F->g->nnodes, sizeof *s->v);
    cr_assert(s->name && s->v);
    s->n = 0;
    for (int i = 0; i < F->g->nnodes; i++) {
        const struct oc_node *n = F->g->nodes[i];
        if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
        s->name[s->n] = n->attrs.name;
        cr_assert_eq(oc_exec_get(F->ex, n->attrs.name, &s->v[s->n], &err), OC_OK, "%s", err.msg);
        s->n++;
    }
}

/* WRN-10-1 on 1x28x28 after one and two SGD steps on a fixed batch: a
 * realistic state (params, momentum buffers, BN statistics, normalization). */
static void fixture_init(struct fixture *F)
{
    memset(F, 0, sizeof *F);
    struct oc_err err = {0};
    struct oc_model_cfg m;
    cr_assert_eq(oc_train_model_cfg("wrn-10-1", "baseline", 1, 28, 10, &m, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_train_step_graph(&m, STEP_B, 0.9, 5e-4, &F->g, &err), OC_OK, "%s", err.msg);
    struct oc_compile_opts o = oc_compile_defaults();
    o.nthreads = 1;
    cr_assert_eq(oc_compile(F->g, "cpu", &o, &F->ex, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_train_init_params(F->ex, F->g, 7, &err), OC_OK, "%s", err.msg);
    struct oc_buf lr = scalar(OC_F32, 0.1), step = scalar(OC_I32, 0), x, y;
    struct oc_shape xs = OC_SHAPE(STEP_B, 1, 28, 28), ys = OC_SHAPE(STEP_B);
    cr_assert_eq(oc_buf_alloc(&x, OC_F32, &xs), OC_OK);
    cr_assert_eq(oc_buf_alloc(&y, OC_I32, &ys), OC_OK);
    for (int64_t i = 0; i < oc_shape_numel(&xs); i++)
        ((float *)x.data)[i] = (float)(tu_hash((uint32_t)i * 31u + 7u) % 256u) / 255.0f;
    for (int i = 0; i < STEP_B; i++) ((int32_t *)y.data)[i] = i % 10;
    set(F->ex, "lr", &lr), set(F->ex, "step", &step), set(F->ex, "x", &x), set(F->ex, "labels", &y);
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(oc_exec_run(F->ex, 7, &err), OC_OK, "%s", err.msg);
        snapshot(F, &F->st[s]);
    }
    oc_buf_free(&lr), oc_buf_free(&step), oc_buf_free(&x), oc_buf_free(&y);
    struct oc_checkpoint *k = &F->meta;
    k->model = m;
    snprintf(k->arch, sizeof k->arch, "wrn-10-1");
    snprintf(k->head, sizeof k->head, "baseline");
    snprintf(k->data, sizeof k->data, "fashion-mnist");
    k->epochs = 1, k->seed = 7, k->batch = STEP_B, k->lr = 0.1, k->momentum = 0.9;
    k->weight_decay = 5e-4, k->augment = 1, k->history = "[]";
    /* the two states differ, or the bit-for-bit checks below prove nothing */
    int differ = 0;
    for (int i = 0; i < F->st[0].n; i++)
        differ += memcmp(F->st[0].v[i].data, F->st[1].v[i].data,
                         (size_t)oc_shape_numel(&F->st[0].v[i].shape) * oc_dtype_size(F->st[0].v[i].dtype)) != 0;
    cr_assert_gt(differ, 10);
}

static void fixture_free(struct fixture *F)
{
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < F->st[s].n; i++) oc_buf_free(&F->st[s].v[i]);
        free(F->st[s].v);
        free(F->st[s].name);
    }
    oc_exec_free(F->ex);
    oc_graph_free(F->g);
}

/* Version k of the checkpoint: state k % 2, step and epoch k. Returns the
 * status of the save (the child cannot assert). */
static enum oc_status save_version(struct fixture *F, const char *path, int k, struct oc_err *err)
{
    const struct state *s = &F->st[k % 2];
    enum oc_status st = OC_OK;
    for (int i = 0; i < s->n && !st; i++) st = oc_exec_set(F->ex, s->name[i], &s->v[i], err);
    if (st) return st;
    F->meta.step = k;
    F->meta.epoch = k;
    return oc_checkpoint_save(path, &F->meta, F->ex, F->g, err);
}

/* Loads path (checksum and all) and checks it is version k0 or k1 with
 * exactly that version's tensors; returns the version. */
static int check_version(struct fixture *F, const char *path, int k0, int k1, const char *when)
{
    struct oc_checkpoint *ck = NULL;
    struct oc_err err = {0};
    cr_assert_eq(oc_checkpoint_load(path, &ck, &err), OC_OK, "%s (seed %" PRIu64 "): %s", when, seed0,
                 err.msg);
    int v = (int)ck->step;
    cr_assert(v == k0 || v == k1, "%s (seed %" PRIu64 "): the file is version %d, expected %d or %d", when,
              seed0, v, k0, k1);
    cr_assert_eq(ck->epoch, v);
    const struct state *s = &F->st[v % 2];
    for (int i = 0; i < s->n; i++) {
        const struct oc_st_tensor *t = oc_st_find(ck->st, s->name[i]);
        cr_assert(t, "%s: version %d lacks %s", when, v, s->name[i]);
        size_t bytes = (size_t)oc_shape_numel(&s->v[i].shape) * oc_dtype_size(s->v[i].dtype);
        cr_assert_eq(t->nbytes, bytes);
        cr_assert(!memcmp(t->data, s->v[i].data, bytes), "%s: %s of version %d is not bit-equal", when,
                  s->name[i], v);
    }
    const struct oc_st_tensor *nbt = oc_st_find(ck->st, "block1.layer.0.bn1.num_batches_tracked");
    cr_assert(nbt && *(const int64_t *)nbt->data == v);
    oc_checkpoint_free(ck);
    return v;
}

/* ---------------------------------------------------------------- the checkpoint writer */

static void writer_child(struct fixture *F, const char *path, int k0, int fd, size_t piece)
{
    quiet_child();
    char p[32];
    snprintf(p, sizeof p, "%zu", piece);
    setenv("OC_CKPT_SLOW_WRITE", p, 1);
    struct oc_err err = {0};
    for (int k = k0; k < k0 + 10000; k++) {
        if (save_version(F, path, k, &err)) _exit(3);
        int32_t kk = k;
        if (write(fd, &kk, sizeof kk) != (ssize_t)sizeof kk) _exit(4);
    }
    _exit(0);
}

#define ROUNDS 32

Test(crash, writer_killed_at_random_points, .timeout = 120)
{
    seed_rng(1);
    struct fixture F;
    fixture_init(&F);
    char *dir = tu_tmpdir(), *path = tu_join(dir, OC_CHECKPOINT_FILE), *probe = tu_join(dir, "probe");
    struct oc_err err = {0};

    /* the file's size, and how long a paced write of it takes */
    cr_assert_eq(save_version(&F, probe, 0, &err), OC_OK, "%s", err.msg);
    long long fsize = file_size(probe);
    cr_assert_gt(fsize, 100000, "a realistic checkpoint: %lld bytes", fsize);
    size_t piece = (size_t)(fsize / 64);
    char p[32];
    snprintf(p, sizeof p, "%zu", piece);
    setenv("OC_CKPT_SLOW_WRITE", p, 1);
    double t0 = now_s();
    cr_assert_eq(save_version(&F, probe, 1, &err), OC_OK, "%s", err.msg);
    double t_write = now_s() - t0;
    unsetenv("OC_CKPT_SLOW_WRITE");
    check_version(&F, probe, 1, 1, "paced write");
    char *probe2 = tu_join(dir, "probe2");
    cr_assert_eq(save_version(&F, probe2, 1, &err), OC_OK, "%s", err.msg);
    cr_assert(tu_same_file(probe, probe2), "pacing changed the bytes written");
    unlink(probe), unlink(probe2);
    free(probe2);

    int disk = -1; /* version on disk, -1: none yet */
    int inside = 0, advanced = 0, partial_seen = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        fflush(stdout), fflush(stderr);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            writer_child(&F, path, disk + 1, fds[1], piece);
        }
        close(fds[1]);
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
        if (r % 2 == 0) {
            /* a random moment: up to ~2.5 files into the child's work */
            sleep_us((long)rand_in(0, (int64_t)(2.5e6 * t_write)));
        } else {
            /* as soon as the temp file holds at least `want` bytes */
            long long want = rand_in(1, fsize - 1);
            double deadline = now_s() + 10;
            while (file_size(tmp) < want && now_s() < deadline) sleep_us(20);
            cr_assert_lt(now_s(), deadline, "the writer never reached %lld bytes", want);
        }
        kill_and_reap(pid);
        int reported = last_reported(fds[0], disk);
        char when[96];
        snprintf(when, sizeof when, "round %d (%s kill)", r, r % 2 ? "size" : "time");

        /* what is on disk: the final file and, at most, this child's temp file */
        DIR *d = opendir(dir);
        cr_assert(d);
        struct dirent *e;
        int final_seen = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, ".."))) continue;
            if (!strcmp(e->d_name, OC_CHECKPOINT_FILE)) {
                final_seen = 1;
                continue;
            }
            cr_assert(!strncmp(e->d_name, OC_CHECKPOINT_FILE ".tmp.", strlen(OC_CHECKPOINT_FILE ".tmp.")),
                      "%s: unexpected file %s", when, e->d_name);
        }
        closedir(d);
        long long ts = file_size(tmp);
        if (ts >= 0) {
            inside++;
            if (ts < fsize - 64) {
                /* a partial file is never a checkpoint */
                partial_seen++;
                struct oc_checkpoint *ck = NULL;
                struct oc_err e2 = {0};
                cr_assert_neq(oc_checkpoint_load(tmp, &ck, &e2), OC_OK, "%s: a %lld-byte partial file loaded",
                              when, ts);
                cr_assert(strstr(e2.msg, tmp), "%s: %s", when, e2.msg);
            }
        }
        if (!final_seen) {
            cr_assert_eq(reported, -1, "%s: the checkpoint vanished after version %d", when, reported);
            continue;
        }
        int v = check_version(&F, path, reported, reported + 1, when);
        advanced += v > disk;
        disk = v;
    }
    /* the kills landed where they matter: inside writes, and between them */
    cr_assert_gt(partial_seen, 0, "no kill landed inside a write (seed %" PRIu64 ")", seed0);
    cr_assert_gt(advanced, 0, "no write ever completed (seed %" PRIu64 ")", seed0);
    cr_assert_geq(disk, 0);
    if (getenv("OC_TEST_VERBOSE"))
        fprintf(stderr, "crash: %d rounds, %d killed with a temp file (%d partial), version %d on disk, "
                        "%.1f ms per paced write\n",
                ROUNDS, inside, partial_seen, disk, t_write * 1e3);

    /* the debris does not disturb an ordinary write */
    cr_assert_eq(save_version(&F, path, disk + 1, &err), OC_OK, "%s", err.msg);
    check_version(&F, path, disk + 1, disk + 1, "after the kills");
    tu_rmtree(dir);
    free(dir), free(path), free(probe);
    fixture_free(&F);
}

/* ---------------------------------------------------------------- a training run */

static char spec[600];

static struct oc_train_cfg tiny_cfg(const char *data_dir, const char *out)
{
    snprintf(spec, sizeof spec, "fashion-mnist:%s", data_dir);
    struct oc_train_cfg c = oc_train_cfg_default();
    c.model = "wrn-10-1";
    c.data = spec;
    c.out_dir = out;
    c.epochs = 2;
    c.batch = 32;
    c.train_limit = 128; /* 4 steps per epoch */
    c.lr = 0.05;
    c.seed = 3;
    c.quiet = 1;
    c.threads = 1; /* the same thread count in every run: bit-identical results */
    return c;
}

/* Runs `oodc train` in a child writing into b, waits for its first
 * checkpoint, then SIGKILLs it once the second one's temp file holds a
 * random number of bytes. Returns the temp file's size after the kill, or
 * -1 when the kill came too late (no temp file left). */
static long long killed_run(char *b, const char *pb, long long fsize, char *tmp, size_t ntmp)
{
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        quiet_child();
        char piece[32];
        snprintf(piece, sizeof piece, "%lld", fsize / 128);
        setenv("OC_CKPT_SLOW_WRITE", piece, 1);
        char *argv[] = {"train", "--model", "wrn-10-1", "--data", spec, "--out", b, "--epochs", "2",
                        "--batch", "32", "--limit", "128", "--lr", "0.05", "--seed", "3", "--quiet",
                        "--threads", "1", NULL};
        _exit(oc_cmd_train(20, argv));
    }
    snprintf(tmp, ntmp, "%s.tmp.%ld", pb, (long)pid);
    double deadline = now_s() + 100;
    int status = 0;
    while (file_size(pb) < 0 && now_s() < deadline) {
        cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "the training child ended early (status %d)", status);
        sleep_us(500);
    }
    cr_assert_geq(file_size(pb), 0, "no first checkpoint");
    long long want = rand_in(1, fsize - 4096);
    while (file_size(tmp) < want && now_s() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) return -1; /* finished: too late */
        sleep_us(20);
    }
    kill_and_reap(pid);
    return file_size(tmp);
}

Test(crash, killed_training_resumes_bit_identical, .timeout = 120)
{
    seed_rng(2);
    char *data = tu_fake_fashion(400, 40), *a = tu_tmpdir(), *b = tu_tmpdir();
    struct oc_err err = {0};
    struct oc_train_result r;
    struct oc_train_cfg c = tiny_cfg(data, a);
    cr_assert_eq(oc_train(&c, &r, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(r.epochs_done, 2);
    char *pa = tu_join(a, OC_CHECKPOINT_FILE), *pb = tu_join(b, OC_CHECKPOINT_FILE);
    long long fsize = file_size(pa);

    /* the same run as `oodc train` in a child, killed inside the write of
     * its second (last) checkpoint; a try whose kill comes too late (a
     * busy machine can keep the parent from its polling past the whole
     * write) starts over in a fresh folder */
    char tmp[1024];
    long long ts = -1;
    for (int attempt = 0; attempt < 3 && ts < 0; attempt++) {
        tu_rmtree(b);
        cr_assert_eq(mkdir(b, 0700), 0);
        ts = killed_run(b, pb, fsize, tmp, sizeof tmp);
    }
    cr_assert_geq(ts, 0, "the kill never landed inside the second checkpoint's write (seed %" PRIu64 ")", seed0);
    /* the first checkpoint, complete, unless the rename had happened */
    struct oc_checkpoint *ck = NULL;
    cr_assert_eq(oc_checkpoint_load(pb, &ck, &err), OC_OK, "%s", err.msg);
    int epoch = ck->epoch;
    oc_checkpoint_free(ck);
    if (ts < fsize - 64) cr_assert_eq(epoch, 1, "a partial second file, yet epoch %d on disk", epoch);

    /* --resume continues and clears the dead run's temp file */
    char *argv[] = {"train", "--out", b, "--resume", "--quiet", "--threads", "1", NULL};
    char *o, *e;
    int rc = tu_capture(oc_cmd_train, 7, argv, &o, &e);
    cr_assert_eq(rc, 0, "resume: rc %d: %s", rc, e);
    free(o), free(e);
    cr_assert_neq(access(tmp, F_OK), 0, "the killed run's temp file is left");

    struct oc_safetensors sa, sb;
    cr_assert_eq(oc_st_read(pa, &sa, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_st_read(pb, &sb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(sa.ntensors, sb.ntensors);
    for (int i = 0; i < sa.ntensors; i++) {
        const struct oc_st_tensor *x = &sa.tensors[i], *y = oc_st_find(&sb, x->name);
        cr_assert(y, "the resumed run lacks %s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert(!memcmp(x->data, y->data, x->nbytes), "%s differs after kill + resume", x->name);
    }
    cr_assert_str_eq(oc_st_meta(&sb, "epoch"), "2");
    cr_assert_str_eq(oc_st_meta(&sa, "step"), oc_st_meta(&sb, "step"));
    oc_st_free(&sa), oc_st_free(&sb);
    tu_rmtree(data), tu_rmtree(a), tu_rmtree(b);
    free(data), free(a), free(b), free(pa), free(pb);
}

/* ---------------------------------------------------------------- the kernel cache */

static struct oc_kkey the_key(void)
{
    const char *parts[] = {"crash-safety", "kernel"};
    return oc_kcache_key(parts, 2);
}

/* Payload of version k: 64 KiB that differ between versions. */
#define PAYLOAD 65536
static void payload_of(int k, unsigned char *p)
{
    for (int i = 0; i < PAYLOAD; i++) p[i] = (unsigned char)tu_hash((uint32_t)k * 2654435761u + (uint32_t)i);
}

Test(crash, kcache_writer_killed, .timeout = 60)
{
    seed_rng(3);
    char *dir = tu_tmpdir();
    unsetenv("OC_NO_CACHE");
    unsetenv("OC_DEBUG");
    unsigned char *want = malloc(PAYLOAD);
    cr_assert(want);
    int disk = -1, advanced = 0;
    struct oc_err err = {0};
    for (int r = 0; r < 16; r++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        fflush(stdout), fflush(stderr);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            quiet_child();
            close(fds[0]);
            struct oc_kcache *c = NULL;
            if (oc_kcache_open(&c, dir, 0, &err)) _exit(3);
            unsigned char *pl = malloc(PAYLOAD);
            for (int k = disk + 1;; k++) {
                payload_of(k, pl);
                oc_kcache_put(c, the_key(), "k", pl, PAYLOAD);
                int32_t kk = k;
                if (write(fds[1], &kk, sizeof kk) != (ssize_t)sizeof kk) _exit(4);
            }
        }
        close(fds[1]);
        int first = disk;
        if (r % 2) {
            /* after the child's first entry: a later one is in flight */
            int32_t v;
            cr_assert_eq(read(fds[0], &v, sizeof v), (ssize_t)sizeof v, "round %d: the child wrote nothing", r);
            first = v;
        }
        sleep_us((long)rand_in(0, 2000));
        kill_and_reap(pid);
        int reported = last_reported(fds[0], first);
        struct oc_kcache *c = NULL;
        cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK, "%s", err.msg);
        void *d = NULL;
        size_t n = 0;
        int hit = oc_kcache_get(c, the_key(), "k", &d, &n);
        struct oc_kcache_stats st;
        oc_kcache_stats(c, &st);
        cr_assert_eq(st.rejected, 0, "round %d: a killed writer left a damaged entry", r);
        if (!hit) {
            cr_assert_eq(reported, -1, "round %d: the entry vanished after version %d", r, reported);
        } else {
            cr_assert_eq(n, PAYLOAD);
            int v = -1;
            for (int k = reported; k <= reported + 1 && v < 0; k++) {
                if (k < 0) continue;
                payload_of(k, want);
                if (!memcmp(d, want, PAYLOAD)) v = k;
            }
            cr_assert_geq(v, 0, "round %d: the entry is neither version %d nor %d", r, reported, reported + 1);
            advanced += v > disk;
            disk = v;
        }
        free(d);
        oc_kcache_close(c);
    }
    cr_assert_gt(advanced, 0);
    tu_rmtree(dir);
    free(dir), free(want);
}

/* ---------------------------------------------------------------- damaged files */

static void expect_refused(const char *path, const char *what, long at, const char *needle)
{
    struct oc_checkpoint *ck = NULL;
    struct oc_err err = {0};
    enum oc_status s = oc_checkpoint_load(path, &ck, &err);
    cr_assert_neq(s, OC_OK, "%s at %ld: loaded (seed %" PRIu64 ")", what, at, seed0);
    cr_assert_null(ck);
    cr_assert(strstr(err.msg, path), "%s at %ld: the message does not name the file: %s", what, at, err.msg);
    if (needle)
        cr_assert(strstr(err.msg, needle), "%s at %ld: the message lacks '%s': %s", what, at, needle, err.msg);
}

Test(crash, damaged_checkpoints_are_refused, .timeout = 120)
{
    seed_rng(4);
    struct fixture F;
    fixture_init(&F);
    char *dir = tu_tmpdir(), *p = tu_join(dir, "c.safetensors"), *q = tu_join(dir, "bad.safetensors");
    struct oc_err err = {0};
    cr_assert_eq(save_version(&F, p, 5, &err), OC_OK, "%s", err.msg);
    size_t n;
    unsigned char *b = tu_read(p, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    size_t data0 = 8 + (size_t)hlen;
    cr_assert_lt(data0, n);

    /* single-bit flips: every bit of the length prefix, then a sample of
     * the JSON header (names, shapes, offsets, metadata, the checksum, the
     * padding) and of the tensor bytes */
    for (long at = 0; at < 8 * 8; at++) {
        b[at / 8] ^= (unsigned char)(1u << (at % 8));
        tu_write(q, b, n);
        expect_refused(q, "flip in the length", at, NULL);
        b[at / 8] ^= (unsigned char)(1u << (at % 8));
    }
    for (int i = 0; i < 160; i++) {
        long at = (long)rand_in(8, (int64_t)data0 - 1);
        unsigned char bit = (unsigned char)(1u << rand_in(0, 7));
        b[at] ^= bit;
        tu_write(q, b, n);
        expect_refused(q, "flip in the header", at, NULL);
        b[at] ^= bit;
    }
    for (int i = 0; i < 48; i++) {
        long at = (long)rand_in((int64_t)data0, (int64_t)n - 1);
        unsigned char bit = (unsigned char)(1u << rand_in(0, 7));
        b[at] ^= bit;
        tu_write(q, b, n);
        expect_refused(q, "flip in the data", at, "checksum");
        b[at] ^= bit;
    }
    /* truncations: the boundaries, then a sample */
    long cuts[64] = {0, 1, 7, 8, 9, (long)data0 - 1, (long)data0, (long)data0 + 1, (long)n - 8, (long)n - 1};
    int ncut = 10;
    while (ncut < 64) cuts[ncut++] = (long)rand_in(0, (int64_t)n - 1);
    for (int i = 0; i < ncut; i++) {
        tu_write(q, b, (size_t)cuts[i]);
        expect_refused(q, "truncation", cuts[i], NULL);
    }
    /* the undamaged bytes still load */
    tu_write(q, b, n);
    check_version(&F, q, 5, 5, "undamaged copy");
    free(b);
    tu_rmtree(dir);
    free(dir), free(p), free(q);
    fixture_free(&F);
}

Test(crash, every_damage_to_a_kcache_entry_is_rejected)
{
    char *dir = tu_tmpdir();
    unsetenv("OC_NO_CACHE");
    unsetenv("OC_DEBUG");
    struct oc_err err = {0};
    const char payload[] = "CUBIN or object code: 40 bytes of it....";
    struct oc_kcache *c = NULL;
    cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK, "%s", err.msg);
    oc_kcache_put(c, the_key(), "k", payload, sizeof payload);
    char path[1024];
    oc_kcache_path(c, the_key(), path, sizeof path);
    oc_kcache_close(c);
    size_t n;
    unsigned char *b = tu_read(path, &n);
    cr_assert(b && n > sizeof payload);
    int cases = 0;
    for (size_t at = 0; at <= 8 * n + n; at++) {
        /* bits 0 .. 8n-1 flip one bit; then the n truncations to 0 .. n-1 bytes */
        size_t len = n;
        if (at < 8 * n) b[at / 8] ^= (unsigned char)(1u << (at % 8));
        else if (at < 8 * n + n) len = at - 8 * n;
        else break;
        tu_write(path, b, len);
        if (at < 8 * n) b[at / 8] ^= (unsigned char)(1u << (at % 8));
        cr_assert_eq(oc_kcache_open(&c, dir, 0, &err), OC_OK);
        void *d = NULL;
        size_t dn = 0;
        cr_assert_eq(oc_kcache_get(c, the_key(), "k", &d, &dn), 0, "damage %zu: loaded", at);
        cr_assert_null(d);
        struct oc_kcache_stats st;
        oc_kcache_stats(c, &st);
        cr_assert_eq(st.rejected, 1, "damage %zu: not reported", at);
        cr_assert_neq(access(path, F_OK), 0, "damage %zu: the bad entry is kept", at);
        oc_kcache_close(c);
        cases++;
    }
    cr_assert_eq(cases, (int)(9 * n));
    free(b);
    tu_rmtree(dir);
    free(dir);
}
