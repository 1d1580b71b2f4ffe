/*
 * http.h — a small HTTP client over libcurl (the only module that includes curl).
 *
 * Promise: one request at a time per client, over a kept-alive connection
 * (http_client_do), or every request of a process through one engine thread with a
 * shared connection pool and a concurrency limit (http_engine_*, below).
 * TLS peers are always verified (system store, or ca_file). A transport failure is
 * an error: ERR_CONNECT when the server could not be reached or its certificate was
 * refused, ERR_TRANSIENT for timeouts, resets and cut-off answers, with curl's own
 * text; any HTTP answer, whatever its status, is a success of the transport and is
 * returned for the caller to judge. Header values are never logged.
 * A client is not thread-safe: use one per thread. An engine is shared by all threads;
 * a group belongs to the thread that made it.
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
    /* Where a 2xx body goes; NULL: into response.body, where a body longer than
     * HTTP_BODY_MAX fails the request (ERR_PROTOCOL). Other bodies always go to
     * response.body (at most 1 MiB kept), for the caller to parse the error. */
    http_sink_fn sink;
    void *sink_ctx;
};

/* The longest 2xx body kept in memory (a response without a sink). */
#define HTTP_BODY_MAX (16 * 1024 * 1024)

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

/* --- the transfer engine: every request of a process over one multi handle --------
 *
 * An engine owns one thread that drives all its transfers over a single curl multi
 * handle: one pool of kept-alive connections shared by every thread of the process,
 * and at most `concurrency` transfers at once. Any thread starts calls in a group
 * (its own) and waits for them there; the engine thread signs and sends each attempt
 * (through the call's callbacks), retries it after the delay its `after` callback
 * asks for without holding up other transfers, and queues a 2xx body for the waiting
 * thread, which hands it to the call's sink. A sink therefore runs in the thread that
 * started the call, never in the engine thread; a call whose body is not taken (the
 * group's thread is busy) is paused after HTTP_ENGINE_INBOX bytes, so memory stays
 * bounded. Calls wait in order of start for a free transfer slot, with one
 * exception that keeps nesting from deadlocking: a call started by a thread that
 * already has calls of another group in flight (a sink or a done handler doing a
 * synchronous request) does not wait for a slot.
 */

#define HTTP_ENGINE_INBOX (1024 * 1024)

struct http_engine;
struct http_group;
struct http_call;

struct http_call_spec {
    /* Engine thread, just before each attempt (a slot is free, any retry delay has
     * passed): fill *req, whose pointers must stay valid until `after` returns;
     * req->sink must stay NULL (the body goes to `sink` below). received is the count
     * of 2xx body bytes queued for the sink so far (to resume a download). Return 0, or
     * negative (recorded) to end the call with that error (`after` is not called). */
    int (*before)(void *ctx, struct http_request *req, uint64_t received);
    /* Engine thread, after each attempt, with rc and resp as http_client_do gives them
     * (resp is the call's, kept until http_call_finish). Return 0 or a negative error
     * (recorded) to end the call; or set *retry_ms >= 0 (it starts at -1) to run
     * another attempt after that delay. Called for a cancelled attempt too, then with
     * rc -ERR_CANCELED, and its retry is ignored. */
    int (*after)(void *ctx, int rc, struct http_response *resp, int64_t *retry_ms);
    void *ctx;
    /* Where a 2xx body goes, in the group's thread (NULL: into the response body).
     * A negative return (recorded) cancels the call with that error. */
    http_sink_fn sink;
    void *sink_ctx;
};

/* concurrency >= 1. The thread is started by the first call. Never fails. */
struct http_engine *http_engine_new(const struct http_options *o, int concurrency);
/* Every group must have been freed. NULL is a no-op. */
void http_engine_free(struct http_engine *e);
/* Since e started: the most bytes one transfer held for its sink (at most
 * HTTP_ENGINE_INBOX but for a single larger piece from curl), and how many times a
 * transfer was paused because its sink had not taken them. For tests. */
void http_engine_inbox_stats(struct http_engine *e, size_t *peak, uint64_t *pauses);

/* A set of calls started and waited for by one thread. Never fails. */
struct http_group *http_group_new(struct http_engine *e);
/* Cancel the calls still in the group, wait for the engine to let go of them and
 * free them (without their results). NULL is a no-op. */
void http_group_free(struct http_group *g);

/* Start a call (spec is copied). Returns NULL with the error set only when called
 * from the engine thread itself (a request from inside a callback would deadlock). */
struct http_call *http_group_start(struct http_group *g, const struct http_call_spec *spec);
/* Wait until a call of g has ended and return it (NULL when g holds no call).
 * Meanwhile, hands the bytes that arrive for every call of g to its sink. */
struct http_call *http_group_wait(struct http_group *g);
/* Cancel every call of g (they still come out of http_group_wait, with
 * ERR_CANCELED unless they had ended otherwise); their sinks get no more bytes. */
void http_group_cancel(struct http_group *g);
/* The spec's ctx of a call. */
void *http_call_ctx(const struct http_call *c);
/* The result of an ended call (from http_group_wait): 0 or its error (restored in the
 * calling thread's slot); the last response is moved to resp (freed first). Frees c. */
int http_call_finish(struct http_call *c, struct http_response *resp);

/* Start one call in a group of its own and wait for it: the synchronous request. */
int http_engine_run(struct http_engine *e, const struct http_call_spec *spec,
                    struct http_response *resp);

#endif
