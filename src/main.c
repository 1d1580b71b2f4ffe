/*
 * main.c — global options and command dispatch.
 *
 * Global options come before the command; everything after the command name is
 * the command's own. A command that is not built yet says so and exits 1.
 */
#include "pgark/backup.h"
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/helpdoc.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/restore.h"
#include "pgark/units.h"
#include "pgark/version.h"
#include "pgark/walreceiver.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct command {
    const char *name;
    command_fn fn; /* NULL: not built yet */
    const char *usage;
    const char *summary;
    const char *help;
};

static const struct command commands[] = {
    {"init", cmd_init, "init [--json]",
     "make a cluster ready: check the server, create the slot and the repositories",
     "Connects as the receiver will and checks the server's major, wal_level,\n"
     "max_wal_senders and max_replication_slots; creates the replication slot when\n"
     "create_slot is on (else prints the SQL) and every repository's repo.json for the\n"
     "server's identity (encryption included). What exists is left alone: run it again\n"
     "at any time. Each missing piece is printed with the line that fixes it. Exits 0\n"
     "when the cluster is ready, 1 when something is missing.\n"},
    {"receive", cmd_receive, "receive",
     "stream WAL into the spool and ship it to every repository (daemon, foreground)",
     "Connects over the physical replication protocol through the cluster's slot,\n"
     "writes WAL durably to the spool and ships every completed segment to each\n"
     "repository. SIGTERM/SIGINT stop cleanly; SIGHUP reloads the configuration.\n"},
    {"backup", cmd_backup,
     "backup [--label L] [--checkpoint fast|spread] [--repo NAME]... [--full] "
     "[--no-progress]\n"
     "       [--config-only] [--json]",
     "take a base backup into every repository of the cluster",
     "Runs BASE_BACKUP over a replication connection and stores every file as\n"
     "deduplicated, compressed (and encrypted) chunks, then the manifest. A repository\n"
     "that cannot be reached, or fails during the backup, is dropped with an error\n"
     "naming it and the backup completes in the others: exit 4 then (--json:\n"
     "\"failed_repositories\"), and \"pgark copy\" brings the backup to it later.\n"
     "--repo NAME (repeatable, or a comma list) backs up into those repositories only.\n"
     "Every backup also keeps the server's configuration files (config_file, hba_file,\n"
     "ident_file and the files pg_file_settings names, read with pg_read_binary_file:\n"
     "superuser or pg_read_server_files and pg_read_all_settings) and pgark's own\n"
     "configuration with its secrets redacted, as configs/<LABEL>.json; a file it cannot\n"
     "read is a warning. --config-only keeps only those, in seconds: a configuration-only\n"
     "backup, which restore --config-only writes out and a restore of a data directory\n"
     "refuses.\n"
     "On PostgreSQL 17 and later with summarize_wal on, the backup is incremental to the\n"
     "newest backup of the server's timeline: the server sends only the blocks changed\n"
     "since, the rest is that backup's chunks, and the backup still restores on its own.\n"
     "It is full, saying why (info, and --json \"reason\"), with --full, before 17, with\n"
     "summarize_wal off, without such a backup, or when the server refuses.\n"},
    {"copy", cmd_copy, "copy [--from REPO --to REPO] [--backup LABEL] [--wal] [--json]",
     "copy the backups (and their WAL) one repository of the cluster lacks from another",
     "Copies every backup of --from that --to lacks (or only --backup LABEL): the chunks\n"
     "--to does not hold, the server's backup_manifest, the backup's WAL and history\n"
     "files, and the manifest last, so a copy stopped half-way is not listed and a new\n"
     "run completes it. Objects are read and verified from --from and stored as --to\n"
     "stores them (its compression, its encryption and chunk names). --wal also copies\n"
     "every WAL segment and history file --to lacks. Without --from and --to, every\n"
     "repository of the cluster gets what it lacks from the others (pgark-copy@.timer);\n"
     "one that cannot be reached is reported (exit 1) and the others go on.\n"},
    {"restore", cmd_restore,
     "restore --pgdata DIR [--backup LABEL|latest] [TARGET] [--target-action "
     "promote|pause|shutdown]\n"
     "              [--target-timeline latest|N] [--delta] [--force] [--tablespace-map "
     "OID=DIR]...\n"
     "              [--tablespace-dir DIR] [--waldir DIR] [--repo NAME] [--start [--port N] "
     "[--wait]]\n"
     "              [--no-chunk-check]\n"
     "       restore --config-only --dest DIR [--backup LABEL] [--repo NAME]",
     "lay down a backup and the recovery settings for point-in-time recovery",
     "TARGET is one of --target-time TS, --target-xid X, --target-lsn X/X,\n"
     "--target-name NAME, --target immediate, --target latest (the default);\n"
     "--target-exclusive stops just before the target instead of just after. A time\n"
     "without a zone is UTC. At the target the server pauses, read-only, by default\n"
     "(--target-action pause: check the data, then SELECT pg_wal_replay_resume();\n"
     "promotes it); promote opens it at once, shutdown stops it there.\n"
     "--tablespace-dir DIR puts each tablespace not named by --tablespace-map in\n"
     "DIR/<oid>. --waldir DIR puts the WAL in DIR (absolute, outside the data directory, empty\n"
     "unless --delta or --force) with pg_wal a symlink to it; over a directory whose\n"
     "pg_wal already is a symlink, --delta and --force keep it. A manifest that would\n"
     "write outside the data directory, its tablespaces or its WAL directory is\n"
     "refused before anything is written (exit 3).\n"
     "Before writing, restore checks that every chunk of the backup is in some\n"
     "repository of the cluster (one listing; --no-chunk-check skips it); a chunk\n"
     "damaged or missing in the chosen repository is read from another one (warned).\n"
     "When no repository holds it, restore fails (exit 3) naming the newest backup that\n"
     "does not need it.\n"
     "The backup's configuration files (backup keeps them) go to\n"
     "PGDATA/pgark-restored-config/ as NN-<name>, with a README saying where they came\n"
     "from and the path each had; nothing outside the data directory is touched\n"
     "(pg_verifybackup needs -i pgark-restored-config).\n"
     "--config-only --dest DIR writes only those, each at its original absolute path\n"
     "below DIR, from backup LABEL (by default the newest configuration backup,\n"
     "configuration-only ones included).\n"},
    {"wal-fetch", cmd_wal_fetch, "wal-fetch [--repo NAME] SEGMENT DEST",
     "restore_command helper (%f %p), with read-ahead",
     "Exits 1 when no repository has the file, as restore_command requires, and 255\n"
     "(which stops the server's startup) on any other failure; --repo reads only NAME.\n"},
    {"wal-push", cmd_wal_push, "wal-push PATH", "archive_command helper (%p)",
     "For servers that cannot be streamed from.\n"},
    {"info", cmd_info, "info [--json]",
     "backups, recovery window per timeline, archive state, RPO now", ""},
    {"verify", cmd_verify,
     "verify [--backup LABEL|--days N] [--repair-index] [--no-quarantine] [--json]",
     "re-read and check every object, WAL continuity and timelines",
     "Re-reads every object of every repository of the cluster (envelope, authentication\n"
     "tag, SHA-256): each backup's manifest, every chunk it names (each file's SHA-256\n"
     "recomputed), the server's backup_manifest and the WAL from the backup's start to\n"
     "its stop; decodes every WAL segment (page headers, record CRCs, the xl_prev\n"
     "chain), checks the time indexes, WAL continuity per timeline from the oldest\n"
     "backup's start and the history files. --backup LABEL checks that backup alone;\n"
     "--days N limits it to what was archived (backups that ended) in the last N days.\n"
     "Segments archived without a time index are named; --repair-index builds their\n"
     "indexes again from the segments.\n"
     "Every backup that names a damaged or missing chunk is named, with the newest backup\n"
     "no problem concerns. A damaged chunk is moved to quarantine/ (with the reason) so\n"
     "that the next backup stores it again; --no-quarantine leaves it in place.\n"
     "Exits 3 when a problem is found, 0 when none.\n"},
    {"expire", cmd_expire, "expire [--dry-run] [--json]",
     "apply retention; remove unreferenced chunks and WAL",
     "Keeps the backups retention keeps in every repository: full: N the N newest,\n"
     "window: D the newest backup that ended at or before now - D and every newer one\n"
     "(with both, what either keeps). Removes the other backups (manifest.json first),\n"
     "folders of backups that died before completing, the WAL before the oldest kept\n"
     "backup's start (history files stay) and chunks no remaining manifest names.\n"
     "The chunk sweep is skipped while a backup runs. --dry-run removes nothing.\n"},
    {"check", cmd_check, "check [--json]",
     "config, connection, slot, repositories writable, RPO within target",
     "Exits 3 when something is wrong, for monitoring systems.\n"},
    {"drill", cmd_drill,
     "drill [--backup LABEL|--random] [--target latest|--target-time TS|--random-target]\n"
     "              [--sql FILE] [--thorough] [--repo NAME|--all-repos] [--pgdata DIR] [--port N]\n"
     "              [--keep] [--json]",
     "restore to a scratch directory, start, replay, validate and measure RTO",
     "Runs pgark restore from one repository (--repo NAME; --all-repos each in turn;\n"
     "by default the one drilled longest ago) into a scratch directory (--pgdata, by\n"
     "default <spool>/<cluster>/drill; it must be empty), its tablespaces beside it,\n"
     "starts a throwaway server with the backup's major (pg_bindir), reachable only\n"
     "through a socket there, with no archiving, replays to the target (latest by\n"
     "default) and promotes it; then checks that the point reached is the target, runs\n"
     "pg_checksums when the cluster has checksums, amcheck on every B-tree index of\n"
     "every database (heapallindexed with --thorough), and each statement of --sql FILE\n"
     "(one row, first column true; \"\\c DB\" picks the database). Measures the RTO by\n"
     "phase and the RPO, compares them with rto_target and rpo_target, and writes\n"
     "drills/<time>-<repo>.json to every repository. The server is stopped and the\n"
     "directory removed unless --keep. Exits 0 passed, 3 a check failed (a data\n"
     "problem), 1 the drill could not run.\n"},
    {"report", cmd_report, "report [--days N] [--json | --html FILE]",
     "the disaster-recovery scorecard: RPO, RTO, drills, verify, backups",
     "For every cluster (or the one --cluster names), over the last N days (30): the RPO\n"
     "of each tier now (the receiver's status.json on this host) and at its worst (its\n"
     "history), the RTO of the last drill and the p50 and maximum, the drills and verify\n"
     "runs and the age of the last that passed, the backups and the restorable window,\n"
     "each against rpo_target, rto_target, drill_max_age and verify_max_age. --html FILE\n"
     "writes one self-contained page with the KPI table and charts of the RPO and RTO.\n"
     "Exits 3 when a KPI misses its target, 0 otherwise.\n"},
    {"rotate-key", cmd_rotate_key,
     "rotate-key --new-passphrase-file FILE | --data-key [--repo NAME]",
     "wrap the data keys under a new passphrase, or start a new data key",
     "--new-passphrase-file FILE (or $PGARK_NEW_PASSPHRASE): in every repository of the\n"
     "cluster (or --repo NAME), wraps every data key under the new passphrase with a\n"
     "fresh salt and replaces repo.json in one atomic write; no other object is\n"
     "rewritten. The configured passphrase must open the repository; one the new\n"
     "passphrase opens already is left alone, so a run that was interrupted is\n"
     "completed by running it again. Afterwards only the new passphrase opens it: put\n"
     "it in encryption.passphrase_file and reload the receivers (SIGHUP).\n"
     "--data-key: adds a new random data key to repo.json (wrapped under the configured\n"
     "passphrase, in one atomic write) and makes it current: every object written from\n"
     "then on is encrypted under it and names its id in its header, so a leaked data\n"
     "key stops protecting new data. Older objects keep the key they were written\n"
     "with; chunk names do not change, so backups still share unchanged chunks. A\n"
     "running receiver takes the new key when it is reloaded (SIGHUP); verify says how\n"
     "many objects each key protects, expire drops a key no object uses. A repository\n"
     "holding several keys has format 2, which older pgark versions refuse.\n"},
    {"completion", NULL, "completion bash|zsh",
     "print the shell completion script (commands, options, cluster names)",
     "bash: add 'source <(pgark completion bash)' to ~/.bashrc, or save the output as\n"
     "/etc/bash_completion.d/pgark. zsh: 'source <(pgark completion zsh)' in ~/.zshrc, or\n"
     "save it as _pgark in a directory of $fpath. Cluster names come from the\n"
     "configuration the command line names (--config), else the default one.\n"},
    {"notify", cmd_notify, "notify --test [--event NAME]",
     "send a sample event to every notify endpoint and show each answer",
     "Sends notify.test (or a sample of --event NAME, marked as a test) to every\n"
     "webhook of the configuration, subscribed to it or not, and prints each one's\n"
     "answer. URLs are secrets: endpoints are named by position and host. Exits 0\n"
     "when every endpoint answered 2xx, 1 otherwise.\n"},
    {"version", NULL, "version", "print the version", ""},
    {"help", NULL, "help [--man] [COMMAND]", "show help for pgark or for one command",
     "--man writes the whole help as a man page (roff), as installed for man pgark.\n"},
};

/* Built in here, not "not built yet" though they have no command_fn. */
static bool builtin(const char *name)
{
    return !strcmp(name, "version") || !strcmp(name, "help") || !strcmp(name, "completion");
}

static const char synopsis[] = "[--config FILE] [--cluster NAME] [--log-level LEVEL]\n"
                               "      [--log-format text|json] COMMAND [OPTIONS]";

static const struct helpdoc_option globals[] = {
    {"--config FILE", "configuration file (default: $PGARK_CONFIG, then\n/etc/pgark/pgark.yaml)",
     NULL},
    {"--cluster NAME", "cluster to act on (may be omitted with one cluster)", NULL},
    {"--log-level LEVEL", "error, warn, info (default), detail or debug",
     "error warn info detail debug"},
    {"--log-format FMT", "text (default) or json", "text json"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *command_find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* The help text as helpdoc wants it: the man page and the completion scripts are made
 * from it. Owned by the caller (free d->commands). */
static void help_doc(struct helpdoc *d)
{
    struct helpdoc_command *c = xcalloc(NCOMMANDS, sizeof(*c));
    for (size_t i = 0; i < NCOMMANDS; i++) {
        c[i].name = commands[i].name;
        c[i].usage = commands[i].usage;
        c[i].summary = commands[i].summary;
        c[i].help = commands[i].help;
    }
    d->version = PGARK_VERSION;
    d->synopsis = synopsis;
    d->commands = c;
    d->ncommands = NCOMMANDS;
    d->globals = globals;
    d->nglobals = sizeof(globals) / sizeof(globals[0]);
}

static void print_usage(FILE *out)
{
    struct helpdoc d;
    help_doc(&d);
    fprintf(out, "pgark %s — continuous archiving and point-in-time recovery for PostgreSQL\n\n",
            PGARK_VERSION);
    fprintf(out, "usage: pgark ");
    for (const char *p = synopsis; *p; p++) {
        fputc(*p, out);
        if (*p == '\n')
            fputs("       ", out);
    }
    fprintf(out, "\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                (commands[i].fn || builtin(commands[i].name)) ? "" : " (not built yet)");
    fprintf(out, "\nglobal options:\n");
    helpdoc_print_globals(&d, out);
    fprintf(out, "\nRun \"pgark help COMMAND\" for the options of one command.\n");
    free((void *)d.commands);
}

static int cmd_help(const char *topic)
{
    if (!topic) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(topic, "--man")) {
        struct helpdoc d;
        help_doc(&d);
        helpdoc_man(&d, stdout);
        free((void *)d.commands);
        return 0;
    }
    const struct command *c = command_find(topic);
    if (!c) {
        err_set(ERR_USAGE, "unknown command \"%s\"", topic);
        err_hint("run \"pgark help\" for the list of commands");
        return 2;
    }
    printf("usage: pgark %s\n\n%s\n%s", c->usage, c->summary, c->help);
    if (!c->fn && !builtin(c->name))
        printf("\nThis command is not built yet.\n");
    return 0;
}

/* pgark completion bash|zsh, and --clusters: the configured clusters' names, one a
 * line (what the scripts offer after --cluster). */
static int cmd_completion(struct cli_context *ctx, int argc, char **argv)
{
    if (argc != 2) {
        err_set(ERR_USAGE, "completion needs one argument: bash or zsh");
        err_hint("run \"pgark help completion\"");
        return 2;
    }
    if (!strcmp(argv[1], "--clusters")) {
        const struct config *cfg = cli_config(ctx);
        if (!cfg)
            return 2;
        for (size_t i = 0; i < cfg->nclusters; i++)
            printf("%s\n", cfg->clusters[i].name);
        return 0;
    }
    struct helpdoc d;
    help_doc(&d);
    int rc = helpdoc_completion(&d, argv[1], stdout) < 0 ? 2 : 0;
    free((void *)d.commands);
    return rc;
}

/* Match "--name VALUE" or "--name=VALUE"; advances *i past a separate value. */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return err_set(ERR_USAGE, "option \"%s\" needs a value", name);
    *value = argv[++*i];
    return 1;
}

static char *self_path(const char *argv0)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n > 0) {
        path[n] = '\0';
        return xstrdup(path);
    }
    return xstrdup(argv0);
}

/* After a one-shot command: its metrics textfile, when the configuration asks for one. A
 * failure to write it is warned about; it changes neither the exit code nor the error
 * the command left. */
static void write_metrics(struct cli_context *ctx, const char *command, int rc, int64_t duration_us)
{
    const struct config *cfg = cli_config_loaded();
    if (!cfg || !cfg->metrics_textfile || !cli_metrics_command(command))
        return;
    const char *cluster = ctx->cluster_name;
    if (!cluster && cfg->nclusters == 1)
        cluster = cfg->clusters[0].name;
    if (!cluster)
        return;
    struct cli_metrics_run run = {.end_us = time_now_us(),
                                  .duration_us = duration_us,
                                  .exit_code = rc != 0        ? rc
                                               : err_is_set() ? err_exit_code()
                                                              : 0,
                                  .bytes = ctx->metrics_bytes};
    struct err_saved *saved = err_save();
    if (cli_metrics_textfile_write(cfg->metrics_textfile, cluster, command, &run) < 0) {
        char *text = err_format();
        log_warn("metrics not written: %s", text);
        free(text);
        err_clear();
    }
    err_restore(saved);
}

/* Long: the global options one by one, then the built-in commands and the table lookup,
 * then the command's run and its metrics; every path ends at the one exit that prints the
 * error and chooses the exit code.
 */
int main(int argc, char **argv)
{
    struct cli_context ctx = {0};
    int rc = 2;
    int i = 1;
    const char *value = NULL;

    ctx.program = self_path(argv[0]);
    ctx.metrics_bytes = -1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        int m;
        if ((m = take_option(argc, argv, &i, "--config", &value)) != 0) {
            if (m < 0)
                goto out;
            ctx.config_path = value;
        } else if ((m = take_option(argc, argv, &i, "--cluster", &value)) != 0) {
            if (m < 0)
                goto out;
            ctx.cluster_name = value;
        } else if ((m = take_option(argc, argv, &i, "--log-level", &value)) != 0) {
            enum log_level level;
            if (m < 0 || log_level_parse(value, &level) < 0)
                goto out;
            log_set_level(level);
            ctx.log_level_set = true;
        } else if ((m = take_option(argc, argv, &i, "--log-format", &value)) != 0) {
            enum log_format format;
            if (m < 0 || log_format_parse(value, &format) < 0)
                goto out;
            log_set_format(format);
            ctx.log_format_set = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            rc = cmd_help(NULL);
            goto out;
        } else if (!strcmp(argv[i], "--version")) {
            printf("pgark %s\n", PGARK_VERSION);
            rc = 0;
            goto out;
        } else {
            err_set(ERR_USAGE, "unknown option \"%s\"", argv[i]);
            err_hint("run \"pgark help\" for the global options");
            goto out;
        }
    }
    if (i >= argc) {
        err_set(ERR_USAGE, "no command given");
        err_hint("run \"pgark help\" for the list of commands");
        goto out;
    }

    const char *name = argv[i];
    if (!strcmp(name, "version")) {
        printf("pgark %s\n", PGARK_VERSION);
        rc = 0;
        goto out;
    }
    if (!strcmp(name, "help")) {
        rc = cmd_help(i + 1 < argc ? argv[i + 1] : NULL);
        goto out;
    }
    if (!strcmp(name, "completion")) {
        rc = cmd_completion(&ctx, argc - i, argv + i);
        goto out;
    }
    const struct command *c = command_find(name);
    if (!c) {
        err_set(ERR_USAGE, "unknown command \"%s\"", name);
        err_hint("run \"pgark help\" for the list of commands");
        goto out;
    }
    if (!c->fn) {
        err_set(ERR_RUNTIME, "command \"%s\" is not built yet", name);
        rc = 1;
        goto out;
    }
    /* PostgreSQL runs these once per WAL segment: a warning about the configuration
     * would fill its log, once a segment. */
    ctx.config_warn_level = c->fn == cmd_wal_fetch || c->fn == cmd_wal_push ? LOG_DETAIL : LOG_WARN;
    int64_t started = time_mono_us();
    rc = c->fn(&ctx, argc - i, argv + i);
    write_metrics(&ctx, ctx.metrics_as ? ctx.metrics_as : c->name, rc, time_mono_us() - started);

out:
    if (err_is_set()) {
        if (rc == 0)
            rc = err_exit_code();
        err_print();
    }
    cli_config_free();
    free((char *)ctx.program);
    return rc;
}
