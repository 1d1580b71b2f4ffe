/*
 * envelope.c — the object envelope's header and the one builder of an object's filter
 * chain (envelope_int.h). What the envelope is: object.c's opening comment.
 */
#include "envelope_int.h"

#include "pgark/codec.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint32_t envelope_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t envelope_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void envelope_path_tag(const char *path, uint8_t tag[4])
{
    uint8_t digest[SHA256_LEN];
    sha256(path, strlen(path), digest);
    memcpy(tag, digest, 4);
}

size_t envelope_header_make(uint8_t h[ENVELOPE_HEADER_MAX], const struct envelope_opts *o,
                            uint64_t plain_len, const char *path)
{
    memset(h, 0, ENVELOPE_HEADER_MAX);
    memcpy(h, ENVELOPE_MAGIC, 4);
    h[4] = o->key_id ? ENVELOPE_VERSION_KEYID : ENVELOPE_VERSION;
    h[5] = o->compression->id;
    h[6] = o->cipher->id;
    h[7] = 0;
    put_be64(h + 8, plain_len);
    if (o->key) /* else zero: every read checks that an unencrypted object has no nonce */
        memcpy(h + 16, o->nonce, CRYPTO_NONCE_LEN);
    envelope_path_tag(path, h + 28);
    if (!o->key_id)
        return ENVELOPE_HEADER_LEN;
    for (int i = 0; i < 4; i++)
        h[32 + i] = (uint8_t)(o->key_id >> (8 * (3 - i)));
    return ENVELOPE_HEADER_MAX;
}

bool envelope_header_key_id(const uint8_t *h, size_t len, uint32_t *id)
{
    if (len < ENVELOPE_HEADER_LEN || memcmp(h, ENVELOPE_MAGIC, 4) != 0)
        return false;
    if (h[4] == ENVELOPE_VERSION) {
        *id = 0;
        return true;
    }
    if (h[4] != ENVELOPE_VERSION_KEYID || len < ENVELOPE_HEADER_MAX)
        return false;
    *id = envelope_get_be32(h + ENVELOPE_HEADER_LEN);
    return true;
}

/* The cipher stage, with (header || path) as associated data. */
static int add_cipher(struct filter_chain *chain, enum envelope_dir dir,
                      const struct envelope_opts *o, const uint8_t *header, size_t hlen,
                      const char *path)
{
    size_t plen = strlen(path);
    uint8_t *aad = xmalloc(hlen + plen);
    memcpy(aad, header, hlen);
    memcpy(aad + hlen, path, plen);
    int rc = dir == ENVELOPE_WRITE
                 ? codec_add_encrypt(chain, o->cipher, o->key, o->nonce, aad, hlen + plen)
                 : codec_add_decrypt(chain, o->cipher, o->key, header + 16, aad, hlen + plen);
    free(aad);
    return rc;
}

struct filter_chain *envelope_chain_build(enum envelope_dir dir, const struct envelope_opts *o,
                                          const uint8_t *header, size_t hlen, const char *path,
                                          filter_sink_fn sink, void *ctx,
                                          struct envelope_stages *stages)
{
    struct filter_chain *chain = filter_chain_new(0, sink, ctx);
    struct envelope_stages got = {NULL, NULL};
    bool whole = envelope_compress_whole(o);

    if (o->key && o->reuse) {
        err_set(ERR_RUNTIME, "an encrypting pipeline is built for one object, not reused");
        goto fail;
    }
    if (dir == ENVELOPE_WRITE) {
        if (!o->digest && !o->precompressed && !o->reuse)
            got.sha = filter_chain_add(chain, crypto_sha256_filter_new());
        if (!o->precompressed && !whole && codec_add_compress(chain, o->compression, o->level) < 0)
            goto fail;
        if (o->key && add_cipher(chain, dir, o, header, hlen, path) < 0)
            goto fail;
    } else {
        if (o->key && add_cipher(chain, dir, o, header, hlen, path) < 0)
            goto fail;
        if (o->shape == ENVELOPE_STREAMED) {
            if (codec_add_decompress(chain, o->compression) < 0)
                goto fail;
            /* the plaintext is followed by its SHA-256: held back from the sink, and the
             * plaintext before it hashed on its way to the sink */
            got.trailer = filter_chain_add(chain, filter_holdback_new(ENVELOPE_TRAILER_LEN));
            got.sha = filter_chain_add(chain, crypto_sha256_filter_new());
        }
    }
    if (stages)
        *stages = got;
    return chain;
fail:
    filter_chain_free(chain);
    return NULL;
}
