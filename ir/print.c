/* print.c - the IR's text form, written out: one node per line, every
 * attribute spelled out (defaults too) in a fixed order per op, so the text
 * is canonical and print(parse(print(g))) == print(g) byte for byte. Golden
 * tests, `oodc graph print` and serialized scorers all go through here; the
 * format is described in README.md ("The IR text format") and read back by
 * parse.c. */
#include "text-impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const oc_text_key_names[OC_TK_COUNT] = {
    [OC_TK_INIT] = "init",         [OC_TK_A] = "a",
    [OC_TK_B] = "b",               [OC_TK_SEED] = "seed",
    [OC_TK_PERM] = "perm",         [OC_TK_START] = "start",
    [OC_TK_STOP] = "stop",         [OC_TK_STEP] = "step",
    [OC_TK_LO] = "lo",             [OC_TK_HI] = "hi",
    [OC_TK_VALUE] = "value",       [OC_TK_AXIS] = "axis",
    [OC_TK_DEPTH] = "depth",       [OC_TK_AXES] = "axes",
    [OC_TK_KEEPDIMS] = "keepdims", [OC_TK_TRANS_A] = "trans_a",
    [OC_TK_TRANS_B] = "trans_b",   [OC_TK_STRIDE] = "stride",
    [OC_TK_PADDING] = "padding",   [OC_TK_LABEL] = "label",
};

#define K(x) (1u << OC_TK_##x)

/* Mirrors the field usage documented at struct oc_attrs in ir.h. */
unsigned oc_text_op_keys(enum oc_op op)
{
    switch (op) {
    case OC_OP_PARAM: return K(INIT) | K(A) | K(B);
    case OC_OP_STATE: return K(INIT) | K(A);
    case OC_OP_RNG_NORMAL:
    case OC_OP_RNG_UNIFORM: return K(SEED);
    case OC_OP_PERMUTE: return K(PERM);
    case OC_OP_SLICE: return K(START) | K(STOP) | K(STEP);
    case OC_OP_PAD: return K(LO) | K(HI) | K(VALUE);
    case OC_OP_CONCAT:
    case OC_OP_GATHER: return K(AXIS);
    case OC_OP_ARGMAX: return K(AXIS) | K(KEEPDIMS);
    case OC_OP_ONE_HOT: return K(DEPTH);
    case OC_OP_SUM:
    case OC_OP_REDUCE_MAX: return K(AXES) | K(KEEPDIMS);
    case OC_OP_MATMUL: return K(TRANS_A) | K(TRANS_B);
    case OC_OP_CONV2D:
    case OC_OP_CONV2D_GRAD_INPUT:
    case OC_OP_CONV2D_GRAD_WEIGHT: return K(STRIDE) | K(PADDING);
    default: return 0;
    }
}

static int ident_start(int c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static int ident_char(int c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '.'; }

int oc_text_is_ident(const char *s)
{
    if (!s || !ident_start((unsigned char)*s)) return 0;
    for (s++; *s; s++)
        if (!ident_char((unsigned char)*s)) return 0;
    return 1;
}

void oc_text_print_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            /* bytes >= 0x80 pass through so UTF-8 names stay readable */
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\x%02x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void oc_text_print_double(FILE *f, double v)
{
    if (isnan(v))
        fputs(signbit(v) ? "-nan" : "nan", f);
    else if (isinf(v))
        fputs(v < 0 ? "-inf" : "inf", f);
    else
        fprintf(f, "%.17g", v);
}

void oc_text_print_type(FILE *f, enum oc_dtype dt, const struct oc_shape *s)
{
    fprintf(f, "%s[", oc_dtype_name(dt));
    for (int i = 0; i < s->rank && i < OC_MAX_RANK; i++)
        fprintf(f, i ? ",%" PRId64 : "%" PRId64, s->dim[i]);
    fputc(']', f);
}

static void print_list64(FILE *f, const int64_t *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%" PRId64 : "%" PRId64, v[i]);
    fputc(']', f);
}

static void print_key(FILE *f, const struct oc_node *n, enum oc_text_key k)
{
    const struct oc_attrs *a = &n->attrs;
    /* permute/slice/pad keep their operand's rank, so the node's own rank
     * says how many values each per-dimension list holds */
    int r = n->shape.rank < 0 ? 0 : n->shape.rank > OC_MAX_RANK ? OC_MAX_RANK : n->shape.rank;
    fprintf(f, " %s=", oc_text_key_names[k]);
    switch (k) {
    case OC_TK_INIT: fputs(oc_init_name(a->init), f); break;
    case OC_TK_A: oc_text_print_double(f, a->init_a); break;
    case OC_TK_B: oc_text_print_double(f, a->init_b); break;
    case OC_TK_SEED: fprintf(f, "%" PRIu64, a->seed); break;
    case OC_TK_PERM:
        fputc('[', f);
        for (int i = 0; i < r; i++) fprintf(f, i ? ",%d" : "%d", a->perm[i]);
        fputc(']', f);
        break;
    case OC_TK_START: print_list64(f, a->start, r); break;
    case OC_TK_STOP: print_list64(f, a->stop, r); break;
    case OC_TK_STEP: print_list64(f, a->step, r); break;
    case OC_TK_LO: print_list64(f, a->lo, r); break;
    case OC_TK_HI: print_list64(f, a->hi, r); break;
    case OC_TK_VALUE: oc_text_print_double(f, a->pad_value); break;
    case OC_TK_AXIS: fprintf(f, "%d", a->axis); break;
    case OC_TK_DEPTH: fprintf(f, "%" PRId64, a->depth); break;
    case OC_TK_AXES: {
        int first = 1;
        fputc('[', f);
        for (int i = 0; i < 32; i++)
            if (a->axes & (1u << i)) {
                fprintf(f, first ? "%d" : ",%d", i);
                first = 0;
            }
        fputc(']', f);
        break;
    }
    /* flags print normalized: the builders treat any nonzero as true */
    case OC_TK_KEEPDIMS: fputc(a->keepdims ? '1' : '0', f); break;
    case OC_TK_TRANS_A: fputc(a->trans_a ? '1' : '0', f); break;
    case OC_TK_TRANS_B: fputc(a->trans_b ? '1' : '0', f); break;
    case OC_TK_STRIDE: fprintf(f, "[%d,%d]", a->stride[0], a->stride[1]); break;
    case OC_TK_PADDING: fprintf(f, "[%d,%d]", a->padding[0], a->padding[1]); break;
    case OC_TK_LABEL: oc_text_print_string(f, n->label); break;
    case OC_TK_COUNT: break;
    }
}

void oc_text_print_node(FILE *f, const struct oc_node *n, int with_operands, int64_t max_data)
{
    fputs(oc_op_name(n->op), f);
    switch (n->op) {
    case OC_OP_INPUT:
    case OC_OP_PARAM:
    case OC_OP_STATE:
        fputc(' ', f);
        oc_text_print_string(f, n->attrs.name);
        break;
    case OC_OP_CONST:
        fputc(' ', f);
        if (n->attrs.data) {
            int64_t cnt = oc_shape_numel(&n->shape);
            if (max_data >= 0 && cnt > max_data) {
                fprintf(f, "[%" PRId64 " values]", cnt);
                break;
            }
            fputc('[', f);
            for (int64_t i = 0; i < cnt; i++) {
                if (i) fputs(", ", f);
                oc_text_print_double(f, n->attrs.data[i]);
            }
            fputc(']', f);
        } else {
            oc_text_print_double(f, n->attrs.value);
        }
        break;
    default:
        if (with_operands)
            for (int i = 0; i < n->ninputs; i++) fprintf(f, i ? ", %%%d" : " %%%d", n->inputs[i]);
    }
    unsigned keys = oc_text_op_keys(n->op);
    for (int k = 0; k < OC_TK_LABEL; k++)
        if (keys & (1u << k)) print_key(f, n, (enum oc_text_key)k);
    if (n->label) print_key(f, n, OC_TK_LABEL);
}

enum oc_status oc_graph_print(const struct oc_graph *g, FILE *f)
{
    fputs("graph ", f);
    const char *gname = g->name ? g->name : "main";
    if (oc_text_is_ident(gname))
        fputs(gname, f);
    else
        oc_text_print_string(f, gname);
    fputc('\n', f);
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        fprintf(f, "%%%d = ", i);
        oc_text_print_node(f, n, 1, -1);
        fputs(" : ", f);
        oc_text_print_type(f, n->dtype, &n->shape);
        fputc('\n', f);
    }
    for (int i = 0; i < g->noutputs; i++) {
        fputs("output ", f);
        if (oc_text_is_ident(g->outputs[i].name))
            fputs(g->outputs[i].name, f);
        else
            oc_text_print_string(f, g->outputs[i].name);
        fprintf(f, " = %%%d\n", g->outputs[i].node);
    }
    return ferror(f) ? OC_ERR_IO : OC_OK;
}

char *oc_graph_print_str(const struct oc_graph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    enum oc_status st = oc_graph_print(g, f);
    if (fclose(f) != 0 || st != OC_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}
