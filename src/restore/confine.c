/*
 * confine.c — the file operations restore does beneath a directory it was given (the
 * data directory, a tablespace's, the WAL directory), none of which follows a symlink.
 *
 * A path is walked one component at a time from the directory's descriptor, each
 * opened O_NOFOLLOW | O_DIRECTORY: a symlink on the way is never gone through, whoever
 * put it there (a hostile manifest, or an earlier life of the directory restored over
 * with --delta). Where restore needs a directory and finds a symlink or a file, it
 * removes that (the link, never what it points to) and makes the directory. The walk
 * costs a few openat calls a path; the writer keeps the directory of the last file open,
 * so a restore of a thousand files pays for it once a directory.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

int confine_remove(int dfd, const char *name, const char *shown, uint64_t *removed)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : err_set_errno(ERR_IO, errno, "could not stat \"%s\"", shown);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
            return err_set_errno(ERR_IO, errno, "could not remove \"%s\"", shown);
        if (removed)
            (*removed)++;
        return 0;
    }
    int fd = openat(dfd, name, DIR_FLAGS);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", shown);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", shown);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *sub = xasprintf("%s/%s", shown, de->d_name);
        rc = confine_remove(dirfd(d), de->d_name, sub, removed);
        free(sub);
    }
    closedir(d);
    if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not remove directory \"%s\"", shown);
    return rc;
}

/* Directory name in dfd, made when missing and create (whatever else stands there
 * goes). shown names it in messages. */
static int step(int dfd, const char *name, bool create, const char *shown)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = openat(dfd, name, DIR_FLAGS);
        if (fd >= 0)
            return fd;
        int e = errno;
        if (!create || (e != ENOENT && e != ELOOP && e != ENOTDIR))
            return err_set_errno(ERR_IO, e, "could not open directory \"%s\"", shown);
        if (e != ENOENT) {
            /* A symlink or a file where a directory goes: it goes. */
            int rc = confine_remove(dfd, name, shown, NULL);
            if (rc < 0)
                return rc;
        }
        if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST)
            return err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", shown);
    }
    return err_set(ERR_IO, "could not create directory \"%s\": it keeps changing", shown);
}

int confine_dir(int root, const char *rel, bool create, const char *shown)
{
    int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", shown);
    struct buf where = BUF_INIT;
    buf_append_str(&where, shown);
    for (const char *c = rel; *c && fd >= 0;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        char *name = xstrndup(c, n);
        buf_append(&where, "/", 1);
        buf_append(&where, c, n);
        int next = n && strcmp(name, ".") && strcmp(name, "..")
                       ? step(fd, name, create, (const char *)where.data)
                       : err_set(ERR_IO, "could not open directory \"%s\": not a normalized path",
                                 (const char *)where.data);
        free(name);
        close(fd);
        fd = next;
        c = end ? end + 1 : c + n;
    }
    buf_free(&where);
    return fd;
}

int confine_symlink(int dfd, const char *name, const char *target, const char *shown)
{
    char have[4096];
    ssize_t n = readlinkat(dfd, name, have, sizeof(have) - 1);
    if (n >= 0) {
        have[n] = '\0';
        if (strcmp(have, target) == 0)
            return 0;
    }
    int rc = confine_remove(dfd, name, shown, NULL);
    if (rc < 0)
        return rc;
    if (symlinkat(target, dfd, name) < 0)
        return err_set_errno(ERR_IO, errno, "could not create symlink \"%s\"", shown);
    return 0;
}

int confine_resolve(const char *path, char **out)
{
    char real[PATH_MAX];
    *out = NULL;
    if (realpath(path, real)) {
        *out = xstrdup(real);
        return 0;
    }
    if (errno != ENOENT)
        return err_set_errno(ERR_IO, errno, "could not resolve \"%s\"", path);
    /* Not there (yet): its parent resolved, then its name. */
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!slash || !*name || !strcmp(name, ".") || !strcmp(name, ".."))
        return err_set(ERR_USAGE, "could not resolve \"%s\"", path);
    char *parent = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
    char *up = NULL;
    int rc = confine_resolve(parent, &up);
    if (rc == 0)
        *out = xasprintf("%s%s%s", up, strcmp(up, "/") ? "/" : "", name);
    free(up);
    free(parent);
    return rc;
}

bool confine_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return true;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}
