/*
 * pool.c — worker threads over a bounded queue of jobs (see pool.h).
 *
 * One lock; three conditions: work (a job arrived: one worker is signalled; stop: all),
 * room (a job left the full queue: the producer, signalled only while it waits) and idle
 * (the last job finished, or a failure: signalled only while a thread waits in
 * pool_wait). A producer waiting for room is not woken when a job finishes, nor a
 * waiter for the end at every job. The first failure is a struct err_saved: the failing worker's
 * slot as it was, copied into each thread that asks the pool for anything afterwards.
 */
#include "pgark/pool.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct pool {
    const struct pool_ops *ops;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job arrived, or stop */
    pthread_cond_t room; /* a job left the queue, or a failure */
    pthread_cond_t idle; /* nothing queued or running, or a failure */
    size_t room_waiters, idle_waiters;
    void **queue; /* ring of depth jobs */
    size_t depth, qhead, qlen;
    size_t running; /* jobs taken by workers and not finished */
    bool stopping;
    atomic_bool canceled;
    struct err_saved *failure; /* the first, under lock */
    pthread_t *threads;
    int nthreads;
};

/* A failure: every waiter looks again. Caller holds the lock. */
static void wake_all_locked(struct pool *p)
{
    if (p->room_waiters > 0)
        pthread_cond_broadcast(&p->room);
    if (p->idle_waiters > 0)
        pthread_cond_broadcast(&p->idle);
}

/* The caller's slot (cleared) becomes the pool's failure unless one came first. */
static void record_failure(struct pool *p)
{
    if (!err_is_set())
        err_set(ERR_RUNTIME, "a %s thread failed", p->ops->what);
    struct err_saved *saved = err_save();
    bool first = false;
    pthread_mutex_lock(&p->lock);
    if (!p->failure) {
        p->failure = saved;
        saved = NULL;
        first = true;
        atomic_store(&p->canceled, true);
        wake_all_locked(p);
    }
    pthread_mutex_unlock(&p->lock);
    err_saved_free(saved);
    if (first && p->ops->on_cancel)
        p->ops->on_cancel(p->arg);
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    void *local = p->ops->thread_init ? p->ops->thread_init(p->arg) : NULL;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->qlen == 0 && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->qlen == 0)
            break;
        void *job = p->queue[p->qhead];
        p->qhead = (p->qhead + 1) % p->depth;
        p->qlen--;
        p->running++;
        bool canceled = atomic_load(&p->canceled);
        if (p->room_waiters > 0)
            pthread_cond_signal(&p->room);
        pthread_mutex_unlock(&p->lock);

        int rc = p->ops->run(p->arg, local, job, canceled);
        if (rc < 0 && !canceled)
            record_failure(p);
        else if (rc < 0)
            err_clear();

        pthread_mutex_lock(&p->lock);
        p->running--;
        if (p->running == 0 && p->qlen == 0 && p->idle_waiters > 0)
            pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    if (p->ops->thread_fini)
        p->ops->thread_fini(p->arg, local);
    return NULL;
}

struct pool *pool_new(const struct pool_ops *ops, void *arg, int nthreads, size_t depth)
{
    struct pool *p = xcalloc(1, sizeof(*p));
    if (nthreads < 1)
        nthreads = 1;
    if (depth < 1)
        depth = 1;
    p->ops = ops;
    p->arg = arg;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->room, NULL);
    pthread_cond_init(&p->idle, NULL);
    atomic_init(&p->canceled, false);
    p->depth = depth;
    p->queue = xcalloc(depth, sizeof(*p->queue));
    p->threads = xcalloc((size_t)nthreads, sizeof(*p->threads));
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker, p) != 0)
            break; /* fewer threads will do */
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        pool_free(p);
        err_set(ERR_RUNTIME, "could not start a %s thread", ops->what);
        return NULL;
    }
    return p;
}

/* Caller holds the lock. */
static int raise_locked(const struct pool *p)
{
    err_restore(err_saved_copy(p->failure));
    return err_code();
}

int pool_submit(struct pool *p, void *job)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (p->qlen == p->depth && !p->failure) {
        p->room_waiters++;
        pthread_cond_wait(&p->room, &p->lock);
        p->room_waiters--;
    }
    if (p->failure) {
        rc = raise_locked(p);
    } else {
        p->queue[(p->qhead + p->qlen) % p->depth] = job;
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
    while (p->qlen > 0 || p->running > 0) {
        p->idle_waiters++;
        pthread_cond_wait(&p->idle, &p->lock);
        p->idle_waiters--;
    }
    if (p->failure)
        rc = raise_locked(p);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

bool pool_canceled(const struct pool *p)
{
    return atomic_load(&p->canceled);
}

void pool_fail(struct pool *p)
{
    record_failure(p);
}

int pool_raise(const struct pool *p)
{
    struct pool *q = (struct pool *)p;
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    if (q->failure)
        rc = raise_locked(q);
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int pool_threads(const struct pool *p)
{
    return p->nthreads;
}

void pool_run_each(struct pool *p, const struct pool_ops *ops, void *arg, void *base, size_t size,
                   size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void *job = (char *)base + i * size;
        if (!p || pool_submit(p, job) < 0) {
            err_clear(); /* none: the jobs never fail the pool */
            ops->run(arg, NULL, job, false);
        }
    }
    if (p)
        pool_wait(p);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    atomic_store(&p->canceled, true); /* what is still queued is dropped */
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    err_saved_free(p->failure);
    free(p->queue);
    free(p->threads);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
