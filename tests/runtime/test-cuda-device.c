/* test-cuda-device.c - the CUDA runtime pieces that work without a GPU:
 * the clean refusal where there is no driver or device, NVRTC's errors
 * (log in the message, OC_DUMP_ON_ERROR files), the architecture choice,
 * NVRTC output through the kernel cache (miss, memory hit, disk hit,
 * corrupted entry recompiled, OC_NO_CACHE), ptxas report parsing, and, on
 * the host emulation, the caching allocator, graph-capture mode, the
 * debug profile and the executor's error messages. On a machine with a GPU
 * the refusal tests check the opposite (the device opens). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/cuda-impl.h"
#include "../../runtime/kcache.h"
#include "../helpers/helpers.h"
#include "cuda-check.h"

static char tmp[512];

static void setup(void)
{
    unsetenv("OC_NO_CACHE");
    unsetenv("OC_DEBUG");
    unsetenv("OC_DUMP_ON_ERROR");
    unsetenv("OC_CUDA_EMULATE");
    snprintf(tmp, sizeof tmp, "%s/tests/tmp-cuda-device-XXXXXX", OC_BINARY_DIR);
    cr_assert_not_null(mkdtemp(tmp));
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(path);
}

static void teardown(void) { rm_tree(tmp); }

TestSuite(cuda_device, .init = setup, .fini = teardown);

/* ---------------------------------------------------------------- no GPU: clean errors */

Test(cuda_device, asking_for_the_gpu_without_one_is_a_clear_error)
{
    struct oc_err err = {0};
    enum oc_status st = oc_cuda_probe(&err);
    struct oc_cuda *cu = NULL;
    struct oc_err err2 = {0};
    enum oc_status st2 = oc_cuda_new(&cu, NULL, &err2);
    if (st == OC_OK) {
        /* a machine with a GPU: it opens */
        cr_assert_eq(st2, OC_OK, "probe ok but oc_cuda_new failed: %s", err2.msg);
        struct oc_cuda_info info;
        oc_cuda_get_info(cu, &info);
        cr_assert_gt(info.sm_count, 0);
        cr_assert(info.arch[0], "an NVRTC architecture is chosen");
        oc_cuda_free(cu);
        return;
    }
    cr_assert_eq(st, OC_ERR_UNSUPPORTED, "not a crash, not a device fault: %s", err.msg);
    cr_assert(strstr(err.msg, "no NVIDIA driver") || strstr(err.msg, "no CUDA device") ||
                  strstr(err.msg, "without the CUDA toolkit"),
              "the reason in words: %s", err.msg);
    cr_assert(strstr(err.msg, "--device cpu"), "and what to do instead: %s", err.msg);
    cr_assert_neq(st2, OC_OK);
    cr_assert_null(cu);
    cr_assert_str_eq(err2.msg, err.msg, "oc_cuda_new reports the same reason");

    /* compiling a graph for the GPU fails the same way, before any work */
    struct oc_graph *g = oc_graph_new("t");
    oc_output(g, "y", oc_exp(g, oc_input(g, "x", OC_F32, OC_SHAPE(4))));
    struct oc_cuda_exec *ex = NULL;
    struct oc_err err3 = {0};
    cr_assert_eq(oc_cuda_exec_new(g, NULL, &ex, &err3), OC_ERR_UNSUPPORTED, "%s", err3.msg);
    cr_assert_null(ex);
    cr_assert(strstr(err3.msg, "--device cpu"), "%s", err3.msg);
    oc_graph_free(g);
}

/* The driver table against the toolkit's stub libcuda: every entry point
 * resolves (the names match a CUDA 12/13 driver), and cuInit's failure
 * comes back as a clean error naming the call and the driver's error. */
Test(cuda_device, the_driver_table_loads_and_failures_are_named)
{
#ifdef OC_CUDA_STUB_LIB
    if (access(OC_CUDA_STUB_LIB, R_OK)) cr_skip_test("no stub libcuda at %s", OC_CUDA_STUB_LIB);
    setenv("OC_LIBCUDA", OC_CUDA_STUB_LIB, 1);
    struct oc_err err = {0};
    enum oc_status st = oc_cuda_probe(&err);
    cr_assert_eq(st, OC_ERR_UNSUPPORTED, "%s", err.msg);
    cr_assert(!strstr(err.msg, "too old"), "every entry point resolves: %s", err.msg);
    cr_assert(strstr(err.msg, "cuInit"), "the failing call is named: %s", err.msg);
    cr_assert(strstr(err.msg, "CUDA_ERROR") || strstr(err.msg, "CUresult "), "with the driver's error: %s", err.msg);
    struct oc_cuda *cu = NULL;
    cr_assert_eq(oc_cuda_new(&cu, NULL, &err), OC_ERR_UNSUPPORTED);
    cr_assert_null(cu);
#else
    cr_skip_test("this build has no CUDA toolkit (no stub libcuda)");
#endif
}

/* ---------------------------------------------------------------- NVRTC */

Test(cuda_device, nvrtc_errors_carry_the_log_and_the_dump)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    const char *bad = "extern \"C\" __global__ void k_bad(float *x) { x[0] = undeclared_thing; }\n";
    struct oc_nvrtc_opts o = {"sm_90", 0, 0, 0};
    struct oc_nvrtc_out out;
    struct oc_err err = {0};
    cr_assert_eq(oc_nvrtc_compile(nv, bad, "broken.cu", &o, &out, &err), OC_ERR_DEVICE);
    cr_assert(strstr(err.msg, "broken.cu") && strstr(err.msg, "sm_90"), "names what and for what: %s", err.msg);
    cr_assert(strstr(err.msg, "undeclared_thing"), "carries NVRTC's log: %s", err.msg);
    cr_assert(strstr(err.msg, "OC_DUMP_ON_ERROR"), "says how to keep the source: %s", err.msg);
    oc_nvrtc_out_free(&out);

    setenv("OC_DUMP_ON_ERROR", "1", 1);
    setenv("OC_DUMP_DIR", tmp, 1);
    oc_err_clear(&err);
    cr_assert_eq(oc_nvrtc_compile(nv, bad, "broken.cu", &o, &out, &err), OC_ERR_DEVICE);
    oc_nvrtc_out_free(&out);
    const char *p = strstr(err.msg, "written to ");
    cr_assert_not_null(p, "the message names the dump: %s", err.msg);
    char path[1024];
    cr_assert_eq(sscanf(p + strlen("written to "), "%1023s", path), 1);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "the dumped source %s exists", path);
    char text[512] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_assert(strstr(text, "undeclared_thing"), "the dump is the source");
    char logp[1100];
    snprintf(logp, sizeof logp, "%.*s.log", (int)(strlen(path) - 3), path);
    cr_assert_eq(access(logp, R_OK), 0, "and the log beside it: %s", logp);
    oc_nvrtc_close(nv);
}

Test(cuda_device, architecture_choice)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    char a[32];
    oc_nvrtc_arch_for(nv, 90, a, sizeof a);
    cr_assert_str_eq(a, "sm_90", "Hopper gets a CUBIN for itself");
    oc_nvrtc_arch_for(nv, 80, a, sizeof a);
    cr_assert_str_eq(a, "sm_80");
    oc_nvrtc_arch_for(nv, 999, a, sizeof a);
    cr_assert_eq(strncmp(a, "compute_", 8), 0, "a device newer than NVRTC gets PTX: %s", a);
    oc_nvrtc_arch_for(nv, 10, a, sizeof a);
    cr_assert_str_eq(a, "", "older than anything NVRTC knows: nothing");
    /* PTX compiles */
    struct oc_nvrtc_opts o = {"compute_80", 0, 0, 0};
    struct oc_nvrtc_out out;
    struct oc_err err = {0};
    cr_assert_eq(oc_nvrtc_compile(nv, "extern \"C\" __global__ void k(float *x) { x[threadIdx.x] = 1.0f; }\n",
                                  "ptx.cu", &o, &out, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(out.cubin, 0);
    cr_assert(strstr(out.image, ".entry k"), "PTX text");
    oc_nvrtc_out_free(&out);
    oc_nvrtc_close(nv);
}

Test(cuda_device, compiled_code_goes_through_the_kernel_cache)
{
    struct oc_nvrtc *nv = nvrtc_or_skip();
    struct oc_err err = {0};
    struct oc_kcache *kc;
    cr_assert_eq(oc_kcache_open(&kc, tmp, 0, &err), OC_OK);
    const char *src = "extern \"C\" __global__ void k_cached(float *x) { x[threadIdx.x] *= 2.0f; }\n";
    void *img1, *img2, *img3;
    size_t n1, n2, n3;
    int hit;
    cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_90", 0, &img1, &n1, &hit, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(hit, 0, "first: compiled");
    cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_90", 0, &img2, &n2, &hit, &err), OC_OK);
    cr_assert_eq(hit, 1, "second: from memory");
    cr_assert(n1 == n2 && !memcmp(img1, img2, n1));
    /* another architecture is another entry */
    void *img80;
    size_t n80;
    cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_80", 0, &img80, &n80, &hit, &err), OC_OK);
    cr_assert_eq(hit, 0, "sm_80 is compiled, not taken from sm_90's entry");
    free(img80);
    oc_kcache_close(kc);

    /* a new process: from disk */
    cr_assert_eq(oc_kcache_open(&kc, tmp, 0, &err), OC_OK);
    cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_90", 0, &img3, &n3, &hit, &err), OC_OK);
    cr_assert_eq(hit, 1, "from disk");
    cr_assert(n1 == n3 && !memcmp(img1, img3, n1));
    free(img3);
    oc_kcache_close(kc);

    /* corrupt every entry file: recompiled, same bytes */
    DIR *d = opendir(tmp);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".bin")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
        FILE *f = fopen(p, "r+b");
        fseek(f, -10, SEEK_END);
        int c = fgetc(f);
        fseek(f, -10, SEEK_END);
        fputc(c ^ 0xff, f);
        fclose(f);
        files++;
    }
    closedir(d);
    cr_assert_eq(files, 2, "one entry per architecture");
    cr_assert_eq(oc_kcache_open(&kc, tmp, 0, &err), OC_OK);
    cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_90", 0, &img3, &n3, &hit, &err), OC_OK);
    cr_assert_eq(hit, 0, "a corrupted entry is recompiled, not trusted");
    cr_assert(n1 == n3 && !memcmp(img1, img3, n1), "NVRTC is deterministic");
    free(img3);
    struct oc_kcache_stats st;
    oc_kcache_stats(kc, &st);
    cr_assert_eq(st.rejected, 1);
    oc_kcache_close(kc);

    /* OC_NO_CACHE=1: always compiled */
    setenv("OC_NO_CACHE", "1", 1);
    cr_assert_eq(oc_kcache_open(&kc, tmp, 0, &err), OC_OK);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(oc_cuda_compile_cached(nv, kc, src, "cached", "sm_90", 0, &img3, &n3, &hit, &err), OC_OK);
        cr_assert_eq(hit, 0);
        free(img3);
    }
    oc_kcache_close(kc);
    free(img1);
    free(img2);
    oc_nvrtc_close(nv);
}

Test(cuda_device, ptxas_report_parsing)
{
    const char *log = "ptxas info    : 0 bytes gmem\n"
                      "ptxas info    : Compiling entry function 'k_a' for 'sm_90'\n"
                      "ptxas info    : Function properties for k_a\n"
                      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
                      "ptxas info    : Used 14 registers, used 0 barriers\n"
                      "ptxas info    : Compiling entry function 'k_b' for 'sm_90'\n"
                      "ptxas info    : Function properties for k_b\n"
                      "ptxas         .     24 bytes stack frame, 16 bytes spill stores, 8 bytes spill loads\n"
                      "ptxas info    : Used 255 registers, used 1 barriers, 256 bytes smem\n";
    struct oc_ptxas_fn f[4];
    cr_assert_eq(oc_ptxas_parse(log, f, 4), 2);
    cr_assert_str_eq(f[0].name, "k_a");
    cr_assert_eq(f[0].regs, 14);
    cr_assert_eq(f[0].spill_stores + f[0].spill_loads + f[0].stack, 0);
    cr_assert_str_eq(f[1].name, "k_b");
    cr_assert_eq(f[1].regs, 255);
    cr_assert_eq(f[1].stack, 24);
    cr_assert_eq(f[1].spill_stores, 16);
    cr_assert_eq(f[1].spill_loads, 8);
}

/* ---------------------------------------------------------------- the host emulation */

static struct oc_cuda *emulated(void)
{
    struct oc_err err = {0};
    setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
    struct oc_cuda_opts o = oc_cuda_opts_default();
    o.emulate = 1;
    struct oc_cuda *cu = NULL;
    cr_assert_eq(oc_cuda_new(&cu, &o, &err), OC_OK, "%s", err.msg);
    return cu;
}

Test(cuda_device, caching_allocator_reuses_blocks)
{
    struct oc_cuda *cu = emulated();
    struct oc_err err = {0};
    oc_devptr a, b, c, d;
    cr_assert_eq(oc_cuda_alloc(cu, 1000, &a, &err), OC_OK);
    cr_assert_eq(oc_cuda_alloc(cu, 3 << 20, &b, &err), OC_OK);
    struct oc_cuda_mem_stats st;
    oc_cuda_mem_stats(cu, &st);
    cr_assert_eq(st.allocs, 2);
    cr_assert_eq(st.in_use, 1024 + (4u << 20), "rounded to 512 B below 1 MiB, 2 MiB above");
    oc_cuda_release(cu, a);
    oc_cuda_release(cu, b);
    oc_cuda_mem_stats(cu, &st);
    cr_assert_eq(st.in_use, 0);
    cr_assert_eq(st.cached, 1024 + (4u << 20));
    cr_assert_eq(oc_cuda_alloc(cu, 900, &c, &err), OC_OK);
    cr_assert_eq(c, a, "a freed block of the same class is reused");
    cr_assert_eq(oc_cuda_alloc(cu, 100, &d, &err), OC_OK);
    cr_assert_neq(d, b, "a block more than twice the request is not handed out");
    oc_cuda_mem_stats(cu, &st);
    cr_assert_eq(st.reuses, 1);
    cr_assert_eq(st.allocs, 3);
    cr_assert_eq(st.peak, 1024 + (4u << 20));
    oc_cuda_release(cu, c);
    oc_cuda_release(cu, d);
    oc_cuda_free(cu);
}

/* A stateful step (momentum-like update) run eagerly and with graph capture. */
static struct oc_graph *stateful(void)
{
    struct oc_graph *g = oc_graph_new("stateful");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(16, 33));
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(33, 8), OC_INIT_NORMAL, 0, 0.3);
    oc_tensor m = oc_state(g, "m", OC_F32, OC_SHAPE(33, 8), OC_INIT_ZEROS, 0);
    oc_tensor y = oc_softmax(g, oc_matmul(g, x, w, 0, 0), 1);
    oc_tensor loss = oc_sum(g, oc_mul(g, y, y), 3u, 0);
    oc_tensor gw = oc_matmul(g, x, oc_mul(g, y, oc_scalar_like(g, y, 0.01)), 1, 0);
    oc_tensor m2 = oc_add(g, oc_scale(g, m, 0.9), gw);
    oc_assign(g, m, m2);
    oc_assign(g, w, oc_sub(g, w, oc_scale(g, m2, 0.1)));
    oc_output(g, "loss", loss);
    oc_output(g, "w_before", w);
    return g;
}

Test(cuda_device, graph_capture_replays_the_same_steps)
{
    struct oc_cuda *cu = emulated();
    struct oc_err err = {0};
    struct oc_graph *g = stateful();
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(16, 33), 3, -1, 1);
    struct oc_buf res[2][4];
    for (int graph = 0; graph < 2; graph++) {
        struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
        o.cu = cu;
        o.graph = graph;
        struct oc_cuda_exec *ex;
        cr_assert_eq(oc_cuda_exec_new(g, &o, &ex, &err), OC_OK, "%s", err.msg);
        cr_assert_eq(oc_cuda_exec_set(ex, "x", &x, &err), OC_OK);
        for (int r = 0; r < 4; r++) {
            cr_assert_eq(oc_cuda_exec_run(ex, 5, &err), OC_OK, "%s", err.msg);
            cr_assert_eq(oc_cuda_exec_get(ex, "loss", &res[graph][r], &err), OC_OK);
        }
        oc_cuda_exec_free(ex);
    }
    for (int r = 0; r < 4; r++) {
        cr_assert(oc_test_allclose("graph vs eager", &res[1][r], &res[0][r], 0, 0), "run %d", r);
        if (r) cr_assert_neq(*(float *)res[0][r].data, *(float *)res[0][r - 1].data, "the state moves");
    }
    for (int r = 0; r < 4; r++) {
        oc_buf_free(&res[0][r]);
        oc_buf_free(&res[1][r]);
    }
    oc_buf_free(&x);
    oc_graph_free(g);
    oc_cuda_free(cu);
}

Test(cuda_device, executor_errors_name_what_and_where)
{
    struct oc_cuda *cu = emulated();
    struct oc_err err = {0};
    struct oc_graph *g = stateful();
    struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
    o.cu = cu;
    struct oc_cuda_exec *ex;
    cr_assert_eq(oc_cuda_exec_new(g, &o, &ex, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_cuda_exec_run(ex, 1, &err), OC_ERR_INVALID);
    cr_assert(strstr(err.msg, "input \"x\"") && strstr(err.msg, "not bound"), "%s", err.msg);
    oc_err_clear(&err);
    struct oc_buf bad = oc_test_random(OC_F32, OC_SHAPE(16, 32), 1, 0, 1);
    cr_assert_eq(oc_cuda_exec_set(ex, "x", &bad, &err), OC_ERR_SHAPE);
    cr_assert(strstr(err.msg, "[16,33]") && strstr(err.msg, "[16,32]"), "%s", err.msg);
    oc_err_clear(&err);
    struct oc_buf out;
    cr_assert_eq(oc_cuda_exec_get(ex, "loss", &out, &err), OC_ERR_INVALID);
    cr_assert(strstr(err.msg, "before any run"), "%s", err.msg);
    oc_err_clear(&err);
    cr_assert_eq(oc_cuda_exec_get(ex, "nope", &out, &err), OC_ERR_INVALID);
    cr_assert(strstr(err.msg, "\"nope\""), "%s", err.msg);
    oc_buf_free(&bad);
    oc_cuda_exec_free(ex);
    oc_graph_free(g);
    oc_cuda_free(cu);
}

Test(cuda_device, debug_prints_kernels_and_a_profile)
{
    char log[600];
    snprintf(log, sizeof log, "%s/stderr.txt", tmp);
    fflush(stderr);
    cr_assert_not_null(freopen(log, "w", stderr));
    setenv("OC_DEBUG", "1", 1);
    struct oc_cuda *cu = emulated();
    struct oc_err err = {0};
    struct oc_graph *g = stateful();
    struct oc_cuda_exec_opts o = oc_cuda_exec_defaults();
    o.cu = cu;
    struct oc_cuda_exec *ex;
    cr_assert_eq(oc_cuda_exec_new(g, &o, &ex, &err), OC_OK, "%s", err.msg);
    struct oc_buf x = oc_test_random(OC_F32, OC_SHAPE(16, 33), 3, -1, 1);
    cr_assert_eq(oc_cuda_exec_set(ex, "x", &x, &err), OC_OK);
    cr_assert_eq(oc_cuda_exec_run(ex, 1, &err), OC_OK, "%s", err.msg);
    oc_cuda_exec_free(ex);
    oc_cuda_free(cu);
    fflush(stderr);
    FILE *f = fopen(log, "r");
    char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    cr_assert(strstr(text, "compiled \"stateful\" for cuda"), "%s", text);
    cr_assert(strstr(text, "_reduce_max_sum"), "kernel names with their ops:\n%s", text);
    cr_assert(strstr(text, "(cublas)"), "library calls in the profile:\n%s", text);
    cr_assert(strstr(text, "profile \"stateful\" (cuda)"), "%s", text);
    oc_buf_free(&x);
    oc_graph_free(g);
}
