/* event.c — notification events and the bodies sent for them (see notify.h). */
#include "pgark/notify.h"

#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What each event means to the person who gets it: how bad, and what to do. */
static const struct kind_info {
    unsigned kind;
    enum notify_severity severity;
    const char *todo; /* NULL: nothing to do */
} kinds[] = {
    {CONFIG_EVENT_BACKUP_DONE, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_BACKUP_FAILED, NOTIFY_CRITICAL,
     "Read the error below and the backup's log, fix the cause and run `pgark backup` again: "
     "until a backup completes, restores start from the previous one."},
    {CONFIG_EVENT_VERIFY_DONE, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_VERIFY_FAILED, NOTIFY_CRITICAL,
     "Run `pgark verify --json` to see each problem; take a new backup if a backup is "
     "damaged, and check the repository's storage."},
    {CONFIG_EVENT_DRILL_DONE, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_DRILL_FAILED, NOTIFY_CRITICAL,
     "The restore test failed: read the drill record (`pgark report`) and the drill's log; "
     "until a drill passes, recovery is not proven."},
    {CONFIG_EVENT_EXPIRE_FAILED, NOTIFY_WARNING,
     "Retention did not run to the end: fix the error below before the repository fills."},
    {CONFIG_EVENT_CHECK_FAILED, NOTIFY_CRITICAL,
     "Run `pgark check` and fix each problem it lists."},
    {CONFIG_EVENT_RPO_BREACH, NOTIFY_CRITICAL,
     "WAL is not reaching this tier in time: check the receiver (`pgark info`, its log, "
     "status.json), the server's connection and the repository."},
    {CONFIG_EVENT_RPO_RECOVERED, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_STREAM_LOST, NOTIFY_CRITICAL,
     "The receiver cannot stream from the server: check that PostgreSQL is up, reachable, "
     "and that the replication slot exists. The slot keeps the WAL meanwhile."},
    {CONFIG_EVENT_STREAM_BACK, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_REPO_FAILING, NOTIFY_CRITICAL,
     "The receiver cannot write to this repository (error below); WAL waits in the spool "
     "meanwhile. Fix the storage or its credentials."},
    {CONFIG_EVENT_REPO_RECOVERED, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_SPOOL_HIGH, NOTIFY_WARNING,
     "The spool is filling up because a repository is behind: when it is full the receiver "
     "stops taking WAL and the server keeps it. Fix the repository or raise spool_max."},
    {CONFIG_EVENT_SPOOL_OK, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_DISK_LOW, NOTIFY_WARNING,
     "A filesystem the receiver writes is filling up: free space there (old files, a bigger "
     "volume) or move the spool or repository. When the spool's is full the receiver stops "
     "taking WAL and the server keeps it; when a repository's is, WAL waits in the spool."},
    {CONFIG_EVENT_DISK_OK, NOTIFY_INFO, NULL},
    {CONFIG_EVENT_WAL_DAMAGED, NOTIFY_CRITICAL,
     "A WAL page from the server failed its checks: the server's own WAL may be damaged. "
     "Check the server's storage and take a new backup as soon as possible."},
    {CONFIG_EVENT_NOTIFY_TEST, NOTIFY_INFO, NULL},
};

static const struct kind_info *kind_info(unsigned kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (kinds[i].kind == kind)
            return &kinds[i];
    }
    return NULL;
}

const char *notify_severity_name(enum notify_severity s)
{
    switch (s) {
    case NOTIFY_CRITICAL:
        return "critical";
    case NOTIFY_WARNING:
        return "warning";
    case NOTIFY_INFO:
        break;
    }
    return "info";
}

static const char *kind_name(unsigned kind)
{
    const char *name = config_event_name(kind);
    return name ? name : "unknown";
}

static atomic_uint event_seq;

struct notify_event *notify_event_new(const char *cluster, unsigned kind, const char *fmt, ...)
{
    struct notify_event *e = xcalloc(1, sizeof(*e));
    const struct kind_info *k = kind_info(kind);
    char label[32];
    va_list ap;

    e->kind = kind;
    e->cluster = xstrdup(cluster);
    e->severity = k ? k->severity : NOTIFY_INFO;
    e->time_us = time_now_us();
    va_start(ap, fmt);
    char *summary = xvasprintf(fmt, ap);
    va_end(ap);
    /* Errors quoted in a summary may carry a secret (a conninfo's password) */
    e->summary = log_redact(summary);
    free(summary);
    e->details = json_object();
    /* the process and a count: two commands of one second get ids of their own */
    snprintf(e->id, sizeof(e->id), "%.20s-%s-%s-%d.%u", cluster, kind_name(kind),
             time_format_label(e->time_us, label, sizeof(label)), (int)getpid(),
             atomic_fetch_add(&event_seq, 1));
    return e;
}

void notify_event_free(struct notify_event *e)
{
    if (!e)
        return;
    free(e->cluster);
    free(e->summary);
    free(e->incident);
    json_decref(e->details);
    free(e);
}

static json_t *rpo_sample(void)
{
    json_t *rpo = json_object();
    json_object_set_new(rpo, "local", json_real(1.2));
    json_object_set_new(rpo, "offsite", json_real(1260.5));
    return rpo;
}

struct notify_event *notify_event_sample(const char *cluster, unsigned kind)
{
    struct notify_event *e;
    const char *name = kind_name(kind);

    if (kind == CONFIG_EVENT_NOTIFY_TEST) {
        e = notify_event_new(cluster, kind, "test message from pgark: this endpoint works");
        return e;
    }
    e = notify_event_new(cluster, kind, "test of %s: a sample, nothing happened", name);
    switch (kind) {
    case CONFIG_EVENT_RPO_BREACH:
    case CONFIG_EVENT_RPO_RECOVERED:
        json_object_set_new(e->details, "tier", json_string("offsite"));
        json_object_set_new(e->details, "rpo_target_seconds", json_integer(900));
        json_object_set_new(e->details, "rpo_seconds", rpo_sample());
        break;
    case CONFIG_EVENT_REPO_FAILING:
    case CONFIG_EVENT_REPO_RECOVERED:
        json_object_set_new(e->details, "repo", json_string("offsite"));
        json_object_set_new(e->details, "error", json_string("sample error"));
        break;
    default:
        json_object_set_new(e->details, "sample", json_true());
        break;
    }
    json_object_set_new(e->details, "test", json_true());
    return e;
}

static json_t *time_json(int64_t us)
{
    char text[64];
    return json_string(time_format_pg(us, text, sizeof(text)));
}

/* A copy of v with every string masked as the log masks it: details quote errors. */
static json_t *redacted(json_t *v)
{
    if (json_is_string(v)) {
        char *text = log_redact(json_string_value(v));
        json_t *s = json_string(text);
        free(text);
        return s;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *key;
        json_t *m;
        json_object_foreach(v, key, m)
        {
            json_object_set_new(o, key, redacted(m));
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            json_array_append_new(a, redacted(m));
        }
        return a;
    }
    return json_deep_copy(v);
}

static json_t *event_json(const struct notify_event *e)
{
    json_t *o = json_object();
    const struct kind_info *k = kind_info(e->kind);
    json_object_set_new(o, "id", json_string(e->id));
    json_object_set_new(o, "event", json_string(kind_name(e->kind)));
    json_object_set_new(o, "cluster", json_string(e->cluster));
    json_object_set_new(o, "severity", json_string(notify_severity_name(e->severity)));
    json_object_set_new(o, "time", time_json(e->time_us));
    json_object_set_new(o, "since", time_json(e->since_us ? e->since_us : e->time_us));
    json_object_set_new(o, "summary", json_string(e->summary));
    json_object_set_new(o, "incident", e->incident ? json_string(e->incident) : json_null());
    json_object_set_new(o, "todo", k && k->todo ? json_string(k->todo) : json_null());
    json_object_set_new(o, "details", redacted(e->details));
    return o;
}

char *notify_body_json(const struct notify_event *e)
{
    json_t *o = event_json(e);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static json_t *text_obj(const char *type, const char *text)
{
    json_t *t = json_object();
    json_object_set_new(t, "type", json_string(type));
    json_object_set_new(t, "text", json_string(text));
    return t;
}

static json_t *section(const char *mrkdwn)
{
    json_t *b = json_object();
    json_object_set_new(b, "type", json_string("section"));
    json_object_set_new(b, "text", text_obj("mrkdwn", mrkdwn));
    return b;
}

/* A detail's value as one line of text. */
static char *detail_text(json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_real(v))
        return xasprintf("%.1f", json_real_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    return s ? s : xstrdup("?");
}

char *notify_body_slack(const struct notify_event *e)
{
    const struct kind_info *k = kind_info(e->kind);
    const char *icon = e->severity == NOTIFY_CRITICAL  ? ":red_circle:"
                       : e->severity == NOTIFY_WARNING ? ":warning:"
                                                       : ":large_green_circle:";
    char when[64], since[64];
    json_t *root = json_object(), *blocks = json_array();
    json_t *details = redacted(e->details);
    struct buf b = BUF_INIT;
    const char *key;
    json_t *v;

    time_format_pg(e->time_us, when, sizeof(when));
    time_format_pg(e->since_us ? e->since_us : e->time_us, since, sizeof(since));

    char *title = xasprintf("%s %s on %s", icon, kind_name(e->kind), e->cluster);
    json_t *header = json_object();
    json_object_set_new(header, "type", json_string("header"));
    json_object_set_new(header, "text", text_obj("plain_text", title));
    json_array_append_new(blocks, header);

    buf_appendf(&b, "*%s*\n*Since:* %s", e->summary, since);
    if (e->incident)
        buf_appendf(&b, "\n*%s incident:* `%s`",
                    e->severity == NOTIFY_INFO ? "Resolves" : "Repeats", e->incident);
    json_array_append_new(blocks, section((const char *)b.data));
    buf_reset(&b);

    json_object_foreach(details, key, v)
    {
        if (json_is_object(v)) {
            /* {"local": 1.2, "offsite": 1260.5}: one line per member */
            const char *k2;
            json_t *v2;
            buf_appendf(&b, "*%s:*", key);
            json_object_foreach(v, k2, v2)
            {
                char *t = detail_text(v2);
                buf_appendf(&b, " %s %s;", k2, t);
                free(t);
            }
            if (((char *)b.data)[b.len - 1] == ';')
                ((char *)b.data)[--b.len] = '\0';
            buf_append_str(&b, "\n");
        } else {
            char *t = detail_text(v);
            buf_appendf(&b, "*%s:* %s\n", key, t);
            free(t);
        }
    }
    if (b.len)
        json_array_append_new(blocks, section((const char *)b.data));
    buf_reset(&b);
    if (k && k->todo) {
        buf_appendf(&b, "*What to do:* %s", k->todo);
        json_array_append_new(blocks, section((const char *)b.data));
        buf_reset(&b);
    }
    json_t *ctx = json_object(), *elements = json_array();
    buf_appendf(&b, "pgark · %s · %s · event `%s`", notify_severity_name(e->severity), when, e->id);
    json_array_append_new(elements, text_obj("mrkdwn", (const char *)b.data));
    json_object_set_new(ctx, "type", json_string("context"));
    json_object_set_new(ctx, "elements", elements);
    json_array_append_new(blocks, ctx);

    /* text: what notifications and clients without blocks show */
    char *text = xasprintf("%s %s on %s: %s", icon, kind_name(e->kind), e->cluster, e->summary);
    json_object_set_new(root, "text", json_string(text));
    json_object_set_new(root, "blocks", blocks);
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    free(text);
    free(title);
    buf_free(&b);
    json_decref(details);
    json_decref(root);
    return s;
}

bool notify_alarm_due(const struct notify_alarm *a, int64_t now_us, int64_t repeat_ms)
{
    return !a->active || now_us - a->sent_us >= repeat_ms * 1000;
}

void notify_alarm_raise(struct notify_alarm *a, struct notify_event *e)
{
    if (!a->active) {
        a->active = true;
        a->since_us = e->since_us ? e->since_us : e->time_us;
        snprintf(a->incident, sizeof(a->incident), "%s", e->id);
    } else {
        free(e->incident);
        e->incident = xstrdup(a->incident);
    }
    e->since_us = a->since_us;
    a->sent_us = e->time_us;
}

bool notify_alarm_clear(struct notify_alarm *a, struct notify_event *recovery)
{
    if (!a->active)
        return false;
    if (recovery) {
        free(recovery->incident);
        recovery->incident = xstrdup(a->incident);
        recovery->since_us = a->since_us;
    }
    memset(a, 0, sizeof(*a));
    return true;
}
