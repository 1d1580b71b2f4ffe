/* fuzz_units.c — the text forms of units.h and wal.h: durations, sizes, timestamps, LSNs,
 * WAL segment names and SHOW wal_segment_size. Whatever parses must format back to
 * text that parses to the same value. */
#include "fuzz.h"

#include "pgark/units.h"
#include "pgark/wal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_string(data, size);
    char buf[64];

    int64_t ms;
    if (duration_parse(s, &ms) == 0) {
        FUZZ_CHECK(ms >= 0);
        duration_format(ms, buf, sizeof(buf));
    }
    uint64_t bytes;
    if (size_parse(s, &bytes) == 0)
        size_format(bytes, buf, sizeof(buf));
    int64_t us;
    if (time_parse(s, &us) == 0) {
        char text[64];
        int64_t again;
        time_format_pg(us, text, sizeof(text));
        /* what pgark prints, pgark reads back (within the years it prints) */
        if (text[0] >= '0' && text[0] <= '9' && strlen(text) == 29)
            FUZZ_CHECK(time_parse(text, &again) == 0 && again == us);
        time_format_label(us, buf, sizeof(buf));
    }
    lsn_t lsn, again;
    if (lsn_parse(s, &lsn) == 0) {
        char text[LSN_STRLEN];
        FUZZ_CHECK(lsn_parse(lsn_format(lsn, text), &again) == 0 && again == lsn);
    }
    uint64_t seg;
    if (wal_seg_size_parse_show(s, &seg) == 0)
        FUZZ_CHECK(wal_seg_size_valid(seg));
    for (uint64_t sz = 1u << 20; sz <= 1u << 30; sz <<= 3) {
        timeline_t tli;
        uint64_t segno;
        if (wal_segment_parse(s, sz, &tli, &segno) == 0) {
            char name[WAL_NAME_BUFLEN];
            FUZZ_CHECK(strcmp(wal_segment_name(tli, segno, sz, name), s) == 0);
        }
    }
    (void)wal_is_segment_name(s);
    (void)wal_is_partial_name(s);
    (void)wal_is_history_name(s);
    err_clear();
    free(s);
    return 0;
}
