/*
 * walseg.c — whether a WAL segment the backup carries is whole.
 *
 * A backup from a primary ends with a segment switch, so every segment in its pg_wal is
 * complete. A standby cannot switch segments: the segment that holds the backup's stop
 * point is as far as the standby had received it, and past that the file holds zeros
 * or the bytes of a recycled segment. Archived under its name, it would stand for the
 * whole segment: a restore would stop short in it, and the receiver's complete copy
 * would conflict with it. So each segment is decoded first; one whose valid WAL ends
 * before its last byte (without a switch record) is not complete. The same decoding
 * finds the newest transaction end before the stop point (backup_wal_chain).
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/waldecode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_PIECE (1024 * 1024)

static void on_event(void *arg, const struct waldecode_event *ev)
{
    struct backup_wal_chain *c = arg;
    if (ev->kind != WALDECODE_COMMIT && ev->kind != WALDECODE_ABORT)
        return;
    if (c->ncur == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->cur = xrealloc(c->cur, c->cap * sizeof(*c->cur));
    }
    c->cur[c->ncur++] = (struct backup_xact_end){ev->lsn, ev->time};
}

/* A new segment begins: every transaction end seen so far starts before the stop point. */
static void fold(struct backup_wal_chain *c)
{
    for (size_t i = 0; i < c->ncur; i++)
        if (c->cur[i].time > c->newest_before)
            c->newest_before = c->cur[i].time;
    c->ncur = 0;
}

void backup_wal_chain_free(struct backup_wal_chain *c)
{
    waldecode_free(c->d);
    free(c->cur);
    memset(c, 0, sizeof(*c));
}

int64_t backup_wal_chain_newest(const struct backup_wal_chain *c, lsn_t stop)
{
    int64_t newest = c->newest_before;
    for (size_t i = 0; i < c->ncur; i++)
        if (c->cur[i].lsn < stop && c->cur[i].time > newest)
            newest = c->cur[i].time;
    return newest ? newest + INT64_C(1000000) * WALDECODE_PG_EPOCH : 0;
}

int backup_wal_complete(struct backup_wal_chain *c, int fd, uint64_t len, const char *name,
                        const struct backup_params *p, bool *complete, lsn_t *valid_end,
                        char **reason)
{
    timeline_t tli;
    uint64_t segno;
    uint8_t *piece = NULL;
    int rc = wal_segment_parse(name, p->seg_size, &tli, &segno);
    *complete = false;
    *valid_end = LSN_INVALID;
    *reason = NULL;
    if (rc < 0)
        return rc;
    lsn_t seg_start = segno_to_lsn(segno, p->seg_size);
    fold(c);
    if (c->d && waldecode_position(c->d) != seg_start) {
        /* Not the next segment (a timeline switch inside the backup): start afresh. */
        waldecode_free(c->d);
        c->d = NULL;
    }
    if (c->d) {
        waldecode_summary_reset(c->d);
    } else {
        struct waldecode_config cfg = {
            .seg_size = p->seg_size,
            .system_identifier = p->system_identifier,
            .pg_major = p->pg_version / 10000,
            .tli = tli,
            .start = seg_start,
            .prev_lsn = LSN_INVALID,
            .on_event = on_event,
            .arg = c,
        };
        if ((rc = waldecode_new(&cfg, &c->d)) < 0)
            goto out;
    }
    piece = xmalloc(READ_PIECE);
    for (uint64_t off = 0; off < len;) {
        size_t want = len - off < READ_PIECE ? (size_t)(len - off) : READ_PIECE;
        ssize_t n = pread(fd, piece, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = err_set_errno(ERR_IO, n < 0 ? errno : EIO,
                               "could not read WAL segment %s of the backup back", name);
            goto out;
        }
        if (waldecode_feed(c->d, piece, (size_t)n) < 0) {
            /* Past the standby's last byte lies whatever the recycled file held: to the
             * decoder a bad record, to PostgreSQL the end of WAL. Incomplete either way. */
            *reason = xstrdup(err_message());
            err_clear();
            break;
        }
        off += (uint64_t)n;
    }
    const struct waldecode_summary *s = waldecode_summary(c->d);
    if (*reason) {
        *valid_end = s->records ? s->last_end_lsn : seg_start;
        goto out;
    }
    *complete = !s->end_of_wal || s->switch_seen;
    *valid_end = s->end_of_wal ? s->end_of_wal_lsn : seg_start + len;
    if (!*complete)
        *reason = xstrdup(s->end_reason);
out:
    free(piece);
    if (rc < 0 || *reason || waldecode_summary(c->d)->end_of_wal) {
        /* The decoder cannot follow into a next segment: a new one would start there. */
        waldecode_free(c->d);
        c->d = NULL;
    }
    return rc;
}
