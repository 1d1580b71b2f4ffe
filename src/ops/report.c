/*
 * report.c — `pgark report [--days N] [--json | --html FILE]`: the disaster-recovery
 * scorecard of every cluster (or the one --cluster names) over the last N days (30): the
 * RPO of each tier now and at its worst, the drills (passed, failed, their RTO), the
 * verify runs, the backups and the restorable window, each KPI judged against its target
 * (report_kpi.c). Exit 3 when a KPI is missed, so that cron or a monitoring check can
 * run it; 0 otherwise.
 *
 * What it reads: the receiver's status.json and RPO history in the spool of this host
 * (the history from a repository when the spool has none), and from every repository the
 * drill and verify records of the period, the backups and the time indexes. A record is
 * written to every repository: each is read once, from the first repository (local
 * first) that has it; a repository that cannot be read is named and passed over.
 */
#include "report_int.h"
#include "rxstatus.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/repo.h"
#include "pgark/rpohist.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The charts get at most this many RPO points: the worst of each step. */
#define CHART_POINTS 720

static json_t *time_json(int64_t us)
{
    char text[64];
    return json_string(time_format_pg(us, text, sizeof(text)));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    buf_append_file(&b, f);
    fclose(f);
    buf_append(&b, "", 0);
    return buf_steal(&b);
}

/* --- the receiver ------------------------------------------------------------------------- */

static json_t *receiver_json(const struct config *cfg, const struct config_cluster *cl,
                             int64_t now_us)
{
    json_t *o = json_object();
    json_t *tiers = json_array();
    bool local = false, offsite = false;
    for (size_t i = 0; i < cl->nrepos; i++) {
        if (config_cluster_repo(cfg, cl, i)->type == CONFIG_REPO_POSIX)
            local = true;
        else
            offsite = true;
    }
    if (local)
        json_array_append_new(tiers, json_string("local"));
    if (offsite)
        json_array_append_new(tiers, json_string("offsite"));
    json_object_set_new(o, "tiers", tiers);
    char *path = xasprintf("%s/%s/status.json", cfg->spool, cl->name);
    json_object_set_new(o, "path", json_string(path));
    free(path);
    struct rx_status rs;
    rx_status_load(cfg->spool, cl->name, now_us, &rs);
    json_object_set_new(o, "status", json_boolean(rs.doc != NULL));
    if (!rs.doc)
        return o;
    json_object_set_new(o, "running", json_boolean(rs.running));
    json_object_set_new(o, "status_age_seconds", cli_json_seconds(rs.age_s));
    /* As check and info say it (rxstatus.h). */
    json_t *rpo = json_object();
    const char *names[] = {"local", "offsite"};
    for (int t = 0; t < 2; t++) {
        double v = rx_status_tier_rpo(&rs, names[t]);
        json_object_set_new(rpo, names[t], v >= 0 ? cli_json_seconds(v) : json_null());
    }
    json_object_set_new(o, "rpo", rpo);
    rx_status_free(&rs);
    return o;
}

/* The worst of each tier and the chart's points (the worst of each of CHART_POINTS
 * steps). */
static json_t *history_json(struct rpohist_sample *s, size_t n, const char *source, int64_t since_s,
                            int64_t now_s)
{
    json_t *o = json_object();
    json_object_set_new(o, "source", source ? json_string(source) : json_null());
    json_object_set_new(o, "samples", json_integer((json_int_t)n));
    json_t *worst = json_object();
    const char *names[] = {"local", "offsite"};
    for (int t = 0; t < RPOHIST_TIERS; t++) {
        int64_t w = -1;
        for (size_t i = 0; i < n; i++) {
            if (s[i].ms[t] > w)
                w = s[i].ms[t];
        }
        json_object_set_new(worst, names[t], w >= 0 ? json_real((double)w / 1000) : json_null());
    }
    json_object_set_new(o, "worst", worst);
    json_t *pts = json_array();
    double step = (double)(now_s - since_s) / CHART_POINTS;
    if (step < 60)
        step = 60;
    for (size_t i = 0; i < n;) {
        int64_t bucket = (int64_t)((double)(s[i].time_s - since_s) / step);
        struct rpohist_sample m = s[i];
        size_t j = i + 1;
        for (; j < n && (int64_t)((double)(s[j].time_s - since_s) / step) == bucket; j++) {
            for (int t = 0; t < RPOHIST_TIERS; t++) {
                if (s[j].ms[t] > m.ms[t])
                    m.ms[t] = s[j].ms[t];
            }
            m.time_s = s[j].time_s;
        }
        json_t *p = json_array();
        json_array_append_new(p, json_integer(m.time_s));
        for (int t = 0; t < RPOHIST_TIERS; t++)
            json_array_append_new(p,
                                  m.ms[t] >= 0 ? json_real((double)m.ms[t] / 1000) : json_null());
        json_array_append_new(pts, p);
        i = j;
    }
    json_object_set_new(o, "points", pts);
    return o;
}

/* --- the repositories --------------------------------------------------------------------- */

struct gather {
    const struct config *cfg;
    const struct config_cluster *cl;
    int64_t since_us, now_us;
    json_t *seen;              /* names of the records read */
    json_t *drills, *verifies; /* name -> summary */
    json_t *backups, *windows, *errors;
    struct rpohist_sample *hist; /* the newest repository copy of the RPO history */
    size_t nhist;
    char *hist_source;
};

static json_t *drill_summary(json_t *r, const char *name)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    const char *keys[] = {"time",   "repository",  "result",     "exit",  "backup",
                          "rto_ms", "rpo_seconds", "rpo_source", "error", "total_ms"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(r, keys[i]);
        json_object_set(o, keys[i], v ? v : json_null());
    }
    json_object_set(o, "target",
                    json_object_get(json_object_get(r, "target"), "kind")
                        ? json_object_get(json_object_get(r, "target"), "kind")
                        : json_null());
    return o;
}

static json_t *verify_summary(json_t *r, const char *name)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    const char *keys[] = {"time",          "result",  "exit",   "problems",
                          "first_problem", "seconds", "backup", "days"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(r, keys[i]);
        json_object_set(o, keys[i], v ? v : json_null());
    }
    return o;
}

/* The records of kind in r from the period that were not read from another repository. */
static void read_records(struct gather *g, struct repo *r, const char *repo, const char *kind)
{
    char **names = NULL;
    size_t n = 0;
    bool drill = !strcmp(kind, REPO_RECORD_DRILLS);
    if (repo_record_list(r, kind, &names, &n) < 0) {
        char *e = err_format();
        json_array_append_new(g->errors, json_pack("{s:s, s:s}", "repository", repo, "error", e));
        free(e);
        err_clear();
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char key[300];
        snprintf(key, sizeof(key), "%s/%s", kind, names[i]);
        int64_t t = report_name_time(names[i]);
        if (t < 0 || t < g->since_us || json_object_get(g->seen, key))
            continue;
        char *text = NULL;
        json_t *rec = NULL;
        if (repo_record_get(r, kind, names[i], &text) == 0)
            rec = json_loads(text, 0, NULL);
        free(text);
        if (!rec) {
            log_warn("record \"%s\" of repository \"%s\" cannot be read: %s", key, repo,
                     err_is_set() ? err_message() : "it is not JSON");
            err_clear();
            continue;
        }
        json_object_set_new(g->seen, key, json_true());
        json_object_set_new(drill ? g->drills : g->verifies, names[i],
                            drill ? drill_summary(rec, names[i]) : verify_summary(rec, names[i]));
        json_decref(rec);
    }
    repo_record_names_free(names, n);
}

static int count_chunk(void *ctx, const char *name, uint64_t stored)
{
    uint64_t *c = ctx;
    (void)name;
    c[0]++;
    c[1] += stored;
    return 0;
}

static void read_backups(struct gather *g, struct repo *r, const char *repo)
{
    struct repo_backup *list = NULL;
    size_t n = 0;
    uint64_t chunks[2] = {0, 0}, logical = 0;
    json_t *o = json_pack("{s:s}", "repository", repo);
    if (repo_backup_list(r, &list, &n) < 0 ||
        (repo_chunk_list(r, count_chunk, chunks) < 0 && err_kind() != ERR_NOT_FOUND)) {
        char *e = err_format();
        json_object_set_new(o, "error", json_string(e));
        free(e);
        err_clear();
        json_array_append_new(g->backups, o);
        repo_backup_list_free(list, n);
        return;
    }
    err_clear();
    int64_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        logical += list[i].header.logical_bytes;
        if (list[i].header.stop_time > newest)
            newest = list[i].header.stop_time;
    }
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    json_object_set_new(o, "newest", n ? time_json(newest * INT64_C(1000000)) : json_null());
    json_object_set_new(o, "newest_age_seconds",
                        n ? json_real((double)(g->now_us / 1000000 - newest)) : json_null());
    json_object_set_new(o, "logical_bytes", json_integer((json_int_t)logical));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)chunks[1]));
    json_object_set_new(o, "dedup_ratio",
                        chunks[1]
                            ? json_real(round((double)logical / (double)chunks[1] * 100) / 100)
                            : json_null());
    json_array_append_new(g->backups, o);

    /* The restorable window of each timeline: the earliest target the oldest backup on it
     * (or an ancestor) reaches to the newest commit archived on it. */
    struct repo_wal_summary sum;
    if (repo_wal_summary(r, &sum) < 0) {
        err_clear();
    } else {
        for (size_t i = 0; i < sum.ntimelines; i++) {
            timeline_t tli = sum.timelines[i].tli;
            const struct repo_backup *from = NULL;
            for (size_t k = 0; k < n; k++) {
                if (list[k].header.timeline <= tli &&
                    (!from || list[k].header.stop_lsn < from->header.stop_lsn))
                    from = &list[k];
            }
            json_t *w = json_pack("{s:s, s:i}", "repository", repo, "timeline", (int)tli);
            json_object_set_new(
                w, "from",
                from ? time_json(manifest_earliest_target_us(
                           from->header.stop_time, from->header.consistent_time_us, false))
                     : json_null());
            struct repo_wal_index ix;
            if (repo_wal_index_latest(r, tli, &ix) == 0) {
                json_object_set_new(w, "to", time_json(ix.last_commit.time_us));
                repo_wal_index_free(&ix);
            } else {
                err_clear();
                json_object_set_new(w, "to", json_null());
            }
            json_object_set_new(w, "missing_segments",
                                json_integer((json_int_t)sum.timelines[i].gaps));
            json_array_append_new(g->windows, w);
        }
        repo_wal_summary_free(&sum);
    }
    repo_backup_list_free(list, n);
}

/* The repository's copy of the RPO history, when it is newer than the one kept. */
static void read_history(struct gather *g, struct repo *r, const char *repo)
{
    char *text = NULL;
    struct rpohist_sample *s = NULL;
    size_t n = 0;
    if (repo_record_get(r, REPO_RECORD_RECEIVER, RPOHIST_RECORD, &text) < 0 ||
        rpohist_from_json(text, g->since_us / 1000000, &s, &n) < 0) {
        err_clear();
        free(text);
        return;
    }
    free(text);
    int64_t last = n ? s[n - 1].time_s : 0;
    int64_t kept = g->nhist ? g->hist[g->nhist - 1].time_s : -1;
    if (last > kept) {
        free(g->hist);
        free(g->hist_source);
        g->hist = s;
        g->nhist = n;
        g->hist_source = xasprintf("repository %s", repo);
    } else {
        free(s);
    }
}

static json_t *sorted_values(json_t *by_name)
{
    /* names start with their time: sorted by name is sorted by time */
    size_t n = json_object_size(by_name), i = 0;
    const char **keys = xcalloc(n + 1, sizeof(*keys));
    const char *k;
    json_t *v;
    json_object_foreach(by_name, k, v) keys[i++] = k;
    for (size_t a = 1; a < n; a++) {
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    }
    json_t *arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append(arr, json_object_get(by_name, keys[i]));
    free(keys);
    return arr;
}

/* Long: one cluster's part of the report, key by key in the order of the JSON, with the
 * tallies of drills and verifies; one level.
 */
static json_t *cluster_json(const struct config *cfg, const struct config_cluster *cl, int days,
                            int64_t now_us)
{
    struct gather g = {.cfg = cfg,
                       .cl = cl,
                       .now_us = now_us,
                       .since_us = now_us - (int64_t)days * 86400 * INT64_C(1000000),
                       .seen = json_object(),
                       .drills = json_object(),
                       .verifies = json_object(),
                       .backups = json_array(),
                       .windows = json_array(),
                       .errors = json_array()};
    json_t *c = json_object();
    json_object_set_new(c, "cluster", json_string(cl->name));
    json_object_set_new(c, "days", json_integer(days));
    json_object_set_new(c, "targets",
                        json_pack("{s:I, s:I, s:I, s:I}", "rpo_target_ms",
                                  (json_int_t)cl->rpo_target_ms, "rto_target_ms",
                                  (json_int_t)cl->rto_target_ms, "drill_max_age_ms",
                                  (json_int_t)cl->drill_max_age_ms, "verify_max_age_ms",
                                  (json_int_t)cl->verify_max_age_ms));
    json_object_set_new(c, "receiver", receiver_json(cfg, cl, now_us));

    /* The spool's history, when this host has it. */
    char *hpath = xasprintf("%s/%s/%s", cfg->spool, cl->name, RPOHIST_FILE);
    char *htext = read_file(hpath);
    bool spool_hist = htext != NULL;
    free(hpath);
    if (spool_hist) {
        rpohist_parse(htext, g.since_us / 1000000, &g.hist, &g.nhist);
        g.hist_source = xstrdup("spool");
        free(htext);
    }

    struct cli_repos set;
    if (cli_repos_init(&set, cfg, cl, NULL) < 0) {
        err_clear();
    } else {
        for (size_t i = 0; i < set.n; i++) {
            const char *name = set.r[i].conf->name;
            struct repo *r = cli_repos_get(&set, i);
            if (!r) {
                char *e = err_format();
                json_array_append_new(g.errors,
                                      json_pack("{s:s, s:s}", "repository", name, "error", e));
                json_array_append_new(g.backups,
                                      json_pack("{s:s, s:s}", "repository", name, "error", e));
                free(e);
                err_clear();
                continue;
            }
            read_records(&g, r, name, REPO_RECORD_DRILLS);
            read_records(&g, r, name, REPO_RECORD_VERIFIES);
            if (!spool_hist)
                read_history(&g, r, name);
            read_backups(&g, r, name);
        }
        cli_repos_free(&set);
    }
    json_object_set_new(
        c, "rpo_history",
        history_json(g.hist, g.nhist, g.hist_source, g.since_us / 1000000, now_us / 1000000));
    json_t *dl = sorted_values(g.drills), *vl = sorted_values(g.verifies);
    size_t i;
    json_t *e;
    json_int_t dp = 0, df = 0, vp = 0;
    json_array_foreach(dl, i, e)
    {
        const char *r = json_string_value(json_object_get(e, "result"));
        dp += r && !strcmp(r, "passed");
        df += r && strcmp(r, "passed");
    }
    json_array_foreach(vl, i, e)
    {
        const char *r = json_string_value(json_object_get(e, "result"));
        vp += r && !strcmp(r, "passed");
    }
    json_object_set_new(c, "drills",
                        json_pack("{s:I, s:I, s:I, s:o}", "count", (json_int_t)json_array_size(dl),
                                  "passed", dp, "failed", df, "list", dl));
    json_t *v = json_pack("{s:I, s:I, s:o}", "count", (json_int_t)json_array_size(vl), "passed", vp,
                          "list", vl);
    json_object_set_new(
        v, "success_rate",
        json_array_size(vl)
            ? json_real(round((double)vp / (double)json_array_size(vl) * 1000) / 1000)
            : json_null());
    json_object_set_new(c, "verify", v);
    json_object_set_new(c, "backups", g.backups);
    json_object_set_new(c, "windows", g.windows);
    json_object_set_new(c, "errors", g.errors);
    json_decref(g.seen);
    json_decref(g.drills);
    json_decref(g.verifies);
    free(g.hist);
    free(g.hist_source);
    return c;
}

/* --- text ----------------------------------------------------------------------------------- */

static void print_cluster(json_t *c)
{
    char a[32], b[32];
    size_t i;
    json_t *e;
    json_int_t missed = json_integer_value(json_object_get(c, "kpis_missed"));
    printf("cluster \"%s\": %s\n", json_string_value(json_object_get(c, "cluster")),
           missed ? "KPI MISSED" : "every KPI met");
    if (missed)
        printf("  %lld KPI%s missed\n", (long long)missed, missed == 1 ? "" : "s");
    json_array_foreach(json_object_get(c, "kpis"), i, e)
    {
        json_t *met = json_object_get(e, "met");
        printf("  %-7s %-36s %-12s target %-10s %s\n",
               json_is_true(met)    ? "ok"
               : json_is_false(met) ? "MISSED"
                                    : "n/a",
               json_string_value(json_object_get(e, "label")),
               json_string_value(json_object_get(e, "display")),
               json_string_value(json_object_get(e, "target_display")),
               json_string_value(json_object_get(e, "detail")));
    }
    json_t *d = json_object_get(c, "drills");
    printf("  drills: %lld (%lld passed, %lld failed or could not run)",
           (long long)json_integer_value(json_object_get(d, "count")),
           (long long)json_integer_value(json_object_get(d, "passed")),
           (long long)json_integer_value(json_object_get(d, "failed")));
    if (json_is_number(json_object_get(d, "rto_p50_seconds")))
        printf(
            "; RTO p50 %s, max %s",
            report_duration(json_number_value(json_object_get(d, "rto_p50_seconds")), a, sizeof(a)),
            report_duration(json_number_value(json_object_get(d, "rto_max_seconds")), b,
                            sizeof(b)));
    printf("\n");
    json_t *v = json_object_get(c, "verify");
    printf("  verify: %lld runs, %lld passed",
           (long long)json_integer_value(json_object_get(v, "count")),
           (long long)json_integer_value(json_object_get(v, "passed")));
    if (json_is_number(json_object_get(v, "success_rate")))
        printf(" (%.0f%%)", json_number_value(json_object_get(v, "success_rate")) * 100);
    printf("\n");
    json_array_foreach(json_object_get(c, "backups"), i, e)
    {
        const char *err = json_string_value(json_object_get(e, "error"));
        printf("  backups in %s: ", json_string_value(json_object_get(e, "repository")));
        if (err) {
            printf("%s\n", err);
            continue;
        }
        printf("%lld", (long long)json_integer_value(json_object_get(e, "count")));
        if (json_is_number(json_object_get(e, "newest_age_seconds")))
            printf(", newest %s ago",
                   report_duration(json_number_value(json_object_get(e, "newest_age_seconds")), a,
                                   sizeof(a)));
        printf(", %s stored",
               size_format((uint64_t)json_integer_value(json_object_get(e, "stored_bytes")), b,
                           sizeof(b)));
        if (json_is_number(json_object_get(e, "dedup_ratio")))
            printf(", deduplication %.2fx", json_number_value(json_object_get(e, "dedup_ratio")));
        printf("\n");
    }
    json_array_foreach(json_object_get(c, "windows"), i, e)
    {
        const char *from = json_string_value(json_object_get(e, "from"));
        const char *to = json_string_value(json_object_get(e, "to"));
        printf("  restorable from %s, timeline %lld: %s .. %s%s\n",
               json_string_value(json_object_get(e, "repository")),
               (long long)json_integer_value(json_object_get(e, "timeline")),
               from ? from : "(no backup)", to ? to : "(no commit archived)",
               json_integer_value(json_object_get(e, "missing_segments"))
                   ? " (segments missing: run verify)"
                   : "");
    }
    json_array_foreach(json_object_get(c, "errors"), i, e)
    {
        printf("  repository %s: %s\n", json_string_value(json_object_get(e, "repository")),
               json_string_value(json_object_get(e, "error")));
    }
}

/* --- the command ------------------------------------------------------------------------------ */

/* report's options into *days, *as_json and *html: 0 to go on, 1 for --help (printed),
 * 2 with a usage error set. */
static int parse_args(int argc, char **argv, int *days, bool *as_json, const char **html)
{
    static const struct option options[] = {{"days", required_argument, NULL, 'd'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"html", required_argument, NULL, 'H'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'd': {
            char *end = NULL;
            long d = strtol(optarg, &end, 10);
            if (!*optarg || *end || d < 1 || d > 3650) {
                err_set(ERR_USAGE, "invalid --days \"%s\": expected a whole number from 1 to 3650",
                        optarg);
                return 2;
            }
            *days = (int)d;
            break;
        }
        case 'j':
            *as_json = true;
            break;
        case 'H':
            *html = optarg;
            break;
        case 'h':
            printf("usage: pgark report [--days N] [--json | --html FILE]\n");
            return 1;
        default:
            if (optopt)
                err_set(ERR_USAGE, "option \"%s\" for report needs a value", argv[optind - 1]);
            else
                err_set(ERR_USAGE, "unknown option \"%s\" for report", argv[optind - 1]);
            err_hint("run \"pgark help report\"");
            return 2;
        }
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for report", argv[optind]);
        return 2;
    }
    if (*as_json && *html) {
        err_set(ERR_USAGE, "--json and --html cannot be combined");
        return 2;
    }
    return 0;
}

/* The report root as an HTML page at html, replaced atomically: 0, or 1 with the error
 * set. missed: how many KPIs are missed, for the line printed. */
static int write_html(json_t *root, const char *html, int missed)
{
    int rc = 0;
    char *page = report_html(root);
    char *tmp = xasprintf("%s.tmp", html);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs(page, f) >= 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, html) < 0) {
        err_set_errno(ERR_IO, errno, "could not write \"%s\"", html);
        unlink(tmp);
        rc = 1;
    } else {
        printf("report written to \"%s\": %s\n", html,
               missed ? "a KPI is missed" : "every KPI met");
    }
    free(tmp);
    free(page);
    return rc;
}

int cmd_report(struct cli_context *ctx, int argc, char **argv)
{
    int days = 30, rc;
    bool as_json = false;
    const char *html = NULL;
    if ((rc = parse_args(argc, argv, &days, &as_json, &html)) != 0)
        return rc == 1 ? 0 : rc;
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        return 2;
    const struct config_cluster *only = NULL;
    if (ctx->cluster_name && !(only = config_cluster_find(cfg, ctx->cluster_name)))
        return 2;

    int64_t now = time_now_us();
    json_t *root = json_object();
    json_object_set_new(root, "generated", time_json(now));
    json_object_set_new(root, "days", json_integer(days));
    json_object_set_new(root, "since", time_json(now - (int64_t)days * 86400 * INT64_C(1000000)));
    json_object_set_new(root, "pgark_version", json_string(PGARK_VERSION));
    json_t *clusters = json_array();
    int missed = 0;
    for (size_t i = 0; i < cfg->nclusters; i++) {
        if (only && only != &cfg->clusters[i])
            continue;
        json_t *c = cluster_json(cfg, &cfg->clusters[i], days, now);
        missed += report_judge(c, now);
        json_array_append_new(clusters, c);
    }
    json_object_set_new(root, "clusters", clusters);
    json_object_set_new(root, "kpis_missed", json_integer(missed));
    rc = missed ? 3 : 0;
    if (html) {
        if (write_html(root, html, missed) != 0)
            rc = 1;
    } else if (as_json) {
        cli_print_json(root);
    } else {
        printf("pgark report, the last %d days (since %s)\n", days,
               json_string_value(json_object_get(root, "since")));
        size_t i;
        json_t *c;
        json_array_foreach(clusters, i, c)
        {
            printf("\n");
            print_cluster(c);
        }
    }
    json_decref(root);
    return rc;
}
