/*
 * restore.c — `pgark restore`: choose a backup for the target, check everything that
 * could make the restore refuse (a running server, a non-empty directory, a target
 * outside what the repositories can reach, a tablespace directory in the way) before
 * touching a single file, then lay the backup down, leave the server's backup_manifest,
 * write recovery.signal and the recovery settings, and optionally start the server.
 *
 * cmd_restore runs the phases below in order over one struct restore_run; each returns
 * the exit code (0: go on). The command line is args.c's, the window window.c's, the
 * places besides the data directory places.c's, the files after the data recovery.c's,
 * laying the files down writer.c's and starting the server start.c's.
 */
#include "restore_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- the command ------------------------------------------------------------------------ */

/* What one restore holds from the command line to the end. */
struct restore_run {
    struct cli_context *ctx;
    struct restore_args a;
    const struct config *cfg;
    const struct config_cluster *cl;
    struct cli_repos set;
    struct catalog cat;
    struct timeline_history *hist;
    timeline_t tli;
    bool nonempty; /* the data directory holds anything */
    const struct catalog_entry *chosen;
    struct restore_places places;
    struct repo *r;     /* chosen's repository */
    struct repo **alts; /* other repositories, for damaged chunks */
    size_t nalts;
    struct chunkset *held;    /* the chunks r holds (the chunk check) */
    struct chunkset *bad;     /* chunks in no repository, or sound in none */
    struct chunkcache *cache; /* chunks named more than once */
    struct path_set *seen;
    struct pgbin bin;
    char *config_abs;
    char target[128]; /* the target, described */
    int64_t t0, t_files, t_end;
    struct writer_stats st;
};

static int threads_for(const struct config_repo *rc)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    /* Twice the cores on posix too: files are written O_DIRECT and fsynced one by one,
     * and a thread waiting for the disk leaves its core to another. */
    n *= 2;
    /* Remote storage waits on the network: more requests in flight than cores. */
    if (rc->type != CONFIG_REPO_POSIX)
        n = n * 2 > rc->concurrency ? n * 2 : rc->concurrency;
    return n > 64 ? 64 : (int)n;
}

/* Before anything is read from a repository: no server running on the directory, and the
 * directory empty unless --delta or --force. */
static int check_pgdata(struct restore_run *x)
{
    const struct restore_args *a = &x->a;
    if (a->start && cli_refuse_server_env(x->cfg, "--start",
                                          "restore without --start and start the server with "
                                          "the environment its restore_command needs") < 0)
        return 2;
    if (pgdata_check_postmaster(a->pgdata) < 0)
        return 2;
    int nonempty = pgdata_nonempty(a->pgdata);
    if (nonempty < 0)
        return 1;
    x->nonempty = nonempty > 0;
    if (nonempty && !a->delta && !a->force) {
        err_set(ERR_USAGE, "data directory \"%s\" is not empty", a->pgdata);
        err_hint("give --delta to reuse the files that match the backup, or --force to "
                 "overwrite it; nothing was changed");
        return 2;
    }
    return 0;
}

/* The backups of every repository, the timeline to recover to, and the target inside
 * what they reach. */
static int load_catalog(struct restore_run *x)
{
    struct restore_args *a = &x->a;
    if (catalog_load(&x->set, &x->cat) < 0) {
        int rc = 1;
        if (a->backup && err_kind() == ERR_NOT_FOUND) {
            char *why = err_format();
            err_clear();
            if (restore_refuse_config_only(&x->set, a->backup) < 0)
                rc = 2;
            else
                err_set(ERR_NOT_FOUND, "%s", why);
            free(why);
        }
        return rc;
    }
    x->tli = a->target.timeline;
    if (!x->tli) {
        catalog_newest_timeline(&x->set, &x->tli);
        for (size_t i = 0; i < x->cat.n; i++) {
            if (x->cat.e[i].b.timeline > x->tli)
                x->tli = x->cat.e[i].b.timeline;
        }
    }
    if (catalog_history(&x->set, x->tli, &x->hist) < 0)
        return 1;
    if (restore_check_window(a, &x->set, &x->cat, x->tli, x->hist) < 0 ||
        restore_check_reach(a, &x->set, x->tli) < 0)
        return err_kind() == ERR_USAGE ? 2 : err_kind() == ERR_INTEGRITY ? 3 : 1;
    return 0;
}

/* --backup LABEL: that one, if it fits the target and leads to the timeline. */
static int choose_named(struct restore_run *x)
{
    const struct restore_args *a = &x->a;
    for (size_t i = 0; i < x->cat.n && !x->chosen; i++) {
        if (!strcmp(x->cat.e[i].b.label, a->backup))
            x->chosen = &x->cat.e[i];
    }
    if (!x->chosen && restore_refuse_config_only(&x->set, a->backup) < 0)
        return 2;
    if (!x->chosen) {
        err_set(ERR_USAGE, "no complete backup \"%s\" of cluster \"%s\"", a->backup, x->cl->name);
        err_hint("\"pgark info\" lists the backups");
        return 2;
    }
    char t[128];
    if (!restore_backup_fits(&x->chosen->b, &a->target)) {
        err_set(ERR_USAGE, "backup \"%s\" ends after the recovery target %s", a->backup,
                restore_target_describe(&a->target, t, sizeof(t)));
        return 2;
    }
    if (!restore_timeline_leads(x->chosen->b.timeline, x->chosen->b.stop_lsn, x->tli, x->hist)) {
        err_set(ERR_USAGE, "backup \"%s\" (timeline %u) does not lead to timeline %u", a->backup,
                x->chosen->b.timeline, x->tli);
        return 2;
    }
    return 0;
}

/* The backup: the one asked for, else the newest that fits. */
static int choose_backup(struct restore_run *x)
{
    if (x->a.backup)
        return choose_named(x);
    const struct catalog *cat = &x->cat;
    struct restore_backup *bs = xcalloc(cat->n, sizeof(*bs));
    for (size_t i = 0; i < cat->n; i++)
        bs[i] = cat->e[i].b;
    int k = restore_backup_pick(bs, cat->n, &x->a.target, x->tli, x->hist);
    free(bs);
    if (k < 0) {
        char t[128];
        err_set(ERR_USAGE,
                "no backup ends before the recovery target %s on a timeline "
                "leading to timeline %u",
                restore_target_describe(&x->a.target, t, sizeof(t)), x->tli);
        return 2;
    }
    /* The same label in several repos: the first in the local-first order. */
    x->chosen = &cat->e[k];
    for (size_t i = 0; i < cat->n; i++) {
        if (!strcmp(cat->e[i].b.label, x->chosen->b.label) && cat->e[i].repo < x->chosen->repo)
            x->chosen = &cat->e[i];
    }
    return 0;
}

/* chosen's repository, the server binaries for --start, the configuration's path for the
 * restore_command. */
static int open_chosen(struct restore_run *x)
{
    x->r = cli_repos_get(&x->set, x->chosen->repo);
    if (!x->r)
        return 1;
    /* The server that will start it must be of the backup's major. */
    if (x->a.start && pgbin_find(x->cl->pg_bindir, x->cl->name, repo_identity(x->r)->pg_major,
                                 "restore --start", &x->bin) < 0)
        return 2;
    const char *path = x->ctx->config_path ? x->ctx->config_path : config_default_path();
    x->config_abs = cli_absolute_path(path);
    char real[PATH_MAX];
    if (realpath(x->config_abs, real)) {
        free(x->config_abs);
        x->config_abs = xstrdup(real);
    }
    return 0;
}

/* The other repositories naming chunks as r does: a chunk damaged in r is read from
 * them. One that cannot be opened is left out (said at detail level). */
static void open_alts(struct restore_run *x)
{
    const uint8_t *key = repo_chunk_key(x->r);
    x->alts = xcalloc(x->set.n, sizeof(*x->alts));
    for (size_t i = 0; i < x->set.n; i++) {
        if (i == x->chosen->repo)
            continue;
        struct repo *o = cli_repos_get(&x->set, i);
        if (!o) {
            log_detail("repository \"%s\" cannot stand in for damaged chunks: %s",
                       x->set.r[i].conf->name, err_message());
            err_clear();
            continue;
        }
        const uint8_t *okey = repo_chunk_key(o);
        if (!key != !okey || (key && memcmp(key, okey, 32) != 0))
            continue;
        x->alts[x->nalts++] = o;
    }
}

/* Every entry checked before the first byte is written; with the chunk check, that every
 * chunk is in some repository too (one listing of r's chunks, a HEAD in the others for
 * each chunk r lacks). Then the files. */
static int lay_down(struct restore_run *x)
{
    const struct catalog_entry *chosen = x->chosen;
    struct writer_options wo = {.pgdata = x->a.pgdata,
                                .repo = x->r,
                                .alts = x->alts,
                                .nalts = x->nalts,
                                .threads = threads_for(x->set.r[chosen->repo].conf),
                                .delta = x->a.delta,
                                .progress = isatty(2) && !x->a.no_progress && !x->a.json,
                                .total_bytes = chosen->logical_bytes,
                                .ts_oid = chosen->ts_oid,
                                .ts_location = (const char *const *)chosen->ts_location,
                                .ts_dir = x->places.ts_dir,
                                .n_ts = chosen->n_ts,
                                .waldir = x->places.waldir,
                                .wal_link = x->places.wal_link,
                                .seen = x->seen};
    x->t_files = time_mono_us();
    uint8_t digest[SHA256_LEN];
    x->bad = chunkset_new();
    wo.bad_out = x->bad;
    x->cache = chunkcache_new(RESTORE_CACHE_BYTES);
    wo.cache = x->cache;
    if (!x->a.no_chunk_check) {
        x->held = chunkset_new();
        int e = repo_chunk_list(x->r, chunkset_add_listed, x->held);
        if (e == -ERR_NOT_FOUND)
            err_clear();
        else if (e < 0) {
            err_context("while listing the chunks of repository \"%s\"", repo_name(x->r));
            return 1;
        }
        wo.held = x->held;
    }
    /* A chunk damaged in the repository is an integrity problem (exit 3), as a refused
     * manifest is: drill tells a data problem from one that kept it from running. */
    int rc = writer_vet(&wo, chosen->b.label, digest);
    if (rc == 0 && x->held)
        log_detail("every chunk of backup \"%s\" is in a repository (%zu listed in \"%s\"; "
                   "%lld ms)",
                   chosen->b.label, chunkset_count(x->held), repo_name(x->r),
                   (long long)((time_mono_us() - x->t_files) / 1000));
    if (rc == 0)
        rc = writer_restore(&wo, chosen->b.label, digest, &x->st);
    if (rc < 0) {
        rc = err_kind() == ERR_INTEGRITY ? 3 : 1;
        if (chunkset_count(x->bad))
            restore_hint_intact(&x->set, &x->cat, chosen, x->bad, x->held);
    }
    return rc;
}

static void report_json(const struct restore_run *x)
{
    const struct writer_stats *st = &x->st;
    int64_t elapsed_ms = (x->t_end - x->t0) / 1000;
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "backup",
        x->chosen->b.label, "repository", repo_name(x->r), "pgdata", x->a.pgdata, "timeline",
        (int)x->tli, "target", x->target, "files", (json_int_t)st->files, "bytes",
        (json_int_t)st->bytes, "files_written", (json_int_t)st->files_written, "bytes_written",
        (json_int_t)st->bytes_written, "files_removed", (json_int_t)st->files_removed, "delta",
        x->a.delta, "elapsed_ms", (json_int_t)elapsed_ms);
    /* Where the time went: choosing the backup (catalog, window, checks), then vetting the
     * manifest and laying the files down (drill's RTO phases). */
    /* Chunks read from the repository, and references served from the cache of repeated
     * chunks instead. */
    json_object_set_new(o, "chunks_fetched", json_integer((json_int_t)st->chunks_fetched));
    json_object_set_new(o, "chunks_reused", json_integer((json_int_t)st->chunks_reused));
    json_object_set_new(o, "choose_ms", json_integer((json_int_t)((x->t_files - x->t0) / 1000)));
    json_object_set_new(o, "files_ms", json_integer((json_int_t)((x->t_end - x->t_files) / 1000)));
    char *text = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    printf("%s\n", text);
    free(text);
    json_decref(o);
}

static void report_text(const struct restore_run *x)
{
    const struct restore_args *a = &x->a;
    const struct writer_stats *st = &x->st;
    char sz[32], wsz[32], dur[32];
    size_format(st->bytes, sz, sizeof(sz));
    size_format(st->bytes_written, wsz, sizeof(wsz));
    duration_format((x->t_end - x->t0) / 1000, dur, sizeof(dur));
    printf("restored backup \"%s\" from repository \"%s\" into \"%s\": %llu files, %s "
           "in %s\n",
           x->chosen->b.label, repo_name(x->r), a->pgdata, (unsigned long long)st->files, sz, dur);
    if (x->seen)
        printf("%s: rewrote %llu files, %s; removed %llu files not in the backup\n",
               a->delta ? "delta" : "force", (unsigned long long)st->files_written, wsz,
               (unsigned long long)st->files_removed);
    printf("recovery target: %s (timeline %s)\n", x->target,
           a->target.timeline ? "as given" : "latest");
    if (!a->start)
        printf("next: start the server (pg_ctl -D \"%s\" start, or pgark restore ... --start "
               "--wait): %s\n",
               a->pgdata, restore_target_outcome(&a->target));
}

/* Everything that can refuse, before the first write. */
static int prepare(struct restore_run *x)
{
    int rc = check_pgdata(x);
    if (rc == 0)
        rc = load_catalog(x);
    if (rc == 0)
        rc = choose_backup(x);
    if (rc == 0 && restore_places_plan(&x->places, &x->a, x->chosen, x->nonempty,
                                       x->set.r[x->chosen->repo].conf->name) < 0)
        rc = err_exit_code();
    if (rc == 0)
        rc = open_chosen(x);
    return rc;
}

/* The data, then the files beside it; the report; the server. */
static int restore_chosen(struct restore_run *x)
{
    const char *label = x->chosen->b.label;
    log_info("restoring backup \"%s\" (timeline %u) from repository \"%s\" into \"%s\", "
             "target %s",
             label, x->chosen->b.timeline, repo_name(x->r), x->a.pgdata,
             restore_target_describe(&x->a.target, x->target, sizeof(x->target)));
    if (x->nonempty || x->places.nonempty) {
        x->seen = path_set_new();
        path_set_add(x->seen, "backup_manifest");
    }
    open_alts(x);
    int rc = lay_down(x);
    if (rc != 0)
        return rc;
    /* The configuration beside the data, never over /etc: a failure is said, not fatal
     * (the data directory is complete). */
    if (restore_config_beside(x->r, repo_name(x->r), x->cl->name, label, x->a.pgdata) < 0) {
        char *why = err_format();
        log_warn("the configuration of backup \"%s\" was not restored: %s", label, why);
        free(why);
        err_clear();
    }
    if (restore_write_recovery(&x->a, x->r, label, x->ctx->program, x->config_abs, x->cl->name) < 0)
        return 1;
    x->t_end = time_mono_us();
    if (x->a.json)
        report_json(x);
    else
        report_text(x);
    fflush(stdout);
    if (!x->a.start)
        return 0;
    struct start_options so = {.pgdata = x->a.pgdata,
                               .port = x->a.port,
                               .wait = x->a.wait,
                               .target = &x->a.target,
                               .pg_major = repo_identity(x->r)->pg_major,
                               .env_drop = (const char *const *)x->cfg->env_vars,
                               .bin = &x->bin};
    return restore_start(&so) < 0 ? 1 : 0;
}

static int run_config_only(struct restore_run *x)
{
    char *dest = cli_absolute_path(x->a.dest);
    int rc = restore_config_only(&x->set, x->a.backup, dest);
    free(dest);
    if (rc < 0)
        rc = err_kind() == ERR_INTEGRITY ? 3 : err_kind() == ERR_NOT_FOUND ? 2 : 1;
    return rc;
}

int cmd_restore(struct cli_context *ctx, int argc, char **argv)
{
    struct restore_run x;
    int rc;

    memset(&x, 0, sizeof(x));
    x.ctx = ctx;
    x.t0 = time_mono_us();
    if ((rc = restore_parse_args(&x.a, argc, argv)) != 0) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    if (x.a.target.kind == RESTORE_TARGET_TIME && x.a.target.zone_assumed) {
        char when[64];
        log_info("--target-time has no time zone: taken as UTC, %s",
                 time_format_pg(x.a.target.time_us, when, sizeof(when)));
    }
    x.cfg = cli_config(ctx);
    if (!x.cfg) {
        rc = 2;
        goto out;
    }
    x.cl = config_cluster_find(x.cfg, ctx->cluster_name);
    if (!x.cl || cli_repos_init(&x.set, x.cfg, x.cl, x.a.repo) < 0) {
        rc = 2;
        goto out;
    }
    if (x.a.config_only)
        rc = run_config_only(&x);
    else if ((rc = prepare(&x)) == 0)
        rc = restore_chosen(&x);
out:
    chunkset_free(x.held);
    chunkset_free(x.bad);
    chunkcache_free(x.cache);
    free(x.alts);
    pgbin_free(&x.bin);
    path_set_free(x.seen);
    restore_places_free(&x.places);
    free(x.config_abs);
    timeline_history_free(x.hist);
    catalog_free(&x.cat);
    cli_repos_free(&x.set);
    restore_args_free(&x.a);
    return rc;
}
