/* test-random-graphs.c - property test: 320 seeded random graphs mixing
 * elementwise ops, numpy broadcasting, layout ops (reshape, permute,
 * broadcast, slice, pad, concat) and reductions (sum, reduce_max, argmax),
 * compiled with fusion on and run on a NaN-poisoned arena, must match the
 * f64 reference interpreter; every eighth graph is also run unfused. A
 * failure names the seed; rebuild that graph alone with REPRO_SEED. */
#include "conform.h"

struct rng {
    uint64_t s;
};

static uint64_t next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int pick(struct rng *r, int n) { return (int)(next(r) % (uint64_t)n); }

static struct oc_shape rand_shape(struct rng *r)
{
    struct oc_shape s = OC_SCALAR;
    s.rank = 1 + pick(r, 3);
    for (int i = 0; i < s.rank; i++) s.dim[i] = 1 + pick(r, 5);
    return s;
}

static const struct oc_shape *shp(struct oc_graph *g, oc_tensor t) { return &g->nodes[t.id]->shape; }

/* Bounded unary ops, so values stay finite and O(1). */
static oc_tensor rand_unary(struct oc_graph *g, struct rng *r, oc_tensor x)
{
    switch (pick(r, 10)) {
    case 0: return oc_neg(g, x);
    case 1: return oc_exp(g, oc_tanh(g, x));
    case 2: return oc_abs(g, x);
    case 3: return oc_relu(g, x);
    case 4: return oc_sigmoid(g, x);
    case 5: return oc_tanh(g, x);
    case 6: return oc_softplus(g, oc_tanh(g, x));
    case 7: return oc_sqrt(g, oc_add_scalar(g, oc_abs(g, x), 0.5));
    case 8: return oc_log(g, oc_add_scalar(g, oc_abs(g, x), 1.0));
    default: return oc_scale(g, x, 0.5);
    }
}

/* A tensor broadcastable against x: x itself, a keepdims reduction of it,
 * or a trailing slice of its shape. */
static oc_tensor partner(struct oc_graph *g, struct rng *r, oc_tensor x, oc_tensor *pool, int npool)
{
    const struct oc_shape *s = shp(g, x);
    for (int tries = 0; tries < 4; tries++) {
        oc_tensor c = pool[pick(r, npool)];
        const struct oc_shape *cs = shp(g, c);
        int ok = cs->rank <= s->rank;
        for (int i = 0; ok && i < cs->rank; i++) {
            int64_t a = cs->dim[cs->rank - 1 - i], b = s->dim[s->rank - 1 - i];
            ok = a == b || a == 1 || b == 1;
        }
        if (ok && oc_shape_numel(cs) <= oc_shape_numel(s) * 2) return c;
    }
    uint32_t axes = (uint32_t)pick(r, 1 << s->rank);
    if (!axes) return x;
    return pick(r, 2) ? oc_sum(g, x, axes, 1) : oc_reduce_max(g, x, axes, 1);
}

static oc_tensor rand_layout(struct oc_graph *g, struct rng *r, oc_tensor x)
{
    struct oc_shape s = *shp(g, x);
    if (s.rank == 0) return oc_reshape(g, x, OC_SHAPE(1));
    switch (pick(r, 6)) {
    case 0: { /* permute */
        int perm[OC_MAX_RANK];
        for (int i = 0; i < s.rank; i++) perm[i] = i;
        for (int i = s.rank - 1; i > 0; i--) {
            int j = pick(r, i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        return oc_permute(g, x, perm);
    }
    case 1: { /* reshape: merge two adjacent dims, or split one */
        struct oc_shape t = s;
        if (s.rank >= 2 && pick(r, 2)) {
            int i = pick(r, s.rank - 1);
            t.dim[i] *= t.dim[i + 1];
            for (int k = i + 1; k < s.rank - 1; k++) t.dim[k] = t.dim[k + 1];
            t.rank--;
        } else if (s.rank < 4) {
            int i = pick(r, s.rank);
            int64_t d = s.dim[i], f = 1;
            for (int64_t c = 2; c <= d; c++)
                if (d % c == 0) {
                    f = c;
                    break;
                }
            for (int k = s.rank; k > i; k--) t.dim[k] = t.dim[k - 1];
            t.dim[i] = f;
            t.dim[i + 1] = d / f;
            t.rank++;
        }
        return oc_reshape(g, x, t);
    }
    case 2: { /* slice */
        int64_t st[OC_MAX_RANK], sp[OC_MAX_RANK], step[OC_MAX_RANK];
        for (int i = 0; i < s.rank; i++) {
            st[i] = pick(r, (int)s.dim[i]);
            sp[i] = st[i] + 1 + pick(r, (int)(s.dim[i] - st[i]));
            step[i] = 1 + pick(r, 2);
        }
        return oc_slice(g, x, st, sp, step);
    }
    case 3: { /* pad */
        int64_t lo[OC_MAX_RANK], hi[OC_MAX_RANK];
        for (int i = 0; i < s.rank; i++) lo[i] = pick(r, 2), hi[i] = pick(r, 2);
        return oc_pad(g, x, lo, hi, (double)pick(r, 3) - 1);
    }
    case 4: { /* concat with a transformed copy */
        oc_tensor xs[2] = {x, rand_unary(g, r, x)};
        return oc_concat(g, xs, 2, pick(r, s.rank));
    }
    default: { /* broadcast to a new leading dim */
        if (s.rank >= 4) return x;
        struct oc_shape t = s;
        for (int k = s.rank; k > 0; k--) t.dim[k] = t.dim[k - 1];
        t.dim[0] = 1 + pick(r, 3);
        t.rank++;
        return oc_broadcast(g, x, t);
    }
    }
}

static oc_tensor rand_reduce(struct oc_graph *g, struct rng *r, oc_tensor x)
{
    const struct oc_shape *s = shp(g, x);
    if (s->rank == 0) return oc_neg(g, x);
    uint32_t axes = 1u + (uint32_t)pick(r, (1 << s->rank) - 1);
    int keep = pick(r, 2);
    switch (pick(r, 4)) {
    case 0:
    case 1: return oc_scale(g, oc_sum(g, x, axes, keep), 0.25);
    case 2: return oc_reduce_max(g, x, axes, keep);
    default: return oc_scale(g, oc_cast(g, oc_argmax(g, x, pick(r, s->rank), keep), OC_F32), 0.5);
    }
}

static struct oc_graph *rand_graph(uint64_t seed)
{
    struct rng r = {seed * 0x2545f4914f6cdd1dull + 1};
    struct oc_graph *g = oc_graph_new("random");
    oc_tensor pool[64];
    int n = 0;
    int nin = 1 + pick(&r, 3);
    for (int i = 0; i < nin; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        pool[n++] = oc_input(g, name, OC_F32, rand_shape(&r));
    }
    int steps = 4 + pick(&r, 12);
    for (int i = 0; i < steps && !g->err.code; i++) {
        oc_tensor x = pool[pick(&r, n)], y;
        int what = pick(&r, 10);
        if (oc_shape_numel(shp(g, x)) > 400) what = 9; /* keep sizes small */
        if (what < 3) {
            y = rand_unary(g, &r, x);
        } else if (what < 6) {
            oc_tensor z = partner(g, &r, x, pool, n);
            static const enum oc_op ops[] = {OC_OP_ADD, OC_OP_SUB, OC_OP_MUL, OC_OP_MAX, OC_OP_MIN, OC_OP_GT};
            enum oc_op op = ops[pick(&r, 6)];
            if (pick(&r, 6) == 0) y = oc_div(g, x, oc_add_scalar(g, oc_abs(g, z), 1.0));
            else if (op == OC_OP_GT) y = oc_select(g, oc_gt(g, x, z), x, oc_scale(g, z, 0.5));
            else y = oc_binary(g, op, x, z);
        } else if (what < 8) {
            y = rand_layout(g, &r, x);
        } else {
            y = rand_reduce(g, &r, x);
        }
        if (n < 64) pool[n++] = y;
        else pool[pick(&r, 64)] = y;
    }
    oc_output(g, "y", pool[n - 1]);
    oc_tensor o2 = pool[nin + pick(&r, n - nin)];
    if (o2.id != pool[n - 1].id) oc_output(g, "z", o2);
    return g;
}

Test(random_graphs, fused_matches_interpreter, .timeout = 120)
{
    struct oc_rt *rt;
    struct oc_err err = {0};
    cr_assert_eq(oc_rt_new(&rt, 2, 0, &err), OC_OK, "%s", err.msg);
    int bad = 0, ngraphs = 320;
    const char *only = getenv("REPRO_SEED");
    for (int seed = 0; seed < ngraphs; seed++) {
        if (only && atoi(only) != seed) continue;
        struct oc_graph *g = rand_graph((uint64_t)seed);
        cr_assert_eq(oc_graph_status(g), OC_OK, "seed %d: %s", seed, g->err.msg);
        if (only) oc_graph_print(g, stderr);
        struct conform_opts co = conform_defaults();
        co.lo = -1, co.hi = 1;
        co.rtol = 1e-3, co.atol = 1e-4;
        co.poison = 1;
        char tag[64];
        snprintf(tag, sizeof tag, "random graph seed %d", seed);
        int ok = conform_run(rt, g, tag, 1, &co);
        if (ok && (seed % 8 == 0 || only)) ok = conform_run(rt, g, tag, 0, &co);
        if (!ok) {
            bad++;
            cr_expect_fail("%s differs from the interpreter (REPRO_SEED=%d)", tag, seed);
        }
        oc_graph_free(g);
    }
    cr_expect_eq(bad, 0, "%d of %d random graphs differ", bad, ngraphs);
    oc_rt_free(rt);
}
