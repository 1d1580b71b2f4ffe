/*
 * verify_int.h — what the parts of `pgark verify` share: the run (options, problems
 * found, counts), one repository being verified, and the worker pool.
 *
 * A scope (the backups, the WAL archive) is a function that checks
 * one repository and records each problem it finds with verify_problem*; it returns
 * 0 when it could look at everything, or a negative error when it could not go on
 * (that error is recorded as a problem by the caller too).
 */
#ifndef PGARK_OPS_VERIFY_INT_H
#define PGARK_OPS_VERIFY_INT_H

#include "ops_int.h"

#include "pgark/hash.h"
#include "pgark/repo.h"

#include <jansson.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunkset;

struct verify_problem {
    size_t repo_index; /* order of the repository in the cluster's list */
    char *repo;
    char *
        kind; /* "missing", "damaged", "wal", "index", "history", "timeline", "hwm", "repository" */
    char *object;   /* path in the repository (relative to the cluster folder), or NULL */
    char *segment;  /* WAL segment name, or NULL */
    char *backup;   /* backup label, or NULL */
    char *file;     /* a backup's file (path in the data directory), or NULL */
    char *chunk;    /* a chunk's name, or NULL */
    timeline_t tli; /* 0 when none */
    char *message;
};

/* A WAL object of the archive: a complete segment or a partial copy. */
struct verify_seg {
    uint64_t segno;
    int64_t mtime_us;
    bool has_idx;
    /* A partial copy, once read: whether it read well, and its length. */
    bool read_ok;
    uint64_t bytes;
};

/* One timeline of a repository's WAL archive, as the WAL scope listed it. */
struct verify_tl {
    timeline_t tli;
    struct verify_seg *segs; /* complete segments, ascending */
    size_t nsegs;
    struct verify_seg *partials;
    size_t npartials;
    bool has_history;
    struct timeline_history *history; /* parsed, NULL when missing or damaged */
    lsn_t *ends;                      /* where this timeline ended (children's histories) */
    size_t nends;
    bool has_hwm; /* "wal/<TLI>.hwm" is listed */
    /* Segments from need_first to need_last were required (continuity). */
    bool need_set;
    uint64_t need_first, need_last;
};

/* A WAL high-water mark a repository holds (verify_hwm.c). */
struct verify_hwm {
    timeline_t tli;
    bool damaged;    /* listed, but it could not be read: reported already */
    int64_t read_us; /* when it was read (this host's clock) */
    struct repo_wal_hwm m;
};

struct verify_counts {
    uint64_t objects;  /* objects read and checked */
    uint64_t bytes;    /* plaintext bytes read */
    uint64_t segments; /* complete segments decoded */
    uint64_t partials;
    uint64_t histories;
    uint64_t indexes;       /* time indexes compared with their segment */
    uint64_t without_index; /* segments archived without a time index */
    uint64_t backups;       /* backups whose manifest was read */
    uint64_t files;         /* backup files whose SHA-256 was recomputed */
    uint64_t chunks;        /* distinct chunks read */
    uint64_t hwms;          /* WAL high-water marks read */
};

struct verify_run {
    int jobs;             /* worker threads */
    int64_t since_us;     /* --days: objects newer than this; 0 = everything */
    const char *backup;   /* --backup LABEL, or NULL */
    bool repair_index;    /* --repair-index */
    bool quarantine;      /* move a damaged chunk aside (not --no-quarantine) */
    char run_label[32];   /* this run's start, names its quarantine folder */
    pthread_mutex_t lock; /* guards problems and counts */
    struct verify_problem *problems;
    size_t nproblems;
};

struct verify_repo {
    size_t index;
    const char *name;
    const char *cluster; /* the folder under the storage root */
    struct repo *repo;
    struct verify_counts counts; /* guarded by the run's lock */
    /* Every folder under backups/ (listed once, before the scopes run). */
    struct ops_backup *backups;
    size_t nbackups;
    /* WAL continuity starts at the oldest backup's start segment when there is one. */
    bool have_floor;
    timeline_t floor_tli;
    uint64_t floor_segno;
    /* For the comparisons across repositories once all are verified (verify_hwm.c). */
    bool wal_listed; /* the WAL scope listed this repository's archive */
    uint64_t seg_size;
    struct verify_hwm *hwms; /* the marks it holds, one per timeline */
    size_t nhwms;
    /* The receiver's record of the last mark it wrote there, read before any repository
     * (a record is written after its mark, so it can only be behind a mark read later). */
    char *record_path;
    char *record_text; /* NULL when there is none */
    size_t record_len;
    /* Complete segments archived without a time index (guarded by the run's lock). */
    char (*unindexed)[WAL_NAME_BUFLEN];
    size_t nunindexed;
    size_t repaired; /* of those, indexed again by --repair-index */
    /* Its data keys and how many objects each protects (encrypted repositories, without
     * --backup); objects naming a key repo.json does not hold. */
    struct repo_data_key *keys;
    size_t nkeys;
    uint64_t unknown_key;
    /* Chunks found damaged or missing (verify_damage.c; guarded by the run's lock while
     * the backups scope runs). */
    struct verify_bad_chunk *bad;
    size_t nbad;
    struct chunkset *bad_set;  /* their names */
    struct chunkset *reported; /* (backup, file) pairs a chunk problem names already */
    struct chunkset *present;  /* every chunk the repository holds (NULL: not listed) */
    const uint8_t *name_key;   /* its chunk naming key (NULL: SHA-256 names) */
    uint8_t name_key_copy[32];
    char *newest_intact;  /* the newest backup no problem concerns, or NULL */
    bool backup_problems; /* a problem concerns one of its backups */
};

enum verify_bad_kind {
    VERIFY_BAD_MISSING,    /* named by a manifest, not in the repository */
    VERIFY_BAD_DAMAGED,    /* read, and its content is not what its name says */
    VERIFY_BAD_UNREADABLE, /* could not be read for another reason (not moved aside) */
};

/* A chunk a repository lacks or holds damaged. */
struct verify_bad_chunk {
    uint8_t raw[SHA256_LEN];
    enum verify_bad_kind kind;
    char *error;    /* what reading it said, or NULL */
    char **backups; /* every backup whose manifest names it, by label */
    size_t nbackups;
    char *quarantined;    /* where it was moved (relative to the cluster folder), or NULL */
    const char **good_in; /* repositories of the cluster holding it sound */
    size_t ngood;
};

/* Where a problem is; NULL or 0 fields are not shown. */
struct verify_where {
    const char *kind;
    const char *object;
    const char *segment;
    timeline_t tli;
    const char *backup;
    const char *file;
    const char *chunk;
};

/* Record a problem (thread-safe). object, segment may be NULL. */
void verify_problem(struct verify_run *v, struct verify_repo *vr, const char *kind,
                    const char *object, const char *segment, timeline_t tli, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Record a problem at w (thread-safe). */
void verify_problem_at(struct verify_run *v, struct verify_repo *vr, const struct verify_where *w,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Record the current error as a problem at w and clear it. */
void verify_problem_err_at(struct verify_run *v, struct verify_repo *vr,
                           const struct verify_where *w);
/* Record the current error as a problem and clear it. */
void verify_problem_err(struct verify_run *v, struct verify_repo *vr, const char *kind,
                        const char *object, const char *segment, timeline_t tli);
/* Note a complete segment without a time index (thread-safe). */
void verify_note_unindexed(struct verify_run *v, struct verify_repo *vr, const char *segment);
/* Add to a repository's counts (thread-safe). */
void verify_count(struct verify_run *v, struct verify_repo *vr, const struct verify_counts *add);

/* Whether segment segno of timeline tli, with suffix ("" or ".partial"), is in vr now (not as
 * listed: a receiver may have stored or removed it since). A failure to ask is a problem
 * and counts as there. */
int verify_exists_now(struct verify_run *v, struct verify_repo *vr, timeline_t tli, uint64_t segno,
                      const char *suffix);

/* Run fn(arg, i) for every i in [0, n) on up to v->jobs threads; returns when all
 * are done. fn records problems itself. */
void verify_parallel(struct verify_run *v, size_t n, void (*fn)(void *arg, size_t i), void *arg);

/* --- WAL high-water marks (verify_hwm.c) --- */

/* Hold timeline t of vr's archive to its mark, after the WAL scope read what it lists
 * (partials' lengths included): report the segments at or below the mark that are gone
 * and a partial copy shorter than it says, and keep the mark for verify_hwm_compare. */
void verify_hwm_timeline(struct verify_run *v, struct verify_repo *vr, const struct verify_tl *t);
/* Say once (info) that vr's newest timeline with WAL has no mark (an older pgark). */
void verify_hwm_absent(struct verify_repo *vr, const struct verify_tl *tls, size_t n);
/* Before any repository is read: the receiver's record of the last mark it wrote to each
 * (REPO_WAL_HWM_RECORD_PREFIX in spool_dir; none: not compared). */
void verify_hwm_read_records(struct verify_repo *repos, size_t n, const char *spool_dir);
/*
 * Once every repository is verified: hold each repository's marks to the receiver's record
 * of the last one it wrote there, and to the other repositories' marks of the same
 * timeline: a repository whose mark is behind another's and was written more than
 * grace_us before it (plus however much later the other was read), with no record of the
 * receiver to explain it, is reported.
 */
void verify_hwm_compare(struct verify_run *v, struct verify_repo *repos, size_t n,
                        int64_t grace_us);
void verify_hwm_free(struct verify_repo *vr);

/* --- damaged and missing chunks (verify_damage.c) --- */

/* Note that chunk raw is bad, as read for file of backup label (thread-safe); error: what
 * the read said (NULL for a missing chunk). */
void verify_bad_chunk(struct verify_run *v, struct verify_repo *vr, const uint8_t *raw,
                      enum verify_bad_kind kind, const char *error, const char *label,
                      const char *file);
/* Whether a chunk problem names (label, file) already; marks it (thread-safe). */
bool verify_pair_reported(struct verify_run *v, struct verify_repo *vr, const char *label,
                          const char *file);
/* Once the backups are checked: name every backup (and file) whose manifest names a bad
 * chunk, and move each damaged chunk to quarantine/ (with v->quarantine). */
void verify_damage_trace(struct verify_run *v, struct verify_repo *vr);
/* Before vr's backups are released: its newest backup that no problem concerns. */
void verify_damage_newest(struct verify_run *v, struct verify_repo *vr);
/* Once every repository is verified: which other repositories hold each bad chunk sound. */
void verify_damage_good_copies(struct verify_repo *repos, size_t n);
/* What to do, for the human report (stdout) and for --json ("damaged_chunks", and each
 * repository's "newest_intact_backup"). */
void verify_damage_print(const struct verify_repo *repos, size_t n);
json_t *verify_damage_json(const struct verify_repo *repos, size_t n);
void verify_damage_free(struct verify_repo *vr);

/* Scopes. */
int verify_backups(struct verify_run *v, struct verify_repo *vr);
int verify_wal(struct verify_run *v, struct verify_repo *vr);

#endif
