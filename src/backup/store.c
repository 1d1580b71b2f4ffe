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
    if (!skipped && !(run->fp && f->tags && name_from_cache(run, f, ch))) {
        if (run->keyed) /* HMAC names are computed on the bytes in one piece */
            chunk_gather(ch);
        /* Every repository encrypted: the first name and the plain digest the envelope
         * needs in one pass (hash.h). */
        for (size_t g = 0; g < run->ngroups; g++) {
            if (g == 0 && run->plain == run->ngroups)
                sha256_and_hmac(run->group_keys[0], CHUNK_KEY_LEN, ch->data, ch->len,
                                backup_name_slot(f, run->plain, index),
                                backup_name_slot(f, 0, index));
            else if (run->group_keys[g])
                chunk_digest(run->group_keys[g], ch->data, ch->len, backup_name_slot(f, g, index));
            else
                chunk_sha256(ch, backup_name_slot(f, g, index));
        }
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
         * A chunk every repository holds is never copied. */
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
