/*
 * test_storage_swift.c — the S3 driver against OpenStack Swift's S3 API (s3api), a
 * server that, unlike s3rver, verifies every signature, Content-MD5 and payload
 * SHA-256, over HTTPS with a CA of the run's own (tests/harness/swift-s3.py, started
 * once here on free loopback ports and stopped at the end).
 *
 * The shared driver suite runs against it unchanged, then one named test for each way
 * Swift differs from s3rver or from AWS's documented behaviour that the driver relies
 * on or copes with: conditional PUT (501), multi-range GET (multipart), a required
 * x-amz-content-sha256, payload and Content-MD5 checks, DeleteObjects without
 * Content-MD5, the 5 MiB minimum part, error bodies that carry the server's canonical
 * request, an access key id with a colon, ETags, abort of a multipart upload, region.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/storage/s3/s3_int.h"
#include "storage_suite.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/repo.h"
#include "pgark/storage_s3.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define SWIFT_PY "tests/harness/swift-s3.py"
#define PYTHON "/usr/bin/python3"
#define BUCKET "pgark-test"
#define MIB (1024 * 1024)
/* listing pages of at most this many keys: the suite's paging test needs fewer objects */
#define PAGE "100"

/* --- the server ------------------------------------------------------------------- */

static struct {
    pid_t pid;
    char dir[128];
    char log[160];
    char endpoint[64];
    char ca_file[256];
    char access_key[64];
    char secret_key[64];
} sw;

/* Swift's object server keeps metadata in user extended attributes; tmpfs has them
 * from Linux 6.6 only. */
static bool user_xattrs(const char *dir)
{
    char probe[256];
    snprintf(probe, sizeof(probe), "%s/.xattr", dir);
    FILE *f = fopen(probe, "w");
    if (!f)
        return false;
    fclose(f);
    bool ok = setxattr(probe, "user.pgark", "1", 1, 0) == 0;
    unlink(probe);
    return ok;
}

static void show_log_tail(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tail -n 30 '%s' | sed 's/^/# /' >&2", sw.log);
    if (system(cmd) != 0)
        fprintf(stderr, "# (no log at %s)\n", sw.log);
}

static int swift_start(void)
{
    if (access(SWIFT_PY, R_OK) != 0) {
        fprintf(stderr, "# %s not found (cwd must be the repository root)\n", SWIFT_PY);
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(sw.dir, sizeof(sw.dir), "/dev/shm/pgark-swift-XXXXXX");
    if (!mkdtemp(sw.dir) || !user_xattrs(sw.dir)) {
        if (sw.dir[0] && strncmp(sw.dir, "/dev/shm/pgark-swift-", 21) == 0 &&
            !strstr(sw.dir, "XXXXXX"))
            rmdir(sw.dir);
        snprintf(sw.dir, sizeof(sw.dir), "%s/pgark-swift-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(sw.dir))
            return -1;
    }
    snprintf(sw.log, sizeof(sw.log), "%s/swift.log", sw.dir);
    char data[160];
    snprintf(data, sizeof(data), "%s/data", sw.dir);
    int out[2];
    if (pipe(out) != 0)
        return -1;
    sw.pid = fork();
    if (sw.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a crashed test */
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        if (!freopen(sw.log, "w", stderr))
            _exit(127);
        execl(PYTHON, PYTHON, SWIFT_PY, data, "--bucket", BUCKET, "--max-listing", PAGE,
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    /* one JSON line when it is ready; a cold start under load can take a while */
    char line[2048];
    size_t have = 0;
    int rc = -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 240) {
            fprintf(stderr, "# swift did not get ready within 240 s\n");
            break;
        }
        if (!(p.revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t n = read(out[0], line + have, sizeof(line) - 1 - have);
        if (n <= 0) {
            fprintf(stderr, "# swift exited before it was ready\n");
            break;
        }
        have += (size_t)n;
        line[have] = '\0';
        if (!strchr(line, '\n'))
            continue;
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        const char *ep = json_string_value(json_object_get(o, "endpoint"));
        const char *ca = json_string_value(json_object_get(o, "ca_file"));
        const char *ak = json_string_value(json_object_get(o, "access_key"));
        const char *sk = json_string_value(json_object_get(o, "secret_key"));
        if (ep && ca && ak && sk) {
            snprintf(sw.endpoint, sizeof(sw.endpoint), "%s", ep);
            snprintf(sw.ca_file, sizeof(sw.ca_file), "%s", ca);
            snprintf(sw.access_key, sizeof(sw.access_key), "%s", ak);
            snprintf(sw.secret_key, sizeof(sw.secret_key), "%s", sk);
            rc = 0;
        } else {
            fprintf(stderr, "# swift said: %s", line);
        }
        json_decref(o);
        break;
    }
    close(out[0]);
    if (rc < 0)
        show_log_tail();
    return rc;
}

static void swift_stop(void)
{
    if (sw.pid > 0) {
        kill(sw.pid, SIGTERM);
        waitpid(sw.pid, NULL, 0);
        sw.pid = 0;
    }
    if (sw.dir[0]) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sw.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "# could not remove %s\n", sw.dir);
    }
}

static struct storage_s3_options options(const char *prefix)
{
    struct storage_s3_options o = {
        .name = "swift",
        .endpoint = sw.endpoint,
        .region = "us-east-1",
        .bucket = BUCKET,
        .prefix = prefix,
        .access_key_id = sw.access_key,
        .secret_access_key = sw.secret_key,
        .ca_file = sw.ca_file,
        .part_size = 5 * MIB,
    };
    return o;
}

static struct storage *open_swift(const char *prefix)
{
    struct storage_s3_options o = options(prefix);
    struct storage *s = storage_s3_new(&o);
    assert_non_null(s);
    s->retry_base_ms = 10;
    return s;
}

/* --- requests built by hand, to show what Swift refuses ---------------------------- */

struct raw {
    const char *method;
    const char *key; /* full key; NULL: the bucket */
    const struct sigv4_pair *query;
    size_t nquery;
    const void *body;
    size_t len;
    bool no_sha256;         /* sign and send no x-amz-content-sha256 */
    const char *sha256_hex; /* NULL: the body's */
    const char *md5_b64;    /* NULL: send none */
    const char *range;
    const char *if_none_match;
};

/* Sign (SigV4, the driver's signer) and send q; the answer in resp; its status. */
static long raw_do(struct storage *st, const struct raw *q, struct http_response *resp)
{
    struct s3 *s = (struct s3 *)st;
    char amz_date[32], sha[SHA256_HEX_LEN + 1];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    uint8_t d[SHA256_LEN];
    sha256(q->len ? q->body : "", q->len, d);
    hex_encode(d, sizeof(d), sha);
    const char *payload = q->sha256_hex ? q->sha256_hex : sha;

    struct buf uri = BUF_INIT;
    buf_append_str(&uri, s->base_path);
    buf_append_str(&uri, "/");
    if (q->key)
        sigv4_uri_encode(&uri, q->key, true);
    char *query = sigv4_canonical_query(q->query, q->nquery);
    char *url =
        xasprintf("%s://%s%s%s%s", s->scheme, s->host, (char *)uri.data, *query ? "?" : "", query);

    struct sigv4_pair sign[6];
    struct http_header h[8];
    size_t ns = 0, nh = 0;
    sign[ns++] = (struct sigv4_pair){"host", s->host};
    sign[ns++] = (struct sigv4_pair){"x-amz-date", amz_date};
    h[nh++] = (struct http_header){"x-amz-date", amz_date};
    if (!q->no_sha256) {
        sign[ns++] = (struct sigv4_pair){"x-amz-content-sha256", payload};
        h[nh++] = (struct http_header){"x-amz-content-sha256", payload};
    }
    if (q->md5_b64) {
        sign[ns++] = (struct sigv4_pair){"content-md5", q->md5_b64};
        h[nh++] = (struct http_header){"Content-MD5", q->md5_b64};
    }
    if (q->range)
        h[nh++] = (struct http_header){"Range", q->range};
    if (q->if_none_match)
        h[nh++] = (struct http_header){"If-None-Match", q->if_none_match};
    char *auth = sigv4_authorization(&s->signer, q->method, (char *)uri.data, q->query, q->nquery,
                                     sign, ns, payload, amz_date, NULL);
    h[nh++] = (struct http_header){"Authorization", auth};

    struct http_options ho = {.ca_file = sw.ca_file};
    struct http_client *c = http_client_new(&ho);
    struct http_request req = {.method = q->method,
                               .url = url,
                               .headers = h,
                               .nheaders = nh,
                               .body = q->body,
                               .body_len = q->len};
    int rc = http_client_do(c, &req, resp);
    if (rc < 0)
        fail_msg("request failed: %s", err_message());
    http_client_free(c);
    free(auth);
    free(url);
    free(query);
    buf_free(&uri);
    return resp->status;
}

static char *body_text(const struct http_response *r)
{
    return xstrndup(r->body.len ? (const char *)r->body.data : "", r->body.len);
}

static char *xml_code(const struct http_response *r)
{
    const char *b = (const char *)r->body.data;
    return b ? s3_xml_get(b, b + r->body.len, "Code") : NULL;
}

static void md5_b64_of(const void *data, size_t len, char out[25])
{
    uint8_t m[MD5_LEN];
    md5(len ? data : "", len, m);
    base64_encode(m, sizeof(m), out);
}

static int to_buf(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

static int collect_names(void *ctx, const struct storage_info *info)
{
    buf_appendf(ctx, "%s\n", info->path);
    return 0;
}

/* The whole error text (message and context), for substring checks; clears it. */
static char *take_error(void)
{
    char *t = err_format();
    err_clear();
    return t;
}

/* --- named differences ---------------------------------------------------------------- */

/* AWS: a PUT with If-None-Match: * where the object exists is 412 (s3rver ignores the
 * header). Swift's s3api answers 501 NotImplemented, which the driver reports as
 * ERR_UNSUPPORTED, and storage_create_honoured finds out. */
static void test_swift_conditional_put_501(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/cond");
    struct http_response resp = {0};
    struct raw q = {
        .method = "PUT", .key = "named/cond/x", .body = "x", .len = 1, .if_none_match = "*"};
    assert_int_equal(raw_do(s, &q, &resp), 501);
    char *code = xml_code(&resp);
    assert_string_equal(code, "NotImplemented");
    free(code);
    http_response_free(&resp);

    int rc = storage_create_all(s, "x", "x", 1);
    assert_int_equal(rc, -ERR_UNSUPPORTED);
    char *t = take_error();
    assert_non_null(strstr(t, "s3 PUT of object \"named/cond/x\" in repository \"swift\" failed: "
                              "HTTP 501 NotImplemented: Conditional object PUTs are not "
                              "supported"));
    free(t);
    assert_int_equal(storage_exists(s, "x"), 0);

    char *why = NULL;
    assert_int_equal(storage_create_honoured(s, "probe", &why), 0);
    assert_non_null(strstr(why, "the store does not implement conditional writes (s3 PUT of "
                                "object \"named/cond/probe\""));
    free(why);
    assert_int_equal(storage_exists(s, "probe"), 0);
    storage_free(s);
}

/* Because of that 501, a new repository on Swift is created through candidates: it
 * works, says so once at info level, and a second opener adopts the same repo.json. */
static void test_swift_repo_created_without_conditional_put(void **state)
{
    (void)state;
    char *logtext = NULL;
    size_t loglen = 0;
    FILE *mem = open_memstream(&logtext, &loglen);
    log_set_stream(mem);
    log_set_level(LOG_INFO);
    struct storage *s = open_swift("named/repo");
    const struct repo_identity id = {7312345678901234567ull, 15, 16 * MIB};
    struct repo_options o = {
        .cluster = "c", .codecs = {.passphrase = "a passphrase"}, .kdf_n = 1024};
    struct repo *r = repo_open(s, &o, &id, true);
    if (!r)
        fail_msg("%s", take_error());
    struct storage *s2 = open_swift("named/repo");
    struct repo *r2 = repo_open(s2, &o, &id, true);
    assert_non_null(r2);
    assert_int_equal(repo_put(r, "x/obj", "payload", 7), 0);
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(repo_get_all(r2, "x/obj", &got, &len), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(got, "payload", 7);
    free(got);
    repo_close(r2);
    repo_close(r);
    storage_free(s2);
    log_set_stream(NULL);
    fclose(mem);
    const char *said = strstr(logtext, "the store does not implement conditional writes");
    assert_non_null(said);
    assert_null(strstr(said + 1, "the store does not implement conditional writes"));
    assert_non_null(strstr(logtext, "creating \"c/repo.json\" through candidates in "
                                    "\"c/repo.json.new/\" instead"));
    free(logtext);
    /* nothing left of the protocol: repo.json and the object, no probe, no candidate */
    struct buf names = BUF_INIT;
    assert_int_equal(storage_list(s, "c/", collect_names, &names), 0);
    buf_append(&names, "", 1);
    assert_string_equal((char *)names.data, "c/repo.json\nc/x/obj\n");
    buf_free(&names);
    storage_free(s);
}

/* A GET with two ranges: AWS serves the first range only (documented: multiple ranges
 * in one request are not supported), Swift answers 206 multipart/byteranges. The
 * driver asks for one range at a time, and gets exactly it. */
static void test_swift_multi_range_get_is_multipart(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/range");
    assert_int_equal(storage_write_all(s, "obj", "0123456789", 10), 0);
    struct http_response resp = {0};
    struct raw q = {.method = "GET", .key = "named/range/obj", .range = "bytes=0-1,4-5"};
    assert_int_equal(raw_do(s, &q, &resp), 206);
    char *b = body_text(&resp);
    assert_non_null(strstr(b, "Content-Range: bytes 0-1/10"));
    assert_non_null(strstr(b, "Content-Range: bytes 4-5/10"));
    free(b);
    http_response_free(&resp);

    struct buf got = BUF_INIT;
    assert_int_equal(storage_read(s, "obj", 0, 2, to_buf, &got), 0);
    assert_int_equal(storage_read(s, "obj", 4, 2, to_buf, &got), 0);
    assert_int_equal(storage_read(s, "obj", 8, STORAGE_TO_END, to_buf, &got), 0);
    assert_int_equal(got.len, 6);
    assert_memory_equal(got.data, "014589", 6);
    buf_free(&got);
    storage_free(s);
}

/* Swift refuses a request without x-amz-content-sha256 (AWS requires it too; s3rver
 * does not care). The driver sends it on every request. */
static void test_swift_requires_content_sha256(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/sha");
    struct http_response resp = {0};
    struct raw q = {.method = "GET", .key = "named/sha/none", .no_sha256 = true};
    long st = raw_do(s, &q, &resp);
    char *code = xml_code(&resp);
    char *b = body_text(&resp);
    assert_int_equal(st, 400);
    assert_string_equal(code, "InvalidRequest");
    assert_non_null(strstr(b, "x-amz-content-sha256"));
    free(b);
    free(code);
    http_response_free(&resp);
    /* the driver's own request for the same key: a plain "not found" */
    struct storage_info info;
    assert_int_equal(storage_info(s, "none", &info), -ERR_NOT_FOUND);
    err_clear();
    storage_free(s);
}

/* The payload's SHA-256 is checked (s3rver does not): a body that does not match its
 * signed hash is refused, which the driver reports as an integrity error. */
static void test_swift_payload_sha256_checked(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/payload");
    struct http_response resp = {0};
    struct raw q = {.method = "PUT",
                    .key = "named/payload/x",
                    .body = "abc",
                    .len = 3,
                    .sha256_hex = S3_EMPTY_SHA256};
    long st = raw_do(s, &q, &resp);
    char *code = xml_code(&resp);
    assert_int_equal(st, 400);
    /* AWS documents XAmzContentSHA256Mismatch; Swift answers BadDigest */
    assert_string_equal(code, "BadDigest");
    free(code);
    http_response_free(&resp);
    assert_int_equal(storage_exists(s, "x"), 0);
    /* the driver's request with the same wrong hash: an integrity error either way */
    struct s3_req r = {.method = "PUT",
                       .key = "named/payload/x",
                       .body = (const uint8_t *)"abc",
                       .body_len = 3,
                       .sha256_hex = S3_EMPTY_SHA256};
    assert_int_equal(s3_request((struct s3 *)s, &r, &resp), -ERR_INTEGRITY);
    http_response_free(&resp);
    char *t = take_error();
    assert_non_null(strstr(t, "s3 PUT of object \"named/payload/x\" in repository \"swift\" "
                              "failed: BadDigest"));
    free(t);
    assert_int_equal(storage_exists(s, "x"), 0);
    storage_free(s);
}

/* Content-MD5 is checked (s3rver does not): the driver sends it with every body. */
static void test_swift_content_md5_checked(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/md5");
    char wrong[25];
    md5_b64_of("something else", 14, wrong);
    struct http_response resp = {0};
    struct raw q = {
        .method = "PUT", .key = "named/md5/x", .body = "abc", .len = 3, .md5_b64 = wrong};
    long st = raw_do(s, &q, &resp);
    char *code = xml_code(&resp);
    assert_int_equal(st, 400);
    assert_string_equal(code, "BadDigest");
    free(code);
    http_response_free(&resp);
    assert_int_equal(storage_exists(s, "x"), 0);
    /* the driver's PUT of the same body, with its own Content-MD5, is taken */
    assert_int_equal(storage_write_all(s, "x", "abc", 3), 0);
    storage_free(s);
}

/* A single PUT's ETag is the MD5 of the body (AWS without KMS encryption; Swift too):
 * the driver checks every single-PUT ETag against what it sent. */
static void test_swift_etag_is_md5(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/etag");
    struct http_response resp = {0};
    struct raw q = {.method = "PUT", .key = "named/etag/x", .body = "abc", .len = 3};
    assert_int_equal(raw_do(s, &q, &resp), 200);
    assert_string_equal(resp.etag, "\"900150983cd24fb0d6963f7d28e17f72\"");
    http_response_free(&resp);
    storage_free(s);
}

/* DeleteObjects without Content-MD5 is refused (AWS requires it too; s3rver takes it);
 * the driver's storage_s3_remove_many sends it and removes the keys. */
static void test_swift_delete_objects_needs_content_md5(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/del");
    assert_int_equal(storage_write_all(s, "a", "a", 1), 0);
    assert_int_equal(storage_write_all(s, "b", "b", 1), 0);
    const char xml[] = "<Delete><Quiet>true</Quiet><Object><Key>named/del/a</Key></Object>"
                       "</Delete>";
    const struct sigv4_pair qd[] = {{"delete", NULL}};
    struct http_response resp = {0};
    struct raw q = {.method = "POST", .query = qd, .nquery = 1, .body = xml, .len = strlen(xml)};
    long st = raw_do(s, &q, &resp);
    char *code = xml_code(&resp);
    assert_int_equal(st, 400);
    assert_string_equal(code, "InvalidRequest");
    free(code);
    http_response_free(&resp);
    assert_int_equal(storage_exists(s, "a"), 1);

    const char *const paths[] = {"a", "b", "never-was"};
    assert_int_equal(storage_s3_remove_many(s, paths, 3), 0);
    assert_int_equal(storage_exists(s, "a"), 0);
    assert_int_equal(storage_exists(s, "b"), 0);
    storage_free(s);
}

/* Parts but the last must be 5 MiB at least (AWS's rule; Swift enforces it at
 * CompleteMultipartUpload, s3rver does not): the driver refuses a smaller part_size
 * and its 5 MiB parts are taken. */
static void test_swift_small_parts_refused(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/parts");
    const char *key = "named/parts/small";
    struct http_response resp = {0};
    const struct sigv4_pair qu[] = {{"uploads", NULL}};
    struct raw q = {.method = "POST", .key = key, .query = qu, .nquery = 1};
    assert_int_equal(raw_do(s, &q, &resp), 200);
    const char *b = (const char *)resp.body.data;
    char *upload = s3_xml_get(b, b + resp.body.len, "UploadId");
    assert_non_null(upload);
    http_response_free(&resp);
    static uint8_t part[MIB];
    char *etags[2];
    for (int i = 0; i < 2; i++) {
        const struct sigv4_pair qp[] = {{"partNumber", i ? "2" : "1"}, {"uploadId", upload}};
        struct raw p = {.method = "PUT",
                        .key = key,
                        .query = qp,
                        .nquery = 2,
                        .body = part,
                        .len = i ? 10 : sizeof(part)};
        assert_int_equal(raw_do(s, &p, &resp), 200);
        etags[i] = xstrdup(resp.etag);
        http_response_free(&resp);
    }
    char *xml = xasprintf("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s"
                          "</ETag></Part><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part>"
                          "</CompleteMultipartUpload>",
                          etags[0], etags[1]);
    const struct sigv4_pair qc[] = {{"uploadId", upload}};
    struct raw c = {
        .method = "POST", .key = key, .query = qc, .nquery = 1, .body = xml, .len = strlen(xml)};
    long st = raw_do(s, &c, &resp);
    char *code = xml_code(&resp);
    assert_int_equal(st, 400);
    assert_string_equal(code, "EntityTooSmall");
    free(code);
    http_response_free(&resp);
    free(xml);
    free(etags[0]);
    free(etags[1]);
    free(upload);

    struct storage_s3_options o = options("named/parts");
    o.part_size = 1 * MIB;
    assert_null(storage_s3_new(&o));
    assert_int_equal(err_kind(), ERR_CONFIG);
    err_clear();
    storage_free(s);
}

/* A refused signature: Swift's error body carries its canonical request and string to
 * sign (AWS's carries the string to sign). The driver reports the code and message,
 * an authentication error with a hint, and never that body. */
static void test_swift_error_body_not_repeated(void **state)
{
    (void)state;
    struct storage_s3_options o = options("named/sig");
    o.secret_access_key = "not-the-secret";
    struct storage *s = storage_s3_new(&o);
    assert_non_null(s);
    struct http_response resp = {0};
    struct raw q = {.method = "GET", .key = "named/sig/x"};
    assert_int_equal(raw_do(s, &q, &resp), 403);
    char *b = body_text(&resp);
    assert_non_null(strstr(b, "<Code>SignatureDoesNotMatch</Code>"));
    assert_non_null(strstr(b, "<CanonicalRequest>"));
    assert_non_null(strstr(b, "<StringToSign>"));
    free(b);
    http_response_free(&resp);

    struct storage_info info;
    assert_int_equal(storage_info(s, "x", &info), -ERR_AUTH);
    assert_non_null(strstr(err_hint_text(), "check the access key id, secret and permissions"));
    char *t = take_error();
    assert_non_null(strstr(t, "s3 HEAD of object \"named/sig/x\" in repository \"swift\" "
                              "refused: "));
    assert_null(strstr(t, "CanonicalRequest"));
    assert_null(strstr(t, "StringToSign"));
    assert_null(strstr(t, "AWS4-HMAC-SHA256"));
    free(t);
    storage_free(s);
}

/* The access key id is "account:user" (tempauth), a colon inside the Credential scope;
 * signed as is, it works. An unknown key id is SignatureDoesNotMatch here (AWS:
 * InvalidAccessKeyId); either is an authentication error with the same hint. */
static void test_swift_access_key_with_colon(void **state)
{
    (void)state;
    assert_non_null(strchr(sw.access_key, ':'));
    struct storage *s = open_swift("named/colon");
    assert_int_equal(storage_write_all(s, "x", "abc", 3), 0);
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(storage_read_all(s, "x", &got, &len), 0);
    assert_int_equal(len, 3);
    free(got);
    storage_free(s);

    struct storage_s3_options o = options("named/colon");
    o.access_key_id = "test:nobody";
    s = storage_s3_new(&o);
    assert_int_equal(storage_read_all(s, "x", &got, &len), -ERR_AUTH);
    char *t = take_error();
    assert_non_null(strstr(t, "s3 GET of object \"named/colon/x\" in repository \"swift\" "
                              "refused: SignatureDoesNotMatch: The request signature we calculated "
                              "does not match the signature you provided"));
    free(t);
    storage_free(s);
}

/* A request signed for another region is refused with AuthorizationHeaderMalformed,
 * naming the region expected, as AWS does. A HEAD's answer has no body to name it:
 * the status alone is said, once. */
static void test_swift_wrong_region(void **state)
{
    (void)state;
    struct storage_s3_options o = options("named/region");
    o.region = "eu-west-3";
    struct storage *s = storage_s3_new(&o);
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(storage_read_all(s, "x", &got, &len), -ERR_PROTOCOL);
    char *t = take_error();
    assert_non_null(strstr(t, "s3 GET of object \"named/region/x\" in repository \"swift\" "
                              "failed: HTTP 400 AuthorizationHeaderMalformed: The authorization "
                              "header is malformed; the region 'eu-west-3' is wrong; expecting "
                              "'us-east-1'"));
    free(t);
    struct storage_info info;
    assert_int_equal(storage_info(s, "x", &info), -ERR_PROTOCOL);
    t = take_error();
    assert_non_null(strstr(t, "s3 HEAD of object \"named/region/x\" in repository \"swift\" "
                              "failed: HTTP 400\n"));
    free(t);
    storage_free(s);
}

/* An aborted multipart write leaves no upload behind: Swift implements
 * AbortMultipartUpload (s3rver answers 405, and the driver only logs that). */
static void test_swift_abort_multipart(void **state)
{
    (void)state;
    struct storage *s = open_swift("named/abort");
    struct storage_write *w = storage_write_open(s, "big", STORAGE_TO_END);
    assert_non_null(w);
    static uint8_t data[6 * MIB];
    assert_int_equal(storage_write_data(w, data, sizeof(data)), 0); /* part 1 went up */
    storage_write_abort(w);
    assert_int_equal(storage_exists(s, "big"), 0);
    struct http_response resp = {0};
    const struct sigv4_pair qu[] = {{"uploads", NULL}, {"prefix", "named/abort/"}};
    struct raw q = {.method = "GET", .query = qu, .nquery = 2};
    assert_int_equal(raw_do(s, &q, &resp), 200);
    char *b = body_text(&resp);
    assert_null(strstr(b, "<Upload>"));
    free(b);
    http_response_free(&resp);
    storage_free(s);
}

/* --- the shared driver suite, unchanged, against Swift --------------------------------- */

struct suite_ctx {
    int serial;
};

static struct storage *suite_create(void *ctx)
{
    struct suite_ctx *c = ctx;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "suite/%d/", ++c->serial);
    struct storage_s3_options o = options(prefix);
    struct storage *s = storage_s3_new(&o);
    if (s)
        s->retry_base_ms = 10;
    return s;
}

/* Each shared test has its own prefix; the whole store goes at the end. */
static void suite_destroy(struct storage *s, void *ctx)
{
    (void)ctx;
    storage_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swift_conditional_put_501),
        cmocka_unit_test(test_swift_repo_created_without_conditional_put),
        cmocka_unit_test(test_swift_multi_range_get_is_multipart),
        cmocka_unit_test(test_swift_requires_content_sha256),
        cmocka_unit_test(test_swift_payload_sha256_checked),
        cmocka_unit_test(test_swift_content_md5_checked),
        cmocka_unit_test(test_swift_etag_is_md5),
        cmocka_unit_test(test_swift_delete_objects_needs_content_md5),
        cmocka_unit_test(test_swift_small_parts_refused),
        cmocka_unit_test(test_swift_error_body_not_repeated),
        cmocka_unit_test(test_swift_access_key_with_colon),
        cmocka_unit_test(test_swift_wrong_region),
        cmocka_unit_test(test_swift_abort_multipart),
    };
    log_set_level(LOG_WARN);
    if (swift_start() != 0) {
        printf("1..1\nnot ok 1 - swift could not be started (see above)\n");
        swift_stop();
        return 1;
    }
    struct suite_ctx ctx = {0};
    /* pages of 100 keys: 250 objects still make three */
    struct storage_suite_target target = {"swift", suite_create, suite_destroy, &ctx, 250};
    int rc = storage_suite_run(&target, tests, sizeof(tests) / sizeof(tests[0]));
    swift_stop();
    return rc;
}
