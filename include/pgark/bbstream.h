/*
 * bbstream.h — the BASE_BACKUP result stream, parsed without touching libpq.
 *
 * Promise: fed the CopyData payloads a BASE_BACKUP produces, in order and unmodified,
 * it reports the backup as events: each archive's start and end (tablespace OID and
 * location, OID 0 for the main data directory), every tar entry with its path relative
 * to the data directory (entries of a tablespace archive are prefixed the way the
 * server's backup_manifest names them: "pg_tblspc/<oid>/PG_15_.../..."), the entry's
 * data, progress reports, and the bytes of the server's backup_manifest. Archive bytes
 * go through a streaming tar reader (tar.h), so nothing is buffered beyond one header.
 *
 * Two protocols:
 *  - BBSTREAM_STREAMED (PostgreSQL 15+): one COPY; every payload starts with a type byte:
 *    'n' archive name NUL tablespace location NUL, 'd' data, 'p' Int64 progress
 *    (big-endian), 'm' manifest starts (later 'd's are manifest bytes). Each archive must
 *    end with the tar end marker.
 *  - BBSTREAM_LEGACY (13/14): one COPY of raw tar bytes per tablespace, then one COPY of
 *    the raw manifest. The caller, which sees the result sets, announces each COPY with
 *    bbstream_legacy_archive / bbstream_legacy_manifest; archives may lack the end marker.
 *
 * Failures: a malformed or unexpected message is ERR_PROTOCOL with a message naming it;
 * damaged archive bytes are ERR_INTEGRITY from the tar reader (with context naming the
 * archive); a callback's negative code is returned as is. The first failure is final.
 * Archives compressed by the server (".tar.gz", ".tar.zst", ".tar.lz4") are refused.
 */
#ifndef PGARK_BBSTREAM_H
#define PGARK_BBSTREAM_H

#include "pgark/mem.h"
#include "pgark/tar.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bbstream_protocol {
    BBSTREAM_STREAMED = 0, /* PostgreSQL 15 and later */
    BBSTREAM_LEGACY,       /* PostgreSQL 13 and 14 */
};

struct bbstream_archive {
    const char *name;     /* "base.tar" or "<oid>.tar" */
    uint32_t spcoid;      /* 0 for the main data directory */
    const char *location; /* tablespace directory on the server; "" for the main one */
};

/* Callbacks; any may be NULL. Pointers live only during the call. entry_begin's
 * entry->path is relative to the data directory; link targets are passed unchanged. */
struct bbstream_callbacks {
    int (*archive_begin)(void *arg, const struct bbstream_archive *archive);
    int (*archive_end)(void *arg, const struct bbstream_archive *archive);
    int (*entry_begin)(void *arg, const struct tar_entry *entry);
    int (*entry_data)(void *arg, const uint8_t *data, size_t len);
    int (*entry_end)(void *arg);
    int (*progress)(void *arg, uint64_t bytes_done);
    int (*manifest_data)(void *arg, const uint8_t *data, size_t len);
    /* When set, called instead of entry_data, with the reference to the message the
     * bytes lie in (bbstream_copy_data_ref): a consumer may take references to keep the
     * bytes past the call. ref is NULL when the bytes may not be kept. */
    int (*entry_data_ref)(void *arg, const uint8_t *data, size_t len, struct refbuf *ref);
};

struct bbstream;

/* Never returns NULL; cb is copied. */
struct bbstream *bbstream_new(enum bbstream_protocol protocol, const struct bbstream_callbacks *cb,
                              void *arg);
void bbstream_free(struct bbstream *s);

/* One CopyData payload (streamed: with its type byte; legacy: raw archive or manifest
 * bytes of the current COPY). 0 or negative (see above). */
int bbstream_copy_data(struct bbstream *s, const void *msg, size_t len);
/* The same for a message whose bytes ref keeps alive: entry data is passed on with ref
 * (entry_data_ref), so that it can be kept without a copy. */
int bbstream_copy_data_ref(struct bbstream *s, const void *msg, size_t len, struct refbuf *ref);

/* Legacy only: the next COPY carries the tar of tablespace spcoid at location (0 and ""
 * for the main data directory, which comes last). Ends the previous archive. */
int bbstream_legacy_archive(struct bbstream *s, uint32_t spcoid, const char *location);
/* Legacy only: the next COPY carries the backup_manifest. Ends the last archive. */
int bbstream_legacy_manifest(struct bbstream *s);

/* The stream is over (the COPY ended cleanly): ends the current archive, and checks
 * the main data directory's archive was received (ERR_PROTOCOL otherwise). */
int bbstream_finish(struct bbstream *s);

/* Whether the server sent a manifest (so far). */
bool bbstream_manifest_seen(const struct bbstream *s);

#endif
