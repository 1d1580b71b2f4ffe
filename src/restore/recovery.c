/*
 * recovery.c — the small files restore leaves in the data directory after the data: the
 * server's backup_manifest, postgresql.auto.conf with the recovery settings,
 * recovery.signal (and no standby.signal), each replaced atomically and never written
 * through a symlink.
 */
#include "restore_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* name in the data directory (open as dfd, shown as dir), replaced atomically: written
 * under a temporary name made O_EXCL | O_NOFOLLOW (a stale one, whatever it is, is
 * removed first, not followed), fsynced, renamed over name (which replaces a symlink
 * there, never writes through it). */
static int write_file_atomic(int dfd, const char *dir, const char *name, const void *data,
                             size_t len)
{
    char *tmp = xasprintf(".%s.pgark-tmp", name);
    char *shown = xasprintf("%s/%s", dir, tmp);
    int rc = confine_remove(dfd, tmp, shown, NULL);
    int fd = -1;
    if (rc < 0)
        goto out;
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not create \"%s\"", shown);
        goto out;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", shown);
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", shown);
    close(fd);
    if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\" to \"%s/%s\"", shown, dir, name);
    if (rc < 0)
        unlinkat(dfd, tmp, 0);
out:
    free(shown);
    free(tmp);
    return rc;
}

/* The server's own backup_manifest, so pg_verifybackup runs on the directory as it is. */
static int put_backup_manifest(struct repo *r, const char *label, int dfd, const char *pgdata)
{
    char path[128];
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "backups/%s/backup_manifest", label);
    int rc = repo_get_all(r, path, &data, &len);
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND) {
            err_clear();
            log_warn("backup \"%s\" has no backup_manifest in repository \"%s\": "
                     "pg_verifybackup will not run on the restored directory",
                     label, repo_name(r));
            return 0;
        }
        return err_context("while fetching the backup_manifest of backup \"%s\"", label);
    }
    rc = write_file_atomic(dfd, pgdata, "backup_manifest", data, len);
    free(data);
    return rc;
}

/* postgresql.auto.conf with the recovery settings of an earlier restore (they come
 * with a backup of a cluster that was restored once) commented out, and ours after. */
static int write_auto_conf(int dfd, const char *pgdata, const char *conf)
{
    char *path = xasprintf("%s/postgresql.auto.conf", pgdata);
    struct buf old = BUF_INIT;
    char *text = NULL;
    int rc = 0;
    int fd = openat(dfd, "postgresql.auto.conf", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) {
        rc = err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
        goto out;
    }
    while (fd >= 0) {
        char chunk[8192];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno, "could not read \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        buf_append(&old, chunk, (size_t)n);
    }
    text = restore_conf_strip(old.data ? (const char *)old.data : "", old.len);
    buf_reset(&old);
    buf_append_str(&old, text);
    buf_append_str(&old, conf);
    rc = write_file_atomic(dfd, pgdata, "postgresql.auto.conf", old.data, old.len);
out:
    if (fd >= 0)
        close(fd);
    free(text);
    buf_free(&old);
    free(path);
    return rc;
}

/* backup_manifest, postgresql.auto.conf, recovery.signal (and no standby.signal), in
 * the data directory opened once: none of it through a symlink. */
int restore_write_recovery(const struct restore_args *a, struct repo *r, const char *label,
                           const char *program, const char *config_path, const char *cluster)
{
    char *cmd = restore_command_text(program, config_path, cluster, a->repo);
    char *conf = restore_recovery_conf(&a->target, cmd);
    char *standby = xasprintf("%s/standby.signal", a->pgdata);
    int rc = 0;
    int dfd = open(a->pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not open data directory \"%s\"", a->pgdata);
        goto out;
    }
    rc = put_backup_manifest(r, label, dfd, a->pgdata);
    if (rc == 0)
        rc = write_auto_conf(dfd, a->pgdata, conf);
    if (rc == 0 && unlinkat(dfd, "standby.signal", 0) < 0 && errno != ENOENT)
        rc = err_set_errno(ERR_IO, errno, "could not remove \"%s\"", standby);
    if (rc == 0)
        rc = write_file_atomic(dfd, a->pgdata, "recovery.signal", "", 0);
    if (rc == 0 && fsync(dfd) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not fsync directory \"%s\"", a->pgdata);
out:
    if (dfd >= 0)
        close(dfd);
    free(standby);
    free(conf);
    free(cmd);
    return rc;
}
