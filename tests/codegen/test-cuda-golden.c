/* test-cuda-golden.c - the generated CUDA C of a few small graphs, pinned
 * byte for byte in tests/fixtures/cuda/<name>.cu (one translation unit per
 * graph: the prelude, then every distinct loop kernel, as NVRTC sees it).
 * Each graph exercises one shape of code: the 4-wide elementwise path, a
 * warp-per-row softmax, block-per-row batch-norm statistics, a block
 * argmax, guarded loads (pad, concat), a gather through a computed index,
 * Philox draws, integer casts, and a split reduction (its one-row final
 * sum) beside a reduction read transposed.
 *
 * After an intended change to the generator (or to the kernel IR that
 * feeds it), regenerate and review the diff:
 *     OC_REGEN_GOLDEN=1 build/tests/test-codegen-cuda-golden
 * (see tests/fixtures/cuda/README.md). Needs no CUDA toolkit. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../codegen/cuda.h"
#include "../../passes/fuse.h"
#include "../helpers/helpers.h"

#define DIR OC_SOURCE_DIR "/tests/fixtures/cuda"

static void g_elementwise(struct oc_graph *g)
{
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(64, 66)), b = oc_input(g, "b", OC_F32, OC_SHAPE(64, 66));
    oc_tensor t = oc_tanh(g, oc_add(g, oc_mul(g, a, b), a));
    oc_tensor bias = oc_input(g, "c", OC_F32, OC_SHAPE(66));
    oc_output(g, "y", oc_relu(g, oc_add(g, t, oc_broadcast(g, bias, OC_SHAPE(64, 66)))));
}

static void g_softmax(struct oc_graph *g)
{
    oc_output(g, "y", oc_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(128, 10)), 1));
}

static void g_batchnorm(struct oc_graph *g)
{
    oc_output(g, "y", oc_batchnorm_layer(g, "bn", oc_input(g, "x", OC_F32, OC_SHAPE(8, 4, 16, 16)), 1));
}

static void g_argmax(struct oc_graph *g)
{
    oc_output(g, "i", oc_argmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(4, 3000)), 1, 0));
    oc_output(g, "m", oc_reduce_max(g, oc_input(g, "z", OC_F64, OC_SHAPE(6, 40)), 2u, 0));
}

static void g_guards(struct oc_graph *g)
{
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(3, 5, 6));
    oc_tensor p = oc_pad(g, a, (const int64_t[]){1, 0, 2}, (const int64_t[]){0, 2, 1}, -1.5);
    oc_tensor xs[2] = {oc_exp(g, p), oc_input(g, "b", OC_F32, OC_SHAPE(4, 7, 4))};
    oc_output(g, "y", oc_concat(g, xs, 2, 2));
}

static void g_gather(struct oc_graph *g)
{
    oc_output(g, "y", oc_gather(g, oc_log_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(5, 4)), 1),
                                oc_argmax(g, oc_input(g, "z", OC_F32, OC_SHAPE(5, 4)), 1, 0), 1));
}

static void g_rng_cast(struct oc_graph *g)
{
    oc_tensor step = oc_input(g, "step", OC_I32, OC_SCALAR);
    oc_tensor n = oc_rng_normal(g, OC_F32, OC_SHAPE(3, 41), 77, step);
    oc_tensor u = oc_rng_uniform(g, OC_F64, OC_SHAPE(3, 41), 9, step);
    oc_output(g, "y", oc_add(g, n, oc_cast(g, u, OC_F32)));
    oc_tensor i = oc_input(g, "i", OC_I32, OC_SHAPE(5));
    oc_output(g, "u8", oc_cast(g, oc_mul(g, i, oc_scalar(g, OC_I32, 100)), OC_U8));
    oc_output(g, "f2i", oc_cast(g, oc_input(g, "f", OC_F32, OC_SHAPE(5)), OC_I32));
}

/* A reduction to one value large enough for fusion to split it (per-row
 * partials, then a one-row sum without a row loop), and sums over both
 * axes of a square tensor sharing one kernel (one read transposed). */
static void g_split_transposed(struct oc_graph *g)
{
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(256, 300));
    oc_output(g, "ss", oc_sum(g, oc_mul(g, x, x), 3u, 0));
    oc_tensor s = oc_exp(g, oc_input(g, "s", OC_F32, OC_SHAPE(40, 40)));
    oc_output(g, "rows", oc_sum(g, s, 2u, 0));
    oc_output(g, "cols", oc_sum(g, s, 1u, 0));
}

static const struct {
    const char *name;
    void (*build)(struct oc_graph *);
} cases[] = {
    {"elementwise", g_elementwise}, {"softmax", g_softmax}, {"batchnorm", g_batchnorm},
    {"argmax", g_argmax},           {"guards", g_guards},   {"gather", g_gather},
    {"rng_cast", g_rng_cast},       {"split_transposed", g_split_transposed},
};

static char *emit(void (*build)(struct oc_graph *), const char *name)
{
    struct oc_graph *g = oc_graph_new(name);
    build(g);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", name, g->err.msg);
    struct oc_err err = {0};
    struct oc_kprog *p = NULL;
    struct oc_fuse_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.fusion = 1;
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s: %s", name, err.msg);
    char *src = NULL;
    int n = 0;
    cr_assert_eq(oc_cuda_emit_program(p->kernel, p->nkernel, &src, &n, &err), OC_OK, "%s: %s", name, err.msg);
    cr_assert_gt(n, 0, "%s has loop kernels", name);
    oc_kprog_free(p);
    oc_graph_free(g);
    return src;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

Test(cuda_golden, generated_sources_match_the_fixtures)
{
    const char *regen = getenv("OC_REGEN_GOLDEN");
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.cu", DIR, cases[i].name);
        char *src = emit(cases[i].build, cases[i].name);
        if (regen && *regen && strcmp(regen, "0")) {
            FILE *f = fopen(path, "wb");
            cr_assert_not_null(f, "cannot write %s", path);
            fputs(src, f);
            cr_assert_eq(fclose(f), 0);
            fprintf(stderr, "wrote %s\n", path);
            free(src);
            continue;
        }
        char *want = slurp(path);
        cr_assert_not_null(want, "missing fixture %s (OC_REGEN_GOLDEN=1 writes it)", path);
        if (strcmp(src, want)) {
            size_t k = 0;
            int line = 1;
            while (src[k] && src[k] == want[k]) line += src[k++] == '\n';
            fprintf(stderr, "%s: generated text differs from the fixture at line %d:\n  got:  %.80s\n  want: %.80s\n",
                    path, line, src + k - (k > 20 ? 20 : k), want + k - (k > 20 ? 20 : k));
            bad++;
        }
        free(want);
        free(src);
    }
    cr_assert_eq(bad, 0, "%d golden source(s) differ; after an intended change: OC_REGEN_GOLDEN=1 %s",
                 bad, "build/tests/test-codegen-cuda-golden");
}

/* The same graph twice: the same text, byte for byte. */
Test(cuda_golden, emission_is_deterministic)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *a = emit(cases[i].build, cases[i].name), *b = emit(cases[i].build, cases[i].name);
        cr_assert_str_eq(a, b, "%s", cases[i].name);
        free(a);
        free(b);
    }
}

/* What each golden graph is there for is actually in its text. */
Test(cuda_golden, each_graph_shows_its_feature)
{
    static const struct {
        const char *name, *needle;
    } want[] = {
        {"elementwise", "make_float4("},      {"elementwise", "4-wide"},
        {"softmax", "warp mapping"},          {"softmax", "oc_wmax("},
        {"softmax", "oc_wsum("},              {"batchnorm", "block mapping"},
        {"batchnorm", "oc_bsum("},            {"argmax", "oc_bargmax("},
        {"argmax", "__shared__ int oc_smi"},  {"argmax", "double acc"},
        {"guards", "oc_clamp("},              {"guards", "-1.5f"},
        {"gather", "oc_clamp((int)"},         {"rng_cast", "oc_rng_normal("},
        {"rng_cast", "oc_rng_uniform("},      {"rng_cast", "oc_u8sat("},
        {"rng_cast", "oc_f2i("},              {"split_transposed", "1 row(s) x 256 point(s)"},
        {"split_transposed", "if (gid == 0) {"}, {"split_transposed", "s0[x"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            if (strcmp(cases[c].name, want[i].name)) continue;
            char *src = emit(cases[c].build, cases[c].name);
            cr_expect(strstr(src, want[i].needle), "%s lacks \"%s\"", want[i].name, want[i].needle);
            free(src);
        }
    }
}
