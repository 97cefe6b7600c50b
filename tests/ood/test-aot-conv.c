/* test-aot-conv.c - the convolutions of the compiled scorers' CPU runtime
 * (runtime/aot-rt/aot-rt.c) against a plain reference, directly.
 *
 * The runtime is only ever compiled by the system C compiler inside an
 * artifact, so the test does the same: it writes the embedded runtime
 * source (ood/aot-rt-blob.c, what `oodc compile` writes), a scorer.h and a
 * driver that includes aot-rt.c into a temporary folder, builds it with
 * `cc` and runs it. The driver runs each case through the runtime's conv()
 * with the weights prepared as oc_scorer_create prepares them (flipped for
 * stride-1 input gradients, Winograd F(2x2,3x3) or F(4x4,3x3) for
 * stride-1 3x3 float ones: every case runs with both, then F(4,3) ones)
 * and compares every element with a double-precision direct loop,
 * within a bound scaled by the sum of the |x w| terms. Cases: forward,
 * input and weight gradients; f32 and f64; strides 1 and 2, paddings 0..2,
 * odd sizes (partial Winograd tiles, whole-tile rows over an odd height),
 * stride-2 rows wide enough for the four-column loops of im2col and
 * col2im, 1x1 stride-2 input gradients (written in place of col2im, odd
 * and even widths); one image split over three threads
 * and batches in groups; 1x1 and 5x5 kernels (im2col paths). The channel
 * thresholds below which the runtime keeps im2col / col2im are lowered to
 * 1 so that the small cases take the new paths (F(4,3) included, on any
 * width); the plain-GEMM run forces F(4,3)'s SSE2 transforms. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../ood/aot.h"

static const char *const driver_src =
    "#include \"aot-rt.c\"\n"
    "const struct ocrt_plan ocrt_plan;\n"
    "static uint64_t st = 88172645463325252ull;\n"
    "static double rnd(void) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (double)(st >> 11) * 0x1.0p-53 * 2 - 1; }\n"
    "/* kind N C H W O K stride pad f64 threads prep */\n"
    "static int run_case(int kind, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t K, int64_t s,\n"
    "                    int64_t pad, int f64, int nt, int prep)\n"
    "{\n"
    "    int64_t OH = (H + 2 * pad - K) / s + 1, OW = (W + 2 * pad - K) / s + 1;\n"
    "    struct ocrt_kernel k;\n"
    "    memset(&k, 0, sizeof k);\n"
    "    k.kind = kind, k.f64 = f64;\n"
    "    int64_t p[13] = {N, C, H, W, O, K, K, OH, OW, s, s, pad, pad};\n"
    "    memcpy(k.p, p, sizeof p);\n"
    "    struct conv c = conv_of(&k);\n"
    "    size_t es = f64 ? 8 : 4;\n"
    "    int64_t nx = N * C * H * W, nw = O * C * K * K, ny = N * O * OH * OW;\n"
    "    double *x = malloc(8 * (size_t)nx), *w = malloc(8 * (size_t)nw), *dy = malloc(8 * (size_t)ny);\n"
    "    for (int64_t i = 0; i < nx; i++) x[i] = rnd();\n"
    "    for (int64_t i = 0; i < nw; i++) w[i] = rnd();\n"
    "    for (int64_t i = 0; i < ny; i++) dy[i] = rnd();\n"
    "    /* the operands as the kernel sees them (rounded to float for f32) */\n"
    "    void *bx = xalloc(es * (size_t)nx), *bw = xalloc(es * (size_t)nw), *bdy = xalloc(es * (size_t)ny);\n"
    "    for (int64_t i = 0; i < nx; i++) { if (f64) ((double *)bx)[i] = x[i]; else x[i] = ((float *)bx)[i] = (float)x[i]; }\n"
    "    for (int64_t i = 0; i < nw; i++) { if (f64) ((double *)bw)[i] = w[i]; else w[i] = ((float *)bw)[i] = (float)w[i]; }\n"
    "    for (int64_t i = 0; i < ny; i++) { if (f64) ((double *)bdy)[i] = dy[i]; else dy[i] = ((float *)bdy)[i] = (float)dy[i]; }\n"
    "    int64_t nout = kind == OCRT_CONV2D ? ny : kind == OCRT_CONV2D_GRAD_INPUT ? nx : nw;\n"
    "    double *ref = calloc((size_t)nout, 8), *mag = calloc((size_t)nout, 8);\n"
    "    for (int64_t n = 0; n < N; n++) for (int64_t o = 0; o < O; o++) for (int64_t ch = 0; ch < C; ch++)\n"
    "    for (int64_t oh = 0; oh < OH; oh++) for (int64_t ow = 0; ow < OW; ow++) for (int64_t kh = 0; kh < K; kh++)\n"
    "    for (int64_t kw = 0; kw < K; kw++) {\n"
    "        int64_t ih = oh * s - pad + kh, iw = ow * s - pad + kw;\n"
    "        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;\n"
    "        int64_t ix = ((n * C + ch) * H + ih) * W + iw, iw_ = ((o * C + ch) * K + kh) * K + kw;\n"
    "        int64_t iy = ((n * O + o) * OH + oh) * OW + ow;\n"
    "        double t = kind == OCRT_CONV2D ? x[ix] * w[iw_] : kind == OCRT_CONV2D_GRAD_INPUT ? dy[iy] * w[iw_] : dy[iy] * x[ix];\n"
    "        int64_t io = kind == OCRT_CONV2D ? iy : kind == OCRT_CONV2D_GRAD_INPUT ? ix : iw_;\n"
    "        ref[io] += t, mag[io] += fabs(t);\n"
    "    }\n"
    "    struct pool *pool = pool_new(nt);\n"
    "    size_t per = conv_scratch(&k);\n"
    "    void *scratch = xalloc(per * (size_t)pool->n);\n"
    "    void *out = xalloc(es * (size_t)nout);\n"
    "    void *flip = NULL;\n"
    "    float *wu = NULL;\n"
    "    int used_flip = 0, used_wino = 0;\n"
    "    if (prep && flip_ok(&k)) {\n"
    "        flip = xalloc(es * (size_t)nw);\n"
    "        flip_weights(&c, f64, bw, flip);\n"
    "        used_flip = 1;\n"
    "        struct conv f = flip_conv(&c);\n"
    "        if (wino_ok(OCRT_CONV2D, f64, &f)) wu = xalloc((size_t)wino_nx(&f) * sizeof(float) * (size_t)(f.O * f.C)), wino_weights(&f, flip, wu), used_wino = 1;\n"
    "    } else if (prep && wino_ok(kind, f64, &c)) {\n"
    "        wu = xalloc((size_t)wino_nx(&c) * sizeof(float) * (size_t)(c.O * c.C));\n"
    "        wino_weights(&c, bw, wu);\n"
    "        used_wino = 1;\n"
    "    }\n"
    "    void *args[3] = {out, kind == OCRT_CONV2D ? bx : kind == OCRT_CONV2D_GRAD_INPUT ? bdy : bx,\n"
    "                     kind == OCRT_CONV2D_GRAD_WEIGHT ? bdy : bw};\n"
    "    /* twice: scratch and outputs left over from a first call must not leak into the second */\n"
    "    for (int rep = 0; rep < 2; rep++) conv(pool, &k, args, scratch, 0.0, flip, wu);\n"
    "    /* F(4x4,3x3): its transforms' constants (up to 8 in A^T, 5 in B^T, 1/24\n"
    "     * in G) grow the float rounding about tenfold over F(2x2,3x3)'s (worst\n"
    "     * seen here 7.3e-6 of the sum of |x w| terms, F(2,3) 6.6e-7); 4e-5 keeps\n"
    "     * the same margin over it as 4e-6 does over F(2,3). */\n"
    "    double worst = 0, tol = f64 ? 1e-13 : used_wino && wino_m == 4 ? 4e-5 : 4e-6;\n"
    "    int bad = 0;\n"
    "    for (int64_t i = 0; i < nout; i++) {\n"
    "        double g = f64 ? ((double *)out)[i] : ((float *)out)[i];\n"
    "        double e = fabs(g - ref[i]) / (mag[i] + 1e-30);\n"
    "        if (!(e <= tol) && !(fabs(g - ref[i]) < 1e-30)) {\n"
    "            if (bad < 3) printf(\"element %lld: got %.9g want %.9g (terms %.3g)\\n\", (long long)i, g, ref[i], mag[i]);\n"
    "            bad++;\n"
    "        }\n"
    "        if (e > worst && mag[i] > 0) worst = e;\n"
    "    }\n"
    "    printf(\"case kind %d N %lld C %lld %lldx%lld O %lld K %lld s %lld pad %lld f64 %d threads %d flip %d wino %d: \"\n"
    "           \"%d bad, worst %.3g\\n\", kind, (long long)N, (long long)C, (long long)H, (long long)W, (long long)O,\n"
    "           (long long)K, (long long)s, (long long)pad, f64, nt, used_flip, used_wino ? wino_m : 0, bad, worst);\n"
    "    pool_free(pool);\n"
    "    free(x), free(w), free(dy), free(bx), free(bw), free(bdy), free(ref), free(mag), free(scratch), free(out);\n"
    "    free(flip), free(wu);\n"
    "    return bad == 0 ? used_flip * 2 + used_wino : -1;\n"
    "}\n"
    "int main(void)\n"
    "{\n"
    "    enum { F = OCRT_CONV2D, GI = OCRT_CONV2D_GRAD_INPUT, GW = OCRT_CONV2D_GRAD_WEIGHT };\n"
    "    static const int cs[][12] = {\n"
    "        /* kind N C H W O K s pad f64 threads prep  -> want: 1 wino, 2 flip, 3 both, 0 neither */\n"
    "        {F, 1, 5, 9, 7, 6, 3, 1, 1, 0, 3, 1}, {F, 5, 4, 8, 8, 3, 3, 1, 1, 0, 2, 1},\n"
    "        {F, 3, 3, 6, 5, 4, 3, 1, 0, 0, 1, 1}, {F, 2, 2, 5, 6, 3, 3, 1, 2, 0, 2, 1},\n"
    "        {F, 1, 16, 12, 12, 16, 3, 1, 1, 0, 1, 1}, {F, 2, 3, 9, 9, 4, 3, 2, 1, 0, 2, 1},\n"
    "        {F, 2, 3, 7, 7, 5, 1, 1, 0, 0, 2, 1}, {F, 1, 5, 9, 7, 6, 3, 1, 1, 1, 3, 1},\n"
    "        {F, 3, 5, 9, 7, 6, 3, 1, 1, 0, 2, 0}, {F, 2, 3, 9, 10, 4, 3, 1, 1, 0, 2, 1},\n"
    "        {F, 1, 3, 17, 20, 4, 3, 2, 1, 0, 3, 1}, {GI, 2, 4, 17, 20, 5, 3, 2, 1, 0, 2, 1},\n"
    "        {GI, 2, 4, 16, 18, 5, 1, 2, 0, 0, 2, 1}, {GI, 1, 3, 9, 11, 4, 1, 2, 0, 0, 1, 1},\n"
    "        {GI, 1, 5, 9, 7, 6, 3, 1, 1, 0, 3, 1}, {GI, 4, 4, 8, 8, 3, 3, 1, 1, 0, 2, 1},\n"
    "        {GI, 2, 3, 7, 6, 4, 3, 1, 0, 0, 1, 1}, {GI, 2, 2, 5, 6, 3, 3, 1, 2, 0, 2, 1},\n"
    "        {GI, 2, 3, 9, 9, 4, 3, 2, 1, 0, 2, 1}, {GI, 1, 3, 9, 9, 4, 3, 2, 1, 0, 3, 1},\n"
    "        {GI, 2, 3, 7, 7, 5, 1, 1, 0, 0, 2, 1}, {GI, 2, 3, 9, 8, 4, 5, 1, 2, 0, 2, 1},\n"
    "        {GI, 3, 5, 9, 7, 6, 3, 1, 1, 1, 2, 1}, {GI, 1, 5, 9, 7, 6, 3, 1, 1, 1, 3, 1},\n"
    "        {GI, 3, 5, 9, 7, 6, 3, 1, 1, 0, 2, 0},\n"
    "        {GW, 3, 5, 9, 7, 6, 3, 1, 1, 0, 2, 1}, {GW, 2, 3, 9, 9, 4, 3, 2, 1, 1, 1, 1},\n"
    "    };\n"
    "    static const int want[] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0, 2, 2, 2, 2, 0, 0, 0};\n"
    "    /* F(4x4,3x3) only: rows wide enough for its four- and eight-tile loops\n"
    "     * (OW >= 16, >= 32) and the 16-column loads of the phase split (pads 0..2), partial tiles\n"
    "     * on both edges, tiny planes, one image over three threads */\n"
    "    static const int cs4[][12] = {\n"
    "        {F, 1, 5, 13, 11, 6, 3, 1, 1, 0, 3, 1}, {F, 3, 4, 17, 19, 5, 3, 1, 1, 0, 2, 1},\n"
    "        {F, 2, 3, 21, 22, 4, 3, 1, 0, 0, 2, 1}, {F, 2, 3, 10, 23, 4, 3, 1, 2, 0, 1, 1},\n"
    "        {F, 1, 16, 32, 32, 16, 3, 1, 1, 0, 2, 1}, {GI, 2, 4, 18, 21, 5, 3, 1, 1, 0, 2, 1},\n"
    "        {GI, 1, 5, 13, 11, 6, 3, 1, 1, 0, 3, 1}, {F, 2, 3, 3, 4, 4, 3, 1, 1, 0, 2, 1},\n"
    "        {F, 2, 3, 9, 37, 4, 3, 1, 1, 0, 2, 1}, {GI, 2, 3, 7, 34, 4, 3, 1, 1, 0, 1, 1},\n"
    "    };\n"
    "    static const int want4[] = {1, 1, 1, 1, 1, 3, 3, 1, 1, 3};\n"
    "    int n = (int)(sizeof cs / sizeof cs[0]), n4 = (int)(sizeof cs4 / sizeof cs4[0]), fails = 0, total = 0;\n"
    "    /* every case with F(2x2,3x3), again with F(4x4,3x3), then the F(4,3) ones */\n"
    "    for (int pass = 0; pass < 3; pass++) {\n"
    "        wino_m = pass == 0 ? 2 : 4;\n"
    "        int np = pass == 2 ? n4 : n;\n"
    "        for (int i = 0; i < np; i++, total++) {\n"
    "            const int *q = pass == 2 ? cs4[i] : cs[i];\n"
    "            int w = pass == 2 ? want4[i] : want[i];\n"
    "            int r = run_case(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9], q[10], q[11]);\n"
    "            if (r != w) printf(\"case %d (F(%d,3)): FAILED (%d, want path %d)\\n\", i, wino_m, r, w), fails++;\n"
    "        }\n"
    "    }\n"
    "    printf(\"cases %d failed %d\\n\", total, fails);\n"
    "    return fails != 0;\n"
    "}\n";

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

static void build_and_run(int blas)
{
    char dir[] = "/tmp/oc-aot-conv-XXXXXX";
    cr_assert(mkdtemp(dir), "mkdtemp");
    struct oc_aot_desc d = {.scorer = "baseline", .label = "test", .summary = "convolution test",
                            .arch = "none", .head = "none", .c = 1, .h = 1, .w = 1, .classes = 2,
                            .batch = 1, .cpu = "generic", .triple = "x86_64"};
    char *hdr = oc_aot_header_text(&d);
    cr_assert(hdr);
    write_file(dir, "scorer.h", hdr);
    free(hdr);
    write_file(dir, "aot-rt.h", oc_aot_rt_h);
    write_file(dir, "aot-rt-api.h", oc_aot_rt_api_h);
    write_file(dir, "aot-rt.c", oc_aot_rt_c);
    write_file(dir, "driver.c", driver_src);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd %s && cc -std=c11 -O2 -Wall -Wextra -Werror -fno-strict-aliasing -DOCRT_WINO_MIN_CH=1 -DOCRT_WINO4_MIN_W=1 -DOCRT_WINO4_MIN_N=1 -DOCRT_FLIP_MIN_CH=1 %s driver.c -o driver "
             "%s -lm -lpthread > build.log 2>&1",
             dir, blas ? "" : "-DOCRT_NO_BLAS", blas ? "-lopenblas" : "");
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/build.log >&2", dir);
        (void)system(cmd);
    }
    cr_assert_eq(rc, 0, "building the driver failed (log above)");
    /* the plain-GEMM build also takes F(4,3)'s SSE2 transforms where the
     * CPU would pick the AVX2 ones */
    snprintf(cmd, sizeof cmd, "%s%s/driver", blas ? "" : "OC_SCORER_WINO_SSE=1 ", dir);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char line[1024];
    int cases = -1, failed = -1;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "cases %d failed %d", &cases, &failed) == 2) continue;
        if (strstr(line, "FAILED") || strstr(line, "element") || !strstr(line, " 0 bad"))
            cr_log_error("%s", line);
    }
    int prc = pclose(p);
    cr_expect_eq(cases, 64, "the driver did not finish");
    cr_expect_eq(failed, 0);
    cr_expect_eq(prc, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
}

Test(aot_conv, matches_direct_reference_blas)
{
#ifdef OC_HAVE_OPENBLAS
    build_and_run(1);
#else
    build_and_run(0);
#endif
}

Test(aot_conv, matches_direct_reference_plain_gemm)
{
    build_and_run(0);
}
