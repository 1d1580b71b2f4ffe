/*
 * stream.c — replication slots, timeline history and the physical WAL stream
 * (see include/pgark/pg_stream.h).
 */
#include "pgark/pg_stream.h"

#include "conn_int.h"
#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a server may take to end a stream (ours or its own) before we give up. */
#define STREAM_END_WAIT_S 3

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Slot names are checked by the config; quote anyway so nothing else can get in. */
static int check_slot_name(const char *slot)
{
    if (!*slot || strspn(slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(slot))
        return err_set(ERR_CONFIG, "invalid replication slot name \"%s\"", slot);
    return 0;
}

/* The timeline that owns lsn on the server now: what READ_REPLICATION_SLOT computes
 * for restart_tli, from the current timeline's history. */
static int timeline_of(struct pg_conn *conn, lsn_t lsn, timeline_t *out)
{
    struct pg_system sys;
    struct timeline_history *h = NULL;
    uint8_t *content = NULL;
    size_t len = 0;
    int rc = pg_identify_system(conn, &sys);
    if (rc < 0)
        return rc;
    *out = sys.timeline;
    if (sys.timeline <= 1)
        return 0;
    rc = pg_timeline_history(conn, sys.timeline, &content, &len);
    if (rc == 0)
        rc = timeline_history_parse(sys.timeline, (const char *)content, len, &h);
    if (rc == 0)
        *out = timeline_history_tli_at(h, lsn);
    timeline_history_free(h);
    free(content);
    return rc;
}

/* PostgreSQL 13 and 14 have no READ_REPLICATION_SLOT: pg_replication_slots over SQL. */
static int read_slot_sql(struct pg_conn *conn, const char *slot, bool *exists, lsn_t *restart_lsn,
                         timeline_t *restart_tli)
{
    struct pg_slot_row row;
    int rc = pg_int_slot_row(conn->conninfo, slot, &row);
    if (rc < 0) {
        err_context("while reading replication slot \"%s\" of server \"%s\" (PostgreSQL 13 and "
                    "14 show slots only to SQL)",
                    slot, conn->target);
        return err_hint("PostgreSQL 13 and 14 show replication slots only to SQL: pgark also "
                        "opens a normal connection, to database \"postgres\" unless the conninfo "
                        "names one, which pg_hba.conf must allow");
    }
    if (!row.exists)
        return 0;
    if (strcmp(row.type, "physical") != 0)
        return err_set(ERR_CONFIG, "replication slot \"%s\" on server \"%s\" is %s, not physical",
                       slot, conn->target, row.type);
    *exists = true;
    *restart_lsn = row.restart_lsn;
    if (row.restart_lsn != LSN_INVALID)
        rc = timeline_of(conn, row.restart_lsn, restart_tli);
    return rc;
}

int pg_read_slot(struct pg_conn *conn, const char *slot, bool *exists, lsn_t *restart_lsn,
                 timeline_t *restart_tli)
{
    struct pg_rows *rows = NULL;
    char command[128];
    int rc = check_slot_name(slot);
    if (rc < 0)
        return rc;
    *exists = false;
    *restart_lsn = LSN_INVALID;
    *restart_tli = 0;
    if (PQserverVersion(conn->pq) < 150000)
        return read_slot_sql(conn, slot, exists, restart_lsn, restart_tli);
    snprintf(command, sizeof(command), "READ_REPLICATION_SLOT %s", slot);
    rc = pg_exec_simple(conn, command, &rows);
    if (rc < 0)
        goto out;
    if (!rows || rows->nrows != 1 || rows->ncols < 3) {
        rc = err_set(ERR_PROTOCOL, "READ_REPLICATION_SLOT on server \"%s\" returned no row",
                     conn->target);
        goto out;
    }
    const char *type = pg_rows_value(rows, 0, 0);
    if (!type)
        goto out; /* unknown slot: a row of NULLs */
    if (strcmp(type, "physical") != 0) {
        rc = err_set(ERR_CONFIG, "replication slot \"%s\" on server \"%s\" is %s, not physical",
                     slot, conn->target, type);
        goto out;
    }
    *exists = true;
    const char *lsn = pg_rows_value(rows, 0, 1), *tli = pg_rows_value(rows, 0, 2);
    if (lsn && (rc = pg_int_parse_lsn("restart_lsn", lsn, restart_lsn)) < 0)
        goto out;
    if (tli && (rc = pg_int_parse_tli("restart_tli", tli, restart_tli)) < 0)
        goto out;
out:
    pg_rows_free(rows);
    return rc;
}

int pg_create_physical_slot(struct pg_conn *conn, const char *slot)
{
    char command[160];
    int rc = check_slot_name(slot);
    if (rc < 0)
        return rc;
    snprintf(command, sizeof(command), "CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", slot);
    struct pg_rows *rows = NULL;
    rc = pg_exec_simple(conn, command, &rows);
    pg_rows_free(rows);
    return rc;
}

int pg_timeline_history(struct pg_conn *conn, timeline_t tli, uint8_t **content, size_t *len)
{
    char command[64], expect[32];
    snprintf(command, sizeof(command), "TIMELINE_HISTORY %u", tli);
    snprintf(expect, sizeof(expect), "%08X.history", tli);
    PGresult *res = PQexec(conn->pq, command);
    int rc = 0;
    *content = NULL;
    *len = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_conn_command_error(conn, command, res);
        goto out;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 2) {
        rc = err_set(ERR_PROTOCOL, "%s on server \"%s\" returned an unexpected result", command,
                     conn->target);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), expect) != 0) {
        rc = err_set(ERR_PROTOCOL, "%s on server \"%s\" returned file \"%s\", expected \"%s\"",
                     command, conn->target, PQgetvalue(res, 0, 0), expect);
        goto out;
    }
    *len = (size_t)PQgetlength(res, 0, 1);
    *content = xmalloc(*len + 1);
    memcpy(*content, PQgetvalue(res, 0, 1), *len);
    (*content)[*len] = '\0';
out:
    PQclear(res);
    return rc;
}

int pg_start_replication(struct pg_conn *conn, const char *slot, lsn_t start, timeline_t tli)
{
    char command[200], pos[LSN_STRLEN];
    int rc = 0;
    if (slot && (rc = check_slot_name(slot)) < 0)
        return rc;
    snprintf(command, sizeof(command), "START_REPLICATION %s%s PHYSICAL %s TIMELINE %u",
             slot ? "SLOT " : "", slot ? slot : "", lsn_format(start, pos), tli);
    PGresult *res = PQexec(conn->pq, command);
    switch (PQresultStatus(res)) {
    case PGRES_COPY_BOTH:
        break;
    case PGRES_TUPLES_OK:
        /* Asking for exactly the switch point of an old timeline skips the COPY; the
         * caller sees an immediate end of stream. Put the result back for stream_end. */
        rc = err_set(ERR_PROTOCOL, "%s on server \"%s\": the timeline ends at the start point",
                     command, conn->target);
        break;
    default:
        rc = pg_conn_command_error(conn, command, res);
        break;
    }
    PQclear(res);
    return rc;
}

int pg_stream_socket(struct pg_conn *conn)
{
    return PQsocket(conn->pq);
}

static int lost(struct pg_conn *conn, const char *what)
{
    char *text = pg_int_clean_message(PQerrorMessage(conn->pq), conn->secrets);
    int rc = err_set(ERR_CONNECT, "%s server \"%s\": %s", what, conn->target,
                     *text ? text : "connection lost");
    free(text);
    return rc;
}

int pg_stream_read(struct pg_conn *conn, int timeout_ms, struct pg_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    if (conn->copybuf) {
        PQfreemem(conn->copybuf);
        conn->copybuf = NULL;
    }
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(conn->pq, &buf, 1);
        if (n == 0) {
            if (timeout_ms <= 0)
                return 0;
            struct pollfd p = {.fd = PQsocket(conn->pq), .events = POLLIN};
            int r = poll(&p, 1, timeout_ms);
            if (r < 0 && errno != EINTR)
                return err_set_errno(ERR_CONNECT, errno, "could not wait for server \"%s\"",
                                     conn->target);
            if (r <= 0)
                return 0; /* timeout or signal: let the caller look around */
            if (PQconsumeInput(conn->pq) == 0)
                return lost(conn, "could not receive data from");
            timeout_ms = 0; /* read what arrived, do not wait again */
            continue;
        }
        if (n == -1) {
            msg->kind = PG_MSG_END;
            return 0;
        }
        if (n < 0)
            return lost(conn, "could not read the WAL stream from");
        conn->copybuf = buf;
        const uint8_t *p = (const uint8_t *)buf;
        switch (p[0]) {
        case 'w':
            if (n < 25)
                return err_set(ERR_PROTOCOL, "server \"%s\" sent a WAL message of %d bytes",
                               conn->target, n);
            msg->kind = PG_MSG_XLOGDATA;
            msg->data_start = get_be64(p + 1);
            msg->wal_end = get_be64(p + 9);
            msg->send_time_us = (int64_t)get_be64(p + 17) + PG_EPOCH_OFFSET_US;
            msg->data = p + 25;
            msg->len = (size_t)n - 25;
            return 0;
        case 'k':
            if (n < 18)
                return err_set(ERR_PROTOCOL, "server \"%s\" sent a keepalive of %d bytes",
                               conn->target, n);
            msg->kind = PG_MSG_KEEPALIVE;
            msg->wal_end = get_be64(p + 1);
            msg->send_time_us = (int64_t)get_be64(p + 9) + PG_EPOCH_OFFSET_US;
            msg->reply_requested = p[17] != 0;
            return 0;
        default:
            /* Newer servers may send types we do not know: skip them. */
            PQfreemem(buf);
            conn->copybuf = NULL;
            continue;
        }
    }
}

int pg_stream_status(struct pg_conn *conn, lsn_t write, lsn_t flush, lsn_t apply,
                     bool reply_requested)
{
    uint8_t m[34];
    m[0] = 'r';
    put_be64(m + 1, write);
    put_be64(m + 9, flush);
    put_be64(m + 17, apply);
    put_be64(m + 25, (uint64_t)(time_now_us() - PG_EPOCH_OFFSET_US));
    m[33] = reply_requested ? 1 : 0;
    if (PQputCopyData(conn->pq, (const char *)m, sizeof(m)) <= 0 || PQflush(conn->pq) != 0)
        return lost(conn, "could not send status to");
    return 0;
}

/* Skip the rest of a COPY the server is still sending, until it ends it. */
static int drain_copy(struct pg_conn *conn, int64_t deadline_us);

/* Wait for input from the server until deadline (monotonic microseconds), and take
 * it in. A server that stays silent (hung, or stopped) must not hold a stop. */
static int wait_input(struct pg_conn *conn, int64_t deadline_us, const char *what)
{
    int64_t left = deadline_us - time_mono_us();
    if (left <= 0)
        return err_set(ERR_CONNECT, "server \"%s\" did not %s within %d s", conn->target, what,
                       STREAM_END_WAIT_S);
    struct pollfd p = {.fd = PQsocket(conn->pq), .events = POLLIN};
    int r = poll(&p, 1, (int)((left + 999) / 1000));
    if (r < 0 && errno != EINTR)
        return err_set_errno(ERR_CONNECT, errno, "could not wait for server \"%s\"", conn->target);
    if (r > 0 && PQconsumeInput(conn->pq) == 0)
        return lost(conn, "lost connection to");
    return 0;
}

static int drain_copy(struct pg_conn *conn, int64_t deadline_us)
{
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(conn->pq, &buf, 1);
        if (n > 0) {
            PQfreemem(buf);
            continue;
        }
        if (n == -1)
            return 0;
        if (n < -1)
            return lost(conn, "could not read the WAL stream from");
        int rc = wait_input(conn, deadline_us, "end the stream");
        if (rc < 0)
            return rc;
    }
}

/* Collect results until NULL; the first error wins. */
static int drain_results(struct pg_conn *conn, const char *what, timeline_t *next_tli,
                         lsn_t *next_start, int64_t deadline_us)
{
    PGresult *res;
    int rc = 0;
    for (;;) {
        while (PQisBusy(conn->pq)) {
            int rc2 = wait_input(conn, deadline_us, "end the stream");
            if (rc2 < 0)
                return rc ? rc : rc2;
        }
        if ((res = PQgetResult(conn->pq)) == NULL)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH) {
            if (PQputCopyEnd(conn->pq, NULL) <= 0 || PQflush(conn->pq) != 0)
                rc = rc ? rc : lost(conn, "could not end the stream on");
        } else if (st == PGRES_COPY_OUT) {
            int rc2 = drain_copy(conn, deadline_us);
            if (rc2 < 0)
                rc = rc ? rc : rc2;
        } else if (st == PGRES_TUPLES_OK && next_tli && PQnfields(res) >= 2 &&
                   PQntuples(res) == 1) {
            if (rc == 0 &&
                (pg_int_parse_tli("next_tli", PQgetvalue(res, 0, 0), next_tli) < 0 ||
                 pg_int_parse_lsn("next_tli_startpos", PQgetvalue(res, 0, 1), next_start) < 0))
                rc = err_code();
        } else if (st == PGRES_FATAL_ERROR) {
            if (rc == 0)
                rc = pg_conn_command_error(conn, what, res);
        }
        PQclear(res);
        if (PQstatus(conn->pq) == CONNECTION_BAD) {
            rc = rc ? rc : lost(conn, "lost connection to");
            break;
        }
    }
    return rc;
}

int pg_stream_end(struct pg_conn *conn, timeline_t *next_tli, lsn_t *next_start)
{
    *next_tli = 0;
    *next_start = LSN_INVALID;
    int rc = drain_results(conn, "START_REPLICATION", next_tli, next_start,
                           time_mono_us() + STREAM_END_WAIT_S * 1000000);
    if (rc == 0 && *next_tli == 0)
        rc = err_set(ERR_PROTOCOL,
                     "server \"%s\" ended the WAL stream without naming the next "
                     "timeline",
                     conn->target);
    return rc;
}

int pg_stream_stop(struct pg_conn *conn)
{
    int64_t deadline = time_mono_us() + STREAM_END_WAIT_S * 1000000;
    if (PQputCopyEnd(conn->pq, NULL) <= 0 || PQflush(conn->pq) != 0)
        return lost(conn, "could not stop the stream on");
    int rc = drain_copy(conn, deadline);
    if (rc == 0)
        rc = drain_results(conn, "START_REPLICATION", NULL, NULL, deadline);
    return rc;
}
