/*
 * pgmajor.h — the PostgreSQL majors pgark supports.
 *
 * Promise: this is the one place that states the supported range. Every command that
 * meets a server checks its major against it before it creates anything (a slot, a
 * repository's repo.json, a backup marker), and the per-major tables (WAL page magic,
 * record layouts) cover exactly this range. A major is added here only once the
 * version matrix of the test suite (tests/t/06x_major_*.pl) passes on it.
 */
#ifndef PGARK_PGMAJOR_H
#define PGARK_PGMAJOR_H

#include <stdbool.h>

#define PG_MAJOR_MIN 13
#define PG_MAJOR_MAX 18

/* Whether pgark supports PostgreSQL major `major` (13 for 130022). */
bool pgmajor_supported(int major);

/*
 * Refuse a server outside the range: ERR_CONFIG "server "WHERE" runs PostgreSQL VERSION,
 * which pgark does not support (PostgreSQL 13 to 18 are supported)" with a hint that
 * nothing was created on it. version_text is the server's own ("12.22", "19beta1"), or
 * NULL to print the major. Returns the error code.
 */
int pgmajor_refuse(const char *where, int major, const char *version_text);

#endif
