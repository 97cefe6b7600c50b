/* interp.c - the reference interpreter: naive loops over every primitive.
 *
 * It is the oracle of every other test (autodiff, simplify, fusion, the LLVM
 * and CUDA backends), never a production path, so it favours being plainly
 * right over being fast. Data flow: oc_interp_set copies bound values in;
 * oc_interp_run evaluates the nodes in graph order, then applies the assigns;
 * the values are read back as oc_bufs.
 *
 * Numerics (the contract the backends are compared against):
 * - Every tensor is held as a double array; i32/u8 values are exact in it.
 * - f32 mode (f64 == 0): each op computes in double and the result of every
 *   f32 node is rounded through (float), so f32 arithmetic is modelled op by
 *   op. Reductions, matmul and conv accumulate in double and round once.
 * - f64 mode: every float node (f32 or f64) is kept in double and reported
 *   as OC_F64; casts between float types are then identities.
 * - i32 add/sub/mul/neg/abs/sum wrap modulo 2^32 (two's complement, as the
 *   hardware does); an i32 sum is exact while |sum| < 2^53.
 * - cast to i32/u8 truncates toward zero, then clamps to the type's range
 *   ([-2^31, 2^31-1] / [0, 255]); NaN becomes 0. Any other value stored
 *   into an integer node (const, pad_value) goes through the same rule.
 * - NaN: relu, max, min, reduce_max propagate it; argmax treats NaN as the
 *   maximum (first NaN wins); sign(NaN) = NaN; select(NaN, a, b) = a
 *   (the condition is "!= 0"). Comparisons follow IEEE (only ne is true).
 * - one_hot with an out-of-range index gives an all-zero row; gather with
 *   one is a run-time error naming the node, position and index.
 *
 * State: inputs, params and state keep their bound value across runs.
 * Unbound params/state are initialized by oc_init_fill(node, seed) at the
 * first run that needs them. Assigns take effect after all nodes of a run
 * are evaluated, in node order (the last assign to a target wins); the
 * param node itself reads the value from the start of the run.
 */
#include "ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct oc_interp {
    const struct oc_graph *g;
    int f64;
    int cap;              /* slots allocated in the per-node arrays */
    int nvalues;          /* nodes evaluated by the last successful run (0: none) */
    int verified;         /* node count at the last successful verification */
    double **val;         /* per node: values of the current run */
    int64_t *len;         /* per node: elements allocated in val */
    struct oc_buf *out;   /* per node: val in the reported dtype */
    double **bound;       /* per input/param/state: the persistent value or NULL */
    struct oc_buf *named; /* per input/param/state: bound in the reported dtype */
};

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

/* ---------------------------------------------------------------- conversions */

static enum oc_dtype reported(const struct oc_interp *it, const struct oc_node *n)
{
    return it->f64 && oc_dtype_is_float(n->dtype) ? OC_F64 : n->dtype;
}

/* The value an element of dtype dt holds when x is stored into it. */
static double to_dtype(const struct oc_interp *it, enum oc_dtype dt, double x)
{
    switch (dt) {
    case OC_F32: return it->f64 ? x : (double)(float)x;
    case OC_F64: return x;
    case OC_I32:
        if (isnan(x)) return 0;
        x = trunc(x);
        return x < -2147483648.0 ? -2147483648.0 : x > 2147483647.0 ? 2147483647.0 : x;
    case OC_U8:
        if (isnan(x)) return 0;
        x = trunc(x);
        return x < 0 ? 0 : x > 255 ? 255 : x;
    default: OC_ASSERT(0);
    }
}

/* Two's-complement wrap of an integer result into i32. */
static double wrap32(int64_t v)
{
    uint32_t u = (uint32_t)(uint64_t)v;
    return u >= 0x80000000u ? (double)u - 4294967296.0 : (double)u;
}

static int buf_to_doubles(const struct oc_buf *b, double **out)
{
    int64_t n = oc_shape_numel(&b->shape);
    double *d = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!d) return -1;
    for (int64_t i = 0; i < n; i++) d[i] = oc_buf_get(b, i);
    *out = d;
    return 0;
}

/* (Re)fills b with the values v of node n in the reported dtype. */
static int fill_buf(const struct oc_interp *it, const struct oc_node *n, const double *v,
                    struct oc_buf *b)
{
    enum oc_dtype dt = reported(it, n);
    if (!b->data || b->dtype != dt || !oc_shape_eq(&b->shape, &n->shape)) {
        oc_buf_free(b);
        if (oc_buf_alloc(b, dt, &n->shape)) return -1;
    }
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++) oc_buf_set(b, i, v[i]);
    return 0;
}

/* ---------------------------------------------------------------- lifetime */

static int ensure(struct oc_interp *it)
{
    int need = it->g->nnodes;
    if (need <= it->cap) return 0;
    int nc = need + 16;
#define GROW(field)                                                                                \
    do {                                                                                           \
        void *p = realloc(it->field, sizeof *it->field * (size_t)nc);                              \
        if (!p) return -1;                                                                         \
        it->field = p;                                                                             \
        memset(it->field + it->cap, 0, sizeof *it->field * (size_t)(nc - it->cap));                \
    } while (0)
    GROW(val);
    GROW(len);
    GROW(out);
    GROW(bound);
    GROW(named);
#undef GROW
    it->cap = nc;
    return 0;
}

struct oc_interp *oc_interp_new(const struct oc_graph *g, int f64)
{
    if (!g) return NULL;
    struct oc_interp *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->g = g;
    it->f64 = f64 != 0;
    if (ensure(it)) {
        oc_interp_free(it);
        return NULL;
    }
    return it;
}

void oc_interp_free(struct oc_interp *it)
{
    if (!it) return;
    for (int i = 0; i < it->cap; i++) {
        free(it->val[i]);
        free(it->bound[i]);
        oc_buf_free(&it->out[i]);
        oc_buf_free(&it->named[i]);
    }
    free(it->val);
    free(it->len);
    free(it->out);
    free(it->bound);
    free(it->named);
    free(it);
}

static int is_named(const struct oc_node *n)
{
    return n->op == OC_OP_INPUT || n->op == OC_OP_PARAM || n->op == OC_OP_STATE;
}

/* Takes ownership of v (numel doubles already in the node's precision). */
static enum oc_status set_bound(struct oc_interp *it, const struct oc_node *n, double *v,
                                struct oc_err *err)
{
    free(it->bound[n->id]);
    it->bound[n->id] = v;
    if (fill_buf(it, n, v, &it->named[n->id]))
        return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory binding \"%s\"",
                          n->attrs.name);
    return OC_OK;
}

enum oc_status oc_interp_set(struct oc_interp *it, const char *name, const struct oc_buf *v,
                             struct oc_err *err)
{
    const struct oc_graph *g = it->g;
    int id = oc_graph_find_named(g, name);
    if (id < 0)
        return oc_err_set(err, OC_ERR_INVALID,
                          "interp: graph has no input, param or state named \"%s\"",
                          name ? name : "(null)");
    const struct oc_node *n = g->nodes[id];
    int ok_dt = oc_dtype_is_float(n->dtype) ? oc_dtype_is_float(v->dtype) : v->dtype == n->dtype;
    if (!ok_dt || !oc_shape_eq(&n->shape, &v->shape))
        return oc_err_set(err, ok_dt ? OC_ERR_SHAPE : OC_ERR_DTYPE,
                          "interp: %s \"%s\" is %s%s but the value bound to it is %s%s",
                          oc_op_name(n->op), name, oc_dtype_name(n->dtype), SHP(n->shape),
                          oc_dtype_name(v->dtype), SHP(v->shape));
    if (ensure(it)) return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory");
    double *d;
    if (buf_to_doubles(v, &d)) return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory");
    int64_t cnt = oc_shape_numel(&n->shape);
    for (int64_t i = 0; i < cnt; i++) d[i] = to_dtype(it, n->dtype, d[i]);
    return set_bound(it, n, d, err);
}

/* ---------------------------------------------------------------- index helpers */

static void unravel(int64_t flat, const struct oc_shape *s, int64_t *idx)
{
    for (int d = s->rank - 1; d >= 0; d--) {
        int64_t dim = s->dim[d];
        idx[d] = dim ? flat % dim : 0;
        flat = dim ? flat / dim : 0;
    }
}

static int64_t ravel(const int64_t *idx, const struct oc_shape *s)
{
    int64_t off = 0;
    for (int d = 0; d < s->rank; d++) off = off * s->dim[d] + idx[d];
    return off;
}

/* The output position of input index idx in a reduction over axes. */
static int64_t reduced_pos(const int64_t *idx, const struct oc_shape *in, uint32_t axes,
                           int keepdims, const struct oc_shape *out)
{
    int64_t off = 0;
    int j = 0;
    for (int d = 0; d < in->rank; d++) {
        if (axes & (1u << d)) {
            if (keepdims) off = off * out->dim[j++]; /* index 0 in a size-1 dim */
        } else {
            off = off * out->dim[j++] + idx[d];
        }
    }
    return off;
}

/* ---------------------------------------------------------------- elementwise */

static double unary(enum oc_op op, double x, int isint)
{
    if (isint) {
        int64_t v = (int64_t)x;
        switch (op) {
        case OC_OP_NEG: return wrap32(-v);
        case OC_OP_ABS: return wrap32(v < 0 ? -v : v);
        case OC_OP_SIGN: return (double)((v > 0) - (v < 0));
        default: return x; /* stop_gradient */
        }
    }
    switch (op) {
    case OC_OP_NEG: return -x;
    case OC_OP_EXP: return exp(x);
    case OC_OP_LOG: return log(x);
    case OC_OP_SQRT: return sqrt(x);
    case OC_OP_RSQRT: return 1.0 / sqrt(x);
    case OC_OP_RECIP: return 1.0 / x;
    case OC_OP_ABS: return fabs(x);
    case OC_OP_SIGN: return isnan(x) ? x : (double)((x > 0) - (x < 0));
    case OC_OP_RELU: return isnan(x) ? x : x > 0 ? x : 0.0;
    case OC_OP_SIGMOID:
        if (x >= 0) return 1.0 / (1.0 + exp(-x));
        return exp(x) / (1.0 + exp(x));
    case OC_OP_TANH: return tanh(x);
    case OC_OP_SOFTPLUS: return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
    case OC_OP_LOG1P: return log1p(x);
    case OC_OP_STOP_GRADIENT: return x;
    default: OC_ASSERT(0);
    }
}

static double binary(enum oc_op op, double a, double b, int isint)
{
    switch (op) {
    case OC_OP_ADD: return isint ? wrap32((int64_t)a + (int64_t)b) : a + b;
    case OC_OP_SUB: return isint ? wrap32((int64_t)a - (int64_t)b) : a - b;
    case OC_OP_MUL: return isint ? wrap32((int64_t)a * (int64_t)b) : a * b;
    case OC_OP_DIV: return a / b;
    case OC_OP_POW: return pow(a, b);
    case OC_OP_MAX: return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
    case OC_OP_MIN: return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;
    case OC_OP_LT: return a < b;
    case OC_OP_LE: return a <= b;
    case OC_OP_EQ: return a == b;
    case OC_OP_NE: return a != b;
    case OC_OP_GE: return a >= b;
    case OC_OP_GT: return a > b;
    default: OC_ASSERT(0);
    }
}

/* ---------------------------------------------------------------- contractions */

/* One loop nest for conv2d and its two adjoints: every (output pixel, tap)
 * pair that reads an in-bounds input pixel contributes x*w to y (forward),
 * dy*w to dx (grad_input) or x*dy to dw (grad_weight). Sharing the loop
 * makes the adjoint identities hold by construction of the index maps. */
static void conv_nest(enum oc_op op, const struct oc_shape *xs, const struct oc_shape *ws,
                      const struct oc_shape *ys, const int *stride, const int *pad,
                      const double *x, const double *w, const double *y, double *out)
{
    int64_t N = xs->dim[0], C = xs->dim[1], H = xs->dim[2], W = xs->dim[3];
    int64_t O = ws->dim[0], KH = ws->dim[2], KW = ws->dim[3];
    int64_t OH = ys->dim[2], OW = ys->dim[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t yi = ((n * O + o) * OH + oh) * OW + ow;
                    double acc = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t kh = 0; kh < KH; kh++) {
                            int64_t ih = oh * stride[0] - pad[0] + kh;
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t iw = ow * stride[1] - pad[1] + kw;
                                if (iw < 0 || iw >= W) continue;
                                int64_t xi = ((n * C + c) * H + ih) * W + iw;
                                int64_t wi = ((o * C + c) * KH + kh) * KW + kw;
                                if (op == OC_OP_CONV2D)
                                    acc += x[xi] * w[wi];
                                else if (op == OC_OP_CONV2D_GRAD_INPUT)
                                    out[xi] += y[yi] * w[wi];
                                else
                                    out[wi] += x[xi] * y[yi];
                            }
                        }
                    if (op == OC_OP_CONV2D) out[yi] = acc;
                }
}

static void matmul(const struct oc_node *n, const struct oc_shape *as, const struct oc_shape *bs,
                   const double *A, const double *B, double *Y)
{
    int r = as->rank;
    int64_t M = n->shape.dim[r - 2], Nn = n->shape.dim[r - 1];
    int64_t K = n->attrs.trans_a ? as->dim[r - 2] : as->dim[r - 1];
    int64_t batch = 1;
    for (int d = 0; d < r - 2; d++) batch *= as->dim[d];
    int64_t asz = as->dim[r - 2] * as->dim[r - 1], bsz = bs->dim[r - 2] * bs->dim[r - 1];
    for (int64_t b = 0; b < batch; b++) {
        const double *a = A + b * asz, *bb = B + b * bsz;
        double *y = Y + b * M * Nn;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < Nn; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    double av = n->attrs.trans_a ? a[k * M + i] : a[i * K + k];
                    double bv = n->attrs.trans_b ? bb[j * K + k] : bb[k * Nn + j];
                    acc += av * bv;
                }
                y[i * Nn + j] = acc;
            }
    }
}

/* ---------------------------------------------------------------- evaluation */

static enum oc_status eval(struct oc_interp *it, const struct oc_node *n, struct oc_err *err)
{
    const struct oc_graph *g = it->g;
    const struct oc_attrs *at = &n->attrs;
    double *Y = it->val[n->id];
    int64_t cnt = oc_shape_numel(&n->shape);
    const struct oc_node *in0 = n->ninputs > 0 ? g->nodes[n->inputs[0]] : NULL;
    const struct oc_node *in1 = n->ninputs > 1 ? g->nodes[n->inputs[1]] : NULL;
    const double *A = in0 ? it->val[in0->id] : NULL;
    const double *B = in1 ? it->val[in1->id] : NULL;
    int64_t idx[OC_MAX_RANK + 1], st[OC_MAX_RANK];

    switch (n->op) {
    case OC_OP_INPUT:
    case OC_OP_PARAM:
    case OC_OP_STATE:
        memcpy(Y, it->bound[n->id], sizeof(double) * (size_t)cnt);
        break;
    case OC_OP_CONST:
        for (int64_t i = 0; i < cnt; i++) Y[i] = at->data ? at->data[i] : at->value;
        break;
    case OC_OP_RNG_NORMAL:
    case OC_OP_RNG_UNIFORM: {
        uint32_t c = (uint32_t)(int32_t)A[0];
        for (int64_t i = 0; i < cnt; i++)
            Y[i] = n->op == OC_OP_RNG_NORMAL ? oc_rng_normal_at(at->seed, c, (uint64_t)i)
                                             : oc_rng_uniform_at(at->seed, c, (uint64_t)i);
        break;
    }
    case OC_OP_NEG: case OC_OP_EXP: case OC_OP_LOG: case OC_OP_SQRT: case OC_OP_RSQRT:
    case OC_OP_RECIP: case OC_OP_ABS: case OC_OP_SIGN: case OC_OP_RELU: case OC_OP_SIGMOID:
    case OC_OP_TANH: case OC_OP_SOFTPLUS: case OC_OP_LOG1P: case OC_OP_STOP_GRADIENT: {
        int isint = !oc_dtype_is_float(n->dtype);
        for (int64_t i = 0; i < cnt; i++) Y[i] = unary(n->op, A[i], isint);
        break;
    }
    case OC_OP_ADD: case OC_OP_SUB: case OC_OP_MUL: case OC_OP_DIV: case OC_OP_POW:
    case OC_OP_MAX: case OC_OP_MIN: case OC_OP_LT: case OC_OP_LE: case OC_OP_EQ: case OC_OP_NE:
    case OC_OP_GE: case OC_OP_GT: {
        int isint = !oc_dtype_is_float(n->dtype);
        for (int64_t i = 0; i < cnt; i++) Y[i] = binary(n->op, A[i], B[i], isint);
        break;
    }
    case OC_OP_SELECT: {
        const double *C = it->val[n->inputs[2]];
        for (int64_t i = 0; i < cnt; i++) Y[i] = A[i] != 0 ? B[i] : C[i];
        break;
    }
    case OC_OP_CAST:
    case OC_OP_RESHAPE:
    case OC_OP_ASSIGN:
        /* cast: the conversion is the final to_dtype below */
        memcpy(Y, n->op == OC_OP_ASSIGN ? B : A, sizeof(double) * (size_t)cnt);
        break;
    case OC_OP_PERMUTE:
        oc_shape_strides(&in0->shape, st);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, &n->shape, idx);
            int64_t off = 0;
            for (int d = 0; d < n->shape.rank; d++) off += idx[d] * st[at->perm[d]];
            Y[i] = A[off];
        }
        break;
    case OC_OP_BROADCAST: {
        int lead = n->shape.rank - in0->shape.rank;
        oc_shape_strides(&in0->shape, st);
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, &n->shape, idx);
            int64_t off = 0;
            for (int d = 0; d < in0->shape.rank; d++)
                off += (in0->shape.dim[d] == 1 ? 0 : idx[d + lead]) * st[d];
            Y[i] = A[off];
        }
        break;
    }
    case OC_OP_SLICE:
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, &n->shape, idx);
            for (int d = 0; d < n->shape.rank; d++) idx[d] = at->start[d] + idx[d] * at->step[d];
            Y[i] = A[ravel(idx, &in0->shape)];
        }
        break;
    case OC_OP_PAD:
        for (int64_t i = 0; i < cnt; i++) {
            unravel(i, &n->shape, idx);
            int inside = 1;
            for (int d = 0; d < n->shape.rank; d++) {
                idx[d] -= at->lo[d];
                if (idx[d] < 0 || idx[d] >= in0->shape.dim[d]) inside = 0;
            }
            Y[i] = inside ? A[ravel(idx, &in0->shape)] : at->pad_value;
        }
        break;
    case OC_OP_CONCAT: {
        int64_t base = 0;
        for (int k = 0; k < n->ninputs; k++) {
            const struct oc_node *src = g->nodes[n->inputs[k]];
            const double *S = it->val[src->id];
            int64_t m = oc_shape_numel(&src->shape);
            for (int64_t i = 0; i < m; i++) {
                unravel(i, &src->shape, idx);
                idx[at->axis] += base;
                Y[ravel(idx, &n->shape)] = S[i];
            }
            base += src->shape.dim[at->axis];
        }
        break;
    }
    case OC_OP_SUM:
    case OC_OP_REDUCE_MAX:
    case OC_OP_ARGMAX: {
        uint32_t axes = n->op == OC_OP_ARGMAX ? 1u << at->axis : at->axes;
        int64_t m = oc_shape_numel(&in0->shape);
        double *best = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
        unsigned char *have = calloc((size_t)(cnt ? cnt : 1), 1);
        if (!best || !have) {
            free(best);
            free(have);
            return oc_err_set(err, OC_ERR_NOMEM, "node %%%d (%s): out of memory", n->id,
                              oc_op_name(n->op));
        }
        for (int64_t i = 0; i < cnt; i++) Y[i] = 0;
        /* Row-major order visits each output's elements by increasing index
         * along the reduced axes, so a strict ">" keeps the first maximum. */
        for (int64_t i = 0; i < m; i++) {
            unravel(i, &in0->shape, idx);
            int64_t o = reduced_pos(idx, &in0->shape, axes, at->keepdims, &n->shape);
            double x = A[i];
            if (n->op == OC_OP_SUM) {
                Y[o] += x;
            } else if (!have[o] || (isnan(x) && !isnan(best[o])) || x > best[o]) {
                have[o] = 1;
                best[o] = x;
                Y[o] = n->op == OC_OP_ARGMAX ? (double)idx[at->axis] : x;
            }
        }
        if (n->op == OC_OP_SUM && !oc_dtype_is_float(n->dtype))
            for (int64_t i = 0; i < cnt; i++) Y[i] = wrap32((int64_t)Y[i]);
        free(best);
        free(have);
        break;
    }
    case OC_OP_MATMUL:
        matmul(n, &in0->shape, &in1->shape, A, B, Y);
        break;
    case OC_OP_CONV2D:
    case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT: {
        const struct oc_shape *xs, *ws, *ys;
        const double *x = NULL, *w = NULL, *y = NULL;
        if (n->op == OC_OP_CONV2D) {
            xs = &in0->shape, ws = &in1->shape, ys = &n->shape, x = A, w = B;
        } else if (n->op == OC_OP_CONV2D_GRAD_INPUT) {
            ys = &in0->shape, ws = &in1->shape, xs = &n->shape, y = A, w = B;
        } else {
            xs = &in0->shape, ys = &in1->shape, ws = &n->shape, x = A, y = B;
        }
        for (int64_t i = 0; i < cnt; i++) Y[i] = 0;
        conv_nest(n->op, xs, ws, ys, at->stride, at->padding, x, w, y, Y);
        break;
    }
    case OC_OP_ONE_HOT: {
        int64_t D = at->depth, m = oc_shape_numel(&in0->shape);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < D; j++) Y[i * D + j] = A[i] == (double)j;
        break;
    }
    case OC_OP_GATHER: {
        int ax = at->axis;
        int64_t dim = in0->shape.dim[ax];
        for (int64_t i = 0; i < cnt; i++) {
            double k = B[i];
            if (!(k >= 0 && k < (double)dim)) {
                unravel(i, &n->shape, idx);
                char pos[128];
                size_t p = 0;
                pos[p++] = '[';
                for (int d = 0; d < n->shape.rank && p < 100; d++)
                    p += (size_t)snprintf(pos + p, sizeof pos - p, d ? ",%lld" : "%lld",
                                          (long long)idx[d]);
                snprintf(pos + p, sizeof pos - p, "]");
                return oc_err_set(err, OC_ERR_INVALID,
                                  "node %%%d (gather): index %.0f at position %s is out of range "
                                  "[0, %lld) for axis %d of %s",
                                  n->id, k, pos, (long long)dim, ax, SHP(in0->shape));
            }
            unravel(i, &n->shape, idx);
            for (int d = n->shape.rank; d > ax; d--) idx[d] = idx[d - 1];
            idx[ax] = (int64_t)k;
            Y[i] = A[ravel(idx, &in0->shape)];
        }
        break;
    }
    case OC_OP_COUNT:
        OC_ASSERT(0);
    }
    for (int64_t i = 0; i < cnt; i++) Y[i] = to_dtype(it, n->dtype, Y[i]);
    return OC_OK;
}

int oc_interp_supports(enum oc_op op)
{
    /* Must list exactly the cases of eval(); the coverage test walks ops.def. */
    switch (op) {
#define OC_OP(e, s, ar, fc, fl) case OC_OP_##e:
#include "ops.def"
#undef OC_OP
        return 1;
    case OC_OP_COUNT: break;
    }
    return 0;
}

enum oc_status oc_interp_run(struct oc_interp *it, uint64_t seed, struct oc_err *err)
{
    const struct oc_graph *g = it->g;
    it->nvalues = 0;
    if (oc_graph_status(g))
        return oc_err_set(err, g->err.code, "interp: the graph failed to build: %s", g->err.msg);
    if (ensure(it)) return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory");
    if (it->verified != g->nnodes) {
        struct oc_err e = {0};
        if (oc_graph_verify(g, &e))
            return oc_err_set(err, e.code, "interp: invalid graph: %s", e.msg);
        it->verified = g->nnodes;
    }

    /* Sources first: a missing input fails the run before anything changes. */
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op == OC_OP_INPUT && !it->bound[i])
            return oc_err_set(err, OC_ERR_INVALID,
                              "interp: input \"%s\" (node %%%d, %s%s) is not bound", n->attrs.name,
                              i, oc_dtype_name(n->dtype), SHP(n->shape));
    }
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if ((n->op != OC_OP_PARAM && n->op != OC_OP_STATE) || it->bound[i]) continue;
        struct oc_buf b;
        if (oc_init_fill(n, seed, &b, err)) return err->code;
        double *d;
        int bad = buf_to_doubles(&b, &d);
        oc_buf_free(&b);
        if (bad) return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory");
        int64_t cnt = oc_shape_numel(&n->shape);
        for (int64_t k = 0; k < cnt; k++) d[k] = to_dtype(it, n->dtype, d[k]);
        if (set_bound(it, n, d, err)) return err->code;
    }

    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        int64_t cnt = oc_shape_numel(&n->shape);
        if (!it->val[i] || it->len[i] != cnt) {
            free(it->val[i]);
            it->val[i] = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
            it->len[i] = cnt;
            if (!it->val[i])
                return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory for node %%%d", i);
        }
        if (eval(it, n, err)) return err->code;
    }

    /* End of step: assigns update the persistent values, in node order. */
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op != OC_OP_ASSIGN) continue;
        const struct oc_node *t = g->nodes[n->inputs[0]];
        int64_t cnt = oc_shape_numel(&n->shape);
        memcpy(it->bound[t->id], it->val[i], sizeof(double) * (size_t)cnt);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (fill_buf(it, n, it->val[i], &it->out[i]) ||
            (is_named(n) && fill_buf(it, n, it->bound[i], &it->named[i])))
            return oc_err_set(err, OC_ERR_NOMEM, "interp: out of memory");
    }
    it->nvalues = g->nnodes;
    return OC_OK;
}

/* ---------------------------------------------------------------- results */

const struct oc_buf *oc_interp_value(const struct oc_interp *it, int node)
{
    if (!it || node < 0 || node >= it->nvalues) return NULL;
    return &it->out[node];
}

const struct oc_buf *oc_interp_output(const struct oc_interp *it, const char *name)
{
    if (!it || !name) return NULL;
    int k = oc_graph_find_output(it->g, name);
    return k < 0 ? NULL : oc_interp_value(it, it->g->outputs[k].node);
}

const struct oc_buf *oc_interp_named(const struct oc_interp *it, const char *name)
{
    if (!it) return NULL;
    int id = oc_graph_find_named(it->g, name);
    if (id < 0 || id >= it->cap || !it->bound[id]) return NULL;
    return &it->named[id];
}
