/*
 * receive.c — the receive loop: sessions (connect, identify, the slot, where to start,
 * the repositories opened) around one timeline's stream at a time, which recvstream.c
 * reads with one handler per message type; retries with backoff; stop and reload.
 *
 * WAL bytes are checked (page headers) and written to the spool as they arrive. With
 * synchronous: true they are fsynced as soon as the socket has nothing more to give
 * (or a batch is large), so a commit waiting on us waits for one fsync — unless the
 * server's last message said it has flushed more and is sending it: then the fsync
 * waits for the rest of that burst, up to a millisecond; with
 * synchronous: false the fsync waits until the oldest byte not yet fsynced is
 * flush_interval old, a segment is complete, the stream ends or the server asks for a
 * reply, whichever comes first: one fsync and one status message per interval under
 * load instead of one per burst. Either way the flush position is reported only after
 * the fsync, so the slot never moves past bytes that are not durable here. A page header that
 * arrives in pieces is written only once it is complete and valid; a bad one ends
 * the connection, and nothing of its message reaches the spool or the server's
 * flush position. Connection trouble and bad pages are retried with backoff and
 * jitter; what retrying cannot fix ends the run.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg_stream.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"
#include "pgark/walpage.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000
/* How long the stream waits for the repositories to open before it starts without
 * the slow ones (their WAL waits in the spool). */
#define OPEN_WAIT_MS 3000
/* How long a reload waits for an upload under way before it leaves it behind. */
#define RELOAD_GRACE_MS 3000
/* After the drain (shippers_drain) at a stop: one still busy is past its own
 * stop_timeout, in an upload that will not end soon. */
#define STOP_GRACE_MS 500

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

void receiver_request_stop(void)
{
    stop_requested = 1;
}

void receiver_request_reload(void)
{
    reload_requested = 1;
}

bool receiver_should_return(void)
{
    return stop_requested || reload_requested;
}

bool receiver_is_fatal(enum err_kind kind)
{
    return kind == ERR_AUTH || kind == ERR_CONFIG || kind == ERR_MISMATCH ||
           kind == ERR_INTEGRITY || kind == ERR_USAGE;
}

static void set_last_error(struct receiver *rx, const char *text)
{
    pthread_mutex_lock(&rx->lock);
    free(rx->last_error);
    rx->last_error = text ? xstrdup(text) : NULL;
    pthread_mutex_unlock(&rx->lock);
}

void receiver_set_connected(struct receiver *rx, bool connected)
{
    pthread_mutex_lock(&rx->lock);
    if (rx->connected && !connected)
        rx->disconnected_us = time_now_us();
    rx->connected = connected;
    pthread_mutex_unlock(&rx->lock);
}

/* One shipper per repository; each opens its repository from its own thread. */
static void make_shippers(struct receiver *rx)
{
    const struct receiver_options *o = rx->o;
    struct shipper *shippers = xcalloc((size_t)o->nrepos, sizeof(*shippers));
    for (int i = 0; i < o->nrepos; i++) {
        struct shipper *sh = &shippers[i];
        sh->rx = rx;
        sh->index = i;
        sh->name = o->repos[i].name;
        sh->offsite = o->repos[i].offsite;
    }
    /* The metrics and events threads (metrics.c, alerts.c) read them under the lock. */
    pthread_mutex_lock(&rx->lock);
    rx->shippers = shippers;
    rx->nshippers = o->nrepos;
    pthread_mutex_unlock(&rx->lock);
}

static int ensure_slot(struct receiver *rx, struct pg_conn *conn, bool *exists, lsn_t *restart,
                       timeline_t *restart_tli)
{
    const struct receiver_options *o = rx->o;
    int rc = pg_read_slot(conn, o->slot, exists, restart, restart_tli);
    if (rc < 0 || *exists)
        return rc;
    if (!o->create_slot) {
        err_set(ERR_CONFIG, "replication slot \"%s\" does not exist on %s", o->slot,
                pg_conn_target(conn));
        return err_hint("create it (SELECT pg_create_physical_replication_slot('%s', true)) or "
                        "set create_slot: true for cluster \"%s\"",
                        o->slot, o->repo.cluster);
    }
    rc = pg_create_physical_slot(conn, o->slot);
    if (rc == -ERR_EXISTS) { /* created by someone else meanwhile */
        err_clear();
        rc = 0;
    }
    if (rc == 0)
        log_info("created replication slot \"%s\"", o->slot);
    *exists = false;
    return rc;
}

/* Where to start: the spool, else the slot, else the server's current segment. */
static int start_point(struct receiver *rx, const struct pg_system *sys, bool slot_existed,
                       lsn_t slot_lsn, timeline_t slot_tli, timeline_t *tli, lsn_t *start)
{
    bool found = false;
    int rc = spool_resume_point(rx->spool, &found, tli, start);
    if (rc < 0)
        return rc;
    /* A segment every repository holds has left the spool; it must not be received
     * again (it would sit in the spool forever, behind every cursor). The slot may be
     * behind it: the flush of a segment's last bytes is reported after the fact. */
    char low[WAL_NAME_BUFLEN] = "";
    pthread_mutex_lock(&rx->lock);
    for (int i = 0; i < rx->nshippers; i++) {
        const char *c = rx->shippers[i].cursor;
        if (!c[0]) {
            low[0] = '\0';
            break;
        }
        if (!low[0] || strcmp(c, low) < 0)
            memcpy(low, c, sizeof(low));
    }
    pthread_mutex_unlock(&rx->lock);
    timeline_t ctli;
    uint64_t csegno;
    if (low[0] && wal_segment_parse(low, rx->seg_size, &ctli, &csegno) == 0) {
        lsn_t after = segno_to_lsn(csegno + 1, rx->seg_size);
        if (!found || after > *start) {
            *tli = ctli;
            *start = after;
            found = true;
        }
    }
    err_clear();
    if (found)
        return 0;
    if (slot_existed && slot_lsn != LSN_INVALID) {
        *tli = slot_tli ? slot_tli : sys->timeline;
        *start = slot_lsn;
    } else {
        *tli = sys->timeline;
        *start = sys->xlogpos;
    }
    *start -= *start % rx->seg_size;
    return 0;
}

/* synchronous: false while the server waits on us to commit: every commit would wait up
 * to flush_interval. Said once (a warning, not an error: the admin may be moving the
 * setting); a server that cannot answer is not asked again. */
static void warn_waited_on(struct receiver *rx, struct pg_conn *conn)
{
    const struct receiver_options *o = rx->o;
    bool listed = false;
    if (o->synchronous || rx->sync_warned)
        return;
    if (pg_sync_standby_listed(conn, o->application_name, &listed) < 0) {
        log_debug("could not read synchronous_standby_names: %s", err_message());
        err_clear();
        rx->sync_warned = true;
        return;
    }
    if (!listed)
        return;
    rx->sync_warned = true;
    log_warn("server %s waits on \"%s\" in synchronous_standby_names, but cluster \"%s\" has "
             "synchronous: false: each commit may wait up to %lld ms for the receiver's batched "
             "flush",
             pg_conn_target(conn), o->application_name, o->repo.cluster,
             (long long)o->flush_interval_ms);
    log_warn("hint: set synchronous: true for cluster \"%s\", or remove \"%s\" from "
             "synchronous_standby_names",
             o->repo.cluster, o->application_name);
}

/* One connection: identify, check, stream until something breaks or we stop. */
static int session(struct receiver *rx, bool *made_progress)
{
    const struct receiver_options *o = rx->o;
    struct pg_system sys;
    uint64_t seg_size = 0;
    struct pg_conn *conn = NULL;
    int rc = 0;

    *made_progress = false;
    conn = pg_connect_replication(o->conninfo, o->application_name);
    if (!conn)
        return err_code();
    /* Before the spool, the repositories (repo.json) or the slot exist because of us. */
    rc = pg_check_supported(conn);
    if (rc == 0)
        rc = pg_identify_system(conn, &sys);
    if (rc == 0)
        rc = pg_wal_segment_size(conn, &seg_size);
    if (rc < 0)
        goto out;
    int major = pg_server_version(conn) / 10000;
    warn_waited_on(rx, conn);

    if (!rx->spool) {
        /* A retry after a failure below must not make the shippers twice. */
        if (!rx->shippers) {
            rx->identity.system_identifier = sys.systemid;
            rx->identity.pg_major = major;
            rx->identity.seg_size = seg_size;
            rx->seg_size = seg_size;
            make_shippers(rx);
        }
        struct spool *spool = spool_open(o->spool_dir, seg_size, o->spool_max);
        if (!spool) {
            rc = err_code();
            goto out;
        }
        pthread_mutex_lock(&rx->lock); /* the metrics thread reads it */
        rx->spool = spool;
        pthread_mutex_unlock(&rx->lock);
        rc = shippers_start(rx);
        if (rc == 0)
            rc = shippers_wait_open(rx, OPEN_WAIT_MS, receiver_should_return);
        if (rc < 0)
            goto out;
    } else if (sys.systemid != rx->identity.system_identifier || seg_size != rx->seg_size ||
               major != rx->identity.pg_major) {
        rc = err_set(ERR_MISMATCH, "server %s is system %llu, not %llu that this receiver archives",
                     pg_conn_target(conn), (unsigned long long)sys.systemid,
                     (unsigned long long)rx->identity.system_identifier);
        goto out;
    }

    bool slot_existed = false;
    lsn_t slot_lsn = 0;
    timeline_t slot_tli = 0, tli;
    lsn_t start;
    rc = ensure_slot(rx, conn, &slot_existed, &slot_lsn, &slot_tli);
    if (rc < 0)
        goto out;
    rc = start_point(rx, &sys, slot_existed, slot_lsn, slot_tli, &tli, &start);
    if (rc < 0)
        goto out;

    for (;;) {
        bool ended = false;
        rc = receiver_stream(rx, conn, major, &tli, &start, &ended);
        /* Progress is durable WAL past the best of every earlier session: bytes
         * received again after a reconnect (up to a bad page, say) are not. */
        pthread_mutex_lock(&rx->lock);
        lsn_t flushed = rx->flushed;
        pthread_mutex_unlock(&rx->lock);
        if (flushed > rx->progress_mark) {
            rx->progress_mark = flushed;
            *made_progress = true;
        }
        if (rc < 0 || !ended || receiver_should_return())
            break;
    }
out:
    receiver_set_connected(rx, false);
    if (rx->spool) {
        int rc2 = spool_close_segment(rx->spool);
        /* The close fsynced what a lost connection left unflushed (up to a batch with
         * synchronous: false): status.json and the RPO figures count it as durable. */
        lsn_t durable;
        if (rc2 == 0 && spool_flush(rx->spool, &durable) == 0)
            receiver_note_flush(rx, durable);
        if (rc == 0)
            rc = rc2;
        /* Whatever ended it, every repository gets the tail now, not at its next
         * interval: the server may be gone for good. */
        shippers_stream_ended(rx);
    }
    pg_conn_free(conn);
    return rc;
}

static void sleep_interruptible(struct receiver *rx, int64_t ms)
{
    int64_t until = time_mono_us() + ms * 1000;
    while (!receiver_should_return() && time_mono_us() < until) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
        receiver_notify_tick(rx);
    }
}

/* Long: the receiver's life in order: metrics and alerts started, sessions retried with
 * backoff (or paused while the spool is full), then alerts, shippers and metrics stopped
 * and the receiver released on the one way out; whether it is a reload decides what that
 * way out drains, and with the loop's rc what it returns.
 */
int receiver_run(const struct receiver_options *o)
{
    struct receiver *rx = receiver_new(o);
    struct metrics_server *metrics = NULL;
    int rc = 0, failures = 0;
    int64_t backoff = 0;

    o = rx->o;
    stop_requested = 0;
    reload_requested = 0;
    if (o->metrics_port) {
        metrics = metrics_server_start(rx, o->metrics_host, o->metrics_port);
        if (!metrics) {
            rc = err_code();
            receiver_release(rx);
            return rc;
        }
    }
    rx->disconnected_us = time_now_us(); /* no stream yet */
    alerts_start(rx);
    receiver_notify_ready(rx);

    while (!receiver_should_return()) {
        bool progress = false;
        rc = session(rx, &progress);
        if (rc == 0)
            break;
        /* A bad page from the server is retried like a lost connection (it may have
         * been damaged on the way), but it is an error each time: if the server's own
         * WAL is damaged, no attempt will get past it. */
        bool bad_page = rx->bad_page;
        rx->bad_page = false;
        if (receiver_is_fatal(err_kind()) && !bad_page)
            break;
        char *text = err_format();
        if (receiver_should_return()) {
            /* Stopping anyway (the server did not end the stream in time, say):
             * report it and go, without talk of reconnecting. */
            log_warn("%s", text);
            free(text);
            err_clear();
            rc = 0;
            break;
        }
        set_last_error(rx, text);
        if (err_kind() == ERR_NO_SPACE && rx->spool) {
            /* Reconnecting cannot help until the shippers (or the admin) make room:
             * wait for it, then resume at once. */
            log_warn("%s", text);
            if (err_hint_text())
                log_warn("hint: %s", err_hint_text());
            log_info("waiting for room in the spool");
            free(text);
            err_clear();
            status_write(rx), err_clear();
            /* Segments prepared for a repository that is behind wait in scratch files
             * in the spool: never let them be what keeps it full. */
            while (!receiver_should_return() && !spool_has_room(rx->spool)) {
                if (rx->prep && prep_cache_trim(rx->prep) > 0)
                    log_detail("dropped prepared segments to make room in the spool");
                sleep_interruptible(rx, 200);
            }
            if (!receiver_should_return())
                log_info("room in the spool again; resuming");
            failures = 0;
            backoff = 0;
            rc = 0;
            continue;
        }
        failures = progress ? 1 : failures + 1;
        if (o->max_retries && failures > o->max_retries) {
            free(text);
            break;
        }
        backoff = progress || !backoff ? RETRY_MIN_MS : backoff * 2;
        if (backoff > RETRY_MAX_MS)
            backoff = RETRY_MAX_MS;
        int64_t wait = backoff / 2 + random() % (backoff / 2 + 1);
        log_msg(bad_page ? LOG_ERROR : LOG_WARN, "%s", text);
        if (err_hint_text())
            log_msg(bad_page ? LOG_ERROR : LOG_WARN, "hint: %s", err_hint_text());
        log_info("reconnecting in %.1f s", (double)wait / 1000);
        pthread_mutex_lock(&rx->lock);
        rx->reconnects++;
        pthread_mutex_unlock(&rx->lock);
        free(text);
        err_clear();
        if (rx->spool)
            status_write(rx), err_clear();
        sleep_interruptible(rx, wait);
        rc = 0;
    }

    struct err_saved *saved = err_save();
    alerts_stop(rx);
    /* A stop (or an end for good) leaves the repositories with all the spool holds,
     * each within its stop_timeout; a reload does not wait: the stream resumes at once
     * and the new shippers copy the tail when they start. */
    bool reloading = reload_requested && !stop_requested;
    receiver_notify_leaving(reloading);
    if (rx->spool && !reloading)
        shippers_drain(rx);
    shippers_stop(rx, reloading ? RELOAD_GRACE_MS : STOP_GRACE_MS);
    if (rx->spool && status_write(rx) < 0)
        err_clear();
    metrics_server_stop(metrics);
    err_restore(saved);
    /* A shipper left behind keeps the receiver (and its repository, storage and
     * options) until its upload ends; the last reference frees them. */
    receiver_release(rx);
    if (rc == 0 && reloading)
        rc = RECEIVER_RELOAD;
    return rc;
}
