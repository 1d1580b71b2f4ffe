/*
 * parent.c — full or incremental (command_int.h): the backup an incremental is taken
 * against, or the reason the backup is a full one.
 */
#include "command_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- incremental or full --------------------------------------------------------------- */

static void choice_full(struct incr_choice *c, char *reason)
{
    c->parent[0] = '\0';
    free(c->reason);
    c->reason = reason;
    free(c->manifest);
    c->manifest = NULL;
    c->mlen = 0;
}

/* The current error as the reason (cleared): its message, one line. */
void backup_choice_full_err(struct incr_choice *c, const char *what)
{
    choice_full(c, xasprintf("%s: %s", what, err_message()));
    err_clear();
}

/*
 * An incremental backup needs a server of 17 or later with summarize_wal on, and a
 * parent: the newest backup in the first repository on the server's timeline (the
 * server sends what changed since its start, which it knows only from the WAL summaries
 * of that timeline), of 17 or later, with its server's backup_manifest. The rest
 * (every repository holds it and its chunks; the server still has the summaries) is
 * found out later, each failure a reason for a full backup too.
 */
void backup_choose_parent(struct session *s, const struct backup_cmd *a, int version,
                          timeline_t tli, struct incr_choice *c)
{
    struct pg_rows *rows = NULL;
    struct repo_backup *list = NULL;
    size_t n = 0;
    const struct repo_backup *best = NULL, *newest = NULL;
    char path[320];

    memset(c, 0, sizeof(*c));
    if (a->full) {
        choice_full(c, xstrdup("--full was given"));
        return;
    }
    if (version < 170000) {
        choice_full(c, xasprintf("PostgreSQL %d has no incremental backups (17 and later do)",
                                 version / 10000));
        return;
    }
    if (pg_exec_simple(s->conn, "SHOW summarize_wal", &rows) < 0) {
        backup_choice_full_err(c, "could not read summarize_wal");
        return;
    }
    const char *on = pg_rows_value(rows, 0, 0);
    bool summarizing = on && strcmp(on, "on") == 0;
    pg_rows_free(rows);
    if (!summarizing) {
        choice_full(c, xstrdup("summarize_wal is off on the server (an incremental backup needs "
                               "its WAL summaries)"));
        return;
    }
    struct repo *r = s->targets[0].repo;
    if (repo_backup_list(r, &list, &n) < 0) {
        backup_choice_full_err(c, "could not list the backups");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct manifest_header *h = &list[i].header;
        if (h->system_identifier != repo_identity(r)->system_identifier)
            continue;
        if (!newest || h->stop_lsn > newest->header.stop_lsn)
            newest = &list[i];
        if (h->timeline != tli || h->pg_version < 170000)
            continue;
        if (!best || h->start_lsn > best->header.start_lsn)
            best = &list[i];
    }
    if (!best && newest && newest->header.timeline != tli) {
        choice_full(c, xasprintf("timeline switch: no backup on timeline %u yet (the newest, "
                                 "\"%s\", is on timeline %u)",
                                 tli, newest->label, newest->header.timeline));
    } else if (!best) {
        choice_full(c, xasprintf("no earlier backup of PostgreSQL 17 or later in repository "
                                 "\"%s\"",
                                 repo_name(r)));
    } else if (repo_backup_path(best->label, "backup_manifest", path, sizeof(path)) < 0 ||
               repo_get_all(r, path, &c->manifest, &c->mlen) < 0) {
        char *what = xasprintf("could not read the backup_manifest of backup \"%s\"", best->label);
        backup_choice_full_err(c, what);
        free(what);
    } else {
        snprintf(c->parent, sizeof(c->parent), "%s", best->label);
    }
    repo_backup_list_free(list, n);
}
