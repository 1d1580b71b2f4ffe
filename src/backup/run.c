/*
 * run.c — one backup from the BASE_BACKUP stream into every repository of the
 * cluster (see backup_int.h).
 *
 * The main thread parses the stream and cuts each regular file into chunks: the chunker
 * keeps references to the received messages the chunk's bytes lie in (no copy), takes a
 * pool buffer per chunk (what bounds memory: the buffers and the messages the queued
 * chunks hold) and queues the chunk when it is full; the main thread hashes nothing.
 * Workers name each chunk (once per naming key) and write it to every repository that
 * does not hold it yet, gathering its bytes into the buffer first; a chunk every
 * repository holds costs its naming hash and a lookup, nothing more, not even a copy
 * (with an encrypted repository it is gathered for the HMAC). A second backup receives
 * every byte but stores few: it used to spend a third of its main thread copying. Every chunk's
 * plaintext SHA-256 is kept: it is the name in an unencrypted repository, the digest the object
 * envelope carries, and, combined in chunk order when the file is complete, the file's digest in
 * the manifest (manifest_chunks_digest: 32 bytes per chunk). So every byte of the backup is hashed
 * once, or, with an encrypted repository, once more for the HMAC name — unless the chunk is
 * unchanged since the last backup: the fingerprint cache (fpcache.c) then gives its digests for
 * the price of a GMAC. Memory is the pool's buffers, one record per file still waiting for its
 * chunks, and the last backup's fingerprints (48 bytes per chunk, unencrypted).
 *
 * Chunk names: all repositories of a cluster share the passphrase but each has its
 * own data key, so an encrypted repository names chunks with its own HMAC key. Every
 * repository therefore gets its own manifest.json, identical but for the chunk names;
 * the repositories with the same naming key (all unencrypted ones) share one set of
 * names, computed once.
 *
 * WAL: the backup asks the server for the WAL from start to stop (BASE_BACKUP's WAL
 * option), so base.tar carries pg_wal/<segment> files, complete (the server switches
 * segments at backup stop). They are kept in the manifest like every other file (a
 * restore writes them into pg_wal, and pg_verifybackup works on the restored directory
 * as it is) and are also archived into every repository's WAL archive (an identical
 * segment a receiver already shipped is a no-op). So a backup is complete, its WAL
 * start..stop in every repository, whether or not a receiver runs. The empty
 * pg_wal/archive_status/<segment>.done files stay in the manifest too: the server's
 * backup_manifest lists them, and in a restored cluster they say these segments need
 * no archiving.
 *
 * Order of writes: chunks and WAL while streaming; at the end the server's
 * backup_manifest, then manifest.json, whose presence marks the backup complete. A
 * backup stopped at any point before that leaves no manifest.json and is not listed.
 */
#include "backup_int.h"

#include "pgark/chunker.h"
#include "pgark/cli.h"
#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg_incremental.h"
#include "pgark/testhook.h"
#include "pgark/units.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COPY_BUF (1024 * 1024)

/* One manifest line, kept until all its chunks are named. */
struct bk_file {
    struct bk_file *next;
    char *path;
    char *link;
    enum manifest_file_type type;
    uint32_t mode;
    uint64_t size;
    int64_t mtime;
    uint64_t nchunks;
    uint8_t *names;            /* nblocks blocks of nchunks raw 32-byte digests */
    uint8_t *tags;             /* nchunks fingerprints, when there is a fingerprint cache */
    const struct fp_file *old; /* its record in the fingerprint cache */
    uint64_t pending;          /* chunks queued and not done (under run->lock) */
    bool fed;                  /* the main thread is done with it */
};

enum entry_kind { ENTRY_SKIP = 0, ENTRY_PLAIN, ENTRY_WAL, ENTRY_HISTORY, ENTRY_INCR, ENTRY_LABEL };

/* The INCREMENTAL.<name> file being received: its chunks are made as its blocks arrive
 * (in ascending order), each either the parent's unchanged or rebuilt in a pool buffer. */
struct incr_file {
    struct pg_incr_parser *parser;
    char *sent_path; /* INCREMENTAL.<name>'s path */
    const struct incr_parent_file *pf;
    uint64_t truncation; /* bytes */
    uint64_t next;       /* the next chunk to hand on */
    uint8_t *buf;        /* chunk `next` being patched, or NULL */
    size_t buf_len;
    struct rebuild *rebuild; /* what a worker adds to buf */
};

/*
 * A chunk of an incremental file that a worker completes: the main thread copies the
 * changed blocks into the buffer (marked in `changed`), the worker reads the parent's
 * chunk (verified, decrypted, decompressed) and lays its first `keep` bytes under the
 * blocks not changed, zeros after them. The reads run on the workers, side by side, not
 * on the thread that reads the stream.
 */
struct rebuild {
    bool from_parent;
    uint8_t name[SHA256_LEN]; /* the parent's chunk, as the reading repository names it */
    size_t keep;              /* bytes of it below the truncation length */
    uint8_t *changed;         /* a bit per block of the chunk */
};

static void rebuild_free(struct rebuild *rb)
{
    if (!rb)
        return;
    free(rb->changed);
    free(rb);
}

struct target_state {
    struct backup_target *t;
    size_t group;           /* index of its naming key */
    struct chunkset *known; /* names in the repository or written by this backup */
    struct manifest_writer *mw;
};

struct backup_run {
    struct backup_params p;
    struct target_state *ts;
    const uint8_t **group_keys; /* NULL entries: plain SHA-256 */
    size_t ngroups;
    /* A file's digests: one block of names per group, and the block of plaintext
     * SHA-256s, which is the unkeyed group's when there is one, else one more block. */
    size_t nblocks, plain;
    bool keyed; /* some repository names chunks with a key */
    pthread_mutex_t lock;
    struct chunk_pool *pool;
    struct chunker *chunker;
    struct fpcache *fp; /* NULL: every chunk is hashed */
    struct progress *progress;
    bool show_progress;
    struct backup_totals totals;

    struct bk_file *head, *tail; /* files in stream order, not yet in the manifests */
    struct bk_file *cur;
    enum entry_kind kind;

    int wal_fd; /* the current pg_wal segment, to archive at its end */
    uint64_t wal_len;
    char wal_name[WAL_NAME_BUFLEN];
    char (*archived)[WAL_NAME_BUFLEN]; /* the segments archived, confirmed at the end */
    struct backup_wal_chain chain;     /* the decoding of those segments, in order */
    size_t narchived;
    struct buf history;

    FILE *server_manifest; /* the server's backup_manifest, spooled */

    struct incr_parent *parent; /* incremental: the backup it is taken against */
    struct incr_file inc;
    struct incr_map *incr_sizes; /* path sent -> struct incr_restored */
    struct buf label_text;       /* an incremental's backup_label, being received */
    uint64_t entries;            /* tar entries begun */
};

/* --- temp files ---------------------------------------------------------------------- */

static int temp_fd(const char *dir, const char *what, int *out)
{
    char *path = xasprintf("%s/pgark-backup-%s.XXXXXX", dir, what);
    int fd = mkstemp(path);
    int rc = 0;
    if (fd < 0)
        rc = err_set_errno(ERR_IO, errno, "could not create a temporary file in \"%s\"", dir);
    else
        unlink(path);
    free(path);
    *out = fd;
    return rc;
}

static FILE *temp_file(const char *dir, const char *what)
{
    int fd;
    if (temp_fd(dir, what, &fd) < 0)
        return NULL;
    FILE *f = fdopen(fd, "w+");
    if (!f) {
        err_set_errno(ERR_IO, errno, "could not open a temporary file in \"%s\"", dir);
        close(fd);
    }
    return f;
}

/* Store the first len bytes of fd as object path of r. */
static int put_fd(struct repo *r, const char *path, int fd, uint64_t len)
{
    struct repo_writer *w = repo_writer_open(r, path, len);
    uint8_t *buf = NULL;
    uint64_t off = 0;
    int rc = 0;

    if (!w)
        return err_code();
    buf = xmalloc(COPY_BUF);
    while (off < len) {
        size_t want = len - off < COPY_BUF ? (size_t)(len - off) : COPY_BUF;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_set_errno(ERR_IO, errno, "could not read a temporary file")
                       : err_set(ERR_IO, "a temporary file is shorter than expected");
            break;
        }
        if ((rc = repo_writer_write(w, buf, (size_t)n)) < 0)
            break;
        off += (uint64_t)n;
    }
    free(buf);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

/* --- repositories dropped ------------------------------------------------------------ */

static bool target_live(struct backup_run *run, const struct target_state *ts)
{
    pthread_mutex_lock(&run->lock);
    bool live = !ts->t->failed;
    pthread_mutex_unlock(&run->lock);
    return live;
}

int backup_run_drop(struct backup_run *run, struct backup_target *t)
{
    size_t live = 0;

    pthread_mutex_lock(&run->lock);
    bool first = !t->failed;
    t->failed = true;
    for (size_t i = 0; i < run->p.ntargets; i++)
        if (!run->p.targets[i].failed)
            live++;
    pthread_mutex_unlock(&run->lock);
    if (live == 0) /* the last one: the backup fails with its error */
        return err_code();
    if (!first) { /* another thread dropped it already */
        err_clear();
        return 0;
    }
    t->error = cli_error_line(false);
    log_error("repository \"%s\" dropped from backup \"%s\", which goes on in the other %zu: %s",
              repo_name(t->repo), run->p.label, live, t->error);
    if (run->p.heartbeat)
        repo_heartbeat_drop(run->p.heartbeat, t->repo);
    return 0;
}

/* --- workers ------------------------------------------------------------------------- */

static uint8_t *name_slot(struct bk_file *f, size_t group, uint64_t index)
{
    return f->names + (group * f->nchunks + index) * SHA256_LEN;
}

/* Name chunk index of f from the fingerprint cache when it is unchanged since the last
 * backup and every repository still holds it. True if named. */
static bool name_from_cache(struct backup_run *run, struct bk_file *f, const struct chunk *ch)
{
    uint8_t *tag = f->tags + ch->index * FP_TAG_LEN;
    bool held = true;

    fpcache_tag(run->fp, ch, tag);
    const uint8_t *m = fpcache_match(run->fp, f->old, ch->index, ch->len, tag);
    if (!m)
        return false;
    pthread_mutex_lock(&run->lock);
    for (size_t i = 0; held && i < run->p.ntargets; i++)
        held = run->ts[i].t->failed ||
               chunkset_has(run->ts[i].known, fpcache_digest(f->old, m, run->ts[i].group));
    if (held)
        run->totals.unchanged++;
    pthread_mutex_unlock(&run->lock);
    for (size_t b = 0; held && b < run->nblocks; b++)
        memcpy(name_slot(f, b, ch->index), fpcache_digest(f->old, m, b), SHA256_LEN);
    return held;
}

static int rebuild_chunk(struct backup_run *run, const struct bk_file *f, struct chunk *ch,
                         const struct rebuild *rb)
{
    uint8_t *scratch = NULL;
    size_t have = 0;
    int rc = 0;

    if (rb->from_parent) {
        char hex[SHA256_HEX_LEN + 1];
        uint8_t sha[SHA256_LEN];
        size_t cap = run->p.chunk_size + SHA256_LEN;
        scratch = xmalloc(cap);
        hex_encode(rb->name, SHA256_LEN, hex);
        rc = repo_chunk_get_into(run->parent->read_repo, hex, scratch, cap, &have, sha);
        if (rc < 0) {
            err_context("while reading chunk %llu of \"%s\" of backup \"%s\" from repository "
                        "\"%s\"",
                        (unsigned long long)ch->index, f->path, run->parent->label,
                        repo_name(run->parent->read_repo));
            goto out;
        }
        if (have > rb->keep)
            have = rb->keep;
    }
    for (size_t off = 0, b = 0; off < ch->len; off += PG_INCR_BLCKSZ, b++) {
        size_t len = ch->len - off < PG_INCR_BLCKSZ ? ch->len - off : PG_INCR_BLCKSZ;
        if (rb->changed[b / 8] & (1u << (b % 8)))
            continue;
        size_t from = off < have ? (have - off < len ? have - off : len) : 0;
        if (from)
            memcpy(ch->data + off, scratch + off, from);
        memset(ch->data + off + from, 0, len - from);
    }
out:
    free(scratch);
    return rc;
}

static int store_chunk(void *arg, void *job, struct chunk *ch, bool skipped)
{
    struct backup_run *run = arg;
    struct bk_file *f = job;
    uint64_t index = ch->index;
    int rc = 0;

    if (ch->aux) {
        if (!skipped && (rc = rebuild_chunk(run, f, ch, ch->aux)) < 0)
            skipped = true;
        rebuild_free(ch->aux);
        ch->aux = NULL;
    }
    if (!skipped && !(run->fp && f->tags && name_from_cache(run, f, ch))) {
        if (run->keyed) /* HMAC names are computed on the bytes in one piece */
            chunk_gather(ch);
        for (size_t g = 0; g < run->ngroups; g++) {
            if (run->group_keys[g])
                chunk_digest(run->group_keys[g], ch->data, ch->len, name_slot(f, g, index));
            else
                chunk_sha256(ch, name_slot(f, g, index));
        }
        if (run->plain == run->ngroups) /* every repository is encrypted */
            chunk_sha256(ch, name_slot(f, run->plain, index));
    }
    for (size_t i = 0; !skipped && rc == 0 && i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        const uint8_t *name = name_slot(f, ts->group, index);

        pthread_mutex_lock(&run->lock);
        bool dropped = ts->t->failed;
        bool fresh = !dropped && chunkset_add(ts->known, name);
        if (!fresh && !dropped)
            ts->t->reused_chunks++;
        pthread_mutex_unlock(&run->lock);
        if (!fresh)
            continue;
        char hex[SHA256_HEX_LEN + 1];
        uint64_t stored = 0;
        hex_encode(name, SHA256_LEN, hex);
        /* Stored: the bytes in one piece, the envelope's digest after them (a payload).
         * A chunk every repository holds is never copied. */
        chunk_gather(ch);
        memcpy(ch->data + ch->len, name_slot(f, run->plain, index), SHA256_LEN);
        rc = repo_chunk_put_payload(ts->t->repo, hex, ch->data, ch->len, &stored);
        if (rc < 0) {
            err_context("while storing chunk %llu of \"%s\" in repository \"%s\"",
                        (unsigned long long)index, f->path, repo_name(ts->t->repo));
            rc = backup_run_drop(run, ts->t);
            continue;
        }
        pthread_mutex_lock(&run->lock);
        ts->t->new_chunks++;
        ts->t->stored_bytes += stored;
        pthread_mutex_unlock(&run->lock);
    }
    chunk_release(ch);
    pthread_mutex_lock(&run->lock);
    f->pending--;
    pthread_mutex_unlock(&run->lock);
    return rc;
}

/* --- manifest lines ------------------------------------------------------------------ */

static void file_free(struct bk_file *f)
{
    if (!f)
        return;
    free(f->path);
    free(f->link);
    free(f->names);
    free(f->tags);
    free(f);
}

/* Write out the files at the head of the queue whose chunks are all named. */
static int flush_files(struct backup_run *run)
{
    int rc = 0;

    for (;;) {
        pthread_mutex_lock(&run->lock);
        struct bk_file *f = run->head;
        bool ready = f && f->fed && f->pending == 0;
        if (ready) {
            run->head = f->next;
            if (!run->head)
                run->tail = NULL;
        }
        pthread_mutex_unlock(&run->lock);
        if (!ready)
            break;
        uint8_t digest[SHA256_LEN];
        manifest_chunks_digest(f->nchunks ? name_slot(f, run->plain, 0) : NULL, f->nchunks, digest);
        for (size_t i = 0; rc == 0 && i < run->p.ntargets; i++) {
            struct manifest_file mf = {
                .path = f->path,
                .type = f->type,
                .mode = f->mode,
                .size = f->size,
                .mtime = f->mtime,
                .link = f->link,
                .chunks = f->nchunks ? name_slot(f, run->ts[i].group, 0) : NULL,
                .n_chunks = f->nchunks,
                .digest_kind = MANIFEST_DIGEST_CHUNKS,
            };
            memcpy(mf.digest, digest, SHA256_LEN);
            rc = manifest_writer_add(run->ts[i].mw, &mf);
        }
        if (rc == 0 && run->fp && f->nchunks && f->tags)
            fpcache_add(run->fp, f->path, f->size, f->tags, f->names);
        if (rc == 0) {
            run->totals.files++;
            run->totals.logical_bytes += f->size;
        } else {
            err_context("while adding \"%s\" to the manifest", f->path);
        }
        file_free(f);
        if (rc < 0)
            break;
    }
    return rc;
}

/* --- stream callbacks (main thread) -------------------------------------------------- */

/* The chunker's buffers are the pool's: a chunk is copied once, from the stream. */
static uint8_t *chunk_buffer(void *arg)
{
    struct backup_run *run = arg;
    return chunk_pool_buffer(run->pool);
}

static void chunk_buffer_back(void *arg, uint8_t *buf)
{
    struct backup_run *run = arg;
    chunk_pool_release(run->pool, buf);
}

static const struct chunker_buffers CHUNK_BUFFERS = {chunk_buffer, chunk_buffer_back};

static int on_chunk(void *arg, struct chunk *c)
{
    struct backup_run *run = arg;
    struct bk_file *f = run->cur;

    if (c->index >= f->nchunks) {
        chunk_release(c);
        chunk_pool_release(run->pool, c->data);
        return err_set(ERR_PROTOCOL, "file \"%s\" has more data than its tar header says", f->path);
    }
    pthread_mutex_lock(&run->lock);
    f->pending++;
    pthread_mutex_unlock(&run->lock);
    run->totals.chunks++;
    return chunk_pool_submit(run->pool, c, f);
}

/* --- incremental files (main thread) ------------------------------------------------- */

static void incr_file_reset(struct backup_run *run)
{
    pg_incr_parser_free(run->inc.parser);
    free(run->inc.sent_path);
    rebuild_free(run->inc.rebuild);
    if (run->inc.buf)
        chunk_pool_release(run->pool, run->inc.buf);
    memset(&run->inc, 0, sizeof(run->inc));
}

static size_t chunk_len_at(const struct backup_run *run, const struct bk_file *f, uint64_t k)
{
    uint64_t off = k * run->p.chunk_size;
    uint64_t left = f->size - off;
    return (size_t)(left < run->p.chunk_size ? left : run->p.chunk_size);
}

/* Queue a chunk built in a pool buffer, for a worker to complete (the pool owns buf and
 * rb from now on). */
static int submit_built(struct backup_run *run, struct bk_file *f, uint64_t k, uint8_t *buf,
                        size_t len, struct rebuild *rb)
{
    struct chunk ch = {
        .data = buf, .len = len, .index = k, .offset = k * run->p.chunk_size, .aux = rb};

    pthread_mutex_lock(&run->lock);
    f->pending++;
    pthread_mutex_unlock(&run->lock);
    run->totals.chunks++;
    int rc = chunk_pool_submit(run->pool, &ch, f);
    if (rc < 0) /* refused: the pool took the buffer back, not rb */
        rebuild_free(rb);
    return rc;
}

/* Start chunk k of the file being received in a pool buffer: the changed blocks are
 * copied into it, a worker adds the parent's bytes below the truncation length and zeros
 * (struct rebuild). */
static int incr_start_chunk(struct backup_run *run, struct bk_file *f, uint64_t k)
{
    const struct incr_parent_file *pf = run->inc.pf;
    uint64_t off = k * run->p.chunk_size;
    size_t len = chunk_len_at(run, f, k);
    uint8_t *buf = chunk_pool_buffer(run->pool);
    struct rebuild *rb;

    if (!buf)
        return err_code();
    rb = xcalloc(1, sizeof(*rb));
    rb->changed = xcalloc(run->p.chunk_size / PG_INCR_BLCKSZ / 8 + 1, 1);
    if (off < run->inc.truncation && k < pf->nchunks) {
        rb->from_parent = true;
        memcpy(rb->name, pf->names + (run->parent->read_block * pf->nchunks + k) * SHA256_LEN,
               SHA256_LEN);
        uint64_t below = run->inc.truncation - off;
        rb->keep = below < len ? (size_t)below : len;
    }
    run->inc.buf = buf;
    run->inc.buf_len = len;
    run->inc.rebuild = rb;
    return 0;
}

/* Chunk k of the parent is this file's chunk k unchanged: no block of it was sent, it
 * lies below the truncation length, and the parent's chunk has the same length. */
static bool incr_reusable(const struct backup_run *run, const struct bk_file *f, uint64_t k)
{
    const struct incr_parent_file *pf = run->inc.pf;
    uint64_t off = k * run->p.chunk_size;
    size_t len = chunk_len_at(run, f, k);

    if (k >= pf->nchunks || off + len > run->inc.truncation || off + len > pf->size)
        return false;
    uint64_t plen = pf->size - off < run->p.chunk_size ? pf->size - off : run->p.chunk_size;
    /* Without a plain repository the parent's plaintext SHA-256s are not in any manifest:
     * the chunk is read back and named again (it is stored already: not written). */
    return plen == len && run->plain < run->ngroups;
}

/* Hand on chunk inc.next of the file being received. */
static int incr_emit(struct backup_run *run, struct bk_file *f)
{
    uint64_t k = run->inc.next;
    int rc = 0;

    if (!run->inc.buf && incr_reusable(run, f, k)) {
        const struct incr_parent_file *pf = run->inc.pf;
        for (size_t b = 0; b < run->nblocks; b++)
            memcpy(name_slot(f, b, k), pf->names + (b * pf->nchunks + k) * SHA256_LEN, SHA256_LEN);
        pthread_mutex_lock(&run->lock);
        for (size_t i = 0; i < run->p.ntargets; i++) {
            struct target_state *ts = &run->ts[i];
            if (ts->t->failed)
                continue;
            chunkset_add(ts->known, name_slot(f, ts->group, k));
            ts->t->reused_chunks++;
        }
        pthread_mutex_unlock(&run->lock);
        run->totals.chunks++;
        run->totals.parent_chunks++;
        run->inc.next++;
        return 0;
    }
    if (!run->inc.buf && (rc = incr_start_chunk(run, f, k)) < 0)
        return rc;
    uint8_t *buf = run->inc.buf;
    struct rebuild *rb = run->inc.rebuild;
    run->inc.buf = NULL;
    run->inc.rebuild = NULL;
    run->totals.patched++;
    run->inc.next++;
    return submit_built(run, f, k, buf, run->inc.buf_len, rb);
}

static int on_incr_header(void *arg, uint32_t nblocks, uint32_t truncation, const uint32_t *blocks)
{
    struct backup_run *run = arg;
    struct bk_file *f = run->cur;
    uint64_t len = truncation;

    if (nblocks && (uint64_t)blocks[nblocks - 1] + 1 > len)
        len = (uint64_t)blocks[nblocks - 1] + 1;
    f->size = len * PG_INCR_BLCKSZ;
    f->nchunks = (f->size + run->p.chunk_size - 1) / run->p.chunk_size;
    if (f->nchunks)
        f->names = xmalloc(run->nblocks * f->nchunks * SHA256_LEN);
    run->inc.truncation = (uint64_t)truncation * PG_INCR_BLCKSZ;
    run->totals.incr_blocks += nblocks;
    return 0;
}

static int on_incr_block(void *arg, uint32_t blkno, const uint8_t *data)
{
    struct backup_run *run = arg;
    struct bk_file *f = run->cur;
    uint64_t at = (uint64_t)blkno * PG_INCR_BLCKSZ;
    uint64_t k = at / run->p.chunk_size;
    int rc = 0;

    while (rc == 0 && run->inc.next < k)
        rc = incr_emit(run, f);
    if (rc == 0 && !run->inc.buf)
        rc = incr_start_chunk(run, f, k);
    if (rc < 0)
        return rc;
    uint64_t b = (at - k * run->p.chunk_size) / PG_INCR_BLCKSZ;
    memcpy(run->inc.buf + (at - k * run->p.chunk_size), data, PG_INCR_BLCKSZ);
    run->inc.rebuild->changed[b / 8] |= (uint8_t)(1u << (b % 8));
    return 0;
}

/* An INCREMENTAL.<name> entry begins: f stands for <name> (target, taken). */
static int incr_begin(struct backup_run *run, struct bk_file *f, const char *sent, char *target)
{
    free(f->path);
    f->path = target;
    run->kind = ENTRY_INCR;
    run->cur = f;
    incr_file_reset(run);
    if (!run->parent)
        return err_set(ERR_PROTOCOL, "the server sent \"%s\" in a backup that is not incremental",
                       sent);
    run->inc.pf = incr_parent_find(run->parent, target);
    if (!run->inc.pf)
        return err_set(ERR_PROTOCOL,
                       "the server sent \"%s\" as changed blocks, but backup \"%s\" has no "
                       "\"%s\"",
                       sent, run->parent->label, target);
    run->inc.parser = pg_incr_parser_new(sent, on_incr_header, on_incr_block, run);
    run->inc.sent_path = xstrdup(sent);
    run->totals.incr_files++;
    return 0;
}

/*
 * An incremental's backup_label says "INCREMENTAL FROM LSN" and "INCREMENTAL FROM TLI",
 * and a server refuses to start on it ("this is an incremental backup, not a data
 * directory"): the backup keeps it without those lines, as pg_combinebackup writes it,
 * and its line in the backup_manifest gets the new size and CRC-32C.
 */
static int incr_label(struct backup_run *run, struct bk_file *f)
{
    struct buf kept = BUF_INIT;
    const char *p = (const char *)run->label_text.data;
    const char *end = p + run->label_text.len;
    const char *drop = "INCREMENTAL FROM ";
    int rc;

    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        if ((size_t)(end - p) < strlen(drop) || strncmp(p, drop, strlen(drop)) != 0)
            buf_append(&kept, p, (size_t)(next - p));
        p = next;
    }
    f->size = kept.len;
    f->nchunks = (f->size + run->p.chunk_size - 1) / run->p.chunk_size;
    rc = kept.len ? chunker_feed(run->chunker, kept.data, kept.len) : 0;
    if (rc == 0) {
        struct incr_restored *r = xcalloc(1, sizeof(*r));
        r->size = kept.len;
        r->crc_set = true;
        r->crc = crc32c_final(crc32c_update(CRC32C_INIT, kept.data, kept.len));
        incr_map_put(run->incr_sizes, f->path, r);
    }
    buf_free(&kept);
    return rc;
}

static int incr_end(struct backup_run *run, struct bk_file *f)
{
    int rc = pg_incr_parser_finish(run->inc.parser);

    while (rc == 0 && run->inc.next < f->nchunks)
        rc = incr_emit(run, f);
    if (rc == 0) {
        struct incr_restored *r = xcalloc(1, sizeof(*r));
        r->size = f->size;
        incr_map_put(run->incr_sizes, run->inc.sent_path, r);
    }
    incr_file_reset(run);
    return rc;
}

static int on_entry_begin(void *arg, const struct tar_entry *e)
{
    struct backup_run *run = arg;
    struct bk_file *f;

    run->kind = ENTRY_SKIP;
    run->cur = NULL;
    run->entries++;
    if (e->type == TAR_TYPE_HARDLINK)
        return err_set(ERR_PROTOCOL, "the backup holds a hard link \"%s\": not supported", e->path);
    f = xcalloc(1, sizeof(*f));
    f->path = xstrdup(e->path);
    f->mode = e->mode;
    f->mtime = e->mtime;
    switch (e->type) {
    case TAR_TYPE_DIR:
        f->type = MANIFEST_TYPE_DIR;
        f->fed = true;
        break;
    case TAR_TYPE_SYMLINK:
        f->type = MANIFEST_TYPE_SYMLINK;
        f->link = xstrdup(e->link ? e->link : "");
        f->fed = true;
        break;
    default: {
        char *target = pg_incr_target_path(e->path);
        f->type = MANIFEST_TYPE_FILE;
        if (target) { /* sized by its header */
            if (run->tail)
                run->tail->next = f;
            else
                run->head = f;
            run->tail = f;
            return incr_begin(run, f, e->path, target);
        }
        f->size = e->size;
        f->nchunks = (e->size + run->p.chunk_size - 1) / run->p.chunk_size;
        if (f->nchunks)
            f->names = xmalloc(run->nblocks * f->nchunks * SHA256_LEN);
        if (f->nchunks && run->fp) {
            f->tags = xmalloc(f->nchunks * FP_TAG_LEN);
            f->old = fpcache_find(run->fp, f->path);
        }
        run->kind = ENTRY_PLAIN;
        run->cur = f;
        if (run->parent && strcmp(e->path, "backup_label") == 0) {
            run->kind = ENTRY_LABEL; /* sized at its end */
            buf_reset(&run->label_text);
        }
        if (strncmp(e->path, "pg_wal/", 7) == 0) {
            const char *base = e->path + 7;
            if (wal_is_segment_name(base)) {
                run->kind = ENTRY_WAL;
                snprintf(run->wal_name, sizeof(run->wal_name), "%s", base);
                run->wal_len = 0;
            } else if (wal_is_history_name(base)) {
                run->kind = ENTRY_HISTORY;
                buf_reset(&run->history);
            }
        }
        break;
    }
    }
    if (run->tail)
        run->tail->next = f;
    else
        run->head = f;
    run->tail = f;
    return 0;
}

static int on_entry_data(void *arg, const uint8_t *data, size_t len, struct refbuf *ref)
{
    struct backup_run *run = arg;
    int rc;

    run->totals.received_bytes += len;
    if (run->kind == ENTRY_SKIP)
        return 0;
    progress_add(run->progress, len);
    if (run->kind == ENTRY_INCR) {
        if ((rc = pg_incr_parser_feed(run->inc.parser, data, len)) < 0)
            return err_context("while reading \"%s\" from the backup", run->inc.sent_path);
        return 0;
    }
    if (run->kind == ENTRY_LABEL) {
        buf_append(&run->label_text, data, len);
        return 0;
    }
    if (run->kind == ENTRY_WAL) {
        size_t done = 0;
        while (done < len) {
            ssize_t n = pwrite(run->wal_fd, data + done, len - done, (off_t)(run->wal_len + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return err_set_errno(ERR_IO, errno,
                                     "could not spool WAL segment %s to a temporary file",
                                     run->wal_name);
            done += (size_t)n;
        }
        run->wal_len += len;
    } else if (run->kind == ENTRY_HISTORY) {
        buf_append(&run->history, data, len);
    }
    if ((rc = chunker_feed_ref(run->chunker, data, len, ref)) < 0)
        return err_context("while reading \"%s\" from the backup", run->cur->path);
    return 0;
}

static int archive_wal(struct backup_run *run)
{
    int rc = 0;

    if (run->wal_len != run->p.seg_size)
        return err_set(ERR_PROTOCOL, "WAL segment %s in the backup has %llu bytes, not %llu",
                       run->wal_name, (unsigned long long)run->wal_len,
                       (unsigned long long)run->p.seg_size);
    bool complete;
    lsn_t valid_end;
    char *why = NULL;
    rc = backup_wal_complete(&run->chain, run->wal_fd, run->wal_len, run->wal_name, &run->p,
                             &complete, &valid_end, &why);
    if (rc == 0 && !complete) {
        /* A standby's last segment: the backup keeps it (pg_wal), a receiver archives the
         * whole segment once the server has it. */
        char at[LSN_STRLEN];
        log_info("WAL segment %s of the backup is not complete (valid WAL ends at %s: %s), as "
                 "in a backup from a standby: it is kept in the backup but not archived",
                 run->wal_name, lsn_format(valid_end, at), why);
    }
    free(why);
    for (size_t i = 0; rc == 0 && complete && i < run->p.ntargets; i++) {
        if (!target_live(run, &run->ts[i]))
            continue;
        rc = repo_wal_push_fd(run->ts[i].t->repo, run->wal_name, run->wal_fd, run->wal_len);
        if (rc < 0) {
            err_context("while archiving WAL segment %s of the backup in repository \"%s\"",
                        run->wal_name, repo_name(run->ts[i].t->repo));
            rc = backup_run_drop(run, run->ts[i].t);
        }
    }
    if (rc == 0 && complete) {
        run->totals.wal_segments++;
        run->archived = xrealloc(run->archived, (run->narchived + 1) * sizeof(*run->archived));
        memcpy(run->archived[run->narchived++], run->wal_name, WAL_NAME_BUFLEN);
    }
    return rc;
}

static int archive_history(struct backup_run *run, const char *path)
{
    timeline_t tli = (timeline_t)strtoul(path + 7, NULL, 16);
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < run->p.ntargets; i++) {
        if (!target_live(run, &run->ts[i]))
            continue;
        rc = repo_wal_push_history(run->ts[i].t->repo, tli, run->history.data, run->history.len);
        if (rc < 0) {
            err_context("while archiving \"%s\" in repository \"%s\"", path,
                        repo_name(run->ts[i].t->repo));
            rc = backup_run_drop(run, run->ts[i].t);
        }
    }
    return rc;
}

static int on_entry_end(void *arg)
{
    struct backup_run *run = arg;
    struct bk_file *f = run->cur;
    uint64_t n = 0;
    int rc = 0;

    if (f && run->kind == ENTRY_INCR) {
        rc = incr_end(run, f);
        pthread_mutex_lock(&run->lock);
        f->fed = true;
        pthread_mutex_unlock(&run->lock);
    } else if (f) {
        if (run->kind == ENTRY_LABEL)
            rc = incr_label(run, f);
        if (rc == 0)
            rc = chunker_finish(run->chunker, &n);
        if (rc == 0 && n != f->nchunks)
            rc = err_set(ERR_PROTOCOL, "file \"%s\" ended after %llu of %llu chunks", f->path,
                         (unsigned long long)n, (unsigned long long)f->nchunks);
        if (rc == 0 && run->kind == ENTRY_WAL)
            rc = archive_wal(run);
        if (rc == 0 && run->kind == ENTRY_HISTORY)
            rc = archive_history(run, f->path);
        pthread_mutex_lock(&run->lock);
        f->fed = true;
        pthread_mutex_unlock(&run->lock);
    }
    run->cur = NULL;
    run->kind = ENTRY_SKIP;
    if (rc == 0)
        rc = flush_files(run);
    return rc;
}

static int on_archive_begin(void *arg, const struct bbstream_archive *a)
{
    (void)arg;
    log_detail("receiving archive \"%s\"%s%s", a->name, *a->location ? " for tablespace " : "",
               a->location);
    return 0;
}

static int on_manifest_data(void *arg, const uint8_t *data, size_t len)
{
    struct backup_run *run = arg;
    if (len && fwrite(data, 1, len, run->server_manifest) != len)
        return err_set_errno(ERR_IO, errno, "could not spool the server's backup_manifest");
    return 0;
}

static const struct bbstream_callbacks CALLBACKS = {
    .archive_begin = on_archive_begin,
    .entry_begin = on_entry_begin,
    .entry_data_ref = on_entry_data,
    .entry_end = on_entry_end,
    .manifest_data = on_manifest_data,
};

const struct bbstream_callbacks *backup_run_callbacks(void)
{
    return &CALLBACKS;
}

/* --- lifecycle ----------------------------------------------------------------------- */

/*
 * The received messages (32 KiB each from PostgreSQL 15) live until a worker has
 * named their chunk and are freed in runs by the workers; glibc then gives the top of
 * the heap back to the kernel (trim threshold 128 KiB) and the next messages fault it
 * in again: a second backup of 1.5 GB made ten times the page faults, and more system
 * time than the copy saved. The backup's memory is bounded anyway: keep the heap.
 */
static void keep_heap(void)
{
#ifdef __GLIBC__
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
#endif
}

/* The fingerprint cache, for these naming keys: each block of digests is identified by
 * an HMAC of its key (zeros: plain SHA-256), so a cache written for other repositories'
 * keys is not used. Without a cache the backup hashes every chunk. */
static void open_fingerprints(struct backup_run *run)
{
    uint8_t *ids = xcalloc(run->nblocks, SHA256_LEN);
    static const char what[] = "pgark fingerprint cache";

    for (size_t g = 0; g < run->ngroups; g++)
        if (run->group_keys[g])
            hmac_sha256(run->group_keys[g], CHUNK_KEY_LEN, what, sizeof(what) - 1,
                        ids + g * SHA256_LEN);
    struct fp_ident id = {run->p.system_identifier, run->p.chunk_size, run->nblocks, ids};
    run->fp = fpcache_open(run->p.fp_dir, &id);
    if (!run->fp && err_kind() == ERR_CONFIG) {
        /* A spool another user owns: refused, loudly. */
        log_warn("fingerprint cache not used, every chunk is hashed: %s", err_message());
        if (err_hint_text())
            log_warn("hint: %s", err_hint_text());
        err_clear();
    } else if (!run->fp) {
        log_info("no fingerprint cache, every chunk is hashed: %s", err_message());
        err_clear();
    }
    free(ids);
}

struct backup_run *backup_run_new(const struct backup_params *params)
{
    struct backup_run *run = xcalloc(1, sizeof(*run));
    size_t unkeyed = SIZE_MAX;

    keep_heap();
    run->p = *params;
    run->wal_fd = -1;
    pthread_mutex_init(&run->lock, NULL);
    run->ts = xcalloc(params->ntargets, sizeof(*run->ts));
    run->group_keys = xcalloc(params->ntargets, sizeof(*run->group_keys));
    for (size_t i = 0; i < params->ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        const uint8_t *key = repo_chunk_key(params->targets[i].repo);
        size_t g = 0;

        ts->t = &params->targets[i];
        while (g < run->ngroups &&
               !(key == NULL ? run->group_keys[g] == NULL
                             : run->group_keys[g] && !memcmp(key, run->group_keys[g], 32)))
            g++;
        if (g == run->ngroups)
            run->group_keys[run->ngroups++] = key;
        ts->group = g;
        if (key == NULL)
            unkeyed = g;
        else
            run->keyed = true;
        ts->known = chunkset_new();
        if (!ts->t->failed && repo_chunk_list(ts->t->repo, chunkset_add_listed, ts->known) < 0) {
            err_context("while listing the chunks of repository \"%s\"", repo_name(ts->t->repo));
            if (backup_run_drop(run, ts->t) < 0)
                goto fail;
        }
        log_detail("repository \"%s\" holds %zu chunks", repo_name(ts->t->repo),
                   chunkset_count(ts->known));
        ts->mw = manifest_writer_new(params->tmp_dir, params->chunk_size);
        if (!ts->mw)
            goto fail;
    }
    run->plain = unkeyed != SIZE_MAX ? unkeyed : run->ngroups;
    run->nblocks = run->plain == run->ngroups ? run->ngroups + 1 : run->ngroups;
    if (params->fp_dir)
        open_fingerprints(run);
    if (temp_fd(params->tmp_dir, "wal", &run->wal_fd) < 0)
        goto fail;
    run->server_manifest = temp_file(params->tmp_dir, "manifest");
    if (!run->server_manifest)
        goto fail;
    int workers = params->workers > 0 ? params->workers : chunk_pool_default_workers();
    /* One buffer per worker, and a few for the stream to fill meanwhile: memory is
     * (workers + 4) chunks whatever the size of the cluster. Each has room for the
     * chunk's SHA-256 after it (repo_put_payload). */
    run->pool = chunk_pool_new(workers, (size_t)workers + 4, params->chunk_size + SHA256_LEN,
                               store_chunk, run);
    if (!run->pool)
        goto fail;
    run->chunker = chunker_new(params->chunk_size, &CHUNK_BUFFERS, on_chunk, run);
    if (!run->chunker)
        goto fail;
    run->incr_sizes = incr_map_new(free);
    return run;
fail:
    backup_run_free(run);
    return NULL;
}

void backup_run_free(struct backup_run *run)
{
    if (!run)
        return;
    chunker_free(run->chunker); /* gives its buffer back to the pool */
    if (run->pool)
        incr_file_reset(run);
    chunk_pool_free(run->pool); /* workers stop before the files they point to go */
    fpcache_free(run->fp);
    while (run->head) {
        struct bk_file *f = run->head;
        run->head = f->next;
        file_free(f);
    }
    for (size_t i = 0; i < run->p.ntargets; i++) {
        chunkset_free(run->ts[i].known);
        manifest_writer_free(run->ts[i].mw);
    }
    free(run->ts);
    free(run->group_keys);
    free(run->archived);
    backup_wal_chain_free(&run->chain);
    if (run->wal_fd >= 0)
        close(run->wal_fd);
    if (run->server_manifest)
        fclose(run->server_manifest);
    buf_free(&run->history);
    incr_parent_free(run->parent);
    incr_map_free(run->incr_sizes);
    buf_free(&run->label_text);
    progress_free(run->progress);
    pthread_mutex_destroy(&run->lock);
    free(run);
}

struct parent_check {
    struct backup_run *run;
    struct target_state *ts;
};

static int parent_chunks_held(void *arg, const char *path, void *value)
{
    struct parent_check *c = arg;
    const struct incr_parent_file *pf = value;

    for (uint64_t k = 0; k < pf->nchunks; k++) {
        const uint8_t *name = pf->names + (c->ts->group * pf->nchunks + k) * SHA256_LEN;
        if (chunkset_has(c->ts->known, name))
            continue;
        char hex[SHA256_HEX_LEN + 1];
        hex_encode(name, SHA256_LEN, hex);
        return err_set(ERR_INTEGRITY,
                       "chunk %s of \"%s\" of backup \"%s\" is not in repository \"%s\" (did "
                       "verify find it damaged?)",
                       hex, path, c->run->parent->label, repo_name(c->ts->t->repo));
    }
    return 0;
}

static int load_parent(struct backup_run *run, const char *label)
{
    if (run->p.chunk_size % PG_INCR_BLCKSZ != 0)
        return err_set(ERR_RUNTIME, "the chunk size (%llu bytes) is not a multiple of 8 KiB",
                       (unsigned long long)run->p.chunk_size);
    incr_parent_free(run->parent);
    run->parent = incr_parent_new(label, run->nblocks, run->p.chunk_size);
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        if (ts->t->failed)
            continue;
        int e = repo_backup_exists(ts->t->repo, label);
        if (e == 0)
            err_set(ERR_NOT_FOUND, "repository \"%s\" does not hold backup \"%s\"",
                    repo_name(ts->t->repo), label);
        if (e <= 0)
            return err_code();
        bool loaded = false;
        for (size_t k = 0; k < i; k++)
            loaded = loaded || (!run->ts[k].t->failed && run->ts[k].group == ts->group);
        if (!loaded && incr_parent_load(run->parent, ts->t->repo, ts->group) < 0)
            return err_code();
        if (!run->parent->read_repo) {
            run->parent->read_repo = ts->t->repo;
            run->parent->read_block = ts->group;
        }
    }
    if (!run->parent->read_repo)
        return err_set(ERR_RUNTIME, "no repository left to read backup \"%s\" from", label);
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct parent_check c = {run, &run->ts[i]};
        if (!run->ts[i].t->failed && incr_map_each(run->parent->files, parent_chunks_held, &c) < 0)
            return err_code();
    }
    return 0;
}

void backup_run_load_parent_drop(struct backup_run *run)
{
    incr_parent_free(run->parent);
    run->parent = NULL;
}

bool backup_run_began(const struct backup_run *run)
{
    return run->entries > 0;
}

int backup_run_load_parent(struct backup_run *run, const char *label)
{
    int rc = load_parent(run, label);
    if (rc < 0) {
        incr_parent_free(run->parent);
        run->parent = NULL;
    }
    return rc;
}

void backup_run_show_progress(struct backup_run *run, bool enabled)
{
    run->show_progress = enabled;
}

int backup_run_started(void *arg, const struct pg_bb_info *info)
{
    struct backup_run *run = arg;
    char lsn[LSN_STRLEN];
    uint64_t total = 0;

    for (size_t i = 0; i < info->ntablespaces; i++)
        if (info->tablespaces[i].size_kb > 0)
            total += (uint64_t)info->tablespaces[i].size_kb * 1024;
    log_detail("backup \"%s\" started at %s on timeline %u", run->p.label,
               lsn_format(info->start_lsn, lsn), info->start_tli);
    progress_free(run->progress);
    run->progress = progress_new("backup", total, run->show_progress);
    return 0;
}

int backup_run_wait(struct backup_run *run)
{
    return chunk_pool_wait(run->pool);
}

const struct backup_totals *backup_run_totals(const struct backup_run *run)
{
    return &run->totals;
}

/* --- before the manifests: is everything the backup names still stored? ------------- */

/*
 * A chunk the backup reused (or stored early on) can be gone by now if an expire took
 * the backup for dead: its marker not refreshed for REPO_MARKER_STALE_S, the process
 * stopped or its host suspended (repo.h, running markers). The bytes of a reused chunk
 * went by in the stream long ago, so the backup cannot store it again: it fails, naming
 * the chunk and its file, and writes no manifest.json. Each repository is checked
 * against the backup's own spooled manifest, by one listing of its chunks, or one HEAD
 * per chunk when the backup names few of the chunks the repository holds. Measured on a
 * backup of 1,116 distinct chunks (1,926 references): a listing took 33-99 ms on posix
 * and 0.7-0.9 s on s3rver (~0.8 ms per chunk held); a HEAD each, 38-41 ms on posix and
 * 2.0-4.3 s on s3rver. S3 lists 1,000 keys per request, so there a HEAD costs about
 * what 100 listed chunks do: HEADs only when the references are under 1/100 of the
 * chunks held.
 */
#define CONFIRM_HEAD_RATIO 100

struct confirm {
    struct repo *r;
    struct chunkset *present; /* listing: every chunk the repository holds */
    struct chunkset *checked; /* HEADs: the names asked about */
    struct chunkset *absent;  /* names found missing */
    uint64_t missing;         /* distinct names */
    uint64_t heads;
    char *first_file;
    uint8_t first[SHA256_LEN];
};

static int confirm_file(void *arg, const struct manifest_file *f)
{
    struct confirm *c = arg;

    for (size_t k = 0; k < f->n_chunks; k++) {
        const uint8_t *name = f->chunks + k * SHA256_LEN;
        bool there;
        if (c->present) {
            there = chunkset_has(c->present, name);
        } else if (chunkset_has(c->absent, name)) {
            there = false;
        } else if (!chunkset_add(c->checked, name)) {
            there = true; /* asked already, and it was there */
        } else {
            char hex[SHA256_HEX_LEN + 1];
            hex_encode(name, SHA256_LEN, hex);
            c->heads++;
            int e = repo_chunk_exists(c->r, hex);
            if (e < 0)
                return err_context("while checking that chunk %s is still stored", hex);
            there = e > 0;
        }
        if (there)
            continue;
        if (chunkset_add(c->absent, name))
            c->missing++;
        if (!c->first_file) {
            c->first_file = xstrdup(f->path);
            memcpy(c->first, name, SHA256_LEN);
        }
    }
    return 0;
}

static int removed_while_running(void)
{
    return err_hint("expire takes a backup for dead when its running marker was not refreshed "
                    "for %d s (was this backup's process stopped, or its host suspended?): take "
                    "the backup again",
                    REPO_MARKER_STALE_S);
}

static int confirm_target(struct backup_run *run, struct target_state *ts, FILE *json)
{
    struct repo *r = ts->t->repo;
    struct confirm c = {.r = r, .absent = chunkset_new()};
    struct manifest_reader *mr = NULL;
    uint64_t refs = run->totals.chunks;
    size_t held = ts->known ? chunkset_count(ts->known) : 0;
    bool listing = run->p.confirm_by ? run->p.confirm_by < 0 : refs * CONFIRM_HEAD_RATIO >= held;
    int64_t t0 = time_mono_us();
    int rc = 0;

    /* What the repository held at the start is of no use any more: the listing
     * replaces it (peak memory as before). */
    chunkset_free(ts->known);
    ts->known = NULL;
    if (listing) {
        c.present = chunkset_new();
        if ((rc = repo_chunk_list(r, chunkset_add_listed, c.present)) == -ERR_NOT_FOUND) {
            err_clear();
            rc = 0;
        }
    } else {
        c.checked = chunkset_new();
    }
    if (rc == 0) {
        mr = manifest_reader_new(confirm_file, &c);
        rc = manifest_reader_feed_file(mr, json, "the spooled manifest");
    }
    if (rc == 0 && c.missing) {
        char hex[SHA256_HEX_LEN + 1], more[48] = "";
        hex_encode(c.first, SHA256_LEN, hex);
        if (c.missing > 1)
            snprintf(more, sizeof(more), " (and %llu more)", (unsigned long long)(c.missing - 1));
        err_set(ERR_RUNTIME,
                "chunk %s of \"%s\"%s is no longer in repository \"%s\": removed while the "
                "backup ran",
                hex, c.first_file, more, repo_name(r));
        rc = removed_while_running();
    }
    /* The WAL it archived too: a backup is complete only with its WAL. */
    for (size_t i = 0; rc == 0 && i < run->narchived; i++) {
        char path[96];
        timeline_t tli;
        uint64_t segno;
        if ((rc = wal_segment_parse(run->archived[i], run->p.seg_size, &tli, &segno)) < 0)
            break;
        repo_wal_path(tli, run->archived[i], false, path, sizeof(path));
        int e = repo_object_exists(r, path);
        if (e < 0) {
            rc = e;
        } else if (e == 0) {
            err_set(ERR_RUNTIME,
                    "WAL segment %s of the backup is no longer in repository \"%s\": removed "
                    "while the backup ran",
                    run->archived[i], repo_name(r));
            rc = removed_while_running();
        }
    }
    if (rc == 0 && listing)
        log_detail("repository \"%s\": the backup's %llu chunk references are all stored (one "
                   "listing, %lld ms)",
                   repo_name(r), (unsigned long long)refs,
                   (long long)((time_mono_us() - t0) / 1000));
    else if (rc == 0)
        log_detail("repository \"%s\": the backup's %llu chunk references are all stored (%llu "
                   "HEADs, %lld ms)",
                   repo_name(r), (unsigned long long)refs, (unsigned long long)c.heads,
                   (long long)((time_mono_us() - t0) / 1000));
    manifest_reader_free(mr);
    free(c.first_file);
    chunkset_free(c.present);
    chunkset_free(c.checked);
    chunkset_free(c.absent);
    return rc;
}

/* Beat in every repository left, dropping those where it fails. */
static int beat(struct backup_run *run, struct repo_heartbeat *hb)
{
    for (;;) {
        struct repo *failed = NULL;
        int rc = repo_heartbeat_beat(hb, &failed);
        struct backup_target *t = NULL;
        for (size_t i = 0; failed && i < run->p.ntargets; i++)
            if (run->p.targets[i].repo == failed)
                t = &run->p.targets[i];
        if (rc == 0 || !t)
            return rc;
        err_context("in repository \"%s\"", repo_name(failed));
        if ((rc = backup_run_drop(run, t)) < 0)
            return rc;
    }
}

/*
 * Confirm, then store the server's backup_manifest, under a fresh lease: beat, wait for
 * any live expire (a sweep that took this backup for dead ends before the confirmation
 * looks), confirm every repository, store backup_manifest (expire removes the folders of
 * dead backups); if the marker went without a refresh for longer than the lease
 * meanwhile, an expire may have judged it stale since the beat: again.
 */
static int confirm_stored(struct backup_run *run, FILE **json, long mlen)
{
    struct repo_heartbeat *hb = run->p.heartbeat;
    char path[320];
    int rc = repo_backup_path(run->p.label, "backup_manifest", path, sizeof(path));

    for (int attempt = 1; rc == 0; attempt++) {
        if (hb && (rc = beat(run, hb)) < 0)
            break;
        for (size_t i = 0; hb && rc == 0 && i < run->p.ntargets; i++) {
            if (run->ts[i].t->failed)
                continue;
            if ((rc = repo_expire_wait(run->ts[i].t->repo, 1000)) < 0)
                rc = backup_run_drop(run, run->ts[i].t);
        }
        for (size_t i = 0; rc == 0 && i < run->p.ntargets; i++) {
            if (run->ts[i].t->failed)
                continue;
            if ((rc = confirm_target(run, &run->ts[i], json[i])) < 0)
                rc = backup_run_drop(run, run->ts[i].t);
        }
        for (size_t i = 0; rc == 0 && mlen > 0 && i < run->p.ntargets; i++) {
            if (run->ts[i].t->failed)
                continue;
            rc = put_fd(run->ts[i].t->repo, path, fileno(run->server_manifest), (uint64_t)mlen);
            if (rc < 0) {
                err_context("while storing the server's backup_manifest in repository \"%s\"",
                            repo_name(run->ts[i].t->repo));
                rc = backup_run_drop(run, run->ts[i].t);
            }
        }
        if (rc < 0 || !hb || repo_heartbeat_held(hb))
            break;
        if (attempt == 3) {
            rc = err_set(ERR_RUNTIME,
                         "the running marker of backup \"%s\" went more than %d s without a "
                         "refresh while its chunks were confirmed, three times",
                         run->p.label, REPO_MARKER_LEASE_S);
            break;
        }
        log_warn("the running marker of backup \"%s\" went more than %d s without a refresh "
                 "(was the process stopped?): confirming its chunks again",
                 run->p.label, REPO_MARKER_LEASE_S);
    }
    return rc;
}

int backup_run_finish(struct backup_run *run, const struct pg_bb_info *info, int64_t start_us,
                      int64_t stop_us)
{
    struct manifest_tablespace *tablespaces = xcalloc(info->ntablespaces + 1, sizeof(*tablespaces));
    FILE **json = xcalloc(run->p.ntargets + 1, sizeof(*json));
    size_t ntablespaces = 0;
    char path[320];
    int rc;

    for (size_t i = 0; i < info->ntablespaces; i++) {
        if (info->tablespaces[i].oid == 0)
            continue;
        tablespaces[ntablespaces].oid = info->tablespaces[i].oid;
        tablespaces[ntablespaces++].location = info->tablespaces[i].location;
    }

    if ((rc = chunk_pool_wait(run->pool)) < 0 || (rc = flush_files(run)) < 0)
        goto out;
    if (run->head) {
        rc = err_set(ERR_RUNTIME, "file \"%s\" was not complete at the end of the backup",
                     run->head->path);
        goto out;
    }
    /* Test hook: once every chunk is named and stored (what it reuses is decided), so a
     * test can run `expire` at exactly that moment (tests/t/052). */
    testhook_pause("PGARK_TEST_PAUSE_BEFORE_MANIFEST", "before the manifests");
    if (fflush(run->server_manifest) != 0) {
        rc = err_set_errno(ERR_IO, errno, "could not spool the server's backup_manifest");
        goto out;
    }
    if (incr_map_count(run->incr_sizes) > 0) {
        FILE *kept = temp_file(run->p.tmp_dir, "manifest");
        if (!kept || incr_manifest_rewrite(run->server_manifest, kept, run->incr_sizes) < 0) {
            rc = err_code();
            err_context("while making the backup_manifest of backup \"%s\"", run->p.label);
            if (kept)
                fclose(kept);
            goto out;
        }
        fclose(run->server_manifest);
        run->server_manifest = kept;
    }
    long mlen = ftell(run->server_manifest);
    /* Every manifest.json spooled first: it is what the confirmation reads. */
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        if (ts->t->failed)
            continue;
        if ((rc = repo_sync_written(ts->t->repo)) < 0 && (rc = backup_run_drop(run, ts->t)) < 0)
            goto out;
        struct manifest_header h = {
            .format = MANIFEST_FORMAT,
            .label = run->p.label,
            .start_lsn = info->start_lsn,
            .stop_lsn = info->end_lsn,
            .start_time = start_us / 1000000,
            .stop_time = stop_us / 1000000,
            .consistent_time_us = backup_wal_chain_newest(&run->chain, info->end_lsn),
            .timeline = info->start_tli,
            .pg_version = run->p.pg_version,
            .system_identifier = run->p.system_identifier,
            .chunk_size = run->p.chunk_size,
            .tablespaces = tablespaces,
            .n_tablespaces = ntablespaces,
            .stored_bytes = ts->t->stored_bytes,
            .compression = run->p.compression,
            .encrypted = repo_encrypted(ts->t->repo),
            .parent = run->parent ? run->parent->label : NULL,
        };
        if (!(json[i] = temp_file(run->p.tmp_dir, "json"))) {
            rc = err_code();
            goto out;
        }
        rc = manifest_writer_finish(ts->mw, &h, manifest_sink_file, json[i]);
        if (rc == 0 && fflush(json[i]) != 0)
            rc = err_set_errno(ERR_IO, errno, "could not spool the manifest");
        if (rc < 0) {
            err_context("while writing the manifest of backup \"%s\"", run->p.label);
            goto out;
        }
    }
    if ((rc = confirm_stored(run, json, mlen)) < 0)
        goto out;
    /* manifest.json last: it is what makes the backup exist. */
    if ((rc = repo_backup_path(run->p.label, "manifest.json", path, sizeof(path))) < 0)
        goto out;
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        if (ts->t->failed)
            continue;
        if (fseek(json[i], 0, SEEK_END) != 0) {
            rc = err_set_errno(ERR_IO, errno, "could not read back the spooled manifest");
            goto out;
        }
        if ((rc = put_fd(ts->t->repo, path, fileno(json[i]), (uint64_t)ftell(json[i]))) < 0) {
            err_context("while writing the manifest of backup \"%s\" in repository \"%s\"",
                        run->p.label, repo_name(ts->t->repo));
            if ((rc = backup_run_drop(run, ts->t)) < 0)
                goto out;
        }
    }
    if (run->fp) {
        fpcache_commit(run->fp);
        log_detail("%llu of %llu chunks unchanged since the last backup (by their fingerprint): "
                   "not hashed",
                   (unsigned long long)run->totals.unchanged,
                   (unsigned long long)run->totals.chunks);
    }
    progress_done(run->progress);
out:
    for (size_t i = 0; i < run->p.ntargets; i++)
        if (json[i])
            fclose(json[i]);
    free(json);
    free(tablespaces);
    return rc;
}
