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
#include <sys/stat.h>

#define CONFIG_FILE_MAX (4 * 1024 * 1024)

static const char *const top_keys[] = {
    "spool",       "spool_max",      "disk_free_min",    "log",    "repos",
    "compression", "encryption",     "clusters",         "notify", "notify_repeat",
    "require_tls", "metrics_listen", "metrics_textfile", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const compression_keys[] = {"algorithm", "level", NULL};
static const char *const encryption_keys[] = {"passphrase", "passphrase_file", NULL};
static const char *const cluster_keys[] = {"conninfo",
                                           "slot",
                                           "create_slot",
                                           "repos",
                                           "synchronous",
                                           "rpo_target",
                                           "rto_target",
                                           "drill_max_age",
                                           "verify_max_age",
                                           "partial_upload_interval",
                                           "retention",
                                           "backup",
                                           "application_name",
                                           "wal_fetch_read_ahead",
                                           "pg_bindir",
                                           "flush_interval",
                                           NULL};
static const char *const retention_keys[] = {"full", "window", NULL};
static const char *const backup_keys[] = {"chunk_size", "checkpoint", NULL};
static const char *const notify_keys[] = {"url", "url_file", "format", "events", NULL};

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
    {CONFIG_EVENT_VERIFY_DONE, "verify.done"},     {CONFIG_EVENT_VERIFY_FAILED, "verify.failed"},
    {CONFIG_EVENT_DRILL_DONE, "drill.done"},       {CONFIG_EVENT_DRILL_FAILED, "drill.failed"},
    {CONFIG_EVENT_EXPIRE_FAILED, "expire.failed"}, {CONFIG_EVENT_CHECK_FAILED, "check.failed"},
    {CONFIG_EVENT_RPO_BREACH, "rpo.breach"},       {CONFIG_EVENT_RPO_RECOVERED, "rpo.recovered"},
    {CONFIG_EVENT_STREAM_LOST, "stream.lost"},     {CONFIG_EVENT_STREAM_BACK, "stream.back"},
    {CONFIG_EVENT_REPO_FAILING, "repo.failing"},   {CONFIG_EVENT_REPO_RECOVERED, "repo.recovered"},
    {CONFIG_EVENT_SPOOL_HIGH, "spool.high"},       {CONFIG_EVENT_SPOOL_OK, "spool.ok"},
    {CONFIG_EVENT_WAL_DAMAGED, "wal.damaged"},     {CONFIG_EVENT_NOTIFY_TEST, "notify.test"},
    {CONFIG_EVENT_DISK_LOW, "disk.low"},           {CONFIG_EVENT_DISK_OK, "disk.ok"},
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))

/* The names of compression_names, which the codec table (src/repo/codec.c) knows by the
 * same names: cli_repo_options looks the codec up by this one. */
const char *config_compression_name(enum config_compression algorithm)
{
    for (size_t i = 0; compression_names[i]; i++) {
        if (compression_values[i] == algorithm)
            return compression_names[i];
    }
    return "none";
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
    size_t len = strlen(name);
    unsigned bits = 0;

    /* The names of the first configurations, before the receiver had several events. */
    if (strcmp(name, "receiver.down") == 0)
        return CONFIG_EVENT_STREAM_LOST;
    if (strcmp(name, "receiver.up") == 0)
        return CONFIG_EVENT_STREAM_BACK;
    if (strcmp(name, "*") == 0)
        return CONFIG_EVENT_ALL;
    for (size_t i = 0; i < NEVENTS; i++) {
        if (strcmp(events[i].name, name) == 0)
            return events[i].bit;
        /* "rpo.*": every event whose name starts with "rpo." */
        if (len >= 2 && strcmp(name + len - 2, ".*") == 0 &&
            strncmp(events[i].name, name, len - 1) == 0)
            bits |= events[i].bit;
    }
    return bits;
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
    free(r->access_key_id_file);
    free(r->secret_access_key_file);
    free(r->session_token_file);
    free(r->ca_file);
}

static void cluster_release(struct config_cluster *c)
{
    free(c->name);
    free(c->conninfo);
    free(c->slot);
    free(c->repos);
    free(c->application_name);
    free(c->pg_bindir);
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;
    free(config->path);
    free(config->spool);
    free(config->metrics_listen);
    free(config->metrics_host);
    free(config->metrics_textfile);
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
    for (char **v = config->env_vars; v && *v; v++)
        free(*v);
    free(config->env_vars);
    cfg_warnings_free(config->warnings, config->nwarnings);
    free(config);
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
    c->rto_target_ms = CONFIG_DEFAULT_RTO_TARGET_MS;
    c->drill_max_age_ms = CONFIG_DEFAULT_DRILL_MAX_AGE_MS;
    c->verify_max_age_ms = CONFIG_DEFAULT_VERIFY_MAX_AGE_MS;
    c->partial_upload_interval_ms = CONFIG_DEFAULT_PARTIAL_UPLOAD_INTERVAL_MS;
    c->flush_interval_ms = CONFIG_DEFAULT_FLUSH_INTERVAL_MS;
    c->wal_fetch_read_ahead = CONFIG_DEFAULT_WAL_FETCH_READ_AHEAD;
    c->backup.chunk_size = CONFIG_DEFAULT_CHUNK_SIZE;
    c->backup.checkpoint = CONFIG_CHECKPOINT_FAST;
    default_slot(c);
    c->application_name = xasprintf("pgark_%s", name);

    if ((rc = cfg_check_name(r, key_node, "cluster", name)) != 0)
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
        (rc = cfg_get_duration(&m, "flush_interval", &c->flush_interval_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "rpo_target", &c->rpo_target_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "rto_target", &c->rto_target_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "drill_max_age", &c->drill_max_age_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "verify_max_age", &c->verify_max_age_ms)) != 0 ||
        (rc = cfg_get_duration(&m, "partial_upload_interval", &c->partial_upload_interval_ms)) !=
            0 ||
        (rc = cfg_get_string(&m, "application_name", &c->application_name)) != 0 ||
        (rc = cfg_get_int(&m, "wal_fetch_read_ahead", 0, CONFIG_MAX_WAL_FETCH_READ_AHEAD,
                          &c->wal_fetch_read_ahead)) != 0 ||
        (rc = cfg_get_abs_path(&m, "pg_bindir", &c->pg_bindir)) != 0)
        goto out;
    /* The plan's targets: a target of zero could never be met. */
    static const char *const targets[] = {"rpo_target", "rto_target", "drill_max_age",
                                          "verify_max_age"};
    const int64_t values[] = {c->rpo_target_ms, c->rto_target_ms, c->drill_max_age_ms,
                              c->verify_max_age_ms};
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        if (values[i] <= 0) {
            rc = cfg_error(r, cfg_map_value(&m, targets[i]),
                           "key \"%s\"%s must be greater than zero", targets[i], where);
            goto out;
        }
    }

    /* 0 would be synchronous: true by another name; past 10 s the server's slot and
     * its view of the standby lag for no gain (a batch that long saves nothing). */
    if (c->flush_interval_ms <= 0 || c->flush_interval_ms > CONFIG_MAX_FLUSH_INTERVAL_MS) {
        yaml_node_t *v = cfg_map_value(&m, "flush_interval"); /* a default is in range */
        char *text = NULL;
        rc = cfg_scalar(r, v, "key \"flush_interval\"", &text);
        if (rc == 0)
            rc = cfg_error(r, v, "key \"flush_interval\"%s must be between 1ms and 10s, not \"%s\"",
                           where, text);
        free(text);
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
            err_hint("events: %s; a group: rpo.*; all: *", (char *)b.data);
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
        if (rc == 0 && !cfg_is_http_url(nt->url))
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

/* "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every address) into cfg->metrics_host (NULL for
 * every address) and cfg->metrics_port. */
static int load_metrics_listen(struct cfg_map *top, struct config *cfg)
{
    int rc = cfg_get_string(top, "metrics_listen", &cfg->metrics_listen);
    if (rc != 0 || !cfg->metrics_listen)
        return rc;
    const char *text = cfg->metrics_listen;
    const char *colon = strrchr(text, ':');
    const char *host = text, *host_end = colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close && close[1] == ':') {
            host = text + 1;
            host_end = close;
            colon = close + 1;
        } else {
            colon = NULL;
        }
    } else if (colon && memchr(text, ':', (size_t)(colon - text))) {
        colon = NULL; /* a bare IPv6 address: its port would be ambiguous */
    }
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || !isdigit((unsigned char)colon[1]) || *end || port < 1 || port > 65535)
        return cfg_error(top->r, cfg_map_value(top, "metrics_listen"),
                         "key \"metrics_listen\": \"%s\" is not HOST:PORT (e.g. "
                         "127.0.0.1:9188, [::1]:9188 or :9188 for every address)",
                         text);
    cfg->metrics_port = (int)port;
    if (host_end > host)
        cfg->metrics_host = xstrndup(host, (size_t)(host_end - host));
    return 0;
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
    if ((rc = cfg_get_size(&top, "spool_max", &cfg->spool_max)) != 0)
        goto out;
    cfg->disk_free_min_percent = CONFIG_DEFAULT_DISK_FREE_MIN_PERCENT;
    if ((rc = cfg_get_size_or_percent(&top, "disk_free_min", &cfg->disk_free_min,
                                      &cfg->disk_free_min_percent)) != 0)
        goto out;
    if ((rc = load_metrics_listen(&top, cfg)) != 0)
        goto out;
    if ((rc = cfg_get_abs_path(&top, "metrics_textfile", &cfg->metrics_textfile)) != 0)
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

    /* Before the repos: it decides whether allow_http may be set. */
    if ((rc = cfg_get_bool(&top, "require_tls", &cfg->require_tls)) != 0)
        goto out;
    if ((rc = cfg_load_repos(&top, cfg)) != 0)
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
    if ((rc = load_notify(&top, cfg)) != 0)
        goto out;
    cfg->notify_repeat_ms = CONFIG_DEFAULT_NOTIFY_REPEAT_MS;
    if ((rc = cfg_get_duration(&top, "notify_repeat", &cfg->notify_repeat_ms)) != 0)
        goto out;
    if (cfg->notify_repeat_ms <= 0)
        rc = cfg_error(r, cfg_map_value(&top, "notify_repeat"),
                       "key \"notify_repeat\" must be greater than zero");
out:
    cfg_map_close(&top);
    return rc;
}

/* file_mode: the configuration file's mode (0 when loaded from a string). */
static int load(const char *name, const char *base_dir, const char *text, size_t len,
                unsigned file_mode, struct config **out)
{
    struct cfg_reader r = {.file = name, .base_dir = base_dir};
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    char *hint = NULL;
    char *msg = cfg_mode_warning("configuration file", name, file_mode, S_IROTH, &hint);
    int rc;

    cfg->path = xstrdup(name);
    if (msg)
        cfg_warning_add(&cfg->warnings, &cfg->nwarnings, msg, hint);
    if (strlen(text) != len) {
        rc = err_set(ERR_CONFIG, "%s:1:1: configuration contains a NUL byte", name);
        goto out;
    }
    if ((rc = cfg_reader_parse(&r, text, len)) != 0)
        goto out;
    rc = load_top(&r, cfg);
    if (rc == 0) {
        for (size_t i = 0; i < r.nwarnings; i++)
            cfg_warning_add(&cfg->warnings, &cfg->nwarnings, r.warnings[i].message,
                            r.warnings[i].hint);
        free(r.warnings);
        r.warnings = NULL;
        r.nwarnings = 0;
        cfg->env_vars = r.env_vars ? r.env_vars : xcalloc(1, sizeof(*cfg->env_vars));
        r.env_vars = NULL;
        r.nenv_vars = 0;
    }
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
    return load(name_for_messages, NULL, yaml, strlen(yaml), 0, out);
}

int config_load(const char *path, struct config **out)
{
    FILE *f = fopen(path, "re");
    struct buf b = BUF_INIT;
    char *dir = NULL;
    struct stat st = {0};
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
    if (fstat(fileno(f), &st) < 0)
        st.st_mode = 0;
    rc = load(path, dir, (const char *)b.data, b.len, (unsigned)st.st_mode, out);
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
