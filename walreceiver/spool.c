/* spool.c — the receiver's durable WAL spool (see spool_int.h). */
#include "spool_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define PARTIAL_SUFFIX ".partial"
#define LOCK_NAME "receive.lock"
/* How long to wait for a lock's holder to have written its pid (it writes it just
 * after it took the lock). */
#define LOCK_PID_WAIT_MS 1000
#define ZERO_BLOCK (1024 * 1024)
/* A new segment is padded in writes of this size, not ZERO_BLOCK: with large folios (ext4
 * on Linux 6.18 here) the page cache keeps folios as large as the writes that made them,
 * and each later write into one, and the fdatasync after it, walks all of its blocks.
 * Padded in 1 MiB writes, a 24 kB pwrite took 20 us of CPU and its fdatasync 73 us; in
 * 64 kB writes 10 and 61 us (medians of five runs, 2026-12-07). */
#define PAD_WRITE (64 * 1024)

struct spool {
    char *dir;
    int dirfd;
    uint64_t seg_size;
    uint64_t max_bytes;

    pthread_mutex_t lock; /* guards the fields below against the shipper's reads */
    int fd;               /* open partial segment, or -1 */
    timeline_t tli;
    uint64_t segno;
    char name[WAL_NAME_BUFLEN];
    uint64_t written; /* bytes written into the open segment */
    uint64_t synced;  /* of which durable */
    lsn_t flushed;    /* end of durable WAL overall */
    uint64_t changes; /* see spool_changes */
};

static void changed(struct spool *s)
{
    pthread_mutex_lock(&s->lock);
    s->changes++;
    pthread_mutex_unlock(&s->lock);
}

uint64_t spool_changes(struct spool *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->changes;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* mkdir -p, 0700: the configured spool need not exist yet (the repositories'
 * directories are created the same way). */
static int make_dirs(const char *dir)
{
    char *path = xstrdup(dir);
    int rc = 0;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            rc = err_set_errno(ERR_IO, errno, "could not create spool directory \"%s\"", path);
            break;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(path);
    return rc;
}

/* The pid the lock file at fd holds ("1234\n"), or 0 while it holds none yet. */
static long lock_holder(int fd)
{
    for (int waited = 0;; waited += 10) {
        char text[32];
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        if (n > 1 && text[n - 1] == '\n') {
            text[n] = '\0';
            char *end;
            long pid = strtol(text, &end, 10);
            if (pid > 0 && *end == '\n')
                return pid;
        }
        if (waited >= LOCK_PID_WAIT_MS)
            return 0;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int spool_lock(const char *dir)
{
    char *path = xasprintf("%s/" LOCK_NAME, dir);
    int fd = -1;
    int rc = spool_check_owner(dir);
    if (rc == 0)
        rc = make_dirs(dir);
    if (rc < 0)
        goto out;
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not open the spool's lock file \"%s\"", path);
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) {
            rc = err_set_errno(ERR_IO, errno, "could not lock \"%s\"", path);
            goto out;
        }
        long pid = lock_holder(fd);
        if (pid > 0)
            rc = err_set(ERR_RUNTIME, "spool \"%s\" is in use by another pgark receive (pid %ld)",
                         dir, pid);
        else
            rc = err_set(ERR_RUNTIME, "spool \"%s\" is in use by another pgark receive", dir);
        err_hint("one receiver runs per cluster and spool: stop the other one first (it holds "
                 "\"%s\" locked while it runs)",
                 path);
        goto out;
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", path);
        goto out;
    }
out:
    if (rc < 0 && fd >= 0)
        close(fd);
    free(path);
    return rc < 0 ? rc : fd;
}

void spool_unlock(int fd)
{
    if (fd < 0)
        return;
    /* No pid left behind for the next holder's rival to read before it writes its
     * own (after a crash the old one stays; the lock, not the text, decides). The
     * text is only for messages: a failure here changes nothing. */
    if (ftruncate(fd, 0) < 0)
        log_debug("could not empty the spool's lock file: %s", strerror(errno));
    close(fd);
}

int spool_check_owner(const char *dir)
{
    char *parent = xstrdup(dir);
    char *slash = strrchr(parent, '/');
    int rc = 0;
    if (slash && slash != parent) {
        *slash = '\0';
        rc = privfs_check_dir(parent, "spool directory");
    }
    if (rc == 0)
        rc = privfs_check_dir(dir, "spool directory");
    free(parent);
    return rc;
}

struct spool *spool_open(const char *dir, uint64_t seg_size, uint64_t max_bytes)
{
    struct spool *s = NULL;
    if (spool_check_owner(dir) < 0 || make_dirs(dir) < 0)
        goto fail;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        err_set_errno(ERR_IO, errno, "could not open spool directory \"%s\"", dir);
        goto fail;
    }
    s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(dir);
    s->dirfd = dirfd;
    s->seg_size = seg_size;
    s->max_bytes = max_bytes;
    s->fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    return s;
fail:
    return NULL;
}

const char *spool_dir(const struct spool *s)
{
    return s->dir;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        spool_close_segment(s);
    close(s->dirfd);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

int spool_resume_point(struct spool *s, bool *found, timeline_t *tli_out, lsn_t *lsn_out)
{
    int rc = 0;
    DIR *d = opendir(s->dir);
    if (!d)
        return err_set_errno(ERR_IO, errno, "could not read spool directory \"%s\"", s->dir);
    bool have = false;
    uint64_t best_seg = 0;
    timeline_t best_tli = 0;
    bool best_partial = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool partial = wal_is_partial_name(e->d_name);
        if (!partial && !wal_is_segment_name(e->d_name))
            continue;
        char base[WAL_NAME_BUFLEN];
        snprintf(base, sizeof(base), "%.24s", e->d_name);
        timeline_t tli;
        uint64_t segno;
        if (wal_segment_parse(base, s->seg_size, &tli, &segno) < 0) {
            err_clear();
            continue;
        }
        struct stat st;
        if (fstatat(s->dirfd, e->d_name, &st, 0) < 0)
            continue;
        /* A .partial shorter than a segment was cut short while being padded: no WAL yet. */
        if ((uint64_t)st.st_size != s->seg_size &&
            !(partial && (uint64_t)st.st_size < s->seg_size)) {
            log_warn("spool file \"%s/%s\" has size %lld, not %llu: ignored", s->dir, e->d_name,
                     (long long)st.st_size, (unsigned long long)s->seg_size);
            continue;
        }
        bool better = !have || segno > best_seg || (segno == best_seg && tli > best_tli) ||
                      (segno == best_seg && tli == best_tli && best_partial && !partial);
        if (better) {
            have = true;
            best_seg = segno;
            best_tli = tli;
            best_partial = partial;
        }
    }
    closedir(d);
    *found = have;
    if (have) {
        *tli_out = best_tli;
        *lsn_out = segno_to_lsn(best_partial ? best_seg : best_seg + 1, s->seg_size);
    }
    return rc;
}

static int fsync_dir(struct spool *s)
{
    if (fsync(s->dirfd) < 0)
        return err_set_errno(ERR_IO, errno, "could not fsync spool directory \"%s\"", s->dir);
    return 0;
}

uint64_t spool_usage(struct spool *s)
{
    uint64_t total = 0;
    DIR *d = opendir(s->dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (wal_is_segment_name(e->d_name) || wal_is_partial_name(e->d_name)) {
            struct stat st;
            if (fstatat(s->dirfd, e->d_name, &st, 0) == 0)
                total += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return total;
}

bool spool_has_room(struct spool *s)
{
    if (s->max_bytes && spool_usage(s) + s->seg_size > s->max_bytes)
        return false;
    struct statvfs v;
    if (fstatvfs(s->dirfd, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize < s->seg_size)
        return false;
    return true;
}

/* Whether the first `len` bytes of fd are all zero: what a kill while padding a new
 * segment leaves behind (no WAL is written before the padding is complete). */
static int all_zero(struct spool *s, int fd, const char *path, uint64_t len, bool *zero)
{
    uint8_t *buf = xmalloc(ZERO_BLOCK);
    int rc = 0;
    *zero = true;
    for (uint64_t off = 0; off < len && *zero;) {
        size_t n = len - off < ZERO_BLOCK ? (size_t)(len - off) : ZERO_BLOCK;
        ssize_t r = pread(fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = err_set_errno(ERR_IO, r < 0 ? errno : EIO, "could not read \"%s/%s\"", s->dir,
                               path);
            break;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i]) {
                *zero = false;
                break;
            }
        off += (uint64_t)r;
    }
    free(buf);
    return rc;
}

/* Open or create the partial file of (tli, segno), pre-padded with zeros. A file cut
 * short while it was being padded (only zeros) is padded to the end.
 * Long: the two ways to get the file (an existing one checked for its size and zeros, a
 * new one created if the spool has room) meet in one step that pads from the offset the
 * first part found, syncs, and removes the file if that fails; then the file is published
 * under the lock.
 */
static int segment_open(struct spool *s, timeline_t tli, uint64_t segno)
{
    char name[WAL_NAME_BUFLEN], path[WAL_NAME_BUFLEN + 16];
    wal_segment_name(tli, segno, s->seg_size, name);
    snprintf(path, sizeof(path), "%s%s", name, PARTIAL_SUFFIX);

    uint64_t off = 0; /* where the padding starts */
    int fd = openat(s->dirfd, path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        bool zero = false;
        if (fstat(fd, &st) < 0) {
            close(fd);
            return err_set_errno(ERR_IO, errno, "could not stat \"%s/%s\"", s->dir, path);
        }
        if ((uint64_t)st.st_size == s->seg_size)
            goto opened;
        int zrc = (uint64_t)st.st_size < s->seg_size
                      ? all_zero(s, fd, path, (uint64_t)st.st_size, &zero)
                      : 0;
        if (zrc < 0) {
            close(fd);
            return zrc;
        }
        if (!zero) {
            close(fd);
            return err_set(ERR_INTEGRITY,
                           "spool file \"%s/%s\" has size %lld, not %llu, and holds data", s->dir,
                           path, (long long)st.st_size, (unsigned long long)s->seg_size);
        }
        off = (uint64_t)st.st_size;
    } else if (errno != ENOENT) {
        return err_set_errno(ERR_IO, errno, "could not open \"%s/%s\"", s->dir, path);
    } else {
        if (s->max_bytes && spool_usage(s) + s->seg_size > s->max_bytes) {
            char a[32];
            snprintf(a, sizeof(a), "%llu", (unsigned long long)s->max_bytes);
            err_set(ERR_NO_SPACE,
                    "spool \"%s\" is full: a new segment would pass spool_max (%s bytes)", s->dir,
                    a);
            return err_hint("the repositories are not keeping up; check that they are reachable");
        }
        fd = openat(s->dirfd, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return err_set_errno(ERR_IO, errno, "could not create \"%s/%s\"", s->dir, path);
    }
    /* Pad with real zeros so later fdatasyncs need no metadata and ENOSPC shows now. */
    {
        uint8_t *zeros = xcalloc(1, PAD_WRITE);
        int rc = 0;
        while (off < s->seg_size) {
            /* To the next multiple of PAD_WRITE: a padding resumed mid-way keeps the
             * folios aligned. */
            size_t n = (size_t)(PAD_WRITE - off % PAD_WRITE);
            if (s->seg_size - off < n)
                n = (size_t)(s->seg_size - off);
            ssize_t w = pwrite(fd, zeros, n, (off_t)off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = err_set_errno(ERR_IO, errno, "could not pad \"%s/%s\"", s->dir, path);
                break;
            }
            off += (uint64_t)w;
        }
        free(zeros);
        if (rc == 0 && fsync(fd) < 0)
            rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s/%s\"", s->dir, path);
        if (rc == 0)
            rc = fsync_dir(s);
        if (rc < 0) {
            close(fd);
            unlinkat(s->dirfd, path, 0);
            return rc;
        }
    }
opened:
    pthread_mutex_lock(&s->lock);
    s->fd = fd;
    s->tli = tli;
    s->segno = segno;
    memcpy(s->name, name, sizeof(name));
    s->written = 0;
    s->synced = 0;
    s->changes++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* fdatasync the open segment and advance the durable position. */
static int segment_sync(struct spool *s)
{
    if (s->fd < 0 || s->synced == s->written)
        return 0;
    if (fdatasync(s->fd) < 0)
        return err_set_errno(ERR_IO, errno, "could not fsync \"%s/%s%s\"", s->dir, s->name,
                             PARTIAL_SUFFIX);
    pthread_mutex_lock(&s->lock);
    s->synced = s->written;
    s->flushed = segno_to_lsn(s->segno, s->seg_size) + s->synced;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The open segment is full: make it durable and give it its plain name. */
static int segment_complete(struct spool *s)
{
    char from[WAL_NAME_BUFLEN + 16];
    int rc = segment_sync(s);
    if (rc < 0)
        return rc;
    snprintf(from, sizeof(from), "%s%s", s->name, PARTIAL_SUFFIX);
    if (renameat(s->dirfd, from, s->dirfd, s->name) < 0)
        return err_set_errno(ERR_IO, errno, "could not rename \"%s/%s\"", s->dir, from);
    rc = fsync_dir(s);
    pthread_mutex_lock(&s->lock);
    close(s->fd);
    s->fd = -1;
    s->changes++;
    pthread_mutex_unlock(&s->lock);
    log_detail("segment %s received", s->name);
    return rc;
}

int spool_write(struct spool *s, timeline_t tli, lsn_t lsn, const uint8_t *data, size_t len)
{
    while (len > 0) {
        uint64_t segno = lsn_to_segno(lsn, s->seg_size);
        uint64_t off = lsn - segno_to_lsn(segno, s->seg_size);
        if (s->fd >= 0 && (s->segno != segno || s->tli != tli)) {
            int rc = spool_close_segment(s);
            if (rc < 0)
                return rc;
        }
        if (s->fd < 0) {
            if (off != 0) {
                /* Streams always (re)start at a segment boundary, so the spool never
                 * holds a segment with a hole at its start. */
                char a[LSN_STRLEN];
                return err_set(ERR_PROTOCOL, "WAL data at %s does not start a segment",
                               lsn_format(lsn, a));
            }
            int rc = segment_open(s, tli, segno);
            if (rc < 0)
                return rc;
        }
        if (off != s->written) {
            char a[LSN_STRLEN];
            return err_set(ERR_PROTOCOL,
                           "WAL data at %s does not continue the spool (segment %s at offset %llu)",
                           lsn_format(lsn, a), s->name, (unsigned long long)s->written);
        }
        size_t n = s->seg_size - off < len ? (size_t)(s->seg_size - off) : len;
        size_t done = 0;
        while (done < n) {
            ssize_t w = pwrite(s->fd, data + done, n - done, (off_t)(off + done));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return err_set_errno(ERR_IO, errno, "could not write \"%s/%s%s\"", s->dir, s->name,
                                     PARTIAL_SUFFIX);
            }
            done += (size_t)w;
        }
        pthread_mutex_lock(&s->lock);
        s->written = off + n;
        pthread_mutex_unlock(&s->lock);
        data += n;
        len -= n;
        lsn += n;
        if (s->written == s->seg_size) {
            int rc = segment_complete(s);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int spool_flush(struct spool *s, lsn_t *flushed)
{
    int rc = segment_sync(s);
    pthread_mutex_lock(&s->lock);
    *flushed = s->flushed;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int spool_close_segment(struct spool *s)
{
    if (s->fd < 0)
        return 0;
    int rc = segment_sync(s);
    pthread_mutex_lock(&s->lock);
    close(s->fd);
    s->fd = -1;
    s->changes++;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool spool_current(struct spool *s, timeline_t *tli, char *name, uint64_t *flushed_bytes)
{
    pthread_mutex_lock(&s->lock);
    bool open = s->fd >= 0;
    if (open) {
        *tli = s->tli;
        memcpy(name, s->name, WAL_NAME_BUFLEN);
        *flushed_bytes = s->synced;
    }
    pthread_mutex_unlock(&s->lock);
    return open;
}

bool spool_tail(struct spool *s, timeline_t *tli, char *name, uint64_t *flushed_bytes)
{
    pthread_mutex_lock(&s->lock);
    /* s->name, s->tli and s->synced outlive the close of the segment (only the next
     * segment_open resets them); a completed one was synced whole. */
    bool have = s->name[0] != '\0' && s->synced > 0 && s->synced < s->seg_size;
    if (have) {
        *tli = s->tli;
        memcpy(name, s->name, WAL_NAME_BUFLEN);
        *flushed_bytes = s->synced;
    }
    pthread_mutex_unlock(&s->lock);
    return have;
}

bool spool_last(struct spool *s, timeline_t *tli, char *name, bool *complete)
{
    pthread_mutex_lock(&s->lock);
    bool have = s->name[0] != '\0';
    if (have) {
        *tli = s->tli;
        memcpy(name, s->name, WAL_NAME_BUFLEN);
        *complete = s->synced == s->seg_size;
    }
    pthread_mutex_unlock(&s->lock);
    return have;
}

int spool_write_history(struct spool *s, timeline_t tli, const void *data, size_t len)
{
    char name[16 + 1], tmp[32]; /* "%08X.history" and its NUL */
    int rc = 0, fd = -1;
    wal_history_name(tli, name);

    fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        char *old = NULL;
        if (fstat(fd, &st) == 0 && (size_t)st.st_size == len) {
            old = xmalloc(len + 1);
            ssize_t r = pread(fd, old, len, 0);
            bool same = r == (ssize_t)len && memcmp(old, data, len) == 0;
            free(old);
            close(fd);
            if (same)
                return 0;
        } else {
            close(fd);
        }
        return err_set(ERR_EXISTS, "history file \"%s/%s\" exists with other content", s->dir,
                       name);
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not create \"%s/%s\"", s->dir, tmp);
    if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s/%s\"", s->dir, tmp);
        goto out;
    }
    if (renameat(s->dirfd, tmp, s->dirfd, name) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s/%s\"", s->dir, tmp);
        goto out;
    }
    changed(s);
    rc = fsync_dir(s);
out:
    close(fd);
    if (rc < 0)
        unlinkat(s->dirfd, tmp, 0);
    return rc;
}
