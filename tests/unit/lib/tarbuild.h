/*
 * tarbuild.h — a tiny tar writer for unit tests: builds archives in memory, byte by
 * byte as the formats specify, so readers can be tested against crafted input
 * (bad checksums, base-256 sizes, pax and GNU extensions, missing end markers).
 */
#ifndef PGARK_TEST_TARBUILD_H
#define PGARK_TEST_TARBUILD_H

#include "pgark/mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_header {
    const char *name;   /* up to 100 bytes, copied without NUL if exactly 100 */
    const char *prefix; /* ustar prefix (up to 155 bytes) or NULL */
    char type;          /* '0', '5', '2', 'x', 'L', ... */
    uint32_t mode;
    uint64_t size;
    int64_t mtime;
    const char *link; /* linkname field or NULL */
    bool gnu_magic;   /* "ustar  \0" instead of "ustar\0" "00" */
    bool base256;     /* size and mtime in base-256 */
};

/* Append one 512-byte header with a correct checksum; returns its offset in out. */
size_t tb_header(struct buf *out, const struct tb_header *h);
/* Append len data bytes and zero padding to the next block. */
void tb_data(struct buf *out, const void *data, size_t len);
void tb_file(struct buf *out, const char *name, const void *data, size_t len);
void tb_dir(struct buf *out, const char *name);
void tb_symlink(struct buf *out, const char *name, const char *target);
/* Append "LEN key=value\n" to rec (value may hold any bytes but NUL). */
void tb_pax_record(struct buf *rec, const char *key, const char *value);
/* An extended header of the given type ('x' or 'g') carrying rec. */
void tb_pax(struct buf *out, char type, const struct buf *rec);
/* A GNU 'L' (long name) or 'K' (long link) header carrying text. */
void tb_gnu_long(struct buf *out, char type, const char *text);
/* The end marker: two zero blocks. */
void tb_end(struct buf *out);

#endif
