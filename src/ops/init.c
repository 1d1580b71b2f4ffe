/*
 * init.c — `pgark init`: make a cluster ready for pgark, or say exactly what is missing.
 *
 * It connects as the receiver will (a replication connection), checks the server's major
 * and the settings streaming needs (wal_level, max_wal_senders, max_replication_slots),
 * creates the replication slot when create_slot is on (else gives the SQL), and creates
 * every repository's repo.json for the server's identity (encryption parameters
 * included). What is already there is left alone and reported, so it can run again at
 * any time. Every missing piece comes with the line that fixes it.
 *
 * Exit 0 when the cluster is ready, 1 when something is missing or failed (each named
 * with its fix), 2 for a configuration error or a server of an unsupported major.
 */
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/pg.h"
#include "pgark/pg_stream.h"
#include "pgark/repo.h"

#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum init_state { READY, DONE, MISSING };

static const char *const state_names[] = {"ready", "done", "missing"};

struct steps {
    json_t *list;
    int missing;
};

/* One step: its name, state, what was found or done, and (when missing) the fix. */
static void step(struct steps *s, const char *name, enum init_state st, const char *fix,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void step(struct steps *s, const char *name, enum init_state st, const char *fix,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    json_array_append_new(s->list, json_pack("{s:s, s:s, s:s, s:s?}", "step", name, "state",
                                             state_names[st], "message", text, "fix", fix));
    free(text);
    if (st == MISSING)
        s->missing++;
}

/* What fixes a refused replication connection, from the server's words. */
static const char *connection_fix(const char *message)
{
    if (strstr(message, "pg_hba.conf"))
        return "add a line for the replication pseudo-database to pg_hba.conf, e.g. \"host "
               "replication ROLE ADDRESS/32 scram-sha-256\" with the role and address the "
               "message names, then SELECT pg_reload_conf();";
    if (strstr(message, "replication") &&
        (strstr(message, "permission denied") || strstr(message, "must be")))
        return "ALTER ROLE ROLE REPLICATION; (the role of the conninfo)";
    /* wal_level = minimal requires max_wal_senders = 0: no WAL sender, no connection. */
    if (strstr(message, "max_wal_senders"))
        return "ALTER SYSTEM SET wal_level = replica; ALTER SYSTEM SET max_wal_senders = 10; "
               "then restart the server";
    if (strstr(message, "password authentication failed") || strstr(message, "no password"))
        return "give the role's password in the conninfo, ~/.pgpass or PGPASSFILE";
    return NULL;
}

/* SHOW name on conn; the value (caller frees) or NULL with the error set. */
static char *show(struct pg_conn *conn, const char *name)
{
    char command[64];
    struct pg_rows *rows = NULL;
    snprintf(command, sizeof(command), "SHOW %s", name);
    if (pg_exec_simple(conn, command, &rows) < 0)
        return NULL;
    const char *v = rows ? pg_rows_value(rows, 0, 0) : NULL;
    char *out = v ? xstrdup(v) : NULL;
    if (!out)
        err_set(ERR_PROTOCOL, "%s returned no value", command);
    pg_rows_free(rows);
    return out;
}

/* A setting that must be at least min (a restart-only setting: the fix says so). */
static void setting_at_least(struct steps *s, struct pg_conn *conn, const char *name, long min,
                             long want)
{
    char *v = show(conn, name);
    if (!v) {
        char *e = cli_error_line(true);
        step(s, name, MISSING, NULL, "could not read %s: %s", name, e);
        free(e);
        return;
    }
    long n = strtol(v, NULL, 10);
    if (n >= min) {
        step(s, name, READY, NULL, "%s = %s", name, v);
    } else {
        char *fix = xasprintf("ALTER SYSTEM SET %s = %ld; then restart the server", name, want);
        step(s, name, MISSING, fix, "%s = %s: pgark needs at least %ld", name, v, min);
        free(fix);
    }
    free(v);
}

static void init_server(struct steps *s, const struct config_cluster *cl, bool *unsupported,
                        struct repo_identity *id, bool *have_id)
{
    struct pg_conn *conn = pg_connect_replication(cl->conninfo, "pgark_init");
    if (!conn) {
        char *e = cli_error_line(true);
        step(s, "connection", MISSING, connection_fix(e), "%s", e);
        free(e);
        return;
    }
    if (pg_check_supported(conn) < 0) {
        char *e = cli_error_line(true);
        step(s, "server_version", MISSING, NULL, "%s", e);
        free(e);
        *unsupported = true;
        goto out;
    }
    struct pg_system sys;
    uint64_t seg_size = 0;
    if (pg_identify_system(conn, &sys) < 0 || pg_wal_segment_size(conn, &seg_size) < 0) {
        char *e = cli_error_line(true);
        step(s, "connection", MISSING, NULL, "%s", e);
        free(e);
        goto out;
    }
    int v = pg_server_version(conn);
    *id = (struct repo_identity){sys.systemid, v / 10000, seg_size};
    *have_id = true;
    step(s, "connection", READY, NULL,
         "replication connection to \"%s\": PostgreSQL %d.%d, system %llu", pg_conn_target(conn),
         v / 10000, v % 10000, (unsigned long long)sys.systemid);

    /* wal_level is replica or logical here: minimal allows no WAL sender, so the
     * connection failed (its fix says so). One sender for the receiver, one for a
     * backup. */
    setting_at_least(s, conn, "max_wal_senders", 2, 10);
    setting_at_least(s, conn, "max_replication_slots", 1, 10);

    bool exists = false;
    lsn_t restart = LSN_INVALID;
    timeline_t restart_tli = 0;
    if (pg_read_slot(conn, cl->slot, &exists, &restart, &restart_tli) < 0) {
        char *e = cli_error_line(true);
        step(s, "slot", MISSING, NULL, "%s", e);
        free(e);
    } else if (exists) {
        step(s, "slot", READY, NULL, "replication slot \"%s\" exists", cl->slot);
    } else if (!cl->create_slot) {
        char *fix = xasprintf("SELECT pg_create_physical_replication_slot('%s', true); (or set "
                              "create_slot: true and run pgark init again)",
                              cl->slot);
        step(s, "slot", MISSING, fix, "replication slot \"%s\" does not exist", cl->slot);
        free(fix);
    } else if (pg_create_physical_slot(conn, cl->slot) < 0) {
        char *e = cli_error_line(true);
        step(s, "slot", MISSING, NULL, "could not create replication slot \"%s\": %s", cl->slot, e);
        free(e);
    } else {
        step(s, "slot", DONE, NULL, "replication slot \"%s\" created (it keeps WAL from now on)",
             cl->slot);
    }
out:
    pg_conn_free(conn);
}

static void init_repo(struct steps *s, const struct config *cfg, const struct config_cluster *cl,
                      const struct config_repo *cr, const struct repo_identity *id)
{
    char name[160];
    struct cli_repo opened;
    snprintf(name, sizeof(name), "repository:%s", cr->name);
    /* As it is first: one that exists must belong to this server. */
    int rc = cli_repo_open(cfg, cl, cr, CLI_REPO_READ, id, &opened);
    if (rc == 0) {
        step(s, name, READY, NULL, "repository \"%s\" holds cluster \"%s\" (system %llu%s)",
             cr->name, cl->name, (unsigned long long)id->system_identifier,
             repo_encrypted(opened.repo) ? ", encrypted" : "");
        goto out;
    }
    if (!opened.storage || err_kind() != ERR_NOT_FOUND) {
        char *e = cli_error_line(true);
        step(s, name, MISSING, NULL, "repository \"%s\": %s", cr->name, e);
        free(e);
        goto out;
    }
    err_clear();
    cli_repo_close(&opened);
    if (cli_repo_open(cfg, cl, cr, CLI_REPO_ARCHIVE, id, &opened) < 0) {
        char *e = cli_error_line(true);
        step(s, name, MISSING, NULL, "could not create cluster \"%s\" in repository \"%s\": %s",
             cl->name, cr->name, e);
        free(e);
        goto out;
    }
    step(s, name, DONE, NULL, "repository \"%s\": cluster \"%s\" created (system %llu%s)", cr->name,
         cl->name, (unsigned long long)id->system_identifier,
         repo_encrypted(opened.repo) ? ", encrypted" : "");
out:
    cli_repo_close(&opened);
}

static void print_human(const struct steps *s)
{
    size_t i;
    json_t *e;
    json_array_foreach(s->list, i, e)
    {
        const char *fix = json_string_value(json_object_get(e, "fix"));
        printf("%-7s %s\n", json_string_value(json_object_get(e, "state")),
               json_string_value(json_object_get(e, "message")));
        if (fix)
            printf("        fix: %s\n", fix);
    }
    if (s->missing)
        printf("%d step%s missing: fix %s and run pgark init again\n", s->missing,
               s->missing == 1 ? " is" : "s are", s->missing == 1 ? "it" : "them");
    else
        printf("ready: start pgark receive, then take the first backup with pgark backup\n");
}

int cmd_init(struct cli_context *ctx, int argc, char **argv)
{
    bool as_json = false;
    int args = cli_json_args(argc, argv, "init", &as_json);
    if (args != 0)
        return args < 0 ? 2 : 0;
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        return 2;
    const struct config_cluster *cl = config_cluster_find(cfg, ctx->cluster_name);
    if (!cl || cli_require_tls(cfg, cl) < 0)
        return 2;

    struct steps s = {json_array(), 0};
    bool unsupported = false, have_id = false;
    struct repo_identity id = {0};
    init_server(&s, cl, &unsupported, &id, &have_id);
    for (size_t i = 0; have_id && i < cl->nrepos; i++)
        init_repo(&s, cfg, cl, config_cluster_repo(cfg, cl, i), &id);
    if (!have_id && !unsupported)
        step(&s, "repositories", MISSING, NULL,
             "the repositories are created for the server's identity: once it can be reached");

    if (as_json) {
        json_t *root = json_pack("{s:s, s:b, s:O}", "cluster", cl->name, "ready", s.missing == 0,
                                 "steps", s.list);
        cli_print_json(root);
        json_decref(root);
    } else {
        print_human(&s);
    }
    json_decref(s.list);
    return unsupported ? 2 : s.missing ? 1 : 0;
}
