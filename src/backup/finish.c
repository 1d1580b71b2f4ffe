/*
 * finish.c — the end of a backup run (run_int.h): every chunk and WAL segment the backup
 * names confirmed still stored, the server's backup_manifest stored, then manifest.json,
 * which makes the backup exist.
 */
#include "run_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/units.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_BUF (1024 * 1024)

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
 * chunks held. On a local filesystem a HEAD (a stat) costs about what one listed chunk
 * does (7.7 against 6.5 us, 3,304 chunks): HEADs there while they are fewer than half
 * the chunks held.
 *
 * An incremental names mostly its parent's chunks, and those need no HEAD while the
 * parent's manifest.json is still there: they were all in the listing this run made
 * at its start (backup_run_load_parent checks them), expire never sweeps a chunk of a
 * backup it keeps, and it removes a backup's manifest.json before it sweeps the chunks
 * only that backup named (ops/expire.c); nothing else removes a sound chunk. So with
 * HEADs, only the chunks the parent does not name are asked about: after a 5% update
 * at scale 100, ~300 of 2,394 references, where a listing read 2,500 chunks (O(the
 * repository), for a backup that stored 162). A listing, when chosen, checks every
 * name as before.
 */
#define CONFIRM_HEAD_RATIO 100
#define CONFIRM_HEAD_RATIO_LOCAL 2

struct confirm {
    struct repo *r;
    struct chunkset *present;       /* listing: every chunk the repository holds */
    struct chunkset *checked;       /* HEADs: the names asked about */
    struct chunkset *absent;        /* names found missing */
    const struct chunkset *covered; /* HEADs: the parent's names, its manifest still there */
    uint64_t missing;               /* distinct names */
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
        } else if (c->covered && chunkset_has(c->covered, name)) {
            there = true;
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

/* The parent's chunk names for ts, when the parent's manifest.json is still in its
 * repository (see above): *out NULL when there is no parent or it is gone. */
static int parent_covered(struct backup_run *run, struct target_state *ts, struct chunkset **out)
{
    *out = NULL;
    if (!run->parent)
        return 0;
    int e = repo_backup_exists(ts->t->repo, run->parent->label);
    if (e < 0)
        return err_context("while checking that backup \"%s\" is still stored", run->parent->label);
    if (e > 0)
        *out = backup_parent_names(run, ts->group);
    return 0;
}

static int confirm_target(struct backup_run *run, struct target_state *ts, FILE *json)
{
    struct repo *r = ts->t->repo;
    struct confirm c = {.r = r, .absent = chunkset_new()};
    struct chunkset *covered = NULL;
    struct manifest_reader *mr = NULL;
    uint64_t refs = run->totals.chunks;
    size_t held = ts->known ? chunkset_count(ts->known) : 0;
    int64_t t0 = time_mono_us();
    int rc = parent_covered(run, ts, &covered);

    /* At most these references need a HEAD: those taken from the parent unreceived are
     * covered (others may be too: a parent's chunk found again by its name). */
    uint64_t ask = covered ? refs - run->totals.parent_chunks : refs;
    uint64_t ratio = ts->t->local ? CONFIRM_HEAD_RATIO_LOCAL : CONFIRM_HEAD_RATIO;
    bool listing = run->p.confirm_by ? run->p.confirm_by < 0 : ask * ratio >= held;

    /* What the repository held at the start is of no use any more: the listing
     * replaces it (peak memory as before). */
    chunkset_free(ts->known);
    ts->known = NULL;
    if (rc < 0) {
        /* the parent's manifest could not be asked about */
    } else if (listing) {
        c.present = chunkset_new();
        run->totals.confirm_lists++;
        if ((rc = repo_chunk_list(r, chunkset_add_listed, c.present)) == -ERR_NOT_FOUND) {
            err_clear();
            rc = 0;
        }
    } else {
        c.checked = chunkset_new();
        c.covered = covered;
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
    run->totals.confirm_heads += c.heads;
    if (rc == 0 && listing)
        log_detail("repository \"%s\": the backup's %llu chunk references are all stored (one "
                   "listing, %lld ms)",
                   repo_name(r), (unsigned long long)refs,
                   (long long)((time_mono_us() - t0) / 1000));
    else if (rc == 0)
        log_detail("repository \"%s\": the backup's %llu chunk references are all stored (%llu "
                   "HEADs%s, %lld ms)",
                   repo_name(r), (unsigned long long)refs, (unsigned long long)c.heads,
                   c.covered ? "; the parent's chunks by its manifest" : "",
                   (long long)((time_mono_us() - t0) / 1000));
    manifest_reader_free(mr);
    chunkset_free(covered);
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

/* The server's backup_manifest spooled in full; for an incremental, rewritten to name the
 * files a restore writes (incr.c). */
static int keep_server_manifest(struct backup_run *run)
{
    if (fflush(run->server_manifest) != 0)
        return err_set_errno(ERR_IO, errno, "could not spool the server's backup_manifest");
    if (incr_map_count(run->incr_sizes) == 0)
        return 0;
    FILE *kept = backup_temp_file(run->p.tmp_dir, "manifest");
    if (!kept || incr_manifest_rewrite(run->server_manifest, kept, run->incr_sizes) < 0) {
        int rc = err_code();
        err_context("while making the backup_manifest of backup \"%s\"", run->p.label);
        if (kept)
            fclose(kept);
        return rc;
    }
    fclose(run->server_manifest);
    run->server_manifest = kept;
    return 0;
}

/* Every repository's manifest.json spooled into json[i] (the caller closes them): it is
 * what the confirmation reads, and what is stored last. */
static int spool_manifests(struct backup_run *run, const struct pg_bb_info *info, int64_t start_us,
                           int64_t stop_us, FILE **json)
{
    struct manifest_tablespace *tablespaces = xcalloc(info->ntablespaces + 1, sizeof(*tablespaces));
    size_t ntablespaces = 0;
    int rc = 0;

    for (size_t i = 0; i < info->ntablespaces; i++) {
        if (info->tablespaces[i].oid == 0)
            continue;
        tablespaces[ntablespaces].oid = info->tablespaces[i].oid;
        tablespaces[ntablespaces++].location = info->tablespaces[i].location;
    }
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        if (ts->t->failed)
            continue;
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
        if (!(json[i] = backup_temp_file(run->p.tmp_dir, "json"))) {
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
out:
    free(tablespaces);
    return rc;
}

/* manifest.json into every repository left: it is what makes the backup exist. */
static int put_manifests(struct backup_run *run, FILE **json)
{
    char path[320];
    int rc;

    if ((rc = repo_backup_path(run->p.label, "manifest.json", path, sizeof(path))) < 0)
        return rc;
    for (size_t i = 0; i < run->p.ntargets; i++) {
        struct target_state *ts = &run->ts[i];
        if (ts->t->failed)
            continue;
        if (fseek(json[i], 0, SEEK_END) != 0)
            return err_set_errno(ERR_IO, errno, "could not read back the spooled manifest");
        /* Every chunk it names durable before the manifest that makes them a backup. */
        if ((rc = repo_sync_written(ts->t->repo)) < 0 ||
            (rc = put_fd(ts->t->repo, path, fileno(json[i]), (uint64_t)ftell(json[i]))) < 0) {
            err_context("while writing the manifest of backup \"%s\" in repository \"%s\"",
                        run->p.label, repo_name(ts->t->repo));
            if ((rc = backup_run_drop(run, ts->t)) < 0)
                return rc;
        }
    }
    return rc;
}

int backup_run_finish(struct backup_run *run, const struct pg_bb_info *info, int64_t start_us,
                      int64_t stop_us)
{
    FILE **json = xcalloc(run->p.ntargets + 1, sizeof(*json));
    int rc;

    if ((rc = chunk_pool_wait(run->pool)) < 0 || (rc = backup_flush_files(run)) < 0)
        goto out;
    log_debug("every chunk stored");
    if (run->head) {
        rc = err_set(ERR_RUNTIME, "file \"%s\" was not complete at the end of the backup",
                     run->head->path);
        goto out;
    }
    /* Test hook: once every chunk is named and stored (what it reuses is decided), so a
     * test can run `expire` at exactly that moment (tests/t/052). */
    testhook_pause("PGARK_TEST_PAUSE_BEFORE_MANIFEST", "before the manifests");
    if ((rc = keep_server_manifest(run)) < 0)
        goto out;
    long mlen = ftell(run->server_manifest);
    if ((rc = spool_manifests(run, info, start_us, stop_us, json)) < 0)
        goto out;
    log_debug("manifests spooled");
    if ((rc = confirm_stored(run, json, mlen)) < 0 || (rc = put_manifests(run, json)) < 0)
        goto out;
    if (run->fp) {
        fpcache_commit(run->fp);
        log_detail("%llu of %llu chunks unchanged since the last backup (by their fingerprint): "
                   "not hashed",
                   (unsigned long long)run->totals.unchanged,
                   (unsigned long long)run->totals.chunks);
    }
    log_debug("manifest.json written");
    progress_done(run->progress);
out:
    for (size_t i = 0; i < run->p.ntargets; i++)
        if (json[i])
            fclose(json[i]);
    free(json);
    return rc;
}
