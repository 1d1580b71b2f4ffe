/*
 * keyuse.c — which data key each object of a repository is encrypted under, from the
 * objects' headers alone (repo_key_usage): what verify reports and what expire needs
 * before it drops a key.
 *
 * Only the header is read (ENVELOPE_HEADER_MAX bytes, a ranged read): the id it names
 * is authenticated with the rest of the object when the object is read, so a header
 * altered to name another key makes an object that no read accepts, and counting it
 * under the key it names keeps that key (the safe side for expire).
 */
#include "envelope_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

struct listing {
    size_t prefix_len;
    char **paths;
    uint64_t *sizes;
    size_t n, cap;
};

static int on_object(void *ctx, const struct storage_info *info)
{
    struct listing *l = ctx;
    const char *rel = info->path + l->prefix_len;
    /* plain JSON, not envelopes: repo.json, creators' candidates and probes */
    if (strncmp(rel, "repo.json", 9) == 0)
        return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->paths = xrealloc(l->paths, l->cap * sizeof(*l->paths));
        l->sizes = xrealloc(l->sizes, l->cap * sizeof(*l->sizes));
    }
    l->sizes[l->n] = info->size;
    l->paths[l->n++] = xstrdup(info->path);
    return 0;
}

struct head {
    uint8_t h[ENVELOPE_HEADER_MAX];
    size_t len;
};

static int head_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct head *hd = ctx;
    size_t take = sizeof(hd->h) - hd->len;
    if (take > len)
        take = len;
    memcpy(hd->h + hd->len, data, take);
    hd->len += take;
    return 0;
}

/* Every key but key 0 and the current one seen at least once. */
static bool all_seen(const struct repo_data_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].id != 0 && !keys[i].current && !keys[i].objects)
            return false;
    return true;
}

int repo_key_usage(struct repo *r, struct repo_data_key *keys, size_t n, bool early,
                   uint64_t *unknown, char **first_unknown)
{
    struct listing l = {.prefix_len = strlen(r->prefix)};
    int rc;

    for (size_t i = 0; i < n; i++)
        keys[i].objects = 0;
    if ((rc = storage_list(r->storage, r->prefix, on_object, &l)) < 0)
        goto out;
    for (size_t i = 0; i < l.n && !(early && all_seen(keys, n)); i++) {
        struct head hd = {.len = 0};
        if (l.sizes[i] < ENVELOPE_HEADER_LEN)
            continue; /* not an envelope */
        uint64_t want = l.sizes[i] < sizeof(hd.h) ? l.sizes[i] : sizeof(hd.h);
        rc = storage_read(r->storage, l.paths[i], 0, want, head_sink, &hd);
        if (rc == -ERR_NOT_FOUND) { /* removed since the listing */
            err_clear();
            rc = 0;
            continue;
        }
        if (rc < 0) {
            err_context("while reading the header of \"%s\" in repository \"%s\"", l.paths[i],
                        repo_name(r));
            goto out;
        }
        uint32_t id = 0;
        if (!envelope_header_key_id(hd.h, hd.len, &id))
            continue; /* not an envelope: verify's reads say what is wrong with it */
        size_t k = 0;
        while (k < n && keys[k].id != id)
            k++;
        if (k < n) {
            keys[k].objects++;
        } else {
            if (unknown)
                (*unknown)++;
            if (first_unknown && !*first_unknown)
                *first_unknown = xstrdup(l.paths[i]);
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(l.sizes);
    return rc;
}
