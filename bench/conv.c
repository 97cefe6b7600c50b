/* conv.c - `oodc bench conv`: the convolutions of a Wide ResNet, one layer shape at a time,
 * through im2col + OpenBLAS (runtime/cpu-lib.c) and through oneDNN
 * (runtime/cpu-dnnl.c): forward, backward-data and backward-weights, each
 * compiled as a one-kernel graph with OC_CONV forced, run alternately
 * (im2col, oneDNN, im2col, ...) so load drift hits both alike. Prints ms
 * per call (median; CPU time of the process, which on a shared machine
 * moves less than the wall clock, and wall time) and which one OC_CONV=auto
 * picks (oc_dnnl_prefer), then the totals of one training step's
 * convolutions (each shape weighted by how often the model has it) for
 * im2col only, oneDNN only, auto and the per-call best. The auto rule in
 * cpu-dnnl.c was derived from these tables.
 */
#include "../frontend/frontend.h"
#include "../runtime/cpu-dnnl.h"
#include "../runtime/runtime.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shape {
    int C, O, S, K, s, count; /* in, out channels; input size; kernel; stride; per step */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: oodc bench conv [options]\n"
               "  --model wrn-D-W    layer shapes of this Wide ResNet (default wrn-10-2)\n"
               "  --data CxS         input channels and size (default 1x28: Fashion-MNIST;\n"
               "                     3x32 for CIFAR)\n"
               "  --batch N          images per call (default 128)\n"
               "  --threads N        CPU threads (default 1)\n"
               "  --repeats N        timed calls per implementation (default 5)\n"
               "  --only I           only shape I of the table (0-based)\n"
               "Environment: OC_DNNL_LAYOUT=plain measures oneDNN on plain NCHW layouts\n"
               "(default: blocked, reorders included).\n");
}

/* The distinct convolutions of WRN-D-W (models/wrn.c) and their counts. */
static int wrn_shapes(int depth, int width, int in_ch, int size, struct shape *out)
{
    int n = (depth - 4) / 6, ns = 0, w[4] = {16, 16 * width, 32 * width, 64 * width};
    out[ns++] = (struct shape){in_ch, 16, size, 3, 1, 1};
    int S = size;
    for (int gi = 0; gi < 3; gi++) {
        int in = w[gi], o = w[gi + 1], s = gi ? 2 : 1;
        int So = (S + 2 - 3) / s + 1;
        out[ns++] = (struct shape){in, o, S, 3, s, 1};         /* first conv1 */
        out[ns++] = (struct shape){o, o, So, 3, 1, 2 * n - 1}; /* the other 3x3s */
        if (in != o || s != 1) out[ns++] = (struct shape){in, o, S, 1, s, 1};
        S = So;
    }
    /* merge repeats (e.g. WRN-D-1's first group: 16 -> 16 twice) */
    int m = 0;
    for (int i = 0; i < ns; i++) {
        int j = 0;
        while (j < m && memcmp(&out[j], &out[i], 5 * sizeof(int))) j++;
        if (j < m)
            out[j].count += out[i].count;
        else
            out[m++] = out[i];
    }
    return m;
}

static const char *op_name[3] = {"fwd", "d/dx", "d/dw"};

/* A one-kernel graph: op 0 forward, 1 backward-data, 2 backward-weights. */
static struct oc_graph *conv_graph(const struct shape *sh, int batch, int op)
{
    struct oc_graph *g = oc_graph_new("conv");
    int p = sh->K / 2, OS = (sh->S + 2 * p - sh->K) / sh->s + 1;
    struct oc_shape xs = OC_SHAPE(batch, sh->C, sh->S, sh->S),
                    ws = OC_SHAPE(sh->O, sh->C, sh->K, sh->K);
    struct oc_shape ys = OC_SHAPE(batch, sh->O, OS, OS);
    oc_tensor r;
    if (op == 0) {
        r = oc_conv2d(g, oc_input(g, "x", OC_F32, xs), oc_input(g, "w", OC_F32, ws), sh->s, p);
    } else if (op == 1) {
        r = oc_conv2d_grad_input(g, oc_input(g, "dy", OC_F32, ys), oc_input(g, "w", OC_F32, ws), xs,
                                 sh->s, p);
    } else {
        r = oc_conv2d_grad_weight(g, oc_input(g, "x", OC_F32, xs), oc_input(g, "dy", OC_F32, ys),
                                  ws, sh->s, p);
    }
    oc_output(g, "r", r);
    return g;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int bind_random(struct oc_exec *ex, const struct oc_graph *g, struct oc_err *err)
{
    uint64_t seed = 1;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_INPUT) continue;
        struct oc_buf b;
        if (oc_buf_alloc(&b, OC_F32, &n->shape))
            return oc_err_set(err, OC_ERR_NOMEM, "out of memory");
        int64_t cnt = oc_shape_numel(&n->shape);
        float *f = b.data;
        for (int64_t j = 0; j < cnt; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            f[j] = (float)((double)(seed >> 40) / (double)(1 << 24) - 0.5);
        }
        enum oc_status st = oc_exec_set(ex, n->attrs.name, &b, err);
        oc_buf_free(&b);
        if (st) return st;
    }
    return OC_OK;
}

/* Times op on shape sh with both implementations, alternating; ms medians
 * of CPU time into cpu[2], of wall time into wall[2]. */
static int measure(const struct shape *sh, int batch, int threads, int repeats, int op,
                   double cpu[2], double wall[2])
{
    static const char *impl[2] = {"im2col", "dnnl"};
    struct oc_graph *g = conv_graph(sh, batch, op);
    struct oc_exec *ex[2] = {NULL, NULL};
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.nthreads = threads;
    int rc = 0;
    char *saved = getenv("OC_CONV") ? strdup(getenv("OC_CONV")) : NULL;
    for (int m = 0; m < 2 && !rc; m++) {
        setenv("OC_CONV", impl[m], 1);
        if (oc_graph_status(g) || oc_compile(g, "cpu", &o, &ex[m], &err) ||
            bind_random(ex[m], g, &err) || oc_exec_run(ex[m], 0, &err)) {
            fprintf(stderr, "oodc bench conv: %s: %s\n", impl[m],
                    oc_graph_status(g) ? g->err.msg : err.msg);
            rc = 1;
        }
    }
    if (saved)
        setenv("OC_CONV", saved, 1);
    else
        unsetenv("OC_CONV");
    free(saved);
    double *tc[2], *tw[2];
    tc[0] = calloc((size_t)repeats, sizeof(double)),
    tc[1] = calloc((size_t)repeats, sizeof(double));
    tw[0] = calloc((size_t)repeats, sizeof(double)),
    tw[1] = calloc((size_t)repeats, sizeof(double));
    for (int r = 0; r < repeats && !rc; r++)
        for (int m = 0; m < 2 && !rc; m++) {
            double c0 = cpu_now(), w0 = oc_bench_now();
            if (oc_exec_run(ex[m], 0, &err)) {
                fprintf(stderr, "oodc bench conv: %s\n", err.msg);
                rc = 1;
            }
            tc[m][r] = 1e3 * (cpu_now() - c0), tw[m][r] = 1e3 * (oc_bench_now() - w0);
        }
    for (int m = 0; m < 2; m++) {
        if (!rc)
            cpu[m] = oc_bench_median(tc[m], repeats), wall[m] = oc_bench_median(tw[m], repeats);
        free(tc[m]), free(tw[m]);
        oc_exec_free(ex[m]);
    }
    oc_graph_free(g);
    return rc;
}

int oc_bench_conv(int argc, char **argv)
{
    const char *model = "wrn-10-2", *data = "1x28";
    int batch = 128, threads = 1, repeats = 5, only = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && v) {
            model = v, i++;
        } else if (!strcmp(a, "--data") && v) {
            data = v, i++;
        } else if (!strcmp(a, "--batch")) {
            if (oc_bench_parse_int("conv", a, v, 1, 1 << 16, &batch)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (oc_bench_parse_int("conv", a, v, 1, 256, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--repeats")) {
            if (oc_bench_parse_int("conv", a, v, 1, 1000, &repeats)) return 2;
            i++;
        } else if (!strcmp(a, "--only")) {
            if (oc_bench_parse_int("conv", a, v, 0, 63, &only)) return 2;
            i++;
        } else {
            fprintf(stderr, "oodc bench conv: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    int depth, width, in_ch, size;
    if (sscanf(model, "wrn-%d-%d", &depth, &width) != 2 || depth < 10 || (depth - 4) % 6 ||
        width < 1) {
        fprintf(stderr, "oodc bench conv: --model: expected wrn-D-W with D = 6n+4, got '%s'\n",
                model);
        return 2;
    }
    if (sscanf(data, "%dx%d", &in_ch, &size) != 2 || in_ch < 1 || size < 8) {
        fprintf(stderr, "oodc bench conv: --data: expected CxS (e.g. 3x32), got '%s'\n", data);
        return 2;
    }
    if (!oc_dnnl_available()) {
        fprintf(stderr,
                "oodc bench conv: this build has no oneDNN (scripts/deps.sh, reconfigure)\n");
        return 1;
    }
    struct shape sh[16];
    int ns = wrn_shapes(depth, width, in_ch, size, sh);
    const char *lay = getenv("OC_DNNL_LAYOUT");
    oc_bench_machine(stdout);
    printf("mode: %s on %dx%dx%d, batch %d, %d thread%s, oneDNN %s layouts, median of %d "
           "alternating calls; ms per call, CPU (wall)\n\n",
           model, in_ch, size, size, batch, threads, threads == 1 ? "" : "s",
           lay && !strcmp(lay, "plain") ? "plain" : "blocked", repeats);
    printf("| C -> O, HxW, k, s (x per step) | op | im2col | oneDNN | ratio | auto |\n");
    printf("|---|---|---:|---:|---:|---|\n");
    double tot[4] = {0}; /* im2col, dnnl, auto, best: CPU ms per step */
    for (int i = 0; i < ns; i++) {
        if (only >= 0 && i != only) continue;
        for (int op = 0; op < 3; op++) {
            double cpu[2], wall[2];
            if (measure(&sh[i], batch, threads, repeats, op, cpu, wall)) return 1;
            int p = sh[i].K / 2, OS = (sh[i].S + 2 * p - sh[i].K) / sh[i].s + 1;
            struct oc_kconv c = {batch,
                                 sh[i].C,
                                 sh[i].S,
                                 sh[i].S,
                                 sh[i].O,
                                 sh[i].K,
                                 sh[i].K,
                                 OS,
                                 OS,
                                 (int64_t)sh[i].C * sh[i].K * sh[i].K,
                                 (int64_t)OS * OS,
                                 sh[i].s,
                                 sh[i].s,
                                 p,
                                 p};
            enum oc_kkind kind = op == 0   ? OC_K_CONV2D
                                 : op == 1 ? OC_K_CONV2D_GRAD_INPUT
                                           : OC_K_CONV2D_GRAD_WEIGHT;
            int pick = oc_dnnl_prefer(kind, &c, threads);
            printf("| %d -> %d, %d, %d, %d (x%d) | %s | %.2f (%.2f) | %.2f (%.2f) | %.2f | %s |\n",
                   sh[i].C, sh[i].O, sh[i].S, sh[i].K, sh[i].s, sh[i].count, op_name[op], cpu[0],
                   wall[0], cpu[1], wall[1], cpu[1] > 0 ? cpu[0] / cpu[1] : 0,
                   pick ? "oneDNN" : "im2col");
            fflush(stdout);
            double w = sh[i].count;
            tot[0] += w * cpu[0], tot[1] += w * cpu[1], tot[2] += w * cpu[pick];
            tot[3] += w * (cpu[0] < cpu[1] ? cpu[0] : cpu[1]);
        }
    }
    printf("\nper step (each shape x its count, all three ops), CPU ms: im2col %.1f, oneDNN %.1f, "
           "auto %.1f, best of the two per call %.1f\n",
           tot[0], tot[1], tot[2], tot[3]);
    return 0;
}

