/*
 * chunks.c — the content-addressed chunk store: chunks/<aa>/<name>, where name is the
 * SHA-256 of the chunk's plaintext, or its HMAC-SHA256 under a key derived from the
 * data key when the repository is encrypted (a name must not tell what is inside).
 * An unchanged chunk is stored once, whatever the number of backups using it.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint8_t *repo_chunk_key(const struct repo *r)
{
    return r->keyring ? crypto_keyring_name_key(r->keyring) : NULL;
}

void repo_chunk_name(const struct repo *r, const void *data, size_t len,
                     char out[REPO_CHUNK_NAME_LEN + 1])
{
    uint8_t digest[SHA256_LEN];
    const uint8_t *key = repo_chunk_key(r);
    if (key)
        hmac_sha256(key, 32, data, len, digest);
    else
        sha256(data, len, digest);
    hex_encode(digest, SHA256_LEN, out);
}

static bool is_chunk_name(const char *name)
{
    if (strlen(name) != REPO_CHUNK_NAME_LEN)
        return false;
    for (const char *p = name; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    }
    return true;
}

int repo_chunk_path(const char *name, char *buf, size_t cap)
{
    if (!is_chunk_name(name))
        return err_set(ERR_USAGE, "\"%s\" is not a chunk name (64 lowercase hex digits)", name);
    snprintf(buf, cap, "chunks/%.2s/%s", name, name);
    return 0;
}

int repo_chunk_put_payload(struct repo *r, const char *name, const void *payload, size_t len,
                           uint64_t *stored)
{
    char path[96];
    int rc = repo_chunk_path(name, path, sizeof(path));
    if (rc < 0)
        return rc;
    return repo_put_payload(r, path, payload, len, stored);
}

/* HMAC_CTX is deprecated in OpenSSL 3 in favour of EVP_MAC, but it is still there and
 * far simpler for one streaming HMAC. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

struct chunk_check {
    storage_sink_fn sink;
    void *ctx;
    EVP_MD_CTX *md; /* plain SHA-256 */
    HMAC_CTX *hmac; /* keyed names */
};

static int check_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct chunk_check *c = ctx;
    if (c->hmac)
        HMAC_Update(c->hmac, data, len);
    else
        EVP_DigestUpdate(c->md, data, len);
    return c->sink ? c->sink(c->ctx, data, len) : 0;
}

int repo_chunk_get(struct repo *r, const char *name, storage_sink_fn sink, void *ctx)
{
    char path[96];
    int rc = repo_chunk_path(name, path, sizeof(path));
    if (rc < 0)
        return rc;
    struct chunk_check c = {sink, ctx, NULL, NULL};
    const uint8_t *key = repo_chunk_key(r);
    if (key) {
        c.hmac = HMAC_CTX_new();
        HMAC_Init_ex(c.hmac, key, 32, EVP_sha256(), NULL);
    } else {
        c.md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(c.md, EVP_sha256(), NULL);
    }
    rc = repo_get(r, path, check_sink, &c);
    uint8_t digest[SHA256_LEN];
    unsigned int n = 0;
    if (c.hmac)
        HMAC_Final(c.hmac, digest, &n);
    else
        EVP_DigestFinal_ex(c.md, digest, &n);
    HMAC_CTX_free(c.hmac);
    EVP_MD_CTX_free(c.md);
    if (rc < 0)
        return rc;
    char got[REPO_CHUNK_NAME_LEN + 1];
    hex_encode(digest, SHA256_LEN, got);
    if (strcmp(got, name) != 0)
        return err_set(ERR_INTEGRITY,
                       "chunk %s in repository \"%s\" holds other content (its name would be %s)",
                       name, repo_name(r), got);
    return 0;
}

struct list_ctx {
    repo_chunk_fn fn;
    void *ctx;
    size_t prefix_len;
};

static int on_chunk(void *ctx, const struct storage_info *info)
{
    struct list_ctx *c = ctx;
    const char *rel = info->path + c->prefix_len; /* "<aa>/<name>" */
    const char *slash = strchr(rel, '/');
    if (!slash || !is_chunk_name(slash + 1) || strncmp(rel, slash + 1, 2) != 0)
        return 0;
    return c->fn(c->ctx, slash + 1, info->size);
}

int repo_chunk_list(struct repo *r, repo_chunk_fn fn, void *ctx)
{
    char *prefix = repo_full_path(r, "chunks/");
    struct list_ctx c = {fn, ctx, strlen(prefix)};
    int rc = storage_list(r->storage, prefix, on_chunk, &c);
    free(prefix);
    return rc;
}
