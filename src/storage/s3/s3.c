/* s3.c — the S3 driver: construction, read, info, list, remove (see storage_s3.h). */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct storage_write *s3_write_open(struct storage *st, const char *path, uint64_t size_hint);
int s3_write_data(struct storage_write *w, const uint8_t *data, size_t len);
int s3_write_commit(struct storage_write *w);
void s3_write_abort(struct storage_write *w);

/* --- read --------------------------------------------------------------------- */

/* Engine thread: ask for what is still missing (a retry resumes after the bytes the
 * sink already has). */
static int read_before_attempt(void *ctx, struct s3_req *r, uint64_t received)
{
    struct s3_read_state *rs = ctx;
    uint64_t start = rs->offset + received;
    if (start == 0 && rs->length == STORAGE_TO_END) {
        r->range = NULL;
    } else if (rs->length == STORAGE_TO_END) {
        snprintf(rs->range, sizeof(rs->range), "bytes=%llu-", (unsigned long long)start);
        r->range = rs->range;
    } else {
        snprintf(rs->range, sizeof(rs->range), "bytes=%llu-%llu", (unsigned long long)start,
                 (unsigned long long)(rs->offset + rs->length - 1));
        r->range = rs->range;
    }
    return 0;
}

static int read_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct s3_read_state *rs = ctx;
    if (rs->length != STORAGE_TO_END && rs->delivered + len > rs->length)
        return err_set(ERR_PROTOCOL, "s3 server sent more than the requested range");
    rs->delivered += len;
    return rs->sink(rs->ctx, data, len);
}

static int s3_info(struct storage *st, const char *path, struct storage_info *info);

/* The object's size from an answer: the total of its Content-Range ("bytes A-B/T"
 * or, on a 416, "bytes * /T" without the space), else the <ActualObjectSize> of an
 * InvalidRange error; -1 when the answer does not say. */
static int64_t answered_size(const struct http_response *resp)
{
    const char *cr = resp->content_range;
    const char *slash = cr ? strrchr(cr, '/') : NULL;
    if (slash && slash[1] >= '0' && slash[1] <= '9') {
        char *end = NULL;
        unsigned long long n = strtoull(slash + 1, &end, 10);
        if (*end == '\0' && n <= INT64_MAX)
            return (int64_t)n;
    }
    if (resp->status == 416 && resp->body.len) {
        const char *b = (const char *)resp->body.data;
        char *text = s3_xml_get(b, b + resp->body.len, "ActualObjectSize");
        char *end = NULL;
        unsigned long long n = text ? strtoull(text, &end, 10) : 0;
        bool ok = text && end != text && *end == '\0' && n <= INT64_MAX;
        free(text);
        if (ok)
            return (int64_t)n;
    }
    return -1;
}

/* The same wording as the posix driver: the object is shorter than the range read. */
static int truncated_error(struct s3 *s, const char *key, uint64_t offset, uint64_t length,
                           uint64_t size)
{
    if (length == STORAGE_TO_END)
        return err_set(ERR_INTEGRITY,
                       "object \"%s\" in repository \"%s\" is truncated: reading from offset "
                       "%llu but its size is %llu",
                       key, s->base.name, (unsigned long long)offset, (unsigned long long)size);
    return err_set(ERR_INTEGRITY,
                   "object \"%s\" in repository \"%s\" is truncated: reading %llu bytes at "
                   "offset %llu but its size is %llu",
                   key, s->base.name, (unsigned long long)length, (unsigned long long)offset,
                   (unsigned long long)size);
}

/* The size of an object a read found too short: from the answer, else a HEAD
 * (whose error replaces the current one when it fails). */
static int size_after_short_read(struct storage *st, const char *path,
                                 const struct http_response *resp, uint64_t *size)
{
    int64_t n = answered_size(resp);
    if (n >= 0) {
        *size = (uint64_t)n;
        return 0;
    }
    struct err_saved *saved = err_save();
    struct storage_info info;
    int rc = s3_info(st, path, &info);
    struct err_saved *head_error = rc < 0 ? err_save() : NULL;
    err_restore(saved);
    if (rc < 0) {
        err_restore(head_error);
        return rc;
    }
    *size = info.size;
    return 0;
}

void s3_get_init(struct s3 *s, struct s3_transfer *g, const char *path, uint64_t offset,
                 uint64_t length, storage_sink_fn sink, void *ctx, struct http_call_spec *spec)
{
    memset(g, 0, sizeof(*g));
    g->rs = (struct s3_read_state){sink, ctx, offset, length, 0, ""};
    g->path = xstrdup(path);
    g->key = s3_key(s, path);
    g->req = (struct s3_req){.method = "GET",
                             .key = g->key,
                             .sink = read_sink,
                             .sink_ctx = &g->rs,
                             .before_attempt = read_before_attempt,
                             .attempt_ctx = &g->rs};
    s3_call_init(&g->call, s, &g->req, spec);
}

/* Reading from exactly the end of an object to its end is an empty read. */
int s3_get_end(struct s3 *s, struct s3_transfer *g, int rc, struct http_response *resp)
{
    struct s3_read_state *rs = &g->rs;
    uint64_t start = rs->offset + rs->delivered;
    uint64_t size;
    if (rc < 0) {
        /* A 416, or an answer whose Content-Range puts our start at or past the end
         * (s3rver answers "bytes 0-0/0" for any range of an empty object), means the
         * object is shorter than the range; anything else is the request's error. */
        int64_t n = answered_size(resp);
        if (resp->status != 416 && !(n >= 0 && start >= (uint64_t)n))
            goto out;
        if ((rc = size_after_short_read(&s->base, g->path, resp, &size)) < 0)
            goto out;
        err_clear();
        if (rs->length == STORAGE_TO_END && start == size) {
            rc = 0; /* reading from exactly the end to the end: an empty read */
            goto out;
        }
        rc = truncated_error(s, g->key, rs->offset, rs->length, size);
        goto out;
    }
    if (rs->length != STORAGE_TO_END && rs->delivered < rs->length) {
        if ((rc = size_after_short_read(&s->base, g->path, resp, &size)) < 0)
            goto out;
        rc = truncated_error(s, g->key, rs->offset, rs->length, size);
    }
out:
    free(g->path);
    free(g->key);
    return rc;
}

static int s3_read(struct storage *st, const char *path, uint64_t offset, uint64_t length,
                   storage_sink_fn sink, void *ctx)
{
    struct s3 *s = (struct s3 *)st;
    struct http_response resp = {0};
    struct storage_info info;
    int rc;

    if (length == 0) {
        /* nothing to fetch: only check the object and the range */
        if ((rc = s3_info(st, path, &info)) < 0)
            return rc;
        if (offset > info.size) {
            char *key = s3_key(s, path);
            rc = truncated_error(s, key, offset, length, info.size);
            free(key);
        }
        return rc;
    }
    struct s3_transfer g;
    struct http_call_spec spec;
    s3_get_init(s, &g, path, offset, length, sink, ctx, &spec);
    rc = http_engine_run(s->engine, &spec, &resp);
    rc = s3_get_end(s, &g, rc, &resp);
    http_response_free(&resp);
    return rc;
}

/* --- info ----------------------------------------------------------------------- */

static int64_t parse_http_date(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!text || !strptime(text, "%a, %d %b %Y %H:%M:%S GMT", &tm))
        return 0;
    return (int64_t)timegm(&tm) * 1000000;
}

static int64_t parse_iso_date(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = text ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return 0;
    int64_t us = (int64_t)timegm(&tm) * 1000000;
    if (*rest == '.') {
        int64_t scale = 100000;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
            us += (*rest - '0') * scale;
    }
    return us;
}

static int s3_info(struct storage *st, const char *path, struct storage_info *info)
{
    struct s3 *s = (struct s3 *)st;
    struct http_response resp = {0};
    char *key = s3_key(s, path);
    struct s3_req r = {.method = "HEAD", .key = key};
    int rc = s3_request(s, &r, &resp);
    memset(info, 0, sizeof(*info));
    if (rc == 0) {
        if (resp.content_length < 0) {
            rc = err_set(ERR_PROTOCOL,
                         "s3 HEAD of object \"%s\" in repository \"%s\" returned no length", key,
                         st->name);
        } else {
            info->size = (uint64_t)resp.content_length;
            info->mtime_us = parse_http_date(resp.last_modified);
        }
    }
    http_response_free(&resp);
    free(key);
    return rc;
}

/* --- list ----------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct s3_list_entry *)a)->key, ((const struct s3_list_entry *)b)->key);
}

int s3_list_page_parse(struct s3 *s, const struct http_response *resp, struct s3_list_entry **out,
                       size_t *count, size_t *cap)
{
    const char *p = (const char *)resp->body.data, *end = p + resp->body.len;
    const char *cend, *next, *c;
    size_t root_len = strlen(s->prefix);
    *count = 0;
    while ((c = s3_xml_find(p, end, "Contents", &cend, &next)) != NULL) {
        char *k = s3_xml_get(c, cend, "Key");
        char *size = s3_xml_get(c, cend, "Size");
        char *mod = s3_xml_get(c, cend, "LastModified");
        char *endp = NULL;
        unsigned long long n = size ? strtoull(size, &endp, 10) : 0;
        bool ok = k && size && endp != size && !*endp && strncmp(k, s->prefix, root_len) == 0;
        if (ok) {
            if (*count == *cap) {
                *cap = *cap ? 2 * *cap : 64;
                *out = xrealloc(*out, *cap * sizeof(**out));
            }
            (*out)[(*count)++] = (struct s3_list_entry){k, n, parse_iso_date(mod)};
            k = NULL;
        }
        free(k);
        free(size);
        free(mod);
        if (!ok)
            return err_set(ERR_PROTOCOL,
                           "s3 list of repository \"%s\" returned an unreadable entry",
                           s->base.name);
        p = next;
    }
    return 0;
}

/*
 * Paths come out in byte order, as storage.h promises. S3 sends each page in that
 * order, but not every S3-compatible server does: s3rver walks its directories, so
 * "wal/00000001/..." comes before "wal/00000001.history" ('.' < '/'). A page is
 * therefore sorted before it is handed on; pages must follow each other in order,
 * and a server whose pages overlap is refused rather than losing paths silently.
 * Long: one loop over the pages (fetch, sort, check against the last key handed on, hand
 * on, check the continuation token); the token, the last key and the page counts carry
 * from page to page, and one cleanup frees what a failed page leaves.
 */
static int s3_list(struct storage *st, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct s3 *s = (struct s3 *)st;
    struct http_response resp = {0};
    /* a list prefix is a plain string prefix of paths ("wal/", "wal/0000") */
    char *full = xasprintf("%s%s", s->prefix, prefix ? prefix : "");
    char *token = NULL;
    char *last = NULL; /* last key handed on */
    struct s3_list_entry *page = NULL;
    size_t count = 0, cap = 0;
    size_t root_len = strlen(s->prefix);
    uint64_t pages = 0, empty = 0;
    int rc = 0;

    for (;;) {
        struct sigv4_pair q[4] = {{"list-type", "2"}, {"max-keys", "1000"}, {"prefix", full}};
        size_t nq = 3;
        if (token)
            q[nq++] = (struct sigv4_pair){"continuation-token", token};
        struct s3_req r = {.method = "GET", .query = q, .nquery = nq};
        if ((rc = s3_request(s, &r, &resp)) < 0)
            goto out;
        rc = s3_list_page_parse(s, &resp, &page, &count, &cap);
        pages++;
        empty = count ? 0 : empty + 1;
        if (count > 1)
            qsort(page, count, sizeof(*page), cmp_entry);
        if (rc == 0 && count && last && strcmp(page[0].key, last) <= 0) {
            rc = err_set(ERR_PROTOCOL,
                         "s3 list of repository \"%s\" returned \"%s\" after \"%s\": the "
                         "server does not list keys in byte order",
                         st->name, page[0].key, last);
        }
        for (size_t i = 0; i < count; i++) {
            if (rc == 0) {
                struct storage_info info = {.path = page[i].key + root_len,
                                            .size = page[i].size,
                                            .mtime_us = page[i].mtime_us};
                rc = fn(ctx, &info);
            }
            if (i + 1 == count && rc == 0) {
                free(last);
                last = page[i].key;
            } else {
                free(page[i].key);
            }
        }
        count = 0;
        if (rc < 0)
            goto out;
        const char *b = (const char *)resp.body.data, *end = b + resp.body.len;
        char *truncated = s3_xml_get(b, end, "IsTruncated");
        bool more = truncated && strcmp(truncated, "true") == 0;
        free(truncated);
        if (!more)
            break;
        char *next = s3_xml_get(b, end, "NextContinuationToken");
        const char *why = NULL;
        if (!next || !*next)
            why = "a page is truncated without a continuation token";
        else if (token && strcmp(next, token) == 0)
            why = "the server sent back the continuation token it was given";
        else if (empty >= S3_LIST_MAX_EMPTY_PAGES)
            why = "the server sent page after page without a key";
        else if (pages >= s->list_max_pages)
            why = "it has more pages than pgark reads";
        free(token);
        token = next;
        if (why) {
            rc = err_set(ERR_PROTOCOL,
                         "s3 list of \"%s\" in repository \"%s\" stopped after %llu pages: %s",
                         full, st->name, (unsigned long long)pages, why);
            goto out;
        }
    }
out:
    for (size_t i = 0; i < count; i++)
        free(page[i].key);
    free(page);
    free(last);
    free(token);
    free(full);
    http_response_free(&resp);
    return rc;
}

/* --- remove ----------------------------------------------------------------------- */

static int s3_remove(struct storage *st, const char *path)
{
    struct s3 *s = (struct s3 *)st;
    struct http_response resp = {0};
    char *key = s3_key(s, path);
    struct s3_req r = {.method = "DELETE", .key = key};
    int rc = s3_request(s, &r, &resp);
    if (rc < 0 && resp.status == 404 && err_kind() == ERR_NOT_FOUND &&
        !strstr(err_message(), "NoSuchBucket")) {
        err_clear();
        rc = 0;
    }
    http_response_free(&resp);
    free(key);
    return rc;
}

/* --- life cycle ----------------------------------------------------------------- */

static void s3_free(struct storage *st)
{
    struct s3 *s = (struct s3 *)st;
    if (!s)
        return;
    http_engine_free(s->engine);
    sigv4_release(&s->signer);
    s3_cred_release(&s->cred);
    free(s->scheme);
    free(s->host);
    free(s->base_path);
    free(s->bucket);
    free(s->prefix);
    free(s->ca_file);
    free(s); /* s->base.name is released by storage_free */
}

static const struct storage_ops s3_ops = {
    .version = STORAGE_OPS_VERSION,
    .type = "s3",
    .read = s3_read,
    .write_open = s3_write_open,
    .write_data = s3_write_data,
    .write_commit = s3_write_commit,
    .write_abort = s3_write_abort,
    .list = s3_list,
    .info = s3_info,
    .remove = s3_remove,
    .rename = NULL,
    .free = s3_free,
    .async_new = s3_async_new,
    .async_put = s3_async_put,
    .async_get = s3_async_get,
    .async_next = s3_async_next,
    .async_cancel = s3_async_cancel,
    .async_free = s3_async_free,
    .async_put_fd = s3_async_put_fd,
};

struct storage *storage_s3_new(const struct storage_s3_options *o)
{
    const char *name = o->name ? o->name : "";
    const char *ep = o->endpoint ? o->endpoint : "";
    const char *hostport;
    const char *scheme;

    if (strncmp(ep, "https://", 8) == 0)
        scheme = "https", hostport = ep + 8;
    else if (strncmp(ep, "http://", 7) == 0)
        scheme = "http", hostport = ep + 7;
    else {
        err_set(ERR_CONFIG, "repository \"%s\": endpoint \"%s\" is not an http:// or https:// URL",
                name, ep);
        return NULL;
    }
    size_t hlen = strcspn(hostport, "/?#");
    if (hlen == 0 || (hostport[hlen] && strcmp(hostport + hlen, "/") != 0)) {
        err_set(ERR_CONFIG, "repository \"%s\": endpoint \"%s\" must be scheme://host[:port]", name,
                ep);
        return NULL;
    }
    if (!o->bucket || !*o->bucket || strchr(o->bucket, '/')) {
        err_set(ERR_CONFIG, "repository \"%s\": invalid or missing bucket \"%s\"", name,
                o->bucket ? o->bucket : "");
        return NULL;
    }
    if (!o->access_key_id || !*o->access_key_id || !o->secret_access_key ||
        !*o->secret_access_key) {
        err_set(ERR_CONFIG, "repository \"%s\": access_key_id and secret_access_key are required",
                name);
        return NULL;
    }
    size_t part = o->part_size ? o->part_size : STORAGE_S3_DEFAULT_PART_SIZE;
    if (part < STORAGE_S3_MIN_PART_SIZE || part > (size_t)5 * 1024 * 1024 * 1024) {
        err_set(ERR_CONFIG, "repository \"%s\": part size %zu is outside 5 MiB to 5 GiB", name,
                part);
        return NULL;
    }

    struct s3 *s = xcalloc(1, sizeof(*s));
    storage_init(&s->base, &s3_ops, name);
    s->base.retries_inside = true;
    s->scheme = xstrdup(scheme);
    s->bucket = xstrdup(o->bucket);
    if (o->uri_style == STORAGE_S3_URI_HOST) {
        s->host = xasprintf("%s.%.*s", o->bucket, (int)hlen, hostport);
        s->base_path = xstrdup("");
    } else {
        s->host = xstrndup(hostport, hlen);
        s->base_path = xasprintf("/%s", o->bucket);
    }
    const char *pre = o->prefix ? o->prefix : "";
    while (*pre == '/')
        pre++;
    size_t prelen = strlen(pre);
    s->prefix = xasprintf("%s%s", pre, prelen && pre[prelen - 1] != '/' ? "/" : "");
    const char *token = o->session_token ? o->session_token : getenv("AWS_SESSION_TOKEN");
    const char *values[S3_CRED_PARTS] = {o->access_key_id, o->secret_access_key, token};
    const char *files[S3_CRED_PARTS] = {o->access_key_id_file, o->secret_access_key_file,
                                        o->session_token ? o->session_token_file : NULL};
    /* tests: a long interval, so that only a refused request makes it look */
    const char *check_ms = getenv("PGARK_TEST_S3_CRED_CHECK_MS");
    s3_cred_init(&s->cred, name, values, files,
                 o->credentials_check_ms ? o->credentials_check_ms
                 : check_ms              ? strtoll(check_ms, NULL, 10)
                                         : 0);
    s->part_size = part;
    s->concurrency = o->concurrency > 0 ? o->concurrency : 4;
    s->ca_file = o->ca_file ? xstrdup(o->ca_file) : NULL;
    s->http.ca_file = s->ca_file;
    s->http.connect_timeout_ms = o->connect_timeout_ms;
    s->http.low_speed_time_s = o->low_speed_time_s;
    sigv4_init(&s->signer, o->access_key_id, o->secret_access_key,
               o->region && *o->region ? o->region : "us-east-1", "s3");
    s->engine = http_engine_new(&s->http, s->concurrency);
    s->list_max_pages = S3_LIST_MAX_PAGES;
    return &s->base;
}
