/*
 * spool_int.h — the receiver's durable local WAL spool (internal to walreceiver/).
 *
 * Promise: WAL bytes are written into "<dir>/<SEGMENT>.partial", a file created
 * pre-padded to the full segment size (so a full disk is found when a segment is
 * created, before any of its bytes are acknowledged, and fdatasync is enough
 * afterwards). spool_flush makes every written byte durable and returns the
 * position up to which that is true: only that position may be reported to the
 * server as flushed. A segment whose last byte is written is fsynced and renamed to
 * its plain name (the directory fsynced too): from then on it is complete and
 * waits for the shipper. History files are written to a temp name and renamed.
 * Not thread-safe for writing: the receive loop is the only writer; the shipper
 * only reads complete files and the flushed prefix of the partial one.
 */
#ifndef PGARK_SPOOL_INT_H
#define PGARK_SPOOL_INT_H

#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

/* One receiver per spool: take "<dir>/receive.lock" (the directory is created 0700
 * if missing; the file 0600, close-on-exec) with flock(LOCK_EX | LOCK_NB) and write
 * this process's pid into it, before anything else touches the spool. The kernel
 * drops the lock when its holder exits, however it ends, so a killed receiver's
 * successor starts. Returns the lock's descriptor (spool_unlock releases it), or
 * -ERR_RUNTIME at once, naming the holder's pid, when another process holds it, or
 * another negative error. */
int spool_lock(const char *dir);
/* Release a lock from spool_lock (a negative fd is a no-op). */
void spool_unlock(int fd);

/* Open (creating, 0700) the spool directory. max_bytes caps its size (0: no cap);
 * a segment that would pass the cap is refused with ERR_NO_SPACE. Refused first as
 * spool_check_owner does. Every file it gets is 0600. */
struct spool *spool_open(const char *dir, uint64_t seg_size, uint64_t max_bytes);
/* ERR_CONFIG when dir (<spool>/<cluster>) or its parent (<spool>) exists and another
 * user owns it: whoever owns them could read the WAL or plant some for the shippers. */
int spool_check_owner(const char *dir);
void spool_close(struct spool *s);
const char *spool_dir(const struct spool *s);

/* Where to resume by the spool's content (pg_receivewal's rule): the highest segment
 * (higher TLI on a tie; complete before partial); the start of a partial segment, or
 * the start of the segment after a complete one. *found false when the spool holds
 * no segment. */
int spool_resume_point(struct spool *s, bool *found, timeline_t *tli, lsn_t *lsn);

/* Write bytes starting at lsn on timeline tli; crosses segment boundaries as
 * needed, completing each filled segment. lsn must continue the previous write
 * unless it is the start of a segment (after a reconnect or a timeline switch). */
int spool_write(struct spool *s, timeline_t tli, lsn_t lsn, const uint8_t *data, size_t len);
/* Make everything written durable. *flushed = end of the durable bytes. */
int spool_flush(struct spool *s, lsn_t *flushed);
/* Flush and close the partial segment (disconnect, timeline end); it stays partial. */
int spool_close_segment(struct spool *s);

/* Write "%08X.history" (identical content is a no-op; different is ERR_EXISTS). */
int spool_write_history(struct spool *s, timeline_t tli, const void *data, size_t len);

/* Current partial segment, if open: name (WAL_NAME_BUFLEN) and bytes flushed in it. */
bool spool_current(struct spool *s, timeline_t *tli, char *name, uint64_t *flushed_bytes);
/* The tail of the WAL written through this spool: the segment last written, open or
 * closed since (the stream ended), when it is not complete and holds flushed bytes;
 * its name and the bytes flushed in it. False before the first write of this spool
 * object, and when the last segment written was completed. */
bool spool_tail(struct spool *s, timeline_t *tli, char *name, uint64_t *flushed_bytes);

/* The segment last written through this spool (open, closed, or complete): its name
 * and whether it is complete (synced whole). False before the first write. */
bool spool_last(struct spool *s, timeline_t *tli, char *name, bool *complete);

/* How many times a file appeared in the spool or changed its name (a segment created
 * or completed, a history file written, the segment being filled closed): a shipper
 * that saw the spool at one count need not look again until it moves. Thread-safe. */
uint64_t spool_changes(struct spool *s);

/* Bytes the spool holds (complete + partial segments, history files excluded). */
uint64_t spool_usage(struct spool *s);
/* Whether a new segment would fit now: under spool_max and in the filesystem. */
bool spool_has_room(struct spool *s);

#endif
