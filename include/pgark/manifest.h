/*
 * manifest.h — pgark's backup manifest (backups/<LABEL>/manifest.json), JSON Lines,
 * written and read as a stream with jansson.
 *
 * Promise: neither side ever holds the whole manifest: memory is one file line at a
 * time (at most MANIFEST_LINE_MAX bytes), whatever the number of files.
 *
 * Format (version 1). Line 1 is the header; then one line per file, in backup order:
 *   {"format":1,"label":"20261125T182414Z","start_lsn":"0/2000028","stop_lsn":"0/2000100",
 *    "start_time":"2026-11-25T18:24:14Z","stop_time":"2026-11-25T18:24:20Z","timeline":1,
 *    "pg_version":150018,"system_identifier":"7311041234567890123","chunk_size":1048576,
 *    "tablespaces":[{"oid":16384,"location":"/srv/ts1"}],"logical_bytes":N,
 *    "stored_bytes":N,"files":N,"compression":"zstd","encrypted":false}
 *   {"path":"base/1/1259","type":"file","mode":600,"size":8192,"mtime":1764095054,
 *    "sha256_chunks":"<64 hex>","chunks":["<64 hex>",...]}
 *   {"path":"pg_tblspc/16384","type":"symlink","mode":777,"mtime":...,"link":"/srv/ts1"}
 *   {"path":"pg_wal","type":"dir","mode":700,"mtime":...}
 * - "sha256_chunks" is the file's digest: the SHA-256 of the concatenation of its chunks'
 *   plaintext SHA-256 digests (32 bytes each, in file order); an empty file, with no
 *   chunks, has the SHA-256 of nothing (manifest_chunks_digest). A backup hashes each
 *   chunk once, in its workers, and the file digest costs 32 bytes per chunk. Manifests
 *   of earlier pgark versions carry "sha256" instead: the SHA-256 of the whole content.
 *   The reader accepts either (exactly one), and says which (manifest_file.digest_kind);
 *   the writer writes the kind it is given.
 * - "path" is relative and normalized (see manifest_path_problem): the writer refuses
 *   any other, and so does the reader.
 * - "mode" is written in octal digits as a JSON integer (0600 is 600).
 * - "mtime" is seconds since the epoch; header times are UTC text, LSNs "%X/%X".
 * - A path, link or tablespace location that is not valid UTF-8 is written as
 *   "path_hex" / "link_hex" / "location_hex" (hex of the raw bytes) instead.
 * - The header is the first line although its totals (stop LSN and time, files,
 *   logical and stored bytes) are known only at the end: the writer spools file lines to
 *   an unlinked temporary file in a directory the caller names, and at finish sends the
 *   header and then the spooled lines to the sink. So `info` learns everything about a
 *   backup from the first line alone.
 * - Truncation is detected by the reader: the number of file lines and the sum of their
 *   sizes must equal the header's "files" and "logical_bytes", and the last line must end
 *   with a newline. Each regular file has exactly ceil(size / chunk_size) chunks.
 *
 * Errors: a line that is not JSON, lacks a field, has a wrong type or value, or a
 * manifest that stops early is ERR_INTEGRITY naming the line number; temp-file I/O is
 * ERR_IO / ERR_NO_SPACE; a sink or callback's negative code is returned as is.
 */
#ifndef PGARK_MANIFEST_H
#define PGARK_MANIFEST_H

#include "pgark/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MANIFEST_FORMAT 1
#define MANIFEST_LINE_MAX (256u * 1024 * 1024)

struct buf;

/* Longest path a manifest holds, and longest component of one. */
#define MANIFEST_PATH_MAX 1024
#define MANIFEST_NAME_MAX 255

/* Why path may not be a manifest entry's path, as a phrase to follow it ("is an
 * absolute path"), or NULL when it may: relative and normalized (no empty, "." or ".."
 * component, no trailing '/'), no control character, at most MANIFEST_PATH_MAX bytes and
 * no component longer than MANIFEST_NAME_MAX. Such a path can be laid down beneath a
 * directory and stays there (as long as no symlink on the way is followed). */
const char *manifest_path_problem(const char *path);

/* Append path for a message, control characters and backslashes as \xNN. */
void manifest_path_show(struct buf *b, const char *path);

struct manifest_tablespace {
    uint32_t oid;
    const char *location;
};

struct manifest_header {
    int format; /* MANIFEST_FORMAT */
    const char *label;
    uint64_t start_lsn, stop_lsn;
    int64_t start_time, stop_time; /* seconds since the epoch */
    /* Unix microseconds of the newest commit or abort that starts before stop_lsn in the
     * WAL the backup carries: the earliest recovery target time it reaches (0: unknown,
     * a manifest written before pgark recorded it, or no transaction in that WAL). */
    int64_t consistent_time_us;
    uint32_t timeline;
    int pg_version; /* server_version_num, e.g. 150018 */
    uint64_t system_identifier;
    uint64_t chunk_size;
    const struct manifest_tablespace *tablespaces;
    size_t n_tablespaces;
    uint64_t logical_bytes;  /* sum of file sizes (set by the writer) */
    uint64_t stored_bytes;   /* bytes of new chunk objects written by this backup */
    uint64_t files;          /* number of file lines (set by the writer) */
    const char *compression; /* "zstd", "none" */
    bool encrypted;
    /* Optional, informational: the backup an incremental one was taken against (its
     * unchanged chunks are the parent's; this manifest still lists every file and
     * chunk, so nothing reads it to restore). NULL for a full backup. */
    const char *parent;
};

/* What a regular file's digest covers. */
enum manifest_digest_kind {
    MANIFEST_DIGEST_CHUNKS = 0, /* "sha256_chunks": SHA-256 over the chunks' SHA-256s */
    MANIFEST_DIGEST_FILE,       /* "sha256" (older manifests): SHA-256 of the content */
};

enum manifest_file_type {
    MANIFEST_TYPE_FILE = 0,
    MANIFEST_TYPE_DIR,
    MANIFEST_TYPE_SYMLINK,
};

struct manifest_file {
    const char *path; /* relative to the data directory; any bytes but NUL */
    enum manifest_file_type type;
    uint32_t mode; /* permission bits */
    uint64_t size; /* regular files; 0 otherwise */
    int64_t mtime;
    enum manifest_digest_kind digest_kind; /* regular files */
    uint8_t digest[SHA256_LEN];            /* regular files: see digest_kind */
    const char *link;                      /* symlinks: target; NULL otherwise */
    const uint8_t *chunks;                 /* n_chunks raw 32-byte chunk names, in file order */
    size_t n_chunks;
};

/* A file's MANIFEST_DIGEST_CHUNKS digest from the plaintext SHA-256 of its n chunks,
 * laid side by side in file order (n * 32 bytes; n 0: the SHA-256 of nothing). */
void manifest_chunks_digest(const uint8_t *chunk_sha256, size_t n, uint8_t out[SHA256_LEN]);

/* Where the writer's bytes go: 0, or negative with the error slot set. */
typedef int (*manifest_sink_fn)(void *arg, const void *data, size_t len);
/* A sink writing to the FILE * given as arg (ERR_IO on a short write). */
int manifest_sink_file(void *arg, const void *data, size_t len);

struct manifest_writer;

/* Spool file lines in an unlinked temporary file under tmp_dir. NULL with ERR_IO (or
 * ERR_NOT_FOUND / ERR_AUTH) when it cannot be created; ERR_USAGE if chunk_size is 0. */
struct manifest_writer *manifest_writer_new(const char *tmp_dir, uint64_t chunk_size);
void manifest_writer_free(struct manifest_writer *w);

/* Append one file line. ERR_RUNTIME when the entry is inconsistent (a path that
 * manifest_path_problem refuses, link on a non-symlink, chunks not matching size and
 * chunk_size); ERR_IO / ERR_NO_SPACE. */
int manifest_writer_add(struct manifest_writer *w, const struct manifest_file *file);

/* Fill h->files and h->logical_bytes from what was added, then send the header line and
 * every file line to sink. h->chunk_size must equal the writer's. Single use. */
/* The earliest recovery target time (Unix microseconds) a restore of a backup can reach,
 * from its header's stop_time and consistent_time_us: that time (plus 1 with exclusive:
 * the server then stops before a transaction ending at the target), or, when it is
 * unknown (0), the second after its stop time (stop times are whole seconds). */
int64_t manifest_earliest_target_us(int64_t stop_time, int64_t consistent_time_us, bool exclusive);

int manifest_writer_finish(struct manifest_writer *w, struct manifest_header *h,
                           manifest_sink_fn sink, void *arg);

/* Called for each file line, in order; the file and its pointers live only during the
 * call. Return 0, or negative with the error slot set to stop. */
typedef int (*manifest_file_fn)(void *arg, const struct manifest_file *file);

struct manifest_reader;

/* on_file may be NULL (header only). Never returns NULL. */
struct manifest_reader *manifest_reader_new(manifest_file_fn on_file, void *arg);
void manifest_reader_free(struct manifest_reader *r);

/* Next bytes of the manifest, any split. 0 or negative (see above). */
int manifest_reader_feed(struct manifest_reader *r, const void *data, size_t len);

/* The input is over: ERR_INTEGRITY unless the manifest was complete. */
int manifest_reader_finish(struct manifest_reader *r);

/* Feed r the whole of f from its start (a spooled manifest), then finish. ERR_IO names
 * `what` when f cannot be read. */
int manifest_reader_feed_file(struct manifest_reader *r, FILE *f, const char *what);

/* The header once line 1 has been read (before the first on_file), else NULL. Owned by
 * the reader. A caller wanting only the header may stop feeding as soon as it is set. */
const struct manifest_header *manifest_reader_header(const struct manifest_reader *r);

/* Lines fully read so far. */
uint64_t manifest_reader_lines(const struct manifest_reader *r);

#endif
