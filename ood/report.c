/* report.c - the report of an evaluation: Table 1 (per OOD set x method:
 * FPR at 95% TPR, detection error, AUROC, AUPR-In, AUPR-Out, in percent, as
 * in the paper) and Table 2 (accuracy per model) as Markdown, the same rows
 * as CSV and JSON, and a self-contained HTML page with, per OOD set, the ROC
 * and precision-recall curves of every method and histograms of their
 * in-distribution and OOD test scores, drawn as inline SVG (no scripts, no
 * network).
 *
 * Data flow: oc_eval_run (eval.c) -> oc_eval_result per model (rows with
 * metrics, chosen T/eps and the test scores) -> here. Curves come from
 * oc_metrics_roc / oc_metrics_pr on the stored scores.
 */
#include "eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* "Baseline", "BIN", ... for a head name. */
static const char *model_label(const char *name, char *buf, size_t n)
{
    if (!strcmp(name, "baseline")) return "Baseline";
    size_t i = 0;
    for (; name[i] && i + 1 < n; i++)
        buf[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    buf[i] = 0;
    return buf;
}

/* ---------------------------------------------------------------- Markdown */

static void fmt_num(char *buf, size_t n, double v, const char *fmt)
{
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, v);
}

void oc_report_tables(FILE *f, const struct oc_report *r)
{
    fprintf(f, "Table 1: Out-of-distribution detection performance for various OOD sets\n\n");
    fprintf(f, "| Out-of-distribution dataset | Method | FPR at 95%% TPR ↓ | Detection Error ↓ | "
               "AUROC ↑ | AUPR-In ↑ | AUPR-Out ↑ | T | eps |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int j = 0; j < r->nood; j++) {
        int first = 1;
        for (int mi = 0; mi < r->nmodels; mi++) {
            const struct oc_eval_result *m = &r->models[mi];
            for (int i = 0; i < m->nrows; i++) {
                const struct oc_eval_row *row = &m->rows[i];
                if (row->ood != j) continue;
                char T[32], eps[32];
                fmt_num(T, sizeof T, row->T, "%g");
                fmt_num(eps, sizeof eps, row->eps, "%g");
                fprintf(f, "| %s | %s | %.1f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n",
                        first ? r->ood[j].label : "", row->scorer->label, 100 * row->m.fpr95,
                        100 * row->m.detection_error, 100 * row->m.auroc, 100 * row->m.aupr_in,
                        100 * row->m.aupr_out, T, eps);
                first = 0;
            }
        }
    }
    fprintf(f, "\nTable 2: Classification performance of various methods\n\n");
    fprintf(f, "| Method | Accuracy |\n|---|---:|\n");
    for (int mi = 0; mi < r->nmodels; mi++) {
        char b[64];
        fprintf(f, "| %s | %.2f |\n", model_label(r->models[mi].model, b, sizeof b),
                r->models[mi].accuracy);
    }
}

/* ---------------------------------------------------------------- CSV and JSON */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fprintf(f, "null");
}

static enum oc_status close_checked(FILE *f, const char *tmp, const char *path, struct oc_err *err)
{
    int bad = ferror(f);
    if (fclose(f) || bad) {
        remove(tmp);
        return oc_err_set(err, OC_ERR_IO, "writing %s failed", path);
    }
    if (rename(tmp, path)) {
        remove(tmp);
        return oc_err_set(err, OC_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    return OC_OK;
}

/* Files are written to PATH.tmp and renamed into place. */
static FILE *open_tmp(const char *path, char *tmp, size_t n, struct oc_err *err)
{
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) oc_err_set(err, OC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    return f;
}

enum oc_status oc_report_write_json(const char *path, const struct oc_report *r,
                                    struct oc_err *err)
{
    char tmp[1200];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return err->code;
    fprintf(f, "[");
    int n = 0;
    for (int j = 0; j < r->nood; j++)
        for (int mi = 0; mi < r->nmodels; mi++) {
            const struct oc_eval_result *m = &r->models[mi];
            for (int i = 0; i < m->nrows; i++) {
                const struct oc_eval_row *row = &m->rows[i];
                if (row->ood != j) continue;
                fprintf(f, "%s\n  {\"method\": ", n++ ? "," : "");
                json_str(f, row->scorer->label);
                fprintf(f, ", \"ood\": ");
                json_str(f, r->ood[j].name);
                fprintf(f, ", \"fpr95\": ");
                json_num(f, 100 * row->m.fpr95);
                fprintf(f, ", \"detection_error\": ");
                json_num(f, 100 * row->m.detection_error);
                fprintf(f, ", \"auroc\": ");
                json_num(f, 100 * row->m.auroc);
                fprintf(f, ", \"aupr_in\": ");
                json_num(f, 100 * row->m.aupr_in);
                fprintf(f, ", \"aupr_out\": ");
                json_num(f, 100 * row->m.aupr_out);
                fprintf(f, ", \"T\": ");
                json_num(f, row->T);
                fprintf(f, ", \"eps\": ");
                json_num(f, row->eps);
                fprintf(f, ", \"scorer\": ");
                json_str(f, row->scorer->name);
                fprintf(f, ", \"head\": ");
                json_str(f, m->model);
                fprintf(f, ", \"ood_label\": ");
                json_str(f, r->ood[j].label);
                fprintf(f, ", \"accuracy\": ");
                json_num(f, m->accuracy);
                fprintf(f, ", \"n_in\": %lld, \"n_out\": %lld}", (long long)row->n_in,
                        (long long)row->n_out);
            }
        }
    fprintf(f, "\n]\n");
    return close_checked(f, tmp, path, err);
}

static enum oc_status write_csv(const char *path, const struct oc_report *r, struct oc_err *err)
{
    char tmp[1200];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return err->code;
    fprintf(f, "ood,method,head,fpr95,detection_error,auroc,aupr_in,aupr_out,T,eps,accuracy\n");
    for (int j = 0; j < r->nood; j++)
        for (int mi = 0; mi < r->nmodels; mi++) {
            const struct oc_eval_result *m = &r->models[mi];
            for (int i = 0; i < m->nrows; i++) {
                const struct oc_eval_row *row = &m->rows[i];
                if (row->ood != j) continue;
                char T[32], eps[32];
                fmt_num(T, sizeof T, row->T, "%g");
                fmt_num(eps, sizeof eps, row->eps, "%g");
                if (!strcmp(T, "-")) T[0] = 0;
                if (!strcmp(eps, "-")) eps[0] = 0;
                fprintf(f, "%s,%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%s,%s,%.4f\n", r->ood[j].name,
                        row->scorer->label, m->model, 100 * row->m.fpr95,
                        100 * row->m.detection_error, 100 * row->m.auroc, 100 * row->m.aupr_in,
                        100 * row->m.aupr_out, T, eps, m->accuracy);
            }
        }
    return close_checked(f, tmp, path, err);
}

static enum oc_status write_md(const char *path, const struct oc_report *r, struct oc_err *err)
{
    char tmp[1200];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return err->code;
    fprintf(f, "# %s\n\n", r->title ? r->title : "OOD detection results");
    if (r->config) fprintf(f, "%s\n\n", r->config);
    oc_report_tables(f, r);
    fprintf(f, "\nScores are confidences (in-distribution high); VIB, VIBY-I and VIBY-II are "
               "reported as log r = -KL. T and eps were chosen on each OOD set's validation split "
               "to minimize FPR at 95%% TPR.\n");
    return close_checked(f, tmp, path, err);
}

/* ---------------------------------------------------------------- HTML and SVG */

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                                      "#393b79", "#ad494a", "#637939", "#843c39"};
#define NPAL (int)(sizeof palette / sizeof *palette)

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Plot area of the curve charts, in SVG pixels. */
#define CW 360
#define CH 300
#define ML 48
#define MT 28
#define PW 280
#define PH 220

static void axes(FILE *f, const char *title, const char *xl, const char *yl)
{
    fprintf(f, "<text x=\"%d\" y=\"18\" class=\"t\">", ML);
    html_text(f, title);
    fprintf(f, "</text>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", ML,
            MT, PW, PH);
    for (int i = 0; i <= 4; i++) {
        double v = i / 4.0;
        int x = ML + (int)(v * PW), y = MT + PH - (int)(v * PH);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"grid\"/>", x, MT, x, MT + PH);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"grid\"/>", ML, y, ML + PW, y);
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%g</text>", x,
                MT + PH + 14, v);
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%g</text>\n", ML - 4,
                y + 4, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"lab\" text-anchor=\"middle\">%s</text>", ML + PW / 2,
            MT + PH + 30, xl);
    fprintf(f, "<text x=\"12\" y=\"%d\" class=\"lab\" text-anchor=\"middle\" transform=\"rotate(-90 12 %d)\">%s</text>\n",
            MT + PH / 2, MT + PH / 2, yl);
}

/* A polyline of a curve, thinned to points at least ~half a pixel apart. */
static void polyline(FILE *f, const double *x, const double *y, int64_t n, const char *color)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", color);
    double lx = -1, ly = -1;
    for (int64_t i = 0; i < n; i++) {
        double px = ML + x[i] * PW, py = MT + PH - y[i] * PH;
        if (i && i + 1 < n && fabs(px - lx) < 0.5 && fabs(py - ly) < 0.5) continue;
        fprintf(f, "%.1f,%.1f ", px, py);
        lx = px;
        ly = py;
    }
    fprintf(f, "\"/>\n");
}

struct series {
    const struct oc_eval_row *row;
    const char *label;
    const char *color;
};

static void legend(FILE *f, const struct series *s, int n, int x0, int y0)
{
    for (int i = 0; i < n; i++) {
        int y = y0 + 14 * i;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>",
                x0, y - 4, x0 + 14, y - 4, s[i].color);
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\">", x0 + 18, y);
        html_text(f, s[i].label);
        fprintf(f, "</text>\n");
    }
}

static enum oc_status curve_chart(FILE *f, const struct series *s, int n, int roc,
                                  struct oc_err *err)
{
    int lw = 120;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" class=\"chart\">\n",
            CW + lw, n * 14 + 40 > CH ? n * 14 + 40 : CH);
    axes(f, roc ? "ROC (in-distribution positive)" : "Precision-recall (in-distribution positive)",
         roc ? "false positive rate" : "recall", roc ? "true positive rate" : "precision");
    if (roc)
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"diag\"/>\n", ML, MT + PH,
                ML + PW, MT);
    for (int i = 0; i < n; i++) {
        const struct oc_eval_row *row = s[i].row;
        struct oc_curve c;
        enum oc_status st =
            roc ? oc_metrics_roc(row->in_scores, row->n_in, row->out_scores, row->n_out, &c, err)
                : oc_metrics_pr(row->in_scores, row->n_in, row->out_scores, row->n_out, 0, &c, err);
        if (st) return st;
        polyline(f, c.x, c.y, c.n, s[i].color);
        oc_curve_free(&c);
    }
    legend(f, s, n, CW, MT + 10);
    fprintf(f, "</svg>\n");
    return OC_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Histograms of the in-distribution (blue) and OOD (orange) test scores of
 * one method over the central 99% of their pooled values (the rest is
 * counted in the edge bins), each normalized to its own count. */
#define HB 30
#define HW 220
#define HH 130
static enum oc_status histogram(FILE *f, const struct oc_eval_row *row, const char *label,
                                struct oc_err *err)
{
    int64_t n = row->n_in + row->n_out;
    double *all = malloc(sizeof(double) * (size_t)n);
    if (!all) return oc_err_set(err, OC_ERR_NOMEM, "report: out of memory");
    memcpy(all, row->in_scores, sizeof(double) * (size_t)row->n_in);
    memcpy(all + row->n_in, row->out_scores, sizeof(double) * (size_t)row->n_out);
    qsort(all, (size_t)n, sizeof *all, cmp_double);
    double lo = all[(int64_t)(0.005 * (double)(n - 1))], hi = all[(int64_t)(0.995 * (double)(n - 1))];
    if (!(hi > lo)) {
        lo = all[0];
        hi = all[n - 1];
    }
    if (!(hi > lo)) hi = lo + 1;
    free(all);
    double h[2][HB] = {{0}}, top = 0;
    for (int w = 0; w < 2; w++) {
        const double *v = w ? row->out_scores : row->in_scores;
        int64_t m = w ? row->n_out : row->n_in;
        for (int64_t i = 0; i < m; i++) {
            int b = (int)floor((v[i] - lo) / (hi - lo) * HB);
            b = b < 0 ? 0 : b >= HB ? HB - 1 : b;
            h[w][b] += 1.0 / (double)m;
        }
        for (int b = 0; b < HB; b++) top = h[w][b] > top ? h[w][b] : top;
    }
    int x0 = 10, y0 = 22, bw = HW / HB;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" class=\"hist\">\n",
            HW + 2 * x0, HH + 44);
    fprintf(f, "<text x=\"%d\" y=\"14\" class=\"t\">", x0);
    html_text(f, label);
    fprintf(f, "</text>\n");
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < HB; b++) {
            double hh = top > 0 ? h[w][b] / top * HH : 0;
            if (hh <= 0) continue;
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.55\"/>",
                    x0 + b * bw, y0 + HH - hh, bw, hh, w ? "#ff7f0e" : "#1f77b4");
        }
    fprintf(f, "\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>", x0, y0 + HH,
            x0 + HW, y0 + HH);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\">%.4g</text>", x0, y0 + HH + 14, lo);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%.4g</text>\n", x0 + HW,
            y0 + HH + 14, hi);
    fprintf(f, "</svg>\n");
    return OC_OK;
}

static void html_tables(FILE *f, const struct oc_report *r)
{
    fprintf(f, "<h2>Table 1: Out-of-distribution detection performance</h2>\n<table>\n"
               "<tr><th>Out-of-distribution dataset</th><th>Method</th><th>FPR at 95%% TPR &darr;</th>"
               "<th>Detection Error &darr;</th><th>AUROC &uarr;</th><th>AUPR-In &uarr;</th>"
               "<th>AUPR-Out &uarr;</th><th>T</th><th>&epsilon;</th></tr>\n");
    for (int j = 0; j < r->nood; j++) {
        int nrows = 0, first = 1;
        for (int mi = 0; mi < r->nmodels; mi++)
            for (int i = 0; i < r->models[mi].nrows; i++) nrows += r->models[mi].rows[i].ood == j;
        for (int mi = 0; mi < r->nmodels; mi++) {
            const struct oc_eval_result *m = &r->models[mi];
            for (int i = 0; i < m->nrows; i++) {
                const struct oc_eval_row *row = &m->rows[i];
                if (row->ood != j) continue;
                fprintf(f, "<tr%s>", first ? " class=\"grp\"" : "");
                if (first) {
                    fprintf(f, "<td rowspan=\"%d\" class=\"set\">", nrows);
                    html_text(f, r->ood[j].label);
                    fprintf(f, "</td>");
                }
                first = 0;
                char T[32], eps[32];
                fmt_num(T, sizeof T, row->T, "%g");
                fmt_num(eps, sizeof eps, row->eps, "%g");
                fprintf(f, "<td class=\"m\">");
                html_text(f, row->scorer->label);
                fprintf(f, "</td><td>%.1f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td>"
                           "<td>%s</td><td>%s</td></tr>\n",
                        100 * row->m.fpr95, 100 * row->m.detection_error, 100 * row->m.auroc,
                        100 * row->m.aupr_in, 100 * row->m.aupr_out, T, eps);
            }
        }
    }
    fprintf(f, "</table>\n<h2>Table 2: Classification performance</h2>\n<table>\n"
               "<tr><th>Method</th><th>Accuracy</th><th>test images</th></tr>\n");
    for (int mi = 0; mi < r->nmodels; mi++) {
        char b[64];
        fprintf(f, "<tr><td>");
        html_text(f, model_label(r->models[mi].model, b, sizeof b));
        fprintf(f, "</td><td>%.2f</td><td>%lld</td></tr>\n", r->models[mi].accuracy,
                (long long)r->models[mi].n_test);
    }
    fprintf(f, "</table>\n");
}

static enum oc_status write_html(const char *path, const struct oc_report *r, struct oc_err *err)
{
    char tmp[1200];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return err->code;
    const char *title = r->title ? r->title : "OOD detection results";
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>");
    html_text(f, title);
    fprintf(f, "</title>\n<style>\n"
               "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}\n"
               "table{border-collapse:collapse;margin:8px 0 24px}\n"
               "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}\n"
               "th{background:#f0f0f0} td:first-child,td.set,td.m{text-align:left}\n"
               "tr.grp td{border-top:2px solid #888} td.set{font-weight:bold;vertical-align:top}\n"
               ".t{font-size:13px;font-weight:bold} .tick{font-size:10px;fill:#444} .lab{font-size:11px}\n"
               ".frame{fill:none;stroke:#888} .grid{stroke:#eee} .diag{stroke:#bbb;stroke-dasharray:4 3}\n"
               ".axis{stroke:#888} .charts{display:flex;flex-wrap:wrap;gap:12px}\n"
               ".hists{display:flex;flex-wrap:wrap;gap:6px} svg{background:#fff}\n"
               ".key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\n"
               "</style></head><body>\n<h1>");
    html_text(f, title);
    fprintf(f, "</h1>\n");
    if (r->config) {
        fprintf(f, "<p>");
        html_text(f, r->config);
        fprintf(f, "</p>\n");
    }
    html_tables(f, r);
    enum oc_status st = OC_OK;
    for (int j = 0; j < r->nood && !st; j++) {
        fprintf(f, "<section id=\"ood-");
        html_text(f, r->ood[j].name);
        fprintf(f, "\">\n<h2>");
        html_text(f, r->ood[j].label);
        fprintf(f, "</h2>\n<div class=\"charts\">\n");
        struct series s[64];
        int n = 0;
        for (int mi = 0; mi < r->nmodels; mi++)
            for (int i = 0; i < r->models[mi].nrows && n < 64; i++) {
                const struct oc_eval_row *row = &r->models[mi].rows[i];
                if (row->ood != j) continue;
                s[n].row = row;
                s[n].label = row->scorer->label;
                s[n].color = palette[n % NPAL];
                n++;
            }
        if ((st = curve_chart(f, s, n, 1, err)) || (st = curve_chart(f, s, n, 0, err))) break;
        fprintf(f, "</div>\n<h3>Test score histograms</h3>\n<p class=\"key\"><span style=\"background:#1f77b4\"></span>in-distribution"
                   "<span style=\"background:#ff7f0e\"></span>");
        html_text(f, r->ood[j].label);
        fprintf(f, "</p>\n<div class=\"hists\">\n");
        for (int i = 0; i < n && !st; i++) st = histogram(f, s[i].row, s[i].label, err);
        fprintf(f, "</div>\n</section>\n");
    }
    fprintf(f, "<p class=\"tick\">Scores are confidences, in-distribution high; VIB/VIBY scores "
               "are log r = -KL. Curves and histograms are on the test splits.</p>\n</body></html>\n");
    if (st) {
        fclose(f);
        remove(tmp);
        return st;
    }
    return close_checked(f, tmp, path, err);
}

enum oc_status oc_report_write(const char *dir, const struct oc_report *r, struct oc_err *err)
{
    struct stat sb;
    if (stat(dir, &sb) && mkdir(dir, 0777) && errno != EEXIST)
        return oc_err_set(err, OC_ERR_IO, "cannot create report folder %s: %s", dir, strerror(errno));
    char path[1100];
    enum oc_status st;
    snprintf(path, sizeof path, "%s/results.md", dir);
    if ((st = write_md(path, r, err))) return st;
    snprintf(path, sizeof path, "%s/results.csv", dir);
    if ((st = write_csv(path, r, err))) return st;
    snprintf(path, sizeof path, "%s/results.json", dir);
    if ((st = oc_report_write_json(path, r, err))) return st;
    snprintf(path, sizeof path, "%s/index.html", dir);
    return write_html(path, r, err);
}
