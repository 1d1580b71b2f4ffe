/* async.c — S3 transfers kept in flight from one thread, for storage_batch. */
#include "s3_int.h"

#include "pgark/error.h"

#include <stdlib.h>
#include <string.h>

struct storage_async {
    struct s3 *s;
    struct http_group *g;
};

struct s3_op {
    struct s3_transfer t; /* first: the call's ctx is the op */
    void *tag;
    bool is_get;
};

struct storage_async *s3_async_new(struct storage *st)
{
    struct storage_async *a = xcalloc(1, sizeof(*a));
    a->s = (struct s3 *)st;
    a->g = http_group_new(a->s->engine);
    return a;
}

static int op_start(struct storage_async *a, struct s3_op *op, const struct http_call_spec *spec)
{
    if (!http_group_start(a->g, spec)) {
        free(op->t.path);
        free(op->t.key);
        free(op);
        return err_code();
    }
    return 0;
}

int s3_async_put(struct storage_async *a, const char *path, const void *data, size_t len, void *tag)
{
    struct s3 *s = a->s;
    if (len > s->part_size)
        return 1; /* a multipart upload: the synchronous write path */
    struct s3_op *op = xcalloc(1, sizeof(*op));
    struct http_call_spec spec;
    op->tag = tag;
    op->t.key = s3_key(s, path);
    op->t.req = (struct s3_req){
        .method = "PUT", .key = op->t.key, .body = data, .body_len = len, .check_etag = true};
    s3_call_init(&op->t.call, s, &op->t.req, &spec);
    return op_start(a, op, &spec);
}

int s3_async_get(struct storage_async *a, const char *path, uint64_t offset, uint64_t length,
                 storage_sink_fn sink, void *ctx, void *tag)
{
    if (length == 0)
        return 1; /* only a HEAD: the synchronous path */
    struct s3_op *op = xcalloc(1, sizeof(*op));
    struct http_call_spec spec;
    op->tag = tag;
    op->is_get = true;
    s3_get_init(a->s, &op->t, path, offset, length, sink, ctx, &spec);
    return op_start(a, op, &spec);
}

int s3_async_next(struct storage_async *a, void **tag, int *rc)
{
    struct http_call *c = http_group_wait(a->g);
    if (!c)
        return 0;
    struct s3_op *op = http_call_ctx(c);
    struct http_response resp = {0};
    *rc = http_call_finish(c, &resp);
    if (op->is_get) {
        *rc = s3_get_end(a->s, &op->t, *rc, &resp);
    } else {
        if (*rc < 0)
            err_context("while writing object \"%s\"", op->t.key);
        free(op->t.key);
    }
    http_response_free(&resp);
    *tag = op->tag;
    free(op);
    return 1;
}

void s3_async_cancel(struct storage_async *a)
{
    http_group_cancel(a->g);
}

void s3_async_free(struct storage_async *a)
{
    if (!a)
        return;
    http_group_free(a->g);
    free(a);
}
