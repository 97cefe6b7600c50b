/* runner.c - main() of the Criterion stand-in (criterion/criterion.h here):
 * runs every registered test in-process, in suite/name order, with the
 * suite's .init/.fini around each, and prints Criterion-like lines and a
 * summary. Exit status 0 when nothing failed (skips are not failures).
 *   oc-gpu-check [--filter SUBSTRING] [--list] [--verbose]   (--jobs N ignored) */
#include "criterion/criterion.h"

#include <setjmp.h>
#include <stdarg.h>
#include <time.h>

struct test {
    const char *suite, *name;
    void (*fn)(void);
    struct oc_shim_opts o;
};
struct suite {
    const char *name;
    struct oc_shim_opts o;
};

static struct test tests[1024];
static int ntests;
static struct suite suites[64];
static int nsuites;
static jmp_buf jump;
static int failed_now, skipped_now;

void oc_shim_register(const char *suite, const char *name, void (*fn)(void), struct oc_shim_opts o)
{
    if (ntests < 1024) tests[ntests++] = (struct test){suite, name, fn, o};
}

void oc_shim_suite(const char *suite, struct oc_shim_opts o)
{
    if (nsuites < 64) suites[nsuites++] = (struct suite){suite, o};
}

void oc_shim_fail(const char *file, int line, int fatal, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    failed_now = 1;
    if (fatal) longjmp(jump, 1);
}

void oc_shim_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[SKIP] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    skipped_now = 1;
    longjmp(jump, 1);
}

void oc_shim_log(const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int cmp(const void *a, const void *b)
{
    const struct test *x = a, *y = b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs the current test with its fixtures; a fatal assertion or a skip
 * jumps back here. State lives in statics: nothing local survives a
 * longjmp in doubt. */
static const struct test *cur_test;
static const struct suite *cur_suite;

static void run_current(void)
{
    if (!setjmp(jump)) {
        if (cur_suite && cur_suite->o.init) cur_suite->o.init();
        if (cur_test->o.init) cur_test->o.init();
        cur_test->fn();
    }
    if (!setjmp(jump)) {
        if (cur_test->o.fini) cur_test->o.fini();
        if (cur_suite && cur_suite->o.fini) cur_suite->o.fini();
    }
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
        else if (!strncmp(argv[i], "--filter=", 9)) filter = argv[i] + 9;
        else if (!strcmp(argv[i], "--list")) list = 1;
    }
    qsort(tests, (size_t)ntests, sizeof *tests, cmp);
    int pass = 0, fail = 0, skip = 0;
    for (int i = 0; i < ntests; i++) {
        const struct test *t = &tests[i];
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (filter && !strstr(full, filter)) continue;
        if (list) {
            printf("%s\n", full);
            continue;
        }
        cur_test = t;
        cur_suite = NULL;
        for (int j = 0; j < nsuites; j++)
            if (!strcmp(suites[j].name, t->suite)) cur_suite = &suites[j];
        failed_now = skipped_now = 0;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        double t0 = now();
        run_current();
        double dt = now() - t0;
        if (skipped_now && !failed_now) {
            skip++;
        } else if (failed_now) {
            fail++;
            fprintf(stderr, "[FAIL] %s::%s: (%.2fs)\n", t->suite, t->name, dt);
        } else {
            pass++;
            fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, dt);
        }
    }
    if (!list)
        fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
                pass + fail, pass, fail, skip);
    return fail ? 1 : 0;
}
