/*
 * restore.c — `pgark restore`: choose a backup for the target, check everything that
 * could make the restore refuse (a running server, a non-empty directory, a target
 * outside what the repositories can reach, a tablespace directory in the way) before
 * touching a single file, then lay the backup down, leave the server's backup_manifest,
 * write recovery.signal and the recovery settings, and optionally start the server.
 */
#include "restore_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ts_map {
    uint32_t oid;
    char *dir;
};

struct restore_args {
    const char *pgdata_arg;
    char *pgdata; /* absolute */
    const char *backup;
    const char *repo;
    struct restore_target target;
    bool delta, force, start, wait, json, no_progress;
    bool no_chunk_check; /* --no-chunk-check */
    int port;
    struct ts_map *map;
    size_t nmap;
    const char *ts_dir; /* --tablespace-dir */
    const char *waldir; /* --waldir */
    bool config_only;   /* --config-only */
    const char *dest;   /* --dest, with --config-only */
};

static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return xstrdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return xstrdup(path);
    return xasprintf("%s/%s", cwd, path);
}

static int parse_map(struct restore_args *a, const char *text)
{
    unsigned oid = 0;
    int end = 0;
    if (sscanf(text, "%u=%n", &oid, &end) != 1 || end == 0 || text[end] != '/' || oid == 0)
        return err_set(ERR_USAGE, "invalid --tablespace-map \"%s\": expected OID=/absolute/dir",
                       text);
    a->map = xrealloc(a->map, (a->nmap + 1) * sizeof(*a->map));
    a->map[a->nmap++] = (struct ts_map){oid, xstrdup(text + end)};
    return 0;
}

static int parse_args(struct restore_args *a, int argc, char **argv)
{
    enum {
        OPT_PGDATA = 1,
        OPT_BACKUP,
        OPT_TIME,
        OPT_XID,
        OPT_LSN,
        OPT_NAME,
        OPT_TARGET,
        OPT_EXCL,
        OPT_ACTION,
        OPT_TIMELINE,
        OPT_DELTA,
        OPT_FORCE,
        OPT_MAP,
        OPT_TSDIR,
        OPT_WALDIR,
        OPT_REPO,
        OPT_START,
        OPT_PORT,
        OPT_WAIT,
        OPT_JSON,
        OPT_NOPROGRESS,
        OPT_NOCHUNKCHECK,
        OPT_CONFIG_ONLY,
        OPT_DEST,
        OPT_HELP
    };
    static const struct option options[] = {
        {"pgdata", required_argument, NULL, OPT_PGDATA},
        {"backup", required_argument, NULL, OPT_BACKUP},
        {"target-time", required_argument, NULL, OPT_TIME},
        {"target-xid", required_argument, NULL, OPT_XID},
        {"target-lsn", required_argument, NULL, OPT_LSN},
        {"target-name", required_argument, NULL, OPT_NAME},
        {"target", required_argument, NULL, OPT_TARGET},
        {"target-exclusive", no_argument, NULL, OPT_EXCL},
        {"target-action", required_argument, NULL, OPT_ACTION},
        {"target-timeline", required_argument, NULL, OPT_TIMELINE},
        {"delta", no_argument, NULL, OPT_DELTA},
        {"force", no_argument, NULL, OPT_FORCE},
        {"tablespace-map", required_argument, NULL, OPT_MAP},
        {"tablespace-dir", required_argument, NULL, OPT_TSDIR},
        {"waldir", required_argument, NULL, OPT_WALDIR},
        {"repo", required_argument, NULL, OPT_REPO},
        {"start", no_argument, NULL, OPT_START},
        {"port", required_argument, NULL, OPT_PORT},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"json", no_argument, NULL, OPT_JSON},
        {"no-progress", no_argument, NULL, OPT_NOPROGRESS},
        {"no-chunk-check", no_argument, NULL, OPT_NOCHUNKCHECK},
        {"config-only", no_argument, NULL, OPT_CONFIG_ONLY},
        {"dest", required_argument, NULL, OPT_DEST},
        {"help", no_argument, NULL, OPT_HELP},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case OPT_PGDATA:
            a->pgdata_arg = optarg;
            break;
        case OPT_BACKUP:
            a->backup = strcmp(optarg, "latest") ? optarg : NULL;
            break;
        case OPT_TIME:
            rc = restore_target_set(&a->target, "time", optarg);
            break;
        case OPT_XID:
            rc = restore_target_set(&a->target, "xid", optarg);
            break;
        case OPT_LSN:
            rc = restore_target_set(&a->target, "lsn", optarg);
            break;
        case OPT_NAME:
            rc = restore_target_set(&a->target, "name", optarg);
            break;
        case OPT_TARGET:
            rc = restore_target_set(&a->target, "target", optarg);
            break;
        case OPT_EXCL:
            a->target.exclusive = true;
            break;
        case OPT_ACTION:
            rc = restore_action_parse(optarg, &a->target.action);
            break;
        case OPT_TIMELINE:
            rc = restore_timeline_parse(optarg, &a->target.timeline);
            break;
        case OPT_DELTA:
            a->delta = true;
            break;
        case OPT_FORCE:
            a->force = true;
            break;
        case OPT_MAP:
            rc = parse_map(a, optarg);
            break;
        case OPT_TSDIR:
            if (optarg[0] != '/')
                rc = err_set(ERR_USAGE,
                             "invalid --tablespace-dir \"%s\": expected an absolute directory",
                             optarg);
            a->ts_dir = optarg;
            break;
        case OPT_WALDIR:
            if (optarg[0] != '/')
                rc = err_set(ERR_USAGE, "invalid --waldir \"%s\": expected an absolute directory",
                             optarg);
            a->waldir = optarg;
            break;
        case OPT_REPO:
            a->repo = optarg;
            break;
        case OPT_START:
            a->start = true;
            break;
        case OPT_PORT:
            if (cli_parse_port(optarg, &a->port) < 0)
                rc = err_code();
            break;
        case OPT_WAIT:
            a->wait = true;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_CONFIG_ONLY:
            a->config_only = true;
            break;
        case OPT_DEST:
            a->dest = optarg;
            break;
        case OPT_NOPROGRESS:
            a->no_progress = true;
            break;
        case OPT_NOCHUNKCHECK:
            a->no_chunk_check = true;
            break;
        case OPT_HELP:
            printf("usage: pgark restore --pgdata DIR [--backup LABEL|latest] [TARGET] ...\n"
                   "run \"pgark help restore\" for every option\n");
            return 1;
        default:
            err_set(ERR_USAGE, "unknown option or missing value \"%s\" for restore",
                    argv[optind - 1]);
            return err_hint("run \"pgark help restore\"");
        }
        if (rc < 0)
            return rc;
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for restore", argv[optind]);
    if (a->config_only) {
        if (!a->dest || !a->dest[0])
            return err_set(ERR_USAGE, "restore --config-only needs --dest DIR");
        if (a->pgdata_arg || a->start || a->delta || a->force || a->target.kind)
            return err_set(ERR_USAGE, "restore --config-only takes --dest, --backup and --repo "
                                      "only");
        return 0;
    }
    if (a->dest)
        return err_set(ERR_USAGE, "--dest goes with --config-only (the data goes to --pgdata)");
    if (!a->pgdata_arg || !a->pgdata_arg[0])
        return err_set(ERR_USAGE, "restore needs --pgdata DIR");
    if ((a->port || a->wait) && !a->start)
        return err_set(ERR_USAGE, "--port and --wait go with --start");
    if (a->target.exclusive && a->target.kind != RESTORE_TARGET_TIME &&
        a->target.kind != RESTORE_TARGET_XID && a->target.kind != RESTORE_TARGET_LSN)
        return err_set(ERR_USAGE, "--target-exclusive needs --target-time, --target-xid or "
                                  "--target-lsn");
    if (a->target.action && (a->target.kind == RESTORE_TARGET_LATEST))
        return err_set(ERR_USAGE, "--target-action needs a recovery target (the server ignores "
                                  "it when replaying to the end of the archive)");
    a->pgdata = absolute_path(a->pgdata_arg);
    return 0;
}

/* --- the restorable window ----------------------------------------------------------- */

static int window_error(const struct restore_args *a, const char *from, const char *to,
                        const char *why)
{
    char t[128];
    restore_target_describe(&a->target, t, sizeof(t));
    err_set(ERR_USAGE, "recovery target %s is outside the restorable window %s .. %s%s%s", t, from,
            to, why ? ": " : "", why ? why : "");
    return err_hint("choose a target inside the window; nothing was changed");
}

/* Refuse a time or LSN target that no backup precedes or that the archive does not
 * reach. xid and restore point targets are not checked here: the server reports them
 * ("recovery ended before configured recovery target was reached"). */
static int check_window(struct restore_args *a, struct cli_repos *set, const struct catalog *cat,
                        timeline_t tli, const struct timeline_history *h)
{
    if (a->target.kind != RESTORE_TARGET_TIME && a->target.kind != RESTORE_TARGET_LSN)
        return 0;
    const struct restore_backup *oldest = NULL;
    for (size_t i = 0; i < cat->n; i++) {
        const struct restore_backup *b = &cat->e[i].b;
        if (!restore_timeline_leads(b->timeline, b->stop_lsn, tli, h))
            continue;
        if (!oldest || b->stop_lsn < oldest->stop_lsn)
            oldest = b;
    }
    struct catalog_end end;
    int rc = catalog_wal_end(set, tli, &end);
    if (rc < 0)
        return err_context("while finding where the WAL archive of timeline %u ends", tli);
    char from[64] = "(no backup)", to[64] = "(no WAL)";
    if (a->target.kind == RESTORE_TARGET_TIME) {
        int64_t earliest = 0;
        if (oldest) {
            earliest = manifest_earliest_target_us(oldest->stop_time, oldest->consistent_time_us,
                                                   a->target.exclusive);
            time_format_pg(earliest, from, sizeof(from));
        }
        if (end.found && end.have_xact)
            time_format_pg(end.last_xact_us, to, sizeof(to));
        if (!oldest)
            return window_error(a, from, to, "no backup leads to this timeline");
        if (a->target.time_us < earliest)
            return window_error(a, from, to,
                                "it is before the oldest backup is consistent (its last "
                                "transaction before its stop point)");
        if (!end.found || !end.have_xact)
            return window_error(a, from, to, "no transaction in the WAL archive ends after it");
        if (a->target.time_us >= end.last_xact_us)
            return window_error(a, from, to,
                                "no transaction in the WAL archive ends after it (the last "
                                "one ends at the window's end; use --target latest to replay "
                                "everything)");
    } else {
        if (oldest)
            lsn_format(oldest->stop_lsn, from);
        if (end.found)
            lsn_format(end.last_record, to);
        if (!oldest)
            return window_error(a, from, to, "no backup leads to this timeline");
        if (a->target.lsn < oldest->stop_lsn)
            return window_error(a, from, to, "it is before the end of the oldest backup");
        if (!end.found || a->target.lsn > end.last_record)
            return window_error(a, from, to, "the WAL archive ends before it");
    }
    return 0;
}

/*
 * A restore to latest must reach the latest WAL that was archived. An archive cut short
 * (its newest segments gone, an older .partial in place of the newest) is otherwise an
 * archive that ends earlier: recovery would replay what is there, promote, and the
 * transactions after it would be lost without a word. The high-water marks say how far
 * the archive reached; when what is there ends before that, nothing is changed and the
 * DBA decides: bring the WAL back, or name the end of what is there as the target, which
 * accepts the loss explicitly.
 */
/* The restore of chosen failed on the chunks in bad: name the newest backup that does
 * not need them, as a hint on the error. */
static void hint_intact(struct cli_repos *set, const struct catalog *cat,
                        const struct catalog_entry *chosen, const struct chunkset *bad,
                        const struct chunkset *held)
{
    struct err_saved *saved = err_save();
    char *label = restore_newest_intact(set, cat, chosen->b.label, bad, chosen->repo, held);
    err_restore(saved);
    const char *before = err_hint_text();
    char *prev = before ? xstrdup(before) : NULL;
    if (label)
        err_hint("%s%sthe newest backup that does not use the damaged chunk is \"%s\": restore "
                 "it with --backup %s; take a new backup, and run \"pgark verify\"",
                 prev ? prev : "", prev ? "; " : "", label, label);
    else
        err_hint("%s%sno other backup is free of the damaged chunk; take a new backup, and run "
                 "\"pgark verify\"",
                 prev ? prev : "", prev ? "; " : "");
    free(prev);
    free(label);
}

static int check_reach(const struct restore_args *a, struct cli_repos *set, timeline_t tli)
{
    if (a->target.kind != RESTORE_TARGET_LATEST)
        return 0;
    struct catalog_hwm best;
    struct catalog_end end;
    int rc = catalog_wal_hwm(set, tli, &best);
    if (rc == 0 && best.found)
        rc = catalog_wal_end(set, tli, &end);
    if (rc < 0)
        return err_context("while finding where the WAL archive of timeline %u ends", tli);
    if (!best.found || (end.found && end.reach >= best.end))
        return 0;
    char mark_end[LSN_STRLEN], when[64], at[LSN_STRLEN], last[LSN_STRLEN];
    lsn_format(best.end, mark_end);
    time_format_pg(best.m.time_us, when, sizeof(when));
    if (end.found)
        err_set(ERR_INTEGRITY,
                "the WAL archive of timeline %u ends at %s (%s in repository \"%s\"), before "
                "%s, where the WAL high-water mark in repository \"%s\" says it reached (seq "
                "%llu, written %s by %s): a restore to latest would stop short of WAL that was "
                "archived",
                tli, lsn_format(end.reach, at), end.object, set->r[end.repo].conf->name, mark_end,
                set->r[best.repo].conf->name, (unsigned long long)best.m.seq, when, best.m.writer);
    else
        err_set(ERR_INTEGRITY,
                "the WAL archive holds nothing of timeline %u, but the WAL high-water mark in "
                "repository \"%s\" says it reached %s (seq %llu, written %s by %s): a restore to "
                "latest would stop short of WAL that was archived",
                tli, set->r[best.repo].conf->name, mark_end, (unsigned long long)best.m.seq, when,
                best.m.writer);
    if (end.found)
        return err_hint("\"pgark verify\" names what is missing: copy it back if it is anywhere "
                        "(another repository, the receiver's spool), or accept losing it by "
                        "restoring to the end of what is there, --target-lsn %s --target-action "
                        "promote; nothing was changed",
                        lsn_format(end.last_record, last));
    return err_hint("\"pgark verify\" names what is missing: copy it back if it is anywhere, or "
                    "accept losing it with --target immediate --target-action promote; nothing "
                    "was changed");
}

/* --- small files ------------------------------------------------------------------------ */

/* name in the data directory (open as dfd, shown as dir), replaced atomically: written
 * under a temporary name made O_EXCL | O_NOFOLLOW (a stale one, whatever it is, is
 * removed first, not followed), fsynced, renamed over name (which replaces a symlink
 * there, never writes through it). */
static int write_file_atomic(int dfd, const char *dir, const char *name, const void *data,
                             size_t len)
{
    char *tmp = xasprintf(".%s.pgark-tmp", name);
    char *shown = xasprintf("%s/%s", dir, tmp);
    int rc = confine_remove(dfd, tmp, shown, NULL);
    int fd = -1;
    if (rc < 0)
        goto out;
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not create \"%s\"", shown);
        goto out;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", shown);
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", shown);
    close(fd);
    if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\" to \"%s/%s\"", shown, dir, name);
    if (rc < 0)
        unlinkat(dfd, tmp, 0);
out:
    free(shown);
    free(tmp);
    return rc;
}

/* The server's own backup_manifest, so pg_verifybackup runs on the directory as it is. */
static int put_backup_manifest(struct repo *r, const char *label, int dfd, const char *pgdata)
{
    char path[128];
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "backups/%s/backup_manifest", label);
    int rc = repo_get_all(r, path, &data, &len);
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND) {
            err_clear();
            log_warn("backup \"%s\" has no backup_manifest in repository \"%s\": "
                     "pg_verifybackup will not run on the restored directory",
                     label, repo_name(r));
            return 0;
        }
        return err_context("while fetching the backup_manifest of backup \"%s\"", label);
    }
    rc = write_file_atomic(dfd, pgdata, "backup_manifest", data, len);
    free(data);
    return rc;
}

/* postgresql.auto.conf with the recovery settings of an earlier restore (they come
 * with a backup of a cluster that was restored once) commented out, and ours after. */
static int write_auto_conf(int dfd, const char *pgdata, const char *conf)
{
    char *path = xasprintf("%s/postgresql.auto.conf", pgdata);
    struct buf old = BUF_INIT;
    char *text = NULL;
    int rc = 0;
    int fd = openat(dfd, "postgresql.auto.conf", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        rc = err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
        goto out;
    }
    while (fd >= 0) {
        char chunk[8192];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not read \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        buf_append(&old, chunk, (size_t)n);
    }
    text = restore_conf_strip(old.data ? (const char *)old.data : "", old.len);
    buf_reset(&old);
    buf_append_str(&old, text);
    buf_append_str(&old, conf);
    rc = write_file_atomic(dfd, pgdata, "postgresql.auto.conf", old.data, old.len);
out:
    if (fd >= 0)
        close(fd);
    free(text);
    buf_free(&old);
    free(path);
    return rc;
}

/* backup_manifest, postgresql.auto.conf, recovery.signal (and no standby.signal), in
 * the data directory opened once: none of it through a symlink. */
static int write_recovery(const struct restore_args *a, struct repo *r, const char *label,
                          const char *program, const char *config_path, const char *cluster)
{
    char *cmd = restore_command_text(program, config_path, cluster, a->repo);
    char *conf = restore_recovery_conf(&a->target, cmd);
    char *standby = xasprintf("%s/standby.signal", a->pgdata);
    int rc = 0;
    int dfd = open(a->pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not open data directory \"%s\"", a->pgdata);
        goto out;
    }
    rc = put_backup_manifest(r, label, dfd, a->pgdata);
    if (rc == 0)
        rc = write_auto_conf(dfd, a->pgdata, conf);
    if (rc == 0 && unlinkat(dfd, "standby.signal", 0) < 0 && errno != ENOENT)
        rc = err_set_errno(ERR_IO, errno, "could not remove \"%s\"", standby);
    if (rc == 0)
        rc = write_file_atomic(dfd, a->pgdata, "recovery.signal", "", 0);
    if (rc == 0 && fsync(dfd) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not fsync directory \"%s\"", a->pgdata);
out:
    if (dfd >= 0)
        close(dfd);
    free(standby);
    free(conf);
    free(cmd);
    return rc;
}

/* --- where restore writes besides the data directory --------------------------------- */

/* A tablespace's directory or the WAL directory. */
struct outer {
    const char *dir;
    char *what;         /* for messages: "the location "/srv/ts" of tablespace 16384" */
    uint32_t oid;       /* a tablespace's */
    enum err_kind kind; /* ERR_INTEGRITY when the manifest chose it, else ERR_USAGE */
    bool kept_wal;      /* pg_wal's own link, kept */
};

static int outer_error(const struct outer *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int outer_error(const struct outer *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    err_set(o->kind, "%s", text);
    free(text);
    if (o->kind == ERR_INTEGRITY)
        return err_hint("give --tablespace-map %u=DIR to restore the tablespace elsewhere; "
                        "nothing was changed",
                        o->oid);
    if (o->kept_wal)
        return err_hint("give --waldir DIR for the WAL, or remove the symlink; nothing was "
                        "changed");
    return err_hint("nothing was changed");
}

/* Each directory absolute, and, symlinks resolved, neither the data directory nor inside
 * it nor around it, and none inside another. */
static int check_outer(const char *pgdata, const struct outer *o, size_t n)
{
    char *root = NULL, **res = xcalloc(n + 1, sizeof(*res));
    int rc = confine_resolve(pgdata, &root);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (o[i].dir[0] != '/') {
            rc = outer_error(&o[i], "%s is not an absolute path", o[i].what);
            break;
        }
        if ((rc = confine_resolve(o[i].dir, &res[i])) < 0)
            break;
        if (confine_within(res[i], root))
            rc = outer_error(&o[i], "%s is inside the data directory \"%s\"", o[i].what, pgdata);
        else if (confine_within(root, res[i]))
            rc = outer_error(&o[i], "the data directory \"%s\" is inside %s", pgdata, o[i].what);
        for (size_t j = 0; j < i && rc == 0; j++) {
            if (confine_within(res[i], res[j]) || confine_within(res[j], res[i]))
                rc = outer_error(o[i].kind == ERR_USAGE ? &o[i] : &o[j], "%s and %s overlap",
                                 o[j].what, o[i].what);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(res[i]);
    free(res);
    free(root);
    return rc;
}

/* Whether pgdata/pg_tblspc/<oid> is a symlink to dir (both resolved). */
static bool own_tablespace(const char *pgdata, uint32_t oid, const char *dir)
{
    char *link = xasprintf("%s/pg_tblspc/%u", pgdata, oid);
    char *a = NULL, *b = NULL;
    struct stat st;
    bool same = lstat(link, &st) == 0 && S_ISLNK(st.st_mode) && confine_resolve(link, &a) == 0 &&
                confine_resolve(dir, &b) == 0 && strcmp(a, b) == 0;
    err_clear();
    free(a);
    free(b);
    free(link);
    return same;
}

/* --- the command ------------------------------------------------------------------------ */

static int threads_for(const struct config_repo *rc)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    /* Remote storage waits on the network: more requests in flight than cores. */
    if (rc->type != CONFIG_REPO_POSIX)
        n = n * 4 > rc->concurrency ? n * 4 : rc->concurrency;
    return n > 64 ? 64 : (int)n;
}

static void free_args(struct restore_args *a)
{
    restore_target_free(&a->target);
    for (size_t i = 0; i < a->nmap; i++)
        free(a->map[i].dir);
    free(a->map);
    free(a->pgdata);
}

int cmd_restore(struct cli_context *ctx, int argc, char **argv)
{
    struct restore_args a;
    struct cli_repos set;
    struct repo **alts = NULL; /* other repositories, for damaged chunks */
    size_t nalts = 0;
    struct chunkset *held = NULL; /* the chunks r holds (the chunk check) */
    struct chunkset *bad = NULL;  /* chunks in no repository, or sound in none */
    struct catalog cat;
    struct timeline_history *hist = NULL;
    struct path_set *seen = NULL;
    struct pgbin bin = {0};
    const char **ts_dir = NULL;
    char **ts_owned = NULL; /* the --tablespace-dir ones */
    size_t n_ts_owned = 0;
    struct outer *outer = NULL;
    size_t n_outer = 0;
    char *waldir = NULL, *wal_link = NULL;
    char *config_abs = NULL;
    int64_t t0 = time_mono_us();
    int rc;

    memset(&a, 0, sizeof(a));
    memset(&set, 0, sizeof(set));
    memset(&cat, 0, sizeof(cat));
    if ((rc = parse_args(&a, argc, argv)) != 0) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    if (a.target.kind == RESTORE_TARGET_TIME && a.target.zone_assumed) {
        char when[64];
        log_info("--target-time has no time zone: taken as UTC, %s",
                 time_format_pg(a.target.time_us, when, sizeof(when)));
    }
    const struct config *cfg = cli_config(ctx);
    if (!cfg) {
        rc = 2;
        goto out;
    }
    const struct config_cluster *cl = config_cluster_find(cfg, ctx->cluster_name);
    if (!cl || cli_repos_init(&set, cfg, cl, a.repo) < 0) {
        rc = 2;
        goto out;
    }

    if (a.config_only) {
        char *dest = absolute_path(a.dest);
        rc = restore_config_only(&set, a.backup, dest);
        free(dest);
        if (rc < 0)
            rc = err_kind() == ERR_INTEGRITY ? 3 : err_kind() == ERR_NOT_FOUND ? 2 : 1;
        goto out;
    }
    /* Everything that can refuse comes before the first write. */
    if (a.start && cli_refuse_server_env(cfg, "--start",
                                         "restore without --start and start the server with "
                                         "the environment its restore_command needs") < 0) {
        rc = 2;
        goto out;
    }
    if (pgdata_check_postmaster(a.pgdata) < 0) {
        rc = 2;
        goto out;
    }
    int nonempty = pgdata_nonempty(a.pgdata);
    if (nonempty < 0) {
        rc = 1;
        goto out;
    }
    if (nonempty && !a.delta && !a.force) {
        err_set(ERR_USAGE, "data directory \"%s\" is not empty", a.pgdata);
        err_hint("give --delta to reuse the files that match the backup, or --force to "
                 "overwrite it; nothing was changed");
        rc = 2;
        goto out;
    }
    if (catalog_load(&set, &cat) < 0) {
        rc = 1;
        if (a.backup && err_kind() == ERR_NOT_FOUND) {
            char *why = err_format();
            err_clear();
            if (restore_refuse_config_only(&set, a.backup) < 0)
                rc = 2;
            else
                err_set(ERR_NOT_FOUND, "%s", why);
            free(why);
        }
        goto out;
    }
    timeline_t tli = a.target.timeline;
    if (!tli) {
        catalog_newest_timeline(&set, &tli);
        for (size_t i = 0; i < cat.n; i++) {
            if (cat.e[i].b.timeline > tli)
                tli = cat.e[i].b.timeline;
        }
    }
    if (catalog_history(&set, tli, &hist) < 0) {
        rc = 1;
        goto out;
    }
    if (check_window(&a, &set, &cat, tli, hist) < 0 || check_reach(&a, &set, tli) < 0) {
        rc = err_kind() == ERR_USAGE ? 2 : err_kind() == ERR_INTEGRITY ? 3 : 1;
        goto out;
    }

    /* The backup: the one asked for, else the newest that fits. */
    const struct catalog_entry *chosen = NULL;
    if (a.backup) {
        for (size_t i = 0; i < cat.n && !chosen; i++) {
            if (!strcmp(cat.e[i].b.label, a.backup))
                chosen = &cat.e[i];
        }
        if (!chosen && restore_refuse_config_only(&set, a.backup) < 0) {
            rc = 2;
            goto out;
        }
        if (!chosen) {
            err_set(ERR_USAGE, "no complete backup \"%s\" of cluster \"%s\"", a.backup, cl->name);
            err_hint("\"pgark info\" lists the backups");
            rc = 2;
            goto out;
        }
        char t[128];
        if (!restore_backup_fits(&chosen->b, &a.target)) {
            err_set(ERR_USAGE, "backup \"%s\" ends after the recovery target %s", a.backup,
                    restore_target_describe(&a.target, t, sizeof(t)));
            rc = 2;
            goto out;
        }
        if (!restore_timeline_leads(chosen->b.timeline, chosen->b.stop_lsn, tli, hist)) {
            err_set(ERR_USAGE, "backup \"%s\" (timeline %u) does not lead to timeline %u", a.backup,
                    chosen->b.timeline, tli);
            rc = 2;
            goto out;
        }
    } else {
        struct restore_backup *bs = xcalloc(cat.n, sizeof(*bs));
        for (size_t i = 0; i < cat.n; i++)
            bs[i] = cat.e[i].b;
        int k = restore_backup_pick(bs, cat.n, &a.target, tli, hist);
        free(bs);
        if (k < 0) {
            char t[128];
            err_set(ERR_USAGE,
                    "no backup ends before the recovery target %s on a timeline "
                    "leading to timeline %u",
                    restore_target_describe(&a.target, t, sizeof(t)), tli);
            rc = 2;
            goto out;
        }
        /* The same label in several repos: the first in the local-first order. */
        chosen = &cat.e[k];
        for (size_t i = 0; i < cat.n; i++) {
            if (!strcmp(cat.e[i].b.label, chosen->b.label) && cat.e[i].repo < chosen->repo)
                chosen = &cat.e[i];
        }
    }

    /* Tablespaces: where each goes, and nothing in the way. */
    ts_dir = xcalloc(chosen->n_ts + 1, sizeof(*ts_dir));
    outer = xcalloc(chosen->n_ts + 1, sizeof(*outer));
    for (size_t m = 0; m < a.nmap; m++) {
        bool known = false;
        for (size_t i = 0; i < chosen->n_ts; i++)
            known |= chosen->ts_oid[i] == a.map[m].oid;
        if (!known) {
            err_set(ERR_USAGE,
                    "--tablespace-map names tablespace %u, which backup \"%s\" does "
                    "not have",
                    a.map[m].oid, chosen->b.label);
            rc = 2;
            goto out;
        }
    }
    ts_owned = xcalloc(chosen->n_ts + 1, sizeof(*ts_owned));
    n_ts_owned = chosen->n_ts;
    for (size_t i = 0; i < chosen->n_ts; i++) {
        bool mapped = false;
        ts_dir[i] = chosen->ts_location[i];
        for (size_t m = 0; m < a.nmap; m++) {
            if (a.map[m].oid == chosen->ts_oid[i]) {
                ts_dir[i] = a.map[m].dir;
                mapped = true;
            }
        }
        /* --tablespace-dir: every tablespace not mapped one by one goes to DIR/<oid> (a
         * copy on the primary's own host: drill). */
        if (!mapped && a.ts_dir) {
            ts_owned[i] = xasprintf("%s/%u", a.ts_dir, chosen->ts_oid[i]);
            ts_dir[i] = ts_owned[i];
            mapped = true;
        }
        outer[i].dir = ts_dir[i];
        outer[i].oid = chosen->ts_oid[i];
        outer[i].kind = mapped ? ERR_USAGE : ERR_INTEGRITY;
        outer[i].what = mapped ? xasprintf("the %s directory \"%s\" of tablespace %u",
                                           ts_owned[i] ? "--tablespace-dir" : "--tablespace-map",
                                           ts_dir[i], chosen->ts_oid[i])
                               : xasprintf("the location \"%s\" of tablespace %u", ts_dir[i],
                                           chosen->ts_oid[i]);
        n_outer++;
    }
    /* pg_wal: a symlink to --waldir. Over a directory whose pg_wal is a symlink already
     * (--delta, --force), without --waldir, the link and its directory stay: a WAL volume
     * of the DBA's, emptied of what the backup does not hold. */
    if (a.waldir) {
        waldir = xstrdup(a.waldir);
        wal_link = xstrdup(a.waldir);
        outer[n_outer].what = xasprintf("the --waldir directory \"%s\"", a.waldir);
        outer[n_outer].kind = ERR_USAGE;
        outer[n_outer++].dir = waldir;
    } else if (nonempty) {
        char *p = xasprintf("%s/pg_wal", a.pgdata);
        char link[PATH_MAX];
        ssize_t n = readlink(p, link, sizeof(link) - 1);
        free(p);
        if (n > 0) {
            link[n] = '\0';
            wal_link = xstrdup(link);
            waldir = link[0] == '/' ? xstrdup(link) : xasprintf("%s/%s", a.pgdata, link);
            outer[n_outer].what =
                xasprintf("the WAL directory \"%s\" that \"%s/pg_wal\" links to", link, a.pgdata);
            outer[n_outer].kind = ERR_USAGE;
            outer[n_outer].kept_wal = true;
            outer[n_outer++].dir = waldir;
        }
    }
    if (check_outer(a.pgdata, outer, n_outer) < 0) {
        if (err_kind() == ERR_INTEGRITY)
            err_context("while checking the manifest of backup \"%s\" in repository \"%s\"",
                        chosen->b.label, set.r[chosen->repo].conf->name);
        rc = err_exit_code();
        goto out;
    }
    bool outer_nonempty = false;
    for (size_t i = 0; i < n_outer; i++) {
        int ne = pgdata_nonempty(outer[i].dir);
        if (ne < 0) {
            rc = 1;
            goto out;
        }
        if (ne && !a.delta && !a.force) {
            if (i < chosen->n_ts) {
                err_set(ERR_USAGE, "tablespace directory \"%s\" (tablespace %u) is not empty",
                        ts_dir[i], chosen->ts_oid[i]);
                err_hint("map it elsewhere with --tablespace-map %u=DIR, or give --delta or "
                         "--force if it is this data directory's own; nothing was changed",
                         chosen->ts_oid[i]);
            } else {
                err_set(ERR_USAGE, "WAL directory \"%s\" is not empty", outer[i].dir);
                err_hint("give an empty or new directory, or --delta or --force; nothing was "
                         "changed");
            }
            rc = 2;
            goto out;
        }
        /* --delta and --force reuse a non-empty location the manifest gives only when
         * it is this data directory's own tablespace (its pg_tblspc link points there):
         * anything else there (another cluster's tablespace) is not the backup's to
         * overwrite and prune. A --tablespace-map directory is the DBA's choice. */
        if (ne && i < chosen->n_ts && outer[i].kind == ERR_INTEGRITY &&
            !own_tablespace(a.pgdata, chosen->ts_oid[i], ts_dir[i])) {
            err_set(ERR_USAGE,
                    "tablespace directory \"%s\" (tablespace %u) is not empty, and it is not "
                    "the one \"%s/pg_tblspc/%u\" links to",
                    ts_dir[i], chosen->ts_oid[i], a.pgdata, chosen->ts_oid[i]);
            err_hint("map the tablespace with --tablespace-map %u=DIR (an empty or new "
                     "directory, or this one if it is this cluster's); nothing was changed",
                     chosen->ts_oid[i]);
            rc = 2;
            goto out;
        }
        outer_nonempty |= ne > 0;
    }

    struct repo *r = cli_repos_get(&set, chosen->repo);
    if (!r) {
        rc = 1;
        goto out;
    }
    /* The server that will start it must be of the backup's major. */
    if (a.start && pgbin_find(cl->pg_bindir, cl->name, repo_identity(r)->pg_major,
                              "restore --start", &bin) < 0) {
        rc = 2;
        goto out;
    }
    config_abs = absolute_path(ctx->config_path ? ctx->config_path : config_default_path());
    {
        char real[PATH_MAX];
        if (realpath(config_abs, real)) {
            free(config_abs);
            config_abs = xstrdup(real);
        }
    }
    char t[128];
    log_info("restoring backup \"%s\" (timeline %u) from repository \"%s\" into \"%s\", "
             "target %s",
             chosen->b.label, chosen->b.timeline, repo_name(r), a.pgdata,
             restore_target_describe(&a.target, t, sizeof(t)));

    if (nonempty || outer_nonempty) {
        seen = path_set_new();
        path_set_add(seen, "backup_manifest");
    }
    /* The other repositories naming chunks as r does: a chunk damaged in r is read
     * from them. One that cannot be opened is left out (said at detail level). */
    const uint8_t *key = repo_chunk_key(r);
    alts = xcalloc(set.n, sizeof(*alts));
    for (size_t i = 0; i < set.n; i++) {
        if (i == chosen->repo)
            continue;
        struct repo *o = cli_repos_get(&set, i);
        if (!o) {
            log_detail("repository \"%s\" cannot stand in for damaged chunks: %s",
                       set.r[i].conf->name, err_message());
            err_clear();
            continue;
        }
        const uint8_t *okey = repo_chunk_key(o);
        if (!key != !okey || (key && memcmp(key, okey, 32) != 0))
            continue;
        alts[nalts++] = o;
    }
    struct writer_options wo = {.pgdata = a.pgdata,
                                .repo = r,
                                .alts = alts,
                                .nalts = nalts,
                                .threads = threads_for(set.r[chosen->repo].conf),
                                .delta = a.delta,
                                .progress = isatty(2) && !a.no_progress && !a.json,
                                .total_bytes = chosen->logical_bytes,
                                .ts_oid = chosen->ts_oid,
                                .ts_location = (const char *const *)chosen->ts_location,
                                .ts_dir = ts_dir,
                                .n_ts = chosen->n_ts,
                                .waldir = waldir,
                                .wal_link = wal_link,
                                .seen = seen};
    /* Every entry checked before the first byte is written; with the chunk check, that
     * every chunk is in some repository too (one listing of r's chunks, a HEAD in the
     * others for each chunk r lacks). */
    int64_t t_files = time_mono_us();
    uint8_t digest[SHA256_LEN];
    bad = chunkset_new();
    wo.bad_out = bad;
    if (!a.no_chunk_check) {
        held = chunkset_new();
        int e = repo_chunk_list(r, chunkset_add_listed, held);
        if (e == -ERR_NOT_FOUND)
            err_clear();
        else if (e < 0) {
            err_context("while listing the chunks of repository \"%s\"", repo_name(r));
            rc = 1;
            goto out;
        }
        wo.held = held;
    }
    if (writer_vet(&wo, chosen->b.label, digest) < 0) {
        rc = err_kind() == ERR_INTEGRITY ? 3 : 1;
        if (chunkset_count(bad))
            hint_intact(&set, &cat, chosen, bad, held);
        goto out;
    }
    if (held)
        log_detail("every chunk of backup \"%s\" is in a repository (%zu listed in \"%s\"; "
                   "%lld ms)",
                   chosen->b.label, chunkset_count(held), repo_name(r),
                   (long long)((time_mono_us() - t_files) / 1000));
    struct writer_stats st;
    /* A chunk damaged in the repository is an integrity problem (exit 3), as a refused
     * manifest is: drill tells a data problem from one that kept it from running. */
    if (writer_restore(&wo, chosen->b.label, digest, &st) < 0) {
        rc = err_kind() == ERR_INTEGRITY ? 3 : 1;
        if (chunkset_count(bad))
            hint_intact(&set, &cat, chosen, bad, held);
        goto out;
    }
    uint64_t removed = st.files_removed;
    /* The configuration beside the data, never over /etc: a failure is said, not fatal
     * (the data directory is complete). */
    if (restore_config_beside(r, repo_name(r), cl->name, chosen->b.label, a.pgdata) < 0) {
        char *why = err_format();
        log_warn("the configuration of backup \"%s\" was not restored: %s", chosen->b.label, why);
        free(why);
        err_clear();
    }
    if (write_recovery(&a, r, chosen->b.label, ctx->program, config_abs, cl->name) < 0) {
        rc = 1;
        goto out;
    }
    int64_t t_end = time_mono_us();
    int64_t elapsed_ms = (t_end - t0) / 1000;
    char sz[32], wsz[32], dur[32];
    size_format(st.bytes, sz, sizeof(sz));
    size_format(st.bytes_written, wsz, sizeof(wsz));
    duration_format(elapsed_ms, dur, sizeof(dur));
    if (a.json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "backup",
                      chosen->b.label, "repository", repo_name(r), "pgdata", a.pgdata, "timeline",
                      (int)tli, "target", t, "files", (json_int_t)st.files, "bytes",
                      (json_int_t)st.bytes, "files_written", (json_int_t)st.files_written,
                      "bytes_written", (json_int_t)st.bytes_written, "files_removed",
                      (json_int_t)removed, "delta", a.delta, "elapsed_ms", (json_int_t)elapsed_ms);
        /* Where the time went: choosing the backup (catalog, window, checks), then
         * vetting the manifest and laying the files down (drill's RTO phases). */
        json_object_set_new(o, "choose_ms", json_integer((json_int_t)((t_files - t0) / 1000)));
        json_object_set_new(o, "files_ms", json_integer((json_int_t)((t_end - t_files) / 1000)));
        char *text = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        printf("%s\n", text);
        free(text);
        json_decref(o);
    } else {
        printf("restored backup \"%s\" from repository \"%s\" into \"%s\": %llu files, %s "
               "in %s\n",
               chosen->b.label, repo_name(r), a.pgdata, (unsigned long long)st.files, sz, dur);
        if (seen)
            printf("%s: rewrote %llu files, %s; removed %llu files not in the backup\n",
                   a.delta ? "delta" : "force", (unsigned long long)st.files_written, wsz,
                   (unsigned long long)removed);
        printf("recovery target: %s (timeline %s)\n", t, a.target.timeline ? "as given" : "latest");
        if (!a.start)
            printf("next: start the server (pg_ctl -D \"%s\" start, or pgark restore ... --start "
                   "--wait): %s\n",
                   a.pgdata, restore_target_outcome(&a.target));
    }
    fflush(stdout);
    rc = 0;
    if (a.start) {
        struct start_options so = {.pgdata = a.pgdata,
                                   .port = a.port,
                                   .wait = a.wait,
                                   .target = &a.target,
                                   .pg_major = repo_identity(r)->pg_major,
                                   .env_drop = (const char *const *)cfg->env_vars,
                                   .bin = &bin};
        if (restore_start(&so) < 0)
            rc = 1;
    }
out:
    chunkset_free(held);
    chunkset_free(bad);
    free(alts);
    pgbin_free(&bin);
    path_set_free(seen);
    for (size_t i = 0; i < n_outer; i++)
        free(outer[i].what);
    free(outer);
    free(waldir);
    free(wal_link);
    free(ts_dir);
    for (size_t i = 0; ts_owned && i < n_ts_owned; i++)
        free(ts_owned[i]);
    free(ts_owned);
    free(config_abs);
    timeline_history_free(hist);
    catalog_free(&cat);
    cli_repos_free(&set);
    free_args(&a);
    return rc;
}
