/* pgmajor.c — the supported PostgreSQL majors (see include/pgark/pgmajor.h). */
#include "pgark/pgmajor.h"

#include "pgark/error.h"

#include <stdio.h>

bool pgmajor_supported(int major)
{
    return major >= PG_MAJOR_MIN && major <= PG_MAJOR_MAX;
}

int pgmajor_refuse(const char *where, int major, const char *version_text)
{
    char shown[32];
    if (version_text && *version_text)
        snprintf(shown, sizeof(shown), "%s", version_text);
    else
        snprintf(shown, sizeof(shown), "%d", major);
    err_set(ERR_CONFIG,
            "server \"%s\" runs PostgreSQL %s, which pgark does not support (PostgreSQL %d to %d "
            "are supported)",
            where, shown, PG_MAJOR_MIN, PG_MAJOR_MAX);
    return err_hint("nothing was created on the server; use a PostgreSQL %d to %d server, or a "
                    "pgark release that supports %d",
                    PG_MAJOR_MIN, PG_MAJOR_MAX, major);
}
