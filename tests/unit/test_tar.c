/* test_tar.c — the streaming tar reader against crafted and GNU tar-made archives. */
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"
#include "pgark/tar.h"
#include "tarbuild.h"

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

struct seen {
    char *path;
    char *link;
    enum tar_type type;
    uint32_t mode;
    uint64_t size;
    int64_t mtime;
    uint64_t got; /* data bytes delivered */
    char sha[SHA256_HEX_LEN + 1];
    bool ended;
};

struct collect {
    struct seen *e;
    size_t n, cap;
    struct sha256_ctx *ctx;
    bool open;
    int fail_data_after; /* >0: entry_data fails when this many bytes were seen */
    uint64_t total;
};

static int on_begin(void *arg, const struct tar_entry *te)
{
    struct collect *c = arg;
    assert_false(c->open);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->e = xrealloc(c->e, c->cap * sizeof(*c->e));
    }
    struct seen *s = &c->e[c->n++];
    memset(s, 0, sizeof(*s));
    s->path = xstrdup(te->path);
    s->link = te->link ? xstrdup(te->link) : NULL;
    s->type = te->type;
    s->mode = te->mode;
    s->size = te->size;
    s->mtime = te->mtime;
    c->open = true;
    return 0;
}

static int on_data(void *arg, const uint8_t *d, size_t n)
{
    struct collect *c = arg;
    assert_true(c->open);
    assert_true(n > 0);
    c->e[c->n - 1].got += n;
    c->total += n;
    sha256_ctx_update(c->ctx, d, n);
    if (c->fail_data_after && c->total >= (uint64_t)c->fail_data_after)
        return err_set(ERR_IO, "disk on fire");
    return 0;
}

static int on_end(void *arg)
{
    struct collect *c = arg;
    assert_true(c->open);
    struct seen *s = &c->e[c->n - 1];
    uint8_t d[SHA256_LEN];
    sha256_ctx_final(c->ctx, d);
    hex_encode(d, SHA256_LEN, s->sha);
    s->ended = true;
    c->open = false;
    return 0;
}

static const struct tar_callbacks CB = {on_begin, on_data, on_end};

static void collect_free(struct collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].path);
        free(c->e[i].link);
    }
    free(c->e);
    sha256_ctx_free(c->ctx);
    memset(c, 0, sizeof(*c));
}

/* Feed data in pieces of step bytes (0 = all at once); finish with the given rule. */
static int run(const uint8_t *data, size_t len, size_t step, bool marker, struct collect *c)
{
    memset(c, 0, sizeof(*c));
    c->ctx = sha256_ctx_new();
    err_clear();
    struct tar_reader *r = tar_reader_new(&CB, c);
    int rc = 0;
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = tar_reader_feed(r, data + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = tar_reader_finish(r, marker);
    tar_reader_free(r);
    return rc;
}

static const size_t STEPS[] = {1, 511, 512, 513, 65536, 0};
#define NSTEPS (sizeof(STEPS) / sizeof(STEPS[0]))

static void sha_hex(const void *d, size_t n, char out[SHA256_HEX_LEN + 1])
{
    uint8_t md[SHA256_LEN];
    sha256(d, n, md);
    hex_encode(md, SHA256_LEN, out);
}

static void test_ustar_basic_any_split(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    char big[1500];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    tb_file(&a, "backup_label", "START WAL LOCATION: 0/2000028\n", 30);
    tb_dir(&a, "base/");
    tb_file(&a, "base/empty", "", 0);
    tb_file(&a, "base/512", big, 512);
    tb_file(&a, "base/1500", big, 1500);
    tb_symlink(&a, "pg_tblspc/16384/", "/srv/ts1");
    tb_end(&a);

    for (size_t s = 0; s < NSTEPS; s++) {
        struct collect c;
        assert_int_equal(run(a.data, a.len, STEPS[s], true, &c), 0);
        assert_int_equal(c.n, 6);
        assert_string_equal(c.e[0].path, "backup_label");
        assert_int_equal(c.e[0].type, TAR_TYPE_FILE);
        assert_int_equal(c.e[0].size, 30);
        assert_int_equal(c.e[0].mode, 0600);
        assert_int_equal(c.e[0].mtime, 1700000000);
        assert_string_equal(c.e[1].path, "base");
        assert_int_equal(c.e[1].type, TAR_TYPE_DIR);
        assert_int_equal(c.e[1].mode, 0700);
        assert_string_equal(c.e[2].path, "base/empty");
        assert_int_equal(c.e[2].got, 0);
        char want[65];
        sha_hex("", 0, want);
        assert_string_equal(c.e[2].sha, want);
        sha_hex(big, 512, want);
        assert_string_equal(c.e[3].sha, want);
        sha_hex(big, 1500, want);
        assert_string_equal(c.e[4].sha, want);
        assert_int_equal(c.e[4].got, 1500);
        assert_string_equal(c.e[5].path, "pg_tblspc/16384");
        assert_int_equal(c.e[5].type, TAR_TYPE_SYMLINK);
        assert_string_equal(c.e[5].link, "/srv/ts1");
        for (size_t i = 0; i < c.n; i++)
            assert_true(c.e[i].ended);
        collect_free(&c);
    }
    buf_free(&a);
}

static void test_ustar_prefix(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    struct tb_header h = {.name = "16385_fsm",
                          .prefix = "PG_15_202209061/16384",
                          .type = '0',
                          .mode = 0600,
                          .size = 3,
                          .mtime = 5};
    tb_header(&a, &h);
    tb_data(&a, "abc", 3);
    tb_end(&a);
    struct collect c;
    assert_int_equal(run(a.data, a.len, 0, true, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.e[0].path, "PG_15_202209061/16384/16385_fsm");
    collect_free(&c);

    /* In GNU format the prefix area is not a prefix. */
    buf_reset(&a);
    h.gnu_magic = true;
    tb_header(&a, &h);
    tb_data(&a, "abc", 3);
    tb_end(&a);
    assert_int_equal(run(a.data, a.len, 0, true, &c), 0);
    assert_string_equal(c.e[0].path, "16385_fsm");
    collect_free(&c);
    buf_free(&a);
}

static void test_pax_overrides(void **state)
{
    (void)state;
    struct buf a = BUF_INIT, rec = BUF_INIT, name = BUF_INIT, link = BUF_INIT;
    for (int i = 0; i < 30; i++)
        buf_append_str(&name, "directory/");
    buf_append_str(&name, "f\xff\xfe-not-utf8"); /* 300+ bytes, not UTF-8 */
    for (int i = 0; i < 20; i++)
        buf_append_str(&link, "target/");
    buf_append_str(&link, "end");

    /* a global header is skipped and changes nothing */
    tb_pax_record(&rec, "path", "global-ignored");
    tb_pax(&a, 'g', &rec);
    buf_reset(&rec);

    tb_pax_record(&rec, "path", (char *)name.data);
    tb_pax_record(&rec, "mtime", "1234567890.123456789");
    tb_pax_record(&rec, "size", "700");
    tb_pax_record(&rec, "comment", "ignored = value");
    tb_pax(&a, 'x', &rec);
    struct tb_header h = {
        .name = "truncated-name", .type = '0', .mode = 0640, .size = 0, .mtime = 1};
    tb_header(&a, &h); /* header size 0, pax says 700 */
    char data[700];
    memset(data, 'q', sizeof(data));
    tb_data(&a, data, sizeof(data));

    buf_reset(&rec);
    tb_pax_record(&rec, "linkpath", (char *)link.data);
    tb_pax(&a, 'x', &rec);
    tb_symlink(&a, "lnk", "short");
    tb_file(&a, "after", "x", 1); /* overrides apply to one entry only */
    tb_end(&a);

    for (size_t s = 0; s < NSTEPS; s++) {
        struct collect c;
        assert_int_equal(run(a.data, a.len, STEPS[s], true, &c), 0);
        assert_int_equal(c.n, 3);
        assert_string_equal(c.e[0].path, (char *)name.data);
        assert_int_equal(c.e[0].size, 700);
        assert_int_equal(c.e[0].got, 700);
        assert_int_equal(c.e[0].mtime, 1234567890);
        assert_int_equal(c.e[0].mode, 0640);
        assert_string_equal(c.e[1].path, "lnk");
        assert_string_equal(c.e[1].link, (char *)link.data);
        assert_string_equal(c.e[2].path, "after");
        assert_int_equal(c.e[2].mtime, 1700000000);
        collect_free(&c);
    }
    buf_free(&a);
    buf_free(&rec);
    buf_free(&name);
    buf_free(&link);
}

static void test_pax_malformed(void **state)
{
    (void)state;
    struct buf a = BUF_INIT, rec = BUF_INIT;
    buf_append_str(&rec, "99 path=x\n"); /* length larger than the payload */
    tb_pax(&a, 'x', &rec);
    tb_file(&a, "f", "", 0);
    tb_end(&a);
    struct collect c;
    assert_int_equal(run(a.data, a.len, 0, true, &c), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "malformed pax record in extended header at offset 0");
    assert_int_equal(c.n, 0);
    collect_free(&c);
    buf_free(&a);
    buf_free(&rec);
}

static void test_gnu_long_name_and_link(void **state)
{
    (void)state;
    struct buf a = BUF_INIT, name = BUF_INIT, link = BUF_INIT;
    for (int i = 0; i < 40; i++)
        buf_append_str(&name, "long/");
    buf_append_str(&name, "file");
    for (int i = 0; i < 30; i++)
        buf_append_str(&link, "../x/");
    buf_append_str(&link, "tgt");
    tb_gnu_long(&a, 'L', (char *)name.data);
    struct tb_header h = {
        .name = "long/long/", .type = '0', .mode = 0600, .size = 4, .mtime = 9, .gnu_magic = true};
    tb_header(&a, &h);
    tb_data(&a, "data", 4);
    tb_gnu_long(&a, 'K', (char *)link.data);
    tb_gnu_long(&a, 'L', "sym/");
    struct tb_header s = {
        .name = "sym", .type = '2', .mode = 0777, .link = "cut", .gnu_magic = true};
    tb_header(&a, &s);
    tb_end(&a);
    for (size_t st = 0; st < NSTEPS; st++) {
        struct collect c;
        assert_int_equal(run(a.data, a.len, STEPS[st], true, &c), 0);
        assert_int_equal(c.n, 2);
        assert_string_equal(c.e[0].path, (char *)name.data);
        assert_int_equal(c.e[0].got, 4);
        assert_string_equal(c.e[1].path, "sym");
        assert_int_equal(c.e[1].type, TAR_TYPE_SYMLINK);
        assert_string_equal(c.e[1].link, (char *)link.data);
        collect_free(&c);
    }
    buf_free(&a);
    buf_free(&name);
    buf_free(&link);
}

static void test_base256_size(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    char data[1000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)i;
    struct tb_header h = {.name = "big",
                          .type = '0',
                          .mode = 0600,
                          .size = sizeof(data),
                          .mtime = -86400,
                          .base256 = true};
    tb_header(&a, &h);
    tb_data(&a, data, sizeof(data));
    tb_end(&a);
    struct collect c;
    assert_int_equal(run(a.data, a.len, 513, true, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.e[0].size, 1000);
    assert_int_equal(c.e[0].mtime, -86400);
    char want[65];
    sha_hex(data, sizeof(data), want);
    assert_string_equal(c.e[0].sha, want);
    collect_free(&c);
    buf_free(&a);
}

static void test_bad_checksum(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    tb_file(&a, "one", "1", 1);
    size_t at = a.len;
    tb_file(&a, "two", "2", 1);
    tb_end(&a);
    a.data[at + 5] ^= 0x20; /* corrupt the second header's name */
    for (size_t s = 0; s < NSTEPS; s++) {
        struct collect c;
        assert_int_equal(run(a.data, a.len, STEPS[s], true, &c), -ERR_INTEGRITY);
        assert_non_null(strstr(err_message(), "tar header checksum mismatch at offset 1024"));
        assert_int_equal(c.n, 1); /* the first entry was delivered, nothing after */
        collect_free(&c);
    }
    buf_free(&a);
}

static void expect_error(const struct buf *a, bool marker, const char *msg)
{
    for (size_t s = 0; s < NSTEPS; s++) {
        struct collect c;
        int rc = run(a->data, a->len, STEPS[s], marker, &c);
        if (rc != -ERR_INTEGRITY || strcmp(err_message(), msg) != 0)
            fail_msg("step %zu: rc %d, message \"%s\", want \"%s\"", STEPS[s], rc, err_message(),
                     msg);
        collect_free(&c);
    }
}

static void test_truncated(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    char data[2000];
    memset(data, 'z', sizeof(data));
    tb_file(&a, "base/1", data, sizeof(data)); /* 512 + 2048 bytes */
    struct buf full = BUF_INIT;
    buf_append(&full, a.data, a.len);
    tb_end(&full);

    struct buf t = BUF_INIT;
    buf_append(&t, a.data, 1000);
    expect_error(&t, false,
                 "tar archive truncated at offset 1000 inside \"base/1\" (488 of 2000 bytes read)");
    buf_reset(&t);
    buf_append(&t, a.data, 512 + 2000 + 10);
    expect_error(&t, false, "tar archive truncated at offset 2522 inside block padding");
    buf_reset(&t);
    buf_append(&t, a.data, 300);
    expect_error(&t, false, "tar archive truncated at offset 300 inside a header");
    /* clean stop between entries: fine only when the marker is not required */
    expect_error(&a, true, "tar archive truncated at offset 2560: no end-of-archive marker");
    struct collect c;
    assert_int_equal(run(a.data, a.len, 1, false, &c), 0);
    assert_int_equal(c.n, 1);
    collect_free(&c);
    /* an empty archive without a marker */
    assert_int_equal(run(a.data, 0, 0, true, &c), -ERR_INTEGRITY);
    collect_free(&c);

    /* one zero block only */
    buf_reset(&t);
    buf_append(&t, full.data, full.len - 512);
    expect_error(&t, true, "tar archive truncated at offset 3072: no end-of-archive marker");
    /* a zero block followed by a header */
    buf_reset(&t);
    buf_append(&t, full.data, full.len - 512);
    tb_file(&t, "x", "", 0);
    tb_end(&t);
    expect_error(&t, true, "lone zero block at offset 2560 inside the tar archive");
    buf_free(&t);
    buf_free(&a);
    buf_free(&full);
}

static void test_after_end(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    tb_file(&a, "f", "abc", 3);
    tb_end(&a);
    static const uint8_t zero[10240 - 2048];
    buf_append(&a, zero, sizeof(zero)); /* GNU tar record padding */
    struct collect c;
    assert_int_equal(run(a.data, a.len, 100, true, &c), 0);
    assert_int_equal(c.n, 1);
    collect_free(&c);
    buf_append(&a, "junk", 4);
    expect_error(&a, true, "non-zero data after the end of the tar archive at offset 10240");
    buf_free(&a);
}

static void test_unsafe_and_unsupported(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    tb_file(&a, "base/../../etc/passwd", "x", 1);
    tb_end(&a);
    expect_error(&a, true, "tar entry at offset 0 has an unsafe path \"base/../../etc/passwd\"");
    buf_reset(&a);
    tb_file(&a, "/etc/passwd", "x", 1);
    tb_end(&a);
    expect_error(&a, true, "tar entry at offset 0 has an unsafe path \"/etc/passwd\"");
    buf_reset(&a);
    tb_file(&a, "a/..b/c..", "x", 1); /* dots inside names are fine */
    tb_end(&a);
    struct collect c;
    assert_int_equal(run(a.data, a.len, 0, true, &c), 0);
    assert_string_equal(c.e[0].path, "a/..b/c..");
    collect_free(&c);
    buf_reset(&a);
    struct tb_header h = {.name = "dev/null", .type = '3', .mode = 0666};
    tb_header(&a, &h);
    tb_end(&a);
    expect_error(&a, true, "unsupported tar entry type '3' (0x33) at offset 0");
    buf_reset(&a);
    tb_file(&a, "f", "x", 1);
    memcpy(a.data + 257, "xxxxx", 5); /* not ustar; fix the checksum so it is the magic */
    memset(a.data + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; i++)
        sum += a.data[i];
    snprintf((char *)a.data + 148, 8, "%06o", sum);
    tb_end(&a);
    expect_error(&a, true, "tar header at offset 0 is not in ustar format");
    buf_free(&a);
}

static void test_callback_error_stops(void **state)
{
    (void)state;
    struct buf a = BUF_INIT;
    char data[4096];
    memset(data, 1, sizeof(data));
    tb_file(&a, "f", data, sizeof(data));
    tb_file(&a, "g", data, 10);
    tb_end(&a);
    struct collect c;
    memset(&c, 0, sizeof(c));
    c.ctx = sha256_ctx_new();
    c.fail_data_after = 1000;
    struct tar_reader *r = tar_reader_new(&CB, &c);
    assert_int_equal(tar_reader_feed(r, a.data, a.len), -ERR_IO);
    assert_string_equal(err_message(), "disk on fire");
    assert_int_equal(c.n, 1);
    assert_int_equal(tar_reader_feed(r, a.data, 1), -ERR_RUNTIME);
    assert_int_equal(tar_reader_finish(r, true), -ERR_RUNTIME);
    tar_reader_free(r);
    collect_free(&c);
    buf_free(&a);
}

/* ---- archives made by GNU tar ---- */

static char tmpdir[200];

static void write_file(const char *path, size_t size, uint32_t seed)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t chunk[8192];
    uint32_t x = seed;
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof(chunk) ? size - done : sizeof(chunk);
        for (size_t i = 0; i < n; i++) {
            x = x * 1664525 + 1013904223;
            chunk[i] = (uint8_t)(x >> 24);
        }
        assert_int_equal(fwrite(chunk, 1, n, f), n);
        done += n;
    }
    assert_int_equal(fclose(f), 0);
}

static void file_sha(const char *path, char out[65])
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct sha256_ctx *c = sha256_ctx_new();
    uint8_t b[65536];
    size_t n;
    while ((n = fread(b, 1, sizeof(b), f)) > 0)
        sha256_ctx_update(c, b, n);
    fclose(f);
    uint8_t md[32];
    sha256_ctx_final(c, md);
    sha256_ctx_free(c);
    hex_encode(md, 32, out);
}

/* Build the tree; with longnames, paths beyond 100 and 255 characters. */
static void make_tree(const char *root, bool longnames)
{
    char p[4096];
    snprintf(p, sizeof(p), "mkdir -p '%s/base/1' '%s/global' '%s/empty_dir'", root, root, root);
    assert_int_equal(system(p), 0);
    static const size_t sizes[] = {0, 1, 511, 512, 513, 8192, 3 * 1024 * 1024 + 7};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(p, sizeof(p), "%s/base/1/f%zu", root, sizes[i]);
        write_file(p, sizes[i], (uint32_t)i + 1);
    }
    snprintf(p, sizeof(p), "%s/global/pg_control", root);
    write_file(p, 8192, 99);
    snprintf(p, sizeof(p), "%s/global/pg_control", root);
    assert_int_equal(chmod(p, 0640), 0);
    snprintf(p, sizeof(p), "%s/lnk", root);
    assert_int_equal(symlink("/some/tablespace/location", p), 0);
    /* exactly 100 characters of name, no NUL in the field */
    char name100[101];
    memset(name100, 'n', 100);
    name100[100] = '\0';
    memcpy(name100, "base/", 5);
    snprintf(p, sizeof(p), "%s/%s", root, name100);
    write_file(p, 100, 7);
    if (!longnames)
        return;
    char deep[1024];
    size_t len = (size_t)snprintf(deep, sizeof(deep), "%s/deep", root);
    for (int i = 0; i < 12; i++)
        len += (size_t)snprintf(deep + len, sizeof(deep) - len, "/dir%02d_xxxxxxxxxxxxxxxx", i);
    snprintf(p, sizeof(p), "mkdir -p '%s'", deep);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof(p), "%s/a_file_whose_name_is_rather_long_too_%0100d", deep, 0);
    write_file(p, 70000, 3); /* relative path well over 255 characters */
    snprintf(p, sizeof(p), "%s/long_link", deep);
    char target[400];
    memset(target, 't', 300);
    target[300] = '\0';
    assert_int_equal(symlink(target, p), 0);
}

struct verify_ctx {
    const char *root;
    const struct collect *c;
    size_t matched;
};

static const struct verify_ctx *vctx;
static size_t vmatched;

static int verify_one(const char *fpath, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D && strcmp(fpath, vctx->root) == 0)
        return 0;
    const char *rel = fpath + strlen(vctx->root) + 1;
    const struct seen *s = NULL;
    for (size_t i = 0; i < vctx->c->n; i++)
        if (strcmp(vctx->c->e[i].path, rel) == 0)
            s = &vctx->c->e[i];
    if (!s)
        fail_msg("\"%s\" not in the archive", rel);
    if (S_ISREG(st->st_mode)) {
        assert_int_equal(s->type, TAR_TYPE_FILE);
        assert_int_equal(s->size, (uint64_t)st->st_size);
        assert_int_equal(s->got, (uint64_t)st->st_size);
        assert_int_equal(s->mtime, (int64_t)st->st_mtime);
        char want[65];
        file_sha(fpath, want);
        assert_string_equal(s->sha, want);
    } else if (S_ISDIR(st->st_mode)) {
        assert_int_equal(s->type, TAR_TYPE_DIR);
    } else if (S_ISLNK(st->st_mode)) {
        assert_int_equal(s->type, TAR_TYPE_SYMLINK);
        char t[1024];
        ssize_t n = readlink(fpath, t, sizeof(t) - 1);
        assert_true(n > 0);
        t[n] = '\0';
        assert_string_equal(s->link, t);
    }
    assert_int_equal(s->mode, st->st_mode & 07777);
    vmatched++;
    return 0;
}

static void gnu_tar_round_trip(const char *format, bool longnames)
{
    char root[300], tarfile[300], cmd[1024];
    snprintf(root, sizeof(root), "%s/%s", tmpdir, format);
    snprintf(tarfile, sizeof(tarfile), "%s/%s.tar", tmpdir, format);
    make_tree(root, longnames);
    snprintf(cmd, sizeof(cmd), "tar --format=%s -cf '%s' -C '%s' .", format, tarfile, root);
    assert_int_equal(system(cmd), 0);

    FILE *f = fopen(tarfile, "rb");
    assert_non_null(f);
    struct stat st;
    assert_int_equal(fstat(fileno(f), &st), 0);
    uint8_t *data = xmalloc((size_t)st.st_size);
    assert_int_equal(fread(data, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);

    for (size_t s = 0; s < NSTEPS; s++) {
        struct collect c;
        int rc = run(data, (size_t)st.st_size, STEPS[s], true, &c);
        if (rc != 0)
            fail_msg("%s, step %zu: %s", format, STEPS[s], err_message());
        struct verify_ctx v = {root, &c, 0};
        vctx = &v;
        vmatched = 0;
        assert_int_equal(nftw(root, verify_one, 16, FTW_PHYS), 0);
        /* every archive entry is a file on disk, plus the archive's "." */
        assert_int_equal(vmatched + 1, c.n);
        assert_string_equal(c.e[0].path, ".");
        collect_free(&c);
    }
    free(data);
}

static void test_gnu_tar_pax(void **state)
{
    (void)state;
    gnu_tar_round_trip("pax", true);
}

static void test_gnu_tar_gnu(void **state)
{
    (void)state;
    gnu_tar_round_trip("gnu", true);
}

static void test_gnu_tar_ustar(void **state)
{
    (void)state;
    gnu_tar_round_trip("ustar", false);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "%s/pgark-test-tar-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ustar_basic_any_split),
        cmocka_unit_test(test_ustar_prefix),
        cmocka_unit_test(test_pax_overrides),
        cmocka_unit_test(test_pax_malformed),
        cmocka_unit_test(test_gnu_long_name_and_link),
        cmocka_unit_test(test_base256_size),
        cmocka_unit_test(test_bad_checksum),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_after_end),
        cmocka_unit_test(test_unsafe_and_unsupported),
        cmocka_unit_test(test_callback_error_stops),
        cmocka_unit_test(test_gnu_tar_pax),
        cmocka_unit_test(test_gnu_tar_gnu),
        cmocka_unit_test(test_gnu_tar_ustar),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
