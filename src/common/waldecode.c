/* waldecode.c — streaming WAL record decoder (see include/pgark/waldecode.h). */
#include "pgark/waldecode.h"

#include "waldecode_int.h"

#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pgmajor.h"
#include "pgark/walpage.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int waldecode_fail(struct waldecode *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = err_setv(ERR_INTEGRITY, fmt, ap);
    va_end(ap);
    d->st = ST_FAILED;
    d->fail_kind = ERR_INTEGRITY;
    free(d->fail_msg);
    d->fail_msg = xstrdup(err_message());
    return rc;
}

static void end_of_wal(struct waldecode *d, lsn_t where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void end_of_wal(struct waldecode *d, lsn_t where, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->sum.end_reason, sizeof(d->sum.end_reason), fmt, ap);
    va_end(ap);
    d->sum.end_of_wal = true;
    d->sum.end_of_wal_lsn = where;
    d->st = ST_ENDED;
    d->in_rec = false;
}

/* ---- pages -------------------------------------------------------------------------- */

/* Long: the checks PostgreSQL's reader makes of a page header (zeroes, magic, flags,
 * address, timeline, long header), in its order and each with its message, then what the
 * continuation flag means for the record being read; both parts use the same decoded
 * fields.
 */
static int page_header(struct waldecode *d, lsn_t page)
{
    const uint8_t *h = d->phdr;
    bool first = page % d->cfg.seg_size == 0;
    size_t hdr_len = first ? LONG_PHDR : SHORT_PHDR;
    uint16_t magic = get16(h), info = get16(h + 2);
    timeline_t tli = get32(h + 4);
    lsn_t addr = get64(h + 8);
    uint32_t rem = get32(h + 16);
    lsn_t where = d->in_rec ? d->rec_lsn : page;
    char at[LSN_STRLEN], a[LSN_STRLEN];
    static const uint8_t zero[LONG_PHDR];

    if (memcmp(h, zero, hdr_len) == 0) {
        end_of_wal(d, where, "zeroed page at %s", lsn_format(page, at));
        return 0;
    }
    if (magic != d->magic)
        return waldecode_fail(d, "invalid WAL page header at %s: magic 0x%04X, expected 0x%04X",
                              lsn_format(page, at), magic, d->magic);
    if (info & ~XLP_ALL_FLAGS)
        return waldecode_fail(d, "invalid WAL page header at %s: unknown info bits 0x%04X",
                              lsn_format(page, at), info);
    if (addr != page) {
        end_of_wal(d, where, "page at %s has address %s (recycled WAL)", lsn_format(page, at),
                   lsn_format(addr, a));
        return 0;
    }
    if (tli > d->cfg.tli)
        return waldecode_fail(d,
                              "invalid WAL page header at %s: timeline %u is above the expected %u",
                              lsn_format(page, at), tli, d->cfg.tli);
    if (tli < d->last_tli)
        return waldecode_fail(d, "invalid WAL page header at %s: timeline %u goes back from %u",
                              lsn_format(page, at), tli, d->last_tli);
    if (first != ((info & XLP_LONG_HEADER) != 0))
        return waldecode_fail(d, "invalid WAL page header at %s: %s", lsn_format(page, at),
                              first ? "first page of a segment without a long header"
                                    : "long header in the middle of a segment");
    if (first) {
        uint64_t sysid = get64(h + 24);
        uint32_t seg = get32(h + 32), blck = get32(h + 36);
        if (sysid != d->cfg.system_identifier)
            return waldecode_fail(d,
                                  "invalid WAL page header at %s: system identifier %" PRIu64
                                  ", expected %" PRIu64,
                                  lsn_format(page, at), sysid, d->cfg.system_identifier);
        if (seg != d->cfg.seg_size || blck != WAL_BLCKSZ)
            return waldecode_fail(
                d,
                "invalid WAL page header at %s: segment size %u and block size %u, "
                "expected %" PRIu64 " and %d",
                lsn_format(page, at), seg, blck, d->cfg.seg_size, WAL_BLCKSZ);
    }
    d->last_tli = tli;

    bool cont = info & XLP_FIRST_IS_CONTRECORD;
    bool first_seen = !d->seen_page;
    d->seen_page = true;
    if (d->st == ST_SKIP_CONT || d->in_rec) {
        uint64_t left = d->st == ST_SKIP_CONT ? d->cont_left : d->rec_tot - d->rec_have;
        if (!cont && d->in_rec && (info & XLP_FIRST_IS_OVERWRITE_CONTRECORD)) {
            /* The server abandoned the record after a crash and wrote on. */
            d->sum.overwritten++;
            d->in_rec = false;
            return 0;
        }
        if (!cont && d->in_rec)
            return waldecode_fail(d,
                                  "invalid WAL page header at %s: no continuation flag for the "
                                  "record at %s",
                                  lsn_format(page, at), lsn_format(where, a));
        if (!cont)
            return waldecode_fail(d,
                                  "invalid WAL page header at %s: no continuation flag for the "
                                  "record continued from before %s",
                                  lsn_format(page, at), lsn_format(d->cfg.start, a));
        if (rem != left)
            return waldecode_fail(d,
                                  "invalid WAL page header at %s: continuation length %" PRIu32
                                  ", expected %" PRIu64,
                                  lsn_format(page, at), rem, left);
    } else if (cont) {
        if (!first_seen)
            return waldecode_fail(d,
                                  "invalid WAL page header at %s: continuation flag where a record "
                                  "should start",
                                  lsn_format(page, at));
        d->st = ST_SKIP_CONT;
        d->cont_left = rem;
        d->sum.skipped_bytes += rem;
    }
    return 0;
}

/* ---- the stream --------------------------------------------------------------------- */

int waldecode_new(const struct waldecode_config *cfg, struct waldecode **out)
{
    uint16_t magic = pgmajor_supported(cfg->pg_major) ? walpage_magic_for_major(cfg->pg_major) : 0;
    *out = NULL;
    if (!magic)
        return err_set(ERR_CONFIG, "PostgreSQL %d is not supported (%d to %d are)", cfg->pg_major,
                       PG_MAJOR_MIN, PG_MAJOR_MAX);
    if (cfg->seg_size < (1u << 20) || cfg->seg_size > (1u << 30) ||
        (cfg->seg_size & (cfg->seg_size - 1)))
        return err_set(ERR_CONFIG, "invalid WAL segment size %" PRIu64, cfg->seg_size);
    if (cfg->start % WAL_BLCKSZ != 0) {
        char at[LSN_STRLEN];
        return err_set(ERR_CONFIG, "WAL decoding must start at a page boundary, not at %s",
                       lsn_format(cfg->start, at));
    }
    struct waldecode *d = xcalloc(1, sizeof(*d));
    d->cfg = *cfg;
    d->magic = magic;
    d->pos = cfg->start;
    d->prev_lsn = cfg->prev_lsn;
    d->st = ST_RECORD;
    *out = d;
    return 0;
}

void waldecode_free(struct waldecode *d)
{
    if (!d)
        return;
    waldecode_summary_free(&d->sum);
    free(d->rec);
    free(d->fail_msg);
    free(d);
}

lsn_t waldecode_position(const struct waldecode *d)
{
    return d->pos;
}

const struct waldecode_summary *waldecode_summary(const struct waldecode *d)
{
    return &d->sum;
}

void waldecode_summary_free(struct waldecode_summary *s)
{
    if (!s)
        return;
    free(s->restore_points);
    s->restore_points = NULL;
    s->restore_point_count = 0;
}

void waldecode_summary_reset(struct waldecode *d)
{
    struct waldecode_summary *s = &d->sum;
    bool ended = s->end_of_wal;
    lsn_t where = s->end_of_wal_lsn;
    char reason[sizeof(s->end_reason)];
    memcpy(reason, s->end_reason, sizeof(reason));
    waldecode_summary_free(s);
    memset(s, 0, sizeof(*s));
    if (ended) {
        /* Nothing after the end was decoded; the next summary must say so too. */
        s->end_of_wal = true;
        s->end_of_wal_lsn = where;
        memcpy(s->end_reason, reason, sizeof(reason));
    }
}

static void rec_append(struct waldecode *d, const uint8_t *p, size_t n)
{
    if (d->rec_have + n > d->rec_cap) {
        size_t cap = d->rec_cap ? d->rec_cap : 8192;
        while (cap < d->rec_have + n)
            cap *= 2;
        d->rec = xrealloc(d->rec, cap);
        d->rec_cap = cap;
    }
    memcpy(d->rec + d->rec_have, p, n);
    d->rec_have += n;
}

/* Consume up to avail bytes (all inside the current page, past its header) of record data. */
static int record_bytes(struct waldecode *d, const uint8_t *p, size_t avail, size_t *used)
{
    char at[LSN_STRLEN];
    *used = 0;
    if (!d->in_rec) {
        if (d->pos % 8) { /* alignment padding between records */
            *used = 8 - d->pos % 8 < avail ? 8 - d->pos % 8 : avail;
            return 0;
        }
        if (avail >= 4) {
            uint32_t tot = get32(p);
            if (tot == 0) {
                end_of_wal(d, d->pos, "record length 0 at %s", lsn_format(d->pos, at));
                return 0;
            }
            if (tot >= REC_HDR && tot <= avail) { /* whole record in place: no copy */
                *used = tot;
                return waldecode_record_done(d, d->pos, p, tot, d->pos + tot);
            }
        }
        d->in_rec = true;
        d->rec_lsn = d->pos;
        d->rec_have = 0;
    }
    size_t need;
    if (d->rec_have < 4)
        need = 4 - d->rec_have;
    else if (d->rec_have < REC_HDR)
        need = REC_HDR - d->rec_have;
    else
        need = d->rec_tot - d->rec_have;
    size_t n = need < avail ? need : avail;
    size_t before = d->rec_have;
    rec_append(d, p, n);
    *used = n;
    if (before < 4 && d->rec_have >= 4) {
        d->rec_tot = get32(d->rec);
        if (d->rec_tot == 0) {
            end_of_wal(d, d->rec_lsn, "record length 0 at %s", lsn_format(d->rec_lsn, at));
            return 0;
        }
        int rc = waldecode_check_length(d, d->rec_lsn, d->rec_tot);
        if (rc < 0)
            return rc;
    }
    if (before < REC_HDR && d->rec_have == REC_HDR) {
        int rc = waldecode_check_prev(d, d->rec_lsn, d->rec);
        if (rc < 0)
            return rc;
    }
    if (d->rec_have >= REC_HDR && d->rec_have == d->rec_tot) {
        d->in_rec = false;
        int rc = waldecode_record_done(d, d->rec_lsn, d->rec, d->rec_tot, d->pos + n);
        if (d->rec_cap > (16u << 20)) { /* keep memory flat after a huge record */
            free(d->rec);
            d->rec = NULL;
            d->rec_cap = 0;
        }
        return rc;
    }
    return 0;
}

int waldecode_feed(struct waldecode *d, const uint8_t *data, size_t len)
{
    if (d->st == ST_FAILED)
        return err_set(d->fail_kind, "%s", d->fail_msg);
    while (len > 0) {
        if (d->st == ST_ENDED) {
            d->pos += len;
            break;
        }
        lsn_t page = d->pos - d->pos % WAL_BLCKSZ;
        size_t in_page = (size_t)(d->pos - page);
        size_t used = 0;
        int rc = 0;
        if (d->st == ST_SWITCH_PAD) {
            uint64_t to_end = d->cfg.seg_size - d->pos % d->cfg.seg_size;
            used = to_end < len ? (size_t)to_end : len;
            if (used == to_end)
                d->st = ST_RECORD;
            goto next;
        }
        size_t hdr_len = page % d->cfg.seg_size == 0 ? LONG_PHDR : SHORT_PHDR;
        if (in_page < hdr_len) {
            used = hdr_len - in_page < len ? hdr_len - in_page : len;
            memcpy(d->phdr + in_page, data, used);
            if (in_page + used == hdr_len)
                rc = page_header(d, page);
            goto next;
        }
        size_t avail = (size_t)(page + WAL_BLCKSZ - d->pos);
        if (avail > len)
            avail = len;
        if (d->st == ST_SKIP_CONT) {
            used = d->cont_left < avail ? (size_t)d->cont_left : avail;
            d->cont_left -= used;
            if (d->cont_left == 0)
                d->st = ST_RECORD;
        } else {
            rc = record_bytes(d, data, avail, &used);
        }
    next:
        if (rc < 0)
            return rc;
        d->pos += used;
        data += used;
        len -= used;
    }
    return 0;
}

int waldecode_segment(const uint8_t *seg, size_t len, const struct waldecode_config *cfg,
                      struct waldecode_summary *out)
{
    struct waldecode *d = NULL;
    memset(out, 0, sizeof(*out));
    int rc = waldecode_new(cfg, &d);
    if (rc < 0)
        goto out;
    if (cfg->start % cfg->seg_size != 0) {
        char at[LSN_STRLEN];
        rc = err_set(ERR_CONFIG, "segment decoding must start at a segment boundary, not at %s",
                     lsn_format(cfg->start, at));
        goto out;
    }
    if (len > cfg->seg_size) {
        rc = err_set(ERR_INTEGRITY, "WAL segment has %zu bytes, more than its size %" PRIu64, len,
                     cfg->seg_size);
        goto out;
    }
    rc = waldecode_feed(d, seg, len);
    *out = d->sum; /* hand the restore points over */
    memset(&d->sum, 0, sizeof(d->sum));
out:
    waldecode_free(d);
    return rc;
}
