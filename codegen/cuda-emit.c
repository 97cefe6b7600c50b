/* cuda-emit.c - kernel IR -> CUDA C, one extern "C" __global__ function per
 * loop kernel (see cuda.h for the contract and the three mappings).
 *
 * The walk is llvm-emit.c's, so both backends give a kernel the same
 * meaning: outer (row) loops over the non-reduced axes; per stage, the
 * stage's accumulators reset, a loop over the reduced axes accumulates
 * and stores per-point values; after the stages, per-row stores. What
 * changes is who runs which loop: a thread, a warp or a block per row, and
 * for WARP/BLOCK the row's points are strided over the group's threads and
 * each stage's partial accumulators are combined before the next stage may
 * read them.
 *
 * Values are emitted on demand as `const T v<id> = ...;` with a memo per
 * open C block: a value first needed inside a loop body is local to it and
 * forgotten when the block closes (as llvm-emit.c's scopes), so every use
 * sees a definition in scope. Arithmetic keeps the interpreter's rules
 * (ir/interp.c): IEEE float ops (the licences taken: NVRTC's default FMA
 * contraction, and f32 rsqrt by the hardware's rsqrtf, within 2 ulp; f32
 * recip is the correctly rounded __frcp_rn; the math library's exp, log,
 * tanh... are CUDA's, within its documented ulps of libm's), i32 wraps
 * (computed in unsigned), u8 arithmetic
 * saturates, casts to integers truncate, saturate and map NaN to 0, NaN
 * propagates through relu/max/min/reduce_max. Guarded loads (pad, concat,
 * gather) clamp their index into the buffer exactly where llvm-emit.c does,
 * so both arms of a select are always safe to load.
 *
 * A grouped kernel (passes/kir.h, fusion rule 4) is one __global__ function
 * too: each member's body as a static device function that takes its
 * share of the group's blocks in place of blockIdx.x / gridDim.x, and a
 * block-stride loop over the members' blocks (emit_group).
 */
#include "cuda.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- string builder */

struct sb {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_vput(struct sb *s, const char *fmt, va_list ap)
{
    if (s->oom) return;
    va_list aq;
    va_copy(aq, ap);
    int m = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, aq);
    va_end(aq);
    if (m < 0) {
        s->oom = 1;
        return;
    }
    if (!s->p || s->n + (size_t)m + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->n + (size_t)m + 1) nc *= 2;
        char *q = realloc(s->p, nc);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q;
        s->cap = nc;
        vsnprintf(s->p + s->n, s->cap - s->n, fmt, ap);
    }
    s->n += (size_t)m;
}

/* snprintf that treats truncation as the bug it would be (buffers are
 * sized for the longest expression a reference can take) */
static int fmt_(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fmt_(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    OC_ASSERT(m >= 0 && (size_t)m < n);
    return m;
}

static void sb_put(struct sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_put(struct sb *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vput(s, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- the prelude */

static const char prelude[] =
    "/* oodc CUDA prelude: helpers shared by the generated kernels. */\n"
    "#pragma nv_diag_suppress 177 /* helpers a translation unit does not use */\n"
    "typedef unsigned char oc_u8;\n"
    "typedef unsigned int oc_u32;\n"
    "typedef unsigned long long oc_u64;\n"
    "#define OC_D static __device__ __forceinline__\n"
    "#define OC_FULL 0xffffffffu\n"
    "#define OC_INF_F __int_as_float(0x7f800000)\n"
    "#define OC_INF_D __longlong_as_double(0x7ff0000000000000LL)\n"
    "\n"
    "/* Philox4x32-10 (ir/rng.c): element i of seed s at counter c uses the\n"
    " * counter block {lo32(i), c, hi32(i), 0} and the key {lo32(s), hi32(s)}. */\n"
    "OC_D void oc_philox(oc_u64 seed, oc_u32 ctr, oc_u64 i, oc_u32 *o0, oc_u32 *o1)\n"
    "{\n"
    "    oc_u32 c0 = (oc_u32)i, c1 = ctr, c2 = (oc_u32)(i >> 32), c3 = 0;\n"
    "    oc_u32 k0 = (oc_u32)seed, k1 = (oc_u32)(seed >> 32);\n"
    "#pragma unroll\n"
    "    for (int r = 0; r < 10; r++) {\n"
    "        oc_u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;\n"
    "        oc_u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;\n"
    "        oc_u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;\n"
    "        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;\n"
    "        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;\n"
    "    }\n"
    "    *o0 = c0; *o1 = c1;\n"
    "}\n"
    "OC_D double oc_rng_uniform(oc_u64 seed, oc_u32 ctr, oc_u64 i)\n"
    "{\n"
    "    oc_u32 a, b;\n"
    "    oc_philox(seed, ctr, i, &a, &b);\n"
    "    return (double)(a >> 8) * 5.9604644775390625e-08;\n"
    "}\n"
    "OC_D double oc_rng_normal(oc_u64 seed, oc_u32 ctr, oc_u64 i)\n"
    "{\n"
    "    oc_u32 a, b;\n"
    "    oc_philox(seed, ctr, i, &a, &b);\n"
    "    double u1 = (double)((a >> 8) + 1) * 5.9604644775390625e-08;\n"
    "    double u2 = (double)(b >> 8) * 5.9604644775390625e-08;\n"
    "    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);\n"
    "}\n"
    "\n"
    "/* float -> integer: truncate toward zero, saturate, NaN -> 0 */\n"
    "OC_D int oc_f2i(float x) { return x != x ? 0 : x >= 2147483648.0f ? 2147483647 : x < -2147483648.0f ? (-2147483647 - 1) : (int)x; }\n"
    "OC_D int oc_f2i(double x) { return x != x ? 0 : x >= 2147483648.0 ? 2147483647 : x < -2147483648.0 ? (-2147483647 - 1) : (int)x; }\n"
    "OC_D oc_u8 oc_f2u8(float x) { return x != x ? 0 : x >= 256.0f ? 255 : x <= -1.0f ? 0 : (oc_u8)(int)x; }\n"
    "OC_D oc_u8 oc_f2u8(double x) { return x != x ? 0 : x >= 256.0 ? 255 : x <= -1.0 ? 0 : (oc_u8)(int)x; }\n"
    "OC_D oc_u8 oc_u8sat(int x) { return x < 0 ? 0 : x > 255 ? 255 : (oc_u8)x; }\n"
    "/* i32 arithmetic wraps modulo 2^32 */\n"
    "OC_D int oc_iadd(int a, int b) { return (int)((oc_u32)a + (oc_u32)b); }\n"
    "OC_D int oc_isub(int a, int b) { return (int)((oc_u32)a - (oc_u32)b); }\n"
    "OC_D int oc_imul(int a, int b) { return (int)((oc_u32)a * (oc_u32)b); }\n"
    "OC_D int oc_ineg(int a) { return (int)(0u - (oc_u32)a); }\n"
    "OC_D int oc_iabs(int a) { return a < 0 ? oc_ineg(a) : a; }\n"
    "OC_D int oc_isign(int a) { return (a > 0) - (a < 0); }\n"
    "/* floor division and modulo for possibly negative index expressions */\n"
    "OC_D int oc_fdiv(int a, int c) { int q = a / c; return q - (a % c < 0); }\n"
    "OC_D int oc_fmod(int a, int c) { int r = a % c; return r < 0 ? r + c : r; }\n"
    "OC_D long long oc_fdiv(long long a, long long c) { long long q = a / c; return q - (a % c < 0); }\n"
    "OC_D long long oc_fmod(long long a, long long c) { long long r = a % c; return r < 0 ? r + c : r; }\n"
    "OC_D int oc_clamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }\n"
    "OC_D long long oc_clamp(long long x, long long lo, long long hi) { return x < lo ? lo : x > hi ? hi : x; }\n"
    "/* the interpreter's NaN rules */\n"
    "OC_D float oc_sign(float a) { return a > 0.0f ? 1.0f : a < 0.0f ? -1.0f : a != a ? a : 0.0f; }\n"
    "OC_D double oc_sign(double a) { return a > 0.0 ? 1.0 : a < 0.0 ? -1.0 : a != a ? a : 0.0; }\n"
    "OC_D float oc_relu(float a) { return (a > 0.0f || a != a) ? a : 0.0f; }\n"
    "OC_D double oc_relu(double a) { return (a > 0.0 || a != a) ? a : 0.0; }\n"
    "OC_D float oc_sigmoid(float a) { float e = expf(-fabsf(a)), d = 1.0f + e; return a >= 0.0f ? 1.0f / d : e / d; }\n"
    "OC_D double oc_sigmoid(double a) { double e = exp(-fabs(a)), d = 1.0 + e; return a >= 0.0 ? 1.0 / d : e / d; }\n"
    "OC_D float oc_softplus(float a) { return (a > 0.0f ? a : 0.0f) + log1pf(expf(-fabsf(a))); }\n"
    "OC_D double oc_softplus(double a) { return (a > 0.0 ? a : 0.0) + log1p(exp(-fabs(a))); }\n"
    "OC_D float oc_max(float a, float b) { return a != a ? a : b != b ? b : a > b ? a : b; }\n"
    "OC_D double oc_max(double a, double b) { return a != a ? a : b != b ? b : a > b ? a : b; }\n"
    "OC_D float oc_min(float a, float b) { return a != a ? a : b != b ? b : a < b ? a : b; }\n"
    "OC_D double oc_min(double a, double b) { return a != a ? a : b != b ? b : a < b ? a : b; }\n"
    "\n"
    "/* Reductions: one step of a thread, then across a warp (xor butterfly:\n"
    " * every lane ends with the same value), then across a block's warps\n"
    " * through shared memory (every warp reduces the partials itself). A\n"
    " * reduce_max takes NaN over numbers; argmax pairs order by value, then\n"
    " * NaN first, then the lower position. */\n"
    "OC_D float oc_rmax(float a, float b) { return (b > a || (b != b && a == a)) ? b : a; }\n"
    "OC_D double oc_rmax(double a, double b) { return (b > a || (b != b && a == a)) ? b : a; }\n"
    "OC_D int oc_rmax(int a, int b) { return b > a ? b : a; }\n"
    "OC_D bool oc_atake(float v, int i, float v2, int i2)\n"
    "{\n"
    "    bool n1 = v != v, n2 = v2 != v2;\n"
    "    return (n2 && !n1) || v2 > v || (n1 == n2 && (n1 || v2 == v) && i2 < i);\n"
    "}\n"
    "OC_D bool oc_atake(double v, int i, double v2, int i2)\n"
    "{\n"
    "    bool n1 = v != v, n2 = v2 != v2;\n"
    "    return (n2 && !n1) || v2 > v || (n1 == n2 && (n1 || v2 == v) && i2 < i);\n"
    "}\n"
    "OC_D bool oc_atake(int v, int i, int v2, int i2) { return v2 > v || (v2 == v && i2 < i); }\n"
    "OC_D float oc_wsum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(OC_FULL, v, o); return v; }\n"
    "OC_D double oc_wsum(double v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(OC_FULL, v, o); return v; }\n"
    "OC_D int oc_wsum(int v) { for (int o = 16; o > 0; o >>= 1) v = oc_iadd(v, __shfl_xor_sync(OC_FULL, v, o)); return v; }\n"
    "template <typename T> OC_D T oc_wmax(T v) { for (int o = 16; o > 0; o >>= 1) v = oc_rmax(v, __shfl_xor_sync(OC_FULL, v, o)); return v; }\n"
    "template <typename T> OC_D void oc_wargmax(T &v, int &i)\n"
    "{\n"
    "    for (int o = 16; o > 0; o >>= 1) {\n"
    "        T v2 = __shfl_xor_sync(OC_FULL, v, o);\n"
    "        int i2 = __shfl_xor_sync(OC_FULL, i, o);\n"
    "        if (oc_atake(v, i, v2, i2)) { v = v2; i = i2; }\n"
    "    }\n"
    "}\n"
    "/* Across the block: shared memory holds one partial per warp (a double\n"
    " * holds any f32, f64, i32 or u8 partial exactly). The first barrier keeps\n"
    " * a reduction from overwriting partials the previous one still reads. */\n"
    "template <typename T> OC_D T oc_bpart(T v, T idle, double *sm)\n"
    "{\n"
    "    __syncthreads();\n"
    "    if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = (double)v;\n"
    "    __syncthreads();\n"
    "    return (threadIdx.x & 31) < (blockDim.x >> 5) ? (T)sm[threadIdx.x & 31] : idle;\n"
    "}\n"
    "template <typename T> OC_D T oc_bsum(T v, double *sm) { return oc_wsum(oc_bpart(oc_wsum(v), (T)0, sm)); }\n"
    "template <typename T> OC_D T oc_bmax(T v, T idle, double *sm) { return oc_wmax(oc_bpart(oc_wmax(v), idle, sm)); }\n"
    "template <typename T> OC_D void oc_bargmax(T &v, int &i, T idle, double *sm, int *smi)\n"
    "{\n"
    "    oc_wargmax(v, i);\n"
    "    __syncthreads();\n"
    "    if ((threadIdx.x & 31) == 0) { sm[threadIdx.x >> 5] = (double)v; smi[threadIdx.x >> 5] = i; }\n"
    "    __syncthreads();\n"
    "    bool live = (threadIdx.x & 31) < (blockDim.x >> 5);\n"
    "    v = live ? (T)sm[threadIdx.x & 31] : idle;\n"
    "    i = live ? smi[threadIdx.x & 31] : 0;\n"
    "    oc_wargmax(v, i);\n"
    "}\n";

const char *oc_cuda_prelude(void) { return prelude; }

const char *oc_cuda_map_name(enum oc_cuda_map m)
{
    switch (m) {
    case OC_CUDA_MAP_THREAD: return "thread";
    case OC_CUDA_MAP_WARP: return "warp";
    case OC_CUDA_MAP_BLOCK: return "block";
    }
    return "?";
}

/* ---------------------------------------------------------------- launch shape */

/* Below this many points an elementwise kernel has no vector path (its
 * text stays short; it is launch-bound anyway). */
#define VEC_MIN_POINTS 256
#define VEC 4

static int is_float(int dt) { return dt == OC_F32 || dt == OC_F64; }

static int64_t absi(int64_t x) { return x < 0 ? -x : x; }

/* A bound on |value| of an index expression and of every partial sum
 * formed while evaluating it. */
static double ix_bound(const struct oc_kix *x)
{
    double b = (double)absi(x->c0);
    for (int i = 0; i < x->nterm; i++) {
        const struct oc_katom *a = x->atom[i];
        double m = (double)(absi(a->lo) > absi(a->hi) ? absi(a->lo) : absi(a->hi));
        if (a->kind == OC_KA_DIV || a->kind == OC_KA_MOD) {
            double inner = ix_bound(a->x);
            if (inner > m) m = inner;
        }
        b += (double)absi(x->coef[i]) * m;
    }
    return b;
}

static int need64(const struct oc_kernel *k)
{
    const double lim = 1073741824.0; /* 2^30: a grid-stride step never overflows an int */
    if ((double)oc_shape_numel(&k->space) >= lim) return 1;
    for (int s = 0; s < k->nslot; s++)
        if ((double)k->slot[s].numel >= lim) return 1;
    for (int i = 0; i < k->nix; i++)
        if (ix_bound(k->ixs[i]) >= lim) return 1;
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        if (v->kind == OC_KV_INRANGE && ((double)absi(v->lo) >= lim || (double)absi(v->hi) >= lim))
            return 1;
    }
    return 0;
}

static int64_t strides_of(const struct oc_kernel *k, uint32_t mask, int64_t *st)
{
    int64_t n = 1;
    for (int d = k->space.rank - 1; d >= 0; d--) {
        st[d] = 0;
        if (!(mask & (1u << d))) continue;
        st[d] = n;
        n *= k->space.dim[d];
    }
    return n;
}

/* Whether x is the row-major linear index over the axes in mask (axes of
 * extent 1 contribute nothing), i.e. sum over those axes of stride * var. */
static int is_lin(const struct oc_kernel *k, const struct oc_kix *x, uint32_t mask)
{
    int64_t st[OC_MAX_RANK];
    strides_of(k, mask, st);
    if (x->c0 != 0) return 0;
    int want = 0;
    for (int d = 0; d < k->space.rank; d++)
        if ((mask & (1u << d)) && k->space.dim[d] > 1) want++;
    if (x->nterm != want) return 0;
    for (int i = 0; i < x->nterm; i++) {
        const struct oc_katom *a = x->atom[i];
        if (a->kind != OC_KA_VAR || !(mask & (1u << a->var)) || x->coef[i] != st[a->var]) return 0;
    }
    return 1;
}

static uint32_t all_axes(const struct oc_kernel *k) { return (1u << k->space.rank) - 1; }

static void group_launch(const struct oc_kernel *k, struct oc_cuda_launch *l);

void oc_cuda_launch_of(const struct oc_kernel *k, struct oc_cuda_launch *l)
{
    memset(l, 0, sizeof *l);
    l->block = OC_CUDA_BLOCK;
    if (k->kind != OC_K_LOOP) return;
    if (oc_kir_is_group(k)) {
        group_launch(k, l);
        return;
    }
    int64_t st[OC_MAX_RANK];
    uint32_t outer = all_axes(k) & ~k->rmask;
    l->rows = strides_of(k, outer, st);
    l->inner = strides_of(k, k->rmask, st);
    l->index64 = need64(k);
    if (!k->rmask || l->inner <= 8) l->map = OC_CUDA_MAP_THREAD;
    else if (l->inner <= 1024 && (l->rows >= 1024 || l->inner <= 64)) l->map = OC_CUDA_MAP_WARP;
    else l->map = OC_CUDA_MAP_BLOCK;
    /* f64 kernels keep to the scalar loop: two copies of f64 math make
     * ptxas outline its slow paths into calls with a stack frame, and
     * 8-byte elements gain little from 16-byte accesses */
    int f64 = 0;
    for (int s = 0; s < k->nslot; s++) f64 |= k->slot[s].dtype == OC_F64;
    for (int i = 0; i < k->nval; i++) f64 |= k->vals[i]->dtype == OC_F64;
    l->vector = !k->rmask && l->rows >= VEC_MIN_POINTS && !f64;
    switch (l->map) {
    case OC_CUDA_MAP_THREAD:
        l->units = l->vector ? (l->rows + VEC - 1) / VEC : l->rows;
        l->units_per_block = l->block;
        break;
    case OC_CUDA_MAP_WARP:
        l->units = l->rows;
        l->units_per_block = l->block / 32;
        break;
    case OC_CUDA_MAP_BLOCK:
        l->units = l->rows;
        l->units_per_block = 1;
        break;
    }
}

unsigned oc_cuda_grid(const struct oc_cuda_launch *l, int sm_count)
{
    if (sm_count < 1) sm_count = 1;
    int64_t need = (l->units + l->units_per_block - 1) / (l->units_per_block > 0 ? l->units_per_block : 1);
    int64_t wave = (int64_t)sm_count * (2048 / (l->block > 0 ? l->block : OC_CUDA_BLOCK));
    if (need > wave) need = wave;
    return need < 1 ? 1u : (unsigned)need;
}

void oc_cuda_kernel_name(const struct oc_kernel *k, char *buf, size_t n)
{
    /* k->name is "k_<4 hex>_<ops>": keep the ops, widen the hash */
    const char *ops = strchr(k->name + 2, '_');
    fmt_(buf, n, "k_%016llx%s", (unsigned long long)k->hash, ops ? ops : "");
}

/* ---------------------------------------------------------------- the emitter */

#define MAXSCOPE 256

struct ce {
    const struct oc_kernel *k;
    struct oc_cuda_launch L;
    struct sb *o;
    int ind;
    const char *it;             /* index type */
    char var[OC_MAX_RANK][32];  /* expression of each loop variable */
    char vdecl[OC_MAX_RANK][96]; /* its definition from a linear index, declared on first use */
    int var_sc[OC_MAX_RANK];    /* scope it was declared in (0: not yet) */
    int *vsc, *xsc;             /* scope a value / index expression was emitted in (0: none) */
    int scopes[MAXSCOPE], nscope, nextscope;
    int lin_p;                  /* pname is the full linear index (elementwise) */
    char pname[48];             /* the point index: "p", or "(4 * q + 1)" in a vector lane */
    int lin_row, lin_j;         /* `row` / `j` hold the outer / inner linear index */
    int trailing;               /* the reduced axes are the trailing ones */
    const char *bid, *nblk;     /* the block index and count: blockIdx.x and gridDim.x, or
                                 * a group member's share of its group's blocks */
    struct oc_err *err;
    int failed;
};

static void line(struct ce *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(struct ce *e, const char *fmt, ...)
{
    for (int i = 0; i < e->ind; i++) sb_put(e->o, "    ");
    va_list ap;
    va_start(ap, fmt);
    sb_vput(e->o, fmt, ap);
    va_end(ap);
    sb_put(e->o, "\n");
}

static void fail(struct ce *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ce *e, const char *fmt, ...)
{
    if (!e->failed) {
        va_list ap;
        va_start(ap, fmt);
        char msg[512];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        oc_err_set(e->err, OC_ERR_UNSUPPORTED, "cuda codegen: %s in kernel %s", msg, e->k->name);
    }
    e->failed = 1;
}

/* Opening a C block opens a memo scope; closing it forgets what was
 * emitted inside. */
static void open_block(struct ce *e, const char *head)
{
    line(e, "%s{", head);
    e->ind++;
    OC_ASSERT(e->nscope < MAXSCOPE);
    e->scopes[e->nscope++] = ++e->nextscope;
}

static void close_block(struct ce *e, const char *tail)
{
    int s = e->scopes[--e->nscope];
    for (int i = 0; i < e->k->nval; i++)
        if (e->vsc[i] == s) e->vsc[i] = 0;
    for (int i = 0; i < e->k->nix; i++)
        if (e->xsc[i] == s) e->xsc[i] = 0;
    for (int d = 0; d < OC_MAX_RANK; d++)
        if (e->var_sc[d] == s) e->var_sc[d] = 0;
    e->ind--;
    line(e, "}%s", tail);
}

static int cur_scope(const struct ce *e) { return e->scopes[e->nscope - 1]; }

/* Loop variable d, declared here first if it is derived from a linear
 * index and not yet in scope (so unused ones are never declared). */
static const char *var_ref(struct ce *e, int d)
{
    if (e->vdecl[d][0] && !e->var_sc[d]) {
        line(e, "const %s %s = %s;", e->it, e->var[d], e->vdecl[d]);
        e->var_sc[d] = cur_scope(e);
    }
    return e->var[d];
}

static const char *ctype(int dt)
{
    switch (dt) {
    case OC_F32: return "float";
    case OC_F64: return "double";
    case OC_I32: return "int";
    case OC_U8: return "oc_u8";
    default: return "bool";
    }
}

/* A literal of dtype dt (c already holds a value of that dtype). */
static void lit(char *buf, size_t n, int dt, double c)
{
    switch (dt) {
    case OC_F32:
    case OC_F64: {
        int f = dt == OC_F32;
        if (isnan(c)) {
            fmt_(buf, n, f ? "__int_as_float(0x7fffffff)" : "__longlong_as_double(0x7fffffffffffffffLL)");
        } else if (isinf(c)) {
            fmt_(buf, n, "%s%s", c < 0 ? "-" : "", f ? "OC_INF_F" : "OC_INF_D");
            if (c < 0) { /* keep the unary minus attached */
                char t[64];
                fmt_(t, sizeof t, "(%s)", buf);
                fmt_(buf, n, "%s", t);
            }
        } else {
            char t[48];
            fmt_(t, sizeof t, f ? "%.9g" : "%.17g", c);
            if (!strpbrk(t, ".en")) strcat(t, ".0");
            if (c == 0 && signbit(c)) fmt_(t, sizeof t, "-0.0");
            if (t[0] == '-') fmt_(buf, n, "(%s%s)", t, f ? "f" : "");
            else fmt_(buf, n, "%s%s", t, f ? "f" : "");
        }
        break;
    }
    case OC_I32:
        if (c <= -2147483648.0) fmt_(buf, n, "(-2147483647 - 1)");
        else if (c < 0) fmt_(buf, n, "(%lld)", (long long)c);
        else fmt_(buf, n, "%lld", (long long)c);
        break;
    case OC_U8: fmt_(buf, n, "(oc_u8)%lld", (long long)c); break;
    default: fmt_(buf, n, "%s", c != 0 ? "true" : "false"); break;
    }
}

static const char *ilit(struct ce *e, char *buf, size_t n, int64_t c)
{
    if (e->L.index64) fmt_(buf, n, c < 0 ? "(%lldLL)" : "%lldLL", (long long)c);
    else fmt_(buf, n, c < 0 ? "(%lld)" : "%lld", (long long)c);
    return buf;
}

/* ---------------------------------------------------------------- index expressions */

struct ref {
    char s[256];
};

static void ev(struct ce *e, const struct oc_kval *v, struct ref *r);

/* A reference to the value of index expression x. */
static void eix(struct ce *e, const struct oc_kix *x, struct ref *r)
{
    if (x->nterm == 0) {
        ilit(e, r->s, sizeof r->s, x->c0);
        return;
    }
    if (e->lin_p && is_lin(e->k, x, all_axes(e->k))) {
        fmt_(r->s, sizeof r->s, "%s", e->pname);
        return;
    }
    if (e->lin_row && is_lin(e->k, x, all_axes(e->k) & ~e->k->rmask)) {
        fmt_(r->s, sizeof r->s, "row");
        return;
    }
    if (e->lin_j && is_lin(e->k, x, e->k->rmask)) {
        fmt_(r->s, sizeof r->s, "j");
        return;
    }
    if (e->lin_j && e->lin_row && e->trailing && is_lin(e->k, x, all_axes(e->k))) {
        fmt_(r->s, sizeof r->s, "(row * %lld + j)", (long long)e->L.inner);
        return;
    }
    if (x->nterm == 1 && x->c0 == 0 && x->coef[0] == 1 && x->atom[0]->kind == OC_KA_VAR) {
        fmt_(r->s, sizeof r->s, "%s", var_ref(e, x->atom[0]->var));
        return;
    }
    fmt_(r->s, sizeof r->s, "x%d", x->id);
    if (e->xsc[x->id]) return;
    /* the terms first: they may emit lines of their own */
    struct ref t[64];
    char c[32];
    for (int i = 0; i < x->nterm; i++) {
        const struct oc_katom *a = x->atom[i];
        struct ref y;
        switch (a->kind) {
        case OC_KA_VAR: fmt_(t[i].s, sizeof t[i].s, "%s", var_ref(e, a->var)); break;
        case OC_KA_DIV:
            eix(e, a->x, &y);
            ilit(e, c, sizeof c, a->c);
            if (a->x->lo >= 0) fmt_(t[i].s, sizeof t[i].s, "%s / %s", y.s, c);
            else fmt_(t[i].s, sizeof t[i].s, "oc_fdiv(%s, %s)", y.s, c);
            break;
        case OC_KA_MOD:
            eix(e, a->x, &y);
            ilit(e, c, sizeof c, a->c);
            if (a->x->lo >= 0) fmt_(t[i].s, sizeof t[i].s, "%s %% %s", y.s, c);
            else fmt_(t[i].s, sizeof t[i].s, "oc_fmod(%s, %s)", y.s, c);
            break;
        case OC_KA_VAL: {
            struct ref vv;
            ev(e, a->v, &vv);
            fmt_(t[i].s, sizeof t[i].s, "oc_clamp((%s)%s, (%s)0, (%s)%lld)", e->it, vv.s, e->it,
                 e->it, (long long)(a->c - 1));
            break;
        }
        }
    }
    struct sb b = {0};
    for (int i = 0; i < x->nterm; i++) {
        int64_t cf = x->coef[i];
        const char *op = i == 0 ? (cf < 0 ? "-" : "") : (cf < 0 ? " - " : " + ");
        int64_t m = absi(cf);
        int paren = x->atom[i]->kind == OC_KA_DIV || x->atom[i]->kind == OC_KA_MOD;
        if (m == 1) sb_put(&b, paren ? "%s(%s)" : "%s%s", op, t[i].s);
        else sb_put(&b, "%s%s * (%s)", op, ilit(e, c, sizeof c, m), t[i].s);
    }
    if (x->c0) sb_put(&b, " %s %s", x->c0 < 0 ? "-" : "+", ilit(e, c, sizeof c, absi(x->c0)));
    if (b.oom) e->o->oom = 1;
    else line(e, "const %s x%d = %s;", e->it, x->id, b.p);
    free(b.p);
    e->xsc[x->id] = cur_scope(e);
}

/* slot[x], the index clamped into the buffer where its range leaves it */
static void elem(struct ce *e, int slot, const struct oc_kix *x, struct ref *r)
{
    struct ref i;
    eix(e, x, &i);
    int64_t hi = e->k->slot[slot].numel - 1;
    if (hi < 0) hi = 0;
    char a[32], b[32];
    if (x->lo < 0 && x->hi > hi)
        fmt_(r->s, sizeof r->s, "s%d[oc_clamp(%s, %s, %s)]", slot, i.s, ilit(e, a, sizeof a, 0),
             ilit(e, b, sizeof b, hi));
    else if (x->lo < 0)
        fmt_(r->s, sizeof r->s, "s%d[oc_clamp(%s, %s, %s)]", slot, i.s, ilit(e, a, sizeof a, 0),
             ilit(e, b, sizeof b, x->hi > 0 ? x->hi : 0));
    else if (x->hi > hi)
        fmt_(r->s, sizeof r->s, "s%d[oc_clamp(%s, %s, %s)]", slot, i.s, ilit(e, a, sizeof a, 0),
             ilit(e, b, sizeof b, hi));
    else
        fmt_(r->s, sizeof r->s, "s%d[%s]", slot, i.s);
}

/* ---------------------------------------------------------------- values */

static const char *cmp_op(enum oc_op op)
{
    switch (op) {
    case OC_OP_LT: return "<";
    case OC_OP_LE: return "<=";
    case OC_OP_EQ: return "==";
    case OC_OP_NE: return "!=";
    case OC_OP_GE: return ">=";
    default: return ">";
    }
}

/* The expression converting a (of dtype from) to dtype to. */
static void conv(char *out, size_t n, const char *a, int from, int to)
{
    if (from == to) {
        fmt_(out, n, "%s", a);
        return;
    }
    if (from == OC_KBOOL) {
        fmt_(out, n, "(%s ? (%s)1 : (%s)0)", a, ctype(to), ctype(to));
        return;
    }
    if (to == OC_KBOOL) {
        fmt_(out, n, "(%s != 0)", a);
        return;
    }
    if (is_float(to)) {
        fmt_(out, n, "(%s)%s", ctype(to), a);
        return;
    }
    if (is_float(from)) {
        fmt_(out, n, to == OC_I32 ? "oc_f2i(%s)" : "oc_f2u8(%s)", a);
        return;
    }
    if (to == OC_I32) fmt_(out, n, "(int)%s", a); /* u8 -> i32 */
    else fmt_(out, n, "oc_u8sat(%s)", a);          /* i32 -> u8 */
}

static void op_expr(struct ce *e, const struct oc_kval *v, const char *a, const char *b, char *out,
                    size_t n)
{
    int dt = v->dtype;
    out[0] = 0;
    if (is_float(dt)) {
        int f = dt == OC_F32;
        const char *sfx = f ? "f" : "";
        const char *one = f ? "1.0f" : "1.0";
        switch (v->op) {
        case OC_OP_NEG: fmt_(out, n, "-%s", a); break;
        case OC_OP_EXP: fmt_(out, n, "exp%s(%s)", sfx, a); break;
        case OC_OP_LOG: fmt_(out, n, "log%s(%s)", sfx, a); break;
        case OC_OP_SQRT: fmt_(out, n, "sqrt%s(%s)", sfx, a); break;
        /* f32 rsqrt: the hardware's (MUFU.RSQ, at most 2 ulp, as PyTorch's
         * batch norm uses). The IEEE-rounded forms (1/sqrtf, __frsqrt_rn)
         * carry an out-of-line slow path whose call costs a stack frame and
         * spills in BN kernels (sm_80 and sm_90); the tests demand none. */
        case OC_OP_RSQRT:
            if (f) fmt_(out, n, "rsqrtf(%s)", a);
            else fmt_(out, n, "%s / sqrt(%s)", one, a);
            break;
        case OC_OP_RECIP:
            if (f) fmt_(out, n, "__frcp_rn(%s)", a);
            else fmt_(out, n, "%s / %s", one, a);
            break;
        case OC_OP_ABS: fmt_(out, n, "fabs%s(%s)", sfx, a); break;
        case OC_OP_SIGN: fmt_(out, n, "oc_sign(%s)", a); break;
        case OC_OP_RELU: fmt_(out, n, "oc_relu(%s)", a); break;
        case OC_OP_SIGMOID: fmt_(out, n, "oc_sigmoid(%s)", a); break;
        case OC_OP_TANH: fmt_(out, n, "tanh%s(%s)", sfx, a); break;
        case OC_OP_SOFTPLUS: fmt_(out, n, "oc_softplus(%s)", a); break;
        case OC_OP_LOG1P: fmt_(out, n, "log1p%s(%s)", sfx, a); break;
        case OC_OP_ADD: fmt_(out, n, "%s + %s", a, b); break;
        case OC_OP_SUB: fmt_(out, n, "%s - %s", a, b); break;
        case OC_OP_MUL: fmt_(out, n, "%s * %s", a, b); break;
        case OC_OP_DIV: fmt_(out, n, "%s / %s", a, b); break;
        case OC_OP_POW: fmt_(out, n, "pow%s(%s, %s)", sfx, a, b); break;
        case OC_OP_MAX: fmt_(out, n, "oc_max(%s, %s)", a, b); break;
        case OC_OP_MIN: fmt_(out, n, "oc_min(%s, %s)", a, b); break;
        default: break;
        }
    } else if (dt == OC_I32) {
        switch (v->op) {
        case OC_OP_NEG: fmt_(out, n, "oc_ineg(%s)", a); break;
        case OC_OP_ABS: fmt_(out, n, "oc_iabs(%s)", a); break;
        case OC_OP_SIGN: fmt_(out, n, "oc_isign(%s)", a); break;
        case OC_OP_ADD: fmt_(out, n, "oc_iadd(%s, %s)", a, b); break;
        case OC_OP_SUB: fmt_(out, n, "oc_isub(%s, %s)", a, b); break;
        case OC_OP_MUL: fmt_(out, n, "oc_imul(%s, %s)", a, b); break;
        case OC_OP_MAX: fmt_(out, n, "(%s > %s ? %s : %s)", a, b, a, b); break;
        case OC_OP_MIN: fmt_(out, n, "(%s < %s ? %s : %s)", a, b, a, b); break;
        default: break;
        }
    } else if (dt == OC_U8) {
        /* computed in int, saturated into [0, 255] as the interpreter stores */
        switch (v->op) {
        case OC_OP_NEG: fmt_(out, n, "oc_u8sat(-(int)%s)", a); break;
        case OC_OP_ABS: fmt_(out, n, "%s", a); break;
        case OC_OP_SIGN: fmt_(out, n, "(oc_u8)(%s > 0)", a); break;
        case OC_OP_ADD: fmt_(out, n, "oc_u8sat((int)%s + (int)%s)", a, b); break;
        case OC_OP_SUB: fmt_(out, n, "oc_u8sat((int)%s - (int)%s)", a, b); break;
        case OC_OP_MUL: fmt_(out, n, "oc_u8sat((int)%s * (int)%s)", a, b); break;
        case OC_OP_MAX: fmt_(out, n, "(%s > %s ? %s : %s)", a, b, a, b); break;
        case OC_OP_MIN: fmt_(out, n, "(%s < %s ? %s : %s)", a, b, a, b); break;
        default: break;
        }
    }
    if (!out[0])
        fail(e, "%s on %s", oc_op_name(v->op), dt == OC_KBOOL ? "bool" : oc_dtype_name((enum oc_dtype)dt));
}

/* The C type and initial value of reduction i's accumulator. */
static const char *acc_type(const struct oc_kred *r)
{
    int dt = r->x->dtype;
    return dt == OC_U8 ? "int" : ctype(dt);
}

static void acc_init(const struct oc_kred *r, char *buf, size_t n)
{
    int dt = r->x->dtype;
    if (r->op == OC_OP_SUM) lit(buf, n, dt == OC_U8 ? OC_I32 : dt, 0);
    else if (is_float(dt)) fmt_(buf, n, "(-%s)", dt == OC_F32 ? "OC_INF_F" : "OC_INF_D");
    else if (dt == OC_I32) fmt_(buf, n, "(-2147483647 - 1)");
    else fmt_(buf, n, "0");
}

static void ev(struct ce *e, const struct oc_kval *v, struct ref *r)
{
    if (v->kind == OC_KV_CONST) {
        lit(r->s, sizeof r->s, v->dtype, v->c);
        return;
    }
    fmt_(r->s, sizeof r->s, "v%d", v->id);
    if (e->vsc[v->id]) return;
    char expr[4096];
    struct ref a, b, c;
    switch (v->kind) {
    case OC_KV_CONST: break;
    case OC_KV_LOAD:
        elem(e, v->slot, v->ix, &a);
        fmt_(expr, sizeof expr, "%s", a.s);
        break;
    case OC_KV_ACC: {
        const struct oc_kred *rd = &e->k->red[v->acc];
        if (rd->op == OC_OP_ARGMAX) fmt_(expr, sizeof expr, "ai%d", v->acc);
        else if (rd->x->dtype == OC_U8 && rd->op == OC_OP_SUM) fmt_(expr, sizeof expr, "oc_u8sat(acc%d)", v->acc);
        else if (rd->x->dtype == OC_U8) fmt_(expr, sizeof expr, "(oc_u8)acc%d", v->acc);
        else fmt_(expr, sizeof expr, "acc%d", v->acc);
        break;
    }
    case OC_KV_INDEX:
        eix(e, v->ix, &a);
        fmt_(expr, sizeof expr, "(int)(%s)", a.s);
        break;
    case OC_KV_OP: {
        ev(e, v->arg[0], &a);
        if (v->nargs > 1) ev(e, v->arg[1], &b);
        if (v->op == OC_OP_CAST) {
            conv(expr, sizeof expr, a.s, v->arg[0]->dtype, v->dtype);
        } else if (oc_op_table[v->op].flags & OC_F_CMP) {
            char t[512];
            fmt_(t, sizeof t, "(%s %s %s)", a.s, cmp_op(v->op), b.s);
            conv(expr, sizeof expr, t, OC_KBOOL, v->dtype);
        } else {
            op_expr(e, v, a.s, v->nargs > 1 ? b.s : "", expr, sizeof expr);
            if (e->failed) return;
        }
        break;
    }
    case OC_KV_RNG: {
        ev(e, v->arg[0], &a);
        eix(e, v->ix, &b);
        char t[512];
        fmt_(t, sizeof t, "%s(0x%016llxULL, (oc_u32)%s, (oc_u64)%s)",
             v->op == OC_OP_RNG_NORMAL ? "oc_rng_normal" : "oc_rng_uniform",
             (unsigned long long)v->seed, a.s, b.s);
        conv(expr, sizeof expr, t, OC_F64, v->dtype);
        break;
    }
    case OC_KV_INRANGE: {
        eix(e, v->ix, &a);
        char l1[32], l2[32];
        int lo = v->ix->lo < v->lo, hi = v->ix->hi > v->hi;
        if (lo && hi)
            fmt_(expr, sizeof expr, "(%s >= %s && %s <= %s)", a.s, ilit(e, l1, sizeof l1, v->lo), a.s,
                 ilit(e, l2, sizeof l2, v->hi));
        else if (lo) fmt_(expr, sizeof expr, "(%s >= %s)", a.s, ilit(e, l1, sizeof l1, v->lo));
        else if (hi) fmt_(expr, sizeof expr, "(%s <= %s)", a.s, ilit(e, l2, sizeof l2, v->hi));
        else fmt_(expr, sizeof expr, "true");
        break;
    }
    case OC_KV_AND:
        ev(e, v->arg[0], &a);
        ev(e, v->arg[1], &b);
        fmt_(expr, sizeof expr, "%s && %s", a.s, b.s);
        break;
    case OC_KV_SEL:
        ev(e, v->arg[0], &a);
        ev(e, v->arg[1], &b);
        ev(e, v->arg[2], &c);
        fmt_(expr, sizeof expr, "%s ? %s : %s", a.s, b.s, c.s);
        break;
    }
    if (e->failed) return;
    line(e, "const %s v%d = %s;", ctype(v->dtype), v->id, expr);
    e->vsc[v->id] = cur_scope(e);
}

/* ---------------------------------------------------------------- reductions and stores */

static void red_decl(struct ce *e, int i)
{
    const struct oc_kred *r = &e->k->red[i];
    char init[64];
    acc_init(r, init, sizeof init);
    line(e, "%s acc%d = %s;", acc_type(r), i, init);
    if (r->op == OC_OP_ARGMAX) line(e, "int ai%d = 0;", i);
}

static void red_step(struct ce *e, int i)
{
    const struct oc_kred *r = &e->k->red[i];
    int dt = r->x->dtype;
    struct ref x;
    ev(e, r->x, &x);
    if (e->failed) return;
    if (r->op == OC_OP_SUM) {
        if (is_float(dt)) line(e, "acc%d += %s;", i, x.s);
        else line(e, "acc%d = oc_iadd(acc%d, (int)%s);", i, i, x.s);
        return;
    }
    char take[256];
    if (is_float(dt)) fmt_(take, sizeof take, "%s > acc%d || (%s != %s && acc%d == acc%d)", x.s, i, x.s, x.s, i, i);
    else fmt_(take, sizeof take, "(int)%s > acc%d", x.s, i);
    if (r->op == OC_OP_REDUCE_MAX) {
        line(e, "if (%s) acc%d = %s;", take, i, x.s);
    } else {
        const char *pos = var_ref(e, r->axis); /* declared before the block, not inside */
        line(e, "if (%s) {", take);
        line(e, "    acc%d = %s;", i, x.s);
        line(e, "    ai%d = (int)%s;", i, pos);
        line(e, "}");
    }
}

/* Combines every thread's partial accumulators of stage s across the
 * row's group, so that each thread holds the row's result. */
static void red_combine(struct ce *e, int s)
{
    for (int i = 0; i < e->k->nred; i++) {
        const struct oc_kred *r = &e->k->red[i];
        if (r->stage != s) continue;
        char idle[64];
        acc_init(r, idle, sizeof idle);
        const char *t = acc_type(r);
        if (e->L.map == OC_CUDA_MAP_WARP) {
            if (r->op == OC_OP_SUM) line(e, "acc%d = oc_wsum(acc%d);", i, i);
            else if (r->op == OC_OP_REDUCE_MAX) line(e, "acc%d = oc_wmax(acc%d);", i, i);
            else line(e, "oc_wargmax(acc%d, ai%d);", i, i);
        } else {
            if (r->op == OC_OP_SUM) line(e, "acc%d = oc_bsum(acc%d, oc_sm);", i, i);
            else if (r->op == OC_OP_REDUCE_MAX) line(e, "acc%d = oc_bmax(acc%d, (%s)%s, oc_sm);", i, i, t, idle);
            else line(e, "oc_bargmax(acc%d, ai%d, (%s)%s, oc_sm, oc_smi);", i, i, t, idle);
        }
    }
}

static void do_store(struct ce *e, const struct oc_kstore *s)
{
    struct ref v, d;
    ev(e, s->v, &v);
    if (e->failed) return;
    elem(e, s->slot, s->ix, &d);
    char val[512];
    conv(val, sizeof val, v.s, s->v->dtype, e->k->slot[s->slot].dtype);
    line(e, "%s = %s;", d.s, val);
}

/* ---------------------------------------------------------------- kernel bodies */

/* Declares the variables of the axes in mask from linear index `lin`
 * (row-major over those axes). */
static void decompose(struct ce *e, uint32_t mask, const char *lin)
{
    int64_t st[OC_MAX_RANK];
    strides_of(e->k, mask, st);
    int first = 1;
    char a[32], b[32];
    for (int d = 0; d < e->k->space.rank; d++) {
        if (!(mask & (1u << d))) continue;
        int64_t ext = e->k->space.dim[d];
        e->var_sc[d] = 0;
        e->vdecl[d][0] = 0;
        if (ext <= 1) {
            fmt_(e->var[d], sizeof e->var[d], "%s", ilit(e, a, sizeof a, 0));
            continue;
        }
        fmt_(e->var[d], sizeof e->var[d], "i%d", d);
        if (first && st[d] == 1) fmt_(e->vdecl[d], sizeof e->vdecl[d], "%s", lin);
        else if (first) fmt_(e->vdecl[d], sizeof e->vdecl[d], "%s / %s", lin, ilit(e, a, sizeof a, st[d]));
        else if (st[d] == 1) fmt_(e->vdecl[d], sizeof e->vdecl[d], "%s %% %s", lin, ilit(e, a, sizeof a, ext));
        else
            fmt_(e->vdecl[d], sizeof e->vdecl[d], "%s / %s %% %s", lin, ilit(e, a, sizeof a, st[d]),
                 ilit(e, b, sizeof b, ext));
        first = 0;
    }
}

static void stage_body(struct ce *e, int s)
{
    for (int i = 0; i < e->k->nred && !e->failed; i++)
        if (e->k->red[i].stage == s) red_step(e, i);
    for (int i = 0; i < e->k->nstore && !e->failed; i++)
        if (e->k->store[i].stage == s) do_store(e, &e->k->store[i]);
}

static void row_stores(struct ce *e)
{
    for (int i = 0; i < e->k->nstore && !e->failed; i++)
        if (e->k->store[i].stage < 0) do_store(e, &e->k->store[i]);
}

/* THREAD mapping: a grid-stride loop over rows, the stages' loops nested
 * sequentially in the thread as llvm-emit.c does. */
static void body_thread(struct ce *e, const char *rowvar, const char *from, const char *step)
{
    const struct oc_kernel *k = e->k;
    uint32_t outer = all_axes(k) & ~k->rmask;
    char n[32], head[256];
    fmt_(head, sizeof head, "for (%s %s = %s; %s < %s; %s += %s) ", e->it, rowvar, from, rowvar,
         ilit(e, n, sizeof n, e->L.rows), rowvar, step);
    open_block(e, head);
    decompose(e, outer, rowvar);
    int was_row = e->lin_row;
    if (k->rmask) e->lin_row = 1;
    for (int s = 0; s < k->nstage && !e->failed; s++) {
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_decl(e, i);
        int nl = 0;
        for (int d = 0; d < k->space.rank; d++) {
            if (!(k->rmask & (1u << d))) continue;
            if (k->space.dim[d] <= 1) {
                fmt_(e->var[d], sizeof e->var[d], "%s", ilit(e, n, sizeof n, 0));
                e->vdecl[d][0] = 0;
                continue;
            }
            fmt_(e->var[d], sizeof e->var[d], "i%d", d);
            e->vdecl[d][0] = 0;
            fmt_(head, sizeof head, "for (%s i%d = 0; i%d < %s; i%d++) ", e->it, d, d,
                 ilit(e, n, sizeof n, k->space.dim[d]), d);
            open_block(e, head);
            nl++;
        }
        if (!nl) open_block(e, "");
        stage_body(e, s);
        for (int l = 0; l < (nl ? nl : 1); l++) close_block(e, "");
    }
    row_stores(e);
    e->lin_row = was_row;
    close_block(e, "");
}

/* Whether value v, computed in a stage, reads an element that a row store
 * writes (a load at that store's very index), through its operands or
 * the values its indices are computed from. */
static int reads_row_elem(const struct oc_kernel *k, const struct oc_kval *v, unsigned char *seen);

static int ix_reads_row_elem(const struct oc_kernel *k, const struct oc_kix *x, unsigned char *seen)
{
    for (int t = 0; x && t < x->nterm; t++) {
        const struct oc_katom *a = x->atom[t];
        if (a->kind == OC_KA_VAL && reads_row_elem(k, a->v, seen)) return 1;
        if ((a->kind == OC_KA_DIV || a->kind == OC_KA_MOD) && ix_reads_row_elem(k, a->x, seen)) return 1;
    }
    return 0;
}

static int reads_row_elem(const struct oc_kernel *k, const struct oc_kval *v, unsigned char *seen)
{
    if (!v || seen[v->id]) return 0;
    seen[v->id] = 1;
    if (v->kind == OC_KV_LOAD)
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage < 0 && k->store[i].ix == v->ix) return 1;
    for (int a = 0; a < v->nargs && a < 3; a++)
        if (reads_row_elem(k, v->arg[a], seen)) return 1;
    return ix_reads_row_elem(k, v->ix, seen);
}

/* Whether the row stores of a group-mapped kernel must wait for the whole
 * group: a buffer may be read and written by one kernel when fusion writes
 * an assign in place (passes/fuse.c: the BN parameters' SGD update fused
 * into the BN backward kernel reads gamma[c] for every point of row c and
 * writes the new gamma[c] once per row). The kernel IR allows it when the
 * read is at the written element; a row store names that element with the
 * same interned index. Structural, so equal kernels still get equal text. */
static int row_store_after_group_reads(const struct oc_kernel *k)
{
    int any = 0;
    for (int i = 0; i < k->nstore; i++) any |= k->store[i].stage < 0;
    if (!any) return 0;
    unsigned char *seen = calloc((size_t)k->nval + 1, 1);
    if (!seen) return 1; /* the barrier is always correct */
    int r = 0;
    for (int i = 0; i < k->nred && !r; i++) r = reads_row_elem(k, k->red[i].x, seen);
    for (int i = 0; i < k->nstore && !r; i++)
        if (k->store[i].stage >= 0) r = reads_row_elem(k, k->store[i].v, seen);
    free(seen);
    return r;
}

/* WARP / BLOCK mapping: the group's threads stride the row's points. */
static void body_group(struct ce *e)
{
    const struct oc_kernel *k = e->k;
    uint32_t outer = all_axes(k) & ~k->rmask;
    char n[32], head[256];
    /* A single row (a reduction to one value, the final sum of a split
     * reduction) gets no row loop: its whole body would be invariant in
     * that loop, and NVVM hoists the strided loop's per-thread setup (the
     * first points' addresses of its unrolled prologue) out of it, to live
     * across the loop and its barriers; within the 32 registers ptxas
     * budgets for full occupancy of 256-thread blocks, that spilled (8
     * bytes on sm_80, MMCE's [16,16] pair sum). The first group takes the
     * row, as the loop would. */
    int one = e->L.rows == 1;
    if (e->L.map == OC_CUDA_MAP_WARP) {
        line(e, "const %s gid = ((%s)%s * blockDim.x + threadIdx.x) >> 5;", e->it, e->it, e->bid);
        if (!one) line(e, "const %s ngroup = ((%s)%s * blockDim.x) >> 5;", e->it, e->it, e->nblk);
        line(e, "const int gt = threadIdx.x & 31, gs = 32;");
    } else {
        line(e, "__shared__ double oc_sm[32];");
        if (k->nred) {
            int am = 0;
            for (int i = 0; i < k->nred; i++) am |= k->red[i].op == OC_OP_ARGMAX;
            if (am) line(e, "__shared__ int oc_smi[32];");
        }
        if (one) line(e, "const %s gid = %s;", e->it, e->bid);
        else line(e, "const %s gid = %s, ngroup = %s;", e->it, e->bid, e->nblk);
        line(e, "const int gt = threadIdx.x, gs = blockDim.x;");
    }
    if (one) {
        open_block(e, "if (gid == 0) ");
    } else {
        fmt_(head, sizeof head, "for (%s row = gid; row < %s; row += ngroup) ", e->it,
             ilit(e, n, sizeof n, e->L.rows));
        open_block(e, head);
    }
    decompose(e, outer, "row"); /* every outer axis has extent 1 when one */
    e->lin_row = !one;
    for (int s = 0; s < k->nstage && !e->failed; s++) {
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_decl(e, i);
        fmt_(head, sizeof head, "for (%s j = gt; j < %s; j += gs) ", e->it,
             ilit(e, n, sizeof n, e->L.inner));
        open_block(e, head);
        decompose(e, k->rmask, "j");
        e->lin_j = 1;
        stage_body(e, s);
        e->lin_j = 0;
        close_block(e, "");
        red_combine(e, s);
    }
    int any = 0;
    for (int i = 0; i < k->nstore; i++) any |= k->store[i].stage < 0;
    if (any) {
        /* every thread of the group has read the element (old value)
         * before the first one writes it; shuffles order no memory, and
         * a last stage without reductions has no barrier of its own */
        if (row_store_after_group_reads(k))
            line(e, "%s", e->L.map == OC_CUDA_MAP_WARP ? "__syncwarp();" : "__syncthreads();");
        open_block(e, "if (gt == 0) ");
        row_stores(e);
        close_block(e, "");
    }
    e->lin_row = 0;
    close_block(e, "");
}

/* Slots read and written at the point's own index: candidates for 16-byte
 * access in the 4-wide path. */
static int vec_slot(const struct oc_kernel *k, int s)
{
    for (int i = 0; i < k->nstore; i++)
        if (k->store[i].slot == s) return 1; /* elementwise stores are at the point's index */
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        if (v->kind == OC_KV_LOAD && v->slot == s && is_lin(k, v->ix, all_axes(k))) return 1;
    }
    return 0;
}

static const char *vtype(int dt)
{
    switch (dt) {
    case OC_F32: return "float4";
    case OC_F64: return "double2";
    case OC_I32: return "int4";
    default: return "uchar4";
    }
}

static const char *lane_of(int dt, int lane, char *buf, size_t n, int slot)
{
    static const char xyzw[4] = {'x', 'y', 'z', 'w'};
    if (dt == OC_F64) fmt_(buf, n, "L%d_%d.%c", slot, lane / 2, xyzw[lane % 2]);
    else fmt_(buf, n, "L%d.%c", slot, xyzw[lane]);
    return buf;
}

/* Elementwise: a 4-wide path over groups of 4 points with vector loads
 * and stores (when every such slot is 16-byte aligned), then the scalar
 * loop for the tail (or everything when misaligned). */
static void body_vector(struct ce *e)
{
    const struct oc_kernel *k = e->k;
    char n[32], head[256], t[64];
    int64_t nv = e->L.rows / VEC;
    line(e, "const %s nthr = (%s)%s * blockDim.x;", e->it, e->it, e->nblk);
    line(e, "const %s tid = (%s)%s * blockDim.x + threadIdx.x;", e->it, e->it, e->bid);
    /* the alignment test */
    char al[1024] = "";
    size_t p = 0;
    for (int s = 0; s < k->nslot; s++) {
        if (!vec_slot(k, s)) continue;
        p += (size_t)fmt_(al + p, sizeof al - p, "%s((oc_u64)s%d & %d)", p ? " | " : "", s,
                          k->slot[s].dtype == OC_U8 ? 3 : 15);
    }
    line(e, "%s p0 = 0;", e->it);
    open_block(e, p ? (fmt_(head, sizeof head, "if (!(%s)) ", al), head) : "");
    fmt_(head, sizeof head, "for (%s q = tid; q < %s; q += nthr) ", e->it, ilit(e, n, sizeof n, nv));
    open_block(e, head);
    for (int s = 0; s < k->nslot; s++) {
        if (!vec_slot(k, s) || k->slot[s].written) continue;
        int dt = k->slot[s].dtype;
        if (dt == OC_F64) {
            line(e, "const double2 L%d_0 = ((const double2 *)s%d)[2 * q];", s, s);
            line(e, "const double2 L%d_1 = ((const double2 *)s%d)[2 * q + 1];", s, s);
        } else {
            line(e, "const %s L%d = ((const %s *)s%d)[q];", vtype(dt), s, vtype(dt), s);
        }
    }
    for (int i = 0; i < k->nstore; i++)
        line(e, "%s o%d_0, o%d_1, o%d_2, o%d_3;", ctype(k->slot[k->store[i].slot].dtype), i, i, i, i);
    for (int lane = 0; lane < VEC && !e->failed; lane++) {
        open_block(e, "");
        fmt_(e->pname, sizeof e->pname, "(4 * q + %d)", lane);
        decompose(e, all_axes(k), e->pname);
        e->lin_p = 1;
        for (int i = 0; i < k->nval; i++) {
            const struct oc_kval *v = k->vals[i];
            if (v->kind != OC_KV_LOAD || !is_lin(k, v->ix, all_axes(k))) continue;
            if (k->slot[v->slot].written) continue;
            line(e, "const %s v%d = %s;", ctype(v->dtype), v->id, lane_of(v->dtype, lane, t, sizeof t, v->slot));
            e->vsc[v->id] = cur_scope(e);
        }
        for (int i = 0; i < k->nstore && !e->failed; i++) {
            const struct oc_kstore *s = &k->store[i];
            struct ref v;
            ev(e, s->v, &v);
            if (e->failed) break;
            char val[512];
            conv(val, sizeof val, v.s, s->v->dtype, k->slot[s->slot].dtype);
            line(e, "o%d_%d = %s;", i, lane, val);
        }
        e->lin_p = 0;
        fmt_(e->pname, sizeof e->pname, "p");
        close_block(e, "");
    }
    for (int i = 0; i < k->nstore; i++) {
        int s = k->store[i].slot, dt = k->slot[s].dtype;
        if (dt == OC_F64) {
            line(e, "((double2 *)s%d)[2 * q] = make_double2(o%d_0, o%d_1);", s, i, i);
            line(e, "((double2 *)s%d)[2 * q + 1] = make_double2(o%d_2, o%d_3);", s, i, i);
        } else {
            const char *mk = dt == OC_F32 ? "make_float4" : dt == OC_I32 ? "make_int4" : "make_uchar4";
            line(e, "((%s *)s%d)[q] = %s(o%d_0, o%d_1, o%d_2, o%d_3);", vtype(dt), s, mk, i, i, i, i);
        }
    }
    close_block(e, "");
    line(e, "p0 = %s;", ilit(e, n, sizeof n, nv * VEC));
    close_block(e, "");
    e->lin_p = 1;
    body_thread(e, "p", "p0 + tid", "nthr");
    e->lin_p = 0;
}

static void emit_header(struct ce *e, const char *name)
{
    const struct oc_kernel *k = e->k;
    char sh[128];
    oc_shape_str(&k->space, sh, sizeof sh);
    sb_put(e->o, "/* %s: space %s", name, sh);
    if (k->rmask) sb_put(e->o, " reducing 0x%x in %d stage(s)", k->rmask, k->nstage);
    sb_put(e->o, "; %s mapping, %lld row(s) x %lld point(s)%s%s */\n", oc_cuda_map_name(e->L.map),
           (long long)e->L.rows, (long long)e->L.inner, e->L.vector ? ", 4-wide" : "",
           e->L.index64 ? ", 64-bit indices" : "");
    sb_put(e->o, "extern \"C\" __global__ void __launch_bounds__(%d)\n%s(", OC_CUDA_BLOCK, name);
    for (int s = 0; s < k->nslot; s++) {
        const char *t = ctype(k->slot[s].dtype);
        if (k->slot[s].written) sb_put(e->o, "%s%s *s%d", s ? ", " : "", t, s);
        else sb_put(e->o, "%sconst %s *__restrict__ s%d", s ? ", " : "", t, s);
    }
    if (!k->nslot) sb_put(e->o, "void");
    sb_put(e->o, ")\n");
}

/* Sets up the emitter for loop kernel k (written to o). */
static enum oc_status ce_begin(struct ce *e, const struct oc_kernel *k, struct sb *o, struct oc_err *err)
{
    memset(e, 0, sizeof *e);
    e->k = k;
    e->o = o;
    e->err = err;
    e->bid = "blockIdx.x";
    e->nblk = "gridDim.x";
    oc_cuda_launch_of(k, &e->L);
    e->it = e->L.index64 ? "long long" : "int";
    fmt_(e->pname, sizeof e->pname, "p");
    e->vsc = calloc((size_t)k->nval + 1, sizeof *e->vsc);
    e->xsc = calloc((size_t)k->nix + 1, sizeof *e->xsc);
    if (!e->vsc || !e->xsc) {
        free(e->vsc);
        free(e->xsc);
        e->vsc = e->xsc = NULL;
        return oc_err_set(err, OC_ERR_NOMEM, "cuda codegen: out of memory");
    }
    /* the reduced axes are the trailing ones: flin = row * inner + j */
    e->trailing = 1;
    for (int d = 0, seen = 0; d < k->space.rank; d++) {
        int red = (k->rmask >> d) & 1;
        if (seen && !red && k->space.dim[d] > 1) e->trailing = 0;
        seen |= red;
    }
    return OC_OK;
}

/* The function body of a loop kernel, braces included. */
static void emit_body(struct ce *e)
{
    const struct oc_kernel *k = e->k;
    open_block(e, "");
    if (e->L.vector) {
        body_vector(e);
    } else if (e->L.map == OC_CUDA_MAP_THREAD) {
        char from[96];
        line(e, "const %s nthr = (%s)%s * blockDim.x;", e->it, e->it, e->nblk);
        e->lin_p = !k->rmask;
        fmt_(from, sizeof from, "%s%s * blockDim.x + threadIdx.x", e->L.index64 ? "(long long)" : "", e->bid);
        body_thread(e, k->rmask ? "row" : "p", from, "nthr");
        e->lin_p = 0;
    } else {
        body_group(e);
    }
    close_block(e, "");
}

/* Its result: the text, or the failure. */
static enum oc_status ce_end(struct ce *e, struct sb *o, char **out)
{
    free(e->vsc);
    free(e->xsc);
    e->vsc = e->xsc = NULL;
    if (e->failed) {
        free(o->p);
        return e->err->code ? e->err->code : OC_ERR_UNSUPPORTED;
    }
    if (o->oom) {
        free(o->p);
        return oc_err_set(e->err, OC_ERR_NOMEM, "cuda codegen: out of memory");
    }
    *out = o->p;
    return OC_OK;
}

/* ---------------------------------------------------------------- grouped kernels */

/* A group member's share of the group's blocks: enough to cover its work
 * in one grid-stride step, at most GROUP_MEMBER_BLOCKS (beyond that its
 * own grid-stride loop takes the rest). */
#define GROUP_MEMBER_BLOCKS 1024

static int64_t member_blocks(const struct oc_kernel *m)
{
    struct oc_cuda_launch l;
    oc_cuda_launch_of(m, &l);
    int64_t upb = l.units_per_block > 0 ? l.units_per_block : 1;
    int64_t nb = (l.units + upb - 1) / upb;
    return nb < 1 ? 1 : nb > GROUP_MEMBER_BLOCKS ? GROUP_MEMBER_BLOCKS : nb;
}

static void group_launch(const struct oc_kernel *k, struct oc_cuda_launch *l)
{
    int64_t blocks = 0;
    for (int i = 0; i < k->ngroup; i++) {
        struct oc_cuda_launch m;
        oc_cuda_launch_of(k->group[i], &m);
        l->rows += m.rows;
        l->index64 |= m.index64;
        blocks += member_blocks(k->group[i]);
    }
    l->map = OC_CUDA_MAP_THREAD;
    l->inner = 1;
    l->units = blocks * l->block;
    l->units_per_block = l->block;
}

/* A grouped kernel (passes/kir.h): each member is a static device
 * function, its own kernel's body with the block index and count
 * replaced by its share of the group's virtual blocks; the __global__
 * function strides over the virtual blocks (so any grid is correct) and
 * hands each to its member. Members are elementwise (THREAD mapping, no
 * barriers), so a block running members' code divergently is fine. */
static enum oc_status emit_group(const struct oc_kernel *k, char **out, struct oc_err *err)
{
    struct sb o = {0};
    char name[64];
    oc_cuda_kernel_name(k, name, sizeof name);
    int64_t *nb = calloc((size_t)k->ngroup + 1, sizeof *nb);
    if (!nb) return oc_err_set(err, OC_ERR_NOMEM, "cuda codegen: out of memory");
    int64_t total = 0;
    for (int i = 0; i < k->ngroup; i++) total += nb[i] = member_blocks(k->group[i]);
    for (int i = 0; i < k->ngroup; i++) {
        const struct oc_kernel *m = k->group[i];
        struct ce e;
        char *text = NULL;
        enum oc_status st = ce_begin(&e, m, &o, err);
        if (st) {
            free(nb);
            free(o.p);
            return st;
        }
        if (m->rmask || e.L.map != OC_CUDA_MAP_THREAD) {
            fail(&e, "group member %d is not elementwise", i);
            free(nb);
            return ce_end(&e, &o, &text);
        }
        e.bid = "oc_bid";
        e.nblk = "oc_nb";
        char sh[128];
        oc_shape_str(&m->space, sh, sizeof sh);
        sb_put(&o, "/* %s member %d (%s): space %s; thread mapping, %lld point(s)%s%s, %lld block(s) */\n",
               name, i, m->name, sh, (long long)e.L.rows, e.L.vector ? ", 4-wide" : "",
               e.L.index64 ? ", 64-bit indices" : "", (long long)nb[i]);
        sb_put(&o, "OC_D void %s_m%d(", name, i);
        for (int s = 0; s < m->nslot; s++) {
            const char *t = ctype(m->slot[s].dtype);
            if (m->slot[s].written) sb_put(&o, "%s *s%d, ", t, s);
            else sb_put(&o, "const %s *__restrict__ s%d, ", t, s);
        }
        sb_put(&o, "const int oc_bid, const int oc_nb)\n");
        emit_body(&e);
        free(e.vsc);
        free(e.xsc);
        if (e.failed || o.oom) {
            free(nb);
            e.vsc = e.xsc = NULL;
            return ce_end(&e, &o, &text);
        }
    }
    sb_put(&o, "/* %s: %d elementwise kernels in one launch, %lld virtual block(s) of %d threads */\n",
           name, k->ngroup, (long long)total, OC_CUDA_BLOCK);
    sb_put(&o, "extern \"C\" __global__ void __launch_bounds__(%d)\n%s(", OC_CUDA_BLOCK, name);
    for (int s = 0; s < k->nslot; s++) {
        const char *t = ctype(k->slot[s].dtype);
        if (k->slot[s].written) sb_put(&o, "%s%s *s%d", s ? ", " : "", t, s);
        else sb_put(&o, "%sconst %s *__restrict__ s%d", s ? ", " : "", t, s);
    }
    sb_put(&o, ")\n{\n");
    sb_put(&o, "    for (int vb = blockIdx.x; vb < %lld; vb += gridDim.x) {\n", (long long)total);
    int64_t off = 0;
    for (int i = 0; i < k->ngroup; i++) {
        const struct oc_kernel *m = k->group[i];
        if (i == k->ngroup - 1) sb_put(&o, i ? "        else " : "        ");
        else sb_put(&o, "        %sif (vb < %lld) ", i ? "else " : "", (long long)(off + nb[i]));
        sb_put(&o, "%s_m%d(", name, i);
        for (int s = 0; s < m->nslot; s++) sb_put(&o, "s%d, ", k->gslot[i][s]);
        if (off) sb_put(&o, "vb - %lld, %lld);\n", (long long)off, (long long)nb[i]);
        else sb_put(&o, "vb, %lld);\n", (long long)nb[i]);
        off += nb[i];
    }
    sb_put(&o, "    }\n}\n");
    free(nb);
    if (o.oom) {
        free(o.p);
        return oc_err_set(err, OC_ERR_NOMEM, "cuda codegen: out of memory");
    }
    *out = o.p;
    return OC_OK;
}

enum oc_status oc_cuda_emit_kernel(const struct oc_kernel *k, char **out, struct oc_err *err)
{
    *out = NULL;
    if (k->kind != OC_K_LOOP)
        return oc_err_set(err, OC_ERR_UNSUPPORTED,
                          "cuda codegen: kernel %s is a library call (%s), not generated", k->name,
                          oc_op_name(k->lib->op));
    if (oc_kir_is_group(k)) return emit_group(k, out, err);
    struct sb o = {0};
    struct ce e;
    enum oc_status st = ce_begin(&e, k, &o, err);
    if (st) return st;
    char name[64];
    oc_cuda_kernel_name(k, name, sizeof name);
    emit_header(&e, name);
    emit_body(&e);
    return ce_end(&e, &o, out);
}

enum oc_status oc_cuda_emit_program(struct oc_kernel *const *ks, int n, char **out, int *nemitted,
                                    struct oc_err *err)
{
    *out = NULL;
    if (nemitted) *nemitted = 0;
    struct sb o = {0};
    sb_put(&o, "/* generated by oodc: kernel IR -> CUDA C (codegen/cuda-emit.c) */\n");
    sb_put(&o, "%s", prelude);
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (ks[i]->kind != OC_K_LOOP) continue;
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = ks[j]->kind == OC_K_LOOP && ks[j]->hash == ks[i]->hash;
        if (dup) continue;
        char *src = NULL;
        enum oc_status st = oc_cuda_emit_kernel(ks[i], &src, err);
        if (st) {
            free(o.p);
            return st;
        }
        sb_put(&o, "\n%s", src);
        free(src);
        count++;
    }
    if (o.oom) {
        free(o.p);
        return oc_err_set(err, OC_ERR_NOMEM, "cuda codegen: out of memory");
    }
    *out = o.p;
    if (nemitted) *nemitted = count;
    return OC_OK;
}
