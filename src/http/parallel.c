/* parallel.c — many HTTP requests at once over curl multi (see include/pgark/http.h). */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

struct par_item {
    struct http_request req; /* method, url and headers point into this item */
    char *method;
    char *url;
    struct http_header *headers;
    int64_t not_before_us;
    http_done_fn done;
    void *ctx;
    struct http_response resp;
    struct http_xfer x;
    struct par_item *next;
};

struct http_parallel {
    struct http_options opts;
    char *ca_file;
    CURLM *multi;
    int concurrency;
    CURL **idle; /* easy handles kept for reuse */
    int nidle;
    int nactive;
    struct par_item *head, *tail; /* waiting to start, in order of adding */
    struct par_item **active;     /* concurrency slots */
};

struct http_parallel *http_parallel_new(const struct http_options *o, int concurrency)
{
    http_global_init();
    struct http_parallel *p = xcalloc(1, sizeof(*p));
    if (o)
        p->opts = *o;
    p->ca_file = p->opts.ca_file ? xstrdup(p->opts.ca_file) : NULL;
    p->opts.ca_file = p->ca_file;
    p->concurrency = concurrency < 1 ? 1 : concurrency;
    p->multi = curl_multi_init();
    if (!p->multi)
        abort();
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)p->concurrency);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)p->concurrency);
    p->idle = xcalloc((size_t)p->concurrency, sizeof(*p->idle));
    p->active = xcalloc((size_t)p->concurrency, sizeof(*p->active));
    return p;
}

static void item_free(struct par_item *it)
{
    if (!it)
        return;
    for (size_t i = 0; i < it->req.nheaders; i++) {
        free((char *)it->headers[i].name);
        secure_free((char *)it->headers[i].value, strlen(it->headers[i].value));
    }
    free(it->headers);
    free(it->method);
    free(it->url);
    http_response_free(&it->resp);
    free(it);
}

void http_parallel_add(struct http_parallel *p, const struct http_request *req, int64_t delay_ms,
                       http_done_fn done, void *ctx)
{
    struct par_item *it = xcalloc(1, sizeof(*it));
    it->req = *req;
    it->method = xstrdup(req->method);
    it->url = xstrdup(req->url);
    it->headers = xcalloc(req->nheaders ? req->nheaders : 1, sizeof(*it->headers));
    for (size_t i = 0; i < req->nheaders; i++) {
        it->headers[i].name = xstrdup(req->headers[i].name);
        it->headers[i].value = xstrdup(req->headers[i].value);
    }
    it->req.method = it->method;
    it->req.url = it->url;
    it->req.headers = it->headers;
    it->not_before_us = http_now_us() + (delay_ms > 0 ? delay_ms * 1000 : 0);
    it->done = done;
    it->ctx = ctx;
    it->resp.content_length = -1;
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
}

/* Start waiting requests that are due while there is room; returns the delay in ms
 * until the next one that is not yet due (-1 when none waits). */
static long start_due(struct http_parallel *p)
{
    long wait_ms = -1;
    int64_t now = http_now_us();
    struct par_item *prev = NULL, *it = p->head;
    while (it && p->nactive < p->concurrency) {
        struct par_item *next = it->next;
        if (it->not_before_us > now) {
            long ms = (long)((it->not_before_us - now + 999) / 1000);
            if (wait_ms < 0 || ms < wait_ms)
                wait_ms = ms;
            prev = it;
            it = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            p->head = next;
        if (p->tail == it)
            p->tail = prev;
        it->next = NULL;

        CURL *e = p->nidle ? p->idle[--p->nidle] : curl_easy_init();
        if (!e)
            abort();
        it->x.easy = e;
        http_xfer_setup(&it->x, &p->opts, &it->req, &it->resp);
        curl_easy_setopt(e, CURLOPT_PRIVATE, it);
        curl_multi_add_handle(p->multi, e);
        for (int i = 0; i < p->concurrency; i++) {
            if (!p->active[i]) {
                p->active[i] = it;
                break;
            }
        }
        p->nactive++;
        it = next;
    }
    return wait_ms;
}

static void release_active(struct http_parallel *p, struct par_item *it)
{
    curl_multi_remove_handle(p->multi, it->x.easy);
    p->idle[p->nidle++] = it->x.easy;
    it->x.easy = NULL;
    for (int i = 0; i < p->concurrency; i++) {
        if (p->active[i] == it)
            p->active[i] = NULL;
    }
    p->nactive--;
}

static void drop_all(struct http_parallel *p)
{
    for (int i = 0; i < p->concurrency; i++) {
        struct par_item *it = p->active[i];
        if (!it)
            continue;
        curl_slist_free_all(it->x.headers);
        free(it->x.cb_err);
        it->x.headers = NULL;
        release_active(p, it);
        item_free(it);
    }
    while (p->head) {
        struct par_item *next = p->head->next;
        item_free(p->head);
        p->head = next;
    }
    p->tail = NULL;
}

int http_parallel_run(struct http_parallel *p)
{
    int rc = 0;
    while (p->head || p->nactive) {
        long wait_ms = start_due(p);
        int running = 0;
        curl_multi_perform(p->multi, &running);

        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct par_item *it = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&it);
            CURLcode code = msg->data.result;
            int xrc = http_xfer_finish(&it->x, code);
            release_active(p, it);
            int cbrc = it->done(it->ctx, xrc, &it->resp);
            item_free(it);
            if (cbrc < 0) {
                rc = cbrc;
                goto out;
            }
        }
        if (p->nactive == 0 && !p->head)
            break;
        if (p->nactive < p->concurrency && p->head && wait_ms < 0)
            continue; /* room and due work was added by a callback */
        long timeout = wait_ms >= 0 && wait_ms < 1000 ? wait_ms : 1000;
        if (p->nactive)
            curl_multi_poll(p->multi, NULL, 0, (int)timeout, NULL);
        else if (timeout > 0)
            curl_multi_poll(p->multi, NULL, 0, (int)timeout, NULL);
    }
out:
    if (rc < 0) {
        struct err_saved *saved = err_save();
        drop_all(p);
        err_restore(saved);
    }
    return rc;
}

void http_parallel_free(struct http_parallel *p)
{
    if (!p)
        return;
    drop_all(p);
    for (int i = 0; i < p->nidle; i++)
        curl_easy_cleanup(p->idle[i]);
    curl_multi_cleanup(p->multi);
    free(p->idle);
    free(p->active);
    free(p->ca_file);
    free(p);
}
