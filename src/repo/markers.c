/*
 * markers.c — the objects by which a running backup and a running expire see each
 * other (repo.h, "running markers"). A marker is a small envelope object holding
 * {"host", "pid"}; its storage mtime says when it was written.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
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
    json_t *o = json_pack("{s:s, s:I}", "host", host, "pid", (json_int_t)getpid());
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

void repo_marker_parse(const char *text, size_t len, struct repo_marker *m)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    const char *h = json_string_value(json_object_get(o, "host"));
    json_int_t pid = json_integer_value(json_object_get(o, "pid"));
    m->host = xstrdup(h ? h : "");
    /* kill(pid, 0) below takes a pid_t: a value outside 1..INT32_MAX would probe a
     * process group, or every process, instead */
    m->pid = pid > 0 && pid <= INT32_MAX ? (long)pid : 0;
    json_decref(o);
}

/* Read one marker and judge whether its writer still lives. A marker that cannot be
 * read (written half by a crash cannot happen: writes are atomic; a damaged one can)
 * is judged by its age alone. */
static void marker_read(struct repo *r, const char *path, struct repo_marker *m)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char host[256];

    if (repo_get_all_max(r, path, REPO_MARKER_MAX, "a running marker", &data, &len) == 0) {
        repo_marker_parse((const char *)data, len, m);
    } else {
        log_warn("cannot read the marker \"%s\" in repository \"%s\": %s", path, repo_name(r),
                 err_message());
        err_clear();
        m->host = xstrdup("");
    }
    free(data);
    this_host(host, sizeof(host));
    int64_t age_s = m->mtime_us ? (time_now_us() - m->mtime_us) / 1000000 : 0;
    bool gone =
        strcmp(m->host, host) == 0 && m->pid > 0 && kill((pid_t)m->pid, 0) != 0 && errno == ESRCH;
    m->stale = gone || age_s > REPO_MARKER_STALE_S;
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

int repo_markers_list(struct repo *r, struct repo_marker **out, size_t *n)
{
    struct marker_list l = {strlen(r->prefix), NULL, NULL, 0};
    struct repo_marker *m = NULL;
    struct storage_info info;
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
    full = repo_full_path(r, EXPIRE_MARKER);
    rc = storage_info(r->storage, full, &info);
    free(full);
    if (rc == 0) {
        l.paths = xrealloc(l.paths, (l.n + 1) * sizeof(*l.paths));
        l.mtimes = xrealloc(l.mtimes, (l.n + 1) * sizeof(*l.mtimes));
        l.paths[l.n] = xstrdup(EXPIRE_MARKER);
        l.mtimes[l.n++] = info.mtime_us;
    } else if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    } else {
        goto out;
    }
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

/* 1 when a live expire marker is there, 0 when not, negative on error. */
static int expire_running(struct repo *r, long *pid, char *host, size_t cap)
{
    struct repo_marker *m = NULL;
    size_t n = 0;
    int rc = repo_markers_list(r, &m, &n);
    if (rc < 0)
        return rc;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        if (!m[i].label && !m[i].stale) {
            found = 1;
            *pid = m[i].pid;
            snprintf(host, cap, "%s", m[i].host);
        }
    }
    repo_markers_free(m, n);
    return found;
}

int repo_backup_begin(struct repo *r, const char *label, int poll_ms)
{
    char host[256];
    long pid = 0;
    bool told = false;
    int rc = repo_marker_put(r, label);

    while (rc == 0) {
        int running = expire_running(r, &pid, host, sizeof(host));
        if (running <= 0) {
            rc = running;
            break;
        }
        if (!told)
            log_info("waiting for expire (pid %ld on \"%s\") to finish its sweep of repository "
                     "\"%s\"",
                     pid, host, repo_name(r));
        told = true;
        struct timespec ts = {poll_ms / 1000, (long)(poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc < 0)
        err_context("while checking for an expire running on repository \"%s\"", repo_name(r));
    return rc;
}
