/* llvm-jit.c - the CPU code path after the kernel IR: a module of kernel
 * functions (llvm-emit.c), the default<O3> pipeline for the host CPU (and
 * the vectorizer's ordered horizontal sums rewritten as trees), then
 * either ORC LLJIT (oc_llvm_compile, with an in-memory cache keyed by the
 * kernels' structural hash) or an object file (oc_llvm_emit_object, for the
 * AOT scorer). Everything LLVM owns (thread-safe context, target machine,
 * JIT) hangs off struct oc_llvm, which a runtime context owns: no globals
 * beyond LLVM's own idempotent target registration.
 */
#include "codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_LLVM

#include "llvm-impl.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <math.h>

struct cache_ent {
    uint64_t hash;
    oc_kernel_fn fn;
};

struct oc_llvm {
    LLVMOrcThreadSafeContextRef tsctx;
    LLVMOrcLLJITRef jit;
    LLVMTargetMachineRef tm;
    LLVMOrcJITDylibRef dylib;
    int debug;
    struct cache_ent *cache;
    int ncache, capcache;
    int hits, nmodules;
};

int oc_llvm_available(void) { return 1; }

static enum oc_status llvm_error(struct oc_err *err, const char *what, LLVMErrorRef e)
{
    char *msg = LLVMGetErrorMessage(e);
    oc_err_set(err, OC_ERR_DEVICE, "llvm: %s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return OC_ERR_DEVICE;
}

/* LLVM reports missed optimizations (a loop that could not be vectorized)
 * as warnings and remarks on stderr; they are expected here, not errors. */
static void diag_handler(LLVMDiagnosticInfoRef di, void *ctx)
{
    if (LLVMGetDiagInfoSeverity(di) != LLVMDSError) return;
    char *s = LLVMGetDiagInfoDescription(di);
    fprintf(stderr, "llvm: %s\n", s);
    LLVMDisposeMessage(s);
}

static void init_targets(void)
{
    /* LLVM's registries: idempotent, and shared by every oc_llvm */
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
}

enum oc_status oc_llvm_target_machine(const char *triple, const char *cpu, const char *features,
                                      LLVMTargetMachineRef *out, struct oc_err *err)
{
    init_targets();
    char *dtriple = LLVMGetDefaultTargetTriple();
    char *hcpu = LLVMGetHostCPUName();
    char *hfeat = LLVMGetHostCPUFeatures();
    const char *t = triple ? triple : dtriple;
    LLVMTargetRef target;
    char *msg = NULL;
    enum oc_status st = OC_OK;
    if (LLVMGetTargetFromTriple(t, &target, &msg)) {
        st = oc_err_set(err, OC_ERR_DEVICE, "llvm: no target for %s: %s", t, msg ? msg : "");
    } else {
        *out = LLVMCreateTargetMachine(target, t, cpu ? cpu : hcpu, features ? features : hfeat,
                                       LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                       LLVMCodeModelDefault);
        if (!*out) st = oc_err_set(err, OC_ERR_DEVICE, "llvm: cannot create a target machine for %s", t);
    }
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeMessage(dtriple);
    LLVMDisposeMessage(hcpu);
    LLVMDisposeMessage(hfeat);
    return st;
}

/* The vectorizer keeps a float sum's partial sums in vector lanes (the
 * order of a kernel's reduction is unspecified: llvm-emit.c's loop hints),
 * but without fast-math flags on the adds (which LLVM 14's C API cannot
 * set) it adds the lanes up at the end with an ordered
 * llvm.vector.reduce.fadd: 16 dependent scalar adds. For a row of 10
 * classes that chain is most of the row's latency. Each such call is
 * rewritten here as a tree of halving vector adds (4 steps for 16 lanes),
 * which is the same licence (another order of the same sum). */
static void tree_sums(LLVMModuleRef mod)
{
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        if (len < 24 || strncmp(name, "llvm.vector.reduce.fadd.", 24)) continue;
        LLVMUseRef u = LLVMGetFirstUse(f);
        while (u) {
            LLVMValueRef call = LLVMGetUser(u);
            u = LLVMGetNextUse(u);
            if (!LLVMIsACallInst(call) || LLVMGetNumArgOperands(call) != 2) continue;
            LLVMValueRef start = LLVMGetOperand(call, 0), v = LLVMGetOperand(call, 1);
            LLVMTypeRef vt = LLVMTypeOf(v);
            if (LLVMGetTypeKind(vt) != LLVMVectorTypeKind) continue;
            unsigned n = LLVMGetVectorSize(vt);
            if (n < 2 || n > 64 || (n & (n - 1))) continue;
            LLVMPositionBuilderBefore(b, call);
            while (n > 1) {
                unsigned h = n / 2;
                LLVMValueRef lo[32], hi[32];
                for (unsigned i = 0; i < h; i++) {
                    lo[i] = LLVMConstInt(i32, i, 0);
                    hi[i] = LLVMConstInt(i32, h + i, 0);
                }
                LLVMValueRef un = LLVMGetUndef(LLVMTypeOf(v));
                LLVMValueRef a = LLVMBuildShuffleVector(b, v, un, LLVMConstVector(lo, h), "");
                LLVMValueRef c = LLVMBuildShuffleVector(b, v, un, LLVMConstVector(hi, h), "");
                v = LLVMBuildFAdd(b, a, c, "");
                n = h;
            }
            LLVMValueRef s = LLVMBuildExtractElement(b, v, LLVMConstInt(i32, 0, 0), "");
            /* -0 + s == s for every s (the vectorizer's usual start) */
            int negzero = 0;
            if (LLVMIsAConstantFP(start)) {
                LLVMBool lossy;
                double d = LLVMConstRealGetDouble(start, &lossy);
                negzero = d == 0 && signbit(d);
            }
            if (!negzero) s = LLVMBuildFAdd(b, start, s, "");
            LLVMReplaceAllUsesWith(call, s);
            LLVMInstructionEraseFromParent(call);
        }
    }
    LLVMDisposeBuilder(b);
}

enum oc_status oc_llvm_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, struct oc_err *err)
{
    LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
    LLVMErrorRef e = LLVMRunPasses(mod, "default<O3>", tm, o);
    LLVMDisposePassBuilderOptions(o);
    if (e) return llvm_error(err, "default<O3>", e);
    const char *ts = getenv("OC_TREE_SUMS");
    if (!ts || strcmp(ts, "0")) tree_sums(mod);
    return OC_OK;
}

/* The functions generated code may call: the Philox helpers and what libm
 * calls and LLVM's intrinsics lower to. Defined as absolute symbols so the
 * JIT never depends on what the executable happens to export. */
static enum oc_status define_helpers(struct oc_llvm *j, struct oc_err *err)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } syms[] = {
#define S(f) {#f, (void (*)(void))f}
        S(oc_rng_normal_at), S(oc_rng_uniform_at),
        S(expf), S(exp), S(logf), S(log), S(powf), S(pow), S(tanhf), S(tanh),
        S(log1pf), S(log1p), S(sqrtf), S(sqrt), S(exp2f), S(exp2), S(fabsf), S(fabs),
        S(sinf), S(sin), S(cosf), S(cos), S(fmaf), S(fma), S(expm1f), S(expm1),
        S(memcpy), S(memset), S(memmove),
#undef S
    };
    enum { N = sizeof syms / sizeof *syms };
    LLVMJITCSymbolMapPair pairs[N];
    for (int i = 0; i < N; i++) {
        pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j->jit, syms[i].name);
        pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].fn;
        pairs[i].Sym.Flags.GenericFlags =
            LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        pairs[i].Sym.Flags.TargetFlags = 0;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
    LLVMErrorRef e = LLVMOrcJITDylibDefine(j->dylib, mu);
    if (e) return llvm_error(err, "defining helper symbols", e);
    /* anything else (libcalls LLVM may introduce) from the process */
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit),
                                                             NULL, NULL);
    if (e) return llvm_error(err, "process symbol generator", e);
    LLVMOrcJITDylibAddGenerator(j->dylib, gen);
    return OC_OK;
}

enum oc_status oc_llvm_new(struct oc_llvm **out, int debug, struct oc_err *err)
{
    *out = NULL;
    struct oc_llvm *j = calloc(1, sizeof *j);
    if (!j) return oc_err_set(err, OC_ERR_NOMEM, "llvm: out of memory");
    j->debug = debug;
    enum oc_status st = oc_llvm_target_machine(NULL, NULL, NULL, &j->tm, err);
    if (st) {
        free(j);
        return st;
    }
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
    if (e) {
        LLVMDisposeTargetMachine(j->tm);
        free(j);
        return llvm_error(err, "detecting the host", e);
    }
    LLVMOrcLLJITBuilderRef b = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(b, jtmb);
    e = LLVMOrcCreateLLJIT(&j->jit, b);
    if (e) {
        LLVMDisposeTargetMachine(j->tm);
        free(j);
        return llvm_error(err, "creating the JIT", e);
    }
    j->tsctx = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextSetDiagnosticHandler(LLVMOrcThreadSafeContextGetContext(j->tsctx), diag_handler, NULL);
    j->dylib = LLVMOrcLLJITGetMainJITDylib(j->jit);
    st = define_helpers(j, err);
    if (st) {
        oc_llvm_free(j);
        return st;
    }
    *out = j;
    return OC_OK;
}

void oc_llvm_free(struct oc_llvm *j)
{
    if (!j) return;
    if (j->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
        if (e) LLVMConsumeError(e);
    }
    if (j->tsctx) LLVMOrcDisposeThreadSafeContext(j->tsctx);
    if (j->tm) LLVMDisposeTargetMachine(j->tm);
    free(j->cache);
    free(j);
}

static oc_kernel_fn cache_get(const struct oc_llvm *j, uint64_t h)
{
    for (int i = 0; i < j->ncache; i++)
        if (j->cache[i].hash == h) return j->cache[i].fn;
    return NULL;
}

static int cache_put(struct oc_llvm *j, uint64_t h, oc_kernel_fn fn)
{
    if (j->ncache == j->capcache) {
        int nc = j->capcache ? j->capcache * 2 : 64;
        struct cache_ent *c = realloc(j->cache, sizeof *c * (size_t)nc);
        if (!c) return -1;
        j->cache = c;
        j->capcache = nc;
    }
    j->cache[j->ncache++] = (struct cache_ent){h, fn};
    return 0;
}

static void print_module(LLVMModuleRef mod, const char *when)
{
    char *s = LLVMPrintModuleToString(mod);
    fprintf(stderr, "; ---- LLVM IR %s ----\n%s", when, s);
    LLVMDisposeMessage(s);
}

enum oc_status oc_llvm_compile(struct oc_llvm *j, struct oc_kernel *const *ks, int n,
                               oc_kernel_fn *fns, int debug, struct oc_err *err)
{
    if (j->debug > debug) debug = j->debug;
    struct oc_kernel **todo = malloc(sizeof *todo * ((size_t)n + 1));
    if (!todo) return oc_err_set(err, OC_ERR_NOMEM, "llvm: out of memory");
    int ntodo = 0;
    for (int i = 0; i < n; i++) {
        fns[i] = NULL;
        if (ks[i]->kind != OC_K_LOOP) continue;
        if (cache_get(j, ks[i]->hash)) {
            j->hits++;
            continue;
        }
        int dup = 0;
        for (int t = 0; t < ntodo && !dup; t++) dup = todo[t]->hash == ks[i]->hash;
        if (dup) j->hits++;
        else todo[ntodo++] = ks[i];
    }
    enum oc_status st = OC_OK;
    if (ntodo) {
        LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(j->tsctx);
        char name[64];
        snprintf(name, sizeof name, "oodc_kernels_%d", j->nmodules++);
        LLVMModuleRef mod = LLVMModuleCreateWithNameInContext(name, ctx);
        LLVMSetTarget(mod, LLVMOrcLLJITGetTripleString(j->jit));
        LLVMSetDataLayout(mod, LLVMOrcLLJITGetDataLayoutStr(j->jit));
        st = oc_llvm_emit_kernels(ctx, mod, todo, ntodo, err);
        if (!st && debug >= 3) print_module(mod, "as generated");
        char *msg = NULL;
        if (!st && LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg))
            st = oc_err_set(err, OC_ERR_DEVICE, "llvm: internal error: invalid module: %.900s", msg);
        if (msg) LLVMDisposeMessage(msg);
        if (!st) st = oc_llvm_optimize(mod, j->tm, err);
        if (!st && debug >= 3) print_module(mod, "after default<O3>");
        if (st) {
            LLVMDisposeModule(mod);
        } else {
            LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, j->tsctx);
            LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, j->dylib, tsm);
            if (e) {
                LLVMOrcDisposeThreadSafeModule(tsm);
                st = llvm_error(err, "adding a module to the JIT", e);
            }
        }
        for (int t = 0; t < ntodo && !st; t++) {
            LLVMOrcExecutorAddress addr = 0;
            LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, todo[t]->sym);
            if (e) {
                st = llvm_error(err, todo[t]->name, e);
                break;
            }
            if (cache_put(j, todo[t]->hash, (oc_kernel_fn)(uintptr_t)addr))
                st = oc_err_set(err, OC_ERR_NOMEM, "llvm: out of memory");
        }
    }
    free(todo);
    for (int i = 0; i < n && !st; i++)
        if (ks[i]->kind == OC_K_LOOP) fns[i] = cache_get(j, ks[i]->hash);
    return st;
}

void oc_llvm_stats(const struct oc_llvm *j, int *compiled, int *hits)
{
    if (compiled) *compiled = j ? j->ncache : 0;
    if (hits) *hits = j ? j->hits : 0;
}

/* The module's triple and data layout are the target machine's. */
static void set_module_target(LLVMModuleRef mod, LLVMTargetMachineRef tm)
{
    char *t = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, t);
    LLVMDisposeMessage(t);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
}

/* Writes mod as an object file at path, through a temporary name and a
 * rename, so path holds a whole object or nothing. */
static enum oc_status write_object(LLVMTargetMachineRef tm, LLVMModuleRef mod, const char *path,
                                   struct oc_err *err)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + 8), *msg = NULL;
    if (!tmp) return oc_err_set(err, OC_ERR_NOMEM, "llvm: out of memory");
    snprintf(tmp, len + 8, "%s.tmp", path);
    enum oc_status st = OC_OK;
    if (LLVMTargetMachineEmitToFile(tm, mod, tmp, LLVMObjectFile, &msg)) {
        st = oc_err_set(err, OC_ERR_IO, "llvm: writing %s: %s", path, msg ? msg : "");
        remove(tmp);
    } else if (rename(tmp, path)) {
        st = oc_err_set(err, OC_ERR_IO, "llvm: cannot rename %s to %s", tmp, path);
        remove(tmp);
    }
    if (msg) LLVMDisposeMessage(msg);
    free(tmp);
    return st;
}

enum oc_status oc_llvm_emit_object(struct oc_kernel *const *ks, int n, const char *path,
                                   const char *triple, const char *cpu, const char *features,
                                   struct oc_err *err)
{
    LLVMTargetMachineRef tm;
    enum oc_status st = oc_llvm_target_machine(triple, cpu, features, &tm, err);
    if (st) return st;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(ctx, diag_handler, NULL);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("oodc_aot", ctx);
    set_module_target(mod, tm);
    st = oc_llvm_emit_kernels(ctx, mod, ks, n, err);
    if (!st) st = oc_llvm_optimize(mod, tm, err);
    if (!st) st = write_object(tm, mod, path, err);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return st;
}

void oc_llvm_host(char *triple, size_t ntriple, char *cpu, size_t ncpu)
{
    char *t = LLVMGetDefaultTargetTriple();
    char *c = LLVMGetHostCPUName();
    if (triple && ntriple) snprintf(triple, ntriple, "%s", t);
    if (cpu && ncpu) snprintf(cpu, ncpu, "%s", c);
    LLVMDisposeMessage(t);
    LLVMDisposeMessage(c);
}

enum oc_status oc_llvm_emit_data(const char *path, const char *sym, const void *data, size_t n,
                                 struct oc_err *err)
{
    if (n > 0xffffffffu)
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "llvm: %zu bytes of data: at most 4 GiB", n);
    /* a data-only object: the generic CPU, PIC like the kernels */
    LLVMTargetMachineRef tm;
    enum oc_status st = oc_llvm_target_machine(NULL, "generic", "", &tm, err);
    if (st) return st;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("oodc_aot_blob", ctx);
    set_module_target(mod, tm);
    /* at least one byte: an empty array would be a zero-sized symbol */
    static const char zero[1] = {0};
    const char *bytes = n ? data : zero;
    unsigned len = n ? (unsigned)n : 1;
    LLVMValueRef init = LLVMConstStringInContext(ctx, bytes, len, 1);
    LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), sym);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMExternalLinkage);
    LLVMSetVisibility(gv, LLVMHiddenVisibility);
    LLVMSetAlignment(gv, 64);
    st = write_object(tm, mod, path, err);
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return st;
}

#else /* !OC_HAVE_LLVM */

struct oc_llvm {
    int unused;
};

int oc_llvm_available(void) { return 0; }

enum oc_status oc_llvm_new(struct oc_llvm **out, int debug, struct oc_err *err)
{
    *out = NULL;
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "the CPU backend needs LLVM: built without LLVM");
}

void oc_llvm_free(struct oc_llvm *j) { free(j); }

enum oc_status oc_llvm_compile(struct oc_llvm *j, struct oc_kernel *const *ks, int n,
                               oc_kernel_fn *fns, int debug, struct oc_err *err)
{
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "the CPU backend needs LLVM: built without LLVM");
}

void oc_llvm_stats(const struct oc_llvm *j, int *compiled, int *hits)
{
    if (compiled) *compiled = 0;
    if (hits) *hits = 0;
}

enum oc_status oc_llvm_emit_object(struct oc_kernel *const *ks, int n, const char *path,
                                   const char *triple, const char *cpu, const char *features,
                                   struct oc_err *err)
{
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "object emission needs LLVM: built without LLVM");
}

void oc_llvm_host(char *triple, size_t ntriple, char *cpu, size_t ncpu)
{
    if (triple && ntriple) snprintf(triple, ntriple, "unknown");
    if (cpu && ncpu) snprintf(cpu, ncpu, "unknown");
}

enum oc_status oc_llvm_emit_data(const char *path, const char *sym, const void *data, size_t n,
                                 struct oc_err *err)
{
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "object emission needs LLVM: built without LLVM");
}

#endif
