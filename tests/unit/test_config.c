/* test_config.c — YAML configuration: the documented examples load with every field as
 * written, defaults fill the rest, and every kind of mistake is refused with the exact
 * "FILE:LINE:COL: message" a user would read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define F "/etc/pgark/pgark.yaml"

static char tmpdir[PATH_MAX];

static char *path_in_tmp(const char *name)
{
    return xasprintf("%s/%s", tmpdir, name);
}

static void write_file(const char *name, const char *content)
{
    char *p = path_in_tmp(name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    free(p);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgark-test-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static struct config *load_ok(const char *yaml)
{
    struct config *cfg = NULL;
    err_clear();
    if (config_load_string(F, yaml, &cfg) != 0) {
        char *msg = err_format();
        fail_msg("config did not load: %s", msg);
    }
    return cfg;
}

static char *redacted(const char *text)
{
    return log_redact(text);
}

/* A configuration with every section, its secret files and CA made real under tmpdir. */
static void test_design_example(void **state)
{
    (void)state;
    write_file("s3.key", "design-s3-secret-0001\n");
    write_file("passphrase", "correct horse battery staple\n");
    write_file("ca.crt", "-----BEGIN CERTIFICATE-----\n");
    setenv("AWS_ACCESS_KEY_ID", "AKIADESIGNEXAMPLE", 1);
    char *yaml = xasprintf(
        "spool: /var/lib/pgark/spool          # receiver's durable local WAL spool\n"
        "log: { level: info }\n"
        "repos:\n"
        "  local:   { type: posix, path: /var/lib/pgark/repo }\n"
        "  offsite: { type: s3, endpoint: https://s3.example.com, region: us-east-1,\n"
        "             bucket: backups, prefix: pgark/, uri_style: path,\n"
        /* The sketch wrote ${AWS_ACCESS_KEY_ID} unquoted here, which is not YAML: "{" and
         * "}" end a plain scalar inside a flow mapping. Quoted, as a user must. */
        "             access_key_id: \"${AWS_ACCESS_KEY_ID}\", secret_access_key_file: %s/s3.key,\n"
        "             ca_file: %s/ca.crt }\n"
        "compression: { algorithm: zstd, level: 3 }\n"
        "encryption:  { passphrase_file: %s/passphrase }     # omit for none\n"
        "clusters:\n"
        "  main:\n"
        "    conninfo: \"host=/var/run/postgresql port=5432 user=pgark\"\n"
        "    slot: pgark                       # physical slot; create_slot: true creates it\n"
        "    repos: [local, offsite]\n"
        "    synchronous: false\n"
        "    rpo_target: 15m\n"
        "    partial_upload_interval: 10s      # off-site copy of the segment being filled\n"
        "    retention: { full: 4, window: 14d }\n"
        "    backup: { chunk_size: 1MiB, checkpoint: fast }\n"
        "notify:\n"
        "  - { url: https://hooks.example.com/T/B/X, format: slack,\n"
        "      events: [backup.failed, rpo.breach, rpo.recovered, receiver.down, "
        "verify.failed, drill.done] }\n",
        tmpdir, tmpdir, tmpdir);
    struct config *cfg = load_ok(yaml);
    free(yaml);

    assert_string_equal(cfg->path, F);
    assert_string_equal(cfg->spool, "/var/lib/pgark/spool");
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);

    assert_int_equal(cfg->nrepos, 2);
    const struct config_repo *local = &cfg->repos[0], *off = &cfg->repos[1];
    assert_string_equal(local->name, "local");
    assert_int_equal(local->type, CONFIG_REPO_POSIX);
    assert_string_equal(local->path, "/var/lib/pgark/repo");
    assert_null(local->endpoint);
    assert_null(local->secret_access_key);

    assert_string_equal(off->name, "offsite");
    assert_int_equal(off->type, CONFIG_REPO_S3);
    assert_null(off->path);
    assert_string_equal(off->endpoint, "https://s3.example.com");
    assert_string_equal(off->region, "us-east-1");
    assert_string_equal(off->bucket, "backups");
    assert_string_equal(off->prefix, "pgark/");
    assert_int_equal(off->uri_style, CONFIG_URI_PATH);
    assert_string_equal(off->access_key_id, "AKIADESIGNEXAMPLE");
    assert_string_equal(off->secret_access_key, "design-s3-secret-0001");
    assert_null(off->session_token);
    char *ca = path_in_tmp("ca.crt");
    assert_string_equal(off->ca_file, ca);
    free(ca);
    assert_int_equal(off->concurrency, 8);
    assert_true(off->part_size == 16 << 20);
    assert_int_equal(off->retries, 5);

    assert_int_equal(cfg->compression.algorithm, CONFIG_COMPRESSION_ZSTD);
    assert_int_equal(cfg->compression.level, 3);
    assert_string_equal(cfg->encryption.passphrase, "correct horse battery staple");

    assert_int_equal(cfg->nclusters, 1);
    const struct config_cluster *c = &cfg->clusters[0];
    assert_string_equal(c->name, "main");
    assert_string_equal(c->conninfo, "host=/var/run/postgresql port=5432 user=pgark");
    assert_string_equal(c->slot, "pgark");
    assert_false(c->create_slot);
    assert_int_equal(c->nrepos, 2);
    assert_ptr_equal(config_cluster_repo(cfg, c, 0), local);
    assert_ptr_equal(config_cluster_repo(cfg, c, 1), off);
    assert_false(c->synchronous);
    assert_int_equal(c->flush_interval_ms, 200); /* batches fsyncs when not synchronous */
    assert_int_equal(c->rpo_target_ms, 15 * 60 * 1000);
    /* The plan's other targets, by default (DESIGN.md). */
    assert_int_equal(c->rto_target_ms, 30 * 60 * 1000);
    assert_int_equal(c->drill_max_age_ms, 7LL * 86400 * 1000);
    assert_int_equal(c->verify_max_age_ms, 86400 * 1000);
    assert_int_equal(c->partial_upload_interval_ms, 10 * 1000);
    assert_int_equal(c->retention.full, 4);
    assert_int_equal(c->retention.window_ms, 14LL * 86400 * 1000);
    assert_true(c->backup.chunk_size == 1 << 20);
    assert_int_equal(c->backup.checkpoint, CONFIG_CHECKPOINT_FAST);
    assert_string_equal(c->application_name, "pgark_main");

    assert_int_equal(cfg->nnotify, 1);
    assert_string_equal(cfg->notify[0].url, "https://hooks.example.com/T/B/X");
    assert_int_equal(cfg->notify[0].format, CONFIG_NOTIFY_SLACK);
    assert_int_equal(cfg->notify[0].events,
                     CONFIG_EVENT_BACKUP_FAILED | CONFIG_EVENT_RPO_BREACH |
                         CONFIG_EVENT_RPO_RECOVERED | CONFIG_EVENT_STREAM_LOST |
                         CONFIG_EVENT_VERIFY_FAILED | CONFIG_EVENT_DRILL_DONE);

    /* Secrets from files are masked in logs; the key id (a secret-capable key) too. */
    char *line = redacted("secret=design-s3-secret-0001 pass=correct horse battery staple "
                          "hook=https://hooks.example.com/T/B/X");
    assert_string_equal(line, "secret=******** pass=******** hook=********");
    free(line);

    assert_ptr_equal(config_cluster_find(cfg, NULL), c);
    assert_ptr_equal(config_cluster_find(cfg, "main"), c);
    assert_ptr_equal(config_repo_find(cfg, "offsite"), off);
    config_free(cfg);
}

static const char minimal[] = "repos:\n"
                              "  r1: {type: posix, path: /srv/repo/}\n"
                              "  b: {type: s3, endpoint: \"http://minio:9000/\", bucket: b-1.x,\n"
                              "      access_key_id: AKIDMIN, secret_access_key: min-secret,\n"
                              "      allow_http: true}\n"
                              "clusters:\n"
                              "  Main-DB:\n"
                              "    conninfo: host=x\n"
                              "    repos: [b, r1]\n";

static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(minimal);
    assert_string_equal(cfg->spool, "/var/lib/pgark/spool");
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_int_equal(cfg->compression.algorithm, CONFIG_COMPRESSION_ZSTD);
    assert_int_equal(cfg->compression.level, 3);
    assert_null(cfg->encryption.passphrase);
    assert_int_equal(cfg->nnotify, 0);

    assert_string_equal(cfg->repos[0].path, "/srv/repo"); /* trailing "/" dropped */
    const struct config_repo *b = &cfg->repos[1];
    assert_string_equal(b->endpoint, "http://minio:9000");
    assert_true(b->allow_http);
    assert_false(cfg->require_tls);
    assert_null(cfg->metrics_listen);
    assert_null(cfg->metrics_textfile);
    assert_true(cfg->disk_free_min == 0 && cfg->disk_free_min_percent == 5.0);
    assert_null(cfg->env_vars[0]);
    assert_int_equal(cfg->nwarnings, 0);
    assert_string_equal(b->region, "us-east-1");
    assert_string_equal(b->prefix, "");
    assert_int_equal(b->uri_style, CONFIG_URI_PATH);
    assert_null(b->session_token);
    assert_null(b->ca_file);
    assert_int_equal(b->concurrency, 8);
    assert_true(b->part_size == 16 << 20);
    assert_int_equal(b->retries, 5);
    /* The partial copy's interval is left to the receiver (posix 1s, s3 the cluster's);
     * a stop waits 5 s for each repository. */
    for (int i = 0; i < 2; i++) {
        assert_true(cfg->repos[i].partial_upload_interval_ms == -1);
        assert_true(cfg->repos[i].stop_timeout_ms == 5000);
    }

    const struct config_cluster *c = &cfg->clusters[0];
    assert_string_equal(c->name, "Main-DB");
    assert_string_equal(c->slot, "pgark_main_db");
    assert_string_equal(c->application_name, "pgark_Main-DB");
    assert_false(c->create_slot);
    assert_false(c->synchronous);
    assert_int_equal(c->nrepos, 2);
    assert_int_equal(c->repos[0], 1);
    assert_int_equal(c->repos[1], 0);
    assert_int_equal(c->rpo_target_ms, 15 * 60 * 1000);
    assert_int_equal(c->partial_upload_interval_ms, 10000);
    assert_int_equal(c->retention.full, 0);
    assert_int_equal(c->retention.window_ms, 0);
    assert_true(c->backup.chunk_size == 1 << 20);
    assert_int_equal(c->backup.checkpoint, CONFIG_CHECKPOINT_FAST);
    config_free(cfg);
}

static void test_non_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "spool: /data/spool//\n"
        "log: {level: debug, format: json}\n"
        "repos:\n"
        "  s:\n"
        "    type: s3\n"
        "    endpoint: https://s3.eu.example\n"
        "    region: eu-west-3\n"
        "    bucket: pgb\n"
        "    prefix: //a//b\n"
        "    uri_style: host\n"
        "    access_key_id: AK\n"
        "    secret_access_key: \"with: colon\"\n"
        "    session_token: tok-0123456789\n"
        "    concurrency: 64\n"
        "    part_size: 5MiB\n"
        "    retries: 0\n"
        "compression: {algorithm: none, level: 19}\n"
        "encryption: {passphrase: 'hunter2-but-longer'}\n"
        "clusters:\n"
        "  a: {conninfo: x, repos: [s], create_slot: true, synchronous: true, slot: my_slot,\n"
        "      rpo_target: 1s, partial_upload_interval: 0s, application_name: app,\n"
        "      wal_fetch_read_ahead: 0, pg_bindir: /opt/pg18/bin/,\n"
        "      rto_target: 2h, drill_max_age: 30d, verify_max_age: 12h,\n"
        "      retention: {window: 1w}, backup: {chunk_size: 64MiB, checkpoint: spread}}\n"
        "  b: {conninfo: y, repos: [s], backup: {chunk_size: 64KiB}, retention: {full: 1},\n"
        "      flush_interval: 10s}\n"
        "notify:\n"
        "  - url: http://a.example/x\n"
        "  - {url: https://b.example, format: json, events: [check.failed, expire.failed]}\n");
    assert_string_equal(cfg->spool, "/data/spool");
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    const struct config_repo *s = &cfg->repos[0];
    assert_string_equal(s->region, "eu-west-3");
    assert_string_equal(s->prefix, "a/b/");
    assert_int_equal(s->uri_style, CONFIG_URI_HOST);
    assert_string_equal(s->secret_access_key, "with: colon");
    assert_string_equal(s->session_token, "tok-0123456789");
    assert_int_equal(s->concurrency, 64);
    assert_true(s->part_size == 5 << 20);
    assert_int_equal(s->retries, 0);
    assert_int_equal(cfg->compression.algorithm, CONFIG_COMPRESSION_NONE);
    assert_int_equal(cfg->compression.level, 19);
    assert_string_equal(cfg->encryption.passphrase, "hunter2-but-longer");
    assert_true(cfg->encryption.key_cache); /* the default */
    const struct config_cluster *a = &cfg->clusters[0], *b = &cfg->clusters[1];
    assert_true(a->create_slot);
    assert_true(a->synchronous);
    assert_int_equal(a->flush_interval_ms, 200);
    assert_int_equal(b->flush_interval_ms, 10000); /* the longest allowed */
    assert_string_equal(a->slot, "my_slot");
    assert_int_equal(a->rpo_target_ms, 1000);
    assert_int_equal(a->rto_target_ms, 2 * 3600 * 1000);
    assert_int_equal(a->drill_max_age_ms, 30LL * 86400 * 1000);
    assert_int_equal(a->verify_max_age_ms, 12 * 3600 * 1000);
    assert_int_equal(b->rto_target_ms, 30 * 60 * 1000);
    assert_int_equal(a->partial_upload_interval_ms, 0);
    assert_string_equal(a->application_name, "app");
    assert_int_equal(a->wal_fetch_read_ahead, 0);
    assert_string_equal(a->pg_bindir, "/opt/pg18/bin");
    assert_null(b->pg_bindir);
    assert_int_equal(b->wal_fetch_read_ahead, CONFIG_DEFAULT_WAL_FETCH_READ_AHEAD);
    assert_int_equal(a->retention.full, 0);
    assert_int_equal(a->retention.window_ms, 7LL * 86400000);
    assert_true(a->backup.chunk_size == 64 << 20);
    assert_int_equal(a->backup.checkpoint, CONFIG_CHECKPOINT_SPREAD);
    assert_true(b->backup.chunk_size == 64 << 10);
    assert_int_equal(b->retention.full, 1);
    assert_int_equal(cfg->nnotify, 2);
    assert_int_equal(cfg->notify[0].format, CONFIG_NOTIFY_JSON);
    assert_int_equal(cfg->notify[0].events, CONFIG_EVENT_ALL);
    assert_int_equal(cfg->notify[1].events, CONFIG_EVENT_CHECK_FAILED | CONFIG_EVENT_EXPIRE_FAILED);

    /* Inline secrets are masked too; plain settings are not. */
    char *line = redacted("with: colon tok-0123456789 hunter2-but-longer AK eu-west-3");
    assert_string_equal(line, "******** ******** ******** ******** eu-west-3");
    free(line);

    /* Several clusters: a name is needed. */
    err_clear();
    assert_null(config_cluster_find(cfg, NULL));
    assert_int_equal(err_kind(), ERR_CONFIG);
    assert_string_equal(err_message(), "\"" F "\" defines 2 clusters: choose one with --cluster");
    assert_string_equal(err_hint_text(), "clusters: a, b");
    assert_null(config_cluster_find(cfg, "c"));
    assert_string_equal(err_message(), "no cluster \"c\" in \"" F "\"");
    assert_ptr_equal(config_cluster_find(cfg, "b"), b);
    assert_null(config_repo_find(cfg, "t"));
    assert_string_equal(err_message(), "no repo \"t\" in \"" F "\"");
    config_free(cfg);
}

/* conf/pgark.yaml documents every key; it must stay loadable. */
/* metrics_listen's forms: host and port, IPv6 in brackets, every address. */
static void test_metrics_keys(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *host; /* NULL: every address */
        int port;
    } cases[] = {
        {"127.0.0.1:9188", "127.0.0.1", 9188},
        {"\"[::1]:9\"", "::1", 9},
        {"\":65535\"", NULL, 65535},
        {"localhost:1", "localhost", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *yaml = xasprintf("metrics_listen: %s\nmetrics_textfile: /var/lib/prom\n%s",
                               cases[i].value, minimal);
        struct config *cfg = load_ok(yaml);
        if (cases[i].host)
            assert_string_equal(cfg->metrics_host, cases[i].host);
        else
            assert_null(cfg->metrics_host);
        assert_int_equal(cfg->metrics_port, cases[i].port);
        assert_string_equal(cfg->metrics_textfile, "/var/lib/prom");
        config_free(cfg);
        free(yaml);
    }
}

static void test_shipped_example(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    setenv("AWS_ACCESS_KEY_ID", "AKIASHIPPED", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "shipped-secret-key", 1);
    setenv("PGARK_PASSPHRASE", "shipped-passphrase", 1);
    err_clear();
    if (config_load("conf/pgark.yaml", &cfg) != 0)
        fail_msg("conf/pgark.yaml: %s", err_format());
    assert_string_equal(cfg->path, "conf/pgark.yaml");
    assert_int_equal(cfg->nrepos, 2);
    assert_string_equal(cfg->repos[1].secret_access_key, "shipped-secret-key");
    assert_string_equal(cfg->encryption.passphrase, "shipped-passphrase");
    assert_int_equal(cfg->nclusters, 1);
    assert_string_equal(cfg->clusters[0].slot, "pgark_main");
    assert_int_equal(cfg->clusters[0].retention.full, 4);
    assert_int_equal(cfg->clusters[0].flush_interval_ms, 200);
    assert_int_equal(cfg->nnotify, 1);
    assert_int_equal(cfg->notify[0].format, CONFIG_NOTIFY_SLACK);
    config_free(cfg);
}

static void test_secret_files(void **state)
{
    (void)state;
    write_file("crlf.key", "crlf-secret-value\r\n");
    write_file("two-newlines.key", "kept-newline\n\n");
    write_file("no-newline.key", "no-newline-secret");
    write_file("token", "session-token-from-file\n");
    write_file("hook", "https://hooks.example.com/secret-hook\n");
    char *yaml = xasprintf("repos:\n"
                           "  a: {type: s3, endpoint: https://e, bucket: bkt,\n"
                           "      access_key_id_file: no-newline.key,\n"
                           "      secret_access_key_file: crlf.key,\n"
                           "      session_token_file: token}\n"
                           "encryption: {passphrase_file: two-newlines.key}\n"
                           "clusters: {c: {conninfo: x, repos: [a]}}\n"
                           "notify: [{url_file: hook}]\n");
    write_file("relative.yaml", yaml);
    free(yaml);

    /* Relative *_file paths are taken from the config file's directory. */
    char *path = path_in_tmp("relative.yaml");
    struct config *cfg = NULL;
    err_clear();
    if (config_load(path, &cfg) != 0)
        fail_msg("%s", err_format());
    assert_string_equal(cfg->repos[0].access_key_id, "no-newline-secret");
    assert_string_equal(cfg->repos[0].secret_access_key, "crlf-secret-value");
    assert_string_equal(cfg->repos[0].session_token, "session-token-from-file");
    assert_string_equal(cfg->encryption.passphrase, "kept-newline\n");
    assert_string_equal(cfg->notify[0].url, "https://hooks.example.com/secret-hook");
    config_free(cfg);

    char *line = redacted("a crlf-secret-value b session-token-from-file c no-newline-secret "
                          "d https://hooks.example.com/secret-hook");
    assert_string_equal(line, "a ******** b ******** c ******** d ********");
    free(line);

    /* Loaded from a string, relative paths are from the current directory. */
    err_clear();
    assert_int_equal(config_load_string("x.yaml",
                                        "repos: {a: {type: posix, path: /r}}\n"
                                        "encryption: {passphrase_file: surely-not-here.key}\n"
                                        "clusters: {c: {conninfo: x, repos: [a]}}\n",
                                        &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_message(),
                        "x.yaml:2:31: key \"passphrase_file\" in \"encryption\": cannot read "
                        "\"surely-not-here.key\": No such file or directory");
    free(path);
}

static void test_env_expansion(void **state)
{
    (void)state;
    setenv("PGARK_T_HOST", "db.example", 1);
    setenv("PGARK_T_SECRET", "env-secret-0xdeadbeef", 1);
    setenv("PGARK_T_EMPTY", "", 1);
    setenv("PGARK_T_DIR", tmpdir, 1);
    setenv("PGARK_T_SYNC", "true", 1);
    setenv("PGARK_T_LEVEL", "7", 1);
    write_file("env.key", "file-via-env-path\n");
    struct config *cfg = load_ok(
        "spool: ${PGARK_T_DIR}/spool\n"
        "repos:\n"
        "  a: {type: s3, endpoint: \"https://${PGARK_T_HOST}:9000\", bucket: bkt,\n"
        "      access_key_id: \"id${PGARK_T_EMPTY}x\", secret_access_key: \"${PGARK_T_SECRET}\",\n"
        "      session_token_file: \"${PGARK_T_DIR}/env.key\"}\n"
        "compression: {level: \"${PGARK_T_LEVEL}\"}\n"
        "clusters:\n"
        "  c: {conninfo: \"host=${PGARK_T_HOST} password=$${notavar}\", repos: [a],\n"
        "      synchronous: \"${PGARK_T_SYNC}\"}\n");
    char *spool = path_in_tmp("spool");
    assert_string_equal(cfg->spool, spool);
    free(spool);
    assert_string_equal(cfg->repos[0].endpoint, "https://db.example:9000");
    assert_string_equal(cfg->repos[0].access_key_id, "idx");
    assert_string_equal(cfg->repos[0].secret_access_key, "env-secret-0xdeadbeef");
    assert_string_equal(cfg->repos[0].session_token, "file-via-env-path");
    assert_string_equal(cfg->clusters[0].conninfo, "host=db.example password=${notavar}");
    assert_true(cfg->clusters[0].synchronous);
    /* Each variable read, once, in order of first use (so that restore --start can keep
     * them from the server's environment); $${ reads none. */
    static const char *const read[] = {"PGARK_T_DIR",    "PGARK_T_HOST",  "PGARK_T_EMPTY",
                                       "PGARK_T_SECRET", "PGARK_T_LEVEL", "PGARK_T_SYNC"};
    size_t nread = 0;
    while (cfg->env_vars[nread])
        nread++;
    assert_int_equal(nread, sizeof(read) / sizeof(read[0]));
    for (size_t i = 0; i < nread; i++)
        assert_string_equal(cfg->env_vars[i], read[i]);
    config_free(cfg);

    char *line = redacted("got env-secret-0xdeadbeef from db.example");
    assert_string_equal(line, "got ******** from db.example");
    free(line);
}

struct bad_case {
    const char *yaml;
    const char *message;
};

#define BASE_REPOS "repos:\n  r1: {type: posix, path: /srv/repo}\n"
#define BASE_CLUSTERS "clusters:\n  main:\n    conninfo: host=x\n    repos: [r1]\n"

static const struct bad_case bad_cases[] = {
    /* 1: syntax */
    {"repos: [r1\n", F ":2:1: invalid YAML: did not find expected ',' or ']' (while parsing a "
                       "flow sequence)"},
    {"a: b\n\tc: d\n", F ":2:1: invalid YAML: found a tab character that violates indentation "
                         "(while scanning a plain scalar)"},
    {"key: [a, b]]\n",
     F ":1:12: invalid YAML: did not find expected key (while parsing a block mapping)"},
    {"", F ":1:1: configuration is empty"},
    {"spool: /a\n" BASE_REPOS "clusters:\n  m\xff: {}\n",
     F ":5:4: invalid YAML: invalid leading UTF-8 octet"},
    {"# only a comment\n", F ":1:1: configuration is empty"},
    {BASE_REPOS BASE_CLUSTERS "---\nspool: /x\n",
     F ":8:1: more than one YAML document (only one is read)"},
    {"- a\n- b\n", F ":1:1: the top level must be a mapping, not a list"},
    /* unknown and duplicate keys */
    {"spoool: /x\n" BASE_REPOS BASE_CLUSTERS, F ":1:1: unknown key \"spoool\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    slto: s\n",
     F ":7:5: unknown key \"slto\" in cluster \"main\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    slot: a\n    repos: [r1]\n    slot: b\n",
     F ":8:5: duplicate key \"slot\" in cluster \"main\" (first given at line 6)"},
    {BASE_REPOS BASE_CLUSTERS "log: {level: info, colour: red}\n",
     F ":7:20: unknown key \"colour\" in \"log\""},
    {"repos:\n  r1: {type: posix, path: /a}\n  r1: {type: posix, path: /b}\n" BASE_CLUSTERS,
     F ":3:3: duplicate repo \"r1\""},
    {BASE_REPOS BASE_CLUSTERS "compression: {algorithm: zstd, algorithm: none}\n",
     F ":7:32: duplicate key \"algorithm\" in \"compression\" (first given at line 7)"},
    /* types */
    {"log: [info]\n" BASE_REPOS BASE_CLUSTERS, F ":1:6: key \"log\" must be a mapping, not a list"},
    {"repos: [r1]\n" BASE_CLUSTERS, F ":1:8: key \"repos\" must be a mapping, not a list"},
    {BASE_REPOS "clusters:\n  main: host=x\n",
     F ":4:9: cluster \"main\" must be a mapping, not a string"},
    {"spool: [/a]\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:8: key \"spool\" must be a string, not a list"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: r1\n",
     F ":6:12: key \"repos\" in cluster \"main\" must be a list, not a string"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    synchronous: yes\n",
     F ":7:18: key \"synchronous\" in cluster \"main\" must be true or false, not \"yes\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    create_slot: on\n",
     F ":7:18: key \"create_slot\" in cluster \"main\" must be true or false, not \"on\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    slot:\n",
     F ":7:10: key \"slot\" in cluster \"main\" has no value"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: ''\n    repos: [r1]\n",
     F ":5:15: key \"conninfo\" in cluster \"main\" must not be empty"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1, {a: b}]\n",
     F ":6:17: entry 2 of key \"repos\" in cluster \"main\" must be a string, not a mapping"},
    {BASE_REPOS BASE_CLUSTERS "notify: {url: https://x}\n",
     F ":7:9: key \"notify\" must be a list, not a mapping"},
    {BASE_REPOS BASE_CLUSTERS "notify: [https://x]\n",
     F ":7:10: notify entry 1 must be a mapping, not a string"},
    /* durations and sizes */
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    rpo_target: 15x\n",
     F ":7:17: key \"rpo_target\" in cluster \"main\": invalid duration \"15x\" (expected a whole "
       "number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    flush_interval: 0s\n",
     F ":7:21: key \"flush_interval\" in cluster \"main\" must be between 1ms and 10s, not \"0s\""},
    {BASE_REPOS
     "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    flush_interval: 10001ms\n",
     F ":7:21: key \"flush_interval\" in cluster \"main\" must be between 1ms and 10s, not "
       "\"10001ms\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    flush_interval: 200\n",
     F ":7:21: key \"flush_interval\" in cluster \"main\": invalid duration \"200\" (expected a "
       "whole number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    flush_interval: -5ms\n",
     F ":7:21: key \"flush_interval\" in cluster \"main\": invalid duration \"-5ms\" (expected a "
       "whole number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    rpo_target: 0s\n",
     F ":7:17: key \"rpo_target\" in cluster \"main\" must be greater than zero"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    rto_target: 0m\n",
     F ":7:17: key \"rto_target\" in cluster \"main\" must be greater than zero"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    rto_target: 30\n",
     F ":7:17: key \"rto_target\" in cluster \"main\": invalid duration \"30\" (expected a whole "
       "number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    drill_max_age: 0d\n",
     F ":7:20: key \"drill_max_age\" in cluster \"main\" must be greater than zero"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    verify_max_age: a day\n",
     F ":7:21: key \"verify_max_age\" in cluster \"main\": invalid duration \"a day\" (expected a "
       "whole number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    verify_max_age: 0s\n",
     F ":7:21: key \"verify_max_age\" in cluster \"main\" must be greater than zero"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    retention: {window: -1d}\n",
     F ":7:25: key \"window\" in \"retention\" of cluster \"main\": invalid duration \"-1d\" "
       "(expected a whole number and a unit: ms, s, m, h, d or w)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    backup: {chunk_size: 1Mib}\n",
     F ":7:26: key \"chunk_size\" in \"backup\" of cluster \"main\": invalid size \"1Mib\" "
       "(expected a whole number and an optional unit: B, KB, MB, GB, TB, KiB, MiB, GiB or "
       "TiB)"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    backup: {chunk_size: 32KiB}\n",
     F ":7:26: key \"chunk_size\" in \"backup\" of cluster \"main\" must be between 64 KiB and "
       "64 MiB, not 32 KiB"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    backup: {chunk_size: 65MiB}\n",
     F ":7:26: key \"chunk_size\" in \"backup\" of cluster \"main\" must be between 64 KiB and "
       "64 MiB, not 65 MiB"},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, part_size: 1MiB}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:49: key \"part_size\" in repo \"s\" must be between 5 MiB and 5 GiB, not 1 MiB"},
    /* missing keys and references */
    {BASE_REPOS "clusters:\n  main:\n    repos: [r1]\n",
     F ":5:5: missing required key \"conninfo\" in cluster \"main\""},
    {BASE_REPOS, F ":1:1: missing required key \"clusters\""},
    {BASE_CLUSTERS, F ":1:1: missing required key \"repos\""},
    {"repos: {}\n" BASE_CLUSTERS, F ":1:8: key \"repos\" must define at least one repo"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1, offsite]\n",
     F ":6:17: cluster \"main\" names undefined repo \"offsite\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1, r1]\n",
     F ":6:17: repo \"r1\" is listed twice in cluster \"main\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: []\n",
     F ":6:12: key \"repos\" in cluster \"main\" must name at least one repo"},
    {"repos:\n  r1: {path: /srv}\n" BASE_CLUSTERS,
     F ":2:7: missing required key \"type\" in repo \"r1\""},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: "
     "AKIDTEST}\n" BASE_CLUSTERS,
     F ":2:6: missing required key \"secret_access_key\" or \"secret_access_key_file\" in repo "
       "\"s\""},
    {BASE_REPOS BASE_CLUSTERS "encryption: {}\n",
     F ":7:13: missing required key \"passphrase\" or \"passphrase_file\" in \"encryption\""},
    {BASE_REPOS BASE_CLUSTERS "encryption: {passphrase: p, key_cache: yes}\n",
     F ":7:40: key \"key_cache\" in \"encryption\" must be true or false, not \"yes\""},
    {BASE_REPOS BASE_CLUSTERS "notify:\n  - format: slack\n",
     F ":8:5: missing required key \"url\" or \"url_file\" in notify entry 1"},
    /* secrets and environment */
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key_file: /nonexistent/pgark/s3.key}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:31: key \"secret_access_key_file\" in repo \"s\": cannot read "
       "\"/nonexistent/pgark/s3.key\": No such file or directory"},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, secret_access_key_file: /k}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:38: keys \"secret_access_key\" and \"secret_access_key_file\" in repo \"s\" exclude "
       "each other"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: \"host=${PGARK_TEST_UNSET}\"\n"
                "    repos: [r1]\n",
     F ":5:15: key \"conninfo\" in cluster \"main\": environment variable \"PGARK_TEST_UNSET\" "
       "is not set"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: host=${PGARK_T_HOST\n    repos: [r1]\n",
     F ":5:15: key \"conninfo\" in cluster \"main\": unterminated \"${\" (write \"$${\" for a "
       "literal \"${\")"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: \"${1X}\"\n    repos: [r1]\n",
     F ":5:15: key \"conninfo\" in cluster \"main\": invalid environment variable name \"1X\""},
    /* enumerations and ranges */
    {"repos:\n  r1: {type: ftp, path: /srv}\n" BASE_CLUSTERS,
     F ":2:14: key \"type\" in repo \"r1\" must be posix or s3, not \"ftp\""},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, uri_style: virtual}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:49: key \"uri_style\" in repo \"s\" must be path or host, not \"virtual\""},
    {BASE_REPOS BASE_CLUSTERS "compression: {algorithm: lz4}\n",
     F ":7:26: key \"algorithm\" in \"compression\" must be zstd or none, not \"lz4\""},
    {BASE_REPOS BASE_CLUSTERS "compression: {level: 20}\n",
     F ":7:22: key \"level\" in \"compression\" must be between 1 and 19, not 20"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: host=x\n    repos: [r1]\n"
                "    wal_fetch_read_ahead: 257\n",
     F ":7:27: key \"wal_fetch_read_ahead\" in cluster \"main\" must be between 0 and 256, not "
       "257"},
    {BASE_REPOS BASE_CLUSTERS "compression: {level: 0}\n",
     F ":7:22: key \"level\" in \"compression\" must be between 1 and 19, not 0"},
    {BASE_REPOS BASE_CLUSTERS "compression: {level: high}\n",
     F ":7:22: key \"level\" in \"compression\" must be a whole number, not \"high\""},
    {BASE_REPOS BASE_CLUSTERS "compression: {level: 3.5}\n",
     F ":7:22: key \"level\" in \"compression\" must be a whole number, not \"3.5\""},
    {BASE_REPOS BASE_CLUSTERS "log:\n  level: verbose\n",
     F ":8:10: key \"level\" in \"log\" must be error, warn, info, detail or debug, not "
       "\"verbose\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    backup: {checkpoint: slow}\n",
     F ":7:26: key \"checkpoint\" in \"backup\" of cluster \"main\" must be fast or spread, not "
       "\"slow\""},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n"
                "    retention: {full: 0}\n",
     F ":7:23: key \"full\" in \"retention\" of cluster \"main\" must be between 1 and 100000, "
       "not 0"},
    {BASE_REPOS BASE_CLUSTERS "notify:\n  - {url: https://h, format: xml}\n",
     F ":8:30: key \"format\" in notify entry 1 must be json or slack, not \"xml\""},
    {BASE_REPOS BASE_CLUSTERS "notify:\n  - {url: https://h, events: [backup.failed, "
                              "backup.fail]}\n",
     F ":8:46: unknown event \"backup.fail\" in notify entry 1"},
    {BASE_REPOS BASE_CLUSTERS "notify:\n  - {url: https://h, events: []}\n",
     F ":8:30: key \"events\" in notify entry 1 must list at least one event"},
    {BASE_REPOS BASE_CLUSTERS "notify:\n  - {url: hooks.example.com}\n",
     F ":8:11: key \"url\" in notify entry 1 must start with http:// or https:// and name a host"},
    /* names, paths and other values */
    {BASE_REPOS "clusters:\n  main db:\n    conninfo: x\n    repos: [r1]\n",
     F ":4:3: invalid cluster name \"main db\" (use 1 to 48 letters, digits, \"_\" or \"-\")"},
    {"repos:\n  r/1: {type: posix, path: /srv}\n" BASE_CLUSTERS,
     F ":2:3: invalid repo name \"r/1\" (use 1 to 48 letters, digits, \"_\" or \"-\")"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    slot: Bad-Slot\n",
     F ":7:11: key \"slot\" in cluster \"main\" must be 1 to 63 lowercase letters, digits or "
       "\"_\", not \"Bad-Slot\""},
    {"spool: var/spool\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:8: key \"spool\" must be an absolute path"},
    {"repos:\n  r1: {type: posix, path: repo}\n" BASE_CLUSTERS,
     F ":2:27: key \"path\" in repo \"r1\" must be an absolute path"},
    {BASE_REPOS "clusters:\n  main:\n    conninfo: x\n    repos: [r1]\n    pg_bindir: bin\n",
     F ":7:16: key \"pg_bindir\" in cluster \"main\" must be an absolute path"},
    {"repos:\n  r1: {type: posix, path: /srv, bucket: b}\n" BASE_CLUSTERS,
     F ":2:33: key \"bucket\" in repo \"r1\" is not valid for type posix"},
    {"repos:\n  s: {type: s3, path: /srv, endpoint: https://e, bucket: bkt}\n" BASE_CLUSTERS,
     F ":2:17: key \"path\" in repo \"s\" is not valid for type s3"},
    /* transport */
    {"repos:\n  s: {type: s3, endpoint: http://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":2:27: key \"endpoint\" in repo \"s\" is an http:// URL: requests would travel "
       "unencrypted to a server nobody authenticates"},
    {"repos:\n  s: {type: s3, endpoint: http://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, allow_http: false}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":2:27: key \"endpoint\" in repo \"s\" is an http:// URL: requests would travel "
       "unencrypted to a server nobody authenticates"},
    /* metrics */
    {"metrics_listen: 127.0.0.1\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:17: key \"metrics_listen\": \"127.0.0.1\" is not HOST:PORT (e.g. 127.0.0.1:9188, "
       "[::1]:9188 or :9188 for every address)"},
    {"metrics_listen: \"::1:9188\"\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:17: key \"metrics_listen\": \"::1:9188\" is not HOST:PORT (e.g. 127.0.0.1:9188, "
       "[::1]:9188 or :9188 for every address)"},
    {"metrics_listen: \"h:65536\"\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:17: key \"metrics_listen\": \"h:65536\" is not HOST:PORT (e.g. 127.0.0.1:9188, "
       "[::1]:9188 or :9188 for every address)"},
    {"metrics_listen: \"h:+1\"\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:17: key \"metrics_listen\": \"h:+1\" is not HOST:PORT (e.g. 127.0.0.1:9188, "
       "[::1]:9188 or :9188 for every address)"},
    {"metrics_textfile: prom\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:19: key \"metrics_textfile\" must be an absolute path"},
    {"require_tls: true\n"
     "repos:\n  s: {type: s3, endpoint: http://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, allow_http: true}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":4:50: key \"allow_http\" in repo \"s\" cannot be true when require_tls is true"},
    {"require_tls: true\n"
     "repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, allow_http: true}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":4:50: key \"allow_http\" in repo \"s\" cannot be true when require_tls is true"},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, allow_http: yes}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:50: key \"allow_http\" in repo \"s\" must be true or false, not \"yes\""},
    {"repos:\n  r1: {type: posix, path: /srv, allow_http: true}\n" BASE_CLUSTERS,
     F ":2:33: key \"allow_http\" in repo \"r1\" is not valid for type posix"},
    {"require_tls: 1\n" BASE_REPOS BASE_CLUSTERS,
     F ":1:14: key \"require_tls\" must be true or false, not \"1\""},
    {"repos:\n  s: {type: s3, endpoint: ftp://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":2:27: key \"endpoint\" in repo \"s\" must start with http:// or https:// and name a "
       "host, not \"ftp://e\""},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: My_Bucket, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":2:46: key \"bucket\" in repo \"s\" must be 3 to 63 lowercase letters, digits, \".\" or "
       "\"-\", not \"My_Bucket\""},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, prefix: a/../b,\n"
     "      access_key_id: AKIDTEST, secret_access_key: SECRETTEST}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":2:59: key \"prefix\" in repo \"s\" must not contain \".\" or \"..\" segments, not "
       "\"a/../b\""},
    {"repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt, access_key_id: AKIDTEST,\n"
     "      secret_access_key: SECRETTEST, concurrency: 65}\n"
     "clusters: {c: {conninfo: x, repos: [s]}}\n",
     F ":3:51: key \"concurrency\" in repo \"s\" must be between 1 and 64, not 65"},
    /* the tail of the WAL */
    {"repos:\n  r1: {type: posix, path: /srv, partial_upload_interval: 1}\n" BASE_CLUSTERS,
     F ":2:58: key \"partial_upload_interval\" in repo \"r1\": invalid duration \"1\" "
       "(expected a whole number and a unit: ms, s, m, h, d or w)"},
    {"repos:\n  r1: {type: posix, path: /srv, stop_timeout: -5s}\n" BASE_CLUSTERS,
     F ":2:47: key \"stop_timeout\" in repo \"r1\": invalid duration \"-5s\" "
       "(expected a whole number and a unit: ms, s, m, h, d or w)"},
};

/* partial_upload_interval and stop_timeout are keys of a repository of either type. */
static void test_tail_keys(void **state)
{
    (void)state;
    struct config *cfg = load_ok("repos:\n"
                                 "  r1: {type: posix, path: /srv, partial_upload_interval: 250ms,\n"
                                 "       stop_timeout: 0s}\n"
                                 "  s: {type: s3, endpoint: https://e, bucket: bkt,\n"
                                 "      access_key_id: AK, secret_access_key: SK,\n"
                                 "      partial_upload_interval: 0s, stop_timeout: 1m}\n"
                                 "clusters: {c: {conninfo: x, repos: [r1, s]}}\n");
    assert_true(cfg->repos[0].partial_upload_interval_ms == 250);
    assert_true(cfg->repos[0].stop_timeout_ms == 0);
    assert_true(cfg->repos[1].partial_upload_interval_ms == 0);
    assert_true(cfg->repos[1].stop_timeout_ms == 60000);
    config_free(cfg);
}

/* An S3 endpoint over http:// needs allow_http, which require_tls refuses; each refusal
 * says what to do. */
static void test_transport_keys(void **state)
{
    (void)state;
    struct config *cfg = load_ok("require_tls: true\n"
                                 "repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt,\n"
                                 "      access_key_id: AK, secret_access_key: SK}\n"
                                 "clusters: {c: {conninfo: x, repos: [s]}}\n");
    assert_true(cfg->require_tls);
    assert_false(cfg->repos[0].allow_http);
    config_free(cfg);

    cfg = NULL;
    err_clear();
    assert_int_equal(config_load_string(F,
                                        "repos:\n  s: {type: s3, endpoint: http://e, bucket: bkt,\n"
                                        "      access_key_id: AK, secret_access_key: SK}\n"
                                        "clusters: {c: {conninfo: x, repos: [s]}}\n",
                                        &cfg),
                     -ERR_CONFIG);
    assert_null(cfg);
    assert_string_equal(err_hint_text(), "use an https:// endpoint, or set allow_http: true in "
                                         "repo \"s\" on a network you trust");
    assert_int_equal(config_load_string(F,
                                        "require_tls: true\n"
                                        "repos:\n  s: {type: s3, endpoint: http://e, bucket: bkt,\n"
                                        "      access_key_id: AK, secret_access_key: SK}\n"
                                        "clusters: {c: {conninfo: x, repos: [s]}}\n",
                                        &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_message(), F ":3:27: key \"endpoint\" in repo \"s\" is an http:// "
                                         "URL: requests would travel unencrypted to a server "
                                         "nobody authenticates");
    assert_string_equal(err_hint_text(), "use an https:// endpoint (require_tls is true)");
    assert_int_equal(
        config_load_string(F,
                           "require_tls: true\n"
                           "repos:\n  s: {type: s3, endpoint: https://e, bucket: bkt,\n"
                           "      access_key_id: AK, secret_access_key: SK,\n"
                           "      allow_http: true}\n"
                           "clusters: {c: {conninfo: x, repos: [s]}}\n",
                           &cfg),
        -ERR_CONFIG);
    assert_string_equal(err_hint_text(), "use an https:// endpoint, or set require_tls: false");
    err_clear();
}

static void chmod_in_tmp(const char *name, mode_t mode)
{
    char *p = path_in_tmp(name);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

/* Secrets others can read: one warning per file, naming it and the fix; the config
 * file counts when other users can read it, a secret file when its group can too. */
static void test_file_mode_warnings(void **state)
{
    (void)state;
    write_file("group.key", "group-readable-secret\n");
    write_file("other.key", "other-readable-secret\n");
    write_file("both.key", "world-readable-secret\n");
    write_file("private.key", "private-secret\n");
    chmod_in_tmp("group.key", 0640);
    chmod_in_tmp("other.key", 0604);
    chmod_in_tmp("both.key", 0644);
    chmod_in_tmp("private.key", 0600);
    write_file("modes.yaml", "repos:\n"
                             "  a: {type: s3, endpoint: https://e, bucket: bkt,\n"
                             "      access_key_id_file: private.key,\n"
                             "      secret_access_key_file: group.key,\n"
                             "      session_token_file: other.key}\n"
                             "encryption: {passphrase_file: both.key}\n"
                             "clusters: {c: {conninfo: x, repos: [a]}}\n");
    char *path = path_in_tmp("modes.yaml");
    char *dir = xstrdup(tmpdir);
    struct config *cfg = NULL;

    /* Group-readable configuration file: no warning about it. */
    chmod_in_tmp("modes.yaml", 0640);
    err_clear();
    if (config_load(path, &cfg) != 0)
        fail_msg("%s", err_format());
    assert_int_equal(cfg->nwarnings, 3);
    char *want = xasprintf("%s:4:31: key \"secret_access_key_file\" in repo \"a\": secret file "
                           "\"%s/group.key\" is readable by its group (mode 0640)",
                           path, dir);
    assert_string_equal(cfg->warnings[0].message, want);
    free(want);
    want = xasprintf("chmod 600 \"%s/group.key\"", dir);
    assert_string_equal(cfg->warnings[0].hint, want);
    free(want);
    want = xasprintf("%s:5:27: key \"session_token_file\" in repo \"a\": secret file "
                     "\"%s/other.key\" is readable by other users (mode 0604)",
                     path, dir);
    assert_string_equal(cfg->warnings[1].message, want);
    free(want);
    want = xasprintf("%s:6:31: key \"passphrase_file\" in \"encryption\": secret file "
                     "\"%s/both.key\" is readable by its group and other users (mode 0644)",
                     path, dir);
    assert_string_equal(cfg->warnings[2].message, want);
    free(want);
    config_free(cfg);

    /* Readable by others: the configuration file comes first. */
    chmod_in_tmp("modes.yaml", 0604);
    if (config_load(path, &cfg) != 0)
        fail_msg("%s", err_format());
    assert_int_equal(cfg->nwarnings, 4);
    want = xasprintf("configuration file \"%s\" is readable by other users (mode 0604)", path);
    assert_string_equal(cfg->warnings[0].message, want);
    free(want);
    want = xasprintf("chmod 600 \"%s\"", path);
    assert_string_equal(cfg->warnings[0].hint, want);
    free(want);
    config_free(cfg);

    /* Private files: nothing to say. */
    chmod_in_tmp("modes.yaml", 0600);
    chmod_in_tmp("group.key", 0600);
    chmod_in_tmp("other.key", 0400);
    chmod_in_tmp("both.key", 0600);
    if (config_load(path, &cfg) != 0)
        fail_msg("%s", err_format());
    assert_int_equal(cfg->nwarnings, 0);
    assert_null(cfg->warnings);
    config_free(cfg);

    /* From a string there is no file to judge. */
    cfg = load_ok(BASE_REPOS BASE_CLUSTERS);
    assert_int_equal(cfg->nwarnings, 0);
    config_free(cfg);
    free(dir);
    free(path);
}

/* disk_free_min: a size, a percentage of the filesystem, or 0 (no disk.low events). */
static void test_disk_free_min(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        uint64_t bytes;
        double percent;
    } good[] = {{"2GiB", UINT64_C(2) << 30, 0}, {"12.5%", 0, 12.5}, {"0", 0, 0}, {"0%", 0, 0}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *yaml = xasprintf("disk_free_min: \"%s\"\n%s", good[i].value, minimal);
        struct config *cfg = load_ok(yaml);
        assert_true(cfg->disk_free_min == good[i].bytes);
        assert_true(cfg->disk_free_min_percent == good[i].percent);
        config_free(cfg);
        free(yaml);
    }
    static const struct {
        const char *value, *message;
    } bad[] = {
        {"150%", F ":1:16: key \"disk_free_min\": \"150%\" is not a percentage "
                   "from 0% to 100%"},
        {"-1%", F ":1:16: key \"disk_free_min\": \"-1%\" is not a percentage "
                  "from 0% to 100%"},
        {"5%%", F ":1:16: key \"disk_free_min\": \"5%%\" is not a percentage "
                  "from 0% to 100%"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *yaml = xasprintf("disk_free_min: \"%s\"\n%s", bad[i].value, minimal);
        struct config *cfg = NULL;
        err_clear();
        assert_int_equal(config_load_string(F, yaml, &cfg), -ERR_CONFIG);
        assert_string_equal(err_message(), bad[i].message);
        free(yaml);
    }
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(F, "disk_free_min: lots\n" BASE_REPOS BASE_CLUSTERS, &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_message(), F ":1:16: key \"disk_free_min\": \"lots\" is neither a size "
                                         "(a whole number and a unit: 2GiB) nor a percentage of "
                                         "the filesystem (5%)");
}

static void test_bad_configs(void **state)
{
    (void)state;
    unsetenv("PGARK_TEST_UNSET");
    size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);
    assert_true(n >= 25);
    size_t failures = 0;
    for (size_t i = 0; i < n; i++) {
        struct config *cfg = (struct config *)0x1;
        err_clear();
        int rc = config_load_string(F, bad_cases[i].yaml, &cfg);
        if (rc != -ERR_CONFIG || cfg != (struct config *)0x1 ||
            strcmp(err_message(), bad_cases[i].message) != 0) {
            /* Report every mismatch, not just the first. */
            print_message("case %zu (rc %d):\n  want: %s\n  got:  %s\n", i + 1, rc,
                          bad_cases[i].message, err_message());
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void test_hints(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    assert_int_equal(
        config_load_string(F, BASE_REPOS "clusters: {main: {conninfo: x, repos: [r1], slto: s}}\n",
                           &cfg),
        -ERR_CONFIG);
    assert_string_equal(err_hint_text(), "did you mean \"slot\"?");
    assert_int_equal(config_load_string(F, BASE_REPOS BASE_CLUSTERS "log: {zzzzzz: 1}\n", &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_hint_text(), "valid keys here: level, format");
    assert_int_equal(config_load_string(F,
                                        BASE_REPOS "clusters:\n  main:\n    conninfo: x\n"
                                                   "    repos: [nope]\n",
                                        &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_hint_text(), "repos defined under \"repos\": r1");

    /* The first sketch's example line, unquoted ${VAR} in a flow mapping. */
    assert_int_equal(config_load_string(F,
                                        "repos:\n"
                                        "  offsite: { type: s3, endpoint: https://s3.example.com,\n"
                                        "             access_key_id: ${AWS_ACCESS_KEY_ID}, "
                                        "secret_access_key: x }\n",
                                        &cfg),
                     -ERR_CONFIG);
    assert_string_equal(err_message(), F ":3:30: invalid YAML: did not find expected ',' or '}' "
                                         "(while parsing a flow mapping)");
    assert_string_equal(err_hint_text(),
                        "inside { } or [ ], quote values that use ${VAR}: key: \"${VAR}\"");
}

static void test_load_file_errors(void **state)
{
    (void)state;
    struct config *cfg = NULL;
    char *missing = path_in_tmp("missing.yaml");
    char *want =
        xasprintf("cannot open configuration file \"%s\": No such file or directory", missing);
    assert_int_equal(config_load(missing, &cfg), -ERR_CONFIG);
    assert_string_equal(err_message(), want);
    assert_string_equal(err_hint_text(), "give the file with --config FILE or $PGARK_CONFIG");
    free(want);
    free(missing);

    /* A directory is not a configuration file. */
    want = xasprintf("cannot read configuration file \"%s\": Is a directory", tmpdir);
    assert_int_equal(config_load(tmpdir, &cfg), -ERR_CONFIG);
    assert_string_equal(err_message(), want);
    free(want);

    /* Messages from a file name the file as given. */
    write_file("bad.yaml", "repos:\n  r1: {type: posix, path: /srv}\nclusters: 3\n");
    char *bad = path_in_tmp("bad.yaml");
    want = xasprintf("%s:3:11: key \"clusters\" must be a mapping, not a string", bad);
    assert_int_equal(config_load(bad, &cfg), -ERR_CONFIG);
    assert_string_equal(err_message(), want);
    free(want);
    free(bad);

    /* Secret files that exist but cannot be used. */
    write_file("empty.key", "\n");
    char *yaml = xasprintf("repos: {a: {type: posix, path: /r}}\n"
                           "encryption: {passphrase_file: %s/empty.key}\n"
                           "clusters: {c: {conninfo: x, repos: [a]}}\n",
                           tmpdir);
    want = xasprintf(F ":2:31: key \"passphrase_file\" in \"encryption\": \"%s/empty.key\" is "
                       "empty",
                     tmpdir);
    assert_int_equal(config_load_string(F, yaml, &cfg), -ERR_CONFIG);
    assert_string_equal(err_message(), want);
    free(want);
    free(yaml);
    if (geteuid() != 0) {
        write_file("locked.key", "x\n");
        char *locked = path_in_tmp("locked.key");
        assert_int_equal(chmod(locked, 0), 0);
        yaml = xasprintf("repos: {a: {type: posix, path: /r}}\n"
                         "encryption: {passphrase_file: %s}\n"
                         "clusters: {c: {conninfo: x, repos: [a]}}\n",
                         locked);
        want = xasprintf(F ":2:31: key \"passphrase_file\" in \"encryption\": cannot read \"%s\": "
                           "Permission denied",
                         locked);
        assert_int_equal(config_load_string(F, yaml, &cfg), -ERR_CONFIG);
        assert_string_equal(err_message(), want);
        free(want);
        free(yaml);
        free(locked);
    }
}

static void test_default_path(void **state)
{
    (void)state;
    unsetenv("PGARK_CONFIG");
    assert_string_equal(config_default_path(), "/etc/pgark/pgark.yaml");
    setenv("PGARK_CONFIG", "", 1);
    assert_string_equal(config_default_path(), "/etc/pgark/pgark.yaml");
    setenv("PGARK_CONFIG", "/srv/pgark.yaml", 1);
    assert_string_equal(config_default_path(), "/srv/pgark.yaml");
    unsetenv("PGARK_CONFIG");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(config_repo_type_name(CONFIG_REPO_S3), "s3");
    assert_string_equal(config_uri_style_name(CONFIG_URI_HOST), "host");
    assert_string_equal(config_compression_name(CONFIG_COMPRESSION_NONE), "none");
    assert_string_equal(config_checkpoint_name(CONFIG_CHECKPOINT_SPREAD), "spread");
    assert_string_equal(config_notify_format_name(CONFIG_NOTIFY_SLACK), "slack");
    unsigned all = 0;
    for (unsigned bit = 1; bit & CONFIG_EVENT_ALL; bit <<= 1) {
        const char *name = config_event_name(bit);
        assert_non_null(name);
        assert_int_equal(config_event_parse(name), bit);
        all |= bit;
    }
    assert_int_equal(all, CONFIG_EVENT_ALL);
    assert_null(config_event_name(CONFIG_EVENT_RPO_BREACH | CONFIG_EVENT_RPO_RECOVERED));
    assert_int_equal(config_event_parse("rpo"), 0);
    config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_non_defaults),
        cmocka_unit_test(test_shipped_example),
        cmocka_unit_test(test_metrics_keys),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_disk_free_min),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_transport_keys),
        cmocka_unit_test(test_file_mode_warnings),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_tail_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
