/* test-simplify.c - the simplification passes (passes/simplify.c): each
 * rewrite on a small DSL graph, checked by the op counts in the printed graph
 * and by the interpreter giving the same outputs before and after; the
 * rewrites that must NOT happen (x*0, log(exp x)); a randomized suite of
 * seeded graphs mixing elementwise, broadcast, layout and reduction ops with
 * shared subexpressions and dead branches; idempotence; the id map. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../passes/passes.h"
#include "../../passes/simplify.h"
#include "../helpers/helpers.h"

/* ---------------------------------------------------------------- helpers */

/* Occurrences of op in the printed graph ("%3 = mul %1, %2 : f64[4]"). */
static int count_op(const struct oc_graph *g, const char *op)
{
    char *s = oc_graph_print_str(g);
    cr_assert_not_null(s);
    int n = 0;
    size_t len = strlen(op);
    for (char *line = s; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (line[0] != '%') continue;
        char *eq = strstr(line, " = ");
        if (!eq) continue;
        char *t = eq + 3;
        if (!strncmp(t, op, len) && (t[len] == ' ' || t[len] == '\n' || t[len] == 0)) n++;
    }
    free(s);
    return n;
}

static void verify(const struct oc_graph *g)
{
    struct oc_err e = {0};
    cr_assert_eq(oc_graph_verify(g, &e), OC_OK, "verify: %s", e.msg);
}

typedef enum oc_status (*pass_fn)(struct oc_graph **, struct oc_err *);

/* A copy of g with `pass` applied (and verified); g itself is untouched. */
static struct oc_graph *after(const struct oc_graph *g, pass_fn pass)
{
    cr_assert_eq(oc_graph_status(g), OC_OK, "build: %s", g->err.msg);
    verify(g);
    struct oc_graph *c = oc_graph_clone(g);
    cr_assert_not_null(c);
    struct oc_err e = {0};
    cr_assert_eq(pass(&c, &e), OC_OK, "pass: %s", e.msg);
    verify(c);
    return c;
}

static struct oc_graph *simplified(const struct oc_graph *g) { return after(g, oc_pass_simplify); }

/* identities then dce: what a single rewrite leaves */
static enum oc_status ident_dce(struct oc_graph **g, struct oc_err *e)
{
    enum oc_status st = oc_pass_identities(g, e);
    return st ? st : oc_pass_dce(g, e);
}

static enum oc_status fold_dce(struct oc_graph **g, struct oc_err *e)
{
    enum oc_status st = oc_pass_fold(g, e);
    return st ? st : oc_pass_dce(g, e);
}

static enum oc_status cse_dce(struct oc_graph **g, struct oc_err *e)
{
    enum oc_status st = oc_pass_cse(g, e);
    return st ? st : oc_pass_dce(g, e);
}

/* Runs g in the interpreter with every input bound to random values drawn
 * from [lo, hi) (seeded by the input's name, so two graphs with the same
 * inputs get the same values), the first nspecial elements of every float
 * input replaced by special[]. Returns the interpreter (caller frees). */
static struct oc_interp *run(const struct oc_graph *g, int f64, uint64_t seed, double lo,
                             double hi, const double *special, int nspecial)
{
    struct oc_interp *it = oc_interp_new(g, f64);
    cr_assert_not_null(it);
    struct oc_err e = {0};
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_INPUT) continue;
        uint64_t s = oc_hash64(n->attrs.name, strlen(n->attrs.name), seed);
        struct oc_buf b = n->dtype == OC_I32 ? oc_test_random(n->dtype, n->shape, s, 0, 4)
                                             : oc_test_random(n->dtype, n->shape, s, lo, hi);
        if (oc_dtype_is_float(n->dtype))
            for (int k = 0; k < nspecial && k < oc_shape_numel(&n->shape); k++)
                oc_buf_set(&b, k, special[k]);
        cr_assert_eq(oc_interp_set(it, n->attrs.name, &b, &e), OC_OK, "%s", e.msg);
        oc_buf_free(&b);
    }
    cr_assert_eq(oc_interp_run(it, 99, &e), OC_OK, "interp: %s", e.msg);
    return it;
}

/* Every output of `a` has the same value in `b` (same name), within rtol.
 * rtol 0 asks for equality (NaN matching NaN). */
static void same_outputs_ex(const struct oc_graph *a, const struct oc_graph *b, int f64,
                            uint64_t seed, double lo, double hi, const double *special,
                            int nspecial, double rtol)
{
    cr_assert_eq(a->noutputs, b->noutputs);
    struct oc_interp *ia = run(a, f64, seed, lo, hi, special, nspecial);
    struct oc_interp *ib = run(b, f64, seed, lo, hi, special, nspecial);
    for (int i = 0; i < a->noutputs; i++) {
        const char *name = a->outputs[i].name;
        const struct oc_buf *va = oc_interp_output(ia, name), *vb = oc_interp_output(ib, name);
        cr_assert_not_null(va);
        cr_assert_not_null(vb, "output %s lost", name);
        cr_assert(oc_test_allclose(name, vb, va, rtol, 0), "output %s differs after the pass",
                  name);
    }
    /* assigns must write the same values */
    for (int i = 0; i < a->nnodes; i++) {
        const struct oc_node *n = a->nodes[i];
        if (n->op != OC_OP_PARAM && n->op != OC_OP_STATE) continue;
        const struct oc_buf *va = oc_interp_named(ia, n->attrs.name);
        const struct oc_buf *vb = oc_interp_named(ib, n->attrs.name);
        cr_assert(va && vb);
        cr_assert(oc_test_allclose(n->attrs.name, vb, va, rtol, 0), "state %s differs",
                  n->attrs.name);
    }
    oc_interp_free(ia);
    oc_interp_free(ib);
}

static void same_outputs(const struct oc_graph *a, const struct oc_graph *b)
{
    same_outputs_ex(a, b, 1, 7, -2, 2, NULL, 0, 0);
}

static const struct oc_node *out_node(const struct oc_graph *g, const char *name)
{
    int k = oc_graph_find_output(g, name);
    cr_assert_geq(k, 0, "no output %s", name);
    return g->nodes[g->outputs[k].node];
}

static int printed_equal(const struct oc_graph *a, const struct oc_graph *b)
{
    char *sa = oc_graph_print_str(a), *sb = oc_graph_print_str(b);
    cr_assert(sa && sb);
    int eq = !strcmp(sa, sb);
    if (!eq) fprintf(stderr, "--- first\n%s--- second\n%s", sa, sb);
    free(sa);
    free(sb);
    return eq;
}

#define F64 OC_F64

/* ---------------------------------------------------------------- fold */

Test(fold, const_chain_becomes_one_const)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 3));
    double d[6] = {0.5, -1, 2, 3.25, 0, 1e-3};
    oc_tensor c = oc_const_data(g, F64, OC_SHAPE(2, 3), d);
    oc_tensor k = oc_exp(g, oc_scale(g, c, 2.0)); /* mul, broadcast, exp: all constant */
    oc_output(g, "y", oc_add(g, x, k));
    struct oc_graph *s = after(g, fold_dce);
    cr_assert_eq(count_op(g, "exp"), 1);
    cr_assert_eq(count_op(s, "exp"), 0);
    cr_assert_eq(count_op(s, "mul"), 0);
    cr_assert_eq(count_op(s, "broadcast"), 0);
    cr_assert_eq(count_op(s, "add"), 1);
    cr_assert_eq(count_op(s, "const"), 1);
    cr_assert_eq(s->nnodes, 3);
    same_outputs(g, s);
    /* the folded value is the interpreter's */
    const struct oc_node *cn = s->nodes[s->nodes[s->outputs[0].node]->inputs[1]];
    cr_assert_eq(cn->op, OC_OP_CONST);
    cr_assert_not_null(cn->attrs.data);
    for (int i = 0; i < 6; i++) cr_assert_eq(cn->attrs.data[i], exp(d[i] * 2.0));
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, splat_result_is_splat_even_when_large)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(100, 100));
    oc_tensor c = oc_const_fill(g, F64, OC_SHAPE(100, 100), 0.25);
    oc_tensor k = oc_sqrt(g, oc_add(g, c, c)); /* 10000 elements, all sqrt(0.5) */
    oc_output(g, "y", oc_mul(g, x, k));
    struct oc_graph *s = after(g, fold_dce);
    cr_assert_eq(count_op(s, "sqrt"), 0);
    cr_assert_eq(count_op(s, "add"), 0);
    const struct oc_node *m = out_node(s, "y");
    const struct oc_node *kc = s->nodes[m->inputs[1]];
    cr_assert_eq(kc->op, OC_OP_CONST);
    cr_assert_null(kc->attrs.data, "a splat result must stay a splat const");
    cr_assert_eq(kc->attrs.value, sqrt(0.5));
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, large_nonsplat_result_is_not_folded)
{
    struct oc_graph *g = oc_graph_new("t");
    int64_t n = OC_FOLD_MAX_NUMEL + 1;
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) d[i] = (double)i / (double)n;
    oc_tensor c = oc_const_data(g, F64, OC_SHAPE(n), d);
    oc_output(g, "big", oc_exp(g, c));
    /* the same values, small enough to fold */
    oc_tensor c2 = oc_const_data(g, F64, OC_SHAPE(OC_FOLD_MAX_NUMEL), d);
    oc_output(g, "small", oc_exp(g, c2));
    free(d);
    struct oc_graph *s = after(g, fold_dce);
    cr_assert_eq(out_node(s, "big")->op, OC_OP_EXP);
    cr_assert_eq(out_node(s, "small")->op, OC_OP_CONST);
    cr_assert_eq(count_op(s, "exp"), 1);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, reductions_layout_and_integers)
{
    struct oc_graph *g = oc_graph_new("t");
    double d[12];
    for (int i = 0; i < 12; i++) d[i] = (i * 7) % 5 - 2.0;
    oc_tensor c = oc_const_data(g, F64, OC_SHAPE(3, 4), d);
    int perm[2] = {1, 0};
    oc_output(g, "sum", oc_sum(g, oc_permute(g, c, perm), 1, 0));
    oc_output(g, "max", oc_reduce_max(g, oc_reshape(g, c, OC_SHAPE(2, 6)), 2, 1));
    oc_output(g, "arg", oc_argmax(g, c, 1, 0));
    oc_tensor ci = oc_cast(g, c, OC_I32);
    oc_output(g, "int", oc_mul(g, ci, ci));
    oc_output(g, "oh", oc_one_hot(g, oc_argmax(g, c, 0, 0), 3, F64));
    struct oc_graph *s = after(g, fold_dce);
    for (int i = 0; i < s->noutputs; i++)
        cr_assert_eq(s->nodes[s->outputs[i].node]->op, OC_OP_CONST, "output %s not folded",
                     s->outputs[i].name);
    cr_assert_eq(s->nnodes, s->noutputs);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, f32_constants_fold_in_f32)
{
    /* folded values are what an f32 machine computes: the f32-mode
     * interpreter gives the same bits before and after */
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4));
    double d[4] = {0.1, 0.2, 0.3, 1.0 / 3.0};
    oc_tensor c = oc_const_data(g, OC_F32, OC_SHAPE(4), d);
    oc_tensor k = oc_tanh(g, oc_div(g, oc_exp(g, c), oc_add_scalar(g, c, 0.7)));
    oc_output(g, "y", oc_add(g, x, k));
    struct oc_graph *s = simplified(g);
    cr_assert_eq(count_op(s, "tanh"), 0);
    same_outputs_ex(g, s, 0, 3, -1, 1, NULL, 0, 0);
    const struct oc_node *kc = s->nodes[out_node(s, "y")->inputs[1]];
    cr_assert_eq(kc->op, OC_OP_CONST);
    for (int i = 0; i < 4; i++) cr_assert_eq(kc->attrs.data[i], (double)(float)kc->attrs.data[i]);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, equal_data_const_becomes_splat)
{
    struct oc_graph *g = oc_graph_new("t");
    double d[3] = {2, 2, 2};
    oc_output(g, "c", oc_const_data(g, F64, OC_SHAPE(3), d));
    struct oc_graph *s = after(g, oc_pass_fold);
    const struct oc_node *c = out_node(s, "c");
    cr_assert_null(c->attrs.data);
    cr_assert_eq(c->attrs.value, 2.0);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(fold, rng_and_sources_are_not_folded)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor ctr = oc_const_fill(g, OC_I32, OC_SCALAR, 3);
    oc_output(g, "r", oc_rng_uniform(g, F64, OC_SHAPE(4), 11, ctr));
    oc_tensor p = oc_param(g, "p", F64, OC_SHAPE(2), OC_INIT_ONES, 0, 0);
    oc_output(g, "p2", oc_neg(g, p));
    struct oc_graph *s = after(g, fold_dce);
    cr_assert_eq(count_op(s, "rng_uniform"), 1);
    cr_assert_eq(count_op(s, "neg"), 1);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- identities */

Test(identities, neutral_elements)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3, 4));
    oc_output(g, "x_mul_1", oc_scale(g, x, 1.0));
    oc_output(g, "one_mul_x", oc_mul(g, oc_scalar(g, F64, 1.0), x));
    oc_output(g, "x_add_0", oc_add_scalar(g, x, 0.0));
    oc_output(g, "zero_add_x", oc_add(g, oc_const_fill(g, F64, OC_SHAPE(3, 4), 0.0), x));
    oc_output(g, "x_sub_0", oc_sub(g, x, oc_scalar(g, F64, 0.0)));
    oc_output(g, "x_add_m0", oc_add_scalar(g, x, -0.0));
    oc_output(g, "x_div_1", oc_div(g, x, oc_scalar(g, F64, 1.0)));
    oc_output(g, "negneg", oc_neg(g, oc_neg(g, x)));
    struct oc_graph *s = after(g, ident_dce);
    for (int i = 0; i < s->noutputs; i++)
        cr_assert_eq(s->nodes[s->outputs[i].node]->op, OC_OP_INPUT, "%s was not rewritten to x",
                     s->outputs[i].name);
    cr_assert_eq(s->nnodes, 1);
    cr_assert_eq(count_op(s, "mul") + count_op(s, "add") + count_op(s, "sub") +
                     count_op(s, "div") + count_op(s, "neg"),
                 0);
    double special[] = {INFINITY, -INFINITY, -0.0, 0.0, NAN};
    same_outputs_ex(g, s, 1, 5, -3, 3, special, 5, 0);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, integer_neutral_elements)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", OC_I32, OC_SHAPE(5));
    oc_output(g, "a", oc_add(g, oc_scale(g, x, 1.0), oc_scalar(g, OC_I32, 0.4))); /* 0.4 -> 0 */
    oc_output(g, "b", oc_sub(g, oc_neg(g, oc_neg(g, x)), oc_scalar(g, OC_I32, 0)));
    struct oc_graph *s = after(g, ident_dce);
    cr_assert_eq(out_node(s, "a")->op, OC_OP_INPUT);
    cr_assert_eq(out_node(s, "b")->op, OC_OP_INPUT);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, value_changing_rewrites_are_not_done)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(6));
    oc_output(g, "x_mul_0", oc_scale(g, x, 0.0));
    oc_output(g, "exp_log", oc_exp(g, oc_log(g, x)));
    oc_output(g, "log_exp", oc_log(g, oc_exp(g, x)));
    oc_output(g, "x_sub_x", oc_sub(g, x, x));
    oc_output(g, "zero_sub_x", oc_sub(g, oc_scalar(g, F64, 0.0), x));
    struct oc_graph *s = simplified(g);
    cr_assert_eq(out_node(s, "x_mul_0")->op, OC_OP_MUL);
    cr_assert_eq(out_node(s, "exp_log")->op, OC_OP_EXP);
    cr_assert_eq(out_node(s, "log_exp")->op, OC_OP_LOG);
    cr_assert_eq(out_node(s, "x_sub_x")->op, OC_OP_SUB);
    cr_assert_eq(out_node(s, "zero_sub_x")->op, OC_OP_SUB);
    /* NaN * 0 is NaN, inf * 0 is NaN, -1 * 0 is -0; log(exp(1e-20)) is 0 */
    double special[] = {NAN};
    same_outputs_ex(g, s, 1, 1, -2, 2, special, 1, 0);
    double special2[] = {INFINITY, -1.0, 1e-20, 800.0, NAN, -0.0};
    same_outputs_ex(g, s, 1, 1, -2, 2, special2, 6, 0);
    struct oc_interp *it = run(s, 1, 1, -2, 2, special, 1);
    cr_assert(isnan(oc_buf_get(oc_interp_output(it, "x_mul_0"), 0)));
    oc_interp_free(it);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, broadcast_rules)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 3, 4));
    oc_tensor v = oc_input(g, "v", F64, OC_SHAPE(4));
    /* broadcast of a splat const -> a splat const of the target shape */
    oc_output(g, "splat", oc_broadcast(g, oc_scalar(g, F64, 3.5), OC_SHAPE(2, 3, 4)));
    /* broadcast of a broadcast -> one broadcast */
    oc_tensor b1 = oc_broadcast(g, v, OC_SHAPE(3, 4));
    oc_output(g, "bb", oc_add(g, x, oc_broadcast(g, b1, OC_SHAPE(2, 3, 4))));
    /* broadcast to the same shape -> x */
    oc_output(g, "same", oc_broadcast(g, x, OC_SHAPE(2, 3, 4)));
    struct oc_graph *s = after(g, ident_dce);
    const struct oc_node *sp = out_node(s, "splat");
    cr_assert_eq(sp->op, OC_OP_CONST);
    cr_assert_null(sp->attrs.data);
    cr_assert_eq(sp->attrs.value, 3.5);
    struct oc_shape want = OC_SHAPE(2, 3, 4);
    cr_assert(oc_shape_eq(&sp->shape, &want));
    cr_assert_eq(out_node(s, "same")->op, OC_OP_INPUT);
    cr_assert_eq(count_op(s, "broadcast"), 1);
    const struct oc_node *bc = s->nodes[out_node(s, "bb")->inputs[1]];
    cr_assert_eq(bc->op, OC_OP_BROADCAST);
    cr_assert_eq(s->nodes[bc->inputs[0]]->op, OC_OP_INPUT);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, reshape_rules)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 6));
    oc_tensor r1 = oc_reshape(g, x, OC_SHAPE(3, 4));
    oc_tensor r2 = oc_reshape(g, r1, OC_SHAPE(12));
    oc_output(g, "rr", oc_reshape(g, r2, OC_SHAPE(4, 3)));
    oc_output(g, "back", oc_reshape(g, r1, OC_SHAPE(2, 6)) /* DSL keeps it: r1 is [3,4] */);
    /* a reshape to its operand's shape, built without the DSL's shortcut */
    struct oc_shape sh = OC_SHAPE(2, 6);
    oc_tensor same = oc_graph_add(g, OC_OP_RESHAPE, &x, 1, NULL, F64, &sh);
    oc_output(g, "same", oc_exp(g, same));
    struct oc_graph *s = after(g, ident_dce);
    cr_assert_eq(count_op(s, "reshape"), 1);
    const struct oc_node *rr = out_node(s, "rr");
    cr_assert_eq(rr->op, OC_OP_RESHAPE);
    cr_assert_eq(s->nodes[rr->inputs[0]]->op, OC_OP_INPUT);
    cr_assert_eq(out_node(s, "back")->op, OC_OP_INPUT);
    cr_assert_eq(s->nodes[out_node(s, "same")->inputs[0]]->op, OC_OP_INPUT);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, permute_rules)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 3, 4));
    int p[3] = {2, 0, 1}, q[3] = {0, 2, 1}, inv[3] = {1, 2, 0}, id[3] = {0, 1, 2};
    oc_output(g, "pq", oc_permute(g, oc_permute(g, x, p), q));
    oc_output(g, "pinv", oc_permute(g, oc_permute(g, x, p), inv));
    oc_output(g, "id", oc_permute(g, x, id));
    oc_output(g, "ppp", oc_permute(g, oc_permute(g, oc_permute(g, x, p), p), q));
    struct oc_graph *s = after(g, ident_dce);
    cr_assert_eq(out_node(s, "pinv")->op, OC_OP_INPUT);
    cr_assert_eq(out_node(s, "id")->op, OC_OP_INPUT);
    cr_assert_eq(count_op(s, "permute"), 2);
    const struct oc_node *pq = out_node(s, "pq");
    cr_assert_eq(pq->op, OC_OP_PERMUTE);
    cr_assert_eq(s->nodes[pq->inputs[0]]->op, OC_OP_INPUT);
    /* composed: output axis i is x's axis p[q[i]] */
    for (int i = 0; i < 3; i++) cr_assert_eq(pq->attrs.perm[i], p[q[i]]);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(identities, cast_select_slice_pad_concat)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3, 4));
    oc_tensor y = oc_input(g, "y", F64, OC_SHAPE(3, 4));
    struct oc_shape sh = OC_SHAPE(3, 4);
    oc_output(g, "cast", oc_graph_add(g, OC_OP_CAST, &x, 1, NULL, F64, &sh));
    oc_output(g, "sel1", oc_select(g, oc_scalar(g, F64, 2.0), x, y));
    oc_output(g, "sel0", oc_select(g, oc_scalar(g, F64, -0.0), x, y));
    oc_output(g, "selnan", oc_select(g, oc_scalar(g, F64, NAN), x, y));
    double nz[4] = {1, -2, 0.5, 3};
    oc_output(g, "seldata", oc_select(g, oc_const_data(g, F64, OC_SHAPE(4), nz), x, y));
    oc_output(g, "selsame", oc_select(g, oc_lt(g, x, y), y, y));
    int64_t st[2] = {0, 0}, en[2] = {3, 4}, z[2] = {0, 0};
    oc_output(g, "slice", oc_slice(g, x, st, en, NULL));
    oc_output(g, "pad", oc_pad(g, x, z, z, 0.0));
    oc_output(g, "concat", oc_concat(g, &x, 1, 0));
    /* not identities: a real slice and a mixed condition */
    int64_t en2[2] = {2, 4};
    oc_output(g, "slice2", oc_slice(g, x, st, en2, NULL));
    double mixed[4] = {1, 0, 1, 0};
    oc_output(g, "selmixed", oc_select(g, oc_const_data(g, F64, OC_SHAPE(4), mixed), x, y));
    struct oc_graph *s = after(g, ident_dce);
    const char *to_x[] = {"cast", "sel1", "selnan", "seldata", "slice", "pad", "concat"};
    for (unsigned i = 0; i < sizeof to_x / sizeof *to_x; i++) {
        const struct oc_node *n = out_node(s, to_x[i]);
        cr_assert(n->op == OC_OP_INPUT && !strcmp(n->attrs.name, "x"), "%s should be x", to_x[i]);
    }
    cr_assert_str_eq(out_node(s, "sel0")->attrs.name, "y");
    cr_assert_str_eq(out_node(s, "selsame")->attrs.name, "y");
    cr_assert_eq(out_node(s, "slice2")->op, OC_OP_SLICE);
    cr_assert_eq(out_node(s, "selmixed")->op, OC_OP_SELECT);
    cr_assert_eq(count_op(s, "select"), 1);
    cr_assert_eq(count_op(s, "cast"), 0);
    cr_assert_eq(count_op(s, "pad") + count_op(s, "concat"), 0);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- cse */

Test(cse, merges_identical_nodes)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3));
    oc_tensor y = oc_input(g, "y", F64, OC_SHAPE(3));
    oc_tensor e1 = oc_exp(g, x), e2 = oc_exp(g, x);
    oc_output(g, "a", oc_mul(g, oc_add(g, e1, y), oc_add(g, y, e2))); /* add commutes */
    oc_output(g, "m", oc_sub(g, oc_max(g, x, y), oc_max(g, y, x)));  /* max does not */
    double d[3] = {1, 2, 3};
    oc_output(g, "c", oc_add(g, oc_const_data(g, F64, OC_SHAPE(3), d),
                             oc_const_data(g, F64, OC_SHAPE(3), d)));
    oc_output(g, "z", oc_sub(g, oc_const_fill(g, F64, OC_SHAPE(3), 0.0),
                             oc_const_fill(g, F64, OC_SHAPE(3), -0.0)));
    oc_output(g, "s", oc_add(g, oc_sum(g, x, 1, 0), oc_sum(g, x, 1, 1)));
    struct oc_graph *s = after(g, cse_dce);
    cr_assert_eq(count_op(s, "exp"), 1);
    cr_assert_eq(count_op(s, "add"), 3); /* e+y merged; c and s adds stay */
    cr_assert_eq(count_op(s, "max"), 2);
    cr_assert_eq(count_op(s, "sum"), 2);  /* keepdims differs */
    const struct oc_node *a = out_node(s, "a");
    cr_assert_eq(a->inputs[0], a->inputs[1]);
    const struct oc_node *c = out_node(s, "c");
    cr_assert_eq(c->inputs[0], c->inputs[1]);
    const struct oc_node *z = out_node(s, "z");
    cr_assert_neq(z->inputs[0], z->inputs[1], "0.0 and -0.0 are different constants");
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(cse, attributes_distinguish_nodes)
{
    /* same op, operand, dtype and shape: only an attribute differs */
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 2, 2));
    int p1[3] = {1, 0, 2}, p2[3] = {0, 2, 1};
    oc_output(g, "perm", oc_sub(g, oc_permute(g, x, p1), oc_permute(g, x, p2)));
    oc_output(g, "axes", oc_sub(g, oc_sum(g, x, 1, 0), oc_sum(g, x, 2, 0)));
    oc_output(g, "max", oc_sub(g, oc_reduce_max(g, x, 1, 0), oc_reduce_max(g, x, 4, 0)));
    int64_t a0[3] = {0, 0, 0}, a1[3] = {1, 0, 0}, e1[3] = {1, 2, 2}, e2[3] = {2, 2, 2};
    oc_output(g, "slice", oc_sub(g, oc_slice(g, x, a0, e1, NULL), oc_slice(g, x, a1, e2, NULL)));
    oc_output(g, "pad", oc_sub(g, oc_pad(g, x, a1, a0, 0.0), oc_pad(g, x, a0, a1, 0.0)));
    oc_output(g, "padv", oc_sub(g, oc_pad(g, x, a1, a0, 0.0), oc_pad(g, x, a1, a0, -0.0)));
    oc_tensor m = oc_input(g, "m", F64, OC_SHAPE(3, 3));
    oc_output(g, "mm", oc_sub(g, oc_matmul(g, m, m, 0, 1), oc_matmul(g, m, m, 1, 0)));
    /* and the same attributes do merge */
    oc_output(g, "same", oc_sub(g, oc_permute(g, x, p1), oc_permute(g, x, p1)));
    struct oc_graph *s = after(g, cse_dce);
    const char *differ[] = {"perm", "axes", "max", "slice", "pad", "padv", "mm"};
    for (unsigned i = 0; i < sizeof differ / sizeof *differ; i++) {
        const struct oc_node *n = out_node(s, differ[i]);
        cr_assert_neq(n->inputs[0], n->inputs[1], "%s: different attributes merged", differ[i]);
    }
    const struct oc_node *same = out_node(s, "same");
    cr_assert_eq(same->inputs[0], same->inputs[1]);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(cse, rng_sources_and_assigns)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor ctr = oc_input(g, "step", OC_I32, OC_SCALAR);
    oc_tensor r1 = oc_rng_normal(g, F64, OC_SHAPE(4), 5, ctr);
    oc_tensor r2 = oc_rng_normal(g, F64, OC_SHAPE(4), 5, ctr); /* the same draw */
    oc_tensor r3 = oc_rng_normal(g, F64, OC_SHAPE(4), 6, ctr); /* another seed */
    oc_tensor c1 = oc_add_scalar(g, ctr, 1);
    oc_tensor r4 = oc_rng_normal(g, F64, OC_SHAPE(4), 5, c1); /* another counter */
    oc_output(g, "r", oc_add(g, oc_add(g, r1, r2), oc_add(g, r3, r4)));
    oc_tensor a = oc_input(g, "a", F64, OC_SHAPE(4));
    oc_tensor b = oc_input(g, "b", F64, OC_SHAPE(4));
    oc_tensor st = oc_state(g, "st", F64, OC_SHAPE(4), OC_INIT_ZEROS, 0);
    oc_tensor v = oc_add(g, a, b);
    oc_assign(g, st, v);
    oc_assign(g, st, oc_add(g, a, b));
    oc_output(g, "ab", oc_mul(g, a, b));
    struct oc_graph *s = after(g, cse_dce);
    cr_assert_eq(count_op(s, "rng_normal"), 3);
    cr_assert_eq(count_op(s, "input"), 3);
    cr_assert_eq(count_op(s, "assign"), 2);
    cr_assert_eq(count_op(s, "add"), 5); /* step+1, r1+r2, r3+r4, sum, a+b (once) */
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- dce */

Test(dce, removes_dead_keeps_sources_and_assigns)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3));
    oc_input(g, "unused", F64, OC_SHAPE(2));
    oc_param(g, "w_unused", F64, OC_SHAPE(2), OC_INIT_NORMAL, 0, 1);
    oc_tensor st = oc_state(g, "count", F64, OC_SCALAR, OC_INIT_ZEROS, 0);
    oc_exp(g, oc_log(g, x)); /* dead */
    oc_tensor keep = oc_sigmoid(g, x);
    oc_tanh(g, keep); /* dead user of a live node */
    oc_assign(g, st, oc_add_scalar(g, st, 1.0));
    oc_output(g, "y", keep);
    struct oc_graph *s = after(g, oc_pass_dce);
    cr_assert_eq(count_op(s, "exp") + count_op(s, "log") + count_op(s, "tanh"), 0);
    cr_assert_eq(count_op(s, "input"), 2);
    cr_assert_eq(count_op(s, "param"), 1);
    cr_assert_eq(count_op(s, "state"), 1);
    cr_assert_eq(count_op(s, "assign"), 1);
    cr_assert_eq(count_op(s, "add"), 1);
    cr_assert_eq(count_op(s, "sigmoid"), 1);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(dce, graph_with_only_assigns)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor st = oc_state(g, "m", F64, OC_SHAPE(3), OC_INIT_CONST, 2.0);
    oc_tensor p = oc_param(g, "p", F64, OC_SHAPE(3), OC_INIT_UNIFORM, -1, 1);
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3));
    oc_exp(g, x); /* dead */
    oc_assign(g, st, oc_add(g, oc_scale(g, st, 0.9), oc_scale(g, oc_mul(g, p, x), 0.1)));
    oc_assign(g, p, oc_add_scalar(g, oc_scale(g, p, 1.0), 0.0)); /* p <- p */
    struct oc_graph *s = simplified(g);
    cr_assert_eq(s->noutputs, 0);
    cr_assert_eq(count_op(s, "assign"), 2);
    cr_assert_eq(count_op(s, "exp"), 0);
    cr_assert_eq(count_op(s, "state") + count_op(s, "param") + count_op(s, "input"), 3);
    /* the second assign now writes p into itself */
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i]->op == OC_OP_ASSIGN && s->nodes[s->nodes[i]->inputs[0]]->op == OC_OP_PARAM)
            cr_assert_eq(s->nodes[i]->inputs[0], s->nodes[i]->inputs[1]);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(dce, output_naming_an_input)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2));
    oc_output(g, "x_itself", x);
    oc_output(g, "x_again", oc_div(g, oc_scale(g, x, 1.0), oc_scalar(g, F64, 1.0)));
    oc_output(g, "c", oc_add(g, oc_scalar(g, F64, 1), oc_scalar(g, F64, 2)));
    struct oc_graph *s = simplified(g);
    cr_assert_eq(s->noutputs, 3);
    cr_assert_eq(out_node(s, "x_itself")->op, OC_OP_INPUT);
    cr_assert_eq(out_node(s, "x_again")->op, OC_OP_INPUT);
    const struct oc_node *c = out_node(s, "c");
    cr_assert_eq(c->op, OC_OP_CONST);
    cr_assert_eq(c->attrs.value, 3.0);
    cr_assert_eq(s->nnodes, 2);
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- simplify */

Test(simplify, x_times_zero_keeps_nan)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(4));
    oc_output(g, "y", oc_add(g, oc_scale(g, x, 0.0), oc_scalar(g, F64, 1.0)));
    /* a constant times zero has no NaN to lose: it folds */
    oc_output(g, "k", oc_scale(g, oc_scalar(g, F64, 5.0), 0.0));
    struct oc_graph *s = simplified(g);
    cr_assert_eq(count_op(s, "mul"), 1);
    cr_assert_eq(out_node(s, "k")->op, OC_OP_CONST);
    double special[] = {NAN, INFINITY, -INFINITY, 2.0};
    same_outputs_ex(g, s, 1, 9, -1, 1, special, 4, 0);
    struct oc_interp *it = run(s, 1, 9, -1, 1, special, 4);
    const struct oc_buf *y = oc_interp_output(it, "y");
    cr_assert(isnan(oc_buf_get(y, 0)) && isnan(oc_buf_get(y, 1)) && isnan(oc_buf_get(y, 2)));
    cr_assert_eq(oc_buf_get(y, 3), 1.0);
    oc_interp_free(it);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(simplify, labels_survive)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(3));
    oc_tensor h = oc_tanh(g, oc_scale(g, x, 1.0));
    g->nodes[h.id]->label = oc_arena_strdup(&g->arena, "block.act");
    oc_tensor c = oc_exp(g, oc_const_fill(g, F64, OC_SHAPE(3), 1.0));
    g->nodes[c.id]->label = oc_arena_strdup(&g->arena, "e");
    oc_output(g, "y", oc_mul(g, h, c));
    struct oc_graph *s = simplified(g);
    const struct oc_node *y = out_node(s, "y");
    const struct oc_node *a = s->nodes[y->inputs[0]], *b = s->nodes[y->inputs[1]];
    cr_assert_eq(a->op, OC_OP_TANH);
    cr_assert_str_eq(a->label, "block.act");
    cr_assert_eq(b->op, OC_OP_CONST);
    cr_assert_str_eq(b->label, "e");
    same_outputs(g, s);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(simplify, map_and_idempotence)
{
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(2, 3));
    oc_tensor a = oc_exp(g, oc_scale(g, x, 1.0));
    oc_tensor b = oc_exp(g, x);
    oc_tensor dead = oc_log(g, a);
    oc_output(g, "y", oc_add(g, a, b));
    int n0 = g->nnodes;
    struct oc_graph *s = oc_graph_clone(g);
    int *map = malloc(sizeof(int) * (size_t)n0);
    struct oc_err e = {0};
    cr_assert_eq(oc_pass_simplify_map(&s, map, &e), OC_OK, "%s", e.msg);
    verify(s);
    cr_assert_eq(map[dead.id], -1);
    cr_assert_eq(map[a.id], map[b.id], "cse merges a into b's node");
    cr_assert_eq(s->nodes[map[a.id]]->op, OC_OP_EXP);
    cr_assert_eq(map[x.id], 0);
    cr_assert_eq(map[g->outputs[0].node], s->outputs[0].node);
    cr_assert_eq(count_op(s, "exp"), 1);
    struct oc_graph *s2 = simplified(s);
    cr_assert(printed_equal(s, s2), "simplify is not idempotent");
    same_outputs(g, s);
    free(map);
    oc_graph_free(s2);
    oc_graph_free(s);
    oc_graph_free(g);
}

Test(simplify, gradient_graph)
{
    /* autodiff output is the main customer: zero gradients, broadcast
     * scalars, duplicated forward values */
    struct oc_graph *g = oc_graph_new("t");
    oc_tensor x = oc_input(g, "x", F64, OC_SHAPE(4, 3));
    oc_tensor w = oc_param(g, "w", F64, OC_SHAPE(3, 2), OC_INIT_NORMAL, 0, 0.5);
    oc_tensor b = oc_param(g, "b", F64, OC_SHAPE(2), OC_INIT_NORMAL, 0, 0.1);
    oc_tensor h = oc_add(g, oc_matmul(g, x, w, 0, 0), b);
    oc_tensor loss = oc_mean(g, oc_mul(g, oc_sigmoid(g, h), oc_tanh(g, h)), oc_all_axes(g, h), 0);
    oc_output(g, "loss", loss);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    int wrt[3] = {w.id, b.id, x.id}, grads[3];
    struct oc_err e = {0};
    cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, 3, grads, &e), OC_OK, "%s", e.msg);
    oc_output(g, "dw", (oc_tensor){grads[0]});
    oc_output(g, "db", (oc_tensor){grads[1]});
    oc_output(g, "dx", (oc_tensor){grads[2]});
    struct oc_graph *s = simplified(g);
    cr_assert_leq(s->nnodes, g->nnodes);
    same_outputs_ex(g, s, 1, 4, -1, 1, NULL, 0, 1e-12);
    struct oc_graph *s2 = simplified(s);
    cr_assert(printed_equal(s, s2));
    oc_graph_free(s2);
    oc_graph_free(s);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- randomized */

struct rgen {
    uint64_t s;
};

static uint64_t rnext(struct rgen *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rint_(struct rgen *r, int n) { return (int)(rnext(r) % (uint64_t)n); }

static const struct oc_shape *shp(struct oc_graph *g, oc_tensor t) { return &g->nodes[t.id]->shape; }

static int broadcastable(const struct oc_shape *a, const struct oc_shape *b)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
    }
    return 1;
}

/* a can be broadcast to exactly b */
static int broadcasts_to(const struct oc_shape *a, const struct oc_shape *b)
{
    if (a->rank > b->rank) return 0;
    for (int i = 0; i < a->rank; i++) {
        int64_t da = a->dim[i], db = b->dim[i + b->rank - a->rank];
        if (da != db && da != 1) return 0;
    }
    return 1;
}

#define POOL 96

/* A random f64 graph over inputs x[B,C], y[B,C], v[C], s[]: elementwise
 * ops (some guarded, some free to make inf/NaN), numpy broadcasts, layout
 * chains, reductions, selects, constants (0, 1, -0 and data), exact
 * duplicates of earlier nodes (for cse), nodes nobody reads (for dce), a
 * state assign, and 1-4 outputs. */
static struct oc_graph *random_graph(uint64_t seed)
{
    struct rgen r = {seed * 1000003u + 1};
    struct oc_graph *g = oc_graph_new("rand");
    int64_t B = 1 + rint_(&r, 3), C = 1 + rint_(&r, 4);
    oc_tensor pool[POOL];
    int np = 0;
    pool[np++] = oc_input(g, "x", F64, OC_SHAPE(B, C));
    pool[np++] = oc_input(g, "y", F64, OC_SHAPE(B, C));
    pool[np++] = oc_input(g, "v", F64, OC_SHAPE(C));
    pool[np++] = oc_input(g, "s", F64, OC_SCALAR);
    static const double consts[] = {0.0, 1.0, -0.0, 2.0, 0.5, -1.0};
    for (int i = 0; i < 3; i++) pool[np++] = oc_scalar(g, F64, consts[rint_(&r, 6)]);
    double d[16];
    for (int i = 0; i < 16; i++) d[i] = (double)(rint_(&r, 9) - 4) / 2;
    pool[np++] = oc_const_data(g, F64, OC_SHAPE(C), d);
    pool[np++] = oc_const_data(g, F64, OC_SHAPE(B, C), d);
    int steps = 12 + rint_(&r, 20);
    for (int step = 0; step < steps && np < POOL - 2; step++) {
        oc_tensor a = pool[rint_(&r, np)], b = pool[rint_(&r, np)], t = OC_NONE;
        /* bias towards recent nodes, so chains grow */
        if (rint_(&r, 2)) a = pool[np - 1 - rint_(&r, np < 4 ? np : 4)];
        const struct oc_shape *sa = shp(g, a);
        switch (rint_(&r, 13)) {
        case 0: {
            static const enum oc_op un[] = {OC_OP_NEG, OC_OP_ABS, OC_OP_RELU, OC_OP_SIGMOID,
                                            OC_OP_TANH, OC_OP_SIGN, OC_OP_SOFTPLUS, OC_OP_NEG};
            t = oc_unary(g, un[rint_(&r, 8)], a);
            break;
        }
        case 1: /* guarded: finite for finite a */
            switch (rint_(&r, 4)) {
            case 0: t = oc_exp(g, oc_tanh(g, a)); break;
            case 1: t = oc_log(g, oc_add_scalar(g, oc_abs(g, a), 1.0)); break;
            case 2: t = oc_sqrt(g, oc_abs(g, a)); break;
            default: t = oc_log1p(g, oc_exp(g, oc_neg(g, oc_abs(g, a)))); break;
            }
            break;
        case 2:
        case 3: {
            static const enum oc_op bin[] = {OC_OP_ADD, OC_OP_SUB, OC_OP_MUL, OC_OP_DIV,
                                             OC_OP_MAX, OC_OP_MIN, OC_OP_ADD, OC_OP_MUL};
            if (!broadcastable(sa, shp(g, b))) b = pool[3]; /* the scalar input */
            t = oc_binary(g, bin[rint_(&r, 8)], a, b);
            break;
        }
        case 4: { /* neutral / absorbing constants */
            double k = consts[rint_(&r, 6)];
            switch (rint_(&r, 5)) {
            case 0: t = oc_scale(g, a, k); break;
            case 1: t = oc_add_scalar(g, a, k); break;
            case 2: t = oc_sub(g, a, oc_scalar(g, F64, k)); break;
            case 3: t = oc_div(g, a, oc_scalar(g, F64, k == 0 ? 1.0 : k)); break;
            default: t = oc_mul(g, oc_scalar(g, F64, k), a); break;
            }
            break;
        }
        case 5: { /* reshape, often twice */
            int64_t n = oc_shape_numel(sa);
            t = oc_reshape(g, a, OC_SHAPE(n));
            if (rint_(&r, 2) && n == B * C) t = oc_reshape(g, t, OC_SHAPE(C, B));
            if (rint_(&r, 2) && n == B * C) t = oc_reshape(g, t, OC_SHAPE(B, C));
            break;
        }
        case 6: { /* permute, possibly of a permute */
            if (sa->rank == 2) {
                int p[2] = {1, 0};
                t = oc_permute(g, a, p);
                if (rint_(&r, 2)) t = oc_permute(g, t, p);
            } else if (sa->rank == 3) {
                int p[3] = {2, 0, 1}, q[3] = {1, 0, 2};
                t = oc_permute(g, oc_permute(g, a, p), rint_(&r, 2) ? q : p);
            } else {
                t = oc_neg(g, a);
            }
            break;
        }
        case 7: { /* explicit broadcasts, to rank 3 sometimes */
            struct oc_shape bc = OC_SHAPE(B, C);
            if (broadcasts_to(sa, &bc)) {
                t = oc_broadcast(g, a, OC_SHAPE(B, C));
                if (rint_(&r, 2)) t = oc_broadcast(g, t, OC_SHAPE(2, B, C));
            } else {
                t = oc_abs(g, a);
            }
            break;
        }
        case 8: { /* reductions */
            if (sa->rank == 0) {
                t = oc_add(g, a, a);
                break;
            }
            uint32_t axes = 1u + (uint32_t)rint_(&r, (1 << sa->rank) - 1);
            t = rint_(&r, 2) ? oc_sum(g, a, axes, rint_(&r, 2))
                             : oc_reduce_max(g, a, axes, rint_(&r, 2));
            break;
        }
        case 9: /* selects: computed or constant condition */
            if (!broadcastable(sa, shp(g, b))) b = pool[3];
            if (rint_(&r, 2))
                t = oc_select(g, oc_lt(g, a, b), a, b);
            else
                t = oc_select(g, oc_scalar(g, F64, consts[rint_(&r, 6)]), a, b);
            break;
        case 10: { /* an exact duplicate of an earlier computed node */
            int id = rint_(&r, g->nnodes);
            const struct oc_node *n = g->nodes[id];
            if (n->op == OC_OP_INPUT || n->op == OC_OP_ASSIGN) {
                t = oc_exp(g, oc_neg(g, oc_abs(g, a)));
                t = oc_exp(g, oc_neg(g, oc_abs(g, a))); /* twice */
                break;
            }
            oc_tensor in[8];
            for (int k = 0; k < n->ninputs; k++) in[k] = (oc_tensor){n->inputs[k]};
            t = oc_graph_add(g, n->op, in, n->ninputs, &n->attrs, n->dtype, &n->shape);
            break;
        }
        case 11: /* integer round trip and same-dtype cast */
            if (rint_(&r, 2)) {
                t = oc_cast(g, oc_cast(g, oc_scale(g, a, 3.0), OC_I32), F64);
            } else {
                t = oc_graph_add(g, OC_OP_CAST, &a, 1, NULL, F64, sa);
            }
            break;
        default: /* dead branch */
            oc_log(g, oc_mul(g, a, a));
            t = OC_NONE;
            break;
        }
        cr_assert_eq(oc_graph_status(g), OC_OK, "seed %llu: %s", (unsigned long long)seed,
                     g->err.msg);
        if (oc_valid(t)) pool[np++] = t;
    }
    int nout = 1 + rint_(&r, 4);
    for (int i = 0; i < nout; i++) {
        char name[16];
        snprintf(name, sizeof name, "out%d", i);
        oc_output(g, name, pool[i == 3 ? rint_(&r, 4) : np - 1 - rint_(&r, np < 6 ? np : 6)]);
    }
    if (rint_(&r, 3) == 0) {
        oc_tensor st = oc_state(g, "acc", F64, OC_SHAPE(C), OC_INIT_ONES, 0);
        oc_tensor src = pool[np - 1];
        if (oc_shape_numel(shp(g, src)) == C) src = oc_reshape(g, src, OC_SHAPE(C));
        else src = oc_scale(g, pool[2], 1.0);
        oc_assign(g, st, oc_add(g, oc_scale(g, st, 1.0), src));
    }
    cr_assert_eq(oc_graph_status(g), OC_OK, "seed %llu: %s", (unsigned long long)seed, g->err.msg);
    return g;
}

Test(random, simplify_preserves_outputs, .timeout = 60)
{
    int shrank = 0;
    for (uint64_t seed = 1; seed <= 150; seed++) {
        struct oc_graph *g = random_graph(seed);
        verify(g);
        struct oc_graph *s = oc_graph_clone(g);
        int *map = malloc(sizeof(int) * (size_t)g->nnodes);
        struct oc_err e = {0};
        cr_assert_eq(oc_pass_simplify_map(&s, map, &e), OC_OK, "seed %llu: %s",
                     (unsigned long long)seed, e.msg);
        verify(s);
        cr_assert_leq(s->nnodes, g->nnodes, "seed %llu: %d nodes became %d",
                      (unsigned long long)seed, g->nnodes, s->nnodes);
        shrank += s->nnodes < g->nnodes;
        for (int i = 0; i < g->noutputs; i++)
            cr_assert_eq(map[g->outputs[i].node], s->outputs[i].node, "seed %llu: map of %s",
                         (unsigned long long)seed, g->outputs[i].name);
        free(map);
        /* two input draws, one with special values in the first elements */
        same_outputs_ex(g, s, 1, seed, -3, 3, NULL, 0, 1e-12);
        double special[] = {-0.0, INFINITY, NAN};
        same_outputs_ex(g, s, 1, seed + 1000, -3, 3, special, 3, 1e-12);
        /* idempotent: a second simplify changes nothing */
        struct oc_graph *s2 = simplified(s);
        cr_assert(printed_equal(s, s2), "seed %llu: simplify is not idempotent",
                  (unsigned long long)seed);
        oc_graph_free(s2);
        oc_graph_free(s);
        oc_graph_free(g);
    }
    cr_assert_gt(shrank, 100, "only %d of 150 graphs got smaller", shrank);
}

Test(random, each_pass_alone_preserves_outputs)
{
    pass_fn passes[4] = {oc_pass_fold, oc_pass_identities, oc_pass_cse, oc_pass_dce};
    for (uint64_t seed = 200; seed < 240; seed++) {
        struct oc_graph *g = random_graph(seed);
        for (int p = 0; p < 4; p++) {
            struct oc_graph *s = after(g, passes[p]);
            cr_assert_leq(s->nnodes, g->nnodes);
            same_outputs_ex(g, s, 1, seed, -3, 3, NULL, 0, 1e-12);
            oc_graph_free(s);
        }
        oc_graph_free(g);
    }
}
