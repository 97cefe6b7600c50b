/* base.c - errors, the arena, dtypes, shapes and the op table: the small
 * vocabulary every other part of oodc is written in. */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- status */

const char *oc_status_name(enum oc_status s)
{
    switch (s) {
    case OC_OK: return "ok";
    case OC_ERR_INVALID: return "invalid argument";
    case OC_ERR_SHAPE: return "shape error";
    case OC_ERR_DTYPE: return "dtype error";
    case OC_ERR_PARSE: return "parse error";
    case OC_ERR_IO: return "i/o error";
    case OC_ERR_UNSUPPORTED: return "unsupported";
    case OC_ERR_NOMEM: return "out of memory";
    case OC_ERR_DEVICE: return "device error";
    case OC_ERR_NUMERIC: return "numeric error";
    }
    return "unknown status";
}

enum oc_status oc_err_setv(struct oc_err *e, enum oc_status code, const char *fmt, va_list ap)
{
    if (!e) return code;
    if (e->code != OC_OK) return code; /* keep the first error */
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

enum oc_status oc_err_set(struct oc_err *e, enum oc_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    oc_err_setv(e, code, fmt, ap);
    va_end(ap);
    return code;
}

void oc_err_clear(struct oc_err *e)
{
    e->code = OC_OK;
    e->msg[0] = 0;
}

_Noreturn void oc_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "oodc: internal error: assertion `%s` failed at %s:%d in %s()\n", expr, file,
            line, func);
    abort();
}

/* ---------------------------------------------------------------- arena */

struct oc_arena_chunk {
    struct oc_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void *oc_arena_alloc(struct oc_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct oc_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->mem + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *oc_arena_strdup(struct oc_arena *a, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = oc_arena_alloc(a, n);
    if (p) memcpy(p, s, n);
    return p;
}

void oc_arena_free(struct oc_arena *a)
{
    struct oc_arena_chunk *c = a->head;
    while (c) {
        struct oc_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- dtypes */

static const char *const dtype_names[OC_DTYPE_COUNT] = {"f32", "f64", "i32", "u8"};
static const size_t dtype_sizes[OC_DTYPE_COUNT] = {4, 8, 4, 1};

const char *oc_dtype_name(enum oc_dtype t)
{
    return (unsigned)t < OC_DTYPE_COUNT ? dtype_names[t] : "?";
}

size_t oc_dtype_size(enum oc_dtype t) { return (unsigned)t < OC_DTYPE_COUNT ? dtype_sizes[t] : 0; }

int oc_dtype_is_float(enum oc_dtype t) { return t == OC_F32 || t == OC_F64; }

int oc_dtype_parse(const char *s, enum oc_dtype *out)
{
    for (int i = 0; i < OC_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) {
            *out = (enum oc_dtype)i;
            return 0;
        }
    return -1;
}

/* ---------------------------------------------------------------- shapes */

struct oc_shape oc_shape_make(int rank, const int64_t *dims)
{
    struct oc_shape s;
    memset(&s, 0, sizeof s);
    OC_ASSERT(rank >= 0 && rank <= OC_MAX_RANK);
    s.rank = rank;
    for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
    return s;
}

int64_t oc_shape_numel(const struct oc_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= s->dim[i];
    return n;
}

int oc_shape_eq(const struct oc_shape *a, const struct oc_shape *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

char *oc_shape_str(const struct oc_shape *s, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < s->rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)s->dim[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void oc_shape_strides(const struct oc_shape *s, int64_t *strides)
{
    int64_t st = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        strides[i] = st;
        st *= s->dim[i];
    }
}

/* ---------------------------------------------------------------- ops */

const struct oc_op_info oc_op_table[OC_OP_COUNT] = {
#define OC_OP(e, s, ar, fc, fl) [OC_OP_##e] = {s, ar, OC_FC_##fc, fl},
#include "ops.def"
#undef OC_OP
};

const char *oc_op_name(enum oc_op op)
{
    return (unsigned)op < OC_OP_COUNT ? oc_op_table[op].name : "?";
}

int oc_op_parse(const char *s, enum oc_op *out)
{
    for (int i = 0; i < OC_OP_COUNT; i++)
        if (!strcmp(s, oc_op_table[i].name)) {
            *out = (enum oc_op)i;
            return 0;
        }
    return -1;
}

static const char *const init_names[] = {"zeros", "ones", "const", "normal", "uniform",
                                         "kaiming_normal"};

const char *oc_init_name(enum oc_init i)
{
    return (unsigned)i < sizeof init_names / sizeof *init_names ? init_names[i] : "?";
}

int oc_init_parse(const char *s, enum oc_init *out)
{
    for (unsigned i = 0; i < sizeof init_names / sizeof *init_names; i++)
        if (!strcmp(s, init_names[i])) {
            *out = (enum oc_init)i;
            return 0;
        }
    return -1;
}

uint64_t oc_hash64(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    if (!h) h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---------------------------------------------------------------- host tensors */

enum oc_status oc_buf_alloc(struct oc_buf *b, enum oc_dtype dt, const struct oc_shape *s)
{
    b->dtype = dt;
    b->shape = *s;
    size_t n = (size_t)oc_shape_numel(s) * oc_dtype_size(dt);
    b->data = calloc(n ? n : 1, 1);
    return b->data ? OC_OK : OC_ERR_NOMEM;
}

void oc_buf_free(struct oc_buf *b)
{
    free(b->data);
    b->data = NULL;
}

double oc_buf_get(const struct oc_buf *b, int64_t i)
{
    switch (b->dtype) {
    case OC_F32: return ((const float *)b->data)[i];
    case OC_F64: return ((const double *)b->data)[i];
    case OC_I32: return ((const int32_t *)b->data)[i];
    case OC_U8: return ((const uint8_t *)b->data)[i];
    default: OC_ASSERT(0);
    }
}

void oc_buf_set(struct oc_buf *b, int64_t i, double v)
{
    switch (b->dtype) {
    case OC_F32: ((float *)b->data)[i] = (float)v; break;
    case OC_F64: ((double *)b->data)[i] = v; break;
    /* truncate toward zero, clamp to the type's range, NaN -> 0 (as the interpreter) */
    case OC_I32: ((int32_t *)b->data)[i] = v != v ? 0 : v >= 2147483647.0 ? INT32_MAX
                                          : v <= -2147483648.0 ? INT32_MIN : (int32_t)v; break;
    case OC_U8: ((uint8_t *)b->data)[i] = v != v || v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; break;
    default: OC_ASSERT(0);
    }
}
