/*
 * start.c — `restore --start [--port N] [--wait]`: start the restored cluster with
 * pg_ctl and, with --wait, follow recovery until it reaches the target or stops.
 *
 * How the end is recognised (PROTOCOL.md §3.2), without depending on the server's
 * log settings: over SQL (psql on the socket postmaster.pid names), recovery is over
 * when pg_is_in_recovery() is false (promoted, or the end of the archive for "latest")
 * and has stopped at the target when the replay is paused; when the postmaster exits,
 * the control file tells a target shutdown ("shut down in recovery") from a failure.
 * The server log that pg_ctl writes (-l) supplies the server's own words for the
 * report when something goes wrong. psql and pg_ctl are PostgreSQL's own programs,
 * found and checked before the restore wrote anything (src/pg/pgbin.c).
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pgbin.h"
#include "pgark/procenv.h"
#include "pgark/units.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_LOG "pgark-start.log"
#define POLL_US 200000

struct pidfile {
    long pid;
    int port;
    char socket_dir[1024];
};

static bool read_pidfile(const char *pgdata, struct pidfile *pf)
{
    char *path = xasprintf("%s/postmaster.pid", pgdata);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return false;
    char line[1024];
    int n = 0;
    memset(pf, 0, sizeof(*pf));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        n++;
        if (n == 1)
            pf->pid = atol(line);
        else if (n == 4)
            pf->port = atoi(line);
        else if (n == 5)
            snprintf(pf->socket_dir, sizeof(pf->socket_dir), "%s", line);
    }
    fclose(f);
    return pf->pid > 0 && n >= 5;
}

static bool alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* The last line of the log after byte `from` containing needle (caller frees), or
 * NULL. The log may have come with the backup (a cluster restored and started by
 * pgark writes it in its data directory): only what this start wrote counts. */
static char *log_line(const char *logfile, off_t from, const char *needle)
{
    FILE *f = fopen(logfile, "r");
    if (!f)
        return NULL;
    if (from > 0 && fseeko(f, from, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char line[2048];
    char *found = NULL;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, needle)) {
            line[strcspn(line, "\n")] = '\0';
            free(found);
            found = xstrdup(line);
        }
    }
    fclose(f);
    return found;
}

/* Remove wal-fetch's read-ahead cache: recovery no longer needs it. */
static void drop_prefetch(const char *pgdata)
{
    char *dir = xasprintf("%s/pg_wal/%s", pgdata, PREFETCH_DIR);
    prefetch_drop(dir);
    free(dir);
}

/* pg_ctl start, in an environment without pgark's secrets. */
static int run_pg_ctl(const struct start_options *o, const char *logfile, char *port_opt)
{
    char *argv[12];
    int n = 0;
    argv[n++] = o->bin->pg_ctl;
    argv[n++] = "-D";
    argv[n++] = (char *)o->pgdata;
    argv[n++] = "-l";
    argv[n++] = (char *)logfile;
    argv[n++] = "-W";
    if (port_opt) {
        argv[n++] = "-o";
        argv[n++] = port_opt;
    }
    argv[n++] = "start";
    argv[n] = NULL;
    char *out = NULL;
    /* The server, its restore_command and whatever it runs later outlive this command:
     * they get none of its secrets (the server's wal-fetch reads the configuration
     * file for itself). */
    char **env = pgbin_server_environ(o->env_drop);
    int st = pgbin_run(argv, env, &out, PGBIN_STDERR_INHERIT);
    procenv_free(env);
    free(out);
    if (st != 0) {
        err_set(ERR_RUNTIME, "pg_ctl could not start the server on \"%s\" (exit %d)", o->pgdata,
                st);
        return err_hint("see \"%s\"", logfile);
    }
    return 0;
}

/* Where recovery is, once: the end reached ("promoted", "paused at the target") with the
 * last replayed transaction's time and LSN (*last_ts, *last_lsn: the caller's), or NULL
 * while it goes on (or the server does not answer). */
static const char *query_recovery(const struct start_options *o, const struct pidfile *pf,
                                  char **last_ts, char **last_lsn)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", pf->port);
    const char *q = o->pg_major >= 14 ? "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                                        "THEN pg_get_wal_replay_pause_state() END, "
                                        "pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn()"
                                      : "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                                        "AND pg_is_wal_replay_paused() THEN 'paused' END, "
                                        "pg_last_xact_replay_timestamp(), pg_last_wal_replay_lsn()";
    char *qargv[] = {
        o->bin->psql, "-X", "-A", "-t",       "-F", "|",       "-h", (char *)pf->socket_dir,
        "-p",         port, "-d", "postgres", "-c", (char *)q, NULL};
    char *res = NULL;
    const char *reached = NULL;
    if (pgbin_run(qargv, NULL, &res, PGBIN_STDERR_NULL) == 0) {
        res[strcspn(res, "\n")] = '\0';
        char *f[4] = {NULL};
        char *p = res;
        for (int i = 0; i < 4; i++) {
            f[i] = p;
            p = p ? strchr(p, '|') : NULL;
            if (p)
                *p++ = '\0';
        }
        if (f[0] && !strcmp(f[0], "f"))
            reached = "promoted";
        else if (f[1] && !strcmp(f[1], "paused"))
            reached = "paused at the target";
        if (reached) {
            *last_ts = xstrdup(f[2] && *f[2] ? f[2] : "none");
            *last_lsn = xstrdup(f[3] && *f[3] ? f[3] : "unknown");
        }
    }
    free(res);
    return reached;
}

/* Poll until recovery has ended (returned as query_recovery does) or the postmaster is
 * gone (NULL). pf is filled as far as postmaster.pid was read. */
static const char *wait_recovery(const struct start_options *o, const char *logfile, off_t log_from,
                                 int64_t t0, struct pidfile *pf, char **last_ts, char **last_lsn)
{
    bool have_pid = false;
    for (;;) {
        /* The socket directory is added to postmaster.pid after the file is created:
         * read it again until it is there. */
        if (!have_pid || !pf->socket_dir[0])
            have_pid = read_pidfile(o->pgdata, pf) || have_pid;
        if (have_pid && !alive(pf->pid))
            return NULL;
        if (!have_pid) {
            /* Gone before its postmaster.pid was read: a target reached at once with
             * action shutdown, or a failed start (its log ends so in both cases) — or no
             * postmaster.pid after a minute, though pg_ctl started it: it died early. */
            char *down = log_line(logfile, log_from, "database system is shut down");
            bool gone = down || time_mono_us() - t0 > 60 * INT64_C(1000000);
            free(down);
            if (gone)
                return NULL;
        }
        if (have_pid && pf->socket_dir[0]) {
            const char *reached = query_recovery(o, pf, last_ts, last_lsn);
            if (reached)
                return reached;
        }
        usleep(POLL_US);
    }
}

/* The postmaster is gone: a target shutdown (0), or a failure (ERR_RUNTIME with the
 * server's words). */
static int judge_stopped(const struct start_options *o, const char *logfile, off_t log_from,
                         const char *dur)
{
    int rc = 0;
    char *state = pgbin_control_state(o->pgdata);
    char *fatal = log_line(logfile, log_from, "recovery ended before configured recovery target");
    char *stopping = log_line(logfile, log_from, "recovery stopping");
    if (state && !strcmp(state, "shut down in recovery") && !fatal) {
        printf("recovery reached the target and the server shut down%s%s; recovery took "
               "%s\n",
               stopping ? ": " : "", stopping ? strstr(stopping, "recovery stopping") : "", dur);
        drop_prefetch(o->pgdata);
    } else if (fatal) {
        rc = err_set(ERR_RUNTIME,
                     "recovery ended before the target was reached; the server "
                     "stopped after %s",
                     dur);
        err_hint("the server said: %s (log \"%s\")", strstr(fatal, "recovery ended"), logfile);
    } else {
        char *any = log_line(logfile, log_from, "FATAL");
        rc = err_set(ERR_RUNTIME, "the server stopped during recovery after %s%s%s", dur,
                     any ? ": " : "", any ? any : "");
        err_hint("see \"%s\"", logfile);
        free(any);
    }
    free(state);
    free(fatal);
    free(stopping);
    return rc;
}

int restore_start(const struct start_options *o)
{
    char *logfile = xasprintf("%s/%s", o->pgdata, START_LOG);
    char *port_opt = o->port ? xasprintf("-p %d", o->port) : NULL;
    int64_t t0 = time_mono_us();
    struct stat lst;
    off_t log_from = stat(logfile, &lst) == 0 ? lst.st_size : 0;
    struct pidfile pf = {0};
    char *last_ts = NULL, *last_lsn = NULL;
    char dur[32];

    int rc = run_pg_ctl(o, logfile, port_opt);
    if (rc < 0)
        goto out;
    printf("server starting on \"%s\"%s%s, log in \"%s\"\n", o->pgdata, port_opt ? ", port " : "",
           port_opt ? port_opt + 3 : "", logfile);
    fflush(stdout);
    if (!o->wait)
        goto out;
    const char *reached = wait_recovery(o, logfile, log_from, t0, &pf, &last_ts, &last_lsn);
    duration_format((time_mono_us() - t0) / 1000, dur, sizeof(dur));
    if (!reached) {
        rc = judge_stopped(o, logfile, log_from, dur);
        goto out;
    }
    printf("recovery %s: last replayed transaction committed at %s, replayed up to LSN %s; "
           "recovery took %s\n",
           reached, last_ts, last_lsn, dur);
    if (!strcmp(reached, "paused at the target"))
        printf("the server is read-only, paused in recovery: look at the data (psql -h \"%s\" -p "
               "%d), then promote it with SELECT pg_wal_replay_resume(); (or restore again to "
               "another target)\n",
               pf.socket_dir, pf.port);
    drop_prefetch(o->pgdata);
out:
    fflush(stdout);
    free(last_ts);
    free(last_lsn);
    free(logfile);
    free(port_opt);
    return rc;
}
