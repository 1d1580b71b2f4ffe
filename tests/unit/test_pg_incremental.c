/* test_pg_incremental.c — PostgreSQL 17's INCREMENTAL.<name> files, well formed and not. */
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pg_incremental.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BLK PG_INCR_BLCKSZ

/* An INCREMENTAL file as the server writes it: block i's bytes are all (blocks[i] & 0xff). */
static uint8_t *make_file(uint32_t magic, uint32_t n, uint32_t truncation, const uint32_t *blocks,
                          size_t *len)
{
    size_t hlen = 12 + 4 * (size_t)n;
    if (n && hlen % BLK)
        hlen += BLK - hlen % BLK;
    uint8_t *f = xcalloc(1, hlen + (size_t)n * BLK + 1);
    memcpy(f, &magic, 4);
    memcpy(f + 4, &n, 4);
    memcpy(f + 8, &truncation, 4);
    if (n)
        memcpy(f + 12, blocks, 4 * (size_t)n);
    for (uint32_t i = 0; i < n; i++)
        memset(f + hlen + (size_t)i * BLK, (int)(blocks[i] & 0xff), BLK);
    *len = hlen + (size_t)n * BLK;
    return f;
}

struct rec {
    struct buf log;
    int fail_block; /* fail on this block number (-1: never) */
};

static int on_header(void *arg, uint32_t n, uint32_t truncation, const uint32_t *blocks)
{
    struct rec *r = arg;
    buf_appendf(&r->log, "header %u %u:", n, truncation);
    for (uint32_t i = 0; i < n; i++)
        buf_appendf(&r->log, " %u", blocks[i]);
    buf_append_str(&r->log, "\n");
    return 0;
}

static int on_block(void *arg, uint32_t blkno, const uint8_t *data)
{
    struct rec *r = arg;
    if ((int)blkno == r->fail_block)
        return err_set(ERR_IO, "cannot keep block %u", blkno);
    for (size_t i = 0; i < BLK; i++)
        if (data[i] != (uint8_t)(blkno & 0xff)) {
            buf_appendf(&r->log, "block %u WRONG at %zu\n", blkno, i);
            return 0;
        }
    buf_appendf(&r->log, "block %u\n", blkno);
    return 0;
}

/* Feed f in pieces of `piece` bytes (0: whole), then finish. The log in *log (caller
 * frees), the return code. */
static int run(const uint8_t *f, size_t len, size_t piece, int fail_block, char **log)
{
    struct rec r = {BUF_INIT, fail_block};
    struct pg_incr_parser *p =
        pg_incr_parser_new("base/5/INCREMENTAL.16384", on_header, on_block, &r);
    int rc = 0;
    size_t step = piece ? piece : (len ? len : 1);
    for (size_t off = 0; rc == 0 && off < len; off += step)
        rc = pg_incr_parser_feed(p, f + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = pg_incr_parser_finish(p);
    pg_incr_parser_free(p);
    buf_append(&r.log, "", 1);
    *log = (char *)r.log.data;
    return rc;
}

static void test_well_formed(void **state)
{
    (void)state;
    static const uint32_t blocks[] = {0, 3, 130, 131071};
    size_t len;
    uint8_t *f = make_file(PG_INCR_MAGIC, 4, 200, blocks, &len);
    assert_int_equal(len, 5 * BLK); /* header padded to one block */
    const size_t pieces[] = {0, 1, 7, BLK, BLK + 1};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        char *log;
        assert_int_equal(run(f, len, pieces[i], -1, &log), 0);
        assert_string_equal(log, "header 4 200: 0 3 130 131071\n"
                                 "block 0\nblock 3\nblock 130\nblock 131071\n");
        free(log);
    }
    free(f);

    /* no block: 12 bytes, no padding (a relation unchanged since the parent) */
    f = make_file(PG_INCR_MAGIC, 0, 17, NULL, &len);
    assert_int_equal(len, 12);
    char *log;
    assert_int_equal(run(f, len, 1, -1, &log), 0);
    assert_string_equal(log, "header 0 17:\n");
    free(log);
    free(f);

    /* a block beyond the truncation length extends the file: allowed */
    static const uint32_t beyond[] = {5};
    f = make_file(PG_INCR_MAGIC, 1, 2, beyond, &len);
    assert_int_equal(run(f, len, 0, -1, &log), 0);
    assert_string_equal(log, "header 1 2: 5\nblock 5\n");
    free(log);
    free(f);
}

static void expect_error(const uint8_t *f, size_t len, size_t piece, const char *what)
{
    char *log;
    char want[256];
    snprintf(want, sizeof(want),
             "incremental file \"base/5/INCREMENTAL.16384\" of the backup is malformed: %s", what);
    assert_int_equal(run(f, len, piece, -1, &log), -ERR_PROTOCOL);
    assert_string_equal(err_message(), want);
    /* nothing of a file with a bad header is handed on */
    if (strstr(what, "magic") || strstr(what, "order") || strstr(what, "beyond"))
        assert_string_equal(log, "");
    free(log);
    err_clear();
}

static void test_malformed(void **state)
{
    (void)state;
    static const uint32_t two[] = {1, 2};
    size_t len;
    uint8_t *f = make_file(PG_INCR_MAGIC, 2, 10, two, &len);

    /* truncated: within the fixed part, within the block numbers, within the padding,
     * within a block */
    expect_error(f, 0, 0, "it ends within its header");
    expect_error(f, 11, 1, "it ends within its header");
    expect_error(f, 16, 3, "it ends within its header");
    expect_error(f, 100, 0, "it ends within its header");
    expect_error(f, len - 1, 0, "it ends after 1 of its 2 blocks");
    expect_error(f, BLK, 0, "it ends after 0 of its 2 blocks");
    /* trailing bytes */
    expect_error(f, len + 1, 0, "bytes after its last block");
    /* padding that is not zeros */
    f[100] = 1;
    expect_error(f, len, 5, "the header's padding is not zeros");
    free(f);

    /* wrong magic (as a server of the other byte order would write it, too) */
    f = make_file(0x0d1faed3u, 2, 10, two, &len);
    expect_error(f, len, 1, "magic number 0x0d1faed3, expected 0xd3ae1f0d");
    free(f);

    static const uint32_t backwards[] = {7, 3};
    f = make_file(PG_INCR_MAGIC, 2, 10, backwards, &len);
    expect_error(f, len, 0, "block numbers out of order (3 after 7)");
    free(f);
    static const uint32_t twice[] = {4, 4};
    f = make_file(PG_INCR_MAGIC, 2, 10, twice, &len);
    expect_error(f, len, 0, "block numbers out of order (4 after 4)");
    free(f);
    static const uint32_t far[] = {1, 131072};
    f = make_file(PG_INCR_MAGIC, 2, 10, far, &len);
    expect_error(f, len, 0, "block number 131072 is beyond a segment file (131072 blocks)");
    free(f);

    /* counts beyond a segment file, before anything is allocated for them */
    f = make_file(PG_INCR_MAGIC, 0, 131073, NULL, &len);
    expect_error(f, len, 0, "truncation length 131073 blocks is beyond a segment file (131072)");
    free(f);
    uint8_t hdr[12];
    uint32_t v = PG_INCR_MAGIC;
    memcpy(hdr, &v, 4);
    v = 0xffffffffu;
    memcpy(hdr + 4, &v, 4);
    v = 1;
    memcpy(hdr + 8, &v, 4);
    expect_error(hdr, sizeof(hdr), 0, "block count 4294967295 is beyond a segment file (131072)");
}

static void test_callback_failure(void **state)
{
    (void)state;
    static const uint32_t blocks[] = {1, 2, 3};
    size_t len;
    uint8_t *f = make_file(PG_INCR_MAGIC, 3, 10, blocks, &len);
    char *log;
    assert_int_equal(run(f, len, 1000, 2, &log), -ERR_IO);
    assert_string_equal(err_message(), "cannot keep block 2");
    assert_string_equal(log, "header 3 10: 1 2 3\nblock 1\n");
    free(log);
    free(f);
    err_clear();
}

static void test_target_path(void **state)
{
    (void)state;
    char *p = pg_incr_target_path("base/5/INCREMENTAL.16384");
    assert_string_equal(p, "base/5/16384");
    free(p);
    p = pg_incr_target_path("pg_tblspc/16390/PG_17_202406281/5/INCREMENTAL.16391.1");
    assert_string_equal(p, "pg_tblspc/16390/PG_17_202406281/5/16391.1");
    free(p);
    p = pg_incr_target_path("INCREMENTAL.1");
    assert_string_equal(p, "1");
    free(p);
    assert_null(pg_incr_target_path("base/5/16384"));
    assert_null(pg_incr_target_path("base/5/INCREMENTAL."));
    assert_null(pg_incr_target_path("base/INCREMENTAL.5/16384"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_callback_failure),
        cmocka_unit_test(test_target_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
