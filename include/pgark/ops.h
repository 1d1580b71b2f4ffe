/*
 * ops.h — the operations on a cluster's repositories: info, verify, check, expire,
 * and wal-push (archive_command, for servers that cannot be streamed from).
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
int cmd_expire(struct cli_context *ctx, int argc, char **argv);
int cmd_wal_push(struct cli_context *ctx, int argc, char **argv);

#endif
