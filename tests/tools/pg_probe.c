/*
 * pg_probe — exercise src/pg against a live server for the integration tests.
 *
 *   pg_probe CONNINFO                 IDENTIFY_SYSTEM, version and segment size
 *   pg_probe CONNINFO -c COMMAND      run one command, print its rows
 *
 * Output is "key=value" lines (rows as "row N: col=value ..."), errors go through the
 * error slot and the exit code is err_exit_code()'s.
 */
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/pg.h"
#include "pgark/wal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int probe(struct pg_conn *conn)
{
    struct pg_system sys;
    uint64_t seg_size;
    int rc;

    if ((rc = pg_identify_system(conn, &sys)) < 0)
        return rc;
    if ((rc = pg_wal_segment_size(conn, &seg_size)) < 0)
        return rc;
    printf("systemid=%" PRIu64 "\n", sys.systemid);
    printf("timeline=%" PRIu32 "\n", sys.timeline);
    printf("xlogpos=%X/%X\n", (unsigned)(sys.xlogpos >> 32), (unsigned)sys.xlogpos);
    printf("server_version=%d\n", pg_server_version(conn));
    printf("wal_segment_size=%" PRIu64 "\n", seg_size);
    printf("target=%s\n", pg_conn_target(conn));
    return 0;
}

static int run_command(struct pg_conn *conn, const char *command)
{
    struct pg_rows *rows = NULL;
    int rc = pg_exec_simple(conn, command, &rows);

    if (rc < 0)
        return rc;
    if (!rows) {
        printf("no rows\n");
        return 0;
    }
    for (int r = 0; r < rows->nrows; r++) {
        printf("row %d:", r);
        for (int c = 0; c < rows->ncols; c++) {
            const char *v = pg_rows_value(rows, r, c);

            printf(" %s=%s", rows->names[c], v ? v : "NULL");
        }
        printf("\n");
    }
    pg_rows_free(rows);
    return 0;
}

int main(int argc, char **argv)
{
    struct pg_conn *conn = NULL;
    int rc;

    if (!(argc == 2 || (argc == 4 && strcmp(argv[2], "-c") == 0))) {
        fprintf(stderr, "usage: pg_probe CONNINFO [-c COMMAND]\n");
        return 2;
    }
    conn = pg_connect_replication(argv[1], "pg_probe");
    if (!conn) {
        rc = -1;
        goto out;
    }
    rc = argc == 4 ? run_command(conn, argv[3]) : probe(conn);
out:
    pg_conn_free(conn);
    if (rc < 0) {
        int code = err_exit_code();

        err_print();
        return code;
    }
    return 0;
}
