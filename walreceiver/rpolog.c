/*
 * rpolog.c — the receiver's RPO history (rpolog_int.h).
 *
 * status.json says what the RPO of each tier is now; `report` also wants the worst over
 * a period. So every time status.json is written its "rpo" is noted here, and each
 * minute's worst goes to the spool as one line (rpohist.h). The file is rewritten
 * without what is older than RPOHIST_KEEP_S once it passes HIST_MAX_BYTES, so it stays
 * under about 2 MiB. The shippers store a copy in their repository every
 * SHIP_INTERVAL_US when it changed, so the history outlives the receiver's host.
 *
 * Kept apart from status.c (one call there, one in the shipper's loop): one receiver per
 * process, so its state is this file's, under its own lock.
 */
#include "rpolog_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"
#include "pgark/rpohist.h"
#include "pgark/units.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIST_MAX_BYTES (2u << 20)
#define SHIP_INTERVAL_US (600 * INT64_C(1000000))
#define MAX_SHIPPERS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t minute;               /* the minute being noted (Unix minutes); 0: none */
static int64_t worst[RPOHIST_TIERS]; /* ms, -1: no value yet */
static struct {
    char name[128];
    int64_t shipped_us;
    int64_t mtime_ns; /* of the file as shipped */
} shipped[MAX_SHIPPERS];
static int nshipped;

/* A tier's RPO in rpo: {"<tier>": {"seconds": S}}; -1 when there is none. */
static int64_t tier_ms(json_t *rpo, const char *tier)
{
    json_t *v = json_object_get(json_object_get(rpo, tier), "seconds");
    if (!json_is_number(v) || json_number_value(v) < 0)
        return -1;
    return (int64_t)(json_number_value(v) * 1000 + 0.5);
}

/* The whole file as a string; NULL when it cannot be opened. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    buf_append_file(&b, f);
    fclose(f);
    buf_append(&b, "", 0); /* never NULL, NUL-terminated */
    return buf_steal(&b);
}

/* Drop what is older than RPOHIST_KEEP_S: write the rest to a temporary file, rename. */
static void compact(const char *path, int64_t now_s)
{
    char *text = read_all(path);
    if (!text)
        return;
    struct rpohist_sample *s;
    size_t n;
    rpohist_parse(text, now_s - RPOHIST_KEEP_S, &s, &n);
    free(text);
    char *tmp = xasprintf("%s.tmp", path);
    FILE *f = privfs_fopen_w(tmp);
    bool ok = f != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        char line[64];
        ok = fputs(rpohist_format_line(&s[i], line, sizeof(line)), f) >= 0;
    }
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        log_detail("could not rewrite the RPO history \"%s\": %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    free(s);
}

static void append(const char *spool_dir, const struct rpohist_sample *s)
{
    char *path = xasprintf("%s/%s", spool_dir, RPOHIST_FILE);
    char line[64];
    rpohist_format_line(s, line, sizeof(line));
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line))
        log_detail("could not add to the RPO history \"%s\": %s", path, strerror(errno));
    struct stat st;
    bool big = fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > HIST_MAX_BYTES;
    if (fd >= 0)
        close(fd);
    if (big)
        compact(path, s->time_s);
    free(path);
}

void receiver_rpo_note(const char *spool_dir, int64_t now_us, json_t *rpo)
{
    const char *tiers[RPOHIST_TIERS] = {"local", "offsite"};
    int64_t now_min = now_us / (60 * INT64_C(1000000));
    int64_t v[RPOHIST_TIERS];
    for (int t = 0; t < RPOHIST_TIERS; t++)
        v[t] = tier_ms(rpo, tiers[t]);
    pthread_mutex_lock(&lock);
    bool first = minute == 0;
    if (!first && now_min != minute) {
        /* The minute is over: its worst, at its end. */
        struct rpohist_sample s = {.time_s = (minute + 1) * 60, .ms = {worst[0], worst[1]}};
        append(spool_dir, &s);
    }
    if (first || now_min != minute) {
        minute = now_min;
        worst[0] = worst[1] = -1;
    }
    for (int t = 0; t < RPOHIST_TIERS; t++) {
        if (v[t] > worst[t])
            worst[t] = v[t];
    }
    if (first) {
        /* A receiver that just started has a sample at once: a report run right after
         * it sees it. */
        struct rpohist_sample s = {.time_s = now_us / 1000000, .ms = {v[0], v[1]}};
        append(spool_dir, &s);
    }
    pthread_mutex_unlock(&lock);
}

void receiver_rpo_ship(struct repo *r, const char *name, const char *spool_dir)
{
    char *path = xasprintf("%s/%s", spool_dir, RPOHIST_FILE);
    struct stat st;
    int64_t now = time_mono_us();
    if (stat(path, &st) < 0) {
        free(path);
        return;
    }
    int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    pthread_mutex_lock(&lock);
    int k = 0;
    while (k < nshipped && strcmp(shipped[k].name, name) != 0)
        k++;
    if (k == nshipped && nshipped < MAX_SHIPPERS) {
        snprintf(shipped[k].name, sizeof(shipped[k].name), "%s", name);
        shipped[k].shipped_us = 0;
        shipped[k].mtime_ns = 0;
        nshipped++;
    }
    bool due = k < nshipped && shipped[k].mtime_ns != mtime_ns &&
               (!shipped[k].shipped_us || now - shipped[k].shipped_us >= SHIP_INTERVAL_US);
    pthread_mutex_unlock(&lock);
    if (!due) {
        free(path);
        return;
    }
    char *text = read_all(path);
    free(path);
    if (!text)
        return;
    struct rpohist_sample *s;
    size_t n;
    rpohist_parse(text, time_now_us() / 1000000 - RPOHIST_KEEP_S, &s, &n);
    free(text);
    char *json = rpohist_to_json(s, n);
    free(s);
    int rc = repo_record_put(r, REPO_RECORD_RECEIVER, RPOHIST_RECORD, json);
    free(json);
    pthread_mutex_lock(&lock);
    shipped[k].shipped_us = now;
    if (rc == 0)
        shipped[k].mtime_ns = mtime_ns;
    pthread_mutex_unlock(&lock);
    if (rc < 0) {
        log_detail("the RPO history could not be stored in repository \"%s\": %s", name,
                   err_message());
        err_clear();
    }
}
