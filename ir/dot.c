/* dot.c - a graph as Graphviz DOT, for looking at it (`oodc graph dot`):
 * one box per IR node labelled with its id, op, attributes (as in the text
 * form) and type; edges run from operand to user; named outputs are extra
 * nodes at the bottom. */
#include "text-impl.h"

#include <stdlib.h>
#include <string.h>

/* Writes s as the inside of a DOT double-quoted string. Backslashes are
 * doubled so that the text form's own escapes (\" in names) show as typed. */
static void dot_escape(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20 || c == 0x7f) {
            fputc(' ', f);
        } else {
            fputc(c, f);
        }
    }
}

static const char *fill_of(const struct oc_node *n)
{
    switch (n->op) {
    case OC_OP_INPUT: return "#cfe2f3";
    case OC_OP_PARAM: return "#d9ead3";
    case OC_OP_STATE: return "#fff2cc";
    case OC_OP_CONST: return "#eeeeee";
    case OC_OP_ASSIGN: return "#f4cccc";
    default:
        switch (oc_op_table[n->op].fclass) {
        case OC_FC_CONTRACTION: return "#ead1dc";
        case OC_FC_REDUCE: return "#d0e0e3";
        default: return "#ffffff";
        }
    }
}

enum oc_status oc_graph_dot(const struct oc_graph *g, FILE *f)
{
    const char *gname = g->name ? g->name : "main";
    fputs("digraph \"", f);
    dot_escape(f, gname, strlen(gname));
    fputs("\" {\n", f);
    fputs("  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10];\n",
          f);
    fputs("  edge [arrowsize=0.6];\n", f);
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        char *text = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        if (!m) return OC_ERR_NOMEM;
        fprintf(m, "%%%d ", i);
        oc_text_print_node(m, n, 0, 8);
        fputc('\n', m);
        oc_text_print_type(m, n->dtype, &n->shape);
        if (fclose(m) != 0) {
            free(text);
            return OC_ERR_NOMEM;
        }
        fprintf(f, "  n%d [fillcolor=\"%s\", label=\"", i, fill_of(n));
        dot_escape(f, text, len);
        fputs("\"];\n", f);
        free(text);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *n = g->nodes[i];
        for (int k = 0; k < n->ninputs; k++) {
            /* operand order matters for sub, div, matmul, ...: label it */
            if (n->ninputs > 1)
                fprintf(f, "  n%d -> n%d [label=\"%d\"];\n", n->inputs[k], i, k);
            else
                fprintf(f, "  n%d -> n%d;\n", n->inputs[k], i);
        }
    }
    for (int i = 0; i < g->noutputs; i++) {
        const char *name = g->outputs[i].name ? g->outputs[i].name : "";
        fprintf(f, "  out%d [shape=box, style=bold, label=\"output ", i);
        dot_escape(f, name, strlen(name));
        fputs("\"];\n", f);
        fprintf(f, "  n%d -> out%d;\n", g->outputs[i].node, i);
    }
    fputs("}\n", f);
    return ferror(f) ? OC_ERR_IO : OC_OK;
}
