/*
 * status.c — the receiver's status.json and the flush-time marks behind lag in
 * seconds.
 *
 * Lag in seconds of a repository is how long ago the spool first held the oldest
 * byte the repository does not hold yet: a bound on the data that would be lost with
 * the primary and the spool now, which grows while nothing is committed. The marks are
 * (flushed position, time) pairs; when the ring is full every other mark is dropped, so
 * it always spans from the start with coarser steps further back.
 *
 * The RPO of a repository is the data a restore to latest from it would lose now,
 * measured as commit time: from the newest commit it holds to the newest commit the
 * spool holds (commits.c), 0 when it holds every commit the spool does. Where the
 * commits are not known (before the stream the receiver decoded, after a decoding
 * failure) it is the lag, which is never less. A tier (local, off-site) has the RPO of
 * its worst repository and the newest commit of its furthest behind.
 */
#include "receiver_int.h"
#include "rpolog_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"
#include "pgark/units.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void receiver_note_flush(struct receiver *rx, lsn_t lsn)
{
    int64_t now = time_now_us();
    pthread_mutex_lock(&rx->lock);
    if (lsn > rx->flushed) {
        rx->flushed = lsn;
        rx->flushed_at_us = now;
        rx->flushes++;
        struct flush_mark *last = rx->nmarks ? &rx->marks[rx->nmarks - 1] : NULL;
        if (last && now - last->at_us < 100000) {
            /* keep the earliest time for this 100 ms step; lsn moves forward */
            last->lsn = lsn;
        } else {
            if (rx->nmarks == FLUSH_MARKS) {
                int j = 0;
                for (int i = 0; i < rx->nmarks; i += 2)
                    rx->marks[j++] = rx->marks[i];
                rx->nmarks = j;
            }
            rx->marks[rx->nmarks].lsn = lsn;
            rx->marks[rx->nmarks].at_us = now;
            rx->nmarks++;
        }
    }
    pthread_mutex_unlock(&rx->lock);
}

/* Caller holds rx->lock. The time the spool first held byte `lsn` (the mark whose
 * position first passed it). */
static int64_t flush_time_locked(struct receiver *rx, lsn_t lsn)
{
    for (int i = 0; i < rx->nmarks; i++) {
        if (rx->marks[i].lsn > lsn)
            return i > 0 ? rx->marks[i - 1].at_us : rx->marks[i].at_us;
    }
    return rx->flushed_at_us;
}

int64_t receiver_flush_time(struct receiver *rx, lsn_t lsn)
{
    pthread_mutex_lock(&rx->lock);
    int64_t t = flush_time_locked(rx, lsn);
    pthread_mutex_unlock(&rx->lock);
    return t;
}

/* Caller holds rx->lock. A repository holding WAL up to shipped: the newest commit it
 * holds (*held, when known) and its RPO in seconds, lag_s where commits are not known. */
static double repo_rpo_locked(struct receiver *rx, lsn_t shipped, double lag_s,
                              struct commit_mark *held, bool *held_known)
{
    struct commit_mark newest;
    int sk = commit_marks_find(&rx->commits, rx->flushed, &newest);
    int rk = commit_marks_find(&rx->commits, shipped, held);
    *held_known = rk == 1;
    if (shipped >= rx->flushed)
        return 0;
    if (sk == 0 && rk >= 0)
        return 0; /* no commit in what it lacks */
    if (sk == 1 && rk >= 0 && newest.end <= shipped)
        return 0;
    if (sk == 1 && rk == 1)
        return (double)(newest.time_us - held->time_us) / 1e6;
    return lag_s;
}

/* Caller holds rx->lock. What sh's repository lacks now (bytes, and seconds since the
 * spool first held it) and its RPO in seconds (repo_rpo_locked). */
static double shipper_rpo_locked(struct receiver *rx, const struct shipper *sh, int64_t now,
                                 uint64_t *lag_bytes, double *lag_s, struct commit_mark *held,
                                 bool *held_known)
{
    *lag_bytes = 0;
    *lag_s = 0;
    /* LSNs go on across a timeline switch (the new timeline shares every byte
     * below its switch point), so what a repository lacks is what lies between
     * its shipped position and the flushed one, whatever their timelines. */
    if (sh->shipped_lsn < rx->flushed) {
        *lag_bytes = rx->flushed - sh->shipped_lsn;
        int64_t since = flush_time_locked(rx, sh->shipped_lsn);
        *lag_s = since ? (double)(now - since) / 1e6 : 0;
    }
    return repo_rpo_locked(rx, sh->shipped_lsn, *lag_s, held, held_known);
}

void status_tier_rpo_locked(struct receiver *rx, int64_t now_us, double rpo[2], bool have[2])
{
    rpo[0] = rpo[1] = 0;
    have[0] = have[1] = false;
    for (int i = 0; i < rx->nshippers; i++) {
        struct shipper *sh = &rx->shippers[i];
        uint64_t lag_bytes;
        double lag_s;
        struct commit_mark held;
        bool known;
        double r = shipper_rpo_locked(rx, sh, now_us, &lag_bytes, &lag_s, &held, &known);
        int t = sh->offsite ? 1 : 0;
        if (!have[t] || r > rpo[t])
            rpo[t] = r;
        have[t] = true;
    }
}

static json_t *lsn_json(lsn_t lsn)
{
    char text[LSN_STRLEN];
    return json_string(lsn_format(lsn, text));
}

static json_t *time_json(int64_t us)
{
    char text[64];
    return us ? json_string(time_format_pg(us, text, sizeof(text))) : json_null();
}

/* The last WAL high-water mark written to a repository: its timeline, seq, reach and
 * time (the whole mark is in the spool's record). */
static json_t *hwm_json(const struct repo_wal_hwm *m, uint64_t seg_size)
{
    if (!m->seq)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "timeline", json_integer(m->tli));
    json_object_set_new(o, "seq", json_integer((json_int_t)m->seq));
    json_object_set_new(o, "end_lsn", lsn_json(repo_wal_hwm_end(m, seg_size)));
    json_object_set_new(o, "written", time_json(m->time_us));
    return o;
}

static void tier_add(struct status_tier *t, double rpo, bool known, int64_t newest_us)
{
    if (t->repos == 0 || rpo > t->rpo)
        t->rpo = rpo;
    if (t->repos == 0) {
        t->newest_known = known;
        t->newest_us = newest_us;
    } else if (!known) {
        t->newest_known = false;
    } else if (t->newest_known && newest_us < t->newest_us) {
        t->newest_us = newest_us;
    }
    t->repos++;
}

void status_view_take(struct receiver *rx, struct status_view *v)
{
    memset(v, 0, sizeof(*v));
    v->lag_tier[0] = v->lag_tier[1] = -1;
    int64_t now = time_now_us();
    v->now_us = now;
    pthread_mutex_lock(&rx->lock);
    v->connected = rx->connected;
    v->tli = rx->tli;
    v->server_end = rx->server_end;
    v->received = rx->received;
    v->flushed = rx->flushed;
    v->flushed_at_us = rx->flushed_at_us;
    v->newest_known = commit_marks_find(&rx->commits, rx->flushed, &v->newest) == 1;
    v->last_error = rx->last_error ? xstrdup(rx->last_error) : NULL;
    v->reconnects = rx->reconnects;
    v->flushes = rx->flushes;
    v->wal_messages = rx->wal_messages;
    v->status_wall_us = rx->status_wall_us;
    struct spool *spool = rx->spool;
    v->nrepos = rx->nshippers;
    v->repos = v->nrepos ? xcalloc((size_t)v->nrepos, sizeof(*v->repos)) : NULL;
    for (int i = 0; i < rx->nshippers; i++) {
        struct shipper *sh = &rx->shippers[i];
        struct status_repo *r = &v->repos[i];
        r->name = sh->name;
        r->offsite = sh->offsite;
        r->shipped_tli = sh->shipped_tli;
        r->shipped_lsn = sh->shipped_lsn;
        r->shipped_at_us = sh->shipped_at_us;
        memcpy(r->cursor, sh->cursor, sizeof(r->cursor));
        r->rpo_s =
            shipper_rpo_locked(rx, sh, now, &r->lag_bytes, &r->lag_s, &r->held, &r->held_known);
        r->segments_shipped = sh->segments_shipped;
        r->bytes_shipped = sh->bytes_shipped;
        r->upload_errors = sh->upload_errors;
        r->hwm = sh->hwm_written;
        r->last_error = sh->last_error ? xstrdup(sh->last_error) : NULL;
        r->error_since_us = sh->error_since_us;
        if (r->lag_s > v->lag_tier[sh->offsite])
            v->lag_tier[sh->offsite] = r->lag_s;
        tier_add(&v->tiers[sh->offsite], r->rpo_s, r->held_known, r->held.time_us);
    }
    pthread_mutex_unlock(&rx->lock);
    /* A directory listing: not under the lock. The spool stays open while the receiver
     * lives. */
    if (spool) {
        v->have_spool = true;
        v->spool_bytes = spool_usage(spool);
    }
}

void status_view_free(struct status_view *v)
{
    for (int i = 0; i < v->nrepos; i++)
        free(v->repos[i].last_error);
    free(v->repos);
    free(v->last_error);
    memset(v, 0, sizeof(*v));
}

static json_t *tier_json(const struct status_tier *t)
{
    if (t->repos == 0)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "newest_commit",
                        t->newest_known ? time_json(t->newest_us) : json_null());
    json_object_set_new(o, "seconds", json_real(round(t->rpo * 1000) / 1000));
    return o;
}

static json_t *seconds_json(double s)
{
    return s < 0 ? json_null() : json_real(round(s * 1000) / 1000);
}

/* Long: status.json key by key in the order of the file (the receiver, each repository,
 * the RPO tiers), then written to a temp file and renamed; one level, all under the
 * status lock.
 */
int status_write(struct receiver *rx)
{
    int rc = 0;
    char path[4096], tmp[4200];
    json_t *root = json_object();
    json_t *repos = json_array();
    struct status_view v;

    /* One writer at a time (the receive loop, the shippers): they share the temp name. */
    pthread_mutex_lock(&rx->status_lock);
    status_view_take(rx, &v);
    pthread_mutex_lock(&rx->lock);
    rx->status_at_us = time_mono_us();
    rx->status_wall_us = v.now_us;
    rx->spool_bytes = v.spool_bytes; /* for the events thread (alerts.c) */
    pthread_mutex_unlock(&rx->lock);
    json_object_set_new(root, "cluster", json_string(rx->o->repo.cluster));
    json_object_set_new(root, "pid", json_integer(getpid()));
    json_object_set_new(root, "updated", time_json(v.now_us));
    json_object_set_new(root, "connected", json_boolean(v.connected));
    json_object_set_new(root, "timeline", json_integer(v.tli));
    json_object_set_new(root, "server_lsn", lsn_json(v.server_end));
    json_object_set_new(root, "received_lsn", lsn_json(v.received));
    json_object_set_new(root, "flushed_lsn", lsn_json(v.flushed));
    json_object_set_new(root, "flushed_at", time_json(v.flushed_at_us));
    json_object_set_new(root, "newest_commit",
                        v.newest_known ? time_json(v.newest.time_us) : json_null());
    json_object_set_new(root, "newest_commit_lsn",
                        v.newest_known ? lsn_json(v.newest.end) : json_null());
    json_object_set_new(
        root, "receive_lag_bytes",
        json_integer(v.server_end > v.flushed ? (json_int_t)(v.server_end - v.flushed) : 0));
    json_object_set_new(root, "last_error", v.last_error ? json_string(v.last_error) : json_null());
    for (int i = 0; i < v.nrepos; i++) {
        const struct status_repo *sr = &v.repos[i];
        json_t *r = json_object();
        json_object_set_new(r, "name", json_string(sr->name));
        json_object_set_new(r, "offsite", json_boolean(sr->offsite));
        json_object_set_new(r, "shipped_timeline", json_integer(sr->shipped_tli));
        json_object_set_new(r, "shipped_lsn", lsn_json(sr->shipped_lsn));
        json_object_set_new(r, "shipped_at", time_json(sr->shipped_at_us));
        json_object_set_new(r, "last_segment", json_string(sr->cursor));
        json_object_set_new(r, "lag_bytes", json_integer((json_int_t)sr->lag_bytes));
        json_object_set_new(r, "lag_seconds", json_real(round(sr->lag_s * 1000) / 1000));
        json_object_set_new(r, "newest_commit",
                            sr->held_known ? time_json(sr->held.time_us) : json_null());
        json_object_set_new(r, "newest_commit_lsn",
                            sr->held_known ? lsn_json(sr->held.end) : json_null());
        json_object_set_new(r, "rpo_seconds", json_real(round(sr->rpo_s * 1000) / 1000));
        json_object_set_new(r, "segments_shipped", json_integer((json_int_t)sr->segments_shipped));
        json_object_set_new(r, "bytes_shipped", json_integer((json_int_t)sr->bytes_shipped));
        json_object_set_new(r, "hwm", hwm_json(&sr->hwm, rx->seg_size));
        json_object_set_new(r, "last_error",
                            sr->last_error ? json_string(sr->last_error) : json_null());
        json_object_set_new(r, "error_since",
                            sr->last_error ? time_json(sr->error_since_us) : json_null());
        json_array_append_new(repos, r);
    }

    json_object_set_new(root, "spool_bytes", json_integer((json_int_t)v.spool_bytes));
    json_object_set_new(root, "repos", repos);
    json_t *rpo = json_object();
    json_object_set_new(rpo, "local_seconds", seconds_json(v.lag_tier[0]));
    json_object_set_new(rpo, "offsite_seconds", seconds_json(v.lag_tier[1]));
    json_object_set_new(rpo, "local", tier_json(&v.tiers[0]));
    json_object_set_new(rpo, "offsite", tier_json(&v.tiers[1]));
    json_object_set_new(root, "rpo", rpo);
    receiver_rpo_note(spool_dir(rx->spool), v.now_us, rpo);

    snprintf(path, sizeof(path), "%s/status.json", spool_dir(rx->spool));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* 0600: it names the repositories, the server and the last errors. */
    FILE *f = privfs_fopen_w(tmp);
    if (!f) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        goto out;
    }
    int dumped =
        json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (fclose(f) != 0 || dumped != 0) {
        rc = err_set(ERR_IO, "could not write \"%s\"", tmp);
        goto out;
    }
    if (rename(tmp, path) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\"", tmp);
out:
    pthread_mutex_unlock(&rx->status_lock);
    status_view_free(&v);
    json_decref(root);
    return rc;
}
