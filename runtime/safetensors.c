/* safetensors.c - the safetensors reader and writer (see safetensors.h).
 *
 * The reader parses the JSON header with a small strict parser written for
 * exactly what the format uses (objects, arrays, strings with escapes,
 * non-negative integers) and reports the header byte offset of anything
 * else; then it validates the tensor table against the byte buffer. The
 * writer builds the header in memory, lays the data out aligned, and commits
 * through a temp file + fsync + rename (+ fsync of the folder), so a process
 * killed at any moment leaves the previous file or the new one, whole, and
 * at most a stale "PATH.tmp.PID" (the trainer removes those of dead
 * processes). The temp name is per process: two threads of one process
 * must not write the same path at once.
 *
 * OC_CKPT_SLOW_WRITE=N (tests only: tests/ood/test-crash-safety.c) writes
 * in pieces of N bytes with a 0.1 ms pause after each, so that a SIGKILL
 * sent at a random moment lands inside the write.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER 100000000ull

static const struct {
    const char *name;
    size_t size;
} st_dtypes[OC_ST_DTYPE_COUNT] = {
    [OC_ST_F32] = {"F32", 4}, [OC_ST_F64] = {"F64", 8}, [OC_ST_I32] = {"I32", 4},
    [OC_ST_U8] = {"U8", 1},   [OC_ST_I64] = {"I64", 8},
};

/* dtypes of the format that oodc does not handle: named in messages. */
static const char *st_other_dtypes[] = {"BOOL", "I8", "I16", "U16", "U32", "U64", "F16",
                                        "BF16", "F8_E4M3", "F8_E5M2"};

const char *oc_st_dtype_name(enum oc_st_dtype t)
{
    return (unsigned)t < OC_ST_DTYPE_COUNT ? st_dtypes[t].name : "?";
}

size_t oc_st_dtype_size(enum oc_st_dtype t)
{
    return (unsigned)t < OC_ST_DTYPE_COUNT ? st_dtypes[t].size : 0;
}

int oc_st_dtype_parse(const char *s, enum oc_st_dtype *out)
{
    for (int i = 0; i < OC_ST_DTYPE_COUNT; i++)
        if (!strcmp(s, st_dtypes[i].name)) {
            *out = (enum oc_st_dtype)i;
            return 0;
        }
    return -1;
}

/* Number of elements, or -1 on overflow past 2^62. */
static int64_t numel_of(int rank, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > (INT64_C(1) << 62) / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

/* Length of the valid UTF-8 prefix of s[0..n). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000;
        } else {
            return i;
        }
        if (i + len > n) return i;
        unsigned cp = c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

/* ---------------------------------------------------------------- JSON */

struct jp {
    const char *s;
    size_t n, i;
    const char *src;
    struct oc_err *err;
    struct oc_arena *arena;
};

/* Reports at header byte `at` (the file offset is 8 more). */
static enum oc_status jp_fail(struct jp *p, size_t at, const char *what)
{
    return oc_err_set(p->err, OC_ERR_PARSE, "%s: header byte %zu (file offset %zu): %s", p->src,
                      at, at + 8, what);
}

static void jp_ws(struct jp *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static enum oc_status jp_expect(struct jp *p, char c)
{
    jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != c) {
        char m[64];
        if (p->i >= p->n) snprintf(m, sizeof m, "expected '%c', found the end of the header", c);
        else snprintf(m, sizeof m, "expected '%c', found '%c'", c, p->s[p->i]);
        return jp_fail(p, p->i, m);
    }
    p->i++;
    return OC_OK;
}

/* 1 and consumes c if the next non-blank byte is c. */
static int jp_accept(struct jp *p, char c)
{
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == c) {
        p->i++;
        return 1;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int jp_hex4(struct jp *p, size_t at, unsigned *out)
{
    if (at + 4 > p->n) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[at + k]);
        if (h < 0) return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* A JSON string, unescaped into the arena (UTF-8, no NUL). */
static enum oc_status jp_string(struct jp *p, const char **out)
{
    jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != '"') return jp_fail(p, p->i, "expected a string");
    size_t start = ++p->i;
    /* Unescaping never lengthens: \uXXXX (6 bytes) is at most 3 UTF-8 bytes
     * and a surrogate pair (12) is 4. */
    size_t end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return jp_fail(p, start - 1, "unterminated string");
    char *buf = oc_arena_alloc(p->arena, end - start + 1);
    if (!buf) return oc_err_set(p->err, OC_ERR_NOMEM, "%s: out of memory", p->src);
    size_t o = 0;
    while (p->i < end) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) return jp_fail(p, p->i, "control character in a string");
        if (c != '\\') {
            buf[o++] = (char)c;
            p->i++;
            continue;
        }
        size_t at = p->i;
        char e = p->s[p->i + 1];
        p->i += 2;
        switch (e) {
        case '"': buf[o++] = '"'; break;
        case '\\': buf[o++] = '\\'; break;
        case '/': buf[o++] = '/'; break;
        case 'b': buf[o++] = '\b'; break;
        case 'f': buf[o++] = '\f'; break;
        case 'n': buf[o++] = '\n'; break;
        case 'r': buf[o++] = '\r'; break;
        case 't': buf[o++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (jp_hex4(p, p->i, &cp)) return jp_fail(p, at, "bad \\u escape");
            p->i += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) return jp_fail(p, at, "unpaired low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (p->i + 6 > end || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                    jp_hex4(p, p->i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return jp_fail(p, at, "unpaired high surrogate");
                p->i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0) return jp_fail(p, at, "\\u0000 in a string is not supported");
            if (cp < 0x80) {
                buf[o++] = (char)cp;
            } else if (cp < 0x800) {
                buf[o++] = (char)(0xc0 | cp >> 6);
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                buf[o++] = (char)(0xe0 | cp >> 12);
                buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            } else {
                buf[o++] = (char)(0xf0 | cp >> 18);
                buf[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: return jp_fail(p, at, "bad escape in a string");
        }
    }
    buf[o] = 0;
    p->i = end + 1;
    *out = buf;
    return OC_OK;
}

/* A non-negative JSON integer (no sign, fraction or exponent). */
static enum oc_status jp_uint(struct jp *p, const char *what, uint64_t *out)
{
    jp_ws(p);
    size_t at = p->i;
    char m[128];
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') {
        snprintf(m, sizeof m, "expected a non-negative integer for %s", what);
        return jp_fail(p, at, m);
    }
    if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
        return jp_fail(p, at, "leading zero in a number");
    uint64_t v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10) {
            snprintf(m, sizeof m, "%s is too large", what);
            return jp_fail(p, at, m);
        }
        v = v * 10 + d;
        p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        snprintf(m, sizeof m, "%s must be an integer", what);
        return jp_fail(p, at, m);
    }
    *out = v;
    return OC_OK;
}

/* ---------------------------------------------------------------- header */

struct st_entry {
    struct oc_st_tensor t;
    uint64_t begin, end;
    size_t at; /* header byte of its key, for messages */
};

static enum oc_status parse_metadata(struct jp *p, struct oc_st_kv **meta, int *nmeta)
{
    enum oc_status s = jp_expect(p, '{');
    if (s) return s;
    int cap = 0, n = 0;
    struct oc_st_kv *kv = NULL;
    if (!jp_accept(p, '}')) {
        do {
            jp_ws(p);
            size_t at = p->i;
            const char *k, *v;
            if ((s = jp_string(p, &k)) || (s = jp_expect(p, ':'))) break;
            jp_ws(p);
            if (p->i < p->n && p->s[p->i] != '"') {
                s = jp_fail(p, p->i, "__metadata__ values must be strings");
                break;
            }
            if ((s = jp_string(p, &v))) break;
            for (int i = 0; i < n; i++)
                if (!strcmp(kv[i].key, k)) {
                    s = jp_fail(p, at, "duplicate key in __metadata__");
                    break;
                }
            if (s) break;
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                struct oc_st_kv *q = oc_arena_alloc(p->arena, (size_t)cap * sizeof *q);
                if (!q) {
                    s = oc_err_set(p->err, OC_ERR_NOMEM, "%s: out of memory", p->src);
                    break;
                }
                if (n) memcpy(q, kv, (size_t)n * sizeof *q);
                kv = q;
            }
            kv[n].key = k;
            kv[n].value = v;
            n++;
        } while (jp_accept(p, ','));
        if (!s) s = jp_expect(p, '}');
    }
    *meta = kv;
    *nmeta = n;
    return s;
}

static enum oc_status parse_tensor(struct jp *p, struct st_entry *e)
{
    enum oc_status s = jp_expect(p, '{');
    if (s) return s;
    int have_dtype = 0, have_shape = 0, have_off = 0;
    char m[160];
    if (!jp_accept(p, '}')) {
        do {
            jp_ws(p);
            size_t at = p->i;
            const char *k;
            if ((s = jp_string(p, &k)) || (s = jp_expect(p, ':'))) return s;
            if (!strcmp(k, "dtype")) {
                if (have_dtype) return jp_fail(p, at, "duplicate key \"dtype\"");
                jp_ws(p);
                size_t vat = p->i;
                const char *d;
                if ((s = jp_string(p, &d))) return s;
                if (oc_st_dtype_parse(d, &e->t.dtype)) {
                    int known = 0;
                    for (size_t i = 0; i < sizeof st_other_dtypes / sizeof *st_other_dtypes; i++)
                        known |= !strcmp(d, st_other_dtypes[i]);
                    snprintf(m, sizeof m,
                             known ? "tensor \"%.40s\": dtype \"%.16s\" is not supported (F32, "
                                     "F64, I32, U8, I64)"
                                   : "tensor \"%.40s\": unknown dtype \"%.16s\"",
                             e->t.name, d);
                    return jp_fail(p, vat, m);
                }
                have_dtype = 1;
            } else if (!strcmp(k, "shape")) {
                if (have_shape) return jp_fail(p, at, "duplicate key \"shape\"");
                if ((s = jp_expect(p, '['))) return s;
                int rank = 0;
                if (!jp_accept(p, ']')) {
                    do {
                        jp_ws(p);
                        size_t dat = p->i;
                        uint64_t d;
                        if ((s = jp_uint(p, "a shape dimension", &d))) return s;
                        if (rank == OC_MAX_RANK) {
                            snprintf(m, sizeof m, "tensor \"%.40s\": rank above %d",
                                     e->t.name, OC_MAX_RANK);
                            return jp_fail(p, dat, m);
                        }
                        e->t.shape[rank++] = (int64_t)d;
                    } while (jp_accept(p, ','));
                    if ((s = jp_expect(p, ']'))) return s;
                }
                e->t.rank = rank;
                have_shape = 1;
            } else if (!strcmp(k, "data_offsets")) {
                if (have_off) return jp_fail(p, at, "duplicate key \"data_offsets\"");
                if ((s = jp_expect(p, '[')) || (s = jp_uint(p, "data_offsets[0]", &e->begin)) ||
                    (s = jp_expect(p, ',')) || (s = jp_uint(p, "data_offsets[1]", &e->end)) ||
                    (s = jp_expect(p, ']')))
                    return s;
                have_off = 1;
            } else {
                snprintf(m, sizeof m, "tensor \"%.40s\": unexpected key \"%.40s\"", e->t.name, k);
                return jp_fail(p, at, m);
            }
        } while (jp_accept(p, ','));
        if ((s = jp_expect(p, '}'))) return s;
    }
    if (!have_dtype || !have_shape || !have_off) {
        snprintf(m, sizeof m, "tensor \"%.40s\": missing \"%s\"", e->t.name,
                 !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return jp_fail(p, e->at, m);
    }
    return OC_OK;
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp(((const struct st_entry *)a)->t.name, ((const struct st_entry *)b)->t.name);
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const struct st_entry *x = *(struct st_entry *const *)a, *y = *(struct st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const struct oc_st_kv *)a)->key, ((const struct oc_st_kv *)b)->key);
}

/* Parses the header and checks the table against a buffer of data_size
 * bytes; fills st (not its data). */
static enum oc_status parse_header(const char *hdr, size_t n, size_t data_size, const char *src,
                                   struct oc_safetensors *st, struct oc_err *err)
{
    struct jp p = {hdr, n, 0, src, err, &st->arena};
    size_t valid = utf8_valid_prefix((const unsigned char *)hdr, n);
    if (valid < n) return jp_fail(&p, valid, "invalid UTF-8 in the header");
    jp_ws(&p);
    if (p.i != 0 || n == 0 || hdr[0] != '{')
        return jp_fail(&p, 0, "the header must be a JSON object starting with '{'");
    enum oc_status s = jp_expect(&p, '{');
    int cap = 0, nt = 0;
    struct st_entry *ents = NULL;
    int have_meta = 0;
    if (!s && !jp_accept(&p, '}')) {
        do {
            jp_ws(&p);
            size_t at = p.i;
            const char *k;
            if ((s = jp_string(&p, &k)) || (s = jp_expect(&p, ':'))) break;
            if (!strcmp(k, "__metadata__")) {
                if (have_meta) {
                    s = jp_fail(&p, at, "duplicate __metadata__");
                    break;
                }
                have_meta = 1;
                if ((s = parse_metadata(&p, &st->meta, &st->nmeta))) break;
                continue;
            }
            if (!*k) {
                s = jp_fail(&p, at, "empty tensor name");
                break;
            }
            if (nt == cap) {
                cap = cap ? 2 * cap : 16;
                struct st_entry *q = realloc(ents, (size_t)cap * sizeof *q);
                if (!q) {
                    s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", src);
                    break;
                }
                ents = q;
            }
            struct st_entry *e = &ents[nt++];
            memset(e, 0, sizeof *e);
            e->t.name = k;
            e->at = at;
            if ((s = parse_tensor(&p, e))) break;
        } while (jp_accept(&p, ','));
        if (!s) s = jp_expect(&p, '}');
    }
    if (!s) {
        jp_ws(&p);
        if (p.i < n) s = jp_fail(&p, p.i, "unexpected bytes after the header object");
    }
    /* Per tensor: sizes and ranges. */
    char m[256];
    for (int i = 0; !s && i < nt; i++) {
        struct st_entry *e = &ents[i];
        int64_t ne = numel_of(e->t.rank, e->t.shape);
        size_t isz = oc_st_dtype_size(e->t.dtype);
        if (ne < 0 || (uint64_t)ne > UINT64_MAX / 16) {
            snprintf(m, sizeof m, "tensor \"%.60s\": shape too large", e->t.name);
            s = jp_fail(&p, e->at, m);
        } else if (e->end < e->begin) {
            snprintf(m, sizeof m, "tensor \"%.60s\": data_offsets [%llu, %llu] end before begin",
                     e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end);
            s = jp_fail(&p, e->at, m);
        } else if (e->end > data_size) {
            snprintf(m, sizeof m,
                     "tensor \"%.60s\": data_offsets [%llu, %llu] beyond the %zu-byte data buffer",
                     e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end,
                     data_size);
            s = jp_fail(&p, e->at, m);
        } else if (e->end - e->begin != (uint64_t)ne * isz) {
            snprintf(m, sizeof m,
                     "tensor \"%.60s\": data_offsets span %llu bytes, but %lld %s elements "
                     "need %llu",
                     e->t.name, (unsigned long long)(e->end - e->begin), (long long)ne,
                     oc_st_dtype_name(e->t.dtype), (unsigned long long)((uint64_t)ne * isz));
            s = jp_fail(&p, e->at, m);
        }
        e->t.nbytes = (size_t)(e->end - e->begin);
    }
    /* Unique names, then no overlapping ranges. */
    if (!s && nt > 1) {
        qsort(ents, (size_t)nt, sizeof *ents, cmp_entry_name);
        for (int i = 1; !s && i < nt; i++)
            if (!strcmp(ents[i].t.name, ents[i - 1].t.name)) {
                snprintf(m, sizeof m, "duplicate tensor name \"%.60s\"", ents[i].t.name);
                s = jp_fail(&p, ents[i].at > ents[i - 1].at ? ents[i].at : ents[i - 1].at, m);
            }
        struct st_entry **byoff = s ? NULL : malloc((size_t)nt * sizeof *byoff);
        if (!s && !byoff) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", src);
        if (!s) {
            for (int i = 0; i < nt; i++) byoff[i] = &ents[i];
            qsort(byoff, (size_t)nt, sizeof *byoff, cmp_entry_begin);
            /* Empty tensors occupy nothing and cannot overlap. */
            const struct st_entry *last = NULL;
            for (int i = 0; !s && i < nt; i++) {
                const struct st_entry *e = byoff[i];
                if (e->end == e->begin) continue;
                if (last && e->begin < last->end) {
                    snprintf(m, sizeof m,
                             "tensors \"%.60s\" [%llu, %llu] and \"%.60s\" [%llu, %llu] overlap",
                             last->t.name, (unsigned long long)last->begin,
                             (unsigned long long)last->end, e->t.name,
                             (unsigned long long)e->begin, (unsigned long long)e->end);
                    s = jp_fail(&p, e->at > last->at ? e->at : last->at, m);
                }
                last = e;
            }
        }
        free(byoff);
    }
    if (!s && nt) {
        st->tensors = oc_arena_alloc(&st->arena, (size_t)nt * sizeof *st->tensors);
        if (!st->tensors) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", src);
        for (int i = 0; !s && i < nt; i++) {
            st->tensors[i] = ents[i].t;
            /* data is set by the caller once the buffer exists: keep begin here. */
            st->tensors[i].data = (const void *)(uintptr_t)ents[i].begin;
        }
        st->ntensors = s ? 0 : nt;
    }
    if (!s && st->nmeta > 1) {
        qsort(st->meta, (size_t)st->nmeta, sizeof *st->meta, cmp_kv);
    }
    free(ents);
    return s;
}

static void st_reset(struct oc_safetensors *st)
{
    memset(st, 0, sizeof *st);
}

void oc_st_free(struct oc_safetensors *st)
{
    if (!st) return;
    free(st->data);
    oc_arena_free(&st->arena);
    st_reset(st);
}

/* Checks the 8-byte length against the total size; returns N. */
static enum oc_status check_length(const unsigned char *len8, uint64_t total, const char *src,
                                   uint64_t *hn, struct oc_err *err)
{
    if (total < 8)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: %llu bytes, too short for the 8-byte header length", src,
                          (unsigned long long)total);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n == 0) return oc_err_set(err, OC_ERR_PARSE, "%s: file offset 0: header length is 0", src);
    if (n > ST_MAX_HEADER)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: file offset 0: header length %llu is above the format's limit of "
                          "%llu bytes",
                          src, (unsigned long long)n, ST_MAX_HEADER);
    if (n > total - 8)
        return oc_err_set(err, OC_ERR_PARSE,
                          "%s: file offset 0: header length %llu runs past the end of the "
                          "%llu-byte file",
                          src, (unsigned long long)n, (unsigned long long)total);
    *hn = n;
    return OC_OK;
}

/* Points every tensor's data into st->data (parse_header left begin there). */
static void bind_data(struct oc_safetensors *st)
{
    for (int i = 0; i < st->ntensors; i++) {
        uintptr_t begin = (uintptr_t)st->tensors[i].data;
        st->tensors[i].data = (const unsigned char *)st->data + begin;
    }
}

enum oc_status oc_st_parse(const void *bytes, size_t n, const char *source,
                           struct oc_safetensors *st, struct oc_err *err)
{
    st_reset(st);
    const char *src = source ? source : "<memory>";
    uint64_t hn = 0;
    enum oc_status s = check_length(bytes, n, src, &hn, err);
    if (s) return s;
    size_t dsz = n - 8 - (size_t)hn;
    s = parse_header((const char *)bytes + 8, (size_t)hn, dsz, src, st, err);
    if (!s) {
        st->data = malloc(dsz ? dsz : 1);
        if (!st->data) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", src);
        else memcpy(st->data, (const char *)bytes + 8 + hn, dsz);
        st->data_size = dsz;
    }
    if (s) {
        oc_st_free(st);
        return s;
    }
    bind_data(st);
    return OC_OK;
}

enum oc_status oc_st_read(const char *path, struct oc_safetensors *st, struct oc_err *err)
{
    st_reset(st);
    FILE *f = fopen(path, "rb");
    if (!f) return oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return oc_err_set(err, OC_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t total = (uint64_t)sb.st_size, hn = 0;
    unsigned char len8[8] = {0};
    enum oc_status s = OC_OK;
    if (total >= 8 && fread(len8, 1, 8, f) != 8)
        s = oc_err_set(err, OC_ERR_IO, "%s: read error at file offset 0", path);
    if (!s) s = check_length(len8, total, path, &hn, err);
    char *hdr = NULL;
    if (!s) {
        hdr = malloc((size_t)hn);
        if (!hdr) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
        else if (fread(hdr, 1, (size_t)hn, f) != hn)
            s = oc_err_set(err, OC_ERR_IO, "%s: read error in the header (file offset 8)", path);
    }
    size_t dsz = (size_t)(total - 8 - hn);
    if (!s) s = parse_header(hdr, (size_t)hn, dsz, path, st, err);
    free(hdr);
    if (!s) {
        st->data = malloc(dsz ? dsz : 1);
        st->data_size = dsz;
        if (!st->data) s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for %zu bytes", path, dsz);
        else if (dsz && fread(st->data, 1, dsz, f) != dsz)
            s = oc_err_set(err, OC_ERR_IO, "%s: read error in the data (file offset %llu)", path,
                           (unsigned long long)(8 + hn));
    }
    fclose(f);
    if (s) {
        oc_st_free(st);
        return s;
    }
    bind_data(st);
    return OC_OK;
}

const struct oc_st_tensor *oc_st_find(const struct oc_safetensors *st, const char *name)
{
    int lo = 0, hi = st->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (!c) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *oc_st_meta(const struct oc_safetensors *st, const char *key)
{
    for (int i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
    return NULL;
}

/* ---------------------------------------------------------------- writer */

struct sb {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_json_string(struct sb *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c == '\n' || c == '\t' || c == '\r') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_idx_name(const void *a, const void *b, const struct oc_st_tensor *t)
{
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

/* qsort has no context argument in C11: sort index arrays by insertion
 * (checkpoints hold hundreds of tensors, not millions). */
static void sort_idx(int *idx, int n, const struct oc_st_tensor *t, int by_size)
{
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i - 1;
        while (j >= 0) {
            int c = 0;
            if (by_size) {
                size_t sa = oc_st_dtype_size(t[idx[j]].dtype), sv = oc_st_dtype_size(t[v].dtype);
                c = sa < sv ? 1 : sa > sv ? -1 : 0; /* larger item size first */
            }
            if (!c) c = cmp_idx_name(&idx[j], &v, t);
            if (c <= 0) break;
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

static enum oc_status check_inputs(const char *path, const struct oc_st_tensor *t, int n,
                                   const struct oc_st_kv *meta, int nmeta, struct oc_err *err)
{
    if (n < 0 || nmeta < 0 || (n && !t) || (nmeta && !meta))
        return oc_err_set(err, OC_ERR_INVALID, "%s: bad tensor or metadata list", path);
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name;
        if (!nm || !*nm)
            return oc_err_set(err, OC_ERR_INVALID, "%s: tensor %d has no name", path, i);
        if (!strcmp(nm, "__metadata__"))
            return oc_err_set(err, OC_ERR_INVALID, "%s: \"__metadata__\" is reserved", path);
        if (utf8_valid_prefix((const unsigned char *)nm, strlen(nm)) != strlen(nm))
            return oc_err_set(err, OC_ERR_INVALID, "%s: tensor %d: name is not valid UTF-8", path, i);
        if ((unsigned)t[i].dtype >= OC_ST_DTYPE_COUNT)
            return oc_err_set(err, OC_ERR_DTYPE, "%s: tensor \"%s\": bad dtype %d", path, nm,
                              (int)t[i].dtype);
        if (t[i].rank < 0 || t[i].rank > OC_MAX_RANK)
            return oc_err_set(err, OC_ERR_SHAPE, "%s: tensor \"%s\": rank %d (at most %d)", path,
                              nm, t[i].rank, OC_MAX_RANK);
        int64_t ne = numel_of(t[i].rank, t[i].shape);
        if (ne < 0)
            return oc_err_set(err, OC_ERR_SHAPE, "%s: tensor \"%s\": negative or huge shape", path,
                              nm);
        size_t want = (size_t)ne * oc_st_dtype_size(t[i].dtype);
        if (t[i].nbytes != want)
            return oc_err_set(err, OC_ERR_SHAPE,
                              "%s: tensor \"%s\": nbytes %zu, but %lld %s elements take %zu", path,
                              nm, t[i].nbytes, (long long)ne, oc_st_dtype_name(t[i].dtype), want);
        if (want && !t[i].data)
            return oc_err_set(err, OC_ERR_INVALID, "%s: tensor \"%s\": no data", path, nm);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[j].name, nm))
                return oc_err_set(err, OC_ERR_INVALID, "%s: duplicate tensor name \"%s\"", path, nm);
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value)
            return oc_err_set(err, OC_ERR_INVALID, "%s: metadata entry %d is incomplete", path, i);
        size_t kl = strlen(meta[i].key), vl = strlen(meta[i].value);
        if (utf8_valid_prefix((const unsigned char *)meta[i].key, kl) != kl ||
            utf8_valid_prefix((const unsigned char *)meta[i].value, vl) != vl)
            return oc_err_set(err, OC_ERR_INVALID, "%s: metadata \"%s\" is not valid UTF-8", path,
                              meta[i].key);
        for (int j = 0; j < i; j++)
            if (!strcmp(meta[j].key, meta[i].key))
                return oc_err_set(err, OC_ERR_INVALID, "%s: duplicate metadata key \"%s\"", path,
                                  meta[i].key);
    }
    return OC_OK;
}

/* Writes n bytes, retrying short writes. piece > 0 (OC_CKPT_SLOW_WRITE)
 * writes at most piece bytes per call and pauses after each, so that a
 * crash-safety test's SIGKILL, sent at a random moment, lands inside the
 * write rather than almost always between two files. */
static int write_all(int fd, const void *p, size_t n, size_t piece)
{
    const char *c = p;
    size_t most = piece ? piece : (size_t)1 << 30;
    while (n) {
        ssize_t w = write(fd, c, n > most ? most : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO; /* no progress on a regular file: never loop forever */
            return -1;
        }
        c += w;
        n -= (size_t)w;
        if (piece) nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    return 0;
}

/* OC_CKPT_SLOW_WRITE=N: the piece size above (0: off, the default). */
static size_t slow_write_piece(void)
{
    const char *s = getenv("OC_CKPT_SLOW_WRITE");
    long v = s && *s ? atol(s) : 0;
    return v > 0 ? (size_t)v : 0;
}

/* The directory part of path ("." when none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        char *d = malloc(2);
        if (d) strcpy(d, ".");
        return d;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

enum oc_status oc_st_write(const char *path, const struct oc_st_tensor *tensors, int n,
                           const struct oc_st_kv *meta, int nmeta, struct oc_err *err)
{
    if (!path || !*path) return oc_err_set(err, OC_ERR_INVALID, "safetensors: no output path");
    enum oc_status s = check_inputs(path, tensors, n, meta, nmeta, err);
    if (s) return s;

    int *by_name = malloc((size_t)(n ? n : 1) * sizeof *by_name);
    int *by_layout = malloc((size_t)(n ? n : 1) * sizeof *by_layout);
    int *midx = malloc((size_t)(nmeta ? nmeta : 1) * sizeof *midx);
    uint64_t *begin = malloc((size_t)(n ? n : 1) * sizeof *begin);
    struct sb h = {0};
    if (!by_name || !by_layout || !midx || !begin) {
        s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) by_name[i] = by_layout[i] = i;
    sort_idx(by_name, n, tensors, 0);
    sort_idx(by_layout, n, tensors, 1);
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        begin[by_layout[k]] = off;
        off += tensors[by_layout[k]].nbytes;
    }
    /* Metadata keys sorted (insertion sort on indices). */
    for (int i = 0; i < nmeta; i++) {
        int j = i - 1;
        while (j >= 0 && strcmp(meta[midx[j]].key, meta[i].key) > 0) {
            midx[j + 1] = midx[j];
            j--;
        }
        midx[j + 1] = i;
    }

    sb_str(&h, "{");
    int first = 1;
    if (nmeta) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_string(&h, meta[midx[i]].key);
            sb_str(&h, ":");
            sb_json_string(&h, meta[midx[i]].value);
        }
        sb_str(&h, "}");
        first = 0;
    }
    for (int k = 0; k < n; k++) {
        const struct oc_st_tensor *t = &tensors[by_name[k]];
        char num[64];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_string(&h, t->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, oc_st_dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->rank; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            sb_str(&h, num);
        }
        uint64_t b0 = begin[by_name[k]];
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)b0,
                 (unsigned long long)(b0 + t->nbytes));
        sb_str(&h, num);
    }
    sb_str(&h, "}");
    while ((8 + h.n) % 8) sb_str(&h, " ");
    if (h.oom) {
        s = oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory for the header", path);
        goto done;
    }

    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        s = oc_err_set(err, OC_ERR_INVALID, "%s: path too long", path);
        goto done;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        s = oc_err_set(err, OC_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp,
                       strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    size_t piece = slow_write_piece();
    int bad = write_all(fd, len8, 8, piece) || write_all(fd, h.p, h.n, piece);
    for (int k = 0; !bad && k < n; k++) {
        const struct oc_st_tensor *t = &tensors[by_layout[k]];
        if (t->nbytes) bad = write_all(fd, t->data, t->nbytes, piece);
    }
    const char *what = "write";
    if (!bad && fsync(fd)) bad = 1, what = "fsync";
    int e = errno;
    if (close(fd) && !bad) bad = 1, what = "close", e = errno;
    if (!bad && rename(tmp, path)) bad = 1, what = "rename", e = errno;
    if (bad) {
        unlink(tmp);
        s = oc_err_set(err, OC_ERR_IO, "%s: %s failed: %s (the previous file, if any, is kept)",
                       path, what, strerror(e));
        goto done;
    }
    /* Make the rename itself durable. */
    char *dir = dir_of(path);
    if (dir) {
        int dfd = open(dir, O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
done:
    free(by_name);
    free(by_layout);
    free(midx);
    free(begin);
    free(h.p);
    return s;
}

/* ---------------------------------------------------------------- oc_buf bridges */

struct oc_st_tensor oc_st_from_buf(const char *name, const struct oc_buf *b)
{
    struct oc_st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    switch (b->dtype) {
    case OC_F32: t.dtype = OC_ST_F32; break;
    case OC_F64: t.dtype = OC_ST_F64; break;
    case OC_I32: t.dtype = OC_ST_I32; break;
    case OC_U8: t.dtype = OC_ST_U8; break;
    default: OC_ASSERT(0);
    }
    t.rank = b->shape.rank;
    for (int i = 0; i < t.rank; i++) t.shape[i] = b->shape.dim[i];
    t.data = b->data;
    t.nbytes = (size_t)oc_shape_numel(&b->shape) * oc_dtype_size(b->dtype);
    return t;
}

enum oc_status oc_st_to_buf(const struct oc_st_tensor *t, struct oc_buf *out, struct oc_err *err)
{
    enum oc_dtype dt;
    switch (t->dtype) {
    case OC_ST_F32: dt = OC_F32; break;
    case OC_ST_F64: dt = OC_F64; break;
    case OC_ST_I32: dt = OC_I32; break;
    case OC_ST_U8: dt = OC_U8; break;
    default:
        return oc_err_set(err, OC_ERR_DTYPE, "tensor \"%s\": dtype %s has no host tensor type",
                          t->name, oc_st_dtype_name(t->dtype));
    }
    struct oc_shape sh = oc_shape_make(t->rank, t->shape);
    struct oc_buf b;
    if (oc_buf_alloc(&b, dt, &sh) != OC_OK)
        return oc_err_set(err, OC_ERR_NOMEM, "tensor \"%s\": out of memory", t->name);
    if (t->nbytes) memcpy(b.data, t->data, t->nbytes);
    *out = b;
    return OC_OK;
}
