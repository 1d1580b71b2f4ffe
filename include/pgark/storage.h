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
 *     exponential backoff and jitter, bounded by the driver's retry settings;
 *   - nothing outside the storage's root is ever read, written or removed: a driver
 *     whose backend has links (posix) follows none below the root. An entry that is
 *     neither an object nor a directory (a symbolic link, a FIFO, a socket, a device)
 *     is skipped by list, which reports it once (warn); read, write, info, rename and
 *     remove refuse a path that leads to or through one (ERR_IO naming it).
 * Files are created 0600 and directories 0700 (posix).
 */
#ifndef PGARK_STORAGE_H
#define PGARK_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct storage;
struct storage_write;
struct storage_async;
struct storage_batch;

/* What a driver met at a path: an object, or something that is neither an object nor
 * a directory, which pgark never follows, reads, writes or removes. */
enum storage_entry {
    STORAGE_ENTRY_OBJECT = 0,
    STORAGE_ENTRY_SYMLINK,
    STORAGE_ENTRY_FIFO,
    STORAGE_ENTRY_SOCKET,
    STORAGE_ENTRY_DEVICE,
    STORAGE_ENTRY_OTHER,
};

struct storage_info {
    const char *path; /* relative to the root; valid during the callback only */
    uint64_t size;
    int64_t mtime_us; /* Unix microseconds; 0 when unknown */
    /* Set by a driver's list for an entry that is not an object (size and mtime then
     * mean nothing): the generic layer reports it and never passes it on, so callers
     * of storage_list see STORAGE_ENTRY_OBJECT only. */
    enum storage_entry entry;
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
    struct storage_write *(*write_open)(struct storage *s, const char *path, uint64_t size_hint);
    int (*write_data)(struct storage_write *w, const uint8_t *data, size_t len);
    /* Make the object durable and visible under its name; frees w in every case. */
    int (*write_commit)(struct storage_write *w);
    /* Throw the write away; frees w. */
    void (*write_abort)(struct storage_write *w);
    /* Every object below prefix, and every entry that is not an object (info.entry
     * set; a directory on the way to prefix that is one included), in byte order. */
    int (*list)(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx);
    /* info->path is set to NULL by this call. */
    int (*info)(struct storage *s, const char *path, struct storage_info *info);
    /* Removing a missing object is not an error. */
    int (*remove)(struct storage *s, const char *path);
    /* Optional (NULL when the driver has no cheaper way than write + remove). */
    int (*rename)(struct storage *s, const char *from, const char *to);
    void (*free)(struct storage *s);
    /* Optional: transfers kept in flight from one thread (see storage_batch below);
     * NULL when the driver has none, and the generic layer then runs each transfer
     * to its end when it is added. async_put and async_get return 0 when the transfer
     * started, 1 when the driver declines it (the generic layer then runs it
     * synchronously), or a negative error. async_next waits until a transfer has
     * ended, calling the sinks of the running ones meanwhile, and returns 1 with its
     * tag and result (*rc < 0: its error is set), or 0 when none is in flight.
     * async_cancel makes every running transfer end soon (async_next still returns
     * them); async_free is called with none left. */
    struct storage_async *(*async_new)(struct storage *s);
    int (*async_put)(struct storage_async *a, const char *path, const void *data, size_t len,
                     void *tag);
    int (*async_get)(struct storage_async *a, const char *path, uint64_t offset, uint64_t length,
                     storage_sink_fn sink, void *ctx, void *tag);
    int (*async_next)(struct storage_async *a, void **tag, int *rc);
    void (*async_cancel)(struct storage_async *a);
    void (*async_free)(struct storage_async *a);
    /* Optional (NULL: none): as async_put, the body being the first len bytes of fd,
     * read positionally (fd stays open until async_next returned the transfer). */
    int (*async_put_fd)(struct storage_async *a, const char *path, int fd, uint64_t len, void *tag);
    /* Optional (NULL: every commit is durable when it returns, as a PUT is): make
     * durable the directory entries of every write committed with defer_sync set since
     * the last call (posix: one fsync per directory). A failure is kept: every later
     * call fails the same way, as a later fsync could not be trusted to report it. */
    int (*sync)(struct storage *s);
    /* Optional (NULL: the driver leaves nothing behind, or cannot tell): the leftovers of
     * writes that never ended (posix: temporary files of a process killed mid-write)
     * below prefix whose last change is before before_us (microseconds since the epoch),
     * counted into *n and *bytes, and removed unless count_only. */
    int (*sweep)(struct storage *s, const char *prefix, int64_t before_us, bool count_only,
                 uint64_t *n, uint64_t *bytes);
};

#define STORAGE_OPS_VERSION 1

/* Common part embedded first in every driver's struct. */
struct storage {
    const struct storage_ops *ops;
    char *name;            /* repository name from the config, for messages */
    int retries;           /* attempts after the first for ERR_TRANSIENT; default 4 */
    int64_t retry_base_ms; /* first backoff; doubles each time, with jitter; default 200 */
    /* The driver retries each request itself (it can rewind a body, retry one part);
     * the generic layer then adds no retries of its own on top. */
    bool retries_inside;
    /* Where the root is, for messages (posix: the configured directory); set with
     * storage_set_location; NULL: paths are named relative to the root. */
    char *location;
    /* Paths of entries list has reported (generic layer; freed by storage_free). */
    struct storage_reported *reported;
    /* Whether the backend keeps storage_create_all's promise, once found out by
     * storage_create_honoured: 0 not known yet, 1 yes, -1 no (why in create_why). */
    int create_honoured;
    char *create_why;
};

/* Common part embedded first in every driver's write handle. */
struct storage_write {
    struct storage *storage;
    char *path; /* owned by the driver's handle; freed with it */
    /* set by storage_batch_write_open on its own handles; NULL for drivers' ones */
    struct storage_batch *batch;
    /* set by storage_create_all: the commit fails with ERR_EXISTS, writing nothing,
     * when an object is already at path (posix: rename without replacing; s3: a
     * single PUT with If-None-Match: *, where the server honours it; a server that
     * does not implement it fails with ERR_UNSUPPORTED) */
    bool no_replace;
    /* set by the generic layer for a write opened between storage_defer_sync_begin and
     * _end: its content is durable at commit, the directory entries naming it may wait
     * for the driver's sync (drivers without sync ignore it) */
    bool defer_sync;
};

/* Drivers call this from their constructor. name is copied. */
void storage_init(struct storage *s, const struct storage_ops *ops, const char *name);
/* Drivers may call this from their constructor: where the root is, for messages
 * ("/var/lib/pgark/repo"). Copied; freed by storage_free. */
void storage_set_location(struct storage *s, const char *location);
/* Drivers call this when an operation's path leads to or through where (relative to
 * the root: the path itself or one of its directories), which is entry, not an object
 * or a directory. The driver has not followed, read, written or removed it. Sets
 * ERR_IO naming it (with a hint) and returns -ERR_IO. */
int storage_refuse(struct storage *s, const char *where, enum storage_entry entry);

/* Check a relative object path; 0 or ERR_USAGE naming the path. */
int storage_path_check(const char *path);

/* The generic layer: checks the path, retries transient failures, and adds
 * "in repository \"NAME\"" context to every error. */
int storage_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                 storage_sink_fn sink, void *ctx);
/* Read a whole object into memory (for small objects: repo.json, manifests' headers).
 * *data is malloc'd and NUL-terminated (not counted in *len). */
int storage_read_all(struct storage *s, const char *path, uint8_t **data, size_t *len);
struct storage_write *storage_write_open(struct storage *s, const char *path, uint64_t size_hint);
int storage_write_data(struct storage_write *w, const void *data, size_t len);
int storage_write_commit(struct storage_write *w);
void storage_write_abort(struct storage_write *w);
/* Write a whole buffer atomically (retried as a whole on transient failure). */
int storage_write_all(struct storage *s, const char *path, const void *data, size_t len);
/* The same, only if nothing is at path yet: -ERR_EXISTS (set) when something is —
 * possibly this very write, when a retry follows an attempt whose answer was lost.
 * Only as good as the backend: see storage_create_honoured. */
int storage_create_all(struct storage *s, const char *path, const void *data, size_t len);
/* Whether storage_create_all keeps its promise on s. Many S3-compatible stores answer
 * a conditional PUT (If-None-Match: *) with 501 NotImplemented (Swift's S3 API, older
 * Ceph RGW), and some ignore the header and replace the object (s3rver). Found by
 * writing probe_path (a name of the caller's that nothing else uses), creating it again
 * with storage_create_all, and removing it: ERR_EXISTS means the promise holds; a
 * success (the object was replaced) or ERR_UNSUPPORTED means it does not. Asked once
 * per s, the answer is kept. 1 when honoured; 0 when not, with *why (when why is not
 * NULL; caller frees) saying what the store did; negative with the error set when the
 * probe itself failed. */
int storage_create_honoured(struct storage *s, const char *probe_path, char **why);
int storage_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx);
int storage_info(struct storage *s, const char *path, struct storage_info *info);
/* 1 if the object exists, 0 if not, negative on error. */
int storage_exists(struct storage *s, const char *path);
int storage_remove(struct storage *s, const char *path);
int storage_rename(struct storage *s, const char *from, const char *to);
/* The leftovers of writes that never ended (see storage_ops.sweep) below prefix, last
 * changed before before_us: *n and *bytes set to what was found, and those removed
 * unless count_only. A write that is still going changes its leftover as it goes, so a
 * before_us hours in the past touches none. 0 with nothing found on a driver without
 * the operation; negative with the error set. */
int storage_sweep(struct storage *s, const char *prefix, int64_t before_us, bool count_only,
                  uint64_t *n, uint64_t *bytes);
/* Frees s; a driver with sync first makes what is still deferred durable (best effort:
 * a failure is logged as a warning), so a command that stopped early leaves no entry
 * that a crash could lose behind it for the next one to reuse. */
void storage_free(struct storage *s);

/* --- deferred directory syncs ---------------------------------------------------
 *
 * A posix write is made durable by fsyncing the file and then the directory that names
 * it; a chunk store writing thousands of objects into a few hundred directories fsyncs
 * each directory thousands of times. Writes this thread opens through s between
 * storage_defer_sync_begin(s) and storage_defer_sync_end(s) (directly, with
 * storage_write_all, or through a batch) still have their content durable when their
 * commit returns, but the directory entries naming them (and the directories their
 * writes created) become durable at the next storage_sync(s), each directory once.
 *
 * Promise: nothing written later through s is published before them. Every write
 * committed outside such a scope, and every storage_rename, runs storage_sync(s) first
 * and fails, writing nothing, if it fails; so a record naming deferred objects (a
 * backup's manifest) can never be durable while they are not. Call storage_sync at the
 * point where a deferred batch must be durable, for a clear error there. Within one
 * handle only: another handle or process that sees a deferred object (a listing)
 * before this one synced it gets no such promise.
 *
 * Drivers without sync (s3: a PUT is durable when it returns) keep every promise
 * trivially; storage_sync is then a no-op. Scopes do not nest. */
void storage_defer_sync_begin(struct storage *s);
void storage_defer_sync_end(struct storage *s);
/* 0, or the driver's error (ERR_IO naming the directory), with "in repository"
 * context; after one failure every later call on s fails too. */
int storage_sync(struct storage *s);

/* --- many transfers from one thread ---------------------------------------------
 *
 * A batch keeps up to max_in_flight transfers going at once, all started and
 * reported in the thread that made the batch (a batch is not shared between
 * threads). With a driver that has an asynchronous path (s3) the transfers run
 * while the thread goes on producing the next ones; without (posix), each runs to
 * its end when it is added. The guarantees of the synchronous calls hold: atomic
 * writes, retries, the "in repository" context on every error.
 *
 *     struct storage_batch *b = storage_batch_new(s, 16);
 *     for (each chunk)
 *         if (storage_batch_put(b, name, data, len, release, data) < 0)
 *             break;
 *     rc = storage_batch_wait(b);
 *     storage_batch_free(b);
 *
 * Completion: done(ctx, rc) is called exactly once for every transfer that was
 * started (its storage_batch_* call returned 0), in this thread, from within a later
 * storage_batch_* call (posix: before the call that started it returns). rc is 0 or
 * the transfer's error (then in the error slot). done returns the outcome to keep:
 * rc as given, 0 to forgive a failure, or a new negative error. NULL done: rc is kept.
 *
 * Errors: the first kept failure stops the batch: no transfer starts after it, the
 * running ones still end (done is still called). It is reported once, in the error
 * slot, by the first storage_batch_* call to return it; later calls return the same
 * code without touching the error slot.
 */

/* Called with the outcome of one transfer; see above. */
typedef int (*storage_done_fn)(void *ctx, int rc);

/* max_in_flight >= 1 (smaller is taken as 1). Never fails. */
struct storage_batch *storage_batch_new(struct storage *s, int max_in_flight);

/* Store len bytes of data under path, atomically, as storage_write_all. data must
 * stay unchanged until done is called. Waits (running sinks and done callbacks of
 * earlier transfers) while max_in_flight transfers are running. */
int storage_batch_put(struct storage_batch *b, const char *path, const void *data, size_t len,
                      storage_done_fn done, void *ctx);

/* Read [offset, offset+length) of path to sink as storage_read does. The sink is
 * called in this thread, from within storage_batch_* calls, bytes in order. */
int storage_batch_get(struct storage_batch *b, const char *path, uint64_t offset, uint64_t length,
                      storage_sink_fn sink, void *sink_ctx, storage_done_fn done, void *ctx);

/* A write whose bytes come from a stream (a filter chain's output): use it with
 * storage_write_data, then storage_write_commit, which starts the upload and
 * returns at once (0), or storage_write_abort (done is then not called). The
 * object is buffered in memory for the upload, up to STORAGE_BATCH_BUFFER_MAX;
 * a larger one goes on as an ordinary synchronous write. NULL with the error set
 * (as storage_write_open, or the batch's error). */
#define STORAGE_BATCH_BUFFER_MAX ((size_t)64 * 1024 * 1024)
struct storage_write *storage_batch_write_open(struct storage_batch *b, const char *path,
                                               uint64_t size_hint, storage_done_fn done, void *ctx);

/* Keep the bodies of b's streamed writes in unlinked files in dir (copied) rather
 * than in memory, when the driver can upload from a file: memory then stays small
 * whatever the objects' sizes and however many are in flight (each file goes with
 * its transfer). Without that, or for a driver that cannot, nothing changes. */
void storage_batch_spool(struct storage_batch *b, const char *dir);

/* Wait until every transfer started has ended. 0, or the batch's error. */
int storage_batch_wait(struct storage_batch *b);

/* Cancel what is still running (their done callbacks are called, with
 * ERR_CANCELED unless they had ended otherwise) and free b. The error slot is
 * left as it was. NULL is a no-op. */
void storage_batch_free(struct storage_batch *b);

/* An unlinked file in dir, read-write: gone with its last descriptor whatever
 * happens. The descriptor, or ERR_IO naming dir. */
int storage_scratch_open(const char *dir);
/* Hand the first len bytes of fd (read positionally, in pieces of buf_size into buf, or
 * into a buffer of its own when buf is NULL) to sink; 0, the sink's error, or ERR_IO
 * naming `what` ("could not read WHAT", "WHAT is shorter than N bytes"). */
int storage_fd_pass(int fd, uint64_t len, uint8_t *buf, size_t buf_size, const char *what,
                    storage_sink_fn sink, void *ctx);
/* The same for bytes from..len of fd (a file read again where the last pass stopped). */
int storage_fd_pass_from(int fd, uint64_t from, uint64_t len, uint8_t *buf, size_t buf_size,
                         const char *what, storage_sink_fn sink, void *ctx);

/* --- drivers ---------------------------------------------------------------- */

/* A directory on a local filesystem; created (0700) if missing. */
struct storage *storage_posix_new(const char *name, const char *root);

#endif
