/* write.c — atomic writes: one PutObject, or a multipart upload above part_size. */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/log.h"

#include <stdlib.h>
#include <string.h>

struct s3_write {
    struct storage_write base;
    char *key;
    struct buf data; /* at most part_size bytes not yet sent */
    char *upload_id; /* set once a multipart upload is started */
    char **etags;
    int nparts;
    int cap_parts;
};

struct storage_write *s3_write_open(struct storage *st, const char *path, uint64_t size_hint);
int s3_write_data(struct storage_write *w, const uint8_t *data, size_t len);
int s3_write_commit(struct storage_write *w);
void s3_write_abort(struct storage_write *w);

struct storage_write *s3_write_open(struct storage *st, const char *path, uint64_t size_hint)
{
    struct s3 *s = (struct s3 *)st;
    struct s3_write *w = xcalloc(1, sizeof(*w));
    w->base.storage = st;
    w->base.path = xstrdup(path);
    w->key = s3_key(s, path);
    buf_reserve(&w->data, size_hint < s->part_size ? (size_t)size_hint : s->part_size);
    return &w->base;
}

static void write_free(struct s3_write *w)
{
    for (int i = 0; i < w->nparts; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->upload_id);
    buf_free(&w->data);
    free(w->key);
    free(w->base.path);
    free(w);
}

static int start_multipart(struct s3 *s, struct s3_write *w)
{
    struct http_response resp = {0};
    const struct sigv4_pair q[] = {{"uploads", NULL}};
    struct s3_req r = {.method = "POST", .key = w->key, .query = q, .nquery = 1};
    int rc = s3_request(s, &r, &resp);
    if (rc == 0) {
        const char *b = (const char *)resp.body.data;
        w->upload_id = s3_xml_get(b, b + resp.body.len, "UploadId");
        if (!w->upload_id || !*w->upload_id) {
            free(w->upload_id);
            w->upload_id = NULL;
            rc = err_set(ERR_PROTOCOL,
                         "s3 multipart upload of object \"%s\" in repository \"%s\": no upload "
                         "id in the answer",
                         w->key, s->base.name);
        }
    }
    http_response_free(&resp);
    return rc;
}

static int upload_part(struct s3 *s, struct s3_write *w)
{
    struct http_response resp = {0};
    int rc = 0;
    if (!w->upload_id && (rc = start_multipart(s, w)) < 0)
        return rc;
    char num[16];
    snprintf(num, sizeof(num), "%d", w->nparts + 1);
    const struct sigv4_pair q[] = {{"partNumber", num}, {"uploadId", w->upload_id}};
    struct s3_req r = {.method = "PUT",
                       .key = w->key,
                       .query = q,
                       .nquery = 2,
                       .body = w->data.data,
                       .body_len = w->data.len};
    if ((rc = s3_request(s, &r, &resp)) == 0) {
        if (!resp.etag || !*resp.etag) {
            rc = err_set(ERR_PROTOCOL,
                         "s3 upload of part %s of object \"%s\" in repository \"%s\": no ETag "
                         "in the answer",
                         num, w->key, s->base.name);
        } else {
            if (w->nparts == w->cap_parts) {
                w->cap_parts = w->cap_parts ? 2 * w->cap_parts : 16;
                w->etags = xrealloc(w->etags, (size_t)w->cap_parts * sizeof(*w->etags));
            }
            w->etags[w->nparts++] = xstrdup(resp.etag);
            buf_reset(&w->data);
        }
    }
    http_response_free(&resp);
    return rc;
}

int s3_write_data(struct storage_write *sw, const uint8_t *data, size_t len)
{
    struct s3_write *w = (struct s3_write *)sw;
    struct s3 *s = (struct s3 *)sw->storage;
    while (len) {
        /* a full buffer is sent only once more data arrives: an object of exactly
         * part_size bytes is still a single PUT */
        if (w->data.len == s->part_size) {
            int rc = upload_part(s, w);
            if (rc < 0)
                return err_context("while writing object \"%s\"", w->key);
        }
        size_t take = s->part_size - w->data.len;
        if (take > len)
            take = len;
        buf_append(&w->data, data, take);
        data += take;
        len -= take;
    }
    return 0;
}

static void abort_multipart(struct s3 *s, struct s3_write *w)
{
    if (!w->upload_id)
        return;
    struct err_saved *saved = err_save();
    struct http_response resp = {0};
    const struct sigv4_pair q[] = {{"uploadId", w->upload_id}};
    struct s3_req r = {.method = "DELETE", .key = w->key, .query = q, .nquery = 1};
    if (s3_request(s, &r, &resp) < 0) {
        /* s3rver answers 405; an unfinished upload only costs storage until the bucket's
         * lifecycle rule removes it */
        log_debug("could not abort multipart upload of \"%s\" in repository \"%s\": %s", w->key,
                  s->base.name, err_message());
    }
    http_response_free(&resp);
    err_restore(saved);
}

static int single_put(struct s3 *s, struct s3_write *w)
{
    struct http_response resp = {0};
    struct s3_req r = {.method = "PUT",
                       .key = w->key,
                       .body = w->data.data,
                       .body_len = w->data.len,
                       .check_etag = true,
                       .if_none_match = w->base.no_replace};
    int rc = s3_request(s, &r, &resp);
    http_response_free(&resp);
    return rc;
}

static int complete_multipart(struct s3 *s, struct s3_write *w)
{
    struct buf xml = BUF_INIT;
    struct http_response resp = {0};
    int rc = 0;
    buf_append_str(&xml, "<CompleteMultipartUpload>");
    for (int i = 0; i < w->nparts; i++) {
        buf_appendf(&xml, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        buf_append_xml_escaped(&xml, w->etags[i]);
        buf_append_str(&xml, "</ETag></Part>");
    }
    buf_append_str(&xml, "</CompleteMultipartUpload>");
    const struct sigv4_pair q[] = {{"uploadId", w->upload_id}};
    for (int attempt = 0;; attempt++) {
        struct s3_req r = {.method = "POST",
                           .key = w->key,
                           .query = q,
                           .nquery = 1,
                           .body = xml.data,
                           .body_len = xml.len};
        if ((rc = s3_request(s, &r, &resp)) < 0)
            break;
        /* a 200 may still carry an <Error> (the failure came after the headers) */
        const char *b = (const char *)resp.body.data, *e = b + resp.body.len;
        const char *cend, *next;
        const char *err = s3_xml_find(b, e, "Error", &cend, &next);
        if (!err)
            break;
        resp.status = 400; /* judged by its <Code>: only the retryable ones retry */
        bool retry, slow;
        rc = s3_judge(s, &r, 0, &resp, &retry, &slow);
        if (!retry || attempt >= s->base.retries)
            break;
        err_clear();
        s3_backoff(s, attempt + 1, slow);
    }
    http_response_free(&resp);
    buf_free(&xml);
    return rc;
}

int s3_write_commit(struct storage_write *sw)
{
    struct s3_write *w = (struct s3_write *)sw;
    struct s3 *s = (struct s3 *)sw->storage;
    int rc;
    if (w->upload_id && sw->no_replace) {
        rc = err_set(ERR_USAGE, "a write that must not replace an object is one PUT of at most "
                                "part_size bytes");
    } else if (!w->upload_id) {
        rc = single_put(s, w);
    } else if ((rc = upload_part(s, w)) == 0) {
        rc = complete_multipart(s, w);
    }
    if (rc < 0) {
        abort_multipart(s, w);
        err_context("while writing object \"%s\"", w->key);
    }
    write_free(w);
    return rc;
}

void s3_write_abort(struct storage_write *sw)
{
    struct s3_write *w = (struct s3_write *)sw;
    if (!w)
        return;
    abort_multipart((struct s3 *)sw->storage, w);
    write_free(w);
}
