/* chunker.c — fixed-size chunking and chunk naming (see include/pgark/chunker.h). */
#include "pgark/chunker.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct chunker {
    size_t chunk_size;
    bool keyed;
    uint8_t key[CHUNK_KEY_LEN];
    chunker_fn fn;
    void *arg;
    uint8_t *buf; /* chunk_size bytes once needed */
    size_t have;
    uint64_t index;
    uint64_t offset;
    struct sha256_ctx *file;
};

void chunk_name(const uint8_t *key, const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    uint8_t md[SHA256_LEN];
    if (key)
        hmac_sha256(key, CHUNK_KEY_LEN, data, len, md);
    else
        sha256(data, len, md);
    hex_encode(md, SHA256_LEN, out);
}

struct chunker *chunker_new(size_t chunk_size, const uint8_t *key, chunker_fn fn, void *arg)
{
    if (chunk_size == 0) {
        err_set(ERR_USAGE, "chunk size must be greater than zero");
        return NULL;
    }
    struct chunker *c = xcalloc(1, sizeof(*c));
    c->chunk_size = chunk_size;
    if (key) {
        c->keyed = true;
        memcpy(c->key, key, CHUNK_KEY_LEN);
    }
    c->fn = fn;
    c->arg = arg;
    c->file = sha256_ctx_new();
    return c;
}

void chunker_free(struct chunker *c)
{
    if (!c)
        return;
    secure_zero(c->key, sizeof(c->key));
    if (c->buf)
        secure_free(c->buf, c->chunk_size); /* plaintext of a data file */
    sha256_ctx_free(c->file);
    free(c);
}

static int emit(struct chunker *c, const uint8_t *data, size_t len)
{
    struct chunk ch = {.data = data, .len = len, .index = c->index, .offset = c->offset};
    chunk_name(c->keyed ? c->key : NULL, data, len, ch.name);
    c->index++;
    c->offset += len;
    return c->fn ? c->fn(c->arg, &ch) : 0;
}

int chunker_feed(struct chunker *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    sha256_ctx_update(c->file, data, len);
    while (len > 0) {
        if (c->have == 0 && len >= c->chunk_size) {
            int rc = emit(c, p, c->chunk_size);
            if (rc < 0)
                return rc;
            p += c->chunk_size;
            len -= c->chunk_size;
            continue;
        }
        if (!c->buf)
            c->buf = xmalloc(c->chunk_size);
        size_t n = c->chunk_size - c->have;
        if (n > len)
            n = len;
        memcpy(c->buf + c->have, p, n);
        c->have += n;
        p += n;
        len -= n;
        if (c->have == c->chunk_size) {
            c->have = 0;
            int rc = emit(c, c->buf, c->chunk_size);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

void chunker_reset(struct chunker *c)
{
    uint8_t scratch[SHA256_LEN];
    sha256_ctx_final(c->file, scratch); /* restarts the context */
    c->have = 0;
    c->index = 0;
    c->offset = 0;
}

int chunker_finish(struct chunker *c, uint8_t file_sha256[SHA256_LEN], uint64_t *n_chunks)
{
    int rc = 0;
    if (c->have > 0) {
        size_t n = c->have;
        c->have = 0;
        rc = emit(c, c->buf, n);
        if (rc < 0)
            goto out;
    }
    uint8_t md[SHA256_LEN];
    sha256_ctx_final(c->file, md);
    if (file_sha256)
        memcpy(file_sha256, md, SHA256_LEN);
    if (n_chunks)
        *n_chunks = c->index;
out:
    if (rc < 0)
        chunker_reset(c);
    else {
        c->index = 0;
        c->offset = 0;
    }
    return rc;
}
