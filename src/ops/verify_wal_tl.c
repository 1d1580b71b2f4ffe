/*
 * verify_wal_tl.c — the checks of the WAL archive's timelines (verify_wal.c lists all
 * the checks): history files, and no segment missing. Moved out of verify_wal.c, which
 * lists the archive and decodes the segments.
 */
#include "verify_int.h"
#include "verify_wal_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- history files ------------------------------------------------------------------- */

void verify_wal_histories(struct wal_verify *w)
{
    struct verify_counts add = {0};
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        char path[32], hname[20];
        wal_history_name(t->tli, hname);
        snprintf(path, sizeof(path), "wal/%s", hname);
        if (!t->has_history) {
            if (t->tli > 1 && (t->nsegs || t->npartials))
                verify_problem(w->v, w->vr, "history", path, NULL, t->tli,
                               "history file %s is missing: timeline %u has WAL but no history",
                               hname, t->tli);
            continue;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        if (repo_get_all_max(w->vr->repo, path, REPO_HISTORY_MAX, "a timeline history file", &data,
                             &len) < 0) {
            verify_problem_err(w->v, w->vr, "damaged", path, NULL, t->tli);
            continue;
        }
        add.objects++;
        add.bytes += len;
        add.histories++;
        if (timeline_history_parse(t->tli, (const char *)data, len, &t->history) < 0) {
            t->history = NULL;
            err_context("in history file %s", hname);
            verify_problem_err(w->v, w->vr, "history", path, NULL, t->tli);
        }
        free(data);
    }
    verify_count(w->v, w->vr, &add);

    /* Each history must repeat its parent's history, and a timeline's segments must not
     * lie before it began. Record where each parent ended. */
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        const struct timeline_history *h = t->history;
        if (!h || h->count == 0)
            continue;
        const struct timeline_entry *last = &h->entries[h->count - 1];
        struct verify_tl *parent = verify_wal_tl_find(w, last->tli);
        if (parent) {
            parent->ends = xrealloc(parent->ends, (parent->nends + 1) * sizeof(lsn_t));
            parent->ends[parent->nends++] = last->switchpoint;
            const struct timeline_history *ph = parent->history;
            bool same = !ph || ph->count + 1 == h->count;
            for (size_t k = 0; ph && same && k < ph->count; k++)
                same = ph->entries[k].tli == h->entries[k].tli &&
                       ph->entries[k].switchpoint == h->entries[k].switchpoint;
            if (!same) {
                char path[32];
                snprintf(path, sizeof(path), "wal/%08X.history", t->tli);
                verify_problem(w->v, w->vr, "history", path, NULL, t->tli,
                               "history files %08X.history and %08X.history disagree about the "
                               "timelines before %u",
                               parent->tli, t->tli, parent->tli);
            }
        }
        uint64_t first = lsn_to_segno(last->switchpoint, w->seg_size);
        char at[LSN_STRLEN], name[WAL_NAME_BUFLEN], path[64];
        for (size_t k = 0; k < t->nsegs && t->segs[k].segno < first; k++) {
            verify_wal_seg_name(w, t->tli, t->segs[k].segno, name);
            snprintf(path, sizeof(path), "wal/%08X/%s", t->tli, name);
            verify_problem(w->v, w->vr, "timeline", path, name, t->tli,
                           "segment lies before timeline %u began at %s (%08X.history)", t->tli,
                           lsn_format(last->switchpoint, at), t->tli);
        }
    }
}

/* --- continuity ---------------------------------------------------------------------- */

static void need(struct verify_tl *t, uint64_t first, uint64_t last)
{
    if (first > last)
        return;
    if (!t->need_set) {
        t->need_set = true;
        t->need_first = first;
        t->need_last = last;
        return;
    }
    if (first < t->need_first)
        t->need_first = first;
    if (last > t->need_last)
        t->need_last = last;
}

static bool has_seg(const struct verify_tl *t, uint64_t segno)
{
    size_t lo = 0, hi = t->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->segs[mid].segno == segno)
            return true;
        if (t->segs[mid].segno < segno)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

void verify_wal_continuity(struct wal_verify *w)
{
    /* What each timeline holds in scope: from its first segment in scope to its newest
     * (a partial copy past the last complete segment means everything before it was
     * complete once). */
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        bool found = false;
        uint64_t first = 0;
        for (size_t k = 0; k < t->nsegs && !found; k++) {
            if (verify_wal_in_scope(w, &t->segs[k])) {
                first = t->segs[k].segno;
                found = true;
            }
        }
        if (!found)
            continue;
        uint64_t last = t->segs[t->nsegs - 1].segno;
        for (size_t k = 0; k < t->npartials; k++) {
            uint64_t p = t->partials[k].segno;
            if (verify_wal_in_scope(w, &t->partials[k]) && p > 0 && p - 1 > last)
                last = p - 1;
        }
        /* With backups, what is needed starts at the oldest one's start segment
         * (docs/architecture.md): older WAL may have gaps, and a segment missing at that start is
         * reported even when none older is there. */
        const struct verify_repo *vr = w->vr;
        if (vr->have_floor && w->v->since_us == 0) {
            if (t->tli == vr->floor_tli)
                first = vr->floor_segno;
            else if (first < vr->floor_segno)
                first = vr->floor_segno;
            if (first > last)
                continue;
        }
        need(t, first, last);
    }
    /* Across a switch: the parent is needed up to the segment before the one holding the
     * switch point, the child from that segment on, when the archive reaches back that
     * far on the parent. */
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        if (!t->history || !t->history->count || !t->need_set)
            continue;
        const struct timeline_entry *last = &t->history->entries[t->history->count - 1];
        struct verify_tl *parent = verify_wal_tl_find(w, last->tli);
        uint64_t k = lsn_to_segno(last->switchpoint, w->seg_size);
        if (!parent || !parent->need_set || parent->need_first >= k)
            continue;
        need(parent, parent->need_first, k - 1);
        need(t, k, t->need_last);
    }
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        if (!t->need_set)
            continue;
        char a[WAL_NAME_BUFLEN], b[WAL_NAME_BUFLEN], path[64];
        for (uint64_t s = t->need_first; s <= t->need_last; s++) {
            if (has_seg(t, s))
                continue;
            uint64_t e = s;
            while (e + 1 <= t->need_last && !has_seg(t, e + 1))
                e++;
            verify_wal_seg_name(w, t->tli, s, a);
            verify_wal_seg_name(w, t->tli, e, b);
            snprintf(path, sizeof(path), "wal/%08X/%s", t->tli, a);
            if (s == e)
                verify_problem(w->v, w->vr, "missing", path, a, t->tli, "segment %s is missing", a);
            else
                verify_problem(w->v, w->vr, "missing", path, a, t->tli,
                               "segments %s to %s are missing (%" PRIu64 ")", a, b, e - s + 1);
            s = e;
        }
    }
}
