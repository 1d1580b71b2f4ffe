/*
 * incrrecv.c — an incremental backup's side of a run (run_int.h), on the main thread: the
 * parent's manifest loaded and its chunks checked, and each INCREMENTAL.<name> file the
 * server sends made into the chunks of <name> as its blocks arrive, each either the
 * parent's chunk unchanged or a pool buffer with the changed blocks that a worker
 * completes from the parent (struct rebuild, store.c).
 */
#include "run_int.h"

#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void backup_rebuild_free(struct rebuild *rb)
{
    if (!rb)
        return;
    free(rb->changed);
    free(rb);
}

void backup_incr_file_reset(struct backup_run *run)
{
    pg_incr_parser_free(run->inc.parser);
    free(run->inc.sent_path);
    backup_rebuild_free(run->inc.rebuild);
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
        backup_rebuild_free(rb);
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
            memcpy(backup_name_slot(f, b, k), pf->names + (b * pf->nchunks + k) * SHA256_LEN,
                   SHA256_LEN);
        pthread_mutex_lock(&run->lock);
        for (size_t i = 0; i < run->p.ntargets; i++) {
            struct target_state *ts = &run->ts[i];
            if (ts->t->failed)
                continue;
            chunkset_add(ts->known, backup_name_slot(f, ts->group, k));
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
    /* Every block the parent's chunk would give was sent: nothing of it is needed, and
     * reading it back (read, decrypt, decompress, verify) was most of the cost of an
     * incremental after changes spread over every page. */
    if (rb->from_parent && rb->changed_kept * PG_INCR_BLCKSZ >= rb->keep)
        rb->from_parent = false;
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
    struct rebuild *rb = run->inc.rebuild;
    memcpy(run->inc.buf + (at - k * run->p.chunk_size), data, PG_INCR_BLCKSZ);
    if (!(rb->changed[b / 8] & (1u << (b % 8))) && b * PG_INCR_BLCKSZ < rb->keep)
        rb->changed_kept++;
    rb->changed[b / 8] |= (uint8_t)(1u << (b % 8));
    return 0;
}

/* An INCREMENTAL.<name> entry begins: f stands for <name> (target, taken). */
int backup_incr_begin(struct backup_run *run, struct bk_file *f, const char *sent, char *target)
{
    free(f->path);
    f->path = target;
    run->kind = ENTRY_INCR;
    run->cur = f;
    backup_incr_file_reset(run);
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
int backup_incr_label(struct backup_run *run, struct bk_file *f)
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

int backup_incr_end(struct backup_run *run, struct bk_file *f)
{
    int rc = pg_incr_parser_finish(run->inc.parser);

    while (rc == 0 && run->inc.next < f->nchunks)
        rc = incr_emit(run, f);
    if (rc == 0) {
        struct incr_restored *r = xcalloc(1, sizeof(*r));
        r->size = f->size;
        incr_map_put(run->incr_sizes, run->inc.sent_path, r);
    }
    backup_incr_file_reset(run);
    return rc;
}

/* --- the parent ---------------------------------------------------------------------- */

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

struct parent_names {
    struct chunkset *set;
    size_t group;
};

static int add_parent_names(void *arg, const char *path, void *value)
{
    struct parent_names *n = arg;
    const struct incr_parent_file *pf = value;
    (void)path;
    for (uint64_t k = 0; k < pf->nchunks; k++)
        chunkset_add(n->set, pf->names + (n->group * pf->nchunks + k) * SHA256_LEN);
    return 0;
}

struct chunkset *backup_parent_names(const struct backup_run *run, size_t group)
{
    struct parent_names n = {chunkset_new(), group};
    incr_map_each(run->parent->files, add_parent_names, &n);
    return n.set;
}

const struct incr_parent *backup_run_parent(const struct backup_run *run)
{
    return run->parent;
}

void backup_run_load_parent_drop(struct backup_run *run)
{
    incr_parent_free(run->parent);
    run->parent = NULL;
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
