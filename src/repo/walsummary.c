/*
 * walsummary.c — what a repository holds: WAL per timeline, history files (repo_wal_summary).
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct summary_ctx {
    struct repo *r;
    size_t prefix_len;
    struct repo_wal_summary *sum;
};

static struct repo_wal_timeline *timeline_slot(struct repo_wal_summary *sum, timeline_t tli)
{
    for (size_t i = 0; i < sum->ntimelines; i++) {
        if (sum->timelines[i].tli == tli)
            return &sum->timelines[i];
    }
    sum->timelines = xrealloc(sum->timelines, (sum->ntimelines + 1) * sizeof(*sum->timelines));
    struct repo_wal_timeline *t = &sum->timelines[sum->ntimelines++];
    memset(t, 0, sizeof(*t));
    t->tli = tli;
    return t;
}

static int on_wal(void *ctx, const struct storage_info *info)
{
    struct summary_ctx *c = ctx;
    const char *rel = info->path + c->prefix_len; /* after "<cluster>/wal/" */
    struct repo_wal_summary *sum = c->sum;
    timeline_t tli;
    uint64_t segno;

    if (wal_is_history_name(rel)) {
        sum->histories++;
        sum->stored_bytes += info->size;
        return 0;
    }
    /* "<TLI>/<SEGMENT>[.partial]" */
    const char *slash = strchr(rel, '/');
    if (!slash)
        return 0;
    const char *name = slash + 1;
    bool partial = wal_is_partial_name(name);
    if (!partial && !wal_is_segment_name(name))
        return 0;
    char base[WAL_NAME_BUFLEN];
    snprintf(base, sizeof(base), "%.24s", name);
    if (wal_segment_parse(base, c->r->identity.seg_size, &tli, &segno) < 0) {
        err_clear();
        return 0;
    }
    struct repo_wal_timeline *t = timeline_slot(sum, tli);
    sum->stored_bytes += info->size;
    if (partial) {
        if (!t->has_partial || segno >= t->partial_segno) {
            t->has_partial = true;
            t->partial_segno = segno;
        }
        return 0;
    }
    if (!t->segments || segno < t->first_segno)
        t->first_segno = segno;
    if (!t->segments || segno > t->last_segno)
        t->last_segno = segno;
    t->segments++;
    sum->segments++;
    if (info->mtime_us > sum->newest_mtime_us)
        sum->newest_mtime_us = info->mtime_us;
    return 0;
}

static int cmp_tli(const void *a, const void *b)
{
    const struct repo_wal_timeline *x = a, *y = b;
    return x->tli < y->tli ? -1 : x->tli > y->tli;
}

int repo_wal_summary(struct repo *r, struct repo_wal_summary *out)
{
    memset(out, 0, sizeof(*out));
    char *prefix = repo_full_path(r, "wal/");
    struct summary_ctx c = {r, strlen(prefix), out};
    int rc = storage_list(r->storage, prefix, on_wal, &c);
    free(prefix);
    if (rc < 0) {
        repo_wal_summary_free(out);
        return rc;
    }
    if (out->ntimelines > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(out->timelines, out->ntimelines, sizeof(*out->timelines), cmp_tli);
    for (size_t i = 0; i < out->ntimelines; i++) {
        struct repo_wal_timeline *t = &out->timelines[i];
        uint64_t span = t->segments ? t->last_segno - t->first_segno + 1 : 0;
        t->gaps = span - t->segments;
    }
    return 0;
}

void repo_wal_summary_free(struct repo_wal_summary *s)
{
    if (!s)
        return;
    free(s->timelines);
    memset(s, 0, sizeof(*s));
}
