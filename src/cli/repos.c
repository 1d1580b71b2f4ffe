/*
 * repos.c — a cluster's repositories opened for a command, all in one way: the options
 * every one of them gets from the configuration (cli_repo_options: the cluster, the
 * compression and encryption choice), one repository at a time (cli_repo_open), or
 * the set of them in the order restore and wal-fetch read them (cli_repos): posix ones
 * (the local tier, fast and free) first, then the others, in config order within a
 * tier, each opened only when first needed, so wal-fetch serving from a local
 * repository never pays for connecting to the off-site one.
 */
#include "pgark/cli.h"

#include "pgark/codec.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

int cli_repo_options(const struct config *cfg, const struct config_cluster *cl,
                     enum cli_repo_use use, struct repo_options *out)
{
    memset(out, 0, sizeof(*out));
    out->cluster = cl->name;
    out->codecs.passphrase = cfg->encryption.passphrase;
    if (cfg->encryption.passphrase && cfg->encryption.key_cache)
        out->key_cache_spool = cfg->spool;
    out->codecs.compression = codec_by_name(CODEC_COMPRESSION, "none");
    if (use == CLI_REPO_ARCHIVE) {
        const struct codec *c =
            codec_by_name(CODEC_COMPRESSION, config_compression_name(cfg->compression.algorithm));
        if (!c)
            return err_code();
        out->codecs.compression = c;
        out->codecs.level = codec_is_none(c) ? 0 : cfg->compression.level;
        const char *kdf = getenv("PGARK_TEST_KDF_N"); /* tests: a cheaper scrypt */
        out->kdf_n = kdf ? strtoull(kdf, NULL, 10) : 0;
    }
    return 0;
}

int cli_repo_open(const struct config *cfg, const struct config_cluster *cl,
                  const struct config_repo *conf, enum cli_repo_use use,
                  const struct repo_identity *expect, struct cli_repo *out)
{
    struct repo_options ro;
    memset(out, 0, sizeof(*out));
    out->conf = conf;
    if (cli_repo_options(cfg, cl, use, &ro) < 0)
        return err_code();
    out->storage = cli_open_storage(conf);
    if (!out->storage)
        return err_code();
    out->repo = repo_open(out->storage, &ro, expect, use == CLI_REPO_ARCHIVE && expect);
    if (!out->repo)
        return err_code();
    return 0;
}

void cli_repo_close(struct cli_repo *r)
{
    if (!r)
        return;
    repo_close(r->repo);
    storage_free(r->storage);
    r->repo = NULL;
    r->storage = NULL;
}

int cli_repos_init(struct cli_repos *set, const struct config *cfg, const struct config_cluster *cl,
                   const char *only)
{
    memset(set, 0, sizeof(*set));
    set->cfg = cfg;
    set->cl = cl;
    set->cluster = cl->name;
    set->r = xcalloc(cl->nrepos ? cl->nrepos : 1, sizeof(*set->r));
    for (int tier = 0; tier < 2; tier++) {
        for (size_t i = 0; i < cl->nrepos; i++) {
            const struct config_repo *rc = config_cluster_repo(cfg, cl, i);
            bool local = rc->type == CONFIG_REPO_POSIX;
            if ((tier == 0) != local)
                continue;
            if (only && strcmp(only, rc->name) != 0)
                continue;
            set->r[set->n++].conf = rc;
        }
    }
    if (only && set->n == 0)
        return err_set(ERR_CONFIG, "repository \"%s\" is not a repository of cluster \"%s\"", only,
                       cl->name);
    return 0;
}

struct repo *cli_repos_get(struct cli_repos *set, size_t i)
{
    struct cli_repo *r = &set->r[i];
    if (r->repo)
        return r->repo;
    if (!r->storage) {
        r->storage = cli_open_storage(r->conf);
        if (!r->storage)
            return NULL;
    }
    struct repo_options ro;
    if (cli_repo_options(set->cfg, set->cl, CLI_REPO_READ, &ro) < 0)
        return NULL;
    ro.defer_key = set->defer_key;
    r->repo = repo_open(r->storage, &ro, NULL, false);
    return r->repo;
}

void cli_repos_free(struct cli_repos *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        cli_repo_close(&set->r[i]);
    free(set->r);
    memset(set, 0, sizeof(*set));
}
