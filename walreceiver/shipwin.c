/*
 * shipwin.c — a backlog shipped several segments at once: the order in which they may
 * move a shipper's cursor (see struct ship_window in receiver_int.h), and the window
 * itself (ship_window: staged, uploaded together, settled in order).
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ship_window_start(struct ship_window *w, int n)
{
    memset(w, 0, sizeof(*w));
    w->n = n < 0 ? 0 : n > SHIP_QUEUE_MAX ? SHIP_QUEUE_MAX : n;
}

void ship_window_end(struct ship_window *w, int i, bool ok)
{
    if (i >= 0 && i < w->n)
        w->state[i] = ok ? SHIP_SLOT_DONE : SHIP_SLOT_FAILED;
}

int ship_window_take(struct ship_window *w)
{
    int from = w->settled;
    while (w->settled < w->n && w->state[w->settled] == SHIP_SLOT_DONE)
        w->settled++;
    return w->settled - from;
}

/* --- a backlog, several segments at once ---------------------------------------------- */

struct window_batch;

/* One segment of a window batch: its done callback's ctx. */
struct window_batch_slot {
    struct window_batch *win;
    int i;
};

struct window_batch {
    struct shipper *sh;
    struct ship_window w;
    struct ship_item items[SHIP_QUEUE_MAX];
    struct window_batch_slot slots[SHIP_QUEUE_MAX];
    bool did;
};

/* Move the cursor over the segments that ended well with none before them pending. */
static int window_settle(struct window_batch *win)
{
    int k = ship_window_take(&win->w), rc = 0;
    if (k > 0) { /* one mark for them all: the last one is the highest */
        const struct ship_item *last = &win->items[win->w.settled - 1];
        timeline_t tli;
        uint64_t segno;
        rc = wal_segment_parse(last->base, win->sh->rx->seg_size, &tli, &segno);
        if (rc == 0)
            rc = ship_hwm_note(win->sh, tli, segno, false, win->sh->rx->seg_size);
        if (rc < 0)
            return err_context("while shipping %s to repository \"%s\"", last->base, win->sh->name);
    }
    for (int j = win->w.settled - k; j < win->w.settled && rc == 0; j++)
        rc = ship_item_shipped(win->sh, &win->items[j], win->sh->rx->seg_size, &win->did);
    return rc;
}

/* A segment's upload ended (in the shipper's thread, from a storage_batch_* call). A
 * failure is kept: no segment starts after it, and it and those after it stay pending. */
static int window_done(void *ctx, int rc)
{
    struct window_batch_slot *slot = ctx;
    struct window_batch *win = slot->win;
    ship_window_end(&win->w, slot->i, rc == 0);
    if (rc < 0)
        return err_context("while shipping %s to repository \"%s\"", win->items[slot->i].base,
                           win->sh->name);
    return window_settle(win);
}

/* Make window segment i ready to go among b's transfers (*st), or push it here: one
 * stored already, or one that could not be prepared. */
static int window_stage(struct window_batch *win, struct storage_batch *b, int i,
                        struct repo_wal_staged **st)
{
    struct shipper *sh = win->sh;
    struct receiver *rx = sh->rx;
    const struct ship_item *it = &win->items[i];
    struct repo_wal_prepared *prep = NULL;
    uint64_t size = 0;
    int fd = -1;
    int rc = ship_open_spool_file(rx, it->base, "", &fd, &size);
    if (rc < 0)
        goto out;
    if (rx->prep && prep_acquire(rx->prep, it->base, false, fd, size,
                                 ship_item_takers(sh, it->base), &prep) < 0) {
        log_detail("%s", err_message());
        err_clear();
    }
    rc = prep ? repo_wal_stage_prepared(sh->repo, prep, b, window_done, &win->slots[i], st)
              : repo_wal_push_fd(sh->repo, it->base, fd, size);
    if (rx->prep)
        prep_release(rx->prep, prep); /* what is staged is a copy of its own */
    if (rc >= 0 && !*st) {            /* ended here */
        ship_window_end(&win->w, i, true);
        rc = window_settle(win);
    }
out:
    if (rc < 0)
        err_context("while shipping %s to repository \"%s\"", it->base, sh->name);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* When more than one complete segment is pending and the repository's storage keeps
 * transfers in flight, push up to its concurrency of them at once: each is prepared
 * and staged (its object written to an unlinked spool file: memory stays flat), then
 * their uploads start together, and the cursor moves over them in order as they end.
 * *handled false: ship them one at a time. */
int ship_window(struct shipper *sh, bool *did, bool *handled)
{
    struct receiver *rx = sh->rx;
    const struct receiver_repo *repo = &rx->o->repos[sh->index];
    struct ship_queue *q = &sh->queue;
    struct ship_item first;
    char after[WAL_NAME_BUFLEN];
    bool found = false;
    int max = repo->concurrency < SHIP_QUEUE_MAX ? repo->concurrency : SHIP_QUEUE_MAX;
    int rc = 0, n = 0, staged = 0, uploads = 0;

    *did = *handled = false;
    if (max < 2 || !repo->storage->ops->async_new)
        return 0;
    pthread_mutex_lock(&rx->lock);
    memcpy(after, sh->cursor, sizeof(after));
    pthread_mutex_unlock(&rx->lock);
    if ((rc = ship_next_item(sh, after, &first, &found)) < 0 || !found || first.partial)
        return rc;
    while (n < max && q->head + n < q->n && q->items[q->head + n].ready &&
           !q->items[q->head + n].partial)
        n++;
    if (n < 2)
        return 0;

    struct window_batch *win = xcalloc(1, sizeof(*win));
    struct repo_wal_staged *st[SHIP_QUEUE_MAX] = {0};
    win->sh = sh;
    ship_window_start(&win->w, n);
    for (int i = 0; i < n; i++) {
        win->items[i] = q->items[q->head + i];
        win->slots[i] = (struct window_batch_slot){win, i};
    }
    struct storage_batch *b = storage_batch_new(repo->storage, n);
    storage_batch_spool(b, spool_dir(rx->spool));
    int src = 0;
    for (; staged < n && src >= 0 && !atomic_load(&rx->stopping); staged++)
        src = window_stage(win, b, staged, &st[staged]);
    struct err_saved *stage_err = src < 0 ? err_save() : NULL;
    /* Those staged come before any that failed to stage: they may all go. */
    for (int i = 0; i < staged; i++) {
        if (!st[i])
            continue;
        if (rc < 0 || atomic_load(&rx->stopping)) {
            repo_wal_staged_abort(st[i]); /* it and those after it stay pending */
            continue;
        }
        rc = repo_wal_staged_start(st[i]);
        if (rc < 0)
            err_context("while shipping %s to repository \"%s\"", win->items[i].base, sh->name);
        else
            uploads++;
    }
    /* The error to report: the earliest segment's that is known. */
    struct err_saved *start_err = rc < 0 ? err_save() : NULL;
    int wrc = storage_batch_wait(b);
    if (start_err || stage_err) {
        err_restore(stage_err); /* a failure to start came first: it replaces this */
        err_restore(start_err);
        rc = err_code();
    } else {
        rc = wrc;
    }
    storage_batch_free(b);
    if (uploads > 1)
        log_info("repository \"%s\": a backlog of %d segments was pushed %d at once; %d of them "
                 "shipped",
                 sh->name, n, uploads, win->w.settled);
    if (rc < 0) /* look at the spool again: an item may have gone meanwhile */
        sh->queue.valid = false;
    *did = win->did;
    *handled = true;
    free(win);
    return rc < 0 ? rc : 0;
}
