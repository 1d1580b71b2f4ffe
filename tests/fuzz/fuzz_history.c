/* fuzz_history.c — timeline history files (wal/<TLI>.history, read from a repository
 * or sent by the server). Input: 4 bytes of timeline, then the file. */
#include "fuzz.h"

#include "pgark/wal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    timeline_t tli = fuzz_u32(&in);
    /* the content exactly as long as it is: an overread is caught */
    char *content = malloc(in.n ? in.n : 1);
    if (in.n)
        memcpy(content, in.p, in.n);
    struct timeline_history *h = NULL;
    if (timeline_history_parse(tli, content, in.n, &h) == 0) {
        FUZZ_CHECK(h->tli == tli);
        for (size_t i = 0; i < h->count; i++) {
            FUZZ_CHECK(h->entries[i].tli > 0 && h->entries[i].tli < tli);
            if (i) {
                FUZZ_CHECK(h->entries[i].tli > h->entries[i - 1].tli);
                FUZZ_CHECK(h->entries[i].switchpoint >= h->entries[i - 1].switchpoint);
            }
            /* an LSN belongs to the parent until its switch point, not at it */
            lsn_t at = h->entries[i].switchpoint;
            FUZZ_CHECK(timeline_history_tli_at(h, at) > h->entries[i].tli);
            if (at)
                FUZZ_CHECK(timeline_history_tli_at(h, at - 1) <= h->entries[i].tli);
        }
        FUZZ_CHECK(timeline_history_tli_at(h, UINT64_MAX) == tli);
        timeline_history_free(h);
    } else {
        FUZZ_CHECK(h == NULL);
    }
    err_clear();
    free(content);
    return 0;
}
