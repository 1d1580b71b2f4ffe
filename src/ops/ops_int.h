/*
 * ops_int.h — what verify, expire and info share about the backups of a repository:
 * a listing that does not stop at the first damaged manifest (verify must name each
 * one, expire must keep what it cannot read), and the whole manifest read as a stream.
 */
#ifndef PGARK_OPS_INT_H
#define PGARK_OPS_INT_H

#include "pgark/manifest.h"
#include "pgark/repo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One folder under backups/. */
struct ops_backup {
    char *label;
    bool complete; /* manifest.json is there */
    bool readable; /* and its header was read: b.header is valid */
    struct repo_backup b;
    char *error;  /* complete && !readable: why (one line) */
    bool running; /* a live marker backups/<label>.running says it is being written */
};

/* Every folder under backups/ of cluster (the repository's folder name), sorted by
 * label, each with its manifest's header when it has a readable one. A backup whose
 * manifest is damaged is listed with readable false and the error, not a failure of
 * the listing. Also reads the running markers. Free with ops_backup_scan_free. */
int ops_backup_scan(struct repo *r, const char *cluster, struct ops_backup **out, size_t *n);
void ops_backup_scan_free(struct ops_backup *list, size_t n);

/* Stream the whole manifest.json of label through a manifest reader calling on_file
 * for each file line; ERR_INTEGRITY when it is damaged or ends early. */
int ops_manifest_read(struct repo *r, const char *label, manifest_file_fn on_file, void *arg);

/* A backup's start and stop, for the retention rules (expire.c; unit-tested). */
struct retention_backup {
    int64_t stop_time; /* seconds since the epoch */
    const char *label; /* ties on stop_time are broken by label */
    bool keep;         /* set by retention_apply */
};

/*
 * Mark the backups that retention keeps: `full` > 0 keeps the full newest ones;
 * window_ms > 0 keeps what makes every moment of the last window_ms restorable — the
 * newest backup that ended at or before now - window, and every newer one (all of
 * them when none ended that early). With both, a backup either rule keeps is kept.
 * With neither, everything is kept. At least one backup is kept when there is one.
 */
void retention_apply(struct retention_backup *b, size_t n, int full, int64_t window_ms,
                     int64_t now_us);

#endif
