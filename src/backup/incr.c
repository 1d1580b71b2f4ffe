/*
 * incr.c — what an incremental backup needs besides the stream (see backup_int.h): the
 * parent's files and chunk names, and the server's backup_manifest made to name the
 * files a restore writes.
 */
#include "backup_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg_incremental.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- a map from paths ---------------------------------------------------------------- */

struct incr_map {
    struct incr_map_slot {
        char *key;
        void *value;
    } * slots;
    size_t cap, n;
    void (*free_value)(void *);
};

static uint64_t hash_path(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

struct incr_map *incr_map_new(void (*free_value)(void *))
{
    struct incr_map *m = xcalloc(1, sizeof(*m));
    m->cap = 64;
    m->slots = xcalloc(m->cap, sizeof(*m->slots));
    m->free_value = free_value;
    return m;
}

void incr_map_free(struct incr_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        if (m->slots[i].key && m->free_value)
            m->free_value(m->slots[i].value);
    }
    free(m->slots);
    free(m);
}

static struct incr_map_slot *slot_of(struct incr_map_slot *slots, size_t cap, const char *key)
{
    size_t i = (size_t)hash_path(key) & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

void *incr_map_get(const struct incr_map *m, const char *key)
{
    if (!m)
        return NULL;
    struct incr_map_slot *s = slot_of(m->slots, m->cap, key);
    return s->key ? s->value : NULL;
}

/* Set key (copied) to value; an earlier value is freed. */
void incr_map_put(struct incr_map *m, const char *key, void *value)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap * 2;
        struct incr_map_slot *slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key)
                *slot_of(slots, cap, m->slots[i].key) = m->slots[i];
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    struct incr_map_slot *s = slot_of(m->slots, m->cap, key);
    if (s->key) {
        if (m->free_value)
            m->free_value(s->value);
    } else {
        s->key = xstrdup(key);
        m->n++;
    }
    s->value = value;
}

int incr_map_each(const struct incr_map *m, int (*fn)(void *arg, const char *key, void *value),
                  void *arg)
{
    for (size_t i = 0; m && i < m->cap; i++) {
        int rc = m->slots[i].key ? fn(arg, m->slots[i].key, m->slots[i].value) : 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

size_t incr_map_count(const struct incr_map *m)
{
    return m ? m->n : 0;
}

/* --- the parent's files -------------------------------------------------------------- */

static void parent_file_free(void *v)
{
    struct incr_parent_file *f = v;
    if (!f)
        return;
    free(f->names);
    free(f);
}

struct parent_load {
    struct incr_parent *p;
    size_t block;
    const char *repo;
    struct manifest_reader *mr;
};

static int parent_on_file(void *arg, const struct manifest_file *mf)
{
    struct parent_load *l = arg;
    struct incr_parent *p = l->p;

    if (mf->type != MANIFEST_TYPE_FILE)
        return 0;
    struct incr_parent_file *f = incr_map_get(p->files, mf->path);
    if (!f) {
        f = xcalloc(1, sizeof(*f));
        f->size = mf->size;
        f->nchunks = mf->n_chunks;
        p->total_bytes += mf->size;
        if (f->nchunks)
            f->names = xcalloc(p->nblocks * f->nchunks, SHA256_LEN);
        incr_map_put(p->files, mf->path, f);
    } else if (f->size != mf->size || f->nchunks != mf->n_chunks) {
        return err_set(ERR_INTEGRITY,
                       "backup \"%s\" lists \"%s\" with %llu bytes in repository \"%s\" and %llu "
                       "in another",
                       p->label, mf->path, (unsigned long long)mf->size, l->repo,
                       (unsigned long long)f->size);
    }
    if (f->nchunks)
        memcpy(f->names + l->block * f->nchunks * SHA256_LEN, mf->chunks, f->nchunks * SHA256_LEN);
    return 0;
}

static int parent_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct parent_load *l = ctx;
    return manifest_reader_feed(l->mr, data, len);
}

struct incr_parent *incr_parent_new(const char *label, size_t nblocks, uint64_t chunk_size)
{
    struct incr_parent *p = xcalloc(1, sizeof(*p));
    p->label = xstrdup(label);
    p->nblocks = nblocks;
    p->chunk_size = chunk_size;
    p->files = incr_map_new(parent_file_free);
    return p;
}

void incr_parent_free(struct incr_parent *p)
{
    if (!p)
        return;
    incr_map_free(p->files);
    free(p->label);
    free(p);
}

int incr_parent_load(struct incr_parent *p, struct repo *r, size_t block)
{
    char path[320];
    struct parent_load l = {.p = p, .block = block, .repo = repo_name(r)};
    int rc = repo_backup_path(p->label, "manifest.json", path, sizeof(path));

    if (rc < 0)
        return rc;
    l.mr = manifest_reader_new(parent_on_file, &l);
    rc = repo_get(r, path, parent_sink, &l);
    if (rc == 0)
        rc = manifest_reader_finish(l.mr);
    if (rc == 0 && manifest_reader_header(l.mr)->chunk_size != p->chunk_size)
        rc = err_set(ERR_RUNTIME, "backup \"%s\" has chunks of %llu bytes, not %llu", p->label,
                     (unsigned long long)manifest_reader_header(l.mr)->chunk_size,
                     (unsigned long long)p->chunk_size);
    manifest_reader_free(l.mr);
    if (rc < 0)
        err_context("while reading the manifest of backup \"%s\" in repository \"%s\"", p->label,
                    repo_name(r));
    return rc;
}

const struct incr_parent_file *incr_parent_find(const struct incr_parent *p, const char *path)
{
    return p ? incr_map_get(p->files, path) : NULL;
}

/* --- the server's backup_manifest, as restored ------------------------------------------ */

/*
 * The server's manifest of an incremental backup lists INCREMENTAL.<name> with the size
 * and CRC-32C of what it sent, but a restore writes <name>, whole. The manifest kept is
 * the server's with each such line replaced by one for the restored file: its path, its
 * size and the server's modification time, without a checksum (computing the CRC-32C of
 * the whole file would mean reading every unchanged chunk back), and the manifest's own
 * SHA-256 recomputed. pg_verifybackup then checks those files' presence and size, and
 * every other file's checksum; the server accepts it as the parent of the next backup
 * (it looks a file up by either name). The server writes one file per line.
 */
static int rewrite_line(const char *line, size_t len, const struct incr_map *sizes, struct buf *out)
{
    const char *open = "{ \"Path\": ";
    size_t olen = strlen(open);
    size_t body = len;
    bool comma = false;

    if (len < olen || strncmp(line, open, olen) != 0) {
        buf_append(out, line, len);
        return 0;
    }
    /* "{ ... }" possibly followed by "," and the newline */
    while (body > 0 && (line[body - 1] == '\n' || line[body - 1] == '\r'))
        body--;
    if (body > 0 && line[body - 1] == ',') {
        comma = true;
        body--;
    }
    json_error_t je;
    json_t *o = json_loadb(line, body, 0, &je);
    const char *path = o ? json_string_value(json_object_get(o, "Path")) : NULL;
    const struct incr_restored *size = path ? incr_map_get(sizes, path) : NULL;
    if (!o || !path) {
        json_decref(o);
        return err_set(ERR_PROTOCOL,
                       "the server's backup_manifest has a file line that is not "
                       "valid: %s",
                       o ? "no \"Path\"" : je.text);
    }
    if (!size) {
        json_decref(o);
        buf_append(out, line, len);
        return 0;
    }
    char *target = pg_incr_target_path(path);
    json_t *mtime = json_object_get(o, "Last-Modified");
    json_t *n = json_object();
    json_object_set_new(n, "Path", json_string(target ? target : path));
    json_object_set_new(n, "Size", json_integer((json_int_t)size->size));
    if (mtime)
        json_object_set(n, "Last-Modified", mtime);
    if (size->crc_set) {
        /* as the server writes it: the CRC's bytes in memory order (little-endian) */
        char hex[9];
        snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", size->crc & 0xff, (size->crc >> 8) & 0xff,
                 (size->crc >> 16) & 0xff, size->crc >> 24);
        json_object_set_new(n, "Checksum-Algorithm", json_string("CRC32C"));
        json_object_set_new(n, "Checksum", json_string(hex));
    }
    char *text = json_dumps(n, JSON_PRESERVE_ORDER | JSON_COMPACT);
    buf_append_str(out, text);
    if (comma)
        buf_append(out, ",", 1);
    buf_append(out, line + body + comma, len - body - comma);
    free(text);
    free(target);
    json_decref(n);
    json_decref(o);
    return 0;
}

int incr_manifest_rewrite(FILE *in, FILE *out, const struct incr_map *files)
{
    const char *mark = "\"Manifest-Checksum\": \"";
    struct sha256_ctx *sha = sha256_ctx_new();
    struct buf b = BUF_INIT;
    char *line = NULL;
    size_t cap = 0;
    bool done = false;
    int rc = 0;

    if (fseek(in, 0, SEEK_SET) != 0) {
        rc = err_set_errno(ERR_IO, errno, "could not read back the server's backup_manifest");
        goto out;
    }
    for (;;) {
        errno = 0;
        ssize_t n = getline(&line, &cap, in);
        if (n < 0) {
            if (errno)
                rc = err_set_errno(ERR_IO, errno, "could not read the server's backup_manifest");
            break;
        }
        buf_reset(&b);
        if (strncmp(line, mark, strlen(mark)) == 0) {
            uint8_t d[SHA256_LEN];
            char hex[SHA256_HEX_LEN + 1];
            sha256_ctx_final(sha, d);
            hex_encode(d, SHA256_LEN, hex);
            buf_appendf(&b, "%s%s\"}\n", mark, hex);
            done = true;
        } else if (done) {
            buf_append(&b, line, (size_t)n);
        } else {
            if ((rc = rewrite_line(line, (size_t)n, files, &b)) < 0)
                break;
            sha256_ctx_update(sha, b.data, b.len);
        }
        if (b.len && fwrite(b.data, 1, b.len, out) != b.len) {
            rc = err_set_errno(ERR_IO, errno, "could not spool the backup_manifest");
            break;
        }
    }
    if (rc == 0 && !done)
        rc = err_set(ERR_PROTOCOL, "the server's backup_manifest has no \"Manifest-Checksum\"");
    if (rc == 0 && fflush(out) != 0)
        rc = err_set_errno(ERR_IO, errno, "could not spool the backup_manifest");
out:
    free(line);
    buf_free(&b);
    sha256_ctx_free(sha);
    return rc;
}
