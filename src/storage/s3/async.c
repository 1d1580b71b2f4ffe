/* async.c — S3 transfers kept in flight from one thread, for storage_batch. */
#include "s3_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct storage_async {
    struct s3 *s;
    struct http_group *g;
};

struct s3_op {
    struct s3_transfer t; /* first: the call's ctx is the op */
    void *tag;
    bool is_get;
    /* a body read from a file: fd, its length, where the attempt is in it, its hashes */
    int fd;
    uint64_t fd_len, fd_off;
    struct s3_hashes fh;
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

/* Engine thread: the next body bytes of an upload from a file. */
static long fd_read(void *ctx, uint8_t *buf, size_t len)
{
    struct s3_op *op = ctx;
    if (len > op->fd_len - op->fd_off)
        len = (size_t)(op->fd_len - op->fd_off);
    if (len == 0)
        return 0;
    ssize_t n;
    do
        n = pread(op->fd, buf, len, (off_t)op->fd_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n < 0 ? err_set_errno(ERR_IO, errno, "could not read the body of \"%s\"", op->t.key)
                     : err_set(ERR_IO, "the body of \"%s\" is shorter than %llu bytes", op->t.key,
                               (unsigned long long)op->fd_len);
    op->fd_off += (uint64_t)n;
    return n;
}

static int fd_rewind(void *ctx)
{
    struct s3_op *op = ctx;
    op->fd_off = 0;
    return 0;
}

struct fd_hashes {
    struct sha256_ctx *sha;
    struct md5_ctx *md5;
};

static int hash_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct fd_hashes *h = ctx;
    sha256_ctx_update(h->sha, data, len);
    md5_ctx_update(h->md5, data, len);
    return 0;
}

/* SHA-256 (signed) and MD5 (Content-MD5, the ETag) of the first len bytes of fd, read
 * once here in the caller's thread. */
static int fd_hash(int fd, uint64_t len, struct s3_hashes *out)
{
    struct fd_hashes h = {sha256_ctx_new(), md5_ctx_new()};
    int rc = storage_fd_pass(fd, len, NULL, 256 * 1024, "a file to upload", hash_sink, &h);
    if (rc == 0) {
        uint8_t d[SHA256_LEN], m[MD5_LEN];
        sha256_ctx_final(h.sha, d);
        md5_ctx_final(h.md5, m);
        hex_encode(d, sizeof(d), out->sha256_hex);
        hex_encode(m, sizeof(m), out->md5_hex);
        base64_encode(m, sizeof(m), out->md5_b64);
    }
    md5_ctx_free(h.md5);
    sha256_ctx_free(h.sha);
    return rc;
}

int s3_async_put_fd(struct storage_async *a, const char *path, int fd, uint64_t len, void *tag)
{
    struct s3 *s = a->s;
    if (len > s->part_size)
        return 1; /* a multipart upload: the synchronous write path */
    struct s3_op *op = xcalloc(1, sizeof(*op));
    struct http_call_spec spec;
    int rc = fd_hash(fd, len, &op->fh);
    if (rc < 0) {
        free(op);
        return rc;
    }
    op->tag = tag;
    op->fd = fd;
    op->fd_len = len;
    op->t.key = s3_key(s, path);
    op->t.req = (struct s3_req){.method = "PUT",
                                .key = op->t.key,
                                .read = fd_read,
                                .rewind = fd_rewind,
                                .read_ctx = op,
                                .read_len = len,
                                .sha256_hex = op->fh.sha256_hex,
                                .md5_b64 = op->fh.md5_b64,
                                .check_etag = true};
    s3_call_init(&op->t.call, s, &op->t.req, &spec);
    memcpy(op->t.call.h.md5_hex, op->fh.md5_hex, sizeof(op->fh.md5_hex));
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
