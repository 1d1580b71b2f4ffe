/*
 * pg_stream.h — replication slots, timeline history and the WAL stream (CopyBoth)
 * on a replication connection of pg.h.
 *
 * Promise: the messages of a physical stream come out decoded (XLogData with its
 * start LSN, keepalives, end of timeline), status updates go back in the 34-byte
 * format the server expects, and a stream ends in one of two clean ways: the client
 * stops it, or the server ends the timeline and names the next one. Errors carry the
 * server's words (pg.h's rules: no password, ever).
 */
#ifndef PGARK_PG_STREAM_H
#define PGARK_PG_STREAM_H

#include "pgark/pg.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether physical slot `slot` exists, its restart_lsn (LSN_INVALID when it has none)
 * and the timeline that owns it. READ_REPLICATION_SLOT on 15+; 13 and 14 do not have
 * it, so there pg_replication_slots is read over a second, normal connection opened
 * from the conninfo (database "postgres" unless it names one), and the timeline is
 * found in the server's history. ERR_CONFIG for a logical slot. */
int pg_read_slot(struct pg_conn *conn, const char *slot, bool *exists, lsn_t *restart_lsn,
                 timeline_t *restart_tli);
/* CREATE_REPLICATION_SLOT slot PHYSICAL RESERVE_WAL; ERR_EXISTS if it exists. */
int pg_create_physical_slot(struct pg_conn *conn, const char *slot);
/* TIMELINE_HISTORY tli: the file's content (malloc'd; caller frees). ERR_PROTOCOL if
 * the server names another file than "%08X.history" of tli. */
int pg_timeline_history(struct pg_conn *conn, timeline_t tli, uint8_t **content, size_t *len);

/* START_REPLICATION [SLOT slot] PHYSICAL start TIMELINE tli. slot may be NULL. */
int pg_start_replication(struct pg_conn *conn, const char *slot, lsn_t start, timeline_t tli);

enum pg_msg_kind {
    PG_MSG_NONE = 0,  /* nothing arrived within the timeout */
    PG_MSG_XLOGDATA,  /* WAL bytes */
    PG_MSG_KEEPALIVE, /* primary keepalive */
    PG_MSG_END,       /* the server ended the stream (end of timeline): call pg_stream_end */
};

struct pg_msg {
    enum pg_msg_kind kind;
    lsn_t data_start;     /* XLogData: LSN of data[0] */
    lsn_t wal_end;        /* server's end of WAL */
    int64_t send_time_us; /* server clock, Unix microseconds */
    bool reply_requested; /* keepalive: answer now */
    const uint8_t *data;  /* XLogData payload; valid until the next pg_stream_read */
    size_t len;
};

/* Wait up to timeout_ms for the next message (0: do not wait). Unknown message types
 * are skipped. A broken connection is ERR_CONNECT. */
int pg_stream_read(struct pg_conn *conn, int timeout_ms, struct pg_msg *msg);
/* The connection's socket, to wait on it with other things (-1 if none). */
int pg_stream_socket(struct pg_conn *conn);
/* Send a standby status update ('r'): written, flushed, applied (0 for an archiver). */
int pg_stream_status(struct pg_conn *conn, lsn_t write, lsn_t flush, lsn_t apply,
                     bool reply_requested);
/* After PG_MSG_END: finish the COPY and read where the next timeline starts. */
int pg_stream_end(struct pg_conn *conn, timeline_t *next_tli, lsn_t *next_start);
/* Client-initiated stop: end the COPY and drain the results. */
int pg_stream_stop(struct pg_conn *conn);

#endif
