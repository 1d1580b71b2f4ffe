/* request.c — signing, sending, judging and retrying S3 requests. */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

char *s3_key(struct s3 *s, const char *path)
{
    return xasprintf("%s%s", s->prefix, path);
}

static void add_header(struct s3_signed *sg, const char *name, char *owned_value)
{
    sg->headers[sg->nheaders].name = name;
    sg->headers[sg->nheaders].value = owned_value;
    sg->values[sg->nheaders] = owned_value;
    sg->nheaders++;
}

/* Long: the SigV4 steps in the order each needs the one before (date and payload hashes,
 * canonical URI and query, signed headers, authorization), then the headers as sent; the
 * headers signed and the headers sent must match, and side by side they can be checked.
 */
void s3_sign(struct s3 *s, const struct s3_req *r, struct s3_signed *out)
{
    char amz_date[32];
    char sha_hex[SHA256_HEX_LEN + 1];
    const char *sha = r->sha256_hex;
    const char *md5_b64 = r->md5_b64;
    char md5buf[32];
    struct buf uri = BUF_INIT;
    time_t now = time(NULL);
    struct tm tm;

    struct s3_cred_snap cred;
    memset(out, 0, sizeof(*out));
    s3_cred_get(&s->cred, &cred);
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);

    bool sends_body = strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0;
    if (!sha) {
        uint8_t d[SHA256_LEN];
        sha256(r->body ? (const void *)r->body : "", r->body ? r->body_len : 0, d);
        sha = hex_encode(d, sizeof(d), sha_hex);
    }
    if (!md5_b64 && sends_body && !r->read && (r->body_len || strcmp(r->method, "PUT") == 0)) {
        uint8_t d[MD5_LEN];
        md5(r->body ? (const void *)r->body : "", r->body ? r->body_len : 0, d);
        md5_b64 = base64_encode(d, sizeof(d), md5buf);
    }

    buf_append_str(&uri, s->base_path);
    if (r->key) {
        buf_append_str(&uri, "/");
        sigv4_uri_encode(&uri, r->key, true);
    } else if (!*s->base_path) {
        buf_append_str(&uri, "/"); /* virtual host: the bucket is "/" */
    }
    char *query = sigv4_canonical_query(r->query, r->nquery);
    out->url =
        xasprintf("%s://%s%s%s%s", s->scheme, s->host, (char *)uri.data, *query ? "?" : "", query);

    struct sigv4_pair sign[6];
    size_t nsign = 0;
    sign[nsign++] = (struct sigv4_pair){"host", s->host};
    sign[nsign++] = (struct sigv4_pair){"x-amz-content-sha256", sha};
    sign[nsign++] = (struct sigv4_pair){"x-amz-date", amz_date};
    if (cred.token)
        sign[nsign++] = (struct sigv4_pair){"x-amz-security-token", cred.token};
    if (md5_b64)
        sign[nsign++] = (struct sigv4_pair){"content-md5", md5_b64};
    char *auth = sigv4_authorization_with(&s->signer, cred.access_key_id, cred.secret,
                                          cred.generation, r->method, (char *)uri.data, r->query,
                                          r->nquery, sign, nsign, sha, amz_date, NULL);

    add_header(out, "Host", xstrdup(s->host));
    add_header(out, "x-amz-content-sha256", xstrdup(sha));
    add_header(out, "x-amz-date", xstrdup(amz_date));
    if (cred.token)
        add_header(out, "x-amz-security-token", xstrdup(cred.token));
    if (md5_b64)
        add_header(out, "Content-MD5", xstrdup(md5_b64));
    if (r->range)
        add_header(out, "Range", xstrdup(r->range));
    if (r->if_none_match)
        add_header(out, "If-None-Match", xstrdup("*"));
    add_header(out, "Authorization", auth);

    out->http = (struct http_request){
        .method = r->method,
        .url = out->url,
        .headers = out->headers,
        .nheaders = out->nheaders,
        .body = r->body,
        .body_len = r->body_len,
        .read = r->read,
        .rewind = r->rewind,
        .read_ctx = r->read_ctx,
        .read_len = r->read_len,
        .sink = r->sink,
        .sink_ctx = r->sink_ctx,
    };
    out->cred_generation = cred.generation;
    s3_cred_snap_free(&cred);
    free(query);
    buf_free(&uri);
}

void s3_signed_free(struct s3_signed *sg)
{
    for (size_t i = 0; i < sg->nheaders; i++)
        secure_free(sg->values[i], strlen(sg->values[i]));
    free(sg->url);
    memset(sg, 0, sizeof(*sg));
}

static bool code_is(const char *code, const char *const *list)
{
    for (; code && *list; list++) {
        if (strcmp(code, *list) == 0)
            return true;
    }
    return false;
}

int s3_judge(struct s3 *s, const struct s3_req *r, int rc, struct http_response *resp, bool *retry,
             bool *slow_down)
{
    static const char *const retry_codes[] = {"InternalError",
                                              "SlowDown",
                                              "ServiceUnavailable",
                                              "RequestTimeout",
                                              "ConditionalRequestConflict",
                                              NULL};
    static const char *const auth_codes[] = {"AccessDenied",
                                             "SignatureDoesNotMatch",
                                             "InvalidAccessKeyId",
                                             "ExpiredToken",
                                             "InvalidToken",
                                             "RequestTimeTooSkewed",
                                             NULL};
    static const char *const integrity_codes[] = {"BadDigest", "XAmzContentSHA256Mismatch",
                                                  "InvalidDigest", NULL};
    const char *name = s->base.name;
    *retry = false;
    *slow_down = false;

    if (rc < 0) {
        /* transport failure: name the repository in the message */
        enum err_kind kind = err_kind();
        char *msg = xstrdup(err_message());
        rc = err_set(kind, "repository \"%s\": %s", name, msg);
        if (kind == ERR_CONNECT)
            err_hint("check that the endpoint \"%s://%s\" of repository \"%s\" is right and its "
                     "server is up",
                     s->scheme, s->host, name);
        free(msg);
        *retry = resp->retryable;
        return rc;
    }
    long st = resp->status;
    if (st >= 200 && st < 300)
        return 0;

    const char *b = (const char *)resp->body.data, *e = b ? b + resp->body.len : NULL;
    char *code = b ? s3_xml_get(b, e, "Code") : NULL;
    char *message = b ? s3_xml_get(b, e, "Message") : NULL;
    if (message) {
        size_t n = strlen(message);
        while (n && (message[n - 1] == '.' || message[n - 1] == ' '))
            message[--n] = '\0';
    }
    char *what =
        r->key ? xasprintf("object \"%s\"", r->key) : xasprintf("bucket \"%s\"", s->bucket);
    /* "HTTP 400 " before a code; without one (a HEAD has no body) detail is the status */
    char status[32];
    snprintf(status, sizeof(status), "HTTP %ld ", st);
    char *detail = code ? xasprintf("%s%s%s", code, message ? ": " : "", message ? message : "")
                        : xasprintf("HTTP %ld", st);

    if (st == 500 || st == 502 || st == 503 || st == 504 || code_is(code, retry_codes)) {
        *retry = true;
        *slow_down = st == 503 || (code && strcmp(code, "SlowDown") == 0);
        rc = err_set(ERR_TRANSIENT, "s3 %s of %s in repository \"%s\" failed: %s", r->method, what,
                     name, detail);
    } else if (code && strcmp(code, "NoSuchBucket") == 0) {
        rc = err_set(ERR_NOT_FOUND, "bucket \"%s\" of repository \"%s\" does not exist (%s)",
                     s->bucket, name, detail);
        err_hint("create the bucket, or correct the bucket name of repository \"%s\"", name);
    } else if (st == 404) {
        rc = err_set(ERR_NOT_FOUND, "%s does not exist in repository \"%s\" (%s)", what, name,
                     detail);
    } else if (st == 412 && r->if_none_match) {
        rc = err_set(ERR_EXISTS, "%s already exists in repository \"%s\" (%s)", what, name, detail);
    } else if (st == 403 || code_is(code, auth_codes)) {
        rc = err_set(ERR_AUTH, "s3 %s of %s in repository \"%s\" refused: %s", r->method, what,
                     name, detail);
        err_hint("check the access key id, secret and permissions of repository \"%s\"", name);
    } else if (st == 501 || (code && strcmp(code, "NotImplemented") == 0)) {
        /* e.g. a conditional PUT on Swift's S3 API: the caller may have another way */
        rc = err_set(ERR_UNSUPPORTED, "s3 %s of %s in repository \"%s\" failed: %s%s", r->method,
                     what, name, code ? status : "", detail);
    } else if (st == 416 || code_is(code, integrity_codes)) {
        rc = err_set(ERR_INTEGRITY, "s3 %s of %s in repository \"%s\" failed: %s", r->method, what,
                     name, detail);
    } else {
        rc = err_set(ERR_PROTOCOL, "s3 %s of %s in repository \"%s\" failed: %s%s", r->method, what,
                     name, code ? status : "", detail);
    }
    free(code);
    free(message);
    free(what);
    free(detail);
    return rc;
}

int64_t s3_backoff_ms(struct s3 *s, int attempt, bool slow_down)
{
    int64_t ms = s->base.retry_base_ms > 0 ? s->base.retry_base_ms : 1;
    for (int i = 1; i < attempt && ms < 30000; i++)
        ms *= 2;
    if (slow_down)
        ms *= 2;
    if (ms > 60000)
        ms = 60000;
    uint32_t rnd = 0;
    if (random_bytes(&rnd, sizeof(rnd)) < 0) {
        err_clear();
        rnd = 0;
    }
    /* full jitter on the upper half: between ms/2 and ms */
    return ms / 2 + (int64_t)(rnd % (uint32_t)(ms / 2 + 1));
}

void s3_backoff(struct s3 *s, int attempt, bool slow_down)
{
    int64_t ms = s3_backoff_ms(s, attempt, slow_down);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Compare a single-part ETag ("<md5 hex>", quoted) with the MD5 of what was sent. */
static int check_etag(struct s3 *s, const struct s3_req *r, const char *md5_hex, const char *etag)
{
    const char *e = etag ? etag : "";
    size_t elen = strlen(e);
    if (elen >= 2 && e[0] == '"' && e[elen - 1] == '"')
        e++, elen -= 2;
    if (elen == 2 * MD5_LEN && strncasecmp(e, md5_hex, elen) == 0)
        return 0;
    int rc = err_set(ERR_INTEGRITY,
                     "object \"%s\" stored in repository \"%s\" has ETag %s, expected the MD5 %s "
                     "of the data sent",
                     r->key, s->base.name, etag ? etag : "(none)", md5_hex);
    /* the store checked our Content-MD5: damage in transit was refused, not stored */
    err_hint("pgark checks every upload by its ETag, which S3 makes the MD5 of the data; "
             "AWS does not for objects encrypted with SSE-KMS or SSE-C: use SSE-S3 or no "
             "bucket encryption (pgark's own encryption: covers the data)");
    return rc;
}

/* Engine thread, before each attempt: move the request on, sign it now. */
static int call_before(void *ctx, struct http_request *req, uint64_t received)
{
    struct s3_call *c = ctx;
    struct s3_req *r = c->r;
    int rc = 0;
    if (r->before_attempt && (rc = r->before_attempt(r->attempt_ctx, r, received)) < 0)
        return rc;
    if (c->sent > 0 && r->read && r->rewind && (rc = r->rewind(r->read_ctx)) < 0)
        return rc;
    s3_sign(c->s, r, &c->sg);
    c->sent++;
    *req = c->sg.http;
    req->sink = NULL; /* the engine hands the body to r->sink in the waiting thread */
    req->sink_ctx = NULL;
    return 0;
}

/* Engine thread, after each attempt: judge, check the ETag, or ask for a retry. */
static int call_after(void *ctx, int rc, struct http_response *resp, int64_t *retry_ms)
{
    struct s3_call *c = ctx;
    struct s3 *s = c->s;
    bool retry, slow;
    uint64_t signed_with = c->sg.cred_generation;
    s3_signed_free(&c->sg);
    rc = s3_judge(s, c->r, rc, resp, &retry, &slow);
    if (rc == 0 && c->r->check_etag)
        rc = check_etag(s, c->r, c->h.md5_hex, resp->etag);
    /* Refused for its credentials: a rotated key or an expired token the files may
     * already hold the successor of. Sent again at once, once, if they changed. */
    if (rc == -ERR_AUTH && !c->cred_retried && s3_cred_look_now(&s->cred) != signed_with) {
        c->cred_retried = true;
        log_detail("repository \"%s\": s3 %s of \"%s\" refused with the previous credentials; "
                   "sending it again with the new ones",
                   s->base.name, c->r->method, c->r->key ? c->r->key : s->bucket);
        *retry_ms = 0;
        return rc;
    }
    if (rc < 0 && retry && c->attempt < s->base.retries) {
        c->attempt++;
        log_detail("repository \"%s\": retrying s3 %s of \"%s\" (retry %d of %d): %s", s->base.name,
                   c->r->method, c->r->key ? c->r->key : s->bucket, c->attempt, s->base.retries,
                   err_message());
        *retry_ms = s3_backoff_ms(s, c->attempt, slow);
    }
    return rc;
}

void s3_call_init(struct s3_call *c, struct s3 *s, struct s3_req *r, struct http_call_spec *spec)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->r = r;
    bool sends_body = strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0;
    if (!r->sha256_hex && !r->read) {
        if (sends_body && (r->body_len || r->check_etag)) {
            /* once per request, here in the caller's thread: not per attempt, and not
             * in the engine thread that every transfer of the process shares */
            uint8_t d[SHA256_LEN];
            sha256(r->body_len ? (const void *)r->body : "", r->body_len, d);
            hex_encode(d, sizeof(d), c->h.sha256_hex);
            uint8_t m[MD5_LEN];
            md5(r->body_len ? (const void *)r->body : "", r->body_len, m);
            hex_encode(m, sizeof(m), c->h.md5_hex);
            base64_encode(m, sizeof(m), c->h.md5_b64);
            r->sha256_hex = c->h.sha256_hex;
            r->md5_b64 = c->h.md5_b64;
        } else if (!r->body_len) {
            r->sha256_hex = S3_EMPTY_SHA256;
        }
    }
    *spec = (struct http_call_spec){.before = call_before,
                                    .after = call_after,
                                    .ctx = c,
                                    .sink = r->sink,
                                    .sink_ctx = r->sink_ctx};
}

int s3_request(struct s3 *s, struct s3_req *r, struct http_response *resp)
{
    struct s3_call c;
    struct http_call_spec spec;
    s3_call_init(&c, s, r, &spec);
    return http_engine_run(s->engine, &spec, resp);
}
