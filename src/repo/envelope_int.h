/*
 * envelope_int.h — the one builder of an object's pipeline (envelope.c), shared by the
 * writers (object.c) and the readers (object_read.c) of src/repo.
 *
 * Every way an object is written or read is this builder with other options:
 *
 *   write, streamed          plaintext -> sha256 -> zstd -> aes-gcm      (repo_writer_open)
 *   write, precompressed     payload -> aes-gcm                 (repo_writer_open_payload*)
 *   write, whole buffer      (plaintext || digest) compressed in one piece -> aes-gcm
 *                            (repo_put_payload)
 *   read, streamed           aes-gcm -> zstd -> trailer held back -> sha256 (repo_object_read)
 *   read, whole buffer       aes-gcm -> payload in memory, decompressed in one piece
 *                            (repo_object_read_into)
 *   write, kept across objects  plaintext -> zstd, reset for each object, the caller
 *                            hashing and appending the digest (the WAL preparer, walprep.c)
 *
 * and the header (version 1, or 2 with the data key's id) is made and checked in one
 * place. A stage that does not apply (no key, compression "none") is not built at all,
 * so the fast paths run no filter they do not need.
 */
#ifndef PGARK_ENVELOPE_INT_H
#define PGARK_ENVELOPE_INT_H

#include "repo_int.h"

#include "pgark/filter.h"
#include "pgark/hash.h"

#include <stdbool.h>
#include <stdint.h>

enum envelope_shape {
    ENVELOPE_STREAMED, /* the payload passes through streaming filters, in any pieces */
    ENVELOPE_WHOLE,    /* the payload is (de)compressed in one piece, in memory, when the
                        * compression has a whole-buffer function (codec.h) */
};

enum envelope_dir { ENVELOPE_WRITE, ENVELOPE_READ };

/* The options an object's pipeline is built from. */
struct envelope_opts {
    enum envelope_shape shape;
    bool precompressed;    /* write: the bytes given are the payload, compressed already */
    const uint8_t *digest; /* write: the plaintext's SHA-256, the caller's (NULL: hashed) */
    const struct codec *compression;
    int level;
    const struct codec *cipher;
    const uint8_t *key; /* NULL: not encrypted */
    uint32_t key_id;    /* 0: a version 1 header; else version 2 naming it */
    uint8_t nonce[CRYPTO_NONCE_LEN];
    bool nonce_given; /* write: nonce is the caller's (tests: the same bytes twice); else
                       * a fresh one is drawn for each encrypted object */
    bool reuse;       /* write: the chain is kept across objects, filter_chain_reset before
                       * each: nothing in it may be the object's own, so no key (its nonce
                       * and associated data are) and no hashing stage (the caller hashes
                       * the plaintext and appends the digest, as with digest given) */
};

/* The stages of a built chain its user asks for results. */
struct envelope_stages {
    struct filter *sha;     /* write: the hashing of the plaintext (NULL when not hashed);
                             * read streamed: the hash of the plaintext delivered */
    struct filter *trailer; /* read streamed: the hold-back of the last ENVELOPE_TRAILER_LEN
                             * bytes (filter_holdback_result): the trailer, once finished */
};

/* Whether the payload is compressed in one piece (whole shape, a whole-buffer function). */
static inline bool envelope_compress_whole(const struct envelope_opts *o)
{
    return o->shape == ENVELOPE_WHOLE && o->compression->compress_buffer;
}

/* The header of an object of plain_len bytes at path (below "<cluster>/") into h; its
 * length (ENVELOPE_HEADER_LEN, or ENVELOPE_HEADER_MAX with a key id). */
size_t envelope_header_make(uint8_t h[ENVELOPE_HEADER_MAX], const struct envelope_opts *o,
                            uint64_t plain_len, const char *path);

/* Whether h (len bytes read from an object's start) is an envelope header of a version
 * this pgark reads, and then the id of the data key it names (0 for version 1). Only
 * the magic, the version and the length are looked at: the rest is checked, and the id
 * authenticated, when the object is read. */
bool envelope_header_key_id(const uint8_t *h, size_t len, uint32_t *id);

/* The path tag of path (the first 4 bytes of its SHA-256). */
void envelope_path_tag(const char *path, uint8_t tag[4]);

/*
 * The chain of an object's pipeline, into sink(ctx): for writing, [sha256 unless the
 * digest is given, the payload precompressed or the chain reused] -> [compressor unless
 * precompressed or compressed whole] -> [encryptor when o->key]; for reading, [decryptor
 * when o->key] -> [decompressor, trailer hold-back, sha256 when streamed: the sink gets
 * the plaintext alone]. header (hlen bytes) and path make the associated data (both
 * unused without a key). *stages (may be NULL) gets the stages whose results the caller
 * reads. NULL with the error set when a filter cannot be made (nothing to free then).
 */
struct filter_chain *envelope_chain_build(enum envelope_dir dir, const struct envelope_opts *o,
                                          const uint8_t *header, size_t hlen, const char *path,
                                          filter_sink_fn sink, void *ctx,
                                          struct envelope_stages *stages);

/*
 * The writers every repo_writer_open* and repo_put_payload is (object.c). o gives the
 * shape and, when set, precompressed, digest and nonce (nonce_given); the codecs, key
 * and key id are r's as of now, filled in here. envelope_writer_open: b NULL for an
 * ordinary write, else the object is uploaded among b's transfers (as
 * repo_writer_open_payload_batch). envelope_put_whole: the payload laid out as
 * plaintext (len bytes) || SHA-256 (as repo_put_payload), written and committed.
 */
struct repo_writer *envelope_writer_open(struct repo *r, const char *path, uint64_t plaintext_len,
                                         struct envelope_opts *o, struct storage_batch *b,
                                         storage_done_fn done, void *ctx);
int envelope_put_whole(struct repo *r, const char *path, const void *payload, size_t len,
                       struct envelope_opts *o, uint64_t *stored);

uint32_t envelope_get_be32(const uint8_t *p);
uint64_t envelope_get_be64(const uint8_t *p);

#endif
