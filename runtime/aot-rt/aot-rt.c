/* aot-rt.c - the runtime linked into every ahead-of-time compiled scorer
 * (`oodc compile --target cpu`): the public API of scorer.h, a small thread
 * pool, the plan driver and the library calls (GEMM through OpenBLAS, or
 * plain loops when built with -DOCRT_NO_BLAS).
 *
 * It mirrors oodc's CPU executor (runtime/exec.c, threadpool.c, cpu-lib.c):
 * loop kernels run over [0, outer) in chunks claimed from an atomic counter
 * by the workers and the calling thread (aligned to the kernel's row
 * block), kernels too small to be worth it run on the caller; convolutions
 * are im2col + one single-threaded GEMM per group of images, the groups
 * spread over the pool. Two additions for the latency case: a one-image
 * convolution is split over the pool by blocks of output pixels (a single
 * group would leave the other cores idle), and im2col copies the interior
 * of padded stride-1 rows in one piece. Two other forms, where they
 * measured faster (WRN-10-2 at batch 128 on one thread: Baseline+T ~1.3x,
 * ODIN ~1.5x): stride-1 input gradients run as forward convolutions of dy
 * with flipped weights (no col2im scatter), and stride-1 3x3 float
 * convolutions as Winograd F(4x4,3x3) on batches with rows of 16 or more
 * outputs, F(2x2,3x3) elsewhere; both prepare their weights once in
 * oc_scorer_create (OC_SCORER_NO_FLIP=1 / OC_SCORER_NO_WINO=1 turn them
 * off, OC_SCORER_WINO=2 keeps F(2x2,3x3) everywhere, for A/B timings;
 * F(4,3) at batch 128: ODIN 307 vs 338 ms on one thread, 160 vs 167 on
 * two). The generated kernels call the
 * Philox helpers oc_rng_*_at, defined here bit for bit as in oodc's
 * ir/rng.c so sampling heads draw the same numbers as the JIT.
 *
 * Needs libc, libm, pthreads and (unless OCRT_NO_BLAS) OpenBLAS. Compiled
 * as C11 by the system compiler when the artifact is built; nothing here
 * depends on oodc's headers.
 */
#define _POSIX_C_SOURCE 200809L

#include "aot-rt-api.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Below this many points a loop kernel runs on the calling thread. */
#define PAR_MIN_POINTS 32768
/* Images per convolution GEMM: as many as fit about an L2 cache. */
#define CONV_SCRATCH_BUDGET ((size_t)1 << 20)

/* ---------------------------------------------------------------- Philox (ir/rng.c) */

static void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void draw(uint64_t seed, uint32_t counter, uint64_t i, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)i, counter, (uint32_t)(i >> 32), 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32(ctr, key, out);
}

OCRT_HIDDEN double oc_rng_uniform_at(uint64_t seed, uint32_t counter, uint64_t i);
OCRT_HIDDEN double oc_rng_normal_at(uint64_t seed, uint32_t counter, uint64_t i);

double oc_rng_uniform_at(uint64_t seed, uint32_t counter, uint64_t i)
{
    uint32_t o[4];
    draw(seed, counter, i, o);
    return (double)(o[0] >> 8) * 0x1.0p-24;
}

double oc_rng_normal_at(uint64_t seed, uint32_t counter, uint64_t i)
{
    uint32_t o[4];
    draw(seed, counter, i, o);
    double u1 = (double)((o[0] >> 8) + 1) * 0x1.0p-24;
    double u2 = (double)(o[1] >> 8) * 0x1.0p-24;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

/* ---------------------------------------------------------------- thread pool */

/* fn runs chunk [begin, end) on participant tid (0 is the caller). */
typedef void (*pool_fn)(void *ctx, int64_t begin, int64_t end, int tid);

struct pool;

struct worker_arg {
    struct pool *p;
    int tid;
};

struct pool {
    int n; /* participants, caller included */
    pthread_t *th;
    struct worker_arg *wa;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;
    int busy, quit;
    pool_fn fn;
    void *ctx;
    int64_t total, grain;
    atomic_llong next;
};

static void pool_work(struct pool *p, int tid)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->total) break;
        int64_t e = b + p->grain < p->total ? b + p->grain : p->total;
        p->fn(p->ctx, b, e, tid);
    }
}

static void *pool_worker(void *arg)
{
    struct worker_arg *wa = arg;
    struct pool *p = wa->p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        pool_work(p, wa->tid);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_free(struct pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; p->th && i < p->n - 1; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    free(p->wa);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p);
}

static struct pool *pool_new(int nthreads)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads < 1 ? 1 : nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    if (p->n > 1) {
        p->th = calloc((size_t)p->n - 1, sizeof *p->th);
        p->wa = calloc((size_t)p->n - 1, sizeof *p->wa);
        if (!p->th || !p->wa) {
            p->n = 1;
            pool_free(p);
            return NULL;
        }
        for (int i = 0; i < p->n - 1; i++) {
            p->wa[i].p = p;
            p->wa[i].tid = i + 1;
            if (pthread_create(&p->th[i], NULL, pool_worker, &p->wa[i])) {
                p->n = i + 1; /* run with the workers we have */
                break;
            }
        }
    }
    return p;
}

static void pool_run(struct pool *p, int64_t n, int64_t grain, pool_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (p->n == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->total = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    p->busy = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    pool_work(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------- GEMM */

#ifndef OCRT_NO_BLAS
/* The CBLAS interface of OpenBLAS (32-bit integers), declared here so that
 * building the artifact needs no cblas.h. */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc);
void openblas_set_num_threads(int n);
#endif

/* C[M,N] = op(A) op(B) + beta C, row-major, on the calling thread. */
static void gemm(int f64, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A,
                 int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
#ifndef OCRT_NO_BLAS
    if (K > 0) {
        int TA = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, TB = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
        if (!f64)
            cblas_sgemm(CBLAS_ROW_MAJOR, TA, TB, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B,
                        (int)ldb, (float)beta, C, (int)ldc);
        else
            cblas_dgemm(CBLAS_ROW_MAJOR, TA, TB, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B,
                        (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                int64_t ia = ta ? k * lda + i : i * lda + k;
                int64_t ib = tb ? j * ldb + k : k * ldb + j;
                double a = f64 ? ((const double *)A)[ia] : ((const float *)A)[ia];
                double b = f64 ? ((const double *)B)[ib] : ((const float *)B)[ib];
                acc += a * b;
            }
            if (!f64) {
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
    const struct ocrt_kernel *k;
    void **args;
    int64_t mb, nmb;
};

static void matmul_part(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct mm_job *j = ctx;
    const int64_t *p = j->k->p;
    int64_t M = p[1], N = p[2], K = p[3], lda = p[6], ldb = p[7];
    int ta = (int)p[4], tb = (int)p[5], f64 = j->k->f64;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    (void)tid;
    for (int64_t t = b; t < e; t++) {
        int64_t bi = t / j->nmb, i0 = t % j->nmb * j->mb;
        int64_t m = M - i0 < j->mb ? M - i0 : j->mb;
        char *y = (char *)j->args[0] + (size_t)(bi * M * N + i0 * N) * es;
        if (K == 0) {
            memset(y, 0, (size_t)(m * N) * es);
            continue;
        }
        /* rows i0.. of op(A): rows of A, or columns of A when transposed */
        const char *a = (const char *)j->args[1] + (size_t)(bi * p[8] + (ta ? i0 : i0 * lda)) * es;
        gemm(f64, ta, tb, m, N, K, a, lda, (const char *)j->args[2] + (size_t)(bi * p[9]) * es, ldb,
             0.0, y, N > 0 ? N : 1);
    }
}

static void matmul(struct pool *pool, const struct ocrt_kernel *k, void **args)
{
    const int64_t *p = k->p;
    int64_t batch = p[0], M = p[1], N = p[2], K = p[3];
    if (M <= 0 || N <= 0 || batch <= 0) return;
    /* about 4 tasks per thread, none under ~1 MFLOP or 16 rows */
    int nt = pool->n;
    double flops = 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 1);
    int64_t want = (4 * nt + batch - 1) / batch;
    int64_t by_work = (int64_t)(flops / 1e6);
    if (want > by_work) want = by_work;
    if (want > (M + 15) / 16) want = (M + 15) / 16;
    if (want < 1) want = 1;
    struct mm_job j = {k, args, 0, 0};
    j.mb = (M + want - 1) / want;
    j.nmb = (M + j.mb - 1) / j.mb;
    pool_run(pool, batch * j.nmb, 1, matmul_part, &j);
}

/* ---------------------------------------------------------------- convolution */

struct conv {
    int64_t N, C, H, W, O, KH, KW, OH, OW, CK, P;
    int64_t sh, sw, ph, pw;
};

static struct conv conv_of(const struct ocrt_kernel *k)
{
    const int64_t *p = k->p;
    struct conv c = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], 0, 0,
                     p[9], p[10], p[11], p[12]};
    c.CK = c.C * c.KH * c.KW;
    c.P = c.OH * c.OW;
    return c;
}

/* The output columns ow whose input column ow * s + off lies in [0, W):
 * [ow_in_lo(off, s), ow_in_hi(off, s, W)) (the loops then need no test). */
static inline int64_t ow_in_lo(int64_t off, int64_t s)
{
    return off >= 0 ? 0 : (-off + s - 1) / s;
}

static inline int64_t ow_in_hi(int64_t off, int64_t s, int64_t W)
{
    return W - off <= 0 ? 0 : (W - off + s - 1) / s;
}

/* Four floats at a time through GCC / Clang vector extensions (plain SSE2
 * on the portable target): the artifact is built with -O2, which leaves
 * the loops below scalar otherwise. memcpy loads and stores: no alignment. */
typedef float wv4 __attribute__((vector_size(16)));

static inline wv4 wld(const float *p)
{
    wv4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void wst(float *p, wv4 v)
{
    memcpy(p, &v, sizeof v);
}

/* Eight floats (F(4x4,3x3)'s transforms). */
typedef float wv8 __attribute__((vector_size(32)));
/* macros over an unaligned variant, not functions: a 32-byte vector
 * passed by value changes the ABI without AVX (-Wpsabi on the portable
 * target) */
typedef float wv8u __attribute__((vector_size(32), aligned(4)));
#define wld8(p) (*(const wv8u *)(const void *)(p))
#define wst8(p, v) (*(wv8u *)(void *)(p) = (v))

/* Lanes of two vectors (0-3: a's, 4-7: b's). */
#if defined(__clang__)
#define WSHUF(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
typedef int wi4 __attribute__((vector_size(16)));
#define WSHUF(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (wi4){i0, i1, i2, i3})
#endif

/* Stride-2 rows of im2col and col2im, four columns at a time while the
 * eight floats touched, s[2 ow + off .. 2 ow + off + 7], lie in the row
 * [0, n) (the callers' scalar loops finish; ow starts where 2 ow + off >=
 * 0): d[ow] = s[2 ow + off], and s[2 ow + off] += d[ow]. Returns the first
 * ow not done. */
static int64_t gather2(const float *s, int64_t off, float *d, int64_t ow, int64_t hi, int64_t n)
{
    for (; ow + 4 <= hi && 2 * ow + off + 8 <= n; ow += 4) {
        wv4 a = wld(s + 2 * ow + off), b = wld(s + 2 * ow + off + 4);
        wst(d + ow, WSHUF(a, b, 0, 2, 4, 6));
    }
    return ow;
}

static int64_t scatter2(const float *d, float *s, int64_t off, int64_t ow, int64_t hi, int64_t n)
{
    const wv4 z = {0, 0, 0, 0};
    for (; ow + 4 <= hi && 2 * ow + off + 8 <= n; ow += 4) {
        wv4 r = wld(d + ow);
        float *q = s + 2 * ow + off;
        wst(q, wld(q) + WSHUF(r, z, 0, 4, 1, 5));
        wst(q + 4, wld(q + 4) + WSHUF(r, z, 2, 6, 3, 7));
    }
    return ow;
}

/* Column matrices hold a group of images side by side: row r of col is
 * [image 0's P values | image 1's | ...], leading dimension ld = g*P.
 * im2col fills the columns (output pixels) [p0, p1) of one image; col2im
 * accumulates the channels [c0, c1) of one image (each channel's plane
 * only receives from its own rows, so channel ranges are independent). */
#define IM2COL(T)                                                                                 \
    static void im2col_##T(const struct conv *c, const T *x, T *col, int64_t ld, int64_t p0,     \
                           int64_t p1)                                                            \
    {                                                                                             \
        if (p1 <= p0) return;                                                                     \
        int64_t oh0 = p0 / c->OW, oh1 = (p1 - 1) / c->OW;                                         \
        for (int64_t ch = 0; ch < c->C; ch++)                                                     \
            for (int64_t kh = 0; kh < c->KH; kh++)                                                \
                for (int64_t kw = 0; kw < c->KW; kw++) {                                          \
                    T *row = col + ((ch * c->KH + kh) * c->KW + kw) * ld;                         \
                    for (int64_t oh = oh0; oh <= oh1; oh++) {                                     \
                        int64_t ow0 = oh == oh0 ? p0 % c->OW : 0;                                 \
                        int64_t ow1 = oh == oh1 ? (p1 - 1) % c->OW + 1 : c->OW;                   \
                        int64_t ih = oh * c->sh - c->ph + kh;                                     \
                        T *dst = row + oh * c->OW;                                                \
                        if (ih < 0 || ih >= c->H) {                                               \
                            for (int64_t ow = ow0; ow < ow1; ow++) dst[ow] = 0;                   \
                            continue;                                                             \
                        }                                                                         \
                        const T *src = x + (ch * c->H + ih) * c->W;                               \
                        if (c->sw == 1) {                                                         \
                            /* iw = ow - pw + kw: zeros, one copy, zeros */                       \
                            int64_t lo = c->pw - kw, hi = c->W + c->pw - kw;                      \
                            lo = lo < ow0 ? ow0 : lo > ow1 ? ow1 : lo;                            \
                            hi = hi > ow1 ? ow1 : hi < lo ? lo : hi;                              \
                            for (int64_t ow = ow0; ow < lo; ow++) dst[ow] = 0;                    \
                            if (hi > lo)                                                          \
                                memcpy(dst + lo, src + lo - c->pw + kw, sizeof(T) * (size_t)(hi - lo)); \
                            for (int64_t ow = hi; ow < ow1; ow++) dst[ow] = 0;                    \
                            continue;                                                             \
                        }                                                                         \
                        int64_t off = kw - c->pw, lo = ow_in_lo(off, c->sw);                      \
                        int64_t hi = ow_in_hi(off, c->sw, c->W);                                  \
                        lo = lo < ow0 ? ow0 : lo > ow1 ? ow1 : lo;                                \
                        hi = hi > ow1 ? ow1 : hi < lo ? lo : hi;                                  \
                        for (int64_t ow = ow0; ow < lo; ow++) dst[ow] = 0;                        \
                        int64_t ow = lo;                                                          \
                        if (sizeof(T) == sizeof(float) && c->sw == 2)                             \
                            ow = gather2((const float *)(const void *)src, off, (float *)(void *)dst, lo, hi, c->W); \
                        for (; ow < hi; ow++) dst[ow] = src[ow * c->sw + off];                    \
                        for (ow = hi; ow < ow1; ow++) dst[ow] = 0;                                \
                    }                                                                             \
                }                                                                                 \
    }                                                                                             \
    static void col2im_##T(const struct conv *c, const T *col, int64_t ld, T *x, int64_t c0,     \
                           int64_t c1)                                                            \
    {                                                                                             \
        for (int64_t i = c0 * c->H * c->W; i < c1 * c->H * c->W; i++) x[i] = 0;                  \
        for (int64_t ch = c0; ch < c1; ch++)                                                      \
            for (int64_t kh = 0; kh < c->KH; kh++)                                                \
                for (int64_t kw = 0; kw < c->KW; kw++) {                                          \
                    const T *row = col + ((ch * c->KH + kh) * c->KW + kw) * ld;                   \
                    for (int64_t oh = 0; oh < c->OH; oh++) {                                      \
                        int64_t ih = oh * c->sh - c->ph + kh;                                     \
                        if (ih < 0 || ih >= c->H) continue;                                       \
                        T *dst = x + (ch * c->H + ih) * c->W;                                     \
                        const T *r = row + oh * c->OW;                                            \
                        int64_t off = kw - c->pw, hi = ow_in_hi(off, c->sw, c->W);                \
                        if (hi > c->OW) hi = c->OW;                                               \
                        int64_t ow = ow_in_lo(off, c->sw);                                        \
                        if (sizeof(T) == sizeof(float) && c->sw == 2)                             \
                            ow = scatter2((const float *)(const void *)r, (float *)(void *)dst, off, ow, hi, c->W); \
                        for (; ow < hi; ow++) dst[ow * c->sw + off] += r[ow];                     \
                    }                                                                             \
                }                                                                                 \
    }
IM2COL(float)
IM2COL(double)

static void im2col(int f64, const struct conv *c, const void *x, void *col, int64_t ld, int64_t p0,
                   int64_t p1)
{
    if (f64) im2col_double(c, x, col, ld, p0, p1);
    else im2col_float(c, x, col, ld, p0, p1);
}

static void col2im(int f64, const struct conv *c, const void *col, int64_t ld, void *x, int64_t c0,
                   int64_t c1)
{
    if (f64) col2im_double(c, col, ld, x, c0, c1);
    else col2im_float(c, col, ld, x, c0, c1);
}

/* col2im of a 1x1 unpadded convolution of column stride 2: every input
 * pixel receives one column value or none, so each row is written once
 * (values interleaved with zeros) instead of cleared and scattered into. */
static void place2(const struct conv *c, const float *col, int64_t ld, float *x)
{
    const wv4 z = {0, 0, 0, 0};
    for (int64_t ch = 0; ch < c->C; ch++)
        for (int64_t ih = 0; ih < c->H; ih++) {
            float *dst = x + (ch * c->H + ih) * c->W;
            if (ih % c->sh || ih / c->sh >= c->OH) {
                memset(dst, 0, sizeof(float) * (size_t)c->W);
                continue;
            }
            const float *r = col + ch * ld + ih / c->sh * c->OW;
            int64_t ow = 0;
            for (; ow + 4 <= c->OW && 2 * ow + 8 <= c->W; ow += 4) {
                wv4 v = wld(r + ow);
                wst(dst + 2 * ow, WSHUF(v, z, 0, 4, 1, 5));
                wst(dst + 2 * ow + 4, WSHUF(v, z, 2, 6, 3, 7));
            }
            for (int64_t iw = 2 * ow; iw < c->W; iw++) dst[iw] = iw % 2 == 0 && iw / 2 < c->OW ? r[iw / 2] : 0.0f;
        }
}

static int64_t conv_group(const struct conv *c, size_t es)
{
    size_t per = (size_t)((c->CK + c->O) * c->P) * es;
    int64_t g = per ? (int64_t)(CONV_SCRATCH_BUDGET / per) : c->N;
    if (g > c->N) g = c->N;
    return g < 1 ? 1 : g;
}

/* Per-thread scratch: the column matrix and the staging rows of a group,
 * then (weight gradients) the thread's partial gradient. */
static size_t group_bytes(const struct conv *c, int64_t G, size_t es)
{
    return (size_t)((c->CK + c->O) * c->P * G) * es;
}

/* A stride-1 input gradient is a forward convolution of dy with the
 * weights flipped in space and transposed in/out channels,
 *     dx[c,i,j] = sum_{o,kh,kw} dy[o, i+ph-kh, j+pw-kw] w[o,c,kh,kw]
 *               = conv(dy, w'[c,o,kh,kw] = w[o,c,KH-1-kh,KW-1-kw]),
 * padding KH-1-ph / KW-1-pw, output H x W: it runs through im2col + GEMM
 * without col2im's scatter (measured faster on the WRN shapes). */
/* Few input channels make the flipped GEMM's M small (the network's first
 * layer, C = 3: col2im measured faster there). The test lowers it. */
#ifndef OCRT_FLIP_MIN_CH
#define OCRT_FLIP_MIN_CH 16
#endif

static int flip_ok(const struct ocrt_kernel *k)
{
    const int64_t *p = k->p;
    return k->kind == OCRT_CONV2D_GRAD_INPUT && p[9] == 1 && p[10] == 1 && p[11] >= 0 &&
           p[12] >= 0 && p[11] <= p[5] - 1 && p[12] <= p[6] - 1 && p[1] >= OCRT_FLIP_MIN_CH &&
           p[1] > 0 && p[4] > 0 && p[7] > 0 && p[8] > 0;
}

static struct conv flip_conv(const struct conv *c)
{
    struct conv f = {c->N, c->O, c->OH, c->OW, c->C, c->KH, c->KW, c->H, c->W, 0, 0,
                     1, 1, c->KH - 1 - c->ph, c->KW - 1 - c->pw};
    f.CK = f.C * f.KH * f.KW;
    f.P = f.OH * f.OW;
    return f;
}

/* w' of flip_conv from w [O][C][KH][KW] (into dst [C][O][KH][KW]). */
static void flip_weights(const struct conv *c, int f64, const void *w, void *dst)
{
    int64_t kk = c->KH * c->KW;
    for (int64_t o = 0; o < c->O; o++)
        for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t t = 0; t < kk; t++) {
                int64_t s = (o * c->C + ch) * kk + t, d = (ch * c->O + o) * kk + (kk - 1 - t);
                if (f64) ((double *)dst)[d] = ((const double *)w)[s];
                else ((float *)dst)[d] = ((const float *)w)[s];
            }
}

static int wino_ok(int kind, int f64, const struct conv *c);
static size_t wino_buf_bytes(const struct conv *c);
static size_t wino_vm_bytes(const struct conv *c, int64_t G);
static int64_t wino_group(const struct conv *c);

static size_t conv_scratch(const struct ocrt_kernel *k)
{
    if (k->kind == OCRT_LOOP || k->kind == OCRT_MATMUL) return 0;
    struct conv c = conv_of(k);
    size_t es = k->f64 ? sizeof(double) : sizeof(float);
    size_t b = group_bytes(&c, conv_group(&c, es), es);
    if (k->kind == OCRT_CONV2D_GRAD_WEIGHT) b += (size_t)(c.O * c.CK) * es;
    if (wino_ok(k->kind, k->f64, &c)) {
        size_t wb = wino_vm_bytes(&c, wino_group(&c)) + wino_buf_bytes(&c);
        if (wb > b) b = wb;
    }
    if (flip_ok(k)) {
        struct conv f = flip_conv(&c);
        size_t fb = group_bytes(&f, conv_group(&f, es), es);
        if (fb > b) b = fb;
        if (wino_ok(OCRT_CONV2D, k->f64, &f)) {
            size_t wb = wino_vm_bytes(&f, wino_group(&f)) + wino_buf_bytes(&f);
            if (wb > b) b = wb;
        }
    }
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

#define MAX_THREADS 1024

struct conv_job {
    int kind, f64;
    void **args;
    char *scratch;
    size_t per; /* scratch bytes per thread */
    struct conv c;
    int64_t G;  /* images per group */
    unsigned char used[MAX_THREADS]; /* per thread: wrote a partial weight gradient */
};

/* Groups of images [gb, ge) on thread tid, with its own scratch. */
static void conv_groups(void *ctx, int64_t gb, int64_t ge, int tid)
{
    struct conv_job *j = ctx;
    const struct conv *c = &j->c;
    int f64 = j->f64;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    size_t xsz = (size_t)(c->C * c->H * c->W) * es, ysz = (size_t)(c->O * c->P) * es;
    char *col = j->scratch + (size_t)tid * j->per;
    char *rows = col + (size_t)(c->CK * c->P * j->G) * es;
    for (int64_t gi = gb; gi < ge; gi++) {
        int64_t n0 = gi * j->G;
        int64_t g = c->N - n0 < j->G ? c->N - n0 : j->G, ld = g * c->P;
        if (j->kind == OCRT_CONV2D) {
            const char *x = j->args[1], *w = j->args[2];
            char *y = (char *)j->args[0] + (size_t)n0 * ysz;
            /* one image: [O][P] is already the tensor's layout */
            char *out = g == 1 ? y : rows;
            for (int64_t i = 0; i < g; i++)
                im2col(f64, c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c->P) * es, ld, 0, c->P);
            if (c->CK == 0) memset(out, 0, (size_t)(c->O * ld) * es);
            else gemm(f64, 0, 0, c->O, ld, c->CK, w, c->CK, col, ld, 0.0, out, ld);
            if (g > 1) from_rows(rows, y, g, c->O, c->P, es);
        } else if (j->kind == OCRT_CONV2D_GRAD_INPUT) {
            const char *dy = j->args[1], *w = j->args[2];
            char *dx = j->args[0];
            const char *in = dy + (size_t)n0 * ysz;
            if (g > 1) to_rows(in, rows, g, c->O, c->P, es), in = rows;
            if (c->O == 0) memset(col, 0, (size_t)(c->CK * ld) * es);
            else gemm(f64, 1, 0, c->CK, ld, c->O, w, c->CK, in, ld, 0.0, col, ld);
            for (int64_t i = 0; i < g; i++) {
                char *dxi = dx + (size_t)(n0 + i) * xsz;
                if (!f64 && c->KH == 1 && c->KW == 1 && c->ph == 0 && c->pw == 0 && c->sw == 2)
                    place2(c, (const float *)(const void *)(col + (size_t)(i * c->P) * es), ld, (float *)(void *)dxi);
                else col2im(f64, c, col + (size_t)(i * c->P) * es, ld, dxi, 0, c->C);
            }
        } else {
            const char *x = j->args[1], *dy = j->args[2];
            char *dw = rows + (size_t)(c->O * c->P * j->G) * es; /* this thread's partial */
            if (!j->used[tid]) memset(dw, 0, (size_t)(c->O * c->CK) * es);
            j->used[tid] = 1;
            to_rows(dy + (size_t)n0 * ysz, rows, g, c->O, c->P, es);
            for (int64_t i = 0; i < g; i++)
                im2col(f64, c, x + (size_t)(n0 + i) * xsz, col + (size_t)(i * c->P) * es, ld, 0, c->P);
            if (ld > 0) gemm(f64, 0, 1, c->O, c->CK, ld, rows, ld, col, ld, 1.0, dw, c->CK);
        }
    }
}

/* One image (batch 1, the latency case): a single group cannot keep the
 * pool busy, so the convolution is split into blocks of columns (output
 * pixels), each thread building its columns and multiplying them; the
 * adjoint's col2im then runs over blocks of channels. The results are the
 * bytes one GEMM gives, up to BLAS's own blocking. */
struct one_job {
    int kind, f64;
    const struct conv *c;
    void **args;
    char *col;
    int64_t cb; /* columns per block; channels per block in col2im */
};

static void one_cols(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct one_job *j = ctx;
    const struct conv *c = j->c;
    int f64 = j->f64;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    (void)tid;
    for (int64_t t = b; t < e; t++) {
        int64_t c0 = t * j->cb, n = c->P - c0 < j->cb ? c->P - c0 : j->cb;
        char *colb = j->col + (size_t)c0 * es;
        if (j->kind == OCRT_CONV2D) {
            im2col(f64, c, j->args[1], j->col, c->P, c0, c0 + n);
            gemm(f64, 0, 0, c->O, n, c->CK, j->args[2], c->CK, colb, c->P, 0.0,
                 (char *)j->args[0] + (size_t)c0 * es, c->P);
        } else {
            gemm(f64, 1, 0, c->CK, n, c->O, j->args[2], c->CK, (const char *)j->args[1] + (size_t)c0 * es,
                 c->P, 0.0, colb, c->P);
        }
    }
}

static void one_chans(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct one_job *j = ctx;
    (void)tid;
    col2im(j->f64, j->c, j->col, j->c->P, j->args[0], b, e);
}

/* Below this many flops a one-image convolution stays on the caller
 * (OC_SCORER_SPLIT_FLOPS overrides it; the tests set 0). The WRN-10-2
 * layers (<= 19 MFLOP, ~0.1-0.2 ms) ran slower split over two threads than
 * on one (the wake-ups and the thinner GEMMs cost more than the second
 * core gave: batch 1 Baseline+T 1.0-1.3 ms split at 4 MFLOP, 0.78-0.80 ms
 * unsplit); larger layers still split. */
#define ONE_PAR_FLOPS 5e7

static int conv_one_image(struct pool *pool, int kind, int f64, const struct conv *cp, void **args,
                          void *scratch, double min_flops)
{
    struct conv c = *cp;
    if (c.N != 1 || pool->n < 2 || c.P < 2 || c.CK == 0 || c.O == 0 || kind == OCRT_CONV2D_GRAD_WEIGHT ||
        2.0 * (double)c.O * (double)c.CK * (double)c.P < min_flops)
        return 0;
    int64_t nb = 2 * (int64_t)pool->n, cb = (c.P + nb - 1) / nb;
    cb = (cb + 15) / 16 * 16;
    struct one_job j = {kind, f64, &c, args, scratch, cb};
    pool_run(pool, (c.P + cb - 1) / cb, 1, one_cols, &j);
    if (kind == OCRT_CONV2D_GRAD_INPUT) pool_run(pool, c.C, (c.C + nb - 1) / nb, one_chans, &j);
    return 1;
}

/* ---------------------------------------------------------------- Winograd F(2x2,3x3)
 *
 * Stride-1 3x3 float convolutions (forward ones, and input gradients in
 * their flipped form) as Lavin & Gray's F(2x2,3x3): per 2x2 output tile
 *     Y = A^T [ (G g G^T) .* (B^T d B) ] A,
 * the sum over input channels being 16 GEMMs over a group's T tiles,
 *     M[xi] [O x T] = U[xi] [O x C] @ V[xi] [C x T],
 * 16 multiply-adds per tile and channel pair against im2col's 36. U is
 * made once at oc_scorer_create (weights from the blob). f64 convolutions
 * keep im2col (their tolerance is tighter than the transforms' rounding).
 * F(4x4,3x3) (below) shares the grouping, scratch and jobs, with 36 GEMMs. */

/* Images per group: V and M within half of CONV_SCRATCH_BUDGET measured
 * faster than within all of it (WRN-10-2's 128-channel layer, batch 128:
 * 12 ms vs 14.5 ms; 256 KB or 2 MB: no better). */
#define WINO_SCRATCH_BUDGET ((size_t)1 << 19)

struct wino_geo {
    int64_t TH, TW, T1, Wp; /* tiles per column, per row, per image; padded row length */
};

/* Output tile size: 2 (F(2x2,3x3), 16 GEMMs) or 4 (F(4x4,3x3), 36 GEMMs
 * over a quarter of the tiles). Set by oc_scorer_create from
 * OC_SCORER_WINO=2|4 before any weights are transformed; U's layout and
 * the scratch sizes follow it, so it is one setting for the process. */
#ifndef OCRT_WINO_M
#define OCRT_WINO_M 4
#endif
static int wino_m = OCRT_WINO_M;

/* F(4,3) only on rows of at least this many outputs: on narrower ones
 * (WRN-10-2's 8x8 layers) its few tiles per row leave the four-tile loops
 * idle and the GEMMs thin, and F(2,3) measured faster. The test lowers it. */
#ifndef OCRT_WINO4_MIN_W
#define OCRT_WINO4_MIN_W 16
#endif
/* nor for one image (batch-1 ODIN: 2.33 vs 2.27 ms, the 36 thin GEMMs
 * split over the pool cost more than the smaller ones saved) */
#ifndef OCRT_WINO4_MIN_N
#define OCRT_WINO4_MIN_N 2
#endif

static int wino_tile(const struct conv *c)
{
    return wino_m == 4 && c->OW >= OCRT_WINO4_MIN_W && c->N >= OCRT_WINO4_MIN_N ? 4 : 2;
}

static int wino_nx(const struct conv *c)
{
    return wino_tile(c) == 4 ? 36 : 16;
}

static struct wino_geo wino_geo_of(const struct conv *c)
{
    int64_t m = wino_tile(c);
    struct wino_geo g = {(c->OH + m - 1) / m, (c->OW + m - 1) / m, 0, 0};
    g.T1 = g.TH * g.TW;
    /* F(4,3): the padded row split into 4 phases of TW + 1 columns */
    g.Wp = m == 4 ? 4 * (g.TW + 1) : 2 * g.TW + 2;
    return g;
}

/* Below this many input or output channels the GEMMs are too thin
 * (K or M) to pay for the transforms (the first layer, C = 3: im2col
 * measured faster). The test lowers it. */
#ifndef OCRT_WINO_MIN_CH
#define OCRT_WINO_MIN_CH 16
#endif

static int wino_ok(int kind, int f64, const struct conv *c)
{
    return kind == OCRT_CONV2D && !f64 && c->KH == 3 && c->KW == 3 && c->sh == 1 && c->sw == 1 &&
           c->ph >= 0 && c->pw >= 0 && c->ph <= 2 && c->pw <= 2 && c->C >= OCRT_WINO_MIN_CH &&
           c->O >= OCRT_WINO_MIN_CH && c->C > 0 && c->O > 0 && c->P > 0;
}

/* Per-thread buffer of the transforms: one padded input plane (wino_in),
 * or 4 half rows (F(2,3)'s wino_out). */
static size_t wino_buf_bytes(const struct conv *c)
{
    struct wino_geo g = wino_geo_of(c);
    return ((size_t)((wino_tile(c) * g.TH + 2) * g.Wp) * sizeof(float) + 63) / 64 * 64;
}

/* V and M of G images. */
static size_t wino_vm_bytes(const struct conv *c, int64_t G)
{
    return (size_t)(wino_nx(c) * (c->C + c->O) * wino_geo_of(c).T1 * G) * sizeof(float);
}

static int64_t wino_group(const struct conv *c)
{
    size_t per = wino_vm_bytes(c, 1);
    int64_t g = (int64_t)(WINO_SCRATCH_BUDGET / per);
    if (g > c->N) g = c->N;
    return g < 1 ? 1 : g;
}

/* U [16][O][C] from w [O][C][3][3] (G g G^T, in double). */
static void wino_weights2(const struct conv *c, const float *w, float *u)
{
    for (int64_t o = 0; o < c->O; o++)
        for (int64_t ch = 0; ch < c->C; ch++) {
            const float *g = w + (o * c->C + ch) * 9;
            double t[4][3];
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5 * ((double)g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5 * ((double)g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {
                double r[4] = {t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]),
                               0.5 * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) u[((i * 4 + j) * c->O + o) * c->C + ch] = (float)r[j];
            }
        }
}

/* V[xi][ch][t] = B^T d B of channels [c0, c1) of g images at x; t runs
 * over the images' tiles (ld T). Each channel's padded plane is first
 * copied whole into buf with its rows split into even and odd columns, so
 * that tile tw reads ev[tw], od[tw], ev[tw+1], od[tw+1]: contiguous in tw.
 * The transforms read the plane only after all of it is written: vector
 * loads of floats just stored one at a time cannot be forwarded from the
 * store buffer and stall (an earlier form split four rows per tile row
 * and spent a quarter of its time there). Then, per tile row, the column
 * transform (across rows) and the row transform run in registers. */
static void wino_in2(const struct conv *c, const float *x, int64_t g, float *v, int64_t T, int64_t c0,
                     int64_t c1, float *buf)
{
    struct wino_geo q = wino_geo_of(c);
    int64_t Wp = q.Wp, H2 = Wp / 2, CT = c->C * T, TW = q.TW, Hp = 2 * q.TH + 2;
    int64_t pw = c->pw, W = c->W, ka = (pw + 1) / 2, kb = (W + pw) / 2;
    if (ka > H2) ka = H2;
    if (kb > H2) kb = H2;
    if (kb < ka) kb = ka;
    for (int64_t i = 0; i < g; i++)
        for (int64_t ch = c0; ch < c1; ch++) {
            const float *xc = x + (i * c->C + ch) * c->H * c->W;
            for (int64_t r = 0; r < Hp; r++) {
                int64_t ih = r - c->ph;
                float *ev = buf + r * Wp, *od = ev + H2;
                if (ih < 0 || ih >= c->H) {
                    memset(ev, 0, sizeof(float) * (size_t)Wp);
                    continue;
                }
                /* columns 2k - pw and 2k - pw + 1: both inside the row
                 * for k in [ka, kb), the edges checked */
                const float *src = xc + ih * c->W;
                int64_t k = 0;
                for (; k < ka; k++) {
                    int64_t i0 = 2 * k - pw, i1 = i0 + 1;
                    ev[k] = i0 >= 0 && i0 < W ? src[i0] : 0.0f;
                    od[k] = i1 >= 0 && i1 < W ? src[i1] : 0.0f;
                }
                for (;;) {
                    /* the last four columns again where a whole four does
                     * not remain: they overlap the ones before */
                    if (k + 4 > kb || 2 * k - pw + 8 > W) {
                        if (k >= kb || kb - 4 < ka || 2 * (kb - 4) - pw + 8 > W) break;
                        k = kb - 4;
                    }
                    wv4 a = wld(src + 2 * k - pw), b = wld(src + 2 * k - pw + 4);
                    wst(ev + k, WSHUF(a, b, 0, 2, 4, 6));
                    wst(od + k, WSHUF(a, b, 1, 3, 5, 7));
                    k += 4;
                }
                for (; k < kb; k++) {
                    ev[k] = src[2 * k - pw];
                    od[k] = src[2 * k - pw + 1];
                }
                for (k = kb; k < H2; k++) {
                    int64_t i0 = 2 * k - pw, i1 = i0 + 1;
                    ev[k] = i0 >= 0 && i0 < W ? src[i0] : 0.0f;
                    od[k] = i1 >= 0 && i1 < W ? src[i1] : 0.0f;
                }
            }
            for (int64_t th = 0; th < q.TH; th++) {
                const float *p = buf + 2 * th * Wp;
                float *vt = v + ch * T + (i * q.TH + th) * TW;
                int64_t tw = 0;
                /* row R of the column transform (two input rows), then
                 * its row transform into 4 of the 16 V matrices: each pass
                 * writes TW consecutive floats of 4 of them (writing all
                 * 16 a few tiles at a time measured slower) */
                for (int R = 0; R < 4; R++) {
                    static const int ra[4] = {0, 1, 2, 1}, rb[4] = {2, 2, 1, 3};
                    const float *pa = p + ra[R] * Wp, *pb = p + rb[R] * Wp;
                    float *v0 = vt + (R * 4) * CT, *v1 = v0 + CT, *v2 = v1 + CT, *v3 = v2 + CT;
                    int64_t t = 0;
#define WINO_ROW(OP)                                                                              \
    for (t = 0; t + 4 <= TW; t += 4) {                                                           \
        wv4 e0 = wld(pa + t) OP wld(pb + t), e1 = wld(pa + H2 + t) OP wld(pb + H2 + t);          \
        wv4 e2 = wld(pa + t + 1) OP wld(pb + t + 1), e3 = wld(pa + H2 + t + 1) OP wld(pb + H2 + t + 1); \
        wst(v0 + t, e0 - e2), wst(v1 + t, e1 + e2), wst(v2 + t, e2 - e1), wst(v3 + t, e1 - e3); \
    }
                    if (R == 1) WINO_ROW(+) else WINO_ROW(-)
#undef WINO_ROW
                    tw = t;
                }
                for (; tw < TW; tw++) {
                    float a[4][4], b[4][4];
                    for (int r = 0; r < 4; r++) {
                        const float *ev = p + r * Wp, *od = ev + H2;
                        a[r][0] = ev[tw], a[r][1] = od[tw], a[r][2] = ev[tw + 1], a[r][3] = od[tw + 1];
                    }
                    for (int e = 0; e < 4; e++) {
                        b[0][e] = a[0][e] - a[2][e];
                        b[1][e] = a[1][e] + a[2][e];
                        b[2][e] = a[2][e] - a[1][e];
                        b[3][e] = a[1][e] - a[3][e];
                    }
                    for (int r = 0; r < 4; r++) {
                        float *v0 = vt + (r * 4) * CT + tw;
                        v0[0] = b[r][0] - b[r][2];
                        v0[CT] = b[r][1] + b[r][2];
                        v0[2 * CT] = b[r][2] - b[r][1];
                        v0[3 * CT] = b[r][1] - b[r][3];
                    }
                }
            }
        }
}

/* y = A^T m A of output channels [o0, o1) of g images (M [16][O][T]):
 * even and odd output columns are formed apart, then interleaved in
 * registers where 4 whole tiles fit the row, through buf at the edge. The
 * sums are spelt out (-O2 keeps small arrays of vectors on the stack). */
static void wino_out2(const struct conv *c, const float *m, int64_t T, int64_t g, float *y, int64_t o0,
                      int64_t o1, float *buf)
{
    struct wino_geo q = wino_geo_of(c);
    int64_t OT = c->O * T, TW = q.TW, H2 = q.Wp / 2;
    int64_t TV = c->OW / 2 < TW ? c->OW / 2 : TW; /* tiles with both columns inside */
    float *r0e = buf, *r0o = buf + H2, *r1e = buf + 2 * H2, *r1o = buf + 3 * H2;
    for (int64_t i = 0; i < g; i++)
        for (int64_t o = o0; o < o1; o++) {
            float *yo = y + (i * c->O + o) * c->P;
            for (int64_t th = 0; th < q.TH; th++) {
                const float *mt = m + o * T + (i * q.TH + th) * TW;
                float *y0 = yo + 2 * th * c->OW, *y1 = y0 + c->OW;
                int two = 2 * th + 1 < c->OH;
                int64_t tw = 0;
                for (; tw + 4 <= TV; tw += 4) {
                    const float *p = mt + tw;
#define WINO_S(j, S0, S1)                                                                         \
    wv4 S0, S1;                                                                                   \
    {                                                                                             \
        wv4 a0 = wld(p + (j) * OT), a1 = wld(p + (4 + (j)) * OT);                                 \
        wv4 a2 = wld(p + (8 + (j)) * OT), a3 = wld(p + (12 + (j)) * OT);                          \
        S0 = a0 + a1 + a2;                                                                        \
        S1 = a1 - a2 - a3;                                                                        \
    }
                    WINO_S(0, s00, s10)
                    WINO_S(1, s01, s11)
                    WINO_S(2, s02, s12)
                    WINO_S(3, s03, s13)
#undef WINO_S
                    wv4 e = s00 + s01 + s02, od = s01 - s02 - s03;
                    wst(y0 + 2 * tw, WSHUF(e, od, 0, 4, 1, 5));
                    wst(y0 + 2 * tw + 4, WSHUF(e, od, 2, 6, 3, 7));
                    if (two) {
                        e = s10 + s11 + s12, od = s11 - s12 - s13;
                        wst(y1 + 2 * tw, WSHUF(e, od, 0, 4, 1, 5));
                        wst(y1 + 2 * tw + 4, WSHUF(e, od, 2, 6, 3, 7));
                    }
                }
                if (tw == TW) continue;
                int64_t t0 = tw;
                for (; tw < TW; tw++) {
                    float s0[4], s1[4];
                    for (int j = 0; j < 4; j++) {
                        float a0 = mt[j * OT + tw], a1 = mt[(4 + j) * OT + tw];
                        float a2 = mt[(8 + j) * OT + tw], a3 = mt[(12 + j) * OT + tw];
                        s0[j] = a0 + a1 + a2;
                        s1[j] = a1 - a2 - a3;
                    }
                    r0e[tw] = s0[0] + s0[1] + s0[2];
                    r0o[tw] = s0[1] - s0[2] - s0[3];
                    r1e[tw] = s1[0] + s1[1] + s1[2];
                    r1o[tw] = s1[1] - s1[2] - s1[3];
                }
                for (int64_t k = 2 * t0; k < c->OW; k++) {
                    y0[k] = k & 1 ? r0o[k >> 1] : r0e[k >> 1];
                    if (two) y1[k] = k & 1 ? r1o[k >> 1] : r1e[k >> 1];
                }
            }
        }
}

/* ---------------------------------------------------------------- Winograd F(4x4,3x3)
 *
 * Lavin & Gray's F(4x4,3x3) (interpolation points 0, 1, -1, 2, -2, inf):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *          0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6;
 *          1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * 36 GEMMs over a quarter of F(2,3)'s tiles (2.25 multiply-adds per output
 * and channel pair against 4); the larger constants cost some float
 * accuracy (about 10x F(2,3)'s rounding, see test-aot-conv.c). */

/* t = B^T d on six values (vectors or floats; c2, c4, c5: the constants
 * in the caller's type) */
#define WINO_BT6(d0, d1, d2, d3, d4, d5, t0, t1, t2, t3, t4, t5)                                  \
    {                                                                                             \
        t0 = c4 * d0 - c5 * d2 + d4;                                                              \
        t1 = (d3 + d4) - c4 * (d1 + d2);                                                          \
        t2 = (d4 - d3) + c4 * (d1 - d2);                                                          \
        t3 = (d4 - d2) + c2 * (d3 - d1);                                                          \
        t4 = (d4 - d2) - c2 * (d3 - d1);                                                          \
        t5 = c4 * d1 - c5 * d3 + d5;                                                              \
    }

/* r = A^T s on six values (c2, c4, c8 as above) */
#define WINO_AT6(s0, s1, s2, s3, s4, s5, r0, r1, r2, r3)                                          \
    {                                                                                             \
        __typeof__(s0) pa = s1 + s2, pb = s1 - s2, pc = s3 + s4, pd = s3 - s4;                    \
        r0 = s0 + pa + pc;                                                                        \
        r1 = pb + c2 * pd;                                                                        \
        r2 = pa + c4 * pc;                                                                        \
        r3 = pb + c8 * pd + s5;                                                                   \
    }

/* U [36][O][C] from w [O][C][3][3] (G g G^T, in double). */
static void wino_weights4(const struct conv *c, const float *w, float *u)
{
    static const double G[6][3] = {{0.25, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};
    for (int64_t o = 0; o < c->O; o++)
        for (int64_t ch = 0; ch < c->C; ch++) {
            const float *g = w + (o * c->C + ch) * 9;
            double t[6][3];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++)
                    u[((i * 6 + j) * c->O + o) * c->C + ch] =
                        (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
        }
}

/* 4x4 transpose of the lanes of r0..r3 (in place) */
#define WINO_T4(r0, r1, r2, r3)                                                                   \
    {                                                                                             \
        wv4 q0 = WSHUF(r0, r1, 0, 4, 1, 5), q1 = WSHUF(r2, r3, 0, 4, 1, 5);                       \
        wv4 q2 = WSHUF(r0, r1, 2, 6, 3, 7), q3 = WSHUF(r2, r3, 2, 6, 3, 7);                       \
        r0 = WSHUF(q0, q1, 0, 1, 4, 5), r1 = WSHUF(q0, q1, 2, 3, 6, 7);                           \
        r2 = WSHUF(q2, q3, 0, 1, 4, 5), r3 = WSHUF(q2, q3, 2, 3, 6, 7);                           \
    }

/* V[xi][ch][t] = B^T d B as wino_in2, for 6x6 tiles at stride 4: each
 * padded row is split into its 4 column phases (phase j, index k: padded
 * column 4k + j), so that tile tw reads phases 0-3 at tw and 0-1 at tw + 1,
 * contiguous in tw; the column transform of 4 tiles at a time goes
 * through a small array, then the row transform into the 36 V. */
/* The artifact's runtime is built with plain -O2 (SSE2): the F(4,3)
 * transforms, whose eight-wide loops need AVX to beat F(2,3)'s (SSE2: 17.5
 * vs 15.3 ms on WRN-10-2's 32-channel 32x32 layer at batch 128; AVX2:
 * 12.9), are also compiled for AVX2 and picked at run time where the CPU
 * has it. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define WINO_AVX2 1
#define WINO_BODY static inline __attribute__((always_inline))
#else
#define WINO_BODY static
#endif

WINO_BODY void wino_in4(const struct conv *c, const float *x, int64_t g, float *v, int64_t T, int64_t c0,
                        int64_t c1, float *buf)
{
    struct wino_geo q = wino_geo_of(c);
    int64_t Wp = q.Wp, Q = Wp / 4, CT = c->C * T, TW = q.TW, Hp = 4 * q.TH + 2;
    int64_t pw = c->pw, W = c->W, ka = (pw + 3) / 4, kb = (W + pw) / 4;
    if (ka > Q) ka = Q;
    if (kb > Q) kb = Q;
    if (kb < ka) kb = ka;
    for (int64_t i = 0; i < g; i++)
        for (int64_t ch = c0; ch < c1; ch++) {
            const float *xc = x + (i * c->C + ch) * c->H * c->W;
            for (int64_t r = 0; r < Hp; r++) {
                int64_t ih = r - c->ph;
                float *pr = buf + r * Wp;
                if (ih < 0 || ih >= c->H) {
                    memset(pr, 0, sizeof(float) * (size_t)Wp);
                    continue;
                }
                const float *src = xc + ih * c->W;
                int64_t k = 0;
                for (; k < ka; k++)
                    for (int j = 0; j < 4; j++) {
                        int64_t iw = 4 * k + j - pw;
                        pr[j * Q + k] = iw >= 0 && iw < W ? src[iw] : 0.0f;
                    }
                for (;;) {
                    /* four k (16 columns) at a time, the last four again
                     * (overlapping) where a whole four does not remain */
                    if (k + 4 > kb || 4 * k - pw + 16 > W) {
                        if (k >= kb || kb - 4 < ka || 4 * (kb - 4) - pw + 16 > W) break;
                        k = kb - 4;
                    }
                    const float *s0 = src + 4 * k - pw;
                    wv4 a0 = wld(s0), a1 = wld(s0 + 4), a2 = wld(s0 + 8), a3 = wld(s0 + 12);
                    WINO_T4(a0, a1, a2, a3)
                    wst(pr + k, a0), wst(pr + Q + k, a1), wst(pr + 2 * Q + k, a2), wst(pr + 3 * Q + k, a3);
                    k += 4;
                }
                for (; k < kb; k++)
                    for (int j = 0; j < 4; j++) pr[j * Q + k] = src[4 * k + j - pw];
                for (k = kb; k < Q; k++)
                    for (int j = 0; j < 4; j++) {
                        int64_t iw = 4 * k + j - pw;
                        pr[j * Q + k] = iw >= 0 && iw < W ? src[iw] : 0.0f;
                    }
            }
            for (int64_t th = 0; th < q.TH; th++) {
                const float *p = buf + 4 * th * Wp;
                float *vt = v + ch * T + (i * q.TH + th) * TW;
                int64_t t = 0;
                /* eight tiles at a time (AVX on the x86-64-v3 target, two
                 * SSE halves on the portable one), then four */
                for (; t + 8 <= TW; t += 8) {
                    const wv8 c2 = {2, 2, 2, 2, 2, 2, 2, 2}, c4 = {4, 4, 4, 4, 4, 4, 4, 4};
                    const wv8 c5 = {5, 5, 5, 5, 5, 5, 5, 5};
                    wv8 e[6][6];
                    for (int kc = 0; kc < 6; kc++) {
                        const float *pc = p + (kc & 3) * Q + (kc >> 2) + t;
                        wv8 d0 = wld8(pc), d1 = wld8(pc + Wp), d2 = wld8(pc + 2 * Wp), d3 = wld8(pc + 3 * Wp);
                        wv8 d4 = wld8(pc + 4 * Wp), d5 = wld8(pc + 5 * Wp);
                        WINO_BT6(d0, d1, d2, d3, d4, d5, e[0][kc], e[1][kc], e[2][kc], e[3][kc], e[4][kc],
                                 e[5][kc])
                    }
                    for (int R = 0; R < 6; R++) {
                        float *v0 = vt + (R * 6) * CT + t;
                        wv8 t0, t1, t2, t3, t4, t5;
                        WINO_BT6(e[R][0], e[R][1], e[R][2], e[R][3], e[R][4], e[R][5], t0, t1, t2, t3, t4, t5)
                        wst8(v0, t0), wst8(v0 + CT, t1), wst8(v0 + 2 * CT, t2);
                        wst8(v0 + 3 * CT, t3), wst8(v0 + 4 * CT, t4), wst8(v0 + 5 * CT, t5);
                    }
                }
                for (; t + 4 <= TW; t += 4) {
                    const wv4 c2 = {2, 2, 2, 2}, c4 = {4, 4, 4, 4}, c5 = {5, 5, 5, 5};
                    wv4 e[6][6];
                    for (int kc = 0; kc < 6; kc++) {
                        const float *pc = p + (kc & 3) * Q + (kc >> 2) + t;
                        wv4 d0 = wld(pc), d1 = wld(pc + Wp), d2 = wld(pc + 2 * Wp), d3 = wld(pc + 3 * Wp);
                        wv4 d4 = wld(pc + 4 * Wp), d5 = wld(pc + 5 * Wp);
                        WINO_BT6(d0, d1, d2, d3, d4, d5, e[0][kc], e[1][kc], e[2][kc], e[3][kc], e[4][kc],
                                 e[5][kc])
                    }
                    for (int R = 0; R < 6; R++) {
                        float *v0 = vt + (R * 6) * CT + t;
                        wv4 t0, t1, t2, t3, t4, t5;
                        WINO_BT6(e[R][0], e[R][1], e[R][2], e[R][3], e[R][4], e[R][5], t0, t1, t2, t3, t4, t5)
                        wst(v0, t0), wst(v0 + CT, t1), wst(v0 + 2 * CT, t2);
                        wst(v0 + 3 * CT, t3), wst(v0 + 4 * CT, t4), wst(v0 + 5 * CT, t5);
                    }
                }
                {
                    const float c2 = 2, c4 = 4, c5 = 5;
                    for (; t < TW; t++) {
                        float e[6][6];
                        for (int kc = 0; kc < 6; kc++) {
                            const float *pc = p + (kc & 3) * Q + (kc >> 2) + t;
                            WINO_BT6(pc[0], pc[Wp], pc[2 * Wp], pc[3 * Wp], pc[4 * Wp], pc[5 * Wp], e[0][kc],
                                     e[1][kc], e[2][kc], e[3][kc], e[4][kc], e[5][kc])
                        }
                        for (int R = 0; R < 6; R++) {
                            float *v0 = vt + (R * 6) * CT + t;
                            WINO_BT6(e[R][0], e[R][1], e[R][2], e[R][3], e[R][4], e[R][5], v0[0], v0[CT],
                                     v0[2 * CT], v0[3 * CT], v0[4 * CT], v0[5 * CT])
                        }
                    }
                }
            }
        }
}

/* y = A^T m A of output channels [o0, o1) of g images (M [36][O][T]):
 * four tiles at a time where their 16 columns are inside the row (the
 * lanes transposed into columns), one at a time with bounds at the edge. */
WINO_BODY void wino_out4(const struct conv *c, const float *m, int64_t T, int64_t g, float *y, int64_t o0,
                         int64_t o1)
{
    struct wino_geo q = wino_geo_of(c);
    int64_t OT = c->O * T, TW = q.TW, OW = c->OW;
    int64_t TV = OW / 4 < TW ? OW / 4 : TW; /* tiles with all four columns inside */
    for (int64_t i = 0; i < g; i++)
        for (int64_t o = o0; o < o1; o++) {
            float *yo = y + (i * c->O + o) * c->P;
            for (int64_t th = 0; th < q.TH; th++) {
                const float *mt = m + o * T + (i * q.TH + th) * TW;
                int64_t nr = c->OH - 4 * th < 4 ? c->OH - 4 * th : 4;
                float *y0 = yo + 4 * th * OW;
                int64_t tw = 0;
                for (; tw + 8 <= TV; tw += 8) {
                    const wv8 c2 = {2, 2, 2, 2, 2, 2, 2, 2}, c4 = {4, 4, 4, 4, 4, 4, 4, 4};
                    const wv8 c8 = {8, 8, 8, 8, 8, 8, 8, 8};
                    const float *p = mt + tw;
                    wv8 s[6][4];
                    for (int r = 0; r < 6; r++) {
                        const float *pr = p + (6 * r) * OT;
                        wv8 m0 = wld8(pr), m1 = wld8(pr + OT), m2 = wld8(pr + 2 * OT), m3 = wld8(pr + 3 * OT);
                        wv8 m4 = wld8(pr + 4 * OT), m5 = wld8(pr + 5 * OT);
                        WINO_AT6(m0, m1, m2, m3, m4, m5, s[r][0], s[r][1], s[r][2], s[r][3])
                    }
                    wv8 yr[4][4];
                    for (int b = 0; b < 4; b++)
                        WINO_AT6(s[0][b], s[1][b], s[2][b], s[3][b], s[4][b], s[5][b], yr[0][b], yr[1][b],
                                 yr[2][b], yr[3][b])
                    for (int a = 0; a < nr; a++)
                        for (int h = 0; h < 2; h++) {
                            /* tiles tw + 4h .. + 3: the lanes of one half */
                            wv4 r0, r1, r2, r3;
                            memcpy(&r0, (const float *)&yr[a][0] + 4 * h, sizeof r0);
                            memcpy(&r1, (const float *)&yr[a][1] + 4 * h, sizeof r1);
                            memcpy(&r2, (const float *)&yr[a][2] + 4 * h, sizeof r2);
                            memcpy(&r3, (const float *)&yr[a][3] + 4 * h, sizeof r3);
                            WINO_T4(r0, r1, r2, r3)
                            float *yd = y0 + a * OW + 4 * (tw + 4 * h);
                            wst(yd, r0), wst(yd + 4, r1), wst(yd + 8, r2), wst(yd + 12, r3);
                        }
                }
                for (; tw + 4 <= TV; tw += 4) {
                    const wv4 c2 = {2, 2, 2, 2}, c4 = {4, 4, 4, 4}, c8 = {8, 8, 8, 8};
                    const float *p = mt + tw;
                    wv4 s[6][4];
                    for (int r = 0; r < 6; r++) {
                        const float *pr = p + (6 * r) * OT;
                        wv4 m0 = wld(pr), m1 = wld(pr + OT), m2 = wld(pr + 2 * OT), m3 = wld(pr + 3 * OT);
                        wv4 m4 = wld(pr + 4 * OT), m5 = wld(pr + 5 * OT);
                        WINO_AT6(m0, m1, m2, m3, m4, m5, s[r][0], s[r][1], s[r][2], s[r][3])
                    }
                    wv4 yr[4][4];
                    for (int b = 0; b < 4; b++)
                        WINO_AT6(s[0][b], s[1][b], s[2][b], s[3][b], s[4][b], s[5][b], yr[0][b], yr[1][b],
                                 yr[2][b], yr[3][b])
                    for (int a = 0; a < nr; a++) {
                        wv4 r0 = yr[a][0], r1 = yr[a][1], r2 = yr[a][2], r3 = yr[a][3];
                        WINO_T4(r0, r1, r2, r3)
                        float *yd = y0 + a * OW + 4 * tw;
                        wst(yd, r0), wst(yd + 4, r1), wst(yd + 8, r2), wst(yd + 12, r3);
                    }
                }
                {
                    const float c2 = 2, c4 = 4, c8 = 8;
                    for (; tw < TW; tw++) {
                        float s[6][4], yr[4][4];
                        for (int r = 0; r < 6; r++) {
                            const float *pr = mt + tw + (6 * r) * OT;
                            WINO_AT6(pr[0], pr[OT], pr[2 * OT], pr[3 * OT], pr[4 * OT], pr[5 * OT], s[r][0],
                                     s[r][1], s[r][2], s[r][3])
                        }
                        for (int b = 0; b < 4; b++)
                            WINO_AT6(s[0][b], s[1][b], s[2][b], s[3][b], s[4][b], s[5][b], yr[0][b],
                                     yr[1][b], yr[2][b], yr[3][b])
                        int64_t nc = OW - 4 * tw < 4 ? OW - 4 * tw : 4;
                        for (int a = 0; a < nr; a++)
                            for (int b = 0; b < nc; b++) y0[a * OW + 4 * tw + b] = yr[a][b];
                    }
                }
            }
        }
}

static void wino_weights(const struct conv *c, const float *w, float *u)
{
    if (wino_tile(c) == 4) wino_weights4(c, w, u);
    else wino_weights2(c, w, u);
}

static void wino_in4_sse(const struct conv *c, const float *x, int64_t g, float *v, int64_t T, int64_t c0,
                         int64_t c1, float *buf)
{
    wino_in4(c, x, g, v, T, c0, c1, buf);
}

static void wino_out4_sse(const struct conv *c, const float *m, int64_t T, int64_t g, float *y, int64_t o0,
                          int64_t o1)
{
    wino_out4(c, m, T, g, y, o0, o1);
}

#ifdef WINO_AVX2
__attribute__((target("avx2"))) static void wino_in4_avx2(const struct conv *c, const float *x, int64_t g,
                                                           float *v, int64_t T, int64_t c0, int64_t c1,
                                                           float *buf)
{
    wino_in4(c, x, g, v, T, c0, c1, buf);
}

__attribute__((target("avx2"))) static void wino_out4_avx2(const struct conv *c, const float *m, int64_t T,
                                                            int64_t g, float *y, int64_t o0, int64_t o1)
{
    wino_out4(c, m, T, g, y, o0, o1);
}

static int wino_has_avx2(void)
{
    /* OC_SCORER_WINO_SSE=1 keeps the SSE2 build (tests, A/B) */
    static atomic_int has = -1;
    int h = atomic_load(&has);
    if (h < 0) {
        const char *e = getenv("OC_SCORER_WINO_SSE");
        h = __builtin_cpu_supports("avx2") && !(e && *e && strcmp(e, "0"));
        atomic_store(&has, h);
    }
    return h;
}
#endif

static void wino_in(const struct conv *c, const float *x, int64_t g, float *v, int64_t T, int64_t c0,
                    int64_t c1, float *buf)
{
    if (wino_tile(c) != 4) wino_in2(c, x, g, v, T, c0, c1, buf);
#ifdef WINO_AVX2
    else if (wino_has_avx2()) wino_in4_avx2(c, x, g, v, T, c0, c1, buf);
#endif
    else wino_in4_sse(c, x, g, v, T, c0, c1, buf);
}

static void wino_out(const struct conv *c, const float *m, int64_t T, int64_t g, float *y, int64_t o0,
                     int64_t o1, float *buf)
{
    if (wino_tile(c) != 4) wino_out2(c, m, T, g, y, o0, o1, buf);
#ifdef WINO_AVX2
    else if (wino_has_avx2()) wino_out4_avx2(c, m, T, g, y, o0, o1);
#endif
    else wino_out4_sse(c, m, T, g, y, o0, o1);
}

/* One group of g images: transforms around the 16 or 36 GEMMs. */
static void wino_group_run(const struct conv *c, const float *x, const float *u, float *y, int64_t g,
                           char *scratch, float *buf)
{
    int64_t T = g * wino_geo_of(c).T1;
    int nx = wino_nx(c);
    float *v = (float *)(void *)scratch, *m = v + nx * c->C * T;
    wino_in(c, x, g, v, T, 0, c->C, buf);
    for (int xi = 0; xi < nx; xi++)
        gemm(0, 0, 0, c->O, T, c->C, u + xi * c->O * c->C, c->C, v + xi * c->C * T, T, 0.0,
             m + xi * c->O * T, T);
    wino_out(c, m, T, g, y, 0, c->O, buf);
}

struct wino_job {
    const struct conv *c;
    const float *x, *u;
    float *y;
    char *scratch;
    size_t per, bufb;
    int64_t G, T;
    int nt;
};

static float *wino_tbuf(const struct wino_job *j, int tid)
{
    /* one-image phases: the row buffers at the far end of the scratch */
    return (float *)(void *)(j->scratch + (size_t)j->nt * j->per - (size_t)(tid + 1) * j->bufb);
}

static void wino_groups(void *ctx, int64_t gb, int64_t ge, int tid)
{
    const struct wino_job *j = ctx;
    const struct conv *c = j->c;
    char *mine = j->scratch + (size_t)tid * j->per;
    float *buf = (float *)(void *)(mine + j->per - j->bufb);
    for (int64_t gi = gb; gi < ge; gi++) {
        int64_t n0 = gi * j->G, g = c->N - n0 < j->G ? c->N - n0 : j->G;
        wino_group_run(c, j->x + n0 * c->C * c->H * c->W, j->u, j->y + n0 * c->O * c->P, g, mine, buf);
    }
}

static void wino_one_in(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct wino_job *j = ctx;
    wino_in(j->c, j->x, 1, (float *)(void *)j->scratch, j->T, b, e, wino_tbuf(j, tid));
}

static void wino_one_gemm(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct wino_job *j = ctx;
    const struct conv *c = j->c;
    float *v = (float *)(void *)j->scratch, *m = v + wino_nx(c) * c->C * j->T;
    (void)tid;
    for (int64_t xi = b; xi < e; xi++)
        gemm(0, 0, 0, c->O, j->T, c->C, j->u + xi * c->O * c->C, c->C, v + xi * c->C * j->T, j->T, 0.0,
             m + xi * c->O * j->T, j->T);
}

static void wino_one_out(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct wino_job *j = ctx;
    const float *m = (const float *)(const void *)j->scratch + wino_nx(j->c) * j->c->C * j->T;
    wino_out(j->c, m, j->T, 1, j->y, b, e, wino_tbuf(j, tid));
}

/* per: the thread scratch (conv_scratch), at least wino_vm_bytes(G) plus a
 * row buffer. */
static void wino_conv(struct pool *pool, const struct conv *c, const float *x, const float *u, float *y,
                      void *scratch, size_t per, double one_min_flops)
{
    struct wino_job j = {c, x, u, y, scratch, per, wino_buf_bytes(c), wino_group(c), 0, pool->n};
    if (c->N == 1 && pool->n > 1 && 2.0 * (double)c->O * (double)c->C * 9.0 * (double)c->P >= one_min_flops) {
        /* one image: channels, then the 16 or 36 GEMMs, then output channels over the pool */
        int64_t nb = 2 * (int64_t)pool->n;
        j.T = wino_geo_of(c).T1;
        pool_run(pool, c->C, (c->C + nb - 1) / nb, wino_one_in, &j);
        pool_run(pool, wino_nx(c), 1, wino_one_gemm, &j);
        pool_run(pool, c->O, (c->O + nb - 1) / nb, wino_one_out, &j);
        return;
    }
    pool_run(pool, (c->N + j.G - 1) / j.G, 1, wino_groups, &j);
}

/* Groups of images spread over the pool, BLAS single-threaded inside: on
 * the WRN layer shapes (16..128 output channels) this keeps every core
 * busy where OpenBLAS threading one GEMM does not (as runtime/cpu-lib.c). */
static void conv(struct pool *pool, const struct ocrt_kernel *k, void **args, void *scratch,
                 double one_min_flops, const void *flipped, const float *wino_u)
{
    int kind = k->kind, f64 = k->f64;
    struct conv c = conv_of(k);
    void *fargs[3];
    if (flipped) {
        /* the input gradient as a forward convolution (flip_ok) */
        c = flip_conv(&c);
        kind = OCRT_CONV2D;
        fargs[0] = args[0], fargs[1] = args[1], fargs[2] = (void *)(uintptr_t)flipped;
        args = fargs;
    }
    if (wino_u) {
        wino_conv(pool, &c, args[1], wino_u, args[0], scratch, conv_scratch(k), one_min_flops);
        return;
    }
    if (conv_one_image(pool, kind, f64, &c, args, scratch, one_min_flops)) return;
    struct conv_job j;
    memset(&j, 0, sizeof j);
    j.kind = kind, j.f64 = f64, j.args = args, j.scratch = scratch, j.per = conv_scratch(k), j.c = c;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    j.G = conv_group(&j.c, es);
    int64_t ngroup = (j.c.N + j.G - 1) / j.G;
    size_t wn = (size_t)(j.c.O * j.c.CK);
    if (kind == OCRT_CONV2D_GRAD_WEIGHT) memset(args[0], 0, wn * es);
    if (ngroup > 0) pool_run(pool, ngroup, 1, conv_groups, &j);
    if (kind != OCRT_CONV2D_GRAD_WEIGHT) return;
    /* dW = the sum of the threads' partials */
    for (int t = 0; t < pool->n && t < MAX_THREADS; t++) {
        if (!j.used[t]) continue;
        const char *part = (const char *)scratch + (size_t)t * j.per + group_bytes(&j.c, j.G, es);
        if (!f64) {
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

/* ---------------------------------------------------------------- the scorer */

struct oc_scorer {
    struct ocrt_common c; /* plan, valid rows, error message (aot-rt-api.h) */
    const struct ocrt_plan *plan;
    struct pool *pool;
    unsigned char *arena;
    void *scratch;
    void **bufp;      /* per buffer */
    void **own;       /* per buffer: its own allocation, or NULL */
    void **iop;       /* per IO buffer */
    void ***args;     /* per kernel of every program in order: its slots' pointers */
    void **flipw;     /* per kernel: flip_weights of a constant weight (flip_ok), or NULL */
    float **winou;    /* per kernel: Winograd weights (wino_ok), or NULL */
    int nkernel;
    double *ktime;    /* OC_SCORER_PROFILE=1: seconds per kernel, printed by destroy */
    long ncalls;
    double split_flops; /* one-image convolutions from this size on use the pool */
};

static void *xalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
    memset(p, 0, n ? n : 64);
    return p;
}

static int env_threads(void)
{
    const char *e = getenv("OC_SCORER_THREADS");
    if (e && *e) {
        int n = atoi(e);
        if (n > 0) return n > 1024 ? 1024 : n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *const kind_names[] = {"loop", "matmul", "conv2d", "conv2d_grad_input",
                                         "conv2d_grad_weight"};

/* The per-kernel time table of OC_SCORER_PROFILE=1, on stderr. */
static void print_profile(const struct oc_scorer *s)
{
    const struct ocrt_plan *pl = s->plan;
    double total = 0;
    for (int i = 0; i < s->nkernel; i++) total += s->ktime[i];
    fprintf(stderr, "oc_scorer profile: %ld call(s), %.3f ms per call in %d kernels\n", s->ncalls,
            s->ncalls ? total * 1e3 / (double)s->ncalls : 0.0, s->nkernel);
    for (int p = 0, ki = 0; p < pl->nprog; p++)
        for (int i = 0; i < pl->prog[p].nkernel; i++, ki++) {
            const struct ocrt_kernel *k = &pl->prog[p].kernel[i];
            fprintf(stderr, "  %-8s %3d %-18s %10.3f ms/call %5.1f%%\n", pl->prog[p].name, i,
                    kind_names[k->kind], s->ncalls ? s->ktime[ki] * 1e3 / (double)s->ncalls : 0.0,
                    total > 0 ? 100 * s->ktime[ki] / total : 0.0);
        }
}

OCRT_API void oc_scorer_destroy(struct oc_scorer *s)
{
    if (!s) return;
    const struct ocrt_plan *pl = s->plan;
    if (s->ktime) {
        print_profile(s);
        free(s->ktime);
    }
    pool_free(s->pool);
    for (int b = 0; s->own && b < pl->nbuf; b++) free(s->own[b]);
    for (int i = 0; s->iop && i < pl->nio; i++) free(s->iop[i]);
    for (int i = 0; s->args && i < s->nkernel; i++) free(s->args[i]);
    for (int i = 0; s->flipw && i < s->nkernel; i++) free(s->flipw[i]);
    for (int i = 0; s->winou && i < s->nkernel; i++) free(s->winou[i]);
    free(s->winou);
    free(s->flipw);
    free(s->args);
    free(s->iop);
    free(s->own);
    free(s->bufp);
    free(s->arena);
    free(s->scratch);
    free(s);
}

OCRT_API struct oc_scorer *oc_scorer_create(void)
{
    const struct ocrt_plan *pl = &ocrt_plan;
    struct oc_scorer *s = calloc(1, sizeof *s);
    if (!s) {
        ocrt_create_failed("oc_scorer_create: out of memory");
        return NULL;
    }
    s->plan = s->c.plan = pl;
    s->bufp = calloc((size_t)pl->nbuf + 1, sizeof *s->bufp);
    s->own = calloc((size_t)pl->nbuf + 1, sizeof *s->own);
    s->iop = calloc((size_t)pl->nio + 1, sizeof *s->iop);
    for (int p = 0; p < pl->nprog; p++) s->nkernel += pl->prog[p].nkernel;
    s->args = calloc((size_t)s->nkernel + 1, sizeof *s->args);
    s->flipw = calloc((size_t)s->nkernel + 1, sizeof *s->flipw);
    s->winou = calloc((size_t)s->nkernel + 1, sizeof *s->winou);
    s->arena = xalloc((size_t)pl->arena_bytes);
    s->pool = pool_new(env_threads());
    int ok = s->bufp && s->own && s->iop && s->args && s->flipw && s->winou && s->arena && s->pool;
    for (int i = 0; ok && i < pl->nio; i++) ok = (s->iop[i] = xalloc((size_t)pl->io[i].bytes)) != NULL;
    for (int b = 0; ok && b < pl->nbuf; b++) {
        const struct ocrt_buf *kb = &pl->buf[b];
        switch (kb->where) {
        case OCRT_ARENA: s->bufp[b] = s->arena + kb->offset; break;
        /* the kernels never write weights: the pointer may lose const */
        case OCRT_BLOB: s->bufp[b] = (void *)(uintptr_t)(pl->blob + kb->offset); break;
        case OCRT_IO: s->bufp[b] = s->iop[kb->io]; break;
        default: ok = (s->bufp[b] = s->own[b] = xalloc((size_t)kb->bytes)) != NULL; break;
        }
    }
    size_t scratch = 0;
    /* OC_SCORER_NO_FLIP=1: input gradients through col2im (for A/B timing) */
    const char *noflip = getenv("OC_SCORER_NO_FLIP");
    int flip = !(noflip && *noflip && strcmp(noflip, "0"));
    /* OC_SCORER_NO_WINO=1: 3x3 convolutions through im2col (for A/B timing) */
    const char *nowino = getenv("OC_SCORER_NO_WINO");
    int wino = !(nowino && *nowino && strcmp(nowino, "0"));
    /* OC_SCORER_WINO=2|4: F(2x2,3x3) or F(4x4,3x3) (for A/B timing) */
    const char *wm = getenv("OC_SCORER_WINO");
    wino_m = wm && (!strcmp(wm, "2") || !strcmp(wm, "4")) ? atoi(wm) : OCRT_WINO_M;
    for (int p = 0, ki = 0; ok && p < pl->nprog; p++) {
        const struct ocrt_prog *pr = &pl->prog[p];
        for (int i = 0; ok && i < pr->nkernel; i++, ki++) {
            const struct ocrt_kernel *k = &pr->kernel[i];
            ok = (s->args[ki] = calloc((size_t)k->nslot + 1, sizeof(void *))) != NULL;
            for (int q = 0; ok && q < k->nslot; q++) s->args[ki][q] = s->bufp[k->slot[q]];
            /* weights from the blob never change: flip them once here */
            if (ok && flip && flip_ok(k) && pl->buf[k->slot[2]].where == OCRT_BLOB) {
                struct conv c = conv_of(k);
                size_t es = k->f64 ? sizeof(double) : sizeof(float);
                ok = (s->flipw[ki] = xalloc((size_t)(c.O * c.CK) * es)) != NULL;
                if (ok) flip_weights(&c, k->f64, s->bufp[k->slot[2]], s->flipw[ki]);
                struct conv f = flip_conv(&c);
                if (ok && wino && wino_ok(OCRT_CONV2D, k->f64, &f)) {
                    ok = (s->winou[ki] = xalloc((size_t)(wino_nx(&f) * f.O * f.C) * sizeof(float))) != NULL;
                    if (ok) wino_weights(&f, s->flipw[ki], s->winou[ki]);
                }
            }
            if (ok && wino && k->kind == OCRT_CONV2D && pl->buf[k->slot[2]].where == OCRT_BLOB) {
                struct conv c = conv_of(k);
                if (wino_ok(k->kind, k->f64, &c)) {
                    ok = (s->winou[ki] = xalloc((size_t)(wino_nx(&c) * c.O * c.C) * sizeof(float))) != NULL;
                    if (ok) wino_weights(&c, s->bufp[k->slot[2]], s->winou[ki]);
                }
            }
            size_t sc = conv_scratch(k) * (size_t)s->pool->n;
            if (sc > scratch) scratch = sc;
        }
    }
    if (ok && scratch) ok = (s->scratch = xalloc(scratch)) != NULL;
#ifndef OCRT_NO_BLAS
    /* the library kernels split over the pool: BLAS calls stay on their
     * thread (OpenBLAS's setting is process-wide) */
    if (ok && s->pool->n > 1) openblas_set_num_threads(1);
#endif
    const char *split = getenv("OC_SCORER_SPLIT_FLOPS");
    s->split_flops = split && *split ? atof(split) : ONE_PAR_FLOPS;
    const char *prof = getenv("OC_SCORER_PROFILE");
    if (ok && prof && *prof && strcmp(prof, "0"))
        ok = (s->ktime = calloc((size_t)s->nkernel + 1, sizeof *s->ktime)) != NULL;
    if (!ok) {
        oc_scorer_destroy(s);
        ocrt_create_failed("oc_scorer_create: out of memory (arena of %lld bytes, or threads)",
                           (long long)pl->arena_bytes);
        return NULL;
    }
    ocrt_create_err[0] = 0;
    return s;
}

struct chunk_job {
    ocrt_kernel_fn fn;
    void **args;
};

static void run_chunk(void *ctx, int64_t b, int64_t e, int tid)
{
    const struct chunk_job *j = ctx;
    (void)tid;
    j->fn(j->args, b, e);
}

static void run_kernel(struct oc_scorer *s, const struct ocrt_kernel *k, void **args, int ki)
{
    if (k->kind == OCRT_MATMUL) {
        matmul(s->pool, k, args);
        return;
    }
    if (k->kind != OCRT_LOOP) {
        conv(s->pool, k, args, s->scratch, s->split_flops, s->flipw[ki], s->winou[ki]);
        return;
    }
    int64_t outer = k->outer, points = k->points;
    if (outer <= 0 || points == 0) return;
    int nt = s->pool->n;
    if (nt <= 1 || outer < 2 || points < PAR_MIN_POINTS) {
        k->fn(args, 0, outer);
        return;
    }
    /* a few chunks per thread for balance, none smaller than ~4K points */
    int64_t per = points / outer;
    int64_t grain = (outer + 4 * (int64_t)nt - 1) / (4 * (int64_t)nt);
    int64_t min_rows = per > 0 ? (4096 + per - 1) / per : outer;
    if (grain < min_rows) grain = min_rows;
    if (k->row_block > 1) grain = (grain + k->row_block - 1) / k->row_block * k->row_block;
    struct chunk_job j = {k->fn, args};
    pool_run(s->pool, outer, grain, run_chunk, &j);
}

OCRT_API int oc_scorer_score(struct oc_scorer *s, const float *images, int n, float *scores,
                             int *predicted_class)
{
    if (!s) return OC_SCORER_EINVAL;
    const struct ocrt_plan *pl = s->plan;
    int chk = ocrt_check_call(&s->c, images, n, scores);
    if (chk) return chk < 0 ? chk : OC_SCORER_OK;
    int64_t isz = (int64_t)pl->c * pl->h * pl->w;
    float *x = s->iop[pl->io_x];
    memcpy(x, images, sizeof(float) * (size_t)(n * isz));
    /* the batch is compiled: rows past n are zero images, as oodc eval pads */
    if (s->c.valid_rows > n) memset(x + n * isz, 0, sizeof(float) * (size_t)((s->c.valid_rows - n) * isz));
    s->c.valid_rows = n;
    for (int p = 0, ki = 0; p < pl->nprog; p++) {
        const struct ocrt_prog *pr = &pl->prog[p];
        for (int i = 0; i < pr->nkernel; i++, ki++) {
            if (!s->ktime) {
                run_kernel(s, &pr->kernel[i], s->args[ki], ki);
                continue;
            }
            double t0 = now_s();
            run_kernel(s, &pr->kernel[i], s->args[ki], ki);
            s->ktime[ki] += now_s() - t0;
        }
    }
    s->ncalls++;
    ocrt_outputs(pl, s->iop[pl->io_score], pl->io_pred >= 0 ? s->iop[pl->io_pred] : NULL, n, scores,
                 predicted_class);
    return OC_SCORER_OK;
}
