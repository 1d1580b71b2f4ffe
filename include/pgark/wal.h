/*
 * wal.h — LSNs, WAL segment names and timeline history files.
 *
 * Promise: pure functions, no I/O. Every valid segment size (a power of two from
 * 1 MiB to 1 GiB) is supported. Names and LSN text match PostgreSQL's own
 * (pg_walfile_name(), "%X/%X").
 */
#ifndef PGARK_WAL_H
#define PGARK_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t lsn_t;
typedef uint32_t timeline_t;

#define LSN_INVALID ((lsn_t)0)
#define LSN_STRLEN 20      /* "FFFFFFFF/FFFFFFFF" + NUL, rounded up */
#define WAL_NAME_LEN 24    /* TTTTTTTTXXXXXXXXYYYYYYYY */
#define WAL_NAME_BUFLEN 32 /* room for ".partial" and NUL */
#define WAL_BLCKSZ 8192

/* Parse "X/X" (hex, no other characters). Returns 0 or ERR_USAGE naming the text. */
int lsn_parse(const char *text, lsn_t *out);
/* Format as "%X/%X" into buf (LSN_STRLEN). Returns buf. */
char *lsn_format(lsn_t lsn, char *buf);

bool wal_seg_size_valid(uint64_t seg_size);
/* "16MB", "1GB", "64MB" (SHOW wal_segment_size) to bytes; ERR_PROTOCOL if invalid. */
int wal_seg_size_parse_show(const char *text, uint64_t *out);

static inline uint64_t lsn_to_segno(lsn_t lsn, uint64_t seg_size)
{
    return lsn / seg_size;
}
static inline lsn_t segno_to_lsn(uint64_t segno, uint64_t seg_size)
{
    return segno * seg_size;
}

/* Segment file name for (tli, segno) into buf (WAL_NAME_BUFLEN). Returns buf. */
char *wal_segment_name(timeline_t tli, uint64_t segno, uint64_t seg_size, char *buf);
/* Parse a 24-hex segment name; rejects other lengths, lowercase, non-hex, TLI 0, and
 * a low part >= segments-per-xlogid. */
int wal_segment_parse(const char *name, uint64_t seg_size, timeline_t *tli, uint64_t *segno);
bool wal_is_segment_name(const char *name); /* 24 uppercase hex */
bool wal_is_partial_name(const char *name); /* 24 hex + ".partial" */
bool wal_is_history_name(const char *name); /* 8 hex + ".history" */
/* "%08X.history" into buf (>= 16). */
char *wal_history_name(timeline_t tli, char *buf);

/* One line of a timeline history file: parent timeline and where it ended. */
struct timeline_entry {
    timeline_t tli;    /* the parent timeline */
    lsn_t switchpoint; /* first LSN not on that parent */
};

struct timeline_history {
    timeline_t tli; /* the timeline the file describes */
    size_t count;   /* ancestors, oldest first */
    struct timeline_entry *entries;
};

/* Parse the content of "%08X.history" for timeline tli. Blank and '#' lines are
 * skipped; parent TLIs must increase and be < tli, switchpoints must not decrease.
 * *out is malloc'd; free with timeline_history_free. */
int timeline_history_parse(timeline_t tli, const char *content, size_t len,
                           struct timeline_history **out);
void timeline_history_free(struct timeline_history *h);
/* The timeline that owns lsn according to history h (h->tli if past every switch). */
timeline_t timeline_history_tli_at(const struct timeline_history *h, lsn_t lsn);

#endif
