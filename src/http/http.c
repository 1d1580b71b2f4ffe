/* http.c — the HTTP client over libcurl (see include/pgark/http.h). */
#include "http_int.h"

#include "pgark/log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HTTP_ERROR_BODY_MAX (1024 * 1024)
#define HTTP_RECV_BUFFER (128L * 1024)
#define HTTP_SEND_BUFFER (256L * 1024)

struct http_client {
    struct http_options opts;
    char *ca_file;
    CURL *easy;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        abort();
}

void http_global_init(void)
{
    pthread_once(&global_once, global_init_once);
}

int64_t http_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void http_response_free(struct http_response *r)
{
    if (!r)
        return;
    free(r->etag);
    free(r->content_range);
    free(r->date);
    free(r->last_modified);
    buf_free(&r->body);
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
}

/* Keep a copy of a header value, trimmed of surrounding blanks and CRLF. */
static void take_value(char **slot, const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    free(*slot);
    *slot = xstrndup(v, len);
}

/* A "bytes FIRST-LAST/TOTAL" range must lie within its total (RFC 9110 14.4); the
 * unsatisfied-range form ("bytes" then "*" and the total) and unknown totals pass. */
static bool content_range_valid(const char *v)
{
    unsigned long long first, last, total;
    int n = 0;
    if (sscanf(v, "bytes %llu-%llu/%llu%n", &first, &last, &total, &n) != 3 || v[n] != '\0')
        return true;
    return first <= last && last < total;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_xfer *x = userp;
    struct http_response *r = x->resp;
    size_t len = size * nmemb;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new answer (after 100 Continue): forget the previous one's headers */
        free(r->etag), r->etag = NULL;
        free(r->content_range), r->content_range = NULL;
        free(r->date), r->date = NULL;
        free(r->last_modified), r->last_modified = NULL;
        r->content_length = -1;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    if (nlen == 4 && strncasecmp(data, "etag", 4) == 0) {
        take_value(&r->etag, v, vlen);
    } else if (nlen == 13 && strncasecmp(data, "content-range", 13) == 0) {
        take_value(&r->content_range, v, vlen);
        if (!content_range_valid(r->content_range)) {
            /* e.g. "bytes 0-0/0" for an empty object, announcing a byte that can never
             * come: waiting for it would only end when the server drops the connection */
            x->cb_rc = err_set(ERR_PROTOCOL, "%s \"%s\" failed: invalid Content-Range \"%s\"",
                               x->req.method, x->req.url, r->content_range);
            x->cb_err = err_save();
            return 0; /* curl stops the transfer */
        }
    } else if (nlen == 4 && strncasecmp(data, "date", 4) == 0) {
        take_value(&r->date, v, vlen);
    } else if (nlen == 13 && strncasecmp(data, "last-modified", 13) == 0) {
        take_value(&r->last_modified, v, vlen);
    } else if (nlen == 14 && strncasecmp(data, "content-length", 14) == 0) {
        char *t = NULL;
        take_value(&t, v, vlen);
        char *end = NULL;
        long long n = strtoll(t, &end, 10);
        r->content_length = (end != t && *end == '\0' && n >= 0) ? n : -1;
        free(t);
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_xfer *x = userp;
    size_t len = size * nmemb;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200 && x->ranged) {
        /* HTTP lets a server ignore Range; its bytes would be taken for the range's */
        x->cb_rc = err_set(ERR_PROTOCOL,
                           "%s \"%s\" failed: the server ignored the Range header (HTTP 200 "
                           "with the whole object instead of 206 with the range)",
                           x->req.method, x->req.url);
        x->cb_err = err_save();
        return 0; /* curl stops the transfer */
    }
    if (status >= 200 && status < 300 && x->req.sink) {
        int rc = x->req.sink(x->req.sink_ctx, (const uint8_t *)data, len);
        if (rc == HTTP_SINK_PAUSE)
            return CURL_WRITEFUNC_PAUSE;
        if (rc < 0) {
            x->cb_rc = rc;
            x->cb_err = err_save();
            return 0; /* curl stops with CURLE_WRITE_ERROR */
        }
        return len;
    }
    struct buf *b = &x->resp->body;
    if (status >= 200 && status < 300 && b->len + len > HTTP_BODY_MAX) {
        /* a list page or an upload's answer is a few hundred KiB: a server that sends
         * more is not one pgark should hold in memory */
        x->cb_rc = err_set(ERR_PROTOCOL, "%s \"%s\" failed: the answer is longer than %d MiB",
                           x->req.method, x->req.url, HTTP_BODY_MAX >> 20);
        x->cb_err = err_save();
        return 0; /* curl stops the transfer */
    }
    if ((status >= 200 && status < 300) || b->len < HTTP_ERROR_BODY_MAX) {
        size_t keep = len;
        if (!(status >= 200 && status < 300) && b->len + keep > HTTP_ERROR_BODY_MAX)
            keep = HTTP_ERROR_BODY_MAX - b->len;
        buf_append(b, data, keep);
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userp)
{
    struct http_xfer *x = userp;
    size_t len = size * nitems;
    if (x->req.read) {
        long n = x->req.read(x->req.read_ctx, (uint8_t *)buf, len);
        if (n < 0) {
            x->cb_rc = (int)n;
            x->cb_err = err_save();
            return CURL_READFUNC_ABORT;
        }
        return (size_t)n;
    }
    size_t left = x->req.body_len - (size_t)x->body_off;
    if (len > left)
        len = left;
    if (len)
        memcpy(buf, x->req.body + x->body_off, len);
    x->body_off += len;
    return len;
}

static int on_seek(void *userp, curl_off_t offset, int origin)
{
    struct http_xfer *x = userp;
    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    if (x->req.read) {
        if (!x->req.rewind)
            return CURL_SEEKFUNC_CANTSEEK;
        if (x->req.rewind(x->req.read_ctx) < 0) {
            x->cb_rc = err_code();
            free(x->cb_err);
            x->cb_err = err_save();
            return CURL_SEEKFUNC_FAIL;
        }
        return CURL_SEEKFUNC_OK;
    }
    x->body_off = 0;
    return CURL_SEEKFUNC_OK;
}

void http_xfer_setup(struct http_xfer *x, const struct http_options *o,
                     const struct http_request *req, struct http_response *resp)
{
    CURL *e = x->easy;
    x->req = *req;
    x->resp = resp;
    x->body_off = 0;
    x->cb_rc = 0;
    x->cb_err = NULL;
    x->errbuf[0] = '\0';
    x->started_us = http_now_us();
    x->ranged = false;
    for (size_t i = 0; i < req->nheaders; i++)
        x->ranged = x->ranged || strcasecmp(req->headers[i].name, "Range") == 0;
    http_response_free(resp);

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit > 0 ? o->low_speed_limit : 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     o->low_speed_time_s > 0 ? o->low_speed_time_s : 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* fewer, larger callbacks and socket calls per MiB moved */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_SEND_BUFFER);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pgark");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);

    x->headers = NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        char *line = xasprintf("%s: %s", req->headers[i].name, req->headers[i].value);
        struct curl_slist *n = curl_slist_append(x->headers, line);
        secure_free(line, strlen(line));
        if (!n)
            abort();
        x->headers = n;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

    bool has_body = req->read || req->body || strcmp(req->method, "PUT") == 0 ||
                    strcmp(req->method, "POST") == 0;
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        /* an upload with a known length: S3 refuses chunked bodies */
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(req->read ? req->read_len : req->body_len));
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
        if (strcmp(req->method, "PUT") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

void http_err_discard(struct err_saved *saved)
{
    if (!saved)
        return;
    struct err_saved *mine = err_save();
    err_restore(saved);
    err_clear();
    err_restore(mine);
}

void http_xfer_drop(struct http_xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    http_err_discard(x->cb_err);
    x->cb_err = NULL;
}

int http_xfer_finish(struct http_xfer *x, CURLcode code)
{
    struct http_response *r = x->resp;
    int rc = 0;

    curl_slist_free_all(x->headers); /* may hold signatures: not kept */
    x->headers = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (x->cb_err) {
        err_restore(x->cb_err);
        x->cb_err = NULL;
        rc = x->cb_rc < 0 ? x->cb_rc : err_code();
        r->status = 0;
    } else if (code != CURLE_OK) {
        const char *text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
        enum err_kind kind = ERR_TRANSIENT;
        r->retryable = true;
        switch (code) {
        case CURLE_COULDNT_CONNECT:
            kind = ERR_CONNECT;
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            kind = ERR_CONNECT;
            r->retryable = false;
            break;
        default:
            break;
        }
        /* the text may be "SSL certificate problem: ..." — no secret in it */
        size_t n = strlen(text);
        while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
            n--;
        rc = err_set(kind, "%s \"%s\" failed: %.*s", x->req.method, x->req.url, (int)n, text);
        r->status = 0;
    }
    log_debug("http: %s %s -> %ld (%lld ms)", x->req.method, x->req.url, r->status,
              (long long)((http_now_us() - x->started_us) / 1000));
    return rc;
}

struct http_client *http_client_new(const struct http_options *o)
{
    http_global_init();
    struct http_client *c = xcalloc(1, sizeof(*c));
    if (o)
        c->opts = *o;
    c->ca_file = c->opts.ca_file ? xstrdup(c->opts.ca_file) : NULL;
    c->opts.ca_file = c->ca_file;
    c->easy = curl_easy_init();
    if (!c->easy)
        abort();
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy);
    free(c->ca_file);
    free(c);
}

int http_client_do(struct http_client *c, const struct http_request *req,
                   struct http_response *resp)
{
    struct http_xfer x;
    memset(&x, 0, sizeof(x));
    x.easy = c->easy;
    http_xfer_setup(&x, &c->opts, req, resp);
    CURLcode code = curl_easy_perform(c->easy);
    return http_xfer_finish(&x, code);
}
