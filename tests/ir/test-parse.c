/* test-parse.c - the IR text form (ir/print.c, ir/parse.c), the verifier's
 * errors and DOT export: a graph holding every op in ops.def round-trips
 * byte for byte, hand-written text parses to the canonical form, and
 * malformed text fails with "<source>:line:col: message" at the right token,
 * never crashing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../helpers/helpers.h"

/* ---------------------------------------------------------------- helpers */

static struct oc_attrs A(void)
{
    struct oc_attrs a;
    memset(&a, 0, sizeof a);
    return a;
}

static oc_tensor add(struct oc_graph *g, enum oc_op op, const oc_tensor *in, int nin,
                     struct oc_attrs a, enum oc_dtype dt, struct oc_shape s)
{
    oc_tensor t = oc_graph_add(g, op, in, nin, &a, dt, &s);
    cr_assert(oc_valid(t), "building %s: %s", oc_op_name(op), g->err.msg);
    return t;
}

static oc_tensor un(struct oc_graph *g, enum oc_op op, oc_tensor x, struct oc_attrs a)
{
    return add(g, op, &x, 1, a, OC_F32, OC_SCALAR);
}

static oc_tensor bin(struct oc_graph *g, enum oc_op op, oc_tensor x, oc_tensor y)
{
    oc_tensor in[2] = {x, y};
    return add(g, op, in, 2, A(), OC_F32, OC_SCALAR);
}

static oc_tensor named(struct oc_graph *g, enum oc_op op, const char *name, enum oc_init init,
                       double ia, double ib, enum oc_dtype dt, struct oc_shape s)
{
    struct oc_attrs a = A();
    a.name = name;
    a.init = init;
    a.init_a = ia;
    a.init_b = ib;
    return add(g, op, NULL, 0, a, dt, s);
}

/* One graph that uses every op in ops.def, with non-default attributes,
 * special floats, labels and names that need escaping. */
static struct oc_graph *every_op_graph(void)
{
    struct oc_graph *g = oc_graph_new("every_op");
    cr_assert_not_null(g);
    oc_tensor x = named(g, OC_OP_INPUT, "x", 0, 0, 0, OC_F32, OC_SHAPE(2, 3));
    g->nodes[x.id]->label = oc_arena_strdup(&g->arena, "in \"quoted\"\n\\ \t#not a comment");
    oc_tensor w = named(g, OC_OP_PARAM, "fc.weight", OC_INIT_KAIMING_NORMAL, 0, 0, OC_F32,
                        OC_SHAPE(4, 3));
    oc_tensor st = named(g, OC_OP_STATE, "bn.running_mean", OC_INIT_CONST, 0.1, 0, OC_F32,
                         OC_SHAPE(4));
    named(g, OC_OP_PARAM, "u", OC_INIT_UNIFORM, -0.125, 1e-300, OC_F64, OC_SHAPE(1, 1, 1, 1, 1, 1));
    named(g, OC_OP_STATE, "weird \"name\"\x01", OC_INIT_ONES, 0, 0, OC_U8, OC_SCALAR);

    struct oc_attrs a = A();
    a.value = 0.5;
    add(g, OC_OP_CONST, NULL, 0, a, OC_F32, OC_SCALAR);
    const double data[6] = {INFINITY, -INFINITY, NAN, -0.0, 4.9406564584124654e-324, 0.1};
    a = A();
    a.data = data;
    oc_tensor cd = add(g, OC_OP_CONST, NULL, 0, a, OC_F32, OC_SHAPE(2, 3));
    a = A();
    a.value = 3;
    oc_tensor step = add(g, OC_OP_CONST, NULL, 0, a, OC_I32, OC_SCALAR);
    a = A();
    a.data = data; /* zero elements: an empty list, not a splat */
    add(g, OC_OP_CONST, NULL, 0, a, OC_F64, OC_SHAPE(0, 2));
    a = A();
    a.value = -NAN;
    add(g, OC_OP_CONST, NULL, 0, a, OC_F64, OC_SHAPE(0));

    a = A();
    a.seed = UINT64_MAX;
    add(g, OC_OP_RNG_NORMAL, &step, 1, a, OC_F32, OC_SHAPE(2, 3));
    a.seed = 7;
    add(g, OC_OP_RNG_UNIFORM, &step, 1, a, OC_F64, OC_SHAPE(5));

    static const enum oc_op unary[] = {OC_OP_NEG,     OC_OP_EXP,     OC_OP_LOG,   OC_OP_SQRT,
                                       OC_OP_RSQRT,   OC_OP_RECIP,   OC_OP_ABS,   OC_OP_SIGN,
                                       OC_OP_RELU,    OC_OP_SIGMOID, OC_OP_TANH,  OC_OP_SOFTPLUS,
                                       OC_OP_LOG1P,   OC_OP_STOP_GRADIENT};
    for (size_t i = 0; i < sizeof unary / sizeof *unary; i++) un(g, unary[i], x, A());
    static const enum oc_op binary[] = {OC_OP_ADD, OC_OP_SUB, OC_OP_MUL, OC_OP_DIV, OC_OP_POW,
                                        OC_OP_MAX, OC_OP_MIN, OC_OP_LT,  OC_OP_LE,  OC_OP_EQ,
                                        OC_OP_NE,  OC_OP_GE,  OC_OP_GT};
    oc_tensor cmp = x;
    for (size_t i = 0; i < sizeof binary / sizeof *binary; i++) cmp = bin(g, binary[i], x, cd);
    oc_tensor sel3[3] = {cmp, x, cd};
    add(g, OC_OP_SELECT, sel3, 3, A(), 0, OC_SCALAR);
    add(g, OC_OP_CAST, &x, 1, A(), OC_F64, OC_SCALAR);
    oc_tensor xi = add(g, OC_OP_CAST, &x, 1, A(), OC_I32, OC_SCALAR);
    add(g, OC_OP_RESHAPE, &x, 1, A(), OC_F32, OC_SHAPE(3, 1, 2));

    a = A();
    a.perm[0] = 1, a.perm[1] = 0;
    un(g, OC_OP_PERMUTE, x, a);
    add(g, OC_OP_BROADCAST, &st, 1, A(), OC_F32, OC_SHAPE(2, 4));
    a = A();
    a.start[0] = 0, a.start[1] = 1;
    a.stop[0] = 2, a.stop[1] = 3;
    a.step[0] = 1, a.step[1] = 2;
    un(g, OC_OP_SLICE, x, a);
    a = A();
    a.lo[0] = 1, a.hi[1] = 2;
    a.pad_value = -1.5;
    un(g, OC_OP_PAD, x, a);
    oc_tensor cat[3] = {x, cd, x};
    a = A();
    a.axis = 0;
    add(g, OC_OP_CONCAT, cat, 3, a, 0, OC_SCALAR);
    a.axis = 1;
    add(g, OC_OP_CONCAT, &x, 1, a, 0, OC_SCALAR);

    a = A();
    a.axes = 3;
    a.keepdims = 1;
    un(g, OC_OP_SUM, x, a);
    a = A();
    a.axes = 2;
    un(g, OC_OP_REDUCE_MAX, xi, a);
    a = A();
    a.axis = 1;
    a.keepdims = 1;
    un(g, OC_OP_ARGMAX, x, a);

    oc_tensor mm[2] = {x, w};
    a = A();
    a.trans_b = 1;
    add(g, OC_OP_MATMUL, mm, 2, a, 0, OC_SCALAR);

    oc_tensor img = named(g, OC_OP_INPUT, "img", 0, 0, 0, OC_F32, OC_SHAPE(2, 3, 8, 8));
    oc_tensor k = named(g, OC_OP_PARAM, "conv.weight", OC_INIT_NORMAL, 0, 0.02, OC_F32,
                        OC_SHAPE(4, 3, 3, 3));
    a = A();
    a.stride[0] = 2, a.stride[1] = 1;
    a.padding[0] = 1, a.padding[1] = 0;
    oc_tensor cv[2] = {img, k};
    oc_tensor y = add(g, OC_OP_CONV2D, cv, 2, a, 0, OC_SCALAR);
    struct oc_shape yshape = OC_SHAPE(2, 4, 4, 6);
    cr_assert(oc_shape_eq(&g->nodes[y.id]->shape, &yshape));
    oc_tensor gi[2] = {y, k};
    add(g, OC_OP_CONV2D_GRAD_INPUT, gi, 2, a, OC_F32, OC_SHAPE(2, 3, 8, 8));
    oc_tensor gw[2] = {img, y};
    add(g, OC_OP_CONV2D_GRAD_WEIGHT, gw, 2, a, OC_F32, OC_SHAPE(4, 3, 3, 3));

    oc_tensor lab = named(g, OC_OP_INPUT, "labels", 0, 0, 0, OC_I32, OC_SHAPE(2));
    a = A();
    a.depth = 5;
    add(g, OC_OP_ONE_HOT, &lab, 1, a, OC_F32, OC_SCALAR);
    oc_tensor ga[2] = {x, lab};
    a = A();
    a.axis = 1;
    oc_tensor picked = add(g, OC_OP_GATHER, ga, 2, a, 0, OC_SCALAR);
    g->nodes[picked.id]->label = oc_arena_strdup(&g->arena, "");

    oc_tensor upd = un(g, OC_OP_NEG, st, A());
    oc_tensor as[2] = {st, upd};
    add(g, OC_OP_ASSIGN, as, 2, A(), 0, OC_SCALAR);

    oc_graph_set_output(g, "y", y);
    oc_graph_set_output(g, "picked", picked);
    oc_graph_set_output(g, "needs quotes", x);
    oc_graph_set_output(g, "x.again", x);
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    return g;
}

static struct oc_graph *parse_ok(const char *text, const char *src)
{
    struct oc_err err = {0};
    struct oc_graph *g = oc_graph_parse(text, src, &err);
    cr_assert_not_null(g, "parse failed: %s\n--- text ---\n%s", err.msg, text);
    cr_assert_eq(err.code, OC_OK);
    return g;
}

static char *print_str(const struct oc_graph *g)
{
    char *s = oc_graph_print_str(g);
    cr_assert_not_null(s);
    return s;
}

/* ---------------------------------------------------------------- round trip */

Test(parse, every_op_round_trips_byte_for_byte)
{
    struct oc_graph *g = every_op_graph();
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);

    /* a test that fails when ops.def grows without a case here */
    int seen[OC_OP_COUNT] = {0};
    for (int i = 0; i < g->nnodes; i++) seen[g->nodes[i]->op] = 1;
    for (int op = 0; op < OC_OP_COUNT; op++)
        cr_expect(seen[op], "op '%s' is missing from the round-trip graph", oc_op_name(op));

    char *t1 = print_str(g);
    struct oc_graph *h = parse_ok(t1, "rt.oc");
    char *t2 = print_str(h);
    cr_assert_str_eq(t2, t1);

    /* the parsed graph is the same graph, not just the same text */
    cr_assert_eq(h->nnodes, g->nnodes);
    cr_assert_eq(h->noutputs, g->noutputs);
    for (int i = 0; i < g->nnodes; i++) {
        const struct oc_node *a = g->nodes[i], *b = h->nodes[i];
        cr_assert_eq(b->op, a->op, "node %d", i);
        cr_assert_eq(b->dtype, a->dtype, "node %d", i);
        cr_assert(oc_shape_eq(&b->shape, &a->shape), "node %d", i);
        cr_assert_eq(b->ninputs, a->ninputs, "node %d", i);
        for (int k = 0; k < a->ninputs; k++) cr_assert_eq(b->inputs[k], a->inputs[k]);
        cr_assert_eq(!b->label, !a->label, "node %d label", i);
        if (a->label) cr_assert_str_eq(b->label, a->label);
        if (a->attrs.name) cr_assert_str_eq(b->attrs.name, a->attrs.name);
        cr_assert_eq(b->attrs.seed, a->attrs.seed);
        cr_assert_eq(!b->attrs.data, !a->attrs.data, "node %d data", i);
        if (a->op == OC_OP_CONST && a->attrs.data)
            for (int64_t j = 0; j < oc_shape_numel(&a->shape); j++) {
                double u = a->attrs.data[j], v = b->attrs.data[j];
                cr_assert(memcmp(&u, &v, sizeof u) == 0 || (isnan(u) && isnan(v)),
                          "node %d value %lld: %.17g vs %.17g", i, (long long)j, u, v);
            }
    }
    for (int i = 0; i < g->noutputs; i++) {
        cr_assert_str_eq(h->outputs[i].name, g->outputs[i].name);
        cr_assert_eq(h->outputs[i].node, g->outputs[i].node);
    }
    /* spot checks of how things are spelled */
    cr_assert(strstr(t1, "seed=18446744073709551615"), "%s", t1);
    cr_assert(strstr(t1, "const [inf, -inf, nan, -0, 4.9406564584124654e-324, "
                         "0.10000000000000001] : f32[2,3]"),
              "%s", t1);
    cr_assert(strstr(t1, "const [] : f64[0,2]"), "%s", t1);
    cr_assert(strstr(t1, "const -nan : f64[0]"), "%s", t1);
    cr_assert(strstr(t1, "label=\"in \\\"quoted\\\"\\n\\\\ \\t#not a comment\""), "%s", t1);
    cr_assert(strstr(t1, "state \"weird \\\"name\\\"\\x01\" init=ones a=0 : u8[]"), "%s", t1);
    cr_assert(strstr(t1, "output \"needs quotes\" = %0\n"), "%s", t1);
    cr_assert(strstr(t1, "output x.again = %0\n"), "%s", t1);
    cr_assert(strstr(t1, " = sum %0 axes=[0,1] keepdims=1 : f32[1,1]\n"), "%s", t1);
    cr_assert(strstr(t1, " trans_a=0 trans_b=1 : f32[2,4]\n"), "%s", t1);
    cr_assert(strstr(t1, " stride=[2,1] padding=[1,0] : f32[2,4,4,6]\n"), "%s", t1);
    cr_assert(strstr(t1, " = slice %0 start=[0,1] stop=[2,3] step=[1,2] : f32[2,1]\n"), "%s", t1);
    cr_assert(strstr(t1, " = pad %0 lo=[1,0] hi=[0,2] value=-1.5 : f32[3,5]\n"), "%s", t1);
    free(t1);
    free(t2);
    oc_graph_free(g);
    oc_graph_free(h);
}

/* A graph from the DSL builders and composites (what models produce). */
Test(parse, builder_graph_round_trips)
{
    struct oc_graph *g = oc_graph_new("mlp");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(8, 5));
    oc_tensor y = oc_input(g, "y", OC_I32, OC_SHAPE(8));
    oc_tensor w1 = oc_param(g, "fc1.weight", OC_F32, OC_SHAPE(6, 5), OC_INIT_KAIMING_NORMAL, 0, 0);
    oc_tensor b1 = oc_param(g, "fc1.bias", OC_F32, OC_SHAPE(6), OC_INIT_ZEROS, 0, 0);
    oc_tensor h = oc_relu(g, oc_linear(g, x, w1, b1));
    h = oc_batchnorm_layer(g, "bn1", h, 1);
    oc_tensor w2 = oc_param(g, "fc2.weight", OC_F32, OC_SHAPE(3, 6), OC_INIT_UNIFORM, -0.1, 0.1);
    oc_tensor logits = oc_linear(g, h, w2, OC_NONE);
    oc_output(g, "loss", oc_cross_entropy(g, logits, y));
    oc_output(g, "probs", oc_softmax(g, logits, 1));
    oc_output(g, "pred", oc_argmax(g, logits, 1, 0));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    char *t1 = print_str(g);
    struct oc_graph *p = parse_ok(t1, "mlp.oc");
    char *t2 = print_str(p);
    cr_assert_str_eq(t2, t1);
    free(t1);
    free(t2);
    oc_graph_free(g);
    oc_graph_free(p);
}

/* Hand-written text: SSA names, any attribute order, omitted defaults,
 * comments, CRLF and blank lines all come out in the canonical form. */
Test(parse, hand_written_text_prints_canonically)
{
    const char *text =
        "# a small network\r\n"
        "\n"
        "graph \"tiny net\"   # quoted graph name\n"
        "%x = input \"x\" : f32[4,3]\n"
        "%w = param \"fc.weight\" b=2 init=normal : f32[5,3]\n"
        "%s = state \"bn.mean\" init=zeros : f32[5]\n"
        "%h = matmul %x, %w trans_b=1 label=\"fc\" : f32[4,5]\n"
        "output early = %h\n"
        "%r = sum %h keepdims=1 axes=[1] : f32[4,1]\n"
        "%p = slice %h : f32[4,5]\n"
        "%q = pad %h hi=[0,1] : f32[4,6]\n"
        "%n = neg %s : f32[5]\n"
        "%a = assign %s,%n : f32[5]\n"
        "%c = const 1e3:f64[]\n"
        "%cv_in = input \"img\" : f64[1,1,4,4]\n"
        "%cv_w = param \"k\" init=ones : f64[1,1,3,3]\n"
        "%cv = conv2d %cv_in, %cv_w padding=[1,1] : f64[1,1,4,4]\n"
        "output \"sum\" = %r\n";
    const char *want =
        "graph \"tiny net\"\n"
        "%0 = input \"x\" : f32[4,3]\n"
        "%1 = param \"fc.weight\" init=normal a=0 b=2 : f32[5,3]\n"
        "%2 = state \"bn.mean\" init=zeros a=0 : f32[5]\n"
        "%3 = matmul %0, %1 trans_a=0 trans_b=1 label=\"fc\" : f32[4,5]\n"
        "%4 = sum %3 axes=[1] keepdims=1 : f32[4,1]\n"
        "%5 = slice %3 start=[0,0] stop=[4,5] step=[1,1] : f32[4,5]\n"
        "%6 = pad %3 lo=[0,0] hi=[0,1] value=0 : f32[4,6]\n"
        "%7 = neg %2 : f32[5]\n"
        "%8 = assign %2, %7 : f32[5]\n"
        "%9 = const 1000 : f64[]\n"
        "%10 = input \"img\" : f64[1,1,4,4]\n"
        "%11 = param \"k\" init=ones a=0 b=0 : f64[1,1,3,3]\n"
        "%12 = conv2d %10, %11 stride=[1,1] padding=[1,1] : f64[1,1,4,4]\n"
        "output early = %3\n"
        "output sum = %4\n";
    struct oc_graph *g = parse_ok(text, "tiny.oc");
    char *t = print_str(g);
    cr_assert_str_eq(t, want);
    cr_assert_str_eq(g->name, "tiny net");
    cr_assert_str_eq(g->nodes[3]->label, "fc");
    free(t);
    oc_graph_free(g);
}

Test(parse, empty_graph_and_load_from_file)
{
    struct oc_graph *g = parse_ok("graph empty\n", "e.oc");
    cr_assert_eq(g->nnodes, 0);
    oc_graph_free(g);
    g = parse_ok("graph last_line_without_newline\n%0 = input \"x\" : f32[]", "e.oc");
    cr_assert_eq(g->nnodes, 1);
    char *t1 = print_str(g);

    char path[4096];
    snprintf(path, sizeof path, "%s/tests/parse-load-%ld.oc", OC_BINARY_DIR, (long)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(oc_graph_print(g, f), OC_OK);
    fclose(f);
    struct oc_err err = {0};
    struct oc_graph *h = oc_graph_load(path, &err);
    cr_assert_not_null(h, "%s", err.msg);
    char *t2 = print_str(h);
    cr_assert_str_eq(t2, t1);

    /* a NUL byte in a file is an error, not the silent end of the text */
    f = fopen(path, "wb");
    fwrite("graph g\n%0 = input \"x\" : f32[]\0garbage", 1, 39, f);
    fclose(f);
    struct oc_err e2 = {0};
    cr_assert_null(oc_graph_load(path, &e2));
    cr_assert_eq(e2.code, OC_ERR_PARSE);
    cr_assert(strstr(e2.msg, path) && strstr(e2.msg, ":2:23: NUL byte"), "%s", e2.msg);
    remove(path);

    struct oc_err e3 = {0};
    cr_assert_null(oc_graph_load(path, &e3));
    cr_assert_eq(e3.code, OC_ERR_IO);
    cr_assert(strstr(e3.msg, path) && strstr(e3.msg, "No such file"), "%s", e3.msg);
    free(t1);
    free(t2);
    oc_graph_free(g);
    oc_graph_free(h);
}

/* ---------------------------------------------------------------- errors */

struct bad_text {
    const char *text;
    const char *where;    /* "line:col" */
    const char *fragment; /* part of the message */
    enum oc_status code;  /* 0: OC_ERR_PARSE */
};

#define HDR "graph g\n%0 = input \"x\" : f32[2,3]\n"
#define HDR1 "graph g\n%0 = input \"x\" : f32[2]\n"

static const struct bad_text bad_cases[] = {
    {"", "1:1", "missing 'graph NAME' header (got end of input)", 0},
    {"# only a comment\n\n", "3:1", "missing 'graph NAME' header", 0},
    {"%0 = input \"x\" : f32[2]\n", "1:1", "missing 'graph NAME' header (got '%0')", 0},
    {"graph\n", "1:6", "expected graph name, got end of line", 0},
    {"graph 1abc\n", "1:7", "bad graph name '1abc'", 0},
    {"graph g h\n", "1:9", "unexpected 'h' after the graph name", 0},
    {"graph g\ngraph h\n", "2:1", "duplicate 'graph' header", 0},
    {"graph g\nrelu\n", "2:1", "expected a node ('%name = op ...') or 'output NAME = %name', got 'relu'", 0},
    {HDR1 "%1 = foo %0 : f32[2]\n", "3:6", "unknown op 'foo'", 0},
    {HDR1 "%1 relu %0 : f32[2]\n", "3:4", "expected '=' after the node name, got 'relu'", 0},
    {HDR1 "%1 = relu %0 bogus=1 : f32[2]\n", "3:14", "unknown attribute 'bogus'", 0},
    {HDR1 "%1 = relu %0 axis=1 : f32[2]\n", "3:14", "attribute 'axis' is not valid for relu", 0},
    {HDR1 "%1 = relu %0 label=\"a\" label=\"b\" : f32[2]\n", "3:24", "duplicate attribute 'label' (first at column 14)", 0},
    {HDR1 "%1 = add %0 : f32[2]\n", "3:6", "wrong number of operands: add takes 2, got 1", 0},
    {HDR1 "%1 = relu : f32[2]\n", "3:6", "wrong number of operands: relu takes 1, got 0", 0},
    {HDR1 "%1 = concat axis=0 : f32[2]\n", "3:6", "concat takes at least 1, got 0", 0},
    {HDR1 "%1 = add %0 %0 : f32[2]\n", "3:13", "expected ',' between operands, got '%0'", 0},
    {HDR1 "%1 = add %0, : f32[2]\n", "3:14", "expected an operand %name, got ':'", 0},
    {HDR1 "%1 = relu %7 : f32[2]\n", "3:11", "undefined '%7'", 0},
    {HDR1 "%0 = relu %0 : f32[2]\n", "3:1", "redefinition of '%0' (first defined at line 2)", 0},
    {HDR1 "%1 = input \"x\" : f32[2]\n", "3:6", "name \"x\" is already used", OC_ERR_INVALID},
    {HDR1 "%1 = input x : f32[2]\n", "3:12", "expected a quoted name after 'input', got 'x'", 0},
    {HDR1 "%1 = input \"\" : f32[2]\n", "3:12", "input name is empty", 0},
    {HDR1 "output y = %0\noutput y = %0\n", "4:8", "duplicate output 'y'", 0},
    {HDR1 "output y = %1\n", "3:12", "undefined '%1'", 0},
    {HDR1 "output 9y = %0\n", "3:8", "bad output name '9y'", 0},
    {HDR1 "output y %0\n", "3:10", "expected '=' after the output name, got '%0'", 0},
    {HDR1 "output y = %0 junk\n", "3:15", "unexpected 'junk' after the output", 0},
    {HDR1 "%1 = const 1.2.3 : f32[]\n", "3:12", "bad number '1.2.3' for const value", 0},
    {HDR1 "%1 = const 0x10 : f32[]\n", "3:12", "bad number '0x10'", 0},
    {HDR1 "%1 = const infinity : f32[]\n", "3:12", "bad number 'infinity'", 0},
    {HDR1 "%1 = const 1e999 : f32[]\n", "3:12", "number '1e999' for const value out of range", 0},
    {HDR1 "%1 = const [1, 2] : f32[3]\n", "3:12", "const has 2 value(s) but its type holds 3", 0},
    {HDR1 "%1 = const [1 2] : f32[2]\n", "3:15", "expected ',' or ']' in the const values, got '2'", 0},
    {HDR1 "%1 = const : f32[]\n", "3:12", "expected const value (a number), got ':'", 0},
    {HDR1 "%1 = relu %0 : f32[2] extra\n", "3:23", "unexpected 'extra' after the type", 0},
    {HDR1 "%1 = relu %0 : f32[2]]\n", "3:22", "unexpected ']' after the type", 0},
    {HDR1 "%1 = relu %0\n", "3:13", "expected ':' and the type, got end of line", 0},
    {HDR1 "%1 = relu %0 :\n", "3:15", "expected a type such as f32[4,3], got end of line", 0},
    {HDR1 "%1 = relu %0 : f16[2]\n", "3:16", "unknown dtype 'f16'", 0},
    {HDR1 "%1 = relu %0 : f32\n", "3:19", "expected '[' and the dimensions after the dtype", 0},
    {HDR1 "%1 = relu %0 : f32[2\n", "3:21", "expected ',' or ']' in the shape opened at column 19", 0},
    {HDR1 "%1 = relu %0 : f32[-2]\n", "3:20", "dimension '-2' out of range", 0},
    {HDR1 "%1 = relu %0 : f32[99999999999999999999]\n", "3:20", "dimension '99999999999999999999' out of range", 0},
    {HDR1 "%1 = relu %0 : f32[3]\n", "3:16", "node %1 (relu): declared type f32[3] but the operands give f32[2]", OC_ERR_SHAPE},
    {HDR1 "%1 = relu %0 : f64[2]\n", "3:16", "declared type f64[2] but the operands give f32[2]", OC_ERR_DTYPE},
    {HDR1 "%1 = const 0 : f32[1,1,1,1,1,1,1]\n", "3:32", "too many dims (rank > 6)", 0},
    {HDR1 "%1 = const 0 : f32[4294967296,4294967296]\n", "3:31", "too many elements", 0},
    {HDR1 "%1 = input \"y : f32[2]\n", "3:12", "unterminated string", 0},
    {HDR1 "%1 = input \"a\\qb\" : f32[2]\n", "3:14", "unknown escape '\\q'", 0},
    {HDR1 "%1 = input \"a\\x00\" : f32[2]\n", "3:14", "\\x00 is not allowed", 0},
    {HDR1 "%1 = input \"a\\x4\" : f32[2]\n", "3:14", "\\x needs two hex digits", 0},
    {HDR1 "%1 = relu @0 : f32[2]\n", "3:11", "unexpected character '@'", 0},
    {HDR1 "%1 = relu % : f32[2]\n", "3:11", "expected a name after '%'", 0},
    {HDR1 "%1 = relu %0 : f32[2]\x01\n", "3:22", "unexpected byte 0x01", 0},
    {HDR "%1 = matmul %0, %0 : f32[2,2]\n", "3:6", "contraction dims differ", OC_ERR_SHAPE},
    {HDR "%1 = exp %0 : f32[2,3]\n%2 = cast %1 : i32[2,3]\n%3 = exp %2 : i32[2,3]\n", "5:6",
     "5:6: node %3 (exp): exp: operand 0 must be f32 or f64, got i32", OC_ERR_DTYPE},
    {HDR "%1 = sum %0 : f32[]\n", "3:6", "sum needs attribute 'axes'", 0},
    {HDR "%1 = sum %0 axes=[0] keepdims=2 : f32[3]\n", "3:31", "keepdims '2' out of range [0, 1]", 0},
    {HDR "%1 = sum %0 axes=[2] : f32[2]\n", "3:13", "axis 2 out of range for rank 2", 0},
    {HDR "%1 = sum %0 axes=[1,1] : f32[2]\n", "3:13", "axis 1 listed twice", 0},
    {HDR "%1 = sum %0 axes=[] : f32[2,3]\n", "3:6", "empty set of reduction axes", OC_ERR_SHAPE},
    {HDR "%1 = sum %0 axes=1 : f32[2]\n", "3:18", "expected '[' to start the list of axes, got '1'", 0},
    {HDR "%1 = permute %0 perm=[0] : f32[2,3]\n", "3:17", "'perm' has 1 value(s) but the operand has rank 2", 0},
    {HDR "%1 = permute %0 : f32[3,2]\n", "3:6", "permute needs attribute 'perm'", 0},
    {HDR "%1 = permute %0 perm=[0,0] : f32[2,2]\n", "3:6", "not a permutation", OC_ERR_SHAPE},
    {HDR "%1 = slice %0 stop=[3,3] : f32[3,3]\n", "3:6", "slice: bad range", OC_ERR_SHAPE},
    {HDR "%1 = conv2d %0, %0 stride=[1] : f32[1]\n", "3:20", "'stride' needs 2 values [h,w], got 1", 0},
    {HDR "%1 = argmax %0 axis=9999999999 : i32[2]\n", "3:21", "axis '9999999999' out of range", 0},
    {HDR "%1 = one_hot %0 depth=0 : f32[2,3,0]\n", "3:23", "depth '0' out of range [1,", 0},
    {HDR "%1 = rng_normal %0 seed=-1 : f32[2]\n", "3:25", "bad unsigned integer '-1' for seed", 0},
    {HDR "%1 = rng_normal %0 seed=18446744073709551616 : f32[2]\n", "3:25", "out of range (64 bits)", 0},
    {HDR "%1 = param \"w\" init=he : f32[2]\n", "3:21", "unknown initializer 'he'", 0},
    {HDR "%1 = param \"w\" a=1 : f32[2]\n", "3:6", "param needs attribute 'init'", 0},
    {HDR "%1 = state \"w\" init=zeros b=1 : f32[2]\n", "3:27", "attribute 'b' is not valid for state", 0},
    {HDR "%1 = assign %0, %0 : f32[2,3]\n", "3:6", "assign: target %0 is a input", OC_ERR_INVALID},
    {HDR "%1 = relu %0 label=x : f32[2,3]\n", "3:20", "expected a quoted label, got 'x'", 0},
};

Test(parse, errors_point_at_the_offending_token)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const struct bad_text *c = &bad_cases[i];
        struct oc_err err = {0};
        struct oc_graph *g = oc_graph_parse(c->text, "t.oc", &err);
        cr_expect_null(g, "case %zu was accepted:\n%s", i, c->text);
        if (g) {
            oc_graph_free(g);
            continue;
        }
        char prefix[64];
        snprintf(prefix, sizeof prefix, "t.oc:%s: ", c->where);
        cr_expect(!strncmp(err.msg, prefix, strlen(prefix)),
                  "case %zu: message \"%s\" does not start with \"%s\"", i, err.msg, prefix);
        cr_expect(strstr(err.msg, c->fragment), "case %zu: message \"%s\" lacks \"%s\"", i,
                  err.msg, c->fragment);
        enum oc_status want = c->code ? c->code : OC_ERR_PARSE;
        cr_expect_eq(err.code, want, "case %zu: code %s, expected %s (%s)", i,
                     oc_status_name(err.code), oc_status_name(want), err.msg);
    }
}

Test(parse, long_tokens_and_lines_do_not_overflow)
{
    /* a 200000-byte op name, label and name: messages stay bounded */
    size_t n = 200000;
    char *text = malloc(n + 200);
    cr_assert_not_null(text);
    strcpy(text, HDR1 "%1 = ");
    size_t k = strlen(text);
    memset(text + k, 'a', n);
    strcpy(text + k + n, " %0 : f32[2]\n");
    struct oc_err err = {0};
    cr_assert_null(oc_graph_parse(text, "long.oc", &err));
    cr_assert(strstr(err.msg, "long.oc:3:6: unknown op 'aaaa"), "%s", err.msg);
    cr_assert(strstr(err.msg, "...'"), "%s", err.msg);

    /* a valid line with a very long label parses and round-trips */
    strcpy(text, HDR1 "%1 = relu %0 label=\"");
    k = strlen(text);
    memset(text + k, 'b', n);
    strcpy(text + k + n, "\" : f32[2]\n");
    struct oc_graph *g = parse_ok(text, "long.oc");
    cr_assert_eq(strlen(g->nodes[1]->label), n);
    char *t1 = print_str(g);
    struct oc_graph *h = parse_ok(t1, "long2.oc");
    char *t2 = print_str(h);
    cr_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    oc_graph_free(g);
    oc_graph_free(h);

    /* an error on column 200000+ is reported with that column */
    strcpy(text, HDR1 "%1 = relu %0 label=\"");
    k = strlen(text);
    memset(text + k, 'c', n);
    strcpy(text + k + n, "\" : f32[9]\n");
    oc_err_clear(&err);
    cr_assert_null(oc_graph_parse(text, "long.oc", &err));
    char want[64];
    snprintf(want, sizeof want, "long.oc:3:%zu: ", k + n + 5 - strlen(HDR1));
    cr_assert(!strncmp(err.msg, want, strlen(want)), "%s vs %s", err.msg, want);
    free(text);
}

/* Every prefix of a valid text, and random byte edits of it, either parse
 * or fail with a located message: never a crash, never an unprefixed error. */
Test(parse, truncated_and_mutated_text_never_crashes)
{
    struct oc_graph *g = every_op_graph();
    char *text = print_str(g);
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    cr_assert_not_null(buf);
    int ok = 0, bad = 0;
    for (size_t cut = 0; cut <= n; cut += 3) {
        memcpy(buf, text, cut);
        buf[cut] = 0;
        struct oc_err err = {0};
        struct oc_graph *h = oc_graph_parse(buf, "cut.oc", &err);
        if (h) {
            ok++;
            oc_graph_free(h);
        } else {
            bad++;
            cr_assert(!strncmp(err.msg, "cut.oc:", 7) && err.code != OC_OK, "cut %zu: %s", cut,
                      err.msg);
        }
    }
    cr_assert(ok > 0 && bad > 0);
    static const char alphabet[] = "%=,:[]\"\\# \n0123456789.e-+abcxyznaif";
    uint64_t s = 12345;
    for (int iter = 0; iter < 1500; iter++) {
        memcpy(buf, text, n + 1);
        for (int e = 0; e < 3; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(s >> 33) % n;
            buf[pos] = alphabet[(s >> 20) % (sizeof alphabet - 1)];
        }
        struct oc_err err = {0};
        struct oc_graph *h = oc_graph_parse(buf, "mut.oc", &err);
        if (h) {
            /* whatever parsed must print and re-parse to the same text */
            char *t1 = print_str(h);
            struct oc_graph *h2 = parse_ok(t1, "mut2.oc");
            char *t2 = print_str(h2);
            cr_assert_str_eq(t1, t2);
            free(t1);
            free(t2);
            oc_graph_free(h2);
            oc_graph_free(h);
        } else {
            cr_assert(!strncmp(err.msg, "mut.oc:", 7) && err.code != OC_OK, "iter %d: %s", iter,
                      err.msg);
        }
    }
    free(buf);
    free(text);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- verifier */

static struct oc_graph *small_graph(void)
{
    struct oc_graph *g = oc_graph_new("v");
    oc_tensor x = named(g, OC_OP_INPUT, "x", 0, 0, 0, OC_F32, OC_SHAPE(2, 3));
    oc_tensor p = named(g, OC_OP_PARAM, "p", OC_INIT_ZEROS, 0, 0, OC_F32, OC_SHAPE(2, 3));
    oc_tensor e = un(g, OC_OP_EXP, x, A());
    oc_tensor s = bin(g, OC_OP_ADD, e, p);
    oc_graph_set_output(g, "s", s);
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_verify(g, &err), OC_OK, "%s", err.msg);
    return g;
}

static void expect_verify_error(struct oc_graph *g, enum oc_status code, const char *fragment)
{
    struct oc_err err = {0};
    cr_assert_eq(oc_graph_verify(g, &err), code, "verify: %s", err.msg);
    cr_assert(strstr(err.msg, fragment), "message \"%s\" lacks \"%s\"", err.msg, fragment);
    oc_graph_free(g);
}

Test(parse, verifier_errors)
{
    struct oc_graph *g = small_graph();
    g->nodes[2]->shape = OC_SHAPE(3, 2);
    expect_verify_error(g, OC_ERR_SHAPE, "node %2 (exp): recorded type f32[3,2] but operands give f32[2,3]");

    g = small_graph();
    g->nodes[2]->inputs[0] = 3;
    expect_verify_error(g, OC_ERR_INVALID, "node %2 (exp): operand 0 refers to %3, which does not precede it");

    g = small_graph();
    g->nodes[3]->ninputs = 1;
    expect_verify_error(g, OC_ERR_INVALID, "add: expects 2 operand(s), got 1");

    g = small_graph();
    g->nodes[1]->attrs.name = g->nodes[0]->attrs.name;
    expect_verify_error(g, OC_ERR_INVALID, "node %1: name \"x\" also used by %0");

    g = small_graph();
    g->outputs[0].node = 9;
    expect_verify_error(g, OC_ERR_INVALID, "output \"s\": refers to missing node %9");

    g = small_graph();
    oc_tensor in2[2] = {{0}, {2}};
    struct oc_attrs a = A();
    oc_tensor t = oc_graph_add(g, OC_OP_ASSIGN, in2, 2, &a, 0, NULL);
    cr_assert(!oc_valid(t), "assign to an input was accepted");
    expect_verify_error(g, OC_ERR_INVALID, "target %0 is a input");
}

/* A printed graph whose recorded type is wrong does not parse back. */
Test(parse, printed_invalid_graph_fails_to_parse)
{
    struct oc_graph *g = small_graph();
    g->nodes[3]->shape = OC_SHAPE(6); /* the printed type disagrees with add's */
    char *t = print_str(g);
    struct oc_err err = {0};
    cr_assert_null(oc_graph_parse(t, "inv.oc", &err));
    cr_assert(strstr(err.msg, "inv.oc:5:") && strstr(err.msg, "f32[6]") &&
                  strstr(err.msg, "f32[2,3]"),
              "%s", err.msg);
    free(t);
    oc_graph_free(g);
}

/* ---------------------------------------------------------------- DOT */

static int count(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

Test(parse, dot_output)
{
    struct oc_graph *g = every_op_graph();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(oc_graph_dot(g, f), OC_OK);
    fclose(f);
    cr_assert(!strncmp(buf, "digraph \"every_op\" {\n", 21), "%.60s", buf);
    cr_assert(len > 2 && !strcmp(buf + len - 2, "}\n"));
    int edges = g->noutputs;
    for (int i = 0; i < g->nnodes; i++) edges += g->nodes[i]->ninputs;
    cr_assert_eq(count(buf, " -> "), edges);
    cr_assert_eq(count(buf, "label=\"output "), g->noutputs);
    char want[64];
    for (int i = 0; i < g->nnodes; i++) {
        snprintf(want, sizeof want, "  n%d [", i);
        cr_assert_eq(count(buf, want), 1, "node %d not declared once", i);
    }
    /* ids, ops, attributes and types appear; quotes and backslashes are escaped */
    cr_assert(strstr(buf, "label=\"%0 input \\\"x\\\" label=\\\"in \\\\\\\"quoted"), "%s", buf);
    cr_assert(strstr(buf, "matmul trans_a=0 trans_b=1\\nf32[2,4]\""), "%s", buf);
    cr_assert(strstr(buf, "output needs quotes\""), "%s", buf);
    /* no raw newline inside a string, every string closed on its line */
    for (char *line = buf; *line;) {
        char *end = strchr(line, '\n');
        cr_assert_not_null(end);
        int in_str = 0;
        for (char *p = line; p < end; p++) {
            if (in_str && *p == '\\') p++;
            else if (*p == '"') in_str = !in_str;
        }
        cr_assert(!in_str, "unterminated string in: %.*s", (int)(end - line), line);
        line = end + 1;
    }
    free(buf);
    oc_graph_free(g);
}
