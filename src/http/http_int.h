/* http_int.h — one transfer's state, shared by the client and the parallel runner. */
#ifndef PGARK_HTTP_INT_H
#define PGARK_HTTP_INT_H

#include "pgark/error.h"
#include "pgark/http.h"

#include <curl/curl.h>

struct http_xfer {
    CURL *easy;
    struct curl_slist *headers;
    struct http_request req; /* pointers as given by the caller of setup */
    struct http_response *resp;
    uint64_t body_off;        /* position in a memory body */
    struct err_saved *cb_err; /* error recorded by a read or sink callback */
    int cb_rc;
    int64_t started_us;
    bool ranged; /* the request asks for a range: a 200 is the whole body, refused */
    char errbuf[CURL_ERROR_SIZE];
};

/* A request's sink may return this to pause the transfer (curl keeps the bytes and
 * offers them again once the transfer is resumed with curl_easy_pause). */
#define HTTP_SINK_PAUSE 1

void http_global_init(void);

/* Reset x->easy and configure it for req (kept by pointer: must outlive the transfer). */
void http_xfer_setup(struct http_xfer *x, const struct http_options *o,
                     const struct http_request *req, struct http_response *resp);

/* After the transfer: turn curl's result into 0 or an error (and log at debug);
 * releases the per-request header list. */
int http_xfer_finish(struct http_xfer *x, CURLcode code);

/* Drop a saved error without touching the calling thread's own slot. */
void http_err_discard(struct err_saved *saved);

/* Release what a transfer holds when it is dropped without http_xfer_finish. */
void http_xfer_drop(struct http_xfer *x);

int64_t http_now_us(void);

#endif
