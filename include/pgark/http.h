/*
 * http.h — a small HTTP client over libcurl (the only module that includes curl).
 *
 * Promise: one request at a time per client, over a kept-alive connection
 * (http_client_do), or many at once with a concurrency limit (http_parallel_*).
 * TLS peers are always verified (system store, or ca_file). A transport failure is
 * an error: ERR_CONNECT when the server could not be reached or its certificate was
 * refused, ERR_TRANSIENT for timeouts, resets and cut-off answers, with curl's own
 * text; any HTTP answer, whatever its status, is a success of the transport and is
 * returned for the caller to judge. Header values are never logged.
 * A client is not thread-safe: use one per thread.
 */
#ifndef PGARK_HTTP_H
#define PGARK_HTTP_H

#include "pgark/mem.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_options {
    const char *ca_file;     /* PEM bundle to trust instead of the system store; copied */
    long connect_timeout_ms; /* 0: 10000 */
    /* A transfer slower than low_speed_limit bytes/s for low_speed_time_s seconds fails
     * (a stalled server); 0: 1 byte/s for 30 s. */
    long low_speed_limit;
    long low_speed_time_s;
};

struct http_header {
    const char *name;
    const char *value;
};

/* Fill buf with up to len body bytes; return the count (0 only at the end) or a
 * negative error (recorded in the error slot). */
typedef long (*http_read_fn)(void *ctx, uint8_t *buf, size_t len);
/* Go back to the start of the body (resent on a retry or a reused connection). */
typedef int (*http_rewind_fn)(void *ctx);
/* Receives response bytes of a 2xx answer; 0 to go on, negative (recorded) to stop. */
typedef int (*http_sink_fn)(void *ctx, const uint8_t *data, size_t len);

struct http_request {
    const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE" */
    const char *url;    /* already encoded */
    const struct http_header *headers;
    size_t nheaders;
    /* Body from memory (PUT/POST): body_len bytes at body... */
    const uint8_t *body;
    size_t body_len;
    /* ...or streamed: read_len bytes through read (and rewind). */
    http_read_fn read;
    http_rewind_fn rewind;
    void *read_ctx;
    uint64_t read_len;
    /* Where a 2xx body goes; NULL: into response.body. Other bodies always go to
     * response.body (at most 1 MiB kept), for the caller to parse the error. */
    http_sink_fn sink;
    void *sink_ctx;
};

struct http_response {
    long status;            /* 0 when no answer */
    int64_t content_length; /* -1 when absent */
    char *etag;             /* headers of interest, NULL when absent */
    char *content_range;
    char *date;
    char *last_modified;
    bool retryable; /* transport failure worth retrying (refused, reset, timeout) */
    struct buf body;
};

/* Release what a response holds and zero it; a zeroed response is ready for use. */
void http_response_free(struct http_response *r);

struct http_client;

/* Never fails (curl handle allocation failure aborts). */
struct http_client *http_client_new(const struct http_options *o);
void http_client_free(struct http_client *c);

/* Run one request; resp is freed first, then filled. Returns 0 when an HTTP answer
 * arrived (any status), a negative error when the transport failed or a read/sink
 * callback stopped the transfer (its error is kept). */
int http_client_do(struct http_client *c, const struct http_request *req,
                   struct http_response *resp);

/* --- many requests at once -------------------------------------------------- */

struct http_parallel;

/* Called once per request, in the thread running http_parallel_run, with rc as
 * http_client_do would return it (the error slot holds its error when rc < 0).
 * resp is owned by the runner and freed after the call. The callback may add
 * requests. Return 0 to go on, negative (recorded) to stop the run. */
typedef int (*http_done_fn)(void *ctx, int rc, struct http_response *resp);

/* concurrency: at most that many transfers (and connections) at once; >= 1. */
struct http_parallel *http_parallel_new(const struct http_options *o, int concurrency);
void http_parallel_free(struct http_parallel *p);

/* Queue a request, started no earlier than delay_ms from now. method, url and the
 * headers are copied; body, read_ctx and sink_ctx must live until done is called. */
void http_parallel_add(struct http_parallel *p, const struct http_request *req, int64_t delay_ms,
                       http_done_fn done, void *ctx);

/* Run until every queued request is done. Returns 0, or the first negative value a
 * done callback returned (transfers still running are then dropped, without their
 * callbacks). */
int http_parallel_run(struct http_parallel *p);

#endif
