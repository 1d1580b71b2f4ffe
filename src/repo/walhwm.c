/*
 * walhwm.c — the high-water mark of a timeline's archive, "wal/<TLI>.hwm" (repo.h).
 *
 * Why an object of its own: an archive that was cut short looks like an archive that
 * ends there. Deleting the newest segments (or putting back an older .partial, which
 * the key authenticates as well as the newest one) leaves nothing a reader of the WAL
 * could tell from a quiet database; a restore to latest then stops short and promotes.
 * The mark says where the archive reached when it was last written, so whatever lies
 * below it and is gone is reported. It goes through the envelope like every object:
 * under the data key and bound to its path when encrypted, checksummed when not.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *repo_wal_hwm_path(timeline_t tli, char *buf, size_t cap)
{
    snprintf(buf, cap, "wal/%08X.hwm", tli);
    return buf;
}

lsn_t repo_wal_hwm_end(const struct repo_wal_hwm *m, uint64_t seg_size)
{
    lsn_t end = m->has_segment ? segno_to_lsn(m->segno + 1, seg_size) : 0;
    if (m->has_partial && segno_to_lsn(m->partial_segno, seg_size) + m->partial_bytes > end)
        end = segno_to_lsn(m->partial_segno, seg_size) + m->partial_bytes;
    return end;
}

bool repo_wal_hwm_add(struct repo_wal_hwm *m, uint64_t segno, bool partial, uint64_t bytes)
{
    if (m->has_segment && segno <= m->segno)
        return false;
    if (!partial) {
        m->has_segment = true;
        m->segno = segno;
        if (m->has_partial && m->partial_segno <= segno) {
            m->has_partial = false;
            m->partial_segno = m->partial_bytes = 0;
        }
        return true;
    }
    if (bytes == 0 || (m->has_partial && (segno < m->partial_segno || (segno == m->partial_segno &&
                                                                       bytes <= m->partial_bytes))))
        return false;
    m->has_partial = true;
    m->partial_segno = segno;
    m->partial_bytes = bytes;
    return true;
}

bool repo_wal_hwm_merge(struct repo_wal_hwm *m, const struct repo_wal_hwm *o)
{
    bool moved = false;
    if (o->has_segment)
        moved |= repo_wal_hwm_add(m, o->segno, false, 0);
    if (o->has_partial)
        moved |= repo_wal_hwm_add(m, o->partial_segno, true, o->partial_bytes);
    if (o->seq > m->seq)
        m->seq = o->seq;
    return moved;
}

/* --- JSON ------------------------------------------------------------------------------ */

char *repo_wal_hwm_format(const struct repo_wal_hwm *m, uint64_t seg_size)
{
    char name[WAL_NAME_BUFLEN], when[64], end[LSN_STRLEN];
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(REPO_WAL_HWM_FORMAT));
    json_object_set_new(o, "timeline", json_integer(m->tli));
    json_object_set_new(o, "seq", json_integer((json_int_t)m->seq));
    json_object_set_new(o, "time_us", json_integer(m->time_us));
    json_object_set_new(o, "time", json_string(time_format_pg(m->time_us, when, sizeof(when))));
    json_object_set_new(o, "writer", json_string(m->writer));
    json_object_set_new(o, "segment",
                        m->has_segment
                            ? json_string(wal_segment_name(m->tli, m->segno, seg_size, name))
                            : json_null());
    if (m->has_partial) {
        wal_segment_name(m->tli, m->partial_segno, seg_size, name);
        json_object_set_new(
            o, "partial",
            json_pack("{s:s, s:I}", "segment", name, "bytes", (json_int_t)m->partial_bytes));
    } else {
        json_object_set_new(o, "partial", json_null());
    }
    json_object_set_new(o, "end_lsn", json_string(lsn_format(repo_wal_hwm_end(m, seg_size), end)));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* Segment name field on timeline tli. */
static bool get_segment(json_t *v, uint64_t seg_size, timeline_t tli, uint64_t *segno)
{
    timeline_t t;
    const char *s = json_string_value(v);
    if (!s || wal_segment_parse(s, seg_size, &t, segno) < 0) {
        err_clear();
        return false;
    }
    return t == tli;
}

int repo_wal_hwm_parse(const char *text, size_t len, uint64_t seg_size, const char *what,
                       struct repo_wal_hwm *out)
{
    json_error_t jerr;
    const char *field = NULL;
    memset(out, 0, sizeof(*out));
    json_t *o = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return err_set(ERR_INTEGRITY, "WAL high-water mark %s is not JSON: %s", what, jerr.text);
    }
    json_t *v;
    if (json_integer_value(json_object_get(o, "format")) != REPO_WAL_HWM_FORMAT) {
        field = "format";
        goto bad;
    }
    v = json_object_get(o, "timeline");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > UINT32_MAX) {
        field = "timeline";
        goto bad;
    }
    out->tli = (timeline_t)json_integer_value(v);
    v = json_object_get(o, "seq");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        field = "seq";
        goto bad;
    }
    out->seq = (uint64_t)json_integer_value(v);
    v = json_object_get(o, "time_us");
    if (!json_is_integer(v)) {
        field = "time_us";
        goto bad;
    }
    out->time_us = json_integer_value(v);
    const char *writer = json_string_value(json_object_get(o, "writer"));
    if (!writer || strlen(writer) >= sizeof(out->writer)) {
        field = "writer";
        goto bad;
    }
    snprintf(out->writer, sizeof(out->writer), "%s", writer);
    v = json_object_get(o, "segment");
    if (!json_is_null(v)) {
        if (!get_segment(v, seg_size, out->tli, &out->segno)) {
            field = "segment";
            goto bad;
        }
        out->has_segment = true;
    }
    v = json_object_get(o, "partial");
    if (!json_is_null(v)) {
        json_t *b = json_object_get(v, "bytes");
        if (!json_is_object(v) ||
            !get_segment(json_object_get(v, "segment"), seg_size, out->tli, &out->partial_segno) ||
            !json_is_integer(b) || json_integer_value(b) < 1 ||
            (uint64_t)json_integer_value(b) > seg_size ||
            (out->has_segment && out->partial_segno <= out->segno)) {
            field = "partial";
            goto bad;
        }
        out->has_partial = true;
        out->partial_bytes = (uint64_t)json_integer_value(b);
    }
    lsn_t end;
    const char *end_text = json_string_value(json_object_get(o, "end_lsn"));
    if (!end_text || lsn_parse(end_text, &end) < 0 || end != repo_wal_hwm_end(out, seg_size)) {
        err_clear();
        field = "end_lsn";
        goto bad;
    }
    json_decref(o);
    return 0;
bad:
    json_decref(o);
    memset(out, 0, sizeof(*out));
    return err_set(ERR_INTEGRITY, "WAL high-water mark %s is invalid: field \"%s\"", what, field);
}

/* --- in a repository ------------------------------------------------------------------- */

int repo_wal_hwm_get(struct repo *r, timeline_t tli, struct repo_wal_hwm *out)
{
    char path[32], what[96];
    uint8_t *data = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    repo_wal_hwm_path(tli, path, sizeof(path));
    int rc = repo_get_all(r, path, &data, &len);
    if (rc < 0)
        return rc;
    snprintf(what, sizeof(what), "\"%s\" in repository \"%s\"", path, repo_name(r));
    rc = repo_wal_hwm_parse((const char *)data, len, r->identity.seg_size, what, out);
    free(data);
    if (rc == 0 && out->tli != tli) {
        timeline_t other = out->tli;
        memset(out, 0, sizeof(*out));
        rc = err_set(ERR_INTEGRITY, "WAL high-water mark %s is timeline %u's", what, other);
    }
    return rc;
}

int repo_wal_hwm_put(struct repo *r, const struct repo_wal_hwm *m)
{
    char path[32];
    repo_wal_hwm_path(m->tli, path, sizeof(path));
    char *text = repo_wal_hwm_format(m, r->identity.seg_size);
    int rc = repo_put(r, path, text, strlen(text));
    free(text);
    if (rc < 0)
        err_context("while storing the WAL high-water mark of timeline %u", m->tli);
    return rc;
}

int repo_wal_hwm_load(struct repo *r, timeline_t tli, struct repo_wal_hwm *out)
{
    int rc = repo_wal_hwm_get(r, tli, out);
    if (rc < 0 && err_kind() == ERR_NOT_FOUND) {
        err_clear();
    } else if (rc < 0 && err_kind() == ERR_INTEGRITY) {
        /* A mark nobody can read protects nothing; a new one does (verify saw it). */
        char *text = err_format();
        err_clear();
        log_warn("%s; writing a new one", text);
        free(text);
    } else if (rc < 0) {
        return err_context("while reading the WAL high-water mark of timeline %u", tli);
    }
    return 0;
}

int repo_wal_hwm_advance(struct repo *r, const char *writer, timeline_t tli, uint64_t segno,
                         bool partial, uint64_t bytes)
{
    struct repo_wal_hwm m;
    int rc = repo_wal_hwm_load(r, tli, &m);
    if (rc < 0)
        return rc;
    m.tli = tli;
    if (!repo_wal_hwm_add(&m, segno, partial, bytes) && m.seq > 0)
        return 0;
    m.seq++;
    m.time_us = time_now_us();
    snprintf(m.writer, sizeof(m.writer), "%s", writer);
    return repo_wal_hwm_put(r, &m);
}
