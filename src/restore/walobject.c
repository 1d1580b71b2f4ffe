/*
 * walobject.c — one WAL object (segment, partial, history file) of a cluster's
 * repositories copied into a file, for wal-fetch and its read-ahead (restore_int.h,
 * walobject_fetch): verified as it is read, written under a temporary name in the
 * destination's directory and renamed, so the file appears only complete. A damaged
 * copy in one repository is reported and the next repository tried.
 */
#include "restore_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A copy to be flushed (the read-ahead's) is written out as it is written, not once at
 * the end. The server's startup process fsyncs its files all through replay (pg_control
 * as the minimum recovery point moves, each restored segment thrice: ~1,500 fsyncs for
 * 1 GiB of pgbench WAL), and each of them waits until the disk has also made durable
 * whatever was written and not yet flushed. With one flush per 16 MiB copy those fsyncs
 * took 4.0 s in all (1.7 s with the same WAL in pg_wal beforehand); flushing every MiB,
 * 3.0 s, and replay about as much shorter (tests/bench/restore.sh, 2 cores, virtio disk).
 * The write-out of each MiB is started as soon as it is written (sync_file_range WRITE,
 * which does not wait) and waited for one step later, so that at most two steps are ever
 * dirty while the thread goes on decompressing the next: a fdatasync per MiB had left
 * the read-ahead's threads idle on the disk 16 times per segment, and the read-ahead,
 * not the calls, sets the pace of back-to-back restore_command calls. One fdatasync at
 * the end still makes the copy durable before it is renamed into the cache. */
#define FLUSH_STEP (1u << 20)

struct fd_sink {
    int fd;
    uint64_t len;
    uint64_t started; /* bytes whose write-out has been started (flush only) */
    uint64_t waited;  /* bytes whose write-out has been waited for (flush only) */
    bool flush;
    const char *tmp;
};

/* Start the write-out of what was written since the last step; wait for the step before
 * it. A failure here is only the early write-out: the final fdatasync reports it. */
static void write_behind(struct fd_sink *s)
{
    if (s->len - s->started < FLUSH_STEP)
        return;
    if (s->started > s->waited)
        (void)sync_file_range(s->fd, (off_t)s->waited, (off_t)(s->started - s->waited),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    s->waited = s->started;
    (void)sync_file_range(s->fd, (off_t)s->started, (off_t)(s->len - s->started),
                          SYNC_FILE_RANGE_WRITE);
    s->started = s->len;
}

static int write_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct fd_sink *s = ctx;
    while (len) {
        ssize_t n = write(s->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set_errno(ERR_IO, errno, "could not write \"%s\"", s->tmp);
        data += n;
        len -= (size_t)n;
        s->len += (uint64_t)n;
    }
    if (s->flush)
        write_behind(s);
    return 0;
}

static char *dir_of(const char *path)
{
    char *copy = xstrdup(path);
    char *d = xstrdup(dirname(copy));
    free(copy);
    return d;
}

/* One repo: 1 written, 0 not there, negative on failure (the temp file is gone). */
static int fetch_from(struct repo *r, const char *path, const char *dest, uint64_t seg_size,
                      unsigned flags, const char *what)
{
    char *dir = dir_of(dest);
    char *copy = xstrdup(dest);
    /* pid and name: unique among concurrent fetches (read-ahead threads) */
    char *tmp = xasprintf("%s/.pgark-fetch.%ld.%s.tmp", dir, (long)getpid(), basename(copy));
    free(copy);
    struct fd_sink s = {.fd = -1, .flush = flags & WALOBJECT_FLUSH, .tmp = tmp};
    bool pad = flags & WALOBJECT_PAD;
    int rc;
    s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s.fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not create \"%s\"", tmp);
        goto out;
    }
    rc = repo_get(r, path, write_sink, &s);
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND) {
            err_clear();
            rc = 0;
        } else {
            err_context("while fetching %s from repository \"%s\"", what, repo_name(r));
        }
        goto out;
    }
    if (seg_size && !pad && s.len != seg_size) {
        rc = err_set(ERR_INTEGRITY, "%s in repository \"%s\" has %llu bytes, not %llu", what,
                     repo_name(r), (unsigned long long)s.len, (unsigned long long)seg_size);
        goto out;
    }
    if (seg_size && pad) {
        if (s.len > seg_size) {
            rc = err_set(ERR_INTEGRITY, "%s in repository \"%s\" is longer than a segment", what,
                         repo_name(r));
            goto out;
        }
        if (ftruncate(s.fd, (off_t)seg_size) < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not pad \"%s\"", tmp);
            goto out;
        }
    }
    if (s.flush && fdatasync(s.fd) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\" to disk", tmp);
        goto out;
    }
    close(s.fd);
    s.fd = -1;
    if (rename(tmp, dest) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\" to \"%s\"", tmp, dest);
        goto out;
    }
    rc = 1;
out:
    if (s.fd >= 0)
        close(s.fd);
    if (rc <= 0)
        unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}

int walobject_fetch(struct cli_repos *set, const char *path, const char *dest, uint64_t seg_size,
                    unsigned flags, const char *what)
{
    enum err_kind kind = ERR_OK;
    char *first_error = NULL;
    int rc = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (r)
            rc = fetch_from(r, path, dest, seg_size, flags, what);
        else
            rc = err_context("while opening repository \"%s\"", set->r[i].conf->name);
        if (rc > 0)
            break;
        if (rc < 0) {
            /* Keep the first failure, try the next repository. */
            char *text = err_format();
            if (!first_error) {
                first_error = xstrdup(text);
                kind = err_kind();
            } else {
                log_warn("%s", text);
            }
            free(text);
            err_clear();
            rc = 0;
        }
    }
    if (rc > 0) {
        if (first_error)
            log_warn("%s (served from another repository)", first_error);
    } else if (first_error) {
        rc = err_set(kind, "%s", first_error);
    }
    free(first_error);
    return rc;
}
