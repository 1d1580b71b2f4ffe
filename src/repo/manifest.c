/* manifest.c — pgark's JSON Lines backup manifest, streamed (see include/pgark/manifest.h):
 * the writer, and the text forms both sides use; the reader is manifest_read.c. */
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

/* ---- text forms shared by writer and reader ---- */

void manifest_time_text(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "invalid");
}

/* 0750 -> 750: the octal digits read as a decimal integer. */
static json_int_t mode_to_json(uint32_t mode)
{
    json_int_t v = 0, mult = 1;
    for (mode &= 07777; mode; mode >>= 3, mult *= 10)
        v += (json_int_t)(mode & 7) * mult;
    return v;
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
    manifest_time_text(h->start_time, a);
    manifest_time_text(h->stop_time, b);
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
