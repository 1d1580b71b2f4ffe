/*
 * prefetch.c — wal-fetch's read-ahead: while the server replays segment N, the next
 * PREFETCH_DEPTH segments are already being fetched, in parallel, into a cache
 * directory beside DEST (pg_wal/.pgark-prefetch), so most calls only rename a file.
 *
 * Rules that keep the cache honest and small:
 *  - a file appears under its segment name only once it is complete and verified
 *    (written under a temporary name, fsynced, renamed — walfetch_object);
 *  - only complete archived segments are cached, never a padded .partial, which would
 *    go stale when the segment completes;
 *  - the cache holds at most the PREFETCH_DEPTH segments after the last one served
 *    (".want"); anything else — older, another timeline — is deleted;
 *  - one read-ahead process at a time (flock on ".lock"); at most one more waits for
 *    it (".waiter"), and picks up the newest ".want" when its turn comes.
 * The read-ahead process is detached (setsid, its own fds closed), so the server's
 * restore_command returns at once and a server shutdown does not wait for it.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFETCH_THREADS 4

static void fsync_dir_of(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

/* Delete cached segments outside (want, want + depth] of timeline want_tli; with
 * segno_known false, everything of another timeline or not after want_name. */
static void prune_cache(const char *cache_dir, const char *want_name, uint64_t last_keep_cmp_len,
                        const char *last_keep)
{
    DIR *d = opendir(cache_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!wal_is_segment_name(de->d_name))
            continue;
        bool stale = strncmp(de->d_name, want_name, 8) != 0 || strcmp(de->d_name, want_name) <= 0 ||
                     (last_keep && strncmp(de->d_name, last_keep, last_keep_cmp_len) > 0);
        if (stale) {
            char *p = xasprintf("%s/%s", cache_dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

int prefetch_consume(const char *cache_dir, const char *name, const char *dest)
{
    char *cached = xasprintf("%s/%s", cache_dir, name);
    int served = 0;
    if (rename(cached, dest) == 0) {
        fsync_dir_of(dest);
        served = 1;
    }
    free(cached);
    /* Whatever is not after this segment on this timeline will not be asked for. */
    prune_cache(cache_dir, name, 0, NULL);
    return served;
}

/* --- the read-ahead process ----------------------------------------------------------- */

struct want {
    timeline_t tli;
    uint64_t segno;
};

static bool read_want(const char *cache_dir, struct want *w)
{
    char *path = xasprintf("%s/.want", cache_dir);
    FILE *f = fopen(path, "r");
    free(path);
    if (!f)
        return false;
    unsigned tli = 0;
    unsigned long long segno = 0;
    bool ok = fscanf(f, "%u %llu", &tli, &segno) == 2 && tli > 0;
    fclose(f);
    w->tli = tli;
    w->segno = segno;
    return ok;
}

static void write_want(const char *cache_dir, timeline_t tli, uint64_t segno)
{
    char *tmp = xasprintf("%s/.want.%ld", cache_dir, (long)getpid());
    char *path = xasprintf("%s/.want", cache_dir);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%u %llu\n", tli, (unsigned long long)segno);
        if (fclose(f) == 0)
            (void)rename(tmp, path);
        else
            unlink(tmp);
    }
    free(tmp);
    free(path);
}

struct job {
    struct repo_set *set;
    const char *cache_dir;
    uint64_t seg_size;
    timeline_t tli;
    uint64_t *segnos;
    size_t n, next;
    bool stop;
    pthread_mutex_t lock;
};

static void *fetch_thread(void *arg)
{
    struct job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        if (j->stop || j->next >= j->n) {
            pthread_mutex_unlock(&j->lock);
            break;
        }
        uint64_t segno = j->segnos[j->next++];
        pthread_mutex_unlock(&j->lock);
        char name[WAL_NAME_BUFLEN], path[96], what[64];
        wal_segment_name(j->tli, segno, j->seg_size, name);
        repo_wal_path(j->tli, name, false, path, sizeof(path));
        snprintf(what, sizeof(what), "segment %s", name);
        char *dest = xasprintf("%s/%s", j->cache_dir, name);
        int rc = walfetch_object(j->set, path, dest, j->seg_size, false, what);
        free(dest);
        err_clear();
        if (rc <= 0) {
            /* The end of the archive (or a damaged copy, which the server's own request
             * will report): nothing further to read ahead. */
            pthread_mutex_lock(&j->lock);
            j->stop = true;
            pthread_mutex_unlock(&j->lock);
        }
    }
    return NULL;
}

static void remove_temps(const char *cache_dir)
{
    DIR *d = opendir(cache_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strncmp(de->d_name, ".pgark-fetch.", 13)) {
            char *p = xasprintf("%s/%s", cache_dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

static void read_ahead(struct repo_set *set, const char *cache_dir, uint64_t seg_size)
{
    /* Open every repo before threads share them. */
    for (size_t i = 0; i < set->n; i++) {
        if (!repo_set_get(set, i))
            err_clear();
    }
    remove_temps(cache_dir);
    for (int round = 0; round < 100000; round++) {
        struct want w;
        if (!read_want(cache_dir, &w))
            return;
        char first[WAL_NAME_BUFLEN], last[WAL_NAME_BUFLEN];
        wal_segment_name(w.tli, w.segno, seg_size, first);
        wal_segment_name(w.tli, w.segno + PREFETCH_DEPTH, seg_size, last);
        prune_cache(cache_dir, first, WAL_NAME_LEN, last);
        uint64_t segnos[PREFETCH_DEPTH];
        size_t n = 0;
        for (uint64_t s = w.segno + 1; s <= w.segno + PREFETCH_DEPTH; s++) {
            char name[WAL_NAME_BUFLEN];
            wal_segment_name(w.tli, s, seg_size, name);
            char *p = xasprintf("%s/%s", cache_dir, name);
            if (access(p, F_OK) != 0)
                segnos[n++] = s;
            free(p);
        }
        if (n == 0)
            return;
        struct job j = {
            set, cache_dir, seg_size, w.tli, segnos, n, 0, false, PTHREAD_MUTEX_INITIALIZER};
        pthread_t th[PREFETCH_THREADS];
        int started = 0;
        for (int i = 0; i < PREFETCH_THREADS && (size_t)i < n; i++) {
            if (pthread_create(&th[started], NULL, fetch_thread, &j) == 0)
                started++;
        }
        if (!started)
            fetch_thread(&j);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (j.stop)
            return;
    }
}

void prefetch_spawn(struct repo_set *set, const char *cache_dir, timeline_t tli, uint64_t segno,
                    uint64_t seg_size)
{
    if (mkdir(cache_dir, 0700) < 0 && errno != EEXIST)
        return;
    write_want(cache_dir, tli, segno);
    pid_t pid = fork();
    if (pid != 0)
        return; /* the parent (or a failed fork: no read-ahead, no harm) */

    /* The child: detach from the server's process group and descriptors. */
    setsid();
    struct rlimit rl;
    int maxfd =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 0; fd < maxfd; fd++)
        close(fd);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    /* Handles opened by the parent lost their descriptors: open afresh. */
    struct repo_set fresh = *set;
    fresh.storage = xcalloc(set->n ? set->n : 1, sizeof(*fresh.storage));
    fresh.repo = xcalloc(set->n ? set->n : 1, sizeof(*fresh.repo));

    char *lock_path = xasprintf("%s/.lock", cache_dir);
    char *waiter_path = xasprintf("%s/.waiter", cache_dir);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int waiter = -1;
    if (lock < 0)
        _exit(0);
    if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
        waiter = open(waiter_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (waiter < 0 || flock(waiter, LOCK_EX | LOCK_NB) < 0)
            _exit(0); /* one is running and one is waiting already */
        if (flock(lock, LOCK_EX) < 0)
            _exit(0);
        close(waiter); /* releases .waiter for the next one */
    }
    read_ahead(&fresh, cache_dir, seg_size);
    repo_set_free(&fresh);
    _exit(0);
}
