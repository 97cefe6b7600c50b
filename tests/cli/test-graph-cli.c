/* test-graph-cli.c - `oodc graph print|dot|eval` end to end: a graph built
 * with the DSL, printed, then evaluated by the CLI on .npy inputs gives
 * exactly the outputs of evaluating the DSL graph directly; bad input gives
 * exit code 2, a message naming the problem, and no output file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../helpers/helpers.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/oc-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}
static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(graph_cli, .init = setup, .fini = teardown);

/* Runs oodc with the arguments, stderr captured to dir/err; returns the exit code. */
static int oodc(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s/oodc' %s >out.txt 2>err.txt", dir, OC_BINARY_DIR, args);
    int st = system(cmd);
    cr_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static char *slurp(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "missing %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void write_graph(const struct oc_graph *g, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(oc_graph_print(g, f), OC_OK);
    fclose(f);
}

static void write_npy(const char *name, const struct oc_buf *b)
{
    char path[512];
    struct oc_err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(oc_npy_write(path, b, &err), OC_OK, "%s", err.msg);
}

static struct oc_buf read_npy(const char *name)
{
    char path[512];
    struct oc_err err = {0};
    struct oc_buf b = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(oc_npy_read(path, &b, &err), OC_OK, "%s", err.msg);
    return b;
}

/* Checks `oodc graph eval` of g equals the in-process interpreter exactly. */
static void check_eval_exact(struct oc_graph *g, struct oc_test_bind *binds, int nb, int f64)
{
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    write_graph(g, "g.txt");
    char args[2048] = "graph eval g.txt --output outdir --seed 1234";
    for (int i = 0; i < nb; i++) {
        char f[128];
        snprintf(f, sizeof f, "%s.npy", binds[i].name);
        write_npy(f, binds[i].value);
        size_t k = strlen(args);
        snprintf(args + k, sizeof args - k, " --input %s=%s", binds[i].name, f);
    }
    if (f64) strcat(args, " --f64");
    cr_assert_eq(oodc(args), 0, "oodc failed: %s", slurp("err.txt"));
    for (int i = 0; i < g->noutputs; i++) {
        struct oc_buf want = oc_test_run(g, f64, binds, nb, g->outputs[i].name);
        char f[256];
        snprintf(f, sizeof f, "outdir/%s.npy", g->outputs[i].name);
        struct oc_buf got = read_npy(f);
        cr_assert_eq(got.dtype, want.dtype);
        cr_assert(oc_test_allclose(g->outputs[i].name, &got, &want, 0, 0), "not bit-exact");
        oc_buf_free(&got);
        oc_buf_free(&want);
    }
}

Test(graph_cli, mlp_eval_matches_dsl_exactly)
{
    struct oc_graph *g = oc_graph_new("mlp");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(5, 4));
    oc_tensor y = oc_input(g, "y", OC_I32, OC_SHAPE(5));
    oc_tensor w1 = oc_param(g, "fc1.weight", OC_F32, OC_SHAPE(8, 4), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b1 = oc_param(g, "fc1.bias", OC_F32, OC_SHAPE(8), OC_INIT_ZEROS, 0, 0);
    oc_tensor w2 = oc_param(g, "fc2.weight", OC_F32, OC_SHAPE(3, 8), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor h = oc_relu(g, oc_linear(g, x, w1, b1));
    oc_tensor logits = oc_linear(g, h, w2, OC_NONE);
    oc_output(g, "logits", logits);
    oc_output(g, "probs", oc_softmax(g, logits, 1));
    oc_output(g, "loss", oc_cross_entropy(g, logits, y));
    struct oc_buf xv = oc_test_random(OC_F32, OC_SHAPE(5, 4), 1, -2, 2);
    struct oc_buf yv = oc_test_random(OC_I32, OC_SHAPE(5), 2, 0, 3);
    struct oc_test_bind b[] = {{"x", &xv}, {"y", &yv}};
    check_eval_exact(g, b, 2, 0);
    check_eval_exact(g, b, 2, 1);
    oc_buf_free(&xv);
    oc_buf_free(&yv);
    oc_graph_free(g);
}

Test(graph_cli, conv_bn_relu_block_eval_matches_dsl_exactly)
{
    struct oc_graph *g = oc_graph_new("block");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 3, 6, 6));
    oc_tensor w = oc_param(g, "conv.weight", OC_F32, OC_SHAPE(4, 3, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b = oc_param(g, "conv.bias", OC_F32, OC_SHAPE(4), OC_INIT_NORMAL, 0, 0.1);
    oc_tensor y = oc_relu(g, oc_batchnorm_layer(g, "bn", oc_conv2d_bias(g, x, w, b, 1, 1), 1));
    oc_output(g, "y", y);
    struct oc_buf xv = oc_test_random(OC_F32, OC_SHAPE(2, 3, 6, 6), 3, 0, 1);
    struct oc_test_bind bb[] = {{"x", &xv}};
    check_eval_exact(g, bb, 1, 0);
    oc_buf_free(&xv);
    oc_graph_free(g);
}

Test(graph_cli, print_and_dot)
{
    struct oc_graph *g = oc_graph_new("tiny");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2));
    oc_output(g, "y", oc_exp(g, x));
    write_graph(g, "g.txt");
    cr_assert_eq(oodc("graph print g.txt"), 0);
    char *printed = oc_graph_print_str(g);
    cr_assert_str_eq(slurp("out.txt"), printed);
    free(printed);
    cr_assert_eq(oodc("graph dot g.txt"), 0);
    cr_assert(strstr(slurp("out.txt"), "digraph"));
    oc_graph_free(g);
}

Test(graph_cli, malformed_graph_is_exit_2_with_line_col)
{
    FILE *f = fopen(strcat(strcpy((char[512]){0}, dir), "/bad.txt"), "w");
    fputs("graph bad\n%0 = input \"x\" : f32[2]\n%1 = frobnicate %0 : f32[2]\n", f);
    fclose(f);
    cr_assert_eq(oodc("graph eval bad.txt --output outdir"), 2);
    char *err = slurp("err.txt");
    cr_assert(strstr(err, "bad.txt:3:"), "%s", err);
    cr_assert(strstr(err, "frobnicate"), "%s", err);
    struct stat st;
    char p[512];
    snprintf(p, sizeof p, "%s/outdir", dir);
    cr_assert_neq(stat(p, &st), 0, "an output directory was created for a failed run");
}

Test(graph_cli, bad_inputs_are_exit_2)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_output(g, "y", oc_exp(g, oc_input(g, "x", OC_F32, OC_SHAPE(3))));
    write_graph(g, "g.txt");
    oc_graph_free(g);
    cr_assert_eq(oodc("graph eval g.txt --output o --input x=missing.npy"), 2);
    cr_assert(strstr(slurp("err.txt"), "missing.npy"), "%s", slurp("err.txt"));
    struct oc_buf wrong = oc_test_random(OC_F32, OC_SHAPE(4), 1, 0, 1);
    write_npy("wrong.npy", &wrong);
    oc_buf_free(&wrong);
    cr_assert_eq(oodc("graph eval g.txt --output o --input x=wrong.npy"), 2);
    cr_assert(strstr(slurp("err.txt"), "[4]") && strstr(slurp("err.txt"), "[3]"), "%s",
              slurp("err.txt"));
    cr_assert_eq(oodc("graph eval g.txt --output o"), 2); /* missing input x */
    cr_assert(strstr(slurp("err.txt"), "x"), "%s", slurp("err.txt"));
    cr_assert_eq(oodc("graph eval g.txt --output o --input nosuch=a.npy"), 2);
    cr_assert_eq(oodc("graph eval g.txt --bogus"), 2);
    cr_assert_eq(oodc("graph frob"), 2);
    cr_assert_eq(oodc("nosuchverb"), 2);
    cr_assert_eq(oodc("bench nosuch"), 2);
    cr_assert(strstr(slurp("err.txt"), "nosuch"), "%s", slurp("err.txt"));
    cr_assert_eq(oodc("--help"), 0);
}

/* The global options before the verb set the debug knobs: --debug 2 makes a
 * compiling verb log its fusion decisions, which it does not do without. */
Test(graph_cli, global_options)
{
    const char *bench = "bench heads --heads ce --batches 128 --repeats 3 --budget 0.05 --no-peer"
                        " --no-unfused";
    char args[512];
    snprintf(args, sizeof args, "--debug 2 %s", bench);
    cr_assert_eq(oodc(args), 0, "%s", slurp("err.txt"));
    cr_assert(strstr(slurp("err.txt"), "fuse: inline"), "no fusion decisions logged:\n%s",
              slurp("err.txt"));
    cr_assert_eq(oodc(bench), 0, "%s", slurp("err.txt"));
    cr_assert_null(strstr(slurp("err.txt"), "fuse: "), "%s", slurp("err.txt"));

    cr_assert_eq(oodc("--debug"), 2);
    cr_assert(strstr(slurp("err.txt"), "--debug needs a value"), "%s", slurp("err.txt"));
    cr_assert_eq(oodc("--debug x graph"), 2);
    cr_assert(strstr(slurp("err.txt"), "'x'"), "%s", slurp("err.txt"));
    cr_assert_eq(oodc("--no-cache --bogus graph"), 2);
    cr_assert(strstr(slurp("err.txt"), "unknown global option '--bogus'"), "%s", slurp("err.txt"));
    cr_assert_eq(oodc("--no-cache --check-numerics --help"), 0);
}
