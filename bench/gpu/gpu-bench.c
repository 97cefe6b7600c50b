/* gpu-bench.c - oc-gpu-bench: the GPU benchmarks of bench/gpu/check.sh,
 * timed with CUDA events on the CUDA executor (runtime/cuda-exec.c) and
 * printed as one JSON object per line (bench/gpu/report.py makes the
 * table). PyTorch eager peers: bench/peer/torch_heads.py (heads) and
 * bench/gpu/torch_gpu.py (copy, ODIN on Wide ResNets, training step).
 *
 *   oc-gpu-bench info
 *   oc-gpu-bench copy [--mib 1024]          device-to-device copy, GB/s (read + written)
 *   oc-gpu-bench heads [--batches 128,4096,65536] [--heads ce,bin,mmce,vib,viby,odin]
 *                                           forward + backward of each head, fused and unfused
 *   oc-gpu-bench odin --arch wrn-16-4 [--batch 128]
 *                                           ODIN scoring step: forward, d log S / dx, x',
 *                                           forward of x' (T = 1000, eps = 0.0014)
 *   oc-gpu-bench train --arch wrn-28-10 [--batch 128] [--tf32 1] [--graph 0|1] [--fusion 1]
 *                                           one SGD step of the training graph; also the
 *                                           loop kernels' achieved DRAM GB/s
 *   common: --steps N (timed runs, median reported), --warmup N
 *
 * Head definitions follow bench/peer/torch_heads.py (z = 64, K = 10). The
 * Wide ResNet is models/wrn.c (= bench/peer/wrn.py). Exit status 1 with a
 * message on any failure (no GPU: "no NVIDIA driver ...").
 */
#include "../../models/models.h"
#include "../../passes/passes.h"
#include "../../runtime/cuda-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K 10
#define Z 64

static int steps = 20, warmup = 3;
static struct oc_cuda *cu;

static void die(const char *what, const struct oc_err *err)
{
    fprintf(stderr, "oc-gpu-bench: %s: %s\n", what, err->msg);
    exit(1);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

static struct oc_buf rnd(enum oc_dtype dt, struct oc_shape s, uint64_t seed, double lo, double hi)
{
    struct oc_buf b;
    if (oc_buf_alloc(&b, dt, &s)) {
        fprintf(stderr, "oc-gpu-bench: out of memory\n");
        exit(1);
    }
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    int64_t n = oc_shape_numel(&s);
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) * 0x1.0p-53;
        double v = lo + (hi - lo) * u;
        oc_buf_set(&b, i, dt == OC_I32 ? (double)(int64_t)v : v);
    }
    return b;
}

/* Binds every input of g with random values (labels in [0, K)). */
static void bind_inputs(struct oc_cuda_exec *ex, const struct oc_graph *g)
{
    struct oc_err err = {0};
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_INPUT) continue;
        struct oc_buf b;
        if (!strcmp(n->attrs.name, "lr")) b = rnd(n->dtype, n->shape, 1, 0.1, 0.1);
        else if (n->dtype == OC_I32) b = rnd(n->dtype, n->shape, 1 + (uint64_t)i, 0, K);
        else b = rnd(n->dtype, n->shape, 1 + (uint64_t)i, n->shape.rank == 4 ? 0 : -1, 1);
        if (oc_cuda_exec_set(ex, n->attrs.name, &b, &err)) die("bind", &err);
        oc_buf_free(&b);
    }
}

/* Median milliseconds per run (CUDA events around each run). */
static double time_runs(struct oc_cuda_exec *ex)
{
    struct oc_err err = {0};
    for (int i = 0; i < warmup; i++)
        if (oc_cuda_exec_run(ex, 1, &err)) die("run", &err);
    double *t = malloc(sizeof *t * (size_t)steps);
    for (int i = 0; i < steps; i++) {
        if (oc_cuda_exec_run(ex, 2 + (uint64_t)i, &err)) die("run", &err);
        t[i] = oc_cuda_exec_last_ms(ex);
    }
    double m = median(t, steps);
    free(t);
    return m;
}

static struct oc_cuda_exec *compile(const struct oc_graph *g, int fusion, int tf32, int graph, int profile)
{
    struct oc_err err = {0};
    struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
    o.cu = cu;
    o.fusion = fusion;
    o.tf32 = tf32;
    o.graph = graph;
    o.profile = profile;
    struct oc_cuda_exec *ex;
    if (oc_cuda_exec_new(g, &o, &ex, &err)) die(g->name, &err);
    bind_inputs(ex, g);
    return ex;
}

/* Adds d loss / d wrt[i] as outputs "grad<i>". */
static void grads(struct oc_graph *g, oc_tensor loss, const oc_tensor *wrt, int n)
{
    struct oc_err err = {0};
    int ids[8], out[8];
    for (int i = 0; i < n; i++) ids[i] = wrt[i].id;
    if (oc_graph_status(g) || oc_pass_autodiff(g, loss.id, -1, ids, n, out, &err))
        die("autodiff", oc_graph_status(g) ? &g->err : &err);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "grad%d", i);
        oc_output(g, name, (oc_tensor){out[i]});
    }
}

/* ---------------------------------------------------------------- heads */

static oc_tensor kl(struct oc_graph *g, oc_tensor mq, oc_tensor sq, oc_tensor mp, oc_tensor sp)
{
    return oc_kl_diag_gaussian(g, mq, sq, mp, sp);
}

static struct oc_graph *head_graph(const char *head, int64_t b)
{
    struct oc_graph *g = oc_graph_new(head);
    if (!strcmp(head, "ce") || !strcmp(head, "bin") || !strcmp(head, "mmce")) {
        oc_tensor logits = oc_input(g, "logits", OC_F32, OC_SHAPE(b, K));
        oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(b));
        oc_tensor loss;
        if (!strcmp(head, "ce")) {
            loss = oc_cross_entropy(g, logits, labels);
        } else if (!strcmp(head, "bin")) {
            loss = oc_sigmoid_bce(g, logits, oc_one_hot(g, labels, K, OC_F32), 0.05);
        } else {
            oc_tensor p = oc_softmax(g, logits, 1);
            oc_tensor conf = oc_reduce_max(g, p, 2u, 0);
            oc_tensor ok = oc_cast(g, oc_eq(g, oc_argmax(g, logits, 1, 0), labels), OC_F32);
            loss = oc_mmce_weighted(g, conf, ok, 0.4);
        }
        grads(g, loss, &logits, 1);
    } else if (!strcmp(head, "vib") || !strcmp(head, "viby")) {
        int viby = !strcmp(head, "viby");
        int64_t P = viby ? K : 1;
        oc_tensor mu = oc_input(g, "mu", OC_F32, OC_SHAPE(b, Z)), rho = oc_input(g, "rho", OC_F32, OC_SHAPE(b, Z));
        oc_tensor pm = oc_input(g, "pm", OC_F32, OC_SHAPE(P, Z)), pr = oc_input(g, "pr", OC_F32, OC_SHAPE(P, Z));
        oc_tensor logits = oc_input(g, "logits", OC_F32, OC_SHAPE(b, K));
        oc_tensor sq = oc_softplus(g, rho), sp = oc_softplus(g, pr), loss;
        if (!viby) {
            loss = oc_mean(g, kl(g, mu, sq, pm, sp), 1u, 0);
        } else {
            oc_tensor m3 = oc_reshape(g, mu, OC_SHAPE(b, 1, Z)), s3 = oc_reshape(g, sq, OC_SHAPE(b, 1, Z));
            oc_tensor kls = kl(g, m3, s3, oc_reshape(g, pm, OC_SHAPE(1, K, Z)), oc_reshape(g, sp, OC_SHAPE(1, K, Z)));
            loss = oc_mean(g, oc_sum(g, oc_mul(g, oc_softmax(g, logits, 1), kls), 2u, 0), 1u, 0);
        }
        oc_tensor w[5] = {mu, rho, pm, pr, logits};
        grads(g, loss, w, viby ? 5 : 4);
    } else { /* odin on an MLP 784-256-10 */
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(b, 784));
        oc_tensor w1 = oc_input(g, "w1", OC_F32, OC_SHAPE(256, 784)), b1 = oc_input(g, "b1", OC_F32, OC_SHAPE(256));
        oc_tensor w2 = oc_input(g, "w2", OC_F32, OC_SHAPE(K, 256)), b2 = oc_input(g, "b2", OC_F32, OC_SHAPE(K));
        oc_tensor h = oc_relu(g, oc_linear(g, x, w1, b1));
        oc_tensor ls = oc_log_softmax(g, oc_scale(g, oc_linear(g, h, w2, b2), 1e-3), 1);
        oc_tensor s = oc_sum(g, oc_reduce_max(g, ls, 2u, 0), 1u, 0);
        struct oc_err err = {0};
        int id = x.id, gx;
        if (oc_graph_status(g) || oc_pass_autodiff(g, s.id, -1, &id, 1, &gx, &err)) die("autodiff", &err);
        oc_tensor xp = oc_sub(g, x, oc_scale(g, oc_sign(g, oc_neg(g, (oc_tensor){gx})), 0.0014));
        oc_tensor h2 = oc_relu(g, oc_linear(g, xp, w1, b1));
        oc_output(g, "score", oc_reduce_max(g, oc_softmax(g, oc_scale(g, oc_linear(g, h2, w2, b2), 1e-3), 1), 2u, 0));
    }
    struct oc_err err = {0};
    if (oc_graph_status(g) || oc_pass_simplify(&g, &err)) die(head, oc_graph_status(g) ? &g->err : &err);
    return g;
}

static void bench_heads(const char *heads, const char *batches)
{
    char hl[256], bl[256];
    snprintf(hl, sizeof hl, "%s", heads);
    for (char *sh = NULL, *h = strtok_r(hl, ",", &sh); h; h = strtok_r(NULL, ",", &sh)) {
        snprintf(bl, sizeof bl, "%s", batches);
        for (char *sb = NULL, *bs = strtok_r(bl, ",", &sb); bs; bs = strtok_r(NULL, ",", &sb)) {
            int64_t b = atoll(bs);
            if (!strcmp(h, "mmce") && b > 16384) {
                printf("{\"bench\": \"heads\", \"head\": \"%s\", \"batch\": %lld, \"note\": \"skipped (B x B)\"}\n", h, (long long)b);
                continue;
            }
            struct oc_graph *g = head_graph(h, b);
            double ms[2];
            int nk[2];
            for (int f = 1; f >= 0; f--) {
                struct oc_cuda_exec *ex = compile(g, f, 0, 0, 0);
                nk[f] = oc_cuda_exec_program(ex)->nkernel;
                ms[f] = time_runs(ex);
                oc_cuda_exec_free(ex);
            }
            printf("{\"bench\": \"heads\", \"head\": \"%s\", \"batch\": %lld, \"fused_us\": %.2f, \"unfused_us\": %.2f, "
                   "\"fused_kernels\": %d, \"unfused_kernels\": %d}\n",
                   h, (long long)b, ms[1] * 1e3, ms[0] * 1e3, nk[1], nk[0]);
            fflush(stdout);
            oc_graph_free(g);
        }
    }
}

/* ---------------------------------------------------------------- Wide ResNets */

static struct oc_model_cfg model(const char *arch)
{
    struct oc_model_cfg m;
    struct oc_err err = {0};
    memset(&m, 0, sizeof m);
    if (oc_wrn_parse(arch, &m.wrn, &err)) die(arch, &err);
    m.wrn.in_ch = 3, m.wrn.size = 32, m.wrn.nclasses = K;
    m.head = oc_head_find("baseline");
    m.hc = oc_head_cfg_default("baseline", K);
    return m;
}

/* ODIN's first half: x' = x - eps sign(-d log S(x; T) / dx). */
static struct oc_graph *odin_perturb(const char *arch, int b)
{
    struct oc_model_cfg m = model(arch);
    struct oc_graph *g = oc_graph_new("odin-perturb");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(b, 3, 32, 32));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, OC_NONE, step, 0, &o);
    oc_tensor s = oc_sum(g, oc_reduce_max(g, oc_log_softmax(g, oc_scale(g, o.logits, 1e-3), 1), 2u, 0), 1u, 0);
    struct oc_err err = {0};
    int id = x.id, gx;
    if (oc_graph_status(g) || oc_pass_autodiff(g, s.id, -1, &id, 1, &gx, &err)) die("autodiff", &err);
    oc_output(g, "x_perturbed", oc_sub(g, x, oc_scale(g, oc_sign(g, oc_neg(g, (oc_tensor){gx})), 0.0014)));
    if (oc_pass_simplify(&g, &err)) die("simplify", &err);
    return g;
}

/* ODIN's second half: the temperature-scaled max softmax of x'. */
static struct oc_graph *odin_score(const char *arch, int b)
{
    struct oc_model_cfg m = model(arch);
    struct oc_graph *g = oc_graph_new("odin-score");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(b, 3, 32, 32));
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, OC_NONE, step, 0, &o);
    oc_output(g, "score", oc_reduce_max(g, oc_softmax(g, oc_scale(g, o.logits, 1e-3), 1), 2u, 0));
    struct oc_err err = {0};
    if (oc_graph_status(g) || oc_pass_simplify(&g, &err)) die("simplify", &err);
    return g;
}

static void bench_odin(const char *arch, int b)
{
    struct oc_graph *gp = odin_perturb(arch, b), *gs = odin_score(arch, b);
    for (int f = 1; f >= 0; f--) {
        struct oc_cuda_exec *ep = compile(gp, f, 0, 0, 0), *es = compile(gs, f, 0, 0, 0);
        struct oc_err err = {0};
        double *t = malloc(sizeof *t * (size_t)steps);
        for (int i = 0; i < warmup + steps; i++) {
            struct oc_buf xp;
            if (oc_cuda_exec_run(ep, 1, &err)) die("odin perturb", &err);
            double ms = oc_cuda_exec_last_ms(ep);
            /* x' stays on the device in a real scorer; here it goes through
             * the host between the two executables, outside the timing */
            if (oc_cuda_exec_get(ep, "x_perturbed", &xp, &err) || oc_cuda_exec_set(es, "x", &xp, &err)) die("odin x'", &err);
            oc_buf_free(&xp);
            if (oc_cuda_exec_run(es, 1, &err)) die("odin score", &err);
            if (i >= warmup) t[i - warmup] = ms + oc_cuda_exec_last_ms(es);
        }
        printf("{\"bench\": \"odin\", \"arch\": \"%s\", \"batch\": %d, \"fusion\": %d, \"ms\": %.3f}\n", arch, b, f,
               median(t, steps));
        fflush(stdout);
        free(t);
        oc_cuda_exec_free(ep);
        oc_cuda_exec_free(es);
    }
    oc_graph_free(gp);
    oc_graph_free(gs);
}

static struct oc_graph *train_graph(const char *arch, int b)
{
    struct oc_model_cfg m = model(arch);
    struct oc_graph *g = oc_graph_new("train-step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(b, 3, 32, 32));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(b));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    struct oc_head_out o;
    oc_model_build(g, &m, x, labels, step, 1, &o);
    struct oc_err err = {0};
    if (oc_graph_status(g)) die("model", &g->err);
    int n = 0, *wrt = malloc(sizeof(int) * (size_t)g->nnodes), *grad = malloc(sizeof(int) * (size_t)g->nnodes);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == OC_OP_PARAM) wrt[n++] = i;
    if (oc_pass_autodiff(g, o.loss.id, -1, wrt, n, grad, &err)) die("autodiff", &err);
    oc_tensor *pt = malloc(sizeof *pt * (size_t)n), *gt = malloc(sizeof *gt * (size_t)n);
    for (int i = 0; i < n; i++) pt[i].id = wrt[i], gt[i].id = grad[i];
    oc_sgd_nesterov(g, pt, gt, n, lr, 0.9, 5e-4, NULL);
    oc_output(g, "loss", o.loss);
    free(wrt), free(grad), free(pt), free(gt);
    if (oc_pass_simplify(&g, &err)) die("simplify", &err);
    return g;
}

static void bench_train(const char *arch, int b, int tf32, int graph, int fusion)
{
    struct oc_graph *g = train_graph(arch, b);
    struct oc_cuda_exec *ex = compile(g, fusion, tf32, graph, 0);
    double ms = time_runs(ex);
    const struct oc_kprog *p = oc_cuda_exec_program(ex);
    printf("{\"bench\": \"train\", \"arch\": \"%s\", \"batch\": %d, \"tf32\": %d, \"graph\": %d, \"fusion\": %d, "
           "\"kernels\": %d, \"ms\": %.3f, \"images_per_s\": %.1f}\n",
           arch, b, tf32, graph, fusion, p->nkernel, ms, b / (ms * 1e-3));
    fflush(stdout);
    oc_cuda_exec_free(ex);
    if (graph) {
        oc_graph_free(g);
        return;
    }
    /* the loop kernels' achieved bandwidth: bytes of their buffers (each
     * slot once) over their event-timed duration */
    ex = compile(g, fusion, tf32, 0, 1);
    time_runs(ex);
    p = oc_cuda_exec_program(ex);
    double tot_b = 0, tot_s = 0, best = 0;
    char best_name[80] = "";
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind != OC_K_LOOP) continue;
        double sec;
        long calls;
        oc_cuda_exec_kernel_time(ex, i, &sec, &calls);
        if (!calls) continue;
        double bytes = 0;
        for (int s = 0; s < k->nslot; s++) bytes += (double)k->slot[s].numel * (double)oc_dtype_size(k->slot[s].dtype);
        double per = sec / (double)calls;
        tot_b += bytes;
        tot_s += per;
        if (bytes > 16e6 && per > 0 && bytes / per > best) {
            best = bytes / per;
            oc_cuda_kernel_name(k, best_name, sizeof best_name);
        }
    }
    printf("{\"bench\": \"dram\", \"arch\": \"%s\", \"fusion\": %d, \"loop_kernel_gbps\": %.1f, \"best_gbps\": %.1f, "
           "\"best_kernel\": \"%s\", \"loop_kernel_ms\": %.3f}\n",
           arch, fusion, tot_s > 0 ? tot_b / tot_s * 1e-9 : 0, best * 1e-9, best_name, tot_s * 1e3);
    fflush(stdout);
    oc_cuda_exec_free(ex);
    oc_graph_free(g);
}

static void bench_copy(int mib)
{
    struct oc_err err = {0};
    size_t n = (size_t)mib << 20;
    oc_devptr a, b;
    if (oc_cuda_alloc(cu, n, &a, &err) || oc_cuda_alloc(cu, n, &b, &err)) die("copy", &err);
    if (oc_cuda_memset8(cu, a, 1, n, &err)) die("copy", &err);
    struct oc_cuda_timer *t;
    if (oc_cuda_timer_new(cu, &t, &err)) die("timer", &err);
    double *ms = malloc(sizeof *ms * (size_t)steps);
    for (int i = 0; i < warmup + steps; i++) {
        if (oc_cuda_timer_start(cu, t, &err) || oc_cuda_dtod(cu, b, a, n, &err) || oc_cuda_timer_stop(cu, t, &err))
            die("copy", &err);
        double m;
        if (oc_cuda_timer_ms(cu, t, &m, &err)) die("copy", &err);
        if (i >= warmup) ms[i - warmup] = m;
    }
    double med = median(ms, steps);
    printf("{\"bench\": \"copy\", \"mib\": %d, \"ms\": %.3f, \"gbps\": %.1f}\n", mib, med, 2.0 * (double)n / (med * 1e-3) * 1e-9);
    free(ms);
    oc_cuda_timer_free(cu, t);
    oc_cuda_release(cu, a);
    oc_cuda_release(cu, b);
}

static const char *opt(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: oc-gpu-bench info|copy|heads|odin|train [options] (see bench/gpu/gpu-bench.c)\n");
        return 2;
    }
    steps = atoi(opt(argc, argv, "--steps", "20"));
    warmup = atoi(opt(argc, argv, "--warmup", "3"));
    if (steps < 1) steps = 1;
    struct oc_err err = {0};
    struct oc_cuda_opts co = oc_cuda_opts_default();
    if (oc_cuda_new(&cu, &co, &err)) die("device", &err);
    struct oc_cuda_info info;
    oc_cuda_get_info(cu, &info);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "info")) {
        printf("{\"bench\": \"info\", \"device\": \"%s\", \"sm\": %d, \"sms\": %d, \"memory_gib\": %.1f, \"arch\": \"%s\", "
               "\"driver\": %d, \"nvrtc\": \"%d.%d\"}\n",
               info.name, info.sm, info.sm_count, (double)info.memory / (1 << 30), info.arch, info.driver,
               info.nvrtc_major, info.nvrtc_minor);
    } else if (!strcmp(cmd, "copy")) {
        bench_copy(atoi(opt(argc, argv, "--mib", "1024")));
    } else if (!strcmp(cmd, "heads")) {
        bench_heads(opt(argc, argv, "--heads", "ce,bin,mmce,vib,viby,odin"), opt(argc, argv, "--batches", "128,4096,65536"));
    } else if (!strcmp(cmd, "odin")) {
        bench_odin(opt(argc, argv, "--arch", "wrn-16-4"), atoi(opt(argc, argv, "--batch", "128")));
    } else if (!strcmp(cmd, "train")) {
        bench_train(opt(argc, argv, "--arch", "wrn-28-10"), atoi(opt(argc, argv, "--batch", "128")),
                    atoi(opt(argc, argv, "--tf32", "1")), atoi(opt(argc, argv, "--graph", "0")),
                    atoi(opt(argc, argv, "--fusion", "1")));
    } else {
        fprintf(stderr, "oc-gpu-bench: unknown command %s\n", cmd);
        oc_cuda_free(cu);
        return 2;
    }
    int compiled, cached, loaded;
    oc_cuda_module_stats(cu, &compiled, &cached, &loaded);
    fprintf(stderr, "oc-gpu-bench %s: %d module(s) compiled by NVRTC, %d from the kernel cache\n", cmd, compiled, cached);
    oc_cuda_free(cu);
    return 0;
}
