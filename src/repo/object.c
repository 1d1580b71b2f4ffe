/*
 * object.c — the object envelope: every object of a repository is
 *
 *   header (32 bytes): "PGAO", version 1, compression id, cipher id, flags 0,
 *                      plaintext length (u64 big-endian), nonce (12 bytes, zero when
 *                      not encrypted), path tag (the first 4 bytes of the SHA-256 of
 *                      the object's path below "<cluster>/")
 *     or (36 bytes):   the same with version 2, then the id of the data key it is
 *                      encrypted under (u32 big-endian)
 *   payload:           (plaintext || SHA-256(plaintext)), compressed, then encrypted
 *                      with (header || path) as associated data
 *
 * An object encrypted under the repository's first data key (id 0) has the version 1
 * header, as every object had before there were several keys: a repository whose key
 * was never rotated is written byte for byte as before, and an object of version 1 is
 * read with key 0. The id is in the associated data like the rest of the header, so an
 * object whose id was changed does not authenticate under any key.
 *
 * The path tag and, when encrypted, the path in the associated data bind an object to
 * its name: a whole object copied over another one is self-consistent otherwise, and
 * would be read back as the other object's content. Every header byte is checked.
 *
 * Writing runs plaintext -> sha256 -> zstd -> aes-gcm -> storage (repo_put_payload: the
 * caller has the digest, and the payload is compressed in one piece); reading the reverse,
 * and a trailer check that compares the length and the digest before it reports
 * success (object_read.c). Each of these pipelines is built by envelope.c's one builder
 * from a set of options (envelope_int.h lists them); this file holds the writers.
 */
#include "envelope_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *repo_full_path(const struct repo *r, const char *path)
{
    return xasprintf("%s%s", r->prefix, path);
}

/* --- writing ------------------------------------------------------------------------ */

struct repo_writer {
    struct repo *r;
    char *path;
    struct storage_write *w;
    struct filter_chain *chain;
    struct filter *sha;         /* NULL when the caller gave the digest */
    uint8_t digest[SHA256_LEN]; /* the caller's digest of the plaintext */
    bool compressed;            /* the caller writes the compressed payload */
    uint64_t expect;
    uint64_t written;
    uint64_t stored; /* envelope bytes sent to storage */
};

static int writer_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct repo_writer *rw = ctx;
    rw->stored += len;
    return storage_write_data(rw->w, data, len);
}

/* Where a writer's object goes when it is uploaded among a batch's transfers. */
struct writer_batch {
    struct storage_batch *b;
    storage_done_fn done;
    void *ctx;
};

/* The options of an object written to r now: r's codecs, its current data key and a
 * fresh nonce when it is encrypted and o has none (unlocking r first). */
static int write_opts(struct repo *r, struct envelope_opts *o)
{
    o->compression = r->compression;
    o->level = r->compress_level;
    o->cipher = r->cipher;
    if (repo_unlock(r) < 0 ||
        (r->encrypted && !o->nonce_given && random_bytes(o->nonce, sizeof(o->nonce)) < 0))
        return err_code();
    repo_recheck_keys(r);
    const struct crypto_keyring *kr = repo_keyring(r);
    if (kr) {
        o->key_id = crypto_keyring_current_id(kr);
        o->key = crypto_keyring_data_key(kr);
    }
    return 0;
}

/* The pipeline of an object of plaintext_len bytes at path, built from o (its codecs,
 * key and nonce already set: write_opts), header written. wb NULL: an ordinary write. */
static struct repo_writer *writer_build(struct repo *r, const char *path, uint64_t plaintext_len,
                                        const struct envelope_opts *o,
                                        const struct writer_batch *wb)
{
    struct repo_writer *rw = xcalloc(1, sizeof(*rw));
    uint8_t header[ENVELOPE_HEADER_MAX];
    size_t hlen = envelope_header_make(header, o, plaintext_len, path);

    rw->r = r;
    rw->path = repo_full_path(r, path);
    rw->expect = plaintext_len;
    rw->compressed = o->precompressed || envelope_compress_whole(o);
    if (o->digest)
        memcpy(rw->digest, o->digest, SHA256_LEN);
    rw->w = wb ? storage_batch_write_open(wb->b, rw->path, STORAGE_TO_END, wb->done, wb->ctx)
               : storage_write_open(r->storage, rw->path, STORAGE_TO_END);
    if (!rw->w)
        goto fail;
    if (storage_write_data(rw->w, header, hlen) < 0)
        goto fail;
    rw->stored = hlen;
    struct envelope_stages stages;
    rw->chain =
        envelope_chain_build(ENVELOPE_WRITE, o, header, hlen, path, writer_sink, rw, &stages);
    if (!rw->chain)
        goto fail;
    rw->sha = stages.sha;
    return rw;
fail:
    err_context("while writing \"%s\" in repository \"%s\"", rw->path, repo_name(r));
    repo_writer_abort(rw);
    return NULL;
}

struct repo_writer *envelope_writer_open(struct repo *r, const char *path, uint64_t plaintext_len,
                                         struct envelope_opts *o, struct storage_batch *b,
                                         storage_done_fn done, void *ctx)
{
    struct writer_batch wb = {b, done, ctx};
    if (write_opts(r, o) < 0) {
        char *full = repo_full_path(r, path);
        err_context("while writing \"%s\" in repository \"%s\"", full, repo_name(r));
        free(full);
        return NULL;
    }
    return writer_build(r, path, plaintext_len, o, b ? &wb : NULL);
}

struct repo_writer *repo_writer_open(struct repo *r, const char *path, uint64_t plaintext_len)
{
    struct envelope_opts o = {.shape = ENVELOPE_STREAMED};
    return envelope_writer_open(r, path, plaintext_len, &o, NULL, NULL, NULL);
}

struct repo_writer *repo_writer_open_payload(struct repo *r, const char *path,
                                             uint64_t plaintext_len)
{
    struct envelope_opts o = {.shape = ENVELOPE_STREAMED, .precompressed = true};
    return envelope_writer_open(r, path, plaintext_len, &o, NULL, NULL, NULL);
}

struct repo_writer *repo_writer_open_payload_batch(struct repo *r, const char *path,
                                                   uint64_t plaintext_len, struct storage_batch *b,
                                                   storage_done_fn done, void *ctx)
{
    struct envelope_opts o = {.shape = ENVELOPE_STREAMED, .precompressed = true};
    return envelope_writer_open(r, path, plaintext_len, &o, b, done, ctx);
}

int repo_writer_write(struct repo_writer *rw, const void *data, size_t len)
{
    if (rw->compressed) /* the payload's length is not the plaintext's */
        return filter_chain_write(rw->chain, data, len);
    if (rw->written + len > rw->expect)
        return err_set(ERR_RUNTIME,
                       "object \"%s\": %llu bytes written, more than the %llu declared", rw->path,
                       (unsigned long long)(rw->written + len), (unsigned long long)rw->expect);
    rw->written += len;
    return filter_chain_write(rw->chain, data, len);
}

void repo_writer_abort(struct repo_writer *rw)
{
    if (!rw)
        return;
    if (rw->w)
        storage_write_abort(rw->w);
    filter_chain_free(rw->chain);
    free(rw->path);
    free(rw);
}

int repo_writer_commit(struct repo_writer *rw)
{
    return repo_writer_commit_sized(rw, NULL);
}

int repo_writer_commit_sized(struct repo_writer *rw, uint64_t *stored)
{
    int rc = 0;
    if (rw->compressed) {
        if ((rc = filter_chain_finish(rw->chain)) < 0)
            goto fail;
        goto commit;
    }
    if (rw->written != rw->expect) {
        rc = err_set(ERR_RUNTIME, "object \"%s\": %llu bytes written, %llu declared", rw->path,
                     (unsigned long long)rw->written, (unsigned long long)rw->expect);
        goto fail;
    }
    if (rw->sha)
        crypto_sha256_filter_result(rw->sha, rw->digest);
    if ((rc = filter_chain_write(rw->chain, rw->digest, SHA256_LEN)) < 0 ||
        (rc = filter_chain_finish(rw->chain)) < 0)
        goto fail;
commit:;
    struct storage_write *w = rw->w;
    rw->w = NULL;
    rc = storage_write_commit(w);
    if (rc < 0)
        goto fail;
    if (stored)
        *stored = rw->stored;
    repo_writer_abort(rw);
    return 0;
fail:
    repo_writer_abort(rw);
    return rc;
}

int repo_put(struct repo *r, const char *path, const void *data, size_t len)
{
    return repo_put_sized(r, path, data, len, NULL);
}

int repo_put_sized(struct repo *r, const char *path, const void *data, size_t len, uint64_t *stored)
{
    struct repo_writer *rw = repo_writer_open(r, path, len);
    if (!rw)
        return err_code();
    int rc = repo_writer_write(rw, data, len);
    if (rc < 0) {
        repo_writer_abort(rw);
        return rc;
    }
    return repo_writer_commit_sized(rw, stored);
}

/* --- writing a laid-out payload (backup chunks) ------------------------------------- */

/*
 * The same envelope as repo_put_sized, from a payload the caller already laid out:
 * plaintext || SHA-256(plaintext). Nothing is hashed here, and a compressing repository
 * compresses it in one piece, with no copy. A wrong digest makes an object that every
 * read rejects, never one read as valid.
 */
int repo_put_payload(struct repo *r, const char *path, const void *payload, size_t len,
                     uint64_t *stored)
{
    struct envelope_opts o = {.shape = ENVELOPE_WHOLE};
    return envelope_put_whole(r, path, payload, len, &o, stored);
}

int envelope_put_whole(struct repo *r, const char *path, const void *payload, size_t len,
                       struct envelope_opts *o, uint64_t *stored)
{
    const uint8_t *z = NULL;
    size_t zlen = 0;
    int rc;

    o->digest = (const uint8_t *)payload + len;
    o->compression = r->compression;
    o->level = r->compress_level;
    if (envelope_compress_whole(o) && (rc = o->compression->compress_buffer(
                                           o->level, payload, len + SHA256_LEN, &z, &zlen)) < 0) {
        err_context("while writing \"%s\" in repository \"%s\"", path, repo_name(r));
        return rc;
    }
    struct repo_writer *rw = envelope_writer_open(r, path, len, o, NULL, NULL, NULL);
    if (!rw)
        return err_code();
    /* compressed: the payload went in one piece; else its plaintext, and the digest at
     * commit, go through the chain as any other object's */
    rc = rw->compressed ? filter_chain_write(rw->chain, z, zlen)
                        : repo_writer_write(rw, payload, len);
    if (rc < 0) {
        repo_writer_abort(rw);
        return rc;
    }
    return repo_writer_commit_sized(rw, stored);
}
