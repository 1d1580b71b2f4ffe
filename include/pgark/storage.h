/*
 * storage.h — the storage interface: a flat namespace of objects under a root.
 *
 * Promise: every driver (posix, s3) offers the same operations with the same
 * semantics, so the repository code above never knows which it talks to:
 *   - paths are relative, '/'-separated, without "", ".", ".." components or a
 *     leading '/'; the generic layer rejects anything else before a driver sees it;
 *   - a write is atomic: readers see the old object or the whole new one, never a
 *     part (posix: temp name, fsync, rename, fsync directory; s3: one PUT or a
 *     completed multipart upload); an aborted or failed write leaves nothing;
 *   - a missing object is ERR_NOT_FOUND, distinguishable from every other failure;
 *   - list returns every object below a prefix, recursively, in byte order of path;
 *   - transient failures (ERR_TRANSIENT) are retried by the generic layer with
 *     exponential backoff and jitter, bounded by the driver's retry settings.
 * Files are created 0600 and directories 0700 (posix).
 */
#ifndef PGARK_STORAGE_H
#define PGARK_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;
struct storage_write;

struct storage_info {
    const char *path; /* relative to the root; valid during the callback only */
    uint64_t size;
    int64_t mtime_us; /* Unix microseconds; 0 when unknown */
};

/* Receives bytes read; return 0 to go on or a negative error (recorded) to stop. */
typedef int (*storage_sink_fn)(void *ctx, const uint8_t *data, size_t len);
/* Receives one listed object; return 0 to go on or a negative error to stop. */
typedef int (*storage_list_fn)(void *ctx, const struct storage_info *info);

#define STORAGE_TO_END UINT64_MAX

struct storage_ops {
    unsigned version; /* STORAGE_OPS_VERSION */
    const char *type; /* "posix", "s3" */
    /* Stream bytes [offset, offset+length) (length STORAGE_TO_END = to the end) to sink.
     * A range past the end of the object is ERR_INTEGRITY (truncated object). */
    int (*read)(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                storage_sink_fn sink, void *ctx);
    /* Start an atomic write. size_hint is the final size when known, else
     * STORAGE_TO_END. Returns NULL with the error set. */
    struct storage_write *(*write_open)(struct storage *s, const char *path,
                                        uint64_t size_hint);
    int (*write_data)(struct storage_write *w, const uint8_t *data, size_t len);
    /* Make the object durable and visible under its name; frees w in every case. */
    int (*write_commit)(struct storage_write *w);
    /* Throw the write away; frees w. */
    void (*write_abort)(struct storage_write *w);
    int (*list)(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx);
    /* info->path is set to NULL by this call. */
    int (*info)(struct storage *s, const char *path, struct storage_info *info);
    /* Removing a missing object is not an error. */
    int (*remove)(struct storage *s, const char *path);
    /* Optional (NULL when the driver has no cheaper way than write + remove). */
    int (*rename)(struct storage *s, const char *from, const char *to);
    void (*free)(struct storage *s);
};

#define STORAGE_OPS_VERSION 1

/* Common part embedded first in every driver's struct. */
struct storage {
    const struct storage_ops *ops;
    char *name;           /* repository name from the config, for messages */
    int retries;          /* attempts after the first for ERR_TRANSIENT; default 4 */
    int64_t retry_base_ms; /* first backoff; doubles each time, with jitter; default 200 */
    /* The driver retries each request itself (it can rewind a body, retry one part);
     * the generic layer then adds no retries of its own on top. */
    bool retries_inside;
};

/* Common part embedded first in every driver's write handle. */
struct storage_write {
    struct storage *storage;
    char *path; /* owned by the driver's handle; freed with it */
};

/* Drivers call this from their constructor. name is copied. */
void storage_init(struct storage *s, const struct storage_ops *ops, const char *name);

/* Check a relative object path; 0 or ERR_USAGE naming the path. */
int storage_path_check(const char *path);

/* The generic layer: checks the path, retries transient failures, and adds
 * "in repository \"NAME\"" context to every error. */
int storage_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                 storage_sink_fn sink, void *ctx);
/* Read a whole object into memory (for small objects: repo.json, manifests' headers).
 * *data is malloc'd and NUL-terminated (not counted in *len). */
int storage_read_all(struct storage *s, const char *path, uint8_t **data, size_t *len);
struct storage_write *storage_write_open(struct storage *s, const char *path,
                                         uint64_t size_hint);
int storage_write_data(struct storage_write *w, const void *data, size_t len);
int storage_write_commit(struct storage_write *w);
void storage_write_abort(struct storage_write *w);
/* Write a whole buffer atomically (retried as a whole on transient failure). */
int storage_write_all(struct storage *s, const char *path, const void *data, size_t len);
int storage_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx);
int storage_info(struct storage *s, const char *path, struct storage_info *info);
/* 1 if the object exists, 0 if not, negative on error. */
int storage_exists(struct storage *s, const char *path);
int storage_remove(struct storage *s, const char *path);
int storage_rename(struct storage *s, const char *from, const char *to);
void storage_free(struct storage *s);

/* --- drivers ---------------------------------------------------------------- */

/* A directory on a local filesystem; created (0700) if missing. */
struct storage *storage_posix_new(const char *name, const char *root);

#endif
