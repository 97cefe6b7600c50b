/* test-autodiff.c - the autodiff pass itself: rule coverage against ops.def,
 * gradient values on small graphs, fan-out, stop_gradient, integer tensors,
 * zero gradients, seeds, intermediates, double backward, tie conventions,
 * assign semantics in a training step, and the error cases. Finite-difference
 * checks of every rule are in test-gradcheck-*.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "../../passes/passes.h"
#include "../helpers/gradcheck.h"
#include "../helpers/helpers.h"

static struct oc_buf vec(const double *v, int64_t n) { return oc_test_buf(OC_F64, OC_SHAPE(n), v); }

/* Runs g (f64) with x bound and returns node `id`'s value. */
static struct oc_buf eval_node(struct oc_graph *g, int id, const struct oc_test_bind *b, int nb)
{
    char name[32];
    snprintf(name, sizeof name, "__n%d", id);
    oc_graph_set_output(g, name, (oc_tensor){id});
    return oc_test_run(g, 1, b, nb, name);
}

static void expect_vals(const char *what, const struct oc_buf *got, const double *want, int64_t n)
{
    cr_assert_eq(oc_shape_numel(&got->shape), n, "%s: %lld elements", what,
                 (long long)oc_shape_numel(&got->shape));
    for (int64_t i = 0; i < n; i++)
        cr_expect(fabs(oc_buf_get(got, i) - want[i]) <= 1e-12 * (1 + fabs(want[i])),
                  "%s[%lld] = %.17g, expected %.17g", what, (long long)i, oc_buf_get(got, i),
                  want[i]);
}

Test(autodiff, every_differentiable_op_has_a_rule)
{
    int missing = 0;
    for (int op = 0; op < OC_OP_COUNT; op++) {
        int diff = (oc_op_table[op].flags & OC_F_DIFF) != 0;
        if (diff && !oc_autodiff_has_rule((enum oc_op)op)) {
            fprintf(stderr, "op %s is OC_F_DIFF but has no VJP rule\n", oc_op_name(op));
            missing++;
        }
        /* non-differentiable ops do not claim a rule either */
        cr_expect_eq(oc_autodiff_has_rule((enum oc_op)op), diff, "op %s: has_rule %d, OC_F_DIFF %d",
                     oc_op_name(op), oc_autodiff_has_rule((enum oc_op)op), diff);
    }
    cr_assert_eq(missing, 0);
    cr_assert_eq(oc_autodiff_has_rule(OC_OP_COUNT), 0);
}

Test(autodiff, square_and_fan_out)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    /* x used four times: x*x (twice), + x, and exp(x) */
    oc_tensor y = oc_add(g, oc_add(g, oc_mul(g, x, x), x), oc_exp(g, x));
    oc_tensor l = oc_sum(g, y, 1u, 0);
    int wrt = x.id, gr = -1;
    struct oc_err err = {0};
    int before = g->nnodes;
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, &wrt, 1, &gr, &err), OC_OK, "%s", err.msg);
    cr_assert_gt(g->nnodes, before);
    cr_assert_geq(gr, before, "the gradient is a new node");
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);
    double xv[3] = {0.5, -1.25, 2.0}, want[3];
    for (int i = 0; i < 3; i++) want[i] = 2 * xv[i] + 1 + exp(xv[i]);
    struct oc_buf xb = vec(xv, 3);
    struct oc_test_bind b = {"x", &xb};
    struct oc_buf r = eval_node(g, gr, &b, 1);
    expect_vals("d/dx", &r, want, 3);
    oc_buf_free(&r);
    oc_buf_free(&xb);
    oc_graph_free(g);
}

Test(autodiff, repeated_and_intermediate_wrt)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2));
    oc_tensor h = oc_scale(g, x, 3.0);
    oc_tensor l = oc_sum(g, oc_mul(g, h, h), 1u, 0);
    int wrt[4] = {h.id, x.id, h.id, l.id}, gr[4];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 4, gr, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(gr[0], gr[2]);
    double xv[2] = {1.0, -2.0};
    struct oc_buf xb = vec(xv, 2);
    struct oc_test_bind b = {"x", &xb};
    struct oc_buf dh = eval_node(g, gr[0], &b, 1);
    struct oc_buf dx = eval_node(g, gr[1], &b, 1);
    struct oc_buf dl = eval_node(g, gr[3], &b, 1);
    expect_vals("dl/dh", &dh, (double[]){6.0, -12.0}, 2);
    expect_vals("dl/dx", &dx, (double[]){18.0, -36.0}, 2);
    expect_vals("dl/dl", &dl, (double[]){1.0}, 1);
    oc_buf_free(&dh);
    oc_buf_free(&dx);
    oc_buf_free(&dl);
    oc_buf_free(&xb);
    oc_graph_free(g);
}

Test(autodiff, seeded_vector_jacobian_product)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor s = oc_input(g, "s", OC_F64, OC_SHAPE(3));
    oc_tensor y = oc_mul(g, x, x);
    int wrt = x.id, gr;
    struct oc_err err = {0};
    /* a non-scalar output without a seed is refused, naming the node */
    cr_assert_eq(oc_pass_autodiff(g, y.id, -1, &wrt, 1, &gr, &err), OC_ERR_SHAPE);
    cr_assert(strstr(err.msg, "mul"), "%s", err.msg);
    oc_err_clear(&err);
    cr_assert_eq(oc_pass_autodiff(g, y.id, s.id, &wrt, 1, &gr, &err), OC_OK, "%s", err.msg);
    struct oc_buf xb = vec((double[]){1, 2, 3}, 3), sb = vec((double[]){1, -1, 0.5}, 3);
    struct oc_test_bind b[2] = {{"x", &xb}, {"s", &sb}};
    struct oc_buf r = eval_node(g, gr, b, 2);
    expect_vals("vjp", &r, (double[]){2, -4, 3}, 3);
    oc_buf_free(&r);
    oc_buf_free(&xb);
    oc_buf_free(&sb);
    oc_graph_free(g);
}

/* no path, stop_gradient, integer tensors, comparisons: materialized zeros */
Test(autodiff, zero_gradients_are_materialized)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor u = oc_input(g, "unused", OC_F64, OC_SHAPE(2, 2));
    oc_tensor z = oc_input(g, "z", OC_F64, OC_SHAPE(3));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(3));
    oc_tensor c = oc_input(g, "c", OC_F64, OC_SHAPE(3));
    /* z only through stop_gradient; c only through a comparison */
    oc_tensor t = oc_mul(g, x, oc_stop_gradient(g, z));
    t = oc_add(g, t, oc_cast(g, lab, OC_F64));
    t = oc_add(g, t, oc_gt(g, c, oc_scalar(g, OC_F64, 0.0)));
    t = oc_add(g, t, oc_sign(g, c));
    oc_tensor l = oc_sum(g, t, 1u, 0);
    int wrt[5] = {x.id, u.id, z.id, lab.id, c.id}, gr[5];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 5, gr, &err), OC_OK, "%s", err.msg);
    for (int i = 1; i < 5; i++) {
        const struct oc_node *n = g->nodes[gr[i]];
        cr_expect_eq(n->op, OC_OP_CONST, "gradient %d is a %s", i, oc_op_name(n->op));
        cr_expect_eq(n->attrs.value, 0.0);
        cr_expect(n->attrs.data == NULL);
        cr_expect_eq(n->dtype, g->nodes[wrt[i]]->dtype);
        cr_expect(oc_shape_eq(&n->shape, &g->nodes[wrt[i]]->shape));
    }
    cr_expect_eq(g->nodes[gr[3]]->dtype, OC_I32);
    struct oc_buf xb = vec((double[]){1, 2, 3}, 3), zb = vec((double[]){4, 5, 6}, 3);
    struct oc_buf cb = vec((double[]){-1, 1, 2}, 3), ub = oc_test_random(OC_F64, OC_SHAPE(2, 2), 1, 0, 1);
    struct oc_buf lb = oc_test_buf(OC_I32, OC_SHAPE(3), (double[]){0, 1, 2});
    struct oc_test_bind b[5] = {{"x", &xb}, {"z", &zb}, {"c", &cb}, {"unused", &ub}, {"labels", &lb}};
    struct oc_buf r = eval_node(g, gr[0], b, 5);
    expect_vals("d/dx", &r, (double[]){4, 5, 6}, 3);
    oc_buf_free(&r);
    oc_buf_free(&xb);
    oc_buf_free(&zb);
    oc_buf_free(&cb);
    oc_buf_free(&ub);
    oc_buf_free(&lb);
    oc_graph_free(g);
}

Test(autodiff, argmax_only_path_is_an_error_naming_the_node)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3));
    oc_tensor am = oc_argmax(g, x, 1, 0);
    g->nodes[am.id]->label = "pred";
    oc_tensor l = oc_sum(g, oc_cast(g, am, OC_F64), 1u, 0);
    int wrt = x.id, gr = -1;
    int before = g->nnodes;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, &wrt, 1, &gr, &err), OC_ERR_UNSUPPORTED);
    char want[64];
    snprintf(want, sizeof want, "%%%d argmax \"pred\"", am.id);
    cr_assert(strstr(err.msg, want), "message: %s", err.msg);
    cr_assert(strstr(err.msg, "\"x\""), "message: %s", err.msg);
    cr_assert_eq(g->nnodes, before, "a refused request leaves the graph as it was");
    oc_graph_free(g);
}

/* argmax on a side path (as when MMCE's correctness comes from the
 * prediction) does not stop the differentiable path */
Test(autodiff, argmax_side_path_is_fine)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3));
    oc_tensor mask = oc_one_hot(g, oc_argmax(g, x, 1, 0), 3, OC_F64);
    oc_tensor l = oc_sum(g, oc_mul(g, x, mask), 3u, 0);
    int wrt = x.id, gr;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, &wrt, 1, &gr, &err), OC_OK, "%s", err.msg);
    struct oc_buf xb = oc_test_buf(OC_F64, OC_SHAPE(2, 3), (double[]){1, 5, 2, 7, 0, -1});
    struct oc_test_bind b = {"x", &xb};
    struct oc_buf r = eval_node(g, gr, &b, 1);
    expect_vals("d/dx", &r, (double[]){0, 1, 0, 1, 0, 0}, 6);
    oc_buf_free(&r);
    oc_buf_free(&xb);
    oc_graph_free(g);
}

Test(autodiff, bad_requests)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor i = oc_input(g, "i", OC_I32, OC_SHAPE(3));
    oc_tensor l = oc_sum(g, x, 1u, 0);
    oc_tensor li = oc_sum(g, i, 1u, 0);
    oc_tensor s32 = oc_input(g, "s32", OC_F32, OC_SCALAR);
    int wrt = x.id, bad = 999, gr;
    struct oc_err err = {0};
    cr_expect_eq(oc_pass_autodiff(g, 999, -1, &wrt, 1, &gr, &err), OC_ERR_INVALID);
    oc_err_clear(&err);
    cr_expect_eq(oc_pass_autodiff(g, l.id, -1, &bad, 1, &gr, &err), OC_ERR_INVALID);
    oc_err_clear(&err);
    cr_expect_eq(oc_pass_autodiff(g, li.id, -1, &wrt, 1, &gr, &err), OC_ERR_DTYPE);
    cr_expect(strstr(err.msg, "i32"), "%s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_pass_autodiff(g, l.id, s32.id, &wrt, 1, &gr, &err), OC_ERR_SHAPE,
                 "seed of another dtype: %s", err.msg);
    oc_err_clear(&err);
    cr_expect_eq(oc_pass_autodiff(g, l.id, 12345, &wrt, 1, &gr, &err), OC_ERR_INVALID);
    oc_graph_free(g);
}

/* conventions at non-smooth points, as documented in passes.h */
Test(autodiff, ties_and_kinks)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor a = oc_input(g, "a", OC_F64, OC_SHAPE(4));
    oc_tensor b = oc_input(g, "b", OC_F64, OC_SHAPE(4));
    oc_tensor m = oc_input(g, "m", OC_F64, OC_SHAPE(2, 3));
    oc_tensor l = oc_add(g, oc_sum(g, oc_max(g, a, b), 1u, 0),
                         oc_scale(g, oc_sum(g, oc_min(g, a, b), 1u, 0), 10.0));
    l = oc_add(g, l, oc_scale(g, oc_sum(g, oc_relu(g, a), 1u, 0), 100.0));
    l = oc_add(g, l, oc_scale(g, oc_sum(g, oc_abs(g, b), 1u, 0), 1000.0));
    l = oc_add(g, l, oc_sum(g, oc_reduce_max(g, m, 2u, 0), 1u, 0));
    int wrt[3] = {a.id, b.id, m.id}, gr[3];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 3, gr, &err), OC_OK, "%s", err.msg);
    /* a = b at 0 and 2 (ties); relu(a) and abs(b) at 0 for element 0 */
    struct oc_buf ab = vec((double[]){0, 2, 3, -1}, 4), bb = vec((double[]){0, 2, 1, 5}, 4);
    struct oc_buf mb = oc_test_buf(OC_F64, OC_SHAPE(2, 3), (double[]){1, 4, 4, 2, 2, 2});
    struct oc_test_bind bd[3] = {{"a", &ab}, {"b", &bb}, {"m", &mb}};
    struct oc_buf da = eval_node(g, gr[0], bd, 3), db = eval_node(g, gr[1], bd, 3);
    struct oc_buf dm = eval_node(g, gr[2], bd, 3);
    /* d/da: max 0.5|0.5|1|0, min*10 5|5|0|10, relu*100 0|100|100|0 */
    expect_vals("d/da", &da, (double[]){5.5, 105.5, 101, 10}, 4);
    /* d/db: max 0.5|0.5|0|1, min*10 5|5|10|0, abs*1000 0|1000|1000|1000 */
    expect_vals("d/db", &db, (double[]){5.5, 1005.5, 1010, 1001}, 4);
    /* reduce_max ties share equally */
    expect_vals("d/dm", &dm, (double[]){0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 6);
    oc_buf_free(&da);
    oc_buf_free(&db);
    oc_buf_free(&dm);
    oc_buf_free(&ab);
    oc_buf_free(&bb);
    oc_buf_free(&mb);
    oc_graph_free(g);
}

/* gradients of gradients: the reverse graph is itself differentiable */
Test(autodiff, double_backward)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor l = oc_sum(g, oc_mul(g, x, oc_mul(g, x, x)), 1u, 0); /* sum x^3 */
    int wrt = x.id, g1, g2;
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, &wrt, 1, &g1, &err), OC_OK, "%s", err.msg);
    oc_tensor l2 = oc_sum(g, (oc_tensor){g1}, 1u, 0); /* sum 3x^2 */
    cr_assert_eq(oc_pass_autodiff(g, l2.id, -1, &wrt, 1, &g2, &err), OC_OK, "%s", err.msg);
    struct oc_buf xb = vec((double[]){1, -2, 0.5}, 3);
    struct oc_test_bind b = {"x", &xb};
    struct oc_buf r = eval_node(g, g2, &b, 1);
    expect_vals("d2", &r, (double[]){6, -12, 3}, 3);
    oc_buf_free(&r);
    oc_buf_free(&xb);
    oc_graph_free(g);
}

/* A training step: the loss reads the param's value at the start of the
 * step, the assign writes the update at its end, and no gradient flows
 * through the assign. */
Test(autodiff, assign_in_a_training_step)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor p = oc_param(g, "p", OC_F64, OC_SHAPE(3), OC_INIT_CONST, 0.5, 0);
    oc_tensor q = oc_param(g, "q", OC_F64, OC_SHAPE(3), OC_INIT_CONST, 2.0, 0);
    /* an earlier assign whose output is read must not carry gradient to q */
    oc_tensor qa = oc_assign(g, q, oc_scale(g, q, 3.0));
    oc_tensor l = oc_sum(g, oc_add(g, oc_mul(g, oc_mul(g, p, p), x), qa), 1u, 0);
    int wrt[2] = {p.id, q.id}, gr[2];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 2, gr, &err), OC_OK, "%s", err.msg);
    cr_expect_eq(g->nodes[gr[1]]->op, OC_OP_CONST, "no gradient through assign");
    oc_assign(g, p, oc_sub(g, p, oc_scale(g, (oc_tensor){gr[0]}, 0.1)));
    oc_output(g, "loss", l);
    oc_output(g, "dp", (oc_tensor){gr[0]});
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);

    struct oc_buf xb = vec((double[]){1, 2, 3}, 3);
    struct oc_interp *it = oc_interp_new(g, 1);
    cr_assert_eq(oc_interp_set(it, "x", &xb, &err), OC_OK, "%s", err.msg);
    double pv[3] = {0.5, 0.5, 0.5};
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "%s", err.msg);
        const struct oc_buf *dp = oc_interp_output(it, "dp");
        const struct oc_buf *pn = oc_interp_named(it, "p");
        for (int i = 0; i < 3; i++) {
            double d = 2 * pv[i] * (i + 1);
            cr_expect(fabs(oc_buf_get(dp, i) - d) < 1e-12, "step %d dp[%d]", step, i);
            pv[i] -= 0.1 * d;
            cr_expect(fabs(oc_buf_get(pn, i) - pv[i]) < 1e-12, "step %d p[%d] = %g, want %g", step,
                      i, oc_buf_get(pn, i), pv[i]);
        }
    }
    oc_interp_free(it);
    oc_buf_free(&xb);
    oc_graph_free(g);
}

/* the reverse graph contains only primitives of ops.def and verifies */
Test(autodiff, reverse_graph_of_a_small_net_verifies)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 3, 6, 6));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(4, 3, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor fw = oc_param(g, "fw", OC_F32, OC_SHAPE(5, 4), OC_INIT_NORMAL, 0, 0.1);
    oc_tensor h = oc_relu(g, oc_conv2d(g, x, w, 2, 1));
    oc_tensor logits = oc_linear(g, oc_global_avg_pool(g, h), fw, OC_NONE);
    oc_tensor l = oc_cross_entropy(g, logits, lab);
    int wrt[3] = {w.id, fw.id, x.id}, gr[3];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 3, gr, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);
    int has_gi = 0, has_gw = 0;
    for (int i = 0; i < g->nnodes; i++) {
        has_gi |= g->nodes[i]->op == OC_OP_CONV2D_GRAD_INPUT;
        has_gw |= g->nodes[i]->op == OC_OP_CONV2D_GRAD_WEIGHT;
    }
    cr_expect(has_gi && has_gw, "conv2d's VJP uses conv2d_grad_input/_weight");
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(g->nodes[gr[i]]->dtype, OC_F32);
        cr_expect(oc_shape_eq(&g->nodes[gr[i]]->shape, &g->nodes[wrt[i]]->shape));
    }
    oc_graph_free(g);
}

/* The reverse graph goes through simplify like the forward one (DSL ->
 * autodiff -> simplify -> fuse): it shrinks and its values do not change. */
Test(autodiff, reverse_graph_survives_simplify)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(2, 3, 5, 5));
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(2));
    oc_tensor w = oc_param(g, "w", OC_F64, OC_SHAPE(4, 3, 3, 3), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor fw = oc_param(g, "fw", OC_F64, OC_SHAPE(5, 4), OC_INIT_NORMAL, 0, 0.5);
    oc_tensor h = oc_relu(g, oc_batchnorm_layer(g, "bn", oc_conv2d(g, x, w, 1, 1), 1));
    oc_tensor l = oc_cross_entropy(g, oc_linear(g, oc_global_avg_pool(g, h), fw, OC_NONE), lab);
    int wrt[4] = {w.id, fw.id, x.id, oc_graph_find_named(g, "bn.weight")}, gr[4];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 4, gr, &err), OC_OK, "%s", err.msg);
    static const char *names[4] = {"dw", "dfw", "dx", "dgamma"};
    for (int i = 0; i < 4; i++) oc_output(g, names[i], (oc_tensor){gr[i]});
    struct oc_buf xb = oc_test_random(OC_F64, OC_SHAPE(2, 3, 5, 5), 7, -1, 1);
    struct oc_buf lb = oc_test_random(OC_I32, OC_SHAPE(2), 8, 0, 5);
    struct oc_test_bind b[2] = {{"x", &xb}, {"labels", &lb}};
    struct oc_buf before[4];
    for (int i = 0; i < 4; i++) before[i] = oc_test_run(g, 1, b, 2, names[i]);
    int n0 = g->nnodes;
    cr_assert_eq(oc_pass_simplify(&g, &err), OC_OK, "%s", err.msg);
    cr_expect_lt(g->nnodes, n0, "simplify removes something from the reverse graph");
    for (int i = 0; i < 4; i++) {
        struct oc_buf after = oc_test_run(g, 1, b, 2, names[i]);
        cr_expect(oc_test_allclose(names[i], &after, &before[i], 0, 0), "%s changed", names[i]);
        oc_buf_free(&after);
        oc_buf_free(&before[i]);
    }
    oc_buf_free(&xb);
    oc_buf_free(&lb);
    oc_graph_free(g);
}

/* d loss / d h for an intermediate h needs nothing upstream of h */
Test(autodiff, intermediate_wrt_builds_nothing_upstream)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor lab = oc_input(g, "labels", OC_I32, OC_SHAPE(3));
    oc_tensor x = oc_input(g, "x", OC_F64, OC_SHAPE(3));
    oc_tensor c = oc_cast(g, lab, OC_F64);
    oc_tensor h = oc_log(g, x); /* log's own rule would read x */
    oc_tensor l = oc_sum(g, oc_add(g, oc_mul(g, h, h), oc_mul(g, c, c)), 1u, 0);
    int before = g->nnodes;
    int wrt[2] = {h.id, c.id}, gr[2];
    struct oc_err err = {0};
    cr_assert_eq(oc_pass_autodiff(g, l.id, -1, wrt, 2, gr, &err), OC_OK, "%s", err.msg);
    for (int i = before; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i]->ninputs; k++) {
            int in = g->nodes[i]->inputs[k];
            cr_expect(in != x.id && in != lab.id, "node %%%d (%s) reads %%%d upstream of the request",
                      i, oc_op_name(g->nodes[i]->op), in);
        }
    struct oc_buf xb = vec((double[]){0.5, 1, 2}, 3);
    struct oc_buf lb = oc_test_buf(OC_I32, OC_SHAPE(3), (double[]){1, 2, 3});
    struct oc_test_bind b[2] = {{"x", &xb}, {"labels", &lb}};
    struct oc_buf dh = eval_node(g, gr[0], b, 2), dc = eval_node(g, gr[1], b, 2);
    expect_vals("d/dh", &dh, (double[]){2 * log(0.5), 0, 2 * log(2.0)}, 3);
    expect_vals("d/dc", &dc, (double[]){2, 4, 6}, 3);
    oc_buf_free(&dh);
    oc_buf_free(&dc);
    oc_buf_free(&xb);
    oc_buf_free(&lb);
    oc_graph_free(g);
}
