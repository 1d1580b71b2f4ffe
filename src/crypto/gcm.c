/* gcm.c — framed AES-256-GCM encryptor and decryptor filters (see include/pgark/crypto.h). */
#include "pgark/crypto.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_CT_LEN (CRYPTO_FRAME_LEN + CRYPTO_TAG_LEN)

enum gcm_state {
    GCM_COLLECT, /* filling frame[] with input */
    GCM_EMIT,    /* handing out the current frame */
    GCM_DONE,    /* the final frame went out */
    GCM_FAILED,
};

struct gcm_filter {
    struct filter base;
    EVP_CIPHER_CTX *ctx; /* key schedule set once, re-initialised with each frame's nonce */
    uint8_t nonce[CRYPTO_NONCE_LEN];
    uint8_t *aad;
    size_t aad_len;
    uint64_t counter; /* index of the frame being collected or emitted */
    enum gcm_state state;
    bool final; /* the frame being emitted is the last */
    /*
     * Encryptor: plaintext of the current frame; it is encrypted straight into the
     * caller's output while being emitted, then the tag follows.
     * Decryptor: ciphertext and tag of the current frame, decrypted in place once
     * complete; the verified plaintext is then emitted from here.
     */
    uint8_t *frame;
    size_t have; /* bytes in frame */
    size_t pos;  /* bytes of frame emitted */
    uint8_t tag[CRYPTO_TAG_LEN];
    size_t tag_pos; /* encryptor: tag bytes emitted */
    bool tag_ready; /* encryptor: the frame is encrypted and tag[] holds its tag */
};

uint64_t crypto_gcm_ciphertext_len(uint64_t plain_len)
{
    uint64_t frames = plain_len / CRYPTO_FRAME_LEN + 1;
    if (plain_len && plain_len % CRYPTO_FRAME_LEN == 0)
        frames--;
    return plain_len + frames * CRYPTO_TAG_LEN;
}

/* Reset the context for the current frame: its nonce, then aad || final as AAD. The
 * direction (-1) and key schedule stay as set at construction. */
static int frame_begin(struct gcm_filter *g, bool final)
{
    uint8_t iv[CRYPTO_NONCE_LEN];
    uint8_t flag = final ? 1 : 0;
    int outl = 0;

    memcpy(iv, g->nonce, sizeof(iv));
    for (int i = 0; i < 8; i++)
        iv[CRYPTO_NONCE_LEN - 1 - i] ^= (uint8_t)(g->counter >> (8 * i));
    if (EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, iv, -1) != 1 ||
        (g->aad_len && EVP_CipherUpdate(g->ctx, NULL, &outl, g->aad, (int)g->aad_len) != 1) ||
        EVP_CipherUpdate(g->ctx, NULL, &outl, &flag, 1) != 1)
        return err_set(ERR_RUNTIME, "could not start AES-256-GCM frame %" PRIu64, g->counter);
    g->final = final;
    return 0;
}

static size_t take_input(struct gcm_filter *g, size_t cap, const uint8_t *in, size_t len)
{
    size_t n = cap - g->have < len ? cap - g->have : len;
    memcpy(g->frame + g->have, in, n);
    g->have += n;
    return n;
}

/* --- encryptor ------------------------------------------------------------------- */

/* Encrypt the rest of the frame straight into out, then append the tag. */
static int enc_emit(struct gcm_filter *g, uint8_t *out, size_t cap, size_t *written)
{
    int outl = 0;

    *written = 0;
    if (!g->tag_ready) {
        if (g->pos < g->have) {
            size_t n = g->have - g->pos < cap ? g->have - g->pos : cap;
            if (EVP_EncryptUpdate(g->ctx, out, &outl, g->frame + g->pos, (int)n) != 1 ||
                (size_t)outl != n)
                return err_set(ERR_RUNTIME, "AES-256-GCM encryption failed");
            g->pos += n;
            *written = n;
            if (g->pos < g->have)
                return 0;
        }
        if (EVP_EncryptFinal_ex(g->ctx, g->tag, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, g->tag) != 1)
            return err_set(ERR_RUNTIME, "AES-256-GCM encryption failed");
        g->tag_ready = true;
        g->tag_pos = 0;
    }
    size_t room = cap - *written;
    size_t n = CRYPTO_TAG_LEN - g->tag_pos < room ? CRYPTO_TAG_LEN - g->tag_pos : room;
    memcpy(out + *written, g->tag + g->tag_pos, n);
    g->tag_pos += n;
    *written += n;
    if (g->tag_pos == CRYPTO_TAG_LEN) {
        g->state = g->final ? GCM_DONE : GCM_COLLECT;
        g->counter++;
        g->have = g->pos = g->tag_pos = 0;
        g->tag_ready = false;
    }
    return 0;
}

static int enc_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                       uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct gcm_filter *g = (struct gcm_filter *)f;
    size_t used = 0, produced = 0, n;
    int rc = 0;

    *done = false;
    for (;;) {
        if (g->state == GCM_FAILED) {
            rc = err_set(ERR_RUNTIME, "AES-256-GCM encryptor used after a failure");
            break;
        }
        if (g->state == GCM_DONE) {
            if (used < in_len)
                rc = err_set(ERR_RUNTIME, "data written to the encryptor after its end");
            *done = rc == 0;
            break;
        }
        if (g->state == GCM_EMIT) {
            if (produced == out_cap)
                break;
            if ((rc = enc_emit(g, out + produced, out_cap - produced, &n)) < 0)
                break;
            produced += n;
            continue;
        }
        /* Collecting: a full frame is the last only if no byte follows it. */
        if (g->have == CRYPTO_FRAME_LEN && used < in_len) {
            if ((rc = frame_begin(g, false)) < 0)
                break;
            g->state = GCM_EMIT;
        } else if (used < in_len) {
            used += take_input(g, CRYPTO_FRAME_LEN, in + used, in_len - used);
        } else if (finish) {
            if ((rc = frame_begin(g, true)) < 0)
                break;
            g->state = GCM_EMIT;
        } else {
            break;
        }
    }
    if (rc < 0)
        g->state = GCM_FAILED;
    *in_used = used;
    *out_len = produced;
    return rc;
}

/* --- decryptor ------------------------------------------------------------------- */

/* Decrypt and verify the collected frame in place. */
static int dec_open(struct gcm_filter *g, bool final)
{
    int outl = 0, rc;

    if (g->have < CRYPTO_TAG_LEN)
        return err_set(ERR_INTEGRITY,
                       "authentication failed: encrypted data is truncated (frame %" PRIu64
                       " has %zu bytes, a frame has at least %d)",
                       g->counter, g->have, CRYPTO_TAG_LEN);
    if ((rc = frame_begin(g, final)) < 0)
        return rc;
    size_t ct_len = g->have - CRYPTO_TAG_LEN;
    memcpy(g->tag, g->frame + ct_len, CRYPTO_TAG_LEN);
    if ((ct_len && (EVP_DecryptUpdate(g->ctx, g->frame, &outl, g->frame, (int)ct_len) != 1 ||
                    (size_t)outl != ct_len)) ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, g->tag) != 1 ||
        EVP_DecryptFinal_ex(g->ctx, g->frame + ct_len, &outl) != 1) {
        secure_zero(g->frame, g->have);
        return err_set(ERR_INTEGRITY,
                       "authentication failed for encrypted frame %" PRIu64
                       ": data is corrupt, truncated, reordered or under another key",
                       g->counter);
    }
    g->have = ct_len;
    g->pos = 0;
    g->state = GCM_EMIT;
    return 0;
}

static int dec_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                       uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct gcm_filter *g = (struct gcm_filter *)f;
    size_t used = 0, produced = 0;
    int rc = 0;

    *done = false;
    for (;;) {
        if (g->state == GCM_FAILED) {
            rc = err_set(ERR_INTEGRITY, "authentication failed: decryptor used after a failure");
            break;
        }
        if (g->state == GCM_DONE) {
            if (used < in_len)
                rc = err_set(ERR_INTEGRITY,
                             "authentication failed: data after the final encrypted frame");
            *done = rc == 0;
            break;
        }
        if (g->state == GCM_EMIT) {
            size_t n =
                g->have - g->pos < out_cap - produced ? g->have - g->pos : out_cap - produced;
            memcpy(out + produced, g->frame + g->pos, n);
            g->pos += n;
            produced += n;
            if (g->pos < g->have)
                break; /* out is full */
            g->state = g->final ? GCM_DONE : GCM_COLLECT;
            g->counter++;
            g->have = g->pos = 0;
            continue;
        }
        /* Collecting: a full frame is the last only if no byte follows it. */
        if (g->have == FRAME_CT_LEN && used < in_len) {
            if (produced)
                break; /* hand out verified plaintext before risking a failure */
            if ((rc = dec_open(g, false)) < 0)
                break;
        } else if (used < in_len) {
            used += take_input(g, FRAME_CT_LEN, in + used, in_len - used);
        } else if (finish) {
            if (produced)
                break;
            if ((rc = dec_open(g, true)) < 0)
                break;
        } else {
            break;
        }
    }
    if (rc < 0) {
        g->state = GCM_FAILED;
        produced = 0;
    }
    *in_used = used;
    *out_len = produced;
    return rc;
}

/* --- construction ---------------------------------------------------------------- */

static void gcm_free(struct filter *f)
{
    struct gcm_filter *g = (struct gcm_filter *)f;
    EVP_CIPHER_CTX_free(g->ctx); /* also clears the key schedule */
    secure_free(g->frame, FRAME_CT_LEN);
    free(g->aad);
    secure_zero(g, sizeof(*g));
    free(g);
}

static const struct filter_ops enc_ops = {FILTER_OPS_VERSION, "aes-256-gcm encrypt", enc_process,
                                          gcm_free, NULL};
static const struct filter_ops dec_ops = {FILTER_OPS_VERSION, "aes-256-gcm decrypt", dec_process,
                                          gcm_free, NULL};

static struct filter *gcm_new(const struct filter_ops *ops, bool encrypt, const uint8_t key[32],
                              const uint8_t nonce[12], const void *aad, size_t aad_len)
{
    struct gcm_filter *g = xcalloc(1, sizeof(*g));
    g->base.ops = ops;
    memcpy(g->nonce, nonce, CRYPTO_NONCE_LEN);
    g->aad = xmalloc(aad_len);
    if (aad_len)
        memcpy(g->aad, aad, aad_len);
    g->aad_len = aad_len;
    g->frame = xmalloc(FRAME_CT_LEN);
    g->ctx = EVP_CIPHER_CTX_new();
    if (!g->ctx || aad_len > INT32_MAX ||
        EVP_CipherInit_ex(g->ctx, EVP_aes_256_gcm(), NULL, key, NULL, encrypt ? 1 : 0) != 1)
        abort(); /* only on allocation failure inside OpenSSL or a caller bug */
    return &g->base;
}

struct filter *crypto_gcm_encryptor_new(const uint8_t key[32], const uint8_t nonce[12],
                                        const void *aad, size_t aad_len)
{
    return gcm_new(&enc_ops, true, key, nonce, aad, aad_len);
}

struct filter *crypto_gcm_decryptor_new(const uint8_t key[32], const uint8_t nonce[12],
                                        const void *aad, size_t aad_len)
{
    return gcm_new(&dec_ops, false, key, nonce, aad, aad_len);
}
