/* cli.h - the `oodc` command's verbs. Each returns the process exit code:
 * 0 success, 1 failure while running, 2 usage or input error. */
#ifndef OODC_CLI_H
#define OODC_CLI_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int oc_cmd_graph(int argc, char **argv);      /* graph print|dot|eval|grad */
int oc_cmd_graph_grad(int argc, char **argv); /* graph grad FILE --loss NAME --wrt A,B ... */
int oc_cmd_metrics(int argc, char **argv);    /* metrics --in FILE --out FILE [--json] */
int oc_cmd_train(int argc, char **argv);      /* train --model M --data D --out DIR ... */
int oc_cmd_eval_acc(int argc, char **argv);   /* eval-acc --checkpoint FILE [--json] */
int oc_cmd_eval(int argc, char **argv);       /* eval --checkpoint FILE --ood NAME=SPEC ... */
int oc_cmd_run(int argc, char **argv);        /* run [--preset paper] ... */
int oc_cmd_bench(int argc, char **argv);      /* bench heads|train|scorer ... */
int oc_cmd_compile(int argc, char **argv);    /* compile --checkpoint FILE --scorer NAME --out DIR ... */

/* Benchmarks (the bench folder, built into oodc). */
int oc_bench_train(int argc, char **argv);
int oc_bench_heads(int argc, char **argv);
int oc_bench_scorer(int argc, char **argv);
int oc_bench_conv(int argc, char **argv);

/* Prints "oodc <verb>: message" to stderr; returns 2 (usage/input error). */
int oc_cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option parsing shared by the verbs. oc_cli_flag matches argv[*i] against
 * "--name VALUE" or "--name=VALUE": returns 1 and sets *val (advancing *i
 * past a separate value), or sets *missing when the value is absent;
 * returns 0 when argv[*i] is another option. */
static inline int oc_cli_flag(int argc, char **argv, int *i, const char *name, const char **val,
                              int *missing)
{
    size_t len = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, len) != 0) return 0;
    if (a[len] == '=') {
        *val = a + len + 1;
        return 1;
    }
    if (a[len] != 0) return 0;
    if (*i + 1 >= argc) {
        *missing = 1;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

/* A decimal integer in [lo, hi], the whole string; 0 on success. */
static inline int oc_cli_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

#endif
