/*
 * posix.c — the storage driver for a directory on a local filesystem.
 *
 * Objects are regular files below the root (0600), directories are created on
 * demand (0700) and are not objects themselves. Every operation works relative to
 * a descriptor of the root opened once, so a repository keeps working even if the
 * process changes directory. The configured path is resolved once, when it is
 * opened (it may be or pass through a link the administrator made); below it no
 * symbolic link is ever followed: every path is resolved beneath the root's
 * descriptor by openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), or, where the kernel
 * has no openat2, one component at a time with O_NOFOLLOW | O_DIRECTORY; entries are
 * examined with AT_SYMLINK_NOFOLLOW and directories are created, renamed into and
 * fsynced through descriptors opened that way. What is met that is neither a regular
 * file nor a directory goes to the generic layer's policy: list hands it over marked
 * (info.entry), the other operations refuse it (storage_refuse), having touched
 * nothing behind it. Only when an operation fails is its path walked again, to name
 * the entry that stopped it.
 *
 * A write goes to ".<name>.tmp.<pid>.<random>" in the object's directory, is
 * fsynced, renamed over the final name and the directory is fsynced; when the write
 * had to create directories, every directory from the root down is fsynced too so
 * the new entries survive a crash. Readers thus see the old file or the whole new
 * one; a failed or aborted write unlinks its temp file. list() skips temp files;
 * sweep() removes those a killed process left (list.c).
 * A deferred write (storage_defer_sync_begin) leaves the directory fsyncs to the next
 * sync, which makes each directory durable once (sync.c).
 */
#include "posix_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define POSIX_IO_SIZE (1024 * 1024)

/* --- read ------------------------------------------------------------------ */

static int posix_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                      storage_sink_fn sink, void *ctx)
{
    struct storage_posix *p = posix_of(s);
    uint8_t *buf = NULL;
    int rc = 0;
    /* O_NONBLOCK: a FIFO planted here must not hang the open; it is refused below. */
    int fd =
        posix_open_beneath(p, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = posix_path_error(p, errno, "open", path);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = posix_errno_error(p, errno, "stat", path);
        goto out;
    }
    if ((rc = posix_check_object(p, path, st.st_mode)) < 0)
        goto out;
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || (length != STORAGE_TO_END && length > size - offset)) {
        char *full = posix_full_path(p, path);
        if (length == STORAGE_TO_END)
            rc = err_set(ERR_INTEGRITY,
                         "object \"%s\" is truncated: reading from offset %llu but its size "
                         "is %llu",
                         full, (unsigned long long)offset, (unsigned long long)size);
        else
            rc = err_set(ERR_INTEGRITY,
                         "object \"%s\" is truncated: reading %llu bytes at offset %llu but its "
                         "size is %llu",
                         full, (unsigned long long)length, (unsigned long long)offset,
                         (unsigned long long)size);
        free(full);
        goto out;
    }
    uint64_t left = length == STORAGE_TO_END ? size - offset : length;
    if (left > 0)
        posix_fadvise(fd, (off_t)offset, (off_t)left, POSIX_FADV_SEQUENTIAL);
    buf = xmalloc(left < POSIX_IO_SIZE ? (size_t)left + 1 : POSIX_IO_SIZE);
    while (left > 0) {
        size_t want = left < POSIX_IO_SIZE ? (size_t)left : POSIX_IO_SIZE;
        ssize_t got = pread(fd, buf, want, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            rc = posix_errno_error(p, errno, "read", path);
            goto out;
        }
        if (got == 0) {
            char *full = posix_full_path(p, path);
            rc = err_set(ERR_INTEGRITY, "object \"%s\" ended early at offset %llu", full,
                         (unsigned long long)offset);
            free(full);
            goto out;
        }
        rc = sink(ctx, buf, (size_t)got);
        if (rc < 0)
            goto out;
        offset += (uint64_t)got;
        left -= (uint64_t)got;
    }
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* --- info, remove, rename ---------------------------------------------------- */

/* The directory holding path's object, opened beneath the root (the root's own
 * descriptor for a top-level name: close it with parent_close). *name points into
 * path. -1 with errno set. */
static int parent_open(struct storage_posix *p, const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *name = path;
        return p->root_fd;
    }
    *name = slash + 1;
    char *dir = xstrndup(path, (size_t)(slash - path));
    int fd = posix_dir_open(p, dir, false, NULL);
    int e = errno;
    free(dir);
    errno = e;
    return fd;
}

static void parent_close(struct storage_posix *p, int fd)
{
    if (fd >= 0 && fd != p->root_fd)
        close(fd);
}

static int posix_info(struct storage *s, const char *path, struct storage_info *info)
{
    struct storage_posix *p = posix_of(s);
    struct stat st;
    const char *name;
    int rc = 0;
    info->path = NULL;
    int dir = parent_open(p, path, &name);
    if (dir < 0)
        rc = posix_path_error(p, errno, "stat", path);
    else if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        rc = posix_lookup_error(p, errno, "stat", path);
    else if ((rc = posix_check_object(p, path, st.st_mode)) == 0) {
        info->size = (uint64_t)st.st_size;
        info->mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
    }
    parent_close(p, dir);
    return rc;
}

static int posix_remove(struct storage *s, const char *path)
{
    struct storage_posix *p = posix_of(s);
    struct stat st;
    const char *name;
    int rc = 0;
    int dir = parent_open(p, path, &name);
    if (dir < 0) {
        /* Missing or below a file: no such object; a link or special file: refused. */
        int e = errno;
        if (e != ENOENT && (rc = posix_refuse_foreign(p, path)) == 0 && e != ENOTDIR)
            rc = posix_errno_error(p, e, "remove", path);
        goto out;
    }
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            rc = posix_errno_error(p, errno, "remove", path);
        goto out;
    }
    if (S_ISDIR(st.st_mode))
        goto out; /* a directory is no object */
    if (!S_ISREG(st.st_mode)) {
        rc = storage_refuse(s, path, posix_entry_of(st.st_mode));
        goto out;
    }
    /* unlinkat never follows the last component: at worst (a link swapped in since
     * the look) it removes that link, never what it points to. */
    if (unlinkat(dir, name, 0) < 0 && errno != ENOENT && errno != EISDIR)
        rc = posix_errno_error(p, errno, "remove", path);
out:
    parent_close(p, dir);
    return rc;
}

static int posix_rename(struct storage *s, const char *from, const char *to)
{
    struct storage_posix *p = posix_of(s);
    char *from_dir = NULL, *to_dir = NULL;
    const char *from_name, *to_name;
    int from_fd = -1, to_fd = -1;
    bool made = false;
    int rc = 0;
    struct stat st;
    posix_split_path(from, &from_dir, &from_name);
    posix_split_path(to, &to_dir, &to_name);
    from_fd = posix_dir_open(p, from_dir, false, NULL);
    if (from_fd < 0) {
        rc = posix_path_error(p, errno, "stat", from);
        goto out;
    }
    if (fstatat(from_fd, from_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = posix_lookup_error(p, errno, "stat", from);
        goto out;
    }
    if ((rc = posix_check_object(p, from, st.st_mode)) < 0)
        goto out;
    to_fd = posix_dir_open(p, to_dir, true, &made);
    if (to_fd < 0) {
        int e = errno;
        if ((rc = posix_refuse_foreign(p, to_dir)) == 0)
            rc = posix_errno_error(p, e, "create directory", to_dir);
        goto out;
    }
    if (fstatat(to_fd, to_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISDIR(st.st_mode)) {
        rc = storage_refuse(s, to, posix_entry_of(st.st_mode));
        goto out;
    }
    if (renameat(from_fd, from_name, to_fd, to_name) < 0) {
        char *full = posix_full_path(p, to);
        rc = posix_lookup_error(p, errno, "rename", from);
        err_context("while renaming it to \"%s\"", full);
        free(full);
        goto out;
    }
    if (posix_fsync(p, to_fd, true) < 0) {
        rc = posix_errno_error(p, errno, "fsync directory", to_dir);
        goto out;
    }
    if (strcmp(from_dir, to_dir) != 0 && posix_fsync(p, from_fd, true) < 0) {
        rc = posix_errno_error(p, errno, "fsync directory", from_dir);
        goto out;
    }
    if (made)
        rc = posix_fsync_chain(p, to_dir);
out:
    if (from_fd >= 0)
        close(from_fd);
    if (to_fd >= 0)
        close(to_fd);
    free(from_dir);
    free(to_dir);
    return rc;
}

static void posix_free(struct storage *s)
{
    struct storage_posix *p = posix_of(s);
    posix_sync_free(p);
    if (p->root_fd >= 0)
        close(p->root_fd);
    free(p->root);
    free(p);
}

static const struct storage_ops posix_ops = {
    .version = STORAGE_OPS_VERSION,
    .type = "posix",
    .read = posix_read,
    .write_open = posix_write_open,
    .write_data = posix_write_data,
    .write_commit = posix_write_commit,
    .write_abort = posix_write_abort,
    .list = posix_list,
    .info = posix_info,
    .remove = posix_remove,
    .rename = posix_rename,
    .free = posix_free,
    .sync = posix_sync,
    .sweep = posix_sweep,
};

/* mkdir -p with 0700, fsyncing the parent of each directory created. */
static int make_root(const char *root)
{
    char *path = xstrdup(root);
    int rc = 0;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    for (char *c = path + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(path, 0700) == 0) {
            char *slash = strrchr(path, '/');
            char *parent = slash == NULL   ? xstrdup(".")
                           : slash == path ? xstrdup("/")
                                           : xstrndup(path, (size_t)(slash - path));
            int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd >= 0) {
                if (fsync(fd) < 0)
                    rc = err_set_errno(ERR_IO, errno, "could not fsync directory \"%s\"", parent);
                close(fd);
            }
            free(parent);
            if (rc < 0)
                break;
        } else if (errno != EEXIST) {
            rc = err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", path);
            break;
        }
        *c = saved;
        if (saved == '\0')
            break;
    }
    free(path);
    return rc;
}

struct storage *storage_posix_new(const char *name, const char *root)
{
    if (!root || !*root) {
        err_set(ERR_CONFIG, "repository \"%s\" has an empty path", name ? name : "");
        return NULL;
    }
    int rc = make_root(root);
    if (rc < 0) {
        posix_access_hint(rc, name);
        err_context("while creating repository \"%s\"", name ? name : "");
        return NULL;
    }
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        posix_access_hint(
            err_set_errno(ERR_IO, errno, "could not open repository directory \"%s\"", root), name);
        err_context("in repository \"%s\"", name ? name : "");
        return NULL;
    }
    struct storage_posix *p = xcalloc(1, sizeof(*p));
    storage_init(&p->base, &posix_ops, name);
    storage_set_location(&p->base, root);
    p->root = xstrdup(root);
    p->root_fd = fd;
    /* tests: the component walk that kernels without openat2 get */
    p->no_openat2 = getenv("PGARK_TEST_NO_OPENAT2") != NULL;
    posix_sync_init(p);
    return &p->base;
}
