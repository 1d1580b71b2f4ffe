/*
 * config.h — the YAML configuration, loaded once into typed structs.
 *
 * Promise: config_load either returns a complete, validated struct config (every
 * default filled in, every cross reference resolved) or fails with ERR_CONFIG and
 * nothing allocated. Nothing else in pgark reads YAML: commands take what they need
 * from these structs and hand plain values down.
 *
 * Error messages have exactly one shape, for every problem the loader finds:
 *
 *     FILE:LINE:COLUMN: MESSAGE
 *
 * FILE is the path given to config_load (or the name given to config_load_string),
 * LINE and COLUMN are 1-based and point at the offending key or value (for a missing
 * key, at the start of the mapping that lacks it). MESSAGE names the key and where it
 * sits, e.g.
 *     /etc/pgark/pgark.yaml:12:5: unknown key "slto" in cluster "main"
 *     /etc/pgark/pgark.yaml:14:17: key "rpo_target" in cluster "main": invalid duration ...
 *     /etc/pgark/pgark.yaml:3:1: missing required key "clusters"
 * An unknown key also gets a hint ("did you mean \"slot\"?" or the list of valid keys).
 *
 * Values: `${VAR}` in any value expands from the environment (an unset VAR is an error;
 * `$${` writes a literal `${`). A key marked "secret" below may instead be given as
 * KEY_file: a path whose contents (one trailing newline stripped) are the value; a
 * relative path is taken from the config file's directory. Every secret value, however
 * given, is registered with log_add_secret() so that no log line shows it.
 *
 * Not errors, but worth fixing, and left for the command to report (config->warnings):
 * a configuration file other users can read, and a KEY_file secret its group or other
 * users can read. The names of the variables read through ${VAR} are kept
 * (config->env_vars), so that a program pgark starts (the server of restore --start)
 * can be given an environment without them.
 */
#ifndef PGARK_CONFIG_H
#define PGARK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgark/log.h"

enum config_repo_type { CONFIG_REPO_POSIX = 0, CONFIG_REPO_S3 };
enum config_uri_style { CONFIG_URI_PATH = 0, CONFIG_URI_HOST };
enum config_compression { CONFIG_COMPRESSION_NONE = 0, CONFIG_COMPRESSION_ZSTD };
enum config_checkpoint { CONFIG_CHECKPOINT_FAST = 0, CONFIG_CHECKPOINT_SPREAD };
enum config_notify_format { CONFIG_NOTIFY_JSON = 0, CONFIG_NOTIFY_SLACK };

/* Notification events, a bitmask; names are "backup.done", "backup.failed", ...
 * (config_event_name). The receiver's: rpo.*, stream.*, repo.*, spool.*, disk.*, wal.damaged;
 * the one-shot commands': backup.*, verify.*, drill.*, expire.failed, check.failed;
 * notify.test is what `pgark notify --test` sends. */
enum config_event {
    CONFIG_EVENT_BACKUP_DONE = 1u << 0,
    CONFIG_EVENT_BACKUP_FAILED = 1u << 1,
    CONFIG_EVENT_RPO_BREACH = 1u << 2,
    CONFIG_EVENT_RPO_RECOVERED = 1u << 3,
    CONFIG_EVENT_STREAM_LOST = 1u << 4, /* also accepted as receiver.down */
    CONFIG_EVENT_STREAM_BACK = 1u << 5, /* also accepted as receiver.up */
    CONFIG_EVENT_VERIFY_DONE = 1u << 6,
    CONFIG_EVENT_VERIFY_FAILED = 1u << 7,
    CONFIG_EVENT_DRILL_DONE = 1u << 8,
    CONFIG_EVENT_DRILL_FAILED = 1u << 9,
    CONFIG_EVENT_EXPIRE_FAILED = 1u << 10,
    CONFIG_EVENT_CHECK_FAILED = 1u << 11,
    CONFIG_EVENT_REPO_FAILING = 1u << 12,
    CONFIG_EVENT_REPO_RECOVERED = 1u << 13,
    CONFIG_EVENT_SPOOL_HIGH = 1u << 14,
    CONFIG_EVENT_SPOOL_OK = 1u << 15,
    CONFIG_EVENT_WAL_DAMAGED = 1u << 16,
    CONFIG_EVENT_NOTIFY_TEST = 1u << 17,
    CONFIG_EVENT_DISK_LOW = 1u << 18,
    CONFIG_EVENT_DISK_OK = 1u << 19,
};
#define CONFIG_EVENT_ALL ((1u << 20) - 1)

/* Defaults (documented in conf/pgark.yaml). */
#define CONFIG_DEFAULT_PATH "/etc/pgark/pgark.yaml"
#define CONFIG_DEFAULT_SPOOL "/var/lib/pgark/spool"
#define CONFIG_DEFAULT_COMPRESSION_LEVEL 3
#define CONFIG_DEFAULT_S3_REGION "us-east-1"
#define CONFIG_DEFAULT_S3_CONCURRENCY 8
#define CONFIG_DEFAULT_S3_PART_SIZE (UINT64_C(16) << 20)
#define CONFIG_DEFAULT_S3_RETRIES 5
#define CONFIG_DEFAULT_RPO_TARGET_MS (INT64_C(15) * 60 * 1000)
#define CONFIG_DEFAULT_RTO_TARGET_MS (INT64_C(30) * 60 * 1000)
#define CONFIG_DEFAULT_DRILL_MAX_AGE_MS (INT64_C(7) * 86400 * 1000)
#define CONFIG_DEFAULT_VERIFY_MAX_AGE_MS (INT64_C(86400) * 1000)
#define CONFIG_DEFAULT_PARTIAL_UPLOAD_INTERVAL_MS (INT64_C(10) * 1000)
/* synchronous: false batches the spool's fsyncs and flush reports at this interval. */
#define CONFIG_DEFAULT_FLUSH_INTERVAL_MS INT64_C(200)
#define CONFIG_MAX_FLUSH_INTERVAL_MS (INT64_C(10) * 1000)
/* A posix repository's copy of the segment being filled: twice a second, so that a restore
 * from local disk loses at most about a second (DESIGN.md's promise) with the copy's own
 * time included; a copy costs only the bytes flushed since the last one (walprep.c). */
#define CONFIG_DEFAULT_LOCAL_PARTIAL_INTERVAL_MS INT64_C(500)
/* disk.low when a filesystem the receiver writes (the spool's, a posix repository's) has
 * less free space than this share of its size. */
#define CONFIG_DEFAULT_DISK_FREE_MIN_PERCENT 5.0
#define CONFIG_DEFAULT_NOTIFY_REPEAT_MS (INT64_C(3600) * 1000)
#define CONFIG_DEFAULT_STOP_TIMEOUT_MS (INT64_C(5) * 1000)
#define CONFIG_DEFAULT_WAL_FETCH_READ_AHEAD 16
#define CONFIG_MAX_WAL_FETCH_READ_AHEAD 256
#define CONFIG_DEFAULT_CHUNK_SIZE (UINT64_C(1) << 20)
#define CONFIG_MIN_CHUNK_SIZE (UINT64_C(64) << 10)
#define CONFIG_MAX_CHUNK_SIZE (UINT64_C(64) << 20)

struct config_repo {
    char *name; /* [A-Za-z0-9_-]+ */
    enum config_repo_type type;
    /* posix */
    char *path; /* absolute */
    /* s3 */
    char *endpoint; /* "http://..." or "https://...", no trailing "/" */
    char *region;   /* default "us-east-1" */
    char *bucket;
    char *prefix;                    /* "" or "a/b/": no leading "/", one trailing "/" */
    enum config_uri_style uri_style; /* default path */
    char *access_key_id;             /* secret-capable (access_key_id_file) */
    char *secret_access_key;         /* secret */
    char *session_token;             /* secret, NULL when not given */
    /* the files those three came from (resolved), NULL when given inline: the S3
     * driver re-reads them when they change */
    char *access_key_id_file;
    char *secret_access_key_file;
    char *session_token_file;
    char *ca_file;      /* NULL: system default; checked readable at load */
    int concurrency;    /* parallel requests, 1..64, default 8 */
    uint64_t part_size; /* multipart part size, 5MiB..5GiB, default 16MiB */
    int retries;        /* retries of a transient failure, 0..100, default 5 */
    bool allow_http;    /* an http:// endpoint is accepted only with this; default false */
    /* both types */
    /* Copy of the segment being filled: -1 when not set (posix: 1s; s3: the cluster's
     * partial_upload_interval), 0 disables it. */
    int64_t partial_upload_interval_ms;
    /* How long a stopping receiver waits for this repository to take what the spool
     * holds (the tail of the segment being filled); default 5s, 0 not at all. */
    int64_t stop_timeout_ms;
};

struct config_retention {
    int full;          /* keep this many newest full backups; 0 = not set */
    int64_t window_ms; /* keep what is needed to restore this far back; 0 = not set */
};

struct config_backup {
    uint64_t chunk_size;               /* 64KiB..64MiB, default 1MiB */
    enum config_checkpoint checkpoint; /* default fast */
};

struct config_cluster {
    char *name;                         /* [A-Za-z0-9_-]+ */
    char *conninfo;                     /* libpq connection string (required) */
    char *slot;                         /* default "pgark_<name>" lowercased, "-" as "_" */
    bool create_slot;                   /* default false */
    size_t *repos;                      /* indices into config->repos, in the order given */
    size_t nrepos;                      /* >= 1 */
    bool synchronous;                   /* default false */
    int64_t flush_interval_ms;          /* default 200ms; 1ms..10s; used when !synchronous */
    int64_t rpo_target_ms;              /* default 15m; > 0 */
    int64_t rto_target_ms;              /* default 30m; > 0: a drill's restore time */
    int64_t drill_max_age_ms;           /* default 7d; > 0: age of the last good drill */
    int64_t verify_max_age_ms;          /* default 1d; > 0: age of the last good verify */
    int64_t partial_upload_interval_ms; /* default 10s; 0 disables */
    struct config_retention retention;
    struct config_backup backup;
    char *application_name;   /* default "pgark_<name>" */
    int wal_fetch_read_ahead; /* segments wal-fetch keeps fetched ahead; default 16, 0 off */
    char *pg_bindir;          /* PostgreSQL's bin directory for restore --start; NULL: look
                               * in the usual places for the backup's major */
};

struct config_notify {
    char *url;                        /* http:// or https://; secret */
    enum config_notify_format format; /* default json */
    unsigned events;                  /* enum config_event bits; default CONFIG_EVENT_ALL */
};

/* Something to fix that does not stop pgark: a secret others can read. */
struct config_warning {
    char *message; /* names the file, e.g. "configuration file \"/etc/pgark/pgark.yaml\"
                      is readable by other users (mode 0644)" */
    char *hint;    /* the fix: "chmod 600 \"/etc/pgark/pgark.yaml\"" */
};

struct config {
    char *path;         /* the file loaded, or the name given to config_load_string */
    char *spool;        /* absolute; default /var/lib/pgark/spool */
    uint64_t spool_max; /* cap on the spool's WAL bytes per cluster; 0 = none */
    /* disk.low below this free space on the spool's or a posix repository's filesystem:
     * bytes, or a percentage of its size (the other 0; both 0: never); default 5%. */
    uint64_t disk_free_min;
    double disk_free_min_percent;
    enum log_level log_level;   /* default info */
    enum log_format log_format; /* default text */
    struct config_repo *repos;
    size_t nrepos; /* >= 1 */
    struct {
        enum config_compression algorithm; /* default zstd */
        int level;                         /* 1..19, default 3 */
    } compression;
    struct {
        char *passphrase; /* NULL: no encryption; secret */
        /* Keep the key derived from the passphrase in the spool (repo.h:
         * key_cache_spool); default true. */
        bool key_cache;
    } encryption;
    struct config_cluster *clusters;
    size_t nclusters; /* >= 1 */
    struct config_notify *notify;
    size_t nnotify;
    /* While a breach lasts (rpo.breach, stream.lost, repo.failing, spool.high, disk.low), it is
     * sent again this often; default 1h; > 0. */
    int64_t notify_repeat_ms;
    /* Refuse a TCP conninfo whose sslmode is weaker than verify-full, and allow_http;
     * default false. */
    bool require_tls;
    /* Where `receive` serves Prometheus metrics (GET /metrics): the text as given, the
     * host part (NULL: every address) and the port; NULL when off (the default). */
    char *metrics_listen;
    char *metrics_host;
    int metrics_port;
    /* Directory of node-exporter's textfile collector: backup, verify, drill and expire
     * each write pgark_<cluster>_<command>.prom there; NULL when off (the default). */
    char *metrics_textfile;
    /* Names of the environment variables the file read through ${VAR}, each once, in
     * order of first use; NULL-terminated (never NULL itself). */
    char **env_vars;
    struct config_warning *warnings; /* the file first, then each secret file */
    size_t nwarnings;
};

/* Load and validate the YAML file at path. On success *out owns a new config (free with
 * config_free); on failure returns -ERR_CONFIG with the error set and *out untouched —
 * also when the file itself cannot be opened or read ("cannot open configuration file
 * \"PATH\": No such file or directory", with a hint), so that every configuration
 * problem exits with code 2. */
int config_load(const char *path, struct config **out);

/* As config_load, from text; name_for_messages is used as FILE in messages and
 * relative *_file paths are taken from the current directory. */
int config_load_string(const char *name_for_messages, const char *yaml, struct config **out);

/* Free a config and everything in it; secrets are zeroed first. NULL is a no-op. */
void config_free(struct config *config);

/* The cluster called name; with name NULL, the only cluster. NULL with ERR_CONFIG set
 * when there is no such cluster, or name is NULL and there are several. */
const struct config_cluster *config_cluster_find(const struct config *config, const char *name);

/* The repo called name, or NULL with ERR_CONFIG set. */
const struct config_repo *config_repo_find(const struct config *config, const char *name);

/* The i-th repo of a cluster (i < cluster->nrepos). */
const struct config_repo *config_cluster_repo(const struct config *config,
                                              const struct config_cluster *cluster, size_t i);

/* $PGARK_CONFIG when set and not empty, else CONFIG_DEFAULT_PATH. Not owned. */
const char *config_default_path(void);

/* Names of enum values as written in YAML ("posix", "host", "zstd", "spread", "slack"). */
const char *config_repo_type_name(enum config_repo_type type);
const char *config_uri_style_name(enum config_uri_style style);
const char *config_compression_name(enum config_compression algorithm);
const char *config_checkpoint_name(enum config_checkpoint checkpoint);
const char *config_notify_format_name(enum config_notify_format format);

/* Name of one event bit ("rpo.breach"), NULL if not exactly one known bit. */
const char *config_event_name(unsigned event);
/* Event bits for a name: one event ("rpo.breach", or an old name of one such as
 * "receiver.down"), every event of a group ("rpo.*") or all of them ("*"); 0 when
 * nothing matches. */
unsigned config_event_parse(const char *name);

#endif
