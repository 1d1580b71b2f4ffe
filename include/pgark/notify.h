/*
 * notify.h — events, and their delivery to the configured webhooks.
 *
 * Promise: an event (what happened to which cluster, how bad, when, a summary and JSON
 * details) posted to a notifier is queued at once and never waits on the network: a
 * thread of the notifier's own delivers it to every endpoint that subscribes to it,
 * as pgark's JSON object or as a Slack incoming-webhook message (blocks), over
 * src/http. A delivery that fails (no answer, or a status other than 2xx) is retried
 * with backoff for NOTIFY_RETRY_FOR_MS; one that could not be delivered in that time,
 * that did not fit the bounded queue, or that was still queued when the notifier was
 * freed, is logged and appended to the dead-letter file (one JSON object per line).
 * URLs are secrets: they appear in no log line, error or dead-letter record; an
 * endpoint is named by its position in the configuration and its host.
 *
 * Alarms (notify_alarm_*) carry the rule a lasting condition follows: alert when it
 * begins, again every `repeat` while it lasts, once when it ends (referencing the
 * incident, the id of the event that opened it).
 */
#ifndef PGARK_NOTIFY_H
#define PGARK_NOTIFY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgark/config.h"
#include "pgark/http.h"

/* How long a delivery is retried before it goes to the dead-letter file. */
#define NOTIFY_RETRY_FOR_MS (INT64_C(3600) * 1000)
/* Deliveries (an event for one endpoint) the queue holds at most. */
#define NOTIFY_QUEUE_MAX 512

enum notify_severity { NOTIFY_INFO = 0, NOTIFY_WARNING, NOTIFY_CRITICAL };

const char *notify_severity_name(enum notify_severity s);

struct notify_event {
    char id[64];   /* "<cluster>-<event>-<UTC time>-<n>": unique per process */
    unsigned kind; /* one CONFIG_EVENT_* bit */
    char *cluster; /* owned */
    enum notify_severity severity;
    int64_t time_us;  /* Unix microseconds */
    int64_t since_us; /* when the condition began (0: = time_us) */
    char *summary;    /* one line, owned */
    char *incident;   /* id of the event this one resolves or repeats, or NULL; owned */
    json_t *details;  /* an object, owned (never NULL) */
};

/* A new event of kind for cluster (summary printf-style) with empty details, its id
 * made now, severity the kind's usual one. Free with notify_event_free. */
struct notify_event *notify_event_new(const char *cluster, unsigned kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void notify_event_free(struct notify_event *e);
/* A sample of kind (details filled as the real one's would be), for notify --test. */
struct notify_event *notify_event_sample(const char *cluster, unsigned kind);

/* The bodies sent (new strings the caller frees): pgark's JSON object; the Slack
 * message ({"text": ..., "blocks": [...]}: what happened, since when, the details such
 * as the RPO per tier, what to do, the incident a resolution closes). */
char *notify_body_json(const struct notify_event *e);
char *notify_body_slack(const struct notify_event *e);

/* One webhook. */
struct notify_endpoint {
    const char *url; /* copied */
    enum config_notify_format format;
    unsigned events; /* CONFIG_EVENT_* bits it subscribes to */
};

struct notify_options {
    const struct notify_endpoint *endpoints; /* copied */
    size_t nendpoints;
    const char *dead_letter; /* the dead-letter file; NULL: the log only. Copied. */
    int64_t retry_for_ms;    /* 0: NOTIFY_RETRY_FOR_MS */
    int64_t first_retry_ms;  /* first backoff, doubled each time up to 5 min; 0: 1 s */
    int64_t timeout_s;       /* a request without an answer for this long fails; 0: 20 */
};

struct notifier;

/* Never fails; the thread starts with the first event an endpoint subscribes to. */
struct notifier *notifier_new(const struct notify_options *o);
/* Queue e for every endpoint that subscribes to e->kind (takes e, in any case). Never
 * blocks on the network; thread-safe. */
void notifier_post(struct notifier *n, struct notify_event *e);
/* Wait up to wait_ms for the queue to empty (a one-shot command before it exits: the
 * retries of a delivery that fails stop at the deadline), then stop the thread; what
 * is still queued goes to the dead-letter file. NULL is a no-op. */
void notifier_free(struct notifier *n, int64_t wait_ms);
/* Counters since notifier_new, for tests and status: delivered, dead-lettered. */
void notifier_stats(struct notifier *n, uint64_t *delivered, uint64_t *dead);

/* "endpoint 2 (slack, hooks.example.com)": how logs name an endpoint (i from 0). */
char *notify_endpoint_label(const struct notify_endpoint *ep, size_t i);

/* Send e to ep now, once, in this thread (notify --test). 0 when it answered 2xx;
 * otherwise negative with the error set (its status and the start of its answer, or the
 * transport's failure). *status gets the HTTP status (0: no answer). */
int notify_send(const struct notify_endpoint *ep, const struct notify_event *e, int64_t timeout_s,
                long *status);

/* A lasting condition (a breach, a lost stream, a failing repository). */
struct notify_alarm {
    bool active;
    int64_t since_us;  /* when it began */
    int64_t sent_us;   /* when it was last sent (0: not yet) */
    char incident[64]; /* id of the event that opened it */
};

/* The condition is (still) bad: returns true when the caller should post `e` now — it
 * begins, or repeat_ms passed since it was last sent — and fills the alarm (e's
 * incident is set on a repeat and e->since_us to the start). The caller builds e only
 * when notify_alarm_due says so. */
bool notify_alarm_due(const struct notify_alarm *a, int64_t now_us, int64_t repeat_ms);
void notify_alarm_raise(struct notify_alarm *a, struct notify_event *e);
/* The condition is over: returns true when it was active (post the recovery event,
 * whose incident and since_us notify_alarm_clear sets), and resets the alarm. */
bool notify_alarm_clear(struct notify_alarm *a, struct notify_event *recovery);

#endif
