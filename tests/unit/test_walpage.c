/* test_walpage.c — WAL page header checks over synthetic segments. */
#include "pgark/error.h"
#include "pgark/pgmajor.h"
#include "pgark/walpage.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SEG (1024 * 1024)
#define SYSID UINT64_C(7311041234567890123)

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
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

/* A segment of SEG bytes starting at segno 3, timeline tli, filled with pseudo-random
 * record bytes behind valid headers. */
static uint8_t *make_segment(uint32_t tli)
{
    uint8_t *s = malloc(SEG);
    uint32_t x = 12345;
    for (size_t i = 0; i < SEG; i++) {
        x = x * 1103515245 + 12345;
        s[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < SEG; off += WAL_BLCKSZ) {
        uint8_t *h = s + off;
        put16(h, 0xD110);
        put16(h + 2, off == 0 ? 0x0002 : 0x0001);
        put32(h + 4, tli);
        put64(h + 8, 3 * (uint64_t)SEG + off);
        put32(h + 16, 0);
        put32(h + 20, 0);
        if (off == 0) {
            put64(h + 24, SYSID);
            put32(h + 32, SEG);
            put32(h + 36, WAL_BLCKSZ);
        }
    }
    return s;
}

static int feed(uint8_t *seg, size_t step, timeline_t tli)
{
    struct walpage_checker c;
    int rc = walpage_checker_init(&c, SYSID, SEG, 15, tli, 3 * (lsn_t)SEG);
    if (rc < 0)
        return rc;
    for (size_t off = 0; off < SEG; off += step) {
        size_t n = SEG - off < step ? SEG - off : step;
        rc = walpage_check(&c, 3 * (lsn_t)SEG + off, seg + off, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void test_valid_any_split(void **state)
{
    (void)state;
    uint8_t *seg = make_segment(2);
    size_t steps[] = {1, 7, 24, 40, 8191, 8192, 8193, 131072, SEG};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        assert_int_equal(feed(seg, steps[i], 2), 0);
    free(seg);
}

static void expect_bad(uint8_t *seg, timeline_t tli, const char *message)
{
    err_clear();
    assert_int_equal(feed(seg, 4096, tli), -ERR_INTEGRITY);
    assert_string_equal(err_message(), message);
    err_clear();
}

static void test_bad_headers(void **state)
{
    (void)state;
    uint8_t *seg;

    seg = make_segment(1);
    put16(seg + 5 * WAL_BLCKSZ, 0xD10D);
    expect_bad(seg, 1, "invalid WAL page header at 0/30A000: magic 0xD10D, expected 0xD110");
    free(seg);

    seg = make_segment(1);
    put64(seg + 2 * WAL_BLCKSZ + 8, 0x200000 + 2 * WAL_BLCKSZ);
    expect_bad(seg, 1,
               "invalid WAL page header at 0/304000: page address 0/204000 does not match its "
               "position");
    free(seg);

    seg = make_segment(3);
    expect_bad(seg, 2,
               "invalid WAL page header at 0/300000: timeline 3 is above the streamed timeline 2");
    free(seg);

    seg = make_segment(2);
    put32(seg + 9 * WAL_BLCKSZ + 4, 1);
    expect_bad(seg, 2, "invalid WAL page header at 0/312000: timeline 1 goes back from 2");
    free(seg);

    seg = make_segment(1);
    put16(seg + WAL_BLCKSZ + 2, 0x0011);
    expect_bad(seg, 1, "invalid WAL page header at 0/302000: unknown info bits 0x0011");
    free(seg);

    seg = make_segment(1);
    put64(seg + 24, SYSID + 1);
    expect_bad(seg, 1,
               "invalid WAL page header at 0/300000: system identifier 7311041234567890124, "
               "expected 7311041234567890123");
    free(seg);

    seg = make_segment(1);
    put16(seg + 2, 0x0000);
    expect_bad(seg, 1,
               "invalid WAL page header at 0/300000: first page of a segment without a long "
               "header");
    free(seg);

    seg = make_segment(1);
    put32(seg + 32, 16 * 1024 * 1024);
    expect_bad(seg, 1,
               "invalid WAL page header at 0/300000: segment size 16777216 and block size 8192, "
               "expected 1048576 and 8192");
    free(seg);
}

/* After a WAL switch the server sends the rest of the segment as zeros, headers too. */
static void test_switch_padding(void **state)
{
    (void)state;
    uint8_t *seg = make_segment(1);
    memset(seg + 40 * WAL_BLCKSZ + 100, 0, SEG - 40 * WAL_BLCKSZ - 100);
    assert_int_equal(feed(seg, 3000, 1), 0);
    /* A real header after the padding, inside the same segment, is not WAL. */
    put16(seg + 50 * WAL_BLCKSZ, 0xD110);
    put16(seg + 50 * WAL_BLCKSZ + 2, 0x0001);
    put32(seg + 50 * WAL_BLCKSZ + 4, 1);
    put64(seg + 50 * WAL_BLCKSZ + 8, 3 * (uint64_t)SEG + 50 * WAL_BLCKSZ);
    expect_bad(seg, 1,
               "invalid WAL page header at 0/364000: page header after the zero padding that "
               "ends a segment");
    free(seg);
}

/* A failed call leaves the checker where it was: nothing of that call is accepted. */
static void test_failed_call_not_accepted(void **state)
{
    (void)state;
    uint8_t *seg = make_segment(1);
    struct walpage_checker c;
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 15, 1, 3 * (lsn_t)SEG), 0);
    assert_int_equal(walpage_check(&c, 3 * (lsn_t)SEG, seg, WAL_BLCKSZ), 0);
    put16(seg + WAL_BLCKSZ, 0xBEEF);
    lsn_t before = c.pos;
    assert_int_equal(walpage_check(&c, before, seg + WAL_BLCKSZ, 100), -ERR_INTEGRITY);
    assert_true(c.pos == before);
    err_clear();
    /* A gap in the stream is a protocol error. */
    assert_int_equal(walpage_check(&c, before + 8, seg + WAL_BLCKSZ, 8), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "WAL data starts at 0/302008, expected 0/302000");
    err_clear();
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 12, 1, 0), -ERR_CONFIG);
    assert_string_equal(err_message(), "PostgreSQL 12 is not supported (13 to 18 are)");
    err_clear();
    free(seg);
}

/* Bytes of a header not yet complete are not vetted: a bad page must not be partly
 * written. Long header on a segment's first page, short ones after. */
static void test_vetted(void **state)
{
    (void)state;
    uint8_t *seg = make_segment(1);
    lsn_t start = 3 * (lsn_t)SEG;
    struct walpage_checker c;
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 15, 1, start), 0);
    assert_true(walpage_vetted(&c) == start);
    assert_int_equal(walpage_check(&c, start, seg, 39), 0);
    assert_true(walpage_vetted(&c) == start);
    assert_int_equal(walpage_check(&c, start + 39, seg + 39, 1), 0);
    assert_true(walpage_vetted(&c) == start + 40);
    /* Up to the next page, then 23 bytes of its short header, then the last one. */
    assert_int_equal(walpage_check(&c, start + 40, seg + 40, WAL_BLCKSZ - 40), 0);
    assert_true(walpage_vetted(&c) == start + WAL_BLCKSZ);
    assert_int_equal(walpage_check(&c, start + WAL_BLCKSZ, seg + WAL_BLCKSZ, 23), 0);
    assert_true(walpage_vetted(&c) == start + WAL_BLCKSZ);
    assert_int_equal(walpage_check(&c, start + WAL_BLCKSZ + 23, seg + WAL_BLCKSZ + 23, 1), 0);
    assert_true(walpage_vetted(&c) == start + WAL_BLCKSZ + 24);
    /* Starting mid-page, past the header: everything fed is vetted. */
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 15, 1, start + 100), 0);
    assert_int_equal(walpage_check(&c, start + 100, seg + 100, 8), 0);
    assert_true(walpage_vetted(&c) == start + 108);
    free(seg);
}

/* Every supported major has its page magic (XLOG_PAGE_MAGIC of its
 * src/include/access/xlog_internal.h), and the range ends where the table does. */
static void test_magic_per_major(void **state)
{
    (void)state;
    static const struct {
        int major;
        uint16_t magic;
    } known[] = {{13, 0xD106}, {14, 0xD10D}, {15, 0xD110},
                 {16, 0xD113}, {17, 0xD116}, {18, 0xD118}};
    assert_int_equal(PG_MAJOR_MIN, 13);
    assert_int_equal(PG_MAJOR_MAX, 18);
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        assert_true(pgmajor_supported(known[i].major));
        assert_int_equal(walpage_magic_for_major(known[i].major), known[i].magic);
    }
    for (int major = PG_MAJOR_MIN; major <= PG_MAJOR_MAX; major++)
        assert_int_not_equal(walpage_magic_for_major(major), 0);
    assert_false(pgmajor_supported(12));
    assert_false(pgmajor_supported(19));

    /* An 18 page is checked against 18's magic. */
    uint8_t *seg = make_segment(1);
    struct walpage_checker c;
    put16(seg, 0xD118);
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 18, 1, 3 * (lsn_t)SEG), 0);
    assert_int_equal(walpage_check(&c, 3 * (lsn_t)SEG, seg, 40), 0);
    assert_int_equal(walpage_checker_init(&c, SYSID, SEG, 19, 1, 0), -ERR_CONFIG);
    assert_string_equal(err_message(), "PostgreSQL 19 is not supported (13 to 18 are)");
    err_clear();
    free(seg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_any_split),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_failed_call_not_accepted),
        cmocka_unit_test(test_switch_padding),
        cmocka_unit_test(test_vetted),
        cmocka_unit_test(test_magic_per_major),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
