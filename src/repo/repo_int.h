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

/* "<cluster>/<path>" (caller frees). */
char *repo_full_path(const struct repo *r, const char *path);

#endif
