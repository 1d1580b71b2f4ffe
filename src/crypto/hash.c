/* hash.c — digests, HMAC, RNG and encodings over OpenSSL (see include/pgark/hash.h). */
#include "pgark/hash.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

struct sha256_ctx {
    EVP_MD_CTX *md;
};

static void digest(const EVP_MD *type, const void *data, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, type, NULL) != 1)
        abort(); /* only fails on allocation failure inside OpenSSL */
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
    digest(EVP_sha256(), data, len, out);
}

void md5(const void *data, size_t len, uint8_t out[MD5_LEN])
{
    digest(EVP_md5(), data, len, out);
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[SHA256_LEN])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n))
        abort();
}

/* The incremental contexts are one EVP context each; a md5_ctx is a sha256_ctx of
 * another type. */
static struct sha256_ctx *md_new(const EVP_MD *type)
{
    struct sha256_ctx *c = xmalloc(sizeof(*c));
    c->md = EVP_MD_CTX_new();
    if (!c->md || EVP_DigestInit_ex(c->md, type, NULL) != 1)
        abort();
    return c;
}

static void md_update(struct sha256_ctx *c, const void *data, size_t len)
{
    if (len && EVP_DigestUpdate(c->md, data, len) != 1)
        abort();
}

static void md_final(struct sha256_ctx *c, uint8_t *out)
{
    unsigned int n = 0;
    const EVP_MD *type = EVP_MD_CTX_get0_md(c->md);
    if (EVP_DigestFinal_ex(c->md, out, &n) != 1 || EVP_DigestInit_ex(c->md, type, NULL) != 1)
        abort();
}

static void md_free(struct sha256_ctx *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

struct sha256_ctx *sha256_ctx_new(void)
{
    return md_new(EVP_sha256());
}

void sha256_ctx_update(struct sha256_ctx *c, const void *data, size_t len)
{
    md_update(c, data, len);
}

void sha256_ctx_final(struct sha256_ctx *c, uint8_t out[SHA256_LEN])
{
    md_final(c, out);
}

void sha256_ctx_peek(const struct sha256_ctx *c, uint8_t out[SHA256_LEN])
{
    struct sha256_ctx copy;
    unsigned int n = 0;
    copy.md = EVP_MD_CTX_new();
    if (!copy.md || EVP_MD_CTX_copy_ex(copy.md, c->md) != 1 ||
        EVP_DigestFinal_ex(copy.md, out, &n) != 1)
        abort(); /* only fails on allocation failure inside OpenSSL */
    EVP_MD_CTX_free(copy.md);
}

void sha256_ctx_free(struct sha256_ctx *c)
{
    md_free(c);
}

struct md5_ctx *md5_ctx_new(void)
{
    return (struct md5_ctx *)md_new(EVP_md5());
}

void md5_ctx_update(struct md5_ctx *c, const void *data, size_t len)
{
    md_update((struct sha256_ctx *)c, data, len);
}

void md5_ctx_final(struct md5_ctx *c, uint8_t out[MD5_LEN])
{
    md_final((struct sha256_ctx *)c, out);
}

void md5_ctx_free(struct md5_ctx *c)
{
    md_free((struct sha256_ctx *)c);
}

struct gmac_ctx {
    EVP_CIPHER_CTX *ctx;
    uint8_t nonce[GMAC_NONCE_LEN];
};

static void gmac_start(struct gmac_ctx *c)
{
    if (EVP_CipherInit_ex(c->ctx, NULL, NULL, NULL, c->nonce, 1) != 1)
        abort();
}

struct gmac_ctx *gmac_ctx_new(const uint8_t key[GMAC_KEY_LEN], const uint8_t nonce[GMAC_NONCE_LEN])
{
    struct gmac_ctx *c = xmalloc(sizeof(*c));
    memcpy(c->nonce, nonce, GMAC_NONCE_LEN);
    c->ctx = EVP_CIPHER_CTX_new();
    if (!c->ctx || EVP_CipherInit_ex(c->ctx, EVP_aes_256_gcm(), NULL, key, NULL, 1) != 1)
        abort();
    gmac_start(c);
    return c;
}

void gmac_ctx_update(struct gmac_ctx *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) { /* OpenSSL takes an int */
        int n = len > (1u << 30) ? 1 << 30 : (int)len;
        int outl = 0;
        if (EVP_EncryptUpdate(c->ctx, NULL, &outl, p, n) != 1)
            abort();
        p += n;
        len -= (size_t)n;
    }
}

void gmac_ctx_final(struct gmac_ctx *c, uint8_t out[GMAC_TAG_LEN])
{
    uint8_t none[GMAC_TAG_LEN]; /* GCM's final writes no bytes */
    int outl = 0;
    if (EVP_EncryptFinal_ex(c->ctx, none, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_GET_TAG, GMAC_TAG_LEN, out) != 1)
        abort();
    gmac_start(c);
}

void gmac_ctx_free(struct gmac_ctx *c)
{
    if (!c)
        return;
    EVP_CIPHER_CTX_free(c->ctx); /* clears the key schedule */
    free(c);
}

int random_bytes(void *buf, size_t len)
{
    if (len && RAND_bytes(buf, (int)len) != 1)
        return err_set(ERR_RUNTIME, "could not obtain %zu random bytes from OpenSSL", len);
    return 0;
}

char *hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xF];
    }
    out[2 * len] = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hex_decode(const char *hex, uint8_t *out, size_t out_len)
{
    if (strlen(hex) != 2 * out_len)
        return err_set(ERR_INTEGRITY, "expected %zu hex digits, got %zu", 2 * out_len, strlen(hex));
    for (size_t i = 0; i < out_len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return err_set(ERR_INTEGRITY, "invalid hex digit in \"%.*s\"", (int)(2 * out_len), hex);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

char *base64_encode(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}
