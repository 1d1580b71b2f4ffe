/*
 * pg_basebackup.h — BASE_BACKUP over a replication connection.
 *
 * Promise: runs one BASE_BACKUP on a connection from pg_connect_replication, in the
 * syntax the server speaks (the parenthesised option list of PostgreSQL 15+, the
 * keyword list of 13/14, chosen by the server version), and hands every CopyData
 * payload, unmodified and in order, to a bbstream (bbstream.h) built for the matching
 * protocol, so the caller sees tar entries, progress and the server's backup_manifest
 * through its bbstream callbacks. The start position, timeline and tablespaces are
 * reported through `started` before any archive byte; the end position at the end.
 *
 * A backup succeeds only if the server ends the command with CommandComplete: an
 * error the server sends at any point (a checksum failure is reported after the last
 * byte) fails it with the server's own message, and nothing the caller received
 * should then be kept. A callback's negative code stops the backup and is returned;
 * the connection is then unusable (free it).
 */
#ifndef PGARK_PG_BASEBACKUP_H
#define PGARK_PG_BASEBACKUP_H

#include "pgark/bbstream.h"
#include "pgark/pg.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pg_bb_options {
    const char *label;    /* LABEL; NULL: the server's default */
    bool fast_checkpoint; /* CHECKPOINT 'fast' (13/14: FAST) */
    bool wal;             /* WAL: start..stop segments into base.tar's pg_wal/ */
    bool progress;        /* PROGRESS: tablespace sizes known up front */
    bool manifest;        /* MANIFEST 'yes' with CRC32C checksums (pgark keeps the
                           * manifest for pg_verifybackup; CRC-32C costs the server far
                           * less CPU than SHA-256, and pgark has its own SHA-256s) */
    uint32_t max_rate_kb; /* MAX_RATE in kB/s (32..1048576); 0: unlimited */
    bool incremental;     /* INCREMENTAL (17+): relative to the manifest uploaded on this
                           * connection (pg_upload_manifest); relation files may come as
                           * INCREMENTAL.<name> (pg_incremental.h) */
};

struct pg_bb_tablespace {
    uint32_t oid;    /* 0 for the main data directory (the last row) */
    char *location;  /* "" for the main data directory */
    int64_t size_kb; /* estimated size, -1 when not asked for (no PROGRESS) */
};

struct pg_bb_info {
    lsn_t start_lsn;
    timeline_t start_tli;
    struct pg_bb_tablespace *tablespaces; /* in the server's order: main last */
    size_t ntablespaces;
    lsn_t end_lsn; /* set when the backup completed */
    timeline_t end_tli;
};

/* Called once, after the start position and tablespace list arrived and before the
 * first archive byte. info lives until pg_bb_info_free. 0 or negative to stop. */
typedef int (*pg_bb_started_fn)(void *arg, const struct pg_bb_info *info);

/*
 * Run BASE_BACKUP. cb/arg receive the stream (through a bbstream this function owns);
 * started may be NULL. On return *info (always initialised; free with pg_bb_info_free)
 * holds what the server reported. Errors: the server's ERROR (kind by SQLSTATE, message
 * naming the command and server), ERR_CONNECT when the connection is lost,
 * ERR_PROTOCOL for an answer of the wrong shape, ERR_RUNTIME for a server older than
 * PostgreSQL 13, and the stream's or a callback's code.
 */
int pg_base_backup(struct pg_conn *conn, const struct pg_bb_options *o, pg_bb_started_fn started,
                   const struct bbstream_callbacks *cb, void *arg, struct pg_bb_info *info);
void pg_bb_info_free(struct pg_bb_info *info);

/* The command text for a server of version server_version (PQserverVersion), malloc'd.
 * Single quotes in the label are doubled. Exposed for tests. */
char *pg_bb_command(int server_version, const struct pg_bb_options *o);

#endif
