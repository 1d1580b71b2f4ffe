/*
 * syncer.c — the files restore wrote, made durable on threads of their own.
 *
 * A file whose pieces are all down and whose digest matched is handed over here: its
 * mode and mtime are set, then it is fsynced (so that they are durable with its bytes),
 * closed and freed. Before, the piece that finished a file did that itself: on ext4
 * without a journal one fsync is the data, the inode's table block, the parent
 * directory's blocks and a cache flush of the device, one after the other (1.4–2 ms for
 * a small file here), and pgbench scale 100 has 980 files: about a third of the time a
 * worker slept was fsync, time in which it fetched and decoded nothing. Here several
 * fsyncs are in flight at once, and they are fewer writes, not only other threads: the
 * block layer merges the cache flushes that wait together, and files of one directory
 * share their inode-table and directory blocks, written once for all that wait on them
 * (600 small files: 0.11–0.12 s instead of 0.21–0.32 s, 260–411 device flushes instead of
 * 632–774).
 *
 * Nothing is weaker: every file is fsynced before the restore reports success; the
 * directories after all of them (writer.c waits for the syncer first); a failed fsync
 * stops the restore (the pieces check writer_failed) and is its error, naming the file.
 * Memory and descriptors stay bounded: at most SYNC_QUEUE files wait, each with its
 * descriptor, and a piece handing one over waits while the queue is full.
 */
#include "writer_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mode and mtime, then the fsync that makes them durable with the bytes. Never a setuid,
 * setgid or sticky bit (restore_vet refuses them on files). */
static int sync_one(struct writer *w, struct wfile *f)
{
    struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
    bool changed = atomic_load(&f->changed);
    int rc = 0;
    if (fchmod(f->fd, f->mode & 0777) < 0 || futimens(f->fd, ts) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not set the mode and time of \"%s/%s\"",
                           w->o->pgdata, f->path);
        goto out;
    }
    if (changed && fsync(f->fd) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s/%s\"", w->o->pgdata, f->path);
        goto out;
    }
    if (changed)
        atomic_fetch_add(&w->files_written, 1);
out:
    return rc;
}

/* A job: one file. After a failure (canceled) it is only closed and freed. */
static int run_sync(void *arg, void *local, void *job, bool canceled)
{
    struct writer *w = arg;
    struct wfile *f = job;
    (void)local;
    int rc = canceled ? 0 : sync_one(w, f);
    writer_file_free(f);
    return rc;
}

static const struct pool_ops sync_ops = {
    .what = "restore fsync",
    .run = run_sync,
    .on_cancel = writer_wake, /* the pieces see the failure in writer_failed */
};

int writer_start_syncer(struct writer *w)
{
    w->syncer = pool_new(&sync_ops, w, SYNC_THREADS, SYNC_QUEUE);
    return w->syncer ? 0 : err_code();
}

int writer_sync_file(struct writer *w, struct wfile *f)
{
    /* What only the check needed goes now: a file waiting here holds little. */
    free(f->chunks);
    f->chunks = NULL;
    free(f->plain);
    f->plain = NULL;
    int rc = pool_submit(w->syncer, f);
    if (rc < 0)
        writer_file_free(f); /* the syncer failed (on another file: its error is set) */
    return rc;
}

int writer_sync_wait(struct writer *w)
{
    if (!w->syncer)
        return 0;
    int rc = pool_wait(w->syncer);
    pool_free(w->syncer);
    w->syncer = NULL;
    return rc;
}
