/* heads.c (bench) - `oodc bench heads`: forward + backward of the OOD heads'
 * losses and the ODIN perturbation step, compiled fused and unfused, beside
 * PyTorch eager running the same definitions in the same run
 * (bench/peer/torch_heads.py, started with popen when /usr/bin/python3 can
 * import torch).
 *
 * The heads (their definitions must match the peer's docstring exactly):
 *   ce    cross-entropy of logits [B,10] with labels, d/d logits
 *   bin   weighted sigmoid BCE (zeta 0.05 on the negative terms), summed over
 *         the classes, mean over the batch, d/d logits
 *   mmce  weighted MMCE (Laplacian kernel, bandwidth 0.4) over the max-softmax
 *         confidences, correctness = (argmax == label), d/d logits
 *   vib   KL(N(mu, softplus(rho)^2) || N(mu_p, softplus(rho_p)^2)), z = 64,
 *         summed over z, mean over the batch; d/d mu, rho, mu_p, rho_p
 *   viby  the same KL against 10 class priors weighted by softmax(logits),
 *         mean over the batch; d/d mu, rho, priors, logits
 *   odin  ODIN on an MLP 784-256-10 (T = 1000, eps = 0.0014): gradient of the
 *         log max softmax(f(x)/T) w.r.t. x, x' = x - eps*sign(-grad), and the
 *         second forward's max softmax
 *
 * Each graph is built with the DSL, differentiated by autodiff and
 * simplified, exactly as the trainer's graphs are; each (head, batch, mode)
 * is compiled once and timed run by run (median; at least 3 runs, more while
 * the time budget lasts). "GB/s" is the fused run's compulsory traffic (the
 * bytes of every input read once plus every output written once) over its
 * median time, set against the copy bandwidth measured in the same run. A
 * mode whose memory plan needs more than --max-mem is skipped with a note
 * (unfused MMCE at large B materializes B x B matrices), and the fused
 * outputs are checked against the unfused ones (max relative difference).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "../runtime/runtime.h"
#include "common.h"

#define NCLS 10
#define ZDIM 64
#define MAXB 8

/* ---------------------------------------------------------------- the heads */

static const char *const head_names[] = {"ce", "bin", "mmce", "vib", "viby", "odin"};
enum { NHEAD = sizeof head_names / sizeof *head_names };

/* Appends d loss / d wrt[i] as outputs "d_<name>" and "loss". */
static enum oc_status add_grads(struct oc_graph *g, oc_tensor loss, const oc_tensor *wrt, int n,
                                struct oc_err *err)
{
    enum oc_status s = oc_graph_status(g);
    if (s) return oc_err_set(err, s, "building %s: %s", g->name, g->err.msg);
    int ids[8], gr[8];
    for (int i = 0; i < n; i++) ids[i] = wrt[i].id;
    if ((s = oc_pass_autodiff(g, loss.id, -1, ids, n, gr, err))) return s;
    oc_output(g, "loss", loss);
    for (int i = 0; i < n; i++) {
        char name[64];
        oc_bench_fmt(name, sizeof name, "d_%s", g->nodes[ids[i]]->attrs.name);
        oc_output(g, name, (oc_tensor){gr[i]});
    }
    return OC_OK;
}

static oc_tensor softplus_kl(struct oc_graph *g, oc_tensor mu, oc_tensor rho, oc_tensor pm,
                             oc_tensor pr)
{
    return oc_kl_diag_gaussian(g, mu, oc_softplus(g, rho), pm, oc_softplus(g, pr));
}

static oc_tensor mlp(struct oc_graph *g, oc_tensor x, const oc_tensor *w)
{
    return oc_linear(g, oc_relu(g, oc_linear(g, x, w[0], w[1])), w[2], w[3]);
}

static enum oc_status build_head(const char *head, int B, struct oc_graph **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_graph *g = oc_graph_new(head);
    if (!g) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
    enum oc_status s = OC_OK;
    if (!strcmp(head, "ce") || !strcmp(head, "bin") || !strcmp(head, "mmce")) {
        oc_tensor x = oc_input(g, "logits", OC_F32, OC_SHAPE(B, NCLS));
        oc_tensor y = oc_input(g, "labels", OC_I32, OC_SHAPE(B));
        oc_tensor loss;
        if (!strcmp(head, "ce")) {
            loss = oc_cross_entropy(g, x, y);
        } else if (!strcmp(head, "bin")) {
            loss = oc_sigmoid_bce(g, x, oc_one_hot(g, y, NCLS, OC_F32), 0.05);
        } else {
            oc_tensor p = oc_softmax(g, x, 1);
            oc_tensor conf = oc_reduce_max(g, p, 2u, 0);
            oc_tensor correct = oc_cast(g, oc_eq(g, oc_argmax(g, p, 1, 0), y), OC_F32);
            loss = oc_mmce_weighted(g, conf, correct, 0.4);
        }
        s = add_grads(g, loss, &x, 1, err);
    } else if (!strcmp(head, "vib") || !strcmp(head, "viby")) {
        int P = strcmp(head, "vib") ? NCLS : 1;
        oc_tensor v[5];
        v[0] = oc_input(g, "mu", OC_F32, OC_SHAPE(B, ZDIM));
        v[1] = oc_input(g, "rho", OC_F32, OC_SHAPE(B, ZDIM));
        v[2] = oc_input(g, "prior_mu", OC_F32, OC_SHAPE(P, ZDIM));
        v[3] = oc_input(g, "prior_rho", OC_F32, OC_SHAPE(P, ZDIM));
        oc_tensor loss;
        if (P == 1) {
            loss = oc_mean(g, softplus_kl(g, v[0], v[1], v[2], v[3]), 1u, 0);
            s = add_grads(g, loss, v, 4, err);
        } else {
            v[4] = oc_input(g, "logits", OC_F32, OC_SHAPE(B, NCLS));
            oc_tensor kls = softplus_kl(g, oc_reshape(g, v[0], OC_SHAPE(B, 1, ZDIM)),
                                        oc_reshape(g, v[1], OC_SHAPE(B, 1, ZDIM)),
                                        oc_reshape(g, v[2], OC_SHAPE(1, P, ZDIM)),
                                        oc_reshape(g, v[3], OC_SHAPE(1, P, ZDIM)));
            oc_tensor per = oc_sum(g, oc_mul(g, oc_softmax(g, v[4], 1), kls), 2u, 0);
            loss = oc_mean(g, per, 1u, 0);
            s = add_grads(g, loss, v, 5, err);
        }
    } else if (!strcmp(head, "odin")) {
        const double T = 1000.0, eps = 0.0014;
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(B, 784));
        oc_tensor w[4] = {oc_input(g, "w1", OC_F32, OC_SHAPE(256, 784)),
                          oc_input(g, "b1", OC_F32, OC_SHAPE(256)),
                          oc_input(g, "w2", OC_F32, OC_SHAPE(NCLS, 256)),
                          oc_input(g, "b2", OC_F32, OC_SHAPE(NCLS))};
        oc_tensor ls = oc_sum(g, oc_reduce_max(g, oc_log_softmax(g, oc_scale(g, mlp(g, x, w), 1 / T), 1), 2u, 0),
                              1u, 0);
        s = oc_graph_status(g);
        if (s) {
            oc_err_set(err, s, "building odin: %s", g->err.msg);
        } else {
            int gx;
            s = oc_pass_autodiff(g, ls.id, -1, &x.id, 1, &gx, err);
            if (!s) {
                oc_tensor xp = oc_sub(g, x, oc_scale(g, oc_sign(g, oc_neg(g, (oc_tensor){gx})), eps));
                oc_tensor score =
                    oc_reduce_max(g, oc_softmax(g, oc_scale(g, mlp(g, xp, w), 1 / T), 1), 2u, 0);
                oc_output(g, "score", score);
            }
        }
    } else {
        s = oc_err_set(err, OC_ERR_INVALID, "unknown head '%s' (ce, bin, mmce, vib, viby, odin)", head);
    }
    if (!s && (s = oc_graph_status(g))) oc_err_set(err, s, "building %s: %s", head, g->err.msg);
    if (!s) s = oc_pass_simplify(&g, err);
    if (s) {
        oc_graph_free(g);
        return s;
    }
    *out = g;
    return OC_OK;
}

/* ---------------------------------------------------------------- data */

/* Deterministic inputs by name: labels uniform in [0, 10), the ODIN image
 * uniform in [0, 1), its weights N(0, 0.05^2) and biases N(0, 0.01^2),
 * everything else N(0, 1). */
static enum oc_status bind_inputs(struct oc_exec *ex, const struct oc_graph *g, struct oc_err *err)
{
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_INPUT) continue;
        const char *name = n->attrs.name;
        uint64_t seed = oc_hash64(name, strlen(name), 1234);
        struct oc_buf b;
        if (oc_buf_alloc(&b, n->dtype, &n->shape)) return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        int64_t cnt = oc_shape_numel(&n->shape);
        double scale = name[0] == 'w' ? 0.05 : name[0] == 'b' ? 0.01 : 1.0;
        for (int64_t j = 0; j < cnt; j++) {
            double v;
            if (n->dtype == OC_I32) v = floor(oc_rng_uniform_at(seed, 0, (uint64_t)j) * NCLS);
            else if (!strcmp(name, "x")) v = oc_rng_uniform_at(seed, 0, (uint64_t)j);
            else v = scale * oc_rng_normal_at(seed, 0, (uint64_t)j);
            oc_buf_set(&b, j, v);
        }
        enum oc_status s = oc_exec_set(ex, name, &b, err);
        oc_buf_free(&b);
        if (s) return s;
    }
    return OC_OK;
}

/* Bytes every implementation must move: inputs read once, outputs written once. */
static double traffic_bytes(const struct oc_graph *g)
{
    double t = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op == OC_OP_INPUT) t += (double)oc_shape_numel(&n->shape) * (double)oc_dtype_size(n->dtype);
    }
    for (int i = 0; i < g->noutputs; i++) {
        const struct oc_node *n = g->nodes[g->outputs[i].node];
        t += (double)oc_shape_numel(&n->shape) * (double)oc_dtype_size(n->dtype);
    }
    return t;
}

/* ---------------------------------------------------------------- timing */

struct run_opts {
    struct oc_rt *rt;
    int repeats;
    double budget;
    double max_mem;
    int print_kernels;
};

struct mode_result {
    double us;       /* median, 0 when not run */
    double cpu_us;   /* median CPU time of the process (all threads) per run */
    int runs;
    double mem;      /* arena + pinned bytes */
    char note[160];
    struct oc_buf out[MAXB];
    int nout;
};

static void free_result(struct mode_result *r)
{
    for (int i = 0; i < r->nout; i++) oc_buf_free(&r->out[i]);
    r->nout = 0;
}

/* Bytes the compiled program would hold (arena plus pinned buffers). */
static enum oc_status plan_bytes(const struct oc_graph *g, int fusion, double *bytes, struct oc_err *err)
{
    struct oc_fuse_opts fo = {fusion, 0, NULL};
    struct oc_kprog *p = NULL;
    enum oc_status s = oc_pass_fuse(g, &fo, &p, err);
    if (!s) s = oc_pass_memplan(p, 1, err);
    if (!s) {
        double b = (double)p->arena_bytes;
        for (int i = 0; i < p->nbuf; i++)
            if (p->buf[i].pinned || p->buf[i].offset < 0) b += (double)p->buf[i].bytes;
        *bytes = b;
    }
    oc_kprog_free(p);
    return s;
}

static enum oc_status time_mode(const struct oc_graph *g, int fusion, const struct run_opts *o,
                                struct mode_result *r, struct oc_err *err)
{
    memset(r, 0, sizeof *r);
    enum oc_status s = plan_bytes(g, fusion, &r->mem, err);
    if (s) return s;
    if (r->mem > o->max_mem) {
        oc_bench_fmt(r->note, sizeof r->note, "%s skipped: needs %.1f GiB (--max-mem %.1f GiB)",
                     fusion ? "fused" : "unfused", r->mem / 1073741824.0, o->max_mem / 1073741824.0);
        return OC_OK;
    }
    if (o->print_kernels) {
        struct oc_fuse_opts fo = {fusion, 0, NULL};
        struct oc_kprog *p = NULL;
        if (!oc_pass_fuse(g, &fo, &p, err)) {
            fprintf(stderr, "---- %s, fusion %s\n", g->name, fusion ? "on" : "off");
            if (fusion) oc_graph_print(g, stderr);
            for (int i = 0; i < p->nkernel; i++) oc_kir_print(p->kernel[i], stderr);
        }
        oc_kprog_free(p);
        oc_err_clear(err);
    }
    struct oc_compile_opts co = oc_compile_defaults();
    co.rt = o->rt;
    co.fusion = fusion;
    struct oc_exec *ex = NULL;
    if ((s = oc_compile(g, "cpu", &co, &ex, err)) || (s = bind_inputs(ex, g, err))) goto out;
    double *t = calloc(2 * ((size_t)o->repeats + 1), sizeof *t), *c = t + o->repeats + 1;
    if (!t) {
        s = oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* one warm-up run (first touch of the arena, caches) */
    double t0 = oc_bench_now();
    if ((s = oc_exec_run(ex, 0, err))) goto out_t;
    double first = oc_bench_now() - t0, start = oc_bench_now();
    if (first < 0.05 && (s = oc_exec_run(ex, 0, err))) goto out_t;
    int n = 0;
    while (n < o->repeats && (n < 3 || oc_bench_now() - start < o->budget)) {
        double c0 = oc_bench_cpu_now();
        t0 = oc_bench_now();
        if ((s = oc_exec_run(ex, 0, err))) goto out_t;
        t[n] = oc_bench_now() - t0;
        c[n++] = oc_bench_cpu_now() - c0;
    }
    r->us = oc_bench_median(t, n) * 1e6;
    r->cpu_us = oc_bench_median(c, n) * 1e6;
    r->runs = n;
    for (int i = 0; i < g->noutputs && i < MAXB; i++) {
        if ((s = oc_exec_get(ex, g->outputs[i].name, &r->out[i], err))) goto out_t;
        r->nout = i + 1;
    }
out_t:
    free(t);
out:
    oc_exec_free(ex);
    if (s) free_result(r);
    return s;
}

/* Largest |a - b| / (1 + |b|) over all outputs. */
static double max_rel_diff(const struct mode_result *a, const struct mode_result *b)
{
    double m = 0;
    for (int i = 0; i < a->nout && i < b->nout; i++) {
        int64_t n = oc_shape_numel(&a->out[i].shape);
        for (int64_t j = 0; j < n; j++) {
            double x = oc_buf_get(&a->out[i], j), y = oc_buf_get(&b->out[i], j);
            double d = fabs(x - y) / (1 + fabs(y));
            if (!(d <= m)) m = d; /* NaN sticks */
        }
    }
    return m;
}

/* ---------------------------------------------------------------- the peer */

struct peer_row {
    char head[16];
    int batch;
    double us; /* < 0: none */
};

/* Runs the peer once over every head and batch; returns the rows read. */
static int run_peer(const char *script, const char *heads, const char *batches, int threads,
                    int repeats, struct peer_row *rows, int maxrows, char *info, size_t ninfo)
{
    if (access("/usr/bin/python3", X_OK)) {
        oc_bench_fmt(info, ninfo, "/usr/bin/python3 not found");
        return 0;
    }
    char cmd[2048];
    oc_bench_fmt(cmd, sizeof cmd,
                 "/usr/bin/python3 '%s' --heads %s --batches %s --threads %d --repeat %d 2>&1",
                 script, heads, batches, threads, repeats);
    FILE *p = popen(cmd, "r");
    if (!p) {
        oc_bench_fmt(info, ninfo, "cannot run %s: %s", cmd, strerror(errno));
        return 0;
    }
    char line[4096], ver[64] = "?", first_err[512] = "";
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        if (line[0] != '{') {
            if (!first_err[0]) oc_bench_fmt(first_err, sizeof first_err, "%s", line);
            continue;
        }
        char *h = strstr(line, "\"head\": \""), *b = strstr(line, "\"batch\": "),
             *t = strstr(line, "\"torch_us\": "), *v = strstr(line, "\"torch\": \"");
        if (!h || !b || !t || n >= maxrows) continue;
        struct peer_row *r = &rows[n++];
        sscanf(h + 9, "%15[^\"]", r->head);
        r->batch = atoi(b + 9);
        r->us = strncmp(t + 12, "null", 4) ? strtod(t + 12, NULL) : -1;
        if (v) sscanf(v + 10, "%63[^\"]", ver);
    }
    int rc = pclose(p);
    if (rc != 0 && !n) {
        first_err[strcspn(first_err, "\n")] = 0;
        if (first_err[0]) oc_bench_fmt(info, ninfo, "the peer failed: %s", first_err);
        else oc_bench_fmt(info, ninfo, "the peer failed (exit status %d)", rc);
        return 0;
    }
    char *redirect = strstr(cmd, " 2>&1");
    if (redirect) *redirect = 0;
    oc_bench_fmt(info, ninfo, "PyTorch %s eager, %d threads: %s", ver, threads, cmd);
    return n;
}

/* ---------------------------------------------------------------- the command */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc bench heads [options]\n"
            "\n"
            "Forward+backward of the OOD heads' losses and the ODIN step, fused vs unfused,\n"
            "beside PyTorch eager (bench/peer/torch_heads.py) in the same run.\n"
            "\n"
            "  --heads LIST       comma-separated subset of ce,bin,mmce,vib,viby,odin (default all)\n"
            "  --batches LIST     comma-separated batch sizes (default 128,4096,65536)\n"
            "  --repeats N        at most N timed runs per mode (default 15; at least 3)\n"
            "  --budget SEC       stop adding runs after SEC seconds per mode (default 2)\n"
            "  --threads N        CPU threads for oodc and PyTorch (default: all cores)\n"
            "  --max-mem GIB      skip a mode whose memory plan needs more (default: half\n"
            "                     of the memory available at start)\n"
            "  --no-unfused       time the fused programs only\n"
            "  --no-peer          do not run PyTorch\n"
            "  --peer FILE        the peer script (default bench/peer/torch_heads.py)\n"
            "  --print-kernels    print each compiled program's kernel IR to stderr\n"
            "  --json             print a JSON list of {head, batch, fused_us, unfused_us,\n"
            "                     gbps, copy_gbps, fused_cpu_us, unfused_cpu_us, torch_us}\n"
            "                     (the report goes to stderr)\n"
            "  -h, --help         show this help\n");
}

static double mem_available(void)
{
    char line[256];
    double kb = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemAvailable:", 13)) kb = strtod(line + 13, NULL);
    if (f) fclose(f);
    return kb > 0 ? kb * 1024 : 8.0 * 1073741824.0;
}

static void json_num(FILE *f, const char *key, double v, int last)
{
    if (v > 0) fprintf(f, "\"%s\": %.6g%s", key, v, last ? "" : ", ");
    else fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
}

struct row {
    int head, batch;
    double fused, unfused, torch, gbps, diff, fused_cpu, unfused_cpu;
    int fused_runs, unfused_runs;
    char note[256];
};

int oc_bench_heads(int argc, char **argv)
{
    const char *heads_arg = "ce,bin,mmce,vib,viby,odin", *batches_arg = "128,4096,65536";
    const char *peer_given = NULL;
    int repeats = 15, threads = 0, unfused = 1, peer = 1, json = 0, print_kernels = 0;
    double budget = 2.0, max_mem = 0.5 * mem_available();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-unfused")) {
            unfused = 0;
        } else if (!strcmp(a, "--no-peer")) {
            peer = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--print-kernels")) {
            print_kernels = 1;
        } else if (!strcmp(a, "--heads") && v) {
            heads_arg = v, i++;
        } else if (!strcmp(a, "--batches") && v) {
            batches_arg = v, i++;
        } else if (!strcmp(a, "--peer") && v) {
            peer_given = v, i++;
        } else if ((!strcmp(a, "--budget") || !strcmp(a, "--max-mem")) && v) {
            char *end;
            double x = strtod(v, &end);
            if (end == v || *end || !(x > 0) || x > 1e6) {
                fprintf(stderr, "oodc bench heads: %s: '%s' is not a positive number\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--budget")) budget = x;
            else max_mem = x * 1073741824.0;
            i++;
        } else if (!strcmp(a, "--repeats")) {
            if (oc_bench_parse_int("heads", a, v, 3, 100000, &repeats)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (oc_bench_parse_int("heads", a, v, 1, 1024, &threads)) return 2;
            i++;
        } else {
            fprintf(stderr, "oodc bench heads: unknown option or missing value '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    /* the lists */
    int hsel[NHEAD], nh = 0, bsel[16], nb = 0;
    char tmp[512];
    oc_bench_fmt(tmp, sizeof tmp, "%s", heads_arg);
    for (char *t = strtok(tmp, ","); t; t = strtok(NULL, ",")) {
        int k = -1;
        for (int h = 0; h < NHEAD; h++)
            if (!strcmp(t, head_names[h])) k = h;
        if (k < 0 || nh == NHEAD) {
            fprintf(stderr, "oodc bench heads: --heads: unknown head '%s' (ce, bin, mmce, vib, viby, odin)\n", t);
            return 2;
        }
        hsel[nh++] = k;
    }
    oc_bench_fmt(tmp, sizeof tmp, "%s", batches_arg);
    for (char *t = strtok(tmp, ","); t; t = strtok(NULL, ",")) {
        int b;
        if (nb == 16 || oc_bench_parse_int("heads", "--batches", t, 1, 1 << 22, &b)) return 2;
        bsel[nb++] = b;
    }
    if (!nh || !nb) {
        fprintf(stderr, "oodc bench heads: nothing to run (empty --heads or --batches)\n");
        return 2;
    }

    FILE *rep = json ? stderr : stdout;
    fprintf(rep, "oodc bench heads: forward+backward of the OOD heads, fused vs unfused vs PyTorch eager\n");
    oc_bench_machine(rep);
    fprintf(rep, "command: oodc bench");
    for (int i = 0; i < argc; i++) fprintf(rep, " %s", argv[i]);
    fputc('\n', rep);
    fflush(rep);

    struct oc_err err = {0};
    struct oc_rt *rt = NULL;
    enum oc_status s = oc_rt_new(&rt, threads, 0, &err);
    if (s) {
        fprintf(stderr, "oodc bench heads: %s\n", err.msg);
        return 1;
    }
    int nt = oc_rt_nthreads(rt);
    double copy0 = oc_bench_copy_gbps((size_t)128 << 20, nt, 5);
    fprintf(rep, "mode: cpu (LLVM JIT), %d threads; copy bandwidth %.1f GB/s (128 MiB, %d threads)\n",
            nt, copy0, nt);
    fflush(rep);

    struct run_opts ro = {rt, repeats, budget, max_mem, print_kernels};
    struct row *rows = calloc((size_t)(nh * nb), sizeof *rows);
    if (!rows) {
        oc_rt_free(rt);
        fprintf(stderr, "oodc bench heads: out of memory\n");
        return 1;
    }
    int nrow = 0, rc = 0;
    if (!json)
        printf("\n%-5s %6s %12s %12s %8s %12s %8s %7s %6s %9s %11s %11s\n", "head", "batch",
               "fused us", "unfused us", "unf/fus", "torch us", "pt/fus", "GB/s", "%copy", "check",
               "fused cpu", "unfus cpu");
    for (int hi = 0; hi < nh && !rc; hi++) {
        for (int bi = 0; bi < nb && !rc; bi++) {
            struct row *r = &rows[nrow++];
            r->head = hsel[hi];
            r->batch = bsel[bi];
            r->torch = -1;
            r->diff = -1;
            struct oc_graph *g = NULL;
            struct mode_result fr, ur;
            memset(&fr, 0, sizeof fr);
            memset(&ur, 0, sizeof ur);
            s = build_head(head_names[r->head], r->batch, &g, &err);
            if (!s) s = time_mode(g, 1, &ro, &fr, &err);
            if (!s && unfused) s = time_mode(g, 0, &ro, &ur, &err);
            if (s) {
                fprintf(stderr, "oodc bench heads: %s, batch %d: %s\n", head_names[r->head],
                        r->batch, err.msg);
                rc = 1;
            } else {
                r->fused = fr.us, r->unfused = ur.us;
                r->fused_cpu = fr.cpu_us, r->unfused_cpu = ur.cpu_us;
                r->fused_runs = fr.runs, r->unfused_runs = ur.runs;
                r->gbps = fr.us > 0 ? traffic_bytes(g) / (fr.us * 1e-6) / 1e9 : 0;
                if (fr.nout && ur.nout) r->diff = max_rel_diff(&fr, &ur);
                oc_bench_fmt(r->note, sizeof r->note, "%s%s%s", fr.note, fr.note[0] && ur.note[0] ? "; " : "",
                             ur.note);
                if (!json) {
                    printf("%-5s %6d %12.1f", head_names[r->head], r->batch, r->fused);
                    if (r->unfused > 0) printf(" %12.1f %7.2fx", r->unfused, r->unfused / r->fused);
                    else printf(" %12s %8s", "-", "-");
                    printf(" %12s %8s %7.2f %5.0f%%", "", "", r->gbps, copy0 > 0 ? 100 * r->gbps / copy0 : 0);
                    if (r->diff >= 0) printf(" %9.1e", r->diff);
                    else printf(" %9s", "-");
                    printf(" %11.1f", r->fused_cpu);
                    if (r->unfused_cpu > 0) printf(" %11.1f", r->unfused_cpu);
                    else printf(" %11s", "-");
                    if (r->note[0]) printf("  (%s)", r->note);
                    putchar('\n');
                    fflush(stdout);
                }
            }
            free_result(&fr);
            free_result(&ur);
            oc_graph_free(g);
            oc_err_clear(&err);
        }
    }
    double copy1 = rc ? 0 : oc_bench_copy_gbps((size_t)128 << 20, nt, 5);
    double copy = copy1 > 0 ? 0.5 * (copy0 + copy1) : copy0;

    char info[2048] = "";
    int have_peer = 0;
    if (!rc && peer) {
        char script[PATH_MAX];
        struct peer_row pr[NHEAD * 16];
        char hl[128] = "", bl[256] = "";
        for (int i = 0; i < nh; i++)
            oc_bench_fmt(hl + strlen(hl), sizeof hl - strlen(hl), "%s%s", i ? "," : "", head_names[hsel[i]]);
        for (int i = 0; i < nb; i++)
            oc_bench_fmt(bl + strlen(bl), sizeof bl - strlen(bl), "%s%d", i ? "," : "", bsel[i]);
        if (!oc_bench_find_peer(peer_given, "bench/peer/torch_heads.py", script, sizeof script)) {
            oc_bench_fmt(info, sizeof info, "peer script %s not found (give --peer FILE)",
                         peer_given ? peer_given : "bench/peer/torch_heads.py");
        } else {
            fprintf(rep, "\nrunning the PyTorch peer ...\n");
            fflush(rep);
            int np = run_peer(script, hl, bl, nt, repeats, pr, NHEAD * 16, info, sizeof info);
            have_peer = np > 0;
            for (int i = 0; i < np; i++)
                for (int j = 0; j < nrow; j++)
                    if (!strcmp(pr[i].head, head_names[rows[j].head]) && pr[i].batch == rows[j].batch)
                        rows[j].torch = pr[i].us;
        }
    }
    if (!rc && !json) {
        printf("\n%-5s %6s %12s %12s %8s %12s %8s %7s %6s %9s %11s %11s\n", "head", "batch",
               "fused us", "unfused us", "unf/fus", "torch us", "pt/fus", "GB/s", "%copy", "check",
               "fused cpu", "unfus cpu");
        for (int j = 0; j < nrow; j++) {
            const struct row *r = &rows[j];
            printf("%-5s %6d %12.1f", head_names[r->head], r->batch, r->fused);
            if (r->unfused > 0) printf(" %12.1f %7.2fx", r->unfused, r->unfused / r->fused);
            else printf(" %12s %8s", "-", "-");
            if (r->torch > 0) printf(" %12.1f %7.2fx", r->torch, r->torch / r->fused);
            else printf(" %12s %8s", "-", "-");
            printf(" %7.2f %5.0f%%", r->gbps, copy > 0 ? 100 * r->gbps / copy : 0);
            if (r->diff >= 0) printf(" %9.1e", r->diff);
            else printf(" %9s", "-");
            printf(" %11.1f", r->fused_cpu);
            if (r->unfused_cpu > 0) printf(" %11.1f", r->unfused_cpu);
            else printf(" %11s", "-");
            if (r->note[0]) printf("  (%s)", r->note);
            putchar('\n');
        }
        printf("copy bandwidth %.1f GB/s (start %.1f, end %.1f); GB/s = inputs read + outputs "
               "written once, over the fused median; check = max |fused - unfused| / (1 + |unfused|);\n"
               "cpu = median CPU time of the process per run, all threads (less sensitive to load)\n",
               copy, copy0, copy1);
        printf("medians of 3..%d runs per mode (fewer past a %.1f s budget) after warm-up\n", repeats, budget);
        if (peer) printf("peer: %s\n", have_peer ? info : info[0] ? info : "unavailable");
    }
    if (!rc && json) {
        printf("[\n");
        for (int j = 0; j < nrow; j++) {
            const struct row *r = &rows[j];
            printf("  {\"head\": \"%s\", \"batch\": %d, ", head_names[r->head], r->batch);
            json_num(stdout, "fused_us", r->fused, 0);
            json_num(stdout, "unfused_us", r->unfused, 0);
            json_num(stdout, "gbps", r->gbps, 0);
            json_num(stdout, "copy_gbps", copy, 0);
            json_num(stdout, "fused_cpu_us", r->fused_cpu, 0);
            json_num(stdout, "unfused_cpu_us", r->unfused_cpu, 0);
            json_num(stdout, "torch_us", r->torch, 1);
            printf("}%s\n", j + 1 < nrow ? "," : "");
        }
        printf("]\n");
        if (peer) fprintf(stderr, "peer: %s\n", have_peer ? info : info[0] ? info : "unavailable");
    }
    free(rows);
    oc_rt_free(rt);
    return rc;
}
