/*
 * cli.h — what the commands share: the command-line context, the configuration
 * (loaded once), the chosen cluster, and storage opened from a repo's config.
 *
 * Promise: the configuration is loaded at most once per process and freed with
 * cli_config_free; a failure leaves ERR_CONFIG in the error slot (exit 2).
 */
#ifndef PGARK_CLI_H
#define PGARK_CLI_H

#include "pgark/log.h"
#include "pgark/storage.h"

#include <stdbool.h>

struct config;
struct config_cluster;
struct config_repo;

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
};

/* A command's entry point (argv[0] is the command name); each command's header
 * (backup.h, restore.h, ops.h, walreceiver.h) declares its own. */
typedef int (*command_fn)(struct cli_context *ctx, int argc, char **argv);

const struct config *cli_config(struct cli_context *ctx);
void cli_config_free(void);
/* Log config->warnings at level, each with its hint (cli_config does it on the first
 * load; receive after a reload). */
void cli_config_warnings(const struct config *cfg, enum log_level level);
/* Refuse (ERR_CONFIG, naming the cluster and the sslmode found, with a hint) a
 * cluster whose conninfo reaches its server over TCP with an sslmode weaker than
 * verify-full when the configuration says require_tls; 0 otherwise. Every command
 * that connects to the cluster calls it first. */
int cli_require_tls(const struct config *cfg, const struct config_cluster *cl);
/* The cluster named by --cluster, or the only one. NULL with the error set. */
const struct config_cluster *cli_cluster(struct cli_context *ctx);
/* A storage driver for a configured repository (caller frees with storage_free). */
struct storage *cli_open_storage(const struct config_repo *repo);
/* The S3 driver from a repo's config (cli_s3.c). */
struct storage *cli_open_s3(const struct config_repo *repo);

#endif
