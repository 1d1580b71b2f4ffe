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
    char *copybuf; /* last PQgetCopyData buffer, freed on the next read */
};

/* Record the server's error for command with its SQLSTATE's kind; returns the code. */
int pg_conn_command_error(struct pg_conn *conn, const char *command, const PGresult *res);

#endif
