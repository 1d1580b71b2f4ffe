/*
 * report_int.h — what the parts of `pgark report` share.
 *
 * The report is built as one JSON document (report.c gathers it: the receiver's
 * status.json and RPO history, the drill and verify records, the backups and the
 * restorable windows of every repository), its KPIs judged from it alone
 * (report_kpi.c, pure), then printed as text or JSON, or rendered as one HTML page
 * (report_html.c). The --json output is that document.
 */
#ifndef PGARK_OPS_REPORT_INT_H
#define PGARK_OPS_REPORT_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The time a record's name starts with ("20261201T101500Z..." is UTC), in Unix
 * microseconds; -1 when it does not start with one. */
int64_t report_name_time(const char *name);

/* The p-th percentile (0..100, nearest rank) of n values (sorted here); 0 when n is 0. */
double report_percentile(double *v, size_t n, double p);

/*
 * Judge the KPIs of one cluster's section of the report (as report.c builds it: "targets",
 * "receiver", "rpo_history", "drills", "verify") at now_us, and set its "kpis" (an array
 * of {"name", "label", "value", "display", "target", "target_display", "met", "detail"},
 * met true, false, or null when it cannot be told) and "ok" (no KPI missed). Returns the
 * number of KPIs missed.
 */
int report_judge(json_t *cluster, int64_t now_us);

/* "3d 4h" / "12.3 s" / "250 ms": a duration for people, into buf (>= 32). */
char *report_duration(double seconds, char *buf, size_t cap);

/* The whole report as one self-contained HTML page (no external asset, no script): the
 * KPI table of each cluster, a chart of the RPO per tier over the period and one of the
 * RTO of each drill, the drills, verify runs, backups and windows. Caller frees. */
char *report_html(json_t *report);

#endif
