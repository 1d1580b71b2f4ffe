/*
 * batch.c — many transfers from one thread (see "many transfers" in storage.h).
 *
 * The driver's async_* operations run the transfers; this layer owns what every
 * driver would otherwise repeat: the in-flight limit, path checks, the done
 * callbacks, the first-error rule and the "in repository" context. A driver without
 * them (posix), or one declining a transfer (s3: a multipart upload, a zero-length
 * read), gets the synchronous call instead, with the generic retries.
 *
 * Error slot: collecting a transfer sets its error in the slot; so that a batch
 * call never disturbs an error the caller is still holding, each collection runs
 * between an err_save and an err_restore, and the batch keeps its first error
 * (saved) until a call reports it.
 */
#include "storage_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPOOL_COPY_BUF (256 * 1024)

struct storage_batch {
    struct storage *s;
    struct storage_async *a; /* NULL: every transfer is synchronous */
    int max, inflight;
    int rc;                /* first kept failure; sticky */
    struct err_saved *err; /* its error, until a call reports it */
    char *spool_dir;       /* streamed writes' bodies go to files here; NULL: memory */
};

/* One started transfer, the driver's tag for it. */
struct batch_item {
    storage_done_fn done;
    void *ctx;
    struct buf data; /* the body of a streamed write, owned */
    int fd;          /* or its spool file, owned; -1 when none */
};

struct batch_write {
    struct storage_write base;
    struct storage_write *inner; /* synchronous write: posix, or too big to buffer */
    struct buf data;
    int fd; /* the body in a spool file instead of data (-1: none) */
    uint64_t fd_len;
    storage_done_fn done;
    void *ctx;
};

struct storage_batch *storage_batch_new(struct storage *s, int max_in_flight)
{
    struct storage_batch *b = xcalloc(1, sizeof(*b));
    b->s = s;
    b->max = max_in_flight < 1 ? 1 : max_in_flight;
    if (s->ops->async_new)
        b->a = s->ops->async_new(s);
    return b;
}

void storage_batch_spool(struct storage_batch *b, const char *dir)
{
    free(b->spool_dir);
    b->spool_dir = b->a && b->s->ops->async_put_fd ? xstrdup(dir) : NULL;
}

int storage_scratch_open(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        char *path = xasprintf("%s/.scratch.XXXXXX", dir);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0)
            unlink(path);
        free(path);
    }
    if (fd < 0)
        return err_set_errno(ERR_IO, errno, "could not create a scratch file in \"%s\"", dir);
    return fd;
}

static void item_free(struct batch_item *it)
{
    buf_free(&it->data);
    if (it->fd >= 0)
        close(it->fd);
    free(it);
}

/* The batch's error: handed to the slot the first time, then the code alone. */
static int report(struct storage_batch *b)
{
    if (b->err) {
        err_restore(b->err);
        b->err = NULL;
    }
    return b->rc;
}

/* Stop the batch on a failure to start (its error is in the slot, reported now). */
static int fail_start(struct storage_batch *b, int rc)
{
    if (b->rc == 0)
        b->rc = rc;
    return rc;
}

/* A transfer ended with rc (its error in the slot when negative, with the
 * repository's context when add_context): call done, keep the first failure.
 * Leaves the slot empty. */
static void settle(struct storage_batch *b, struct batch_item *it, int rc, bool add_context)
{
    if (rc < 0 && add_context)
        storage_add_context(b->s);
    int kept = it->done ? it->done(it->ctx, rc) : rc;
    if (kept < 0 && b->rc == 0) {
        b->rc = kept;
        b->err = err_save();
    }
    err_clear();
    item_free(it);
}

/* Collect one ended transfer; 0 when none is in flight. The slot is left as it was. */
static int collect_one(struct storage_batch *b)
{
    if (!b->a || b->inflight == 0)
        return 0;
    struct err_saved *mine = err_save();
    void *tag = NULL;
    int rc = 0;
    int got = b->s->ops->async_next(b->a, &tag, &rc);
    if (got) {
        b->inflight--;
        settle(b, tag, rc, true);
    }
    err_restore(mine);
    return got;
}

/* Wait for room for one more transfer; 0, or the batch's error. */
static int make_room(struct storage_batch *b)
{
    while (b->rc == 0 && b->inflight >= b->max && collect_one(b))
        ;
    return b->rc < 0 ? report(b) : 0;
}

static struct batch_item *item_new(storage_done_fn done, void *ctx)
{
    struct batch_item *it = xcalloc(1, sizeof(*it));
    it->done = done;
    it->ctx = ctx;
    it->fd = -1;
    return it;
}

/* The driver's answer to starting it: 0 started, 1 declined (run synchronously by
 * sync(), whose result is settled at once), negative: not started. */
static int started(struct storage_batch *b, struct batch_item *it, int rc)
{
    if (rc == 0) {
        b->inflight++;
        return 0;
    }
    item_free(it);
    storage_add_context(b->s);
    return fail_start(b, rc);
}

/* Settle a transfer run synchronously (a failure's error, context included, is in
 * the slot; else the slot is left as it was). */
static void settle_sync(struct storage_batch *b, struct batch_item *it, int rc)
{
    struct err_saved *mine = rc < 0 ? NULL : err_save();
    settle(b, it, rc, false);
    err_restore(mine);
}

int storage_batch_put(struct storage_batch *b, const char *path, const void *data, size_t len,
                      storage_done_fn done, void *ctx)
{
    int rc;
    if (b->rc < 0)
        return report(b);
    if ((rc = storage_path_check(path)) < 0)
        return fail_start(b, storage_add_context(b->s));
    if ((rc = make_room(b)) < 0)
        return rc;
    struct batch_item *it = item_new(done, ctx);
    rc = b->a ? b->s->ops->async_put(b->a, path, data, len, it) : 1;
    if (rc != 1)
        return started(b, it, rc);
    settle_sync(b, it, storage_write_all(b->s, path, data, len));
    return 0;
}

int storage_batch_get(struct storage_batch *b, const char *path, uint64_t offset, uint64_t length,
                      storage_sink_fn sink, void *sink_ctx, storage_done_fn done, void *ctx)
{
    int rc;
    if (b->rc < 0)
        return report(b);
    if ((rc = storage_path_check(path)) < 0)
        return fail_start(b, storage_add_context(b->s));
    if (length != STORAGE_TO_END && offset > UINT64_MAX - length) {
        rc = err_set(ERR_USAGE, "invalid byte range of \"%s\": offset %llu length %llu", path,
                     (unsigned long long)offset, (unsigned long long)length);
        return fail_start(b, storage_add_context(b->s));
    }
    if ((rc = make_room(b)) < 0)
        return rc;
    struct batch_item *it = item_new(done, ctx);
    rc = b->a ? b->s->ops->async_get(b->a, path, offset, length, sink, sink_ctx, it) : 1;
    if (rc != 1)
        return started(b, it, rc);
    settle_sync(b, it, storage_read(b->s, path, offset, length, sink, sink_ctx));
    return 0;
}

static void batch_write_free(struct batch_write *w)
{
    buf_free(&w->data);
    if (w->fd >= 0)
        close(w->fd);
    free(w->base.path);
    free(w);
}

struct storage_write *storage_batch_write_open(struct storage_batch *b, const char *path,
                                               uint64_t size_hint, storage_done_fn done, void *ctx)
{
    if (b->rc < 0) {
        report(b);
        return NULL;
    }
    if (storage_path_check(path) < 0) {
        fail_start(b, storage_add_context(b->s));
        return NULL;
    }
    struct batch_write *w = xcalloc(1, sizeof(*w));
    w->base.storage = b->s;
    w->base.path = xstrdup(path);
    w->base.batch = b;
    w->done = done;
    w->ctx = ctx;
    w->fd = -1;
    if (b->spool_dir) {
        w->fd = storage_scratch_open(b->spool_dir);
        if (w->fd < 0) {
            fail_start(b, storage_add_context(b->s));
            batch_write_free(w);
            return NULL;
        }
    } else if (!b->a) {
        w->inner = storage_write_open(b->s, path, size_hint);
        if (!w->inner) {
            fail_start(b, err_code());
            batch_write_free(w);
            return NULL;
        }
    } else if (size_hint != STORAGE_TO_END && size_hint <= STORAGE_BATCH_BUFFER_MAX) {
        buf_reserve(&w->data, (size_t)size_hint);
    }
    return &w->base;
}

int storage_batch_write_data(struct storage_write *sw, const void *data, size_t len)
{
    struct batch_write *w = (struct batch_write *)sw;
    if (w->fd >= 0) {
        const uint8_t *p = data;
        while (len) {
            ssize_t n = write(w->fd, p, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return err_set_errno(ERR_IO, errno, "could not write a scratch file in \"%s\"",
                                     sw->batch->spool_dir);
            p += n;
            len -= (size_t)n;
            w->fd_len += (uint64_t)n;
        }
        return 0;
    }
    if (!w->inner && w->data.len + len > STORAGE_BATCH_BUFFER_MAX) {
        /* too big to keep in memory: go on as a synchronous write */
        w->inner = storage_write_open(sw->storage, sw->path, STORAGE_TO_END);
        if (!w->inner)
            return err_code();
        int rc = w->data.len ? storage_write_data(w->inner, w->data.data, w->data.len) : 0;
        buf_free(&w->data);
        if (rc < 0)
            return rc;
    }
    if (w->inner)
        return storage_write_data(w->inner, data, len);
    buf_append(&w->data, data, len);
    return 0;
}

int storage_fd_pass(int fd, uint64_t len, uint8_t *buf, size_t buf_size, const char *what,
                    storage_sink_fn sink, void *ctx)
{
    return storage_fd_pass_from(fd, 0, len, buf, buf_size, what, sink, ctx);
}

int storage_fd_pass_from(int fd, uint64_t from, uint64_t len, uint8_t *buf, size_t buf_size,
                         const char *what, storage_sink_fn sink, void *ctx)
{
    uint8_t *own = buf ? NULL : xmalloc(buf_size);
    uint8_t *chunk = buf ? buf : own;
    uint64_t off = from;
    int rc = 0;
    while (rc == 0 && off < len) {
        size_t want = len - off < buf_size ? (size_t)(len - off) : buf_size;
        ssize_t n = pread(fd, chunk, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? err_set_errno(ERR_IO, errno, "could not read %s", what)
                       : err_set(ERR_IO, "%s is shorter than %llu bytes", what,
                                 (unsigned long long)len);
            break;
        }
        rc = sink(ctx, chunk, (size_t)n);
        off += (uint64_t)n;
    }
    free(own);
    return rc;
}

static int write_sink(void *ctx, const uint8_t *data, size_t len)
{
    return storage_write_data(ctx, data, len);
}

/* The synchronous write of a spooled body the driver declined (too big for one PUT):
 * copied through in pieces, so memory stays as small as the driver's write keeps it. */
static int put_from_fd(struct storage *s, const char *path, int fd, uint64_t len)
{
    struct storage_write *w = storage_write_open(s, path, len);
    if (!w)
        return err_code();
    int rc = storage_fd_pass(fd, len, NULL, SPOOL_COPY_BUF, "a file to upload", write_sink, w);
    if (rc < 0) {
        storage_write_abort(w);
        return rc;
    }
    return storage_write_commit(w);
}

int storage_batch_write_commit(struct storage_write *sw)
{
    struct batch_write *w = (struct batch_write *)sw;
    struct storage_batch *b = sw->batch;
    int rc = b->rc < 0 ? report(b) : make_room(b);
    if (rc < 0) {
        storage_write_abort(w->inner);
        batch_write_free(w);
        return rc;
    }
    struct batch_item *it = item_new(w->done, w->ctx);
    if (w->inner) {
        settle_sync(b, it, storage_write_commit(w->inner));
        batch_write_free(w);
        return 0;
    }
    if (w->fd >= 0) {
        it->fd = w->fd; /* the body lives as long as the transfer */
        w->fd = -1;
        rc = b->s->ops->async_put_fd(b->a, sw->path, it->fd, w->fd_len, it);
        if (rc == 1)
            settle_sync(b, it, put_from_fd(b->s, sw->path, it->fd, w->fd_len));
        else
            rc = started(b, it, rc);
        batch_write_free(w);
        return rc < 0 ? rc : 0;
    }
    it->data = w->data; /* the body lives as long as the transfer */
    memset(&w->data, 0, sizeof(w->data));
    rc = b->s->ops->async_put(b->a, sw->path, it->data.data, it->data.len, it);
    if (rc == 1)
        settle_sync(b, it, storage_write_all(b->s, sw->path, it->data.data, it->data.len));
    else
        rc = started(b, it, rc);
    batch_write_free(w);
    return rc < 0 ? rc : 0;
}

void storage_batch_write_abort(struct storage_write *sw)
{
    struct batch_write *w = (struct batch_write *)sw;
    storage_write_abort(w->inner);
    batch_write_free(w);
}

int storage_batch_wait(struct storage_batch *b)
{
    while (collect_one(b))
        ;
    return b->rc < 0 ? report(b) : 0;
}

void storage_batch_free(struct storage_batch *b)
{
    if (!b)
        return;
    if (b->a) {
        if (b->inflight)
            b->s->ops->async_cancel(b->a);
        while (collect_one(b))
            ;
        b->s->ops->async_free(b->a);
    }
    if (b->err) {
        struct err_saved *mine = err_save();
        err_restore(b->err);
        err_restore(mine);
    }
    free(b->spool_dir);
    free(b);
}
