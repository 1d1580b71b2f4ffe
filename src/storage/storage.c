/*
 * storage.c — the generic storage layer (see include/pgark/storage.h).
 *
 * Everything drivers would otherwise each get slightly wrong lives here: path
 * checks, retries of transient failures, missing-object rules, and the
 * "in repository" context on every error.
 *
 * Retry policy: an operation failing with ERR_TRANSIENT is attempted again up to
 * s->retries times, sleeping retry_base_ms * 2^n (capped) with "equal jitter": a
 * uniform pick in [delay/2, delay]. Each retry is logged at warn level.
 *
 * A read that already handed bytes to the caller's sink is never restarted from
 * its beginning: the retry resumes at the offset reached, so the sink sees every
 * byte exactly once. Objects are written atomically and pgark authenticates what it
 * reads, so a resumed read of an object replaced in between is caught above us as
 * an integrity error rather than silently mixing two versions. A list resumes the
 * same way, after the last path already delivered (lists are in byte order).
 * A failure reported by the caller's sink or list callback is never retried.
 *
 * Entries that are not objects: a driver never follows a link below its root; it
 * hands what it meets to the policy here. A list skips such an entry and reports it
 * at warn level once per storage and path (a command lists the same folders several
 * times); any other operation whose path leads to or through one fails with the error
 * storage_refuse words.
 *
 * Ownership: storage_init copies the name into s->name and storage_free releases
 * it (and the location, and the reported paths) after the driver's free, so a
 * driver's free must not free them.
 */
#include "storage_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORAGE_DEFAULT_RETRIES 4
#define STORAGE_DEFAULT_RETRY_BASE_MS 200
#define STORAGE_MAX_BACKOFF_MS 60000
/* Paths remembered as reported per storage; past it, entries are reported again. */
#define STORAGE_REPORTED_MAX 4096

struct storage_reported {
    char **paths;
    size_t n;
};

/* Guards every storage's reported list: reports are rare, a storage is shared by
 * threads (a backup's workers), and drivers' structs hold no lock of their own here. */
static pthread_mutex_t reported_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const entry_names[] = {
    [STORAGE_ENTRY_OBJECT] = "a regular file", [STORAGE_ENTRY_SYMLINK] = "a symbolic link",
    [STORAGE_ENTRY_FIFO] = "a named pipe",     [STORAGE_ENTRY_SOCKET] = "a socket",
    [STORAGE_ENTRY_DEVICE] = "a device",       [STORAGE_ENTRY_OTHER] = "of an unknown file type",
};

void storage_init(struct storage *s, const struct storage_ops *ops, const char *name)
{
    s->ops = ops;
    s->name = xstrdup(name ? name : "");
    s->retries = STORAGE_DEFAULT_RETRIES;
    s->retry_base_ms = STORAGE_DEFAULT_RETRY_BASE_MS;
    s->location = NULL;
    s->reported = NULL;
}

void storage_set_location(struct storage *s, const char *location)
{
    free(s->location);
    s->location = location ? xstrdup(location) : NULL;
}

static const char *entry_name(enum storage_entry entry)
{
    if ((unsigned)entry >= sizeof(entry_names) / sizeof(entry_names[0]))
        entry = STORAGE_ENTRY_OTHER;
    return entry_names[entry];
}

/* where as the user finds it: below the location when the driver gave one. */
static char *display_path(struct storage *s, const char *where)
{
    return s->location ? xasprintf("%s/%s", s->location, where) : xstrdup(where);
}

int storage_refuse(struct storage *s, const char *where, enum storage_entry entry)
{
    char *full = display_path(s, where);
    int rc;
    if (entry == STORAGE_ENTRY_SYMLINK) {
        rc = err_set(ERR_IO, "\"%s\" is a symbolic link: refusing to follow it inside a repository",
                     full);
        err_hint("pgark follows no link below a repository's root: replace the link with what "
                 "it points to, or move it out; a repository kept on another file system is "
                 "configured by its path, which may itself be a link");
    } else {
        rc = err_set(ERR_IO,
                     "\"%s\" is %s, not a regular file or directory: refusing to use it inside "
                     "a repository",
                     full, entry_name(entry));
        err_hint("move it out of the repository");
    }
    free(full);
    return rc;
}

/* Whether where has not been reported for s yet (and from now on, it has). */
static bool first_report(struct storage *s, const char *where)
{
    bool first = true;
    pthread_mutex_lock(&reported_lock);
    struct storage_reported *r = s->reported;
    if (!r)
        r = s->reported = xcalloc(1, sizeof(*r));
    for (size_t i = 0; i < r->n && first; i++)
        first = strcmp(r->paths[i], where) != 0;
    if (first && r->n < STORAGE_REPORTED_MAX) {
        r->paths = xrealloc(r->paths, (r->n + 1) * sizeof(*r->paths));
        r->paths[r->n++] = xstrdup(where);
    }
    pthread_mutex_unlock(&reported_lock);
    return first;
}

/* A list met something that is not an object: say so, once. */
static void report_entry(struct storage *s, const struct storage_info *info)
{
    if (!first_report(s, info->path))
        return;
    char *full = display_path(s, info->path);
    if (info->entry == STORAGE_ENTRY_SYMLINK)
        log_warn("repository \"%s\": skipping \"%s\": it is a symbolic link, which pgark does "
                 "not follow inside a repository",
                 s->name, full);
    else
        log_warn("repository \"%s\": skipping \"%s\": it is %s, not a regular file or directory",
                 s->name, full, entry_name(info->entry));
    free(full);
}

/* One path component: non-empty, not "." or "..". */
static bool component_ok(const char *c, size_t len)
{
    if (len == 0)
        return false;
    if (len == 1 && c[0] == '.')
        return false;
    if (len == 2 && c[0] == '.' && c[1] == '.')
        return false;
    return true;
}

int storage_path_check(const char *path)
{
    if (!path)
        return err_set(ERR_USAGE, "missing object path");
    if (path[0] == '\0')
        return err_set(ERR_USAGE, "invalid object path \"\": empty");
    if (path[0] == '/')
        return err_set(ERR_USAGE, "invalid object path \"%s\": must be relative", path);
    const char *c = path;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (!component_ok(c, len))
            return err_set(ERR_USAGE,
                           "invalid object path \"%s\": empty, \".\" or \"..\" component", path);
        if (!slash)
            break;
        c = slash + 1;
    }
    return 0;
}

/* A list prefix is a path prefix string: "" (everything), "wal/" or a partial name
 * such as "wal/00000001/0000000100". Every complete component must be valid; the
 * trailing partial one may be anything but cannot climb out of the root. */
static int prefix_check(const char *prefix)
{
    if (!prefix)
        return err_set(ERR_USAGE, "missing list prefix");
    if (prefix[0] == '/')
        return err_set(ERR_USAGE, "invalid list prefix \"%s\": must be relative", prefix);
    const char *c = prefix;
    const char *slash;
    while ((slash = strchr(c, '/')) != NULL) {
        if (!component_ok(c, (size_t)(slash - c)))
            return err_set(ERR_USAGE,
                           "invalid list prefix \"%s\": empty, \".\" or \"..\" component", prefix);
        c = slash + 1;
    }
    return 0;
}

int storage_add_context(struct storage *s)
{
    return err_context("in repository \"%s\"", s->name);
}

static int64_t backoff_ms(struct storage *s, int retry)
{
    if (s->retry_base_ms <= 0)
        return 0;
    int64_t delay = s->retry_base_ms;
    for (int i = 0; i < retry && delay < STORAGE_MAX_BACKOFF_MS; i++)
        delay *= 2;
    if (delay > STORAGE_MAX_BACKOFF_MS)
        delay = STORAGE_MAX_BACKOFF_MS;
    uint32_t r = 0;
    if (random_bytes(&r, sizeof(r)) < 0) {
        err_clear();
        r = (uint32_t)time(NULL) * 2654435761u;
    }
    int64_t half = delay / 2;
    return delay - half + (int64_t)(r % (uint64_t)(half + 1));
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/*
 * Run attempt() until it succeeds, fails with something other than ERR_TRANSIENT,
 * sets *final, or the retries are used up. what/path describe the operation in
 * the warn line.
 */
typedef int (*attempt_fn)(struct storage *s, void *arg, bool *final);

static int with_retries(struct storage *s, const char *what, const char *path, attempt_fn attempt,
                        void *arg)
{
    int retries = s->retries > 0 && !s->retries_inside ? s->retries : 0;
    int rc = 0;
    for (int n = 0;; n++) {
        bool final = false;
        rc = attempt(s, arg, &final);
        if (rc == 0)
            break;
        if (final || err_kind() != ERR_TRANSIENT || n >= retries)
            break;
        int64_t wait = backoff_ms(s, n);
        log_warn("%s \"%s\" in repository \"%s\" failed: %s; retry %d of %d in %lld ms", what, path,
                 s->name, err_message(), n + 1, retries, (long long)wait);
        err_clear();
        sleep_ms(wait);
    }
    return rc;
}

/* --- read ------------------------------------------------------------------ */

struct read_state {
    const char *path;
    uint64_t offset;    /* next byte to ask for */
    uint64_t length;    /* bytes still wanted, or STORAGE_TO_END */
    uint64_t delivered; /* bytes handed to the caller in this attempt */
    storage_sink_fn sink;
    void *ctx;
    bool sink_failed;
};

static int read_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct read_state *st = ctx;
    int rc = st->sink(st->ctx, data, len);
    if (rc < 0) {
        st->sink_failed = true;
        return rc;
    }
    st->delivered += len;
    return 0;
}

static int read_attempt(struct storage *s, void *arg, bool *final)
{
    struct read_state *st = arg;
    st->delivered = 0;
    int rc = s->ops->read(s, st->path, st->offset, st->length, read_sink, st);
    if (rc < 0) {
        /* Resume where this attempt stopped rather than replaying bytes. */
        st->offset += st->delivered;
        if (st->length != STORAGE_TO_END)
            st->length -= st->delivered;
        *final = st->sink_failed;
    }
    return rc;
}

int storage_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                 storage_sink_fn sink, void *ctx)
{
    int rc = storage_path_check(path);
    if (rc < 0)
        goto out;
    if (length != STORAGE_TO_END && offset > UINT64_MAX - length) {
        rc = err_set(ERR_USAGE, "invalid byte range of \"%s\": offset %llu length %llu", path,
                     (unsigned long long)offset, (unsigned long long)length);
        goto out;
    }
    struct read_state st = {
        .path = path, .offset = offset, .length = length, .sink = sink, .ctx = ctx};
    rc = with_retries(s, "read of", path, read_attempt, &st);
out:
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

static int buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

int storage_read_all(struct storage *s, const char *path, uint8_t **data, size_t *len)
{
    struct buf b = BUF_INIT;
    *data = NULL;
    *len = 0;
    int rc = storage_read(s, path, 0, STORAGE_TO_END, buf_sink, &b);
    if (rc < 0) {
        buf_free(&b);
        return rc;
    }
    *len = b.len;
    *data = (uint8_t *)buf_steal(&b);
    return 0;
}

/* --- write ----------------------------------------------------------------- */

struct open_state {
    const char *path;
    uint64_t size_hint;
    struct storage_write *w;
};

static int open_attempt(struct storage *s, void *arg, bool *final)
{
    struct open_state *st = arg;
    (void) final;
    st->w = s->ops->write_open(s, st->path, st->size_hint);
    if (!st->w)
        return err_code();
    st->w->defer_sync = storage_deferring(s);
    return 0;
}

struct storage_write *storage_write_open(struct storage *s, const char *path, uint64_t size_hint)
{
    struct open_state st = {.path = path, .size_hint = size_hint};
    if (storage_path_check(path) < 0 || with_retries(s, "write of", path, open_attempt, &st) < 0) {
        storage_add_context(s);
        return NULL;
    }
    return st.w;
}

int storage_write_data(struct storage_write *w, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (w->batch)
        return storage_batch_write_data(w, data, len);
    int rc = w->storage->ops->write_data(w, data, len);
    if (rc < 0)
        storage_add_context(w->storage);
    return rc;
}

int storage_write_commit(struct storage_write *w)
{
    struct storage *s = w->storage;
    if (w->batch)
        return storage_batch_write_commit(w);
    int rc = w->defer_sync ? 0 : storage_sync_before(s, w->path);
    if (rc < 0)
        s->ops->write_abort(w);
    else
        rc = s->ops->write_commit(w);
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

void storage_write_abort(struct storage_write *w)
{
    if (w && w->batch)
        storage_batch_write_abort(w);
    else if (w)
        w->storage->ops->write_abort(w);
}

struct write_all_state {
    const char *path;
    const void *data;
    size_t len;
    bool no_replace;
};

static int write_all_attempt(struct storage *s, void *arg, bool *final)
{
    struct write_all_state *st = arg;
    (void) final;
    struct storage_write *w = s->ops->write_open(s, st->path, st->len);
    if (!w)
        return err_code();
    w->no_replace = st->no_replace;
    w->defer_sync = storage_deferring(s);
    int rc = 0;
    if (st->len > 0)
        rc = s->ops->write_data(w, st->data, st->len);
    if (rc == 0 && !w->defer_sync)
        rc = storage_sync_before(s, st->path);
    if (rc < 0) {
        s->ops->write_abort(w);
        return rc;
    }
    return s->ops->write_commit(w);
}

static int write_all(struct storage *s, const char *path, const void *data, size_t len,
                     bool no_replace)
{
    struct write_all_state st = {.path = path, .data = data, .len = len, .no_replace = no_replace};
    int rc = storage_path_check(path);
    if (rc == 0)
        rc = with_retries(s, "write of", path, write_all_attempt, &st);
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

int storage_write_all(struct storage *s, const char *path, const void *data, size_t len)
{
    return write_all(s, path, data, len, false);
}

int storage_create_all(struct storage *s, const char *path, const void *data, size_t len)
{
    return write_all(s, path, data, len, true);
}

int storage_create_honoured(struct storage *s, const char *probe_path, char **why)
{
    static const char first[] = "pgark probe: written first\n";
    static const char second[] = "pgark probe: must not replace the first\n";
    char *reason = NULL;
    int rc = 0;
    if (why)
        *why = NULL;
    if (s->create_honoured != 0)
        goto done;
    if ((rc = storage_write_all(s, probe_path, first, sizeof(first) - 1)) < 0)
        goto out;
    rc = storage_create_all(s, probe_path, second, sizeof(second) - 1);
    if (rc == -ERR_EXISTS) {
        s->create_honoured = 1;
    } else if (rc == 0) {
        s->create_honoured = -1;
        reason = xstrdup("the store replaced an object that a write with If-None-Match: * "
                         "was not to replace");
    } else if (rc == -ERR_UNSUPPORTED) {
        s->create_honoured = -1;
        reason = xasprintf("the store does not implement conditional writes (%s)", err_message());
    } else {
        goto out;
    }
    err_clear();
    if ((rc = storage_remove(s, probe_path)) < 0)
        goto out;
    free(s->create_why);
    s->create_why = reason;
    reason = NULL;
done:
    rc = s->create_honoured > 0 ? 1 : 0;
    if (why && rc == 0 && s->create_why)
        *why = xstrdup(s->create_why);
out:
    free(reason);
    if (rc < 0)
        err_context("while finding out whether repository \"%s\" can refuse to replace an "
                    "object",
                    s->name);
    return rc;
}

/* --- list ------------------------------------------------------------------ */

struct list_state {
    struct storage *s;
    const char *prefix;
    storage_list_fn fn;
    void *ctx;
    char *last; /* last path delivered, to resume after a transient failure */
    bool fn_failed;
};

static int list_cb(void *ctx, const struct storage_info *info)
{
    struct list_state *st = ctx;
    if (info->entry != STORAGE_ENTRY_OBJECT) {
        report_entry(st->s, info);
        return 0;
    }
    if (st->last && strcmp(info->path, st->last) <= 0)
        return 0;
    int rc = st->fn(st->ctx, info);
    if (rc < 0) {
        st->fn_failed = true;
        return rc;
    }
    free(st->last);
    st->last = xstrdup(info->path);
    return 0;
}

static int list_attempt(struct storage *s, void *arg, bool *final)
{
    struct list_state *st = arg;
    int rc = s->ops->list(s, st->prefix, list_cb, st);
    if (rc < 0)
        *final = st->fn_failed;
    return rc;
}

int storage_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct list_state st = {.s = s, .prefix = prefix, .fn = fn, .ctx = ctx};
    int rc = prefix_check(prefix);
    if (rc == 0)
        rc = with_retries(s, "list of", prefix, list_attempt, &st);
    if (rc < 0)
        storage_add_context(s);
    free(st.last);
    return rc;
}

/* --- info, exists, remove ---------------------------------------------------- */

struct info_state {
    const char *path;
    struct storage_info *info;
};

static int info_attempt(struct storage *s, void *arg, bool *final)
{
    struct info_state *st = arg;
    (void) final;
    return s->ops->info(s, st->path, st->info);
}

int storage_info(struct storage *s, const char *path, struct storage_info *info)
{
    struct info_state st = {.path = path, .info = info};
    memset(info, 0, sizeof(*info));
    int rc = storage_path_check(path);
    if (rc == 0)
        rc = with_retries(s, "stat of", path, info_attempt, &st);
    info->path = NULL;
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

int storage_exists(struct storage *s, const char *path)
{
    struct storage_info info;
    int rc = storage_info(s, path, &info);
    if (rc == 0)
        return 1;
    if (err_kind() == ERR_NOT_FOUND) {
        err_clear();
        return 0;
    }
    return rc;
}

static int remove_attempt(struct storage *s, void *arg, bool *final)
{
    (void) final;
    int rc = s->ops->remove(s, arg);
    if (rc < 0 && err_kind() == ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    return rc;
}

int storage_remove(struct storage *s, const char *path)
{
    int rc = storage_path_check(path);
    if (rc == 0)
        rc = with_retries(s, "removal of", path, remove_attempt, (void *)path);
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

int storage_sweep(struct storage *s, const char *prefix, int64_t before_us, bool count_only,
                  uint64_t *n, uint64_t *bytes)
{
    int rc = prefix_check(prefix);
    *n = *bytes = 0;
    if (rc == 0 && s->ops->sweep)
        rc = s->ops->sweep(s, prefix, before_us, count_only, n, bytes);
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

/* --- rename -------------------------------------------------------------------- */

struct rename_state {
    const char *from;
    const char *to;
};

static int rename_attempt(struct storage *s, void *arg, bool *final)
{
    struct rename_state *st = arg;
    (void) final;
    int rc = storage_sync_before(s, st->to);
    return rc < 0 ? rc : s->ops->rename(s, st->from, st->to);
}

static int copy_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct storage_write *w = ctx;
    return len ? w->storage->ops->write_data(w, data, len) : 0;
}

/* Without a driver rename: copy to the new name atomically, then remove the old
 * one. A crash in between leaves both, never neither. */
static int copy_attempt(struct storage *s, void *arg, bool *final)
{
    struct rename_state *st = arg;
    struct storage_info info;
    (void) final;
    int rc = s->ops->info(s, st->from, &info);
    if (rc == 0)
        rc = storage_sync_before(s, st->to);
    if (rc < 0)
        return rc;
    struct storage_write *w = s->ops->write_open(s, st->to, info.size);
    if (!w)
        return err_code();
    rc = s->ops->read(s, st->from, 0, STORAGE_TO_END, copy_sink, w);
    if (rc < 0) {
        s->ops->write_abort(w);
        return rc;
    }
    rc = s->ops->write_commit(w);
    if (rc < 0)
        return rc;
    rc = s->ops->remove(s, st->from);
    if (rc < 0 && err_kind() == ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    return rc;
}

int storage_rename(struct storage *s, const char *from, const char *to)
{
    struct rename_state st = {.from = from, .to = to};
    int rc = storage_path_check(from);
    if (rc == 0)
        rc = storage_path_check(to);
    if (rc < 0)
        goto out;
    if (strcmp(from, to) == 0) {
        /* Nothing moves; the copy fallback would otherwise delete the object. */
        struct storage_info info;
        rc = with_retries(s, "stat of", from, info_attempt,
                          &(struct info_state){.path = from, .info = &info});
        goto out;
    }
    if (s->ops->rename)
        rc = with_retries(s, "rename of", from, rename_attempt, &st);
    else
        rc = with_retries(s, "rename of", from, copy_attempt, &st);
out:
    if (rc < 0)
        storage_add_context(s);
    return rc;
}

void storage_free(struct storage *s)
{
    if (!s)
        return;
    char *name = s->name;
    char *location = s->location;
    char *create_why = s->create_why;
    struct storage_reported *r = s->reported;
    s->ops->free(s);
    free(name);
    free(location);
    free(create_why);
    if (r) {
        for (size_t i = 0; i < r->n; i++)
            free(r->paths[i]);
        free(r->paths);
        free(r);
    }
}
