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
};

/* --- parent.c ------------------------------------------------------------------------ */

/* A full backup with the current error as the reason (cleared): what, its message. */
void backup_choice_full_err(struct incr_choice *c, const char *what);
/* Fill c: the parent an incremental backup is taken against, or why it is a full one. */
void backup_choose_parent(struct session *s, const struct backup_cmd *a, int version,
                          timeline_t tli, struct incr_choice *c);

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
