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
 * Layout under <root>/<cluster>/ is docs/architecture.md's: repo.json, wal/<TLI>/<SEGMENT>,
 * wal/<TLI>/<SEGMENT>.partial, wal/<TLI>.history, chunks/<aa>/<hex>, backups/<LABEL>/,
 * drills/<NAME>.json (and pgark's other records, below).
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

struct codec;

/* How a cluster's objects are written: compressed with a codec of codec.h's table at
 * its level, and encrypted under a data key the passphrase unlocks. One value from the
 * configuration (cli_repo_options) to every repository, WAL preparer and manifest. */
struct repo_codecs {
    const struct codec *compression; /* NULL, or codec "none": stored uncompressed */
    int level;                       /* within compression's levels; unused for none */
    const char *passphrase;          /* NULL: no encryption (must match repo.json) */
};

struct repo_options {
    const char *cluster; /* cluster name: the folder under the root */
    struct repo_codecs codecs;
    /* scrypt cost for a new repository; 0 = CRYPTO_KDF_DEFAULT_N. Tests lower it. */
    uint64_t kdf_n;
    /* On a store without conditional writes, how long a creator of repo.json waits
     * for another one to finish; 0 = default (30 s). Tests lower it. */
    int create_wait_ms;
    /* An existing encrypted repository: derive its key (scrypt, most of a second of CPU)
     * only when an object is first read or written (repo_unlock), not at opening. For
     * wal-fetch, which PostgreSQL runs once per segment and whose "not found" answers
     * read nothing. Chunk names (repo_chunk_key) need the key: unlock first. */
    bool defer_key;
    /* The spool directory, where an encrypted repository's key-encryption key is kept
     * between commands ("<spool>/<cluster>/kek.<repository>", keycache.c), so that
     * scrypt runs once per passphrase and salt, not once per command; NULL: derived
     * every time. */
    const char *key_cache_spool;
};

struct repo;

/*
 * Open the repository of opts->cluster on storage s (borrowed: the caller frees
 * it after repo_close). With create true and no repo.json, write one for *expect
 * (a fresh data key when a passphrase is given). With expect non-NULL, a repo.json
 * for another system is ERR_MISMATCH. With expect NULL, the repository must exist
 * and is opened as it is (restore, info, verify). A wrong passphrase is ERR_AUTH (with
 * opts->defer_key, from the first read or write, or repo_unlock);
 * a passphrase for an unencrypted repository, or none for an encrypted one, is
 * ERR_CONFIG.
 */
struct repo *repo_open(struct storage *s, const struct repo_options *opts,
                       const struct repo_identity *expect, bool create);
void repo_close(struct repo *r);
/* Derive the key of an encrypted repository opened with defer_key, once for every
 * thread (a failure, e.g. a wrong passphrase (ERR_AUTH), is given to every later
 * caller too); 0 at once when the repository is not encrypted or already unlocked. */
int repo_unlock(struct repo *r);

/*
 * Passphrase rotation: wrap the data key of opts->cluster's repository on s (opened
 * with opts->codecs.passphrase, the current one) under new_passphrase with a fresh
 * salt, and replace repo.json with the new record in one atomic write; nothing else
 * is written. Returns 0 rotated, 1 when the new passphrase opens it already (a re-run),
 * <0 on failure (ERR_AUTH when neither passphrase opens it; ERR_RUNTIME when repo.json
 * read back is not what was written, another rotation at the same time).
 */
int repo_rekey(struct storage *s, const struct repo_options *opts, const char *new_passphrase);

/*
 * Data key rotation: a new random data key in opts->cluster's repository on s (unlocked
 * with opts->codecs.passphrase), current from now on for every process that opens the
 * repository afterwards; every key re-wrapped under the same passphrase with a fresh
 * salt, and repo.json replaced in one atomic write, as repo_rekey does. Returns 0 and
 * the new key's id in *id, <0 on failure (ERR_AUTH for a wrong passphrase, ERR_CONFIG
 * when the repository is not encrypted or holds CRYPTO_KEYS_MAX keys).
 */
int repo_new_data_key(struct storage *s, const struct repo_options *opts, uint32_t *id);

/* A data key of a repository, as repo.json lists it. */
struct repo_data_key {
    uint32_t id;
    bool current;       /* the one new objects are encrypted under */
    int64_t retired_us; /* when the next key was made (Unix us); 0: current, or unknown */
    uint64_t objects;   /* repo_key_usage: how many objects name it */
};

/* r's data keys in id order (owned by r; NULL and 0 when not encrypted). */
const struct repo_data_key *repo_data_keys(const struct repo *r, size_t *n);

/*
 * Count in keys[i].objects (keys: a copy of repo_data_keys' list, n entries) the objects
 * of r whose header names each key, by listing "<cluster>/" and reading every object's
 * header; an object naming a key not in the list is added to *unknown (may be NULL) and
 * its name to *first_unknown (malloc'd, the first one; may be NULL). With early, it
 * stops once every key but the current one and key 0 was seen: the counts are then
 * lower bounds. Objects that are not envelopes (repo.json, creators' candidates) are
 * skipped. 0, or <0 when listing or reading fails.
 */
int repo_key_usage(struct repo *r, struct repo_data_key *keys, size_t n, bool early,
                   uint64_t *unknown, char **first_unknown);

/*
 * Remove the data keys ids[0..n) from repo.json of opts->cluster's repository on s, in
 * one atomic replacement; key 0 and the current key are never removed (ERR_USAGE).
 * Whether no object uses them is the caller's to know (repo_key_usage). The keys left
 * are checked to open with opts->codecs.passphrase before anything is written.
 */
int repo_drop_data_keys(struct storage *s, const struct repo_options *opts, const uint32_t *ids,
                        size_t n);

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
/* 1 when the object is there, 0 when not, negative on error (one HEAD or stat; the
 * content is not read). */
int repo_object_exists(struct repo *r, const char *path);

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
/* Remove the .partial copy of a segment and its time index (a missing one is no error):
 * for once the complete segment is stored, which every reader takes instead. */
int repo_wal_remove_partial(struct repo *r, const char *segment_name);
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

/* A preparer for WAL of identity *id, compressing as codecs says (its compression and
 * level, as the repositories'), with its scratch files in scratch_dir (copied). It keeps
 * one compression context and one read buffer for all its segments. Not thread-safe: one
 * preparation at a time. */
struct repo_wal_preparer *repo_wal_preparer_new(const struct repo_identity *id,
                                                const struct repo_codecs *codecs,
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

/* Build the time index of complete segment segment_name again from the segment stored
 * in r, as archiving does, and store it (replacing one that is there). ERR_INTEGRITY
 * when the segment does not decode or is short; ERR_NOT_FOUND when it is not there. */
int repo_wal_reindex(struct repo *r, const char *segment_name);

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

/* --- high-water marks ------------------------------------------------------------ */
/*
 * How far a timeline's archive reaches, as the one that archives it last wrote it:
 * "wal/<TLI>.hwm", an object like any other, so in an encrypted repository it is
 * authenticated under the data key and bound to its path (nobody without the key can
 * write one, or move one to another timeline), and in a plain one only checksummed
 * (damage is found, a forgery is not). The receiver and wal-push write it after the WAL
 * it names is stored, never before, so it never claims more than was archived; `verify`
 * and `restore` hold the archive to it: a segment at or below it that is gone, or a
 * .partial shorter than it says, is WAL that was archived and is missing. What it cannot
 * show by itself is an older copy of itself put back (docs/architecture.md): the receiver's record
 * of the last one it wrote (spool) and the other repositories' marks can.
 *
 * The object is JSON:
 *   {"format":1, "timeline":1, "seq":12, "time_us":..., "time":"...", "writer":"receive",
 *    "segment":"<highest complete segment>"|null,
 *    "partial":{"segment":"<newest partial copy, after it>", "bytes":N}|null,
 *    "end_lsn":"X/X"}
 * "time" and "end_lsn" are for people reading it; "end_lsn" is checked against the rest.
 */

#define REPO_WAL_HWM_FORMAT 1

/* A writer's record of the last mark it wrote to each repository, kept out of the
 * repository's reach: "<dir>/hwm.<repository>" (the receiver's spool), the mark's JSON
 * (repo_wal_hwm_format), replaced after each write. The repository's own mark must be
 * at least as far along; `verify` holds it to that. */
#define REPO_WAL_HWM_RECORD_PREFIX "hwm."

struct repo_wal_hwm {
    timeline_t tli;
    uint64_t seq;    /* one more at each write; 0: never written */
    int64_t time_us; /* when written, by the writer's clock (Unix microseconds) */
    char writer[16]; /* "receive", "wal-push" */
    bool has_segment;
    uint64_t segno; /* the highest complete segment archived */
    bool has_partial;
    uint64_t partial_segno; /* a partial copy past segno, and its length */
    uint64_t partial_bytes;
};

/* "wal/<TLI>.hwm" into buf (>= 32). */
char *repo_wal_hwm_path(timeline_t tli, char *buf, size_t cap);
/* Where the archive reaches by *m: the end of its segment, or of its partial copy. 0 when
 * it names nothing. */
lsn_t repo_wal_hwm_end(const struct repo_wal_hwm *m, uint64_t seg_size);
/* Move *m to cover complete segment segno, or the first bytes of segment segno (partial);
 * never back. Returns true when it moved. */
bool repo_wal_hwm_add(struct repo_wal_hwm *m, uint64_t segno, bool partial, uint64_t bytes);
/* Move *m to cover what *o covers too (same timeline), and take the larger seq. Returns
 * true when the reach moved. */
bool repo_wal_hwm_merge(struct repo_wal_hwm *m, const struct repo_wal_hwm *o);
/* The mark as its JSON text (caller frees). */
char *repo_wal_hwm_format(const struct repo_wal_hwm *m, uint64_t seg_size);
/* Parse its JSON text; what names it in errors (an object, a file). ERR_INTEGRITY when a
 * field is missing, mistyped or disagrees with another. */
int repo_wal_hwm_parse(const char *text, size_t len, uint64_t seg_size, const char *what,
                       struct repo_wal_hwm *out);

/* The mark of timeline tli, verified. ERR_NOT_FOUND when there is none (a repository
 * archived by an older pgark, or a timeline it never wrote one for); ERR_INTEGRITY when
 * it is damaged, or is another timeline's. */
int repo_wal_hwm_get(struct repo *r, timeline_t tli, struct repo_wal_hwm *out);
/* The mark of tli for a writer about to move it: none reads as an empty mark (seq 0),
 * and so does a damaged one, with a warning, so that a new mark replaces it (verify
 * reports it). 0, or the error of a read that failed otherwise. */
int repo_wal_hwm_load(struct repo *r, timeline_t tli, struct repo_wal_hwm *out);
/* Store *m as the mark of m->tli (replacing the one there). The caller sets every field. */
int repo_wal_hwm_put(struct repo *r, const struct repo_wal_hwm *m);
/* For a writer that archives one file and ends (wal-push): read the mark of tli, add the
 * segment (or partial copy) just archived, and store it with the next seq when it moved.
 * A damaged mark is replaced, with a warning. */
int repo_wal_hwm_advance(struct repo *r, const char *writer, timeline_t tli, uint64_t segno,
                         bool partial, uint64_t bytes);

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
/* The content of a chunk stored is durable when repo_chunk_put_payload returns, but the
 * directory entries naming it may not be until repo_sync_written (a posix repository
 * fsyncs each chunk directory once there, not once per chunk). Call it before writing a
 * record that names chunks stored through r (a manifest). Whatever is written through
 * r's storage outside the chunk store syncs them first anyway, so a record can never
 * be durable before the chunks it names; this call puts the failure, if any, where the
 * chunks are finished. 0, or ERR_IO naming the directory; after a failure every later
 * call, and every write through r, fails too. A no-op for S3. */
int repo_sync_written(struct repo *r);
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
/* 1 when chunk name (hex) is stored, 0 when not, negative on error. */
int repo_chunk_exists(struct repo *r, const char *name);

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

/* The headers of n backups (as repo_backup_get each), read side by side (up to 8 at
 * once). out[i] is backup labels[i], or errs[i] its error (saved: the caller restores or
 * frees it) and out[i] cleared. */
struct err_saved;
void repo_backup_get_many(struct repo *r, char *const *labels, size_t n, struct repo_backup *out,
                          struct err_saved **errs);

/* 1 when backups/<label>/manifest.json exists, 0 when not, negative on error. */
int repo_backup_exists(struct repo *r, const char *label);

/* --- records ------------------------------------------------------------------------ */
/*
 * What pgark keeps about its own runs, beside what it archives: "<kind>/<name>.json", one
 * JSON object each, an envelope like any other object. `drill` writes one per drill
 * (drills/, passed or failed), `verify` one per run (verifies/), the receiver its RPO
 * history (receiver/); `report` reads them. Names are backup-label-like ([A-Za-z0-9._-],
 * not starting with '.'), timestamps first so that they sort by time.
 */
#define REPO_RECORD_DRILLS "drills"
#define REPO_RECORD_VERIFIES "verifies"
#define REPO_RECORD_RECEIVER "receiver"
#define REPO_RECORD_CONFIGS "configs" /* configuration backups (confsnap.h) */
#define REPO_RECORD_MAX (4u << 20)

/* Write (replace) record name of kind. ERR_USAGE for an unknown kind or a bad name. */
int repo_record_put(struct repo *r, const char *kind, const char *name, const char *text);
/* Read it, verified, NUL-terminated (*text is the caller's). ERR_NOT_FOUND when it is
 * not there; ERR_INTEGRITY when damaged or longer than REPO_RECORD_MAX. */
int repo_record_get(struct repo *r, const char *kind, const char *name, char **text);
/* The names of kind's records, sorted (none when the folder is missing). Free with
 * repo_record_names_free. */
int repo_record_list(struct repo *r, const char *kind, char ***names, size_t *n);
void repo_record_names_free(char **names, size_t n);

/* --- running markers ------------------------------------------------------------ */
/*
 * A backup being written and an expire sweeping unreferenced chunks must not miss each
 * other: a backup lists the chunks the repository holds when it starts and references
 * them without writing them again, so a sweep meanwhile could remove a chunk its
 * manifest is about to name. Each announces itself with a small object FIRST and only
 * then looks for the other (storage is read-after-write consistent, so of two that
 * start together at least one sees the other):
 *   backups/<LABEL>.running  `backup`: before it lists chunks; removed after manifest.json
 *   expire.running           `expire`: before it looks for backups; removed when it is
 *                            done with the repository
 * A sweep (and the WAL pruning) is skipped while a live backup marker is there; a
 * backup waits while a live expire marker is there.
 *
 * Liveness is a heartbeat, not a process: a marker is {"host", "pid", "heartbeat_ms",
 * "interval_s"}, heartbeat_ms the writer's own clock (Unix ms) when it wrote it, and the
 * writer rewrites it every REPO_MARKER_BEAT_S from a thread of its own
 * (repo_heartbeat_start), whatever its main thread waits on (the server's checkpoint,
 * a slow upload). Host and pid are for people: a process in another PID namespace or
 * on another host is neither more nor less alive. A marker is stale when it was not
 * refreshed for more than REPO_MARKER_STALE_S by BOTH witnesses of its age: its
 * heartbeat_ms and the storage's time of the object (mtime, Last-Modified), each
 * against the reader's clock. So a live writer (refreshed within one interval) is taken
 * for dead only when the reader's clock is ahead of the writer's AND of the storage's
 * by more than STALE - BEAT (9 minutes); a heartbeat dated in the future only makes the
 * marker younger (and is warned about by expire). A marker without heartbeat_ms
 * (written by an earlier pgark, or unreadable) is stale REPO_MARKER_LEGACY_STALE_S after
 * its storage time.
 *
 * A writer that was stopped for longer than the limit (a suspended machine, SIGSTOP)
 * may have been taken for dead meanwhile, and its heartbeat cannot tell it in time. So
 * each holds a lease: repo_heartbeat_held is true while no gap between its successful
 * beats exceeded REPO_MARKER_LEASE_S (half the limit: the other half is the margin for
 * clock skew). Expire checks it before each chunk it removes; a backup beats, waits for
 * any live expire, confirms that every chunk it names is still stored, and writes
 * manifest.json only while its lease since that beat holds (backup/run.c).
 */
#define REPO_MARKER_BEAT_S 60
#define REPO_MARKER_STALE_S (10 * REPO_MARKER_BEAT_S)
#define REPO_MARKER_LEASE_S (REPO_MARKER_STALE_S / 2)
#define REPO_MARKER_LEGACY_STALE_S (3 * 24 * 3600)

struct repo_marker {
    char *label; /* the backup's label; NULL for expire's marker */
    char *host;  /* "" when unknown */
    long pid;
    int64_t mtime_us; /* when it was written, by the storage's clock; 0: unknown */
    int64_t beat_us;  /* when it was written, by its writer's clock; 0: no heartbeat */
    int64_t age_s;    /* seconds since its last refresh, as judged (the younger witness) */
    bool stale;
};

/* Write the marker of backup label (label NULL: expire's), its heartbeat now. */
int repo_marker_put(struct repo *r, const char *label);
/* Remove it; a missing marker is not an error. */
int repo_marker_remove(struct repo *r, const char *label);
/* Judge m (its beat_us and mtime_us read) at now_us by the rules above: sets age_s and
 * stale. */
void repo_marker_judge(struct repo_marker *m, int64_t now_us);
/* Every marker (backups' and expire's), read and judged. Free with repo_markers_free. */
int repo_markers_list(struct repo *r, struct repo_marker **out, size_t *n);
void repo_markers_free(struct repo_marker *m, size_t n);
/* For `backup`, after its marker is written: wait while a live expire marker is there,
 * polling every poll_ms (logs once that it waits). 0, or negative on error. */
int repo_expire_wait(struct repo *r, int poll_ms);

/*
 * A heartbeat: the marker of label (NULL: expire's) in each of n repositories (borrowed:
 * they must outlive it), written at once and then rewritten every interval_ms (0:
 * REPO_MARKER_BEAT_S) by a thread of its own until repo_heartbeat_stop. A beat that
 * fails in the thread is warned about (once until one succeeds again) and retried at
 * the next interval. lease_ms (0: REPO_MARKER_LEASE_S) is the gap between successful
 * beats beyond which the lease is lost. NULL, with the error set, when a first marker
 * cannot be written (those written are removed).
 */
struct repo_heartbeat;
struct repo_heartbeat *repo_heartbeat_start(struct repo *const *repos, size_t n, const char *label,
                                            int interval_ms, int lease_ms);
/* Beat now in every repository, from the caller's thread, and start a new lease from
 * it. 0, or the first failure (the lease is lost then; *failed, when not NULL, is the
 * repository it failed in, else NULL). */
int repo_heartbeat_beat(struct repo_heartbeat *hb, struct repo **failed);
/* Beat no more in r (a repository a backup dropped); repo_heartbeat_stop tries once to
 * remove its marker there (a failure is warned about, naming r: the marker then goes
 * stale). Thread-safe. */
void repo_heartbeat_drop(struct repo_heartbeat *hb, const struct repo *r);
/* True while, since the last repo_heartbeat_beat (or the start), no gap between
 * successful beats, including the one running now, exceeded the lease (CLOCK_BOOTTIME:
 * time asleep counts). */
bool repo_heartbeat_held(struct repo_heartbeat *hb);
/* Stop the thread, remove the markers, those of dropped repositories too (one try each;
 * a failure is warned about: the marker then goes stale) and free. NULL is a no-op. */
void repo_heartbeat_stop(struct repo_heartbeat *hb);

#endif
