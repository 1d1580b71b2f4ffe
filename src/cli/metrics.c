/*
 * metrics.c — what a one-shot command (backup, verify, drill, expire) leaves for
 * Prometheus: a file in node-exporter's textfile collector directory (metrics_textfile),
 * one per cluster and command, pgark_<cluster>_<command>.prom.
 *
 * One file each, rather than one file all commands rewrite, so that a backup and a
 * verify ending at the same moment never lose each other's lines, and no lock is
 * needed: each writes a temporary file beside its own and renames it over (node-exporter
 * skips names not ending in .prom, and never sees half a file). The time of the last
 * success is carried over from the file a failure replaces, so that an alert on its age
 * keeps counting through failures.
 */
#include "pgark/cli.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The commands that write one, and what their byte figure is (NULL: none). */
static const struct {
    const char *command;
    const char *bytes_name; /* after "pgark_<command>_last_" */
    const char *bytes_help;
} textfile_commands[] = {
    {"backup", "size_bytes", "Size of the database the last backup read (before dedup)."},
    {"verify", "read_bytes", "Bytes of stored objects the last verify read."},
    {"drill", NULL, NULL},
    {"expire", NULL, NULL},
    {"config_backup", NULL, NULL}, /* backup --config-only */
};

static int command_index(const char *command)
{
    for (size_t i = 0; i < sizeof(textfile_commands) / sizeof(textfile_commands[0]); i++) {
        if (strcmp(textfile_commands[i].command, command) == 0)
            return (int)i;
    }
    return -1;
}

bool cli_metrics_command(const char *command)
{
    return command_index(command) >= 0;
}

/* The last success time (seconds) the old file gives, 0 when none. */
static double old_success(const char *path, const char *name)
{
    double value = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, name, n) == 0 && line[n] == '{') {
            const char *close = strchr(line + n, '}');
            if (close)
                value = strtod(close + 1, NULL);
        }
    }
    fclose(f);
    return value;
}

static void gauge(struct buf *b, const char *command, const char *metric, const char *help,
                  const char *cluster, const char *value)
{
    buf_appendf(b, "# HELP pgark_%s_%s %s\n# TYPE pgark_%s_%s gauge\n", command, metric, help,
                command, metric);
    buf_appendf(b, "pgark_%s_%s{cluster=\"%s\"} %s\n", command, metric, cluster, value);
}

int cli_metrics_textfile_write(const char *dir, const char *cluster, const char *command,
                               const struct cli_metrics_run *run)
{
    int rc = 0, idx = command_index(command);
    char *path = xasprintf("%s/pgark_%s_%s.prom", dir, cluster, command);
    char *tmp = xasprintf("%s/.pgark_%s_%s.prom.%d", dir, cluster, command, (int)getpid());
    char *success_name = xasprintf("pgark_%s_last_success_timestamp_seconds", command);
    struct buf b = BUF_INIT;
    char value[64];
    int fd = -1;

    if (idx < 0) {
        rc = err_set(ERR_RUNTIME, "no metrics for command \"%s\"", command);
        goto out;
    }
    double end = (double)run->end_us / 1e6;
    double success = run->exit_code == 0 ? end : old_success(path, success_name);
    snprintf(value, sizeof(value), "%.3f", end);
    gauge(&b, command, "last_run_timestamp_seconds", "When the last run ended.", cluster, value);
    if (success > 0) {
        snprintf(value, sizeof(value), "%.3f", success);
        gauge(&b, command, "last_success_timestamp_seconds", "When the last successful run ended.",
              cluster, value);
    }
    snprintf(value, sizeof(value), "%.3f", (double)run->duration_us / 1e6);
    gauge(&b, command, "last_duration_seconds", "How long the last run took.", cluster, value);
    snprintf(value, sizeof(value), "%d", run->exit_code == 0);
    gauge(&b, command, "last_success", "1 when the last run succeeded, 0 when it failed.", cluster,
          value);
    snprintf(value, sizeof(value), "%d", run->exit_code);
    gauge(&b, command, "last_exit_code",
          "Exit code of the last run (0 success, 3 a problem found).", cluster, value);
    if (textfile_commands[idx].bytes_name && run->bytes >= 0) {
        char metric[64];
        snprintf(metric, sizeof(metric), "last_%s", textfile_commands[idx].bytes_name);
        snprintf(value, sizeof(value), "%lld", (long long)run->bytes);
        gauge(&b, command, metric, textfile_commands[idx].bytes_help, cluster, value);
    }

    /* 0644: node-exporter runs as a user of its own. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        goto out;
    }
    fchmod(fd, 0644);
    for (size_t off = 0; off < b.len;) {
        ssize_t n = write(fd, b.data + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
            goto out;
        }
        off += (size_t)n;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    buf_free(&b);
    free(success_name);
    free(tmp);
    free(path);
    return rc;
}
