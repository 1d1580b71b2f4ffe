/*
 * metrics.c — the receiver's state (a status_view) in Prometheus' text exposition
 * format (version 0.0.4).
 *
 * The figures are status.json's, from the same status_view: an alert on
 * pgark_rpo_seconds and a look at status.json never disagree on how they were computed.
 * Counters (_total) count from the start of this receiver's run: a reload (SIGHUP) starts
 * them again, which Prometheus' rate() and increase() take as a reset.
 *
 * Names: pgark_receiver_* for the stream, pgark_repo_* per repository (labels repo and
 * tier), pgark_rpo_seconds per tier, pgark_spool_bytes; every sample has the cluster
 * label. LSNs are byte positions (pg_wal_lsn_diff's scale), as *_lsn_bytes.
 */
#include "receiver_int.h"

#include <string.h>

static const char *tier_name(bool offsite)
{
    return offsite ? "offsite" : "local";
}

/* A label value as the format wants it: backslash, double quote and newline escaped. */
static void append_label_value(struct buf *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            buf_appendf(out, "\\%c", *p);
        else if (*p == '\n')
            buf_append_str(out, "\\n");
        else
            buf_append(out, p, 1);
    }
}

static void family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{cluster="...",repo="...",tier="..."} (repo and tier when not NULL), no value. */
static void sample_start(struct buf *out, const char *name, const char *cluster, const char *repo,
                         const char *tier)
{
    buf_appendf(out, "%s{cluster=\"", name);
    append_label_value(out, cluster);
    if (repo) {
        buf_append_str(out, "\",repo=\"");
        append_label_value(out, repo);
    }
    if (tier) {
        buf_append_str(out, "\",tier=\"");
        append_label_value(out, tier);
    }
    buf_append_str(out, "\"} ");
}

static void sample_u64(struct buf *out, const char *name, const char *cluster, const char *repo,
                       const char *tier, uint64_t value)
{
    sample_start(out, name, cluster, repo, tier);
    buf_appendf(out, "%llu\n", (unsigned long long)value);
}

static void sample_f(struct buf *out, const char *name, const char *cluster, const char *repo,
                     const char *tier, double value)
{
    sample_start(out, name, cluster, repo, tier);
    buf_appendf(out, "%.3f\n", value);
}

/* A receiver-wide gauge or counter with one sample. */
static void one_u64(struct buf *out, const char *name, const char *type, const char *help,
                    const char *cluster, uint64_t value)
{
    family(out, name, type, help);
    sample_u64(out, name, cluster, NULL, NULL, value);
}

/* A receiver-wide time (Unix microseconds) as seconds; nothing when unknown (0). */
static void one_time(struct buf *out, const char *name, const char *help, const char *cluster,
                     int64_t us)
{
    if (!us)
        return;
    family(out, name, "gauge", help);
    sample_f(out, name, cluster, NULL, NULL, (double)us / 1e6);
}

/* What each repository's family shows. */
enum repo_field {
    REPO_SHIPPED_LSN,
    REPO_LAG_BYTES,
    REPO_LAG_SECONDS,
    REPO_RPO_SECONDS,
    REPO_SHIPPED_AT,
    REPO_NEWEST_COMMIT,
    REPO_SEGMENTS,
    REPO_BYTES,
    REPO_UPLOAD_ERRORS,
    REPO_FAILING,
};

static const struct {
    enum repo_field field;
    const char *name, *type, *help;
} repo_families[] = {
    {REPO_SHIPPED_LSN, "pgark_repo_shipped_lsn_bytes", "gauge",
     "End of the WAL the repository holds, as an LSN in bytes."},
    {REPO_LAG_BYTES, "pgark_repo_lag_bytes", "gauge",
     "WAL flushed in the spool that the repository does not hold yet."},
    {REPO_LAG_SECONDS, "pgark_repo_lag_seconds", "gauge",
     "How long ago the spool first held the oldest byte the repository lacks."},
    {REPO_RPO_SECONDS, "pgark_repo_rpo_seconds", "gauge",
     "Commit time a restore to latest from the repository would lose now."},
    {REPO_SHIPPED_AT, "pgark_repo_last_shipped_timestamp_seconds", "gauge",
     "When the WAL the repository holds last grew."},
    {REPO_NEWEST_COMMIT, "pgark_repo_newest_commit_timestamp_seconds", "gauge",
     "Time of the newest commit the repository holds, when known."},
    {REPO_SEGMENTS, "pgark_repo_segments_shipped_total", "counter",
     "WAL segments shipped to the repository since the receiver started."},
    {REPO_BYTES, "pgark_repo_shipped_bytes_total", "counter",
     "WAL bytes shipped to the repository since the receiver started."},
    {REPO_UPLOAD_ERRORS, "pgark_repo_upload_errors_total", "counter",
     "Failed attempts to open or ship to the repository since the receiver started."},
    {REPO_FAILING, "pgark_repo_failing", "gauge",
     "1 while the last attempt to ship to the repository failed."},
};

static void repo_sample(struct buf *out, enum repo_field field, const char *name,
                        const char *cluster, const struct status_repo *r)
{
    const char *tier = tier_name(r->offsite);
    switch (field) {
    case REPO_SHIPPED_LSN:
        sample_u64(out, name, cluster, r->name, tier, r->shipped_lsn);
        break;
    case REPO_LAG_BYTES:
        sample_u64(out, name, cluster, r->name, tier, r->lag_bytes);
        break;
    case REPO_LAG_SECONDS:
        sample_f(out, name, cluster, r->name, tier, r->lag_s);
        break;
    case REPO_RPO_SECONDS:
        sample_f(out, name, cluster, r->name, tier, r->rpo_s);
        break;
    case REPO_SHIPPED_AT:
        if (r->shipped_at_us)
            sample_f(out, name, cluster, r->name, tier, (double)r->shipped_at_us / 1e6);
        break;
    case REPO_NEWEST_COMMIT:
        if (r->held_known)
            sample_f(out, name, cluster, r->name, tier, (double)r->held.time_us / 1e6);
        break;
    case REPO_SEGMENTS:
        sample_u64(out, name, cluster, r->name, tier, r->segments_shipped);
        break;
    case REPO_BYTES:
        sample_u64(out, name, cluster, r->name, tier, r->bytes_shipped);
        break;
    case REPO_UPLOAD_ERRORS:
        sample_u64(out, name, cluster, r->name, tier, r->upload_errors);
        break;
    case REPO_FAILING:
        sample_u64(out, name, cluster, r->name, tier, r->last_error != NULL);
        break;
    }
}

void metrics_format(const struct status_view *v, const char *cluster, struct buf *out)
{
    one_u64(out, "pgark_receiver_connected", "gauge",
            "1 while the receiver is connected to the server.", cluster, v->connected);
    one_u64(out, "pgark_receiver_timeline", "gauge", "Timeline being received.", cluster, v->tli);
    one_u64(out, "pgark_receiver_server_lsn_bytes", "gauge",
            "End of the server's WAL as last reported, as an LSN in bytes.", cluster,
            v->server_end);
    one_u64(out, "pgark_receiver_received_lsn_bytes", "gauge",
            "End of the WAL received, as an LSN in bytes.", cluster, v->received);
    one_u64(out, "pgark_receiver_flushed_lsn_bytes", "gauge",
            "End of the WAL durable in the spool, as an LSN in bytes.", cluster, v->flushed);
    one_u64(out, "pgark_receiver_receive_lag_bytes", "gauge",
            "WAL the server has that the spool does not hold durably yet.", cluster,
            v->server_end > v->flushed ? v->server_end - v->flushed : 0);
    one_u64(out, "pgark_receiver_reconnects_total", "counter",
            "Sessions that ended and were tried again since the receiver started.", cluster,
            v->reconnects);
    one_u64(out, "pgark_receiver_flushes_total", "counter",
            "fsyncs of the spool that made more WAL durable (each reported to the server) "
            "since the receiver started.",
            cluster, v->flushes);
    one_u64(out, "pgark_receiver_wal_messages_total", "counter",
            "WAL messages (XLogData) taken from the server since the receiver started.", cluster,
            v->wal_messages);
    one_time(out, "pgark_receiver_flushed_timestamp_seconds",
             "When the spool's durable WAL last grew.", cluster, v->flushed_at_us);
    if (v->newest_known)
        one_time(out, "pgark_receiver_newest_commit_timestamp_seconds",
                 "Time of the newest commit the spool holds.", cluster, v->newest.time_us);
    one_time(out, "pgark_receiver_last_status_timestamp_seconds",
             "When the receiver last wrote status.json.", cluster, v->status_wall_us);
    if (v->have_spool)
        one_u64(out, "pgark_spool_bytes", "gauge", "WAL bytes the spool holds.", cluster,
                v->spool_bytes);

    bool any_tier = v->tiers[0].repos || v->tiers[1].repos;
    if (any_tier) {
        family(out, "pgark_rpo_seconds", "gauge",
               "RPO of the tier: the worst of its repositories' pgark_repo_rpo_seconds.");
        for (int t = 0; t < 2; t++) {
            if (v->tiers[t].repos)
                sample_f(out, "pgark_rpo_seconds", cluster, NULL, tier_name(t == 1),
                         v->tiers[t].rpo);
        }
    }

    for (size_t f = 0; f < sizeof(repo_families) / sizeof(repo_families[0]); f++) {
        size_t before = out->len;
        family(out, repo_families[f].name, repo_families[f].type, repo_families[f].help);
        size_t header = out->len;
        for (int i = 0; i < v->nrepos; i++)
            repo_sample(out, repo_families[f].field, repo_families[f].name, cluster, &v->repos[i]);
        if (out->len == header) { /* no sample: no family */
            out->len = before;
            out->data[before] = '\0';
        }
    }
}
