/* restore_int.h — what the files of src/restore share. */
#ifndef PGARK_RESTORE_INT_H
#define PGARK_RESTORE_INT_H

#include "pgark/repo.h"
#include "pgark/restore.h"

#include <stdbool.h>
#include <stdint.h>

struct cli_context;
struct config;
struct config_cluster;

/* --- repositories of a cluster (repos.c) ------------------------------------------ */

/* The cluster's repositories, posix ones first ("local" tier), then the others, each
 * opened lazily. */
struct repo_set {
    size_t n;
    const struct config_repo **conf;
    struct storage **storage;
    struct repo **repo;
    const char *cluster;
    const char *passphrase;
};

/* Order the cluster's repos (only `only` when not NULL: ERR_CONFIG if it is not one of
 * the cluster's). Nothing is opened yet. */
int repo_set_init(struct repo_set *set, const struct config *cfg, const struct config_cluster *cl,
                  const char *only);
/* Open repo i (once); NULL with the error set. */
struct repo *repo_set_get(struct repo_set *set, size_t i);
void repo_set_free(struct repo_set *set);

/* --- backups in a repository (catalog.c) ------------------------------------------ */

struct catalog_entry {
    struct restore_backup b; /* label points into label_buf */
    char label_buf[64];
    size_t repo; /* index in the repo_set */
    uint64_t logical_bytes;
    uint64_t files;
    uint32_t *ts_oid; /* the backup's tablespaces (owned) */
    char **ts_location;
    size_t n_ts;
};

struct catalog {
    struct catalog_entry *e;
    size_t n;
};

/* Every complete backup (backups/<LABEL>/manifest.json present) of every repo, read from
 * the manifests' first lines. A repo that cannot be opened or listed is warned about and
 * skipped; ERR_NOT_FOUND when no repo holds a backup. */
int catalog_load(struct repo_set *set, struct catalog *out);
void catalog_free(struct catalog *c);

/* The timeline history of tli from the first repo that has it, NULL for tli 1 or when
 * none has it (then *out is NULL and 0 is returned). */
int catalog_history(struct repo_set *set, timeline_t tli, struct timeline_history **out);
/* The newest timeline with WAL or a history file in any repo (0 when none). */
int catalog_newest_timeline(struct repo_set *set, timeline_t *out);

/* Where the WAL archive of timeline tli (and ancestors) ends: the last transaction
 * (commit or abort) time and the start of the last record, decoded from the newest
 * segment or partial of tli in any repo. */
struct wal_end {
    bool found;
    bool have_xact;
    int64_t last_xact_us; /* Unix microseconds */
    lsn_t last_record;    /* start of the last complete record */
    lsn_t end_lsn;        /* where valid WAL ends */
    lsn_t reach;          /* where the bytes of the newest object end */
    size_t repo;          /* the repository holding it (index in the set) */
    char object[64];      /* the segment decoded, for messages */
};
int catalog_wal_end(struct repo_set *set, timeline_t tli, struct wal_end *out);

/* The furthest WAL high-water mark of timeline tli in the set's repositories (found false
 * when none has one; a mark that cannot be read is warned about and passed over). */
struct wal_hwm_best {
    bool found;
    struct repo_wal_hwm m;
    lsn_t end;
    size_t repo; /* index in the set */
};
int catalog_wal_hwm(struct repo_set *set, timeline_t tli, struct wal_hwm_best *out);

/* --- the data directory (pgdata.c) ------------------------------------------------- */

/* 1 if dir exists and holds anything, 0 if empty or missing, negative on error. */
int pgdata_nonempty(const char *dir);
/* ERR_USAGE when postmaster.pid names a live process. */
int pgdata_check_postmaster(const char *dir);

/* A set of relative paths (the files of the manifest), to remove the others. */
struct path_set;
struct path_set *path_set_new(void);
void path_set_add(struct path_set *s, const char *path);
bool path_set_has(const struct path_set *s, const char *path);
void path_set_free(struct path_set *s);
/* Remove everything under dir that is not in keep (paths relative to dir); symlinked
 * directories (tablespaces) are not followed; counts what was removed. */
int pgdata_remove_extra(const char *dir, const struct path_set *keep, uint64_t *removed);

/* --- laying down files (writer.c) ---------------------------------------------------- */

struct writer_options {
    const char *pgdata;
    struct repo *repo;
    int threads;
    bool delta;    /* keep chunks whose content already matches */
    bool progress; /* draw a progress line */
    uint64_t total_bytes;
    /* tablespace remapping: oid -> directory (NULL entries: keep) */
    const uint32_t *ts_oid;
    const char *const *ts_dir;
    size_t n_ts;
    struct path_set *seen; /* when not NULL, every manifest path is added */
    uint64_t piece_bytes;  /* work unit per thread; 0: the default (tests use small ones) */
};

struct writer_stats {
    uint64_t files, bytes;                 /* in the manifest */
    uint64_t files_written, bytes_written; /* rewritten (delta) or written */
    uint64_t chunks_fetched;
};

/* Stream the manifest of backup label from the repo and lay it down under pgdata. */
int writer_restore(const struct writer_options *o, const char *label, struct writer_stats *st);

/* --- starting the server (start.c) --------------------------------------------------- */

struct start_options {
    const char *pgdata;
    int port; /* 0: as configured */
    bool wait;
    const struct restore_target *target;
    int pg_major;
};
int restore_start(const struct start_options *o);

/* --- wal-fetch's read-ahead cache (prefetch.c) --------------------------------------- */

#define PREFETCH_DIR ".pgark-prefetch"

/* Move a cached, verified copy of name into dest (in cache_dir's parent). 1 when served,
 * 0 when not cached. Removes cached files the server has gone past. */
int prefetch_consume(const char *cache_dir, const char *name, const char *dest);
/* When the running read-ahead is fetching name, wait for its copy and serve it as
 * prefetch_consume does (1); 0 when it is not fetching it or ends without a copy. */
int prefetch_await(const char *cache_dir, const char *name, const char *dest);
/* Record that segment `segno` was served and make sure a detached read-ahead process
 * keeps the `depth` segments after it in cache_dir (starts one unless one runs; none
 * when depth is 0). */
void prefetch_spawn(struct repo_set *set, const char *cache_dir, timeline_t tli, uint64_t segno,
                    uint64_t seg_size, unsigned depth);
/* Remove the cache directory and everything in it. */
void prefetch_drop(const char *cache_dir);
/* How walfetch_object lays its copy down. */
enum walfetch_flags {
    /* the object may be shorter than a segment (a .partial): zero-pad it to seg_size */
    WALFETCH_PAD = 1,
    /* write the copy out to disk before it is renamed into place (the read-ahead cache:
     * the server fsyncs every segment it restores, in its startup process, and a copy
     * already on disk makes that fsync cheap) */
    WALFETCH_FLUSH = 2,
};
/* Fetch one WAL object of any repo (posix first) into dest atomically (temp name in
 * dest's directory, renamed; fsynced only with WALFETCH_FLUSH: the server asks again
 * after a crash). With seg_size non-zero the object must be a whole segment, or with
 * WALFETCH_PAD at most one. 1 found, 0 not found in any repo, negative when a copy was
 * damaged and no repo had a good one. */
int walfetch_object(struct repo_set *set, const char *path, const char *dest, uint64_t seg_size,
                    unsigned flags, const char *what);

#endif
