/*
 * pg.h — the replication connection to a PostgreSQL server (and a normal one, for SQL).
 *
 * Promise: this module is the only place that speaks libpq; PGconn never leaves it.
 * A connection is opened as a physical walsender (replication=true), so it accepts
 * replication commands (IDENTIFY_SYSTEM, READ_REPLICATION_SLOT, TIMELINE_HISTORY, ...)
 * and SHOW. Every failure is recorded in the error slot with the server's own words,
 * trimmed to one line and with any password from the conninfo masked; the password
 * is never part of a message.
 */
#ifndef PGARK_PG_H
#define PGARK_PG_H

#include "pgark/wal.h"

#include <stdbool.h>
#include <stdint.h>

struct pg_conn;

/* What IDENTIFY_SYSTEM reports. */
struct pg_system {
    uint64_t systemid; /* pg_control_system().system_identifier */
    timeline_t timeline;
    lsn_t xlogpos; /* the server's current flush position */
};

/* Rows of a simple-query result, as text. */
struct pg_rows {
    int nrows;
    int ncols;
    char **names;  /* ncols column names */
    char **values; /* nrows * ncols, row-major; NULL for SQL NULL */
};

/*
 * Open a replication connection. conninfo is a keyword=value string or a
 * postgresql:// URI (empty means libpq's defaults and PG* environment variables).
 * replication=true is forced. application_name, when not NULL, overrides any in
 * conninfo (it is what synchronous_standby_names matches); when NULL, "pgark" is used
 * unless conninfo or PGAPPNAME name one.
 * Returns the connection (free with pg_conn_free) or NULL with the error set:
 * ERR_AUTH when the server refused us (bad password, no pg_hba entry, role without
 * REPLICATION), ERR_TRANSIENT when it cannot accept connections now (starting up,
 * too many clients), ERR_CONFIG for a malformed conninfo, else ERR_CONNECT.
 */
struct pg_conn *pg_connect_replication(const char *conninfo, const char *application_name);
/* The same without replication: a normal connection that runs SQL (drill's checks on the
 * server it restored, the primary's last commit), to database "postgres" unless conninfo
 * (or PGDATABASE) names one. Same errors; the connect timeout and application_name as
 * above. */
struct pg_conn *pg_connect_sql(const char *conninfo, const char *application_name);
void pg_conn_free(struct pg_conn *conn);

/* "host:port" (or "socket dir:port") of the server, for messages; owned by conn. */
const char *pg_conn_target(const struct pg_conn *conn);

/* Server version as PQserverVersion: 150018 for 15.18. */
int pg_server_version(const struct pg_conn *conn);

/* 0 when the server's major is one pgark supports (pgmajor.h), else ERR_CONFIG naming
 * the server, its version and the supported range. Every command calls it right after
 * connecting, before it creates anything on the server or in a repository. */
int pg_check_supported(const struct pg_conn *conn);

/* IDENTIFY_SYSTEM. ERR_PROTOCOL if the answer is not one well-formed row. */
int pg_identify_system(struct pg_conn *conn, struct pg_system *out);

/* SHOW wal_segment_size, in bytes. ERR_PROTOCOL if not a valid segment size. */
int pg_wal_segment_size(struct pg_conn *conn, uint64_t *out);

/* Whether the value of synchronous_standby_names names application_name (bare names
 * case-insensitively, "quoted" ones exactly) or is "*": the server would then wait on
 * a standby of that name to commit (when it is the one chosen). */
bool pg_sync_names_list(const char *setting, const char *application_name);
/* The same, asked of the server (SHOW, which a replication connection may run). Errors
 * as pg_exec_simple; ERR_PROTOCOL without a value. */
int pg_sync_standby_listed(struct pg_conn *conn, const char *application_name, bool *listed);

/*
 * Run one command with the simple query protocol and collect its rows as text.
 * *out receives the rows (free with pg_rows_free) or NULL when the command returns
 * none; pass out = NULL when no rows are expected. A server error is recorded with its
 * message (hint as err_hint) and kind by SQLSTATE: duplicate object → ERR_EXISTS,
 * undefined object → ERR_NOT_FOUND, privilege → ERR_AUTH, lost connection →
 * ERR_CONNECT, else ERR_RUNTIME.
 */
int pg_exec_simple(struct pg_conn *conn, const char *command, struct pg_rows **out);

/*
 * Whether replication slot `slot` exists and is in use (active, active_pid of
 * pg_replication_slots). A walsender cannot run SQL, so this opens and closes a second,
 * normal connection from the same conninfo: database "postgres" unless conninfo (or
 * PGDATABASE) names one, connect_timeout 10 s unless conninfo sets one. Errors as for
 * pg_connect_replication, or the query's (ERR_AUTH without the privilege to read it).
 */
int pg_slot_active(const char *conninfo, const char *slot, bool *exists, bool *active,
                   int *active_pid);

/*
 * How conninfo will reach its server, found without connecting: the conninfo's own
 * keywords, then what libpq takes from the environment (PGHOST, PGHOSTADDR,
 * PGSSLMODE) and its defaults. A host that is an absolute path is a Unix socket
 * directory, and no host at all means the default socket: neither is TCP. (An sslmode
 * set in a pg_service.conf service is not seen.)
 */
struct pg_transport {
    bool tcp;         /* some host is reached over TCP (a host name, an address, hostaddr) */
    char host[256];   /* the first such host, for messages ("" when not tcp) */
    char sslmode[16]; /* "disable" ... "verify-full"; libpq's default "prefer" if unset */
    bool sslmode_set; /* the conninfo or PGSSLMODE set it */
};

/* Fill out for conninfo. ERR_CONFIG (password masked) when libpq cannot parse it. */
int pg_conninfo_transport(const char *conninfo, struct pg_transport *out);

/* Does this sslmode authenticate the server? Only verify-full does: prefer and allow
 * may not even encrypt, require does not check the certificate, verify-ca does not
 * check that it names the host. */
bool pg_sslmode_authenticates(const char *sslmode);

/* Value at (row, col), NULL for SQL NULL or out of range. */
const char *pg_rows_value(const struct pg_rows *rows, int row, int col);
void pg_rows_free(struct pg_rows *rows);

#endif
