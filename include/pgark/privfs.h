/*
 * privfs.h — local files and directories that only the user running pgark may read or
 * change: the receiver's spool, the backup fingerprint cache, wal-fetch's read-ahead.
 *
 * Promise: a file made here is created 0600 whatever the umask, and a directory that
 * another user owns is named as such (whoever owns a directory can replace what is in
 * it: a spool or a cache there could be read, or fed to pgark).
 */
#ifndef PGARK_PRIVFS_H
#define PGARK_PRIVFS_H

#include <stdio.h>

/*
 * 0 when dir does not exist (or a component of its path is a file: creating it will
 * fail and say so) or is a directory owned by this process's effective user;
 * otherwise -ERR_CONFIG: "<what> \"dir\" is owned by uid N (name), not by uid M (name)
 * that runs pgark" with a hint (chown, or run pgark as that user), or "... is not a
 * directory". A dir that cannot be examined (EACCES) fails with ERR_AUTH.
 */
int privfs_check_dir(const char *dir, const char *what);

/* fopen(path, "w") but the file is 0600 whatever the umask, also when it was there
 * before with a wider mode (and O_CLOEXEC). NULL with errno set. */
FILE *privfs_fopen_w(const char *path);

#endif
