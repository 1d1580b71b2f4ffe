/* deliver.c — the notifier: a bounded queue of deliveries and the thread that sends
 * them, with retries and the dead-letter file (see notify.h). */
#include "pgark/notify.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"
#include "pgark/units.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MAX_MS (INT64_C(300) * 1000)
#define DEFAULT_TIMEOUT_S 20
/* How long notifier_free waits, after its deadline, for an attempt under way. */
#define ORPHAN_GRACE_MS 1000
/* The start of a refusing endpoint's answer kept for the log. */
#define ANSWER_SHOWN 200

/* One event for one endpoint. */
struct delivery {
    struct delivery *next;
    size_t ep;
    unsigned kind;
    char id[64];
    char *body;  /* what is sent */
    char *event; /* pgark's JSON of the event, for the dead-letter file */
    int attempts;
    int64_t first_us; /* monotonic */
    int64_t next_us;  /* monotonic: not before */
    char *error;      /* the last attempt's */
};

struct notifier {
    struct notify_endpoint *eps;
    size_t neps;
    char *dead_letter;
    int64_t retry_for_ms, first_retry_ms, timeout_s;

    pthread_mutex_t lock;
    pthread_cond_t wake; /* a delivery queued, the stop asked */
    pthread_cond_t idle; /* the queue emptied */
    struct delivery *head;
    size_t queued;
    bool busy;                /* the thread is sending one (not in the queue)... */
    struct delivery *current; /* ...this one */
    bool started, stop;
    /* notifier_free left while an attempt hung: the thread frees the notifier when
     * the attempt ends (the process usually exits first). */
    bool orphaned;
    int64_t deadline_us; /* monotonic; 0: none. Retries are not waited for past it. */
    uint64_t delivered, dead;
    pthread_t thread;
};

static void delivery_free(struct delivery *d)
{
    if (!d)
        return;
    free(d->body);
    free(d->event);
    free(d->error);
    free(d);
}

static const char *url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n); /* user:password@host */
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    snprintf(out, cap, "%.*s", (int)n, p);
    return out;
}

char *notify_endpoint_label(const struct notify_endpoint *ep, size_t i)
{
    char host[256];
    return xasprintf("endpoint %zu (%s, %s)", i + 1, config_notify_format_name(ep->format),
                     url_host(ep->url, host, sizeof(host)));
}

/* The log's and the dead-letter file's wording of the current error: masked. */
static char *error_text(void)
{
    char *raw = err_format();
    char *text = log_redact(raw);
    free(raw);
    return text;
}

/* POST body to ep once: 0 on a 2xx answer, else negative with the error set (the
 * status and the start of the answer). *status: the HTTP status, 0 without an answer. */
static int post_body(const struct notify_endpoint *ep, const char *body, int64_t timeout_s,
                     long *status)
{
    static const struct http_header headers[] = {{"Content-Type", "application/json"}};
    struct http_options ho = {
        .connect_timeout_ms = timeout_s * 1000,
        .low_speed_limit = 1,
        .low_speed_time_s = timeout_s,
    };
    struct http_client *c = http_client_new(&ho);
    struct http_request req = {
        .method = "POST",
        .url = ep->url,
        .headers = headers,
        .nheaders = 1,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
    };
    struct http_response resp = {0};
    int rc = http_client_do(c, &req, &resp);
    *status = resp.status;
    if (rc == 0 && (resp.status < 200 || resp.status > 299)) {
        size_t n = resp.body.len < ANSWER_SHOWN ? resp.body.len : ANSWER_SHOWN;
        char *answer = xstrndup(resp.body.data ? (const char *)resp.body.data : "", n);
        for (char *p = answer; *p; p++) {
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        }
        rc = err_set(ERR_PROTOCOL, "the webhook answered %ld%s%s", resp.status, *answer ? ": " : "",
                     answer);
        free(answer);
    }
    http_response_free(&resp);
    http_client_free(c);
    return rc;
}

int notify_send(const struct notify_endpoint *ep, const struct notify_event *e, int64_t timeout_s,
                long *status)
{
    char *body = ep->format == CONFIG_NOTIFY_SLACK ? notify_body_slack(e) : notify_body_json(e);
    int rc = post_body(ep, body, timeout_s > 0 ? timeout_s : DEFAULT_TIMEOUT_S, status);
    free(body);
    return rc;
}

/* Append the record of d, which could not be delivered, to the dead-letter file. */
static void dead_letter(struct notifier *n, struct delivery *d, const char *why)
{
    char *label = notify_endpoint_label(&n->eps[d->ep], d->ep);
    log_error("notify: %s %s to %s could not be delivered: %s", config_event_name(d->kind), d->id,
              label, why);
    if (n->dead_letter) {
        json_t *rec = json_object();
        char when[64];
        json_error_t jerr;
        json_t *event = json_loads(d->event, 0, &jerr);
        json_object_set_new(rec, "time", json_string(time_format_pg(time_now_us(), when, 64)));
        json_object_set_new(rec, "endpoint", json_string(label));
        json_object_set_new(rec, "attempts", json_integer(d->attempts));
        json_object_set_new(rec, "error", json_string(why));
        json_object_set_new(rec, "event", event ? event : json_null());
        char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(rec);
        int fd = open(n->dead_letter, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || dprintf(fd, "%s\n", line) < 0)
            log_error("notify: could not write \"%s\": %s", n->dead_letter, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(line);
    }
    free(label);
}

/* Caller holds the lock: the delivery due first (its predecessor's next in *link). */
static struct delivery **earliest(struct notifier *n)
{
    struct delivery **best = NULL;
    for (struct delivery **p = &n->head; *p; p = &(*p)->next) {
        if (!best || (*p)->next_us < (*best)->next_us)
            best = p;
    }
    return best;
}

static void attempt(struct notifier *n, struct delivery *d)
{
    long status;
    d->attempts++;
    free(d->error);
    d->error = NULL;
    if (post_body(&n->eps[d->ep], d->body, n->timeout_s, &status) < 0) {
        d->error = error_text();
        err_clear();
    }
}

/* Wait on cond (with n->lock held) until it is signalled or us microseconds passed. */
static void wait_us(struct notifier *n, pthread_cond_t *cond, int64_t us)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += us / 1000000;
    ts.tv_nsec += (us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cond, &n->lock, &ts);
}

/* Free what the notifier holds (its queue is empty). */
static void release(struct notifier *n)
{
    for (size_t i = 0; i < n->neps; i++)
        free((char *)n->eps[i].url);
    free(n->eps);
    free(n->dead_letter);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->wake);
    pthread_cond_destroy(&n->idle);
    free(n);
}

/* Long: the delivery thread's loop in order: under the lock, wait for or take the
 * earliest due delivery; without it, make the attempt and choose between delivered, a
 * later retry and the dead-letter file; under it again, put the delivery back or free it.
 * Which parts hold the lock is plainest in one function.
 */
static void *notifier_thread(void *arg)
{
    struct notifier *n = arg;
    pthread_mutex_lock(&n->lock);
    for (;;) {
        struct delivery **link = earliest(n);
        if (!link) {
            pthread_cond_broadcast(&n->idle);
            if (n->stop)
                break;
            pthread_cond_wait(&n->wake, &n->lock);
            continue;
        }
        int64_t now = time_mono_us();
        struct delivery *d = *link;
        if (d->next_us > now) {
            if (n->stop)
                break;
            if (n->deadline_us && d->next_us > n->deadline_us) {
                /* Draining for an exit: a retry after it would not run. */
                pthread_cond_broadcast(&n->idle);
            }
            wait_us(n, &n->wake, d->next_us - now);
            continue;
        }
        *link = d->next;
        n->queued--;
        n->busy = true;
        n->current = d;
        pthread_mutex_unlock(&n->lock);

        attempt(n, d);
        char *label = notify_endpoint_label(&n->eps[d->ep], d->ep);
        const char *name = config_event_name(d->kind);
        bool done = false;
        if (!d->error) {
            if (d->attempts > 1)
                log_info("notify: %s %s delivered to %s after %d attempts", name, d->id, label,
                         d->attempts);
            else
                log_detail("notify: %s %s delivered to %s", name, d->id, label);
            done = true;
        } else {
            int64_t backoff = n->first_retry_ms;
            for (int i = 1; i < d->attempts && backoff < RETRY_MAX_MS; i++)
                backoff *= 2;
            if (backoff > RETRY_MAX_MS)
                backoff = RETRY_MAX_MS;
            now = time_mono_us();
            if (now + backoff * 1000 - d->first_us > n->retry_for_ms * 1000) {
                char *why = xasprintf("%s (%d attempts in %lld s)", d->error, d->attempts,
                                      (long long)((now - d->first_us) / 1000000));
                dead_letter(n, d, why);
                free(why);
                pthread_mutex_lock(&n->lock);
                n->dead++;
                pthread_mutex_unlock(&n->lock);
                delivery_free(d);
                d = NULL;
            } else {
                log_msg(d->attempts == 1 ? LOG_WARN : LOG_DETAIL,
                        "notify: %s %s to %s failed: %s; retrying in %lld ms", name, d->id, label,
                        d->error, (long long)backoff);
                d->next_us = now + backoff * 1000;
            }
        }
        free(label);
        pthread_mutex_lock(&n->lock);
        n->busy = false;
        n->current = NULL;
        pthread_cond_broadcast(&n->idle);
        if (n->orphaned) {
            /* its record is in the dead-letter file already, unless it got through */
            delivery_free(d);
            break;
        }
        if (done) {
            n->delivered++;
            delivery_free(d);
        } else if (d) {
            d->next = n->head;
            n->head = d;
            n->queued++;
        }
    }
    bool orphaned = n->orphaned;
    pthread_mutex_unlock(&n->lock);
    if (orphaned)
        release(n);
    return NULL;
}

struct notifier *notifier_new(const struct notify_options *o)
{
    struct notifier *n = xcalloc(1, sizeof(*n));
    n->neps = o->nendpoints;
    n->eps = xcalloc(n->neps ? n->neps : 1, sizeof(*n->eps));
    for (size_t i = 0; i < n->neps; i++) {
        n->eps[i] = o->endpoints[i];
        n->eps[i].url = xstrdup(o->endpoints[i].url);
        log_add_secret(n->eps[i].url);
    }
    n->dead_letter = o->dead_letter ? xstrdup(o->dead_letter) : NULL;
    n->retry_for_ms = o->retry_for_ms > 0 ? o->retry_for_ms : NOTIFY_RETRY_FOR_MS;
    n->first_retry_ms = o->first_retry_ms > 0 ? o->first_retry_ms : 1000;
    n->timeout_s = o->timeout_s > 0 ? o->timeout_s : DEFAULT_TIMEOUT_S;
    pthread_mutex_init(&n->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->wake, &ca);
    pthread_cond_init(&n->idle, &ca);
    pthread_condattr_destroy(&ca);
    return n;
}

void notifier_post(struct notifier *n, struct notify_event *e)
{
    if (!n || !e) {
        notify_event_free(e);
        return;
    }
    char *event = NULL;
    log_info("event %s: %s", config_event_name(e->kind), e->summary);
    for (size_t i = 0; i < n->neps; i++) {
        if (!(n->eps[i].events & e->kind) && e->kind != CONFIG_EVENT_NOTIFY_TEST)
            continue;
        if (!event)
            event = notify_body_json(e);
        struct delivery *d = xcalloc(1, sizeof(*d));
        d->ep = i;
        d->kind = e->kind;
        snprintf(d->id, sizeof(d->id), "%s", e->id);
        d->body = n->eps[i].format == CONFIG_NOTIFY_SLACK ? notify_body_slack(e) : xstrdup(event);
        d->event = xstrdup(event);
        d->first_us = time_mono_us();
        d->next_us = d->first_us;
        pthread_mutex_lock(&n->lock);
        bool full = n->queued >= NOTIFY_QUEUE_MAX || n->stop;
        if (!full) {
            /* at the end: first come, first sent */
            struct delivery **p = &n->head;
            while (*p)
                p = &(*p)->next;
            *p = d;
            n->queued++;
            if (!n->started) {
                n->started = pthread_create(&n->thread, NULL, notifier_thread, n) == 0;
                if (!n->started)
                    log_error("notify: could not start the delivery thread");
            }
            pthread_cond_signal(&n->wake);
        } else {
            n->dead++;
        }
        pthread_mutex_unlock(&n->lock);
        if (full) {
            dead_letter(n, d, "the notification queue is full");
            delivery_free(d);
        }
    }
    free(event);
    notify_event_free(e);
}

void notifier_stats(struct notifier *n, uint64_t *delivered, uint64_t *dead)
{
    pthread_mutex_lock(&n->lock);
    *delivered = n->delivered;
    *dead = n->dead;
    pthread_mutex_unlock(&n->lock);
}

void notifier_free(struct notifier *n, int64_t wait_ms)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->lock);
    if (n->started && wait_ms > 0) {
        int64_t until = time_mono_us() + wait_ms * 1000;
        n->deadline_us = until;
        pthread_cond_signal(&n->wake);
        /* Wait for the queue to empty or its first retry to fall past the deadline. */
        while ((n->head || n->busy) && time_mono_us() < until) {
            struct delivery **link = earliest(n);
            if (link && !n->busy && (*link)->next_us > until)
                break;
            wait_us(n, &n->idle, 100000);
        }
    }
    n->stop = true;
    pthread_cond_signal(&n->wake);
    /* An attempt under way gets a moment more; one that hangs is not waited for. */
    int64_t grace = time_mono_us() + ORPHAN_GRACE_MS * 1000;
    while (n->busy && time_mono_us() < grace)
        wait_us(n, &n->idle, 50000);
    struct delivery *queue = n->head;
    n->head = NULL;
    bool orphan = n->started && n->busy;
    if (orphan) {
        /* The fields that stay as they were made: the thread may be writing the
         * others. */
        struct delivery d = {
            .ep = n->current->ep, .kind = n->current->kind, .event = n->current->event};
        memcpy(d.id, n->current->id, sizeof(d.id));
        dead_letter(n, &d, "no answer yet when pgark stopped");
        n->orphaned = true;
        pthread_detach(n->thread);
    }
    /* Before the lock goes: an orphaned thread frees n as soon as it has it. */
    while (queue) {
        struct delivery *d = queue;
        queue = d->next;
        dead_letter(n, d,
                    d->error ? d->error : "pgark stopped before the notification could be sent");
        delivery_free(d);
    }
    pthread_mutex_unlock(&n->lock);
    if (n->started && !orphan)
        pthread_join(n->thread, NULL);
    if (!orphan)
        release(n);
}
