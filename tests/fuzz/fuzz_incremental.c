/* fuzz_incremental.c — PostgreSQL 17's INCREMENTAL.<name> files, fed in pieces. Input:
 * one byte of piece size (0: all at once), then the file. */
#include "fuzz.h"

#include "pgark/pg_incremental.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

struct seen {
    bool header;
    uint32_t n, next, last;
    const uint32_t *blocks;
};

static int header(void *arg, uint32_t n, uint32_t truncation, const uint32_t *blocks)
{
    struct seen *s = arg;
    FUZZ_CHECK(!s->header);
    FUZZ_CHECK(n <= PG_INCR_RELSEG_SIZE && truncation <= PG_INCR_RELSEG_SIZE);
    for (uint32_t i = 0; i < n; i++)
        FUZZ_CHECK(blocks[i] < PG_INCR_RELSEG_SIZE && (i == 0 || blocks[i] > blocks[i - 1]));
    s->header = true;
    s->n = n;
    s->blocks = blocks;
    return 0;
}

static int block(void *arg, uint32_t blkno, const uint8_t *data)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->header && s->next < s->n && s->blocks[s->next] == blkno);
    uint8_t x = 0;
    for (size_t i = 0; i < PG_INCR_BLCKSZ; i++) /* the bytes are readable */
        x ^= data[i];
    (void)x;
    s->next++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t step = fuzz_u8(&in);
    struct seen s = {0};
    struct pg_incr_parser *p = pg_incr_parser_new("INCREMENTAL.1", header, block, &s);
    int rc = 0;
    for (size_t off = 0; off < in.n && rc == 0;) {
        size_t n = step && in.n - off > step ? step * 37 % 1031 + 1 : in.n - off;
        if (n > in.n - off)
            n = in.n - off;
        rc = pg_incr_parser_feed(p, in.p + off, n);
        off += n;
    }
    if (rc == 0)
        rc = pg_incr_parser_finish(p);
    if (rc == 0)
        FUZZ_CHECK(s.header && s.next == s.n);
    pg_incr_parser_free(p);
    err_clear();
    return 0;
}
