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
#include "run_int.h"

#include "pgark/cli.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
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
#include <unistd.h>

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
int backup_flush_files(struct backup_run *run)
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
        manifest_chunks_digest(f->nchunks ? backup_name_slot(f, run->plain, 0) : NULL, f->nchunks,
                               digest);
        for (size_t i = 0; rc == 0 && i < run->p.ntargets; i++) {
            struct manifest_file mf = {
                .path = f->path,
                .type = f->type,
                .mode = f->mode,
                .size = f->size,
                .mtime = f->mtime,
                .link = f->link,
                .chunks = f->nchunks ? backup_name_slot(f, run->ts[i].group, 0) : NULL,
                .n_chunks = f->nchunks,
                .digest_kind = MANIFEST_DIGEST_CHUNKS,
            };
            memcpy(mf.digest, digest, SHA256_LEN);
            rc = manifest_writer_add(run->ts[i].mw, &mf);
        }
        if (rc == 0 && run->fp && f->nchunks && f->tags)
            fpcache_add(run->fp, f->path, f->size, f->tags, f->names);
        else if (rc == 0 && run->fp && f->nchunks)
            fpcache_keep(run->fp, f->path);
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

static int on_entry_begin(void *arg, const struct tar_entry *e)
{
    struct backup_run *run = arg;
    struct bk_file *f;

    run->kind = ENTRY_SKIP;
    run->cur = NULL;
    if (run->entries++ == 0)
        log_debug("first file of the stream: \"%s\"", e->path);
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
            return backup_incr_begin(run, f, e->path, target);
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
                log_debug("WAL segment %s of the backup begins", base);
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
    int64_t t0 = time_mono_us();
    log_debug("WAL segment %s of the backup received", run->wal_name);
    rc = backup_wal_complete(&run->chain, run->wal_fd, run->wal_len, run->wal_name, &run->p,
                             &complete, &valid_end, &why);
    int64_t t1 = time_mono_us();
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
    if (rc == 0)
        log_debug("WAL segment %s of the backup read back in %lld ms, archived in %lld ms",
                  run->wal_name, (long long)((t1 - t0) / 1000),
                  (long long)((time_mono_us() - t1) / 1000));
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
        rc = backup_incr_end(run, f);
        pthread_mutex_lock(&run->lock);
        f->fed = true;
        pthread_mutex_unlock(&run->lock);
    } else if (f) {
        if (run->kind == ENTRY_LABEL)
            rc = backup_incr_label(run, f);
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
        rc = backup_flush_files(run);
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
    if (backup_temp_fd(params->tmp_dir, "wal", &run->wal_fd) < 0)
        goto fail;
    run->server_manifest = backup_temp_file(params->tmp_dir, "manifest");
    if (!run->server_manifest)
        goto fail;
    int workers = params->workers > 0 ? params->workers : chunk_pool_default_workers();
    /* One buffer per worker, and a few for the stream to fill meanwhile: memory is
     * (workers + 4) chunks whatever the size of the cluster. Each has room for the
     * chunk's SHA-256 after it (repo_put_payload). */
    run->pool = chunk_pool_new(workers, (size_t)workers + 4, params->chunk_size + SHA256_LEN,
                               backup_store_chunk, run);
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
        backup_incr_file_reset(run);
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

bool backup_run_began(const struct backup_run *run)
{
    return run->entries > 0;
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
