/* batch.c — many objects at once: parallel PUTs and DeleteObjects. */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct put_item {
    struct s3 *s;
    struct http_parallel *par;
    const struct storage_s3_object *obj;
    char *key;
    int attempt;
    struct s3_req req;
};

static int put_done(void *ctx, int rc, struct http_response *resp);

static void put_submit(struct put_item *it, int64_t delay_ms)
{
    struct s3_signed sg;
    s3_sign(it->s, &it->req, &sg);
    http_parallel_add(it->par, &sg.http, delay_ms, put_done, it);
    s3_signed_free(&sg); /* the runner keeps its own copies */
}

static int put_done(void *ctx, int rc, struct http_response *resp)
{
    struct put_item *it = ctx;
    struct s3 *s = it->s;
    bool retry, slow;
    rc = s3_judge(s, &it->req, rc, resp, &retry, &slow);
    if (rc < 0 && retry && it->attempt < s->base.retries) {
        it->attempt++;
        log_detail("repository \"%s\": retrying s3 PUT of \"%s\" (retry %d of %d): %s",
                   s->base.name, it->key, it->attempt, s->base.retries, err_message());
        err_clear();
        put_submit(it, s3_backoff_ms(s, it->attempt, slow));
        return 0;
    }
    if (rc == 0) {
        uint8_t d[MD5_LEN];
        char hexbuf[2 * MD5_LEN + 1];
        md5(it->obj->data ? it->obj->data : "", it->obj->len, d);
        hex_encode(d, sizeof(d), hexbuf);
        const char *e = resp->etag ? resp->etag : "";
        size_t elen = strlen(e);
        if (elen >= 2 && e[0] == '"')
            e++, elen -= 2;
        if (elen != 2 * MD5_LEN || strncasecmp(e, hexbuf, elen) != 0)
            rc = err_set(ERR_INTEGRITY,
                         "object \"%s\" stored in repository \"%s\" has ETag %s, expected the "
                         "MD5 %s of the data sent",
                         it->key, s->base.name, resp->etag ? resp->etag : "(none)", hexbuf);
    }
    return rc;
}

int storage_s3_put_many(struct storage *st, const struct storage_s3_object *objs, size_t n)
{
    struct s3 *s = (struct s3 *)st;
    struct http_parallel *par = http_parallel_new(&s->http, s->concurrency);
    struct put_item *items = xcalloc(n ? n : 1, sizeof(*items));
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = storage_path_check(objs[i].path)) < 0)
            goto out;
        if (objs[i].len > s->part_size) {
            rc = err_set(ERR_USAGE, "object \"%s\" is too large for a parallel single PUT",
                         objs[i].path);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct put_item *it = &items[i];
        it->s = s;
        it->par = par;
        it->obj = &objs[i];
        it->key = s3_key(s, objs[i].path);
        it->req = (struct s3_req){
            .method = "PUT", .key = it->key, .body = objs[i].data, .body_len = objs[i].len};
        put_submit(it, 0);
    }
    rc = http_parallel_run(par);
out:
    if (rc < 0)
        err_context("while writing %zu objects to repository \"%s\"", n, st->name);
    http_parallel_free(par);
    for (size_t i = 0; i < n; i++)
        free(items[i].key);
    free(items);
    return rc;
}

/* One DeleteObjects request for paths[0..n); retried as a whole (deleting is
 * idempotent) while the failures are transient. */
static int delete_batch(struct s3 *s, const char *const *paths, size_t n)
{
    struct buf xml = BUF_INIT;
    struct http_response resp = {0};
    int rc = 0;
    buf_append_str(&xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                         "<Delete><Quiet>true</Quiet>");
    for (size_t i = 0; i < n; i++) {
        char *key = s3_key(s, paths[i]);
        buf_append_str(&xml, "<Object><Key>");
        s3_xml_escape(&xml, key);
        buf_append_str(&xml, "</Key></Object>");
        free(key);
    }
    buf_append_str(&xml, "</Delete>");
    const struct sigv4_pair q[] = {{"delete", NULL}};
    for (int attempt = 0;; attempt++) {
        struct s3_req r = {
            .method = "POST", .query = q, .nquery = 1, .body = xml.data, .body_len = xml.len};
        if ((rc = s3_request(s, &r, &resp)) < 0)
            break;
        const char *p = (const char *)resp.body.data, *end = p + resp.body.len;
        const char *c, *cend, *next;
        bool retry = false, slow = false;
        while ((c = s3_xml_find(p, end, "Error", &cend, &next)) != NULL) {
            char *key = s3_xml_get(c, cend, "Key");
            char *code = s3_xml_get(c, cend, "Code");
            char *msg = s3_xml_get(c, cend, "Message");
            p = next;
            if (code && strcmp(code, "NoSuchKey") == 0) {
                free(key), free(code), free(msg);
                continue;
            }
            enum err_kind kind = ERR_PROTOCOL;
            if (code && (strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
                         strcmp(code, "ServiceUnavailable") == 0)) {
                kind = ERR_TRANSIENT;
                retry = true;
                slow = slow || strcmp(code, "SlowDown") == 0;
            } else if (code && strcmp(code, "AccessDenied") == 0) {
                kind = ERR_AUTH;
            }
            if (rc == 0) {
                rc = err_set(kind, "s3 delete of object \"%s\" in repository \"%s\" failed: %s: %s",
                             key ? key : "?", s->base.name, code ? code : "?",
                             msg ? msg : "no message");
            }
            free(key), free(code), free(msg);
        }
        if (rc == 0 || !retry || attempt >= s->base.retries)
            break;
        err_clear();
        rc = 0;
        s3_backoff(s, attempt + 1, slow);
    }
    http_response_free(&resp);
    buf_free(&xml);
    return rc;
}

int storage_s3_remove_many(struct storage *st, const char *const *paths, size_t n)
{
    struct s3 *s = (struct s3 *)st;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = storage_path_check(paths[i])) < 0)
            return rc;
    }
    for (size_t done = 0; done < n && rc == 0; done += 1000)
        rc = delete_batch(s, paths + done, n - done < 1000 ? n - done : 1000);
    return rc;
}
