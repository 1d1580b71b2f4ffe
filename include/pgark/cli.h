/*
 * cli.h — what the commands share: the command-line context, the configuration
 * (loaded once), the chosen cluster, and the cluster's repositories opened from it
 * (repos.c: the one place that turns the configuration into repository options).
 *
 * Promise: the configuration is loaded at most once per process and freed with
 * cli_config_free; a failure leaves ERR_CONFIG in the error slot (exit 2).
 */
#ifndef PGARK_CLI_H
#define PGARK_CLI_H

#include "pgark/log.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <jansson.h>
#include <stdbool.h>

struct config;
struct config_cluster;
struct config_repo;
struct notifier;
struct notify_event;

struct cli_context {
    const char *config_path;  /* --config, else $PGARK_CONFIG, else the default */
    const char *cluster_name; /* --cluster, or NULL */
    const char *program;      /* absolute path of this binary, for restore_command */
    bool log_level_set;       /* --log-level given: it wins over the file */
    bool log_format_set;
    /* The level the configuration's warnings (secrets others can read) are logged at
     * when it is loaded: warn; detail for the commands PostgreSQL runs once per
     * segment (wal-fetch, wal-push), whose every line lands in the server's log. */
    enum log_level config_warn_level;
    /* The byte figure of the run for its metrics (cli_metrics_textfile_write), set by
     * the command when it has one; -1 when none. */
    int64_t metrics_bytes;
    /* The name the run's metrics go under when not the command's (backup --config-only:
     * "config_backup", so that it never passes for a backup of the data); NULL: the
     * command's. */
    const char *metrics_as;
};

/* A command's entry point (argv[0] is the command name); each command's header
 * (backup.h, restore.h, ops.h, walreceiver.h) declares its own. */
typedef int (*command_fn)(struct cli_context *ctx, int argc, char **argv);

const struct config *cli_config(struct cli_context *ctx);
void cli_config_free(void);
/* The configuration if a command loaded it, else NULL (loads nothing). */
const struct config *cli_config_loaded(void);
/* Log config->warnings at level, each with its hint (cli_config does it on the first
 * load; receive after a reload). */
void cli_config_warnings(const struct config *cfg, enum log_level level);
/* Refuse (ERR_CONFIG, naming the cluster and the sslmode found, with a hint) a
 * cluster whose conninfo reaches its server over TCP with an sslmode weaker than
 * verify-full when the configuration says require_tls; 0 otherwise. Every command
 * that connects to the cluster calls it first. */
int cli_require_tls(const struct config *cfg, const struct config_cluster *cl);
/* A server pgark starts (restore --start, drill) gets none of this process's environment
 * but what procenv.h allows, and its restore_command loads the configuration afresh: a
 * configuration that reads a variable through ${VAR} would not load there, and every
 * wal-fetch would stop the server. ERR_CONFIG naming the variables (who: the command,
 * "--start"; instead, when not NULL: what else the user can do, for the hint); 0 when
 * the configuration reads none. */
int cli_refuse_server_env(const struct config *cfg, const char *who, const char *instead);
/* The cluster named by --cluster, or the only one. NULL with the error set. */
const struct config_cluster *cli_cluster(struct cli_context *ctx);
/* A storage driver for a configured repository (caller frees with storage_free). */
struct storage *cli_open_storage(const struct config_repo *repo);
/* The S3 driver from a repo's config (cli_s3.c). */
struct storage *cli_open_s3(const struct config_repo *repo);

/* --- metrics of the one-shot commands (metrics.c) --------------------------------- */

/* One run of a command, as its metrics show it. */
struct cli_metrics_run {
    int64_t end_us;      /* Unix time it ended */
    int64_t duration_us; /* how long it took */
    int exit_code;       /* 0: success */
    int64_t bytes;       /* its byte figure (backup: the database read; verify: read), -1 */
};

/* Whether command (backup, verify, drill, expire) writes a metrics textfile. */
bool cli_metrics_command(const char *command);
/* Write dir/pgark_<cluster>_<command>.prom (node-exporter's textfile format) for run:
 * pgark_<command>_last_run_timestamp_seconds, _last_success_timestamp_seconds (carried
 * over from the file replaced when this run failed), _last_duration_seconds,
 * _last_success, _last_exit_code, and the byte figure when the command has one. The file
 * is replaced atomically (a temporary file beside it, renamed). 0, or ERR_IO. */
int cli_metrics_textfile_write(const char *dir, const char *cluster, const char *command,
                               const struct cli_metrics_run *run);

/* --- notifications (cli_notify.c) ---------------------------------------------- */

/* How long a one-shot command waits, before it exits, for its event to be delivered
 * (retries included); what is not delivered by then goes to the dead-letter file. */
#define CLI_NOTIFY_WAIT_MS (INT64_C(30) * 1000)

/* A notifier for cluster cl over every notify entry of cfg, its dead-letter file
 * <spool>/<cluster>/notify-dead.jsonl; NULL when cfg has no notify entry. Free with
 * notifier_free. */
struct notifier *cli_notifier(const struct config *cfg, const struct config_cluster *cl);
/* A one-shot command's event: sent to the endpoints that subscribe to it, waiting up
 * to CLI_NOTIFY_WAIT_MS. Takes e. Leaves the error slot as it found it. */
void cli_notify(const struct config *cfg, const struct config_cluster *cl, struct notify_event *e);
/* The same for the failure in the error slot (kept): event kind, summary "WHAT failed:
 * MESSAGE", details {"error": the whole text with its context, "hint"} (secrets masked). */
void cli_notify_error(const struct config *cfg, const struct config_cluster *cl, unsigned kind,
                      const char *what);
/* cli_notify_error with more details: each key of extra (taken; NULL: none) is added. */
void cli_notify_error_with(const struct config *cfg, const struct config_cluster *cl, unsigned kind,
                           const char *what, json_t *extra);

/* --- the cluster's repositories (repos.c) ---------------------------------------- */

/* How a command uses a repository. */
enum cli_repo_use {
    /* It reads it as it is (restore, wal-fetch, info, verify, check, expire); what it
     * writes besides (a running marker, a probe) is stored uncompressed. */
    CLI_REPO_READ,
    /* It archives into it (backup, wal-push, receive) with the configured compression;
     * a missing repository is created for the identity expected, when one is. */
    CLI_REPO_ARCHIVE,
};

/* The options every repository of cluster cl is opened with for use: the cluster's
 * name and the compression and encryption the configuration chooses, one value
 * (repo_codecs) for every repository, WAL preparer and manifest; for CLI_REPO_ARCHIVE,
 * PGARK_TEST_KDF_N's scrypt cost for a new repository (tests). 0, or ERR_CONFIG. */
int cli_repo_options(const struct config *cfg, const struct config_cluster *cl,
                     enum cli_repo_use use, struct repo_options *out);

/* One repository of a cluster: its configuration, storage and the repository in it. */
struct cli_repo {
    const struct config_repo *conf;
    struct storage *storage; /* NULL until opened, or when it could not be set up */
    struct repo *repo;       /* NULL until opened, or when it could not be opened */
};

/* Open repository conf of cluster cl for use (repo_open: expect NULL opens it as it is;
 * with CLI_REPO_ARCHIVE and expect, a missing one is created). 0 with out filled, or
 * negative with the error set and no context added: out->storage is NULL when the
 * storage could not be set up, else out->repo when the repository could not be opened.
 * Release with cli_repo_close in either case. */
int cli_repo_open(const struct config *cfg, const struct config_cluster *cl,
                  const struct config_repo *conf, enum cli_repo_use use,
                  const struct repo_identity *expect, struct cli_repo *out);
void cli_repo_close(struct cli_repo *r);

/* The repositories of a cluster in reading order: posix ones (the local tier) first,
 * then the others, in configuration order within a tier, each opened for reading only
 * when first asked for. */
struct cli_repos {
    size_t n;
    struct cli_repo *r;
    const char *cluster;
    const struct config *cfg;
    const struct config_cluster *cl;
    /* Open encrypted repositories with repo_options.defer_key (wal-fetch: an answer
     * of "not found" then costs no key derivation). */
    bool defer_key;
};

/* The current error as one line (its context lines joined with "; ", and with_hint its
 * hint in parentheses), cleared; the caller frees it. For reports that list failures. */
char *cli_error_line(bool with_hint);
/* The same line without its hint, the error left set. */
char *cli_error_text(void);

/* The command line of a command whose only options are --json and --help (check, init):
 * 0 to go on (*as_json set), 1 when --help printed the usage, negative (ERR_USAGE, with
 * a hint) for anything else. */
int cli_json_args(int argc, char **argv, const char *command, bool *as_json);
/* A path from the command line made absolute against the working directory (as given
 * when that cannot be read); the caller frees it. */
char *cli_absolute_path(const char *path);
/* A --port value: 1 to 65535. ERR_USAGE naming it otherwise. */
int cli_parse_port(const char *text, int *out);

/* --json output and JSON records, one way: indented, keys in the order built, and reals
 * with at most 15 significant digits, so that a figure rounded to milliseconds
 * (round(s * 1000) / 1000) prints as 1.943 and not 1.9430000000000001. The text is the
 * caller's to free. */
char *cli_json_text(const json_t *o);
/* cli_json_text on stdout, with a newline. */
void cli_print_json(const json_t *o);
/* A duration in seconds for --json: rounded to the millisecond (3 decimals at most),
 * as every "..._seconds" figure is; milliseconds ("..._ms") are integers. */
json_t *cli_json_seconds(double seconds);

/* Order the cluster's repositories (only `only` when not NULL: ERR_CONFIG if it is not
 * one of the cluster's). Nothing is opened yet. */
int cli_repos_init(struct cli_repos *set, const struct config *cfg, const struct config_cluster *cl,
                   const char *only);
/* Repository i, opened on first use (CLI_REPO_READ); NULL with the error set. */
struct repo *cli_repos_get(struct cli_repos *set, size_t i);
void cli_repos_free(struct cli_repos *set);

#endif
