/* test-fuse.c - fusion decisions and the kernel IR: which graphs become how
 * many kernels (elementwise chains, softmax, batchnorm, library barriers,
 * sibling reductions, transposed ones, split reductions to one value), the
 * recomputation bound (also through broadcasts), the decision log, kernel
 * order, cycle avoidance, structural hashes, index maps and assigns
 * written in place. Numerical
 * agreement with the interpreter is the runtime tests' job; a few cases
 * here run too, where the point is a tricky schedule. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../passes/fuse.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

static struct oc_kprog *fuse(struct oc_graph *g, int fusion, FILE *log)
{
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_kprog *p = NULL;
    struct oc_err err = {0};
    struct oc_fuse_opts o = {fusion, log ? 2 : 0, log};
    cr_assert_eq(oc_pass_fuse(g, &o, &p, &err), OC_OK, "%s", err.msg);
    return p;
}

static int count_loop(const struct oc_kprog *p)
{
    int n = 0;
    for (int i = 0; i < p->nkernel; i++) n += p->kernel[i]->kind == OC_K_LOOP;
    return n;
}

/* Every buffer a kernel reads is a source or written by an earlier kernel. */
static void check_order(const struct oc_kprog *p)
{
    unsigned char *ready = calloc((size_t)p->nbuf + 1, 1);
    for (int b = 0; b < p->nbuf; b++) ready[b] = p->buf[b].kind != OC_KB_TEMP;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        for (int s = 0; s < k->nslot; s++)
            if (!k->slot[s].written)
                cr_expect(ready[k->slot[s].buf], "kernel %d (%s) reads b%d before it is written", i,
                          k->name, k->slot[s].buf);
        for (int s = 0; s < k->nslot; s++)
            if (k->slot[s].written) ready[k->slot[s].buf] = 1;
    }
    free(ready);
}

Test(fuse, elementwise_chain_is_one_kernel)
{
    struct oc_graph *g = oc_graph_new("chain");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(4, 6));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(6));
    oc_tensor t = oc_permute(g, oc_tanh(g, oc_add(g, a, b)), (const int[]){1, 0});
    oc_output(g, "y", oc_mul(g, oc_exp(g, t), oc_reshape(g, oc_sub(g, t, oc_scalar_like(g, t, 1)), OC_SHAPE(6, 4))));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_expect_eq(p->nkernel, 1);
    cr_expect_eq(p->kernel[0]->nstore, 1, "only the output is written");
    cr_expect_eq(p->kernel[0]->rmask, 0u);
    check_order(p);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, unfused_is_one_kernel_per_primitive)
{
    struct oc_graph *g = oc_graph_new("bn");
    oc_batchnorm_layer(g, "bn", oc_input(g, "x", OC_F32, OC_SHAPE(4, 3, 2, 2)), 1);
    oc_output(g, "y", (oc_tensor){g->nnodes - 1});
    int prims = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (oc_op_table[n->op].flags & OC_F_SOURCE || n->op == OC_OP_ASSIGN) continue;
        prims++;
    }
    struct oc_kprog *p = fuse(g, 0, NULL);
    cr_expect_eq(p->nkernel, prims);
    for (int i = 0; i < p->nkernel; i++) cr_expect_eq(p->kernel[i]->nmember, 1);
    check_order(p);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, softmax_is_one_row_kernel)
{
    struct oc_graph *g = oc_graph_new("softmax");
    oc_output(g, "y", oc_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(8, 10)), 1));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nkernel, 1);
    const struct oc_kernel *k = p->kernel[0];
    cr_expect_eq(k->rmask, 2u);
    cr_expect_eq(k->nred, 2, "row max and row sum");
    cr_expect_eq(k->nstage, 3, "max, sum, then the normalized store");
    cr_expect_eq(k->nstore, 1);
    cr_expect(strstr(k->name, "reduce_max"), "%s", k->name);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, batchnorm_train_is_one_kernel)
{
    struct oc_graph *g = oc_graph_new("bn");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 3, 5, 5));
    oc_output(g, "y", oc_relu(g, oc_batchnorm_layer(g, "bn", x, 1)));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nkernel, 1, "statistics, normalization, running stats and relu");
    cr_expect_eq(p->kernel[0]->nred, 2);
    cr_expect_eq(p->kernel[0]->nstore, 3, "output and two running statistics");
    cr_expect_eq(p->nassign, 2);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, matmul_is_a_barrier_with_fused_neighbours)
{
    struct oc_graph *g = oc_graph_new("mlp");
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(3, 5), OC_INIT_NORMAL, 0, 1);
    oc_tensor b = oc_param(g, "b", OC_F32, OC_SHAPE(3), OC_INIT_ZEROS, 0, 0);
    oc_tensor x = oc_tanh(g, oc_scale(g, oc_input(g, "x", OC_F32, OC_SHAPE(4, 5)), 2.0));
    oc_output(g, "y", oc_relu(g, oc_linear(g, x, w, b)));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nkernel, 3, "prologue, matmul, epilogue");
    cr_expect_eq(p->kernel[0]->kind, OC_K_LOOP);
    cr_expect_eq(p->kernel[1]->kind, OC_K_MATMUL);
    cr_expect_eq(p->kernel[2]->kind, OC_K_LOOP);
    check_order(p);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, sibling_reductions_share_a_kernel)
{
    struct oc_graph *g = oc_graph_new("moments");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(6, 7));
    oc_output(g, "s1", oc_sum(g, x, 1u, 0));
    oc_output(g, "s2", oc_sum(g, oc_mul(g, x, x), 1u, 0));
    oc_output(g, "mx", oc_reduce_max(g, x, 1u, 1));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_expect_eq(p->nkernel, 1);
    cr_expect_eq(p->kernel[0]->nred, 3);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, recomputation_is_bounded)
{
    struct oc_graph *g = oc_graph_new("reuse");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(16));
    oc_tensor cheap = oc_exp(g, x);                                            /* cost 4 */
    oc_tensor dear = oc_tanh(g, oc_exp(g, oc_sigmoid(g, oc_log1p(g, oc_abs(g, x))))); /* cost 17 */
    oc_output(g, "a", oc_add(g, cheap, dear));
    /* read through a broadcast, by a kernel over another space */
    oc_output(g, "b", oc_mul(g, oc_input(g, "z", OC_F32, OC_SHAPE(8, 16)), oc_add(g, cheap, dear)));
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    struct oc_kprog *p = fuse(g, 1, log);
    fclose(log);
    cr_expect(strstr(buf, "materialize") && strstr(buf, "(tanh)"), "%s", buf);
    cr_expect(strstr(buf, "inline") && strstr(buf, "(exp)"), "%s", buf);
    int tanh_stored = 0;
    for (int b = 0; b < p->nbuf; b++) tanh_stored |= g->nodes[p->buf[b].node]->op == OC_OP_TANH;
    cr_expect(tanh_stored, "the expensive shared node is materialized once");
    check_order(p);
    free(buf);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, decisions_are_logged_with_reasons)
{
    struct oc_graph *g = oc_graph_new("ce");
    oc_output(g, "loss", oc_cross_entropy(g, oc_input(g, "x", OC_F32, OC_SHAPE(8, 10)),
                                          oc_input(g, "l", OC_I32, OC_SHAPE(8))));
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    struct oc_kprog *p = fuse(g, 1, log);
    fclose(log);
    cr_expect(strstr(buf, "fuse: accept producer"), "%s", buf);
    cr_expect(strstr(buf, "fuse: reject producer") && strstr(buf, "iteration spaces"), "%s", buf);
    cr_expect_eq(p->nkernel, 2, "log-softmax rows, then the batch mean of the picked entries");
    free(buf);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* m (a row reduction) feeds a matmul whose result joins m's consumer: fusing
 * the consumer into m's kernel would need the matmul both before and after. */
Test(fuse, merges_never_create_cycles)
{
    struct oc_graph *g = oc_graph_new("cycle");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 4));
    oc_tensor m = oc_reduce_max(g, x, 2u, 1);
    oc_tensor c = oc_matmul(g, oc_broadcast(g, m, OC_SHAPE(4, 4)), x, 0, 0);
    oc_output(g, "y", oc_add(g, oc_sub(g, x, m), c));
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    struct oc_kprog *p = fuse(g, 1, log);
    fclose(log);
    cr_expect(strstr(buf, "depends on one and feeds the other"), "%s", buf);
    check_order(p);
    oc_kprog_free(p);
    /* and it computes the right thing */
    struct oc_buf xv = oc_test_random(OC_F32, OC_SHAPE(4, 4), 3, -1, 1);
    struct oc_test_bind bind = {"x", &xv};
    struct oc_buf want = oc_test_run(g, 1, &bind, 1, "y");
    struct oc_exec *ex;
    struct oc_err err = {0};
    cr_assert_eq(oc_compile(g, "cpu", NULL, &ex, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_set(ex, "x", &xv, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 1, &err), OC_OK, "%s", err.msg);
    struct oc_buf got;
    cr_assert_eq(oc_exec_get(ex, "y", &got, &err), OC_OK, "%s", err.msg);
    cr_expect(oc_test_allclose("cycle y", &got, &want, 1e-4, 1e-5));
    oc_buf_free(&got);
    oc_buf_free(&want);
    oc_buf_free(&xv);
    oc_exec_free(ex);
    free(buf);
    oc_graph_free(g);
}

static uint64_t hash_of_scaled(double s)
{
    struct oc_graph *g = oc_graph_new("h");
    oc_output(g, "y", oc_scale(g, oc_exp(g, oc_input(g, "a", OC_F32, OC_SHAPE(3, 9))), s));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nkernel, 1);
    uint64_t h = p->kernel[0]->hash;
    char name[64];
    strcpy(name, p->kernel[0]->name);
    cr_expect(!strncmp(name, "k_", 2) && strstr(name, "_exp"), "%s", name);
    oc_kprog_free(p);
    oc_graph_free(g);
    return h;
}

Test(fuse, structural_hash_names_kernels)
{
    cr_expect_eq(hash_of_scaled(2.0), hash_of_scaled(2.0), "equal structure, equal hash");
    cr_expect_neq(hash_of_scaled(2.0), hash_of_scaled(3.0), "a different constant, another kernel");
}

/* Atoms of a given kind in the index expressions of loads and stores. */
static int count_atoms(const struct oc_kernel *k, enum oc_katom_kind kind)
{
    int n = 0;
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        if (v->kind != OC_KV_LOAD) continue;
        for (int t = 0; t < v->ix->nterm; t++) n += v->ix->atom[t]->kind == kind;
    }
    for (int i = 0; i < k->nstore; i++)
        for (int t = 0; t < k->store[i].ix->nterm; t++) n += k->store[i].ix->atom[t]->kind == kind;
    return n;
}

Test(fuse, layout_ops_become_affine_index_maps)
{
    struct oc_graph *g = oc_graph_new("maps");
    oc_tensor a = oc_input(g, "a", OC_F32, OC_SHAPE(3, 5, 6));
    oc_tensor b = oc_input(g, "b", OC_F32, OC_SHAPE(6, 3, 5));
    /* reshape (merge), permute, broadcast and slice compose affinely */
    oc_tensor t = oc_reshape(g, oc_permute(g, b, (const int[]){1, 2, 0}), OC_SHAPE(15, 6));
    oc_tensor u = oc_reshape(g, a, OC_SHAPE(15, 6));
    oc_output(g, "y", oc_add(g, u, oc_slice(g, oc_broadcast(g, t, OC_SHAPE(2, 15, 6)),
                                            (const int64_t[]){1, 0, 0}, (const int64_t[]){2, 15, 6}, NULL)));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nkernel, 1);
    cr_expect_eq(count_atoms(p->kernel[0], OC_KA_DIV), 0);
    cr_expect_eq(count_atoms(p->kernel[0], OC_KA_MOD), 0);
    oc_kprog_free(p);
    oc_graph_free(g);
    /* a reshape that splits a permuted dim needs div/mod */
    g = oc_graph_new("maps2");
    a = oc_input(g, "a", OC_F32, OC_SHAPE(3, 5, 6));
    oc_output(g, "y", oc_neg(g, oc_reshape(g, oc_permute(g, a, (const int[]){2, 0, 1}), OC_SHAPE(9, 10))));
    p = fuse(g, 1, NULL);
    cr_expect_gt(count_atoms(p->kernel[0], OC_KA_DIV) + count_atoms(p->kernel[0], OC_KA_MOD), 0);
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(fuse, kernel_ir_prints)
{
    struct oc_graph *g = oc_graph_new("p");
    oc_output(g, "y", oc_log_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(4, 5)), 1));
    struct oc_kprog *p = fuse(g, 1, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    oc_kprog_print(p, f);
    for (int i = 0; i < p->nkernel; i++) oc_kir_print(p->kernel[i], f);
    fclose(f);
    cr_expect(strstr(buf, "reduce 0x2"), "%s", buf);
    cr_expect(strstr(buf, "reduce_max v"), "%s", buf);
    cr_expect(strstr(buf, "(per row)") || strstr(buf, "(stage 2)"), "%s", buf);
    free(buf);
    cr_expect_eq(count_loop(p), 1);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* 2000 chained reshapes and negations: inlining stops at a bounded depth,
 * and the result is still right. */
Test(fuse, long_chains_are_cut)
{
    struct oc_graph *g = oc_graph_new("long");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(6, 4));
    oc_tensor t = x;
    for (int i = 0; i < 1000; i++) {
        t = oc_reshape(g, t, i % 2 ? OC_SHAPE(6, 4) : OC_SHAPE(4, 6));
        t = oc_neg(g, t);
    }
    oc_output(g, "y", t);
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_expect_gt(p->nkernel, 1);
    cr_expect_lt(p->nkernel, 40);
    check_order(p);
    oc_kprog_free(p);
    struct oc_buf xv = oc_test_random(OC_F32, OC_SHAPE(6, 4), 9, -1, 1);
    struct oc_exec *ex;
    struct oc_err err = {0};
    cr_assert_eq(oc_compile(g, "cpu", NULL, &ex, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_set(ex, "x", &xv, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 1, &err), OC_OK, "%s", err.msg);
    struct oc_buf got;
    cr_assert_eq(oc_exec_get(ex, "y", &got, &err), OC_OK, "%s", err.msg);
    cr_expect(oc_test_allclose("long chain", &got, &xv, 0, 0), "an even number of negations");
    oc_buf_free(&got);
    oc_buf_free(&xv);
    oc_exec_free(ex);
    oc_graph_free(g);
}

/* Rule 2, large reductions to one value: the sum of a [512,256] tensor is
 * a row kernel over 512 rows writing partials (a node fusion added) and a
 * sum of those; a small one stays whole, and the graph is untouched. */
Test(fuse, large_full_reductions_are_split)
{
    struct oc_graph *g = oc_graph_new("split");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(512, 256));
    oc_output(g, "big", oc_sum(g, oc_exp(g, x), 3u, 0));
    oc_output(g, "small", oc_reduce_max(g, oc_input(g, "y", OC_F32, OC_SHAPE(16, 16)), 3u, 0));
    int nn = g->nnodes;
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_expect_eq(g->nnodes, nn, "the graph is not changed");
    cr_expect_eq(p->nextra, 2, "one split: partials and their sum");
    int rows = 0, partial_buf = 0;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (oc_kir_points(k) == 512 * 256) {
            rows = 1;
            cr_expect_eq(oc_kir_outer_extent(k), 512, "one row per leading index");
            cr_expect_eq(k->rmask, 2u);
        }
    }
    for (int b = 0; b < p->nbuf; b++) partial_buf |= p->buf[b].node >= nn;
    cr_expect(rows, "a row kernel over the big space");
    cr_expect(partial_buf, "the partials live in a temp buffer of an added node");
    check_order(p);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* Sums over axis 0 and axis 1 of one [N,N] expression share a kernel: the
 * axis-0 sum reads the space transposed. */
Test(fuse, transposed_sibling_reductions_share_a_kernel)
{
    struct oc_graph *g = oc_graph_new("pairs");
    oc_tensor v = oc_input(g, "v", OC_F32, OC_SHAPE(40));
    oc_tensor d = oc_sub(g, oc_reshape(g, v, OC_SHAPE(40, 1)), oc_reshape(g, v, OC_SHAPE(1, 40)));
    oc_tensor k = oc_exp(g, oc_neg(g, oc_abs(g, d)));
    oc_output(g, "rows", oc_sum(g, oc_mul(g, k, oc_reshape(g, v, OC_SHAPE(1, 40))), 2u, 0));
    oc_output(g, "cols", oc_sum(g, oc_mul(g, k, oc_sign(g, d)), 1u, 0));
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_expect_eq(count_loop(p), 1, "one kernel for both sums");
    cr_expect_eq(p->kernel[0]->nred, 2);
    int nexp = 0;
    for (int i = 0; i < p->kernel[0]->nval; i++)
        nexp += p->kernel[0]->vals[i]->kind == OC_KV_OP && p->kernel[0]->vals[i]->op == OC_OP_EXP;
    cr_expect_eq(nexp, 1, "exp(-|v_i - v_j|) = exp(-|v_j - v_i|) is computed once");
    check_order(p);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* Rule 5 through broadcasts: log(softplus(rho)) of a [B,Z] tensor, read
 * for each of 10 classes, is materialized once; a cheap per-row value
 * read through a broadcast is still recomputed inline. */
Test(fuse, expensive_nodes_are_not_recomputed_through_broadcasts)
{
    struct oc_graph *g = oc_graph_new("expand");
    oc_tensor rho = oc_input(g, "rho", OC_F32, OC_SHAPE(8, 1, 16));
    oc_tensor pr = oc_input(g, "pr", OC_F32, OC_SHAPE(1, 10, 16));
    oc_tensor ls = oc_log(g, oc_softplus(g, rho));
    oc_output(g, "y", oc_sum(g, oc_sub(g, oc_log(g, oc_softplus(g, pr)), ls), 4u, 0));
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    struct oc_kprog *p = fuse(g, 1, log);
    fclose(log);
    cr_expect(strstr(buf, "broadcast would be recomputed"), "%s", buf);
    int stored = 0;
    for (int b = 0; b < p->nbuf; b++)
        stored |= p->buf[b].node == ls.id;
    cr_expect(stored, "log(softplus(rho)) has a buffer");
    check_order(p);
    free(buf);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* An assign whose new value one elementwise kernel computes is written in
 * place; one whose target an output reads keeps its copy. */
Test(fuse, assigns_are_written_in_place)
{
    struct oc_graph *g = oc_graph_new("assign");
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(5), OC_INIT_ZEROS, 0, 0);
    oc_tensor m = oc_state(g, "m", OC_F32, OC_SHAPE(5), OC_INIT_ZEROS, 0);
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(5));
    oc_tensor m2 = oc_add(g, oc_scale(g, m, 0.9), x);
    oc_assign(g, m, m2);
    oc_assign(g, w, oc_sub(g, w, oc_scale(g, m2, 0.1)));
    oc_output(g, "w_before", w);
    struct oc_kprog *p = fuse(g, 1, NULL);
    cr_assert_eq(p->nassign, 2);
    int inplace = 0;
    for (int a = 0; a < p->nassign; a++) {
        int tnode = p->buf[p->assign[a].target].node;
        if (tnode == m.id) cr_expect_eq(p->assign[a].value, p->assign[a].target, "the momentum in place");
        if (tnode == w.id) cr_expect_neq(p->assign[a].value, p->assign[a].target, "w's old value is an output");
        inplace += p->assign[a].value == p->assign[a].target;
    }
    cr_expect_eq(inplace, 1);
    oc_kprog_free(p);
    oc_graph_free(g);
}
