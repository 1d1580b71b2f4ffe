/* config.c — the pgark configuration schema over the YAML reader (see config.h). */
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

#define NAME_MAX_LEN 48
#define CONFIG_FILE_MAX (4 * 1024 * 1024)

static const char *const top_keys[] = {"spool",      "log",      "repos",  "compression",
                                       "encryption", "clusters", "notify", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
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
                                        NULL};
static const char *const compression_keys[] = {"algorithm", "level", NULL};
static const char *const encryption_keys[] = {"passphrase", "passphrase_file", NULL};
static const char *const cluster_keys[] = {"conninfo",
                                           "slot",
                                           "create_slot",
                                           "repos",
                                           "synchronous",
                                           "rpo_target",
                                           "partial_upload_interval",
                                           "retention",
                                           "backup",
                                           "application_name",
                                           NULL};
static const char *const retention_keys[] = {"full", "window", NULL};
static const char *const backup_keys[] = {"chunk_size", "checkpoint", NULL};
static const char *const notify_keys[] = {"url", "url_file", "format", "events", NULL};

static const char *const repo_type_names[] = {"posix", "s3", NULL};
static const char *const uri_style_names[] = {"path", "host", NULL};
static const char *const compression_names[] = {"zstd", "none", NULL};
static const enum config_compression compression_values[] = {CONFIG_COMPRESSION_ZSTD,
                                                             CONFIG_COMPRESSION_NONE};
static const char *const checkpoint_names[] = {"fast", "spread", NULL};
static const char *const notify_format_names[] = {"json", "slack", NULL};
static const char *const log_level_names[] = {"error", "warn", "info", "detail", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};

static const struct {
    unsigned bit;
    const char *name;
} events[] = {
    {CONFIG_EVENT_BACKUP_DONE, "backup.done"},     {CONFIG_EVENT_BACKUP_FAILED, "backup.failed"},
    {CONFIG_EVENT_RPO_BREACH, "rpo.breach"},       {CONFIG_EVENT_RPO_RECOVERED, "rpo.recovered"},
    {CONFIG_EVENT_RECEIVER_DOWN, "receiver.down"}, {CONFIG_EVENT_RECEIVER_UP, "receiver.up"},
    {CONFIG_EVENT_VERIFY_DONE, "verify.done"},     {CONFIG_EVENT_VERIFY_FAILED, "verify.failed"},
    {CONFIG_EVENT_DRILL_DONE, "drill.done"},       {CONFIG_EVENT_DRILL_FAILED, "drill.failed"},
    {CONFIG_EVENT_EXPIRE_FAILED, "expire.failed"}, {CONFIG_EVENT_CHECK_FAILED, "check.failed"},
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))

const char *config_repo_type_name(enum config_repo_type type)
{
    return type == CONFIG_REPO_S3 ? "s3" : "posix";
}

const char *config_uri_style_name(enum config_uri_style style)
{
    return style == CONFIG_URI_HOST ? "host" : "path";
}

const char *config_compression_name(enum config_compression algorithm)
{
    return algorithm == CONFIG_COMPRESSION_ZSTD ? "zstd" : "none";
}

const char *config_checkpoint_name(enum config_checkpoint checkpoint)
{
    return checkpoint == CONFIG_CHECKPOINT_SPREAD ? "spread" : "fast";
}

const char *config_notify_format_name(enum config_notify_format format)
{
    return format == CONFIG_NOTIFY_SLACK ? "slack" : "json";
}

const char *config_event_name(unsigned event)
{
    for (size_t i = 0; i < NEVENTS; i++) {
        if (events[i].bit == event)
            return events[i].name;
    }
    return NULL;
}

unsigned config_event_parse(const char *name)
{
    for (size_t i = 0; i < NEVENTS; i++) {
        if (strcmp(events[i].name, name) == 0)
            return events[i].bit;
    }
    return 0;
}

const char *config_default_path(void)
{
    const char *env = getenv("PGARK_CONFIG");
    return env && *env ? env : CONFIG_DEFAULT_PATH;
}

static void free_secret(char *s)
{
    if (s)
        secure_free(s, strlen(s));
}

static void repo_release(struct config_repo *r)
{
    free(r->name);
    free(r->path);
    free(r->endpoint);
    free(r->region);
    free(r->bucket);
    free(r->prefix);
    free_secret(r->access_key_id);
    free_secret(r->secret_access_key);
    free_secret(r->session_token);
    free(r->ca_file);
}

static void cluster_release(struct config_cluster *c)
{
    free(c->name);
    free(c->conninfo);
    free(c->slot);
    free(c->repos);
    free(c->application_name);
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;
    free(config->path);
    free(config->spool);
    for (size_t i = 0; i < config->nrepos; i++)
        repo_release(&config->repos[i]);
    free(config->repos);
    free_secret(config->encryption.passphrase);
    for (size_t i = 0; i < config->nclusters; i++)
        cluster_release(&config->clusters[i]);
    free(config->clusters);
    for (size_t i = 0; i < config->nnotify; i++)
        free_secret(config->notify[i].url);
    free(config->notify);
    free(config);
}

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    }
    return true;
}

static int check_name(struct cfg_reader *r, yaml_node_t *key_node, const char *what,
                      const char *name)
{
    if (valid_name(name))
        return 0;
    return cfg_error(r, key_node,
                     "invalid %s name \"%s\" (use 1 to %d letters, digits, \"_\" or \"-\")", what,
                     name, NAME_MAX_LEN);
}

static bool is_http_url(const char *s)
{
    const char *rest = NULL;
    if (strncmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        rest = s + 7;
    if (rest == NULL || *rest == '\0' || *rest == '/')
        return false;
    for (const char *p = s; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return false;
    }
    return true;
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
    if (strcmp(key, "type") == 0)
        return true;
    if (strcmp(key, "path") == 0)
        return type == CONFIG_REPO_POSIX;
    return type == CONFIG_REPO_S3;
}

static int load_s3(struct cfg_map *m, struct config_repo *repo)
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
    if ((rc = cfg_get_string(m, "endpoint", &repo->endpoint)) != 0)
        goto out;
    if (!is_http_url(repo->endpoint)) {
        rc = cfg_error(m->r, cfg_map_value(m, "endpoint"),
                       "key \"endpoint\"%s must start with http:// or https:// and name a host, "
                       "not \"%s\"",
                       m->where, repo->endpoint);
        goto out;
    }
    size_t len = strlen(repo->endpoint);
    while (len > 0 && repo->endpoint[len - 1] == '/')
        repo->endpoint[--len] = '\0';

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

    if ((rc = cfg_get_secret(m, "access_key_id", &repo->access_key_id)) != 0 ||
        (rc = cfg_get_secret(m, "secret_access_key", &repo->secret_access_key)) != 0 ||
        (rc = cfg_get_secret(m, "session_token", &repo->session_token)) != 0)
        goto out;
    if (repo->access_key_id == NULL) {
        rc = cfg_error(m->r, m->node,
                       "missing required key \"access_key_id\" or \"access_key_id_file\"%s",
                       m->where);
        goto out;
    }
    if (repo->secret_access_key == NULL) {
        rc = cfg_error(m->r, m->node,
                       "missing required key \"secret_access_key\" or "
                       "\"secret_access_key_file\"%s",
                       m->where);
        goto out;
    }

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
                     yaml_node_t *node, struct config_repo *repo)
{
    struct cfg_map m = {0};
    char *subject = xasprintf("repo \"%s\"", name);
    char *where = xasprintf(" in repo \"%s\"", name);
    int type = 0;
    int rc;

    repo->name = xstrdup(name);
    if ((rc = check_name(r, key_node, "repo", name)) != 0)
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
    if (repo->type == CONFIG_REPO_POSIX) {
        if ((rc = cfg_require(&m, "path")) != 0 ||
            (rc = cfg_get_abs_path(&m, "path", &repo->path)) != 0)
            goto out;
    } else {
        rc = load_s3(&m, repo);
    }
out:
    cfg_map_close(&m);
    free(subject);
    free(where);
    return rc;
}

static int load_repos(struct cfg_map *top, struct config *cfg)
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
        if ((rc = load_repo(top->r, k, name, v, &cfg->repos[i])) != 0)
            goto out;
    }
out:
    return rc;
}

static void default_slot(struct config_cluster *c)
{
    c->slot = xasprintf("pgark_%s", c->name);
    for (char *p = c->slot; *p; p++) {
        if (*p == '-')
            *p = '_';
        else
            *p = (char)tolower((unsigned char)*p);
    }
}

static bool valid_slot(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 63)
        return false;
    for (const char *p = s; *p; p++) {
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return false;
    }
    return true;
}

static int load_cluster_repos(struct cfg_map *m, const struct config *cfg, struct config_cluster *c)
{
    yaml_node_t *seq;
    int rc;

    if ((rc = cfg_require(m, "repos")) != 0 || (rc = cfg_get_seq(m, "repos", &seq)) != 0)
        return rc;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0)
        return cfg_error(m->r, seq, "key \"repos\"%s must name at least one repo", m->where);
    c->repos = xcalloc(n, sizeof(*c->repos));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(&m->r->doc, seq->data.sequence.items.start[i]);
        char *subject = xasprintf("entry %zu of key \"repos\"%s", i + 1, m->where);
        char *name = NULL;
        rc = cfg_scalar(m->r, item, subject, &name);
        free(subject);
        if (rc != 0)
            return rc;
        size_t idx = 0;
        while (idx < cfg->nrepos && strcmp(cfg->repos[idx].name, name) != 0)
            idx++;
        if (idx == cfg->nrepos) {
            rc = cfg_error(m->r, item, "cluster \"%s\" names undefined repo \"%s\"", c->name, name);
            struct buf b = BUF_INIT;
            for (size_t j = 0; j < cfg->nrepos; j++)
                buf_appendf(&b, "%s%s", j ? ", " : "", cfg->repos[j].name);
            err_hint("repos defined under \"repos\": %s", (char *)b.data);
            buf_free(&b);
            free(name);
            return rc;
        }
        for (size_t j = 0; j < c->nrepos; j++) {
            if (c->repos[j] == idx) {
                rc = cfg_error(m->r, item, "repo \"%s\" is listed twice in cluster \"%s\"", name,
                               c->name);
                free(name);
                return rc;
            }
        }
        free(name);
        c->repos[c->nrepos++] = idx;
    }
    return 0;
}

static int load_cluster(struct cfg_reader *r, yaml_node_t *key_node, const char *name,
                        yaml_node_t *node, const struct config *cfg, struct config_cluster *c)
{
    struct cfg_map m = {0}, sub = {0};
    char *subject = xasprintf("cluster \"%s\"", name);
    char *where = xasprintf(" in cluster \"%s\"", name);
    char *sub_where = NULL;
    bool present;
    int checkpoint = CONFIG_CHECKPOINT_FAST;
    int rc;

    c->name = xstrdup(name);
    c->rpo_target_ms = CONFIG_DEFAULT_RPO_TARGET_MS;
    c->partial_upload_interval_ms = CONFIG_DEFAULT_PARTIAL_UPLOAD_INTERVAL_MS;
    c->backup.chunk_size = CONFIG_DEFAULT_CHUNK_SIZE;
    c->backup.checkpoint = CONFIG_CHECKPOINT_FAST;
    default_slot(c);
    c->application_name = xasprintf("pgark_%s", name);

    if ((rc = check_name(r, key_node, "cluster", name)) != 0)
        goto out;
    if ((rc = cfg_map_open(r, node, subject, where, cluster_keys, &m)) != 0)
        goto out;
    if ((rc = cfg_require(&m, "conninfo")) != 0 ||
        (rc = cfg_get_string(&m, "conninfo", &c->conninfo)) != 0)
        goto out;
    if ((rc = cfg_get_string(&m, "slot", &c->slot)) != 0)
        goto out;
    if (!valid_slot(c->slot)) {
        rc = cfg_error(r, cfg_map_value(&m, "slot"),
                       "key \"slot\"%s must be 1 to 63 lowercase letters, digits or \"_\", not "
                       "\"%s\"",
                       where, c->slot);
        goto out;
    }
    if ((rc = cfg_get_bool(&m, "create_slot", &c->create_slot)) != 0 ||
        (rc = load_cluster_repos(&m, cfg, c)) != 0 ||
        (rc = cfg_get_bool(&m, "synchronous", &c->synchronous)) != 0 ||
        (rc = cfg_get_duration(&m, "rpo_target", &c->rpo_target_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "partial_upload_interval", &c->partial_upload_interval_ms)) !=
            0 ||
        (rc = cfg_get_string(&m, "application_name", &c->application_name)) != 0)
        goto out;
    if (c->rpo_target_ms <= 0) {
        rc = cfg_error(r, cfg_map_value(&m, "rpo_target"),
                       "key \"rpo_target\"%s must be greater than zero", where);
        goto out;
    }

    sub_where = xasprintf(" in \"retention\" of cluster \"%s\"", name);
    if ((rc = cfg_get_map(&m, "retention", sub_where, retention_keys, &sub, &present)) != 0)
        goto out;
    if (present) {
        rc = cfg_get_int(&sub, "full", 1, 100000, &c->retention.full);
        if (rc == 0)
            rc = cfg_get_duration(&sub, "window", &c->retention.window_ms);
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }
    free(sub_where);

    sub_where = xasprintf(" in \"backup\" of cluster \"%s\"", name);
    if ((rc = cfg_get_map(&m, "backup", sub_where, backup_keys, &sub, &present)) != 0)
        goto out;
    if (present) {
        rc = cfg_get_size(&sub, "chunk_size", &c->backup.chunk_size);
        if (rc == 0 && (c->backup.chunk_size < CONFIG_MIN_CHUNK_SIZE ||
                        c->backup.chunk_size > CONFIG_MAX_CHUNK_SIZE)) {
            char shown[32];
            rc = cfg_error(r, cfg_map_value(&sub, "chunk_size"),
                           "key \"chunk_size\"%s must be between 64 KiB and 64 MiB, not %s",
                           sub_where, size_format(c->backup.chunk_size, shown, sizeof(shown)));
        }
        if (rc == 0)
            rc = cfg_get_enum(&sub, "checkpoint", checkpoint_names, &checkpoint);
        c->backup.checkpoint = (enum config_checkpoint)checkpoint;
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }
out:
    cfg_map_close(&m);
    free(sub_where);
    free(subject);
    free(where);
    return rc;
}

static int load_clusters(struct cfg_map *top, struct config *cfg)
{
    struct cfg_map m = {0};
    bool present;
    int rc;
    static const char *const any[] = {NULL};

    if ((rc = cfg_require(top, "clusters")) != 0)
        return rc;
    yaml_node_t *node = cfg_map_value(top, "clusters");
    if (node->type != YAML_MAPPING_NODE)
        return cfg_get_map(top, "clusters", "", any, &m, &present); /* the type error */
    m.r = top->r;
    m.node = node;
    size_t n = cfg_map_size(&m);
    if (n == 0)
        return cfg_error(top->r, node, "key \"clusters\" must define at least one cluster");
    cfg->clusters = xcalloc(n, sizeof(*cfg->clusters));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k, *v;
        const char *name = cfg_map_key_at(&m, i, &k, &v);
        if (k->type != YAML_SCALAR_NODE)
            return cfg_error(top->r, k, "a cluster name must be a string, not %s",
                             cfg_node_kind(k));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->clusters[j].name, name) == 0)
                return cfg_error(top->r, k, "duplicate cluster \"%s\"", name);
        }
        cfg->nclusters++;
        if ((rc = load_cluster(top->r, k, name, v, cfg, &cfg->clusters[i])) != 0)
            return rc;
    }
    return 0;
}

static int load_events(struct cfg_map *m, unsigned *out)
{
    yaml_node_t *seq;
    int rc = cfg_get_seq(m, "events", &seq);
    if (rc != 0 || seq == NULL)
        return rc;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0)
        return cfg_error(m->r, seq, "key \"events\"%s must list at least one event", m->where);
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(&m->r->doc, seq->data.sequence.items.start[i]);
        char *subject = xasprintf("entry %zu of key \"events\"%s", i + 1, m->where);
        char *name = NULL;
        rc = cfg_scalar(m->r, item, subject, &name);
        free(subject);
        if (rc != 0)
            return rc;
        unsigned bit = config_event_parse(name);
        if (bit == 0) {
            rc = cfg_error(m->r, item, "unknown event \"%s\"%s", name, m->where);
            struct buf b = BUF_INIT;
            for (size_t j = 0; j < NEVENTS; j++)
                buf_appendf(&b, "%s%s", j ? ", " : "", events[j].name);
            err_hint("events: %s", (char *)b.data);
            buf_free(&b);
            free(name);
            return rc;
        }
        free(name);
        *out |= bit;
    }
    return 0;
}

static int load_notify(struct cfg_map *top, struct config *cfg)
{
    yaml_node_t *seq;
    int rc = cfg_get_seq(top, "notify", &seq);
    if (rc != 0 || seq == NULL)
        return rc;
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    cfg->notify = xcalloc(n ? n : 1, sizeof(*cfg->notify));
    for (size_t i = 0; i < n && rc == 0; i++) {
        yaml_node_t *item = yaml_document_get_node(&top->r->doc, seq->data.sequence.items.start[i]);
        struct config_notify *nt = &cfg->notify[cfg->nnotify++];
        struct cfg_map m = {0};
        char *subject = xasprintf("notify entry %zu", i + 1);
        char *where = xasprintf(" in notify entry %zu", i + 1);
        int format = CONFIG_NOTIFY_JSON;

        nt->events = CONFIG_EVENT_ALL;
        rc = cfg_map_open(top->r, item, subject, where, notify_keys, &m);
        if (rc == 0)
            rc = cfg_get_secret(&m, "url", &nt->url);
        if (rc == 0 && nt->url == NULL)
            rc = cfg_error(top->r, item, "missing required key \"url\" or \"url_file\"%s", where);
        if (rc == 0 && !is_http_url(nt->url))
            rc = cfg_error(
                top->r,
                cfg_map_value(&m, "url") ? cfg_map_value(&m, "url") : cfg_map_value(&m, "url_file"),
                "key \"url\"%s must start with http:// or https:// and name a host", where);
        if (rc == 0)
            rc = cfg_get_enum(&m, "format", notify_format_names, &format);
        nt->format = (enum config_notify_format)format;
        if (rc == 0)
            rc = load_events(&m, &nt->events);
        cfg_map_close(&m);
        free(subject);
        free(where);
    }
    return rc;
}

static int load_top(struct cfg_reader *r, struct config *cfg)
{
    struct cfg_map top = {0}, sub = {0};
    bool present;
    int level = LOG_INFO, format = LOG_FORMAT_TEXT;
    int rc;

    cfg->spool = xstrdup(CONFIG_DEFAULT_SPOOL);
    cfg->log_level = LOG_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->compression.algorithm = CONFIG_COMPRESSION_ZSTD;
    cfg->compression.level = CONFIG_DEFAULT_COMPRESSION_LEVEL;

    if ((rc = cfg_map_open(r, yaml_document_get_root_node(&r->doc), "the top level", "", top_keys,
                           &top)) != 0)
        goto out;
    if ((rc = cfg_get_abs_path(&top, "spool", &cfg->spool)) != 0)
        goto out;

    if ((rc = cfg_get_map(&top, "log", " in \"log\"", log_keys, &sub, &present)) != 0)
        goto out;
    if (present) {
        rc = cfg_get_enum(&sub, "level", log_level_names, &level);
        if (rc == 0)
            rc = cfg_get_enum(&sub, "format", log_format_names, &format);
        cfg->log_level = (enum log_level)level;
        cfg->log_format = (enum log_format)format;
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }

    if ((rc = load_repos(&top, cfg)) != 0)
        goto out;

    if ((rc = cfg_get_map(&top, "compression", " in \"compression\"", compression_keys, &sub,
                          &present)) != 0)
        goto out;
    if (present) {
        int algo = 0;
        rc = cfg_get_enum(&sub, "algorithm", compression_names, &algo);
        if (rc == 0) {
            cfg->compression.algorithm = compression_values[algo];
            rc = cfg_get_int(&sub, "level", 1, 19, &cfg->compression.level);
        }
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }

    if ((rc = cfg_get_map(&top, "encryption", " in \"encryption\"", encryption_keys, &sub,
                          &present)) != 0)
        goto out;
    if (present) {
        rc = cfg_get_secret(&sub, "passphrase", &cfg->encryption.passphrase);
        if (rc == 0 && cfg->encryption.passphrase == NULL)
            rc = cfg_error(r, sub.node,
                           "missing required key \"passphrase\" or \"passphrase_file\" in "
                           "\"encryption\"");
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }

    if ((rc = load_clusters(&top, cfg)) != 0)
        goto out;
    rc = load_notify(&top, cfg);
out:
    cfg_map_close(&top);
    return rc;
}

static int load(const char *name, const char *base_dir, const char *text, size_t len,
                struct config **out)
{
    struct cfg_reader r = {.file = name, .base_dir = base_dir};
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    int rc;

    cfg->path = xstrdup(name);
    if (strlen(text) != len) {
        rc = err_set(ERR_CONFIG, "%s:1:1: configuration contains a NUL byte", name);
        goto out;
    }
    if ((rc = cfg_reader_parse(&r, text, len)) != 0)
        goto out;
    rc = load_top(&r, cfg);
out:
    cfg_reader_release(&r);
    if (rc != 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load_string(const char *name_for_messages, const char *yaml, struct config **out)
{
    return load(name_for_messages, NULL, yaml, strlen(yaml), out);
}

int config_load(const char *path, struct config **out)
{
    FILE *f = fopen(path, "re");
    struct buf b = BUF_INIT;
    char *dir = NULL;
    int rc = 0;

    if (f == NULL) {
        int e = errno;
        rc = err_set_errno(ERR_CONFIG, e, "cannot open configuration file \"%s\"", path);
        if (e == ENOENT)
            err_hint("give the file with --config FILE or $PGARK_CONFIG");
        goto out;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&b, chunk, n);
        if (b.len > CONFIG_FILE_MAX) {
            rc = err_set(ERR_CONFIG, "configuration file \"%s\" is larger than %d bytes", path,
                         CONFIG_FILE_MAX);
            goto out;
        }
    }
    if (ferror(f)) {
        rc = err_set_errno(ERR_CONFIG, errno, "cannot read configuration file \"%s\"", path);
        goto out;
    }
    buf_append(&b, "", 0);
    const char *slash = strrchr(path, '/');
    if (slash)
        dir = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
    rc = load(path, dir, (const char *)b.data, b.len, out);
out:
    if (f)
        fclose(f);
    if (b.data)
        secure_zero(b.data, b.cap);
    buf_free(&b);
    free(dir);
    return rc;
}

const struct config_cluster *config_cluster_find(const struct config *config, const char *name)
{
    if (name == NULL) {
        if (config->nclusters == 1)
            return &config->clusters[0];
        err_set(ERR_CONFIG, "\"%s\" defines %zu clusters: choose one with --cluster", config->path,
                config->nclusters);
    } else {
        for (size_t i = 0; i < config->nclusters; i++) {
            if (strcmp(config->clusters[i].name, name) == 0)
                return &config->clusters[i];
        }
        err_set(ERR_CONFIG, "no cluster \"%s\" in \"%s\"", name, config->path);
    }
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < config->nclusters; i++)
        buf_appendf(&b, "%s%s", i ? ", " : "", config->clusters[i].name);
    err_hint("clusters: %s", (char *)b.data);
    buf_free(&b);
    return NULL;
}

const struct config_repo *config_repo_find(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->nrepos; i++) {
        if (strcmp(config->repos[i].name, name) == 0)
            return &config->repos[i];
    }
    err_set(ERR_CONFIG, "no repo \"%s\" in \"%s\"", name, config->path);
    return NULL;
}

const struct config_repo *config_cluster_repo(const struct config *config,
                                              const struct config_cluster *cluster, size_t i)
{
    return &config->repos[cluster->repos[i]];
}
