/*
 * intact.c — when a backup cannot be restored because a chunk is damaged or missing in
 * every repository, which backup can: the newest other one whose manifest names none of
 * those chunks (and, in the repository whose chunks were listed, only chunks it holds).
 * Only run after a failure, so reading a few manifests costs nothing a normal restore
 * pays.
 */
#include "restore_int.h"

#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

struct intact_check {
    const struct chunkset *bad;
    const struct chunkset *held; /* NULL: not checked */
    bool ok;
};

static int check_file(void *arg, const struct manifest_file *f)
{
    struct intact_check *c = arg;
    for (size_t k = 0; c->ok && k < f->n_chunks; k++) {
        const uint8_t *raw = f->chunks + k * SHA256_LEN;
        if (chunkset_has(c->bad, raw) || (c->held && !chunkset_has(c->held, raw)))
            c->ok = false;
    }
    return c->ok ? 0 : -ERR_CANCELED;
}

static int feed(void *ctx, const uint8_t *data, size_t len)
{
    return manifest_reader_feed(ctx, data, len);
}

static bool uses_none(struct repo *r, const char *label, struct intact_check *c)
{
    char path[320];
    struct manifest_reader *mr = manifest_reader_new(check_file, c);
    c->ok = true;
    int rc = repo_backup_path(label, "manifest.json", path, sizeof(path));
    if (rc == 0)
        rc = repo_get(r, path, feed, mr);
    if (rc == 0)
        rc = manifest_reader_finish(mr);
    manifest_reader_free(mr);
    if (rc < 0)
        err_clear();
    return rc == 0 && c->ok;
}

char *restore_newest_intact(struct cli_repos *set, const struct catalog *cat, const char *label,
                            const struct chunkset *bad, size_t held_repo,
                            const struct chunkset *held)
{
    bool *tried = xcalloc(cat->n ? cat->n : 1, sizeof(*tried));
    char *found = NULL;
    for (;;) {
        const struct catalog_entry *best = NULL;
        size_t bi = 0;
        for (size_t i = 0; i < cat->n; i++) {
            const struct catalog_entry *e = &cat->e[i];
            if (tried[i] || strcmp(e->b.label, label) == 0)
                continue;
            if (!best || e->b.stop_time > best->b.stop_time ||
                (e->b.stop_time == best->b.stop_time && strcmp(e->b.label, best->b.label) > 0)) {
                best = e;
                bi = i;
            }
        }
        if (!best)
            break;
        tried[bi] = true;
        struct repo *r = cli_repos_get(set, best->repo);
        if (!r) {
            err_clear();
            continue;
        }
        struct intact_check c = {bad, best->repo == held_repo ? held : NULL, true};
        if (uses_none(r, best->b.label, &c)) {
            found = xstrdup(best->b.label);
            break;
        }
    }
    free(tried);
    return found;
}
