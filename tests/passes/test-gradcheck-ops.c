/* test-gradcheck-ops.c - every differentiable primitive's VJP rule against
 * central finite differences in f64 (tests/helpers/gradcheck.h).
 *
 * One parameterized test per OC_F_DIFF op of ir/ops.def: the op list comes
 * from the table, so a new differentiable op without a case here fails.
 * Shapes and values are drawn from a seeded generator; kinks are kept away
 * from the evaluation point by construction (relu/abs operands away from 0,
 * max/min operands separated, reduce_max operands distinct, log/sqrt
 * operands positive), never by skipping coordinates. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "../helpers/gradcheck.h"
#include "../helpers/helpers.h"

/* ---------------------------------------------------------------- case builder */

static uint64_t rs = 1;
static uint64_t next(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int64_t rdim(int lo, int hi) { return lo + (int64_t)(next() % (uint64_t)(hi - lo + 1)); }

static struct oc_shape rshape(int rmin, int rmax, int dmin, int dmax)
{
    struct oc_shape s;
    memset(&s, 0, sizeof s);
    s.rank = (int)rdim(rmin, rmax);
    for (int i = 0; i < s.rank; i++) s.dim[i] = rdim(dmin, dmax);
    return s;
}

/* a case: its graph, values and names, seeded from the file's generator */
static void tc_begin(struct oc_gc_case *t, const char *name) { oc_gc_begin(t, name, next()); }

/* ---------------------------------------------------------------- cases */

static void sources(enum oc_op op)
{
    struct oc_gc_case t;
    tc_begin(&t, "source");
    struct oc_shape s = rshape(1, 3, 1, 4);
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, s, OC_GC_UNIFORM, -1, 1, 1);
    if (op == OC_OP_INPUT) {
        oc_gc_check(&t, x, "input");
        return;
    }
    /* a bound param, and one left to its initializer */
    oc_tensor p = oc_param(t.g, "p", OC_F64, s, OC_INIT_NORMAL, 0, 1);
    t.names[t.nwrt++] = "p";
    oc_gc_bind(&t, "p", OC_GC_UNIFORM, -1, 1, 0);
    oc_tensor q = oc_param(t.g, "q", OC_F64, s, OC_INIT_UNIFORM, -1, 1);
    t.names[t.nwrt++] = "q";
    oc_gc_check(&t, oc_mul(t.g, oc_mul(t.g, p, x), q), "param");
}

static void unary(enum oc_op op)
{
    enum oc_gc_vals how = OC_GC_UNIFORM;
    double lo = -2, hi = 2;
    switch (op) {
    case OC_OP_LOG: case OC_OP_SQRT: case OC_OP_RSQRT: how = OC_GC_UNIFORM, lo = 0.2, hi = 3; break;
    case OC_OP_RECIP: how = OC_GC_AWAY, lo = 0.3, hi = 2; break;
    case OC_OP_ABS: case OC_OP_RELU: case OC_OP_SIGN: how = OC_GC_AWAY, lo = 0.05, hi = 2; break;
    case OC_OP_SOFTPLUS: lo = -5, hi = 5; break;
    case OC_OP_LOG1P: lo = -0.5, hi = 3; break;
    default: break;
    }
    for (int rep = 0; rep < 2; rep++) {
        struct oc_gc_case t;
        tc_begin(&t, oc_op_name(op));
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, rshape(0, 4, 1, 4), how, lo, hi, 1);
        oc_tensor y = oc_unary(t.g, op, x);
        /* sign has a zero derivative: also check it inside a product */
        if (op == OC_OP_SIGN) y = oc_add(t.g, y, oc_mul(t.g, y, x));
        oc_gc_check(&t, y, oc_op_name(op));
    }
}

static void binary(enum oc_op op)
{
    int cmp = (oc_op_table[op].flags & OC_F_CMP) != 0;
    for (int rep = 0; rep < 3; rep++) {
        struct oc_gc_case t;
        tc_begin(&t, oc_op_name(op));
        struct oc_shape s = rshape(0, 4, 1, 4), sb = s;
        if (rep == 2 && s.rank > 0 && !cmp && op != OC_OP_MAX && op != OC_OP_MIN)
            sb.dim[s.rank - 1] = 1; /* the DSL broadcasts b */
        oc_tensor a, b;
        if (op == OC_OP_DIV) {
            a = oc_gc_input(&t, "a", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
            b = oc_gc_input(&t, "b", OC_F64, sb, OC_GC_AWAY, 0.5, 2, 1);
        } else if (op == OC_OP_POW) {
            a = oc_gc_input(&t, "a", OC_F64, s, OC_GC_UNIFORM, 0.3, 2, 1);
            b = oc_gc_input(&t, "b", OC_F64, sb, OC_GC_UNIFORM, -2, 2, 1);
        } else if (op == OC_OP_MAX || op == OC_OP_MIN || cmp) {
            /* b = a + d with |d| in [0.1, 1): no ties, no kinks */
            a = oc_gc_input(&t, "a", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
            b = oc_gc_near(&t, "b", s, 0.1, 1);
        } else {
            a = oc_gc_input(&t, "a", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
            b = oc_gc_input(&t, "b", OC_F64, sb, OC_GC_UNIFORM, -2, 2, 1);
        }
        oc_tensor y = oc_binary(t.g, op, a, b);
        if (cmp) /* zero derivative: check it inside a product as well */
            y = oc_add(t.g, y, oc_mul(t.g, y, oc_mul(t.g, a, b)));
        if (rep == 1 && !cmp) /* fan-out: the same tensor as both operands */
            y = oc_add(t.g, y, oc_binary(t.g, op, a, a));
        oc_gc_check(&t, y, oc_op_name(op));
    }
}

static void select_case(enum oc_op op)
{
    for (int rep = 0; rep < 2; rep++) {
        struct oc_gc_case t;
        tc_begin(&t, "select");
        struct oc_shape s = rshape(1, 4, 1, 4);
        oc_tensor c = oc_gc_input(&t, "c", OC_F64, s, OC_GC_BINARY, 0, 1, 1);
        oc_tensor a = oc_gc_input(&t, "a", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
        oc_tensor b = oc_gc_input(&t, "b", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
        oc_tensor y = oc_select(t.g, c, oc_mul(t.g, a, a), rep ? a : b);
        oc_gc_check(&t, y, "select");
    }
}

static void cast_case(enum oc_op op)
{
    struct oc_gc_case t;
    tc_begin(&t, "cast");
    struct oc_shape s = rshape(1, 3, 1, 4);
    oc_tensor x = oc_gc_input(&t, "x", OC_F32, s, OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor z = oc_gc_input(&t, "z", OC_F64, s, OC_GC_UNIFORM, -2, 2, 1);
    oc_tensor y = oc_mul(t.g, oc_cast(t.g, x, OC_F64), z);
    y = oc_add(t.g, y, oc_cast(t.g, oc_exp(t.g, oc_cast(t.g, z, OC_F32)), OC_F64));
    oc_gc_check(&t, y, "cast");
}

static void reshape_case(enum oc_op op)
{
    struct oc_gc_case t;
    tc_begin(&t, "reshape");
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor y = oc_reshape(t.g, oc_mul(t.g, x, x), OC_SHAPE(4, 6));
    y = oc_add(t.g, y, oc_reshape(t.g, x, OC_SHAPE(4, 6)));
    oc_gc_check(&t, oc_reshape(t.g, y, OC_SHAPE(24)), "reshape");
}

static void permute_case(enum oc_op op)
{
    for (int rep = 0; rep < 3; rep++) {
        struct oc_gc_case t;
        tc_begin(&t, "permute");
        struct oc_shape s = rshape(2, 5, 1, 4);
        int perm[OC_MAX_RANK];
        for (int i = 0; i < s.rank; i++) perm[i] = i;
        for (int i = s.rank - 1; i > 0; i--) {
            int j = (int)(next() % (uint64_t)(i + 1)), k = perm[i];
            perm[i] = perm[j];
            perm[j] = k;
        }
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, s, OC_GC_UNIFORM, -1, 1, 1);
        oc_gc_check(&t, oc_permute(t.g, oc_mul(t.g, x, x), perm), "permute");
    }
}

static void broadcast_case(enum oc_op op)
{
    static const struct {
        int r0;
        int64_t from[4];
        int r1;
        int64_t to[4];
    } cs[] = {
        {2, {3, 1}, 3, {2, 3, 4}},
        {0, {0}, 2, {2, 3}},
        {2, {1, 4}, 2, {3, 4}},
        {2, {2, 3}, 2, {2, 3}},
        {3, {1, 3, 1}, 4, {2, 1, 3, 5}},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        struct oc_gc_case t;
        tc_begin(&t, "broadcast");
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, oc_shape_make(cs[k].r0, cs[k].from), OC_GC_UNIFORM, -1, 1, 1);
        oc_tensor y = oc_broadcast(t.g, oc_mul(t.g, x, x), oc_shape_make(cs[k].r1, cs[k].to));
        oc_gc_check(&t, y, "broadcast");
    }
}

static void slice_case(enum oc_op op)
{
    static const struct {
        int r;
        int64_t dim[6], start[6], stop[6], step[6];
    } cs[] = {
        {2, {5, 7}, {1, 0}, {4, 7}, {1, 1}},
        {3, {5, 7, 6}, {0, 1, 2}, {5, 7, 6}, {2, 3, 1}},
        {3, {5, 7, 6}, {1, 2, 0}, {4, 3, 5}, {2, 4, 2}},   /* len 2, 1, 3 */
        {1, {9}, {2}, {9}, {3}},
        {6, {2, 1, 3, 2, 5, 2}, {0, 0, 1, 0, 0, 1}, {2, 1, 3, 2, 5, 2}, {1, 1, 1, 1, 2, 1}},
    };
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        struct oc_gc_case t;
        tc_begin(&t, "slice");
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, oc_shape_make(cs[k].r, cs[k].dim), OC_GC_UNIFORM, -1, 1, 1);
        oc_tensor y = oc_slice(t.g, oc_mul(t.g, x, x), cs[k].start, cs[k].stop, cs[k].step);
        oc_gc_check(&t, oc_exp(t.g, y), "slice");
    }
    /* an empty slice on the path (through concat) gets a zero gradient */
    struct oc_gc_case t;
    tc_begin(&t, "slice-empty");
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(4, 4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor e = oc_slice(t.g, x, (const int64_t[]){2, 1}, (const int64_t[]){2, 3}, NULL);
    oc_tensor f = oc_slice(t.g, x, (const int64_t[]){0, 0}, (const int64_t[]){4, 2}, NULL);
    oc_gc_check(&t, oc_concat(t.g, (oc_tensor[]){e, oc_exp(t.g, f)}, 2, 0), "slice-empty");
}

static void pad_case(enum oc_op op)
{
    struct oc_gc_case t;
    tc_begin(&t, "pad");
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(3, 4), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor y = oc_pad(t.g, oc_mul(t.g, x, x), (const int64_t[]){1, 0}, (const int64_t[]){2, 3}, 1.5);
    oc_gc_check(&t, y, "pad");
    tc_begin(&t, "pad3");
    x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 1, 3), OC_GC_UNIFORM, -1, 1, 1);
    y = oc_pad(t.g, x, (const int64_t[]){0, 2, 1}, (const int64_t[]){1, 0, 0}, 0);
    oc_gc_check(&t, oc_mul(t.g, y, y), "pad3");
}

static void concat_case(enum oc_op op)
{
    struct oc_gc_case t;
    tc_begin(&t, "concat");
    oc_tensor a = oc_gc_input(&t, "a", OC_F64, OC_SHAPE(2, 1, 3), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor b = oc_gc_input(&t, "b", OC_F64, OC_SHAPE(2, 4, 3), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor c = oc_gc_input(&t, "c", OC_F64, OC_SHAPE(2, 2, 3), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor y = oc_concat(t.g, (oc_tensor[]){a, oc_mul(t.g, b, b), c}, 3, 1);
    oc_gc_check(&t, y, "concat");
    tc_begin(&t, "concat-fanout");
    a = oc_gc_input(&t, "a", OC_F64, OC_SHAPE(3, 2), OC_GC_UNIFORM, -1, 1, 1);
    oc_gc_check(&t, oc_concat(t.g, (oc_tensor[]){a, oc_exp(t.g, a), a}, 3, 0), "concat-fanout");
}

static void sum_case(enum oc_op op)
{
    static const uint32_t axes[] = {1u, 2u, 6u, 5u, 7u};
    for (size_t k = 0; k < sizeof axes / sizeof axes[0]; k++)
        for (int keep = 0; keep < 2; keep++) {
            struct oc_gc_case t;
            tc_begin(&t, "sum");
            oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(2, 3, 4), OC_GC_UNIFORM, -1, 1, 1);
            oc_gc_check(&t, oc_sum(t.g, oc_mul(t.g, x, x), axes[k], keep), "sum");
        }
}

static void reduce_max_case(enum oc_op op)
{
    static const uint32_t axes[] = {1u, 2u, 5u, 7u};
    for (size_t k = 0; k < sizeof axes / sizeof axes[0]; k++) {
        struct oc_gc_case t;
        tc_begin(&t, "reduce_max");
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(3, 4, 2), OC_GC_DISTINCT, 0.1, 0.1, 1);
        oc_gc_check(&t, oc_reduce_max(t.g, x, axes[k], (int)(k & 1)), "reduce_max");
    }
}

static void matmul_case(enum oc_op op)
{
    for (int r = 2; r <= 4; r++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                struct oc_gc_case t;
                tc_begin(&t, "matmul");
                int64_t m = rdim(1, 4), k = rdim(1, 4), n = rdim(1, 4);
                struct oc_shape sa, sb;
                memset(&sa, 0, sizeof sa);
                sa.rank = sb.rank = r;
                for (int i = 0; i < r - 2; i++) sa.dim[i] = sb.dim[i] = rdim(1, 3);
                sb = sa;
                sa.dim[r - 2] = ta ? k : m;
                sa.dim[r - 1] = ta ? m : k;
                sb.dim[r - 2] = tb ? n : k;
                sb.dim[r - 1] = tb ? k : n;
                oc_tensor a = oc_gc_input(&t, "a", OC_F64, sa, OC_GC_UNIFORM, -1, 1, 1);
                oc_tensor b = oc_gc_input(&t, "b", OC_F64, sb, OC_GC_UNIFORM, -1, 1, 1);
                oc_gc_check(&t, oc_matmul(t.g, a, b, ta, tb), "matmul");
            }
    /* the same matrix on both sides: x^T x */
    struct oc_gc_case t;
    tc_begin(&t, "matmul-gram");
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(4, 3), OC_GC_UNIFORM, -1, 1, 1);
    oc_gc_check(&t, oc_matmul(t.g, x, x, 1, 0), "matmul-gram");
}

/* conv2d and its adjoints, with symmetric and asymmetric stride/padding */
static const struct conv_cfg {
    int64_t n, c, h, w, o, kh, kw;
    int sh, sw, ph, pw;
} convs[] = {
    {2, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1},
    {2, 3, 7, 6, 4, 3, 2, 2, 2, 1, 1},
    {1, 2, 6, 7, 3, 2, 3, 1, 2, 0, 1},
    {2, 2, 4, 4, 2, 1, 1, 2, 2, 0, 0},
};

static oc_tensor conv_node(struct oc_graph *g, enum oc_op op, oc_tensor a, oc_tensor b,
                           const struct conv_cfg *c, struct oc_shape type)
{
    struct oc_attrs at;
    memset(&at, 0, sizeof at);
    at.stride[0] = c->sh, at.stride[1] = c->sw, at.padding[0] = c->ph, at.padding[1] = c->pw;
    return oc_graph_add(g, op, (oc_tensor[]){a, b}, 2, &at, OC_F64, &type);
}

static void conv_case(enum oc_op op)
{
    for (size_t k = 0; k < sizeof convs / sizeof convs[0]; k++) {
        const struct conv_cfg *c = &convs[k];
        int64_t oh = (c->h + 2 * c->ph - c->kh) / c->sh + 1, ow = (c->w + 2 * c->pw - c->kw) / c->sw + 1;
        struct oc_shape xs = OC_SHAPE(c->n, c->c, c->h, c->w), ws = OC_SHAPE(c->o, c->c, c->kh, c->kw);
        struct oc_shape ys = OC_SHAPE(c->n, c->o, oh, ow);
        struct oc_gc_case t;
        tc_begin(&t, oc_op_name(op));
        oc_tensor y;
        if (op == OC_OP_CONV2D) {
            oc_tensor x = oc_gc_input(&t, "x", OC_F64, xs, OC_GC_UNIFORM, -1, 1, 1);
            oc_tensor w = oc_gc_input(&t, "w", OC_F64, ws, OC_GC_UNIFORM, -1, 1, 1);
            y = conv_node(t.g, op, x, w, c, ys);
        } else if (op == OC_OP_CONV2D_GRAD_INPUT) {
            oc_tensor d = oc_gc_input(&t, "dy", OC_F64, ys, OC_GC_UNIFORM, -1, 1, 1);
            oc_tensor w = oc_gc_input(&t, "w", OC_F64, ws, OC_GC_UNIFORM, -1, 1, 1);
            y = conv_node(t.g, op, d, w, c, xs);
        } else {
            oc_tensor x = oc_gc_input(&t, "x", OC_F64, xs, OC_GC_UNIFORM, -1, 1, 1);
            oc_tensor d = oc_gc_input(&t, "dy", OC_F64, ys, OC_GC_UNIFORM, -1, 1, 1);
            y = conv_node(t.g, op, x, d, c, ws);
        }
        /* square it so the check also sees the operands' interaction */
        oc_gc_check(&t, oc_mul(t.g, y, y), oc_op_name(op));
    }
}

static void gather_case(enum oc_op op)
{
    for (int ax = 0; ax < 3; ax++) {
        struct oc_gc_case t;
        tc_begin(&t, "gather");
        struct oc_shape xs = OC_SHAPE(3, 4, 5), is;
        is.rank = 0;
        for (int i = 0; i < 3; i++)
            if (i != ax) is.dim[is.rank++] = xs.dim[i];
        oc_tensor x = oc_gc_input(&t, "x", OC_F64, xs, OC_GC_UNIFORM, -1, 1, 1);
        oc_tensor idx = oc_gc_index(&t, "idx", is, (int)xs.dim[ax]);
        oc_gc_check(&t, oc_gather(t.g, oc_mul(t.g, x, x), idx, ax), "gather");
    }
    struct oc_gc_case t;
    tc_begin(&t, "gather-1d");
    oc_tensor x = oc_gc_input(&t, "x", OC_F64, OC_SHAPE(6), OC_GC_UNIFORM, -1, 1, 1);
    oc_tensor idx = oc_gc_index(&t, "idx", OC_SCALAR, 6);
    oc_gc_check(&t, oc_gather(t.g, x, idx, 0), "gather-1d");
}

/* ---------------------------------------------------------------- the table */

static const struct {
    enum oc_op op;
    void (*run)(enum oc_op);
} cases[] = {
    {OC_OP_INPUT, sources},          {OC_OP_PARAM, sources},
    {OC_OP_NEG, unary},              {OC_OP_EXP, unary},
    {OC_OP_LOG, unary},              {OC_OP_SQRT, unary},
    {OC_OP_RSQRT, unary},            {OC_OP_RECIP, unary},
    {OC_OP_ABS, unary},              {OC_OP_SIGN, unary},
    {OC_OP_RELU, unary},             {OC_OP_SIGMOID, unary},
    {OC_OP_TANH, unary},             {OC_OP_SOFTPLUS, unary},
    {OC_OP_LOG1P, unary},            {OC_OP_ADD, binary},
    {OC_OP_SUB, binary},             {OC_OP_MUL, binary},
    {OC_OP_DIV, binary},             {OC_OP_POW, binary},
    {OC_OP_MAX, binary},             {OC_OP_MIN, binary},
    {OC_OP_LT, binary},              {OC_OP_LE, binary},
    {OC_OP_EQ, binary},              {OC_OP_NE, binary},
    {OC_OP_GE, binary},              {OC_OP_GT, binary},
    {OC_OP_SELECT, select_case},     {OC_OP_CAST, cast_case},
    {OC_OP_RESHAPE, reshape_case},   {OC_OP_PERMUTE, permute_case},
    {OC_OP_BROADCAST, broadcast_case}, {OC_OP_SLICE, slice_case},
    {OC_OP_PAD, pad_case},           {OC_OP_CONCAT, concat_case},
    {OC_OP_SUM, sum_case},           {OC_OP_REDUCE_MAX, reduce_max_case},
    {OC_OP_MATMUL, matmul_case},     {OC_OP_CONV2D, conv_case},
    {OC_OP_CONV2D_GRAD_INPUT, conv_case}, {OC_OP_CONV2D_GRAD_WEIGHT, conv_case},
    {OC_OP_GATHER, gather_case},
};

ParameterizedTestParameters(gradcheck, op)
{
    static int ops[OC_OP_COUNT];
    int n = 0;
    for (int op = 0; op < OC_OP_COUNT; op++)
        if (oc_op_table[op].flags & OC_F_DIFF) ops[n++] = op;
    return cr_make_param_array(int, ops, (size_t)n);
}

ParameterizedTest(int *op, gradcheck, op)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if ((int)cases[i].op == *op) {
            rs = 0x1234u + (uint64_t)*op * 7919u;
            cases[i].run(cases[i].op);
            return;
        }
    cr_assert_fail("op %s is differentiable (OC_F_DIFF in ops.def) but has no gradcheck case",
                   oc_op_name(*op));
}

/* every case in the table is a differentiable op (no stale entries) */
Test(gradcheck, table_matches_ops_def)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect(oc_op_table[cases[i].op].flags & OC_F_DIFF, "case for %s, which is not OC_F_DIFF",
                  oc_op_name(cases[i].op));
}
