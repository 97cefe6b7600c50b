/* cuda-blas.c - the library kernels on the GPU: matmul through cuBLAS
 * strided-batched GEMMs, convolution and its two adjoints through im2col /
 * col2im helper kernels and GEMMs (runtime/cuda-lib.h holds their index
 * math), per image chunk:
 *   conv2d       Y_n[O,P]  = W[O,CK] @ col(X_n)[CK,P]          batched over n, W shared
 *   grad_input   col_n     = W^T[CK,O] @ dY_n[O,P]             batched, then col2im -> dX_n
 *   grad_weight  dW[O,CK] += dYt[O,nc*P] @ colt[CK,nc*P]^T     one GEMM per chunk
 * where colt/dYt are the chunk's column matrices and gradients laid out
 * [ck][n][p] / [o][n][p], so the sum over the chunk's images is one GEMM's
 * inner dimension (no atomics, deterministic). 1x1 stride-1 unpadded
 * convolutions use the images themselves as column matrices. Chunks are
 * as many images as fit the scratch budget.
 *
 * cuBLAS is column-major and oodc row-major: a row-major C = op(A) op(B)
 * is the column-major C^T = op(B)^T op(A)^T, so matmul calls the GEMM with
 * the operands swapped. TF32 tensor-core math is allowed per call (the
 * context's or the executable's switch); otherwise cuBLAS's default fp32
 * math. libcublas is dlopen'd like the driver.
 *
 * A plan is data: oc_cuda_plan_run_host executes it with a reference
 * column-major GEMM and the same helper index math, which is how the tests
 * check every plan against the interpreter without a GPU.
 */
#include "cuda-impl.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_BUDGET ((size_t)256 << 20)

/* ---------------------------------------------------------------- plans */

void oc_cuda_plan_free(struct oc_lplan *p)
{
    if (!p) return;
    free(p->step);
    p->step = NULL;
    p->nstep = p->cap = 0;
}

static struct oc_lstep *add(struct oc_lplan *p, enum oc_lstep_kind kind)
{
    if (p->nstep == p->cap) {
        int nc = p->cap ? p->cap * 2 : 16;
        struct oc_lstep *q = realloc(p->step, sizeof *q * (size_t)nc);
        if (!q) return NULL;
        p->step = q;
        p->cap = nc;
    }
    struct oc_lstep *s = &p->step[p->nstep++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->alpha = 1;
    s->batch = 1;
    return s;
}

static struct oc_lstep *gemm(struct oc_lplan *p, int ta, int tb, int64_t m, int64_t n, int64_t k,
                             int a, int64_t aoff, int64_t lda, int64_t sa, int b, int64_t boff,
                             int64_t ldb, int64_t sb, int c, int64_t coff, int64_t ldc, int64_t sc,
                             int64_t batch, double beta)
{
    struct oc_lstep *s = add(p, OC_LS_GEMM);
    if (!s) return NULL;
    s->ta = ta, s->tb = tb, s->m = m, s->n = n, s->k = k;
    s->a = a, s->aoff = aoff, s->lda = lda, s->sa = sa;
    s->b = b, s->boff = boff, s->ldb = ldb, s->sb = sb;
    s->c = c, s->coff = coff, s->ldc = ldc, s->sc = sc;
    s->batch = batch, s->beta = beta;
    return s;
}

static struct oc_lstep *zero(struct oc_lplan *p, int dst, int64_t count)
{
    struct oc_lstep *s = add(p, OC_LS_ZERO);
    if (s) s->dst = dst, s->count = count;
    return s;
}

static struct oc_convp conv_geometry(const struct oc_kernel *k)
{
    struct oc_kconv g = oc_kir_conv(k);
    struct oc_convp c;
    memset(&c, 0, sizeof c);
    c.N = g.N, c.C = g.C, c.H = g.H, c.W = g.W, c.O = g.O, c.KH = g.KH, c.KW = g.KW;
    c.OH = g.OH, c.OW = g.OW, c.CK = g.CK, c.P = g.P;
    c.sh = g.sh, c.sw = g.sw, c.ph = g.ph, c.pw = g.pw;
    return c;
}

static int is_direct(const struct oc_convp *c)
{
    return c->KH == 1 && c->KW == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0;
}

static enum oc_status plan_matmul(const struct oc_kernel *k, struct oc_lplan *p)
{
    const struct oc_shape *as = &k->lib_shape[1], *bs = &k->lib_shape[2], *ys = &k->lib_shape[0];
    int r = as->rank, ta = k->lib->attrs.trans_a, tb = k->lib->attrs.trans_b;
    int64_t M = ys->dim[r - 2], N = ys->dim[r - 1];
    int64_t K = ta ? as->dim[r - 2] : as->dim[r - 1];
    int64_t batch = 1;
    for (int d = 0; d < r - 2; d++) batch *= as->dim[d];
    if (M <= 0 || N <= 0 || batch <= 0) return OC_OK;
    if (K <= 0) return zero(p, 0, batch * M * N) ? OC_OK : OC_ERR_NOMEM;
    int64_t lda = as->dim[r - 1], ldb = bs->dim[r - 1];
    /* row-major Y = op(A) op(B)  <=>  column-major Y^T = op(B)^T op(A)^T */
    return gemm(p, tb, ta, N, M, K, 2, 0, ldb, bs->dim[r - 2] * bs->dim[r - 1], 1, 0, lda,
                as->dim[r - 2] * as->dim[r - 1], 0, 0, N, M * N, batch, 0)
               ? OC_OK
               : OC_ERR_NOMEM;
}

static struct oc_lstep *helper(struct oc_lplan *p, enum oc_lstep_kind kind, int src, int dst,
                               struct oc_convp c, int64_t n0, int64_t nc, int tr, int64_t count)
{
    struct oc_lstep *s = add(p, kind);
    if (!s) return NULL;
    s->src = src, s->dst = dst, s->cp = c;
    s->cp.n0 = n0, s->cp.nc = nc, s->cp.tr = tr;
    s->count = count;
    return s;
}

static enum oc_status plan_conv(const struct oc_kernel *k, size_t budget, struct oc_lplan *p)
{
    struct oc_convp c = conv_geometry(k);
    size_t es = oc_dtype_size(k->lib->dtype);
    int64_t out_numel = k->slot[0].numel;
    if (out_numel <= 0) return OC_OK;
    int dir = is_direct(&c);
    int64_t per = c.CK * c.P + (k->kind == OC_K_CONV2D_GRAD_WEIGHT ? c.O * c.P : 0);
    int64_t nc = per > 0 ? (int64_t)(budget / es) / per : c.N;
    if (nc < 1) nc = 1;
    if (nc > c.N) nc = c.N;
    int ok = 1;
    switch (k->kind) {
    case OC_K_CONV2D:
        if (c.CK == 0) return zero(p, 0, out_numel) ? OC_OK : OC_ERR_NOMEM;
        if (dir) /* Y_n^T[P,O] = X_n^T[P,C] W^T[C,O] */
            return gemm(p, 0, 0, c.P, c.O, c.C, 1, 0, c.P, c.C * c.P, 2, 0, c.C, 0, 0, 0, c.P, c.O * c.P,
                        c.N, 0)
                       ? OC_OK
                       : OC_ERR_NOMEM;
        p->scratch[0] = nc * c.CK * c.P;
        for (int64_t n0 = 0; n0 < c.N && ok; n0 += nc) {
            int64_t cnt = c.N - n0 < nc ? c.N - n0 : nc;
            ok = helper(p, OC_LS_IM2COL, 1, 3, c, n0, cnt, 0, cnt * c.CK * c.P) &&
                 gemm(p, 0, 0, c.P, c.O, c.CK, 3, 0, c.P, c.CK * c.P, 2, 0, c.CK, 0, 0, n0 * c.O * c.P,
                      c.P, c.O * c.P, cnt, 0);
        }
        break;
    case OC_K_CONV2D_GRAD_INPUT:
        if (c.O == 0 || c.P == 0) return zero(p, 0, out_numel) ? OC_OK : OC_ERR_NOMEM;
        if (dir) /* dX_n^T[P,C] = dY_n^T[P,O] W[O,C] */
            return gemm(p, 0, 1, c.P, c.C, c.O, 1, 0, c.P, c.O * c.P, 2, 0, c.C, 0, 0, 0, c.P, c.C * c.P,
                        c.N, 0)
                       ? OC_OK
                       : OC_ERR_NOMEM;
        p->scratch[0] = nc * c.CK * c.P;
        for (int64_t n0 = 0; n0 < c.N && ok; n0 += nc) {
            int64_t cnt = c.N - n0 < nc ? c.N - n0 : nc;
            ok = gemm(p, 0, 1, c.P, c.CK, c.O, 1, n0 * c.O * c.P, c.P, c.O * c.P, 2, 0, c.CK, 0, 3, 0, c.P,
                      c.CK * c.P, cnt, 0) &&
                 helper(p, OC_LS_COL2IM, 3, 0, c, n0, cnt, 0, cnt * c.C * c.H * c.W);
        }
        break;
    default: /* grad_weight */
        if (c.N == 0 || c.P == 0) return zero(p, 0, out_numel) ? OC_OK : OC_ERR_NOMEM;
        p->scratch[0] = nc * c.CK * c.P;
        p->scratch[1] = nc * c.O * c.P;
        for (int64_t n0 = 0; n0 < c.N && ok; n0 += nc) {
            int64_t cnt = c.N - n0 < nc ? c.N - n0 : nc, L = cnt * c.P;
            /* dW^T[CK,O] (+)= colt[CK,L] dYt[O,L]^T, colt and dYt row-major */
            ok = helper(p, OC_LS_IM2COL, 1, 3, c, n0, cnt, 1, c.CK * L) &&
                 helper(p, OC_LS_PERMUTE, 2, 4, c, n0, cnt, 0, c.O * L) &&
                 gemm(p, 1, 0, c.CK, c.O, L, 3, 0, L, 0, 4, 0, L, 0, 0, 0, c.CK, 0, 1, n0 ? 1.0 : 0.0);
        }
        break;
    }
    return ok ? OC_OK : OC_ERR_NOMEM;
}

enum oc_status oc_cuda_plan_lib(const struct oc_kernel *k, size_t budget, struct oc_lplan *p,
                                struct oc_err *err)
{
    memset(p, 0, sizeof *p);
    if (k->kind == OC_K_LOOP)
        return oc_err_set(err, OC_ERR_INVALID, "cuda: kernel %s is not a library call", k->name);
    p->dtype = k->lib->dtype;
    if (p->dtype != OC_F32 && p->dtype != OC_F64)
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "cuda: %s on %s (cuBLAS GEMMs take f32 or f64)",
                          oc_op_name(k->lib->op), oc_dtype_name(k->lib->dtype));
    enum oc_status st = k->kind == OC_K_MATMUL ? plan_matmul(k, p) : plan_conv(k, budget ? budget : DEFAULT_BUDGET, p);
    if (st) {
        oc_cuda_plan_free(p);
        return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory planning %s", k->name);
    }
    return OC_OK;
}

/* ---------------------------------------------------------------- host reference */

#define REF(T)                                                                                     \
    static void gemm_##T(const struct oc_lstep *s, const T *A, const T *B, T *C)                   \
    {                                                                                              \
        for (int64_t b = 0; b < s->batch; b++) {                                                   \
            const T *a = A + s->aoff + b * s->sa, *bb = B + s->boff + b * s->sb;                   \
            T *c = C + s->coff + b * s->sc;                                                        \
            for (int64_t j = 0; j < s->n; j++)                                                     \
                for (int64_t i = 0; i < s->m; i++) {                                               \
                    double acc = 0;                                                                \
                    for (int64_t l = 0; l < s->k; l++) {                                           \
                        double x = s->ta ? a[l + i * s->lda] : a[i + l * s->lda];                  \
                        double y = s->tb ? bb[j + l * s->ldb] : bb[l + j * s->ldb];                \
                        acc += x * y;                                                              \
                    }                                                                              \
                    T *o = &c[i + j * s->ldc];                                                     \
                    *o = (T)(s->alpha * acc + (s->beta != 0 ? s->beta * (double)*o : 0.0));        \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    static void helper_##T(const struct oc_lstep *s, const T *src, T *dst)                         \
    {                                                                                              \
        struct oc_convp c = s->cp;                                                                 \
        for (int64_t i = 0; i < s->count; i++) {                                                   \
            if (s->kind == OC_LS_IM2COL) {                                                         \
                long long q = oc_im2col_src(i, c);                                                 \
                dst[i] = q >= 0 ? src[q] : (T)0;                                                   \
            } else if (s->kind == OC_LS_PERMUTE) {                                                 \
                dst[i] = src[oc_permute_src(i, c)];                                                \
            } else if (s->kind == OC_LS_COL2IM) {                                                  \
                T acc = 0;                                                                         \
                for (long long t = 0; t < c.KH * c.KW; t++) {                                      \
                    long long q = oc_col2im_tap(i, t, c);                                          \
                    if (q >= 0) acc += src[q];                                                     \
                }                                                                                  \
                dst[c.n0 * c.C * c.H * c.W + i] = acc;                                             \
            } else {                                                                               \
                dst[i] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
    }
REF(float)
REF(double)

static void host_step(const struct oc_lplan *p, const struct oc_lstep *s, void *const *b)
{
    int f = p->dtype == OC_F32;
    if (s->kind == OC_LS_GEMM) {
        if (f) gemm_float(s, b[s->a], b[s->b], b[s->c]);
        else gemm_double(s, b[s->a], b[s->b], b[s->c]);
    } else {
        if (f) helper_float(s, s->kind == OC_LS_ZERO ? NULL : b[s->src], b[s->dst]);
        else helper_double(s, s->kind == OC_LS_ZERO ? NULL : b[s->src], b[s->dst]);
    }
}

enum oc_status oc_cuda_plan_run_host(const struct oc_lplan *p, void *const bufs[3],
                                     struct oc_err *err)
{
    size_t es = oc_dtype_size((enum oc_dtype)p->dtype);
    void *b[5] = {bufs[0], bufs[1], bufs[2], NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (p->scratch[i] && !(b[3 + i] = calloc((size_t)p->scratch[i], es))) {
            free(b[3]);
            return oc_err_set(err, OC_ERR_NOMEM, "cuda plan: out of memory for scratch");
        }
    for (int i = 0; i < p->nstep; i++) host_step(p, &p->step[i], b);
    free(b[3]);
    free(b[4]);
    return OC_OK;
}

/* ---------------------------------------------------------------- the helper kernels */

static const char lib_source[] =
    "/* oodc library-call helpers: im2col, col2im, permute (runtime/cuda-blas.c) */\n"
    OC_CUDA_LIB_TEXT "\n"
    "template <typename T> static __device__ void oc_im2col_t(T *col, const T *__restrict__ x, struct oc_convp c, long long n)\n"
    "{\n"
    "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {\n"
    "        long long s = oc_im2col_src(i, c);\n"
    "        col[i] = s >= 0 ? x[s] : (T)0;\n"
    "    }\n"
    "}\n"
    "template <typename T> static __device__ void oc_col2im_t(T *x, const T *__restrict__ col, struct oc_convp c, long long n)\n"
    "{\n"
    "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {\n"
    "        T acc = 0;\n"
    "        for (long long t = 0; t < c.KH * c.KW; t++) {\n"
    "            long long s = oc_col2im_tap(i, t, c);\n"
    "            if (s >= 0) acc += col[s];\n"
    "        }\n"
    "        x[c.n0 * c.C * c.H * c.W + i] = acc;\n"
    "    }\n"
    "}\n"
    "template <typename T> static __device__ void oc_permute_t(T *dst, const T *__restrict__ src, struct oc_convp c, long long n)\n"
    "{\n"
    "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n"
    "        dst[i] = src[oc_permute_src(i, c)];\n"
    "}\n"
    "extern \"C\" __global__ void oc_im2col_f32(float *col, const float *x, struct oc_convp c, long long n) { oc_im2col_t(col, x, c, n); }\n"
    "extern \"C\" __global__ void oc_im2col_f64(double *col, const double *x, struct oc_convp c, long long n) { oc_im2col_t(col, x, c, n); }\n"
    "extern \"C\" __global__ void oc_col2im_f32(float *x, const float *col, struct oc_convp c, long long n) { oc_col2im_t(x, col, c, n); }\n"
    "extern \"C\" __global__ void oc_col2im_f64(double *x, const double *col, struct oc_convp c, long long n) { oc_col2im_t(x, col, c, n); }\n"
    "extern \"C\" __global__ void oc_permute_f32(float *dst, const float *src, struct oc_convp c, long long n) { oc_permute_t(dst, src, c, n); }\n"
    "extern \"C\" __global__ void oc_permute_f64(double *dst, const double *src, struct oc_convp c, long long n) { oc_permute_t(dst, src, c, n); }\n";

const char *oc_cuda_lib_source(void) { return lib_source; }

/* ---------------------------------------------------------------- cuBLAS */

struct oc_cublas {
    struct oc_cuda *cu;
    void *lib;
    void *handle;
    oc_devptr workspace;
    int math; /* the math mode last set: -1 unknown */
    struct oc_cuda_module *helpers;
    void *fn[6]; /* im2col, col2im, permute x f32, f64 */
#ifdef OC_HAVE_CUDA
    int (*Create)(void **);
    int (*Destroy)(void *);
    int (*SetStream)(void *, void *);
    int (*SetMathMode)(void *, int);
    int (*SetWorkspace)(void *, void *, size_t);
    int (*Sgemm)(void *, int, int, int, int, int, const float *, const float *, int, long long,
                 const float *, int, long long, const float *, float *, int, long long, int);
    int (*Dgemm)(void *, int, int, int, int, int, const double *, const double *, int, long long,
                 const double *, int, long long, const double *, double *, int, long long, int);
    const char *(*StatusName)(int);
    const char *(*StatusString)(int);
#endif
};

#ifdef OC_HAVE_CUDA
#include <cublas_v2.h>
#include <dlfcn.h>

static enum oc_status blas_fail(struct oc_cublas *b, struct oc_err *err, int st, const char *what)
{
    const char *name = b->StatusName ? b->StatusName(st) : NULL;
    const char *text = b->StatusString ? b->StatusString(st) : NULL;
    return oc_err_set(err, st == CUBLAS_STATUS_ALLOC_FAILED ? OC_ERR_NOMEM : OC_ERR_DEVICE,
                      "cublas: %s failed: %s (status %d%s%s)", what, name ? name : "cuBLAS error", st,
                      text ? ", " : "", text ? text : "");
}
#endif

void oc_cublas_free(struct oc_cublas *b)
{
    if (!b) return;
#ifdef OC_HAVE_CUDA
    if (b->handle) b->Destroy(b->handle);
    if (b->lib) dlclose(b->lib);
#endif
    if (b->workspace) oc_cuda_release(b->cu, b->workspace);
    free(b);
}

static const char *const helper_names[6] = {"oc_im2col_f32", "oc_col2im_f32", "oc_permute_f32",
                                            "oc_im2col_f64", "oc_col2im_f64", "oc_permute_f64"};

enum oc_status oc_cublas_new(struct oc_cuda *cu, struct oc_cublas **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_cublas *b = calloc(1, sizeof *b);
    if (!b) return oc_err_set(err, OC_ERR_NOMEM, "cuda: out of memory");
    b->cu = cu;
    b->math = -1;
    enum oc_status st = oc_cuda_module_get(cu, lib_source, "oc_lib_helpers", &b->helpers, err);
    for (int i = 0; i < 6 && !st; i++) st = oc_cuda_function(cu, b->helpers, helper_names[i], &b->fn[i], err);
    if (st) {
        oc_cublas_free(b);
        return st;
    }
    if (oc_cuda_is_emulated(cu)) {
        *out = b;
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    static const char *const names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                        "libcublas.so.11", NULL};
    char why[1024];
    b->lib = oc_cuda_dlopen(names, why, sizeof why);
    if (!b->lib) {
        oc_cublas_free(b);
        return oc_err_set(err, OC_ERR_DEVICE, "cublas: %s (install the CUDA toolkit's cuBLAS)", why);
    }
    struct {
        void **slot;
        const char *name;
        int optional;
    } t[] = {
        {(void **)&b->Create, "cublasCreate_v2", 0},
        {(void **)&b->Destroy, "cublasDestroy_v2", 0},
        {(void **)&b->SetStream, "cublasSetStream_v2", 0},
        {(void **)&b->SetMathMode, "cublasSetMathMode", 0},
        {(void **)&b->Sgemm, "cublasSgemmStridedBatched", 0},
        {(void **)&b->Dgemm, "cublasDgemmStridedBatched", 0},
        {(void **)&b->SetWorkspace, "cublasSetWorkspace_v2", 1},
        {(void **)&b->StatusName, "cublasGetStatusName", 1},
        {(void **)&b->StatusString, "cublasGetStatusString", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        *t[i].slot = dlsym(b->lib, t[i].name);
        if (!*t[i].slot && !t[i].optional) {
            oc_err_set(err, OC_ERR_DEVICE, "cublas: the loaded cuBLAS has no %s", t[i].name);
            oc_cublas_free(b);
            return OC_ERR_DEVICE;
        }
    }
    int s = b->Create(&b->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        blas_fail(b, err, s, "cublasCreate");
        b->handle = NULL;
        oc_cublas_free(b);
        return err->code;
    }
    s = b->SetStream(b->handle, oc_cuda_stream(cu));
    if (s != CUBLAS_STATUS_SUCCESS) {
        blas_fail(b, err, s, "cublasSetStream");
        oc_cublas_free(b);
        return err->code;
    }
    /* a workspace of our own: no allocation inside a captured CUDA graph */
    if (b->SetWorkspace) {
        size_t ws = (size_t)32 << 20;
        if ((st = oc_cuda_alloc(cu, ws, &b->workspace, err))) {
            oc_cublas_free(b);
            return st;
        }
        s = b->SetWorkspace(b->handle, (void *)(uintptr_t)b->workspace, ws);
        if (s != CUBLAS_STATUS_SUCCESS) {
            blas_fail(b, err, s, "cublasSetWorkspace");
            oc_cublas_free(b);
            return err->code;
        }
    }
    *out = b;
    return OC_OK;
#else
    oc_cublas_free(b);
    return oc_cuda_probe(err);
#endif
}

static enum oc_status run_gemm(struct oc_cublas *b, const struct oc_lplan *p, const struct oc_lstep *s,
                               const oc_devptr *bufs, int tf32, struct oc_err *err)
{
    size_t es = oc_dtype_size((enum oc_dtype)p->dtype);
    oc_devptr A = bufs[s->a] + (oc_devptr)((size_t)s->aoff * es);
    oc_devptr B = bufs[s->b] + (oc_devptr)((size_t)s->boff * es);
    oc_devptr C = bufs[s->c] + (oc_devptr)((size_t)s->coff * es);
    if (oc_cuda_is_emulated(b->cu)) {
        struct oc_lstep t = *s;
        t.aoff = t.boff = t.coff = 0;
        if (p->dtype == OC_F32) gemm_float(&t, (const float *)(uintptr_t)A, (const float *)(uintptr_t)B, (float *)(uintptr_t)C);
        else gemm_double(&t, (const double *)(uintptr_t)A, (const double *)(uintptr_t)B, (double *)(uintptr_t)C);
        return OC_OK;
    }
#ifdef OC_HAVE_CUDA
    const int64_t lim = 2147483647;
    if (s->m > lim || s->n > lim || s->k > lim || s->lda > lim || s->ldb > lim || s->ldc > lim || s->batch > lim)
        return oc_err_set(err, OC_ERR_UNSUPPORTED, "cublas: a GEMM of %lldx%lldx%lld (batch %lld) exceeds cuBLAS's int sizes",
                          (long long)s->m, (long long)s->n, (long long)s->k, (long long)s->batch);
    int mode = p->dtype == OC_F32 && tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    if (mode != b->math) {
        int r = b->SetMathMode(b->handle, mode);
        if (r != CUBLAS_STATUS_SUCCESS) return blas_fail(b, err, r, "cublasSetMathMode");
        b->math = mode;
    }
    int ta = s->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    int r;
    char what[160];
    snprintf(what, sizeof what, "cublas%cgemmStridedBatched(%c%c, m %lld, n %lld, k %lld, batch %lld)",
             p->dtype == OC_F32 ? 'S' : 'D', s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long long)s->m,
             (long long)s->n, (long long)s->k, (long long)s->batch);
    if (p->dtype == OC_F32) {
        float alpha = (float)s->alpha, beta = (float)s->beta;
        r = b->Sgemm(b->handle, ta, tb, (int)s->m, (int)s->n, (int)s->k, &alpha, (const float *)(uintptr_t)A,
                     (int)s->lda, s->sa, (const float *)(uintptr_t)B, (int)s->ldb, s->sb, &beta,
                     (float *)(uintptr_t)C, (int)s->ldc, s->sc, (int)s->batch);
    } else {
        double alpha = s->alpha, beta = s->beta;
        r = b->Dgemm(b->handle, ta, tb, (int)s->m, (int)s->n, (int)s->k, &alpha, (const double *)(uintptr_t)A,
                     (int)s->lda, s->sa, (const double *)(uintptr_t)B, (int)s->ldb, s->sb, &beta,
                     (double *)(uintptr_t)C, (int)s->ldc, s->sc, (int)s->batch);
    }
    return r == CUBLAS_STATUS_SUCCESS ? OC_OK : blas_fail(b, err, r, what);
#else
    (void)tf32;
    return oc_cuda_probe(err);
#endif
}

enum oc_status oc_cuda_plan_run(struct oc_cuda *cu, const struct oc_lplan *p,
                                const oc_devptr bufs[5], int tf32, struct oc_err *err)
{
    struct oc_cublas **slot = oc_cuda_blas_slot(cu);
    enum oc_status st;
    if (!*slot && (st = oc_cublas_new(cu, slot, err))) return st;
    struct oc_cublas *b = *slot;
    int d = p->dtype == OC_F64 ? 3 : 0;
    for (int i = 0; i < p->nstep; i++) {
        const struct oc_lstep *s = &p->step[i];
        size_t es = oc_dtype_size((enum oc_dtype)p->dtype);
        switch (s->kind) {
        case OC_LS_GEMM: st = run_gemm(b, p, s, bufs, tf32, err); break;
        case OC_LS_ZERO: st = oc_cuda_memset8(cu, bufs[s->dst], 0, (size_t)s->count * es, err); break;
        default: {
            int which = s->kind == OC_LS_IM2COL ? 0 : s->kind == OC_LS_COL2IM ? 1 : 2;
            oc_devptr dst = bufs[s->dst], src = bufs[s->src];
            struct oc_convp c = s->cp;
            long long n = s->count;
            void *args[4] = {&dst, &src, &c, &n};
            int64_t blocks = (s->count + OC_CUDA_BLOCK - 1) / OC_CUDA_BLOCK;
            struct oc_cuda_info info;
            oc_cuda_get_info(cu, &info);
            int64_t wave = (int64_t)(info.sm_count > 0 ? info.sm_count : 1) * (2048 / OC_CUDA_BLOCK);
            unsigned grid = (unsigned)(blocks < wave ? blocks : wave);
            st = oc_cuda_launch(cu, b->fn[d + which], grid, OC_CUDA_BLOCK, args, helper_names[d + which], err);
            break;
        }
        }
        if (st) return st;
    }
    return OC_OK;
}
