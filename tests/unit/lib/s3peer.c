/*
 * s3peer.c — see s3peer.h. One connection at a time, one request each (Connection:
 * close): the driver's requests here are few and small.
 */
#include "s3peer.h"

#include "pgark/hash.h"
#include "pgark/mem.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct object {
    char *key;
    uint8_t *data;
    size_t len;
    int64_t mtime_ms;
};

struct s3peer {
    int fd, port;
    char *bucket;
    pthread_t thread;
    volatile int stop;
    pthread_mutex_t mu;
    struct object *objs;
    size_t n, cap;
    struct buf log;
    int requests, conditional;
    char *etag; /* answered to PUTs instead of the MD5 when set */
    int ignore_range;
    s3peer_hook hook;
    void *hook_ctx;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Index of key, or -1. Caller holds mu. */
static ssize_t find(struct s3peer *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->objs[i].key, key) == 0)
            return (ssize_t)i;
    return -1;
}

static void put_locked(struct s3peer *p, const char *key, const void *data, size_t len,
                       int64_t mtime_ms)
{
    ssize_t i = find(p, key);
    if (i < 0) {
        if (p->n == p->cap) {
            p->cap = p->cap ? 2 * p->cap : 16;
            p->objs = xrealloc(p->objs, p->cap * sizeof(*p->objs));
        }
        i = (ssize_t)p->n++;
        p->objs[i] = (struct object){xstrdup(key), NULL, 0, 0};
    }
    free(p->objs[i].data);
    p->objs[i].data = xmalloc(len ? len : 1);
    memcpy(p->objs[i].data, data, len);
    p->objs[i].len = len;
    p->objs[i].mtime_ms = mtime_ms;
}

static int remove_locked(struct s3peer *p, const char *key)
{
    ssize_t i = find(p, key);
    if (i < 0)
        return 0;
    free(p->objs[i].key);
    free(p->objs[i].data);
    p->objs[i] = p->objs[--p->n];
    return 1;
}

void s3peer_put(struct s3peer *p, const char *key, const void *data, size_t len, int64_t mtime_s)
{
    pthread_mutex_lock(&p->mu);
    put_locked(p, key, data, len, mtime_s ? mtime_s * 1000 : now_ms());
    pthread_mutex_unlock(&p->mu);
}

int s3peer_remove(struct s3peer *p, const char *key)
{
    pthread_mutex_lock(&p->mu);
    int rc = remove_locked(p, key);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

char *s3peer_get(struct s3peer *p, const char *key, size_t *len)
{
    char *out = NULL;
    pthread_mutex_lock(&p->mu);
    ssize_t i = find(p, key);
    if (i >= 0) {
        out = xstrndup((const char *)p->objs[i].data, p->objs[i].len);
        if (len)
            *len = p->objs[i].len;
    }
    pthread_mutex_unlock(&p->mu);
    return out;
}

static int cmp_obj(const void *a, const void *b)
{
    return strcmp(((const struct object *)a)->key, ((const struct object *)b)->key);
}

char *s3peer_keys(struct s3peer *p)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "");
    pthread_mutex_lock(&p->mu);
    qsort(p->objs, p->n, sizeof(*p->objs), cmp_obj);
    for (size_t i = 0; i < p->n; i++)
        buf_appendf(&b, "%s\n", p->objs[i].key);
    pthread_mutex_unlock(&p->mu);
    return buf_steal(&b);
}

char *s3peer_take_log(struct s3peer *p)
{
    pthread_mutex_lock(&p->mu);
    buf_append_str(&p->log, "");
    char *t = buf_steal(&p->log);
    pthread_mutex_unlock(&p->mu);
    return t;
}

int s3peer_conditional_puts(struct s3peer *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->conditional;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void s3peer_set_etag(struct s3peer *p, const char *etag)
{
    pthread_mutex_lock(&p->mu);
    free(p->etag);
    p->etag = etag ? xstrdup(etag) : NULL;
    pthread_mutex_unlock(&p->mu);
}

void s3peer_ignore_range(struct s3peer *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->ignore_range = on;
    pthread_mutex_unlock(&p->mu);
}

void s3peer_set_hook(struct s3peer *p, s3peer_hook hook, void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->hook = hook;
    p->hook_ctx = ctx;
    pthread_mutex_unlock(&p->mu);
}

int s3peer_port(const struct s3peer *p)
{
    return p->port;
}

/* --- HTTP --------------------------------------------------------------------------- */

static void send_all(int c, const void *data, size_t len)
{
    const char *d = data;
    while (len > 0) {
        ssize_t w = send(c, d, len, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        d += w;
        len -= (size_t)w;
    }
}

static void answer(int c, int status, const char *reason, const char *headers, const void *body,
                   size_t len, bool head)
{
    char *h = xasprintf("HTTP/1.1 %d %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        status, reason, headers ? headers : "", len);
    send_all(c, h, strlen(h));
    if (!head && len)
        send_all(c, body, len);
    free(h);
}

static void answer_error(int c, int status, const char *reason, const char *code, bool head)
{
    char *body = xasprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code>"
                           "<Message>%s</Message></Error>",
                           code, reason);
    answer(c, status, reason, "Content-Type: application/xml\r\n", body, strlen(body), head);
    free(body);
}

static char *url_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (s[i] == '%' && i + 2 < n && sscanf(s + i + 1, "%2x", &v) == 1) {
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* The value of a query parameter (decoded; caller frees), NULL when absent. */
static char *query_param(const char *query, const char *name)
{
    size_t nl = strlen(name);
    for (const char *q = query; q && *q;) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len >= nl && strncmp(q, name, nl) == 0 && (len == nl || q[nl] == '='))
            return len == nl ? xstrdup("") : url_decode(q + nl + 1, len - nl - 1);
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* A header's value (caller frees), NULL when absent. */
static char *header(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            return xstrndup(v, (size_t)(e - v));
        }
    }
    return NULL;
}

static void iso_date(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

static void http_date(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void etag_of(const uint8_t *data, size_t len, char out[2 * MD5_LEN + 3])
{
    uint8_t m[MD5_LEN];
    md5(len ? (const void *)data : "", len, m);
    out[0] = '"';
    hex_encode(m, sizeof(m), out + 1);
    out[2 * MD5_LEN + 1] = '"';
    out[2 * MD5_LEN + 2] = '\0';
}

static void list_objects(struct s3peer *p, int c, const char *prefix)
{
    struct buf b = BUF_INIT;
    buf_appendf(&b,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>%s</Name>"
                "<Prefix>%s</Prefix><IsTruncated>false</IsTruncated>",
                p->bucket, prefix);
    pthread_mutex_lock(&p->mu);
    qsort(p->objs, p->n, sizeof(*p->objs), cmp_obj);
    for (size_t i = 0; i < p->n; i++) {
        if (strncmp(p->objs[i].key, prefix, strlen(prefix)) != 0)
            continue;
        char when[40], etag[2 * MD5_LEN + 3];
        iso_date(p->objs[i].mtime_ms, when, sizeof(when));
        etag_of(p->objs[i].data, p->objs[i].len, etag);
        buf_appendf(&b,
                    "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag>"
                    "<Size>%zu</Size></Contents>",
                    p->objs[i].key, when, etag, p->objs[i].len);
    }
    pthread_mutex_unlock(&p->mu);
    buf_append_str(&b, "</ListBucketResult>");
    answer(c, 200, "OK", "Content-Type: application/xml\r\n", b.data, b.len, false);
    buf_free(&b);
}

static void get_object(struct s3peer *p, int c, const char *key, const char *range, bool head)
{
    pthread_mutex_lock(&p->mu);
    ssize_t i = find(p, key);
    if (i < 0) {
        pthread_mutex_unlock(&p->mu);
        answer_error(c, 404, "Not Found", "NoSuchKey", head);
        return;
    }
    struct object *o = &p->objs[i];
    char when[40], etag[2 * MD5_LEN + 3];
    http_date(o->mtime_ms, when, sizeof(when));
    etag_of(o->data, o->len, etag);
    unsigned long long a = 0, z = o->len ? o->len - 1 : 0;
    int status = 200;
    char extra[128] = "";
    if (range && !head && !p->ignore_range) {
        int n = sscanf(range, "bytes=%llu-%llu", &a, &z);
        if (n < 1 || a >= o->len) {
            pthread_mutex_unlock(&p->mu);
            answer_error(c, 416, "Range Not Satisfiable", "InvalidRange", head);
            return;
        }
        if (n < 2 || z >= o->len)
            z = o->len - 1;
        status = 206;
        snprintf(extra, sizeof(extra), "Content-Range: bytes %llu-%llu/%zu\r\n", a, z, o->len);
    }
    size_t len = o->len ? (size_t)(z - a + 1) : 0;
    char *h = xasprintf("Last-Modified: %s\r\nETag: %s\r\n%s", when, etag, extra);
    uint8_t *copy = xmalloc(len ? len : 1);
    memcpy(copy, o->data + a, len);
    pthread_mutex_unlock(&p->mu);
    answer(c, status, status == 200 ? "OK" : "Partial Content", h, copy, len, head);
    free(copy);
    free(h);
}

static void serve(struct s3peer *p, int c)
{
    struct buf in = BUF_INIT;
    char tmp[8192];
    char *end = NULL;
    while (!(end = strstr(in.data ? (char *)in.data : "", "\r\n\r\n"))) {
        ssize_t n = recv(c, tmp, sizeof(tmp), 0);
        if (n <= 0 || in.len > 65536)
            goto out;
        buf_append(&in, tmp, (size_t)n);
    }
    size_t head_len = (size_t)(end - (char *)in.data) + 4;
    char *head = xstrndup((char *)in.data, head_len);
    char method[16], target[4096];
    if (sscanf(head, "%15s %4095s", method, target) != 2) {
        free(head);
        goto out;
    }
    char *cl = header(head, "Content-Length");
    char *expect = header(head, "Expect");
    char *inm = header(head, "If-None-Match");
    char *range = header(head, "Range");
    size_t want = cl ? strtoull(cl, NULL, 10) : 0;
    if (expect && strcasecmp(expect, "100-continue") == 0)
        send_all(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    while (in.len - head_len < want) {
        ssize_t n = recv(c, tmp, sizeof(tmp), 0);
        if (n <= 0)
            break;
        buf_append(&in, tmp, (size_t)n);
    }
    const uint8_t *body = in.data + head_len;
    size_t body_len = in.len - head_len < want ? in.len - head_len : want;

    /* path style: /bucket[/key][?query] */
    char *q = strchr(target, '?');
    const char *query = q ? q + 1 : "";
    if (q)
        *q = '\0';
    size_t bl = strlen(p->bucket);
    char *key = NULL;
    if (target[0] == '/' && strncmp(target + 1, p->bucket, bl) == 0 &&
        (target[1 + bl] == '\0' || target[1 + bl] == '/')) {
        const char *k = target + 1 + bl + (target[1 + bl] == '/');
        key = url_decode(k, strlen(k));
    }
    char *list_type = query_param(query, "list-type");
    bool listing = strcmp(method, "GET") == 0 && key && !*key && list_type;
    char *prefix = listing ? query_param(query, "prefix") : NULL;
    const char *what = listing ? "LIST" : method;
    const char *subject = listing ? (prefix ? prefix : "") : (key ? key : "");

    pthread_mutex_lock(&p->mu);
    int nth = ++p->requests;
    s3peer_hook hook = p->hook;
    void *hook_ctx = p->hook_ctx;
    buf_appendf(&p->log, "%s %s%s\n", what, subject, inm ? " if-none-match" : "");
    if (inm && strcmp(method, "PUT") == 0)
        p->conditional++;
    pthread_mutex_unlock(&p->mu);
    if (hook)
        hook(p, what, subject, nth, hook_ctx);

    if (!key) {
        answer_error(c, 404, "Not Found", "NoSuchBucket", strcmp(method, "HEAD") == 0);
    } else if (listing) {
        list_objects(p, c, subject);
    } else if (!*key || *query) {
        answer_error(c, 501, "Not Implemented", "NotImplemented", strcmp(method, "HEAD") == 0);
    } else if (strcmp(method, "PUT") == 0) {
        char etag[2 * MD5_LEN + 3];
        etag_of(body, body_len, etag);
        pthread_mutex_lock(&p->mu);
        put_locked(p, key, body, body_len, now_ms()); /* If-None-Match ignored, as s3rver */
        char *h = xasprintf("ETag: %s\r\n", p->etag ? p->etag : etag);
        pthread_mutex_unlock(&p->mu);
        answer(c, 200, "OK", h, NULL, 0, false);
        free(h);
    } else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        get_object(p, c, key, range, strcmp(method, "HEAD") == 0);
    } else if (strcmp(method, "DELETE") == 0) {
        s3peer_remove(p, key);
        answer(c, 204, "No Content", NULL, NULL, 0, true);
    } else {
        answer_error(c, 501, "Not Implemented", "NotImplemented", false);
    }
    free(prefix);
    free(list_type);
    free(key);
    free(range);
    free(inm);
    free(expect);
    free(cl);
    free(head);
out:
    buf_free(&in);
}

static void *peer_main(void *arg)
{
    struct s3peer *p = arg;
    while (!p->stop) {
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int c = accept(p->fd, NULL, NULL);
        if (c < 0)
            continue;
        serve(p, c);
        close(c);
    }
    return NULL;
}

struct s3peer *s3peer_start(const char *bucket)
{
    struct s3peer *p = xcalloc(1, sizeof(*p));
    p->bucket = xstrdup(bucket);
    pthread_mutex_init(&p->mu, NULL);
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (p->fd < 0 || bind(p->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(p->fd, (struct sockaddr *)&a, &len) != 0 || listen(p->fd, 16) != 0)
        goto fail;
    p->port = ntohs(a.sin_port);
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        goto fail;
    return p;
fail:
    if (p->fd >= 0)
        close(p->fd);
    pthread_mutex_destroy(&p->mu);
    free(p->bucket);
    free(p);
    return NULL;
}

void s3peer_stop(struct s3peer *p)
{
    if (!p)
        return;
    p->stop = 1;
    pthread_join(p->thread, NULL);
    close(p->fd);
    for (size_t i = 0; i < p->n; i++) {
        free(p->objs[i].key);
        free(p->objs[i].data);
    }
    free(p->objs);
    buf_free(&p->log);
    free(p->etag);
    pthread_mutex_destroy(&p->mu);
    free(p->bucket);
    free(p);
}
