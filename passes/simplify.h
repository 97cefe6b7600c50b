/* simplify.h - graph simplification passes: constant folding, algebraic
 * identities, common subexpression elimination and dead code elimination.
 *
 * They run after autodiff and before fusion (DSL -> autodiff -> simplify ->
 * fuse). Graphs are append-only, so every pass builds a new graph and swaps
 * it into *g (the old one is freed); on error *g is left untouched. Node ids
 * change: named outputs follow their (rewritten) nodes, and the *_map
 * variant reports where every old node went. INPUT, PARAM and STATE nodes
 * are always kept (their names are the binding interface); outputs and
 * ASSIGN nodes are the roots that keep other nodes alive.
 *
 * Numerical contract: every rewrite leaves the value of every output
 * unchanged, bit for bit, under the reference interpreter, with two
 * documented exceptions: x + 0 -> x and x - (-0) -> x ignore the sign of a
 * zero (the only input where they differ is x = -0, which becomes -0 instead
 * of +0), and folded f32 constants are computed in f32 (see oc_pass_fold).
 * Rewrites that change values (log(exp x) -> x, exp(log x) -> x, x*0 -> 0,
 * x - x -> 0) are deliberately absent; simplify.c explains each.
 */
#ifndef OODC_SIMPLIFY_H
#define OODC_SIMPLIFY_H

#include "../ir/ir.h"

/* Constant folds are limited to results of at most this many elements
 * (a splat result, which is stored as one value, has no such limit). */
#define OC_FOLD_MAX_NUMEL 4096
/* ... and to operands of at most this many elements, which bounds the work
 * of evaluating a fold (a reduction or a contraction of constants). */
#define OC_FOLD_MAX_OPERAND 16384
/* oc_pass_simplify stops after this many rounds even without a fixed point. */
#define OC_SIMPLIFY_MAX_ROUNDS 16

/* Constant folding: a node whose operands are all CONST becomes a CONST
 * computed by the reference interpreter, in the node's own dtype (an f32 node
 * is rounded to f32, as the backends compute it). A result whose elements
 * are all equal becomes a splat const; a const holding equal data values is
 * turned into a splat too. rng nodes, assign and sources are never folded. */
enum oc_status oc_pass_fold(struct oc_graph **g, struct oc_err *err);

/* Algebraic identities that hold exactly in IEEE arithmetic (with the
 * signed-zero exception above): x*1, 1*x, x/1, x+0, 0+x, x-0, neg(neg x),
 * broadcast of a splat const, broadcast to the same shape, broadcast of a
 * broadcast, reshape to the same shape, reshape of a reshape, identity
 * permute, permute of a permute, cast to the same dtype, select with a
 * constant condition or equal branches, full slices, zero pads and
 * single-operand concats. */
enum oc_status oc_pass_identities(struct oc_graph **g, struct oc_err *err);

/* Common subexpression elimination: nodes with the same op, dtype, shape,
 * operands (in either order for add, mul, eq, ne) and attributes (compared
 * field by field, constant data by content, doubles bit for bit) are merged
 * into the first one. INPUT, PARAM, STATE and ASSIGN nodes are never merged;
 * rng nodes with equal seed and counter are the same draw and are merged. */
enum oc_status oc_pass_cse(struct oc_graph **g, struct oc_err *err);

/* Dead code elimination: removes the nodes that no output and no ASSIGN
 * depends on, keeping every INPUT, PARAM and STATE. */
enum oc_status oc_pass_dce(struct oc_graph **g, struct oc_err *err);

/* fold, identities, cse and dce in rounds until nothing changes (at most
 * OC_SIMPLIFY_MAX_ROUNDS), then the verifier in debug builds (or with
 * OC_DEBUG set). OC_DEBUG=4 prints the graph after every pass to stderr. */
enum oc_status oc_pass_simplify(struct oc_graph **g, struct oc_err *err);

/* As oc_pass_simplify, and map (of the old graph's nnodes entries) receives
 * for every old node the id of the node now computing its value, or -1 when
 * it was removed as dead. Lets a caller keep ids it holds (gradients returned
 * by autodiff) across the pass. map may be NULL. */
enum oc_status oc_pass_simplify_map(struct oc_graph **g, int *map, struct oc_err *err);

#endif
