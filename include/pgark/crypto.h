/*
 * crypto.h — SHA-256 observer, framed AES-256-GCM filters and the repository keyring.
 *
 * Promise: no plaintext leaves the decryptor before the frame holding it has been
 * authenticated; anything short of the exact ciphertext written (a flipped bit, a
 * cut, frames reordered, bytes appended, another header, key or nonce) fails with
 * ERR_INTEGRITY "authentication failed ...". Keys live in memory only as long as
 * their owner and are overwritten when freed.
 *
 * Encrypted format: the plaintext is cut into frames of CRYPTO_FRAME_LEN bytes (the
 * last one shorter, possibly empty: empty input is one empty final frame). Each frame
 * is written as its ciphertext followed by a CRYPTO_TAG_LEN-byte tag. Frame i uses
 * the nonce nonce XOR big-endian i in its last 8 bytes, and the associated data
 * aad || final, final being one byte: 1 on the last frame, 0 before it.
 *
 * Keyring: random data keys encrypt objects. Each is stored wrapped (AES-256-GCM) under
 * a key derived from the passphrase with scrypt and a random salt (one salt for all of
 * them), so the passphrase can change without rewriting data. Key 0 is the first; a new
 * one (crypto_keyring_add) gets the next id and is current: new objects are encrypted
 * under it, and the older ones stay to read what they encrypted. The key naming chunks
 * (HMAC-SHA256) is derived from key 0 with HKDF-SHA256, info "pgark chunk names", and
 * does not change when a new data key is added.
 */
#ifndef PGARK_CRYPTO_H
#define PGARK_CRYPTO_H

#include "pgark/error.h"
#include "pgark/filter.h"

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_KEY_LEN 32
#define CRYPTO_NONCE_LEN 12
#define CRYPTO_TAG_LEN 16
#define CRYPTO_SALT_LEN 16
#define CRYPTO_FRAME_LEN (64 * 1024)
/* A wrapped data key: nonce || encrypted key || tag. */
#define CRYPTO_WRAPPED_LEN (CRYPTO_NONCE_LEN + CRYPTO_KEY_LEN + CRYPTO_TAG_LEN)
/* The most data keys a keyring holds at once (ids are never reused; expire drops keys
 * no object uses). */
#define CRYPTO_KEYS_MAX 64

/* --- SHA-256 observer ------------------------------------------------------------ */

/* Passes bytes through unchanged and hashes them. Never NULL. */
struct filter *crypto_sha256_filter_new(void);
/* The digest of every byte seen; final once the filter has seen the end of input. */
void crypto_sha256_filter_result(const struct filter *f, uint8_t out[32]);

/* --- framed AES-256-GCM ---------------------------------------------------------- */

/*
 * Encryptor / decryptor filters. key, nonce and aad are copied. The nonce must be
 * fresh for every object encrypted under a key (random_bytes). Never NULL.
 */
struct filter *crypto_gcm_encryptor_new(const uint8_t key[32], const uint8_t nonce[12],
                                        const void *aad, size_t aad_len);
struct filter *crypto_gcm_decryptor_new(const uint8_t key[32], const uint8_t nonce[12],
                                        const void *aad, size_t aad_len);

/* Length of the ciphertext of plain_len bytes of plaintext. */
uint64_t crypto_gcm_ciphertext_len(uint64_t plain_len);

/* --- key derivation -------------------------------------------------------------- */

struct crypto_kdf_params {
    uint64_t n; /* scrypt cost: a power of two, 2..2^30 */
    uint32_t r; /* block size */
    uint32_t p; /* parallelism */
};

/* New keyrings: OWASP's recommended minimum for scrypt (Password Storage Cheat Sheet,
 * 2023: N=2^17, r=8, p=1), 128 MiB of memory. */
#define CRYPTO_KDF_DEFAULT_N (1u << 17)
#define CRYPTO_KDF_DEFAULT_R 8
#define CRYPTO_KDF_DEFAULT_P 1

/* The most any derivation may cost, checked before it starts: N*r*p at most the
 * default's (0.7 to 0.8 s of CPU on the 2-core test machine, loaded), and the memory
 * OpenSSL allocates, 128*r*(N+p+2) bytes, at most 256 MiB. The parameters of an existing
 * repository come from its repo.json, which anyone who can write the repository can
 * change: without a cap, raised parameters make every command that opens it burn CPU
 * and memory before it can even say the passphrase is wrong. A later default above this
 * raises the cap with it. */
#define CRYPTO_KDF_MAX_COST (UINT64_C(1) << 20)
#define CRYPTO_KDF_MAX_MEM (UINT64_C(256) << 20)

/*
 * Whether params are valid and within the caps above: 0, or kind (the caller's: bad
 * configuration or a damaged record) with a message naming the parameters.
 */
int crypto_kdf_check(const struct crypto_kdf_params *params, enum err_kind kind);

/*
 * scrypt(passphrase, salt, params) into out (out_len bytes). Returns 0, ERR_CONFIG for
 * parameters out of range or above the caps (crypto_kdf_check), ERR_RUNTIME if OpenSSL
 * fails.
 */
int crypto_scrypt(const void *passphrase, size_t pass_len, const uint8_t *salt, size_t salt_len,
                  const struct crypto_kdf_params *params, uint8_t *out, size_t out_len);

/* --- keyring --------------------------------------------------------------------- */

struct crypto_keyring;

/*
 * What repo.json stores: every field is a plain value or lowercase hex, nothing is
 * secret without the passphrase.
 */
struct crypto_key_record {
    char kdf[8]; /* "scrypt" */
    uint64_t n;
    uint32_t r, p;
    char salt[2 * CRYPTO_SALT_LEN + 1];           /* hex */
    char wrapped_key[2 * CRYPTO_WRAPPED_LEN + 1]; /* hex: key 0 */
    /* The keys after key 0, in increasing id order; the last one is current. */
    size_t nextra;
    struct {
        uint32_t id; /* > 0 */
        char wrapped_key[2 * CRYPTO_WRAPPED_LEN + 1];
    } extra[CRYPTO_KEYS_MAX - 1];
};

/*
 * A new keyring: random data key and salt, the key wrapped under scrypt(passphrase).
 * params NULL means the defaults. Returns 0 and *out (caller frees), or ERR_CONFIG for
 * an empty passphrase or bad params, ERR_RUNTIME on an RNG or OpenSSL failure.
 */
int crypto_keyring_create(const char *passphrase, size_t pass_len,
                          const struct crypto_kdf_params *params, struct crypto_keyring **out);

/*
 * Unlock a stored record, every data key in it. Returns 0 and *out (caller frees),
 * ERR_AUTH "wrong passphrase ..." when the passphrase does not unwrap key 0 (or its
 * record was altered), or ERR_INTEGRITY for a malformed record, parameters above the
 * caps (found before any derivation), or a later key that does not unwrap when key 0
 * does.
 */
int crypto_keyring_open(const struct crypto_key_record *rec, const char *passphrase,
                        size_t pass_len, struct crypto_keyring **out);

/*
 * Re-wrap the same data keys, all of them, under a new passphrase with a new salt
 * (passphrase rotation); params NULL keeps the current ones. On failure the keyring is
 * unchanged.
 */
int crypto_keyring_rewrap(struct crypto_keyring *kr, const char *new_passphrase, size_t pass_len,
                          const struct crypto_kdf_params *params);

/*
 * A new random data key with the next id, current from now on, wrapped like the others
 * (same salt, so under the same passphrase). Returns 0 and its id in *id, ERR_CONFIG
 * when kr holds CRYPTO_KEYS_MAX keys already, ERR_RUNTIME on an RNG or OpenSSL failure;
 * on failure the keyring is unchanged.
 */
int crypto_keyring_add(struct crypto_keyring *kr, uint32_t *id);

/*
 * A keyring for a newer record of the same repository (keys added or dropped since kr
 * was opened), without the passphrase: the record must have kr's salt and KDF
 * parameters, whose derived key kr keeps. Returns 0 and *out (caller frees); 1 when the
 * record is wrapped under another salt (the passphrase was rotated: only the passphrase
 * opens it); ERR_INTEGRITY for a malformed record, one whose keys do not unwrap, or
 * whose key 0 is not kr's.
 */
int crypto_keyring_refresh(const struct crypto_keyring *kr, const struct crypto_key_record *rec,
                           struct crypto_keyring **out);

/* --- key-encryption key cache ------------------------------------------------------- */

/*
 * A cache entry lets a later process open the same keyring without scrypt: it holds the
 * key-encryption key (what scrypt(passphrase, salt) gave) with what it is bound to, the
 * KDF parameters and salt of the record it opens and the passphrase it came from:
 *
 *   "PGARKKC1" | N (u64 BE) | r (u32 BE) | p (u32 BE) | salt | key-encryption key |
 *   HMAC-SHA256(key-encryption key, "pgark kek cache v1" NUL passphrase) |
 *   SHA-256 of everything before it
 *
 * Whoever reads an entry holds the repository's data keys (with repo.json) and can test
 * guesses of the passphrase at HMAC speed: it is a secret like the passphrase itself
 * and never leaves the host (the caller keeps it in a 0600 file of its own).
 */
#define CRYPTO_KEK_CACHE_LEN (8 + 8 + 4 + 4 + CRYPTO_SALT_LEN + CRYPTO_KEY_LEN + 32 + 32)

/* The cache entry of kr for passphrase (the one kr was opened or made with). */
void crypto_keyring_cache_entry(const struct crypto_keyring *kr, const char *passphrase,
                                size_t pass_len, uint8_t out[CRYPTO_KEK_CACHE_LEN]);

/*
 * Open rec with the key-encryption key of a cache entry instead of scrypt. Returns 0 and
 * *out (caller frees) when the entry is intact, made for rec's salt and KDF parameters
 * and for this passphrase, and its key unwraps every key of rec; 1 when it was made for
 * other key material (the passphrase was rotated) or another passphrase (the one
 * configured changed): the caller derives, and a wrong passphrase fails there as
 * always; 2 when the entry is damaged (length, checksum, or a key that does not unwrap
 * rec's), with *why saying how (a static string): the caller warns and derives. <0 for
 * a malformed rec (the errors of crypto_keyring_open, which the caller gets again when
 * it derives). Never hands out a keyring whose keys did not authenticate.
 */
int crypto_keyring_open_cached(const struct crypto_key_record *rec, const char *passphrase,
                               size_t pass_len, const uint8_t *entry, size_t entry_len,
                               struct crypto_keyring **out, const char **why);

/* The record to store for kr's current wrapping. */
void crypto_keyring_export(const struct crypto_keyring *kr, struct crypto_key_record *rec);

/* The current data key (CRYPTO_KEY_LEN bytes) and the chunk-name HMAC key (32 bytes);
 * owned by kr, valid until crypto_keyring_free. */
const uint8_t *crypto_keyring_data_key(const struct crypto_keyring *kr);
/* The current data key's id (0 until a key was added). */
uint32_t crypto_keyring_current_id(const struct crypto_keyring *kr);
/* Data key id (CRYPTO_KEY_LEN bytes, owned by kr), or NULL when kr does not hold it. */
const uint8_t *crypto_keyring_key(const struct crypto_keyring *kr, uint32_t id);
const uint8_t *crypto_keyring_name_key(const struct crypto_keyring *kr);

/* Overwrite the keys and free; NULL is a no-op. */
void crypto_keyring_free(struct crypto_keyring *kr);

#endif
