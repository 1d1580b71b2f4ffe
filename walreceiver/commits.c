/*
 * commits.c — when the commits the receiver took were made, for the newest commit each
 * repository holds and the RPO that follows (status.c).
 *
 * The receive loop decodes the WAL it writes to the spool (waldecode) and notes every
 * commit record: where it ends and its commit time. A repository holding WAL up to L
 * holds every commit whose record ends at or before L, so the newest commit it holds is
 * the last mark at or before L. Marks are kept in LSN order with the time made
 * monotonic (the newest commit up to there, whatever order concurrent commits took their
 * times in), at most one per COMMIT_MARK_STEP_US of commit time, and thinned further
 * back when the array is full, so that a lookup far behind the stream answers an older
 * commit (never a newer one: the RPO it gives errs on the safe side).
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/waldecode.h"

#include <string.h>

void commit_marks_restart(struct commit_marks *c, lsn_t start)
{
    if (c->tracking_since != LSN_INVALID && start >= c->tracking_since && start <= c->decoded_to) {
        /* The new stream continues what was decoded: its WAL from start on replaces what
         * was taken after it (a timeline that went on elsewhere, a server that restarted
         * after its last valid record). */
        while (c->n > 0 && c->m[c->n - 1].end > start)
            c->n--;
    } else {
        c->n = 0;
        c->tracking_since = start;
    }
    c->decoded_to = start;
    c->decoding = true;
}

void commit_marks_decoded(struct commit_marks *c, lsn_t pos)
{
    if (c->decoding && pos > c->decoded_to)
        c->decoded_to = pos;
}

void commit_marks_gap(struct commit_marks *c)
{
    c->decoding = false;
}

/* Drop the marks no lookup needs (those before the last one at or before keep_from),
 * then, if still over three quarters full, every other one of the older half. */
static void make_room(struct commit_marks *c, lsn_t keep_from)
{
    int first = 0;
    while (first + 1 < c->n && c->m[first + 1].end <= keep_from)
        first++;
    if (first > 0) {
        memmove(&c->m[0], &c->m[first], (size_t)(c->n - first) * sizeof(c->m[0]));
        c->n -= first;
        /* Below the first mark left nothing is known any more. */
        c->tracking_since = c->m[0].end;
    }
    if (c->n <= COMMIT_MARKS_MAX * 3 / 4)
        return;
    int half = c->n / 2, j = 0;
    for (int i = 0; i < half; i += 2)
        c->m[j++] = c->m[i];
    memmove(&c->m[j], &c->m[half], (size_t)(c->n - half) * sizeof(c->m[0]));
    c->n = j + (c->n - half);
}

void commit_marks_add(struct commit_marks *c, lsn_t end, int64_t time_us, lsn_t keep_from)
{
    if (!c->decoding || end < c->tracking_since)
        return;
    struct commit_mark *last = c->n ? &c->m[c->n - 1] : NULL;
    if (last && end <= last->end)
        return; /* taken already */
    if (last && time_us < last->time_us)
        time_us = last->time_us;
    if (c->n >= 2 && time_us - c->m[c->n - 2].time_us < COMMIT_MARK_STEP_US) {
        last->end = end; /* the same step: the mark moves to the newest commit */
        last->time_us = time_us;
        return;
    }
    if (c->n == COMMIT_MARKS_MAX)
        make_room(c, keep_from);
    c->m[c->n].end = end;
    c->m[c->n].time_us = time_us;
    c->n++;
}

int commit_marks_find(const struct commit_marks *c, lsn_t lsn, struct commit_mark *out)
{
    if (c->tracking_since == LSN_INVALID || lsn < c->tracking_since || lsn > c->decoded_to)
        return -1;         /* commits there may not all be known */
    int lo = 0, hi = c->n; /* the first mark past lsn */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->m[mid].end <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    *out = c->m[lo - 1];
    return 1;
}

/* --- the receive loop's decoder ------------------------------------------------------ */

/* The lowest position a status lookup may ask about: what the repository furthest
 * behind holds (0 while one has not shipped since the start). Caller holds rx->lock. */
static lsn_t lowest_shipped_locked(struct receiver *rx)
{
    lsn_t low = rx->flushed;
    for (int i = 0; i < rx->nshippers; i++) {
        if (rx->shippers[i].shipped_lsn < low)
            low = rx->shippers[i].shipped_lsn;
    }
    return low;
}

static void on_decoded(void *arg, const struct waldecode_event *ev)
{
    struct receiver *rx = arg;
    if (ev->kind != WALDECODE_COMMIT)
        return;
    int64_t unix_us = ev->time + (int64_t)WALDECODE_PG_EPOCH * 1000000;
    pthread_mutex_lock(&rx->lock);
    commit_marks_add(&rx->commits, ev->end_lsn, unix_us, lowest_shipped_locked(rx));
    pthread_mutex_unlock(&rx->lock);
}

struct waldecode *commits_decoder_start(struct receiver *rx, int pg_major, timeline_t tli,
                                        lsn_t start)
{
    struct waldecode_config cfg = {
        .seg_size = rx->seg_size,
        .system_identifier = rx->identity.system_identifier,
        .pg_major = pg_major,
        .tli = tli,
        .start = start,
        .prev_lsn = LSN_INVALID,
        .on_event = on_decoded,
        .arg = rx,
    };
    struct waldecode *d = NULL;
    if (waldecode_new(&cfg, &d) < 0) {
        log_warn("commit times of the WAL taken will not be known: %s", err_message());
        err_clear();
        d = NULL;
    }
    pthread_mutex_lock(&rx->lock);
    commit_marks_restart(&rx->commits, start);
    if (!d)
        commit_marks_gap(&rx->commits);
    pthread_mutex_unlock(&rx->lock);
    return d;
}

/* A decoder that fails (or finds the WAL ended, which a live stream never does) is
 * dropped until the next stream: WAL is decoded for the figures, never a reason to stop
 * taking it. */
void commits_decode(struct receiver *rx, struct waldecode **dec, const uint8_t *data, size_t len)
{
    if (!*dec || len == 0)
        return;
    int rc = waldecode_feed(*dec, data, len);
    const struct waldecode_summary *sum = waldecode_summary(*dec);
    if (rc < 0 || sum->end_of_wal) {
        log_warn("commit times of the WAL taken are not known past %s: %s",
                 rc < 0 ? "here" : "the end the decoder found",
                 rc < 0 ? err_message() : sum->end_reason);
        err_clear();
        waldecode_free(*dec);
        *dec = NULL;
        pthread_mutex_lock(&rx->lock);
        commit_marks_gap(&rx->commits);
        pthread_mutex_unlock(&rx->lock);
        return;
    }
    if (sum->restore_point_count > 0) /* the summary keeps them; nobody reads them here */
        waldecode_summary_reset(*dec);
    lsn_t pos = waldecode_position(*dec);
    pthread_mutex_lock(&rx->lock);
    commit_marks_decoded(&rx->commits, pos);
    pthread_mutex_unlock(&rx->lock);
}
