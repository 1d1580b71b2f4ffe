/* test_crypto.c — SHA-256 observer, framed AES-256-GCM and the keyring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/crypto.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define FRAME CRYPTO_FRAME_LEN
#define TAG CRYPTO_TAG_LEN

/* --- helpers ----------------------------------------------------------------------- */

static int sink_fn(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

static uint8_t *random_data(size_t len, uint64_t seed)
{
    uint8_t *p = xmalloc(len);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static const uint8_t key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t nonce[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                  0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
static const char aad[] = "PGARK1 header: zstd aes-256-gcm len=123";

/* Run data through a one-filter chain; step = input piece size (0: all at once). */
static int run_chain(struct filter *f, size_t buf_size, const uint8_t *data, size_t len,
                     size_t step, struct buf *out)
{
    struct filter_chain *c = filter_chain_new(buf_size, sink_fn, out);
    int rc = 0;
    filter_chain_add(c, f);
    if (!step)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = filter_chain_write(c, data + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = filter_chain_finish(c);
    filter_chain_free(c);
    return rc;
}

static void encrypt(const uint8_t *data, size_t len, struct buf *ct)
{
    struct filter *f = crypto_gcm_encryptor_new(key, nonce, aad, strlen(aad));
    assert_int_equal(run_chain(f, 0, data, len, 0, ct), 0);
    assert_int_equal(ct->len, crypto_gcm_ciphertext_len(len));
}

/* Decrypt ct (default buffers); returns rc, plaintext released in *pt. */
static int decrypt_with(const uint8_t *ct, size_t len, const uint8_t *k, const uint8_t *n,
                        const char *a, size_t buf_size, struct buf *pt)
{
    struct filter *f = crypto_gcm_decryptor_new(k, n, a, strlen(a));
    return run_chain(f, buf_size, ct, len, 0, pt);
}

/* --- GMAC -------------------------------------------------------------------------- */

static void gmac_of(const uint8_t *k, const uint8_t *n, const uint8_t *data, size_t len,
                    uint8_t out[GMAC_TAG_LEN])
{
    struct gmac_ctx *c = gmac_ctx_new(k, n);
    gmac_ctx_update(c, data, len);
    gmac_ctx_final(c, out);
    gmac_ctx_free(c);
}

/* The tag of AES-256-GCM with an empty plaintext and the input as associated data, as
 * Python's cryptography package computes it; the same in pieces of any size; another
 * key, nonce or byte gives another tag; final resets the context. */
static void test_gmac(void **state)
{
    (void)state;
    uint8_t k[GMAC_KEY_LEN], n[GMAC_NONCE_LEN], data[1000], tag[GMAC_TAG_LEN], again[GMAC_TAG_LEN];
    for (size_t i = 0; i < sizeof(k); i++)
        k[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(n); i++)
        n[i] = (uint8_t)(100 + i);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    static const uint8_t want[GMAC_TAG_LEN] = {0xa9, 0x93, 0x15, 0x2b, 0xa1, 0x38, 0x70, 0x02,
                                               0x9b, 0x10, 0xed, 0x6a, 0x3a, 0x04, 0x94, 0x3c};
    static const uint8_t want_empty[GMAC_TAG_LEN] = {0x60, 0x9b, 0xd5, 0x0f, 0x6a, 0xd7,
                                                     0x6d, 0xf6, 0x65, 0xf0, 0x48, 0xba,
                                                     0x8c, 0x5f, 0xd7, 0x06};

    struct gmac_ctx *c = gmac_ctx_new(k, n);
    gmac_ctx_update(c, data, sizeof(data));
    gmac_ctx_final(c, tag);
    assert_memory_equal(tag, want, GMAC_TAG_LEN);
    gmac_ctx_final(c, tag);
    assert_memory_equal(tag, want_empty, GMAC_TAG_LEN);
    for (size_t piece = 1; piece <= 37; piece += 12) {
        for (size_t at = 0; at < sizeof(data); at += piece)
            gmac_ctx_update(c, data + at, sizeof(data) - at < piece ? sizeof(data) - at : piece);
        gmac_ctx_final(c, again);
        assert_memory_equal(again, want, GMAC_TAG_LEN);
    }
    gmac_ctx_free(c);
    gmac_ctx_free(NULL);

    uint8_t *change[] = {&data[999], &k[0], &n[0]};
    for (size_t i = 0; i < 3; i++) {
        *change[i] ^= 1;
        gmac_of(k, n, data, sizeof(data), again);
        assert_memory_not_equal(again, want, GMAC_TAG_LEN);
        *change[i] ^= 1;
    }
    gmac_of(k, n, data, sizeof(data), again);
    assert_memory_equal(again, want, GMAC_TAG_LEN);
}

/* --- SHA-256 observer -------------------------------------------------------------- */

/* sha256_and_hmac gives what sha256 and hmac_sha256 give, for every length around the
 * 64-byte blocks and the padding's edges (55, 56, 63, 64), unaligned data, keys from
 * empty to one block and beyond (the fallback), and a whole 1 MiB chunk; and the RFC 4231
 * case 2 HMAC ("Jefe"). */
static void test_sha256_and_hmac(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    uint8_t *data = xmalloc(big + 1);
    for (size_t i = 0; i < big + 1; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    uint8_t key[80];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(0xa0 + i);
    const size_t key_lens[] = {0, 1, 32, 64, 80};
    uint8_t s1[32], m1[32], s2[32], m2[32];
    for (size_t k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++) {
        for (size_t len = 0; len <= 300; len++) {
            for (size_t at = 0; at < 2; at++) {
                sha256(data + at, len, s1);
                hmac_sha256(key, key_lens[k], data + at, len, m1);
                memset(s2, 0, 32);
                memset(m2, 0, 32);
                sha256_and_hmac(key, key_lens[k], data + at, len, s2, m2);
                if (memcmp(s1, s2, 32) != 0 || memcmp(m1, m2, 32) != 0)
                    fail_msg("key %zu bytes, %zu bytes at offset %zu differ", key_lens[k], len, at);
            }
        }
    }
    sha256(data + 1, big, s1);
    hmac_sha256(key, 32, data + 1, big, m1);
    sha256_and_hmac(key, 32, data + 1, big, s2, m2);
    assert_memory_equal(s1, s2, 32);
    assert_memory_equal(m1, m2, 32);
    free(data);

    static const uint8_t rfc4231_2[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                          0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                          0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                          0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    sha256_and_hmac("Jefe", 4, "what do ya want for nothing?", 28, s2, m2);
    assert_memory_equal(m2, rfc4231_2, 32);
    sha256_and_hmac("k", 1, "abc", 3, s2, m2);
    assert_memory_equal(s2, abc, 32);
}

static void test_sha256_observer(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 4095, 1024 * 1024 + 1};
    for (size_t i = 0; i < 4; i++) {
        for (int one = 0; one < 2; one++) {
            uint8_t *data = random_data(sizes[i], i);
            uint8_t want[32], got[32];
            struct buf out = BUF_INIT;
            struct filter_chain *c = filter_chain_new(one ? 1 : 0, sink_fn, &out);
            struct filter *h = filter_chain_add(c, crypto_sha256_filter_new());
            size_t step = one && sizes[i] < 5000 ? 1 : 65537;

            sha256(data, sizes[i], want);
            for (size_t off = 0; off < sizes[i]; off += step)
                assert_int_equal(filter_chain_write(c, data + off,
                                                    sizes[i] - off < step ? sizes[i] - off : step),
                                 0);
            if (sizes[i] > 1) { /* before the end: digest of the bytes so far */
                uint8_t part[32], so_far[32];
                crypto_sha256_filter_result(h, part);
                sha256(data, sizes[i], so_far);
                assert_memory_equal(part, so_far, 32);
            }
            assert_int_equal(filter_chain_finish(c), 0);
            crypto_sha256_filter_result(h, got);
            assert_memory_equal(got, want, 32);
            assert_int_equal(out.len, sizes[i]);
            if (sizes[i])
                assert_memory_equal(out.data, data, sizes[i]);
            filter_chain_free(c);
            buf_free(&out);
            free(data);
        }
    }
    /* filter_run path (plain process() with copying). */
    uint8_t *out = NULL, got[32], want[32];
    size_t out_len = 0;
    struct filter *h = crypto_sha256_filter_new();
    assert_int_equal(filter_run(h, "abc", 3, &out, &out_len), 0);
    crypto_sha256_filter_result(h, got);
    sha256("abc", 3, want);
    assert_memory_equal(got, want, 32);
    assert_int_equal(out_len, 3);
    assert_memory_equal(out, "abc", 3);
    free(out);
    filter_free(h);
}

/* --- AES-256-GCM format ------------------------------------------------------------ */

/* Encrypt one frame with plain EVP, following the documented format. */
static void reference_frame(const uint8_t *pt, size_t len, uint64_t counter, bool final,
                            uint8_t *out)
{
    uint8_t iv[12];
    uint8_t flag = final;
    int outl = 0;
    memcpy(iv, nonce, 12);
    for (int i = 0; i < 8; i++)
        iv[11 - i] ^= (uint8_t)(counter >> (8 * i));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv, 1), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)strlen(aad)),
                     1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, &flag, 1), 1);
    if (len)
        assert_int_equal(EVP_EncryptUpdate(ctx, out, &outl, pt, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, out + len, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, out + len), 1);
    EVP_CIPHER_CTX_free(ctx);
}

static void test_gcm_matches_documented_format(void **state)
{
    (void)state;
    /* Sizes around frame edges: an exact multiple ends with a full final frame. */
    size_t sizes[] = {0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 3 * FRAME + 5};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint8_t *data = random_data(len, 7);
        size_t nframes = len ? (len + FRAME - 1) / FRAME : 1;
        size_t want_len = len + nframes * TAG;
        uint8_t *want = xmalloc(want_len);
        for (size_t k = 0; k < nframes; k++) {
            size_t off = k * FRAME, n = len - off < FRAME ? len - off : FRAME;
            reference_frame(data + off, n, k, k == nframes - 1, want + k * (FRAME + TAG));
        }
        struct buf ct = BUF_INIT;
        encrypt(data, len, &ct);
        assert_int_equal(ct.len, want_len);
        assert_memory_equal(ct.data, want, want_len);
        buf_free(&ct);
        free(want);
        free(data);
    }
}

static void test_gcm_round_trips(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 4095, FRAME, FRAME + TAG + 1, 1024 * 1024 + 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint8_t *data = random_data(len, i);
        struct buf ref = BUF_INIT;
        encrypt(data, len, &ref);
        /* Same ciphertext and plaintext whatever the buffer and write sizes. */
        size_t bufs[] = {1, 17, 0};
        for (size_t b = 0; b < 3; b++) {
            size_t step = bufs[b] == 1 ? (len > 5000 ? 1021 : 1) : 0;
            struct buf ct = BUF_INIT, pt = BUF_INIT;
            assert_int_equal(run_chain(crypto_gcm_encryptor_new(key, nonce, aad, strlen(aad)),
                                       bufs[b], data, len, step, &ct),
                             0);
            assert_int_equal(ct.len, ref.len);
            assert_memory_equal(ct.data, ref.data, ref.len);
            assert_int_equal(run_chain(crypto_gcm_decryptor_new(key, nonce, aad, strlen(aad)),
                                       bufs[b], ct.data, ct.len, step, &pt),
                             0);
            assert_int_equal(pt.len, len);
            if (len)
                assert_memory_equal(pt.data, data, len);
            buf_free(&ct);
            buf_free(&pt);
        }
        /* filter_run: one call with everything and finish set. */
        uint8_t *out = NULL;
        size_t out_len = 0;
        struct filter *d = crypto_gcm_decryptor_new(key, nonce, aad, strlen(aad));
        assert_int_equal(filter_run(d, ref.data, ref.len, &out, &out_len), 0);
        assert_int_equal(out_len, len);
        if (len)
            assert_memory_equal(out, data, len);
        free(out);
        filter_free(d);
        buf_free(&ref);
        free(data);
    }
}

/* Decrypting a damaged ciphertext: ERR_INTEGRITY, and only frames before bad_frame out. */
static void expect_rejected(const uint8_t *ct, size_t ct_len, const uint8_t *data, size_t bad_frame,
                            size_t buf_size, const char *what, size_t where)
{
    struct buf pt = BUF_INIT;
    int rc = decrypt_with(ct, ct_len, key, nonce, aad, buf_size, &pt);
    if (rc != -ERR_INTEGRITY)
        fail_msg("%s at %zu: rc %d, not ERR_INTEGRITY", what, where, rc);
    if (strncmp(err_message(), "authentication failed", 21) != 0)
        fail_msg("%s at %zu: message \"%s\"", what, where, err_message());
    if (pt.len != bad_frame * FRAME)
        fail_msg("%s at %zu: %zu plaintext bytes released, expected %zu", what, where, pt.len,
                 bad_frame * FRAME);
    if (pt.len)
        assert_memory_equal(pt.data, data, pt.len);
    err_clear();
    buf_free(&pt);
}

static void test_gcm_flipped_bits(void **state)
{
    (void)state;
    /* Small object: every byte of the ciphertext (body and tag). */
    uint8_t *small = random_data(100, 1);
    struct buf ct = BUF_INIT;
    encrypt(small, 100, &ct);
    for (size_t pos = 0; pos < ct.len; pos++) {
        ct.data[pos] ^= (uint8_t)(1u << (pos % 8));
        expect_rejected(ct.data, ct.len, small, 0, pos % 2 ? 1 : 0, "small flip", pos);
        ct.data[pos] ^= (uint8_t)(1u << (pos % 8));
    }
    /* The header (associated data): any changed byte fails. */
    char bad_aad[sizeof(aad)];
    for (size_t pos = 0; pos < strlen(aad); pos++) {
        struct buf pt = BUF_INIT;
        memcpy(bad_aad, aad, sizeof(aad));
        bad_aad[pos] ^= 0x20;
        assert_int_equal(decrypt_with(ct.data, ct.len, key, nonce, bad_aad, 0, &pt),
                         -ERR_INTEGRITY);
        assert_int_equal(pt.len, 0);
        err_clear();
    }
    buf_free(&ct);
    free(small);

    /* Big object (5 frames, the last partial): frame edges, tags and a spread sample. */
    size_t len = 4 * FRAME + 1000;
    uint8_t *big = random_data(len, 2);
    encrypt(big, len, &ct);
    size_t fct = FRAME + TAG;
    size_t positions[64], np = 0;
    for (size_t k = 0; k < 5; k++) {
        positions[np++] = k * fct;                        /* first byte of a frame */
        positions[np++] = k * fct + (k < 4 ? 4097 : 500); /* inside */
        if (k < 4) {
            positions[np++] = k * fct + FRAME;           /* first tag byte */
            positions[np++] = k * fct + FRAME + TAG - 1; /* last tag byte */
        }
    }
    positions[np++] = ct.len - 1;
    positions[np++] = ct.len - TAG - 1;
    for (size_t s = 0; s < 20; s++)
        positions[np++] = (s * 2654435761u) % ct.len;
    for (size_t i = 0; i < np; i++) {
        size_t pos = positions[i];
        ct.data[pos] ^= 0x80;
        expect_rejected(ct.data, ct.len, big, pos / fct, i % 3 == 0 ? 1000 : 0, "big flip", pos);
        ct.data[pos] ^= 0x80;
    }
    buf_free(&ct);
    free(big);
}

static void test_gcm_truncation_reorder_and_extra_bytes(void **state)
{
    (void)state;
    size_t len = 3 * FRAME + 10, fct = FRAME + TAG;
    uint8_t *data = random_data(len, 3);
    struct buf ct = BUF_INIT;
    encrypt(data, len, &ct);

    /* Cut at every interesting place: nothing, inside frames, exactly after frames. */
    size_t cuts[] = {0,       1,       TAG - 1, TAG,           fct - 1,   fct,
                     fct + 1, 2 * fct, 3 * fct, 3 * fct + TAG, ct.len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        size_t bad = cuts[i] / fct;
        /* A cut exactly after frame k: frame k is decrypted as final and fails. */
        if (cuts[i] % fct == 0 && bad > 0)
            bad--;
        expect_rejected(ct.data, cuts[i], data, bad, 0, "cut", cuts[i]);
    }
    struct buf pt = BUF_INIT;
    assert_int_equal(decrypt_with(ct.data, TAG - 1, key, nonce, aad, 0, &pt), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "authentication failed: encrypted data is truncated "
                                       "(frame 0 has 15 bytes, a frame has at least 16)");
    assert_int_equal(decrypt_with(ct.data, 0, key, nonce, aad, 0, &pt), -ERR_INTEGRITY);
    assert_int_equal(decrypt_with(ct.data, fct, key, nonce, aad, 0, &pt), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "authentication failed for encrypted frame 0: data is "
                                       "corrupt, truncated, reordered or under another key");
    assert_int_equal(pt.len, 0);
    err_clear();

    /* Extra bytes after the final frame, and a second copy of the object appended. */
    struct buf more = BUF_INIT;
    buf_append(&more, ct.data, ct.len);
    buf_append(&more, "x", 1);
    expect_rejected(more.data, more.len, data, 3, 0, "extra byte", 1);
    buf_append(&more, ct.data, ct.len);
    expect_rejected(more.data, more.len, data, 3, 0, "appended copy", 2);
    buf_free(&more);

    /* Frames swapped (0 <-> 1) or one dropped. */
    uint8_t *swapped = xmalloc(ct.len);
    memcpy(swapped, ct.data, ct.len);
    memcpy(swapped, ct.data + fct, fct);
    memcpy(swapped + fct, ct.data, fct);
    expect_rejected(swapped, ct.len, data, 0, 0, "swap", 0);
    memcpy(swapped, ct.data, fct);
    memcpy(swapped + fct, ct.data + 2 * fct, ct.len - 2 * fct);
    expect_rejected(swapped, ct.len - fct, data, 1, 0, "drop", 1);
    free(swapped);

    /* Wrong key, wrong nonce. */
    uint8_t k2[32], n2[12];
    memcpy(k2, key, 32);
    k2[31] ^= 1;
    memcpy(n2, nonce, 12);
    n2[0] ^= 1;
    assert_int_equal(decrypt_with(ct.data, ct.len, k2, nonce, aad, 0, &pt), -ERR_INTEGRITY);
    assert_int_equal(decrypt_with(ct.data, ct.len, key, n2, aad, 0, &pt), -ERR_INTEGRITY);
    assert_int_equal(pt.len, 0);
    err_clear();
    buf_free(&ct);
    free(data);
}

static void test_gcm_ciphertext_len(void **state)
{
    (void)state;
    assert_int_equal(crypto_gcm_ciphertext_len(0), TAG);
    assert_int_equal(crypto_gcm_ciphertext_len(1), 1 + TAG);
    assert_int_equal(crypto_gcm_ciphertext_len(FRAME), FRAME + TAG);
    assert_int_equal(crypto_gcm_ciphertext_len(FRAME + 1), FRAME + 1 + 2 * TAG);
    assert_int_equal(crypto_gcm_ciphertext_len(64ull << 20), (64ull << 20) + 1024 * TAG);
}

/* --- keyring ----------------------------------------------------------------------- */

static const struct crypto_kdf_params fast = {1024, 8, 1};

static void test_scrypt_rfc7914_vector(void **state)
{
    (void)state;
    /* RFC 7914 section 12, "password" / "NaCl", N=1024 r=8 p=16: first 32 of 64 bytes. */
    static const uint8_t want[32] = {0xfd, 0xba, 0xbe, 0x1c, 0x9d, 0x34, 0x72, 0x00,
                                     0x78, 0x56, 0xe7, 0x19, 0x0d, 0x01, 0xe9, 0xfe,
                                     0x7c, 0x6a, 0xd7, 0xcb, 0xc8, 0x23, 0x78, 0x30,
                                     0xe7, 0x73, 0x76, 0x63, 0x4b, 0x37, 0x31, 0x62};
    struct crypto_kdf_params p = {1024, 8, 16};
    uint8_t out[32];
    assert_int_equal(crypto_scrypt("password", 8, (const uint8_t *)"NaCl", 4, &p, out, 32), 0);
    assert_memory_equal(out, want, 32);

    p.n = 1000;
    assert_int_equal(crypto_scrypt("password", 8, (const uint8_t *)"NaCl", 4, &p, out, 32),
                     -ERR_CONFIG);
    assert_string_equal(err_message(),
                        "scrypt parameter N=1000 is not a power of two from 2 to 2^30");
    p = (struct crypto_kdf_params){1u << 20, 16, 1};
    assert_int_equal(crypto_scrypt("password", 8, (const uint8_t *)"NaCl", 4, &p, out, 32),
                     -ERR_CONFIG);
    assert_string_equal(err_message(),
                        "scrypt parameters N=1048576 r=16 p=1 cost more than pgark allows (N*r*p "
                        "at most 1048576, at most 256 MiB of memory)");
    err_clear();
}

/* The cap on what a derivation may cost: N*r*p at most 2^20 and 256 MiB of memory, found
 * before anything is derived (repo.json's parameters are anyone's to change). */
static void test_scrypt_cost_cap(void **state)
{
    (void)state;
    static const struct {
        struct crypto_kdf_params p;
        bool ok;
    } cases[] = {
        {{1u << 17, 8, 1}, true},       /* the default */
        {{1u << 16, 8, 2}, true},       /* as costly */
        {{1u << 15, 8, 1}, true},       /* the default before */
        {{1u << 18, 8, 1}, false},      /* N raised */
        {{1u << 17, 8, 2}, false},      /* p raised */
        {{1u << 15, 8, 32}, false},     /* the old default with p=32: 26 s per command */
        {{1u << 17, 16, 1}, false},     /* r raised */
        {{1u << 30, 1, 1}, false},      /* N at its largest */
        {{2, 1u << 19, 1}, false},      /* N*r*p in the cap, 320 MiB of memory */
        {{4, 1u << 18, 1}, true},       /* 224 MiB */
        {{1024, 1, UINT32_MAX}, false}, /* no overflow in N*r*p */
        {{1u << 30, UINT32_MAX, UINT32_MAX}, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = crypto_kdf_check(&cases[i].p, ERR_INTEGRITY);
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu: N=%llu r=%u p=%u: %s", i, (unsigned long long)cases[i].p.n,
                     cases[i].p.r, cases[i].p.p, rc ? err_message() : "accepted");
        if (!cases[i].ok) {
            assert_int_equal(rc, -ERR_INTEGRITY);
            assert_non_null(strstr(err_message(), "cost more than pgark allows"));
        }
        err_clear();
    }

    /* An altered record is refused at once, not after minutes of scrypt. */
    struct crypto_keyring *kr = NULL, *opened = NULL;
    struct crypto_key_record rec;
    assert_int_equal(crypto_keyring_create("pw", 2, &fast, &kr), 0);
    crypto_keyring_export(kr, &rec);
    crypto_keyring_free(kr);
    rec.n = 1u << 15;
    rec.p = 4096; /* hours of scrypt */
    int64_t t0 = time_mono_us();
    assert_int_equal(crypto_keyring_open(&rec, "pw", 2, &opened), -ERR_INTEGRITY);
    assert_true(time_mono_us() - t0 < 1000000);
    assert_null(opened);
    assert_string_equal(err_message(),
                        "scrypt parameters N=32768 r=8 p=4096 cost more than pgark allows "
                        "(N*r*p at most 1048576, at most 256 MiB of memory)");
    err_clear();
}

static void test_keyring_create_open_and_wrong_passphrase(void **state)
{
    (void)state;
    struct crypto_keyring *kr = NULL, *again = NULL;
    struct crypto_key_record rec;
    uint8_t data_key[32];

    assert_int_equal(crypto_keyring_create("correct horse", 13, &fast, &kr), 0);
    memcpy(data_key, crypto_keyring_data_key(kr), 32);
    crypto_keyring_export(kr, &rec);
    assert_string_equal(rec.kdf, "scrypt");
    assert_int_equal(rec.n, 1024);
    assert_int_equal(rec.r, 8);
    assert_int_equal(rec.p, 1);
    assert_int_equal(strlen(rec.salt), 32);
    assert_int_equal(strlen(rec.wrapped_key), 120);

    assert_int_equal(crypto_keyring_open(&rec, "correct horse", 13, &again), 0);
    assert_memory_equal(crypto_keyring_data_key(again), data_key, 32);
    assert_memory_equal(crypto_keyring_name_key(again), crypto_keyring_name_key(kr), 32);
    crypto_keyring_free(again);

    again = (struct crypto_keyring *)&rec; /* must be reset to NULL on failure */
    assert_int_equal(crypto_keyring_open(&rec, "correct horsf", 13, &again), -ERR_AUTH);
    assert_null(again);
    assert_string_equal(err_message(),
                        "wrong passphrase: it does not unlock the repository encryption key");
    assert_non_null(err_hint_text());
    err_clear();

    /* The name key is HKDF-SHA256(data key, no salt, "pgark chunk names"), done by hand. */
    uint8_t zeros[32] = {0}, prk[32], okm[32], block[18];
    hmac_sha256(zeros, 32, data_key, 32, prk);
    memcpy(block, "pgark chunk names", 17);
    block[17] = 1;
    hmac_sha256(prk, 32, block, 18, okm);
    assert_memory_equal(crypto_keyring_name_key(kr), okm, 32);
    assert_memory_not_equal(okm, data_key, 32);

    /* Two keyrings never share a data key or salt. */
    struct crypto_keyring *other = NULL;
    struct crypto_key_record rec2;
    assert_int_equal(crypto_keyring_create("correct horse", 13, &fast, &other), 0);
    crypto_keyring_export(other, &rec2);
    assert_memory_not_equal(crypto_keyring_data_key(other), data_key, 32);
    assert_string_not_equal(rec2.salt, rec.salt);
    crypto_keyring_free(other);
    crypto_keyring_free(kr);
    crypto_keyring_free(NULL);
}

static void test_keyring_rewrap_keeps_data_key(void **state)
{
    (void)state;
    struct crypto_keyring *kr = NULL, *opened = NULL;
    struct crypto_key_record old_rec, new_rec;
    uint8_t data_key[32];

    assert_int_equal(crypto_keyring_create("old secret", 10, &fast, &kr), 0);
    memcpy(data_key, crypto_keyring_data_key(kr), 32);
    crypto_keyring_export(kr, &old_rec);

    struct crypto_kdf_params faster = {512, 8, 1};
    assert_int_equal(crypto_keyring_rewrap(kr, "new secret", 10, &faster), 0);
    assert_memory_equal(crypto_keyring_data_key(kr), data_key, 32);
    crypto_keyring_export(kr, &new_rec);
    assert_string_not_equal(new_rec.salt, old_rec.salt);
    assert_string_not_equal(new_rec.wrapped_key, old_rec.wrapped_key);
    assert_int_equal(new_rec.n, 512);

    assert_int_equal(crypto_keyring_open(&new_rec, "new secret", 10, &opened), 0);
    assert_memory_equal(crypto_keyring_data_key(opened), data_key, 32);
    crypto_keyring_free(opened);
    assert_int_equal(crypto_keyring_open(&new_rec, "old secret", 10, &opened), -ERR_AUTH);
    /* The old record still opens with the old passphrase (nothing else was rewritten). */
    assert_int_equal(crypto_keyring_open(&old_rec, "old secret", 10, &opened), 0);
    assert_memory_equal(crypto_keyring_data_key(opened), data_key, 32);
    crypto_keyring_free(opened);

    /* A failed rewrap leaves the keyring as it was. */
    assert_int_equal(crypto_keyring_rewrap(kr, "", 0, NULL), -ERR_CONFIG);
    assert_string_equal(err_message(), "the encryption passphrase is empty");
    struct crypto_key_record after;
    crypto_keyring_export(kr, &after);
    assert_memory_equal(&after, &new_rec, sizeof(after));
    err_clear();
    crypto_keyring_free(kr);
}

static void test_keyring_bad_records(void **state)
{
    (void)state;
    struct crypto_keyring *kr = NULL, *opened = NULL;
    struct crypto_key_record rec, bad;

    assert_int_equal(crypto_keyring_create("pw", 2, &fast, &kr), 0);
    crypto_keyring_export(kr, &rec);
    crypto_keyring_free(kr);

    /* Parameters are bound to the wrapped key: a changed N or salt does not unwrap. */
    bad = rec;
    bad.n = 2048;
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_AUTH);
    bad = rec;
    bad.salt[0] = bad.salt[0] == '0' ? '1' : '0';
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_AUTH);
    bad = rec;
    bad.wrapped_key[119] = bad.wrapped_key[119] == '0' ? '1' : '0';
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_AUTH);

    bad = rec;
    bad.salt[5] = 'g';
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_INTEGRITY);
    char *text = err_format();
    assert_non_null(strstr(text, "while reading the salt of the encryption key record"));
    free(text);
    bad = rec;
    bad.wrapped_key[100] = '\0';
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_INTEGRITY);
    bad = rec;
    strcpy(bad.kdf, "pbkdf2");
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_INTEGRITY);
    assert_string_equal(err_message(),
                        "unknown key derivation function \"pbkdf2\" (expected \"scrypt\")");
    bad = rec;
    bad.r = 0;
    assert_int_equal(crypto_keyring_open(&bad, "pw", 2, &opened), -ERR_INTEGRITY);
    assert_null(opened);

    assert_int_equal(crypto_keyring_create("", 0, &fast, &kr), -ERR_CONFIG);
    assert_null(kr);
    err_clear();
}

static void test_keyring_defaults(void **state)
{
    (void)state;
    struct crypto_keyring *kr = NULL, *opened = NULL;
    struct crypto_key_record rec;
    assert_int_equal(crypto_keyring_create("pw", 2, NULL, &kr), 0);
    crypto_keyring_export(kr, &rec);
    assert_int_equal(rec.n, 131072); /* OWASP's minimum for scrypt */
    assert_int_equal(rec.r, 8);
    assert_int_equal(rec.p, 1);
    assert_int_equal(crypto_keyring_open(&rec, "pw", 2, &opened), 0);
    assert_memory_equal(crypto_keyring_data_key(opened), crypto_keyring_data_key(kr), 32);
    crypto_keyring_free(opened);
    crypto_keyring_free(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gmac),
        cmocka_unit_test(test_sha256_observer),
        cmocka_unit_test(test_sha256_and_hmac),
        cmocka_unit_test(test_gcm_matches_documented_format),
        cmocka_unit_test(test_gcm_round_trips),
        cmocka_unit_test(test_gcm_flipped_bits),
        cmocka_unit_test(test_gcm_truncation_reorder_and_extra_bytes),
        cmocka_unit_test(test_gcm_ciphertext_len),
        cmocka_unit_test(test_scrypt_rfc7914_vector),
        cmocka_unit_test(test_scrypt_cost_cap),
        cmocka_unit_test(test_keyring_create_open_and_wrong_passphrase),
        cmocka_unit_test(test_keyring_rewrap_keeps_data_key),
        cmocka_unit_test(test_keyring_bad_records),
        cmocka_unit_test(test_keyring_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
