/*
 * summary.c — what `pgark backup` says when it is done (command_int.h): the summary,
 * human or --json, the backup.done event, and the repositories the backup is not in.
 */
#include "command_int.h"

#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/units.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "2026-11-25T18:24:14Z" */
static json_t *iso_time(int64_t us)
{
    char text[32];
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(text);
}

bool backup_result_failed(const struct repo_result *r)
{
    return !r->t || r->t->failed;
}

const char *backup_result_error(const struct repo_result *r)
{
    return r->t ? r->t->error : r->error;
}

json_t *backup_summary_json(const char *label, const struct pg_bb_info *info, int64_t start_us,
                            int64_t stop_us, const struct backup_totals *tot,
                            const struct repo_result *results, size_t nresults,
                            const struct config_cluster *cl)
{
    char a[LSN_STRLEN], b[LSN_STRLEN];
    uint64_t stored = 0, fresh = 0, reused = 0;
    json_t *repos = json_array();
    json_t *failed = json_array();

    for (size_t i = 0; i < nresults; i++) {
        const struct repo_result *r = &results[i];
        if (backup_result_failed(r)) {
            const char *why = backup_result_error(r);
            json_array_append_new(repos, json_pack("{s:s, s:s, s:s}", "name", r->name, "status",
                                                   "failed", "error", why ? why : "failed"));
            json_array_append_new(failed, json_string(r->name));
            continue;
        }
        stored += r->t->stored_bytes;
        fresh += r->t->new_chunks;
        reused += r->t->reused_chunks;
        json_array_append_new(repos,
                              json_pack("{s:s, s:s, s:I, s:I, s:I}", "name", r->name, "status",
                                        "ok", "stored_bytes", (json_int_t)r->t->stored_bytes,
                                        "new_chunks", (json_int_t)r->t->new_chunks, "reused_chunks",
                                        (json_int_t)r->t->reused_chunks));
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:o, s:i, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:f}",
        "cluster", cl->name, "label", label, "start_lsn", lsn_format(info->start_lsn, a),
        "stop_lsn", lsn_format(info->end_lsn, b), "start_time", iso_time(start_us), "stop_time",
        iso_time(stop_us), "timeline", (int)info->start_tli, "files", (json_int_t)tot->files,
        "logical_bytes", (json_int_t)tot->logical_bytes, "stored_bytes", (json_int_t)stored,
        "new_chunks", (json_int_t)fresh, "reused_chunks", (json_int_t)reused, "chunks",
        (json_int_t)tot->chunks, "unchanged_chunks", (json_int_t)tot->unchanged, "wal_segments",
        (json_int_t)tot->wal_segments, "duration_seconds",
        round((double)(stop_us - start_us) / 1000.0) / 1000.0);
    json_object_set_new(o, "repositories", repos);
    json_object_set_new(o, "failed_repositories", failed);
    return o;
}

void backup_print_human(json_t *s)
{
    char a[32], b[32];
    size_t i;
    json_t *r;

    printf(
        "backup \"%s\" of cluster \"%s\" complete: %s in %lld files, %s\n",
        json_string_value(json_object_get(s, "label")),
        json_string_value(json_object_get(s, "cluster")),
        size_format((uint64_t)json_integer_value(json_object_get(s, "logical_bytes")), a,
                    sizeof(a)),
        (long long)json_integer_value(json_object_get(s, "files")),
        duration_format((int64_t)(json_real_value(json_object_get(s, "duration_seconds")) * 1000),
                        b, sizeof(b)));
    printf("  timeline %lld, WAL %s .. %s (%lld segments archived)\n",
           (long long)json_integer_value(json_object_get(s, "timeline")),
           json_string_value(json_object_get(s, "start_lsn")),
           json_string_value(json_object_get(s, "stop_lsn")),
           (long long)json_integer_value(json_object_get(s, "wal_segments")));
    if (json_is_true(json_object_get(s, "incremental")))
        printf("  incremental to backup \"%s\": %lld changed blocks in %lld files, %lld chunks "
               "taken from it unreceived\n",
               json_string_value(json_object_get(s, "parent")),
               (long long)json_integer_value(json_object_get(s, "changed_blocks")),
               (long long)json_integer_value(json_object_get(s, "incremental_files")),
               (long long)json_integer_value(json_object_get(s, "parent_chunks")));
    else
        printf("  full backup: %s\n", json_string_value(json_object_get(s, "reason")));
    json_array_foreach(json_object_get(s, "repositories"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "status")), "ok") != 0) {
            printf("  repository \"%s\": FAILED, the backup is not in it: %s\n",
                   json_string_value(json_object_get(r, "name")),
                   json_string_value(json_object_get(r, "error")));
            continue;
        }
        printf("  repository \"%s\": %s stored, %lld new chunks, %lld reused\n",
               json_string_value(json_object_get(r, "name")),
               size_format((uint64_t)json_integer_value(json_object_get(r, "stored_bytes")), a,
                           sizeof(a)),
               (long long)json_integer_value(json_object_get(r, "new_chunks")),
               (long long)json_integer_value(json_object_get(r, "reused_chunks")));
    }
}

/* The repositories that failed, as JSON ({"name", "error"}), for the events. */
json_t *backup_failed_json(const struct session *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->nresults; i++) {
        const struct repo_result *r = &s->results[i];
        if (!backup_result_failed(r))
            continue;
        const char *why = backup_result_error(r);
        char *text = log_redact(why ? why : "failed");
        json_array_append_new(a, json_pack("{s:s, s:s}", "name", r->name, "error", text));
        free(text);
    }
    return a;
}

/* backup.done, with what a reader of the chat wants: the label, its size, its time, and
 * the repositories it is not in. */
void backup_notify_done(const struct config *cfg, const struct config_cluster *cl,
                        const char *label, json_t *sum, int64_t start_us, int64_t stop_us,
                        const struct session *s)
{
    if (cfg->nnotify == 0)
        return;
    char took[32];
    json_t *failed = backup_failed_json(s);
    struct buf names = BUF_INIT;
    size_t i;
    json_t *f;
    json_array_foreach(failed, i, f)
    {
        buf_appendf(&names, "%s\"%s\"", i ? ", " : "",
                    json_string_value(json_object_get(f, "name")));
    }
    duration_format((stop_us - start_us) / 1000, took, sizeof(took));
    struct notify_event *e =
        names.data ? notify_event_new(cl->name, CONFIG_EVENT_BACKUP_DONE,
                                      "backup %s done in %s, but not in repository %s", label, took,
                                      (char *)names.data)
                   : notify_event_new(cl->name, CONFIG_EVENT_BACKUP_DONE, "backup %s done in %s",
                                      label, took);
    e->since_us = start_us;
    const char *keys[] = {"label",         "start_lsn",    "stop_lsn", "timeline",
                          "logical_bytes", "stored_bytes", "files",    "duration_seconds"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        json_t *v = json_object_get(sum, keys[k]);
        if (v)
            json_object_set(e->details, keys[k], v);
    }
    json_object_set_new(e->details, "failed_repositories", failed);
    buf_free(&names);
    cli_notify(cfg, cl, e);
}

void backup_summary_incremental(json_t *sum, const struct incr_choice *c,
                                const struct backup_totals *t)
{
    bool incr = c->parent[0] != '\0';
    json_object_set_new(sum, "incremental", json_boolean(incr));
    json_object_set_new(sum, "parent", incr ? json_string(c->parent) : json_null());
    json_object_set_new(sum, "reason", incr ? json_null() : json_string(c->reason));
    json_object_set_new(sum, "incremental_files", json_integer((json_int_t)t->incr_files));
    json_object_set_new(sum, "received_bytes", json_integer((json_int_t)t->received_bytes));
    json_object_set_new(sum, "changed_blocks", json_integer((json_int_t)t->incr_blocks));
    json_object_set_new(sum, "parent_chunks", json_integer((json_int_t)t->parent_chunks));
    json_object_set_new(sum, "patched_chunks", json_integer((json_int_t)t->patched));
    json_object_set_new(sum, "parent_chunks_read", json_integer((json_int_t)t->parent_reads));
    /* What the WAL summaries said changed since the candidate parent, when asked. */
    const struct incr_estimate *e = &c->est;
    json_object_set_new(
        sum, "estimate",
        e->done ? json_pack("{s:s, s:I, s:I, s:I, s:I, s:f}", "against", e->against,
                            "changed_ranges", (json_int_t)e->changed_ranges, "ranges",
                            (json_int_t)e->ranges, "changed_blocks", (json_int_t)e->changed_blocks,
                            "blocks", (json_int_t)e->blocks, "seconds", (double)e->elapsed_us / 1e6)
                : json_null());
}

/* The repositories the backup is not in, each said with the copy that would put it
 * there; true when there is one (the backup is complete where it is: the exit code
 * tells a script the rest). */
bool backup_report_failed(json_t *sum, const struct session *s, const char *label,
                          const struct config_cluster *cl)
{
    json_t *failed = json_object_get(sum, "failed_repositories");
    size_t i;
    json_t *f;
    json_array_foreach(failed, i, f)
    {
        const char *name = json_string_value(f);
        const char *from = NULL;
        for (size_t k = 0; !from && k < s->nresults; k++)
            if (!backup_result_failed(&s->results[k]))
                from = s->results[k].name;
        log_error("backup \"%s\" of cluster \"%s\" is not in repository \"%s\"", label, cl->name,
                  name);
        log_msg(LOG_ERROR,
                "hint: once the repository is back, \"pgark copy --from %s --to %s --backup %s\" "
                "copies it there",
                from, name, label);
    }
    return json_array_size(failed) > 0;
}
