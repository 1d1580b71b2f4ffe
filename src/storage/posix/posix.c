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
 * one; a failed or aborted write unlinks its temp file. list() skips temp files.
 */
#include "pgark/storage.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#define POSIX_IO_SIZE (1024 * 1024)
#define POSIX_MAX_DEPTH 64
/* Keep temp names within NAME_MAX (255) even for long object names. */
#define POSIX_TMP_BASE_MAX 200

struct storage_posix {
    struct storage base;
    char *root;
    int root_fd;
    int no_openat2; /* set (atomically) when openat2 is unavailable: walk instead */
};

struct posix_write {
    struct storage_write base;
    int dir_fd;
    int fd;
    char *name;     /* final name within dir_fd */
    char *tmp;      /* temp name within dir_fd */
    bool made_dirs; /* directories were created: fsync the chain at commit */
};

static struct storage_posix *posix_of(struct storage *s)
{
    return (struct storage_posix *)s;
}

/* Full filesystem path for messages. Caller frees. */
static char *full_path(struct storage_posix *p, const char *rel)
{
    if (!rel || !*rel)
        return xstrdup(p->root);
    return xasprintf("%s/%s", p->root, rel);
}

/* A repository pgark may not write in: one hint, however it showed (sets it on rc). */
static int access_hint(int rc, const char *name)
{
    if (rc == -ERR_AUTH)
        err_hint("give the user pgark runs as read and write access to the directory of "
                 "repository \"%s\", or correct its path",
                 name ? name : "");
    return rc;
}

static int errno_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    char *full = full_path(p, rel);
    int rc = err_set_errno(ERR_IO, errnum, "could not %s \"%s\"", what, full);
    free(full);
    return access_hint(rc, p->base.name);
}

/* ENOTDIR means some component of the path is a file: no such object either. */
static int lookup_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    if (errnum == ENOTDIR) {
        char *full = full_path(p, rel);
        int rc = err_set_errno(ERR_NOT_FOUND, errnum, "could not %s \"%s\"", what, full);
        free(full);
        return rc;
    }
    return errno_error(p, errnum, what, rel);
}

static int not_an_object(struct storage_posix *p, const char *rel)
{
    char *full = full_path(p, rel);
    int rc = err_set(ERR_NOT_FOUND, "\"%s\" is not a regular file", full);
    free(full);
    return rc;
}

static enum storage_entry entry_of(mode_t mode)
{
    if (S_ISLNK(mode))
        return STORAGE_ENTRY_SYMLINK;
    if (S_ISFIFO(mode))
        return STORAGE_ENTRY_FIFO;
    if (S_ISSOCK(mode))
        return STORAGE_ENTRY_SOCKET;
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return STORAGE_ENTRY_DEVICE;
    return STORAGE_ENTRY_OTHER;
}

/* Open rel (relative, not empty) one component at a time from the root, following no
 * link: the directories on the way with O_DIRECTORY | O_NOFOLLOW, the last one with
 * flags | O_NOFOLLOW. -1 with errno as the failing openat left it. */
static int walk_open(struct storage_posix *p, const char *rel, int flags, mode_t mode)
{
    int dir = p->root_fd;
    const char *c = rel;
    for (;;) {
        const char *slash = strchr(c, '/');
        int fd;
        if (!slash) {
            fd = openat(dir, c, flags | O_NOFOLLOW, mode);
        } else {
            char name[NAME_MAX + 1];
            size_t len = (size_t)(slash - c);
            if (len > NAME_MAX) {
                fd = -1;
                errno = ENAMETOOLONG;
            } else {
                memcpy(name, c, len);
                name[len] = '\0';
                fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
        }
        if (dir != p->root_fd) {
            int e = errno;
            close(dir);
            errno = e;
        }
        if (fd < 0 || !slash)
            return fd;
        dir = fd;
        c = slash + 1;
    }
}

/* Open rel ("" for the root) beneath the root without following any symbolic link.
 * The descriptor, or -1 with errno set (ELOOP or ENOTDIR when a link or a file is in
 * the way). */
static int open_beneath(struct storage_posix *p, const char *rel, int flags, mode_t mode)
{
    if (!*rel)
        rel = ".";
#ifdef SYS_openat2
    if (!__atomic_load_n(&p->no_openat2, __ATOMIC_RELAXED)) {
        struct open_how how = {
            .flags = (uint64_t)flags,
            .mode = (flags & O_CREAT) ? mode : 0,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, p->root_fd, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: the kernel could not rule out a race it guards against; the walk has
         * none. ENOSYS: no openat2 (an old kernel, a seccomp filter): walk from now on. */
        if (errno == ENOSYS)
            __atomic_store_n(&p->no_openat2, 1, __ATOMIC_RELAXED);
        else if (errno != EAGAIN)
            return -1;
    }
#endif
    return walk_open(p, rel, flags, mode);
}

/*
 * Whether rel, or a directory on the way to it, is neither a directory nor a regular
 * file: its relative path (malloc'd) and kind in *where and *entry. Called when an
 * operation on rel failed, to tell a link or a special file in the way (refused)
 * from an ordinary failure; looks without following anything.
 */
static bool find_foreign(struct storage_posix *p, const char *rel, char **where,
                         enum storage_entry *entry)
{
    int dir = p->root_fd;
    bool found = false;
    char *part = xstrdup(rel);
    for (char *c = part; *c;) {
        char *slash = strchr(c, '/');
        if (slash)
            *slash = '\0';
        struct stat st;
        if (fstatat(dir, c, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISREG(st.st_mode))
            break;
        if (!S_ISDIR(st.st_mode)) {
            *where = xstrdup(part); /* part ends at this component */
            *entry = entry_of(st.st_mode);
            found = true;
            break;
        }
        if (!slash)
            break;
        int sub = openat(dir, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            break;
        if (dir != p->root_fd)
            close(dir);
        dir = sub;
        *slash = '/';
        c = slash + 1;
    }
    if (dir != p->root_fd)
        close(dir);
    free(part);
    return found;
}

/* The refusal when rel leads to or through a link or special file, else 0. */
static int refuse_foreign(struct storage_posix *p, const char *rel)
{
    char *where = NULL;
    enum storage_entry entry;
    if (!find_foreign(p, rel, &where, &entry))
        return 0;
    int rc = storage_refuse(&p->base, where, entry);
    free(where);
    return rc;
}

/* An operation on rel failed with errnum: refused when a link or special file is in
 * the way, else lookup_error (ENOENT needs no look: nothing was in the way). */
static int path_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    int rc = errnum == ENOENT ? 0 : refuse_foreign(p, rel);
    return rc < 0 ? rc : lookup_error(p, errnum, what, rel);
}

/* rel as an object met by fstatat: 0 for a regular file, not_an_object for a
 * directory, refused for anything else. */
static int check_object(struct storage_posix *p, const char *rel, mode_t mode)
{
    if (S_ISREG(mode))
        return 0;
    if (S_ISDIR(mode))
        return not_an_object(p, rel);
    return storage_refuse(&p->base, rel, entry_of(mode));
}

/*
 * Open the directory "dir" (relative, "" for the root) beneath the root, creating
 * missing components 0700 when create is set (*made is then set when anything was
 * created). The descriptor, or -1 with errno set.
 */
static int dir_open(struct storage_posix *p, const char *dir, bool create, bool *made)
{
    int fd = open_beneath(p, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd >= 0 || errno != ENOENT || !create)
        return fd;
    /* Create what is missing, one component at a time, through descriptors opened
     * without following links, so a link in the way is never created through. */
    int cur = p->root_fd;
    char *part = xstrdup(dir);
    for (char *c = part;;) {
        char *slash = strchr(c, '/');
        if (slash)
            *slash = '\0';
        int sub = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT) {
            if (mkdirat(cur, c, 0700) == 0) {
                *made = true;
                sub = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            } else if (errno == EEXIST) { /* made meanwhile by another writer */
                sub = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
        }
        int e = errno;
        if (cur != p->root_fd)
            close(cur);
        cur = sub;
        if (cur < 0 || !slash) {
            free(part);
            errno = e;
            return cur;
        }
        c = slash + 1;
    }
}

static int fsync_dir_at(struct storage_posix *p, const char *rel)
{
    int fd = dir_open(p, rel ? rel : "", false, NULL);
    if (fd < 0)
        return errno_error(p, errno, "open directory", rel);
    int rc = 0;
    if (fsync(fd) < 0)
        rc = errno_error(p, errno, "fsync directory", rel);
    close(fd);
    return rc;
}

/* fsync the root and every directory above the last component of "dir" itself
 * excluded: their entries for newly created subdirectories must be durable. */
static int fsync_chain(struct storage_posix *p, const char *dir)
{
    int rc = fsync_dir_at(p, "");
    char *part = xstrdup(dir);
    for (char *c = part; rc == 0 && *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        rc = fsync_dir_at(p, part);
        *c = '/';
    }
    free(part);
    return rc;
}

/* Split "a/b/c" into dir "a/b" and name "c" (dir "" for a top-level name). */
static void split_path(const char *path, char **dir, const char **name)
{
    const char *slash = strrchr(path, '/');
    if (slash) {
        *dir = xstrndup(path, (size_t)(slash - path));
        *name = slash + 1;
    } else {
        *dir = xstrdup("");
        *name = path;
    }
}

static bool is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

/* --- read ------------------------------------------------------------------ */

static int posix_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                      storage_sink_fn sink, void *ctx)
{
    struct storage_posix *p = posix_of(s);
    uint8_t *buf = NULL;
    int rc = 0;
    /* O_NONBLOCK: a FIFO planted here must not hang the open; it is refused below. */
    int fd = open_beneath(p, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = path_error(p, errno, "open", path);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = errno_error(p, errno, "stat", path);
        goto out;
    }
    if ((rc = check_object(p, path, st.st_mode)) < 0)
        goto out;
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || (length != STORAGE_TO_END && length > size - offset)) {
        char *full = full_path(p, path);
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
            rc = errno_error(p, errno, "read", path);
            goto out;
        }
        if (got == 0) {
            char *full = full_path(p, path);
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

/* --- write ----------------------------------------------------------------- */

static void write_free(struct posix_write *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    free(w->base.path);
    free(w->name);
    free(w->tmp);
    free(w);
}

static struct storage_write *posix_write_open(struct storage *s, const char *path,
                                              uint64_t size_hint)
{
    struct storage_posix *p = posix_of(s);
    struct posix_write *w = xcalloc(1, sizeof(*w));
    char *dir = NULL;
    const char *name;
    int rc = 0;
    (void)size_hint;
    w->base.storage = s;
    w->base.path = xstrdup(path);
    w->fd = -1;
    split_path(path, &dir, &name);
    w->name = xstrdup(name);
    w->dir_fd = dir_open(p, dir, true, &w->made_dirs);
    if (w->dir_fd < 0) {
        int e = errno;
        if ((rc = refuse_foreign(p, dir)) == 0)
            rc = errno_error(p, e, "create directory", dir);
        goto out;
    }
    /* The rename at commit would replace a link or special file, not write through it;
     * still, what is there is not pgark's: refuse it as every other operation does. A
     * directory there is left to the rename's own error. */
    struct stat st;
    if (fstatat(w->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISDIR(st.st_mode)) {
        rc = storage_refuse(s, path, entry_of(st.st_mode));
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
        rc = errno_error(p, errno, "create", rel);
        free(rel);
        goto out;
    }
out:
    free(dir);
    if (rc < 0) {
        write_free(w);
        return NULL;
    }
    return &w->base;
}

static int posix_write_data(struct storage_write *sw, const uint8_t *data, size_t len)
{
    struct posix_write *w = (struct posix_write *)sw;
    while (len > 0) {
        ssize_t n = write(w->fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error(posix_of(sw->storage), errno, "write", sw->path);
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
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
        char *full = full_path(p, path);
        rc = err_set(ERR_EXISTS, "\"%s\" already exists", full);
        free(full);
        return rc;
    }
    return errno_error(p, errno, "rename temporary file to", path);
}

static int posix_write_commit(struct storage_write *sw)
{
    struct posix_write *w = (struct posix_write *)sw;
    struct storage_posix *p = posix_of(sw->storage);
    bool renamed = false;
    int rc = 0;
    if (fsync(w->fd) < 0) {
        rc = errno_error(p, errno, "fsync", sw->path);
        goto out;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0) {
        rc = errno_error(p, errno, "close", sw->path);
        goto out;
    }
    if (sw->no_replace) {
        rc = link_new(p, w, sw->path);
        if (rc < 0)
            goto out;
    } else if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->name) < 0) {
        rc = errno_error(p, errno, "rename temporary file to", sw->path);
        goto out;
    }
    renamed = true;
    if (fsync(w->dir_fd) < 0) {
        rc = errno_error(p, errno, "fsync directory of", sw->path);
        goto out;
    }
    if (w->made_dirs) {
        char *dir;
        const char *name;
        split_path(sw->path, &dir, &name);
        rc = fsync_chain(p, dir);
        free(dir);
    }
out:
    if (!renamed)
        unlinkat(w->dir_fd, w->tmp, 0);
    write_free(w);
    return rc;
}

static void posix_write_abort(struct storage_write *sw)
{
    struct posix_write *w = (struct posix_write *)sw;
    unlinkat(w->dir_fd, w->tmp, 0);
    write_free(w);
}

/* --- list ------------------------------------------------------------------ */

struct list_walk {
    struct storage_posix *p;
    storage_list_fn fn;
    void *ctx;
    struct buf path; /* relative path of the directory being walked, with '/' */
};

struct list_entry {
    char *key; /* name, with '/' appended for directories: sorts like full paths */
    struct stat st;
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct list_entry *)a)->key, ((const struct list_entry *)b)->key);
}

/* Hand the generic layer an entry that is not an object (walk->path names it). */
static int list_foreign(struct list_walk *walk, const char *path, mode_t mode)
{
    struct storage_info info = {.path = path, .entry = entry_of(mode)};
    return walk->fn(walk->ctx, &info);
}

/*
 * Walk the directory open at fd (path in walk->path), visiting entries whose name
 * starts with "filter" ("" below the first level). Sorting each directory's names
 * with '/' appended to subdirectories yields the byte order of full paths, because
 * a subtree's paths all share the prefix "name/". Nothing is followed: entries are
 * looked at with AT_SYMLINK_NOFOLLOW, subdirectories opened with O_NOFOLLOW.
 */
static int list_dir(struct list_walk *walk, int fd, const char *filter, int depth)
{
    struct storage_posix *p = walk->p;
    struct list_entry *entries = NULL;
    size_t count = 0, cap = 0;
    size_t filter_len = strlen(filter);
    int rc = 0;
    if (depth > POSIX_MAX_DEPTH) {
        char *full = full_path(p, (char *)walk->path.data);
        rc = err_set(ERR_IO, "directory \"%s\" is nested too deeply", full);
        free(full);
        close(fd);
        return rc;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        rc = errno_error(p, errno, "open directory", (char *)walk->path.data);
        close(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                rc = errno_error(p, errno, "read directory", (char *)walk->path.data);
            break;
        }
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || is_temp_name(name))
            continue;
        if (strncmp(name, filter, filter_len) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed or renamed while we looked */
            rc = errno_error(p, errno, "stat", (char *)walk->path.data);
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            entries = xrealloc(entries, cap * sizeof(*entries));
        }
        entries[count].key = S_ISDIR(st.st_mode) ? xasprintf("%s/", name) : xstrdup(name);
        entries[count].st = st;
        count++;
    }
    if (rc == 0 && count > 1)
        qsort(entries, count, sizeof(*entries), entry_cmp);
    size_t base_len = walk->path.len;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const struct stat *st = &entries[i].st;
        walk->path.len = base_len;
        buf_append_str(&walk->path, entries[i].key);
        const char *path = (const char *)walk->path.data;
        if (S_ISDIR(st->st_mode)) {
            int sub =
                openat(dirfd(d), path + base_len, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                int e = errno;
                struct stat now;
                if (e == ENOENT)
                    continue;
                /* Replaced since it was looked at: by a link (report it) or a file. */
                walk->path.data[walk->path.len - 1] = '\0';
                if ((e == ELOOP || e == ENOTDIR) &&
                    fstatat(dirfd(d), path + base_len, &now, AT_SYMLINK_NOFOLLOW) == 0) {
                    if (!S_ISREG(now.st_mode) && !S_ISDIR(now.st_mode))
                        rc = list_foreign(walk, path, now.st_mode);
                    continue;
                }
                rc = errno_error(p, e, "open directory", path);
                break;
            }
            rc = list_dir(walk, sub, "", depth + 1);
        } else if (S_ISREG(st->st_mode)) {
            struct storage_info info = {
                .path = path,
                .size = (uint64_t)st->st_size,
                .mtime_us = (int64_t)st->st_mtim.tv_sec * 1000000 + st->st_mtim.tv_nsec / 1000,
            };
            rc = walk->fn(walk->ctx, &info);
        } else {
            rc = list_foreign(walk, path, st->st_mode);
        }
    }
    walk->path.len = base_len;
    if (walk->path.data)
        walk->path.data[base_len] = '\0';
    for (size_t i = 0; i < count; i++)
        free(entries[i].key);
    free(entries);
    closedir(d);
    return rc;
}

static int posix_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct storage_posix *p = posix_of(s);
    struct list_walk walk = {.p = p, .fn = fn, .ctx = ctx, .path = BUF_INIT};
    char *dir, *where = NULL;
    const char *filter;
    enum storage_entry entry;
    int rc = 0;
    split_path(prefix, &dir, &filter);
    int fd = dir_open(p, dir, false, NULL);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT && find_foreign(p, dir, &where, &entry)) {
            /* A link or special file on the way: listed (and so reported), not followed. */
            struct storage_info info = {.path = where, .entry = entry};
            rc = fn(ctx, &info);
        } else if (e != ENOENT && e != ENOTDIR) {
            rc = errno_error(p, e, "open directory", dir);
        }
        goto out; /* no such directory: nothing below the prefix */
    }
    if (*dir) {
        buf_append_str(&walk.path, dir);
        buf_append_str(&walk.path, "/");
    } else {
        buf_reserve(&walk.path, 0);
        walk.path.data[0] = '\0';
    }
    rc = list_dir(&walk, fd, filter, 0);
out:
    buf_free(&walk.path);
    free(where);
    free(dir);
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
    int fd = dir_open(p, dir, false, NULL);
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
        rc = path_error(p, errno, "stat", path);
    else if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        rc = lookup_error(p, errno, "stat", path);
    else if ((rc = check_object(p, path, st.st_mode)) == 0) {
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
        if (e != ENOENT && (rc = refuse_foreign(p, path)) == 0 && e != ENOTDIR)
            rc = errno_error(p, e, "remove", path);
        goto out;
    }
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT)
            rc = errno_error(p, errno, "remove", path);
        goto out;
    }
    if (S_ISDIR(st.st_mode))
        goto out; /* a directory is no object */
    if (!S_ISREG(st.st_mode)) {
        rc = storage_refuse(s, path, entry_of(st.st_mode));
        goto out;
    }
    /* unlinkat never follows the last component: at worst (a link swapped in since
     * the look) it removes that link, never what it points to. */
    if (unlinkat(dir, name, 0) < 0 && errno != ENOENT && errno != EISDIR)
        rc = errno_error(p, errno, "remove", path);
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
    split_path(from, &from_dir, &from_name);
    split_path(to, &to_dir, &to_name);
    from_fd = dir_open(p, from_dir, false, NULL);
    if (from_fd < 0) {
        rc = path_error(p, errno, "stat", from);
        goto out;
    }
    if (fstatat(from_fd, from_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = lookup_error(p, errno, "stat", from);
        goto out;
    }
    if ((rc = check_object(p, from, st.st_mode)) < 0)
        goto out;
    to_fd = dir_open(p, to_dir, true, &made);
    if (to_fd < 0) {
        int e = errno;
        if ((rc = refuse_foreign(p, to_dir)) == 0)
            rc = errno_error(p, e, "create directory", to_dir);
        goto out;
    }
    if (fstatat(to_fd, to_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISDIR(st.st_mode)) {
        rc = storage_refuse(s, to, entry_of(st.st_mode));
        goto out;
    }
    if (renameat(from_fd, from_name, to_fd, to_name) < 0) {
        char *full = full_path(p, to);
        rc = lookup_error(p, errno, "rename", from);
        err_context("while renaming it to \"%s\"", full);
        free(full);
        goto out;
    }
    if (fsync(to_fd) < 0) {
        rc = errno_error(p, errno, "fsync directory", to_dir);
        goto out;
    }
    if (strcmp(from_dir, to_dir) != 0 && fsync(from_fd) < 0) {
        rc = errno_error(p, errno, "fsync directory", from_dir);
        goto out;
    }
    if (made)
        rc = fsync_chain(p, to_dir);
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
        access_hint(rc, name);
        err_context("while creating repository \"%s\"", name ? name : "");
        return NULL;
    }
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        access_hint(
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
    return &p->base;
}
