/* s3_int.h — shared internals of the S3 driver. */
#ifndef PGARK_S3_INT_H
#define PGARK_S3_INT_H

#include "pgark/http.h"
#include "pgark/storage_s3.h"
#include "cred_int.h"
#include "sigv4_int.h"

#include <pthread.h>
#include <stdbool.h>

struct s3 {
    struct storage base; /* first: the generic part */
    char *scheme;        /* "http" or "https" */
    char *host;          /* Host header value: [bucket.]host[:port] */
    char *base_path;     /* "" (virtual host) or "/BUCKET" (path style) */
    char *bucket;
    char *prefix;        /* "" or ending in '/' */
    struct s3_cred cred; /* access key id, secret, token: re-read when their files change */
    size_t part_size;
    int concurrency;
    struct http_options http;
    char *ca_file;
    struct sigv4 signer;
    struct http_engine *engine; /* every request of this handle, from any thread */
    uint64_t list_max_pages;    /* S3_LIST_MAX_PAGES; tests lower it */
};

/* A listing whose pages do not end is an error, not a loop: after this many pages (10^8
 * keys at 1000 a page, more than any repository pgark can keep track of), after this
 * many pages in a row without a key, or when the server hands back the continuation
 * token it was just given. */
#define S3_LIST_MAX_PAGES 100000
#define S3_LIST_MAX_EMPTY_PAGES 10

struct s3_list_entry {
    char *key; /* the whole key, the driver's prefix included */
    uint64_t size;
    int64_t mtime_us;
};

/* The <Contents> of one ListObjectsV2 page (resp's body) into (*out)[0 .. *count), *out
 * grown as needed (capacity *cap); the caller frees the keys and *out.
 * ERR_PROTOCOL for an entry without a key below s's prefix or a readable size. */
int s3_list_page_parse(struct s3 *s, const struct http_response *resp, struct s3_list_entry **out,
                       size_t *count, size_t *cap);

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* One S3 request as the driver describes it, before URL building and signing. */
struct s3_req {
    const char *method;
    const char *key; /* full object key (prefix included); NULL: the bucket */
    const struct sigv4_pair *query;
    size_t nquery;
    const char *range; /* Range header value or NULL */
    /* body from memory, or streamed (read/rewind as in http.h) with its hashes given */
    const uint8_t *body;
    size_t body_len;
    http_read_fn read;
    http_rewind_fn rewind;
    void *read_ctx;
    uint64_t read_len;
    const char *sha256_hex; /* required with read; computed for a memory body */
    const char *md5_b64;    /* Content-MD5; computed for a memory body (if non-empty) */
    /* a 2xx answer's ETag must be the MD5 of the memory body sent (single PUTs) */
    bool check_etag;
    /* If-None-Match: * — a PUT that must not replace an object (412: ERR_EXISTS) */
    bool if_none_match;
    /* a 2xx body goes here, in the thread waiting for the request */
    http_sink_fn sink;
    void *sink_ctx;
    /* called in the engine thread before every attempt (retries included), with the
     * body bytes already handed to the sink, e.g. to move a Range on */
    int (*before_attempt)(void *ctx, struct s3_req *req, uint64_t received);
    void *attempt_ctx;
};

/* The hashes of a memory body, computed once per request (not per attempt). */
struct s3_hashes {
    char sha256_hex[2 * 32 + 1];
    char md5_hex[2 * 16 + 1];
    char md5_b64[25];
};

/* A request ready for http: URL, headers (Authorization included); freed by
 * s3_signed_free (it wipes the signature). */
struct s3_signed {
    struct http_request http;
    char *url;
    struct http_header headers[9];
    char *values[9]; /* owned header values */
    size_t nheaders;
    uint64_t cred_generation; /* of the credentials it was signed with */
};

/* One request through the engine: signed just before each attempt, judged after it,
 * retried with backoff. Lives until the request has ended. */
struct s3_call {
    struct s3 *s;
    struct s3_req *r;
    struct s3_signed sg; /* the attempt in flight */
    int attempt;
    int sent;          /* attempts signed so far (a later one rewinds a streamed body) */
    bool cred_retried; /* retried once already with credentials changed since */
    struct s3_hashes h;
};

void s3_sign(struct s3 *s, const struct s3_req *r, struct s3_signed *out);
void s3_signed_free(struct s3_signed *sg);

/* Run r with retries. 0 on a 2xx answer (resp filled); else the error is set (kind
 * from the S3 <Code>) and resp holds the last answer. */
int s3_request(struct s3 *s, struct s3_req *r, struct http_response *resp);

/* Prepare c for r (both must live until the request ends): hashes a memory body now,
 * in the calling thread, and points r at the hashes. Fills spec for http_group_start. */
void s3_call_init(struct s3_call *c, struct s3 *s, struct s3_req *r, struct http_call_spec *spec);

/* One object transfer (a GET of a range, or a single PUT) and what it needs to
 * live until it ends, synchronous or in a batch. */
struct s3_read_state {
    storage_sink_fn sink;
    void *ctx;
    uint64_t offset, length, delivered;
    char range[64];
};

struct s3_transfer {
    struct s3_call call; /* first: the call's ctx is the transfer */
    struct s3_req req;
    struct s3_read_state rs;
    char *path;
    char *key;
};

/* A GET of [offset, offset+length) of path to sink (length > 0). */
void s3_get_init(struct s3 *s, struct s3_transfer *t, const char *path, uint64_t offset,
                 uint64_t length, storage_sink_fn sink, void *ctx, struct http_call_spec *spec);
/* The outcome of that GET, from its request's rc and last answer: a short object is
 * ERR_INTEGRITY. Releases what t holds. */
int s3_get_end(struct s3 *s, struct s3_transfer *t, int rc, struct http_response *resp);

/* Asynchronous transfers (storage_ops async_*). */
struct storage_async *s3_async_new(struct storage *st);
int s3_async_put(struct storage_async *a, const char *path, const void *data, size_t len,
                 void *tag);
int s3_async_get(struct storage_async *a, const char *path, uint64_t offset, uint64_t length,
                 storage_sink_fn sink, void *ctx, void *tag);
int s3_async_next(struct storage_async *a, void **tag, int *rc);
int s3_async_put_fd(struct storage_async *a, const char *path, int fd, uint64_t len, void *tag);
void s3_async_cancel(struct storage_async *a);
void s3_async_free(struct storage_async *a);

/* Judge a finished exchange (rc from http, resp): 0 for a 2xx, else set the error
 * and return it; *retry says whether it is worth another attempt. */
int s3_judge(struct s3 *s, const struct s3_req *r, int rc, struct http_response *resp, bool *retry,
             bool *slow_down);

/* Sleep before attempt number `attempt` (1 = first retry). */
void s3_backoff(struct s3 *s, int attempt, bool slow_down);
int64_t s3_backoff_ms(struct s3 *s, int attempt, bool slow_down);

/* "prefix" + path; caller frees. */
char *s3_key(struct s3 *s, const char *path);

/* --- minimal XML ------------------------------------------------------------- */

/* Find the next <tag>...</tag> (or <tag/>) in [p, end); returns the content start and
 * sets *cend (content end) and *next (after the element); NULL when absent. */
const char *s3_xml_find(const char *p, const char *end, const char *tag, const char **cend,
                        const char **next);
/* The unescaped text of the first <tag> in [p, end); NULL when absent. Caller frees. */
char *s3_xml_get(const char *p, const char *end, const char *tag);
/* Unescape entities (&amp; &lt; &gt; &quot; &apos; &#N; &#xH;); NULL if malformed. */
char *s3_xml_unescape(const char *p, size_t len);

#endif
