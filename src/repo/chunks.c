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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint8_t *repo_chunk_key(const struct repo *r)
{
    /* A deferred opening not yet unlocked would name chunks as an unencrypted
     * repository does: no command that names chunks defers (repo_options.defer_key). */
    if (r->encrypted && !r->keyring)
        abort();
    const struct crypto_keyring *kr = repo_keyring((struct repo *)r);
    return kr ? crypto_keyring_name_key(kr) : NULL;
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
    /* Content-addressed and named by nothing until a manifest is written: the
     * directory entries can wait for repo_sync_written, once per directory. */
    storage_defer_sync_begin(r->storage);
    rc = repo_put_payload(r, path, payload, len, stored);
    storage_defer_sync_end(r->storage);
    return rc;
}

int repo_sync_written(struct repo *r)
{
    int rc = storage_sync(r->storage);
    if (rc < 0)
        err_context("while making the chunks stored in repository \"%s\" durable", repo_name(r));
    return rc;
}

/*
 * The content is checked once, by the envelope: its SHA-256 of the plaintext (the
 * trailer, compared as the bytes go by) is, in a plain repository, the chunk's name, so
 * comparing that verified digest with the name proves the content is the named one
 * without hashing it again. In an encrypted repository the name is an HMAC: there
 * AES-GCM authenticates every frame with the object's path (hence the name) as
 * associated data, so only a holder of the data key could have put other content under
 * this name; the file digest of the manifest, which restore and verify check from the
 * chunks' verified SHA-256s, covers that case too.
 */
/* digest: the verified SHA-256 of chunk name's plaintext. */
static int check_name(struct repo *r, const char *name, const uint8_t digest[SHA256_LEN])
{
    if (repo_chunk_key(r))
        return 0;
    char got[REPO_CHUNK_NAME_LEN + 1];
    hex_encode(digest, SHA256_LEN, got);
    if (strcmp(got, name) != 0)
        return err_set(ERR_INTEGRITY,
                       "chunk %s in repository \"%s\" holds other content (its name would be %s)",
                       name, repo_name(r), got);
    return 0;
}

int repo_chunk_get(struct repo *r, const char *name, storage_sink_fn sink, void *ctx,
                   uint8_t sha256_out[SHA256_LEN])
{
    char path[96];
    uint8_t digest[SHA256_LEN];
    int rc = repo_chunk_path(name, path, sizeof(path));
    if (rc == 0)
        rc = repo_object_read(r, path, sink, ctx, digest, NULL);
    if (rc == 0 && sha256_out)
        memcpy(sha256_out, digest, SHA256_LEN);
    return rc < 0 ? rc : check_name(r, name, digest);
}

int repo_chunk_get_into(struct repo *r, const char *name, uint8_t *dst, size_t cap, size_t *len,
                        uint8_t sha256_out[SHA256_LEN])
{
    char path[96];
    uint8_t digest[SHA256_LEN];
    size_t got = 0;
    int rc = repo_chunk_path(name, path, sizeof(path));
    if (rc == 0)
        rc = repo_object_read_into(r, path, dst, cap, &got, digest);
    if (rc == 0)
        rc = check_name(r, name, digest);
    if (rc == 0) {
        *len = got;
        if (sha256_out)
            memcpy(sha256_out, digest, SHA256_LEN);
    }
    return rc;
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

int repo_chunk_exists(struct repo *r, const char *name)
{
    char path[96];
    int rc = repo_chunk_path(name, path, sizeof(path));
    return rc < 0 ? rc : repo_object_exists(r, path);
}
