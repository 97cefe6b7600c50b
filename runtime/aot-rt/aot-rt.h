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

/* ---------------------------------------------------------------- target cuda
 *
 * The same programs and buffers, run by aot-rt-cuda.c on an NVIDIA GPU.
 * Loop kernels are functions of the embedded PTX module, launched with
 * OCRT_CUDA_BLOCK threads per block on min(ceil(units / units_per_block),
 * multiprocessors * 2048 / OCRT_CUDA_BLOCK) blocks (every generated kernel
 * is grid-stride, so any grid is correct: oodc's oc_cuda_grid). Library
 * kernels are lists of steps, exactly oodc's cuda-blas.c plans: cuBLAS
 * strided-batched GEMMs (column-major), the im2col / col2im / permute
 * helper kernels of the second PTX module, and fills. */
enum { OCRT_CUDA_BLOCK = 256 };

enum ocrt_step_kind { /* as runtime/cuda-impl.h enum oc_lstep_kind */
    OCRT_STEP_GEMM,
    OCRT_STEP_IM2COL,
    OCRT_STEP_COL2IM,
    OCRT_STEP_PERMUTE,
    OCRT_STEP_ZERO,
};

struct ocrt_step {
    int kind;
    int f64;           /* double (else float) data */
    int ta, tb;
    int a, b, c;       /* GEMM operands: 0..2 the kernel's slots, 3 and 4 the scratch buffers */
    int src, dst;      /* helpers and fills, the same numbering */
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc, batch;
    int64_t aoff, boff, coff; /* element offsets */
    double alpha, beta;
    int64_t count;     /* elements a helper or fill writes */
    int64_t cp[18];    /* the helpers' struct oc_convp (runtime/cuda-lib.h), by value */
};

struct ocrt_cuda_kernel {
    const char *fn;                 /* loop kernels: the PTX entry */
    int64_t units, units_per_block; /* loop kernels: the grid's work (0 units: no launch) */
    int first_step, nstep;          /* library kernels: their steps */
};

struct ocrt_cuda {
    const char *arch;       /* the PTX's virtual architecture, "compute_80" */
    int min_sm;             /* the oldest device it runs on, 80 */
    const char *ptx;        /* the kernels module (NUL-terminated PTX) */
    const char *lib_ptx;    /* the helper kernels' module, or NULL */
    int nkernel;            /* every program's kernels, in order */
    const struct ocrt_cuda_kernel *kernel;
    int nstep;
    const struct ocrt_step *step;
    int64_t scratch_bytes[2];
    int gemm;               /* 1 when a step calls cuBLAS */
};

/* Defined by the generated plan.c of a cuda artifact. */
extern const struct ocrt_cuda ocrt_cuda;

#endif
