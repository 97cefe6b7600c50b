/* fuse.c - fusion: graph nodes -> kernels (the kernel program of kir.h).
 *
 * Three steps. (1) Materialization: every node is either computed inline
 * wherever it is used (elementwise and layout ops, while their inlined cost
 * stays bounded) or owned by a kernel that writes it (reductions, library
 * calls, outputs, assign values, library operands, and nodes too costly to
 * recompute). (2) Merging: a kernel merges into a kernel it reads from when
 * the kernel IR of the union builds (same iteration space, reductions read
 * only at their own rows), no third kernel sits between them, and it would
 * not re-inline a node materialized to bound expression size; then
 * kernels that read the same buffer over the same space merge (siblings).
 * (3) The final kernels are built with stores for exactly the nodes other
 * kernels, outputs or assigns need, put in dependency order, and given
 * buffers; assigns whose new value one elementwise kernel computes are
 * then written in place, and (rule 4) the elementwise kernels that update
 * params and state in place are grouped into few dispatches
 * (group_updates). Before step 1, large reductions to one value are
 * split into a row kernel and a sum of rows (on an extended view of the
 * graph, see extend()); reductions over different axes of one square
 * space merge, one of them reading it transposed. With fusion off, step 1
 * materializes every primitive and step 2 is skipped. OC_DEBUG=2 logs
 * every decision with its reason.
 */
#include "fuse.h"

#include <stdlib.h>
#include <string.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

enum nkind { NK_SOURCE, NK_SPLAT, NK_ASSIGN, NK_LIB, NK_RED, NK_LAYOUT, NK_PW };

struct group {
    int alive, lib;
    struct oc_shape space;
    uint32_t rmask;
    int nm;
    int *m;
    int nloads;
    int *loads;
};

struct fz {
    const struct oc_graph *g; /* the graph, extended by split reductions */
    int nn;
    int *ord, *pos;           /* a topological order of the nodes, and each node's place in it */
    int fusion, debug;
    FILE *log;
    struct oc_err *err;
    int *where, *alias, *kind;
    unsigned char *live, *must, *needed;
    /* materialized to bound expression size (cost or depth): merges never
     * inline it again. Nodes materialized for reuse may be: a merge only
     * joins kernels over one space, where a node read at its own point is
     * computed once per stage (the memo), so recomputation stays bounded
     * by the kernel's stages and the node's distinct uses. */
    unsigned char *keep;
    int *uoff, *ulist; /* users, CSR */
    struct group *k;
    int nk;
    int *mark, markgen, *stack;
};

static enum nkind node_kind(const struct oc_node *n)
{
    switch (n->op) {
    case OC_OP_INPUT: case OC_OP_PARAM: case OC_OP_STATE: return NK_SOURCE;
    case OC_OP_CONST: return n->attrs.data ? NK_SOURCE : NK_SPLAT;
    case OC_OP_ASSIGN: return NK_ASSIGN;
    case OC_OP_SUM: case OC_OP_REDUCE_MAX: case OC_OP_ARGMAX: return NK_RED;
    case OC_OP_RESHAPE: case OC_OP_PERMUTE: case OC_OP_BROADCAST: case OC_OP_SLICE:
    case OC_OP_PAD: case OC_OP_CONCAT: case OC_OP_STOP_GRADIENT: return NK_LAYOUT;
    default: return oc_op_table[n->op].fclass == OC_FC_CONTRACTION ? NK_LIB : NK_PW;
    }
}

static int own_cost(const struct oc_node *n, enum nkind k)
{
    if (k == NK_LAYOUT) return 0;
    if (n->op == OC_OP_RNG_NORMAL || n->op == OC_OP_RNG_UNIFORM) return 8;
    return oc_op_table[n->op].flags & OC_F_EXPENSIVE ? 4 : 1;
}

static void logf_(struct fz *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct fz *f, const char *fmt, ...)
{
    if (f->debug < 2) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("fuse: ", f->log);
    vfprintf(f->log, fmt, ap);
    fputc('\n', f->log);
    va_end(ap);
}

static int new_group(struct fz *f, int node)
{
    const struct oc_node *n = f->g->nodes[node];
    struct group *gr = &f->k[f->nk];
    memset(gr, 0, sizeof *gr);
    gr->alive = 1;
    gr->nm = 1;
    gr->m = malloc(sizeof(int));
    if (!gr->m) return -1;
    gr->m[0] = node;
    enum nkind k = (enum nkind)f->kind[node];
    if (k == NK_LIB) {
        gr->lib = 1;
        gr->space = n->shape;
    } else if (k == NK_RED) {
        gr->space = f->g->nodes[n->inputs[0]]->shape;
        gr->rmask = n->op == OC_OP_ARGMAX ? 1u << n->attrs.axis : n->attrs.axes;
    } else {
        gr->space = n->shape;
    }
    f->where[node] = f->nk;
    return f->nk++;
}

static const char *gname(struct fz *f, int k, char *buf)
{
    const struct group *gr = &f->k[k];
    const struct oc_node *n = f->g->nodes[gr->m[gr->nm - 1]];
    snprintf(buf, 64, "k%d{%%%d %s%s}", k, n->id, oc_op_name(n->op), gr->nm > 1 ? ",..." : "");
    return buf;
}

/* A trial build of a loop kernel (all members stored), to validate a
 * grouping and learn what it reads. */
static int try_build(struct fz *f, int self, const struct oc_shape *space, uint32_t rmask,
                     const int *m, int nm, int **loads, int *nloads, struct oc_err *e)
{
    struct oc_arena a = {0};
    unsigned char *st = malloc((size_t)nm + 1);
    if (!st) return oc_err_set(e, OC_ERR_NOMEM, "fuse: out of memory");
    memset(st, 1, (size_t)nm);
    struct oc_kernel *k =
        oc_kir_build_loop(&a, f->g, f->where, self, space, rmask, m, nm, st, loads, nloads, e);
    free(st);
    oc_arena_free(&a);
    return k ? 0 : -1;
}

static int lib_loads(struct fz *f, int node, int **loads, int *nloads)
{
    const struct oc_node *n = f->g->nodes[node];
    *loads = malloc(sizeof(int) * 2);
    if (!*loads) return -1;
    (*loads)[0] = f->alias[n->inputs[0]];
    (*loads)[1] = f->alias[n->inputs[1]];
    *nloads = 2;
    return 0;
}

static int kernel_of_load(struct fz *f, int node)
{
    int w = f->where[f->alias[node]];
    return w >= 0 ? w : -1;
}

/* Whether `to` is reachable from `from` along "reads from" edges through at
 * least one other kernel (the direct edge from -> to is ignored). */
static int reaches(struct fz *f, int from, int to)
{
    f->markgen++;
    int sp = 0;
    f->mark[from] = f->markgen;
    const struct group *gf = &f->k[from];
    for (int i = 0; i < gf->nloads; i++) {
        int d = kernel_of_load(f, gf->loads[i]);
        if (d < 0 || d == to || d == from || f->mark[d] == f->markgen) continue;
        f->mark[d] = f->markgen;
        f->stack[sp++] = d;
    }
    while (sp) {
        int x = f->stack[--sp];
        if (x == to) return 1;
        const struct group *gx = &f->k[x];
        for (int i = 0; i < gx->nloads; i++) {
            int d = kernel_of_load(f, gx->loads[i]);
            if (d < 0 || f->mark[d] == f->markgen) continue;
            if (d == to) return 1;
            f->mark[d] = f->markgen;
            f->stack[sp++] = d;
        }
    }
    return 0;
}

/* Whether two reduction groups differ only by a permutation of their
 * space that maps one's reduced axes onto the other's. */
static int permuted(const struct group *a, const struct group *b)
{
    int perm[OC_MAX_RANK];
    return a->rmask != b->rmask && oc_kir_red_perm(&a->space, a->rmask, &b->space, b->rmask, perm);
}

/* Tries to merge kernel B into kernel A. 1: merged, 0: rejected, -1: error. */
static int try_merge(struct fz *f, int A, int B, const char *why)
{
    struct group *ga = &f->k[A], *gb = &f->k[B];
    char na[64], nb[64];
    if (A == B || !ga->alive || !gb->alive || ga->lib || gb->lib) return 0;
    gname(f, A, na);
    gname(f, B, nb);
    struct oc_shape cs[2];
    uint32_t cr[2];
    int nc = 0;
    if (ga->rmask && gb->rmask) {
        if (ga->rmask == gb->rmask && oc_shape_eq(&ga->space, &gb->space)) {
            cs[nc] = ga->space, cr[nc++] = ga->rmask;
        } else if (permuted(ga, gb)) { /* one reads the other's space transposed */
            cs[nc] = ga->space, cr[nc++] = ga->rmask;
            cs[nc] = gb->space, cr[nc++] = gb->rmask;
        }
    } else if (ga->rmask) {
        cs[nc] = ga->space, cr[nc++] = ga->rmask;
    } else if (gb->rmask) {
        cs[nc] = gb->space, cr[nc++] = gb->rmask;
    } else if (oc_shape_numel(&ga->space) == oc_shape_numel(&gb->space)) {
        cs[nc] = gb->space, cr[nc++] = 0;
        if (!oc_shape_eq(&ga->space, &gb->space)) cs[nc] = ga->space, cr[nc++] = 0;
    }
    if (!nc) {
        logf_(f, "reject %s %s + %s: iteration spaces %s/0x%x and %s/0x%x differ", why, na, nb,
              SHP(ga->space), ga->rmask, SHP(gb->space), gb->rmask);
        return 0;
    }
    for (int pass = 0; pass < 2; pass++) {
        const struct group *rd = pass ? ga : gb;
        for (int i = 0; i < rd->nloads; i++) {
            int n = f->alias[rd->loads[i]];
            if (f->keep[n] && f->where[n] == (pass ? B : A)) {
                logf_(f, "reject %s %s + %s: %%%d (%s) was materialized to bound its expression",
                      why, na, nb, n, oc_op_name(f->g->nodes[n]->op));
                return 0;
            }
        }
    }
    if (reaches(f, B, A) || reaches(f, A, B)) {
        logf_(f, "reject %s %s + %s: another kernel depends on one and feeds the other", why, na,
              nb);
        return 0;
    }
    int nm = ga->nm + gb->nm;
    int *m = malloc(sizeof(int) * (size_t)nm);
    if (!m) return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory"), -1;
    for (int i = 0, j = 0, k = 0; k < nm; k++)
        m[k] = j >= gb->nm || (i < ga->nm && f->pos[ga->m[i]] < f->pos[gb->m[j]]) ? ga->m[i++]
                                                                                     : gb->m[j++];
    for (int i = 0; i < gb->nm; i++) f->where[gb->m[i]] = A;
    struct oc_err e = {0};
    for (int c = 0; c < nc; c++) {
        int *loads = NULL, nloads = 0;
        oc_err_clear(&e);
        if (try_build(f, A, &cs[c], cr[c], m, nm, &loads, &nloads, &e) == 0) {
            free(ga->m);
            free(ga->loads);
            free(gb->m);
            free(gb->loads);
            gb->m = gb->loads = NULL;
            gb->nm = gb->nloads = 0;
            gb->alive = 0;
            ga->m = m;
            ga->nm = nm;
            ga->loads = loads;
            ga->nloads = nloads;
            ga->space = cs[c];
            ga->rmask = cr[c];
            logf_(f, "accept %s %s + %s: one kernel over %s reducing 0x%x, %d nodes", why, na, nb,
                  SHP(cs[c]), cr[c], nm);
            return 1;
        }
        if (e.code == OC_ERR_NOMEM) {
            free(m);
            return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory"), -1;
        }
    }
    for (int i = 0; i < gb->nm; i++) f->where[gb->m[i]] = B;
    free(m);
    logf_(f, "reject %s %s + %s: %s", why, na, nb, e.msg);
    return 0;
}

/* The place (in topological order) of a group's last member. */
static int max_member(const struct fz *f, const struct group *g)
{
    return g->nm ? f->pos[g->m[g->nm - 1]] : -1;
}

/* Rule 1-3: a kernel merges into the kernels it reads from, closest first. */
static int merge_producers(struct fz *f)
{
    int *cand = malloc(sizeof(int) * (size_t)(f->nk + 1));
    if (!cand) return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory"), -1;
    for (int b0 = 0; b0 < f->nk; b0++) {
        int B = b0;
    again:
        if (!f->k[B].alive || f->k[B].lib) continue;
        int nc = 0;
        f->markgen++;
        for (int i = 0; i < f->k[B].nloads; i++) {
            int A = kernel_of_load(f, f->k[B].loads[i]);
            if (A < 0 || A == B || f->k[A].lib || f->mark[A] == f->markgen) continue;
            f->mark[A] = f->markgen;
            cand[nc++] = A;
        }
        /* closest producer first */
        for (int i = 1; i < nc; i++)
            for (int j = i; j > 0 && max_member(f, &f->k[cand[j - 1]]) < max_member(f, &f->k[cand[j]]);
                 j--) {
                int t = cand[j];
                cand[j] = cand[j - 1], cand[j - 1] = t;
            }
        for (int i = 0; i < nc; i++) {
            int r = try_merge(f, cand[i], B, "producer");
            if (r < 0) {
                free(cand);
                return -1;
            }
            if (r) {
                B = cand[i];
                goto again;
            }
        }
    }
    free(cand);
    return 0;
}

/* Kernels reading the same buffer over the same space merge (BN backward's
 * sums, the optimizer's parameter and momentum updates). */
static int merge_siblings(struct fz *f)
{
    enum { MAXL = 16 };
    int *lst = malloc(sizeof(int) * MAXL * (size_t)f->nn), *cnt = calloc((size_t)f->nn, sizeof(int));
    if (!lst || !cnt) {
        free(lst);
        free(cnt);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory"), -1;
    }
    for (int k = 0; k < f->nk; k++) {
        const struct group *gr = &f->k[k];
        if (!gr->alive || gr->lib) continue;
        for (int i = 0; i < gr->nloads; i++) {
            int n = f->alias[gr->loads[i]];
            int dup = 0;
            for (int j = 0; j < cnt[n]; j++) dup |= lst[n * MAXL + j] == k;
            if (!dup && cnt[n] < MAXL) lst[n * MAXL + cnt[n]++] = k;
        }
    }
    int rc = 0;
    for (int n = 0; n < f->nn && rc >= 0; n++) {
        for (int i = 0; i < cnt[n] && rc >= 0; i++) {
            int A = lst[n * MAXL + i];
            if (!f->k[A].alive) continue;
            for (int j = i + 1; j < cnt[n]; j++) {
                int B = lst[n * MAXL + j];
                if (!f->k[B].alive || !f->k[A].alive) continue;
                const struct group *ga = &f->k[A], *gb = &f->k[B];
                int same = (ga->rmask == gb->rmask &&
                            (ga->rmask ? oc_shape_eq(&ga->space, &gb->space)
                                       : oc_shape_numel(&ga->space) == oc_shape_numel(&gb->space))) ||
                           (ga->rmask && gb->rmask && permuted(ga, gb));
                if (!same) continue;
                int lo = A < B ? A : B, hi = A < B ? B : A;
                rc = try_merge(f, lo, hi, "sibling");
                if (rc < 0) break;
                if (rc && lo != A) A = lo;
            }
        }
    }
    free(lst);
    free(cnt);
    return rc < 0 ? -1 : 0;
}

static void fz_free(struct fz *f)
{
    for (int k = 0; k < f->nk; k++) {
        free(f->k[k].m);
        free(f->k[k].loads);
    }
    free(f->k);
    free(f->where);
    free(f->alias);
    free(f->kind);
    free(f->live);
    free(f->must);
    free(f->needed);
    free(f->keep);
    free(f->uoff);
    free(f->ulist);
    free(f->mark);
    free(f->stack);
    free(f->ord);
    free(f->pos);
}

static enum oc_status decide(struct fz *f)
{
    const struct oc_graph *g = f->g;
    int nn = f->nn;
    int *cost = calloc((size_t)nn + 1, sizeof(int)), *eff = calloc((size_t)nn + 1, sizeof(int));
    int *depth = calloc((size_t)nn + 1, sizeof(int));
    int64_t *expands = calloc((size_t)nn + 1, sizeof *expands);
    if (!cost || !eff || !expands || !depth) {
        free(cost);
        free(eff);
        free(depth);
        free(expands);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    /* uses seen through layout ops, and the largest expansion factor of a
     * broadcast that reads the node (through layout ops) */
    for (int t = nn - 1; t >= 0; t--) {
        int i = f->ord[t];
        int64_t ni = oc_shape_numel(&g->nodes[i]->shape);
        for (int u = f->uoff[i]; u < f->uoff[i + 1]; u++) {
            int user = f->ulist[u];
            const struct oc_node *un = g->nodes[user];
            if (f->kind[user] == NK_LAYOUT && !f->must[user]) {
                eff[i] += eff[user];
                if (expands[user] > expands[i]) expands[i] = expands[user];
            } else {
                eff[i] += 1;
            }
            int64_t nu = oc_shape_numel(&un->shape);
            if (un->op == OC_OP_BROADCAST && nu > ni && ni > 0 && nu / ni > expands[i])
                expands[i] = nu / ni;
        }
    }
    for (int t = 0; t < nn; t++) {
        int i = f->ord[t];
        const struct oc_node *n = g->nodes[i];
        enum nkind k = (enum nkind)f->kind[i];
        if (!f->live[i] && k != NK_SOURCE) continue;
        switch (k) {
        case NK_SOURCE: f->where[i] = OC_KW_BUFFER; continue;
        case NK_ASSIGN: f->where[i] = OC_KW_INLINE; continue;
        case NK_SPLAT:
            if (f->must[i]) {
                if (new_group(f, i) < 0) goto nomem;
            } else {
                f->where[i] = OC_KW_SPLAT;
            }
            continue;
        case NK_LIB:
        case NK_RED:
            if (new_group(f, i) < 0) goto nomem;
            continue;
        case NK_LAYOUT:
        case NK_PW: break;
        }
        if (!f->fusion || f->must[i]) {
            if (new_group(f, i) < 0) goto nomem;
            continue;
        }
        int c = own_cost(n, k), dep = 1;
        for (int j = 0; j < n->ninputs; j++) {
            int in = n->inputs[j];
            int dup = 0;
            for (int q = 0; q < j; q++) dup |= n->inputs[q] == in;
            if (!dup && f->where[in] == OC_KW_INLINE) c += cost[in];
            if (f->where[in] == OC_KW_INLINE && depth[in] + 1 > dep) dep = depth[in] + 1;
        }
        cost[i] = c;
        depth[i] = dep;
        int64_t x = expands[i] > 1 ? (expands[i] < 16 ? expands[i] : 16) : 1;
        if (dep > OC_FUSE_MAX_DEPTH) {
            logf_(f, "materialize %%%d (%s): %d inlined nodes deep, more than %d", i,
                  oc_op_name(n->op), dep, OC_FUSE_MAX_DEPTH);
            f->keep[i] = 1;
        } else if (k == NK_PW && c > OC_FUSE_MAX_COST) {
            logf_(f, "materialize %%%d (%s): inlined cost %d exceeds %d", i, oc_op_name(n->op), c,
                  OC_FUSE_MAX_COST);
            f->keep[i] = 1;
        } else if (k == NK_PW && (eff[i] > 1 || x > 1) && c > OC_FUSE_REUSE_COST) {
            logf_(f, "materialize %%%d (%s): cost %d > %d would be recomputed (%d uses%s)", i,
                  oc_op_name(n->op), c, OC_FUSE_REUSE_COST, eff[i],
                  x > 1 ? ", read through a broadcast" : "");
        } else if (k == NK_PW && x > 1 && c * x > OC_FUSE_EXPAND_BUDGET) {
            logf_(f, "materialize %%%d (%s): cost %d read through a %lldx broadcast would be "
                  "recomputed up to %lld times per element",
                  i, oc_op_name(n->op), c, (long long)expands[i], (long long)expands[i]);
        } else {
            f->where[i] = OC_KW_INLINE;
            if (k == NK_PW && (eff[i] > 1 || x > 1))
                logf_(f, "inline %%%d (%s): cost %d <= %d, recomputed by %d uses%s", i,
                      oc_op_name(n->op), c, OC_FUSE_REUSE_COST, eff[i],
                      x > 1 ? " and through a broadcast" : "");
            continue;
        }
        cost[i] = 0;
        depth[i] = 0;
        if (new_group(f, i) < 0) goto nomem;
    }
    free(cost);
    free(eff);
    free(depth);
    free(expands);
    return OC_OK;
nomem:
    free(cost);
    free(eff);
    free(depth);
    free(expands);
    return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
}

/* Rule 2 for a reduction of a large iteration space to a single value
 * (MMCE's pairwise sum, a loss summed over a big tensor): as one kernel it
 * would be a single row, run by one thread. It is split into a row kernel
 * over the leading reduced axes, which writes one partial result per row,
 * and a small reduction of those partials:
 *     R(X, A) = R(R(X, A \ L, keepdims), A)
 * with L the shortest prefix of A whose extent reaches OC_FUSE_SPLIT_ROWS.
 * The graph itself is left alone: the two new nodes get ids after the
 * graph's own (fusion works on a view whose node table is extended), R's
 * entry in the view becomes a reshape of the second one, and every walk
 * below follows a topological order that puts the new nodes where R was. */
static enum oc_status extend(struct fz *f, const struct oc_graph *g0, int split, struct oc_kprog *p)
{
    int nn0 = g0->nnodes, nsplit = 0;
    unsigned char *cand = calloc((size_t)nn0 + 1, 1);
    uint32_t *lmask = calloc((size_t)nn0 + 1, sizeof *lmask);
    if (!cand || !lmask) {
        free(cand), free(lmask);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    for (int i = 0; split && f->fusion && i < nn0; i++) {
        const struct oc_node *n = g0->nodes[i];
        if (n->op != OC_OP_SUM && n->op != OC_OP_REDUCE_MAX) continue;
        const struct oc_shape *xs = &g0->nodes[n->inputs[0]]->shape;
        if (oc_shape_numel(&n->shape) != 1 || oc_shape_numel(xs) < OC_FUSE_SPLIT_MIN) continue;
        uint32_t L = 0;
        int64_t rows = 1, rest = 1;
        for (int d = 0; d < xs->rank; d++) {
            if (!(n->attrs.axes & (1u << d))) continue;
            if (rows < OC_FUSE_SPLIT_ROWS) rows *= xs->dim[d], L |= 1u << d;
            else rest *= xs->dim[d];
        }
        if (rows < 2 || rest < 2) continue; /* nothing to split along axes */
        cand[i] = 1;
        lmask[i] = L;
        nsplit++;
    }
    int nn = nn0 + 2 * nsplit;
    struct oc_graph *xg = oc_arena_alloc(&p->arena, sizeof *xg);
    struct oc_node **nodes = oc_arena_alloc(&p->arena, sizeof *nodes * ((size_t)nn + 1));
    const struct oc_node **extra = oc_arena_alloc(&p->arena, sizeof *extra * ((size_t)nsplit * 2 + 1));
    f->ord = malloc(sizeof(int) * ((size_t)nn + 1));
    f->pos = malloc(sizeof(int) * ((size_t)nn + 1));
    if (!xg || !nodes || !extra || !f->ord || !f->pos) {
        free(cand), free(lmask);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    *xg = *g0; /* a view: shares the graph's arena and outputs, never freed as a graph */
    xg->nodes = nodes;
    xg->nnodes = xg->cap = nn;
    int next = nn0, t = 0;
    enum oc_status st = OC_OK;
    for (int i = 0; i < nn0 && !st; i++) {
        nodes[i] = g0->nodes[i];
        if (!cand[i]) {
            f->ord[t++] = i;
            continue;
        }
        const struct oc_node *n = g0->nodes[i];
        struct oc_node *part = oc_arena_alloc(&p->arena, sizeof *part);
        struct oc_node *whole = oc_arena_alloc(&p->arena, sizeof *whole);
        struct oc_node *view = oc_arena_alloc(&p->arena, sizeof *view);
        int *in = oc_arena_alloc(&p->arena, sizeof(int) * 3);
        if (!part || !whole || !view || !in) {
            st = oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
            break;
        }
        uint32_t A = n->attrs.axes, L = lmask[i];
        const struct oc_shape *xs = &g0->nodes[n->inputs[0]]->shape;
        in[0] = n->inputs[0], in[1] = next, in[2] = next + 1;
        *part = (struct oc_node){.id = next, .op = n->op, .dtype = n->dtype, .shape = *xs,
                                 .ninputs = 1, .inputs = &in[0], .label = "split partial"};
        for (int d = 0; d < xs->rank; d++)
            if ((A & ~L) & (1u << d)) part->shape.dim[d] = 1;
        part->attrs.axes = A & ~L;
        part->attrs.keepdims = 1;
        *whole = (struct oc_node){.id = next + 1, .op = n->op, .dtype = n->dtype, .shape = n->shape,
                                  .ninputs = 1, .inputs = &in[1], .label = n->label};
        whole->attrs.axes = A;
        whole->attrs.keepdims = n->attrs.keepdims;
        *view = (struct oc_node){.id = i, .op = OC_OP_RESHAPE, .dtype = n->dtype, .shape = n->shape,
                                 .ninputs = 1, .inputs = &in[2], .label = n->label};
        nodes[i] = view;
        nodes[next] = part;
        nodes[next + 1] = whole;
        extra[next - nn0] = part;
        extra[next + 1 - nn0] = whole;
        f->ord[t++] = next;
        f->ord[t++] = next + 1;
        f->ord[t++] = i;
        logf_(f, "split %%%d (%s over %s): %%%d reduces 0x%x per row (%lld rows), %%%d the partials",
              i, oc_op_name(n->op), SHP(*xs), next, A & ~L,
              (long long)oc_shape_numel(&part->shape), next + 1);
        next += 2;
    }
    free(cand);
    free(lmask);
    if (st) return st;
    for (int k = 0; k < nn; k++) f->pos[f->ord[k]] = k;
    p->nextra = 2 * nsplit;
    p->extra = extra;
    f->g = xg;
    f->nn = nn;
    return OC_OK;
}

static enum oc_status setup(struct fz *f)
{
    const struct oc_graph *g = f->g;
    int nn = f->nn;
    size_t n1 = (size_t)nn + 1;
    f->where = malloc(sizeof(int) * n1);
    f->alias = malloc(sizeof(int) * n1);
    f->kind = malloc(sizeof(int) * n1);
    f->live = calloc(n1, 1);
    f->must = calloc(n1, 1);
    f->needed = calloc(n1, 1);
    f->keep = calloc(n1, 1);
    f->uoff = calloc(n1 + 1, sizeof(int));
    f->k = calloc(n1, sizeof *f->k);
    f->mark = calloc(n1, sizeof(int));
    f->stack = malloc(sizeof(int) * n1);
    if (!f->where || !f->alias || !f->kind || !f->live || !f->must || !f->needed || !f->keep || !f->uoff ||
        !f->k || !f->mark || !f->stack)
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    for (int t = 0; t < nn; t++) {
        int i = f->ord[t];
        const struct oc_node *n = g->nodes[i];
        f->kind[i] = node_kind(n);
        f->alias[i] = n->op == OC_OP_ASSIGN ? f->alias[n->inputs[1]] : i;
        f->where[i] = OC_KW_INLINE;
    }
    for (int i = 0; i < g->noutputs; i++) {
        f->live[g->outputs[i].node] = 1;
        f->must[f->alias[g->outputs[i].node]] = 1;
    }
    for (int t = nn - 1; t >= 0; t--) {
        int i = f->ord[t];
        const struct oc_node *n = g->nodes[i];
        if (n->op == OC_OP_ASSIGN) {
            f->live[i] = 1;
            f->must[f->alias[n->inputs[1]]] = 1;
        }
        if (!f->live[i]) continue;
        for (int j = 0; j < n->ninputs; j++) f->live[n->inputs[j]] = 1;
        if (f->kind[i] == NK_LIB)
            for (int j = 0; j < 2; j++) f->must[f->alias[n->inputs[j]]] = 1;
    }
    /* users of live nodes (a user counted once per operand node) */
    for (int i = 0; i < nn; i++) {
        const struct oc_node *n = g->nodes[i];
        if (!f->live[i]) continue;
        for (int j = 0; j < n->ninputs; j++) {
            int dup = 0;
            for (int q = 0; q < j; q++) dup |= n->inputs[q] == n->inputs[j];
            if (!dup) f->uoff[n->inputs[j] + 1]++;
        }
    }
    for (int i = 0; i < nn; i++) f->uoff[i + 1] += f->uoff[i];
    f->ulist = malloc(sizeof(int) * (size_t)(f->uoff[nn] + 1));
    int *fill = calloc(n1, sizeof(int));
    if (!f->ulist || !fill) {
        free(fill);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    for (int i = 0; i < nn; i++) {
        const struct oc_node *n = g->nodes[i];
        if (!f->live[i]) continue;
        for (int j = 0; j < n->ninputs; j++) {
            int dup = 0;
            for (int q = 0; q < j; q++) dup |= n->inputs[q] == n->inputs[j];
            int in = n->inputs[j];
            if (!dup) f->ulist[f->uoff[in] + fill[in]++] = i;
        }
    }
    free(fill);
    return OC_OK;
}

/* ---------------------------------------------------------------- the program */

/* Whether value v reaches `want` through its arguments and index values. */
static int val_reaches(const struct oc_kval *v, const struct oc_kval *want, unsigned char *seen)
{
    if (v == want) return 1;
    if (seen[v->id]) return 0;
    seen[v->id] = 1;
    for (int i = 0; i < v->nargs; i++)
        if (val_reaches(v->arg[i], want, seen)) return 1;
    if (v->ix)
        for (int t = 0; t < v->ix->nterm; t++)
            if (v->ix->atom[t]->v && val_reaches(v->ix->atom[t]->v, want, seen)) return 1;
    return 0;
}

/* The slot of kernel k holding buffer b, or -1. */
static int slot_of_buf(const struct oc_kernel *k, int b, int written)
{
    for (int s = 0; s < k->nslot; s++)
        if (k->slot[s].buf == b && k->slot[s].written == written) return s;
    return -1;
}

/* Assigns written in place (the optimizer's parameter and momentum
 * updates, BN running statistics): instead of computing the new value into
 * a buffer of its own and copying it over the target at the end of the
 * step, the kernel that computes it stores straight into the target. That
 * is right when the kernel is elementwise and reads the target, if at all,
 * only at the element it writes and before writing it (as the planner's
 * in-place rule), every other reader of the old value runs earlier (the
 * kernel is moved after the last one when nothing in between needs its
 * results), and no output or other assign sees the old value. The value's
 * own buffer is then unused (`merged`) and the assign is a no-op
 * (target == value). OC_ASSIGN_INPLACE=0 keeps the copies. */
static void assign_in_place(struct fz *f, struct oc_kprog *p)
{
    const char *env = getenv("OC_ASSIGN_INPLACE");
    if (env && !strcmp(env, "0")) return;
    int nk = p->nkernel;
    for (int a = 0; a < p->nassign; a++) {
        int T = p->assign[a].target, V = p->assign[a].value;
        if (T == V || p->buf[V].kind != OC_KB_TEMP || p->buf[V].bytes != p->buf[T].bytes) continue;
        int bad = 0;
        for (int o = 0; o < p->nassign; o++)
            if (o != a && (p->assign[o].target == V || p->assign[o].value == T ||
                           p->assign[o].value == V || p->assign[o].target == T))
                bad = 1;
        for (int i = 0; i < p->g->noutputs; i++) bad |= p->out_buf[i] == T;
        const char *tn = p->g->nodes[p->buf[T].node]->attrs.name;
        if (bad) {
            logf_(f, "copy assign %%%d (%s): an output or another assign uses its buffers", p->assign[a].node, tn);
            continue;
        }
        /* the one kernel writing V; nobody else writes T */
        int K = -1;
        for (int i = 0; i < nk && !bad; i++) {
            const struct oc_kernel *k = p->kernel[i];
            if (slot_of_buf(k, T, 1) >= 0) bad = 1;
            if (slot_of_buf(k, V, 1) >= 0) bad |= K >= 0, K = i;
        }
        if (bad || K < 0) {
            logf_(f, "copy assign %%%d (%s): not one kernel writing the value", p->assign[a].node, tn);
            continue;
        }
        const struct oc_kernel *k = p->kernel[K];
        int sv = slot_of_buf(k, V, 1), st = slot_of_buf(k, T, 0);
        const struct oc_kstore *store = NULL;
        for (int i = 0; k->kind == OC_K_LOOP && i < k->nstore; i++)
            if (k->store[i].slot == sv) bad |= store != NULL, store = &k->store[i];
        /* one store per point of an elementwise kernel, or per row */
        if (bad || !store || (k->rmask && store->stage >= 0)) {
            logf_(f, "copy assign %%%d (%s): kernel %s does not store it once per element", p->assign[a].node, tn, k->name);
            continue;
        }
        if (st >= 0) { /* reads of the target: at the written element, feeding the new value */
            unsigned char *seen = calloc((size_t)k->nval + 1, 1);
            if (!seen) continue;
            for (int i = 0; i < k->nval && !bad; i++) {
                const struct oc_kval *v = k->vals[i];
                if (v->kind != OC_KV_LOAD || v->slot != st) continue;
                memset(seen, 0, (size_t)k->nval + 1);
                bad = v->ix != store->ix || !val_reaches(store->v, v, seen);
            }
            for (int i = 0; i < k->nix && !bad; i++) /* the target used as an index */
                for (int t = 0; t < k->ixs[i]->nterm; t++) {
                    const struct oc_kval *iv = k->ixs[i]->atom[t]->v;
                    bad |= iv && iv->kind == OC_KV_LOAD && iv->slot == st;
                }
            free(seen);
            if (bad) {
                logf_(f, "copy assign %%%d (%s): kernel %s reads the old value elsewhere", p->assign[a].node, tn, k->name);
                continue;
            }
        }
        /* every other reader of the old value before K */
        int last = -1;
        for (int i = 0; i < nk; i++)
            if (i != K && slot_of_buf(p->kernel[i], T, 0) >= 0) last = i;
        if (last > K) {
            /* move K after `last`, unless a kernel in between reads what K writes */
            for (int i = K + 1; i <= last && !bad; i++)
                for (int s = 0; s < k->nslot && !bad; s++)
                    if (k->slot[s].written && slot_of_buf(p->kernel[i], k->slot[s].buf, 0) >= 0) bad = 1;
            if (bad) {
                logf_(f, "copy assign %%%d (%s): kernel %s would have to run after a reader of the old value that needs its results",
                      p->assign[a].node, tn, k->name);
                continue;
            }
            struct oc_kernel *mk = p->kernel[K];
            memmove(&p->kernel[K], &p->kernel[K + 1], sizeof *p->kernel * (size_t)(last - K));
            p->kernel[last] = mk;
        }
        for (int i = 0; i < nk; i++)
            for (int s = 0; s < p->kernel[i]->nslot; s++)
                if (p->kernel[i]->slot[s].buf == V) p->kernel[i]->slot[s].buf = T;
        for (int i = 0; i < p->g->nnodes + p->nextra; i++)
            if (p->node_buf[i] == V) p->node_buf[i] = T;
        for (int i = 0; i < p->g->noutputs; i++)
            if (p->out_buf[i] == V) p->out_buf[i] = T;
        p->assign[a].value = T;
        logf_(f, "assign %%%d (%s) written in place by %s", p->assign[a].node, tn, k->name);
        p->buf[V].merged = 1;
        p->buf[V].pinned = 1;
    }
}

/* ---------------------------------------------------------------- rule 4: groups */

/* Whether kernels a and b touch a common buffer with at least one of them
 * writing it: then neither may move past the other, nor may they share a
 * group (whose members run in no particular order). */
static int conflict(const struct oc_kernel *a, const struct oc_kernel *b)
{
    for (int s = 0; s < a->nslot; s++)
        for (int t = 0; t < b->nslot; t++)
            if (a->slot[s].buf == b->slot[t].buf && (a->slot[s].written || b->slot[t].written))
                return 1;
    return 0;
}

/* A kernel that may join a group: elementwise (no reduced axes), not a
 * group yet, with work to do, writing only assign targets that it writes
 * in place or assign values (the optimizer's updates, running statistics
 * updated elementwise). */
static int groupable(const struct oc_kprog *p, const struct oc_kernel *k)
{
    if (k->kind != OC_K_LOOP || k->rmask || oc_kir_is_group(k) || oc_kir_points(k) <= 0) return 0;
    int nw = 0;
    for (int s = 0; s < k->nslot; s++) {
        if (!k->slot[s].written) continue;
        int b = k->slot[s].buf, ok = 0;
        for (int a = 0; a < p->nassign && !ok; a++)
            ok = p->assign[a].value == b;
        if (!ok) return 0;
        nw++;
    }
    return nw > 0;
}

/* The number of distinct buffers of the kernels ks[0..n) plus k. */
static int group_slots(struct oc_kernel *const *ks, int n, const struct oc_kernel *k)
{
    int cnt = 0;
    for (int i = 0; i <= n; i++) {
        const struct oc_kernel *a = i < n ? ks[i] : k;
        for (int s = 0; s < a->nslot; s++) {
            int dup = 0;
            for (int j = 0; j <= i && !dup; j++) {
                const struct oc_kernel *b = j < n ? ks[j] : k;
                for (int t = 0; t < (j == i ? s : b->nslot) && !dup; t++) dup = b->slot[t].buf == a->slot[s].buf;
            }
            cnt += !dup;
        }
    }
    return cnt;
}

/* Rule 4: the updates at the end of a training step (each parameter's
 * SGD-Nesterov + weight-decay update is one elementwise kernel writing the
 * parameter and its momentum in place) become grouped kernels, one
 * dispatch each instead of one per parameter. Walking the schedule from
 * its end, each groupable kernel not yet taken anchors a group at its
 * place, and earlier groupable kernels join it, moving later to that
 * place, when they conflict (conflict()) with no kernel from their place
 * to the anchor: no kernel in between reads what they write or writes
 * what they read or write, and no member shares a written buffer with
 * another. A group holds at most OC_FUSE_GROUP_MAX members and
 * OC_FUSE_GROUP_MAX_SLOTS distinct buffers; a group of one stays the
 * plain kernel. Groups are applied one at a time, so each later decision
 * sees the schedule the earlier ones made. OC_FUSE_GROUP=0 skips it. */
static enum oc_status group_updates(struct fz *f, struct oc_kprog *p)
{
    const char *env = getenv("OC_FUSE_GROUP");
    if (env && !strcmp(env, "0")) {
        logf_(f, "group: off (OC_FUSE_GROUP=0)");
        return OC_OK;
    }
    int nk = p->nkernel;
    struct oc_kernel **mem = malloc(sizeof *mem * ((size_t)nk + 1));
    int *pos = malloc(sizeof(int) * ((size_t)nk + 1));
    unsigned char *in = calloc((size_t)nk + 1, 1);
    if (!mem || !pos || !in) {
        free(mem), free(pos), free(in);
        return oc_err_set(f->err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    enum oc_status st = OC_OK;
    for (int P = p->nkernel - 1; P > 0 && !st; P--) {
        struct oc_kernel *anchor = p->kernel[P];
        if (!groupable(p, anchor)) continue;
        int nm = 1;
        mem[0] = anchor;
        pos[0] = P;
        memset(in, 0, (size_t)nk + 1);
        in[P] = 1;
        for (int i = P - 1; i >= 0; i--) {
            struct oc_kernel *k = p->kernel[i];
            if (!groupable(p, k)) continue;
            if (nm >= OC_FUSE_GROUP_MAX || group_slots(mem, nm, k) > OC_FUSE_GROUP_MAX_SLOTS) {
                logf_(f, "group: reject %s into the group at %s: full (%d members, at most %d of each "
                      "and %d buffers)", k->name, anchor->name, nm, OC_FUSE_GROUP_MAX,
                      OC_FUSE_GROUP_MAX_SLOTS);
                break;
            }
            int j = i + 1;
            while (j <= P && !conflict(k, p->kernel[j])) j++;
            if (j <= P) {
                logf_(f, "group: reject %s into the group at %s: %s %s shares a buffer that one of "
                      "them writes", k->name, anchor->name,
                      in[j] ? "its member" : "the kernel in between", p->kernel[j]->name);
                continue;
            }
            mem[nm] = k;
            pos[nm++] = i;
            in[i] = 1;
            logf_(f, "group: accept %s into the group at %s (moved %d kernel(s) later)", k->name,
                  anchor->name, P - i);
        }
        if (nm < 2) continue;
        /* members in schedule order (they were collected backwards) */
        for (int a = 0, b = nm - 1; a < b; a++, b--) {
            struct oc_kernel *t = mem[a];
            mem[a] = mem[b], mem[b] = t;
            int u = pos[a];
            pos[a] = pos[b], pos[b] = u;
        }
        struct oc_kernel *gk = oc_kir_build_group(&p->arena, mem, nm, f->err);
        if (!gk) {
            st = f->err->code ? f->err->code : OC_ERR_NOMEM;
            break;
        }
        /* the schedule without the members, the group where the anchor was */
        int w = 0, at = -1;
        for (int i = 0; i < p->nkernel; i++) {
            if (in[i] && i != P) continue;
            if (i == P) at = w;
            p->kernel[w++] = i == P ? gk : p->kernel[i];
        }
        p->nkernel = w;
        logf_(f, "group: %s runs %d update kernels (%lld rows, %d buffers) as one dispatch", gk->name,
              nm, (long long)oc_kir_outer_extent(gk), gk->nslot);
        P = at; /* the loop continues before the group */
    }
    free(mem);
    free(pos);
    free(in);
    return st;
}

static enum oc_status build_program(struct fz *f, struct oc_kprog *p)
{
    const struct oc_graph *g = f->g;
    int nn = f->nn;
    struct oc_err *err = f->err;
    /* what other kernels, outputs and assigns need */
    for (int i = 0; i < nn; i++) f->needed[i] = f->must[i];
    for (int k = 0; k < f->nk; k++) {
        const struct group *gr = &f->k[k];
        if (!gr->alive) continue;
        for (int i = 0; i < gr->nloads; i++) f->needed[f->alias[gr->loads[i]]] = 1;
        if (gr->lib) f->needed[gr->m[0]] = 1;
    }
    /* final kernels */
    struct oc_kernel **ks = calloc((size_t)f->nk + 1, sizeof *ks);
    int *order = malloc(sizeof(int) * ((size_t)f->nk + 1));
    int *indeg = calloc((size_t)f->nk + 1, sizeof(int));
    unsigned char *done = calloc((size_t)f->nk + 1, 1);
    if (!ks || !order || !indeg || !done) {
        free(ks), free(order), free(indeg), free(done);
        return oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    enum oc_status st = OC_OK;
    for (int k = 0; k < f->nk && !st; k++) {
        struct group *gr = &f->k[k];
        if (!gr->alive) continue;
        if (gr->lib) {
            ks[k] = oc_kir_build_lib(&p->arena, g, gr->m[0], err);
            if (!ks[k]) st = err->code;
            else
                for (int s = 1; s < 3; s++) ks[k]->slot[s].node = f->alias[ks[k]->slot[s].node];
            continue;
        }
        unsigned char *store = malloc((size_t)gr->nm + 1);
        if (!store) {
            st = oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
            break;
        }
        for (int i = 0; i < gr->nm; i++) store[i] = f->needed[gr->m[i]];
        free(gr->loads);
        gr->loads = NULL;
        ks[k] = oc_kir_build_loop(&p->arena, g, f->where, k, &gr->space, gr->rmask, gr->m, gr->nm,
                                  store, &gr->loads, &gr->nloads, err);
        free(store);
        if (!ks[k]) st = err->code ? err->code : OC_ERR_UNSUPPORTED;
    }
    /* dependency order; ties broken by graph order */
    int nalive = 0;
    for (int k = 0; k < f->nk && !st; k++) {
        if (!f->k[k].alive) continue;
        nalive++;
        f->markgen++;
        for (int i = 0; i < f->k[k].nloads; i++) {
            int d = kernel_of_load(f, f->k[k].loads[i]);
            if (d >= 0 && d != k && f->mark[d] != f->markgen) {
                f->mark[d] = f->markgen;
                indeg[k]++;
            }
        }
    }
    int norder = 0;
    while (!st && norder < nalive) {
        int best = -1;
        for (int k = 0; k < f->nk; k++)
            if (f->k[k].alive && !done[k] && !indeg[k] &&
                (best < 0 || f->pos[f->k[k].m[0]] < f->pos[f->k[best].m[0]]))
                best = k;
        if (best < 0) {
            st = oc_err_set(err, OC_ERR_INVALID, "fuse: internal error: kernel dependency cycle");
            break;
        }
        done[best] = 1;
        order[norder++] = best;
        for (int k = 0; k < f->nk; k++) {
            if (!f->k[k].alive || done[k]) continue;
            int hit = 0;
            for (int i = 0; i < f->k[k].nloads && !hit; i++) hit = kernel_of_load(f, f->k[k].loads[i]) == best;
            if (hit) indeg[k]--;
        }
    }
    if (!st) {
        /* buffers: sources, then what kernels write */
        p->node_buf = oc_arena_alloc(&p->arena, sizeof(int) * ((size_t)nn + 1));
        p->buf = oc_arena_alloc(&p->arena, sizeof *p->buf * ((size_t)nn + 1));
        p->kernel = oc_arena_alloc(&p->arena, sizeof *p->kernel * ((size_t)norder + 1));
        p->out_buf = oc_arena_alloc(&p->arena, sizeof(int) * ((size_t)g->noutputs + 1));
        p->assign = oc_arena_alloc(&p->arena, sizeof *p->assign * ((size_t)nn + 1));
        if (!p->node_buf || !p->buf || !p->kernel || !p->out_buf || !p->assign)
            st = oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
    }
    if (!st) {
        unsigned char *pin = calloc((size_t)nn + 1, 1);
        if (!pin) st = oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
        for (int i = 0; pin && i < g->noutputs; i++) pin[f->alias[g->outputs[i].node]] = 1;
        for (int i = 0; pin && i < nn; i++)
            if (g->nodes[i]->op == OC_OP_ASSIGN && f->live[i]) pin[f->alias[g->nodes[i]->inputs[1]]] = 1;
        for (int i = 0; i < nn; i++) p->node_buf[i] = -1;
        for (int i = 0; pin && i < nn; i++) {
            const struct oc_node *n = g->nodes[i];
            int src = f->kind[i] == NK_SOURCE &&
                      (n->op != OC_OP_CONST || (f->live[i] && f->needed[i]));
            int tmp = f->kind[i] != NK_SOURCE && f->where[i] >= 0 && f->needed[i];
            if (!src && !tmp) continue;
            struct oc_kbuf *b = &p->buf[p->nbuf];
            b->node = i;
            b->dtype = n->dtype;
            b->shape = n->shape;
            b->bytes = (size_t)oc_shape_numel(&n->shape) * oc_dtype_size(n->dtype);
            b->kind = n->op == OC_OP_INPUT ? OC_KB_INPUT
                      : n->op == OC_OP_PARAM ? OC_KB_PARAM
                      : n->op == OC_OP_STATE ? OC_KB_STATE
                      : src ? OC_KB_CONST : OC_KB_TEMP;
            b->pinned = src || pin[i];
            b->offset = -1;
            b->def = b->last = -1;
            p->node_buf[i] = p->nbuf++;
        }
        free(pin);
        for (int i = 0; i < nn; i++)
            if (g->nodes[i]->op == OC_OP_ASSIGN) p->node_buf[i] = p->node_buf[f->alias[i]];
        for (int i = 0; i < g->noutputs; i++) {
            p->out_buf[i] = p->node_buf[f->alias[g->outputs[i].node]];
            OC_ASSERT(p->out_buf[i] >= 0);
        }
        for (int i = 0; i < nn; i++) {
            const struct oc_node *n = g->nodes[i];
            if (n->op != OC_OP_ASSIGN || !f->live[i]) continue;
            struct oc_kassign *a = &p->assign[p->nassign++];
            a->node = i;
            a->target = p->node_buf[n->inputs[0]];
            a->value = p->node_buf[f->alias[n->inputs[1]]];
            OC_ASSERT(a->target >= 0 && a->value >= 0);
        }
        for (int o = 0; o < norder; o++) {
            struct oc_kernel *k = ks[order[o]];
            for (int s = 0; s < k->nslot; s++) {
                k->slot[s].buf = p->node_buf[k->slot[s].node];
                OC_ASSERT(k->slot[s].buf >= 0);
            }
            p->kernel[p->nkernel++] = k;
        }
    }
    free(ks);
    free(order);
    free(indeg);
    free(done);
    return st;
}

enum oc_status oc_pass_fuse(const struct oc_graph *g, const struct oc_fuse_opts *o,
                            struct oc_kprog **out, struct oc_err *err)
{
    *out = NULL;
    struct oc_err e = {0};
    if (oc_graph_verify(g, &e)) return oc_err_set(err, e.code, "fuse: invalid graph: %s", e.msg);
    struct fz f;
    memset(&f, 0, sizeof f);
    f.g = g;
    f.nn = g->nnodes;
    f.fusion = o ? o->fusion : 1;
    f.debug = o ? o->debug : 0;
    f.log = o && o->log ? o->log : stderr;
    f.err = err;
    struct oc_kprog *p = calloc(1, sizeof *p);
    const char *sp = getenv("OC_SPLIT_REDUCTIONS");
    enum oc_status st = p ? extend(&f, g, !(sp && !strcmp(sp, "0")), p)
                          : oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
    if (!st) st = setup(&f);
    if (!st) st = decide(&f);
    /* initial single-node kernels: they must all build */
    for (int k = 0; k < f.nk && !st; k++) {
        struct group *gr = &f.k[k];
        if (gr->lib) {
            if (lib_loads(&f, gr->m[0], &gr->loads, &gr->nloads))
                st = oc_err_set(err, OC_ERR_NOMEM, "fuse: out of memory");
        } else if (try_build(&f, k, &gr->space, gr->rmask, gr->m, gr->nm, &gr->loads,
                             &gr->nloads, err)) {
            st = err->code ? err->code : OC_ERR_UNSUPPORTED;
        }
    }
    if (!st && f.fusion) {
        if (merge_producers(&f) || merge_siblings(&f)) st = err->code ? err->code : OC_ERR_NOMEM;
    }
    if (!st) {
        p->g = g;
        p->fusion = f.fusion;
        st = build_program(&f, p);
        if (!st && f.fusion) assign_in_place(&f, p);
        if (!st && f.fusion) st = group_updates(&f, p);
    }
    fz_free(&f);
    if (st) {
        oc_kprog_free(p);
        return st;
    }
    *out = p;
    return OC_OK;
}
