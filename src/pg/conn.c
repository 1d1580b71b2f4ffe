/*
 * conn.c — the replication connection (and a normal one, for SQL): connect, simple
 * commands, IDENTIFY_SYSTEM, server version and WAL segment size. The only file that
 * holds a PGconn.
 */
#include "pgark/pg.h"

#include "conn_int.h"
#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pgmajor.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/* Seconds (libpq's connect_timeout) when neither the conninfo nor the environment
 * says. */
#define PG_DEFAULT_CONNECT_TIMEOUT "10"

/* Add the hint a DBA needs for the usual refusals. */
static void connect_hint(const char *msg, const char *user)
{
    if (strstr(msg, "must be superuser or replication role"))
        err_hint("grant the role replication: ALTER ROLE \"%s\" REPLICATION", user);
    else if (strstr(msg, "no pg_hba.conf entry"))
        err_hint("pg_hba.conf needs a line for database \"replication\" and user \"%s\"", user);
    else if (strstr(msg, "no password supplied"))
        err_hint("give the password in a password file (~/.pgpass or PGPASSFILE) or in conninfo");
}

static struct pg_conn *connect_to(const char *conninfo, const char *application_name,
                                  bool replication)
{
    struct pg_conn *conn = xcalloc(1, sizeof(*conn));
    const char *keys[8];
    const char *vals[8];
    int n = 0;
    char *msg = NULL;

    if (!conninfo)
        conninfo = "";
    conn->conninfo = xstrdup(conninfo);
    conn->secrets = pg_int_conninfo_secrets(conninfo);
    for (char **s = conn->secrets; *s; s++)
        log_add_secret(*s);

    /* A malformed conninfo is a configuration error, not a failed connection. */
    if (pg_int_looks_like_conninfo(conninfo)) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);

        if (!opts) {
            msg = pg_int_clean_message(perr ? perr : "out of memory", conn->secrets);
            err_set(ERR_CONFIG, "invalid conninfo: %s", msg);
            PQfreemem(perr);
            goto fail;
        }
        PQconninfoFree(opts);
    }

    /* A server that accepts the connection and then says nothing (a stopped
     * postmaster, a lost network) must not hang us forever. Before dbname, so that
     * the conninfo's own connect_timeout wins; PGCONNECT_TIMEOUT wins too. */
    if (!getenv("PGCONNECT_TIMEOUT"))
        keys[n] = "connect_timeout", vals[n++] = PG_DEFAULT_CONNECT_TIMEOUT;
    /* Later keywords override what the expanded conninfo says. */
    keys[n] = "dbname", vals[n++] = conninfo;
    if (replication) {
        keys[n] = "replication", vals[n++] = "true";
    } else {
        /* A normal connection goes to a database: "postgres" unless one is named (libpq
         * would take the user's name). */
        if (!pg_int_names_dbname(conninfo))
            keys[n] = "dbname", vals[n++] = "postgres";
        keys[n] = "replication", vals[n++] = "false";
    }
    if (application_name)
        keys[n] = "application_name", vals[n++] = application_name;
    else
        keys[n] = "fallback_application_name", vals[n++] = "pgark";
    keys[n] = NULL, vals[n] = NULL;

    conn->pq = PQconnectdbParams(keys, vals, 1);
    if (!conn->pq) {
        err_set(ERR_CONNECT, "could not connect to the server: out of memory");
        goto fail;
    }
    if (PQstatus(conn->pq) != CONNECTION_OK) {
        const char *raw = PQerrorMessage(conn->pq);
        enum err_kind kind =
            pg_int_connect_error_kind(raw, PQconnectionNeedsPassword(conn->pq) != 0);

        msg = pg_int_clean_message(raw, conn->secrets);
        err_set(kind, "%s", msg);
        connect_hint(msg, PQuser(conn->pq) ? PQuser(conn->pq) : "");
        goto fail;
    }
    {
        const char *host = PQhost(conn->pq);
        const char *port = PQport(conn->pq);

        conn->target =
            xasprintf("%s:%s", host && *host ? host : "localhost", port && *port ? port : "5432");
    }
    free(msg);
    return conn;

fail:
    free(msg);
    pg_conn_free(conn);
    return NULL;
}

struct pg_conn *pg_connect_replication(const char *conninfo, const char *application_name)
{
    return connect_to(conninfo, application_name, true);
}

struct pg_conn *pg_connect_sql(const char *conninfo, const char *application_name)
{
    return connect_to(conninfo, application_name, false);
}

void pg_conn_free(struct pg_conn *conn)
{
    if (!conn)
        return;
    if (conn->copybuf)
        PQfreemem(conn->copybuf);
    if (conn->pq)
        PQfinish(conn->pq);
    pg_int_secrets_free(conn->secrets);
    free(conn->target);
    free(conn->conninfo);
    free(conn);
}

const char *pg_conn_target(const struct pg_conn *conn)
{
    return conn->target;
}

int pg_server_version(const struct pg_conn *conn)
{
    return PQserverVersion(conn->pq);
}

int pg_check_supported(const struct pg_conn *conn)
{
    int major = PQserverVersion(conn->pq) / 10000;
    if (pgmajor_supported(major))
        return 0;
    return pgmajor_refuse(conn->target, major, PQparameterStatus(conn->pq, "server_version"));
}

static struct pg_rows *rows_from_result(const PGresult *res)
{
    struct pg_rows *rows = xcalloc(1, sizeof(*rows));

    rows->nrows = PQntuples(res);
    rows->ncols = PQnfields(res);
    rows->names = xcalloc((size_t)rows->ncols + 1, sizeof(char *));
    rows->values = xcalloc((size_t)rows->nrows * (size_t)rows->ncols + 1, sizeof(char *));
    for (int c = 0; c < rows->ncols; c++)
        rows->names[c] = xstrdup(PQfname(res, c));
    for (int r = 0; r < rows->nrows; r++)
        for (int c = 0; c < rows->ncols; c++)
            if (!PQgetisnull(res, r, c))
                rows->values[(size_t)r * (size_t)rows->ncols + (size_t)c] =
                    xstrndup(PQgetvalue(res, r, c), (size_t)PQgetlength(res, r, c));
    return rows;
}

int pg_conn_command_error(struct pg_conn *conn, const char *command, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
    const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    bool ok = PQstatus(conn->pq) == CONNECTION_OK;
    enum err_kind kind = pg_int_sqlstate_kind(sqlstate, ok);
    char *text;
    int rc;

    if (primary && detail) {
        char *both = xasprintf("%s (%s)", primary, detail);

        text = pg_int_clean_message(both, conn->secrets);
        free(both);
    } else {
        text = pg_int_clean_message(primary ? primary : PQerrorMessage(conn->pq), conn->secrets);
    }
    rc = err_set(kind, "command \"%s\" failed on server \"%s\": %s", command, conn->target, text);
    if (hint)
        err_hint("%s", hint);
    free(text);
    return rc;
}

int pg_exec_simple(struct pg_conn *conn, const char *command, struct pg_rows **out)
{
    PGresult *res = PQexec(conn->pq, command);
    int rc = 0;

    if (out)
        *out = NULL;
    switch (res ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
    case PGRES_TUPLES_OK:
        if (out)
            *out = rows_from_result(res);
        break;
    case PGRES_COMMAND_OK:
        break;
    case PGRES_FATAL_ERROR:
    case PGRES_NONFATAL_ERROR:
        rc = pg_conn_command_error(conn, command, res);
        break;
    default:
        /* COPY and friends need their own handling; PQexec cannot drive them. */
        rc = err_set(ERR_PROTOCOL, "command \"%s\" on server \"%s\" answered with %s", command,
                     conn->target, PQresStatus(PQresultStatus(res)));
        break;
    }
    PQclear(res);
    return rc;
}

const char *pg_rows_value(const struct pg_rows *rows, int row, int col)
{
    if (!rows || row < 0 || col < 0 || row >= rows->nrows || col >= rows->ncols)
        return NULL;
    return rows->values[(size_t)row * (size_t)rows->ncols + (size_t)col];
}

void pg_rows_free(struct pg_rows *rows)
{
    if (!rows)
        return;
    for (int c = 0; c < rows->ncols; c++)
        free(rows->names[c]);
    for (size_t i = 0; i < (size_t)rows->nrows * (size_t)rows->ncols; i++)
        free(rows->values[i]);
    free(rows->names);
    free(rows->values);
    free(rows);
}

int pg_identify_system(struct pg_conn *conn, struct pg_system *out)
{
    struct pg_rows *rows = NULL;
    struct pg_system sys = {0};
    int rc = pg_exec_simple(conn, "IDENTIFY_SYSTEM", &rows);

    if (rc < 0)
        goto out;
    if (!rows || rows->nrows != 1 || rows->ncols < 3) {
        rc = err_set(ERR_PROTOCOL,
                     "IDENTIFY_SYSTEM on server \"%s\" returned %d rows and %d columns, "
                     "expected 1 row with at least 3",
                     conn->target, rows ? rows->nrows : 0, rows ? rows->ncols : 0);
        goto out;
    }
    if ((rc = pg_int_parse_u64("systemid", pg_rows_value(rows, 0, 0), &sys.systemid)) < 0 ||
        (rc = pg_int_parse_tli("timeline", pg_rows_value(rows, 0, 1), &sys.timeline)) < 0 ||
        (rc = pg_int_parse_lsn("xlogpos", pg_rows_value(rows, 0, 2), &sys.xlogpos)) < 0) {
        err_context("while identifying server \"%s\"", conn->target);
        goto out;
    }
    *out = sys;
out:
    pg_rows_free(rows);
    return rc;
}

int pg_wal_segment_size(struct pg_conn *conn, uint64_t *out)
{
    struct pg_rows *rows = NULL;
    int rc = pg_exec_simple(conn, "SHOW wal_segment_size", &rows);

    if (rc < 0)
        goto out;
    if (!rows || rows->nrows != 1 || rows->ncols != 1) {
        rc = err_set(ERR_PROTOCOL, "SHOW wal_segment_size on server \"%s\" returned no value",
                     conn->target);
        goto out;
    }
    /* TODO(wal): use wal_seg_size_parse_show from wal.h once it lands. */
    rc = pg_int_parse_seg_size(pg_rows_value(rows, 0, 0), out);
    if (rc < 0)
        err_context("while reading the WAL segment size of server \"%s\"", conn->target);
out:
    pg_rows_free(rows);
    return rc;
}
