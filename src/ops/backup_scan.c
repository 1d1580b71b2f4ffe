/*
 * backup_scan.c — the backups of a repository as verify and expire need them: every
 * folder under backups/, complete or not, damaged or not (see ops_int.h), and a whole
 * manifest read as a stream.
 */
#include "ops_int.h"

#include "pgark/cli.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scan {
    size_t prefix_len;
    struct ops_backup *list;
    size_t n;
};

static struct ops_backup *scan_slot(struct scan *s, const char *label, size_t len)
{
    /* Listings come sorted, so a folder's objects are consecutive. */
    if (s->n && strlen(s->list[s->n - 1].label) == len &&
        strncmp(s->list[s->n - 1].label, label, len) == 0)
        return &s->list[s->n - 1];
    s->list = xrealloc(s->list, (s->n + 1) * sizeof(*s->list));
    struct ops_backup *b = &s->list[s->n++];
    memset(b, 0, sizeof(*b));
    b->label = xstrndup(label, len);
    return b;
}

static int on_object(void *ctx, const struct storage_info *info)
{
    struct scan *s = ctx;
    const char *rel = info->path + s->prefix_len; /* "<label>/<file>" */
    const char *slash = strchr(rel, '/');
    if (!slash)
        return 0; /* markers */
    char *label = xstrndup(rel, (size_t)(slash - rel));
    bool valid = repo_backup_label_valid(label);
    free(label);
    if (!valid)
        return 0;
    struct ops_backup *b = scan_slot(s, rel, (size_t)(slash - rel));
    if (strcmp(slash + 1, "manifest.json") == 0)
        b->complete = true;
    return 0;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const struct ops_backup *)a)->label, ((const struct ops_backup *)b)->label);
}

void ops_backup_scan_free(struct ops_backup *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) {
        free(list[i].label);
        repo_backup_clear(&list[i].b);
        free(list[i].error);
    }
    free(list);
}

int ops_backup_scan(struct repo *r, const char *cluster, struct ops_backup **out, size_t *n)
{
    char *prefix = xasprintf("%s/backups/", cluster);
    struct scan s = {strlen(prefix), NULL, 0};
    struct repo_marker *m = NULL;
    size_t nm = 0;
    int rc = storage_list(repo_storage(r), prefix, on_object, &s);

    *out = NULL;
    *n = 0;
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0 || (rc = repo_markers_list(r, &m, &nm)) < 0)
        goto out;
    if (s.n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(s.list, s.n, sizeof(*s.list), cmp_label);
    /* The complete ones' headers, read side by side (repo_backup_get_many). */
    char **labels = xcalloc(s.n + 1, sizeof(*labels));
    struct repo_backup *got = xcalloc(s.n + 1, sizeof(*got));
    struct err_saved **errs = xcalloc(s.n + 1, sizeof(*errs));
    size_t nc = 0;
    for (size_t i = 0; i < s.n; i++)
        if (s.list[i].complete)
            labels[nc++] = s.list[i].label;
    repo_backup_get_many(r, labels, nc, got, errs);
    for (size_t i = 0, c = 0; i < s.n; i++) {
        struct ops_backup *b = &s.list[i];
        for (size_t k = 0; k < nm; k++) {
            if (m[k].label && !m[k].stale && strcmp(m[k].label, b->label) == 0)
                b->running = true;
        }
        if (!b->complete)
            continue;
        struct err_saved *e = errs[c];
        b->b = got[c++];
        if (!e) {
            b->readable = true;
            continue;
        }
        err_restore(e);
        if (err_kind() == ERR_NOT_FOUND) {
            b->complete = false; /* removed since the listing */
            err_clear();
        } else {
            b->error = cli_error_line(false);
        }
    }
    free(labels);
    free(got);
    free(errs);
    *out = s.list;
    *n = s.n;
    s.list = NULL;
    s.n = 0;
out:
    repo_markers_free(m, nm);
    ops_backup_scan_free(s.list, s.n);
    free(prefix);
    return rc;
}

struct manifest_read {
    struct manifest_reader *reader;
};

static int read_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct manifest_read *m = ctx;
    return manifest_reader_feed(m->reader, data, len);
}

int ops_manifest_read(struct repo *r, const char *label, manifest_file_fn on_file, void *arg)
{
    char path[320];
    struct manifest_read m = {manifest_reader_new(on_file, arg)};
    int rc = repo_backup_path(label, "manifest.json", path, sizeof(path));
    if (rc == 0)
        rc = repo_get(r, path, read_sink, &m);
    if (rc == 0)
        rc = manifest_reader_finish(m.reader);
    manifest_reader_free(m.reader);
    return rc;
}
