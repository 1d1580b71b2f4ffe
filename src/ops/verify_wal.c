/*
 * verify_wal.c — the WAL archive of one repository, re-read and checked:
 *
 *   - every object in scope (segments, partial copies, time indexes, history files) is
 *     read whole: envelope, authentication tag and SHA-256 (repo_get checks them);
 *   - every complete segment is decoded (page headers, record CRCs, the xl_prev chain,
 *     also across consecutive segments) and must be valid to its end, or end with a
 *     switch record, or end where a history file says its timeline ended;
 *   - its time index, when it has one, must say what the segment's records say;
 *   - per timeline, no segment may be missing from the first needed (the oldest
 *     backup's start segment; without backups, the oldest segment archived) to the
 *     newest, across timeline switches too;
 *   - every history file parses, is consistent with its parent's, every timeline above
 *     1 that has WAL has one, and no segment of a timeline lies before its start;
 *   - the archive reaches as far as each timeline's high-water mark says (verify_hwm.c).
 *
 * Consecutive segments are decoded as one stream in runs of RUN_LEN, each run on a
 * worker; a run first decodes the segment before it (when there is one) so that the
 * xl_prev link into its first segment is checked too, without reporting what that
 * segment holds (its own run does).
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

#define RUN_LEN 8

struct seg_run {
    struct verify_tl *t;
    size_t from, to; /* indexes into t->segs, to exclusive */
    bool lead_in;    /* decode segs[from - 1] first */
};

struct partial_task {
    struct verify_tl *t;
    size_t i;
};

/* --- listing ------------------------------------------------------------------------- */

static struct verify_tl *tl_get(struct wal_verify *w, timeline_t tli)
{
    for (size_t i = 0; i < w->ntls; i++) {
        if (w->tls[i].tli == tli)
            return &w->tls[i];
    }
    w->tls = xrealloc(w->tls, (w->ntls + 1) * sizeof(*w->tls));
    struct verify_tl *t = &w->tls[w->ntls++];
    memset(t, 0, sizeof(*t));
    t->tli = tli;
    return t;
}

struct verify_tl *verify_wal_tl_find(struct wal_verify *w, timeline_t tli)
{
    for (size_t i = 0; i < w->ntls; i++) {
        if (w->tls[i].tli == tli)
            return &w->tls[i];
    }
    return NULL;
}

static void seg_push(struct verify_seg **v, size_t *n, uint64_t segno, int64_t mtime)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n].segno = segno;
    (*v)[*n].mtime_us = mtime;
    (*v)[*n].has_idx = false;
    (*v)[*n].read_ok = false;
    (*v)[*n].bytes = 0;
    (*n)++;
}

/* Listings come in byte order of path, so a segment's ".idx" follows it directly:
 * "X" < "X.idx" < "X.partial" < "X.partial.idx" < "Y". */
static int on_wal_object(void *ctx, const struct storage_info *info)
{
    struct wal_verify *w = ctx;
    const char *rel = info->path + w->prefix_len; /* after "<cluster>/wal/" */
    if (wal_is_history_name(rel)) {
        tl_get(w, (timeline_t)strtoul(rel, NULL, 16))->has_history = true;
        return 0;
    }
    timeline_t mark_tli = (timeline_t)strtoul(rel, NULL, 16);
    char mark[32];
    if (strlen(rel) == 12 && mark_tli > 0 &&
        !strcmp(rel, repo_wal_hwm_path(mark_tli, mark, sizeof(mark)) + 4)) {
        tl_get(w, mark_tli)->has_hwm = true;
        return 0;
    }
    const char *slash = strchr(rel, '/');
    if (!slash || slash - rel != 8)
        return 0;
    const char *name = slash + 1;
    size_t len = strlen(name);
    char base[WAL_NAME_BUFLEN];
    snprintf(base, sizeof(base), "%.24s", name);
    timeline_t tli;
    uint64_t segno;
    if (len < 24 || !wal_is_segment_name(base) ||
        wal_segment_parse(base, w->seg_size, &tli, &segno) < 0) {
        err_clear();
        return 0;
    }
    const char *suffix = name + 24;
    struct verify_tl *t = tl_get(w, tli);
    if (!*suffix) {
        seg_push(&t->segs, &t->nsegs, segno, info->mtime_us);
    } else if (!strcmp(suffix, ".partial")) {
        seg_push(&t->partials, &t->npartials, segno, info->mtime_us);
    } else if (!strcmp(suffix, ".idx")) {
        if (t->nsegs && t->segs[t->nsegs - 1].segno == segno)
            t->segs[t->nsegs - 1].has_idx = true;
    } else if (!strcmp(suffix, ".partial.idx")) {
        if (t->npartials && t->partials[t->npartials - 1].segno == segno)
            t->partials[t->npartials - 1].has_idx = true;
    }
    return 0;
}

static int cmp_tl(const void *a, const void *b)
{
    const struct verify_tl *x = a, *y = b;
    return x->tli < y->tli ? -1 : x->tli > y->tli;
}

bool verify_wal_in_scope(const struct wal_verify *w, const struct verify_seg *s)
{
    return w->v->since_us == 0 || s->mtime_us >= w->v->since_us;
}

char *verify_wal_seg_name(const struct wal_verify *w, timeline_t tli, uint64_t segno, char *buf)
{
    return wal_segment_name(tli, segno, w->seg_size, buf);
}

/* --- decoding ------------------------------------------------------------------------ */

/* What a segment's own records say, as a decode of the segment alone (which is how
 * the time index was made) would count them: events that start and end inside it. */
struct seg_events {
    lsn_t start, end;
    uint64_t commits, aborts;
    struct repo_wal_xact first, last;
    size_t nrp;
    char rp_name[8][64];
    lsn_t rp_lsn[8];
    bool switch_seen;
    lsn_t switch_lsn;
};

static void on_event(void *arg, const struct waldecode_event *ev)
{
    struct seg_events *s = arg;
    if (ev->lsn < s->start || ev->end_lsn > s->end)
        return;
    switch (ev->kind) {
    case WALDECODE_COMMIT: {
        struct repo_wal_xact x = {ev->lsn, ev->end_lsn, ev->time + PG_EPOCH_OFFSET_US, ev->xid};
        if (!s->commits)
            s->first = x;
        s->last = x;
        s->commits++;
        break;
    }
    case WALDECODE_ABORT:
        s->aborts++;
        break;
    case WALDECODE_RESTORE_POINT:
        if (s->nrp < 8) {
            snprintf(s->rp_name[s->nrp], sizeof(s->rp_name[0]), "%s", ev->name ? ev->name : "");
            s->rp_lsn[s->nrp] = ev->lsn;
        }
        s->nrp++;
        break;
    case WALDECODE_SWITCH:
        s->switch_seen = true;
        s->switch_lsn = ev->lsn;
        break;
    case WALDECODE_PREPARE:
        break;
    }
}

static bool xact_eq(const struct repo_wal_xact *a, const struct repo_wal_xact *b)
{
    return a->lsn == b->lsn && a->time_us == b->time_us && a->xid == b->xid;
}

/* Compare the stored index with what the records say; returns a description of the
 * first difference, or NULL. */
static const char *index_differs(const struct repo_wal_index *ix, const struct seg_events *s)
{
    if (ix->commits != s->commits)
        return "commit count";
    if (ix->aborts != s->aborts)
        return "abort count";
    if (s->commits && !xact_eq(&ix->first_commit, &s->first))
        return "first commit";
    if (s->commits && !xact_eq(&ix->last_commit, &s->last))
        return "last commit";
    if (ix->nrestore_points != s->nrp)
        return "restore points";
    for (size_t i = 0; i < s->nrp && i < 8; i++) {
        if (strcmp(ix->restore_points[i].name, s->rp_name[i]) != 0 ||
            ix->restore_points[i].lsn != s->rp_lsn[i])
            return "restore points";
    }
    if (ix->switch_seen != s->switch_seen || (s->switch_seen && ix->switch_lsn != s->switch_lsn))
        return "switch record";
    return NULL;
}

static void check_index(struct wal_verify *w, timeline_t tli, uint64_t segno, const char *name,
                        bool partial, uint64_t bytes, const struct seg_events *ev)
{
    struct repo_wal_index ix;
    char obj[WAL_NAME_BUFLEN + 8], path[96];
    snprintf(obj, sizeof(obj), "%s%s", name, partial ? ".partial" : "");
    snprintf(path, sizeof(path), "wal/%08X/%s.idx", tli, obj);
    if (repo_wal_index_get(w->vr->repo, tli, obj, &ix) < 0) {
        if (partial && err_kind() == ERR_NOT_FOUND &&
            verify_exists_now(w->v, w->vr, tli, segno, "")) {
            err_clear(); /* removed with its partial copy once the segment was complete */
            return;
        }
        verify_problem_err(w->v, w->vr, "index", path, name, tli);
        return;
    }
    struct verify_counts add = {.objects = 1, .indexes = 1};
    verify_count(w->v, w->vr, &add);
    /* A partial's index may describe an earlier copy when storing it failed. */
    if (!partial || ix.bytes == bytes) {
        const char *what = index_differs(&ix, ev);
        if (what)
            verify_problem(w->v, w->vr, "index", path, name, tli,
                           "time index does not match the segment's records (%s)", what);
    }
    repo_wal_index_free(&ix);
}

struct reading {
    struct waldecode *dec; /* NULL when not decoding */
    char *decode_error;
    uint64_t bytes;
};

static int reading_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct reading *rd = ctx;
    rd->bytes += len;
    if (rd->dec && !rd->decode_error && waldecode_feed(rd->dec, data, len) < 0) {
        rd->decode_error = err_format();
        err_clear();
    }
    return 0;
}

static struct waldecode *new_decoder(struct wal_verify *w, timeline_t tli, uint64_t segno,
                                     struct seg_events *ev)
{
    const struct repo_identity *id = repo_identity(w->vr->repo);
    struct waldecode_config cfg = {
        .seg_size = w->seg_size,
        .system_identifier = id->system_identifier,
        .pg_major = id->pg_major,
        .tli = tli,
        .start = segno_to_lsn(segno, w->seg_size),
        .prev_lsn = LSN_INVALID,
        .on_event = on_event,
        .arg = ev,
    };
    struct waldecode *d = NULL;
    if (waldecode_new(&cfg, &d) < 0)
        return NULL;
    return d;
}

static bool is_timeline_end(const struct verify_tl *t, lsn_t lsn)
{
    for (size_t i = 0; i < t->nends; i++) {
        if (t->ends[i] == lsn)
            return true;
    }
    return false;
}

/* Long: one run of consecutive segments decoded as one stream (read, decode, check the
 * index and how the segment ends); the decoder, the reading and the counts cross from
 * segment to segment, and a split would pass them all along.
 */
static void verify_run_task(void *arg, size_t i)
{
    struct wal_verify *w = arg;
    struct seg_run *run = &w->runs[i];
    struct verify_tl *t = run->t;
    struct seg_events ev;
    struct reading rd = {0};
    struct verify_counts add = {0};
    bool setup_failed = false;

    for (size_t k = run->lead_in ? run->from - 1 : run->from; k < run->to; k++) {
        bool lead = k < run->from;
        uint64_t segno = t->segs[k].segno;
        char name[WAL_NAME_BUFLEN], path[64];
        verify_wal_seg_name(w, t->tli, segno, name);
        snprintf(path, sizeof(path), "wal/%08X/%s", t->tli, name);
        memset(&ev, 0, sizeof(ev));
        ev.start = segno_to_lsn(segno, w->seg_size);
        ev.end = ev.start + w->seg_size;
        /* A segment that does not follow the one decoded before starts a new stream. */
        if (rd.dec && (k == 0 || t->segs[k - 1].segno + 1 != segno)) {
            waldecode_free(rd.dec);
            rd.dec = NULL;
        }
        if (!rd.dec && !setup_failed) {
            rd.dec = new_decoder(w, t->tli, segno, &ev);
            if (!rd.dec) {
                setup_failed = true;
                verify_problem_err(w->v, w->vr, "repository", NULL, NULL, 0);
            }
        } else if (rd.dec) {
            waldecode_summary_reset(rd.dec);
        }
        rd.bytes = 0;
        free(rd.decode_error);
        rd.decode_error = NULL;
        int rc = repo_get(w->vr->repo, path, reading_sink, &rd);
        bool restart = false;
        if (!lead) {
            add.objects++;
            add.bytes += rd.bytes;
            add.segments++;
        }
        if (rc < 0) {
            restart = true;
            if (lead)
                err_clear();
            else
                verify_problem_err(w->v, w->vr, err_kind() == ERR_NOT_FOUND ? "missing" : "damaged",
                                   path, name, t->tli);
        } else if (rd.bytes != w->seg_size) {
            restart = true;
            if (!lead)
                verify_problem(w->v, w->vr, "wal", path, name, t->tli,
                               "segment holds %" PRIu64 " bytes, not %" PRIu64, rd.bytes,
                               w->seg_size);
        } else if (rd.decode_error) {
            restart = true;
            if (!lead)
                verify_problem(w->v, w->vr, "wal", path, name, t->tli, "%s", rd.decode_error);
        } else if (rd.dec) {
            const struct waldecode_summary *s = waldecode_summary(rd.dec);
            if (s->end_of_wal) {
                restart = true;
                if (!lead && !s->switch_seen && !is_timeline_end(t, s->end_of_wal_lsn)) {
                    char at[LSN_STRLEN];
                    verify_problem(w->v, w->vr, "wal", path, name, t->tli,
                                   "valid WAL ends at %s, before the end of the segment, without "
                                   "a switch record (%s)",
                                   lsn_format(s->end_of_wal_lsn, at), s->end_reason);
                }
            }
            if (!lead) {
                if (t->segs[k].has_idx)
                    check_index(w, t->tli, segno, name, false, rd.bytes, &ev);
                else {
                    add.without_index++;
                    verify_note_unindexed(w->v, w->vr, name);
                }
            }
        }
        if (restart && rd.dec) {
            waldecode_free(rd.dec);
            rd.dec = NULL;
        }
    }
    waldecode_free(rd.dec);
    free(rd.decode_error);
    verify_count(w->v, w->vr, &add);
}

static void verify_partial_task(void *arg, size_t i)
{
    struct wal_verify *w = arg;
    struct verify_tl *t = w->ptasks[i].t;
    const struct verify_seg *p = &t->partials[w->ptasks[i].i];
    char name[WAL_NAME_BUFLEN], path[64];
    struct seg_events ev;
    struct reading rd = {0};
    struct verify_counts add = {.objects = 1, .partials = 1};

    verify_wal_seg_name(w, t->tli, p->segno, name);
    snprintf(path, sizeof(path), "wal/%08X/%s.partial", t->tli, name);
    memset(&ev, 0, sizeof(ev));
    ev.start = segno_to_lsn(p->segno, w->seg_size);
    ev.end = ev.start + w->seg_size;
    rd.dec = new_decoder(w, t->tli, p->segno, &ev);
    if (!rd.dec)
        verify_problem_err(w->v, w->vr, "repository", NULL, NULL, 0);
    int rc = repo_get(w->vr->repo, path, reading_sink, &rd);
    add.bytes = rd.bytes;
    /* Each task has its own partial: no lock needed. */
    t->partials[w->ptasks[i].i].read_ok = rc == 0;
    t->partials[w->ptasks[i].i].bytes = rd.bytes;
    if (rc < 0 && err_kind() == ERR_NOT_FOUND &&
        verify_exists_now(w->v, w->vr, t->tli, p->segno, "")) {
        /* A receiver removes a partial copy once the complete segment is stored: gone
         * since the listing, as if never listed. */
        err_clear();
        add = (struct verify_counts){0};
    } else if (rc < 0)
        verify_problem_err(w->v, w->vr, err_kind() == ERR_NOT_FOUND ? "missing" : "damaged", path,
                           name, t->tli);
    else if (rd.bytes > w->seg_size)
        verify_problem(w->v, w->vr, "wal", path, name, t->tli,
                       "partial segment holds %" PRIu64 " bytes, more than a segment", rd.bytes);
    else if (rd.decode_error)
        verify_problem(w->v, w->vr, "wal", path, name, t->tli, "%s", rd.decode_error);
    else if (rd.dec && p->has_idx)
        check_index(w, t->tli, p->segno, name, true, rd.bytes, &ev);
    waldecode_free(rd.dec);
    free(rd.decode_error);
    verify_count(w->v, w->vr, &add);
}

static void plan_tasks(struct wal_verify *w)
{
    for (size_t i = 0; i < w->ntls; i++) {
        struct verify_tl *t = &w->tls[i];
        size_t k = 0;
        while (k < t->nsegs) {
            if (!verify_wal_in_scope(w, &t->segs[k])) {
                k++;
                continue;
            }
            size_t from = k;
            k++;
            while (k < t->nsegs && k - from < RUN_LEN && verify_wal_in_scope(w, &t->segs[k]) &&
                   t->segs[k].segno == t->segs[k - 1].segno + 1)
                k++;
            w->runs = xrealloc(w->runs, (w->nruns + 1) * sizeof(*w->runs));
            w->runs[w->nruns++] = (struct seg_run){
                t, from, k, from > 0 && t->segs[from - 1].segno + 1 == t->segs[from].segno};
        }
        for (size_t j = 0; j < t->npartials; j++) {
            /* The newest partial copy is what a high-water mark may name: its length is
             * held to the mark whatever its age. */
            if (!verify_wal_in_scope(w, &t->partials[j]) && !(t->has_hwm && j + 1 == t->npartials))
                continue;
            w->ptasks = xrealloc(w->ptasks, (w->nptasks + 1) * sizeof(*w->ptasks));
            w->ptasks[w->nptasks++] = (struct partial_task){t, j};
        }
    }
}

static void run_task(void *arg, size_t i)
{
    struct wal_verify *w = arg;
    if (i < w->nruns)
        verify_run_task(w, i);
    else
        verify_partial_task(w, i - w->nruns);
}

int verify_wal(struct verify_run *v, struct verify_repo *vr)
{
    struct wal_verify w = {.v = v, .vr = vr, .seg_size = repo_identity(vr->repo)->seg_size};
    char *full = xasprintf("%s/wal/", vr->cluster);
    w.prefix_len = strlen(full);
    int rc = storage_list(repo_storage(vr->repo), full, on_wal_object, &w);
    if (rc < 0) {
        err_context("while listing the WAL archive");
        goto out;
    }
    vr->wal_listed = true;
    /* Test hook: between the listing and the reads, so a test can change the archive as a
     * receiver would (tests/t/042). */
    testhook_pause("PGARK_TEST_PAUSE_AFTER_WAL_LISTING", "after listing the WAL archive");
    qsort(w.tls, w.ntls, sizeof(*w.tls), cmp_tl);
    verify_wal_histories(&w);
    verify_wal_continuity(&w);
    plan_tasks(&w);
    verify_parallel(v, w.nruns + w.nptasks, run_task, &w);
    for (size_t i = 0; i < w.ntls; i++) {
        if (w.tls[i].has_hwm)
            verify_hwm_timeline(v, vr, &w.tls[i]);
    }
    verify_hwm_absent(vr, w.tls, w.ntls);
out:
    free(full);
    for (size_t i = 0; i < w.ntls; i++) {
        free(w.tls[i].segs);
        free(w.tls[i].partials);
        free(w.tls[i].ends);
        timeline_history_free(w.tls[i].history);
    }
    free(w.tls);
    free(w.runs);
    free(w.ptasks);
    return rc;
}
