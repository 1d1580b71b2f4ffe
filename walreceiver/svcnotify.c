/*
 * svcnotify.c — the receiver's word to systemd (a Type=notify service): READY=1 once it
 * runs, WATCHDOG=1 from the receive loop itself (so that a loop stuck somewhere gets the
 * service restarted), STATUS= with what it is doing, STOPPING=1 and RELOADING=1.
 *
 * The loop calls receiver_notify_tick as often as it likes: without $NOTIFY_SOCKET it is
 * one test of a flag; with it, a clock read, and a datagram only when one is due.
 */
#include "receiver_int.h"

#include "pgark/sdnotify.h"
#include "pgark/units.h"

#include <stdio.h>
#include <string.h>

/* One receiver per process: its notification state is the process's. Touched by the
 * receive loop's thread only. */
static struct {
    bool checked, enabled;
    int64_t watchdog_us;
    int64_t last_ping_us, last_status_us;
    char status[512];
} sn;

#define STATUS_EVERY_US 5000000

static bool enabled(void)
{
    if (!sn.checked) {
        sn.checked = true;
        sn.enabled = sdnotify_enabled();
        sn.watchdog_us = sn.enabled ? sdnotify_watchdog_usec() : 0;
    }
    return sn.enabled;
}

/* "STATUS=..." of the receiver now. */
static void status_line(struct receiver *rx, char *out, size_t cap)
{
    struct status_view v;
    char lsn[LSN_STRLEN];
    status_view_take(rx, &v);
    int n;
    if (v.connected)
        n = snprintf(out, cap, "STATUS=streaming timeline %u, flushed %s", v.tli,
                     lsn_format(v.flushed, lsn));
    else
        n = snprintf(out, cap, "STATUS=not connected%s%s", v.last_error ? ": " : "",
                     v.last_error ? v.last_error : "");
    const char *tiers[2] = {"local", "off-site"};
    for (int t = 0; t < 2 && n > 0 && (size_t)n < cap; t++) {
        if (v.tiers[t].repos)
            n += snprintf(out + n, cap - (size_t)n, "%s RPO %s %.1f s", t == 0 ? ";" : ",",
                          tiers[t], v.tiers[t].rpo);
    }
    /* One line: systemctl status shows the first. */
    for (char *p = out; *p; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    status_view_free(&v);
}

void receiver_notify_ready(struct receiver *rx)
{
    if (!enabled())
        return;
    char msg[600];
    status_line(rx, sn.status, sizeof(sn.status));
    snprintf(msg, sizeof(msg), "READY=1\n%s", sn.status);
    sdnotify_send(msg);
    sn.last_status_us = sn.last_ping_us = time_mono_us();
    if (sn.watchdog_us)
        sdnotify_send("WATCHDOG=1");
}

void receiver_notify_tick(struct receiver *rx)
{
    if (!enabled())
        return;
    int64_t now = time_mono_us();
    /* Twice per interval, as sd_watchdog_enabled's documentation advises. */
    if (sn.watchdog_us && now - sn.last_ping_us >= sn.watchdog_us / 2) {
        sdnotify_send("WATCHDOG=1");
        sn.last_ping_us = now;
    }
    if (now - sn.last_status_us >= STATUS_EVERY_US) {
        char line[sizeof(sn.status)];
        status_line(rx, line, sizeof(line));
        if (strcmp(line, sn.status) != 0) {
            memcpy(sn.status, line, sizeof(line));
            sdnotify_send(sn.status);
        }
        sn.last_status_us = now;
    }
}

void receiver_notify_leaving(bool reloading)
{
    if (!enabled())
        return;
    sdnotify_send(reloading
                      ? "RELOADING=1\nSTATUS=reloading the configuration"
                      : "STOPPING=1\nSTATUS=stopping: repositories take what the spool holds");
}
