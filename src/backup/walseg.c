/*
 * walseg.c — whether a WAL segment the backup carries is whole.
 *
 * A backup from a primary ends with a segment switch, so every segment in its pg_wal is
 * complete. A standby cannot switch segments: the segment that holds the backup's stop
 * point is as far as the standby had received it, and past that the file holds zeros
 * or the bytes of a recycled segment. Archived under its name, it would stand for the
 * whole segment: a restore would stop short in it, and the receiver's complete copy
 * would conflict with it. So each segment is decoded first; one whose valid WAL ends
 * before its last byte (without a switch record) is not complete.
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/waldecode.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define READ_PIECE (1024 * 1024)

int backup_wal_complete(int fd, uint64_t len, const char *name, const struct backup_params *p,
                        bool *complete, lsn_t *valid_end, char **reason)
{
    timeline_t tli;
    uint64_t segno;
    struct waldecode *d = NULL;
    uint8_t *piece = NULL;
    int rc = wal_segment_parse(name, p->seg_size, &tli, &segno);
    *complete = false;
    *valid_end = LSN_INVALID;
    *reason = NULL;
    if (rc < 0)
        return rc;
    struct waldecode_config cfg = {
        .seg_size = p->seg_size,
        .system_identifier = p->system_identifier,
        .pg_major = p->pg_version / 10000,
        .tli = tli,
        .start = segno_to_lsn(segno, p->seg_size),
        .prev_lsn = LSN_INVALID,
    };
    if ((rc = waldecode_new(&cfg, &d)) < 0)
        goto out;
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
        if (waldecode_feed(d, piece, (size_t)n) < 0) {
            /* Past the standby's last byte lies whatever the recycled file held: to the
             * decoder a bad record, to PostgreSQL the end of WAL. Incomplete either way. */
            *reason = xstrdup(err_message());
            err_clear();
            break;
        }
        off += (uint64_t)n;
    }
    const struct waldecode_summary *s = waldecode_summary(d);
    if (*reason) {
        *valid_end = s->records ? s->last_end_lsn : cfg.start;
        goto out;
    }
    *complete = !s->end_of_wal || s->switch_seen;
    *valid_end = s->end_of_wal ? s->end_of_wal_lsn : cfg.start + len;
    if (!*complete)
        *reason = xstrdup(s->end_reason);
out:
    free(piece);
    waldecode_free(d);
    return rc;
}
