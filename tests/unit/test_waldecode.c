/* test_waldecode.c — WAL record decoding over real PostgreSQL 15 WAL.
 *
 * The fixture (tests/unit/data/waldecode-*.zst, made by make_waldecode_fixture.sh) is two
 * 1 MiB segments, 0/900000 to 0/B00000, of a cluster with track_commit_timestamp = on.
 * Expected values come from the server, not from this decoder: xids from txid_current(),
 * commit times from pg_xact_commit_timestamp(), the restore point's end from
 * pg_create_restore_point() and its time bracketed by clock_timestamp(); record LSNs, the
 * record count and the times of the DDL commits (730..732) and the abort from pg_waldump.
 */
#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/waldecode.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "walfixture.h"
#include <zstd.h>

#define SEG (1024 * 1024)
#define SYSID UINT64_C(7712208971608537675)
#define SEG9 UINT64_C(0x900000)
#define SEGA UINT64_C(0xA00000)
#define PREV_OF_FIRST UINT64_C(0x863CB0) /* the switch record ending segment 8 */
#define RECORDS 3134                     /* pg_waldump lines for 9 and A */
#define BIG_COMMIT UINT64_C(0x9FE878)    /* 12045 bytes, crosses into segment A */
#define BIG_MESSAGE UINT64_C(0x9520C0)   /* 704418-byte logical message */

struct expect {
    enum waldecode_event_kind kind;
    lsn_t lsn, end_lsn;
    int64_t time;
    uint32_t xid;
    bool prepared;
};

#define RP_TIME_MIN INT64_C(848953780333961)
#define RP_TIME_MAX INT64_C(848953780397839)

static const struct expect expected[] = {
    {WALDECODE_COMMIT, 0x902618, 0x902640, INT64_C(848953780246677), 725, false},
    {WALDECODE_COMMIT, 0x902688, 0x9026B0, INT64_C(848953780261698), 726, false},
    {WALDECODE_COMMIT, 0x9026F8, 0x902720, INT64_C(848953780275200), 727, false},
    {WALDECODE_COMMIT, 0x902768, 0x902790, INT64_C(848953780289719), 728, false},
    {WALDECODE_COMMIT, 0x9027D8, 0x902800, INT64_C(848953780309021), 729, false},
    {WALDECODE_RESTORE_POINT, 0x902800, 0x902868, 0, 0, false}, /* time: see RP_TIME_* */
    {WALDECODE_COMMIT, 0x91F1E0, 0x91F378, INT64_C(848953780425191), 730, false},
    {WALDECODE_COMMIT, 0x91F3B8, 0x91F3E0, INT64_C(848953780426053), 731, false},
    {WALDECODE_COMMIT, 0x91F6E8, 0x91F8C0, INT64_C(848953780426816), 732, false},
    {WALDECODE_ABORT, 0x91F908, 0x91F930, INT64_C(848953780445817), 733, false},
    {WALDECODE_PREPARE, 0x91F978, 0x91FA70, INT64_C(848953780461926), 734, false},
    {WALDECODE_COMMIT, 0x91FA70, 0x91FAA0, INT64_C(848953780473837), 734, true},
    {WALDECODE_COMMIT, BIG_COMMIT, 0xA017B0, INT64_C(848953780527547), 735, false},
    {WALDECODE_COMMIT, 0xA017F8, 0xA01820, INT64_C(848953780546087), 3736, false},
    {WALDECODE_COMMIT, 0xA01868, 0xA01890, INT64_C(848953780564230), 3737, false},
    {WALDECODE_SWITCH, 0xA01890, 0xB00000, 0, 0, false},
};
#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

static uint8_t *wal; /* segments 9 and A back to back */

static int setup(void **state)
{
    (void)state;
    wal = walfixture_load();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(wal);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

struct seen {
    size_t n;
    struct waldecode_event ev[64];
    char names[64][WALDECODE_RP_NAME_MAX];
};

static void collect(void *arg, const struct waldecode_event *ev)
{
    struct seen *s = arg;
    assert_true(s->n < 64);
    s->ev[s->n] = *ev;
    if (ev->name) {
        snprintf(s->names[s->n], WALDECODE_RP_NAME_MAX, "%s", ev->name);
        s->ev[s->n].name = s->names[s->n];
    }
    s->n++;
}

static struct waldecode_config config(lsn_t start, lsn_t prev, struct seen *seen)
{
    struct waldecode_config c = {
        .seg_size = SEG,
        .system_identifier = SYSID,
        .pg_major = 15,
        .tli = 1,
        .start = start,
        .prev_lsn = prev,
        .on_event = seen ? collect : NULL,
        .arg = seen,
    };
    return c;
}

/* Feed len bytes in pieces: step 0 = one call, else pseudo-random sizes up to step. */
static int feed(struct waldecode *d, const uint8_t *p, size_t len, size_t step)
{
    uint32_t x = 7;
    while (len) {
        size_t n = len;
        if (step) {
            x = x * 1103515245 + 12345;
            n = 1 + (x >> 8) % step;
            if (n > len)
                n = len;
        }
        int rc = waldecode_feed(d, p, n);
        if (rc < 0)
            return rc;
        p += n;
        len -= n;
    }
    return 0;
}

static void check_event(const struct waldecode_event *ev, const struct expect *e)
{
    assert_int_equal(ev->kind, e->kind);
    assert_int_equal(ev->lsn, e->lsn);
    assert_int_equal(ev->end_lsn, e->end_lsn);
    assert_int_equal(ev->xid, e->xid);
    assert_int_equal(ev->prepared, e->prepared);
    if (e->kind == WALDECODE_RESTORE_POINT) {
        assert_string_equal(ev->name, "before_drop");
        assert_true(ev->time >= RP_TIME_MIN && ev->time <= RP_TIME_MAX);
    } else {
        assert_int_equal(ev->time, e->time);
    }
}

/* Both segments as one stream, pieces of at most step bytes (0 = one call). */
static void decode_all(size_t step)
{
    struct seen seen = {0};
    struct waldecode_config c = config(SEG9, PREV_OF_FIRST, &seen);
    struct waldecode *d;
    assert_int_equal(waldecode_new(&c, &d), 0);
    assert_int_equal(feed(d, wal, 2 * SEG, step), 0);
    assert_int_equal(waldecode_position(d), SEGA + SEG);

    assert_int_equal(seen.n, NEXPECTED);
    for (size_t i = 0; i < NEXPECTED; i++)
        check_event(&seen.ev[i], &expected[i]);

    const struct waldecode_summary *s = waldecode_summary(d);
    assert_int_equal(s->records, RECORDS);
    assert_int_equal(s->first_lsn, 0x900028);
    assert_int_equal(s->last_lsn, 0xA01890);
    assert_int_equal(s->last_end_lsn, 0xB00000);
    assert_int_equal(s->commits, 12);
    assert_int_equal(s->first_commit.xid, 725);
    assert_int_equal(s->first_commit.time, INT64_C(848953780246677));
    assert_int_equal(s->first_commit.lsn, 0x902618);
    assert_int_equal(s->last_commit.xid, 3737);
    assert_int_equal(s->last_commit.time, INT64_C(848953780564230));
    assert_int_equal(s->last_commit.lsn, 0xA01868);
    assert_int_equal(s->aborts, 1);
    assert_int_equal(s->first_abort.xid, 733);
    assert_int_equal(s->last_abort.lsn, 0x91F908);
    assert_int_equal(s->prepares, 1);
    assert_int_equal(s->restore_point_count, 1);
    assert_string_equal(s->restore_points[0].name, "before_drop");
    assert_int_equal(s->restore_points[0].lsn, 0x902800);
    assert_int_equal(s->restore_points[0].end_lsn, 0x902868);
    assert_true(s->switch_seen);
    assert_int_equal(s->switch_lsn, 0xA01890);
    assert_false(s->end_of_wal);
    assert_int_equal(s->skipped_bytes, 0);
    waldecode_free(d);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    (void)state;
    const char *v = "123456789";
    assert_int_equal(crc32c_final(crc32c_update(CRC32C_INIT, v, 9)), 0xE3069283u);
    assert_int_equal(crc32c_final(crc32c_update_sw(CRC32C_INIT, v, 9)), 0xE3069283u);
    assert_int_equal(crc32c_update(CRC32C_INIT, v, 0), CRC32C_INIT);
    /* The implementations agree at every length and alignment, piecewise too. */
    if (!crc32c_hw_available())
        return;
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len < 300; len++) {
            const uint8_t *p = wal + 0x5000 + off;
            uint32_t a = crc32c_update_sw(CRC32C_INIT, p, len);
            uint32_t b = crc32c_update_hw(CRC32C_INIT, p, len);
            assert_int_equal(a, b);
            size_t cut = len / 3;
            b = crc32c_update_hw(crc32c_update_hw(CRC32C_INIT, p, cut), p + cut, len - cut);
            assert_int_equal(a, b);
        }
    assert_int_equal(crc32c_update_sw(1, wal, 2 * SEG), crc32c_update_hw(1, wal, 2 * SEG));
}

static void test_whole_stream(void **state)
{
    (void)state;
    decode_all(0);
}

static void test_one_byte_pieces(void **state)
{
    (void)state;
    decode_all(1);
}

static void test_random_pieces(void **state)
{
    (void)state;
    decode_all(9000);
    decode_all(77);
}

/* A summary per segment: the commit that crosses the boundary counts where it ends. */
static void test_summary_per_segment(void **state)
{
    (void)state;
    struct waldecode_config c = config(SEG9, PREV_OF_FIRST, NULL);
    struct waldecode *d;
    assert_int_equal(waldecode_new(&c, &d), 0);
    assert_int_equal(waldecode_feed(d, wal, SEG), 0);
    const struct waldecode_summary *s = waldecode_summary(d);
    assert_int_equal(s->commits, 9);
    assert_int_equal(s->last_commit.xid, 734);
    assert_int_equal(s->last_lsn, BIG_MESSAGE);
    assert_false(s->switch_seen);
    assert_false(s->end_of_wal);
    waldecode_summary_reset(d);
    assert_int_equal(waldecode_feed(d, wal + SEG, SEG), 0);
    assert_int_equal(s->commits, 3);
    assert_int_equal(s->first_commit.xid, 735);
    assert_int_equal(s->first_commit.lsn, BIG_COMMIT);
    assert_int_equal(s->first_lsn, BIG_COMMIT);
    assert_int_equal(s->restore_point_count, 0);
    assert_true(s->switch_seen);
    waldecode_free(d);
}

/* One segment alone: a record continued from the previous one is skipped. */
static void test_segment_alone(void **state)
{
    (void)state;
    struct waldecode_summary s;
    struct waldecode_config c = config(SEG9, LSN_INVALID, NULL);
    assert_int_equal(waldecode_segment(wal, SEG, &c, &s), 0);
    assert_int_equal(s.commits, 9);
    assert_int_equal(s.skipped_bytes, 0);
    assert_int_equal(s.restore_point_count, 1);
    assert_false(s.switch_seen);
    waldecode_summary_free(&s);

    c = config(SEGA, BIG_COMMIT, NULL);
    assert_int_equal(waldecode_segment(wal + SEG, SEG, &c, &s), 0);
    assert_int_equal(s.skipped_bytes, 12045 - (SEGA - BIG_COMMIT));
    assert_int_equal(s.first_lsn, 0xA017B0);
    assert_int_equal(s.commits, 2);
    assert_int_equal(s.first_commit.xid, 3736);
    assert_true(s.switch_seen);
    assert_false(s.end_of_wal);
    waldecode_summary_free(&s);

    /* The first record after the skipped one must point back at it. */
    c = config(SEGA, BIG_COMMIT + 8, NULL);
    assert_int_equal(waldecode_segment(wal + SEG, SEG, &c, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL record at 0/A017B0: previous record "
                                       "pointer 0/9FE878, expected 0/9FE880");
    assert_int_equal(s.records, 0);
    waldecode_summary_free(&s);
}

/* Starting inside a 700 KB record: the skip spans many pages. */
static void test_start_inside_long_record(void **state)
{
    (void)state;
    struct seen seen = {0};
    lsn_t start = BIG_MESSAGE - BIG_MESSAGE % 8192 + 8192;
    struct waldecode_config c = config(start, BIG_MESSAGE, &seen);
    struct waldecode *d;
    assert_int_equal(waldecode_new(&c, &d), 0);
    assert_int_equal(feed(d, wal + (start - SEG9), 2 * SEG - (start - SEG9), 5000), 0);
    const struct waldecode_summary *s = waldecode_summary(d);
    assert_int_equal(s->first_lsn, BIG_COMMIT);
    assert_true(s->skipped_bytes > 600000);
    assert_int_equal(seen.n, 4);
    check_event(&seen.ev[0], &expected[NEXPECTED - 4]);
    check_event(&seen.ev[3], &expected[NEXPECTED - 1]);
    waldecode_free(d);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Re-seal a record of the copy after editing it (records here do not cross pages). */
static void reseal(uint8_t *copy, lsn_t lsn)
{
    uint8_t *r = copy + (lsn - SEG9);
    uint32_t tot = r[0] | r[1] << 8 | r[2] << 16 | (uint32_t)r[3] << 24;
    uint32_t crc = crc32c_update(CRC32C_INIT, r + 24, tot - 24);
    put32(r + 20, crc32c_final(crc32c_update(crc, r, 20)));
}

/* Decode a damaged copy of both segments whole and byte by byte; both must agree. */
static int decode_copy(const uint8_t *copy, struct seen *seen, struct waldecode_summary *out)
{
    int rc = 0;
    for (int pass = 0; pass < 2; pass++) {
        memset(seen, 0, sizeof(*seen));
        struct waldecode_config c = config(SEG9, PREV_OF_FIRST, seen);
        struct waldecode *d;
        assert_int_equal(waldecode_new(&c, &d), 0);
        int r = feed(d, copy, 2 * SEG, pass ? 1 : 0);
        if (pass) {
            assert_int_equal(r, rc);
            assert_int_equal(out->records, waldecode_summary(d)->records);
            waldecode_summary_free(out);
        }
        rc = r;
        *out = *waldecode_summary(d);
        out->restore_points = NULL;
        out->restore_point_count = waldecode_summary(d)->restore_point_count;
        if (r < 0) /* the same error again on the next call */
            assert_int_equal(waldecode_feed(d, copy, 1), r);
        waldecode_free(d);
    }
    return rc;
}

static void test_flipped_byte(void **state)
{
    (void)state;
    uint8_t *copy = malloc(2 * SEG);
    struct seen seen;
    struct waldecode_summary s;
    const char *want;

    /* In a small record: the commit of xid 727. */
    memcpy(copy, wal, 2 * SEG);
    copy[0x9026F8 - SEG9 + 28] ^= 0x10;
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    want = "invalid WAL record at 0/9026F8: checksum mismatch";
    assert_memory_equal(err_message(), want, strlen(want));
    assert_int_equal(seen.n, 2); /* 725 and 726 were reported, nothing after */
    assert_int_equal(s.last_commit.xid, 726);

    /* In a record reassembled from 87 pages. */
    memcpy(copy, wal, 2 * SEG);
    copy[BIG_MESSAGE - SEG9 + 300000] ^= 0x01;
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    want = "invalid WAL record at 0/9520C0: checksum mismatch";
    assert_memory_equal(err_message(), want, strlen(want));
    assert_int_equal(s.commits, 9);

    /* In the part of the big commit that lies in the next segment. */
    memcpy(copy, wal, 2 * SEG);
    copy[SEG + 100] ^= 0x80;
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    want = "invalid WAL record at 0/9FE878: checksum mismatch";
    assert_memory_equal(err_message(), want, strlen(want));
    free(copy);
}

/* Records edited and re-sealed with a valid CRC: the decoder reads what they say. */
static void test_resealed_records(void **state)
{
    (void)state;
    uint8_t *copy = malloc(2 * SEG);
    struct seen seen;
    struct waldecode_summary s;

    /* Another commit time is reported as such. */
    memcpy(copy, wal, 2 * SEG);
    put64(copy + (0x9026F8 - SEG9) + 26, UINT64_C(123456789));
    reseal(copy, 0x9026F8);
    assert_int_equal(decode_copy(copy, &seen, &s), 0);
    assert_int_equal(seen.ev[2].xid, 727);
    assert_int_equal(seen.ev[2].time, 123456789);

    /* A main data length that does not match the record length. */
    memcpy(copy, wal, 2 * SEG);
    copy[0x9026F8 - SEG9 + 25] = 9;
    reseal(copy, 0x9026F8);
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL record at 0/9026F8: block and data "
                                       "lengths do not add up to the record length");

    /* A broken xl_prev chain. */
    memcpy(copy, wal, 2 * SEG);
    put64(copy + (0x9026F8 - SEG9) + 8, 0x1234);
    reseal(copy, 0x9026F8);
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL record at 0/9026F8: previous record "
                                       "pointer 0/1234, expected 0/9026B0");

    /* A commit record too short to hold its time. */
    memcpy(copy, wal, 2 * SEG);
    copy[0x9026F8 - SEG9 + 25] = 4;
    put32(copy + (0x9026F8 - SEG9), 30);
    reseal(copy, 0x9026F8);
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL record at 0/9026F8: malformed commit "
                                       "record (4 bytes of main data)");

    /* A block header cut short after its id (here: a replication origin, 2 bytes, of which
     * 1 is there). Found by fuzz_waldecode: the next id was read through a NULL pointer. */
    memcpy(copy, wal, 2 * SEG);
    put32(copy + (0x9026F8 - SEG9), 26);
    copy[0x9026F8 - SEG9 + 24] = 253;
    copy[0x9026F8 - SEG9 + 25] = 0;
    reseal(copy, 0x9026F8);
    assert_int_equal(decode_copy(copy, &seen, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL record at 0/9026F8: block and data "
                                       "lengths do not add up to the record length");
    free(copy);
}

/* Recycled bytes (a page whose address is an old one) end the WAL; not an error. */
static void test_recycled_page(void **state)
{
    (void)state;
    uint8_t *copy = malloc(2 * SEG);
    struct seen seen;
    struct waldecode_summary s;

    memcpy(copy, wal, 2 * SEG);
    put64(copy + 0x4000 + 8, 0x804000);
    assert_int_equal(decode_copy(copy, &seen, &s), 0);
    assert_true(s.end_of_wal);
    assert_int_equal(s.end_of_wal_lsn, s.last_end_lsn);
    assert_true(s.end_of_wal_lsn > 0x902800 && s.end_of_wal_lsn <= 0x904000);
    assert_string_equal(s.end_reason, "page at 0/904000 has address 0/804000 (recycled WAL)");
    assert_int_equal(s.commits, 5);
    assert_false(s.switch_seen);

    /* A .partial segment: zeros after the last record. */
    memcpy(copy, wal, 2 * SEG);
    memset(copy + SEG + 0x1890, 0, SEG - 0x1890);
    assert_int_equal(decode_copy(copy, &seen, &s), 0);
    assert_true(s.end_of_wal);
    assert_int_equal(s.end_of_wal_lsn, 0xA01890);
    assert_string_equal(s.end_reason, "record length 0 at 0/A01890");
    assert_int_equal(s.commits, 12);
    assert_false(s.switch_seen);

    /* Zeros from a page boundary on, in the middle of a record. */
    memcpy(copy, wal, 2 * SEG);
    memset(copy + 0x2000, 0, SEG);
    assert_int_equal(decode_copy(copy, &seen, &s), 0);
    assert_true(s.end_of_wal);
    assert_string_equal(s.end_reason, "zeroed page at 0/902000");
    assert_int_equal(s.end_of_wal_lsn, s.last_end_lsn);
    free(copy);
}

/* After a crash the server abandons a record cut at a page boundary and writes on from
 * that page, flagged FIRST_IS_OVERWRITE_CONTRECORD: decoding continues there. */
static void test_overwritten_contrecord(void **state)
{
    (void)state;
    uint8_t *copy = malloc(2 * SEG);
    struct seen seen;
    struct waldecode_summary s;
    const lsn_t cut = 0x9045C0, page = 0x906000, rec = page + 24;

    memcpy(copy, wal, 2 * SEG);
    uint8_t *h = copy + (page - SEG9);
    h[2] = (uint8_t)((h[2] & ~1) | 8);
    put32(h + 16, 0);
    memcpy(copy + (rec - SEG9), wal + (0x9026F8 - SEG9), 34);   /* commit of xid 727 */
    memcpy(copy + (rec - SEG9) + 8, wal + (cut - SEG9) + 8, 8); /* prev: before the cut */
    reseal(copy, rec);
    memset(copy + (rec + 40 - SEG9), 0, 8);
    assert_int_equal(decode_copy(copy, &seen, &s), 0);
    assert_int_equal(s.overwritten, 1);
    assert_int_equal(seen.ev[seen.n - 1].lsn, rec);
    assert_int_equal(seen.ev[seen.n - 1].xid, 727);
    assert_true(s.end_of_wal);
    assert_int_equal(s.end_of_wal_lsn, rec + 40);
    free(copy);
}

static void test_bad_pages(void **state)
{
    (void)state;
    struct waldecode_summary s;
    struct waldecode_config c = config(SEG9, LSN_INVALID, NULL);
    c.system_identifier = 1;
    assert_int_equal(waldecode_segment(wal, SEG, &c, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL page header at 0/900000: system identifier "
                                       "7712208971608537675, expected 1");
    waldecode_summary_free(&s);

    c = config(SEG9, LSN_INVALID, NULL);
    c.pg_major = 16;
    assert_int_equal(waldecode_segment(wal, SEG, &c, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(),
                        "invalid WAL page header at 0/900000: magic 0xD110, expected 0xD113");
    waldecode_summary_free(&s);

    uint8_t *copy = malloc(SEG);
    memcpy(copy, wal, SEG);
    copy[0x6000 + 2] &= (uint8_t)~1; /* drop the continuation flag of a page */
    c = config(SEG9, LSN_INVALID, NULL);
    int rc = waldecode_segment(copy, SEG, &c, &s);
    if (rc == 0) /* no record crosses 0/906000: the flag was not set there */
        fail_msg("fixture changed: expected a record across 0/906000");
    assert_int_equal(rc, -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL page header at 0/906000: no continuation "
                                       "flag for the record at 0/9045C0");
    waldecode_summary_free(&s);

    memcpy(copy, wal, SEG);
    copy[0x6000 + 4] = 2; /* timeline 2 on a timeline 1 stream */
    assert_int_equal(waldecode_segment(copy, SEG, &c, &s), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "invalid WAL page header at 0/906000: timeline 2 is "
                                       "above the expected 1");
    waldecode_summary_free(&s);
    free(copy);

    struct waldecode *d;
    c = config(SEG9 + 100, LSN_INVALID, NULL);
    assert_int_equal(waldecode_new(&c, &d), -ERR_CONFIG);
    c = config(SEG9, LSN_INVALID, NULL);
    c.pg_major = 12;
    assert_int_equal(waldecode_new(&c, &d), -ERR_CONFIG);
}

/* A commit record laid out as PostgreSQL 18 writes it for COMMIT PREPARED of a
 * transaction that dropped two tables: xinfo with DBINFO, DROPPED_STATS, INVALS and
 * TWOPHASE; 18's dropped-stats items are 16 bytes (objid_lo, objid_hi), 15 to 17's 12.
 * Returns the length of the one page it is on, a segment's first. */
#define SYN_TIME INT64_C(851234567890123)
#define SYN_XID 4242u
static size_t synthetic_commit(uint8_t *page, uint16_t magic, size_t stats_item)
{
    memset(page, 0, 8192);
    put32(page, magic | 0x0002u << 16); /* xlp_magic, xlp_info = XLP_LONG_HEADER */
    put32(page + 4, 1);                 /* timeline */
    put64(page + 8, SEGA);              /* page address */
    put64(page + 24, SYSID);
    put32(page + 32, SEG);
    put32(page + 36, 8192);

    uint8_t main[256], *m = main;
    put64(m, (uint64_t)SYN_TIME), m += 8;
    put32(m, 1u | 1u << 8 | 1u << 3 | 1u << 4), m += 4; /* DBINFO DROPPED_STATS INVALS TWOPHASE */
    put32(m, 5), put32(m + 4, 1663), m += 8;            /* dbinfo */
    put32(m, 2), m += 4;                                /* two dropped-stats items */
    for (int i = 0; i < 2; i++) {
        memset(m, 0, stats_item);
        put32(m, 2);                       /* PGSTAT_KIND_RELATION */
        put32(m + 4, 5);                   /* dboid */
        put32(m + 8, 16384 + (uint32_t)i); /* objoid / objid_lo */
        m += stats_item;
    }
    put32(m, 1), m += 4; /* one invalidation message */
    memset(m, 0xAB, 16), m += 16;
    put32(m, SYN_XID), m += 4; /* the prepared transaction's xid */
    size_t main_len = (size_t)(m - main);

    uint8_t *r = page + 40;
    size_t tot = 24 + 2 + main_len;
    put32(r, (uint32_t)tot);
    put32(r + 4, 0);     /* a COMMIT PREPARED runs without an xid of its own */
    put64(r + 8, 0);     /* xl_prev: not checked for the first record */
    r[16] = 0x30 | 0x80; /* XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO */
    r[17] = 1;           /* RM_XACT_ID */
    r[24] = 255;         /* XLR_BLOCK_ID_DATA_SHORT */
    r[25] = (uint8_t)main_len;
    memcpy(r + 26, main, main_len);
    uint32_t crc = crc32c_update(CRC32C_INIT, r + 24, tot - 24);
    put32(r + 20, crc32c_final(crc32c_update(crc, r, 20)));
    return 8192;
}

static void test_commit_dropped_stats_per_major(void **state)
{
    (void)state;
    uint8_t *page = malloc(8192);
    for (int major = 15; major <= 18; major++) {
        struct seen seen = {0};
        struct waldecode_config c = config(SEGA, LSN_INVALID, &seen);
        c.pg_major = major;
        struct waldecode *d;
        size_t len = synthetic_commit(page,
                                      major == 18   ? 0xD118
                                      : major == 17 ? 0xD116
                                      : major == 16 ? 0xD113
                                                    : 0xD110,
                                      major == 18 ? 16 : 12);
        assert_int_equal(waldecode_new(&c, &d), 0);
        assert_int_equal(waldecode_feed(d, page, len), 0);
        assert_int_equal(seen.n, 1);
        assert_int_equal(seen.ev[0].kind, WALDECODE_COMMIT);
        assert_true(seen.ev[0].prepared);
        assert_int_equal(seen.ev[0].xid, SYN_XID);
        assert_true(seen.ev[0].time == SYN_TIME);
        assert_true(seen.ev[0].lsn == SEGA + 40);
        waldecode_free(d);
    }
    /* 18's record read with 17's item size loses its way: an error, never a wrong xid. */
    struct seen seen = {0};
    struct waldecode_config c = config(SEGA, LSN_INVALID, &seen);
    c.pg_major = 17;
    struct waldecode *d;
    size_t len = synthetic_commit(page, 0xD116, 16);
    assert_int_equal(waldecode_new(&c, &d), 0);
    int rc = waldecode_feed(d, page, len);
    assert_true(rc == -ERR_INTEGRITY || (seen.n == 1 && seen.ev[0].xid != SYN_XID));
    waldecode_free(d);
    free(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_one_byte_pieces),
        cmocka_unit_test(test_random_pieces),
        cmocka_unit_test(test_summary_per_segment),
        cmocka_unit_test(test_segment_alone),
        cmocka_unit_test(test_start_inside_long_record),
        cmocka_unit_test(test_flipped_byte),
        cmocka_unit_test(test_resealed_records),
        cmocka_unit_test(test_recycled_page),
        cmocka_unit_test(test_overwritten_contrecord),
        cmocka_unit_test(test_bad_pages),
        cmocka_unit_test(test_commit_dropped_stats_per_major),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
