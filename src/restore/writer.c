/*
 * writer.c — lays a backup down in a data directory.
 *
 * The manifest is read as a stream; each regular file is cut into pieces of a few
 * chunks that a pool of threads downloads in parallel (repo_chunk_get_into verifies every
 * chunk's envelope and that its content still has its name, decompressing it straight
 * into its place) into a buffer the size of a piece, and writes with pwrite at the
 * chunk's offset. Each chunk is hashed once, by that
 * read: its verified plaintext SHA-256 (the name itself where names are SHA-256s) goes to
 * the chunk's slot, and when the file is complete the slots, combined in order
 * (manifest_chunks_digest), must give the manifest's file digest. In an encrypted
 * repository, whose HMAC names a read does not recompute, that check is what proves each
 * chunk is the one the file needs. A manifest of an older pgark carries the SHA-256 of
 * the whole content instead ("sha256"): in an encrypted repository that is computed from
 * the verified bytes as they go by: a finished piece waits for its turn (the pieces
 * before it hashed) and feeds its buffer to the file's digest, so nothing is read back
 * from disk; in a plain one the verified chunks are the proof. Once every piece is done
 * the file is fsynced (its writeback was started piece by piece) and its mode and mtime
 * set. With delta, a chunk whose
 * bytes on disk already have the chunk's name is kept, so only what changed is fetched
 * and written. Directories get their mode and mtime last, and are fsynced. The first
 * failure stops every thread and is reported with the file and the repository; memory
 * is bounded by the queue and the piece buffers, whatever the size of the backup.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define PIECE_BYTES (8u << 20)     /* work unit: at most this many bytes of a file */
#define PIECE_BUDGET (64ull << 20) /* all threads' piece buffers together */
#define QUEUE_PER_THREAD 4

struct wfile {
    char *path; /* relative */
    int fd;
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    enum manifest_digest_kind digest_kind;
    uint8_t digest[SHA256_LEN];
    uint8_t *chunks; /* n_chunks * 32 raw names */
    uint8_t *plain;  /* MANIFEST_DIGEST_CHUNKS: n_chunks * 32 plaintext SHA-256s, each
                        written by the piece holding the chunk */
    size_t n_chunks;
    size_t pieces;           /* in all */
    size_t pieces_left;      /* not done yet (under lock): the last one frees the file */
    atomic_size_t hash_next; /* the piece whose turn it is to feed sha (moves under
                                writer.lock) */
    struct sha256_ctx *sha;  /* MANIFEST_DIGEST_FILE in an encrypted repository only */
    atomic_bool changed;
    pthread_mutex_t lock;
};

struct job {
    struct wfile *f;
    size_t piece;
    size_t first, count;
};

struct dir_entry {
    char *path;
    uint32_t mode;
    int64_t mtime;
};

struct writer {
    const struct writer_options *o;
    uint64_t chunk_size;
    int root_fd;
    struct progress *progress;

    size_t per_piece; /* chunks in a piece */

    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    pthread_cond_t turn; /* a file's hash_next moved, or a failure */
    struct job *queue;
    size_t qcap, qhead, qlen;
    bool closing;

    atomic_bool failed;
    enum err_kind fail_kind; /* first failure, under lock */
    char *fail_text;

    atomic_uint_fast64_t files_written, bytes_written, chunks_fetched;
    uint64_t files, bytes;

    struct dir_entry *dirs;
    size_t ndirs;

    struct manifest_reader *reader;
    pthread_t *threads;
    int nthreads, started;
};

static void fail_from_slot(struct writer *w)
{
    pthread_mutex_lock(&w->lock);
    if (!w->fail_text) {
        w->fail_kind = err_kind();
        w->fail_text = err_format();
    }
    atomic_store(&w->failed, true);
    pthread_cond_broadcast(&w->not_full);
    pthread_cond_broadcast(&w->not_empty);
    pthread_cond_broadcast(&w->turn);
    pthread_mutex_unlock(&w->lock);
    err_clear();
}

/* --- paths ------------------------------------------------------------------------ */

/* Create the parent directories of rel under the root (0700; modes come later). */
static int make_parents(struct writer *w, const char *rel)
{
    char *p = xstrdup(rel);
    int rc = 0;
    for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdirat(w->root_fd, p, 0700) < 0 && errno != EEXIST) {
            rc = err_set_errno(ERR_IO, errno, "could not create directory \"%s/%s\"", w->o->pgdata,
                               p);
            break;
        }
        *s = '/';
    }
    free(p);
    return rc;
}

static int set_file_time(int fd, int64_t mtime)
{
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    return futimens(fd, ts);
}

static int set_path_time(int dir_fd, const char *rel, int64_t mtime)
{
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    return utimensat(dir_fd, rel, ts, 0);
}

/* --- the work of one piece ----------------------------------------------------------- */

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

/* Every piece done (and hashed): check the whole file, make it durable, set mode and
 * mtime. */
static int file_finish(struct writer *w, struct wfile *f)
{
    uint8_t got[SHA256_LEN];
    char *shown = xasprintf("%s/%s", w->o->pgdata, f->path);
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
    if (atomic_load(&f->changed) && fsync(f->fd) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", shown);
        goto out;
    }
    if (fchmod(f->fd, f->mode & 07777) < 0 || set_file_time(f->fd, f->mtime) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not set the mode and time of \"%s\"", shown);
        goto out;
    }
    if (atomic_load(&f->changed))
        atomic_fetch_add(&w->files_written, 1);
out:
    free(shown);
    return rc;
}

static void wfile_free(struct wfile *f)
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
    while (atomic_load(&f->hash_next) != piece && !atomic_load(&w->failed))
        pthread_cond_wait(&w->turn, &w->lock);
    bool mine = atomic_load(&f->hash_next) == piece && !atomic_load(&w->failed);
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

/* Fetch (or with delta, keep) chunk i of f into dst, and its plaintext SHA-256 into its
 * slot of f->plain; 1 when it was written. */
static int do_chunk(struct writer *w, struct wfile *f, size_t i, uint8_t *dst, size_t len)
{
    uint64_t off = (uint64_t)i * w->chunk_size;
    const uint8_t *raw = f->chunks + i * SHA256_LEN;
    uint8_t *plain = f->plain ? f->plain + i * SHA256_LEN : NULL;
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
            return 0;
        }
    }
    /* dst has REPO_CHUNK_GET_SLACK bytes after the chunk's place (the next chunk's, not
     * fetched yet, or the piece buffer's spare end): the chunk decodes straight in. */
    size_t got = 0;
    int rc = repo_chunk_get_into(w->o->repo, name, dst, len + REPO_CHUNK_GET_SLACK, &got, plain);
    if (rc == 0 && got != len)
        rc = err_set(ERR_INTEGRITY, "chunk %s has %zu bytes, the manifest expects %zu", name, got,
                     len);
    if (rc < 0)
        return err_context("while restoring file \"%s\" from repository \"%s\"", f->path,
                           repo_name(w->o->repo));
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
        if (atomic_load(&w->failed))
            break;
        uint64_t off = (uint64_t)i * w->chunk_size;
        size_t len = (size_t)(f->size - off < w->chunk_size ? f->size - off : w->chunk_size);
        rc = do_chunk(w, f, i, buf + filled, len);
        if (rc > 0) {
            wrote = true;
            atomic_store(&f->changed, true);
            atomic_fetch_add(&w->bytes_written, len);
            atomic_fetch_add(&w->chunks_fetched, 1);
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
#ifdef SYNC_FILE_RANGE_WRITE
    /* Start the writeback of the piece now, so that the fsync at the end of the file has
     * little left to wait for (a hint: durability still comes from that fsync). */
    if (rc == 0 && wrote)
        (void)sync_file_range(f->fd, (off_t)start, (off_t)filled, SYNC_FILE_RANGE_WRITE);
#else
    (void)start;
    (void)wrote;
#endif
    if (f->sha) {
        /* The last piece to hash is the last piece done. */
        if (rc == 0 && !atomic_load(&w->failed) &&
            hash_in_turn(w, f, j->piece, buf + hashed, filled - hashed))
            rc = file_finish(w, f);
        if (piece_done(f))
            wfile_free(f);
    } else if (piece_done(f)) {
        if (rc == 0 && !atomic_load(&w->failed))
            rc = file_finish(w, f);
        wfile_free(f);
    }
    return rc;
}

static void *worker_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = xmalloc(w->per_piece * w->chunk_size + REPO_CHUNK_GET_SLACK);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->qlen == 0 && !w->closing)
            pthread_cond_wait(&w->not_empty, &w->lock);
        if (w->qlen == 0) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        struct job j = w->queue[w->qhead];
        w->qhead = (w->qhead + 1) % w->qcap;
        w->qlen--;
        pthread_cond_signal(&w->not_full);
        pthread_mutex_unlock(&w->lock);
        if (do_piece(w, &j, buf) < 0)
            fail_from_slot(w);
    }
    free(buf);
    return NULL;
}

static int enqueue(struct writer *w, struct job j)
{
    pthread_mutex_lock(&w->lock);
    while (w->qlen == w->qcap && !atomic_load(&w->failed))
        pthread_cond_wait(&w->not_full, &w->lock);
    bool failed = atomic_load(&w->failed);
    if (!failed) {
        w->queue[(w->qhead + w->qlen) % w->qcap] = j;
        w->qlen++;
        pthread_cond_signal(&w->not_empty);
    }
    pthread_mutex_unlock(&w->lock);
    return failed ? -ERR_CANCELED : 0;
}

/* --- entries of the manifest ----------------------------------------------------------- */

static int add_file(struct writer *w, const struct manifest_file *mf)
{
    int rc = make_parents(w, mf->path);
    if (rc < 0)
        return rc;
    struct wfile *f = xcalloc(1, sizeof(*f));
    f->path = xstrdup(mf->path);
    f->size = mf->size;
    f->mode = mf->mode;
    f->mtime = mf->mtime;
    f->digest_kind = mf->digest_kind;
    memcpy(f->digest, mf->digest, SHA256_LEN);
    pthread_mutex_init(&f->lock, NULL);
    /* Whatever stands there and is not a regular file goes. */
    struct stat st;
    if (fstatat(w->root_fd, mf->path, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode) ? unlinkat(w->root_fd, mf->path, AT_REMOVEDIR) < 0
                                : unlinkat(w->root_fd, mf->path, 0) < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not replace \"%s/%s\" with a file",
                               w->o->pgdata, mf->path);
            wfile_free(f);
            return rc;
        }
    }
    int flags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (w->o->delta ? 0 : O_TRUNC);
    f->fd = openat(w->root_fd, mf->path, flags, 0600);
    if (f->fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not create \"%s/%s\"", w->o->pgdata, mf->path);
        wfile_free(f);
        return rc;
    }
    if (fstat(f->fd, &st) < 0 || (uint64_t)st.st_size != f->size) {
        if (ftruncate(f->fd, (off_t)f->size) < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not size \"%s/%s\"", w->o->pgdata, mf->path);
            wfile_free(f);
            return rc;
        }
        atomic_store(&f->changed, true);
    }
    w->files++;
    w->bytes += f->size;
    if (repo_encrypted(w->o->repo) && f->digest_kind == MANIFEST_DIGEST_FILE)
        f->sha = sha256_ctx_new();
    if (mf->n_chunks == 0) {
        rc = file_finish(w, f);
        wfile_free(f);
        return rc;
    }
    f->n_chunks = mf->n_chunks;
    f->chunks = xmalloc(mf->n_chunks * SHA256_LEN);
    memcpy(f->chunks, mf->chunks, mf->n_chunks * SHA256_LEN);
    if (f->digest_kind == MANIFEST_DIGEST_CHUNKS)
        f->plain = xmalloc(mf->n_chunks * SHA256_LEN);
    size_t per = w->per_piece;
    f->pieces = f->pieces_left = (f->n_chunks + per - 1) / per;
    size_t pieces = f->pieces;
    for (size_t p = 0; p < pieces; p++) {
        struct job j = {f, p, p * per, f->n_chunks - p * per < per ? f->n_chunks - p * per : per};
        if ((rc = enqueue(w, j)) < 0) {
            /* Not queued: account for the pieces that never will be. */
            pthread_mutex_lock(&f->lock);
            f->pieces_left -= pieces - p;
            bool last = f->pieces_left == 0;
            pthread_mutex_unlock(&f->lock);
            if (last)
                wfile_free(f);
            return rc;
        }
    }
    return 0;
}

static int ts_index(const struct writer_options *o, const char *path)
{
    unsigned oid;
    int end = 0;
    if (sscanf(path, "pg_tblspc/%u%n", &oid, &end) != 1 || path[end] != '\0')
        return -1;
    for (size_t i = 0; i < o->n_ts; i++) {
        if (o->ts_oid[i] == oid)
            return (int)i;
    }
    return -1;
}

/* A symlink at rel pointing to target, replacing whatever is there. */
static int put_symlink(struct writer *w, const char *rel, const char *target)
{
    char have[4096];
    ssize_t n = readlinkat(w->root_fd, rel, have, sizeof(have) - 1);
    if (n >= 0) {
        have[n] = '\0';
        if (strcmp(have, target) == 0)
            return 0;
    }
    int rc = make_parents(w, rel);
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstatat(w->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (unlinkat(w->root_fd, rel, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
            return err_set_errno(ERR_IO, errno, "could not replace \"%s/%s\" with a symlink",
                                 w->o->pgdata, rel);
    }
    if (symlinkat(target, w->root_fd, rel) < 0)
        return err_set_errno(ERR_IO, errno, "could not create symlink \"%s/%s\"", w->o->pgdata,
                             rel);
    return 0;
}

/* The pool needs the chunk size, which the header (line 1) gives: start it with the
 * first file. */
static int start_pool(struct writer *w)
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
    for (; w->started < w->nthreads; w->started++) {
        int e = pthread_create(&w->threads[w->started], NULL, worker_main, w);
        if (e != 0) {
            if (w->started > 0)
                break; /* fewer threads will do */
            return err_set_errno(ERR_RUNTIME, e, "could not start a restore thread");
        }
    }
    return 0;
}

static int on_file(void *arg, const struct manifest_file *mf)
{
    struct writer *w = arg;
    if (atomic_load(&w->failed))
        return -ERR_CANCELED;
    if (!w->started) {
        int rc = start_pool(w);
        if (rc < 0)
            return rc;
    }
    if (w->o->seen) {
        /* The file and every directory above it belong to the backup. */
        char *p = xstrdup(mf->path);
        path_set_add(w->o->seen, p);
        for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
            *s = '\0';
            path_set_add(w->o->seen, p);
        }
        free(p);
    }
    switch (mf->type) {
    case MANIFEST_TYPE_FILE:
        return add_file(w, mf);
    case MANIFEST_TYPE_DIR: {
        int rc = make_parents(w, mf->path);
        if (rc < 0)
            return rc;
        if (mkdirat(w->root_fd, mf->path, 0700) < 0 && errno != EEXIST)
            return err_set_errno(ERR_IO, errno, "could not create directory \"%s/%s\"",
                                 w->o->pgdata, mf->path);
        w->dirs = xrealloc(w->dirs, (w->ndirs + 1) * sizeof(*w->dirs));
        w->dirs[w->ndirs++] = (struct dir_entry){xstrdup(mf->path), mf->mode, mf->mtime};
        return 0;
    }
    case MANIFEST_TYPE_SYMLINK: {
        int i = ts_index(w->o, mf->path);
        return put_symlink(w, mf->path, i >= 0 ? w->o->ts_dir[i] : mf->link);
    }
    }
    return 0;
}

static int manifest_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct writer *w = ctx;
    return manifest_reader_feed(w->reader, data, len);
}

static int fsync_dir_rel(int root_fd, const char *rel)
{
    int fd = openat(root_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* dir and any missing parent (as pg_basebackup -T does), 0700. 0, or -1 with errno. */
static int mkdir_parents(const char *dir)
{
    char *p = xstrdup(dir);
    int e = 0;
    for (char *s = strchr(p + 1, '/'); s && !e; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            e = errno;
        *s = '/';
    }
    if (!e && mkdir(p, 0700) < 0 && errno != EEXIST)
        e = errno;
    free(p);
    errno = e;
    return e ? -1 : 0;
}

/* Tablespace directories and the pg_tblspc symlinks, before any file goes through. */
static int prepare_tablespaces(struct writer *w)
{
    const struct writer_options *o = w->o;
    for (size_t i = 0; i < o->n_ts; i++) {
        if (mkdir_parents(o->ts_dir[i]) < 0)
            return err_set_errno(ERR_IO, errno, "could not create tablespace directory \"%s\"",
                                 o->ts_dir[i]);
        char rel[64];
        snprintf(rel, sizeof(rel), "pg_tblspc/%u", o->ts_oid[i]);
        int rc = put_symlink(w, rel, o->ts_dir[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Directories last: their mode and mtime (creating files changed them), then fsync,
 * deepest first so that each entry is durable before the one naming it. */
static int finish_dirs(struct writer *w)
{
    for (size_t k = w->ndirs; k-- > 0;) {
        struct dir_entry *d = &w->dirs[k];
        if (fchmodat(w->root_fd, d->path, d->mode & 07777, 0) < 0 ||
            set_path_time(w->root_fd, d->path, d->mtime) < 0)
            return err_set_errno(ERR_IO, errno, "could not set the mode and time of \"%s/%s\"",
                                 w->o->pgdata, d->path);
        if (fsync_dir_rel(w->root_fd, d->path) < 0)
            return err_set_errno(ERR_IO, errno, "could not fsync directory \"%s/%s\"", w->o->pgdata,
                                 d->path);
    }
    for (size_t i = 0; i < w->o->n_ts; i++) {
        int fd = open(w->o->ts_dir[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            (void)fsync(fd);
            close(fd);
        }
    }
    if (fsync_dir_rel(w->root_fd, "pg_tblspc") < 0 || fsync(w->root_fd) < 0)
        return err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", w->o->pgdata);
    return 0;
}

int writer_restore(const struct writer_options *o, const char *label, struct writer_stats *st)
{
    struct writer w;
    char path[128];
    int rc;

    memset(&w, 0, sizeof(w));
    memset(st, 0, sizeof(*st));
    w.o = o;
    w.root_fd = -1;
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.not_empty, NULL);
    pthread_cond_init(&w.not_full, NULL);
    pthread_cond_init(&w.turn, NULL);
    w.nthreads = o->threads > 0 ? o->threads : 1;
    w.threads = xcalloc((size_t)w.nthreads, sizeof(*w.threads));
    w.qcap = (size_t)w.nthreads * QUEUE_PER_THREAD;
    w.queue = xcalloc(w.qcap, sizeof(*w.queue));
    w.reader = manifest_reader_new(on_file, &w);

    if (mkdir(o->pgdata, 0700) < 0 && errno != EEXIST) {
        rc = err_set_errno(ERR_IO, errno, "could not create data directory \"%s\"", o->pgdata);
        goto out;
    }
    w.root_fd = open(o->pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w.root_fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not open data directory \"%s\"", o->pgdata);
        goto out;
    }
    if (fchmod(w.root_fd, 0700) < 0 ||
        (mkdirat(w.root_fd, "pg_tblspc", 0700) < 0 && errno != EEXIST)) {
        rc = err_set_errno(ERR_IO, errno, "could not prepare \"%s\"", o->pgdata);
        goto out;
    }
    if ((rc = prepare_tablespaces(&w)) < 0)
        goto out;

    w.progress = progress_new("restore", o->total_bytes, o->progress);
    snprintf(path, sizeof(path), "backups/%s/manifest.json", label);
    rc = repo_get(o->repo, path, manifest_sink, &w);
    if (rc == 0)
        rc = manifest_reader_finish(w.reader);
    if (rc < 0 && !atomic_load(&w.failed))
        err_context("while reading the manifest of backup \"%s\" from repository \"%s\"", label,
                    repo_name(o->repo));
    if (rc < 0 && !atomic_load(&w.failed))
        fail_from_slot(&w);
    else if (rc < 0)
        err_clear(); /* a worker's failure stopped the reading: report that one */

    /* Let the pool drain the queue (or give up after a failure) and stop. */
    pthread_mutex_lock(&w.lock);
    w.closing = true;
    if (atomic_load(&w.failed)) {
        /* Drop what was queued: the pieces still count down so each file is freed. */
        while (w.qlen) {
            struct job j = w.queue[w.qhead];
            w.qhead = (w.qhead + 1) % w.qcap;
            w.qlen--;
            if (piece_done(j.f))
                wfile_free(j.f);
        }
    }
    pthread_cond_broadcast(&w.not_empty);
    pthread_mutex_unlock(&w.lock);
    for (int i = 0; i < w.started; i++)
        pthread_join(w.threads[i], NULL);

    if (atomic_load(&w.failed)) {
        err_set(w.fail_kind, "%s", w.fail_text);
        rc = err_code();
        goto out;
    }
    if ((rc = finish_dirs(&w)) < 0)
        goto out;
    progress_done(w.progress);
    st->files = w.files;
    st->bytes = w.bytes;
    st->files_written = atomic_load(&w.files_written);
    st->bytes_written = atomic_load(&w.bytes_written);
    st->chunks_fetched = atomic_load(&w.chunks_fetched);
out:
    progress_free(w.progress);
    manifest_reader_free(w.reader);
    if (w.root_fd >= 0)
        close(w.root_fd);
    for (size_t i = 0; i < w.ndirs; i++)
        free(w.dirs[i].path);
    free(w.dirs);
    free(w.queue);
    free(w.threads);
    free(w.fail_text);
    pthread_cond_destroy(&w.turn);
    pthread_cond_destroy(&w.not_full);
    pthread_cond_destroy(&w.not_empty);
    pthread_mutex_destroy(&w.lock);
    return rc;
}
