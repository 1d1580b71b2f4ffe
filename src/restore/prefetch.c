/*
 * prefetch.c — wal-fetch's read-ahead: a rolling window. While the server replays
 * segment N, a background process keeps the `depth` segments after the last one served
 * fetched, a few in parallel, into a cache directory beside DEST (pg_wal/.pgark-prefetch),
 * so that the next restore_command call finds its segment there and only renames it.
 * Each call records the segment it served (".want"); the read-ahead process watches
 * that file and, as the window slides, starts the segments that entered it — it does
 * not wait for a batch to finish.
 *
 * Rules that keep the cache honest and small:
 *  - a file appears under its segment name only once it is complete and verified
 *    (written under a temporary name, renamed — walobject_fetch, walobject.c);
 *  - only complete archived segments are cached, never a padded .partial, which would
 *    go stale when the segment completes;
 *  - the cache holds at most the `depth` segments after the last one served, on its
 *    timeline; anything else — older, another timeline — is deleted when the window
 *    moves and when a segment is served;
 *  - one read-ahead process at a time: it holds an flock on ".lock" for its life. A
 *    wal-fetch call that finds the lock taken only updates ".want", which the running
 *    process picks up. The process leaves after a while without a new ".want" (or when
 *    the cache directory is gone); before it goes it drops the lock and looks at ".want"
 *    once more, so a call that found the lock taken just then is not left unserved.
 * A cached copy is written out a MiB at a time as it is written and made durable before
 * it is renamed into the cache (walobject.c, FLUSH_STEP), though a copy lost in a crash
 * would only cost a fetch: PostgreSQL fsyncs every segment restore_command hands it
 * (durable_rename in its startup process, before replaying it), and on a file still
 * dirty in the page cache that fsync stalled replay for the whole 16 MiB write-out;
 * writing out a MiB at a time keeps the server's other fsyncs from waiting on a whole
 * segment. The cache's directory entries are not fsynced; a cached copy is checked
 * (size and first page header) before it is served.
 * The read-ahead process is detached (setsid, its own fds closed), so the server's
 * restore_command returns at once and a server shutdown does not wait for it.
 * When the cache is in a data directory's pg_wal (DEST is the server's
 * pg_wal/RECOVERYXLOG), the read-ahead also watches for the end of recovery: once
 * neither recovery.signal nor standby.signal is there, the server will ask for nothing
 * more, and the read-ahead removes the cache and leaves — a restore to a point before
 * the end of the archive would otherwise leave up to `depth` segments in pg_wal.
 *
 * Why its threads are not the common pool (pool.h): there is no list of jobs to queue.
 * Each thread, when free, takes the next segment of a window that moves under it (the
 * server's ".want"), at that moment; a queue filled ahead would hold segments the
 * window has already passed, and fetch them before the one the server asks for next.
 * No error crosses its threads either: a fetch that fails is forgotten (the server's own
 * restore_command reports it), so the pool's one failure would have nothing to carry.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREFETCH_THREADS 4              /* at most: one per CPU, but at least 2 */
#define PREFETCH_AWAIT_STEP_US 1000     /* how often a call that waits looks for its copy */
#define PREFETCH_POLL_MS 10             /* how often an idle read-ahead looks at ".want" */
#define PREFETCH_IDLE_MS 5000           /* and leaves after this long without a new one */
#define PREFETCH_XLP_LONG_HEADER 0x0002 /* xlp_info: the page opens a segment */

/* Unlink every entry of cache_dir that doomed(name, arg) picks. */
static void remove_entries(const char *cache_dir, bool (*doomed)(const char *name, const void *arg),
                           const void *arg)
{
    DIR *d = opendir(cache_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            doomed(de->d_name, arg)) {
            char *p = xasprintf("%s/%s", cache_dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

struct seg_range {
    const char *first, *last;
};

static bool stale_segment(const char *name, const void *arg)
{
    const struct seg_range *r = arg;
    return wal_is_segment_name(name) &&
           (strncmp(name, r->first, 8) != 0 || strcmp(name, r->first) <= 0 ||
            (r->last && strcmp(name, r->last) > 0));
}

/* Delete cached segments that are not in (first, last] of first's timeline (last NULL:
 * no upper bound). */
static void prune_cache(const char *cache_dir, const char *first, const char *last)
{
    struct seg_range r = {first, last};
    remove_entries(cache_dir, stale_segment, &r);
}

char *prefetch_cache_dir(const char *dest)
{
    char *copy = xstrdup(dest);
    char *dir = xasprintf("%s/%s", dirname(copy), PREFETCH_DIR);
    free(copy);
    return dir;
}

/* Is the cached file at path still what the read-ahead put there: a whole segment of a
 * valid size whose long page header names this segment (timeline, address, size)? The
 * copy was verified against the repository's digest before it was renamed into the
 * cache; this costs an fstat and one 40-byte read, and catches a copy that was truncated
 * or replaced since (by hand, by a file system that lost it in a crash), which would
 * otherwise be handed to the server as the segment. */
static bool sound_copy(const char *path, const char *name)
{
    uint8_t h[40];
    struct stat st;
    timeline_t tli;
    uint64_t segno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
              wal_seg_size_valid((uint64_t)st.st_size) &&
              pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h);
    close(fd);
    if (!ok || wal_segment_parse(name, (uint64_t)st.st_size, &tli, &segno) < 0) {
        err_clear();
        return false;
    }
    uint16_t info = (uint16_t)(h[2] | h[3] << 8);
    uint32_t page_tli =
        (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
    uint64_t addr = 0;
    for (int i = 7; i >= 0; i--)
        addr = addr << 8 | h[8 + i];
    uint32_t seg =
        (uint32_t)h[32] | (uint32_t)h[33] << 8 | (uint32_t)h[34] << 16 | (uint32_t)h[35] << 24;
    return (info & PREFETCH_XLP_LONG_HEADER) && page_tli == tli &&
           addr == segno * (uint64_t)st.st_size && seg == (uint64_t)st.st_size;
}

/* Move the cached copy of name into dest if it is sound: 1 served, 0 not there; a copy
 * that is not sound is removed (0: the caller fetches the segment from the
 * repositories). */
static int serve(const char *cached, const char *name, const char *dest)
{
    if (access(cached, F_OK) != 0)
        return 0;
    if (!sound_copy(cached, name)) {
        log_warn("the read-ahead's copy of segment %s is damaged: fetching it from the "
                 "repositories",
                 name);
        unlink(cached);
        return 0;
    }
    return rename(cached, dest) == 0;
}

int prefetch_consume(const char *cache_dir, const char *name, const char *dest)
{
    char *cached = xasprintf("%s/%s", cache_dir, name);
    int served = serve(cached, name, dest);
    free(cached);
    /* Whatever is not after this segment on this timeline will not be asked for. */
    prune_cache(cache_dir, name, NULL);
    return served;
}

/* The read-ahead's temporary copy of name in cache_dir, if it is fetching it right now
 * (.pgark-fetch.<pid>.<name>.tmp, walobject.c); NULL otherwise. */
static char *in_flight(const char *cache_dir, const char *name)
{
    DIR *d = opendir(cache_dir);
    if (!d)
        return NULL;
    size_t n = strlen(name);
    char *found = NULL;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (!strncmp(de->d_name, ".pgark-fetch.", 13) && len > 13 + n + 5 &&
            !strcmp(de->d_name + len - 4, ".tmp") && !strncmp(de->d_name + len - 4 - n, name, n) &&
            de->d_name[len - 5 - n] == '.')
            found = xasprintf("%s/%s", cache_dir, de->d_name);
    }
    closedir(d);
    return found;
}

static bool take_lock(int fd)
{
    return flock(fd, LOCK_EX | LOCK_NB) == 0;
}

/* Does a read-ahead process run (hold ".lock")? */
static bool read_ahead_runs(const char *cache_dir)
{
    char *path = xasprintf("%s/.lock", cache_dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return false;
    bool runs = !take_lock(fd);
    close(fd); /* releases the lock if it was taken here */
    return runs;
}

int prefetch_await(const char *cache_dir, const char *name, const char *dest)
{
    char *tmp = in_flight(cache_dir, name);
    if (!tmp)
        return 0;
    char *cached = xasprintf("%s/%s", cache_dir, name);
    int served = 0;
    for (unsigned i = 1;; i++) {
        /* looked at before the rename: a fetch seen over has renamed its copy already */
        bool fetching = access(tmp, F_OK) == 0;
        if (serve(cached, name, dest) > 0) {
            served = 1;
            prune_cache(cache_dir, name, NULL);
            break;
        }
        /* Gone without a copy (not in the archive, or damaged: the caller fetches and
         * reports it), or the read-ahead died with its temporary file in place. */
        if (!fetching || (i % 100 == 0 && !read_ahead_runs(cache_dir)))
            break;
        usleep(PREFETCH_AWAIT_STEP_US);
    }
    free(cached);
    free(tmp);
    return served;
}

static bool any_entry(const char *name, const void *arg)
{
    (void)name;
    (void)arg;
    return true;
}

void prefetch_drop(const char *cache_dir)
{
    remove_entries(cache_dir, any_entry, NULL);
    rmdir(cache_dir);
}

/* The data directory whose recovery the cache serves: cache_dir is <D>/pg_wal/<cache>
 * and <D> has a PG_VERSION. NULL when the cache is anywhere else (wal-fetch run by
 * hand): then there is no recovery to watch. */
static char *data_dir_of(const char *cache_dir)
{
    char *wal = xstrdup(cache_dir);
    char *slash = strrchr(wal, '/');
    char *data = NULL;
    if (slash) {
        *slash = '\0';
        slash = strrchr(wal, '/');
        const char *base = slash ? slash + 1 : wal;
        if (!strcmp(base, "pg_wal")) {
            data = slash ? xstrndup(wal, (size_t)(slash - wal)) : xstrdup(".");
            char *version = xasprintf("%s/PG_VERSION", data);
            if (access(version, F_OK) != 0) {
                free(data);
                data = NULL;
            }
            free(version);
        }
    }
    free(wal);
    return data;
}

/* Has the server of data_dir left recovery (no recovery.signal, no standby.signal)? */
static bool recovery_over(const char *data_dir)
{
    if (!data_dir)
        return false;
    char *rec = xasprintf("%s/recovery.signal", data_dir);
    char *standby = xasprintf("%s/standby.signal", data_dir);
    bool over = access(rec, F_OK) != 0 && access(standby, F_OK) != 0;
    free(rec);
    free(standby);
    return over;
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
    FILE *f = privfs_fopen_w(tmp);
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

struct readahead {
    struct cli_repos *set;
    const char *cache_dir;
    const char *data_dir; /* whose recovery ending ends the read-ahead (NULL: none) */
    uint64_t seg_size;
    unsigned depth;
    pthread_mutex_t lock;
    pthread_cond_t moved; /* the window moved or a fetch ended */
    struct want want;     /* the last ".want" seen */
    bool have_want;
    uint64_t next; /* the next segment to start */
    uint64_t end;  /* not in the archive when last asked (UINT64_MAX: unknown) */
    int busy;      /* fetches in flight */
    int64_t idle_since_ms;
    bool stop;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool cached(const struct readahead *w, uint64_t segno)
{
    char name[WAL_NAME_BUFLEN];
    wal_segment_name(w->want.tli, segno, w->seg_size, name);
    char *p = xasprintf("%s/%s", w->cache_dir, name);
    bool there = access(p, F_OK) == 0;
    free(p);
    return there;
}

/* Look at ".want" (under w->lock): slide the window, prune what fell out of it. False
 * when the cache is gone or recovery is over. */
static bool refresh(struct readahead *w)
{
    struct want now;
    if (!read_want(w->cache_dir, &now) || recovery_over(w->data_dir))
        return false;
    if (w->have_want && now.tli == w->want.tli && now.segno == w->want.segno)
        return true;
    bool new_tli = !w->have_want || now.tli != w->want.tli;
    w->want = now;
    w->have_want = true;
    w->idle_since_ms = now_ms();
    /* The archive may have grown since a segment was missing: ask again. */
    w->end = UINT64_MAX;
    if (new_tli || w->next <= now.segno)
        w->next = now.segno + 1;
    char first[WAL_NAME_BUFLEN], last[WAL_NAME_BUFLEN];
    wal_segment_name(now.tli, now.segno, w->seg_size, first);
    wal_segment_name(now.tli, now.segno + w->depth, w->seg_size, last);
    prune_cache(w->cache_dir, first, last);
    pthread_cond_broadcast(&w->moved);
    return true;
}

static void *window_thread(void *arg)
{
    struct readahead *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        if (!refresh(w)) {
            w->stop = true;
            break;
        }
        if (w->next <= w->want.segno + w->depth && w->next < w->end) {
            uint64_t segno = w->next++;
            if (cached(w, segno))
                continue;
            timeline_t tli = w->want.tli;
            w->busy++;
            pthread_mutex_unlock(&w->lock);

            char name[WAL_NAME_BUFLEN], path[96], what[64];
            wal_segment_name(tli, segno, w->seg_size, name);
            repo_wal_path(tli, name, false, path, sizeof(path));
            snprintf(what, sizeof(what), "segment %s", name);
            char *dest = xasprintf("%s/%s", w->cache_dir, name);
            int rc = walobject_fetch(w->set, path, dest, w->seg_size, WALOBJECT_FLUSH, what);
            free(dest);
            err_clear();

            pthread_mutex_lock(&w->lock);
            w->busy--;
            /* Not there (the end of the archive), or damaged everywhere (the server's
             * own request will report it): nothing at or past it until the window
             * moves. */
            if (rc <= 0 && tli == w->want.tli && segno < w->end)
                w->end = segno;
            w->idle_since_ms = now_ms();
            pthread_cond_broadcast(&w->moved);
            continue;
        }
        /* Nothing to start: wait for the server to move on, or leave when it does not. */
        if (w->busy == 0 && now_ms() - w->idle_since_ms > PREFETCH_IDLE_MS) {
            w->stop = true;
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += PREFETCH_POLL_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&w->moved, &w->lock, &until);
    }
    pthread_cond_broadcast(&w->moved);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static bool temp_copy(const char *name, const void *arg)
{
    (void)arg;
    return strncmp(name, ".pgark-fetch.", 13) == 0;
}

static void remove_temps(const char *cache_dir)
{
    remove_entries(cache_dir, temp_copy, NULL);
}

/* Run the window until it goes idle; the last ".want" seen goes to *seen. */
static void read_ahead(struct cli_repos *set, const char *cache_dir, const char *data_dir,
                       uint64_t seg_size, unsigned depth, struct want *seen, bool *have_seen)
{
    struct readahead w = {.set = set,
                          .cache_dir = cache_dir,
                          .data_dir = data_dir,
                          .seg_size = seg_size,
                          .depth = depth,
                          .end = UINT64_MAX,
                          .idle_since_ms = now_ms()};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.moved, NULL);
    remove_temps(cache_dir);
    /* More fetches at once than CPUs only slow the one the server will ask for next:
     * on 2 CPUs with 4 threads, the segments right after the first were still being
     * fetched when the server, replaying fast at the start, asked for them. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 2 ? 2 : cpus > PREFETCH_THREADS ? PREFETCH_THREADS : (int)cpus;
    if ((unsigned)n > depth)
        n = (int)depth;
    pthread_t th[PREFETCH_THREADS];
    int started = 0;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&th[started], NULL, window_thread, &w) == 0)
            started++;
    }
    if (!started)
        window_thread(&w);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *seen = w.want;
    *have_seen = w.have_want;
    pthread_cond_destroy(&w.moved);
    pthread_mutex_destroy(&w.lock);
}

void prefetch_spawn(struct cli_repos *set, const char *cache_dir, timeline_t tli, uint64_t segno,
                    uint64_t seg_size, unsigned depth)
{
    if (depth == 0 || (mkdir(cache_dir, 0700) < 0 && errno != EEXIST))
        return;
    write_want(cache_dir, tli, segno);
    /* A read-ahead that runs will see the new ".want": nothing more to do. */
    char *lock_path = xasprintf("%s/.lock", cache_dir);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    if (lock < 0)
        return;
    if (!take_lock(lock)) {
        close(lock);
        return;
    }
    pid_t pid = fork();
    if (pid != 0) {
        /* The parent: the child's copy of the descriptor keeps the lock (or, when the
         * fork failed, closing it releases the lock: no read-ahead, no harm). */
        close(lock);
        return;
    }

    /* The child: detach from the server's process group and descriptors. */
    setsid();
    for (int fd = 0; fd < lock; fd++)
        close(fd);
    if (close_range((unsigned)lock + 1, ~0u, 0) < 0) {
        for (int fd = lock + 1; fd < 1024; fd++)
            close(fd);
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
    }
    /* Handles opened by the parent lost their descriptors: open afresh, before threads
     * share them. */
    struct cli_repos fresh = *set;
    fresh.r = xcalloc(set->n ? set->n : 1, sizeof(*fresh.r));
    for (size_t i = 0; i < fresh.n; i++) {
        fresh.r[i].conf = set->r[i].conf;
        if (!cli_repos_get(&fresh, i))
            err_clear();
    }
    char *data_dir = data_dir_of(cache_dir);
    for (;;) {
        struct want seen, now;
        bool have_seen = false;
        read_ahead(&fresh, cache_dir, data_dir, seg_size, depth, &seen, &have_seen);
        if (recovery_over(data_dir)) {
            prefetch_drop(cache_dir);
            break;
        }
        /* Idle: let go, then look once more — a call may have found the lock taken
         * after our last look at ".want". */
        flock(lock, LOCK_UN);
        if (!read_want(cache_dir, &now) ||
            (have_seen && now.tli == seen.tli && now.segno == seen.segno) || !take_lock(lock))
            break;
    }
    free(data_dir);
    cli_repos_free(&fresh);
    _exit(0);
}
