/*
 * pg_incremental.h — PostgreSQL 17's incremental backups: the INCREMENTAL.<name> files
 * of BASE_BACKUP (INCREMENTAL), and UPLOAD_MANIFEST, which tells the server what the
 * backup is incremental to.
 *
 * Promise: an INCREMENTAL file fed in pieces of any size is checked against the format
 * the server writes and handed on as its header (block count, truncation length, block
 * numbers) and then its blocks, each whole and in order; anything else is ERR_PROTOCOL
 * naming the file and what is wrong, and nothing after the first error is handed on.
 *
 * The format (server byte order; pgark reads it in its own, and a backup host of the
 * other byte order sees a wrong magic): uint32 magic 0xd3ae1f0d, uint32 block count,
 * uint32 truncation block length, the block numbers (uint32 each, relative to the
 * segment file, strictly ascending, each below RELSEG_SIZE), the header padded with
 * zeros to a multiple of BLCKSZ when there are blocks, then BLCKSZ bytes per block in
 * the order of the numbers. The reconstructed file has max(truncation length, highest
 * block + 1) blocks: a block below the truncation length and not sent is the prior
 * backup's (zeros where that file was shorter); a block at or above it and not sent is
 * zeros. pgark supports the default BLCKSZ 8192 and RELSEG_SIZE 131072 (1 GiB files).
 */
#ifndef PGARK_PG_INCREMENTAL_H
#define PGARK_PG_INCREMENTAL_H

#include "pgark/pg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_INCR_MAGIC 0xd3ae1f0du
#define PG_INCR_BLCKSZ 8192u
#define PG_INCR_RELSEG_SIZE 131072u
#define PG_INCR_PREFIX "INCREMENTAL."

/* The header, once read: blocks[nblocks] lives until the parser is freed. */
typedef int (*pg_incr_header_fn)(void *arg, uint32_t nblocks, uint32_t truncation_blocks,
                                 const uint32_t *blocks);
/* Block blkno (relative), PG_INCR_BLCKSZ bytes, valid during the call. */
typedef int (*pg_incr_block_fn)(void *arg, uint32_t blkno, const uint8_t *data);

struct pg_incr_parser;

/* For the file at path (for messages; copied). Callbacks return 0 or negative with the
 * error slot set to stop. Never NULL. */
struct pg_incr_parser *pg_incr_parser_new(const char *path, pg_incr_header_fn on_header,
                                          pg_incr_block_fn on_block, void *arg);
void pg_incr_parser_free(struct pg_incr_parser *p);
/* The next bytes of the file. 0 or negative (ERR_PROTOCOL, or a callback's code). */
int pg_incr_parser_feed(struct pg_incr_parser *p, const void *data, size_t len);
/* The file ended: ERR_PROTOCOL unless it was complete. */
int pg_incr_parser_finish(struct pg_incr_parser *p);

/* If the last component of path starts with "INCREMENTAL.", the path of the file it
 * stands for (malloc'd), else NULL. */
char *pg_incr_target_path(const char *path);

/* UPLOAD_MANIFEST with this manifest (a server's backup_manifest): the next BASE_BACKUP
 * with incremental set on this connection is incremental to that backup. The server's
 * refusal is its error (e.g. a manifest of another system). */
int pg_upload_manifest(struct pg_conn *conn, const void *manifest, size_t len);

/*
 * What the server's WAL summaries (PostgreSQL 17+, summarize_wal) say changed on timeline
 * tli since LSN since: the blocks summarised as modified (one modified in two summaries
 * counts twice: an upper bound), and the distinct ranges of range_blocks blocks (within
 * each 1 GiB segment file) holding one. Asked on conn, a normal SQL connection (a
 * walsender runs no SQL; the caller may use it for more, e.g. confsnap_gather_on) with
 * pg_available_wal_summaries and pg_wal_summary_contents, aggregated by the server: one
 * row comes back (the session's work_mem is raised for it). *covered is
 * false (counts zero) when the summaries of tli do not reach back to since without a gap,
 * so that they say nothing about the changes. WAL not summarised yet (since the last
 * checkpoint's redo point, usually) is not counted: the result is a lower bound. Errors
 * as pg_exec_simple (ERR_AUTH without the privilege to run them).
 */
struct pg_wal_changes {
    bool covered;
    uint64_t blocks;
    uint64_t ranges;
    lsn_t summarized_to; /* where the newest summary used ends */
};
struct pg_conn;
int pg_wal_changes_since(struct pg_conn *conn, timeline_t tli, lsn_t since, uint32_t range_blocks,
                         struct pg_wal_changes *out);

#endif
