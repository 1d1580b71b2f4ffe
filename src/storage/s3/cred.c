/* cred.c — S3 credentials that follow their files (see cred_int.h). */
#include "cred_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void wipe(char **p)
{
    if (*p) {
        secure_free(*p, strlen(*p));
        *p = NULL;
    }
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void s3_cred_init(struct s3_cred *c, const char *name, const char *const value[S3_CRED_PARTS],
                  const char *const file[S3_CRED_PARTS], int64_t interval_ms)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->name = xstrdup(name ? name : "");
    for (int i = 0; i < S3_CRED_PARTS; i++) {
        c->value[i] = value[i] && *value[i] ? xstrdup(value[i]) : NULL;
        c->file[i] = file && file[i] ? xstrdup(file[i]) : NULL;
        if (c->value[i])
            log_add_secret(c->value[i]);
    }
    c->generation = 1;
    c->interval_ms = interval_ms > 0 ? interval_ms : S3_CRED_DEFAULT_INTERVAL_MS;
}

void s3_cred_release(struct s3_cred *c)
{
    if (!c->name)
        return;
    for (int i = 0; i < S3_CRED_PARTS; i++) {
        wipe(&c->value[i]);
        free(c->file[i]);
    }
    free(c->name);
    free(c->said);
    pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof(*c));
}

static void stamp_of(const struct stat *st, struct s3_cred_stamp *out)
{
    *out = (struct s3_cred_stamp){
        .known = true,
        .dev = st->st_dev,
        .ino = st->st_ino,
        .size = st->st_size,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
        .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
    };
}

static bool stamp_equal(const struct s3_cred_stamp *a, const struct s3_cred_stamp *b)
{
    return a->known && b->known && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

/* Read one credential file into *out (owned, secret), with the stamp of what was read.
 * A file whose size or mtime moved while it was read is being written: ERR_TRANSIENT,
 * to be read again at the next look. */
static int read_one(const struct s3_cred *c, const char *path, char **out,
                    struct s3_cred_stamp *stamp)
{
    int fd = -1, rc = 0;
    char *data = NULL;
    size_t len = 0;
    struct stat before, after;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &before) < 0) {
        rc =
            err_set_errno(ERR_IO, errno, "repository \"%s\": cannot read S3 credential file \"%s\"",
                          c->name, path);
        goto out;
    }
    data = xmalloc(S3_CRED_FILE_MAX + 2);
    for (;;) {
        ssize_t n = read(fd, data + len, S3_CRED_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set_errno(ERR_IO, errno,
                               "repository \"%s\": cannot read S3 credential file \"%s\"", c->name,
                               path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > S3_CRED_FILE_MAX) {
            rc = err_set(ERR_CONFIG,
                         "repository \"%s\": S3 credential file \"%s\" is larger than %d bytes",
                         c->name, path, S3_CRED_FILE_MAX);
            goto out;
        }
    }
    if (fstat(fd, &after) < 0) {
        rc =
            err_set_errno(ERR_IO, errno, "repository \"%s\": cannot read S3 credential file \"%s\"",
                          c->name, path);
        goto out;
    }
    struct s3_cred_stamp sb, sa;
    stamp_of(&before, &sb);
    stamp_of(&after, &sa);
    if (!stamp_equal(&sb, &sa) || (off_t)len != after.st_size) {
        rc = err_set(ERR_TRANSIENT,
                     "repository \"%s\": S3 credential file \"%s\" changed while it was read",
                     c->name, path);
        goto out;
    }
    data[len] = '\0';
    if (len > 0 && data[len - 1] == '\n')
        data[--len] = '\0';
    if (len > 0 && data[len - 1] == '\r')
        data[--len] = '\0';
    if (len == 0) {
        rc = err_set(ERR_CONFIG, "repository \"%s\": S3 credential file \"%s\" is empty", c->name,
                     path);
        goto out;
    }
    if (memchr(data, '\0', len) != NULL) {
        rc = err_set(ERR_CONFIG, "repository \"%s\": S3 credential file \"%s\" contains a NUL byte",
                     c->name, path);
        goto out;
    }
    *out = data;
    data = NULL;
    *stamp = sa;
out:
    if (data)
        secure_free(data, S3_CRED_FILE_MAX + 2);
    if (fd >= 0)
        close(fd);
    return rc;
}

static const char *const part_names[S3_CRED_PARTS] = {"access key id", "secret access key",
                                                      "session token"};

/* Under c->lock. */
static int refresh_locked(struct s3_cred *c, bool force)
{
    int64_t now = time_mono_us();
    bool any_file = false, changed = false;
    char *fresh[S3_CRED_PARTS] = {NULL};
    struct s3_cred_stamp stamps[S3_CRED_PARTS] = {{0}};
    int rc = 0;

    for (int i = 0; i < S3_CRED_PARTS; i++)
        any_file = any_file || c->file[i];
    if (!any_file)
        return 0;
    if (!force && c->looked_us && now - c->looked_us < c->interval_ms * 1000)
        return 0;
    c->looked_us = now;

    for (int i = 0; i < S3_CRED_PARTS && !changed; i++) {
        struct stat st;
        struct s3_cred_stamp s;
        if (!c->file[i])
            continue;
        if (stat(c->file[i], &st) < 0) {
            changed = true; /* read it below, which says why it cannot be */
            break;
        }
        stamp_of(&st, &s);
        changed = !stamp_equal(&s, &c->stamp[i]);
    }
    if (!changed)
        return 0;

    for (int i = 0; i < S3_CRED_PARTS; i++) {
        if (c->file[i] && (rc = read_one(c, c->file[i], &fresh[i], &stamps[i])) < 0)
            goto out;
    }
    struct buf which = BUF_INIT;
    for (int i = 0; i < S3_CRED_PARTS; i++) {
        if (!c->file[i])
            continue;
        c->stamp[i] = stamps[i];
        if (c->value[i] && strcmp(c->value[i], fresh[i]) == 0)
            continue;
        log_add_secret(fresh[i]);
        wipe(&c->value[i]);
        c->value[i] = fresh[i];
        fresh[i] = NULL;
        buf_appendf(&which, "%s%s (\"%s\")", which.len ? ", " : "", part_names[i], c->file[i]);
    }
    if (which.len) {
        c->generation++;
        log_info("repository \"%s\": S3 credentials changed: %s; signing with them from now on",
                 c->name, (char *)which.data);
    }
    buf_free(&which);
    free(c->said);
    c->said = NULL;
out:
    for (int i = 0; i < S3_CRED_PARTS; i++)
        wipe(&fresh[i]);
    return rc;
}

int s3_cred_refresh(struct s3_cred *c, bool force)
{
    pthread_mutex_lock(&c->lock);
    int rc = refresh_locked(c, force);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* Under c->lock: refresh, a failure said once per distinct reason (the current
 * credentials stay); the error slot is left as it was. */
static void look_locked(struct s3_cred *c, bool force)
{
    struct err_saved *saved = err_save();
    if (refresh_locked(c, force) < 0) {
        const char *msg = err_message();
        if (!c->said || strcmp(c->said, msg) != 0) {
            log_warn("%s; still signing with the credentials read before", msg);
            free(c->said);
            c->said = xstrdup(msg);
        }
    }
    err_restore(saved);
}

void s3_cred_get(struct s3_cred *c, struct s3_cred_snap *out)
{
    pthread_mutex_lock(&c->lock);
    look_locked(c, false);
    out->access_key_id = dup_or_null(c->value[S3_CRED_ID]);
    out->secret = dup_or_null(c->value[S3_CRED_SECRET]);
    out->token = dup_or_null(c->value[S3_CRED_TOKEN]);
    out->generation = c->generation;
    pthread_mutex_unlock(&c->lock);
}

uint64_t s3_cred_look_now(struct s3_cred *c)
{
    pthread_mutex_lock(&c->lock);
    look_locked(c, true);
    uint64_t g = c->generation;
    pthread_mutex_unlock(&c->lock);
    return g;
}

void s3_cred_snap_free(struct s3_cred_snap *snap)
{
    wipe(&snap->access_key_id);
    wipe(&snap->secret);
    wipe(&snap->token);
    snap->generation = 0;
}

uint64_t s3_cred_generation(struct s3_cred *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t g = c->generation;
    pthread_mutex_unlock(&c->lock);
    return g;
}
