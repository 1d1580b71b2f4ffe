/*
 * crypto_dl.c — libcrypto (OpenSSL 3), loaded on first use.
 *
 * PostgreSQL runs `pgark wal-fetch` once per WAL segment, serially with replay; when
 * the read-ahead has the segment ready the call only renames a file, and loading
 * libcrypto (its relocations and initialisation) was most of what such a call cost:
 * 3.7 ms against 1.5 ms for a program without it (perf stat, 300 runs). So pgark is
 * not linked with libcrypto: these definitions of the functions it uses forward to
 * libcrypto.so.3, dlopen'ed by the first of them (pgark/dl.h: a library that cannot be
 * loaded ends the process, with wal-fetch's own exit status there). libzstd likewise
 * (src/compress/zstd_dl.c); libcurl and libpq in src/http/curl_dl.c, src/pg/pq_dl.c.
 * The definitions keep the libraries' own names, so the code calling them reads as the
 * libraries' documented calls (pgark/dl.h says why that is safe).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "pgark/dl.h"

#define CRYPTO_FUNCTIONS(X)                                                                        \
    X(EVP_CIPHER_CTX_ctrl)                                                                         \
    X(EVP_CIPHER_CTX_free)                                                                         \
    X(EVP_CIPHER_CTX_new)                                                                          \
    X(EVP_CipherInit_ex)                                                                           \
    X(EVP_CipherUpdate)                                                                            \
    X(EVP_DecryptFinal_ex)                                                                         \
    X(EVP_DecryptUpdate)                                                                           \
    X(EVP_Digest)                                                                                  \
    X(EVP_DigestFinal_ex)                                                                          \
    X(EVP_DigestInit_ex)                                                                           \
    X(EVP_DigestUpdate)                                                                            \
    X(EVP_EncodeBlock)                                                                             \
    X(EVP_EncryptFinal_ex)                                                                         \
    X(EVP_EncryptUpdate)                                                                           \
    X(EVP_KDF_CTX_free)                                                                            \
    X(EVP_KDF_CTX_new)                                                                             \
    X(EVP_KDF_derive)                                                                              \
    X(EVP_KDF_fetch)                                                                               \
    X(EVP_KDF_free)                                                                                \
    X(EVP_MD_CTX_copy_ex)                                                                          \
    X(EVP_MD_CTX_free)                                                                             \
    X(EVP_MD_CTX_get0_md)                                                                          \
    X(EVP_MD_CTX_new)                                                                              \
    X(EVP_aes_256_gcm)                                                                             \
    X(EVP_md5)                                                                                     \
    X(EVP_sha256)                                                                                  \
    X(HMAC)                                                                                        \
    X(OSSL_PARAM_construct_end)                                                                    \
    X(OSSL_PARAM_construct_octet_string)                                                           \
    X(OSSL_PARAM_construct_uint32)                                                                 \
    X(OSSL_PARAM_construct_uint64)                                                                 \
    X(OSSL_PARAM_construct_utf8_string)                                                            \
    X(RAND_bytes)

DL_LIBRARY(CRYPTO_FUNCTIONS, "libcrypto.so.3", "libssl3");

int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr)
{
    return DL_REAL(EVP_CIPHER_CTX_ctrl)(ctx, type, arg, ptr);
}

void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *c)
{
    DL_REAL(EVP_CIPHER_CTX_free)(c);
}

EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void)
{
    return DL_REAL(EVP_CIPHER_CTX_new)();
}

int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl,
                      const unsigned char *key, const unsigned char *iv, int enc)
{
    return DL_REAL(EVP_CipherInit_ex)(ctx, cipher, impl, key, iv, enc);
}

int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in,
                     int inl)
{
    return DL_REAL(EVP_CipherUpdate)(ctx, out, outl, in, inl);
}

int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl)
{
    return DL_REAL(EVP_DecryptFinal_ex)(ctx, outm, outl);
}

int EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in,
                      int inl)
{
    return DL_REAL(EVP_DecryptUpdate)(ctx, out, outl, in, inl);
}

int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, ENGINE *impl)
{
    return DL_REAL(EVP_Digest)(data, count, md, size, type, impl);
}

int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s)
{
    return DL_REAL(EVP_DigestFinal_ex)(ctx, md, s);
}

int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl)
{
    return DL_REAL(EVP_DigestInit_ex)(ctx, type, impl);
}

int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt)
{
    return DL_REAL(EVP_DigestUpdate)(ctx, d, cnt);
}

int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n)
{
    return DL_REAL(EVP_EncodeBlock)(t, f, n);
}

int EVP_EncryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl)
{
    return DL_REAL(EVP_EncryptFinal_ex)(ctx, out, outl);
}

int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in,
                      int inl)
{
    return DL_REAL(EVP_EncryptUpdate)(ctx, out, outl, in, inl);
}

void EVP_KDF_CTX_free(EVP_KDF_CTX *ctx)
{
    DL_REAL(EVP_KDF_CTX_free)(ctx);
}

EVP_KDF_CTX *EVP_KDF_CTX_new(EVP_KDF *kdf)
{
    return DL_REAL(EVP_KDF_CTX_new)(kdf);
}

int EVP_KDF_derive(EVP_KDF_CTX *ctx, unsigned char *key, size_t keylen, const OSSL_PARAM *params)
{
    return DL_REAL(EVP_KDF_derive)(ctx, key, keylen, params);
}

EVP_KDF *EVP_KDF_fetch(OSSL_LIB_CTX *libctx, const char *algorithm, const char *properties)
{
    return DL_REAL(EVP_KDF_fetch)(libctx, algorithm, properties);
}

void EVP_KDF_free(EVP_KDF *kdf)
{
    DL_REAL(EVP_KDF_free)(kdf);
}

int EVP_MD_CTX_copy_ex(EVP_MD_CTX *out, const EVP_MD_CTX *in)
{
    return DL_REAL(EVP_MD_CTX_copy_ex)(out, in);
}

void EVP_MD_CTX_free(EVP_MD_CTX *ctx)
{
    DL_REAL(EVP_MD_CTX_free)(ctx);
}

const EVP_MD *EVP_MD_CTX_get0_md(const EVP_MD_CTX *ctx)
{
    return DL_REAL(EVP_MD_CTX_get0_md)(ctx);
}

EVP_MD_CTX *EVP_MD_CTX_new(void)
{
    return DL_REAL(EVP_MD_CTX_new)();
}

const EVP_CIPHER *EVP_aes_256_gcm(void)
{
    return DL_REAL(EVP_aes_256_gcm)();
}

const EVP_MD *EVP_md5(void)
{
    return DL_REAL(EVP_md5)();
}

const EVP_MD *EVP_sha256(void)
{
    return DL_REAL(EVP_sha256)();
}

unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *data,
                    size_t data_len, unsigned char *md, unsigned int *md_len)
{
    return DL_REAL(HMAC)(evp_md, key, key_len, data, data_len, md, md_len);
}

OSSL_PARAM OSSL_PARAM_construct_end(void)
{
    return DL_REAL(OSSL_PARAM_construct_end)();
}

OSSL_PARAM OSSL_PARAM_construct_octet_string(const char *key, void *buf, size_t bsize)
{
    return DL_REAL(OSSL_PARAM_construct_octet_string)(key, buf, bsize);
}

OSSL_PARAM OSSL_PARAM_construct_uint32(const char *key, uint32_t *buf)
{
    return DL_REAL(OSSL_PARAM_construct_uint32)(key, buf);
}

OSSL_PARAM OSSL_PARAM_construct_uint64(const char *key, uint64_t *buf)
{
    return DL_REAL(OSSL_PARAM_construct_uint64)(key, buf);
}

OSSL_PARAM OSSL_PARAM_construct_utf8_string(const char *key, char *buf, size_t bsize)
{
    return DL_REAL(OSSL_PARAM_construct_utf8_string)(key, buf, bsize);
}

int RAND_bytes(unsigned char *buf, int num)
{
    return DL_REAL(RAND_bytes)(buf, num);
}
