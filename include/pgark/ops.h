/*
 * ops.h — the operations on a cluster's repositories: info, verify, check, expire,
 * drill, report, and wal-push (archive_command, for servers that cannot be streamed from).
 *
 * Promise: each returns its exit status as README.md gives it; verify and check
 * return 3 when a problem is found (verify) or something is wrong (check).
 */
#ifndef PGARK_OPS_H
#define PGARK_OPS_H

struct cli_context;

/* Commands (argv[0] is the command name). */
int cmd_info(struct cli_context *ctx, int argc, char **argv);
int cmd_verify(struct cli_context *ctx, int argc, char **argv);
int cmd_check(struct cli_context *ctx, int argc, char **argv);
int cmd_init(struct cli_context *ctx, int argc, char **argv);
int cmd_expire(struct cli_context *ctx, int argc, char **argv);
/* `pgark copy --from A --to B [--backup L] [--wal] [--json]` (copy.c). */
int cmd_copy(struct cli_context *ctx, int argc, char **argv);
int cmd_wal_push(struct cli_context *ctx, int argc, char **argv);
/* A restore proven end to end: exit 0 passed, 3 a check failed (a data problem), 1 the
 * drill could not run, 2 usage or configuration. A record of it is left in every
 * repository of the cluster whatever the outcome. */
int cmd_drill(struct cli_context *ctx, int argc, char **argv);
/* Send a sample event to every notify endpoint: exit 0 when each answered 2xx, 1 when
 * one did not. */
int cmd_notify(struct cli_context *ctx, int argc, char **argv);
/* The disaster-recovery scorecard: exit 3 when a KPI misses its target, 0 otherwise. */
int cmd_report(struct cli_context *ctx, int argc, char **argv);
/* rotate.c */
int cmd_rotate_key(struct cli_context *ctx, int argc, char **argv);

#endif
