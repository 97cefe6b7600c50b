/* llvm-impl.h - what the LLVM backend files share among themselves: the
 * module builder (llvm-emit.c) used by both the JIT and object emission
 * (llvm-jit.c). Only included when OC_HAVE_LLVM is set. */
#ifndef OODC_LLVM_IMPL_H
#define OODC_LLVM_IMPL_H

#include "codegen.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

/* Adds one function per kernel (named k->sym) to mod, built in ctx. Library
 * kernels are skipped. Calls to the Philox helpers (oc_rng_normal_at,
 * oc_rng_uniform_at) and libm (tanhf, log1pf, ...) stay external. */
enum oc_status oc_llvm_emit_kernels(LLVMContextRef ctx, LLVMModuleRef mod,
                                    struct oc_kernel *const *ks, int n, struct oc_err *err);

/* Runs default<O3> over mod for tm (host CPU name and features). */
enum oc_status oc_llvm_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, struct oc_err *err);

/* A target machine for the host (or the given triple/cpu/features). */
enum oc_status oc_llvm_target_machine(const char *triple, const char *cpu, const char *features,
                                      LLVMTargetMachineRef *out, struct oc_err *err);

#endif
