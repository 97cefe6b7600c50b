/* aot-rt.h - the plan tables of an ahead-of-time compiled scorer: what
 * `oodc compile` generates (plan.c) and the artifact's runtime (aot-rt.c)
 * reads. Plain C, no oodc headers: both files are compiled by the system C
 * compiler when the artifact is built, and this header is never installed.
 *
 * Data flow inside an artifact:
 *   images (n x C x H x W floats) -> IO buffer "x" (rows n..batch-1 zero)
 *   -> programs in order (ODIN / Mahalanobis with eps != 0: the gradient
 *      program writes IO "dir" and "pred", then the scoring program reads
 *      "x" and "dir"; otherwise one program) -> IO "score" (f64), "pred"
 *      (i32) -> the caller's arrays.
 * A program is a list of kernels over one global table of buffers. A
 * buffer lives in the shared arena (temps, placed by oodc's memory plan; one
 * arena serves every program since they run one after another), in the
 * embedded read-only blob (weights, fixed inputs such as T, constants), in
 * an IO buffer, or in its own allocation.
 *
 * Loop kernels are the LLVM functions of the kernel object,
 *     void k_<hash>(void **bufs, int64_t begin, int64_t end),
 * run over [0, outer) split across the thread pool exactly as oodc's CPU
 * executor runs them. Library kernels (matmul, convolution and its
 * adjoints) are GEMM calls here, as in oodc's runtime/cpu-lib.c.
 */
#ifndef OCRT_AOT_RT_H
#define OCRT_AOT_RT_H

#include <stdint.h>

typedef void (*ocrt_kernel_fn)(void **bufs, int64_t begin, int64_t end);

enum ocrt_where {
    OCRT_ARENA, /* offset into the shared arena */
    OCRT_BLOB,  /* offset into the embedded blob (read-only) */
    OCRT_IO,    /* IO buffer `io` */
    OCRT_OWN,   /* its own zeroed allocation */
};

struct ocrt_buf {
    int where;
    int io;
    int64_t offset;
    int64_t bytes;
};

enum ocrt_kind {
    OCRT_LOOP,
    OCRT_MATMUL,
    OCRT_CONV2D,
    OCRT_CONV2D_GRAD_INPUT,
    OCRT_CONV2D_GRAD_WEIGHT,
};

/* Library parameters (p[]):
 *   matmul: batch, M, N, K, trans_a, trans_b, lda, ldb, a_stride, b_stride
 *           (result [batch, M, N]; slot 0 the result, 1 and 2 the operands)
 *   conv*:  N, C, H, W, O, KH, KW, OH, OW, stride_h, stride_w, pad_h, pad_w
 *           (slots as oodc's kernel IR: conv2d y, x, w; grad_input dx, dy,
 *           w; grad_weight dw, x, dy) */
enum { OCRT_NPARAM = 13 };

struct ocrt_kernel {
    int kind;
    int nslot;
    const int32_t *slot; /* global buffer of each slot */
    ocrt_kernel_fn fn;   /* loop kernels */
    int64_t outer;       /* extent of the chunked loop */
    int64_t row_block;   /* chunks start at multiples of this many rows (0, 1: any) */
    int64_t points;      /* points of the iteration space (work estimate) */
    int f64;             /* library kernels: 1 for double, 0 for float */
    int64_t p[OCRT_NPARAM];
};

struct ocrt_prog {
    const char *name;
    int nkernel;
    const struct ocrt_kernel *kernel;
};

struct ocrt_io {
    const char *name;
    int64_t bytes;
};

struct ocrt_plan {
    int batch, c, h, w, classes;
    int nbuf;
    const struct ocrt_buf *buf;
    int nprog;
    const struct ocrt_prog *prog;
    int nio;
    const struct ocrt_io *io;
    int io_x, io_score, io_pred; /* io_pred < 0: no prediction */
    int score_f64;               /* the score buffer holds doubles (else floats) */
    int64_t arena_bytes;
    const unsigned char *blob;
    int64_t blob_bytes;
};

/* Defined by the generated plan.c. */
extern const struct ocrt_plan ocrt_plan;

#endif
