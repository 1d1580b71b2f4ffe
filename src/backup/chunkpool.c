/*
 * pool.c — worker threads over a bounded set of buffers (see backup_int.h).
 *
 * Memory is nbufs * buf_size whatever the amount of data: the producer blocks in
 * pool_buffer until a worker gives one back. Errors live in a per-thread slot, so
 * a worker's failure is saved as text and kind and set again in the thread that
 * next asks the pool for anything.
 *
 * Wake-ups: one condition for the workers (a job arrived: one worker is signalled;
 * stop: all) and one for the threads that wait on the pool (a buffer came back, the
 * last job finished, a failure), signalled only while one of them waits. A single
 * broadcast condition woke every worker and the producer at every change: measured on
 * a second backup (every chunk hashed, few stored), about 20 context switches per
 * 1 MiB chunk and a tenth of the client's CPU in the scheduler.
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pool_item {
    struct chunk chunk;
    void *job;
};

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* a job arrived, or stop */
    pthread_cond_t changed; /* a buffer came back, a job finished, a failure */
    size_t waiting;         /* threads waiting on changed */
    pool_fn fn;
    void *arg;
    size_t buf_size;
    uint8_t **free_bufs; /* stack of free buffers */
    size_t nfree;
    size_t nbufs;
    struct pool_item *queue; /* ring of nbufs items */
    size_t qhead, qlen;
    size_t running; /* jobs taken by workers and not finished */
    bool stopping;
    enum err_kind fail_kind; /* ERR_OK while healthy */
    char *fail_text;
    pthread_t *threads;
    int nthreads;
};

int pool_default_workers(void)
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

/* Caller holds the lock. */
static int failure_locked(struct pool *p)
{
    return err_set(p->fail_kind, "%s", p->fail_text);
}

/* A buffer came back, a job finished or failed. Caller holds the lock. */
static void wake_waiters_locked(struct pool *p)
{
    if (p->waiting > 0)
        pthread_cond_broadcast(&p->changed);
}

/* Wait on changed. Caller holds the lock. */
static void wait_locked(struct pool *p)
{
    p->waiting++;
    pthread_cond_wait(&p->changed, &p->lock);
    p->waiting--;
}

static void *worker(void *arg)
{
    struct pool *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->qlen == 0 && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->qlen == 0)
            break;
        struct pool_item it = p->queue[p->qhead];
        p->qhead = (p->qhead + 1) % p->nbufs;
        p->qlen--;
        p->running++;
        bool skip = p->fail_kind != ERR_OK || p->stopping;
        pthread_mutex_unlock(&p->lock);

        int rc = p->fn(p->arg, it.job, &it.chunk, skip);
        char *text = NULL;
        enum err_kind kind = ERR_OK;
        if (rc < 0 && !skip) {
            kind = err_is_set() ? err_kind() : ERR_RUNTIME;
            text = err_is_set() ? err_format() : xstrdup("a backup worker failed");
            err_clear();
        }

        pthread_mutex_lock(&p->lock);
        if (text && p->fail_kind == ERR_OK) {
            p->fail_kind = kind;
            p->fail_text = text;
            text = NULL;
        }
        free(text);
        p->free_bufs[p->nfree++] = it.chunk.data;
        p->running--;
        wake_waiters_locked(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct pool *pool_new(int nworkers, size_t nbufs, size_t buf_size, pool_fn fn, void *arg)
{
    struct pool *p = xcalloc(1, sizeof(*p));

    if (nworkers < 1)
        nworkers = 1;
    if (nbufs < 1)
        nbufs = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->changed, NULL);
    p->fn = fn;
    p->arg = arg;
    p->buf_size = buf_size;
    p->nbufs = nbufs;
    p->free_bufs = xcalloc(nbufs, sizeof(*p->free_bufs));
    p->queue = xcalloc(nbufs, sizeof(*p->queue));
    /* Buffers are allocated up front: the bound is visible in one place. */
    for (size_t i = 0; i < nbufs; i++)
        p->free_bufs[p->nfree++] = xmalloc(buf_size);
    p->threads = xcalloc((size_t)nworkers, sizeof(*p->threads));
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        err_set(ERR_RUNTIME, "could not start a backup worker thread");
        pool_free(p);
        return NULL;
    }
    return p;
}

uint8_t *pool_buffer(struct pool *p)
{
    uint8_t *buf = NULL;

    pthread_mutex_lock(&p->lock);
    while (p->nfree == 0 && p->fail_kind == ERR_OK)
        wait_locked(p);
    if (p->fail_kind != ERR_OK)
        failure_locked(p);
    else
        buf = p->free_bufs[--p->nfree];
    pthread_mutex_unlock(&p->lock);
    return buf;
}

void pool_release(struct pool *p, uint8_t *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&p->lock);
    p->free_bufs[p->nfree++] = buf;
    wake_waiters_locked(p);
    pthread_mutex_unlock(&p->lock);
}

int pool_submit(struct pool *p, const struct chunk *chunk, void *job)
{
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    if (p->fail_kind != ERR_OK) {
        struct chunk dropped = *chunk;
        chunk_release(&dropped);
        p->free_bufs[p->nfree++] = chunk->data;
        rc = failure_locked(p);
    } else {
        /* At most nbufs buffers exist, so the ring never overflows. */
        p->queue[(p->qhead + p->qlen) % p->nbufs] = (struct pool_item){*chunk, job};
        p->qlen++;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pool_wait(struct pool *p)
{
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    while (p->qlen > 0 || p->running > 0)
        wait_locked(p);
    if (p->fail_kind != ERR_OK)
        rc = failure_locked(p);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* Workers drained the queue (skipping the jobs) and gave every buffer back. */
    for (size_t i = 0; i < p->nfree; i++)
        secure_free(p->free_bufs[i], p->buf_size); /* plaintext of data files */
    free(p->free_bufs);
    free(p->queue);
    free(p->threads);
    free(p->fail_text);
    pthread_cond_destroy(&p->changed);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
