/* cli.h - the `oodc` command's verbs. Each returns the process exit code:
 * 0 success, 1 failure while running, 2 usage or input error. */
#ifndef OODC_CLI_H
#define OODC_CLI_H

int oc_cmd_graph(int argc, char **argv);      /* graph print|dot|eval|grad */
int oc_cmd_graph_grad(int argc, char **argv); /* graph grad FILE --loss NAME --wrt A,B ... */
int oc_cmd_metrics(int argc, char **argv);    /* metrics --in FILE --out FILE [--json] */

/* Prints "oodc <verb>: message" to stderr; returns 2 (usage/input error). */
int oc_cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
