/*
 * report_kpi.c — the plan's KPIs, judged from what report.c gathered (report_int.h).
 *
 *   rpo_now_<tier>    the RPO of each tier now (status.json), against rpo_target
 *   rpo_worst_<tier>  its worst over the period (the receiver's history), against rpo_target
 *   rto_last          the RTO of the last drill that measured one, against rto_target
 *   drill_last        the last drill passed
 *   drill_age         the last drill that passed is at most drill_max_age old
 *   verify_last       the last verify found no problem
 *   verify_age        the last verify that found none is at most verify_max_age old
 *
 * A KPI that cannot be told (no receiver on this host, no history yet, no drill that got
 * as far as an RTO) is neither met nor missed: it says why. No drill or verify that
 * passed in the period is a miss: the plan asks for them.
 */
#include "report_int.h"

#include "pgark/cli.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t report_name_time(const char *name)
{
    char text[32];
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        bool digit = c >= '0' && c <= '9';
        if ((i == 8 && c != 'T') || (i == 15 && c != 'Z') || (i != 8 && i != 15 && !digit))
            return -1;
    }
    snprintf(text, sizeof(text), "%.4s-%.2s-%.2s %.2s:%.2s:%.2s", name, name + 4, name + 6,
             name + 9, name + 11, name + 13);
    int64_t us;
    if (time_parse(text, &us) < 0) {
        err_clear();
        return -1;
    }
    return us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double report_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

char *report_duration(double s, char *buf, size_t cap)
{
    if (s < 0)
        s = 0;
    if (s < 1)
        snprintf(buf, cap, "%.0f ms", s * 1000);
    else if (s < 60)
        snprintf(buf, cap, "%.1f s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm %ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 86400)
        snprintf(buf, cap, "%dh %dm", (int)(s / 3600), (int)fmod(s, 3600) / 60);
    else
        snprintf(buf, cap, "%dd %dh", (int)(s / 86400), (int)fmod(s, 86400) / 3600);
    return buf;
}

/* Add one KPI. value < 0 (and met NULL) when it cannot be told; met: 1 met, 0 missed,
 * -1 not known. */
static void kpi(json_t *kpis, const char *name, const char *label, double value, double target,
                int met, const char *detail_fmt, ...) __attribute__((format(printf, 7, 8)));

/* The last KPI added shows text instead of a duration (a result). */
static void kpi_shows(json_t *kpis, const char *text)
{
    json_object_set_new(json_array_get(kpis, json_array_size(kpis) - 1), "display",
                        json_string(text));
}

static void kpi(json_t *kpis, const char *name, const char *label, double value, double target,
                int met, const char *detail_fmt, ...)
{
    char v[32], t[32];
    va_list ap;
    va_start(ap, detail_fmt);
    char *detail = xvasprintf(detail_fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "label", json_string(label));
    json_object_set_new(o, "value",
                        value >= 0 ? json_real(round(value * 1000) / 1000) : json_null());
    json_object_set_new(o, "display",
                        json_string(value >= 0 ? report_duration(value, v, sizeof(v)) : "n/a"));
    json_object_set_new(o, "target", target >= 0 ? json_real(target) : json_null());
    json_object_set_new(o, "target_display",
                        json_string(target >= 0 ? report_duration(target, t, sizeof(t)) : "-"));
    json_object_set_new(o, "met", met < 0 ? json_null() : json_boolean(met));
    json_object_set_new(o, "detail", json_string(detail));
    json_array_append_new(kpis, o);
    free(detail);
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void judge_rpo(json_t *c, json_t *kpis)
{
    json_t *rx = json_object_get(c, "receiver");
    json_t *hist = json_object_get(c, "rpo_history");
    double target = num(json_object_get(c, "targets"), "rpo_target_ms") / 1000;
    size_t i;
    json_t *tier;
    json_array_foreach(json_object_get(rx, "tiers"), i, tier)
    {
        const char *t = json_string_value(tier);
        bool off = !strcmp(t, "offsite");
        char name[32], label[48];
        snprintf(name, sizeof(name), "rpo_now_%s", t);
        snprintf(label, sizeof(label), "RPO now, %s", off ? "off-site" : "local");
        double now = num(json_object_get(rx, "rpo"), t);
        if (!json_is_true(json_object_get(rx, "status")))
            kpi(kpis, name, label, -1, target, -1,
                "no receiver status here (%s): run report on the receiver's host",
                str(rx, "path") ? str(rx, "path") : "status.json");
        else if (now < 0)
            kpi(kpis, name, label, -1, target, -1, "the receiver does not know it yet");
        else
            kpi(kpis, name, label, now, target, now <= target, "%s",
                json_is_true(json_object_get(rx, "running"))
                    ? "the receiver is running"
                    : "the receiver is not running: its last figure, grown by the time since");
        snprintf(name, sizeof(name), "rpo_worst_%s", t);
        snprintf(label, sizeof(label), "RPO worst, %s", off ? "off-site" : "local");
        double worst = num(json_object_get(hist, "worst"), t);
        json_int_t samples = json_integer_value(json_object_get(hist, "samples"));
        if (!samples)
            kpi(kpis, name, label, -1, target, -1,
                "no RPO history in the period (the receiver keeps a sample a minute)");
        else if (worst < 0)
            kpi(kpis, name, label, -1, target, -1, "no value in %lld samples", (long long)samples);
        else
            kpi(kpis, name, label, worst, target, worst <= target, "over %lld sample%s, from %s",
                (long long)samples, samples == 1 ? "" : "s",
                str(hist, "source") ? str(hist, "source") : "?");
    }
}

/* The last entry of list with field key not null, or NULL. */
static json_t *last_with(json_t *list, const char *key, const char *equals)
{
    for (size_t i = json_array_size(list); i-- > 0;) {
        json_t *e = json_array_get(list, i);
        json_t *v = json_object_get(e, key);
        if (!v || json_is_null(v))
            continue;
        if (equals && (!json_is_string(v) || strcmp(json_string_value(v), equals) != 0))
            continue;
        return e;
    }
    return NULL;
}

/* drill_last/drill_age, verify_last/verify_age. */
static void judge_runs(json_t *c, json_t *kpis, const char *what, int64_t now_us, double days)
{
    bool drill = !strcmp(what, "drill");
    json_t *sec = json_object_get(c, drill ? "drills" : "verify");
    json_t *list = json_object_get(sec, "list");
    double max_age =
        num(json_object_get(c, "targets"), drill ? "drill_max_age_ms" : "verify_max_age_ms") / 1000;
    char name[32], label[64];
    snprintf(name, sizeof(name), "%s_last", what);
    snprintf(label, sizeof(label), "last %s", what);
    json_t *last = last_with(list, "result", NULL);
    const char *result = last ? str(last, "result") : NULL;
    const char *shown = !result                     ? "none"
                        : !strcmp(result, "passed") ? "passed"
                        : !strcmp(result, "failed") ? "failed"
                                                    : "could not run";
    const char *why = last ? str(last, drill ? "error" : "first_problem") : NULL;
    if (!last)
        kpi(kpis, name, label, -1, -1, -1, "no %s in the last %.0f days", what, days);
    else if (!strcmp(result, "passed"))
        kpi(kpis, name, label, -1, -1, 1, "%s %s passed", what, str(last, "name"));
    else
        kpi(kpis, name, label, -1, -1, 0, "%s %s %s: %s", what, str(last, "name"), shown,
            why ? why : "(no detail)");
    kpi_shows(kpis, shown);
    snprintf(name, sizeof(name), "%s_age", what);
    snprintf(label, sizeof(label), "age of the last %s that passed", what);
    json_t *good = last_with(list, "result", "passed");
    double age = -1;
    int64_t t;
    if (good && time_parse(str(good, "time"), &t) == 0)
        age = (double)(now_us - t) / 1e6;
    err_clear();
    if (age < 0)
        kpi(kpis, name, label, -1, max_age, 0, "no %s passed in the last %.0f days", what, days);
    else
        kpi(kpis, name, label, age, max_age, age <= max_age, "%s %s", what, str(good, "name"));
    json_object_set_new(sec, "last_passed_age_seconds",
                        age < 0 ? json_null() : cli_json_seconds(age));
}

static void judge_rto(json_t *c, json_t *kpis)
{
    json_t *drills = json_object_get(c, "drills");
    json_t *list = json_object_get(drills, "list");
    double target = num(json_object_get(c, "targets"), "rto_target_ms") / 1000;
    size_t n = 0, i;
    double *v = xcalloc(json_array_size(list) + 1, sizeof(*v));
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_is_number(json_object_get(e, "rto_ms")))
            v[n++] = json_number_value(json_object_get(e, "rto_ms")) / 1000;
    }
    json_t *last = last_with(list, "rto_ms", NULL);
    if (n) {
        double p50 = report_percentile(v, n, 50), max = v[n - 1];
        json_object_set_new(drills, "rto_p50_seconds", cli_json_seconds(p50));
        json_object_set_new(drills, "rto_max_seconds", cli_json_seconds(max));
        double rto = num(last, "rto_ms") / 1000;
        char a[32], b[32];
        kpi(kpis, "rto_last", "RTO of the last drill", rto, target, rto <= target,
            "drill %s (repository %s); over %zu drills p50 %s, max %s", str(last, "name"),
            str(last, "repository"), n, report_duration(p50, a, sizeof(a)),
            report_duration(max, b, sizeof(b)));
    } else {
        json_object_set_new(drills, "rto_p50_seconds", json_null());
        json_object_set_new(drills, "rto_max_seconds", json_null());
        kpi(kpis, "rto_last", "RTO of the last drill", -1, target, -1,
            "no drill in the period got as far as the target");
    }
    free(v);
}

int report_judge(json_t *c, int64_t now_us)
{
    json_t *kpis = json_array();
    double days = num(c, "days");
    judge_rpo(c, kpis);
    judge_rto(c, kpis);
    judge_runs(c, kpis, "drill", now_us, days);
    judge_runs(c, kpis, "verify", now_us, days);
    int missed = 0;
    size_t i;
    json_t *k;
    json_array_foreach(kpis, i, k)
    {
        if (json_is_false(json_object_get(k, "met")))
            missed++;
    }
    json_object_set_new(c, "kpis", kpis);
    json_object_set_new(c, "kpis_missed", json_integer(missed));
    json_object_set_new(c, "ok", json_boolean(missed == 0));
    return missed;
}
