/* parse.c - the IR's text form, read back into a graph (the inverse of
 * print.c). Each node line is built with oc_graph_add, so the parser applies
 * exactly the construction-time type rules, and the declared type after ':'
 * is then checked against the inferred one; the whole graph is verified at
 * the end. Every error is "<source>:LINE:COL: message" pointing at the
 * offending token. Errors unwind with longjmp to oc_graph_parse, which frees
 * everything the parser holds. */
#include "text-impl.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Dimensions, element counts and per-dimension attributes stay below 2^53,
 * so no later shape arithmetic (strides, pads, conv sizes) can overflow. */
#define MAX_EXTENT ((int64_t)1 << 53)
/* conv2d stride/padding: small enough that 2*padding cannot overflow an int */
#define MAX_CONV (1 << 20)
#define MAX_OPERANDS 64

enum tk { T_EOF, T_NL, T_WORD, T_REF, T_STR, T_PUNCT };

/* A token: s/n is its raw text (a T_REF includes the '%'; a T_STR the
 * quotes; its decoded value is in parser.str). */
struct tok {
    enum tk k;
    const char *s;
    size_t n;
    int line, col;
};

struct sym {
    const char *s; /* name after '%', pointing into the source text */
    size_t n;
    int id, line;
};

struct parser {
    const char *src;   /* source name for messages */
    const char *p;     /* lexer position */
    const char *line_start;
    int line;
    struct tok t;      /* the current token */
    char *str;         /* decoded value of the current T_STR */
    size_t strcap;
    struct oc_graph *g;
    struct oc_err *err;
    jmp_buf fail;
    struct sym *syms;  /* open addressing, symcap a power of two */
    size_t nsyms, symcap;
    int *nline, *ncol; /* where each node was defined (for verifier errors) */
    size_t ncap;
    double *vals;      /* const data list being parsed */
    size_t nvals, valcap;
    char *label;       /* label of the node being parsed */
};

/* ---------------------------------------------------------------- errors */

static _Noreturn void fail_at(struct parser *P, enum oc_status code, int line, int col,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static _Noreturn void fail_at(struct parser *P, enum oc_status code, int line, int col,
                              const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oc_err_set(P->err, code, "%s:%d:%d: %s", P->src, line, col, msg);
    longjmp(P->fail, 1);
}

#define FAIL_TOK(P, tk, ...) fail_at((P), OC_ERR_PARSE, (tk)->line, (tk)->col, __VA_ARGS__)

static void *xrealloc(struct parser *P, void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) fail_at(P, OC_ERR_NOMEM, P->t.line, P->t.col, "out of memory");
    return q;
}

/* Quoted, escaped, truncated text of a token, for messages. */
static const char *show(const struct tok *t, char *buf, size_t cap)
{
    if (t->k == T_EOF) return "end of input";
    if (t->k == T_NL) return "end of line";
    size_t k = 0, lim = 40;
    buf[k++] = '\'';
    for (size_t i = 0; i < t->n && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (i == lim) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        if (c < 0x20 || c >= 0x7f) k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        else buf[k++] = (char)c;
    }
    buf[k++] = '\'';
    buf[k] = 0;
    return buf;
}
#define SHOW(t) show((t), (char[64]){0}, 64)

/* ---------------------------------------------------------------- lexer */

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static int is_ref_char(int c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '.'; }
static int is_word_char(int c) { return is_ref_char(c) || c == '+' || c == '-'; }
static int hexval(int c)
{
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int col_of(const struct parser *P, const char *p)
{
    size_t c = (size_t)(p - P->line_start) + 1;
    return c > INT_MAX ? INT_MAX : (int)c;
}

static void str_push(struct parser *P, size_t *len, char c)
{
    if (*len + 1 >= P->strcap) {
        P->strcap = P->strcap ? P->strcap * 2 : 64;
        P->str = xrealloc(P, P->str, P->strcap);
    }
    P->str[(*len)++] = c;
}

/* Decodes the string starting at the quote at p; returns the end. */
static const char *lex_string(struct parser *P, const char *p)
{
    size_t len = 0;
    struct tok *t = &P->t;
    for (p++;;) {
        unsigned char c = (unsigned char)*p;
        if (c == 0 || c == '\n') FAIL_TOK(P, t, "unterminated string");
        if (c == '"') {
            p++;
            break;
        }
        if (c != '\\') {
            str_push(P, &len, (char)c);
            p++;
            continue;
        }
        int ecol = col_of(P, p);
        switch (p[1]) {
        case 'n': str_push(P, &len, '\n'); break;
        case 't': str_push(P, &len, '\t'); break;
        case 'r': str_push(P, &len, '\r'); break;
        case '"': str_push(P, &len, '"'); break;
        case '\\': str_push(P, &len, '\\'); break;
        case 'x': {
            int h = hexval((unsigned char)p[2]), l = h < 0 ? -1 : hexval((unsigned char)p[3]);
            if (h < 0 || l < 0)
                fail_at(P, OC_ERR_PARSE, t->line, ecol, "\\x needs two hex digits");
            if (h == 0 && l == 0)
                fail_at(P, OC_ERR_PARSE, t->line, ecol, "\\x00 is not allowed in a string");
            str_push(P, &len, (char)(h * 16 + l));
            p += 2;
            break;
        }
        default:
            if (p[1] == 0 || p[1] == '\n') FAIL_TOK(P, t, "unterminated string");
            if ((unsigned char)p[1] < 0x20 || (unsigned char)p[1] >= 0x7f)
                fail_at(P, OC_ERR_PARSE, t->line, ecol, "unknown escape '\\\\x%02x'",
                        (unsigned char)p[1]);
            fail_at(P, OC_ERR_PARSE, t->line, ecol, "unknown escape '\\%c'", p[1]);
        }
        p += 2;
    }
    str_push(P, &len, 0);
    return p;
}

/* Reads the next token into P->t. */
static void adv(struct parser *P)
{
    const char *p = P->p;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') p++;
        if (*p != '#') break;
        while (*p && *p != '\n') p++;
    }
    struct tok *t = &P->t;
    t->s = p;
    t->line = P->line;
    t->col = col_of(P, p);
    unsigned char c = (unsigned char)*p;
    if (c == 0) {
        t->k = T_EOF;
    } else if (c == '\n') {
        t->k = T_NL;
        p++;
        if (P->line < INT_MAX) P->line++;
        P->line_start = p;
    } else if (is_word_char(c)) {
        t->k = T_WORD;
        while (is_word_char((unsigned char)*p)) p++;
    } else if (c == '%') {
        t->k = T_REF;
        p++;
        if (!is_ref_char((unsigned char)*p))
            FAIL_TOK(P, t, "expected a name after '%%' ([A-Za-z0-9_.]+)");
        while (is_ref_char((unsigned char)*p)) p++;
    } else if (c == '"') {
        t->k = T_STR;
        p = lex_string(P, p);
    } else if (strchr("=,:[]", c)) {
        t->k = T_PUNCT;
        p++;
    } else {
        if (c < 0x20 || c >= 0x7f) FAIL_TOK(P, t, "unexpected byte 0x%02x", c);
        FAIL_TOK(P, t, "unexpected character '%c'", c);
    }
    t->n = (size_t)(p - t->s);
    P->p = p;
}

static int at_punct(const struct parser *P, char c)
{
    return P->t.k == T_PUNCT && P->t.s[0] == c;
}

static int at_word(const struct parser *P, const char *w)
{
    return P->t.k == T_WORD && P->t.n == strlen(w) && !memcmp(P->t.s, w, P->t.n);
}

static void expect_punct(struct parser *P, char c, const char *context)
{
    if (!at_punct(P, c)) FAIL_TOK(P, &P->t, "expected '%c' %s, got %s", c, context, SHOW(&P->t));
    adv(P);
}

static void end_statement(struct parser *P, const char *after)
{
    if (P->t.k == T_NL)
        adv(P);
    else if (P->t.k != T_EOF)
        FAIL_TOK(P, &P->t, "unexpected %s after %s", SHOW(&P->t), after);
}

/* ---------------------------------------------------------------- numbers */

static int64_t parse_int(struct parser *P, int64_t lo, int64_t hi, const char *what)
{
    struct tok t = P->t;
    if (t.k != T_WORD) FAIL_TOK(P, &t, "expected %s (an integer), got %s", what, SHOW(&t));
    size_t i = (t.s[0] == '-' || t.s[0] == '+') ? 1 : 0;
    if (i == t.n) FAIL_TOK(P, &t, "bad integer %s for %s", SHOW(&t), what);
    for (size_t j = i; j < t.n; j++)
        if (!is_digit((unsigned char)t.s[j]))
            FAIL_TOK(P, &t, "bad integer %s for %s", SHOW(&t), what);
    char buf[32];
    long long v = 0;
    if (t.n >= sizeof buf) {
        errno = ERANGE;
    } else {
        memcpy(buf, t.s, t.n);
        buf[t.n] = 0;
        errno = 0;
        v = strtoll(buf, NULL, 10);
    }
    if (errno == ERANGE || v < lo || v > hi)
        FAIL_TOK(P, &t, "%s %s out of range [%" PRId64 ", %" PRId64 "]", what, SHOW(&t), lo, hi);
    adv(P);
    return (int64_t)v;
}

static uint64_t parse_u64(struct parser *P, const char *what)
{
    struct tok t = P->t;
    if (t.k != T_WORD) FAIL_TOK(P, &t, "expected %s (an integer), got %s", what, SHOW(&t));
    for (size_t j = 0; j < t.n; j++)
        if (!is_digit((unsigned char)t.s[j]))
            FAIL_TOK(P, &t, "bad unsigned integer %s for %s", SHOW(&t), what);
    char buf[32];
    unsigned long long v = 0;
    if (t.n >= sizeof buf) {
        errno = ERANGE;
    } else {
        memcpy(buf, t.s, t.n);
        buf[t.n] = 0;
        errno = 0;
        v = strtoull(buf, NULL, 10);
    }
    if (errno == ERANGE) FAIL_TOK(P, &t, "%s %s out of range (64 bits)", what, SHOW(&t));
    adv(P);
    return (uint64_t)v;
}

/* Decimal numbers, inf and nan (optionally signed); no hex, no "infinity". */
static double parse_float(struct parser *P, const char *what)
{
    struct tok t = P->t;
    if (t.k != T_WORD) FAIL_TOK(P, &t, "expected %s (a number), got %s", what, SHOW(&t));
    size_t i = (t.s[0] == '-' || t.s[0] == '+') ? 1 : 0;
    int neg = t.s[0] == '-';
    double v;
    if (t.n - i == 3 && !memcmp(t.s + i, "inf", 3)) {
        v = neg ? -INFINITY : INFINITY;
    } else if (t.n - i == 3 && !memcmp(t.s + i, "nan", 3)) {
        v = neg ? -NAN : NAN;
        if (neg != !!signbit(v)) v = -v; /* -NAN's sign is not promised by C */
    } else {
        int digits = 0;
        for (size_t j = 0; j < t.n; j++) {
            int c = (unsigned char)t.s[j];
            if (is_digit(c)) digits = 1;
            else if (!strchr(".eE+-", c) || c == 0)
                FAIL_TOK(P, &t, "bad number %s for %s", SHOW(&t), what);
        }
        if (!digits) FAIL_TOK(P, &t, "bad number %s for %s", SHOW(&t), what);
        char buf[512];
        if (t.n >= sizeof buf) FAIL_TOK(P, &t, "number %s for %s is too long", SHOW(&t), what);
        memcpy(buf, t.s, t.n);
        buf[t.n] = 0;
        char *end;
        errno = 0;
        v = strtod(buf, &end);
        if (end != buf + t.n) FAIL_TOK(P, &t, "bad number %s for %s", SHOW(&t), what);
        /* ERANGE on underflow still yields the nearest subnormal/zero: fine */
        if (errno == ERANGE && isinf(v))
            FAIL_TOK(P, &t, "number %s for %s out of range", SHOW(&t), what);
    }
    adv(P);
    return v;
}

/* [v, v, ...] of at most max integers in [lo, hi]; returns the count. */
static int parse_int_list(struct parser *P, int64_t *out, int max, int64_t lo, int64_t hi,
                          const char *what)
{
    char ctx[48];
    snprintf(ctx, sizeof ctx, "to start the list of %s", what);
    expect_punct(P, '[', ctx);
    int n = 0;
    if (!at_punct(P, ']')) {
        for (;;) {
            if (n == max)
                FAIL_TOK(P, &P->t, "too many values in %s (at most %d)", what, max);
            out[n++] = parse_int(P, lo, hi, what);
            if (!at_punct(P, ',')) break;
            adv(P);
        }
    }
    if (!at_punct(P, ']'))
        FAIL_TOK(P, &P->t, "expected ',' or ']' in %s, got %s", what, SHOW(&P->t));
    adv(P);
    return n;
}

/* ---------------------------------------------------------------- symbols */

static uint64_t span_hash(const char *s, size_t n) { return oc_hash64(s, n, 0); }

static struct sym *sym_slot(struct parser *P, const char *s, size_t n)
{
    if (!P->symcap) return NULL;
    size_t mask = P->symcap - 1;
    for (size_t i = (size_t)span_hash(s, n) & mask;; i = (i + 1) & mask) {
        struct sym *e = &P->syms[i];
        if (!e->s || (e->n == n && !memcmp(e->s, s, n))) return e;
    }
}

static void sym_add(struct parser *P, const char *s, size_t n, int id, int line)
{
    if (2 * (P->nsyms + 1) > P->symcap) {
        size_t cap = P->symcap ? P->symcap * 2 : 256;
        struct sym *old = P->syms;
        size_t oldcap = P->symcap;
        P->syms = calloc(cap, sizeof *P->syms);
        if (!P->syms) {
            P->syms = old;
            fail_at(P, OC_ERR_NOMEM, P->t.line, P->t.col, "out of memory");
        }
        P->symcap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].s) *sym_slot(P, old[i].s, old[i].n) = old[i];
        free(old);
    }
    struct sym *e = sym_slot(P, s, n);
    *e = (struct sym){s, n, id, line};
    P->nsyms++;
}

/* The node a %name refers to; fails if it is not defined yet. */
static int ref_node(struct parser *P)
{
    struct tok t = P->t;
    if (t.k != T_REF) FAIL_TOK(P, &t, "expected an operand %%name, got %s", SHOW(&t));
    struct sym *e = sym_slot(P, t.s + 1, t.n - 1);
    if (!e || !e->s) FAIL_TOK(P, &t, "undefined %s", SHOW(&t));
    adv(P);
    return e->id;
}

/* ---------------------------------------------------------------- nodes */

/* What a node line said, before building. */
struct pnode {
    unsigned seen;                      /* keys given */
    struct tok keytok[OC_TK_COUNT];     /* where, for messages */
    int64_t list[OC_TK_COUNT][OC_MAX_RANK];
    int nlist[OC_TK_COUNT];
    double num[OC_TK_COUNT];
    int64_t ival[OC_TK_COUNT];
    uint64_t seed;
    enum oc_init init;
};

static int key_is_list(enum oc_text_key k)
{
    return k == OC_TK_PERM || k == OC_TK_START || k == OC_TK_STOP || k == OC_TK_STEP ||
           k == OC_TK_LO || k == OC_TK_HI || k == OC_TK_AXES || k == OC_TK_STRIDE ||
           k == OC_TK_PADDING;
}

static void parse_attr(struct parser *P, enum oc_op op, struct pnode *pn)
{
    struct tok kt = P->t;
    int k = -1;
    for (int i = 0; i < OC_TK_COUNT; i++)
        if (kt.n == strlen(oc_text_key_names[i]) && !memcmp(kt.s, oc_text_key_names[i], kt.n))
            k = i;
    if (k < 0) FAIL_TOK(P, &kt, "unknown attribute %s", SHOW(&kt));
    if (k != OC_TK_LABEL && !(oc_text_op_keys(op) & (1u << k)))
        FAIL_TOK(P, &kt, "attribute '%s' is not valid for %s", oc_text_key_names[k],
                 oc_op_name(op));
    if (pn->seen & (1u << k))
        FAIL_TOK(P, &kt, "duplicate attribute '%s' (first at column %d)", oc_text_key_names[k],
                 pn->keytok[k].col);
    pn->seen |= 1u << k;
    pn->keytok[k] = kt;
    adv(P);
    char ctx[40];
    snprintf(ctx, sizeof ctx, "after '%s'", oc_text_key_names[k]);
    expect_punct(P, '=', ctx);
    const char *name = oc_text_key_names[k];
    if (key_is_list((enum oc_text_key)k)) {
        int64_t lo = -MAX_EXTENT, hi = MAX_EXTENT;
        if (k == OC_TK_PERM) lo = 0, hi = OC_MAX_RANK - 1;
        if (k == OC_TK_AXES) lo = 0, hi = OC_MAX_RANK - 1;
        if (k == OC_TK_STRIDE || k == OC_TK_PADDING) lo = -MAX_CONV, hi = MAX_CONV;
        pn->nlist[k] = parse_int_list(P, pn->list[k], OC_MAX_RANK, lo, hi, name);
        return;
    }
    switch (k) {
    case OC_TK_INIT: {
        struct tok t = P->t;
        char buf[32];
        enum oc_init init;
        if (t.k != T_WORD) FAIL_TOK(P, &t, "expected an initializer name, got %s", SHOW(&t));
        if (t.n >= sizeof buf || (memcpy(buf, t.s, t.n), buf[t.n] = 0, oc_init_parse(buf, &init)))
            FAIL_TOK(P, &t,
                     "unknown initializer %s (zeros, ones, const, normal, uniform, kaiming_normal)",
                     SHOW(&t));
        pn->init = init;
        adv(P);
        break;
    }
    case OC_TK_A:
    case OC_TK_B:
    case OC_TK_VALUE: pn->num[k] = parse_float(P, name); break;
    case OC_TK_SEED: pn->seed = parse_u64(P, name); break;
    case OC_TK_AXIS: pn->ival[k] = parse_int(P, INT_MIN, INT_MAX, name); break;
    case OC_TK_DEPTH: pn->ival[k] = parse_int(P, 1, MAX_EXTENT, name); break;
    case OC_TK_KEEPDIMS:
    case OC_TK_TRANS_A:
    case OC_TK_TRANS_B: pn->ival[k] = parse_int(P, 0, 1, name); break;
    case OC_TK_LABEL: {
        if (P->t.k != T_STR)
            FAIL_TOK(P, &P->t, "expected a quoted label, got %s", SHOW(&P->t));
        free(P->label);
        P->label = strdup(P->str);
        if (!P->label) fail_at(P, OC_ERR_NOMEM, P->t.line, P->t.col, "out of memory");
        adv(P);
        break;
    }
    default: OC_ASSERT(0);
    }
}

/* A per-dimension list: given with exactly `rank` values, or the default. */
static void dim_list(struct parser *P, const struct pnode *pn, enum oc_text_key k, int rank,
                     int64_t *out, int64_t dflt, const int64_t *dflt_dims)
{
    if (pn->seen & (1u << k)) {
        if (pn->nlist[k] != rank)
            FAIL_TOK(P, &pn->keytok[k], "'%s' has %d value(s) but the operand has rank %d",
                     oc_text_key_names[k], pn->nlist[k], rank);
        for (int i = 0; i < rank; i++) out[i] = pn->list[k][i];
    } else {
        for (int i = 0; i < rank; i++) out[i] = dflt_dims ? dflt_dims[i] : dflt;
    }
}

static void require(struct parser *P, const struct pnode *pn, enum oc_text_key k, enum oc_op op,
                    const struct tok *optok)
{
    if (!(pn->seen & (1u << k)))
        FAIL_TOK(P, optok, "%s needs attribute '%s'", oc_op_name(op), oc_text_key_names[k]);
}

/* Parses `dtype[d0,...]` into dt/sh. */
static void parse_type(struct parser *P, enum oc_dtype *dt, struct oc_shape *sh)
{
    struct tok t = P->t;
    char buf[16];
    if (t.k != T_WORD) FAIL_TOK(P, &t, "expected a type such as f32[4,3], got %s", SHOW(&t));
    if (t.n >= sizeof buf || (memcpy(buf, t.s, t.n), buf[t.n] = 0, oc_dtype_parse(buf, dt)))
        FAIL_TOK(P, &t, "unknown dtype %s (f32, f64, i32, u8)", SHOW(&t));
    adv(P);
    if (!at_punct(P, '['))
        FAIL_TOK(P, &P->t, "expected '[' and the dimensions after the dtype, got %s",
                 SHOW(&P->t));
    struct tok open = P->t;
    adv(P);
    memset(sh, 0, sizeof *sh);
    int64_t prod = 1;
    if (!at_punct(P, ']')) {
        for (;;) {
            if (sh->rank == OC_MAX_RANK)
                FAIL_TOK(P, &P->t, "too many dims (rank > %d)", OC_MAX_RANK);
            struct tok dtok = P->t;
            int64_t d = parse_int(P, 0, MAX_EXTENT, "dimension");
            sh->dim[sh->rank++] = d;
            /* zero dims count as 1 so that every stride stays small too */
            if (d > 1 && prod > MAX_EXTENT / d)
                FAIL_TOK(P, &dtok, "shape has too many elements (limit 2^53)");
            if (d > 1) prod *= d;
            if (!at_punct(P, ',')) break;
            adv(P);
        }
    }
    if (!at_punct(P, ']'))
        FAIL_TOK(P, &P->t, "expected ',' or ']' in the shape opened at column %d, got %s",
                 open.col, SHOW(&P->t));
    adv(P);
}

static void note_node_pos(struct parser *P, int id, int line, int col)
{
    if ((size_t)id >= P->ncap) {
        size_t cap = P->ncap ? P->ncap * 2 : 256;
        while (cap <= (size_t)id) cap *= 2;
        P->nline = xrealloc(P, P->nline, cap * sizeof *P->nline);
        P->ncol = xrealloc(P, P->ncol, cap * sizeof *P->ncol);
        P->ncap = cap;
    }
    P->nline[id] = line;
    P->ncol[id] = col;
}

static void parse_node(struct parser *P)
{
    struct tok nametok = P->t;
    const char *name = nametok.s + 1;
    int namelen = nametok.n - 1 > 200 ? 200 : (int)(nametok.n - 1);
    struct sym *prev = sym_slot(P, name, nametok.n - 1);
    if (prev && prev->s)
        FAIL_TOK(P, &nametok, "redefinition of %s (first defined at line %d)", SHOW(&nametok),
                 prev->line);
    adv(P);
    expect_punct(P, '=', "after the node name");

    struct tok optok = P->t;
    enum oc_op op;
    char opbuf[32];
    if (optok.k != T_WORD) FAIL_TOK(P, &optok, "expected an op name, got %s", SHOW(&optok));
    if (optok.n >= sizeof opbuf ||
        (memcpy(opbuf, optok.s, optok.n), opbuf[optok.n] = 0, oc_op_parse(opbuf, &op)))
        FAIL_TOK(P, &optok, "unknown op %s", SHOW(&optok));
    adv(P);

    struct oc_attrs a;
    memset(&a, 0, sizeof a);
    oc_tensor ins[MAX_OPERANDS];
    int nin = 0;
    char *srcname = NULL;
    struct tok valtok = P->t;
    int has_data = 0;
    free(P->label);
    P->label = NULL;

    /* positional part: a name, a value, or the operands */
    if (op == OC_OP_INPUT || op == OC_OP_PARAM || op == OC_OP_STATE) {
        if (P->t.k != T_STR)
            FAIL_TOK(P, &P->t, "expected a quoted name after '%s', got %s", oc_op_name(op),
                     SHOW(&P->t));
        if (!P->str[0]) FAIL_TOK(P, &P->t, "%s name is empty", oc_op_name(op));
        srcname = oc_arena_strdup(&P->g->arena, P->str);
        if (!srcname) fail_at(P, OC_ERR_NOMEM, P->t.line, P->t.col, "out of memory");
        adv(P);
    } else if (op == OC_OP_CONST) {
        if (at_punct(P, '[')) {
            has_data = 1;
            adv(P);
            P->nvals = 0;
            if (!at_punct(P, ']')) {
                for (;;) {
                    if (P->nvals == P->valcap) {
                        P->valcap = P->valcap ? P->valcap * 2 : 64;
                        P->vals = xrealloc(P, P->vals, P->valcap * sizeof *P->vals);
                    }
                    P->vals[P->nvals++] = parse_float(P, "const value");
                    if (!at_punct(P, ',')) break;
                    adv(P);
                }
            }
            if (!at_punct(P, ']'))
                FAIL_TOK(P, &P->t, "expected ',' or ']' in the const values, got %s",
                         SHOW(&P->t));
            adv(P);
        } else {
            a.value = parse_float(P, "const value");
        }
    } else if (oc_op_table[op].arity != 0 && P->t.k == T_REF) {
        for (;;) {
            if (nin == MAX_OPERANDS)
                FAIL_TOK(P, &P->t, "too many operands (at most %d)", MAX_OPERANDS);
            ins[nin++] = (oc_tensor){ref_node(P)};
            if (P->t.k == T_REF)
                FAIL_TOK(P, &P->t, "expected ',' between operands, got %s", SHOW(&P->t));
            if (!at_punct(P, ',')) break;
            adv(P);
        }
    }
    int arity = oc_op_table[op].arity;
    if (arity >= 0 && nin != arity)
        FAIL_TOK(P, &optok, "wrong number of operands: %s takes %d, got %d", oc_op_name(op),
                 arity, nin);
    if (arity < 0 && nin == 0)
        FAIL_TOK(P, &optok, "wrong number of operands: %s takes at least 1, got 0",
                 oc_op_name(op));

    /* key=value attributes, in any order */
    struct pnode pn;
    memset(&pn, 0, sizeof pn);
    while (P->t.k == T_WORD) parse_attr(P, op, &pn);

    if (!at_punct(P, ':')) {
        if (P->t.k == T_REF && nin > 0)
            FAIL_TOK(P, &P->t, "expected ',' between operands, got %s", SHOW(&P->t));
        FAIL_TOK(P, &P->t, "expected ':' and the type, got %s", SHOW(&P->t));
    }
    adv(P);
    struct tok typetok = P->t;
    enum oc_dtype dt;
    struct oc_shape sh;
    parse_type(P, &dt, &sh);
    end_statement(P, "the type");

    /* attributes into struct oc_attrs, with defaults */
    const struct oc_shape *in0 = nin ? &P->g->nodes[ins[0].id]->shape : NULL;
    int rank = in0 ? in0->rank : 0;
    a.name = srcname;
    a.init = pn.init;
    a.init_a = pn.num[OC_TK_A];
    a.init_b = pn.num[OC_TK_B];
    a.pad_value = pn.num[OC_TK_VALUE];
    a.seed = pn.seed;
    a.axis = (int)pn.ival[OC_TK_AXIS];
    a.depth = pn.ival[OC_TK_DEPTH];
    a.keepdims = (int)pn.ival[OC_TK_KEEPDIMS];
    a.trans_a = (int)pn.ival[OC_TK_TRANS_A];
    a.trans_b = (int)pn.ival[OC_TK_TRANS_B];
    switch (op) {
    case OC_OP_PARAM:
    case OC_OP_STATE: require(P, &pn, OC_TK_INIT, op, &optok); break;
    case OC_OP_PERMUTE: {
        int64_t perm[OC_MAX_RANK];
        require(P, &pn, OC_TK_PERM, op, &optok);
        dim_list(P, &pn, OC_TK_PERM, rank, perm, 0, NULL);
        for (int i = 0; i < rank; i++) a.perm[i] = (int)perm[i];
        break;
    }
    case OC_OP_SLICE:
        dim_list(P, &pn, OC_TK_START, rank, a.start, 0, NULL);
        dim_list(P, &pn, OC_TK_STOP, rank, a.stop, 0, in0->dim);
        dim_list(P, &pn, OC_TK_STEP, rank, a.step, 1, NULL);
        break;
    case OC_OP_PAD:
        dim_list(P, &pn, OC_TK_LO, rank, a.lo, 0, NULL);
        dim_list(P, &pn, OC_TK_HI, rank, a.hi, 0, NULL);
        break;
    case OC_OP_CONCAT:
    case OC_OP_ARGMAX:
    case OC_OP_GATHER: require(P, &pn, OC_TK_AXIS, op, &optok); break;
    case OC_OP_ONE_HOT: require(P, &pn, OC_TK_DEPTH, op, &optok); break;
    case OC_OP_SUM:
    case OC_OP_REDUCE_MAX:
        require(P, &pn, OC_TK_AXES, op, &optok);
        for (int i = 0; i < pn.nlist[OC_TK_AXES]; i++) {
            int ax = (int)pn.list[OC_TK_AXES][i];
            if (ax >= rank)
                FAIL_TOK(P, &pn.keytok[OC_TK_AXES], "axis %d out of range for rank %d", ax,
                         rank);
            if (a.axes & (1u << ax))
                FAIL_TOK(P, &pn.keytok[OC_TK_AXES], "axis %d listed twice", ax);
            a.axes |= 1u << ax;
        }
        break;
    case OC_OP_CONV2D:
    case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT:
        a.stride[0] = a.stride[1] = 1;
        for (int k = OC_TK_STRIDE; k <= OC_TK_PADDING; k++) {
            if (!(pn.seen & (1u << k))) continue;
            if (pn.nlist[k] != 2)
                FAIL_TOK(P, &pn.keytok[k], "'%s' needs 2 values [h,w], got %d",
                         oc_text_key_names[k], pn.nlist[k]);
            int *dst = k == OC_TK_STRIDE ? a.stride : a.padding;
            dst[0] = (int)pn.list[k][0];
            dst[1] = (int)pn.list[k][1];
        }
        break;
    default: break;
    }
    if (has_data) {
        int64_t numel = oc_shape_numel(&sh);
        if ((int64_t)P->nvals != numel)
            FAIL_TOK(P, &valtok, "const has %zu value(s) but its type holds %" PRId64, P->nvals,
                     numel);
        static const double no_values[1];
        a.data = P->vals ? P->vals : no_values; /* copied by oc_graph_add */
    }

    /* build: oc_graph_add runs the same inference as every builder */
    oc_tensor r = oc_graph_add(P->g, op, ins, nin, &a, dt, &sh);
    if (r.id < 0) {
        /* the builder's message names the node by id: add the text's name
         * when that differs */
        char idname[16];
        int n_id = snprintf(idname, sizeof idname, "%d", P->g->nnodes);
        enum oc_status code = P->g->err.code ? P->g->err.code : OC_ERR_INVALID;
        if ((size_t)n_id == nametok.n - 1 && !memcmp(idname, name, nametok.n - 1))
            fail_at(P, code, optok.line, optok.col, "%s", P->g->err.msg);
        fail_at(P, code, optok.line, optok.col, "%%%.*s: %s", namelen, name, P->g->err.msg);
    }
    struct oc_node *n = P->g->nodes[r.id];
    if (n->dtype != dt || !oc_shape_eq(&n->shape, &sh)) {
        char d1[128], d2[128];
        oc_shape_str(&sh, d1, sizeof d1);
        oc_shape_str(&n->shape, d2, sizeof d2);
        fail_at(P, n->dtype != dt ? OC_ERR_DTYPE : OC_ERR_SHAPE, typetok.line, typetok.col,
                "node %%%.*s (%s): declared type %s%s but the operands give %s%s", namelen, name,
                oc_op_name(op), oc_dtype_name(dt), d1, oc_dtype_name(n->dtype), d2);
    }
    if (P->label) {
        n->label = oc_arena_strdup(&P->g->arena, P->label);
        if (!n->label) fail_at(P, OC_ERR_NOMEM, optok.line, optok.col, "out of memory");
    }
    note_node_pos(P, r.id, nametok.line, nametok.col);
    sym_add(P, name, nametok.n - 1, r.id, nametok.line);
}

/* A graph or output name: a bare identifier or a quoted string. Returns a
 * malloc'd copy. */
static char *parse_name(struct parser *P, const char *what)
{
    struct tok t = P->t;
    char *s = NULL;
    if (t.k == T_STR) {
        s = strdup(P->str);
    } else if (t.k == T_WORD) {
        s = malloc(t.n + 1);
        if (s) {
            memcpy(s, t.s, t.n);
            s[t.n] = 0;
        }
        if (s && !oc_text_is_ident(s)) {
            free(s);
            FAIL_TOK(P, &t, "bad %s %s (an identifier [A-Za-z_][A-Za-z0-9_.]* or a quoted string)",
                     what, SHOW(&t));
        }
    } else {
        FAIL_TOK(P, &t, "expected %s, got %s", what, SHOW(&t));
    }
    if (!s) fail_at(P, OC_ERR_NOMEM, t.line, t.col, "out of memory");
    return s;
}

static void parse_output(struct parser *P)
{
    adv(P); /* output */
    struct tok nt = P->t;
    char *name = parse_name(P, "output name");
    if (!name[0]) {
        free(name);
        FAIL_TOK(P, &nt, "output name is empty");
    }
    if (oc_graph_find_output(P->g, name) >= 0) {
        free(name);
        FAIL_TOK(P, &nt, "duplicate output %s", SHOW(&nt));
    }
    /* the name is copied into the arena before anything below can fail */
    char *aname = oc_arena_strdup(&P->g->arena, name);
    free(name);
    if (!aname) fail_at(P, OC_ERR_NOMEM, nt.line, nt.col, "out of memory");
    adv(P);
    expect_punct(P, '=', "after the output name");
    int id = ref_node(P);
    end_statement(P, "the output");
    if (oc_graph_set_output(P->g, aname, (oc_tensor){id}))
        fail_at(P, P->g->err.code, nt.line, nt.col, "%s", P->g->err.msg);
}

/* Everything that can longjmp runs below run(); it never returns on error. */
static void run(struct parser *P)
{
    adv(P);
    while (P->t.k == T_NL) adv(P);
    if (!at_word(P, "graph"))
        FAIL_TOK(P, &P->t, "missing 'graph NAME' header (got %s)", SHOW(&P->t));
    adv(P);
    char *gname = parse_name(P, "graph name");
    P->g = oc_graph_new(gname);
    free(gname);
    if (!P->g) fail_at(P, OC_ERR_NOMEM, P->t.line, P->t.col, "out of memory");
    adv(P);
    end_statement(P, "the graph name");
    for (;;) {
        switch (P->t.k) {
        case T_EOF: break;
        case T_NL: adv(P); continue;
        case T_REF: parse_node(P); continue;
        default:
            if (at_word(P, "output")) {
                parse_output(P);
                continue;
            }
            if (at_word(P, "graph")) FAIL_TOK(P, &P->t, "duplicate 'graph' header");
            FAIL_TOK(P, &P->t,
                     "expected a node ('%%name = op ...') or 'output NAME = %%name', got %s",
                     SHOW(&P->t));
        }
        break;
    }
    /* Building node by node already enforced the rules; the verifier is the
     * backstop. Its messages name nodes by id: point at their lines. */
    struct oc_err e = {0};
    if (oc_graph_verify(P->g, &e)) {
        int line = 1, col = 1, id;
        const char *m = strstr(e.msg, "node %");
        if (m && sscanf(m, "node %%%d", &id) == 1 && id >= 0 && id < P->g->nnodes &&
            (size_t)id < P->ncap) {
            line = P->nline[id];
            col = P->ncol[id];
        }
        fail_at(P, e.code, line, col, "%s", e.msg);
    }
}

struct oc_graph *oc_graph_parse(const char *text, const char *source_name, struct oc_err *err)
{
    struct parser *P = calloc(1, sizeof *P);
    if (!P) {
        oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory", source_name ? source_name : "<text>");
        return NULL;
    }
    P->src = source_name ? source_name : "<text>";
    P->p = P->line_start = text ? text : "";
    P->line = 1;
    P->err = err;
    if (setjmp(P->fail)) {
        oc_graph_free(P->g);
        P->g = NULL;
    } else {
        run(P);
    }
    struct oc_graph *g = P->g;
    free(P->str);
    free(P->syms);
    free(P->nline);
    free(P->ncol);
    free(P->vals);
    free(P->label);
    free(P);
    return g;
}

struct oc_graph *oc_graph_load(const char *path, struct oc_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        oc_err_set(err, OC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                oc_err_set(err, OC_ERR_NOMEM, "%s: out of memory reading the file", path);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr) {
        free(buf);
        oc_err_set(err, OC_ERR_IO, "%s: read error: %s", path, strerror(rerr));
        return NULL;
    }
    buf[len] = 0;
    const char *nul = memchr(buf, 0, len);
    if (nul) {
        /* the parser takes a C string; a NUL would silently end the text */
        int line = 1;
        const char *ls = buf;
        for (const char *q = buf; q < nul; q++)
            if (*q == '\n') line++, ls = q + 1;
        oc_err_set(err, OC_ERR_PARSE, "%s:%d:%d: NUL byte in the file", path, line,
                   (int)(nul - ls) + 1);
        free(buf);
        return NULL;
    }
    struct oc_graph *g = oc_graph_parse(buf, path, err);
    free(buf);
    return g;
}
