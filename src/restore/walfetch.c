/*
 * walfetch.c — `pgark wal-fetch [--repo NAME] SEGMENT DEST`, the restore_command (%f %p);
 * with --repo (written by `restore --repo`) only that repository is read.
 *
 * The server runs it from the data directory for every file it wants and treats exit
 * 0 as "delivered", 1-125 as "not available" (PROTOCOL.md §3.1), after which it tries
 * elsewhere or ends recovery; an exit status above 125 stops its startup instead. So
 * "not available" is said only when every repository answered that it does not have
 * the file: a repository that cannot be reached, a copy damaged everywhere, a broken
 * configuration, a DEST that cannot be written or a libcurl that cannot be loaded
 * exits WALFETCH_EXIT_ABORT, because the server would otherwise end recovery early
 * and, restoring to "latest", promote a new timeline short of the WAL that exists.
 * The server stops with the error in its log; once the cause is fixed, starting it
 * again resumes recovery. DEST appears only complete and verified: written under a
 * temporary name in DEST's directory, renamed.
 * It is not fsynced here: the server keeps (and fsyncs) what it is handed, and after a
 * crash it asks again. The read-ahead's copies are written out before they are
 * published, as that fsync runs in the server's startup process and would stall replay.
 * Repositories are tried local tier first; a damaged copy in one is reported and the
 * next one tried. The last segment of the newest timeline exists only as the receiver's
 * .partial until it completes: it is served zero-padded to the segment size, so that a
 * restore replays up to the last commit the receiver got (the zeros read as the end of
 * WAL). After a segment is served, a detached process reads the next ones ahead into a
 * cache beside DEST (prefetch.c). Both fetch through walobject.c, which owns the copy
 * of one object into a file; prefetch.c owns the read-ahead policy.
 */
#include "restore_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/dl.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Above 125: PostgreSQL stops its startup rather than take the file as missing. */
#define WALFETCH_EXIT_ABORT 255

/* Does any repo have the history file of tli (a newer timeline than the partial's)? */
static bool history_exists(struct cli_repos *set, timeline_t tli)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/wal/%08X.history", set->cluster, tli);
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (!r) {
            err_clear();
            continue;
        }
        int e = storage_exists(repo_storage(r), path);
        if (e > 0)
            return true;
        if (e < 0)
            err_clear();
    }
    return false;
}

static uint64_t seg_size_of(struct cli_repos *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (r)
            return repo_identity(r)->seg_size;
        /* said with its hint, as every command says a repository it cannot open */
        err_context("while opening repository \"%s\"", set->r[i].conf->name);
        err_print_warn();
    }
    return 0;
}

/* Segment size from the long header of a segment file (xlp_seg_size). */
static uint64_t seg_size_from_file(const char *path)
{
    uint8_t h[40];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, h, sizeof(h), 0);
    close(fd);
    if (n != (ssize_t)sizeof(h))
        return 0;
    uint64_t v =
        (uint64_t)h[32] | (uint64_t)h[33] << 8 | (uint64_t)h[34] << 16 | (uint64_t)h[35] << 24;
    return wal_seg_size_valid(v) ? v : 0;
}

/* cache_dir: the read-ahead's, NULL for none. */
static int fetch_segment(struct cli_repos *set, const char *name, const char *dest,
                         const char *cache_dir, unsigned depth)
{
    uint64_t seg_size = 0;
    timeline_t tli;
    uint64_t segno;
    char path[96], what[96];

    /* Cached, or being fetched by the read-ahead: fetching it here too would only
     * race it for the CPU and the disk (at the start of a replay, when the server
     * asks for segments faster than the read-ahead has warmed up). */
    bool waited = false;
    if (cache_dir && (prefetch_consume(cache_dir, name, dest) > 0 ||
                      (waited = prefetch_await(cache_dir, name, dest) > 0))) {
        seg_size = seg_size_from_file(dest);
        if (seg_size && wal_segment_parse(name, seg_size, &tli, &segno) == 0)
            prefetch_spawn(set, cache_dir, tli, segno, seg_size, depth);
        err_clear();
        log_detail("restored segment %s from the read-ahead cache%s", name,
                   waited ? ", once the read-ahead had fetched it" : "");
        return 0;
    }
    seg_size = seg_size_of(set);
    if (!seg_size) {
        err_set(ERR_RUNTIME, "no repository of cluster \"%s\" could be opened", set->cluster);
        return WALFETCH_EXIT_ABORT;
    }
    if (wal_segment_parse(name, seg_size, &tli, &segno) < 0) {
        err_clear();
        log_info("\"%s\" is not a WAL segment of this cluster: not found", name);
        return 1;
    }
    snprintf(what, sizeof(what), "segment %s", name);
    repo_wal_path(tli, name, false, path, sizeof(path));
    /* The read-ahead of the segments after this one starts first: the server asks for
     * the next one as soon as it has replayed this one, fast at the start of a replay,
     * and it sits idle while this one is fetched. */
    if (cache_dir)
        prefetch_spawn(set, cache_dir, tli, segno, seg_size, depth);
    int rc = walobject_fetch(set, path, dest, seg_size, 0, what);
    if (rc < 0)
        return WALFETCH_EXIT_ABORT;
    if (rc > 0)
        return 0;
    /* Not archived complete: the receiver's partial copy, if this is the newest
     * timeline (an older timeline's partial ends in WAL that the newer one replaced). */
    if (!history_exists(set, tli + 1)) {
        snprintf(what, sizeof(what), "partial segment %s", name);
        repo_wal_path(tli, name, true, path, sizeof(path));
        rc = walobject_fetch(set, path, dest, seg_size, WALOBJECT_PAD, what);
        if (rc < 0)
            return WALFETCH_EXIT_ABORT;
        if (rc > 0) {
            log_info("restored partial segment %s, zero-padded: the newest WAL the receiver "
                     "shipped",
                     name);
            return 0;
        }
    }
    log_info("segment %s not found in any repository", name);
    return 1;
}

int cmd_wal_fetch(struct cli_context *ctx, int argc, char **argv)
{
    struct cli_repos set;
    memset(&set, 0, sizeof(set));
    int rc = 1;
    const char *only = NULL;
    /* libcurl, loaded when an S3 repository is first read, may be missing: that is no
     * "not available" either. */
    dl_set_failure_status(WALFETCH_EXIT_ABORT);
    /* wal-fetch [--repo NAME] SEGMENT DEST */
    if (argc == 5 && strcmp(argv[1], "--repo") == 0) {
        only = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc != 3) {
        err_set(ERR_USAGE, "usage: pgark wal-fetch [--repo NAME] SEGMENT DEST");
        err_hint("as restore_command: wal-fetch \"%%f\" \"%%p\"");
        return WALFETCH_EXIT_ABORT;
    }
    const char *name = argv[1], *dest = argv[2];
    bool segment = wal_is_segment_name(name), history = wal_is_history_name(name);
    if (!segment && !history) {
        log_info("\"%s\" is neither a WAL segment nor a timeline history file: not found", name);
        return 1;
    }
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        return WALFETCH_EXIT_ABORT;
    const struct config_cluster *cl = config_cluster_find(cfg, ctx->cluster_name);
    if (!cl || cli_repos_init(&set, cfg, cl, only) < 0)
        return WALFETCH_EXIT_ABORT;
    /* PostgreSQL asks for files that do not exist at the start and the end of every
     * recovery (history files, the segment after the last): those answers need no key. */
    set.defer_key = true;
    if (segment) {
        char *cache = prefetch_cache_dir(dest);
        /* Segments another user could have put there are not served: without the
         * read-ahead, every segment comes from the repositories. */
        bool own = privfs_check_dir(cache, "read-ahead cache directory") == 0;
        if (!own) {
            log_warn("%s; the read-ahead is off", err_message());
            if (err_hint_text())
                log_warn("hint: %s", err_hint_text());
            err_clear();
        }
        rc =
            fetch_segment(&set, name, dest, own ? cache : NULL, (unsigned)cl->wal_fetch_read_ahead);
        free(cache);
    } else {
        char path[64], what[64];
        snprintf(path, sizeof(path), "wal/%s", name);
        snprintf(what, sizeof(what), "history file %s", name);
        int found = walobject_fetch(&set, path, dest, 0, 0, what);
        if (found == 0)
            log_info("history file %s not found in any repository", name);
        rc = found > 0 ? 0 : found == 0 ? 1 : WALFETCH_EXIT_ABORT;
    }
    cli_repos_free(&set);
    return rc;
}
