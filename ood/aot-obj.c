/* aot-obj.c - the read-only data object of an ahead-of-time compiled
 * scorer: the weights and constants blob as one LLVM constant global,
 * emitted with TargetMachineEmitToFile like the kernels (codegen's
 * oc_llvm_emit_object), so no C compiler ever parses a multi-megabyte
 * array initializer. The object holds nothing but the bytes and the symbol:
 * its content is a function of the data alone.
 */
#include "aot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_LLVM

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

void oc_aot_host(char *triple, size_t ntriple, char *cpu, size_t ncpu)
{
    char *t = LLVMGetDefaultTargetTriple();
    char *c = LLVMGetHostCPUName();
    if (triple && ntriple) snprintf(triple, ntriple, "%s", t);
    if (cpu && ncpu) snprintf(cpu, ncpu, "%s", c);
    LLVMDisposeMessage(t);
    LLVMDisposeMessage(c);
}

enum oc_status oc_aot_emit_blob(const char *path, const char *sym, const void *data, size_t n,
                                struct oc_err *err)
{
    if (n > 0xffffffffu)
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "aot: %zu bytes of weights: at most 4 GiB", n);
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *msg = NULL;
    enum oc_status st = OC_OK;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        st = oc_err_set(err, OC_ERR_DEVICE, "aot: no LLVM target for %s: %s", triple, msg ? msg : "");
        if (msg) LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return st;
    }
    /* a data-only object: the generic CPU, PIC like the kernels */
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, "generic", "",
                                                      LLVMCodeGenLevelDefault, LLVMRelocPIC,
                                                      LLVMCodeModelDefault);
    if (!tm) {
        st = oc_err_set(err, OC_ERR_DEVICE, "aot: cannot create a target machine for %s", triple);
        LLVMDisposeMessage(triple);
        return st;
    }
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("oodc_aot_blob", ctx);
    LLVMSetTarget(mod, triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
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
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    if (!tmp) {
        st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
    } else {
        snprintf(tmp, plen + 8, "%s.tmp", path);
        msg = NULL;
        if (LLVMTargetMachineEmitToFile(tm, mod, tmp, LLVMObjectFile, &msg)) {
            st = oc_err_set(err, OC_ERR_IO, "aot: writing %s: %s", path, msg ? msg : "");
            remove(tmp);
        } else if (rename(tmp, path)) {
            st = oc_err_set(err, OC_ERR_IO, "aot: cannot rename %s to %s", tmp, path);
            remove(tmp);
        }
        if (msg) LLVMDisposeMessage(msg);
        free(tmp);
    }
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    LLVMDisposeMessage(triple);
    return st;
}

#else /* !OC_HAVE_LLVM */

void oc_aot_host(char *triple, size_t ntriple, char *cpu, size_t ncpu)
{
    if (triple && ntriple) snprintf(triple, ntriple, "unknown");
    if (cpu && ncpu) snprintf(cpu, ncpu, "unknown");
}

enum oc_status oc_aot_emit_blob(const char *path, const char *sym, const void *data, size_t n,
                                struct oc_err *err)
{
    return oc_err_set(err, OC_ERR_UNSUPPORTED, "oodc compile --target cpu needs LLVM: built without LLVM");
}

#endif
