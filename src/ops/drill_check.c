/*
 * drill_check.c — what a drill proves once its server is up: that the point reached is
 * the one asked for, and that the data there is sound and as the DBA expects.
 *
 *  - target: for a time, the last transaction replayed ended at or before it and the next
 *    commit the archive holds after the point reached ended after it (read from the WAL
 *    itself: the segment holding that point is decoded, then the time indexes of the
 *    ones after it); for latest, replay got past the newest commit the repository held
 *    when the drill started;
 *  - checksums: pg_checksums --check with the server stopped, when the cluster has them;
 *  - pg_class readable, and amcheck's bt_index_check on every B-tree index, in every
 *    database that accepts connections (heapallindexed with --thorough);
 *  - the DBA's own checks (--sql FILE): one row, first column true.
 */
#include "drill_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"
#include "pgark/procenv.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many failures of one kind are named; the rest are counted. */
#define NAMED_MAX 5
/* How far past the point reached the next commit is looked for. */
#define NEXT_COMMIT_SEGMENTS 4096

/* The server's own words from a pg_exec_simple error ("command ... failed on server
 * ...: WORDS"), cleared. Caller frees. */
static char *server_words(void)
{
    const char *m = err_message();
    const char *at = strstr(m, "failed on server \"");
    const char *w = at ? strstr(at, "\": ") : NULL;
    char *out = xstrdup(w ? w + 3 : m);
    err_clear();
    return out;
}

/* --- the point reached ------------------------------------------------------------------- */

struct first_commit {
    lsn_t from;
    bool found;
    struct repo_wal_xact x;
};

static void on_event(void *arg, const struct waldecode_event *ev)
{
    struct first_commit *fc = arg;
    if (fc->found || ev->kind != WALDECODE_COMMIT || ev->lsn < fc->from)
        return;
    fc->found = true;
    fc->x.lsn = ev->lsn;
    fc->x.end_lsn = ev->end_lsn;
    fc->x.time_us = ev->time + PG_EPOCH_OFFSET_US;
    fc->x.xid = ev->xid;
}

/* The object holding segment segno: on the newest timeline from tli down that has it,
 * complete or partial. 1 found (path into buf, *t its timeline), 0 none. */
static int find_segment(struct repo *r, timeline_t tli, uint64_t segno, char *buf, size_t cap,
                        timeline_t *t, bool *partial)
{
    uint64_t seg_size = repo_identity(r)->seg_size;
    for (timeline_t k = tli; k >= 1; k--) {
        char name[WAL_NAME_BUFLEN];
        wal_segment_name(k, segno, seg_size, name);
        for (int p = 0; p < 2; p++) {
            repo_wal_path(k, name, p == 1, buf, cap);
            int e = repo_object_exists(r, buf);
            if (e < 0)
                return e;
            if (e == 1) {
                *t = k;
                *partial = p == 1;
                return 1;
            }
        }
    }
    return 0;
}

int drill_next_commit(struct repo *r, timeline_t tli, lsn_t lsn, bool *found,
                      struct repo_wal_xact *out)
{
    const struct repo_identity *id = repo_identity(r);
    uint64_t segno = lsn_to_segno(lsn, id->seg_size);
    char path[128];
    timeline_t t;
    bool partial;
    *found = false;
    int e = find_segment(r, tli, segno, path, sizeof(path), &t, &partial);
    if (e <= 0)
        return e;
    /* The segment of the point reached: decoded, since the commit after a point inside
     * it is in no index. */
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = repo_get_all_max(r, path, id->seg_size, "a WAL segment", &data, &len);
    if (rc < 0)
        return err_context("while looking for the first commit after %X/%X", (unsigned)(lsn >> 32),
                           (unsigned)lsn);
    struct first_commit fc = {.from = lsn};
    struct waldecode_config cfg = {.seg_size = id->seg_size,
                                   .system_identifier = id->system_identifier,
                                   .pg_major = id->pg_major,
                                   .tli = t,
                                   .start = segno * id->seg_size,
                                   .prev_lsn = LSN_INVALID,
                                   .on_event = on_event,
                                   .arg = &fc};
    struct waldecode_summary sum;
    rc = waldecode_segment(data, len, &cfg, &sum);
    waldecode_summary_free(&sum);
    free(data);
    if (rc < 0 && !fc.found)
        return err_context("while decoding \"%s\"", path);
    err_clear();
    if (fc.found) {
        *found = true;
        *out = fc.x;
        return 0;
    }
    /* The segments after it: their time indexes name their first commit. */
    for (uint64_t s = segno + 1; s < segno + NEXT_COMMIT_SEGMENTS; s++) {
        if ((e = find_segment(r, tli, s, path, sizeof(path), &t, &partial)) <= 0)
            return e;
        char name[WAL_NAME_BUFLEN + 8];
        wal_segment_name(t, s, id->seg_size, name);
        if (partial)
            strcat(name, ".partial");
        struct repo_wal_index ix;
        if (repo_wal_index_get(r, t, name, &ix) < 0) {
            /* No index (or a damaged one): verify reports it; look past it. */
            log_detail("drill: no time index for \"%s\": %s", path, err_message());
            err_clear();
            continue;
        }
        bool has = ix.commits > 0;
        if (has) {
            *found = true;
            *out = ix.first_commit;
        }
        repo_wal_index_free(&ix);
        if (has)
            return 0;
    }
    return 0;
}

/* Long: where recovery stopped judged against the target case by case (latest, the last
 * commit after the target, a commit at or before it not replayed, none found), each case
 * with its own message; one level.
 */
static void check_target(struct drill *d)
{
    int64_t t0 = time_mono_us();
    char lsn[LSN_STRLEN], a[64], b[64], c[LSN_STRLEN];
    lsn_format(d->reached_lsn, lsn);
    if (d->last_xact_us)
        time_format_pg(d->last_xact_us, a, sizeof(a));
    else
        snprintf(a, sizeof(a), "none");
    if (d->a->target == DRILL_TARGET_LATEST && !d->target_random) {
        if (!d->archive_known) {
            drill_check_add(d, "target", DRILL_OK, (time_mono_us() - t0) / 1000,
                            "replayed up to %s (last transaction %s); the repository held no "
                            "commit when the drill started",
                            lsn, a);
            return;
        }
        lsn_format(d->archive_last.end_lsn, c);
        time_format_pg(d->archive_last.time_us, b, sizeof(b));
        if (d->reached_lsn >= d->archive_last.end_lsn) {
            drill_check_add(d, "target", DRILL_OK, (time_mono_us() - t0) / 1000,
                            "replayed up to %s (last transaction %s), past the newest commit the "
                            "repository held when the drill started (%s, ending at %s)",
                            lsn, a, b, c);
            return;
        }
        drill_check_add(d, "target", DRILL_FAILED, (time_mono_us() - t0) / 1000,
                        "replay ended at %s (last transaction %s), before the newest commit the "
                        "repository held when the drill started (%s, ending at %s)",
                        lsn, a, b, c);
        drill_fail(d, 3,
                   "the restore to latest stopped at %s, before the newest commit repository "
                   "\"%s\" held (%s, ending at %s)",
                   lsn, d->conf->name, b, c);
        return;
    }

    char target[64];
    time_format_pg(d->target_us, target, sizeof(target));
    bool found;
    struct repo_wal_xact next;
    if (drill_next_commit(d->repo, d->tli, d->reached_lsn, &found, &next) < 0) {
        char *why = err_format();
        err_clear();
        drill_check_add(d, "target", DRILL_ERROR, (time_mono_us() - t0) / 1000, "%s", why);
        drill_fail(d, 1, "could not read the WAL archive to check the point reached: %s", why);
        free(why);
        return;
    }
    int64_t ms = (time_mono_us() - t0) / 1000;
    if (d->last_xact_us > d->target_us) {
        drill_check_add(d, "target", DRILL_FAILED, ms,
                        "the last transaction replayed ended at %s, after the target %s", a,
                        target);
        drill_fail(d, 3,
                   "recovery went past the target %s: the last transaction replayed ended "
                   "at %s",
                   target, a);
        d->rpo_known = false;
        return;
    }
    if (found && next.time_us <= d->target_us) {
        time_format_pg(next.time_us, b, sizeof(b));
        lsn_format(next.lsn, c);
        drill_check_add(d, "target", DRILL_FAILED, ms,
                        "replay ended at %s (last transaction %s), but the archive holds a "
                        "commit at %s (xid %u, %s) before the target %s",
                        lsn, a, c, next.xid, b, target);
        drill_fail(d, 3,
                   "recovery stopped short of the target %s: the commit of xid %u at %s (%s) "
                   "was not replayed",
                   target, next.xid, c, b);
        d->rpo_known = d->last_xact_us != 0;
        d->rpo_s = d->rpo_known ? (double)(d->target_us - d->last_xact_us) / 1e6 : 0;
        d->rpo_source = "target";
        return;
    }
    if (found) {
        time_format_pg(next.time_us, b, sizeof(b));
        lsn_format(next.lsn, c);
    }
    drill_check_add(d, "target", DRILL_OK, ms,
                    "replayed up to %s: the last transaction (%s) ended at or before the target "
                    "%s, the next commit in the archive %s%s%s%s after it",
                    lsn, a, target, found ? "(" : "", found ? b : "", found ? ") is" : "",
                    found ? "" : "(none) is not");
    /* Every transaction that ended by the target was replayed: nothing of it is lost. */
    d->rpo_known = true;
    d->rpo_s = 0;
    d->rpo_source = "target";
}

/* --- checksums ------------------------------------------------------------------------------ */

static void check_checksums(struct drill *d)
{
    int64_t t0 = time_mono_us();
    if (!d->checksums) {
        drill_check_add(d, "checksums", DRILL_SKIPPED, 0,
                        "the cluster has no data checksums (initdb --data-checksums)");
        return;
    }
    if (!d->bin.pg_checksums) {
        drill_check_add(d, "checksums", DRILL_SKIPPED, 0,
                        "no pg_checksums beside \"%s\" (PostgreSQL %d): pages are checked as "
                        "amcheck reads them",
                        d->bin.pg_ctl, d->pg_major);
        return;
    }
    if (drill_stop(d) < 0) {
        drill_fail_err(d, 1, "could not stop the server for pg_checksums");
        return;
    }
    int64_t t1 = time_mono_us();
    char *argv[] = {d->bin.pg_checksums, "--check", "-D", d->pgdata, NULL};
    char **env = pgbin_server_environ((const char *const *)d->cfg->env_vars);
    char *out = NULL;
    int st = pgbin_run(argv, env, &out, PGBIN_STDERR_CAPTURE);
    procenv_free(env);
    /* "Bad checksums:  N" in its summary; errors name the block */
    const char *bad = out ? strstr(out, "Bad checksums:") : NULL;
    long nbad = bad ? strtol(bad + strlen("Bad checksums:"), NULL, 10) : -1;
    const char *blocks = out ? strstr(out, "Blocks scanned:") : NULL;
    long nblocks = blocks ? strtol(blocks + strlen("Blocks scanned:"), NULL, 10) : -1;
    char *first = NULL;
    if (out) {
        char *e = strstr(out, "error:");
        if (e)
            first = xstrndup(e, strcspn(e, "\n"));
    }
    int64_t ms = (time_mono_us() - t1) / 1000;
    if (st == 0) {
        drill_check_add(d, "checksums", DRILL_OK, ms, "pg_checksums: %ld blocks, no bad checksum",
                        nblocks);
    } else if (nbad > 0) {
        drill_check_add(d, "checksums", DRILL_FAILED, ms,
                        "pg_checksums: %ld bad checksums in %ld "
                        "blocks%s%s",
                        nbad, nblocks, first ? "; first: " : "", first ? first : "");
        drill_fail(d, 3, "pg_checksums found %ld bad checksums%s%s", nbad, first ? ": " : "",
                   first ? first : "");
    } else {
        drill_check_add(d, "checksums", DRILL_ERROR, ms, "pg_checksums exited %d%s%s", st,
                        first ? ": " : "", first ? first : "");
        drill_fail(d, 1, "pg_checksums could not check the cluster (exit %d)%s%s", st,
                   first ? ": " : "", first ? first : "");
    }
    free(first);
    free(out);
    if (drill_restart(d) < 0 && err_is_set())
        drill_fail_err(d, 1, "could not start the server again after pg_checksums");
    log_detail("drill: pg_checksums and the restart took %lld ms",
               (long long)((time_mono_us() - t0) / 1000));
}

/* --- every database ------------------------------------------------------------------------ */

struct db_tally {
    size_t dbs, indexes, failed;
    struct buf named; /* "index X in database Y: why; ..." */
};

/* Long: the queries one database gets in order (reachable, amcheck there or created,
 * every index checked, amcheck dropped again), each with its own failure; they share the
 * connection and whether amcheck was created here.
 */
static void check_database(struct drill *d, const char *db, struct db_tally *t, bool *stop)
{
    struct pg_conn *c = drill_connect(d, db);
    struct pg_rows *rows = NULL;
    bool created = false;
    if (!c) {
        char *why = err_format();
        err_clear();
        drill_check_add(d, "pg_class", DRILL_ERROR, 0, "database \"%s\": %s", db, why);
        drill_fail(d, 1, "could not connect to database \"%s\" of the restored server: %s", db,
                   why);
        free(why);
        *stop = true;
        return;
    }
    if (pg_exec_simple(c, "SELECT count(*) FROM pg_class", &rows) < 0) {
        char *why = server_words();
        drill_check_add(d, "pg_class", DRILL_FAILED, 0, "database \"%s\": %s", db, why);
        drill_fail(d, 3, "pg_class of database \"%s\" cannot be read: %s", db, why);
        free(why);
        goto out;
    }
    pg_rows_free(rows);
    rows = NULL;
    t->dbs++;

    if (pg_exec_simple(c, "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'", &rows) < 0) {
        char *why = server_words();
        drill_fail(d, 3, "database \"%s\": pg_extension cannot be read: %s", db, why);
        free(why);
        goto out;
    }
    bool have = rows && rows->nrows == 1;
    pg_rows_free(rows);
    rows = NULL;
    if (!have) {
        if (pg_exec_simple(c, "CREATE EXTENSION amcheck", NULL) < 0) {
            char *why = server_words();
            drill_check_add(d, "amcheck", DRILL_ERROR, 0,
                            "the amcheck extension cannot be created in database \"%s\": %s", db,
                            why);
            drill_fail(d, 1, "amcheck is not available on the restored server: %s", why);
            if (!d->hint)
                d->hint = xasprintf("install PostgreSQL %d's contrib modules (Debian: "
                                    "postgresql-contrib, or the server package of that major)",
                                    d->pg_major);
            free(why);
            *stop = true;
            goto out;
        }
        created = true;
    }
    if (pg_exec_simple(c,
                       "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                       "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "JOIN pg_am a ON a.oid = c.relam "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE a.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid "
                       "AND i.indisready AND c.relpersistence <> 't' ORDER BY c.oid",
                       &rows) < 0) {
        char *why = server_words();
        drill_fail(d, 3, "database \"%s\": the indexes cannot be listed: %s", db, why);
        free(why);
        goto out;
    }
    for (int i = 0; rows && i < rows->nrows; i++) {
        char q[160];
        snprintf(q, sizeof(q), "SELECT bt_index_check(%s::oid::regclass, %s)",
                 pg_rows_value(rows, i, 0), d->a->thorough ? "true" : "false");
        t->indexes++;
        if (pg_exec_simple(c, q, NULL) == 0)
            continue;
        char *why = server_words();
        if (t->failed++ < NAMED_MAX)
            buf_appendf(&t->named, "%sindex %s in database \"%s\": %s", t->named.len ? "; " : "",
                        pg_rows_value(rows, i, 1), db, why);
        free(why);
    }
out:
    if (created && pg_exec_simple(c, "DROP EXTENSION amcheck", NULL) < 0)
        err_clear();
    pg_rows_free(rows);
    pg_conn_free(c);
}

static void check_databases(struct drill *d)
{
    int64_t t0 = time_mono_us();
    struct pg_conn *c = drill_connect(d, "template1");
    struct pg_rows *dbs = NULL;
    struct db_tally t = {.named = BUF_INIT};
    if (!c ||
        pg_exec_simple(c, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
                       &dbs) < 0) {
        drill_fail_err(d, 1, "could not list the databases of the restored server");
        pg_conn_free(c);
        return;
    }
    pg_conn_free(c);
    bool stop = false;
    for (int i = 0; dbs && i < dbs->nrows && !stop; i++)
        check_database(d, pg_rows_value(dbs, i, 0), &t, &stop);
    int64_t ms = (time_mono_us() - t0) / 1000;
    if (t.dbs)
        drill_check_add(d, "pg_class", DRILL_OK, 0, "readable in %zu databases", t.dbs);
    if (!stop) {
        if (t.failed) {
            buf_append(&t.named, "", 0);
            drill_check_add(d, "amcheck", DRILL_FAILED, ms,
                            "%zu of %zu B-tree indexes fail "
                            "bt_index_check%s: %s",
                            t.failed, t.indexes, d->a->thorough ? " (heapallindexed)" : "",
                            (const char *)t.named.data);
            drill_fail(d, 3, "amcheck: %zu of %zu indexes are damaged: %s", t.failed, t.indexes,
                       (const char *)t.named.data);
        } else {
            drill_check_add(d, "amcheck", DRILL_OK, ms,
                            "bt_index_check%s on %zu B-tree indexes in %zu databases",
                            d->a->thorough ? " with heapallindexed" : "", t.indexes, t.dbs);
        }
    }
    buf_free(&t.named);
    pg_rows_free(dbs);
}

/* --- the DBA's checks ------------------------------------------------------------------------ */

static void check_sql(struct drill *d)
{
    struct pg_conn *c = NULL;
    const char *c_db = NULL;
    for (size_t i = 0; i < d->a->nsql; i++) {
        const struct drill_sql *s = &d->a->sql[i];
        char *shown = drill_sql_shown(s->text);
        int64_t t0 = time_mono_us();
        struct pg_rows *rows = NULL;
        if (!c || strcmp(c_db, s->database) != 0) {
            pg_conn_free(c);
            c_db = s->database;
            if (!(c = drill_connect(d, s->database))) {
                char *why = err_format();
                err_clear();
                drill_check_add(d, "sql", DRILL_FAILED, 0,
                                "line %d: \"%s\": cannot connect to database \"%s\": %s", s->line,
                                shown, s->database, why);
                drill_fail(d, 3, "check \"%s\" (%s line %d): cannot connect to database \"%s\": %s",
                           shown, d->a->sql_file, s->line, s->database, why);
                free(why);
                free(shown);
                continue;
            }
        }
        char *got = NULL;
        if (pg_exec_simple(c, s->text, &rows) < 0) {
            char *why = server_words();
            got = xasprintf("failed: %s", why);
            free(why);
        } else if (!rows || rows->nrows != 1) {
            got = xasprintf("returned %d rows, not one", rows ? rows->nrows : 0);
        } else if (!pg_rows_value(rows, 0, 0)) {
            got = xstrdup("returned NULL, not true");
        } else if (strcmp(pg_rows_value(rows, 0, 0), "t") != 0) {
            got = xasprintf("returned %s, not true", pg_rows_value(rows, 0, 0));
        }
        int64_t ms = (time_mono_us() - t0) / 1000;
        if (got) {
            drill_check_add(d, "sql", DRILL_FAILED, ms, "line %d: \"%s\" %s", s->line, shown, got);
            drill_fail(d, 3, "check \"%s\" (%s line %d, database \"%s\") %s", shown, d->a->sql_file,
                       s->line, s->database, got);
        } else {
            drill_check_add(d, "sql", DRILL_OK, ms, "line %d: \"%s\" is true", s->line, shown);
        }
        free(got);
        free(shown);
        pg_rows_free(rows);
    }
    pg_conn_free(c);
}

void drill_validate(struct drill *d)
{
    int64_t t0 = time_mono_us();
    check_target(d);
    if (d->server_up)
        check_checksums(d);
    if (d->server_up)
        check_databases(d);
    if (d->server_up && d->a->nsql)
        check_sql(d);
    d->phase_ms[DRILL_PHASE_VALIDATE] = (time_mono_us() - t0) / 1000;
}
