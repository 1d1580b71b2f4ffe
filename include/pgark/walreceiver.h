/*
 * walreceiver.h — `pgark receive`: stream WAL into the spool, ship it everywhere.
 *
 * Promise: WAL is taken from the server through a physical replication slot,
 * written into the spool and fsynced before the server is told it is flushed;
 * every completed segment is then shipped, in order, to every repository, and
 * leaves the spool only once every repository holds it. A slow or dead repository
 * grows the spool and never stalls the stream. The receiver keeps going through
 * lost connections (retrying with backoff and jitter) until asked to stop, and
 * returns 0 after a clean stop (SIGTERM/SIGINT: final flush reported, within
 * seconds), or a negative error for conditions retrying cannot fix (another
 * cluster's repository, a missing slot, a WAL page that fails its checks).
 *
 * RPO: the flushed part of the segment being filled is copied to each repository every
 * receiver_repo.partial_interval_ms, and at once whenever the stream ends (a crash of
 * the server, a lost connection, a timeline left), so that a restore to latest from any
 * repository that could be reached gets every transaction the spool holds. Before it
 * returns (but for a reload) the receiver gives each repository up to its
 * stop_timeout_ms to take what it lacks of the spool, that tail included.
 */
#ifndef PGARK_WALRECEIVER_H
#define PGARK_WALRECEIVER_H

#include "pgark/repo.h"
#include "pgark/storage.h"

#include <stdbool.h>
#include <stdint.h>

struct cli_context;
struct notifier;

/* The command: the configured cluster's receiver, until stopped (SIGHUP reloads). */
int cmd_receive(struct cli_context *ctx, int argc, char **argv);

struct receiver_repo {
    const char *name;
    struct storage *storage; /* handed over to receiver_run (see there) */
    bool offsite;            /* counts for the off-site RPO tier (s3) */
    const char *local_path;  /* a posix repository's root (its disk space is watched), or NULL */
    /* A backlog goes up with this many segments in flight at once, when the storage
     * has asynchronous transfers (s3); 0 or 1: one at a time. */
    int concurrency;
    /* How often the flushed part of the segment being filled is copied to it (0: never,
     * not even when the stream ends). */
    int64_t partial_interval_ms;
    /* How long a stop waits for it to take the spool's WAL not in it yet: the segments
     * still queued and the tail of the segment being filled (0: not at all). */
    int64_t stop_timeout_ms;
};

struct receiver_options {
    /* How every repository is opened (cli_repo_options): the cluster's name (the folder
     * under each root), the compression and encryption choice (passphrase NULL: none),
     * the scrypt cost of a new repository. */
    struct repo_options repo;
    const char *conninfo;
    const char *slot;
    bool create_slot;
    const char *application_name;
    /* true: fsync and report the flush as soon as the socket has no more WAL to give
     * (synchronous commits can wait on us); false: fsync and report every
     * flush_interval_ms, at a segment's end, at the stream's end, or when the server
     * asks for a reply, whichever comes first. Either way no flush position is reported
     * (nor shown in status.json, metrics or the partial copies) before it is fsynced. */
    bool synchronous;
    int64_t flush_interval_ms;  /* > 0; used when !synchronous */
    const char *spool_dir;      /* <spool>/<cluster> */
    uint64_t spool_max;         /* 0: no cap */
    int64_t status_interval_ms; /* standby status updates when idle; default 10 s */
    /* No message from the server for this long: the connection is taken as lost and
     * made again (PostgreSQL's wal_receiver_timeout); at half of it the server is
     * asked for a reply. 0: 60 s. */
    int64_t silence_timeout_ms;
    struct receiver_repo *repos;
    int nrepos;
    /* Serve Prometheus metrics on metrics_host:metrics_port (host NULL: every address;
     * port 0: not at all), from a thread of the receiver's own. */
    const char *metrics_host;
    int metrics_port;
    /* Stop after this many reconnect attempts in a row fail (0: never). For tests. */
    int max_retries;
    /* Events (alerts.c): posted to this notifier (not owned; NULL: none) by a thread of
     * the receiver's own that looks at its state every second and never waits on the
     * stream, the shippers or the network: rpo.breach/recovered per tier against
     * rpo_target_ms, stream.lost/back (no stream for a status interval), repo.failing/
     * recovered (after REPO_FAILING_AFTER attempts in a row), spool.high/ok (80% and
     * 70% of spool_max), disk.low/ok (the spool's or a local repository's filesystem with
     * less free space than disk_free_min bytes or disk_free_min_percent of its size; ok
     * again 10% above), wal.damaged. A lasting one is sent again every notify_repeat_ms. */
    struct notifier *notifier;
    uint64_t disk_free_min;
    double disk_free_min_percent;
    int64_t rpo_target_ms;
    int64_t notify_repeat_ms;
};

/* Failed attempts in a row to write to a repository before repo.failing is sent. */
#define REPO_FAILING_AFTER 3

/* Run until stopped. Returns 0 after receiver_request_stop, RECEIVER_RELOAD after
 * receiver_request_reload (the caller reloads its configuration and calls again:
 * the stream resumes from the spool with no gap), or a negative error.
 * Ownership: receiver_run copies what it keeps of *o (the caller may free it on
 * return) and takes every repos[i].storage, whatever it returns: they are freed once
 * nothing uses them any more, which can be after the return (an upload to a hung
 * server is left to end on its own rather than delay a stop or a reload). */
int receiver_run(const struct receiver_options *o);

#define RECEIVER_RELOAD 1

/* The receiver keeps its record of the last WAL high-water mark it wrote to each
 * repository in the spool (REPO_WAL_HWM_RECORD_PREFIX, repo.h). */

/* Async-signal-safe: ask a running receiver to stop, or to return for a reload. */
void receiver_request_stop(void);
void receiver_request_reload(void);

#endif
