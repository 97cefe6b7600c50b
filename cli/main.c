/* main.c - the `oodc` command: verb dispatch, --help and --version. Each verb
 * lives in its own cmd-*.c file and returns the process exit code
 * (0 ok, 1 failure while running, 2 usage or input error). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
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

static void usage(FILE *f)
{
    fprintf(f, "usage: oodc <verb> [options]   (oodc <verb> --help for a verb's options)\n\n"
               "verbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        fprintf(f, "  %-9s %s%s\n", verbs[i].name, verbs[i].summary,
                verbs[i].fn ? "" : " [not built yet]");
    fprintf(f, "\nenvironment: OC_DEBUG=1..4, OC_FUSION=0, OC_CACHE_DIR, OC_NO_CACHE=1\n");
}

int main(int argc, char **argv)
{
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
    fprintf(stderr, "oodc: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
