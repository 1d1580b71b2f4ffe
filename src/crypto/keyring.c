/* keyring.c — scrypt, data key wrapping and the chunk-name key (see include/pgark/crypto.h). */
#include "pgark/crypto.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <string.h>

#define KDF_NAME "scrypt"
#define NAME_KEY_INFO "pgark chunk names"
/* Versioned prefix of the wrap AAD: the KDF parameters and salt follow it, so an
 * altered record cannot unwrap to anything. */
#define WRAP_AAD_PREFIX "pgark keyring v1"

/* One data key: its id, its value and its current wrapping. */
struct data_key {
    uint32_t id;
    uint8_t wrapped[CRYPTO_WRAPPED_LEN];
    uint8_t key[CRYPTO_KEY_LEN];
};

/* keys[0] is always id 0, the repository's first key (the root of the chunk-name key);
 * the others follow in increasing id order, and the last one is current. */
struct crypto_keyring {
    struct crypto_kdf_params kdf;
    uint8_t salt[CRYPTO_SALT_LEN];
    uint8_t kek[CRYPTO_KEY_LEN]; /* scrypt(passphrase, salt): what wraps the keys */
    size_t nkeys;
    struct data_key keys[CRYPTO_KEYS_MAX];
    uint8_t name_key[32];
};

/* What OpenSSL allocates for scrypt: V (128*r*(N+2) bytes) and B (128*r*p). Called only
 * once N*r*p is within CRYPTO_KDF_MAX_COST, so that it cannot overflow. */
static uint64_t kdf_memory(const struct crypto_kdf_params *p)
{
    return 128 * (uint64_t)p->r * (p->n + 2 + p->p);
}

int crypto_kdf_check(const struct crypto_kdf_params *p, enum err_kind kind)
{
    if (p->n < 2 || p->n > (1ull << 30) || (p->n & (p->n - 1)))
        return err_set(kind, "scrypt parameter N=%" PRIu64 " is not a power of two from 2 to 2^30",
                       p->n);
    if (p->r < 1 || p->p < 1)
        return err_set(kind, "scrypt parameters r=%" PRIu32 " p=%" PRIu32 " are out of range", p->r,
                       p->p);
    /* Checked before any derivation: the parameters come from repo.json, and scrypt's
     * time grows with N*r*p (p=32 instead of 1 made every command spend 26 s). */
    uint64_t nr = p->n * p->r; /* < 2^62 */
    if (nr > CRYPTO_KDF_MAX_COST || p->p > CRYPTO_KDF_MAX_COST / nr ||
        kdf_memory(p) > CRYPTO_KDF_MAX_MEM)
        return err_set(kind,
                       "scrypt parameters N=%" PRIu64 " r=%" PRIu32 " p=%" PRIu32
                       " cost more than pgark allows (N*r*p at most %llu, at most %llu MiB of "
                       "memory)",
                       p->n, p->r, p->p, (unsigned long long)CRYPTO_KDF_MAX_COST,
                       (unsigned long long)(CRYPTO_KDF_MAX_MEM >> 20));
    return 0;
}

int crypto_scrypt(const void *passphrase, size_t pass_len, const uint8_t *salt, size_t salt_len,
                  const struct crypto_kdf_params *params, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    uint64_t n = params->n, maxmem = CRYPTO_KDF_MAX_MEM;
    uint32_t r = params->r, p = params->p;
    int rc = crypto_kdf_check(params, ERR_CONFIG);

    if (rc < 0)
        goto out;
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)passphrase, pass_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    if (!(kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL)) || !(kctx = EVP_KDF_CTX_new(kdf)) ||
        EVP_KDF_derive(kctx, out, out_len, ps) != 1)
        rc = err_set(ERR_RUNTIME, "scrypt key derivation failed in OpenSSL");
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

static int hkdf_sha256(const uint8_t *key, size_t key_len, const char *info, uint8_t *out,
                       size_t out_len)
{
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    int rc = 0;
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info)),
        OSSL_PARAM_construct_end(),
    };

    if (!(kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) || !(kctx = EVP_KDF_CTX_new(kdf)) ||
        EVP_KDF_derive(kctx, out, out_len, ps) != 1)
        rc = err_set(ERR_RUNTIME, "HKDF key derivation failed in OpenSSL");
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* The associated data binding a wrapped key to its KDF parameters and salt, and a key
 * other than the first to its id (so that a wrapped key moved to another id does not
 * unwrap). The first key's has no id: it is the one repositories had before there were
 * several, and its record reads as it always did. */
static size_t wrap_aad(const struct crypto_keyring *kr, uint32_t id, uint8_t *aad)
{
    size_t len = 0;
    memcpy(aad, WRAP_AAD_PREFIX, sizeof(WRAP_AAD_PREFIX));
    len += sizeof(WRAP_AAD_PREFIX); /* with its NUL, as a separator */
    for (int i = 7; i >= 0; i--)
        aad[len++] = (uint8_t)(kr->kdf.n >> (8 * i));
    for (int i = 3; i >= 0; i--)
        aad[len++] = (uint8_t)(kr->kdf.r >> (8 * i));
    for (int i = 3; i >= 0; i--)
        aad[len++] = (uint8_t)(kr->kdf.p >> (8 * i));
    memcpy(aad + len, kr->salt, CRYPTO_SALT_LEN);
    len += CRYPTO_SALT_LEN;
    if (id != 0)
        for (int i = 3; i >= 0; i--)
            aad[len++] = (uint8_t)(id >> (8 * i));
    return len;
}

#define WRAP_AAD_MAX (sizeof(WRAP_AAD_PREFIX) + 16 + CRYPTO_SALT_LEN + 4)

/* Seal (encrypt) or open dk->key <-> dk->wrapped under kek. Open returns 1 when the tag
 * does not verify, 0 on success; both return <0 when OpenSSL fails. */
static int wrap_cipher(const struct crypto_keyring *kr, struct data_key *dk,
                       const uint8_t kek[CRYPTO_KEY_LEN], bool seal)
{
    uint8_t aad[WRAP_AAD_MAX];
    size_t aad_len = wrap_aad(kr, dk->id, aad);
    uint8_t *nonce = dk->wrapped;
    uint8_t *ct = dk->wrapped + CRYPTO_NONCE_LEN;
    uint8_t *tag = ct + CRYPTO_KEY_LEN;
    uint8_t plain[CRYPTO_KEY_LEN];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, rc = 0;

    if (!ctx || EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, kek, nonce, seal ? 1 : 0) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) {
        rc = err_set(ERR_RUNTIME, "AES-256-GCM key wrapping failed in OpenSSL");
        goto out;
    }
    if (seal) {
        if (EVP_EncryptUpdate(ctx, ct, &outl, dk->key, CRYPTO_KEY_LEN) != 1 ||
            EVP_EncryptFinal_ex(ctx, ct + outl, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_TAG_LEN, tag) != 1)
            rc = err_set(ERR_RUNTIME, "AES-256-GCM key wrapping failed in OpenSSL");
        goto out;
    }
    if (EVP_DecryptUpdate(ctx, plain, &outl, ct, CRYPTO_KEY_LEN) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_TAG_LEN, tag) != 1) {
        rc = err_set(ERR_RUNTIME, "AES-256-GCM key unwrapping failed in OpenSSL");
        goto out;
    }
    if (EVP_DecryptFinal_ex(ctx, plain + outl, &outl) != 1) {
        rc = 1;
        goto out;
    }
    memcpy(dk->key, plain, CRYPTO_KEY_LEN);
out:
    secure_zero(plain, sizeof(plain));
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* Wrap every data key of kr under kr->kek with fresh nonces. */
static int wrap_all(struct crypto_keyring *kr)
{
    int rc = 0;
    for (size_t i = 0; i < kr->nkeys && rc == 0; i++)
        if ((rc = random_bytes(kr->keys[i].wrapped, CRYPTO_NONCE_LEN)) == 0)
            rc = wrap_cipher(kr, &kr->keys[i], kr->kek, true);
    return rc;
}

/* Wrap every data key of kr under passphrase with a fresh salt and fresh nonces. */
static int wrap(struct crypto_keyring *kr, const char *passphrase, size_t pass_len)
{
    int rc;

    if (pass_len == 0)
        return err_set(ERR_CONFIG, "the encryption passphrase is empty");
    if ((rc = random_bytes(kr->salt, CRYPTO_SALT_LEN)) < 0 ||
        (rc = crypto_scrypt(passphrase, pass_len, kr->salt, CRYPTO_SALT_LEN, &kr->kdf, kr->kek,
                            sizeof(kr->kek))) < 0)
        return rc;
    return wrap_all(kr);
}

int crypto_keyring_create(const char *passphrase, size_t pass_len,
                          const struct crypto_kdf_params *params, struct crypto_keyring **out)
{
    struct crypto_keyring *kr = xcalloc(1, sizeof(*kr));
    int rc;

    *out = NULL;
    kr->kdf = params ? *params
                     : (struct crypto_kdf_params){CRYPTO_KDF_DEFAULT_N, CRYPTO_KDF_DEFAULT_R,
                                                  CRYPTO_KDF_DEFAULT_P};
    kr->nkeys = 1;
    if ((rc = random_bytes(kr->keys[0].key, CRYPTO_KEY_LEN)) < 0 ||
        (rc = wrap(kr, passphrase, pass_len)) < 0 ||
        (rc = hkdf_sha256(kr->keys[0].key, CRYPTO_KEY_LEN, NAME_KEY_INFO, kr->name_key,
                          sizeof(kr->name_key))) < 0)
        goto out;
    *out = kr;
    kr = NULL;
out:
    crypto_keyring_free(kr);
    return rc;
}

/* The KDF, salt and wrapped keys of rec into kr (nothing unwrapped yet). */
static int read_record(struct crypto_keyring *kr, const struct crypto_key_record *rec)
{
    int rc;
    if (!memchr(rec->kdf, 0, sizeof(rec->kdf)) || strcmp(rec->kdf, KDF_NAME) != 0)
        return err_set(ERR_INTEGRITY, "unknown key derivation function \"%.*s\" (expected \"%s\")",
                       (int)sizeof(rec->kdf), rec->kdf, KDF_NAME);
    kr->kdf = (struct crypto_kdf_params){rec->n, rec->r, rec->p};
    if ((rc = crypto_kdf_check(&kr->kdf, ERR_INTEGRITY)) < 0)
        return rc;
    if ((rc = hex_decode(rec->salt, kr->salt, CRYPTO_SALT_LEN)) < 0)
        return err_context("while reading the salt of the encryption key record");
    if (rec->nextra > CRYPTO_KEYS_MAX - 1)
        return err_set(ERR_INTEGRITY, "%zu data keys, more than the %d pgark holds",
                       rec->nextra + 1, CRYPTO_KEYS_MAX);
    kr->nkeys = 1 + rec->nextra;
    if ((rc = hex_decode(rec->wrapped_key, kr->keys[0].wrapped, CRYPTO_WRAPPED_LEN)) < 0)
        return err_context("while reading the wrapped key of the encryption key record");
    for (size_t i = 0; i < rec->nextra; i++) {
        struct data_key *dk = &kr->keys[i + 1];
        dk->id = rec->extra[i].id;
        if (dk->id <= kr->keys[i].id)
            return err_set(ERR_INTEGRITY,
                           "data key ids are not in increasing order (%" PRIu32 " after %" PRIu32
                           ")",
                           dk->id, kr->keys[i].id);
        if ((rc = hex_decode(rec->extra[i].wrapped_key, dk->wrapped, CRYPTO_WRAPPED_LEN)) < 0)
            return err_context("while reading the wrapped data key %" PRIu32
                               " of the encryption key record",
                               dk->id);
    }
    return 0;
}

/* Unwrap every key of kr under kr->kek: 0, 1 when key 0 does not unwrap (a wrong
 * passphrase), <0 on failure. */
static int unwrap_all(struct crypto_keyring *kr)
{
    for (size_t i = 0; i < kr->nkeys; i++) {
        int rc = wrap_cipher(kr, &kr->keys[i], kr->kek, false);
        if (rc < 0 || (rc == 1 && i == 0))
            return rc;
        if (rc == 1) /* the first key opened: the passphrase is right, this record was altered */
            return err_set(ERR_INTEGRITY,
                           "data key %" PRIu32 " does not unwrap under the passphrase that "
                           "unwraps the first one: its record was altered",
                           kr->keys[i].id);
    }
    return hkdf_sha256(kr->keys[0].key, CRYPTO_KEY_LEN, NAME_KEY_INFO, kr->name_key,
                       sizeof(kr->name_key));
}

int crypto_keyring_open(const struct crypto_key_record *rec, const char *passphrase,
                        size_t pass_len, struct crypto_keyring **out)
{
    struct crypto_keyring *kr = xcalloc(1, sizeof(*kr));
    int rc;

    *out = NULL;
    if ((rc = read_record(kr, rec)) < 0 ||
        (rc = crypto_scrypt(passphrase, pass_len, kr->salt, CRYPTO_SALT_LEN, &kr->kdf, kr->kek,
                            sizeof(kr->kek))) < 0 ||
        (rc = unwrap_all(kr)) < 0)
        goto out;
    if (rc == 1) {
        rc =
            err_set(ERR_AUTH, "wrong passphrase: it does not unlock the repository encryption key");
        err_hint("use the passphrase the repository was created or last rekeyed with");
        goto out;
    }
    *out = kr;
    kr = NULL;
out:
    crypto_keyring_free(kr);
    return rc;
}

int crypto_keyring_refresh(const struct crypto_keyring *kr, const struct crypto_key_record *rec,
                           struct crypto_keyring **out)
{
    struct crypto_keyring *next = xcalloc(1, sizeof(*next));
    int rc;

    *out = NULL;
    if ((rc = read_record(next, rec)) < 0)
        goto out;
    if (memcmp(next->salt, kr->salt, CRYPTO_SALT_LEN) != 0 || next->kdf.n != kr->kdf.n ||
        next->kdf.r != kr->kdf.r || next->kdf.p != kr->kdf.p) {
        rc = 1;
        goto out;
    }
    memcpy(next->kek, kr->kek, sizeof(kr->kek));
    if ((rc = unwrap_all(next)) < 0)
        goto out;
    if (rc == 1 || memcmp(next->keys[0].key, kr->keys[0].key, CRYPTO_KEY_LEN) != 0) {
        rc = err_set(ERR_INTEGRITY, "the first data key in the record is not the one in use");
        goto out;
    }
    *out = next;
    next = NULL;
out:
    crypto_keyring_free(next);
    return rc;
}

int crypto_keyring_rewrap(struct crypto_keyring *kr, const char *new_passphrase, size_t pass_len,
                          const struct crypto_kdf_params *params)
{
    struct crypto_keyring *next = xmalloc(sizeof(*next));
    int rc;

    *next = *kr;
    if (params)
        next->kdf = *params;
    if ((rc = wrap(next, new_passphrase, pass_len)) < 0)
        goto out;
    *kr = *next;
out:
    secure_free(next, sizeof(*next));
    return rc;
}

int crypto_keyring_add(struct crypto_keyring *kr, uint32_t *id)
{
    struct crypto_keyring *next = xmalloc(sizeof(*next));
    int rc;

    *next = *kr;
    if (next->nkeys >= CRYPTO_KEYS_MAX) {
        rc = err_set(ERR_CONFIG, "the repository holds %d data keys, as many as pgark holds",
                     CRYPTO_KEYS_MAX);
        err_hint("\"pgark expire\" drops the keys no object uses any more");
        goto out;
    }
    struct data_key *last = &next->keys[next->nkeys - 1];
    if (last->id == UINT32_MAX) {
        rc = err_set(ERR_CONFIG, "no data key id is left after %" PRIu32, last->id);
        goto out;
    }
    struct data_key *dk = &next->keys[next->nkeys++];
    dk->id = last->id + 1;
    /* The same salt and key-encryption key: a process holding the keyring can unwrap the
     * new key from the record without the passphrase (crypto_keyring_refresh). */
    if ((rc = random_bytes(dk->key, CRYPTO_KEY_LEN)) < 0 ||
        (rc = random_bytes(dk->wrapped, CRYPTO_NONCE_LEN)) < 0 ||
        (rc = wrap_cipher(next, dk, next->kek, true)) < 0)
        goto out;
    *id = dk->id;
    *kr = *next;
out:
    secure_free(next, sizeof(*next));
    return rc;
}

/* --- key-encryption key cache ---------------------------------------------------- */

#define CACHE_MAGIC "PGARKKC1"
#define CACHE_BIND "pgark kek cache v1"
#define CACHE_BIND_OFF (8 + 8 + 4 + 4 + CRYPTO_SALT_LEN + CRYPTO_KEY_LEN)
#define CACHE_SUM_OFF (CACHE_BIND_OFF + 32)

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Equal in time that does not depend on where they differ. */
static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

/* What binds an entry to the passphrase: a MAC of it under the key it gave. */
static void cache_binding(const uint8_t kek[CRYPTO_KEY_LEN], const char *passphrase,
                          size_t pass_len, uint8_t out[32])
{
    size_t len = sizeof(CACHE_BIND) + pass_len; /* the prefix with its NUL */
    uint8_t *msg = xmalloc(len);
    memcpy(msg, CACHE_BIND, sizeof(CACHE_BIND));
    memcpy(msg + sizeof(CACHE_BIND), passphrase, pass_len);
    hmac_sha256(kek, CRYPTO_KEY_LEN, msg, len, out);
    secure_free(msg, len);
}

void crypto_keyring_cache_entry(const struct crypto_keyring *kr, const char *passphrase,
                                size_t pass_len, uint8_t out[CRYPTO_KEK_CACHE_LEN])
{
    uint8_t *p = out;
    memcpy(p, CACHE_MAGIC, 8);
    put_be(p + 8, kr->kdf.n, 8);
    put_be(p + 16, kr->kdf.r, 4);
    put_be(p + 20, kr->kdf.p, 4);
    memcpy(p + 24, kr->salt, CRYPTO_SALT_LEN);
    memcpy(p + 24 + CRYPTO_SALT_LEN, kr->kek, CRYPTO_KEY_LEN);
    cache_binding(kr->kek, passphrase, pass_len, p + CACHE_BIND_OFF);
    sha256(p, CACHE_SUM_OFF, p + CACHE_SUM_OFF);
}

/* 0 when entry is intact and made for kr's salt and parameters and for passphrase (its
 * key then in kr->kek), else 1 (stale) or 2 (damaged, *why set). */
static int cache_check(struct crypto_keyring *kr, const char *passphrase, size_t pass_len,
                       const uint8_t *entry, size_t entry_len, const char **why)
{
    uint8_t sum[SHA256_LEN], bind[32];
    int rc = 0;

    if (entry_len != CRYPTO_KEK_CACHE_LEN) {
        *why = entry_len < CRYPTO_KEK_CACHE_LEN ? "it is truncated" : "it is too long";
        return 2;
    }
    sha256(entry, CACHE_SUM_OFF, sum);
    if (memcmp(entry, CACHE_MAGIC, 8) != 0 || !same_bytes(sum, entry + CACHE_SUM_OFF, SHA256_LEN)) {
        *why = "its checksum does not match";
        return 2;
    }
    if (get_be(entry + 8, 8) != kr->kdf.n || get_be(entry + 16, 4) != kr->kdf.r ||
        get_be(entry + 20, 4) != kr->kdf.p || memcmp(entry + 24, kr->salt, CRYPTO_SALT_LEN) != 0)
        return 1; /* another salt: the passphrase was rotated since */
    memcpy(kr->kek, entry + 24 + CRYPTO_SALT_LEN, CRYPTO_KEY_LEN);
    cache_binding(kr->kek, passphrase, pass_len, bind);
    if (!same_bytes(bind, entry + CACHE_BIND_OFF, sizeof(bind)))
        rc = 1; /* made for another passphrase */
    secure_zero(bind, sizeof(bind));
    return rc;
}

int crypto_keyring_open_cached(const struct crypto_key_record *rec, const char *passphrase,
                               size_t pass_len, const uint8_t *entry, size_t entry_len,
                               struct crypto_keyring **out, const char **why)
{
    struct crypto_keyring *kr = xcalloc(1, sizeof(*kr));
    int rc;

    *out = NULL;
    if ((rc = read_record(kr, rec)) < 0 ||
        (rc = cache_check(kr, passphrase, pass_len, entry, entry_len, why)) != 0 ||
        (rc = unwrap_all(kr)) < 0)
        goto out;
    if (rc == 1) { /* intact and bound to this passphrase, yet not the key of this record */
        *why = "its key does not unwrap the repository's data key";
        rc = 2;
        goto out;
    }
    *out = kr;
    kr = NULL;
out:
    crypto_keyring_free(kr);
    return rc;
}

void crypto_keyring_export(const struct crypto_keyring *kr, struct crypto_key_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    memcpy(rec->kdf, KDF_NAME, sizeof(KDF_NAME));
    rec->n = kr->kdf.n;
    rec->r = kr->kdf.r;
    rec->p = kr->kdf.p;
    hex_encode(kr->salt, CRYPTO_SALT_LEN, rec->salt);
    hex_encode(kr->keys[0].wrapped, CRYPTO_WRAPPED_LEN, rec->wrapped_key);
    rec->nextra = kr->nkeys - 1;
    for (size_t i = 1; i < kr->nkeys; i++) {
        rec->extra[i - 1].id = kr->keys[i].id;
        hex_encode(kr->keys[i].wrapped, CRYPTO_WRAPPED_LEN, rec->extra[i - 1].wrapped_key);
    }
}

const uint8_t *crypto_keyring_data_key(const struct crypto_keyring *kr)
{
    return kr->keys[kr->nkeys - 1].key;
}

uint32_t crypto_keyring_current_id(const struct crypto_keyring *kr)
{
    return kr->keys[kr->nkeys - 1].id;
}

const uint8_t *crypto_keyring_key(const struct crypto_keyring *kr, uint32_t id)
{
    for (size_t i = 0; i < kr->nkeys; i++)
        if (kr->keys[i].id == id)
            return kr->keys[i].key;
    return NULL;
}

const uint8_t *crypto_keyring_name_key(const struct crypto_keyring *kr)
{
    return kr->name_key;
}

void crypto_keyring_free(struct crypto_keyring *kr)
{
    secure_free(kr, sizeof(*kr));
}
