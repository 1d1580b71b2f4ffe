/*
 * repo.h — one cluster's repository on one storage: the object envelope, repo.json,
 * and the WAL archive.
 *
 * Promise: every object is written as an envelope (a 32-byte header, then the
 * plaintext followed by its SHA-256, compressed and, with a passphrase, encrypted
 * with AES-256-GCM under the repository's data key, the header as associated data)
 * and every read verifies it end to end: a corrupt, truncated or foreign object is
 * ERR_INTEGRITY naming the object and the repository, never wrong bytes. repo.json
 * binds the repository to one PostgreSQL system: opening it for another system
 * identifier, major version or segment size is ERR_MISMATCH, never a silent mix.
 *
 * Layout under <root>/<cluster>/ is DESIGN.md's: repo.json, wal/<TLI>/<SEGMENT>,
 * wal/<TLI>/<SEGMENT>.partial, wal/<TLI>.history, chunks/<aa>/<hex>, backups/<LABEL>/.
 */
#ifndef PGARK_REPO_H
#define PGARK_REPO_H

#include "pgark/manifest.h"
#include "pgark/storage.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a repository is bound to; from IDENTIFY_SYSTEM / server version. */
struct repo_identity {
    uint64_t system_identifier;
    int pg_major;      /* 15 for 150018 */
    uint64_t seg_size; /* wal_segment_size in bytes */
};

struct repo_options {
    const char *cluster;    /* cluster name: the folder under the root */
    const char *passphrase; /* NULL: no encryption (must match repo.json) */
    int compress_level;     /* zstd level 1..19; 0 = store uncompressed */
    /* scrypt cost for a new repository; 0 = CRYPTO_KDF_DEFAULT_N. Tests lower it. */
    uint64_t kdf_n;
};

struct repo;

/*
 * Open the repository of opts->cluster on storage s (borrowed: the caller frees
 * it after repo_close). With create true and no repo.json, write one for *expect
 * (a fresh data key when a passphrase is given). With expect non-NULL, a repo.json
 * for another system is ERR_MISMATCH. With expect NULL, the repository must exist
 * and is opened as it is (restore, info, verify). A wrong passphrase is ERR_AUTH;
 * a passphrase for an unencrypted repository, or none for an encrypted one, is
 * ERR_CONFIG.
 */
struct repo *repo_open(struct storage *s, const struct repo_options *opts,
                       const struct repo_identity *expect, bool create);
void repo_close(struct repo *r);

const struct repo_identity *repo_identity(const struct repo *r);
const char *repo_name(const struct repo *r); /* the storage's name, for messages */
struct storage *repo_storage(struct repo *r);
bool repo_encrypted(const struct repo *r);

/* --- objects (path relative to <root>/<cluster>/) --------------------------- */

/* Write one object atomically from memory. */
int repo_put(struct repo *r, const char *path, const void *data, size_t len);
/* As repo_put; *stored (may be NULL) receives the object's size as stored (envelope,
 * compressed, encrypted), for the stored-bytes figures of a backup. */
int repo_put_sized(struct repo *r, const char *path, const void *data, size_t len,
                   uint64_t *stored);
/* As repo_put_sized, from a payload laid out as the envelope wants it: len bytes of
 * plaintext followed by their SHA-256 (len + 32 bytes in all), for a caller that has
 * the digest already (a backup names chunks by it). The object is equivalent; the
 * plaintext is not hashed again, and is compressed in one piece without a copy. A wrong
 * digest makes an object every read rejects (ERR_INTEGRITY), never one read as valid. */
int repo_put_payload(struct repo *r, const char *path, const void *payload, size_t len,
                     uint64_t *stored);

/* Streamed writing of an object of known plaintext length. */
struct repo_writer;
struct repo_writer *repo_writer_open(struct repo *r, const char *path, uint64_t plaintext_len);
int repo_writer_write(struct repo_writer *w, const void *data, size_t len);
/* Checks the length written, makes the object durable; frees w in every case. */
int repo_writer_commit(struct repo_writer *w);
/* As repo_writer_commit; *stored (may be NULL) receives the size as stored. */
int repo_writer_commit_sized(struct repo_writer *w, uint64_t *stored);
void repo_writer_abort(struct repo_writer *w);

/* Stream an object's verified plaintext to sink. Bytes reach the sink only after
 * they are authenticated; a failure after some bytes were delivered is still an
 * error (callers write to a temporary name and rename only on success). */
int repo_get(struct repo *r, const char *path, storage_sink_fn sink, void *ctx);
/* Read an object's plaintext into memory (malloc'd, NUL-terminated). */
int repo_get_all(struct repo *r, const char *path, uint8_t **data, size_t *len);
/* The same for an object that cannot be longer than max bytes: one whose header says
 * more is ERR_INTEGRITY ("... holds N bytes, more than <what> can have (max)"), found
 * before any of its content is read. what: "a time index", "a WAL segment". */
int repo_get_all_max(struct repo *r, const char *path, uint64_t max, const char *what,
                     uint8_t **data, size_t *len);

/* The longest objects of their kind read into memory: far above what pgark writes (a
 * history line is ~50 bytes per timeline, an index ~200 bytes per restore point, a
 * marker a host name and a pid), far below what would strain memory. */
#define REPO_HISTORY_MAX (16u << 20)
#define REPO_WAL_INDEX_MAX (16u << 20)
#define REPO_MARKER_MAX (64u << 10)

/* Plaintext SHA-256 and length from an object's trailer and header, verified by
 * reading it whole. */
int repo_object_digest(struct repo *r, const char *path, uint8_t sha[32], uint64_t *len);

/* --- WAL archive ------------------------------------------------------------ */

/* "wal/<TLI>/<SEGMENT>" (plus ".partial" when partial) into buf (>= 64). */
char *repo_wal_path(timeline_t tli, const char *segment_name, bool partial, char *buf, size_t cap);

/*
 * Archive one complete segment, read from fd (len must be the segment size; the
 * file offset is not used: reads are positional). If the repository already holds
 * the segment with identical content this is a no-op (returns 0); with different
 * content it is ERR_EXISTS naming the segment, and nothing is overwritten.
 */
int repo_wal_push_fd(struct repo *r, const char *segment_name, int fd, uint64_t len);
/* Replace the .partial copy of a segment with the first len bytes of fd. */
int repo_wal_push_partial_fd(struct repo *r, const char *segment_name, int fd, uint64_t len);
/* Archive a timeline history file ("%08X.history"); identical = no-op. */
int repo_wal_push_history(struct repo *r, timeline_t tli, const void *data, size_t len);

/* --- segments prepared once for several repositories ------------------------------ */
/*
 * What archiving a segment costs but does not depend on the repository — reading it, its
 * SHA-256, its time index, and compressing the envelope payload (plaintext || SHA-256) —
 * done once, then pushed to each repository, which only adds its own header, encrypts
 * with its own key and nonce, and writes. The objects are byte for byte what
 * repo_wal_push_fd would write (but for the nonce), bound to their path the same way.
 * The compressed payload waits in an unlinked scratch file, so memory stays flat
 * whatever the segment's size or compressibility.
 */
struct repo_wal_preparer;
struct repo_wal_prepared;

/* A preparer for WAL of identity *id, compressing at compress_level (as repo_options;
 * 0 = none), with its scratch files in scratch_dir (copied). It keeps one compression
 * context and one read buffer for all its segments. Not thread-safe: one preparation at
 * a time. */
struct repo_wal_preparer *repo_wal_preparer_new(const struct repo_identity *id, int compress_level,
                                                const char *scratch_dir);
void repo_wal_preparer_free(struct repo_wal_preparer *p);

/* Prepare the first len bytes of fd as segment_name, complete (len must be the segment
 * size) or partial. fd is duplicated, not consumed: a repository that compresses
 * otherwise is pushed from it the ordinary way. A segment that does not decode is still
 * prepared (its pushes warn, as repo_wal_push_fd's). *out is the caller's (free with
 * repo_wal_prepared_free); it may be pushed from several threads at once. */
int repo_wal_prepare(struct repo_wal_preparer *p, const char *segment_name, bool partial, int fd,
                     uint64_t len, struct repo_wal_prepared **out);
void repo_wal_prepared_free(struct repo_wal_prepared *s);

/* As repo_wal_push_fd (complete) or repo_wal_push_partial_fd (partial), for the prepared
 * bytes: identical content already stored is a no-op, different content ERR_EXISTS. */
int repo_wal_push_prepared(struct repo *r, const struct repo_wal_prepared *s);

/* The same, the object uploaded among b's transfers, so that several segments go at
 * once. Staging looks at whether the segment is stored already, and how (as
 * repo_wal_push_prepared), and writes the object where the batch keeps streamed
 * writes (see storage_batch_spool); s may be freed once it returns. Returns 0 with
 * *out staged: repo_wal_staged_start starts the upload, and done(ctx, rc) then tells
 * how it ended (as storage.h's batch calls do; the time index is stored before done
 * hears of success), or repo_wal_staged_abort throws it away (done not called).
 * Returns 1 when there was nothing left to upload or the push was made here at once
 * (a partial segment, another codec); negative on error; in both, *out is NULL. */
struct repo_wal_staged;
int repo_wal_stage_prepared(struct repo *r, const struct repo_wal_prepared *s,
                            struct storage_batch *b, storage_done_fn done, void *ctx,
                            struct repo_wal_staged **out);
/* Start the upload; frees st. 0, or negative when it could not start (done not called). */
int repo_wal_staged_start(struct repo_wal_staged *st);
/* NULL is a no-op. */
void repo_wal_staged_abort(struct repo_wal_staged *st);

/* --- time index -------------------------------------------------------------- */
/*
 * Every segment pushed (complete or .partial) is decoded on the way in, and what its
 * records say is stored beside it as "wal/<TLI>/<SEGMENT>.idx" (".partial.idx" for the
 * partial copy, replaced with it): commit and abort counts, the first and last commit
 * (time, LSN, xid), restore points, whether a switch record ends it and where valid WAL
 * ends. A segment that does not decode gets no index (a warning; archiving goes on),
 * and `verify` reports the segment. Records are counted where they end and a record
 * continued from the previous segment cannot be decoded alone, so a commit record that
 * crosses a segment boundary is in neither segment's index.
 *
 * Times are Unix microseconds (UTC).
 */

#define REPO_WAL_INDEX_FORMAT 1

struct repo_wal_xact {
    lsn_t lsn;     /* where the record starts */
    lsn_t end_lsn; /* where the next one may start */
    int64_t time_us;
    uint32_t xid;
};

struct repo_wal_restore_point {
    char name[64];
    lsn_t lsn;
    lsn_t end_lsn; /* what pg_create_restore_point() returned */
    int64_t time_us;
};

struct repo_wal_index {
    timeline_t tli;
    uint64_t segno;
    bool partial;
    uint64_t bytes;   /* bytes decoded: the segment size, or the partial's length */
    uint64_t records; /* records that end in these bytes */
    uint64_t commits, aborts;
    struct repo_wal_xact first_commit, last_commit; /* valid when commits > 0 */
    size_t nrestore_points;
    struct repo_wal_restore_point *restore_points; /* owned; free with repo_wal_index_free */
    bool switch_seen;
    lsn_t switch_lsn;
    bool end_of_wal; /* valid WAL stopped before the bytes did (at end_lsn) */
    lsn_t end_lsn;   /* end of valid WAL, or of the last complete record; 0 if none */
};

struct waldecode_summary;

/* The index of tli/segno from a decoder's summary of its first `bytes` bytes
 * (out->restore_points is allocated; free with repo_wal_index_free). */
void repo_wal_index_from_summary(timeline_t tli, uint64_t segno, bool partial, uint64_t bytes,
                                 const struct waldecode_summary *s, struct repo_wal_index *out);

/* Read the index of a segment. segname is "<SEGMENT>" or "<SEGMENT>.partial" and must be
 * on timeline tli. ERR_NOT_FOUND when the segment has no index; ERR_INTEGRITY when the
 * object is damaged or does not parse. Free *out with repo_wal_index_free. */
int repo_wal_index_get(struct repo *r, timeline_t tli, const char *segname,
                       struct repo_wal_index *out);
void repo_wal_index_free(struct repo_wal_index *ix);

/* The first segment of timeline tli (complete, or the newest .partial after the last
 * complete one) whose last commit is at or after target_us: the segment recovery to
 * that time must reach. Binary search over the indexes (commit times grow with the
 * LSN); segments without an index or without commits are passed over. ERR_NOT_FOUND
 * when no indexed commit on tli is that late. Free *out with repo_wal_index_free. */
int repo_wal_index_find_time(struct repo *r, timeline_t tli, int64_t target_us,
                             struct repo_wal_index *out);

/* The index of the newest segment of tli that holds a commit (the newest .partial
 * counts): out->last_commit is the latest commit archived on tli. ERR_NOT_FOUND when
 * no indexed segment of tli holds one. */
int repo_wal_index_latest(struct repo *r, timeline_t tli, struct repo_wal_index *out);

/* --- chunk store ------------------------------------------------------------- */

#define REPO_CHUNK_NAME_LEN 64 /* hex */

/* The key that names chunks (HMAC-SHA256) in an encrypted repository, so that names
 * do not reveal content; NULL when not encrypted (names are plain SHA-256). */
const uint8_t *repo_chunk_key(const struct repo *r);
/* Name of a chunk with this plaintext (hex, NUL-terminated). */
void repo_chunk_name(const struct repo *r, const void *data, size_t len,
                     char out[REPO_CHUNK_NAME_LEN + 1]);
/* "chunks/<aa>/<name>" into buf (>= 80). ERR_USAGE if name is not 64 hex digits. */
int repo_chunk_path(const char *name, char *buf, size_t cap);
/* Store a chunk under its name (repo_chunk_name) from a laid-out payload: the chunk, then
 * its SHA-256 (repo_put_payload). In an unencrypted repository that digest is the name
 * itself, so a chunk is hashed once. */
int repo_chunk_put_payload(struct repo *r, const char *name, const void *payload, size_t len,
                           uint64_t *stored);
/* Stream a chunk's plaintext to sink; verifies the envelope and that the content
 * still has this name (a chunk swapped for another is ERR_INTEGRITY), hashing it once:
 * in a plain repository the envelope's verified SHA-256 is compared with the name; in
 * an encrypted one (HMAC names) the name is authenticated with the object (AES-GCM
 * with the path as associated data), and the HMAC is not recomputed. sha256 (may be
 * NULL) receives the verified SHA-256 of the plaintext, for a file digest made of its
 * chunks' (manifest_chunks_digest). */
int repo_chunk_get(struct repo *r, const char *name, storage_sink_fn sink, void *ctx,
                   uint8_t sha256[32]);
/*
 * The same checks, the plaintext into dst instead of a sink, and *len set to its length:
 * the stored payload is read into a buffer the calling thread keeps, decrypted, and
 * decompressed in one piece straight into dst, then hashed there once, so no byte of
 * the plaintext is copied. dst holds cap bytes and nothing past them is written. A
 * chunk whose plaintext is longer than cap is ERR_INTEGRITY before anything is decoded.
 * The trailer (32 bytes) is decoded after the plaintext when
 * *len + REPO_CHUNK_GET_SLACK <= cap; with less room the chunk goes through a scratch
 * buffer and is copied, so a caller that knows the length gives that much more. On
 * failure dst[0..cap) holds anything.
 */
#define REPO_CHUNK_GET_SLACK 32
int repo_chunk_get_into(struct repo *r, const char *name, uint8_t *dst, size_t cap, size_t *len,
                        uint8_t sha256[32]);
/* Every chunk name in the repository (one listing of chunks/). */
typedef int (*repo_chunk_fn)(void *ctx, const char *name, uint64_t stored_size);
int repo_chunk_list(struct repo *r, repo_chunk_fn fn, void *ctx);

/* --- catalog ----------------------------------------------------------------- */

struct repo_wal_timeline {
    timeline_t tli;
    uint64_t segments;    /* complete segments */
    uint64_t first_segno; /* lowest and highest complete segment */
    uint64_t last_segno;
    uint64_t gaps; /* segments missing between first and last */
    bool has_partial;
    uint64_t partial_segno; /* newest .partial */
};

struct repo_wal_summary {
    struct repo_wal_timeline *timelines; /* sorted by timeline */
    size_t ntimelines;
    uint64_t segments;
    uint64_t histories;
    uint64_t stored_bytes;   /* WAL objects as stored (compressed, encrypted) */
    int64_t newest_mtime_us; /* newest complete segment's time in the repository */
};

/* List the WAL archive (one listing of wal/). Free with repo_wal_summary_free. */
int repo_wal_summary(struct repo *r, struct repo_wal_summary *out);
void repo_wal_summary_free(struct repo_wal_summary *s);

/* --- backups ------------------------------------------------------------------ */

/* A complete backup: backups/<label>/manifest.json exists. A backup directory without
 * it (a backup that was interrupted, or is being written) is not a backup. */
struct repo_backup {
    char *label;
    /* The manifest's first line. Its strings and tablespaces belong to this struct. */
    struct manifest_header header;
};

/* "backups/<label>/<file>" into buf (>= 300). ERR_USAGE if label is not a valid
 * label (letters, digits, '.', '_', '-'; not starting with '.'; at most 200 bytes). */
int repo_backup_path(const char *label, const char *file, char *buf, size_t cap);
bool repo_backup_label_valid(const char *label);

/* The complete backups, oldest label first (labels are UTC times, so that is time
 * order unless --label was used), each with its manifest's header: only the first
 * line of each manifest is read. *out is malloc'd (free with repo_backup_list_free);
 * a manifest whose header cannot be read fails the listing with ERR_INTEGRITY. */
int repo_backup_list(struct repo *r, struct repo_backup **out, size_t *n);
void repo_backup_list_free(struct repo_backup *list, size_t n);

/* One backup's header. ERR_NOT_FOUND when it is not complete. Clear with
 * repo_backup_clear. */
int repo_backup_get(struct repo *r, const char *label, struct repo_backup *out);
void repo_backup_clear(struct repo_backup *b);

/* 1 when backups/<label>/manifest.json exists, 0 when not, negative on error. */
int repo_backup_exists(struct repo *r, const char *label);

/* --- running markers ------------------------------------------------------------ */
/*
 * A backup being written and an expire sweeping unreferenced chunks must not miss each
 * other: a backup lists the chunks the repository holds when it starts and references
 * them without writing them again, so a sweep meanwhile could remove a chunk its
 * manifest is about to name. Each announces itself with a small object FIRST and only
 * then looks for the other (storage is read-after-write consistent, so of two that
 * start together at least one sees the other):
 *   backups/<LABEL>.running  `backup`: before it lists chunks; removed after manifest.json
 *   expire.running           `expire`: before it looks for backups; removed after the sweep
 * A sweep that sees a live backup marker is skipped; a backup that sees a live expire
 * marker waits for it to go. A marker is stale (its writer died) when it names a
 * process on this host that is gone, or is older than REPO_MARKER_STALE_S.
 */
#define REPO_MARKER_STALE_S (3 * 24 * 3600)

struct repo_marker {
    char *label; /* the backup's label; NULL for expire's marker */
    char *host;
    long pid;
    int64_t mtime_us; /* when it was written (storage time) */
    bool stale;
};

/* Write the marker of backup label (label NULL: expire's). */
int repo_marker_put(struct repo *r, const char *label);
/* Remove it; a missing marker is not an error. */
int repo_marker_remove(struct repo *r, const char *label);
/* Every marker (backups' and expire's), read and judged. Free with repo_markers_free. */
int repo_markers_list(struct repo *r, struct repo_marker **out, size_t *n);
void repo_markers_free(struct repo_marker *m, size_t n);
/* For `backup`: write its marker, then wait while a live expire marker is there,
 * polling every poll_ms (logs once that it waits). */
int repo_backup_begin(struct repo *r, const char *label, int poll_ms);

#endif
