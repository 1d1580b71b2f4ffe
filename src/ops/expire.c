/*
 * expire.c — `pgark expire [--dry-run] [--json]`: apply the cluster's retention to
 * every repository, and remove what nothing needs any more.
 *
 * Per repository (each holds its own backups; a backup that failed in one is simply
 * not there):
 *   0. expire.running, kept fresh by a heartbeat until expire is done with the
 *      repository, and only then a look at backups' markers (repo.h, running markers):
 *      a backup starting from then on waits for expire before it lists chunks; a backup
 *      whose marker is fresh is running, one not refreshed for REPO_MARKER_STALE_S is
 *      dead (warned about, and ignored).
 *   1. Which backups to keep: retention.full (the N newest) and retention.window
 *      (every moment of the window restorable: the newest backup that ended at or
 *      before now - window, and every newer one); a backup either rule keeps is kept.
 *      A backup whose manifest cannot be read is kept, and the chunk sweep is skipped
 *      (its chunks cannot be told apart).
 *   2. The expired backups: manifest.json FIRST (from then on the backup is not
 *      listed, so a half-removed backup is never taken for a complete one), then the
 *      rest of its folder. Folders of backups that died before their manifest.json
 *      (no live running marker) are removed too.
 *   3. The WAL before the oldest kept backup's start segment, on every timeline:
 *      segments, partial copies and their time indexes. History files stay (tiny, and
 *      restore needs them to follow timelines). Skipped while a backup runs: it may
 *      have started before the oldest kept backup.
 *   4. Chunks no remaining manifest names: mark (every manifest still there, read as a
 *      stream, its chunk names into a set) and sweep (one listing of chunks/). Skipped
 *      while a backup runs: it references chunks it found at its start without writing
 *      them again (the next expire does it). The mark reads the manifests after the
 *      marker is written, so a backup that completed meanwhile is marked too. Each
 *      removal first checks expire's lease (its marker never went REPO_MARKER_LEASE_S
 *      without a refresh): a stopped expire that wakes up stops sweeping.
 *   5. Data keys (rotate-key --data-key) no object uses any more: dropped from repo.json,
 *      never key 0 (chunk names derive from it) nor the current one. A key is looked at
 *      only once it was replaced KEY_GRACE_S ago, and not while a backup runs: a process
 *      that opened the repository before the rotation writes under the key it holds
 *      (repo_key_usage reads the headers; docs/architecture.md, "Data keys").
 *   6. Leftovers of writes that never ended (posix: the temporary file of a process
 *      killed while it wrote) last changed more than LEFTOVER_AGE_S ago: a write going
 *      on changes its file as it goes, so none of them is one. S3 stores keep unfinished
 *      multipart uploads out of sight instead; their lifecycle rules remove them.
 * --dry-run lists what would be removed and removes nothing (no marker either).
 * Exit codes: 0 done; 1 when a repository could not be expired; 2 usage or
 * configuration (no retention set).
 */
#include "ops_int.h"

#include "pgark/chunkset.h"
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/units.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct expire {
    bool dry_run;
    const struct config *cfg;
    const struct config_cluster *cl;
    struct repo *r;
    const char *cluster;
    json_t *out; /* this repository's report */
};

/* A day: far longer than any write keeps its temporary file unchanged. */
#define LEFTOVER_AGE_S (24 * 3600)

/* --- removing ----------------------------------------------------------------------- */

struct folder {
    char **paths; /* full storage paths */
    uint64_t *sizes;
    size_t n;
};

static int on_folder_object(void *ctx, const struct storage_info *info)
{
    struct folder *f = ctx;
    f->paths = xrealloc(f->paths, (f->n + 1) * sizeof(*f->paths));
    f->sizes = xrealloc(f->sizes, (f->n + 1) * sizeof(*f->sizes));
    f->paths[f->n] = xstrdup(info->path);
    f->sizes[f->n++] = info->size;
    return 0;
}

static void folder_free(struct folder *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->paths[i]);
    free(f->paths);
    free(f->sizes);
}

/* Remove backups/<label>/: manifest.json first. *bytes += what was there. */
static int remove_backup(struct expire *e, const char *label, uint64_t *bytes)
{
    struct storage *s = repo_storage(e->r);
    char *prefix = xasprintf("%s/backups/%s/", e->cluster, label);
    char *manifest = xasprintf("%smanifest.json", prefix);
    struct folder f = {0};
    int rc = storage_list(s, prefix, on_folder_object, &f);

    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < f.n; i++)
        *bytes += f.sizes[i];
    if (e->dry_run)
        goto out;
    if ((rc = storage_remove(s, manifest)) < 0)
        goto out;
    for (size_t i = 0; i < f.n && rc == 0; i++) {
        if (strcmp(f.paths[i], manifest) != 0)
            rc = storage_remove(s, f.paths[i]);
    }
out:
    if (rc < 0)
        err_context("while removing backup \"%s\"", label);
    folder_free(&f);
    free(manifest);
    free(prefix);
    return rc;
}

/* --- WAL ---------------------------------------------------------------------------- */

struct wal_prune {
    struct expire *e;
    size_t prefix_len;
    uint64_t floor; /* segments below it go */
    struct folder doomed;
    uint64_t segments, partials, indexes, bytes;
};

static int on_wal_object(void *ctx, const struct storage_info *info)
{
    struct wal_prune *w = ctx;
    const char *rel = info->path + w->prefix_len; /* "<TLI>/<name>" or "<TLI>.history" */
    const char *slash = strchr(rel, '/');
    if (!slash || slash - rel != 8)
        return 0; /* history files stay */
    const char *name = slash + 1;
    char base[WAL_NAME_BUFLEN];
    timeline_t tli;
    uint64_t segno;
    if (strlen(name) < 24)
        return 0;
    snprintf(base, sizeof(base), "%.24s", name);
    if (!wal_is_segment_name(base) ||
        wal_segment_parse(base, repo_identity(w->e->r)->seg_size, &tli, &segno) < 0) {
        err_clear();
        return 0;
    }
    const char *suffix = name + 24;
    if (segno >= w->floor)
        return 0;
    if (!*suffix)
        w->segments++;
    else if (!strcmp(suffix, ".partial"))
        w->partials++;
    else if (!strcmp(suffix, ".idx") || !strcmp(suffix, ".partial.idx"))
        w->indexes++;
    else
        return 0;
    w->bytes += info->size;
    return on_folder_object(&w->doomed, info);
}

static int prune_wal(struct expire *e, timeline_t floor_tli, uint64_t floor_segno)
{
    char *prefix = xasprintf("%s/wal/", e->cluster);
    struct wal_prune w = {.e = e, .prefix_len = strlen(prefix), .floor = floor_segno};
    int rc = storage_list(repo_storage(e->r), prefix, on_wal_object, &w);
    char floor_name[WAL_NAME_BUFLEN];

    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    /* Segments before their time index: a segment is never left without its index
     * while its index is gone, and an index alone is harmless. */
    for (size_t i = 0; rc == 0 && !e->dry_run && i < w.doomed.n; i++)
        rc = storage_remove(repo_storage(e->r), w.doomed.paths[i]);
    if (rc < 0)
        err_context("while removing WAL older than the oldest kept backup");
    wal_segment_name(floor_tli, floor_segno, repo_identity(e->r)->seg_size, floor_name);
    json_object_set_new(e->out, "wal",
                        json_pack("{s:s, s:I, s:I, s:I, s:I}", "before", floor_name, "segments",
                                  (json_int_t)w.segments, "partials", (json_int_t)w.partials,
                                  "time_indexes", (json_int_t)w.indexes, "bytes",
                                  (json_int_t)w.bytes));
    folder_free(&w.doomed);
    free(prefix);
    return rc;
}

/* --- chunks ------------------------------------------------------------------------- */

static int mark_file(void *arg, const struct manifest_file *f)
{
    for (size_t k = 0; k < f->n_chunks; k++)
        chunkset_add(arg, f->chunks + k * SHA256_LEN);
    return 0;
}

struct sweep {
    struct chunkset *marked;
    struct folder doomed; /* chunk names */
    uint64_t kept, removed, bytes;
};

static int on_chunk(void *ctx, const char *name, uint64_t stored_size)
{
    struct sweep *sw = ctx;
    uint8_t raw[SHA256_LEN];
    if (hex_decode(name, raw, SHA256_LEN) < 0) {
        err_clear();
        return 0;
    }
    if (chunkset_has(sw->marked, raw)) {
        sw->kept++;
        return 0;
    }
    sw->removed++;
    sw->bytes += stored_size;
    struct storage_info info = {.path = name, .size = stored_size};
    return on_folder_object(&sw->doomed, &info);
}

/* Why the WAL and the chunks cannot be touched now (a malloc'd sentence: a backup is
 * running), or NULL. */
static char *running_backup(struct expire *e, int *rc)
{
    struct repo_marker *m = NULL;
    size_t n = 0;
    char *why = NULL;
    int64_t now_us = time_now_us();
    if ((*rc = repo_markers_list(e->r, &m, &n)) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].label)
            continue; /* expire's: ours, or another expire's */
        if (m[i].beat_us > now_us + (int64_t)REPO_MARKER_BEAT_S * 1000000)
            log_warn("repository \"%s\": the running marker of backup \"%s\" is dated %lld s "
                     "ahead of this host's clock: the clocks disagree (it counts as fresh)",
                     repo_name(e->r), m[i].label, (long long)((m[i].beat_us - now_us) / 1000000));
        if (m[i].stale) {
            log_warn("repository \"%s\": backup \"%s\" left a running marker not refreshed for "
                     "%lld s (limit %d s); %s",
                     repo_name(e->r), m[i].label, (long long)m[i].age_s, REPO_MARKER_STALE_S,
                     e->dry_run ? "ignoring it" : "removing it");
            /* Were its writer only stopped, it writes the marker again when it wakes, and
             * checks its chunks before its manifest (backup/run.c). */
            if (!e->dry_run && repo_marker_remove(e->r, m[i].label) < 0) {
                log_warn("repository \"%s\": %s", repo_name(e->r), err_message());
                err_clear();
            }
        } else if (!why) {
            why = xasprintf("backup \"%s\" is running (its marker refreshed %lld s ago, pid %ld "
                            "on \"%s\")",
                            m[i].label, (long long)m[i].age_s, m[i].pid, m[i].host);
        }
    }
    repo_markers_free(m, n);
    return why;
}

/* expired: labels removed (or, dry run, to be removed): not marked. busy: why the sweep
 * cannot run (a backup is running), or NULL. hb: expire's marker (NULL: dry run).
 * Long: mark every kept backup's chunks, list the stored ones, remove the unmarked under
 * the marker's lease, report; the steps share the marked set and why the sweep was
 * skipped.
 */
static int sweep_chunks(struct expire *e, char **expired, size_t nexpired, const char *busy,
                        struct repo_heartbeat *hb)
{
    struct sweep sw = {.marked = chunkset_new()};
    struct ops_backup *list = NULL;
    size_t n = 0;
    char *skipped = busy ? xstrdup(busy) : NULL;
    const char *stopped = NULL;
    uint64_t removed = 0, removed_bytes = 0;
    int rc = 0;

    if (skipped)
        goto out;
    if ((rc = ops_backup_scan(e->r, e->cluster, &list, &n)) < 0)
        goto out;
    for (size_t i = 0; i < n && !skipped; i++) {
        bool gone = false;
        for (size_t k = 0; k < nexpired; k++)
            gone |= strcmp(expired[k], list[i].label) == 0;
        if (gone || !list[i].complete)
            continue;
        if (!list[i].readable) {
            skipped = xasprintf("the manifest of backup \"%s\" cannot be read", list[i].label);
            break;
        }
        if (ops_manifest_read(e->r, list[i].label, mark_file, sw.marked) < 0) {
            char *text = cli_error_line(false);
            skipped =
                xasprintf("the manifest of backup \"%s\" cannot be read: %s", list[i].label, text);
            free(text);
        }
    }
    if (skipped)
        goto out;
    rc = repo_chunk_list(e->r, on_chunk, &sw);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    for (size_t i = 0; rc == 0 && !e->dry_run && i < sw.doomed.n; i++) {
        /* A backup that started while this marker looked stale lists chunks this sweep
         * is about to remove: stop before the lease runs out (repo.h, running markers). */
        if (hb && !repo_heartbeat_held(hb)) {
            stopped = "expire's own running marker went without a refresh for too long "
                      "(was the process stopped?)";
            break;
        }
        char path[96];
        if ((rc = repo_chunk_path(sw.doomed.paths[i], path, sizeof(path))) == 0) {
            char *full = xasprintf("%s/%s", e->cluster, path);
            rc = storage_remove(repo_storage(e->r), full);
            free(full);
        }
        if (rc == 0) {
            removed++;
            removed_bytes += sw.doomed.sizes[i];
        }
    }
    if (rc < 0)
        err_context("while sweeping unreferenced chunks");
    if (e->dry_run) {
        removed = sw.removed;
        removed_bytes = sw.bytes;
    }
out:
    if (skipped)
        log_warn("repository \"%s\": chunk sweep skipped: %s", repo_name(e->r), skipped);
    if (stopped)
        log_warn("repository \"%s\": chunk sweep stopped after %llu of %llu chunks: %s; the next "
                 "expire goes on",
                 repo_name(e->r), (unsigned long long)removed, (unsigned long long)sw.removed,
                 stopped);
    json_object_set_new(e->out, "chunks",
                        json_pack("{s:I, s:I, s:I, s:s?, s:s?}", "referenced", (json_int_t)sw.kept,
                                  "removed", (json_int_t)removed, "bytes",
                                  (json_int_t)removed_bytes, "skipped", skipped, "stopped",
                                  stopped));
    free(skipped);
    ops_backup_scan_free(list, n);
    folder_free(&sw.doomed);
    chunkset_free(sw.marked);
    return rc;
}

/* --- data keys --------------------------------------------------------------------- */

/* How long after a key was replaced expire leaves it alone, whatever its use: a process
 * that opened the repository before writes under the key it holds until it looks at
 * repo.json again, at most 5 minutes before a write (repo_recheck_keys). */
#define KEY_GRACE_S 3600

static int drop_keys(struct expire *e, int64_t now_us, const char *busy)
{
    size_t n;
    const struct repo_data_key *list = repo_data_keys(e->r, &n);
    struct repo_data_key *keys = NULL;
    uint32_t *doomed = NULL;
    size_t ndoomed = 0, candidates = 0;
    json_t *dropped = json_array(), *kept = json_array();
    const char *grace_env = getenv("PGARK_TEST_KEY_GRACE_S"); /* tests: a shorter grace */
    int64_t grace_us = (grace_env ? atoll(grace_env) : KEY_GRACE_S) * INT64_C(1000000);
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        if (list[i].id != 0 && !list[i].current)
            candidates++;
    if (!candidates)
        goto out;
    if (busy) {
        log_warn("repository \"%s\": data keys not looked at: %s", repo_name(e->r), busy);
        json_object_set_new(e->out, "data_keys", json_pack("{s:s}", "skipped", busy));
        goto out;
    }
    keys = xmalloc(n * sizeof(*keys));
    memcpy(keys, list, n * sizeof(*keys));
    if ((rc = repo_key_usage(e->r, keys, n, true, NULL, NULL)) < 0)
        goto out;
    doomed = xcalloc(n, sizeof(*doomed));
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (keys[i].id == 0 || keys[i].current)
            continue;
        if (keys[i].objects)
            why = "objects are encrypted under it";
        else if (!keys[i].retired_us || now_us - keys[i].retired_us < grace_us)
            why = "replaced too recently: a process opened before may still write under it";
        if (why) {
            json_array_append_new(
                kept, json_pack("{s:I, s:s}", "id", (json_int_t)keys[i].id, "reason", why));
            continue;
        }
        doomed[ndoomed++] = keys[i].id;
        json_array_append_new(dropped, json_integer((json_int_t)keys[i].id));
    }
    if (ndoomed && !e->dry_run) {
        struct repo_options ro;
        if ((rc = cli_repo_options(e->cfg, e->cl, CLI_REPO_READ, &ro)) < 0 ||
            (rc = repo_drop_data_keys(repo_storage(e->r), &ro, doomed, ndoomed)) < 0)
            goto out;
    }
    for (size_t i = 0; i < ndoomed; i++)
        log_info("repository \"%s\": %s data key %" PRIu32 ": no object uses it", repo_name(e->r),
                 e->dry_run ? "would drop" : "dropped", doomed[i]);
    json_object_set_new(e->out, "data_keys",
                        json_pack("{s:O, s:O}", "dropped", dropped, "kept", kept));
out:
    json_decref(dropped);
    json_decref(kept);
    free(doomed);
    free(keys);
    return rc;
}

/* --- one repository ----------------------------------------------------------------- */

static int sweep_leftovers(struct expire *e, int64_t now_us)
{
    char *prefix = xasprintf("%s/", e->cluster);
    uint64_t n = 0, bytes = 0;
    int rc = storage_sweep(repo_storage(e->r), prefix, now_us - (int64_t)LEFTOVER_AGE_S * 1000000,
                           e->dry_run, &n, &bytes);
    if (rc < 0)
        err_context("while removing the leftovers of writes that never ended");
    else
        json_object_set_new(e->out, "leftovers",
                            json_pack("{s:I,s:I,s:i}", "files", (json_int_t)n, "bytes",
                                      (json_int_t)bytes, "older_than_s", LEFTOVER_AGE_S));
    free(prefix);
    return rc;
}

/* Long: one repository's expiry in its order (announce, look for running backups, apply
 * retention, remove the expired and the incomplete, prune the WAL below the oldest kept
 * backup, sweep chunks, drop unused keys, remove leftovers); the loop over the backups
 * builds the lists of kept and removed and the WAL floor that the later steps use.
 */
static int expire_repo(struct expire *e, int64_t now_us, int beat_ms)
{
    struct ops_backup *list = NULL;
    struct retention_backup *rb = NULL;
    struct repo_heartbeat *hb = NULL;
    char **expired = NULL, *busy = NULL;
    size_t n = 0, nrb = 0, nexpired = 0;
    uint64_t backup_bytes = 0;
    json_t *kept = json_array(), *gone = json_array(), *incomplete = json_array();
    bool have_floor = false;
    timeline_t floor_tli = 0;
    uint64_t floor_segno = 0, seg_size = repo_identity(e->r)->seg_size;
    int rc = 0;

    /* Announce first, then look for running backups (repo.h, running markers): a backup
     * starting from now on waits until this expire is done with the repository. */
    if (!e->dry_run && !(hb = repo_heartbeat_start(&e->r, 1, NULL, beat_ms, 0))) {
        rc = err_code();
        goto out;
    }
    busy = running_backup(e, &rc);
    if (rc < 0 || (rc = ops_backup_scan(e->r, e->cluster, &list, &n)) < 0)
        goto out;
    rb = xcalloc(n + 1, sizeof(*rb));
    for (size_t i = 0; i < n; i++) {
        if (list[i].complete && list[i].readable)
            rb[nrb++] = (struct retention_backup){list[i].b.header.stop_time, list[i].label, false};
    }
    retention_apply(rb, nrb, e->cl->retention.full, e->cl->retention.window_ms, now_us);
    expired = xcalloc(n + 1, sizeof(*expired));
    for (size_t i = 0, k = 0; i < n; i++) {
        struct ops_backup *b = &list[i];
        if (!b->complete) {
            /* Died before its manifest.json, unless it is being written now. */
            if (b->running)
                continue;
            if ((rc = remove_backup(e, b->label, &backup_bytes)) < 0)
                goto out;
            json_array_append_new(incomplete, json_string(b->label));
            continue;
        }
        if (!b->readable) {
            log_warn("repository \"%s\": keeping backup \"%s\": %s", repo_name(e->r), b->label,
                     b->error);
            json_array_append_new(kept, json_string(b->label));
            continue;
        }
        bool keep = rb[k++].keep;
        if (keep) {
            json_array_append_new(kept, json_string(b->label));
            uint64_t segno = lsn_to_segno(b->b.header.start_lsn, seg_size);
            if (!have_floor || segno < floor_segno) {
                have_floor = true;
                floor_segno = segno;
                floor_tli = b->b.header.timeline;
            }
            continue;
        }
        if ((rc = remove_backup(e, b->label, &backup_bytes)) < 0)
            goto out;
        json_array_append_new(gone, json_string(b->label));
        expired[nexpired++] = b->label;
    }
    json_object_set_new(e->out, "kept", kept);
    json_object_set_new(e->out, "expired", gone);
    json_object_set_new(e->out, "incomplete_removed", incomplete);
    json_object_set_new(e->out, "backup_bytes", json_integer((json_int_t)backup_bytes));
    kept = gone = incomplete = NULL;
    /* Without a kept backup nothing anchors the WAL: it stays. A running backup may have
     * started before the oldest kept one (its WAL is older): it stays too. */
    if (have_floor && busy) {
        log_warn("repository \"%s\": WAL pruning skipped: %s", repo_name(e->r), busy);
        json_object_set_new(e->out, "wal", json_pack("{s:s}", "skipped", busy));
    } else if (have_floor && (rc = prune_wal(e, floor_tli, floor_segno)) < 0) {
        goto out;
    }
    if ((rc = sweep_chunks(e, expired, nexpired, busy, hb)) < 0)
        goto out;
    if ((rc = drop_keys(e, now_us, busy)) < 0)
        goto out;
    rc = sweep_leftovers(e, now_us);
out:
    repo_heartbeat_stop(hb); /* keeps the error slot */
    json_decref(kept);
    json_decref(gone);
    json_decref(incomplete);
    free(busy);
    free(expired);
    free(rb);
    ops_backup_scan_free(list, n);
    return rc;
}

/* --- output ------------------------------------------------------------------------- */

static void print_labels(const char *what, json_t *arr)
{
    size_t i;
    json_t *l;
    if (!json_array_size(arr))
        return;
    printf("  %s:", what);
    json_array_foreach(arr, i, l) printf(" %s", json_string_value(l));
    printf("\n");
}

static void print_human(json_t *root)
{
    bool dry = json_is_true(json_object_get(root, "dry_run"));
    const char *verb = dry ? "would remove" : "removed";
    char a[32];
    size_t i;
    json_t *r;

    json_array_foreach(json_object_get(root, "repositories"), i, r)
    {
        printf("repository \"%s\"%s\n", json_string_value(json_object_get(r, "name")),
               dry ? " (dry run: nothing removed)" : "");
        const char *err = json_string_value(json_object_get(r, "error"));
        print_labels("kept", json_object_get(r, "kept"));
        json_t *ex = json_object_get(r, "expired");
        json_t *inc = json_object_get(r, "incomplete_removed");
        print_labels(dry ? "to expire" : "expired", ex);
        print_labels(dry ? "incomplete, to remove" : "incomplete, removed", inc);
        if (ex || inc)
            printf("  %s %zu backups (%s)\n", verb, json_array_size(ex) + json_array_size(inc),
                   size_format((uint64_t)json_integer_value(json_object_get(r, "backup_bytes")), a,
                               sizeof(a)));
        json_t *w = json_object_get(r, "wal");
        if (w && json_is_string(json_object_get(w, "skipped")))
            printf("  WAL pruning skipped: %s\n", json_string_value(json_object_get(w, "skipped")));
        else if (w)
            printf("  %s %lld WAL segments, %lld partial, %lld time indexes before %s (%s)\n", verb,
                   (long long)json_integer_value(json_object_get(w, "segments")),
                   (long long)json_integer_value(json_object_get(w, "partials")),
                   (long long)json_integer_value(json_object_get(w, "time_indexes")),
                   json_string_value(json_object_get(w, "before")),
                   size_format((uint64_t)json_integer_value(json_object_get(w, "bytes")), a,
                               sizeof(a)));
        json_t *c = json_object_get(r, "chunks");
        if (c && json_is_string(json_object_get(c, "skipped")))
            printf("  chunk sweep skipped: %s\n", json_string_value(json_object_get(c, "skipped")));
        else if (c && json_is_string(json_object_get(c, "stopped")))
            printf("  chunk sweep stopped after %lld chunks: %s\n",
                   (long long)json_integer_value(json_object_get(c, "removed")),
                   json_string_value(json_object_get(c, "stopped")));
        else if (c)
            printf("  %s %lld unreferenced chunks (%s); %lld referenced\n", verb,
                   (long long)json_integer_value(json_object_get(c, "removed")),
                   size_format((uint64_t)json_integer_value(json_object_get(c, "bytes")), a,
                               sizeof(a)),
                   (long long)json_integer_value(json_object_get(c, "referenced")));
        json_t *k = json_object_get(r, "data_keys");
        if (k && json_is_string(json_object_get(k, "skipped")))
            printf("  data keys not looked at: %s\n",
                   json_string_value(json_object_get(k, "skipped")));
        json_t *one;
        size_t j;
        json_array_foreach(json_object_get(k, "dropped"), j, one)
            printf("  %s data key %lld: no object uses it\n", dry ? "would drop" : "dropped",
                   (long long)json_integer_value(one));
        json_array_foreach(json_object_get(k, "kept"), j, one) printf(
            "  kept data key %lld: %s\n", (long long)json_integer_value(json_object_get(one, "id")),
            json_string_value(json_object_get(one, "reason")));
        json_t *lo = json_object_get(r, "leftovers");
        if (json_integer_value(json_object_get(lo, "files")) > 0)
            printf("  %s %lld temporary files of writes that never ended (%s)\n", verb,
                   (long long)json_integer_value(json_object_get(lo, "files")),
                   size_format((uint64_t)json_integer_value(json_object_get(lo, "bytes")), a,
                               sizeof(a)));
        if (err)
            printf("  error: %s\n", err);
    }
}

/* --- the command -------------------------------------------------------------------- */

/* Long: the options, then each repository expired (expire_repo) and its result put into
 * the report; the work itself is expire_repo's.
 */
int cmd_expire(struct cli_context *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"dry-run", no_argument, NULL, 'n'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    bool dry_run = false, as_json = false;
    int opt, rc = 0;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'n':
            dry_run = true;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            printf("usage: pgark expire [--dry-run] [--json]\n");
            return 0;
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for expire", argv[optind - 1]);
            err_hint("run \"pgark help expire\"");
            return 2;
        }
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for expire", argv[optind]);
        return 2;
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);
    if (cl->retention.full <= 0 && cl->retention.window_ms <= 0) {
        err_set(ERR_CONFIG, "cluster \"%s\" has no retention: expire would keep everything",
                cl->name);
        err_hint("set retention: { full: N } and/or { window: D } for the cluster");
        return 2;
    }

    int64_t now_us = time_now_us();
    const char *beat = getenv("PGARK_TEST_HEARTBEAT_MS"); /* tests: another interval */
    json_t *root = json_pack("{s:s, s:b}", "cluster", cl->name, "dry_run", dry_run);
    json_object_set_new(
        root, "retention",
        json_pack("{s:o, s:o}", "full",
                  cl->retention.full > 0 ? json_integer(cl->retention.full) : json_null(),
                  "window_seconds",
                  cl->retention.window_ms > 0 ? json_integer(cl->retention.window_ms / 1000)
                                              : json_null()));
    json_t *repos = json_array();
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *cr = config_cluster_repo(cfg, cl, i);
        struct expire e = {.dry_run = dry_run,
                           .cfg = cfg,
                           .cl = cl,
                           .cluster = cl->name,
                           .out = json_pack("{s:s}", "name", cr->name)};
        struct cli_repo opened;
        int one = -1;
        if (cli_repo_open(cfg, cl, cr, CLI_REPO_READ, NULL, &opened) == 0) {
            e.r = opened.repo;
            one = expire_repo(&e, now_us, beat ? atoi(beat) : 0);
        }
        if (one < 0) {
            err_context("while expiring repository \"%s\"", cr->name);
            cli_notify_error(cfg, cl, CONFIG_EVENT_EXPIRE_FAILED, "expire");
            char *text = err_format();
            json_object_set_new(e.out, "error", json_string(text));
            if (err_hint_text())
                json_object_set_new(e.out, "hint", json_string(err_hint_text()));
            free(text);
            err_print(); /* with its hint, as every command says it */
            rc = 1;
        }
        cli_repo_close(&opened);
        json_array_append_new(repos, e.out);
    }
    json_object_set_new(root, "repositories", repos);
    if (as_json) {
        cli_print_json(root);
    } else {
        print_human(root);
    }
    json_decref(root);
    return rc;
}
