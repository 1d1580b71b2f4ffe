/*
 * walarchive.c — WAL segments and history files in a repository.
 *
 * A complete segment is written once: pushing it again with the same bytes is a
 * no-op (a receiver restarted after a crash re-ships what it is unsure of), and
 * pushing different bytes under the same name is refused, never an overwrite: two
 * different segments with one name mean two servers are writing into one archive,
 * and the one already stored may be what a restore needs.
 *
 * Every push also decodes what it archives and stores the time index beside it
 * (walindex.c); decoding never decides whether WAL is archived.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/waldecode.h"

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

/*
 * One positional read of the first len bytes of fd, handed to whichever of a digest,
 * an object writer and a WAL decoder are set. The decoder only observes: when it fails
 * its error is kept in decode_error and the bytes still flow to the others, because a
 * segment that does not decode must still be archived (verify reports it).
 */
struct fd_pass {
    struct sha256_ctx *sha; /* optional */
    struct repo_writer *w;  /* optional */
    struct waldecode *dec;  /* optional; freed by the caller */
    char *decode_error;     /* set when dec failed (caller frees) */
};

static int fd_pass_sink(void *ctx, const uint8_t *buf, size_t n)
{
    struct fd_pass *p = ctx;
    if (p->sha)
        sha256_ctx_update(p->sha, buf, n);
    if (p->dec && !p->decode_error && waldecode_feed(p->dec, buf, n) < 0) {
        p->decode_error = err_format();
        err_clear();
    }
    return p->w ? repo_writer_write(p->w, buf, n) : 0;
}

static int fd_pass_run(int fd, uint64_t len, struct fd_pass *p)
{
    return storage_fd_pass(fd, len, NULL, PUSH_BUF, WAL_TO_ARCHIVE, fd_pass_sink, p);
}

struct waldecode *repo_wal_decoder_new(const struct repo_identity *id, timeline_t tli,
                                       uint64_t segno, char **why)
{
    struct waldecode *d = NULL;
    struct waldecode_config cfg = {
        .seg_size = id->seg_size,
        .system_identifier = id->system_identifier,
        .pg_major = id->pg_major,
        .tli = tli,
        .start = segno_to_lsn(segno, id->seg_size),
        .prev_lsn = LSN_INVALID,
    };
    *why = NULL;
    if (waldecode_new(&cfg, &d) < 0) {
        *why = err_format();
        err_clear();
        return NULL;
    }
    return d;
}

void repo_wal_index_missing(struct repo *r, const char *what, bool no_decoder, const char *why)
{
    if (no_decoder)
        log_warn("%s of repository \"%s\" gets no time index: %s", what, repo_name(r), why);
    else
        log_warn("%s in repository \"%s\" does not decode, so it has no time index: %s", what,
                 repo_name(r), why);
}

void repo_wal_index_put(struct repo *r, const struct repo_wal_index *ix)
{
    if (repo_wal_index_store(r, ix) < 0) {
        char *text = err_format();
        err_clear();
        log_warn("%s", text);
        free(text);
    }
}

bool repo_wal_index_absent(struct repo *r, const char *path)
{
    char ipath[112];
    snprintf(ipath, sizeof(ipath), "%s.idx", path);
    char *ifull = repo_full_path(r, ipath);
    int have = storage_exists(r->storage, ifull);
    free(ifull);
    if (have < 0)
        err_clear();
    return have == 0;
}

/* A decoder for the segment's bytes from its start; NULL (with a warning) when the
 * repository's identity is one waldecode cannot read: the segment is archived without
 * an index. */
static struct waldecode *index_decoder(struct repo *r, timeline_t tli, uint64_t segno,
                                       const char *what)
{
    char *why = NULL;
    struct waldecode *d = repo_wal_decoder_new(&r->identity, tli, segno, &why);
    if (!d)
        repo_wal_index_missing(r, what, true, why);
    free(why);
    return d;
}

/* Store the time index of what p->dec decoded; a failure is a warning, never an
 * archiving failure: the segment itself is safe. */
static void index_store(struct repo *r, timeline_t tli, uint64_t segno, bool partial, uint64_t len,
                        struct fd_pass *p, const char *what)
{
    if (!p->dec)
        return;
    if (p->decode_error) {
        repo_wal_index_missing(r, what, false, p->decode_error);
        return;
    }
    struct repo_wal_index ix;
    repo_wal_index_from_summary(tli, segno, partial, len, waldecode_summary(p->dec), &ix);
    repo_wal_index_put(r, &ix);
    repo_wal_index_free(&ix);
}

struct reindex {
    struct waldecode *dec;
    char *error;
    uint64_t len;
};

static int reindex_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reindex *ri = ctx;
    ri->len += len;
    if (!ri->error && waldecode_feed(ri->dec, data, len) < 0) {
        ri->error = err_format();
        err_clear();
    }
    return 0;
}

int repo_wal_reindex(struct repo *r, const char *segment_name)
{
    timeline_t tli;
    uint64_t segno;
    char path[96], *why = NULL;
    struct reindex ri = {0};
    struct repo_wal_index ix;
    int rc = wal_segment_parse(segment_name, r->identity.seg_size, &tli, &segno);
    if (rc < 0)
        return rc;
    ri.dec = repo_wal_decoder_new(&r->identity, tli, segno, &why);
    if (!ri.dec) {
        rc = err_set(ERR_UNSUPPORTED, "segment %s of repository \"%s\" cannot be decoded: %s",
                     segment_name, repo_name(r), why);
        goto out;
    }
    repo_wal_path(tli, segment_name, false, path, sizeof(path));
    if ((rc = repo_get(r, path, reindex_sink, &ri)) < 0)
        goto out;
    if (ri.error) {
        rc = err_set(ERR_INTEGRITY, "segment %s of repository \"%s\" does not decode: %s",
                     segment_name, repo_name(r), ri.error);
        goto out;
    }
    if (ri.len != r->identity.seg_size) {
        rc = err_set(ERR_INTEGRITY, "segment %s of repository \"%s\" holds %llu bytes, not %llu",
                     segment_name, repo_name(r), (unsigned long long)ri.len,
                     (unsigned long long)r->identity.seg_size);
        goto out;
    }
    /* As archiving indexes it: the segment's bytes decoded from its start. */
    repo_wal_index_from_summary(tli, segno, false, ri.len, waldecode_summary(ri.dec), &ix);
    rc = repo_wal_index_store(r, &ix);
    repo_wal_index_free(&ix);
out:
    free(why);
    free(ri.error);
    waldecode_free(ri.dec);
    return rc;
}

static void fd_pass_free(struct fd_pass *p)
{
    sha256_ctx_free(p->sha);
    waldecode_free(p->dec);
    free(p->decode_error);
}

/* Run the first len bytes of fd through p, with w as its writer; commit w, or abort it. */
static int write_fd(struct repo_writer *w, int fd, uint64_t len, struct fd_pass *p)
{
    p->w = w;
    int rc = fd_pass_run(fd, len, p);
    p->w = NULL;
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

int repo_writer_copy_fd(struct repo_writer *w, int fd, uint64_t len)
{
    struct fd_pass pass = {0};
    return write_fd(w, fd, len, &pass);
}

int repo_writer_feed_fd(struct repo_writer *w, int fd, uint64_t len)
{
    struct fd_pass pass = {.w = w};
    return fd_pass_run(fd, len, &pass);
}

/* Write the first len bytes of fd as object path. */
static int put_fd(struct repo *r, const char *path, int fd, uint64_t len, struct fd_pass *p)
{
    struct repo_writer *w = repo_writer_open(r, path, len);
    if (!w)
        return err_code();
    return write_fd(w, fd, len, p);
}

int repo_wal_same_as_stored(struct repo *r, const char *path, const uint8_t digest[SHA256_LEN],
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
    uint64_t segno;
    char path[96], what[64];
    uint8_t digest[SHA256_LEN];
    struct fd_pass pass = {0};
    int rc = wal_segment_parse(segment_name, r->identity.seg_size, &tli, &segno);
    if (rc < 0)
        return rc;
    if (len != r->identity.seg_size)
        return err_set(ERR_IO, "segment %s has %llu bytes, not %llu", segment_name,
                       (unsigned long long)len, (unsigned long long)r->identity.seg_size);
    repo_wal_path(tli, segment_name, false, path, sizeof(path));
    snprintf(what, sizeof(what), "segment %s", segment_name);
    /* A new segment (the usual case) is read once: written and decoded in one pass.
     * Only a re-push reads it to compare digests with what is stored. */
    char *full = repo_full_path(r, path);
    int exists = storage_exists(r->storage, full);
    free(full);
    if (exists < 0)
        return exists;
    pass.dec = index_decoder(r, tli, segno, what);
    if (!exists) {
        rc = put_fd(r, path, fd, len, &pass);
        if (rc == 0)
            index_store(r, tli, segno, false, len, &pass, what);
        goto out;
    }
    pass.sha = sha256_ctx_new();
    if ((rc = fd_pass_run(fd, len, &pass)) < 0)
        goto out;
    sha256_ctx_final(pass.sha, digest);
    rc = repo_wal_same_as_stored(r, path, digest, len, what);
    if (rc < 0)
        goto out;
    if (rc == 1) {
        /* Already archived; a push interrupted before its index was stored left it
         * without one. */
        if (repo_wal_index_absent(r, path))
            index_store(r, tli, segno, false, len, &pass, what);
        rc = 0;
        goto out;
    }
    /* Absent again by now (removed meanwhile): write it. */
    struct fd_pass write_pass = {0};
    rc = put_fd(r, path, fd, len, &write_pass);
    fd_pass_free(&write_pass);
    if (rc == 0)
        index_store(r, tli, segno, false, len, &pass, what);
out:
    fd_pass_free(&pass);
    return rc;
}

int repo_wal_push_partial_fd(struct repo *r, const char *segment_name, int fd, uint64_t len)
{
    timeline_t tli;
    uint64_t segno;
    char path[96], what[64];
    struct fd_pass pass = {0};
    int rc = wal_segment_parse(segment_name, r->identity.seg_size, &tli, &segno);
    if (rc < 0)
        return rc;
    if (len > r->identity.seg_size)
        return err_set(ERR_IO, "partial segment %s has %llu bytes, more than a segment",
                       segment_name, (unsigned long long)len);
    repo_wal_path(tli, segment_name, true, path, sizeof(path));
    snprintf(what, sizeof(what), "partial segment %s", segment_name);
    pass.dec = index_decoder(r, tli, segno, what);
    rc = put_fd(r, path, fd, len, &pass);
    if (rc == 0)
        index_store(r, tli, segno, true, len, &pass, what);
    fd_pass_free(&pass);
    return rc;
}

int repo_wal_remove_partial(struct repo *r, const char *segment_name)
{
    timeline_t tli;
    uint64_t segno;
    char path[96];
    int rc = wal_segment_parse(segment_name, r->identity.seg_size, &tli, &segno);
    if (rc < 0)
        return rc;
    /* The index first: a partial copy without one is passed over, as any unindexed one. */
    const char *suffix[] = {".partial.idx", ".partial"};
    for (int i = 0; i < 2 && rc == 0; i++) {
        snprintf(path, sizeof(path), "wal/%08X/%s%s", tli, segment_name, suffix[i]);
        char *full = repo_full_path(r, path);
        rc = storage_remove(r->storage, full);
        free(full);
    }
    if (rc < 0)
        err_context("while removing the partial copy of %s", segment_name);
    return rc;
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
    rc = repo_wal_same_as_stored(r, path, digest, len, what);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    return repo_put(r, path, data, len);
}
