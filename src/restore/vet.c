/*
 * vet.c — what a manifest may ask restore to lay down (see restore.h). Pure: no I/O.
 *
 * A manifest comes from a repository, which someone other than the DBA may be able to
 * write. These checks refuse, before anything is written, every entry that is not what
 * pgark's backup writes for a PostgreSQL data directory; the writer, for its part,
 * never follows a symlink, so even an entry these checks let through stays inside the
 * data directory, its tablespaces and its WAL directory.
 */
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/restore.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the entries seen so far ----------------------------------------------------------- */

enum vet_kind {
    VET_EMPTY = 0,
    VET_FILE,
    VET_DIR,
    VET_LINK,
    VET_PARENT, /* named only as the parent of other entries (so far) */
};

/* 16 bytes a path: two hashes, the kind in the low bits of the second (0: empty). */
struct vet_slot {
    uint64_t a, bk;
};

#define KIND(s) ((enum vet_kind)((s)->bk & 7))

struct restore_vet {
    uint32_t *ts_oid;
    char **ts_location;
    size_t n_ts;
    char version_prefix[32]; /* "PG_15_" */
    struct vet_slot *slots;
    size_t cap, n;
};

/* Two unrelated 64-bit hashes of the first len bytes of p. */
static void path_key(const char *p, size_t len, uint64_t *a, uint64_t *b)
{
    uint64_t x = 1469598103934665603ull, y = 0x9e3779b97f4a7c15ull ^ len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        x = (x ^ c) * 1099511628211ull;
        y = (y + c + 1) * 0xff51afd7ed558ccdull;
        y ^= y >> 31;
    }
    y ^= y >> 33;
    y *= 0xc4ceb9fe1a85ec53ull;
    y ^= y >> 29;
    *a = x;
    *b = y & ~(uint64_t)7;
}

/* The slot of (a, b), or the empty one where it would go. */
static struct vet_slot *find(struct restore_vet *v, uint64_t a, uint64_t b)
{
    size_t i = (size_t)(a ^ (b >> 7)) & (v->cap - 1);
    while (KIND(&v->slots[i]) != VET_EMPTY &&
           (v->slots[i].a != a || (v->slots[i].bk & ~(uint64_t)7) != b))
        i = (i + 1) & (v->cap - 1);
    return &v->slots[i];
}

static void grow(struct restore_vet *v)
{
    size_t cap = v->cap * 2;
    struct vet_slot *old = v->slots;
    size_t old_cap = v->cap;
    v->slots = xcalloc(cap, sizeof(*v->slots));
    v->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (KIND(&old[i]) != VET_EMPTY)
            *find(v, old[i].a, old[i].bk & ~(uint64_t)7) = old[i];
    }
    free(old);
}

/* The slot of the first len bytes of path, made (VET_EMPTY) when missing. */
static struct vet_slot *slot_of(struct restore_vet *v, const char *path, size_t len)
{
    uint64_t a, b;
    if ((v->n + 1) * 2 > v->cap)
        grow(v);
    path_key(path, len, &a, &b);
    struct vet_slot *s = find(v, a, b);
    if (KIND(s) == VET_EMPTY) {
        s->a = a;
        s->bk = b;
    }
    return s;
}

static void mark(struct restore_vet *v, struct vet_slot *s, enum vet_kind kind)
{
    if (KIND(s) == VET_EMPTY)
        v->n++;
    s->bk = (s->bk & ~(uint64_t)7) | (uint64_t)kind;
}

struct restore_vet *restore_vet_new(const struct manifest_header *h)
{
    struct restore_vet *v = xcalloc(1, sizeof(*v));
    v->ts_oid = xcalloc(h->n_tablespaces + 1, sizeof(*v->ts_oid));
    v->ts_location = xcalloc(h->n_tablespaces + 1, sizeof(*v->ts_location));
    for (size_t i = 0; i < h->n_tablespaces; i++) {
        for (size_t j = 0; j < i; j++) {
            if (h->tablespaces[j].oid == h->tablespaces[i].oid) {
                err_set(ERR_INTEGRITY, "the manifest header lists tablespace %" PRIu32 " twice",
                        h->tablespaces[i].oid);
                restore_vet_free(v);
                return NULL;
            }
        }
        v->ts_oid[i] = h->tablespaces[i].oid;
        v->ts_location[i] = xstrdup(h->tablespaces[i].location);
        v->n_ts++;
    }
    /* TABLESPACE_VERSION_DIRECTORY: "PG_" major "_" catalog version (PostgreSQL 10+). */
    snprintf(v->version_prefix, sizeof(v->version_prefix), "PG_%d_", h->pg_version / 10000);
    v->cap = 1024;
    v->slots = xcalloc(v->cap, sizeof(*v->slots));
    return v;
}

void restore_vet_free(struct restore_vet *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n_ts; i++)
        free(v->ts_location[i]);
    free(v->ts_oid);
    free(v->ts_location);
    free(v->slots);
    free(v);
}

/* The tablespace path names when it is pg_tblspc/<oid>[/...] for a listed oid (the oid
 * in canonical decimal): its index, and *rest the part after "pg_tblspc/<oid>". */
static int ts_of(const struct restore_vet *v, const char *path, const char **rest)
{
    if (strncmp(path, "pg_tblspc/", 10) != 0)
        return -1;
    const char *d = path + 10;
    uint64_t oid = 0;
    size_t n = 0;
    for (; d[n] >= '0' && d[n] <= '9' && n < 11; n++)
        oid = oid * 10 + (uint64_t)(d[n] - '0');
    if (n == 0 || (d[0] == '0') || oid > UINT32_MAX || (d[n] && d[n] != '/'))
        return -1;
    for (size_t i = 0; i < v->n_ts; i++) {
        if (v->ts_oid[i] == oid) {
            *rest = d + n;
            return (int)i;
        }
    }
    return -1;
}

/* "PG_<major>_<digits>" */
static bool is_version_dir(const struct restore_vet *v, const char *name, size_t len)
{
    size_t p = strlen(v->version_prefix);
    if (len <= p || strncmp(name, v->version_prefix, p) != 0)
        return false;
    for (size_t i = p; i < len; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
    }
    return true;
}

static int refuse(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(const char *path, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    buf_append_str(&b, "manifest entry \"");
    manifest_path_show(&b, path);
    buf_append_str(&b, "\" ");
    va_start(ap, fmt);
    char *why = xvasprintf(fmt, ap);
    va_end(ap);
    buf_append_str(&b, why);
    int rc = err_set(ERR_INTEGRITY, "%s", (const char *)b.data);
    free(why);
    buf_free(&b);
    return rc;
}

static const char *kind_name(enum manifest_file_type t)
{
    return t == MANIFEST_TYPE_FILE ? "file" : t == MANIFEST_TYPE_DIR ? "directory" : "symlink";
}

/* The rules of a single entry, whatever came before. */
static int vet_alone(struct restore_vet *v, const struct manifest_file *f)
{
    const char *why = manifest_path_problem(f->path);
    if (why)
        return refuse(f->path, "%s", why);
    const char *rest = NULL;
    int ts = ts_of(v, f->path, &rest);
    if (f->type == MANIFEST_TYPE_SYMLINK) {
        if (ts < 0 || *rest)
            return refuse(f->path, "is a symlink: restore makes symlinks only for the "
                                   "tablespaces the manifest header lists (pg_tblspc/<oid>)");
        if (strcmp(f->link, v->ts_location[ts]) != 0) {
            struct buf b = BUF_INIT;
            manifest_path_show(&b, f->link);
            int rc = refuse(f->path,
                            "points to \"%s\", not to the location the manifest header gives "
                            "tablespace %" PRIu32,
                            (const char *)b.data, v->ts_oid[ts]);
            buf_free(&b);
            return rc;
        }
        return 0;
    }
    if (ts >= 0) {
        if (!*rest)
            return refuse(f->path, "is a %s where tablespace %" PRIu32 "'s symlink goes",
                          kind_name(f->type), v->ts_oid[ts]);
        const char *name = rest + 1, *end = strchr(name, '/');
        size_t len = end ? (size_t)(end - name) : strlen(name);
        if (!is_version_dir(v, name, len))
            return refuse(f->path,
                          "is in tablespace %" PRIu32 " but not in its version directory "
                          "(%s<catalog version>)",
                          v->ts_oid[ts], v->version_prefix);
        if (!end && f->type != MANIFEST_TYPE_DIR)
            return refuse(f->path,
                          "is a file where tablespace %" PRIu32 "'s version directory goes",
                          v->ts_oid[ts]);
    }
    if (f->type == MANIFEST_TYPE_FILE &&
        (!strcmp(f->path, "pg_wal") || !strcmp(f->path, "pg_tblspc")))
        return refuse(f->path, "is a file: the server needs a directory there");
    if (f->type == MANIFEST_TYPE_FILE && (f->mode & 07000))
        return refuse(f->path,
                      "is a file with mode %04o: setuid, setgid and sticky bits are "
                      "never restored",
                      (unsigned)f->mode);
    return 0;
}

int restore_vet_entry(struct restore_vet *v, const struct manifest_file *f)
{
    int rc = vet_alone(v, f);
    if (rc < 0)
        return rc;
    /* Its parents, nearest first, until one already known: those above it were walked
     * when it was recorded. */
    for (size_t len = strlen(f->path); len > 0;) {
        while (len > 0 && f->path[len - 1] != '/')
            len--;
        if (len == 0)
            break;
        len--; /* the '/' */
        struct vet_slot *s = slot_of(v, f->path, len);
        if (KIND(s) == VET_FILE) {
            char *parent = xstrndup(f->path, len);
            struct buf b = BUF_INIT;
            manifest_path_show(&b, parent);
            rc = refuse(f->path, "is beneath \"%s\", a file of the manifest", (const char *)b.data);
            buf_free(&b);
            free(parent);
            return rc;
        }
        if (KIND(s) != VET_EMPTY)
            break;
        mark(v, s, VET_PARENT);
    }
    struct vet_slot *s = slot_of(v, f->path, strlen(f->path));
    if (KIND(s) != VET_EMPTY && KIND(s) != VET_PARENT)
        return refuse(f->path, "appears twice in the manifest");
    if (KIND(s) == VET_PARENT && f->type == MANIFEST_TYPE_FILE)
        return refuse(f->path, "is a file, and other entries of the manifest are beneath it");
    mark(v, s,
         f->type == MANIFEST_TYPE_FILE  ? VET_FILE
         : f->type == MANIFEST_TYPE_DIR ? VET_DIR
                                        : VET_LINK);
    return 0;
}
