/*
 * ship.c — one thread per repository copies spool files to it, in order.
 *
 * The spool is the queue: its complete segments (and the .partial of a timeline
 * that was left) sorted by name are the items; each shipper keeps a cursor, the
 * last item its repository holds, in "<spool>/shipped.<repo>". An item leaves the
 * spool once every cursor has passed it. A losing cursor file only costs a re-push,
 * which the repository treats as a no-op for identical content. The copies of the
 * segment being filled are shippartial.c's; the end of the stream and of the run,
 * shipstop.c's.
 */
#include "receiver_int.h"
#include "rpolog_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"
#include "pgark/units.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define IDLE_WAIT_MS 1000

/* --- cursors ------------------------------------------------------------------ */

static void cursor_path(struct shipper *sh, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s%s", spool_dir(sh->rx->spool), SHIP_CURSOR_PREFIX, sh->name);
}

static void cursor_load(struct shipper *sh)
{
    char path[4096], text[64] = "";
    cursor_path(sh, path, sizeof(path));
    FILE *f = fopen(path, "re");
    if (f) {
        if (fgets(text, sizeof(text), f)) {
            text[strcspn(text, "\n")] = '\0';
            if (wal_is_segment_name(text))
                memcpy(sh->cursor, text, WAL_NAME_LEN + 1);
        }
        fclose(f);
    }
}

static int cursor_save(struct shipper *sh)
{
    char path[4096], tmp[4200];
    cursor_path(sh, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = privfs_fopen_w(tmp);
    if (!f)
        return err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
    fprintf(f, "%s\n", sh->cursor);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        return err_set_errno(ERR_IO, errno, "could not write \"%s\"", path);
    return 0;
}

/* --- the queue ------------------------------------------------------------------ */

/* Put it into the sorted q, keeping the SHIP_QUEUE_MAX first names. */
static void queue_insert(struct ship_queue *q, const struct ship_item *it)
{
    int at = q->n;
    while (at > 0 && strcmp(q->items[at - 1].base, it->base) > 0)
        at--;
    if (at == SHIP_QUEUE_MAX) {
        q->cut = true;
        return;
    }
    if (q->n == SHIP_QUEUE_MAX)
        q->cut = true;
    else
        q->n++;
    memmove(&q->items[at + 1], &q->items[at], (size_t)(q->n - 1 - at) * sizeof(q->items[0]));
    q->items[at] = *it;
}

/* Look at the spool: the items after `after`, sorted, and whether each may go now. */
static int queue_fill(struct shipper *sh, const char *after)
{
    struct receiver *rx = sh->rx;
    struct ship_queue *q = &sh->queue;
    timeline_t cur_tli = 0;
    char cur_name[WAL_NAME_BUFLEN] = "";
    uint64_t cur_bytes;

    memset(q, 0, sizeof(*q));
    q->changes = spool_changes(rx->spool); /* first: a change after it makes us look again */
    bool have_cur = spool_current(rx->spool, &cur_tli, cur_name, &cur_bytes);
    DIR *d = opendir(spool_dir(rx->spool));
    if (!d)
        return err_set_errno(ERR_IO, errno, "could not read spool directory \"%s\"",
                             spool_dir(rx->spool));
    char newest[WAL_NAME_BUFLEN] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool partial = wal_is_partial_name(e->d_name);
        if (!partial && !wal_is_segment_name(e->d_name))
            continue;
        struct ship_item it = {.partial = partial};
        snprintf(it.base, sizeof(it.base), "%.24s", e->d_name);
        if (strcmp(it.base, newest) > 0)
            memcpy(newest, it.base, sizeof(it.base));
        if (partial && have_cur && strcmp(it.base, cur_name) == 0)
            continue; /* being filled: shipped as a partial upload, not as an item */
        if (strcmp(it.base, after) > 0)
            queue_insert(q, &it);
    }
    closedir(d);
    if (have_cur && strcmp(cur_name, newest) > 0)
        memcpy(newest, cur_name, sizeof(newest));
    for (int i = 0; i < q->n; i++)
        q->items[i].ready = !q->items[i].partial || strcmp(newest, q->items[i].base) > 0;
    q->valid = true;
    return 0;
}

/* The first item after `after`, if it may be shipped now. The spool is looked at only
 * when it changed since the last look (or the queue ran out of what that look kept). */
int ship_next_item(struct shipper *sh, const char *after, struct ship_item *out, bool *found)
{
    struct ship_queue *q = &sh->queue;
    int rc = 0;
    *found = false;
    if (!q->valid || q->changes != spool_changes(sh->rx->spool))
        rc = queue_fill(sh, after);
    while (rc == 0) {
        while (q->head < q->n && strcmp(q->items[q->head].base, after) <= 0)
            q->head++;
        if (q->head < q->n) {
            *found = q->items[q->head].ready;
            *out = q->items[q->head];
            break;
        }
        if (!q->cut)
            break;
        rc = queue_fill(sh, after);
    }
    return rc;
}

/* Remove an item every repository holds. */
static void maybe_remove(struct receiver *rx, const struct ship_item *it)
{
    pthread_mutex_lock(&rx->lock);
    bool all = true;
    for (int i = 0; i < rx->nshippers; i++) {
        if (strcmp(rx->shippers[i].cursor, it->base) < 0)
            all = false;
    }
    pthread_mutex_unlock(&rx->lock);
    if (!all)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s%s", spool_dir(rx->spool), it->base,
             it->partial ? ".partial" : "");
    if (unlink(path) < 0 && errno != ENOENT)
        log_warn("could not remove \"%s\" from the spool: %s", path, strerror(errno));
    else
        log_debug("segment %s left the spool", it->base);
}

int ship_open_spool_file(struct receiver *rx, const char *name, const char *suffix, int *fd,
                         uint64_t *size)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s%s", spool_dir(rx->spool), name, suffix);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
    struct stat st;
    if (fstat(*fd, &st) < 0) {
        int rc = err_set_errno(ERR_IO, errno, "could not stat \"%s\"", path);
        close(*fd);
        *fd = -1;
        return rc;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

void ship_note_shipped(struct shipper *sh, timeline_t tli, lsn_t end, uint64_t bytes)
{
    struct receiver *rx = sh->rx;
    pthread_mutex_lock(&rx->lock);
    if (tli > sh->shipped_tli || (tli == sh->shipped_tli && end > sh->shipped_lsn)) {
        sh->shipped_tli = tli;
        sh->shipped_lsn = end;
        sh->shipped_at_us = time_now_us();
    }
    sh->bytes_shipped += bytes;
    pthread_mutex_unlock(&rx->lock);
}

/* How many shippers will want queue item name: this one, and the others still behind
 * it that are not failing (one that is prepares for itself once it works again). */
int ship_item_takers(struct shipper *sh, const char *name)
{
    struct receiver *rx = sh->rx;
    int n = 1;
    pthread_mutex_lock(&rx->lock);
    for (int i = 0; i < rx->nshippers; i++) {
        const struct shipper *o = &rx->shippers[i];
        if (o != sh && !o->last_error && strcmp(o->cursor, name) < 0)
            n++;
    }
    pthread_mutex_unlock(&rx->lock);
    return n;
}

/* Push the first len bytes of fd as item name: prepared once for the wanted shippers
 * (this one included), or, when that fails, the ordinary way (which reports what is
 * wrong, if anything is). */
int ship_push_item(struct shipper *sh, const char *name, bool partial, int wanted, int fd,
                   uint64_t len)
{
    struct receiver *rx = sh->rx;
    struct repo_wal_prepared *prep = NULL;
    int rc;
    if (rx->prep && prep_acquire(rx->prep, name, partial, fd, len, wanted, &prep) < 0) {
        log_detail("%s", err_message());
        err_clear();
    }
    if (prep)
        rc = repo_wal_push_prepared(sh->repo, prep);
    else if (partial)
        rc = repo_wal_push_partial_fd(sh->repo, name, fd, len);
    else
        rc = repo_wal_push_fd(sh->repo, name, fd, len);
    if (rx->prep)
        prep_release(rx->prep, prep);
    return rc;
}

/* A complete segment this shipper made partial copies of is stored: the last copy goes
 * (every reader takes the segment; a copy per segment would double what the repository
 * holds). Failing to is said and otherwise let be: expire removes it with its segment. */
static void drop_partial_copy(struct shipper *sh, const struct ship_item *it)
{
    struct receiver *rx = sh->rx;
    pthread_mutex_lock(&rx->lock);
    bool made = !it->partial && strcmp(sh->partial_name, it->base) == 0;
    pthread_mutex_unlock(&rx->lock);
    if (made && repo_wal_remove_partial(sh->repo, it->base) < 0) {
        char *text = err_format();
        err_clear();
        log_warn("repository \"%s\": %s", sh->name, text);
        free(text);
    }
}

/* The repository holds it (size bytes): move the cursor over it, and let it leave the
 * spool if every repository has it. *did is set when the cursor moved. */
int ship_item_shipped(struct shipper *sh, const struct ship_item *it, uint64_t size, bool *did)
{
    struct receiver *rx = sh->rx;
    timeline_t tli;
    uint64_t segno;
    /* Left behind at a stop or reload: the next receiver may be shipping the items
     * after this one already; a cursor file written now could move its cursor back. */
    if (atomic_load(&sh->abandoned))
        return 0;
    int rc = wal_segment_parse(it->base, rx->seg_size, &tli, &segno);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&rx->lock);
    memcpy(sh->cursor, it->base, sizeof(it->base));
    sh->segments_shipped++;
    pthread_mutex_unlock(&rx->lock);
    if (!it->partial)
        ship_note_shipped(sh, tli, segno_to_lsn(segno + 1, rx->seg_size), size);
    log_detail("shipped %s%s to repository \"%s\"", it->base, it->partial ? ".partial" : "",
               sh->name);
    rc = cursor_save(sh);
    if (rc < 0)
        return rc;
    drop_partial_copy(sh, it);
    maybe_remove(rx, it);
    *did = true;
    return 0;
}

/* Complete segment segno, last written at at_us, was stored. When it is the last segment
 * written, or the segment being filled is the next one, the repository now holds every
 * WAL byte written before at_us, as a partial copy made at at_us would: the next copy is
 * due an interval after it. On a timer of its own, the next copy came whenever the last
 * copy's interval ran out, and under load (a segment about as often as a copy is due) it
 * stored again most of what the segment had just carried: each WAL byte about twice. */
static void partial_timer_restart(struct shipper *sh, timeline_t tli, uint64_t segno, int64_t at_us)
{
    struct receiver *rx = sh->rx;
    timeline_t last_tli;
    char name[WAL_NAME_BUFLEN];
    uint64_t last_segno;
    bool complete;
    if (!spool_last(rx->spool, &last_tli, name, &complete) ||
        wal_segment_parse(name, rx->seg_size, &last_tli, &last_segno) < 0) {
        err_clear();
        return;
    }
    /* Behind, or another timeline: the tail still waits for its copy. */
    if (last_tli != tli || !(last_segno == segno + 1 || (last_segno == segno && complete)))
        return;
    pthread_mutex_lock(&rx->lock);
    if (at_us > sh->partial_at_us)
        sh->partial_at_us = at_us;
    pthread_mutex_unlock(&rx->lock);
}

/* Ship the next queued item, if any. */
static int ship_next(struct shipper *sh, bool *did)
{
    struct receiver *rx = sh->rx;
    struct ship_item it;
    bool found = false;
    char after[WAL_NAME_BUFLEN];
    int fd = -1, rc;

    *did = false;
    pthread_mutex_lock(&rx->lock);
    memcpy(after, sh->cursor, sizeof(after));
    pthread_mutex_unlock(&rx->lock);
    rc = ship_next_item(sh, after, &it, &found);
    if (rc < 0 || !found)
        goto out;

    uint64_t size = 0;
    rc = ship_open_spool_file(rx, it.base, it.partial ? ".partial" : "", &fd, &size);
    if (rc < 0)
        goto out;
    timeline_t tli;
    uint64_t segno;
    rc = wal_segment_parse(it.base, rx->seg_size, &tli, &segno);
    if (rc < 0)
        goto out;
    /* Its last write: every WAL byte written before then is in it or before it. */
    struct stat st;
    int64_t written_us =
        fstat(fd, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000 : 0;
    rc = ship_push_item(sh, it.base, it.partial, ship_item_takers(sh, it.base), fd, size);
    if (rc == 0)
        rc = ship_hwm_note(sh, tli, segno, it.partial, size);
    if (rc < 0) {
        err_context("while shipping %s%s to repository \"%s\"", it.base,
                    it.partial ? ".partial" : "", sh->name);
        goto out;
    }
    rc = ship_item_shipped(sh, &it, size, did);
    if (rc == 0 && !it.partial)
        partial_timer_restart(sh, tli, segno, written_us);
out:
    if (rc < 0) /* look at the spool again: the item may have gone meanwhile */
        sh->queue.valid = false;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* History files are tiny and few: push every one each pass until it is in; look at the
 * spool again only when it changed since every one was. */
static int ship_histories(struct shipper *sh, char shipped[][24], int *nshipped)
{
    struct receiver *rx = sh->rx;
    int rc = 0;
    uint64_t changes = spool_changes(rx->spool);
    if (sh->histories_done && sh->histories_changes == changes)
        return 0;
    DIR *d = opendir(spool_dir(rx->spool));
    if (!d)
        return err_set_errno(ERR_IO, errno, "could not read spool directory \"%s\"",
                             spool_dir(rx->spool));
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!wal_is_history_name(e->d_name))
            continue;
        bool done = false;
        for (int i = 0; i < *nshipped; i++)
            done = done || strcmp(shipped[i], e->d_name) == 0;
        if (done || *nshipped >= 64)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", spool_dir(rx->spool), e->d_name);
        FILE *f = fopen(path, "re");
        if (!f) {
            rc = err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
            break;
        }
        struct buf b = BUF_INIT;
        buf_append_file(&b, f);
        fclose(f);
        timeline_t tli = (timeline_t)strtoul(e->d_name, NULL, 16);
        rc = repo_wal_push_history(sh->repo, tli, b.data ? b.data : (uint8_t *)"", b.len);
        buf_free(&b);
        if (rc < 0) {
            err_context("while shipping %s to repository \"%s\"", e->d_name, sh->name);
            break;
        }
        snprintf(shipped[(*nshipped)++], 24, "%.16s", e->d_name);
        log_detail("shipped %s to repository \"%s\"", e->d_name, sh->name);
    }
    closedir(d);
    sh->histories_done = rc == 0 && *nshipped < 64;
    sh->histories_changes = changes;
    return rc;
}

static void wait_ms(struct receiver *rx, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&rx->lock);
    if (!atomic_load(&rx->stopping))
        pthread_cond_timedwait(&rx->wake, &rx->lock, &ts);
    pthread_mutex_unlock(&rx->lock);
}

/* How long an idle shipper waits before it looks again: until its next partial copy is
 * due, at most IDLE_WAIT_MS (a completed segment or the end of the stream wakes it); once
 * due with nothing new to copy (nothing was committed), every OVERDUE_POLL_MS, so that
 * the first WAL after a quiet spell is copied soon (a flush does not wake the shippers:
 * that cost more CPU than the shipping itself). */
#define OVERDUE_POLL_MS 100

static int64_t idle_wait_ms(struct shipper *sh)
{
    struct receiver *rx = sh->rx;
    int64_t w = IDLE_WAIT_MS;
    int64_t interval = rx->o->repos[sh->index].partial_interval_ms;
    if (interval > 0) {
        pthread_mutex_lock(&rx->lock);
        int64_t left = interval - (time_now_us() - sh->partial_at_us) / 1000;
        pthread_mutex_unlock(&rx->lock);
        if (left <= 0)
            w = OVERDUE_POLL_MS;
        else if (left < w)
            w = left;
    }
    return w;
}

/* status.json after the repository took something, when nobody wrote it for
 * STATUS_SOON_US: the receive loop writes it that often while it streams, so this is
 * what keeps it current while the loop waits to reconnect. Written after each partial
 * copy (4 to 5 times a second with two repositories), it cost more than the reading
 * side gained: readers poll the file, and its figures (each repository's newest commit,
 * the RPO) are worked out when it is written, true as of its "updated": a copy shows in
 * it a second later at most. Never from a shipper left behind: the next receiver
 * writes the file. */
#define STATUS_SOON_US 1000000

static void status_soon(struct shipper *sh)
{
    struct receiver *rx = sh->rx;
    if (atomic_load(&sh->abandoned))
        return;
    pthread_mutex_lock(&rx->lock);
    bool due = time_mono_us() - rx->status_at_us >= STATUS_SOON_US;
    pthread_mutex_unlock(&rx->lock);
    if (due && status_write(rx) < 0) {
        log_detail("%s", err_message());
        err_clear();
    }
}

static void record_error(struct shipper *sh)
{
    struct receiver *rx = sh->rx;
    char *text = err_format();
    err_clear();
    pthread_mutex_lock(&rx->lock);
    bool same = sh->last_error && strcmp(sh->last_error, text) == 0;
    if (!sh->last_error)
        sh->error_since_us = time_now_us();
    sh->upload_errors++;
    free(sh->last_error);
    sh->last_error = text;
    sh->fail_streak++;
    pthread_mutex_unlock(&rx->lock);
    if (!same) {
        /* Most messages name the repository already; say it once. */
        char prefix[80];
        snprintf(prefix, sizeof(prefix), "repository \"%s\": ", sh->name);
        const char *rest =
            strncmp(text, prefix, strlen(prefix)) == 0 ? text + strlen(prefix) : text;
        log_warn("%s%s", prefix, rest);
    }
}

static void clear_error(struct shipper *sh)
{
    struct receiver *rx = sh->rx;
    pthread_mutex_lock(&rx->lock);
    sh->fail_streak = 0;
    if (sh->last_error) {
        log_info("repository \"%s\" is reachable again", sh->name);
        free(sh->last_error);
        sh->last_error = NULL;
    }
    pthread_mutex_unlock(&rx->lock);
}

int shipper_open_repo(struct shipper *sh)
{
    const struct receiver_options *o = sh->rx->o;
    sh->repo = repo_open(o->repos[sh->index].storage, &o->repo, &sh->rx->identity, true);
    if (!sh->repo)
        return err_context("while opening repository \"%s\"", sh->name);
    return 0;
}

/* Open the repository; on the first attempt tell shippers_wait_open how it went.
 * Returns 1 when that first attempt failed for good (its error is handed over). */
static int open_first(struct shipper *sh, bool *first_failed)
{
    struct receiver *rx = sh->rx;
    bool first;
    pthread_mutex_lock(&rx->lock);
    first = !sh->open_tried;
    pthread_mutex_unlock(&rx->lock);
    int rc = shipper_open_repo(sh);
    if (rc == 0 && !first)
        log_info("repository \"%s\" opened", sh->name);
    if (!first)
        return rc;
    /* Only a repository of another system (or format) ends the run: it means the
     * configuration points at the wrong place. Credentials, a missing bucket, a
     * wrong passphrase are this repository's trouble; the others keep receiving
     * while it is reported and retried. */
    bool fatal = rc < 0 && err_kind() == ERR_MISMATCH;
    pthread_mutex_lock(&rx->lock);
    sh->open_tried = true;
    if (fatal)
        sh->open_fatal = err_save();
    pthread_cond_broadcast(&rx->wake);
    pthread_mutex_unlock(&rx->lock);
    if (fatal)
        return 1;
    *first_failed = rc < 0;
    return rc;
}

int shippers_wait_open(struct receiver *rx, int64_t timeout_ms, bool (*stop)(void))
{
    int64_t until = time_mono_us() + timeout_ms * 1000;
    int rc = 0;
    pthread_mutex_lock(&rx->lock);
    for (;;) {
        bool all = true;
        for (int i = 0; i < rx->nshippers && rc == 0; i++) {
            struct shipper *sh = &rx->shippers[i];
            all = all && sh->open_tried;
            if (sh->open_fatal) {
                err_restore(sh->open_fatal);
                sh->open_fatal = NULL;
                rc = err_code();
            }
        }
        if (rc < 0 || all || stop() || time_mono_us() >= until)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&rx->wake, &rx->lock, &ts);
    }
    pthread_mutex_unlock(&rx->lock);
    return rc;
}

static void *shipper_main(void *arg)
{
    struct shipper *sh = arg;
    struct receiver *rx = sh->rx;
    char histories[64][24];
    int nhistories = 0;
    int64_t backoff = 0;

    while (!atomic_load(&rx->stopping)) {
        bool did = false, first_failed = false;
        int rc = 0;
        if (!sh->repo && (rc = open_first(sh, &first_failed)) > 0) {
            /* Retrying cannot fix it: the receive loop ends the run. */
            while (!atomic_load(&rx->stopping))
                wait_ms(rx, IDLE_WAIT_MS);
            break;
        }
        /* Each step can take long (a slow server): a stop that came meanwhile must
         * not start another upload, least of all from a thread left behind. */
        if (rc == 0 && !atomic_load(&rx->stopping))
            rc = ship_histories(sh, histories, &nhistories);
        bool handled = false;
        if (rc == 0 && !atomic_load(&rx->stopping))
            rc = ship_window(sh, &did, &handled);
        if (rc == 0 && !handled && !atomic_load(&rx->stopping))
            rc = ship_next(sh, &did);
        bool copied = false;
        if (rc == 0 && !did && !atomic_load(&rx->stopping))
            rc = ship_partial(sh, &copied);
        if (rc == 0 && (did || copied))
            status_soon(sh);
        if (rc < 0) {
            record_error(sh);
            pthread_mutex_lock(&rx->lock);
            if (rx->draining && !sh->drained) {
                /* Stopping: the storage retried already; the spool keeps the rest. */
                sh->drained = sh->drain_failed = true;
                pthread_cond_broadcast(&rx->wake);
            }
            pthread_mutex_unlock(&rx->lock);
            if (first_failed)
                log_info("WAL for repository \"%s\" stays in the spool until it can be opened",
                         sh->name);
            backoff = backoff ? backoff * 2 : BACKOFF_MIN_MS;
            if (backoff > BACKOFF_MAX_MS)
                backoff = BACKOFF_MAX_MS;
            wait_ms(rx, backoff / 2 + random() % (backoff / 2 + 1));
            continue;
        }
        clear_error(sh);
        backoff = 0;
        if (!atomic_load(&rx->stopping))
            receiver_rpo_ship(sh->repo, sh->name, spool_dir(rx->spool));
        if (!did && !copied) {
            pthread_mutex_lock(&rx->lock);
            if (rx->draining && !sh->drained) {
                sh->drained = true; /* it holds all the spool does: tell shippers_drain */
                pthread_cond_broadcast(&rx->wake);
            }
            pthread_mutex_unlock(&rx->lock);
            wait_ms(rx, idle_wait_ms(sh));
        }
    }
    receiver_release(rx);
    return NULL;
}

int shippers_start(struct receiver *rx)
{
    if (!rx->prep) {
        rx->prep =
            prep_cache_new(&rx->identity, &rx->o->repo.codecs, spool_dir(rx->spool), rx->nshippers);
        if (!rx->prep) /* each shipper then prepares for itself */
            log_warn("%s", err_message()), err_clear();
    }
    for (int i = 0; i < rx->nshippers; i++) {
        struct shipper *sh = &rx->shippers[i];
        cursor_load(sh);
        ship_hwm_start(sh);
        atomic_store(&sh->abandoned, false);
        receiver_hold(rx); /* the thread's, released when it ends */
        if (pthread_create(&sh->thread, NULL, shipper_main, sh) != 0) {
            receiver_release(rx);
            return err_set(ERR_RUNTIME, "could not start the shipper of repository \"%s\"",
                           sh->name);
        }
        sh->started = true;
    }
    return 0;
}

void shippers_wake(struct receiver *rx)
{
    pthread_mutex_lock(&rx->lock);
    pthread_cond_broadcast(&rx->wake);
    pthread_mutex_unlock(&rx->lock);
}
