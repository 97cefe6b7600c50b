/* test-aot-cuda.c - `oodc compile --target cuda` (ood/aot.c, aot-cuda.c,
 * runtime/aot-rt/aot-rt-cuda.c), checked without a GPU:
 *   - ODIN (two programs: gradient pass with conv2d_grad_input's col2im,
 *     then the perturbed scoring pass) on a tiny trained WRN-10-1, batch
 *     4, compiled twice: the files are byte-identical; libscorer.so
 *     exports only the API and needs no CUDA library at link time;
 *   - the embedded PTX (kernels and convolution helpers) is accepted by
 *     ptxas for sm_80 and sm_90 (ptxas of the toolkit, found at build
 *     time), and it was made for compute_80;
 *   - a C program built with `cc` against the artifact: where no NVIDIA
 *     driver can be loaded, oc_scorer_create returns NULL and
 *     oc_scorer_error(NULL) says "no NVIDIA driver"; with the launcher's
 *     OC_SCORER_CUDA_DRIVER / OC_SCORER_CUBLAS pointing at the test driver
 *     (aot-fake-cuda.c: the kept CUDA C on oodc's host emulation, reference
 *     GEMMs) the artifact's own launcher scores 12 images in calls of 3, 4,
 *     4 and 1 (padding rows of a partial batch) and the scores equal
 *     `oodc eval`'s CPU scores within 1e-4 with the same predicted
 *     classes; NULL pointers, n < 0, n > batch and a NaN pixel give their
 *     codes; the driver saw kernel launches, GEMMs and both modules;
 *   - the CLI's usage errors of the cuda options.
 * Where this oodc has no CUDA backend or NVRTC, the compile must fail with
 * OC_ERR_UNSUPPORTED and a message naming what is missing (checked
 * instead of the rest). */
#include "aot-util.h"

#include <dlfcn.h>

#include "../../cli/cmd-compile.c"

static int nvrtc_ok(char *why, size_t n)
{
    struct oc_err err = {0};
    enum oc_status st = oc_aot_cuda_check(80, NULL, 0, &err);
    snprintf(why, n, "%s", err.msg);
    return st == OC_OK;
}

static void compile_odin(struct oc_checkpoint *ck, const char *dir, struct oc_aot_result *r)
{
    struct oc_aot_opts o = oc_aot_opts_default();
    o.ck = ck;
    o.scorer = "odin";
    o.T = 2; /* low: the scores spread over (0.1, 1], so 1e-4 means something */
    o.eps = 0.002;
    o.batch = 4;
    o.target = "cuda";
    o.keep_build = 1; /* kernels.cu / lib.cu: the test driver runs them */
    struct oc_err err = {0};
    cr_assert_eq(oc_aot_compile(&o, dir, r, &err), OC_OK, "%s", err.msg);
}

static void check_ptx(const char *dir, const char *name)
{
    char *path = tu_join(dir, name);
    size_t n = 0;
    char *ptx = (char *)tu_read(path, &n);
    cr_assert(ptx && n > 100, "%s", path);
    ptx[n] = 0;
    cr_expect(strstr(ptx, ".target sm_80"), "%s is not compute_80 PTX", path);
    cr_expect(strstr(ptx, ".entry "), "%s has no kernel", path);
    free(ptx);
#ifdef OC_PTXAS
    if (access(OC_PTXAS, X_OK) == 0) {
        char cmd[4096];
        for (int sm = 80; sm <= 90; sm += 10) {
            snprintf(cmd, sizeof cmd, "%s -arch=sm_%d %s -o /dev/null", OC_PTXAS, sm, path);
            cr_expect_eq(system(cmd), 0, "ptxas rejects %s: %s", path, cmd);
        }
    }
#endif
    free(path);
}

Test(aot_cuda, odin_artifact_runs_on_the_emulated_driver, .timeout = 240)
{
    char why[1024];
    char *data, *run;
    char *ckp = train_checkpoint("baseline", &data, &run);
    struct oc_checkpoint *ck = load_ck(ckp);
    if (!nvrtc_ok(why, sizeof why)) {
        /* no CUDA backend / NVRTC here: a clear error, no artifact */
        struct oc_aot_opts o = oc_aot_opts_default();
        o.ck = ck, o.scorer = "odin", o.target = "cuda";
        struct oc_err err = {0};
        char *d = tu_join(run, "none");
        cr_assert_eq(oc_aot_compile(&o, d, NULL, &err), OC_ERR_UNSUPPORTED);
        cr_expect(strstr(err.msg, "NVRTC") || strstr(err.msg, "without the CUDA toolkit"), "%s", err.msg);
        free(d);
    } else {
        char *d1 = tu_join(run, "odin"), *d2 = tu_join(run, "odin-again");
        struct oc_aot_result r;
        compile_odin(ck, d1, &r);
        cr_expect(r.cuda && r.nprog == 2 && r.nkernels > 5 && r.nloop > 0 && r.ptx_bytes > 0);
        cr_expect_str_eq(r.cpu, "compute_80");
        compile_odin(ck, d2, NULL);
        static const char *const files[] = {"scorer.h", "libscorer.so", "scorer.o", "README",
                                            "CMakeLists.txt", "scorer.pc", "example.c", NULL};
        for (int i = 0; files[i]; i++) {
            char *a = tu_join(d1, files[i]), *b = tu_join(d2, files[i]);
            cr_expect(tu_same_file(a, b), "%s differs between two compilations", files[i]);
            free(a);
            free(b);
        }
        char *build = tu_join(d1, ".oodc-build");
        check_ptx(build, "kernels.ptx");
        check_ptx(build, "lib.ptx");

        /* only the API exported; no CUDA library linked; the launcher and
         * plan compile warning-free; the generated example builds */
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "cd %s && test \"$(nm -D --defined-only libscorer.so | awk '{print $3}' | sort | tr '\\n' ' ')\" = "
                 "'oc_scorer_create oc_scorer_destroy oc_scorer_error oc_scorer_score ' && "
                 "! readelf -d libscorer.so | grep -E 'NEEDED.*(cuda|cublas|nvrtc|openblas)' && "
                 "cd .oodc-build && cc -std=c11 -Wall -Wextra -Wshadow -Werror -c aot-rt-cuda.c -o /dev/null && "
                 "cc -std=c11 -Wall -Wextra -Werror -c plan.c -o /dev/null && cd .. && "
                 "cc -std=c11 -Wall -Wextra -Werror example.c -I. -L. -lscorer -Wl,-rpath,%s -o example",
                 d1, d1);
        cr_assert_eq(system(cmd), 0, "%s", cmd);

        float *x = test_images(data);
        double got[NIMG], want[NIMG];
        int gp[NIMG], wp[NIMG];
        /* the machine's own driver: none here */
        void *real = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!real) {
            why[0] = 0;
            cr_expect_eq(run_program_env(d1, x, 3, 4, "", got, gp, why, sizeof why), 0,
                         "oc_scorer_create succeeded without a driver");
            cr_expect(strstr(why, "oc_scorer_create: no NVIDIA driver on this machine"), "%s", why);
        } else {
            dlclose(real);
        }
        /* the test driver: the artifact's launcher end to end */
        char env[4096], *log = tu_join(run, "fake.log");
        snprintf(env, sizeof env,
                 "OC_SCORER_CUDA_DRIVER=%s OC_SCORER_CUBLAS=%s OC_FAKE_CUDA_SOURCES=%s/kernels.cu:%s/lib.cu "
                 "OC_FAKE_CUDA_LOG=%s",
                 OC_AOT_FAKE_CUDA, OC_AOT_FAKE_CUDA, build, build, log);
        why[0] = 0;
        cr_assert_eq(run_program_env(d1, x, 3, 4, env, got, gp, why, sizeof why), 1,
                     "oc_scorer_create failed on the test driver: %s", why);
        eval_scores(ck, "odin", 2, 0.002, NULL, x, want, wp);
        double lo = want[0], hi = want[0];
        for (int i = 1; i < NIMG; i++) lo = fmin(lo, want[i]), hi = fmax(hi, want[i]);
        cr_assert_gt(hi - lo, 1e-2, "the reference scores barely differ (%g..%g): a weak check", lo, hi);
        expect_close_tol("odin (cuda launcher, emulated)", got, gp, want, wp, 1e-4);
        size_t n = 0;
        char *text = (char *)tu_read(log, &n);
        cr_assert(text, "the test driver wrote no log: was it loaded?");
        text[n] = 0;
        long launches = 0, gemms = 0, modules = 0;
        cr_assert_eq(sscanf(text, "launches %ld gemms %ld modules %ld", &launches, &gemms, &modules), 3, "%s", text);
        cr_expect(launches > 4 * r.nloop && gemms > 0 && modules == 2, "%s", text);
        free(text);
        free(log);
        free(x);
        free(build);
        free(d1);
        free(d2);
    }
    oc_checkpoint_free(ck);
    free(ckp);
    tu_rmtree(run);
    tu_rmtree(data);
    free(run);
    free(data);
}

Test(aot_cuda, cli_usage_errors)
{
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "cuda", "--arch", "sm_5x",
                     "--out", "/tmp/x", NULL};
        expect_usage(a, 11, "--arch sm_5x: not an NVIDIA architecture");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "cuda", "--native",
                     "--out", "/tmp/x", NULL};
        expect_usage(a, 10, "are for --target cpu");
    }
    {
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "gpu", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, "--target: 'gpu' is not cpu or cuda");
    }
    char why[1024];
    if (!nvrtc_ok(why, sizeof why)) {
        /* without NVRTC: exit 2 and the reason, before the checkpoint is read */
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "cuda", "--out", "/tmp/x", NULL};
        expect_usage(a, 9, why);
    } else {
        /* an arch NVRTC does not know: exit 2 */
        char *a[] = {"compile", "--checkpoint", "c", "--scorer", "odin", "--target", "cuda", "--arch", "sm_55",
                     "--out", "/tmp/x", NULL};
        expect_usage(a, 11, "cannot compile for sm_55");
    }
}
