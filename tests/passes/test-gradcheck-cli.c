/* test-gradcheck-cli.c - `oodc graph grad` end to end: a graph built with
 * the DSL is printed, its gradient graph made and evaluated by the CLI; the
 * printed gradient graph evaluated by `oodc graph eval` gives the same
 * bytes, and both equal the in-process autodiff run by the interpreter.
 * Bad requests exit with code 2 and a message naming the problem. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../passes/passes.h"
#include "../helpers/helpers.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/oc-grad-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}
static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(grad_cli, .init = setup, .fini = teardown);

/* Runs oodc in dir with stdout to out.txt (or `out`), stderr to err.txt. */
static int oodc(const char *args, const char *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s/oodc' %s >%s 2>err.txt", dir, OC_BINARY_DIR, args,
             out ? out : "out.txt");
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
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
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

static void write_graph(const struct oc_graph *g, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(oc_graph_print(g, f), OC_OK);
    fclose(f);
}

/* conv - BN(train) - relu - pool - linear - CE, f32 */
static struct oc_graph *net(void)
{
    struct oc_graph *g = oc_graph_new("net");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 2, 5, 5));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    oc_tensor w = oc_param(g, "conv.weight", OC_F32, OC_SHAPE(3, 2, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor h = oc_relu(g, oc_batchnorm_layer(g, "bn", oc_conv2d(g, x, w, 1, 1), 1));
    oc_tensor fw = oc_param(g, "fc.weight", OC_F32, OC_SHAPE(4, 3), OC_INIT_NORMAL, 0, 0.5);
    oc_tensor fb = oc_param(g, "fc.bias", OC_F32, OC_SHAPE(4), OC_INIT_ZEROS, 0, 0);
    oc_tensor logits = oc_linear(g, oc_global_avg_pool(g, h), fw, fb);
    oc_output(g, "loss", oc_cross_entropy(g, logits, lab));
    oc_output(g, "logits", logits);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

static const char *wrt_names[] = {"x", "conv.weight", "bn.weight", "fc.weight", "fc.bias"};
#define NW 5
#define INPUTS "--input x=x.npy --input labels=labels.npy --input conv.weight=w.npy " \
               "--input fc.weight=fw.npy"

static void write_inputs(struct oc_buf *xb, struct oc_buf *lb, struct oc_buf *wb, struct oc_buf *fwb)
{
    *xb = oc_test_random(OC_F32, OC_SHAPE(2, 2, 5, 5), 1, -2, 2);
    *lb = oc_test_random(OC_I32, OC_SHAPE(2), 2, 0, 4);
    *wb = oc_test_random(OC_F32, OC_SHAPE(3, 2, 3, 3), 3, -0.5, 0.5);
    *fwb = oc_test_random(OC_F32, OC_SHAPE(4, 3), 4, -1, 1);
    write_npy("x.npy", xb);
    write_npy("labels.npy", lb);
    write_npy("w.npy", wb);
    write_npy("fw.npy", fwb);
}

static void grad_matches_eval_and_library(int f64)
{
    struct oc_graph *g = net();
    write_graph(g, "net.txt");
    struct oc_buf xb, lb, wb, fwb;
    write_inputs(&xb, &lb, &wb, &fwb);
    const char *flag = f64 ? " --f64" : "";
    char args[1024];
    snprintf(args, sizeof args, "graph grad net.txt --loss loss --wrt x,conv.weight,bn.weight "
             "--wrt fc.weight,fc.bias " INPUTS " --output d1%s", flag);
    cr_assert_eq(oodc(args, "grad.txt"), 0, "graph grad failed: %s", slurp("err.txt"));
    snprintf(args, sizeof args, "graph eval grad.txt " INPUTS " --output d2%s", flag);
    cr_assert_eq(oodc(args, NULL), 0, "graph eval of the printed gradient graph failed: %s",
                 slurp("err.txt"));

    /* in process: the same graph, the same autodiff, the interpreter */
    int wrt[NW], gr[NW];
    for (int i = 0; i < NW; i++) wrt[i] = oc_graph_find_named(g, wrt_names[i]);
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, g->outputs[0].node, -1, wrt, NW, gr, &err), OC_OK, "%s", err.msg);
    struct oc_interp *it = oc_interp_new(g, f64);
    cr_assert_eq(oc_interp_set(it, "x", &xb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "labels", &lb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "conv.weight", &wb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_set(it, "fc.weight", &fwb, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "%s", err.msg);

    for (int i = 0; i < NW; i++) {
        char name[256];
        snprintf(name, sizeof name, "d1/grad_%s.npy", wrt_names[i]);
        struct oc_buf a = read_npy(name);
        snprintf(name, sizeof name, "d2/grad_%s.npy", wrt_names[i]);
        struct oc_buf b = read_npy(name);
        const struct oc_buf *c = oc_interp_value(it, gr[i]);
        cr_expect_eq(a.dtype, f64 ? OC_F64 : OC_F32, "grad_%s dtype", wrt_names[i]);
        cr_expect(oc_test_allclose(wrt_names[i], &a, &b, 0, 0), "grad %s: grad vs eval",
                  wrt_names[i]);
        cr_expect(oc_test_allclose(wrt_names[i], &a, c, 0, 0), "grad %s: CLI vs library",
                  wrt_names[i]);
        double norm = 0;
        for (int64_t k = 0; k < oc_shape_numel(&a.shape); k++) norm += oc_buf_get(&a, k) * oc_buf_get(&a, k);
        cr_expect_gt(norm, 0, "grad %s is all zero", wrt_names[i]);
        oc_buf_free(&a);
        oc_buf_free(&b);
    }
    oc_interp_free(it);
    oc_buf_free(&xb);
    oc_buf_free(&lb);
    oc_buf_free(&wb);
    oc_buf_free(&fwb);
    oc_graph_free(g);
}

Test(grad_cli, grad_matches_eval_and_library_f32) { grad_matches_eval_and_library(0); }
Test(grad_cli, grad_matches_eval_and_library_f64) { grad_matches_eval_and_library(1); }

Test(grad_cli, prints_a_parseable_gradient_graph)
{
    struct oc_graph *g = net();
    write_graph(g, "net.txt");
    cr_assert_eq(oodc("graph grad net.txt --loss loss --wrt fc.bias,x", NULL), 0, "%s",
                 slurp("err.txt"));
    char *out = slurp("out.txt");
    cr_expect(strstr(out, "output grad_fc.bias = %"), "%s", out);
    cr_expect(strstr(out, "output grad_x = %"));
    cr_expect(strstr(out, "conv2d_grad_input"), "the input gradient goes through conv2d_grad_input");
    struct oc_err err = {0};
    struct oc_graph *p = oc_graph_parse(out, "out.txt", &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_expect_geq(oc_graph_find_output(p, "grad_x"), 0);
    cr_expect_gt(p->nnodes, g->nnodes);
    oc_graph_free(p);
    oc_graph_free(g);
}

Test(grad_cli, bad_requests_exit_2)
{
    struct oc_graph *g = net();
    write_graph(g, "net.txt");
    /* an argmax-only path */
    struct oc_graph *h = oc_graph_new("am");
    oc_tensor x = oc_input(h, "x", OC_F32, OC_SHAPE(2, 3));
    oc_output(h, "l", oc_sum(h, oc_cast(h, oc_argmax(h, x, 1, 0), OC_F32), 1u, 0));
    write_graph(h, "am.txt");
    oc_graph_free(h);
    static const struct {
        const char *args, *msg;
    } cs[] = {
        {"graph grad net.txt --wrt x", "--loss"},
        {"graph grad net.txt --loss loss", "--wrt"},
        {"graph grad net.txt --loss nope --wrt x", "no output named 'nope'"},
        {"graph grad net.txt --loss loss --wrt x,nope", "named 'nope'"},
        {"graph grad net.txt --loss logits --wrt x", "seed"},
        {"graph grad am.txt --loss l --wrt x", "argmax"},
        {"graph grad missing.txt --loss loss --wrt x", "missing.txt"},
        {"graph grad net.txt --loss loss --wrt x --input x=x.npy", "--output"},
        {"graph grad net.txt --loss loss --wrt x --input x=none.npy --output d", "none.npy"},
        {"graph grad net.txt --loss loss --wrt x --output d", "not bound"},
        {"graph grad net.txt --loss loss --wrt x --bogus", "--bogus"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        cr_expect_eq(oodc(cs[i].args, NULL), 2, "`%s` should exit 2", cs[i].args);
        char *e = slurp("err.txt");
        cr_expect(strstr(e, "oodc graph grad") || strstr(e, "oodc graph"), "`%s`: %s", cs[i].args, e);
        cr_expect(strstr(e, cs[i].msg), "`%s`: message should mention '%s': %s", cs[i].args,
                  cs[i].msg, e);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/d/grad_x.npy", dir);
    cr_expect_eq(access(path, F_OK), -1, "no gradient file after a failure");
    oc_graph_free(g);
}
