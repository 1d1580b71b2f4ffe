/*
 * list.c — the posix driver's list: a recursive walk below a prefix, in byte order of
 * the full paths, following nothing. See posix.c.
 */
#include "posix_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POSIX_MAX_DEPTH 64

struct list_walk {
    struct storage_posix *p;
    storage_list_fn fn;
    void *ctx;
    struct buf path; /* relative path of the directory being walked, with '/' */
    /* A sweep (posix_sweep) instead of a listing: fn is NULL, no object is visited, and
     * temporary files last changed before sweep_before_us are counted (and removed
     * unless sweep_count_only). */
    bool sweeping, sweep_count_only;
    int64_t sweep_before_us;
    uint64_t swept, swept_bytes;
};

static int64_t mtime_us_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000 + st->st_mtim.tv_nsec / 1000;
}

/* A temporary file named name in the directory being walked: counted and removed when
 * the sweep's age says it is a leftover. It can vanish meanwhile (its write ended):
 * that is not an error. */
static int sweep_temp(struct list_walk *walk, int dir_fd, const char *name)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
        mtime_us_of(&st) >= walk->sweep_before_us)
        return 0;
    if (!walk->sweep_count_only && unlinkat(dir_fd, name, 0) < 0) {
        if (errno == ENOENT)
            return 0;
        char *rel = xasprintf("%s%s", (char *)walk->path.data, name);
        int rc = posix_errno_error(walk->p, errno, "remove temporary file", rel);
        free(rel);
        return rc;
    }
    walk->swept++;
    walk->swept_bytes += (uint64_t)st.st_size;
    return 0;
}

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
    struct storage_info info = {.path = path, .entry = posix_entry_of(mode)};
    return walk->fn(walk->ctx, &info);
}

/*
 * Walk the directory open at fd (path in walk->path), visiting entries whose name
 * starts with "filter" ("" below the first level). Sorting each directory's names
 * with '/' appended to subdirectories yields the byte order of full paths, because
 * a subtree's paths all share the prefix "name/". Nothing is followed: entries are
 * looked at with AT_SYMLINK_NOFOLLOW, subdirectories opened with O_NOFOLLOW.
 * Long: one directory read, sorted and visited in order (the names gathered, sorted, then
 * each subdirectory walked or file handed on); the second part visits the entries the
 * first gathered, the directory stays open for both, and one cleanup closes it.
 */
static int list_dir(struct list_walk *walk, int fd, const char *filter, int depth)
{
    struct storage_posix *p = walk->p;
    struct list_entry *entries = NULL;
    size_t count = 0, cap = 0;
    size_t filter_len = strlen(filter);
    int rc = 0;
    if (depth > POSIX_MAX_DEPTH) {
        char *full = posix_full_path(p, (char *)walk->path.data);
        rc = err_set(ERR_IO, "directory \"%s\" is nested too deeply", full);
        free(full);
        close(fd);
        return rc;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        rc = posix_errno_error(p, errno, "open directory", (char *)walk->path.data);
        close(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                rc = posix_errno_error(p, errno, "read directory", (char *)walk->path.data);
            break;
        }
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (strncmp(name, filter, filter_len) != 0)
            continue;
        if (posix_is_temp_name(name)) {
            if (walk->sweeping && (rc = sweep_temp(walk, dirfd(d), name)) < 0)
                break;
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed or renamed while we looked */
            rc = posix_errno_error(p, errno, "stat", (char *)walk->path.data);
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
                rc = posix_errno_error(p, e, "open directory", path);
                break;
            }
            rc = list_dir(walk, sub, "", depth + 1);
        } else if (walk->sweeping) {
            continue; /* an object, or something that is not one: a listing's business */
        } else if (S_ISREG(st->st_mode)) {
            struct storage_info info = {
                .path = path,
                .size = (uint64_t)st->st_size,
                .mtime_us = mtime_us_of(st),
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

/* Walk below prefix: a listing (walk->fn set) or a sweep. */
static int walk_prefix(struct list_walk *walk, const char *prefix)
{
    struct storage_posix *p = walk->p;
    char *dir, *where = NULL;
    const char *filter;
    enum storage_entry entry;
    int rc = 0;
    posix_split_path(prefix, &dir, &filter);
    int fd = posix_dir_open(p, dir, false, NULL);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT && posix_find_foreign(p, dir, &where, &entry)) {
            /* A link or special file on the way: listed (and so reported), not followed. */
            struct storage_info info = {.path = where, .entry = entry};
            rc = walk->sweeping ? 0 : walk->fn(walk->ctx, &info);
        } else if (e != ENOENT && e != ENOTDIR) {
            rc = posix_errno_error(p, e, "open directory", dir);
        }
        goto out; /* no such directory: nothing below the prefix */
    }
    if (*dir) {
        buf_append_str(&walk->path, dir);
        buf_append_str(&walk->path, "/");
    } else {
        buf_reserve(&walk->path, 0);
        walk->path.data[0] = '\0';
    }
    rc = list_dir(walk, fd, filter, 0);
out:
    buf_free(&walk->path);
    free(where);
    free(dir);
    return rc;
}

int posix_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct list_walk walk = {.p = posix_of(s), .fn = fn, .ctx = ctx, .path = BUF_INIT};
    return walk_prefix(&walk, prefix);
}

int posix_sweep(struct storage *s, const char *prefix, int64_t before_us, bool count_only,
                uint64_t *n, uint64_t *bytes)
{
    struct list_walk walk = {.p = posix_of(s),
                             .path = BUF_INIT,
                             .sweeping = true,
                             .sweep_count_only = count_only,
                             .sweep_before_us = before_us};
    int rc = walk_prefix(&walk, prefix);
    *n = walk.swept;
    *bytes = walk.swept_bytes;
    return rc;
}
