/*
 * units.h — strict parsing and formatting of durations, sizes and timestamps.
 *
 * Promise: a value is accepted only in full ("10s", "15m", "2h", "14d", "500ms";
 * "1MiB", "64KiB", "1GiB", "100B", "1MB" = 10^6); anything else — empty, negative,
 * trailing junk, overflow, an unknown unit — is rejected with ERR_CONFIG naming the
 * text. Parsers never print.
 */
#ifndef PGARK_UNITS_H
#define PGARK_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Duration to milliseconds. Units: ms, s, m (minutes), h, d, w. A bare number is an
 * error (a unit is required). */
int duration_parse(const char *text, int64_t *ms_out);
/* Size to bytes. Units: B, KB, MB, GB, TB (10^n), KiB, MiB, GiB, TiB (2^n); a bare
 * number is bytes. */
int size_parse(const char *text, uint64_t *bytes_out);

/* "1.5 GiB" style, into buf (at least 32 bytes). Returns buf. */
char *size_format(uint64_t bytes, char *buf, size_t cap);
/* "1h 2m 3s" / "350ms" style, into buf (at least 32 bytes). Returns buf. */
char *duration_format(int64_t ms, char *buf, size_t cap);

/* Wall clock in microseconds since the Unix epoch; monotonic clock in microseconds. */
int64_t time_now_us(void);
int64_t time_mono_us(void);

/* PostgreSQL protocol time (us since 2000-01-01 UTC) <-> Unix us. */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

/* "2026-11-25 14:03:27.123456+00" (UTC, PostgreSQL timestamptz text) into buf (>= 40). */
char *time_format_pg(int64_t unix_us, char *buf, size_t cap);
/* "YYYYMMDDTHHMMSSZ" (backup labels) into buf (>= 17). */
char *time_format_label(int64_t unix_us, char *buf, size_t cap);
/* Parse ISO 8601 / PostgreSQL timestamptz text: "2026-11-25 14:03:27", with
 * optional fraction, 'T' separator, "Z", "+HH", "+HH:MM", "+HHMM" offsets; no offset
 * means UTC. Returns 0 or ERR_USAGE naming the text. */
int time_parse(const char *text, int64_t *unix_us_out);

#endif
