/*
 * fpcache.c — the backup fingerprint cache (see backup_int.h).
 *
 * File, all integers little-endian:
 *   "PGARKFP1", u64 system identifier, u64 chunk size, u32 blocks,
 *   key [32], nonce [12], block ids [blocks][32],
 *   per file: u32 path length (1..4096), path, u64 size,
 *             tags [nchunks][16], digests [blocks][nchunks][32]
 *             (nchunks follows from the size and the chunk size; files with none are left out),
 *   u32 0, then the SHA-256 of every byte before it.
 * The new cache is written to <path>.tmp under an exclusive lock on that file, then
 * fsynced and renamed over <path>: one backup of a cluster writes it at a time, and a
 * reader sees the old cache or the new one, whole. Anything that does not check out
 * (the trailer's digest, a length, another system, chunk size or set of naming keys) makes
 * the whole file unused: the backup then hashes every chunk.
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_MAGIC "PGARKFP1"
#define FP_MAGIC_LEN 8
#define FP_PATH_MAX 4096
#define FP_FILE_MAX (1ULL << 32) /* 4 GiB: about 90 TB of data with 1 MiB chunks */

struct fp_file {
    const char *path; /* in the loaded file: path_len bytes, not terminated */
    size_t path_len;
    uint64_t size;
    uint64_t nchunks;
    const uint8_t *tags;    /* nchunks * FP_TAG_LEN */
    const uint8_t *digests; /* blocks * nchunks * SHA256_LEN */
};

struct fpcache {
    uint64_t chunk_size;
    size_t nblocks;
    uint8_t key[GMAC_KEY_LEN];
    uint8_t nonce[GMAC_NONCE_LEN];

    uint8_t *old; /* the previous cache, read whole */
    size_t old_len;
    struct fp_file *files;
    size_t nfiles;
    size_t *slots; /* open addressing over files: index + 1, 0 when empty */
    size_t nslots;

    char *path;
    char *tmp_path;
    int fd; /* <path>.tmp, locked */
    FILE *out;
    struct sha256_ctx *sum;
    bool failed; /* the new cache could not be written: it is dropped */
    bool committed;
};

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t path_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

static uint64_t chunks_of(uint64_t size, uint64_t chunk_size)
{
    return size / chunk_size + (size % chunk_size != 0);
}

/* --- reading the previous cache ------------------------------------------------------ */

static void index_files(struct fpcache *c)
{
    c->nslots = 16;
    while (c->nslots < c->nfiles * 2)
        c->nslots *= 2;
    c->slots = xcalloc(c->nslots, sizeof(*c->slots));
    for (size_t i = 0; i < c->nfiles; i++) {
        size_t s = path_hash(c->files[i].path, c->files[i].path_len) & (c->nslots - 1);
        while (c->slots[s])
            s = (s + 1) & (c->nslots - 1);
        c->slots[s] = i + 1;
    }
}

/* Parse the previous cache in c->old. 0; ERR_INTEGRITY when damaged; ERR_MISMATCH when
 * it is sound but for another system, chunk size or set of naming keys. */
static int parse(struct fpcache *c, const struct fp_ident *id)
{
    const uint8_t *p = c->old;
    size_t left = c->old_len;
    size_t head = FP_MAGIC_LEN + 8 + 8 + 4 + GMAC_KEY_LEN + GMAC_NONCE_LEN;
    uint8_t md[SHA256_LEN];
    size_t cap = 0;

    if (left < head + 4 + SHA256_LEN || memcmp(p, FP_MAGIC, FP_MAGIC_LEN) != 0)
        return err_set(ERR_INTEGRITY, "not a fingerprint cache, or cut short");
    sha256(p, left - SHA256_LEN, md);
    if (memcmp(md, p + left - SHA256_LEN, SHA256_LEN) != 0)
        return err_set(ERR_INTEGRITY, "its checksum does not match its content");
    left -= SHA256_LEN;
    if (get_u64(p + 8) != id->system_identifier || get_u64(p + 16) != id->chunk_size ||
        get_u32(p + 24) != id->nblocks || left < head + id->nblocks * SHA256_LEN + 4 ||
        memcmp(p + head, id->block_ids, id->nblocks * SHA256_LEN) != 0)
        return err_set(ERR_MISMATCH, "it was written for another system, chunk size or set of "
                                     "repository keys");
    memcpy(c->key, p + 28, GMAC_KEY_LEN);
    memcpy(c->nonce, p + 28 + GMAC_KEY_LEN, GMAC_NONCE_LEN);
    p += head + id->nblocks * SHA256_LEN;
    left -= head + id->nblocks * SHA256_LEN;

    size_t per_chunk = FP_TAG_LEN + id->nblocks * SHA256_LEN;
    for (;;) {
        if (left < 4)
            goto cut;
        uint32_t plen = get_u32(p);
        p += 4;
        left -= 4;
        if (plen == 0)
            break;
        if (plen > FP_PATH_MAX || left < (size_t)plen + 8)
            goto cut;
        struct fp_file f = {.path = (const char *)p, .path_len = plen};
        f.size = get_u64(p + plen);
        p += plen + 8;
        left -= (size_t)plen + 8;
        f.nchunks = chunks_of(f.size, id->chunk_size);
        if (f.nchunks == 0 || f.nchunks > left / per_chunk)
            goto cut;
        f.tags = p;
        f.digests = p + f.nchunks * FP_TAG_LEN;
        p += f.nchunks * per_chunk;
        left -= f.nchunks * per_chunk;
        if (c->nfiles == cap) {
            cap = cap ? cap * 2 : 256;
            c->files = xrealloc(c->files, cap * sizeof(*c->files));
        }
        c->files[c->nfiles++] = f;
    }
    if (left != 0)
        goto cut;
    index_files(c);
    return 0;
cut:
    c->nfiles = 0;
    return err_set(ERR_INTEGRITY, "a record is cut short or too long");
}

/* Read the previous cache, if any; one that is not used is said so and dropped. */
static void load(struct fpcache *c, const struct fp_ident *id)
{
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0) {
        if (errno != ENOENT)
            log_warn("fingerprint cache \"%s\" not used: %s; every chunk is hashed", c->path,
                     strerror(errno));
        return;
    }
    errno = 0;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > FP_FILE_MAX) {
        log_warn("fingerprint cache \"%s\" not used: %s; every chunk is hashed", c->path,
                 errno ? strerror(errno) : "larger than 4 GiB");
        close(fd);
        return;
    }
    c->old_len = (size_t)st.st_size;
    c->old = xmalloc(c->old_len ? c->old_len : 1);
    size_t got = 0;
    while (got < c->old_len) {
        ssize_t n = read(fd, c->old + got, c->old_len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    int rc = got == c->old_len ? parse(c, id) : err_set_errno(ERR_IO, errno, "could not read it");
    if (rc < 0) {
        if (err_kind() == ERR_MISMATCH)
            log_detail("fingerprint cache \"%s\" not used: %s", c->path, err_message());
        else
            log_warn("fingerprint cache \"%s\" not used: %s; every chunk is hashed", c->path,
                     err_message());
        err_clear();
        secure_free(c->old, c->old_len);
        c->old = NULL;
        c->old_len = 0;
    }
}

/* --- writing the new one ------------------------------------------------------------- */

static void put(struct fpcache *c, const void *data, size_t len)
{
    if (c->failed || len == 0)
        return;
    if (fwrite(data, 1, len, c->out) != len) {
        log_warn("could not write fingerprint cache \"%s\": %s; the previous one is kept",
                 c->tmp_path, strerror(errno));
        c->failed = true;
        return;
    }
    sha256_ctx_update(c->sum, data, len);
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    return err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", dir);
}

struct fpcache *fpcache_open(const char *dir, const struct fp_ident *id)
{
    struct fpcache *c = xcalloc(1, sizeof(*c));
    char *parent = xstrdup(dir);
    char *slash = strrchr(parent, '/');

    c->fd = -1;
    c->chunk_size = id->chunk_size;
    c->nblocks = id->nblocks;
    c->path = xasprintf("%s/backup-fingerprints", dir);
    c->tmp_path = xasprintf("%s.tmp", c->path);
    if (slash && slash != parent)
        *slash = '\0';
    /* Digests from a file another user could write would name chunks wrongly: the
     * spool and its cluster's directory must be ours. */
    if ((slash && slash != parent && privfs_check_dir(parent, "spool directory") < 0) ||
        privfs_check_dir(dir, "spool directory") < 0)
        goto fail;
    if ((slash && slash != parent && make_dir(parent) < 0) || make_dir(dir) < 0)
        goto fail;
    c->fd = open(c->tmp_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        err_set_errno(ERR_IO, errno, "could not open \"%s\"", c->tmp_path);
        goto fail;
    }
    if (flock(c->fd, LOCK_EX | LOCK_NB) < 0) {
        err_set_errno(ERR_RUNTIME, errno, "another backup of the cluster holds \"%s\"",
                      c->tmp_path);
        close(c->fd);
        c->fd = -1;
        goto fail;
    }
    if (ftruncate(c->fd, 0) < 0 || !(c->out = fdopen(c->fd, "w"))) {
        err_set_errno(ERR_IO, errno, "could not write \"%s\"", c->tmp_path);
        goto fail;
    }
    load(c, id);
    if (!c->old && random_bytes(c->key, sizeof(c->key)) < 0)
        goto fail;
    if (!c->old && random_bytes(c->nonce, sizeof(c->nonce)) < 0)
        goto fail;
    c->sum = sha256_ctx_new();

    uint8_t head[FP_MAGIC_LEN + 8 + 8 + 4];
    memcpy(head, FP_MAGIC, FP_MAGIC_LEN);
    put_le(head + 8, id->system_identifier, 8);
    put_le(head + 16, id->chunk_size, 8);
    put_le(head + 24, id->nblocks, 4);
    put(c, head, sizeof(head));
    put(c, c->key, sizeof(c->key));
    put(c, c->nonce, sizeof(c->nonce));
    put(c, id->block_ids, id->nblocks * SHA256_LEN);
    free(parent);
    return c;
fail:
    free(parent);
    fpcache_free(c);
    return NULL;
}

const struct fp_file *fpcache_find(const struct fpcache *c, const char *path)
{
    size_t len = strlen(path);
    if (c->nfiles == 0)
        return NULL;
    for (size_t s = path_hash(path, len) & (c->nslots - 1); c->slots[s];
         s = (s + 1) & (c->nslots - 1)) {
        const struct fp_file *f = &c->files[c->slots[s] - 1];
        if (f->path_len == len && memcmp(f->path, path, len) == 0)
            return f;
    }
    return NULL;
}

void fpcache_tag(const struct fpcache *c, const struct chunk *ch, uint8_t out[FP_TAG_LEN])
{
    struct gmac_ctx *g = gmac_ctx_new(c->key, c->nonce);
    if (ch->npieces == 0)
        gmac_ctx_update(g, ch->data, ch->len);
    for (size_t i = 0; i < ch->npieces; i++)
        gmac_ctx_update(g, ch->pieces[i].data, ch->pieces[i].len);
    gmac_ctx_final(g, out);
    gmac_ctx_free(g);
}

const uint8_t *fpcache_match(const struct fpcache *c, const struct fp_file *f, uint64_t index,
                             size_t len, const uint8_t tag[FP_TAG_LEN])
{
    if (!f || index >= f->nchunks)
        return NULL;
    uint64_t old_len = f->size - index * c->chunk_size;
    if (old_len > c->chunk_size)
        old_len = c->chunk_size;
    if (old_len != len || memcmp(f->tags + index * FP_TAG_LEN, tag, FP_TAG_LEN) != 0)
        return NULL;
    return f->digests + index * SHA256_LEN;
}

const uint8_t *fpcache_digest(const struct fp_file *f, const uint8_t *match, size_t block)
{
    return match + block * f->nchunks * SHA256_LEN;
}

void fpcache_add(struct fpcache *c, const char *path, uint64_t size, const uint8_t *tags,
                 const uint8_t *digests)
{
    uint64_t nchunks = chunks_of(size, c->chunk_size);
    size_t plen = strlen(path);
    uint8_t head[4];
    uint8_t sz[8];

    if (nchunks == 0 || plen == 0 || plen > FP_PATH_MAX)
        return;
    put_le(head, plen, 4);
    put_le(sz, size, 8);
    put(c, head, sizeof(head));
    put(c, path, plen);
    put(c, sz, sizeof(sz));
    put(c, tags, nchunks * FP_TAG_LEN);
    put(c, digests, nchunks * c->nblocks * SHA256_LEN);
}

void fpcache_keep(struct fpcache *c, const char *path)
{
    const struct fp_file *f = fpcache_find(c, path);
    if (!f)
        return;
    /* The record as it was loaded: its length, path, size, tags and digests in a row. */
    const uint8_t *start = (const uint8_t *)f->path - 4;
    const uint8_t *end = f->digests + c->nblocks * f->nchunks * SHA256_LEN;
    put(c, start, (size_t)(end - start));
}

void fpcache_commit(struct fpcache *c)
{
    uint8_t end[4] = {0};
    uint8_t md[SHA256_LEN];
    char *dir = xstrdup(c->path);

    put(c, end, sizeof(end));
    if (!c->failed) {
        sha256_ctx_final(c->sum, md);
        c->failed = fwrite(md, 1, sizeof(md), c->out) != sizeof(md) || fflush(c->out) != 0 ||
                    fsync(c->fd) != 0 || rename(c->tmp_path, c->path) != 0;
        if (c->failed)
            log_warn("could not write fingerprint cache \"%s\": %s; the previous one is kept",
                     c->tmp_path, strerror(errno));
    }
    if (!c->failed) {
        c->committed = true;
        *strrchr(dir, '/') = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* a lost rename only costs the next backup its cache */
            close(dfd);
        }
    }
    free(dir);
}

void fpcache_free(struct fpcache *c)
{
    if (!c)
        return;
    if (c->fd >= 0 && !c->committed)
        unlink(c->tmp_path); /* still ours: the lock is held until the close below */
    if (c->out)
        fclose(c->out);
    else if (c->fd >= 0)
        close(c->fd);
    sha256_ctx_free(c->sum);
    if (c->old)
        secure_free(c->old, c->old_len);
    secure_zero(c->key, sizeof(c->key));
    free(c->files);
    free(c->slots);
    free(c->path);
    free(c->tmp_path);
    free(c);
}
