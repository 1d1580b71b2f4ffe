/*
 * pgbin.c — which PostgreSQL programs `restore --start` and `drill` run, how they run,
 * and the state in a data directory's control file.
 *
 * A backup can only be started by the server of its own major: another major's
 * postgres refuses the data directory, but only after the restore has written it all.
 * So the programs are found, and pg_ctl's major checked, before the first write. They
 * come from clusters.NAME.pg_bindir when it is set, else from the usual places of the
 * backup's major (Debian's /usr/lib/postgresql/MAJOR/bin, the PGDG RPMs'
 * /usr/pgsql-MAJOR/bin), else from PATH. psql, which only follows recovery, may be of
 * any major: the one beside pg_ctl, else PATH's.
 *
 * The control file is read directly rather than through pg_controldata, which not
 * every installation has (the server packages of some distributions and the
 * embedded bundles leave it out): its state field sits at the same offset in every
 * supported major, and its CRC-32C tells a torn or foreign file.
 */
#include "pgark/pgbin.h"

#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/procenv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* name found in a directory of PATH, or NULL. */
static char *in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    while (*path) {
        size_t n = strcspn(path, ":");
        char *cand = xasprintf("%.*s/%s", (int)n, n ? path : ".", name);
        if (executable(cand))
            return cand;
        free(cand);
        path += n;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* The first line `prog --version` prints, or NULL when it did not run. */
static char *version_line(const char *prog)
{
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return NULL;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 2);
        }
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(prog, prog, "--version", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char line[256];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(line) - 1 &&
           (n = read(pipefd[0], line + len, sizeof(line) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return NULL;
    line[len] = '\0';
    line[strcspn(line, "\n")] = '\0';
    return xstrdup(line);
}

/* "pg_ctl (PostgreSQL) 18.4" -> 18, "... 9.6.24" -> 9; 0 when it does not say. */
static int major_of(const char *line, char *version, size_t size)
{
    const char *p = strstr(line, "(PostgreSQL) ");
    if (!p)
        return 0;
    p += strlen("(PostgreSQL) ");
    snprintf(version, size, "%.*s", (int)strcspn(p, " "), p);
    return atoi(p);
}

int pgbin_find(const char *bindir, const char *cluster, int major, const char *who,
               struct pgbin *out)
{
    memset(out, 0, sizeof(*out));
    if (bindir) {
        out->pg_ctl = xasprintf("%s/pg_ctl", bindir);
        if (!executable(out->pg_ctl)) {
            err_set(ERR_CONFIG, "pg_bindir \"%s\" of cluster \"%s\" has no pg_ctl", bindir,
                    cluster);
            goto fail;
        }
    } else {
        const char *layouts[] = {"/usr/lib/postgresql/%d/bin", "/usr/pgsql-%d/bin"};
        for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]) && !out->pg_ctl; i++) {
            char dir[64];
            snprintf(dir, sizeof(dir), layouts[i], major);
            char *cand = xasprintf("%s/pg_ctl", dir);
            if (executable(cand))
                out->pg_ctl = cand;
            else
                free(cand);
        }
        if (!out->pg_ctl)
            out->pg_ctl = in_path("pg_ctl");
        if (!out->pg_ctl) {
            err_set(ERR_CONFIG,
                    "%s needs PostgreSQL %d's pg_ctl, and there is none in "
                    "/usr/lib/postgresql/%d/bin, /usr/pgsql-%d/bin or PATH",
                    who, major, major, major);
            err_hint("set pg_bindir of cluster \"%s\" to the bin directory of PostgreSQL %d; "
                     "nothing was written",
                     cluster, major);
            goto fail;
        }
    }
    char *line = version_line(out->pg_ctl);
    out->major = line ? major_of(line, out->version, sizeof(out->version)) : 0;
    free(line);
    if (out->major != major) {
        if (out->major)
            err_set(ERR_CONFIG, "%s would run PostgreSQL %s (\"%s\") on a backup of PostgreSQL %d",
                    who, out->version, out->pg_ctl, major);
        else
            err_set(ERR_CONFIG, "\"%s --version\" does not say which PostgreSQL it is",
                    out->pg_ctl);
        err_hint("set pg_bindir of cluster \"%s\" to the bin directory of PostgreSQL %d%s; "
                 "nothing was written",
                 cluster, major,
                 strcmp(who, "restore --start") ? "" : ", or restore without --start");
        goto fail;
    }
    /* psql only asks how recovery goes: any major will do. pg_checksums must be of the
     * cluster's major: only the one beside pg_ctl. */
    char *dir = xstrndup(out->pg_ctl, (size_t)(strrchr(out->pg_ctl, '/') - out->pg_ctl));
    out->psql = xasprintf("%s/psql", dir);
    out->pg_checksums = xasprintf("%s/pg_checksums", dir);
    free(dir);
    if (!executable(out->pg_checksums)) {
        free(out->pg_checksums);
        out->pg_checksums = NULL;
    }
    if (!executable(out->psql)) {
        free(out->psql);
        out->psql = in_path("psql");
    }
    if (!out->psql) {
        err_set(ERR_CONFIG, "%s needs psql, and there is none beside \"%s\" or in PATH",
                strcmp(who, "restore --start") ? who : "restore --start --wait", out->pg_ctl);
        goto fail;
    }
    return 0;
fail:
    pgbin_free(out);
    return err_code();
}

void pgbin_free(struct pgbin *b)
{
    if (!b)
        return;
    free(b->pg_ctl);
    free(b->psql);
    free(b->pg_checksums);
    b->pg_ctl = b->psql = b->pg_checksums = NULL;
}

/* ControlFileData: the state (DBState) follows system_identifier, pg_control_version and
 * catalog_version_no in every major; the CRC-32C of everything before it ends the
 * struct, whose layout changed in 18. */
#define CONTROL_FILE_SIZE 8192
#define CONTROL_VERSION_OFF 8
#define CONTROL_STATE_OFF 16

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

char *pgbin_control_state(const char *pgdata)
{
    static const char *const states[] = {
        "starting up",       "shut down",           "shut down in recovery", "shutting down",
        "in crash recovery", "in archive recovery", "in production",
    };
    uint8_t buf[CONTROL_FILE_SIZE];
    char *path = xasprintf("%s/global/pg_control", pgdata);
    int fd = open(path, O_RDONLY);
    free(path);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 512)
        return NULL;
    uint32_t version = le32(buf + CONTROL_VERSION_OFF);
    size_t crc_off;
    if (version == 1300 || version == 1700) /* 13 to 16, 17 */
        crc_off = 288;
    else if (version == 1800)
        crc_off = 292;
    else
        return NULL;
    uint32_t crc = crc32c_final(crc32c_update(CRC32C_INIT, buf, crc_off));
    if (crc != le32(buf + crc_off))
        return NULL;
    uint32_t state = le32(buf + CONTROL_STATE_OFF);
    if (state >= sizeof(states) / sizeof(states[0]))
        return NULL;
    return xstrdup(states[state]);
}

char **pgbin_server_environ(const char *const *env_drop)
{
    static const char *const set[] = {"LC_ALL=C", NULL};
    return procenv_clean(environ, env_drop, set);
}

int pgbin_run(char *const argv[], char *const envp[], char **out, enum pgbin_stderr err)
{
    int pipefd[2];
    if (out)
        *out = NULL;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        if (err == PGBIN_STDERR_CAPTURE) {
            dup2(pipefd[1], 2);
        } else if (err == PGBIN_STDERR_NULL) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0)
                dup2(devnull, 2);
        }
        if (envp) {
            /* Looked up in our PATH, run with envp alone. */
            execvpe(argv[0], argv, envp);
            _exit(127);
        }
        setenv("LC_ALL", "C", 1);
        setenv("PGCONNECT_TIMEOUT", "5", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    struct buf b = BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(pipefd[0], chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (b.len < 65536)
            buf_append(&b, chunk, (size_t)n);
    }
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (out)
        *out = buf_steal(&b);
    else
        buf_free(&b);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
