/* test_report.c — how `pgark report` judges the plan's KPIs from what it gathered: each
 * met, missed, or not known (and why), against its own target; the times in record names;
 * the percentiles of the RTO; and the HTML page escaping what it shows. */
#include "../../src/ops/report_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NOW (INT64_C(1800000000) * 1000000) /* 2027-01-15 08:00:00 UTC */

static void test_name_time(void **state)
{
    (void)state;
    assert_true(report_name_time("20270115T080000Z-local") == NOW);
    assert_true(report_name_time("20270115T080000Z") == NOW);
    assert_true(report_name_time("20270115T0800Z") == -1);
    assert_true(report_name_time("2027-01-15T08:00:00Z") == -1);
    assert_true(report_name_time("20271315T080000Z") == -1);
    assert_false(err_is_set());
}

static void test_percentile(void **state)
{
    (void)state;
    double v[] = {9, 1, 5, 3, 7};
    assert_true(report_percentile(v, 5, 50) == 5);
    assert_true(report_percentile(v, 5, 100) == 9);
    assert_true(report_percentile(v, 5, 0) == 1);
    double two[] = {4, 2};
    assert_true(report_percentile(two, 2, 50) == 2);
    assert_true(report_percentile(NULL, 0, 50) == 0);
}

static json_t *cluster(const char *receiver, const char *history, const char *drills,
                       const char *verify)
{
    char *text = xasprintf("{\"cluster\":\"main\",\"days\":30,"
                           "\"targets\":{\"rpo_target_ms\":900000,\"rto_target_ms\":1800000,"
                           "\"drill_max_age_ms\":604800000,\"verify_max_age_ms\":86400000},"
                           "\"receiver\":%s,\"rpo_history\":%s,"
                           "\"drills\":{\"list\":%s},\"verify\":{\"list\":%s}}",
                           receiver, history, drills, verify);
    json_error_t e;
    json_t *c = json_loads(text, 0, &e);
    if (!c)
        fail_msg("bad fixture: %s", e.text);
    free(text);
    return c;
}

static json_t *kpi(json_t *c, const char *name)
{
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(c, "kpis"), i, k)
    {
        if (!strcmp(json_string_value(json_object_get(k, "name")), name))
            return k;
    }
    fail_msg("no KPI %s", name);
    return NULL;
}

static const char *met(json_t *c, const char *name)
{
    json_t *m = json_object_get(kpi(c, name), "met");
    return json_is_true(m) ? "met" : json_is_false(m) ? "missed" : "n/a";
}

static const char *detail(json_t *c, const char *name)
{
    return json_string_value(json_object_get(kpi(c, name), "detail"));
}

#define RX_OK                                                                                      \
    "{\"tiers\":[\"local\",\"offsite\"],\"status\":true,\"running\":true,"                         \
    "\"rpo\":{\"local\":0.4,\"offsite\":12.5}}"
#define HIST_OK "{\"samples\":1440,\"source\":\"spool\",\"worst\":{\"local\":2.1,\"offsite\":40}}"
#define DRILLS_OK                                                                                  \
    "[{\"name\":\"20270110T080000Z-offsite\",\"time\":\"2027-01-10 08:00:00+00\","                 \
    "\"repository\":\"offsite\",\"result\":\"passed\",\"rto_ms\":90000},"                          \
    "{\"name\":\"20270114T080000Z-local\",\"time\":\"2027-01-14 08:00:00+00\","                    \
    "\"repository\":\"local\",\"result\":\"passed\",\"rto_ms\":30000}]"
#define VERIFY_OK                                                                                  \
    "[{\"name\":\"20270115T020000Z\",\"time\":\"2027-01-15 02:00:00+00\",\"result\":\"passed\"}]"

static void test_all_met(void **state)
{
    (void)state;
    json_t *c = cluster(RX_OK, HIST_OK, DRILLS_OK, VERIFY_OK);
    assert_int_equal(report_judge(c, NOW), 0);
    assert_true(json_is_true(json_object_get(c, "ok")));
    const char *names[] = {"rpo_now_local",     "rpo_now_offsite", "rpo_worst_local",
                           "rpo_worst_offsite", "rto_last",        "drill_last",
                           "drill_age",         "verify_last",     "verify_age"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(met(c, names[i]), "met");
    /* the last drill's RTO, with the p50 and max of the period */
    json_t *k = kpi(c, "rto_last");
    assert_true(json_real_value(json_object_get(k, "value")) == 30);
    assert_string_equal(json_string_value(json_object_get(k, "display")), "30.0 s");
    assert_string_equal(json_string_value(json_object_get(k, "target_display")), "30m 0s");
    assert_string_equal(detail(c, "rto_last"), "drill 20270114T080000Z-local (repository local); "
                                               "over 2 drills p50 30.0 s, max 1m 30s");
    assert_string_equal(json_string_value(json_object_get(kpi(c, "drill_age"), "display")),
                        "1d 0h");
    assert_string_equal(json_string_value(json_object_get(kpi(c, "verify_age"), "display")),
                        "6h 0m");
    json_decref(c);
}

static void test_missed(void **state)
{
    (void)state;
    /* The receiver stopped an hour ago: its RPO grew past the target. The last drill that
     * passed is 8 days old, the one after it failed; the last verify found problems and
     * the one that passed is two days old. */
    json_t *c = cluster(
        "{\"tiers\":[\"local\"],\"status\":true,\"running\":false,\"rpo\":{\"local\":3600}}",
        "{\"samples\":10,\"source\":\"spool\",\"worst\":{\"local\":3600}}",
        "[{\"name\":\"20270107T080000Z-local\",\"time\":\"2027-01-07 08:00:00+00\","
        "\"repository\":\"local\",\"result\":\"passed\",\"rto_ms\":2000000},"
        "{\"name\":\"20270114T080000Z-local\",\"time\":\"2027-01-14 08:00:00+00\","
        "\"repository\":\"local\",\"result\":\"failed\",\"rto_ms\":null,"
        "\"error\":\"amcheck: 1 of 300 indexes are damaged\"}]",
        "[{\"name\":\"20270113T080000Z\",\"time\":\"2027-01-13 "
        "08:00:00+00\",\"result\":\"passed\"},"
        "{\"name\":\"20270115T020000Z\",\"time\":\"2027-01-15 02:00:00+00\",\"result\":\"failed\","
        "\"first_problem\":\"chunk x is damaged\"}]");
    assert_int_equal(report_judge(c, NOW), 7);
    assert_false(json_is_true(json_object_get(c, "ok")));
    assert_string_equal(met(c, "rpo_now_local"), "missed");
    assert_string_equal(detail(c, "rpo_now_local"),
                        "the receiver is not running: its last figure, grown by the time since");
    assert_string_equal(met(c, "rpo_worst_local"), "missed");
    assert_string_equal(met(c, "rto_last"), "missed"); /* the last that measured one: 33m */
    assert_string_equal(met(c, "drill_last"), "missed");
    assert_string_equal(
        detail(c, "drill_last"),
        "drill 20270114T080000Z-local failed: amcheck: 1 of 300 indexes are damaged");
    assert_string_equal(met(c, "drill_age"), "missed");
    assert_string_equal(detail(c, "drill_age"), "drill 20270107T080000Z-local");
    assert_string_equal(met(c, "verify_last"), "missed");
    assert_string_equal(met(c, "verify_age"), "missed");
    json_decref(c);
}

static void test_unknown(void **state)
{
    (void)state;
    /* No receiver on this host, no history, nothing run yet. */
    json_t *c =
        cluster("{\"tiers\":[\"local\"],\"status\":false,\"path\":\"/spool/main/status.json\"}",
                "{\"samples\":0,\"source\":null,\"worst\":{}}", "[]", "[]");
    assert_int_equal(report_judge(c, NOW), 2); /* no drill, no verify passed: the plan asks */
    assert_string_equal(met(c, "rpo_now_local"), "n/a");
    assert_string_equal(detail(c, "rpo_now_local"),
                        "no receiver status here (/spool/main/status.json): run report on the "
                        "receiver's host");
    assert_string_equal(met(c, "rpo_worst_local"), "n/a");
    assert_string_equal(met(c, "rto_last"), "n/a");
    assert_string_equal(met(c, "drill_last"), "n/a");
    assert_string_equal(met(c, "drill_age"), "missed");
    assert_string_equal(detail(c, "drill_age"), "no drill passed in the last 30 days");
    assert_string_equal(met(c, "verify_age"), "missed");
    json_decref(c);
}

static void test_html_escapes(void **state)
{
    (void)state;
    json_t *c = cluster(RX_OK, HIST_OK,
                        "[{\"name\":\"20270114T080000Z-local\",\"time\":\"2027-01-14 08:00:00+00\","
                        "\"repository\":\"local\",\"result\":\"failed\",\"rto_ms\":null,"
                        "\"error\":\"check \\\"SELECT 1 < 2 & <b>x</b>\\\" returned f\"}]",
                        VERIFY_OK);
    report_judge(c, NOW);
    json_t *root =
        json_pack("{s:s, s:s, s:i, s:s, s:[O]}", "generated", "2027-01-15 08:00:00+00", "since",
                  "2026-12-16 08:00:00+00", "days", 30, "pgark_version", "0.1.0", "clusters", c);
    char *page = report_html(root);
    assert_non_null(strstr(page, "check &quot;SELECT 1 &lt; 2 &amp; &lt;b&gt;x&lt;/b&gt;&quot; "
                                 "returned f"));
    assert_null(strstr(page, "<b>x"));
    assert_null(strstr(page, "<script"));
    assert_non_null(strstr(page, "<tr class=\"missed\" id=\"kpi-drill_last\">"));
    free(page);
    json_decref(root);
    json_decref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_time), cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_all_met),   cmocka_unit_test(test_missed),
        cmocka_unit_test(test_unknown),   cmocka_unit_test(test_html_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
