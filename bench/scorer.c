/* scorer.c (bench) - `oodc bench scorer`: batch-1 latency and batch-N
 * throughput of ahead-of-time compiled CPU scorers (ood/aot.c) next to
 * PyTorch eager and TorchScript running the same scorer on the same model
 * in the same run (bench/peer/torch_scorer.py, started with popen when
 * /usr/bin/python3 can import torch).
 *
 * Baseline+T and ODIN are compiled for batch 1 and batch N from a checkpoint
 * (--checkpoint, or a seeded random initialization of --model for the input
 * shape of --data), each artifact is loaded with dlopen as a program would
 * link it, and each measurement times --calls calls per repeat after a
 * warm-up; the figure is the median over --repeats repeats. The report
 * names the machine (CPU, cores, load average), the mode and the command.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ood/aot.h"
#include "../ood/train.h"
#include "common.h"

int oc_bench_scorer(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc bench scorer [options]\n"
            "\n"
            "Latency (batch 1) and throughput (batch N) of compiled CPU scorers (Baseline+T,\n"
            "ODIN) beside PyTorch eager and TorchScript in the same run.\n"
            "\n"
            "  --model wrn-D-W    Wide ResNet with a random initialization (default wrn-10-2)\n"
            "  --data SPEC        input shape: cifar10 (3x32x32, default) or fashion-mnist\n"
            "                     (1x28x28); no data is read\n"
            "  --checkpoint FILE  a trained checkpoint instead of --model/--data\n"
            "  --batch N          the throughput batch (default 128)\n"
            "  --T t, --eps e     the scorers' settings (default 1000, 0.0014)\n"
            "  --threads N        threads of the scorer and of PyTorch (default: all cores)\n"
            "  --repeats N        repeats; medians are reported (default 5)\n"
            "  --calls N          calls per repeat (default: 20 at batch 1, 2 at batch N)\n"
            "  --native           kernels for this CPU (default: portable x86-64-v3)\n"
            "  --scorers LIST     comma-separated subset of baseline+t,odin\n"
            "  --no-peer          do not run PyTorch\n"
            "  --no-script        PyTorch eager only\n"
            "  --peer FILE        the peer script (default: bench/peer/torch_scorer.py\n"
            "                     under the current folder or the source tree)\n"
            "  --keep DIR         build the artifacts in DIR and keep them\n"
            "  -h, --help         show this help\n");
}

/* ---------------------------------------------------------------- artifacts */

struct lib {
    void *h;
    void *(*create)(void);
    int (*score)(void *, const float *, int, float *, int *);
    const char *(*error)(void *);
    void (*destroy)(void *);
};

static int lib_open(struct lib *l, const char *dir, char *why, size_t n)
{
    char path[PATH_MAX];
    oc_bench_fmt(path, sizeof path, "%s/libscorer.so", dir);
    memset(l, 0, sizeof *l);
    l->h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!l->h) {
        oc_bench_fmt(why, n, "dlopen %s: %s", path, dlerror());
        return -1;
    }
    /* POSIX: function pointers round-trip through dlsym's void * */
    *(void **)&l->create = dlsym(l->h, "oc_scorer_create");
    *(void **)&l->score = dlsym(l->h, "oc_scorer_score");
    *(void **)&l->error = dlsym(l->h, "oc_scorer_error");
    *(void **)&l->destroy = dlsym(l->h, "oc_scorer_destroy");
    if (!l->create || !l->score || !l->error || !l->destroy) {
        oc_bench_fmt(why, n, "%s lacks the scorer.h API", path);
        dlclose(l->h);
        l->h = NULL;
        return -1;
    }
    return 0;
}

/* Median milliseconds per call of n images. */
static int time_calls(struct lib *l, const float *x, int n, int calls, int repeats, double *ms,
                      double *lo, double *hi, char *why, size_t nwhy)
{
    void *s = l->create();
    if (!s) {
        const char *e = l->error(NULL); /* why this thread's last create failed */
        oc_bench_fmt(why, nwhy, "oc_scorer_create: %s", e ? e : "failed");
        return -1;
    }
    float *sc = malloc(sizeof(float) * (size_t)n);
    int *cl = malloc(sizeof(int) * (size_t)n);
    double *t = malloc(sizeof(double) * (size_t)repeats);
    int rc = sc && cl && t ? 0 : -1;
    for (int w = 0; w < 2 && !rc; w++)
        if (l->score(s, x, n, sc, cl)) rc = -1;
    for (int r = 0; r < repeats && !rc; r++) {
        double t0 = oc_bench_now();
        for (int c = 0; c < calls && !rc; c++)
            if (l->score(s, x, n, sc, cl)) rc = -1;
        t[r] = (oc_bench_now() - t0) * 1e3 / calls;
    }
    if (rc) {
        oc_bench_fmt(why, nwhy, "oc_scorer_score: %s", l->error(s));
    } else {
        *lo = *hi = t[0];
        for (int r = 0; r < repeats; r++) *lo = t[r] < *lo ? t[r] : *lo, *hi = t[r] > *hi ? t[r] : *hi;
        *ms = oc_bench_median(t, repeats);
    }
    l->destroy(s);
    free(sc);
    free(cl);
    free(t);
    return rc;
}

/* A seeded random initialization of the model saved as a checkpoint. */
static enum oc_status random_checkpoint(const struct oc_model_cfg *m, const char *arch,
                                        const char *path, struct oc_err *err)
{
    struct oc_graph *g = NULL;
    struct oc_exec *ex = NULL;
    struct oc_compile_opts co = oc_compile_defaults();
    co.nthreads = 1;
    enum oc_status st = oc_train_eval_graph(m, 1, &g, err);
    if (!st) st = oc_compile(g, "cpu", &co, &ex, err);
    if (!st) st = oc_train_init_params(ex, g, 0, err);
    if (!st) {
        struct oc_checkpoint meta;
        memset(&meta, 0, sizeof meta);
        meta.model = *m;
        snprintf(meta.arch, sizeof meta.arch, "%s", arch);
        snprintf(meta.head, sizeof meta.head, "%s", m->head->name);
        snprintf(meta.data, sizeof meta.data, "none (random initialization, seed 0)");
        meta.batch = 128, meta.epochs = 1, meta.lr = 0.1, meta.momentum = 0.9;
        meta.weight_decay = 5e-4;
        st = oc_checkpoint_save(path, &meta, ex, g, err);
    }
    oc_exec_free(ex);
    oc_graph_free(g);
    return st;
}

/* ---------------------------------------------------------------- the peer */

struct peer_row {
    char mode[16], scorer[16];
    int batch;
    double ms;
};

static int run_peer(const char *script, const char *model, int in_ch, int size, int k, int threads,
                    const char *batches, const char *scorers, double T, double eps, int repeats,
                    int calls, int script_too, struct peer_row *rows, int max, char *info,
                    size_t ninfo)
{
    if (access("/usr/bin/python3", X_OK)) {
        oc_bench_fmt(info, ninfo, "/usr/bin/python3 not found");
        return 0;
    }
    char cmd[2048];
    oc_bench_fmt(cmd, sizeof cmd,
                 "/usr/bin/python3 '%s' --model %s --in-ch %d --size %d --classes %d --threads %d "
                 "--batches %s --scorers %s --T %.17g --eps %.17g --repeats %d --calls %d%s 2>&1",
                 script, model, in_ch, size, k, threads, batches, scorers, T, eps, repeats, calls,
                 script_too ? "" : " --no-script");
    FILE *p = popen(cmd, "r");
    if (!p) {
        oc_bench_fmt(info, ninfo, "cannot run %s: %s", cmd, strerror(errno));
        return 0;
    }
    char line[8192], ver[64] = "?", note[512] = "";
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        char *m = strstr(line, "\"mode\": \""), *s = strstr(line, "\"scorer\": \"");
        char *b = strstr(line, "\"batch\": "), *t = strstr(line, "\"median_ms\": ");
        char *v = strstr(line, "\"torch\": \"");
        if (line[0] == '{' && m && s && b && t && n < max) {
            struct peer_row *r = &rows[n++];
            sscanf(m + 9, "%15[^\"]", r->mode);
            sscanf(s + 11, "%15[^\"]", r->scorer);
            r->batch = atoi(b + 9);
            r->ms = strtod(t + 13, NULL);
            if (v) sscanf(v + 10, "%63[^\"]", ver);
        } else if (!note[0]) {
            oc_bench_fmt(note, sizeof note, "%s", line);
            note[strcspn(note, "\n")] = 0;
        }
    }
    int rc = pclose(p);
    if (rc != 0 || !n) {
        oc_bench_fmt(info, ninfo, "the peer failed (exit %d): %s", rc, note);
        return 0;
    }
    char *redirect = strstr(cmd, " 2>&1");
    if (redirect) *redirect = 0;
    oc_bench_fmt(info, ninfo, "PyTorch %s, %d threads%s%s: %s", ver, threads, note[0] ? "; " : "",
                 note, cmd);
    return n;
}

static double peer_ms(const struct peer_row *rows, int n, const char *mode, const char *scorer,
                      int batch)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].mode, mode) && !strcmp(rows[i].scorer, scorer) && rows[i].batch == batch)
            return rows[i].ms;
    return 0;
}

/* ---------------------------------------------------------------- the benchmark */

static int has_item(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, item, n)) return 1;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

static int parse_double(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(d >= 0)) return -1;
    *out = d;
    return 0;
}

#define NSC 2
static const char *const sc_names[NSC] = {"baseline+t", "odin"};

int oc_bench_scorer(int argc, char **argv)
{
    const char *model = "wrn-10-2", *data = "cifar10", *ck_path = NULL, *peer_given = NULL;
    const char *keep = NULL, *scorers = "baseline+t,odin";
    int batch = 128, threads = 0, repeats = 5, calls = 0, native = 0, peer = 1, script = 1;
    double T = 1000, eps = 0.0014;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--native")) {
            native = 1;
        } else if (!strcmp(a, "--no-peer")) {
            peer = 0;
        } else if (!strcmp(a, "--no-script")) {
            script = 0;
        } else if (!strcmp(a, "--model") && v) {
            model = v, i++;
        } else if (!strcmp(a, "--data") && v) {
            data = v, i++;
        } else if (!strcmp(a, "--checkpoint") && v) {
            ck_path = v, i++;
        } else if (!strcmp(a, "--peer") && v) {
            peer_given = v, i++;
        } else if (!strcmp(a, "--keep") && v) {
            keep = v, i++;
        } else if (!strcmp(a, "--scorers") && v) {
            scorers = v, i++;
        } else if (!strcmp(a, "--T") || !strcmp(a, "--eps")) {
            if (parse_double(v, a[2] == 'T' ? &T : &eps) || (a[2] == 'T' && T <= 0)) {
                fprintf(stderr, "oodc bench scorer: %s: '%s' is not a valid value\n", a, v ? v : "");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--batch")) {
            if (oc_bench_parse_int("scorer", a, v, 2, 1 << 16, &batch)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (oc_bench_parse_int("scorer", a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--repeats")) {
            if (oc_bench_parse_int("scorer", a, v, 1, 1000, &repeats)) return 2;
            i++;
        } else if (!strcmp(a, "--calls")) {
            if (oc_bench_parse_int("scorer", a, v, 1, 100000, &calls)) return 2;
            i++;
        } else {
            fprintf(stderr, "oodc bench scorer: unknown option or missing value '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    for (const char *p = scorers; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!(len == 10 && !strncmp(p, "baseline+t", 10)) && !(len == 4 && !strncmp(p, "odin", 4))) {
            fprintf(stderr, "oodc bench scorer: --scorers: '%s' (use baseline+t and/or odin)\n", scorers);
            return 2;
        }
        p = e ? e + 1 : p + len;
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    char nt[16];
    snprintf(nt, sizeof nt, "%d", threads);
    setenv("OC_SCORER_THREADS", nt, 1);

    struct oc_err err = {0};
    struct oc_checkpoint *ck = NULL;
    char tmp[PATH_MAX] = "", ckfile[PATH_MAX + 32] = "";
    int rc = 1;
    if (keep) {
        oc_bench_fmt(tmp, sizeof tmp, "%s", keep);
        mkdir(tmp, 0777);
    } else {
        const char *td = getenv("TMPDIR");
        oc_bench_fmt(tmp, sizeof tmp, "%s/oodc-bench-scorer-XXXXXX", td && *td ? td : "/tmp");
        if (!mkdtemp(tmp)) {
            fprintf(stderr, "oodc bench scorer: cannot create a temporary folder: %s\n", strerror(errno));
            return 1;
        }
    }
    char arch[64];
    if (ck_path) {
        if (oc_checkpoint_load(ck_path, &ck, &err)) {
            fprintf(stderr, "oodc bench scorer: %s\n", err.msg);
            rc = 2;
            goto done;
        }
        oc_bench_fmt(arch, sizeof arch, "wrn-%d-%d", ck->model.wrn.depth, ck->model.wrn.width);
    } else {
        int in_ch, size, k;
        struct oc_model_cfg m;
        const char *dspec = !strcmp(data, "cifar10") ? "cifar10:." : data;
        if (oc_train_data_shape(dspec, &in_ch, &size, &k, &err) ||
            oc_train_model_cfg(model, "baseline", in_ch, size, k, &m, &err)) {
            fprintf(stderr, "oodc bench scorer: %s\n", err.msg);
            rc = 2;
            goto done;
        }
        oc_bench_fmt(arch, sizeof arch, "%s", model);
        oc_bench_fmt(ckfile, sizeof ckfile, "%s/random.safetensors", tmp);
        if (random_checkpoint(&m, model, ckfile, &err) || oc_checkpoint_load(ckfile, &ck, &err)) {
            fprintf(stderr, "oodc bench scorer: %s\n", err.msg);
            goto done;
        }
    }
    if (strcmp(ck->model.head->name, "baseline")) {
        fprintf(stderr, "oodc bench scorer: Baseline+T and ODIN need a baseline-head checkpoint, not %s\n",
                ck->model.head->name);
        rc = 2;
        goto done;
    }
    const struct oc_wrn_config *wc = &ck->model.wrn;
    int isz = wc->in_ch * wc->size * wc->size;
    printf("oodc bench scorer: %s (head baseline), %dx%dx%d inputs, %d classes; T %g, eps %g\n", arch,
           wc->in_ch, wc->size, wc->size, ck->model.hc.nclasses, T, eps);
    oc_bench_machine(stdout);
    printf("command: oodc bench");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);

    /* the artifacts: each scorer for batch 1 and batch N */
    double ms[NSC][2] = {{0}}, lo[NSC][2] = {{0}}, hi[NSC][2] = {{0}};
    int bsz[2] = {1, batch};
    char cpu[128] = "";
    float *x = malloc(sizeof(float) * (size_t)batch * (size_t)isz);
    if (!x) {
        fprintf(stderr, "oodc bench scorer: out of memory\n");
        goto done;
    }
    uint64_t h = 88172645463325252ull;
    for (int64_t i = 0; i < (int64_t)batch * isz; i++) {
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        x[i] = (float)(h >> 40) / (float)(1 << 24);
    }
    for (int s = 0; s < NSC; s++) {
        if (!has_item(scorers, sc_names[s])) continue;
        for (int b = 0; b < 2; b++) {
            char dir[PATH_MAX + 64];
            oc_bench_fmt(dir, sizeof dir, "%s/%s-%d", tmp, s ? "odin" : "baseline-t", bsz[b]);
            struct oc_aot_opts o = oc_aot_opts_default();
            o.ck = ck;
            o.scorer = sc_names[s];
            o.T = T;
            o.eps = s ? eps : 0;
            o.batch = bsz[b];
            o.native = native;
            struct oc_aot_result res;
            double t0 = oc_bench_now();
            if (oc_aot_compile(&o, dir, &res, &err)) {
                fprintf(stderr, "oodc bench scorer: %s\n", err.msg);
                free(x);
                goto done;
            }
            snprintf(cpu, sizeof cpu, "%s", res.cpu);
            printf("compiled %-10s batch %-4d in %.1f s: %d program(s), %d kernels per call, %.1f MB weights\n",
                   sc_names[s], bsz[b], oc_bench_now() - t0, res.nprog, res.nkernels,
                   (double)res.blob_bytes / 1e6);
            fflush(stdout);
            struct lib l;
            char why[1024];
            int c = calls > 0 ? calls : b == 0 ? 20 : 2;
            if (lib_open(&l, dir, why, sizeof why) ||
                time_calls(&l, x, bsz[b], c, repeats, &ms[s][b], &lo[s][b], &hi[s][b], why, sizeof why)) {
                fprintf(stderr, "oodc bench scorer: %s\n", why);
                if (l.h) dlclose(l.h);
                free(x);
                goto done;
            }
            dlclose(l.h);
        }
    }
    free(x);
    printf("mode: compiled CPU scorer (oodc compile --target cpu, kernels for %s), %d threads\n", cpu,
           threads);

    struct peer_row rows[32];
    int np = 0;
    char info[4096] = "";
    if (peer) {
        char scr[PATH_MAX];
        char bl[32];
        snprintf(bl, sizeof bl, "1,%d", batch);
        if (!oc_bench_find_peer(peer_given, "bench/peer/torch_scorer.py", scr, sizeof scr)) {
            oc_bench_fmt(info, sizeof info, "peer script %s not found (give --peer FILE)",
                         peer_given ? peer_given : "bench/peer/torch_scorer.py");
        } else {
            printf("running the PyTorch peer ...\n");
            fflush(stdout);
            np = run_peer(scr, arch, wc->in_ch, wc->size, ck->model.hc.nclasses, threads, bl, scorers,
                          T, eps, repeats, calls, script, rows, 32, info, sizeof info);
        }
    }
    printf("\n%-11s %6s %12s %20s %10s %11s %7s %11s %7s\n", "scorer", "batch", "oodc ms",
           "(min..max)", "img/s", "eager ms", "ratio", "script ms", "ratio");
    for (int s = 0; s < NSC; s++) {
        if (!has_item(scorers, sc_names[s])) continue;
        for (int b = 0; b < 2; b++) {
            double e = peer_ms(rows, np, "eager", sc_names[s], bsz[b]);
            double t = peer_ms(rows, np, "torchscript", sc_names[s], bsz[b]);
            printf("%-11s %6d %12.3f %9.3f..%-10.3f %10.1f", sc_names[s], bsz[b], ms[s][b], lo[s][b],
                   hi[s][b], 1e3 * bsz[b] / ms[s][b]);
            if (e > 0) printf(" %11.3f %6.2fx", e, e / ms[s][b]);
            else printf(" %11s %7s", "-", "-");
            if (t > 0) printf(" %11.3f %6.2fx\n", t, t / ms[s][b]);
            else printf(" %11s %7s\n", "-", "-");
        }
    }
    printf("ratio = PyTorch time / oodc time (above 1: the compiled scorer is faster); medians of %d "
           "repeat(s)\n",
           repeats);
    if (has_item(scorers, "odin")) {
        double e = peer_ms(rows, np, "eager", "odin", batch);
        if (e > 0)
            printf("target: ODIN batch-%d throughput >= 1.5x PyTorch eager: %.2fx (%s)\n", batch,
                   e / ms[1][1], e / ms[1][1] >= 1.5 ? "met" : "NOT met");
    }
    if (has_item(scorers, "baseline+t"))
        printf("target: Baseline+T batch-1 latency < 1 ms: %.3f ms (%s)\n", ms[0][0],
               ms[0][0] < 1 ? "met" : "NOT met");
    if (peer) printf("peer: %s\n", np ? info : info[0] ? info : "unavailable");
    if (keep) printf("artifacts kept in %s\n", tmp);
    rc = 0;
done:
    oc_checkpoint_free(ck);
    if (!keep && tmp[0]) {
        /* the artifacts, the checkpoint, the folder */
        char cmd[PATH_MAX + 32];
        oc_bench_fmt(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd)) fprintf(stderr, "oodc bench scorer: could not remove %s\n", tmp);
    }
    return rc;
}
