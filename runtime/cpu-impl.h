/* cpu-impl.h - what the CPU runtime files share among themselves: the
 * thread pool (threadpool.c) and the library calls (cpu-lib.c: BLAS
 * matmul, im2col convolution and its adjoints). */
#ifndef OODC_CPU_IMPL_H
#define OODC_CPU_IMPL_H

#include "../passes/kir.h"

/* ---------------------------------------------------------------- thread pool */

/* A fixed pool of nthreads-1 workers; the caller is the last participant. */
struct oc_pool;
struct oc_pool *oc_pool_new(int nthreads);
void oc_pool_free(struct oc_pool *p);
int oc_pool_size(const struct oc_pool *p);

typedef void (*oc_pool_fn)(void *ctx, int64_t begin, int64_t end);
/* Runs fn over [0, n) in chunks of about `grain` items, in parallel, and
 * returns when all are done. Not reentrant. */
void oc_pool_run(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_fn fn, void *ctx);
/* The same, telling fn which participant runs the chunk (0 is the caller,
 * < oc_pool_size): per-thread scratch and partial results. */
typedef void (*oc_pool_tid_fn)(void *ctx, int64_t begin, int64_t end, int tid);
void oc_pool_run_tid(struct oc_pool *p, int64_t n, int64_t grain, oc_pool_tid_fn fn, void *ctx);

/* ---------------------------------------------------------------- library calls */

/* Calls BLAS single-threaded from now on: library kernels split their work
 * over the pool instead (idempotent; process-wide, as OpenBLAS's setting is). */
void oc_cpu_lib_init(void);
/* Scratch bytes a library kernel needs per thread (im2col matrices, partial
 * weight gradients). */
size_t oc_cpu_lib_scratch(const struct oc_kernel *k);
/* Runs a library kernel over the pool: args[0] the result, args[1..2] the
 * operands; scratch holds oc_pool_size(pool) * oc_cpu_lib_scratch(k) bytes. */
void oc_cpu_lib_run(const struct oc_kernel *k, void **args, void *scratch, struct oc_pool *pool);

#endif
