/*
 * path.c — how the posix driver reaches a path beneath its root without following a
 * link (openat2, or a walk one component at a time), creates missing directories,
 * fsyncs directory chains and words its errors. See posix.c for the whole promise.
 */
#include "posix_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

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

/* Full filesystem path for messages. Caller frees. */
char *posix_full_path(struct storage_posix *p, const char *rel)
{
    if (!rel || !*rel)
        return xstrdup(p->root);
    return xasprintf("%s/%s", p->root, rel);
}

/* A repository pgark may not write in: one hint, however it showed (sets it on rc). */
int posix_access_hint(int rc, const char *name)
{
    if (rc == -ERR_AUTH)
        err_hint("give the user pgark runs as read and write access to the directory of "
                 "repository \"%s\", or correct its path",
                 name ? name : "");
    return rc;
}

int posix_errno_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    char *full = posix_full_path(p, rel);
    int rc = err_set_errno(ERR_IO, errnum, "could not %s \"%s\"", what, full);
    free(full);
    return posix_access_hint(rc, p->base.name);
}

/* ENOTDIR means some component of the path is a file: no such object either. */
int posix_lookup_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    if (errnum == ENOTDIR) {
        char *full = posix_full_path(p, rel);
        int rc = err_set_errno(ERR_NOT_FOUND, errnum, "could not %s \"%s\"", what, full);
        free(full);
        return rc;
    }
    return posix_errno_error(p, errnum, what, rel);
}

static int not_an_object(struct storage_posix *p, const char *rel)
{
    char *full = posix_full_path(p, rel);
    int rc = err_set(ERR_NOT_FOUND, "\"%s\" is not a regular file", full);
    free(full);
    return rc;
}

enum storage_entry posix_entry_of(mode_t mode)
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
int posix_open_beneath(struct storage_posix *p, const char *rel, int flags, mode_t mode)
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
bool posix_find_foreign(struct storage_posix *p, const char *rel, char **where,
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
            *entry = posix_entry_of(st.st_mode);
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
int posix_refuse_foreign(struct storage_posix *p, const char *rel)
{
    char *where = NULL;
    enum storage_entry entry;
    if (!posix_find_foreign(p, rel, &where, &entry))
        return 0;
    int rc = storage_refuse(&p->base, where, entry);
    free(where);
    return rc;
}

/* An operation on rel failed with errnum: refused when a link or special file is in
 * the way, else lookup_error (ENOENT needs no look: nothing was in the way). */
int posix_path_error(struct storage_posix *p, int errnum, const char *what, const char *rel)
{
    int rc = errnum == ENOENT ? 0 : posix_refuse_foreign(p, rel);
    return rc < 0 ? rc : posix_lookup_error(p, errnum, what, rel);
}

/* rel as an object met by fstatat: 0 for a regular file, not_an_object for a
 * directory, refused for anything else. */
int posix_check_object(struct storage_posix *p, const char *rel, mode_t mode)
{
    if (S_ISREG(mode))
        return 0;
    if (S_ISDIR(mode))
        return not_an_object(p, rel);
    return storage_refuse(&p->base, rel, posix_entry_of(mode));
}

/*
 * Open the directory "dir" (relative, "" for the root) beneath the root, creating
 * missing components 0700 when create is set (*made is then set when anything was
 * created). The descriptor, or -1 with errno set.
 */
int posix_dir_open(struct storage_posix *p, const char *dir, bool create, bool *made)
{
    int fd = posix_open_beneath(p, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
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
    int fd = posix_dir_open(p, rel ? rel : "", false, NULL);
    if (fd < 0)
        return posix_errno_error(p, errno, "open directory", rel);
    int rc = 0;
    if (posix_fsync(p, fd, true) < 0)
        rc = posix_errno_error(p, errno, "fsync directory", rel);
    close(fd);
    return rc;
}

/* fsync the root and every directory above the last component of "dir" itself
 * excluded: their entries for newly created subdirectories must be durable. */
int posix_fsync_chain(struct storage_posix *p, const char *dir)
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
void posix_split_path(const char *path, char **dir, const char **name)
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

bool posix_is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}
