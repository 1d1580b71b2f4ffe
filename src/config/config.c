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
static const char *const encryption_keys[] = {"passphrase", "passphrase_file", "key_cache", NULL};
static const char *const notify_keys[] = {"url", "url_file", "format", "events", NULL};

static const char *const compression_names[] = {"zstd", "none", NULL};
static const enum config_compression compression_values[] = {CONFIG_COMPRESSION_ZSTD,
                                                             CONFIG_COMPRESSION_NONE};
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

/* Long: the top-level keys in the order the documentation lists them, each a get and a
 * check; one level throughout.
 */
static int load_top(struct cfg_reader *r, struct config *cfg)
{
    struct cfg_map top = {0}, sub = {0};
    bool present;
    int level = LOG_INFO, format = LOG_FORMAT_TEXT;
    int rc;

    cfg->spool = xstrdup(CONFIG_DEFAULT_SPOOL);
    cfg->encryption.key_cache = true;
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
        if (rc == 0)
            rc = cfg_get_bool(&sub, "key_cache", &cfg->encryption.key_cache);
        cfg_map_close(&sub);
        if (rc != 0)
            goto out;
    }

    if ((rc = cfg_load_clusters(&top, cfg)) != 0)
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
