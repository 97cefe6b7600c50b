/* aot-cuda.c - the cuda target of `oodc compile`: the kernel programs that
 * aot.c planned (the same graphs, fusion and memory plan as the cpu
 * target) become device code and launch tables for the artifact's
 * launcher (runtime/aot-rt/aot-rt-cuda.c):
 *
 *   loop kernels -> CUDA C (codegen/cuda-emit.c, one translation unit,
 *     the text runtime/cuda-exec.c compiles) -> NVRTC -> PTX for
 *     compute_<sm> (the driver JIT-compiles it for the device at
 *     oc_scorer_create, so newer GPUs run it too) -> build/kernels.ptx
 *   library kernels -> cuda-blas.c's plans (oc_cuda_plan_lib: cuBLAS GEMMs,
 *     im2col / col2im / permute helpers, fills), the steps as tables; the
 *     helpers' CUDA C (oc_cuda_lib_source) -> PTX -> build/lib.ptx
 *   -> C tables appended to plan.c (struct ocrt_cuda of aot-rt.h), and
 *     the PTX and weights pulled into plan.o by the assembler's .incbin,
 *     so building the artifact needs the system C compiler only.
 * The CUDA C sources stay in the build folder (kernels.cu, lib.cu) for
 * --keep-build readers and for the tests, which run the same source on
 * oodc's host emulation behind a stand-in driver.
 */
#include "aot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/cuda.h"
#include "../runtime/cuda-impl.h"

_Static_assert(sizeof(struct oc_convp) == 18 * sizeof(long long), "struct oc_convp is 18 long longs");

enum oc_status oc_aot_cuda_arch(const char *arch, int *sm, struct oc_err *err)
{
    const char *a = arch && *arch ? arch : "sm_80";
    const char *digits = !strncmp(a, "sm_", 3) ? a + 3 : !strncmp(a, "compute_", 8) ? a + 8 : a;
    char *end = NULL;
    long v = strtol(digits, &end, 10);
    if (!*digits || *end || v < 50 || v > 200)
        return oc_err_set(err, OC_ERR_INVALID, "aot: --arch %s: not an NVIDIA architecture (sm_80, sm_90, ...)", a);
    *sm = (int)v;
    return OC_OK;
}

/* NVRTC, opened; a missing toolkit is a clear, user-facing error. */
static enum oc_status open_nvrtc(int sm, struct oc_nvrtc **nv, struct oc_err *err)
{
    if (!oc_cuda_built())
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "aot: --target cuda: this oodc was built without the CUDA toolkit (use --target cpu)");
    struct oc_err e = {0};
    if (oc_nvrtc_open(nv, &e))
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "aot: --target cuda needs NVRTC at compile time: %s", e.msg);
    int ma, mi;
    oc_nvrtc_version(*nv, &ma, &mi);
    if (!oc_nvrtc_has_arch(*nv, sm)) {
        oc_nvrtc_close(*nv);
        *nv = NULL;
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "aot: NVRTC %d.%d cannot compile for sm_%d (--arch)", ma, mi, sm);
    }
    return OC_OK;
}

enum oc_status oc_aot_cuda_check(int sm, char *nvrtc, size_t n, struct oc_err *err)
{
    struct oc_nvrtc *nv = NULL;
    enum oc_status st = open_nvrtc(sm, &nv, err);
    if (st) return st;
    int ma, mi;
    oc_nvrtc_version(nv, &ma, &mi);
    if (nvrtc && n) snprintf(nvrtc, n, "NVRTC %d.%d", ma, mi);
    oc_nvrtc_close(nv);
    return OC_OK;
}

static enum oc_status write_file(const char *dir, const char *name, const void *data, size_t n,
                                 struct oc_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    enum oc_status st = OC_OK;
    if (!f || fwrite(data, 1, n, f) != n)
        st = oc_err_set(err, OC_ERR_IO, "aot: cannot write %s: %s", path, strerror(errno));
    if (f && fclose(f) && !st) st = oc_err_set(err, OC_ERR_IO, "aot: cannot write %s: %s", path, strerror(errno));
    return st;
}

/* CUDA C -> PTX for compute_<sm>, both written to the build folder. */
static enum oc_status to_ptx(struct oc_nvrtc *nv, const char *src, int sm, const char *dir, const char *base,
                             size_t *ptx_bytes, struct oc_err *err)
{
    char name[64], arch[32];
    snprintf(name, sizeof name, "%s.cu", base);
    snprintf(arch, sizeof arch, "compute_%d", sm);
    enum oc_status st = write_file(dir, name, src, strlen(src), err);
    if (st) return st;
    struct oc_nvrtc_opts no = {arch, 0, 0, 0};
    struct oc_nvrtc_out out;
    if ((st = oc_nvrtc_compile(nv, src, name, &no, &out, err))) {
        oc_nvrtc_out_free(&out);
        return st;
    }
    snprintf(name, sizeof name, "%s.ptx", base);
    *ptx_bytes = strlen(out.image);
    st = write_file(dir, name, out.image, *ptx_bytes, err);
    oc_nvrtc_out_free(&out);
    return st;
}

static void put_step(FILE *f, const struct oc_lstep *s, int f64)
{
    int64_t cp[18];
    memcpy(cp, &s->cp, sizeof cp);
    fprintf(f, "    {.kind = %d, .f64 = %d, .ta = %d, .tb = %d, .a = %d, .b = %d, .c = %d, .src = %d, .dst = %d,\n",
            (int)s->kind, f64, s->ta, s->tb, s->a, s->b, s->c, s->src, s->dst);
    fprintf(f, "     .m = %lld, .n = %lld, .k = %lld, .lda = %lld, .ldb = %lld, .ldc = %lld,\n", (long long)s->m,
            (long long)s->n, (long long)s->k, (long long)s->lda, (long long)s->ldb, (long long)s->ldc);
    fprintf(f, "     .sa = %lld, .sb = %lld, .sc = %lld, .batch = %lld, .aoff = %lld, .boff = %lld, .coff = %lld,\n",
            (long long)s->sa, (long long)s->sb, (long long)s->sc, (long long)s->batch, (long long)s->aoff,
            (long long)s->boff, (long long)s->coff);
    fprintf(f, "     .alpha = %.17g, .beta = %.17g, .count = %lld, .cp = {", s->alpha, s->beta, (long long)s->count);
    for (int i = 0; i < 18; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)cp[i]);
    fprintf(f, "}},\n");
}

enum oc_status oc_aot_cuda_build(struct oc_kprog *const *progs, int nprog, int sm, const char *dir,
                                 struct oc_aot_cuda_out *out, struct oc_err *err)
{
    memset(out, 0, sizeof *out);
    struct oc_nvrtc *nv = NULL;
    enum oc_status st = open_nvrtc(sm, &nv, err);
    if (st) return st;
    int nk = 0;
    for (int p = 0; p < nprog; p++) nk += progs[p]->nkernel;
    struct oc_kernel **ks = malloc(sizeof *ks * ((size_t)nk + 1));
    struct oc_lplan *plans = calloc((size_t)nk + 1, sizeof *plans);
    char *src = NULL, *text = NULL;
    size_t tlen = 0;
    FILE *f = NULL;
    if (!ks || !plans) {
        st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
        goto done;
    }
    nk = 0;
    for (int p = 0; p < nprog; p++)
        for (int i = 0; i < progs[p]->nkernel; i++) ks[nk++] = progs[p]->kernel[i];

    /* the loop kernels: one module, as cuda-exec.c compiles a program */
    int nloop = 0;
    if ((st = oc_cuda_emit_program(ks, nk, &src, &nloop, err))) goto done;
    if ((st = to_ptx(nv, src, sm, dir, "kernels", &out->ptx_bytes, err))) goto done;
    out->nloop = nloop;

    /* the library kernels: cuda-blas.c's plans */
    int helpers = 0, nstep = 0;
    int64_t scratch[2] = {0, 0};
    for (int i = 0; i < nk; i++) {
        if (ks[i]->kind == OC_K_LOOP) continue;
        if ((st = oc_cuda_plan_lib(ks[i], 0, &plans[i], err))) goto done;
        size_t es = oc_dtype_size(ks[i]->lib->dtype);
        for (int s = 0; s < 2; s++)
            if (plans[i].scratch[s] * (int64_t)es > scratch[s]) scratch[s] = plans[i].scratch[s] * (int64_t)es;
        for (int j = 0; j < plans[i].nstep; j++) {
            enum oc_lstep_kind k = plans[i].step[j].kind;
            helpers |= k == OC_LS_IM2COL || k == OC_LS_COL2IM || k == OC_LS_PERMUTE;
            out->gemm |= k == OC_LS_GEMM;
        }
        nstep += plans[i].nstep;
    }
    if (helpers && (st = to_ptx(nv, oc_cuda_lib_source(), sm, dir, "lib", &out->lib_ptx_bytes, err))) goto done;

    /* the tables */
    f = open_memstream(&text, &tlen);
    if (!f) {
        st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
        goto done;
    }
    fprintf(f,
            "\n/* ---- target cuda: the device code and its launch tables (aot-rt.h) ---- */\n"
            "\n"
            "/* the weights (weights.bin) and the PTX (kernels.ptx%s), NUL-terminated,\n"
            " * read-only data of this object */\n"
            "__asm__(\".section .rodata\\n\"\n"
            "        \".balign 64\\n.globl ocrt_blob\\n.hidden ocrt_blob\\n\"\n"
            "        \"ocrt_blob:\\n.incbin \\\"weights.bin\\\"\\n.byte 0\\n\"\n"
            "        \".balign 64\\n.globl ocrt_ptx\\n.hidden ocrt_ptx\\n\"\n"
            "        \"ocrt_ptx:\\n.incbin \\\"kernels.ptx\\\"\\n.byte 0\\n\"\n",
            helpers ? ", lib.ptx" : "");
    if (helpers)
        fprintf(f, "        \".balign 64\\n.globl ocrt_lib_ptx\\n.hidden ocrt_lib_ptx\\n\"\n"
                   "        \"ocrt_lib_ptx:\\n.incbin \\\"lib.ptx\\\"\\n.byte 0\\n\"\n");
    fprintf(f, "        \".previous\\n\");\n"
               "HIDDEN extern const char ocrt_ptx[];\n");
    if (helpers) fprintf(f, "HIDDEN extern const char ocrt_lib_ptx[];\n");
    fprintf(f, "\nstatic const struct ocrt_step steps[%d] = {\n", nstep > 0 ? nstep : 1);
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < plans[i].nstep; j++) put_step(f, &plans[i].step[j], plans[i].dtype == OC_F64);
    if (!nstep) fprintf(f, "    {.kind = 0},\n");
    fprintf(f, "};\n\nstatic const struct ocrt_cuda_kernel cuda_kernels[%d] = {\n", nk > 0 ? nk : 1);
    for (int i = 0, first = 0; i < nk; i++) {
        const struct oc_kernel *k = ks[i];
        if (k->kind == OC_K_LOOP) {
            char name[64];
            struct oc_cuda_launch l;
            oc_cuda_kernel_name(k, name, sizeof name);
            oc_cuda_launch_of(k, &l);
            fprintf(f, "    {\"%s\", %lld, %lld, 0, 0}, /* %s */\n", name, (long long)(l.rows > 0 ? l.units : 0),
                    (long long)l.units_per_block, oc_cuda_map_name(l.map));
        } else {
            fprintf(f, "    {0, 0, 0, %d, %d}, /* %s: %s */\n", first, plans[i].nstep, k->name,
                    oc_op_name(k->lib->op));
            first += plans[i].nstep;
        }
    }
    if (!nk) fprintf(f, "    {0, 0, 0, 0, 0},\n");
    fprintf(f,
            "};\n\n"
            "HIDDEN const struct ocrt_cuda ocrt_cuda = {\n"
            "    \"compute_%d\", %d,\n"
            "    ocrt_ptx, %s,\n"
            "    %d, cuda_kernels,\n"
            "    %d, steps,\n"
            "    {%lld, %lld}, /* scratch bytes */\n"
            "    %d, /* cuBLAS */\n"
            "};\n",
            sm, sm, helpers ? "ocrt_lib_ptx" : "0", nk, nstep, (long long)scratch[0], (long long)scratch[1],
            out->gemm);
    if (fclose(f)) {
        f = NULL;
        text = NULL;
        st = oc_err_set(err, OC_ERR_NOMEM, "aot: out of memory");
        goto done;
    }
    f = NULL;
    out->tables = text;
    text = NULL;
    out->helpers = helpers;
    int ma, mi;
    oc_nvrtc_version(nv, &ma, &mi);
    snprintf(out->nvrtc, sizeof out->nvrtc, "NVRTC %d.%d", ma, mi);
done:
    if (f) fclose(f);
    free(text);
    if (plans)
        for (int i = 0; i < nk; i++) oc_cuda_plan_free(&plans[i]);
    free(plans);
    free(ks);
    free(src);
    oc_nvrtc_close(nv);
    return st;
}
