/*
 * sync.c — the posix driver's deferred writes (storage_defer_sync_begin).
 *
 * A deferred write is written to its temporary name and handed over, unsynced, at its
 * commit (posix_sync_defer). When POSIX_PENDING_MAX are held a flusher thread, and
 * every sync, publishes them as a batch (posix_flush): every file fsynced (from a few
 * threads, so the device and a journal get them together), then each renamed over its
 * name; the writers go on meanwhile, and wait only while POSIX_PENDING_LIMIT are
 * pending. So a chunk's final name, whoever lists it, always
 * holds durable content: a crash before the flush leaves temporary files, which list
 * skips and nothing counts. The fsync of the directories that now name them (and of
 * the directories the writes created) waits for posix_sync, once per directory: a
 * backup of 1,850 chunks in 256 fan-out directories makes about 260 directory fsyncs
 * instead of about 2,600.
 *
 * Through the same handle a deferred object is found as soon as its commit returned:
 * the generic layer flushes before a list or a remove, and again when a read or a stat
 * finds nothing (storage_ops.flush).
 *
 * A failed directory fsync is kept: after one, the kernel may have dropped the dirty
 * buffers and marked them clean, so a second fsync of the same directory could return
 * success for entries that were never written. Every later sync reports the first
 * failure, and so does every write that is not deferred (the generic layer syncs
 * before it), until the handle is freed.
 */
#include "posix_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void posix_sync_init(struct storage_posix *p)
{
    pthread_mutex_init(&p->sync_lock, NULL);
    pthread_mutex_init(&p->flush_lock, NULL);
    pthread_cond_init(&p->flush_cond, NULL);
    pthread_cond_init(&p->space_cond, NULL);
    p->flusher_started = p->flusher_stop = false;
    /* tests: the sync of every directory (file) whose relative path starts with this
     * fails */
    const char *fail = getenv("PGARK_TEST_FAIL_DIR_FSYNC");
    p->fail_dir = fail && *fail ? xstrdup(fail) : NULL;
    fail = getenv("PGARK_TEST_FAIL_FILE_FSYNC");
    p->fail_file = fail && *fail ? xstrdup(fail) : NULL;
}

int posix_fsync(struct storage_posix *p, int fd, bool dir)
{
    __atomic_add_fetch(dir ? &p->fsyncs_dir : &p->fsyncs_file, 1, __ATOMIC_RELAXED);
    return fsync(fd);
}

/* Under sync_lock. Few directories (a chunk store has 256 below one parent), most
 * writes land in one noted recently: a scan from the end is enough. */
static void note_one(struct storage_posix *p, const char *dir, size_t len)
{
    for (size_t i = p->ndirty; i-- > 0;)
        if (strlen(p->dirty[i]) == len && memcmp(p->dirty[i], dir, len) == 0)
            return;
    if (p->ndirty == p->dirty_cap) {
        p->dirty_cap = p->dirty_cap ? p->dirty_cap * 2 : 64;
        p->dirty = xrealloc(p->dirty, p->dirty_cap * sizeof(*p->dirty));
    }
    p->dirty[p->ndirty++] = xstrndup(dir, len);
}

void posix_sync_note(struct storage_posix *p, const char *dir, bool made)
{
    pthread_mutex_lock(&p->sync_lock);
    note_one(p, dir, strlen(dir));
    if (made) {
        note_one(p, "", 0);
        for (const char *c = dir; *c; c++)
            if (*c == '/')
                note_one(p, dir, (size_t)(c - dir));
    }
    pthread_mutex_unlock(&p->sync_lock);
}

/* --- deferred files ----------------------------------------------------------- */

static void pending_drop(struct posix_pending *w, bool unlink_tmp)
{
    if (w->fd >= 0)
        close(w->fd);
    if (unlink_tmp && w->dir_fd >= 0)
        unlinkat(w->dir_fd, w->tmp, 0);
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    free(w->tmp);
    free(w->name);
    free(w->dir);
    free(w->path);
}

/* Under sync_lock: the first failure to make something durable, kept. */
static void keep_failure(struct storage_posix *p, const char *rel, const char *what, int e)
{
    if (p->sync_failed)
        return;
    p->sync_failed = xstrdup(rel);
    p->sync_failed_what = what;
    p->sync_failed_errno = e;
}

static int kept_failure(struct storage_posix *p)
{
    return posix_errno_error(p, p->sync_failed_errno, p->sync_failed_what, p->sync_failed);
}

static void *flusher_main(void *arg)
{
    struct storage_posix *p = arg;
    pthread_mutex_lock(&p->sync_lock);
    for (;;) {
        while (!p->flusher_stop && p->npending < POSIX_PENDING_MAX)
            pthread_cond_wait(&p->flush_cond, &p->sync_lock);
        if (p->flusher_stop) /* what is left goes with the last sync */
            break;
        pthread_mutex_unlock(&p->sync_lock);
        /* a failure is kept for the writers' next commit and the sync to report */
        posix_flush(&p->base);
        err_clear();
        pthread_mutex_lock(&p->sync_lock);
    }
    pthread_mutex_unlock(&p->sync_lock);
    return NULL;
}

int posix_sync_defer(struct storage_posix *p, struct posix_pending *w)
{
    int rc = 0;
    bool inline_flush = false;
    pthread_mutex_lock(&p->sync_lock);
    while (!p->sync_failed && p->flusher_started && p->npending >= POSIX_PENDING_LIMIT) {
        pthread_cond_signal(&p->flush_cond);
        pthread_cond_wait(&p->space_cond, &p->sync_lock);
    }
    if (p->sync_failed) {
        rc = kept_failure(p);
    } else {
        if (p->npending == p->pending_cap) {
            p->pending_cap = p->pending_cap ? p->pending_cap * 2 : POSIX_PENDING_MAX;
            p->pending = xrealloc(p->pending, p->pending_cap * sizeof(*p->pending));
        }
        p->pending[p->npending++] = *w;
        if (p->npending >= POSIX_PENDING_MAX) {
            if (!p->flusher_started && pthread_create(&p->flusher, NULL, flusher_main, p) == 0)
                p->flusher_started = true;
            if (p->flusher_started)
                pthread_cond_signal(&p->flush_cond);
            else
                inline_flush = true; /* no thread: this writer flushes */
        }
    }
    pthread_mutex_unlock(&p->sync_lock);
    if (rc < 0) {
        pending_drop(w, true);
        return rc;
    }
    return inline_flush && posix_flush(&p->base) < 0 ? err_code() : 0;
}

struct flush_work {
    struct storage_posix *p;
    struct posix_pending *batch;
    size_t n;
    size_t next; /* atomic: the next file to fsync */
};

static void *flush_files(void *arg)
{
    struct flush_work *fw = arg;
    struct storage_posix *p = fw->p;
    size_t i;
    while ((i = __atomic_fetch_add(&fw->next, 1, __ATOMIC_RELAXED)) < fw->n) {
        struct posix_pending *w = &fw->batch[i];
        __atomic_add_fetch(&p->fsyncs_file, 1, __ATOMIC_RELAXED);
        if (p->fail_file && strncmp(w->path, p->fail_file, strlen(p->fail_file)) == 0)
            w->err = EIO;
        else if (fdatasync(w->fd) < 0)
            w->err = errno;
    }
    return NULL;
}

/* fsync every file of the batch, from up to POSIX_FLUSH_THREADS threads. */
static void flush_fsync_all(struct storage_posix *p, struct posix_pending *batch, size_t n)
{
    struct flush_work fw = {.p = p, .batch = batch, .n = n};
    pthread_t th[POSIX_FLUSH_THREADS - 1];
    size_t nth = 0;
    for (size_t k = 1; k < POSIX_FLUSH_THREADS && k < n; k++) {
        /* a thread that cannot start leaves its share to the others */
        if (pthread_create(&th[nth], NULL, flush_files, &fw) == 0)
            nth++;
    }
    flush_files(&fw);
    for (size_t k = 0; k < nth; k++)
        pthread_join(th[k], NULL);
}

int posix_flush(struct storage *s)
{
    struct storage_posix *p = posix_of(s);
    struct posix_pending *batch;
    size_t n;
    int rc = 0;

    pthread_mutex_lock(&p->flush_lock);
    pthread_mutex_lock(&p->sync_lock);
    batch = p->pending;
    n = p->npending;
    p->pending = NULL;
    p->npending = p->pending_cap = 0;
    bool failed = p->sync_failed != NULL;
    pthread_cond_broadcast(&p->space_cond);
    pthread_mutex_unlock(&p->sync_lock);

    if (!failed && n > 0) {
        /* tests: a process killed here leaves temporary files only */
        testhook_pause("PGARK_TEST_PAUSE_FLUSH", "before publishing deferred writes");
        flush_fsync_all(p, batch, n);
    }
    size_t i = 0;
    for (; !failed && i < n; i++) {
        struct posix_pending *w = &batch[i];
        const char *what = "fsync";
        if (w->err == 0) {
            what = "rename temporary file to";
            if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->name) < 0)
                w->err = errno;
        }
        if (w->err != 0) {
            pthread_mutex_lock(&p->sync_lock);
            keep_failure(p, w->path, what, w->err);
            pthread_cond_broadcast(&p->space_cond); /* waiting writers: fail now */
            pthread_mutex_unlock(&p->sync_lock);
            failed = true;
            break; /* w and the rest are thrown away below */
        }
        __atomic_add_fetch(&p->flushed, 1, __ATOMIC_RELAXED);
        posix_sync_note(p, w->dir, w->made_dirs);
        pending_drop(w, false);
    }
    for (; i < n; i++)
        pending_drop(&batch[i], true);
    free(batch);
    if (failed) {
        pthread_mutex_lock(&p->sync_lock);
        rc = kept_failure(p);
        pthread_mutex_unlock(&p->sync_lock);
    } else {
        rc = n > 0;
    }
    pthread_mutex_unlock(&p->flush_lock);
    return rc;
}

/* --- directories --------------------------------------------------------------- */

/* fsync the directory rel: 0, or the errno with *what the step that failed. */
static int sync_dir(struct storage_posix *p, const char *rel, const char **what)
{
    *what = "open directory";
    int fd = posix_dir_open(p, rel, false, NULL);
    if (fd < 0)
        return errno;
    int e = 0;
    *what = "fsync directory";
    if (p->fail_dir && strncmp(rel, p->fail_dir, strlen(p->fail_dir)) == 0)
        e = EIO;
    else if (posix_fsync(p, fd, true) < 0)
        e = errno;
    close(fd);
    return e;
}

int posix_sync(struct storage *s)
{
    struct storage_posix *p = posix_of(s);
    int rc = posix_flush(s);
    if (rc < 0)
        return rc;
    rc = 0;
    /* tests: killed here, the objects are under their names, durable, and the entries
     * naming them wait for the kernel's own write-back */
    pthread_mutex_lock(&p->sync_lock);
    if (p->ndirty > 0) {
        pthread_mutex_unlock(&p->sync_lock);
        testhook_pause("PGARK_TEST_PAUSE_DIR_SYNC",
                       "before fsyncing the directories of deferred writes");
        pthread_mutex_lock(&p->sync_lock);
    }
    /* Held throughout: a sync that returns must find every directory noted before it
     * durable, including those another thread's sync is still fsyncing. */
    if (p->sync_failed)
        goto out;
    for (size_t i = 0; i < p->ndirty; i++) {
        const char *what;
        int e = sync_dir(p, p->dirty[i], &what);
        if (e != 0) {
            keep_failure(p, p->dirty[i], what, e);
            goto out;
        }
    }
    for (size_t i = 0; i < p->ndirty; i++)
        free(p->dirty[i]);
    p->ndirty = 0;
out:
    if (p->sync_failed)
        rc = kept_failure(p);
    pthread_mutex_unlock(&p->sync_lock);
    return rc;
}

void posix_sync_free(struct storage_posix *p)
{
    pthread_mutex_lock(&p->sync_lock);
    bool started = p->flusher_started;
    p->flusher_stop = true;
    pthread_cond_signal(&p->flush_cond);
    pthread_mutex_unlock(&p->sync_lock);
    if (started)
        pthread_join(p->flusher, NULL);
    p->flusher_started = false;
    if (!p->sync_failed && (p->ndirty > 0 || p->npending > 0)) {
        struct err_saved *saved = err_save();
        if (posix_sync(&p->base) < 0) {
            err_context("in repository \"%s\"", p->base.name ? p->base.name : "");
            err_print_warn();
        }
        err_restore(saved);
    }
    /* after a failure: what was pending is thrown away, as a failed write is */
    for (size_t i = 0; i < p->npending; i++)
        pending_drop(&p->pending[i], true);
    free(p->pending);
    for (size_t i = 0; i < p->ndirty; i++)
        free(p->dirty[i]);
    free(p->dirty);
    free(p->sync_failed);
    free(p->fail_dir);
    free(p->fail_file);
    p->pending = NULL;
    p->npending = p->pending_cap = 0;
    p->dirty = NULL;
    p->ndirty = p->dirty_cap = 0;
    p->sync_failed = p->fail_dir = p->fail_file = NULL;
    pthread_cond_destroy(&p->flush_cond);
    pthread_cond_destroy(&p->space_cond);
    pthread_mutex_destroy(&p->flush_lock);
    pthread_mutex_destroy(&p->sync_lock);
}
