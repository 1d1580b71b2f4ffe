/* sha256_filter.c — the SHA-256 observer filter (see include/pgark/crypto.h). */
#include "pgark/crypto.h"

#include "pgark/mem.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct sha256_filter {
    struct filter base;
    EVP_MD_CTX *md;
    bool final;
    uint8_t digest[32];
};

static void sha256_observe(struct filter *f, const uint8_t *data, size_t len, bool finish)
{
    struct sha256_filter *s = (struct sha256_filter *)f;
    unsigned n = 0;

    if (s->final)
        return;
    if (len && EVP_DigestUpdate(s->md, data, len) != 1)
        abort(); /* cannot fail for SHA-256 short of memory corruption */
    if (finish) {
        if (EVP_DigestFinal_ex(s->md, s->digest, &n) != 1)
            abort();
        s->final = true;
    }
}

static void sha256_free(struct filter *f)
{
    struct sha256_filter *s = (struct sha256_filter *)f;
    EVP_MD_CTX_free(s->md);
    free(s);
}

static const struct filter_observer_ops sha256_ops = {
    .base = {FILTER_OPS_VERSION, "sha256", filter_observer_process, sha256_free, NULL},
    .observe = sha256_observe,
};

struct filter *crypto_sha256_filter_new(void)
{
    struct sha256_filter *s = xcalloc(1, sizeof(*s));
    s->base.ops = &sha256_ops.base;
    s->md = EVP_MD_CTX_new();
    if (!s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
        abort();
    return &s->base;
}

void crypto_sha256_filter_result(const struct filter *f, uint8_t out[32])
{
    const struct sha256_filter *s = (const struct sha256_filter *)f;
    unsigned n = 0;

    if (s->final) {
        memcpy(out, s->digest, sizeof(s->digest));
        return;
    }
    /* Not finished yet: the digest of what was seen so far, leaving the state intact. */
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    if (!copy || EVP_MD_CTX_copy_ex(copy, s->md) != 1 || EVP_DigestFinal_ex(copy, out, &n) != 1)
        abort();
    EVP_MD_CTX_free(copy);
}
