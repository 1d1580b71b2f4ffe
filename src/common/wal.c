/* wal.c — LSNs, WAL segment names and timeline history files (see include/pgark/wal.h). */
#include "pgark/wal.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAL_SEG_MIN (UINT64_C(1) << 20)
#define WAL_SEG_MAX (UINT64_C(1) << 30)
#define XLOGID_SPAN (UINT64_C(1) << 32) /* bytes covered by one "xlogid" (high LSN half) */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool is_upper_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static bool all_upper_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_upper_hex(s[i]))
            return false;
    }
    return true;
}

/*
 * One LSN half: 1 to 8 hex digits (either case, as PostgreSQL's pg_lsn input accepts),
 * so a half never overflows 32 bits. Returns the number of characters used, 0 if none
 * or too many.
 */
static size_t lsn_half(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    size_t n = 0;
    while (hex_value(s[n]) >= 0) {
        if (n == 8)
            return 0;
        v = (v << 4) | (uint32_t)hex_value(s[n]);
        n++;
    }
    *out = v;
    return n;
}

int lsn_parse(const char *text, lsn_t *out)
{
    uint32_t hi, lo;
    size_t n = lsn_half(text, &hi);
    if (n == 0 || text[n] != '/')
        goto bad;
    size_t m = lsn_half(text + n + 1, &lo);
    if (m == 0 || text[n + 1 + m] != '\0')
        goto bad;
    *out = ((lsn_t)hi << 32) | lo;
    return 0;
bad:
    return err_set(ERR_USAGE,
                   "invalid LSN \"%s\" (expected two hexadecimal numbers of at most 8 "
                   "digits separated by \"/\", such as \"0/3000028\")",
                   text);
}

char *lsn_format(lsn_t lsn, char *buf)
{
    snprintf(buf, LSN_STRLEN, "%X/%X", (uint32_t)(lsn >> 32), (uint32_t)lsn);
    return buf;
}

bool wal_seg_size_valid(uint64_t seg_size)
{
    return seg_size >= WAL_SEG_MIN && seg_size <= WAL_SEG_MAX && (seg_size & (seg_size - 1)) == 0;
}

/*
 * SHOW prints a byte-unit setting in the largest unit that divides it exactly, with
 * PostgreSQL's memory unit spellings (1024-based): "1MB", "16MB", "1GB". A bare number
 * would be bytes. Nothing else is accepted: a surprise here means we talk to something
 * that is not the server we expect.
 */
int wal_seg_size_parse_show(const char *text, uint64_t *out)
{
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
    const char *p = text;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > UINT64_C(1) << 32)
            goto bad; /* far beyond any segment size; stops overflow too */
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == text)
        goto bad;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (v > (WAL_SEG_MAX >> units[i].shift)) /* too big; keeps the shift exact */
                goto bad;
            v <<= units[i].shift;
            if (!wal_seg_size_valid(v))
                goto bad;
            *out = v;
            return 0;
        }
    }
bad:
    return err_set(ERR_PROTOCOL,
                   "server reported an invalid wal_segment_size \"%s\" (expected a power of "
                   "two from 1MB to 1GB)",
                   text);
}

char *wal_segment_name(timeline_t tli, uint64_t segno, uint64_t seg_size, char *buf)
{
    assert(wal_seg_size_valid(seg_size));
    uint64_t per_id = XLOGID_SPAN / seg_size;
    snprintf(buf, WAL_NAME_BUFLEN, "%08X%08X%08X", tli, (uint32_t)(segno / per_id),
             (uint32_t)(segno % per_id));
    return buf;
}

static uint32_t hex32(const char *s)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 4) | (uint32_t)hex_value(s[i]);
    return v;
}

int wal_segment_parse(const char *name, uint64_t seg_size, timeline_t *tli, uint64_t *segno)
{
    if (!wal_seg_size_valid(seg_size))
        return err_set(ERR_USAGE, "invalid WAL segment size %llu", (unsigned long long)seg_size);
    if (!wal_is_segment_name(name))
        return err_set(ERR_USAGE,
                       "invalid WAL segment name \"%s\" (expected 24 uppercase hexadecimal "
                       "digits)",
                       name);
    uint32_t t = hex32(name), hi = hex32(name + 8), lo = hex32(name + 16);
    uint64_t per_id = XLOGID_SPAN / seg_size;
    if (t == 0)
        return err_set(ERR_USAGE, "invalid WAL segment name \"%s\" (timeline 0 does not exist)",
                       name);
    if (lo >= per_id)
        return err_set(ERR_USAGE,
                       "invalid WAL segment name \"%s\" (last part must be below %llX for %llu MiB "
                       "segments)",
                       name, (unsigned long long)per_id, (unsigned long long)(seg_size >> 20));
    *tli = t;
    *segno = (uint64_t)hi * per_id + lo;
    return 0;
}

bool wal_is_segment_name(const char *name)
{
    return strlen(name) == 24 && all_upper_hex(name, 24);
}

bool wal_is_partial_name(const char *name)
{
    return strlen(name) == 32 && all_upper_hex(name, 24) && strcmp(name + 24, ".partial") == 0;
}

bool wal_is_history_name(const char *name)
{
    return strlen(name) == 16 && all_upper_hex(name, 8) && strcmp(name + 8, ".history") == 0;
}

char *wal_history_name(timeline_t tli, char *buf)
{
    snprintf(buf, 16 + 1, "%08X.history", tli);
    return buf;
}

/*
 * History lines as PostgreSQL writes them: "<parent tli>\t<switchpoint>\t<reason>\n",
 * with a blank line between entries. Leading whitespace is ignored (as the server does);
 * the fields may be separated by any run of blanks; the reason is free text.
 */
static int history_line(const char *file, size_t lineno, const char *line, const char *end,
                        struct timeline_entry *e)
{
    const char *p = line;
    uint64_t tli = 0;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        tli = tli * 10 + (uint64_t)(*p - '0');
        if (tli > UINT32_MAX)
            goto bad;
        p++;
        digits++;
    }
    if (digits == 0 || p == end || (*p != '\t' && *p != ' '))
        goto bad;
    while (p < end && (*p == '\t' || *p == ' '))
        p++;
    const char *lsn_start = p;
    while (p < end && *p != '\t' && *p != ' ' && *p != '\r')
        p++;
    char lsn_text[32];
    size_t lsn_len = (size_t)(p - lsn_start);
    if (lsn_len == 0 || lsn_len >= sizeof(lsn_text))
        goto bad;
    memcpy(lsn_text, lsn_start, lsn_len);
    lsn_text[lsn_len] = '\0';
    lsn_t lsn;
    if (lsn_parse(lsn_text, &lsn) < 0)
        goto bad;
    if (tli == 0)
        return err_set(ERR_INTEGRITY, "invalid timeline history file \"%s\" line %zu: timeline 0",
                       file, lineno);
    e->tli = (timeline_t)tli;
    e->switchpoint = lsn;
    return 0;
bad:
    return err_set(ERR_INTEGRITY,
                   "invalid timeline history file \"%s\" line %zu: expected \"<parent "
                   "timeline> <switch LSN> [reason]\", found \"%.*s\"",
                   file, lineno, (int)(end - line > 80 ? 80 : end - line), line);
}

int timeline_history_parse(timeline_t tli, const char *content, size_t len,
                           struct timeline_history **out)
{
    char file[16 + 1];
    wal_history_name(tli, file);
    struct timeline_history *h = NULL;
    size_t cap = 0;
    int rc = 0;

    *out = NULL;
    if (tli == 0) {
        rc = err_set(ERR_USAGE, "timeline 0 has no history");
        goto out;
    }
    if (memchr(content, '\0', len)) {
        rc = err_set(ERR_INTEGRITY, "invalid timeline history file \"%s\": contains a NUL byte",
                     file);
        goto out;
    }
    h = xcalloc(1, sizeof(*h));
    h->tli = tli;
    const char *p = content, *end = content + len;
    for (size_t lineno = 1; p < end; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *s = p;
        while (s < line_end && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        p = nl ? nl + 1 : end;
        if (s == line_end || *s == '#')
            continue;

        struct timeline_entry e;
        rc = history_line(file, lineno, s, line_end, &e);
        if (rc < 0)
            goto out;
        if (h->count > 0 && e.tli <= h->entries[h->count - 1].tli) {
            rc = err_set(ERR_INTEGRITY,
                         "invalid timeline history file \"%s\" line %zu: timeline %u does not "
                         "follow timeline %u (timelines must increase)",
                         file, lineno, e.tli, h->entries[h->count - 1].tli);
            goto out;
        }
        if (e.tli >= tli) {
            rc = err_set(ERR_INTEGRITY,
                         "invalid timeline history file \"%s\" line %zu: parent timeline %u is "
                         "not below timeline %u",
                         file, lineno, e.tli, tli);
            goto out;
        }
        if (h->count > 0 && e.switchpoint < h->entries[h->count - 1].switchpoint) {
            char a[LSN_STRLEN], b[LSN_STRLEN];
            rc = err_set(ERR_INTEGRITY,
                         "invalid timeline history file \"%s\" line %zu: switch point %s is "
                         "before the previous one %s",
                         file, lineno, lsn_format(e.switchpoint, a),
                         lsn_format(h->entries[h->count - 1].switchpoint, b));
            goto out;
        }
        if (h->count == cap) {
            cap = cap ? cap * 2 : 4;
            h->entries = xrealloc(h->entries, cap * sizeof(*h->entries));
        }
        h->entries[h->count++] = e;
    }
    if (h->count == 0 && tli > 1) {
        /* Every timeline after the first has a parent: an empty file is a truncated one. */
        rc = err_set(ERR_INTEGRITY, "invalid timeline history file \"%s\": no entries", file);
        goto out;
    }
    *out = h;
    h = NULL;
out:
    timeline_history_free(h);
    return rc;
}

void timeline_history_free(struct timeline_history *h)
{
    if (!h)
        return;
    free(h->entries);
    free(h);
}

timeline_t timeline_history_tli_at(const struct timeline_history *h, lsn_t lsn)
{
    for (size_t i = 0; i < h->count; i++) {
        if (lsn < h->entries[i].switchpoint)
            return h->entries[i].tli;
    }
    return h->tli;
}
