/*
 * report_html.c — `report --html FILE`: the report as one page that needs nothing else
 * (no script, no font, no image file: the charts are inline SVG, drawn here), so that it
 * can be mailed, archived or opened from a file share as it is.
 */
#include "report_int.h"

#include "pgark/mem.h"
#include "pgark/units.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 760 /* chart size */
#define H 220
#define ML 64 /* margins: left (the axis' labels), right, top, bottom */
#define MR 16
#define MT 14
#define MB 30

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static double jnum(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static void cell(struct buf *b, const char *text)
{
    buf_append_str(b, "<td>");
    buf_append_xml_escaped(b, text);
    buf_append_str(b, "</td>");
}

/* A y axis from 0 to top with three labels and grid lines. */
static void y_axis(struct buf *b, double top)
{
    char a[32];
    for (int i = 0; i <= 2; i++) {
        double v = top * i / 2;
        double y = MT + (H - MT - MB) * (1 - (double)i / 2);
        buf_appendf(b,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                    "<text x=\"%d\" y=\"%.1f\" class=\"axis\" text-anchor=\"end\">%s</text>",
                    ML, y, W - MR, y, ML - 6, y + 4, report_duration(v, a, sizeof(a)));
    }
}

/* The target as a dashed line, or named in the corner when it is above the chart (the
 * scale follows the values, so that they can be read). */
static void target_line(struct buf *b, double target, double top, const char *what)
{
    char a[32];
    if (target > top) {
        buf_appendf(b,
                    "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">%s %s, "
                    "above the chart</text>",
                    W - MR, MT + 10, what, report_duration(target, a, sizeof(a)));
        return;
    }
    double y = MT + (H - MT - MB) * (1 - target / top);
    buf_appendf(b,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"target\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"axis\" text-anchor=\"end\">%s %s</text>",
                ML, y, W - MR, y, W - MR, y - 4, what, report_duration(target, a, sizeof(a)));
}

static void rpo_chart(struct buf *b, json_t *c, int64_t since_s, int64_t now_s)
{
    json_t *pts = json_object_get(json_object_get(c, "rpo_history"), "points");
    double target = jnum(json_object_get(c, "targets"), "rpo_target_ms") / 1000;
    buf_append_str(b, "<h3>RPO over the period</h3>\n");
    if (json_array_size(pts) == 0) {
        buf_append_str(b, "<p class=\"none\">No RPO history in the period: the receiver keeps a "
                          "sample a minute in its spool and ships it to the repositories.</p>\n");
        return;
    }
    double top = 0;
    size_t i;
    json_t *p;
    json_array_foreach(pts, i, p)
    {
        for (size_t t = 1; t <= 2; t++) {
            json_t *v = json_array_get(p, t);
            if (json_is_number(v) && json_number_value(v) > top)
                top = json_number_value(v);
        }
    }
    top = top > 0 ? top * 1.2 : target;
    double span = (double)(now_s - since_s);
    buf_appendf(b,
                "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "role=\"img\" aria-label=\"RPO per tier over the period\">",
                W, H, W, H);
    y_axis(b, top);
    target_line(b, target, top, "rpo_target");
    const char *cls[] = {"local", "offsite"};
    for (size_t t = 1; t <= 2; t++) {
        struct buf line = BUF_INIT;
        size_t n = 0;
        double lx = 0, ly = 0;
        json_array_foreach(pts, i, p)
        {
            json_t *v = json_array_get(p, t);
            if (!json_is_number(v))
                continue;
            double x =
                ML + (W - ML - MR) *
                         ((double)json_integer_value(json_array_get(p, 0)) - (double)since_s) /
                         span;
            double y = MT + (H - MT - MB) * (1 - json_number_value(v) / top);
            buf_appendf(&line, "%s%.1f,%.1f", n++ ? " " : "", x, y);
            lx = x, ly = y;
        }
        if (n > 1)
            buf_appendf(b, "<polyline class=\"%s\" points=\"%s\"/>", cls[t - 1],
                        (const char *)line.data);
        else if (n == 1) /* one sample: a dot */
            buf_appendf(b, "<circle class=\"%s\" r=\"3\" cx=\"%.1f\" cy=\"%.1f\"/>", cls[t - 1], lx,
                        ly);
        buf_free(&line);
    }
    buf_appendf(b,
                "<text x=\"%d\" y=\"%d\" class=\"axis\">%s</text>"
                "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">now</text></svg>\n",
                ML, H - 8, "the period's start", W - MR, H - 8);
    buf_append_str(b, "<p class=\"legend\"><span class=\"local\">&#9632;</span> local tier "
                      "<span class=\"offsite\">&#9632;</span> off-site tier, the worst of each "
                      "step</p>\n");
}

static void rto_chart(struct buf *b, json_t *c)
{
    json_t *list = json_object_get(json_object_get(c, "drills"), "list");
    double target = jnum(json_object_get(c, "targets"), "rto_target_ms") / 1000;
    buf_append_str(b, "<h3>RTO of each drill</h3>\n");
    size_t n = 0, i;
    json_t *d;
    double top = 0;
    json_array_foreach(list, i, d)
    {
        double r = jnum(d, "rto_ms");
        if (r >= 0) {
            n++;
            if (r / 1000 > top)
                top = r / 1000;
        }
    }
    if (!n) {
        buf_append_str(b, "<p class=\"none\">No drill in the period got as far as the "
                          "target.</p>\n");
        return;
    }
    top *= 1.1;
    buf_appendf(b,
                "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "role=\"img\" aria-label=\"RTO of each drill\">",
                W, H, W, H);
    y_axis(b, top);
    double slot = (double)(W - ML - MR) / (double)n, k = 0;
    json_array_foreach(list, i, d)
    {
        double r = jnum(d, "rto_ms") / 1000;
        if (r < 0)
            continue;
        double h = (H - MT - MB) * r / top;
        char a[32];
        buf_appendf(b,
                    "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
                    "<title>",
                    strcmp(jstr(d, "result"), "passed") ? "failed"
                    : r <= target                       ? "met"
                                                        : "missed",
                    ML + k * slot + slot * 0.15, MT + (H - MT - MB) - h, slot * 0.7, h);
        buf_append_xml_escaped(b, jstr(d, "name"));
        buf_appendf(b, ": %s</title></rect>", report_duration(r, a, sizeof(a)));
        k++;
    }
    target_line(b, target, top, "rto_target");
    buf_append_str(b, "</svg>\n");
}

static void kpi_table(struct buf *b, json_t *c)
{
    buf_append_str(b, "<table class=\"kpi\"><tr><th>KPI</th><th>value</th><th>target</th>"
                      "<th>status</th><th>detail</th></tr>\n");
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(c, "kpis"), i, k)
    {
        json_t *met = json_object_get(k, "met");
        const char *st = json_is_true(met) ? "met" : json_is_false(met) ? "missed" : "n/a";
        buf_appendf(b, "<tr class=\"%s\" id=\"kpi-%s\">",
                    json_is_true(met)    ? "met"
                    : json_is_false(met) ? "missed"
                                         : "na",
                    jstr(k, "name"));
        cell(b, jstr(k, "label"));
        cell(b, jstr(k, "display"));
        cell(b, jstr(k, "target_display"));
        cell(b, st);
        cell(b, jstr(k, "detail"));
        buf_append_str(b, "</tr>\n");
    }
    buf_append_str(b, "</table>\n");
}

static void drills_table(struct buf *b, json_t *c)
{
    json_t *d = json_object_get(c, "drills");
    buf_appendf(b, "<h3>Drills: %lld, %lld passed</h3>\n",
                (long long)json_integer_value(json_object_get(d, "count")),
                (long long)json_integer_value(json_object_get(d, "passed")));
    if (!json_array_size(json_object_get(d, "list")))
        return;
    buf_append_str(b, "<table><tr><th>started</th><th>repository</th><th>target</th>"
                      "<th>result</th><th>RTO</th><th>RPO</th><th>why</th></tr>\n");
    size_t i;
    json_t *e;
    char a[32], r[32];
    json_array_foreach(json_object_get(d, "list"), i, e)
    {
        buf_append_str(b, "<tr>");
        cell(b, jstr(e, "time"));
        cell(b, jstr(e, "repository"));
        cell(b, jstr(e, "target"));
        cell(b, jstr(e, "result"));
        cell(b, jnum(e, "rto_ms") >= 0 ? report_duration(jnum(e, "rto_ms") / 1000, a, sizeof(a))
                                       : "-");
        cell(b, jnum(e, "rpo_seconds") >= 0 ? report_duration(jnum(e, "rpo_seconds"), r, sizeof(r))
                                            : "-");
        cell(b, jstr(e, "error"));
        buf_append_str(b, "</tr>\n");
    }
    buf_append_str(b, "</table>\n");
}

static void rest_tables(struct buf *b, json_t *c)
{
    json_t *v = json_object_get(c, "verify");
    char a[32], s[32];
    buf_appendf(b, "<h3>Verify: %lld runs, %lld passed</h3>\n",
                (long long)json_integer_value(json_object_get(v, "count")),
                (long long)json_integer_value(json_object_get(v, "passed")));
    size_t i;
    json_t *e;
    buf_append_str(b, "<h3>Backups</h3>\n<table><tr><th>repository</th><th>backups</th>"
                      "<th>newest</th><th>stored</th><th>deduplication</th></tr>\n");
    json_array_foreach(json_object_get(c, "backups"), i, e)
    {
        buf_append_str(b, "<tr>");
        cell(b, jstr(e, "repository"));
        if (json_object_get(e, "error")) {
            buf_append_str(b, "<td colspan=\"4\">");
            buf_append_xml_escaped(b, jstr(e, "error"));
            buf_append_str(b, "</td></tr>\n");
            continue;
        }
        snprintf(a, sizeof(a), "%lld", (long long)json_integer_value(json_object_get(e, "count")));
        cell(b, a);
        if (jnum(e, "newest_age_seconds") >= 0) {
            report_duration(jnum(e, "newest_age_seconds"), a, sizeof(a));
            strncat(a, " ago", sizeof(a) - strlen(a) - 1);
        } else {
            snprintf(a, sizeof(a), "-");
        }
        cell(b, a);
        cell(b, size_format((uint64_t)json_integer_value(json_object_get(e, "stored_bytes")), s,
                            sizeof(s)));
        if (jnum(e, "dedup_ratio") >= 0)
            snprintf(a, sizeof(a), "%.2fx", jnum(e, "dedup_ratio"));
        else
            snprintf(a, sizeof(a), "-");
        cell(b, a);
        buf_append_str(b, "</tr>\n");
    }
    buf_append_str(b, "</table>\n<h3>Restorable window</h3>\n<table><tr><th>repository</th>"
                      "<th>timeline</th><th>from</th><th>to</th></tr>\n");
    json_array_foreach(json_object_get(c, "windows"), i, e)
    {
        buf_append_str(b, "<tr>");
        cell(b, jstr(e, "repository"));
        snprintf(a, sizeof(a), "%lld",
                 (long long)json_integer_value(json_object_get(e, "timeline")));
        cell(b, a);
        cell(b, json_is_string(json_object_get(e, "from")) ? jstr(e, "from") : "(no backup)");
        cell(b, json_is_string(json_object_get(e, "to")) ? jstr(e, "to") : "(no commit)");
        buf_append_str(b, "</tr>\n");
    }
    buf_append_str(b, "</table>\n");
}

char *report_html(json_t *report)
{
    struct buf b = BUF_INIT;
    int64_t now = 0, since = 0;
    time_parse(jstr(report, "generated"), &now);
    time_parse(jstr(report, "since"), &since);
    buf_append_str(
        &b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<title>pgark report</title>\n<style>\n"
            "body{font-family:sans-serif;margin:2em;color:#222}\n"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}\n"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;"
            "vertical-align:top}\n"
            "tr.met td:nth-child(4){color:#176b1f;font-weight:bold}\n"
            "tr.missed td:nth-child(4){color:#b00020;font-weight:bold}\n"
            "tr.missed{background:#fdecee}\n"
            ".grid{stroke:#ddd}.target{stroke:#b00020;stroke-dasharray:4 3}\n"
            ".axis{font-size:11px;fill:#555}\n"
            "polyline{fill:none;stroke-width:1.5}\n"
            "polyline.local,span.local{stroke:#1f5fbf;color:#1f5fbf}circle.local{fill:#1f5fbf}\n"
            "polyline.offsite,span.offsite{stroke:#e07b00;color:#e07b00}"
            "circle.offsite{fill:#e07b00}\n"
            "rect.met{fill:#3a8d45}rect.missed{fill:#e07b00}rect.failed{fill:#b00020}\n"
            ".none{color:#777}\n"
            "</style></head><body>\n<h1>pgark disaster-recovery report</h1>\n");
    buf_append_str(&b, "<p>Generated ");
    buf_append_xml_escaped(&b, jstr(report, "generated"));
    buf_appendf(&b, " by pgark %s, over the last %lld days (since ", jstr(report, "pgark_version"),
                (long long)json_integer_value(json_object_get(report, "days")));
    buf_append_xml_escaped(&b, jstr(report, "since"));
    buf_append_str(&b, ").</p>\n");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(report, "clusters"), i, c)
    {
        json_int_t missed = json_integer_value(json_object_get(c, "kpis_missed"));
        buf_append_str(&b, "<h2>Cluster ");
        buf_append_xml_escaped(&b, jstr(c, "cluster"));
        if (missed)
            buf_appendf(&b, ": %lld KPI%s missed</h2>\n", (long long)missed,
                        missed == 1 ? "" : "s");
        else
            buf_append_str(&b, ": every KPI met</h2>\n");
        kpi_table(&b, c);
        rpo_chart(&b, c, since / 1000000, now / 1000000);
        rto_chart(&b, c);
        drills_table(&b, c);
        rest_tables(&b, c);
    }
    buf_append_str(&b, "</body></html>\n");
    return buf_steal(&b);
}
