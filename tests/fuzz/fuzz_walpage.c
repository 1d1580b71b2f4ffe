/* fuzz_walpage.c — the page header checks the receiver runs on streamed WAL before it
 * trusts a byte. Input: the checker's setting (major, segment size, timeline, system
 * identifier, start LSN), one byte of piece size, then the stream. */
#include "fuzz.h"

#include "pgark/walpage.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    int major = 13 + fuzz_u8(&in) % 6; /* 18: unsupported */
    uint64_t seg_size = UINT64_C(1) << (20 + fuzz_u8(&in) % 11);
    timeline_t tli = fuzz_u32(&in);
    uint64_t sysid = fuzz_u64(&in);
    lsn_t lsn = fuzz_u64(&in) % (UINT64_C(1) << 40);
    size_t step = fuzz_u8(&in);
    struct walpage_checker c;
    if (walpage_checker_init(&c, sysid, seg_size, major, tli, lsn) < 0) {
        err_clear();
        return 0;
    }
    for (size_t off = 0; off < in.n;) {
        size_t n = step && in.n - off > step ? step * 61 % 8209 + 1 : in.n - off;
        if (n > in.n - off)
            n = in.n - off;
        lsn_t before = c.pos;
        if (walpage_check(&c, c.pos, in.p + off, n) < 0) {
            /* nothing of a refused header is taken */
            FUZZ_CHECK(c.pos >= before && walpage_vetted(&c) <= c.pos);
            break;
        }
        FUZZ_CHECK(c.pos == before + n);
        FUZZ_CHECK(walpage_vetted(&c) <= c.pos && walpage_vetted(&c) + WALPAGE_MAX_HDR >= c.pos);
        off += n;
    }
    err_clear();
    return 0;
}
