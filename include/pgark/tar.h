/*
 * tar.h — a streaming, push-based tar reader.
 *
 * Promise: bytes of a tar archive fed in pieces of any size (1 byte to megabytes) produce
 * the same callbacks: entry_begin once per entry, then its data in order through
 * entry_data (zero or more calls, never copied: the pointers are into the caller's
 * piece), then entry_end. Memory is bounded: one 512-byte header and, while one is being
 * read, one pax/GNU extended header (at most TAR_EXT_MAX bytes); file data is never
 * buffered.
 *
 * Understood: POSIX ustar (name + prefix), pax extended headers ('x': path, linkpath,
 * size, mtime; 'g' global headers are skipped), GNU long names and link names ('L', 'K'),
 * octal and base-256 numeric fields, the two-zero-block end marker (zero blocks after it,
 * such as GNU tar's record padding, are accepted). Every header's checksum is verified.
 *
 * Entry paths are normalised: a leading "./" and trailing '/' are removed (PostgreSQL
 * marks directories and tablespace symlinks with a trailing slash). Absolute paths and
 * ".." components are refused, as are entry types a data directory cannot hold
 * (devices, FIFOs, GNU sparse/multivolume files).
 *
 * Failures: a bad checksum, a malformed header or extended record, an unsafe path, a
 * lone zero block, non-zero bytes after the end marker, or an archive that stops inside
 * an entry are ERR_INTEGRITY naming the archive byte offset. A callback that returns a
 * negative value (with the error slot set) stops the reader and that value is returned.
 * After any failure the reader refuses further input.
 */
#ifndef PGARK_TAR_H
#define PGARK_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAR_BLOCK 512
#define TAR_EXT_MAX (1024 * 1024) /* largest pax / GNU long-name payload accepted */

enum tar_type {
    TAR_TYPE_FILE = 0,
    TAR_TYPE_DIR,
    TAR_TYPE_SYMLINK,
    TAR_TYPE_HARDLINK,
};

struct tar_entry {
    const char *path; /* normalised, NUL-terminated; may hold non-UTF-8 bytes */
    const char *link; /* symlink/hardlink target, else NULL */
    enum tar_type type;
    uint32_t mode;   /* permission bits (07777) */
    uint64_t size;   /* bytes of data that follow (0 for dirs and symlinks) */
    int64_t mtime;   /* seconds since the epoch */
    uint64_t offset; /* archive offset of the entry's own (last) header */
};

/* Callbacks; any may be NULL. The entry and its strings live only during the call. */
struct tar_callbacks {
    int (*entry_begin)(void *arg, const struct tar_entry *entry);
    int (*entry_data)(void *arg, const uint8_t *data, size_t len);
    int (*entry_end)(void *arg);
};

struct tar_reader;

/* A reader delivering to cb (copied) with arg. Never returns NULL. */
struct tar_reader *tar_reader_new(const struct tar_callbacks *cb, void *arg);
void tar_reader_free(struct tar_reader *r);

/* Feed the next len bytes of the archive. 0, a callback's negative code, or
 * -ERR_INTEGRITY (error set, with the offset). */
int tar_reader_feed(struct tar_reader *r, const void *data, size_t len);

/* The archive's input is over. Without the end marker the archive is truncated
 * (ERR_INTEGRITY) unless end_marker_required is false and the input stopped cleanly
 * between two entries (PostgreSQL 13/14 send no end marker). Stopping inside a header,
 * an extended header, file data or its padding is always ERR_INTEGRITY. */
int tar_reader_finish(struct tar_reader *r, bool end_marker_required);

/* Bytes consumed so far; entries completed so far. */
uint64_t tar_reader_offset(const struct tar_reader *r);
uint64_t tar_reader_entries(const struct tar_reader *r);

#endif
