/*
 * pgbin.h — PostgreSQL's own programs and its control file, for the commands that start
 * a server pgark restored (restore --start, drill).
 *
 * Promise: the programs are found, and pg_ctl's major checked against the data
 * directory's, before anything is written: another major's postgres refuses the
 * directory only after a restore has laid it all down. They come from the configured
 * bin directory, else the distributions' layouts, else PATH. The control file is read
 * directly (not every installation has pg_controldata) and trusted only when its CRC-32C
 * checks out. A server pgark starts gets an allow-listed environment (procenv.h): none of
 * pgark's secrets. No libpq here: the SQL connection is pg.h's.
 */
#ifndef PGARK_PGBIN_H
#define PGARK_PGBIN_H

#include <stdbool.h>

struct pgbin {
    char *pg_ctl;       /* of the backup's major */
    char *psql;         /* any major */
    char *pg_checksums; /* beside pg_ctl (so of its major), or NULL when there is none */
    int major;          /* pg_ctl --version's */
    char version[32];
};

/* The programs that start a backup of PostgreSQL `major`: from bindir (the cluster's
 * pg_bindir) when not NULL, else /usr/lib/postgresql/MAJOR/bin, /usr/pgsql-MAJOR/bin,
 * PATH. who ("restore --start", "drill") names the command in messages. ERR_CONFIG,
 * naming both majors, when pg_ctl is of another one, or when none is found (cluster
 * names the configuration key in the hint). Free with pgbin_free. */
int pgbin_find(const char *bindir, const char *cluster, int major, const char *who,
               struct pgbin *out);
void pgbin_free(struct pgbin *b);

/* The cluster state global/pg_control records, in pg_controldata's words ("shut down
 * in recovery", "in production", ...); NULL when it cannot be read or its CRC is
 * wrong. Caller frees. */
char *pgbin_control_state(const char *pgdata);

/* The environment of a server pgark starts: procenv_clean of this process's environment
 * without env_drop (the variables the configuration read), and LC_ALL=C so that its log,
 * which pgark reads, is in English. Free with procenv_free. */
char **pgbin_server_environ(const char *const *env_drop);

/* Where the stderr of a program pgbin_run runs goes. */
enum pgbin_stderr {
    PGBIN_STDERR_NULL,    /* /dev/null */
    PGBIN_STDERR_INHERIT, /* this process's stderr */
    PGBIN_STDERR_CAPTURE, /* with stdout, into *out */
};

/* Run argv (argv[0] looked up in PATH) and capture its stdout (up to 64 KiB) into *out
 * (caller frees; out may be NULL). envp is the program's whole environment; NULL: this
 * process's, with LC_ALL=C and a 5 s connect timeout for libpq clients. The exit
 * status, or -1 when it could not run or was killed by a signal. */
int pgbin_run(char *const argv[], char *const envp[], char **out, enum pgbin_stderr err);

#endif
