/*
 * rxstatus.h — the receiver's status.json as the one-shot commands read it (check, info,
 * report, drill), so that each says the same RPO at the same moment.
 *
 * The receiver writes the file about once a second (walreceiver/status.c), with each
 * repository's and each tier's RPO: what a restore to latest from it would lose now, as
 * commit time (docs/architecture.md, "One RPO"). A reader adds the file's age to a figure
 * above 0 (a repository that lags keeps lagging while the file ages), and to every figure
 * once the receiver has stopped (it knows of no newer commit, so the loss is bounded by
 * the time since). The same rule is applied wherever the file is read: rx_status_aged.
 */
#ifndef PGARK_OPS_RXSTATUS_H
#define PGARK_OPS_RXSTATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* A receiver counts as running while the pid of its status file lives and the file is
 * fresher than this. */
#define RX_STATUS_STALE_US (15 * INT64_C(1000000))

struct rx_status {
    json_t *doc;  /* NULL: no status file, or not readable as JSON */
    bool running; /* see RX_STATUS_STALE_US */
    double age_s; /* how old the file is at now_us (0 without one) */
};

/* Read <spool>/<cluster>/status.json as of now_us. Never fails: a missing or unreadable
 * file leaves doc NULL. Free with rx_status_free. */
void rx_status_load(const char *spool, const char *cluster, int64_t now_us, struct rx_status *s);
void rx_status_free(struct rx_status *s);

/* v, a figure of the file in seconds (RPO or lag), as of now; v itself when negative. */
double rx_status_aged(const struct rx_status *s, double v);
/* The RPO now of tier "local" or "offsite" (a tier's "seconds", else the older
 * "<tier>_seconds"), or of the repository named; -1 when the file has none. */
double rx_status_tier_rpo(const struct rx_status *s, const char *tier);
double rx_status_repo_rpo(const struct rx_status *s, const char *repo);
/* Whether the receiver has streamed anything (or is connected): one that never got a
 * byte lags by nothing it knows of, so its figures say nothing about the RPO. */
bool rx_status_streams(const struct rx_status *s);

#endif
