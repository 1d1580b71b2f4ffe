/* repos.c — the "repos" section: posix and s3 repositories (see config.h). */
#include "pgark/config.h"

#include "config_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const repo_keys[] = {"type",
                                        "path",
                                        "endpoint",
                                        "region",
                                        "bucket",
                                        "prefix",
                                        "uri_style",
                                        "access_key_id",
                                        "access_key_id_file",
                                        "secret_access_key",
                                        "secret_access_key_file",
                                        "session_token",
                                        "session_token_file",
                                        "ca_file",
                                        "concurrency",
                                        "part_size",
                                        "retries",
                                        "allow_http",
                                        "partial_upload_interval",
                                        "stop_timeout",
                                        NULL};
static const char *const repo_type_names[] = {"posix", "s3", NULL};
static const char *const uri_style_names[] = {"path", "host", NULL};

const char *config_repo_type_name(enum config_repo_type type)
{
    return type == CONFIG_REPO_S3 ? "s3" : "posix";
}

const char *config_uri_style_name(enum config_uri_style style)
{
    return style == CONFIG_URI_HOST ? "host" : "path";
}

/* "/a//b" -> "a/b/"; "" stays "". Rejects "." and ".." segments. */
static int normalise_prefix(struct cfg_map *m, const char *in, char **out)
{
    struct buf b = BUF_INIT;
    const char *p = in;
    int rc = 0;

    while (*p) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            rc = cfg_error(m->r, cfg_map_value(m, "prefix"),
                           "key \"prefix\"%s must not contain \".\" or \"..\" segments, not \"%s\"",
                           m->where, in);
            goto out;
        }
        buf_append(&b, p, n);
        buf_append_str(&b, "/");
        p += n;
    }
    buf_append(&b, "", 0);
    *out = buf_steal(&b);
out:
    buf_free(&b);
    return rc;
}

static bool valid_bucket(const char *s)
{
    size_t len = strlen(s);
    if (len < 3 || len > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
        return false;
    for (const char *p = s; *p; p++) {
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return false;
    }
    return true;
}

/* Keys of a repo mapping that only one type may use. */
static bool key_is_for_type(const char *key, enum config_repo_type type)
{
    if (strcmp(key, "type") == 0 || strcmp(key, "partial_upload_interval") == 0 ||
        strcmp(key, "stop_timeout") == 0)
        return true;
    if (strcmp(key, "path") == 0)
        return type == CONFIG_REPO_POSIX;
    return type == CONFIG_REPO_S3;
}

/* endpoint (required), without trailing slashes, and allow_http: an http:// endpoint
 * only when the repository says so and require_tls (the top level's) does not refuse. */
static int load_s3_endpoint(struct cfg_map *m, struct config_repo *repo, bool require_tls)
{
    int rc;
    if ((rc = cfg_get_string(m, "endpoint", &repo->endpoint)) != 0)
        return rc;
    if (!cfg_is_http_url(repo->endpoint)) {
        rc = cfg_error(m->r, cfg_map_value(m, "endpoint"),
                       "key \"endpoint\"%s must start with http:// or https:// and name a host, "
                       "not \"%s\"",
                       m->where, repo->endpoint);
        return rc;
    }
    size_t len = strlen(repo->endpoint);
    while (len > 0 && repo->endpoint[len - 1] == '/')
        repo->endpoint[--len] = '\0';
    /* Over http:// the signed requests, and the objects' headers and sizes, travel in
     * clear to a server nobody authenticated: only when the repository says so. */
    if ((rc = cfg_get_bool(m, "allow_http", &repo->allow_http)) != 0)
        return rc;
    if (repo->allow_http && require_tls) {
        rc = cfg_error(m->r, cfg_map_value(m, "allow_http"),
                       "key \"allow_http\"%s cannot be true when require_tls is true", m->where);
        err_hint("use an https:// endpoint, or set require_tls: false");
        return rc;
    }
    if (strncmp(repo->endpoint, "http://", 7) == 0 && !repo->allow_http) {
        rc = cfg_error(m->r, cfg_map_value(m, "endpoint"),
                       "key \"endpoint\"%s is an http:// URL: requests would travel "
                       "unencrypted to a server nobody authenticates",
                       m->where);
        if (require_tls)
            err_hint("use an https:// endpoint (require_tls is true)");
        else
            err_hint("use an https:// endpoint, or set allow_http: true%s on a network you "
                     "trust",
                     m->where);
        return rc;
    }
    return 0;
}

/* The credentials, each inline or from a file; the key id and secret are required. */
static int load_s3_credentials(struct cfg_map *m, struct config_repo *repo)
{
    int rc;
    if ((rc = cfg_get_secret_file(m, "access_key_id", &repo->access_key_id,
                                  &repo->access_key_id_file)) != 0 ||
        (rc = cfg_get_secret_file(m, "secret_access_key", &repo->secret_access_key,
                                  &repo->secret_access_key_file)) != 0 ||
        (rc = cfg_get_secret_file(m, "session_token", &repo->session_token,
                                  &repo->session_token_file)) != 0)
        return rc;
    if (repo->access_key_id == NULL) {
        rc = cfg_error(m->r, m->node,
                       "missing required key \"access_key_id\" or \"access_key_id_file\"%s",
                       m->where);
        return rc;
    }
    if (repo->secret_access_key == NULL) {
        rc = cfg_error(m->r, m->node,
                       "missing required key \"secret_access_key\" or "
                       "\"secret_access_key_file\"%s",
                       m->where);
        return rc;
    }
    return 0;
}

/* require_tls: the top level's; it refuses allow_http. */
static int load_s3(struct cfg_map *m, struct config_repo *repo, bool require_tls)
{
    char *prefix = NULL, *ca = NULL;
    int rc;

    repo->region = xstrdup(CONFIG_DEFAULT_S3_REGION);
    repo->uri_style = CONFIG_URI_PATH;
    repo->concurrency = CONFIG_DEFAULT_S3_CONCURRENCY;
    repo->part_size = CONFIG_DEFAULT_S3_PART_SIZE;
    repo->retries = CONFIG_DEFAULT_S3_RETRIES;

    if ((rc = cfg_require(m, "endpoint")) != 0 || (rc = cfg_require(m, "bucket")) != 0)
        goto out;
    if ((rc = load_s3_endpoint(m, repo, require_tls)) != 0)
        goto out;

    if ((rc = cfg_get_string(m, "region", &repo->region)) != 0)
        goto out;
    if ((rc = cfg_get_string(m, "bucket", &repo->bucket)) != 0)
        goto out;
    if (!valid_bucket(repo->bucket)) {
        rc = cfg_error(m->r, cfg_map_value(m, "bucket"),
                       "key \"bucket\"%s must be 3 to 63 lowercase letters, digits, \".\" or "
                       "\"-\", not \"%s\"",
                       m->where, repo->bucket);
        goto out;
    }
    yaml_node_t *pnode = cfg_map_value(m, "prefix");
    if (pnode) {
        char *subject = xasprintf("key \"prefix\"%s", m->where);
        rc = cfg_scalar(m->r, pnode, subject, &prefix);
        free(subject);
        if (rc != 0)
            goto out;
    }
    if ((rc = normalise_prefix(m, prefix ? prefix : "", &repo->prefix)) != 0)
        goto out;

    int style = (int)repo->uri_style;
    if ((rc = cfg_get_enum(m, "uri_style", uri_style_names, &style)) != 0)
        goto out;
    repo->uri_style = (enum config_uri_style)style;

    if ((rc = load_s3_credentials(m, repo)) != 0)
        goto out;

    if ((rc = cfg_get_string(m, "ca_file", &ca)) != 0)
        goto out;
    if (ca) {
        repo->ca_file = cfg_resolve_path(m->r, ca);
        FILE *f = fopen(repo->ca_file, "re");
        if (f == NULL) {
            int e = errno;
            rc = cfg_error(m->r, cfg_map_value(m, "ca_file"),
                           "key \"ca_file\"%s: cannot read \"%s\": %s", m->where, repo->ca_file,
                           strerror(e));
            goto out;
        }
        fclose(f);
    }

    if ((rc = cfg_get_int(m, "concurrency", 1, 64, &repo->concurrency)) != 0 ||
        (rc = cfg_get_int(m, "retries", 0, 100, &repo->retries)) != 0)
        goto out;
    if ((rc = cfg_get_size(m, "part_size", &repo->part_size)) != 0)
        goto out;
    if (repo->part_size < (UINT64_C(5) << 20) || repo->part_size > (UINT64_C(5) << 30)) {
        char shown[32];
        rc = cfg_error(m->r, cfg_map_value(m, "part_size"),
                       "key \"part_size\"%s must be between 5 MiB and 5 GiB, not %s", m->where,
                       size_format(repo->part_size, shown, sizeof(shown)));
        goto out;
    }
out:
    free(prefix);
    free(ca);
    return rc;
}

static int load_repo(struct cfg_reader *r, yaml_node_t *key_node, const char *name,
                     yaml_node_t *node, bool require_tls, struct config_repo *repo)
{
    struct cfg_map m = {0};
    char *subject = xasprintf("repo \"%s\"", name);
    char *where = xasprintf(" in repo \"%s\"", name);
    int type = 0;
    int rc;

    repo->name = xstrdup(name);
    repo->partial_upload_interval_ms = -1;
    repo->stop_timeout_ms = CONFIG_DEFAULT_STOP_TIMEOUT_MS;
    if ((rc = cfg_check_name(r, key_node, "repo", name)) != 0)
        goto out;
    if ((rc = cfg_map_open(r, node, subject, where, repo_keys, &m)) != 0)
        goto out;
    if ((rc = cfg_require(&m, "type")) != 0 ||
        (rc = cfg_get_enum(&m, "type", repo_type_names, &type)) != 0)
        goto out;
    repo->type = (enum config_repo_type)type;
    for (size_t i = 0; i < cfg_map_size(&m); i++) {
        yaml_node_t *k;
        const char *key = cfg_map_key_at(&m, i, &k, NULL);
        if (!key_is_for_type(key, repo->type)) {
            rc = cfg_error(r, k, "key \"%s\"%s is not valid for type %s", key, where,
                           config_repo_type_name(repo->type));
            goto out;
        }
    }
    if ((rc = cfg_get_duration(&m, "partial_upload_interval", &repo->partial_upload_interval_ms)) !=
            0 ||
        (rc = cfg_get_duration(&m, "stop_timeout", &repo->stop_timeout_ms)) != 0)
        goto out;
    if (repo->type == CONFIG_REPO_POSIX) {
        if ((rc = cfg_require(&m, "path")) != 0 ||
            (rc = cfg_get_abs_path(&m, "path", &repo->path)) != 0)
            goto out;
    } else {
        rc = load_s3(&m, repo, require_tls);
    }
out:
    cfg_map_close(&m);
    free(subject);
    free(where);
    return rc;
}

int cfg_load_repos(struct cfg_map *top, struct config *cfg)
{
    struct cfg_map m = {0};
    bool present;
    int rc;

    if ((rc = cfg_require(top, "repos")) != 0)
        return rc;
    /* Repo names are free-form keys, checked one by one below. */
    yaml_node_t *node = cfg_map_value(top, "repos");
    static const char *const any[] = {NULL};
    if (node->type != YAML_MAPPING_NODE) {
        rc = cfg_get_map(top, "repos", "", any, &m, &present); /* reports the type error */
        goto out;
    }
    m.r = top->r;
    m.node = node;
    size_t n = cfg_map_size(&m);
    if (n == 0) {
        rc = cfg_error(top->r, node, "key \"repos\" must define at least one repo");
        goto out;
    }
    cfg->repos = xcalloc(n, sizeof(*cfg->repos));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k, *v;
        const char *name = cfg_map_key_at(&m, i, &k, &v);
        if (k->type != YAML_SCALAR_NODE) {
            rc = cfg_error(top->r, k, "a repo name must be a string, not %s", cfg_node_kind(k));
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->repos[j].name, name) == 0) {
                rc = cfg_error(top->r, k, "duplicate repo \"%s\"", name);
                goto out;
            }
        }
        cfg->nrepos++;
        if ((rc = load_repo(top->r, k, name, v, cfg->require_tls, &cfg->repos[i])) != 0)
            goto out;
    }
out:
    return rc;
}
