/* cpu-lib.c - the CPU library calls: the kernels fusion leaves as barriers.
 *
 * matmul goes to OpenBLAS (sgemm/dgemm, transposes as flags, one call per
 * batch entry). conv2d and its two adjoints go through im2col + GEMM, per
 * image n (CK = C*KH*KW, P = OH*OW):
 *   forward      y_n[O,P]   = W[O,CK] @ col(x_n)[CK,P]
 *   grad_input   dx_n       = col2im(W^T[CK,O] @ dy_n[O,P])
 *   grad_weight  dW[O,CK] += dy_n[O,P] @ col(x_n)^T[P,CK]
 * A 1x1, stride-1, unpadded convolution uses x_n itself as the column
 * matrix. Without OpenBLAS a plain triple loop stands in (slow but exact
 * enough for tests). OpenBLAS threads each call internally.
 */
#include "cpu-impl.h"

#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_OPENBLAS
#include <cblas.h>
#endif

static void gemm(enum oc_dtype dt, int ta, int tb, int64_t M, int64_t N, int64_t K,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
#ifdef OC_HAVE_OPENBLAS
    if (K > 0) {
        enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans;
        enum CBLAS_TRANSPOSE TB = tb ? CblasTrans : CblasNoTrans;
        if (dt == OC_F32)
            cblas_sgemm(CblasRowMajor, TA, TB, (blasint)M, (blasint)N, (blasint)K, 1.0f, A,
                        (blasint)lda, B, (blasint)ldb, (float)beta, C, (blasint)ldc);
        else
            cblas_dgemm(CblasRowMajor, TA, TB, (blasint)M, (blasint)N, (blasint)K, 1.0, A,
                        (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
        return;
    }
#endif
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                int64_t ia = ta ? k * lda + i : i * lda + k;
                int64_t ib = tb ? j * ldb + k : k * ldb + j;
                double a = dt == OC_F32 ? ((const float *)A)[ia] : ((const double *)A)[ia];
                double b = dt == OC_F32 ? ((const float *)B)[ib] : ((const double *)B)[ib];
                acc += a * b;
            }
            if (dt == OC_F32) {
                float *c = (float *)C + i * ldc + j;
                *c = (float)(acc + (beta != 0 ? beta * *c : 0));
            } else {
                double *c = (double *)C + i * ldc + j;
                *c = acc + (beta != 0 ? beta * *c : 0);
            }
        }
}

static void matmul(const struct oc_kernel *k, void **args)
{
    const struct oc_shape *as = &k->lib_shape[1], *bs = &k->lib_shape[2], *ys = &k->lib_shape[0];
    int r = as->rank, ta = k->lib->attrs.trans_a, tb = k->lib->attrs.trans_b;
    enum oc_dtype dt = k->lib->dtype;
    size_t es = oc_dtype_size(dt);
    int64_t M = ys->dim[r - 2], N = ys->dim[r - 1];
    int64_t K = ta ? as->dim[r - 2] : as->dim[r - 1];
    int64_t batch = 1;
    for (int d = 0; d < r - 2; d++) batch *= as->dim[d];
    int64_t asz = as->dim[r - 2] * as->dim[r - 1], bsz = bs->dim[r - 2] * bs->dim[r - 1];
    int64_t lda = as->dim[r - 1] > 0 ? as->dim[r - 1] : 1, ldb = bs->dim[r - 1] > 0 ? bs->dim[r - 1] : 1;
    for (int64_t b = 0; b < batch; b++) {
        char *y = (char *)args[0] + (size_t)(b * M * N) * es;
        if (K == 0) {
            memset(y, 0, (size_t)(M * N) * es);
            continue;
        }
        gemm(dt, ta, tb, M, N, K, (const char *)args[1] + (size_t)(b * asz) * es, lda,
             (const char *)args[2] + (size_t)(b * bsz) * es, ldb, 0.0, y, N > 0 ? N : 1);
    }
}

struct conv {
    int64_t N, C, H, W, O, KH, KW, OH, OW, CK, P;
    int sh, sw, ph, pw;
};

static struct conv conv_dims(const struct oc_kernel *k)
{
    const struct oc_shape *xs, *ws, *ys;
    switch (k->kind) {
    case OC_K_CONV2D: ys = &k->lib_shape[0], xs = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    case OC_K_CONV2D_GRAD_INPUT: xs = &k->lib_shape[0], ys = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    default: ws = &k->lib_shape[0], xs = &k->lib_shape[1], ys = &k->lib_shape[2]; break;
    }
    struct conv c;
    c.N = xs->dim[0], c.C = xs->dim[1], c.H = xs->dim[2], c.W = xs->dim[3];
    c.O = ws->dim[0], c.KH = ws->dim[2], c.KW = ws->dim[3];
    c.OH = ys->dim[2], c.OW = ys->dim[3];
    c.CK = c.C * c.KH * c.KW;
    c.P = c.OH * c.OW;
    c.sh = k->lib->attrs.stride[0], c.sw = k->lib->attrs.stride[1];
    c.ph = k->lib->attrs.padding[0], c.pw = k->lib->attrs.padding[1];
    return c;
}

/* Column matrices hold a group of images side by side: row r of col is
 * [image 0's P values | image 1's | ...], leading dimension ld = g*P. */
#define IM2COL(T)                                                                                 \
    static void im2col_##T(const struct conv *c, const T *x, T *col, int64_t ld)                 \
    {                                                                                             \
        for (int64_t ch = 0; ch < c->C; ch++)                                                     \
            for (int64_t kh = 0; kh < c->KH; kh++)                                                \
                for (int64_t kw = 0; kw < c->KW; kw++) {                                          \
                    T *row = col + ((ch * c->KH + kh) * c->KW + kw) * ld;                         \
                    for (int64_t oh = 0; oh < c->OH; oh++) {                                      \
                        int64_t ih = oh * c->sh - c->ph + kh;                                     \
                        T *dst = row + oh * c->OW;                                                \
                        if (ih < 0 || ih >= c->H) {                                               \
                            for (int64_t ow = 0; ow < c->OW; ow++) dst[ow] = 0;                   \
                            continue;                                                             \
                        }                                                                         \
                        const T *src = x + (ch * c->H + ih) * c->W;                               \
                        if (c->sw == 1 && c->pw == 0 && kw + c->OW <= c->W) {                     \
                            memcpy(dst, src + kw, sizeof(T) * (size_t)c->OW);                     \
                            continue;                                                             \
                        }                                                                         \
                        for (int64_t ow = 0; ow < c->OW; ow++) {                                  \
                            int64_t iw = ow * c->sw - c->pw + kw;                                 \
                            dst[ow] = iw >= 0 && iw < c->W ? src[iw] : 0;                         \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
    }                                                                                             \
    static void col2im_##T(const struct conv *c, const T *col, int64_t ld, T *x)                 \
    {                                                                                             \
        for (int64_t i = 0; i < c->C * c->H * c->W; i++) x[i] = 0;                                \
        for (int64_t ch = 0; ch < c->C; ch++)                                                     \
            for (int64_t kh = 0; kh < c->KH; kh++)                                                \
                for (int64_t kw = 0; kw < c->KW; kw++) {                                          \
                    const T *row = col + ((ch * c->KH + kh) * c->KW + kw) * ld;                   \
                    for (int64_t oh = 0; oh < c->OH; oh++) {                                      \
                        int64_t ih = oh * c->sh - c->ph + kh;                                     \
                        if (ih < 0 || ih >= c->H) continue;                                       \
                        T *dst = x + (ch * c->H + ih) * c->W;                                     \
                        for (int64_t ow = 0; ow < c->OW; ow++) {                                  \
                            int64_t iw = ow * c->sw - c->pw + kw;                                 \
                            if (iw >= 0 && iw < c->W) dst[iw] += row[oh * c->OW + ow];            \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
    }
IM2COL(float)
IM2COL(double)

static void im2col(enum oc_dtype dt, const struct conv *c, const void *x, void *col, int64_t ld)
{
    if (dt == OC_F32) im2col_float(c, x, col, ld);
    else im2col_double(c, x, col, ld);
}

static void col2im(enum oc_dtype dt, const struct conv *c, const void *col, int64_t ld, void *x)
{
    if (dt == OC_F32) col2im_float(c, col, ld, x);
    else col2im_double(c, col, ld, x);
}

/* Images per GEMM: as many as fit about an L2 cache (the column matrix
 * [CK, g*P] plus an [O, g*P] staging matrix), at least one. OC_CONV_GROUP
 * caps it (tests use it to exercise uneven groups). */
#define CONV_SCRATCH_BUDGET ((size_t)1 << 20)

static int64_t conv_group(const struct conv *c, size_t es)
{
    size_t per = (size_t)((c->CK + c->O) * c->P) * es;
    int64_t g = per ? (int64_t)(CONV_SCRATCH_BUDGET / per) : c->N;
    const char *cap = getenv("OC_CONV_GROUP");
    if (cap && atoi(cap) > 0 && g > atoi(cap)) g = atoi(cap);
    if (g > c->N) g = c->N;
    return g < 1 ? 1 : g;
}

size_t oc_cpu_lib_scratch(const struct oc_kernel *k)
{
    if (k->kind == OC_K_LOOP || k->kind == OC_K_MATMUL) return 0;
    struct conv c = conv_dims(k);
    size_t es = oc_dtype_size(k->lib->dtype);
    return (size_t)((c.CK + c.O) * c.P * conv_group(&c, es)) * es;
}

/* Moves images between [g][O][P] (the tensor layout) and [O][g*P]. */
static void to_rows(const char *src, char *dst, int64_t g, int64_t O, int64_t P, size_t es)
{
    for (int64_t i = 0; i < g; i++)
        for (int64_t o = 0; o < O; o++)
            memcpy(dst + (size_t)((o * g + i) * P) * es, src + (size_t)((i * O + o) * P) * es,
                   (size_t)P * es);
}

static void from_rows(const char *src, char *dst, int64_t g, int64_t O, int64_t P, size_t es)
{
    for (int64_t i = 0; i < g; i++)
        for (int64_t o = 0; o < O; o++)
            memcpy(dst + (size_t)((i * O + o) * P) * es, src + (size_t)((o * g + i) * P) * es,
                   (size_t)P * es);
}

static void conv(const struct oc_kernel *k, void **args, void *scratch)
{
    struct conv c = conv_dims(k);
    enum oc_dtype dt = k->lib->dtype;
    size_t es = oc_dtype_size(dt);
    int64_t G = conv_group(&c, es);
    size_t xsz = (size_t)(c.C * c.H * c.W) * es, ysz = (size_t)(c.O * c.P) * es;
    char *col = scratch, *rows = (char *)scratch + (size_t)(c.CK * c.P * G) * es;
    if (k->kind == OC_K_CONV2D_GRAD_WEIGHT) memset(args[0], 0, (size_t)(c.O * c.CK) * es);
    for (int64_t n0 = 0; n0 < c.N; n0 += G) {
        int64_t g = c.N - n0 < G ? c.N - n0 : G, ld = g * c.P;
        if (k->kind == OC_K_CONV2D) {
            const char *x = args[1], *w = args[2];
            char *y = (char *)args[0] + (size_t)n0 * ysz;
            for (int64_t i = 0; i < g; i++) im2col(dt, &c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c.P) * es, ld);
            if (c.CK == 0) memset(rows, 0, (size_t)(c.O * ld) * es);
            else gemm(dt, 0, 0, c.O, ld, c.CK, w, c.CK, col, ld, 0.0, rows, ld);
            from_rows(rows, y, g, c.O, c.P, es);
        } else if (k->kind == OC_K_CONV2D_GRAD_INPUT) {
            const char *dy = args[1], *w = args[2];
            char *dx = args[0];
            to_rows(dy + (size_t)n0 * ysz, rows, g, c.O, c.P, es);
            if (c.O == 0) memset(col, 0, (size_t)(c.CK * ld) * es);
            else gemm(dt, 1, 0, c.CK, ld, c.O, w, c.CK, rows, ld, 0.0, col, ld);
            for (int64_t i = 0; i < g; i++)
                col2im(dt, &c, col + (size_t)(i * c.P) * es, ld, dx + (size_t)(n0 + i) * xsz);
        } else {
            const char *x = args[1], *dy = args[2];
            to_rows(dy + (size_t)n0 * ysz, rows, g, c.O, c.P, es);
            for (int64_t i = 0; i < g; i++) im2col(dt, &c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c.P) * es, ld);
            if (ld > 0) gemm(dt, 0, 1, c.O, c.CK, ld, rows, ld, col, ld, 1.0, args[0], c.CK);
        }
    }
}

void oc_cpu_lib_run(const struct oc_kernel *k, void **args, void *scratch)
{
    if (k->kind == OC_K_MATMUL) matmul(k, args);
    else conv(k, args, scratch);
}
