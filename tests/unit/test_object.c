/*
 * test_object.c — the object pipeline builder (src/repo/envelope.c) against the
 * hand-built write paths it replaced: for every combination of shape (streamed,
 * precompressed, precompressed through a batch, whole buffer), compression (none, zstd),
 * encryption (none, aes-256-gcm) and data key (the first, version 1 header; a rotated
 * one, version 2 with its id), the same input under the same nonce makes the same
 * stored bytes, and both read back, streamed and into a buffer, to the same plaintext.
 *
 * The old paths are kept below as they were in src/repo/object.c before the builder
 * (5473a50: writer_open, repo_writer_write/commit and repo_put_payload), with only the
 * nonce made a parameter, so that this comparison stays possible while both exist.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/repo/envelope_int.h"

#include "pgark/codec.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PASS "correct horse battery staple"

static const struct repo_identity ident = {7312345678901234567ull, 15, 1024 * 1024};
static const uint8_t NONCE[CRYPTO_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static char base[256], root[300];
static struct storage *st;

static int rm_entry(const char *path, const struct stat *s, int flag, struct FTW *ftw)
{
    (void)s, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(base, sizeof(base), "%s/pgark-object-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base))
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    st = storage_posix_new("local", root);
    return st ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    storage_free(st);
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    err_clear();
    return 0;
}

static void check_ok(int rc, const char *what)
{
    if (rc < 0) {
        char *t = err_format();
        fail_msg("%s: %s", what, t);
    }
}

/* --- the old write paths, as they were (nonce given) ------------------------------- */

struct old_writer {
    struct repo *r;
    char *path;
    struct storage_write *w;
    struct filter_chain *chain;
    struct filter *sha;
    uint8_t digest[SHA256_LEN];
    bool compressed;
    uint64_t expect;
    uint64_t written;
};

static int old_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct old_writer *rw = ctx;
    return storage_write_data(rw->w, data, len);
}

static void old_abort(struct old_writer *rw)
{
    if (rw->w)
        storage_write_abort(rw->w);
    filter_chain_free(rw->chain);
    free(rw->path);
    free(rw);
}

static struct old_writer *old_open(struct repo *r, const char *path, uint64_t plaintext_len,
                                   const uint8_t *digest, bool compressed, struct storage_batch *b,
                                   storage_done_fn done, void *ctx)
{
    struct old_writer *rw = xcalloc(1, sizeof(*rw));
    uint8_t header[ENVELOPE_HEADER_MAX] = {0};
    size_t hlen = ENVELOPE_HEADER_LEN;
    uint8_t nonce[CRYPTO_NONCE_LEN] = {0};
    uint32_t key_id = 0;

    rw->r = r;
    rw->path = repo_full_path(r, path);
    rw->expect = plaintext_len;
    assert_int_equal(repo_unlock(r), 0);
    if (r->encrypted)
        memcpy(nonce, NONCE, sizeof(nonce));
    const struct crypto_keyring *kr = repo_keyring(r);
    if (kr)
        key_id = crypto_keyring_current_id(kr);
    memcpy(header, ENVELOPE_MAGIC, 4);
    header[4] = key_id ? ENVELOPE_VERSION_KEYID : ENVELOPE_VERSION;
    header[5] = r->compression->id;
    header[6] = r->cipher->id;
    header[7] = 0;
    for (int i = 7; i >= 0; i--)
        header[8 + i] = (uint8_t)(plaintext_len >> (8 * (7 - i)));
    memcpy(header + 16, nonce, sizeof(nonce));
    uint8_t pd[SHA256_LEN];
    sha256(path, strlen(path), pd);
    memcpy(header + 28, pd, 4);
    if (key_id) {
        for (int i = 0; i < 4; i++)
            header[32 + i] = (uint8_t)(key_id >> (8 * (3 - i)));
        hlen = ENVELOPE_HEADER_MAX;
    }
    rw->w = b ? storage_batch_write_open(b, rw->path, STORAGE_TO_END, done, ctx)
              : storage_write_open(r->storage, rw->path, STORAGE_TO_END);
    assert_non_null(rw->w);
    check_ok(storage_write_data(rw->w, header, hlen), "header");
    rw->chain = filter_chain_new(0, old_sink, rw);
    rw->compressed = compressed;
    if (digest)
        memcpy(rw->digest, digest, SHA256_LEN);
    else if (!compressed)
        rw->sha = filter_chain_add(rw->chain, crypto_sha256_filter_new());
    if (!compressed)
        check_ok(codec_add_compress(rw->chain, r->compression, r->compress_level), "compress");
    if (kr) {
        size_t plen = strlen(path);
        uint8_t *aad = xmalloc(hlen + plen);
        memcpy(aad, header, hlen);
        memcpy(aad + hlen, path, plen);
        check_ok(codec_add_encrypt(rw->chain, r->cipher, crypto_keyring_data_key(kr), nonce, aad,
                                   hlen + plen),
                 "encrypt");
        free(aad);
    }
    return rw;
}

static int old_write(struct old_writer *rw, const void *data, size_t len)
{
    if (!rw->compressed)
        rw->written += len;
    return filter_chain_write(rw->chain, data, len);
}

static int old_commit(struct old_writer *rw)
{
    int rc;
    if (!rw->compressed) {
        assert_int_equal(rw->written, rw->expect);
        if (rw->sha)
            crypto_sha256_filter_result(rw->sha, rw->digest);
        if ((rc = filter_chain_write(rw->chain, rw->digest, SHA256_LEN)) < 0)
            return rc;
    }
    if ((rc = filter_chain_finish(rw->chain)) < 0)
        return rc;
    struct storage_write *w = rw->w;
    rw->w = NULL;
    rc = storage_write_commit(w);
    old_abort(rw);
    return rc;
}

static int old_put_payload(struct repo *r, const char *path, const void *payload, size_t len)
{
    const uint8_t *digest = (const uint8_t *)payload + len;
    const uint8_t *z = NULL;
    size_t zlen = 0;
    bool compress = r->compression->compress_buffer != NULL;
    if (compress)
        check_ok(r->compression->compress_buffer(r->compress_level, payload, len + SHA256_LEN, &z,
                                                 &zlen),
                 "compress_buffer");
    struct old_writer *rw = old_open(r, path, len, digest, compress, NULL, NULL, NULL);
    int rc = compress ? filter_chain_write(rw->chain, z, zlen) : old_write(rw, payload, len);
    assert_int_equal(rc, 0);
    return old_commit(rw);
}

/* --- the combinations ---------------------------------------------------------------- */

enum shape { S_STREAMED, S_PRECOMPRESSED, S_BATCH, S_WHOLE, S_COUNT };
static const char *const shape_names[] = {"streamed", "precompressed", "batch", "whole"};

static int done_rc = 1;
static int batch_done(void *ctx, int rc)
{
    (void)ctx;
    done_rc = rc;
    return 0;
}

/* What the caller of each shape writes: the plaintext, or (precompressed) its payload
 * made by the repository's codec, as walprep makes it. */
struct input {
    uint8_t *plain; /* plaintext || SHA-256 */
    size_t len;
    uint8_t *payload; /* (plaintext || SHA-256) compressed with r's codec */
    size_t payload_len;
};

static void make_input(struct input *in, struct repo *r, size_t len)
{
    in->len = len;
    in->plain = xmalloc(len + SHA256_LEN);
    for (size_t i = 0; i < len; i++) /* half text-like, half noise */
        in->plain[i] = i < len / 2 ? (uint8_t)("pgark object "[i % 13]) : (uint8_t)(rand() >> 7);
    sha256(in->plain, len, in->plain + len);
    if (r->compression->compress_buffer) {
        const uint8_t *z;
        check_ok(r->compression->compress_buffer(r->compress_level, in->plain, len + SHA256_LEN, &z,
                                                 &in->payload_len),
                 "payload");
        in->payload = xmalloc(in->payload_len);
        memcpy(in->payload, z, in->payload_len);
    } else {
        in->payload_len = len + SHA256_LEN;
        in->payload = xmalloc(in->payload_len);
        memcpy(in->payload, in->plain, in->payload_len);
    }
}

/* Write in pieces of 1, 7, 4096... bytes: a chain is fed any sizes. */
static int feed(int (*write)(void *, const void *, size_t), void *w, const uint8_t *p, size_t len)
{
    static const size_t steps[] = {1, 7, 4096, 65536, 3};
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = steps[i % 5];
        if (n > len - off)
            n = len - off;
        int rc = write(w, p + off, n);
        if (rc < 0)
            return rc;
        off += n;
    }
    return 0;
}

static int old_write_v(void *w, const void *p, size_t n)
{
    return old_write(w, p, n);
}

static int new_write_v(void *w, const void *p, size_t n)
{
    return repo_writer_write(w, p, n);
}

static void write_old(struct repo *r, enum shape s, const char *path, const struct input *in)
{
    struct storage_batch *b = NULL;
    struct old_writer *w;
    switch (s) {
    case S_WHOLE:
        check_ok(old_put_payload(r, path, in->plain, in->len), "old whole");
        return;
    case S_STREAMED:
        w = old_open(r, path, in->len, NULL, false, NULL, NULL, NULL);
        check_ok(feed(old_write_v, w, in->plain, in->len), "old write");
        break;
    case S_BATCH:
        b = storage_batch_new(r->storage, 2);
        /* fall through */
    default:
        w = old_open(r, path, in->len, NULL, true, b, batch_done, NULL);
        check_ok(feed(old_write_v, w, in->payload, in->payload_len), "old write");
        break;
    }
    check_ok(old_commit(w), "old commit");
    if (b) {
        check_ok(storage_batch_wait(b), "old batch");
        assert_int_equal(done_rc, 0);
        storage_batch_free(b);
    }
}

static void write_new(struct repo *r, enum shape s, const char *path, const struct input *in)
{
    struct envelope_opts o = {.shape = s == S_WHOLE ? ENVELOPE_WHOLE : ENVELOPE_STREAMED,
                              .precompressed = s == S_PRECOMPRESSED || s == S_BATCH,
                              .nonce_given = true};
    memcpy(o.nonce, NONCE, sizeof(NONCE));
    struct storage_batch *b = s == S_BATCH ? storage_batch_new(r->storage, 2) : NULL;
    if (s == S_WHOLE) {
        check_ok(envelope_put_whole(r, path, in->plain, in->len, &o, NULL), "new whole");
        return;
    }
    struct repo_writer *w = envelope_writer_open(r, path, in->len, &o, b, batch_done, NULL);
    assert_non_null(w);
    if (o.precompressed)
        check_ok(feed(new_write_v, w, in->payload, in->payload_len), "new write");
    else
        check_ok(feed(new_write_v, w, in->plain, in->len), "new write");
    check_ok(repo_writer_commit(w), "new commit");
    if (b) {
        check_ok(storage_batch_wait(b), "new batch");
        assert_int_equal(done_rc, 0);
        storage_batch_free(b);
    }
}

static uint8_t *slurp(const char *cluster, const char *rel, size_t *len)
{
    char *path = xasprintf("%s/%s/%s", root, cluster, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b = BUF_INIT;
    buf_append_file(&b, f);
    fclose(f);
    free(path);
    *len = b.len;
    return (uint8_t *)buf_steal(&b);
}

static void read_back(struct repo *r, const char *path, const struct input *in)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    check_ok(repo_get_all(r, path, &got, &got_len), "read streamed");
    assert_int_equal(got_len, in->len);
    assert_memory_equal(got, in->plain, in->len);
    free(got);
    uint8_t *into = xmalloc(in->len + 1);
    uint8_t sha[SHA256_LEN];
    check_ok(repo_object_read_into(r, path, into, in->len + 1, &got_len, sha), "read into");
    assert_int_equal(got_len, in->len);
    assert_memory_equal(into, in->plain, in->len);
    assert_memory_equal(sha, in->plain + in->len, SHA256_LEN);
    free(into);
}

static void compare_all(const char *cluster, const char *compression, int level, bool encrypted,
                        bool rotated)
{
    struct repo_options o = {
        .cluster = cluster,
        .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, compression),
                   .level = level,
                   .passphrase = encrypted ? PASS : NULL},
        .kdf_n = 1024};
    struct repo *r = repo_open(st, &o, &ident, true);
    assert_non_null(r);
    if (rotated) {
        uint32_t id = 0;
        check_ok(repo_new_data_key(st, &o, &id), "new data key");
        assert_int_equal(id, 1);
        repo_close(r);
        r = repo_open(st, &o, &ident, false);
        assert_non_null(r);
    }
    static const size_t sizes[] = {0, 1, 31, 33, 100000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        struct input in;
        make_input(&in, r, sizes[k]);
        for (enum shape s = 0; s < S_COUNT; s++) {
            char old_path[64], new_path[64];
            /* one name for both, so that the path tag and the associated data agree */
            snprintf(old_path, sizeof(old_path), "old/%s-%zu", shape_names[s], sizes[k]);
            snprintf(new_path, sizeof(new_path), "new/%s-%zu", shape_names[s], sizes[k]);
            write_old(r, s, old_path, &in);
            char *from = xasprintf("%s/%s/%s", root, cluster, old_path);
            char *kept = xasprintf("%s.old", from);
            assert_int_equal(rename(from, kept), 0);
            write_new(r, s, old_path, &in);
            size_t la, lb;
            char *kept_rel = xasprintf("%s.old", old_path);
            uint8_t *a = slurp(cluster, kept_rel, &la);
            uint8_t *b = slurp(cluster, old_path, &lb);
            if (la != lb || memcmp(a, b, la) != 0)
                fail_msg("%s %s level %d %s key %d, %zu bytes: the builder's object differs",
                         shape_names[s], compression, level, encrypted ? "encrypted" : "plain",
                         rotated, sizes[k]);
            assert_int_equal(a[4], rotated ? 2 : 1);
            read_back(r, old_path, &in);
            (void)new_path;
            free(a);
            free(b);
            free(kept_rel);
            free(from);
            free(kept);
        }
        free(in.plain);
        free(in.payload);
    }
    repo_close(r);
}

static void test_plain(void **state)
{
    (void)state;
    compare_all("c-plain", "none", 0, false, false);
}

static void test_zstd(void **state)
{
    (void)state;
    compare_all("c-zstd", "zstd", 3, false, false);
}

static void test_encrypted(void **state)
{
    (void)state;
    compare_all("c-enc", "none", 0, true, false);
}

static void test_encrypted_zstd(void **state)
{
    (void)state;
    compare_all("c-enc-zstd", "zstd", 1, true, false);
}

static void test_rotated(void **state)
{
    (void)state;
    compare_all("c-rot", "none", 0, true, true);
}

static void test_rotated_zstd(void **state)
{
    (void)state;
    compare_all("c-rot-zstd", "zstd", 3, true, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),     cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_encrypted), cmocka_unit_test(test_encrypted_zstd),
        cmocka_unit_test(test_rotated),   cmocka_unit_test(test_rotated_zstd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
