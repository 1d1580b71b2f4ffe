/* manifest_int.h — what the manifest's writer (manifest.c) and reader (manifest_read.c)
 * share. */
#ifndef PGARK_REPO_MANIFEST_INT_H
#define PGARK_REPO_MANIFEST_INT_H

#include "pgark/manifest.h"

#include <stdint.h>

/* Unix seconds t as "2026-11-25T14:03:27Z" (UTC), the manifest's form. */
void manifest_time_text(int64_t t, char out[32]);

#endif
