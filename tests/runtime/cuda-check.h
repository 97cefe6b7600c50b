/* cuda-check.h - shared by the CUDA test files: collecting the distinct
 * kernels of many kernel programs, compiling them with NVRTC in one
 * translation unit per architecture (NVRTC needs no GPU), and reading
 * ptxas's resource report (registers, stack, spills) for every function. */
#ifndef OODC_TEST_CUDA_CHECK_H
#define OODC_TEST_CUDA_CHECK_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../codegen/cuda.h"
#include "../../passes/fuse.h"
#include "../../runtime/cuda-impl.h"

struct kset_ent {
    uint64_t hash;
    char name[64];
    char *text;
    enum oc_cuda_map map;
    int rowk; /* has reduced axes */
};

struct kset {
    struct kset_ent *e;
    int n, cap;
    int nlib;      /* library kernels seen (not generated) */
    int nprog;     /* programs added */
};

static inline void kset_free(struct kset *s)
{
    for (int i = 0; i < s->n; i++) free(s->e[i].text);
    free(s->e);
    memset(s, 0, sizeof *s);
}

/* Emits every loop kernel of p that the set does not hold yet. */
static inline void kset_add_prog(struct kset *s, const struct oc_kprog *p, const char *tag)
{
    s->nprog++;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind != OC_K_LOOP) {
            s->nlib++;
            continue;
        }
        int dup = 0;
        for (int j = 0; j < s->n && !dup; j++) dup = s->e[j].hash == k->hash;
        if (dup) continue;
        struct oc_err err = {0};
        char *text = NULL;
        cr_assert_eq(oc_cuda_emit_kernel(k, &text, &err), OC_OK, "%s: kernel %s: %s", tag, k->name,
                     err.msg);
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 256;
            s->e = realloc(s->e, sizeof *s->e * (size_t)s->cap);
            cr_assert_not_null(s->e);
        }
        struct kset_ent *e = &s->e[s->n++];
        e->hash = k->hash;
        oc_cuda_kernel_name(k, e->name, sizeof e->name);
        e->text = text;
        struct oc_cuda_launch l;
        oc_cuda_launch_of(k, &l);
        e->map = l.map;
        e->rowk = k->rmask != 0;
    }
}

/* Fuses g (fusion on or off) and adds its kernels. */
static inline void kset_add_graph(struct kset *s, const struct oc_graph *g, int fusion, const char *tag)
{
    struct oc_err err = {0};
    struct oc_kprog *p = NULL;
    struct oc_fuse_opts fo = {.fusion = fusion};
    cr_assert_eq(oc_pass_fuse(g, &fo, &p, &err), OC_OK, "%s (fusion %d): %s", tag, fusion, err.msg);
    kset_add_prog(s, p, tag);
    oc_kprog_free(p);
}

/* Opens NVRTC or skips the test with the reason (no toolkit here). */
static inline struct oc_nvrtc *nvrtc_or_skip(void)
{
    struct oc_err err = {0};
    struct oc_nvrtc *nv = NULL;
    if (!oc_cuda_built()) cr_skip_test("this build has no CUDA toolkit: NVRTC checks skipped");
    if (oc_nvrtc_open(&nv, &err)) cr_skip_test("NVRTC is not loadable here: %s", err.msg);
    return nv;
}

/* Compiles kernels [from, to) of the set in one translation unit for
 * arch (e.g. "sm_90") with ptxas's report, and checks that every kernel is
 * in the report without local-memory spills or a stack frame. Returns the
 * number of problems (each printed). */
static inline int kset_compile(struct oc_nvrtc *nv, const struct kset *s, int from, int to,
                               const char *arch)
{
    size_t len = strlen(oc_cuda_prelude()) + 64;
    for (int i = from; i < to; i++) len += strlen(s->e[i].text) + 2;
    char *src = malloc(len);
    cr_assert_not_null(src);
    size_t p = (size_t)snprintf(src, len, "%s", oc_cuda_prelude());
    for (int i = from; i < to; i++) p += (size_t)snprintf(src + p, len - p, "\n%s", s->e[i].text);
    struct oc_nvrtc_opts o = {arch, 1, 0, 0};
    struct oc_nvrtc_out out;
    struct oc_err err = {0};
    enum oc_status st = oc_nvrtc_compile(nv, src, "kset.cu", &o, &out, &err);
    if (st) {
        fprintf(stderr, "%s\n", err.msg);
        FILE *f = fopen(OC_BINARY_DIR "/tests/cuda-kset-failed.cu", "w");
        if (f) {
            fputs(src, f);
            fclose(f);
            fprintf(stderr, "(source in %s)\n", OC_BINARY_DIR "/tests/cuda-kset-failed.cu");
        }
    }
    cr_assert_eq(st, OC_OK, "NVRTC failed for %s", arch);
    cr_assert(out.cubin && out.size > 0, "a CUBIN for %s", arch);
    int max = to - from + 8, bad = 0;
    struct oc_ptxas_fn *fns = calloc((size_t)max, sizeof *fns);
    cr_assert_not_null(fns);
    int nf = oc_ptxas_parse(out.log, fns, max);
    cr_expect_eq(nf, to - from, "%s: ptxas reports %d functions for %d kernels", arch, nf, to - from);
    for (int i = from; i < to; i++) {
        const struct oc_ptxas_fn *f = NULL;
        for (int j = 0; j < nf && j < max && !f; j++)
            if (!strcmp(fns[j].name, s->e[i].name)) f = &fns[j];
        if (!f) {
            fprintf(stderr, "%s: %s missing from ptxas's report\n", arch, s->e[i].name);
            bad++;
            continue;
        }
        if (f->spill_stores || f->spill_loads || f->stack) {
            fprintf(stderr, "%s: %s (%s kernel, %s mapping) spills: %d B stores, %d B loads, %d B stack\n",
                    arch, f->name, s->e[i].rowk ? "row" : "elementwise", oc_cuda_map_name(s->e[i].map),
                    f->spill_stores, f->spill_loads, f->stack);
            bad++;
        }
    }
    if (bad) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/cuda-kset-%s.cu", OC_BINARY_DIR, arch);
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(src, f);
            fclose(f);
            fprintf(stderr, "(the translation unit is in %s)\n", path);
        }
    }
    free(fns);
    oc_nvrtc_out_free(&out);
    free(src);
    return bad;
}

#endif
