/* chunker.c — fixed-size chunking and chunk naming (see include/pgark/chunker.h). */
#include "pgark/chunker.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct chunker {
    size_t chunk_size;
    struct chunker_buffers bufs;
    chunker_fn fn;
    void *arg;
    uint8_t *buf; /* the chunk being filled, borrowed from bufs; NULL between chunks */
    size_t have;
    uint64_t index;
    uint64_t offset;
};

void chunk_digest(const uint8_t *key, const void *data, size_t len, uint8_t out[SHA256_LEN])
{
    if (key)
        hmac_sha256(key, CHUNK_KEY_LEN, data, len, out);
    else
        sha256(data, len, out);
}

void chunk_name(const uint8_t *key, const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    uint8_t md[SHA256_LEN];
    chunk_digest(key, data, len, md);
    hex_encode(md, SHA256_LEN, out);
}

struct chunker *chunker_new(size_t chunk_size, const struct chunker_buffers *bufs, chunker_fn fn,
                            void *arg)
{
    if (chunk_size == 0) {
        err_set(ERR_USAGE, "chunk size must be greater than zero");
        return NULL;
    }
    struct chunker *c = xcalloc(1, sizeof(*c));
    c->chunk_size = chunk_size;
    c->bufs = *bufs;
    c->fn = fn;
    c->arg = arg;
    return c;
}

static void drop_buffer(struct chunker *c)
{
    if (c->buf)
        c->bufs.put(c->arg, c->buf);
    c->buf = NULL;
    c->have = 0;
}

void chunker_free(struct chunker *c)
{
    if (!c)
        return;
    drop_buffer(c);
    free(c);
}

/* Hand on the buffer being filled (its ownership goes with it). */
static int emit(struct chunker *c)
{
    struct chunk ch = {.data = c->buf, .len = c->have, .index = c->index, .offset = c->offset};
    c->buf = NULL;
    c->have = 0;
    c->index++;
    c->offset += ch.len;
    return c->fn(c->arg, &ch);
}

int chunker_feed(struct chunker *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    int rc = 0;

    while (len > 0) {
        if (!c->buf && !(c->buf = c->bufs.get(c->arg))) {
            rc = err_code();
            break;
        }
        size_t n = c->chunk_size - c->have;
        if (n > len)
            n = len;
        memcpy(c->buf + c->have, p, n);
        c->have += n;
        p += n;
        len -= n;
        if (c->have == c->chunk_size && (rc = emit(c)) < 0)
            break;
    }
    return rc;
}

void chunker_reset(struct chunker *c)
{
    drop_buffer(c);
    c->index = 0;
    c->offset = 0;
}

int chunker_finish(struct chunker *c, uint64_t *n_chunks)
{
    int rc = 0;
    if (c->have > 0 && (rc = emit(c)) < 0)
        goto out;
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
