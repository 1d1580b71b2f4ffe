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

#include "pgark/repo.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct verify_problem {
    size_t repo_index; /* order of the repository in the cluster's list */
    char *repo;
    char *kind;     /* "missing", "damaged", "wal", "index", "history", "timeline", "repository" */
    char *object;   /* path in the repository (relative to the cluster folder), or NULL */
    char *segment;  /* WAL segment name, or NULL */
    char *backup;   /* backup label, or NULL */
    char *file;     /* a backup's file (path in the data directory), or NULL */
    char *chunk;    /* a chunk's name, or NULL */
    timeline_t tli; /* 0 when none */
    char *message;
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
};

struct verify_run {
    int jobs;             /* worker threads */
    int64_t since_us;     /* --days: objects newer than this; 0 = everything */
    const char *backup;   /* --backup LABEL, or NULL */
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
/* Add to a repository's counts (thread-safe). */
void verify_count(struct verify_run *v, struct verify_repo *vr, const struct verify_counts *add);

/* Run fn(arg, i) for every i in [0, n) on up to v->jobs threads; returns when all
 * are done. fn records problems itself. */
void verify_parallel(struct verify_run *v, size_t n, void (*fn)(void *arg, size_t i), void *arg);

/* Scopes. */
int verify_backups(struct verify_run *v, struct verify_repo *vr);
int verify_wal(struct verify_run *v, struct verify_repo *vr);

#endif
