/* cli.h - the `oodc` command's verbs. Each returns the process exit code:
 * 0 success, 1 failure while running, 2 usage or input error. */
#ifndef OODC_CLI_H
#define OODC_CLI_H

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

/* Prints "oodc <verb>: message" to stderr; returns 2 (usage/input error). */
int oc_cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
