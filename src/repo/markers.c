/*
 * markers.c — the objects by which a running backup and a running expire see each
 * other (repo.h, "running markers"): writing, listing and judging them. A marker is a
 * small envelope object holding {"host", "pid", "heartbeat_ms", "interval_s"}; the
 * heartbeat that rewrites it is heartbeat.c.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPIRE_MARKER "expire.running"
#define RUNNING_SUFFIX ".running"

static int marker_path(const char *label, char *buf, size_t cap)
{
    if (!label) {
        snprintf(buf, cap, "%s", EXPIRE_MARKER);
        return 0;
    }
    if (!repo_backup_label_valid(label))
        return err_set(ERR_USAGE, "invalid backup label \"%s\"", label);
    snprintf(buf, cap, "backups/%s%s", label, RUNNING_SUFFIX);
    return 0;
}

static void this_host(char *buf, size_t cap)
{
    if (gethostname(buf, cap) != 0)
        snprintf(buf, cap, "unknown");
    buf[cap - 1] = '\0';
}

int repo_marker_put(struct repo *r, const char *label)
{
    char path[320], host[256];
    int rc = marker_path(label, path, sizeof(path));
    if (rc < 0)
        return rc;
    this_host(host, sizeof(host));
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:i}", "host", host, "pid", (json_int_t)getpid(), "heartbeat_ms",
                  (json_int_t)(time_now_us() / 1000), "interval_s", REPO_MARKER_BEAT_S);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    rc = repo_put(r, path, text, strlen(text));
    free(text);
    if (rc < 0)
        err_context("while writing the marker \"%s\"", path);
    return rc;
}

int repo_marker_remove(struct repo *r, const char *label)
{
    char path[320];
    int rc = marker_path(label, path, sizeof(path));
    if (rc < 0)
        return rc;
    char *full = repo_full_path(r, path);
    rc = storage_remove(r->storage, full);
    free(full);
    return rc;
}

void repo_markers_free(struct repo_marker *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].label);
        free(m[i].host);
    }
    free(m);
}

void repo_marker_judge(struct repo_marker *m, int64_t now_us)
{
    if (m->beat_us <= 0) {
        /* No heartbeat: an earlier pgark's marker, written once, or a damaged one. */
        m->age_s = m->mtime_us ? (now_us - m->mtime_us) / 1000000 : 0;
        m->stale = m->age_s > REPO_MARKER_LEGACY_STALE_S;
        return;
    }
    /* The younger of the two witnesses: a clock behind the reader's makes a marker look
     * older, so it takes both clocks behind to take a live one for dead. */
    int64_t age_us = now_us - m->beat_us;
    if (m->mtime_us && now_us - m->mtime_us < age_us)
        age_us = now_us - m->mtime_us;
    m->age_s = age_us / 1000000;
    m->stale = age_us > (int64_t)REPO_MARKER_STALE_S * 1000000;
}

void repo_marker_parse(const char *text, size_t len, struct repo_marker *m)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    const char *h = json_string_value(json_object_get(o, "host"));
    json_int_t pid = json_integer_value(json_object_get(o, "pid"));
    m->host = xstrdup(h ? h : "");
    /* The pid is shown to people only; one outside what a pid_t holds is none. */
    m->pid = pid > 0 && pid <= INT32_MAX ? (long)pid : 0;
    /* From the repository: a heartbeat too large for microseconds is none. */
    json_int_t beat_ms = json_integer_value(json_object_get(o, "heartbeat_ms"));
    m->beat_us = beat_ms > 0 && beat_ms <= INT64_MAX / 1000 ? (int64_t)beat_ms * 1000 : 0;
    json_decref(o);
}

/* Read one marker and judge whether its writer still beats. A marker that cannot be
 * read (written half by a crash cannot happen: writes are atomic; a damaged one can)
 * is judged by its storage time alone. */
static void marker_read(struct repo *r, const char *path, struct repo_marker *m)
{
    uint8_t *data = NULL;
    size_t len = 0;

    if (repo_get_all_max(r, path, REPO_MARKER_MAX, "a running marker", &data, &len) == 0) {
        repo_marker_parse((const char *)data, len, m);
    } else {
        log_warn("cannot read the marker \"%s\" in repository \"%s\": %s", path, repo_name(r),
                 err_message());
        err_clear();
        m->host = xstrdup("");
    }
    free(data);
    repo_marker_judge(m, time_now_us());
}

struct marker_list {
    size_t prefix_len;
    char **paths; /* relative to the cluster folder */
    int64_t *mtimes;
    size_t n;
};

static int on_backups_object(void *ctx, const struct storage_info *info)
{
    struct marker_list *l = ctx;
    const char *rel = info->path + l->prefix_len; /* after "<cluster>/" */
    size_t len = strlen(rel), slen = strlen(RUNNING_SUFFIX);
    if (strncmp(rel, "backups/", 8) != 0 || strchr(rel + 8, '/') || len <= 8 + slen ||
        strcmp(rel + len - slen, RUNNING_SUFFIX) != 0)
        return 0;
    l->paths = xrealloc(l->paths, (l->n + 1) * sizeof(*l->paths));
    l->mtimes = xrealloc(l->mtimes, (l->n + 1) * sizeof(*l->mtimes));
    l->paths[l->n] = xstrdup(rel);
    l->mtimes[l->n++] = info->mtime_us;
    return 0;
}

/* Whether the expire marker is there: 1 (*mtime_us its time), 0 when not, negative on
 * error. One HEAD on S3. */
static int expire_marker_info(struct repo *r, int64_t *mtime_us)
{
    struct storage_info info;
    char *full = repo_full_path(r, EXPIRE_MARKER);
    int rc = storage_info(r->storage, full, &info);
    free(full);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        return 0;
    }
    if (rc < 0)
        return rc;
    *mtime_us = info.mtime_us;
    return 1;
}

int repo_markers_list(struct repo *r, struct repo_marker **out, size_t *n)
{
    struct marker_list l = {strlen(r->prefix), NULL, NULL, 0};
    struct repo_marker *m = NULL;
    int64_t mtime_us = 0;
    char *full = repo_full_path(r, "backups/");
    int rc = storage_list(r->storage, full, on_backups_object, &l);

    free(full);
    *out = NULL;
    *n = 0;
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0)
        goto out;
    rc = expire_marker_info(r, &mtime_us);
    if (rc < 0)
        goto out;
    if (rc == 1) {
        l.paths = xrealloc(l.paths, (l.n + 1) * sizeof(*l.paths));
        l.mtimes = xrealloc(l.mtimes, (l.n + 1) * sizeof(*l.mtimes));
        l.paths[l.n] = xstrdup(EXPIRE_MARKER);
        l.mtimes[l.n++] = mtime_us;
    }
    rc = 0;
    m = xcalloc(l.n + 1, sizeof(*m));
    for (size_t i = 0; i < l.n; i++) {
        const char *p = l.paths[i];
        if (strcmp(p, EXPIRE_MARKER) != 0)
            m[i].label = xstrndup(p + 8, strlen(p) - 8 - strlen(RUNNING_SUFFIX));
        m[i].mtime_us = l.mtimes[i];
        marker_read(r, p, &m[i]);
    }
    *out = m;
    *n = l.n;
out:
    for (size_t i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(l.mtimes);
    return rc;
}

/* 1 when a live expire marker is there, 0 when not, negative on error. Only the expire
 * marker is looked at (a HEAD, then a GET when it is there): listing backups/ and reading
 * every backup's marker, as repo_markers_list does, cost two requests more per call and
 * one per running backup, for markers this question does not need. */
static int expire_running(struct repo *r, long *pid, char *host, size_t cap)
{
    int64_t mtime_us = 0;
    int rc = expire_marker_info(r, &mtime_us);
    if (rc <= 0)
        return rc;
    struct repo_marker m = {.mtime_us = mtime_us};
    marker_read(r, EXPIRE_MARKER, &m);
    int found = !m.stale;
    if (found) {
        *pid = m.pid;
        snprintf(host, cap, "%s", m.host);
    }
    free(m.host);
    return found;
}

int repo_expire_wait(struct repo *r, int poll_ms)
{
    char host[256];
    long pid = 0;
    bool told = false;
    int rc;

    while ((rc = expire_running(r, &pid, host, sizeof(host))) > 0) {
        if (!told)
            log_info("waiting for expire (pid %ld on \"%s\") to finish with repository \"%s\"", pid,
                     host, repo_name(r));
        told = true;
        struct timespec ts = {poll_ms / 1000, (long)(poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc < 0)
        err_context("while checking for an expire running on repository \"%s\"", repo_name(r));
    return rc;
}
