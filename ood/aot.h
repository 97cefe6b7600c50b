/* aot.h - ahead-of-time compiled, deployable scorers (`oodc compile`).
 *
 * Data flow of oc_aot_compile (target cpu; target cuda below):
 *   checkpoint + scorer (+ T, eps, class statistics)
 *   -> graphs: for a perturbing scorer with eps != 0 the gradient graph
 *      (model, the scorer's objective, autodiff w.r.t. the input, outputs
 *      "dir" = sign(grad) and "pred"), then the scoring graph (model on
 *      x + eps * dir, head outputs cast to f64, the scorer's score: outputs
 *      "score" and, unperturbed, "pred") - the same graphs and precisions as
 *      `oodc eval` (ood/eval.c), so the artifact reproduces its scores
 *   -> simplify -> fusion -> memory plan (the CPU executor's passes)
 *   -> kernels.o: the loop kernels through oc_llvm_emit_object (the JIT's
 *      module path, default<O3>, PIC) for a portable x86-64-v3 or the host
 *   -> weights.o: every param, state, fixed input (T, class statistics, the
 *      RNG step) and constant in one 64-byte aligned read-only blob, an LLVM
 *      constant global
 *   -> plan.c: the kernel programs as tables (runtime/aot-rt/aot-rt.h)
 *   -> the system C compiler builds the runtime (runtime/aot-rt/aot-rt.c,
 *      embedded in oodc) and plan.c, links libscorer.so (only the scorer.h
 *      API exported) and the relocatable scorer.o
 *   -> DIR: scorer.h, libscorer.so, scorer.o, README, CMakeLists.txt,
 *      scorer.pc, example.c
 * Target cuda: the same graphs, fusion and memory plan; the loop kernels
 * become CUDA C (codegen/cuda-emit.c) and, through NVRTC, PTX for
 * compute_<sm> (--arch, default sm_80); library kernels become the steps
 * of runtime/cuda-exec.c's cuBLAS / im2col plans (aot-cuda.c); the PTX
 * and the weights are pulled into plan.o with the assembler's .incbin,
 * and the system C compiler builds the launcher (runtime/aot-rt/
 * aot-rt-cuda.c: the driver API and cuBLAS through dlopen) into
 * libscorer.so, which then needs only libc, libm, libdl and pthreads.
 * Every output is a function of the inputs only (no paths, dates or
 * addresses; fixed compiler flags; names and weights in sorted order), so
 * the same inputs give byte-identical files.
 */
#ifndef OODC_OOD_AOT_H
#define OODC_OOD_AOT_H

#include <stdio.h>

#include "eval.h"
#include "train.h"

struct oc_aot_opts {
    const struct oc_checkpoint *ck; /* the model and its weights */
    const char *scorer;             /* a registry name: "baseline+t", "odin", ... */
    double T;                       /* temperature (scorers that tune T); > 0 */
    double eps;                     /* input perturbation (scorers that tune eps); >= 0 */
    int batch;                      /* the compiled (maximum) batch, >= 1 */
    const char *target;             /* "cpu" (default) or "cuda" */
    const char *arch;               /* cuda: "sm_80" (default), "sm_90", ...: PTX for compute_XY */
    const char *cpu;                /* LLVM CPU name; NULL: "x86-64-v3" on x86-64, else generic */
    const char *features;           /* LLVM feature string; NULL: the CPU's own */
    int native;                     /* 1: the host CPU and its features (cpu/features ignored) */
    const struct oc_class_stats *cs; /* scorers that need features (Mahalanobis) */
    const char *cc;                 /* C compiler command; NULL: $CC, else "cc" */
    int blas;                       /* 1 (default): OpenBLAS when oodc has it; 0: plain loops */
    int fusion;                     /* 1 (default) */
    int keep_build;                 /* 1: keep DIR/build (plan.c, runtime, objects) */
    FILE *log;                      /* progress (NULL: none) */
};
/* T 1, eps 0, batch 1, target "cpu", blas 1, fusion 1, everything else 0. */
struct oc_aot_opts oc_aot_opts_default(void);

/* What was built. */
struct oc_aot_result {
    int nprog;            /* 1, or 2 with a gradient pass */
    int nkernels;         /* kernels per call, over all programs */
    int nloop;            /* distinct generated loop kernels */
    size_t blob_bytes;    /* weights and constants */
    size_t arena_bytes;   /* the shared arena */
    char cpu[128];        /* the CPU the kernels were generated for ("compute_80" for cuda) */
    int blas;             /* 1 if the artifact calls OpenBLAS (cpu) or cuBLAS (cuda) */
    int cuda;             /* 1 for target cuda */
    size_t ptx_bytes;     /* cuda: the PTX embedded (kernels and helpers) */
};

/* Builds the artifact in out_dir (created). Errors name what is wrong: an
 * unknown scorer or one that does not apply to the checkpoint's head
 * (OC_ERR_INVALID), a missing class statistic, T <= 0 or eps < 0, the C
 * compiler failing (OC_ERR_IO with its output), target "cuda" in a build
 * without it (OC_ERR_UNSUPPORTED). */
enum oc_status oc_aot_compile(const struct oc_aot_opts *o, const char *out_dir,
                              struct oc_aot_result *r, struct oc_err *err);

/* The runtime source embedded in oodc (runtime/aot-rt/, regenerated into
 * ood/aot-rt-blob.c by runtime/aot-rt/embed.sh): aot-rt.h, aot-rt-api.h,
 * aot-rt.c (cpu) and aot-rt-cuda.c (cuda). */
extern const char oc_aot_rt_h[];
extern const char oc_aot_rt_api_h[];
extern const char oc_aot_rt_c[];
extern const char oc_aot_rt_cuda_c[];

/* ---------------------------------------------------------------- aot-text.c */

/* What the text files of an artifact say about it. */
struct oc_aot_desc {
    const char *scorer, *label, *summary; /* the registry entry */
    const char *arch, *head;
    int c, h, w, classes, batch;
    double T, eps;
    int uses_T, uses_eps;  /* the scorer tunes T / eps */
    int native;            /* generated for the build host */
    const char *cpu, *triple;
    int blas, blas_available;
    uint64_t ck_hash;      /* hash of the checkpoint's tensors */
    int cuda;              /* target cuda: PTX for compute_<sm>, the launcher */
    int sm;
};
/* scorer.h, README, CMakeLists.txt, scorer.pc and example.c of an artifact
 * (malloc'd; NULL when out of memory). */
char *oc_aot_header_text(const struct oc_aot_desc *d);
char *oc_aot_readme_text(const struct oc_aot_desc *d);
char *oc_aot_cmake_text(const struct oc_aot_desc *d);
char *oc_aot_pc_text(const struct oc_aot_desc *d);
char *oc_aot_example_text(const struct oc_aot_desc *d);

/* ---------------------------------------------------------------- aot-cuda.c */

/* "sm_80", "compute_80" or "80" (NULL: sm_80) -> 80. */
enum oc_status oc_aot_cuda_arch(const char *arch, int *sm, struct oc_err *err);
/* OC_OK when this oodc can build cuda artifacts for sm (the CUDA backend
 * built, NVRTC loadable and knowing sm); else OC_ERR_UNSUPPORTED saying
 * what is missing. nvrtc (may be NULL) gets "NVRTC 13.0". */
enum oc_status oc_aot_cuda_check(int sm, char *nvrtc, size_t n, struct oc_err *err);

struct oc_aot_cuda_out {
    char *tables;          /* C appended to plan.c (malloc'd) */
    size_t ptx_bytes, lib_ptx_bytes;
    int nloop;             /* generated kernels */
    int helpers;           /* lib.ptx (im2col / col2im / permute) is needed */
    int gemm;              /* a step calls cuBLAS */
    char nvrtc[32];
};
/* The device code and launch tables of the programs, in order: writes
 * kernels.cu, kernels.ptx (and lib.cu, lib.ptx) in dir. */
struct oc_kprog;
enum oc_status oc_aot_cuda_build(struct oc_kprog *const *progs, int nprog, int sm, const char *dir,
                                 struct oc_aot_cuda_out *out, struct oc_err *err);

#endif
