/*
 * verify.c — `pgark verify [--backup LABEL|--days N] [--json]`: re-read what every
 * repository of the cluster holds and report each problem, naming the repository and
 * the segment, file or backup. Exit 3 when a problem is found, 0 when none.
 *
 * The work is split by scope (verify_int.h): the backups (verify_backup.c) and the WAL
 * archive (verify_wal.c). Scopes run one repository after another; inside a scope the
 * objects are checked by a pool of worker threads (one struct repo is shared by them:
 * reads do not change it). --backup LABEL checks that backup alone, with the WAL from
 * its start to its stop, not the whole archive.
 */
#include "verify_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/ops.h"
#include "pgark/pool.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_JOBS 8

struct scope {
    const char *name;
    int (*fn)(struct verify_run *v, struct verify_repo *vr);
    bool with_backup_option; /* runs under --backup LABEL too */
};

static const struct scope scopes[] = {
    {"backups", verify_backups, true},
    {"WAL archive", verify_wal, false},
};

/* --- problems and counts ----------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void add_problem(struct verify_run *v, struct verify_repo *vr, const struct verify_where *w,
                        char *message)
{
    pthread_mutex_lock(&v->lock);
    v->problems = xrealloc(v->problems, (v->nproblems + 1) * sizeof(*v->problems));
    struct verify_problem *p = &v->problems[v->nproblems++];
    memset(p, 0, sizeof(*p));
    p->repo_index = vr->index;
    p->repo = xstrdup(vr->name);
    p->kind = xstrdup(w->kind);
    p->object = dup_or_null(w->object);
    p->segment = dup_or_null(w->segment);
    p->backup = dup_or_null(w->backup);
    p->file = dup_or_null(w->file);
    p->chunk = dup_or_null(w->chunk);
    p->tli = w->tli;
    p->message = message;
    pthread_mutex_unlock(&v->lock);
}

void verify_problem_at(struct verify_run *v, struct verify_repo *vr, const struct verify_where *w,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *message = xvasprintf(fmt, ap);
    va_end(ap);
    add_problem(v, vr, w, message);
}

void verify_problem_err_at(struct verify_run *v, struct verify_repo *vr,
                           const struct verify_where *w)
{
    add_problem(v, vr, w, cli_error_line(false));
}

void verify_problem(struct verify_run *v, struct verify_repo *vr, const char *kind,
                    const char *object, const char *segment, timeline_t tli, const char *fmt, ...)
{
    struct verify_where w = {.kind = kind, .object = object, .segment = segment, .tli = tli};
    va_list ap;
    va_start(ap, fmt);
    char *message = xvasprintf(fmt, ap);
    va_end(ap);
    add_problem(v, vr, &w, message);
}

void verify_problem_err(struct verify_run *v, struct verify_repo *vr, const char *kind,
                        const char *object, const char *segment, timeline_t tli)
{
    struct verify_where w = {.kind = kind, .object = object, .segment = segment, .tli = tli};
    add_problem(v, vr, &w, cli_error_line(false));
}

void verify_note_unindexed(struct verify_run *v, struct verify_repo *vr, const char *segment)
{
    pthread_mutex_lock(&v->lock);
    vr->unindexed = xrealloc(vr->unindexed, (vr->nunindexed + 1) * sizeof(*vr->unindexed));
    snprintf(vr->unindexed[vr->nunindexed++], WAL_NAME_BUFLEN, "%s", segment);
    pthread_mutex_unlock(&v->lock);
}

int verify_exists_now(struct verify_run *v, struct verify_repo *vr, timeline_t tli, uint64_t segno,
                      const char *suffix)
{
    char name[WAL_NAME_BUFLEN];
    wal_segment_name(tli, segno, vr->seg_size, name);
    char *full = xasprintf("%s/wal/%08X/%s%s", vr->cluster, tli, name, suffix);
    int rc = storage_exists(repo_storage(vr->repo), full);
    free(full);
    if (rc < 0) {
        verify_problem_err(v, vr, "repository", NULL, name, tli);
        rc = 1;
    }
    return rc;
}

static int cmp_segment(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* --repair-index: build the missing time indexes again from the segments. */
static void repair_indexes(struct verify_run *v, struct verify_repo *vr)
{
    for (size_t i = 0; i < vr->nunindexed; i++) {
        if (repo_wal_reindex(vr->repo, vr->unindexed[i]) < 0) {
            err_context("while rebuilding the time index of segment %s", vr->unindexed[i]);
            verify_problem_err(v, vr, "index", NULL, vr->unindexed[i], 0);
            continue;
        }
        vr->repaired++;
    }
    if (vr->repaired)
        log_info("repository \"%s\": rebuilt the time index of %zu segment%s", vr->name,
                 vr->repaired, vr->repaired == 1 ? "" : "s");
}

void verify_count(struct verify_run *v, struct verify_repo *vr, const struct verify_counts *add)
{
    pthread_mutex_lock(&v->lock);
    struct verify_counts *c = &vr->counts;
    c->objects += add->objects;
    c->bytes += add->bytes;
    c->segments += add->segments;
    c->partials += add->partials;
    c->histories += add->histories;
    c->indexes += add->indexes;
    c->without_index += add->without_index;
    c->backups += add->backups;
    c->files += add->files;
    c->chunks += add->chunks;
    c->hwms += add->hwms;
    pthread_mutex_unlock(&v->lock);
}

static int cmp_problem(const void *a, const void *b)
{
    const struct verify_problem *x = a, *y = b;
    if (x->repo_index != y->repo_index)
        return x->repo_index < y->repo_index ? -1 : 1;
    int c = strcmp(x->object ? x->object : "", y->object ? y->object : "");
    return c ? c : strcmp(x->message, y->message);
}

/* --- verify_parallel: n jobs over v->jobs threads (the common pool) --------------------- */

struct parallel {
    void (*fn)(void *arg, size_t i);
    void *arg;
};

/* Problems are recorded by fn in the run, under its lock: no error crosses threads. */
static int parallel_run(void *arg, void *local, void *job, bool canceled)
{
    struct parallel *p = arg;
    (void)local;
    if (!canceled)
        p->fn(p->arg, (size_t)(uintptr_t)job);
    return 0;
}

static const struct pool_ops parallel_ops = {.what = "verify", .run = parallel_run};

void verify_parallel(struct verify_run *v, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    struct parallel p = {.fn = fn, .arg = arg};
    size_t nthreads = (size_t)v->jobs < n ? (size_t)v->jobs : n;
    struct pool *pool = nthreads ? pool_new(&parallel_ops, &p, (int)nthreads, 2 * nthreads) : NULL;
    if (!pool) {
        if (nthreads)
            err_clear();
        for (size_t i = 0; i < n; i++) /* no thread could start: do the work here */
            fn(arg, i);
        return;
    }
    for (size_t i = 0; i < n; i++)
        (void)pool_submit(pool, (void *)(uintptr_t)i); /* never fails: no job fails */
    (void)pool_wait(pool);
    pool_free(pool);
}

/* --- one repository ---------------------------------------------------------------------- */

/* The oldest backup's start segment: WAL before it restores nothing this repository
 * can restore, so continuity is required from there (docs/architecture.md). */
static void set_floor(struct verify_repo *vr)
{
    uint64_t seg_size = repo_identity(vr->repo)->seg_size;
    vr->have_floor = false;
    for (size_t i = 0; i < vr->nbackups; i++) {
        const struct ops_backup *b = &vr->backups[i];
        if (!b->readable)
            continue;
        uint64_t segno = lsn_to_segno(b->b.header.start_lsn, seg_size);
        if (!vr->have_floor || segno < vr->floor_segno) {
            vr->have_floor = true;
            vr->floor_segno = segno;
            vr->floor_tli = b->b.header.timeline;
        }
    }
}

/* How many objects each data key of vr protects, from the objects' headers. */
static void count_keys(struct verify_run *v, struct verify_repo *vr)
{
    size_t n;
    const struct repo_data_key *keys = repo_data_keys(vr->repo, &n);
    char *first = NULL;
    if (!n)
        return;
    vr->keys = xmalloc(n * sizeof(*keys));
    memcpy(vr->keys, keys, n * sizeof(*keys));
    vr->nkeys = n;
    if (repo_key_usage(vr->repo, vr->keys, n, false, &vr->unknown_key, &first) < 0) {
        err_context("while counting the objects of each data key");
        verify_problem_err(v, vr, "repository", NULL, NULL, 0);
    } else if (vr->unknown_key) {
        verify_problem(v, vr, "key", first, NULL, 0,
                       "%llu object%s (the first \"%s\") name%s a data key repo.json does not hold",
                       (unsigned long long)vr->unknown_key, vr->unknown_key == 1 ? "" : "s", first,
                       vr->unknown_key == 1 ? "s" : "");
    }
    free(first);
}

static void verify_one(struct verify_run *v, const struct config *cfg,
                       const struct config_cluster *cl, const struct config_repo *rc_repo,
                       struct verify_repo *vr)
{
    struct cli_repo opened;
    if (cli_repo_open(cfg, cl, rc_repo, CLI_REPO_READ, NULL, &opened) < 0) {
        /* the failure as every command says it, its hint included */
        struct verify_where w = {.kind = "repository",
                                 .object = opened.storage ? "repo.json" : NULL};
        if (opened.storage)
            err_context("while opening repository \"%s\"", rc_repo->name);
        char *line = cli_error_line(true);
        verify_problem_at(v, vr, &w, "%s", line);
        free(line);
        cli_repo_close(&opened);
        return;
    }
    vr->repo = opened.repo;
    vr->counts.objects++; /* repo.json, read and checked by repo_open */
    vr->seg_size = repo_identity(vr->repo)->seg_size;
    if (ops_backup_scan(vr->repo, vr->cluster, &vr->backups, &vr->nbackups) < 0) {
        err_context("while listing the backups");
        verify_problem_err(v, vr, "repository", "backups/", NULL, 0);
    }
    set_floor(vr);
    if (repo_chunk_key(vr->repo)) {
        memcpy(vr->name_key_copy, repo_chunk_key(vr->repo), sizeof(vr->name_key_copy));
        vr->name_key = vr->name_key_copy;
    }
    for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
        if (v->backup && !scopes[i].with_backup_option)
            continue;
        log_detail("verifying the %s of repository \"%s\"", scopes[i].name, vr->name);
        if (scopes[i].fn(v, vr) < 0) {
            err_context("while verifying the %s", scopes[i].name);
            verify_problem_err(v, vr, "repository", NULL, NULL, 0);
        }
    }
    if (!v->backup)
        count_keys(v, vr);
    if (vr->nunindexed > 1) /* the WAL tasks ran in parallel */
        qsort(vr->unindexed, vr->nunindexed, sizeof(*vr->unindexed), cmp_segment);
    if (v->repair_index)
        repair_indexes(v, vr);
    verify_damage_newest(v, vr);
    ops_backup_scan_free(vr->backups, vr->nbackups);
    vr->backups = NULL;
    vr->nbackups = 0;
    vr->repo = NULL;
    cli_repo_close(&opened);
}

/* --- output ------------------------------------------------------------------------------ */

static json_t *result_json(const struct verify_run *v, const struct config_cluster *cl,
                           const struct verify_repo *repos, size_t nrepos, int days, double secs)
{
    json_t *root = json_object();
    json_object_set_new(root, "cluster", json_string(cl->name));
    json_object_set_new(root, "ok", json_boolean(v->nproblems == 0));
    json_object_set_new(root, "days", days ? json_integer(days) : json_null());
    json_object_set_new(root, "backup", v->backup ? json_string(v->backup) : json_null());
    json_t *rs = json_array();
    for (size_t i = 0; i < nrepos; i++) {
        const struct verify_counts *c = &repos[i].counts;
        json_array_append_new(
            rs, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "name",
                          repos[i].name, "objects", (json_int_t)c->objects, "bytes",
                          (json_int_t)c->bytes, "segments", (json_int_t)c->segments, "partials",
                          (json_int_t)c->partials, "histories", (json_int_t)c->histories,
                          "time_indexes", (json_int_t)c->indexes, "segments_without_time_index",
                          (json_int_t)c->without_index, "high_water_marks", (json_int_t)c->hwms,
                          "backups", (json_int_t)c->backups, "files", (json_int_t)c->files,
                          "chunks", (json_int_t)c->chunks));
    }
    json_object_set_new(root, "repositories", rs);
    /* The segments without a time index, by name, and how many --repair-index rebuilt. */
    for (size_t i = 0; i < nrepos; i++) {
        json_t *names = json_array();
        for (size_t k = 0; k < repos[i].nunindexed; k++)
            json_array_append_new(names, json_string(repos[i].unindexed[k]));
        json_t *r = json_array_get(rs, i);
        json_object_set_new(r, "segments_without_time_index_names", names);
        json_object_set_new(r, "time_indexes_rebuilt", json_integer((json_int_t)repos[i].repaired));
        json_t *keys = json_array();
        for (size_t k = 0; k < repos[i].nkeys; k++)
            json_array_append_new(keys, json_pack("{s:I, s:b, s:I}", "id",
                                                  (json_int_t)repos[i].keys[k].id, "current",
                                                  repos[i].keys[k].current, "objects",
                                                  (json_int_t)repos[i].keys[k].objects));
        json_object_set_new(r, "data_keys", keys);
        json_object_set_new(r, "objects_unknown_key",
                            json_integer((json_int_t)repos[i].unknown_key));
    }
    json_t *ps = json_array();
    for (size_t i = 0; i < v->nproblems; i++) {
        const struct verify_problem *p = &v->problems[i];
        json_t *o = json_object();
        json_object_set_new(o, "repository", json_string(p->repo));
        json_object_set_new(o, "kind", json_string(p->kind));
        json_object_set_new(o, "object", p->object ? json_string(p->object) : json_null());
        json_object_set_new(o, "segment", p->segment ? json_string(p->segment) : json_null());
        json_object_set_new(o, "timeline", p->tli ? json_integer(p->tli) : json_null());
        json_object_set_new(o, "backup", p->backup ? json_string(p->backup) : json_null());
        json_object_set_new(o, "file", p->file ? json_string(p->file) : json_null());
        json_object_set_new(o, "chunk", p->chunk ? json_string(p->chunk) : json_null());
        json_object_set_new(o, "message", json_string(p->message));
        json_array_append_new(ps, o);
    }
    json_object_set_new(root, "problems", ps);
    json_object_set_new(root, "damaged_chunks", verify_damage_json(repos, nrepos));
    for (size_t i = 0; i < nrepos; i++)
        json_object_set_new(json_array_get(rs, i), "newest_intact_backup",
                            repos[i].newest_intact ? json_string(repos[i].newest_intact)
                                                   : json_null());
    json_object_set_new(root, "seconds", json_real(round(secs * 1000) / 1000));
    return root;
}

static void print_human(const struct verify_run *v, const struct config_cluster *cl,
                        const struct verify_repo *repos, size_t nrepos, double secs)
{
    char size[32];
    for (size_t i = 0; i < nrepos; i++) {
        const struct verify_counts *c = &repos[i].counts;
        printf("repository \"%s\": %llu objects, %s read; %llu segments, %llu partial, %llu "
               "history files, %llu time indexes",
               repos[i].name, (unsigned long long)c->objects,
               size_format(c->bytes, size, sizeof(size)), (unsigned long long)c->segments,
               (unsigned long long)c->partials, (unsigned long long)c->histories,
               (unsigned long long)c->indexes);
        if (c->without_index) {
            printf(" (%llu segment%s without one:", (unsigned long long)c->without_index,
                   c->without_index == 1 ? "" : "s");
            for (size_t k = 0; k < repos[i].nunindexed && k < 5; k++)
                printf(" %s", repos[i].unindexed[k]);
            if (repos[i].nunindexed > 5)
                printf(" and %zu more", repos[i].nunindexed - 5);
            if (repos[i].repaired)
                printf("; %zu rebuilt", repos[i].repaired);
            printf(")");
        }
        printf(", %llu high-water marks", (unsigned long long)c->hwms);
        printf("; %llu backups, %llu files, %llu chunks\n", (unsigned long long)c->backups,
               (unsigned long long)c->files, (unsigned long long)c->chunks);
        for (size_t k = 0; k < repos[i].nkeys; k++)
            printf("repository \"%s\": data key %" PRIu32 "%s protects %llu object%s\n",
                   repos[i].name, repos[i].keys[k].id, repos[i].keys[k].current ? " (current)" : "",
                   (unsigned long long)repos[i].keys[k].objects,
                   repos[i].keys[k].objects == 1 ? "" : "s");
    }
    for (size_t i = 0; i < v->nproblems; i++) {
        const struct verify_problem *p = &v->problems[i];
        printf("problem: repository \"%s\"", p->repo);
        if (p->backup && !strstr(p->message, p->backup))
            printf(", backup \"%s\"", p->backup);
        if (p->file && !strstr(p->message, p->file))
            printf(", file \"%s\"", p->file);
        if (p->segment && !strstr(p->message, p->segment))
            printf(", segment %s", p->segment);
        else if (!p->segment && p->object && !strstr(p->message, p->object))
            printf(", \"%s\"", p->object);
        printf(": %s\n", p->message);
    }
    verify_damage_print(repos, nrepos);
    if (v->nproblems)
        printf("cluster \"%s\": %zu problem%s found in %.1f s\n", cl->name, v->nproblems,
               v->nproblems == 1 ? "" : "s", secs);
    else
        printf("cluster \"%s\": no problems found in %.1f s\n", cl->name, secs);
}

/* --- the command ------------------------------------------------------------------------- */

static int parse_days(const char *text, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || end == text || *end || n < 1 || n > 100000) {
        err_set(ERR_USAGE, "invalid value \"%s\" for --days: expected a whole number of days",
                text);
        return err_hint("for example --days 7");
    }
    *out = (int)n;
    return 0;
}

/* The run's record (verifies/<time>.json) in every repository that can be opened, found
 * problems or not, for `report`: when verify last passed, and how often it does. A
 * repository that cannot take it is warned about; the exit status does not change. */
static void write_record(const struct config *cfg, const struct config_cluster *cl,
                         const struct verify_run *v, int64_t started_us, int days, double secs)
{
    char name[32], host[256] = "unknown", when[64];
    time_format_label(started_us, name, sizeof(name));
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(1));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "cluster", json_string(cl->name));
    json_object_set_new(o, "time", json_string(time_format_pg(started_us, when, sizeof(when))));
    json_object_set_new(o, "finished",
                        json_string(time_format_pg(time_now_us(), when, sizeof(when))));
    json_object_set_new(o, "result", json_string(v->nproblems ? "failed" : "passed"));
    json_object_set_new(o, "exit", json_integer(v->nproblems ? 3 : 0));
    json_object_set_new(o, "problems", json_integer((json_int_t)v->nproblems));
    json_object_set_new(o, "first_problem",
                        v->nproblems ? json_string(v->problems[0].message) : json_null());
    json_object_set_new(o, "backup", v->backup ? json_string(v->backup) : json_null());
    json_object_set_new(o, "days", days ? json_integer(days) : json_null());
    json_object_set_new(o, "seconds", json_real(round(secs * 1000) / 1000));
    json_object_set_new(o, "host", json_string(host));
    json_object_set_new(o, "pgark_version", json_string(PGARK_VERSION));
    char *text = cli_json_text(o);
    json_decref(o);
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *cr = config_cluster_repo(cfg, cl, i);
        struct cli_repo opened;
        if (cli_repo_open(cfg, cl, cr, CLI_REPO_READ, NULL, &opened) < 0 ||
            repo_record_put(opened.repo, REPO_RECORD_VERIFIES, name, text) < 0) {
            log_warn("the record of this verify could not be written to repository \"%s\": %s",
                     cr->name, err_message());
            err_clear();
        }
        cli_repo_close(&opened);
    }
    free(text);
}

/* verify.done or verify.failed, with the first problems found. */
static void notify_result(const struct config *cfg, const struct config_cluster *cl,
                          const struct verify_run *v, int64_t started_us, double secs)
{
    if (cfg->nnotify == 0)
        return;
    struct notify_event *e;
    if (v->nproblems == 0)
        e = notify_event_new(cl->name, CONFIG_EVENT_VERIFY_DONE,
                             "verify found no problem in %zu repositor%s (%.0f s)", cl->nrepos,
                             cl->nrepos == 1 ? "y" : "ies", secs);
    else
        e = notify_event_new(cl->name, CONFIG_EVENT_VERIFY_FAILED, "verify found %zu problem%s: %s",
                             v->nproblems, v->nproblems == 1 ? "" : "s", v->problems[0].message);
    e->since_us = started_us;
    json_object_set_new(e->details, "problems", json_integer((json_int_t)v->nproblems));
    json_object_set_new(e->details, "seconds", json_real(secs));
    for (size_t i = 0; i < v->nproblems && i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "problem %zu", i + 1);
        char *line = xasprintf("%s: %s", v->problems[i].repo ? v->problems[i].repo : "?",
                               v->problems[i].message);
        json_object_set_new(e->details, key, json_string(line));
        free(line);
    }
    cli_notify(cfg, cl, e);
}

/* verify's options into v, *as_json and *days: 0 to go on, 1 for --help (printed), or
 * 2 with a usage error set. */
static int parse_args(int argc, char **argv, struct verify_run *v, bool *as_json, int *days)
{
    static const struct option options[] = {{"json", no_argument, NULL, 'j'},
                                            {"backup", required_argument, NULL, 'b'},
                                            {"days", required_argument, NULL, 'd'},
                                            {"repair-index", no_argument, NULL, 'r'},
                                            {"no-quarantine", no_argument, NULL, 'q'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'j':
            *as_json = true;
            break;
        case 'b':
            v->backup = optarg;
            break;
        case 'd':
            if (parse_days(optarg, days) < 0)
                return 2;
            break;
        case 'r':
            v->repair_index = true;
            break;
        case 'q':
            v->quarantine = false;
            break;
        case 'h':
            printf(
                "usage: pgark verify [--backup LABEL|--days N] [--repair-index] [--no-quarantine] "
                "[--json]\n");
            return 1;
        default:
            if (optopt)
                err_set(ERR_USAGE, "option \"%s\" for verify needs a value", argv[optind - 1]);
            else
                err_set(ERR_USAGE, "unknown option \"%s\" for verify", argv[optind - 1]);
            err_hint("run \"pgark help verify\"");
            return 2;
        }
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for verify", argv[optind]);
        return 2;
    }
    if (v->backup && *days) {
        err_set(ERR_USAGE, "--backup and --days cannot be combined");
        return 2;
    }
    if (v->backup && !repo_backup_label_valid(v->backup)) {
        err_set(ERR_USAGE, "invalid backup label \"%s\"", v->backup);
        return 2;
    }
    return 0;
}

/* Every check of v over cl's repositories (repos, nrepos of them, named already): each
 * repository's objects, then what they say of each other (high-water marks, good copies
 * of damaged objects); v's problems sorted. */
static void run_checks(struct verify_run *v, const struct config *cfg,
                       const struct config_cluster *cl, struct verify_repo *repos, size_t nrepos)
{
    if (!v->backup) {
        char *spool_dir = xasprintf("%s/%s", cfg->spool, cl->name);
        verify_hwm_read_records(repos, nrepos, spool_dir);
        free(spool_dir);
    }
    for (size_t i = 0; i < nrepos; i++)
        verify_one(v, cfg, cl, config_cluster_repo(cfg, cl, i), &repos[i]);
    if (!v->backup) {
        /* How far behind another repository one may be before it is a problem: what the
         * receiver is allowed to lag (rpo_target), or two partial uploads if longer. */
        int64_t grace_ms = cl->rpo_target_ms;
        if (2 * cl->partial_upload_interval_ms > grace_ms)
            grace_ms = 2 * cl->partial_upload_interval_ms;
        verify_hwm_compare(v, repos, nrepos, grace_ms * 1000);
    }
    verify_damage_good_copies(repos, nrepos);
    if (v->nproblems > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(v->problems, v->nproblems, sizeof(*v->problems), cmp_problem);
}

static void run_free(struct verify_run *v, struct verify_repo *repos, size_t nrepos)
{
    for (size_t i = 0; i < v->nproblems; i++) {
        struct verify_problem *p = &v->problems[i];
        free(p->repo);
        free(p->kind);
        free(p->object);
        free(p->segment);
        free(p->backup);
        free(p->file);
        free(p->chunk);
        free(p->message);
    }
    free(v->problems);
    for (size_t i = 0; i < nrepos; i++) {
        verify_hwm_free(&repos[i]);
        verify_damage_free(&repos[i]);
        free(repos[i].unindexed);
        free(repos[i].keys);
    }
    free(repos);
    pthread_mutex_destroy(&v->lock);
}

int cmd_verify(struct cli_context *ctx, int argc, char **argv)
{
    struct verify_run v = {.quarantine = true};
    struct verify_repo *repos = NULL;
    bool as_json = false;
    int days = 0, rc;
    size_t nrepos = 0;

    if ((rc = parse_args(argc, argv, &v, &as_json, &days)) != 0)
        return rc == 1 ? 0 : rc;
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    v.jobs = cpus < 2 ? 2 : cpus > MAX_JOBS ? MAX_JOBS : (int)cpus;
    if (days)
        v.since_us = time_now_us() - (int64_t)days * 86400 * 1000000;
    pthread_mutex_init(&v.lock, NULL);
    int64_t t0 = time_mono_us(), started_us = time_now_us();
    time_format_label(started_us, v.run_label, sizeof(v.run_label));
    nrepos = cl->nrepos;
    repos = xcalloc(nrepos, sizeof(*repos));
    for (size_t i = 0; i < nrepos; i++) {
        const struct config_repo *cr = config_cluster_repo(cfg, cl, i);
        repos[i].index = i;
        repos[i].name = cr->name;
        repos[i].cluster = cl->name;
    }
    run_checks(&v, cfg, cl, repos, nrepos);
    double secs = (double)(time_mono_us() - t0) / 1e6;

    if (as_json) {
        json_t *root = result_json(&v, cl, repos, nrepos, days, secs);
        cli_print_json(root);
        json_decref(root);
    } else {
        print_human(&v, cl, repos, nrepos, secs);
    }
    rc = v.nproblems ? 3 : 0;
    ctx->metrics_bytes = 0;
    for (size_t i = 0; i < nrepos; i++)
        ctx->metrics_bytes += (int64_t)repos[i].counts.bytes;
    if (v.nproblems)
        log_detail("verify found %zu problems", v.nproblems);
    write_record(cfg, cl, &v, started_us, days, secs);
    notify_result(cfg, cl, &v, started_us, secs);
    run_free(&v, repos, nrepos);
    return rc;
}
