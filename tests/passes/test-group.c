/* test-group.c - fusion rule 4, grouped kernels: the optimizer updates of a
 * small training step (SGD-Nesterov + weight decay over params of
 * different shapes) become one grouped kernel; grouping on and off
 * (OC_FUSE_GROUP=0) give bit-identical params and momenta on the CPU and
 * both match the interpreter; updates that conflict (one reads what the
 * other writes) are not grouped; fusion off never groups; the CUDA group
 * kernel, run on the host emulation of the device, matches the CPU; and
 * NVRTC compiles it (when the toolkit is here) without spills.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../codegen/cuda.h"
#include "../../models/models.h"
#include "../../passes/passes.h"
#include "../../runtime/cuda-impl.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"
#include "../runtime/cuda-check.h"

/* A small conv net's training step: conv weights and a linear layer (their
 * updates are elementwise kernels after library calls), a bias (its
 * update fuses into the batch sum of its gradient), SGD-Nesterov with
 * weight decay, the loss as output. */
static struct oc_graph *train_step(void)
{
    struct oc_graph *g = oc_graph_new("group-step");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 2, 6, 6));
    oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(4));
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor w1 = oc_param(g, "w1", OC_F32, OC_SHAPE(4, 2, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor w2 = oc_param(g, "w2", OC_F32, OC_SHAPE(3, 4, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor wf = oc_param(g, "wf", OC_F32, OC_SHAPE(5, 3), OC_INIT_UNIFORM, -0.5, 0.5);
    oc_tensor bf = oc_param(g, "bf", OC_F32, OC_SHAPE(5), OC_INIT_UNIFORM, -0.1, 0.1);
    oc_tensor h = oc_relu(g, oc_conv2d(g, x, w1, 1, 1));
    h = oc_relu(g, oc_conv2d(g, h, w2, 1, 1));
    oc_tensor pooled = oc_mean(g, h, 12u, 0); /* [4,3] */
    oc_tensor loss = oc_cross_entropy(g, oc_linear(g, pooled, wf, bf), labels);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    int wrt[4] = {w1.id, w2.id, wf.id, bf.id}, grad[4];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, 4, grad, &err), OC_OK, "%s", err.msg);
    oc_tensor pt[4] = {w1, w2, wf, bf}, gt[4];
    for (int i = 0; i < 4; i++) gt[i].id = grad[i];
    oc_sgd_nesterov(g, pt, gt, 4, lr, 0.9, 5e-4, NULL);
    oc_output(g, "loss", loss);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

static const char *const step_state[] = {
    "w1", "w2", "wf", "bf", "w1.momentum_buffer", "w2.momentum_buffer", "wf.momentum_buffer",
    "bf.momentum_buffer",
};
#define NSTATE 8
#define STEPS 3

static void bind_inputs(struct oc_exec *ex, struct oc_interp *it, struct oc_cuda_exec *cx)
{
    struct oc_err err = {0};
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(4, 2, 6, 6), 11, -1, 1);
    struct oc_buf labels = oc_test_random(OC_I32, OC_SHAPE(4), 12, 0, 5);
    struct oc_buf lr = oc_test_buf(OC_F32, OC_SCALAR, (const double[]){0.1});
    const char *names[3] = {"x", "labels", "lr"};
    const struct oc_buf *vals[3] = {&x, &labels, &lr};
    for (int i = 0; i < 3; i++) {
        if (ex) cr_assert_eq(oc_exec_set(ex, names[i], vals[i], &err), OC_OK, "%s", err.msg);
        if (it) cr_assert_eq(oc_interp_set(it, names[i], vals[i], &err), OC_OK, "%s", err.msg);
        if (cx) cr_assert_eq(oc_cuda_exec_set(cx, names[i], vals[i], &err), OC_OK, "%s", err.msg);
    }
    oc_buf_free(&x);
    oc_buf_free(&labels);
    oc_buf_free(&lr);
}

/* Compiles g for the CPU with grouping on or off. */
static struct oc_exec *compile_cpu(const struct oc_graph *g, int group, int fusion)
{
    if (group) unsetenv("OC_FUSE_GROUP");
    else setenv("OC_FUSE_GROUP", "0", 1);
    struct oc_compile_opts o = oc_compile_defaults();
    o.fusion = fusion;
    o.nthreads = 2;
    struct oc_exec *ex = NULL;
    struct oc_err err = {0};
    cr_assert_eq(oc_compile(g, "cpu", &o, &ex, &err), OC_OK, "%s", err.msg);
    unsetenv("OC_FUSE_GROUP");
    return ex;
}

static int count_groups(const struct oc_kprog *p, int *members)
{
    int n = 0;
    *members = 0;
    for (int i = 0; i < p->nkernel; i++)
        if (oc_kir_is_group(p->kernel[i])) n++, *members += p->kernel[i]->ngroup;
    return n;
}

/* Every member of every group writes only assign targets in place (or
 * assign values), and has no reduced axes. */
static void check_members(const struct oc_kprog *p)
{
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (!oc_kir_is_group(k)) continue;
        cr_expect_eq(oc_kir_outer_extent(k), k->goff[k->ngroup], "the group's range is its segments'");
        int64_t pts = 0;
        for (int m = 0; m < k->ngroup; m++) {
            const struct oc_kernel *mk = k->group[m];
            cr_expect_eq(mk->rmask, 0u, "member %s is elementwise", mk->name);
            cr_expect_eq(k->goff[m + 1] - k->goff[m], oc_kir_outer_extent(mk));
            pts += oc_kir_points(mk);
            for (int s = 0; s < mk->nslot; s++) {
                cr_expect_eq(k->slot[k->gslot[m][s]].buf, mk->slot[s].buf, "slot map of %s", mk->name);
                if (!mk->slot[s].written) continue;
                int ok = 0;
                for (int a = 0; a < p->nassign; a++) ok |= p->assign[a].value == mk->slot[s].buf;
                cr_expect(ok, "member %s writes b%d, not an assign's value", mk->name, mk->slot[s].buf);
            }
        }
        cr_expect_eq(oc_kir_points(k), pts);
    }
}

Test(group, updates_are_one_dispatch_and_bit_identical)
{
    struct oc_graph *g = train_step();
    struct oc_exec *on = compile_cpu(g, 1, 1), *off = compile_cpu(g, 0, 1);
    const struct oc_kprog *pon = oc_exec_program(on), *poff = oc_exec_program(off);
    int mon, moff;
    int gon = count_groups(pon, &mon), goff = count_groups(poff, &moff);
    cr_expect_eq(goff, 0, "OC_FUSE_GROUP=0 groups nothing");
    cr_expect_eq(gon, 1, "one group for the updates");
    cr_expect_geq(mon, 3, "the conv and linear weights' updates are grouped (%d)", mon);
    cr_expect_eq(pon->nkernel, poff->nkernel - mon + gon, "%d kernels grouped, %d -> %d kernels", mon,
                 poff->nkernel, pon->nkernel);
    cr_expect_lt(pon->nkernel, poff->nkernel);
    check_members(pon);

    struct oc_interp *it = oc_interp_new(g, 1);
    bind_inputs(on, it, NULL);
    bind_inputs(off, NULL, NULL);
    struct oc_err err = {0};
    for (int r = 0; r < STEPS; r++) {
        cr_assert_eq(oc_exec_run(on, 7, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_run(off, 7, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_run(it, 7, &err), OC_OK, "%s", err.msg);
    }
    for (int i = 0; i < NSTATE; i++) {
        struct oc_buf a, b;
        cr_assert_eq(oc_exec_get(on, step_state[i], &a, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_get(off, step_state[i], &b, &err), OC_OK, "%s", err.msg);
        size_t bytes = (size_t)oc_shape_numel(&a.shape) * oc_dtype_size(a.dtype);
        cr_expect(!memcmp(a.data, b.data, bytes), "%s: grouped and ungrouped differ", step_state[i]);
        cr_expect(oc_test_allclose(step_state[i], &a, oc_interp_named(it, step_state[i]), 1e-3, 1e-5),
                  "%s differs from the interpreter", step_state[i]);
        oc_buf_free(&a);
        oc_buf_free(&b);
    }
    oc_interp_free(it);
    oc_exec_free(on);
    oc_exec_free(off);
    oc_graph_free(g);
}

Test(group, fusion_off_never_groups)
{
    struct oc_graph *g = train_step();
    struct oc_kprog *p = NULL;
    struct oc_err err = {0};
    struct oc_fuse_opts fo = {.fusion = 0};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s", err.msg);
    int m;
    cr_expect_eq(count_groups(p, &m), 0);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* Three updates written in place: b's new value reads a's new value (so
 * their kernels conflict: one writes the buffer the other reads), c is
 * independent. c groups with one of them, never a with b, the log says
 * why, and the results match the interpreter and the ungrouped program. */
Test(group, conflicting_updates_are_not_grouped)
{
    struct oc_graph *g = oc_graph_new("conflict");
    oc_tensor lr = oc_input(g, "lr", OC_F32, OC_SCALAR);
    oc_tensor a = oc_param(g, "a", OC_F32, OC_SHAPE(4), OC_INIT_UNIFORM, -1, 1);
    oc_tensor b = oc_param(g, "b", OC_F32, OC_SHAPE(3, 4), OC_INIT_UNIFORM, -1, 1);
    oc_tensor c = oc_param(g, "c", OC_F32, OC_SHAPE(6), OC_INIT_UNIFORM, -1, 1);
    oc_tensor ga = oc_input(g, "ga", OC_F32, OC_SHAPE(4));
    oc_tensor gb = oc_input(g, "gb", OC_F32, OC_SHAPE(3, 4));
    oc_tensor gc = oc_input(g, "gc", OC_F32, OC_SHAPE(6));
    oc_tensor na = oc_sub(g, a, oc_mul(g, oc_broadcast(g, lr, OC_SHAPE(4)), ga));
    oc_assign(g, a, na);
    oc_tensor nb = oc_sub(g, b, oc_mul(g, oc_broadcast(g, lr, OC_SHAPE(3, 4)),
                                      oc_add(g, gb, oc_broadcast(g, oc_tanh(g, na), OC_SHAPE(3, 4)))));
    oc_assign(g, b, nb);
    oc_assign(g, c, oc_sub(g, c, oc_mul(g, oc_broadcast(g, lr, OC_SHAPE(6)), gc)));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);

    char *log = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&log, &len);
    struct oc_kprog *p = NULL;
    struct oc_err err = {0};
    struct oc_fuse_opts fo = {1, 2, f};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s", err.msg);
    fclose(f);
    int m, ng = count_groups(p, &m);
    cr_expect_eq(ng, 1, "%s", log);
    cr_expect_eq(m, 2, "c and one of a, b: %s", log);
    cr_expect(strstr(log, "group: reject"), "the conflict is logged: %s", log);
    cr_expect(strstr(log, "group: accept"), "%s", log);
    /* the group's members do not conflict */
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (!oc_kir_is_group(k)) continue;
        for (int s = 0; s < k->group[0]->nslot; s++)
            for (int t = 0; t < k->group[1]->nslot; t++)
                if (k->group[0]->slot[s].buf == k->group[1]->slot[t].buf)
                    cr_expect(!k->group[0]->slot[s].written && !k->group[1]->slot[t].written,
                              "members share b%d and one writes it", k->group[0]->slot[s].buf);
    }
    check_members(p);
    oc_kprog_free(p);
    free(log);

    struct oc_exec *on = compile_cpu(g, 1, 1), *off = compile_cpu(g, 0, 1);
    struct oc_interp *it = oc_interp_new(g, 0);
    const char *in[4] = {"lr", "ga", "gb", "gc"};
    for (int i = 0; i < 4; i++) {
        const struct oc_node *n = g->nodes[oc_graph_find_named(g, in[i])];
        struct oc_buf v = oc_test_random(OC_F32, n->shape, 20 + (uint64_t)i, -1, 1);
        cr_assert_eq(oc_exec_set(on, in[i], &v, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_set(off, in[i], &v, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_set(it, in[i], &v, &err), OC_OK, "%s", err.msg);
        oc_buf_free(&v);
    }
    for (int r = 0; r < STEPS; r++) {
        cr_assert_eq(oc_exec_run(on, 3, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_run(off, 3, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_interp_run(it, 3, &err), OC_OK, "%s", err.msg);
    }
    const char *st[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        struct oc_buf x, y;
        cr_assert_eq(oc_exec_get(on, st[i], &x, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_exec_get(off, st[i], &y, &err), OC_OK, "%s", err.msg);
        cr_expect(!memcmp(x.data, y.data, (size_t)oc_shape_numel(&x.shape) * 4), "%s differs", st[i]);
        cr_expect(oc_test_allclose(st[i], &x, oc_interp_named(it, st[i]), 1e-5, 1e-6));
        oc_buf_free(&x);
        oc_buf_free(&y);
    }
    oc_interp_free(it);
    oc_exec_free(on);
    oc_exec_free(off);
    oc_graph_free(g);
}

/* The CUDA group kernel: one __global__ function whose members are device
 * functions, run on the host emulation of the device for a few training
 * steps, against the CPU. */
Test(group, cuda_group_kernel_in_emulation, .timeout = 300)
{
    struct oc_graph *g = train_step();
    struct oc_err err = {0};
    setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
    struct oc_cuda_opts co = oc_cuda_opts_default();
    co.emulate = 1;
    struct oc_cuda *cu = NULL;
    cr_assert_eq(oc_cuda_new(&cu, &co, &err), OC_OK, "%s", err.msg);
    struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
    o.cu = cu;
    o.poison = 1;
    struct oc_cuda_exec *cx = NULL;
    unsetenv("OC_FUSE_GROUP");
    cr_assert_eq(oc_cuda_exec_new(g, &o, &cx, &err), OC_OK, "%s", err.msg);
    const struct oc_kprog *p = oc_cuda_exec_program(cx);
    int m, ng = count_groups(p, &m);
    cr_expect_eq(ng, 1);
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (!oc_kir_is_group(k)) continue;
        char *src = NULL;
        cr_assert_eq(oc_cuda_emit_kernel(k, &src, &err), OC_OK, "%s", err.msg);
        int nglobal = 0;
        for (const char *q = strstr(src, "__global__"); q; q = strstr(q + 1, "__global__")) nglobal++;
        cr_expect_eq(nglobal, 1, "one __global__ function:\n%s", src);
        cr_expect(strstr(src, "_m1("), "members are device functions:\n%s", src);
        struct oc_cuda_launch l;
        oc_cuda_launch_of(k, &l);
        cr_expect_eq(l.map, OC_CUDA_MAP_THREAD);
        cr_expect_gt(oc_cuda_grid(&l, 1), 0u);
        free(src);
    }
    struct oc_exec *ex = compile_cpu(g, 1, 1);
    bind_inputs(ex, NULL, cx);
    for (int r = 0; r < STEPS; r++) {
        cr_assert_eq(oc_exec_run(ex, 7, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_cuda_exec_run(cx, 7, &err), OC_OK, "%s", err.msg);
    }
    for (int i = 0; i < NSTATE; i++) {
        struct oc_buf a, b;
        cr_assert_eq(oc_exec_get(ex, step_state[i], &a, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_cuda_exec_get(cx, step_state[i], &b, &err), OC_OK, "%s", err.msg);
        cr_expect(oc_test_allclose(step_state[i], &b, &a, 1e-4, 1e-6), "%s: cuda (emulated) vs cpu",
                  step_state[i]);
        oc_buf_free(&a);
        oc_buf_free(&b);
    }
    oc_exec_free(ex);
    oc_cuda_exec_free(cx);
    oc_cuda_free(cu);
    oc_graph_free(g);
}

/* NVRTC compiles the program with its group kernel for sm_90 and sm_80:
 * one entry function per kernel (the members are inlined device
 * functions), no spills, no stack. */
Test(group, cuda_group_kernel_compiles_with_nvrtc, .timeout = 120)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    struct oc_graph *g = train_step();
    struct kset s = {0};
    kset_add_graph(&s, g, 1, "group-step");
    int groups = 0;
    for (int i = 0; i < s.n; i++) groups += strstr(s.e[i].name, "_group") != NULL;
    cr_expect_eq(groups, 1, "the program has its group kernel");
    cr_expect_eq(kset_compile(nv, &s, 0, s.n, "sm_90"), 0);
    cr_expect_eq(kset_compile(nv, &s, 0, s.n, "sm_80"), 0);
    kset_free(&s);
    oc_nvrtc_close(nv);
    oc_graph_free(g);
}
