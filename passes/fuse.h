/* fuse.h - fusion: partitions a graph's nodes into kernels and produces the
 * kernel program (kernel IR in kir.h) that the backends compile.
 *
 * Rules, in order (DESIGN.md "Fusion and the kernel IR"):
 *  1. elementwise chains fuse; layout ops dissolve into index maps;
 *  2. a reduction fuses with its elementwise producers and with consumers
 *     that read only its rows (softmax, log-softmax + NLL, BN statistics and
 *     normalization, ...); sibling reductions over one space share a kernel;
 *     a large reduction to a single value (MMCE's pairwise sum) is split
 *     into a row kernel writing per-row partials and a small final sum, so
 *     it runs in parallel and never materializes its iteration space;
 *  3. matmul / conv are library calls and barriers; elementwise neighbours
 *     fuse into the kernels before and after them;
 *  5. a node is recomputed in several places only while its inlined cost is
 *     small (OC_FUSE_REUSE_COST, and OC_FUSE_EXPAND_BUDGET for a node read
 *     through an expanding broadcast); otherwise it is materialized once, and
 *     kernels merge only over one iteration space, where a node is computed
 *     once per point and stage.
 *  4. the optimizer update over all parameters runs in as few dispatches as
 *     possible: each parameter's SGD-Nesterov + weight-decay update fuses
 *     into one elementwise kernel (rules 1 and 3, siblings), which writes
 *     the parameter and its momentum in place (below); then those kernels
 *     - elementwise, writing only assign targets in place or assign values -
 *     are grouped: a grouped kernel (kir.h, oc_kir_is_group) runs up to
 *     OC_FUSE_GROUP_MAX of them, of different shapes, as one dispatch over
 *     the concatenation of their ranges, at the place of the last one.
 *     Members must be independent (none writes a buffer another reads or
 *     writes), and a kernel only moves later past kernels it shares no
 *     written buffer with. OC_FUSE_GROUP=0 in the environment disables
 *     grouping; OC_DEBUG=2 logs every group decision. BN parameters whose
 *     update is fused into the BN backward row kernel stay there (rule 2).
 * An assign whose value one elementwise (or per-row) kernel computes is
 * written in place when nothing reads the old value later
 * (OC_ASSIGN_INPLACE=0 keeps the copy). fusion = 0 gives one kernel per
 * primitive (and keeps every assign's copy, and never groups).
 */
#ifndef OODC_FUSE_H
#define OODC_FUSE_H

#include "kir.h"

/* Inline cost units: cheap elementwise 1, expensive (exp, log, ...) 4,
 * rng 8, layout ops 0. A node used more than once (or read through an
 * expanding broadcast) is inlined while its cost is at most REUSE_COST;
 * any node whose inlined expression would exceed MAX_COST is materialized. */
#define OC_FUSE_REUSE_COST 12
#define OC_FUSE_MAX_COST 96
/* ... and any node more than MAX_DEPTH inlined nodes deep (long chains of
 * free layout ops) too, which bounds the kernel builder's recursion. */
#define OC_FUSE_MAX_DEPTH 256
/* A node read through a broadcast that expands it k times is inlined only
 * while cost * min(k, 16) <= EXPAND_BUDGET: the log of a softplus of a
 * [B,Z] tensor (cost 8) is not recomputed for each of 10 classes, a
 * per-channel rsqrt(var + eps) (cost 3) is. */
#define OC_FUSE_EXPAND_BUDGET 48
/* A reduction of at least SPLIT_MIN points to one value is split (rule 2)
 * into a row kernel of at least SPLIT_ROWS rows and a sum of the rows
 * (OC_SPLIT_REDUCTIONS=0 in the environment keeps it whole). */
#define OC_FUSE_SPLIT_MIN 65536
#define OC_FUSE_SPLIT_ROWS 64

/* Bounds of a grouped kernel (rule 4): members, and distinct buffers,
 * which become the generated CUDA function's parameters (48 pointers stay
 * well inside the 4 KiB of kernel parameters every CUDA version allows,
 * and keep the signature short). */
#define OC_FUSE_GROUP_MAX 32
#define OC_FUSE_GROUP_MAX_SLOTS 48

struct oc_fuse_opts {
    int fusion; /* 0: one kernel per primitive */
    int debug;  /* >= 2: log every decision (accepted and rejected) */
    FILE *log;  /* where decisions go (NULL: stderr) */
};

/* Builds the kernel program of g (which must verify). Every input, param
 * and state gets a buffer; dead nodes (reaching no output and no assign)
 * are dropped. The program keeps a pointer to g. Split reductions add
 * nodes with ids from g->nnodes on (the program's `extra`), which kernel
 * slots and temp buffers may name; g itself is not changed. */
enum oc_status oc_pass_fuse(const struct oc_graph *g, const struct oc_fuse_opts *o,
                            struct oc_kprog **out, struct oc_err *err);

#endif
