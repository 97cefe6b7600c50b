/* kir.h - the kernel IR: a backend-neutral description of each kernel that
 * fusion (passes/fuse.c) produces and the backends (codegen/llvm*.c, later
 * CUDA) consume, plus the kernel program (buffers, kernels in execution
 * order, assigns) and the memory plan over it (passes/memplan.c).
 *
 * A loop kernel is an iteration space `space` (a shape F) whose axes in
 * `rmask` are reduced: the outer loops run over the other axes (the "rows";
 * the outermost one is split across threads), and each stage is one loop nest
 * over the reduced axes in which reductions accumulate and element stores
 * happen. After the stages, per-row stores write the row results. A kernel
 * without reduced axes is a plain elementwise loop nest whose stores are all
 * per-row (every point is a row).
 *
 * Values form an interned DAG (equal expressions are one node, so CSE is
 * free): leaves are constants, loads of kernel buffers ("slots") through
 * index expressions, accumulated reductions of the current row, loop
 * indices and Philox draws; inner nodes are the graph's elementwise
 * primitives plus an internal predicate type for guards (pad, concat).
 * Index expressions are kept in a normal form c0 + sum coef*atom over
 * atoms (loop variables, floor div/mod of an index expression by a
 * constant, data-dependent indices) with known ranges, so the layout ops
 * (reshape, permute, broadcast, slice, pad, concat) compose into affine
 * maps whenever they are affine.
 *
 * A grouped kernel (fusion rule 4) runs several independent elementwise
 * loop kernels of different shapes as one dispatch; see oc_kir_is_group.
 */
#ifndef OODC_KIR_H
#define OODC_KIR_H

#include "../ir/ir.h"

/* The dtype of kernel-internal predicates (guards, select conditions). */
#define OC_KBOOL ((int)OC_DTYPE_COUNT)

/* ---------------------------------------------------------------- index expressions */

enum oc_katom_kind {
    OC_KA_VAR, /* loop variable `var` (axis `var` of the kernel's space) */
    OC_KA_DIV, /* floor(x / c), c > 0 */
    OC_KA_MOD, /* x - c * floor(x / c), c > 0 */
    OC_KA_VAL, /* an i32 kernel value used as an index, clamped to [0, c-1] */
};

struct oc_kix;
struct oc_kval;

struct oc_katom {
    int id;
    enum oc_katom_kind kind;
    int var;
    const struct oc_kix *x;
    const struct oc_kval *v;
    int64_t c;
    int64_t lo, hi; /* inclusive range */
};

/* c0 + sum_i coef[i] * atom[i], atoms sorted by id, coefficients nonzero. */
struct oc_kix {
    int id;
    int64_t c0;
    int nterm;
    const int64_t *coef;
    const struct oc_katom *const *atom;
    int64_t lo, hi;   /* inclusive range over the iteration space */
    uint32_t varmask; /* loop variables it depends on */
};

/* ---------------------------------------------------------------- values */

enum oc_kval_kind {
    OC_KV_CONST,   /* c, already rounded to dtype */
    OC_KV_LOAD,    /* slot[ix] */
    OC_KV_ACC,     /* reduction `acc` of this kernel, for the current row */
    OC_KV_INDEX,   /* the index expression ix as an i32 value */
    OC_KV_OP,      /* graph primitive `op` on args (elementwise, compare, cast) */
    OC_KV_RNG,     /* op = rng_normal/rng_uniform; arg[0] the i32 counter; ix the element */
    OC_KV_INRANGE, /* KBOOL: lo <= ix <= hi */
    OC_KV_AND,     /* KBOOL: arg[0] && arg[1] */
    OC_KV_SEL,     /* arg[0] (KBOOL) ? arg[1] : arg[2] */
};

/* A comparison op (OC_F_CMP) with dtype OC_KBOOL yields the predicate;
 * with a numeric dtype it yields 0/1 in that dtype (the graph's meaning). */
struct oc_kval {
    int id;
    enum oc_kval_kind kind;
    int dtype; /* enum oc_dtype, or OC_KBOOL */
    enum oc_op op;
    int nargs;
    const struct oc_kval *arg[3];
    double c;
    int slot;
    int acc;
    const struct oc_kix *ix;
    int64_t lo, hi;
    uint64_t seed;
    uint32_t varmask; /* loop variables it depends on (through indices) */
    int after;        /* first stage at which it can be computed (1 + stage of ACCs read) */
};

/* ---------------------------------------------------------------- kernels */

enum oc_kkind {
    OC_K_LOOP,
    OC_K_MATMUL,
    OC_K_CONV2D,
    OC_K_CONV2D_GRAD_INPUT,
    OC_K_CONV2D_GRAD_WEIGHT,
};

/* A reduction of a loop kernel: op is sum, reduce_max or argmax (whose
 * result is the position along the one reduced axis `axis`). */
struct oc_kred {
    enum oc_op op;
    int dtype;
    const struct oc_kval *x;
    int stage;
    int axis;
    int node;
};

/* A store: slot[ix] = v. stage >= 0: inside that stage's inner loop (one
 * element per point of the space); stage < 0: once per row, after the
 * stages. */
struct oc_kstore {
    int slot;
    const struct oc_kval *v;
    const struct oc_kix *ix;
    int stage;
    int node;
};

/* A kernel-local buffer. Kernels refer to slots, never to program buffers,
 * so structurally equal kernels hash equal wherever they occur. */
struct oc_kslot {
    int node;         /* graph node whose value the slot holds */
    int buf;          /* program buffer (set by the program builder) */
    enum oc_dtype dtype;
    int64_t numel;
    int written;
};

struct oc_kernel {
    enum oc_kkind kind;
    char name[64];    /* k_3f9a_reduce_max_sum: short hash + op summary */
    char sym[24];     /* k_<16 hex>: the symbol of the generated function */
    uint64_t hash;    /* structural hash: equal kernels share code */

    /* loop kernels */
    struct oc_shape space;
    uint32_t rmask;
    int nstage;
    int nred;
    struct oc_kred *red;
    int nstore;
    struct oc_kstore *store;
    int nval, nix, natom; /* interned nodes, indexed by id */
    const struct oc_kval **vals;
    const struct oc_kix **ixs;
    const struct oc_katom **atoms;

    /* library kernels (matmul / conv): slot 0 is the output, 1 and 2 the
     * operands; `lib` is the graph node (attrs, shapes). */
    const struct oc_node *lib;
    struct oc_shape lib_shape[3];

    int nslot;
    struct oc_kslot *slot;
    int nmember; /* graph nodes materialized or reduced here */
    int *member;

    /* grouped kernels (fusion rule 4, oc_kir_build_group): ngroup > 0.
     * Member i is an ordinary elementwise loop kernel; it covers the
     * segment [goff[i], goff[i + 1]) of the group's flat range, which is
     * the concatenation of the members' chunked outer ranges
     * (oc_kir_outer_extent), and its slot s is the group's slot
     * gslot[i][s]. 0 for every other kernel. */
    int ngroup;
    struct oc_kernel **group;
    int64_t *goff;   /* ngroup + 1 offsets, goff[0] = 0 */
    int **gslot;
};

/* A grouped kernel is several independent elementwise loop kernels of
 * different shapes run as ONE dispatch over the concatenation of their
 * chunked outer ranges: a chunk [begin, end) of the group runs, for each
 * member, the part of the member's segment it intersects (rebased to the
 * member's own range). It keeps kind OC_K_LOOP, so every path that tells
 * generated kernels from library calls keeps working, with a rank-1
 * space [goff[ngroup]] and rmask 0 (oc_kir_outer_extent and
 * oc_kir_chunk_axes give the sum without a special case) and no values,
 * stores or reductions of its own: the backends generate it from its
 * members (codegen/llvm-emit.c, codegen/cuda-emit.c). Its slots are the
 * members' program buffers, one slot per distinct buffer: a buffer that a
 * member reads and writes in place (an assign written in place) is one
 * written slot of the group, passed to both of that member's slots. */
static inline int oc_kir_is_group(const struct oc_kernel *k) { return k->ngroup > 0; }

/* The axes of the outer (row) loops, in order. Returns their count. */
int oc_kir_outer_axes(const struct oc_kernel *k, int *axes);
/* How many leading outer axes form the chunked loop: collapsed into one
 * flat index that the generated function runs over [begin, end) (split
 * across threads). All of them in a kernel with reduced axes; all but the
 * innermost in an elementwise kernel of rank >= 2, whose innermost loop is
 * kept for vectorization. */
int oc_kir_chunk_axes(const struct oc_kernel *k);
/* Extent of the chunked loop: the product of the chunked axes' extents
 * (1 when there are none). */
int64_t oc_kir_outer_extent(const struct oc_kernel *k);
/* Number of points of the space (work estimate; a group's members' sum). */
int64_t oc_kir_points(const struct oc_kernel *k);
/* Whether a reduction over `axes` of a tensor of shape `in` can run in a
 * loop kernel over `space` reducing `rmask`: 1 when the order-preserving
 * map of reduced axes onto rmask and of the other axes onto the other
 * space axes matches every extent (perm[d] = the space axis of input axis
 * d; the identity when in == space and axes == rmask). A sum over axis 0
 * of [N,N] thus shares a row kernel with sums over axis 1: its input is
 * read transposed. */
int oc_kir_red_perm(const struct oc_shape *in, uint32_t axes, const struct oc_shape *space,
                    uint32_t rmask, int *perm);

/* Geometry of a convolution library kernel (conv2d or either adjoint):
 * x [N,C,H,W], w [O,C,KH,KW], y [N,O,OH,OW]; CK = C*KH*KW, P = OH*OW. */
struct oc_kconv {
    int64_t N, C, H, W, O, KH, KW, OH, OW, CK, P;
    int sh, sw, ph, pw;
};
struct oc_kconv oc_kir_conv(const struct oc_kernel *k);

void oc_kir_print(const struct oc_kernel *k, FILE *f);

/* ---------------------------------------------------------------- building */

/* Where the value of each graph node comes from, as seen when building
 * kernel `self`: a kernel id >= 0 (a member of that kernel: inlined or an
 * accumulator when it is `self`, a buffer load otherwise), or one of: */
enum {
    OC_KW_INLINE = -1, /* recomputed inline wherever it is used */
    OC_KW_BUFFER = -2, /* a buffer (input, param, state, const with data) */
    OC_KW_SPLAT = -3,  /* a splat const: an immediate */
};

/* Builds loop kernel `self` over `space` with reduced axes `rmask` for the
 * graph nodes `members` (in graph order): reductions (input of shape
 * `space`, axes `rmask`) become accumulators; other members must have
 * numel(space) elements (stored per point) or one element per row (stored
 * per row). Members with store[i] != 0 are written to their own slot.
 * Fails (OC_ERR_UNSUPPORTED, with the reason) when the members cannot form
 * one kernel, e.g. a reduction read at another row's coordinates. The
 * kernel lives in `a`. `loads`, if not NULL, receives a malloc'd array of
 * the graph nodes the kernel reads (count in *nloads). */
struct oc_kernel *oc_kir_build_loop(struct oc_arena *a, const struct oc_graph *g,
                                    const int *where, int self, const struct oc_shape *space,
                                    uint32_t rmask, const int *members, int nmembers,
                                    const unsigned char *store, int **loads, int *nloads,
                                    struct oc_err *err);
/* A library-call kernel for a matmul / conv node (operands and result are
 * buffers). */
struct oc_kernel *oc_kir_build_lib(struct oc_arena *a, const struct oc_graph *g, int node,
                                   struct oc_err *err);
/* A grouped kernel of the n >= 1 members: elementwise loop kernels (rmask
 * 0, not groups) whose slots carry their program buffers (slot[].buf >= 0,
 * as in a built program). Nothing is checked about their independence:
 * that is fusion's call (passes/fuse.c). The members are not copied. */
struct oc_kernel *oc_kir_build_group(struct oc_arena *a, struct oc_kernel *const *members, int n,
                                     struct oc_err *err);

/* The value a splat constant or pad value takes in dtype dt (f32 rounding,
 * integer truncation and clamping, as the interpreter stores it). */
double oc_kir_round(enum oc_dtype dt, double v);

/* ---------------------------------------------------------------- programs */

enum oc_kbuf_kind {
    OC_KB_INPUT,
    OC_KB_PARAM,
    OC_KB_STATE,
    OC_KB_CONST, /* filled once from the graph's data */
    OC_KB_TEMP,  /* produced by a kernel */
};

struct oc_kbuf {
    int node;
    enum oc_kbuf_kind kind;
    enum oc_dtype dtype;
    struct oc_shape shape;
    size_t bytes;
    int pinned;     /* lives outside the arena: sources, outputs, assign values */
    int64_t offset; /* arena offset of a temp (memplan), -1 if pinned */
    int def, last;  /* first kernel writing it, last kernel reading it (memplan) */
    int merged;     /* 1: unused: an assign's value written straight into its
                     * target (passes/fuse.c), which the kernels name instead */
};

struct oc_kassign {
    int node;   /* the assign node */
    int target; /* buffer of the param/state */
    int value;  /* buffer holding the new value; == target when the kernel
                 * computing it writes the target in place (nothing to copy) */
};

/* A compiled graph's schedule: kernels in execution order over buffers.
 * Every graph output has a buffer (out_buf); outputs that read a param or
 * state that an assign overwrites are snapshotted before the assigns. */
struct oc_kprog {
    struct oc_arena arena;
    const struct oc_graph *g;
    int fusion;
    int nbuf;
    struct oc_kbuf *buf;
    int *node_buf; /* per graph node: its buffer or -1 */
    int nkernel;
    struct oc_kernel **kernel;
    int nassign;
    struct oc_kassign *assign;
    int *out_buf; /* per graph output */
    /* Nodes fusion added (the partial sums of split reductions), with ids
     * g->nnodes, g->nnodes + 1, ...: kernel slots and members and temp
     * buffers may name them; node_buf covers them too. */
    int nextra;
    const struct oc_node *const *extra;
    /* memory plan */
    size_t arena_bytes; /* peak bytes of the shared arena */
    size_t temp_bytes;  /* sum of the temps' sizes (what no reuse would take) */
    int ntemp;          /* temps placed in the arena */
    int ninplace;       /* temps placed over a dying operand of their kernel */
};

void oc_kprog_free(struct oc_kprog *p);
void oc_kprog_print(const struct oc_kprog *p, FILE *f);

/* Memory planning (passes/memplan.c): liveness of the temps over the kernel
 * order, first-fit placement in one arena (64-byte aligned), in-place reuse
 * of an operand that dies in an elementwise kernel reading it at the very
 * index it writes. Fills buf[].offset/def/last and the totals. Pinned
 * buffers are not placed. */
enum oc_status oc_pass_memplan(struct oc_kprog *p, int inplace, struct oc_err *err);

#endif
