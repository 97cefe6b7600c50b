/* cmd-graph.c - `oodc graph print|dot|eval|grad`: the IR text form at the
 * command line. `eval` runs a graph through the reference interpreter on
 * .npy inputs so any graph can be cross-checked against another framework. */
#include "cli.h"

#include "../ir/ir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void graph_usage(FILE *f)
{
    fprintf(f,
            "usage: oodc graph print FILE\n"
            "       oodc graph dot FILE\n"
            "       oodc graph eval FILE --input NAME=PATH.npy ... --output DIR [--f64] [--seed S]\n"
            "       oodc graph grad FILE --loss NAME --wrt NAME[,NAME...] [--input NAME=PATH.npy ...\n"
            "                       --output DIR] [--f64]\n"
            "eval writes each output of the graph as DIR/<name>.npy (float32, or float64 with\n"
            "--f64; int32 for integer outputs). Params and state not given as inputs are\n"
            "initialized from their initializers with --seed (default 0).\n");
}

static struct oc_graph *load(const char *path)
{
    struct oc_err err = {0};
    struct oc_graph *g = oc_graph_load(path, &err);
    if (!g) fprintf(stderr, "oodc graph: %s\n", err.msg);
    return g;
}

static int make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        return oc_cli_usage_error("graph", "%s exists and is not a directory", dir);
    }
    if (mkdir(dir, 0777) != 0)
        return oc_cli_usage_error("graph", "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

static int cmd_eval(int argc, char **argv)
{
    const char *file = NULL, *outdir = NULL;
    int f64 = 0;
    uint64_t seed = 0;
    struct {
        const char *name, *path;
    } inputs[256];
    int ninputs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--f64")) {
            f64 = 1;
        } else if (!strcmp(a, "--input") || !strcmp(a, "--output") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc) return oc_cli_usage_error("graph eval", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--output")) {
                outdir = v;
            } else if (!strcmp(a, "--seed")) {
                char *end;
                seed = strtoull(v, &end, 10);
                if (!*v || *end) return oc_cli_usage_error("graph eval", "bad --seed '%s'", v);
            } else {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v || !eq[1])
                    return oc_cli_usage_error("graph eval", "--input wants NAME=PATH, got '%s'", v);
                if (ninputs == 256) return oc_cli_usage_error("graph eval", "too many --input");
                inputs[ninputs].name = v;
                inputs[ninputs].path = eq + 1;
                ninputs++;
            }
        } else if (a[0] == '-') {
            return oc_cli_usage_error("graph eval", "unknown option '%s'", a);
        } else if (!file) {
            file = a;
        } else {
            return oc_cli_usage_error("graph eval", "unexpected argument '%s'", a);
        }
    }
    if (!file) return oc_cli_usage_error("graph eval", "no graph file given");
    if (!outdir) return oc_cli_usage_error("graph eval", "--output DIR is required");
    struct oc_graph *g = load(file);
    if (!g) return 2;
    int rc = 2;
    struct oc_err err = {0};
    struct oc_interp *it = oc_interp_new(g, f64);
    if (!it) {
        fprintf(stderr, "oodc graph eval: out of memory\n");
        oc_graph_free(g);
        return 1;
    }
    for (int i = 0; i < ninputs; i++) {
        char name[256];
        size_t n = (size_t)(inputs[i].path - 1 - inputs[i].name);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, inputs[i].name, n);
        name[n] = 0;
        if (oc_graph_find_named(g, name) < 0) {
            fprintf(stderr, "oodc graph eval: --input %s: the graph has no input, param or state named '%s'\n",
                    name, name);
            goto out;
        }
        struct oc_buf b = {0};
        if (oc_npy_read(inputs[i].path, &b, &err)) {
            fprintf(stderr, "oodc graph eval: --input %s: %s\n", name, err.msg);
            goto out;
        }
        enum oc_status s = oc_interp_set(it, name, &b, &err);
        oc_buf_free(&b);
        if (s) {
            fprintf(stderr, "oodc graph eval: --input %s: %s\n", name, err.msg);
            goto out;
        }
    }
    if (oc_interp_run(it, seed, &err)) {
        fprintf(stderr, "oodc graph eval: %s: %s\n", file, err.msg);
        goto out;
    }
    if (g->noutputs == 0) {
        fprintf(stderr, "oodc graph eval: %s: the graph has no outputs\n", file);
        goto out;
    }
    if (make_dir(outdir)) goto out;
    for (int i = 0; i < g->noutputs; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.npy", outdir, g->outputs[i].name);
        if (oc_npy_write(path, oc_interp_value(it, g->outputs[i].node), &err)) {
            fprintf(stderr, "oodc graph eval: %s\n", err.msg);
            rc = 1;
            goto out;
        }
    }
    rc = 0;
out:
    oc_interp_free(it);
    oc_graph_free(g);
    return rc;
}

int oc_cmd_graph(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        graph_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(sub, "grad")) return oc_cmd_graph_grad(argc - 1, argv + 1);
    if (!strcmp(sub, "print") || !strcmp(sub, "dot")) {
        if (argc != 3) return oc_cli_usage_error("graph", "%s takes exactly one FILE", sub);
        struct oc_graph *g = load(argv[2]);
        if (!g) return 2;
        enum oc_status s = !strcmp(sub, "print") ? oc_graph_print(g, stdout) : oc_graph_dot(g, stdout);
        oc_graph_free(g);
        return s ? 1 : 0;
    }
    graph_usage(stderr);
    return oc_cli_usage_error("graph", "unknown subcommand '%s'", sub);
}
