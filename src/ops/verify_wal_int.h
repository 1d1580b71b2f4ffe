/* verify_wal_int.h — what the WAL archive's check (verify_wal.c) and its checks of
 * timelines (verify_wal_tl.c: history files, continuity) share. */
#ifndef PGARK_VERIFY_WAL_INT_H
#define PGARK_VERIFY_WAL_INT_H

#include "verify_int.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct seg_run;
struct partial_task;

struct wal_verify {
    struct verify_run *v;
    struct verify_repo *vr;
    uint64_t seg_size;
    size_t prefix_len;
    struct verify_tl *tls;
    size_t ntls;
    struct seg_run *runs;
    size_t nruns;
    struct partial_task *ptasks;
    size_t nptasks;
};

/* The timeline tli of w's listing, NULL when it has no WAL. */
struct verify_tl *verify_wal_tl_find(struct wal_verify *w, timeline_t tli);
/* Whether segment s is within the scope of this verify (--days). */
bool verify_wal_in_scope(const struct wal_verify *w, const struct verify_seg *s);
/* The file name of segment segno of timeline tli into buf (wal_segment_name); buf. */
char *verify_wal_seg_name(const struct wal_verify *w, timeline_t tli, uint64_t segno, char *buf);
/* Every history file parses and agrees with its parent's, every timeline above 1 with
 * WAL has one, no segment lies before its timeline's start (verify_wal_tl.c). */
void verify_wal_histories(struct wal_verify *w);
/* Per timeline, no segment missing from the first needed to the newest, across
 * timeline switches too (verify_wal_tl.c). */
void verify_wal_continuity(struct wal_verify *w);

#endif
