/* criterion.h - a tiny stand-in for Criterion's test API, for building the
 * GPU test files on a machine that has a GPU but no Criterion (the GPU
 * machines run bench/gpu/check.sh; cmake/cuda.cmake builds
 * build/oc-gpu-check from tests/runtime/test-cuda-conform.c with this
 * directory first on the include path). Only what the CUDA test files and
 * the files they include use: Test / TestSuite (.init, .fini; other
 * options ignored), cr_assert* (fatal: leaves the test), cr_expect*
 * (records and goes on), cr_skip_test, cr_log_*. Tests run in-process, in
 * name order; runner.c holds main(). */
#ifndef OC_CRITERION_SHIM_H
#define OC_CRITERION_SHIM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct oc_shim_opts {
    int oc_shim_unused; /* the first initializer, so the options list may be empty */
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    const char *description;
    int disabled, exit_code, signal;
};

void oc_shim_register(const char *suite, const char *name, void (*fn)(void), struct oc_shim_opts o);
void oc_shim_suite(const char *suite, struct oc_shim_opts o);
/* fatal: 1 leaves the test (longjmp), 0 records and returns */
void oc_shim_fail(const char *file, int line, int fatal, const char *expr, const char *fmt, ...);
void oc_shim_skip(const char *fmt, ...);
void oc_shim_log(const char *level, const char *fmt, ...);

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name(void);                                                              \
    __attribute__((constructor)) static void oc_shim_reg_##suite##_##name(void)                    \
    {                                                                                              \
        struct oc_shim_opts o = {.oc_shim_unused = 0, __VA_ARGS__};                                       \
        oc_shim_register(#suite, #name, suite##_##name, o);                                        \
    }                                                                                              \
    static void suite##_##name(void)

#define TestSuite(suite, ...)                                                                      \
    __attribute__((constructor)) static void oc_shim_suite_##suite(void)                           \
    {                                                                                              \
        struct oc_shim_opts o = {.oc_shim_unused = 0, __VA_ARGS__};                                       \
        oc_shim_suite(#suite, o);                                                                  \
    }

#define OC_SHIM_CHECK(fatal, cond, text, ...)                                                      \
    do {                                                                                           \
        if (!(cond)) oc_shim_fail(__FILE__, __LINE__, fatal, text, "" __VA_ARGS__);              \
    } while (0)

#define cr_assert(cond, ...) OC_SHIM_CHECK(1, cond, #cond, __VA_ARGS__)
#define cr_expect(cond, ...) OC_SHIM_CHECK(0, cond, #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...) OC_SHIM_CHECK(1, !(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_expect_not(cond, ...) OC_SHIM_CHECK(0, !(cond), "!(" #cond ")", __VA_ARGS__)
#define OC_SHIM_CMP(fatal, a, op, b, ...) OC_SHIM_CHECK(fatal, (a) op (b), #a " " #op " " #b, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) OC_SHIM_CMP(1, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) OC_SHIM_CMP(1, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) OC_SHIM_CMP(1, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) OC_SHIM_CMP(1, a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) OC_SHIM_CMP(1, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) OC_SHIM_CMP(1, a, >=, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) OC_SHIM_CMP(0, a, ==, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) OC_SHIM_CMP(0, a, !=, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) OC_SHIM_CMP(0, a, <, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) OC_SHIM_CMP(0, a, <=, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) OC_SHIM_CMP(0, a, >, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) OC_SHIM_CMP(0, a, >=, b, __VA_ARGS__)
#define cr_assert_null(p, ...) OC_SHIM_CHECK(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) OC_SHIM_CHECK(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_null(p, ...) OC_SHIM_CHECK(0, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) OC_SHIM_CHECK(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) OC_SHIM_CHECK(1, !strcmp((a), (b)), #a " equals " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) OC_SHIM_CHECK(0, !strcmp((a), (b)), #a " equals " #b, __VA_ARGS__)
#define cr_assert_fail(...) oc_shim_fail(__FILE__, __LINE__, 1, "failure", "" __VA_ARGS__)
#define cr_expect_fail(...) oc_shim_fail(__FILE__, __LINE__, 0, "failure", "" __VA_ARGS__)
#define cr_skip_test(...) oc_shim_skip("" __VA_ARGS__)
#define cr_log_info(...) oc_shim_log("info", "" __VA_ARGS__)
#define cr_log_warn(...) oc_shim_log("warn", "" __VA_ARGS__)
#define cr_log_error(...) oc_shim_log("error", "" __VA_ARGS__)

#endif
