/*
 * backups.c — the backups of a repository: backups/<LABEL>/manifest.json marks a
 * complete backup (it is written last), and its first line says everything `info`,
 * `restore` and `expire` need to choose one, so only that line is read.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_NAME "manifest.json"
#define LABEL_MAX 200

bool repo_backup_label_valid(const char *label)
{
    size_t n = strlen(label);
    if (n == 0 || n > LABEL_MAX || label[0] == '.')
        return false;
    return strspn(label, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int repo_backup_path(const char *label, const char *file, char *buf, size_t cap)
{
    if (!repo_backup_label_valid(label))
        return err_set(ERR_USAGE,
                       "invalid backup label \"%s\": use letters, digits, '.', '_' and '-' "
                       "(at most %d, not starting with '.')",
                       label, LABEL_MAX);
    snprintf(buf, cap, "backups/%s/%s", label, file);
    return 0;
}

void repo_backup_clear(struct repo_backup *b)
{
    if (!b)
        return;
    free(b->label);
    free((char *)b->header.label);
    free((char *)b->header.compression);
    free((char *)b->header.parent);
    for (size_t i = 0; i < b->header.n_tablespaces; i++)
        free((char *)b->header.tablespaces[i].location);
    free((struct manifest_tablespace *)b->header.tablespaces);
    memset(b, 0, sizeof(*b));
}

void repo_backup_list_free(struct repo_backup *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        repo_backup_clear(&list[i]);
    free(list);
}

struct header_read {
    struct manifest_reader *reader;
    bool have;
};

/* The reader's file lines: the first one stops it (only the header is wanted, and the
 * lines after it are checked by whoever reads the whole manifest, with their errors). */
static int stop_at_files(void *arg, const struct manifest_file *file)
{
    (void)arg;
    (void)file;
    return err_set(ERR_CANCELED, "header read");
}

/* Feed the manifest until its first line is parsed, then stop the read. */
static int header_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct header_read *h = ctx;
    int rc = manifest_reader_feed(h->reader, data, len);
    if (manifest_reader_header(h->reader)) { /* rc: stop_at_files's, or 0 */
        h->have = true;
        return err_set(ERR_CANCELED, "header read");
    }
    return rc;
}

static void copy_header(struct repo_backup *out, const char *label, const struct manifest_header *h)
{
    struct manifest_tablespace *ts = NULL;

    out->label = xstrdup(label);
    out->header = *h;
    out->header.label = xstrdup(h->label ? h->label : label);
    out->header.compression = xstrdup(h->compression ? h->compression : "");
    out->header.parent = h->parent ? xstrdup(h->parent) : NULL;
    if (h->n_tablespaces) {
        ts = xcalloc(h->n_tablespaces, sizeof(*ts));
        for (size_t i = 0; i < h->n_tablespaces; i++) {
            ts[i].oid = h->tablespaces[i].oid;
            ts[i].location = xstrdup(h->tablespaces[i].location);
        }
    }
    out->header.tablespaces = ts;
}

int repo_backup_get(struct repo *r, const char *label, struct repo_backup *out)
{
    char path[320];
    struct header_read h = {manifest_reader_new(stop_at_files, NULL), false};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = repo_backup_path(label, MANIFEST_NAME, path, sizeof(path))) < 0)
        goto out;
    rc = repo_get(r, path, header_sink, &h);
    if (h.have) {
        err_clear();
        rc = 0;
    } else if (rc == 0) {
        /* The object ended before one whole line: say what the reader says. */
        rc = manifest_reader_finish(h.reader);
        if (rc == 0)
            rc = err_set(ERR_INTEGRITY, "manifest has no header");
    }
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND)
            err_set(ERR_NOT_FOUND, "backup \"%s\" not found in repository \"%s\"", label,
                    repo_name(r));
        else
            err_context("while reading the manifest of backup \"%s\" in repository \"%s\"", label,
                        repo_name(r));
        goto out;
    }
    copy_header(out, label, manifest_reader_header(h.reader));
out:
    manifest_reader_free(h.reader);
    return rc;
}

/* Headers read side by side: on S3 each is a GET whose latency, not its few bytes, is the
 * cost (a year of daily backups read one at a time took a listing's worth of round trips
 * before every backup, info, check and restore). A few are read on the calling thread. */
#define HEADER_READERS 8
#define HEADER_INLINE_MAX 2

struct header_many {
    struct repo *r;
    char *const *labels;
    struct repo_backup *out;
    struct err_saved **errs;
};

static int header_job(void *arg, void *local, void *job, bool canceled)
{
    (void)local;
    struct header_many *m = arg;
    if (canceled)
        return 0;
    size_t i = (size_t)((char *const *)job - m->labels);
    if (repo_backup_get(m->r, m->labels[i], &m->out[i]) < 0)
        m->errs[i] = err_save();
    return 0;
}

static const struct pool_ops header_pool_ops = {.what = "manifest reader", .run = header_job};

void repo_backup_get_many(struct repo *r, char *const *labels, size_t n, struct repo_backup *out,
                          struct err_saved **errs)
{
    struct header_many m = {r, labels, out, errs};
    struct pool *pool = NULL;
    memset(errs, 0, n * sizeof(*errs));
    if (n > HEADER_INLINE_MAX) {
        pool = pool_new(&header_pool_ops, &m, n < HEADER_READERS ? (int)n : HEADER_READERS, n);
        if (!pool)
            err_clear(); /* no thread: the calling one reads them all */
    }
    pool_run_each(pool, &header_pool_ops, &m, (void *)labels, sizeof(*labels), n);
    pool_free(pool);
}

int repo_backup_exists(struct repo *r, const char *label)
{
    char path[320];
    int rc = repo_backup_path(label, MANIFEST_NAME, path, sizeof(path));
    if (rc < 0)
        return rc;
    char *full = repo_full_path(r, path);
    rc = storage_exists(r->storage, full);
    free(full);
    return rc;
}

struct label_list {
    size_t prefix_len;
    char **labels;
    size_t n, cap;
};

static int on_backup_object(void *ctx, const struct storage_info *info)
{
    struct label_list *l = ctx;
    const char *rel = info->path + l->prefix_len; /* "<label>/<file>" */
    const char *slash = strchr(rel, '/');

    if (!slash || strcmp(slash + 1, MANIFEST_NAME) != 0)
        return 0;
    char *label = xstrndup(rel, (size_t)(slash - rel));
    if (!repo_backup_label_valid(label)) {
        free(label);
        return 0;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->labels = xrealloc(l->labels, l->cap * sizeof(*l->labels));
    }
    l->labels[l->n++] = label;
    return 0;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int repo_backup_list(struct repo *r, struct repo_backup **out, size_t *n)
{
    char *prefix = repo_full_path(r, "backups/");
    struct label_list l = {strlen(prefix), NULL, 0, 0};
    struct repo_backup *list = NULL;
    size_t got = 0;
    int rc = storage_list(r->storage, prefix, on_backup_object, &l);

    *out = NULL;
    *n = 0;
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0)
        goto out;
    if (l.n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(l.labels, l.n, sizeof(*l.labels), label_cmp);
    list = xcalloc(l.n + 1, sizeof(*list));
    struct err_saved **errs = xcalloc(l.n + 1, sizeof(*errs));
    repo_backup_get_many(r, l.labels, l.n, list, errs);
    got = l.n;
    /* The first label that failed, in order, is the listing's error, as if read one by one. */
    for (size_t i = 0; i < l.n; i++) {
        if (errs[i] && rc == 0) {
            err_restore(errs[i]);
            rc = err_code();
        } else {
            err_saved_free(errs[i]);
        }
    }
    free(errs);
    if (rc < 0)
        goto out;
    *out = list;
    *n = got;
    list = NULL;
out:
    repo_backup_list_free(list, got);
    for (size_t i = 0; i < l.n; i++)
        free(l.labels[i]);
    free(l.labels);
    free(prefix);
    return rc;
}
