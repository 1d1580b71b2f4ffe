/*
 * pieces.c — the pieces of the files restore writes, on the threads of the common pool
 * (pool.h): a piece is a few chunks of one file, fetched side by side into the worker's
 * buffer (each verified as it is read, from another repository when damaged here, or
 * copied from the cache of repeated chunks) and written at their place: the whole piece
 * in one write for a file opened O_DIRECT, else chunk by chunk; with delta, a chunk
 * already on disk is kept. The file is checked by whichever piece finishes it, and
 * handed to the syncer (syncer.c) to be made durable (writer.c's header tells the
 * whole). The pool keeps no order of completion: the hash of a file's
 * plaintext, where it is needed, is fed in piece order by the hash turn (hash_in_turn).
 * A failure is the pool's: the first one stops every piece and reaches the reading
 * thread (writer_restore).
 */
#include "writer_int.h"

#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int pwrite_all(int fd, const uint8_t *data, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, data, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static ssize_t pread_full(int fd, uint8_t *data, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, data + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Every piece done (and hashed): check the whole file; durability is the syncer's. */
int writer_file_check(struct writer *w, struct wfile *f)
{
    uint8_t got[SHA256_LEN];
    bool check = f->digest_kind == MANIFEST_DIGEST_CHUNKS || f->sha;
    int rc = 0;
    if (f->digest_kind == MANIFEST_DIGEST_CHUNKS)
        manifest_chunks_digest(f->plain, f->n_chunks, got);
    else if (f->sha)
        sha256_ctx_final(f->sha, got);
    if (check && memcmp(got, f->digest, SHA256_LEN) != 0) {
        rc = err_set(ERR_INTEGRITY,
                     "file \"%s\" restored from repository \"%s\" does not match the SHA-256 "
                     "of the backup manifest",
                     f->path, repo_name(w->o->repo));
        goto out;
    }
    /* A short tail went down padded to DIRECT_ALIGN: the file gets its size back. */
    if (f->direct && atomic_load(&f->changed) && f->size % DIRECT_ALIGN &&
        ftruncate(f->fd, (off_t)f->size) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not size \"%s/%s\"", w->o->pgdata, f->path);
        goto out;
    }
    f->checked = true;
out:
    return rc;
}

void writer_file_free(struct wfile *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    pthread_mutex_destroy(&f->lock);
    sha256_ctx_free(f->sha);
    free(f->path);
    free(f->chunks);
    free(f->plain);
    free(f);
}

/* One piece of f is done with (or dropped): true when it was the last, and f is to be
 * freed by the caller. */
static bool piece_done(struct wfile *f)
{
    pthread_mutex_lock(&f->lock);
    bool last = --f->pieces_left == 0;
    pthread_mutex_unlock(&f->lock);
    return last;
}

/* Feed the rest of the piece's verified bytes to the file's digest once the pieces
 * before it have fed theirs (pieces leave the queue in order, so the earliest piece in
 * flight never waits; it hashes its chunks as they come, see do_piece). True when this
 * was the last piece of the file; false after a failure. */
static bool hash_in_turn(struct writer *w, struct wfile *f, size_t piece, const uint8_t *data,
                         size_t len)
{
    pthread_mutex_lock(&w->lock);
    while (atomic_load(&f->hash_next) != piece && !writer_failed(w))
        pthread_cond_wait(&w->turn, &w->lock);
    bool mine = atomic_load(&f->hash_next) == piece && !writer_failed(w);
    pthread_mutex_unlock(&w->lock);
    if (!mine)
        return false;
    /* Only the piece in turn touches f->sha: no lock needed while hashing. */
    sha256_ctx_update(f->sha, data, len);
    pthread_mutex_lock(&w->lock);
    atomic_store(&f->hash_next, piece + 1);
    pthread_cond_broadcast(&w->turn);
    pthread_mutex_unlock(&w->lock);
    return piece + 1 == f->pieces;
}

/* Chunk name of len bytes from r into dst (which has REPO_CHUNK_GET_SLACK bytes more). */
static int get_chunk(struct repo *r, const char *name, uint8_t *dst, size_t len, uint8_t *plain)
{
    size_t got = 0;
    int rc = repo_chunk_get_into(r, name, dst, len + REPO_CHUNK_GET_SLACK, &got, plain);
    if (rc == 0 && got != len)
        rc = err_set(ERR_INTEGRITY,
                     "chunk %s in repository \"%s\" has %zu bytes, the manifest "
                     "expects %zu",
                     name, repo_name(r), got, len);
    return rc;
}

/* Chunk name (raw) of f from the repository, or from another one when it is damaged or
 * missing there, into dst (len bytes, REPO_CHUNK_GET_SLACK more after them). */
static int fetch_chunk(struct writer *w, struct wfile *f, const char *name, const uint8_t *raw,
                       uint8_t *dst, size_t len, uint8_t *plain)
{
    int rc = get_chunk(w->o->repo, name, dst, len, plain);
    if (rc < 0 && (err_kind() == ERR_INTEGRITY || err_kind() == ERR_NOT_FOUND) && w->o->nalts) {
        /* Damaged or missing here: another repository's copy will do. */
        enum err_kind kind = err_kind();
        char *first = err_format();
        err_clear();
        for (size_t a = 0; rc < 0 && a < w->o->nalts; a++) {
            rc = get_chunk(w->o->alts[a], name, dst, len, plain);
            if (rc == 0)
                log_warn("chunk %s of file \"%s\" read from repository \"%s\": in repository "
                         "\"%s\" %s",
                         name, f->path, repo_name(w->o->alts[a]), repo_name(w->o->repo),
                         kind == ERR_NOT_FOUND ? "it is missing" : "it is damaged");
            else
                err_clear();
        }
        if (rc < 0) {
            err_set(kind, "%s", first);
            err_context("no other repository of the cluster holds it sound");
        }
        free(first);
    }
    if (rc < 0 && w->o->bad_out && (err_kind() == ERR_INTEGRITY || err_kind() == ERR_NOT_FOUND)) {
        pthread_mutex_lock(&w->lock);
        chunkset_add(w->o->bad_out, raw);
        pthread_mutex_unlock(&w->lock);
    }
    if (rc < 0)
        return err_context("while restoring file \"%s\" from repository \"%s\"", f->path,
                           repo_name(w->o->repo));
    return 0;
}

/* Chunk i of f into dst and its plaintext SHA-256 into its slot of f->plain: with delta
 * kept when the bytes on disk already have its name, else copied from the cache of
 * repeated chunks or fetched; 1 when it was written. */
static int do_chunk(struct writer *w, struct wfile *f, size_t i, uint8_t *dst, size_t len)
{
    uint64_t off = (uint64_t)i * w->chunk_size;
    const uint8_t *raw = f->chunks + i * SHA256_LEN;
    uint8_t *plain = f->plain ? f->plain + i * SHA256_LEN : NULL;
    struct chunkcache *cache = w->o->cache;
    char name[SHA256_HEX_LEN + 1];
    hex_encode(raw, SHA256_LEN, name);
    if (w->o->delta && pread_full(f->fd, dst, len, off) == (ssize_t)len) {
        char have[REPO_CHUNK_NAME_LEN + 1];
        repo_chunk_name(w->o->repo, dst, len, have);
        if (strcmp(have, name) == 0) {
            /* Kept: an HMAC name says nothing of the plaintext's SHA-256. */
            if (plain && repo_encrypted(w->o->repo))
                sha256(dst, len, plain);
            else if (plain)
                memcpy(plain, raw, SHA256_LEN);
            if (cache)
                chunkcache_kept(cache, raw, dst, len, plain);
            return 0;
        }
    }
    bool owner = false;
    if (cache && chunkcache_get(cache, raw, dst, len, plain, &owner) == 1) {
        atomic_fetch_add(&w->chunks_reused, 1);
    } else {
        /* dst has REPO_CHUNK_GET_SLACK bytes after the chunk's place (the next chunk's,
         * not fetched yet, or the piece buffer's spare end): the chunk decodes straight
         * in. */
        int rc = fetch_chunk(w, f, name, raw, dst, len, plain);
        if (cache)
            chunkcache_done(cache, raw, owner, rc == 0 ? dst : NULL, len, plain);
        if (rc < 0)
            return rc;
        atomic_fetch_add(&w->chunks_fetched, 1);
    }
    if (f->direct)
        return 1; /* the whole piece at once (do_piece) */
    int e = pwrite_all(f->fd, dst, len, off);
    if (e < 0)
        return err_set_errno(ERR_IO, -e, "could not write \"%s/%s\"", w->o->pgdata, f->path);
    return 1;
}

/* buf holds a whole piece and REPO_CHUNK_GET_SLACK bytes more: the chunks land side by
 * side, as in the file. */
static int do_piece(struct writer *w, struct job *j, uint8_t *buf)
{
    struct wfile *f = j->f;
    uint64_t start = (uint64_t)j->first * w->chunk_size;
    size_t filled = 0, hashed = 0;
    bool wrote = false;
    int rc = 0;
    for (size_t i = j->first; i < j->first + j->count && rc == 0; i++) {
        if (writer_failed(w))
            break;
        uint64_t off = (uint64_t)i * w->chunk_size;
        size_t len = (size_t)(f->size - off < w->chunk_size ? f->size - off : w->chunk_size);
        rc = do_chunk(w, f, i, buf + filled, len);
        if (rc > 0) {
            wrote = true;
            atomic_store(&f->changed, true);
            atomic_fetch_add(&w->bytes_written, len);
            rc = 0;
        }
        filled += len;
        progress_add(w->progress, len);
        /* The piece in turn hashes as it goes (the turn, once here, stays until this
         * piece passes it on); the others wait for theirs with the bytes in buf. */
        if (rc == 0 && f->sha && atomic_load(&f->hash_next) == j->piece) {
            sha256_ctx_update(f->sha, buf + hashed, filled - hashed);
            hashed = filled;
        }
    }
    if (rc == 0 && wrote && f->direct) {
        /* O_DIRECT: the piece in one write, straight from buf (a file's short tail padded
         * with zeros to the next boundary, in its slot's room, and cut off at the end). */
        size_t wlen = (filled + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
        memset(buf + filled, 0, wlen - filled);
        int e = pwrite_all(f->fd, buf, wlen, start);
        if (e == -EINVAL) {
            /* Opened O_DIRECT but refused (alignment the file system wants larger): this
             * file and the next through the page cache. */
            int fl = fcntl(f->fd, F_GETFL);
            if (fl >= 0 && fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) == 0)
                e = pwrite_all(f->fd, buf, wlen, start);
            atomic_store(&w->direct, false);
        }
        if (e < 0)
            rc = err_set_errno(ERR_IO, -e, "could not write \"%s/%s\"", w->o->pgdata, f->path);
    }
#ifdef SYNC_FILE_RANGE_WRITE
    /* Start the writeback of the piece now, so that the fsync at the end of the file has
     * little left to wait for (a hint: durability still comes from that fsync). */
    if (rc == 0 && wrote && !f->direct)
        (void)sync_file_range(f->fd, (off_t)start, (off_t)filled, SYNC_FILE_RANGE_WRITE);
#else
    (void)start;
    (void)wrote;
#endif
    /* The piece that checks the file is the last one hashed (with f->sha) or the last one
     * done; the last one done hands a checked file to the syncer (which frees it), or frees
     * it. */
    if (f->sha) {
        if (rc == 0 && !writer_failed(w) &&
            hash_in_turn(w, f, j->piece, buf + hashed, filled - hashed))
            rc = writer_file_check(w, f);
    }
    if (piece_done(f)) {
        if (!f->sha && rc == 0 && !writer_failed(w))
            rc = writer_file_check(w, f);
        if (f->checked && !writer_failed(w)) {
            int e = writer_sync_file(w, f);
            if (rc == 0)
                rc = e;
        } else {
            writer_file_free(f);
        }
    }
    return rc;
}

static void *piece_buffer_new(void *arg)
{
    struct writer *w = arg;
    /* Aligned for O_DIRECT: each chunk's slot starts at a multiple of the chunk size. */
    void *p = NULL;
    if (posix_memalign(&p, DIRECT_ALIGN, w->per_piece * w->chunk_size + REPO_CHUNK_GET_SLACK))
        p = xmalloc(w->per_piece * w->chunk_size + REPO_CHUNK_GET_SLACK);
    return p;
}

static void piece_buffer_free(void *arg, void *local)
{
    (void)arg;
    free(local);
}

/* A job: one piece. After a failure do_piece only counts it down (and frees its file
 * with the last). */
static int run_piece(void *arg, void *local, void *job, bool canceled)
{
    struct writer *w = arg;
    struct job j = *(struct job *)job;
    (void)canceled; /* then writer_failed(w) holds, and do_piece stops at once */
    free(job);
    return do_piece(w, &j, local);
}

void writer_wake(void *arg)
{
    struct writer *w = arg;
    if (w->o->cache)
        chunkcache_cancel(w->o->cache);
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->turn);
    pthread_mutex_unlock(&w->lock);
}

static const struct pool_ops piece_ops = {
    .what = "restore",
    .run = run_piece,
    .thread_init = piece_buffer_new,
    .thread_fini = piece_buffer_free,
    .on_cancel = writer_wake,
};

int writer_queue_pieces(struct writer *w, struct wfile *f)
{
    size_t per = w->per_piece;
    f->pieces = f->pieces_left = (f->n_chunks + per - 1) / per;
    size_t pieces = f->pieces;
    for (size_t p = 0; p < pieces; p++) {
        struct job *j = xmalloc(sizeof(*j));
        *j = (struct job){f, p, p * per, f->n_chunks - p * per < per ? f->n_chunks - p * per : per};
        int rc = pool_submit(w->pool, j);
        if (rc < 0) {
            free(j);
            /* Not queued: account for the pieces that never will be. */
            pthread_mutex_lock(&f->lock);
            f->pieces_left -= pieces - p;
            bool last = f->pieces_left == 0;
            pthread_mutex_unlock(&f->lock);
            if (last)
                writer_file_free(f);
            return rc;
        }
    }
    return 0;
}

/* The pool needs the chunk size, which the header (line 1) gives: start it with the
 * first file. */
int writer_start_pool(struct writer *w)
{
    const struct manifest_header *h = manifest_reader_header(w->reader);
    w->chunk_size = h->chunk_size;
    if (!w->chunk_size)
        return err_set(ERR_INTEGRITY, "backup manifest has a chunk size of 0");
    /* Pieces of up to PIECE_BYTES, smaller with many threads (remote storage), and at
     * least one chunk: each thread holds one piece in memory. */
    uint64_t piece = PIECE_BUDGET / (uint64_t)w->nthreads;
    if (piece > PIECE_BYTES)
        piece = PIECE_BYTES;
    if (w->o->piece_bytes)
        piece = w->o->piece_bytes;
    w->per_piece = piece / w->chunk_size ? (size_t)(piece / w->chunk_size) : 1;
    /* Large files bypass the page cache: copying every byte into it was most of the
     * restore's system time, and the data must reach the disk before the restore ends
     * anyway (each file is fsynced). --delta reads what is there and keeps the page
     * cache. */
    atomic_store(&w->direct, !w->o->delta && w->chunk_size % DIRECT_ALIGN == 0);
    if (writer_start_syncer(w) < 0)
        return err_code();
    w->pool = pool_new(&piece_ops, w, w->nthreads, (size_t)w->nthreads * QUEUE_PER_THREAD);
    return w->pool ? 0 : err_code();
}
