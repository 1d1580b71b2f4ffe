/*
 * drill_int.h — what the parts of `pgark drill` share.
 *
 * A drill is one restore of one repository, proven end to end: the backup is laid down by
 * `pgark restore` itself (run as a program, the way a DBA runs it, so that what is proven
 * is the command and not a copy of it), a throwaway server is started on it with the
 * binaries of the backup's major, and the result is validated and timed. drill.c drives
 * it; drill_server.c owns the scratch directory, the restore and the server;
 * drill_check.c the validation; drill_record.c the record and the report of it;
 * drill_sql.c the checks file.
 */
#ifndef PGARK_OPS_DRILL_INT_H
#define PGARK_OPS_DRILL_INT_H

#include "pgark/cli.h"
#include "pgark/pgbin.h"
#include "pgark/repo.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct config_cluster;
struct config_repo;
struct pg_conn;

/* --- the checks file (drill_sql.c) ------------------------------------------------------- */

struct drill_sql {
    char *text;     /* the statement, without the ';' and surrounding blanks */
    char *database; /* where it runs: the last \connect before it, else the default */
    int line;       /* where it starts in the file (1-based) */
};

/* Split the text of a checks file into statements: ';' ends one outside quotes ('...',
 * E'...', "...", $tag$...$tag$) and comments (--, nested block comments); a line
 * "\c NAME" or "\connect NAME" between statements makes the ones after it run in
 * database NAME (else default_db). A last statement without ';' counts. ERR_USAGE naming
 * the file (what) and the line for an unterminated quote or comment, a \ command other
 * than \c, or a file without a statement. Free with drill_sql_free. */
int drill_sql_parse(const char *text, const char *what, const char *default_db,
                    struct drill_sql **out, size_t *n);
void drill_sql_free(struct drill_sql *s, size_t n);
/* The statement on one line, blanks squeezed, cut to about 100 characters with "...",
 * for messages. Caller frees. */
char *drill_sql_shown(const char *text);

/* --- one drill ---------------------------------------------------------------------------- */

enum drill_target_kind { DRILL_TARGET_LATEST = 0, DRILL_TARGET_TIME };

/* What the command line asks of every drill. */
struct drill_args {
    const char *backup; /* --backup LABEL */
    bool random_backup; /* --random */
    enum drill_target_kind target;
    int64_t target_us;    /* --target-time */
    bool random_target;   /* --random-target */
    const char *sql_file; /* --sql */
    struct drill_sql *sql;
    size_t nsql;
    bool keep, json, thorough, all_repos;
    const char *pgdata; /* --pgdata (absolute once parsed) */
    int port;           /* --port, 0: a free one */
    const char *repo;   /* --repo */
};

enum drill_outcome { DRILL_OK = 0, DRILL_SKIPPED, DRILL_FAILED, DRILL_ERROR };

/* One check and what it found. FAILED is a data problem (exit 3); ERROR a check that
 * could not run (exit 1). */
struct drill_check {
    char *name; /* "restore", "recovery", "target", "checksums", "pg_class", "amcheck", "sql" */
    enum drill_outcome outcome;
    char *detail; /* what it checked or found, one line */
    int64_t ms;
};

/* The phases of the RTO, in the order they happen. */
enum drill_phase {
    DRILL_PHASE_CHOOSE, /* restore chooses the backup (catalog, window, checks) */
    DRILL_PHASE_FILES,  /* fetch and write the files */
    DRILL_PHASE_START,  /* pg_ctl start until the server accepts connections */
    DRILL_PHASE_REPLAY, /* WAL fetch and replay until the target is reached, promoted */
    DRILL_PHASE_VALIDATE,
    DRILL_NPHASES
};

struct drill {
    struct cli_context *ctx;
    const struct config *cfg;
    const struct config_cluster *cl;
    const struct config_repo *conf;
    struct drill_args *a;
    struct cli_repo opened; /* the repository drilled */
    struct repo *repo;

    int64_t started_us; /* wall clock at the start */
    int64_t mono0;
    char name[96]; /* the record's name: <YYYYMMDDTHHMMSSZ>-<repo> */

    /* chosen */
    char *backup;   /* the label restore chose (from its --json) */
    timeline_t tli; /* the newest timeline of the repository at the start */
    int64_t target_us;
    bool target_random;
    bool archive_known; /* the newest commit archived at the start, for a latest drill */
    struct repo_wal_xact archive_last;
    /* the primary's last commit at the start (latest drills' RPO) */
    bool primary_known;
    int64_t primary_last_us;
    const char *primary_source; /* "receiver", "primary" */

    /* where */
    char *pgdata;
    char *ts_root; /* tablespaces go to <ts_root>/<oid> */
    char *sockdir;
    bool own_sockdir; /* made under /tmp (the data directory's path is too long) */
    int port;
    char *logfile;
    struct pgbin bin;
    int pg_major;
    char pg_version[32];
    char *superuser;
    bool made_dirs; /* the drill made pgdata / ts_root: it removes them */
    bool server_up; /* pg_ctl started it and it has not been stopped */

    /* reached */
    bool promoted;
    lsn_t reached_lsn;
    int64_t last_xact_us; /* 0: no transaction replayed */
    bool checksums;       /* data_checksums is on */

    int64_t phase_ms[DRILL_NPHASES];
    bool rpo_known;
    double rpo_s;
    const char *rpo_source;

    struct drill_check *checks;
    size_t nchecks;
    char *error; /* why it could not run or failed, one line; NULL when it passed */
    char *hint;
    int exit; /* 0 passed, 3 a check failed, 1 could not run, 2 configuration */
};

/* Record a check (detail formatted). Returns it. */
struct drill_check *drill_check_add(struct drill *d, const char *name, enum drill_outcome outcome,
                                    int64_t ms, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The drill failed (exit 3, a data problem) or could not run (exit 1 or 2): the first
 * reason is kept. */
void drill_fail(struct drill *d, int exit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As drill_fail, with the current error (context joined) after the text; the error's
 * hint is kept. Clears the error. */
void drill_fail_err(struct drill *d, int exit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- the scratch directory, the restore and the server (drill_server.c) ------------------ */

/* Where the drill restores: d->pgdata (the data directory: --pgdata, else
 * <spool>/<cluster>/drill), d->ts_root (<pgdata>-tablespaces) and the socket directory,
 * and a free port. ERR_USAGE when one of them is not empty (nothing is changed). */
int drill_scratch_prepare(struct drill *d);
/* Run `pgark restore` into d->pgdata (its tablespaces under d->ts_root) for the target,
 * and take the backup it chose and its phases from its --json. Records the check
 * "restore" and fails the drill (3 for an integrity problem it found, 1 otherwise). */
int drill_restore(struct drill *d);
/* The settings of a throwaway server, after restore's in postgresql.auto.conf, and its
 * own pg_hba.conf. */
int drill_configure(struct drill *d);
/* pg_ctl start, then wait until the server accepts connections (start phase) and until
 * it has left recovery (replay phase); reads the point reached. Fails the drill when the
 * server stops or recovery ends short of the target. */
int drill_start(struct drill *d);
/* A normal connection to database db of the drilled server (as its superuser once
 * known). NULL with the error set. */
struct pg_conn *drill_connect(struct drill *d, const char *db);
/* pg_ctl stop -m fast (waiting); 0 or the error. */
int drill_stop(struct drill *d);
/* Start it again after drill_stop and wait until it accepts connections. */
int drill_restart(struct drill *d);
/* Remove what drill_scratch_prepare and the restore made (never following a link). */
void drill_scratch_remove(struct drill *d);
/* The last lines of the server's log that say FATAL, PANIC or ERROR (up to 5), joined
 * with "; ", or NULL. Caller frees. */
char *drill_server_log_errors(const struct drill *d);

/* --- validation (drill_check.c) ----------------------------------------------------------- */

/* The point reached is the one asked for (reads the WAL archive), then pg_checksums with
 * the server stopped (when the cluster has checksums), pg_class and amcheck in every
 * database, the --sql checks. Each records its check; a failure fails the drill. */
void drill_validate(struct drill *d);

/* The first commit of the archive at or after lsn on timeline tli or an ancestor (the
 * newest one holding each segment): *found false when the archive has none. Decodes the
 * segment holding lsn, then reads the time indexes of the following ones. */
int drill_next_commit(struct repo *r, timeline_t tli, lsn_t lsn, bool *found,
                      struct repo_wal_xact *out);

/* --- the record (drill_record.c) ------------------------------------------------------------ */

/* The drill's record (drills/<name>.json): caller frees. */
char *drill_record_json(const struct drill *d);
/* Write it to every repository of the cluster that can be opened; warns about the
 * others. Returns how many hold it. */
size_t drill_record_write(struct drill *d, const char *text);
/* The drill in words, on stdout. */
void drill_print(const struct drill *d, size_t stored);

/* The newest commit the receiver's status.json (text) says the spool holds, when the
 * receiver that wrote it was running as of now_us (its file at most stale_us old): 1 and
 * *us, else 0. Fields it does not know are ignored. */
int drill_status_newest_commit(const char *text, int64_t now_us, int64_t stale_us, int64_t *us);

#endif
