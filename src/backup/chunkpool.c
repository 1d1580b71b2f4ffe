/*
 * chunkpool.c — the backup's workers: the common pool (pool.h) over a bounded set of
 * chunk buffers (see backup_int.h).
 *
 * Memory is at most nbufs * buf_size whatever the amount of data: the producer blocks in
 * chunk_pool_buffer until a worker gives one back. The pool's queue is nbufs deep, so
 * submitting never waits: a buffer is what the producer waits for. Errors cross threads
 * the pool's way (the failing worker's slot, copied into the producer's).
 *
 * A buffer is allocated when the producer first needs one and none is free, not up front:
 * a backup that changes little (an incremental after a small update) uses a few of its
 * 12 MiB, and the wipe at the end (secure_free: they held data files' plaintext) then
 * only covers buffers that held something. Wiping untouched buffers faulted every page
 * of them in just to zero it: 16% of the client CPU of an incremental of nothing
 * (PostgreSQL 17, scale 100, perf), about 20 ms.
 *
 * Wake-ups: a worker that gives a buffer back signals only while the producer waits for
 * one (see pool.h for the pool's own).
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct chunk_job {
    struct chunk chunk;
    void *job;
};

struct chunk_pool {
    struct pool *pool;
    chunk_pool_fn fn;
    void *arg;
    size_t buf_size;
    pthread_mutex_t lock;
    pthread_cond_t back; /* a buffer came back, or the pool failed */
    size_t waiting;      /* threads waiting on back */
    uint8_t **free_bufs; /* stack of free buffers */
    size_t nfree, nbufs;
    size_t nmade; /* buffers allocated so far, at most nbufs */
};

int chunk_pool_default_workers(void)
{
    /* Storing a chunk waits on fsync (posix) or on the network (S3) more than it
     * computes: with one thread per core a 2-core machine spent two thirds of a backup
     * idle. Four per core, measured: 8.5 s -> 6.0 s for 337 MiB on 2 cores. */
    long n = sysconf(_SC_NPROCESSORS_ONLN) * 4;
    if (n < 4)
        n = 4;
    if (n > 32)
        n = 32;
    return (int)n;
}

static void give_back(struct chunk_pool *cp, uint8_t *buf)
{
    pthread_mutex_lock(&cp->lock);
    cp->free_bufs[cp->nfree++] = buf;
    if (cp->waiting > 0)
        pthread_cond_signal(&cp->back);
    pthread_mutex_unlock(&cp->lock);
}

static int run_chunk(void *arg, void *local, void *job, bool canceled)
{
    struct chunk_pool *cp = arg;
    struct chunk_job *cj = job;
    (void)local;
    int rc = cp->fn(cp->arg, cj->job, &cj->chunk, canceled);
    give_back(cp, cj->chunk.data);
    free(cj);
    return rc;
}

static void wake_producer(void *arg)
{
    struct chunk_pool *cp = arg;
    pthread_mutex_lock(&cp->lock);
    pthread_cond_broadcast(&cp->back);
    pthread_mutex_unlock(&cp->lock);
}

static const struct pool_ops chunk_pool_ops = {
    .what = "backup worker",
    .run = run_chunk,
    .on_cancel = wake_producer,
};

struct chunk_pool *chunk_pool_new(int nworkers, size_t nbufs, size_t buf_size, chunk_pool_fn fn,
                                  void *arg)
{
    struct chunk_pool *cp = xcalloc(1, sizeof(*cp));
    if (nbufs < 1)
        nbufs = 1;
    cp->fn = fn;
    cp->arg = arg;
    cp->buf_size = buf_size;
    cp->nbufs = nbufs;
    pthread_mutex_init(&cp->lock, NULL);
    pthread_cond_init(&cp->back, NULL);
    cp->free_bufs = xcalloc(nbufs, sizeof(*cp->free_bufs));
    cp->pool = pool_new(&chunk_pool_ops, cp, nworkers, nbufs);
    if (!cp->pool) {
        chunk_pool_free(cp);
        return NULL;
    }
    return cp;
}

uint8_t *chunk_pool_buffer(struct chunk_pool *cp)
{
    uint8_t *buf = NULL;
    pthread_mutex_lock(&cp->lock);
    if (cp->nfree == 0 && cp->nmade < cp->nbufs && !pool_canceled(cp->pool)) {
        cp->free_bufs[cp->nfree++] = xmalloc(cp->buf_size);
        cp->nmade++;
    }
    while (cp->nfree == 0 && !pool_canceled(cp->pool)) {
        cp->waiting++;
        pthread_cond_wait(&cp->back, &cp->lock);
        cp->waiting--;
    }
    if (!pool_canceled(cp->pool))
        buf = cp->free_bufs[--cp->nfree];
    pthread_mutex_unlock(&cp->lock);
    if (!buf)
        pool_raise(cp->pool);
    return buf;
}

void chunk_pool_release(struct chunk_pool *cp, uint8_t *buf)
{
    if (buf)
        give_back(cp, buf);
}

int chunk_pool_submit(struct chunk_pool *cp, const struct chunk *chunk, void *job)
{
    struct chunk_job *cj = xmalloc(sizeof(*cj));
    cj->chunk = *chunk;
    cj->job = job;
    int rc = pool_submit(cp->pool, cj);
    if (rc < 0) {
        /* Not queued: the pool drops it. */
        chunk_release(&cj->chunk);
        give_back(cp, chunk->data);
        free(cj);
    }
    return rc;
}

int chunk_pool_wait(struct chunk_pool *cp)
{
    return pool_wait(cp->pool);
}

size_t chunk_pool_buffers_made(struct chunk_pool *cp)
{
    pthread_mutex_lock(&cp->lock);
    size_t n = cp->nmade;
    pthread_mutex_unlock(&cp->lock);
    return n;
}

void chunk_pool_free(struct chunk_pool *cp)
{
    if (!cp)
        return;
    /* Workers drop what is queued (the jobs run cancelled) and give every buffer back:
     * the free stack holds every buffer made. */
    pool_free(cp->pool);
    for (size_t i = 0; i < cp->nfree; i++)
        secure_free(cp->free_bufs[i], cp->buf_size); /* plaintext of data files */
    free(cp->free_bufs);
    pthread_cond_destroy(&cp->back);
    pthread_mutex_destroy(&cp->lock);
    free(cp);
}
