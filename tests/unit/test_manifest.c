/* test_manifest.c — JSON Lines manifest: streaming round trips, flat memory, damage, and
 * the paths an entry may have (hostile ones refused by the reader and the writer). */
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"

#include <jansson.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define CS 8192

/* ---- jansson allocations counted: live bytes and their peak ---- */
static size_t json_live, json_peak;

static void *count_malloc(size_t n)
{
    size_t *p = malloc(n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    json_live += n;
    if (json_live > json_peak)
        json_peak = json_live;
    return (char *)p + 16;
}

static void count_free(void *q)
{
    if (!q)
        return;
    size_t *p = (size_t *)((char *)q - 16);
    json_live -= p[0];
    free(p);
}

static size_t heap_in_use(void)
{
    return mallinfo2().uordblks; /* 0 under AddressSanitizer, which has its own heap */
}

static char tmpdir[128];

static const struct manifest_tablespace TS[] = {{16384, "/srv/ts1"}, {16390, "/srv/ts2"}};

static void make_header(struct manifest_header *h)
{
    memset(h, 0, sizeof(*h));
    h->format = MANIFEST_FORMAT;
    h->label = "20261125T182414Z";
    h->start_lsn = UINT64_C(0x2000028);
    h->stop_lsn = UINT64_C(0x1A0000100);
    h->start_time = 1795631054; /* 2026-11-25T18:24:14Z */
    h->stop_time = 1795631060;
    h->timeline = 3;
    h->pg_version = 150018;
    h->system_identifier = UINT64_C(7311041234567890123);
    h->chunk_size = CS;
    h->tablespaces = TS;
    h->n_tablespaces = 2;
    h->stored_bytes = 12345;
    h->compression = "zstd";
    h->encrypted = true;
}

/* File number i, deterministic; chunk names in chunks (room for 8). Every third file has
 * a digest of the older kind (whole-content "sha256"). */
static void make_file(uint64_t i, struct manifest_file *f, char *path, uint8_t *chunks)
{
    memset(f, 0, sizeof(*f));
    sprintf(path, "base/16384/%llu", (unsigned long long)(16384 + i));
    f->path = path;
    f->type = MANIFEST_TYPE_FILE;
    f->mode = 0600;
    f->size = (i % 5) * 5000; /* 0 .. 20000: 0 to 3 chunks */
    f->mtime = 1700000000 + (int64_t)i;
    f->digest_kind = i % 3 == 0 ? MANIFEST_DIGEST_FILE : MANIFEST_DIGEST_CHUNKS;
    sha256(&i, sizeof(i), f->digest);
    f->n_chunks = (f->size + CS - 1) / CS;
    for (size_t k = 0; k < f->n_chunks; k++) {
        uint64_t seed[2] = {i, k};
        sha256(seed, sizeof(seed), chunks + k * SHA256_LEN);
    }
    f->chunks = chunks;
}

static int sink_buf(void *arg, const void *data, size_t len)
{
    buf_append(arg, data, len);
    return 0;
}

/* ---- a small manifest with every kind of entry ---- */

struct entry_copy {
    char path[256];
    char link[256];
    enum manifest_file_type type;
    uint32_t mode;
    uint64_t size;
    int64_t mtime;
    enum manifest_digest_kind digest_kind;
    uint8_t digest[SHA256_LEN];
    uint8_t chunks[8 * SHA256_LEN];
    size_t n_chunks;
};

struct small {
    struct entry_copy e[16];
    size_t n;
};

static int keep(void *arg, const struct manifest_file *f)
{
    struct small *s = arg;
    assert_true(s->n < 16);
    struct entry_copy *c = &s->e[s->n++];
    memset(c, 0, sizeof(*c));
    strcpy(c->path, f->path);
    if (f->link)
        strcpy(c->link, f->link);
    c->type = f->type;
    c->mode = f->mode;
    c->size = f->size;
    c->mtime = f->mtime;
    c->digest_kind = f->digest_kind;
    memcpy(c->digest, f->digest, SHA256_LEN);
    c->n_chunks = f->n_chunks;
    if (f->n_chunks)
        memcpy(c->chunks, f->chunks, f->n_chunks * SHA256_LEN);
    return 0;
}

static const char *const PATHS[] = {
    "backup_label",
    "base/1/\xff\xfe-latin1-\xe9", /* not UTF-8 */
    "base/1/caf\xc3\xa9",          /* UTF-8: stays text */
    "pg_tblspc/16384",
    "pg_wal",
    "base/1/with \"quote\" and \\ backslash", /* escaped in JSON */
};

/* Write the small manifest; returns the entries written through *files. */
static void write_small(struct buf *out, struct manifest_file *files, uint8_t chunks[][8 * 32])
{
    struct manifest_writer *w = manifest_writer_new(tmpdir, CS);
    assert_non_null(w);
    for (size_t i = 0; i < 6; i++) {
        char *unused = xmalloc(64);
        make_file(i + 1, &files[i], unused, chunks[i]);
        free(unused);
        files[i].path = PATHS[i];
    }
    files[3].type = MANIFEST_TYPE_SYMLINK;
    files[3].size = 0;
    files[3].n_chunks = 0;
    files[3].mode = 0777;
    files[3].link = "/srv/\xc3\x28-bad-utf8";
    files[4].type = MANIFEST_TYPE_DIR;
    files[4].size = 0;
    files[4].n_chunks = 0;
    files[4].mode = 0700;
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(manifest_writer_add(w, &files[i]), 0);
    struct manifest_header h;
    make_header(&h);
    static const struct manifest_tablespace odd[] = {{16384, "/srv/ts1"}, {16390, "/srv/\xff"}};
    h.tablespaces = odd;
    assert_int_equal(manifest_writer_finish(w, &h, sink_buf, out), 0);
    assert_int_equal(h.files, 6);
    uint64_t sum = 0;
    for (size_t i = 0; i < 6; i++)
        sum += files[i].size;
    assert_int_equal(h.logical_bytes, sum);
    manifest_writer_free(w);
}

static int read_all(const uint8_t *data, size_t len, size_t step, struct small *s,
                    struct manifest_reader **out)
{
    struct manifest_reader *r = manifest_reader_new(keep, s);
    int rc = 0;
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = manifest_reader_feed(r, data + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = manifest_reader_finish(r);
    if (out)
        *out = r;
    else
        manifest_reader_free(r);
    return rc;
}

static void test_round_trip_small(void **state)
{
    (void)state;
    struct buf m = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks);

    /* the header is line 1, exactly as documented */
    const char *want_head =
        "{\"format\":1,\"label\":\"20261125T182414Z\",\"start_lsn\":\"0/2000028\","
        "\"stop_lsn\":\"1/A0000100\",\"start_time\":\"2026-11-25T18:24:14Z\","
        "\"stop_time\":\"2026-11-25T18:24:20Z\",\"timeline\":3,\"pg_version\":150018,"
        "\"system_identifier\":\"7311041234567890123\",\"chunk_size\":8192,"
        "\"tablespaces\":[{\"oid\":16384,\"location\":\"/srv/ts1\"},"
        "{\"oid\":16390,\"location_hex\":\"2f7372762fff\"}],";
    assert_memory_equal(m.data, want_head, strlen(want_head));
    assert_non_null(
        strstr((char *)m.data, "\"path_hex\":\"626173652f312ffffe2d6c6174696e312de9\""));
    assert_non_null(strstr((char *)m.data, "\"path\":\"base/1/caf\xc3\xa9\""));
    assert_non_null(strstr((char *)m.data, "\"link_hex\":"));
    assert_non_null(strstr((char *)m.data, "{\"path\":\"pg_wal\",\"type\":\"dir\",\"mode\":700,"
                                           "\"mtime\":1700000005}\n"));
    /* each file's digest under the name of its kind */
    char hex[SHA256_HEX_LEN + 1], *want = NULL;
    hex_encode(files[0].digest, SHA256_LEN, hex);
    assert_int_equal(files[0].digest_kind, MANIFEST_DIGEST_CHUNKS);
    want = xasprintf("\"mtime\":1700000001,\"sha256_chunks\":\"%s\",\"chunks\":[", hex);
    assert_non_null(strstr((char *)m.data, want));
    free(want);
    hex_encode(files[2].digest, SHA256_LEN, hex);
    assert_int_equal(files[2].digest_kind, MANIFEST_DIGEST_FILE);
    want = xasprintf("\"mtime\":1700000003,\"sha256\":\"%s\",\"chunks\":[", hex);
    assert_non_null(strstr((char *)m.data, want));
    free(want);
    /* exactly 7 lines: one a line */
    size_t lines = 0;
    for (size_t i = 0; i < m.len; i++)
        lines += m.data[i] == '\n';
    assert_int_equal(lines, 7);

    static const size_t steps[] = {1, 7, 100, 4096, 0};
    for (size_t st = 0; st < sizeof(steps) / sizeof(steps[0]); st++) {
        struct small s = {.n = 0};
        struct manifest_reader *r;
        assert_int_equal(read_all(m.data, m.len, steps[st], &s, &r), 0);
        const struct manifest_header *h = manifest_reader_header(r);
        assert_non_null(h);
        assert_string_equal(h->label, "20261125T182414Z");
        assert_int_equal(h->start_lsn, 0x2000028);
        assert_int_equal(h->stop_lsn, UINT64_C(0x1A0000100));
        assert_int_equal(h->start_time, 1795631054);
        assert_int_equal(h->stop_time, 1795631060);
        assert_int_equal(h->consistent_time_us, 0); /* none recorded: the key is left out */
        assert_int_equal(h->timeline, 3);
        assert_int_equal(h->pg_version, 150018);
        assert_int_equal(h->system_identifier, UINT64_C(7311041234567890123));
        assert_int_equal(h->chunk_size, CS);
        assert_int_equal(h->n_tablespaces, 2);
        assert_int_equal(h->tablespaces[1].oid, 16390);
        assert_string_equal(h->tablespaces[1].location, "/srv/\xff");
        assert_int_equal(h->files, 6);
        assert_int_equal(h->stored_bytes, 12345);
        assert_string_equal(h->compression, "zstd");
        assert_true(h->encrypted);
        assert_int_equal(s.n, 6);
        for (size_t i = 0; i < 6; i++) {
            assert_string_equal(s.e[i].path, files[i].path);
            assert_int_equal(s.e[i].type, files[i].type);
            assert_int_equal(s.e[i].mode, files[i].mode);
            assert_int_equal(s.e[i].size, files[i].size);
            assert_int_equal(s.e[i].mtime, files[i].mtime);
            assert_int_equal(s.e[i].n_chunks, files[i].n_chunks);
            if (files[i].type == MANIFEST_TYPE_FILE) {
                assert_int_equal(s.e[i].digest_kind, files[i].digest_kind);
                assert_memory_equal(s.e[i].digest, files[i].digest, SHA256_LEN);
            }
            if (files[i].n_chunks)
                assert_memory_equal(s.e[i].chunks, files[i].chunks, files[i].n_chunks * SHA256_LEN);
        }
        assert_string_equal(s.e[3].link, "/srv/\xc3\x28-bad-utf8");
        manifest_reader_free(r);
    }
    buf_free(&m);
}

/* ---- 100k files through writer -> sink -> reader, memory flat ---- */

struct big {
    struct manifest_reader *r;
    uint64_t seen;
    size_t heap_at_1000, heap_at_end;
    size_t json_peak_reading;
};

static int big_sink(void *arg, const void *data, size_t len)
{
    struct big *b = arg;
    return manifest_reader_feed(b->r, data, len);
}

static int big_check(void *arg, const struct manifest_file *f)
{
    struct big *b = arg;
    struct manifest_file want;
    char path[64];
    uint8_t chunks[8 * 32];
    make_file(b->seen, &want, path, chunks);
    assert_string_equal(f->path, want.path);
    assert_int_equal(f->size, want.size);
    assert_int_equal(f->mtime, want.mtime);
    assert_int_equal(f->n_chunks, want.n_chunks);
    assert_int_equal(f->digest_kind, want.digest_kind);
    assert_memory_equal(f->digest, want.digest, SHA256_LEN);
    if (want.n_chunks)
        assert_memory_equal(f->chunks, chunks, want.n_chunks * SHA256_LEN);
    b->seen++;
    if (b->seen == 1000)
        b->heap_at_1000 = heap_in_use();
    if (b->seen == 100000)
        b->heap_at_end = heap_in_use();
    return 0;
}

static void test_100k_files_flat_memory(void **state)
{
    (void)state;
    const uint64_t N = 100000;
    struct big b = {0};
    b.r = manifest_reader_new(big_check, &b);
    struct manifest_writer *w = manifest_writer_new(tmpdir, CS);
    assert_non_null(w);
    size_t heap_w1000 = 0, heap_wend = 0;
    size_t json_base = json_live;
    json_peak = json_base;
    for (uint64_t i = 0; i < N; i++) {
        struct manifest_file f;
        char path[64];
        uint8_t chunks[8 * 32];
        make_file(i, &f, path, chunks);
        assert_int_equal(manifest_writer_add(w, &f), 0);
        if (i == 1000)
            heap_w1000 = heap_in_use();
    }
    heap_wend = heap_in_use();
    size_t json_peak_writing = json_peak - json_base;
    struct manifest_header h;
    make_header(&h);
    json_base = json_live;
    json_peak = json_base;
    assert_int_equal(manifest_writer_finish(w, &h, big_sink, &b), 0);
    assert_int_equal(manifest_reader_finish(b.r), 0);
    assert_int_equal(b.seen, N);
    assert_int_equal(manifest_reader_lines(b.r), N + 1);
    assert_int_equal(manifest_reader_header(b.r)->files, N);
    /* the manifest is about 13 MB; no more than one line's JSON tree is ever alive */
    print_message("# jansson peak: writing %zu bytes, reading %zu bytes; heap growth "
                  "writing %zd, reading %zd%s\n",
                  json_peak_writing, json_peak - json_base, (ssize_t)(heap_wend - heap_w1000),
                  (ssize_t)(b.heap_at_end - b.heap_at_1000),
                  heap_w1000 ? ""
                             : " (not measured: mallinfo2 reports nothing under ASan or valgrind)");
    assert_true(json_peak_writing < 16 * 1024);
    assert_true(json_peak - json_base < 16 * 1024);
    /* and the heap does not grow with the file count (skipped under ASan: no mallinfo) */
    if (heap_w1000)
        assert_true(heap_wend < heap_w1000 + 64 * 1024);
    if (b.heap_at_1000)
        assert_true(b.heap_at_end < b.heap_at_1000 + 64 * 1024);
    manifest_writer_free(w);
    manifest_reader_free(b.r);
}

/* ---- damage ---- */

static void expect_integrity(const struct buf *m, size_t step, const char *msg, size_t files)
{
    struct small s = {.n = 0};
    int rc = read_all(m->data, m->len, step, &s, NULL);
    if (rc != -ERR_INTEGRITY || strncmp(err_message(), msg, strlen(msg)) != 0)
        fail_msg("rc %d, message \"%s\", want \"%s...\"", rc, err_message(), msg);
    assert_int_equal(s.n, files);
}

/* Copy of m with line n (1-based) replaced by text (NULL: removed). */
static void edit_line(const struct buf *m, size_t n, const char *text, struct buf *out)
{
    buf_reset(out);
    size_t line = 1, start = 0;
    for (size_t i = 0; i < m->len; i++) {
        if (m->data[i] != '\n')
            continue;
        if (line != n)
            buf_append(out, m->data + start, i + 1 - start);
        else if (text)
            buf_appendf(out, "%s\n", text);
        line++;
        start = i + 1;
    }
}

static void test_truncated(void **state)
{
    (void)state;
    struct buf m = BUF_INIT, t = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks);

    edit_line(&m, 7, NULL, &t); /* cut at a line boundary */
    expect_integrity(&t, 0, "manifest truncated: the header announces 6 files, 5 were read", 5);
    expect_integrity(&t, 1, "manifest truncated: the header announces 6 files, 5 were read", 5);
    buf_reset(&t);
    buf_append(&t, m.data, m.len - 10); /* cut inside the last line */
    expect_integrity(&t, 3, "manifest truncated: line 7 is incomplete", 5);
    buf_reset(&t);
    buf_append(&t, m.data, m.len - 1); /* only the final newline lost */
    expect_integrity(&t, 0, "manifest truncated: line 7 is incomplete", 5);
    buf_reset(&t);
    expect_integrity(&t, 0, "manifest is empty", 0);
    buf_append(&t, m.data, 50);
    expect_integrity(&t, 0, "manifest truncated: line 1 is incomplete", 0);

    /* a reader that wants the header only stops after line 1 */
    struct manifest_reader *r = manifest_reader_new(NULL, NULL);
    const uint8_t *nl = memchr(m.data, '\n', m.len);
    assert_int_equal(manifest_reader_feed(r, m.data, (size_t)(nl - m.data)), 0);
    assert_null(manifest_reader_header(r));
    assert_int_equal(manifest_reader_feed(r, nl, 1), 0);
    assert_non_null(manifest_reader_header(r));
    assert_int_equal(manifest_reader_header(r)->files, 6);
    manifest_reader_free(r);
    buf_free(&m);
    buf_free(&t);
}

static void test_bad_lines(void **state)
{
    (void)state;
    struct buf m = BUF_INIT, t = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks);

    edit_line(&m, 4, "{\"path\": \"base/1/x\", \"type\": \"fi", &t);
    expect_integrity(&t, 1, "manifest line 4 is not valid JSON: ", 2);
    expect_integrity(&t, 0, "manifest line 4 is not valid JSON: ", 2);
    edit_line(&m, 3, "[1,2]", &t);
    expect_integrity(&t, 0, "manifest line 3: not a JSON object", 1);
    edit_line(&m, 2,
              "{\"path\":\"a\",\"type\":\"file\",\"mode\":600,\"size\":20000,\"mtime\":1,"
              "\"sha256\":\""
              "0000000000000000000000000000000000000000000000000000000000000000"
              "\",\"chunks\":[]}",
              &t);
    expect_integrity(&t, 0, "manifest line 2: 0 chunks for 20000 bytes, expected 3", 0);
    edit_line(&m, 2, "{\"path\":\"a\",\"type\":\"dir\",\"mode\":800,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: \"mode\" 800 is not an octal mode", 0);
    edit_line(&m, 2, "{\"path\":\"base/../../etc\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(
        &t, 0, "manifest line 2: entry \"base/../../etc\" has a \".\" or \"..\" component", 0);
    edit_line(&m, 2,
              "{\"path\":\"/etc/passwd\",\"type\":\"file\",\"mode\":600,\"size\":0,\"mtime\":1,"
              "\"sha256_chunks\":\""
              "0000000000000000000000000000000000000000000000000000000000000000"
              "\",\"chunks\":[]}",
              &t);
    expect_integrity(&t, 0, "manifest line 2: entry \"/etc/passwd\" is an absolute path", 0);
    edit_line(&m, 2, "{\"path\":\"a\\n\\u001b[2J\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: entry \"a\\x0a\\x1b[2J\" has a control character", 0);
    edit_line(&m, 2, "{\"path_hex\":\"2e2f61\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: entry \"./a\" has a \".\" or \"..\" component", 0);
    edit_line(&m, 2,
              "{\"path\":\"a\",\"path_hex\":\"61\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: exactly one of \"path\" and \"path_hex\" is required",
                     0);
    edit_line(&m, 2, "{\"path_hex\":\"610062\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: \"path_hex\" contains a NUL byte", 0);
    edit_line(&m, 2,
              "{\"path\":\"a\",\"type\":\"file\",\"mode\":600,\"size\":1,\"mtime\":1,"
              "\"chunks\":[\"x\"]}",
              &t);
    expect_integrity(&t, 0, "manifest line 2: \"sha256_chunks\" is missing or not a string", 0);
    edit_line(&m, 2,
              "{\"path\":\"a\",\"type\":\"file\",\"mode\":600,\"size\":0,\"mtime\":1,"
              "\"sha256\":\""
              "0000000000000000000000000000000000000000000000000000000000000000"
              "\",\"sha256_chunks\":\""
              "0000000000000000000000000000000000000000000000000000000000000000"
              "\",\"chunks\":[]}",
              &t);
    expect_integrity(&t, 0, "manifest line 2: both \"sha256\" and \"sha256_chunks\" are present",
                     0);
    edit_line(&m, 2,
              "{\"path\":\"a\",\"type\":\"file\",\"mode\":600,\"size\":0,\"mtime\":1,"
              "\"sha256_chunks\":\"00\",\"chunks\":[]}",
              &t);
    expect_integrity(&t, 0, "manifest line 2: \"sha256_chunks\" is not a SHA-256 digest", 0);
    edit_line(&m, 2, "{\"path\":\"a\",\"type\":\"socket\",\"mode\":700,\"mtime\":1}", &t);
    expect_integrity(&t, 0, "manifest line 2: unknown type \"socket\"", 0);
    edit_line(&m, 2, "{\"path\":\"a\",\"type\":\"dir\",\"mode\":700,\"mtime\":1,\"mtime\":2}", &t);
    expect_integrity(&t, 0, "manifest line 2 is not valid JSON: duplicate object key", 0);

    /* header damage */
    edit_line(&m, 1, "{\"format\":2}", &t);
    expect_integrity(&t, 0, "manifest line 1: unsupported manifest format 2", 0);
    /* one file line too many: caught before the extra file is passed on */
    struct buf more = BUF_INIT;
    buf_append(&more, m.data, m.len);
    buf_append_str(&more, "{\"path\":\"extra\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}\n");
    expect_integrity(&more, 0, "manifest line 8: more files than the 6 the header announces", 6);
    /* sizes that do not add up to the header's total */
    edit_line(&m, 5, "{\"path\":\"pg_tblspc/16384\",\"type\":\"dir\",\"mode\":700,\"mtime\":1}",
              &t);
    const char *orig = "\"logical_bytes\":";
    char *p = strstr((char *)t.data, orig);
    assert_non_null(p);
    p[strlen(orig)] = p[strlen(orig)] == '9' ? '8' : '9'; /* change the first digit */
    expect_integrity(&t, 0, "manifest damaged: file sizes add up to", 6);

    buf_free(&more);
    buf_free(&m);
    buf_free(&t);
}

/* The file digest of the format: SHA-256 over the chunks' SHA-256s (values from
 * Python's hashlib). */
static void test_chunks_digest(void **state)
{
    (void)state;
    uint8_t sums[2 * SHA256_LEN], got[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256("abc", 3, sums);
    sha256("", 0, sums + SHA256_LEN);
    manifest_chunks_digest(NULL, 0, got); /* empty file: the SHA-256 of nothing */
    assert_string_equal(hex_encode(got, SHA256_LEN, hex),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    manifest_chunks_digest(sums, 1, got);
    assert_string_equal(hex_encode(got, SHA256_LEN, hex),
                        "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");
    manifest_chunks_digest(sums, 2, got);
    assert_string_equal(hex_encode(got, SHA256_LEN, hex),
                        "6f1290896ee81a0349174d19f4473d267a10289c40480861d5c42affffbd79f9");
}

/* A file line as an older pgark wrote it (whole-content "sha256") still reads, as that
 * kind; the same line with "sha256_chunks" reads as the new kind. */
static void test_old_digest_line(void **state)
{
    (void)state;
    struct buf m = BUF_INIT, t = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks); /* line 2: 5000 bytes, one chunk */
    static const char *const keys[] = {"sha256", "sha256_chunks"};
    for (int k = 0; k < 2; k++) {
        char *line = xasprintf(
            "{\"path\":\"backup_label\",\"type\":\"file\",\"mode\":600,\"size\":5000,"
            "\"mtime\":1700000001,\"%s\":"
            "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
            "\"chunks\":[\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]}",
            keys[k]);
        edit_line(&m, 2, line, &t);
        free(line);
        struct small s = {.n = 0};
        assert_int_equal(read_all(t.data, t.len, 0, &s, NULL), 0);
        assert_int_equal(s.n, 6);
        assert_string_equal(s.e[0].path, "backup_label");
        assert_int_equal(s.e[0].digest_kind, k ? MANIFEST_DIGEST_CHUNKS : MANIFEST_DIGEST_FILE);
        char hex[SHA256_HEX_LEN + 1];
        assert_string_equal(hex_encode(s.e[0].digest, SHA256_LEN, hex),
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_string_equal(hex_encode(s.e[0].chunks, SHA256_LEN, hex),
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
    buf_free(&m);
    buf_free(&t);
}

static void test_header_fields(void **state)
{
    (void)state;
    struct buf m = BUF_INIT, t = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks);
    static const struct {
        const char *from, *to, *msg;
    } cases[] = {
        {"\"start_lsn\":\"0/2000028\"", "\"start_lsn\":\"0/2000028x\"",
         "manifest line 1: \"start_lsn\" is not an LSN: \"0/2000028x\""},
        {"\"stop_lsn\":\"1/A0000100\"", "\"stop_lsn\":\"1A0000100\"",
         "manifest line 1: \"stop_lsn\" is not an LSN: \"1A0000100\""},
        {"\"start_time\":\"2026-11-25T18:24:14Z\"", "\"start_time\":\"2026-13-25T18:24:14Z\"",
         "manifest line 1: \"start_time\" is not a UTC time: \"2026-13-25T18:24:14Z\""},
        {"\"timeline\":3", "\"timeline\":\"3\"",
         "manifest line 1: \"timeline\" is missing or not an integer"},
        {"\"system_identifier\":\"7311041234567890123\"", "\"system_identifier\":\"-1\"",
         "manifest line 1: \"system_identifier\" is not a number: \"-1\""},
        {"\"encrypted\":true", "\"encrypted\":1",
         "manifest line 1: \"encrypted\" is missing or not a boolean"},
        {"\"chunk_size\":8192", "\"chunk_size\":0", "manifest line 1: \"chunk_size\" is zero"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&t);
        char *at = strstr((char *)m.data, cases[i].from);
        assert_non_null(at);
        buf_append(&t, m.data, (size_t)(at - (char *)m.data));
        buf_append_str(&t, cases[i].to);
        buf_append_str(&t, at + strlen(cases[i].from));
        expect_integrity(&t, 0, cases[i].msg, 0);
    }
    buf_free(&m);
    buf_free(&t);
}

/* The time a backup is consistent at: optional (older manifests lack it), read back to
 * the microsecond, refused when not a positive integer; and what restore makes of it. */
static void test_consistent_time(void **state)
{
    (void)state;
    struct buf m = BUF_INIT, t = BUF_INIT;
    struct manifest_file files[6];
    uint8_t chunks[6][8 * 32];
    write_small(&m, files, chunks);
    assert_null(strstr((char *)m.data, "consistent_time_us"));
    static const char at_key[] = "\"encrypted\":true";
    char *at = strstr((char *)m.data, at_key);
    assert_non_null(at);
    static const struct {
        const char *value, *msg;
    } cases[] = {
        {"1795631059123456", NULL},
        {"0", "manifest line 1: \"consistent_time_us\" is out of range"},
        {"\"1795631059123456\"",
         "manifest line 1: \"consistent_time_us\" is missing or not an integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&t);
        buf_append(&t, m.data, (size_t)(at - (char *)m.data));
        buf_appendf(&t, "\"consistent_time_us\":%s,", cases[i].value);
        buf_append_str(&t, at);
        if (cases[i].msg) {
            expect_integrity(&t, 0, cases[i].msg, 0);
            continue;
        }
        struct small s = {.n = 0};
        struct manifest_reader *r;
        assert_int_equal(read_all(t.data, t.len, 4096, &s, &r), 0);
        const struct manifest_header *h = manifest_reader_header(r);
        assert_int_equal(h->consistent_time_us, INT64_C(1795631059123456));
        manifest_reader_free(r);
    }
    /* Known: the target may be that very time (inclusive), a microsecond later when
     * exclusive. Unknown: the second after the stop time, as before. */
    assert_int_equal(manifest_earliest_target_us(1795631060, INT64_C(1795631059123456), false),
                     INT64_C(1795631059123456));
    assert_int_equal(manifest_earliest_target_us(1795631060, INT64_C(1795631059123456), true),
                     INT64_C(1795631059123457));
    assert_int_equal(manifest_earliest_target_us(1795631060, 0, false), INT64_C(1795631061000000));
    buf_free(&m);
    buf_free(&t);
}

static void test_writer_checks(void **state)
{
    (void)state;
    assert_null(manifest_writer_new("/nonexistent-pgark-dir", CS));
    assert_int_equal(err_kind(), ERR_NOT_FOUND);
    assert_string_equal(err_message(), "cannot create a temporary file in "
                                       "\"/nonexistent-pgark-dir\": No such file or directory");

    struct manifest_writer *w = manifest_writer_new(tmpdir, CS);
    struct manifest_file f;
    char path[64];
    uint8_t chunks[8 * 32];
    make_file(3, &f, path, chunks); /* 15000 bytes, 2 chunks */
    f.n_chunks = 1;
    assert_int_equal(manifest_writer_add(w, &f), -ERR_RUNTIME);
    assert_string_equal(err_message(), "inconsistent manifest entry for \"base/16384/16387\": 1 "
                                       "chunks for 15000 bytes, link unset");
    f.n_chunks = 2;
    f.link = "x";
    assert_int_equal(manifest_writer_add(w, &f), -ERR_RUNTIME);
    f.link = NULL;
    /* a path restore could not lay down is refused when the backup is taken */
    f.path = "base/\x1b[2J";
    assert_int_equal(manifest_writer_add(w, &f), -ERR_RUNTIME);
    assert_string_equal(err_message(), "the path \"base/\\x1b[2J\" has a control character: a "
                                       "restore could not lay it down");
    f.path = "../x";
    assert_int_equal(manifest_writer_add(w, &f), -ERR_RUNTIME);
    f.path = path;
    assert_int_equal(manifest_writer_add(w, &f), 0);
    struct manifest_header h;
    make_header(&h);
    h.chunk_size = 4096;
    struct buf out = BUF_INIT;
    assert_int_equal(manifest_writer_finish(w, &h, sink_buf, &out), -ERR_RUNTIME);
    manifest_writer_free(w);
    buf_free(&out);
    /* the temporary file is unlinked at once: the directory stays empty */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgark-test-manifest-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

/* Paths a manifest may hold, and the hostile ones restore refuses. */
static void test_path_problem(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "PG_VERSION", "base/1/1259",      "pg_tblspc/16384/PG_15_1/5/1", ".hidden", "a..b", "..a",
        "a/.b",       "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        if (manifest_path_problem(ok[i]))
            fail_msg("\"%s\" refused: %s", ok[i], manifest_path_problem(ok[i]));
    }
    char longname[300], longpath[1100];
    memset(longname, 'n', sizeof(longname));
    longname[256] = '\0';
    memset(longpath, 'a', sizeof(longpath));
    for (size_t i = 100; i < 1100; i += 100)
        longpath[i] = '/';
    longpath[1025] = '\0';
    static const struct {
        const char *path, *why;
    } bad[] = {
        {"", "is empty"},
        {"/etc/passwd", "is an absolute path"},
        {"../outside", "has a \".\" or \"..\" component"},
        {"base/../../x", "has a \".\" or \"..\" component"},
        {"base/..", "has a \".\" or \"..\" component"},
        {"./PG_VERSION", "has a \".\" or \"..\" component"},
        {"base/./1", "has a \".\" or \"..\" component"},
        {"base//1", "has an empty component"},
        {"base/", "has an empty component"},
        {"base/\n1", "has a control character"},
        {"esc\x1b[2J", "has a control character"},
        {"del\x7f", "has a control character"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        const char *why = manifest_path_problem(bad[i].path);
        if (!why || strcmp(why, bad[i].why) != 0)
            fail_msg("\"%s\": %s, expected %s", bad[i].path, why ? why : "accepted", bad[i].why);
    }
    assert_string_equal(manifest_path_problem(longname), "has a component longer than 255 bytes");
    longname[255] = '\0';
    assert_null(manifest_path_problem(longname));
    assert_string_equal(manifest_path_problem(longpath), "is longer than 1024 bytes");
    longpath[1024] = '\0';
    assert_null(manifest_path_problem(longpath));

    struct buf b = BUF_INIT;
    manifest_path_show(&b, "a\nb\\c\x1b");
    assert_string_equal((const char *)b.data, "a\\x0ab\\x5cc\\x1b");
    buf_free(&b);
}

int main(void)
{
    json_set_alloc_funcs(count_malloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_small), cmocka_unit_test(test_100k_files_flat_memory),
        cmocka_unit_test(test_truncated),        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_header_fields),    cmocka_unit_test(test_consistent_time),
        cmocka_unit_test(test_writer_checks),    cmocka_unit_test(test_chunks_digest),
        cmocka_unit_test(test_old_digest_line),  cmocka_unit_test(test_path_problem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
