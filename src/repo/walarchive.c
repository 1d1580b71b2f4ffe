/*
 * walarchive.c — WAL segments and history files in a repository.
 *
 * A complete segment is written once: pushing it again with the same bytes is a
 * no-op (a receiver restarted after a crash re-ships what it is unsure of), and
 * pushing different bytes under the same name is refused, never an overwrite: two
 * different segments with one name mean two servers are writing into one archive,
 * and the one already stored may be what a restore needs.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PUSH_BUF (1024 * 1024)

char *repo_wal_path(timeline_t tli, const char *segment_name, bool partial, char *buf, size_t cap)
{
    snprintf(buf, cap, "wal/%08X/%s%s", tli, segment_name, partial ? ".partial" : "");
    return buf;
}

static int segment_tli(struct repo *r, const char *name, timeline_t *tli)
{
    uint64_t segno;
    return wal_segment_parse(name, r->identity.seg_size, tli, &segno);
}

/* SHA-256 of the first len bytes of fd, read positionally. */
static int fd_digest(int fd, uint64_t len, uint8_t out[SHA256_LEN])
{
    struct sha256_ctx *c = sha256_ctx_new();
    uint8_t *buf = xmalloc(PUSH_BUF);
    uint64_t off = 0;
    int rc = 0;
    while (off < len) {
        size_t want = len - off < PUSH_BUF ? (size_t)(len - off) : PUSH_BUF;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_set_errno(ERR_IO, errno, "could not read WAL to archive")
                       : err_set(ERR_IO, "WAL file to archive is shorter than %llu bytes",
                                 (unsigned long long)len);
            break;
        }
        sha256_ctx_update(c, buf, (size_t)n);
        off += (uint64_t)n;
    }
    if (rc == 0)
        sha256_ctx_final(c, out);
    free(buf);
    sha256_ctx_free(c);
    return rc;
}

/* Write the first len bytes of fd as object path. */
static int put_fd(struct repo *r, const char *path, int fd, uint64_t len)
{
    struct repo_writer *w = repo_writer_open(r, path, len);
    if (!w)
        return err_code();
    uint8_t *buf = xmalloc(PUSH_BUF);
    uint64_t off = 0;
    int rc = 0;
    while (rc == 0 && off < len) {
        size_t want = len - off < PUSH_BUF ? (size_t)(len - off) : PUSH_BUF;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_set_errno(ERR_IO, errno, "could not read WAL to archive")
                       : err_set(ERR_IO, "WAL file to archive is shorter than %llu bytes",
                                 (unsigned long long)len);
            break;
        }
        rc = repo_writer_write(w, buf, (size_t)n);
        off += (uint64_t)n;
    }
    free(buf);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

/* 1 when path already holds exactly this content, 0 when it is absent, ERR_EXISTS
 * when it holds something else. */
static int same_as_stored(struct repo *r, const char *path, const uint8_t digest[SHA256_LEN],
                          uint64_t len, const char *what)
{
    char *full = repo_full_path(r, path);
    int rc = storage_exists(r->storage, full);
    free(full);
    if (rc <= 0)
        return rc;
    uint8_t stored[SHA256_LEN];
    uint64_t stored_len = 0;
    rc = repo_object_digest(r, path, stored, &stored_len);
    if (rc < 0)
        return rc;
    if (stored_len == len && memcmp(stored, digest, SHA256_LEN) == 0)
        return 1;
    err_set(ERR_EXISTS, "%s is already in repository \"%s\" with different content", what,
            repo_name(r));
    return err_hint("two servers may be archiving into one repository; nothing was overwritten");
}

int repo_wal_push_fd(struct repo *r, const char *segment_name, int fd, uint64_t len)
{
    timeline_t tli;
    char path[96], what[64];
    uint8_t digest[SHA256_LEN];
    int rc = segment_tli(r, segment_name, &tli);
    if (rc < 0)
        return rc;
    if (len != r->identity.seg_size)
        return err_set(ERR_IO, "segment %s has %llu bytes, not %llu", segment_name,
                       (unsigned long long)len, (unsigned long long)r->identity.seg_size);
    repo_wal_path(tli, segment_name, false, path, sizeof(path));
    snprintf(what, sizeof(what), "segment %s", segment_name);
    if ((rc = fd_digest(fd, len, digest)) < 0)
        return rc;
    rc = same_as_stored(r, path, digest, len, what);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    return put_fd(r, path, fd, len);
}

int repo_wal_push_partial_fd(struct repo *r, const char *segment_name, int fd, uint64_t len)
{
    timeline_t tli;
    char path[96];
    int rc = segment_tli(r, segment_name, &tli);
    if (rc < 0)
        return rc;
    if (len > r->identity.seg_size)
        return err_set(ERR_IO, "partial segment %s has %llu bytes, more than a segment",
                       segment_name, (unsigned long long)len);
    repo_wal_path(tli, segment_name, true, path, sizeof(path));
    return put_fd(r, path, fd, len);
}

int repo_wal_push_history(struct repo *r, timeline_t tli, const void *data, size_t len)
{
    char path[64], what[64];
    uint8_t digest[SHA256_LEN];
    struct timeline_history *h = NULL;
    int rc = timeline_history_parse(tli, data, len, &h);
    timeline_history_free(h);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "wal/%08X.history", tli);
    snprintf(what, sizeof(what), "history file %08X.history", tli);
    sha256(data, len, digest);
    rc = same_as_stored(r, path, digest, len, what);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    return repo_put(r, path, data, len);
}
