/* llvm-emit.c - kernel IR -> LLVM IR, one function per loop kernel.
 *
 *   void k_<hash>(i8** bufs, i64 begin, i64 end)
 *     for r in [begin, end) (the chunked row axes, collapsed), then the
 *     other row axes:
 *       for each stage: reset its accumulators;
 *         loop nest over the reduced axes: accumulate, store elements
 *       store the per-row results
 *
 * Values are emitted on demand with a memo scoped to the row body and the
 * current stage's inner body, so a value is computed once per point; LLVM's
 * LICM hoists what only depends on the row. Accumulators live in allocas
 * that SROA turns into registers. Arithmetic keeps IEEE semantics (no
 * fast-math) so results track the reference interpreter; two licences are
 * taken. Float sums: their loop carries llvm.loop.vectorize.enable, which
 * lets the vectorizer keep several partial sums (a reduction's order is
 * unspecified by the IR, and partial sums are no less accurate than one
 * running sum; llvm-jit.c adds the lanes up as a tree). f32 products: a
 * tree of multiplications is rebuilt in one canonical order, so that the
 * chain rule's several orders of one product are computed once (see
 * "products"; OC_REASSOC=0 keeps the graph's order). The integer and NaN
 * rules are the interpreter's (see
 * ir/interp.c): i32 wraps, casts to integers truncate and saturate, NaN
 * propagates through relu/max/min/reduce_max, argmax keeps the first NaN or
 * the first maximum.
 *
 * Reductions over leading axes whose operands sit in memory with a row's
 * stride along the reduced axis (a [B,C] tensor summed over B), and
 * reductions over short rows (10 classes), use a blocked schedule instead
 * (emit_wide, oc_llvm_row_block): 32 rows at a time, rows innermost,
 * accumulators in arrays, values that several stages need kept per block
 * (a softmax's exp), divisions by a row's value done with one reciprocal
 * per row (fast_div). f32 exp/log/log1p are
 * inline vectorizable polynomials (see "f32 math"), short loops (10
 * classes) run as masked vector steps, and functions ask for 512-bit
 * vectors where the target has them.
 *
 * Only the `*2` builder calls (LLVMBuildLoad2, LLVMBuildGEP2, LLVMBuildCall2)
 * are used, so LLVM 14 to 18 (typed or opaque pointers) all work.
 */
#include "codegen.h"

#include <stdlib.h>
#include <string.h>

/* The coefficient of loop variable d in index x (0 when absent). */
static int64_t var_coef(const struct oc_kix *x, int d)
{
    for (int t = 0; t < x->nterm; t++)
        if (x->atom[t]->kind == OC_KA_VAR && x->atom[t]->var == d) return x->coef[t];
    return 0;
}

int oc_llvm_row_block(const struct oc_kernel *k)
{
    if (k->kind != OC_K_LOOP || !k->rmask || k->nred > 64) return 0; /* (emit_wide's limit) */
    int last_red = -1, last_out = -1;
    for (int d = 0; d < k->space.rank; d++) {
        if (k->space.dim[d] <= 1) continue;
        if (k->rmask & (1u << d)) last_red = d;
        else last_out = d;
    }
    /* short rows (a softmax over 10 classes): one row at a time, each
     * reduction is a latency chain across a handful of lanes (a float max
     * cannot even vectorize, for its NaN rules) and a horizontal sum per
     * row; 32 rows side by side make every step a full-width vector op
     * (loads along a row become strided gathers, which still pays: ce
     * 1.4x). OC_ROW_BLOCK_SHORT=0 keeps them one row at a time. */
    int64_t rext = 1;
    for (int d = 0; d < k->space.rank; d++)
        if (k->rmask & (1u << d)) rext *= k->space.dim[d];
    /* (a single stage of cheap work, a lone sum or max, is faster one row
     * at a time: the gathers would cost more than they save) */
    int work = k->nstage >= 2;
    for (int i = 0; i < k->nval && !work; i++) {
        const struct oc_kval *v = k->vals[i];
        work = v->kind == OC_KV_OP && (v->varmask & k->rmask) &&
               ((oc_op_table[v->op].flags & OC_F_EXPENSIVE) || v->op == OC_OP_DIV);
    }
    if (rext > 1 && rext < 32 && oc_kir_outer_extent(k) >= 64 && work) {
        const char *sv = getenv("OC_ROW_BLOCK_SHORT");
        if (!sv || strcmp(sv, "0")) return OC_LLVM_ROW_BLOCK;
    }
    /* a reduction over leading axes ("columns") ... */
    if (last_red < 0 || last_out < last_red || oc_kir_outer_extent(k) < 16) return 0;
    /* ... that reads or writes memory with a stride along the reduced axis
     * and consecutively along the rows (a [B,C] tensor summed over B); a
     * kernel whose big operands are computed (MMCE's pairs from [B]
     * vectors) vectorizes better one row at a time */
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        if (v->kind != OC_KV_LOAD) continue;
        int64_t cr = var_coef(v->ix, last_red), co = var_coef(v->ix, last_out);
        if (cr != 0 && cr != 1 && cr != -1 && co == 1) return OC_LLVM_ROW_BLOCK;
    }
    for (int i = 0; i < k->nstore; i++) {
        int64_t cr = var_coef(k->store[i].ix, last_red), co = var_coef(k->store[i].ix, last_out);
        if (cr != 0 && cr != 1 && cr != -1 && co == 1) return OC_LLVM_ROW_BLOCK;
    }
    return 0;
}

#ifdef OC_HAVE_LLVM

#include "llvm-impl.h"

#include <llvm-c/DebugInfo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct loop {
    LLVMBasicBlockRef header, body, exit;
    LLVMValueRef phi;
    int64_t step;
    LLVMValueRef vstep; /* a step known at run time (when set) */
};

struct em {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef i1, i8, i32, i64, f32, f64, vd, i8p, i8pp;
    LLVMValueRef fn;
    const struct oc_kernel *k;
    LLVMValueRef *slotp;
    LLVMValueRef *ascope, *anoalias; /* per slot: alias.scope and noalias lists */
    unsigned kscope, knoalias;
    LLVMValueRef var[OC_MAX_RANK];
    LLVMValueRef *acc, *accidx;
    LLVMValueRef *vmemo, *ixmemo;
    int *vscope, *ixscope;
    int scope; /* current inner scope id; 1 is the row body */
    struct oc_err *err;
    int failed;
    int libm; /* OC_LIBM=1: exp/log/log1p through libm calls */
    int wide; /* rows in blocks (emit_wide): no value outlives its block body */
    int nscope;
    int reassoc;   /* rebuild f32 products canonically (ev_product) */
    uint32_t vary; /* loop variables that vary in the loop being emitted (0: unknown) */
    struct pmemo *pm; /* products built so far (ev_product) */
    int npm, cappm;
    /* emit_wide over short rows: values of a reduced point that several
     * stages need, kept per block (carr[v]: [points x W], cfirst[v]: the
     * stage that computes them), so later stages neither reload them
     * (gathers) nor recompute them (a softmax's exp) */
    LLVMValueRef *carr;
    int *cfirst;
    int cstage;           /* stage whose body is being emitted, else -1 */
    LLVMValueRef cidx;    /* (flat reduced index) * W + w in that body */
    int cW;
    /* division by a value that the loop being emitted does not change
     * (fast_div): its per-row reciprocal rc, scaled divisor yp and scale sx,
     * per divisor node; in emit_wide loaded from per-block arrays (darr) */
    int wlast;                      /* emit_wide: the innermost row axis, or -1 */
    LLVMValueRef wbase[OC_MAX_RANK]; /* its block's first row, decoded */
    int fastdiv;
    LLVMValueRef *drc, *dyp, *dsx;
    int *dscope;
    LLVMValueRef *darr; /* 3 arrays [W] per divisor node */
};

static LLVMTypeRef ty(struct em *e, int dt)
{
    switch (dt) {
    case OC_F32: return e->f32;
    case OC_F64: return e->f64;
    case OC_I32: return e->i32;
    case OC_U8: return e->i8;
    default: return e->i1;
    }
}

static int isfloat(int dt) { return dt == OC_F32 || dt == OC_F64; }

static LLVMValueRef cint(struct em *e, LLVMTypeRef t, long long v) { return LLVMConstInt(t, (unsigned long long)v, 1); }
static LLVMValueRef ci64(struct em *e, long long v) { return cint(e, e->i64, v); }

static LLVMValueRef cval(struct em *e, int dt, double c)
{
    switch (dt) {
    case OC_F32:
    case OC_F64: return LLVMConstReal(ty(e, dt), c);
    case OC_I32: return cint(e, e->i32, (long long)c);
    case OC_U8: return LLVMConstInt(e->i8, (unsigned long long)c, 0);
    default: return LLVMConstInt(e->i1, c != 0, 0);
    }
}

/* A declared function (intrinsic or libm). */
static LLVMValueRef callf(struct em *e, const char *name, LLVMTypeRef ret, LLVMTypeRef *argt,
                          int nargs, LLVMValueRef *args)
{
    LLVMTypeRef ft = LLVMFunctionType(ret, argt, (unsigned)nargs, 0);
    LLVMValueRef f = LLVMGetNamedFunction(e->mod, name);
    if (!f) {
        f = LLVMAddFunction(e->mod, name, ft);
        LLVMSetLinkage(f, LLVMExternalLinkage);
    }
    return LLVMBuildCall2(e->b, ft, f, args, (unsigned)nargs, "");
}

static LLVMValueRef call1(struct em *e, const char *base, int dt, LLVMValueRef x)
{
    char name[64];
    LLVMTypeRef t = ty(e, dt);
    if (!strncmp(base, "llvm.", 5))
        snprintf(name, sizeof name, "%s.%s", base, dt == OC_F32 ? "f32" : "f64");
    else
        snprintf(name, sizeof name, "%s%s", base, dt == OC_F32 ? "f" : "");
    return callf(e, name, t, &t, 1, &x);
}

static LLVMValueRef call2(struct em *e, const char *base, int dt, LLVMValueRef x, LLVMValueRef y)
{
    char name[64];
    LLVMTypeRef t[2] = {ty(e, dt), ty(e, dt)};
    LLVMValueRef a[2] = {x, y};
    snprintf(name, sizeof name, "%s.%s", base, dt == OC_F32 ? "f32" : "f64");
    return callf(e, name, t[0], t, 2, a);
}

static LLVMValueRef sel(struct em *e, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(e->b, c, a, b, "");
}

static LLVMValueRef isnan_(struct em *e, LLVMValueRef x)
{
    return LLVMBuildFCmp(e->b, LLVMRealUNO, x, x, "");
}

/* ---------------------------------------------------------------- loops */

static void loop_begin(struct em *e, LLVMValueRef lo, LLVMValueRef hi, struct loop *L)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(e->b);
    L->header = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "h");
    L->body = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "b");
    L->exit = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "x");
    LLVMBuildBr(e->b, L->header);
    LLVMPositionBuilderAtEnd(e->b, L->header);
    L->phi = LLVMBuildPhi(e->b, e->i64, "i");
    LLVMAddIncoming(L->phi, &lo, &pre, 1);
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, L->phi, hi, ""), L->body, L->exit);
    LLVMPositionBuilderAtEnd(e->b, L->body);
    L->step = 1;
    L->vstep = NULL;
}

/* Loop hints (llvm.loop metadata) */
enum { LOOP_VECTORIZE = 1, LOOP_PREDICATE = 2, LOOP_NOUNROLL = 4 };

static void loop_end(struct em *e, struct loop *L, int hints)
{
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMValueRef next = LLVMBuildNSWAdd(e->b, L->phi, L->vstep ? L->vstep : ci64(e, L->step), "");
    LLVMAddIncoming(L->phi, &next, &latch, 1);
    LLVMValueRef br = LLVMBuildBr(e->b, L->header);
    if (hints) {
        /* !llvm.loop !{self, !{"llvm.loop.vectorize.enable", i1 true}, ...} */
        LLVMMetadataRef ops[4];
        int n = 0;
        LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->ctx, NULL, 0);
        ops[n++] = tmp;
        LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(e->i1, 1, 0));
        LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(e->ctx, "llvm.loop.vectorize.enable", 26), one};
        ops[n++] = LLVMMDNodeInContext2(e->ctx, kv, 2);
        if (hints & LOOP_PREDICATE) {
            /* fold the remainder into masked vector iterations: a row of
             * 10 classes is one masked 16-lane step instead of 10 scalar ones */
            LLVMMetadataRef pv[2] = {
                LLVMMDStringInContext2(e->ctx, "llvm.loop.vectorize.predicate.enable", 36), one};
            ops[n++] = LLVMMDNodeInContext2(e->ctx, pv, 2);
        }
        if (hints & LOOP_NOUNROLL) {
            /* keep the full unroller (which runs before the vectorizer) off
             * a short loop that vectorizes: it unrolls one whose body it
             * finds cheap, and the 10 copies then run scalar */
            LLVMMetadataRef ud = LLVMMDStringInContext2(e->ctx, "llvm.loop.unroll.disable", 24);
            ops[n++] = LLVMMDNodeInContext2(e->ctx, &ud, 1);
        }
        LLVMMetadataRef id = LLVMMDNodeInContext2(e->ctx, ops, (size_t)n);
        LLVMMetadataReplaceAllUsesWith(tmp, id);
        LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->ctx, "llvm.loop", 9),
                        LLVMMetadataAsValue(e->ctx, id));
    }
    LLVMPositionBuilderAtEnd(e->b, L->exit);
}

/* ---------------------------------------------------------------- index expressions */

static LLVMValueRef ev(struct em *e, const struct oc_kval *v);

static int valid(struct em *e, int scope) { return (scope == 1 && !e->wide) || scope == e->scope; }

static LLVMValueRef eix(struct em *e, const struct oc_kix *x)
{
    if (e->ixmemo[x->id] && valid(e, e->ixscope[x->id])) return e->ixmemo[x->id];
    LLVMValueRef r = NULL;
    for (int i = 0; i < x->nterm; i++) {
        const struct oc_katom *a = x->atom[i];
        LLVMValueRef t = NULL;
        switch (a->kind) {
        case OC_KA_VAR: t = e->var[a->var]; break;
        case OC_KA_DIV: {
            LLVMValueRef y = eix(e, a->x);
            if (a->x->lo >= 0) {
                t = LLVMBuildUDiv(e->b, y, ci64(e, a->c), "");
            } else { /* floor division */
                LLVMValueRef q = LLVMBuildSDiv(e->b, y, ci64(e, a->c), "");
                LLVMValueRef r0 = LLVMBuildSRem(e->b, y, ci64(e, a->c), "");
                LLVMValueRef neg = LLVMBuildICmp(e->b, LLVMIntSLT, r0, ci64(e, 0), "");
                t = LLVMBuildSub(e->b, q, LLVMBuildZExt(e->b, neg, e->i64, ""), "");
            }
            break;
        }
        case OC_KA_MOD: {
            LLVMValueRef y = eix(e, a->x);
            if (a->x->lo >= 0) {
                t = LLVMBuildURem(e->b, y, ci64(e, a->c), "");
            } else {
                LLVMValueRef r0 = LLVMBuildSRem(e->b, y, ci64(e, a->c), "");
                LLVMValueRef neg = LLVMBuildICmp(e->b, LLVMIntSLT, r0, ci64(e, 0), "");
                t = LLVMBuildAdd(e->b, r0, sel(e, neg, ci64(e, a->c), ci64(e, 0)), "");
            }
            break;
        }
        case OC_KA_VAL: {
            LLVMValueRef y = LLVMBuildSExt(e->b, ev(e, a->v), e->i64, "");
            y = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, y, ci64(e, 0), ""), ci64(e, 0), y);
            t = sel(e, LLVMBuildICmp(e->b, LLVMIntSGT, y, ci64(e, a->c - 1), ""), ci64(e, a->c - 1), y);
            break;
        }
        }
        if (x->coef[i] != 1) t = LLVMBuildNSWMul(e->b, t, ci64(e, x->coef[i]), "");
        r = r ? LLVMBuildNSWAdd(e->b, r, t, "") : t;
    }
    if (!r) r = ci64(e, x->c0);
    else if (x->c0) r = LLVMBuildNSWAdd(e->b, r, ci64(e, x->c0), "");
    e->ixmemo[x->id] = r;
    e->ixscope[x->id] = e->scope;
    return r;
}

/* Element pointer of slot s at index x, clamped into the buffer when the
 * index's range leaves it (guarded loads of pad/concat/gather). */
static LLVMValueRef elem_ptr(struct em *e, int s, const struct oc_kix *x)
{
    LLVMValueRef i = eix(e, x);
    int64_t hi = e->k->slot[s].numel - 1;
    if (hi < 0) hi = 0;
    if (x->lo < 0) i = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, i, ci64(e, 0), ""), ci64(e, 0), i);
    if (x->hi > hi) i = sel(e, LLVMBuildICmp(e->b, LLVMIntSGT, i, ci64(e, hi), ""), ci64(e, hi), i);
    return LLVMBuildGEP2(e->b, ty(e, e->k->slot[s].dtype), e->slotp[s], &i, 1, "");
}

/* Slots are distinct buffers (the planner's one exception, a result
 * written over a dying operand, reads and writes each element once, at the
 * same index, read first), so every access carries scoped-noalias
 * metadata: the vectorizer then needs no run-time overlap checks. */
static LLVMValueRef tag(struct em *e, LLVMValueRef inst, int slot)
{
    if (e->ascope) {
        LLVMSetMetadata(inst, e->kscope, e->ascope[slot]);
        LLVMSetMetadata(inst, e->knoalias, e->anoalias[slot]);
    }
    return inst;
}

static LLVMMetadataRef distinct_node(struct em *e, LLVMMetadataRef *ops, int n)
{
    LLVMMetadataRef all[64];
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->ctx, NULL, 0);
    all[0] = tmp;
    for (int i = 0; i < n; i++) all[i + 1] = ops[i];
    LLVMMetadataRef node = LLVMMDNodeInContext2(e->ctx, all, (size_t)n + 1);
    LLVMMetadataReplaceAllUsesWith(tmp, node);
    return node;
}

static int alias_scopes(struct em *e, const struct oc_kernel *k)
{
    e->ascope = calloc((size_t)k->nslot + 1, sizeof *e->ascope);
    e->anoalias = calloc((size_t)k->nslot + 1, sizeof *e->anoalias);
    LLVMMetadataRef *sc = calloc((size_t)k->nslot + 1, sizeof *sc);
    LLVMMetadataRef *others = calloc((size_t)k->nslot + 1, sizeof *others);
    if (!e->ascope || !e->anoalias || !sc || !others) {
        free(sc), free(others);
        return -1;
    }
    LLVMMetadataRef dname = LLVMMDStringInContext2(e->ctx, k->sym, strlen(k->sym));
    LLVMMetadataRef domain = distinct_node(e, &dname, 1);
    for (int s = 0; s < k->nslot; s++) sc[s] = distinct_node(e, &domain, 1);
    for (int s = 0; s < k->nslot; s++) {
        e->ascope[s] = LLVMMetadataAsValue(e->ctx, LLVMMDNodeInContext2(e->ctx, &sc[s], 1));
        int n = 0;
        for (int t = 0; t < k->nslot; t++)
            if (t != s) others[n++] = sc[t];
        e->anoalias[s] = LLVMMetadataAsValue(e->ctx, LLVMMDNodeInContext2(e->ctx, others, (size_t)n));
    }
    free(sc);
    free(others);
    return 0;
}

/* ---------------------------------------------------------------- values */

static LLVMValueRef cmp(struct em *e, enum oc_op op, int dt, LLVMValueRef a, LLVMValueRef b)
{
    if (isfloat(dt)) {
        LLVMRealPredicate p = op == OC_OP_LT   ? LLVMRealOLT
                              : op == OC_OP_LE ? LLVMRealOLE
                              : op == OC_OP_EQ ? LLVMRealOEQ
                              : op == OC_OP_NE ? LLVMRealUNE
                              : op == OC_OP_GE ? LLVMRealOGE
                                               : LLVMRealOGT;
        return LLVMBuildFCmp(e->b, p, a, b, "");
    }
    int u = dt == OC_U8;
    LLVMIntPredicate p = op == OC_OP_LT   ? (u ? LLVMIntULT : LLVMIntSLT)
                         : op == OC_OP_LE ? (u ? LLVMIntULE : LLVMIntSLE)
                         : op == OC_OP_EQ ? LLVMIntEQ
                         : op == OC_OP_NE ? LLVMIntNE
                         : op == OC_OP_GE ? (u ? LLVMIntUGE : LLVMIntSGE)
                                          : (u ? LLVMIntUGT : LLVMIntSGT);
    return LLVMBuildICmp(e->b, p, a, b, "");
}

static LLVMValueRef from_bool(struct em *e, LLVMValueRef p, int dt)
{
    if (dt == OC_KBOOL) return p;
    if (isfloat(dt)) return LLVMBuildUIToFP(e->b, p, ty(e, dt), "");
    return LLVMBuildZExt(e->b, p, ty(e, dt), "");
}

static LLVMValueRef cast(struct em *e, LLVMValueRef x, int from, int to)
{
    if (from == to) return x;
    LLVMTypeRef t = ty(e, to);
    if (isfloat(from) && isfloat(to))
        return to == OC_F64 ? LLVMBuildFPExt(e->b, x, t, "") : LLVMBuildFPTrunc(e->b, x, t, "");
    if (!isfloat(from) && isfloat(to))
        return from == OC_U8 ? LLVMBuildUIToFP(e->b, x, t, "") : LLVMBuildSIToFP(e->b, x, t, "");
    if (isfloat(from)) {
        /* truncate toward zero, saturate, NaN -> 0 (the interpreter's rule) */
        LLVMTypeRef ft = ty(e, from);
        double top = to == OC_I32 ? 2147483648.0 : 256.0;
        double bot = to == OC_I32 ? -2147483648.0 : -1.0;
        long long tmax = to == OC_I32 ? 2147483647 : 255, tmin = to == OC_I32 ? -2147483647 - 1 : 0;
        LLVMValueRef big = LLVMBuildFCmp(e->b, LLVMRealOGE, x, LLVMConstReal(ft, top), "");
        LLVMValueRef small = to == OC_I32
                                 ? LLVMBuildFCmp(e->b, LLVMRealOLT, x, LLVMConstReal(ft, bot), "")
                                 : LLVMBuildFCmp(e->b, LLVMRealOLE, x, LLVMConstReal(ft, bot), "");
        LLVMValueRef bad = LLVMBuildOr(e->b, LLVMBuildOr(e->b, big, small, ""), isnan_(e, x), "");
        LLVMValueRef safe = sel(e, bad, LLVMConstReal(ft, 0), x);
        LLVMValueRef r = to == OC_I32 ? LLVMBuildFPToSI(e->b, safe, t, "")
                                      : LLVMBuildFPToUI(e->b, safe, t, "");
        r = sel(e, big, cint(e, t, tmax), r);
        r = sel(e, small, cint(e, t, tmin), r);
        return r;
    }
    /* integer -> integer */
    if (from == OC_U8) return LLVMBuildZExt(e->b, x, t, "");
    /* i32 -> u8: saturate */
    LLVMValueRef lo = LLVMBuildICmp(e->b, LLVMIntSLT, x, cint(e, e->i32, 0), "");
    LLVMValueRef hi = LLVMBuildICmp(e->b, LLVMIntSGT, x, cint(e, e->i32, 255), "");
    LLVMValueRef c = sel(e, lo, cint(e, e->i32, 0), sel(e, hi, cint(e, e->i32, 255), x));
    return LLVMBuildTrunc(e->b, c, t, "");
}

/* ---------------------------------------------------------------- f32 math */

/* exp, log and log1p of f32 values are computed inline from IEEE bit
 * manipulation and polynomials (Cephes' expf/logf minimax coefficients,
 * Moshier 1984-2000) instead of calls to libm: libm calls cannot be
 * vectorized, and they dominated every kernel with a transcendental (a
 * softplus cost ~30 ns per element; inline and vectorized it is ~1 ns).
 * All three are accurate to about 1 ulp over the whole range, handle
 * +-inf, NaN, zeros, denormal inputs and results, and never rely on
 * fast-math flags. OC_LIBM=1 in the environment restores the libm calls
 * (for comparisons). f64 keeps libm: it is the reference path. */

static LLVMValueRef cf(struct em *e, double c) { return LLVMConstReal(e->f32, c); }
static LLVMValueRef ci32(struct em *e, long long c) { return cint(e, e->i32, c); }

/* a*b + c, fused where the target has FMA */
static LLVMValueRef fma3(struct em *e, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMTypeRef t[3] = {e->f32, e->f32, e->f32};
    LLVMValueRef x[3] = {a, b, c};
    return callf(e, "llvm.fmuladd.f32", e->f32, t, 3, x);
}

static LLVMValueRef fcmp(struct em *e, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFCmp(e->b, p, a, b, "");
}

static LLVMValueRef vexp(struct em *e, LLVMValueRef x, int nonpos)
{
    /* exp(x) = 2^n * exp(r), n = rint(x / ln 2), |r| <= ln2 / 2 (Cody-Waite
     * reduction); 2^n is applied as two factors so that results down to the
     * smallest denormal and up to overflow come out right. Clamping x to
     * [-104, 89] makes every out-of-range input overflow to inf or
     * underflow to 0 by itself. The clamps are compare-selects that let NaN
     * through (one vminps/vmaxps each, where llvm.minnum needs three), and
     * NaN then survives to the end because 2^n is applied by multiplying.
     * n is rounded by adding 1.5 * 2^23 (the low bits of the sum are n),
     * so no rint and no float-to-int conversion are needed: the sum's bits
     * shifted left by 23 are n << 23, the exponent field of 2^n. With x
     * known to be <= 0 (softplus, sigmoid, MMCE's kernel, a softmax's
     * exp(x - max)) one clamp and one factor suffice. */
    LLVMValueRef xc = x;
    if (!nonpos) /* nonpos: x is known to be <= 0 or NaN (exp(-|x|)) */
        xc = sel(e, fcmp(e, LLVMRealOGT, x, cf(e, 89.0)), cf(e, 89.0), x);
    xc = sel(e, fcmp(e, LLVMRealOLT, xc, cf(e, -104.0)), cf(e, -104.0), xc);
    LLVMValueRef t = fma3(e, xc, cf(e, 1.44269504088896341), cf(e, 12582912.0));
    LLVMValueRef n = LLVMBuildFSub(e->b, t, cf(e, 12582912.0), "");
    LLVMValueRef r = fma3(e, n, cf(e, -0.693359375), xc);
    r = fma3(e, n, cf(e, 2.12194440e-4), r);
    /* exp(r) = 1 + r P(r), P of degree 5 fitted for relative error
     * (2e-9 over |r| <= ln2/2; tests/codegen/fit-exp-poly.py): 6 FMAs
     * in Horner form, <= 1 ulp in f32 (as Cephes' 8 operations were) */
    LLVMValueRef p = cf(e, 0.0013843607157468796);
    static const double c[] = {0.008374195545911789, 0.04166800528764725, 0.16666430234909058,
                               0.4999999403953552, 1.0};
    for (int i = 0; i < 5; i++) p = fma3(e, p, r, cf(e, c[i]));
    LLVMValueRef y = fma3(e, p, r, cf(e, 1.0));
    LLVMValueRef nsh = LLVMBuildShl(e->b, LLVMBuildBitCast(e->b, t, e->i32, ""), ci32(e, 23), "");
    if (nonpos) {
        /* n in [-150, 0]: 2^(n + 64) is a normal number, and the constant
         * 2^-64 rounds once into the denormals, like the two halves below */
        LLVMValueRef s = LLVMBuildBitCast(e->b, LLVMBuildAdd(e->b, nsh, ci32(e, (127 + 64) << 23), ""), e->f32, "");
        return LLVMBuildFMul(e->b, LLVMBuildFMul(e->b, y, s, ""), cf(e, 0x1p-64), "");
    }
    /* floor(n / 2) << 23 (an arithmetic shift, then the bit that fell
     * below the exponent field cleared) */
    LLVMValueRef n1sh = LLVMBuildAnd(e->b, LLVMBuildAShr(e->b, nsh, ci32(e, 1), ""), ci32(e, (int32_t)0xff800000), "");
    LLVMValueRef s1 = LLVMBuildBitCast(e->b, LLVMBuildAdd(e->b, n1sh, ci32(e, 0x3f800000), ""), e->f32, "");
    LLVMValueRef s2 = LLVMBuildBitCast(
        e->b, LLVMBuildAdd(e->b, LLVMBuildSub(e->b, nsh, n1sh, ""), ci32(e, 0x3f800000), ""), e->f32, "");
    return LLVMBuildFMul(e->b, LLVMBuildFMul(e->b, y, s1, ""), s2, "");
}

static LLVMValueRef vlog(struct em *e, LLVMValueRef x, int unit)
{
    /* x = 2^k * m with m in [sqrt(1/2), sqrt(2)); log x = k ln2 + log(m),
     * log(1+f) = f - f^2/2 + f^3 P(f) (Cephes logf); denormal inputs are
     * scaled by 2^23 first. unit: x is known to be in [1, 2] or NaN
     * (softplus's log1p of exp(-|x|)): no denormals, zeros or infinities. */
    LLVMValueRef den = unit ? LLVMConstInt(e->i1, 0, 0) : fcmp(e, LLVMRealOLT, x, cf(e, 1.17549435082228751e-38));
    LLVMValueRef xs = sel(e, den, LLVMBuildFMul(e->b, x, cf(e, 8388608.0), ""), x);
    LLVMValueRef bits = LLVMBuildBitCast(e->b, xs, e->i32, "");
    LLVMValueRef k = LLVMBuildSub(e->b, LLVMBuildAnd(e->b, LLVMBuildLShr(e->b, bits, ci32(e, 23), ""), ci32(e, 255), ""),
                                  sel(e, den, ci32(e, 126 + 23), ci32(e, 126)), "");
    LLVMValueRef m = LLVMBuildBitCast(
        e->b, LLVMBuildOr(e->b, LLVMBuildAnd(e->b, bits, ci32(e, 0x007fffff), ""), ci32(e, 0x3f000000), ""),
        e->f32, "");
    LLVMValueRef small = fcmp(e, LLVMRealOLT, m, cf(e, 0.707106781186547524));
    k = LLVMBuildSub(e->b, k, LLVMBuildZExt(e->b, small, e->i32, ""), "");
    LLVMValueRef f = LLVMBuildFSub(e->b, sel(e, small, LLVMBuildFAdd(e->b, m, m, ""), m), cf(e, 1.0), "");
    LLVMValueRef z = LLVMBuildFMul(e->b, f, f, "");
    LLVMValueRef p = cf(e, 7.0376836292E-2);
    static const double c[] = {-1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                               -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1};
    for (int i = 0; i < 8; i++) p = fma3(e, p, f, cf(e, c[i]));
    LLVMValueRef y = LLVMBuildFMul(e->b, LLVMBuildFMul(e->b, p, f, ""), z, "");
    LLVMValueRef fk = LLVMBuildSIToFP(e->b, k, e->f32, "");
    y = fma3(e, fk, cf(e, -2.12194440e-4), y);
    y = fma3(e, z, cf(e, -0.5), y);
    LLVMValueRef r = fma3(e, fk, cf(e, 0.693359375), LLVMBuildFAdd(e->b, f, y, ""));
    if (unit) return sel(e, isnan_(e, x), x, r);
    /* +inf stays; +-0 gives -inf; negative numbers and NaN give NaN */
    LLVMValueRef pos = sel(e, fcmp(e, LLVMRealOLT, x, cf(e, INFINITY)), r, x);
    LLVMValueRef other = sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, 0)), cf(e, -INFINITY), cf(e, NAN));
    return sel(e, fcmp(e, LLVMRealOGT, x, cf(e, 0)), pos, other);
}

static LLVMValueRef vlog1p(struct em *e, LLVMValueRef x, int unit)
{
    /* u = 1 + x rounds; log(u) - ((u - 1) - x) / u corrects for it (to first
     * order, which is exact enough: the correction is below an ulp of u) */
    LLVMValueRef u = LLVMBuildFAdd(e->b, x, cf(e, 1.0), "");
    LLVMValueRef lu = vlog(e, u, unit); /* unit: x in [0, 1] or NaN */
    LLVMValueRef corr = LLVMBuildFDiv(e->b, LLVMBuildFSub(e->b, LLVMBuildFSub(e->b, u, cf(e, 1.0), ""), x, ""), u, "");
    LLVMValueRef r = LLVMBuildFSub(e->b, lu, corr, "");
    if (unit) return sel(e, fcmp(e, LLVMRealOEQ, u, cf(e, 1.0)), x, r);
    LLVMValueRef fin = LLVMBuildAnd(e->b, fcmp(e, LLVMRealONE, u, cf(e, 0)),
                                    fcmp(e, LLVMRealOLT, call1(e, "llvm.fabs", OC_F32, u), cf(e, INFINITY)), "");
    r = sel(e, fin, r, lu);
    return sel(e, fcmp(e, LLVMRealOEQ, u, cf(e, 1.0)), x, r);
}

/* |x|, looking through a negation: softplus(x) and softplus(-x) (BIN's
 * two terms), sigmoid(x) and sigmoid(-x), then share exp(-|x|), which
 * LLVM 14 does not see by itself. */
static LLVMValueRef fabs_(struct em *e, int dt, LLVMValueRef x)
{
    if (LLVMIsAInstruction(x) && LLVMGetInstructionOpcode(x) == LLVMFNeg) x = LLVMGetOperand(x, 0);
    return call1(e, "llvm.fabs", dt, x);
}

static LLVMValueRef fexp(struct em *e, int dt, LLVMValueRef x, int nonpos)
{
    return dt == OC_F32 && !e->libm ? vexp(e, x, nonpos) : call1(e, "llvm.exp", dt, x);
}

/* 1 when v is known to be >= 0 (or NaN), -1 when <= 0 (or NaN), else 0:
 * enough to see that MMCE's exp(-2.5 |a - b|) cannot overflow. */
static int sign_of(struct em *e, const struct oc_kval *v, int depth)
{
    if (v->kind == OC_KV_CONST) return v->c >= 0 ? 1 : -1;
    if (v->kind != OC_KV_OP || !isfloat(v->dtype) || depth > 8) return 0;
    switch (v->op) {
    case OC_OP_ABS:
    case OC_OP_EXP:
    case OC_OP_SQRT:
    case OC_OP_RELU:
    case OC_OP_SIGMOID:
    case OC_OP_SOFTPLUS: return 1;
    case OC_OP_NEG: return -sign_of(e, v->arg[0], depth + 1);
    case OC_OP_MUL: return sign_of(e, v->arg[0], depth + 1) * sign_of(e, v->arg[1], depth + 1);
    case OC_OP_SUB: { /* x - (the row's max of x) */
        const struct oc_kval *m = v->arg[1];
        return m->kind == OC_KV_ACC && e->k->red[m->acc].op == OC_OP_REDUCE_MAX &&
                       e->k->red[m->acc].x == v->arg[0]
                   ? -1
                   : 0;
    }
    default: return 0;
    }
}

static LLVMValueRef flog(struct em *e, int dt, LLVMValueRef x)
{
    return dt == OC_F32 && !e->libm ? vlog(e, x, 0) : call1(e, "llvm.log", dt, x);
}

/* unit: x is known to be in [0, 1] or NaN */
static LLVMValueRef flog1p(struct em *e, int dt, LLVMValueRef x, int unit)
{
    return dt == OC_F32 && !e->libm ? vlog1p(e, x, unit) : call1(e, "log1p", dt, x);
}

/* The per-row part of x / y for a divisor y that the inner loop does not
 * change: sx = 2^64 when |y| is below the normal range (its reciprocal
 * would overflow), yp = y * sx, rc = 1 / yp (one division per row). */
static void div_row(struct em *e, LLVMValueRef y, LLVMValueRef *rc, LLVMValueRef *yp, LLVMValueRef *sx)
{
    LLVMValueRef tiny = fcmp(e, LLVMRealOLT, call1(e, "llvm.fabs", OC_F32, y), cf(e, 1.17549435e-38));
    *sx = sel(e, tiny, cf(e, 0x1p64), cf(e, 1.0));
    *yp = LLVMBuildFMul(e->b, y, *sx, "");
    *rc = LLVMBuildFDiv(e->b, cf(e, 1.0), *yp, "");
}

/* x / y as x * (1/y) plus one correction step (Markstein): with rc the
 * correctly rounded reciprocal, q = q0 + (x - q0 y) rc is the correctly
 * rounded quotient (for results in the denormals, within an ulp), at 2
 * multiplies and 2 FMAs where a 512-bit division occupies the divider for
 * about 10 cycles. Where q is NaN but q0 is not (x or y infinite or zero,
 * an overflowing quotient) q0 is the IEEE answer. */
static LLVMValueRef fast_div(struct em *e, LLVMValueRef x, LLVMValueRef rc, LLVMValueRef yp, LLVMValueRef sx)
{
    LLVMValueRef xs = LLVMBuildFMul(e->b, x, sx, "");
    LLVMValueRef q0 = LLVMBuildFMul(e->b, xs, rc, "");
    LLVMValueRef rem = fma3(e, LLVMBuildFNeg(e->b, q0, ""), yp, xs);
    LLVMValueRef q = fma3(e, rem, rc, q0);
    return sel(e, isnan_(e, q), q0, q);
}

/* Whether v = x / y qualifies for fast_div in the one-row-at-a-time
 * schedule: f32, y unchanged by the stage's loops, x changed by them (else
 * LICM hoists the division anyway). emit_wide decides for itself. */
static int fast_div_ok(struct em *e, const struct oc_kval *v)
{
    return e->fastdiv && !e->wide && v->dtype == OC_F32 && e->vary && !(v->arg[1]->varmask & e->vary) &&
           (v->arg[0]->varmask & e->vary);
}

static LLVMValueRef op_float(struct em *e, const struct oc_kval *v, LLVMValueRef a, LLVMValueRef b)
{
    int dt = v->dtype;
    LLVMTypeRef t = ty(e, dt);
    LLVMValueRef zero = LLVMConstReal(t, 0), one = LLVMConstReal(t, 1);
    switch (v->op) {
    case OC_OP_NEG: return LLVMBuildFNeg(e->b, a, "");
    case OC_OP_EXP: return fexp(e, dt, a, sign_of(e, v->arg[0], 0) < 0);
    case OC_OP_LOG: return flog(e, dt, a);
    case OC_OP_SQRT: return call1(e, "llvm.sqrt", dt, a);
    case OC_OP_RSQRT: return LLVMBuildFDiv(e->b, one, call1(e, "llvm.sqrt", dt, a), "");
    case OC_OP_RECIP: return LLVMBuildFDiv(e->b, one, a, "");
    case OC_OP_ABS: return call1(e, "llvm.fabs", dt, a);
    case OC_OP_SIGN: {
        LLVMValueRef r = sel(e, LLVMBuildFCmp(e->b, LLVMRealOLT, a, zero, ""), LLVMConstReal(t, -1),
                             sel(e, isnan_(e, a), a, zero));
        return sel(e, LLVMBuildFCmp(e->b, LLVMRealOGT, a, zero, ""), one, r);
    }
    case OC_OP_RELU: return sel(e, LLVMBuildFCmp(e->b, LLVMRealUGT, a, zero, ""), a, zero);
    case OC_OP_SIGMOID: {
        /* x >= 0: 1/(1+exp(-x)); else exp(x)/(1+exp(x)); both use exp(-|x|) */
        LLVMValueRef ex = fexp(e, dt, LLVMBuildFNeg(e->b, fabs_(e, dt, a), ""), 1);
        LLVMValueRef den = LLVMBuildFAdd(e->b, one, ex, "");
        /* one division: the numerator is chosen first */
        return LLVMBuildFDiv(e->b, sel(e, LLVMBuildFCmp(e->b, LLVMRealOGE, a, zero, ""), one, ex), den, "");
    }
    case OC_OP_TANH: return call1(e, "tanh", dt, a);
    case OC_OP_SOFTPLUS: {
        LLVMValueRef ex = fexp(e, dt, LLVMBuildFNeg(e->b, fabs_(e, dt, a), ""), 1);
        LLVMValueRef pos = sel(e, LLVMBuildFCmp(e->b, LLVMRealOGT, a, zero, ""), a, zero);
        return LLVMBuildFAdd(e->b, pos, flog1p(e, dt, ex, 1), "");
    }
    case OC_OP_LOG1P: return flog1p(e, dt, a, 0);
    case OC_OP_ADD: return LLVMBuildFAdd(e->b, a, b, "");
    case OC_OP_SUB: return LLVMBuildFSub(e->b, a, b, "");
    case OC_OP_MUL: return LLVMBuildFMul(e->b, a, b, "");
    case OC_OP_DIV: {
        int d = v->arg[1]->id;
        if (dt == OC_F32 && e->drc && e->drc[d] && valid(e, e->dscope[d])) /* emit_wide's arrays */
            return fast_div(e, a, e->drc[d], e->dyp[d], e->dsx[d]);
        if (fast_div_ok(e, v)) { /* LICM hoists the per-row part */
            LLVMValueRef rc, yp, sx;
            div_row(e, b, &rc, &yp, &sx);
            return fast_div(e, a, rc, yp, sx);
        }
        return LLVMBuildFDiv(e->b, a, b, "");
    }
    case OC_OP_POW: return call2(e, "llvm.pow", dt, a, b);
    case OC_OP_MAX:
    case OC_OP_MIN: {
        LLVMValueRef pick = LLVMBuildFCmp(e->b, v->op == OC_OP_MAX ? LLVMRealOGT : LLVMRealOLT, a, b, "");
        LLVMValueRef r = sel(e, pick, a, b);
        r = sel(e, isnan_(e, b), b, r);
        return sel(e, isnan_(e, a), a, r);
    }
    default: break;
    }
    return NULL;
}

static LLVMValueRef op_int(struct em *e, const struct oc_kval *v, LLVMValueRef a, LLVMValueRef b)
{
    LLVMTypeRef t = ty(e, v->dtype);
    LLVMValueRef zero = cint(e, t, 0);
    switch (v->op) {
    case OC_OP_NEG: return LLVMBuildSub(e->b, zero, a, "");
    case OC_OP_ABS:
        return sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, a, zero, ""), LLVMBuildSub(e->b, zero, a, ""), a);
    case OC_OP_SIGN:
        return LLVMBuildSub(e->b, LLVMBuildZExt(e->b, LLVMBuildICmp(e->b, LLVMIntSGT, a, zero, ""), t, ""),
                            LLVMBuildZExt(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, a, zero, ""), t, ""), "");
    case OC_OP_ADD: return LLVMBuildAdd(e->b, a, b, "");
    case OC_OP_SUB: return LLVMBuildSub(e->b, a, b, "");
    case OC_OP_MUL: return LLVMBuildMul(e->b, a, b, "");
    case OC_OP_MAX: return sel(e, LLVMBuildICmp(e->b, LLVMIntSGT, a, b, ""), a, b);
    case OC_OP_MIN: return sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, a, b, ""), a, b);
    default: break;
    }
    return NULL;
}

static LLVMValueRef ev_op(struct em *e, const struct oc_kval *v)
{
    LLVMValueRef a = v->nargs > 0 ? ev(e, v->arg[0]) : NULL;
    LLVMValueRef b = v->nargs > 1 ? ev(e, v->arg[1]) : NULL;
    if (v->op == OC_OP_CAST) return cast(e, a, v->arg[0]->dtype, v->dtype);
    if (oc_op_table[v->op].flags & OC_F_CMP)
        return from_bool(e, cmp(e, v->op, v->arg[0]->dtype, a, b), v->dtype);
    LLVMValueRef r = isfloat(v->dtype) ? op_float(e, v, a, b) : op_int(e, v, a, b);
    if (!r && !e->failed) {
        oc_err_set(e->err, OC_ERR_UNSUPPORTED, "llvm: %s on %s in kernel %s", oc_op_name(v->op),
                   oc_dtype_name((enum oc_dtype)v->dtype), e->k->name);
        e->failed = 1;
    }
    return r ? r : cval(e, v->dtype, 0);
}

/* ---------------------------------------------------------------- products */

/* f32 products are reassociated (the second licence, after float sums;
 * OC_REASSOC=0 turns it off): a tree of mul and neg nodes is flattened
 * into its factors, constants are folded, and the product is rebuilt in
 * one canonical order: the factors that vary in the loop being emitted
 * first, by id, so that products sharing a prefix compute it once, then
 * times the product of the invariant ones (which LICM hoists), negated at
 * the end. The chain rule writes one product in several orders: MMCE's
 * backward pair kernel has k*(a_i*e), (k*a_i)*e and two signed copies of
 * a_j*a_i*e*k*2.5, which canonically share everything but a final
 * multiply. A rebuilt product differs from the graph's order by a few ulp
 * at most. sign(b - a) is taken as -sign(a - b) when both are in the
 * kernel (they differ only in the sign of a zero), so those share too. */
enum { MAXFAC = 12 };

struct pmemo {
    int n;
    int key[MAXFAC + 2];
    LLVMValueRef v;
    int scope;
};

/* The kernel's node `op`(b, a) of dtype f32 for x = `op`(a, b), if it
 * exists and comes first (lower id), else NULL. */
static const struct oc_kval *swapped(struct em *e, enum oc_op op, const struct oc_kval *x)
{
    if (x->kind != OC_KV_OP || x->op != op || x->dtype != OC_F32) return NULL;
    for (int i = 0; i < x->id; i++) {
        const struct oc_kval *w = e->k->vals[i];
        if (w && w->kind == OC_KV_OP && w->op == op && w->dtype == OC_F32 && w->arg[0] == x->arg[1] &&
            w->arg[1] == x->arg[0])
            return w;
    }
    return NULL;
}

/* sign(sub(b, a)) for v = sign(sub(a, b)), if the kernel has it first. */
static const struct oc_kval *flipped_sign(struct em *e, const struct oc_kval *v)
{
    const struct oc_kval *d = swapped(e, OC_OP_SUB, v->arg[0]);
    if (!d) return NULL;
    for (int i = 0; i < v->id; i++) {
        const struct oc_kval *w = e->k->vals[i];
        if (w && w->kind == OC_KV_OP && w->op == OC_OP_SIGN && w->dtype == OC_F32 && w->arg[0] == d)
            return w;
    }
    return NULL;
}

static int is_fmul(const struct oc_kval *v)
{
    return v->kind == OC_KV_OP && v->dtype == OC_F32 && v->op == OC_OP_MUL;
}

static int flatten(struct em *e, const struct oc_kval *v, const struct oc_kval **f, int *n, int *neg,
                   double *c)
{
    if (v->kind == OC_KV_CONST && v->dtype == OC_F32) {
        *c *= v->c;
        return 0;
    }
    if (is_fmul(v)) return flatten(e, v->arg[0], f, n, neg, c) || flatten(e, v->arg[1], f, n, neg, c);
    if (v->kind == OC_KV_OP && v->dtype == OC_F32 && v->op == OC_OP_NEG) {
        *neg ^= 1;
        return flatten(e, v->arg[0], f, n, neg, c);
    }
    if (v->kind == OC_KV_OP && v->dtype == OC_F32 && v->op == OC_OP_SIGN) {
        const struct oc_kval *w = flipped_sign(e, v);
        if (w) *neg ^= 1, v = w;
    }
    if (*n == MAXFAC) return -1;
    f[(*n)++] = v;
    return 0;
}

static LLVMValueRef pm_get(struct em *e, const int *key, int n)
{
    for (int i = e->npm - 1; i >= 0; i--) {
        const struct pmemo *m = &e->pm[i];
        if (m->n == n && !memcmp(m->key, key, sizeof *key * (size_t)n) && valid(e, m->scope)) return m->v;
    }
    return NULL;
}

static void pm_put(struct em *e, const int *key, int n, LLVMValueRef v)
{
    if (e->npm == e->cappm) {
        int nc = e->cappm ? 2 * e->cappm : 64;
        struct pmemo *p = realloc(e->pm, sizeof *p * (size_t)nc);
        if (!p) return; /* only a missed sharing */
        e->pm = p, e->cappm = nc;
    }
    struct pmemo *m = &e->pm[e->npm++];
    m->n = n;
    memcpy(m->key, key, sizeof *key * (size_t)n);
    m->v = v;
    m->scope = e->scope;
}

static void sort_ids(const struct oc_kval **f, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && f[j - 1]->id > f[j]->id; j--) {
            const struct oc_kval *t = f[j];
            f[j] = f[j - 1], f[j - 1] = t;
        }
}

/* The left-to-right product of f[0..n) (n >= 1), each prefix memoized
 * under key tag `tag`. */
static LLVMValueRef chain(struct em *e, const struct oc_kval **f, int n, int tag)
{
    int key[MAXFAC + 2];
    key[0] = tag;
    LLVMValueRef acc = NULL;
    int from = 0;
    for (int i = n - 1; i >= 1 && !acc; i--) { /* the longest known prefix */
        for (int j = 0; j <= i; j++) key[1 + j] = f[j]->id;
        if ((acc = pm_get(e, key, i + 2))) from = i + 1;
    }
    if (!acc) acc = ev(e, f[0]), from = 1;
    for (int i = from; i < n; i++) {
        acc = LLVMBuildFMul(e->b, acc, ev(e, f[i]), "");
        for (int j = 0; j <= i; j++) key[1 + j] = f[j]->id;
        pm_put(e, key, i + 2, acc);
    }
    return acc;
}

static LLVMValueRef ev_product(struct em *e, const struct oc_kval *v)
{
    const struct oc_kval *f[MAXFAC], *va[MAXFAC], *iv[MAXFAC + 1];
    int n = 0, neg = 0, nva = 0, niv = 0;
    double c = 1;
    if (flatten(e, v, f, &n, &neg, &c)) return ev_op(e, v);
    float cv = (float)c;
    /* constants whose product leaves the normal range keep the graph's order */
    if (c != 0 && !(fabsf(cv) >= 1.17549435e-38f && fabsf(cv) <= 3.40282347e38f)) return ev_op(e, v);
    if (cv == -1.0f) neg ^= 1, cv = 1.0f;
    for (int i = 0; i < n; i++) {
        if (!e->vary || (f[i]->varmask & e->vary)) va[nva++] = f[i];
        else iv[niv++] = f[i];
    }
    sort_ids(va, nva);
    sort_ids(iv, niv);
    LLVMValueRef r = nva ? chain(e, va, nva, 0) : NULL, inv = niv ? chain(e, iv, niv, 1) : NULL;
    if (cv != 1.0f || (!r && !inv)) {
        LLVMValueRef k = cf(e, cv);
        inv = inv ? LLVMBuildFMul(e->b, inv, k, "") : k;
    }
    if (inv) r = r ? LLVMBuildFMul(e->b, r, inv, "") : inv;
    return neg ? LLVMBuildFNeg(e->b, r, "") : r;
}

static LLVMValueRef ev(struct em *e, const struct oc_kval *v)
{
    if (e->vmemo[v->id] && valid(e, e->vscope[v->id])) return e->vmemo[v->id];
    LLVMValueRef r = NULL;
    int cached = e->carr && e->carr[v->id] && e->cstage >= 0;
    if (cached && e->cstage > e->cfirst[v->id]) {
        LLVMTypeRef t = ty(e, v->dtype);
        r = LLVMBuildLoad2(e->b, t, LLVMBuildGEP2(e->b, t, e->carr[v->id], &e->cidx, 1, ""), "");
        e->vmemo[v->id] = r;
        e->vscope[v->id] = e->scope;
        return r;
    }
    switch (v->kind) {
    case OC_KV_CONST: r = cval(e, v->dtype, v->c); break;
    case OC_KV_LOAD:
        r = tag(e, LLVMBuildLoad2(e->b, ty(e, v->dtype), elem_ptr(e, v->slot, v->ix), ""), v->slot);
        break;
    case OC_KV_ACC: {
        const struct oc_kred *rd = &e->k->red[v->acc];
        if (rd->op == OC_OP_ARGMAX) r = LLVMBuildLoad2(e->b, e->i32, e->accidx[v->acc], "");
        else r = LLVMBuildLoad2(e->b, ty(e, rd->dtype), e->acc[v->acc], "");
        break;
    }
    case OC_KV_INDEX: r = LLVMBuildTrunc(e->b, eix(e, v->ix), e->i32, ""); break;
    case OC_KV_OP:
        if (e->reassoc && (is_fmul(v) || (v->op == OC_OP_NEG && is_fmul(v->arg[0])))) {
            r = ev_product(e, v);
        } else if (v->op == OC_OP_ABS && v->dtype == OC_F32 && swapped(e, OC_OP_SUB, v->arg[0])) {
            /* |b - a| is |a - b| exactly: one subtraction for both */
            r = call1(e, "llvm.fabs", OC_F32, ev(e, swapped(e, OC_OP_SUB, v->arg[0])));
        } else {
            r = ev_op(e, v);
        }
        break;
    case OC_KV_RNG: {
        LLVMTypeRef at[3] = {e->i64, e->i32, e->i64};
        LLVMValueRef args[3] = {LLVMConstInt(e->i64, v->seed, 0), ev(e, v->arg[0]), eix(e, v->ix)};
        r = callf(e, v->op == OC_OP_RNG_NORMAL ? "oc_rng_normal_at" : "oc_rng_uniform_at", e->f64,
                  at, 3, args);
        if (v->dtype == OC_F32) r = LLVMBuildFPTrunc(e->b, r, e->f32, "");
        break;
    }
    case OC_KV_INRANGE: {
        LLVMValueRef x = eix(e, v->ix);
        LLVMValueRef ok = LLVMConstInt(e->i1, 1, 0);
        if (v->ix->lo < v->lo) ok = LLVMBuildICmp(e->b, LLVMIntSGE, x, ci64(e, v->lo), "");
        if (v->ix->hi > v->hi)
            ok = LLVMBuildAnd(e->b, ok, LLVMBuildICmp(e->b, LLVMIntSLE, x, ci64(e, v->hi), ""), "");
        r = ok;
        break;
    }
    case OC_KV_AND: r = LLVMBuildAnd(e->b, ev(e, v->arg[0]), ev(e, v->arg[1]), ""); break;
    case OC_KV_SEL: r = sel(e, ev(e, v->arg[0]), ev(e, v->arg[1]), ev(e, v->arg[2])); break;
    }
    if (cached && e->cstage == e->cfirst[v->id])
        LLVMBuildStore(e->b, r, LLVMBuildGEP2(e->b, ty(e, v->dtype), e->carr[v->id], &e->cidx, 1, ""));
    e->vmemo[v->id] = r;
    e->vscope[v->id] = e->scope;
    return r;
}

/* ---------------------------------------------------------------- reductions */

static void red_init(struct em *e, int i)
{
    const struct oc_kred *r = &e->k->red[i];
    int xdt = r->x->dtype;
    LLVMTypeRef t = ty(e, xdt);
    LLVMValueRef init;
    if (r->op == OC_OP_SUM) init = cval(e, xdt, 0);
    else if (isfloat(xdt)) init = LLVMConstReal(t, -INFINITY);
    else init = xdt == OC_U8 ? LLVMConstInt(e->i8, 0, 0) : cint(e, e->i32, -2147483647 - 1);
    LLVMBuildStore(e->b, init, e->acc[i]);
    if (r->op == OC_OP_ARGMAX) LLVMBuildStore(e->b, cint(e, e->i32, 0), e->accidx[i]);
}

static void red_step(struct em *e, int i)
{
    const struct oc_kred *r = &e->k->red[i];
    int xdt = r->x->dtype;
    LLVMTypeRef t = ty(e, xdt);
    LLVMValueRef x = ev(e, r->x);
    LLVMValueRef acc = LLVMBuildLoad2(e->b, t, e->acc[i], "");
    if (r->op == OC_OP_SUM) {
        LLVMValueRef s = isfloat(xdt) ? LLVMBuildFAdd(e->b, acc, x, "") : LLVMBuildAdd(e->b, acc, x, "");
        LLVMBuildStore(e->b, s, e->acc[i]);
        return;
    }
    LLVMValueRef take;
    if (isfloat(xdt)) {
        LLVMValueRef gt = LLVMBuildFCmp(e->b, LLVMRealOGT, x, acc, "");
        LLVMValueRef nan = LLVMBuildAnd(e->b, isnan_(e, x),
                                        LLVMBuildFCmp(e->b, LLVMRealORD, acc, acc, ""), "");
        take = LLVMBuildOr(e->b, gt, nan, "");
    } else {
        take = LLVMBuildICmp(e->b, xdt == OC_U8 ? LLVMIntUGT : LLVMIntSGT, x, acc, "");
    }
    LLVMBuildStore(e->b, sel(e, take, x, acc), e->acc[i]);
    if (r->op == OC_OP_ARGMAX) {
        LLVMValueRef cur = LLVMBuildLoad2(e->b, e->i32, e->accidx[i], "");
        LLVMValueRef pos = LLVMBuildTrunc(e->b, e->var[r->axis], e->i32, "");
        LLVMBuildStore(e->b, sel(e, take, pos, cur), e->accidx[i]);
    }
}

static void do_store(struct em *e, const struct oc_kstore *s)
{
    LLVMValueRef v = ev(e, s->v);
    int dt = e->k->slot[s->slot].dtype;
    if (s->v->dtype != dt) v = cast(e, v, s->v->dtype, dt);
    tag(e, LLVMBuildStore(e->b, v, elem_ptr(e, s->slot, s->ix)), s->slot);
}

/* ---------------------------------------------------------------- kernels */

/* The plain schedule: one row at a time; the reduced loops of each stage
 * are the innermost loops (vectorized along the reduced axis). */
static void emit_rows(struct em *e, const struct oc_kernel *k)
{
    for (int i = 0; i < k->nred; i++) {
        const struct oc_kred *r = &k->red[i];
        e->acc[i] = LLVMBuildAlloca(e->b, ty(e, r->x->dtype), "acc");
        if (r->op == OC_OP_ARGMAX) e->accidx[i] = LLVMBuildAlloca(e->b, e->i32, "arg");
    }
    for (int d = 0; d < OC_MAX_RANK; d++) e->var[d] = ci64(e, 0);

    /* row loops: the chunked axes as one flat index, then the others */
    int oax[OC_MAX_RANK], nout = oc_kir_outer_axes(k, oax), nchunk = oc_kir_chunk_axes(k);
    struct loop outer[OC_MAX_RANK + 1];
    int nol = 0;
    e->scope = 1;
    loop_begin(e, LLVMGetParam(e->fn, 1), LLVMGetParam(e->fn, 2), &outer[nol]);
    LLVMValueRef flat = outer[nol++].phi;
    int64_t stride = 1;
    for (int i = nchunk - 1; i >= 0; i--) {
        int64_t ext = k->space.dim[oax[i]];
        if (ext <= 1) continue;
        LLVMValueRef v = stride > 1 ? LLVMBuildUDiv(e->b, flat, ci64(e, stride), "") : flat;
        if (i > 0) v = LLVMBuildURem(e->b, v, ci64(e, ext), "");
        e->var[oax[i]] = v;
        stride *= ext;
    }
    for (int i = nchunk; i < nout; i++) {
        if (k->space.dim[oax[i]] <= 1) continue;
        loop_begin(e, ci64(e, 0), ci64(e, k->space.dim[oax[i]]), &outer[nol]);
        e->var[oax[i]] = outer[nol++].phi;
    }

    /* stages */
    for (int s = 0; s < k->nstage; s++) {
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_init(e, i);
        int fsum = 0;
        for (int i = 0; i < k->nred; i++)
            fsum |= k->red[i].stage == s && k->red[i].op == OC_OP_SUM && isfloat(k->red[i].dtype);
        struct loop inner[OC_MAX_RANK];
        int nil = 0;
        e->scope = 2 + s;
        for (int d = 0; d < k->space.rank; d++) {
            if (!(k->rmask & (1u << d)) || k->space.dim[d] <= 1) continue;
            loop_begin(e, ci64(e, 0), ci64(e, k->space.dim[d]), &inner[nil]);
            e->var[d] = inner[nil++].phi;
            e->vary |= 1u << d;
        }
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_step(e, i);
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage == s) do_store(e, &k->store[i]);
        /* the innermost reduced loop: vectorizable when it sums floats
         * (the order of a reduction is unspecified) or only stores; a short
         * one runs as masked vector steps */
        int64_t ilast = 0;
        for (int d = 0; d < k->space.rank; d++)
            if ((k->rmask & (1u << d)) && k->space.dim[d] > 1) ilast = k->space.dim[d];
        int hints = fsum ? LOOP_VECTORIZE : 0;
        if (ilast > 1 && ilast < 32) hints |= LOOP_VECTORIZE | LOOP_PREDICATE;
        /* a float max/argmax (NaN rules: no reduction pattern the vectorizer
         * knows) stays scalar; fully unrolled, that is best */
        int fmax = 0;
        for (int i = 0; i < k->nred; i++)
            fmax |= k->red[i].stage == s && k->red[i].op != OC_OP_SUM && isfloat(k->red[i].dtype);
        if ((hints & LOOP_PREDICATE) && !fmax) hints |= LOOP_NOUNROLL;
        for (int l = nil - 1; l >= 0; l--) loop_end(e, &inner[l], l == nil - 1 ? hints : 0);
        e->scope = 1;
        e->vary = 0;
        /* values of the inner body are not available after the loop */
        for (int i = 0; i < k->nval; i++)
            if (e->vscope[i] == 2 + s) e->vmemo[i] = NULL;
        for (int i = 0; i < k->nix; i++)
            if (e->ixscope[i] == 2 + s) e->ixmemo[i] = NULL;
    }
    for (int i = 0; i < k->nstore; i++)
        if (k->store[i].stage < 0) do_store(e, &k->store[i]);
    /* an elementwise kernel's innermost loop, when short (10 classes),
     * runs as one masked vector step per row */
    int64_t olast = nol > 1 ? k->space.dim[oax[nout - 1]] : 0;
    for (int l = nol - 1; l >= 0; l--)
        loop_end(e, &outer[l], l == nol - 1 && l > 0 && olast < 32 ? LOOP_VECTORIZE | LOOP_PREDICATE : 0);
}

/* Sets the outer variables from the flat row index (the chunked axes). */
static void decode_row(struct em *e, const struct oc_kernel *k, LLVMValueRef flat)
{
    int oax[OC_MAX_RANK], nchunk = oc_kir_chunk_axes(k);
    oc_kir_outer_axes(k, oax);
    int64_t stride = 1;
    for (int i = nchunk - 1; i >= 0; i--) {
        int64_t ext = k->space.dim[oax[i]];
        if (ext <= 1) continue;
        LLVMValueRef v = stride > 1 ? LLVMBuildUDiv(e->b, flat, ci64(e, stride), "") : flat;
        if (i > 0) v = LLVMBuildURem(e->b, v, ci64(e, ext), "");
        e->var[oax[i]] = v;
        stride *= ext;
    }
}

/* One step of the block loop: for w in [0, nw), with the accumulators of
 * row rb + w current and the outer variables decoded. */
struct wloop {
    struct loop L;
};

static void wide_begin(struct em *e, const struct oc_kernel *k, LLVMValueRef rb, LLVMValueRef nw,
                       LLVMValueRef *accarr, LLVMValueRef *idxarr, int W, struct wloop *wl)
{
    loop_begin(e, ci64(e, 0), nw, &wl->L);
    LLVMValueRef w = wl->L.phi;
    e->scope = ++e->nscope;
    if (e->wlast >= 0) { /* the block lies in one line of the innermost row axis */
        for (int d = 0; d < OC_MAX_RANK; d++)
            if (e->wbase[d]) e->var[d] = e->wbase[d];
        e->var[e->wlast] = LLVMBuildNSWAdd(e->b, e->wbase[e->wlast], w, "");
    } else {
        decode_row(e, k, LLVMBuildNSWAdd(e->b, rb, w, ""));
    }
    for (int i = 0; i < k->nred; i++) {
        LLVMValueRef ix[2] = {ci64(e, 0), w};
        LLVMTypeRef t = ty(e, k->red[i].x->dtype);
        e->acc[i] = LLVMBuildGEP2(e->b, LLVMArrayType(t, (unsigned)W), accarr[i], ix, 2, "");
        if (idxarr[i])
            e->accidx[i] = LLVMBuildGEP2(e->b, LLVMArrayType(e->i32, (unsigned)W), idxarr[i], ix, 2, "");
    }
}

/* The blocked schedule for reductions over leading axes (a sum over the
 * batch of a [B,C] tensor, the prior gradients of VIB): W consecutive rows
 * at a time, with their accumulators in arrays, and the rows innermost:
 *     for each block of W rows:
 *       for each stage: init accumulators[w];
 *         for the reduced loops: for w: accumulate, store elements
 *       for w: per-row stores
 * The w loops read consecutive memory and vectorize; the one-row-at-a-time
 * schedule would walk each column with a stride of a whole row. */
/* Row-invariant computations a stage's body needs (a softplus of a
 * per-column parameter inside a sum over the batch): in the blocked
 * schedule the rows are the innermost loop, so nothing hoists them out of
 * the reduced loops; they are computed once per row into arrays instead.
 * Marks in `hoist` (per value) the stage they are needed in, plus one. */
static void find_hoists(const struct oc_kernel *k, uint32_t inner, const struct oc_kval *v, int s,
                        int *hoist, unsigned char *seen)
{
    if (seen[v->id]) return;
    seen[v->id] = 1;
    if (!(v->varmask & inner)) {
        if ((v->kind == OC_KV_OP || v->kind == OC_KV_SEL || v->kind == OC_KV_RNG) &&
            v->dtype != OC_KBOOL && v->after <= s && !hoist[v->id])
            hoist[v->id] = s + 1;
        return;
    }
    for (int i = 0; i < v->nargs; i++) find_hoists(k, inner, v->arg[i], s, hoist, seen);
    if (v->ix)
        for (int t = 0; t < v->ix->nterm; t++)
            if (v->ix->atom[t]->v) find_hoists(k, inner, v->ix->atom[t]->v, s, hoist, seen);
}

/* Marks in `in` the values stage s evaluates at a reduced point (stopping
 * at accumulators and at row-invariant values). */
static void stage_uses(const struct oc_kval *v, uint32_t inner, unsigned char *in)
{
    if (in[v->id] || v->kind == OC_KV_ACC || !(v->varmask & inner)) return;
    in[v->id] = 1;
    for (int i = 0; i < v->nargs; i++) stage_uses(v->arg[i], inner, in);
    if (v->ix)
        for (int t = 0; t < v->ix->nterm; t++)
            if (v->ix->atom[t]->v) stage_uses(v->ix->atom[t]->v, inner, in);
}

/* Chooses the values emit_wide keeps across stages (see struct em) and
 * allocates their arrays; returns 0 or -1 (out of memory). */
static int plan_stage_cache(struct em *e, const struct oc_kernel *k, uint32_t inner, int W)
{
    int64_t pts = 1;
    for (int d = 0; d < k->space.rank; d++)
        if (inner & (1u << d)) pts *= k->space.dim[d];
    if (k->nstage < 2 || pts * W > 4096) return 0;
    size_t nv = (size_t)k->nval + 1;
    unsigned char *in = calloc(nv, 1);
    int *nst = calloc(nv, sizeof *nst);
    e->carr = calloc(nv, sizeof *e->carr);
    e->cfirst = calloc(nv, sizeof *e->cfirst);
    if (!in || !nst || !e->carr || !e->cfirst) {
        free(in), free(nst);
        return -1;
    }
    for (int i = 0; i < k->nval; i++) e->cfirst[i] = -1;
    for (int s = 0; s < k->nstage; s++) {
        memset(in, 0, nv);
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) stage_uses(k->red[i].x, inner, in);
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage == s) stage_uses(k->store[i].v, inner, in);
        for (int i = 0; i < k->nval; i++) {
            if (!in[i]) continue;
            nst[i]++;
            if (e->cfirst[i] < 0) e->cfirst[i] = s;
        }
    }
    int64_t bytes = 0; /* on the stack of a pool thread: keep it small */
    for (int i = 0; i < k->nval; i++) {
        const struct oc_kval *v = k->vals[i];
        int kind_ok = v->kind == OC_KV_LOAD || v->kind == OC_KV_OP || v->kind == OC_KV_SEL ||
                      v->kind == OC_KV_RNG;
        if (nst[i] < 2 || !kind_ok || v->dtype == OC_KBOOL) continue;
        if ((bytes += (int64_t)oc_dtype_size((enum oc_dtype)v->dtype) * pts * W) > (256 << 10)) break;
        e->carr[i] = LLVMBuildAlloca(e->b, LLVMArrayType(ty(e, v->dtype), (unsigned)(pts * W)), "stagecache");
        e->carr[i] = LLVMBuildBitCast(e->b, e->carr[i], LLVMPointerType(ty(e, v->dtype), 0), "");
    }
    free(in);
    free(nst);
    return 0;
}

static void emit_wide(struct em *e, const struct oc_kernel *k, int W)
{
    LLVMValueRef accarr[64] = {0}, idxarr[64] = {0};
    OC_ASSERT(k->nred <= 64);
    for (int i = 0; i < k->nred; i++) {
        const struct oc_kred *r = &k->red[i];
        accarr[i] = LLVMBuildAlloca(e->b, LLVMArrayType(ty(e, r->x->dtype), (unsigned)W), "acc");
        if (r->op == OC_OP_ARGMAX) idxarr[i] = LLVMBuildAlloca(e->b, LLVMArrayType(e->i32, (unsigned)W), "arg");
    }
    uint32_t inner = 0;
    for (int d = 0; d < k->space.rank; d++)
        if ((k->rmask & (1u << d)) && k->space.dim[d] > 1) inner |= 1u << d;
    int *hoist = calloc((size_t)k->nval + 1, sizeof *hoist);
    unsigned char *seen = calloc((size_t)k->nval + 1, 1);
    LLVMValueRef *harr = calloc((size_t)k->nval + 1, sizeof *harr);
    if (!hoist || !seen || !harr) {
        free(hoist), free(seen), free(harr);
        oc_err_set(e->err, OC_ERR_NOMEM, "llvm: out of memory");
        e->failed = 1;
        return;
    }
    for (int s = 0; s < k->nstage; s++) {
        memset(seen, 0, (size_t)k->nval + 1);
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) find_hoists(k, inner, k->red[i].x, s, hoist, seen);
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage == s) find_hoists(k, inner, k->store[i].v, s, hoist, seen);
    }
    for (int i = 0; i < k->nval; i++)
        if (hoist[i]) harr[i] = LLVMBuildAlloca(e->b, LLVMArrayType(ty(e, k->vals[i]->dtype), (unsigned)W), "row");
    const char *sc = getenv("OC_STAGE_CACHE");
    if ((!sc || strcmp(sc, "0")) && plan_stage_cache(e, k, inner, W)) {
        free(hoist), free(seen), free(harr);
        oc_err_set(e->err, OC_ERR_NOMEM, "llvm: out of memory");
        e->failed = 1;
        return;
    }
    e->cstage = -1;
    for (int d = 0; d < OC_MAX_RANK; d++) e->var[d] = ci64(e, 0);
    e->wide = 1;
    for (int d = 0; d < k->space.rank; d++) /* the rows, innermost */
        if (!(k->rmask & (1u << d)) && k->space.dim[d] > 1) e->vary |= 1u << d;
    /* divisors of fast_div: row values, constant along the reduced loops */
    if (e->fastdiv) {
        size_t nv = (size_t)k->nval + 1;
        e->drc = calloc(nv, sizeof *e->drc), e->dyp = calloc(nv, sizeof *e->dyp);
        e->dsx = calloc(nv, sizeof *e->dsx), e->darr = calloc(3 * nv, sizeof *e->darr);
        e->dscope = calloc(nv, sizeof *e->dscope);
        if (!e->drc || !e->dyp || !e->dsx || !e->darr || !e->dscope) {
            free(hoist), free(seen), free(harr);
            oc_err_set(e->err, OC_ERR_NOMEM, "llvm: out of memory");
            e->failed = 1;
            return;
        }
        for (int i = 0; i < k->nval; i++) {
            const struct oc_kval *v = k->vals[i];
            if (v->kind != OC_KV_OP || v->op != OC_OP_DIV || v->dtype != OC_F32) continue;
            if ((v->arg[1]->varmask & inner) || !(v->arg[0]->varmask & inner)) continue;
            int d = v->arg[1]->id;
            for (int j = 0; j < 3 && !e->darr[3 * d + j]; j++)
                e->darr[3 * d + j] = LLVMBuildAlloca(e->b, LLVMArrayType(e->f32, (unsigned)W), "div");
        }
    }
    LLVMValueRef begin = LLVMGetParam(e->fn, 1), end = LLVMGetParam(e->fn, 2);
    struct loop B;
    loop_begin(e, begin, end, &B);
    LLVMValueRef rb = B.phi;
    LLVMValueRef left = LLVMBuildSub(e->b, end, rb, "");
    LLVMValueRef nw = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, left, ci64(e, W), ""), left, ci64(e, W));
    /* With several row axes (VIBY's [B,10,64] over the batch), a block of
     * rows decoded row by row (divisions and remainders) reads through
     * gathers; a block that ends where the innermost row axis wraps (no
     * shorter than W when its extent is a multiple of W and blocks start
     * aligned, as the executors' chunks do) is its first row plus w along
     * that axis: plain vector loads. */
    int oax[OC_MAX_RANK], nchunk = oc_kir_chunk_axes(k), nlast = 0;
    oc_kir_outer_axes(k, oax);
    e->wlast = -1;
    for (int i = 0; i < nchunk; i++)
        if (k->space.dim[oax[i]] > 1) e->wlast = oax[i], nlast++;
    /* (a short innermost axis would make short blocks: decode row by row) */
    if (nlast > 1 && k->space.dim[e->wlast] % W && k->space.dim[e->wlast] < 4 * W) nlast = 0;
    if (nlast > 1) {
        LLVMValueRef E = ci64(e, k->space.dim[e->wlast]);
        LLVMValueRef lim = LLVMBuildSub(e->b, E, LLVMBuildSRem(e->b, rb, E, ""), "");
        nw = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, lim, nw, ""), lim, nw);
    }
    memset(e->wbase, 0, sizeof e->wbase);
    if (nlast >= 1) {
        decode_row(e, k, rb);
        for (int i = 0; i < nchunk; i++)
            if (k->space.dim[oax[i]] > 1) e->wbase[oax[i]] = e->var[oax[i]];
    } else {
        e->wlast = -1;
    }
    B.vstep = nw;
    struct wloop wl;
    for (int s = 0; s < k->nstage; s++) {
        wide_begin(e, k, rb, nw, accarr, idxarr, W, &wl);
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_init(e, i);
        for (int i = 0; i < k->nval; i++) {
            if (hoist[i] != s + 1) continue;
            LLVMValueRef ix[2] = {ci64(e, 0), wl.L.phi};
            LLVMValueRef p = LLVMBuildGEP2(e->b, LLVMArrayType(ty(e, k->vals[i]->dtype), (unsigned)W),
                                           harr[i], ix, 2, "");
            LLVMBuildStore(e->b, ev(e, k->vals[i]), p);
        }
        for (int i = 0; e->darr && i < k->nval; i++) {
            if (!e->darr[3 * i] || k->vals[i]->after > s) continue;
            LLVMValueRef part[3], ix[2] = {ci64(e, 0), wl.L.phi};
            div_row(e, ev(e, k->vals[i]), &part[0], &part[1], &part[2]);
            for (int j = 0; j < 3; j++)
                LLVMBuildStore(e->b, part[j], LLVMBuildGEP2(e->b, LLVMArrayType(e->f32, (unsigned)W),
                                                            e->darr[3 * i + j], ix, 2, ""));
        }
        loop_end(e, &wl.L, LOOP_VECTORIZE);
        struct loop innerl[OC_MAX_RANK];
        int nil = 0;
        for (int d = 0; d < k->space.rank; d++) {
            if (!(k->rmask & (1u << d)) || k->space.dim[d] <= 1) continue;
            loop_begin(e, ci64(e, 0), ci64(e, k->space.dim[d]), &innerl[nil]);
            e->var[d] = innerl[nil++].phi;
        }
        LLVMValueRef flat = ci64(e, 0); /* the reduced point, flat */
        for (int d = 0; d < k->space.rank; d++)
            if (inner & (1u << d))
                flat = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, flat, ci64(e, k->space.dim[d]), ""), e->var[d], "");
        wide_begin(e, k, rb, nw, accarr, idxarr, W, &wl);
        e->cstage = s;
        e->cidx = LLVMBuildNSWAdd(e->b, LLVMBuildNSWMul(e->b, flat, ci64(e, W), ""), wl.L.phi, "");
        for (int i = 0; i < k->nval; i++) {
            if (!hoist[i] || hoist[i] > s + 1) continue;
            LLVMValueRef ix[2] = {ci64(e, 0), wl.L.phi};
            LLVMTypeRef t = ty(e, k->vals[i]->dtype);
            LLVMValueRef p = LLVMBuildGEP2(e->b, LLVMArrayType(t, (unsigned)W), harr[i], ix, 2, "");
            e->vmemo[i] = LLVMBuildLoad2(e->b, t, p, "");
            e->vscope[i] = e->scope;
        }
        for (int i = 0; e->darr && i < k->nval; i++) {
            if (!e->darr[3 * i] || k->vals[i]->after > s) continue;
            LLVMValueRef part[3], ix[2] = {ci64(e, 0), wl.L.phi};
            for (int j = 0; j < 3; j++)
                part[j] = LLVMBuildLoad2(e->b, e->f32, LLVMBuildGEP2(e->b, LLVMArrayType(e->f32, (unsigned)W),
                                                                     e->darr[3 * i + j], ix, 2, ""), "");
            e->drc[i] = part[0], e->dyp[i] = part[1], e->dsx[i] = part[2];
            e->dscope[i] = e->scope;
        }
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_step(e, i);
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage == s) do_store(e, &k->store[i]);
        /* what a later stage reads from the cache must be stored here even
         * if this stage's code took another route (a product rebuilt from
         * its factors skips the graph's partial products) */
        for (int i = 0; e->carr && i < k->nval; i++)
            if (e->carr[i] && e->cfirst[i] == s && !(e->vmemo[i] && valid(e, e->vscope[i]))) ev(e, k->vals[i]);
        e->cstage = -1;
        loop_end(e, &wl.L, LOOP_VECTORIZE);
        for (int l = nil - 1; l >= 0; l--) loop_end(e, &innerl[l], 0);
    }
    wide_begin(e, k, rb, nw, accarr, idxarr, W, &wl);
    for (int i = 0; i < k->nstore; i++)
        if (k->store[i].stage < 0) do_store(e, &k->store[i]);
    loop_end(e, &wl.L, LOOP_VECTORIZE);
    loop_end(e, &B, 0);
    e->wide = 0;
    e->vary = 0;
    e->wlast = -1;
    free(e->carr);
    free(e->cfirst);
    e->carr = NULL;
    e->cfirst = NULL;
    free(e->drc), free(e->dyp), free(e->dsx), free(e->darr), free(e->dscope);
    e->drc = e->dyp = e->dsx = e->darr = NULL;
    e->dscope = NULL;
    free(hoist);
    free(seen);
    free(harr);
}

static enum oc_status emit_kernel(struct em *e, const struct oc_kernel *k)
{
    e->k = k;
    e->nscope = 1000;
    e->npm = 0;
    e->vary = 0;
    LLVMTypeRef params[3] = {e->i8pp, e->i64, e->i64};
    LLVMTypeRef ft = LLVMFunctionType(e->vd, params, 3, 0);
    e->fn = LLVMAddFunction(e->mod, k->sym, ft);
    LLVMSetLinkage(e->fn, LLVMExternalLinkage);
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(e->fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(e->ctx, nounwind, 0));
    /* LLVM's x86 cost model stops at 256-bit vectors unless told otherwise;
     * the kernels here are long, compute-dense loops where 512-bit AVX-512
     * measured 1.8x faster (MMCE's pairwise kernels). Targets without
     * 512-bit registers ignore the hint. OC_VECTOR_WIDTH overrides it. */
    const char *pvw = getenv("OC_VECTOR_WIDTH");
    LLVMAddTargetDependentFunctionAttr(e->fn, "prefer-vector-width", pvw && *pvw ? pvw : "512");
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->ctx, e->fn, "entry");
    LLVMPositionBuilderAtEnd(e->b, entry);

    size_t nv = (size_t)k->nval + 1, nx = (size_t)k->nix + 1, nr = (size_t)k->nred + 1;
    e->slotp = calloc((size_t)k->nslot + 1, sizeof *e->slotp);
    e->acc = calloc(nr, sizeof *e->acc);
    e->accidx = calloc(nr, sizeof *e->accidx);
    e->vmemo = calloc(nv, sizeof *e->vmemo);
    e->vscope = calloc(nv, sizeof *e->vscope);
    e->ixmemo = calloc(nx, sizeof *e->ixmemo);
    e->ixscope = calloc(nx, sizeof *e->ixscope);
    enum oc_status st = OC_OK;
    if (!e->slotp || !e->acc || !e->accidx || !e->vmemo || !e->vscope || !e->ixmemo || !e->ixscope ||
        (k->nslot > 1 && k->nslot < 60 && alias_scopes(e, k))) {
        st = oc_err_set(e->err, OC_ERR_NOMEM, "llvm: out of memory");
        goto out;
    }

    LLVMValueRef bufs = LLVMGetParam(e->fn, 0);
    for (int s = 0; s < k->nslot; s++) {
        LLVMValueRef idx = ci64(e, s);
        LLVMValueRef pp = LLVMBuildGEP2(e->b, e->i8p, bufs, &idx, 1, "");
        LLVMValueRef p = LLVMBuildLoad2(e->b, e->i8p, pp, "");
        e->slotp[s] = LLVMBuildBitCast(e->b, p, LLVMPointerType(ty(e, k->slot[s].dtype), 0), "");
    }
    int W = oc_llvm_row_block(k);
    if (W > 1) emit_wide(e, k, W);
    else emit_rows(e, k);
    LLVMBuildRetVoid(e->b);
    if (e->failed) st = e->err->code;
out:
    free(e->slotp);
    free(e->ascope);
    free(e->anoalias);
    e->ascope = e->anoalias = NULL;
    free(e->acc);
    free(e->accidx);
    free(e->vmemo);
    free(e->vscope);
    free(e->ixmemo);
    free(e->ixscope);
    e->slotp = e->acc = e->accidx = e->vmemo = e->ixmemo = NULL;
    e->vscope = e->ixscope = NULL;
    return st;
}

/* A grouped kernel (passes/kir.h, fusion rule 4): each distinct member
 * becomes an internal function (emit_kernel's, renamed <sym>_m<i>), which
 * O3 inlines, and the group's function runs every member on the part of
 * [begin, end) that its segment [goff[i], goff[i+1]) covers, rebased, with
 * the member's slots gathered from the group's. */
static enum oc_status emit_group(struct em *e, const struct oc_kernel *k)
{
    LLVMValueRef *mf = calloc((size_t)k->ngroup, sizeof *mf);
    if (!mf) return oc_err_set(e->err, OC_ERR_NOMEM, "llvm: out of memory");
    int maxslot = 1;
    enum oc_status st = OC_OK;
    for (int i = 0; i < k->ngroup && !st; i++) {
        const struct oc_kernel *m = k->group[i];
        if (m->nslot > maxslot) maxslot = m->nslot;
        for (int j = 0; j < i && !mf[i]; j++)
            if (k->group[j]->hash == m->hash) mf[i] = mf[j]; /* same structure, same code */
        if (mf[i]) continue;
        if ((st = emit_kernel(e, m))) break;
        char name[48];
        snprintf(name, sizeof name, "%s_m%d", k->sym, i);
        LLVMSetValueName2(e->fn, name, strlen(name));
        LLVMSetLinkage(e->fn, LLVMInternalLinkage);
        mf[i] = e->fn;
    }
    if (st) {
        free(mf);
        return st;
    }
    LLVMTypeRef params[3] = {e->i8pp, e->i64, e->i64};
    LLVMTypeRef ft = LLVMFunctionType(e->vd, params, 3, 0);
    LLVMValueRef fn = LLVMAddFunction(e->mod, k->sym, ft);
    LLVMSetLinkage(fn, LLVMExternalLinkage);
    unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->ctx, nounwind, 0));
    LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(e->ctx, fn, "entry");
    LLVMPositionBuilderAtEnd(e->b, bb);
    LLVMValueRef bufs = LLVMGetParam(fn, 0), begin = LLVMGetParam(fn, 1), end = LLVMGetParam(fn, 2);
    LLVMTypeRef at = LLVMArrayType(e->i8p, (unsigned)maxslot);
    LLVMValueRef arr = LLVMBuildAlloca(e->b, at, "mbufs");
    LLVMValueRef zero = ci64(e, 0);
    for (int i = 0; i < k->ngroup; i++) {
        const struct oc_kernel *m = k->group[i];
        LLVMValueRef off = ci64(e, k->goff[i]), lim = ci64(e, k->goff[i + 1]);
        LLVMValueRef lo = sel(e, LLVMBuildICmp(e->b, LLVMIntSGT, begin, off, ""), begin, off);
        LLVMValueRef hi = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, end, lim, ""), end, lim);
        LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(e->ctx, fn, "member");
        LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(e->ctx, fn, "next");
        LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, lo, hi, ""), run, next);
        LLVMPositionBuilderAtEnd(e->b, run);
        for (int s = 0; s < m->nslot; s++) {
            LLVMValueRef gi = ci64(e, k->gslot[i][s]);
            LLVMValueRef gp = LLVMBuildLoad2(e->b, e->i8p, LLVMBuildGEP2(e->b, e->i8p, bufs, &gi, 1, ""), "");
            LLVMValueRef idx[2] = {zero, ci64(e, s)};
            LLVMBuildStore(e->b, gp, LLVMBuildGEP2(e->b, at, arr, idx, 2, ""));
        }
        LLVMValueRef args[3] = {LLVMBuildBitCast(e->b, arr, e->i8pp, ""), LLVMBuildSub(e->b, lo, off, ""),
                                LLVMBuildSub(e->b, hi, off, "")};
        LLVMBuildCall2(e->b, ft, mf[i], args, 3, "");
        LLVMBuildBr(e->b, next);
        LLVMPositionBuilderAtEnd(e->b, next);
    }
    LLVMBuildRetVoid(e->b);
    e->fn = fn;
    free(mf);
    return OC_OK;
}

enum oc_status oc_llvm_emit_kernels(LLVMContextRef ctx, LLVMModuleRef mod,
                                    struct oc_kernel *const *ks, int n, struct oc_err *err)
{
    struct em e;
    memset(&e, 0, sizeof e);
    e.ctx = ctx;
    e.mod = mod;
    e.err = err;
    e.b = LLVMCreateBuilderInContext(ctx);
    e.i1 = LLVMInt1TypeInContext(ctx);
    e.i8 = LLVMInt8TypeInContext(ctx);
    e.i32 = LLVMInt32TypeInContext(ctx);
    e.i64 = LLVMInt64TypeInContext(ctx);
    e.f32 = LLVMFloatTypeInContext(ctx);
    e.f64 = LLVMDoubleTypeInContext(ctx);
    e.vd = LLVMVoidTypeInContext(ctx);
    e.i8p = LLVMPointerType(e.i8, 0);
    e.i8pp = LLVMPointerType(e.i8p, 0);
    e.kscope = LLVMGetMDKindIDInContext(ctx, "alias.scope", 11);
    e.knoalias = LLVMGetMDKindIDInContext(ctx, "noalias", 7);
    const char *lm = getenv("OC_LIBM");
    e.libm = lm && *lm && strcmp(lm, "0");
    const char *ra = getenv("OC_REASSOC");
    e.reassoc = !ra || strcmp(ra, "0");
    const char *fd = getenv("OC_FAST_DIV");
    e.fastdiv = !fd || strcmp(fd, "0");
    enum oc_status st = OC_OK;
    for (int i = 0; i < n && !st; i++) {
        if (ks[i]->kind != OC_K_LOOP) continue;
        if (LLVMGetNamedFunction(mod, ks[i]->sym)) continue; /* same structure, same code */
        st = oc_kir_is_group(ks[i]) ? emit_group(&e, ks[i]) : emit_kernel(&e, ks[i]);
    }
    LLVMDisposeBuilder(e.b);
    free(e.pm);
    return st;
}

#else
typedef int oc_llvm_emit_unused; /* ISO C wants a non-empty unit */
#endif /* OC_HAVE_LLVM */
