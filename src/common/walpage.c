/* walpage.c — WAL page header checks on a stream (see include/pgark/walpage.h). */
#include "pgark/walpage.h"

#include "pgark/error.h"
#include "pgark/pgmajor.h"

#include <stdio.h>
#include <string.h>

#define SHORT_HDR 24
#define LONG_HDR WALPAGE_MAX_HDR
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define XLP_BKP_REMOVABLE 0x0004
#define XLP_FIRST_IS_OVERWRITE_CONTRECORD 0x0008
#define XLP_ALL_FLAGS 0x000F

/* WAL is in the server's byte order; pgark only supports little-endian hosts talking to
 * little-endian servers (WAL is not portable across endianness anyway). */
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

uint16_t walpage_magic_for_major(int pg_major)
{
    switch (pg_major) {
    case 13:
        return 0xD106;
    case 14:
        return 0xD10D;
    case 15:
        return 0xD110;
    case 16:
        return 0xD113;
    case 17:
        return 0xD116;
    case 18:
        return 0xD118;
    default:
        return 0;
    }
}

int walpage_checker_init(struct walpage_checker *c, uint64_t system_identifier, uint64_t seg_size,
                         int pg_major, timeline_t tli, lsn_t lsn)
{
    memset(c, 0, sizeof(*c));
    c->magic = pgmajor_supported(pg_major) ? walpage_magic_for_major(pg_major) : 0;
    if (!c->magic)
        return err_set(ERR_CONFIG, "PostgreSQL %d is not supported (%d to %d are)", pg_major,
                       PG_MAJOR_MIN, PG_MAJOR_MAX);
    c->system_identifier = system_identifier;
    c->seg_size = seg_size;
    c->tli = tli;
    c->pos = lsn;
    return 0;
}

static int bad(lsn_t page, const char *what)
{
    char text[LSN_STRLEN];
    return err_set(ERR_INTEGRITY, "invalid WAL page header at %s: %s", lsn_format(page, text),
                   what);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i])
            return false;
    }
    return true;
}

static int check_header(struct walpage_checker *c, lsn_t page)
{
    const uint8_t *h = c->hdr;
    bool first_page = page % c->seg_size == 0;

    /* After an XLOG_SWITCH record the rest of the segment is zeros, headers included. */
    if (!first_page && all_zero(h, SHORT_HDR)) {
        c->padding = true;
        return 0;
    }
    if (c->padding && !first_page)
        return bad(page, "page header after the zero padding that ends a segment");
    c->padding = false;
    char text[160];
    uint16_t magic = get16(h);
    uint16_t info = get16(h + 2);
    timeline_t tli = get32(h + 4);
    lsn_t addr = get64(h + 8);
    bool first = first_page;

    if (magic != c->magic) {
        snprintf(text, sizeof(text), "magic 0x%04X, expected 0x%04X", magic, c->magic);
        return bad(page, text);
    }
    if (info & ~XLP_ALL_FLAGS) {
        snprintf(text, sizeof(text), "unknown info bits 0x%04X", info);
        return bad(page, text);
    }
    if (addr != page) {
        char a[LSN_STRLEN];
        snprintf(text, sizeof(text), "page address %s does not match its position",
                 lsn_format(addr, a));
        return bad(page, text);
    }
    if (tli > c->tli) {
        snprintf(text, sizeof(text), "timeline %u is above the streamed timeline %u", tli, c->tli);
        return bad(page, text);
    }
    if (tli < c->last_tli) {
        snprintf(text, sizeof(text), "timeline %u goes back from %u", tli, c->last_tli);
        return bad(page, text);
    }
    if (first != ((info & XLP_LONG_HEADER) != 0))
        return bad(page, first ? "first page of a segment without a long header"
                               : "long header in the middle of a segment");
    if (first) {
        uint64_t sysid = get64(h + 24);
        uint32_t seg = get32(h + 32), blck = get32(h + 36);
        if (sysid != c->system_identifier) {
            snprintf(text, sizeof(text), "system identifier %llu, expected %llu",
                     (unsigned long long)sysid, (unsigned long long)c->system_identifier);
            return bad(page, text);
        }
        if (seg != c->seg_size || blck != WAL_BLCKSZ) {
            snprintf(text, sizeof(text), "segment size %u and block size %u, expected %llu and %d",
                     seg, blck, (unsigned long long)c->seg_size, WAL_BLCKSZ);
            return bad(page, text);
        }
    }
    c->last_tli = tli;
    return 0;
}

static size_t header_len(const struct walpage_checker *c, lsn_t page)
{
    return page % c->seg_size == 0 ? LONG_HDR : SHORT_HDR;
}

lsn_t walpage_vetted(const struct walpage_checker *c)
{
    lsn_t page = c->pos - c->pos % WAL_BLCKSZ;
    return c->pos - page < header_len(c, page) ? page : c->pos;
}

int walpage_check(struct walpage_checker *c, lsn_t lsn, const uint8_t *data, size_t len)
{
    if (lsn != c->pos) {
        char a[LSN_STRLEN], b[LSN_STRLEN];
        return err_set(ERR_PROTOCOL, "WAL data starts at %s, expected %s", lsn_format(lsn, a),
                       lsn_format(c->pos, b));
    }
    size_t done = 0;
    while (done < len) {
        lsn_t here = c->pos;
        lsn_t page = here - here % WAL_BLCKSZ;
        size_t in_page = (size_t)(here - page);
        size_t hdr_len = header_len(c, page);
        size_t avail = len - done;
        if (in_page < hdr_len) {
            size_t take = hdr_len - in_page;
            if (take > avail)
                take = avail;
            memcpy(c->hdr + in_page, data + done, take);
            done += take;
            c->pos += take;
            if (in_page + take == hdr_len) {
                int rc = check_header(c, page);
                if (rc < 0) {
                    c->pos = here; /* nothing of this call is accepted */
                    return rc;
                }
            }
            continue;
        }
        /* Skip to the next page boundary or the end of the data. */
        size_t to_next = (size_t)(page + WAL_BLCKSZ - here);
        size_t step = to_next < avail ? to_next : avail;
        done += step;
        c->pos += step;
    }
    return 0;
}
