/*
 * procenv.h — the environment of a program pgark starts that outlives the command: the
 * server of `restore --start` (and of `drill`).
 *
 * Promise: an allow-list, not a deny-list. The new environment holds only what a
 * PostgreSQL server and the programs it runs (restore_command, archive_command) need
 * and that carries no secret: PATH, HOME, USER, LOGNAME, TMPDIR, TZ, LANG, LANGUAGE,
 * the locale categories by name (LC_ALL, LC_CTYPE, LC_COLLATE, LC_MESSAGES,
 * LC_MONETARY, LC_NUMERIC, LC_TIME and glibc's LC_ADDRESS, LC_IDENTIFICATION,
 * LC_MEASUREMENT, LC_NAME, LC_PAPER, LC_TELEPHONE), LD_LIBRARY_PATH (a PostgreSQL
 * built elsewhere), and PG_OOM_ADJUST_FILE / PG_OOM_ADJUST_VALUE (the postmaster's
 * out-of-memory score, as Debian's units set it). Never AWS_*, PGARK_*, PGPASSWORD or
 * anything else, and none of the names in `drop` (the variables the configuration read
 * through ${VAR}), even an allowed one. No I/O.
 */
#ifndef PGARK_PROCENV_H
#define PGARK_PROCENV_H

/*
 * A new NULL-terminated environment from `from` (environ, or a test's list of
 * "NAME=VALUE"): its allowed entries, in their order, without any name in drop
 * (NULL-terminated, or NULL), then each "NAME=VALUE" of set (NULL-terminated, or NULL),
 * replacing an entry of that name. The caller frees it with procenv_free.
 */
char **procenv_clean(char *const *from, const char *const *drop, const char *const *set);
void procenv_free(char **env);

/* The value of name in env (as getenv), or NULL. */
const char *procenv_get(char *const *env, const char *name);

#endif
