/*
 * confput.c — configuration backups, the restoring side (include/pgark/confsnap.h):
 * the files of a record written out beneath a directory, at their absolute paths below
 * it, never over the originals: /etc is the DBA's to replace.
 */
#include "pgark/confsnap.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p of path's parent directories below (and with) root, mode 0700. */
static int make_parents(const char *path)
{
    char *copy = xstrdup(path);
    int rc = 0;
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) < 0 && errno != EEXIST) {
            rc = err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", copy);
            break;
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

static int write_whole(const char *path, const void *data, size_t len)
{
    int rc = 0;
    char *tmp = xasprintf("%s.pgark-tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        rc = err_set_errno(ERR_IO, errno, "could not create \"%s\"", tmp);
    const uint8_t *p = data;
    while (rc == 0 && len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        else {
            p += n;
            len -= (size_t)n;
        }
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not fsync \"%s\"", tmp);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_set_errno(ERR_IO, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
    if (rc < 0 && fd >= 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* Check every entry of files before the first is written: path, hex, digest. */
static int check_entry(json_t *f, uint8_t **data, size_t *len)
{
    const char *path = json_string_value(json_object_get(f, "path"));
    const char *hex = json_string_value(json_object_get(f, "data_hex"));
    const char *sha = json_string_value(json_object_get(f, "sha256"));
    uint8_t want[SHA256_LEN], got[SHA256_LEN];
    const char *why = NULL;

    *data = NULL;
    if (!path || !hex || !sha)
        return err_set(ERR_INTEGRITY, "a file of the configuration backup lacks its path, "
                                      "content or digest");
    if (path[0] != '/' || (why = manifest_path_problem(path + 1)) != NULL)
        return err_set(ERR_INTEGRITY, "configuration backup names the file \"%s\", which %s", path,
                       why ? why : "is not an absolute path");
    *len = strlen(hex) / 2;
    *data = xmalloc(*len + 1);
    if (hex_decode(hex, *data, *len) < 0 || hex_decode(sha, want, sizeof(want)) < 0) {
        err_clear();
        return err_set(ERR_INTEGRITY, "configuration backup of \"%s\" is not valid hex", path);
    }
    sha256(*data, *len, got);
    if (memcmp(want, got, sizeof(got)) != 0)
        return err_set(ERR_INTEGRITY, "configuration backup of \"%s\" does not match its SHA-256",
                       path);
    return 0;
}

int confsnap_write_tree(const char *text, const char *dir, const char *origin, bool flat,
                        size_t *nfiles)
{
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    json_t *files = o ? json_object_get(o, "files") : NULL;
    struct buf notes = BUF_INIT;
    int rc = 0;

    *nfiles = 0;
    if (!json_is_array(files)) {
        rc = err_set(ERR_INTEGRITY, "the configuration backup is not valid: %s",
                     o ? "no list of files" : jerr.text);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(files); i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        rc = check_entry(json_array_get(files, i), &data, &len);
        free(data);
        if (rc < 0)
            goto out;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = err_set_errno(ERR_IO, errno, "could not create directory \"%s\"", dir);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        uint8_t *data = NULL;
        size_t len = 0;
        if ((rc = check_entry(f, &data, &len)) == 0) {
            const char *path = json_string_value(json_object_get(f, "path"));
            const char *base = strrchr(path, '/') + 1;
            /* Beside the data, flat and short: the directory goes into every later
             * backup of the restored server, and BASE_BACKUP's tar takes names of at
             * most 99 bytes (a restored server's next backup failed on a deep path). */
            char *full =
                flat ? xasprintf("%s/%02zu-%s", dir, i + 1, base) : xasprintf("%s%s", dir, path);
            if ((rc = make_parents(full)) == 0)
                rc = write_whole(full, data, len);
            if (flat)
                buf_appendf(&notes, "%02zu-%s\t%s\t(%s)\n", i + 1, base, path,
                            json_string_value(json_object_get(f, "source")) ?: "?");
            free(full);
        }
        free(data);
        if (rc < 0)
            goto out;
        (*nfiles)++;
    }
    if (flat) {
        struct buf b = BUF_INIT;
        json_t *w = json_object_get(o, "warnings");
        buf_appendf(&b,
                    "Configuration restored by pgark from %s (taken %s).\n"
                    "Each file here, then the path it had. Nothing outside this directory was "
                    "changed:\ncopy what you need into place yourself (pgark restore "
                    "--config-only --dest DIR\nlays them out at their paths). pgark's own "
                    "configuration has its secrets replaced\nby <redacted>.\n\n%s",
                    origin, json_string_value(json_object_get(o, "time")) ?: "?",
                    notes.data ? (const char *)notes.data : "");
        for (size_t i = 0; i < json_array_size(w); i++)
            buf_appendf(&b, "%swarning when taken: %s\n", i ? "" : "\n",
                        json_string_value(json_array_get(w, i)) ?: "?");
        char *path = xasprintf("%s/README", dir);
        rc = write_whole(path, b.data, b.len);
        free(path);
        buf_free(&b);
    }
out:
    buf_free(&notes);
    json_decref(o);
    return rc;
}
