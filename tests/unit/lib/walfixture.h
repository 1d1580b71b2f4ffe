/*
 * walfixture.h — the real PostgreSQL 15 WAL of tests/unit/data (1 MiB segments
 * 000000010000000000000009 and ..0A, zstd-compressed), for the decoder and the time
 * index tests. See tests/unit/data/make_waldecode_fixture.sh.
 */
#ifndef PGARK_TEST_WALFIXTURE_H
#define PGARK_TEST_WALFIXTURE_H

#include <stdint.h>

#define WALFIXTURE_SEG (1024 * 1024)

/* Both segments back to back (2 * WALFIXTURE_SEG bytes, malloc'd; caller frees). The
 * data directory is $PGARK_UNIT_DATA, else tests/unit/data from the current directory or
 * above the binary. Exits with a message when the fixture cannot be read. */
uint8_t *walfixture_load(void);

#endif
