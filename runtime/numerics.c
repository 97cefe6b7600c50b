/* numerics.c - the OC_CHECK_NUMERICS guard (see numerics.h): finds the
 * first kernel that writes a NaN or an infinity and says where.
 *
 * Data flow: executor runs kernel i -> oc_numerics_check_* -> for every
 * float slot the kernel wrote, the buffer's values (host memory directly,
 * or a copy from the device) -> the first non-finite element -> an error
 * naming the kernel, the slot's graph node and the element. A kernel may
 * write several slots; the reported one is the earliest node in graph
 * order, the likeliest cause of the others. The kernel's operands are then
 * scanned too (only on this failure path), so that a value that arrived
 * non-finite (an input, a parameter bound with one) is not blamed on the
 * kernel that merely passed it on.
 */
#include "numerics.h"

#include "cuda-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHP(s) oc_shape_str(&(s), (char[128]){0}, 128)

int oc_numerics_enabled(void)
{
    const char *s = getenv("OC_CHECK_NUMERICS");
    return s && *s && strcmp(s, "0") != 0;
}

/* A graph node or one that fusion added (prog->extra), or NULL. */
static const struct oc_node *node_of(const struct oc_kprog *p, int id)
{
    const struct oc_graph *g = p->g;
    if (id >= 0 && id < g->nnodes) return g->nodes[id];
    if (id >= g->nnodes && id < g->nnodes + p->nextra) return p->extra[id - g->nnodes];
    return NULL;
}

/* ---------------------------------------------------------------- scanning */

/* Index of the first non-finite value (its value in *val) and how many
 * there are, or -1. The common all-finite case tests exponent bits a block
 * at a time, which compilers vectorize. One definition per float type. */
#define OC_SCAN_FN(name, T, U, EXP)                                                   \
    static int64_t name(const T *x, int64_t n, double *val, int64_t *count)           \
    {                                                                                 \
        int64_t first = -1;                                                           \
        for (int64_t b = 0; b < n; b += 1024) {                                       \
            int64_t e = b + 1024 < n ? b + 1024 : n;                                  \
            unsigned bad = 0;                                                         \
            for (int64_t i = b; i < e; i++) {                                         \
                U u;                                                                  \
                memcpy(&u, &x[i], sizeof u);                                          \
                bad |= (u & (EXP)) == (EXP);                                          \
            }                                                                         \
            if (!bad) continue;                                                       \
            for (int64_t i = b; i < e; i++)                                           \
                if (!isfinite(x[i])) {                                                \
                    if (first < 0) first = i, *val = x[i];                            \
                    ++*count;                                                         \
                }                                                                     \
        }                                                                             \
        return first;                                                                 \
    }
OC_SCAN_FN(scan_f32, float, uint32_t, 0x7f800000u)
OC_SCAN_FN(scan_f64, double, uint64_t, 0x7ff0000000000000ull)
#undef OC_SCAN_FN

static int64_t scan(const void *data, enum oc_dtype dt, int64_t n, double *val, int64_t *count)
{
    *count = 0;
    if (dt == OC_F32) return scan_f32(data, n, val, count);
    if (dt == OC_F64) return scan_f64(data, n, val, count);
    return -1; /* integers are always finite */
}

/* ---------------------------------------------------------------- where the values are */

/* Host copies of buffers: CPU buffers are read in place; device ones are
 * copied into `stage`, which waits for the kernel on the stream. */
struct fetch {
    const struct oc_kprog *p;
    void *const *bufp;               /* CPU */
    struct oc_cuda *cu;              /* CUDA */
    const unsigned long long *devp;
    void *stage;
    size_t cap;
};

static enum oc_status fetch(struct fetch *f, int b, const void **out, struct oc_err *err)
{
    size_t bytes = f->p->buf[b].bytes;
    if (!f->cu) {
        *out = f->bufp[b];
        return OC_OK;
    }
    if (bytes > f->cap) {
        void *q = realloc(f->stage, bytes);
        if (!q) return oc_err_set(err, OC_ERR_NOMEM, "OC_CHECK_NUMERICS: out of memory for %zu bytes", bytes);
        f->stage = q;
        f->cap = bytes;
    }
    enum oc_status st = oc_cuda_dtoh(f->cu, f->stage, (oc_devptr)f->devp[b], bytes, err);
    *out = f->stage;
    return st;
}

/* ---------------------------------------------------------------- the message */

struct finding {
    int slot, node;
    int64_t at, count, numel;
    double val;
};

static const char *val_str(double v)
{
    return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

/* "%4 (log, f32[2,4])" with the name of a source or the node's label. */
static void describe(char *out, size_t n, const struct oc_kprog *p, int id)
{
    const struct oc_node *nd = node_of(p, id);
    if (!nd) {
        snprintf(out, n, "%%%d", id);
        return;
    }
    const char *name = nd->attrs.name && (nd->op == OC_OP_INPUT || nd->op == OC_OP_PARAM ||
                                          nd->op == OC_OP_STATE)
                           ? nd->attrs.name
                           : nd->label;
    snprintf(out, n, "%%%d (%s, %s%s%s%s%s%s)", id, oc_op_name(nd->op), oc_dtype_name(nd->dtype),
             SHP(nd->shape), name ? " \"" : "", name ? name : "", name ? "\"" : "",
             id >= p->g->nnodes ? ", added by fusion" : "");
}

/* " [1,7]": the coordinates of flat index i in the node's shape. */
static void coords(char *out, size_t n, const struct oc_kprog *p, int id, int64_t i)
{
    const struct oc_node *nd = node_of(p, id);
    out[0] = 0;
    if (!nd || nd->shape.rank < 1) return;
    int64_t c[OC_MAX_RANK];
    for (int d = nd->shape.rank - 1; d >= 0; d--) {
        int64_t e = nd->shape.dim[d] > 0 ? nd->shape.dim[d] : 1;
        c[d] = i % e;
        i /= e;
    }
    size_t k = (size_t)snprintf(out, n, " [");
    for (int d = 0; d < nd->shape.rank && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, d ? ",%lld" : "%lld", (long long)c[d]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* The first non-finite value in the float slots of k with written == w
 * (skipping, for operands, buffers the kernel also writes: in place). */
static enum oc_status find(struct fetch *f, const struct oc_kernel *k, int w, struct finding *best,
                           struct oc_err *err)
{
    best->slot = -1;
    for (int s = 0; s < k->nslot; s++) {
        const struct oc_kslot *sl = &k->slot[s];
        if (!sl->written != !w || !oc_dtype_is_float(sl->dtype) || sl->buf < 0) continue;
        if (!w) {
            int inplace = 0;
            for (int t = 0; t < k->nslot; t++) inplace |= k->slot[t].written && k->slot[t].buf == sl->buf;
            if (inplace) continue;
        }
        if (best->slot >= 0 && sl->node >= best->node) continue; /* an earlier node already failed */
        const void *data = NULL;
        enum oc_status st = fetch(f, sl->buf, &data, err);
        if (st) return st;
        const struct oc_kbuf *kb = &f->p->buf[sl->buf];
        int64_t numel = oc_shape_numel(&kb->shape), count = 0;
        double val = 0;
        int64_t at = scan(data, kb->dtype, numel, &val, &count);
        if (at >= 0) *best = (struct finding){s, sl->node, at, count, numel, val};
    }
    return OC_OK;
}

/* "; its operands are finite; the kernel computes log, mul, sum (...)":
 * the primitives a fused kernel evaluates (inlined ones have no buffer, so
 * the stored node may be a later one), or nothing for a single primitive. */
static void ops_of(const struct oc_kernel *k, char *out, size_t n)
{
    out[0] = 0;
    if (k->kind != OC_K_LOOP) return;
    unsigned char seen[OC_OP_COUNT];
    memset(seen, 0, sizeof seen);
    enum oc_op order[OC_OP_COUNT];
    int nops = 0;
    for (int v = 0; v < k->nval; v++) {
        const struct oc_kval *x = k->vals[v];
        if (x && x->kind == OC_KV_OP && (int)x->op < OC_OP_COUNT && !seen[x->op])
            seen[x->op] = 1, order[nops++] = x->op;
    }
    for (int r = 0; r < k->nred; r++)
        if ((int)k->red[r].op < OC_OP_COUNT && !seen[k->red[r].op])
            seen[k->red[r].op] = 1, order[nops++] = k->red[r].op;
    if (nops < 2) return;
    size_t m = (size_t)snprintf(out, n, "; its operands are finite; the kernel computes");
    for (int i = 0; i < nops && m < n; i++)
        m += (size_t)snprintf(out + m, n - m, "%s %s", i ? "," : "", oc_op_name(order[i]));
    if (m < n) snprintf(out + m, n - m, " (OC_FUSION=0 names the primitive that made it)");
}

/* The member of a grouped kernel (passes/kir.h) that writes buffer b; k
 * itself for any other kernel. A group's slots are its members' buffers,
 * so scanning them needs nothing special; the member only makes the
 * message and the operand scan precise. */
static const struct oc_kernel *writer_of(const struct oc_kernel *k, int b)
{
    if (!oc_kir_is_group(k)) return k;
    for (int i = 0; i < k->ngroup; i++)
        for (int s = 0; s < k->group[i]->nslot; s++)
            if (k->group[i]->slot[s].written && k->group[i]->slot[s].buf == b) return k->group[i];
    return k;
}

static enum oc_status check(struct fetch *f, int ki, struct oc_err *err)
{
    const struct oc_kprog *p = f->p;
    const struct oc_kernel *k = p->kernel[ki];
    struct finding w;
    enum oc_status st = find(f, k, 1, &w, err);
    if (st || w.slot < 0) return st;
    /* the failure path: name the node, then look at where the value came from */
    char node[400], at[160], more[1024] = "", member[96] = "";
    const struct oc_kernel *mk = writer_of(k, k->slot[w.slot].buf);
    if (mk != k) {
        snprintf(member, sizeof member, ", in its member %s,", mk->name);
        /* the member's own slot names the node computing the value (the
         * group's may name the param it overwrites in place) */
        for (int s = 0; s < mk->nslot; s++)
            if (mk->slot[s].written && mk->slot[s].buf == k->slot[w.slot].buf) w.node = mk->slot[s].node;
    }
    describe(node, sizeof node, p, w.node);
    coords(at, sizeof at, p, w.node, w.at);
    struct finding r;
    if ((st = find(f, mk, 0, &r, err))) return st;
    if (r.slot >= 0) {
        char op[400], rat[160];
        describe(op, sizeof op, p, r.node);
        coords(rat, sizeof rat, p, r.node, r.at);
        snprintf(more, sizeof more, "; it came in through its operand %s, which already held %s at element %lld%s",
                 op, val_str(r.val), (long long)r.at, rat);
    } else {
        ops_of(mk, more, sizeof more);
    }
    return oc_err_set(err, OC_ERR_NUMERIC,
                      "OC_CHECK_NUMERICS: kernel %s (#%d of %d)%s wrote %s at element %lld%s of node %s "
                      "(%lld of %lld elements non-finite)%s",
                      k->name, ki, p->nkernel, member, val_str(w.val), (long long)w.at, at, node,
                      (long long)w.count, (long long)w.numel, more);
}

/* ---------------------------------------------------------------- entry points */

enum oc_status oc_numerics_check_host(const struct oc_kprog *p, int ki, void *const *bufp,
                                      struct oc_err *err)
{
    struct fetch f = {p, bufp, NULL, NULL, NULL, 0};
    return check(&f, ki, err);
}

enum oc_status oc_numerics_check_cuda(struct oc_cuda *cu, const struct oc_kprog *p, int ki,
                                      const unsigned long long *devp, struct oc_err *err)
{
    struct fetch f = {p, NULL, cu, devp, NULL, 0};
    enum oc_status st = check(&f, ki, err);
    free(f.stage);
    return st;
}
