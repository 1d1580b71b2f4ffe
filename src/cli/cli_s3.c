/* cli_s3.c — the S3 driver from a repository's configuration. */
#include "pgark/cli.h"

#include "pgark/config.h"
#include "pgark/storage_s3.h"

struct storage *cli_open_s3(const struct config_repo *repo)
{
    struct storage_s3_options o = {
        .name = repo->name,
        .endpoint = repo->endpoint,
        .region = repo->region,
        .bucket = repo->bucket,
        .prefix = repo->prefix,
        .uri_style = repo->uri_style == CONFIG_URI_HOST ? STORAGE_S3_URI_HOST : STORAGE_S3_URI_PATH,
        .access_key_id = repo->access_key_id,
        .secret_access_key = repo->secret_access_key,
        .session_token = repo->session_token,
        .access_key_id_file = repo->access_key_id_file,
        .secret_access_key_file = repo->secret_access_key_file,
        .session_token_file = repo->session_token_file,
        .ca_file = repo->ca_file,
        .part_size = (size_t)repo->part_size,
        .concurrency = repo->concurrency,
    };
    struct storage *s = storage_s3_new(&o);
    if (s)
        s->retries = repo->retries;
    return s;
}
