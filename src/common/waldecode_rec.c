/*
 * waldecode_rec.c — the WAL decoder's reading of one whole record (see
 * include/pgark/waldecode.h): its checks, where its main data is, transaction commits
 * and aborts, restore points and switches, and the events and summary they make. Moved
 * out of waldecode.c, which reassembles records from pages.
 */
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
        return waldecode_fail(d, "invalid WAL record at %s: %s", lsn_format(lsn, at), why);
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

int waldecode_check_length(struct waldecode *d, lsn_t lsn, uint32_t tot)
{
    char at[LSN_STRLEN];
    if (tot < REC_HDR || tot > REC_MAX)
        return waldecode_fail(d, "invalid WAL record at %s: length %" PRIu32, lsn_format(lsn, at),
                              tot);
    return 0;
}

int waldecode_check_prev(struct waldecode *d, lsn_t lsn, const uint8_t *hdr)
{
    lsn_t prev = get64(hdr + 8);
    if (d->prev_lsn != LSN_INVALID && prev != d->prev_lsn) {
        char at[LSN_STRLEN], a[LSN_STRLEN], b[LSN_STRLEN];
        return waldecode_fail(d,
                              "invalid WAL record at %s: previous record pointer %s, expected %s",
                              lsn_format(lsn, at), lsn_format(prev, a), lsn_format(d->prev_lsn, b));
    }
    return 0;
}

/* A whole record r of tot bytes that started at lsn and ended just before end. */
int waldecode_record_done(struct waldecode *d, lsn_t lsn, const uint8_t *r, uint32_t tot, lsn_t end)
{
    char at[LSN_STRLEN];
    int rc = waldecode_check_length(d, lsn, tot);
    if (rc < 0)
        return rc;
    rc = waldecode_check_prev(d, lsn, r);
    if (rc < 0)
        return rc;
    uint32_t crc = crc32c_update(CRC32C_INIT, r + REC_HDR, tot - REC_HDR);
    crc = crc32c_final(crc32c_update(crc, r, REC_CRC_OFF));
    if (crc != get32(r + REC_CRC_OFF))
        return waldecode_fail(
            d, "invalid WAL record at %s: checksum mismatch (stored %08X, computed %08X)",
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
        return waldecode_fail(
            d, "invalid WAL record at %s: malformed %s record (%" PRIu32 " bytes of main data)",
            lsn_format(lsn, at), bad, main_len);
    return 0;
}
