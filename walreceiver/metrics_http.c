/*
 * metrics_http.c — the receiver's Prometheus endpoint: a small HTTP/1.1 server on a
 * thread of its own, one connection at a time, that answers GET /metrics.
 *
 * It never holds up the stream or the shippers: it takes the receiver's lock only for
 * the moment status_view_take copies the state, formats outside it, and a client that
 * sends slowly or reads slowly costs this thread alone, for at most IO_TIMEOUT_S (then
 * the connection is dropped). A request larger than REQUEST_MAX is refused.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/log.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define REQUEST_MAX 8192
#define IO_TIMEOUT_S 5
#define POLL_MS 200

struct metrics_server {
    struct receiver *rx;
    int fd;
    pthread_t thread;
    atomic_bool stop;
};

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the client went away, or stopped reading: its loss */
        data += n;
        len -= (size_t)n;
    }
}

static void respond(int fd, const char *status, const char *extra_headers, const char *type,
                    const char *body, size_t len, bool head)
{
    char header[512];
    int n = snprintf(header, sizeof(header),
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, type, len, extra_headers);
    send_all(fd, header, (size_t)n);
    if (!head)
        send_all(fd, body, len);
}

static void respond_text(int fd, const char *status, const char *extra_headers, const char *text)
{
    respond(fd, status, extra_headers, "text/plain; charset=utf-8", text, strlen(text), false);
}

/* Read the request head (up to the blank line) into buf; its length, or -1 when the
 * client went away or took too long, -2 when it is too large. */
static ssize_t read_head(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return (ssize_t)len;
    }
    return -2;
}

static void serve(struct metrics_server *m, int fd)
{
    char req[REQUEST_MAX];
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    ssize_t len = read_head(fd, req, sizeof(req));
    if (len == -2) {
        respond_text(fd, "431 Request Header Fields Too Large", "", "request too large\n");
        return;
    }
    if (len < 0)
        return;
    /* The request line: METHOD SP TARGET SP HTTP/1.x */
    char method[16], target[1024], version[16];
    if (sscanf(req, "%15s %1023s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        respond_text(fd, "400 Bad Request", "", "bad request\n");
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        respond_text(fd, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET is served\n");
        return;
    }
    char *query = strchr(target, '?');
    if (query)
        *query = '\0';
    if (strcmp(target, "/metrics") != 0) {
        respond_text(fd, "404 Not Found", "", "pgark serves its metrics at /metrics\n");
        return;
    }
    struct status_view v;
    struct buf body = BUF_INIT;
    status_view_take(m->rx, &v);
    metrics_format(&v, m->rx->o->repo.cluster, &body);
    status_view_free(&v);
    respond(fd, "200 OK", "", "text/plain; version=0.0.4; charset=utf-8", (const char *)body.data,
            body.len, head);
    buf_free(&body);
}

static void *server_main(void *arg)
{
    struct metrics_server *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        int n = poll(&p, 1, POLL_MS);
        if (n <= 0)
            continue;
        int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve(m, fd);
        /* Let the client read the answer before the connection goes. */
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

/* A listening socket on host:port; -1 with the error set. */
static int listen_on(const char *host, int port)
{
    struct addrinfo hints = {0}, *res = NULL;
    char service[16];
    int fd = -1;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        err_set(ERR_CONFIG, "metrics_listen: cannot resolve \"%s\": %s", host ? host : "",
                gai_strerror(gai));
        return -1;
    }
    int saved_errno = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        saved_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        err_set_errno(ERR_CONFIG, saved_errno, "could not listen on %s%s:%d for metrics",
                      host ? host : "", host ? "" : "*", port);
    return fd;
}

struct metrics_server *metrics_server_start(struct receiver *rx, const char *host, int port)
{
    int fd = listen_on(host, port);
    if (fd < 0)
        return NULL;
    struct metrics_server *m = xcalloc(1, sizeof(*m));
    m->rx = rx;
    m->fd = fd;
    atomic_init(&m->stop, false);
    int rc = pthread_create(&m->thread, NULL, server_main, m);
    if (rc != 0) {
        err_set_errno(ERR_RUNTIME, rc, "could not start the metrics thread");
        close(fd);
        free(m);
        return NULL;
    }
    log_info("serving metrics on http://%s%s%s:%d/metrics", host && strchr(host, ':') ? "[" : "",
             host ? host : "*", host && strchr(host, ':') ? "]" : "", port);
    return m;
}

void metrics_server_stop(struct metrics_server *m)
{
    if (!m)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->fd);
    free(m);
}
