/* passes.h - the public interface of the passes layer: graph -> graph
 * transformations run between the DSL and fusion (autodiff, simplify, ...).
 * Each pass is `enum oc_status oc_pass_<name>(struct oc_graph *, ...)`; the
 * pipeline is one flat list in the caller. */
#ifndef OODC_PASSES_H
#define OODC_PASSES_H

#include "../ir/ir.h"

#include "fuse.h"
#include "simplify.h"

/* ---------------------------------------------------------------- autodiff */

/* Reverse-mode differentiation, graph to graph (passes/autodiff.c).
 *
 * Appends to g the reverse graph of `loss`, built from ordinary primitives,
 * and writes to grads_out[i] the node id of d loss / d wrt[i] (same dtype and
 * shape as wrt[i]). `loss` is a float scalar when seed < 0 (the seed is 1);
 * when seed >= 0, `seed` is the cotangent node, of the dtype and shape of
 * loss (a vector-Jacobian product). wrt may name any nodes: inputs, params,
 * state, intermediates, the loss itself.
 *
 * Semantics:
 *  - gradients reaching a node along several paths are summed;
 *  - stop_gradient, integer-typed tensors, comparisons and sign carry no
 *    gradient; nothing flows through assign (its write happens at the end
 *    of the step: readers of the param see the old value);
 *  - a requested gradient with no path to the loss is a zero constant, so a
 *    caller can always bind every entry of grads_out;
 *  - max/min ties split the gradient 0.5/0.5; reduce_max divides it equally
 *    among the elements equal to the maximum; relu'(0) = abs'(0) = 0.
 * Errors (checked before anything is appended, so g is left as it was; the
 * message names the node as %id op "label"): a gradient that must flow
 * through a float node with no VJP rule; a float wrt that influences the
 * loss only through a non-differentiable op such as argmax (an argmax on a
 * side path, next to a differentiable one, is fine); bad ids, a non-float
 * loss, a non-scalar loss without a seed, a seed of the wrong type. */
enum oc_status oc_pass_autodiff(struct oc_graph *g, int loss, int seed, const int *wrt, int nwrt,
                                int *grads_out, struct oc_err *err);

/* 1 if autodiff has a rule for op (a VJP, a zero gradient, or a leaf).
 * Tested against every OC_F_DIFF op in ops.def. */
int oc_autodiff_has_rule(enum oc_op op);

#endif
