/*
 * s3peer.h — a scripted S3 peer for the unit tests: one bucket in memory behind plain
 * HTTP on a loopback port, enough of S3 for the driver's single PUT, GET (one range at
 * most), HEAD, DELETE and ListObjectsV2 (one page). It checks no signature and, like
 * s3rver, ignores If-None-Match: a PUT always replaces (it counts the PUTs that carried
 * the header). Every request is logged as "METHOD key" ("LIST prefix" for a listing;
 * " if-none-match" appended when the header came), one line each, so a test can assert
 * the exact sequence a command sent. A hook, called before each request is answered,
 * lets a test play another client at an exact point (it may put and remove objects).
 * Objects carry a LastModified that a test may set in the past.
 */
#ifndef PGARK_TEST_S3PEER_H
#define PGARK_TEST_S3PEER_H

#include <stddef.h>
#include <stdint.h>

struct s3peer;

/* Called on the peer's thread before it answers a request (method "LIST" for a
 * listing; key is the listing's prefix then); n counts the requests from 1. */
typedef void (*s3peer_hook)(struct s3peer *p, const char *method, const char *key, int n,
                            void *ctx);

/* Start on a free loopback port, serving bucket; NULL when it could not. */
struct s3peer *s3peer_start(const char *bucket);
int s3peer_port(const struct s3peer *p);
void s3peer_set_hook(struct s3peer *p, s3peer_hook hook, void *ctx);
/* Stop the thread, free everything. NULL is a no-op. */
void s3peer_stop(struct s3peer *p);

/* Put an object as another client would (not logged); mtime_s is its LastModified
 * in seconds since the epoch, 0 for now. */
void s3peer_put(struct s3peer *p, const char *key, const void *data, size_t len, int64_t mtime_s);
/* Remove an object (not logged); 1 when it was there. */
int s3peer_remove(struct s3peer *p, const char *key);
/* A copy of an object's bytes, NUL-terminated (caller frees); NULL when absent. */
char *s3peer_get(struct s3peer *p, const char *key, size_t *len);
/* The keys held, one per line in byte order (caller frees). */
char *s3peer_keys(struct s3peer *p);
/* The requests answered so far, one per line (caller frees); the log is then emptied. */
char *s3peer_take_log(struct s3peer *p);
/* Answer every PUT with this ETag (quoted as given) instead of the body's MD5, as AWS
 * does for objects encrypted with SSE-KMS; NULL: the MD5 again. */
void s3peer_set_etag(struct s3peer *p, const char *etag);
/* Ignore Range headers: every GET answers 200 with the whole object (HTTP allows a
 * server that). */
void s3peer_ignore_range(struct s3peer *p, int on);
/* How many PUTs carried If-None-Match. */
int s3peer_conditional_puts(struct s3peer *p);

#endif
