/* batch.c — many objects at once: parallel PUTs and DeleteObjects. */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/log.h"

#include <stdlib.h>
#include <string.h>

int storage_s3_put_many(struct storage *st, const struct storage_s3_object *objs, size_t n)
{
    struct s3 *s = (struct s3 *)st;
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
    struct storage_batch *b = storage_batch_new(st, s->concurrency);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = storage_batch_put(b, objs[i].path, objs[i].data, objs[i].len, NULL, NULL);
    int wrc = storage_batch_wait(b);
    if (rc == 0)
        rc = wrc;
    storage_batch_free(b);
out:
    if (rc < 0)
        err_context("while writing %zu objects to repository \"%s\"", n, st->name);
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
        buf_append_xml_escaped(&xml, key);
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
