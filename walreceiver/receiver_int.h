/*
 * receiver_int.h — state shared by the receive loop, the shippers and the status
 * writer (internal to walreceiver/).
 */
#ifndef PGARK_RECEIVER_INT_H
#define PGARK_RECEIVER_INT_H

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/walreceiver.h"
#include "spool_int.h"

#include <pthread.h>
#include <stdatomic.h>

#define SHIP_CURSOR_PREFIX "shipped."

/* A spool item: a complete segment, or the .partial of a timeline that was left. */
struct ship_item {
    char base[WAL_NAME_BUFLEN]; /* 24-hex name */
    bool partial;
    bool ready; /* may be shipped now (a .partial only once the stream moved past it) */
};

#define SHIP_QUEUE_MAX 32

/* The items after a shipper's cursor as it last saw the spool: it looks again only when
 * spool_changes moved, or the queue ran out and had been cut at SHIP_QUEUE_MAX. */
struct ship_queue {
    bool valid;
    bool cut;
    uint64_t changes; /* spool_changes before the look */
    int n, head;
    struct ship_item items[SHIP_QUEUE_MAX]; /* sorted by name */
};

/* Segments in flight at once to one repository (ship.c): they end in any order, and
 * the shipper's cursor moves only over the leading run of them that ended well, so
 * that a segment that failed, and every one after it, stays pending. */
enum ship_slot_state { SHIP_SLOT_RUNNING, SHIP_SLOT_DONE, SHIP_SLOT_FAILED };

struct ship_window {
    int n;       /* slots in use, in queue order */
    int settled; /* leading slots the cursor has moved over */
    enum ship_slot_state state[SHIP_QUEUE_MAX];
};

/* Start a window of n (<= SHIP_QUEUE_MAX) slots, all running. */
void ship_window_start(struct ship_window *w, int n);
/* Slot i ended, well or not. */
void ship_window_end(struct ship_window *w, int i, bool ok);
/* How many slots after the settled ones ended well with none before them running or
 * failed: the cursor may move over them now (they count as settled from here on). */
int ship_window_take(struct ship_window *w);

/* One repository's shipper: a thread that copies spool files to it in order. */
struct shipper {
    struct receiver *rx;
    int index;
    const char *name;
    bool offsite;
    struct repo *repo;
    pthread_t thread;
    bool started;
    /* Left behind by shippers_stop (an upload outlived the deadline): whatever it
     * does afterwards must not record progress the next receiver would contradict. */
    atomic_bool abandoned;
    /* The first attempt to open the repository (made by the thread, so that a hung
     * server cannot stall the stream). Guarded by rx->lock. */
    bool open_tried;
    struct err_saved *open_fatal; /* its error, when retrying cannot fix it */
    /* The thread's own. */
    struct ship_queue queue;
    uint64_t histories_changes; /* spool_changes when every history file was in */
    bool histories_done;

    /* Guarded by rx->lock. */
    char cursor[WAL_NAME_BUFLEN]; /* last item shipped (24-hex base name), "" if none */
    lsn_t shipped_lsn;            /* end of WAL this repository holds, on rx->tli */
    timeline_t shipped_tli;
    int64_t shipped_at_us; /* when shipped_lsn last advanced */
    char *last_error;      /* NULL when the last attempt worked */
    int64_t error_since_us;
    int fail_streak; /* attempts that failed in a row */
    uint64_t segments_shipped;
    uint64_t bytes_shipped;
    uint64_t upload_errors;             /* failed attempts (to open it, or to ship to it) */
    char partial_name[WAL_NAME_BUFLEN]; /* segment of the last partial upload */
    uint64_t partial_bytes;             /* bytes of it uploaded */
    int64_t partial_at_us;              /* when the copy it made last was fixed */
    uint64_t tail_gen;                  /* rx->tail_gen its repository has the tail of */
    bool drained;      /* draining: it holds all the spool has, or failed to take it */
    bool drain_failed; /* the latter */

    /* The repository's WAL high-water mark (shiphwm.c). The thread's own: the mark of
     * hwm.tli as stored, moved by what was shipped since (hwm_dirty until written). */
    struct repo_wal_hwm hwm;
    bool hwm_loaded;
    bool hwm_dirty;
    /* Guarded by rx->lock: the last mark written to the repository, by this receiver or
     * (at start) as the spool's record of it says; seq 0 when none. */
    struct repo_wal_hwm hwm_written;
};

/* Commits the receive loop took (commits.c), guarded by rx->lock: where a commit record
 * ends, and the newest commit time up to there (Unix microseconds). */
struct commit_mark {
    lsn_t end;
    int64_t time_us;
};

#define COMMIT_MARKS_MAX 4096
#define COMMIT_MARK_STEP_US 10000

struct commit_marks {
    struct commit_mark m[COMMIT_MARKS_MAX]; /* by end */
    int n;
    lsn_t tracking_since; /* every commit ending at or after it is known; 0: none yet */
    lsn_t decoded_to;     /* decoded without a gap up to here */
    bool decoding;
};

/* A stream begins, decoded from start: continues what is known when it starts inside
 * it (marks after start are dropped, to be taken again), else starts afresh. */
void commit_marks_restart(struct commit_marks *c, lsn_t start);
/* The stream was decoded up to pos. */
void commit_marks_decoded(struct commit_marks *c, lsn_t pos);
/* Decoding stopped (the decoder failed): nothing past what was decoded is known. */
void commit_marks_gap(struct commit_marks *c);
/* A commit record ending at end, made at time_us. When the array is full, marks before
 * keep_from (no lookup will be below it) are let go first. */
void commit_marks_add(struct commit_marks *c, lsn_t end, int64_t time_us, lsn_t keep_from);
/* The newest commit whose record ends at or before lsn: 1 and *out; 0 when there is none
 * since what is known; -1 when it is not known (lsn outside what was decoded). */
int commit_marks_find(const struct commit_marks *c, lsn_t lsn, struct commit_mark *out);

/* Decode the WAL of a stream from start (a segment's start) as it is taken, noting its
 * commits in rx->commits. NULL when no decoder could be made (said once; the stream goes
 * on and status.json says the newest commits are not known). Free with waldecode_free. */
struct waldecode;
struct waldecode *commits_decoder_start(struct receiver *rx, int pg_major, timeline_t tli,
                                        lsn_t start);
/* Feed what went to the spool, len bytes at the stream's next position. */
void commits_decode(struct receiver *rx, struct waldecode **dec, const uint8_t *data, size_t len);

/* A (position, time) pair: when the spool's flushed position reached lsn. */
struct flush_mark {
    lsn_t lsn;
    int64_t at_us;
};

#define FLUSH_MARKS 256

struct receiver {
    struct receiver_options opts;     /* the caller's, copied; storages owned */
    const struct receiver_options *o; /* &opts */
    atomic_int refs;                  /* receiver_run and each shipper thread */
    struct spool *spool;
    uint64_t seg_size;
    struct repo_identity identity;
    /* The last session ended on a bad WAL page from the server (set and read by the
     * receive loop's thread only). */
    bool bad_page;
    bool sync_warned; /* said once that the server waits on a batching receiver */
    /* The highest flush position any session reached: a session that passes it made
     * progress and resets the reconnect backoff (receive loop's thread only). */
    lsn_t progress_mark;
    /* Bad WAL pages from the server so far, and the last one's error (guarded by lock),
     * for wal.damaged. */
    uint64_t bad_pages;
    char *bad_page_error;
    /* The events thread (alerts.c). */
    struct alerts *alerts;

    pthread_mutex_t lock;
    pthread_cond_t wake;         /* signalled when a segment completes, on flush, and on stop */
    pthread_mutex_t status_lock; /* one status_write at a time */
    int64_t status_at_us;        /* monotonic time of the last one (guarded by lock) */
    int64_t status_wall_us;      /* and its wall-clock time (guarded by lock) */
    atomic_bool stopping;

    /* Guarded by lock. */
    timeline_t tli;
    lsn_t received;
    lsn_t flushed;
    int64_t flushed_at_us;
    lsn_t server_end; /* walEnd of the latest message */
    bool connected;
    int64_t disconnected_us; /* when connected last became false (0: never connected) */
    uint64_t spool_bytes;    /* the spool's WAL bytes at the last status_write */
    char *last_error;
    uint64_t reconnects;   /* sessions that ended and were tried again */
    uint64_t flushes;      /* fsyncs of the spool that moved the flushed position */
    uint64_t wal_messages; /* XLogData messages taken */
    struct flush_mark marks[FLUSH_MARKS];
    int nmarks, mark_head;
    /* The last partial copy a shipper fixed (ship.c): one due soon after takes the same,
     * so that it is prepared once for them. */
    char partial_name[WAL_NAME_BUFLEN];
    uint64_t partial_len;
    int64_t partial_at_us;
    /* One more each time the stream ended: every shipper then copies the tail of the
     * segment being filled at once (ship.c). */
    uint64_t tail_gen;
    /* Stopping: shippers take what the spool holds, then say they are drained. */
    bool draining;
    struct commit_marks commits;

    struct shipper *shippers;
    int nshippers;
    struct prep_cache *prep; /* set by shippers_start; NULL: every shipper prepares alone */
};

/* A receiver with one reference, owning a copy of *o and o's storages. */
struct receiver *receiver_new(const struct receiver_options *o);
void receiver_hold(struct receiver *rx);
/* Drop a reference; the last one frees the repositories, the spool, the storages
 * and the receiver itself. */
void receiver_release(struct receiver *rx);

/* Errors that a new connection or another attempt cannot fix end the run. */
bool receiver_is_fatal(enum err_kind kind);

/* Open the shipper's repository for rx->identity (creating repo.json on first use). */
int shipper_open_repo(struct shipper *sh);
/* Start one shipper thread per repository; each opens its repository first, and
 * keeps trying (with backoff) while that fails. */
int shippers_start(struct receiver *rx);
/* Wait up to timeout_ms (or until stop returns true) for every shipper's first
 * attempt to open its repository. Returns the error of one that belongs to another
 * system (ERR_MISMATCH: the configuration points at the wrong place); 0 otherwise,
 * also when some attempt is still under way (a hung server). Other failures are
 * the shipper's to report and retry. */
int shippers_wait_open(struct receiver *rx, int64_t timeout_ms, bool (*stop)(void));
/* Helpers of the shippers' threads (ship.c), for shippartial.c. */
/* Open "<spool>/<name><suffix>" for reading: *fd and the file's *size. */
int ship_open_spool_file(struct receiver *rx, const char *name, const char *suffix, int *fd,
                         uint64_t *size);
/* sh's repository holds WAL up to end on tli (it moved; bytes more were shipped). */
void ship_note_shipped(struct shipper *sh, timeline_t tli, lsn_t end, uint64_t bytes);
/* Push the first len bytes of fd as item name, prepared once for the wanted shippers
 * when it can be (push_item in ship.c). */
int ship_push_item(struct shipper *sh, const char *name, bool partial, int wanted, int fd,
                   uint64_t len);
/* The queue, for the window (ship.c): the first item after `after` if it may be shipped
 * now; how many shippers will want item name; the repository holds it (size bytes): move
 * the cursor over it (*did) and let it leave the spool if every repository has it. */
int ship_next_item(struct shipper *sh, const char *after, struct ship_item *out, bool *found);
int ship_item_takers(struct shipper *sh, const char *name);
int ship_item_shipped(struct shipper *sh, const struct ship_item *it, uint64_t size, bool *did);
/* More than one complete segment pending and storage that keeps transfers in flight: push
 * up to its concurrency at once (shipwin.c). *handled false: ship them one at a time. */
int ship_window(struct shipper *sh, bool *did, bool *handled);
/* Copy the flushed part of the segment being filled (or of the last one, when the stream
 * ended: the tail) when it grew since this repository's last copy, and either the
 * repository's partial_upload_interval passed or the stream ended since (then at once:
 * the tail is all that is missing, and the server may be gone for good). A copy fixed by
 * another shipper moments ago is taken as it is, so that it is prepared once for both.
 * *copied is set when a copy was made (shippartial.c). */
int ship_partial(struct shipper *sh, bool *copied);

/* The stream ended (a stop, a crash of the server, a lost connection): have every
 * shipper copy the flushed tail of the segment being filled now. */
void shippers_stream_ended(struct receiver *rx);
/* Before a stop: give each repository up to its stop_timeout_ms to take what the spool
 * holds that it lacks (queued segments, then the tail of the segment being filled).
 * Returns once every shipper is drained or past its time. */
void shippers_drain(struct receiver *rx);
/* Stop and join them. A thread still uploading after grace_ms is left to finish on its
 * own (the spool keeps what it was shipping); it holds its reference to rx until then. */
void shippers_stop(struct receiver *rx, int64_t grace_ms);
/* Wake the shippers (segment completed, flush advanced). */
void shippers_wake(struct receiver *rx);

/* Record that the spool is durable up to lsn (for lag in seconds). */
void receiver_note_flush(struct receiver *rx, lsn_t lsn);

/* receive.c: a stop or a reload was asked for; the connection's state for status.json
 * and the events. */
bool receiver_should_return(void);
void receiver_set_connected(struct receiver *rx, bool connected);

struct pg_conn;
/* recvstream.c: stream one timeline from *start until it ends, the connection fails, or
 * a stop; on the end of the timeline *tli and *start are set to where the next one
 * begins and *timeline_ended is set. */
int receiver_stream(struct receiver *rx, struct pg_conn *conn, int pg_major, timeline_t *tli,
                    lsn_t *start, bool *timeline_ended);
/* When the spool first held lsn (0 when unknown or older than the marks kept). */
int64_t receiver_flush_time(struct receiver *rx, lsn_t lsn);

/*
 * Items prepared once for every shipper (prep.c): compressed into scratch files in
 * scratch_dir, by one thread at a time. Thread-safe.
 */
struct prep_cache;
struct prep_cache *prep_cache_new(const struct repo_identity *id, const struct repo_codecs *codecs,
                                  const char *scratch_dir, int nshippers);
void prep_cache_free(struct prep_cache *c);
/* The first len bytes of fd prepared as item name (partial or complete): by another
 * shipper already, or now by this one (waiting while another prepares it). wanted is
 * how many shippers, this one included, are expected to take it. *out is NULL when no
 * slot is free (push the ordinary way); hand it back with prep_release. An error is
 * the preparation's (the ordinary push may still work). */
int prep_acquire(struct prep_cache *c, const char *name, bool partial, int fd, uint64_t len,
                 int wanted, struct repo_wal_prepared **out);
/* Done pushing p (NULL is a no-op); it is freed once as many shippers as wanted took
 * it. */
void prep_release(struct prep_cache *c, struct repo_wal_prepared *p);
/* Free every prepared item nobody is pushing from now (the receiver needs room in the
 * spool, where their scratch files are). Returns how many. */
int prep_cache_trim(struct prep_cache *c);

/*
 * High-water marks (shiphwm.c): after the repository holds a segment, or the first bytes
 * of one, its timeline's mark ("wal/<TLI>.hwm") is written to say so, before the cursor
 * or status.json moves; the last one written is recorded in the spool as
 * "hwm.<repo>", which `verify` holds the repository's mark to.
 */
/* Load the spool's record of the last mark written to sh's repository (a record that
 * does not parse is warned about and dropped). */
void ship_hwm_start(struct shipper *sh);
/* sh's repository now holds complete segment segno of tli, or its first bytes (partial):
 * write the timeline's mark if that moved it (reading the stored mark first, the first
 * time for tli; one older than the spool's record is warned about). A mark not written
 * stays due, and is written with the next note. */
int ship_hwm_note(struct shipper *sh, timeline_t tli, uint64_t segno, bool partial, uint64_t bytes);

/* A tier's worst repository: the highest RPO and the oldest newest commit (unknown
 * when one's is). */
struct status_tier {
    int repos;
    double rpo;
    bool newest_known;
    int64_t newest_us;
};

/* One repository as status_view_take saw it. */
struct status_repo {
    const char *name; /* rx's: lives as long as the receiver */
    bool offsite;
    timeline_t shipped_tli;
    lsn_t shipped_lsn;
    int64_t shipped_at_us;
    char cursor[WAL_NAME_BUFLEN];
    uint64_t lag_bytes;
    double lag_s;
    bool held_known; /* the newest commit it holds is known: held */
    struct commit_mark held;
    double rpo_s;
    uint64_t segments_shipped, bytes_shipped, upload_errors;
    struct repo_wal_hwm hwm;
    char *last_error; /* owned; NULL when the last attempt worked */
    int64_t error_since_us;
};

/* The receiver's state at one moment, taken under rx->lock and used outside it: what
 * status.json and the Prometheus metrics (metrics.c) both show, computed once. */
struct status_view {
    int64_t now_us;
    bool connected;
    timeline_t tli;
    lsn_t server_end, received, flushed;
    int64_t flushed_at_us;
    bool newest_known;
    struct commit_mark newest;
    char *last_error; /* owned */
    uint64_t reconnects;
    uint64_t flushes;
    uint64_t wal_messages;
    int64_t status_wall_us; /* the last status.json, 0 before the first */
    bool have_spool;        /* spool_bytes is known */
    uint64_t spool_bytes;
    int nrepos;
    struct status_repo *repos;   /* owned */
    struct status_tier tiers[2]; /* local, off-site: the RPO per tier */
    double lag_tier[2];          /* the worst lag in seconds per tier, -1 when none */
};

/* Take the receiver's state now (any thread; brief hold of rx->lock). Free with
 * status_view_free. */
void status_view_take(struct receiver *rx, struct status_view *v);
void status_view_free(struct status_view *v);

/* Write <spool dir>/status.json atomically (from any thread; one at a time). */
int status_write(struct receiver *rx);
/* The RPO in seconds of each tier now (0 local, 1 off-site), as status.json gives it;
 * have[i] false for a tier without repositories. Caller holds rx->lock. */
void status_tier_rpo_locked(struct receiver *rx, int64_t now_us, double rpo[2], bool have[2]);

/* The events thread (alerts.c): started by receiver_run when o->notifier is set,
 * stopped (joined) before it returns. */
void alerts_start(struct receiver *rx);
void alerts_stop(struct receiver *rx);

/*
 * systemd notifications (svcnotify.c; no-ops without $NOTIFY_SOCKET). From the receive
 * loop's thread only.
 */
/* The receiver runs: READY=1 and its status. */
void receiver_notify_ready(struct receiver *rx);
/* Called often from the receive loop: WATCHDOG=1 when due, STATUS= when it changed. */
void receiver_notify_tick(struct receiver *rx);
/* The run ends: RELOADING=1 (a reload follows, then READY=1 again) or STOPPING=1. */
void receiver_notify_leaving(bool reloading);

/*
 * Prometheus metrics (metrics.c, metrics_http.c): the text exposition format of a
 * status_view, served by a thread of its own on the configured address.
 */
/* Append the metrics of v (the receiver of cluster) to out. */
void metrics_format(const struct status_view *v, const char *cluster, struct buf *out);
struct metrics_server;
/* Listen on host:port (host NULL: every address) and serve GET /metrics from a thread
 * of its own; NULL with the error set when the address cannot be listened on. */
struct metrics_server *metrics_server_start(struct receiver *rx, const char *host, int port);
/* Stop serving and join the thread. NULL is a no-op. */
void metrics_server_stop(struct metrics_server *m);

#endif
