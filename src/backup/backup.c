/*
 * backup.c — `pgark backup [--label L] [--checkpoint fast|spread] [--no-progress]
 * [--json]`: one base backup into every repository of the cluster.
 *
 * The command wires the parts together: configuration, the replication connection
 * (which also identifies the system every repository must belong to), the
 * repositories (created on first use), the run (run.c) fed by BASE_BACKUP, and the
 * summary. Exit codes: 0 done; 1 runtime failure (server unreachable, a repository of
 * another system, a wrong passphrase, a server error such as a checksum failure);
 * 2 usage or configuration error; 4 (BACKUP_EXIT_PARTIAL) done in some repositories but
 * not all.
 *
 * One repository down never stops the backup in the others: a repository that cannot be
 * opened, or fails during the run (a write, the confirmation before the manifests), is
 * dropped with an error naming it; the backup completes in the others, and `pgark copy`
 * brings its copy to the one that failed later. Only when none is left does the backup
 * fail, with the error of the first one dropped (or of the last one, when it fails during
 * the run).
 */
#include "command_int.h"

#include "pgark/backup.h"
#include "pgark/cli.h"
#include "pgark/codec.h"
#include "pgark/config.h"
#include "pgark/confsnap.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/notify.h"
#include "pgark/pg.h"
#include "pgark/pg_incremental.h"
#include "pgark/units.h"

#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int parse_args(int argc, char **argv, struct backup_cmd *a)
{
    static const struct option options[] = {{"label", required_argument, NULL, 'l'},
                                            {"checkpoint", required_argument, NULL, 'c'},
                                            {"no-progress", no_argument, NULL, 'n'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"repo", required_argument, NULL, 'r'},
                                            {"config-only", no_argument, NULL, 'C'},
                                            {"full", no_argument, NULL, 'F'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    int opt;

    memset(a, 0, sizeof(*a));
    a->checkpoint = -1;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (!repo_backup_label_valid(optarg))
                return err_set(ERR_USAGE,
                               "invalid backup label \"%s\": use letters, digits, '.', '_' "
                               "and '-', not starting with '.'",
                               optarg);
            a->label_opt = optarg;
            break;
        case 'c':
            if (strcmp(optarg, "fast") == 0)
                a->checkpoint = CONFIG_CHECKPOINT_FAST;
            else if (strcmp(optarg, "spread") == 0)
                a->checkpoint = CONFIG_CHECKPOINT_SPREAD;
            else
                return err_set(ERR_USAGE,
                               "invalid value \"%s\" for --checkpoint: use fast or "
                               "spread",
                               optarg);
            break;
        case 'n':
            a->no_progress = true;
            break;
        case 'r': {
            char *copy = xstrdup(optarg), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                a->only = xrealloc(a->only, (a->nonly + 2) * sizeof(*a->only));
                a->only[a->nonly++] = xstrdup(t);
                a->only[a->nonly] = NULL;
            }
            free(copy);
            if (!a->only)
                return err_set(ERR_USAGE, "option \"--repo\" of backup needs a repository name");
            break;
        }
        case 'j':
            a->json = true;
            break;
        case 'C':
            a->config_only = true;
            break;
        case 'F':
            a->full = true;
            break;
        case 'h':
            printf("usage: pgark backup [--label L] [--checkpoint fast|spread] [--repo NAME]... "
                   "[--full] [--no-progress] [--config-only] [--json]\n");
            return 1;
        case ':':
            err_set(ERR_USAGE, "option \"%s\" of backup needs a value", argv[optind - 1]);
            return err_hint("run \"pgark help backup\"");
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for backup", argv[optind - 1]);
            return err_hint("run \"pgark help backup\"");
        }
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for backup", argv[optind]);
    return 0;
}

static void session_free(struct session *s)
{
    if (s->heartbeat) /* the test suite brings a dropped repository back here */
        testhook_pause("PGARK_TEST_PAUSE_BEFORE_MARKERS_GONE", "before the running markers go");
    /* Before the repositories it writes to; it tries the dropped ones' markers too, so
     * that expire need not wait for them to go stale there. */
    repo_heartbeat_stop(s->heartbeat);
    for (size_t i = 0; i < s->ntargets; i++) {
        cli_repo_close(&s->repos[i]);
        free(s->targets[i].error);
    }
    for (size_t i = 0; i < s->nresults; i++)
        free(s->results[i].error);
    if (s->first_error) { /* discarded, the current error kept */
        struct err_saved *now = err_save();
        err_restore(s->first_error);
        err_clear();
        err_restore(now);
    }
    free(s->results);
    free(s->targets);
    free(s->repos);
    pg_conn_free(s->conn);
}

static bool selected(const struct backup_cmd *a, const char *name)
{
    if (!a->only)
        return true;
    for (size_t i = 0; i < a->nonly; i++)
        if (strcmp(a->only[i], name) == 0)
            return true;
    return false;
}

/* Every --repo names a repository of the cluster. */
static int check_only(const struct backup_cmd *a, const struct config *cfg,
                      const struct config_cluster *cl)
{
    for (size_t k = 0; k < a->nonly; k++) {
        bool found = false;
        for (size_t i = 0; !found && i < cl->nrepos; i++)
            found = strcmp(config_cluster_repo(cfg, cl, i)->name, a->only[k]) == 0;
        if (found)
            continue;
        struct buf names = BUF_INIT;
        for (size_t i = 0; i < cl->nrepos; i++)
            buf_appendf(&names, "%s\"%s\"", i ? ", " : "", config_cluster_repo(cfg, cl, i)->name);
        err_set(ERR_USAGE, "repository \"%s\" is not a repository of cluster \"%s\"", a->only[k],
                cl->name);
        err_hint("the cluster's repositories are %s", names.data ? (char *)names.data : "none");
        buf_free(&names);
        return err_code();
    }
    return 0;
}

/* Target i failed before the run (the error set): kept in its result, closed and taken
 * out of the targets. The first such error is kept, as the backup's own if none is left
 * (none_left); else none_left logs it. */
static void drop_early(struct session *s, size_t i)
{
    char *line = cli_error_text();

    for (size_t k = 0; k < s->nresults; k++)
        if (s->results[k].t == &s->targets[i]) {
            s->results[k].t = NULL;
            s->results[k].error = line;
            line = NULL;
        }
    free(line);
    if (s->first_error)
        err_clear();
    else
        s->first_error = err_save();
    cli_repo_close(&s->repos[i]);
    /* results point into targets: shift them with it */
    for (size_t k = 0; k < s->nresults; k++)
        if (s->results[k].t && s->results[k].t > &s->targets[i])
            s->results[k].t--;
    memmove(&s->repos[i], &s->repos[i + 1], (s->ntargets - i - 1) * sizeof(*s->repos));
    memmove(&s->targets[i], &s->targets[i + 1], (s->ntargets - i - 1) * sizeof(*s->targets));
    s->ntargets--;
}

/* None left: the backup fails with the first repository's error, as it always did. Else the
 * repositories dropped are logged (once), and the backup goes on in the others. */
static int none_left(struct session *s, const char *label)
{
    if (s->ntargets == 0) {
        err_restore(s->first_error);
        s->first_error = NULL;
        return err_code();
    }
    for (size_t i = 0; i < s->nresults; i++) {
        struct repo_result *r = &s->results[i];
        if (!r->error || r->logged)
            continue;
        log_error("repository \"%s\" dropped from backup \"%s\", which goes on in the others: %s",
                  r->name, label, r->error);
        r->logged = true;
    }
    return 0;
}

/* The heartbeat of the running markers in every target (NULL, error set, on failure). */
static struct repo_heartbeat *heartbeat_targets(struct session *s, const char *label)
{
    const char *ms = getenv("PGARK_TEST_HEARTBEAT_MS");
    struct repo **repos = xcalloc(s->ntargets + 1, sizeof(*repos));

    for (size_t i = 0; i < s->ntargets; i++)
        repos[i] = s->targets[i].repo;
    struct repo_heartbeat *hb =
        repo_heartbeat_start(repos, s->ntargets, label, ms ? atoi(ms) : 0, 0);
    free(repos);
    return hb;
}

/* Write the running markers and keep them beating (repo.h, running markers), then wait
 * for any expire to finish. A repository where the first marker cannot be written, or
 * the wait fails, is dropped. Tests shorten the interval with PGARK_TEST_HEARTBEAT_MS.
 * The heartbeat writes the first markers itself: when they all can be written, each is
 * written once (a write, an fsync, a rename and the folder's fsync: 5-70 ms of the
 * backup's wall each on a busy ext4); when one cannot, they are written one by one to
 * drop that one. */
static int announce(struct session *s, const char *label)
{
    s->heartbeat = heartbeat_targets(s, label);
    if (!s->heartbeat) {
        err_clear();
        for (size_t i = 0; i < s->ntargets;) {
            if (repo_marker_put(s->targets[i].repo, label) < 0) {
                err_context("while writing the running marker of backup \"%s\" in repository "
                            "\"%s\"",
                            label, repo_name(s->targets[i].repo));
                drop_early(s, i);
                continue;
            }
            i++;
        }
        if (none_left(s, label) < 0)
            return err_code();
        if (!(s->heartbeat = heartbeat_targets(s, label)))
            return err_code();
    }
    for (size_t i = 0; i < s->ntargets;) {
        if (repo_expire_wait(s->targets[i].repo, 1000) < 0) {
            repo_heartbeat_drop(s->heartbeat, s->targets[i].repo);
            drop_early(s, i);
            continue;
        }
        i++;
    }
    return none_left(s, label);
}

/* Open (or create) every selected repository of the cluster for the server's system; one
 * that cannot be opened is dropped. */
static int open_repos(const struct config *cfg, const struct config_cluster *cl,
                      const struct repo_identity *id, const struct backup_cmd *a, const char *label,
                      struct session *s)
{
    if (cli_repo_options(cfg, cl, CLI_REPO_ARCHIVE, &s->ro) < 0)
        return err_code();
    s->repos = xcalloc(cl->nrepos + 1, sizeof(*s->repos));
    s->targets = xcalloc(cl->nrepos + 1, sizeof(*s->targets));
    s->results = xcalloc(cl->nrepos + 1, sizeof(*s->results));
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *rc_repo = config_cluster_repo(cfg, cl, i);
        if (!selected(a, rc_repo->name))
            continue;
        struct cli_repo *r = &s->repos[s->ntargets];
        struct repo_result *res = &s->results[s->nresults++];
        res->name = rc_repo->name;
        res->t = &s->targets[s->ntargets];
        int rc = cli_repo_open(cfg, cl, rc_repo, CLI_REPO_ARCHIVE, id, r);
        s->targets[s->ntargets].local = rc_repo->type == CONFIG_REPO_POSIX;
        s->targets[s->ntargets++].repo = r->repo;
        if (rc < 0) {
            err_context("while opening repository \"%s\"", rc_repo->name);
            drop_early(s, s->ntargets - 1);
        }
    }
    return none_left(s, label);
}

static const char *tmp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* The path of pgark's configuration file, for the configuration record (into real). */
static const char *pgark_config_path(struct cli_context *ctx, char real[PATH_MAX])
{
    const char *path = ctx->config_path ? ctx->config_path : config_default_path();
    return realpath(path, real) ? real : path;
}

/* Store the configuration record text of label (confsnap.h) in every repository left.
 * Returns nfiles, or -1 (error set). */
static long config_put(struct session *s, const char *label, const char *text, size_t nfiles)
{
    for (size_t i = 0; i < s->ntargets; i++) {
        if (s->targets[i].failed)
            continue; /* dropped during the run: it holds no backup to go with */
        if (confsnap_put(s->targets[i].repo, label, text) < 0) {
            err_context("while storing the configuration backup in repository \"%s\"",
                        repo_name(s->targets[i].repo));
            return -1;
        }
    }
    return (long)nfiles;
}

/* The configuration backup of label into every repository: read here and now (kind), or,
 * with side, the record the backup's side session read while the chunks were listed. A
 * failure is a warning for a full backup (its data is what matters) and an error with
 * --config-only. Returns the files kept, or -1 (error set). */
static long config_backup(struct cli_context *ctx, const struct config_cluster *cl,
                          struct session *s, const char *label, const char *kind,
                          struct backup_estimate *side)
{
    char real[PATH_MAX];
    size_t nfiles = 0;
    long rc = -1;
    char *text =
        side ? backup_estimate_conf(side, &nfiles)
             : confsnap_gather(cl->conninfo, pgark_config_path(ctx, real), label, kind, &nfiles);
    if (text)
        rc = config_put(s, label, text, nfiles);
    free(text);
    return rc;
}

/* backup --config-only: the configuration alone, into every repository of s. */
static int run_config_only(struct cli_context *ctx, const struct config_cluster *cl,
                           struct session *s, const char *label, bool json)
{
    long n = config_backup(ctx, cl, s, label, CONFSNAP_KIND_CONFIG_ONLY, NULL);
    if (n < 0)
        return (int)n;
    if (json) {
        json_t *o =
            json_pack("{s:s, s:s, s:i, s:i}", "label", label, "kind", CONFSNAP_KIND_CONFIG_ONLY,
                      "files", (int)n, "repositories", (int)s->ntargets);
        cli_print_json(o);
        json_decref(o);
    } else {
        printf("configuration backup \"%s\" of cluster \"%s\": %ld files into %zu "
               "repositories\n",
               label, cl->name, n, s->ntargets);
    }
    return 0;
}

/* --- the command ------------------------------------------------------------------------ */

/*
 * What one backup holds from the command line to the end. cmd_backup runs the phases
 * below in order over it; each returns 0 or a negative error (set), and the command has
 * one cleanup and one failure path (the event, the exit code).
 */
struct backup_job {
    struct cli_context *ctx;
    struct backup_cmd args;
    const struct config_cluster *cl;
    const struct config *cfg;
    struct session s;
    struct pg_system sys;
    uint64_t seg_size;
    int version;
    bool fast; /* fast checkpoint */
    bool show; /* progress on the terminal */
    char label[64];
    char *fp_dir;
    struct backup_params params; /* what each run is made with */
    struct backup_run *run;
    struct incr_choice ic;
    struct backup_estimate *est; /* the WAL summaries asked, while the run is made */
    struct pg_bb_info info;
    int64_t start_us, stop_us;
};

/* Connect to the server, learn its system, major and segment size; the label. */
static int connect_server(struct backup_job *j)
{
    j->s.conn = pg_connect_replication(j->cl->conninfo, "pgark_backup");
    if (!j->s.conn)
        return err_context("while connecting to cluster \"%s\"", j->cl->name);
    if (pg_check_supported(j->s.conn) < 0 || pg_identify_system(j->s.conn, &j->sys) < 0 ||
        pg_wal_segment_size(j->s.conn, &j->seg_size) < 0)
        return err_code();
    j->version = pg_server_version(j->s.conn);
    log_debug("connected to the server of cluster \"%s\"", j->cl->name);
    j->start_us = time_now_us();
    if (j->args.label_opt)
        snprintf(j->label, sizeof(j->label), "%s", j->args.label_opt);
    else
        time_format_label(j->start_us, j->label, sizeof(j->label));
    return 0;
}

/* Open every selected repository for the server's system; a label taken already fails
 * the backup, a repository that cannot be asked is dropped. */
static int open_targets(struct backup_job *j)
{
    struct session *s = &j->s;
    struct repo_identity id = {j->sys.systemid, j->version / 10000, j->seg_size};

    if (open_repos(j->cfg, j->cl, &id, &j->args, j->label, s) < 0)
        return err_code();
    for (size_t i = 0; i < s->ntargets;) {
        int e = repo_backup_exists(s->targets[i].repo, j->label);
        if (e > 0) {
            err_set(ERR_EXISTS, "backup \"%s\" already exists in repository \"%s\"", j->label,
                    repo_name(s->targets[i].repo));
            return err_hint("give another --label, or wait a second for a new time-based label");
        }
        if (e < 0) {
            err_context("while looking for backup \"%s\" in repository \"%s\"", j->label,
                        repo_name(s->targets[i].repo));
            drop_early(s, i);
            continue;
        }
        i++;
    }
    return none_left(s, j->label);
}

/* Announce the backup, make the run, and choose full or incremental (the parent loaded
 * and its manifest uploaded, or the reason for a full backup). */
static int start_run(struct backup_job *j)
{
    struct session *s = &j->s;

    /* Announce the backup before listing the chunks it may reuse, so that an expire
     * does not sweep them meanwhile (repo.h, running markers). */
    if (announce(s, j->label) < 0)
        return err_code();
    log_debug("backup \"%s\" announced in %zu repositories", j->label, s->ntargets);
    j->fp_dir = xasprintf("%s/%s", j->cfg->spool, j->cl->name);
    j->params = (struct backup_params){
        .label = j->label,
        .chunk_size = j->cl->backup.chunk_size,
        .tmp_dir = tmp_dir(),
        .fp_dir = j->fp_dir,
        .targets = s->targets,
        .ntargets = s->ntargets,
        .pg_version = j->version,
        .system_identifier = j->sys.systemid,
        .seg_size = j->seg_size,
        .compression = s->ro.codecs.compression->name,
        .heartbeat = s->heartbeat,
    };
    const char *w = getenv("PGARK_BACKUP_WORKERS");
    j->params.workers = w ? atoi(w) : 0;
    backup_choose_parent(s, &j->args, j->version, j->sys.timeline, &j->ic);
    if (j->ic.parent[0])
        log_debug("parent \"%s\" chosen, its backup_manifest read (%zu bytes)", j->ic.parent,
                  j->ic.mlen);
    char real[PATH_MAX];
    j->est = backup_estimate_start(&j->ic, j->cl->conninfo, j->sys.timeline, j->params.chunk_size,
                                   pgark_config_path(j->ctx, real), j->label);
    j->run = backup_run_new(&j->params);
    if (!j->run)
        return err_code();
    log_debug("chunks listed");
    if (j->ic.parent[0] && backup_run_load_parent(j->run, j->ic.parent) < 0) {
        char *what = xasprintf("backup \"%s\" cannot be its parent", j->ic.parent);
        backup_choice_full_err(&j->ic, what);
        free(what);
    }
    if (j->ic.parent[0]) {
        log_debug("parent's manifest.json loaded and its chunks checked");
        backup_judge_parent(&j->ic, j->est, j->run, j->params.chunk_size);
        if (!j->ic.parent[0])
            backup_run_load_parent_drop(j->run);
    }
    if (j->ic.parent[0] && pg_upload_manifest(s->conn, j->ic.manifest, j->ic.mlen) < 0) {
        backup_choice_full_err(&j->ic, "the server refused the parent's manifest");
        backup_run_load_parent_drop(j->run);
    }
    if (j->ic.parent[0])
        log_debug("UPLOAD_MANIFEST done");
    j->show = !j->args.no_progress && isatty(STDERR_FILENO);
    backup_run_show_progress(j->run, j->show);
    log_info("backup \"%s\" of cluster \"%s\" starting (%s checkpoint, %zu repositories)", j->label,
             j->cl->name, j->fast ? "fast" : "spread", s->ntargets);
    if (j->ic.parent[0])
        log_info("backup \"%s\" is incremental to backup \"%s\"", j->label, j->ic.parent);
    else
        log_info("backup \"%s\" is a full backup: %s", j->label, j->ic.reason);
    return 0;
}

/* BASE_BACKUP into the run; an incremental the server refuses before it sends anything
 * becomes a full one. */
static int stream(struct backup_job *j)
{
    struct pg_bb_options bo = {
        .label = j->label,
        .fast_checkpoint = j->fast,
        .wal = true,
        .progress = j->show, /* the size estimate costs the server a scan */
        .manifest = true,
    };
    /* Tests slow a backup down to interrupt it half-way. */
    const char *rate = getenv("PGARK_TEST_MAX_RATE");
    bo.max_rate_kb = rate ? (uint32_t)strtoul(rate, NULL, 10) : 0;
    bo.incremental = j->ic.parent[0] != '\0';
    log_debug("BASE_BACKUP sent: the server's checkpoint until it answers");
    if (pg_base_backup(j->s.conn, &bo, backup_run_started, backup_run_callbacks(), j->run,
                       &j->info) == 0)
        goto done;
    /* The server refuses an incremental backup before it sends anything when it no
     * longer has the WAL summaries since the parent's start: a full one then, on a
     * new connection (the refused command may not have been read to its end). */
    if (!bo.incremental || backup_run_began(j->run) || err_kind() == ERR_CONNECT)
        return err_code();
    backup_choice_full_err(&j->ic, "the server refused an incremental backup");
    log_info("backup \"%s\" is a full backup: %s", j->label, j->ic.reason);
    bo.incremental = false;
    backup_run_free(j->run);
    j->run = NULL;
    pg_bb_info_free(&j->info);
    pg_conn_free(j->s.conn);
    if (!(j->s.conn = pg_connect_replication(j->cl->conninfo, "pgark_backup")) ||
        !(j->run = backup_run_new(&j->params)))
        return err_code();
    backup_run_show_progress(j->run, j->show);
    if (pg_base_backup(j->s.conn, &bo, backup_run_started, backup_run_callbacks(), j->run,
                       &j->info) < 0)
        return err_code();
done:
    j->stop_us = time_now_us();
    log_debug("the stream ended (the server's stop of the backup and its WAL included)");
    return 0;
}

/* The backup is stored: its configuration backup (a warning when it fails), the summary,
 * the event. Returns the exit code. */
static int report(struct backup_job *j)
{
    const struct backup_totals *tot = backup_run_totals(j->run);

    if (config_backup(j->ctx, j->cl, &j->s, j->label, CONFSNAP_KIND_BACKUP, j->est) < 0) {
        char *text = err_format();
        log_warn("backup \"%s\" has no configuration backup: %s", j->label, text);
        free(text);
        err_clear();
    }
    json_t *sum = backup_summary_json(j->label, &j->info, j->start_us, j->stop_us, tot,
                                      j->s.results, j->s.nresults, j->cl);
    backup_summary_incremental(sum, &j->ic, tot);
    j->ctx->metrics_bytes = (int64_t)tot->logical_bytes;
    backup_notify_done(j->cfg, j->cl, j->label, sum, j->start_us, j->stop_us, &j->s);
    if (j->args.json)
        cli_print_json(sum);
    else
        backup_print_human(sum);
    int rc = backup_report_failed(sum, &j->s, j->label, j->cl) ? BACKUP_EXIT_PARTIAL : 0;
    json_decref(sum);
    return rc;
}

/* One backup session: parse, connect, open the repositories, then the configuration alone
 * (--config-only) or announce, choose full or incremental, stream, finish, report. */
int cmd_backup(struct cli_context *ctx, int argc, char **argv)
{
    struct backup_job j = {.ctx = ctx};
    int rc;

    rc = parse_args(argc, argv, &j.args);
    if (rc != 0) {
        rc = rc > 0 ? 0 : 2; /* --help, or bad usage */
        goto out;
    }
    if (j.args.config_only)
        ctx->metrics_as = "config_backup";
    j.cl = cli_cluster(ctx);
    j.cfg = j.cl ? cli_config(ctx) : NULL;
    if (!j.cl || cli_require_tls(j.cfg, j.cl) < 0 || check_only(&j.args, j.cfg, j.cl) < 0) {
        rc = 2;
        goto out;
    }
    j.fast = j.args.checkpoint >= 0 ? j.args.checkpoint == CONFIG_CHECKPOINT_FAST
                                    : j.cl->backup.checkpoint == CONFIG_CHECKPOINT_FAST;
    if (connect_server(&j) < 0 || open_targets(&j) < 0)
        goto fail;
    if (j.args.config_only) {
        if (run_config_only(ctx, j.cl, &j.s, j.label, j.args.json) < 0)
            goto fail;
        rc = 0;
        goto out;
    }
    if (start_run(&j) < 0 || stream(&j) < 0 ||
        backup_run_finish(j.run, &j.info, j.start_us, j.stop_us) < 0)
        goto fail;
    rc = report(&j);
    goto out;
fail:
    err_context("backup of cluster \"%s\" failed", j.cl->name);
    rc = err_exit_code();
    cli_notify_error_with(j.cfg, j.cl, CONFIG_EVENT_BACKUP_FAILED, "backup",
                          json_pack("{s:o}", "failed_repositories", backup_failed_json(&j.s)));
out:
    backup_estimate_free(j.est);
    backup_run_free(j.run);
    free(j.ic.reason);
    free(j.ic.manifest);
    free(j.fp_dir);
    pg_bb_info_free(&j.info);
    session_free(&j.s);
    for (size_t i = 0; i < j.args.nonly; i++)
        free(j.args.only[i]);
    free(j.args.only);
    return rc;
}
