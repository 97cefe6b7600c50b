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
 * fast-math) so results track the reference interpreter; the one licence
 * taken is on float sums: their loop carries llvm.loop.vectorize.enable,
 * which lets the vectorizer keep several partial sums (a reduction's order
 * is unspecified by the IR, and partial sums are no less accurate than one
 * running sum). The integer and NaN rules are the interpreter's (see
 * ir/interp.c): i32 wraps, casts to integers truncate and saturate, NaN
 * propagates through relu/max/min/reduce_max, argmax keeps the first NaN or
 * the first maximum.
 *
 * Reductions over leading axes whose operands sit in memory with a row's
 * stride along the reduced axis (a [B,C] tensor summed over B) use a
 * blocked schedule instead (emit_wide, oc_llvm_row_block): 32 rows at a
 * time, rows innermost, accumulators in arrays. f32 exp/log/log1p are
 * inline vectorizable polynomials (see "f32 math"), short loops (10
 * classes) run as masked vector steps, and functions ask for 512-bit
 * vectors where the target has them.
 *
 * Only the `*2` builder calls (LLVMBuildLoad2, LLVMBuildGEP2, LLVMBuildCall2)
 * are used, so LLVM 14 to 18 (typed or opaque pointers) all work.
 */
#include "codegen.h"

/* The coefficient of loop variable d in index x (0 when absent). */
static int64_t var_coef(const struct oc_kix *x, int d)
{
    for (int t = 0; t < x->nterm; t++)
        if (x->atom[t]->kind == OC_KA_VAR && x->atom[t]->var == d) return x->coef[t];
    return 0;
}

int oc_llvm_row_block(const struct oc_kernel *k)
{
    if (k->kind != OC_K_LOOP || !k->rmask) return 0;
    int last_red = -1, last_out = -1;
    for (int d = 0; d < k->space.rank; d++) {
        if (k->space.dim[d] <= 1) continue;
        if (k->rmask & (1u << d)) last_red = d;
        else last_out = d;
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
}

/* Loop hints (llvm.loop metadata) */
enum { LOOP_VECTORIZE = 1, LOOP_PREDICATE = 2 };

static void loop_end(struct em *e, struct loop *L, int hints)
{
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMValueRef next = LLVMBuildNSWAdd(e->b, L->phi, ci64(e, L->step), "");
    LLVMAddIncoming(L->phi, &next, &latch, 1);
    LLVMValueRef br = LLVMBuildBr(e->b, L->header);
    if (hints) {
        /* !llvm.loop !{self, !{"llvm.loop.vectorize.enable", i1 true}, ...} */
        LLVMMetadataRef ops[3];
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

static LLVMValueRef vexp(struct em *e, LLVMValueRef x)
{
    /* exp(x) = 2^n * exp(r), n = rint(x / ln 2), |r| <= ln2 / 2 (Cody-Waite
     * reduction); 2^n is applied as two factors so that results down to the
     * smallest denormal and up to overflow come out right. Clamping x to
     * [-104, 89] makes every out-of-range input overflow to inf or
     * underflow to 0 by itself (and keeps fptosi defined for NaN). */
    LLVMValueRef xc = call2(e, "llvm.minnum", OC_F32, x, cf(e, 89.0));
    xc = call2(e, "llvm.maxnum", OC_F32, xc, cf(e, -104.0));
    LLVMValueRef n = call1(e, "llvm.rint", OC_F32, LLVMBuildFMul(e->b, xc, cf(e, 1.44269504088896341), ""));
    LLVMValueRef r = fma3(e, n, cf(e, -0.693359375), xc);
    r = fma3(e, n, cf(e, 2.12194440e-4), r);
    LLVMValueRef p = cf(e, 1.9875691500E-4);
    static const double c[] = {1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1,
                               5.0000001201E-1};
    for (int i = 0; i < 5; i++) p = fma3(e, p, r, cf(e, c[i]));
    LLVMValueRef y = LLVMBuildFAdd(e->b, fma3(e, p, LLVMBuildFMul(e->b, r, r, ""), r), cf(e, 1.0), "");
    LLVMValueRef ni = LLVMBuildFPToSI(e->b, n, e->i32, "");
    LLVMValueRef n1 = LLVMBuildAShr(e->b, ni, ci32(e, 1), "");
    LLVMValueRef n2 = LLVMBuildSub(e->b, ni, n1, "");
    LLVMValueRef s1 = LLVMBuildBitCast(e->b, LLVMBuildShl(e->b, LLVMBuildAdd(e->b, n1, ci32(e, 127), ""), ci32(e, 23), ""), e->f32, "");
    LLVMValueRef s2 = LLVMBuildBitCast(e->b, LLVMBuildShl(e->b, LLVMBuildAdd(e->b, n2, ci32(e, 127), ""), ci32(e, 23), ""), e->f32, "");
    y = LLVMBuildFMul(e->b, LLVMBuildFMul(e->b, y, s1, ""), s2, "");
    return sel(e, isnan_(e, x), x, y);
}

static LLVMValueRef vlog(struct em *e, LLVMValueRef x)
{
    /* x = 2^k * m with m in [sqrt(1/2), sqrt(2)); log x = k ln2 + log(m),
     * log(1+f) = f - f^2/2 + f^3 P(f) (Cephes logf); denormal inputs are
     * scaled by 2^23 first. */
    LLVMValueRef den = fcmp(e, LLVMRealOLT, x, cf(e, 1.17549435082228751e-38));
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
    /* x <= 0, inf, NaN */
    LLVMValueRef ok = LLVMBuildAnd(e->b, fcmp(e, LLVMRealOGT, x, cf(e, 0)),
                                   fcmp(e, LLVMRealOLT, x, cf(e, INFINITY)), "");
    LLVMValueRef special = sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, 0)), cf(e, -INFINITY),
                               sel(e, fcmp(e, LLVMRealOEQ, x, cf(e, INFINITY)), x, cf(e, NAN)));
    return sel(e, ok, r, sel(e, isnan_(e, x), x, special));
}

static LLVMValueRef vlog1p(struct em *e, LLVMValueRef x)
{
    /* u = 1 + x rounds; log(u) - ((u - 1) - x) / u corrects for it (to first
     * order, which is exact enough: the correction is below an ulp of u) */
    LLVMValueRef u = LLVMBuildFAdd(e->b, x, cf(e, 1.0), "");
    LLVMValueRef lu = vlog(e, u);
    LLVMValueRef corr = LLVMBuildFDiv(e->b, LLVMBuildFSub(e->b, LLVMBuildFSub(e->b, u, cf(e, 1.0), ""), x, ""), u, "");
    LLVMValueRef r = LLVMBuildFSub(e->b, lu, corr, "");
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

static LLVMValueRef fexp(struct em *e, int dt, LLVMValueRef x)
{
    return dt == OC_F32 && !e->libm ? vexp(e, x) : call1(e, "llvm.exp", dt, x);
}

static LLVMValueRef flog(struct em *e, int dt, LLVMValueRef x)
{
    return dt == OC_F32 && !e->libm ? vlog(e, x) : call1(e, "llvm.log", dt, x);
}

static LLVMValueRef flog1p(struct em *e, int dt, LLVMValueRef x)
{
    return dt == OC_F32 && !e->libm ? vlog1p(e, x) : call1(e, "log1p", dt, x);
}

static LLVMValueRef op_float(struct em *e, const struct oc_kval *v, LLVMValueRef a, LLVMValueRef b)
{
    int dt = v->dtype;
    LLVMTypeRef t = ty(e, dt);
    LLVMValueRef zero = LLVMConstReal(t, 0), one = LLVMConstReal(t, 1);
    switch (v->op) {
    case OC_OP_NEG: return LLVMBuildFNeg(e->b, a, "");
    case OC_OP_EXP: return fexp(e, dt, a);
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
        LLVMValueRef ex = fexp(e, dt, LLVMBuildFNeg(e->b, fabs_(e, dt, a), ""));
        LLVMValueRef den = LLVMBuildFAdd(e->b, one, ex, "");
        return sel(e, LLVMBuildFCmp(e->b, LLVMRealOGE, a, zero, ""),
                   LLVMBuildFDiv(e->b, one, den, ""), LLVMBuildFDiv(e->b, ex, den, ""));
    }
    case OC_OP_TANH: return call1(e, "tanh", dt, a);
    case OC_OP_SOFTPLUS: {
        LLVMValueRef ex = fexp(e, dt, LLVMBuildFNeg(e->b, fabs_(e, dt, a), ""));
        LLVMValueRef pos = sel(e, LLVMBuildFCmp(e->b, LLVMRealOGT, a, zero, ""), a, zero);
        return LLVMBuildFAdd(e->b, pos, flog1p(e, dt, ex), "");
    }
    case OC_OP_LOG1P: return flog1p(e, dt, a);
    case OC_OP_ADD: return LLVMBuildFAdd(e->b, a, b, "");
    case OC_OP_SUB: return LLVMBuildFSub(e->b, a, b, "");
    case OC_OP_MUL: return LLVMBuildFMul(e->b, a, b, "");
    case OC_OP_DIV: return LLVMBuildFDiv(e->b, a, b, "");
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

static LLVMValueRef ev(struct em *e, const struct oc_kval *v)
{
    if (e->vmemo[v->id] && valid(e, e->vscope[v->id])) return e->vmemo[v->id];
    LLVMValueRef r = NULL;
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
    case OC_KV_OP: r = ev_op(e, v); break;
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
        for (int l = nil - 1; l >= 0; l--) loop_end(e, &inner[l], l == nil - 1 ? hints : 0);
        e->scope = 1;
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
    decode_row(e, k, LLVMBuildNSWAdd(e->b, rb, w, ""));
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
    for (int d = 0; d < OC_MAX_RANK; d++) e->var[d] = ci64(e, 0);
    e->wide = 1;
    LLVMValueRef begin = LLVMGetParam(e->fn, 1), end = LLVMGetParam(e->fn, 2);
    struct loop B;
    loop_begin(e, begin, end, &B);
    B.step = W;
    LLVMValueRef rb = B.phi;
    LLVMValueRef left = LLVMBuildSub(e->b, end, rb, "");
    LLVMValueRef nw = sel(e, LLVMBuildICmp(e->b, LLVMIntSLT, left, ci64(e, W), ""), left, ci64(e, W));
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
        loop_end(e, &wl.L, LOOP_VECTORIZE);
        struct loop innerl[OC_MAX_RANK];
        int nil = 0;
        for (int d = 0; d < k->space.rank; d++) {
            if (!(k->rmask & (1u << d)) || k->space.dim[d] <= 1) continue;
            loop_begin(e, ci64(e, 0), ci64(e, k->space.dim[d]), &innerl[nil]);
            e->var[d] = innerl[nil++].phi;
        }
        wide_begin(e, k, rb, nw, accarr, idxarr, W, &wl);
        for (int i = 0; i < k->nval; i++) {
            if (!hoist[i] || hoist[i] > s + 1) continue;
            LLVMValueRef ix[2] = {ci64(e, 0), wl.L.phi};
            LLVMTypeRef t = ty(e, k->vals[i]->dtype);
            LLVMValueRef p = LLVMBuildGEP2(e->b, LLVMArrayType(t, (unsigned)W), harr[i], ix, 2, "");
            e->vmemo[i] = LLVMBuildLoad2(e->b, t, p, "");
            e->vscope[i] = e->scope;
        }
        for (int i = 0; i < k->nred; i++)
            if (k->red[i].stage == s) red_step(e, i);
        for (int i = 0; i < k->nstore; i++)
            if (k->store[i].stage == s) do_store(e, &k->store[i]);
        loop_end(e, &wl.L, LOOP_VECTORIZE);
        for (int l = nil - 1; l >= 0; l--) loop_end(e, &innerl[l], 0);
    }
    wide_begin(e, k, rb, nw, accarr, idxarr, W, &wl);
    for (int i = 0; i < k->nstore; i++)
        if (k->store[i].stage < 0) do_store(e, &k->store[i]);
    loop_end(e, &wl.L, LOOP_VECTORIZE);
    loop_end(e, &B, 0);
    e->wide = 0;
    free(hoist);
    free(seen);
    free(harr);
}

static enum oc_status emit_kernel(struct em *e, const struct oc_kernel *k)
{
    e->k = k;
    e->nscope = 1000;
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
    enum oc_status st = OC_OK;
    for (int i = 0; i < n && !st; i++) {
        if (ks[i]->kind != OC_K_LOOP) continue;
        if (LLVMGetNamedFunction(mod, ks[i]->sym)) continue; /* same structure, same code */
        st = emit_kernel(&e, ks[i]);
    }
    LLVMDisposeBuilder(e.b);
    return st;
}

#else
typedef int oc_llvm_emit_unused; /* ISO C wants a non-empty unit */
#endif /* OC_HAVE_LLVM */
