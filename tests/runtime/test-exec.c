/* test-exec.c - the executor API on small graphs: binding, runs, params
 * initialized from their initializers, assigns carried across steps,
 * outputs that read an assigned param, errors for bad names and unbound
 * inputs, the kernel cache, fusion on simple chains, reductions over
 * leading axes in row blocks, MMCE's pairwise kernels, and optimizer
 * updates written in place. */
#include "conform.h"

#include "../../codegen/codegen.h"
#include "../../passes/kir.h"
#include "../../models/models.h"
#include "../../passes/passes.h"

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

/* Reductions over leading axes run in blocks of rows (codegen.h
 * OC_LLVM_ROW_BLOCK): sums, maxima and argmax over the batch, a softmax
 * down the columns (three stages with per-point stores), over row counts
 * that leave a partial block, threaded and not. */
Test(exec, column_reductions_in_row_blocks)
{
    static const int64_t rows[] = {16, 37, 100};
    for (int t = 0; t < 3; t++) {
        struct oc_graph *g = oc_graph_new("columns");
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(9, rows[t]));
        oc_tensor y = oc_input(g, "y", OC_F32, OC_SHAPE(5, 3, rows[t]));
        oc_output(g, "sum", oc_sum(g, oc_exp(g, x), 1u, 0));
        oc_output(g, "max", oc_reduce_max(g, x, 1u, 1));
        oc_output(g, "arg", oc_argmax(g, x, 0, 0));
        oc_output(g, "softmax", oc_softmax(g, x, 0));
        oc_output(g, "sum2", oc_sum(g, oc_mul(g, y, y), 3u, 0));
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
        struct conform_opts co = conform_defaults();
        cr_expect(conform_run(rt, g, "column_reductions", 1, &co), "%lld rows", (long long)rows[t]);
        struct oc_exec *ex;
        struct oc_err err = {0};
        struct oc_compile_opts o = oc_compile_defaults();
        o.rt = rt;
        cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
        int blocked = 0;
        const struct oc_kprog *p = oc_exec_program(ex);
        for (int i = 0; i < p->nkernel; i++) blocked += oc_llvm_row_block(p->kernel[i]) > 1;
        cr_expect_geq(blocked, 2, "the column kernels run in row blocks");
        oc_exec_free(ex);
        oc_graph_free(g);
    }
}

/* MMCE's pairwise sum: the forward reduction to one value is split into a
 * row kernel and a sum of rows, the backward sums over either axis of the
 * [B,B] products share one row kernel (one of them read transposed), and
 * no kernel stores a B x B matrix. Values match the interpreter. */
Test(exec, mmce_never_materializes_the_pair_matrix)
{
    enum { B = 300 };
    struct oc_graph *g = oc_graph_new("mmce");
    oc_tensor logits = oc_input(g, "logits", OC_F32, OC_SHAPE(B, 4));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(B));
    oc_tensor p = oc_softmax(g, logits, 1);
    oc_tensor conf = oc_reduce_max(g, p, 2u, 0);
    oc_tensor correct = oc_cast(g, oc_eq(g, oc_argmax(g, p, 1, 0), labels), OC_F32);
    oc_tensor loss = oc_mmce_weighted(g, conf, correct, 0.4);
    int gl;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, &logits.id, 1, &gl, &err), OC_OK, "%s", err.msg);
    oc_output(g, "loss", loss);
    oc_output(g, "grad", (oc_tensor){gl});
    struct conform_opts co = conform_defaults();
    co.rtol = 1e-3, co.atol = 1e-4;
    cr_expect(conform_run(rt, g, "mmce", 1, &co));
    struct oc_exec *ex;
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    const struct oc_kprog *pr = oc_exec_program(ex);
    int pair_kernels = 0;
    for (int i = 0; i < pr->nkernel; i++) {
        const struct oc_kernel *k = pr->kernel[i];
        if (k->kind != OC_K_LOOP) continue;
        for (int s = 0; s < k->nslot; s++)
            cr_expect_lt(k->slot[s].numel, (int64_t)B * B, "kernel %s stores or reads a B x B buffer", k->name);
        if (oc_kir_points(k) == (int64_t)B * B) {
            pair_kernels++;
            cr_expect_geq(oc_kir_outer_extent(k), B, "pairwise kernel %s runs one row per item", k->name);
        }
    }
    cr_expect_eq(pair_kernels, 2, "one forward and one backward pass over the pairs");
    cr_expect_lt(pr->nextra, 3, "one split reduction");
    cr_expect_gt(pr->nextra, 0, "one split reduction");
    oc_exec_free(ex);
    oc_graph_free(g);
}

/* The SGD-Nesterov update writes parameters and momenta in place: every
 * assign of the fused training step is a no-op copy (target == value),
 * the kernels that still read a weight's old value (the backward conv
 * w.r.t. the input) run before its update, and three steps match the
 * interpreter. */
Test(exec, optimizer_updates_in_place)
{
    struct oc_graph *g = oc_graph_new("step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 2, 6, 6));
    oc_tensor y = oc_input(g, "labels", OC_I32, OC_SHAPE(4));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor w1 = oc_param(g, "w1", OC_F32, OC_SHAPE(3, 2, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor w2 = oc_param(g, "w2", OC_F32, OC_SHAPE(4, 3, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor fc = oc_param(g, "fc", OC_F32, OC_SHAPE(5, 4), OC_INIT_NORMAL, 0, 0.3);
    oc_tensor h = oc_relu(g, oc_conv2d(g, x, w1, 1, 1));
    h = oc_relu(g, oc_conv2d(g, h, w2, 1, 1));
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, oc_global_avg_pool(g, h), fc, OC_NONE), y);
    oc_tensor ps[3] = {w1, w2, fc};
    int wrt[3] = {w1.id, w2.id, fc.id}, gr[3];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, 3, gr, &err), OC_OK, "%s", err.msg);
    oc_tensor gs[3] = {{gr[0]}, {gr[1]}, {gr[2]}};
    oc_sgd_nesterov(g, ps, gs, 3, lr, 0.9, 5e-4, NULL);
    oc_output(g, "loss", loss);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct conform_opts co = conform_defaults();
    co.runs = 3;
    co.rtol = 1e-3, co.atol = 1e-4;
    co.lo = 0, co.hi = 1;
    cr_expect(conform_run(rt, g, "sgd_in_place", 1, &co));
    struct oc_exec *ex;
    struct oc_compile_opts o = oc_compile_defaults();
    o.rt = rt;
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    const struct oc_kprog *p = oc_exec_program(ex);
    cr_expect_eq(p->nassign, 6, "three params, three momenta");
    for (int a = 0; a < p->nassign; a++) {
        int t = p->assign[a].target;
        cr_expect_eq(p->assign[a].value, t, "assign %d is written in place", a);
        /* no kernel reads the target after the one that writes it */
        int writer = -1;
        for (int i = 0; i < p->nkernel; i++)
            for (int s = 0; s < p->kernel[i]->nslot; s++) {
                const struct oc_kslot *sl = &p->kernel[i]->slot[s];
                if (sl->buf != t) continue;
                if (sl->written) writer = i;
                else if (writer >= 0 && writer != i) cr_expect_fail("kernel %d reads buffer %d after kernel %d updated it", i, t, writer);
            }
        cr_expect_geq(writer, 0);
    }
    oc_exec_free(ex);
    oc_graph_free(g);
}
