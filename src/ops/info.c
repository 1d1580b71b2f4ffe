/*
 * info.c — `pgark info [--json]`: the receiver's state (from its status.json), the
 * RPO per tier right now, and what every repository of the cluster holds: the WAL
 * archive, the backups, and the recovery window per timeline (from the oldest backup's
 * consistency point to the latest commit archived, times from the time index).
 */
#include "rxstatus.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/confsnap.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/repo.h"
#include "pgark/units.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The receiver's status.json with its figures as of now (rxstatus.h: check and report
 * say the same), "running" and "status_age_seconds" added. */
static json_t *receiver_json(const struct config *cfg, const struct config_cluster *cl)
{
    struct rx_status rs;
    rx_status_load(cfg->spool, cl->name, time_now_us(), &rs);
    if (!rs.doc)
        return json_pack("{s:b}", "running", 0);
    json_t *st = json_incref(rs.doc);
    json_object_set_new(st, "running", json_boolean(rs.running));
    json_object_set_new(st, "status_age_seconds", json_real(round(rs.age_s * 1000) / 1000));
    json_t *rpo = json_object_get(st, "rpo");
    const char *tiers[] = {"local", "offsite"};
    for (int i = 0; i < 2; i++) {
        /* The lag (the older figure) and the RPO from commit times. */
        char key[32];
        snprintf(key, sizeof(key), "%s_seconds", tiers[i]);
        json_t *v = json_object_get(rpo, key);
        if (json_is_number(v))
            json_object_set_new(rpo, key, json_real(rx_status_aged(&rs, json_number_value(v))));
        json_t *t = json_object_get(rpo, tiers[i]);
        if (json_is_number(json_object_get(t, "seconds")))
            json_object_set_new(t, "seconds", json_real(rx_status_tier_rpo(&rs, tiers[i])));
    }
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(st, "repos"), i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        if (name && json_is_number(json_object_get(r, "rpo_seconds")))
            json_object_set_new(r, "rpo_seconds", json_real(rx_status_repo_rpo(&rs, name)));
    }
    rx_status_free(&rs);
    return st;
}

static json_t *utc_text(int64_t seconds)
{
    char text[32];
    time_t t = (time_t)seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(text);
}

static json_t *ratio_json(uint64_t logical, uint64_t stored)
{
    return stored ? json_real(round((double)logical / (double)stored * 100) / 100) : json_null();
}

static int count_chunk(void *ctx, const char *name, uint64_t stored_size)
{
    uint64_t *c = ctx;
    (void)name;
    c[0]++;
    c[1] += stored_size;
    return 0;
}

/* The complete backups (from each manifest's first line) and the chunk store. */
static int backups_json(struct repo *r, const struct repo_backup *list, size_t n, json_t *o)
{
    uint64_t chunks[2] = {0, 0}, logical = 0;
    int rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct manifest_header *h = &list[i].header;
        char a[LSN_STRLEN], b[LSN_STRLEN];
        logical += h->logical_bytes;
        json_array_append_new(
            arr,
            json_pack("{s:s, s:o, s:o, s:s, s:s, s:i, s:I, s:I, s:I, s:o, s:i, s:b}", "label",
                      list[i].label, "start_time", utc_text(h->start_time), "stop_time",
                      utc_text(h->stop_time), "start_lsn", lsn_format(h->start_lsn, a), "stop_lsn",
                      lsn_format(h->stop_lsn, b), "timeline", (int)h->timeline, "files",
                      (json_int_t)h->files, "logical_bytes", (json_int_t)h->logical_bytes,
                      "stored_bytes", (json_int_t)h->stored_bytes, "dedup_ratio",
                      ratio_json(h->logical_bytes, h->stored_bytes), "pg_version", h->pg_version,
                      "encrypted", h->encrypted));
        /* informational: an incremental's unchanged chunks are its parent's */
        json_object_set_new(json_array_get(arr, json_array_size(arr) - 1), "parent",
                            h->parent ? json_string(h->parent) : json_null());
    }
    json_object_set_new(o, "backups", arr);
    if ((rc = repo_chunk_list(r, count_chunk, chunks)) < 0 && rc != -ERR_NOT_FOUND)
        return rc;
    err_clear();
    /* Every backup is full in its manifest: the ratio says how many times over the
     * chunk store would be needed without deduplication. */
    json_object_set_new(o, "chunks",
                        json_pack("{s:I, s:I, s:o}", "count", (json_int_t)chunks[0], "stored_bytes",
                                  (json_int_t)chunks[1], "dedup_ratio",
                                  ratio_json(logical, chunks[1])));
    return 0;
}

static json_t *time_us_text(int64_t us)
{
    char text[40];
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof(text) - n, ".%06dZ", (int)(us % 1000000));
    return json_string(text);
}

/*
 * The recovery window of each timeline with WAL: from the consistency point (stop LSN
 * and time) of the oldest backup on that timeline or an earlier one, to the latest
 * commit the time index knows on it. Missing segments in the archive are counted: a
 * window with a gap ends before it (verify names them).
 */
static json_t *window_json(struct repo *r, const struct repo_wal_summary *sum,
                           const struct repo_backup *list, size_t n, json_t *receiver)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < sum->ntimelines; i++) {
        const struct repo_wal_timeline *t = &sum->timelines[i];
        const struct repo_backup *from = NULL;
        for (size_t k = 0; k < n; k++) {
            const struct manifest_header *h = &list[k].header;
            if (h->timeline <= t->tli && (!from || h->stop_lsn < from->header.stop_lsn))
                from = &list[k];
        }
        char a[LSN_STRLEN], b[LSN_STRLEN];
        json_t *o = json_pack("{s:i}", "timeline", (int)t->tli);
        if (from) {
            json_object_set_new(o, "from_backup", json_string(from->label));
            json_object_set_new(o, "from_lsn", json_string(lsn_format(from->header.stop_lsn, a)));
            json_object_set_new(
                o, "from_time",
                time_us_text(manifest_earliest_target_us(from->header.stop_time,
                                                         from->header.consistent_time_us, false)));
        } else {
            json_object_set_new(o, "from_backup", json_null());
        }
        struct repo_wal_index ix;
        if (repo_wal_index_latest(r, t->tli, &ix) == 0) {
            json_object_set_new(o, "to_lsn", json_string(lsn_format(ix.last_commit.end_lsn, b)));
            json_object_set_new(o, "to_time", time_us_text(ix.last_commit.time_us));
            json_object_set_new(o, "to_xid", json_integer(ix.last_commit.xid));
            repo_wal_index_free(&ix);
        } else {
            err_clear();
            json_object_set_new(o, "to_lsn", json_null());
            json_object_set_new(o, "to_time", json_null());
        }
        json_object_set_new(o, "missing_segments", json_integer((json_int_t)t->gaps));
        /* WAL the receiver holds beyond what is archived (its spool). */
        if (json_integer_value(json_object_get(receiver, "timeline")) == (json_int_t)t->tli &&
            json_is_string(json_object_get(receiver, "flushed_lsn")))
            json_object_set(o, "received_lsn", json_object_get(receiver, "flushed_lsn"));
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Where the timeline's WAL high-water mark says its archive reached; null when there is
 * none (an older pgark) or it cannot be read (verify says why). */
static json_t *hwm_json(struct repo *r, timeline_t tli)
{
    struct repo_wal_hwm m;
    if (repo_wal_hwm_get(r, tli, &m) < 0) {
        err_clear();
        return json_null();
    }
    char end[LSN_STRLEN];
    lsn_format(repo_wal_hwm_end(&m, repo_identity(r)->seg_size), end);
    return json_pack("{s:s, s:I, s:o}", "end_lsn", end, "seq", (json_int_t)m.seq, "written",
                     time_us_text(m.time_us));
}

/* The configuration backups (confsnap.h): each label, and whether it came with a
 * backup of the data or alone (--config-only), from one listing. */
static int configs_json(struct repo *r, const struct repo_backup *list, size_t n, json_t *o)
{
    char **labels = NULL;
    size_t nl = 0;
    if (confsnap_list(r, &labels, &nl) < 0)
        return err_code();
    json_t *arr = json_array();
    for (size_t i = 0; i < nl; i++) {
        bool with_data = false;
        for (size_t j = 0; j < n && !with_data; j++)
            with_data = !strcmp(list[j].label, labels[i]);
        json_array_append_new(
            arr, json_pack("{s:s, s:s}", "label", labels[i], "kind",
                           with_data ? CONFSNAP_KIND_BACKUP : CONFSNAP_KIND_CONFIG_ONLY));
    }
    repo_record_names_free(labels, nl);
    json_object_set_new(o, "config_backups", arr);
    return 0;
}

static json_t *repo_json(const struct config *cfg, const struct config_cluster *cl,
                         const struct config_repo *rc_repo, json_t *receiver)
{
    struct repo_backup *list = NULL;
    size_t nlist = 0;
    json_t *o = json_pack("{s:s, s:s}", "name", rc_repo->name, "type",
                          config_repo_type_name(rc_repo->type));
    if (rc_repo->type == CONFIG_REPO_POSIX)
        json_object_set_new(o, "path", json_string(rc_repo->path));
    else
        json_object_set_new(o, "bucket", json_string(rc_repo->bucket));
    struct cli_repo opened;
    struct repo *r = NULL;
    if (cli_repo_open(cfg, cl, rc_repo, CLI_REPO_READ, NULL, &opened) < 0)
        goto error;
    r = opened.repo;
    const struct repo_identity *id = repo_identity(r);
    char sysid[32];
    snprintf(sysid, sizeof(sysid), "%llu", (unsigned long long)id->system_identifier);
    json_object_set_new(o, "system_identifier", json_string(sysid));
    json_object_set_new(o, "pg_major", json_integer(id->pg_major));
    json_object_set_new(o, "wal_segment_size", json_integer((json_int_t)id->seg_size));
    json_object_set_new(o, "encrypted", json_boolean(repo_encrypted(r)));
    struct repo_wal_summary sum;
    if (repo_wal_summary(r, &sum) < 0)
        goto error;
    json_t *wal =
        json_pack("{s:I, s:I, s:I}", "segments", (json_int_t)sum.segments, "histories",
                  (json_int_t)sum.histories, "stored_bytes", (json_int_t)sum.stored_bytes);
    json_t *tls = json_array();
    for (size_t i = 0; i < sum.ntimelines; i++) {
        const struct repo_wal_timeline *t = &sum.timelines[i];
        char first[WAL_NAME_BUFLEN] = "", last[WAL_NAME_BUFLEN] = "", partial[WAL_NAME_BUFLEN] = "";
        if (t->segments) {
            wal_segment_name(t->tli, t->first_segno, id->seg_size, first);
            wal_segment_name(t->tli, t->last_segno, id->seg_size, last);
        }
        if (t->has_partial)
            wal_segment_name(t->tli, t->partial_segno, id->seg_size, partial);
        json_t *tl =
            json_pack("{s:i, s:I, s:s?, s:s?, s:I, s:s?}", "timeline", (int)t->tli, "segments",
                      (json_int_t)t->segments, "first", t->segments ? first : NULL, "last",
                      t->segments ? last : NULL, "missing", (json_int_t)t->gaps, "partial",
                      t->has_partial ? partial : NULL);
        json_object_set_new(tl, "high_water_mark", hwm_json(r, t->tli));
        json_array_append_new(tls, tl);
    }
    json_object_set_new(wal, "timelines", tls);
    json_object_set_new(o, "wal", wal);
    if (repo_backup_list(r, &list, &nlist) < 0) {
        repo_wal_summary_free(&sum);
        goto error;
    }
    json_object_set_new(o, "recovery_window", window_json(r, &sum, list, nlist, receiver));
    repo_wal_summary_free(&sum);
    if (backups_json(r, list, nlist, o) < 0)
        goto error;
    if (configs_json(r, list, nlist, o) < 0)
        goto error;
    goto out;
error : {
    /* as every command says a repository it cannot read: the failure and its hint */
    char *text = err_format();
    json_object_set_new(o, "error", json_string(text));
    if (err_hint_text())
        json_object_set_new(o, "hint", json_string(err_hint_text()));
    free(text);
    err_clear();
}
out:
    repo_backup_list_free(list, nlist);
    cli_repo_close(&opened);
    return o;
}

static void print_backups(json_t *r)
{
    char a[32], b[32];
    size_t j;
    json_t *bk;
    json_t *list = json_object_get(r, "backups");

    printf("  backups: %zu\n", json_array_size(list));
    json_array_foreach(list, j, bk)
    {
        json_t *ratio = json_object_get(bk, "dedup_ratio");
        printf("    %-18s %s .. %s  timeline %lld  %s .. %s  %s logical, %s stored",
               json_string_value(json_object_get(bk, "label")),
               json_string_value(json_object_get(bk, "start_time")),
               json_string_value(json_object_get(bk, "stop_time")),
               (long long)json_integer_value(json_object_get(bk, "timeline")),
               json_string_value(json_object_get(bk, "start_lsn")),
               json_string_value(json_object_get(bk, "stop_lsn")),
               size_format((uint64_t)json_integer_value(json_object_get(bk, "logical_bytes")), a,
                           sizeof(a)),
               size_format((uint64_t)json_integer_value(json_object_get(bk, "stored_bytes")), b,
                           sizeof(b)));
        if (json_is_real(ratio))
            printf(" (%.1fx)", json_real_value(ratio));
        if (json_is_string(json_object_get(bk, "parent")))
            printf("  incremental to %s", json_string_value(json_object_get(bk, "parent")));
        printf("\n");
    }
    json_t *cfgs = json_object_get(r, "config_backups");
    if (json_array_size(cfgs) > 0) {
        size_t only = 0;
        json_array_foreach(cfgs, j, bk)
        {
            only +=
                !strcmp(json_string_value(json_object_get(bk, "kind")), CONFSNAP_KIND_CONFIG_ONLY);
        }
        json_t *last = json_array_get(cfgs, json_array_size(cfgs) - 1);
        printf("  configuration backups: %zu (%zu config-only), newest %s (%s)\n",
               json_array_size(cfgs), only, json_string_value(json_object_get(last, "label")),
               json_string_value(json_object_get(last, "kind")));
    }
    json_t *ch = json_object_get(r, "chunks");
    if (ch) {
        json_t *ratio = json_object_get(ch, "dedup_ratio");
        printf("  chunks: %lld, %s stored",
               (long long)json_integer_value(json_object_get(ch, "count")),
               size_format((uint64_t)json_integer_value(json_object_get(ch, "stored_bytes")), a,
                           sizeof(a)));
        if (json_is_real(ratio))
            printf(", deduplication %.1fx over all backups", json_real_value(ratio));
        printf("\n");
    }
}

static void print_window(json_t *r)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(r, "recovery_window"), i, w)
    {
        long long tli = (long long)json_integer_value(json_object_get(w, "timeline"));
        const char *from = json_string_value(json_object_get(w, "from_backup"));
        const char *to = json_string_value(json_object_get(w, "to_time"));
        if (!from) {
            printf("  recovery window, timeline %lld: none (no backup on it or before it)\n", tli);
            continue;
        }
        printf("  recovery window, timeline %lld: %s (backup %s, %s) .. ", tli,
               json_string_value(json_object_get(w, "from_time")), from,
               json_string_value(json_object_get(w, "from_lsn")));
        if (to)
            printf("%s (last commit, %s, xid %lld)", to,
                   json_string_value(json_object_get(w, "to_lsn")),
                   (long long)json_integer_value(json_object_get(w, "to_xid")));
        else
            printf("no commit archived yet");
        if (json_integer_value(json_object_get(w, "missing_segments")))
            printf("; %lld segments missing: run verify",
                   (long long)json_integer_value(json_object_get(w, "missing_segments")));
        printf("\n");
    }
}

/* Long: the human form of info's JSON, one printed line per field in the order shown,
 * receiver first, then each repository; one level throughout.
 */
static void print_human(json_t *root)
{
    char a[64];
    json_t *rx = json_object_get(root, "receiver");
    printf("cluster \"%s\"\n\n", json_string_value(json_object_get(root, "cluster")));
    if (!json_is_true(json_object_get(rx, "running"))) {
        const char *updated = json_string_value(json_object_get(rx, "updated"));
        printf("receiver: not running%s%s%s\n", updated ? " (last status " : "",
               updated ? updated : "", updated ? ")" : "");
    } else {
        printf("receiver: running (pid %lld), %s, timeline %lld\n",
               (long long)json_integer_value(json_object_get(rx, "pid")),
               json_is_true(json_object_get(rx, "connected")) ? "connected" : "reconnecting",
               (long long)json_integer_value(json_object_get(rx, "timeline")));
    }
    if (json_object_get(rx, "flushed_lsn")) {
        printf("  server %s, received %s, flushed %s\n",
               json_string_value(json_object_get(rx, "server_lsn")),
               json_string_value(json_object_get(rx, "received_lsn")),
               json_string_value(json_object_get(rx, "flushed_lsn")));
        json_t *repos = json_object_get(rx, "repos");
        size_t i;
        json_t *r;
        printf("  %-16s %-8s %-18s %-12s %s\n", "repository", "tier", "shipped", "lag", "");
        json_array_foreach(repos, i, r)
        {
            const char *err = json_string_value(json_object_get(r, "last_error"));
            printf("  %-16s %-8s %-18s %-12s %.1f s%s%s\n",
                   json_string_value(json_object_get(r, "name")),
                   json_is_true(json_object_get(r, "offsite")) ? "off-site" : "local",
                   json_string_value(json_object_get(r, "shipped_lsn")),
                   size_format((uint64_t)json_integer_value(json_object_get(r, "lag_bytes")), a,
                               sizeof(a)),
                   json_real_value(json_object_get(r, "lag_seconds")), err ? "  error: " : "",
                   err ? err : "");
        }
        json_t *rpo = json_object_get(rx, "rpo");
        printf("  RPO now:");
        const char *tiers[] = {"local", "offsite"}, *shown[] = {"local", "off-site"};
        const char *lag[] = {"local_seconds", "offsite_seconds"};
        for (int t = 0; t < 2; t++) {
            json_t *tier = json_object_get(rpo, tiers[t]);
            json_t *secs = json_object_get(tier, "seconds");
            if (!json_is_real(secs)) /* a status.json from before the tiers: its lag */
                secs = json_object_get(rpo, lag[t]);
            const char *newest = json_string_value(json_object_get(tier, "newest_commit"));
            printf("%s %s ", t ? "," : "", shown[t]);
            if (json_is_real(secs))
                printf("%.1f s", json_real_value(secs));
            else
                printf("n/a");
            if (newest)
                printf(" (newest commit held %s)", newest);
        }
        printf("\n");
    }
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(root, "repositories"), i, r)
    {
        printf("\nrepository \"%s\" (%s)\n", json_string_value(json_object_get(r, "name")),
               json_string_value(json_object_get(r, "type")));
        const char *err = json_string_value(json_object_get(r, "error"));
        if (err) {
            const char *hint = json_string_value(json_object_get(r, "hint"));
            printf("  %s\n", err);
            if (hint)
                printf("  hint: %s\n", hint);
            continue;
        }
        json_t *wal = json_object_get(r, "wal");
        printf("  system %s, PostgreSQL %lld, %s WAL segments%s\n",
               json_string_value(json_object_get(r, "system_identifier")),
               (long long)json_integer_value(json_object_get(r, "pg_major")),
               size_format((uint64_t)json_integer_value(json_object_get(r, "wal_segment_size")), a,
                           sizeof(a)),
               json_is_true(json_object_get(r, "encrypted")) ? ", encrypted" : "");
        printf("  WAL: %lld segments, %lld history files, %s stored\n",
               (long long)json_integer_value(json_object_get(wal, "segments")),
               (long long)json_integer_value(json_object_get(wal, "histories")),
               size_format((uint64_t)json_integer_value(json_object_get(wal, "stored_bytes")), a,
                           sizeof(a)));
        size_t j;
        json_t *t;
        json_array_foreach(json_object_get(wal, "timelines"), j, t)
        {
            const char *first = json_string_value(json_object_get(t, "first"));
            const char *partial = json_string_value(json_object_get(t, "partial"));
            printf("    timeline %lld: %s%s%s",
                   (long long)json_integer_value(json_object_get(t, "timeline")),
                   first ? first : "no complete segment", first ? " .. " : "",
                   first ? json_string_value(json_object_get(t, "last")) : "");
            if (json_integer_value(json_object_get(t, "missing")))
                printf(", %lld missing",
                       (long long)json_integer_value(json_object_get(t, "missing")));
            if (partial)
                printf(", partial %s", partial);
            const char *hwm = json_string_value(
                json_object_get(json_object_get(t, "high_water_mark"), "end_lsn"));
            if (hwm)
                printf(", archived up to %s (high-water mark)", hwm);
            printf("\n");
        }
        print_backups(r);
        print_window(r);
    }
}

int cmd_info(struct cli_context *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    bool as_json = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'j':
            as_json = true;
            break;
        case 'h':
            printf("usage: pgark info [--json]\n");
            return 0;
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for info", argv[optind - 1]);
            err_hint("run \"pgark help info\"");
            return 2;
        }
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);
    json_t *root = json_pack("{s:s}", "cluster", cl->name);
    json_t *rx = receiver_json(cfg, cl);
    json_object_set_new(root, "receiver", rx);
    json_t *repos = json_array();
    int rc = 0;
    for (size_t i = 0; i < cl->nrepos; i++) {
        json_t *r = repo_json(cfg, cl, config_cluster_repo(cfg, cl, i), rx);
        /* a repository it could not read fails info, as it fails every command */
        if (json_object_get(r, "error"))
            rc = 1;
        json_array_append_new(repos, r);
    }
    json_object_set_new(root, "repositories", repos);
    if (as_json) {
        cli_print_json(root);
    } else {
        print_human(root);
    }
    json_decref(root);
    return rc;
}
