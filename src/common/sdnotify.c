/* sdnotify.c — sd_notify's datagrams, written out (see include/pgark/sdnotify.h). */
#include "pgark/sdnotify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

bool sdnotify_enabled(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    return path && (path[0] == '/' || path[0] == '@');
}

int sdnotify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    int rc = -1;

    if (!path || (path[0] != '/' && path[0] != '@'))
        return 0;
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path))
        return -1;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* an abstract socket: its name has no terminator */
    socklen_t addr_len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0));
    /* A socket per message: messages are rare (seconds apart), and no state is shared
     * between the threads that send them. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
    if (n == (ssize_t)strlen(state))
        rc = 0;
    close(fd);
    return rc;
}

int64_t sdnotify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    if (!usec || !*usec)
        return 0;
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    char *end = NULL;
    long long v = strtoll(usec, &end, 10);
    return (*end || v <= 0) ? 0 : (int64_t)v;
}
