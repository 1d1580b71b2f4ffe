/*
 * store.c — temporary files, and the workers' side of a backup run (run_int.h): each
 * chunk named (or its names taken from the fingerprint cache), an incremental's patched
 * chunk completed from its parent, and stored in every repository that lacks it.
 */
#include "run_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- temp files ---------------------------------------------------------------------- */

int backup_temp_fd(const char *dir, const char *what, int *out)
{
    char *path = xasprintf("%s/pgark-backup-%s.XXXXXX", dir, what);
    int fd = mkstemp(path);
    int rc = 0;
    if (fd < 0)
        rc = err_set_errno(ERR_IO, errno, "could not create a temporary file in \"%s\"", dir);
    else
        unlink(path);
    free(path);
    *out = fd;
    return rc;
}

FILE *backup_temp_file(const char *dir, const char *what)
{
    int fd;
    if (backup_temp_fd(dir, what, &fd) < 0)
        return NULL;
    FILE *f = fdopen(fd, "w+");
    if (!f) {
        err_set_errno(ERR_IO, errno, "could not open a temporary file in \"%s\"", dir);
        close(fd);
    }
    return f;
}

/* --- workers ------------------------------------------------------------------------- */

uint8_t *backup_name_slot(struct bk_file *f, size_t group, uint64_t index)
{
    return f->names + (group * f->nchunks + index) * SHA256_LEN;
}

/* Name chunk index of f from the fingerprint cache when it is unchanged since the last
 * backup and every repository still holds it. True if named. */
static bool name_from_cache(struct backup_run *run, struct bk_file *f, const struct chunk *ch)
{
    uint8_t *tag = f->tags + ch->index * FP_TAG_LEN;
    bool held = true;

    fpcache_tag(run->fp, ch, tag);
    const uint8_t *m = fpcache_match(run->fp, f->old, ch->index, ch->len, tag);
    if (!m)
        return false;
    pthread_mutex_lock(&run->lock);
    for (size_t i = 0; held && i < run->p.ntargets; i++)
        held = run->ts[i].t->failed ||
               chunkset_has(run->ts[i].known, fpcache_digest(f->old, m, run->ts[i].group));
    if (held)
        run->totals.unchanged++;
    pthread_mutex_unlock(&run->lock);
    for (size_t b = 0; held && b < run->nblocks; b++)
        memcpy(backup_name_slot(f, b, ch->index), fpcache_digest(f->old, m, b), SHA256_LEN);
    return held;
}

/* What one pass over a chunk's bytes feeds (chunk_gather_visit). */
struct chunk_hashes {
    struct gmac_ctx *tag;   /* the fingerprint, when the cache had none to compare */
    struct sha256_ctx *sha; /* the plain SHA-256, when no repository names with a key */
};

static void hash_piece(void *arg, const uint8_t *data, size_t len)
{
    struct chunk_hashes *h = arg;
    if (h->tag)
        gmac_ctx_update(h->tag, data, len);
    if (h->sha)
        sha256_ctx_update(h->sha, data, len);
}

/*
 * Name chunk index of f for every group, and fingerprint it into tag unless NULL. The
 * chunk is gathered on the way: one that must be hashed is nearly always new, and a
 * new chunk is stored in one piece, so each received piece is read once, copied and
 * hashed from the copy while it is in the cache (hashing the pieces, then gathering
 * them, read every byte from memory twice). Keyed names (HMAC) are computed after, on
 * the bytes in one piece.
 */
static void name_chunk(struct backup_run *run, struct bk_file *f, struct chunk *ch, uint8_t *tag)
{
    uint64_t index = ch->index;
    struct chunk_hashes h = {
        .tag = tag ? fpcache_tag_start(run->fp) : NULL,
        .sha = run->keyed ? NULL : sha256_ctx_new(),
    };

    chunk_gather_visit(ch, hash_piece, &h);
    if (h.tag) {
        gmac_ctx_final(h.tag, tag);
        gmac_ctx_free(h.tag);
    }
    if (h.sha) { /* unkeyed: one group, the plain one */
        sha256_ctx_final(h.sha, backup_name_slot(f, run->plain, index));
        sha256_ctx_free(h.sha);
        return;
    }
    /* Every repository encrypted: the first name and the plain digest the envelope
     * needs in one pass (hash.h). */
    for (size_t g = 0; g < run->ngroups; g++) {
        if (g == 0 && run->plain == run->ngroups)
            sha256_and_hmac(run->group_keys[0], CHUNK_KEY_LEN, ch->data, ch->len,
                            backup_name_slot(f, run->plain, index), backup_name_slot(f, 0, index));
        else if (run->group_keys[g])
            chunk_digest(run->group_keys[g], ch->data, ch->len, backup_name_slot(f, g, index));
        else
            chunk_sha256(ch, backup_name_slot(f, g, index));
    }
}

static int rebuild_chunk(struct backup_run *run, const struct bk_file *f, struct chunk *ch,
                         const struct rebuild *rb)
{
    uint8_t *scratch = NULL;
    size_t have = 0;
    int rc = 0;

    if (rb->from_parent) {
        char hex[SHA256_HEX_LEN + 1];
        uint8_t sha[SHA256_LEN];
        size_t cap = run->p.chunk_size + SHA256_LEN;
        scratch = xmalloc(cap);
        hex_encode(rb->name, SHA256_LEN, hex);
        rc = repo_chunk_get_into(run->parent->read_repo, hex, scratch, cap, &have, sha);
        if (rc < 0) {
            err_context("while reading chunk %llu of \"%s\" of backup \"%s\" from repository "
                        "\"%s\"",
                        (unsigned long long)ch->index, f->path, run->parent->label,
                        repo_name(run->parent->read_repo));
            goto out;
        }
        if (have > rb->keep)
            have = rb->keep;
        pthread_mutex_lock(&run->lock);
        run->totals.parent_reads++;
        pthread_mutex_unlock(&run->lock);
    }
    for (size_t off = 0, b = 0; off < ch->len; off += PG_INCR_BLCKSZ, b++) {
        size_t len = ch->len - off < PG_INCR_BLCKSZ ? ch->len - off : PG_INCR_BLCKSZ;
        if (rb->changed[b / 8] & (1u << (b % 8)))
            continue;
        size_t from = off < have ? (have - off < len ? have - off : len) : 0;
        if (from)
            memcpy(ch->data + off, scratch + off, from);
        memset(ch->data + off + from, 0, len - from);
    }
out:
    free(scratch);
    return rc;
}

int backup_store_chunk(void *arg, void *job, struct chunk *ch, bool skipped)
{
    struct backup_run *run = arg;
    struct bk_file *f = job;
    uint64_t index = ch->index;
    int rc = 0;

    if (ch->aux) {
        if (!skipped && (rc = rebuild_chunk(run, f, ch, ch->aux)) < 0)
            skipped = true;
        backup_rebuild_free(ch->aux);
        ch->aux = NULL;
    }
    if (!skipped) {
        uint8_t *tag = run->fp && f->tags ? f->tags + index * FP_TAG_LEN : NULL;
        /* With a record of the file from the last backup the fingerprint comes first,
         * alone: an unchanged chunk is then neither hashed nor copied. */
        if (!(tag && f->old && name_from_cache(run, f, ch)))
            name_chunk(run, f, ch, tag && !f->old ? tag : NULL);
    }
    for (size_t i = 0; !skipped && rc == 0 && i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        const uint8_t *name = backup_name_slot(f, ts->group, index);

        pthread_mutex_lock(&run->lock);
        bool dropped = ts->t->failed;
        bool fresh = !dropped && chunkset_add(ts->known, name);
        if (!fresh && !dropped)
            ts->t->reused_chunks++;
        pthread_mutex_unlock(&run->lock);
        if (!fresh)
            continue;
        char hex[SHA256_HEX_LEN + 1];
        uint64_t stored = 0;
        hex_encode(name, SHA256_LEN, hex);
        /* Stored: the bytes in one piece, the envelope's digest after them (a payload).
         * A hashed chunk was gathered by its naming; one named from the cache is
         * gathered only here, so one every repository holds is never copied. */
        chunk_gather(ch);
        memcpy(ch->data + ch->len, backup_name_slot(f, run->plain, index), SHA256_LEN);
        rc = repo_chunk_put_payload(ts->t->repo, hex, ch->data, ch->len, &stored);
        if (rc < 0) {
            err_context("while storing chunk %llu of \"%s\" in repository \"%s\"",
                        (unsigned long long)index, f->path, repo_name(ts->t->repo));
            rc = backup_run_drop(run, ts->t);
            continue;
        }
        pthread_mutex_lock(&run->lock);
        ts->t->new_chunks++;
        ts->t->stored_bytes += stored;
        pthread_mutex_unlock(&run->lock);
    }
    chunk_release(ch);
    pthread_mutex_lock(&run->lock);
    f->pending--;
    pthread_mutex_unlock(&run->lock);
    return rc;
}
