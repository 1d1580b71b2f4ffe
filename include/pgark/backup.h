/*
 * backup.h — `pgark backup`: one base backup into every repository of the cluster.
 *
 * Promise: the backup is complete in a repository only when its manifest.json is
 * there, written last, after every chunk and WAL segment it names is confirmed stored;
 * a failure leaves no manifest.json and exits non-zero. A repository that fails is
 * dropped and the backup goes on in the others (exit BACKUP_EXIT_PARTIAL).
 */
#ifndef PGARK_BACKUP_H
#define PGARK_BACKUP_H

struct cli_context;

/* The backup is complete in some repositories and not in the others (named on stderr and
 * in --json's "failed_repositories"): `pgark copy` brings it to them. */
#define BACKUP_EXIT_PARTIAL 4

/* The command (argv[0] is its name): exit status as README.md states. */
int cmd_backup(struct cli_context *ctx, int argc, char **argv);

#endif
