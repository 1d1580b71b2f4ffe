/* repo_int.h — the repository's internals, shared by the files of src/repo. */
#ifndef PGARK_REPO_INT_H
#define PGARK_REPO_INT_H

#include "pgark/codec.h"
#include "pgark/crypto.h"
#include "pgark/repo.h"

#include <pthread.h>

#define ENVELOPE_MAGIC "PGAO"
#define ENVELOPE_VERSION 1
#define ENVELOPE_HEADER_LEN 32
/* Version 2: version 1's header, then the id of the data key (u32 big-endian); written
 * under any data key but the first (envelope.c). */
#define ENVELOPE_VERSION_KEYID 2
#define ENVELOPE_HEADER_MAX (ENVELOPE_HEADER_LEN + 4)
#define ENVELOPE_TRAILER_LEN 32 /* SHA-256 of the plaintext, after the plaintext */

struct repo {
    struct storage *storage; /* borrowed */
    char *cluster;
    char *prefix; /* "<cluster>/" */
    struct repo_identity identity;
    const struct codec *compression;
    int compress_level;
    const struct codec *cipher;
    bool encrypted; /* repo.json holds encryption parameters */
    /* The keys; NULL when not encrypted, or until repo_unlock of a deferred opening.
     * Read only under key_lock, or through repo_keyring after repo_unlock returned 0 in
     * this thread. repo_refresh_keys replaces it (under key_lock) with one holding newer
     * keys; the ones it replaced stay valid until repo_close, since other threads may be
     * using them. */
    struct crypto_keyring *keyring;
    struct crypto_keyring **old_keyrings;
    size_t nold_keyrings;
    int64_t keys_read_us; /* when repo.json's keys were last read (monotonic) */
    pthread_mutex_t key_lock;
    struct crypto_key_record *key_rec; /* deferred: what unlocks it, until it is */
    char *passphrase;                  /* deferred: until it is unlocked */
    enum err_kind key_err;             /* unlocking failed: its error, for every caller */
    char *key_msg, *key_hint;
    char *key_cache;            /* the key cache file (keycache.c); NULL: none */
    struct repo_data_key *keys; /* as repo.json lists them (repo_data_keys) */
    size_t nkeys;
};

/* r's keyring (see struct repo). */
static inline const struct crypto_keyring *repo_keyring(struct repo *r)
{
    return __atomic_load_n(&r->keyring, __ATOMIC_ACQUIRE);
}

/* Read repo.json again and take the data keys made or dropped since r was opened
 * (without the passphrase: crypto_keyring_refresh); from then on r also writes under
 * the newest. With if_stale, only when no thread did for the recheck interval. 0, or
 * <0: ERR_AUTH when the keys were re-wrapped under another passphrase since. Called
 * with r unlocked. */
int repo_refresh_keys(struct repo *r, bool if_stale);
/* Before a write: repo_refresh_keys when the keys were read more than 5 minutes ago
 * (PGARK_TEST_KEY_RECHECK_S), so a long-lived writer (the receiver) moves to a new data
 * key within minutes of its making; a failure is a warning, the held keys go on. */
void repo_recheck_keys(struct repo *r);

/* The codec c compresses with: c->compression, or "none" when that is NULL (repo.c). */
const struct codec *repo_codecs_compression(const struct repo_codecs *c);

/* Store ix as the time index of its segment (walindex.c). */
int repo_wal_index_store(struct repo *r, const struct repo_wal_index *ix);
/* Parse the text of the time index at path in repository repo (both for messages) of a
 * segment of seg_size bytes into *out (free with repo_wal_index_free). 0, or
 * ERR_INTEGRITY naming the first bad field; *out is then empty. */
int repo_wal_index_parse(const char *text, size_t len, const char *path, const char *repo,
                         uint64_t seg_size, struct repo_wal_index *out);
/* The host and pid a running marker's text names into m->host (malloc'd; "" when it
 * names none) and m->pid (0 unless a pid from 1 to INT32_MAX). Damaged text is no error:
 * such a marker is judged by its age alone. */
void repo_marker_parse(const char *text, size_t len, struct repo_marker *m);

/* Read and verify an object (header, authentication, length, the trailer's SHA-256 of
 * the plaintext); plaintext to sink (may be NULL), the verified digest to sha_out and
 * the length to len_out (either may be NULL). */
int repo_object_read(struct repo *r, const char *path, storage_sink_fn sink, void *ctx,
                     uint8_t sha_out[32], uint64_t *len_out);
/* The same, the plaintext into dst (cap bytes) instead of a sink: the payload is
 * decrypted, then decompressed in one piece straight into dst (repo_chunk_get_into). */
int repo_object_read_into(struct repo *r, const char *path, uint8_t *dst, size_t cap,
                          size_t *len_out, uint8_t sha_out[32]);

/*
 * A writer for an object whose payload was made elsewhere: the bytes written are
 * (plaintext || SHA-256(plaintext)) already compressed with r's codec and level, of a
 * plaintext of plaintext_len bytes. The header (with this object's nonce and path tag)
 * and the encryption, with (header || path) as associated data, are this writer's as
 * for any object, so the object is bound to its name the same way. Whether the payload
 * matches plaintext_len is the producer's promise; every read checks it.
 */
struct repo_writer *repo_writer_open_payload(struct repo *r, const char *path,
                                             uint64_t plaintext_len);
/* The same, the object uploaded among b's transfers: repo_writer_commit starts the upload
 * (storage_batch_write_open), and done(ctx, rc) tells how it ended. */
struct repo_writer *repo_writer_open_payload_batch(struct repo *r, const char *path,
                                                   uint64_t plaintext_len, struct storage_batch *b,
                                                   storage_done_fn done, void *ctx);

/* --- shared by the WAL archive's two ways in (walarchive.c, walprep.c) --- */

struct waldecode;

/* A decoder for a segment's bytes from its start; NULL, with *why (caller frees), when
 * waldecode cannot read WAL of this identity. */
struct waldecode *repo_wal_decoder_new(const struct repo_identity *id, timeline_t tli,
                                       uint64_t segno, char **why);
/* Warn that what gets no time index in r: no decoder for it, or it did not decode. */
void repo_wal_index_missing(struct repo *r, const char *what, bool no_decoder, const char *why);
/* Store ix; a failure is a warning, never an archiving failure. */
void repo_wal_index_put(struct repo *r, const struct repo_wal_index *ix);
/* Whether the object at path is known to have no ".idx" beside it (false when unsure). */
bool repo_wal_index_absent(struct repo *r, const char *path);
/* 1 when path already holds exactly this content (by plaintext digest and length), 0
 * when it is absent, ERR_EXISTS naming what when it holds something else. */
int repo_wal_same_as_stored(struct repo *r, const char *path, const uint8_t digest[32],
                            uint64_t len, const char *what);

/* Write the first len bytes of fd into w and commit it; on failure w is aborted. Frees w
 * in every case. */
int repo_writer_copy_fd(struct repo_writer *w, int fd, uint64_t len);
/* Write the first len bytes of fd into w, nothing more (w stays open). */
int repo_writer_feed_fd(struct repo_writer *w, int fd, uint64_t len);

/* --- the key-encryption key cache (keycache.c) --- */

/* The cache file of repository repo of cluster ("<spool>/<cluster>/kek.<repo>"), NULL
 * when spool is. */
char *repo_keycache_path(const char *spool, const char *cluster, const char *repo);
/* Open rec from r's key cache, without scrypt: 0 and *kr (caller frees); 1 when there is
 * no usable entry for rec and passphrase (none, another salt or passphrase, damaged:
 * warned), and the caller derives. Never fails otherwise. */
int repo_keycache_open(struct repo *r, const struct crypto_key_record *rec, const char *passphrase,
                       struct crypto_keyring **kr);
/* Keep kr's key for passphrase in r's key cache (replacing the entry); a failure is a
 * "detail" line, nothing more. */
void repo_keycache_store(struct repo *r, const struct crypto_keyring *kr, const char *passphrase);
/* Remove r's key cache entry (its passphrase was rotated). */
void repo_keycache_forget(const struct repo *r);

/* --- repo.json, shared by opening (repo.c) and changing keys (rekey.c) --- */

#define REPO_JSON "repo.json"

struct json_t;
/* ERR_INTEGRITY: r's repo.json is not valid, for what reason. */
int repo_json_bad(const struct repo *r, const char *what);
/* The key record of repo.json's "encryption" object: key 0's wrapping, and the later
 * keys of "data_keys" (absent until rotate-key --data-key adds one). */
int repo_json_key_record(const struct repo *r, struct json_t *enc, struct crypto_key_record *rec);
/* repo.json (at full) into memory (malloc'd), at most 64 KiB of it. */
int repo_json_read(const struct repo *r, const char *full, uint8_t **data, size_t *len);

/* "<cluster>/<path>" (caller frees). */
char *repo_full_path(const struct repo *r, const char *path);

/* Where creators of repo.json put their candidates, and the name (followed by a random
 * id) of the probe of storage_create_honoured, relative to "<cluster>/". */
#define REPO_CANDIDATE_DIR "repo.json.new/"
#define REPO_PROBE_PREFIX "repo.json.probe-"

/* Create full (repo.json) holding text, on a store where storage_create_all does not
 * keep its promise, among creators that may race to do the same (create.c says how
 * and what is guaranteed). 0 when text was written and reads back; 1 when another
 * creator's repo.json is there (the caller reads it); negative with the error set,
 * ERR_TRANSIENT when another creator was still at it after wait_ms (0: 30 s). */
int repo_create_racing(struct repo *r, const char *full, const char *text, int wait_ms);

/* What a WAL segment being archived is called in read errors (storage_fd_pass). */
#define WAL_TO_ARCHIVE "WAL file to archive"

#endif
