/*
 * writer.c — lays a backup down in a data directory.
 *
 * The manifest is read as a stream; each regular file is cut into pieces of a few
 * chunks that the threads of a pool (pool.h; the pieces in pieces.c) download in parallel
 * (repo_chunk_get_into verifies every chunk's envelope and that its content still has its name,
 * decompressing it straight into its place) into a buffer the size of a piece, and writes with
 * pwrite at the chunk's offset. Each chunk is hashed once, by that read: its verified plaintext
 * SHA-256 (the name itself where names are SHA-256s) goes to the chunk's slot, and when the file is
 * complete the slots, combined in order (manifest_chunks_digest), must give the manifest's file
 * digest. In an encrypted repository, whose HMAC names a read does not recompute, that check is
 * what proves each chunk is the one the file needs. A manifest of an older pgark carries the
 * SHA-256 of the whole content instead ("sha256"): in an encrypted repository that is computed from
 * the verified bytes as they go by: a finished piece waits for its turn (the pieces
 * before it hashed) and feeds its buffer to the file's digest, so nothing is read back
 * from disk; in a plain one the verified chunks are the proof. A file of a block or more
 * is written O_DIRECT, each piece in one write from its buffer: copying every byte into
 * the page cache was most of the restore's system time (2.5 s of 4.7 s CPU for 1.6 GB),
 * and the bytes must reach the disk before the restore ends anyway. Smaller files, a
 * file system without O_DIRECT and --delta (which reads what is there) go through the
 * page cache, chunk by chunk, their writeback started piece by piece. Once every piece
 * is done and the file checked, the syncer's threads (syncer.c) set its mode and mtime and
 * fsync it, while the pieces go on with other files. A chunk the manifest names
 * more than once is fetched once (chunkcache.c). With delta, a chunk whose
 * bytes on disk already have the chunk's name is kept, so only what changed is fetched
 * and written. Directories get their mode and mtime last, and are fsynced. The first
 * failure stops every thread and is reported with the file and the repository; memory
 * is bounded by the queue and the piece buffers, whatever the size of the backup.
 *
 * Confinement: the manifest is read twice. The first reading (writer_vet) passes every
 * entry through restore_vet and writes nothing, so a manifest restore refuses leaves
 * no trace; the second vets each entry again before acting on it, and its bytes must
 * hash as the first reading's did. Each path goes beneath one of the directories it
 * belongs to — the data directory, a tablespace's directory (pg_tblspc/<oid>/...,
 * written from that directory's descriptor, not through the link), the WAL directory
 * (pg_wal/... when pg_wal is a symlink) — and is walked there without following any
 * symlink (confine.c). The only symlinks restore makes are pg_tblspc/<oid> for the
 * header's tablespaces and pg_wal for a WAL directory. Modes are applied & 0777.
 */
#include "writer_int.h"

#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/progress.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* --- paths ------------------------------------------------------------------------ */

/* The directory a manifest path goes beneath (*base) and its path there (*rel): a
 * tablespace's directory for pg_tblspc/<oid>/..., the WAL directory for pg_wal and
 * pg_wal/... when there is one, the data directory for the rest. */
static void place(const struct writer *w, const char *path, int *base, const char **rel)
{
    const struct writer_options *o = w->o;
    *base = w->root_fd;
    *rel = path;
    if (strncmp(path, "pg_tblspc/", 10) == 0) {
        for (size_t i = 0; i < o->n_ts; i++) {
            char pre[32];
            int n = snprintf(pre, sizeof(pre), "pg_tblspc/%u/", o->ts_oid[i]);
            if (strncmp(path, pre, (size_t)n) == 0) {
                *base = w->ts_fd[i];
                *rel = path + n;
                return;
            }
        }
    } else if (o->waldir && strcmp(path, "pg_wal") == 0) {
        *base = w->wal_fd;
        *rel = "";
    } else if (o->waldir && strncmp(path, "pg_wal/", 7) == 0) {
        *base = w->wal_fd;
        *rel = path + 7;
    }
}

/* How base is named in messages. */
static const char *base_name(const struct writer *w, int base)
{
    for (size_t i = 0; i < w->o->n_ts; i++) {
        if (w->ts_fd[i] == base)
            return w->o->ts_dir[i];
    }
    return base == w->wal_fd && w->o->waldir ? w->o->waldir : w->o->pgdata;
}

static void forget_parent(struct writer *w)
{
    if (w->parent_fd >= 0)
        close(w->parent_fd);
    w->parent_fd = -1;
    free(w->parent_rel);
    w->parent_rel = NULL;
}

/* The directory dir beneath base, made when missing (as confine_dir does); kept open
 * for the next file, which is most often in the same one. Not to be closed. */
static int parent_dir(struct writer *w, int base, const char *dir, size_t len)
{
    if (w->parent_fd >= 0 && w->parent_base == base && strlen(w->parent_rel) == len &&
        memcmp(w->parent_rel, dir, len) == 0)
        return w->parent_fd;
    forget_parent(w);
    char *rel = xstrndup(dir, len);
    int fd = confine_dir(base, rel, true, base_name(w, base));
    if (fd < 0) {
        free(rel);
        return fd;
    }
    w->parent_fd = fd;
    w->parent_base = base;
    w->parent_rel = rel;
    return fd;
}

/* --- entries of the manifest ----------------------------------------------------------- */

/* Open (create) the file rel beneath base for writing. Whatever else stands there goes
 * (a symlink is removed, not followed), and so does a file with other hard links, whose
 * other names may be anywhere. */
static int open_file(struct writer *w, int base, const char *rel, const char *path, bool *direct)
{
    const char *slash = strrchr(rel, '/');
    const char *name = slash ? slash + 1 : rel;
    int dfd = parent_dir(w, base, rel, slash ? (size_t)(slash - rel) : 0);
    if (dfd < 0)
        return dfd;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_nlink > 1)) {
        char *shown = xasprintf("%s/%s", base_name(w, base), rel);
        int rc = confine_remove(dfd, name, shown, NULL);
        free(shown);
        if (rc < 0)
            return rc;
    }
    int flags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (w->o->delta ? 0 : O_TRUNC);
    int fd = -1;
    if (*direct) {
        fd = openat(dfd, name, flags | O_DIRECT, 0600);
        if (fd < 0 && errno == EINVAL) {
            /* This file system has no O_DIRECT (tmpfs): the page cache for the rest. */
            log_debug("\"%s\" cannot be opened O_DIRECT: files go through the page cache",
                      base_name(w, base));
            atomic_store(&w->direct, false);
        }
    }
    *direct = fd >= 0;
    if (fd < 0)
        fd = openat(dfd, name, flags, 0600);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not create \"%s/%s\"", w->o->pgdata, path);
    return fd;
}

/* Give f its size: a file written O_DIRECT (empty: opened with O_TRUNC) gets all its
 * blocks allocated at once, as unwritten extents (reading as zeros until written), so
 * that its pieces' writes are overwrites, which ext4 and XFS let run side by side; into
 * a hole each write allocates under the inode's exclusive lock, and the pieces of a file
 * went to the disk one at a time (pgbench scale 100: 2.9 s of the threads' time waiting
 * for that lock, more than the disk's own). A disk too small fails here, before the
 * data. Where the file system has no fallocate, and for any other file, the file is cut
 * to its size (a hole). 0, or -1 with errno. */
static int size_file(struct writer *w, struct wfile *f, uint64_t have)
{
    if (f->direct && have == 0 && atomic_load(&w->falloc)) {
        if (fallocate(f->fd, 0, 0, (off_t)f->size) == 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
            return -1;
        log_debug("\"%s\" cannot allocate files ahead: files are cut to their size instead",
                  w->o->pgdata);
        atomic_store(&w->falloc, false);
    }
    return ftruncate(f->fd, (off_t)f->size);
}

static int add_file(struct writer *w, const struct manifest_file *mf)
{
    int base, rc;
    const char *rel;
    place(w, mf->path, &base, &rel);
    bool direct = atomic_load(&w->direct) && mf->size >= DIRECT_ALIGN;
    int fd = open_file(w, base, rel, mf->path, &direct);
    if (fd < 0)
        return fd;
    struct wfile *f = xcalloc(1, sizeof(*f));
    f->fd = fd;
    f->direct = direct;
    f->path = xstrdup(mf->path);
    f->size = mf->size;
    f->mode = mf->mode;
    f->mtime = mf->mtime;
    f->digest_kind = mf->digest_kind;
    memcpy(f->digest, mf->digest, SHA256_LEN);
    pthread_mutex_init(&f->lock, NULL);
    struct stat st;
    if (fstat(f->fd, &st) < 0 || (uint64_t)st.st_size != f->size) {
        if (size_file(w, f, (uint64_t)st.st_size) < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not size \"%s/%s\"", w->o->pgdata, mf->path);
            writer_file_free(f);
            return rc;
        }
        atomic_store(&f->changed, true);
    }
    w->files++;
    w->bytes += f->size;
    if (repo_encrypted(w->o->repo) && f->digest_kind == MANIFEST_DIGEST_FILE)
        f->sha = sha256_ctx_new();
    if (mf->n_chunks == 0) {
        if ((rc = writer_file_check(w, f)) < 0) {
            writer_file_free(f);
            return rc;
        }
        return writer_sync_file(w, f);
    }
    f->n_chunks = mf->n_chunks;
    f->chunks = xmalloc(mf->n_chunks * SHA256_LEN);
    memcpy(f->chunks, mf->chunks, mf->n_chunks * SHA256_LEN);
    if (f->digest_kind == MANIFEST_DIGEST_CHUNKS)
        f->plain = xmalloc(mf->n_chunks * SHA256_LEN);
    return writer_queue_pieces(w, f);
}

static int add_dir(struct writer *w, const struct manifest_file *mf)
{
    int base;
    const char *rel;
    place(w, mf->path, &base, &rel);
    if (*rel) {
        /* The parent cache may hold what this replaces (a file or link where the backup
         * has a directory): it is opened afresh. */
        forget_parent(w);
        int fd = confine_dir(base, rel, true, base_name(w, base));
        if (fd < 0)
            return fd;
        close(fd);
    }
    w->dirs = xrealloc(w->dirs, (w->ndirs + 1) * sizeof(*w->dirs));
    w->dirs[w->ndirs++] =
        (struct dir_entry){xstrdup(mf->path), base, xstrdup(rel), mf->mode, mf->mtime};
    return 0;
}

/* The header read now must list the tablespaces the restore was prepared for (from
 * the header read when the backup was chosen). */
static int check_header(struct writer *w)
{
    const struct manifest_header *h = manifest_reader_header(w->reader);
    const struct writer_options *o = w->o;
    bool same = h && h->n_tablespaces == o->n_ts;
    for (size_t i = 0; same && i < o->n_ts; i++)
        same = h->tablespaces[i].oid == o->ts_oid[i] &&
               strcmp(h->tablespaces[i].location, o->ts_location[i]) == 0;
    if (!same)
        return err_set(ERR_INTEGRITY, "the manifest's header changed while it was read: its "
                                      "tablespaces are not those it listed before");
    return 0;
}

/* writer_vet with o->held: each chunk of mf is in the listing of o->repo, or else in
 * another repository (a HEAD each, remembered). */
static int check_held(struct writer *w, const struct manifest_file *mf)
{
    const struct writer_options *o = w->o;
    for (size_t k = 0; k < mf->n_chunks; k++) {
        const uint8_t *raw = mf->chunks + k * SHA256_LEN;
        if (chunkset_has(o->held, raw) || (w->elsewhere && chunkset_has(w->elsewhere, raw)))
            continue;
        char name[SHA256_HEX_LEN + 1];
        hex_encode(raw, SHA256_LEN, name);
        bool found = false;
        for (size_t a = 0; !found && a < o->nalts; a++) {
            int e = repo_chunk_exists(o->alts[a], name);
            if (e < 0)
                err_clear(); /* cannot tell: as if not there */
            found = e > 0;
        }
        if (found) {
            if (!w->elsewhere)
                w->elsewhere = chunkset_new();
            chunkset_add(w->elsewhere, raw);
            continue;
        }
        if (o->bad_out)
            chunkset_add(o->bad_out, raw);
        w->chunk_absent = true;
        return err_set(ERR_INTEGRITY,
                       "chunk %zu (%s) of file \"%s\" is in no repository of the cluster%s", k,
                       name, mf->path, o->nalts ? "" : " that restore may read");
    }
    return 0;
}

static int on_file(void *arg, const struct manifest_file *mf)
{
    struct writer *w = arg;
    int rc;
    if (writer_failed(w))
        return -ERR_CANCELED;
    if (!w->vet) {
        if ((rc = check_header(w)) < 0)
            return rc;
        w->vet = restore_vet_new(manifest_reader_header(w->reader));
        if (!w->vet)
            return err_code();
    }
    if ((rc = restore_vet_entry(w->vet, mf)) < 0)
        return err_context("at line %" PRIu64 " of the manifest", manifest_reader_lines(w->reader));
    if (w->vet_only) {
        if (mf->type != MANIFEST_TYPE_FILE)
            return 0;
        for (size_t k = 0; w->o->cache && k < mf->n_chunks; k++)
            chunkcache_count(w->o->cache, mf->chunks + k * SHA256_LEN);
        return w->o->held ? check_held(w, mf) : 0;
    }
    if (!w->pool && (rc = writer_start_pool(w)) < 0)
        return rc;
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
    case MANIFEST_TYPE_DIR:
        return add_dir(w, mf);
    case MANIFEST_TYPE_SYMLINK:
        /* A tablespace's (restore_vet lets no other through), made before the first
         * entry: prepare(). */
        return 0;
    }
    return 0;
}

static int manifest_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct writer *w = ctx;
    sha256_ctx_update(w->digest, data, len);
    return manifest_reader_feed(w->reader, data, len);
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

/* An absolute directory the caller chose and checked (a tablespace's, the WAL one),
 * made with its parents when missing, and opened. */
static int open_outer(const char *dir, const char *what)
{
    if (mkdir_parents(dir) < 0)
        return err_set_errno(ERR_IO, errno, "could not create %s \"%s\"", what, dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open %s \"%s\"", what, dir);
    return fd;
}

/* The data directory, the tablespace and WAL directories and their symlinks, before
 * any entry goes through. */
static int prepare(struct writer *w)
{
    const struct writer_options *o = w->o;
    int rc = 0, tblspc = -1;
    if (mkdir(o->pgdata, 0700) < 0 && errno != EEXIST)
        return err_set_errno(ERR_IO, errno, "could not create data directory \"%s\"", o->pgdata);
    w->root_fd = open(o->pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->root_fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open data directory \"%s\"", o->pgdata);
    if (fchmod(w->root_fd, 0700) < 0)
        return err_set_errno(ERR_IO, errno, "could not prepare \"%s\"", o->pgdata);
    if ((tblspc = confine_dir(w->root_fd, "pg_tblspc", true, o->pgdata)) < 0)
        return tblspc;
    for (size_t i = 0; i < o->n_ts && rc == 0; i++) {
        char name[16], *shown = xasprintf("%s/pg_tblspc/%u", o->pgdata, o->ts_oid[i]);
        snprintf(name, sizeof(name), "%u", o->ts_oid[i]);
        if ((w->ts_fd[i] = open_outer(o->ts_dir[i], "tablespace directory")) < 0)
            rc = w->ts_fd[i];
        else
            rc = confine_symlink(tblspc, name, o->ts_dir[i], shown);
        free(shown);
    }
    close(tblspc);
    if (rc == 0 && o->waldir) {
        char *shown = xasprintf("%s/pg_wal", o->pgdata);
        if ((w->wal_fd = open_outer(o->waldir, "WAL directory")) < 0)
            rc = w->wal_fd;
        else
            rc = confine_symlink(w->root_fd, "pg_wal", o->wal_link, shown);
        free(shown);
    }
    return rc;
}

/* Remove what the backup does not hold: in the data directory (a symlink is removed,
 * never entered), in the version directories the backup has in each tablespace (the
 * rest of a tablespace directory is not the backup's to judge), in the WAL directory. */
static int prune(struct writer *w, uint64_t *removed)
{
    const struct writer_options *o = w->o;
    path_set_add(o->seen, "pg_tblspc");
    for (size_t i = 0; i < o->n_ts; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "pg_tblspc/%u", o->ts_oid[i]);
        path_set_add(o->seen, rel);
    }
    if (o->waldir)
        path_set_add(o->seen, "pg_wal");
    int rc =
        pgdata_prune(fcntl(w->root_fd, F_DUPFD_CLOEXEC, 0), "", o->pgdata, o->seen, false, removed);
    for (size_t i = 0; i < o->n_ts && rc == 0; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "pg_tblspc/%u", o->ts_oid[i]);
        rc = pgdata_prune(fcntl(w->ts_fd[i], F_DUPFD_CLOEXEC, 0), rel, o->ts_dir[i], o->seen, true,
                          removed);
    }
    if (rc == 0 && o->waldir)
        rc = pgdata_prune(fcntl(w->wal_fd, F_DUPFD_CLOEXEC, 0), "pg_wal", o->waldir, o->seen, false,
                          removed);
    return rc;
}

/* Directories last: their mode and mtime (creating files changed them), then fsync,
 * deepest first so that each entry is durable before the one naming it. */
static int finish_dirs(struct writer *w)
{
    for (size_t k = w->ndirs; k-- > 0;) {
        struct dir_entry *d = &w->dirs[k];
        struct timespec ts[2] = {{d->mtime, 0}, {d->mtime, 0}};
        int fd = confine_dir(d->base, d->rel, false, base_name(w, d->base));
        if (fd < 0)
            return fd;
        int rc = 0;
        if (fchmod(fd, d->mode & 0777) < 0 || futimens(fd, ts) < 0)
            rc = err_set_errno(ERR_IO, errno, "could not set the mode and time of \"%s/%s\"",
                               w->o->pgdata, d->path);
        else if (fsync(fd) < 0)
            rc = err_set_errno(ERR_IO, errno, "could not fsync directory \"%s/%s\"", w->o->pgdata,
                               d->path);
        close(fd);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < w->o->n_ts; i++)
        (void)fsync(w->ts_fd[i]);
    if (w->wal_fd >= 0)
        (void)fsync(w->wal_fd);
    int fd = confine_dir(w->root_fd, "pg_tblspc", false, w->o->pgdata);
    if (fd < 0)
        return fd;
    int rc = fsync(fd);
    close(fd);
    if (rc < 0 || fsync(w->root_fd) < 0)
        return err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", w->o->pgdata);
    return 0;
}

static void writer_init(struct writer *w, const struct writer_options *o)
{
    memset(w, 0, sizeof(*w));
    w->o = o;
    w->root_fd = w->wal_fd = w->parent_fd = -1;
    w->ts_fd = xcalloc(o->n_ts + 1, sizeof(*w->ts_fd));
    for (size_t i = 0; i < o->n_ts; i++)
        w->ts_fd[i] = -1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->turn, NULL);
    w->nthreads = o->threads > 0 ? o->threads : 1;
    atomic_store(&w->falloc, true);
    w->reader = manifest_reader_new(on_file, w);
    w->digest = sha256_ctx_new();
}

static void writer_release(struct writer *w)
{
    pool_free(w->pool); /* workers stop before what they use goes */
    pool_free(w->syncer);
    progress_free(w->progress);
    manifest_reader_free(w->reader);
    restore_vet_free(w->vet);
    sha256_ctx_free(w->digest);
    chunkset_free(w->elsewhere);
    forget_parent(w);
    if (w->root_fd >= 0)
        close(w->root_fd);
    for (size_t i = 0; i < w->o->n_ts; i++) {
        if (w->ts_fd[i] >= 0)
            close(w->ts_fd[i]);
    }
    free(w->ts_fd);
    if (w->wal_fd >= 0)
        close(w->wal_fd);
    for (size_t i = 0; i < w->ndirs; i++) {
        free(w->dirs[i].path);
        free(w->dirs[i].rel);
    }
    free(w->dirs);
    pthread_cond_destroy(&w->turn);
    pthread_mutex_destroy(&w->lock);
}

/* The whole manifest through the reader (and on_file); the header checked even when
 * there is no entry. */
static int read_manifest(struct writer *w, const char *label)
{
    char path[128];
    snprintf(path, sizeof(path), "backups/%s/manifest.json", label);
    int rc = repo_get(w->o->repo, path, manifest_sink, w);
    if (rc == 0)
        rc = manifest_reader_finish(w->reader);
    if (rc == 0 && !w->vet)
        rc = check_header(w);
    return rc;
}

int writer_vet(const struct writer_options *o, const char *label, uint8_t digest[SHA256_LEN])
{
    struct writer w;
    writer_init(&w, o);
    w.vet_only = true;
    int rc = read_manifest(&w, label);
    if (rc < 0) {
        err_context("while checking the manifest of backup \"%s\"", label);
        if (w.chunk_absent)
            err_hint("nothing was changed");
        else if (err_kind() == ERR_INTEGRITY)
            err_hint("nothing was changed; the manifest is not as pgark's backup writes it: "
                     "check the repository (\"pgark verify\") and who can write to it");
    } else {
        sha256_ctx_final(w.digest, digest);
    }
    writer_release(&w);
    return rc;
}

int writer_restore(const struct writer_options *o, const char *label,
                   const uint8_t digest[SHA256_LEN], struct writer_stats *st)
{
    struct writer w;
    int rc;

    memset(st, 0, sizeof(*st));
    writer_init(&w, o);
    if ((rc = prepare(&w)) < 0)
        goto out;

    if (o->cache) {
        chunkcache_seal(o->cache);
        log_debug("%zu chunks are named more than once in the manifest: each is fetched once",
                  chunkcache_repeated(o->cache));
    }
    w.progress = progress_new("restore", o->total_bytes, o->progress);
    rc = read_manifest(&w, label);
    if (rc == 0) {
        uint8_t again[SHA256_LEN];
        sha256_ctx_final(w.digest, again);
        if (memcmp(again, digest, SHA256_LEN) != 0)
            rc = err_set(ERR_INTEGRITY, "the manifest changed while it was restored");
    }
    bool failed = writer_failed(&w);
    if (rc < 0 && !failed)
        err_context("while reading the manifest of backup \"%s\" from repository \"%s\"", label,
                    repo_name(o->repo));
    if (rc < 0 && failed)
        err_clear(); /* a worker's failure stopped the reading: report that one */
    else if (rc < 0 && w.pool)
        pool_fail(w.pool); /* the pieces queued are dropped */
    if (w.pool) {
        /* Let the pool run the queue (the pieces dropped after a failure still count
         * down, so each file is freed) and stop; then the syncer, which the pieces feed. */
        int e = pool_wait(w.pool);
        pool_free(w.pool);
        w.pool = NULL;
        int s = writer_sync_wait(&w);
        if (e < 0)
            rc = e; /* the first failure, the reading's or a worker's */
        else if (s < 0)
            rc = s; /* a file's fsync, which stopped the rest */
    }
    if (rc < 0)
        goto out;
    forget_parent(&w);
    if (o->seen && (rc = prune(&w, &st->files_removed)) < 0)
        goto out;
    if ((rc = finish_dirs(&w)) < 0)
        goto out;
    progress_done(w.progress);
    st->files = w.files;
    st->bytes = w.bytes;
    st->files_written = atomic_load(&w.files_written);
    st->bytes_written = atomic_load(&w.bytes_written);
    st->chunks_fetched = atomic_load(&w.chunks_fetched);
    st->chunks_reused = atomic_load(&w.chunks_reused);
out:
    writer_release(&w);
    return rc;
}
