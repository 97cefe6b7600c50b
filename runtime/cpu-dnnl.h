/* cpu-dnnl.h - the CPU convolutions through oneDNN (cpu-dnnl.c), kept to the
 * runtime: which implementation each convolution kernel of an executable
 * uses (im2col + OpenBLAS in cpu-lib.c, or oneDNN), and the oneDNN
 * primitives of those that use it. The executor creates one oc_dnnl per
 * executable at compile time and asks it first for every library kernel;
 * a kernel it does not take runs through oc_cpu_lib_run. */
#ifndef OODC_CPU_DNNL_H
#define OODC_CPU_DNNL_H

#include "../passes/kir.h"

/* OC_CONV=auto|im2col|dnnl. */
enum oc_conv_impl {
    OC_CONV_ENV = -1, /* read OC_CONV (unset or empty: auto) */
    OC_CONV_AUTO = 0, /* per kernel, by the measured rule oc_dnnl_prefer */
    OC_CONV_IM2COL,
    OC_CONV_DNNL, /* every f32 convolution (f64 ones stay on im2col) */
};

/* 1 when this build has oneDNN. */
int oc_dnnl_available(void);

/* Parses OC_CONV; an unknown value is OC_ERR_INVALID naming it. */
enum oc_status oc_dnnl_mode_env(enum oc_conv_impl *mode, struct oc_err *err);

/* The auto rule: 1 when oneDNN measured faster than im2col + OpenBLAS for
 * this convolution kernel (kind, geometry) run on `nthreads` threads. */
int oc_dnnl_prefer(enum oc_kkind kind, const struct oc_kconv *c, int nthreads);

struct oc_dnnl;

/* Chooses an implementation for every convolution kernel of kernels[0..n)
 * and creates the oneDNN primitives of those that use it, for `nthreads`
 * threads. *out may be NULL (nothing uses oneDNN; also in a build without
 * it). Fails when mode is OC_CONV_DNNL and oneDNN is missing or cannot run
 * an f32 convolution kernel, or on a bad OC_CONV. */
enum oc_status oc_dnnl_new(struct oc_dnnl **out, struct oc_kernel *const *kernels, int n,
                           int nthreads, enum oc_conv_impl mode, int debug, struct oc_err *err);
/* 1 when kernel i runs through oneDNN. d may be NULL. */
int oc_dnnl_uses(const struct oc_dnnl *d, int i);
/* Runs kernel i through oneDNN over args (slot order: result, operands),
 * its batch split over the pool, and returns 1; returns 0 without doing
 * anything when kernel i does not use oneDNN (d may be NULL): the caller
 * runs oc_cpu_lib_run. */
struct oc_pool;
int oc_dnnl_run(struct oc_dnnl *d, int i, void **args, struct oc_pool *pool);
void oc_dnnl_free(struct oc_dnnl *d);

#endif
