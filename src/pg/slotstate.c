/*
 * slotstate.c — a replication slot as pg_replication_slots shows it.
 *
 * A physical walsender (replication=true) cannot run SQL, READ_REPLICATION_SLOT does
 * not say whether the slot is active, and PostgreSQL 13 and 14 have no
 * READ_REPLICATION_SLOT at all; so this opens a second, normal connection from the same
 * conninfo, runs one parameterised query and closes it.
 */
#include "pgark/pg.h"

#include "conn_int.h"
#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool pg_int_names_dbname(const char *conninfo)
{
    if (!*conninfo)
        return getenv("PGDATABASE") != NULL;
    if (!pg_int_looks_like_conninfo(conninfo))
        return true;
    bool found = false;
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!strcmp(o->keyword, "dbname") && o->val && *o->val)
            found = true;
    }
    PQconninfoFree(opts);
    return found || getenv("PGDATABASE") != NULL;
}

int pg_int_slot_row(const char *conninfo, const char *slot, struct pg_slot_row *out)
{
    const char *keys[8], *vals[8];
    int n = 0, rc = 0;
    char **secrets;
    char *msg = NULL;
    PGconn *pq = NULL;
    PGresult *res = NULL;

    memset(out, 0, sizeof(*out));
    if (!conninfo)
        conninfo = "";
    secrets = pg_int_conninfo_secrets(conninfo);
    for (char **s = secrets; *s; s++)
        log_add_secret(*s);
    /* Keywords before the expanded conninfo are defaults it may override; those after
     * it win. */
    keys[n] = "connect_timeout", vals[n++] = "10";
    keys[n] = "fallback_application_name", vals[n++] = "pgark";
    keys[n] = "dbname", vals[n++] = conninfo;
    if (!pg_int_names_dbname(conninfo))
        keys[n] = "dbname", vals[n++] = "postgres";
    keys[n] = "replication", vals[n++] = "false";
    keys[n] = NULL, vals[n] = NULL;

    pq = PQconnectdbParams(keys, vals, 1);
    if (!pq || PQstatus(pq) != CONNECTION_OK) {
        const char *raw = pq ? PQerrorMessage(pq) : "out of memory";
        enum err_kind kind =
            pq ? pg_int_connect_error_kind(raw, PQconnectionNeedsPassword(pq) != 0) : ERR_CONNECT;
        msg = pg_int_clean_message(raw, secrets);
        rc =
            err_set(kind, "could not open an SQL connection to read pg_replication_slots: %s", msg);
        goto out;
    }
    const char *params[1] = {slot};
    res = PQexecParams(pq,
                       "SELECT slot_type, restart_lsn, active, active_pid FROM "
                       "pg_replication_slots WHERE slot_name = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        msg = pg_int_clean_message(primary ? primary : PQerrorMessage(pq), secrets);
        rc = err_set(pg_int_sqlstate_kind(PQresultErrorField(res, PG_DIAG_SQLSTATE),
                                          PQstatus(pq) == CONNECTION_OK),
                     "could not read pg_replication_slots: %s", msg);
        goto out;
    }
    if (PQntuples(res) == 1 && PQnfields(res) == 4) {
        out->exists = true;
        snprintf(out->type, sizeof(out->type), "%s", PQgetvalue(res, 0, 0));
        if (!PQgetisnull(res, 0, 1) &&
            (rc = pg_int_parse_lsn("restart_lsn", PQgetvalue(res, 0, 1), &out->restart_lsn)) < 0)
            goto out;
        out->active = !strcmp(PQgetvalue(res, 0, 2), "t");
        if (!PQgetisnull(res, 0, 3))
            out->active_pid = atoi(PQgetvalue(res, 0, 3));
    }
out:
    free(msg);
    PQclear(res);
    if (pq)
        PQfinish(pq);
    pg_int_secrets_free(secrets);
    return rc;
}

int pg_slot_active(const char *conninfo, const char *slot, bool *exists, bool *active,
                   int *active_pid)
{
    struct pg_slot_row row;
    int rc = pg_int_slot_row(conninfo, slot, &row);
    *exists = row.exists;
    *active = row.active;
    *active_pid = row.active_pid;
    return rc;
}
