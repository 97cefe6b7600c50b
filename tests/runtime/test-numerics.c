/* test-numerics.c - OC_CHECK_NUMERICS=1 (runtime/numerics.c): the run
 * fails at the first kernel writing a NaN or an infinity, and the message
 * names that kernel, the graph node, the element and the value.
 *
 * The graph takes the log of an input holding a negative number and a
 * zero (NaN and -inf) and reduces it: fused, the log lives inside a row
 * kernel that stores only the sums, so the message names the sum node and
 * lists the kernel's nodes; unfused, it names the log node itself. With the
 * knob off the same run succeeds and returns the non-finite values; a
 * finite input passes with it on; a value that was already non-finite in
 * an input is traced to that input; f64 graphs are checked too; and the
 * CUDA executor, on the host emulation of the device, fails the same way.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../passes/kir.h"
#include "../../runtime/runtime.h"
#include "../helpers/helpers.h"

static void setup(void)
{
    unsetenv("OC_FUSION");
    unsetenv("OC_CHECK_NUMERICS");
    unsetenv("OC_DEBUG");
}

TestSuite(numerics, .init = setup);

struct lgraph {
    struct oc_graph *g;
    int log, sum;
};

/* y = sum over axis 1 of 3 * log(x), x [2,4] */
static struct lgraph log_graph(enum oc_dtype dt)
{
    struct lgraph L;
    L.g = oc_graph_new("logsum");
    oc_tensor x = oc_input(L.g, "x", dt, OC_SHAPE(2, 4));
    oc_tensor l = oc_log(L.g, x);
    oc_tensor y = oc_sum(L.g, oc_scale(L.g, l, 3.0), 2u, 0);
    oc_output(L.g, "y", y);
    cr_assert_eq(oc_graph_status(L.g), OC_OK, "%s", L.g->err.msg);
    L.log = l.id;
    L.sum = y.id;
    return L;
}

/* row 0: log(-2) = nan at element 1; row 1: log(0) = -inf at element 4 */
static const double bad_x[8] = {1, -2, 3, 4, 0, 5, 6, 7};
static const double good_x[8] = {1, 2, 3, 4, 0.5, 5, 6, 7};

static struct oc_exec *compile(const struct oc_graph *g, const char *dev, int fusion)
{
    struct oc_exec *ex = NULL;
    struct oc_err err = {0};
    struct oc_compile_opts o = oc_compile_defaults();
    o.fusion = fusion;
    o.nthreads = 1;
    cr_assert_eq(oc_compile(g, dev, &o, &ex, &err), OC_OK, "%s", err.msg);
    return ex;
}

static enum oc_status run(struct oc_exec *ex, enum oc_dtype dt, const double *x, struct oc_err *err)
{
    struct oc_buf b = oc_test_buf(dt, OC_SHAPE(2, 4), x);
    struct oc_err e = {0};
    cr_assert_eq(oc_exec_set(ex, "x", &b, &e), OC_OK, "%s", e.msg);
    oc_buf_free(&b);
    return oc_exec_run(ex, 0, err);
}

/* The name of the kernel computing graph node `node`. */
static const char *kernel_of(const struct oc_exec *ex, int node)
{
    const struct oc_kprog *p = oc_exec_program(ex);
    for (int i = 0; i < p->nkernel; i++)
        for (int m = 0; m < p->kernel[i]->nmember; m++)
            if (p->kernel[i]->member[m] == node) return p->kernel[i]->name;
    cr_assert_fail("no kernel computes node %%%d", node);
    return NULL;
}

static void expect_in(const char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_in(const char *msg, const char *fmt, ...)
{
    static char shown[1024];
    if (getenv("OC_TEST_VERBOSE") && strcmp(msg, shown)) fprintf(stderr, "%s\n", msg), snprintf(shown, sizeof shown, "%s", msg);
    char want[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    cr_assert(strstr(msg, want), "the message lacks \"%s\":\n%s", want, msg);
}

Test(numerics, fused_kernel_fails_naming_the_stored_node_and_its_members)
{
    setenv("OC_CHECK_NUMERICS", "1", 1);
    struct lgraph L = log_graph(OC_F32);
    struct oc_exec *ex = compile(L.g, "cpu", 1);
    struct oc_err err = {0};
    cr_assert_eq(run(ex, OC_F32, bad_x, &err), OC_ERR_NUMERIC, "%s", err.msg);
    /* one kernel: the log is inlined into the row sum, which alone is stored */
    cr_assert_eq(oc_exec_program(ex)->nkernel, 1);
    expect_in(err.msg, "OC_CHECK_NUMERICS: kernel %s (#0 of 1)", kernel_of(ex, L.sum));
    expect_in(err.msg, "wrote nan at element 0 [0] of node %%%d (sum, f32[2])", L.sum);
    expect_in(err.msg, "(2 of 2 elements non-finite)");
    expect_in(err.msg, "its operands are finite; the kernel computes log, mul, sum");
    expect_in(err.msg, "OC_FUSION=0");
    /* a finite input passes, with the right values */
    oc_err_clear(&err);
    cr_assert_eq(run(ex, OC_F32, good_x, &err), OC_OK, "%s", err.msg);
    struct oc_buf y;
    cr_assert_eq(oc_exec_get(ex, "y", &y, &err), OC_OK, "%s", err.msg);
    cr_assert_float_eq(oc_buf_get(&y, 0), 3 * log(24.0), 1e-4);
    cr_assert_float_eq(oc_buf_get(&y, 1), 3 * log(105.0), 1e-4);
    oc_buf_free(&y);
    oc_exec_free(ex);
    oc_graph_free(L.g);
}

Test(numerics, off_the_run_succeeds_and_returns_the_non_finite_values)
{
    struct lgraph L = log_graph(OC_F32);
    struct oc_exec *ex = compile(L.g, "cpu", 1);
    struct oc_err err = {0};
    cr_assert_eq(run(ex, OC_F32, bad_x, &err), OC_OK, "%s", err.msg);
    struct oc_buf y;
    cr_assert_eq(oc_exec_get(ex, "y", &y, &err), OC_OK, "%s", err.msg);
    cr_assert(isnan(oc_buf_get(&y, 0)));
    cr_assert(isinf(oc_buf_get(&y, 1)) && oc_buf_get(&y, 1) < 0);
    oc_buf_free(&y);
    oc_exec_free(ex);
    /* "0" is off too */
    setenv("OC_CHECK_NUMERICS", "0", 1);
    ex = compile(L.g, "cpu", 1);
    cr_assert_eq(run(ex, OC_F32, bad_x, &err), OC_OK, "%s", err.msg);
    oc_exec_free(ex);
    oc_graph_free(L.g);
}

Test(numerics, unfused_names_the_exact_primitive)
{
    setenv("OC_CHECK_NUMERICS", "1", 1);
    for (int f64 = 0; f64 < 2; f64++) {
        enum oc_dtype dt = f64 ? OC_F64 : OC_F32;
        struct lgraph L = log_graph(dt);
        struct oc_exec *ex = compile(L.g, "cpu", 0);
        struct oc_err err = {0};
        cr_assert_eq(run(ex, dt, bad_x, &err), OC_ERR_NUMERIC, "%s", err.msg);
        expect_in(err.msg, "kernel %s", kernel_of(ex, L.log));
        expect_in(err.msg, "wrote nan at element 1 [0,1] of node %%%d (log, %s[2,4])", L.log,
                  oc_dtype_name(dt));
        expect_in(err.msg, "(2 of 8 elements non-finite)");
        cr_assert_null(strstr(err.msg, "operand"), "the input was finite: %s", err.msg);
        /* zero alone: -inf */
        double z[8] = {1, 2, 3, 4, 0, 5, 6, 7};
        oc_err_clear(&err);
        cr_assert_eq(run(ex, dt, z, &err), OC_ERR_NUMERIC, "%s", err.msg);
        expect_in(err.msg, "wrote -inf at element 4 [1,0] of node %%%d (log", L.log);
        oc_err_clear(&err);
        cr_assert_eq(run(ex, dt, good_x, &err), OC_OK, "%s", err.msg);
        oc_exec_free(ex);
        oc_graph_free(L.g);
    }
}

Test(numerics, a_non_finite_input_is_traced_to_the_input)
{
    setenv("OC_CHECK_NUMERICS", "1", 1);
    struct oc_graph *g = oc_graph_new("scale");
    oc_tensor x = oc_input(g, "x", OC_F32, OC_SHAPE(2, 4));
    oc_tensor w = oc_param(g, "w", OC_F32, OC_SHAPE(2, 4), OC_INIT_ONES, 0, 0);
    oc_tensor y = oc_mul(g, x, w);
    oc_output(g, "y", y);
    struct oc_exec *ex = compile(g, "cpu", 1);
    struct oc_err err = {0};
    double v[8] = {1, 2, 3, 4, 5, 6, INFINITY, 8};
    cr_assert_eq(run(ex, OC_F32, v, &err), OC_ERR_NUMERIC, "%s", err.msg);
    expect_in(err.msg, "wrote inf at element 6 [1,2] of node %%%d (mul, f32[2,4])", y.id);
    expect_in(err.msg, "came in through its operand %%%d (input, f32[2,4] \"x\"), which already held inf "
                       "at element 6 [1,2]", x.id);
    oc_exec_free(ex);
    oc_graph_free(g);
}

/* Two parameter updates of different shapes run as one grouped kernel
 * (fusion rule 4): the slots scanned are the group's, and the message
 * names the group and the member that wrote the value. */
Test(numerics, grouped_kernel_names_the_member)
{
    setenv("OC_CHECK_NUMERICS", "1", 1);
    unsetenv("OC_FUSE_GROUP");
    struct oc_graph *g = oc_graph_new("updates");
    oc_tensor s = oc_input(g, "s", OC_F32, OC_SCALAR);
    oc_tensor w1 = oc_param(g, "w1", OC_F32, OC_SHAPE(3, 4), OC_INIT_ONES, 0, 0);
    oc_tensor w2 = oc_param(g, "w2", OC_F32, OC_SHAPE(5), OC_INIT_ONES, 0, 0);
    oc_tensor u1 = oc_mul(g, w1, s), u2 = oc_div(g, w2, s);
    oc_assign(g, w1, u1);
    oc_assign(g, w2, u2);
    oc_output(g, "s2", oc_scale(g, s, 2.0));
    cr_assert_eq(oc_graph_status(g), OC_OK, "%s", g->err.msg);
    struct oc_exec *ex = compile(g, "cpu", 1);
    const struct oc_kprog *p = oc_exec_program(ex);
    const struct oc_kernel *grp = NULL;
    for (int i = 0; i < p->nkernel; i++)
        if (oc_kir_is_group(p->kernel[i])) grp = p->kernel[i];
    cr_assert_not_null(grp, "the two updates are grouped");
    struct oc_buf v = oc_test_buf(OC_F32, OC_SCALAR, (const double[]){2});
    struct oc_err err = {0};
    cr_assert_eq(oc_exec_set(ex, "s", &v, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_OK, "%s", err.msg);
    /* s = 0: w2 / 0 is inf, w1 * 0 is finite */
    ((float *)v.data)[0] = 0;
    cr_assert_eq(oc_exec_set(ex, "s", &v, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_ERR_NUMERIC, "%s", err.msg);
    const char *member = NULL;
    for (int i = 0; i < grp->ngroup; i++)
        for (int m = 0; m < grp->group[i]->nmember; m++)
            if (grp->group[i]->member[m] == u2.id) member = grp->group[i]->name;
    cr_assert_not_null(member);
    expect_in(err.msg, "kernel %s (#", grp->name);
    expect_in(err.msg, "), in its member %s, wrote inf at element 0 [0] of node %%%d (div, f32[5])", member,
              u2.id);
    expect_in(err.msg, "(5 of 5 elements non-finite)");
    oc_exec_free(ex);
    /* ungrouped, the update kernel itself writes the param in place */
    setenv("OC_FUSE_GROUP", "0", 1);
    ex = compile(g, "cpu", 1);
    for (int i = 0; i < oc_exec_program(ex)->nkernel; i++)
        cr_assert(!oc_kir_is_group(oc_exec_program(ex)->kernel[i]));
    oc_err_clear(&err);
    cr_assert_eq(oc_exec_set(ex, "s", &v, &err), OC_OK, "%s", err.msg);
    cr_assert_eq(oc_exec_run(ex, 0, &err), OC_ERR_NUMERIC, "%s", err.msg);
    expect_in(err.msg, "kernel %s (#", kernel_of(ex, u2.id));
    expect_in(err.msg, ") wrote inf at element 0 [0] of node %%%d (div, f32[5])", u2.id);
    oc_buf_free(&v);
    oc_exec_free(ex);
    oc_graph_free(g);
}

/* The CUDA executor on the host emulation of the device: the written
 * buffers are copied back after each launch and scanned the same way. */
Test(numerics, cuda_executor_on_the_emulated_device, .timeout = 300)
{
    setenv("OC_CHECK_NUMERICS", "1", 1);
    setenv("OC_CUDA_EMULATE", "1", 1);
    setenv("OC_EMU_CACHE_DIR", OC_BINARY_DIR "/tests/emu-cache", 0);
    struct lgraph L = log_graph(OC_F32);
    for (int fusion = 1; fusion >= 0; fusion--) {
        struct oc_exec *ex = compile(L.g, "cuda", fusion);
        struct oc_err err = {0};
        cr_assert_eq(run(ex, OC_F32, bad_x, &err), OC_ERR_NUMERIC, "fusion %d: %s", fusion, err.msg);
        int node = fusion ? L.sum : L.log;
        expect_in(err.msg, "OC_CHECK_NUMERICS: kernel %s", kernel_of(ex, node));
        expect_in(err.msg, "wrote nan at element %d [0%s] of node %%%d (%s", fusion ? 0 : 1,
                  fusion ? "" : ",1", node, fusion ? "sum" : "log");
        oc_err_clear(&err);
        cr_assert_eq(run(ex, OC_F32, good_x, &err), OC_OK, "fusion %d: %s", fusion, err.msg);
        oc_exec_free(ex);
    }
    /* off: the non-finite values come back */
    unsetenv("OC_CHECK_NUMERICS");
    struct oc_exec *ex = compile(L.g, "cuda", 1);
    struct oc_err err = {0};
    cr_assert_eq(run(ex, OC_F32, bad_x, &err), OC_OK, "%s", err.msg);
    struct oc_buf y;
    cr_assert_eq(oc_exec_get(ex, "y", &y, &err), OC_OK, "%s", err.msg);
    cr_assert(isnan(oc_buf_get(&y, 0)) && isinf(oc_buf_get(&y, 1)));
    oc_buf_free(&y);
    oc_exec_free(ex);
    oc_graph_free(L.g);
}
