/*
 * codec.h — the one table of compression and cipher algorithms.
 *
 * Promise: every compression kind (none, zstd) and cipher kind (none, aes-256-gcm)
 * has exactly one entry here giving its configuration name, the numeric id written
 * in object headers, and its filter constructors. Code elsewhere looks an algorithm
 * up by name (configuration) or id (object header) and builds filters through these
 * functions. It branches only on whether an entry is "none" (codec_is_none: no filter to
 * add) or has an optional member (a NULL member: the operation does not exist for it),
 * never on which algorithm it is, with four exceptions, named here so that they are not
 * copied: the configuration parses compression names against its own list and maps
 * them to these by name (config.c, config_compression_name); an encrypted repository
 * takes the cipher "aes-256-gcm" by name (repo.c: the only cipher there is); a whole
 * payload read into a buffer is sized with zstd's worst-case growth whenever the entry
 * has decompress_buffer (object_read.c); and the open-frame members below take zstd's own
 * type, zstd being the one compressor that has them. Ids are part of the repository
 * format: they never change or get reused.
 */
#ifndef PGARK_CODEC_H
#define PGARK_CODEC_H

#include "pgark/filter.h"

#include <stddef.h>
#include <stdint.h>

enum codec_type { CODEC_COMPRESSION, CODEC_CIPHER };

/* Ids stored in object headers. */
#define CODEC_ID_COMPRESSION_NONE 0
#define CODEC_ID_COMPRESSION_ZSTD 1
#define CODEC_ID_CIPHER_NONE 0
#define CODEC_ID_CIPHER_AES_256_GCM 1

struct compress_zstd_open;

struct codec {
    enum codec_type type;
    const char *name; /* "none", "zstd", "aes-256-gcm" */
    uint8_t id;
    /* Compression: valid levels; constructors NULL for "none". */
    int level_min, level_max, level_default;
    struct filter *(*compress_new)(int level);
    struct filter *(*decompress_new)(void);
    /* Compression of a whole buffer in one piece (compress.h); NULL for "none". */
    int (*compress_buffer)(int level, const void *in, size_t len, const uint8_t **out,
                           size_t *out_len);
    /* Decompression of a whole payload in one piece into out (cap bytes; compress.h's
     * compress_zstd_decompress_buffer: the caller checks the content's digest); NULL for "none",
     * whose payload is the content itself. */
    int (*decompress_buffer)(const void *in, size_t len, void *out, size_t cap, size_t *out_len);
    /* A frame kept open across growing copies of a file (compress.h's compress_zstd_open_*
     * and compress_zstd_frame_end); NULL for "none", whose payload grows by itself. */
    struct compress_zstd_open *(*open_new)(int level);
    void (*open_free)(struct compress_zstd_open *z);
    int (*open_feed)(struct compress_zstd_open *z, const void *in, size_t len, bool flush,
                     filter_sink_fn sink, void *ctx);
    size_t (*frame_end)(const void *data, size_t len, uint8_t *out);
    /* Cipher: key and nonce sizes (0 for "none"); constructors NULL for "none". */
    size_t key_len, nonce_len;
    struct filter *(*encrypt_new)(const uint8_t *key, const uint8_t *nonce, const void *aad,
                                  size_t aad_len);
    struct filter *(*decrypt_new)(const uint8_t *key, const uint8_t *nonce, const void *aad,
                                  size_t aad_len);
};

/* Look up by configuration name; NULL with ERR_CONFIG ("unknown compression algorithm
 * \"lz4\" ...", listing the valid names) when there is none. */
const struct codec *codec_by_name(enum codec_type type, const char *name);
/* Look up by header id; NULL with ERR_INTEGRITY when the id is unknown. */
const struct codec *codec_by_id(enum codec_type type, unsigned id);
/* True for the "none" entries, which add no filter. */
bool codec_is_none(const struct codec *c);

/*
 * Append c's filter to chain: compressor at level, decompressor, encryptor or
 * decryptor (key, nonce and aad are copied). "none" appends nothing. Returns 0, or
 * ERR_CONFIG for a level out of range, ERR_RUNTIME when c is of the wrong type or
 * the chain refuses the filter.
 */
int codec_add_compress(struct filter_chain *chain, const struct codec *c, int level);
int codec_add_decompress(struct filter_chain *chain, const struct codec *c);
int codec_add_encrypt(struct filter_chain *chain, const struct codec *c, const uint8_t *key,
                      const uint8_t *nonce, const void *aad, size_t aad_len);
int codec_add_decrypt(struct filter_chain *chain, const struct codec *c, const uint8_t *key,
                      const uint8_t *nonce, const void *aad, size_t aad_len);

#endif
