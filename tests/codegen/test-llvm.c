/* test-llvm.c - the LLVM backend below the executor: the JIT's structural
 * cache, object-file emission (the AOT path shares the module builder with
 * the JIT) and calling a JIT-compiled kernel directly over chunks of its
 * row loop, as the thread pool does. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../codegen/codegen.h"
#include "../../passes/fuse.h"
#include "../helpers/helpers.h"

static struct oc_kprog *program(struct oc_graph *g)
{
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_kprog *p;
    struct oc_err err = {0};
    struct oc_fuse_opts o = {1, 0, NULL};
    cr_assert_eq(oc_pass_fuse(g, &o, &p, &err), OC_OK, "%s", err.msg);
    return p;
}

static struct oc_graph *sample_graph(void)
{
    struct oc_graph *g = oc_graph_new("aot");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(4, 6));
    oc_tensor w = oc_input(g, "w", OC_F32, OC_SHAPE(3, 6));
    oc_output(g, "p", oc_softmax(g, oc_linear(g, oc_tanh(g, x), w, OC_NONE), 1));
    return g;
}

Test(llvm, object_file_holds_every_loop_kernel)
{
    struct oc_graph *g = sample_graph();
    struct oc_kprog *p = program(g);
    char path[] = "/tmp/oodc-aot-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    struct oc_err err = {0};
    cr_assert_eq(oc_llvm_emit_object(p->kernel, p->nkernel, path, NULL, NULL, NULL, &err), OC_OK,
                 "%s", err.msg);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    remove(path);
    cr_assert_gt(n, 4);
    cr_expect_eq(memcmp(buf, "\x7f" "ELF", 4), 0, "an ELF object");
    int nloop = 0;
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        if (k->kind != OC_K_LOOP) continue;
        nloop++;
        int found = 0;
        size_t len = strlen(k->sym);
        for (size_t o = 0; o + len <= n && !found; o++) found = !memcmp(buf + o, k->sym, len);
        cr_expect(found, "symbol %s missing from the object", k->sym);
    }
    cr_expect_eq(nloop, 2, "tanh before the matmul, softmax after it");
    oc_kprog_free(p);
    oc_graph_free(g);
}

Test(llvm, object_file_errors_name_the_path)
{
    struct oc_graph *g = sample_graph();
    struct oc_kprog *p = program(g);
    struct oc_err err = {0};
    cr_expect_neq(oc_llvm_emit_object(p->kernel, p->nkernel, "/nonexistent-dir/x.o", NULL, NULL,
                                      NULL, &err),
                  OC_OK);
    cr_expect(strstr(err.msg, "/nonexistent-dir/x.o"), "%s", err.msg);
    oc_kprog_free(p);
    oc_graph_free(g);
}

/* A kernel called directly in uneven chunks writes every row exactly as
 * one call over the whole range does. */
Test(llvm, chunks_cover_the_row_loop)
{
    struct oc_graph *g = oc_graph_new("rows");
    oc_output(g, "y", oc_log_softmax(g, oc_input(g, "x", OC_F32, OC_SHAPE(13, 7)), 1));
    struct oc_kprog *p = program(g);
    cr_assert_eq(p->nkernel, 1);
    struct oc_kernel *k = p->kernel[0];
    cr_assert_eq(oc_kir_outer_extent(k), 13);
    struct oc_llvm *j;
    struct oc_err err = {0};
    cr_assert_eq(oc_llvm_new(&j, 0, &err), OC_OK, "%s", err.msg);
    oc_kernel_fn fn;
    cr_assert_eq(oc_llvm_compile(j, &k, 1, &fn, 0, &err), OC_OK, "%s", err.msg);
    cr_assert_not_null(fn);
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(13, 7), 5, -3, 3);
    float whole[91], parts[91];
    for (int i = 0; i < 91; i++) parts[i] = -999;
    void *args[2];
    for (int s = 0; s < k->nslot; s++) args[s] = k->slot[s].written ? (void *)whole : x.data;
    fn(args, 0, 13);
    for (int s = 0; s < k->nslot; s++) args[s] = k->slot[s].written ? (void *)parts : x.data;
    fn(args, 0, 5);
    fn(args, 5, 6);
    fn(args, 6, 13);
    cr_expect_eq(memcmp(whole, parts, sizeof whole), 0);
    /* compiling the same structure again is a cache hit */
    int c0, h0, c1, h1;
    oc_llvm_stats(j, &c0, &h0);
    oc_kernel_fn fn2;
    cr_assert_eq(oc_llvm_compile(j, &k, 1, &fn2, 0, &err), OC_OK, "%s", err.msg);
    oc_llvm_stats(j, &c1, &h1);
    cr_expect_eq(fn2, fn);
    cr_expect_eq(c1, c0);
    cr_expect_eq(h1, h0 + 1);
    oc_buf_free(&x);
    oc_llvm_free(j);
    oc_kprog_free(p);
    oc_graph_free(g);
}
