/*
 * verify_hwm.c — the archive held to its WAL high-water marks (repo.h):
 *
 *   - in each repository, every complete segment at or below a timeline's mark must be
 *     there (from the first one needed, as for continuity), and the partial copy the mark
 *     names must be there with at least the bytes it names, unless the segment is complete;
 *   - each repository's mark must be at least the last one the receiver wrote there, as
 *     its record in the spool says (the one copy out of the repository's reach);
 *   - a repository's mark must not be behind another repository's mark of the same
 *     timeline by more than the shipping lag allowed, unless the receiver's record says
 *     that is where it left that repository (an outage: `check` reports the lag).
 *
 * What this cannot see: an older mark put back together with the WAL after it removed,
 * in every repository alike, where no receiver's record is at hand (docs/architecture.md).
 */
#include "verify_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "seq N, written TIME by WRITER" */
static char *describe(const struct repo_wal_hwm *m, char *buf, size_t cap)
{
    char when[64];
    snprintf(buf, cap, "seq %" PRIu64 ", written %s by %s", m->seq,
             time_format_pg(m->time_us, when, sizeof(when)), m->writer);
    return buf;
}

static void keep(struct verify_repo *vr, const struct verify_hwm *e)
{
    vr->hwms = xrealloc(vr->hwms, (vr->nhwms + 1) * sizeof(*vr->hwms));
    vr->hwms[vr->nhwms++] = *e;
}

static const struct verify_hwm *find(const struct verify_repo *vr, timeline_t tli)
{
    for (size_t i = 0; i < vr->nhwms; i++) {
        if (vr->hwms[i].tli == tli)
            return &vr->hwms[i];
    }
    return NULL;
}

static bool holds(const struct verify_repo *vr, timeline_t tli)
{
    const struct verify_hwm *e = find(vr, tli);
    return e && !e->damaged;
}

/* The first segment of timeline t by its history; 0 when unknown (timeline 1, or no
 * history). */
static uint64_t timeline_start(const struct verify_tl *t, uint64_t seg_size)
{
    if (!t->history || !t->history->count)
        return 0;
    return lsn_to_segno(t->history->entries[t->history->count - 1].switchpoint, seg_size);
}

/*
 * The listing and the reads of the WAL scope come before the mark is read, and a receiver
 * may be shipping meanwhile: the mark can name what they did not see yet. So whatever
 * looks missing by the mark is looked at again, after it was read; the mark is written
 * after what it names, so what is missing now was archived and is gone.
 */

/* 1 when the object is there now, 0 when not; an error is a problem of its own, and the
 * object is taken as there. */
static void report_segments(struct verify_run *v, struct verify_repo *vr, timeline_t tli,
                            uint64_t lo, uint64_t hi, bool from_top, const char *desc,
                            const char *reach)
{
    char a[WAL_NAME_BUFLEN], b[WAL_NAME_BUFLEN], path[64];
    wal_segment_name(tli, lo, vr->seg_size, a);
    wal_segment_name(tli, hi, vr->seg_size, b);
    snprintf(path, sizeof(path), "wal/%08X/%s", tli, a);
    if (lo == hi)
        verify_problem(v, vr, "missing", path, a, tli,
                       "segment %s is missing%s: the WAL high-water mark of timeline %u says the "
                       "archive reached %s (%s)",
                       a, from_top ? " (the timeline holds no complete segment)" : "", tli, reach,
                       desc);
    else
        verify_problem(v, vr, "missing", path, a, tli,
                       "segments %s to %s are missing (%" PRIu64
                       "): the WAL high-water mark of timeline %u says the archive reached %s (%s)",
                       a, b, hi - lo + 1, tli, reach, desc);
}

/* Complete segments at or below the mark that are gone. The continuity check reported
 * those up to need_last; these are the ones past every segment listed, which only the
 * mark shows were ever archived. */
static void check_segments(struct verify_run *v, struct verify_repo *vr, const struct verify_tl *t,
                           const struct repo_wal_hwm *m, const char *desc, const char *reach)
{
    uint64_t lo, top = m->segno;
    bool from_top = false;
    if (t->need_set)
        lo = t->need_last + 1;
    else if (t->nsegs)
        lo = t->segs[t->nsegs - 1].segno + 1;
    else if (vr->have_floor)
        lo = vr->floor_segno;
    else if (timeline_start(t, vr->seg_size))
        lo = timeline_start(t, vr->seg_size);
    else
        lo = top, from_top = true; /* where this timeline's archive began is not known */
    if (vr->have_floor && lo < vr->floor_segno)
        lo = vr->floor_segno;
    /* Runs of segments still missing when looked at again. */
    bool in_run = false;
    uint64_t run = 0;
    for (uint64_t s = lo; s <= top; s++) {
        bool missing = !verify_exists_now(v, vr, t->tli, s, "");
        if (missing && !in_run) {
            in_run = true;
            run = s;
        } else if (!missing && in_run) {
            in_run = false;
            report_segments(v, vr, t->tli, run, s - 1, from_top, desc, reach);
        }
    }
    if (in_run)
        report_segments(v, vr, t->tli, run, top, from_top, desc, reach);
}

static int count_sink(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    *(uint64_t *)ctx += len;
    return 0;
}

/* The partial copy the mark names: there, and at least as long, unless its segment (or a
 * later one) is complete. A newer partial copy than the mark's means that segment should
 * be complete, which continuity checks. */
static void check_partial(struct verify_run *v, struct verify_repo *vr, const struct verify_tl *t,
                          const struct repo_wal_hwm *m, const char *desc)
{
    uint64_t p = m->partial_segno;
    if (t->nsegs && t->segs[t->nsegs - 1].segno >= p)
        return;
    const struct verify_seg *newest = t->npartials ? &t->partials[t->npartials - 1] : NULL;
    if (newest && (newest->segno > p || (newest->segno == p && !newest->read_ok) ||
                   (newest->segno == p && newest->bytes >= m->partial_bytes)))
        return; /* later WAL, reported damaged already, or long enough */
    if (verify_exists_now(v, vr, t->tli, p, ""))
        return; /* completed since the listing */
    char name[WAL_NAME_BUFLEN], path[64];
    wal_segment_name(t->tli, p, vr->seg_size, name);
    snprintf(path, sizeof(path), "wal/%08X/%s.partial", t->tli, name);
    uint64_t bytes = 0;
    int rc = repo_get(vr->repo, path, count_sink, &bytes);
    if (rc < 0 && err_kind() == ERR_NOT_FOUND) {
        err_clear();
        verify_problem(v, vr, "missing", path, name, t->tli,
                       "partial segment %s.partial is missing: the WAL high-water mark of "
                       "timeline %u says %" PRIu64 " bytes of it were archived (%s)",
                       name, t->tli, m->partial_bytes, desc);
    } else if (rc < 0) {
        verify_problem_err(v, vr, "damaged", path, name, t->tli);
    } else if (bytes < m->partial_bytes) {
        verify_problem(v, vr, "missing", path, name, t->tli,
                       "partial segment %s.partial holds %" PRIu64 " bytes, fewer than the %" PRIu64
                       " the WAL high-water mark of timeline %u says were archived (%s): it is an "
                       "older copy, and the WAL after it is missing",
                       name, bytes, m->partial_bytes, t->tli, desc);
    }
}

void verify_hwm_timeline(struct verify_run *v, struct verify_repo *vr, const struct verify_tl *t)
{
    char path[32], desc[160], reach[LSN_STRLEN];
    struct verify_hwm e = {.tli = t->tli, .read_us = time_now_us()};
    repo_wal_hwm_path(t->tli, path, sizeof(path));
    if (repo_wal_hwm_get(vr->repo, t->tli, &e.m) < 0) {
        if (err_kind() == ERR_NOT_FOUND) { /* gone since the listing: as if never there */
            err_clear();
            return;
        }
        verify_problem_err(v, vr, "damaged", path, NULL, t->tli);
        e.damaged = true;
        keep(vr, &e);
        return;
    }
    struct verify_counts add = {.objects = 1, .hwms = 1};
    verify_count(v, vr, &add);
    keep(vr, &e);
    const struct repo_wal_hwm *m = &e.m;
    describe(m, desc, sizeof(desc));
    lsn_format(repo_wal_hwm_end(m, vr->seg_size), reach);
    /* Below the oldest backup's start, WAL may have been expired. */
    if (m->has_segment && (!vr->have_floor || m->segno >= vr->floor_segno))
        check_segments(v, vr, t, m, desc, reach);
    if (m->has_partial && (!vr->have_floor || m->partial_segno >= vr->floor_segno))
        check_partial(v, vr, t, m, desc);
}

void verify_hwm_absent(struct verify_repo *vr, const struct verify_tl *tls, size_t n)
{
    const struct verify_tl *newest = NULL;
    for (size_t i = 0; i < n; i++) {
        if ((tls[i].nsegs || tls[i].npartials) && (!newest || tls[i].tli > newest->tli))
            newest = &tls[i];
    }
    if (newest && !newest->has_hwm)
        log_info("repository \"%s\": timeline %u has no WAL high-water mark (its WAL was "
                 "archived by an older pgark, or by backups only), so whether its newest WAL "
                 "is all there cannot be checked; the receiver and wal-push write one with the "
                 "next segment they archive",
                 vr->name, newest->tli);
}

/* --- across sources ------------------------------------------------------------------------ */

void verify_hwm_read_records(struct verify_repo *repos, size_t n, const char *spool_dir)
{
    for (size_t i = 0; i < n; i++) {
        struct verify_repo *vr = &repos[i];
        char *path = xasprintf("%s/%s%s", spool_dir, REPO_WAL_HWM_RECORD_PREFIX, vr->name);
        FILE *f = fopen(path, "re");
        if (!f) {
            free(path);
            continue;
        }
        struct buf b = BUF_INIT;
        buf_append_file(&b, f);
        fclose(f);
        buf_append(&b, "", 1); /* never NULL, NUL-terminated */
        vr->record_path = path;
        vr->record_len = b.len - 1;
        vr->record_text = (char *)buf_steal(&b);
    }
}

/* The receiver's record of the last mark it wrote to vr's repository, as read before the
 * repositories were; false when there is none (or it does not parse: warned about). */
static bool parse_record(const struct verify_repo *vr, struct repo_wal_hwm *out)
{
    if (!vr->record_text)
        return false;
    char *what = xasprintf("record \"%s\"", vr->record_path);
    int rc = repo_wal_hwm_parse(vr->record_text, vr->record_len, vr->seg_size, what, out);
    free(what);
    if (rc < 0) {
        log_warn("%s: not compared", err_message());
        err_clear();
        return false;
    }
    return true;
}

static void check_record(struct verify_run *v, struct verify_repo *vr,
                         const struct repo_wal_hwm *rec, const char *rec_path)
{
    char path[32], rdesc[160], rend[LSN_STRLEN];
    const struct verify_hwm *e = find(vr, rec->tli);
    if (e && e->damaged)
        return;
    repo_wal_hwm_path(rec->tli, path, sizeof(path));
    describe(rec, rdesc, sizeof(rdesc));
    lsn_format(repo_wal_hwm_end(rec, vr->seg_size), rend);
    if (!e) {
        verify_problem(v, vr, "hwm", path, NULL, rec->tli,
                       "the WAL high-water mark of timeline %u is missing, but the receiver "
                       "wrote one reaching %s there (%s; its record \"%s\"): it was removed, "
                       "and the WAL it covered may be missing too",
                       rec->tli, rend, rdesc, rec_path);
        return;
    }
    const struct repo_wal_hwm *m = &e->m;
    if (m->seq >= rec->seq &&
        repo_wal_hwm_end(m, vr->seg_size) >= repo_wal_hwm_end(rec, vr->seg_size))
        return;
    char desc[160], end[LSN_STRLEN];
    verify_problem(v, vr, "hwm", path, NULL, rec->tli,
                   "the WAL high-water mark of timeline %u is older than the last one the receiver "
                   "wrote there: it reaches %s (%s), the receiver's reached %s (%s; its record "
                   "\"%s\"): an older copy is in its place, and WAL after it may be missing",
                   rec->tli, lsn_format(repo_wal_hwm_end(m, vr->seg_size), end),
                   describe(m, desc, sizeof(desc)), rend, rdesc, rec_path);
}

/* Repository a against the one holding the furthest mark of tli, best. */
static void check_behind(struct verify_run *v, struct verify_repo *a,
                         const struct verify_repo *best, const struct repo_wal_hwm *bm,
                         int64_t grace_us)
{
    const struct verify_hwm *e = find(a, bm->tli);
    if (e && e->damaged)
        return;
    uint64_t seg = best->seg_size;
    lsn_t bend = repo_wal_hwm_end(bm, seg);
    if (e && repo_wal_hwm_end(&e->m, a->seg_size) >= bend)
        return;
    /* WAL before a's oldest backup restores nothing from a (as for continuity). */
    if (a->have_floor && bend <= segno_to_lsn(a->floor_segno, a->seg_size))
        return;
    /* No mark of an older timeline where a has one of a newer, and no backup of a on it
     * or before it: a repository added after that timeline ended was never shipped its
     * WAL, and needs none of it. */
    for (size_t i = 0; !e && (!a->have_floor || a->floor_tli > bm->tli) && i < a->nhwms; i++) {
        if (!a->hwms[i].damaged && a->hwms[i].tli > bm->tli)
            return;
    }
    char path[32], bdesc[160], bend_text[LSN_STRLEN], grace[32];
    repo_wal_hwm_path(bm->tli, path, sizeof(path));
    describe(bm, bdesc, sizeof(bdesc));
    lsn_format(bend, bend_text);
    duration_format(grace_us / 1000, grace, sizeof(grace));
    if (!e) {
        verify_problem(v, a, "hwm", path, NULL, bm->tli,
                       "there is no WAL high-water mark of timeline %u here, but repository \"%s\" "
                       "has one reaching %s (%s): WAL that \"%s\" holds may be missing here",
                       bm->tli, best->name, bend_text, bdesc, best->name);
        return;
    }
    /* A mark read later had longer to move on: that much more is allowed. */
    const struct verify_hwm *be = find(best, bm->tli);
    int64_t later = be->read_us > e->read_us ? be->read_us - e->read_us : 0;
    int64_t apart = bm->time_us - e->m.time_us - later;
    char end[LSN_STRLEN], desc[160], gap[32];
    lsn_format(repo_wal_hwm_end(&e->m, a->seg_size), end);
    if (apart <= grace_us) {
        log_detail("repository \"%s\" reaches %s on timeline %u, repository \"%s\" %s: within "
                   "the shipping lag allowed (%s)",
                   a->name, end, bm->tli, best->name, bend_text, grace);
        return;
    }
    duration_format((bm->time_us - e->m.time_us) / 1000, gap, sizeof(gap));
    verify_problem(v, a, "hwm", path, NULL, bm->tli,
                   "the WAL high-water mark of timeline %u reaches %s (%s), but repository \"%s\" "
                   "reaches %s (%s), written %s later, more than the %s of shipping lag allowed: "
                   "WAL that \"%s\" holds is missing here",
                   bm->tli, end, describe(&e->m, desc, sizeof(desc)), best->name, bend_text, bdesc,
                   gap, grace, best->name);
}

void verify_hwm_compare(struct verify_run *v, struct verify_repo *repos, size_t n, int64_t grace_us)
{
    struct repo_wal_hwm *recs = xcalloc(n ? n : 1, sizeof(*recs));
    bool *have = xcalloc(n ? n : 1, sizeof(*have));
    for (size_t i = 0; i < n; i++) {
        if (!repos[i].wal_listed || !parse_record(&repos[i], &recs[i]))
            continue;
        have[i] = true;
        check_record(v, &repos[i], &recs[i], repos[i].record_path);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < repos[i].nhwms; k++) {
            const struct verify_hwm *e = &repos[i].hwms[k];
            if (e->damaged)
                continue;
            /* The furthest mark of this timeline, compared once (at its first holder). */
            bool first = true;
            for (size_t j = 0; j < i; j++)
                first = first && !holds(&repos[j], e->tli);
            if (!first)
                continue;
            size_t best = i;
            for (size_t j = i + 1; j < n; j++) {
                if (holds(&repos[j], e->tli) &&
                    repo_wal_hwm_end(&find(&repos[j], e->tli)->m, repos[j].seg_size) >
                        repo_wal_hwm_end(&find(&repos[best], e->tli)->m, repos[best].seg_size))
                    best = j;
            }
            const struct repo_wal_hwm *bm = &find(&repos[best], e->tli)->m;
            for (size_t j = 0; j < n; j++) {
                /* The receiver's record of a repository on this timeline tells where it
                 * left it: behind the others is lag, and the record was compared above. */
                if (j == best || !repos[j].wal_listed || (have[j] && recs[j].tli == e->tli))
                    continue;
                check_behind(v, &repos[j], &repos[best], bm, grace_us);
            }
        }
    }
    free(recs);
    free(have);
}

void verify_hwm_free(struct verify_repo *vr)
{
    free(vr->record_path);
    free(vr->record_text);
    vr->record_path = vr->record_text = NULL;
    free(vr->hwms);
    vr->hwms = NULL;
    vr->nhwms = 0;
}
