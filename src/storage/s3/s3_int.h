/* s3_int.h — shared internals of the S3 driver. */
#ifndef PGARK_S3_INT_H
#define PGARK_S3_INT_H

#include "pgark/http.h"
#include "pgark/storage_s3.h"
#include "sigv4_int.h"

#include <pthread.h>
#include <stdbool.h>

struct s3 {
    struct storage base; /* first: the generic part */
    char *scheme;        /* "http" or "https" */
    char *host;          /* Host header value: [bucket.]host[:port] */
    char *base_path;     /* "" (virtual host) or "/BUCKET" (path style) */
    char *bucket;
    char *prefix; /* "" or ending in '/' */
    char *session_token;
    size_t part_size;
    int concurrency;
    struct http_options http;
    char *ca_file;
    struct sigv4 signer;
    pthread_mutex_t lock; /* guards the idle client pool */
    struct http_client **idle;
    int nidle, cap_idle;
};

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
    http_sink_fn sink;
    void *sink_ctx;
    /* called before every attempt (retries included), e.g. to move a Range on */
    int (*before_attempt)(void *ctx, struct s3_req *req);
    void *attempt_ctx;
};

/* A request ready for http: URL, headers (Authorization included); freed by
 * s3_signed_free (it wipes the signature). */
struct s3_signed {
    struct http_request http;
    char *url;
    struct http_header headers[8];
    char *values[8]; /* owned header values */
    size_t nheaders;
};

void s3_sign(struct s3 *s, const struct s3_req *r, struct s3_signed *out);
void s3_signed_free(struct s3_signed *sg);

/* Run r with retries. 0 on a 2xx answer (resp filled); else the error is set (kind
 * from the S3 <Code>) and resp holds the last answer. */
int s3_request(struct s3 *s, struct s3_req *r, struct http_response *resp);

/* Judge a finished exchange (rc from http, resp): 0 for a 2xx, else set the error
 * and return it; *retry says whether it is worth another attempt. */
int s3_judge(struct s3 *s, const struct s3_req *r, int rc, struct http_response *resp, bool *retry,
             bool *slow_down);

/* Sleep before attempt number `attempt` (1 = first retry). */
void s3_backoff(struct s3 *s, int attempt, bool slow_down);
int64_t s3_backoff_ms(struct s3 *s, int attempt, bool slow_down);

struct http_client *s3_client_get(struct s3 *s);
void s3_client_put(struct s3 *s, struct http_client *c);

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
void s3_xml_escape(struct buf *b, const char *s);

#endif
