/*
 * walprep.c — a WAL segment prepared once for several repositories (see repo.h).
 *
 * An object's payload is (plaintext || SHA-256) compressed with the repository's codec
 * and level (object.c): nothing in it depends on the repository, while the header (its
 * nonce) and the encryption (key, nonce, and header || path as associated data) do. So
 * the payload is made once here, into an unlinked scratch file, and each push wraps it
 * in that repository's own envelope through repo_writer_open_payload. A repository with
 * another codec, level or identity gets the ordinary push from the segment file.
 *
 * The segment being filled is prepared again for every partial copy, each time a little
 * longer. Prepared from its start each time, a copy cost grew with the segment (16 MiB
 * read, digested, decoded and compressed near its end), and with it the age of what the
 * repository holds. So the preparer keeps what the last copy of that segment read: the
 * digest and decoder state, and the compressed prefix in a scratch file, one zstd frame
 * left open and flushed at each copy (compress.h). The next copy reads, digests, decodes
 * and compresses only the bytes after it; its payload is the prefix as it stood then, and
 * the end of the frame made of the digest (the prefix file only grows, so a payload
 * pushed while the next copy is prepared stays as it was). Readers see one ordinary
 * frame of plaintext || SHA-256, without zstd's own content checksum. The complete
 * segment, once its copies were made this way, is carried on from them too: the rest of
 * its bytes, and the frame ended the same way (compressed once, not again at the end).
 */
#include "envelope_int.h"

#include "pgark/compress.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"
#include "pgark/waldecode.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREP_READ_BUF (1024 * 1024)

/* What the copies of the segment being filled read so far (see the top). */
struct partial_state {
    char name[WAL_NAME_BUFLEN]; /* "" when there is none */
    dev_t dev;                  /* the spool file's: another file starts again */
    ino_t ino;
    timeline_t tli;
    uint64_t segno;
    uint64_t fed; /* bytes read so far */
    struct sha256_ctx *sha;
    struct waldecode *dec; /* NULL when there is no decoder, or it failed */
    bool no_decoder;
    char *why;
    struct compress_zstd_open *z; /* NULL without compression */
    int prefix_fd;                /* the compressed prefix (with compression) */
    uint64_t prefix_len;
};

struct repo_wal_preparer {
    struct repo_identity identity;
    const struct codec *compression;
    int level;
    char *scratch_dir;
    struct filter_chain *chain; /* the envelope's compress-only writing chain, reset for each
                                 * segment (envelope_int.h: reuse) */
    uint8_t *buf;
    struct repo_wal_prepared *cur; /* being prepared: the chain's sink writes to it */
    struct partial_state ps;
};

struct repo_wal_prepared {
    char name[WAL_NAME_BUFLEN];
    bool partial;
    timeline_t tli;
    uint64_t segno;
    uint64_t len;
    int src_fd;
    struct repo_identity identity;
    const struct codec *compression;
    int level;
    uint8_t digest[SHA256_LEN];
    int payload_fd;
    uint64_t payload_len;
    /* Written after payload_len bytes of payload_fd: the end of an open frame, or the
     * digest after an uncompressed plaintext (an incremental partial copy). */
    uint8_t tail[COMPRESS_ZSTD_FRAME_END_LEN(SHA256_LEN)];
    size_t tail_len;
    bool have_index;
    struct repo_wal_index ix;
    bool no_decoder; /* why there is no index: no decoder, or it failed (why) */
    char *why;
};

/* Write all of data to scratch file fd at *at (advanced), in p's scratch directory. */
static int scratch_write(struct repo_wal_preparer *p, int fd, const uint8_t *data, size_t len,
                         uint64_t *at)
{
    while (len) {
        ssize_t n = pwrite(fd, data, len, (off_t)*at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_set_errno(ERR_IO, errno, "could not write a scratch file in \"%s\"",
                                 p->scratch_dir);
        data += n;
        len -= (size_t)n;
        *at += (uint64_t)n;
    }
    return 0;
}

static int scratch_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct repo_wal_preparer *p = ctx;
    return scratch_write(p, p->cur->payload_fd, data, len, &p->cur->payload_len);
}

static void partial_reset(struct repo_wal_preparer *p)
{
    struct partial_state *ps = &p->ps;
    sha256_ctx_free(ps->sha);
    waldecode_free(ps->dec);
    free(ps->why);
    if (ps->z)
        p->compression->open_free(ps->z);
    if (ps->prefix_fd >= 0)
        close(ps->prefix_fd);
    memset(ps, 0, sizeof(*ps));
    ps->prefix_fd = -1;
}

struct repo_wal_preparer *repo_wal_preparer_new(const struct repo_identity *id,
                                                const struct repo_codecs *codecs,
                                                const char *scratch_dir)
{
    struct repo_wal_preparer *p = xcalloc(1, sizeof(*p));
    p->identity = *id;
    p->level = codecs->level;
    p->compression = repo_codecs_compression(codecs);
    p->scratch_dir = xstrdup(scratch_dir);
    p->buf = xmalloc(PREP_READ_BUF);
    p->ps.prefix_fd = -1;
    /* the payload of every repository's envelope, before its encryption: plaintext ||
     * SHA-256 (hashed here, with the decoder), compressed */
    struct envelope_opts o = {.shape = ENVELOPE_STREAMED,
                              .reuse = true,
                              .compression = p->compression,
                              .level = p->level,
                              .cipher = codec_by_id(CODEC_CIPHER, CODEC_ID_CIPHER_NONE)};
    p->chain = envelope_chain_build(ENVELOPE_WRITE, &o, NULL, 0, NULL, scratch_sink, p, NULL);
    if (!p->chain) {
        repo_wal_preparer_free(p);
        return NULL;
    }
    return p;
}

void repo_wal_preparer_free(struct repo_wal_preparer *p)
{
    if (!p)
        return;
    partial_reset(p);
    filter_chain_free(p->chain);
    free(p->buf);
    free(p->scratch_dir);
    free(p);
}

void repo_wal_prepared_free(struct repo_wal_prepared *s)
{
    if (!s)
        return;
    if (s->src_fd >= 0)
        close(s->src_fd);
    if (s->payload_fd >= 0)
        close(s->payload_fd);
    if (s->have_index)
        repo_wal_index_free(&s->ix);
    free(s->why);
    free(s);
}

struct prepare_ctx {
    struct repo_wal_preparer *p;
    struct repo_wal_prepared *s;
    struct sha256_ctx *sha;
    struct waldecode *dec;
};

static int prepare_sink(void *ctx, const uint8_t *buf, size_t n)
{
    struct prepare_ctx *c = ctx;
    sha256_ctx_update(c->sha, buf, n);
    if (c->dec && !c->s->why && waldecode_feed(c->dec, buf, n) < 0) {
        c->s->why = err_format();
        err_clear();
    }
    return filter_chain_write(c->p->chain, buf, n);
}

/* Read the segment once: digest, decoder and compressor each see every byte. */
static int prepare_pass(struct repo_wal_preparer *p, struct repo_wal_prepared *s,
                        struct sha256_ctx *sha, struct waldecode *dec)
{
    struct prepare_ctx c = {p, s, sha, dec};
    int rc =
        storage_fd_pass(s->src_fd, s->len, p->buf, PREP_READ_BUF, WAL_TO_ARCHIVE, prepare_sink, &c);
    if (rc == 0) {
        sha256_ctx_final(sha, s->digest);
        rc = filter_chain_write(p->chain, s->digest, SHA256_LEN);
    }
    if (rc == 0)
        rc = filter_chain_finish(p->chain);
    return rc;
}

/* Whether copies of a partial segment can be prepared incrementally: without compression,
 * or with one that keeps a frame open. */
static bool can_grow(const struct repo_wal_preparer *p)
{
    return codec_is_none(p->compression) || p->compression->open_new;
}

static int prefix_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct repo_wal_preparer *p = ctx;
    return scratch_write(p, p->ps.prefix_fd, data, len, &p->ps.prefix_len);
}

/* Start the state over for segment s, file st. */
static int partial_start(struct repo_wal_preparer *p, const struct repo_wal_prepared *s,
                         const struct stat *st)
{
    struct partial_state *ps = &p->ps;
    partial_reset(p);
    if (!codec_is_none(p->compression)) {
        if ((ps->prefix_fd = storage_scratch_open(p->scratch_dir)) < 0)
            return ps->prefix_fd;
        if (!(ps->z = p->compression->open_new(p->level)))
            return err_code();
    }
    snprintf(ps->name, sizeof(ps->name), "%s", s->name);
    ps->dev = st->st_dev;
    ps->ino = st->st_ino;
    ps->tli = s->tli;
    ps->segno = s->segno;
    ps->sha = sha256_ctx_new();
    ps->dec = repo_wal_decoder_new(&p->identity, s->tli, s->segno, &ps->why);
    ps->no_decoder = !ps->dec;
    return 0;
}

struct partial_feed {
    struct repo_wal_preparer *p;
    uint64_t len; /* where this feed ends: the open frame is flushed there */
};

static int partial_sink(void *ctx, const uint8_t *data, size_t n)
{
    struct partial_feed *f = ctx;
    struct repo_wal_preparer *p = f->p;
    struct partial_state *ps = &p->ps;
    sha256_ctx_update(ps->sha, data, n);
    if (ps->dec && !ps->why && waldecode_feed(ps->dec, data, n) < 0) {
        ps->why = err_format();
        err_clear();
    }
    ps->fed += (uint64_t)n;
    if (ps->z)
        return p->compression->open_feed(ps->z, data, n, ps->fed == f->len, prefix_sink, p);
    return 0;
}

/* Read bytes ps->fed..len of fd into the state: digest, decoder, open frame. */
static int partial_feed(struct repo_wal_preparer *p, int fd, uint64_t len)
{
    struct partial_feed f = {p, len};
    if (p->ps.fed >= len)
        return 0;
    return storage_fd_pass_from(fd, p->ps.fed, len, p->buf, PREP_READ_BUF, WAL_TO_ARCHIVE,
                                partial_sink, &f);
}

/* Whether the state holds the start of s's file (the spool renames a segment it completes:
 * the same file). */
static bool carries(const struct repo_wal_preparer *p, const struct repo_wal_prepared *s,
                    const struct stat *st)
{
    const struct partial_state *ps = &p->ps;
    return ps->name[0] && strcmp(ps->name, s->name) == 0 && ps->dev == st->st_dev &&
           ps->ino == st->st_ino && ps->fed <= s->len && ps->fed > 0;
}

/* Prepare s (its fields but the payload set) from the state, carried on from the last
 * partial copy of the same segment when there was one: a partial copy, or the complete
 * segment the last copies were of (the state is let go then). */
static int prepare_grown(struct repo_wal_preparer *p, struct repo_wal_prepared *s,
                         const struct stat *st)
{
    struct partial_state *ps = &p->ps;
    int rc = 0;
    if (!carries(p, s, st) && (rc = partial_start(p, s, st)) < 0)
        goto out;
    if (ps->fed == s->len && ps->z) /* a copy of the same length: flushed already */
        ;
    else if ((rc = partial_feed(p, s->src_fd, s->len)) < 0)
        goto out;
    sha256_ctx_peek(ps->sha, s->digest);
    int from = ps->z ? ps->prefix_fd : s->src_fd;
    s->payload_fd = fcntl(from, F_DUPFD_CLOEXEC, 0);
    if (s->payload_fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not duplicate the descriptor of %s", s->name);
        goto out;
    }
    if (ps->z) {
        s->payload_len = ps->prefix_len;
        s->tail_len = p->compression->frame_end(s->digest, SHA256_LEN, s->tail);
    } else {
        s->payload_len = s->len;
        memcpy(s->tail, s->digest, SHA256_LEN);
        s->tail_len = SHA256_LEN;
    }
    s->no_decoder = ps->no_decoder;
    if (ps->why) {
        s->why = xstrdup(ps->why);
    } else if (ps->dec) {
        repo_wal_index_from_summary(s->tli, s->segno, s->partial, s->len,
                                    waldecode_summary(ps->dec), &s->ix);
        s->have_index = true;
    }
out:
    /* After an error, what it holds is not to be carried on; after the complete segment,
     * there is nothing more to carry on. */
    if (rc < 0 || !s->partial)
        partial_reset(p);
    return rc;
}

int repo_wal_prepare(struct repo_wal_preparer *p, const char *segment_name, bool partial, int fd,
                     uint64_t len, struct repo_wal_prepared **out)
{
    struct repo_wal_prepared *s = xcalloc(1, sizeof(*s));
    struct sha256_ctx *sha = NULL;
    struct waldecode *dec = NULL;
    int rc;

    s->src_fd = s->payload_fd = -1;
    *out = NULL;
    rc = wal_segment_parse(segment_name, p->identity.seg_size, &s->tli, &s->segno);
    if (rc < 0)
        goto out;
    if (partial && len > p->identity.seg_size) {
        rc = err_set(ERR_IO, "partial segment %s has %llu bytes, more than a segment", segment_name,
                     (unsigned long long)len);
        goto out;
    }
    if (!partial && len != p->identity.seg_size) {
        rc = err_set(ERR_IO, "segment %s has %llu bytes, not %llu", segment_name,
                     (unsigned long long)len, (unsigned long long)p->identity.seg_size);
        goto out;
    }
    snprintf(s->name, sizeof(s->name), "%s", segment_name);
    s->partial = partial;
    s->len = len;
    s->identity = p->identity;
    s->compression = p->compression;
    s->level = p->level;
    s->src_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->src_fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not duplicate the descriptor of %s", s->name);
        goto out;
    }
    struct stat st;
    if (fstat(s->src_fd, &st) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not stat %s", WAL_TO_ARCHIVE);
        goto out;
    }
    /* Partial copies carry on from the last one; the complete segment, from its last
     * partial copy when there was one (compressed once, not once more at the end). */
    if (can_grow(p) && len > 0 && (partial || carries(p, s, &st))) {
        if ((rc = prepare_grown(p, s, &st)) < 0)
            goto out;
        *out = s;
        s = NULL;
        goto out;
    }
    if ((rc = s->payload_fd = storage_scratch_open(p->scratch_dir)) < 0)
        goto out;
    if ((rc = filter_chain_reset(p->chain)) < 0)
        goto out;
    dec = repo_wal_decoder_new(&p->identity, s->tli, s->segno, &s->why);
    s->no_decoder = !dec;
    sha = sha256_ctx_new();
    p->cur = s;
    rc = prepare_pass(p, s, sha, dec);
    p->cur = NULL;
    if (rc < 0)
        goto out;
    if (dec && !s->why) {
        repo_wal_index_from_summary(s->tli, s->segno, partial, len, waldecode_summary(dec), &s->ix);
        s->have_index = true;
    }
    *out = s;
    s = NULL;
out:
    if (rc < 0)
        err_context("while preparing %s%s for archiving", segment_name, partial ? ".partial" : "");
    sha256_ctx_free(sha);
    waldecode_free(dec);
    repo_wal_prepared_free(s);
    return rc < 0 ? rc : 0;
}

/* Whether r would write exactly this payload: the same codec, level and WAL. */
static bool fits(const struct repo *r, const struct repo_wal_prepared *s)
{
    return r->compression == s->compression &&
           (codec_is_none(r->compression) || r->compress_level == s->level) &&
           r->identity.system_identifier == s->identity.system_identifier &&
           r->identity.pg_major == s->identity.pg_major &&
           r->identity.seg_size == s->identity.seg_size;
}

static int put_payload(struct repo *r, const char *path, const struct repo_wal_prepared *s)
{
    struct repo_writer *w = repo_writer_open_payload(r, path, s->len);
    if (!w)
        return err_code();
    if (!s->tail_len)
        return repo_writer_copy_fd(w, s->payload_fd, s->payload_len);
    int rc = repo_writer_feed_fd(w, s->payload_fd, s->payload_len);
    if (rc == 0)
        rc = repo_writer_write(w, s->tail, s->tail_len);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

static void index_put(struct repo *r, const struct repo_wal_prepared *s, const char *what)
{
    if (s->have_index)
        repo_wal_index_put(r, &s->ix);
    else
        repo_wal_index_missing(r, what, s->no_decoder, s->why);
}

int repo_wal_push_prepared(struct repo *r, const struct repo_wal_prepared *s)
{
    char path[96], what[64];
    int rc = 0;

    if (!fits(r, s)) {
        rc = s->partial ? repo_wal_push_partial_fd(r, s->name, s->src_fd, s->len)
                        : repo_wal_push_fd(r, s->name, s->src_fd, s->len);
        goto out;
    }
    repo_wal_path(s->tli, s->name, s->partial, path, sizeof(path));
    snprintf(what, sizeof(what), "%s %s", s->partial ? "partial segment" : "segment", s->name);
    if (!s->partial) {
        /* A complete segment is written once; its digest is known, so a re-push
         * compares without reading the segment again. */
        rc = repo_wal_same_as_stored(r, path, s->digest, s->len, what);
        if (rc < 0)
            goto out;
        if (rc == 1) {
            if (repo_wal_index_absent(r, path))
                index_put(r, s, what);
            rc = 0;
            goto out;
        }
    }
    rc = put_payload(r, path, s);
    if (rc == 0)
        index_put(r, s, what);
out:
    return rc;
}

/* A push under way in a batch: what to do once its object is stored. */
struct batch_push {
    struct repo *r;
    char what[64];
    bool have_index;
    struct repo_wal_index ix; /* a copy: the prepared segment may be gone by then */
    bool no_decoder;
    char *why;
    storage_done_fn done;
    void *ctx;
};

static void batch_push_free(struct batch_push *bp)
{
    if (bp->have_index)
        repo_wal_index_free(&bp->ix);
    free(bp->why);
    free(bp);
}

/* The object's upload ended: its index follows it, as in repo_wal_push_prepared. */
static int batch_pushed(void *ctx, int rc)
{
    struct batch_push *bp = ctx;
    if (rc == 0 && bp->have_index)
        repo_wal_index_put(bp->r, &bp->ix);
    else if (rc == 0)
        repo_wal_index_missing(bp->r, bp->what, bp->no_decoder, bp->why);
    int kept = bp->done ? bp->done(bp->ctx, rc) : rc;
    batch_push_free(bp);
    return kept;
}

struct repo_wal_staged {
    struct repo_writer *w;
    struct batch_push *bp;
};

int repo_wal_stage_prepared(struct repo *r, const struct repo_wal_prepared *s,
                            struct storage_batch *b, storage_done_fn done, void *ctx,
                            struct repo_wal_staged **out)
{
    char path[96];
    *out = NULL;
    if (!fits(r, s) || s->partial) {
        int rc = repo_wal_push_prepared(r, s);
        return rc < 0 ? rc : 1;
    }
    repo_wal_path(s->tli, s->name, false, path, sizeof(path));
    struct batch_push *bp = xcalloc(1, sizeof(*bp));
    bp->r = r;
    bp->done = done;
    bp->ctx = ctx;
    snprintf(bp->what, sizeof(bp->what), "segment %s", s->name);
    int rc = repo_wal_same_as_stored(r, path, s->digest, s->len, bp->what);
    if (rc != 0) { /* stored already (1: then only its index may be missing), or an error */
        if (rc == 1 && repo_wal_index_absent(r, path))
            index_put(r, s, bp->what);
        free(bp);
        return rc;
    }
    bp->have_index = s->have_index;
    if (s->have_index) {
        bp->ix = s->ix;
        size_t n = s->ix.nrestore_points * sizeof(*s->ix.restore_points);
        bp->ix.restore_points = n ? memcpy(xmalloc(n), s->ix.restore_points, n) : NULL;
    }
    bp->no_decoder = s->no_decoder;
    bp->why = s->why ? xstrdup(s->why) : NULL;
    struct repo_writer *w = repo_writer_open_payload_batch(r, path, s->len, b, batch_pushed, bp);
    rc = w ? repo_writer_feed_fd(w, s->payload_fd, s->payload_len) : err_code();
    if (rc == 0 && s->tail_len)
        rc = repo_writer_write(w, s->tail, s->tail_len);
    if (rc < 0) {
        repo_writer_abort(w);
        batch_push_free(bp);
        return rc;
    }
    *out = xcalloc(1, sizeof(**out));
    (*out)->w = w;
    (*out)->bp = bp;
    return 0;
}

int repo_wal_staged_start(struct repo_wal_staged *st)
{
    int rc = repo_writer_commit(st->w);
    if (rc < 0) /* the upload did not start: batch_pushed is not called */
        batch_push_free(st->bp);
    free(st);
    return rc;
}

void repo_wal_staged_abort(struct repo_wal_staged *st)
{
    if (!st)
        return;
    repo_writer_abort(st->w);
    batch_push_free(st->bp);
    free(st);
}
