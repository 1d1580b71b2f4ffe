/* cli_s3.c — the S3 driver from a repository's configuration. */
#include "pgark/cli.h"

#include "pgark/config.h"
#include "pgark/error.h"

struct storage *cli_open_s3(const struct config_repo *repo)
{
    err_set(ERR_CONFIG, "repository \"%s\": s3 repositories are not built yet", repo->name);
    return NULL;
}
