/* faultproxy.c — see faultproxy.h. */
#include "faultproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    struct faultproxy *p;
    int client;
    pthread_t thread;
    bool used;
    volatile bool finished;
};

struct faultproxy {
    int listen_fd;
    int port;
    int upstream_port;
    pthread_t thread;
    pthread_mutex_t lock;
    volatile bool stop;
    enum faultproxy_mode mode;
    int count;
    size_t after_bytes;
    int requests;
    int faults;
    int connections;
    int puts_open, puts_max; /* PUTs relayed and not answered yet; the most at once */
    int delay_ms;            /* each request held this long before it is relayed */
    struct conn conns[FAULTPROXY_MAX_CONN];
};

static bool send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void hard_close(int fd)
{
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Header value of name in head (NUL-terminated), or NULL. */
static const char *header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nlen) == 0 && s[nlen] == ':') {
            s += nlen + 1;
            while (*s == ' ')
                s++;
            size_t n = strcspn(s, "\r");
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, s, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

/* A PUT was relayed (open) or answered; count how many wait for their answer at once. */
static void put_open_close(struct faultproxy *p, bool open)
{
    pthread_mutex_lock(&p->lock);
    p->puts_open += open ? 1 : -1;
    if (p->puts_open > p->puts_max)
        p->puts_max = p->puts_open;
    pthread_mutex_unlock(&p->lock);
}

/* Whether data (from upstream) holds the status line of a final (not 1xx) answer. */
static bool final_status(const char *data, size_t len)
{
    for (const char *at = data; (at = memmem(at, len - (size_t)(at - data), "HTTP/1.", 7)) != NULL;
         at++) {
        size_t left = len - (size_t)(at - data);
        if (left >= 10 && at[8] == ' ' && at[9] >= '2' && at[9] <= '5')
            return true;
    }
    return false;
}

/* Relay one connection, request by request. */
static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct faultproxy *p = c->p;
    int up = -1;
    char buf[65536];
    size_t have = 0;        /* client bytes buffered in buf */
    size_t body_left = 0;   /* body bytes of the current request still to forward */
    size_t reset_after = 0; /* when resetting: body bytes still allowed through */
    bool resetting = false, hanging = false;
    bool put_waiting = false; /* a PUT relayed, its answer not seen yet */

    while (!p->stop) {
        struct pollfd fds[2] = {{c->client, POLLIN, 0}, {up, POLLIN, 0}};
        int n = poll(fds, up >= 0 ? 2 : 1, 100);
        if (n < 0 && errno != EINTR)
            break;
        if (up >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char tmp[65536];
            ssize_t got = recv(up, tmp, sizeof(tmp), 0);
            if (got > 0 && put_waiting && final_status(tmp, (size_t)got)) {
                put_waiting = false;
                put_open_close(p, false);
            }
            if (got <= 0 || !send_all(c->client, tmp, (size_t)got))
                break;
        }
        if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t got = recv(c->client, buf + have, sizeof(buf) - have - 1, 0);
        if (got <= 0)
            break;
        have += (size_t)got;
        while (have) {
            if (body_left) {
                size_t take = have < body_left ? have : body_left;
                if (resetting && take >= reset_after) {
                    if (reset_after && up >= 0)
                        send_all(up, buf, reset_after);
                    goto reset;
                }
                if (resetting)
                    reset_after -= take;
                if (up < 0 || !send_all(up, buf, take))
                    goto out;
                memmove(buf, buf + take, have - take);
                have -= take;
                body_left -= take;
                continue;
            }
            buf[have] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (!end) {
                if (have >= sizeof(buf) - 1)
                    goto out; /* head too large */
                break;
            }
            size_t head_len = (size_t)(end - buf) + 4;
            char val[64];
            size_t clen = header(buf, "Content-Length", val, sizeof(val)) ? strtoul(val, 0, 10) : 0;
            bool expect = header(buf, "Expect", val, sizeof(val)) != NULL;
            bool conditional = header(buf, "If-None-Match", val, sizeof(val)) != NULL;

            pthread_mutex_lock(&p->lock);
            p->requests++;
            enum faultproxy_mode mode =
                p->count > 0 || p->mode == FAULTPROXY_HANG ? p->mode : FAULTPROXY_PASS;
            if (mode == FAULTPROXY_PRECONDITION && !conditional)
                mode = FAULTPROXY_PASS;
            if (mode != FAULTPROXY_PASS) {
                p->faults++;
                if (mode != FAULTPROXY_HANG)
                    p->count--;
            }
            size_t after = p->after_bytes;
            int delay_ms = p->delay_ms;
            pthread_mutex_unlock(&p->lock);
            if (delay_ms > 0)
                nanosleep(&(struct timespec){delay_ms / 1000, (long)(delay_ms % 1000) * 1000000},
                          NULL);

            if (mode == FAULTPROXY_HANG) {
                hanging = true;
                goto out;
            }
            if (mode == FAULTPROXY_SLOWDOWN || mode == FAULTPROXY_PRECONDITION) {
                /* drain the body unless the client waits for 100-continue */
                size_t drain = expect ? 0 : clen;
                size_t inbuf = have - head_len < drain ? have - head_len : drain;
                drain -= inbuf;
                while (drain) {
                    char tmp[65536];
                    ssize_t r = recv(c->client, tmp, drain < sizeof(tmp) ? drain : sizeof(tmp), 0);
                    if (r <= 0)
                        goto out;
                    drain -= (size_t)r;
                }
                static const char slow[] =
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
                    "<Message>Please reduce your request rate.</Message></Error>";
                static const char precondition[] =
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                    "PreconditionFailed</Code><Message>At least one of the pre-conditions you "
                    "specified did not hold</Message><Condition>If-None-Match</Condition></Error>";
                bool pre = mode == FAULTPROXY_PRECONDITION;
                const char *body = pre ? precondition : slow;
                char resp[768];
                int len =
                    snprintf(resp, sizeof(resp),
                             "HTTP/1.1 %s\r\nContent-Type: application/xml\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                             pre ? "412 Precondition Failed" : "503 Slow Down", strlen(body), body);
                send_all(c->client, resp, (size_t)len);
                shutdown(c->client, SHUT_WR);
                goto out;
            }
            if (up < 0 && (up = connect_upstream(p->upstream_port)) < 0)
                goto out;
            if (!send_all(up, buf, head_len))
                goto out;
            if (strncmp(buf, "PUT ", 4) == 0 && !put_waiting) {
                put_waiting = true;
                put_open_close(p, true);
            }
            memmove(buf, buf + head_len, have - head_len);
            have -= head_len;
            body_left = clen;
            resetting = mode == FAULTPROXY_RESET;
            reset_after = after;
            if (resetting && clen == 0)
                goto reset;
        }
    }
    goto out;
reset:
    hard_close(c->client);
    c->client = -1;
    if (up >= 0)
        hard_close(up);
    up = -1;
out:
    if (put_waiting)
        put_open_close(p, false);
    while (hanging && !p->stop) {
        /* swallow whatever comes, answer nothing, until the client gives up */
        struct pollfd fd = {c->client, POLLIN, 0};
        if (poll(&fd, 1, 100) > 0) {
            char tmp[4096];
            if (recv(c->client, tmp, sizeof(tmp), 0) <= 0)
                break;
        }
    }
    if (c->client >= 0)
        close(c->client);
    if (up >= 0)
        close(up);
    c->finished = true;
    return NULL;
}

static void *accept_main(void *arg)
{
    struct faultproxy *p = arg;
    while (!p->stop) {
        struct pollfd fd = {p->listen_fd, POLLIN, 0};
        if (poll(&fd, 1, 100) <= 0)
            continue;
        int cfd = accept(p->listen_fd, NULL, NULL);
        if (cfd < 0)
            continue;
        pthread_mutex_lock(&p->lock);
        p->connections++;
        pthread_mutex_unlock(&p->lock);
        struct conn *slot = NULL;
        for (int i = 0; i < FAULTPROXY_MAX_CONN && !slot; i++) {
            struct conn *c = &p->conns[i];
            if (c->used && c->finished) {
                pthread_join(c->thread, NULL);
                c->used = false;
            }
            if (!c->used)
                slot = c;
        }
        if (!slot) {
            close(cfd); /* bounded: refuse beyond the limit */
            continue;
        }
        *slot = (struct conn){.p = p, .client = cfd, .used = true};
        if (pthread_create(&slot->thread, NULL, conn_main, slot) != 0) {
            close(cfd);
            slot->used = false;
        }
    }
    return NULL;
}

struct faultproxy *faultproxy_start(int upstream_port)
{
    struct faultproxy *p = calloc(1, sizeof(*p));
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->upstream_port = upstream_port;
    pthread_mutex_init(&p->lock, NULL);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(p->listen_fd, 64) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "faultproxy: cannot listen on loopback: %s\n", strerror(errno));
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    if (pthread_create(&p->thread, NULL, accept_main, p) != 0) {
        close(p->listen_fd);
        free(p);
        return NULL;
    }
    return p;
}

int faultproxy_port(const struct faultproxy *p)
{
    return p->port;
}

void faultproxy_set(struct faultproxy *p, enum faultproxy_mode mode, int count, size_t after_bytes)
{
    pthread_mutex_lock(&p->lock);
    p->mode = mode;
    p->count = count;
    p->after_bytes = after_bytes;
    pthread_mutex_unlock(&p->lock);
}

void faultproxy_set_delay(struct faultproxy *p, int delay_ms)
{
    pthread_mutex_lock(&p->lock);
    p->delay_ms = delay_ms;
    pthread_mutex_unlock(&p->lock);
}

int faultproxy_requests(struct faultproxy *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->requests;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int faultproxy_connections(struct faultproxy *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->connections;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int faultproxy_max_puts_open(struct faultproxy *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->puts_max;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int faultproxy_faults(struct faultproxy *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->faults;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void faultproxy_stop(struct faultproxy *p)
{
    if (!p)
        return;
    p->stop = true;
    pthread_join(p->thread, NULL);
    for (int i = 0; i < FAULTPROXY_MAX_CONN; i++) {
        if (p->conns[i].used)
            pthread_join(p->conns[i].thread, NULL);
    }
    close(p->listen_fd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
