/*
 * command_int.h — what the files of the backup command share (not a public interface):
 *
 *   backup.c    the command: options, connection, repositories, the phases of a backup
 *   parent.c    full or incremental: the parent chosen, or the reason for a full backup
 *   summary.c   the summary (human and --json), the events, the repositories left out
 */
#ifndef PGARK_BACKUP_COMMAND_INT_H
#define PGARK_BACKUP_COMMAND_INT_H

#include "backup_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/pg.h"

#include <jansson.h>

struct backup_cmd {
    char **only; /* --repo NAME (repeatable, or a comma list); NULL-terminated */
    size_t nonly;
    const char *label_opt;
    int checkpoint; /* -1: from the configuration */
    bool no_progress;
    bool json;
    bool config_only;
    bool full; /* --full: not incremental */
};

/* What became of one repository selected for the backup, in configuration order: its
 * target (NULL when it was dropped before the run), or why it was dropped. */
struct repo_result {
    const char *name;
    struct backup_target *t;
    char *error; /* dropped before the run: the failure as one line */
    bool logged; /* that error was logged */
};

struct session {
    struct repo_heartbeat *heartbeat; /* the running markers, once written */
    struct pg_conn *conn;
    struct repo_options ro; /* the cluster's, as every repository is opened with */
    struct cli_repo *repos;
    struct backup_target *targets; /* one per repository opened: ntargets */
    size_t ntargets;
    struct repo_result *results; /* one per repository selected, in configuration order */
    size_t nresults;
    struct err_saved *first_error; /* of the first repository dropped before the run */
};

/* What the backup is taken against: parent "" for a full backup, reason why. */
struct incr_choice {
    char parent[256];
    char *reason;      /* malloc'd: why full (or NULL) */
    uint8_t *manifest; /* the parent's backup_manifest, for UPLOAD_MANIFEST */
    size_t mlen;
    lsn_t parent_start; /* the parent's start LSN: the server sends what changed since */
    /* What the WAL summaries said changed since the parent's start (backup_judge_parent),
     * when they were asked and answered: against which backup, the ranges of chunk size
     * (and blocks) with a change, out of the parent's data (its size in chunks, in
     * blocks), and what asking cost. */
    struct incr_estimate {
        bool done;
        char against[256];
        uint64_t changed_ranges, ranges;
        uint64_t changed_blocks, blocks;
        int64_t elapsed_us;
    } est;
};

/* --- parent.c ------------------------------------------------------------------------ */

/* A full backup with the current error as the reason (cleared): what, its message. */
void backup_choice_full_err(struct incr_choice *c, const char *what);
/* Fill c: the parent an incremental backup is taken against, or why it is a full one. */
void backup_choose_parent(struct session *s, const struct backup_cmd *a, int version,
                          timeline_t tli, struct incr_choice *c);

/*
 * Above this share of the parent's chunk-sized ranges changed, a full backup costs less
 * than an incremental one (parent.c says how it was measured): the backup is a full one.
 * PGARK_INCR_MAX_CHANGED (a share, 0 to 1; 1: never judged full, though still asked)
 * overrides it, for benchmarks and tests.
 */
#define BACKUP_INCR_MAX_CHANGED 0.2
/* The side session (parent.c): on a normal connection and a thread of its own, ask the
 * server's WAL summaries what changed since the start of c's parent (when c has one), then
 * read the configuration record of backup label (confsnap.h; pgark's configuration file
 * at pgark_config). */
struct backup_estimate;
struct backup_estimate *backup_estimate_start(const struct incr_choice *c, const char *conninfo,
                                              timeline_t tli, uint64_t chunk_size,
                                              const char *pgark_config, const char *label);
/* Wait for e's answer and, when c still has the parent it was asked about (loaded in run),
 * make c a full backup with the reason if too much changed (c->est says what was found).
 * Never a reason to fail: when the summaries could not be asked, c stays as it was. */
void backup_judge_parent(struct incr_choice *c, struct backup_estimate *e,
                         const struct backup_run *run, uint64_t chunk_size);
/* The configuration record e read (caller frees; *nfiles its files), waiting for it; NULL
 * with the error set when no connection could be made. */
char *backup_estimate_conf(struct backup_estimate *e, size_t *nfiles);
/* Waits for its thread. NULL is a no-op. */
void backup_estimate_free(struct backup_estimate *e);
/* --- summary.c ----------------------------------------------------------------------- */

bool backup_result_failed(const struct repo_result *r);
const char *backup_result_error(const struct repo_result *r);
/* The backup's summary, as --json prints it (a new reference). */
json_t *backup_summary_json(const char *label, const struct pg_bb_info *info, int64_t start_us,
                            int64_t stop_us, const struct backup_totals *tot,
                            const struct repo_result *results, size_t nresults,
                            const struct config_cluster *cl);
/* Its incremental part: incremental or not, the parent or the reason, the counters. */
void backup_summary_incremental(json_t *sum, const struct incr_choice *c,
                                const struct backup_totals *t);
void backup_print_human(json_t *s);
/* The repositories that failed, as JSON ({"name", "error"}), for the events. */
json_t *backup_failed_json(const struct session *s);
void backup_notify_done(const struct config *cfg, const struct config_cluster *cl,
                        const char *label, json_t *sum, int64_t start_us, int64_t stop_us,
                        const struct session *s);
/* The repositories the backup is not in, logged with the copy that would put it there;
 * true when there is one. */
bool backup_report_failed(json_t *sum, const struct session *s, const char *label,
                          const struct config_cluster *cl);

#endif
