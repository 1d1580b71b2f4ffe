/*
 * walpage.h — checks every WAL page header of a byte stream before it is trusted.
 *
 * Promise: bytes fed in LSN order (any split, any size) are accepted only while
 * every page header they contain is valid for the stream: the magic of the expected
 * PostgreSQL major, no unknown info bits, xlp_pageaddr equal to the page's own LSN,
 * xlp_tli not above the stream's timeline and never decreasing, and on the first
 * page of each segment the long header's system identifier, segment size and block
 * size. All-zero pages are the padding that follows a WAL switch record and are
 * accepted up to the end of their segment. A bad header is ERR_INTEGRITY naming the
 * LSN and the field; the caller must then not write or acknowledge the bytes of that
 * call, nor those of an earlier call past walpage_vetted (a header's first bytes).
 */
#ifndef PGARK_WALPAGE_H
#define PGARK_WALPAGE_H

#include "pgark/wal.h"

#include <stddef.h>
#include <stdint.h>

/* Length of the longest page header (the long one that starts a segment). */
#define WALPAGE_MAX_HDR 40

struct walpage_checker {
    uint64_t system_identifier;
    uint64_t seg_size;
    timeline_t tli;               /* timeline being streamed */
    uint16_t magic;               /* expected xlp_magic */
    timeline_t last_tli;          /* highest xlp_tli seen */
    lsn_t pos;                    /* next LSN expected */
    uint8_t hdr[WALPAGE_MAX_HDR]; /* header bytes gathered across calls */
    size_t hdr_have;
    bool padding; /* in the zeros that follow a WAL switch, up to the segment end */
};

/* The xlp_magic (XLOG_PAGE_MAGIC) of a PostgreSQL major of pgmajor.h's range, or 0. */
uint16_t walpage_magic_for_major(int pg_major);

/* Start checking at lsn (any offset). ERR_CONFIG if the major is unsupported. */
int walpage_checker_init(struct walpage_checker *c, uint64_t system_identifier, uint64_t seg_size,
                         int pg_major, timeline_t tli, lsn_t lsn);

/* Check len bytes that start at lsn (must equal c->pos). */
int walpage_check(struct walpage_checker *c, lsn_t lsn, const uint8_t *data, size_t len);

/* End of the vetted bytes: c->pos, or the start of the page whose header was only
 * partly fed (fewer than WALPAGE_MAX_HDR bytes before c->pos). Bytes past it may
 * belong to a bad page: they must not be written or acknowledged before a later
 * call completes their header. */
lsn_t walpage_vetted(const struct walpage_checker *c);

#endif
