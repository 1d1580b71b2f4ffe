/* manifest_read.c — reading pgark's JSON Lines backup manifest as a stream (see
 * include/pgark/manifest.h); the writer is manifest.c. */
#include "manifest_int.h"
#include "pgark/wal.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COPY_BUF (64 * 1024)

static bool time_from_text(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        s[n] != '\0')
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t t = (int64_t)timegm(&tm);
    char back[32];
    manifest_time_text(t, back);
    if (strcmp(back, s) != 0) /* out-of-range fields, missing zero padding */
        return false;
    *out = t;
    return true;
}

static bool mode_from_json(json_int_t v, uint32_t *out)
{
    uint32_t mode = 0, shift = 0;
    if (v < 0 || v > 7777)
        return false;
    for (; v; v /= 10, shift += 3) {
        if (v % 10 > 7)
            return false;
        mode |= (uint32_t)(v % 10) << shift;
    }
    *out = mode;
    return true;
}

/* ---- reader ---- */

struct manifest_reader {
    manifest_file_fn on_file;
    void *arg;
    struct buf line;
    uint64_t lineno; /* number of the line being parsed, 1-based */
    int failed;

    bool have_header;
    struct manifest_header h;
    char *label, *compression, *parent;
    struct manifest_tablespace *ts;
    size_t n_ts;

    uint64_t files, logical;
    struct buf path, link, chunks; /* reused for every file line */
};

struct manifest_reader *manifest_reader_new(manifest_file_fn on_file, void *arg)
{
    struct manifest_reader *r = xcalloc(1, sizeof(*r));
    r->on_file = on_file;
    r->arg = arg;
    return r;
}

void manifest_reader_free(struct manifest_reader *r)
{
    if (!r)
        return;
    buf_free(&r->line);
    free(r->label);
    free(r->compression);
    free(r->parent);
    for (size_t i = 0; i < r->n_ts; i++)
        free((char *)r->ts[i].location);
    free(r->ts);
    buf_free(&r->path);
    buf_free(&r->link);
    buf_free(&r->chunks);
    free(r);
}

const struct manifest_header *manifest_reader_header(const struct manifest_reader *r)
{
    return r->have_header ? &r->h : NULL;
}

uint64_t manifest_reader_lines(const struct manifest_reader *r)
{
    return r->lineno;
}

static int bad(struct manifest_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int bad(struct manifest_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = xvasprintf(fmt, ap);
    va_end(ap);
    int rc = err_set(ERR_INTEGRITY, "manifest line %" PRIu64 ": %s", r->lineno, what);
    free(what);
    return rc;
}

static int need(struct manifest_reader *r, json_t *o, const char *key, json_type type,
                const char *what, json_t **out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_typeof(v) != type)
        return bad(r, "\"%s\" is missing or not %s", key, what);
    *out = v;
    return 0;
}

static int get_u64(struct manifest_reader *r, json_t *o, const char *key, uint64_t *out)
{
    json_t *v = NULL;
    int rc = need(r, o, key, JSON_INTEGER, "an integer", &v);
    if (rc < 0)
        return rc;
    if (json_integer_value(v) < 0)
        return bad(r, "\"%s\" is negative", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_str(struct manifest_reader *r, json_t *o, const char *key, const char **out)
{
    json_t *v = NULL;
    int rc = need(r, o, key, JSON_STRING, "a string", &v);
    if (rc < 0)
        return rc;
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return bad(r, "\"%s\" contains a NUL character", key);
    return 0;
}

/* The bytes under key (UTF-8 text) or key_hex (hex), exactly one of them. */
static int get_bytes(struct manifest_reader *r, json_t *o, const char *key, const char *key_hex,
                     struct buf *out)
{
    json_t *t = json_object_get(o, key), *x = json_object_get(o, key_hex);
    const char *s;
    int rc;
    buf_reset(out);
    if ((t != NULL) == (x != NULL))
        return bad(r, "exactly one of \"%s\" and \"%s\" is required", key, key_hex);
    if (t) {
        rc = get_str(r, o, key, &s);
        if (rc < 0)
            return rc;
        buf_append_str(out, s);
    } else {
        rc = get_str(r, o, key_hex, &s);
        if (rc < 0)
            return rc;
        size_t n = strlen(s) / 2;
        buf_reserve(out, n + 1);
        if (strlen(s) % 2 || hex_decode(s, out->data, n) < 0)
            return bad(r, "\"%s\" is not hexadecimal", key_hex);
        out->len = n;
        out->data[n] = '\0';
        if (memchr(out->data, '\0', n))
            return bad(r, "\"%s\" contains a NUL byte", key_hex);
    }
    if (out->len == 0)
        return bad(r, "\"%s\" is empty", key);
    return 0;
}

/* Long: every field of the manifest's header read and range-checked in turn, each with
 * its own error; one level throughout.
 */
static int parse_header(struct manifest_reader *r, json_t *o)
{
    struct manifest_header *h = &r->h;
    const char *s;
    uint64_t v = 0;
    json_t *a = NULL;
    int rc;
    if ((rc = get_u64(r, o, "format", &v)) < 0)
        return rc;
    if (v != MANIFEST_FORMAT)
        return bad(r, "unsupported manifest format %" PRIu64, v);
    h->format = MANIFEST_FORMAT;
    if ((rc = get_str(r, o, "label", &s)) < 0)
        return rc;
    r->label = xstrdup(s);
    static const char *const lsns[] = {"start_lsn", "stop_lsn"};
    for (int i = 0; i < 2; i++) {
        if ((rc = get_str(r, o, lsns[i], &s)) < 0)
            return rc;
        if (lsn_parse(s, i ? &h->stop_lsn : &h->start_lsn) < 0) {
            err_clear();
            return bad(r, "\"%s\" is not an LSN: \"%s\"", lsns[i], s);
        }
    }
    static const char *const times[] = {"start_time", "stop_time"};
    for (int i = 0; i < 2; i++) {
        if ((rc = get_str(r, o, times[i], &s)) < 0)
            return rc;
        if (!time_from_text(s, i ? &h->stop_time : &h->start_time))
            return bad(r, "\"%s\" is not a UTC time: \"%s\"", times[i], s);
    }
    if ((rc = get_u64(r, o, "timeline", &v)) < 0)
        return rc;
    if (v == 0 || v > UINT32_MAX)
        return bad(r, "\"timeline\" is out of range");
    h->timeline = (uint32_t)v;
    if ((rc = get_u64(r, o, "pg_version", &v)) < 0)
        return rc;
    if (v == 0 || v > INT32_MAX)
        return bad(r, "\"pg_version\" is out of range");
    h->pg_version = (int)v;
    if ((rc = get_str(r, o, "system_identifier", &s)) < 0)
        return rc;
    char *end;
    errno = 0;
    h->system_identifier = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s < '0' || *s > '9')
        return bad(r, "\"system_identifier\" is not a number: \"%s\"", s);
    if ((rc = get_u64(r, o, "chunk_size", &h->chunk_size)) < 0)
        return rc;
    if (h->chunk_size == 0)
        return bad(r, "\"chunk_size\" is zero");
    if ((rc = need(r, o, "tablespaces", JSON_ARRAY, "an array", &a)) < 0)
        return rc;
    r->ts = xcalloc(json_array_size(a) + 1, sizeof(*r->ts));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *t = json_array_get(a, i);
        if (!json_is_object(t))
            return bad(r, "tablespace %zu is not an object", i);
        if ((rc = get_u64(r, t, "oid", &v)) < 0)
            return rc;
        if (v == 0 || v > UINT32_MAX)
            return bad(r, "tablespace oid %" PRIu64 " is out of range", v);
        if ((rc = get_bytes(r, t, "location", "location_hex", &r->path)) < 0)
            return rc;
        r->ts[i].oid = (uint32_t)v;
        r->ts[i].location = xstrdup((const char *)r->path.data);
        r->n_ts++;
    }
    h->tablespaces = r->ts;
    h->n_tablespaces = r->n_ts;
    if ((rc = get_u64(r, o, "logical_bytes", &h->logical_bytes)) < 0 ||
        (rc = get_u64(r, o, "stored_bytes", &h->stored_bytes)) < 0 ||
        (rc = get_u64(r, o, "files", &h->files)) < 0)
        return rc;
    if ((rc = get_str(r, o, "compression", &s)) < 0)
        return rc;
    r->compression = xstrdup(s);
    json_t *e = json_object_get(o, "encrypted");
    if (!json_is_boolean(e))
        return bad(r, "\"encrypted\" is missing or not a boolean");
    h->encrypted = json_is_true(e);
    /* Optional: manifests written before it was recorded lack it. */
    h->consistent_time_us = 0;
    if (json_object_get(o, "consistent_time_us")) {
        if ((rc = get_u64(r, o, "consistent_time_us", &v)) < 0)
            return rc;
        if (v == 0 || v > (uint64_t)INT64_MAX / 2)
            return bad(r, "\"consistent_time_us\" is out of range");
        h->consistent_time_us = (int64_t)v;
    }
    h->parent = NULL;
    if (json_object_get(o, "parent")) {
        if ((rc = get_str(r, o, "parent", &s)) < 0)
            return rc;
        r->parent = xstrdup(s);
        h->parent = r->parent;
    }
    h->label = r->label;
    h->compression = r->compression;
    r->have_header = true;
    return 0;
}

/* Long: every field of a file's entry read and checked in turn, each with its own error;
 * one level.
 */
static int parse_file(struct manifest_reader *r, json_t *o)
{
    struct manifest_file f;
    const char *s;
    uint64_t v = 0;
    json_t *j = NULL;
    int rc;
    memset(&f, 0, sizeof(f));
    if ((rc = get_bytes(r, o, "path", "path_hex", &r->path)) < 0)
        return rc;
    f.path = (const char *)r->path.data;
    const char *why = manifest_path_problem(f.path);
    if (why) {
        struct buf b = BUF_INIT;
        manifest_path_show(&b, f.path);
        rc = bad(r, "entry \"%s\" %s", (const char *)b.data, why);
        buf_free(&b);
        return rc;
    }
    if ((rc = get_str(r, o, "type", &s)) < 0)
        return rc;
    if (!strcmp(s, "file"))
        f.type = MANIFEST_TYPE_FILE;
    else if (!strcmp(s, "dir"))
        f.type = MANIFEST_TYPE_DIR;
    else if (!strcmp(s, "symlink"))
        f.type = MANIFEST_TYPE_SYMLINK;
    else
        return bad(r, "unknown type \"%s\"", s);
    if ((rc = need(r, o, "mode", JSON_INTEGER, "an integer", &j)) < 0)
        return rc;
    if (!mode_from_json(json_integer_value(j), &f.mode))
        return bad(r, "\"mode\" %" JSON_INTEGER_FORMAT " is not an octal mode",
                   json_integer_value(j));
    if ((rc = need(r, o, "mtime", JSON_INTEGER, "an integer", &j)) < 0)
        return rc;
    f.mtime = json_integer_value(j);

    if (f.type == MANIFEST_TYPE_FILE) {
        if ((rc = get_u64(r, o, "size", &f.size)) < 0)
            return rc;
        bool old = json_object_get(o, "sha256") != NULL;
        const char *key = old ? "sha256" : "sha256_chunks";
        if (old && json_object_get(o, "sha256_chunks"))
            return bad(r, "both \"sha256\" and \"sha256_chunks\" are present");
        if ((rc = get_str(r, o, key, &s)) < 0)
            return rc;
        if (strlen(s) != SHA256_HEX_LEN || hex_decode(s, f.digest, SHA256_LEN) < 0)
            return bad(r, "\"%s\" is not a SHA-256 digest", key);
        f.digest_kind = old ? MANIFEST_DIGEST_FILE : MANIFEST_DIGEST_CHUNKS;
        if ((rc = need(r, o, "chunks", JSON_ARRAY, "an array", &j)) < 0)
            return rc;
        f.n_chunks = json_array_size(j);
        v = (f.size + r->h.chunk_size - 1) / r->h.chunk_size;
        if (f.n_chunks != v)
            return bad(r, "%zu chunks for %" PRIu64 " bytes, expected %" PRIu64, f.n_chunks, f.size,
                       v);
        buf_reset(&r->chunks);
        buf_reserve(&r->chunks, f.n_chunks * SHA256_LEN);
        for (size_t i = 0; i < f.n_chunks; i++) {
            const char *name = json_string_value(json_array_get(j, i));
            if (!name || strlen(name) != SHA256_HEX_LEN ||
                hex_decode(name, r->chunks.data + i * SHA256_LEN, SHA256_LEN) < 0)
                return bad(r, "chunk %zu is not a chunk name", i);
        }
        r->chunks.len = f.n_chunks * SHA256_LEN;
        f.chunks = r->chunks.data;
    } else if (json_object_get(o, "chunks") || json_object_get(o, "size")) {
        return bad(r, "a %s has no size or chunks", s);
    }
    if (f.type == MANIFEST_TYPE_SYMLINK) {
        if ((rc = get_bytes(r, o, "link", "link_hex", &r->link)) < 0)
            return rc;
        f.link = (const char *)r->link.data;
    } else if (json_object_get(o, "link") || json_object_get(o, "link_hex")) {
        return bad(r, "only a symlink has a link");
    }

    r->files++;
    r->logical += f.size;
    if (r->files > r->h.files)
        return bad(r, "more files than the %" PRIu64 " the header announces", r->h.files);
    return r->on_file ? r->on_file(r->arg, &f) : 0;
}

static int parse_line(struct manifest_reader *r, const uint8_t *data, size_t len)
{
    json_error_t jerr;
    r->lineno++;
    json_t *o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return err_set(ERR_INTEGRITY, "manifest line %" PRIu64 " is not valid JSON: %s", r->lineno,
                       jerr.text);
    int rc;
    if (!json_is_object(o))
        rc = bad(r, "not a JSON object");
    else if (r->lineno == 1)
        rc = parse_header(r, o);
    else
        rc = parse_file(r, o);
    json_decref(o);
    return rc;
}

int manifest_reader_feed(struct manifest_reader *r, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (r->failed)
        return err_set(ERR_RUNTIME, "manifest reader used after an earlier error");
    while (len > 0) {
        const uint8_t *nl = memchr(p, '\n', len);
        size_t n = nl ? (size_t)(nl - p) : len;
        if (r->line.len + n > MANIFEST_LINE_MAX) {
            r->failed = err_set(ERR_INTEGRITY, "manifest line %" PRIu64 " is longer than %u bytes",
                                r->lineno + 1, MANIFEST_LINE_MAX);
            return r->failed;
        }
        if (!nl) {
            buf_append(&r->line, p, n);
            return 0;
        }
        int rc;
        if (r->line.len == 0) {
            rc = parse_line(r, p, n); /* whole line inside the piece: no copy */
        } else {
            buf_append(&r->line, p, n);
            rc = parse_line(r, r->line.data, r->line.len);
            buf_reset(&r->line);
        }
        if (rc < 0) {
            r->failed = rc;
            return rc;
        }
        p += n + 1;
        len -= n + 1;
    }
    return 0;
}

int manifest_reader_finish(struct manifest_reader *r)
{
    int rc = 0;
    if (r->failed)
        return err_set(ERR_RUNTIME, "manifest reader used after an earlier error");
    if (r->line.len > 0)
        rc = err_set(ERR_INTEGRITY, "manifest truncated: line %" PRIu64 " is incomplete",
                     r->lineno + 1);
    else if (!r->have_header)
        rc = err_set(ERR_INTEGRITY, "manifest is empty");
    else if (r->files != r->h.files)
        rc = err_set(ERR_INTEGRITY,
                     "manifest truncated: the header announces %" PRIu64 " files, %" PRIu64
                     " were read",
                     r->h.files, r->files);
    else if (r->logical != r->h.logical_bytes)
        rc = err_set(ERR_INTEGRITY,
                     "manifest damaged: file sizes add up to %" PRIu64
                     " bytes, the header says %" PRIu64,
                     r->logical, r->h.logical_bytes);
    if (rc < 0)
        r->failed = rc;
    return rc;
}

int manifest_reader_feed_file(struct manifest_reader *r, FILE *f, const char *what)
{
    uint8_t *buf = xmalloc(COPY_BUF);
    size_t n;
    int rc = 0;

    rewind(f);
    while (rc == 0 && (n = fread(buf, 1, COPY_BUF, f)) > 0)
        rc = manifest_reader_feed(r, buf, n);
    if (rc == 0 && ferror(f))
        rc = err_set_errno(ERR_IO, errno, "could not read back %s", what);
    if (rc == 0)
        rc = manifest_reader_finish(r);
    free(buf);
    return rc;
}
