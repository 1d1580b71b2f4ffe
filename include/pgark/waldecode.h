/*
 * waldecode.h — decodes a stream of WAL records, for `verify` and the time index.
 *
 * Promise: bytes of one timeline fed in LSN order (pieces of any size, across any number
 * of consecutive segments) give the same results however they are split. The decoder
 * checks every page header (magic of the major, info bits, address, timeline, and the
 * long header's system identifier, segment and block size), reassembles records across
 * pages and segments, and checks each record's length, xl_prev link, CRC-32C and block
 * header layout. It reports commits, aborts, prepares, restore points and segment
 * switches with their LSNs and times (every major of pgmajor.h's range: 13 to 18).
 *
 * End of WAL is not an error: a record length of 0, an all-zero page header or a page
 * whose address is not its own (recycled bytes) stops decoding and sets end_of_wal with
 * the LSN where valid WAL ends; later bytes are ignored. Whether that is acceptable (it
 * is not for a complete archived segment without a switch record) is the caller's call.
 * Anything else inconsistent is ERR_INTEGRITY naming the LSN; the decoder then refuses
 * further input with the same error.
 *
 * Pure: no I/O, no logging; memory grows only with the largest record seen.
 */
#ifndef PGARK_WALDECODE_H
#define PGARK_WALDECODE_H

#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Times are PostgreSQL's TimestampTz: microseconds since 2000-01-01 00:00:00 UTC. */
#define WALDECODE_PG_EPOCH 946684800 /* 2000-01-01 in Unix seconds */

#define WALDECODE_RP_NAME_MAX 64 /* rp_name, NUL included (MAXFNAMELEN) */

enum waldecode_event_kind {
    WALDECODE_COMMIT,        /* COMMIT or COMMIT_PREPARED */
    WALDECODE_ABORT,         /* ABORT or ABORT_PREPARED */
    WALDECODE_PREPARE,       /* PREPARE TRANSACTION (time = prepared_at) */
    WALDECODE_RESTORE_POINT, /* pg_create_restore_point() */
    WALDECODE_SWITCH,        /* XLOG_SWITCH: the rest of the segment is padding */
};

/* One decoded record of interest. lsn is where the record starts, end_lsn where the next
 * one may start (8-byte aligned; after a switch, the next segment), as PostgreSQL reports
 * them (pg_waldump "lsn", pg_create_restore_point()'s result). */
struct waldecode_event {
    enum waldecode_event_kind kind;
    lsn_t lsn;
    lsn_t end_lsn;
    int64_t time;     /* xact_time / rp_time / prepared_at; 0 for a switch */
    uint32_t xid;     /* the transaction's xid (the prepared one for *_PREPARED) */
    bool prepared;    /* COMMIT_PREPARED / ABORT_PREPARED */
    const char *name; /* restore point name or prepared gid, else NULL; valid during
                       * the callback only */
};

struct waldecode_xact {
    lsn_t lsn;
    lsn_t end_lsn;
    int64_t time;
    uint32_t xid;
};

struct waldecode_restore_point {
    lsn_t lsn;
    lsn_t end_lsn;
    int64_t time;
    char name[WALDECODE_RP_NAME_MAX];
};

/* What a run of records held. Records count where they end: one that starts in segment
 * N and ends in N+1 belongs to the bytes of N+1. */
struct waldecode_summary {
    uint64_t records;
    lsn_t first_lsn;    /* start of the first complete record, LSN_INVALID if none */
    lsn_t last_lsn;     /* start of the last complete record */
    lsn_t last_end_lsn; /* end of the last complete record (aligned) */
    uint64_t commits, aborts, prepares;
    struct waldecode_xact first_commit, last_commit; /* valid when commits > 0 */
    struct waldecode_xact first_abort, last_abort;   /* valid when aborts > 0 */
    size_t restore_point_count;
    struct waldecode_restore_point *restore_points; /* owned by the summary */
    bool switch_seen;
    lsn_t switch_lsn;
    bool end_of_wal;        /* valid WAL stopped before the bytes did */
    lsn_t end_of_wal_lsn;   /* where valid WAL ends (start of what could not be read) */
    char end_reason[128];   /* "record length 0 at 0/A018A8", ... */
    uint64_t skipped_bytes; /* of a record continued from before the start */
    uint64_t overwritten;   /* partial records abandoned (FIRST_IS_OVERWRITE_CONTRECORD) */
};

typedef void (*waldecode_event_fn)(void *arg, const struct waldecode_event *ev);

struct waldecode_config {
    uint64_t seg_size;
    uint64_t system_identifier;
    int pg_major;                /* PG_MAJOR_MIN..PG_MAJOR_MAX */
    timeline_t tli;              /* timeline being decoded: no page may claim a higher one */
    lsn_t start;                 /* LSN of the first byte fed: a page boundary */
    lsn_t prev_lsn;              /* start of the last record that begins before start (the
                                  * one continued across it, if any), or LSN_INVALID to skip
                                  * the xl_prev check of the first record */
    waldecode_event_fn on_event; /* optional */
    void *arg;
};

struct waldecode;

/* A decoder for the stream described by cfg (copied). ERR_CONFIG for an unsupported
 * major, a bad segment size or a start that is not a page boundary. */
int waldecode_new(const struct waldecode_config *cfg, struct waldecode **out);
void waldecode_free(struct waldecode *d);

/* Decode the next len bytes. Returns 0 (also once end of WAL was found) or the
 * ERR_INTEGRITY of the first inconsistency (then again on every later call). */
int waldecode_feed(struct waldecode *d, const uint8_t *data, size_t len);

/* The LSN of the next byte to feed. */
lsn_t waldecode_position(const struct waldecode *d);

/* The summary since creation or the last reset; owned by the decoder. */
const struct waldecode_summary *waldecode_summary(const struct waldecode *d);

/* Start a new summary (e.g. at a segment boundary); decoding state is kept, so a record
 * crossing the boundary counts in the new summary. */
void waldecode_summary_reset(struct waldecode *d);

/* Decode one whole segment (or the first len bytes of one): cfg->start must be the
 * segment's start LSN. A record continued from the previous segment is skipped (counted
 * in skipped_bytes), one running past the end is not counted. *out is filled (free it
 * with waldecode_summary_free) even on failure, with what was decoded before it. */
int waldecode_segment(const uint8_t *seg, size_t len, const struct waldecode_config *cfg,
                      struct waldecode_summary *out);

void waldecode_summary_free(struct waldecode_summary *s);

#endif
