/* fuzz_walindex.c — the time index beside each archived segment (wal/<TLI>/<SEG>.idx).
 * Input: one byte choosing the segment size, then the index's text. */
#include "fuzz.h"

#include "../../src/repo/repo_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint64_t seg_size = UINT64_C(1) << (20 + fuzz_u8(&in) % 11);
    struct repo_wal_index ix;
    if (repo_wal_index_parse((const char *)in.p, in.n, "wal/x.idx", "fuzz", seg_size, &ix) == 0) {
        FUZZ_CHECK(ix.nrestore_points <= seg_size / 98);
        for (size_t i = 0; i < ix.nrestore_points; i++)
            FUZZ_CHECK(memchr(ix.restore_points[i].name, '\0', sizeof(ix.restore_points[i].name)) !=
                       NULL);
        repo_wal_index_free(&ix);
    } else {
        FUZZ_CHECK(ix.restore_points == NULL && ix.nrestore_points == 0);
    }
    err_clear();
    return 0;
}
