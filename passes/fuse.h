/* fuse.h - fusion: partitions a graph's nodes into kernels and produces the
 * kernel program (kernel IR in kir.h) that the backends compile.
 *
 * Rules, in order (DESIGN.md "Fusion and the kernel IR"):
 *  1. elementwise chains fuse; layout ops dissolve into index maps;
 *  2. a reduction fuses with its elementwise producers and with consumers
 *     that read only its rows (softmax, log-softmax + NLL, BN statistics and
 *     normalization, ...); sibling reductions over one space share a kernel;
 *  3. matmul / conv are library calls and barriers; elementwise neighbours
 *     fuse into the kernels before and after them;
 *  5. a node is recomputed in several places only while its inlined cost is
 *     small (OC_FUSE_REUSE_COST); otherwise it is materialized once, and
 *     kernels merge only over one iteration space, where a node is computed
 *     once per point and stage.
 * (Rule 4, one kernel for the whole optimizer update across parameters of
 * different shapes, is not implemented yet: each parameter's update is one
 * fused kernel.) fusion = 0 gives one kernel per primitive.
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

struct oc_fuse_opts {
    int fusion; /* 0: one kernel per primitive */
    int debug;  /* >= 2: log every decision (accepted and rejected) */
    FILE *log;  /* where decisions go (NULL: stderr) */
};

/* Builds the kernel program of g (which must verify). Every input, param
 * and state gets a buffer; dead nodes (reaching no output and no assign)
 * are dropped. The program keeps a pointer to g. */
enum oc_status oc_pass_fuse(const struct oc_graph *g, const struct oc_fuse_opts *o,
                            struct oc_kprog **out, struct oc_err *err);

#endif
