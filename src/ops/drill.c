/*
 * drill.c — `pgark drill`: restore a repository's backup into a scratch directory, start
 * a throwaway server on it, replay to the target, validate, time every phase, and leave a
 * record of it in every repository, passed or failed.
 *
 * Which repository: --repo NAME; --all-repos each in turn (the off-site copy must be
 * drilled too); by default the one drilled longest ago (its records say), so that drills
 * run from cron go round the repositories. Exit 0 when every drill passed, 3 when a check
 * found a data problem, 1 when a drill could not run, 2 for the command line or the
 * configuration.
 */
#include "drill_int.h"
#include "rxstatus.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/ops.h"
#include "pgark/pg.h"
#include "pgark/units.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* --- checks and failures ------------------------------------------------------------------- */

struct drill_check *drill_check_add(struct drill *d, const char *name, enum drill_outcome outcome,
                                    int64_t ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *detail = xvasprintf(fmt, ap);
    va_end(ap);
    d->checks = xrealloc(d->checks, (d->nchecks + 1) * sizeof(*d->checks));
    struct drill_check *c = &d->checks[d->nchecks++];
    c->name = xstrdup(name);
    c->outcome = outcome;
    c->detail = detail;
    c->ms = ms;
    return c;
}

static void fail_text(struct drill *d, int exit, char *text)
{
    /* A data problem outranks a drill that could not go on; the first of a rank wins. */
    bool replace = !d->error || (exit == 3 && d->exit != 3);
    if (replace) {
        free(d->error);
        d->error = text;
    } else {
        free(text);
    }
    if (d->exit == 0 || exit == 3)
        d->exit = exit;
}

void drill_fail(struct drill *d, int exit, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    fail_text(d, exit, text);
}

void drill_fail_err(struct drill *d, int exit, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *head = xvasprintf(fmt, ap);
    va_end(ap);
    char *why = err_format();
    /* context lines on one line */
    for (char *p = why; *p; p++) {
        if (*p == '\n')
            *p = ';';
    }
    const char *hint = err_hint_text();
    if (hint && !d->hint)
        d->hint = xstrdup(hint);
    if (err_kind() == ERR_USAGE || err_kind() == ERR_CONFIG)
        exit = exit == 3 ? 3 : 2;
    fail_text(d, exit, xasprintf("%s: %s", head, why));
    err_clear();
    free(why);
    free(head);
}

/* --- the command line --------------------------------------------------------------------- */

static int read_text_file(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set_errno(ERR_USAGE, errno, "could not open the checks file \"%s\"", path);
    struct buf b = BUF_INIT;
    buf_append_file(&b, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        buf_free(&b);
        return err_set(ERR_USAGE, "could not read the checks file \"%s\"", path);
    }
    buf_append(&b, "", 0);
    *out = buf_steal(&b);
    return 0;
}

/* 1 when help was printed, 0, or negative (usage).
 * Long only by its option table: fourteen options with one short case each, then the
 * checks of which ones combine; nothing in it is at another level.
 */
static int parse_args(struct drill_args *a, char **pgdata_abs, int argc, char **argv)
{
    enum {
        OPT_BACKUP = 1,
        OPT_RANDOM,
        OPT_TIME,
        OPT_TARGET,
        OPT_RANDOM_TARGET,
        OPT_SQL,
        OPT_KEEP,
        OPT_PGDATA,
        OPT_PORT,
        OPT_JSON,
        OPT_REPO,
        OPT_ALL,
        OPT_THOROUGH,
        OPT_HELP
    };
    static const struct option options[] = {{"backup", required_argument, NULL, OPT_BACKUP},
                                            {"random", no_argument, NULL, OPT_RANDOM},
                                            {"target-time", required_argument, NULL, OPT_TIME},
                                            {"target", required_argument, NULL, OPT_TARGET},
                                            {"random-target", no_argument, NULL, OPT_RANDOM_TARGET},
                                            {"sql", required_argument, NULL, OPT_SQL},
                                            {"keep", no_argument, NULL, OPT_KEEP},
                                            {"pgdata", required_argument, NULL, OPT_PGDATA},
                                            {"port", required_argument, NULL, OPT_PORT},
                                            {"json", no_argument, NULL, OPT_JSON},
                                            {"repo", required_argument, NULL, OPT_REPO},
                                            {"all-repos", no_argument, NULL, OPT_ALL},
                                            {"thorough", no_argument, NULL, OPT_THOROUGH},
                                            {"help", no_argument, NULL, OPT_HELP},
                                            {0, 0, 0, 0}};
    int opt, targets = 0;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_BACKUP:
            a->backup = optarg;
            if (!repo_backup_label_valid(optarg))
                return err_set(ERR_USAGE, "invalid backup label \"%s\"", optarg);
            break;
        case OPT_RANDOM:
            a->random_backup = true;
            break;
        case OPT_TIME:
            targets++;
            a->target = DRILL_TARGET_TIME;
            if (time_parse(optarg, &a->target_us) < 0)
                return err_context("in --target-time");
            break;
        case OPT_TARGET:
            targets++;
            if (strcmp(optarg, "latest") != 0)
                return err_set(ERR_USAGE,
                               "invalid --target \"%s\": a drill goes to latest, a time "
                               "(--target-time) or a random time (--random-target)",
                               optarg);
            a->target = DRILL_TARGET_LATEST;
            break;
        case OPT_RANDOM_TARGET:
            targets++;
            a->random_target = true;
            break;
        case OPT_SQL:
            a->sql_file = optarg;
            break;
        case OPT_KEEP:
            a->keep = true;
            break;
        case OPT_PGDATA:
            free(*pgdata_abs);
            *pgdata_abs = cli_absolute_path(optarg);
            a->pgdata = *pgdata_abs;
            break;
        case OPT_PORT:
            if (cli_parse_port(optarg, &a->port) < 0)
                return err_code();
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_REPO:
            a->repo = optarg;
            break;
        case OPT_ALL:
            a->all_repos = true;
            break;
        case OPT_THOROUGH:
            a->thorough = true;
            break;
        case OPT_HELP:
            printf("usage: pgark drill [--backup L | --random] [--target-time T | --target latest "
                   "| --random-target] ...\nrun \"pgark help drill\" for every option\n");
            return 1;
        default:
            if (optopt)
                err_set(ERR_USAGE, "option \"%s\" for drill needs a value", argv[optind - 1]);
            else
                err_set(ERR_USAGE, "unknown option \"%s\" for drill", argv[optind - 1]);
            return err_hint("run \"pgark help drill\"");
        }
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for drill", argv[optind]);
    if (targets > 1)
        return err_set(ERR_USAGE,
                       "give one target: --target latest, --target-time or --random-target");
    if (a->backup && a->random_backup)
        return err_set(ERR_USAGE, "--backup and --random cannot be combined");
    if (a->repo && a->all_repos)
        return err_set(ERR_USAGE, "--repo and --all-repos cannot be combined");
    if (a->keep && a->all_repos)
        return err_set(ERR_USAGE, "--keep leaves one server running: give it with --repo");
    return 0;
}

/* --- choosing what to drill ---------------------------------------------------------------- */

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = (uint64_t)time_now_us() ^ ((uint64_t)getpid() << 32);
    return v;
}

/* The repository drilled longest ago (never: first), from the names of the drill
 * records (<time>-<repo>) in every repository that can be listed. */
static size_t least_recent(struct cli_repos *set)
{
    char **last = xcalloc(set->n, sizeof(*last));
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        char **names = NULL;
        size_t n = 0;
        if (!r || repo_record_list(r, REPO_RECORD_DRILLS, &names, &n) < 0) {
            err_clear();
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            const char *dash = strchr(names[k], '-');
            if (!dash)
                continue;
            for (size_t j = 0; j < set->n; j++) {
                if (strcmp(dash + 1, set->r[j].conf->name) != 0)
                    continue;
                if (!last[j] || strncmp(names[k], last[j], (size_t)(dash - names[k])) > 0) {
                    free(last[j]);
                    last[j] = xstrndup(names[k], (size_t)(dash - names[k]));
                }
            }
        }
        repo_record_names_free(names, n);
    }
    size_t pick = 0;
    for (size_t j = 0; j < set->n; j++) {
        if (!last[j]) {
            pick = j;
            break;
        }
        if (last[pick] && strcmp(last[j], last[pick]) < 0)
            pick = j;
    }
    for (size_t j = 0; j < set->n; j++)
        free(last[j]);
    free(last);
    return pick;
}

int drill_status_newest_commit(const char *text, int64_t now_us, int64_t stale_us, int64_t *us)
{
    json_t *st = json_loads(text, 0, NULL);
    int found = 0;
    const char *updated = json_string_value(json_object_get(st, "updated"));
    const char *newest = json_string_value(json_object_get(st, "newest_commit"));
    int64_t u = 0, n = 0;
    if (updated && newest && time_parse(updated, &u) == 0 && now_us - u <= stale_us &&
        time_parse(newest, &n) == 0) {
        *us = n;
        found = 1;
    }
    err_clear();
    json_decref(st);
    return found;
}

/* The primary's last commit as the drill starts: the newest commit the receiver's spool
 * holds (status.json, when it runs), else the primary's own word (track_commit_timestamp).
 * Neither: the RPO of a latest drill is not known. */
static void primary_last_commit(struct drill *d)
{
    char *path = xasprintf("%s/%s/status.json", d->cfg->spool, d->cl->name);
    FILE *f = fopen(path, "r");
    free(path);
    if (f) {
        struct buf b = BUF_INIT;
        buf_append_file(&b, f);
        fclose(f);
        buf_append(&b, "", 0);
        int64_t us;
        if (drill_status_newest_commit((const char *)b.data, time_now_us(), RX_STATUS_STALE_US,
                                       &us)) {
            d->primary_known = true;
            d->primary_last_us = us;
            d->primary_source = "receiver";
        }
        buf_free(&b);
        if (d->primary_known)
            return;
    }
    if (cli_require_tls(d->cfg, d->cl) < 0) {
        log_detail("drill: not asking the primary for its last commit: %s", err_message());
        err_clear();
        return;
    }
    struct pg_conn *c = pg_connect_sql(d->cl->conninfo, NULL);
    struct pg_rows *rows = NULL;
    if (c &&
        pg_exec_simple(c,
                       "SELECT CASE WHEN current_setting('track_commit_timestamp')::bool "
                       "THEN (extract(epoch FROM (pg_last_committed_xact()).timestamp) * "
                       "1000000)::bigint END",
                       &rows) == 0 &&
        pg_rows_value(rows, 0, 0)) {
        d->primary_known = true;
        d->primary_last_us = strtoll(pg_rows_value(rows, 0, 0), NULL, 10);
        d->primary_source = "primary";
    } else if (err_is_set()) {
        log_detail("drill: the primary's last commit is not known: %s", err_message());
        err_clear();
    }
    pg_rows_free(rows);
    pg_conn_free(c);
}

/* The backup (for --backup and --random), the newest timeline and the newest commit the
 * repository holds, a random target, the programs. */
static int choose(struct drill *d)
{
    struct repo_backup *list = NULL;
    struct repo_wal_summary sum = {0};
    size_t n = 0;
    int rc = repo_backup_list(d->repo, &list, &n);
    if (rc < 0) {
        drill_fail_err(d, 1, "could not list the backups of repository \"%s\"", d->conf->name);
        goto out;
    }
    if (n == 0) {
        drill_fail(d, 1, "repository \"%s\" holds no complete backup", d->conf->name);
        rc = -1;
        goto out;
    }
    const struct repo_backup *chosen = NULL;
    if (d->a->backup) {
        for (size_t i = 0; i < n && !chosen; i++) {
            if (!strcmp(list[i].label, d->a->backup))
                chosen = &list[i];
        }
        if (!chosen) {
            drill_fail(d, 2, "repository \"%s\" holds no complete backup \"%s\"", d->conf->name,
                       d->a->backup);
            d->hint = xstrdup("\"pgark info\" lists the backups");
            rc = -1;
            goto out;
        }
    } else if (d->a->random_backup) {
        chosen = &list[random_u64() % n];
    }
    if (chosen)
        d->backup = xstrdup(chosen->label);

    if ((rc = repo_wal_summary(d->repo, &sum)) < 0) {
        drill_fail_err(d, 1, "could not list the WAL archive of repository \"%s\"", d->conf->name);
        goto out;
    }
    d->tli = sum.ntimelines ? sum.timelines[sum.ntimelines - 1].tli : 1;
    struct repo_wal_index ix;
    if (repo_wal_index_latest(d->repo, d->tli, &ix) == 0) {
        d->archive_known = true;
        d->archive_last = ix.last_commit;
        repo_wal_index_free(&ix);
    } else {
        err_clear();
    }

    d->target_us = d->a->target_us;
    if (d->a->random_target) {
        /* Anywhere from the end of the backup (or of the oldest) to the newest commit. */
        int64_t from = INT64_MAX;
        for (size_t i = 0; i < n; i++) {
            const struct repo_backup *b = chosen ? chosen : &list[i];
            int64_t t = manifest_earliest_target_us(b->header.stop_time,
                                                    b->header.consistent_time_us, false);
            if (t < from)
                from = t;
        }
        if (!d->archive_known || from >= d->archive_last.time_us) {
            drill_fail(d, 1,
                       "no random target: repository \"%s\" holds no commit after the end of %s",
                       d->conf->name, chosen ? "the backup chosen" : "its oldest backup");
            rc = -1;
            goto out;
        }
        d->target_us = from + (int64_t)(random_u64() % (uint64_t)(d->archive_last.time_us - from));
        d->target_random = true;
    }

    d->pg_major = repo_identity(d->repo)->pg_major;
    if ((rc = pgbin_find(d->cl->pg_bindir, d->cl->name, d->pg_major, "drill", &d->bin)) < 0) {
        drill_fail_err(d, 2, "no server to start the backup with");
        goto out;
    }
    rc = 0;
out:
    repo_wal_summary_free(&sum);
    repo_backup_list_free(list, n);
    return rc;
}

/* --- one drill ------------------------------------------------------------------------------ */

static void drill_free(struct drill *d)
{
    for (size_t i = 0; i < d->nchecks; i++) {
        free(d->checks[i].name);
        free(d->checks[i].detail);
    }
    free(d->checks);
    free(d->backup);
    free(d->pgdata);
    free(d->ts_root);
    free(d->sockdir);
    free(d->logfile);
    free(d->superuser);
    free(d->error);
    free(d->hint);
    pgbin_free(&d->bin);
    cli_repo_close(&d->opened);
}

/* Drill repository conf; returns its exit status and appends its record to records. */
static int drill_one(struct cli_context *ctx, const struct config *cfg,
                     const struct config_cluster *cl, const struct config_repo *conf,
                     struct drill_args *a, json_t *records)
{
    struct drill d = {.ctx = ctx, .cfg = cfg, .cl = cl, .conf = conf, .a = a};
    char label[32];
    d.started_us = time_now_us();
    d.mono0 = time_mono_us();
    snprintf(d.name, sizeof(d.name), "%s-%s", time_format_label(d.started_us, label, sizeof(label)),
             conf->name);
    log_info("drill of repository \"%s\" of cluster \"%s\"", conf->name, cl->name);

    if (cli_repo_open(cfg, cl, conf, CLI_REPO_READ, NULL, &d.opened) < 0) {
        drill_fail_err(&d, 1, "could not open repository \"%s\"", conf->name);
        goto done;
    }
    d.repo = d.opened.repo;
    if (a->target == DRILL_TARGET_LATEST && !a->random_target)
        primary_last_commit(&d);
    if (choose(&d) < 0 || drill_scratch_prepare(&d) < 0) {
        if (err_is_set())
            drill_fail_err(&d, 2, "the drill cannot start");
        goto done;
    }
    if (drill_restore(&d) < 0 || drill_configure(&d) < 0 || drill_start(&d) < 0)
        goto cleanup;
    if (a->target == DRILL_TARGET_LATEST && !d.target_random && d.primary_known && d.last_xact_us) {
        d.rpo_known = true;
        d.rpo_s = d.primary_last_us > d.last_xact_us
                      ? (double)(d.primary_last_us - d.last_xact_us) / 1e6
                      : 0;
        d.rpo_source = d.primary_source;
    }
    drill_validate(&d);
cleanup:
    if (a->keep && d.server_up) {
        /* left for a staging test */
    } else {
        if (drill_stop(&d) < 0) {
            log_warn("could not stop the drill's server: %s", err_message());
            err_clear();
        }
        if (!a->keep && !d.server_up)
            drill_scratch_remove(&d);
    }
done:;
    char *text = drill_record_json(&d);
    size_t stored = drill_record_write(&d, text);
    json_t *rec = json_loads(text, 0, NULL);
    if (rec)
        json_array_append_new(records, rec);
    free(text);
    if (!a->json)
        drill_print(&d, stored);
    int exit = d.exit;
    drill_free(&d);
    return exit;
}

/* drill.done or drill.failed: each drill's repository, result, RTO and error. */
static void notify_result(const struct config *cfg, const struct config_cluster *cl,
                          json_t *records, int worst)
{
    if (cfg->nnotify == 0)
        return;
    json_t *first = json_array_get(records, 0);
    const char *err = first ? json_string_value(json_object_get(first, "error")) : NULL;
    struct notify_event *e =
        worst == 0 ? notify_event_new(cl->name, CONFIG_EVENT_DRILL_DONE, "restore drill passed")
                   : notify_event_new(cl->name, CONFIG_EVENT_DRILL_FAILED, "restore drill %s%s%s",
                                      worst == 3 ? "failed a check" : "could not run",
                                      err ? ": " : "", err ? err : "");
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        json_t *rto = json_object_get(r, "rto_ms");
        const char *why = json_string_value(json_object_get(r, "error"));
        char *line =
            json_is_integer(rto)
                ? xasprintf("%s, RTO %.1f s", json_string_value(json_object_get(r, "result")),
                            (double)json_integer_value(rto) / 1000)
                : xasprintf("%s, target not reached",
                            json_string_value(json_object_get(r, "result")));
        if (why) {
            char *with = xasprintf("%s; %s", line, why);
            free(line);
            line = with;
        }
        json_object_set_new(e->details, json_string_value(json_object_get(r, "repository")),
                            json_string(line));
        free(line);
    }
    cli_notify(cfg, cl, e);
}

int cmd_drill(struct cli_context *ctx, int argc, char **argv)
{
    struct drill_args a = {0};
    struct cli_repos set = {0};
    char *pgdata_abs = NULL, *sqltext = NULL;
    json_t *records = json_array();
    int rc = parse_args(&a, &pgdata_abs, argc, argv);
    if (rc != 0) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    rc = 2;
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        goto out;
    const struct config_cluster *cl = config_cluster_find(cfg, ctx->cluster_name);
    if (!cl || cli_repos_init(&set, cfg, cl, a.repo) < 0)
        goto out;
    if (cli_refuse_server_env(cfg, "drill", NULL) < 0)
        goto out;
    if (a.sql_file && (read_text_file(a.sql_file, &sqltext) < 0 ||
                       drill_sql_parse(sqltext, a.sql_file, "postgres", &a.sql, &a.nsql) < 0))
        goto out;

    int worst = 0;
    size_t first = a.all_repos || a.repo ? 0 : least_recent(&set);
    size_t last = a.all_repos ? set.n : first + 1;
    /* The repositories were opened to read their records: the drill opens its own. */
    cli_repos_free(&set);
    memset(&set, 0, sizeof(set));
    if (cli_repos_init(&set, cfg, cl, a.repo) < 0)
        goto out;
    for (size_t i = first; i < last; i++) {
        int e = drill_one(ctx, cfg, cl, set.r[i].conf, &a, records);
        if (e == 3 || (e && worst != 3))
            worst = e;
    }
    notify_result(cfg, cl, records, worst);
    if (a.json) {
        json_t *root =
            json_pack("{s:s, s:O, s:i}", "cluster", cl->name, "drills", records, "exit", worst);
        cli_print_json(root);
        json_decref(root);
    }
    rc = worst;
out:
    json_decref(records);
    drill_sql_free(a.sql, a.nsql);
    free(sqltext);
    free(pgdata_abs);
    cli_repos_free(&set);
    return rc;
}
