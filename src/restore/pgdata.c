/*
 * pgdata.c — the target data directory: is it empty, does a server run on it, and
 * (for --delta and --force) removing what the backup does not hold, so that the
 * restored directory equals the backup file for file.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pgdata_nonempty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", dir);
    }
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            found = 1;
            break;
        }
    }
    closedir(d);
    return found;
}

int pgdata_check_postmaster(const char *dir)
{
    char *path = xasprintf("%s/postmaster.pid", dir);
    FILE *f = fopen(path, "r");
    int rc = 0;
    if (!f)
        goto out;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) == 1 && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
        err_set(ERR_USAGE, "a server is running on \"%s\" (process %ld in \"%s\")", dir, pid, path);
        rc = err_hint("stop it first (pg_ctl stop -D \"%s\"); nothing was changed", dir);
    }
    fclose(f);
out:
    free(path);
    return rc;
}

/* --- a set of paths ------------------------------------------------------------------ */

struct path_set {
    char **slots;
    size_t cap, n;
};

static uint64_t path_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

struct path_set *path_set_new(void)
{
    struct path_set *s = xcalloc(1, sizeof(*s));
    s->cap = 1024;
    s->slots = xcalloc(s->cap, sizeof(*s->slots));
    return s;
}

static void set_insert(char **slots, size_t cap, char *p)
{
    size_t i = (size_t)path_hash(p) & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = p;
}

void path_set_add(struct path_set *s, const char *path)
{
    if (path_set_has(s, path))
        return;
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap * 2;
        char **slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i])
                set_insert(slots, cap, s->slots[i]);
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    set_insert(s->slots, s->cap, xstrdup(path));
    s->n++;
}

bool path_set_has(const struct path_set *s, const char *path)
{
    size_t i = (size_t)path_hash(path) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], path) == 0)
            return true;
        i = (i + 1) & (s->cap - 1);
    }
    return false;
}

void path_set_free(struct path_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    free(s);
}

/* --- removing what the backup does not hold ------------------------------------------- */

int pgdata_prune(int dfd, const char *prefix, const char *shown, const struct path_set *keep,
                 bool top_kept_only, uint64_t *removed)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", shown);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *sub_rel = prefix[0] ? xasprintf("%s/%s", prefix, de->d_name) : xstrdup(de->d_name);
        char *sub_shown = xasprintf("%s/%s", shown, de->d_name);
        if (!path_set_has(keep, sub_rel)) {
            if (!top_kept_only)
                rc = confine_remove(dirfd(d), de->d_name, sub_shown, removed);
        } else {
            /* Kept: a directory is entered, never a symlink (pg_wal or a tablespace's,
             * whose directories are pruned from their own descriptors). */
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0)
                rc = pgdata_prune(fd, sub_rel, sub_shown, keep, false, removed);
            else if (errno != ELOOP && errno != ENOTDIR)
                rc = err_set_errno(ERR_IO, errno, "could not open directory \"%s\"", sub_shown);
        }
        free(sub_rel);
        free(sub_shown);
    }
    closedir(d);
    return rc;
}
