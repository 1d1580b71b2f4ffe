/* manifest.c — pgark's JSON Lines backup manifest, streamed (see include/pgark/manifest.h). */
#include "pgark/manifest.h"
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

/* ---- text forms shared by writer and reader ---- */

static void time_text(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "invalid");
}

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
    time_text(t, back);
    if (strcmp(back, s) != 0) /* out-of-range fields, missing zero padding */
        return false;
    *out = t;
    return true;
}

/* 0750 -> 750: the octal digits read as a decimal integer. */
static json_int_t mode_to_json(uint32_t mode)
{
    json_int_t v = 0, mult = 1;
    for (mode &= 07777; mode; mode >>= 3, mult *= 10)
        v += (json_int_t)(mode & 7) * mult;
    return v;
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

/* key: the text when it is valid UTF-8, else key_hex: hex of the bytes. */
static void set_bytes(json_t *o, const char *key, const char *key_hex, const char *s)
{
    size_t n = strlen(s);
    json_t *v = json_stringn(s, n); /* NULL when not valid UTF-8 */
    if (v) {
        json_object_set_new(o, key, v);
        return;
    }
    char *hex = xmalloc(2 * n + 1);
    hex_encode((const uint8_t *)s, n, hex);
    json_object_set_new(o, key_hex, json_string(hex));
    free(hex);
}

void manifest_chunks_digest(const uint8_t *chunk_sha256, size_t n, uint8_t out[SHA256_LEN])
{
    sha256(n ? chunk_sha256 : (const uint8_t *)"", n * SHA256_LEN, out);
}

/* ---- writer ---- */

struct manifest_writer {
    char *tmp_dir;
    FILE *tmp;
    uint64_t chunk_size;
    uint64_t files;
    uint64_t logical;
    bool done;
};

int manifest_sink_file(void *arg, const void *data, size_t len)
{
    FILE *f = arg;
    if (len && fwrite(data, 1, len, f) != len)
        return err_set_errno(ERR_IO, errno, "cannot write the backup manifest");
    return 0;
}

struct manifest_writer *manifest_writer_new(const char *tmp_dir, uint64_t chunk_size)
{
    if (chunk_size == 0) {
        err_set(ERR_USAGE, "chunk size must be greater than zero");
        return NULL;
    }
    char *path = xasprintf("%s/pgark-manifest-XXXXXX", tmp_dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        err_set_errno(ERR_IO, errno, "cannot create a temporary file in \"%s\"", tmp_dir);
        free(path);
        return NULL;
    }
    unlink(path); /* nothing to clean up after a crash */
    free(path);
    FILE *f = fdopen(fd, "w+");
    if (!f) {
        err_set_errno(ERR_IO, errno, "cannot open a temporary file in \"%s\"", tmp_dir);
        close(fd);
        return NULL;
    }
    struct manifest_writer *w = xcalloc(1, sizeof(*w));
    w->tmp_dir = xstrdup(tmp_dir);
    w->tmp = f;
    w->chunk_size = chunk_size;
    return w;
}

void manifest_writer_free(struct manifest_writer *w)
{
    if (!w)
        return;
    if (w->tmp)
        fclose(w->tmp);
    free(w->tmp_dir);
    free(w);
}

static int tmp_error(struct manifest_writer *w)
{
    return err_set_errno(ERR_IO, errno ? errno : EIO,
                         "cannot write the manifest's temporary file in \"%s\"", w->tmp_dir);
}

#define STR_(x) #x
#define STR(x) STR_(x)

const char *manifest_path_problem(const char *path)
{
    size_t len = strlen(path);
    if (len == 0)
        return "is empty";
    if (len > MANIFEST_PATH_MAX)
        return "is longer than " STR(MANIFEST_PATH_MAX) " bytes";
    if (path[0] == '/')
        return "is an absolute path";
    for (const char *c = path; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return "has a control character";
    }
    for (const char *c = path;;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0)
            return "has an empty component";
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return "has a \".\" or \"..\" component";
        if (n > MANIFEST_NAME_MAX)
            return "has a component longer than " STR(MANIFEST_NAME_MAX) " bytes";
        if (!end)
            return NULL;
        c = end + 1;
    }
}

void manifest_path_show(struct buf *b, const char *path)
{
    for (const char *c = path; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u < 0x20 || u == 0x7f || u == '\\')
            buf_appendf(b, "\\x%02x", u);
        else
            buf_append(b, c, 1);
    }
}

static const char *const TYPE_NAMES[] = {"file", "dir", "symlink"};

int manifest_writer_add(struct manifest_writer *w, const struct manifest_file *f)
{
    int rc = 0;
    json_t *o = NULL;
    if (w->done)
        return err_set(ERR_RUNTIME, "manifest writer used after finish");
    if (!f->path || (unsigned)f->type > MANIFEST_TYPE_SYMLINK)
        return err_set(ERR_RUNTIME, "manifest entry without a path or with an unknown type");
    const char *why = manifest_path_problem(f->path);
    if (why) {
        struct buf b = BUF_INIT;
        manifest_path_show(&b, f->path);
        err_set(ERR_RUNTIME, "the path \"%s\" %s: a restore could not lay it down",
                (const char *)b.data, why);
        buf_free(&b);
        return err_code();
    }
    bool is_file = f->type == MANIFEST_TYPE_FILE;
    uint64_t want_chunks = is_file ? (f->size + w->chunk_size - 1) / w->chunk_size : 0;
    if (f->n_chunks != want_chunks || (!is_file && f->size != 0) ||
        ((f->type == MANIFEST_TYPE_SYMLINK) != (f->link != NULL)) || (f->link && !*f->link))
        return err_set(ERR_RUNTIME,
                       "inconsistent manifest entry for \"%s\": %zu chunks for %" PRIu64
                       " bytes, link %s",
                       f->path, f->n_chunks, f->size, f->link ? "set" : "unset");

    o = json_object();
    set_bytes(o, "path", "path_hex", f->path);
    json_object_set_new(o, "type", json_string(TYPE_NAMES[f->type]));
    json_object_set_new(o, "mode", json_integer(mode_to_json(f->mode)));
    if (is_file)
        json_object_set_new(o, "size", json_integer((json_int_t)f->size));
    json_object_set_new(o, "mtime", json_integer((json_int_t)f->mtime));
    if (is_file) {
        char hex[SHA256_HEX_LEN + 1];
        hex_encode(f->digest, SHA256_LEN, hex);
        json_object_set_new(o, f->digest_kind == MANIFEST_DIGEST_FILE ? "sha256" : "sha256_chunks",
                            json_string(hex));
        json_t *a = json_array();
        for (size_t i = 0; i < f->n_chunks; i++) {
            hex_encode(f->chunks + i * SHA256_LEN, SHA256_LEN, hex);
            json_array_append_new(a, json_string(hex));
        }
        json_object_set_new(o, "chunks", a);
    }
    if (f->link)
        set_bytes(o, "link", "link_hex", f->link);

    errno = 0;
    if (json_dumpf(o, w->tmp, JSON_COMPACT) != 0 || fputc('\n', w->tmp) == EOF) {
        rc = tmp_error(w);
        goto out;
    }
    w->files++;
    w->logical += f->size;
out:
    json_decref(o);
    return rc;
}

struct sink_ctx {
    manifest_sink_fn sink;
    void *arg;
    int rc;
};

static int dump_to_sink(const char *buffer, size_t size, void *data)
{
    struct sink_ctx *c = data;
    if (c->rc == 0)
        c->rc = c->sink(c->arg, buffer, size);
    return c->rc < 0 ? -1 : 0;
}

static json_t *header_json(const struct manifest_header *h)
{
    char a[32], b[32];
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(h->format));
    json_object_set_new(o, "label", json_string(h->label ? h->label : ""));
    lsn_format(h->start_lsn, a);
    lsn_format(h->stop_lsn, b);
    json_object_set_new(o, "start_lsn", json_string(a));
    json_object_set_new(o, "stop_lsn", json_string(b));
    time_text(h->start_time, a);
    time_text(h->stop_time, b);
    json_object_set_new(o, "start_time", json_string(a));
    json_object_set_new(o, "stop_time", json_string(b));
    json_object_set_new(o, "timeline", json_integer(h->timeline));
    json_object_set_new(o, "pg_version", json_integer(h->pg_version));
    snprintf(a, sizeof(a), "%" PRIu64, h->system_identifier);
    json_object_set_new(o, "system_identifier", json_string(a));
    json_object_set_new(o, "chunk_size", json_integer((json_int_t)h->chunk_size));
    json_t *ts = json_array();
    for (size_t i = 0; i < h->n_tablespaces; i++) {
        json_t *t = json_object();
        json_object_set_new(t, "oid", json_integer(h->tablespaces[i].oid));
        set_bytes(t, "location", "location_hex", h->tablespaces[i].location);
        json_array_append_new(ts, t);
    }
    json_object_set_new(o, "tablespaces", ts);
    json_object_set_new(o, "logical_bytes", json_integer((json_int_t)h->logical_bytes));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)h->stored_bytes));
    json_object_set_new(o, "files", json_integer((json_int_t)h->files));
    json_object_set_new(o, "compression", json_string(h->compression ? h->compression : ""));
    json_object_set_new(o, "encrypted", json_boolean(h->encrypted));
    if (h->consistent_time_us)
        json_object_set_new(o, "consistent_time_us", json_integer(h->consistent_time_us));
    if (h->parent)
        json_object_set_new(o, "parent", json_string(h->parent));
    return o;
}

int64_t manifest_earliest_target_us(int64_t stop_time, int64_t consistent_time_us, bool exclusive)
{
    if (consistent_time_us)
        return consistent_time_us + (exclusive ? 1 : 0);
    return (stop_time + 1) * INT64_C(1000000);
}

int manifest_writer_finish(struct manifest_writer *w, struct manifest_header *h,
                           manifest_sink_fn sink, void *arg)
{
    int rc = 0;
    json_t *o = NULL;
    uint8_t *copy = NULL;
    if (w->done)
        return err_set(ERR_RUNTIME, "manifest writer used after finish");
    w->done = true;
    if (h->chunk_size != w->chunk_size || h->format != MANIFEST_FORMAT || !h->label ||
        !h->compression)
        return err_set(ERR_RUNTIME,
                       "manifest header does not match its writer (chunk size %" PRIu64
                       ", writer's %" PRIu64 ")",
                       h->chunk_size, w->chunk_size);
    for (size_t i = 0; i < h->n_tablespaces; i++)
        if (!h->tablespaces[i].location || !*h->tablespaces[i].location)
            return err_set(ERR_RUNTIME, "tablespace %" PRIu32 " has no location",
                           h->tablespaces[i].oid);
    h->files = w->files;
    h->logical_bytes = w->logical;

    errno = 0;
    if (fflush(w->tmp) != 0 || ferror(w->tmp)) {
        rc = tmp_error(w);
        goto out;
    }
    rewind(w->tmp);

    struct sink_ctx c = {sink, arg, 0};
    o = header_json(h);
    if (json_dump_callback(o, dump_to_sink, &c, JSON_COMPACT) != 0 || c.rc < 0) {
        rc = c.rc < 0 ? c.rc : err_set(ERR_RUNTIME, "cannot serialise the manifest header");
        goto out;
    }
    rc = sink(arg, "\n", 1);
    if (rc < 0)
        goto out;
    copy = xmalloc(COPY_BUF);
    size_t n;
    while ((n = fread(copy, 1, COPY_BUF, w->tmp)) > 0) {
        rc = sink(arg, copy, n);
        if (rc < 0)
            goto out;
    }
    if (ferror(w->tmp))
        rc = err_set_errno(ERR_IO, errno ? errno : EIO,
                           "cannot read back the manifest's temporary file in \"%s\"", w->tmp_dir);
out:
    free(copy);
    json_decref(o);
    return rc;
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
