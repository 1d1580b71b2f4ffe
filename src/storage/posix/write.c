/*
 * write.c — the posix driver's atomic write: a temporary file in the object's
 * directory, fsynced, renamed over the final name (or linked without replacing),
 * and the directory fsynced. See posix.c.
 */
#include "posix_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Keep temp names within NAME_MAX (255) even for long object names. */
#define POSIX_TMP_BASE_MAX 200

struct posix_write {
    struct storage_write base;
    int dir_fd;
    int fd;
    char *name;     /* final name within dir_fd */
    char *tmp;      /* temp name within dir_fd */
    char *dir;      /* dir_fd's path, relative to the root */
    bool made_dirs; /* directories were created: fsync the chain at commit */
    bool dir_kept;  /* dir_fd is the handle's (posix_kept_dir): not closed here */
    /* Small writes held back to go with the next one in one call: an object's envelope
     * header (32 bytes) then its payload were two writes per chunk. */
    uint8_t held[64];
    size_t nheld;
};

static void write_free(struct posix_write *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->dir_fd >= 0 && !w->dir_kept)
        close(w->dir_fd);
    free(w->base.path);
    free(w->name);
    free(w->tmp);
    free(w->dir);
    free(w);
}

struct storage_write *posix_write_open(struct storage *s, const char *path, uint64_t size_hint)
{
    struct storage_posix *p = posix_of(s);
    struct posix_write *w = xcalloc(1, sizeof(*w));
    char *dir; /* owned by w from the split on */
    const char *name;
    int rc = 0;
    (void)size_hint;
    w->base.storage = s;
    w->base.path = xstrdup(path);
    w->fd = -1;
    posix_split_path(path, &dir, &name);
    w->dir = dir;
    w->name = xstrdup(name);
    w->dir_fd = posix_kept_dir(p, dir);
    w->dir_kept = w->dir_fd >= 0;
    if (!w->dir_kept)
        w->dir_fd = posix_dir_open(p, dir, true, &w->made_dirs);
    if (w->dir_fd < 0) {
        int e = errno;
        if ((rc = posix_refuse_foreign(p, dir)) == 0)
            rc = posix_errno_error(p, e, "create directory", dir);
        goto out;
    }
    /* The rename at commit would replace a link or special file, not write through it;
     * still, what is there is not pgark's: refuse it as every other operation does. A
     * directory there is left to the rename's own error. */
    struct stat st;
    if (fstatat(w->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISDIR(st.st_mode)) {
        rc = storage_refuse(s, path, posix_entry_of(st.st_mode));
        goto out;
    }
    uint8_t rnd[4];
    char rnd_hex[sizeof(rnd) * 2 + 1];
    rc = random_bytes(rnd, sizeof(rnd));
    if (rc < 0)
        goto out;
    w->tmp = xasprintf(".%.*s.tmp.%ld.%s", POSIX_TMP_BASE_MAX, name, (long)getpid(),
                       hex_encode(rnd, sizeof(rnd), rnd_hex));
    w->fd = openat(w->dir_fd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        char *rel = *dir ? xasprintf("%s/%s", dir, w->tmp) : xstrdup(w->tmp);
        rc = posix_errno_error(p, errno, "create", rel);
        free(rel);
        goto out;
    }
out:
    if (rc < 0) {
        write_free(w);
        return NULL;
    }
    return &w->base;
}

/* Write what is held, then len bytes at data, all of it (writev: one call when the
 * kernel takes everything, as a regular file does). */
static int write_out(struct posix_write *w, const uint8_t *data, size_t len)
{
    struct iovec iov[2] = {{w->held, w->nheld}, {(void *)data, len}};
    struct iovec *v = w->nheld ? iov : iov + 1;
    int nv = w->nheld ? 2 : 1;
    w->nheld = 0;
    while (nv > 0) {
        if (v->iov_len == 0) {
            v++, nv--;
            continue;
        }
        ssize_t n = writev(w->fd, v, nv);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return posix_errno_error(posix_of(w->base.storage), errno, "write", w->base.path);
        }
        for (; nv > 0 && (size_t)n >= v->iov_len; v++, nv--)
            n -= (ssize_t)v->iov_len;
        if (nv > 0) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int posix_write_data(struct storage_write *sw, const uint8_t *data, size_t len)
{
    struct posix_write *w = (struct posix_write *)sw;
    if (w->nheld + len <= sizeof(w->held)) {
        memcpy(w->held + w->nheld, data, len);
        w->nheld += len;
        return 0;
    }
    return write_out(w, data, len);
}

/* Publish the temporary file under its name only if that name is free. */
static int link_new(struct storage_posix *p, struct posix_write *w, const char *path)
{
    int rc = renameat2(w->dir_fd, w->tmp, w->dir_fd, w->name, RENAME_NOREPLACE);
    if (rc < 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* a file system without RENAME_NOREPLACE: a hard link does not replace either */
        rc = linkat(w->dir_fd, w->tmp, w->dir_fd, w->name, 0);
        if (rc == 0)
            unlinkat(w->dir_fd, w->tmp, 0);
    }
    if (rc == 0)
        return 0;
    if (errno == EEXIST) {
        char *full = posix_full_path(p, path);
        rc = err_set(ERR_EXISTS, "\"%s\" already exists", full);
        free(full);
        return rc;
    }
    return posix_errno_error(p, errno, "rename temporary file to", path);
}

int posix_write_commit(struct storage_write *sw)
{
    struct posix_write *w = (struct posix_write *)sw;
    struct storage_posix *p = posix_of(sw->storage);
    bool renamed = false;
    int rc = 0;
    if (w->nheld && (rc = write_out(w, NULL, 0)) < 0)
        goto out;
    if (posix_fsync(p, w->fd, false) < 0) {
        rc = posix_errno_error(p, errno, "fsync", sw->path);
        goto out;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0) {
        rc = posix_errno_error(p, errno, "close", sw->path);
        goto out;
    }
    if (sw->no_replace) {
        rc = link_new(p, w, sw->path);
        if (rc < 0)
            goto out;
    } else if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->name) < 0) {
        rc = posix_errno_error(p, errno, "rename temporary file to", sw->path);
        goto out;
    }
    renamed = true;
    if (sw->defer_sync) { /* the directories' fsyncs wait for posix_sync */
        posix_sync_note(p, w->dir, w->made_dirs);
        /* and the next deferred write there, and the sync, use this descriptor */
        if (!w->dir_kept)
            w->dir_kept = posix_keep_dir(p, w->dir, w->dir_fd);
        goto out;
    }
    if (posix_fsync(p, w->dir_fd, true) < 0) {
        rc = posix_errno_error(p, errno, "fsync directory of", sw->path);
        goto out;
    }
    if (w->made_dirs)
        rc = posix_fsync_chain(p, w->dir);
out:
    if (!renamed)
        unlinkat(w->dir_fd, w->tmp, 0);
    write_free(w);
    return rc;
}

void posix_write_abort(struct storage_write *sw)
{
    struct posix_write *w = (struct posix_write *)sw;
    unlinkat(w->dir_fd, w->tmp, 0);
    write_free(w);
}
