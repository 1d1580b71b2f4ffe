/* rxstatus.c — the receiver's status.json, read the one way (see rxstatus.h). */
#include "rxstatus.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

void rx_status_load(const char *spool, const char *cluster, int64_t now_us, struct rx_status *s)
{
    memset(s, 0, sizeof(*s));
    char *path = xasprintf("%s/%s/status.json", spool, cluster);
    s->doc = json_load_file(path, 0, NULL);
    free(path);
    if (!s->doc)
        return;
    json_int_t pid = json_integer_value(json_object_get(s->doc, "pid"));
    const char *updated = json_string_value(json_object_get(s->doc, "updated"));
    int64_t updated_us = 0;
    if (!updated || time_parse(updated, &updated_us) < 0)
        err_clear();
    int64_t age = updated_us ? now_us - updated_us : 0;
    s->age_s = age > 0 ? (double)age / 1e6 : 0;
    bool alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    s->running = alive && updated_us && age < RX_STATUS_STALE_US;
}

void rx_status_free(struct rx_status *s)
{
    json_decref(s->doc);
    memset(s, 0, sizeof(*s));
}

double rx_status_aged(const struct rx_status *s, double v)
{
    if (v < 0)
        return v;
    if (v > 0 || !s->running)
        v += s->age_s;
    return round(v * 1000) / 1000;
}

static double number(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : -1;
}

double rx_status_tier_rpo(const struct rx_status *s, const char *tier)
{
    json_t *rpo = json_object_get(s->doc, "rpo");
    double v = number(json_object_get(json_object_get(rpo, tier), "seconds"));
    if (v < 0) {
        char key[32];
        snprintf(key, sizeof(key), "%s_seconds", tier);
        v = number(json_object_get(rpo, key));
    }
    return rx_status_aged(s, v);
}

double rx_status_repo_rpo(const struct rx_status *s, const char *repo)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(s->doc, "repos"), i, r)
    {
        const char *n = json_string_value(json_object_get(r, "name"));
        if (n && !strcmp(n, repo))
            return rx_status_aged(s, number(json_object_get(r, "rpo_seconds")));
    }
    return -1;
}

bool rx_status_streams(const struct rx_status *s)
{
    const char *flushed = json_string_value(json_object_get(s->doc, "flushed_lsn"));
    return json_is_true(json_object_get(s->doc, "connected")) ||
           (flushed && strcmp(flushed, "0/0") != 0);
}
