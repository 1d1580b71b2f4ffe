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
 * success.
 */
#include "repo_int.h"

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

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void path_tag(const char *path, uint8_t tag[4])
{
    uint8_t digest[SHA256_LEN];
    sha256(path, strlen(path), digest);
    memcpy(tag, digest, 4);
}

/* Associated data of an encrypted object: header (hlen bytes) || path (caller frees). */
static uint8_t *object_aad(const uint8_t *header, size_t hlen, const char *path, size_t *len)
{
    size_t plen = strlen(path);
    uint8_t *aad = xmalloc(hlen + plen);
    memcpy(aad, header, hlen);
    memcpy(aad + hlen, path, plen);
    *len = hlen + plen;
    return aad;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
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

/* digest NULL: hash the plaintext on its way through; else the caller's SHA-256 of it.
 * compressed: the caller writes the payload (plaintext and digest) compressed already,
 * and the chain only encrypts it. wb NULL: an ordinary write. */
static struct repo_writer *writer_open(struct repo *r, const char *path, uint64_t plaintext_len,
                                       const uint8_t *digest, bool compressed,
                                       const struct writer_batch *wb)
{
    struct repo_writer *rw = xcalloc(1, sizeof(*rw));
    uint8_t header[ENVELOPE_HEADER_MAX] = {0};
    size_t hlen = ENVELOPE_HEADER_LEN;
    uint8_t nonce[CRYPTO_NONCE_LEN] = {0};
    uint32_t key_id = 0;

    rw->r = r;
    rw->path = repo_full_path(r, path);
    rw->expect = plaintext_len;
    if (repo_unlock(r) < 0 || (r->encrypted && random_bytes(nonce, sizeof(nonce)) < 0))
        goto fail;
    repo_recheck_keys(r);
    const struct crypto_keyring *kr = repo_keyring(r);
    if (kr)
        key_id = crypto_keyring_current_id(kr);
    memcpy(header, ENVELOPE_MAGIC, 4);
    header[4] = key_id ? ENVELOPE_VERSION_KEYID : ENVELOPE_VERSION;
    header[5] = r->compression->id;
    header[6] = r->cipher->id;
    header[7] = 0;
    put_be64(header + 8, plaintext_len);
    memcpy(header + 16, nonce, sizeof(nonce));
    path_tag(path, header + 28);
    if (key_id) {
        for (int i = 0; i < 4; i++)
            header[32 + i] = (uint8_t)(key_id >> (8 * (3 - i)));
        hlen = ENVELOPE_HEADER_MAX;
    }

    rw->w = wb ? storage_batch_write_open(wb->b, rw->path, STORAGE_TO_END, wb->done, wb->ctx)
               : storage_write_open(r->storage, rw->path, STORAGE_TO_END);
    if (!rw->w)
        goto fail;
    if (storage_write_data(rw->w, header, hlen) < 0)
        goto fail;
    rw->stored = hlen;
    rw->chain = filter_chain_new(0, writer_sink, rw);
    rw->compressed = compressed;
    if (digest)
        memcpy(rw->digest, digest, SHA256_LEN);
    else if (!compressed)
        rw->sha = filter_chain_add(rw->chain, crypto_sha256_filter_new());
    if (!compressed && codec_add_compress(rw->chain, r->compression, r->compress_level) < 0)
        goto fail;
    if (kr) {
        size_t aad_len;
        uint8_t *aad = object_aad(header, hlen, path, &aad_len);
        int rc = codec_add_encrypt(rw->chain, r->cipher, crypto_keyring_data_key(kr), nonce, aad,
                                   aad_len);
        free(aad);
        if (rc < 0)
            goto fail;
    }
    return rw;
fail:
    err_context("while writing \"%s\" in repository \"%s\"", rw->path, repo_name(r));
    repo_writer_abort(rw);
    return NULL;
}

struct repo_writer *repo_writer_open(struct repo *r, const char *path, uint64_t plaintext_len)
{
    return writer_open(r, path, plaintext_len, NULL, false, NULL);
}

struct repo_writer *repo_writer_open_payload(struct repo *r, const char *path,
                                             uint64_t plaintext_len)
{
    return writer_open(r, path, plaintext_len, NULL, true, NULL);
}

struct repo_writer *repo_writer_open_payload_batch(struct repo *r, const char *path,
                                                   uint64_t plaintext_len, struct storage_batch *b,
                                                   storage_done_fn done, void *ctx)
{
    struct writer_batch wb = {b, done, ctx};
    return writer_open(r, path, plaintext_len, NULL, true, &wb);
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
    const uint8_t *digest = (const uint8_t *)payload + len;
    const uint8_t *z = NULL;
    size_t zlen = 0;
    bool compress = r->compression->compress_buffer != NULL;
    int rc;

    if (compress && (rc = r->compression->compress_buffer(r->compress_level, payload,
                                                          len + SHA256_LEN, &z, &zlen)) < 0) {
        err_context("while writing \"%s\" in repository \"%s\"", path, repo_name(r));
        return rc;
    }
    struct repo_writer *rw = writer_open(r, path, len, digest, compress, NULL);
    if (!rw)
        return err_code();
    if (compress) {
        rc = filter_chain_write(rw->chain, z, zlen);
    } else {
        rc = repo_writer_write(rw, payload, len);
    }
    if (rc < 0) {
        repo_writer_abort(rw);
        return rc;
    }
    return repo_writer_commit_sized(rw, stored);
}

/* --- reading ------------------------------------------------------------------------ */

struct reader {
    struct repo *r;
    const char *path; /* below "<cluster>/": the name the object is bound to */
    const char *name; /* "<cluster>/<path>", for messages */
    bool reported;    /* the error set already names the object */
    storage_sink_fn sink;
    void *ctx;
    uint8_t header[ENVELOPE_HEADER_MAX];
    size_t header_have;
    size_t header_len; /* ENVELOPE_HEADER_LEN, or more once the version says so */
    bool newer_key;    /* the header names a key newer than the keyring's: read again */
    struct filter_chain *chain;
    /* Plaintext side: hold back the last 32 bytes, which may be the trailer. */
    uint8_t hold[ENVELOPE_TRAILER_LEN];
    size_t hold_len;
    struct sha256_ctx *sha;
    uint64_t plain_len; /* from the header */
    uint64_t delivered;
    /* Reading into a caller's buffer (repo_object_read_into): the chain only decrypts,
     * the payload collects here, and comp decompresses it in one piece afterwards. */
    struct buf *payload;
    size_t cap;
    size_t payload_max; /* the most a payload of plain_len bytes can take, compressed */
    const struct codec *comp;
    /* Reading into memory (repo_get_all_max): the most plaintext the caller takes,
     * checked against the header before anything is read on; 0 for no limit. */
    uint64_t max;
    const char *what; /* what the object is, for that error */
};

static int bad_object(struct reader *rd, const char *what)
{
    rd->reported = true;
    return err_set(ERR_INTEGRITY, "object \"%s\" in repository \"%s\" is damaged: %s", rd->name,
                   repo_name(rd->r), what);
}

/* Name the object in an integrity error raised below (header ids, zstd, AES-GCM), once. */
static int object_context(struct reader *rd)
{
    if (err_kind() == ERR_INTEGRITY && !rd->reported) {
        rd->reported = true;
        err_context("in object \"%s\" of repository \"%s\"", rd->name, repo_name(rd->r));
    }
    return err_code();
}

static int deliver(struct reader *rd, const uint8_t *data, size_t len)
{
    if (!len)
        return 0;
    if (rd->delivered + len > rd->plain_len)
        return bad_object(rd, "longer than its header says");
    sha256_ctx_update(rd->sha, data, len);
    rd->delivered += len;
    return rd->sink ? rd->sink(rd->ctx, data, len) : 0;
}

/* Output of the decode chain: plaintext followed by the 32-byte trailer. */
static int plain_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reader *rd = ctx;
    int rc = 0;
    if (rd->hold_len + len <= ENVELOPE_TRAILER_LEN) {
        memcpy(rd->hold + rd->hold_len, data, len);
        rd->hold_len += len;
        return 0;
    }
    /* Everything but the last 32 bytes of (hold || data) is plaintext. */
    size_t total = rd->hold_len + len;
    size_t out = total - ENVELOPE_TRAILER_LEN;
    size_t from_hold = out < rd->hold_len ? out : rd->hold_len;
    if ((rc = deliver(rd, rd->hold, from_hold)) < 0)
        return rc;
    memmove(rd->hold, rd->hold + from_hold, rd->hold_len - from_hold);
    rd->hold_len -= from_hold;
    size_t from_data = out - from_hold;
    if ((rc = deliver(rd, data, from_data)) < 0)
        return rc;
    memcpy(rd->hold + rd->hold_len, data + from_data, len - from_data);
    rd->hold_len += len - from_data;
    return 0;
}

/* Output of the decrypting chain when reading into a buffer: the compressed payload, in
 * memory only up to what its plaintext length allows. */
static int payload_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reader *rd = ctx;
    if (len > rd->payload_max - rd->payload->len)
        return bad_object(rd, "its payload is longer than its plaintext length allows");
    buf_append(rd->payload, data, len);
    return 0;
}

/* The first ENVELOPE_HEADER_LEN bytes are in: how long the whole header is. */
static int header_length(struct reader *rd)
{
    const uint8_t *h = rd->header;
    if (memcmp(h, ENVELOPE_MAGIC, 4) != 0)
        return bad_object(rd, "not a pgark object (bad magic)");
    rd->header_len = h[4] == ENVELOPE_VERSION_KEYID ? ENVELOPE_HEADER_MAX : ENVELOPE_HEADER_LEN;
    return 0;
}

static int start_chain(struct reader *rd)
{
    const uint8_t *h = rd->header;
    uint32_t key_id = h[4] == ENVELOPE_VERSION_KEYID ? get_be32(h + 32) : 0;
    if (h[4] != ENVELOPE_VERSION && h[4] != ENVELOPE_VERSION_KEYID) {
        char text[64];
        snprintf(text, sizeof(text), "envelope version %u is not supported", h[4]);
        return bad_object(rd, text);
    }
    if (h[7] != 0) {
        char text[64];
        snprintf(text, sizeof(text), "unknown header flags 0x%02x", h[7]);
        return bad_object(rd, text);
    }
    const struct codec *comp = codec_by_id(CODEC_COMPRESSION, h[5]);
    const struct codec *cipher = codec_by_id(CODEC_CIPHER, h[6]);
    if (!comp || !cipher)
        return object_context(rd);
    uint8_t tag[4];
    path_tag(rd->path, tag);
    if (memcmp(h + 28, tag, sizeof(tag)) != 0)
        return bad_object(rd, "written under another name");
    rd->plain_len = get_be64(h + 8);
    if (rd->max && rd->plain_len > rd->max) {
        rd->reported = true;
        return err_set(ERR_INTEGRITY,
                       "object \"%s\" in repository \"%s\" holds %llu bytes, more than %s can "
                       "have (%llu)",
                       rd->name, repo_name(rd->r), (unsigned long long)rd->plain_len, rd->what,
                       (unsigned long long)rd->max);
    }
    if (rd->payload && rd->plain_len > rd->cap) {
        rd->reported = true;
        return err_set(ERR_INTEGRITY,
                       "object \"%s\" in repository \"%s\" holds %llu bytes, more than the %zu "
                       "expected",
                       rd->name, repo_name(rd->r), (unsigned long long)rd->plain_len, rd->cap);
    }
    rd->comp = comp;
    /* zstd makes at most a few bytes per 256 more of what does not compress; stored
     * plainly, the payload is plaintext and trailer exactly */
    if (rd->payload) {
        size_t need = (size_t)rd->plain_len + ENVELOPE_TRAILER_LEN;
        rd->payload_max = comp->decompress_buffer ? need + need / 128 + 1024 : need;
    }
    rd->chain = filter_chain_new(0, rd->payload ? payload_sink : plain_sink, rd);
    if (!codec_is_none(cipher)) {
        if (!rd->r->encrypted)
            return bad_object(rd, "encrypted, but the repository has no key");
        if (repo_unlock(rd->r) < 0)
            return err_code();
        const struct crypto_keyring *kr = repo_keyring(rd->r);
        const uint8_t *key = crypto_keyring_key(kr, key_id);
        if (!key) {
            /* made after this handle read repo.json: read_stored looks again */
            rd->newer_key = key_id > crypto_keyring_current_id(kr);
            char text[160];
            snprintf(text, sizeof(text),
                     "its header names data key %" PRIu32 ", which repo.json does not hold",
                     key_id);
            return bad_object(rd, text);
        }
        size_t aad_len;
        uint8_t *aad = object_aad(h, rd->header_len, rd->path, &aad_len);
        int rc = codec_add_decrypt(rd->chain, cipher, key, h + 16, aad, aad_len);
        free(aad);
        if (rc < 0)
            return rc;
    } else if (rd->r->encrypted) {
        /* An encrypted repository never holds plaintext objects: one that does was put
         * there by someone else, and its content cannot be trusted. */
        return bad_object(rd, "not encrypted in an encrypted repository");
    } else if (memcmp(h + 16, (const uint8_t[CRYPTO_NONCE_LEN]){0}, CRYPTO_NONCE_LEN) != 0) {
        return bad_object(rd, "not encrypted, but its header has a nonce");
    } else if (h[4] == ENVELOPE_VERSION_KEYID) {
        return bad_object(rd, "not encrypted, but its header names a data key");
    }
    return rd->payload ? 0 : codec_add_decompress(rd->chain, comp);
}

static int stored_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reader *rd = ctx;
    int rc;
    while (!rd->chain) {
        size_t want = rd->header_len ? rd->header_len : ENVELOPE_HEADER_LEN;
        size_t take = want - rd->header_have;
        if (take > len)
            take = len;
        memcpy(rd->header + rd->header_have, data, take);
        rd->header_have += take;
        data += take;
        len -= take;
        if (rd->header_have < want)
            return 0;
        if (!rd->header_len) {
            if ((rc = header_length(rd)) < 0)
                return rc;
            continue;
        }
        if ((rc = start_chain(rd)) < 0)
            return rc;
    }
    if (!len)
        return 0;
    rc = filter_chain_write(rd->chain, data, len);
    return rc < 0 ? object_context(rd) : 0;
}

/* A reader of the object at path; returns its full name (rd->name), the caller's to free. */
static char *reader_init(struct reader *rd, struct repo *r, const char *path)
{
    char *full = repo_full_path(r, path);
    memset(rd, 0, sizeof(*rd));
    rd->r = r;
    rd->path = path;
    rd->name = full;
    return full;
}

/* The stored object through rd's chain, header checked and the chain finished. An object
 * under a data key made since the repository was opened (by rotate-key --data-key) is
 * read again once the keys were read again from repo.json (repo_refresh_keys): nothing
 * of it went further than its header. */
static int read_stored(struct reader *rd)
{
    int rc = storage_read(rd->r->storage, rd->name, 0, STORAGE_TO_END, stored_sink, rd);
    if (rc < 0 && rd->newer_key) {
        rd->newer_key = false;
        filter_chain_free(rd->chain);
        rd->chain = NULL;
        rd->header_have = rd->header_len = 0;
        rd->reported = false;
        err_clear();
        if ((rc = repo_refresh_keys(rd->r, false)) < 0)
            return err_context("while reading \"%s\" in repository \"%s\"", rd->name,
                               repo_name(rd->r));
        rc = storage_read(rd->r->storage, rd->name, 0, STORAGE_TO_END, stored_sink, rd);
    }
    if (rc < 0)
        return rc;
    if (!rd->chain)
        return bad_object(rd, "shorter than its header");
    rc = filter_chain_finish(rd->chain);
    return rc < 0 ? object_context(rd) : 0;
}

/* repo_object_read with a limit on the plaintext length (max 0: none). */
static int object_read(struct repo *r, const char *path, uint64_t max, const char *what,
                       storage_sink_fn sink, void *ctx, uint8_t sha_out[SHA256_LEN],
                       uint64_t *len_out)
{
    struct reader rd;
    char *full = reader_init(&rd, r, path);
    uint8_t digest[SHA256_LEN];
    int rc;

    rd.max = max;
    rd.what = what;
    rd.sink = sink;
    rd.ctx = ctx;
    rd.sha = sha256_ctx_new();
    if ((rc = read_stored(&rd)) < 0)
        goto out;
    if (rd.hold_len != ENVELOPE_TRAILER_LEN || rd.delivered != rd.plain_len) {
        rc = bad_object(&rd, "truncated");
        goto out;
    }
    sha256_ctx_final(rd.sha, digest);
    if (memcmp(digest, rd.hold, SHA256_LEN) != 0) {
        rc = bad_object(&rd, "SHA-256 of the content does not match");
        goto out;
    }
    if (sha_out)
        memcpy(sha_out, digest, SHA256_LEN);
    if (len_out)
        *len_out = rd.plain_len;
out:
    filter_chain_free(rd.chain);
    sha256_ctx_free(rd.sha);
    free(full);
    return rc;
}

int repo_object_read(struct repo *r, const char *path, storage_sink_fn sink, void *ctx,
                     uint8_t sha_out[SHA256_LEN], uint64_t *len_out)
{
    return object_read(r, path, 0, NULL, sink, ctx, sha_out, len_out);
}

/* --- reading into a caller's buffer ------------------------------------------------- */

/*
 * What a thread keeps from one read into a buffer to the next, so that a restore worker
 * reading thousands of chunks allocates nothing per chunk: the stored payload (after
 * decryption), and room for a plaintext whose trailer does not fit the caller's buffer.
 * Freed when the thread ends.
 */
struct into_bufs {
    struct buf payload;
    struct buf scratch;
};

static void into_bufs_destroy(void *arg)
{
    struct into_bufs *tb = arg;
    buf_free(&tb->payload);
    buf_free(&tb->scratch);
    free(tb);
}

static struct thread_slot into_slot = THREAD_SLOT_INIT(sizeof(struct into_bufs), into_bufs_destroy);

/* The payload collected in rd (plain_len <= cap) decoded into dst and checked against its
 * trailer. Straight into dst when the trailer fits after the plaintext, else through the
 * thread's scratch buffer. */
static int decode_into(struct reader *rd, struct into_bufs *tb, uint8_t *dst, size_t cap,
                       uint8_t digest[SHA256_LEN])
{
    size_t plain = (size_t)rd->plain_len;
    size_t need = plain + ENVELOPE_TRAILER_LEN;
    uint8_t *out = dst;
    size_t got = 0;
    int rc;
    if (need > cap) {
        buf_reset(&tb->scratch);
        buf_reserve(&tb->scratch, need);
        out = tb->scratch.data;
    }
    if (rd->comp->decompress_buffer) {
        rc = rd->comp->decompress_buffer(tb->payload.data, tb->payload.len, out, need, &got);
        if (rc < 0)
            return object_context(rd);
    } else {
        got = tb->payload.len;
        if (got && got <= need)
            memcpy(out, tb->payload.data, got);
    }
    if (got != need)
        return bad_object(rd, got < need ? "truncated" : "longer than its header says");
    sha256(out, plain, digest);
    if (memcmp(digest, out + plain, SHA256_LEN) != 0)
        return bad_object(rd, "SHA-256 of the content does not match");
    if (out != dst)
        memcpy(dst, out, plain);
    return 0;
}

int repo_object_read_into(struct repo *r, const char *path, uint8_t *dst, size_t cap,
                          size_t *len_out, uint8_t sha_out[SHA256_LEN])
{
    struct reader rd;
    struct into_bufs *tb = thread_slot_get(&into_slot);
    char *full = reader_init(&rd, r, path);
    uint8_t digest[SHA256_LEN];
    int rc;

    rd.payload = &tb->payload;
    rd.cap = cap;
    buf_reset(&tb->payload);
    if ((rc = read_stored(&rd)) < 0)
        goto out;
    if ((rc = decode_into(&rd, tb, dst, cap, digest)) < 0)
        goto out;
    *len_out = (size_t)rd.plain_len;
    if (sha_out)
        memcpy(sha_out, digest, SHA256_LEN);
out:
    filter_chain_free(rd.chain);
    free(full);
    return rc;
}

int repo_get(struct repo *r, const char *path, storage_sink_fn sink, void *ctx)
{
    return repo_object_read(r, path, sink, ctx, NULL, NULL);
}

static int buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

int repo_object_exists(struct repo *r, const char *path)
{
    struct storage_info info;
    char *full = repo_full_path(r, path);
    int rc = storage_info(r->storage, full, &info);
    free(full);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        return 0;
    }
    return rc < 0 ? rc : 1;
}

int repo_get_all(struct repo *r, const char *path, uint8_t **data, size_t *len)
{
    return repo_get_all_max(r, path, 0, NULL, data, len);
}

int repo_get_all_max(struct repo *r, const char *path, uint64_t max, const char *what,
                     uint8_t **data, size_t *len)
{
    struct buf b = BUF_INIT;
    int rc = object_read(r, path, max, what, buf_sink, &b, NULL, NULL);
    if (rc < 0) {
        buf_free(&b);
        return rc;
    }
    *len = b.len;
    *data = (uint8_t *)buf_steal(&b);
    return 0;
}

int repo_object_digest(struct repo *r, const char *path, uint8_t sha[32], uint64_t *len)
{
    return repo_object_read(r, path, NULL, NULL, sha, len);
}
