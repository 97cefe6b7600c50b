/* gradcheck.c - analytic gradients (oc_pass_autodiff, interpreted in f64)
 * against central finite differences (see gradcheck.h). */
#include "gradcheck.h"

#include "../../passes/passes.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct oc_gc_opts oc_gc_defaults(void)
{
    struct oc_gc_opts o;
    memset(&o, 0, sizeof o);
    o.rtol = 1e-6;
    o.atol = 1e-10;
    o.h = 1e-6;
    return o;
}

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(mix(s) >> 11) * 0x1.0p-53; }

struct oc_graph *oc_gc_strip_assigns(const struct oc_graph *g, int *map)
{
    int *m = map ? map : malloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
    struct oc_graph *c = oc_graph_new(g->name);
    cr_assert(m && c, "gradcheck: out of memory");
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        if (n->op == OC_OP_ASSIGN) {
            m[i] = m[n->inputs[1]];
            continue;
        }
        oc_tensor ins[64];
        for (int k = 0; k < n->ninputs; k++) ins[k] = (oc_tensor){m[n->inputs[k]]};
        oc_tensor t = oc_graph_add(c, n->op, ins, n->ninputs, &n->attrs, n->dtype, &n->shape);
        cr_assert(oc_valid(t), "gradcheck: copying node %%%d failed: %s", i, c->err.msg);
        c->nodes[t.id]->label = oc_arena_strdup(&c->arena, n->label);
        m[i] = t.id;
    }
    for (int i = 0; i < g->noutputs; i++)
        oc_graph_set_output(c, g->outputs[i].name, (oc_tensor){m[g->outputs[i].node]});
    if (!map) free(m);
    return c;
}

static void coord_str(const struct oc_shape *s, int64_t flat, char *buf, size_t n)
{
    int64_t idx[OC_MAX_RANK];
    for (int d = s->rank - 1; d >= 0; d--) {
        idx[d] = s->dim[d] ? flat % s->dim[d] : 0;
        flat = s->dim[d] ? flat / s->dim[d] : 0;
    }
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < s->rank && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? "," : "", (long long)idx[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static void bind_all(struct oc_interp *it, const struct oc_test_bind *binds, int nbinds)
{
    struct oc_err err = {0};
    for (int i = 0; i < nbinds; i++)
        cr_assert_eq(oc_interp_set(it, binds[i].name, binds[i].value, &err), OC_OK,
                     "gradcheck: binding \"%s\": %s", binds[i].name, err.msg);
}

static double run_loss(struct oc_interp *it, int loss)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "gradcheck: interpreter: %s", err.msg);
    const struct oc_buf *b = oc_interp_value(it, loss);
    cr_assert_not_null(b);
    return oc_buf_get(b, 0);
}

int oc_gradcheck(const struct oc_graph *g, const char *output, const struct oc_test_bind *binds,
                 int nbinds, const char *const *wrt, int nwrt, const struct oc_gc_opts *opts,
                 struct oc_gc_report *rep)
{
    struct oc_gc_opts o = opts ? *opts : oc_gc_defaults();
    struct oc_gc_report r;
    memset(&r, 0, sizeof r);
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_status(g), OC_OK, "gradcheck: graph build failed: %s", g->err.msg);
    uint64_t rs = o.seed * 0x2545f4914f6cdd1dull + 99;

    /* forward graph with a scalar loss */
    struct oc_graph *fg = oc_gc_strip_assigns(g, NULL);
    int oi = oc_graph_find_output(fg, output);
    cr_assert(oi >= 0, "gradcheck: graph has no output \"%s\"", output);
    oc_tensor y = {fg->outputs[oi].node};
    const struct oc_node *yn = fg->nodes[y.id];
    cr_assert(oc_dtype_is_float(yn->dtype), "gradcheck: output \"%s\" is not float", output);
    oc_tensor loss = y;
    if (yn->shape.rank > 0) {
        int64_t cnt = oc_shape_numel(&yn->shape);
        double *w = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
        cr_assert_not_null(w);
        for (int64_t i = 0; i < cnt; i++)
            w[i] = (unit(&rs) < 0.5 ? -1.0 : 1.0) * (0.5 + unit(&rs));
        struct oc_shape ys = yn->shape;
        oc_tensor wt = oc_const_data(fg, yn->dtype, ys, w);
        free(w);
        oc_tensor p = oc_mul(fg, y, wt);
        loss = oc_sum(fg, p, oc_all_axes(fg, p), 0);
    }
    cr_assert_eq(oc_graph_status(fg), OC_OK, "gradcheck: %s", fg->err.msg);

    int *ids = malloc(sizeof(int) * (size_t)(nwrt ? nwrt : 1));
    int *grads = malloc(sizeof(int) * (size_t)(nwrt ? nwrt : 1));
    cr_assert(ids && grads);
    for (int i = 0; i < nwrt; i++) {
        ids[i] = oc_graph_find_named(fg, wrt[i]);
        cr_assert(ids[i] >= 0, "gradcheck: no input/param/state named \"%s\"", wrt[i]);
    }

    /* backward graph: a copy plus the gradients */
    struct oc_graph *bg = oc_graph_clone(fg);
    cr_assert_not_null(bg, "gradcheck: clone failed");
    cr_assert_eq(oc_pass_autodiff(bg, loss.id, -1, ids, nwrt, grads, &err), OC_OK,
                 "gradcheck: autodiff: %s", err.msg);
    cr_assert_eq(oc_graph_verify(bg, &err), OC_OK, "gradcheck: graph after autodiff: %s",
                 err.msg);
    struct oc_interp *bi = oc_interp_new(bg, 1);
    cr_assert_not_null(bi);
    bind_all(bi, binds, nbinds);
    run_loss(bi, loss.id);

    struct oc_interp *fi = oc_interp_new(fg, 1);
    cr_assert_not_null(fi);
    bind_all(fi, binds, nbinds);
    run_loss(fi, loss.id); /* initializes unbound params; their values are read back below */

    for (int i = 0; i < nwrt; i++) {
        const struct oc_node *wn = fg->nodes[ids[i]];
        const struct oc_buf *ga = oc_interp_value(bi, grads[i]);
        cr_assert_not_null(ga);
        cr_assert(oc_shape_eq(&ga->shape, &wn->shape), "gradcheck: gradient of \"%s\" has the wrong shape",
                  wrt[i]);
        struct oc_buf base = oc_test_copy(oc_interp_named(fi, wrt[i]));
        struct oc_buf x;
        cr_assert_eq(oc_buf_alloc(&x, OC_F64, &wn->shape), OC_OK);
        int64_t cnt = oc_shape_numel(&wn->shape);
        for (int64_t k = 0; k < cnt; k++) oc_buf_set(&x, k, oc_buf_get(&base, k));

        int64_t want = (o.max_coords > 0 && o.max_coords < cnt) ? o.max_coords : cnt;
        int64_t *coords = malloc(sizeof(int64_t) * (size_t)(cnt ? cnt : 1));
        cr_assert_not_null(coords);
        for (int64_t k = 0; k < cnt; k++) coords[k] = k;
        if (want < cnt) /* partial Fisher-Yates: `want` distinct coordinates */
            for (int64_t k = 0; k < want; k++) {
                int64_t j = k + (int64_t)(unit(&rs) * (double)(cnt - k));
                if (j >= cnt) j = cnt - 1;
                int64_t t = coords[k];
                coords[k] = coords[j];
                coords[j] = t;
            }

        for (int64_t c = 0; c < want; c++) {
            int64_t k = coords[c];
            double x0 = oc_buf_get(&x, k);
            double h = o.h * fmax(1.0, fabs(x0));
            double xp = x0 + h, xm = x0 - h;
            oc_buf_set(&x, k, xp);
            cr_assert_eq(oc_interp_set(fi, wrt[i], &x, &err), OC_OK, "%s", err.msg);
            double fp = run_loss(fi, loss.id);
            oc_buf_set(&x, k, xm);
            cr_assert_eq(oc_interp_set(fi, wrt[i], &x, &err), OC_OK, "%s", err.msg);
            double fm = run_loss(fi, loss.id);
            oc_buf_set(&x, k, x0);
            double num = (fp - fm) / (xp - xm);
            double an = oc_buf_get(ga, k);
            double mag = fmax(fabs(an), fabs(num));
            double noise = 32 * DBL_EPSILON * fmax(1.0, fmax(fabs(fp), fabs(fm))) / h;
            double diff = fabs(an - num);
            double lim = o.atol + noise + o.rtol * mag;
            double ratio = isfinite(diff) ? diff / lim : INFINITY;
            if (isnan(an) != isnan(num)) ratio = INFINITY;
            r.nchecked++;
            if (mag > 100 * (o.atol + noise)) r.nsignificant++;
            if (mag > 0 && isfinite(diff) && diff / mag > r.worst_rel) r.worst_rel = diff / mag;
            char cs[160];
            if (ratio > r.worst) {
                coord_str(&wn->shape, k, cs, sizeof cs);
                snprintf(r.where, sizeof r.where, "d %s / d %s%s", output, wrt[i], cs);
            }
            if (ratio > r.worst) r.worst = ratio;
            if (!(ratio <= 1)) {
                if (r.nbad < 8 && !o.quiet) {
                    coord_str(&wn->shape, k, cs, sizeof cs);
                    fprintf(stderr,
                            "gradcheck: d %s / d %s%s: analytic %.12g, numeric %.12g "
                            "(diff %.3g, allowed %.3g)\n",
                            output, wrt[i], cs, an, num, diff, lim);
                }
                r.nbad++;
            }
        }
        /* restore the unperturbed value for the next tensor */
        cr_assert_eq(oc_interp_set(fi, wrt[i], &base, &err), OC_OK, "%s", err.msg);
        free(coords);
        oc_buf_free(&x);
        oc_buf_free(&base);
    }
    if (r.nbad && !o.quiet)
        fprintf(stderr, "gradcheck: %s: %d of %d coordinates differ (worst at %s)\n", output,
                r.nbad, r.nchecked, r.where);
    else if (getenv("OC_GRADCHECK_VERBOSE"))
        fprintf(stderr, "gradcheck: %s: %d coordinates (%d significant), worst %.3g of the tolerance "
                "(at %s), worst relative error %.3g\n", output, r.nchecked, r.nsignificant, r.worst,
                r.where, r.worst_rel);
    oc_interp_free(fi);
    oc_interp_free(bi);
    oc_graph_free(bg);
    oc_graph_free(fg);
    free(ids);
    free(grads);
    if (rep) *rep = r;
    return r.nbad == 0;
}

/* ---------------------------------------------------------------- building cases */

void oc_gc_begin(struct oc_gc_case *t, const char *graph_name, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->g = oc_graph_new(graph_name);
    cr_assert_not_null(t->g);
    t->rng = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    t->opts = oc_gc_defaults();
}

uint64_t oc_gc_next(struct oc_gc_case *t) { return mix(&t->rng); }

double oc_gc_uniform(struct oc_gc_case *t, double lo, double hi)
{
    return lo + (hi - lo) * unit(&t->rng);
}

int64_t oc_gc_dim(struct oc_gc_case *t, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(mix(&t->rng) % (uint64_t)(hi - lo + 1));
}

struct oc_shape oc_gc_shape(struct oc_gc_case *t, int rmin, int rmax, int64_t dmin, int64_t dmax)
{
    struct oc_shape s;
    memset(&s, 0, sizeof s);
    s.rank = (int)oc_gc_dim(t, rmin, rmax);
    for (int i = 0; i < s.rank; i++) s.dim[i] = oc_gc_dim(t, dmin, dmax);
    return s;
}

struct oc_buf oc_gc_values(struct oc_gc_case *t, struct oc_shape s, enum oc_gc_vals how,
                           double lo, double hi)
{
    struct oc_buf b;
    cr_assert_eq(oc_buf_alloc(&b, OC_F64, &s), OC_OK);
    int64_t n = oc_shape_numel(&s);
    for (int64_t i = 0; i < n; i++) {
        double v = oc_gc_uniform(t, lo, hi);
        if (how == OC_GC_AWAY && (mix(&t->rng) & 1)) v = -v;
        if (how == OC_GC_DISTINCT) v = lo * (double)i - lo * (double)n / 2;
        if (how == OC_GC_BINARY) v = (double)(mix(&t->rng) & 1);
        oc_buf_set(&b, i, v);
    }
    if (how == OC_GC_DISTINCT)
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(mix(&t->rng) % (uint64_t)(i + 1));
            double a = oc_buf_get(&b, i);
            oc_buf_set(&b, i, oc_buf_get(&b, j));
            oc_buf_set(&b, j, a);
        }
    return b;
}

static void add_bind(struct oc_gc_case *t, const char *name, struct oc_buf b, int diff)
{
    cr_assert_lt(t->n, OC_GC_MAXV, "gradcheck case: too many bound tensors");
    t->v[t->n] = b;
    t->b[t->n] = (struct oc_test_bind){name, &t->v[t->n]};
    t->n++;
    if (diff) t->names[t->nwrt++] = name;
}

oc_tensor oc_gc_input(struct oc_gc_case *t, const char *name, enum oc_dtype dt, struct oc_shape s,
                      enum oc_gc_vals how, double lo, double hi, int diff)
{
    add_bind(t, name, oc_gc_values(t, s, how, lo, hi), diff);
    return oc_input(t->g, name, dt, s);
}

oc_tensor oc_gc_near(struct oc_gc_case *t, const char *name, struct oc_shape s, double lo,
                     double hi)
{
    cr_assert_gt(t->n, 0);
    const struct oc_buf *prev = &t->v[t->n - 1];
    cr_assert(oc_shape_eq(&prev->shape, &s), "oc_gc_near: shape differs from the previous input");
    oc_tensor x = oc_gc_input(t, name, OC_F64, s, OC_GC_AWAY, lo, hi, 1);
    struct oc_buf *v = &t->v[t->n - 1];
    for (int64_t i = 0; i < oc_shape_numel(&s); i++)
        oc_buf_set(v, i, oc_buf_get(v, i) + oc_buf_get(prev, i));
    return x;
}

oc_tensor oc_gc_index(struct oc_gc_case *t, const char *name, struct oc_shape s, int hi)
{
    struct oc_buf b;
    cr_assert_eq(oc_buf_alloc(&b, OC_I32, &s), OC_OK);
    for (int64_t i = 0; i < oc_shape_numel(&s); i++)
        oc_buf_set(&b, i, (double)(mix(&t->rng) % (uint64_t)hi));
    add_bind(t, name, b, 0);
    return oc_input(t->g, name, OC_I32, s);
}

void oc_gc_bind(struct oc_gc_case *t, const char *name, enum oc_gc_vals how, double lo,
                double hi, int diff)
{
    int id = oc_graph_find_named(t->g, name);
    cr_assert(id >= 0, "gradcheck case: no input/param/state named \"%s\"", name);
    add_bind(t, t->g->nodes[id]->attrs.name, oc_gc_values(t, t->g->nodes[id]->shape, how, lo, hi),
             diff);
}

int oc_gc_check(struct oc_gc_case *t, oc_tensor y, const char *what)
{
    cr_assert_eq(oc_graph_status(t->g), OC_OK, "%s: build: %s", what, t->g->err.msg);
    oc_output(t->g, "y", y);
    struct oc_gc_opts o = t->opts;
    o.seed = mix(&t->rng);
    struct oc_gc_report r;
    int ok = oc_gradcheck(t->g, "y", t->b, t->n, t->names, t->nwrt, &o, &r);
    cr_expect(ok, "%s: %d of %d coordinates differ, worst at %s", what, r.nbad, r.nchecked,
              r.where);
    cr_expect_gt(r.nchecked, 0, "%s: nothing checked", what);
    t->last = r;
    for (int i = 0; i < t->n; i++) oc_buf_free(&t->v[i]);
    oc_graph_free(t->g);
    t->g = NULL;
    return ok;
}

double oc_gc_kink_margin(const struct oc_graph *g, const struct oc_test_bind *binds, int nbinds)
{
    struct oc_graph *c = oc_gc_strip_assigns(g, NULL);
    struct oc_interp *it = oc_interp_new(c, 1);
    cr_assert_not_null(it);
    bind_all(it, binds, nbinds);
    struct oc_err err = {0};
    cr_assert_eq(oc_interp_run(it, 0, &err), OC_OK, "kink margin: %s", err.msg);
    double m = INFINITY;
    for (int i = 0; i < c->nnodes; i++) {
        const struct oc_node *n = c->nodes[i];
        if (n->op != OC_OP_RELU && n->op != OC_OP_MAX && n->op != OC_OP_MIN) continue;
        const struct oc_buf *a = oc_interp_value(it, n->inputs[0]);
        const struct oc_buf *b = n->op == OC_OP_RELU ? NULL : oc_interp_value(it, n->inputs[1]);
        for (int64_t k = 0; k < oc_shape_numel(&n->shape); k++) {
            double d = fabs(oc_buf_get(a, k) - (b ? oc_buf_get(b, k) : 0.0));
            if (d < m) m = d;
        }
    }
    oc_interp_free(it);
    oc_graph_free(c);
    return m;
}
