/*
 * mem.h — allocation and growable buffers.
 *
 * Promise: the x* allocators never return NULL; on exhaustion they print one line
 * and abort (an archiver that cannot allocate a few bytes cannot make progress, and
 * a half-handled OOM is worse). Every *_free(NULL) is a no-op.
 */
#ifndef PGARK_MEM_H
#define PGARK_MEM_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Overwrite then free: for keys and passphrases. */
void secure_free(void *p, size_t n);
void secure_zero(void *p, size_t n);

/* A growable byte buffer; data is always NUL-terminated (not counted in len). */
struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append what is left of f, up to its end or a read error (a small file read whole). */
void buf_append_file(struct buf *b, FILE *f);
/* Append s (NULL: nothing) escaped for XML and HTML text and attribute values: & < > " '
 * as entities, control characters as numeric references. */
void buf_append_xml_escaped(struct buf *b, const char *s);
void buf_reset(struct buf *b);
/* Hand the data over to the caller (who frees it) and reset the buffer. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

/*
 * A reference to bytes allocated elsewhere (a received message), so that consumers on
 * other threads can keep parts of them without a copy. refbuf_new returns it with one
 * reference; the last refbuf_put calls release(data) and frees the refbuf. Counting is
 * atomic: references may be taken and dropped on any thread.
 */
struct refbuf;
struct refbuf *refbuf_new(void *data, void (*release)(void *data));
void refbuf_get(struct refbuf *r);
void refbuf_put(struct refbuf *r);

/*
 * One object per thread, made (zeroed, size bytes) the first time a thread asks for it
 * and passed to destroy, which frees it and what it holds, when that thread ends: for
 * the buffers and contexts a worker reuses from one call to the next. A slot has static
 * storage, initialised with THREAD_SLOT_INIT; any thread may ask at any time.
 *
 * This is the one way a module keeps a per-thread cache that owns memory or a library
 * handle (src/repo/object_read.c: the buffers of repo_object_read_into; src/compress/zstd.c:
 * the spare compression and decompression contexts), whichever thread runs it (a
 * pool's worker, pool.h, or any other): the cache is released when the thread ends,
 * by the slot's destroy, never by the code that used it. The HTTP engine's
 * thread-locals (src/http/engine.c) are markers that own nothing: the engine a thread
 * runs in, and a count of calls.
 */
struct thread_slot {
    size_t size;
    void (*destroy)(void *obj);
    pthread_mutex_t lock;
    atomic_bool ready;
    pthread_key_t key;
};

#define THREAD_SLOT_INIT(obj_size, destroy_fn)                                                     \
    {                                                                                              \
        .size = (obj_size), .destroy = (destroy_fn), .lock = PTHREAD_MUTEX_INITIALIZER             \
    }

void *thread_slot_get(struct thread_slot *s);

#endif
