/*
 * faultproxy.h — a fault-injecting HTTP/1.1 proxy on loopback, for tests.
 *
 * Listens on 127.0.0.1 (a free port) and relays to 127.0.0.1:upstream_port,
 * request by request (requests must carry Content-Length, as pgark's do), so a
 * fault configured now applies to the next request even on a kept-alive
 * connection. At most FAULTPROXY_MAX_CONN connections at once.
 */
#ifndef PGARK_TEST_FAULTPROXY_H
#define PGARK_TEST_FAULTPROXY_H

#include <stddef.h>

#define FAULTPROXY_MAX_CONN 64

enum faultproxy_mode {
    FAULTPROXY_PASS = 0,
    FAULTPROXY_SLOWDOWN,     /* answer the next `count` requests with 503 SlowDown */
    FAULTPROXY_RESET,        /* reset the next `count` requests after `after_bytes` of body */
    FAULTPROXY_HANG,         /* read requests, never answer; such a connection stays
                              * silent until the client closes it */
    FAULTPROXY_PRECONDITION, /* answer the next `count` requests that carry If-None-Match
                              * with AWS's 412 PreconditionFailed (others pass): what AWS
                              * answers a conditional PUT where the object exists */
};

struct faultproxy;

/* NULL on failure (message on stderr). */
struct faultproxy *faultproxy_start(int upstream_port);
int faultproxy_port(const struct faultproxy *p);
void faultproxy_set(struct faultproxy *p, enum faultproxy_mode mode, int count, size_t after_bytes);
/* Hold each request delay_ms before relaying it (0: none), as a store far away would:
 * for measuring what waits on round trips. */
void faultproxy_set_delay(struct faultproxy *p, int delay_ms);
/* Requests seen (heads read) and faults injected since start. */
int faultproxy_requests(struct faultproxy *p);
int faultproxy_faults(struct faultproxy *p);
/* Client connections accepted since start. */
int faultproxy_connections(struct faultproxy *p);
/* The most PUT requests relayed and not answered yet at one time, since start: how
 * many uploads the client had in flight at once. */
int faultproxy_max_puts_open(struct faultproxy *p);
void faultproxy_stop(struct faultproxy *p);

#endif
