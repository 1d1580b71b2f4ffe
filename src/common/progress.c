/* progress.c — one-line progress display (see include/pgark/progress.h). */
#include "pgark/progress.h"

#include "pgark/mem.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_INTERVAL_US 250000 /* at most four redraws a second */
#define PROGRESS_LINE_MAX 512

struct progress {
    char *what;
    uint64_t total;
    bool enabled;
    FILE *stream; /* NULL: stderr */
    int64_t (*now_us)(void);
    int64_t start_us;

    uint64_t done;        /* atomic */
    int64_t last_draw_us; /* atomic; time of the last draw (start before the first) */
    bool finished;        /* atomic */

    pthread_mutex_t lock; /* one drawer at a time; guards the fields below */
    size_t prev_len;      /* visible length of the line on screen, to blank leftovers */
    bool drawn;           /* a line without its newline is on screen */
};

static int64_t mono_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Local stand-ins for size_format()/duration_format() of units.h, which is being written
 * in parallel; to be replaced by those once they land. Sizes use binary units with one
 * decimal below 100 ("1.2 GiB", "150 MiB"); durations "350ms", "14s", "2m 5s", "1h 0m 3s".
 */
static char *fmt_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%" PRIu64 " B", bytes);
        return buf;
    }
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    if (v < 99.95)
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    else
        snprintf(buf, cap, "%.0f %s", v, units[u]);
    return buf;
}

static char *fmt_duration(int64_t ms, char *buf, size_t cap)
{
    if (ms < 0)
        ms = 0;
    if (ms < 1000) {
        snprintf(buf, cap, "%" PRId64 "ms", ms);
        return buf;
    }
    int64_t s = ms / 1000;
    if (s >= 3600)
        snprintf(buf, cap, "%" PRId64 "h %" PRId64 "m %" PRId64 "s", s / 3600, s / 60 % 60, s % 60);
    else if (s >= 60)
        snprintf(buf, cap, "%" PRId64 "m %" PRId64 "s", s / 60, s % 60);
    else
        snprintf(buf, cap, "%" PRId64 "s", s);
    return buf;
}

struct progress *progress_new(const char *what, uint64_t total, bool enabled)
{
    struct progress *p = xcalloc(1, sizeof(*p));
    p->what = xstrdup(what);
    p->total = total;
    p->enabled = enabled;
    p->now_us = mono_now_us;
    p->start_us = p->now_us();
    p->last_draw_us = p->start_us;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void progress_set_stream(struct progress *p, FILE *stream)
{
    if (p)
        p->stream = stream;
}

void progress_set_clock(struct progress *p, int64_t (*now_us)(void))
{
    if (!p)
        return;
    p->now_us = now_us ? now_us : mono_now_us;
    p->start_us = p->now_us();
    __atomic_store_n(&p->last_draw_us, p->start_us, __ATOMIC_RELAXED);
}

/* Write "\r" + text, blanking what is left of a longer earlier line; lock held. */
static void emit_locked(struct progress *p, const char *text, bool final)
{
    FILE *out = p->stream ? p->stream : stderr;
    size_t len = strlen(text);
    int pad = p->prev_len > len ? (int)(p->prev_len - len) : 0;
    fprintf(out, "\r%s%*s%s", text, pad, "", final ? "\n" : "");
    fflush(out);
    p->prev_len = final ? 0 : len;
    p->drawn = !final;
}

static void draw_locked(struct progress *p, int64_t now)
{
    uint64_t done = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
    int64_t elapsed = now - p->start_us;
    char line[PROGRESS_LINE_MAX], a[32], b[32];
    int n = snprintf(line, sizeof(line), "%.200s: %s", p->what, fmt_size(done, a, sizeof(a)));
    if (p->total > 0) {
        unsigned pct = done >= p->total ? 100 : (unsigned)((double)done * 100.0 / (double)p->total);
        n += snprintf(line + n, sizeof(line) - (size_t)n, " of %s (%u%%)",
                      fmt_size(p->total, b, sizeof(b)), pct);
    }
    if (elapsed > 0 && done > 0) {
        double rate = (double)done * 1e6 / (double)elapsed; /* bytes per second */
        n += snprintf(line + n, sizeof(line) - (size_t)n, ", %s/s",
                      fmt_size((uint64_t)rate, a, sizeof(a)));
        if (p->total > done) {
            /* Rounded up so the display never claims 0s while bytes remain. */
            int64_t eta_ms = (int64_t)(((double)(p->total - done) / rate) * 1000.0 + 999.0);
            eta_ms -= eta_ms % 1000;
            snprintf(line + n, sizeof(line) - (size_t)n, ", ETA %s",
                     fmt_duration(eta_ms, b, sizeof(b)));
        }
    }
    emit_locked(p, line, false);
}

static void maybe_draw(struct progress *p)
{
    if (!p->enabled || __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE))
        return;
    int64_t now = p->now_us();
    if (now - __atomic_load_n(&p->last_draw_us, __ATOMIC_RELAXED) < PROGRESS_INTERVAL_US)
        return;
    /* Workers must not queue behind a slow terminal: whoever holds the lock draws. */
    if (pthread_mutex_trylock(&p->lock) != 0)
        return;
    if (!__atomic_load_n(&p->finished, __ATOMIC_ACQUIRE) &&
        now - __atomic_load_n(&p->last_draw_us, __ATOMIC_RELAXED) >= PROGRESS_INTERVAL_US) {
        __atomic_store_n(&p->last_draw_us, now, __ATOMIC_RELAXED);
        draw_locked(p, now);
    }
    pthread_mutex_unlock(&p->lock);
}

void progress_update(struct progress *p, uint64_t done)
{
    if (!p)
        return;
    __atomic_store_n(&p->done, done, __ATOMIC_RELAXED);
    maybe_draw(p);
}

void progress_add(struct progress *p, uint64_t n)
{
    if (!p)
        return;
    __atomic_fetch_add(&p->done, n, __ATOMIC_RELAXED);
    maybe_draw(p);
}

uint64_t progress_get(const struct progress *p)
{
    return p ? __atomic_load_n(&p->done, __ATOMIC_RELAXED) : 0;
}

void progress_done(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (__atomic_exchange_n(&p->finished, true, __ATOMIC_ACQ_REL) || !p->enabled)
        goto out;
    uint64_t done = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
    int64_t elapsed = p->now_us() - p->start_us;
    char line[PROGRESS_LINE_MAX], a[32], b[32];
    int n = snprintf(line, sizeof(line), "%.200s: %s", p->what, fmt_size(done, a, sizeof(a)));
    if (p->total > 0 && done != p->total) {
        unsigned pct = done >= p->total ? 100 : (unsigned)((double)done * 100.0 / (double)p->total);
        n += snprintf(line + n, sizeof(line) - (size_t)n, " of %s (%u%%)",
                      fmt_size(p->total, b, sizeof(b)), pct);
    }
    n += snprintf(line + n, sizeof(line) - (size_t)n, " in %s",
                  fmt_duration(elapsed / 1000, a, sizeof(a)));
    if (elapsed > 0 && done > 0)
        snprintf(line + n, sizeof(line) - (size_t)n, ", %s/s",
                 fmt_size((uint64_t)((double)done * 1e6 / (double)elapsed), b, sizeof(b)));
    emit_locked(p, line, true);
out:
    pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        FILE *out = p->stream ? p->stream : stderr;
        fputc('\n', out);
        fflush(out);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_destroy(&p->lock);
    free(p->what);
    free(p);
}
