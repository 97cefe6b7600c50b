/* cuda-graphs.h - graphs beyond the conformance table that the CUDA suites
 * share, for kernel shapes the table's small graphs never produce:
 *   - reductions of a large space to one value, which fusion splits
 *     (passes/fuse.h, OC_FUSE_SPLIT_MIN) into a row kernel writing
 *     per-row partials and a one-row final reduction; the added nodes
 *     live in the program's `extra` (ids >= g->nnodes);
 *   - reductions over axis 0 and axis 1 of one square tensor, which share
 *     a row kernel with one of them reading its input transposed
 *     (oc_kir_red_perm), argmax included;
 *   - the weighted MMCE of BINC (paper.md) over a batch of 300,
 *     forward and gradient: a split pairwise sum and a backward pairwise
 *     kernel summing over both axes of the pair matrix;
 *   - a batch-norm layer's training step whose SGD update of gamma and
 *     beta fusion writes in place into the BN backward row kernel: its
 *     threads read gamma[c] for every point of row c (the input gradient)
 *     and one of them writes the new gamma[c], so the row store must wait
 *     for the whole warp / block.
 * test-cuda-compile.c compiles their kernels with NVRTC (no spills);
 * test-cuda-emu.c (emulated device) and test-cuda-conform.c (a GPU) run
 * them against the interpreter. */
#ifndef OODC_TEST_CUDA_GRAPHS_H
#define OODC_TEST_CUDA_GRAPHS_H

#include <criterion/criterion.h>

#include "../../codegen/cuda.h"
#include "../../frontend/frontend.h"
#include "../../models/models.h"
#include "../../passes/fuse.h"
#include "../../passes/passes.h"

enum {
    CG_SPLIT,      /* sums and a maximum of [300,400] (and f64 [256,300]) to one value */
    CG_TRANSPOSED, /* sum, max and argmax over axis 0 beside sums over axis 1 of [37,37] */
    CG_MMCE,       /* weighted MMCE of a batch of 300 and its gradient */
    CG_BN_BLOCK,   /* a BN layer's training step, SGD written in place: block rows */
    CG_BN_WARP,    /* the same with rows a warp takes */
    CG_COUNT,
};

#define CG_MMCE_BATCH 300
#define CG_SQUARE 37

static inline const char *cg_name(int v)
{
    static const char *names[CG_COUNT] = {"split reductions", "transposed reductions", "mmce b300",
                                          "bn step, block rows", "bn step, warp rows"};
    return v >= 0 && v < CG_COUNT ? names[v] : "?";
}

static inline struct oc_graph *cg_build(int v)
{
    struct oc_graph *g = oc_graph_new(cg_name(v));
    switch (v) {
    case CG_SPLIT: {
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(300, 400));
        oc_tensor z = oc_input(g, "z", OC_F64, OC_SHAPE(256, 300));
        oc_output(g, "sum", oc_sum(g, oc_mul(g, x, oc_exp(g, x)), 3u, 0));
        oc_output(g, "max", oc_reduce_max(g, x, 3u, 1));
        oc_output(g, "sum64", oc_sum(g, oc_mul(g, z, z), 3u, 0));
        break;
    }
    case CG_TRANSPOSED: {
        oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(CG_SQUARE, CG_SQUARE));
        oc_tensor y = oc_mul(g, x, oc_exp(g, x));
        oc_output(g, "rows", oc_sum(g, y, 2u, 0));
        oc_output(g, "cols", oc_sum(g, y, 1u, 0));
        oc_output(g, "colmax", oc_reduce_max(g, y, 1u, 1));
        oc_output(g, "colarg", oc_argmax(g, y, 0, 0));
        break;
    }
    case CG_BN_BLOCK:
    case CG_BN_WARP: {
        /* conv -> BN -> relu -> conv as in a Wide ResNet: the forward BN
         * kernel runs before the second convolution (a library call), the
         * BN backward kernel's input gradient feeds the first one's, so
         * nothing after that kernel reads gamma: its update is written in
         * place there */
        struct oc_err err = {0};
        int blk = v == CG_BN_BLOCK;
        oc_tensor x = oc_input(g, "x", OC_F32, blk ? OC_SHAPE(8, 3, 5, 5) : OC_SHAPE(4, 3, 4, 4));
        oc_tensor lr = oc_scalar(g, OC_F32, 0.05); /* random inputs span [-2, 2]: too wild a step */
        oc_tensor w = oc_param(g, "w", OC_F32, blk ? OC_SHAPE(4, 3, 3, 3) : OC_SHAPE(16, 3, 3, 3),
                               OC_INIT_NORMAL, 0, 0.3);
        oc_tensor w2 = oc_param(g, "w2", OC_F32, blk ? OC_SHAPE(2, 4, 3, 3) : OC_SHAPE(2, 16, 3, 3),
                                OC_INIT_NORMAL, 0, 0.3);
        oc_tensor y = oc_relu(g, oc_batchnorm_layer(g, "bn", oc_conv2d(g, x, w, 1, 1), 1));
        oc_tensor z = oc_conv2d(g, y, w2, 1, 1);
        oc_tensor loss = oc_sum(g, oc_mul(g, z, z), 15u, 0);
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
        int wrt[3] = {x.id, oc_graph_find_named(g, "bn.weight"), oc_graph_find_named(g, "bn.bias")}, grad[3];
        cr_assert(wrt[1] >= 0 && wrt[2] >= 0, "the BN layer's gamma and beta");
        cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, wrt, 3, grad, &err), OC_OK, "%s", err.msg);
        oc_tensor pt[2] = {{wrt[1]}, {wrt[2]}}, gt[2] = {{grad[1]}, {grad[2]}};
        oc_sgd_nesterov(g, pt, gt, 2, lr, 0.9, 5e-4, NULL);
        oc_output(g, "loss", loss);
        oc_output(g, "gx", (oc_tensor){grad[0]});
        break;
    }
    default: {
        struct oc_err err = {0};
        oc_tensor logits = oc_input(g, "logits", OC_F32, OC_SHAPE(CG_MMCE_BATCH, 4));
        oc_tensor labels = oc_input(g, "labels", OC_I32, OC_SHAPE(CG_MMCE_BATCH));
        oc_tensor p = oc_softmax(g, logits, 1);
        oc_tensor conf = oc_reduce_max(g, p, 2u, 0);
        oc_tensor correct = oc_cast(g, oc_eq(g, oc_argmax(g, p, 1, 0), labels), OC_F32);
        oc_tensor loss = oc_mmce_weighted(g, conf, correct, 0.4);
        int gl = -1;
        cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
        cr_assert_eq(oc_pass_autodiff(g, loss.id, -1, &logits.id, 1, &gl, &err), OC_OK, "%s", err.msg);
        oc_output(g, "loss", loss);
        oc_output(g, "grad", (oc_tensor){gl});
        break;
    }
    }
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s: %s", cg_name(v), g->err.msg);
    return g;
}

/* Whether value v reads slot `slot` (through its operands). */
static inline int cg_reads(const struct oc_kval *v, int slot, unsigned char *seen)
{
    if (!v || seen[v->id]) return 0;
    seen[v->id] = 1;
    if (v->kind == OC_KV_LOAD && v->slot == slot) return 1;
    for (int a = 0; a < v->nargs && a < 3; a++)
        if (cg_reads(v->arg[a], slot, seen)) return 1;
    return 0;
}

/* Whether loop kernel k reads, for its per-point work (reductions, stores
 * inside the stages), a buffer that it also writes. */
static inline int cg_points_read_written(const struct oc_kernel *k)
{
    unsigned char *seen = calloc((size_t)k->nval + 1, 1);
    cr_assert_not_null(seen);
    int r = 0;
    for (int a = 0; a < k->nslot && !r; a++) {
        int alias = 0;
        for (int b = 0; b < k->nslot; b++)
            alias |= !k->slot[a].written && k->slot[b].written && k->slot[a].buf == k->slot[b].buf;
        if (!alias) continue;
        memset(seen, 0, (size_t)k->nval + 1);
        for (int i = 0; i < k->nred && !r; i++) r = cg_reads(k->red[i].x, a, seen);
        for (int i = 0; i < k->nstore && !r; i++)
            if (k->store[i].stage >= 0) r = cg_reads(k->store[i].v, a, seen);
    }
    free(seen);
    return r;
}

/* A node of program p: the graph's own, or one that fusion added (ids from
 * g->nnodes on, in p->extra). */
static inline const struct oc_node *cg_node(const struct oc_kprog *p, int id)
{
    cr_assert(id >= 0 && id < p->g->nnodes + p->nextra, "node %d out of range", id);
    return id < p->g->nnodes ? p->g->nodes[id] : p->extra[id - p->g->nnodes];
}

/* Checks that the fused program of graph v has the shape the graph is
 * there for, so that the suites keep covering it as fusion evolves: split
 * reductions whose final one-row kernels reduce added nodes; kernels over
 * a square space holding reductions over both of its axes (one of them
 * read transposed); a BN backward kernel of the intended mapping that
 * writes gamma in place. */
static inline void cg_check_program(int v, const struct oc_graph *g)
{
    struct oc_err err = {0};
    struct oc_kprog *p = NULL;
    struct oc_fuse_opts fo = {.fusion = 1};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s: %s", cg_name(v), err.msg);
    int final = 0, both = 0, inplace = 0;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind != OC_K_LOOP) continue;
        /* a group-mapped row kernel whose threads read, for their points,
         * a buffer that the kernel also writes (once per row) */
        struct oc_cuda_launch l;
        oc_cuda_launch_of(k, &l);
        if (k->rmask && l.map == (v == CG_BN_WARP ? OC_CUDA_MAP_WARP : OC_CUDA_MAP_BLOCK) &&
            cg_points_read_written(k))
            inplace++;
        uint32_t axes = 0;
        int mixed = 0;
        for (int r = 0; r < k->nred; r++) {
            const struct oc_node *n = cg_node(p, k->red[r].node);
            const struct oc_node *in = cg_node(p, n->inputs[0]);
            final += oc_kir_outer_extent(k) == 1 && n->inputs[0] >= g->nnodes;
            if (in->shape.rank != 2 || in->shape.dim[0] != in->shape.dim[1]) continue;
            uint32_t a = n->op == OC_OP_ARGMAX ? 1u << n->attrs.axis : n->attrs.axes;
            mixed |= r > 0 && a != axes;
            axes = a;
        }
        both += mixed;
    }
    switch (v) {
    case CG_SPLIT:
        cr_expect_eq(p->nextra, 6, "%s: three split reductions (%d extra nodes)", cg_name(v), p->nextra);
        cr_expect_eq(final, 3, "%s: three one-row sums of partials", cg_name(v));
        break;
    case CG_TRANSPOSED:
        cr_expect_eq(p->nextra, 0, "%s: nothing to split", cg_name(v));
        cr_expect_eq(both, 1, "%s: reductions over both axes share a kernel", cg_name(v));
        break;
    case CG_BN_BLOCK:
    case CG_BN_WARP:
        cr_expect_geq(inplace, 1, "%s: gamma updated in place by the BN backward kernel", cg_name(v));
        break;
    default:
        cr_expect_gt(p->nextra, 0, "%s: the pairwise sum is split", cg_name(v));
        cr_expect_geq(final, 1, "%s: a one-row sum of partials", cg_name(v));
        cr_expect_geq(both, 1, "%s: the backward pair kernel sums over both axes", cg_name(v));
        break;
    }
    oc_kprog_free(p);
}

#endif
