/* test-llvm.c - the LLVM backend below the executor: the JIT's structural
 * cache, object-file emission (the AOT path shares the module builder with
 * the JIT) and calling a JIT-compiled kernel directly over chunks of its
 * row loop, as the thread pool does. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../codegen/codegen.h"
#include "../../passes/fuse.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

static struct oc_kprog *program(struct oc_graph *g)
{
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_kprog *p;
    struct oc_err err = {0};
    struct oc_fuse_opts o = {1, 0, NULL};
    cr_assert_eq(oc_pass_fuse(g, &o, &p, &err), OC_OK, "%s", err.msg);
    return p;
}

static struct oc_graph *sample_graph(void)
{
    struct oc_graph *g = oc_graph_new("aot");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 6));
    oc_tensor w = oc_input(g, "w", OC_F32, OC_SHAPE(3, 6));
    oc_output(g, "p", oc_softmax(g, oc_linear(g, oc_tanh(g, x), w, OC_NONE), 1));
    return g;
}

Test(llvm, object_file_holds_every_loop_kernel)
{
    struct oc_graph *g = sample_graph();
    struct oc_kprog *p = program(g);
    char path[] = "/tmp/oodc-aot-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    struct oc_err err = {0};
    cr_assert_eq(oc_llvm_emit_object(p->kernel, p->nkernel, path, NULL, NULL, NULL, &err), OC_OK,
                 "%s", err.msg);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    remove(path);
    cr_assert_gt(n, 4);
    cr_expect_eq(memcmp(buf, "\x7f" "ELF", 4), 0, "an ELF object");
    int nloop = 0;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind != OC_K_LOOP) continue;
        nloop++;
        int found = 0;
        size_t len = strlen(k->sym);
        for (size_t o = 0; o + len <= n && !found; o++) found = !memcmp(buf + o, k->sym, len);
        cr_expect(found, "symbol %s missing from the object", k->sym);
    }
    cr_expect_eq(nloop, 2, "tanh before the matmul, softmax after it");
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(llvm, object_file_errors_name_the_path)
{
    struct oc_graph *g = sample_graph();
    struct oc_kprog *p = program(g);
    struct oc_err err = {0};
    cr_expect_neq(oc_llvm_emit_object(p->kernel, p->nkernel, "/nonexistent-dir/x.o", NULL, NULL,
                                      NULL, &err),
                  OC_OK);
    cr_expect(strstr(err.msg, "/nonexistent-dir/x.o"), "%s", err.msg);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* A kernel called directly in uneven chunks writes every row exactly as
 * one call over the whole range does. */
Test(llvm, chunks_cover_the_row_loop)
{
    struct oc_graph *g = oc_graph_new("rows");
    oc_output(g, "y", oc_log_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(13, 7)), 1));
    struct oc_kprog *p = program(g);
    cr_assert_eq(p->nkernel, 1);
    struct oc_kernel *k = p->kernel[0];
    cr_assert_eq(oc_kir_outer_extent(k), 13);
    struct oc_llvm *j;
    struct oc_err err = {0};
    cr_assert_eq(oc_llvm_new(&j, 0, &err), OC_OK, "%s", err.msg);
    oc_kernel_fn fn;
    cr_assert_eq(oc_llvm_compile(j, &k, 1, &fn, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_not_null(fn);
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(13, 7), 5, -3, 3);
    float whole[91], parts[91];
    for (int i = 0; i < 91; i++) parts[i] = -999;
    void *args[2];
    for (int s = 0; s < k->nslot; s++) args[s] = k->slot[s].written ? (void *)whole : x.data;
    fn(args, 0, 13);
    for (int s = 0; s < k->nslot; s++) args[s] = k->slot[s].written ? (void *)parts : x.data;
    fn(args, 0, 5);
    fn(args, 5, 6);
    fn(args, 6, 13);
    cr_expect_eq(memcmp(whole, parts, sizeof whole), 0);
    /* compiling the same structure again is a cache hit */
    int c0, h0, c1, h1;
    oc_llvm_stats(j, &c0, &h0);
    oc_kernel_fn fn2;
    cr_assert_eq(oc_llvm_compile(j, &k, 1, &fn2, 0, &err), OC_OK, "%s", err.msg);
    oc_llvm_stats(j, &c1, &h1);
    cr_expect_eq(fn2, fn);
    cr_expect_eq(c1, c0);
    cr_expect_eq(h1, h0 + 1);
    oc_buf_free(&x);
    oc_llvm_free(j);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- f32 math */

/* Distance in units in the last place: how many floats lie between a and b
 * (NaN only matches NaN; infinities must match exactly). */
static double ulps(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INFINITY;
    if (isinf(a) || isinf(b)) return a == b ? 0 : INFINITY;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    /* map to a monotonic integer line (negative floats mirrored) */
    int64_t la = ia < 0 ? -(int64_t)(ia & 0x7fffffff) : ia, lb = ib < 0 ? -(int64_t)(ib & 0x7fffffff) : ib;
    return (double)llabs(la - lb);
}

/* Inputs that exercise every binade, the overflow/underflow edges, the
 * points where the reductions switch, and the special values. */
static int math_inputs(float *x, int cap)
{
    int n = 0;
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 1e-45f,
                                    -1e-45f, 1.17549435e-38f, 3.4028235e38f, -3.4028235e38f,
                                    88.72283f, 88.722839f, 88.7229f, -87.33654f, -103.9720f,
                                    -103.9721f, -104.5f, 89.0f, 0.70710677f, 0.70710683f,
                                    1.41421354f, -0.29289323f, 0.41421357f, -0.9999999f, 1e-8f,
                                    -1e-8f, 5.96e-8f, 0.34657359f, -0.34657359f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) x[n++] = special[i];
    uint64_t h = 0x9e3779b97f4a7c15ull;
    while (n < cap / 2) { /* dense over the exp/softplus range */
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        x[n++] = -110.0f + 205.0f * (float)((h >> 11) * 0x1.0p-53);
    }
    while (n < cap) { /* random bit patterns of either sign: every binade */
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        uint32_t b = (uint32_t)(h >> 32);
        float f;
        memcpy(&f, &b, 4);
        x[n++] = isnan(f) ? 1.5f : f;
    }
    return n;
}

Test(llvm, f32_exp_log_log1p_softplus_sigmoid_within_2_ulp)
{
    enum { N = 1 << 17 };
    static float xs[N];
    int n = math_inputs(xs, N);
    struct oc_graph *g = oc_graph_new("math");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(n));
    static const enum oc_op ops[] = {OC_OP_EXP, OC_OP_LOG, OC_OP_LOG1P, OC_OP_SOFTPLUS, OC_OP_SIGMOID};
    static const char *names[] = {"exp", "log", "log1p", "softplus", "sigmoid"};
    for (int i = 0; i < 5; i++) oc_output(g, names[i], oc_unary(g, ops[i], x));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_err err = {0};
    struct oc_exec *ex;
    cr_assert_eq(oc_compile(g, "cpu", NULL, &ex, &err), OC_OK, "%s", err.msg);
    struct oc_buf xb = {OC_F32, OC_SHAPE(n), xs};
    cr_assert_eq(oc_exec_set(ex, "x", &xb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_OK, "%s", err.msg);
    for (int i = 0; i < 5; i++) {
        struct oc_buf y;
        cr_assert_eq(oc_exec_get(ex, names[i], &y, &err), OC_OK, "%s", err.msg);
        const float *yv = y.data;
        double worst = 0, worst_want = 0;
        int at = -1;
        for (int j = 0; j < n; j++) {
            double v = xs[j], want;
            switch (ops[i]) {
            case OC_OP_EXP: want = exp(v); break;
            case OC_OP_LOG: want = log(v); break;
            case OC_OP_LOG1P: want = log1p(v); break;
            case OC_OP_SOFTPLUS: want = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); break;
            default: want = 1 / (1 + exp(-v)); break;
            }
            double d = ulps(yv[j], (float)want);
            if (d > worst) worst = d, at = j, worst_want = want;
        }
        /* softplus and sigmoid compose two rounded functions (and a division) */
        double bound = ops[i] == OC_OP_SOFTPLUS || ops[i] == OC_OP_SIGMOID ? 3 : 2;
        cr_expect_leq(worst, bound, "%s: %.0f ulp at x = %.9g (got %.9g, want %.9g)", names[i],
                      worst, at >= 0 ? xs[at] : 0.0, at >= 0 ? yv[at] : 0.0, worst_want);
        fprintf(stderr, "%-8s max error %.0f ulp over %d inputs\n", names[i], worst, n);
        oc_buf_free(&y);
    }
    oc_exec_free(ex);
    oc_graph_free(g);
}
