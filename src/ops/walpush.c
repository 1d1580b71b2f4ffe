/*
 * walpush.c — `pgark wal-push PATH`: the archive_command helper (%p), for servers
 * that cannot be streamed from.
 *
 * PostgreSQL calls it once per file, from the data directory, and takes exit 0 as
 * "archived": so it is 0 only when every repository of the cluster holds the file.
 * A segment names its own identity: the long header of its first page carries the
 * system identifier and segment size, and the page magic the major version, so the
 * first push can create repo.json and every push is checked against it.
 */
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/pgmajor.h"
#include "pgark/repo.h"
#include "pgark/walpage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Identity from a segment's first page (long header). */
static int segment_identity(int fd, const char *path, struct repo_identity *id)
{
    uint8_t h[40];
    if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
        return err_set(ERR_IO, "could not read the page header of \"%s\"", path);
    uint16_t magic = (uint16_t)(h[0] | h[1] << 8);
    uint16_t info = (uint16_t)(h[2] | h[3] << 8);
    id->pg_major = 0;
    for (int major = PG_MAJOR_MIN; major <= PG_MAJOR_MAX; major++) {
        if (walpage_magic_for_major(major) == magic)
            id->pg_major = major;
    }
    if (!id->pg_major || !(info & 0x0002))
        return err_set(ERR_INTEGRITY, "\"%s\" is not a WAL segment of PostgreSQL %d to %d", path,
                       PG_MAJOR_MIN, PG_MAJOR_MAX);
    id->system_identifier = (uint64_t)le32(h + 24) | (uint64_t)le32(h + 28) << 32;
    id->seg_size = le32(h + 32);
    return 0;
}

/* A segment or partial copy, then the timeline's high-water mark: PostgreSQL hears of
 * success only once the mark covers what was archived, as it does from the receiver. */
static int push_segment(struct repo *r, const char *name, int fd, uint64_t size)
{
    char base[WAL_NAME_BUFLEN];
    timeline_t tli;
    uint64_t segno;
    bool partial = wal_is_partial_name(name);
    snprintf(base, sizeof(base), "%.24s", name);
    int rc = wal_segment_parse(base, repo_identity(r)->seg_size, &tli, &segno);
    if (rc == 0)
        rc = partial ? repo_wal_push_partial_fd(r, base, fd, size)
                     : repo_wal_push_fd(r, base, fd, size);
    if (rc == 0)
        rc = repo_wal_hwm_advance(r, "wal-push", tli, segno, partial, size);
    return rc;
}

static int push_one(struct repo *r, const char *name, int fd, uint64_t size)
{
    if (wal_is_segment_name(name) || wal_is_partial_name(name))
        return push_segment(r, name, fd, size);
    /* history file */
    char *data = xmalloc(size + 1);
    int rc = 0;
    if (pread(fd, data, size, 0) != (ssize_t)size)
        rc = err_set_errno(ERR_IO, errno, "could not read \"%s\"", name);
    else
        rc = repo_wal_push_history(r, (timeline_t)strtoul(name, NULL, 16), data, size);
    free(data);
    return rc;
}

int cmd_wal_push(struct cli_context *ctx, int argc, char **argv)
{
    int rc = 0, fd = -1;
    if (argc != 2) {
        err_set(ERR_USAGE, "wal-push takes one argument, the path of the WAL file (%%p)");
        err_hint("archive_command = 'pgark wal-push %%p'");
        return 2;
    }
    const char *path = argv[1];
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    bool segment = wal_is_segment_name(name) || wal_is_partial_name(name);
    if (!segment && !wal_is_history_name(name)) {
        /* Backup history files (.backup) are informational; PostgreSQL only needs them
         * to be "archived". pgark's backups do not use them. */
        if (strstr(name, ".backup")) {
            log_detail("ignoring backup history file \"%s\"", name);
            return 0;
        }
        err_set(ERR_USAGE, "\"%s\" is not a WAL segment, partial segment or history file", path);
        return 2;
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
        rc = 1;
        goto out;
    }
    struct repo_identity id = {0}, *expect = NULL;
    if (segment) {
        if (segment_identity(fd, path, &id) < 0) {
            rc = err_exit_code();
            goto out;
        }
        expect = &id;
    }
    for (size_t i = 0; i < cl->nrepos && rc == 0; i++) {
        const struct config_repo *cr = config_cluster_repo(cfg, cl, i);
        struct cli_repo opened;
        if (cli_repo_open(cfg, cl, cr, CLI_REPO_ARCHIVE, expect, &opened) < 0 ||
            push_one(opened.repo, name, fd, (uint64_t)st.st_size) < 0) {
            err_context("while archiving \"%s\" to repository \"%s\"", name, cr->name);
            rc = 1;
        }
        cli_repo_close(&opened);
    }
    if (rc == 0)
        log_detail("archived %s", name);
out:
    if (fd >= 0)
        close(fd);
    return rc;
}
