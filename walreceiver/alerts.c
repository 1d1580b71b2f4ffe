/*
 * alerts.c — the receiver's events: a thread that looks at the receiver's state every
 * second (under rx->lock, a few comparisons) and posts what changed to the notifier,
 * which delivers from a thread of its own. Neither ever holds up the stream or the
 * shippers: the receive loop and the shippers only update fields they already keep.
 *
 * The conditions, each an alarm (notify.h: sent when it begins, again every
 * notify_repeat while it lasts, its end once, naming the incident):
 *   stream.lost / stream.back  no stream from the server for a status interval
 *   rpo.breach / rpo.recovered a tier's RPO above rpo_target; while the stream is lost
 *                              the tier's RPO counts the time since it was lost too
 *                              (what the server commits meanwhile is not received)
 *   repo.failing / recovered   REPO_FAILING_AFTER attempts in a row failed
 *   spool.high / spool.ok      the spool above 80% of spool_max / below 70% again
 *   disk.low / disk.ok         a filesystem the receiver writes (the spool's, a posix
 *                              repository's) with less free space than disk_free_min /
 *                              10% above it again
 *   wal.damaged                a WAL page from the server failed its checks (no
 *                              "resolved" event: it ends when the stream moves on)
 */
#include "receiver_int.h"

#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/units.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define ALERTS_TICK_MS 1000

static const char *const tier_names[2] = {"local", "offsite"};

/* A filesystem watched for free space: the spool's, then each posix repository's that is
 * not one of those before it. */
struct disk {
    char *path;
    char *what; /* "the spool \"/x\"", with ", repository \"local\" (\"/y\")" for each other */
    dev_t dev;
    struct notify_alarm alarm;
    uint64_t free, size, min; /* at the last look */
};

struct alerts {
    struct receiver *rx;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    struct notify_alarm stream, rpo[2], spool, damaged;
    struct notify_alarm *repos; /* one per repository */
    uint64_t bad_pages_seen;
    lsn_t damaged_at; /* flushed position when the damage was seen */
    struct disk *disks;
    size_t ndisks;
};

/* What the thread reads of the receiver, at once under its lock. */
struct snapshot {
    int64_t now_us;
    bool connected;
    int64_t lost_us; /* when the stream was lost (connected false) */
    bool have[2];
    double rpo[2];
    uint64_t spool_bytes;
    uint64_t bad_pages;
    char *bad_page_error;
    lsn_t flushed;
    int nrepos;
    struct {
        int fail_streak;
        char *error;
        int64_t error_since_us;
    } repos[64];
};

static void snapshot_take(struct receiver *rx, struct snapshot *s)
{
    const struct receiver_options *o = rx->o;
    memset(s, 0, sizeof(*s));
    s->now_us = time_now_us();
    for (int i = 0; i < o->nrepos; i++)
        s->have[o->repos[i].offsite ? 1 : 0] = true;
    pthread_mutex_lock(&rx->lock);
    s->connected = rx->connected;
    s->lost_us = rx->disconnected_us;
    if (rx->nshippers > 0) {
        bool have[2];
        status_tier_rpo_locked(rx, s->now_us, s->rpo, have);
    }
    s->spool_bytes = rx->spool_bytes;
    s->bad_pages = rx->bad_pages;
    s->bad_page_error = rx->bad_page_error ? xstrdup(rx->bad_page_error) : NULL;
    s->flushed = rx->flushed;
    s->nrepos = rx->nshippers < 64 ? rx->nshippers : 64;
    for (int i = 0; i < s->nrepos; i++) {
        struct shipper *sh = &rx->shippers[i];
        s->repos[i].fail_streak = sh->fail_streak;
        s->repos[i].error = sh->last_error ? xstrdup(sh->last_error) : NULL;
        s->repos[i].error_since_us = sh->error_since_us;
    }
    pthread_mutex_unlock(&rx->lock);
    /* While the stream is lost, what the server commits is not received: the tiers
     * lag behind the server by at least the time since. */
    if (!s->connected && s->lost_us) {
        double lost_s = (double)(s->now_us - s->lost_us) / 1e6;
        for (int t = 0; t < 2; t++)
            s->rpo[t] += lost_s;
    }
}

static void snapshot_free(struct snapshot *s)
{
    free(s->bad_page_error);
    for (int i = 0; i < s->nrepos; i++)
        free(s->repos[i].error);
}

static char *seconds_text(double s)
{
    char text[32];
    if (s < 60)
        return xasprintf("%.1f s", s);
    return xstrdup(duration_format((int64_t)(s * 1000), text, sizeof(text)));
}

static json_t *rpo_json(const struct snapshot *s)
{
    json_t *o = json_object();
    for (int t = 0; t < 2; t++) {
        if (s->have[t])
            json_object_set_new(o, tier_names[t], json_real(round(s->rpo[t] * 10) / 10));
    }
    return o;
}

static void post(struct alerts *a, struct notify_event *e)
{
    notifier_post(a->rx->o->notifier, e);
}

/* One alarm: bad or not now. make builds the event (the breach's when opening, the
 * recovery's when closing) only when one is to be sent. */
typedef struct notify_event *(*make_fn)(struct alerts *a, const struct snapshot *s, int which,
                                        bool bad);

static void judge(struct alerts *a, const struct snapshot *s, struct notify_alarm *alarm, bool bad,
                  int64_t since_us, make_fn make, int which)
{
    int64_t repeat = a->rx->o->notify_repeat_ms > 0 ? a->rx->o->notify_repeat_ms
                                                    : CONFIG_DEFAULT_NOTIFY_REPEAT_MS;
    if (bad) {
        if (!notify_alarm_due(alarm, s->now_us, repeat))
            return;
        struct notify_event *e = make(a, s, which, true);
        if (!e)
            return;
        if (!alarm->active && since_us)
            e->since_us = since_us;
        notify_alarm_raise(alarm, e);
        post(a, e);
    } else if (alarm->active) {
        struct notify_event *e = make(a, s, which, false);
        notify_alarm_clear(alarm, e);
        if (e)
            post(a, e);
    }
}

static const char *cluster(struct alerts *a)
{
    return a->rx->o->repo.cluster;
}

static struct notify_event *make_stream(struct alerts *a, const struct snapshot *s, int which,
                                        bool bad)
{
    (void)which;
    struct notify_event *e;
    char *text;
    if (bad) {
        text = seconds_text((double)(s->now_us - s->lost_us) / 1e6);
        e = notify_event_new(cluster(a), CONFIG_EVENT_STREAM_LOST,
                             "no WAL stream from the server for %s", text);
        pthread_mutex_lock(&a->rx->lock);
        if (a->rx->last_error)
            json_object_set_new(e->details, "error", json_string(a->rx->last_error));
        pthread_mutex_unlock(&a->rx->lock);
    } else {
        text = seconds_text((double)(s->now_us - a->stream.since_us) / 1e6);
        e = notify_event_new(cluster(a), CONFIG_EVENT_STREAM_BACK,
                             "streaming WAL from the server again after %s", text);
    }
    json_object_set_new(e->details, "rpo_seconds", rpo_json(s));
    free(text);
    return e;
}

static struct notify_event *make_rpo(struct alerts *a, const struct snapshot *s, int t, bool bad)
{
    char *now = seconds_text(s->rpo[t]);
    char *target = seconds_text((double)a->rx->o->rpo_target_ms / 1000);
    struct notify_event *e =
        bad ? notify_event_new(cluster(a), CONFIG_EVENT_RPO_BREACH,
                               "%s RPO is %s, above rpo_target %s%s", tier_names[t], now, target,
                               s->connected ? "" : " (the stream is lost)")
            : notify_event_new(cluster(a), CONFIG_EVENT_RPO_RECOVERED,
                               "%s RPO is back to %s, within rpo_target %s", tier_names[t], now,
                               target);
    json_object_set_new(e->details, "tier", json_string(tier_names[t]));
    json_object_set_new(e->details, "rpo_target_seconds",
                        json_real((double)a->rx->o->rpo_target_ms / 1000));
    json_object_set_new(e->details, "rpo_seconds", rpo_json(s));
    json_object_set_new(e->details, "connected", json_boolean(s->connected));
    free(now);
    free(target);
    return e;
}

static struct notify_event *make_repo(struct alerts *a, const struct snapshot *s, int i, bool bad)
{
    const char *name = a->rx->o->repos[i].name;
    struct notify_event *e =
        bad ? notify_event_new(cluster(a), CONFIG_EVENT_REPO_FAILING,
                               "repository \"%s\" is failing: %d attempts in a row", name,
                               s->repos[i].fail_streak)
            : notify_event_new(cluster(a), CONFIG_EVENT_REPO_RECOVERED,
                               "repository \"%s\" takes WAL again", name);
    json_object_set_new(e->details, "repo", json_string(name));
    if (bad && s->repos[i].error)
        json_object_set_new(e->details, "error", json_string(s->repos[i].error));
    json_object_set_new(e->details, "rpo_seconds", rpo_json(s));
    return e;
}

static struct notify_event *make_spool(struct alerts *a, const struct snapshot *s, int which,
                                       bool bad)
{
    (void)which;
    char used[32], max[32];
    size_format(s->spool_bytes, used, sizeof(used));
    size_format(a->rx->o->spool_max, max, sizeof(max));
    struct notify_event *e =
        bad ? notify_event_new(cluster(a), CONFIG_EVENT_SPOOL_HIGH,
                               "the spool holds %s, above 80%% of spool_max %s", used, max)
            : notify_event_new(cluster(a), CONFIG_EVENT_SPOOL_OK,
                               "the spool is down to %s of spool_max %s", used, max);
    json_object_set_new(e->details, "spool_bytes", json_integer((json_int_t)s->spool_bytes));
    json_object_set_new(e->details, "spool_max", json_integer((json_int_t)a->rx->o->spool_max));
    return e;
}

static struct notify_event *make_disk(struct alerts *a, const struct snapshot *s, int which,
                                      bool bad)
{
    (void)s;
    const struct disk *d = &a->disks[which];
    char free_text[32], min_text[32];
    size_format(d->free, free_text, sizeof(free_text));
    size_format(d->min, min_text, sizeof(min_text));
    struct notify_event *e =
        bad ? notify_event_new(cluster(a), CONFIG_EVENT_DISK_LOW,
                               "the filesystem of %s has %s free, below disk_free_min (%s)",
                               d->what, free_text, min_text)
            : notify_event_new(cluster(a), CONFIG_EVENT_DISK_OK,
                               "the filesystem of %s has %s free again (disk_free_min %s)", d->what,
                               free_text, min_text);
    json_object_set_new(e->details, "path", json_string(d->path));
    json_object_set_new(e->details, "free_bytes", json_integer((json_int_t)d->free));
    json_object_set_new(e->details, "size_bytes", json_integer((json_int_t)d->size));
    json_object_set_new(e->details, "disk_free_min_bytes", json_integer((json_int_t)d->min));
    return e;
}

/* Look at each watched filesystem (a statvfs each, outside the receiver's lock). */
static void judge_disks(struct alerts *a, const struct snapshot *s)
{
    const struct receiver_options *o = a->rx->o;
    for (size_t i = 0; i < a->ndisks; i++) {
        struct disk *d = &a->disks[i];
        struct statvfs vfs;
        if (statvfs(d->path, &vfs) != 0)
            continue; /* the shippers and the spool say what is wrong with it */
        d->free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        d->size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
        d->min = o->disk_free_min ? o->disk_free_min
                                  : (uint64_t)((double)d->size * o->disk_free_min_percent / 100);
        if (!d->min)
            continue;
        bool low = d->free < d->min, still = d->free < d->min + d->min / 10;
        judge(a, s, &d->alarm, low || (d->alarm.active && still), 0, make_disk, (int)i);
    }
}

/* Watch path, named by what, unless it is on a filesystem watched already (then what is
 * added to that one's name). A path that cannot be looked at is not watched. */
static void watch_disk(struct alerts *a, const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        log_debug("disk space of \"%s\" not watched: %s", path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < a->ndisks; i++) {
        if (a->disks[i].dev == st.st_dev) {
            char *both = xasprintf("%s, %s", a->disks[i].what, what);
            free(a->disks[i].what);
            a->disks[i].what = both;
            return;
        }
    }
    a->disks = xrealloc(a->disks, (a->ndisks + 1) * sizeof(*a->disks));
    a->disks[a->ndisks++] =
        (struct disk){.path = xstrdup(path), .what = xstrdup(what), .dev = st.st_dev};
}

static void watch_disks(struct alerts *a)
{
    const struct receiver_options *o = a->rx->o;
    if (!o->disk_free_min && o->disk_free_min_percent <= 0)
        return;
    char *what = xasprintf("the spool \"%s\"", o->spool_dir);
    watch_disk(a, o->spool_dir, what);
    free(what);
    for (int i = 0; i < o->nrepos; i++) {
        if (!o->repos[i].local_path)
            continue;
        what = xasprintf("repository \"%s\" (\"%s\")", o->repos[i].name, o->repos[i].local_path);
        watch_disk(a, o->repos[i].local_path, what);
        free(what);
    }
}

static void disks_free(struct alerts *a)
{
    for (size_t i = 0; i < a->ndisks; i++) {
        free(a->disks[i].path);
        free(a->disks[i].what);
    }
    free(a->disks);
}

static struct notify_event *make_damaged(struct alerts *a, const struct snapshot *s, int which,
                                         bool bad)
{
    (void)which;
    if (!bad)
        return NULL; /* no event for its end */
    struct notify_event *e =
        notify_event_new(cluster(a), CONFIG_EVENT_WAL_DAMAGED,
                         "a WAL page from the server is "
                         "damaged: %s",
                         s->bad_page_error ? s->bad_page_error : "it failed its checks");
    json_object_set_new(e->details, "bad_pages", json_integer((json_int_t)s->bad_pages));
    return e;
}

static void evaluate(struct alerts *a)
{
    const struct receiver_options *o = a->rx->o;
    struct snapshot s;
    snapshot_take(a->rx, &s);

    int64_t grace_us = (o->status_interval_ms > 0 ? o->status_interval_ms : 10000) * 1000;
    bool lost = !s.connected && s.lost_us && s.now_us - s.lost_us >= grace_us;
    judge(a, &s, &a->stream, lost, s.lost_us, make_stream, 0);

    for (int t = 0; t < 2; t++) {
        if (s.have[t] && o->rpo_target_ms > 0)
            judge(a, &s, &a->rpo[t], s.rpo[t] * 1000 > (double)o->rpo_target_ms, 0, make_rpo, t);
    }
    for (int i = 0; i < s.nrepos; i++)
        judge(a, &s, &a->repos[i],
              s.repos[i].fail_streak >= REPO_FAILING_AFTER ||
                  (a->repos[i].active && s.repos[i].error),
              s.repos[i].error_since_us, make_repo, i);
    if (o->spool_max) {
        bool high = s.spool_bytes * 10 > o->spool_max * 8;
        bool still = s.spool_bytes * 10 > o->spool_max * 7;
        judge(a, &s, &a->spool, high || (a->spool.active && still), 0, make_spool, 0);
    }
    judge_disks(a, &s);
    /* Damage: open on a new bad page, repeat while more come, close once the stream
     * flushed past where it was seen. */
    bool fresh = s.bad_pages > a->bad_pages_seen;
    if (fresh && !a->damaged.active)
        a->damaged_at = s.flushed;
    a->bad_pages_seen = s.bad_pages;
    judge(a, &s, &a->damaged, fresh || (a->damaged.active && s.flushed <= a->damaged_at), 0,
          make_damaged, 0);
    snapshot_free(&s);
}

static void *alerts_thread(void *arg)
{
    struct alerts *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stop) {
        pthread_mutex_unlock(&a->lock);
        evaluate(a);
        pthread_mutex_lock(&a->lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ALERTS_TICK_MS / 1000;
        while (!a->stop && pthread_cond_timedwait(&a->wake, &a->lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

void alerts_start(struct receiver *rx)
{
    if (!rx->o->notifier)
        return;
    struct alerts *a = xcalloc(1, sizeof(*a));
    a->rx = rx;
    a->repos = xcalloc((size_t)rx->o->nrepos + 1, sizeof(*a->repos));
    watch_disks(a);
    pthread_mutex_init(&a->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&a->thread, NULL, alerts_thread, a) != 0) {
        log_error("could not start the events thread: no notifications will be sent");
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->wake);
        disks_free(a);
        free(a->repos);
        free(a);
        return;
    }
    rx->alerts = a;
}

void alerts_stop(struct receiver *rx)
{
    struct alerts *a = rx->alerts;
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->wake);
    disks_free(a);
    free(a->repos);
    free(a);
    rx->alerts = NULL;
}
