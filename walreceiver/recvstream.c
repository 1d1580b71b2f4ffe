/*
 * recvstream.c — one timeline's stream, the heart of the receive loop (receive.c has the
 * sessions around it): one handler per message type, as pg_receivewal's receivelog.c
 * reads them. receiver_stream() reads and dispatches over one struct stream_state:
 * on_wal (XLogData), on_keepalive (primary keepalive), on_end (end of the COPY: the
 * timeline ended); besides the messages, on_idle runs when a read times out with nothing
 * (fsync, status, the silence rule), after_read after every read (events, the status
 * file), and a stop is handled in receiver_stream() itself (flush, then end the COPY).
 * See receive.c's header for when WAL is fsynced and reported. Moved out of receive.c
 * whole.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg_stream.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"
#include "pgark/walpage.h"

#include <stdlib.h>
#include <string.h>

#define READ_TIMEOUT_MS 200
/* synchronous: true: how long the fsync of what came may wait for WAL the server said
 * it has flushed and is sending (an XLogData's walEnd past its data), counted from the
 * oldest byte not yet fsynced. */
#define MORE_WAIT_US 1000
#define STATUS_FILE_INTERVAL_US 1000000
#define BATCH_BYTES (8 * 1024 * 1024)
#define SILENCE_TIMEOUT_MS 60000

static int fetch_history(struct receiver *rx, struct pg_conn *conn, timeline_t tli)
{
    if (tli <= 1)
        return 0;
    uint8_t *content = NULL;
    size_t len = 0;
    int rc = pg_timeline_history(conn, tli, &content, &len);
    if (rc == 0)
        rc = spool_write_history(rx->spool, tli, content, len);
    free(content);
    if (rc == 0)
        shippers_wake(rx);
    return rc;
}

/* fsync what was written and tell the server. */
static int flush_and_report(struct receiver *rx, struct pg_conn *conn, bool force,
                            bool reply_requested)
{
    lsn_t flushed = 0, before;
    pthread_mutex_lock(&rx->lock);
    before = rx->flushed;
    pthread_mutex_unlock(&rx->lock);
    int rc = spool_flush(rx->spool, &flushed);
    if (rc < 0)
        return rc;
    if (flushed > before) {
        receiver_note_flush(rx, flushed);
        /* Shippers have work when a segment completed; partial copies run on their own
         * timer. Waking them on every flush cost more CPU than the shipping itself. */
        if (lsn_to_segno(flushed, rx->seg_size) != lsn_to_segno(before, rx->seg_size))
            shippers_wake(rx);
    }
    if (flushed > before || force) {
        lsn_t received;
        pthread_mutex_lock(&rx->lock);
        received = rx->received;
        pthread_mutex_unlock(&rx->lock);
        /* flush 0 would mean "unknown"; before the first byte, report nothing flushed */
        rc = pg_stream_status(conn, received, flushed, LSN_INVALID, reply_requested);
    }
    return rc;
}

/* The start of a page header whose bytes came in more than one message: held back
 * until the header is complete and found valid. */
struct held_header {
    uint8_t bytes[WALPAGE_MAX_HDR];
    size_t len;
    lsn_t lsn;
};

/* Check an XLogData message and write what is vetted to the spool. Bytes of a page
 * header not yet complete are held (h) and written with the rest of it, so no byte
 * of a bad page is ever written, flushed or acknowledged. A bad page sets
 * rx->bad_page. */
static int take_wal(struct receiver *rx, struct walpage_checker *check, struct held_header *h,
                    struct waldecode **dec, timeline_t tli, const struct pg_msg *msg)
{
    int rc = walpage_check(check, msg->data_start, msg->data, msg->len);
    if (rc < 0) {
        if (err_kind() == ERR_INTEGRITY) {
            rx->bad_page = true;
            pthread_mutex_lock(&rx->lock);
            rx->bad_pages++;
            free(rx->bad_page_error);
            rx->bad_page_error = xstrdup(err_message());
            pthread_mutex_unlock(&rx->lock);
        }
        return rc;
    }
    lsn_t vetted = walpage_vetted(check);
    if (vetted < msg->data_start) {
        /* Still inside the held header: hold these bytes too (they fit: the header is
         * incomplete, so all of them belong to it). */
        memcpy(h->bytes + h->len, msg->data, msg->len);
        h->len += msg->len;
        return 0;
    }
    if (h->len) {
        rc = spool_write(rx->spool, tli, h->lsn, h->bytes, h->len);
        if (rc == 0)
            commits_decode(rx, dec, h->bytes, h->len);
        h->len = 0;
        if (rc < 0)
            return rc;
    }
    size_t take = (size_t)(vetted - msg->data_start);
    if (take)
        rc = spool_write(rx->spool, tli, msg->data_start, msg->data, take);
    if (rc == 0)
        commits_decode(rx, dec, msg->data, take);
    if (rc == 0 && take < msg->len) {
        h->len = msg->len - take;
        h->lsn = vetted;
        memcpy(h->bytes, msg->data + take, h->len);
    }
    return rc;
}

/* One timeline's stream, as its handlers see it. */
struct stream_state {
    struct receiver *rx;
    struct pg_conn *conn;
    struct walpage_checker check;
    struct held_header held;
    struct waldecode *dec;
    timeline_t *tli;
    lsn_t *start;
    int64_t last_status, last_file, last_msg; /* monotonic µs */
    int64_t silence_us;
    size_t unflushed;        /* bytes written since the last fsync */
    int64_t flush_due;       /* synchronous: false: when the unflushed bytes must be fsynced */
    int64_t unflushed_since; /* when the oldest of them was written */
    lsn_t more_to;           /* synchronous: true: the server has flushed WAL up to here and is
                              * sending it (the last XLogData's walEnd); 0 when not */
    bool waiting_more;       /* the fsync waits for more_coming's bytes (read_timeout_ms) */
    uint64_t segno;          /* the segment the last flush ended in */
    bool pinged;             /* the server was asked for a reply in this silence */
};

/* fsync, report, and note when (the status interval counts from here). */
static int stream_flush(struct stream_state *st, int64_t now, bool force, bool reply_requested)
{
    int rc = flush_and_report(st->rx, st->conn, force, reply_requested);
    st->unflushed = 0;
    st->more_to = 0;
    st->waiting_more = false;
    st->last_status = now;
    pthread_mutex_lock(&st->rx->lock);
    st->segno = lsn_to_segno(st->rx->received, st->rx->seg_size);
    pthread_mutex_unlock(&st->rx->lock);
    return rc;
}

/* Whether the bytes written since the last flush must be fsynced now, with more
 * messages possibly waiting on the socket. */
static bool flush_now(const struct stream_state *st, lsn_t end, int64_t now)
{
    if (!st->unflushed)
        return false;
    if (st->rx->o->synchronous)
        return st->unflushed >= BATCH_BYTES;
    /* The spool fsynced a segment it completed: report it now, so the slot and the
     * shippers do not wait an interval for a whole segment. */
    return now >= st->flush_due || lsn_to_segno(end, st->rx->seg_size) != st->segno;
}

/* synchronous: true, libpq has no whole message left and bytes wait for their fsync:
 * whether the rest of a burst is on its way, so that one fsync covers it all: the
 * server said it has flushed more than it sent (walsender sends that at once, in
 * messages of at most 128 kB), and the oldest byte waiting is younger than
 * MORE_WAIT_US. (Looking at the socket as well, as pg_receivewal does, cost a poll per
 * flush and saved no fsync under pgbench: its messages rarely wait there.) */
static bool more_coming(const struct stream_state *st, int64_t now)
{
    return st->more_to && now - st->unflushed_since < MORE_WAIT_US;
}

/* How long the next read may wait for a message. synchronous: true: not at all while
 * bytes wait for their fsync (it is done when the socket runs dry), but for the rest of
 * a burst (more_coming, up to a millisecond); false: until the fsync is due. */
static int read_timeout_ms(const struct stream_state *st, int64_t now)
{
    if (!st->unflushed)
        return READ_TIMEOUT_MS;
    if (st->rx->o->synchronous)
        return st->waiting_more ? 1 : 0;
    if (now >= st->flush_due)
        return 0;
    int64_t ms = (st->flush_due - now + 999) / 1000;
    return ms < READ_TIMEOUT_MS ? (int)ms : READ_TIMEOUT_MS;
}

/* XLogData: vet and spool it; fsync once a batch is large. */
static int on_wal(struct stream_state *st, const struct pg_msg *msg, int64_t now)
{
    struct receiver *rx = st->rx;
    int rc = take_wal(rx, &st->check, &st->held, &st->dec, *st->tli, msg);
    if (rc < 0) {
        /* Whatever did reach the spool (a segment completed just before the disk
         * filled) is durable: say so, so the slot does not lag. */
        struct err_saved *saved = err_save();
        if (flush_and_report(rx, st->conn, true, false) < 0)
            err_clear();
        err_restore(saved);
        return rc;
    }
    pthread_mutex_lock(&rx->lock);
    rx->received = msg->data_start + msg->len;
    rx->wal_messages++;
    if (msg->wal_end > rx->server_end)
        rx->server_end = msg->wal_end;
    pthread_mutex_unlock(&rx->lock);
    if (!st->unflushed) {
        st->flush_due = now + rx->o->flush_interval_ms * 1000;
        st->unflushed_since = now;
    }
    st->unflushed += msg->len;
    st->waiting_more = false;
    lsn_t end = msg->data_start + msg->len;
    st->more_to = msg->wal_end > end ? msg->wal_end : 0;
    if (flush_now(st, end, now))
        return stream_flush(st, now, false, false);
    return 0;
}

/* Keepalive: note where the server is; answer at once when asked. */
static int on_keepalive(struct stream_state *st, const struct pg_msg *msg, int64_t now)
{
    struct receiver *rx = st->rx;
    pthread_mutex_lock(&rx->lock);
    if (msg->wal_end > rx->server_end)
        rx->server_end = msg->wal_end;
    pthread_mutex_unlock(&rx->lock);
    return msg->reply_requested ? stream_flush(st, now, true, false) : 0;
}

/* Nothing to read: fsync what came (synchronous: false: once it is due), report on
 * the status interval, and apply
 * wal_receiver_timeout's rule (silence for half the limit: ask for a reply; for the
 * whole of it: the connection is gone even if the socket says not). */
static int on_idle(struct stream_state *st, int64_t now)
{
    int64_t interval_us = st->rx->o->status_interval_ms * 1000;
    if (now - st->last_msg >= st->silence_us)
        return err_set(ERR_CONNECT,
                       "no message from server \"%s\" for %lld s: taking the connection as lost",
                       pg_conn_target(st->conn), (long long)(st->silence_us / 1000000));
    if (!st->pinged && now - st->last_msg >= st->silence_us / 2) {
        st->pinged = true;
        return stream_flush(st, now, true, true);
    }
    bool sync = st->rx->o->synchronous;
    if (sync && st->unflushed && more_coming(st, now)) {
        st->waiting_more = true;
        return 0;
    }
    bool due = st->unflushed && (sync || now >= st->flush_due);
    if (due || now - st->last_status >= interval_us)
        return stream_flush(st, now, now - st->last_status >= interval_us, false);
    return 0;
}

/* End of the COPY: the timeline ended (or the server is going). Make everything
 * durable, close the segment, and learn where the next timeline starts. */
static int on_end(struct stream_state *st)
{
    struct receiver *rx = st->rx;
    int rc = flush_and_report(rx, st->conn, true, false);
    if (rc == -ERR_CONNECT) {
        /* The server ended the COPY and may be gone (shutdown): what it says next
         * (pg_stream_end) explains it better than a failed status. */
        err_clear();
        rc = 0;
    }
    if (rc == 0)
        rc = spool_close_segment(rx->spool);
    if (rc == 0)
        rc = pg_stream_end(st->conn, st->tli, st->start);
    if (rc == 0) {
        char a[LSN_STRLEN];
        *st->start -= *st->start % rx->seg_size;
        log_info("timeline ended; following timeline %u from %s", *st->tli,
                 lsn_format(*st->start, a));
    }
    return rc;
}

/* After each read: events, and the status file once a second. */
static int after_read(struct stream_state *st, int64_t now)
{
    struct receiver *rx = st->rx;
    receiver_notify_tick(rx);
    if (now - st->last_file < STATUS_FILE_INTERVAL_US)
        return 0;
    /* A repository that answered late that it can never work ends the run. */
    int rc = shippers_wait_open(rx, 0, receiver_should_return);
    if (rc < 0)
        return rc;
    if (status_write(rx) < 0) {
        log_warn("%s", err_message());
        err_clear();
    }
    st->last_file = now;
    return 0;
}

/* Stream one timeline from start until it ends, the connection fails, or a stop: one
 * handler per message. On end of timeline, *tli and *start are set to where the next
 * one begins. */
int receiver_stream(struct receiver *rx, struct pg_conn *conn, int pg_major, timeline_t *tli,
                    lsn_t *start, bool *timeline_ended)
{
    const struct receiver_options *o = rx->o;
    struct stream_state st = {
        .rx = rx,
        .conn = conn,
        .tli = tli,
        .start = start,
        .last_status = time_mono_us(),
        .last_msg = time_mono_us(),
        .silence_us =
            (o->silence_timeout_ms > 0 ? o->silence_timeout_ms : SILENCE_TIMEOUT_MS) * 1000,
    };
    struct pg_msg msg;
    int rc;

    *timeline_ended = false;
    rc = walpage_checker_init(&st.check, rx->identity.system_identifier, rx->seg_size, pg_major,
                              *tli, *start);
    if (rc < 0)
        return rc;
    rc = fetch_history(rx, conn, *tli);
    if (rc < 0)
        return rc;
    rc = pg_start_replication(conn, o->slot, *start, *tli);
    if (rc < 0)
        return rc;
    st.dec = commits_decoder_start(rx, pg_major, *tli, *start);
    pthread_mutex_lock(&rx->lock);
    rx->tli = *tli;
    if (rx->received < *start)
        rx->received = *start;
    st.segno = lsn_to_segno(*start, rx->seg_size);
    pthread_mutex_unlock(&rx->lock);
    {
        char a[LSN_STRLEN];
        log_info("streaming WAL from %s on timeline %u", lsn_format(*start, a), *tli);
    }
    receiver_set_connected(rx, true);

    while (!receiver_should_return()) {
        /* While bytes keep coming, take them; fsync when the socket runs dry (or a batch
         * is large), so latency stays low when idle and fsyncs stay few under load; or,
         * synchronous: false, when the batch is due. */
        rc = pg_stream_read(conn, read_timeout_ms(&st, time_mono_us()), &msg);
        if (rc < 0)
            break;
        int64_t now = time_mono_us();
        if (msg.kind != PG_MSG_NONE) {
            st.last_msg = now;
            st.pinged = false;
        }
        switch (msg.kind) {
        case PG_MSG_XLOGDATA:
            rc = on_wal(&st, &msg, now);
            break;
        case PG_MSG_KEEPALIVE:
            rc = on_keepalive(&st, &msg, now);
            break;
        case PG_MSG_NONE:
            rc = on_idle(&st, now);
            break;
        case PG_MSG_END:
            rc = on_end(&st);
            *timeline_ended = rc == 0;
            goto out;
        }
        if (rc < 0 || (rc = after_read(&st, now)) < 0)
            break;
    }
    if (rc == 0) {
        /* Asked to stop: make everything durable and say so before leaving. */
        rc = flush_and_report(rx, conn, true, false);
        if (rc == 0)
            rc = pg_stream_stop(conn);
    }
out:
    waldecode_free(st.dec);
    return rc;
}
