/* test-report.c - the report (ood/report.c) from hand-made evaluation
 * results: the Markdown tables in the paper's layout, results.csv (one row
 * per OOD set x method), results.json (the documented keys, percentages,
 * null for untuned T/eps) and index.html (one section per OOD set holding
 * its ROC and PR charts and one histogram per method as inline SVG, labels
 * escaped, no scripts or external references). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../ood/eval.h"
#include "../helpers/helpers.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static int count(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

/* Two models (baseline: two methods; vib: one), two OOD sets. */
struct fixture {
    struct oc_ood_set sets[2];
    struct oc_eval_result models[2];
    struct oc_report rep;
};

static double *scores(int64_t n, double shift, double scale, int k)
{
    double *v = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = shift + scale * sin(0.37 * (double)(i + 1) * (k + 1)) + 0.001 * (double)i;
    return v;
}

static void add(struct oc_eval_result *m, const char *scorer, int ood, double T, double eps,
                double shift)
{
    struct oc_eval_row *r = &m->rows[m->nrows++];
    memset(r, 0, sizeof *r);
    r->scorer = oc_scorer_find(scorer);
    cr_assert_not_null(r->scorer);
    r->ood = ood;
    r->T = T;
    r->eps = eps;
    r->n_in = 120;
    r->n_out = 80;
    r->in_scores = scores(r->n_in, shift, 1, m->nrows);
    r->out_scores = scores(r->n_out, 0, 1, m->nrows + 7);
    struct oc_err err = {0};
    cr_assert_eq(oc_metrics_compute(r->in_scores, r->n_in, r->out_scores, r->n_out, &r->m, &err), OC_OK,
                 "%s", err.msg);
}

static void make(struct fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->sets[0].name, sizeof fx->sets[0].name, "gaussian");
    snprintf(fx->sets[0].label, sizeof fx->sets[0].label, "Gaussian Noise");
    snprintf(fx->sets[1].name, sizeof fx->sets[1].name, "photos-crop");
    snprintf(fx->sets[1].label, sizeof fx->sets[1].label, "Photos <crop & \"resize\">");
    snprintf(fx->models[0].model, sizeof fx->models[0].model, "baseline");
    fx->models[0].accuracy = 93.76;
    fx->models[0].n_test = 120;
    fx->models[0].rows = calloc(4, sizeof(struct oc_eval_row));
    snprintf(fx->models[1].model, sizeof fx->models[1].model, "vib");
    fx->models[1].accuracy = 93.71;
    fx->models[1].n_test = 120;
    fx->models[1].rows = calloc(2, sizeof(struct oc_eval_row));
    for (int j = 0; j < 2; j++) {
        add(&fx->models[0], "baseline", j, NAN, NAN, 1.0 + j);
        add(&fx->models[0], "odin", j, 1000, 0.0014, 2.0);
        add(&fx->models[1], "vib", j, NAN, NAN, 0.5);
    }
    fx->rep = (struct oc_report){.title = "test report", .config = "a <config> line", .nmodels = 2,
                                 .models = fx->models, .nood = 2, .ood = fx->sets};
}

static void unmake(struct fixture *fx)
{
    for (int i = 0; i < 2; i++) oc_eval_result_free(&fx->models[i]);
}

static char dir[64];

static void write_report(struct fixture *fx)
{
    snprintf(dir, sizeof dir, "/tmp/oc-test-report-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    make(fx);
    struct oc_err err = {0};
    cr_assert_eq(oc_report_write(dir, &fx->rep, &err), OC_OK, "%s", err.msg);
}

static char *file(const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return slurp(p);
}

static void cleanup(void)
{
    const char *names[] = {"results.md", "results.csv", "results.json", "index.html"};
    char p[128];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

Test(report, markdown_tables)
{
    struct fixture fx;
    make(&fx);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    oc_report_tables(f, &fx.rep);
    fclose(f);
    cr_expect(strstr(buf, "Table 1: Out-of-distribution detection performance"));
    cr_expect(strstr(buf, "| Out-of-distribution dataset | Method | FPR at 95% TPR"));
    cr_expect(strstr(buf, "Table 2: Classification performance"));
    cr_expect(strstr(buf, "| Baseline | 93.76 |"), "%s", buf);
    cr_expect(strstr(buf, "| VIB | 93.71 |"), "%s", buf);
    /* the set's name on the first row of its group only */
    cr_expect_eq(count(buf, "| Gaussian Noise |"), 1);
    cr_expect_eq(count(buf, "|  | ODIN |"), 2);
    /* the paper's precision: FPR with one decimal, the rest with two */
    const struct oc_eval_row *r = &fx.models[0].rows[0];
    char want[160];
    snprintf(want, sizeof want, "| Gaussian Noise | Baseline | %.1f | %.2f | %.2f | %.2f | %.2f | - | - |",
             100 * r->m.fpr95, 100 * r->m.detection_error, 100 * r->m.auroc, 100 * r->m.aupr_in,
             100 * r->m.aupr_out);
    cr_expect(strstr(buf, want), "missing %s in\n%s", want, buf);
    cr_expect(strstr(buf, "| 1000 | 0.0014 |"), "chosen T and eps are reported");
    free(buf);
    unmake(&fx);
}

Test(report, files_and_csv)
{
    struct fixture fx;
    write_report(&fx);
    char *md = file("results.md");
    cr_expect(strstr(md, "# test report"));
    cr_expect(strstr(md, "Table 1"));
    char *csv = file("results.csv");
    cr_expect_eq(strncmp(csv, "ood,method,head,fpr95,detection_error,auroc,aupr_in,aupr_out,T,eps", 66), 0);
    cr_expect_eq(count(csv, "\n"), 1 + 6, "a header and one row per OOD set x method");
    /* every row has the header's 11 fields */
    for (char *line = strchr(csv, '\n') + 1; *line; line = strchr(line, '\n') + 1)
        cr_expect_eq(count(line, ",") - count(strchr(line, '\n'), ","), 10);
    cr_expect(strstr(csv, "gaussian,ODIN,baseline,"));
    cr_expect(strstr(csv, "photos-crop,VIB,vib,"));
    free(md);
    free(csv);
    unmake(&fx);
    cleanup();
}

/* The number after "key": in s, NAN for null. */
static double json_num(const char *s, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(s, k);
    cr_assert_not_null(p, "no key %s", key);
    p += strlen(k);
    if (!strncmp(p, "null", 4)) return NAN;
    return strtod(p, NULL);
}

Test(report, json)
{
    struct fixture fx;
    write_report(&fx);
    char *js = file("results.json");
    cr_expect_eq(js[0], '[');
    cr_expect_eq(count(js, "{"), 6);
    const char *keys[] = {"\"method\": ", "\"ood\": ", "\"fpr95\": ", "\"detection_error\": ",
                          "\"auroc\": ", "\"aupr_in\": ", "\"aupr_out\": ", "\"T\": ", "\"eps\": "};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) cr_expect_eq(count(js, keys[k]), 6, "%s", keys[k]);
    /* the first object is Gaussian x Baseline: percentages, no T/eps */
    char *obj = js;
    char *end = strchr(obj, '}');
    *end = 0;
    const struct oc_eval_row *r = &fx.models[0].rows[0];
    cr_expect(strstr(obj, "\"method\": \"Baseline\""));
    cr_expect(strstr(obj, "\"ood\": \"gaussian\""));
    cr_expect(fabs(json_num(obj, "fpr95") - 100 * r->m.fpr95) < 1e-6);
    cr_expect(fabs(json_num(obj, "auroc") - 100 * r->m.auroc) < 1e-6);
    cr_expect(fabs(json_num(obj, "aupr_out") - 100 * r->m.aupr_out) < 1e-6);
    cr_expect(isnan(json_num(obj, "T")) && isnan(json_num(obj, "eps")));
    /* the ODIN objects carry the chosen values */
    char *odin = strstr(end + 1, "\"method\": \"ODIN\"");
    cr_assert_not_null(odin);
    cr_expect_eq(json_num(odin, "T"), 1000);
    cr_expect_eq(json_num(odin, "eps"), 0.0014);
    /* the label's quotes are escaped */
    cr_expect(strstr(end + 1, "Photos <crop & \\\"resize\\\">"));
    free(js);
    unmake(&fx);
    cleanup();
}

Test(report, html)
{
    struct fixture fx;
    write_report(&fx);
    char *h = file("index.html");
    cr_expect_eq(strncmp(h, "<!DOCTYPE html>", 15), 0);
    cr_expect(strstr(h, "</html>"));
    cr_expect(!strstr(h, "<script"), "no scripts");
    cr_expect(!strstr(h, "src=\"http") && !strstr(h, "href=\"http"), "no external resources");
    /* both tables */
    cr_expect(strstr(h, "Table 1") && strstr(h, "Table 2"));
    cr_expect_eq(count(h, "<tr>") + count(h, "<tr class=\"grp\">"), 1 + 6 + 1 + 2, "table rows");
    /* escaped labels, never raw */
    cr_expect(strstr(h, "Photos &lt;crop &amp; &quot;resize&quot;&gt;"));
    cr_expect(!strstr(h, "<crop"));
    cr_expect(strstr(h, "a &lt;config&gt; line"));
    /* per OOD set: a section with ROC + PR charts and 3 histograms */
    const char *ids[] = {"<section id=\"ood-gaussian\">", "<section id=\"ood-photos-crop\">"};
    for (int j = 0; j < 2; j++) {
        char *s = strstr(h, ids[j]);
        cr_assert_not_null(s, "no section for %s", ids[j]);
        char *e = strstr(s, "</section>");
        cr_assert_not_null(e);
        *e = 0;
        cr_expect_eq(count(s, "<svg"), 2 + 3, "%s: svg charts", ids[j]);
        cr_expect_eq(count(s, "</svg>"), 2 + 3);
        cr_expect_eq(count(s, "<polyline"), 2 * 3, "one ROC and one PR curve per method");
        cr_expect(strstr(s, "ROC") && strstr(s, "Precision-recall"));
        /* every polyline point is inside the plot area */
        for (char *p = strstr(s, "points=\""); p; p = strstr(p + 1, "points=\"")) {
            char *q = p + 8;
            double x, y;
            int used;
            while (sscanf(q, "%lf,%lf %n", &x, &y, &used) == 2) {
                cr_expect(x >= 47.9 && x <= 328.1 && y >= 27.9 && y <= 248.1, "point %g,%g", x, y);
                q += used;
            }
        }
        *e = '<';
    }
    free(h);
    unmake(&fx);
    cleanup();
}

Test(report, unwritable_folder)
{
    struct fixture fx;
    make(&fx);
    struct oc_err err = {0};
    cr_expect_eq(oc_report_write("/proc/oc-no-such-dir", &fx.rep, &err), OC_ERR_IO);
    cr_expect(strstr(err.msg, "/proc/oc-no-such-dir"), "%s", err.msg);
    unmake(&fx);
}
