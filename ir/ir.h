/* ir.h - the public interface of the oodc graph IR.
 *
 * A graph is a list of SSA nodes over typed, statically shaped tensors, in
 * topological order (a node's operands always precede it). Shapes and dtypes
 * are inferred when a node is built; a failure records a message in the graph
 * (sticky) and yields an invalid handle, so DSL code can build a whole graph
 * and check once. Nothing in ir/ knows about devices.
 */
#ifndef OODC_IR_H
#define OODC_IR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- status */

enum oc_status {
    OC_OK = 0,
    OC_ERR_INVALID,     /* bad argument or usage */
    OC_ERR_SHAPE,       /* shape mismatch */
    OC_ERR_DTYPE,       /* dtype mismatch */
    OC_ERR_PARSE,       /* malformed text or file */
    OC_ERR_IO,          /* file system */
    OC_ERR_UNSUPPORTED, /* valid request the implementation cannot meet */
    OC_ERR_NOMEM,
    OC_ERR_DEVICE,      /* backend / driver failure */
    OC_ERR_NUMERIC,     /* NaN / Inf where finite values were required */
};

/* An error: a status and a message naming what and where. */
struct oc_err {
    enum oc_status code;
    char msg[1024];
};

const char *oc_status_name(enum oc_status s);
/* Records the first error only: later calls keep the original message. */
enum oc_status oc_err_set(struct oc_err *e, enum oc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum oc_status oc_err_setv(struct oc_err *e, enum oc_status code, const char *fmt, va_list ap);
void oc_err_clear(struct oc_err *e);

/* Invariants (bugs, never user input): always on. */
#define OC_ASSERT(c)                                                           \
    do {                                                                       \
        if (!(c)) oc_assert_fail(#c, __FILE__, __LINE__, __func__);            \
    } while (0)
_Noreturn void oc_assert_fail(const char *expr, const char *file, int line, const char *func);

/* ---------------------------------------------------------------- arena */

/* A growing bump allocator; everything is freed at once. */
struct oc_arena {
    struct oc_arena_chunk *head;
};
void *oc_arena_alloc(struct oc_arena *a, size_t n); /* zeroed, 16-aligned */
char *oc_arena_strdup(struct oc_arena *a, const char *s);
void oc_arena_free(struct oc_arena *a);

/* ---------------------------------------------------------------- types */

enum oc_dtype { OC_F32, OC_F64, OC_I32, OC_U8, OC_DTYPE_COUNT };

const char *oc_dtype_name(enum oc_dtype t);       /* "f32", ... */
size_t oc_dtype_size(enum oc_dtype t);
int oc_dtype_is_float(enum oc_dtype t);
int oc_dtype_parse(const char *s, enum oc_dtype *out); /* 0 on success */

#define OC_MAX_RANK 6

struct oc_shape {
    int rank;
    int64_t dim[OC_MAX_RANK];
};

struct oc_shape oc_shape_make(int rank, const int64_t *dims);
#define OC_NARGS_(a, b, c, d, e, f, g, N, ...) N
#define OC_NARGS(...) OC_NARGS_(__VA_ARGS__, 7, 6, 5, 4, 3, 2, 1, 0)
/* OC_SHAPE(4, 3) is a rank-2 shape; OC_SCALAR is rank 0. */
#define OC_SHAPE(...) oc_shape_make(OC_NARGS(__VA_ARGS__), (const int64_t[]){__VA_ARGS__})
#define OC_SCALAR oc_shape_make(0, NULL)

int64_t oc_shape_numel(const struct oc_shape *s);
int oc_shape_eq(const struct oc_shape *a, const struct oc_shape *b);
/* "[4,3]" ; buf of at least 128 bytes */
char *oc_shape_str(const struct oc_shape *s, char *buf, size_t n);
/* Row-major strides in elements. */
void oc_shape_strides(const struct oc_shape *s, int64_t *strides);

/* ---------------------------------------------------------------- ops */

enum oc_fusion_class {
    OC_FC_ELEMWISE,
    OC_FC_BROADCAST,
    OC_FC_INJECTIVE,
    OC_FC_REDUCE,
    OC_FC_CONTRACTION,
    OC_FC_OPAQUE,
    OC_FC_SOURCE,
};

enum {
    OC_F_DIFF = 1 << 0,
    OC_F_EXPENSIVE = 1 << 1,
    OC_F_SOURCE = 1 << 2,
    OC_F_EFFECT = 1 << 3,
    OC_F_CMP = 1 << 4,
};

enum oc_op {
#define OC_OP(e, s, ar, fc, fl) OC_OP_##e,
#include "ops.def"
#undef OC_OP
    OC_OP_COUNT
};

struct oc_op_info {
    const char *name;
    int arity; /* -1: variadic */
    enum oc_fusion_class fclass;
    unsigned flags;
};
extern const struct oc_op_info oc_op_table[OC_OP_COUNT];
const char *oc_op_name(enum oc_op op);
int oc_op_parse(const char *s, enum oc_op *out); /* 0 on success */

/* ---------------------------------------------------------------- attrs */

/* Parameter / state initializers. Fans follow PyTorch: for a weight of shape
 * [out, in, kh, kw] (conv) or [out, in] (linear, PyTorch layout as oc_linear),
 * fan_in = numel / dim[0] = in*kh*kw; rank-0/1 tensors use fan = numel. */
enum oc_init {
    OC_INIT_ZEROS,
    OC_INIT_ONES,
    OC_INIT_CONST,          /* a */
    OC_INIT_NORMAL,         /* mean a, std b */
    OC_INIT_UNIFORM,        /* [a, b) */
    OC_INIT_KAIMING_NORMAL, /* std = sqrt(2 / fan); a = fan (0: derived from shape) */
};
const char *oc_init_name(enum oc_init i);
int oc_init_parse(const char *s, enum oc_init *out);

/* Operation attributes. Which fields an op uses:
 *   input/param/state : name; param/state: init, init_a, init_b
 *   const             : value (splat) or data[numel] (data != NULL)
 *   rng_*             : seed; operand 0 is an i32 scalar counter (the step)
 *   reshape/broadcast/cast, conv2d_grad_*: the target type is the node's type
 *   permute           : perm[rank]
 *   slice             : start/stop/step per dim (step >= 1)
 *   pad               : lo/hi per dim (>= 0), pad_value
 *   concat/argmax/gather/one_hot: axis; one_hot: depth (the output's last dim)
 *   sum/reduce_max    : axes (bit mask), keepdims
 *   argmax            : axis, keepdims
 *   matmul            : trans_a, trans_b
 *   conv2d*           : stride[2], padding[2] (symmetric zero padding, h then w)
 */
struct oc_attrs {
    const char *name;
    enum oc_init init;
    double init_a, init_b;
    double value;
    const double *data; /* numel values, owned by the graph arena */
    uint64_t seed;
    int perm[OC_MAX_RANK];
    int64_t start[OC_MAX_RANK], stop[OC_MAX_RANK], step[OC_MAX_RANK];
    int64_t lo[OC_MAX_RANK], hi[OC_MAX_RANK];
    double pad_value;
    int axis;
    int64_t depth;
    uint32_t axes;
    int keepdims;
    int trans_a, trans_b;
    int stride[2], padding[2];
};

/* ---------------------------------------------------------------- graph */

/* A tensor handle: the id of the node producing it; id < 0 is invalid. */
typedef struct {
    int id;
} oc_tensor;
#define OC_NONE ((oc_tensor){-1})
static inline int oc_valid(oc_tensor t) { return t.id >= 0; }

struct oc_node {
    int id;
    enum oc_op op;
    enum oc_dtype dtype;
    struct oc_shape shape;
    int ninputs;
    int *inputs;       /* node ids, arena-owned */
    struct oc_attrs attrs;
    const char *label; /* optional human label (e.g. "bn1.mean"), not semantic */
};

struct oc_output {
    const char *name;
    int node;
};

struct oc_graph {
    struct oc_arena arena;
    struct oc_node **nodes;
    int nnodes, cap;
    struct oc_output *outputs;
    int noutputs, outcap;
    const char *name;
    struct oc_err err; /* sticky builder error */
};

struct oc_graph *oc_graph_new(const char *name);
void oc_graph_free(struct oc_graph *g);
/* OC_OK, or the first error recorded while building (see g->err.msg). */
enum oc_status oc_graph_status(const struct oc_graph *g);

/* Adds a node; operands must already be in the graph. The output dtype and
 * shape are inferred from the operands and attrs. For ops whose type is not
 * derivable (input, param, state, const, rng_*, reshape, broadcast, cast,
 * conv2d_grad_*), `type_dtype`/`type_shape` give it; otherwise they are
 * ignored (pass NULL). On failure the graph's error is set (naming the op,
 * the node and the shapes) and OC_NONE is returned. An invalid operand
 * propagates silently (the first error stays). */
oc_tensor oc_graph_add(struct oc_graph *g, enum oc_op op, const oc_tensor *in, int nin,
                       const struct oc_attrs *attrs, enum oc_dtype type_dtype,
                       const struct oc_shape *type_shape);

/* Infers the output type of `op` applied to operands of the given types.
 * Used by oc_graph_add and the verifier. */
enum oc_status oc_infer(enum oc_op op, int nin, const enum oc_dtype *in_dt,
                        const struct oc_shape *in_sh, const struct oc_attrs *a,
                        enum oc_dtype *out_dt, struct oc_shape *out_sh, struct oc_err *err);

static inline struct oc_node *oc_node_of(const struct oc_graph *g, oc_tensor t)
{
    return g->nodes[t.id];
}
/* Named outputs. Adding the same name twice is an error. */
enum oc_status oc_graph_set_output(struct oc_graph *g, const char *name, oc_tensor t);
/* -1 when absent */
int oc_graph_find_output(const struct oc_graph *g, const char *name);
/* The input/param/state node with this name, or -1. */
int oc_graph_find_named(const struct oc_graph *g, const char *name);
/* A deep copy (nodes, attrs, outputs). */
struct oc_graph *oc_graph_clone(const struct oc_graph *g);

/* Structural checks: operand ids precede the node, arity, inferred types
 * agree with the recorded ones, names unique, assign targets are param or
 * state of the same type, outputs valid. */
enum oc_status oc_graph_verify(const struct oc_graph *g, struct oc_err *err);

/* ---------------------------------------------------------------- text form */

/* The text form, one node per line; see README.md "The IR text format". */
enum oc_status oc_graph_print(const struct oc_graph *g, FILE *f);
char *oc_graph_print_str(const struct oc_graph *g); /* malloc'd */
/* Parses the text form. On error returns NULL and sets err with
 * "<source>:line:col: message". */
struct oc_graph *oc_graph_parse(const char *text, const char *source_name, struct oc_err *err);
struct oc_graph *oc_graph_load(const char *path, struct oc_err *err);
/* Graphviz DOT. */
enum oc_status oc_graph_dot(const struct oc_graph *g, FILE *f);

/* ---------------------------------------------------------------- host tensors */

/* A dense host tensor in row-major order. `data` is malloc'd and owned. */
struct oc_buf {
    enum oc_dtype dtype;
    struct oc_shape shape;
    void *data;
};
enum oc_status oc_buf_alloc(struct oc_buf *b, enum oc_dtype dt, const struct oc_shape *s);
void oc_buf_free(struct oc_buf *b);
/* Element i as double / set element i from double (rounding per dtype). */
double oc_buf_get(const struct oc_buf *b, int64_t i);
void oc_buf_set(struct oc_buf *b, int64_t i, double v);

/* .npy files (format 1.0/2.0, little-endian f4/f8/i4/u1, C order). Writes go
 * to a temporary file and are renamed into place. */
enum oc_status oc_npy_read(const char *path, struct oc_buf *out, struct oc_err *err);
enum oc_status oc_npy_parse(const void *bytes, size_t n, const char *source_name,
                            struct oc_buf *out, struct oc_err *err);
enum oc_status oc_npy_write(const char *path, const struct oc_buf *b, struct oc_err *err);

/* ---------------------------------------------------------------- rng */

/* Philox4x32-10 (Salmon et al. 2011). Element i of a tensor drawn by an
 * rng node with seed s at counter c uses counter block {lo32(i), c, hi32(i), 0}
 * and key {lo32(s), hi32(s)}: every backend draws the same stream. */
void oc_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
double oc_rng_uniform_at(uint64_t seed, uint32_t counter, uint64_t i); /* [0,1) */
double oc_rng_normal_at(uint64_t seed, uint32_t counter, uint64_t i);  /* N(0,1) */

/* Fills a param/state buffer from its initializer. The stream is keyed by
 * the graph-level seed and a hash of the node's name, so adding a parameter
 * does not change the others. */
enum oc_status oc_init_fill(const struct oc_node *n, uint64_t seed, struct oc_buf *out,
                            struct oc_err *err);
uint64_t oc_hash64(const void *data, size_t n, uint64_t h); /* FNV-1a style, seedable */

/* ---------------------------------------------------------------- interpreter */

/* The reference interpreter: naive loops over every primitive, the oracle of
 * every test. It computes in double and, in f32 mode, rounds each f32 node's
 * result to float, so it models f32 arithmetic op by op. */
struct oc_interp;
struct oc_interp *oc_interp_new(const struct oc_graph *g, int f64);
void oc_interp_free(struct oc_interp *it);
/* Binds a value to an input, param or state by name (copied). Unbound params
 * and state are initialized from their initializers with `seed`. */
enum oc_status oc_interp_set(struct oc_interp *it, const char *name, const struct oc_buf *v,
                             struct oc_err *err);
enum oc_status oc_interp_run(struct oc_interp *it, uint64_t seed, struct oc_err *err);
/* Values after a run (dtype f64 for float nodes in f64 mode, else the node's
 * dtype). Owned by the interpreter; valid until the next run or free. */
const struct oc_buf *oc_interp_value(const struct oc_interp *it, int node);
const struct oc_buf *oc_interp_output(const struct oc_interp *it, const char *name);
/* Current value of a param/state (after assigns of the last run). */
const struct oc_buf *oc_interp_named(const struct oc_interp *it, const char *name);
/* 1 if the interpreter implements op (coverage is tested from ops.def). */
int oc_interp_supports(enum oc_op op);

#endif
