/* runtime.h - compiling a graph for a device and running it.
 *
 *   oc_compile(graph, "cpu", &opts, &ex, &err)   fuse -> plan memory -> codegen -> JIT
 *   oc_exec_set(ex, "x", &buf, &err)             bind an input / param / state (copied)
 *   oc_exec_run(ex, seed, &err)                  one step: kernels in plan order, then assigns
 *   oc_exec_get(ex, "loss", &out, &err)          copy an output (or a param/state) out
 *   oc_exec_free(ex)
 *
 * Semantics are the reference interpreter's (ir/interp.c): Philox draws,
 * params/state initialized by oc_init_fill with the run's seed at the first
 * run when unbound, assigns applied at the end of the step in node order
 * (outputs that read an assigned param see its value from the start of the
 * step). Values are computed in the graph's dtypes (f32 arithmetic for f32
 * nodes). Differences from the interpreter: a gather with an out-of-range
 * index reads the nearest valid position instead of failing.
 *
 * A runtime context (struct oc_rt) owns what is expensive to set up and
 * worth sharing between executables: the LLVM JIT with its compiled-kernel
 * cache (keyed by the kernels' structural hash) and the thread pool. An
 * executable made without one owns a private context. A context and the
 * executables using it are driven by one thread at a time (the pool's
 * workers are internal).
 *
 * Knobs (environment, as in CONVENTIONS.md): OC_FUSION=0 turns fusion off;
 * OC_DEBUG=1 prints the kernels and, when the executable is freed, a
 * per-kernel timing profile; 2 adds the fusion decisions; 3 the LLVM IR;
 * OC_CHECK_NUMERICS=1 scans every kernel's output and fails the run with
 * OC_ERR_NUMERIC at the first NaN/Inf, naming the kernel, the graph node,
 * the element and the value (runtime/numerics.h); OC_FUSE_GROUP=0 keeps the
 * optimizer's update kernels apart (fusion rule 4, passes/fuse.h).
 */
#ifndef OODC_RUNTIME_H
#define OODC_RUNTIME_H

#include "../ir/ir.h"

struct oc_rt;
struct oc_exec;
struct oc_kprog;

/* nthreads <= 0: all online cores. debug as OC_DEBUG. */
enum oc_status oc_rt_new(struct oc_rt **out, int nthreads, int debug, struct oc_err *err);
void oc_rt_free(struct oc_rt *rt);
int oc_rt_nthreads(const struct oc_rt *rt);
/* Kernels compiled so far, and compilations avoided by the cache. */
void oc_rt_cache_stats(const struct oc_rt *rt, int *compiled, int *hits);

struct oc_compile_opts {
    int fusion;       /* 1 (default): fuse; 0: one kernel per primitive. OC_FUSION=0 forces 0 */
    int debug;        /* the larger of this and OC_DEBUG is used */
    int nthreads;     /* for a private context: <= 0 all online cores */
    int inplace;      /* 1 (default): the planner may write a result over a dying operand */
    int poison;       /* 1: fill the arena with NaN bytes before every run (planner test) */
    int profile;      /* 1: time every kernel (implied by OC_DEBUG >= 1) */
    struct oc_rt *rt; /* shared runtime context, or NULL for a private one */
    int tf32;         /* cuda: -1 (default) $OC_TF32, 0 fp32 GEMMs, 1 TF32 allowed (training: 1) */
    int cuda_graph;   /* cuda: capture a step into a CUDA graph, replay it ($OC_CUDA_GRAPH=1) */
};

/* fusion 1, inplace 1, everything else 0. */
struct oc_compile_opts oc_compile_defaults(void);

/* Compiles g (which must verify) for `device` ("cpu"; NULL means "cpu").
 * opts NULL means oc_compile_defaults(). The executable keeps its own copy
 * of the graph. */
enum oc_status oc_compile(const struct oc_graph *g, const char *device,
                          const struct oc_compile_opts *opts, struct oc_exec **out,
                          struct oc_err *err);
/* Binds an input, param or state by name: float nodes accept f32 or f64
 * values (converted), others their own dtype; the shape must match. */
enum oc_status oc_exec_set(struct oc_exec *ex, const char *name, const struct oc_buf *v,
                           struct oc_err *err);
enum oc_status oc_exec_run(struct oc_exec *ex, uint64_t seed, struct oc_err *err);
/* Copies output `name` (or, when no output has that name, the current value
 * of the input/param/state `name`) into out, in the node's dtype. The caller
 * frees out with oc_buf_free. */
enum oc_status oc_exec_get(struct oc_exec *ex, const char *name, struct oc_buf *out,
                           struct oc_err *err);
void oc_exec_free(struct oc_exec *ex);

/* What was compiled: the kernel program (kernels, buffers, memory plan). */
const struct oc_kprog *oc_exec_program(const struct oc_exec *ex);

struct oc_exec_stats {
    int nkernels;         /* kernels per step (library calls included) */
    int nbuffers;         /* buffers (sources, outputs, temps) */
    int ntemps;           /* temps sharing the arena */
    size_t arena_bytes;   /* peak bytes of the arena */
    size_t temp_bytes;    /* bytes the temps would take without reuse */
    size_t pinned_bytes;  /* sources, outputs, assign values */
    int nruns;
};
void oc_exec_stats(const struct oc_exec *ex, struct oc_exec_stats *st);
/* Per-kernel timing table (calls, total and mean time), slowest first;
 * kernels are timed when compiled with opts.profile or OC_DEBUG >= 1. */
void oc_exec_profile(const struct oc_exec *ex, FILE *f);

#endif
