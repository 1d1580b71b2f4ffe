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
    struct chunk_piece *pieces; /* its bytes when npieces > 0 (else they are in buf) */
    size_t npieces, cap;
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

void chunk_release(struct chunk *ch)
{
    for (size_t i = 0; i < ch->npieces; i++)
        refbuf_put(ch->pieces[i].ref);
    free(ch->pieces);
    ch->pieces = NULL;
    ch->npieces = 0;
}

void chunk_gather(struct chunk *ch)
{
    size_t at = 0;
    for (size_t i = 0; i < ch->npieces; i++) {
        memcpy(ch->data + at, ch->pieces[i].data, ch->pieces[i].len);
        at += ch->pieces[i].len;
    }
    chunk_release(ch);
}

void chunk_sha256(const struct chunk *ch, uint8_t out[SHA256_LEN])
{
    if (ch->npieces == 0) {
        sha256(ch->data, ch->len, out);
        return;
    }
    struct sha256_ctx *ctx = sha256_ctx_new();
    for (size_t i = 0; i < ch->npieces; i++)
        sha256_ctx_update(ctx, ch->pieces[i].data, ch->pieces[i].len);
    sha256_ctx_final(ctx, out);
    sha256_ctx_free(ctx);
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

/* The chunk being filled as a struct chunk (its pieces go with it). */
static struct chunk current(struct chunker *c)
{
    struct chunk ch = {.data = c->buf,
                       .len = c->have,
                       .index = c->index,
                       .offset = c->offset,
                       .pieces = c->pieces,
                       .npieces = c->npieces};
    c->buf = NULL;
    c->have = 0;
    c->pieces = NULL;
    c->npieces = c->cap = 0;
    return ch;
}

static void drop_buffer(struct chunker *c)
{
    struct chunk ch = current(c);
    chunk_release(&ch);
    if (ch.data)
        c->bufs.put(c->arg, ch.data);
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
    struct chunk ch = current(c);
    c->index++;
    c->offset += ch.len;
    return c->fn(c->arg, &ch);
}

/* Keep n bytes at p, inside ref's message, as a piece of the chunk being filled. */
static void add_piece(struct chunker *c, const uint8_t *p, size_t n, struct refbuf *ref)
{
    struct chunk_piece *last = c->npieces ? &c->pieces[c->npieces - 1] : NULL;
    if (last && last->ref == ref && last->data + last->len == p) {
        last->len += n; /* the same message, contiguous: one reference does */
        return;
    }
    if (c->npieces == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->pieces = xrealloc(c->pieces, c->cap * sizeof(*c->pieces));
    }
    refbuf_get(ref);
    c->pieces[c->npieces++] = (struct chunk_piece){p, n, ref};
}

/* Bytes without a reference after pieces: the chunk becomes a copied one. */
static void gather_current(struct chunker *c)
{
    struct chunk ch = {.data = c->buf, .pieces = c->pieces, .npieces = c->npieces};
    chunk_gather(&ch);
    c->pieces = NULL;
    c->npieces = c->cap = 0;
}

int chunker_feed(struct chunker *c, const void *data, size_t len)
{
    return chunker_feed_ref(c, data, len, NULL);
}

int chunker_feed_ref(struct chunker *c, const void *data, size_t len, struct refbuf *ref)
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
        if (ref && (c->have == 0 || c->npieces > 0)) {
            add_piece(c, p, n, ref);
        } else {
            if (c->npieces > 0)
                gather_current(c);
            memcpy(c->buf + c->have, p, n);
        }
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
