/*
 * shippartial.c — copies of the segment being filled (SEGMENT.partial, replaced each
 * time): every repository's partial_upload_interval while the stream runs, and at once,
 * the whole flushed tail, whenever the stream ended (receiver_int.h: rx->tail_gen).
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/units.h"

#include <string.h>
#include <unistd.h>

/* How long after a shipper fixed what a partial copy holds another one due may copy the
 * same (pushing what was prepared for the first) rather than fix a newer one. */
#define PARTIAL_SHARE_US 250000

/* How many shippers will want the partial copy (name, len): this one, and the others
 * that have not made it, are not failing, and are due about now. Caller holds rx->lock. */
static int partial_takers_locked(struct shipper *sh, const char *name, uint64_t len, int64_t now)
{
    struct receiver *rx = sh->rx;
    int n = 1;
    for (int i = 0; i < rx->nshippers; i++) {
        const struct shipper *o = &rx->shippers[i];
        int64_t interval = rx->o->repos[i].partial_interval_ms;
        if (o == sh || o->last_error || interval <= 0)
            continue;
        bool behind = strcmp(o->partial_name, name) != 0 || o->partial_bytes < len;
        bool soon = o->tail_gen != rx->tail_gen ||
                    now - o->partial_at_us + PARTIAL_SHARE_US >= interval * 1000;
        if (behind && soon)
            n++;
    }
    return n;
}

/* Long: one copy of the spool's tail in three parts: under the receiver's lock, decide
 * whether a copy is due and which length the shippers share; without it, ship that copy;
 * under it again, record what this repository holds. The parts share the name, length,
 * generation and time read in the first.
 */
int ship_partial(struct shipper *sh, bool *copied)
{
    struct receiver *rx = sh->rx;
    int64_t interval_ms = rx->o->repos[sh->index].partial_interval_ms;
    timeline_t tli;
    char name[WAL_NAME_BUFLEN];
    uint64_t flushed = 0;
    int fd = -1, rc = 0;

    *copied = false;
    if (interval_ms <= 0)
        return 0;
    /* The generation first: a stream that ends after this look makes another pass. */
    pthread_mutex_lock(&rx->lock);
    uint64_t gen = rx->tail_gen;
    pthread_mutex_unlock(&rx->lock);
    bool have = spool_tail(rx->spool, &tli, name, &flushed);
    int64_t now = time_now_us();

    pthread_mutex_lock(&rx->lock);
    bool tail_due = sh->tail_gen != gen;
    bool due = tail_due || now - sh->partial_at_us >= interval_ms * 1000;
    bool grew = have && (strcmp(name, sh->partial_name) != 0 || flushed > sh->partial_bytes);
    if (!due || !grew) {
        if (due) /* it holds the tail already */
            sh->tail_gen = gen;
        pthread_mutex_unlock(&rx->lock);
        return 0;
    }
    uint64_t held = strcmp(name, sh->partial_name) == 0 ? sh->partial_bytes : 0;
    bool share =
        strcmp(rx->partial_name, name) == 0 && rx->partial_len > held &&
        (rx->partial_len == flushed || (!tail_due && now - rx->partial_at_us < PARTIAL_SHARE_US));
    if (!share) {
        memcpy(rx->partial_name, name, sizeof(name));
        rx->partial_len = flushed;
        rx->partial_at_us = now;
    }
    uint64_t len = rx->partial_len;
    int wanted = partial_takers_locked(sh, name, len, now);
    pthread_mutex_unlock(&rx->lock);

    uint64_t size;
    rc = ship_open_spool_file(rx, name, ".partial", &fd, &size);
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND) { /* completed meanwhile: shipped as an item */
            err_clear();
            rc = 0;
        }
        goto out;
    }
    uint64_t segno;
    rc = wal_segment_parse(name, rx->seg_size, &tli, &segno);
    if (rc == 0)
        rc = ship_push_item(sh, name, true, wanted, fd, len);
    if (rc == 0)
        rc = ship_hwm_note(sh, tli, segno, true, len);
    if (rc < 0) {
        err_context("while shipping %s.partial to repository \"%s\"", name, sh->name);
        goto out;
    }
    pthread_mutex_lock(&rx->lock);
    memcpy(sh->partial_name, name, sizeof(name));
    sh->partial_bytes = len;
    /* The interval runs from the copy this repository holds: one that failed is due
     * again at once (after the shipper's backoff). */
    sh->partial_at_us = now;
    if (len == flushed) /* the whole tail as it was when gen was read */
        sh->tail_gen = gen;
    pthread_mutex_unlock(&rx->lock);
    ship_note_shipped(sh, tli, segno_to_lsn(segno, rx->seg_size) + len, 0);
    *copied = true;
    if (tail_due)
        log_detail("copied the tail of %s (%llu bytes) to repository \"%s\"", name,
                   (unsigned long long)len, sh->name);
    else
        log_debug("shipped %s.partial (%llu bytes) to repository \"%s\"", name,
                  (unsigned long long)len, sh->name);
out:
    if (fd >= 0)
        close(fd);
    return rc;
}
