/* train.c (bench) - `oodc bench train`: images per second of the Wide
 * ResNet training step (forward, backward, SGD-Nesterov update, BN
 * statistics: the graph ood/train-graph.c builds for the trainer) and of the
 * forward pass alone, next to PyTorch running the same model on the same
 * machine in the same run (bench/peer/torch_train.py, started with popen
 * when /usr/bin/python3 can import torch).
 *
 * Each repeat times --steps consecutive steps after --warmup untimed ones
 * on random inputs in [0, 1] with random labels; the figure is the median
 * over --repeats repeats (min and max printed beside it). The report names
 * the machine (CPU model, cores, load average), the mode (backend, fusion,
 * threads, kernels per step) and the command line, as CONVENTIONS.md asks.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../ood/train.h"
#include "common.h"


static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc bench train --model wrn-D-W [options]\n"
            "\n"
            "Training-step and forward-only images/s of a Wide ResNet, beside PyTorch.\n"
            "\n"
            "  --model wrn-D-W    e.g. wrn-16-4, wrn-28-10 (required)\n"
            "  --batch N          images per step (default 128)\n"
            "  --data SPEC        input shape of fashion-mnist (1x28x28, default) or\n"
            "                     cifar10 (3x32x32); no data is read\n"
            "  --steps N          timed steps per repeat (default 5)\n"
            "  --warmup N         untimed steps first (default 1)\n"
            "  --repeats N        repeats; medians are reported (default 3)\n"
            "  --threads N        CPU threads for oodc and PyTorch (default: all cores)\n"
            "  --no-fusion        one kernel per primitive (the unfused baseline)\n"
            "  --no-forward       skip the forward-only measurement\n"
            "  --no-peer          do not run PyTorch\n"
            "  --peer FILE        the peer script (default: bench/peer/torch_train.py\n"
            "                     under the current folder or the source tree)\n"
            "  -h, --help         show this help\n");
}

/* Runs the peer; fills the medians from its JSON line. */
static int run_peer(const char *script, const char *model, int batch, int in_ch, int size,
                    int threads, int steps, int warmup, int repeats, int forward, double *train,
                    double *fwd, char *info, size_t ninfo)
{
    if (access("/usr/bin/python3", X_OK)) {
        oc_bench_fmt(info, ninfo, "/usr/bin/python3 not found");
        return 0;
    }
    char cmd[2048];
    oc_bench_fmt(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --model %s --batch %d --in-ch %d --size %d --threads %d "
             "--steps %d --warmup %d --repeats %d%s 2>&1",
             script, model, batch, in_ch, size, threads, steps, warmup, repeats,
             forward ? "" : " --no-forward");
    FILE *p = popen(cmd, "r");
    if (!p) {
        oc_bench_fmt(info, ninfo, "cannot run %s: %s", cmd, strerror(errno));
        return 0;
    }
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
        else if (!last[0]) oc_bench_fmt(info, ninfo, "%s", line);
    int rc = pclose(p);
    char *t = strstr(last, "\"train_median\": "), *f = strstr(last, "\"forward_median\": ");
    char *v = strstr(last, "\"torch\": \"");
    if (rc != 0 || !t) {
        info[strcspn(info, "\n")] = 0;
        if (!info[0]) oc_bench_fmt(info, ninfo, "the peer failed (exit %d)", rc);
        return 0;
    }
    *train = strtod(t + 16, NULL);
    *fwd = f && strncmp(f + 18, "null", 4) ? strtod(f + 18, NULL) : 0;
    char ver[64] = "?";
    if (v) sscanf(v + 10, "%63[^\"]", ver);
    oc_bench_fmt(info, ninfo, "PyTorch %s, %d threads: %s", ver, threads, cmd);
    info[strcspn(info, "\n")] = 0;
    char *redirect = strstr(info, " 2>&1");
    if (redirect) *redirect = 0;
    return 1;
}

static enum oc_status time_steps(struct oc_exec *ex, int steps, int warmup, int repeats, int batch,
                                 double *ips, struct oc_err *err)
{
    for (int i = 0; i < warmup; i++) {
        enum oc_status s = oc_exec_run(ex, 0, err);
        if (s) return s;
    }
    for (int r = 0; r < repeats; r++) {
        double t0 = oc_bench_now();
        for (int i = 0; i < steps; i++) {
            enum oc_status s = oc_exec_run(ex, 0, err);
            if (s) return s;
        }
        ips[r] = (double)batch * steps / (oc_bench_now() - t0);
    }
    return OC_OK;
}

int oc_bench_train(int argc, char **argv)
{
    const char *model = NULL, *data = "fashion-mnist", *peer_given = NULL;
    int batch = 128, steps = 5, warmup = 1, repeats = 3, threads = 0, fusion = 1, forward = 1,
        peer = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-fusion")) {
            fusion = 0;
        } else if (!strcmp(a, "--no-forward")) {
            forward = 0;
        } else if (!strcmp(a, "--no-peer")) {
            peer = 0;
        } else if (!strcmp(a, "--model") && v) {
            model = v, i++;
        } else if (!strcmp(a, "--data") && v) {
            data = v, i++;
        } else if (!strcmp(a, "--peer") && v) {
            peer_given = v, i++;
        } else if (!strcmp(a, "--batch")) {
            if (oc_bench_parse_int("train", a, v, 1, 1 << 16, &batch)) return 2;
            i++;
        } else if (!strcmp(a, "--steps")) {
            if (oc_bench_parse_int("train", a, v, 1, 1 << 20, &steps)) return 2;
            i++;
        } else if (!strcmp(a, "--warmup")) {
            if (oc_bench_parse_int("train", a, v, 0, 1 << 20, &warmup)) return 2;
            i++;
        } else if (!strcmp(a, "--repeats")) {
            if (oc_bench_parse_int("train", a, v, 1, 1000, &repeats)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (oc_bench_parse_int("train", a, v, 1, 1024, &threads)) return 2;
            i++;
        } else {
            fprintf(stderr, "oodc bench train: unknown option or missing value '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "oodc bench train: --model is required (e.g. --model wrn-16-4)\n");
        return 2;
    }
    struct oc_err err = {0};
    int in_ch, size, k;
    struct oc_model_cfg m;
    const char *dspec = !strcmp(data, "cifar10") ? "cifar10:." : data;
    if (oc_train_data_shape(dspec, &in_ch, &size, &k, &err) ||
        oc_train_model_cfg(model, "baseline", in_ch, size, k, &m, &err)) {
        fprintf(stderr, "oodc bench train: %s\n", err.msg);
        return 2;
    }

    printf("oodc bench train: %s, %dx%dx%d inputs, batch %d, %d classes\n", model, in_ch, size, size,
           batch, k);
    oc_bench_machine(stdout);
    printf("command:");
    printf(" oodc bench");
    for (int i = 0; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);

    struct oc_rt *rt = NULL;
    struct oc_graph *tg = NULL, *eg = NULL;
    struct oc_exec *tx = NULL, *ex = NULL;
    struct oc_buf x = {0}, y = {0}, lr = {0}, st = {0};
    double *ti = calloc((size_t)repeats, sizeof *ti), *fi = calloc((size_t)repeats, sizeof *fi);
    int rc = 1;
    enum oc_status s;
    struct oc_shape xs = OC_SHAPE(batch, in_ch, size, size), ys = OC_SHAPE(batch), sc = OC_SCALAR;
    if (!ti || !fi || oc_buf_alloc(&x, OC_F32, &xs) || oc_buf_alloc(&y, OC_I32, &ys) ||
        oc_buf_alloc(&lr, OC_F32, &sc) || oc_buf_alloc(&st, OC_I32, &sc)) {
        fprintf(stderr, "oodc bench train: out of memory\n");
        goto done;
    }
    uint64_t h = 88172645463325252ull;
    for (int64_t i = 0; i < oc_shape_numel(&xs); i++) {
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        ((float *)x.data)[i] = (float)(h >> 40) / (float)(1 << 24);
    }
    for (int i = 0; i < batch; i++) {
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        ((int32_t *)y.data)[i] = (int32_t)(h % (uint64_t)k);
    }
    ((float *)lr.data)[0] = 0.1f;
    ((int32_t *)st.data)[0] = 0;

    if ((s = oc_rt_new(&rt, threads, 0, &err))) goto fail;
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    o.fusion = fusion;
    double t0 = oc_bench_now();
    if ((s = oc_train_step_graph(&m, batch, 0.9, 5e-4, &tg, &err)) ||
        (s = oc_compile(tg, "cpu", &o, &tx, &err)))
        goto fail;
    double tc_train = oc_bench_now() - t0;
    t0 = oc_bench_now();
    if ((s = oc_train_eval_graph(&m, batch, &eg, &err)) || (s = oc_compile(eg, "cpu", &o, &ex, &err)))
        goto fail;
    double tc_fwd = oc_bench_now() - t0;
    if ((s = oc_train_init_params(tx, tg, 0, &err)) || (s = oc_exec_set(tx, "x", &x, &err)) ||
        (s = oc_exec_set(tx, "labels", &y, &err)) || (s = oc_exec_set(tx, "lr", &lr, &err)) ||
        (s = oc_exec_set(tx, "step", &st, &err)))
        goto fail;
    if ((s = oc_train_init_params(ex, eg, 0, &err)) || (s = oc_exec_set(ex, "x", &x, &err)) ||
        (s = oc_exec_set(ex, "step", &st, &err)))
        goto fail;
    struct oc_exec_stats ts, fs;
    oc_exec_stats(tx, &ts);
    oc_exec_stats(ex, &fs);
    printf("mode: cpu (LLVM JIT), fusion %s, %d threads; kernels per step: %d (train), %d "
           "(forward); arena %.1f MB (train); compile %.1f s (train), %.1f s (forward)\n",
           fusion ? "on" : "off", oc_rt_nthreads(rt), ts.nkernels, fs.nkernels,
           (double)ts.arena_bytes / 1e6, tc_train, tc_fwd);
    fflush(stdout);
    if ((s = time_steps(tx, steps, warmup, repeats, batch, ti, &err))) goto fail;
    if (forward && (s = time_steps(ex, steps, warmup, repeats, batch, fi, &err))) goto fail;
    double tmin = ti[0], tmax = ti[0], fmin = fi[0], fmax = fi[0];
    for (int r = 0; r < repeats; r++) {
        tmin = ti[r] < tmin ? ti[r] : tmin, tmax = ti[r] > tmax ? ti[r] : tmax;
        fmin = fi[r] < fmin ? fi[r] : fmin, fmax = fi[r] > fmax ? fi[r] : fmax;
    }
    double tmed = oc_bench_median(ti, repeats), fmed = forward ? oc_bench_median(fi, repeats) : 0;

    double ptrain = 0, pfwd = 0;
    char info[2048] = "";
    int have_peer = 0;
    if (peer) {
        char script[PATH_MAX];
        if (!oc_bench_find_peer(peer_given, "bench/peer/torch_train.py", script, sizeof script))
            oc_bench_fmt(info, sizeof info, "peer script %s not found (give --peer FILE)",
                     peer_given ? peer_given : "bench/peer/torch_train.py");
        else
            have_peer = run_peer(script, model, batch, in_ch, size, oc_rt_nthreads(rt), steps,
                                 warmup, repeats, forward, &ptrain, &pfwd, info, sizeof info);
    }
    printf("\n%-12s %14s %20s %14s %8s\n", "", "oodc img/s", "(min..max)", "PyTorch img/s", "ratio");
    printf("%-12s %14.1f %9.1f..%-9.1f", "train step", tmed, tmin, tmax);
    if (have_peer) printf(" %14.1f %7.2fx\n", ptrain, tmed / ptrain);
    else printf(" %14s %8s\n", "-", "-");
    if (forward) {
        printf("%-12s %14.1f %9.1f..%-9.1f", "forward", fmed, fmin, fmax);
        if (have_peer && pfwd > 0) printf(" %14.1f %7.2fx\n", pfwd, fmed / pfwd);
        else printf(" %14s %8s\n", "-", "-");
    }
    printf("medians of %d repeat(s) of %d step(s) after %d warm-up step(s)\n", repeats, steps, warmup);
    if (peer) printf("peer: %s\n", have_peer ? info : info[0] ? info : "unavailable");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "oodc bench train: %s\n", err.msg);
    rc = s == OC_ERR_INVALID || s == OC_ERR_UNSUPPORTED ? 2 : 1;
done:
    oc_exec_free(tx);
    oc_exec_free(ex);
    oc_graph_free(tg);
    oc_graph_free(eg);
    oc_rt_free(rt);
    oc_buf_free(&x), oc_buf_free(&y), oc_buf_free(&lr), oc_buf_free(&st);
    free(ti);
    free(fi);
    return rc;
}
