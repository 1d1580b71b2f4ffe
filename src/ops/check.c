/*
 * check.c — `pgark check [--json]`, for monitoring: is everything in place for the
 * cluster to stay recoverable right now? The configuration loads, the server accepts a
 * replication connection, the slot exists (and is in use when a receiver should be
 * streaming), every repository is reachable, bound to this server's system and
 * writable, and its RPO (rxstatus.h) within rpo_target. Exit 0 when every check passes,
 * 3 listing those that failed. A server that cannot be reached is a failed check, not
 * a crash: the repository checks still run.
 */
#include "rxstatus.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/ops.h"
#include "pgark/pg.h"
#include "pgark/pg_stream.h"
#include "pgark/repo.h"
#include "pgark/units.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct checks {
    json_t *list;
    int failed;
    int warned;
};

enum verdict { CHECK_OK, CHECK_WARN, CHECK_FAIL };

static void entry(struct checks *c, const char *name, enum verdict v, const char *fmt, va_list ap)
{
    char *detail = xvasprintf(fmt, ap);
    json_array_append_new(c->list,
                          json_pack("{s:s, s:b, s:b, s:s}", "name", name, "ok", v != CHECK_FAIL,
                                    "warning", v == CHECK_WARN, "detail", detail));
    if (v == CHECK_FAIL)
        c->failed++;
    if (v == CHECK_WARN)
        c->warned++;
    free(detail);
}

static void add(struct checks *c, const char *name, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(struct checks *c, const char *name, bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    entry(c, name, ok ? CHECK_OK : CHECK_FAIL, fmt, ap);
    va_end(ap);
}

/* Add key to the entry added last (the figure behind its verdict). */
static void set_last(struct checks *c, const char *key, json_t *value)
{
    json_object_set_new(json_array_get(c->list, json_array_size(c->list) - 1), key, value);
}

/* Passed, but something should be fixed: exit 0 all the same. */
static void warn(struct checks *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void warn(struct checks *c, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    entry(c, name, CHECK_WARN, fmt, ap);
    va_end(ap);
}

/* --- server ------------------------------------------------------------------------------ */

struct server {
    bool connected;
    bool unsupported; /* a major pgark does not support: nothing else is checked, exit 2 */
    struct pg_system sys;
};

static void check_server(struct checks *c, const struct config_cluster *cl,
                         const struct rx_status *rs, struct server *srv)
{
    char lsn[LSN_STRLEN];
    struct pg_conn *conn = pg_connect_replication(cl->conninfo, "pgark_check");
    if (!conn) {
        char *e = cli_error_line(true);
        add(c, "connection", false, "%s", e);
        free(e);
        return;
    }
    if (pg_check_supported(conn) < 0) {
        char *e = cli_error_line(true);
        add(c, "server_version", false, "%s", e);
        free(e);
        srv->unsupported = true;
        goto out;
    }
    if (pg_identify_system(conn, &srv->sys) < 0) {
        char *e = cli_error_line(true);
        add(c, "connection", false, "%s", e);
        free(e);
        goto out;
    }
    srv->connected = true;
    int v = pg_server_version(conn);
    add(c, "connection", true, "server \"%s\", PostgreSQL %d.%d, system %llu, timeline %u at %s",
        pg_conn_target(conn), v / 10000, v % 10000, (unsigned long long)srv->sys.systemid,
        srv->sys.timeline, lsn_format(srv->sys.xlogpos, lsn));

    bool exists = false;
    lsn_t restart = LSN_INVALID;
    timeline_t restart_tli = 0;
    if (pg_read_slot(conn, cl->slot, &exists, &restart, &restart_tli) < 0) {
        char *e = cli_error_line(true);
        add(c, "slot", false, "%s", e);
        free(e);
        goto out;
    }
    if (!exists) {
        add(c, "slot", false, "replication slot \"%s\" does not exist on server \"%s\"%s", cl->slot,
            pg_conn_target(conn),
            cl->create_slot ? " (create_slot is on: the receiver creates it when it starts)"
                            : " (hint: create it with pg_create_physical_replication_slot() or "
                              "set create_slot: true)");
        goto out;
    }
    add(c, "slot", true, "replication slot \"%s\" exists, restart_lsn %s", cl->slot,
        restart ? lsn_format(restart, lsn) : "none");

    /* A receiver should be streaming once one has run for this cluster. */
    bool should_run = rs->doc != NULL;
    bool slot_exists = false, active = false;
    int pid = 0;
    if (pg_slot_active(cl->conninfo, cl->slot, &slot_exists, &active, &pid) < 0) {
        char *e = cli_error_line(true);
        bool streaming = rs->running && json_is_true(json_object_get(rs->doc, "connected"));
        if (!should_run)
            add(c, "slot_active", true, "no receiver has run for this cluster; %s", e);
        else
            add(c, "slot_active", streaming, "%s; the receiver's status file says it is %s", e,
                streaming     ? "connected"
                : rs->running ? "not connected"
                              : "not running");
        free(e);
    } else if (active) {
        add(c, "slot_active", true, "replication slot \"%s\" is in use by process %d", cl->slot,
            pid);
    } else if (should_run) {
        add(c, "slot_active", false,
            "replication slot \"%s\" is not in use: the receiver is not streaming (%s)", cl->slot,
            rs->running ? "it runs but is not connected" : "it is not running");
    } else {
        add(c, "slot_active", true,
            "replication slot \"%s\" is not in use; no receiver has run for this cluster",
            cl->slot);
    }
out:
    pg_conn_free(conn);
}

/* How the conninfo reaches the server. Only a TCP connection gets an entry: a Unix
 * socket needs no TLS. False when require_tls refuses it: then nothing connects. */
static bool check_transport(struct checks *c, const struct config *cfg,
                            const struct config_cluster *cl)
{
    struct pg_transport t;
    if (pg_conninfo_transport(cl->conninfo, &t) < 0) {
        err_clear(); /* the connection check says what is wrong with it */
        return true;
    }
    if (!t.tcp)
        return true;
    if (pg_sslmode_authenticates(t.sslmode)) {
        add(c, "tls", true, "cluster \"%s\" connects to \"%s\" over TCP with sslmode %s", cl->name,
            t.host, t.sslmode);
        return true;
    }
    if (cli_require_tls(cfg, cl) < 0) {
        char *e = cli_error_line(true);
        add(c, "tls", false, "not connecting: %s", e);
        free(e);
        return false;
    }
    warn(c, "tls",
         "cluster \"%s\" connects to \"%s\" over TCP with sslmode \"%s\"%s, which does not "
         "authenticate the server: whoever can reach the network path can pose as it, and "
         "with prefer or allow read the WAL in clear (hint: add sslmode=verify-full and "
         "sslrootcert=FILE to the conninfo, or connect through a Unix socket; require_tls: "
         "true refuses anything weaker)",
         cl->name, t.host, t.sslmode, t.sslmode_set ? "" : " (libpq's default: nothing sets it)");
    return true;
}

/* --- repositories ------------------------------------------------------------------------ */

/* Write, read back and remove a small object under the cluster's folder. */
static int probe_write(struct repo *r, const char *cluster)
{
    uint8_t rnd[8];
    char hex[17], name[64], content[96];
    uint8_t *back = NULL;
    size_t len = 0;
    int rc = random_bytes(rnd, sizeof(rnd));
    if (rc < 0)
        return rc;
    hex_encode(rnd, sizeof(rnd), hex);
    snprintf(name, sizeof(name), ".pgark-check-%s", hex);
    snprintf(content, sizeof(content), "pgark check probe %s", hex);
    if ((rc = repo_put(r, name, content, strlen(content))) < 0)
        return err_context("while writing a probe object");
    rc = repo_get_all_max(r, name, sizeof(content), "the probe object", &back, &len);
    if (rc == 0 && (len != strlen(content) || memcmp(back, content, len) != 0))
        rc = err_set(ERR_INTEGRITY, "probe object \"%s\" read back different content", name);
    free(back);
    char *full = xasprintf("%s/%s", cluster, name);
    int rm = storage_remove(repo_storage(r), full);
    free(full);
    if (rc < 0)
        return err_context("while reading a probe object back");
    if (rm < 0)
        return err_context("while removing a probe object");
    return 0;
}

/* Long: one check after another on one repository (reachable and writable, system
 * identifier, backups, RPO), each adding its line, in the order the output shows; one
 * level.
 */
static void check_repo(struct checks *c, const struct config *cfg, const struct config_cluster *cl,
                       const struct config_repo *cr, const struct server *srv,
                       const struct rx_status *rs)
{
    char name[160], dur[32], target[32];
    struct cli_repo opened;
    struct repo *r = NULL;
    int open_rc = cli_repo_open(cfg, cl, cr, CLI_REPO_READ, NULL, &opened);
    snprintf(name, sizeof(name), "repository:%s", cr->name);
    if (!opened.storage) {
        char *e = cli_error_line(true);
        add(c, name, false, "%s", e);
        free(e);
        return;
    }
    r = opened.repo;
    if (open_rc < 0 || probe_write(r, cl->name) < 0) {
        if (!r)
            err_context("while opening repository \"%s\"", cr->name);
        else
            err_context("in repository \"%s\"", cr->name);
        char *e = cli_error_line(true);
        add(c, name, false, "%s", e);
        free(e);
        goto out;
    }
    const struct repo_identity *id = repo_identity(r);
    add(c, name, true, "repository \"%s\" is reachable and writable (%s%s)", cr->name,
        config_repo_type_name(cr->type), repo_encrypted(r) ? ", encrypted" : "");

    snprintf(name, sizeof(name), "system_identifier:%s", cr->name);
    if (srv->connected)
        add(c, name, id->system_identifier == srv->sys.systemid,
            id->system_identifier == srv->sys.systemid
                ? "repository \"%s\" belongs to system %llu, the server's"
                : "repository \"%s\" belongs to system %llu, not to the server's %llu",
            cr->name, (unsigned long long)id->system_identifier,
            (unsigned long long)srv->sys.systemid);

    /* A repository without a backup yet is a warning: the host is set up (pgark init,
     * a receiver), the first backup is the next step. */
    snprintf(name, sizeof(name), "backups:%s", cr->name);
    struct repo_backup *list = NULL;
    size_t nb = 0;
    if (repo_backup_list(r, &list, &nb) < 0) {
        char *e = cli_error_line(true);
        add(c, name, false, "%s", e);
        free(e);
    } else if (nb == 0) {
        warn(c, name, "repository \"%s\" holds no backup yet (hint: take one with pgark backup)",
             cr->name);
    } else {
        size_t newest = 0;
        for (size_t i = 1; i < nb; i++)
            if (list[i].header.stop_lsn > list[newest].header.stop_lsn)
                newest = i;
        add(c, name, true, "repository \"%s\" holds %zu backup%s, the newest \"%s\"", cr->name, nb,
            nb == 1 ? "" : "s", list[newest].label);
    }
    repo_backup_list_free(list, nb);

    /* The RPO as info, report, status.json and the metrics say it (rxstatus.h); without
     * a receiver's figure, the age of the newest segment archived bounds it. */
    snprintf(name, sizeof(name), "rpo:%s", cr->name);
    duration_format(cl->rpo_target_ms, target, sizeof(target));
    double rpo = rx_status_streams(rs) ? rx_status_repo_rpo(rs, cr->name) : -1;
    if (rpo >= 0) {
        duration_format((int64_t)(rpo * 1000), dur, sizeof(dur));
        add(c, name, rpo * 1000 <= (double)cl->rpo_target_ms,
            "a restore to latest from repository \"%s\" would lose %s of commits (RPO, from the "
            "receiver's status%s; rpo_target %s)",
            cr->name, dur, rs->running ? "" : ", which stopped: grown by the time since", target);
        set_last(c, "rpo_seconds", cli_json_seconds(rpo));
        goto out;
    }
    struct repo_wal_summary sum;
    if (repo_wal_summary(r, &sum) < 0) {
        char *e = cli_error_line(true);
        add(c, name, false, "%s", e);
        free(e);
        goto out;
    }
    if (!sum.segments) {
        add(c, name, false, "repository \"%s\" holds no complete WAL segment (rpo_target %s%s)",
            cr->name, target,
            rs->running && !rx_status_streams(rs) ? "; the receiver has streamed nothing yet" : "");
    } else {
        int64_t age_ms = (time_now_us() - sum.newest_mtime_us) / 1000;
        if (age_ms < 0)
            age_ms = 0;
        duration_format(age_ms, dur, sizeof(dur));
        add(c, name, age_ms <= cl->rpo_target_ms,
            "newest WAL segment in repository \"%s\" was archived %s ago (rpo_target %s%s)",
            cr->name, dur, target,
            !rs->running             ? "; no receiver is running"
            : !rx_status_streams(rs) ? "; the receiver has streamed nothing yet"
                                     : "");
        set_last(c, "rpo_seconds", json_real((double)age_ms / 1000));
    }
    repo_wal_summary_free(&sum);
out:
    cli_repo_close(&opened);
}

/* --- the command ------------------------------------------------------------------------- */

static void print_human(const struct checks *c)
{
    size_t i;
    json_t *e;
    json_array_foreach(c->list, i, e)
    {
        printf("%-4s  %-24s %s\n",
               !json_is_true(json_object_get(e, "ok"))       ? "FAIL"
               : json_is_true(json_object_get(e, "warning")) ? "warn"
                                                             : "ok",
               json_string_value(json_object_get(e, "name")),
               json_string_value(json_object_get(e, "detail")));
    }
    if (c->failed)
        printf("%d of %zu checks failed", c->failed, json_array_size(c->list));
    else
        printf("all %zu checks passed", json_array_size(c->list));
    if (c->warned)
        printf(", %d with a warning", c->warned);
    printf("\n");
}

/* check.failed: each failed check, by name, with its detail. */
static void notify_failed(const struct config *cfg, const struct config_cluster *cl,
                          const struct checks *c)
{
    if (cfg->nnotify == 0)
        return;
    struct notify_event *e = NULL;
    size_t i;
    json_t *entry;
    json_array_foreach(c->list, i, entry)
    {
        if (json_is_true(json_object_get(entry, "ok")))
            continue;
        const char *name = json_string_value(json_object_get(entry, "name"));
        const char *detail = json_string_value(json_object_get(entry, "detail"));
        if (!e)
            e = notify_event_new(cl->name, CONFIG_EVENT_CHECK_FAILED, "%d check%s failed: %s: %s",
                                 c->failed, c->failed == 1 ? "" : "s", name, detail);
        json_object_set_new(e->details, name, json_string(detail));
    }
    if (e)
        cli_notify(cfg, cl, e);
}

int cmd_check(struct cli_context *ctx, int argc, char **argv)
{
    bool as_json = false;
    int args = cli_json_args(argc, argv, "check", &as_json);
    if (args != 0)
        return args < 0 ? 2 : 0;

    struct checks c = {json_array(), 0, 0};
    /* Its warnings are entries of the report, not log lines. */
    ctx->config_warn_level = LOG_DEBUG;
    struct rx_status rs = {0};
    bool srv_unsupported = false;
    const struct config_cluster *cl = NULL;
    const struct config *cfg = cli_config(ctx);
    if (cfg)
        cl = config_cluster_find(cfg, ctx->cluster_name);
    if (!cl) {
        /* Nothing else can be checked without it; still answer the monitor. */
        char *e = cli_error_line(true);
        add(&c, "config", false, "%s", e);
        free(e);
        goto report;
    }
    add(&c, "config", true, "\"%s\" is valid; cluster \"%s\" with %zu repositor%s", cfg->path,
        cl->name, cl->nrepos, cl->nrepos == 1 ? "y" : "ies");
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        char name[64];
        snprintf(name, sizeof(name), "permissions:%zu", i + 1);
        warn(&c, name, "%s%s%s%s", cfg->warnings[i].message,
             cfg->warnings[i].hint ? " (hint: " : "",
             cfg->warnings[i].hint ? cfg->warnings[i].hint : "", cfg->warnings[i].hint ? ")" : "");
    }

    rx_status_load(cfg->spool, cl->name, time_now_us(), &rs);
    struct server srv = {0};
    if (check_transport(&c, cfg, cl))
        check_server(&c, cl, &rs, &srv);
    srv_unsupported = srv.unsupported;
    for (size_t i = 0; i < cl->nrepos && !srv.unsupported; i++)
        check_repo(&c, cfg, cl, config_cluster_repo(cfg, cl, i), &srv, &rs);

report:
    if (as_json) {
        json_t *root = json_pack("{s:s?, s:b, s:O}", "cluster", cl ? cl->name : NULL, "ok",
                                 c.failed == 0, "checks", c.list);
        cli_print_json(root);
        json_decref(root);
    } else {
        print_human(&c);
    }
    /* A server pgark does not support is a configuration error, as in receive and
     * backup, not a failed check of a cluster that could work. */
    int rc = srv_unsupported ? 2 : c.failed ? 3 : 0;
    if (c.failed && cl)
        notify_failed(cfg, cl, &c);
    json_decref(c.list);
    rx_status_free(&rs);
    return rc;
}
