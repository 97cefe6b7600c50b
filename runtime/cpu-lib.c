/* cpu-lib.c - the CPU library calls: the kernels fusion leaves as barriers.
 *
 * matmul goes to OpenBLAS (sgemm/dgemm, transposes as flags, one call per
 * batch entry and block of rows). conv2d and its two adjoints go through
 * im2col + GEMM, per image n (CK = C*KH*KW, P = OH*OW):
 *   forward      y_n[O,P]   = W[O,CK] @ col(x_n)[CK,P]
 *   grad_input   dx_n       = col2im(W^T[CK,O] @ dy_n[O,P])
 *   grad_weight  dW[O,CK] += dy_n[O,P] @ col(x_n)^T[P,CK]
 * Images are processed in groups (one GEMM per group) spread over the
 * thread pool, each thread with its own scratch; weight gradients are
 * summed per thread and then across threads. BLAS itself runs single-
 * threaded (oc_cpu_lib_init): OpenBLAS left to thread a call on its own
 * kept the second core idle on the WRN layer shapes (M = 16..128 output
 * channels), where splitting over images runs both. Without OpenBLAS a
 * plain triple loop stands in (slow but exact enough for tests).
 * f32 convolutions that measured faster through oneDNN run in cpu-dnnl.c
 * instead (OC_CONV=auto|im2col|dnnl; the executor asks it first); f64
 * ones always come here. The AOT scorers keep their own im2col + OpenBLAS
 * (runtime/aot-rt/): their artifacts do not depend on oneDNN.
 */
#include "cpu-impl.h"

#include <stdlib.h>
#include <string.h>

#ifdef OC_HAVE_OPENBLAS
#include <cblas.h>
#endif

void oc_cpu_lib_init(void)
{
#ifdef OC_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
}

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

/* matmul: batch entries x blocks of rows of the result, over the pool. */
struct mm_job {
    const struct oc_kernel *k;
    void **args;
    int64_t M, N, K, mb, nmb;
};

static void matmul_part(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct mm_job *j = ctx;
    const struct oc_kernel *k = j->k;
    const struct oc_shape *as = &k->lib_shape[1], *bs = &k->lib_shape[2];
    int r = as->rank, ta = k->lib->attrs.trans_a, tb = k->lib->attrs.trans_b;
    enum oc_dtype dt = k->lib->dtype;
    size_t es = oc_dtype_size(dt);
    int64_t asz = as->dim[r - 2] * as->dim[r - 1], bsz = bs->dim[r - 2] * bs->dim[r - 1];
    int64_t lda = as->dim[r - 1] > 0 ? as->dim[r - 1] : 1, ldb = bs->dim[r - 1] > 0 ? bs->dim[r - 1] : 1;
    for (int64_t t = b; t < e; t++) {
        int64_t bi = t / j->nmb, i0 = t % j->nmb * j->mb;
        int64_t m = j->M - i0 < j->mb ? j->M - i0 : j->mb;
        char *y = (char *)j->args[0] + (size_t)(bi * j->M * j->N + i0 * j->N) * es;
        if (j->K == 0) {
            memset(y, 0, (size_t)(m * j->N) * es);
            continue;
        }
        /* rows i0.. of op(A): rows of A, or columns of A when transposed */
        const char *a = (const char *)j->args[1] + (size_t)(bi * asz + (ta ? i0 : i0 * lda)) * es;
        gemm(dt, ta, tb, m, j->N, j->K, a, lda, (const char *)j->args[2] + (size_t)(bi * bsz) * es,
             ldb, 0.0, y, j->N > 0 ? j->N : 1);
    }
}

static void matmul(const struct oc_kernel *k, void **args, struct oc_pool *pool)
{
    const struct oc_shape *as = &k->lib_shape[1], *ys = &k->lib_shape[0];
    int r = as->rank, ta = k->lib->attrs.trans_a;
    struct mm_job j = {k, args, ys->dim[r - 2], ys->dim[r - 1], ta ? as->dim[r - 2] : as->dim[r - 1], 0, 0};
    int64_t batch = 1;
    for (int d = 0; d < r - 2; d++) batch *= as->dim[d];
    if (j.M <= 0 || j.N <= 0 || batch <= 0) return;
    /* about 4 tasks per thread, none under ~1 MFLOP or 16 rows */
    int nt = oc_pool_size(pool);
    double flops = 2.0 * (double)j.M * (double)j.N * (double)(j.K > 0 ? j.K : 1);
    int64_t want = (4 * nt + batch - 1) / batch;
    int64_t by_work = (int64_t)(flops / 1e6);
    if (want > by_work) want = by_work;
    if (want > (j.M + 15) / 16) want = (j.M + 15) / 16;
    if (want < 1) want = 1;
    j.mb = (j.M + want - 1) / want;
    j.nmb = (j.M + j.mb - 1) / j.mb;
    oc_pool_run_tid(pool, batch * j.nmb, 1, matmul_part, &j);
}

/* Column matrices hold a group of images side by side: row r of col is
 * [image 0's P values | image 1's | ...], leading dimension ld = g*P. */
#define IM2COL(T)                                                                                 \
    static void im2col_##T(const struct oc_kconv *c, const T *x, T *col, int64_t ld)                 \
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
    static void col2im_##T(const struct oc_kconv *c, const T *col, int64_t ld, T *x)                 \
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

static void im2col(enum oc_dtype dt, const struct oc_kconv *c, const void *x, void *col, int64_t ld)
{
    if (dt == OC_F32) im2col_float(c, x, col, ld);
    else im2col_double(c, x, col, ld);
}

static void col2im(enum oc_dtype dt, const struct oc_kconv *c, const void *col, int64_t ld, void *x)
{
    if (dt == OC_F32) col2im_float(c, col, ld, x);
    else col2im_double(c, col, ld, x);
}

/* Images per GEMM: as many as fit about an L2 cache (the column matrix
 * [CK, g*P] plus an [O, g*P] staging matrix), at least one. OC_CONV_GROUP
 * caps it (tests use it to exercise uneven groups). */
#define CONV_SCRATCH_BUDGET ((size_t)1 << 20)

static int64_t conv_group(const struct oc_kconv *c, size_t es)
{
    size_t per = (size_t)((c->CK + c->O) * c->P) * es;
    int64_t g = per ? (int64_t)(CONV_SCRATCH_BUDGET / per) : c->N;
    const char *cap = getenv("OC_CONV_GROUP");
    if (cap && atoi(cap) > 0 && g > atoi(cap)) g = atoi(cap);
    if (g > c->N) g = c->N;
    return g < 1 ? 1 : g;
}

/* Per-thread scratch: the column matrix and the staging rows of a group,
 * then (weight gradients) the thread's partial gradient. */
static size_t group_bytes(const struct oc_kconv *c, int64_t G, size_t es)
{
    return (size_t)((c->CK + c->O) * c->P * G) * es;
}

size_t oc_cpu_lib_scratch(const struct oc_kernel *k)
{
    if (k->kind == OC_K_LOOP || k->kind == OC_K_MATMUL) return 0;
    struct oc_kconv c = oc_kir_conv(k);
    size_t es = oc_dtype_size(k->lib->dtype);
    size_t b = group_bytes(&c, conv_group(&c, es), es);
    if (k->kind == OC_K_CONV2D_GRAD_WEIGHT) b += (size_t)(c.O * c.CK) * es;
    return (b + 63) / 64 * 64;
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

struct conv_job {
    const struct oc_kernel *k;
    void **args;
    char *scratch;
    size_t per;          /* scratch bytes per thread */
    struct oc_kconv c;
    int64_t G;           /* images per group */
    unsigned char *used; /* per thread: wrote a partial weight gradient */
};

static void conv_groups(void *ctx, int64_t gb, int64_t ge, int tid)
{
    struct conv_job *j = ctx;
    const struct oc_kernel *k = j->k;
    const struct oc_kconv *c = &j->c;
    enum oc_dtype dt = k->lib->dtype;
    size_t es = oc_dtype_size(dt);
    size_t xsz = (size_t)(c->C * c->H * c->W) * es, ysz = (size_t)(c->O * c->P) * es;
    char *col = j->scratch + (size_t)tid * j->per;
    char *rows = col + (size_t)(c->CK * c->P * j->G) * es;
    for (int64_t gi = gb; gi < ge; gi++) {
        int64_t n0 = gi * j->G;
        int64_t g = c->N - n0 < j->G ? c->N - n0 : j->G, ld = g * c->P;
        if (k->kind == OC_K_CONV2D) {
            const char *x = j->args[1], *w = j->args[2];
            char *y = (char *)j->args[0] + (size_t)n0 * ysz;
            for (int64_t i = 0; i < g; i++)
                im2col(dt, c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c->P) * es, ld);
            if (c->CK == 0) memset(rows, 0, (size_t)(c->O * ld) * es);
            else gemm(dt, 0, 0, c->O, ld, c->CK, w, c->CK, col, ld, 0.0, rows, ld);
            from_rows(rows, y, g, c->O, c->P, es);
        } else if (k->kind == OC_K_CONV2D_GRAD_INPUT) {
            const char *dy = j->args[1], *w = j->args[2];
            char *dx = j->args[0];
            to_rows(dy + (size_t)n0 * ysz, rows, g, c->O, c->P, es);
            if (c->O == 0) memset(col, 0, (size_t)(c->CK * ld) * es);
            else gemm(dt, 1, 0, c->CK, ld, c->O, w, c->CK, rows, ld, 0.0, col, ld);
            for (int64_t i = 0; i < g; i++)
                col2im(dt, c, col + (size_t)(i * c->P) * es, ld, dx + (size_t)(n0 + i) * xsz);
        } else {
            const char *x = j->args[1], *dy = j->args[2];
            char *dw = rows + (size_t)(c->O * c->P * j->G) * es; /* this thread's partial */
            if (!j->used[tid]) memset(dw, 0, (size_t)(c->O * c->CK) * es);
            j->used[tid] = 1;
            to_rows(dy + (size_t)n0 * ysz, rows, g, c->O, c->P, es);
            for (int64_t i = 0; i < g; i++)
                im2col(dt, c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c->P) * es, ld);
            if (ld > 0) gemm(dt, 0, 1, c->O, c->CK, ld, rows, ld, col, ld, 1.0, dw, c->CK);
        }
    }
}

static void conv(const struct oc_kernel *k, void **args, void *scratch, struct oc_pool *pool)
{
    struct conv_job j = {k, args, scratch, oc_cpu_lib_scratch(k), oc_kir_conv(k), 0, NULL};
    enum oc_dtype dt = k->lib->dtype;
    size_t es = oc_dtype_size(dt);
    j.G = conv_group(&j.c, es);
    int nt = oc_pool_size(pool);
    unsigned char used[256] = {0};
    j.used = used;
    if (nt > 256) nt = 256;
    int64_t ngroup = (j.c.N + j.G - 1) / j.G;
    size_t wn = (size_t)(j.c.O * j.c.CK);
    if (k->kind == OC_K_CONV2D_GRAD_WEIGHT) memset(args[0], 0, wn * es);
    if (ngroup > 0) oc_pool_run_tid(pool, ngroup, 1, conv_groups, &j);
    if (k->kind != OC_K_CONV2D_GRAD_WEIGHT) return;
    /* dW = the sum of the threads' partials */
    for (int t = 0; t < nt; t++) {
        if (!used[t]) continue;
        const char *part = (const char *)scratch + (size_t)t * j.per +
                           group_bytes(&j.c, j.G, es);
        if (dt == OC_F32) {
            float *d = args[0];
            const float *p = (const float *)part;
            for (size_t i = 0; i < wn; i++) d[i] += p[i];
        } else {
            double *d = args[0];
            const double *p = (const double *)part;
            for (size_t i = 0; i < wn; i++) d[i] += p[i];
        }
    }
}

void oc_cpu_lib_run(const struct oc_kernel *k, void **args, void *scratch, struct oc_pool *pool)
{
    if (k->kind == OC_K_MATMUL) matmul(k, args, pool);
    else conv(k, args, scratch, pool);
}
