/* test_codec.c — the codec table and whole chains built from it
 * (sha256 -> zstd -> encrypt -> size, and back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/codec.h"
#include "pgark/crypto.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t key[32] = {0x42, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                16,   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t nonce[12] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xfe};
static const char header[] = "PGARK\x01 zstd aes";

static int collect(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

/* Compares the chain's output with the expected bytes as they arrive. */
struct compare {
    const uint8_t *want;
    size_t len, off;
};

static int compare_fn(void *ctx, const uint8_t *data, size_t len)
{
    struct compare *c = ctx;
    if (len > c->len - c->off || memcmp(data, c->want + c->off, len) != 0)
        return err_set(ERR_INTEGRITY, "output differs at offset %zu", c->off);
    c->off += len;
    return 0;
}

static uint8_t *mixed_data(size_t len, uint64_t seed)
{
    static const char text[] = "2024-05-01 12:00:00 UTC LOG:  checkpoint complete: wrote 42\n";
    uint8_t *p = xmalloc(len);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t run = 64 + (x & 1023);
        bool random = x & 0x400;
        for (size_t k = 0; k < run && i < len; k++, i++) {
            if (random && k % 8 == 0)
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[i] = random ? (uint8_t)(x >> (8 * (k % 8))) : (uint8_t)text[k % 60];
        }
    }
    return p;
}

static int write_all(struct filter_chain *c, const uint8_t *data, size_t len, size_t step)
{
    int rc = 0;
    if (!step)
        step = 1 << 20;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = filter_chain_write(c, data + off, len - off < step ? len - off : step);
    return rc ? rc : filter_chain_finish(c);
}

/* Forward and back through the full chain; buf_size and step as in filter.h / tests. */
static void round_trip(size_t len, size_t buf_size, size_t step)
{
    const struct codec *zstd = codec_by_name(CODEC_COMPRESSION, "zstd");
    const struct codec *aes = codec_by_name(CODEC_CIPHER, "aes-256-gcm");
    uint8_t *data = mixed_data(len, len);
    uint8_t want[32], got_in[32], got_out[32];
    struct buf stored = BUF_INIT;

    sha256(data, len, want);

    struct filter_chain *w = filter_chain_new(buf_size, collect, &stored);
    struct filter *hash_in = filter_chain_add(w, crypto_sha256_filter_new());
    struct filter *plain_size = filter_chain_add(w, filter_size_new());
    assert_int_equal(codec_add_compress(w, zstd, 3), 0);
    assert_int_equal(codec_add_encrypt(w, aes, key, nonce, header, sizeof(header)), 0);
    struct filter *stored_size = filter_chain_add(w, filter_size_new());
    assert_int_equal(write_all(w, data, len, step), 0);
    crypto_sha256_filter_result(hash_in, got_in);
    assert_memory_equal(got_in, want, 32);
    assert_int_equal(filter_size_result(plain_size), len);
    assert_int_equal(filter_size_result(stored_size), stored.len);
    filter_chain_free(w);
    if (len > 100000)
        assert_true(stored.len < len); /* compressed before encryption */

    struct compare cmp = {data, len, 0};
    struct filter_chain *r = filter_chain_new(buf_size, compare_fn, &cmp);
    assert_int_equal(codec_add_decrypt(r, aes, key, nonce, header, sizeof(header)), 0);
    assert_int_equal(codec_add_decompress(r, zstd), 0);
    struct filter *hash_out = filter_chain_add(r, crypto_sha256_filter_new());
    struct filter *out_size = filter_chain_add(r, filter_size_new());
    assert_int_equal(write_all(r, stored.data, stored.len, step), 0);
    crypto_sha256_filter_result(hash_out, got_out);
    assert_memory_equal(got_out, want, 32);
    assert_int_equal(filter_size_result(out_size), len);
    assert_int_equal(cmp.off, len);
    filter_chain_free(r);

    /* The stored object, damaged: one flipped bit, or cut short. */
    size_t cuts[] = {stored.len / 2, stored.len - 1};
    for (int i = 0; i < 3; i++) {
        size_t n = stored.len;
        if (i < 2)
            stored.data[stored.len / 3 + (size_t)i * (stored.len / 3)] ^= 4;
        else
            n = cuts[len % 2];
        cmp.off = 0;
        r = filter_chain_new(buf_size, compare_fn, &cmp);
        codec_add_decrypt(r, aes, key, nonce, header, sizeof(header));
        codec_add_decompress(r, zstd);
        assert_int_equal(write_all(r, stored.data, n, 0), -ERR_INTEGRITY);
        assert_true(strncmp(err_message(), "authentication failed", 21) == 0);
        assert_true(cmp.off < len || len == 0);
        err_clear();
        filter_chain_free(r);
        if (i < 2)
            stored.data[stored.len / 3 + (size_t)i * (stored.len / 3)] ^= 4;
    }
    buf_free(&stored);
    free(data);
}

static void test_round_trips_default_buffers(void **state)
{
    (void)state;
    round_trip(0, 0, 0);
    round_trip(1, 0, 0);
    round_trip(4095, 0, 0);
    round_trip(1024 * 1024 + 1, 0, 0);
}

static void test_round_trips_one_byte_writes(void **state)
{
    (void)state;
    round_trip(0, 0, 1);
    round_trip(1, 0, 1);
    round_trip(4095, 0, 1);
    round_trip(1024 * 1024 + 1, 0, 1);
}

static void test_round_trips_one_byte_buffers(void **state)
{
    (void)state;
    round_trip(0, 1, 1);
    round_trip(1, 1, 1);
    round_trip(4095, 1, 1);
    round_trip(1024 * 1024 + 1, 1, 0);
}

/* gcc says __SANITIZE_ADDRESS__, clang (the sanitizer build's) __has_feature */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void test_round_trip_64_mib(void **state)
{
    (void)state;
    round_trip(64u << 20, 0, 0);
#ifdef UNDER_ASAN
    /* 1-byte buffers cost several library calls per byte, ten times more under the
     * sanitizers: there 4 MiB + 3 (many GCM frames, many zstd blocks) stands in. */
    round_trip((4u << 20) + 3, 1, 0);
#else
    round_trip(64u << 20, 1, 0);
#endif
}

static void test_lookup(void **state)
{
    (void)state;
    const struct codec *c = codec_by_name(CODEC_COMPRESSION, "zstd");
    assert_non_null(c);
    assert_int_equal(c->id, CODEC_ID_COMPRESSION_ZSTD);
    assert_int_equal(c->level_default, 3);
    assert_ptr_equal(codec_by_id(CODEC_COMPRESSION, 1), c);
    assert_false(codec_is_none(c));

    c = codec_by_name(CODEC_CIPHER, "aes-256-gcm");
    assert_int_equal(c->id, CODEC_ID_CIPHER_AES_256_GCM);
    assert_int_equal(c->key_len, 32);
    assert_int_equal(c->nonce_len, 12);
    assert_ptr_equal(codec_by_id(CODEC_CIPHER, 1), c);

    assert_true(codec_is_none(codec_by_name(CODEC_COMPRESSION, "none")));
    assert_true(codec_is_none(codec_by_id(CODEC_CIPHER, 0)));
    assert_string_equal(codec_by_id(CODEC_CIPHER, 0)->name, "none");

    assert_null(codec_by_name(CODEC_COMPRESSION, "lz4"));
    assert_int_equal(err_kind(), ERR_CONFIG);
    assert_string_equal(err_message(),
                        "unknown compression algorithm \"lz4\" (valid: \"none\", \"zstd\")");
    assert_null(codec_by_name(CODEC_CIPHER, "zstd"));
    assert_string_equal(err_message(),
                        "unknown encryption algorithm \"zstd\" (valid: \"none\", \"aes-256-gcm\")");
    assert_null(codec_by_id(CODEC_COMPRESSION, 7));
    assert_int_equal(err_kind(), ERR_INTEGRITY);
    assert_string_equal(err_message(), "unknown compression id 7");
    err_clear();
}

static void test_add_rules_and_none(void **state)
{
    (void)state;
    const struct codec *zstd = codec_by_name(CODEC_COMPRESSION, "zstd");
    const struct codec *none_c = codec_by_name(CODEC_COMPRESSION, "none");
    const struct codec *none_e = codec_by_name(CODEC_CIPHER, "none");
    struct buf out = BUF_INIT;
    struct filter_chain *c = filter_chain_new(0, collect, &out);

    assert_int_equal(codec_add_compress(c, zstd, 20), -ERR_CONFIG);
    assert_string_equal(err_message(), "zstd compression level 20 is out of range (1 to 19)");
    assert_int_equal(codec_add_encrypt(c, zstd, key, nonce, "", 0), -ERR_RUNTIME);
    assert_string_equal(err_message(), "\"zstd\" is not a cipher");
    err_clear();

    /* "none" adds nothing: the bytes arrive unchanged, whatever the level says. */
    assert_int_equal(codec_add_compress(c, none_c, 0), 0);
    assert_int_equal(codec_add_encrypt(c, none_e, NULL, NULL, NULL, 0), 0);
    assert_int_equal(codec_add_decompress(c, none_c), 0);
    assert_int_equal(codec_add_decrypt(c, none_e, NULL, NULL, NULL, 0), 0);
    assert_int_equal(write_all(c, (const uint8_t *)"plain", 5, 0), 0);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "plain", 5);
    filter_chain_free(c);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_add_rules_and_none),
        cmocka_unit_test(test_round_trips_default_buffers),
        cmocka_unit_test(test_round_trips_one_byte_writes),
        cmocka_unit_test(test_round_trips_one_byte_buffers),
        cmocka_unit_test(test_round_trip_64_mib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
