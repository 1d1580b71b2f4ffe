/*
 * test_object.c — the object pipeline builder (src/repo/envelope.c) and the format it
 * writes: for every combination of shape (streamed, precompressed, precompressed through
 * a batch, whole buffer), compression (none, zstd level 3), encryption (none,
 * aes-256-gcm) and data key (the first, version 1 header; a rotated one, version 2 with
 * its id), objects written under a fixed nonce and a fixed data key (repo.json below,
 * checked in) must be the bytes recorded here: known answers, taken from the hand-built
 * write paths before the builder replaced them (868c22f's test compared the two byte for
 * byte), so that the envelope cannot drift silently. Each object is read back, streamed
 * and into a buffer, to its plaintext.
 *
 * The rows with compression "none" pin the envelope whole: header, nonce, associated
 * data, AES-GCM framing, trailer. The zstd rows also hold what libzstd makes of the
 * input; with another libzstd, which may compress differently, they are skipped with a
 * note (a probe compression is checked first), and only their headers and reads are.
 * PGARK_TEST_OBJECT_PRINT=1 prints the table as this build makes it.
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
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PASS "correct horse battery staple"

static const struct repo_identity ident = {7312345678901234567ull, 15, 1024 * 1024};
static const uint8_t NONCE[CRYPTO_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

/* Made by repo_open (kdf n 1024) and, for c-rot, repo_new_data_key: the data keys are
 * fixed by these wrapped ones and the passphrase. */
static const char REPO_JSON_ENC[] =
    "{\"format\": 1, \"cluster\": \"c-enc\", \"system_identifier\": \"7312345678901234567\", "
    "\"pg_major\": 15, \"wal_segment_size\": 1048576, \"created\": \"2026-12-07 "
    "06:48:54.097327+00\", \"pgark_version\": \"0.1.0\", \"encryption\": {\"cipher\": "
    "\"aes-256-gcm\", \"kdf\": \"scrypt\", \"n\": 1024, \"r\": 8, \"p\": 1, \"salt\": "
    "\"327045a8e144a25f5b781f87d8f39a0f\", \"wrapped_key\": "
    "\"4d11d1e14696d9ce9b9a488e1c3aa8641e526108d721c736c0e6038fb58c2da7d2ee82da1586cfbe8f51b3ce7fd"
    "b04ebf14d490eb208d741824a620a\"}}\n";
static const char REPO_JSON_ROT[] =
    "{\"format\": 2, \"cluster\": \"c-rot\", \"system_identifier\": \"7312345678901234567\", "
    "\"pg_major\": 15, \"wal_segment_size\": 1048576, \"created\": \"2026-12-07 "
    "06:48:54.228549+00\", \"pgark_version\": \"0.1.0\", \"encryption\": {\"cipher\": "
    "\"aes-256-gcm\", \"kdf\": \"scrypt\", \"n\": 1024, \"r\": 8, \"p\": 1, \"salt\": "
    "\"d23a3f6c16ea3dbaef8a1cf154c4a784\", \"wrapped_key\": "
    "\"98233145f2a10573b0967ae38ba320158d08e7ec5a61ee0199fba43e2b1f202a09015b0f6f070b67cc18a01adb3"
    "d76b1357e484a3fdff45ffad74b44\", \"data_keys\": [{\"id\": 1, \"created\": \"2026-12-07 "
    "06:48:54.264521+00\", \"wrapped_key\": "
    "\"357a28d3e514abd45317832c0f2601038b0a60a81ef30b8ca4cef6bea034fda8398546a3e798ce79064886480a5"
    "93a50776197e1574e2382d3941abe\"}], \"keys_changed\": \"2026-12-07 06:48:54.264521+00\"}}\n";

static char base[256], root[300];
static struct storage *st;
static bool print_table;

static int setup(void **state)
{
    (void)state;
    const char *pr = getenv("PGARK_TEST_OBJECT_PRINT");
    print_table = pr && *pr && strcmp(pr, "0") != 0;
    if (scratch_make(base, sizeof(base), "object") < 0)
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    st = storage_posix_new("local", root);
    return st ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    storage_free(st);
    scratch_remove(base);
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

/* --- the known answers ---------------------------------------------------------------- */

enum shape { S_STREAMED, S_PRECOMPRESSED, S_BATCH, S_WHOLE, S_COUNT };
static const char *const shape_names[] = {"streamed", "precompressed", "batch", "whole"};

static const size_t sizes[] = {0, 1, 31, 33, 100000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* The SHA-256 of (the 100000-byte input || its digest) compressed by compress_buffer at
 * level 3: the libzstd the zstd rows were made with. */
#define ZSTD_PROBE "e20761cab029d6d09cdc1310c7f5ac327c32128b1c8ce25f7fbb879a7b30b629"

struct known {
    const char *config;          /* "<cluster>/<compression>" */
    const char *header;          /* hex: the header of "streamed-33" */
    const char *digest[S_COUNT]; /* hex: SHA-256 of the objects of the sizes, in order */
};

/* clang-format off */
static const struct known known[] = {
    {"c-plain/none",
     "5047414f0100000000000000000000210000000000000000000000006836146e",
     {"e3d411d2043b40dd2aff16383ef42d055482ba406b89693376997f75280181da",
      "59078d2b6a81dba08a99c5814b766c7ae0f0eadc5a0b04290ec75b6762d5fea2",
      "87c1f69105c0a060a1e7d3425f428a5259caf72486eebf5d6212d66ca4da7b1d",
      "a8dc0467fae4bbe0e6a26983bb386d718c438371775e93eee1a2339513258130"}},
    {"c-plain/zstd",
     "5047414f010100000000000000000021000000000000000000000000edbd2e2f",
     {"39bac23fb8b752e04ea03a9d0ce522851e28d6a2b1fd85a1bfbca61af528fe57",
      "4b1449b7fbf9506ce54b6abec6460faff91b8c5d4875dd2b5a5d2d990913a521",
      "c76eae594b5add1ae56c07fe3dff685bd51119e078a5b4daa8be221dde443240",
      "5d058a47d8c51342380e0cd30e7a324e6e9c0b2ebc4f1c033aa5dba8a7669ccd"}},
    {"c-enc/none",
     "5047414f0100010000000000000000210102030405060708090a0b0c6836146e",
     {"ece4c29870aa58318d5ba9c7de7f597ea5815639d0bea4e692a4ecb6c2423a28",
      "6d9e27f7354f31e0d64b1de675870eaf0a63832a593891183e56830c034b9efe",
      "741d5d79ce4cfe29cb7e7940ae43e54347fea57b5ada73d3373d6c035b67905a",
      "053ddddeca250e97124682e7c10284ddccfba606fd4c1426589e30403102340c"}},
    {"c-enc/zstd",
     "5047414f0101010000000000000000210102030405060708090a0b0cedbd2e2f",
     {"08002f02c3d221bb91625e804dd2fc4ef97a8b76f3ddd8681f8574518348c4e3",
      "ddcbe7434be1e3d8ed3b20958981a88670d38b6d08bd2956b0cc11f202f2c4b1",
      "9a4e4f7a2224c88e757ba5d87f6c04d647e66a8e45f1f265841d65be9ad74016",
      "353618d7b98afa75386ca52c956ebe0cd09535544d77ab6dc68c0a8b21cde22d"}},
    {"c-rot/none",
     "5047414f0200010000000000000000210102030405060708090a0b0c6836146e00000001",
     {"3547b7db7d0cabcfe4e04cda611eb0514885d53c794ffe71ea1e940831dbe770",
      "64001b1b7a6ec3b0e39bb39050ccda9ab5dd56ce8d8deae9e16d5d8258a355f2",
      "f1225163ef5fc0aa8195a392d2994ce0c6decc938a127de1dbadeabf41680929",
      "b38c3295e337b67db1e2828eee15b589111dde76e480ef021d6ce7bf289e31c4"}},
    {"c-rot/zstd",
     "5047414f0201010000000000000000210102030405060708090a0b0cedbd2e2f00000001",
     {"755474c2bfb4eb9c173754d4a762c2544cedfbcdc71f90e2c9380f0eef458199",
      "88d6f8bd2c8c92268e4ed9cf1b42da943baec3ae67c7b52c7930472911065ede",
      "583d605eac2ae42f58d6b8836427c2faf6a9b2173b3ed3ad566e5d07ee1382a6",
      "c3acd8482b64537aeb3fe401338d08a406a86a250ee560e3213dcc455a27a393"}},
};
/* clang-format on */
#define NKNOWN (sizeof(known) / sizeof(known[0]))

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
    uint32_t x = 2463534242u ^ (uint32_t)len; /* xorshift: the same bytes everywhere */
    in->len = len;
    in->plain = xmalloc(len + SHA256_LEN);
    for (size_t i = 0; i < len; i++) { /* half text-like, half noise */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        in->plain[i] = i < len / 2 ? (uint8_t)("pgark object "[i % 13]) : (uint8_t)(x >> 11);
    }
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
static int feed(struct repo_writer *w, const uint8_t *p, size_t len)
{
    static const size_t steps[] = {1, 7, 4096, 65536, 3};
    for (size_t off = 0, i = 0; off < len; i++) {
        size_t n = steps[i % 5];
        if (n > len - off)
            n = len - off;
        int rc = repo_writer_write(w, p + off, n);
        if (rc < 0)
            return rc;
        off += n;
    }
    return 0;
}

static void write_shape(struct repo *r, enum shape s, const char *path, const struct input *in)
{
    struct envelope_opts o = {.shape = s == S_WHOLE ? ENVELOPE_WHOLE : ENVELOPE_STREAMED,
                              .precompressed = s == S_PRECOMPRESSED || s == S_BATCH,
                              .nonce_given = true};
    memcpy(o.nonce, NONCE, sizeof(NONCE));
    if (s == S_WHOLE) {
        check_ok(envelope_put_whole(r, path, in->plain, in->len, &o, NULL), "whole");
        return;
    }
    struct storage_batch *b = s == S_BATCH ? storage_batch_new(r->storage, 2) : NULL;
    struct repo_writer *w = envelope_writer_open(r, path, in->len, &o, b, batch_done, NULL);
    assert_non_null(w);
    if (o.precompressed)
        check_ok(feed(w, in->payload, in->payload_len), "write");
    else
        check_ok(feed(w, in->plain, in->len), "write");
    check_ok(repo_writer_commit(w), "commit");
    if (b) {
        check_ok(storage_batch_wait(b), "batch");
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

static void hex_of(const uint8_t *p, size_t len, char *out)
{
    hex_encode(p, len, out);
}

static const struct known *known_for(const char *config)
{
    for (size_t i = 0; i < NKNOWN; i++)
        if (strcmp(known[i].config, config) == 0)
            return &known[i];
    return NULL;
}

/* Whether compress_buffer compresses as the libzstd the table was made with. */
static bool zstd_as_recorded(const struct codec *zstd)
{
    struct input in;
    struct repo fake = {.compression = zstd, .compress_level = 3};
    uint8_t d[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    make_input(&in, &fake, 100000);
    sha256(in.payload, in.payload_len, d);
    hex_of(d, SHA256_LEN, hex);
    if (print_table)
        printf("#define ZSTD_PROBE \"%s\"\n", hex);
    free(in.plain);
    free(in.payload);
    return strcmp(hex, ZSTD_PROBE) == 0;
}

static void check_config(const char *cluster, const char *json, const char *compression,
                         bool rotated)
{
    struct repo_options o = {
        .cluster = cluster,
        .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, compression),
                   .level = 3,
                   .passphrase = json ? PASS : NULL},
        .kdf_n = 1024};
    if (json) {
        char *dir = xasprintf("%s/%s", root, cluster);
        char *file = xasprintf("%s/repo.json", dir);
        mkdir(root, 0700);
        mkdir(dir, 0700);
        FILE *f = fopen(file, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(json, 1, strlen(json), f), strlen(json));
        assert_int_equal(fclose(f), 0);
        free(file);
        free(dir);
    }
    struct repo *r = repo_open(st, &o, &ident, true);
    if (!r)
        check_ok(-1, "open");
    char config[64];
    snprintf(config, sizeof(config), "%s/%s", cluster, compression);
    const struct known *k = known_for(config);
    bool zstd = o.codecs.compression->compress_buffer != NULL;
    bool pinned = !zstd || zstd_as_recorded(o.codecs.compression);
    if (!pinned)
        printf("# %s: this libzstd compresses otherwise than the one the table was made "
               "with: only headers and reads are checked\n",
               config);
    if (print_table)
        printf("    {\"%s\",\n", config);
    char streamed_33[64];
    snprintf(streamed_33, sizeof(streamed_33), "%s/streamed-33", compression);
    for (enum shape s = 0; s < S_COUNT; s++) {
        struct sha256_ctx *all = sha256_ctx_new();
        for (size_t i = 0; i < NSIZES; i++) {
            char path[64], hex[2 * ENVELOPE_HEADER_MAX + 1];
            struct input in;
            size_t len;
            make_input(&in, r, sizes[i]);
            snprintf(path, sizeof(path), "%s/%s-%zu", compression, shape_names[s], sizes[i]);
            write_shape(r, s, path, &in);
            uint8_t *obj = slurp(cluster, path, &len);
            size_t hlen = rotated ? ENVELOPE_HEADER_MAX : ENVELOPE_HEADER_LEN;
            assert_true(len >= hlen);
            assert_int_equal(obj[4], rotated ? 2 : 1);
            sha256_ctx_update(all, obj, len);
            if (sizes[i] == 33) { /* the header depends on no compressor */
                /* recorded for "streamed-33": another name has its own path tag */
                if (s != S_STREAMED)
                    envelope_path_tag(streamed_33, obj + 28);
                hex_of(obj, hlen, hex);
                if (print_table && s == S_STREAMED)
                    printf("     \"%s\",\n", hex);
                else if (!print_table && (!k || strcmp(k->header, hex) != 0))
                    fail_msg("%s %s: the header is %s, not the recorded one", config,
                             shape_names[s], hex);
            }
            read_back(r, path, &in);
            free(obj);
            free(in.plain);
            free(in.payload);
        }
        uint8_t d[SHA256_LEN];
        char hex[2 * SHA256_LEN + 1];
        sha256_ctx_final(all, d);
        sha256_ctx_free(all);
        hex_of(d, SHA256_LEN, hex);
        if (print_table)
            printf("     %s\"%s\"%s\n", s == 0 ? "{" : " ", hex, s == S_COUNT - 1 ? "}}," : ",");
        else if (pinned && (!k || strcmp(k->digest[s], hex) != 0))
            fail_msg("%s %s: the objects are not the recorded bytes (SHA-256 %s)", config,
                     shape_names[s], hex);
    }
    repo_close(r);
}

static void test_plain(void **state)
{
    (void)state;
    check_config("c-plain", NULL, "none", false);
}

static void test_zstd(void **state)
{
    (void)state;
    check_config("c-plain", NULL, "zstd", false);
}

static void test_encrypted(void **state)
{
    (void)state;
    check_config("c-enc", REPO_JSON_ENC, "none", false);
}

static void test_encrypted_zstd(void **state)
{
    (void)state;
    check_config("c-enc", REPO_JSON_ENC, "zstd", false);
}

static void test_rotated(void **state)
{
    (void)state;
    check_config("c-rot", REPO_JSON_ROT, "none", true);
}

static void test_rotated_zstd(void **state)
{
    (void)state;
    check_config("c-rot", REPO_JSON_ROT, "zstd", true);
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
