/*
 * sync.c — the posix driver's deferred directory syncs (storage_defer_sync_begin).
 *
 * A deferred write fsyncs its file before the rename, as every write does, but leaves
 * the fsync of the directory that now names it (and of the directories it created) to
 * posix_sync, which fsyncs each noted directory once. A backup of 1,850 chunks in 256
 * fan-out directories thus makes about 260 directory fsyncs instead of about 2,600.
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
#include "pgark/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

void posix_sync_init(struct storage_posix *p)
{
    pthread_mutex_init(&p->sync_lock, NULL);
    /* tests: the sync of every directory whose relative path starts with this fails */
    const char *fail = getenv("PGARK_TEST_FAIL_DIR_FSYNC");
    p->fail_dir = fail && *fail ? xstrdup(fail) : NULL;
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

/* Beyond this many per handle, directories are opened per write as before: a chunk
 * store has 256. */
#define POSIX_KEPT_MAX 1024

/* Descriptors kept by all handles of the process, at most a quarter of its limit on
 * open files (256 under the usual 1024): a backup into several repositories, each with
 * its 256 fan-out directories, must not run out of descriptors for this. */
static long kept_total;

static long kept_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 256;
    return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)(rl.rlim_cur / 4);
}

/* Under sync_lock. Scanned from the end, as note_one does. */
static int kept_find(struct storage_posix *p, const char *dir)
{
    for (size_t i = p->nkept; i-- > 0;)
        if (strcmp(p->kept[i].rel, dir) == 0)
            return p->kept[i].fd;
    return -1;
}

int posix_kept_dir(struct storage_posix *p, const char *dir)
{
    pthread_mutex_lock(&p->sync_lock);
    int fd = kept_find(p, dir);
    pthread_mutex_unlock(&p->sync_lock);
    return fd;
}

bool posix_keep_dir(struct storage_posix *p, const char *dir, int fd)
{
    bool kept = false;
    long limit = kept_limit(); /* once per directory kept: a few hundred per handle */
    pthread_mutex_lock(&p->sync_lock);
    if (p->nkept < POSIX_KEPT_MAX && kept_find(p, dir) < 0) {
        if (__atomic_add_fetch(&kept_total, 1, __ATOMIC_RELAXED) > limit) {
            __atomic_sub_fetch(&kept_total, 1, __ATOMIC_RELAXED);
            goto out;
        }
        if (p->nkept == p->kept_cap) {
            p->kept_cap = p->kept_cap ? p->kept_cap * 2 : 64;
            p->kept = xrealloc(p->kept, p->kept_cap * sizeof(*p->kept));
        }
        p->kept[p->nkept++] = (struct posix_kept_dir){xstrdup(dir), fd};
        kept = true;
    }
out:
    pthread_mutex_unlock(&p->sync_lock);
    return kept;
}

/* fsync the directory rel (under sync_lock): 0, or the errno with *what the step that
 * failed. */
static int sync_dir(struct storage_posix *p, const char *rel, const char **what)
{
    *what = "open directory";
    int kept = kept_find(p, rel);
    int fd = kept >= 0 ? kept : posix_dir_open(p, rel, false, NULL);
    if (fd < 0)
        return errno;
    int e = 0;
    *what = "fsync directory";
    if (p->fail_dir && strncmp(rel, p->fail_dir, strlen(p->fail_dir)) == 0)
        e = EIO;
    else if (posix_fsync(p, fd, true) < 0)
        e = errno;
    if (fd != kept)
        close(fd);
    return e;
}

/* Directories fsynced side by side at a sync: each fsync mostly waits for the device,
 * and a backup's chunk store notes up to 256 of them (one at a time they took a few
 * hundred milliseconds before a backup's WAL segment could be stored). A few (a WAL
 * segment's one directory) are fsynced on the calling thread. */
#define SYNC_THREADS 8
#define SYNC_INLINE_MAX 4

/* One sync's failures. A job is a slot of p->dirty. Every directory is fsynced even
 * after one failed (a job never fails the pool), and the failure kept is the one of
 * the lowest slot, so the directory named does not depend on the threads' timing. */
struct sync_pass {
    struct storage_posix *p;
    pthread_mutex_t lock;
    size_t failed; /* the lowest slot that failed, ndirty if none */
    const char *what;
    int err_no;
};

static int sync_job(void *arg, void *local, void *job, bool canceled)
{
    (void)local;
    struct sync_pass *sp = arg;
    if (canceled)
        return 0;
    size_t i = (size_t)((char **)job - sp->p->dirty);
    const char *what;
    int e = sync_dir(sp->p, sp->p->dirty[i], &what);
    if (e != 0) {
        pthread_mutex_lock(&sp->lock);
        if (i < sp->failed) {
            sp->failed = i;
            sp->what = what;
            sp->err_no = e;
        }
        pthread_mutex_unlock(&sp->lock);
    }
    return 0;
}

static const struct pool_ops sync_pool_ops = {.what = "directory sync", .run = sync_job};

/* Every noted directory fsynced, into sp (under sync_lock: the workers read p->dirty
 * and p->kept while the calling thread holds it for them). */
static void sync_noted(struct sync_pass *sp)
{
    struct storage_posix *p = sp->p;
    struct pool *pool = NULL;
    if (p->ndirty > SYNC_INLINE_MAX) {
        size_t n = p->ndirty / SYNC_INLINE_MAX;
        pool = pool_new(&sync_pool_ops, sp, n < SYNC_THREADS ? (int)n : SYNC_THREADS, p->ndirty);
        if (!pool)
            err_clear(); /* no thread: the calling one does them all */
    }
    pool_run_each(pool, &sync_pool_ops, sp, p->dirty, sizeof(*p->dirty), p->ndirty);
    pool_free(pool);
}

int posix_sync(struct storage *s)
{
    struct storage_posix *p = posix_of(s);
    int rc = 0;
    pthread_mutex_lock(&p->sync_lock);
    /* Held throughout: a sync that returns must find every directory noted before it
     * durable, including those another thread's sync is still fsyncing. */
    if (p->sync_failed)
        goto out;
    struct sync_pass sp = {.p = p, .failed = p->ndirty};
    pthread_mutex_init(&sp.lock, NULL);
    sync_noted(&sp);
    pthread_mutex_destroy(&sp.lock);
    if (sp.failed < p->ndirty) {
        p->sync_failed = xstrdup(p->dirty[sp.failed]);
        p->sync_failed_what = sp.what;
        p->sync_failed_errno = sp.err_no;
        goto out;
    }
    for (size_t i = 0; i < p->ndirty; i++)
        free(p->dirty[i]);
    p->ndirty = 0;
out:
    if (p->sync_failed)
        rc = posix_errno_error(p, p->sync_failed_errno, p->sync_failed_what, p->sync_failed);
    pthread_mutex_unlock(&p->sync_lock);
    return rc;
}

void posix_sync_free(struct storage_posix *p)
{
    if (!p->sync_failed && p->ndirty > 0) {
        struct err_saved *saved = err_save();
        if (posix_sync(&p->base) < 0) {
            err_context("in repository \"%s\"", p->base.name ? p->base.name : "");
            err_print_warn();
        }
        err_restore(saved);
    }
    for (size_t i = 0; i < p->ndirty; i++)
        free(p->dirty[i]);
    free(p->dirty);
    for (size_t i = 0; i < p->nkept; i++) {
        close(p->kept[i].fd);
        free(p->kept[i].rel);
    }
    __atomic_sub_fetch(&kept_total, (long)p->nkept, __ATOMIC_RELAXED);
    free(p->kept);
    p->kept = NULL;
    p->nkept = p->kept_cap = 0;
    free(p->sync_failed);
    free(p->fail_dir);
    p->dirty = NULL;
    p->ndirty = p->dirty_cap = 0;
    p->sync_failed = p->fail_dir = NULL;
    pthread_mutex_destroy(&p->sync_lock);
}
