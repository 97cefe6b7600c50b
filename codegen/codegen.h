/* codegen.h - the code generators: kernel IR (passes/kir.h) -> machine code.
 *
 * CPU: every loop kernel becomes one LLVM function
 *     void k_<hash>(void **bufs, int64_t begin, int64_t end)
 * over the chunk [begin, end) of its collapsed leading row loops
 * (oc_kir_outer_extent; bufs[i] is the kernel's slot i), optimized with the default<O3> pipeline for the host
 * CPU's name and features and compiled by ORC LLJIT. One module-building
 * path serves the JIT and object-file emission (the AOT scorer). Library
 * kernels (matmul, conv) are not generated: the runtime calls BLAS.
 *
 * Without LLVM (OC_HAVE_LLVM unset) the functions exist and report
 * OC_ERR_UNSUPPORTED "built without LLVM".
 */
#ifndef OODC_CODEGEN_H
#define OODC_CODEGEN_H

#include "../passes/kir.h"

typedef void (*oc_kernel_fn)(void **bufs, int64_t begin, int64_t end);

/* An LLVM JIT owned by a runtime context: thread-safe LLVM context, target
 * machine for the host, LLJIT, and the in-memory cache of compiled kernels
 * keyed by structural hash. Not shared between threads. */
struct oc_llvm;

/* 1 when this build has the LLVM backend. */
int oc_llvm_available(void);

/* debug >= 3 prints the generated LLVM IR (before and after optimization). */
enum oc_status oc_llvm_new(struct oc_llvm **out, int debug, struct oc_err *err);
void oc_llvm_free(struct oc_llvm *j);

/* Compiles the loop kernels of ks (fns[i] = NULL for library kernels);
 * kernels whose structural hash is already compiled are not compiled again.
 * The functions stay valid until oc_llvm_free. debug >= 3 prints the IR
 * (the larger of this and the context's level applies). */
enum oc_status oc_llvm_compile(struct oc_llvm *j, struct oc_kernel *const *ks, int n,
                               oc_kernel_fn *fns, int debug, struct oc_err *err);

/* Rows a generated function processes together (in [begin, end) blocks
 * of this many, with the rows innermost so that they vectorize), or 0 for
 * one row at a time. Reductions over leading axes (a sum over the batch of
 * a [B,C] tensor) are blocked; so are reductions over short rows (under 32
 * elements, e.g. 10 classes) when there is real work per element. The
 * executor aligns its chunks to it. */
#define OC_LLVM_ROW_BLOCK 32
int oc_llvm_row_block(const struct oc_kernel *k);

/* Number of distinct kernels compiled so far, and cache hits. */
void oc_llvm_stats(const struct oc_llvm *j, int *compiled, int *hits);

/* Emits the loop kernels of ks, optimized for the host (or for `triple` /
 * `cpu` / `features` when given), as an object file at path (AOT). */
enum oc_status oc_llvm_emit_object(struct oc_kernel *const *ks, int n, const char *path,
                                   const char *triple, const char *cpu, const char *features,
                                   struct oc_err *err);

/* Emits an object file at path holding only `data` (n bytes, at most
 * 4 GiB) as the read-only, 64-byte-aligned, hidden symbol `sym`, for the
 * generic host CPU, position-independent: an AOT artifact's weights, which
 * no C compiler then has to parse as an array initializer. */
enum oc_status oc_llvm_emit_data(const char *path, const char *sym, const void *data, size_t n,
                                 struct oc_err *err);

/* The host's LLVM target triple and CPU name ("unknown" without LLVM). */
void oc_llvm_host(char *triple, size_t ntriple, char *cpu, size_t ncpu);

#endif
