/*
 * drill_server.c — the scratch directory of a drill and the throwaway server on it;
 * the restore into it is drill_restore.c's.
 *
 * The restore is `pgark restore`, run as a program with --json (the drill proves the
 * command a DBA would run, and its output says which backup it chose and where its time
 * went). Each tablespace goes under the scratch directory (--tablespace-dir), never to
 * its location on the primary, which may be this very host. The server then gets,
 * after restore's recovery settings in postgresql.auto.conf, the settings of a server
 * nobody else may reach or be disturbed by: no TCP (listen_addresses ''), a socket in a
 * directory only this user can enter, its own pg_hba.conf (trust on that socket only),
 * no archiving, no synchronous standbys to wait for, no primary to stream from, its log
 * where pg_ctl puts it; and the environment of pgbin_server_environ (no secret).
 */
#include "drill_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"
#include "pgark/procenv.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_US 100000
/* A postmaster.pid must appear this long after pg_ctl started the server. */
#define PIDFILE_WAIT_US (60 * INT64_C(1000000))
#define LOG_NAME "pgark-drill.log"
#define HBA_NAME "pgark-drill-hba.conf"
/* sun_path is 108 bytes; the server adds "/.s.PGSQL.NNNNN.lock". */
#define SOCKET_PATH_MAX 100

/* --- the scratch directory -------------------------------------------------------------- */

/* 0 missing, 1 an empty directory, 2 a directory with something in it; negative when it
 * is something else or cannot be read. */
static int dir_state(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return err_set_errno(ERR_USAGE, errno, "could not open directory \"%s\"", path);
    }
    int state = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            state = 2;
            break;
        }
    }
    closedir(d);
    return state;
}

static int mkdirs(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            rc = err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", p);
            break;
        }
        *s = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(a);
    int port = 0;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    /* The server listens on no TCP port (listen_addresses ''): any number names its
     * socket; one no one listens on keeps a --keep'd server out of everyone's way. */
    return port ? port : 54320 + (int)(getpid() % 1000);
}

int drill_scratch_prepare(struct drill *d)
{
    if (d->a->pgdata) {
        d->pgdata = xstrdup(d->a->pgdata);
    } else {
        char *parent = xasprintf("%s/%s", d->cfg->spool, d->cl->name);
        int rc = mkdirs(parent, 0700);
        d->pgdata = xasprintf("%s/drill", parent);
        free(parent);
        if (rc < 0)
            return err_context("while making the drill's scratch directory");
    }
    d->ts_root = xasprintf("%s-tablespaces", d->pgdata);
    const char *dirs[] = {d->pgdata, d->ts_root};
    for (int i = 0; i < 2; i++) {
        int st = dir_state(dirs[i]);
        if (st < 0)
            return st;
        if (st == 2) {
            err_set(ERR_USAGE, "the drill's scratch directory \"%s\" is not empty", dirs[i]);
            return err_hint("a drill kept with --keep, or one that was interrupted, left it: stop "
                            "its server (pg_ctl -D \"%s\" stop) and remove \"%s\" and \"%s\", or "
                            "give --pgdata a new directory; nothing was changed",
                            d->pgdata, d->pgdata, d->ts_root);
        }
    }
    d->made_dirs = true;
    if (strlen(d->pgdata) + strlen("/.s.PGSQL.65535.lock") < SOCKET_PATH_MAX) {
        d->sockdir = xstrdup(d->pgdata);
    } else {
        char tmpl[] = "/tmp/pgark-drill-XXXXXX";
        if (!mkdtemp(tmpl))
            return err_set_errno(ERR_IO, errno, "could not make a socket directory in /tmp");
        d->sockdir = xstrdup(tmpl);
        d->own_sockdir = true;
    }
    d->port = d->a->port ? d->a->port : free_port();
    d->logfile = xasprintf("%s/%s", d->pgdata, LOG_NAME);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* FTW_PHYS: a link (pg_tblspc/<oid>) is removed, never followed. */
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
        log_warn("could not remove \"%s\": %s", path, strerror(errno));
    return 0;
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

void drill_scratch_remove(struct drill *d)
{
    if (!d->made_dirs)
        return;
    remove_tree(d->pgdata);
    remove_tree(d->ts_root);
    if (d->own_sockdir)
        remove_tree(d->sockdir);
    d->made_dirs = false;
}

/* --- the throwaway server's settings ----------------------------------------------------- */

static void conf_quote(struct buf *b, const char *v)
{
    buf_append(b, "'", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf_append(b, p, 1);
        buf_append(b, p, 1);
    }
    buf_append(b, "'", 1);
}

static int append_file(const char *path, const char *text, bool create)
{
    int fd =
        open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : 0),
             0600);
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
    size_t len = strlen(text), off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", path);
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0 && rc == 0)
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", path);
    return rc;
}

int drill_configure(struct drill *d)
{
    char *hba = xasprintf("%s/%s", d->pgdata, HBA_NAME);
    char *auto_conf = xasprintf("%s/postgresql.auto.conf", d->pgdata);
    struct buf b = BUF_INIT;
    int rc;
    /* Only this user can enter the socket's directory (0700): trust on it lets the drill
     * in as the cluster's superuser whatever the backup's own pg_hba.conf says. */
    rc = append_file(hba,
                     "# pgark drill: the throwaway server is reached only through its socket, in "
                     "a directory only its owner can enter\nlocal all all trust\n",
                     true);
    if (rc < 0)
        goto out;
    buf_append_str(&b, "\n# pgark drill: a throwaway server (these settings come last, so they "
                       "win)\nlisten_addresses = ''\nport = ");
    buf_appendf(&b, "%d\nunix_socket_directories = ", d->port);
    conf_quote(&b, d->sockdir);
    buf_append_str(&b, "\nunix_socket_permissions = 0700\nhba_file = ");
    conf_quote(&b, hba);
    buf_append_str(&b, "\narchive_mode = off\n"
                       "synchronous_standby_names = ''\n"
                       "primary_conninfo = ''\n"
                       "primary_slot_name = ''\n"
                       "hot_standby = on\n"
                       "ssl = off\n"
                       "logging_collector = off\n"
                       "log_destination = 'stderr'\n"
                       "cluster_name = 'pgark-drill'\n");
    rc = append_file(auto_conf, (const char *)b.data, false);
out:
    if (rc < 0)
        drill_fail_err(d, 1, "could not configure the drill's server");
    buf_free(&b);
    free(hba);
    free(auto_conf);
    return rc;
}

/* --- starting, following and stopping it -------------------------------------------------- */

static int pg_ctl(struct drill *d, const char *action)
{
    char *argv[16];
    int n = 0;
    argv[n++] = d->bin.pg_ctl;
    argv[n++] = "-D";
    argv[n++] = d->pgdata;
    if (!strcmp(action, "start")) {
        argv[n++] = "-l";
        argv[n++] = d->logfile;
        argv[n++] = "-W";
    } else {
        argv[n++] = "-m";
        argv[n++] = "fast";
        argv[n++] = "-w";
        argv[n++] = "-t";
        argv[n++] = "600";
    }
    argv[n++] = (char *)action;
    argv[n] = NULL;
    char **env = pgbin_server_environ((const char *const *)d->cfg->env_vars);
    char *out = NULL;
    int st = pgbin_run(argv, env, &out, PGBIN_STDERR_CAPTURE);
    procenv_free(env);
    int rc = 0;
    if (st != 0) {
        if (out)
            out[strcspn(out, "\n")] = '\0';
        rc = err_set(ERR_RUNTIME, "pg_ctl %s of \"%s\" failed (exit %d)%s%s", action, d->pgdata, st,
                     out && *out ? ": " : "", out ? out : "");
        err_hint("see \"%s\"", d->logfile);
    } else if (!strcmp(action, "start")) {
        d->server_up = true;
    } else {
        d->server_up = false;
    }
    free(out);
    return rc;
}

static long postmaster_pid(const struct drill *d)
{
    char *path = xasprintf("%s/postmaster.pid", d->pgdata);
    FILE *f = fopen(path, "r");
    free(path);
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

static bool alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static void conninfo_add(struct buf *b, const char *key, const char *value)
{
    buf_appendf(b, "%s%s='", b->len ? " " : "", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    buf_append(b, "'", 1);
}

static struct pg_conn *connect_as(struct drill *d, const char *db, const char *user)
{
    struct buf b = BUF_INIT;
    char port[16];
    snprintf(port, sizeof(port), "%d", d->port);
    conninfo_add(&b, "host", d->sockdir);
    conninfo_add(&b, "port", port);
    conninfo_add(&b, "dbname", db);
    conninfo_add(&b, "user", user);
    conninfo_add(&b, "connect_timeout", "10");
    /* Whatever the cluster's defaults, the checks must run to their end and may create
     * the amcheck extension. */
    conninfo_add(&b, "options",
                 "-c statement_timeout=0 -c lock_timeout=0 -c default_transaction_read_only=off");
    struct pg_conn *c = pg_connect_sql((const char *)b.data, "pgark drill");
    buf_free(&b);
    return c;
}

struct pg_conn *drill_connect(struct drill *d, const char *db)
{
    if (d->superuser)
        return connect_as(d, db, d->superuser);
    /* Who the cluster's superuser is can only be asked once in: the user of this process
     * (who made the cluster, as a rule), else "postgres"; then the role with oid 10. */
    struct passwd *pw = getpwuid(geteuid());
    const char *users[] = {pw && pw->pw_name ? pw->pw_name : "postgres", "postgres"};
    struct pg_conn *c = NULL;
    for (int i = 0; i < 2 && !c; i++) {
        if (i == 1 && !strcmp(users[0], users[1]))
            break;
        if (i == 1)
            err_clear();
        c = connect_as(d, db, users[i]);
        if (!c && !strstr(err_message(), "does not exist"))
            return NULL;
    }
    if (!c)
        return NULL;
    struct pg_rows *rows = NULL;
    if (pg_exec_simple(c, "SELECT rolname FROM pg_roles WHERE oid = 10", &rows) == 0 &&
        pg_rows_value(rows, 0, 0))
        d->superuser = xstrdup(pg_rows_value(rows, 0, 0));
    err_clear();
    pg_rows_free(rows);
    return c;
}

/* The server is gone: why, from its log. */
static void server_gone(struct drill *d, const char *when)
{
    char *why = drill_server_log_errors(d);
    if (why && strstr(why, "recovery ended before configured recovery target was reached"))
        drill_fail(d, 3,
                   "recovery ended before the target was reached: the WAL archive of repository "
                   "\"%s\" does not reach it (%s)",
                   d->conf->name, why);
    else
        drill_fail(d, 1, "the server stopped %s%s%s", when, why ? ": " : "", why ? why : "");
    drill_check_add(d, "recovery", d->exit == 3 ? DRILL_FAILED : DRILL_ERROR, 0, "%s", d->error);
    if (!d->hint)
        d->hint = xasprintf("see \"%s\"", d->logfile);
    free(why);
    d->server_up = false;
}

/* Poll until a connection to the server works; NULL when the postmaster is gone (the
 * drill is failed then). */
static struct pg_conn *wait_connectable(struct drill *d, const char *when)
{
    int64_t t0 = time_mono_us();
    bool seen_pid = false;
    for (;;) {
        struct pg_conn *c = drill_connect(d, "template1");
        if (c)
            return c;
        err_clear();
        long pid = postmaster_pid(d);
        if (pid)
            seen_pid = true;
        if ((seen_pid && !alive(pid)) || (!seen_pid && time_mono_us() - t0 > PIDFILE_WAIT_US)) {
            server_gone(d, when);
            return NULL;
        }
        usleep(POLL_US);
    }
}

static int64_t rows_int(const struct pg_rows *rows, int col)
{
    const char *v = pg_rows_value(rows, 0, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

int drill_start(struct drill *d)
{
    struct pg_conn *c = NULL;
    struct pg_rows *rows = NULL;
    int64_t t0 = time_mono_us();
    int rc = -1;
    if (pg_ctl(d, "start") < 0) {
        drill_fail_err(d, 1, "could not start the server");
        goto out;
    }
    log_detail("drill: server starting on \"%s\", port %d, log \"%s\"", d->pgdata, d->port,
               d->logfile);
    if (!(c = wait_connectable(d, "during recovery")))
        goto out;
    int64_t t1 = time_mono_us();
    d->phase_ms[DRILL_PHASE_START] = (t1 - t0) / 1000;
    for (;;) {
        pg_rows_free(rows);
        rows = NULL;
        if (pg_exec_simple(c, "SELECT pg_is_in_recovery()", &rows) < 0) {
            /* The connection broke: the server may have stopped. */
            err_clear();
            pg_conn_free(c);
            if (!(c = wait_connectable(d, "during recovery")))
                goto out;
            continue;
        }
        const char *v = pg_rows_value(rows, 0, 0);
        if (v && !strcmp(v, "f"))
            break;
        usleep(POLL_US);
    }
    int64_t t2 = time_mono_us();
    d->phase_ms[DRILL_PHASE_REPLAY] = (t2 - t1) / 1000;
    d->promoted = true;
    pg_rows_free(rows);
    rows = NULL;
    if (pg_exec_simple(c,
                       "SELECT pg_last_wal_replay_lsn(), "
                       "(extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::bigint, "
                       "current_setting('data_checksums'), current_setting('server_version')",
                       &rows) < 0) {
        drill_fail_err(d, 1, "could not read the point the server reached");
        goto out;
    }
    const char *lsn = pg_rows_value(rows, 0, 0);
    if (!lsn || lsn_parse(lsn, &d->reached_lsn) < 0) {
        err_clear();
        drill_fail(d, 1, "the server did not say where its replay ended");
        goto out;
    }
    d->last_xact_us = rows_int(rows, 1);
    d->checksums = pg_rows_value(rows, 0, 2) && !strcmp(pg_rows_value(rows, 0, 2), "on");
    snprintf(d->pg_version, sizeof(d->pg_version), "%s",
             pg_rows_value(rows, 0, 3) ? pg_rows_value(rows, 0, 3) : "");
    rc = 0;
out:
    pg_rows_free(rows);
    pg_conn_free(c);
    return rc;
}

int drill_stop(struct drill *d)
{
    if (!d->server_up)
        return 0;
    return pg_ctl(d, "stop");
}

int drill_restart(struct drill *d)
{
    if (pg_ctl(d, "start") < 0)
        return -1;
    struct pg_conn *c = wait_connectable(d, "when started again");
    if (!c)
        return -1;
    pg_conn_free(c);
    return 0;
}

char *drill_server_log_errors(const struct drill *d)
{
    FILE *f = d->logfile ? fopen(d->logfile, "r") : NULL;
    if (!f)
        return NULL;
    char *last[5] = {NULL};
    int n = 0;
    char line[2048];
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, "FATAL:") && !strstr(line, "PANIC:") && !strstr(line, "ERROR:"))
            continue;
        line[strcspn(line, "\n")] = '\0';
        free(last[n % 5]);
        last[n % 5] = xstrdup(line);
        n++;
    }
    fclose(f);
    if (!n)
        return NULL;
    struct buf b = BUF_INIT;
    int first = n > 5 ? n - 5 : 0;
    for (int i = first; i < n; i++) {
        /* the part from the level on: "FATAL:  ..." */
        const char *l = last[i % 5];
        const char *at = strstr(l, "FATAL:");
        if (!at)
            at = strstr(l, "PANIC:");
        if (!at)
            at = strstr(l, "ERROR:");
        buf_appendf(&b, "%s%s", b.len ? "; " : "", at);
    }
    for (int i = 0; i < 5; i++)
        free(last[i]);
    buf_append(&b, "", 0);
    return buf_steal(&b);
}
