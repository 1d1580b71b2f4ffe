/*
 * chunker.h — cuts one file's byte stream into fixed-size chunks, and names chunks.
 *
 * Promise: the bytes of a file, fed in pieces of any size, are handed on as chunks of
 * exactly chunk_size bytes, in order, the last one shorter; a 0-byte file has no chunks.
 * Bytes fed without a reference are copied, once, into buffers of chunk_size bytes that
 * the caller lends. Bytes fed with a reference to the message they lie in
 * (chunker_feed_ref) are not copied: the chunk lists them as pieces, each holding a
 * reference, and its buffer is only room to gather them into (chunk_gather) if the
 * consumer needs them in one piece, as it does for a chunk it stores but not for one
 * it only names. A chunk is either all pieces or all copied: bytes without a reference
 * after pieces gather the pieces first. Nothing is hashed here: the consumer names each
 * chunk (chunk_name, chunk_digest, chunk_sha256) where it works on it, so that hashing
 * runs on as many threads as the consumer has, and a file's digest is made of its
 * chunks' (manifest_chunks_digest), so no byte is hashed twice.
 * Memory: at most one buffer held between calls (the chunk being filled), with the
 * references of its pieces; every buffer taken from the caller goes back either with a
 * chunk or through the put function, and every reference is dropped (chunk_release or
 * a reset). A chunker serves one file at a time and is reused for the next after
 * finish.
 *
 * Names: the lowercase hex SHA-256 of a chunk's plaintext, or, when a 32-byte naming
 * key is given (encrypted repositories), hex HMAC-SHA256 under that key so that names
 * do not reveal content.
 */
#ifndef PGARK_CHUNKER_H
#define PGARK_CHUNKER_H

#include "pgark/hash.h"
#include "pgark/mem.h"

#include <stddef.h>
#include <stdint.h>

#define CHUNK_KEY_LEN 32

/* Bytes of a chunk that stay in the message they were received in. */
struct chunk_piece {
    const uint8_t *data;
    size_t len;
    struct refbuf *ref; /* one reference held for this piece */
};

struct chunk {
    uint8_t *data; /* a buffer from the get function: the callback owns it from now on,
                    * whatever it returns, and the pieces with it. Holds the chunk's
                    * bytes when npieces is 0; else room to gather them. */
    size_t len;
    uint64_t index;             /* 0, 1, ... within the file */
    uint64_t offset;            /* byte offset within the file */
    struct chunk_piece *pieces; /* the bytes, in order, when npieces > 0 */
    size_t npieces;
    void *aux; /* the consumer's own (NULL from the chunker) */
};

/* Copy the pieces into data and drop them: afterwards data holds the bytes. */
void chunk_gather(struct chunk *ch);
/* Drop the pieces' references (data itself stays with the owner). */
void chunk_release(struct chunk *ch);
/* The plaintext SHA-256 of a chunk, pieces or not. */
void chunk_sha256(const struct chunk *ch, uint8_t out[SHA256_LEN]);

/* Receives each chunk; return 0, or a negative code with the error slot set to stop. */
typedef int (*chunker_fn)(void *arg, struct chunk *chunk);

/* Where chunk buffers come from (both called with the chunker's arg). */
struct chunker_buffers {
    /* A buffer of at least chunk_size bytes, or NULL with the error slot set (feeding
     * then fails with that error). May block: that is how a consumer bounds memory. */
    uint8_t *(*get)(void *arg);
    /* Take back a buffer that will not be handed on as a chunk (failure, reset, free). */
    void (*put)(void *arg, uint8_t *buf);
};

struct chunker;

/* bufs is copied. NULL with ERR_USAGE when chunk_size is 0. */
struct chunker *chunker_new(size_t chunk_size, const struct chunker_buffers *bufs, chunker_fn fn,
                            void *arg);
/* Gives back the buffer being filled, if any. */
void chunker_free(struct chunker *c);

/* Next bytes of the current file. 0, the get function's or the callback's negative code;
 * after a failure the current file is abandoned: call chunker_reset before the next one. */
int chunker_feed(struct chunker *c, const void *data, size_t len);
/* The same for bytes inside ref's message: they are kept as pieces with a reference
 * each, not copied (ref NULL: as chunker_feed). */
int chunker_feed_ref(struct chunker *c, const void *data, size_t len, struct refbuf *ref);

/* The file is over: hand on the last (short) chunk, write the number of chunks to
 * n_chunks (may be NULL), and get ready for the next file. 0 or the callback's negative
 * code. */
int chunker_finish(struct chunker *c, uint64_t *n_chunks);

/* Drop any partial state (after a failure) so the next file starts clean. */
void chunker_reset(struct chunker *c);

/* The raw name of data: SHA-256, or HMAC-SHA256 under key (CHUNK_KEY_LEN bytes). */
void chunk_digest(const uint8_t *key, const void *data, size_t len, uint8_t out[SHA256_LEN]);
/* The same in lowercase hex. */
void chunk_name(const uint8_t *key, const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

#endif
