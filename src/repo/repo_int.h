/* repo_int.h — the repository's internals, shared by the files of src/repo. */
#ifndef PGARK_REPO_INT_H
#define PGARK_REPO_INT_H

#include "pgark/codec.h"
#include "pgark/crypto.h"
#include "pgark/repo.h"

#define ENVELOPE_MAGIC "PGAO"
#define ENVELOPE_VERSION 1
#define ENVELOPE_HEADER_LEN 32
#define ENVELOPE_TRAILER_LEN 32 /* SHA-256 of the plaintext, after the plaintext */

struct repo {
    struct storage *storage; /* borrowed */
    char *cluster;
    char *prefix; /* "<cluster>/" */
    struct repo_identity identity;
    const struct codec *compression;
    int compress_level;
    const struct codec *cipher;
    struct crypto_keyring *keyring; /* NULL when not encrypted */
};

/* Store ix as the time index of its segment (walindex.c). */
int repo_wal_index_store(struct repo *r, const struct repo_wal_index *ix);

/* Read and verify an object (header, authentication, length, the trailer's SHA-256 of
 * the plaintext); plaintext to sink (may be NULL), the verified digest to sha_out and
 * the length to len_out (either may be NULL). */
int repo_object_read(struct repo *r, const char *path, storage_sink_fn sink, void *ctx,
                     uint8_t sha_out[32], uint64_t *len_out);

/* "<cluster>/<path>" (caller frees). */
char *repo_full_path(const struct repo *r, const char *path);

#endif
