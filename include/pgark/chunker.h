/*
 * chunker.h — cuts one file's byte stream into fixed-size, content-named chunks.
 *
 * Promise: the bytes of a file, fed in pieces of any size, are handed on as chunks of
 * exactly chunk_size bytes, in order, the last one shorter; a 0-byte file has no chunks.
 * Each chunk is named by the lowercase hex SHA-256 of its plaintext, or, when a 32-byte
 * naming key is given (encrypted repositories), by hex HMAC-SHA256 under that key so
 * that names do not reveal content. The SHA-256 of the whole file comes out at the end.
 * Memory: at most one chunk buffer (chunk_size bytes), allocated on first need and reused
 * for every file; a piece that covers a whole chunk on its own is passed on without a
 * copy. A chunker serves one file at a time and is reused for the next after finish.
 */
#ifndef PGARK_CHUNKER_H
#define PGARK_CHUNKER_H

#include "pgark/hash.h"

#include <stddef.h>
#include <stdint.h>

#define CHUNK_KEY_LEN 32

struct chunk {
    const uint8_t *data; /* valid only during the callback: copy it to keep it */
    size_t len;
    uint64_t index;  /* 0, 1, ... within the file */
    uint64_t offset; /* byte offset within the file */
    char name[SHA256_HEX_LEN + 1];
};

/* Receives each chunk; return 0, or a negative code with the error slot set to stop. */
typedef int (*chunker_fn)(void *arg, const struct chunk *chunk);

struct chunker;

/* key is NULL (plain SHA-256 names) or CHUNK_KEY_LEN bytes (copied; wiped on free).
 * NULL with ERR_USAGE when chunk_size is 0. */
struct chunker *chunker_new(size_t chunk_size, const uint8_t *key, chunker_fn fn, void *arg);
void chunker_free(struct chunker *c);

/* Next bytes of the current file. 0 or the callback's negative code; after a failure
 * the current file is abandoned: call chunker_reset before the next one. */
int chunker_feed(struct chunker *c, const void *data, size_t len);

/* The file is over: hand on the last (short) chunk, write the file's SHA-256 to
 * file_sha256 (may be NULL) and the number of chunks to n_chunks (may be NULL), and get
 * ready for the next file. 0 or the callback's negative code. */
int chunker_finish(struct chunker *c, uint8_t file_sha256[SHA256_LEN], uint64_t *n_chunks);

/* Drop any partial state (after a failure) so the next file starts clean. */
void chunker_reset(struct chunker *c);

/* The name chunker gives data: hex SHA-256, or hex HMAC-SHA256 under key (32 bytes). */
void chunk_name(const uint8_t *key, const void *data, size_t len, char out[SHA256_HEX_LEN + 1]);

#endif
