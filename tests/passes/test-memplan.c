/* test-memplan.c - the memory planner: temps whose lifetimes overlap never
 * share memory (except a result written in place over its dying operand),
 * reuse shrinks the arena, pinned buffers stay out of it, and a run on an
 * arena poisoned with NaN bytes before every step gives the interpreter's
 * results, so no kernel reads a temp after its memory was reused. */
#include "../runtime/conform.h"

#include "../../passes/fuse.h"

static struct oc_graph *long_chain(void)
{
    struct oc_graph *g = oc_graph_new("chain");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(8, 16));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(16));
    oc_tensor t = x;
    for (int i = 0; i < 12; i++) {
        t = oc_tanh(g, oc_add(g, t, b));
        if (i % 3 == 2) t = oc_sub(g, t, oc_mean(g, t, 2u, 1));
    }
    oc_output(g, "y", t);
    return g;
}

static struct oc_kprog *plan(struct oc_graph *g, int fusion, int inplace)
{
    struct oc_kprog *p = NULL;
    struct oc_err err = {0};
    struct oc_fuse_opts o = {fusion, 0, NULL};
    cr_assert_eq(oc_pass_fuse(g, &o, &p, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_pass_memplan(p, inplace, &err), OC_OK, "%s", err.msg);
    return p;
}

/* Temps alive at the same time occupy disjoint bytes, except an in-place
 * pair, where the result is born exactly when the operand dies. */
static void check_disjoint(const struct oc_kprog *p)
{
    for (int a = 0; a < p->nbuf; a++) {
        const struct oc_kbuf *x = &p->buf[a];
        if (x->pinned) {
            cr_expect_eq(x->offset, -1, "pinned b%d placed in the arena", a);
            continue;
        }
        cr_assert_geq(x->offset, 0, "temp b%d not placed", a);
        cr_expect_leq((size_t)x->offset + x->bytes, p->arena_bytes);
        for (int b = a + 1; b < p->nbuf; b++) {
            const struct oc_kbuf *y = &p->buf[b];
            if (y->pinned) continue;
            int live = x->def <= y->last && y->def <= x->last;
            int mem = x->offset < y->offset + (int64_t)y->bytes && y->offset < x->offset + (int64_t)x->bytes;
            if (!live || !mem) continue;
            int inplace = x->offset == y->offset && (x->last == y->def || y->last == x->def);
            cr_expect(inplace, "b%d [%d,%d]@%lld and b%d [%d,%d]@%lld overlap while both live", a,
                      x->def, x->last, (long long)x->offset, b, y->def, y->last, (long long)y->offset);
        }
    }
}

Test(memplan, live_temps_never_overlap)
{
    struct oc_graph *g = long_chain();
    for (int fusion = 0; fusion <= 1; fusion++)
        for (int inplace = 0; inplace <= 1; inplace++) {
            struct oc_kprog *p = plan(g, fusion, inplace);
            check_disjoint(p);
            if (!inplace) cr_expect_eq(p->ninplace, 0);
            oc_kprog_free(p);
        }
    oc_graph_free(g);
}

Test(memplan, reuse_shrinks_the_arena)
{
    struct oc_graph *g = long_chain();
    struct oc_kprog *p = plan(g, 0, 1);
    cr_expect_gt(p->ntemp, 20);
    cr_expect_lt(p->arena_bytes * 4, p->temp_bytes, "peak %zu vs %zu unplanned", p->arena_bytes,
                 p->temp_bytes);
    cr_expect_gt(p->ninplace, 0, "elementwise kernels reuse their dying operand");
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(memplan, outputs_and_assign_values_are_pinned)
{
    struct oc_graph *g = oc_graph_new("pin");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4));
    oc_tensor s = oc_state(g, "s", OC_F32, OC_SHAPE(4), OC_INIT_ZEROS, 0);
    oc_tensor v = oc_add(g, s, oc_exp(g, x));
    oc_assign(g, s, v);
    oc_output(g, "y", oc_neg(g, v));
    struct oc_kprog *p = plan(g, 0, 1);
    for (int b = 0; b < p->nbuf; b++) {
        const struct oc_node *n = g->nodes[p->buf[b].node];
        if (n->op == OC_OP_ADD || n->op == OC_OP_NEG || n->op == OC_OP_INPUT || n->op == OC_OP_STATE)
            cr_expect(p->buf[b].pinned, "%s buffer must be pinned", oc_op_name(n->op));
        if (n->op == OC_OP_EXP) cr_expect(!p->buf[b].pinned);
    }
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(memplan, poisoned_arena_gives_the_same_results)
{
    struct oc_rt *rt;
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
    struct oc_graph *gs[3] = {long_chain(), oc_graph_new("bn"), oc_graph_new("ce")};
    oc_tensor h = oc_batchnorm_layer(gs[1], "bn", oc_input(gs[1], "x", OC_F32, OC_SHAPE(4, 3, 3, 3)), 1);
    oc_output(gs[1], "y", oc_global_avg_pool(gs[1], oc_relu(gs[1], h)));
    oc_output(gs[2], "loss", oc_cross_entropy(gs[2], oc_softmax(gs[2], oc_input(gs[2], "x", OC_F32, OC_SHAPE(6, 5)), 1),
                                              oc_input(gs[2], "l", OC_I32, OC_SHAPE(6))));
    for (int i = 0; i < 3; i++)
        for (int fusion = 0; fusion <= 1; fusion++)
            for (int inplace = 0; inplace <= 1; inplace++) {
                struct conform_opts co = conform_defaults();
                co.poison = 1;
                co.inplace = inplace;
                co.runs = 2;
                co.ihi = 5;
                char tag[64];
                snprintf(tag, sizeof tag, "graph %d inplace %d", i, inplace);
                cr_expect(conform_run(rt, gs[i], tag, fusion, &co), "%s fusion %d", tag, fusion);
            }
    for (int i = 0; i < 3; i++) oc_graph_free(gs[i]);
    oc_rt_free(rt);
}
