/* fuzz_waldecode.c — the WAL record decoder of verify and the time index.
 *
 * Input: one byte of mode, one of piece size, then
 *  - mode even ("raw"): the decoder's setting (major, segment size, timeline, start page,
 *    previous record) and the bytes, fed as they are: page headers, record lengths and
 *    the ends of WAL;
 *  - mode odd ("records"): records (resource manager, info, xid, a 2-byte body length,
 *    the body), which this harness lays out in pages of a 1 MiB segment with valid page
 *    headers, xl_prev links and CRCs, so that the decoder reads their bodies (block
 *    references, commit and restore point contents) instead of stopping at the CRC.
 */
#include "fuzz.h"

#include "pgark/crc32c.h"
#include "pgark/mem.h"
#include "pgark/walpage.h"
#include "pgark/waldecode.h"

#define SYSID UINT64_C(7312345678901234567)
#define REC_SEG (1024 * 1024)
#define REC_MAX_OUT (256 * 1024) /* keeps each run short */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

static void on_event(void *arg, const struct waldecode_event *ev)
{
    (void)arg;
    FUZZ_CHECK(ev->lsn < ev->end_lsn);
    if (ev->kind == WALDECODE_RESTORE_POINT)
        FUZZ_CHECK(ev->name && strlen(ev->name) < WALDECODE_RP_NAME_MAX);
    if (ev->name)
        FUZZ_CHECK(strlen(ev->name) < 1u << 30);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Lay records out from the start of segment 1 into *out (REC_MAX_OUT bytes at most). */
static size_t build(struct fuzz_in *in, int major, uint8_t *out)
{
    uint64_t start = REC_SEG;
    size_t pos = 0;    /* offset in out */
    lsn_t prev = 0;    /* xl_prev of the next record */
    uint32_t cont = 0; /* bytes of the record being laid out still to come */
    uint8_t rec[24 + 65535];
    size_t rec_len = 0, rec_off = 0;
    while (pos < REC_MAX_OUT) {
        if (pos % WAL_BLCKSZ == 0) { /* a page header */
            bool first = pos == 0;
            size_t hl = first ? 40 : 24;
            memset(out + pos, 0, hl);
            put16(out + pos, walpage_magic_for_major(major));
            put16(out + pos + 2, (uint16_t)((first ? 0x0002 : 0) | (cont ? 0x0001 : 0)));
            put32(out + pos + 4, 1);
            put64(out + pos + 8, start + pos);
            put32(out + pos + 16, cont);
            if (first) {
                put64(out + pos + 24, SYSID);
                put32(out + pos + 32, REC_SEG);
                put32(out + pos + 36, WAL_BLCKSZ);
            }
            pos += hl;
            continue;
        }
        if (rec_off == rec_len) { /* the next record */
            if (!in->n)
                break;
            pos = (pos + 7) & ~(size_t)7;
            if (pos % WAL_BLCKSZ == 0)
                continue;
            uint8_t rmid = fuzz_u8(in), info = fuzz_u8(in);
            uint32_t xid = fuzz_u32(in);
            size_t body = (size_t)fuzz_take(in, 2);
            if (body > in->n)
                body = in->n;
            rec_len = 24 + body;
            put32(rec, (uint32_t)rec_len);
            put32(rec + 4, xid);
            put64(rec + 8, prev);
            rec[16] = info;
            rec[17] = rmid;
            put16(rec + 18, 0);
            memcpy(rec + 24, in->p, body);
            in->p += body;
            in->n -= body;
            uint32_t crc = crc32c_update(CRC32C_INIT, rec + 24, body);
            put32(rec + 20, crc32c_final(crc32c_update(crc, rec, 20)));
            prev = start + pos;
            rec_off = 0;
        }
        size_t room = WAL_BLCKSZ - pos % WAL_BLCKSZ;
        size_t n = rec_len - rec_off < room ? rec_len - rec_off : room;
        if (n > REC_MAX_OUT - pos)
            n = REC_MAX_OUT - pos;
        memcpy(out + pos, rec + rec_off, n);
        pos += n;
        rec_off += n;
        cont = (uint32_t)(rec_len - rec_off);
    }
    return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    size_t step = fuzz_u8(&in);
    struct waldecode_config cfg = {.on_event = on_event};
    uint8_t *built = NULL;
    const uint8_t *wal;
    size_t len;
    if (mode & 1) {
        cfg.pg_major = 13 + mode / 2 % 5;
        cfg.seg_size = REC_SEG;
        cfg.system_identifier = SYSID;
        cfg.tli = 1;
        cfg.start = REC_SEG;
        built = xcalloc(1, REC_MAX_OUT); /* alignment padding and page ends are zeros */
        len = build(&in, cfg.pg_major, built);
        wal = built;
    } else {
        cfg.pg_major = 13 + fuzz_u8(&in) % 6;
        cfg.seg_size = UINT64_C(1) << (20 + fuzz_u8(&in) % 11);
        cfg.tli = fuzz_u32(&in);
        cfg.system_identifier = fuzz_u64(&in);
        cfg.start = fuzz_u32(&in) * (uint64_t)WAL_BLCKSZ;
        cfg.prev_lsn = fuzz_u64(&in);
        wal = in.p;
        len = in.n;
    }
    struct waldecode *d = NULL;
    if (waldecode_new(&cfg, &d) == 0) {
        int rc = 0;
        for (size_t off = 0; off < len && rc == 0;) {
            size_t n = step && len - off > step ? step * 97 % 20011 + 1 : len - off;
            if (n > len - off)
                n = len - off;
            rc = waldecode_feed(d, wal + off, n);
            off += n;
        }
        const struct waldecode_summary *s = waldecode_summary(d);
        FUZZ_CHECK(s->commits + s->aborts + s->prepares <= s->records);
        if (s->records)
            FUZZ_CHECK(s->first_lsn <= s->last_lsn && s->last_lsn < s->last_end_lsn);
        FUZZ_CHECK(s->restore_point_count <= s->records);
        if (rc == 0)
            FUZZ_CHECK(waldecode_position(d) == cfg.start + len);
        waldecode_free(d);
    }
    if (mode & 1 && cfg.pg_major != 18) {
        struct waldecode_summary sum;
        cfg.start = REC_SEG;
        waldecode_segment(wal, len, &cfg, &sum);
        waldecode_summary_free(&sum);
    }
    free(built);
    err_clear();
    return 0;
}
