/*
 * backup.h — `pgark backup`: one base backup into every repository of the cluster.
 *
 * Promise: the backup is complete in a repository only when its manifest.json is
 * there, written last, after every chunk and WAL segment it names is confirmed stored;
 * a failure leaves no manifest.json and exits non-zero.
 */
#ifndef PGARK_BACKUP_H
#define PGARK_BACKUP_H

struct cli_context;

/* The command (argv[0] is its name): exit status as README.md states. */
int cmd_backup(struct cli_context *ctx, int argc, char **argv);

#endif
