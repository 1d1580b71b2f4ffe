/*
 * sdnotify.h — telling systemd how a service is doing (sd_notify's protocol, without
 * libsystemd): datagrams of "KEY=VALUE" lines to the socket $NOTIFY_SOCKET names.
 *
 * Promise: with no $NOTIFY_SOCKET (not run by systemd, or not Type=notify) every call is
 * a cheap no-op; a message that cannot be sent is dropped (the service goes on; systemd
 * judges it by what arrives). Thread-safe.
 */
#ifndef PGARK_SDNOTIFY_H
#define PGARK_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Whether $NOTIFY_SOCKET is set (a path, or "@name" for an abstract socket). */
bool sdnotify_enabled(void);
/* Send state ("READY=1", "STATUS=...\nWATCHDOG=1", ...). 0 sent or not enabled;
 * -1 when it could not be sent (no error slot is touched). */
int sdnotify_send(const char *state);
/* How often systemd wants WATCHDOG=1 ($WATCHDOG_USEC, microseconds), when the watchdog
 * is meant for this process ($WATCHDOG_PID unset or ours); 0 when no watchdog. */
int64_t sdnotify_watchdog_usec(void);

#endif
