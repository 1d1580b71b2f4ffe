/*
 * drill_restore.c — a drill's restore: `pgark restore --json` run as a program into the
 * scratch directory (drill_server.c says why a program and where each tablespace goes),
 * its output and its log taken apart for the drill's record. Moved out of
 * drill_server.c.
 */
#include "drill_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"
#include "pgark/procenv.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- running pgark restore ---------------------------------------------------------------- */

/* Run argv to its end, its stdout and stderr into *out and *err (caller frees). The exit
 * status, or -1 when it could not run or died of a signal. */
static int run_program(char *const argv[], char **out, char **err)
{
    int po[2], pe[2];
    *out = *err = NULL;
    if (pipe2(po, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    struct buf b[2] = {BUF_INIT, BUF_INIT};
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[8192];
            ssize_t n = read(fds[i].fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            if (b[i].len < (1u << 20))
                buf_append(&b[i], chunk, (size_t)n);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf_append(&b[0], "", 0);
    buf_append(&b[1], "", 0);
    *out = buf_steal(&b[0]);
    *err = buf_steal(&b[1]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* restore's log lines (--log-format json): its error (and hint) are kept, its warnings
 * passed on as warnings, the rest at detail level. */
static void take_restore_log(const char *text, char **error, char **hint)
{
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\n");
        char *line = xstrndup(p, len);
        json_t *o = json_loads(line, 0, NULL);
        const char *level = json_string_value(json_object_get(o, "level"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        if (!o || !level || !msg) {
            if (len)
                log_detail("restore: %s", line);
        } else if (!strcmp(level, "error")) {
            if (!strncmp(msg, "hint: ", 6)) {
                if (!*hint)
                    *hint = xstrdup(msg + 6);
            } else if (!*error) {
                /* context lines ("\n  while ...") joined on one line */
                struct buf b = BUF_INIT;
                for (const char *m = msg; *m; m++) {
                    if (*m == '\n') {
                        buf_append_str(&b, "; ");
                        while (m[1] == ' ')
                            m++;
                    } else {
                        buf_append(&b, m, 1);
                    }
                }
                buf_append(&b, "", 0);
                *error = buf_steal(&b);
            }
        } else if (!strcmp(level, "warn")) {
            log_warn("restore: %s", msg);
        } else {
            log_detail("restore: %s", msg);
        }
        json_decref(o);
        free(line);
        p += len;
        if (*p == '\n')
            p++;
    }
}

int drill_restore(struct drill *d)
{
    char *argv[40];
    int n = 0;
    char tbuf[64];
    argv[n++] = (char *)d->ctx->program;
    argv[n++] = "--config";
    argv[n++] = d->cfg->path;
    argv[n++] = "--cluster";
    argv[n++] = d->cl->name;
    argv[n++] = "--log-format";
    argv[n++] = "json";
    argv[n++] = "--log-level";
    argv[n++] = (char *)log_level_name(log_get_level() > LOG_INFO ? log_get_level() : LOG_INFO);
    argv[n++] = "restore";
    argv[n++] = "--pgdata";
    argv[n++] = d->pgdata;
    argv[n++] = "--tablespace-dir";
    argv[n++] = d->ts_root;
    argv[n++] = "--repo";
    argv[n++] = d->conf->name;
    if (d->backup) {
        argv[n++] = "--backup";
        argv[n++] = d->backup;
    }
    if (d->a->target == DRILL_TARGET_TIME || d->target_random) {
        argv[n++] = "--target-time";
        argv[n++] = time_format_pg(d->target_us, tbuf, sizeof(tbuf));
        argv[n++] = "--target-action";
        argv[n++] = "promote";
    }
    argv[n++] = "--json";
    argv[n++] = "--no-progress";
    argv[n] = NULL;

    int64_t t0 = time_mono_us();
    char *out = NULL, *errtext = NULL, *error = NULL, *hint = NULL;
    int st = run_program(argv, &out, &errtext);
    int64_t ms = (time_mono_us() - t0) / 1000;
    take_restore_log(errtext, &error, &hint);
    json_t *o = st == 0 ? json_loads(out, 0, NULL) : NULL;
    int rc = 0;
    if (st == 0 && json_is_object(o)) {
        free(d->backup);
        d->backup = xstrdup(json_string_value(json_object_get(o, "backup")));
        json_int_t choose = json_integer_value(json_object_get(o, "choose_ms"));
        json_int_t files = json_integer_value(json_object_get(o, "files_ms"));
        if (choose + files > ms || choose < 0 || files < 0)
            choose = 0, files = ms; /* an older restore's output: all of it as files */
        /* Starting the program and loading the configuration count as choosing. */
        d->phase_ms[DRILL_PHASE_CHOOSE] = ms - files;
        d->phase_ms[DRILL_PHASE_FILES] = files;
        char size[32];
        drill_check_add(d, "restore", DRILL_OK, ms,
                        "backup \"%s\" restored from repository \"%s\": %lld files, %s", d->backup,
                        d->conf->name, (long long)json_integer_value(json_object_get(o, "files")),
                        size_format((uint64_t)json_integer_value(json_object_get(o, "bytes")), size,
                                    sizeof(size)));
    } else {
        int exit = st == 3 ? 3 : st == 2 ? 2 : 1;
        const char *why = error     ? error
                          : st == 0 ? "its --json output could not be read"
                          : st < 0  ? "it could not run, or was killed"
                                    : "it failed without saying why";
        drill_check_add(d, "restore", exit == 3 ? DRILL_FAILED : DRILL_ERROR, ms, "%s", why);
        drill_fail(d, exit, "restore from repository \"%s\" failed (exit %d): %s", d->conf->name,
                   st, why);
        if (hint && !d->hint)
            d->hint = xstrdup(hint);
        d->phase_ms[DRILL_PHASE_FILES] = ms;
        rc = -1;
    }
    json_decref(o);
    free(out);
    free(errtext);
    free(error);
    free(hint);
    return rc;
}
