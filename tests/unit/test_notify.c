/* test_notify.c — events, their bodies, event names and groups, the alarm rule (alert
 * once, again every notify_repeat, once on recovery referencing the incident), and
 * secrets kept out of what is sent. Delivery over HTTP is tested against a real
 * server in tests/t/083_notify.pl and 084_notify_receive.pl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/notify.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void test_event_names(void **state)
{
    (void)state;
    assert_int_equal(config_event_parse("rpo.breach"), CONFIG_EVENT_RPO_BREACH);
    assert_int_equal(config_event_parse("rpo.*"),
                     CONFIG_EVENT_RPO_BREACH | CONFIG_EVENT_RPO_RECOVERED);
    assert_int_equal(config_event_parse("backup.*"),
                     CONFIG_EVENT_BACKUP_DONE | CONFIG_EVENT_BACKUP_FAILED);
    assert_int_equal(config_event_parse("*"), CONFIG_EVENT_ALL);
    /* the first configurations' names */
    assert_int_equal(config_event_parse("receiver.down"), CONFIG_EVENT_STREAM_LOST);
    assert_int_equal(config_event_parse("receiver.up"), CONFIG_EVENT_STREAM_BACK);
    assert_int_equal(config_event_parse("rpo"), 0);
    assert_int_equal(config_event_parse("rp.*"), 0);
    assert_int_equal(config_event_parse("nosuch.*"), 0);
    /* every bit has a name that parses back to it */
    for (unsigned bit = 1; bit & CONFIG_EVENT_ALL; bit <<= 1)
        assert_int_equal(config_event_parse(config_event_name(bit)), bit);
    assert_null(config_event_name(CONFIG_EVENT_RPO_BREACH | CONFIG_EVENT_RPO_RECOVERED));
}

static void test_config_groups(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    assert_int_equal(
        config_load_string("t.yaml",
                           "repos: {l: {type: posix, path: /r}}\n"
                           "clusters: {main: {conninfo: x, repos: [l]}}\n"
                           "notify_repeat: 10m\n"
                           "notify:\n"
                           "  - {url: https://h/x, events: [\"rpo.*\", stream.lost]}\n",
                           &cfg),
        0);
    assert_int_equal(cfg->notify[0].events, CONFIG_EVENT_RPO_BREACH | CONFIG_EVENT_RPO_RECOVERED |
                                                CONFIG_EVENT_STREAM_LOST);
    assert_int_equal(cfg->notify_repeat_ms, 600000);
    config_free(cfg);
    assert_int_equal(config_load_string("t.yaml",
                                        "repos: {l: {type: posix, path: /r}}\n"
                                        "clusters: {main: {conninfo: x, repos: [l]}}\n",
                                        &cfg),
                     0);
    assert_int_equal(cfg->notify_repeat_ms, 3600000);
    config_free(cfg);
    cfg = NULL;
    assert_true(config_load_string("t.yaml",
                                   "repos: {l: {type: posix, path: /r}}\n"
                                   "clusters: {main: {conninfo: x, repos: [l]}}\n"
                                   "notify_repeat: 0s\n",
                                   &cfg) < 0);
    assert_string_equal(err_message(),
                        "t.yaml:3:16: key \"notify_repeat\" must be greater than zero");
    err_clear();
}

static json_t *parse(char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_json_body(void **state)
{
    (void)state;
    struct notify_event *e =
        notify_event_new("main", CONFIG_EVENT_RPO_BREACH, "off-site RPO %d s", 1260);
    json_object_set_new(e->details, "tier", json_string("offsite"));
    json_t *j = parse(notify_body_json(e));
    assert_string_equal(json_string_value(json_object_get(j, "event")), "rpo.breach");
    assert_string_equal(json_string_value(json_object_get(j, "cluster")), "main");
    assert_string_equal(json_string_value(json_object_get(j, "severity")), "critical");
    assert_string_equal(json_string_value(json_object_get(j, "summary")), "off-site RPO 1260 s");
    assert_string_equal(json_string_value(json_object_get(j, "id")), e->id);
    assert_true(strncmp(e->id, "main-rpo.breach-", 16) == 0);
    assert_true(json_is_null(json_object_get(j, "incident")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "details"), "tier")),
                        "offsite");
    assert_non_null(json_string_value(json_object_get(j, "todo")));
    assert_non_null(json_string_value(json_object_get(j, "time")));
    json_decref(j);
    notify_event_free(e);
}

/* The fields block kit requires: text, and blocks of known types with theirs. */
static void assert_slack_shape(json_t *j)
{
    assert_true(json_is_string(json_object_get(j, "text")));
    json_t *blocks = json_object_get(j, "blocks");
    assert_true(json_is_array(blocks) && json_array_size(blocks) >= 2);
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        assert_non_null(type);
        if (!strcmp(type, "header")) {
            json_t *t = json_object_get(b, "text");
            assert_string_equal(json_string_value(json_object_get(t, "type")), "plain_text");
            assert_true(strlen(json_string_value(json_object_get(t, "text"))) <= 150);
        } else if (!strcmp(type, "section")) {
            json_t *t = json_object_get(b, "text");
            assert_string_equal(json_string_value(json_object_get(t, "type")), "mrkdwn");
            assert_true(strlen(json_string_value(json_object_get(t, "text"))) <= 3000);
        } else {
            assert_string_equal(type, "context");
            assert_true(json_is_array(json_object_get(b, "elements")));
        }
    }
}

static void test_slack_body(void **state)
{
    (void)state;
    struct notify_event *e = notify_event_sample("main", CONFIG_EVENT_RPO_BREACH);
    json_t *j = parse(notify_body_slack(e));
    assert_slack_shape(j);
    const char *all = json_dumps(j, 0);
    assert_non_null(strstr(all, "*rpo_seconds:* local 1.2; offsite 1260.5"));
    assert_non_null(strstr(all, "*What to do:*"));
    free((char *)all);
    json_decref(j);
    notify_event_free(e);
    for (unsigned bit = 1; bit & CONFIG_EVENT_ALL; bit <<= 1) {
        e = notify_event_sample("c", bit);
        j = parse(notify_body_slack(e));
        assert_slack_shape(j);
        json_decref(j);
        notify_event_free(e);
    }
}

static void test_alarm(void **state)
{
    (void)state;
    struct notify_alarm a = {0};
    int64_t t0 = 1000000000000000LL;
    assert_true(notify_alarm_due(&a, t0, 3600000));

    struct notify_event *open = notify_event_new("main", CONFIG_EVENT_RPO_BREACH, "breach");
    open->time_us = t0;
    open->since_us = t0 - 5000000;
    notify_alarm_raise(&a, open);
    assert_true(a.active);
    assert_null(open->incident);
    assert_int_equal(open->since_us, t0 - 5000000);
    /* not again before notify_repeat */
    assert_false(notify_alarm_due(&a, t0 + 3599999999LL, 3600000));
    assert_true(notify_alarm_due(&a, t0 + 3600000000LL, 3600000));

    struct notify_event *again = notify_event_new("main", CONFIG_EVENT_RPO_BREACH, "still");
    again->time_us = t0 + 3600000000LL;
    notify_alarm_raise(&a, again);
    assert_string_equal(again->incident, open->id);
    assert_int_equal(again->since_us, t0 - 5000000);
    assert_false(notify_alarm_due(&a, t0 + 3600000001LL, 3600000));

    struct notify_event *ok = notify_event_new("main", CONFIG_EVENT_RPO_RECOVERED, "ok");
    assert_true(notify_alarm_clear(&a, ok));
    assert_string_equal(ok->incident, open->id);
    assert_int_equal(ok->since_us, t0 - 5000000);
    assert_false(a.active);
    assert_false(notify_alarm_clear(&a, NULL));

    /* the resolution's Slack message names the incident it closes */
    char *body = notify_body_slack(ok);
    char *want = NULL;
    assert_true(asprintf(&want, "*Resolves incident:* `%s`", open->id) > 0);
    assert_non_null(strstr(body, want));
    free(want);
    free(body);
    notify_event_free(open);
    notify_event_free(again);
    notify_event_free(ok);
}

static void test_secrets_masked(void **state)
{
    (void)state;
    log_add_secret("s3cr3t-passw0rd");
    struct notify_event *e = notify_event_new("main", CONFIG_EVENT_BACKUP_FAILED,
                                              "backup failed: auth with s3cr3t-passw0rd refused");
    json_object_set_new(e->details, "error", json_string("password=s3cr3t-passw0rd refused"));
    char *j = notify_body_json(e), *s = notify_body_slack(e);
    assert_null(strstr(j, "s3cr3t"));
    assert_null(strstr(s, "s3cr3t"));
    assert_non_null(strstr(j, "********"));
    free(j);
    free(s);
    notify_event_free(e);

    /* an endpoint is named by its host, never its URL */
    struct notify_endpoint ep = {"https://user:pw@hooks.example.com/T/B/SECRET",
                                 CONFIG_NOTIFY_SLACK, CONFIG_EVENT_ALL};
    char *label = notify_endpoint_label(&ep, 1);
    assert_string_equal(label, "endpoint 2 (slack, hooks.example.com)");
    free(label);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_names), cmocka_unit_test(test_config_groups),
        cmocka_unit_test(test_json_body),   cmocka_unit_test(test_slack_body),
        cmocka_unit_test(test_alarm),       cmocka_unit_test(test_secrets_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
