/*
 * places.c — where restore writes besides the data directory: each tablespace of the
 * backup (its location, --tablespace-map, --tablespace-dir) and the WAL directory
 * (--waldir, or the link pg_wal already is), checked before the first write: absolute,
 * neither in nor around the data directory nor each other, and empty unless --delta or
 * --force reuse what is this data directory's own.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Where each tablespace of chosen goes: its location, --tablespace-map, or
 * --tablespace-dir/<oid>; each becomes an outer place. ERR_USAGE when a map names a
 * tablespace the backup does not have. */
static int plan_tablespaces(struct restore_places *p, const struct restore_args *a,
                            const struct catalog_entry *chosen)
{
    p->n_ts = chosen->n_ts;
    p->ts_dir = xcalloc(chosen->n_ts + 1, sizeof(*p->ts_dir));
    p->outer = xcalloc(chosen->n_ts + 1, sizeof(*p->outer));
    for (size_t m = 0; m < a->nmap; m++) {
        bool known = false;
        for (size_t i = 0; i < chosen->n_ts; i++)
            known |= chosen->ts_oid[i] == a->map[m].oid;
        if (!known)
            return err_set(ERR_USAGE,
                           "--tablespace-map names tablespace %u, which backup \"%s\" does "
                           "not have",
                           a->map[m].oid, chosen->b.label);
    }
    p->ts_owned = xcalloc(chosen->n_ts + 1, sizeof(*p->ts_owned));
    for (size_t i = 0; i < chosen->n_ts; i++) {
        bool mapped = false;
        const char *dir = chosen->ts_location[i];
        for (size_t m = 0; m < a->nmap; m++) {
            if (a->map[m].oid == chosen->ts_oid[i]) {
                dir = a->map[m].dir;
                mapped = true;
            }
        }
        /* --tablespace-dir: every tablespace not mapped one by one goes to DIR/<oid> (a
         * copy on the primary's own host: drill). */
        if (!mapped && a->ts_dir) {
            p->ts_owned[i] = xasprintf("%s/%u", a->ts_dir, chosen->ts_oid[i]);
            dir = p->ts_owned[i];
            mapped = true;
        }
        p->ts_dir[i] = dir;
        struct outer *o = &p->outer[p->n_outer++];
        o->dir = dir;
        o->oid = chosen->ts_oid[i];
        o->kind = mapped ? ERR_USAGE : ERR_INTEGRITY;
        o->what = mapped
                      ? xasprintf("the %s directory \"%s\" of tablespace %u",
                                  p->ts_owned[i] ? "--tablespace-dir" : "--tablespace-map", dir,
                                  chosen->ts_oid[i])
                      : xasprintf("the location \"%s\" of tablespace %u", dir, chosen->ts_oid[i]);
    }
    return 0;
}

/* pg_wal: a symlink to --waldir. Over a directory whose pg_wal is a symlink already
 * (--delta, --force), without --waldir, the link and its directory stay: a WAL volume
 * of the DBA's, emptied of what the backup does not hold. */
static void plan_wal(struct restore_places *p, const struct restore_args *a, bool nonempty)
{
    struct outer *o = &p->outer[p->n_outer];
    if (a->waldir) {
        p->waldir = xstrdup(a->waldir);
        p->wal_link = xstrdup(a->waldir);
        o->what = xasprintf("the --waldir directory \"%s\"", a->waldir);
        o->kind = ERR_USAGE;
        o->dir = p->waldir;
        p->n_outer++;
    } else if (nonempty) {
        char *path = xasprintf("%s/pg_wal", a->pgdata);
        char link[PATH_MAX];
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        free(path);
        if (n > 0) {
            link[n] = '\0';
            p->wal_link = xstrdup(link);
            p->waldir = link[0] == '/' ? xstrdup(link) : xasprintf("%s/%s", a->pgdata, link);
            o->what =
                xasprintf("the WAL directory \"%s\" that \"%s/pg_wal\" links to", link, a->pgdata);
            o->kind = ERR_USAGE;
            o->kept_wal = true;
            o->dir = p->waldir;
            p->n_outer++;
        }
    }
}

/* Each place empty, unless --delta or --force reuse it and it is this data directory's
 * own; sets p->nonempty. */
static int check_empty(struct restore_places *p, const struct restore_args *a,
                       const struct catalog_entry *chosen)
{
    for (size_t i = 0; i < p->n_outer; i++) {
        int ne = pgdata_nonempty(p->outer[i].dir);
        if (ne < 0)
            return ne;
        if (ne && !a->delta && !a->force) {
            if (i < chosen->n_ts) {
                err_set(ERR_USAGE, "tablespace directory \"%s\" (tablespace %u) is not empty",
                        p->ts_dir[i], chosen->ts_oid[i]);
                return err_hint("map it elsewhere with --tablespace-map %u=DIR, or give --delta "
                                "or --force if it is this data directory's own; nothing was "
                                "changed",
                                chosen->ts_oid[i]);
            }
            err_set(ERR_USAGE, "WAL directory \"%s\" is not empty", p->outer[i].dir);
            return err_hint("give an empty or new directory, or --delta or --force; nothing was "
                            "changed");
        }
        /* --delta and --force reuse a non-empty location the manifest gives only when
         * it is this data directory's own tablespace (its pg_tblspc link points there):
         * anything else there (another cluster's tablespace) is not the backup's to
         * overwrite and prune. A --tablespace-map directory is the DBA's choice. */
        if (ne && i < chosen->n_ts && p->outer[i].kind == ERR_INTEGRITY &&
            !own_tablespace(a->pgdata, chosen->ts_oid[i], p->ts_dir[i])) {
            err_set(ERR_USAGE,
                    "tablespace directory \"%s\" (tablespace %u) is not empty, and it is not "
                    "the one \"%s/pg_tblspc/%u\" links to",
                    p->ts_dir[i], chosen->ts_oid[i], a->pgdata, chosen->ts_oid[i]);
            return err_hint("map the tablespace with --tablespace-map %u=DIR (an empty or new "
                            "directory, or this one if it is this cluster's); nothing was "
                            "changed",
                            chosen->ts_oid[i]);
        }
        p->nonempty |= ne > 0;
    }
    return 0;
}

int restore_places_plan(struct restore_places *p, const struct restore_args *a,
                        const struct catalog_entry *chosen, bool nonempty, const char *repo_shown)
{
    int rc = plan_tablespaces(p, a, chosen);
    if (rc < 0)
        return rc;
    plan_wal(p, a, nonempty);
    if (check_outer(a->pgdata, p->outer, p->n_outer) < 0) {
        if (err_kind() == ERR_INTEGRITY)
            err_context("while checking the manifest of backup \"%s\" in repository \"%s\"",
                        chosen->b.label, repo_shown);
        return err_code();
    }
    return check_empty(p, a, chosen);
}

void restore_places_free(struct restore_places *p)
{
    for (size_t i = 0; i < p->n_outer; i++)
        free(p->outer[i].what);
    free(p->outer);
    free(p->waldir);
    free(p->wal_link);
    free(p->ts_dir);
    for (size_t i = 0; p->ts_owned && i < p->n_ts; i++)
        free(p->ts_owned[i]);
    free(p->ts_owned);
    memset(p, 0, sizeof(*p));
}
