/*
 * catalog.c — what the repositories offer a restore: the complete backups (from the
 * first line of each manifest), the timelines, and where the WAL archive ends.
 *
 * The end of the archive is decoded, not guessed from file times: a time target is
 * reached only when the server replays a transaction that ended after it, so the
 * latest restorable time is the last commit or abort in the newest WAL object (a
 * complete segment or the receiver's .partial), and the latest LSN is the start of
 * the last complete record there.
 */
#include "restore_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/units.h"
#include "pgark/waldecode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL_END_LOOKBACK 8 /* segments searched backwards for the last transaction */

struct catalog_labels {
    char **labels;
    size_t n;
    size_t prefix_len;
};

static int on_backup_object(void *ctx, const struct storage_info *info)
{
    struct catalog_labels *l = ctx;
    const char *rel = info->path + l->prefix_len; /* "<LABEL>/manifest.json" */
    const char *slash = strchr(rel, '/');
    if (!slash || strcmp(slash + 1, "manifest.json") != 0 || slash == rel ||
        (size_t)(slash - rel) >= sizeof(((struct catalog_entry *)0)->label_buf))
        return 0;
    l->labels = xrealloc(l->labels, (l->n + 1) * sizeof(*l->labels));
    l->labels[l->n++] = xstrndup(rel, (size_t)(slash - rel));
    return 0;
}

/* A catalog entry from a backup's header: 0, or ERR_INTEGRITY when the manifest names
 * another backup. */
static int entry_from(const struct repo_backup *b, struct catalog_entry *e)
{
    const struct manifest_header *mh = &b->header;
    if (strcmp(mh->label, b->label) != 0)
        return err_set(ERR_INTEGRITY, "manifest of backup \"%s\" says its label is \"%s\"",
                       b->label, mh->label);
    memset(e, 0, sizeof(*e));
    snprintf(e->label_buf, sizeof(e->label_buf), "%s", mh->label);
    e->b.label = e->label_buf;
    e->b.start_lsn = mh->start_lsn;
    e->b.stop_lsn = mh->stop_lsn;
    e->b.start_time = mh->start_time;
    e->b.stop_time = mh->stop_time;
    e->b.consistent_time_us = mh->consistent_time_us;
    e->b.timeline = mh->timeline;
    e->logical_bytes = mh->logical_bytes;
    e->files = mh->files;
    e->n_ts = mh->n_tablespaces;
    e->ts_oid = xcalloc(e->n_ts + 1, sizeof(*e->ts_oid));
    e->ts_location = xcalloc(e->n_ts + 1, sizeof(*e->ts_location));
    for (size_t i = 0; i < e->n_ts; i++) {
        e->ts_oid[i] = mh->tablespaces[i].oid;
        e->ts_location[i] = xstrdup(mh->tablespaces[i].location);
    }
    return 0;
}

/* The headers of one repository's backups (read side by side), into out; a backup whose
 * header cannot be read is warned about and skipped. */
static void catalog_add(struct repo *r, size_t repo_index, char **labels, size_t n,
                        struct catalog *out)
{
    struct repo_backup *got = xcalloc(n + 1, sizeof(*got));
    struct err_saved **errs = xcalloc(n + 1, sizeof(*errs));
    repo_backup_get_many(r, labels, n, got, errs);
    for (size_t j = 0; j < n; j++) {
        struct catalog_entry e;
        if (errs[j])
            err_restore(errs[j]); /* names the backup and the repository */
        else if (entry_from(&got[j], &e) < 0)
            err_context("in repository \"%s\"", repo_name(r));
        if (err_is_set()) {
            char *text = err_format();
            log_warn("skipping backup \"%s\": %s", labels[j], text);
            free(text);
            err_clear();
        } else {
            e.repo = repo_index;
            out->e = xrealloc(out->e, (out->n + 1) * sizeof(*out->e));
            out->e[out->n++] = e;
        }
        repo_backup_clear(&got[j]);
    }
    free(got);
    free(errs);
}

int catalog_load(struct cli_repos *set, struct catalog *out)
{
    size_t readable = 0; /* repositories opened and listed */
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (!r) {
            err_context("while opening repository \"%s\"", set->r[i].conf->name);
            err_print_warn();
            continue;
        }
        char *prefix = xasprintf("%s/backups/", set->cluster);
        struct catalog_labels l = {NULL, 0, strlen(prefix)};
        int rc = storage_list(repo_storage(r), prefix, on_backup_object, &l);
        free(prefix);
        if (rc == 0)
            catalog_add(r, i, l.labels, l.n, out);
        for (size_t j = 0; j < l.n; j++)
            free(l.labels[j]);
        free(l.labels);
        if (rc < 0) {
            char *text = err_format();
            log_warn("could not list the backups of repository \"%s\": %s", repo_name(r), text);
            free(text);
            err_clear();
        } else {
            readable++;
        }
    }
    /* label_buf moved with each realloc: point the labels at their final place. */
    for (size_t i = 0; i < out->n; i++)
        out->e[i].b.label = out->e[i].label_buf;
    if (out->n == 0 && readable == 0) /* the reasons, each with its hint, are above */
        return err_set(ERR_RUNTIME, "no repository of cluster \"%s\" could be read", set->cluster);
    if (out->n == 0) {
        err_set(ERR_NOT_FOUND, "no complete backup of cluster \"%s\" in any repository",
                set->cluster);
        return err_hint("take one with \"pgark backup\"");
    }
    return 0;
}

void catalog_free(struct catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        for (size_t j = 0; j < c->e[i].n_ts; j++)
            free(c->e[i].ts_location[j]);
        free(c->e[i].ts_oid);
        free(c->e[i].ts_location);
    }
    free(c->e);
    memset(c, 0, sizeof(*c));
}

int catalog_history(struct cli_repos *set, timeline_t tli, struct timeline_history **out)
{
    *out = NULL;
    if (tli <= 1)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "wal/%08X.history", tli);
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (!r) {
            err_clear();
            continue;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        int rc =
            repo_get_all_max(r, path, REPO_HISTORY_MAX, "a timeline history file", &data, &len);
        if (rc < 0) {
            if (err_kind() == ERR_NOT_FOUND) {
                err_clear();
                continue;
            }
            return rc;
        }
        rc = timeline_history_parse(tli, (const char *)data, len, out);
        free(data);
        if (rc < 0)
            return err_context("in repository \"%s\"", repo_name(r));
        return 0;
    }
    return 0;
}

int catalog_newest_timeline(struct cli_repos *set, timeline_t *out)
{
    *out = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        struct repo_wal_summary sum;
        if (!r || repo_wal_summary(r, &sum) < 0) {
            err_clear();
            continue;
        }
        for (size_t t = 0; t < sum.ntimelines; t++) {
            if (sum.timelines[t].tli > *out)
                *out = sum.timelines[t].tli;
        }
        repo_wal_summary_free(&sum);
    }
    return 0;
}

/* Decode one WAL object into a summary. */
static int decode_object(struct repo *r, const char *path, timeline_t tli, uint64_t segno,
                         struct waldecode_summary *sum, uint64_t *bytes)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = repo_get_all_max(r, path, repo_identity(r)->seg_size, "a WAL segment", &data, &len);
    if (rc < 0)
        return rc;
    *bytes = len;
    const struct repo_identity *id = repo_identity(r);
    struct waldecode_config cfg = {.seg_size = id->seg_size,
                                   .system_identifier = id->system_identifier,
                                   .pg_major = id->pg_major,
                                   .tli = tli,
                                   .start = segno_to_lsn(segno, id->seg_size),
                                   .prev_lsn = LSN_INVALID};
    rc = waldecode_segment(data, len, &cfg, sum);
    free(data);
    if (rc < 0)
        err_context("while decoding \"%s\" in repository \"%s\"", path, repo_name(r));
    return rc;
}

/* Long: two steps in order: find the repository whose newest object on tli is furthest
 * along, then decode that object for where the WAL ends and go back segment by segment
 * (another repository's copy of a damaged one) to the last commit or abort; the second
 * step works on the repository, segment and partial-or-not the first one chose.
 */
int catalog_wal_end(struct cli_repos *set, timeline_t tli, struct catalog_end *out)
{
    memset(out, 0, sizeof(*out));
    /* The repo whose newest object on tli is furthest along. */
    size_t best_repo = 0;
    uint64_t best_segno = 0;
    bool best_partial = false, any = false;
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        struct repo_wal_summary sum;
        if (!r || repo_wal_summary(r, &sum) < 0) {
            err_clear();
            continue;
        }
        for (size_t t = 0; t < sum.ntimelines; t++) {
            const struct repo_wal_timeline *w = &sum.timelines[t];
            if (w->tli != tli)
                continue;
            if (w->segments && (!any || w->last_segno > best_segno ||
                                (w->last_segno == best_segno && best_partial))) {
                any = true;
                best_repo = i;
                best_segno = w->last_segno;
                best_partial = false;
            }
            if (w->has_partial && (!any || w->partial_segno > best_segno)) {
                any = true;
                best_repo = i;
                best_segno = w->partial_segno;
                best_partial = true;
            }
        }
        repo_wal_summary_free(&sum);
    }
    if (!any)
        return 0;
    struct repo *r = cli_repos_get(set, best_repo);
    uint64_t seg_size = repo_identity(r)->seg_size;
    for (int back = 0; back < WAL_END_LOOKBACK && best_segno >= (uint64_t)back; back++) {
        char name[WAL_NAME_BUFLEN], path[96];
        uint64_t segno = best_segno - (uint64_t)back;
        bool partial = back == 0 && best_partial;
        wal_segment_name(tli, segno, seg_size, name);
        repo_wal_path(tli, name, partial, path, sizeof(path));
        struct waldecode_summary sum = {0};
        uint64_t bytes = 0;
        int rc = decode_object(r, path, tli, segno, &sum, &bytes);
        /* Damaged there: another repository's copy (what wal-fetch will serve) will do. */
        if (rc < 0 && err_kind() == ERR_INTEGRITY) {
            char *first = err_format();
            for (size_t j = 0; rc < 0 && j < set->n; j++) {
                if (j == best_repo)
                    continue;
                err_clear();
                struct repo *o = cli_repos_get(set, j);
                if (!o)
                    continue;
                waldecode_summary_free(&sum);
                bytes = 0;
                rc = decode_object(o, path, tli, segno, &sum, &bytes);
                if (rc == 0)
                    log_warn("%s (read from repository \"%s\")", first, repo_name(o));
            }
            if (rc < 0) {
                err_clear();
                err_set(ERR_INTEGRITY, "%s", first);
            }
            free(first);
        }
        if (rc < 0) {
            waldecode_summary_free(&sum);
            if (back > 0 && err_kind() == ERR_NOT_FOUND) {
                err_clear();
                break;
            }
            return rc;
        }
        if (back == 0) {
            out->found = true;
            out->last_record = sum.last_lsn;
            out->end_lsn = sum.end_of_wal ? sum.end_of_wal_lsn : sum.last_end_lsn;
            out->reach = segno_to_lsn(segno, seg_size) + bytes;
            out->repo = best_repo;
            snprintf(out->object, sizeof(out->object), "%s%s", name, partial ? ".partial" : "");
        }
        lsn_t xact_lsn = 0;
        int64_t xact_time = 0;
        if (sum.commits) {
            xact_lsn = sum.last_commit.lsn;
            xact_time = sum.last_commit.time;
        }
        if (sum.aborts && sum.last_abort.lsn > xact_lsn) {
            xact_lsn = sum.last_abort.lsn;
            xact_time = sum.last_abort.time;
        }
        waldecode_summary_free(&sum);
        if (xact_lsn) {
            out->have_xact = true;
            out->last_xact_us = xact_time + PG_EPOCH_OFFSET_US;
            break;
        }
    }
    return 0;
}

int catalog_wal_hwm(struct cli_repos *set, timeline_t tli, struct catalog_hwm *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        struct repo_wal_hwm m;
        if (!r) {
            err_clear();
            continue;
        }
        if (repo_wal_hwm_get(r, tli, &m) < 0) {
            /* A mark that cannot be read holds nothing to; verify reports it. */
            if (err_kind() != ERR_NOT_FOUND) {
                char *text = err_format();
                log_warn("%s", text);
                free(text);
            }
            err_clear();
            continue;
        }
        lsn_t end = repo_wal_hwm_end(&m, repo_identity(r)->seg_size);
        if (!out->found || end > out->end) {
            out->found = true;
            out->m = m;
            out->end = end;
            out->repo = i;
        }
    }
    return 0;
}
