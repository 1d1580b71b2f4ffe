/*
 * repos.c — a cluster's repositories in the order restore and wal-fetch read them:
 * posix ones (the local tier, fast and free) first, then the others, in config order
 * within a tier. Each is opened only when first needed, so wal-fetch serving from a
 * local repository never pays for connecting to the off-site one.
 */
#include "restore_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

int repo_set_init(struct repo_set *set, const struct config *cfg, const struct config_cluster *cl,
                  const char *only)
{
    memset(set, 0, sizeof(*set));
    set->cluster = cl->name;
    set->passphrase = cfg->encryption.passphrase;
    set->conf = xcalloc(cl->nrepos, sizeof(*set->conf));
    set->storage = xcalloc(cl->nrepos, sizeof(*set->storage));
    set->repo = xcalloc(cl->nrepos, sizeof(*set->repo));
    for (int tier = 0; tier < 2; tier++) {
        for (size_t i = 0; i < cl->nrepos; i++) {
            const struct config_repo *rc = config_cluster_repo(cfg, cl, i);
            bool local = rc->type == CONFIG_REPO_POSIX;
            if ((tier == 0) != local)
                continue;
            if (only && strcmp(only, rc->name) != 0)
                continue;
            set->conf[set->n++] = rc;
        }
    }
    if (only && set->n == 0)
        return err_set(ERR_CONFIG, "repository \"%s\" is not a repository of cluster \"%s\"", only,
                       cl->name);
    return 0;
}

struct repo *repo_set_get(struct repo_set *set, size_t i)
{
    if (set->repo[i])
        return set->repo[i];
    if (!set->storage[i]) {
        set->storage[i] = cli_open_storage(set->conf[i]);
        if (!set->storage[i])
            return NULL;
    }
    struct repo_options ro = {.cluster = set->cluster, .passphrase = set->passphrase};
    set->repo[i] = repo_open(set->storage[i], &ro, NULL, false);
    return set->repo[i];
}

void repo_set_free(struct repo_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        repo_close(set->repo[i]);
        storage_free(set->storage[i]);
    }
    free(set->conf);
    free(set->storage);
    free(set->repo);
    memset(set, 0, sizeof(*set));
}
