/*
 * crc32c.h — CRC-32C (Castagnoli), the checksum of WAL records and data pages.
 *
 * Promise: crc32c_update gives the same value whichever implementation runs: the SSE4.2
 * crc32 instruction when the CPU has it (checked once at run time), else a table-driven
 * slicing-by-8 loop. Both are exported so a test can compare them.
 *
 * Use: c = CRC32C_INIT; c = crc32c_update(c, p, n); ...; value = crc32c_final(c).
 */
#ifndef PGARK_CRC32C_H
#define PGARK_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRC32C_INIT 0xFFFFFFFFu

static inline uint32_t crc32c_final(uint32_t crc)
{
    return crc ^ 0xFFFFFFFFu;
}

/* Continue crc over len bytes (len 0 returns crc unchanged). */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

/* The table-driven implementation, always available. */
uint32_t crc32c_update_sw(uint32_t crc, const void *data, size_t len);

/* True when crc32c_update uses the CPU instruction. */
bool crc32c_hw_available(void);

/* The instruction-based implementation; only call when crc32c_hw_available(). */
uint32_t crc32c_update_hw(uint32_t crc, const void *data, size_t len);

#endif
