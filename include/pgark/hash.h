/*
 * hash.h — SHA-256, HMAC-SHA256, GMAC, MD5 (S3 Content-MD5 only), random bytes and hex.
 *
 * Promise: thin, allocation-free wrappers over OpenSSL that cannot fail except
 * where they return int (the RNG). Digests are raw bytes; hex is lowercase.
 */
#ifndef PGARK_HASH_H
#define PGARK_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_HEX_LEN 64
#define MD5_LEN 16

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[SHA256_LEN]);
void md5(const void *data, size_t len, uint8_t out[MD5_LEN]);
/* sha256 and hmac_sha256 of the same data at once (key at most 64 bytes for the fast
 * path): with the CPU's SHA extensions in little more than the time of one of them,
 * since after the HMAC's first block both run the same message schedule
 * (src/crypto/sha256x2.c); else the one, then the other. */
void sha256_and_hmac(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t sha[SHA256_LEN], uint8_t mac[SHA256_LEN]);

/* Incremental SHA-256. sha256_ctx_new never returns NULL; free(NULL) is a no-op. */
struct sha256_ctx;
struct sha256_ctx *sha256_ctx_new(void);
void sha256_ctx_update(struct sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and resets the context for reuse. */
void sha256_ctx_final(struct sha256_ctx *c, uint8_t out[SHA256_LEN]);
void sha256_ctx_free(struct sha256_ctx *c);
/* The digest of what c was fed so far; c goes on as if this had not been asked. */
void sha256_ctx_peek(const struct sha256_ctx *c, uint8_t out[SHA256_LEN]);

/* Incremental MD5, the same way. */
struct md5_ctx;
struct md5_ctx *md5_ctx_new(void);
void md5_ctx_update(struct md5_ctx *c, const void *data, size_t len);
void md5_ctx_final(struct md5_ctx *c, uint8_t out[MD5_LEN]);
void md5_ctx_free(struct md5_ctx *c);

/*
 * Incremental GMAC: AES-256-GCM over associated data only, the 16-byte tag. A keyed
 * fingerprint about four times as fast as SHA-256 (GHASH with carry-less multiply): for
 * two different inputs of n bytes it is equal with a chance of at most (n/16 + 1) / 2^128
 * when the key is unknown. The context copies key and nonce; final writes the tag and
 * resets for the next input. Never NULL.
 */
#define GMAC_KEY_LEN 32
#define GMAC_NONCE_LEN 12
#define GMAC_TAG_LEN 16
struct gmac_ctx;
struct gmac_ctx *gmac_ctx_new(const uint8_t key[GMAC_KEY_LEN], const uint8_t nonce[GMAC_NONCE_LEN]);
void gmac_ctx_update(struct gmac_ctx *c, const void *data, size_t len);
void gmac_ctx_final(struct gmac_ctx *c, uint8_t out[GMAC_TAG_LEN]);
void gmac_ctx_free(struct gmac_ctx *c);

/* Cryptographically strong random bytes; 0 or ERR_RUNTIME. */
int random_bytes(void *buf, size_t len);

/* Lowercase hex of len bytes into out (2*len+1 bytes, NUL-terminated). Returns out. */
char *hex_encode(const uint8_t *in, size_t len, char *out);
/* Exactly 2*out_len hex digits (either case) into out; 0 or ERR_INTEGRITY. */
int hex_decode(const char *hex, uint8_t *out, size_t out_len);

/* Standard base64 (with padding) of len bytes into out (4*ceil(len/3)+1). Returns out. */
char *base64_encode(const uint8_t *in, size_t len, char *out);

#endif
