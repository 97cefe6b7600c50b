/* test-exec.c - the executor API on small graphs: binding, runs, params
 * initialized from their initializers, assigns carried across steps,
 * outputs that read an assigned param, errors for bad names and unbound
 * inputs, the kernel cache, and fusion on simple chains. */
#include "conform.h"

#include "../../passes/kir.h"

static struct oc_rt *rt;

static void setup(void)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
}

static void teardown(void) { oc_rt_free(rt); }

TestSuite(exec, .init = setup, .fini = teardown);

Test(exec, add_chain)
{
    struct oc_graph *g = oc_graph_new("chain");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(3, 4));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(4));
    oc_tensor y = oc_exp(g, oc_mul(g, oc_add(g, a, b), a));
    oc_output(g, "y", y);
    struct conform_opts co = conform_defaults();
    cr_expect(conform_run(rt, g, "add_chain", 1, &co));
    cr_expect(conform_run(rt, g, "add_chain", 0, &co));
    /* fused: one kernel */
    struct oc_exec *ex;
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    cr_expect_eq(oc_exec_program(ex)->nkernel, 1);
    oc_exec_free(ex);
    oc_graph_free(g);
}

Test(exec, params_and_assign)
{
    struct oc_graph *g = oc_graph_new("sgd");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(5));
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(5), OC_INIT_NORMAL, 0, 1);
    oc_tensor m = oc_state(g, "m", OC_F32, OC_SHAPE(5), OC_INIT_ZEROS, 0);
    oc_tensor gr = oc_mul(g, x, w);
    oc_tensor m2 = oc_add(g, oc_scale(g, m, 0.9), gr);
    oc_assign(g, m, m2);
    oc_assign(g, w, oc_sub(g, w, oc_scale(g, m2, 0.1)));
    oc_output(g, "w_old", w);
    oc_output(g, "loss", oc_sum(g, oc_mul(g, w, w), 1u, 0));
    struct conform_opts co = conform_defaults();
    co.runs = 3;
    cr_expect(conform_run(rt, g, "params_and_assign", 1, &co));
    cr_expect(conform_run(rt, g, "params_and_assign", 0, &co));
    oc_graph_free(g);
}

Test(exec, errors)
{
    struct oc_graph *g = oc_graph_new("e");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(2));
    oc_output(g, "y", oc_neg(g, a));
    struct oc_exec *ex;
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    cr_assert_eq(oc_compile(g, "gpu9", &o, &ex, &err), OC_ERR_UNSUPPORTED);
    cr_expect(strstr(err.msg, "gpu9"));
    oc_err_clear(&err);
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    cr_expect_eq(oc_exec_run(ex, 1, &err), OC_ERR_INVALID);
    cr_expect(strstr(err.msg, "\"a\""), "%s", err.msg);
    oc_err_clear(&err);
    struct oc_buf b = oc_test_random(OC_F32, OC_SHAPE(3), 1, 0, 1);
    cr_expect_eq(oc_exec_set(ex, "a", &b, &err), OC_ERR_SHAPE);
    oc_err_clear(&err);
    cr_expect_eq(oc_exec_set(ex, "nope", &b, &err), OC_ERR_INVALID);
    oc_err_clear(&err);
    struct oc_buf out;
    cr_expect_eq(oc_exec_get(ex, "y", &out, &err), OC_ERR_INVALID);
    oc_buf_free(&b);
    oc_exec_free(ex);
    oc_graph_free(g);
}

Test(exec, kernel_cache)
{
    struct oc_graph *g = oc_graph_new("c");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(6, 7));
    oc_output(g, "y", oc_tanh(g, oc_add_scalar(g, a, 0.25)));
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    struct oc_exec *e1, *e2;
    int c0, h0, c1, h1;
    oc_rt_cache_stats(rt, &c0, &h0);
    cr_assert_eq(oc_compile(g, "cpu", &o, &e1, &err), OC_OK, "%s", err.msg);
    oc_rt_cache_stats(rt, &c1, &h1);
    cr_expect_eq(c1, c0 + 1);
    cr_assert_eq(oc_compile(g, "cpu", &o, &e2, &err), OC_OK, "%s", err.msg);
    oc_rt_cache_stats(rt, &c0, &h0);
    cr_expect_eq(c0, c1, "the second compile must hit the cache");
    cr_expect_eq(h0, h1 + 1);
    oc_exec_free(e1);
    oc_exec_free(e2);
    oc_graph_free(g);
}

/* Shapes above the parallel threshold, on a 4-thread pool: elementwise
 * kernels of several ranks and row kernels split across threads. */
Test(exec, threaded_kernels_match)
{
    struct oc_rt *rt4;
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt4, 4, 0, &err), OC_OK, "%s", err.msg);
    struct oc_graph *g = oc_graph_new("big");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(64, 1024));
    oc_tensor z = oc_input(g, "z", OC_F32, OC_SHAPE(8, 4, 2048));
    oc_tensor w = oc_input(g, "w", OC_F32, OC_SHAPE(3, 40000));
    oc_output(g, "sm", oc_softmax(g, x, 1));
    oc_output(g, "colmax", oc_reduce_max(g, oc_tanh(g, x), 1u, 0));
    oc_output(g, "rows", oc_log_softmax(g, z, 2));
    oc_output(g, "e", oc_mul(g, oc_sigmoid(g, z), oc_reshape(g, oc_exp(g, z), OC_SHAPE(8, 4, 2048))));
    oc_output(g, "w2", oc_add(g, oc_mul(g, w, w), oc_reshape(g, oc_sum(g, w, 2u, 1), OC_SHAPE(3, 1))));
    oc_output(g, "all", oc_sum(g, oc_abs(g, w), 3u, 0));
    struct conform_opts co = conform_defaults();
    co.rtol = 1e-3, co.atol = 1e-4;
    cr_expect(conform_run(rt4, g, "threaded", 1, &co));
    cr_expect(conform_run(rt4, g, "threaded", 0, &co));
    oc_graph_free(g);
    oc_rt_free(rt4);
}

Test(exec, profile_and_stats)
{
    struct oc_graph *g = oc_graph_new("prof");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(5, 6));
    oc_output(g, "y", oc_softmax(g, oc_exp(g, a), 1));
    oc_output(g, "z", oc_sum(g, a, 3u, 0));
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    o.profile = 1;
    o.fusion = 0;
    struct oc_exec *ex;
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    struct oc_buf b = oc_test_random(OC_F32, OC_SHAPE(5, 6), 2, -1, 1);
    cr_assert_eq(oc_exec_set(ex, "a", &b, &err), OC_OK, "%s", err.msg);
    for (int r = 0; r < 3; r++) cr_assert_eq(oc_exec_run(ex, 1, &err), OC_OK, "%s", err.msg);
    struct oc_exec_stats st;
    oc_exec_stats(ex, &st);
    cr_expect_eq(st.nruns, 3);
    cr_expect_eq(st.nkernels, oc_exec_program(ex)->nkernel);
    cr_expect_gt(st.ntemps, 0);
    cr_expect_leq(st.arena_bytes, st.temp_bytes);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    oc_exec_profile(ex, f);
    fclose(f);
    cr_expect(strstr(buf, "3 run(s)"), "%s", buf);
    cr_expect(strstr(buf, "_reduce_max"), "%s", buf);
    cr_expect(!strstr(buf, "not timed"), "%s", buf);
    free(buf);
    oc_buf_free(&b);
    oc_exec_free(ex);
    oc_graph_free(g);
}
