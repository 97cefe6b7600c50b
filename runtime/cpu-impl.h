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

/* ---------------------------------------------------------------- library calls */

/* Scratch bytes a library kernel needs (the im2col matrix). */
size_t oc_cpu_lib_scratch(const struct oc_kernel *k);
/* Runs a library kernel: args[0] the result, args[1..2] the operands. */
void oc_cpu_lib_run(const struct oc_kernel *k, void **args, void *scratch);

#endif
