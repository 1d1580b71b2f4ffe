/*
 * heartbeat.c — a running marker kept fresh (repo.h, "running markers"): a thread
 * rewrites it every interval, and the lease says whether its writer may still count on
 * being seen alive.
 *
 * Beats are serialised (the thread's and repo_heartbeat_beat's), so one repository never
 * has two writes of the same marker in flight. Times are CLOCK_BOOTTIME: a machine that
 * slept did not beat, and its lease must say so.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct repo_heartbeat {
    struct repo **repos; /* borrowed */
    size_t n;
    /* Dropped (repo_heartbeat_drop): no more beats, one try to remove the marker at
     * the stop, so that it does not block expire there until it is stale. Borrowed. */
    struct repo **dropped;
    size_t ndropped;
    char *label; /* NULL: expire's marker */
    int64_t interval_us, lease_us;

    pthread_mutex_t beat; /* one beat at a time */
    pthread_mutex_t lock; /* what follows */
    pthread_cond_t wake;
    bool stop;
    bool started;       /* the thread runs */
    int64_t last_ok_us; /* boot clock when the last successful beat began */
    bool broken;        /* a gap longer than the lease since the last repo_heartbeat_beat */
    bool warned;        /* a failing beat was warned about; cleared by a success */
    pthread_t thread;
};

static int64_t boot_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *what(const struct repo_heartbeat *hb)
{
    return hb->label ? "backup" : "expire";
}

/* Write the marker in every repository, also past one that fails (a repository down
 * must not leave the others' markers to go stale). 0, or the first failure (error set;
 * *failed, when not NULL, the repository it failed in). */
static int beat_all(struct repo_heartbeat *hb, struct repo **failed)
{
    struct err_saved *first = NULL;
    int rc = 0;
    pthread_mutex_lock(&hb->beat);
    int64_t began = boot_us();
    for (size_t i = 0; i < hb->n; i++) {
        if (repo_marker_put(hb->repos[i], hb->label) == 0)
            continue;
        if (first) {
            err_clear();
            continue;
        }
        rc = err_code();
        if (failed)
            *failed = hb->repos[i];
        first = err_save();
    }
    if (first)
        err_restore(first);
    pthread_mutex_lock(&hb->lock);
    if (rc == 0) {
        if (began - hb->last_ok_us > hb->lease_us)
            hb->broken = true;
        hb->last_ok_us = began;
    }
    pthread_mutex_unlock(&hb->lock);
    pthread_mutex_unlock(&hb->beat);
    return rc;
}

static void *beat_thread(void *arg)
{
    struct repo_heartbeat *hb = arg;
    pthread_mutex_lock(&hb->lock);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = (int64_t)until.tv_nsec + (hb->interval_us % 1000000) * 1000;
        until.tv_sec += (time_t)(hb->interval_us / 1000000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        while (!hb->stop && pthread_cond_timedwait(&hb->wake, &hb->lock, &until) != ETIMEDOUT)
            ;
        if (hb->stop)
            break;
        pthread_mutex_unlock(&hb->lock);
        int rc = beat_all(hb, NULL);
        pthread_mutex_lock(&hb->lock);
        if (rc < 0 && !hb->warned) {
            log_warn("could not refresh the running marker of %s%s%s: %s (retrying every %lld s; "
                     "after %d s without one, others take the %s for dead)",
                     what(hb), hb->label ? " " : "", hb->label ? hb->label : "", err_message(),
                     (long long)(hb->interval_us / 1000000), REPO_MARKER_STALE_S, what(hb));
            hb->warned = true;
        } else if (rc == 0 && hb->warned) {
            log_info("the running marker of %s%s%s is refreshed again", what(hb),
                     hb->label ? " " : "", hb->label ? hb->label : "");
            hb->warned = false;
        }
        err_clear();
    }
    pthread_mutex_unlock(&hb->lock);
    return NULL;
}

static void remove_markers(struct repo_heartbeat *hb, struct repo *const *repos, size_t n)
{
    struct err_saved *saved = err_save();
    for (size_t i = 0; i < n; i++) {
        if (repo_marker_remove(repos[i], hb->label) < 0) {
            log_warn("could not remove the running marker of %s%s%s in repository \"%s\": %s",
                     what(hb), hb->label ? " " : "", hb->label ? hb->label : "",
                     repo_name(repos[i]), err_message());
            err_clear();
        }
    }
    err_restore(saved);
}

struct repo_heartbeat *repo_heartbeat_start(struct repo *const *repos, size_t n, const char *label,
                                            int interval_ms, int lease_ms)
{
    struct repo_heartbeat *hb = xcalloc(1, sizeof(*hb));
    pthread_condattr_t attr;

    hb->repos = xcalloc(n + 1, sizeof(*hb->repos));
    memcpy(hb->repos, repos, n * sizeof(*repos));
    hb->n = n;
    hb->label = label ? xstrdup(label) : NULL;
    hb->interval_us = (interval_ms > 0 ? interval_ms : REPO_MARKER_BEAT_S * 1000) * INT64_C(1000);
    hb->lease_us = (lease_ms > 0 ? lease_ms : REPO_MARKER_LEASE_S * 1000) * INT64_C(1000);
    pthread_mutex_init(&hb->beat, NULL);
    pthread_mutex_init(&hb->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hb->wake, &attr);
    pthread_condattr_destroy(&attr);
    hb->last_ok_us = boot_us();

    /* The first markers one by one, so that a failure removes exactly those written. */
    for (size_t i = 0; i < n; i++) {
        if (repo_marker_put(repos[i], label) < 0) {
            remove_markers(hb, hb->repos, i);
            hb->n = 0;
            repo_heartbeat_stop(hb);
            return NULL;
        }
    }
    int e = pthread_create(&hb->thread, NULL, beat_thread, hb);
    if (e != 0) {
        err_set_errno(ERR_RUNTIME, e, "could not start the heartbeat of the running marker");
        repo_heartbeat_stop(hb);
        return NULL;
    }
    hb->started = true;
    return hb;
}

int repo_heartbeat_beat(struct repo_heartbeat *hb, struct repo **failed)
{
    if (failed)
        *failed = NULL;
    int rc = beat_all(hb, failed);
    pthread_mutex_lock(&hb->lock);
    hb->broken = rc < 0; /* a failed beat: no lease until one succeeds */
    pthread_mutex_unlock(&hb->lock);
    if (rc < 0)
        err_context("while refreshing the running marker of %s%s%s", what(hb), hb->label ? " " : "",
                    hb->label ? hb->label : "");
    return rc;
}

void repo_heartbeat_drop(struct repo_heartbeat *hb, const struct repo *r)
{
    pthread_mutex_lock(&hb->beat);
    for (size_t i = 0; i < hb->n; i++) {
        if (hb->repos[i] != r)
            continue;
        hb->dropped = xrealloc(hb->dropped, (hb->ndropped + 1) * sizeof(*hb->dropped));
        hb->dropped[hb->ndropped++] = hb->repos[i];
        memmove(&hb->repos[i], &hb->repos[i + 1], (hb->n - i - 1) * sizeof(*hb->repos));
        hb->n--;
        break;
    }
    pthread_mutex_unlock(&hb->beat);
}

bool repo_heartbeat_held(struct repo_heartbeat *hb)
{
    pthread_mutex_lock(&hb->lock);
    bool held = !hb->broken && boot_us() - hb->last_ok_us <= hb->lease_us;
    pthread_mutex_unlock(&hb->lock);
    return held;
}

void repo_heartbeat_stop(struct repo_heartbeat *hb)
{
    if (!hb)
        return;
    if (hb->started) {
        pthread_mutex_lock(&hb->lock);
        hb->stop = true;
        pthread_cond_signal(&hb->wake);
        pthread_mutex_unlock(&hb->lock);
        pthread_join(hb->thread, NULL);
    }
    remove_markers(hb, hb->repos, hb->n);
    remove_markers(hb, hb->dropped, hb->ndropped);
    pthread_cond_destroy(&hb->wake);
    pthread_mutex_destroy(&hb->lock);
    pthread_mutex_destroy(&hb->beat);
    free(hb->label);
    free(hb->repos);
    free(hb->dropped);
    free(hb);
}
