/* kir.c - building, printing and hashing the kernel IR (see kir.h).
 *
 * Fusion decides which graph nodes a kernel computes; this file turns that
 * decision into the kernel's expressions by inlining: the value of node n at
 * coordinates c (index expressions over the loop variables) is built from its
 * operands at coordinates derived through n's index map. Layout ops only
 * transform coordinates, so they cost nothing in the generated code; nodes
 * owned by other kernels become loads. Everything is interned, so a node
 * reached along several paths at the same coordinates is one value. A build
 * fails with the reason when the members cannot form one kernel (fusion
 * then rejects that merge and logs why).
 */
#include "kir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

/* ---------------------------------------------------------------- helpers */

static int64_t fdiv(int64_t a, int64_t c) { return a / c - ((a % c != 0) && ((a < 0) != (c < 0))); }

double oc_kir_round(enum oc_dtype dt, double v)
{
    switch (dt) {
    case OC_F32: return (double)(float)v;
    case OC_F64: return v;
    case OC_I32:
        if (isnan(v)) return 0;
        v = trunc(v);
        return v < -2147483648.0 ? -2147483648.0 : v > 2147483647.0 ? 2147483647.0 : v;
    case OC_U8:
        if (isnan(v)) return 0;
        v = trunc(v);
        return v < 0 ? 0 : v > 255 ? 255 : v;
    default: return v;
    }
}

static int is_reduction(enum oc_op op)
{
    return op == OC_OP_SUM || op == OC_OP_REDUCE_MAX || op == OC_OP_ARGMAX;
}

static uint32_t red_axes(const struct oc_node *n)
{
    return n->op == OC_OP_ARGMAX ? 1u << n->attrs.axis : n->attrs.axes;
}

/* ---------------------------------------------------------------- interning */

/* An open-addressing table from a key (a few 64-bit words) to an object. */
struct ient {
    uint64_t h;
    int nkey;
    const uint64_t *key;
    void *obj;
};
struct itab {
    size_t cap, n;
    struct ient *e;
};

static uint64_t hkey(const uint64_t *key, int n) { return oc_hash64(key, sizeof *key * (size_t)n, 0); }

static void *itab_get(const struct itab *t, const uint64_t *key, int n, uint64_t h)
{
    if (!t->cap) return NULL;
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const struct ient *e = &t->e[i];
        if (!e->key) return NULL;
        if (e->h == h && e->nkey == n && !memcmp(e->key, key, sizeof *key * (size_t)n))
            return e->obj;
    }
}

static int itab_put(struct itab *t, struct oc_arena *keys, const uint64_t *key, int n, uint64_t h,
                    void *obj)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        struct ient *ne = calloc(nc, sizeof *ne);
        if (!ne) return -1;
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->e[i].key) continue;
            size_t j = t->e[i].h & (nc - 1);
            while (ne[j].key) j = (j + 1) & (nc - 1);
            ne[j] = t->e[i];
        }
        free(t->e);
        t->e = ne;
        t->cap = nc;
    }
    uint64_t *k = oc_arena_alloc(keys, sizeof *k * (size_t)(n ? n : 1));
    if (!k) return -1;
    memcpy(k, key, sizeof *key * (size_t)n);
    size_t i = h & (t->cap - 1);
    while (t->e[i].key) i = (i + 1) & (t->cap - 1);
    t->e[i] = (struct ient){h, n, k, obj};
    t->n++;
    return 0;
}

/* A growable array of pointers. */
struct pvec {
    int n, cap;
    void **p;
};
static int pvec_push(struct pvec *v, void *x)
{
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 64;
        void **q = realloc(v->p, sizeof *q * (size_t)nc);
        if (!q) return -1;
        v->p = q;
        v->cap = nc;
    }
    v->p[v->n++] = x;
    return 0;
}

/* ---------------------------------------------------------------- the builder */

struct kb {
    struct oc_arena *a;   /* where the kernel lives */
    struct oc_arena keys; /* interning keys (freed with the builder) */
    const struct oc_graph *g;
    const int *where;
    int self;
    struct oc_err *err;
    int failed;
    struct itab tatom, tix, tval, tmemo;
    struct pvec atoms, ixs, vals;
    int rank;
    int64_t ext[OC_MAX_RANK];
    uint32_t rmask, inner_mask;
    const struct oc_kix *var[OC_MAX_RANK];
    const struct oc_kix *olin, *flin;
    int *red_of; /* per graph node: reduction index or -1 */
    int *slot_of;
    struct oc_kslot *slots;
    int nslot, slotcap;
    struct oc_kred *reds;
    const struct oc_kix **red_row; /* per reduction: the linear index of its own row */
    int nred;
    int depth;
};

static void *fail(struct kb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *fail(struct kb *b, const char *fmt, ...)
{
    if (!b->failed) {
        va_list ap;
        va_start(ap, fmt);
        oc_err_setv(b->err, OC_ERR_UNSUPPORTED, fmt, ap);
        va_end(ap);
    }
    b->failed = 1;
    return NULL;
}

static void *nomem(struct kb *b)
{
    if (!b->failed) oc_err_set(b->err, OC_ERR_NOMEM, "kernel IR: out of memory");
    b->failed = 1;
    return NULL;
}

/* ---------------------------------------------------------------- index expressions */

static const struct oc_kix *ix_make(struct kb *b, int64_t c0, int n, int64_t *coef,
                                    const struct oc_katom **atom);

static const struct oc_katom *atom_make(struct kb *b, enum oc_katom_kind kind, int var,
                                        const struct oc_kix *x, const struct oc_kval *v, int64_t c)
{
    uint64_t key[5] = {(uint64_t)kind, (uint64_t)var, x ? (uint64_t)x->id : ~0ull,
                       v ? (uint64_t)v->id : ~0ull, (uint64_t)c};
    uint64_t h = hkey(key, 5);
    struct oc_katom *at = itab_get(&b->tatom, key, 5, h);
    if (at) return at;
    at = oc_arena_alloc(b->a, sizeof *at);
    if (!at) return nomem(b);
    at->id = b->atoms.n;
    at->kind = kind;
    at->var = var;
    at->x = x;
    at->v = v;
    at->c = c;
    switch (kind) {
    case OC_KA_VAR: at->lo = 0, at->hi = b->ext[var] > 0 ? b->ext[var] - 1 : 0; break;
    case OC_KA_DIV: at->lo = fdiv(x->lo, c), at->hi = fdiv(x->hi, c); break;
    case OC_KA_MOD: at->lo = 0, at->hi = c - 1; break;
    case OC_KA_VAL: at->lo = 0, at->hi = c - 1; break;
    }
    if (pvec_push(&b->atoms, at) || itab_put(&b->tatom, &b->keys, key, 5, h, at)) return nomem(b);
    return at;
}

static uint32_t atom_varmask(const struct oc_katom *at)
{
    switch (at->kind) {
    case OC_KA_VAR: return 1u << at->var;
    case OC_KA_DIV:
    case OC_KA_MOD: return at->x->varmask;
    case OC_KA_VAL: return at->v->varmask;
    }
    return 0;
}

static const struct oc_kix *ix_make(struct kb *b, int64_t c0, int n, int64_t *coef,
                                    const struct oc_katom **atom)
{
    if (b->failed) return NULL;
    /* sort by atom id (insertion sort: n is tiny), merge equal atoms, drop zeros */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && atom[j - 1]->id > atom[j]->id; j--) {
            const struct oc_katom *ta = atom[j];
            atom[j] = atom[j - 1], atom[j - 1] = ta;
            int64_t tc = coef[j];
            coef[j] = coef[j - 1], coef[j - 1] = tc;
        }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && atom[m - 1] == atom[i]) {
            coef[m - 1] += coef[i];
        } else {
            atom[m] = atom[i];
            coef[m] = coef[i];
            m++;
        }
    }
    int k = 0;
    for (int i = 0; i < m; i++)
        if (coef[i]) {
            atom[k] = atom[i];
            coef[k] = coef[i];
            k++;
        }
    n = k;
    /* c*floor(x/c) + (x mod c) = x: recombine what delinearizing split */
    for (int i = 0; i < n; i++) {
        if (atom[i]->kind != OC_KA_MOD) continue;
        for (int j = 0; j < n; j++) {
            const struct oc_katom *d = atom[j];
            if (d->kind != OC_KA_DIV || d->x != atom[i]->x || d->c != atom[i]->c ||
                coef[j] != coef[i] * d->c)
                continue;
            const struct oc_kix *x = d->x;
            int64_t mc = coef[i];
            if (n - 2 + x->nterm > 64) break;
            int64_t nc[64];
            const struct oc_katom *na[64];
            int q = 0;
            for (int t = 0; t < n; t++)
                if (t != i && t != j) nc[q] = coef[t], na[q++] = atom[t];
            for (int t = 0; t < x->nterm; t++) nc[q] = mc * x->coef[t], na[q++] = x->atom[t];
            return ix_make(b, c0 + mc * x->c0, q, nc, na);
        }
    }
    uint64_t key[1 + 2 * 64];
    if (n > 64) return fail(b, "kernel IR: index expression with %d terms", n);
    key[0] = (uint64_t)c0;
    for (int i = 0; i < n; i++) {
        key[1 + 2 * i] = (uint64_t)coef[i];
        key[2 + 2 * i] = (uint64_t)atom[i]->id;
    }
    uint64_t h = hkey(key, 1 + 2 * n);
    struct oc_kix *x = itab_get(&b->tix, key, 1 + 2 * n, h);
    if (x) return x;
    x = oc_arena_alloc(b->a, sizeof *x);
    int64_t *cf = oc_arena_alloc(b->a, sizeof *cf * (size_t)(n ? n : 1));
    const struct oc_katom **at = oc_arena_alloc(b->a, sizeof *at * (size_t)(n ? n : 1));
    if (!x || !cf || !at) return nomem(b);
    x->id = b->ixs.n;
    x->c0 = c0;
    x->nterm = n;
    if (n) {
        memcpy(cf, coef, sizeof *cf * (size_t)n);
        memcpy(at, atom, sizeof *at * (size_t)n);
    }
    x->coef = cf;
    x->atom = (const struct oc_katom *const *)at;
    x->lo = x->hi = c0;
    for (int i = 0; i < n; i++) {
        int64_t a1 = cf[i] * at[i]->lo, a2 = cf[i] * at[i]->hi;
        x->lo += a1 < a2 ? a1 : a2;
        x->hi += a1 < a2 ? a2 : a1;
        x->varmask |= atom_varmask(at[i]);
    }
    if (pvec_push(&b->ixs, x) || itab_put(&b->tix, &b->keys, key, 1 + 2 * n, h, x))
        return nomem(b);
    return x;
}

static const struct oc_kix *ix_const(struct kb *b, int64_t c) { return ix_make(b, c, 0, NULL, NULL); }

static const struct oc_kix *ix_atom(struct kb *b, const struct oc_katom *at)
{
    if (!at) return NULL;
    int64_t one = 1;
    return ix_make(b, 0, 1, &one, &at);
}

static const struct oc_kix *ix_var(struct kb *b, int var)
{
    if (b->ext[var] <= 1) return ix_const(b, 0);
    return ix_atom(b, atom_make(b, OC_KA_VAR, var, NULL, NULL, 0));
}

/* s*a + t*bb + c */
static const struct oc_kix *ix_lin2(struct kb *b, int64_t s, const struct oc_kix *a, int64_t t,
                                    const struct oc_kix *bb, int64_t c)
{
    if (b->failed || !a || (t && !bb)) return NULL;
    int n = a->nterm + (t ? bb->nterm : 0);
    if (n > 64) return fail(b, "kernel IR: index expression too long");
    int64_t coef[64];
    const struct oc_katom *atom[64];
    int k = 0;
    for (int i = 0; i < a->nterm; i++) coef[k] = s * a->coef[i], atom[k++] = a->atom[i];
    int64_t c0 = s * a->c0 + c;
    if (t) {
        for (int i = 0; i < bb->nterm; i++) coef[k] = t * bb->coef[i], atom[k++] = bb->atom[i];
        c0 += t * bb->c0;
    }
    return ix_make(b, c0, k, coef, atom);
}

static const struct oc_kix *ix_add(struct kb *b, const struct oc_kix *a, const struct oc_kix *c)
{
    return ix_lin2(b, 1, a, 1, c, 0);
}
static const struct oc_kix *ix_addc(struct kb *b, const struct oc_kix *a, int64_t c)
{
    return ix_lin2(b, 1, a, 0, NULL, c);
}

/* Splits x = c*Q + rem with Q collecting the terms whose coefficient c
 * divides (and the quotient of the constant), rem the rest (0 <= rem.c0 < c). */
static int ix_split(struct kb *b, const struct oc_kix *x, int64_t c, const struct oc_kix **q,
                    const struct oc_kix **rem)
{
    int64_t qc[64], rc[64];
    const struct oc_katom *qa[64], *ra[64];
    int nq = 0, nr = 0;
    for (int i = 0; i < x->nterm; i++) {
        if (x->coef[i] % c == 0)
            qc[nq] = x->coef[i] / c, qa[nq++] = x->atom[i];
        else
            rc[nr] = x->coef[i], ra[nr++] = x->atom[i];
    }
    int64_t q0 = fdiv(x->c0, c);
    *q = ix_make(b, q0, nq, qc, qa);
    *rem = ix_make(b, x->c0 - q0 * c, nr, rc, ra);
    return *q && *rem ? 0 : -1;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Writes x = d*Y + small with d | c, d > 1 and 0 <= small < d, when the
 * terms split that way (the larger coefficients share the factor d, the
 * rest stays below it): then floor(x/c) = floor(Y/(c/d)) and
 * x mod c = d*(Y mod (c/d)) + small. Returns d, or 0. */
static int64_t ix_factor(struct kb *b, const struct oc_kix *x, int64_t c, const struct oc_kix **y,
                         const struct oc_kix **small)
{
    int n = x->nterm;
    int ord[64];
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++) /* by |coef| descending */
        for (int j = i; j > 0 && llabs(x->coef[ord[j - 1]]) < llabs(x->coef[ord[j]]); j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    for (int k = 1; k <= n; k++) {
        int64_t d = c;
        for (int i = 0; i < k; i++) d = gcd64(d, x->coef[ord[i]]);
        if (d <= 1) return 0;
        int64_t lo = x->c0, hi = x->c0;
        for (int i = k; i < n; i++) {
            const struct oc_katom *a = x->atom[ord[i]];
            int64_t a1 = x->coef[ord[i]] * a->lo, a2 = x->coef[ord[i]] * a->hi;
            lo += a1 < a2 ? a1 : a2;
            hi += a1 < a2 ? a2 : a1;
        }
        if (lo < 0 || hi >= d) continue;
        int64_t yc[64], sc[64];
        const struct oc_katom *ya[64], *sa[64];
        int ny = 0, ns = 0;
        for (int i = 0; i < n; i++) {
            int t = ord[i];
            if (i < k) yc[ny] = x->coef[t] / d, ya[ny++] = x->atom[t];
            else sc[ns] = x->coef[t], sa[ns++] = x->atom[t];
        }
        *y = ix_make(b, 0, ny, yc, ya);
        *small = ix_make(b, x->c0, ns, sc, sa);
        return *y && *small ? d : 0;
    }
    return 0;
}

/* floor(x / c) for c > 0; exact for every integer x, since
 * floor((c*Q + rem) / c) = Q + floor(rem / c). */
static const struct oc_kix *ix_div(struct kb *b, const struct oc_kix *x, int64_t c)
{
    if (b->failed || !x) return NULL;
    if (c == 1) return x;
    const struct oc_kix *q, *rem, *y, *small;
    if (ix_split(b, x, c, &q, &rem)) return NULL;
    int64_t k1 = fdiv(rem->lo, c), k2 = fdiv(rem->hi, c);
    if (k1 == k2) return ix_addc(b, q, k1);
    int64_t d = ix_factor(b, rem, c, &y, &small);
    if (d) return ix_add(b, q, ix_div(b, y, c / d));
    /* floor(floor(y/d)/c) = floor(y/(d*c)) */
    if (rem->c0 == 0 && rem->nterm == 1 && rem->coef[0] == 1 && rem->atom[0]->kind == OC_KA_DIV)
        return ix_add(b, q, ix_atom(b, atom_make(b, OC_KA_DIV, 0, rem->atom[0]->x, NULL,
                                                 rem->atom[0]->c * c)));
    return ix_add(b, q, ix_atom(b, atom_make(b, OC_KA_DIV, 0, rem, NULL, c)));
}

/* x mod c (floor modulo, in [0, c-1]) for c > 0. */
static const struct oc_kix *ix_mod(struct kb *b, const struct oc_kix *x, int64_t c)
{
    if (b->failed || !x) return NULL;
    if (c == 1) return ix_const(b, 0);
    const struct oc_kix *q, *rem;
    if (ix_split(b, x, c, &q, &rem)) return NULL;
    int64_t k1 = fdiv(rem->lo, c), k2 = fdiv(rem->hi, c);
    if (k1 == k2) return ix_addc(b, rem, -k1 * c);
    const struct oc_kix *y, *small;
    int64_t d = ix_factor(b, rem, c, &y, &small);
    if (d) return ix_lin2(b, d, ix_mod(b, y, c / d), 1, small, 0);
    return ix_atom(b, atom_make(b, OC_KA_MOD, 0, rem, NULL, c));
}

static const struct oc_kix *ix_lin(struct kb *b, const struct oc_kix *const *c,
                                   const struct oc_shape *s)
{
    int64_t st[OC_MAX_RANK];
    oc_shape_strides(s, st);
    const struct oc_kix *L = ix_const(b, 0);
    for (int d = 0; d < s->rank; d++)
        if (s->dim[d] != 1) L = ix_lin2(b, 1, L, st[d], c[d], 0);
    return L;
}

static void ix_delin(struct kb *b, const struct oc_kix *L, const struct oc_shape *s,
                     const struct oc_kix **c)
{
    int64_t st[OC_MAX_RANK];
    oc_shape_strides(s, st);
    for (int d = 0; d < s->rank; d++)
        c[d] = s->dim[d] <= 1 ? ix_const(b, 0) : ix_mod(b, ix_div(b, L, st[d]), s->dim[d]);
}

/* ---------------------------------------------------------------- values */

static const struct oc_kval *kv_intern(struct kb *b, struct oc_kval *t)
{
    if (b->failed) return NULL;
    for (int i = 0; i < t->nargs; i++)
        if (!t->arg[i]) return NULL;
    uint64_t cbits;
    memcpy(&cbits, &t->c, sizeof cbits);
    uint64_t key[13] = {(uint64_t)t->kind, (uint64_t)t->dtype, (uint64_t)t->op, (uint64_t)t->nargs,
                        t->nargs > 0 ? (uint64_t)t->arg[0]->id : ~0ull,
                        t->nargs > 1 ? (uint64_t)t->arg[1]->id : ~0ull,
                        t->nargs > 2 ? (uint64_t)t->arg[2]->id : ~0ull, cbits,
                        (uint64_t)(int64_t)t->slot * 65536 + (uint64_t)(int64_t)t->acc,
                        t->ix ? (uint64_t)t->ix->id : ~0ull, (uint64_t)t->lo, (uint64_t)t->hi,
                        t->seed};
    uint64_t h = hkey(key, 13);
    struct oc_kval *v = itab_get(&b->tval, key, 13, h);
    if (v) return v;
    v = oc_arena_alloc(b->a, sizeof *v);
    if (!v) return nomem(b);
    *v = *t;
    v->id = b->vals.n;
    v->varmask = t->ix ? t->ix->varmask : 0;
    v->after = 0;
    for (int i = 0; i < t->nargs; i++) {
        v->varmask |= t->arg[i]->varmask;
        if (t->arg[i]->after > v->after) v->after = t->arg[i]->after;
    }
    if (t->kind == OC_KV_ACC) {
        v->after = b->reds[t->acc].stage + 1;
        v->varmask = ~b->inner_mask & ((1u << b->rank) - 1);
    }
    if (pvec_push(&b->vals, v) || itab_put(&b->tval, &b->keys, key, 13, h, v)) return nomem(b);
    return v;
}

static struct oc_kval kv_tmpl(enum oc_kval_kind kind, int dtype)
{
    struct oc_kval t;
    memset(&t, 0, sizeof t);
    t.kind = kind;
    t.dtype = dtype;
    t.slot = -1;
    t.acc = -1;
    return t;
}

static const struct oc_kval *kv_const(struct kb *b, int dtype, double c)
{
    struct oc_kval t = kv_tmpl(OC_KV_CONST, dtype);
    t.c = c;
    return kv_intern(b, &t);
}

static const struct oc_kval *kv_op(struct kb *b, enum oc_op op, int dtype, int nargs,
                                   const struct oc_kval *a0, const struct oc_kval *a1,
                                   const struct oc_kval *a2)
{
    /* |x - y| = |y - x| exactly: one canonical operand order lets a kernel
     * that needs both (a pairwise kernel read at (i,j) and at (j,i), as
     * MMCE's gradient is) compute it once */
    if (op == OC_OP_ABS && a0 && a0->kind == OC_KV_OP && a0->op == OC_OP_SUB &&
        (dtype == OC_F32 || dtype == OC_F64) && a0->arg[0]->id > a0->arg[1]->id)
        a0 = kv_op(b, OC_OP_SUB, a0->dtype, 2, a0->arg[1], a0->arg[0], NULL);
    struct oc_kval t = kv_tmpl(OC_KV_OP, dtype);
    t.op = op;
    t.nargs = nargs;
    t.arg[0] = a0, t.arg[1] = a1, t.arg[2] = a2;
    return kv_intern(b, &t);
}

static const struct oc_kval *kv_sel(struct kb *b, const struct oc_kval *c, const struct oc_kval *x,
                                    const struct oc_kval *y)
{
    if (!c || !x || !y) return NULL;
    if (c->kind == OC_KV_CONST) return c->c != 0 ? x : y;
    if (x == y) return x;
    struct oc_kval t = kv_tmpl(OC_KV_SEL, x->dtype);
    t.nargs = 3;
    t.arg[0] = c, t.arg[1] = x, t.arg[2] = y;
    return kv_intern(b, &t);
}

static const struct oc_kval *kv_and(struct kb *b, const struct oc_kval *x, const struct oc_kval *y)
{
    if (!x || !y) return NULL;
    if (x->kind == OC_KV_CONST) return x->c != 0 ? y : x;
    if (y->kind == OC_KV_CONST) return y->c != 0 ? x : y;
    struct oc_kval t = kv_tmpl(OC_KV_AND, OC_KBOOL);
    t.nargs = 2;
    t.arg[0] = x, t.arg[1] = y;
    return kv_intern(b, &t);
}

static const struct oc_kval *kv_inrange(struct kb *b, const struct oc_kix *x, int64_t lo,
                                        int64_t hi)
{
    if (!x) return NULL;
    if (x->lo >= lo && x->hi <= hi) return kv_const(b, OC_KBOOL, 1);
    if (x->hi < lo || x->lo > hi) return kv_const(b, OC_KBOOL, 0);
    struct oc_kval t = kv_tmpl(OC_KV_INRANGE, OC_KBOOL);
    t.ix = x;
    t.lo = lo, t.hi = hi;
    return kv_intern(b, &t);
}

static int slot_for(struct kb *b, int node, int written)
{
    if (b->slot_of[node] >= 0) return b->slot_of[node];
    if (b->nslot == b->slotcap) {
        int nc = b->slotcap ? b->slotcap * 2 : 8;
        struct oc_kslot *q = realloc(b->slots, sizeof *q * (size_t)nc);
        if (!q) return -1;
        b->slots = q;
        b->slotcap = nc;
    }
    const struct oc_node *n = b->g->nodes[node];
    b->slots[b->nslot] = (struct oc_kslot){node, -1, n->dtype, oc_shape_numel(&n->shape), written};
    b->slot_of[node] = b->nslot;
    return b->nslot++;
}

static const struct oc_kval *kv_load(struct kb *b, int node, const struct oc_kix *ix)
{
    if (!ix || b->failed) return NULL;
    int s = slot_for(b, node, 0);
    if (s < 0) return nomem(b);
    struct oc_kval t = kv_tmpl(OC_KV_LOAD, b->g->nodes[node]->dtype);
    t.slot = s;
    t.ix = ix;
    return kv_intern(b, &t);
}

/* ---------------------------------------------------------------- inlining graph nodes */

static const struct oc_kval *bval(struct kb *b, int nid, const struct oc_kix *const *c);

static const struct oc_kval *bval_op(struct kb *b, const struct oc_node *n,
                                     const struct oc_kix *const *c)
{
    const struct oc_graph *g = b->g;
    const struct oc_attrs *at = &n->attrs;
    const struct oc_node *in0 = n->ninputs > 0 ? g->nodes[n->inputs[0]] : NULL;
    const struct oc_kix *ci[OC_MAX_RANK];
    enum oc_op op = n->op;

    switch (op) {
    case OC_OP_NEG: case OC_OP_EXP: case OC_OP_LOG: case OC_OP_SQRT: case OC_OP_RSQRT:
    case OC_OP_RECIP: case OC_OP_ABS: case OC_OP_SIGN: case OC_OP_RELU: case OC_OP_SIGMOID:
    case OC_OP_TANH: case OC_OP_SOFTPLUS: case OC_OP_LOG1P:
        return kv_op(b, op, n->dtype, 1, bval(b, n->inputs[0], c), NULL, NULL);
    case OC_OP_STOP_GRADIENT:
        return bval(b, n->inputs[0], c);
    case OC_OP_CAST: {
        const struct oc_kval *x = bval(b, n->inputs[0], c);
        if (!x || x->dtype == (int)n->dtype) return x;
        return kv_op(b, op, n->dtype, 1, x, NULL, NULL);
    }
    case OC_OP_ADD: case OC_OP_SUB: case OC_OP_MUL: case OC_OP_DIV: case OC_OP_POW:
    case OC_OP_MAX: case OC_OP_MIN: case OC_OP_LT: case OC_OP_LE: case OC_OP_EQ: case OC_OP_NE:
    case OC_OP_GE: case OC_OP_GT:
        return kv_op(b, op, n->dtype, 2, bval(b, n->inputs[0], c), bval(b, n->inputs[1], c), NULL);
    case OC_OP_SELECT: {
        const struct oc_kval *cond = bval(b, n->inputs[0], c);
        if (!cond) return NULL;
        const struct oc_kval *p =
            kv_op(b, OC_OP_NE, OC_KBOOL, 2, cond, kv_const(b, cond->dtype, 0), NULL);
        return kv_sel(b, p, bval(b, n->inputs[1], c), bval(b, n->inputs[2], c));
    }
    case OC_OP_RESHAPE: {
        const struct oc_kix *L = ix_lin(b, c, &n->shape);
        ix_delin(b, L, &in0->shape, ci);
        return bval(b, in0->id, ci);
    }
    case OC_OP_PERMUTE:
        for (int i = 0; i < n->shape.rank; i++) ci[at->perm[i]] = c[i];
        return bval(b, in0->id, ci);
    case OC_OP_BROADCAST: {
        int off = n->shape.rank - in0->shape.rank;
        for (int i = 0; i < in0->shape.rank; i++)
            ci[i] = in0->shape.dim[i] == 1 ? ix_const(b, 0) : c[i + off];
        return bval(b, in0->id, ci);
    }
    case OC_OP_SLICE:
        for (int i = 0; i < n->shape.rank; i++)
            ci[i] = ix_lin2(b, at->step[i], c[i], 0, NULL, at->start[i]);
        return bval(b, in0->id, ci);
    case OC_OP_PAD: {
        const struct oc_kval *ok = kv_const(b, OC_KBOOL, 1);
        for (int i = 0; i < n->shape.rank; i++) {
            ci[i] = ix_addc(b, c[i], -at->lo[i]);
            ok = kv_and(b, ok, kv_inrange(b, ci[i], 0, in0->shape.dim[i] - 1));
        }
        const struct oc_kval *padv = kv_const(b, n->dtype, oc_kir_round(n->dtype, at->pad_value));
        if (ok && ok->kind == OC_KV_CONST && ok->c == 0) return padv;
        return kv_sel(b, ok, bval(b, in0->id, ci), padv);
    }
    case OC_OP_CONCAT: {
        int ax = at->axis;
        int64_t off[65];
        off[0] = 0;
        for (int k = 0; k < n->ninputs; k++)
            off[k + 1] = off[k] + g->nodes[n->inputs[k]]->shape.dim[ax];
        const struct oc_kval *v = NULL;
        for (int k = n->ninputs - 1; k >= 0; k--) {
            const struct oc_node *src = g->nodes[n->inputs[k]];
            if (src->shape.dim[ax] == 0) continue;
            for (int i = 0; i < n->shape.rank; i++) ci[i] = c[i];
            ci[ax] = ix_addc(b, c[ax], -off[k]);
            const struct oc_kval *x = bval(b, src->id, ci);
            v = v ? kv_sel(b, kv_inrange(b, c[ax], off[k], off[k + 1] - 1), x, v) : x;
            if (!v) return NULL;
        }
        return v;
    }
    case OC_OP_RNG_NORMAL:
    case OC_OP_RNG_UNIFORM: {
        struct oc_kval t = kv_tmpl(OC_KV_RNG, n->dtype);
        t.op = op;
        t.seed = at->seed;
        t.nargs = 1;
        t.arg[0] = bval(b, in0->id, NULL);
        t.ix = ix_lin(b, c, &n->shape);
        if (!t.ix) return NULL;
        return kv_intern(b, &t);
    }
    case OC_OP_ONE_HOT: {
        int r = n->shape.rank;
        const struct oc_kval *idx = bval(b, in0->id, c);
        struct oc_kval t = kv_tmpl(OC_KV_INDEX, OC_I32);
        t.ix = c[r - 1];
        const struct oc_kval *j = kv_intern(b, &t);
        const struct oc_kval *p = kv_op(b, OC_OP_EQ, OC_KBOOL, 2, idx, j, NULL);
        return kv_sel(b, p, kv_const(b, n->dtype, 1), kv_const(b, n->dtype, 0));
    }
    case OC_OP_GATHER: {
        int ax = at->axis;
        const struct oc_kval *idx = bval(b, n->inputs[1], c);
        if (!idx) return NULL;
        for (int i = 0, j = 0; i < in0->shape.rank; i++)
            ci[i] = i == ax ? ix_atom(b, atom_make(b, OC_KA_VAL, 0, NULL, idx, in0->shape.dim[ax]))
                            : c[j++];
        return bval(b, in0->id, ci);
    }
    default:
        return fail(b, "node %%%d (%s) cannot be computed inline in a loop kernel", n->id,
                    oc_op_name(op));
    }
}

static const struct oc_kval *bval(struct kb *b, int nid, const struct oc_kix *const *c)
{
    if (b->failed) return NULL;
    const struct oc_node *n = b->g->nodes[nid];
    int r = n->shape.rank;
    for (int i = 0; i < r; i++)
        if (!c[i]) return NULL;
    uint64_t key[1 + OC_MAX_RANK];
    key[0] = (uint64_t)nid;
    for (int i = 0; i < r; i++) key[1 + i] = (uint64_t)c[i]->id;
    uint64_t h = hkey(key, 1 + r);
    const struct oc_kval *v = itab_get(&b->tmemo, key, 1 + r, h);
    if (v) return v;

    int w = b->where[nid];
    if (n->op == OC_OP_ASSIGN) {
        v = bval(b, n->inputs[1], c);
    } else if (n->op == OC_OP_CONST && !n->attrs.data) {
        v = kv_const(b, n->dtype, oc_kir_round(n->dtype, n->attrs.value));
    } else if (oc_op_table[n->op].flags & OC_F_SOURCE) {
        v = kv_load(b, nid, ix_lin(b, c, &n->shape));
    } else if (w == OC_KW_BUFFER || (w >= 0 && w != b->self)) {
        v = kv_load(b, nid, ix_lin(b, c, &n->shape));
    } else if (is_reduction(n->op)) {
        if (w != b->self) return fail(b, "reduction %%%d (%s) is not a member of the kernel", nid,
                                      oc_op_name(n->op));
        int ri = b->red_of[nid];
        if (ri < 0)
            return fail(b, "reduction %%%d (%s) is read before it is computed", nid,
                        oc_op_name(n->op));
        const struct oc_kix *L = ix_lin(b, c, &n->shape);
        if (!L) return NULL;
        if (L != b->red_row[ri])
            return fail(b, "reduction %%%d (%s) is read at other coordinates than its own row",
                        nid, oc_op_name(n->op));
        struct oc_kval t = kv_tmpl(OC_KV_ACC, b->reds[ri].dtype);
        t.acc = ri;
        v = kv_intern(b, &t);
    } else {
        if (++b->depth > 4000) return fail(b, "expression nests deeper than 4000 nodes");
        v = bval_op(b, n, c);
        b->depth--;
    }
    if (!v) return b->failed ? NULL : fail(b, "node %%%d (%s): no value", nid, oc_op_name(n->op));
    if (itab_put(&b->tmemo, &b->keys, key, 1 + r, h, (void *)v)) return nomem(b);
    return v;
}

/* ---------------------------------------------------------------- hashing and names */

static uint64_t mix(uint64_t h, uint64_t w) { return oc_hash64(&w, sizeof w, h); }

static uint64_t hash_kernel(const struct oc_kernel *k)
{
    uint64_t h = mix(0, (uint64_t)k->kind);
    for (int s = 0; s < k->nslot; s++) {
        h = mix(h, (uint64_t)k->slot[s].dtype);
        h = mix(h, (uint64_t)k->slot[s].numel);
        h = mix(h, (uint64_t)k->slot[s].written);
    }
    if (oc_kir_is_group(k)) { /* the members, their segments and how their slots share buffers */
        h = mix(h, 0x67726f7570ull); /* "group": never equal to a loop kernel's */
        h = mix(h, (uint64_t)k->ngroup);
        for (int i = 0; i < k->ngroup; i++) {
            h = mix(h, k->group[i]->hash);
            h = mix(h, (uint64_t)k->goff[i + 1]);
            for (int s = 0; s < k->group[i]->nslot; s++) h = mix(h, (uint64_t)k->gslot[i][s]);
        }
        return h;
    }
    if (k->kind != OC_K_LOOP) {
        const struct oc_node *n = k->lib;
        h = mix(h, (uint64_t)n->dtype);
        for (int i = 0; i < 3; i++) {
            h = mix(h, (uint64_t)k->lib_shape[i].rank);
            for (int d = 0; d < k->lib_shape[i].rank; d++) h = mix(h, (uint64_t)k->lib_shape[i].dim[d]);
        }
        h = mix(h, (uint64_t)n->attrs.trans_a);
        h = mix(h, (uint64_t)n->attrs.trans_b);
        for (int i = 0; i < 2; i++) {
            h = mix(h, (uint64_t)n->attrs.stride[i]);
            h = mix(h, (uint64_t)n->attrs.padding[i]);
        }
        return h;
    }
    h = mix(h, (uint64_t)k->space.rank);
    for (int d = 0; d < k->space.rank; d++) h = mix(h, (uint64_t)k->space.dim[d]);
    h = mix(h, k->rmask);
    for (int i = 0; i < k->natom; i++) {
        const struct oc_katom *a = k->atoms[i];
        h = mix(h, (uint64_t)a->kind);
        h = mix(h, (uint64_t)a->var);
        h = mix(h, a->x ? (uint64_t)a->x->id : ~0ull);
        h = mix(h, a->v ? (uint64_t)a->v->id : ~0ull);
        h = mix(h, (uint64_t)a->c);
    }
    for (int i = 0; i < k->nix; i++) {
        const struct oc_kix *x = k->ixs[i];
        h = mix(h, (uint64_t)x->c0);
        for (int t = 0; t < x->nterm; t++) {
            h = mix(h, (uint64_t)x->coef[t]);
            h = mix(h, (uint64_t)x->atom[t]->id);
        }
    }
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        uint64_t cb;
        memcpy(&cb, &v->c, sizeof cb);
        h = mix(h, (uint64_t)v->kind * 1000003u + (uint64_t)v->dtype * 131u + (uint64_t)v->op);
        for (int a = 0; a < v->nargs; a++) h = mix(h, (uint64_t)v->arg[a]->id);
        h = mix(h, cb);
        h = mix(h, (uint64_t)(int64_t)v->slot);
        h = mix(h, (uint64_t)(int64_t)v->acc);
        h = mix(h, v->ix ? (uint64_t)v->ix->id : ~0ull);
        h = mix(h, (uint64_t)v->lo);
        h = mix(h, (uint64_t)v->hi);
        h = mix(h, v->seed);
    }
    for (int i = 0; i < k->nred; i++) {
        h = mix(h, (uint64_t)k->red[i].op);
        h = mix(h, (uint64_t)k->red[i].dtype);
        h = mix(h, (uint64_t)k->red[i].x->id);
        h = mix(h, (uint64_t)k->red[i].stage);
        h = mix(h, (uint64_t)k->red[i].axis);
    }
    for (int i = 0; i < k->nstore; i++) {
        h = mix(h, (uint64_t)k->store[i].slot);
        h = mix(h, (uint64_t)k->store[i].v->id);
        h = mix(h, (uint64_t)k->store[i].ix->id);
        h = mix(h, (uint64_t)(int64_t)k->store[i].stage);
    }
    return h;
}

static void name_kernel(struct oc_kernel *k)
{
    k->hash = hash_kernel(k);
    snprintf(k->sym, sizeof k->sym, "k_%016llx", (unsigned long long)k->hash);
    const char *ops[3];
    int nops = 0;
    if (oc_kir_is_group(k)) {
        snprintf(k->name, sizeof k->name, "k_%04x_group%d", (unsigned)(k->hash & 0xffff), k->ngroup);
        return;
    }
    if (k->kind != OC_K_LOOP) {
        ops[nops++] = oc_op_name(k->lib->op);
    } else {
        for (int i = 0; i < k->nred && nops < 3; i++) {
            const char *s = oc_op_name(k->red[i].op);
            int dup = 0;
            for (int j = 0; j < nops; j++) dup |= !strcmp(ops[j], s);
            if (!dup) ops[nops++] = s;
        }
        for (int i = k->nval - 1; i >= 0 && nops < 3; i--) {
            const struct oc_kval *v = k->vals[i];
            if ((v->kind != OC_KV_OP && v->kind != OC_KV_RNG) || v->dtype == OC_KBOOL) continue;
            const char *s = oc_op_name(v->op);
            int dup = 0;
            for (int j = 0; j < nops; j++) dup |= !strcmp(ops[j], s);
            if (!dup) ops[nops++] = s;
        }
        if (!nops) ops[nops++] = "copy";
    }
    int p = snprintf(k->name, sizeof k->name, "k_%04x", (unsigned)(k->hash & 0xffff));
    for (int i = 0; i < nops && p < (int)sizeof k->name - 1; i++)
        p += snprintf(k->name + p, sizeof k->name - (size_t)p, "_%s", ops[i]);
}

/* ---------------------------------------------------------------- pruning */

/* Simplification interns intermediate values and indices that the final
 * expressions no longer use; dropping them (and renumbering the survivors
 * in creation order, which is topological) keeps the printout readable and
 * makes the hash depend on the kernel, not on how it was derived. */
struct live {
    unsigned char *v, *x, *a;
};

static void mark_val(struct live *l, const struct oc_kval *v);

static void mark_ix(struct live *l, const struct oc_kix *x)
{
    if (l->x[x->id]) return;
    l->x[x->id] = 1;
    for (int t = 0; t < x->nterm; t++) {
        const struct oc_katom *a = x->atom[t];
        l->a[a->id] = 1;
        if (a->x) mark_ix(l, a->x);
        if (a->v) mark_val(l, a->v);
    }
}

static void mark_val(struct live *l, const struct oc_kval *v)
{
    if (l->v[v->id]) return;
    l->v[v->id] = 1;
    for (int i = 0; i < v->nargs; i++) mark_val(l, v->arg[i]);
    if (v->ix) mark_ix(l, v->ix);
}

static int prune(struct oc_kernel *k)
{
    struct live l;
    l.v = calloc((size_t)k->nval + 1, 1);
    l.x = calloc((size_t)k->nix + 1, 1);
    l.a = calloc((size_t)k->natom + 1, 1);
    if (!l.v || !l.x || !l.a) {
        free(l.v), free(l.x), free(l.a);
        return -1;
    }
    for (int i = 0; i < k->nred; i++) mark_val(&l, k->red[i].x);
    for (int i = 0; i < k->nstore; i++) {
        mark_val(&l, k->store[i].v);
        mark_ix(&l, k->store[i].ix);
    }
    int n = 0;
    for (int i = 0; i < k->nval; i++)
        if (l.v[i]) ((struct oc_kval *)k->vals[i])->id = n, k->vals[n++] = k->vals[i];
    k->nval = n;
    n = 0;
    for (int i = 0; i < k->nix; i++)
        if (l.x[i]) ((struct oc_kix *)k->ixs[i])->id = n, k->ixs[n++] = k->ixs[i];
    k->nix = n;
    n = 0;
    for (int i = 0; i < k->natom; i++)
        if (l.a[i]) ((struct oc_katom *)k->atoms[i])->id = n, k->atoms[n++] = k->atoms[i];
    k->natom = n;
    free(l.v), free(l.x), free(l.a);
    return 0;
}

/* ---------------------------------------------------------------- building kernels */

static void kb_free(struct kb *b)
{
    free(b->tatom.e);
    free(b->tix.e);
    free(b->tval.e);
    free(b->tmemo.e);
    free(b->atoms.p);
    free(b->ixs.p);
    free(b->vals.p);
    free(b->red_of);
    free(b->slot_of);
    free(b->slots);
    free(b->reds);
    free(b->red_row);
    oc_arena_free(&b->keys);
}

static void *copy_arr(struct oc_arena *a, const void *src, size_t n)
{
    void *p = oc_arena_alloc(a, n ? n : 1);
    if (p && n) memcpy(p, src, n);
    return p;
}

struct oc_kernel *oc_kir_build_loop(struct oc_arena *a, const struct oc_graph *g,
                                    const int *where, int self, const struct oc_shape *space,
                                    uint32_t rmask, const int *members, int nmembers,
                                    const unsigned char *store, int **loads, int *nloads,
                                    struct oc_err *err)
{
    struct kb b;
    memset(&b, 0, sizeof b);
    b.a = a;
    b.g = g;
    b.where = where;
    b.self = self;
    b.err = err;
    b.rank = space->rank;
    b.rmask = rmask;
    if (loads) *loads = NULL;
    if (nloads) *nloads = 0;
    for (int d = 0; d < b.rank; d++) b.ext[d] = space->dim[d];
    b.red_of = malloc(sizeof(int) * (size_t)(g->nnodes + 1));
    b.slot_of = malloc(sizeof(int) * (size_t)(g->nnodes + 1));
    b.reds = calloc((size_t)nmembers + 1, sizeof *b.reds);
    b.red_row = calloc((size_t)nmembers + 1, sizeof *b.red_row);
    struct oc_kstore *stores = calloc((size_t)nmembers + 1, sizeof *stores);
    int nstore = 0;
    struct oc_kernel *k = NULL;
    if (!b.red_of || !b.slot_of || !b.reds || !b.red_row || !stores) {
        nomem(&b);
        goto out;
    }
    for (int i = 0; i < g->nnodes; i++) b.red_of[i] = b.slot_of[i] = -1;

    int64_t odim[OC_MAX_RANK];
    const struct oc_kix *ov[OC_MAX_RANK];
    int nouter = 0;
    for (int d = 0; d < b.rank; d++) {
        b.var[d] = ix_var(&b, d);
        if (rmask & (1u << d)) {
            if (b.ext[d] > 1) b.inner_mask |= 1u << d;
        } else {
            odim[nouter] = b.ext[d];
            ov[nouter++] = b.var[d];
        }
    }
    struct oc_shape oshape = oc_shape_make(nouter, odim);
    b.olin = ix_lin(&b, ov, &oshape);
    b.flin = ix_lin(&b, b.var, space);
    if (b.failed) goto out;
    int64_t onumel = oc_shape_numel(&oshape), fnumel = oc_shape_numel(space);
    int nstage = 0;

    for (int i = 0; i < nmembers && !b.failed; i++) {
        int m = members[i];
        const struct oc_node *n = g->nodes[m];
        OC_ASSERT(where[m] == self);
        if (is_reduction(n->op)) {
            const struct oc_node *in = g->nodes[n->inputs[0]];
            int perm[OC_MAX_RANK];
            if (!oc_kir_red_perm(&in->shape, red_axes(n), space, rmask, perm)) {
                fail(&b, "reduction %%%d (%s) over 0x%x of %s does not match the kernel's space %s reducing 0x%x",
                     m, oc_op_name(n->op), red_axes(n), SHP(in->shape), SHP(*space), rmask);
                break;
            }
            /* the input at the kernel's point, through the axis map; the
             * result's own row from the non-reduced axes */
            const struct oc_kix *ci[OC_MAX_RANK], *co[OC_MAX_RANK];
            int nco = 0;
            for (int d = 0; d < in->shape.rank; d++) {
                ci[d] = b.var[perm[d]];
                if (!(red_axes(n) & (1u << d))) co[nco++] = b.var[perm[d]];
                else if (n->attrs.keepdims)
                    co[nco++] = ix_const(&b, 0);
            }
            const struct oc_kix *row = ix_lin(&b, co, &n->shape);
            const struct oc_kval *x = bval(&b, in->id, ci);
            if (!x || !row) break;
            struct oc_kred *r = &b.reds[b.nred];
            r->op = n->op;
            r->dtype = n->dtype;
            r->x = x;
            r->stage = x->after;
            r->axis = n->op == OC_OP_ARGMAX ? perm[n->attrs.axis] : -1;
            r->node = m;
            b.red_row[b.nred] = row;
            b.red_of[m] = b.nred++;
            if (r->stage + 1 > nstage) nstage = r->stage + 1;
            if (store[i]) {
                struct oc_kval t = kv_tmpl(OC_KV_ACC, r->dtype);
                t.acc = b.red_of[m];
                const struct oc_kval *v = kv_intern(&b, &t);
                int s = slot_for(&b, m, 1);
                if (!v || s < 0) break;
                stores[nstore++] = (struct oc_kstore){s, v, row, -1, m};
            }
            continue;
        }
        int64_t numel = oc_shape_numel(&n->shape);
        const struct oc_kix *c[OC_MAX_RANK];
        int per_point;
        if (!rmask || oc_shape_eq(&n->shape, space)) {
            per_point = rmask != 0;
            if (!rmask && numel != fnumel) {
                fail(&b, "node %%%d %s does not have the %lld elements of the kernel's space %s",
                     m, SHP(n->shape), (long long)fnumel, SHP(*space));
                break;
            }
            if (oc_shape_eq(&n->shape, space))
                for (int d = 0; d < b.rank; d++) c[d] = b.var[d];
            else
                ix_delin(&b, b.flin, &n->shape, c);
        } else if (numel == onumel) {
            per_point = 0;
            ix_delin(&b, b.olin, &n->shape, c);
        } else if (numel == fnumel) {
            per_point = 1;
            ix_delin(&b, b.flin, &n->shape, c);
        } else {
            fail(&b, "node %%%d %s is neither per point nor per row of the kernel's space %s reducing 0x%x",
                 m, SHP(n->shape), SHP(*space), rmask);
            break;
        }
        const struct oc_kval *v = bval(&b, m, c);
        if (!v) break;
        if (!per_point && (v->varmask & b.inner_mask)) {
            fail(&b, "node %%%d %s has one value per row but depends on the reduced axes", m,
                 SHP(n->shape));
            break;
        }
        if (store[i]) {
            int s = slot_for(&b, m, 1);
            if (s < 0) {
                nomem(&b);
                break;
            }
            int st = per_point ? v->after : -1;
            if (per_point && st + 1 > nstage) nstage = st + 1;
            stores[nstore++] = (struct oc_kstore){s, v, per_point ? b.flin : b.olin, st, m};
        }
    }
    if (b.failed) goto out;

    k = oc_arena_alloc(a, sizeof *k);
    if (!k) {
        nomem(&b);
        goto out;
    }
    k->kind = OC_K_LOOP;
    k->space = *space;
    k->rmask = rmask;
    k->nstage = nstage;
    k->nred = b.nred;
    k->red = copy_arr(a, b.reds, sizeof *b.reds * (size_t)b.nred);
    k->nstore = nstore;
    k->store = copy_arr(a, stores, sizeof *stores * (size_t)nstore);
    k->nval = b.vals.n;
    k->vals = copy_arr(a, b.vals.p, sizeof(void *) * (size_t)b.vals.n);
    k->nix = b.ixs.n;
    k->ixs = copy_arr(a, b.ixs.p, sizeof(void *) * (size_t)b.ixs.n);
    k->natom = b.atoms.n;
    k->atoms = copy_arr(a, b.atoms.p, sizeof(void *) * (size_t)b.atoms.n);
    k->nslot = b.nslot;
    k->slot = copy_arr(a, b.slots, sizeof *b.slots * (size_t)b.nslot);
    k->nmember = nmembers;
    k->member = copy_arr(a, members, sizeof(int) * (size_t)nmembers);
    if (!k->red || !k->store || !k->vals || !k->ixs || !k->atoms || !k->slot || !k->member) {
        k = nomem(&b);
        goto out;
    }
    if (prune(k)) {
        k = nomem(&b);
        goto out;
    }
    name_kernel(k);
    if (loads) {
        int cnt = 0;
        for (int s = 0; s < b.nslot; s++) cnt += !b.slots[s].written;
        *loads = malloc(sizeof(int) * (size_t)(cnt + 1));
        if (!*loads) {
            k = nomem(&b);
            goto out;
        }
        cnt = 0;
        for (int s = 0; s < b.nslot; s++)
            if (!b.slots[s].written) (*loads)[cnt++] = b.slots[s].node;
        *nloads = cnt;
    }
out:
    free(stores);
    kb_free(&b);
    return b.failed ? NULL : k;
}

struct oc_kernel *oc_kir_build_lib(struct oc_arena *a, const struct oc_graph *g, int node,
                                   struct oc_err *err)
{
    const struct oc_node *n = g->nodes[node];
    struct oc_kernel *k = oc_arena_alloc(a, sizeof *k);
    if (!k) {
        oc_err_set(err, OC_ERR_NOMEM, "kernel IR: out of memory");
        return NULL;
    }
    switch (n->op) {
    case OC_OP_MATMUL: k->kind = OC_K_MATMUL; break;
    case OC_OP_CONV2D: k->kind = OC_K_CONV2D; break;
    case OC_OP_CONV2D_GRAD_INPUT: k->kind = OC_K_CONV2D_GRAD_INPUT; break;
    case OC_OP_CONV2D_GRAD_WEIGHT: k->kind = OC_K_CONV2D_GRAD_WEIGHT; break;
    default:
        oc_err_set(err, OC_ERR_INVALID, "node %%%d (%s) is not a library call", node,
                   oc_op_name(n->op));
        return NULL;
    }
    k->lib = n;
    k->nslot = 3;
    k->slot = oc_arena_alloc(a, sizeof *k->slot * 3);
    k->nmember = 1;
    k->member = oc_arena_alloc(a, sizeof(int));
    if (!k->slot || !k->member) {
        oc_err_set(err, OC_ERR_NOMEM, "kernel IR: out of memory");
        return NULL;
    }
    k->member[0] = node;
    int ids[3] = {node, n->inputs[0], n->inputs[1]};
    for (int i = 0; i < 3; i++) {
        const struct oc_node *m = g->nodes[ids[i]];
        k->slot[i] = (struct oc_kslot){ids[i], -1, m->dtype, oc_shape_numel(&m->shape), i == 0};
        k->lib_shape[i] = m->shape;
    }
    name_kernel(k);
    return k;
}

/* ---------------------------------------------------------------- groups */

struct oc_kernel *oc_kir_build_group(struct oc_arena *a, struct oc_kernel *const *members, int n,
                                     struct oc_err *err)
{
    if (n < 1) {
        oc_err_set(err, OC_ERR_INVALID, "kernel IR: a group needs a member");
        return NULL;
    }
    int maxslot = 0, nmember = 0;
    for (int i = 0; i < n; i++) {
        const struct oc_kernel *m = members[i];
        if (m->kind != OC_K_LOOP || m->rmask || oc_kir_is_group(m)) {
            oc_err_set(err, OC_ERR_INVALID, "kernel IR: %s cannot be a group member (not an elementwise loop kernel)",
                       m->name);
            return NULL;
        }
        maxslot += m->nslot;
        nmember += m->nmember;
    }
    struct oc_kernel *k = oc_arena_alloc(a, sizeof *k);
    struct oc_kslot *slot = oc_arena_alloc(a, sizeof *slot * (size_t)(maxslot + 1));
    struct oc_kernel **grp = oc_arena_alloc(a, sizeof *grp * (size_t)n);
    int64_t *goff = oc_arena_alloc(a, sizeof *goff * (size_t)(n + 1));
    int **gslot = oc_arena_alloc(a, sizeof *gslot * (size_t)n);
    int *member = oc_arena_alloc(a, sizeof(int) * (size_t)(nmember + 1));
    if (!k || !slot || !grp || !goff || !gslot || !member) {
        oc_err_set(err, OC_ERR_NOMEM, "kernel IR: out of memory");
        return NULL;
    }
    int nslot = 0;
    nmember = 0;
    for (int i = 0; i < n; i++) {
        const struct oc_kernel *m = members[i];
        grp[i] = members[i];
        goff[i + 1] = goff[i] + oc_kir_outer_extent(m);
        gslot[i] = oc_arena_alloc(a, sizeof(int) * (size_t)(m->nslot + 1));
        if (!gslot[i]) {
            oc_err_set(err, OC_ERR_NOMEM, "kernel IR: out of memory");
            return NULL;
        }
        for (int s = 0; s < m->nslot; s++) {
            const struct oc_kslot *ms = &m->slot[s];
            OC_ASSERT(ms->buf >= 0);
            int g = 0;
            while (g < nslot && slot[g].buf != ms->buf) g++;
            if (g == nslot) slot[nslot++] = *ms;
            slot[g].written |= ms->written;
            gslot[i][s] = g;
        }
        memcpy(member + nmember, m->member, sizeof(int) * (size_t)m->nmember);
        nmember += m->nmember;
    }
    k->kind = OC_K_LOOP;
    k->space = oc_shape_make(1, &goff[n]);
    k->nslot = nslot;
    k->slot = slot;
    k->nmember = nmember;
    k->member = member;
    k->ngroup = n;
    k->group = grp;
    k->goff = goff;
    k->gslot = gslot;
    name_kernel(k);
    return k;
}

/* ---------------------------------------------------------------- queries */

int oc_kir_red_perm(const struct oc_shape *in, uint32_t axes, const struct oc_shape *space,
                    uint32_t rmask, int *perm)
{
    if (in->rank != space->rank) return 0;
    int r = in->rank, nr = 0, no = 0, ra[OC_MAX_RANK], oa[OC_MAX_RANK];
    for (int d = 0; d < r; d++) {
        if (rmask & (1u << d)) ra[nr++] = d;
        else oa[no++] = d;
    }
    int kr = 0, ko = 0;
    for (int d = 0; d < r; d++) {
        if (axes & (1u << d)) {
            if (kr == nr) return 0;
            perm[d] = ra[kr++];
        } else {
            if (ko == no) return 0;
            perm[d] = oa[ko++];
        }
        if (in->dim[d] != space->dim[perm[d]]) return 0;
    }
    return kr == nr && ko == no;
}

int oc_kir_outer_axes(const struct oc_kernel *k, int *axes)
{
    int n = 0;
    for (int d = 0; d < k->space.rank; d++)
        if (!(k->rmask & (1u << d))) axes[n++] = d;
    return n;
}

int oc_kir_chunk_axes(const struct oc_kernel *k)
{
    int ax[OC_MAX_RANK];
    int n = oc_kir_outer_axes(k, ax);
    return k->rmask || n <= 1 ? n : n - 1;
}

int64_t oc_kir_outer_extent(const struct oc_kernel *k)
{
    if (k->kind != OC_K_LOOP) return 1;
    int ax[OC_MAX_RANK];
    oc_kir_outer_axes(k, ax);
    int64_t e = 1;
    for (int i = 0, n = oc_kir_chunk_axes(k); i < n; i++) e *= k->space.dim[ax[i]];
    return e;
}

int64_t oc_kir_points(const struct oc_kernel *k)
{
    if (oc_kir_is_group(k)) {
        int64_t n = 0;
        for (int i = 0; i < k->ngroup; i++) n += oc_kir_points(k->group[i]);
        return n;
    }
    if (k->kind == OC_K_LOOP) return oc_shape_numel(&k->space);
    return oc_shape_numel(&k->lib_shape[0]);
}

/* ---------------------------------------------------------------- printing */

static const char *dt_name(int dt) { return dt == OC_KBOOL ? "bool" : oc_dtype_name((enum oc_dtype)dt); }

static void print_ix(const struct oc_kix *x, FILE *f);

static void print_atom(const struct oc_katom *a, FILE *f)
{
    switch (a->kind) {
    case OC_KA_VAR: fprintf(f, "i%d", a->var); break;
    case OC_KA_DIV: fputc('(', f), print_ix(a->x, f), fprintf(f, ")/%lld", (long long)a->c); break;
    case OC_KA_MOD: fputc('(', f), print_ix(a->x, f), fprintf(f, ")%%%lld", (long long)a->c); break;
    case OC_KA_VAL: fprintf(f, "idx(v%d<%lld)", a->v->id, (long long)a->c); break;
    }
}

static void print_ix(const struct oc_kix *x, FILE *f)
{
    int any = 0;
    for (int i = 0; i < x->nterm; i++) {
        if (any) fputs(x->coef[i] < 0 ? " - " : " + ", f);
        else if (x->coef[i] < 0) fputc('-', f);
        long long c = x->coef[i] < 0 ? -x->coef[i] : x->coef[i];
        if (c != 1) fprintf(f, "%lld*", c);
        print_atom(x->atom[i], f);
        any = 1;
    }
    if (!any) fprintf(f, "%lld", (long long)x->c0);
    else if (x->c0) fprintf(f, " %c %lld", x->c0 < 0 ? '-' : '+', (long long)(x->c0 < 0 ? -x->c0 : x->c0));
}

void oc_kir_print(const struct oc_kernel *k, FILE *f)
{
    fprintf(f, "kernel %s (%s)", k->name, k->sym);
    if (k->kind != OC_K_LOOP) {
        fprintf(f, " library %s %s = %s(%s, %s)\n", oc_op_name(k->lib->op),
                SHP(k->lib_shape[0]), oc_op_name(k->lib->op), SHP(k->lib_shape[1]),
                SHP(k->lib_shape[2]));
        return;
    }
    if (oc_kir_is_group(k)) {
        fprintf(f, " group of %d over %lld rows\n", k->ngroup, (long long)k->goff[k->ngroup]);
        for (int s = 0; s < k->nslot; s++)
            fprintf(f, "  s%d: %s %s[%lld] node %%%d\n", s, k->slot[s].written ? "out" : "in ",
                    oc_dtype_name(k->slot[s].dtype), (long long)k->slot[s].numel, k->slot[s].node);
        for (int i = 0; i < k->ngroup; i++) {
            fprintf(f, "  member %d: rows [%lld, %lld), slots", i, (long long)k->goff[i],
                    (long long)k->goff[i + 1]);
            for (int s = 0; s < k->group[i]->nslot; s++) fprintf(f, " s%d", k->gslot[i][s]);
            fputs(":\n", f);
            oc_kir_print(k->group[i], f);
        }
        return;
    }
    fprintf(f, " space %s", SHP(k->space));
    if (k->rmask) fprintf(f, " reduce 0x%x, %d stage(s)", k->rmask, k->nstage);
    fputc('\n', f);
    for (int s = 0; s < k->nslot; s++)
        fprintf(f, "  s%d: %s %s[%lld] node %%%d\n", s, k->slot[s].written ? "out" : "in ",
                oc_dtype_name(k->slot[s].dtype), (long long)k->slot[s].numel, k->slot[s].node);
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        fprintf(f, "  v%d:%s = ", v->id, dt_name(v->dtype));
        switch (v->kind) {
        case OC_KV_CONST: fprintf(f, "%.17g", v->c); break;
        case OC_KV_LOAD: fprintf(f, "s%d[", v->slot), print_ix(v->ix, f), fputc(']', f); break;
        case OC_KV_ACC: fprintf(f, "acc r%d", v->acc); break;
        case OC_KV_INDEX: fputs("index ", f), print_ix(v->ix, f); break;
        case OC_KV_OP:
            fprintf(f, "%s", oc_op_name(v->op));
            for (int a = 0; a < v->nargs; a++) fprintf(f, " v%d", v->arg[a]->id);
            break;
        case OC_KV_RNG:
            fprintf(f, "%s seed %llu counter v%d at ", oc_op_name(v->op),
                    (unsigned long long)v->seed, v->arg[0]->id);
            print_ix(v->ix, f);
            break;
        case OC_KV_INRANGE:
            fprintf(f, "%lld <= ", (long long)v->lo), print_ix(v->ix, f);
            fprintf(f, " <= %lld", (long long)v->hi);
            break;
        case OC_KV_AND: fprintf(f, "v%d && v%d", v->arg[0]->id, v->arg[1]->id); break;
        case OC_KV_SEL: fprintf(f, "v%d ? v%d : v%d", v->arg[0]->id, v->arg[1]->id, v->arg[2]->id); break;
        }
        fputc('\n', f);
    }
    for (int i = 0; i < k->nred; i++)
        fprintf(f, "  r%d: %s v%d (stage %d, node %%%d)\n", i, oc_op_name(k->red[i].op),
                k->red[i].x->id, k->red[i].stage, k->red[i].node);
    for (int i = 0; i < k->nstore; i++) {
        const struct oc_kstore *s = &k->store[i];
        fprintf(f, "  s%d[", s->slot);
        print_ix(s->ix, f);
        if (s->stage >= 0) fprintf(f, "] = v%d (stage %d)\n", s->v->id, s->stage);
        else fprintf(f, "] = v%d (per row)\n", s->v->id);
    }
}

/* ---------------------------------------------------------------- programs */

void oc_kprog_free(struct oc_kprog *p)
{
    if (!p) return;
    oc_arena_free(&p->arena);
    free(p);
}

static const char *kb_kind_name(enum oc_kbuf_kind k)
{
    static const char *const names[] = {"input", "param", "state", "const", "temp"};
    return names[k];
}

void oc_kprog_print(const struct oc_kprog *p, FILE *f)
{
    fprintf(f, "program: %d kernel(s), %d buffer(s), fusion %s\n", p->nkernel, p->nbuf,
            p->fusion ? "on" : "off");
    for (int i = 0; i < p->nbuf; i++) {
        const struct oc_kbuf *b = &p->buf[i];
        fprintf(f, "  b%d: %s %s%s node %%%d, %zu bytes", i, kb_kind_name(b->kind),
                oc_dtype_name(b->dtype), SHP(b->shape), b->node, b->bytes);
        if (b->pinned) fputs(", pinned", f);
        else if (b->offset >= 0) fprintf(f, ", arena+%lld", (long long)b->offset);
        fputc('\n', f);
    }
    for (int i = 0; i < p->nkernel; i++) {
        const struct oc_kernel *k = p->kernel[i];
        fprintf(f, "  %3d %-40s", i, k->name);
        for (int s = 0; s < k->nslot; s++)
            fprintf(f, " %sb%d", k->slot[s].written ? ">" : "", k->slot[s].buf);
        fputc('\n', f);
    }
    for (int i = 0; i < p->nassign; i++)
        fprintf(f, "  assign b%d <- b%d\n", p->assign[i].target, p->assign[i].value);
    if (p->arena_bytes || p->ntemp)
        fprintf(f, "  arena: %zu bytes peak for %d temps (%zu bytes unplanned), %d in place\n",
                p->arena_bytes, p->ntemp, p->temp_bytes, p->ninplace);
}

struct oc_kconv oc_kir_conv(const struct oc_kernel *k)
{
    const struct oc_shape *xs, *ws, *ys;
    switch (k->kind) {
    case OC_K_CONV2D: ys = &k->lib_shape[0], xs = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    case OC_K_CONV2D_GRAD_INPUT: xs = &k->lib_shape[0], ys = &k->lib_shape[1], ws = &k->lib_shape[2]; break;
    case OC_K_CONV2D_GRAD_WEIGHT: ws = &k->lib_shape[0], xs = &k->lib_shape[1], ys = &k->lib_shape[2]; break;
    default: OC_ASSERT(!"not a convolution kernel");
    }
    struct oc_kconv c;
    c.N = xs->dim[0], c.C = xs->dim[1], c.H = xs->dim[2], c.W = xs->dim[3];
    c.O = ws->dim[0], c.KH = ws->dim[2], c.KW = ws->dim[3];
    c.OH = ys->dim[2], c.OW = ys->dim[3];
    c.CK = c.C * c.KH * c.KW;
    c.P = c.OH * c.OW;
    c.sh = k->lib->attrs.stride[0], c.sw = k->lib->attrs.stride[1];
    c.ph = k->lib->attrs.padding[0], c.pw = k->lib->attrs.padding[1];
    return c;
}
