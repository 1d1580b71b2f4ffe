/*
 * restore.h — `pgark restore` and `pgark wal-fetch`, and the pure parts of restore:
 * recovery targets, the recovery settings written into postgresql.auto.conf, the choice
 * of a backup and the vetting of its manifest.
 *
 * Promise: apart from the two commands, no I/O. A target is checked when it is parsed
 * (one target at most, each value in PostgreSQL's own syntax), so nothing is written
 * for a command line the server would refuse. The settings text is quoted for
 * postgresql.conf (single quotes doubled, backslashes escaped) and the restore_command
 * for the shell and for the server's %-substitution, whatever bytes the paths hold.
 */
#ifndef PGARK_RESTORE_H
#define PGARK_RESTORE_H

#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_context;

/* The commands (argv[0] is the command name). wal-fetch exits 1 only when every
 * repository answered that it lacks the file, 255 for any other failure. */
int cmd_restore(struct cli_context *ctx, int argc, char **argv);
int cmd_wal_fetch(struct cli_context *ctx, int argc, char **argv);

enum restore_target_kind {
    RESTORE_TARGET_LATEST = 0, /* replay everything there is (the default) */
    RESTORE_TARGET_IMMEDIATE,  /* stop as soon as the backup is consistent */
    RESTORE_TARGET_TIME,
    RESTORE_TARGET_XID,
    RESTORE_TARGET_LSN,
    RESTORE_TARGET_NAME,
};

enum restore_action {
    RESTORE_ACTION_DEFAULT = 0, /* the server's default (pause) */
    RESTORE_ACTION_PAUSE,
    RESTORE_ACTION_PROMOTE,
    RESTORE_ACTION_SHUTDOWN,
};

struct restore_target {
    enum restore_target_kind kind;
    bool kind_set;     /* a target option was given (a second one is an error) */
    int64_t time_us;   /* TIME: Unix microseconds */
    bool zone_assumed; /* TIME given without a zone: taken as UTC */
    uint32_t xid;      /* XID */
    lsn_t lsn;         /* LSN */
    char *name;        /* NAME (owned) */
    bool exclusive;    /* --target-exclusive */
    enum restore_action action;
    timeline_t timeline; /* --target-timeline N; 0 = latest */
};

/* What the server does once started on the restored directory, as a phrase: "it replays
 * the archived WAL to the target, then pauses ..." (action and kind). */
const char *restore_target_outcome(const struct restore_target *t);

/* Record one target option: option is "time", "xid", "lsn", "name" or "target"
 * (value "immediate" or "latest"). ERR_USAGE naming the option and the value when the
 * value is malformed or a target was already given. */
int restore_target_set(struct restore_target *t, const char *option, const char *value);
/* "promote", "pause", "shutdown"; ERR_USAGE otherwise. */
int restore_action_parse(const char *text, enum restore_action *out);
/* "latest" (0) or a decimal or 0x-hex timeline number >= 1; ERR_USAGE otherwise. */
int restore_timeline_parse(const char *text, timeline_t *out);
void restore_target_free(struct restore_target *t);
/* "time 2026-11-25 14:03:27+00", "xid 1234", "latest", ... into buf (>= 128). */
char *restore_target_describe(const struct restore_target *t, char *buf, size_t cap);

/* Append value as a postgresql.conf string literal ('...'). */
void restore_conf_quote(struct buf *b, const char *value);
/* Append word quoted for /bin/sh (bare when it holds only safe characters). */
void restore_shell_quote(struct buf *b, const char *word);

/* The restore_command (unquoted for the conf file): the program, --config, --cluster,
 * wal-fetch [--repo REPO] "%f" "%p", with '%' in the paths doubled so the server
 * substitutes only its own %f and %p. repo (NULL: every repository of the cluster) is the
 * one `restore --repo` was told to use. Caller frees. */
char *restore_command_text(const char *program, const char *config_path, const char *cluster,
                           const char *repo);

/* The lines appended to postgresql.auto.conf: restore_command, the target, its
 * inclusiveness, the action and the timeline. Caller frees. */
char *restore_recovery_conf(const struct restore_target *t, const char *restore_command);

/* postgresql.auto.conf as it came with the backup (len bytes of text), with every
 * setting restore writes (restore_command, recovery_target and recovery_target_*)
 * commented out: a backup of a cluster that was itself restored carries the old
 * restore's target, and the server would stop there, or refuse two targets, when the
 * new restore names another one or none. Everything else stays as it is. Caller frees. */
char *restore_conf_strip(const char *text, size_t len);

/* --- choosing a backup ----------------------------------------------------------- */

struct restore_backup {
    const char *label;
    lsn_t start_lsn, stop_lsn;
    int64_t start_time, stop_time; /* Unix seconds */
    timeline_t timeline;
    int64_t consistent_time_us; /* the manifest's; 0 unknown */
};

/* Whether WAL from a backup on timeline tli that ends at stop_lsn can be replayed into
 * timeline history h (the history of the target timeline; NULL means timeline 1 or a
 * timeline without ancestors, target_tli). True when tli is the target timeline, or an
 * ancestor that was left at or after stop_lsn. */
bool restore_timeline_leads(timeline_t tli, lsn_t stop_lsn, timeline_t target_tli,
                            const struct timeline_history *h);

/* Whether backup b ends before target t may stop: for a time, the target is at or after
 * the earliest the backup reaches (manifest_earliest_target_us); for an LSN, stop_lsn <=
 * the target; any other kind fits. */
bool restore_backup_fits(const struct restore_backup *b, const struct restore_target *t);

/* Index of the newest backup (by stop LSN, then stop time) that fits t and leads to the
 * target timeline, or -1 when none does. */
int restore_backup_pick(const struct restore_backup *backups, size_t n,
                        const struct restore_target *t, timeline_t target_tli,
                        const struct timeline_history *h);

/* --- vetting a backup manifest -------------------------------------------------- */

/* The checks every entry of one manifest passes before restore acts on it, kept as the
 * entries go by (whatever their order): each path passes manifest_path_problem; no path
 * comes twice; nothing is beneath a file; the only symlinks are pg_tblspc/<oid> for the
 * tablespaces the header lists, pointing to the header's location; what is beneath such
 * a link is in the tablespace's version directory (PG_<major>_<catalog version>, the
 * only thing the server sends of a tablespace); pg_wal and pg_tblspc are directories; a
 * file has no setuid, setgid or sticky bit (a directory's are ignored: a setgid bit
 * comes to every directory made under a setgid parent, and restore never applies them).
 * Memory: two 64-bit hashes and a kind per path and per parent directory, not the
 * paths: a hash collision can only refuse a sound manifest (about n^2 / 2^128), never
 * let a broken one through, and restore never follows a symlink whatever this says. */
struct restore_vet;

/* A vet for the entries of the manifest whose header is h (its tablespaces and version
 * are copied). NULL with ERR_INTEGRITY when the header lists a tablespace twice. */
struct restore_vet *restore_vet_new(const struct manifest_header *h);
void restore_vet_free(struct restore_vet *v);

/* 0 when f may be laid down, else ERR_INTEGRITY: "manifest entry "PATH" <why>". */
int restore_vet_entry(struct restore_vet *v, const struct manifest_file *f);

#endif
