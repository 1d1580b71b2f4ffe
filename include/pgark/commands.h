/*
 * commands.h — the entry points of pgark's commands, called by src/main.c.
 *
 * Promise: main parses the global options and hands each command its own argv
 * (argv[0] is the command name) and a context; the command parses its options,
 * does its work, and returns an exit code of DESIGN.md (0 ok, 1 runtime failure,
 * 2 usage or configuration error, 3 integrity problem). Errors are left in the error
 * slot for main to print once, or printed by the command itself when it has several
 * to report.
 */
#ifndef PGARK_COMMANDS_H
#define PGARK_COMMANDS_H

struct config;

struct cli_context {
    const char *config_path;  /* --config, else $PGARK_CONFIG, else the default */
    const char *cluster_name; /* --cluster, or NULL */
    const char *program;      /* absolute path of this binary, for restore_command */
};

/* Load the configuration named by ctx (once; later calls return the same). Returns
 * NULL with the error set (ERR_CONFIG) on failure. The context owns the result. */
const struct config *cli_config(struct cli_context *ctx);

typedef int (*command_fn)(struct cli_context *ctx, int argc, char **argv);

#endif
