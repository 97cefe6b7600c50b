/* graph.c - graphs and nodes: construction with type inference, named
 * outputs, cloning and the verifier. Every node's dtype and shape are known
 * the moment it is built; oc_infer is the single source of those rules. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

struct oc_graph *oc_graph_new(const char *name)
{
    struct oc_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = oc_arena_strdup(&g->arena, name ? name : "main");
    return g;
}

void oc_graph_free(struct oc_graph *g)
{
    if (!g) return;
    free(g->nodes);
    free(g->outputs);
    oc_arena_free(&g->arena);
    free(g);
}

enum oc_status oc_graph_status(const struct oc_graph *g) { return g->err.code; }

/* ---------------------------------------------------------------- inference */

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

static int is_numeric_any(enum oc_dtype t) { return t == OC_F32 || t == OC_F64 || t == OC_I32; }

static enum oc_status need_float(enum oc_op op, int k, enum oc_dtype t, struct oc_err *err)
{
    if (oc_dtype_is_float(t)) return OC_OK;
    return oc_err_set(err, OC_ERR_DTYPE, "%s: operand %d must be f32 or f64, got %s",
                      oc_op_name(op), k, oc_dtype_name(t));
}

static enum oc_status reduce_shape(enum oc_op op, const struct oc_shape *in, uint32_t axes,
                                   int keepdims, struct oc_shape *out, struct oc_err *err)
{
    if (axes == 0)
        return oc_err_set(err, OC_ERR_SHAPE, "%s: empty set of reduction axes", oc_op_name(op));
    if (axes >> in->rank)
        return oc_err_set(err, OC_ERR_SHAPE, "%s: reduction axes 0x%x out of range for rank %d %s",
                          oc_op_name(op), axes, in->rank, SHP(*in));
    out->rank = 0;
    for (int i = 0; i < in->rank; i++) {
        if (axes & (1u << i)) {
            if (in->dim[i] == 0)
                return oc_err_set(err, OC_ERR_SHAPE, "%s: reduction over empty axis %d of %s",
                                  oc_op_name(op), i, SHP(*in));
            if (keepdims) out->dim[out->rank++] = 1;
        } else {
            out->dim[out->rank++] = in->dim[i];
        }
    }
    return OC_OK;
}

static int64_t conv_out(int64_t in, int64_t k, int s, int p) { return (in + 2 * (int64_t)p - k) / s + 1; }

enum oc_status oc_infer(enum oc_op op, int nin, const enum oc_dtype *dt, const struct oc_shape *sh,
                        const struct oc_attrs *a, enum oc_dtype *odt, struct oc_shape *osh,
                        struct oc_err *err)
{
    const struct oc_op_info *info = &oc_op_table[op];
    const char *name = info->name;
    if (info->arity >= 0 && nin != info->arity)
        return oc_err_set(err, OC_ERR_INVALID, "%s: expects %d operand(s), got %d", name,
                          info->arity, nin);
    if (info->arity < 0 && nin < 1)
        return oc_err_set(err, OC_ERR_INVALID, "%s: expects at least one operand", name);

    switch (op) {
    case OC_OP_INPUT:
    case OC_OP_PARAM:
    case OC_OP_STATE:
    case OC_OP_CONST:
        /* type comes from the declaration (already in *odt, *osh) */
        if (op == OC_OP_PARAM && !oc_dtype_is_float(*odt))
            return oc_err_set(err, OC_ERR_DTYPE, "param: must be f32 or f64, got %s",
                              oc_dtype_name(*odt));
        if (op != OC_OP_CONST && (!a->name || !a->name[0]))
            return oc_err_set(err, OC_ERR_INVALID, "%s: needs a name", name);
        for (int i = 0; i < osh->rank; i++)
            if (osh->dim[i] < 0)
                return oc_err_set(err, OC_ERR_SHAPE, "%s: negative dimension in %s", name,
                                  SHP(*osh));
        return OC_OK;
    case OC_OP_RNG_NORMAL:
    case OC_OP_RNG_UNIFORM:
        if (dt[0] != OC_I32 || sh[0].rank != 0)
            return oc_err_set(err, OC_ERR_DTYPE, "%s: counter must be an i32 scalar, got %s%s",
                              name, oc_dtype_name(dt[0]), SHP(sh[0]));
        return need_float(op, -1, *odt, err);
    case OC_OP_NEG:
    case OC_OP_ABS:
    case OC_OP_SIGN:
    case OC_OP_STOP_GRADIENT:
        if (!is_numeric_any(dt[0]))
            return oc_err_set(err, OC_ERR_DTYPE, "%s: operand must be f32, f64 or i32, got %s",
                              name, oc_dtype_name(dt[0]));
        *odt = dt[0];
        *osh = sh[0];
        return OC_OK;
    case OC_OP_EXP: case OC_OP_LOG: case OC_OP_SQRT: case OC_OP_RSQRT: case OC_OP_RECIP:
    case OC_OP_RELU: case OC_OP_SIGMOID: case OC_OP_TANH: case OC_OP_SOFTPLUS: case OC_OP_LOG1P:
        if (need_float(op, 0, dt[0], err)) return err->code;
        *odt = dt[0];
        *osh = sh[0];
        return OC_OK;
    case OC_OP_ADD: case OC_OP_SUB: case OC_OP_MUL: case OC_OP_DIV: case OC_OP_POW:
    case OC_OP_MAX: case OC_OP_MIN:
    case OC_OP_LT: case OC_OP_LE: case OC_OP_EQ: case OC_OP_NE: case OC_OP_GE: case OC_OP_GT:
        if (dt[0] != dt[1])
            return oc_err_set(err, OC_ERR_DTYPE, "%s: operand dtypes differ: %s vs %s", name,
                              oc_dtype_name(dt[0]), oc_dtype_name(dt[1]));
        if (!oc_shape_eq(&sh[0], &sh[1]))
            return oc_err_set(err, OC_ERR_SHAPE, "%s: operand shapes differ: %s vs %s", name,
                              SHP(sh[0]), SHP(sh[1]));
        if ((op == OC_OP_DIV || op == OC_OP_POW) && need_float(op, 0, dt[0], err)) return err->code;
        if (!is_numeric_any(dt[0]))
            return oc_err_set(err, OC_ERR_DTYPE, "%s: operands must be f32, f64 or i32, got %s",
                              name, oc_dtype_name(dt[0]));
        *odt = dt[0];
        *osh = sh[0];
        return OC_OK;
    case OC_OP_SELECT:
        if (dt[1] != dt[2])
            return oc_err_set(err, OC_ERR_DTYPE, "select: branch dtypes differ: %s vs %s",
                              oc_dtype_name(dt[1]), oc_dtype_name(dt[2]));
        if (!oc_shape_eq(&sh[0], &sh[1]) || !oc_shape_eq(&sh[1], &sh[2]))
            return oc_err_set(err, OC_ERR_SHAPE, "select: shapes differ: cond %s, a %s, b %s",
                              SHP(sh[0]), SHP(sh[1]), SHP(sh[2]));
        *odt = dt[1];
        *osh = sh[1];
        return OC_OK;
    case OC_OP_CAST:
        *osh = sh[0];
        return OC_OK;
    case OC_OP_RESHAPE:
        if (oc_shape_numel(osh) != oc_shape_numel(&sh[0]))
            return oc_err_set(err, OC_ERR_SHAPE, "reshape: %s and %s hold different numbers of elements",
                              SHP(sh[0]), SHP(*osh));
        *odt = dt[0];
        return OC_OK;
    case OC_OP_PERMUTE: {
        unsigned seen = 0;
        osh->rank = sh[0].rank;
        for (int i = 0; i < sh[0].rank; i++) {
            int p = a->perm[i];
            if (p < 0 || p >= sh[0].rank || (seen & (1u << p)))
                return oc_err_set(err, OC_ERR_SHAPE, "permute: not a permutation of rank %d",
                                  sh[0].rank);
            seen |= 1u << p;
            osh->dim[i] = sh[0].dim[p];
        }
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_BROADCAST: {
        int off = osh->rank - sh[0].rank;
        if (off < 0)
            return oc_err_set(err, OC_ERR_SHAPE, "broadcast: cannot broadcast %s to lower rank %s",
                              SHP(sh[0]), SHP(*osh));
        for (int i = 0; i < sh[0].rank; i++)
            if (sh[0].dim[i] != 1 && sh[0].dim[i] != osh->dim[i + off])
                return oc_err_set(err, OC_ERR_SHAPE, "broadcast: cannot broadcast %s to %s (dim %d)",
                                  SHP(sh[0]), SHP(*osh), i);
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_SLICE:
        osh->rank = sh[0].rank;
        for (int i = 0; i < sh[0].rank; i++) {
            int64_t s = a->start[i], e = a->stop[i], st = a->step[i];
            if (st < 1 || s < 0 || e < s || e > sh[0].dim[i])
                return oc_err_set(err, OC_ERR_SHAPE,
                                  "slice: bad range %lld:%lld:%lld for dim %d of %s", (long long)s,
                                  (long long)e, (long long)st, i, SHP(sh[0]));
            osh->dim[i] = (e - s + st - 1) / st;
        }
        *odt = dt[0];
        return OC_OK;
    case OC_OP_PAD:
        osh->rank = sh[0].rank;
        for (int i = 0; i < sh[0].rank; i++) {
            if (a->lo[i] < 0 || a->hi[i] < 0)
                return oc_err_set(err, OC_ERR_SHAPE, "pad: negative padding on dim %d", i);
            osh->dim[i] = sh[0].dim[i] + a->lo[i] + a->hi[i];
        }
        *odt = dt[0];
        return OC_OK;
    case OC_OP_CONCAT: {
        int ax = a->axis;
        if (ax < 0 || ax >= sh[0].rank)
            return oc_err_set(err, OC_ERR_SHAPE, "concat: axis %d out of range for rank %d", ax,
                              sh[0].rank);
        *osh = sh[0];
        for (int k = 1; k < nin; k++) {
            if (dt[k] != dt[0])
                return oc_err_set(err, OC_ERR_DTYPE, "concat: operand %d is %s, operand 0 is %s",
                                  k, oc_dtype_name(dt[k]), oc_dtype_name(dt[0]));
            if (sh[k].rank != sh[0].rank)
                return oc_err_set(err, OC_ERR_SHAPE, "concat: operand %d %s vs operand 0 %s", k,
                                  SHP(sh[k]), SHP(sh[0]));
            for (int i = 0; i < sh[0].rank; i++)
                if (i != ax && sh[k].dim[i] != sh[0].dim[i])
                    return oc_err_set(err, OC_ERR_SHAPE, "concat: operand %d %s vs operand 0 %s",
                                      k, SHP(sh[k]), SHP(sh[0]));
            osh->dim[ax] += sh[k].dim[ax];
        }
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_SUM:
    case OC_OP_REDUCE_MAX:
        if (!is_numeric_any(dt[0]))
            return oc_err_set(err, OC_ERR_DTYPE, "%s: operand must be numeric", name);
        *odt = dt[0];
        return reduce_shape(op, &sh[0], a->axes, a->keepdims, osh, err);
    case OC_OP_ARGMAX:
        if (a->axis < 0 || a->axis >= sh[0].rank)
            return oc_err_set(err, OC_ERR_SHAPE, "argmax: axis %d out of range for %s", a->axis,
                              SHP(sh[0]));
        *odt = OC_I32;
        return reduce_shape(op, &sh[0], 1u << a->axis, a->keepdims, osh, err);
    case OC_OP_MATMUL: {
        const struct oc_shape *x = &sh[0], *y = &sh[1];
        if (need_float(op, 0, dt[0], err)) return err->code;
        if (dt[0] != dt[1])
            return oc_err_set(err, OC_ERR_DTYPE, "matmul: operand dtypes differ: %s vs %s",
                              oc_dtype_name(dt[0]), oc_dtype_name(dt[1]));
        if (x->rank < 2 || x->rank != y->rank)
            return oc_err_set(err, OC_ERR_SHAPE, "matmul: operands %s and %s need equal rank >= 2",
                              SHP(*x), SHP(*y));
        int r = x->rank;
        for (int i = 0; i < r - 2; i++)
            if (x->dim[i] != y->dim[i])
                return oc_err_set(err, OC_ERR_SHAPE, "matmul: batch dims differ: %s vs %s",
                                  SHP(*x), SHP(*y));
        int64_t m = a->trans_a ? x->dim[r - 1] : x->dim[r - 2];
        int64_t k1 = a->trans_a ? x->dim[r - 2] : x->dim[r - 1];
        int64_t k2 = a->trans_b ? y->dim[r - 1] : y->dim[r - 2];
        int64_t n = a->trans_b ? y->dim[r - 2] : y->dim[r - 1];
        if (k1 != k2)
            return oc_err_set(err, OC_ERR_SHAPE,
                              "matmul: contraction dims differ: %s%s x %s%s (%lld vs %lld)",
                              SHP(*x), a->trans_a ? "^T" : "", SHP(*y), a->trans_b ? "^T" : "",
                              (long long)k1, (long long)k2);
        *osh = *x;
        osh->dim[r - 2] = m;
        osh->dim[r - 1] = n;
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_CONV2D:
    case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT: {
        if (a->stride[0] < 1 || a->stride[1] < 1 || a->padding[0] < 0 || a->padding[1] < 0)
            return oc_err_set(err, OC_ERR_INVALID, "%s: stride must be >= 1 and padding >= 0",
                              name);
        if (need_float(op, 0, dt[0], err)) return err->code;
        if (dt[0] != dt[1])
            return oc_err_set(err, OC_ERR_DTYPE, "%s: operand dtypes differ: %s vs %s", name,
                              oc_dtype_name(dt[0]), oc_dtype_name(dt[1]));
        /* x: [N,C,H,W]  w: [O,C,KH,KW]  y: [N,O,OH,OW] */
        struct oc_shape x, w, y;
        if (op == OC_OP_CONV2D) {
            x = sh[0], w = sh[1];
        } else if (op == OC_OP_CONV2D_GRAD_INPUT) {
            y = sh[0], w = sh[1], x = *osh;
        } else {
            x = sh[0], y = sh[1], w = *osh;
        }
        if (x.rank != 4 || w.rank != 4)
            return oc_err_set(err, OC_ERR_SHAPE, "%s: input %s and weight %s must be rank 4", name,
                              SHP(x), SHP(w));
        if (x.dim[1] != w.dim[1])
            return oc_err_set(err, OC_ERR_SHAPE, "%s: input channels %lld (input %s) != weight's %lld (weight %s)",
                              name, (long long)x.dim[1], SHP(x), (long long)w.dim[1], SHP(w));
        int64_t oh = conv_out(x.dim[2], w.dim[2], a->stride[0], a->padding[0]);
        int64_t ow = conv_out(x.dim[3], w.dim[3], a->stride[1], a->padding[1]);
        if (oh < 1 || ow < 1)
            return oc_err_set(err, OC_ERR_SHAPE, "%s: kernel %s larger than padded input %s", name,
                              SHP(w), SHP(x));
        struct oc_shape yy = OC_SHAPE(x.dim[0], w.dim[0], oh, ow);
        if (op == OC_OP_CONV2D) {
            *osh = yy;
        } else if (!oc_shape_eq(&y, &yy)) {
            return oc_err_set(err, OC_ERR_SHAPE, "%s: output gradient %s does not match %s", name,
                              SHP(y), SHP(yy));
        }
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_ONE_HOT:
        if (dt[0] != OC_I32)
            return oc_err_set(err, OC_ERR_DTYPE, "one_hot: indices must be i32, got %s",
                              oc_dtype_name(dt[0]));
        if (a->depth < 1 || sh[0].rank >= OC_MAX_RANK)
            return oc_err_set(err, OC_ERR_SHAPE, "one_hot: bad depth %lld or rank %d",
                              (long long)a->depth, sh[0].rank);
        *osh = sh[0];
        osh->dim[osh->rank++] = a->depth;
        return OC_OK;
    case OC_OP_GATHER: {
        int ax = a->axis;
        if (dt[1] != OC_I32)
            return oc_err_set(err, OC_ERR_DTYPE, "gather: indices must be i32, got %s",
                              oc_dtype_name(dt[1]));
        if (ax < 0 || ax >= sh[0].rank || sh[1].rank != sh[0].rank - 1)
            return oc_err_set(err, OC_ERR_SHAPE, "gather: axis %d of %s with indices %s", ax,
                              SHP(sh[0]), SHP(sh[1]));
        for (int i = 0, j = 0; i < sh[0].rank; i++) {
            if (i == ax) continue;
            if (sh[0].dim[i] != sh[1].dim[j++])
                return oc_err_set(err, OC_ERR_SHAPE,
                                  "gather: indices %s must be %s without axis %d", SHP(sh[1]),
                                  SHP(sh[0]), ax);
        }
        *osh = sh[1];
        *odt = dt[0];
        return OC_OK;
    }
    case OC_OP_ASSIGN:
        if (dt[0] != dt[1] || !oc_shape_eq(&sh[0], &sh[1]))
            return oc_err_set(err, OC_ERR_SHAPE, "assign: target %s%s and value %s%s differ",
                              oc_dtype_name(dt[0]), SHP(sh[0]), oc_dtype_name(dt[1]), SHP(sh[1]));
        *odt = dt[1];
        *osh = sh[1];
        return OC_OK;
    case OC_OP_COUNT: break;
    }
    return oc_err_set(err, OC_ERR_INVALID, "unknown op %d", (int)op);
}

/* ---------------------------------------------------------------- building */

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

oc_tensor oc_graph_add(struct oc_graph *g, enum oc_op op, const oc_tensor *in, int nin,
                       const struct oc_attrs *attrs, enum oc_dtype type_dtype,
                       const struct oc_shape *type_shape)
{
    if (g->err.code) return OC_NONE;
    OC_ASSERT((unsigned)op < OC_OP_COUNT && nin >= 0);
    enum oc_dtype dts[64];
    struct oc_shape shs[64];
    if (nin > 64) {
        oc_err_set(&g->err, OC_ERR_INVALID, "%s: too many operands (%d)", oc_op_name(op), nin);
        return OC_NONE;
    }
    for (int i = 0; i < nin; i++) {
        if (in[i].id < 0) return OC_NONE; /* an earlier error is already recorded */
        if (in[i].id >= g->nnodes) {
            oc_err_set(&g->err, OC_ERR_INVALID, "%s: operand %d refers to missing node %%%d",
                       oc_op_name(op), i, in[i].id);
            return OC_NONE;
        }
        dts[i] = g->nodes[in[i].id]->dtype;
        shs[i] = g->nodes[in[i].id]->shape;
    }
    static const struct oc_attrs none;
    if (!attrs) attrs = &none;
    enum oc_dtype odt = type_dtype;
    struct oc_shape osh = type_shape ? *type_shape : OC_SCALAR;
    if (op == OC_OP_ASSIGN && nin == 2) {
        enum oc_op t = g->nodes[in[0].id]->op;
        if (t != OC_OP_PARAM && t != OC_OP_STATE) {
            oc_err_set(&g->err, OC_ERR_INVALID,
                       "assign: target %%%d is a %s, not a param or state", in[0].id,
                       oc_op_name(t));
            return OC_NONE;
        }
    }
    struct oc_err e = {0};
    if (oc_infer(op, nin, dts, shs, attrs, &odt, &osh, &e)) {
        if (attrs->name)
            oc_err_set(&g->err, e.code, "node %%%d (%s \"%s\"): %s", g->nnodes, oc_op_name(op),
                       attrs->name, e.msg);
        else
            oc_err_set(&g->err, e.code, "node %%%d (%s): %s", g->nnodes, oc_op_name(op), e.msg);
        return OC_NONE;
    }
    if ((op == OC_OP_INPUT || op == OC_OP_PARAM || op == OC_OP_STATE) &&
        oc_graph_find_named(g, attrs->name) >= 0) {
        oc_err_set(&g->err, OC_ERR_INVALID, "node %%%d: name \"%s\" is already used", g->nnodes,
                   attrs->name);
        return OC_NONE;
    }
    if (grow((void **)&g->nodes, &g->cap, g->nnodes + 1, sizeof *g->nodes)) goto nomem;
    struct oc_node *n = oc_arena_alloc(&g->arena, sizeof *n);
    if (!n) goto nomem;
    n->id = g->nnodes;
    n->op = op;
    n->dtype = odt;
    n->shape = osh;
    n->ninputs = nin;
    n->inputs = oc_arena_alloc(&g->arena, sizeof(int) * (size_t)(nin ? nin : 1));
    if (!n->inputs) goto nomem;
    for (int i = 0; i < nin; i++) n->inputs[i] = in[i].id;
    n->attrs = *attrs;
    n->attrs.name = oc_arena_strdup(&g->arena, attrs->name);
    if (attrs->data) {
        int64_t cnt = oc_shape_numel(&osh);
        double *d = oc_arena_alloc(&g->arena, sizeof(double) * (size_t)(cnt ? cnt : 1));
        if (!d) goto nomem;
        memcpy(d, attrs->data, sizeof(double) * (size_t)cnt);
        n->attrs.data = d;
    }
    g->nodes[g->nnodes++] = n;
    return (oc_tensor){n->id};
nomem:
    oc_err_set(&g->err, OC_ERR_NOMEM, "out of memory building node %%%d", g->nnodes);
    return OC_NONE;
}

enum oc_status oc_graph_set_output(struct oc_graph *g, const char *name, oc_tensor t)
{
    if (g->err.code) return g->err.code;
    if (!name || !name[0] || t.id < 0 || t.id >= g->nnodes)
        return oc_err_set(&g->err, OC_ERR_INVALID, "output \"%s\": invalid tensor or name",
                          name ? name : "");
    if (oc_graph_find_output(g, name) >= 0)
        return oc_err_set(&g->err, OC_ERR_INVALID, "output \"%s\" is already defined", name);
    if (grow((void **)&g->outputs, &g->outcap, g->noutputs + 1, sizeof *g->outputs))
        return oc_err_set(&g->err, OC_ERR_NOMEM, "out of memory");
    g->outputs[g->noutputs].name = oc_arena_strdup(&g->arena, name);
    g->outputs[g->noutputs].node = t.id;
    g->noutputs++;
    return OC_OK;
}

int oc_graph_find_output(const struct oc_graph *g, const char *name)
{
    for (int i = 0; i < g->noutputs; i++)
        if (!strcmp(g->outputs[i].name, name)) return i;
    return -1;
}

int oc_graph_find_named(const struct oc_graph *g, const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if ((n->op == OC_OP_INPUT || n->op == OC_OP_PARAM || n->op == OC_OP_STATE) &&
            n->attrs.name && !strcmp(n->attrs.name, name))
            return i;
    }
    return -1;
}

struct oc_graph *oc_graph_clone(const struct oc_graph *g)
{
    struct oc_graph *c = oc_graph_new(g->name);
    if (!c) return NULL;
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        oc_tensor ins[64];
        for (int k = 0; k < n->ninputs; k++) ins[k] = (oc_tensor){n->inputs[k]};
        oc_tensor t = oc_graph_add(c, n->op, ins, n->ninputs, &n->attrs, n->dtype, &n->shape);
        if (t.id < 0) {
            oc_graph_free(c);
            return NULL;
        }
        c->nodes[t.id]->label = oc_arena_strdup(&c->arena, n->label);
    }
    for (int i = 0; i < g->noutputs; i++)
        oc_graph_set_output(c, g->outputs[i].name, (oc_tensor){g->outputs[i].node});
    if (c->err.code) {
        oc_graph_free(c);
        return NULL;
    }
    return c;
}

/* ---------------------------------------------------------------- verifier */

enum oc_status oc_graph_verify(const struct oc_graph *g, struct oc_err *err)
{
    if (g->err.code) return oc_err_set(err, g->err.code, "%s", g->err.msg);
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (!n || n->id != i)
            return oc_err_set(err, OC_ERR_INVALID, "node %%%d: bad id", i);
        if ((unsigned)n->op >= OC_OP_COUNT)
            return oc_err_set(err, OC_ERR_INVALID, "node %%%d: unknown op %d", i, (int)n->op);
        if (n->ninputs > 64)
            return oc_err_set(err, OC_ERR_INVALID, "node %%%d: too many operands", i);
        enum oc_dtype dts[64];
        struct oc_shape shs[64];
        for (int k = 0; k < n->ninputs; k++) {
            int j = n->inputs[k];
            if (j < 0 || j >= i)
                return oc_err_set(err, OC_ERR_INVALID,
                                  "node %%%d (%s): operand %d refers to %%%d, which does not precede it",
                                  i, oc_op_name(n->op), k, j);
            dts[k] = g->nodes[j]->dtype;
            shs[k] = g->nodes[j]->shape;
        }
        enum oc_dtype dt = n->dtype;
        struct oc_shape sh = n->shape;
        struct oc_err e = {0};
        if (oc_infer(n->op, n->ninputs, dts, shs, &n->attrs, &dt, &sh, &e))
            return oc_err_set(err, e.code, "node %%%d (%s): %s", i, oc_op_name(n->op), e.msg);
        if (dt != n->dtype || !oc_shape_eq(&sh, &n->shape))
            return oc_err_set(err, OC_ERR_SHAPE,
                              "node %%%d (%s): recorded type %s%s but operands give %s%s", i,
                              oc_op_name(n->op), oc_dtype_name(n->dtype), SHP(n->shape),
                              oc_dtype_name(dt), SHP(sh));
        if (n->op == OC_OP_ASSIGN) {
            enum oc_op t = g->nodes[n->inputs[0]]->op;
            if (t != OC_OP_PARAM && t != OC_OP_STATE)
                return oc_err_set(err, OC_ERR_INVALID, "node %%%d (assign): target is a %s", i,
                                  oc_op_name(t));
        }
        if (n->op == OC_OP_INPUT || n->op == OC_OP_PARAM || n->op == OC_OP_STATE) {
            for (int j = 0; j < i; j++) {
                const struct oc_node *m = g->nodes[j];
                if ((m->op == OC_OP_INPUT || m->op == OC_OP_PARAM || m->op == OC_OP_STATE) &&
                    !strcmp(m->attrs.name, n->attrs.name))
                    return oc_err_set(err, OC_ERR_INVALID, "node %%%d: name \"%s\" also used by %%%d",
                                      i, n->attrs.name, j);
            }
        }
    }
    for (int i = 0; i < g->noutputs; i++) {
        if (g->outputs[i].node < 0 || g->outputs[i].node >= g->nnodes)
            return oc_err_set(err, OC_ERR_INVALID, "output \"%s\": refers to missing node %%%d",
                              g->outputs[i].name, g->outputs[i].node);
        for (int j = 0; j < i; j++)
            if (!strcmp(g->outputs[i].name, g->outputs[j].name))
                return oc_err_set(err, OC_ERR_INVALID, "output \"%s\" defined twice",
                                  g->outputs[i].name);
    }
    return OC_OK;
}
