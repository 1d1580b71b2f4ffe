/*
 * walindex.c — the time index: what each archived segment's records say (commit
 * times, restore points), stored beside it, and the look-ups restore and info need.
 *
 * The index object is JSON, written and read with jansson:
 *   {"format":1, "timeline":1, "segment":"...", "partial":false, "bytes":16777216,
 *    "records":N, "commits":N, "aborts":N,
 *    "first_commit":{"lsn":"0/902618","end_lsn":"0/902640","time_us":..,"time":"..","xid":725},
 *    "last_commit":{...}, "restore_points":[{"name":..,"lsn":..,"end_lsn":..,"time_us":..,
 *    "time":..}], "switch":false, "switch_lsn":null, "end_of_wal":false, "end_lsn":"0/..."}
 * "time" is for people reading the object; "time_us" (Unix microseconds) is what is read.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pool.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t pg_to_unix(int64_t pg_us)
{
    return pg_us + PG_EPOCH_OFFSET_US;
}

static void xact_from(struct repo_wal_xact *x, const struct waldecode_xact *d)
{
    x->lsn = d->lsn;
    x->end_lsn = d->end_lsn;
    x->time_us = pg_to_unix(d->time);
    x->xid = d->xid;
}

void repo_wal_index_from_summary(timeline_t tli, uint64_t segno, bool partial, uint64_t bytes,
                                 const struct waldecode_summary *s, struct repo_wal_index *out)
{
    memset(out, 0, sizeof(*out));
    out->tli = tli;
    out->segno = segno;
    out->partial = partial;
    out->bytes = bytes;
    out->records = s->records;
    out->commits = s->commits;
    out->aborts = s->aborts;
    if (s->commits) {
        xact_from(&out->first_commit, &s->first_commit);
        xact_from(&out->last_commit, &s->last_commit);
    }
    if (s->restore_point_count) {
        out->nrestore_points = s->restore_point_count;
        out->restore_points = xcalloc(s->restore_point_count, sizeof(*out->restore_points));
        for (size_t i = 0; i < s->restore_point_count; i++) {
            const struct waldecode_restore_point *rp = &s->restore_points[i];
            struct repo_wal_restore_point *o = &out->restore_points[i];
            snprintf(o->name, sizeof(o->name), "%s", rp->name);
            o->lsn = rp->lsn;
            o->end_lsn = rp->end_lsn;
            o->time_us = pg_to_unix(rp->time);
        }
    }
    out->switch_seen = s->switch_seen;
    out->switch_lsn = s->switch_seen ? s->switch_lsn : LSN_INVALID;
    out->end_of_wal = s->end_of_wal;
    out->end_lsn = s->end_of_wal ? s->end_of_wal_lsn : s->records ? s->last_end_lsn : LSN_INVALID;
}

void repo_wal_index_free(struct repo_wal_index *ix)
{
    if (!ix)
        return;
    free(ix->restore_points);
    memset(ix, 0, sizeof(*ix));
}

/* --- JSON ------------------------------------------------------------------------------ */

static json_t *lsn_json(lsn_t lsn)
{
    char buf[LSN_STRLEN];
    return lsn == LSN_INVALID ? json_null() : json_string(lsn_format(lsn, buf));
}

static json_t *time_json(int64_t us)
{
    char buf[48];
    return json_string(time_format_pg(us, buf, sizeof(buf)));
}

static json_t *xact_json(const struct repo_wal_xact *x)
{
    json_t *o = json_object();
    json_object_set_new(o, "lsn", lsn_json(x->lsn));
    json_object_set_new(o, "end_lsn", lsn_json(x->end_lsn));
    json_object_set_new(o, "time_us", json_integer(x->time_us));
    json_object_set_new(o, "time", time_json(x->time_us));
    json_object_set_new(o, "xid", json_integer(x->xid));
    return o;
}

static char *index_dump(const struct repo_wal_index *ix, uint64_t seg_size)
{
    char name[WAL_NAME_BUFLEN];
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(REPO_WAL_INDEX_FORMAT));
    json_object_set_new(o, "timeline", json_integer(ix->tli));
    json_object_set_new(o, "segment",
                        json_string(wal_segment_name(ix->tli, ix->segno, seg_size, name)));
    json_object_set_new(o, "partial", json_boolean(ix->partial));
    json_object_set_new(o, "bytes", json_integer((json_int_t)ix->bytes));
    json_object_set_new(o, "records", json_integer((json_int_t)ix->records));
    json_object_set_new(o, "commits", json_integer((json_int_t)ix->commits));
    json_object_set_new(o, "aborts", json_integer((json_int_t)ix->aborts));
    json_object_set_new(o, "first_commit",
                        ix->commits ? xact_json(&ix->first_commit) : json_null());
    json_object_set_new(o, "last_commit", ix->commits ? xact_json(&ix->last_commit) : json_null());
    json_t *rps = json_array();
    for (size_t i = 0; i < ix->nrestore_points; i++) {
        const struct repo_wal_restore_point *rp = &ix->restore_points[i];
        json_t *p = json_object();
        json_object_set_new(p, "name", json_string(rp->name));
        json_object_set_new(p, "lsn", lsn_json(rp->lsn));
        json_object_set_new(p, "end_lsn", lsn_json(rp->end_lsn));
        json_object_set_new(p, "time_us", json_integer(rp->time_us));
        json_object_set_new(p, "time", time_json(rp->time_us));
        json_array_append_new(rps, p);
    }
    json_object_set_new(o, "restore_points", rps);
    json_object_set_new(o, "switch", json_boolean(ix->switch_seen));
    json_object_set_new(o, "switch_lsn", lsn_json(ix->switch_lsn));
    json_object_set_new(o, "end_of_wal", json_boolean(ix->end_of_wal));
    json_object_set_new(o, "end_lsn", lsn_json(ix->end_lsn));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* Parsing: any missing or mistyped field makes the whole index unusable. */
struct parse {
    const char *path;
    const char *repo;
    int rc;
};

static void bad(struct parse *p, const char *field)
{
    if (p->rc == 0)
        p->rc = err_set(ERR_INTEGRITY,
                        "time index \"%s\" in repository \"%s\" is invalid: field \"%s\"", p->path,
                        p->repo, field);
}

static uint64_t get_u64(struct parse *p, json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        bad(p, field);
        return 0;
    }
    return (uint64_t)json_integer_value(v);
}

static lsn_t get_lsn(struct parse *p, json_t *o, const char *field, bool nullable)
{
    json_t *v = json_object_get(o, field);
    lsn_t lsn = LSN_INVALID;
    if (nullable && json_is_null(v))
        return LSN_INVALID;
    if (!json_is_string(v) || lsn_parse(json_string_value(v), &lsn) < 0) {
        if (p->rc == 0)
            err_clear();
        bad(p, field);
    }
    return lsn;
}

static bool get_bool(struct parse *p, json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    if (!json_is_boolean(v))
        bad(p, field);
    return json_is_true(v);
}

static void get_xact(struct parse *p, json_t *o, const char *field, struct repo_wal_xact *x)
{
    json_t *v = json_object_get(o, field);
    if (!json_is_object(v)) {
        bad(p, field);
        return;
    }
    x->lsn = get_lsn(p, v, "lsn", false);
    x->end_lsn = get_lsn(p, v, "end_lsn", false);
    json_t *t = json_object_get(v, "time_us");
    if (!json_is_integer(t))
        bad(p, field);
    x->time_us = json_integer_value(t);
    x->xid = (uint32_t)get_u64(p, v, "xid");
}

/* No restore point record is shorter: its header (24 bytes), the main data's header
 * (2) and xl_restore_point (72). */
#define RESTORE_POINT_RECORD_MIN 98

int repo_wal_index_parse(const char *text, size_t len, const char *path, const char *repo,
                         uint64_t seg_size, struct repo_wal_index *out)
{
    struct parse parse = {path, repo, 0}, *p = &parse;
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return err_set(ERR_INTEGRITY, "time index \"%s\" in repository \"%s\" is not JSON: %s",
                       p->path, p->repo, jerr.text);
    }
    if (get_u64(p, o, "format") != REPO_WAL_INDEX_FORMAT && p->rc == 0)
        p->rc = err_set(
            ERR_INTEGRITY, "time index \"%s\" in repository \"%s\" has format %llu, not %d",
            p->path, p->repo, (unsigned long long)get_u64(p, o, "format"), REPO_WAL_INDEX_FORMAT);
    out->tli = (timeline_t)get_u64(p, o, "timeline");
    const char *seg = json_string_value(json_object_get(o, "segment"));
    timeline_t seg_tli;
    if (!seg || wal_segment_parse(seg, seg_size, &seg_tli, &out->segno) < 0 ||
        seg_tli != out->tli) {
        if (p->rc == 0)
            err_clear();
        bad(p, "segment");
    }
    out->partial = get_bool(p, o, "partial");
    out->bytes = get_u64(p, o, "bytes");
    out->records = get_u64(p, o, "records");
    out->commits = get_u64(p, o, "commits");
    out->aborts = get_u64(p, o, "aborts");
    if (out->commits) {
        get_xact(p, o, "first_commit", &out->first_commit);
        get_xact(p, o, "last_commit", &out->last_commit);
    }
    json_t *rps = json_object_get(o, "restore_points");
    if (!json_is_array(rps) || json_array_size(rps) > seg_size / RESTORE_POINT_RECORD_MIN) {
        bad(p, "restore_points"); /* more than the segment can hold: before it sizes memory */
    } else if (json_array_size(rps)) {
        out->nrestore_points = json_array_size(rps);
        out->restore_points = xcalloc(out->nrestore_points, sizeof(*out->restore_points));
        for (size_t i = 0; i < out->nrestore_points; i++) {
            json_t *rp = json_array_get(rps, i);
            const char *name = json_string_value(json_object_get(rp, "name"));
            json_t *t = json_object_get(rp, "time_us");
            if (!name || strlen(name) >= sizeof(out->restore_points[i].name) ||
                !json_is_integer(t)) {
                bad(p, "restore_points");
                break;
            }
            snprintf(out->restore_points[i].name, sizeof(out->restore_points[i].name), "%s", name);
            out->restore_points[i].lsn = get_lsn(p, rp, "lsn", false);
            out->restore_points[i].end_lsn = get_lsn(p, rp, "end_lsn", false);
            out->restore_points[i].time_us = json_integer_value(t);
        }
    }
    out->switch_seen = get_bool(p, o, "switch");
    out->switch_lsn = get_lsn(p, o, "switch_lsn", true);
    out->end_of_wal = get_bool(p, o, "end_of_wal");
    out->end_lsn = get_lsn(p, o, "end_lsn", true);
    json_decref(o);
    if (p->rc < 0)
        repo_wal_index_free(out);
    return p->rc;
}

/* --- storing and reading --------------------------------------------------------------- */

static void index_path(timeline_t tli, const char *segname, bool partial, char *buf, size_t cap)
{
    snprintf(buf, cap, "wal/%08X/%.24s%s.idx", tli, segname, partial ? ".partial" : "");
}

int repo_wal_index_store(struct repo *r, const struct repo_wal_index *ix)
{
    char name[WAL_NAME_BUFLEN], path[96];
    wal_segment_name(ix->tli, ix->segno, r->identity.seg_size, name);
    index_path(ix->tli, name, ix->partial, path, sizeof(path));
    char *text = index_dump(ix, r->identity.seg_size);
    int rc = repo_put(r, path, text, strlen(text));
    free(text);
    if (rc < 0)
        err_context("while storing the time index of %s%s", name, ix->partial ? ".partial" : "");
    return rc;
}

int repo_wal_index_get(struct repo *r, timeline_t tli, const char *segname,
                       struct repo_wal_index *out)
{
    char path[96];
    timeline_t seg_tli;
    uint64_t segno;
    uint8_t *data = NULL;
    size_t len = 0;
    bool partial = wal_is_partial_name(segname);
    memset(out, 0, sizeof(*out));
    if (!partial && !wal_is_segment_name(segname))
        return err_set(ERR_USAGE, "invalid WAL segment name \"%s\"", segname);
    char base[WAL_NAME_BUFLEN];
    snprintf(base, sizeof(base), "%.24s", segname);
    int rc = wal_segment_parse(base, r->identity.seg_size, &seg_tli, &segno);
    if (rc < 0)
        return rc;
    if (seg_tli != tli)
        return err_set(ERR_USAGE, "segment \"%s\" is not on timeline %u", segname, tli);
    index_path(tli, base, partial, path, sizeof(path));
    rc = repo_get_all_max(r, path, REPO_WAL_INDEX_MAX, "a time index", &data, &len);
    if (rc < 0)
        return rc;
    rc = repo_wal_index_parse((const char *)data, len, path, repo_name(r), r->identity.seg_size,
                              out);
    free(data);
    if (rc == 0 && (out->tli != tli || out->segno != segno || out->partial != partial)) {
        repo_wal_index_free(out);
        rc = err_set(ERR_INTEGRITY,
                     "time index \"%s\" in repository \"%s\" describes another segment", path,
                     repo_name(r));
    }
    return rc;
}

/* --- look-ups over one timeline -------------------------------------------------------- */

struct entry {
    uint64_t segno;
    bool partial;
};

struct tli_list {
    struct repo *r;
    size_t prefix_len;
    struct entry *e;
    size_t n;
    bool has_partial;
    uint64_t partial_segno;
};

static int on_tli_object(void *ctx, const struct storage_info *info)
{
    struct tli_list *l = ctx;
    const char *name = info->path + l->prefix_len;
    size_t len = strlen(name);
    bool partial;
    if (len == 28 && strcmp(name + 24, ".idx") == 0)
        partial = false;
    else if (len == 36 && strcmp(name + 24, ".partial.idx") == 0)
        partial = true;
    else
        return 0;
    char base[WAL_NAME_BUFLEN];
    snprintf(base, sizeof(base), "%.24s", name);
    timeline_t tli;
    uint64_t segno;
    if (!wal_is_segment_name(base) ||
        wal_segment_parse(base, l->r->identity.seg_size, &tli, &segno) < 0) {
        err_clear();
        return 0;
    }
    if (partial) {
        if (!l->has_partial || segno > l->partial_segno) {
            l->has_partial = true;
            l->partial_segno = segno;
        }
        return 0;
    }
    l->e = xrealloc(l->e, (l->n + 1) * sizeof(*l->e));
    l->e[l->n].segno = segno;
    l->e[l->n].partial = false;
    l->n++;
    return 0;
}

/* The indexed segments of tli in LSN order, the newest partial last when it is past
 * every complete one (listings come in byte order of path: segment order). */
static int list_tli(struct repo *r, timeline_t tli, struct tli_list *l)
{
    char rel[32];
    snprintf(rel, sizeof(rel), "wal/%08X/", tli);
    char *prefix = repo_full_path(r, rel);
    memset(l, 0, sizeof(*l));
    l->r = r;
    l->prefix_len = strlen(prefix);
    int rc = storage_list(r->storage, prefix, on_tli_object, l);
    free(prefix);
    if (rc < 0) {
        free(l->e);
        l->e = NULL;
        return rc;
    }
    if (l->has_partial && (l->n == 0 || l->partial_segno > l->e[l->n - 1].segno)) {
        l->e = xrealloc(l->e, (l->n + 1) * sizeof(*l->e));
        l->e[l->n].segno = l->partial_segno;
        l->e[l->n].partial = true;
        l->n++;
    }
    return 0;
}

/* A damaged index (verify reports it) or one removed meanwhile reads as a segment
 * without commits: one bad index must not stop a look-up over thousands. */
static int load(struct repo *r, timeline_t tli, const struct entry *e, struct repo_wal_index *ix)
{
    char name[WAL_NAME_BUFLEN + 8];
    wal_segment_name(tli, e->segno, r->identity.seg_size, name);
    if (e->partial)
        strcat(name, ".partial");
    int rc = repo_wal_index_get(r, tli, name, ix);
    if (rc < 0 && (err_kind() == ERR_INTEGRITY || err_kind() == ERR_NOT_FOUND)) {
        char *text = err_format();
        log_warn("skipping the time index of %s: %s", name, text);
        free(text);
        err_clear();
        memset(ix, 0, sizeof(*ix));
        rc = 0;
    }
    return rc;
}

/*
 * The first segment in walk order with a commit: restore's search for a time and the
 * newest commit walk the time indexes past segments without one. Usually the first
 * index read has one, and it is read alone. A database that went quiet while
 * archive_timeout still switched segments leaves runs without commits (a day at 60 s:
 * 1,440 indexes, one GET each on S3, one after another); past the first, they are read
 * COMMIT_BATCH at a time, side by side (the slots are zero between batches), and the
 * first of each batch in walk order that has a commit or fails decides, as one by one.
 */
#define COMMIT_BATCH 8

struct commit_batch {
    struct repo *r;
    timeline_t tli;
    const struct entry *e; /* slot 0's entry; slot k's is e + k * step */
    ptrdiff_t step;
    struct repo_wal_index ix[COMMIT_BATCH];
    struct err_saved *err[COMMIT_BATCH];
};

static int commit_job(void *arg, void *local, void *job, bool canceled)
{
    (void)local;
    struct commit_batch *b = arg;
    ptrdiff_t k = (struct repo_wal_index *)job - b->ix;
    if (!canceled && load(b->r, b->tli, b->e + k * b->step, &b->ix[k]) < 0)
        b->err[k] = err_save();
    return 0;
}

static const struct pool_ops commit_pool_ops = {.what = "time index reader", .run = commit_job};

/* Of the n entries e, e + step, ..., the first whose index holds a commit: 0 with *out
 * (free it) and *at (its position in the walk); 1 when none does; negative on the first
 * failure met before one. */
static int first_with_commit(struct repo *r, timeline_t tli, const struct entry *e, ptrdiff_t step,
                             size_t n, struct repo_wal_index *out, size_t *at)
{
    struct commit_batch b = {.r = r, .tli = tli, .step = step};
    struct pool *pool = NULL;
    int rc = 1;
    memset(out, 0, sizeof(*out));
    /* [done, n) not read yet: the first alone, then COMMIT_BATCH at a time */
    for (size_t done = 0, batch = 1; rc == 1 && done < n; batch = COMMIT_BATCH) {
        size_t m = n - done < batch ? n - done : batch;
        b.e = e + (ptrdiff_t)done * step;
        if (m > 1 && !pool && !(pool = pool_new(&commit_pool_ops, &b, COMMIT_BATCH, COMMIT_BATCH)))
            err_clear(); /* no thread: one at a time */
        pool_run_each(m > 1 ? pool : NULL, &commit_pool_ops, &b, b.ix, sizeof(b.ix[0]), m);
        for (size_t k = 0; k < m; k++) {
            if (rc == 1 && b.err[k]) {
                err_restore(b.err[k]); /* frees it */
                b.err[k] = NULL;
                rc = err_code();
            } else if (rc == 1 && b.ix[k].commits) {
                *out = b.ix[k];
                memset(&b.ix[k], 0, sizeof(b.ix[k]));
                *at = done + k;
                rc = 0;
            }
            err_saved_free(b.err[k]);
            b.err[k] = NULL;
            repo_wal_index_free(&b.ix[k]);
        }
        done += m;
    }
    pool_free(pool);
    return rc;
}

int repo_wal_index_find_time(struct repo *r, timeline_t tli, int64_t target_us,
                             struct repo_wal_index *out)
{
    struct tli_list l;
    struct repo_wal_index ix;
    bool found = false;
    memset(out, 0, sizeof(*out));
    int rc = list_tli(r, tli, &l);
    if (rc < 0)
        return rc;
    size_t lo = 0, hi = l.n;
    while (rc == 0 && lo < hi) {
        size_t mid = lo + (hi - lo) / 2, at = 0;
        /* The first segment with commits in [mid, hi): those before it have none and
         * cannot be the answer. */
        rc = first_with_commit(r, tli, &l.e[mid], 1, hi - mid, &ix, &at);
        if (rc < 0)
            break;
        if (rc == 1) {
            rc = 0;
            hi = mid;
            continue;
        }
        if (ix.last_commit.time_us >= target_us) {
            repo_wal_index_free(out);
            *out = ix;
            found = true;
            hi = mid;
        } else {
            repo_wal_index_free(&ix);
            lo = mid + at + 1;
        }
    }
    free(l.e);
    if (rc < 0) {
        repo_wal_index_free(out);
        return rc;
    }
    if (!found) {
        char when[48];
        return err_set(ERR_NOT_FOUND,
                       "no commit at or after %s on timeline %u in repository \"%s\"",
                       time_format_pg(target_us, when, sizeof(when)), tli, repo_name(r));
    }
    return 0;
}

int repo_wal_index_latest(struct repo *r, timeline_t tli, struct repo_wal_index *out)
{
    struct tli_list l;
    size_t at = 0;
    memset(out, 0, sizeof(*out));
    int rc = list_tli(r, tli, &l);
    if (rc < 0)
        return rc;
    rc = l.n ? first_with_commit(r, tli, &l.e[l.n - 1], -1, l.n, out, &at) : 1;
    free(l.e);
    if (rc == 1)
        return err_set(ERR_NOT_FOUND, "no commit is indexed on timeline %u in repository \"%s\"",
                       tli, repo_name(r));
    return rc;
}
