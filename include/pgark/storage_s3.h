/*
 * storage_s3.h — the S3 storage driver (AWS S3 and S3-compatible servers).
 *
 * Promise: the storage.h semantics over an S3 bucket. Object key = prefix + path.
 * A write is one PutObject (below part_size) or a completed multipart upload, so a
 * reader sees the whole object or nothing; every body is sent with Content-MD5 and
 * its real SHA-256, and single-part ETags are checked against the MD5. Requests are
 * signed by pgark (SigV4). Transient failures (5xx, SlowDown, RequestTimeout,
 * resets, timeouts) are retried per request with exponential backoff and jitter,
 * bounded by storage.retries / retry_base_ms. The secret and session token are
 * registered with the logger's redaction and never logged. Credentials given as files
 * follow the files: a rotated key or renewed token is used without a restart. Thread-safe: every
 * request of a handle, from any thread, runs through the handle's one transfer
 * engine (http.h): one pool of kept-alive connections and at most `concurrency`
 * transfers at once; a request waiting for its retry holds up no other. The
 * asynchronous storage_batch_* calls of storage.h keep many transfers in flight
 * from one thread.
 */
#ifndef PGARK_STORAGE_S3_H
#define PGARK_STORAGE_S3_H

#include "pgark/storage.h"

#include <stddef.h>
#include <stdint.h>

enum storage_s3_uri_style {
    STORAGE_S3_URI_PATH = 0, /* https://endpoint/BUCKET/KEY */
    STORAGE_S3_URI_HOST,     /* https://BUCKET.endpoint/KEY (virtual host) */
};

#define STORAGE_S3_MIN_PART_SIZE (5u * 1024 * 1024)
#define STORAGE_S3_DEFAULT_PART_SIZE (16u * 1024 * 1024)

struct storage_s3_options {
    const char *name;     /* repository name, for messages */
    const char *endpoint; /* "http[s]://host[:port]" */
    const char *region;   /* NULL: "us-east-1" */
    const char *bucket;
    const char *prefix; /* NULL or "": bucket root; a missing trailing '/' is added */
    enum storage_s3_uri_style uri_style;
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL: $AWS_SESSION_TOKEN if set */
    /* Where those came from, when from files (else NULL): the driver looks at them every
     * credentials_check_ms (0: 5 s) and at once when a request is refused for its
     * credentials, and signs with what they hold when they change (a refused request is
     * then sent again once with the new ones). */
    const char *access_key_id_file;
    const char *secret_access_key_file;
    const char *session_token_file; /* only with session_token */
    int64_t credentials_check_ms;
    const char *ca_file; /* NULL: system trust store */
    size_t part_size;    /* 0: 16 MiB; at least 5 MiB */
    int concurrency;     /* transfers at once, over all threads; 0: 4 */
    /* transport limits (0: defaults of http.h: 10 s connect, stalled for 30 s) */
    long connect_timeout_ms;
    long low_speed_time_s;
};

/* Everything is copied. NULL with ERR_CONFIG set when an option is invalid. */
struct storage *storage_s3_new(const struct storage_s3_options *o);

/* One object for storage_s3_put_many. */
struct storage_s3_object {
    const char *path;
    const void *data;
    size_t len;
};

/* Write n small objects (each under part_size) with up to `concurrency` requests at
 * once (a storage_batch); each is a single PUT, retried on its own. 0 when all are
 * stored, else the first error (others may or may not have been stored). */
int storage_s3_put_many(struct storage *s, const struct storage_s3_object *objs, size_t n);

/* Remove paths with DeleteObjects (1000 per request); a missing object is not an
 * error. 0 or the first per-key error, naming the key and the S3 code. */
int storage_s3_remove_many(struct storage *s, const char *const *paths, size_t n);

#endif
