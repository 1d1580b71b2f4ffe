/*
 * conn_int.h — the connection struct, shared by the files of src/pg only (they are
 * the only ones allowed to see libpq).
 */
#ifndef PGARK_PG_CONN_INT_H
#define PGARK_PG_CONN_INT_H

#include "pgark/pg.h"

#include <libpq-fe.h>

struct pg_conn {
    PGconn *pq;
    char **secrets; /* masked in every message this connection produces */
    char *target;
    char *conninfo; /* as given: a second, SQL connection is opened from it (slotstate.c) */
    char *copybuf;  /* last PQgetCopyData buffer, freed on the next read */
};

/* Record the server's error for command with its SQLSTATE's kind; returns the code. */
int pg_conn_command_error(struct pg_conn *conn, const char *command, const PGresult *res);

/* What pg_replication_slots says of one slot, over a second, normal connection opened
 * from conninfo (a physical walsender runs no SQL). *exists false when there is no
 * such slot; type, restart_lsn (LSN_INVALID when NULL), active and active_pid
 * otherwise. Errors: ERR_AUTH/ERR_CONNECT/... as for a connection, or the query's. */
struct pg_slot_row {
    bool exists;
    char type[16]; /* "physical", "logical" */
    lsn_t restart_lsn;
    bool active;
    int active_pid;
};
int pg_int_slot_row(const char *conninfo, const char *slot, struct pg_slot_row *out);

#endif
