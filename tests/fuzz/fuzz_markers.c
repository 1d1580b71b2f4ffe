/* fuzz_markers.c — the text of a running marker (backups/<LABEL>.running,
 * expire.running): a host and a pid that kill(pid, 0) is asked about. */
#include "fuzz.h"

#include "../../src/repo/repo_int.h"

#include <limits.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct repo_marker m = {0};
    repo_marker_parse((const char *)data, size, &m);
    FUZZ_CHECK(m.host != NULL);
    FUZZ_CHECK(m.pid >= 0 && m.pid <= INT32_MAX);
    free(m.host);
    err_clear();
    return 0;
}
