/* cli.c — what every command shares: loading the configuration once, choosing the
 * cluster, opening its repositories' storage. */
#include "pgark/cli.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <stdlib.h>

static struct config *loaded;

const struct config *cli_config(struct cli_context *ctx)
{
    if (loaded)
        return loaded;
    const char *path = ctx->config_path ? ctx->config_path : config_default_path();
    if (config_load(path, &loaded) < 0) {
        loaded = NULL;
        return NULL;
    }
    /* The command line's --log-level wins over the file's. */
    if (!ctx->log_level_set)
        log_set_level(loaded->log_level);
    if (!ctx->log_format_set)
        log_set_format(loaded->log_format);
    return loaded;
}

void cli_config_free(void)
{
    config_free(loaded);
    loaded = NULL;
}

const struct config_cluster *cli_cluster(struct cli_context *ctx)
{
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        return NULL;
    return config_cluster_find(cfg, ctx->cluster_name);
}

struct storage *cli_open_storage(const struct config_repo *repo)
{
    switch (repo->type) {
    case CONFIG_REPO_POSIX:
        return storage_posix_new(repo->name, repo->path);
    case CONFIG_REPO_S3:
        return cli_open_s3(repo);
    }
    err_set(ERR_CONFIG, "repository \"%s\" has an unknown type", repo->name);
    return NULL;
}
