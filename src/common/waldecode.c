/* waldecode.c — streaming WAL record decoder (see include/pgark/waldecode.h). */
#include "pgark/waldecode.h"

#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pgmajor.h"
#include "pgark/walpage.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Page header (see PROTOCOL.md section 4). */
#define SHORT_PHDR 24
#define LONG_PHDR 40
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define XLP_FIRST_IS_OVERWRITE_CONTRECORD 0x0008
#define XLP_ALL_FLAGS 0x000F

/* XLogRecord: xl_tot_len @0, xl_xid @4, xl_prev @8, xl_info @16, xl_rmid @17, xl_crc @20. */
#define REC_HDR 24
#define REC_CRC_OFF 20
/* No record can be larger than PostgreSQL's largest allocation. */
#define REC_MAX 0x3FFFFFFFu

/* Record body layout. */
#define XLR_MAX_BLOCK_ID 32
#define XLR_BLOCK_ID_DATA_SHORT 255
#define XLR_BLOCK_ID_DATA_LONG 254
#define XLR_BLOCK_ID_ORIGIN 253
#define XLR_BLOCK_ID_TOPLEVEL_XID 252
#define BKPBLOCK_HAS_IMAGE 0x10
#define BKPBLOCK_HAS_DATA 0x20
#define BKPBLOCK_SAME_REL 0x80
#define BKPIMAGE_HAS_HOLE 0x01
#define BKPIMAGE_COMPRESSED_13 0x02 /* 13, 14: IS_COMPRESSED */
#define BKPIMAGE_COMPRESSED_15 0x1C /* 15+: PGLZ | LZ4 | ZSTD */
#define RELFILENODE_SIZE 12         /* RelFileNode / RelFileLocator */

/* Resource managers and their record kinds. */
#define RM_XLOG_ID 0
#define RM_XACT_ID 1
#define XLOG_SWITCH 0x40
#define XLOG_RESTORE_POINT 0x70
#define XLOG_XACT_COMMIT 0x00
#define XLOG_XACT_PREPARE 0x10
#define XLOG_XACT_ABORT 0x20
#define XLOG_XACT_COMMIT_PREPARED 0x30
#define XLOG_XACT_ABORT_PREPARED 0x40
#define XLOG_XACT_OPMASK 0x70
#define XLOG_XACT_HAS_INFO 0x80
#define XACT_XINFO_HAS_DBINFO (1u << 0)
#define XACT_XINFO_HAS_SUBXACTS (1u << 1)
#define XACT_XINFO_HAS_RELFILENODES (1u << 2)
#define XACT_XINFO_HAS_INVALS (1u << 3)
#define XACT_XINFO_HAS_TWOPHASE (1u << 4)
#define XACT_XINFO_HAS_ORIGIN (1u << 5)
#define XACT_XINFO_HAS_GID (1u << 7)
#define XACT_XINFO_HAS_DROPPED_STATS (1u << 8) /* 15+ */
#define INVAL_MSG_SIZE 16                      /* SharedInvalidationMessage */
/* xl_xact_stats_item: kind, dboid, objoid (15..17); 18 made the object id 64 bits
 * (objid_lo, objid_hi) */
#define STATS_ITEM_SIZE_15 12
#define STATS_ITEM_SIZE_18 16
#define RESTORE_POINT_SIZE (8 + WALDECODE_RP_NAME_MAX)

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)

enum state {
    ST_RECORD,     /* at or inside a record */
    ST_SKIP_CONT,  /* skipping the rest of a record that began before the start */
    ST_SWITCH_PAD, /* after a switch record: the rest of the segment is padding */
    ST_ENDED,      /* end of valid WAL found: ignore the rest */
    ST_FAILED,
};

struct waldecode {
    struct waldecode_config cfg;
    uint16_t magic;
    enum state st;
    lsn_t pos; /* LSN of the next byte */
    uint8_t phdr[LONG_PHDR];
    bool seen_page;
    timeline_t last_tli;
    uint64_t cont_left; /* ST_SKIP_CONT */
    /* record being reassembled across pages (in_rec) */
    bool in_rec;
    lsn_t rec_lsn;
    uint32_t rec_tot; /* valid once rec_have >= 4 */
    uint8_t *rec;
    size_t rec_have, rec_cap;
    lsn_t prev_lsn; /* start of the last complete record */
    enum err_kind fail_kind;
    char *fail_msg;
    struct waldecode_summary sum;
};

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

static int fail(struct waldecode *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct waldecode *d, const char *fmt, ...)
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

/* ---- record contents ---------------------------------------------------------------- */

/* Bounds-checked reader over a record's main data. */
struct cursor {
    const uint8_t *p, *end;
    bool bad;
};

static const uint8_t *take(struct cursor *c, uint64_t n)
{
    if (c->bad || (uint64_t)(c->end - c->p) < n) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *at = c->p;
    c->p += n;
    return at;
}

/* Skip an array of "int count; item[count]". */
static void skip_array(struct cursor *c, uint64_t item_size)
{
    const uint8_t *n = take(c, 4);
    if (!n)
        return;
    int32_t count = (int32_t)get32(n);
    if (count < 0) {
        c->bad = true;
        return;
    }
    take(c, (uint64_t)count * item_size);
}

/* Commit and abort main data: xl_xact_commit/abort (xact_time) then the optional parts
 * that xinfo announces, in PostgreSQL's order. */
static bool parse_xact(const struct waldecode *d, uint8_t info, bool commit, const uint8_t *main,
                       size_t len, struct waldecode_event *ev)
{
    struct cursor c = {main, main + len, false};
    const uint8_t *p = take(&c, 8);
    uint32_t xinfo = 0;
    if (!p)
        return false;
    ev->time = (int64_t)get64(p);
    if (info & XLOG_XACT_HAS_INFO) {
        p = take(&c, 4);
        if (!p)
            return false;
        xinfo = get32(p);
    }
    if (xinfo & XACT_XINFO_HAS_DBINFO)
        take(&c, 8);
    if (xinfo & XACT_XINFO_HAS_SUBXACTS)
        skip_array(&c, 4);
    if (xinfo & XACT_XINFO_HAS_RELFILENODES)
        skip_array(&c, RELFILENODE_SIZE);
    if (d->cfg.pg_major >= 15 && (xinfo & XACT_XINFO_HAS_DROPPED_STATS))
        skip_array(&c, d->cfg.pg_major >= 18 ? STATS_ITEM_SIZE_18 : STATS_ITEM_SIZE_15);
    if (commit && (xinfo & XACT_XINFO_HAS_INVALS))
        skip_array(&c, INVAL_MSG_SIZE);
    if (xinfo & XACT_XINFO_HAS_TWOPHASE) {
        p = take(&c, 4);
        if (!p)
            return false;
        ev->xid = get32(p);
        if (xinfo & XACT_XINFO_HAS_GID) {
            size_t left = (size_t)(c.end - c.p);
            if (!memchr(c.p, 0, left))
                return false;
            ev->name = (const char *)c.p;
            c.p += strlen(ev->name) + 1;
        }
    }
    if (xinfo & XACT_XINFO_HAS_ORIGIN)
        take(&c, 16);
    return !c.bad;
}

/* Walk the block headers to find the main data, checking that the declared lengths add
 * up to the record's. */
static int find_main_data(struct waldecode *d, lsn_t lsn, const uint8_t *r, uint32_t tot,
                          const uint8_t **main, uint32_t *main_len)
{
    struct cursor c = {r + REC_HDR, r + tot, false};
    uint64_t datatotal = 0;
    uint32_t mlen = 0;
    int last_block = -1;
    bool have_rel = false;
    uint8_t compressed = d->cfg.pg_major >= 15 ? BKPIMAGE_COMPRESSED_15 : BKPIMAGE_COMPRESSED_13;
    char at[LSN_STRLEN];
    const char *why = NULL;

    /* a header cut short sets c.bad: stop there (take gives NULL from then on) */
    while (!c.bad && (uint64_t)(c.end - c.p) > datatotal) {
        uint8_t id = *take(&c, 1);
        const uint8_t *p;
        if (id == XLR_BLOCK_ID_DATA_SHORT || id == XLR_BLOCK_ID_DATA_LONG) {
            p = take(&c, id == XLR_BLOCK_ID_DATA_SHORT ? 1 : 4);
            if (p) {
                mlen = id == XLR_BLOCK_ID_DATA_SHORT ? p[0] : get32(p);
                datatotal += mlen;
            }
            break; /* the main data header is always the last */
        } else if (id == XLR_BLOCK_ID_ORIGIN) {
            take(&c, 2);
        } else if (id == XLR_BLOCK_ID_TOPLEVEL_XID) {
            take(&c, 4);
        } else if (id <= XLR_MAX_BLOCK_ID) {
            if ((int)id <= last_block) {
                why = "block references out of order";
                goto out;
            }
            last_block = id;
            p = take(&c, 3);
            if (!p)
                break;
            uint8_t flags = p[0];
            uint16_t data_len = get16(p + 1);
            if (((flags & BKPBLOCK_HAS_DATA) != 0) != (data_len != 0)) {
                why = "block data length disagrees with its flag";
                goto out;
            }
            datatotal += data_len;
            if (flags & BKPBLOCK_HAS_IMAGE) {
                p = take(&c, 5);
                if (!p)
                    break;
                datatotal += get16(p);
                if ((p[4] & BKPIMAGE_HAS_HOLE) && (p[4] & compressed))
                    take(&c, 2);
            }
            if (!(flags & BKPBLOCK_SAME_REL)) {
                take(&c, RELFILENODE_SIZE);
                have_rel = true;
            } else if (!have_rel) {
                why = "block refers to a previous relation that does not exist";
                goto out;
            }
            take(&c, 4);
        } else {
            why = "invalid block id";
            goto out;
        }
    }
    if (c.bad || (uint64_t)(c.end - c.p) != datatotal)
        why = "block and data lengths do not add up to the record length";
out:
    if (why)
        return fail(d, "invalid WAL record at %s: %s", lsn_format(lsn, at), why);
    *main_len = mlen;
    *main = r + tot - mlen;
    return 0;
}

static void note_xact(struct waldecode_xact *first, struct waldecode_xact *last, uint64_t *count,
                      const struct waldecode_event *ev)
{
    struct waldecode_xact x = {ev->lsn, ev->end_lsn, ev->time, ev->xid};
    if ((*count)++ == 0)
        *first = x;
    *last = x;
}

static void emit(struct waldecode *d, const struct waldecode_event *ev)
{
    struct waldecode_summary *s = &d->sum;
    switch (ev->kind) {
    case WALDECODE_COMMIT:
        note_xact(&s->first_commit, &s->last_commit, &s->commits, ev);
        break;
    case WALDECODE_ABORT:
        note_xact(&s->first_abort, &s->last_abort, &s->aborts, ev);
        break;
    case WALDECODE_PREPARE:
        s->prepares++;
        break;
    case WALDECODE_RESTORE_POINT: {
        s->restore_points =
            xrealloc(s->restore_points, (s->restore_point_count + 1) * sizeof(*s->restore_points));
        struct waldecode_restore_point *rp = &s->restore_points[s->restore_point_count++];
        rp->lsn = ev->lsn;
        rp->end_lsn = ev->end_lsn;
        rp->time = ev->time;
        snprintf(rp->name, sizeof(rp->name), "%s", ev->name);
        break;
    }
    case WALDECODE_SWITCH:
        s->switch_seen = true;
        s->switch_lsn = ev->lsn;
        break;
    }
    if (d->cfg.on_event)
        d->cfg.on_event(d->cfg.arg, ev);
}

static int check_length(struct waldecode *d, lsn_t lsn, uint32_t tot)
{
    char at[LSN_STRLEN];
    if (tot < REC_HDR || tot > REC_MAX)
        return fail(d, "invalid WAL record at %s: length %" PRIu32, lsn_format(lsn, at), tot);
    return 0;
}

static int check_prev(struct waldecode *d, lsn_t lsn, const uint8_t *hdr)
{
    lsn_t prev = get64(hdr + 8);
    if (d->prev_lsn != LSN_INVALID && prev != d->prev_lsn) {
        char at[LSN_STRLEN], a[LSN_STRLEN], b[LSN_STRLEN];
        return fail(d, "invalid WAL record at %s: previous record pointer %s, expected %s",
                    lsn_format(lsn, at), lsn_format(prev, a), lsn_format(d->prev_lsn, b));
    }
    return 0;
}

/* A whole record r of tot bytes that started at lsn and ended just before end. */
static int record_done(struct waldecode *d, lsn_t lsn, const uint8_t *r, uint32_t tot, lsn_t end)
{
    char at[LSN_STRLEN];
    int rc = check_length(d, lsn, tot);
    if (rc < 0)
        return rc;
    rc = check_prev(d, lsn, r);
    if (rc < 0)
        return rc;
    uint32_t crc = crc32c_update(CRC32C_INIT, r + REC_HDR, tot - REC_HDR);
    crc = crc32c_final(crc32c_update(crc, r, REC_CRC_OFF));
    if (crc != get32(r + REC_CRC_OFF))
        return fail(d, "invalid WAL record at %s: checksum mismatch (stored %08X, computed %08X)",
                    lsn_format(lsn, at), get32(r + REC_CRC_OFF), crc);
    const uint8_t *main = NULL;
    uint32_t main_len = 0;
    rc = find_main_data(d, lsn, r, tot, &main, &main_len);
    if (rc < 0)
        return rc;

    struct waldecode_summary *s = &d->sum;
    if (s->records++ == 0)
        s->first_lsn = lsn;
    s->last_lsn = lsn;
    s->last_end_lsn = ALIGN8(end);
    d->prev_lsn = lsn;

    uint8_t info = r[16], rmid = r[17];
    struct waldecode_event ev = {.lsn = lsn, .end_lsn = ALIGN8(end), .xid = get32(r + 4)};
    const char *bad = NULL;
    if (rmid == RM_XLOG_ID && (info & 0xF0) == XLOG_SWITCH) {
        ev.kind = WALDECODE_SWITCH;
        if (end % d->cfg.seg_size != 0) {
            ev.end_lsn = (end / d->cfg.seg_size + 1) * d->cfg.seg_size;
            d->st = ST_SWITCH_PAD;
        }
        s->last_end_lsn = ev.end_lsn;
        emit(d, &ev);
    } else if (rmid == RM_XLOG_ID && (info & 0xF0) == XLOG_RESTORE_POINT) {
        char name[WALDECODE_RP_NAME_MAX];
        if (main_len < RESTORE_POINT_SIZE) {
            bad = "restore point";
        } else {
            ev.kind = WALDECODE_RESTORE_POINT;
            ev.time = (int64_t)get64(main);
            memcpy(name, main + 8, sizeof(name));
            name[sizeof(name) - 1] = '\0';
            ev.name = name;
            emit(d, &ev);
        }
    } else if (rmid == RM_XACT_ID) {
        uint8_t op = info & XLOG_XACT_OPMASK;
        bool commit = op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED;
        if (commit || op == XLOG_XACT_ABORT || op == XLOG_XACT_ABORT_PREPARED) {
            ev.kind = commit ? WALDECODE_COMMIT : WALDECODE_ABORT;
            ev.prepared = op == XLOG_XACT_COMMIT_PREPARED || op == XLOG_XACT_ABORT_PREPARED;
            if (!parse_xact(d, info, commit, main, main_len, &ev))
                bad = commit ? "commit" : "abort";
            else
                emit(d, &ev);
        } else if (op == XLOG_XACT_PREPARE) {
            /* TwoPhaseFileHeader: magic, total_len, xid, database, prepared_at. */
            if (main_len < 24) {
                bad = "prepare";
            } else {
                ev.kind = WALDECODE_PREPARE;
                ev.xid = get32(main + 8);
                ev.time = (int64_t)get64(main + 16);
                emit(d, &ev);
            }
        }
    }
    if (bad)
        return fail(
            d, "invalid WAL record at %s: malformed %s record (%" PRIu32 " bytes of main data)",
            lsn_format(lsn, at), bad, main_len);
    return 0;
}

/* ---- pages -------------------------------------------------------------------------- */

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
        return fail(d, "invalid WAL page header at %s: magic 0x%04X, expected 0x%04X",
                    lsn_format(page, at), magic, d->magic);
    if (info & ~XLP_ALL_FLAGS)
        return fail(d, "invalid WAL page header at %s: unknown info bits 0x%04X",
                    lsn_format(page, at), info);
    if (addr != page) {
        end_of_wal(d, where, "page at %s has address %s (recycled WAL)", lsn_format(page, at),
                   lsn_format(addr, a));
        return 0;
    }
    if (tli > d->cfg.tli)
        return fail(d, "invalid WAL page header at %s: timeline %u is above the expected %u",
                    lsn_format(page, at), tli, d->cfg.tli);
    if (tli < d->last_tli)
        return fail(d, "invalid WAL page header at %s: timeline %u goes back from %u",
                    lsn_format(page, at), tli, d->last_tli);
    if (first != ((info & XLP_LONG_HEADER) != 0))
        return fail(d, "invalid WAL page header at %s: %s", lsn_format(page, at),
                    first ? "first page of a segment without a long header"
                          : "long header in the middle of a segment");
    if (first) {
        uint64_t sysid = get64(h + 24);
        uint32_t seg = get32(h + 32), blck = get32(h + 36);
        if (sysid != d->cfg.system_identifier)
            return fail(d,
                        "invalid WAL page header at %s: system identifier %" PRIu64
                        ", expected %" PRIu64,
                        lsn_format(page, at), sysid, d->cfg.system_identifier);
        if (seg != d->cfg.seg_size || blck != WAL_BLCKSZ)
            return fail(d,
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
            return fail(d,
                        "invalid WAL page header at %s: no continuation flag for the "
                        "record at %s",
                        lsn_format(page, at), lsn_format(where, a));
        if (!cont)
            return fail(d,
                        "invalid WAL page header at %s: no continuation flag for the "
                        "record continued from before %s",
                        lsn_format(page, at), lsn_format(d->cfg.start, a));
        if (rem != left)
            return fail(d,
                        "invalid WAL page header at %s: continuation length %" PRIu32
                        ", expected %" PRIu64,
                        lsn_format(page, at), rem, left);
    } else if (cont) {
        if (!first_seen)
            return fail(d,
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
                return record_done(d, d->pos, p, tot, d->pos + tot);
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
        int rc = check_length(d, d->rec_lsn, d->rec_tot);
        if (rc < 0)
            return rc;
    }
    if (before < REC_HDR && d->rec_have == REC_HDR) {
        int rc = check_prev(d, d->rec_lsn, d->rec);
        if (rc < 0)
            return rc;
    }
    if (d->rec_have >= REC_HDR && d->rec_have == d->rec_tot) {
        d->in_rec = false;
        int rc = record_done(d, d->rec_lsn, d->rec, d->rec_tot, d->pos + n);
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
