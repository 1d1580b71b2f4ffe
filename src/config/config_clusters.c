/*
 * config_clusters.c — the "clusters" section of the configuration (config.h): each
 * cluster's connection, slot, repositories, targets, retention and backup settings.
 * Moved out of config.c, which holds the top level, notifications and loading.
 */
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
static const char *const checkpoint_names[] = {"fast", "spread", NULL};

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

/* Long (~120 lines) on purpose: one cluster's keys, and its retention and backup
 * sub-maps, read in the order the documentation lists them, each a get and a check at the
 * same level; split, one cluster's defaults and checks would be spread over several
 * functions.
 */
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

int cfg_load_clusters(struct cfg_map *top, struct config *cfg)
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
