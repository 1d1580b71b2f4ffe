/*
 * receiver_int.h — state shared by the receive loop, the shippers and the status
 * writer (internal to walreceiver/).
 */
#ifndef PGARK_RECEIVER_INT_H
#define PGARK_RECEIVER_INT_H

#include "pgark/repo.h"
#include "pgark/walreceiver.h"
#include "spool_int.h"

#include <pthread.h>
#include <stdatomic.h>

#define SHIP_CURSOR_PREFIX "shipped."

/* One repository's shipper: a thread that copies spool files to it in order. */
struct shipper {
    struct receiver *rx;
    int index;
    const char *name;
    bool offsite;
    struct repo *repo;
    pthread_t thread;
    bool started;

    /* Guarded by rx->lock. */
    char cursor[WAL_NAME_BUFLEN]; /* last item shipped (24-hex base name), "" if none */
    lsn_t shipped_lsn;            /* end of WAL this repository holds, on rx->tli */
    timeline_t shipped_tli;
    int64_t shipped_at_us; /* when shipped_lsn last advanced */
    char *last_error;      /* NULL when the last attempt worked */
    int64_t error_since_us;
    uint64_t segments_shipped;
    uint64_t bytes_shipped;
    char partial_name[WAL_NAME_BUFLEN]; /* segment of the last partial upload */
    uint64_t partial_bytes;             /* bytes of it uploaded */
    int64_t partial_at_us;
};

/* A (position, time) pair: when the spool's flushed position reached lsn. */
struct flush_mark {
    lsn_t lsn;
    int64_t at_us;
};

#define FLUSH_MARKS 256

struct receiver {
    const struct receiver_options *o;
    struct spool *spool;
    uint64_t seg_size;
    struct repo_identity identity;

    pthread_mutex_t lock;
    pthread_cond_t wake; /* signalled when a segment completes, on flush, and on stop */
    atomic_bool stopping;

    /* Guarded by lock. */
    timeline_t tli;
    lsn_t received;
    lsn_t flushed;
    int64_t flushed_at_us;
    lsn_t server_end; /* walEnd of the latest message */
    bool connected;
    char *last_error;
    struct flush_mark marks[FLUSH_MARKS];
    int nmarks, mark_head;

    struct shipper *shippers;
    int nshippers;
};

/* Open the shipper's repository for rx->identity (creating repo.json on first use). */
int shipper_open_repo(struct shipper *sh);
/* Start one shipper thread per repository; one whose repository could not be opened
 * yet (sh->repo NULL) keeps trying from its thread. */
int shippers_start(struct receiver *rx);
/* Stop and join them; an upload under way is abandoned (the spool keeps it). */
void shippers_stop(struct receiver *rx);
/* Wake the shippers (segment completed, flush advanced). */
void shippers_wake(struct receiver *rx);

/* Record that the spool is durable up to lsn (for lag in seconds). */
void receiver_note_flush(struct receiver *rx, lsn_t lsn);
/* When the spool first held lsn (0 when unknown or older than the marks kept). */
int64_t receiver_flush_time(struct receiver *rx, lsn_t lsn);

/* Write <spool dir>/status.json atomically. */
int status_write(struct receiver *rx);

#endif
