/*
 * records.c — what pgark keeps about its own runs in a repository (repo.h, "records"):
 * one small JSON object per drill or verify run, written under <kind>/<name>.json, and
 * the receiver's RPO history. They are envelopes like every other object, so a record
 * read back is the one written (and, encrypted, written by someone holding the key).
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

#define RECORD_SUFFIX ".json"

static bool kind_valid(const char *kind)
{
    return !strcmp(kind, REPO_RECORD_DRILLS) || !strcmp(kind, REPO_RECORD_VERIFIES) ||
           !strcmp(kind, REPO_RECORD_RECEIVER) || !strcmp(kind, REPO_RECORD_CONFIGS);
}

static int record_path(const char *kind, const char *name, char *buf, size_t cap)
{
    if (!kind_valid(kind))
        return err_set(ERR_USAGE, "unknown kind of record \"%s\"", kind);
    if (!repo_backup_label_valid(name))
        return err_set(ERR_USAGE, "invalid record name \"%s\"", name);
    snprintf(buf, cap, "%s/%s%s", kind, name, RECORD_SUFFIX);
    return 0;
}

int repo_record_put(struct repo *r, const char *kind, const char *name, const char *text)
{
    char path[300];
    int rc = record_path(kind, name, path, sizeof(path));
    if (rc == 0)
        rc = repo_put(r, path, text, strlen(text));
    if (rc < 0)
        err_context("while writing the record \"%s/%s\"", kind, name);
    return rc;
}

int repo_record_get(struct repo *r, const char *kind, const char *name, char **text)
{
    char path[300];
    uint8_t *data = NULL;
    size_t len = 0;
    *text = NULL;
    int rc = record_path(kind, name, path, sizeof(path));
    if (rc == 0)
        rc = repo_get_all_max(r, path, REPO_RECORD_MAX, "a record", &data, &len);
    if (rc < 0)
        return err_context("while reading the record \"%s/%s\"", kind, name);
    *text = (char *)data;
    return 0;
}

struct name_list {
    size_t prefix_len;
    char **names;
    size_t n;
};

static int on_record(void *ctx, const struct storage_info *info)
{
    struct name_list *l = ctx;
    const char *rel = info->path + l->prefix_len;
    size_t len = strlen(rel), slen = strlen(RECORD_SUFFIX);
    if (strchr(rel, '/') || len <= slen || strcmp(rel + len - slen, RECORD_SUFFIX) != 0)
        return 0;
    char *name = xstrndup(rel, len - slen);
    if (!repo_backup_label_valid(name)) {
        free(name);
        return 0;
    }
    l->names = xrealloc(l->names, (l->n + 1) * sizeof(*l->names));
    l->names[l->n++] = name;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int repo_record_list(struct repo *r, const char *kind, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    if (!kind_valid(kind))
        return err_set(ERR_USAGE, "unknown kind of record \"%s\"", kind);
    char *rel = xasprintf("%s/", kind);
    char *full = repo_full_path(r, rel);
    struct name_list l = {strlen(full), NULL, 0};
    int rc = storage_list(r->storage, full, on_record, &l);
    free(full);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0) {
        repo_record_names_free(l.names, l.n);
        err_context("while listing \"%s\"", rel);
        free(rel);
        return rc;
    }
    free(rel);
    if (l.n > 1)
        qsort(l.names, l.n, sizeof(*l.names), name_cmp);
    *names = l.names;
    *n = l.n;
    return 0;
}

void repo_record_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
