/* cuda.h - the CUDA code generator: kernel IR (passes/kir.h) -> CUDA C that
 * NVRTC compiles (runtime/cuda-nvrtc.c) and the driver API launches
 * (runtime/cuda-exec.c).
 *
 * Every loop kernel becomes one function
 *     extern "C" __global__ void k_<16 hex>_<ops>(T0 *s0, const T1 *__restrict__ s1, ...)
 * whose parameters are the kernel's slots in order (written slots are
 * plain pointers, read-only slots const __restrict__), named by the
 * kernel's structural hash plus the ops it holds, so a profile line leads
 * back to the graph and structurally equal kernels share one function.
 * Every size is a compile-time constant and every loop is grid-stride, so
 * a kernel is correct for any grid; the runtime sizes the grid from the
 * device's multiprocessor count (oc_cuda_grid). The text is a pure function
 * of the kernel's structure: the same graph gives the same source, byte for
 * byte (no node ids, no addresses, no dates).
 *
 * Mappings (oc_cuda_launch_of decides from the kernel IR alone):
 *   THREAD  one thread per row, the stages' loops run sequentially in it;
 *           elementwise kernels (no reduced axes) are this with one point
 *           per row, plus a 4-wide path with 16-byte loads/stores of the
 *           slots read and written at the point's own index;
 *   WARP    one warp per row: lanes stride the row's points (coalesced),
 *           reductions combine with warp shuffles;
 *   BLOCK   one block per row: as WARP, then across warps through shared
 *           memory.
 * A WARP/BLOCK kernel of a single row (a reduction to one value, the final
 * sum of a split reduction) has no row loop: the first group takes it.
 * Per-row stores are made by the group's first thread, after a barrier
 * (__syncwarp / __syncthreads) when the group's threads read, for their
 * points, an element at the index a row store writes: fusion may write an
 * assign in place (the buffer read and written by one kernel), and every
 * read of the old value must come first.
 * Reductions keep the interpreter's semantics: NaN propagates through
 * reduce_max, argmax takes the first NaN or else the first maximum (ties
 * across threads resolved by position), i32 sums wrap, u8 sums saturate.
 *
 * This file's code needs no CUDA toolkit: it is plain text generation, so
 * the golden-source tests run on any machine.
 */
#ifndef OODC_CUDA_H
#define OODC_CUDA_H

#include "../passes/kir.h"

#include <stddef.h>

/* Threads per block of every generated kernel. */
#define OC_CUDA_BLOCK 256

enum oc_cuda_map {
    OC_CUDA_MAP_THREAD,
    OC_CUDA_MAP_WARP,
    OC_CUDA_MAP_BLOCK,
};

const char *oc_cuda_map_name(enum oc_cuda_map m); /* "thread", "warp", "block" */

/* How a loop kernel is launched. */
struct oc_cuda_launch {
    enum oc_cuda_map map;
    int block;               /* threads per block (OC_CUDA_BLOCK) */
    int64_t rows;            /* rows (points of an elementwise kernel) */
    int64_t inner;           /* points per row (1 without reduced axes) */
    int64_t units;           /* grid-stride work items: rows, or 4-point groups (vector) */
    int64_t units_per_block; /* items one block takes per grid-stride step */
    int vector;              /* elementwise kernel with the 4-wide path */
    int index64;             /* indices are 64-bit (a size reaches 2^30) */
};

/* The launch shape of loop kernel k (what oc_cuda_emit_kernel generates). */
void oc_cuda_launch_of(const struct oc_kernel *k, struct oc_cuda_launch *out);

/* Blocks to launch on a device with sm_count multiprocessors: enough to
 * cover the work, at most one full wave (2048 threads per SM); >= 1. */
unsigned oc_cuda_grid(const struct oc_cuda_launch *l, int sm_count);

/* The generated function's name: "k_<16 hex>_<ops>", at most 63 chars. */
void oc_cuda_kernel_name(const struct oc_kernel *k, char *buf, size_t n);

/* The helper definitions every generated translation unit starts with
 * (Philox, conversions, NaN-aware min/max, warp and block reductions). */
const char *oc_cuda_prelude(void);

/* The CUDA C of one loop kernel (without the prelude), malloc'd into *out.
 * Fails with OC_ERR_UNSUPPORTED for a library kernel or an op/dtype
 * combination the backend cannot generate (the message names both). */
enum oc_status oc_cuda_emit_kernel(const struct oc_kernel *k, char **out, struct oc_err *err);

/* One translation unit: a banner, the prelude, then every distinct loop
 * kernel of ks (by structural hash, first occurrence order); library
 * kernels are skipped. malloc'd into *out. *nemitted (may be NULL) gets
 * the number of functions. */
enum oc_status oc_cuda_emit_program(struct oc_kernel *const *ks, int n, char **out, int *nemitted,
                                    struct oc_err *err);

#endif
