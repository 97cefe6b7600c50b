/* main.c - the `oodc` command: verb dispatch, --help, --version and the
 * global options before the verb. Each verb lives in its own cmd-*.c file
 * and returns the process exit code (0 ok, 1 failure while running, 2 usage
 * or input error).
 *
 * The global options are the CLI form of the debug knobs of CONVENTIONS.md
 * ("Seeing inside"): each sets its environment variable for this process,
 * so every layer reads one source of truth. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OODC_VERSION "0.1.0"

int oc_cli_usage_error(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "oodc %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

struct verb {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

static const struct verb verbs[] = {
    {"run", oc_cmd_run, "train every method and evaluate every scorer; write report/ (the main job)"},
    {"train", oc_cmd_train, "train a Wide ResNet with a head on a dataset"},
    {"eval", oc_cmd_eval, "score in-distribution and OOD sets, tune T/eps, write results.json"},
    {"eval-acc", oc_cmd_eval_acc, "test accuracy of a checkpoint"},
    {"metrics", oc_cmd_metrics, "FPR95, detection error, AUROC, AUPR-In/Out of two score files"},
    {"compile", oc_cmd_compile, "compile a deployable scorer ahead of time (object, shared library, header)"},
    {"bench", oc_cmd_bench, "benchmarks: heads, train, scorer"},
    {"graph", oc_cmd_graph, "print|dot|eval|grad a graph in the IR text form"},
};

struct global {
    const char *name;  /* --no-fusion */
    const char *usage; /* as listed in --help */
    const char *env;   /* the variable it sets */
    const char *value; /* fixed value, or NULL: the next argument */
    int numeric;       /* the next argument must be a level 0..9 */
    const char *summary;
};

static const struct global globals[] = {
    {"--debug", "--debug N", "OC_DEBUG", NULL, 1,
     "1 kernels and timings, 2 fusion decisions, 3 generated code, 4 IR after each pass"},
    {"--no-fusion", "--no-fusion", "OC_FUSION", "0", 0, "one kernel per primitive"},
    {"--check-numerics", "--check-numerics", "OC_CHECK_NUMERICS", "1", 0,
     "stop at the first kernel writing NaN/Inf, naming it and its graph node"},
    {"--cache-dir", "--cache-dir DIR", "OC_CACHE_DIR", NULL, 0, "the compiled-kernel cache"},
    {"--no-cache", "--no-cache", "OC_NO_CACHE", "1", 0, "neither read nor write the kernel cache"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: oodc [global options] <verb> [options]   (oodc <verb> --help for a verb's options)\n\n"
               "verbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        fprintf(f, "  %-9s %s%s\n", verbs[i].name, verbs[i].summary,
                verbs[i].fn ? "" : " [not built yet]");
    fprintf(f, "\nglobal options (before the verb; each sets the environment variable shown):\n");
    for (size_t i = 0; i < sizeof globals / sizeof *globals; i++)
        fprintf(f, "  %-20s %s (%s)\n", globals[i].usage, globals[i].summary, globals[i].env);
}

/* Applies the global options at argv[1..]; returns how many arguments they
 * took, or -1 after a usage error. */
static int apply_globals(int argc, char **argv)
{
    int i = 1;
    while (i < argc && !strncmp(argv[i], "--", 2)) {
        const struct global *o = NULL;
        for (size_t k = 0; k < sizeof globals / sizeof *globals && !o; k++)
            if (!strcmp(argv[i], globals[k].name)) o = &globals[k];
        if (!o) break; /* --help, --version, or an unknown option: main decides */
        const char *val = o->value;
        if (!val) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "oodc: %s needs a value\n", o->name);
                return -1;
            }
            val = argv[++i];
            if (o->numeric) {
                char *end;
                long v = strtol(val, &end, 10);
                if (*end || v < 0 || v > 9) {
                    fprintf(stderr, "oodc: %s: '%s' is not a level 0..9\n", o->name, val);
                    return -1;
                }
            }
        }
        if (setenv(o->env, val, 1)) {
            fprintf(stderr, "oodc: cannot set %s\n", o->env);
            return -1;
        }
        i++;
    }
    return i - 1;
}

int main(int argc, char **argv)
{
    int shift = apply_globals(argc, argv);
    if (shift < 0) return 2;
    argc -= shift;
    argv += shift;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("oodc %s\n", OODC_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++) {
        if (strcmp(argv[1], verbs[i].name)) continue;
        if (!verbs[i].fn)
            return oc_cli_usage_error(verbs[i].name, "not built yet in this version of oodc");
        return verbs[i].fn(argc - 1, argv + 1);
    }
    if (!strncmp(argv[1], "--", 2))
        fprintf(stderr, "oodc: unknown global option '%s'\n", argv[1]);
    else
        fprintf(stderr, "oodc: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
