/*
 * summaries.c — what the server's WAL summaries say changed since an LSN (pg_incremental.h).
 *
 * A backup asks this before it asks for an incremental backup, to judge whether one pays
 * (src/backup/parent.c). One query, aggregated by the server, so that a summary of
 * millions of blocks costs the network one row: the summaries of the timeline that end
 * after `since`, whether they reach back to it without a gap, the modified blocks their
 * contents list and the distinct ranges holding one. Limit blocks (truncations, dropped
 * relations) are not changes to send. On the caller's connection: a backup asks it on the
 * one that also reads the configuration files (parent.c), one backend for both.
 */
#include "pgark/pg_incremental.h"

#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>

int pg_wal_changes_since(struct pg_conn *conn, timeline_t tli, lsn_t since, uint32_t range_blocks,
                         struct pg_wal_changes *out)
{
    struct pg_rows *rows = NULL;
    char at[LSN_STRLEN];
    char *sql = NULL;
    int rc = 0;

    *out = (struct pg_wal_changes){0};
    if (range_blocks == 0)
        range_blocks = 1;
    lsn_format(since, at);
    /* One row per block summarised: grouped by range straight away (a block changed in
     * two summaries counts twice in blocks, once in its range), and in memory (the
     * summaries' rows went to a temporary file under the default work_mem, a quarter of
     * the query's time after updates spread over 1.3 GB), raised in the same round trip. */
    sql = xasprintf(
        "SET work_mem = '64MB'; WITH s AS (SELECT tli, start_lsn, end_lsn, max(end_lsn) OVER "
        "(ORDER BY start_lsn "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach "
        "FROM pg_available_wal_summaries() WHERE tli = %u AND end_lsn > '%s'), "
        "r AS (SELECT count(*) AS n FROM s, LATERAL pg_wal_summary_contents(s.tli, s.start_lsn, "
        "s.end_lsn) c WHERE NOT c.is_limit_block GROUP BY c.relfilenode, c.reltablespace, "
        "c.reldatabase, c.relforknumber, c.relblocknumber / %u, (c.relblocknumber %% %u) / %u) "
        "SELECT coalesce((SELECT min(start_lsn) <= '%s' AND bool_and(reach IS NULL OR "
        "start_lsn <= reach) FROM s), false), (SELECT max(end_lsn) FROM s), "
        "(SELECT coalesce(sum(n), 0) FROM r), (SELECT count(*) FROM r)",
        tli, at, PG_INCR_RELSEG_SIZE, PG_INCR_RELSEG_SIZE, range_blocks, at);
    if (pg_exec_simple(conn, sql, &rows) < 0) {
        rc = err_code();
        goto out;
    }
    const char *covered = pg_rows_value(rows, 0, 0);
    if (!covered) {
        rc = err_set(ERR_PROTOCOL, "the server sent no row for its WAL summaries");
        goto out;
    }
    out->covered = covered[0] == 't';
    if (!out->covered)
        goto out;
    if ((rc = pg_int_parse_lsn("summary end", pg_rows_value(rows, 0, 1), &out->summarized_to)) <
            0 ||
        (rc = pg_int_parse_u64("block count", pg_rows_value(rows, 0, 2), &out->blocks)) < 0 ||
        (rc = pg_int_parse_u64("range count", pg_rows_value(rows, 0, 3), &out->ranges)) < 0)
        goto out;
out:
    pg_rows_free(rows);
    free(sql);
    return rc;
}
