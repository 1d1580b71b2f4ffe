/*
 * window.c — before restore writes anything: whether the recovery target lies inside what
 * the repositories can reach (a backup before it, WAL after it), whether the archive
 * reaches its own high-water marks, and, when a chunk turns out damaged, which backup
 * could be restored instead.
 */
#include "restore_int.h"

#include "pgark/chunkset.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <stdlib.h>
#include <string.h>

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
int restore_check_window(struct restore_args *a, struct cli_repos *set, const struct catalog *cat,
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

/* The restore of chosen failed on the chunks in bad: name the newest backup that does
 * not need them, as a hint on the error. */
void restore_hint_intact(struct cli_repos *set, const struct catalog *cat,
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

/*
 * A restore to latest must reach the latest WAL that was archived. An archive cut short
 * (its newest segments gone, an older .partial in place of the newest) is otherwise an
 * archive that ends earlier: recovery would replay what is there, promote, and the
 * transactions after it would be lost without a word. The high-water marks say how far
 * the archive reached; when what is there ends before that, nothing is changed and the
 * DBA decides: bring the WAL back, or name the end of what is there as the target, which
 * accepts the loss explicitly.
 */
int restore_check_reach(const struct restore_args *a, struct cli_repos *set, timeline_t tli)
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
