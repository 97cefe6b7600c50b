/* cmd-grad.c - `oodc graph grad`: autodiff at the command line. Loads a graph
 * in the IR text form, appends the reverse graph of a named scalar output
 * with respect to named inputs/params/state (passes/autodiff.c), adds each
 * gradient as an output "grad_<name>" and prints the whole graph, which
 * `oodc graph eval` can run again. With --output DIR it also evaluates the
 * gradients in the reference interpreter on --input values and writes
 * DIR/grad_<name>.npy. */
#include "cli.h"

#include "../ir/ir.h"
#include "../passes/passes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VERB "graph grad"
#define MAXN 256

static void usage(FILE *f)
{
    fprintf(f,
            "usage: oodc graph grad FILE --loss NAME --wrt NAME[,NAME...]\n"
            "                       [--input NAME=PATH.npy ... --output DIR] [--f64] [--seed S]\n"
            "Appends d LOSS / d NAME for each NAME (an input, param or state) to the graph\n"
            "in FILE, names each gradient output grad_NAME and prints the graph. LOSS is a\n"
            "scalar float output of the graph. With --output, the gradients are evaluated\n"
            "by the reference interpreter (f32, or f64 with --f64) on the --input values and\n"
            "written as DIR/grad_NAME.npy; params and state not given are initialized from\n"
            "their initializers with --seed (default 0).\n");
}

struct opts {
    const char *file, *loss, *outdir;
    char *wrt[MAXN];
    int nwrt;
    char *in_name[MAXN];
    const char *in_path[MAXN];
    int nin;
    int f64;
    uint64_t seed;
};

/* Splits a comma-separated list in place. */
static int split_wrt(struct opts *o, char *list)
{
    for (char *p = strtok(list, ","); p; p = strtok(NULL, ",")) {
        if (o->nwrt == MAXN) return oc_cli_usage_error(VERB, "too many --wrt names");
        o->wrt[o->nwrt++] = p;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "--f64")) {
            o->f64 = 1;
        } else if (!strcmp(a, "--loss") || !strcmp(a, "--wrt") || !strcmp(a, "--input") ||
                   !strcmp(a, "--output") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc) return oc_cli_usage_error(VERB, "%s needs a value", a);
            char *v = argv[++i];
            if (!strcmp(a, "--loss")) {
                o->loss = v;
            } else if (!strcmp(a, "--output")) {
                o->outdir = v;
            } else if (!strcmp(a, "--seed")) {
                char *end;
                o->seed = strtoull(v, &end, 10);
                if (!*v || *end) return oc_cli_usage_error(VERB, "bad --seed '%s'", v);
            } else if (!strcmp(a, "--wrt")) {
                if (split_wrt(o, v)) return 2;
            } else {
                char *eq = strchr(v, '=');
                if (!eq || eq == v || !eq[1])
                    return oc_cli_usage_error(VERB, "--input wants NAME=PATH, got '%s'", v);
                if (o->nin == MAXN) return oc_cli_usage_error(VERB, "too many --input");
                *eq = 0;
                o->in_name[o->nin] = v;
                o->in_path[o->nin] = eq + 1;
                o->nin++;
            }
        } else if (a[0] == '-') {
            return oc_cli_usage_error(VERB, "unknown option '%s'", a);
        } else if (!o->file) {
            o->file = a;
        } else {
            return oc_cli_usage_error(VERB, "unexpected argument '%s'", a);
        }
    }
    if (!o->file) return oc_cli_usage_error(VERB, "no graph file given");
    if (!o->loss) return oc_cli_usage_error(VERB, "--loss NAME is required");
    if (o->nwrt == 0) return oc_cli_usage_error(VERB, "--wrt NAME[,NAME...] is required");
    if (o->nin && !o->outdir)
        return oc_cli_usage_error(VERB, "--input needs --output DIR (where the gradients go)");
    return 0;
}

static int make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        return oc_cli_usage_error(VERB, "%s exists and is not a directory", dir);
    }
    if (mkdir(dir, 0777) != 0)
        return oc_cli_usage_error(VERB, "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

/* Runs g and writes the gradient outputs. */
static int evaluate(const struct oc_graph *g, const struct opts *o, const int *out_idx)
{
    struct oc_err err = {0};
    struct oc_interp *it = oc_interp_new(g, o->f64);
    if (!it) {
        fprintf(stderr, "oodc " VERB ": out of memory\n");
        return 1;
    }
    int rc = 2;
    for (int i = 0; i < o->nin; i++) {
        if (oc_graph_find_named(g, o->in_name[i]) < 0) {
            oc_cli_usage_error(VERB, "--input %s: the graph has no input, param or state named '%s'",
                               o->in_name[i], o->in_name[i]);
            goto out;
        }
        struct oc_buf b = {0};
        if (oc_npy_read(o->in_path[i], &b, &err)) {
            oc_cli_usage_error(VERB, "--input %s: %s", o->in_name[i], err.msg);
            goto out;
        }
        enum oc_status s = oc_interp_set(it, o->in_name[i], &b, &err);
        oc_buf_free(&b);
        if (s) {
            oc_cli_usage_error(VERB, "--input %s: %s", o->in_name[i], err.msg);
            goto out;
        }
    }
    if (oc_interp_run(it, o->seed, &err)) {
        /* an unbound input is a usage error; anything else failed while running */
        rc = err.code == OC_ERR_INVALID ? 2 : 1;
        fprintf(stderr, "oodc " VERB ": %s: %s\n", o->file, err.msg);
        goto out;
    }
    if (make_dir(o->outdir)) goto out;
    for (int i = 0; i < o->nwrt; i++) {
        const struct oc_output *out = &g->outputs[out_idx[i]];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.npy", o->outdir, out->name);
        if (oc_npy_write(path, oc_interp_value(it, out->node), &err)) {
            fprintf(stderr, "oodc " VERB ": %s\n", err.msg);
            rc = 1;
            goto out;
        }
    }
    rc = 0;
out:
    oc_interp_free(it);
    return rc;
}

int oc_cmd_graph_grad(int argc, char **argv)
{
    struct opts o;
    memset(&o, 0, sizeof o);
    int prc = parse_args(argc, argv, &o);
    if (prc < 0) return 0; /* --help */
    if (prc) {
        usage(stderr);
        return prc;
    }

    struct oc_err err = {0};
    struct oc_graph *g = oc_graph_load(o.file, &err);
    if (!g) {
        fprintf(stderr, "oodc " VERB ": %s\n", err.msg);
        return 2;
    }
    int rc = 2;
    int wrt[MAXN], grads[MAXN], out_idx[MAXN];
    int li = oc_graph_find_output(g, o.loss);
    if (li < 0) {
        oc_cli_usage_error(VERB, "%s: the graph has no output named '%s'", o.file, o.loss);
        goto out;
    }
    for (int i = 0; i < o.nwrt; i++) {
        wrt[i] = oc_graph_find_named(g, o.wrt[i]);
        if (wrt[i] < 0) {
            oc_cli_usage_error(VERB, "--wrt %s: the graph has no input, param or state named '%s'",
                               o.wrt[i], o.wrt[i]);
            goto out;
        }
    }
    if (oc_pass_autodiff(g, g->outputs[li].node, -1, wrt, o.nwrt, grads, &err)) {
        oc_cli_usage_error(VERB, "%s: %s", o.file, err.msg);
        goto out;
    }
    for (int i = 0; i < o.nwrt; i++) {
        char name[512];
        snprintf(name, sizeof name, "grad_%s", o.wrt[i]);
        int dup = oc_graph_find_output(g, name);
        if (dup >= 0) {
            /* the same name twice in --wrt: one output serves both */
            if (g->outputs[dup].node == grads[i]) {
                out_idx[i] = dup;
                continue;
            }
            oc_cli_usage_error(VERB, "%s: the graph already has an output named '%s'", o.file, name);
            goto out;
        }
        if (oc_graph_set_output(g, name, (oc_tensor){grads[i]})) {
            oc_cli_usage_error(VERB, "%s", g->err.msg);
            goto out;
        }
        out_idx[i] = g->noutputs - 1;
    }
    if (oc_graph_verify(g, &err)) {
        fprintf(stderr, "oodc " VERB ": internal error: the gradient graph does not verify: %s\n",
                err.msg);
        rc = 1;
        goto out;
    }
    if (oc_graph_print(g, stdout)) {
        rc = 1;
        goto out;
    }
    fflush(stdout);
    rc = o.outdir ? evaluate(g, &o, out_idx) : 0;
out:
    oc_graph_free(g);
    return rc;
}
