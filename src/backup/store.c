/*
 * store.c — the parts of a backup run (run.c) that store: unlinked temporary files and
 * their copy into a repository, and the workers' side (on the chunk pool's threads):
 * naming each chunk once per naming key and writing it where it is not held yet, then
 * the files whose chunks are all named go into the manifests in stream order.
 */
#include "run_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/units.h"

#include <errno.h>
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

/* Store the first len bytes of fd as object path of r. */
int backup_put_fd(struct repo *r, const char *path, int fd, uint64_t len)
{
    struct repo_writer *w = repo_writer_open(r, path, len);
    uint8_t *buf = NULL;
    uint64_t off = 0;
    int rc = 0;

    if (!w)
        return err_code();
    buf = xmalloc(COPY_BUF);
    while (off < len) {
        size_t want = len - off < COPY_BUF ? (size_t)(len - off) : COPY_BUF;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_set_errno(ERR_IO, errno, "could not read a temporary file")
                       : err_set(ERR_IO, "a temporary file is shorter than expected");
            break;
        }
        if ((rc = repo_writer_write(w, buf, (size_t)n)) < 0)
            break;
        off += (uint64_t)n;
    }
    free(buf);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

/* --- workers ------------------------------------------------------------------------- */

static uint8_t *name_slot(struct bk_file *f, size_t group, uint64_t index)
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
        memcpy(name_slot(f, b, ch->index), fpcache_digest(f->old, m, b), SHA256_LEN);
    return held;
}

int backup_store_chunk(void *arg, void *job, struct chunk *ch, bool skipped)
{
    struct backup_run *run = arg;
    struct bk_file *f = job;
    uint64_t index = ch->index;
    int rc = 0;

    if (!skipped && !(run->fp && name_from_cache(run, f, ch))) {
        if (run->keyed) /* HMAC names are computed on the bytes in one piece */
            chunk_gather(ch);
        for (size_t g = 0; g < run->ngroups; g++) {
            if (run->group_keys[g])
                chunk_digest(run->group_keys[g], ch->data, ch->len, name_slot(f, g, index));
            else
                chunk_sha256(ch, name_slot(f, g, index));
        }
        if (run->plain == run->ngroups) /* every repository is encrypted */
            chunk_sha256(ch, name_slot(f, run->plain, index));
    }
    for (size_t i = 0; !skipped && rc == 0 && i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        const uint8_t *name = name_slot(f, ts->group, index);

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
        memcpy(ch->data + ch->len, name_slot(f, run->plain, index), SHA256_LEN);
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

/* --- manifest lines ------------------------------------------------------------------ */

void backup_file_free(struct bk_file *f)
{
    if (!f)
        return;
    free(f->path);
    free(f->link);
    free(f->names);
    free(f->tags);
    free(f);
}

/* Write out the files at the head of the queue whose chunks are all named. */
int backup_flush_files(struct backup_run *run)
{
    int rc = 0;

    for (;;) {
        pthread_mutex_lock(&run->lock);
        struct bk_file *f = run->head;
        bool ready = f && f->fed && f->pending == 0;
        if (ready) {
            run->head = f->next;
            if (!run->head)
                run->tail = NULL;
        }
        pthread_mutex_unlock(&run->lock);
        if (!ready)
            break;
        uint8_t digest[SHA256_LEN];
        manifest_chunks_digest(f->nchunks ? name_slot(f, run->plain, 0) : NULL, f->nchunks, digest);
        for (size_t i = 0; rc == 0 && i < run->p.ntargets; i++) {
            struct manifest_file mf = {
                .path = f->path,
                .type = f->type,
                .mode = f->mode,
                .size = f->size,
                .mtime = f->mtime,
                .link = f->link,
                .chunks = f->nchunks ? name_slot(f, run->ts[i].group, 0) : NULL,
                .n_chunks = f->nchunks,
                .digest_kind = MANIFEST_DIGEST_CHUNKS,
            };
            memcpy(mf.digest, digest, SHA256_LEN);
            rc = manifest_writer_add(run->ts[i].mw, &mf);
        }
        if (rc == 0 && run->fp && f->nchunks)
            fpcache_add(run->fp, f->path, f->size, f->tags, f->names);
        if (rc == 0) {
            run->totals.files++;
            run->totals.logical_bytes += f->size;
        } else {
            err_context("while adding \"%s\" to the manifest", f->path);
        }
        backup_file_free(f);
        if (rc < 0)
            break;
    }
    return rc;
}
