/*
 * pool.h — worker threads over a bounded queue of jobs, and the one way an error crosses
 * from a worker to the thread that waits on it.
 *
 * Promise: pool_new starts nthreads workers (fewer when the system refuses some, at
 * least one). Jobs leave the queue in the order they were submitted, each taken by
 * whichever worker is free; the order in which they finish is not kept (a user that
 * needs one keeps it itself: the restore writer's hash turn). The queue holds at most
 * depth jobs and pool_submit blocks while it is full: with the jobs' memory owned by the
 * jobs, that is what bounds it. Wake-ups are counted, not broadcast: a submitted job wakes
 * one worker, and the threads waiting on the pool (for room, for the end) are woken only
 * while one waits (a broadcast at every change cost a backup about 20 context switches
 * per 1 MiB chunk).
 *
 * Errors: the error slot is per thread (error.h). The first job whose run fails has its
 * worker's whole slot (message, context, hint) moved into the pool with err_save; from
 * then on the pool is cancelled: jobs still queued and jobs submitted later are handed to
 * run with canceled true (so that it releases what they own, and does nothing else), and
 * pool_submit, pool_wait and pool_raise set a copy of that error in the caller's slot
 * and return its code. The caller may cancel with an error of its own (pool_fail).
 *
 * Per-thread state: thread_init makes a worker's own state (a buffer) as it starts and
 * thread_fini releases it as it ends; caches kept across calls by the modules a job
 * calls use thread_slot (mem.h) and are released when the worker ends.
 */
#ifndef PGARK_POOL_H
#define PGARK_POOL_H

#include <stdbool.h>
#include <stddef.h>

struct pool_ops {
    /* For messages: "could not start a <what> thread". */
    const char *what;
    /* One job, on a worker. 0, or negative with the error set in the worker's slot
     * (it becomes the pool's first failure). With canceled true: only release the job. */
    int (*run)(void *arg, void *local, void *job, bool canceled);
    /* Optional: the worker's own state (local), made as it starts, released as it ends. */
    void *(*thread_init)(void *arg);
    void (*thread_fini)(void *arg, void *local);
    /* Optional, called once on the thread that cancels the pool (a failing worker or
     * pool_fail): wake whatever of arg's own waits on a job (the writer's hash turn). */
    void (*on_cancel)(void *arg);
};

struct pool;

/* A pool of nthreads workers (>= 1) and a queue of depth jobs (>= 1). NULL with
 * ERR_RUNTIME when not one thread could start. */
struct pool *pool_new(const struct pool_ops *ops, void *arg, int nthreads, size_t depth);
/* Queue job, blocking while the queue is full. 0, or the pool's failure (set in the
 * caller's slot): then the job was not queued and is still the caller's. */
int pool_submit(struct pool *p, void *job);
/* Wait until every job submitted has run. 0, or the pool's first failure. */
int pool_wait(struct pool *p);
/* Whether the pool has failed (cheap: for long jobs that stop early). */
bool pool_canceled(const struct pool *p);
/* Cancel the pool with the caller's error (moved out of its slot, which is left
 * clear), unless a failure came first (then the caller's is dropped). */
void pool_fail(struct pool *p);
/* The pool's first failure set in the caller's slot (its code), or 0. */
int pool_raise(const struct pool *p);
/* For jobs that keep their own outcome (run always returns 0, so the pool is never
 * cancelled): run each of n jobs, job i being base + i * size, on p's workers, or on the
 * calling thread (local NULL) when p is NULL, and return once every one has run. */
void pool_run_each(struct pool *p, const struct pool_ops *ops, void *arg, void *base, size_t size,
                   size_t n);
/* Threads started. */
int pool_threads(const struct pool *p);
/* Cancel what is still queued (run with canceled true), stop and join the workers,
 * free. pool_free(NULL) is a no-op. */
void pool_free(struct pool *p);

#endif
