/* fuzz-ir-parse.c - fuzz target for the IR text parser (ir/parse.c).
 *
 * Input: any bytes, taken as the text of a graph (cut at the first NUL, as
 * oc_graph_parse reads a C string). A rejected text must come back as NULL
 * with a "source:line:col: message" error; an accepted one must verify and
 * round-trip as the README promises: print(parse(print(g))) == print(g). */
#include "fuzz-common.h"

#include "../../ir/ir.h"

OC_FUZZ_ENTRY(ir_parse)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;

    struct oc_err err = {0};
    struct oc_graph *g = oc_graph_parse(text, "fuzz", &err);
    free(text);
    if (!g) {
        OC_FUZZ_CHECK(err.code != OC_OK && err.msg[0], "rejected without an error message");
        OC_FUZZ_CHECK(!strncmp(err.msg, "fuzz", 4), "error does not name the source: %s", err.msg);
        return 0;
    }
    OC_FUZZ_CHECK(oc_graph_status(g) == OC_OK, "accepted a graph with a builder error: %s",
                  g->err.msg);
    struct oc_err verr = {0};
    OC_FUZZ_CHECK(oc_graph_verify(g, &verr) == OC_OK, "accepted graph fails verify: %s",
                  verr.msg);

    char *p1 = oc_graph_print_str(g);
    OC_FUZZ_CHECK(p1 != NULL, "cannot print an accepted graph");
    struct oc_err err2 = {0};
    struct oc_graph *g2 = oc_graph_parse(p1, "fuzz-reprint", &err2);
    OC_FUZZ_CHECK(g2 != NULL, "printed form does not parse back: %s\n--- printed:\n%s", err2.msg,
                  p1);
    char *p2 = oc_graph_print_str(g2);
    OC_FUZZ_CHECK(p2 && !strcmp(p1, p2), "print(parse(print(g))) != print(g)\n--- first:\n%s\n"
                  "--- second:\n%s", p1, p2 ? p2 : "(null)");
    free(p1);
    free(p2);
    oc_graph_free(g2);
    oc_graph_free(g);
    return 0;
}
