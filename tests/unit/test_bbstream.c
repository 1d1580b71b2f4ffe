/* test_bbstream.c — the BASE_BACKUP result stream of 15+ and of 13/14, synthesised. */
#include "pgark/bbstream.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"
#include "tarbuild.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- event recorder: one text line per event, data summarised by SHA-256 ---- */

struct rec {
    struct buf log;
    struct buf manifest;
    struct sha256_ctx *ctx;
    uint64_t got;
    int fail_on_archive; /* >0: archive_begin fails for the n-th archive */
    int archives;
    /* the message being sent with bbstream_copy_data_ref (NULL: none) */
    struct refbuf *lent;
    const uint8_t *lent_msg;
    size_t lent_len;
    uint64_t lent_bytes; /* entry bytes passed with a reference */
};

static int r_archive_begin(void *arg, const struct bbstream_archive *a)
{
    struct rec *r = arg;
    r->archives++;
    if (r->fail_on_archive == r->archives)
        return err_set(ERR_IO, "cannot open archive");
    buf_appendf(&r->log, "begin %s %u \"%s\"\n", a->name, a->spcoid, a->location);
    return 0;
}

static int r_archive_end(void *arg, const struct bbstream_archive *a)
{
    struct rec *r = arg;
    buf_appendf(&r->log, "end %s\n", a->name);
    return 0;
}

static int r_entry_begin(void *arg, const struct tar_entry *e)
{
    struct rec *r = arg;
    static const char *types[] = {"file", "dir", "symlink", "hardlink"};
    buf_appendf(&r->log, "  %s %s %llu", types[e->type], e->path, (unsigned long long)e->size);
    if (e->link)
        buf_appendf(&r->log, " -> %s", e->link);
    r->got = 0;
    return 0;
}

static int r_entry_data(void *arg, const uint8_t *d, size_t n)
{
    struct rec *r = arg;
    sha256_ctx_update(r->ctx, d, n);
    r->got += n;
    return 0;
}

/* entry_data_ref: the reference is the message's, and the bytes lie inside it. */
static int r_entry_data_ref(void *arg, const uint8_t *d, size_t n, struct refbuf *ref)
{
    struct rec *r = arg;
    assert_ptr_equal(ref, r->lent);
    if (ref) {
        assert_true(d > r->lent_msg && d + n <= r->lent_msg + r->lent_len);
        r->lent_bytes += n;
    }
    return r_entry_data(arg, d, n);
}

static int r_entry_end(void *arg)
{
    struct rec *r = arg;
    uint8_t md[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256_ctx_final(r->ctx, md);
    hex_encode(md, 4, hex);
    buf_appendf(&r->log, " got %llu %s\n", (unsigned long long)r->got, hex);
    return 0;
}

static int r_progress(void *arg, uint64_t done)
{
    struct rec *r = arg;
    buf_appendf(&r->log, "progress %llu\n", (unsigned long long)done);
    return 0;
}

static int r_manifest(void *arg, const uint8_t *d, size_t n)
{
    struct rec *r = arg;
    buf_append(&r->manifest, d, n);
    return 0;
}

static const struct bbstream_callbacks CB = {r_archive_begin, r_archive_end, r_entry_begin,
                                             r_entry_data,    r_entry_end,   r_progress,
                                             r_manifest,      NULL};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    r->ctx = sha256_ctx_new();
}

static void rec_free(struct rec *r)
{
    buf_free(&r->log);
    buf_free(&r->manifest);
    sha256_ctx_free(r->ctx);
}

static char *short_sha(const void *d, size_t n)
{
    static char hex[SHA256_HEX_LEN + 1];
    uint8_t md[SHA256_LEN];
    sha256(d, n, md);
    hex_encode(md, 4, hex);
    return hex;
}

/* ---- the backup being streamed ---- */

static const char LABEL[] = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n";
static const char MANIFEST[] = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
                               "{ \"Path\": \"backup_label\", \"Size\": 62 }\n],\n"
                               "\"Manifest-Checksum\": \"00\"}\n";
static uint8_t relfile[20000];
static uint8_t control[8192];

/* tablespace 16384's tar and base.tar; marker: with the end marker */
static void make_tars(struct buf *ts, struct buf *base, bool marker)
{
    for (size_t i = 0; i < sizeof(relfile); i++)
        relfile[i] = (uint8_t)(i * 13 + 1);
    for (size_t i = 0; i < sizeof(control); i++)
        control[i] = (uint8_t)(i ^ 0x5a);
    tb_dir(ts, "PG_15_202209061/");
    tb_dir(ts, "PG_15_202209061/16390/");
    tb_file(ts, "PG_15_202209061/16390/16391", relfile, sizeof(relfile));
    if (marker)
        tb_end(ts);
    tb_file(base, "backup_label", LABEL, strlen(LABEL));
    tb_dir(base, "pg_tblspc/");
    tb_symlink(base, "pg_tblspc/16384/", "/srv/ts1");
    tb_file(base, "PG_VERSION", "15\n", 3);
    tb_file(base, "global/pg_control", control, sizeof(control));
    if (marker)
        tb_end(base);
}

static char *expected_log(bool with_progress)
{
    struct buf e = BUF_INIT;
    buf_appendf(&e, "begin 16384.tar 16384 \"/srv/ts1\"\n");
    buf_appendf(&e, "  dir pg_tblspc/16384/PG_15_202209061 0 got 0 %s\n", short_sha("", 0));
    buf_appendf(&e, "  dir pg_tblspc/16384/PG_15_202209061/16390 0 got 0 %s\n", short_sha("", 0));
    buf_appendf(&e, "  file pg_tblspc/16384/PG_15_202209061/16390/16391 20000 got 20000 %s\n",
                short_sha(relfile, sizeof(relfile)));
    /* an archive ends when the next one (or the manifest) starts, after the progress */
    if (with_progress)
        buf_appendf(&e, "progress 20480\n");
    buf_appendf(&e, "end 16384.tar\n");
    buf_appendf(&e, "begin base.tar 0 \"\"\n");
    buf_appendf(&e, "  file backup_label %zu got %zu %s\n", strlen(LABEL), strlen(LABEL),
                short_sha(LABEL, strlen(LABEL)));
    buf_appendf(&e, "  dir pg_tblspc 0 got 0 %s\n", short_sha("", 0));
    buf_appendf(&e, "  symlink pg_tblspc/16384 0 -> /srv/ts1 got 0 %s\n", short_sha("", 0));
    buf_appendf(&e, "  file PG_VERSION 3 got 3 %s\n", short_sha("15\n", 3));
    buf_appendf(&e, "  file global/pg_control 8192 got 8192 %s\n",
                short_sha(control, sizeof(control)));
    if (with_progress)
        buf_appendf(&e, "progress 30720\n");
    buf_appendf(&e, "end base.tar\n");
    return buf_steal(&e);
}

/* ---- 15+ message builders ---- */

static int send(struct bbstream *s, char type, const void *payload, size_t n)
{
    uint8_t *m = xmalloc(n + 1);
    m[0] = (uint8_t)type;
    if (n)
        memcpy(m + 1, payload, n);
    int rc = bbstream_copy_data(s, m, n + 1);
    free(m);
    return rc;
}

static int send_n(struct bbstream *s, const char *name, const char *location)
{
    struct buf b = BUF_INIT;
    buf_append(&b, name, strlen(name) + 1);
    buf_append(&b, location, strlen(location) + 1);
    int rc = send(s, 'n', b.data, b.len);
    buf_free(&b);
    return rc;
}

static int send_p(struct bbstream *s, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    return send(s, 'p', b, 8);
}

/* 'd' messages of step bytes each */
static int send_d(struct bbstream *s, const struct buf *data, size_t step)
{
    for (size_t off = 0; off < data->len; off += step) {
        int rc = send(s, 'd', data->data + off, data->len - off < step ? data->len - off : step);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const size_t STEPS[] = {1, 511, 512, 513, 8192, 65536};

/* 'd' messages of step bytes each, lent with a reference (lend false: without) */
static void send_d_ref(struct bbstream *s, struct rec *r, const struct buf *data, size_t step,
                       bool lend)
{
    for (size_t off = 0; off < data->len; off += step) {
        size_t n = data->len - off < step ? data->len - off : step;
        uint8_t *m = xmalloc(n + 1);
        m[0] = 'd';
        memcpy(m + 1, data->data + off, n);
        r->lent = lend ? refbuf_new(m, free) : NULL;
        r->lent_msg = m;
        r->lent_len = n + 1;
        assert_int_equal(lend ? bbstream_copy_data_ref(s, m, n + 1, r->lent)
                              : bbstream_copy_data(s, m, n + 1),
                         0);
        if (lend)
            refbuf_put(r->lent); /* the last reference: frees m */
        else
            free(m);
        r->lent = NULL;
    }
}

/* How test_streamed sends: entry_data callbacks; entry_data_ref callbacks with
 * messages sent without a reference; the same with lent messages. */
enum send_mode { SEND_PLAIN, SEND_REF_CB, SEND_LENT, SEND_MODES };

static void send_data(struct bbstream *s, struct rec *r, const struct buf *data, size_t step,
                      enum send_mode mode)
{
    if (mode == SEND_PLAIN)
        assert_int_equal(send_d(s, data, step), 0);
    else
        send_d_ref(s, r, data, step, mode == SEND_LENT);
}

/* With entry_data_ref, entry bytes come with the reference of the message they lie in
 * (NULL for a message sent without one); the events are the same every way. */
static void test_streamed(void **state)
{
    (void)state;
    struct buf ts = BUF_INIT, base = BUF_INIT, man = BUF_INIT;
    make_tars(&ts, &base, true);
    buf_append_str(&man, MANIFEST);
    char *want = expected_log(true);
    struct bbstream_callbacks cb_ref = CB;
    cb_ref.entry_data = NULL;
    cb_ref.entry_data_ref = r_entry_data_ref;
    for (size_t i = 0; i < sizeof(STEPS) / sizeof(STEPS[0]); i++) {
        for (enum send_mode mode = SEND_PLAIN; mode < SEND_MODES; mode++) {
            struct rec r;
            rec_init(&r);
            struct bbstream *s =
                bbstream_new(BBSTREAM_STREAMED, mode == SEND_PLAIN ? &CB : &cb_ref, &r);
            assert_int_equal(send_n(s, "16384.tar", "/srv/ts1"), 0);
            send_data(s, &r, &ts, STEPS[i], mode);
            assert_int_equal(send_p(s, 20480), 0);
            assert_int_equal(send_n(s, "base.tar", ""), 0);
            send_data(s, &r, &base, STEPS[i], mode);
            assert_int_equal(send_p(s, 30720), 0);
            assert_false(bbstream_manifest_seen(s));
            assert_int_equal(send(s, 'm', NULL, 0), 0);
            assert_true(bbstream_manifest_seen(s));
            send_data(s, &r, &man, STEPS[i], mode);
            assert_int_equal(bbstream_finish(s), 0);
            assert_string_equal((char *)r.log.data, want);
            assert_int_equal(r.manifest.len, strlen(MANIFEST));
            assert_memory_equal(r.manifest.data, MANIFEST, strlen(MANIFEST));
            if (mode == SEND_LENT)
                assert_true(r.lent_bytes >= sizeof(relfile) + sizeof(control));
            else
                assert_int_equal(r.lent_bytes, 0);
            bbstream_free(s);
            rec_free(&r);
        }
    }
    free(want);
    buf_free(&ts);
    buf_free(&base);
    buf_free(&man);
}

static void test_legacy(void **state)
{
    (void)state;
    struct buf ts = BUF_INIT, base = BUF_INIT;
    make_tars(&ts, &base, false); /* 13/14 send no end marker */
    char *want = expected_log(false);
    for (size_t i = 0; i < sizeof(STEPS) / sizeof(STEPS[0]); i++) {
        size_t step = STEPS[i];
        struct rec r;
        rec_init(&r);
        struct bbstream *s = bbstream_new(BBSTREAM_LEGACY, &CB, &r);
        assert_int_equal(bbstream_legacy_archive(s, 16384, "/srv/ts1"), 0);
        for (size_t off = 0; off < ts.len; off += step)
            assert_int_equal(
                bbstream_copy_data(s, ts.data + off, ts.len - off < step ? ts.len - off : step), 0);
        assert_int_equal(bbstream_legacy_archive(s, 0, ""), 0);
        for (size_t off = 0; off < base.len; off += step)
            assert_int_equal(bbstream_copy_data(s, base.data + off,
                                                base.len - off < step ? base.len - off : step),
                             0);
        assert_int_equal(bbstream_legacy_manifest(s), 0);
        size_t ml = strlen(MANIFEST);
        for (size_t off = 0; off < ml; off += step)
            assert_int_equal(
                bbstream_copy_data(s, MANIFEST + off, ml - off < step ? ml - off : step), 0);
        assert_int_equal(bbstream_finish(s), 0);
        assert_string_equal((char *)r.log.data, want);
        assert_memory_equal(r.manifest.data, MANIFEST, ml);
        bbstream_free(s);
        rec_free(&r);
    }
    free(want);

    /* a legacy archive cut inside a file is caught when the next COPY starts */
    struct rec r;
    rec_init(&r);
    struct bbstream *s = bbstream_new(BBSTREAM_LEGACY, &CB, &r);
    assert_int_equal(bbstream_legacy_archive(s, 16384, "/srv/ts1"), 0);
    assert_int_equal(bbstream_copy_data(s, ts.data, 3000), 0);
    assert_int_equal(bbstream_legacy_archive(s, 0, ""), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "tar archive truncated at offset 3000 inside "
                                       "\"PG_15_202209061/16390/16391\" (1464 of 20000 bytes "
                                       "read)");
    char *full = err_format();
    assert_non_null(strstr(full, "while reading archive \"16384.tar\" of the base backup"));
    free(full);
    bbstream_free(s);
    rec_free(&r);

    /* a main-directory archive without location rules */
    rec_init(&r);
    s = bbstream_new(BBSTREAM_LEGACY, &CB, &r);
    assert_int_equal(bbstream_legacy_archive(s, 16384, ""), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "tablespace 16384 announced with location \"\"");
    bbstream_free(s);
    rec_free(&r);
    buf_free(&ts);
    buf_free(&base);
}

/* Send a prefix of a valid stream, then one bad message; expect the error. */
static void expect_protocol_error(const uint8_t *msg, size_t len, bool after_archive,
                                  const char *message)
{
    struct rec r;
    rec_init(&r);
    struct bbstream *s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    if (after_archive)
        assert_int_equal(send_n(s, "base.tar", ""), 0);
    int rc = bbstream_copy_data(s, msg, len);
    if (rc != -ERR_PROTOCOL || strcmp(err_message(), message) != 0)
        fail_msg("rc %d, message \"%s\", want \"%s\"", rc, err_message(), message);
    /* the failure is final */
    assert_int_equal(send_p(s, 1), -ERR_RUNTIME);
    assert_string_equal(err_message(), "backup stream parser used after an earlier error");
    bbstream_free(s);
    rec_free(&r);
}

static void test_malformed_messages(void **state)
{
    (void)state;
    expect_protocol_error((const uint8_t *)"zabc", 4, true,
                          "unexpected message type 'z' (0x7a) in the backup stream");
    expect_protocol_error((const uint8_t *)"\x01", 1, true,
                          "unexpected message type '?' (0x01) in the backup stream");
    expect_protocol_error((const uint8_t *)"", 0, true, "empty message in the backup stream");
    expect_protocol_error((const uint8_t *)"nbase.tar", 9, false,
                          "malformed archive message in the backup stream: archive name is "
                          "not terminated");
    expect_protocol_error((const uint8_t *)"n16384.tar\0/srv", 15, false,
                          "malformed archive message in the backup stream: tablespace "
                          "location is not terminated");
    expect_protocol_error((const uint8_t *)"nbase.tar\0\0xy", 13, false,
                          "malformed archive message in the backup stream: 2 bytes after the "
                          "tablespace location");
    expect_protocol_error((const uint8_t *)"p\0\0\0\0\x10", 6, true,
                          "progress message in the backup stream has 5 bytes of payload, "
                          "expected 8");
    expect_protocol_error((const uint8_t *)"p\0\0\0\0\0\0\0\0\0", 10, true,
                          "progress message in the backup stream has 9 bytes of payload, "
                          "expected 8");
    expect_protocol_error((const uint8_t *)"dxyz", 4, false,
                          "backup stream sent archive data before any archive started");
    expect_protocol_error((const uint8_t *)"mx", 2, true,
                          "manifest message in the backup stream carries 1 unexpected bytes");
    expect_protocol_error((const uint8_t *)"nbase.tar.gz\0\0", 14, false,
                          "archive \"base.tar.gz\" is compressed by the server, which pgark does "
                          "not support");
    expect_protocol_error((const uint8_t *)"npg_wal.tar\0\0", 13, false,
                          "unexpected archive name \"pg_wal.tar\" in the backup stream");
    expect_protocol_error((const uint8_t *)"n16384.tar\0\0", 12, false,
                          "archive \"16384.tar\" announced without a tablespace location");
    expect_protocol_error((const uint8_t *)"nbase.tar\0/x\0", 13, false,
                          "archive \"base.tar\" announced with tablespace location \"/x\"");
}

static void test_order_errors(void **state)
{
    (void)state;
    struct buf ts = BUF_INIT, base = BUF_INIT;
    make_tars(&ts, &base, true);
    struct rec r;

    /* manifest twice; archive after the manifest */
    rec_init(&r);
    struct bbstream *s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "base.tar", ""), 0);
    assert_int_equal(send_d(s, &base, 4096), 0);
    assert_int_equal(send(s, 'm', NULL, 0), 0);
    assert_int_equal(send(s, 'm', NULL, 0), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "backup stream started the manifest twice");
    bbstream_free(s);
    rec_free(&r);

    rec_init(&r);
    s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "base.tar", ""), 0);
    assert_int_equal(send_d(s, &base, 4096), 0);
    assert_int_equal(send(s, 'm', NULL, 0), 0);
    assert_int_equal(send_n(s, "16384.tar", "/srv/ts1"), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "archive \"16384.tar\" started after the backup manifest");
    bbstream_free(s);
    rec_free(&r);

    /* 15+: an archive without its end marker is truncated */
    rec_init(&r);
    s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "16384.tar", "/srv/ts1"), 0);
    struct buf cut = BUF_INIT;
    buf_append(&cut, ts.data, ts.len - 1024);
    assert_int_equal(send_d(s, &cut, 4096), 0);
    assert_int_equal(send_n(s, "base.tar", ""), -ERR_INTEGRITY);
    assert_string_equal(err_message(),
                        "tar archive truncated at offset 22016: no end-of-archive marker");
    bbstream_free(s);
    rec_free(&r);
    buf_free(&cut);

    /* corrupt archive bytes surface as integrity errors naming the archive */
    rec_init(&r);
    s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "base.tar", ""), 0);
    base.data[512 + 512 + 3] ^= 1; /* the "pg_tblspc/" header */
    assert_int_equal(send_d(s, &base, 700), -ERR_INTEGRITY);
    assert_non_null(strstr(err_message(), "tar header checksum mismatch at offset 1024"));
    char *full = err_format();
    assert_non_null(strstr(full, "while reading archive \"base.tar\" of the base backup"));
    free(full);
    bbstream_free(s);
    rec_free(&r);
    base.data[512 + 512 + 3] ^= 1;

    /* a stream without base.tar */
    rec_init(&r);
    s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "16384.tar", "/srv/ts1"), 0);
    assert_int_equal(send_d(s, &ts, 4096), 0);
    assert_int_equal(bbstream_finish(s), -ERR_PROTOCOL);
    assert_string_equal(err_message(),
                        "backup stream ended without the main data directory archive (base.tar)");
    bbstream_free(s);
    rec_free(&r);

    /* a callback failure is returned as is and stops the parser */
    rec_init(&r);
    r.fail_on_archive = 2;
    s = bbstream_new(BBSTREAM_STREAMED, &CB, &r);
    assert_int_equal(send_n(s, "16384.tar", "/srv/ts1"), 0);
    assert_int_equal(send_d(s, &ts, 4096), 0);
    assert_int_equal(send_n(s, "base.tar", ""), -ERR_IO);
    assert_string_equal(err_message(), "cannot open archive");
    assert_int_equal(send_d(s, &base, 4096), -ERR_RUNTIME);
    bbstream_free(s);
    rec_free(&r);

    /* legacy calls on a streamed parser are a programming error */
    s = bbstream_new(BBSTREAM_STREAMED, NULL, NULL);
    assert_int_equal(bbstream_legacy_manifest(s), -ERR_RUNTIME);
    bbstream_free(s);
    buf_free(&ts);
    buf_free(&base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_order_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
