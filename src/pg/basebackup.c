/*
 * basebackup.c — BASE_BACKUP driven over libpq (see include/pgark/pg_basebackup.h).
 *
 * The result sets arrive in a fixed order: start position, tablespace list, then the
 * archives (one COPY in the streamed protocol of 15+; one COPY per tablespace and one
 * for the manifest in 13/14), then the end position and CommandComplete. PQexec would
 * keep only the last result, so this is a PQsendQuery + PQgetResult loop that counts
 * the tuple results to know which one it holds.
 */
#include "pgark/pg_basebackup.h"

#include "conn_int.h"
#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#define BB_COMMAND "BASE_BACKUP"

static void append_quoted(struct buf *b, const char *s)
{
    buf_append(b, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            buf_append(b, "'", 1);
        buf_append(b, s, 1);
    }
    buf_append(b, "'", 1);
}

char *pg_bb_command(int server_version, const struct pg_bb_options *o)
{
    struct buf b = BUF_INIT;

    buf_append_str(&b, BB_COMMAND);
    if (server_version >= 150000) {
        /* WAIT false: the backup puts its WAL in the archive itself (from pg_wal in
         * base.tar), so there is nothing for the server to wait for. */
        buf_append_str(&b, " (");
        if (o->label) {
            buf_append_str(&b, "LABEL ");
            append_quoted(&b, o->label);
            buf_append_str(&b, ", ");
        }
        if (o->progress)
            buf_append_str(&b, "PROGRESS, ");
        buf_appendf(&b, "CHECKPOINT '%s', ", o->fast_checkpoint ? "fast" : "spread");
        if (o->wal)
            buf_append_str(&b, "WAL, ");
        buf_append_str(&b, "WAIT false, ");
        if (o->max_rate_kb)
            buf_appendf(&b, "MAX_RATE %u, ", o->max_rate_kb);
        if (o->manifest)
            buf_append_str(&b, "MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', ");
        if (o->incremental && server_version >= 170000)
            buf_append_str(&b, "INCREMENTAL, ");
        buf_append_str(&b, "TARGET 'client')");
    } else {
        if (o->label) {
            buf_append_str(&b, " LABEL ");
            append_quoted(&b, o->label);
        }
        if (o->progress)
            buf_append_str(&b, " PROGRESS");
        if (o->fast_checkpoint)
            buf_append_str(&b, " FAST");
        if (o->wal)
            buf_append_str(&b, " WAL");
        buf_append_str(&b, " NOWAIT");
        if (o->max_rate_kb)
            buf_appendf(&b, " MAX_RATE %u", o->max_rate_kb);
        if (o->manifest)
            buf_append_str(&b, " MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'");
    }
    return buf_steal(&b);
}

void pg_bb_info_free(struct pg_bb_info *info)
{
    if (!info)
        return;
    for (size_t i = 0; i < info->ntablespaces; i++)
        free(info->tablespaces[i].location);
    free(info->tablespaces);
    memset(info, 0, sizeof(*info));
}

static int shape_error(struct pg_conn *conn, const char *what, const PGresult *res)
{
    return err_set(ERR_PROTOCOL,
                   "BASE_BACKUP on server \"%s\": %s has %d rows and %d columns, expected "
                   "a position and a timeline",
                   conn->target, what, PQntuples(res), PQnfields(res));
}

/* "recptr", "tli": the start or end position. */
static int parse_position(struct pg_conn *conn, const char *what, const PGresult *res, lsn_t *lsn,
                          timeline_t *tli)
{
    if (PQntuples(res) != 1 || PQnfields(res) < 2)
        return shape_error(conn, what, res);
    if (pg_int_parse_lsn("recptr", PQgetvalue(res, 0, 0), lsn) < 0 ||
        pg_int_parse_tli("tli", PQgetvalue(res, 0, 1), tli) < 0)
        return err_context("in the %s of BASE_BACKUP on server \"%s\"", what, conn->target);
    return 0;
}

/* spcoid, spclocation, size: one row per tablespace, the main data directory last
 * (NULL oid and location). */
static int parse_tablespaces(struct pg_conn *conn, const PGresult *res, struct pg_bb_info *info)
{
    int n = PQntuples(res);

    if (PQnfields(res) < 3 || n < 1)
        return err_set(ERR_PROTOCOL,
                       "BASE_BACKUP on server \"%s\": the tablespace list has %d rows and %d "
                       "columns",
                       conn->target, n, PQnfields(res));
    info->tablespaces = xcalloc((size_t)n, sizeof(*info->tablespaces));
    for (int i = 0; i < n; i++) {
        struct pg_bb_tablespace *t = &info->tablespaces[i];
        uint64_t v;

        info->ntablespaces++;
        t->location = xstrdup(PQgetisnull(res, i, 1) ? "" : PQgetvalue(res, i, 1));
        t->size_kb = -1;
        if (!PQgetisnull(res, i, 0)) {
            if (pg_int_parse_u64("spcoid", PQgetvalue(res, i, 0), &v) < 0)
                return err_context("in the tablespace list of server \"%s\"", conn->target);
            if (v == 0 || v > UINT32_MAX)
                return err_set(ERR_PROTOCOL, "server \"%s\" sent tablespace OID %s", conn->target,
                               PQgetvalue(res, i, 0));
            t->oid = (uint32_t)v;
        }
        if (!PQgetisnull(res, i, 2)) {
            if (pg_int_parse_u64("size", PQgetvalue(res, i, 2), &v) < 0)
                return err_context("in the tablespace list of server \"%s\"", conn->target);
            t->size_kb = (int64_t)v;
        }
        if ((t->oid == 0) != (i == n - 1))
            return err_set(ERR_PROTOCOL,
                           "server \"%s\" sent a tablespace list whose last row is not the "
                           "main data directory",
                           conn->target);
    }
    return 0;
}

static int lost(struct pg_conn *conn)
{
    char *text = pg_int_clean_message(PQerrorMessage(conn->pq), conn->secrets);
    int rc = err_set(ERR_CONNECT, "lost connection to server \"%s\" during BASE_BACKUP: %s",
                     conn->target, *text ? text : "connection closed");
    free(text);
    return rc;
}

static void free_copy_data(void *data)
{
    PQfreemem(data);
}

/* One COPY: every CopyData to the stream until CopyDone. Each message is lent with a
 * reference, so that the backup keeps the parts of it it needs instead of copying them
 * (the message is freed when the last reference goes, on whichever thread). */
static int read_copy(struct pg_conn *conn, struct bbstream *s)
{
    for (;;) {
        char *data = NULL;
        int n = PQgetCopyData(conn->pq, &data, 0);

        if (n == -1)
            return 0; /* CopyDone: the result follows */
        if (n < 0)
            return lost(conn);
        struct refbuf *ref = refbuf_new(data, free_copy_data);
        int rc = bbstream_copy_data_ref(s, data, (size_t)n, ref);
        refbuf_put(ref);
        if (rc < 0)
            return rc;
    }
}

int pg_base_backup(struct pg_conn *conn, const struct pg_bb_options *o, pg_bb_started_fn started,
                   const struct bbstream_callbacks *cb, void *arg, struct pg_bb_info *info)
{
    int version = PQserverVersion(conn->pq);
    bool legacy = version < 150000;
    struct bbstream *s = NULL;
    char *command = NULL;
    PGresult *res = NULL;
    int tuples = 0; /* tuple results seen: 1 start, 2 tablespaces, 3 end */
    size_t copies = 0;
    bool completed = false;
    int rc = 0;

    memset(info, 0, sizeof(*info));
    if (version < 130000) {
        rc = err_set(ERR_RUNTIME, "server \"%s\" runs PostgreSQL %d.%d: backups need 13 or later",
                     conn->target, version / 10000, version % 10000 / 100);
        goto out;
    }
    command = pg_bb_command(version, o);
    s = bbstream_new(legacy ? BBSTREAM_LEGACY : BBSTREAM_STREAMED, cb, arg);
    if (!PQsendQuery(conn->pq, command)) {
        rc = lost(conn);
        goto out;
    }
    while ((res = PQgetResult(conn->pq)) != NULL) {
        ExecStatusType st = PQresultStatus(res);

        switch (st) {
        case PGRES_TUPLES_OK:
            tuples++;
            if (tuples == 1) {
                rc =
                    parse_position(conn, "start position", res, &info->start_lsn, &info->start_tli);
            } else if (tuples == 2) {
                rc = parse_tablespaces(conn, res, info);
                if (rc == 0 && started)
                    rc = started(arg, info);
            } else if (tuples == 3) {
                rc = parse_position(conn, "end position", res, &info->end_lsn, &info->end_tli);
            } else {
                rc = err_set(ERR_PROTOCOL, "BASE_BACKUP on server \"%s\" returned an extra result",
                             conn->target);
            }
            break;
        case PGRES_COPY_OUT:
            if (tuples != 2) {
                rc = err_set(ERR_PROTOCOL,
                             "BASE_BACKUP on server \"%s\" started a COPY out of order",
                             conn->target);
                break;
            }
            if (legacy) {
                /* One COPY per tablespace row in row order, then the manifest. */
                if (copies < info->ntablespaces)
                    rc = bbstream_legacy_archive(s, info->tablespaces[copies].oid,
                                                 info->tablespaces[copies].location);
                else if (copies == info->ntablespaces && o->manifest)
                    rc = bbstream_legacy_manifest(s);
                else
                    rc = err_set(ERR_PROTOCOL, "BASE_BACKUP on server \"%s\" sent %zu COPYs",
                                 conn->target, copies + 1);
            } else if (copies > 0) {
                rc = err_set(ERR_PROTOCOL, "BASE_BACKUP on server \"%s\" sent a second COPY",
                             conn->target);
            }
            copies++;
            if (rc == 0)
                rc = read_copy(conn, s);
            break;
        case PGRES_COMMAND_OK:
            completed = true;
            break;
        case PGRES_FATAL_ERROR:
        case PGRES_NONFATAL_ERROR:
            rc = pg_conn_command_error(conn, BB_COMMAND, res);
            break;
        default:
            rc = err_set(ERR_PROTOCOL, "BASE_BACKUP on server \"%s\" answered with %s",
                         conn->target, PQresStatus(st));
            break;
        }
        PQclear(res);
        res = NULL;
        /* Stop at the first failure: draining would mean receiving the rest of the
         * backup for nothing. The caller drops the connection, which ends the
         * backup on the server. */
        if (rc < 0)
            break;
    }
    if (rc < 0)
        goto out;
    if (PQstatus(conn->pq) == CONNECTION_BAD) {
        rc = lost(conn);
        goto out;
    }
    if (tuples != 3 || !completed) {
        rc = err_set(ERR_PROTOCOL,
                     "BASE_BACKUP on server \"%s\" ended before the backup was complete",
                     conn->target);
        goto out;
    }
    rc = bbstream_finish(s);
    if (rc == 0 && o->manifest && !bbstream_manifest_seen(s))
        rc = err_set(ERR_PROTOCOL, "BASE_BACKUP on server \"%s\" sent no backup manifest",
                     conn->target);
out:
    if (rc < 0)
        err_context("while taking a base backup from server \"%s\"", conn->target);
    PQclear(res);
    bbstream_free(s);
    free(command);
    return rc;
}
