/*
 * shiphwm.c — each shipper keeps its repository's WAL high-water mark (repo.h) up with
 * what it shipped, and records in the spool the last one it wrote.
 *
 * The mark is written after the segment or partial copy it covers is stored and before
 * the cursor and status.json move past it, so that neither ever says more than the
 * repository's mark; a mark that could not be written fails the ship, which is retried.
 * The spool's record is what `verify` holds the repository's mark to: only a second
 * copy, out of the repository's reach, shows that an older mark was put back.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"
#include "pgark/units.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record_path(const struct shipper *sh, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s%s", spool_dir(sh->rx->spool), REPO_WAL_HWM_RECORD_PREFIX, sh->name);
}

void ship_hwm_start(struct shipper *sh)
{
    char path[4096];
    struct repo_wal_hwm rec;
    struct buf b = BUF_INIT;
    record_path(sh, path, sizeof(path));
    memset(&rec, 0, sizeof(rec));
    FILE *f = fopen(path, "re");
    if (f) {
        buf_append_file(&b, f);
        fclose(f);
        char what[4200];
        snprintf(what, sizeof(what), "record \"%s\"", path);
        if (repo_wal_hwm_parse(b.data ? (const char *)b.data : "", b.len, sh->rx->seg_size, what,
                               &rec) < 0) {
            log_warn("%s; it is replaced with the next mark written", err_message());
            err_clear();
            memset(&rec, 0, sizeof(rec));
        }
    }
    buf_free(&b);
    pthread_mutex_lock(&sh->rx->lock);
    sh->hwm_written = rec;
    pthread_mutex_unlock(&sh->rx->lock);
}

static int record_save(struct shipper *sh, const struct repo_wal_hwm *m)
{
    char path[4096], tmp[4200];
    record_path(sh, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char *text = repo_wal_hwm_format(m, sh->rx->seg_size);
    int rc = 0;
    FILE *f = privfs_fopen_w(tmp);
    if (!f) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        goto out;
    }
    fprintf(f, "%s\n", text);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", path);
out:
    free(text);
    return rc;
}

/* Read the stored mark of tli into sh->hwm; a stored mark behind the last one this
 * receiver wrote means someone else changed it, which is said loudly: WAL shipped after
 * it may have been removed with it. */
static int load(struct shipper *sh, timeline_t tli)
{
    struct repo_wal_hwm stored, rec;
    int rc = repo_wal_hwm_load(sh->repo, tli, &stored);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&sh->rx->lock);
    rec = sh->hwm_written;
    pthread_mutex_unlock(&sh->rx->lock);
    uint64_t seg = sh->rx->seg_size;
    if (rec.seq && rec.tli == tli &&
        (stored.seq < rec.seq || repo_wal_hwm_end(&stored, seg) < repo_wal_hwm_end(&rec, seg))) {
        char a[LSN_STRLEN], b[LSN_STRLEN], when[64];
        log_warn("repository \"%s\": the WAL high-water mark of timeline %u is older than the "
                 "one this receiver wrote last (it holds seq %llu reaching %s; seq %llu reaching "
                 "%s was written at %s): it was put back or removed by someone else, and WAL "
                 "archived after it may be missing; \"pgark verify\" names what is",
                 sh->name, tli, (unsigned long long)stored.seq,
                 lsn_format(repo_wal_hwm_end(&stored, seg), a), (unsigned long long)rec.seq,
                 lsn_format(repo_wal_hwm_end(&rec, seg), b),
                 time_format_pg(rec.time_us, when, sizeof(when)));
    }
    /* The reach is the repository's own plus what is shipped from now on: WAL this
     * receiver shipped once and the repository lost is not claimed again (verify finds
     * it below the next mark). Only the sequence goes on from the record. */
    sh->hwm = stored;
    sh->hwm.tli = tli;
    if (rec.tli == tli && rec.seq > sh->hwm.seq)
        sh->hwm.seq = rec.seq;
    sh->hwm_loaded = true;
    sh->hwm_dirty = false;
    return 0;
}

/* Write sh->hwm, with the next seq, when it moved since it was last written. */
static int flush(struct shipper *sh)
{
    /* Left behind at a stop or reload, the next receiver writes this mark: one written
     * from here could take it back. */
    if (!sh->hwm_dirty || atomic_load(&sh->abandoned))
        return 0;
    struct repo_wal_hwm m = sh->hwm;
    m.seq++;
    m.time_us = time_now_us();
    snprintf(m.writer, sizeof(m.writer), "receive");
    int rc = repo_wal_hwm_put(sh->repo, &m);
    if (rc < 0)
        return rc;
    sh->hwm = m;
    sh->hwm_dirty = false;
    pthread_mutex_lock(&sh->rx->lock);
    sh->hwm_written = m;
    pthread_mutex_unlock(&sh->rx->lock);
    if (record_save(sh, &m) < 0) {
        /* The repository's mark is written; a record left behind only makes verify's
         * comparison weaker, never wrong. */
        char *text = err_format();
        err_clear();
        log_warn("%s", text);
        free(text);
    }
    return 0;
}

int ship_hwm_note(struct shipper *sh, timeline_t tli, uint64_t segno, bool partial, uint64_t bytes)
{
    int rc;
    if (sh->hwm_loaded && sh->hwm.tli != tli) {
        /* Another timeline: a mark still due on the one before is written first. */
        if ((rc = flush(sh)) < 0)
            return rc;
        sh->hwm_loaded = false;
    }
    if (!sh->hwm_loaded && (rc = load(sh, tli)) < 0)
        return rc;
    if (repo_wal_hwm_add(&sh->hwm, segno, partial, bytes))
        sh->hwm_dirty = true;
    return flush(sh);
}
