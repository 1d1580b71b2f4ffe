/*
 * parent.c — full or incremental (command_int.h): the backup an incremental is taken
 * against, or the reason the backup is a full one.
 */
#include "command_int.h"

#include "pgark/confsnap.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"
#include "pgark/pg_incremental.h"
#include "pgark/units.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- incremental or full --------------------------------------------------------------- */

static void choice_full(struct incr_choice *c, char *reason)
{
    c->parent[0] = '\0';
    free(c->reason);
    c->reason = reason;
    free(c->manifest);
    c->manifest = NULL;
    c->mlen = 0;
}

/* The current error as the reason (cleared): its message, one line. */
void backup_choice_full_err(struct incr_choice *c, const char *what)
{
    choice_full(c, xasprintf("%s: %s", what, err_message()));
    err_clear();
}

/*
 * An incremental backup needs a server of 17 or later with summarize_wal on, and a
 * parent: the newest backup in the first repository on the server's timeline (the
 * server sends what changed since its start, which it knows only from the WAL summaries
 * of that timeline), of 17 or later, with its server's backup_manifest. The rest
 * (every repository holds it and its chunks; the server still has the summaries) is
 * found out later, each failure a reason for a full backup too.
 */
void backup_choose_parent(struct session *s, const struct backup_cmd *a, int version,
                          timeline_t tli, struct incr_choice *c)
{
    struct pg_rows *rows = NULL;
    struct repo_backup *list = NULL;
    size_t n = 0;
    const struct repo_backup *best = NULL, *newest = NULL;
    char path[320];

    memset(c, 0, sizeof(*c));
    if (a->full) {
        choice_full(c, xstrdup("--full was given"));
        return;
    }
    if (version < 170000) {
        choice_full(c, xasprintf("PostgreSQL %d has no incremental backups (17 and later do)",
                                 version / 10000));
        return;
    }
    if (pg_exec_simple(s->conn, "SHOW summarize_wal", &rows) < 0) {
        backup_choice_full_err(c, "could not read summarize_wal");
        return;
    }
    const char *on = pg_rows_value(rows, 0, 0);
    bool summarizing = on && strcmp(on, "on") == 0;
    pg_rows_free(rows);
    if (!summarizing) {
        choice_full(c, xstrdup("summarize_wal is off on the server (an incremental backup needs "
                               "its WAL summaries)"));
        return;
    }
    struct repo *r = s->targets[0].repo;
    if (repo_backup_list(r, &list, &n) < 0) {
        backup_choice_full_err(c, "could not list the backups");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct manifest_header *h = &list[i].header;
        if (h->system_identifier != repo_identity(r)->system_identifier)
            continue;
        if (!newest || h->stop_lsn > newest->header.stop_lsn)
            newest = &list[i];
        if (h->timeline != tli || h->pg_version < 170000)
            continue;
        if (!best || h->start_lsn > best->header.start_lsn)
            best = &list[i];
    }
    if (!best && newest && newest->header.timeline != tli) {
        choice_full(c, xasprintf("timeline switch: no backup on timeline %u yet (the newest, "
                                 "\"%s\", is on timeline %u)",
                                 tli, newest->label, newest->header.timeline));
    } else if (!best) {
        choice_full(c, xasprintf("no earlier backup of PostgreSQL 17 or later in repository "
                                 "\"%s\"",
                                 repo_name(r)));
    } else if (repo_backup_path(best->label, "backup_manifest", path, sizeof(path)) < 0 ||
               repo_get_all(r, path, &c->manifest, &c->mlen) < 0) {
        char *what = xasprintf("could not read the backup_manifest of backup \"%s\"", best->label);
        backup_choice_full_err(c, what);
        free(what);
    } else {
        snprintf(c->parent, sizeof(c->parent), "%s", best->label);
        c->parent_start = best->header.start_lsn;
    }
    repo_backup_list_free(list, n);
}

/* --- does an incremental pay? ----------------------------------------------------------- */

/*
 * An incremental backup receives only the changed blocks, but every chunk-sized range
 * with a changed block is rebuilt: the parent's chunk read back (read, decrypted,
 * decompressed, verified) unless every block of it was sent, then named and stored.
 * A full backup receives everything, but names an unchanged chunk by its fingerprint
 * (fpcache.c) and stores only the changed ones. So the incremental's cost grows with the
 * ranges changed, the full's hardly does; past a share of the ranges the full is cheaper,
 * on the backup host at least. Measured with pgbench scale 100 on PostgreSQL 17
 * (tests/bench/incr.sh, BENCH_INCR_SWEEP; a loaded 2-CPU host, so CPU is the figure to
 * trust), updates of 1% of the rows spread over part of pgbench_accounts, the incremental
 * against a full backup of the same state (fingerprint cache warm), CPU of pgark + server:
 *   19% of the ranges changed: 2.59 + 0.48 s against 2.07 + 1.22 s (0.93x; wall 0.91x)
 *   37%:                       4.78 + 0.74 s against 2.79 + 1.27 s (1.36x; wall 1.6x)
 *   98% (every page):          10.1 + 1.79 s against 4.8 + 2.0 s   (1.75x)
 *   10% (5% updated, contiguous, few ranges read back): 0.68 + 0.35 s, the full's 5 s
 * The break-even lies near 20% (BACKUP_INCR_MAX_CHANGED, command_int.h): below it the
 * incremental is no slower and spares the server most of its reading; above it, it costs
 * more than it spares (each changed range's parent chunk read back, decompressed and
 * verified).
 *
 * The WAL summaries are what the server itself will use: asked with SQL on a second
 * connection before UPLOAD_MANIFEST, they cost the server the summaries' reading (one
 * row per changed block, aggregated there). WAL since the last summary (the last
 * checkpoint, usually) is not in them, so the estimate errs towards incremental.
 */
static double max_changed(void)
{
    const char *v = getenv("PGARK_INCR_MAX_CHANGED");
    char *end = NULL;
    double d = v && *v ? strtod(v, &end) : NAN;
    return end && *end == '\0' && d >= 0 && d <= 1 ? d : BACKUP_INCR_MAX_CHANGED;
}

/*
 * The side session: one normal connection, on a thread of its own, started while the
 * repositories' chunks are listed and the parent's manifest read (on S3 those take longer
 * than the question, and it costs the backup's wall nothing then). On it, first the WAL
 * summaries' question (when there is a parent), then the configuration files of the
 * backup's configuration record (confsnap.h), which the backup stores at its end. One
 * backend for both: a backend's start and first catalog lookups cost the server more CPU
 * than either's queries (measured on PostgreSQL 17, 256 MB shared_buffers: ~20 ms for a
 * session that runs SELECT 1; the configuration's queries ~5 ms more, the summaries' of a
 * 5% update ~30 ms more), and the record is no longer read after the stream, in the
 * backup's wall.
 */
struct backup_estimate {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *conninfo;
    bool ask; /* the summaries' question (there is a parent) */
    timeline_t tli;
    lsn_t since;
    uint64_t chunk_size;
    char *pgark_config, *label; /* the configuration record's */
    bool answered;              /* under lock: the question's fields are final */
    struct pg_wal_changes ch;
    int rc;
    struct err_saved *err; /* the question's error, when rc < 0 */
    int64_t elapsed_us;
    char *conf; /* the configuration record, or NULL and conf_err */
    size_t conf_files;
    struct err_saved *conf_err;
};

static void answered(struct backup_estimate *e)
{
    pthread_mutex_lock(&e->lock);
    e->answered = true;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void *estimate_main(void *arg)
{
    struct backup_estimate *e = arg;
    int64_t t0 = time_mono_us();
    struct pg_conn *conn = pg_connect_sql(e->conninfo, "pgark_backup");

    if (!conn) {
        int code = err_code();
        struct err_saved *why = err_save();
        if (e->ask) {
            e->rc = code;
            e->err = err_saved_copy(why);
        }
        err_restore(why);
        err_context("while connecting to read the server's configuration files");
        e->conf_err = err_save();
        answered(e);
        return NULL;
    }
    if (e->ask) {
        e->rc = pg_wal_changes_since(conn, e->tli, e->since,
                                     (uint32_t)(e->chunk_size / PG_INCR_BLCKSZ), &e->ch);
        e->elapsed_us = time_mono_us() - t0;
        if (e->rc < 0)
            e->err = err_save();
    }
    answered(e);
    e->conf =
        confsnap_gather_on(conn, e->pgark_config, e->label, CONFSNAP_KIND_BACKUP, &e->conf_files);
    pg_conn_free(conn);
    return NULL;
}

struct backup_estimate *backup_estimate_start(const struct incr_choice *c, const char *conninfo,
                                              timeline_t tli, uint64_t chunk_size,
                                              const char *pgark_config, const char *label)
{
    struct backup_estimate *e = xcalloc(1, sizeof(*e));
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->conninfo = xstrdup(conninfo ? conninfo : "");
    e->ask = c->parent[0] != '\0';
    e->tli = tli;
    e->since = c->parent_start;
    e->chunk_size = chunk_size;
    e->pgark_config = pgark_config ? xstrdup(pgark_config) : NULL;
    e->label = xstrdup(label);
    int rc = pthread_create(&e->thread, NULL, estimate_main, e);
    if (rc != 0) { /* asked here and now, then */
        log_debug("no thread for the side session: %s", strerror(rc));
        estimate_main(e);
        e->thread = pthread_self();
    }
    return e;
}

/* Wait for the question's answer (the thread goes on with the configuration files). */
static void estimate_wait(struct backup_estimate *e)
{
    pthread_mutex_lock(&e->lock);
    while (!e->answered)
        pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
}

/* Wait for the thread's end. */
static void estimate_join(struct backup_estimate *e)
{
    if (!pthread_equal(e->thread, pthread_self()))
        pthread_join(e->thread, NULL);
    e->thread = pthread_self();
}

char *backup_estimate_conf(struct backup_estimate *e, size_t *nfiles)
{
    *nfiles = 0;
    estimate_join(e);
    if (!e->conf) {
        err_restore(e->conf_err);
        e->conf_err = NULL;
        return NULL;
    }
    char *text = e->conf;
    e->conf = NULL;
    *nfiles = e->conf_files;
    return text;
}

void backup_estimate_free(struct backup_estimate *e)
{
    if (!e)
        return;
    estimate_join(e);
    err_saved_free(e->err);
    err_saved_free(e->conf_err);
    free(e->conf);
    free(e->conninfo);
    free(e->pgark_config);
    free(e->label);
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void backup_judge_parent(struct incr_choice *c, struct backup_estimate *e,
                         const struct backup_run *run, uint64_t chunk_size)
{
    const struct incr_parent *p = backup_run_parent(run);
    char at[LSN_STRLEN];
    double limit = max_changed();

    if (!e || !e->ask)
        return;
    estimate_wait(e);
    if (!c->parent[0] || !p || strcmp(p->label, c->parent) != 0)
        return;
    const struct pg_wal_changes ch = e->ch;
    int64_t took = e->elapsed_us;
    if (e->rc < 0) {
        err_restore(e->err);
        e->err = NULL;
        log_info("could not ask the server's WAL summaries what changed since backup \"%s\" "
                 "(%s): the backup is incremental without that estimate",
                 c->parent, err_message());
        err_clear();
        return;
    }
    if (!ch.covered) {
        log_detail("the server's WAL summaries of timeline %u do not reach back to %s, the start "
                   "of backup \"%s\" (%lld ms)",
                   e->tli, lsn_format(c->parent_start, at), c->parent, (long long)(took / 1000));
        return;
    }
    c->est.done = true;
    snprintf(c->est.against, sizeof(c->est.against), "%s", c->parent);
    c->est.changed_ranges = ch.ranges;
    /* The parent's data in ranges of chunk size: a small file is a chunk of its own, but
     * it costs what its bytes do, and thousands of them would hide a big table's ranges. */
    c->est.ranges = (p->total_bytes + chunk_size - 1) / chunk_size;
    c->est.changed_blocks = ch.blocks;
    c->est.blocks = (p->total_bytes + PG_INCR_BLCKSZ - 1) / PG_INCR_BLCKSZ;
    c->est.elapsed_us = took;
    double share = c->est.ranges ? (double)ch.ranges / (double)c->est.ranges : 1.0;
    double bshare = c->est.blocks ? (double)ch.blocks / (double)c->est.blocks : 1.0;
    if (share > 1.0)
        share = 1.0;
    if (bshare > 1.0)
        bshare = 1.0;
    log_detail("the WAL summaries since backup \"%s\" (to %s) show %llu of its %llu ranges of "
               "%llu KiB changed (%.0f%%), %llu blocks (%.0f%%); asked in %lld ms",
               c->parent, lsn_format(ch.summarized_to, at), (unsigned long long)ch.ranges,
               (unsigned long long)c->est.ranges, (unsigned long long)(chunk_size / 1024),
               share * 100, (unsigned long long)ch.blocks, bshare * 100, (long long)(took / 1000));
    if (share <= limit)
        return;
    choice_full(c,
                xasprintf("the WAL summaries show %.0f%% of the %llu KiB ranges of backup \"%s\" "
                          "changed (%llu of %llu; %.0f%% of the blocks), above %.0f%%: a full "
                          "backup costs less than an incremental one",
                          share * 100, (unsigned long long)(chunk_size / 1024), c->est.against,
                          (unsigned long long)ch.ranges, (unsigned long long)c->est.ranges,
                          bshare * 100, limit * 100));
}
