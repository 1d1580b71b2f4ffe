/*
 * object_read.c — reading objects (the envelope: object.c's opening comment): streamed
 * to a sink, or into a caller's buffer, the payload decompressed in one piece. The header
 * is checked here, byte for byte, and what the object holds against its header and
 * trailer; the pipeline behind it (with the trailer's hold-back) is envelope.c's
 * builder's.
 */
#include "envelope_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    struct envelope_stages stages; /* streamed: the trailer and the plaintext's hash */
    uint64_t plain_len;            /* from the header */
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

/* Output of the streamed chain: the plaintext (the trailer held back), never more of it
 * than the header says. */
static int plain_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reader *rd = ctx;
    if (rd->delivered + len > rd->plain_len)
        return bad_object(rd, "longer than its header says");
    rd->delivered += len;
    return rd->sink ? rd->sink(rd->ctx, data, len) : 0;
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

/* The key the header's object was written under into o->key (NULL: not encrypted),
 * after the checks that what is encrypted and what is not agree with the repository. */
static int read_key(struct reader *rd, struct envelope_opts *o)
{
    const uint8_t *h = rd->header;
    if (codec_is_none(o->cipher)) {
        /* An encrypted repository never holds plaintext objects: one that does was put
         * there by someone else, and its content cannot be trusted. */
        if (rd->r->encrypted)
            return bad_object(rd, "not encrypted in an encrypted repository");
        if (memcmp(h + 16, (const uint8_t[CRYPTO_NONCE_LEN]){0}, CRYPTO_NONCE_LEN) != 0)
            return bad_object(rd, "not encrypted, but its header has a nonce");
        if (h[4] == ENVELOPE_VERSION_KEYID)
            return bad_object(rd, "not encrypted, but its header names a data key");
        return 0;
    }
    if (!rd->r->encrypted)
        return bad_object(rd, "encrypted, but the repository has no key");
    if (repo_unlock(rd->r) < 0)
        return err_code();
    const struct crypto_keyring *kr = repo_keyring(rd->r);
    o->key = crypto_keyring_key(kr, o->key_id);
    if (!o->key) {
        /* made after this handle read repo.json: read_stored looks again */
        rd->newer_key = o->key_id > crypto_keyring_current_id(kr);
        char text[160];
        snprintf(text, sizeof(text),
                 "its header names data key %" PRIu32 ", which repo.json does not hold", o->key_id);
        return bad_object(rd, text);
    }
    return 0;
}

/* The whole header is in: check it, then build the pipeline the object was written with,
 * streamed to plain_sink or, reading into a buffer, to payload_sink. */
static int start_chain(struct reader *rd)
{
    const uint8_t *h = rd->header;
    struct envelope_opts o = {.shape = rd->payload ? ENVELOPE_WHOLE : ENVELOPE_STREAMED};
    if (h[4] != ENVELOPE_VERSION && h[4] != ENVELOPE_VERSION_KEYID) {
        char text[64];
        snprintf(text, sizeof(text), "envelope version %u is not supported", h[4]);
        return bad_object(rd, text);
    }
    o.key_id = h[4] == ENVELOPE_VERSION_KEYID ? envelope_get_be32(h + 32) : 0;
    if (h[7] != 0) {
        char text[64];
        snprintf(text, sizeof(text), "unknown header flags 0x%02x", h[7]);
        return bad_object(rd, text);
    }
    o.compression = codec_by_id(CODEC_COMPRESSION, h[5]);
    o.cipher = codec_by_id(CODEC_CIPHER, h[6]);
    if (!o.compression || !o.cipher)
        return object_context(rd);
    uint8_t tag[4];
    envelope_path_tag(rd->path, tag);
    if (memcmp(h + 28, tag, sizeof(tag)) != 0)
        return bad_object(rd, "written under another name");
    rd->plain_len = envelope_get_be64(h + 8);
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
    rd->comp = o.compression;
    /* zstd makes at most a few bytes per 256 more of what does not compress; stored
     * plainly, the payload is plaintext and trailer exactly */
    if (rd->payload) {
        size_t need = (size_t)rd->plain_len + ENVELOPE_TRAILER_LEN;
        rd->payload_max = o.compression->decompress_buffer ? need + need / 128 + 1024 : need;
    }
    int rc = read_key(rd, &o);
    if (rc < 0)
        return rc;
    rd->chain = envelope_chain_build(ENVELOPE_READ, &o, h, rd->header_len, rd->path,
                                     rd->payload ? payload_sink : plain_sink, rd, &rd->stages);
    return rd->chain ? 0 : err_code();
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
    if ((rc = read_stored(&rd)) < 0)
        goto out;
    size_t trailer_len;
    const uint8_t *trailer = filter_holdback_result(rd.stages.trailer, &trailer_len);
    if (trailer_len != ENVELOPE_TRAILER_LEN || rd.delivered != rd.plain_len) {
        rc = bad_object(&rd, "truncated");
        goto out;
    }
    crypto_sha256_filter_result(rd.stages.sha, digest);
    if (memcmp(digest, trailer, SHA256_LEN) != 0) {
        rc = bad_object(&rd, "SHA-256 of the content does not match");
        goto out;
    }
    if (sha_out)
        memcpy(sha_out, digest, SHA256_LEN);
    if (len_out)
        *len_out = rd.plain_len;
out:
    filter_chain_free(rd.chain);
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
    char *full = repo_full_path(r, path);
    int rc = storage_exists(r->storage, full);
    free(full);
    return rc;
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
