/* numerics.h - OC_CHECK_NUMERICS=1: the executors' NaN/Inf guard
 * (runtime/numerics.c), internal to runtime/.
 *
 * With the knob on, the CPU executor (exec.c) and the CUDA executor
 * (cuda-exec.c) call a check after every kernel: it scans every float
 * buffer the kernel wrote (the kernel IR's slots marked `written`, each
 * naming its graph node) and, at the first non-finite value, fails the run
 * with OC_ERR_NUMERIC and a message naming the kernel, the graph node (id,
 * op, dtype and shape, name or label), the element and the value, e.g.
 *
 *   OC_CHECK_NUMERICS: kernel k_3f9a_log_mul (#2 of 5) wrote -inf at element
 *   3 [0,3] of node %4 (log, f32[2,4]); ...
 *
 * and, when the kernel's own operands already held a non-finite value, the
 * node it came from. The executors read the knob once, when they compile;
 * with it off the cost is one branch per kernel launch.
 */
#ifndef OODC_RUNTIME_NUMERICS_H
#define OODC_RUNTIME_NUMERICS_H

#include "../passes/kir.h"

struct oc_cuda;

/* 1 when $OC_CHECK_NUMERICS is set and not "0". */
int oc_numerics_enabled(void);

/* Kernel `ki` of p has just run on the CPU; bufp[b] holds buffer b. OC_OK
 * when every float value it wrote is finite, else OC_ERR_NUMERIC with the
 * message in err. */
enum oc_status oc_numerics_check_host(const struct oc_kprog *p, int ki, void *const *bufp,
                                      struct oc_err *err);

/* The same for a kernel launched on the context's stream: the buffers it
 * wrote are copied to the host (which waits for the kernel). devp[b] is
 * buffer b's device address (an oc_devptr). */
enum oc_status oc_numerics_check_cuda(struct oc_cuda *cu, const struct oc_kprog *p, int ki,
                                      const unsigned long long *devp, struct oc_err *err);

#endif
