/*
 * test_repo.c — the repository module against the posix driver: the object envelope
 * (round trips at frame and trailer boundaries, the bytes it stores, a corruption
 * table per compression/encryption mode), repo.json (creation, identity checks,
 * damage, passphrases) and the WAL archive (identical re-push, refused overwrite,
 * partials, histories, the summary), and chunks read straight into a caller's buffer
 * (repo_chunk_get_into: round trips through both of its paths, the bound, damage).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/repo/repo_int.h"

#include "pgark/codec.h"
#include "pgark/crypto.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/units.h"
#include "pgark/wal.h"
#include "scratch.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEG (1024 * 1024)
#define PASS "correct horse battery staple"
#define REPO "local"

/* --- fixture: a fresh posix storage per test --------------------------------------- */

struct fx {
    char base[256];
    char root[300];
    struct storage *s;
};

static struct fx fx;

static const struct repo_identity ident = {7312345678901234567ull, 15, SEG};

static int setup(void **state)
{
    (void)state;
    if (scratch_make(fx.base, sizeof(fx.base), "repo") < 0)
        return -1;
    snprintf(fx.root, sizeof(fx.root), "%s/root", fx.base);
    fx.s = storage_posix_new(REPO, fx.root);
    return fx.s ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    storage_free(fx.s);
    fx.s = NULL;
    scratch_remove(fx.base);
    err_clear();
    return 0;
}

/* --- helpers ------------------------------------------------------------------------ */

enum mode { M_PLAIN, M_ZSTD, M_ENC, M_ENC_ZSTD, M_COUNT };

static const struct {
    const char *cluster;
    int level;
    const char *pass;
} modes[M_COUNT] = {
    {"c-plain", 0, NULL},
    {"c-zstd", 3, NULL},
    {"c-enc", 0, PASS},
    {"c-enc-zstd", 3, PASS},
};

static struct repo *open_repo(const char *cluster, int level, const char *pass,
                              const struct repo_identity *expect, bool create)
{
    struct repo_options o = {
        .cluster = cluster,
        .codecs = {.compression = level ? codec_by_name(CODEC_COMPRESSION, "zstd") : NULL,
                   .level = level,
                   .passphrase = pass},
        .kdf_n = 1024};
    return repo_open(fx.s, &o, expect, create);
}

static struct repo *open_mode(enum mode m)
{
    struct repo *r = open_repo(modes[m].cluster, modes[m].level, modes[m].pass, &ident, true);
    if (!r) {
        char *t = err_format();
        fail_msg("repo_open(%s): %s", modes[m].cluster, t);
    }
    return r;
}

static void check_ok(int rc, const char *what)
{
    if (rc < 0) {
        char *t = err_format();
        fail_msg("%s: %s", what, t);
    }
}

/* Assert the object at path reads back (verified) as exactly len bytes of want. */
static void check_content(struct repo *r, const char *path, const void *want, size_t len,
                          const char *what)
{
    uint8_t *got;
    size_t got_len;
    check_ok(repo_get_all(r, path, &got, &got_len), what);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, want, len);
    free(got);
}

/* Assert rc is -kind and the full error text (message and context) is want; the
 * hint is hint (NULL: none). Clears the error. */
#define expect_err(rc, kind, want, hint) expect_err_at((rc), (kind), (want), (hint), __LINE__)
static void expect_err_at(int rc, enum err_kind kind, const char *want, const char *hint, int line)
{
    char *text = err_format();
    const char *h = err_hint_text();
    if (rc != -(int)kind || err_kind() != kind || strcmp(text, want) != 0 ||
        (hint ? !h || strcmp(h, hint) != 0 : h != NULL)) {
        print_error("line %d: want rc %d %s\n  \"%s\"\n  hint \"%s\"\ngot rc %d %s\n  \"%s\"\n  "
                    "hint \"%s\"\n",
                    line, -(int)kind, err_kind_name(kind), want, hint ? hint : "(none)", rc,
                    err_kind_name(err_kind()), text, h ? h : "(none)");
        free(text);
        fail();
    }
    free(text);
    err_clear();
}

/* Deterministic incompressible bytes. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* Deterministic compressible text with a recognisable marker. */
#define MARKER "pgark-plaintext-marker"
static void fill_text(uint8_t *p, size_t len)
{
    size_t off = 0;
    unsigned row = 0;
    char line[96];
    while (off < len) {
        int n = snprintf(line, sizeof(line), "row %08u " MARKER " the quick brown fox\n", row++);
        size_t take = (size_t)n < len - off ? (size_t)n : len - off;
        memcpy(p + off, line, take);
        off += take;
    }
}

static char *disk_path(const char *cluster, const char *rel)
{
    return xasprintf("%s/%s/%s", fx.root, cluster, rel);
}

static uint8_t *read_disk(const char *cluster, const char *rel, size_t *len)
{
    char *path = disk_path(cluster, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b = BUF_INIT;
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    free(path);
    *len = b.len;
    return (uint8_t *)buf_steal(&b);
}

static void write_disk(const char *cluster, const char *rel, const void *data, size_t len)
{
    char *path = disk_path(cluster, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(path);
}

static struct stat stat_disk(const char *cluster, const char *rel)
{
    struct stat st;
    char *path = disk_path(cluster, rel);
    assert_int_equal(stat(path, &st), 0);
    free(path);
    return st;
}

/* A sink that checks every byte against the expected plaintext and counts them. */
struct cmp_sink {
    const uint8_t *want;
    size_t want_len;
    size_t got;
    bool mismatch;
};

static int cmp_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct cmp_sink *c = ctx;
    if (c->got + len > c->want_len || memcmp(c->want + c->got, data, len) != 0)
        c->mismatch = true;
    c->got += len;
    return 0;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* --- envelope round trips ----------------------------------------------------------- */

static const size_t rt_sizes[] = {0, 1, 32, 33, 64 * 1024, 1024 * 1024 + 1, 17 * 1024 * 1024};
/* Odd piece sizes for streamed writing: around the trailer and frame lengths. */
static const size_t pieces[] = {1, 31, 33, 65535, 7, 65537, 4093, 131072 + 3};

static void round_trip(enum mode m)
{
    struct repo *r = open_mode(m);
    size_t max = rt_sizes[sizeof(rt_sizes) / sizeof(rt_sizes[0]) - 1];
    uint8_t *data = xmalloc(max);

    for (size_t i = 0; i < sizeof(rt_sizes) / sizeof(rt_sizes[0]); i++) {
        size_t len = rt_sizes[i];
        char p1[64], p2[64];
        snprintf(p1, sizeof(p1), "rt/put-%zu", len);
        snprintf(p2, sizeof(p2), "rt/stream-%zu", len);
        /* Half random, half text: both zstd paths (raw and compressed blocks). */
        fill_random(data, len / 2, len + m);
        fill_text(data + len / 2, len - len / 2);

        /* put / get_all */
        check_ok(repo_put(r, p1, data, len), p1);
        uint8_t *got = NULL;
        size_t got_len = 99;
        check_ok(repo_get_all(r, p1, &got, &got_len), p1);
        assert_int_equal(got_len, len);
        assert_true(len == 0 || memcmp(got, data, len) == 0);
        assert_int_equal(got[len], 0);
        free(got);

        /* streamed writer in odd pieces / repo_get to a sink */
        struct repo_writer *w = repo_writer_open(r, p2, len);
        assert_non_null(w);
        size_t off = 0;
        for (size_t k = 0; off < len; k++) {
            size_t n = pieces[k % (sizeof(pieces) / sizeof(pieces[0]))];
            if (n > len - off)
                n = len - off;
            check_ok(repo_writer_write(w, data + off, n), p2);
            off += n;
        }
        check_ok(repo_writer_commit(w), p2);
        struct cmp_sink c = {data, len, 0, false};
        check_ok(repo_get(r, p2, cmp_sink, &c), p2);
        assert_false(c.mismatch);
        assert_int_equal(c.got, len);

        /* digest from the trailer */
        uint8_t sha[SHA256_LEN], want[SHA256_LEN];
        uint64_t dlen = 0;
        sha256(data, len, want);
        check_ok(repo_object_digest(r, p2, sha, &dlen), p2);
        assert_memory_equal(sha, want, SHA256_LEN);
        assert_int_equal(dlen, len);
    }
    free(data);
    repo_close(r);
}

static void test_round_trip_plain(void **state)
{
    (void)state;
    round_trip(M_PLAIN);
}

static void test_round_trip_zstd(void **state)
{
    (void)state;
    round_trip(M_ZSTD);
}

static void test_round_trip_encrypted(void **state)
{
    (void)state;
    round_trip(M_ENC);
}

static void test_round_trip_encrypted_zstd(void **state)
{
    (void)state;
    round_trip(M_ENC_ZSTD);
}

/* A fresh handle (same passphrase) reads what another one wrote. */
static void test_fresh_handle_reads(void **state)
{
    (void)state;
    uint8_t data[70000];
    fill_random(data, sizeof(data), 5);
    struct repo *r = open_mode(M_ENC_ZSTD);
    check_ok(repo_put(r, "x/obj", data, sizeof(data)), "put");
    repo_close(r);

    r = open_repo(modes[M_ENC_ZSTD].cluster, 0, PASS, NULL, false);
    assert_non_null(r);
    assert_true(repo_encrypted(r));
    uint8_t *got;
    size_t len;
    check_ok(repo_get_all(r, "x/obj", &got, &len), "get");
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(got, data, sizeof(data));
    free(got);
    repo_close(r);
}

/* Processes that open a new encrypted repository at the same moment (a receiver and
 * the first backup) all end up with the one data key in repo.json: each writes an
 * object with the key it opened with, and a fresh handle reads every one. Before
 * repo.json was created without replacing, the last writer's file won and the others'
 * objects could not be decrypted. */
static void test_concurrent_create(void **state)
{
    (void)state;
    enum { N = 6 };
    int go[2];
    pid_t pids[N];
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0) /* all start when the pipe closes */
                _exit(3);
            struct repo *r = open_repo("c-race", 0, PASS, &ident, true);
            char path[32];
            snprintf(path, sizeof(path), "x/from-%d", i);
            int rc = r ? repo_put(r, path, path, strlen(path)) : -1;
            repo_close(r);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < N; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    struct repo *r = open_repo("c-race", 0, PASS, NULL, false);
    assert_non_null(r);
    for (int i = 0; i < N; i++) {
        char path[32];
        uint8_t *got;
        size_t len;
        snprintf(path, sizeof(path), "x/from-%d", i);
        check_ok(repo_get_all(r, path, &got, &len), path);
        assert_int_equal(len, strlen(path));
        assert_memory_equal(got, path, len);
        free(got);
    }
    repo_close(r);
}

/* The writer refuses more or fewer bytes than declared and leaves no object. */
static void test_writer_length(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    struct repo_writer *w = repo_writer_open(r, "w/long", 10);
    assert_non_null(w);
    check_ok(repo_writer_write(w, "0123456789", 10), "write");
    expect_err(repo_writer_write(w, "x", 1), ERR_RUNTIME,
               "object \"c-zstd/w/long\": 11 bytes written, more than the 10 declared", NULL);
    repo_writer_abort(w);

    w = repo_writer_open(r, "w/short", 10);
    assert_non_null(w);
    check_ok(repo_writer_write(w, "01234", 5), "write");
    expect_err(repo_writer_commit(w), ERR_RUNTIME,
               "object \"c-zstd/w/short\": 5 bytes written, 10 declared", NULL);

    assert_int_equal(storage_exists(fx.s, "c-zstd/w/long"), 0);
    assert_int_equal(storage_exists(fx.s, "c-zstd/w/short"), 0);
    /* nothing left behind in the folder, temp files included */
    struct stat st;
    char *dir = disk_path("c-zstd", "w");
    if (stat(dir, &st) == 0) {
        char *cmd = xasprintf("test -z \"$(ls -A '%s')\"", dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
    }
    free(dir);
    repo_close(r);
}

/* --- stored bytes -------------------------------------------------------------------- */

static void check_header(const uint8_t *h, int comp, int cipher, uint64_t len)
{
    assert_memory_equal(h, "PGAO", 4);
    assert_int_equal(h[4], 1);
    assert_int_equal(h[5], comp);
    assert_int_equal(h[6], cipher);
    assert_int_equal(h[7], 0);
    assert_int_equal(be64(h + 8), len);
    if (cipher)
        assert_false(all_zero(h + 16, 12));
    else
        assert_true(all_zero(h + 16, 12));
}

/* repo_put_payload: plaintext || its SHA-256 laid out by the caller, the same object as
 * repo_put makes (compressed in one piece: the zstd frame may differ, not the content);
 * a wrong digest gives an object every read rejects. */
static void test_put_payload(void **state)
{
    (void)state;
    size_t n = 300000;
    uint8_t *payload = xmalloc(n + SHA256_LEN);
    fill_text(payload, n / 2);
    fill_random(payload + n / 2, n - n / 2, 5);
    sha256(payload, n, payload + n);
    for (enum mode m = M_PLAIN; m <= M_ENC_ZSTD; m++) {
        struct repo *r = open_mode(m);
        uint64_t stored_put = 0, stored_payload = 0;
        check_ok(repo_put_sized(r, "d/put", payload, n, &stored_put), "put");
        check_ok(repo_put_payload(r, "d/payload", payload, n, &stored_payload), "put_payload");
        size_t la, lb;
        uint8_t *a = read_disk(modes[m].cluster, "d/put", &la);
        uint8_t *b = read_disk(modes[m].cluster, "d/payload", &lb);
        assert_int_equal(lb, stored_payload);
        check_header(b, modes[m].level ? 1 : 0, m >= M_ENC ? 1 : 0, n);
        if (m == M_PLAIN) /* byte for byte but the path tag */
            assert_memory_equal(a + 32, b + 32, la - 32);
        if (!modes[m].level)
            assert_int_equal(stored_payload, stored_put);
        else
            assert_true(lb < n / 2 + n / 4); /* compressed */
        free(a);
        free(b);
        uint8_t *got = NULL;
        size_t got_len = 0;
        check_ok(repo_get_all(r, "d/payload", &got, &got_len), "get");
        assert_int_equal(got_len, n);
        assert_memory_equal(got, payload, n);
        free(got);
        uint8_t sha[SHA256_LEN];
        uint64_t dlen = 0;
        check_ok(repo_object_digest(r, "d/payload", sha, &dlen), "digest");
        assert_memory_equal(sha, payload + n, SHA256_LEN);

        payload[n + 7] ^= 0x10; /* a wrong digest */
        check_ok(repo_put_payload(r, "d/wrong", payload, n, NULL), "put_payload wrong");
        payload[n + 7] ^= 0x10;
        got = NULL;
        assert_int_equal(repo_get_all(r, "d/wrong", &got, &got_len), -ERR_INTEGRITY);
        assert_non_null(strstr(err_message(), "SHA-256 of the content does not match"));
        assert_null(got);
        repo_close(r);
    }
    free(payload);
}

static void test_stored_plain(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_PLAIN);
    uint8_t data[1000], sha[SHA256_LEN];
    fill_random(data, sizeof(data), 9);
    sha256(data, sizeof(data), sha);
    check_ok(repo_put(r, "s/x", data, sizeof(data)), "put");
    size_t len;
    uint8_t *disk = read_disk("c-plain", "s/x", &len);
    assert_int_equal(len, 32 + sizeof(data) + 32);
    check_header(disk, 0, 0, sizeof(data));
    assert_memory_equal(disk + 32, data, sizeof(data));
    assert_memory_equal(disk + 32 + sizeof(data), sha, SHA256_LEN);
    free(disk);
    repo_close(r);
}

static void test_stored_zstd_smaller(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    size_t n = 1024 * 1024;
    uint8_t *data = xmalloc(n);
    fill_text(data, n);
    check_ok(repo_put(r, "s/text", data, n), "put");
    size_t len;
    uint8_t *disk = read_disk("c-zstd", "s/text", &len);
    check_header(disk, 1, 0, n);
    assert_true(len < n / 10);
    free(disk);
    free(data);
    repo_close(r);
}

static void test_stored_encrypted(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *data = xmalloc(n);
    fill_text(data, n);
    for (enum mode m = M_ENC; m <= M_ENC_ZSTD; m++) {
        struct repo *r = open_mode(m);
        check_ok(repo_put(r, "s/a", data, n), "put");
        check_ok(repo_put(r, "s/b", data, n), "put");
        size_t la, lb;
        uint8_t *a = read_disk(modes[m].cluster, "s/a", &la);
        uint8_t *b = read_disk(modes[m].cluster, "s/b", &lb);
        check_header(a, modes[m].level ? 1 : 0, 1, n);
        check_header(b, modes[m].level ? 1 : 0, 1, n);
        assert_null(memmem(a, la, MARKER, strlen(MARKER)));
        assert_null(memmem(a, la, "quick brown", 11));
        if (m == M_ENC)
            assert_int_equal(la, 32 + crypto_gcm_ciphertext_len(n + 32));
        else
            assert_true(la < n / 10);
        /* same plaintext twice: fresh nonce, different bytes */
        assert_int_equal(la, lb);
        assert_memory_not_equal(a + 16, b + 16, 12);
        assert_memory_not_equal(a + 32, b + 32, la - 32);
        free(a);
        free(b);
        repo_close(r);
    }
    free(data);
}

/* --- corruption table ---------------------------------------------------------------- */

enum damage {
    D_MAGIC,
    D_VERSION,
    D_COMP_UNKNOWN,
    D_CIPHER_UNKNOWN,
    D_COMP_SWITCH,
    D_CIPHER_SWITCH,
    D_LENGTH,
    D_PAY_START,
    D_PAY_MID,
    D_PAY_END,
    D_TRUNC_1,
    D_TRUNC_HEADER,
    D_TRUNC_0,
    D_APPEND,
    D_SWAP_WHOLE,
    D_SWAP_PAYLOAD,
    D_COUNT
};

static const char *const damage_name[D_COUNT] = {
    "wrong magic",
    "version 3",
    "unknown compression id",
    "unknown cipher id",
    "other compression id",
    "other cipher id",
    "length +1",
    "payload start",
    "payload middle",
    "payload end",
    "truncated by 1",
    "truncated to the header",
    "truncated to 0 bytes",
    "junk appended",
    "whole object swapped",
    "payload swapped",
};

#define OBJ_LEN 200000
#define DMG(what) "object \"{o}\" in repository \"local\" is damaged: " what
#define IN_OBJ "\n  in object \"{o}\" of repository \"local\""
#define IN_REPO "\n  in repository \"local\""
#define AUTH(n)                                                                                    \
    "authentication failed for encrypted frame " #n                                                \
    ": data is corrupt, truncated, reordered or under another key" IN_OBJ
#define GCM_SHORT                                                                                  \
    "authentication failed: encrypted data is truncated (frame 0 has 0 bytes, a frame has at "     \
    "least 16)" IN_OBJ
#define ZSTD_BAD(what) "compressed data is corrupt: " what IN_OBJ IN_REPO
/* Damage found while the object streams in carries the storage layer's IN_REPO line;
 * damage found at the end (trailer, last frame) does not. */
#define HEADER_ROWS                                                                                \
    [D_MAGIC] = DMG("not a pgark object (bad magic)") IN_REPO,                                     \
    [D_VERSION] = DMG("envelope version 3 is not supported") IN_REPO,                              \
    [D_COMP_UNKNOWN] = "unknown compression id 7" IN_OBJ IN_REPO,                                  \
    [D_CIPHER_UNKNOWN] = "unknown encryption id 9" IN_OBJ IN_REPO,                                 \
    [D_TRUNC_0] = DMG("shorter than its header"),                                                  \
    [D_SWAP_WHOLE] = DMG("written under another name") IN_REPO

/* The exact error text per mode and damage ("{o}": the object's path). */
static const char *const want_text[M_COUNT][D_COUNT] = {
    [M_PLAIN] =
        {
            HEADER_ROWS,
            [D_COMP_SWITCH] = ZSTD_BAD("Unknown frame descriptor"),
            [D_CIPHER_SWITCH] = DMG("encrypted, but the repository has no key") IN_REPO,
            [D_LENGTH] = DMG("truncated"),
            [D_PAY_START] = DMG("SHA-256 of the content does not match"),
            [D_PAY_MID] = DMG("SHA-256 of the content does not match"),
            [D_PAY_END] = DMG("SHA-256 of the content does not match"),
            [D_TRUNC_1] = DMG("truncated"),
            [D_TRUNC_HEADER] = DMG("truncated"),
            [D_APPEND] = DMG("longer than its header says") IN_REPO,
        },
    [M_ZSTD] =
        {
            HEADER_ROWS,
            [D_COMP_SWITCH] = DMG("truncated"),
            [D_CIPHER_SWITCH] = DMG("encrypted, but the repository has no key") IN_REPO,
            [D_LENGTH] = DMG("truncated"),
            [D_PAY_START] = ZSTD_BAD("Unknown frame descriptor"),
            [D_PAY_MID] = ZSTD_BAD("Data corruption detected"),
            [D_PAY_END] = ZSTD_BAD("Restored data doesn't match checksum"),
            [D_TRUNC_1] = "compressed data is truncated" IN_OBJ,
            [D_TRUNC_HEADER] = "compressed data is truncated" IN_OBJ,
            [D_APPEND] = ZSTD_BAD("unexpected data after the end of the frame"),
        },
    [M_ENC] =
        {
            HEADER_ROWS,
            [D_COMP_SWITCH] = AUTH(0) IN_REPO,
            [D_CIPHER_SWITCH] = DMG("not encrypted in an encrypted repository") IN_REPO,
            [D_LENGTH] = AUTH(0) IN_REPO,
            [D_PAY_START] = AUTH(0) IN_REPO,
            [D_PAY_MID] = AUTH(1) IN_REPO,
            [D_PAY_END] = AUTH(3),
            [D_TRUNC_1] = AUTH(3),
            [D_TRUNC_HEADER] = GCM_SHORT,
            [D_APPEND] = AUTH(3),
            [D_SWAP_PAYLOAD] = AUTH(0) IN_REPO,
        },
    [M_ENC_ZSTD] =
        {
            HEADER_ROWS,
            [D_COMP_SWITCH] = AUTH(0),
            [D_CIPHER_SWITCH] = DMG("not encrypted in an encrypted repository") IN_REPO,
            [D_LENGTH] = AUTH(0),
            [D_PAY_START] = AUTH(0),
            [D_PAY_MID] = AUTH(0),
            [D_PAY_END] = AUTH(0),
            [D_TRUNC_1] = AUTH(0),
            [D_TRUNC_HEADER] = GCM_SHORT,
            [D_APPEND] = AUTH(0),
            [D_SWAP_PAYLOAD] = AUTH(0),
        },
};

/* Apply damage d to the stored bytes orig of "t/a" (other: the stored bytes of "t/b",
 * same plaintext length, other content); returns the damaged copy. */
static uint8_t *damage(enum damage d, const uint8_t *orig, size_t len, const uint8_t *other,
                       size_t other_len, size_t *out_len)
{
    uint8_t *p = xmalloc(len + other_len + 64);
    memcpy(p, orig, len);
    *out_len = len;
    switch (d) {
    case D_MAGIC:
        p[0] = 'X';
        break;
    case D_VERSION: /* 2 is an object under a later data key (test_repo_keys.c) */
        p[4] = 3;
        break;
    case D_COMP_UNKNOWN:
        p[5] = 7;
        break;
    case D_CIPHER_UNKNOWN:
        p[6] = 9;
        break;
    case D_COMP_SWITCH:
        p[5] ^= 1;
        break;
    case D_CIPHER_SWITCH:
        p[6] ^= 1;
        break;
    case D_LENGTH:
        p[15] ^= 1;
        break;
    case D_PAY_START:
        p[32] ^= 0x40;
        break;
    case D_PAY_MID:
        p[32 + (len - 32) / 2] ^= 0x40;
        break;
    case D_PAY_END:
        p[len - 1] ^= 0x40;
        break;
    case D_TRUNC_1:
        *out_len = len - 1;
        break;
    case D_TRUNC_HEADER:
        *out_len = 32;
        break;
    case D_TRUNC_0:
        *out_len = 0;
        break;
    case D_APPEND:
        memcpy(p + len, "junk after the object", 21);
        *out_len = len + 21;
        break;
    case D_SWAP_WHOLE:
        memcpy(p, other, other_len);
        *out_len = other_len;
        break;
    case D_SWAP_PAYLOAD:
        memcpy(p + 32, other + 32, other_len - 32);
        *out_len = other_len;
        break;
    case D_COUNT:
        break;
    }
    return p;
}

/* Where the first damaged byte sits in the stored object (for the sink check). */
static size_t damage_offset(enum damage d, size_t len)
{
    switch (d) {
    case D_PAY_MID:
        return 32 + (len - 32) / 2;
    case D_PAY_END:
    case D_TRUNC_1:
        return len - 1;
    case D_APPEND:
        return len;
    default:
        return 0; /* header or first byte: nothing may reach the sink */
    }
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* want with every "{o}" replaced by "<cluster>/t/a"; caller frees. */
static char *expand(const char *want, const char *cluster)
{
    struct buf b = BUF_INIT;
    const char *p;
    while ((p = strstr(want, "{o}")) != NULL) {
        buf_append(&b, want, (size_t)(p - want));
        buf_appendf(&b, "%s/t/a", cluster);
        want = p + 3;
    }
    buf_append_str(&b, want);
    return buf_steal(&b);
}

static void check_damaged_read(struct repo *r, enum mode m, enum damage d, const uint8_t *plain,
                               size_t stored_len, int line_hint)
{
    assert_non_null(want_text[m][d]);
    char *want = expand(want_text[m][d], modes[m].cluster);
    char label[128];
    snprintf(label, sizeof(label), "%s / %s", modes[m].cluster, damage_name[d]);

    /* whole read */
    uint8_t *got = NULL;
    size_t got_len = 12345;
    int rc = repo_get_all(r, "t/a", &got, &got_len);
    char *text = err_format();
    if (getenv("PIN"))
        printf("# PIN %s: [%d] %s\n", label, err_kind(), text);
    if (rc != -ERR_INTEGRITY || err_kind() != ERR_INTEGRITY || strcmp(text, want) != 0) {
        print_error("%s (%d): got rc %d %s \"%s\"\n  want \"%s\"\n", label, line_hint, rc,
                    err_kind_name(err_kind()), text, want);
        free(text);
        fail();
    }
    free(text);
    free(want);
    assert_null(got);
    assert_int_equal(got_len, 12345);
    err_clear();

    /* digest */
    uint8_t sha[SHA256_LEN];
    uint64_t dlen;
    rc = repo_object_digest(r, "t/a", sha, &dlen);
    if (rc != -ERR_INTEGRITY)
        fail_msg("%s: digest rc %d", label, rc);
    err_clear();

    /* into a buffer (repo_object_read_into): refused, naming the object, and nothing
     * written past the buffer */
    size_t cap = OBJ_LEN + REPO_CHUNK_GET_SLACK, into_len = 777;
    uint8_t *dst = xmalloc(cap + 64);
    memset(dst + cap, 0xA5, 64);
    rc = repo_object_read_into(r, "t/a", dst, cap, &into_len, NULL);
    text = err_format();
    if (m == M_ZSTD && d == D_PAY_END) {
        /* Only the frame's own checksum (its last byte) is damaged: read into a buffer,
         * which checks the SHA-256 of the content instead, the content is intact. */
        if (rc != 0 || into_len != OBJ_LEN || memcmp(dst, plain, OBJ_LEN) != 0)
            fail_msg("%s: read_into rc %d \"%s\"", label, rc, text);
    } else if (rc != -ERR_INTEGRITY || !contains(text, "/t/a\"") || !contains(text, "\"local\"")) {
        fail_msg("%s: read_into rc %d \"%s\"", label, rc, text);
    } else {
        assert_int_equal(into_len, 777);
    }
    free(text);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(dst[cap + i], 0xA5);
    free(dst);
    err_clear();

    /* streamed: for encrypted objects only authenticated bytes reach the sink */
    struct cmp_sink c = {plain, OBJ_LEN, 0, false};
    rc = repo_get(r, "t/a", cmp_sink, &c);
    if (rc != -ERR_INTEGRITY)
        fail_msg("%s: repo_get rc %d", label, rc);
    err_clear();
    if (modes[m].pass) {
        if (c.mismatch)
            fail_msg("%s: a damaged byte reached the sink", label);
        if (m == M_ENC) {
            /* frame i holds plaintext [i*64K, (i+1)*64K); frames before the damaged
             * one may be delivered, nothing from it */
            size_t off = damage_offset(d, stored_len);
            size_t frame = off < 32 ? 0 : (off - 32) / (CRYPTO_FRAME_LEN + CRYPTO_TAG_LEN);
            if (d == D_APPEND || d == D_TRUNC_1)
                frame = (OBJ_LEN + 32) / CRYPTO_FRAME_LEN; /* the final frame */
            if (c.got > frame * CRYPTO_FRAME_LEN)
                fail_msg("%s: %zu bytes reached the sink, frame %zu is damaged", label, c.got,
                         frame);
        } else if (c.got > 0 && d != D_PAY_MID && d != D_PAY_END && d != D_TRUNC_1 &&
                   d != D_APPEND) {
            fail_msg("%s: %zu bytes reached the sink", label, c.got);
        }
    }
}

static void corruption_table(enum mode m)
{
    struct repo *r = open_mode(m);
    const char *cl = modes[m].cluster;
    uint8_t *plain = xmalloc(OBJ_LEN), *plain_b = xmalloc(OBJ_LEN);
    if (modes[m].level) {
        fill_text(plain, OBJ_LEN);
        fill_text(plain_b, OBJ_LEN);
        memcpy(plain_b, "another object", 14);
    } else {
        fill_random(plain, OBJ_LEN, 1);
        fill_random(plain_b, OBJ_LEN, 2);
    }
    check_ok(repo_put(r, "t/a", plain, OBJ_LEN), "put a");
    check_ok(repo_put(r, "t/b", plain_b, OBJ_LEN), "put b");
    size_t len, blen;
    uint8_t *orig = read_disk(cl, "t/a", &len);
    uint8_t *other = read_disk(cl, "t/b", &blen);

    for (enum damage d = 0; d < D_COUNT; d++) {
        /* Without encryption nothing authenticates the header against the payload: a
         * payload of the same length spliced under another object's header is read as
         * that object (the path tag only catches whole objects moved). */
        if (d == D_SWAP_PAYLOAD && !modes[m].pass)
            continue;
        size_t dlen;
        uint8_t *bad = damage(d, orig, len, other, blen, &dlen);
        write_disk(cl, "t/a", bad, dlen);
        check_damaged_read(r, m, d, plain, len, (int)d);
        free(bad);
    }
    /* every single header byte, each flipped on its own */
    for (size_t i = 0; i < 32; i++) {
        uint8_t *bad = xmalloc(len);
        memcpy(bad, orig, len);
        bad[i] ^= 0x01;
        write_disk(cl, "t/a", bad, len);
        uint8_t *got = NULL;
        size_t got_len;
        int rc = repo_get_all(r, "t/a", &got, &got_len);
        char *text = err_format();
        if (rc != -ERR_INTEGRITY || !contains(text, "/t/a\"") || !contains(text, "\"local\""))
            fail_msg("%s: header byte %zu flipped: rc %d \"%s\"", cl, i, rc, text);
        free(text);
        err_clear();
        free(bad);
    }
    /* restored, it reads again */
    write_disk(cl, "t/a", orig, len);
    check_content(r, "t/a", plain, OBJ_LEN, "restored");

    free(orig);
    free(other);
    free(plain);
    free(plain_b);
    repo_close(r);
}

static void test_corruption_plain(void **state)
{
    (void)state;
    corruption_table(M_PLAIN);
}

static void test_corruption_zstd(void **state)
{
    (void)state;
    corruption_table(M_ZSTD);
}

static void test_corruption_encrypted(void **state)
{
    (void)state;
    corruption_table(M_ENC);
}

static void test_corruption_encrypted_zstd(void **state)
{
    (void)state;
    corruption_table(M_ENC_ZSTD);
}

/* An object of an encrypted repository copied into an unencrypted one and back. */
static void test_foreign_objects(void **state)
{
    (void)state;
    uint8_t data[5000];
    fill_random(data, sizeof(data), 3);
    struct repo *plain = open_mode(M_PLAIN), *enc = open_mode(M_ENC);
    struct repo *enc2 = open_repo("c-enc2", 0, PASS, &ident, true); /* other data key */
    assert_non_null(enc2);
    check_ok(repo_put(plain, "f/p", data, sizeof(data)), "put");
    check_ok(repo_put(enc, "f/e", data, sizeof(data)), "put");
    size_t lp, le;
    uint8_t *p = read_disk("c-plain", "f/p", &lp), *e = read_disk("c-enc", "f/e", &le);
    write_disk("c-plain", "f/e", e, le);
    write_disk("c-enc", "f/p", p, lp);
    char *dir = disk_path("c-enc2", "f");
    assert_int_equal(mkdir(dir, 0700), 0);
    free(dir);
    write_disk("c-enc2", "f/e", e, le);

    uint8_t *got = NULL;
    size_t got_len;
    expect_err(repo_get_all(plain, "f/e", &got, &got_len), ERR_INTEGRITY,
               "object \"c-plain/f/e\" in repository \"local\" is damaged: encrypted, but the "
               "repository has no key" IN_REPO,
               NULL);
    expect_err(repo_get_all(enc, "f/p", &got, &got_len), ERR_INTEGRITY,
               "object \"c-enc/f/p\" in repository \"local\" is damaged: not encrypted in an "
               "encrypted repository" IN_REPO,
               NULL);
    /* the same name under another data key */
    expect_err(repo_get_all(enc2, "f/e", &got, &got_len), ERR_INTEGRITY,
               "authentication failed for encrypted frame 0: data is corrupt, truncated, "
               "reordered or under another key\n  in object \"c-enc2/f/e\" of repository "
               "\"local\"",
               NULL);
    /* another name under the same key: the tag, and the path in the associated data */
    write_disk("c-enc", "f/e2", e, le);
    expect_err(repo_get_all(enc, "f/e2", &got, &got_len), ERR_INTEGRITY,
               "object \"c-enc/f/e2\" in repository \"local\" is damaged: written under another "
               "name" IN_REPO,
               NULL);
    assert_null(got);

    /* two names with the same 4-byte tag: the path in the associated data still tells
     * them apart */
    uint8_t t1[SHA256_LEN], t2[SHA256_LEN];
    sha256("f/collide-154891", 16, t1);
    sha256("f/collide-161436", 16, t2);
    assert_memory_equal(t1, t2, 4);
    check_ok(repo_put(enc, "f/collide-154891", data, sizeof(data)), "put");
    size_t lc;
    uint8_t *c = read_disk("c-enc", "f/collide-154891", &lc);
    write_disk("c-enc", "f/collide-161436", c, lc);
    free(c);
    expect_err(repo_get_all(enc, "f/collide-161436", &got, &got_len), ERR_INTEGRITY,
               "authentication failed for encrypted frame 0: data is corrupt, truncated, "
               "reordered or under another key\n  in object \"c-enc/f/collide-161436\" of "
               "repository \"local\"",
               NULL);
    free(p);
    free(e);
    repo_close(plain);
    repo_close(enc);
    repo_close(enc2);
}

static void test_missing_object(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    uint8_t *got = NULL;
    size_t len;
    int rc = repo_get_all(r, "no/such", &got, &len);
    assert_int_equal(rc, -ERR_NOT_FOUND);
    char *text = err_format();
    assert_true(contains(text, "c-zstd/no/such"));
    free(text);
    err_clear();
    repo_close(r);
}

/* --- chunks into a caller's buffer ---------------------------------------------------- */

#define CANARY 0x5A
#define GUARD 64

/* Store data (len bytes) as a chunk under its own name (name out). */
static void put_chunk(struct repo *r, const uint8_t *data, size_t len,
                      char name[REPO_CHUNK_NAME_LEN + 1])
{
    uint8_t *payload = xmalloc(len + SHA256_LEN);
    memcpy(payload, data, len);
    sha256(data, len, payload + len);
    repo_chunk_name(r, data, len, name);
    check_ok(repo_chunk_put_payload(r, name, payload, len, NULL), name);
    free(payload);
}

/* A buffer of cap bytes with GUARD canary bytes after it. */
static uint8_t *guarded(size_t cap)
{
    uint8_t *p = xmalloc(cap + GUARD);
    memset(p, CANARY, cap + GUARD);
    return p;
}

static void check_guard(const uint8_t *p, size_t from, size_t to, const char *what)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != CANARY)
            fail_msg("%s: byte %zu past what may be written was changed", what, i);
}

static void chunk_into(enum mode m)
{
    static const size_t sizes[] = {0, 1, 31, 32, 33, 4096, 65536 + 7, 1024 * 1024};
    struct repo *r = open_mode(m);
    size_t max = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
    uint8_t *data = xmalloc(max);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        char name[REPO_CHUNK_NAME_LEN + 1];
        fill_random(data, len / 2, len + 11 * m);
        fill_text(data + len / 2, len - len / 2);
        put_chunk(r, data, len, name);
        uint8_t want_sha[SHA256_LEN];
        sha256(data, len, want_sha);
        /* Room for the trailer (decoded in place), none (through the scratch buffer),
         * and one byte short of it. */
        const size_t caps[] = {len + REPO_CHUNK_GET_SLACK, len, len + REPO_CHUNK_GET_SLACK - 1};
        for (size_t k = 0; k < 3; k++) {
            uint8_t *dst = guarded(caps[k]);
            uint8_t sha[SHA256_LEN];
            size_t got = 12345;
            check_ok(repo_chunk_get_into(r, name, dst, caps[k], &got, sha), name);
            assert_int_equal(got, len);
            assert_true(len == 0 || memcmp(dst, data, len) == 0);
            assert_memory_equal(sha, want_sha, SHA256_LEN);
            check_guard(dst, k == 0 ? caps[k] : len, caps[k] + GUARD, name);
            free(dst);
        }
        /* No digest wanted. */
        uint8_t *dst = guarded(len + REPO_CHUNK_GET_SLACK);
        size_t got = 0;
        check_ok(repo_chunk_get_into(r, name, dst, len + REPO_CHUNK_GET_SLACK, &got, NULL), name);
        assert_int_equal(got, len);
        free(dst);

        /* Longer than cap: refused before anything is decoded. */
        if (len > 0) {
            dst = guarded(len - 1);
            got = 12345;
            int rc = repo_chunk_get_into(r, name, dst, len - 1, &got, NULL);
            char *text = err_format();
            char want[200];
            snprintf(want, sizeof(want), "holds %zu bytes, more than the %zu expected", len,
                     len - 1);
            if (rc != -ERR_INTEGRITY || !contains(text, want) || !contains(text, name) ||
                !contains(text, "\"local\""))
                fail_msg("%s: cap %zu: rc %d \"%s\"", modes[m].cluster, len - 1, rc, text);
            free(text);
            err_clear();
            check_guard(dst, 0, len - 1 + GUARD, "refused");
            assert_int_equal(got, 12345);
            free(dst);
        }
    }
    free(data);
    repo_close(r);
}

static void test_chunk_into_plain(void **state)
{
    (void)state;
    chunk_into(M_PLAIN);
}

static void test_chunk_into_zstd(void **state)
{
    (void)state;
    chunk_into(M_ZSTD);
}

static void test_chunk_into_encrypted(void **state)
{
    (void)state;
    chunk_into(M_ENC);
}

static void test_chunk_into_encrypted_zstd(void **state)
{
    (void)state;
    chunk_into(M_ENC_ZSTD);
}

/* Read into a buffer, an object's payload is held in memory only up to what its
 * plaintext length allows: one with far more stored is refused as it arrives. */
static void test_into_payload_bound(void **state)
{
    (void)state;
    enum mode ms[] = {M_PLAIN, M_ZSTD};
    for (size_t i = 0; i < 2; i++) {
        struct repo *r = open_mode(ms[i]);
        check_ok(repo_put(r, "t/big", "0123456789", 10), "put");
        size_t len;
        uint8_t *stored = read_disk(modes[ms[i]].cluster, "t/big", &len);
        stored = xrealloc(stored, len + 1000000);
        memset(stored + len, 'x', 1000000);
        write_disk(modes[ms[i]].cluster, "t/big", stored, len + 1000000);
        free(stored);
        uint8_t dst[1024];
        size_t got = 777;
        assert_int_equal(repo_object_read_into(r, "t/big", dst, sizeof(dst), &got, NULL),
                         -ERR_INTEGRITY);
        char want[160];
        snprintf(want, sizeof(want),
                 "object \"%s/t/big\" in repository \"local\" is damaged: its payload is longer "
                 "than its plaintext length allows",
                 modes[ms[i]].cluster);
        assert_string_equal(err_message(), want);
        assert_int_equal(got, 777);
        err_clear();
        repo_close(r);
    }
}

/* Damaged chunks: each refused with ERR_INTEGRITY naming the chunk's object and the
 * repository, nothing written past cap; a chunk under another chunk's name too. */
static void test_chunk_into_damaged(void **state)
{
    (void)state;
    enum { FLIP_MID, FLIP_LAST, TRUNC_1, TRUNC_HEADER, APPEND, OTHER_CONTENT, NKINDS };
    for (enum mode m = 0; m < M_COUNT; m++) {
        struct repo *r = open_mode(m);
        size_t len = 300000;
        uint8_t *data = xmalloc(len), *other = xmalloc(len);
        fill_text(data, len);
        fill_random(other, len, 5 + m);
        char name[REPO_CHUNK_NAME_LEN + 1], oname[REPO_CHUNK_NAME_LEN + 1];
        put_chunk(r, data, len, name);
        put_chunk(r, other, len, oname);
        char rel[128];
        snprintf(rel, sizeof(rel), "chunks/%.2s/%s", name, name);
        size_t slen;
        uint8_t *orig = read_disk(modes[m].cluster, rel, &slen);
        for (int kind = 0; kind < NKINDS; kind++) {
            uint8_t *bad = xmalloc(slen + 16);
            memcpy(bad, orig, slen);
            size_t blen = slen;
            switch (kind) {
            case FLIP_MID:
                bad[32 + (slen - 32) / 2] ^= 0x10;
                break;
            case FLIP_LAST:
                bad[slen - 1] ^= 0x01;
                break;
            case TRUNC_1:
                blen = slen - 1;
                break;
            case TRUNC_HEADER:
                blen = 32;
                break;
            case APPEND:
                memcpy(bad + slen, "sixteen bytes!!!", 16);
                blen = slen + 16;
                break;
            case OTHER_CONTENT: {
                /* other's content stored (validly) under name: only the name tells */
                uint8_t *payload = xmalloc(len + SHA256_LEN);
                memcpy(payload, other, len);
                sha256(other, len, payload + len);
                check_ok(repo_chunk_put_payload(r, name, payload, len, NULL), "other content");
                free(payload);
                free(bad);
                bad = read_disk(modes[m].cluster, rel, &blen);
                break;
            }
            }
            write_disk(modes[m].cluster, rel, bad, blen);
            size_t cap = len + REPO_CHUNK_GET_SLACK, got = 12345;
            uint8_t *dst = guarded(cap);
            int rc = repo_chunk_get_into(r, name, dst, cap, &got, NULL);
            char *text = err_format();
            /* In an encrypted repository a chunk with other content under a name is only
             * caught by the file digest (names are HMACs the read does not recompute).
             * The last byte of a plain zstd chunk is the frame's own checksum, which this
             * read leaves to the content's SHA-256: the content is intact. */
            bool expect_ok =
                (kind == OTHER_CONTENT && modes[m].pass) || (kind == FLIP_LAST && m == M_ZSTD);
            bool named = kind == OTHER_CONTENT ? contains(text, "holds other content")
                                               : contains(text, rel) && contains(text, "\"local\"");
            if (expect_ok ? rc != 0 : rc != -ERR_INTEGRITY || !named)
                fail_msg("%s: damage %d: rc %d \"%s\"", modes[m].cluster, kind, rc, text);
            free(text);
            err_clear();
            check_guard(dst, cap, cap + GUARD, "damaged");
            if (!expect_ok)
                assert_int_equal(got, 12345);
            else if (kind == FLIP_LAST)
                assert_memory_equal(dst, data, len);
            free(dst);
            free(bad);
        }
        write_disk(modes[m].cluster, rel, orig, slen);
        free(orig);
        free(data);
        free(other);
        repo_close(r);
    }
}

/* A missing chunk is ERR_NOT_FOUND, and a name that is not one is ERR_USAGE. */
static void test_chunk_into_missing(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    uint8_t dst[64];
    size_t got = 0;
    char name[REPO_CHUNK_NAME_LEN + 1];
    repo_chunk_name(r, "absent", 6, name);
    assert_int_equal(repo_chunk_get_into(r, name, dst, sizeof(dst), &got, NULL), -ERR_NOT_FOUND);
    err_clear();
    assert_int_equal(repo_chunk_get_into(r, "nothex", dst, sizeof(dst), &got, NULL), -ERR_USAGE);
    err_clear();
    repo_close(r);
}

/* --- repo.json ------------------------------------------------------------------------ */

static json_t *load_repo_json(const char *cluster)
{
    size_t len;
    uint8_t *text = read_disk(cluster, "repo.json", &len);
    json_error_t e;
    json_t *o = json_loadb((const char *)text, len, 0, &e);
    assert_non_null(o);
    free(text);
    return o;
}

static void test_json_created(void **state)
{
    (void)state;
    struct repo *r = open_repo("c1", 3, NULL, &ident, true);
    assert_non_null(r);
    assert_string_equal(repo_name(r), "local");
    assert_false(repo_encrypted(r));
    assert_ptr_equal(repo_storage(r), fx.s);
    repo_close(r);

    json_t *o = load_repo_json("c1");
    assert_int_equal(json_integer_value(json_object_get(o, "format")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "cluster")), "c1");
    assert_string_equal(json_string_value(json_object_get(o, "system_identifier")),
                        "7312345678901234567");
    assert_int_equal(json_integer_value(json_object_get(o, "pg_major")), 15);
    assert_int_equal(json_integer_value(json_object_get(o, "wal_segment_size")), SEG);
    assert_true(json_is_null(json_object_get(o, "encryption")));
    json_decref(o);
    struct stat st = stat_disk("c1", "repo.json");
    assert_int_equal(st.st_mode & 0777, 0600);

    /* same identity again; expect NULL reads the identity back */
    r = open_repo("c1", 3, NULL, &ident, true);
    assert_non_null(r);
    repo_close(r);
    r = open_repo("c1", 0, NULL, NULL, false);
    assert_non_null(r);
    assert_int_equal(repo_identity(r)->system_identifier, ident.system_identifier);
    assert_int_equal(repo_identity(r)->pg_major, 15);
    assert_int_equal(repo_identity(r)->seg_size, SEG);
    repo_close(r);
    /* opening never rewrote it */
    struct stat st2 = stat_disk("c1", "repo.json");
    assert_int_equal(st.st_ino, st2.st_ino);
}

static void test_json_mismatch(void **state)
{
    (void)state;
    struct repo *r = open_repo("c1", 3, NULL, &ident, true);
    assert_non_null(r);
    repo_close(r);
    size_t len0;
    uint8_t *before = read_disk("c1", "repo.json", &len0);

    struct repo_identity other = ident;
    other.system_identifier = 42;
    assert_null(open_repo("c1", 3, NULL, &other, true));
    expect_err(-ERR_MISMATCH, ERR_MISMATCH,
               "repository \"local\" belongs to database system 7312345678901234567, but the "
               "server is system 42",
               "a repository holds one cluster; give this one another path, prefix or cluster "
               "name");

    other = ident;
    other.pg_major = 16;
    assert_null(open_repo("c1", 3, NULL, &other, false));
    expect_err(-ERR_MISMATCH, ERR_MISMATCH,
               "repository \"local\" holds PostgreSQL 15 with 1048576-byte WAL segments, but the "
               "server is PostgreSQL 16 with 1048576-byte segments",
               NULL);
    other = ident;
    other.seg_size = 16 * SEG;
    assert_null(open_repo("c1", 3, NULL, &other, true));
    expect_err(-ERR_MISMATCH, ERR_MISMATCH,
               "repository \"local\" holds PostgreSQL 15 with 1048576-byte WAL segments, but the "
               "server is PostgreSQL 15 with 16777216-byte segments",
               NULL);

    /* repo.json untouched by the refused opens */
    size_t len1;
    uint8_t *after = read_disk("c1", "repo.json", &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
}

static void test_json_missing(void **state)
{
    (void)state;
    assert_null(open_repo("c9", 3, NULL, &ident, false));
    expect_err(-ERR_NOT_FOUND, ERR_NOT_FOUND,
               "repository \"local\" holds no cluster \"c9\" (no \"c9/repo.json\")",
               "the first \"pgark receive\" or \"pgark backup\" of the cluster creates it");
    /* create without an identity to bind to cannot create */
    assert_null(open_repo("c9", 3, NULL, NULL, true));
    expect_err(-ERR_NOT_FOUND, ERR_NOT_FOUND,
               "repository \"local\" holds no cluster \"c9\" (no \"c9/repo.json\")",
               "the first \"pgark receive\" or \"pgark backup\" of the cluster creates it");
    assert_int_equal(storage_exists(fx.s, "c9/repo.json"), 0);
}

static void put_json(const char *cluster, const char *text)
{
    char *path = xasprintf("%s/repo.json", cluster);
    check_ok(storage_write_all(fx.s, path, text, strlen(text)), path);
    free(path);
}

#define GOOD_FIELDS                                                                                \
    "\"cluster\": \"d\", \"system_identifier\": \"7312345678901234567\", \"pg_major\": 15, "       \
    "\"wal_segment_size\": 1048576"

static void test_json_damaged(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum err_kind kind;
        const char *want;
    } cases[] = {
        {"{", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: string or '}' expected near end of "
         "file"},
        {"", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: '[' or '{' expected near end of "
         "file"},
        {"[1]", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: not an object"},
        {"{" GOOD_FIELDS ", \"encryption\": null}", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: no format version"},
        {"{\"format\": \"1\", " GOOD_FIELDS ", \"encryption\": null}", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: no format version"},
        {"{\"format\": 3, " GOOD_FIELDS ", \"encryption\": null}", ERR_MISMATCH,
         "repository \"local\" has format 3; this pgark reads formats 1 and 2"},
        {"{\"format\": 1, \"pg_major\": 15, \"wal_segment_size\": 1048576}", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: system_identifier, pg_major or "
         "wal_segment_size missing"},
        {"{\"format\": 1, \"system_identifier\": 7312345678901234567, \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: system_identifier, pg_major or "
         "wal_segment_size missing"},
        {"{\"format\": 1, \"system_identifier\": \"7312345678901234567\", \"pg_major\": 15}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: system_identifier, pg_major or "
         "wal_segment_size missing"},
        {"{\"format\": 1, \"system_identifier\": \"73x\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, \"system_identifier\": \"\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, \"system_identifier\": \"-1\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, \"system_identifier\": \" 1\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, \"system_identifier\": \"18446744073709551616\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1048576, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, " GOOD_FIELDS "}", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: \"encryption\" missing (an "
         "object, or null when not encrypted)"},
        {"{\"format\": 1, " GOOD_FIELDS ", \"encryption\": \"aes-256-gcm\"}", ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: \"encryption\" missing (an "
         "object, or null when not encrypted)"},
        {"{\"format\": 1, \"system_identifier\": \"7312345678901234567\", \"pg_major\": 15, "
         "\"wal_segment_size\": 1000000, \"encryption\": null}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: bad system_identifier or "
         "wal_segment_size"},
        {"{\"format\": 1, " GOOD_FIELDS ", \"encryption\": {\"cipher\": \"aes-256-gcm\"}}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: incomplete encryption "
         "parameters"},
        {"{\"format\": 1, " GOOD_FIELDS ", \"encryption\": {\"cipher\": \"aes-256-gcm\", "
         "\"kdf\": \"scrypt\", \"n\": 1024, \"r\": 4294967304, \"p\": 1, \"salt\": \"00\", "
         "\"wrapped_key\": \"00\"}}",
         ERR_INTEGRITY,
         "\"d/repo.json\" in repository \"local\" is not valid: encryption parameters out of "
         "range"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        put_json("d", cases[i].text);
        /* with a passphrase so that the encryption case reaches the parameters */
        const char *pass = strstr(cases[i].text, "\"encryption\": {") ? PASS : NULL;
        struct repo *r = open_repo("d", 3, pass, &ident, true);
        if (r)
            fail_msg("case %zu opened: %s", i, cases[i].text);
        char *text = err_format();
        if (err_kind() != cases[i].kind || strcmp(text, cases[i].want) != 0)
            fail_msg("case %zu: got %s \"%s\"\n  want %s \"%s\"", i, err_kind_name(err_kind()),
                     text, err_kind_name(cases[i].kind), cases[i].want);
        free(text);
        err_clear();
        /* a damaged repo.json is never replaced by a new one */
        size_t len;
        uint8_t *now = read_disk("d", "repo.json", &len);
        assert_int_equal(len, strlen(cases[i].text));
        assert_memory_equal(now, cases[i].text, len);
        free(now);
    }

    /* A repo.json longer than any pgark writes is not read into memory (even when it is
     * valid JSON: here padded with blanks). */
    struct buf big = BUF_INIT;
    buf_append_str(&big, "{\"format\": 1, " GOOD_FIELDS ", \"encryption\": null}");
    while (big.len <= 64 * 1024)
        buf_append_str(&big, "                ");
    put_json("d", (const char *)big.data);
    buf_free(&big);
    assert_null(open_repo("d", 3, NULL, &ident, true));
    expect_err(-ERR_INTEGRITY, ERR_INTEGRITY,
               "\"d/repo.json\" in repository \"local\" is not valid: longer than 64 KiB", NULL);
}

static void test_json_encryption(void **state)
{
    (void)state;
    struct repo *r = open_repo("e", 3, PASS, &ident, true);
    assert_non_null(r);
    assert_true(repo_encrypted(r));
    check_ok(repo_put(r, "o", "secret", 6), "put");
    repo_close(r);

    size_t len;
    uint8_t *text = read_disk("e", "repo.json", &len);
    assert_null(memmem(text, len, PASS, strlen(PASS)));
    free(text);
    json_t *o = load_repo_json("e");
    json_t *enc = json_object_get(o, "encryption");
    assert_true(json_is_object(enc));
    assert_string_equal(json_string_value(json_object_get(enc, "cipher")), "aes-256-gcm");
    assert_string_equal(json_string_value(json_object_get(enc, "kdf")), "scrypt");
    assert_int_equal(json_integer_value(json_object_get(enc, "n")), 1024);
    assert_int_equal(strlen(json_string_value(json_object_get(enc, "salt"))), 32);
    assert_int_equal(strlen(json_string_value(json_object_get(enc, "wrapped_key"))),
                     2 * CRYPTO_WRAPPED_LEN);
    json_decref(o);

    assert_null(open_repo("e", 3, NULL, &ident, true));
    expect_err(-ERR_CONFIG, ERR_CONFIG,
               "repository \"local\" is encrypted, but no passphrase is configured",
               "set encryption.passphrase_file to the passphrase the repository was created "
               "with");
    assert_null(open_repo("e", 3, "wrong passphrase", NULL, false));
    int rc = err_code();
    char *t = err_format();
    assert_int_equal(rc, -ERR_AUTH);
    assert_true(strncmp(t, "wrong passphrase", 16) == 0);
    assert_true(contains(t, "\n  while opening repository \"local\""));
    free(t);
    err_clear();

    /* Raised scrypt parameters are refused before any derivation: with p=32, every
     * command that opened the repository spent 26 s in scrypt before. */
    char *orig = (char *)read_disk("e", "repo.json", &len);
    orig = xrealloc(orig, len + 1);
    orig[len] = '\0';
    o = load_repo_json("e");
    enc = json_object_get(o, "encryption");
    json_object_set_new(enc, "n", json_integer(32768));
    json_object_set_new(enc, "p", json_integer(32));
    char *raised = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    put_json("e", raised);
    free(raised);
    int64_t t0 = time_mono_us();
    assert_null(open_repo("e", 0, PASS, NULL, false));
    assert_true(time_mono_us() - t0 < 1000000);
    expect_err(-ERR_INTEGRITY, ERR_INTEGRITY,
               "scrypt parameters N=32768 r=8 p=32 cost more than pgark allows (N*r*p at most "
               "1048576, at most 256 MiB of memory)\n"
               "  in the encryption parameters of \"e/repo.json\"\n"
               "  while opening repository \"local\"",
               NULL);
    put_json("e", orig);
    free(orig);

    r = open_repo("e", 0, PASS, NULL, false);
    assert_non_null(r);
    uint8_t *got;
    check_ok(repo_get_all(r, "o", &got, &len), "get");
    assert_int_equal(len, 6);
    assert_memory_equal(got, "secret", 6);
    free(got);
    repo_close(r);

    /* unencrypted repository, passphrase given */
    r = open_repo("u", 3, NULL, &ident, true);
    assert_non_null(r);
    repo_close(r);
    assert_null(open_repo("u", 3, PASS, &ident, true));
    expect_err(-ERR_CONFIG, ERR_CONFIG,
               "repository \"local\" is not encrypted, but encryption.passphrase is set",
               "a repository is encrypted or not from its creation; remove the passphrase or use a "
               "new repository");
}

/* A deferred opening (wal-fetch's): the key is derived when an object is first read, so
 * an object that is not there costs no derivation and a wrong passphrase is told by the
 * first read, to every reader alike. */
static struct repo *open_deferred(const char *cluster, const char *pass)
{
    struct repo_options o = {.cluster = cluster, .codecs = {.passphrase = pass}, .defer_key = true};
    return repo_open(fx.s, &o, NULL, false);
}

struct deferred_reader {
    struct repo *r;
    int rc;
    size_t len;
    char got[8];
};

static void *deferred_read(void *arg)
{
    struct deferred_reader *d = arg;
    uint8_t *got = NULL;
    d->rc = repo_get_all(d->r, "o", &got, &d->len);
    if (d->rc == 0 && d->len <= sizeof(d->got))
        memcpy(d->got, got, d->len);
    free(got);
    err_clear();
    return NULL;
}

static void test_deferred_key(void **state)
{
    (void)state;
    struct repo *r = open_repo("d", 0, PASS, &ident, true);
    assert_non_null(r);
    check_ok(repo_put(r, "o", "secret", 6), "put");
    const uint8_t *eager_key = repo_chunk_key(r);
    uint8_t name_key[32];
    memcpy(name_key, eager_key, sizeof(name_key));
    repo_close(r);

    /* A wrong passphrase: the opening succeeds, "not found" needs no key, the first read
     * says the passphrase is wrong, and so does every later one. */
    r = open_deferred("d", "wrong passphrase");
    assert_non_null(r);
    assert_true(repo_encrypted(r));
    uint8_t *got = NULL;
    size_t len;
    assert_int_equal(repo_get_all(r, "no/such", &got, &len), -ERR_NOT_FOUND);
    err_clear();
    for (int i = 0; i < 2; i++) {
        assert_int_equal(repo_get_all(r, "o", &got, &len), -ERR_AUTH);
        char *t = err_format();
        assert_true(strncmp(t, "wrong passphrase", 16) == 0);
        assert_true(contains(t, "while opening repository \"local\""));
        assert_string_equal(err_hint_text(),
                            "use the passphrase the repository was created or last rekeyed with");
        free(t);
        err_clear();
    }
    assert_int_equal(repo_unlock(r), -ERR_AUTH);
    err_clear();
    repo_close(r);

    /* Parameters that cannot be derived at all: an eager opening fails on them; a
     * deferred one answers "not found" without trying, and fails on the first read. */
    size_t jlen;
    char *orig = (char *)read_disk("d", "repo.json", &jlen);
    orig = xrealloc(orig, jlen + 1);
    orig[jlen] = '\0';
    json_t *o = load_repo_json("d");
    json_object_set_new(json_object_get(o, "encryption"), "kdf", json_string("bogus"));
    char *bogus = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    put_json("d", bogus);
    free(bogus);
    assert_null(open_repo("d", 0, PASS, NULL, false));
    assert_int_equal(err_kind(), ERR_INTEGRITY);
    err_clear();
    r = open_deferred("d", PASS);
    assert_non_null(r);
    assert_int_equal(repo_get_all(r, "no/such", &got, &len), -ERR_NOT_FOUND);
    err_clear();
    assert_int_equal(repo_get_all(r, "o", &got, &len), -ERR_INTEGRITY);
    char *t = err_format();
    assert_true(contains(t, "unknown key derivation function \"bogus\""));
    free(t);
    err_clear();
    repo_close(r);
    put_json("d", orig);
    free(orig);

    /* The right passphrase: eight threads read at once, the key is derived for all. */
    r = open_deferred("d", PASS);
    assert_non_null(r);
    struct deferred_reader readers[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        readers[i] = (struct deferred_reader){.r = r};
        assert_int_equal(pthread_create(&th[i], NULL, deferred_read, &readers[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(readers[i].rc, 0);
        assert_int_equal(readers[i].len, 6);
        assert_memory_equal(readers[i].got, "secret", 6);
    }
    /* Unlocked, it names chunks with the same key as an eager opening. */
    assert_memory_equal(repo_chunk_key(r), name_key, sizeof(name_key));
    repo_close(r);
}

/* --- WAL archive ---------------------------------------------------------------------- */

static int make_fd(const void *data, size_t len)
{
    char *path = xasprintf("%s/walfile-XXXXXX", fx.base);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    free(path);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    return fd;
}

static char *seg_name(timeline_t tli, uint64_t segno)
{
    static char names[4][WAL_NAME_BUFLEN];
    static int next;
    char *b = names[next++ % 4];
    return wal_segment_name(tli, segno, SEG, b);
}

static void test_wal_path(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(repo_wal_path(1, "000000010000000000000003", false, buf, sizeof(buf)),
                        "wal/00000001/000000010000000000000003");
    assert_string_equal(repo_wal_path(0x1A, "0000001A00000002000000FF", true, buf, sizeof(buf)),
                        "wal/0000001A/0000001A00000002000000FF.partial");
}

static void wal_push_identical_refused(enum mode m)
{
    struct repo *r = open_mode(m);
    const char *cl = modes[m].cluster;
    uint8_t *seg = xmalloc(SEG);
    fill_random(seg, SEG / 2, 11);
    fill_text(seg + SEG / 2, SEG / 2);
    const char *name = seg_name(1, 5);
    char path[96];
    repo_wal_path(1, name, false, path, sizeof(path));

    int fd = make_fd(seg, SEG);
    check_ok(repo_wal_push_fd(r, name, fd, SEG), "push");
    size_t len;
    uint8_t *stored = read_disk(cl, path, &len);
    struct stat st0 = stat_disk(cl, path);
    check_content(r, path, seg, SEG, "get");

    /* again, identical, file offset elsewhere: no-op */
    assert_int_equal(lseek(fd, 12345, SEEK_SET), 12345);
    check_ok(repo_wal_push_fd(r, name, fd, SEG), "push again");
    struct stat st1 = stat_disk(cl, path);
    assert_int_equal(st0.st_ino, st1.st_ino);
    close(fd);

    /* different content: refused, the stored object is unchanged */
    seg[SEG - 100] ^= 1;
    fd = make_fd(seg, SEG);
    char want[256];
    snprintf(want, sizeof(want),
             "segment %s is already in repository \"local\" with different content", name);
    expect_err(repo_wal_push_fd(r, name, fd, SEG), ERR_EXISTS, want,
               "two servers may be archiving into one repository; nothing was overwritten");
    close(fd);
    size_t len2;
    uint8_t *stored2 = read_disk(cl, path, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(stored, stored2, len);
    struct stat st2 = stat_disk(cl, path);
    assert_int_equal(st0.st_ino, st2.st_ino);
    free(stored);
    free(stored2);
    free(seg);
    repo_close(r);
}

static void test_wal_push_plain(void **state)
{
    (void)state;
    wal_push_identical_refused(M_ZSTD);
}

static void test_wal_push_encrypted(void **state)
{
    (void)state;
    wal_push_identical_refused(M_ENC_ZSTD);
}

static void test_wal_push_bad_input(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    uint8_t *seg = xmalloc(SEG + 1);
    fill_text(seg, SEG + 1);
    int fd = make_fd(seg, SEG + 1);
    const char *name = seg_name(1, 7);
    char want[256];

    snprintf(want, sizeof(want), "segment %s has 1048575 bytes, not 1048576", name);
    expect_err(repo_wal_push_fd(r, name, fd, SEG - 1), ERR_IO, want, NULL);
    snprintf(want, sizeof(want), "segment %s has 1048577 bytes, not 1048576", name);
    expect_err(repo_wal_push_fd(r, name, fd, SEG + 1), ERR_IO, want, NULL);
    snprintf(want, sizeof(want), "partial segment %s has 1048577 bytes, more than a segment", name);
    expect_err(repo_wal_push_partial_fd(r, name, fd, SEG + 1), ERR_IO, want, NULL);
    close(fd);

    /* the file is shorter than it should be: nothing is stored */
    fd = make_fd(seg, 1000);
    expect_err(repo_wal_push_fd(r, name, fd, SEG), ERR_IO,
               "WAL file to archive is shorter than 1048576 bytes", NULL);
    close(fd);
    char path[96];
    repo_wal_path(1, name, false, path, sizeof(path));
    char *full = xasprintf("c-zstd/%s", path);
    assert_int_equal(storage_exists(fx.s, full), 0);
    free(full);

    /* not a segment name */
    fd = make_fd(seg, SEG);
    assert_true(repo_wal_push_fd(r, "00000001000000000000000g", fd, SEG) < 0);
    err_clear();
    assert_true(repo_wal_push_fd(r, "000000000000000000000001", fd, SEG) < 0);
    err_clear();
    /* 1 MiB segments: 4096 per xlogid, so a low part of 0x1000 is invalid */
    assert_true(repo_wal_push_fd(r, "000000010000000000001000", fd, SEG) < 0);
    err_clear();
    close(fd);
    struct repo_wal_summary sum;
    check_ok(repo_wal_summary(r, &sum), "summary");
    assert_int_equal(sum.segments, 0);
    assert_int_equal(sum.ntimelines, 0);
    repo_wal_summary_free(&sum);
    free(seg);
    repo_close(r);
}

static void test_wal_partial_replaces(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ENC);
    uint8_t a[1000], b[5000];
    fill_random(a, sizeof(a), 1);
    fill_random(b, sizeof(b), 2);
    const char *name = seg_name(3, 9);
    char path[96];
    repo_wal_path(3, name, true, path, sizeof(path));

    int fd = make_fd(a, sizeof(a));
    check_ok(repo_wal_push_partial_fd(r, name, fd, sizeof(a)), "partial a");
    close(fd);
    uint8_t *got;
    size_t len;
    check_ok(repo_get_all(r, path, &got, &len), "get a");
    assert_int_equal(len, sizeof(a));
    assert_memory_equal(got, a, sizeof(a));
    free(got);

    /* a longer, different copy replaces it; only the first len bytes count */
    fd = make_fd(b, sizeof(b));
    check_ok(repo_wal_push_partial_fd(r, name, fd, 4000), "partial b");
    close(fd);
    check_ok(repo_get_all(r, path, &got, &len), "get b");
    assert_int_equal(len, 4000);
    assert_memory_equal(got, b, 4000);
    free(got);
    repo_close(r);
}

/* --- WAL high-water marks ------------------------------------------------------------ */

/* A mark only moves forward: a complete segment past the last one, a longer copy of the
 * newest partial, a later partial; a complete segment drops the partial it covers. */
static void test_wal_hwm_rules(void **state)
{
    (void)state;
    struct repo_wal_hwm m = {.tli = 1};
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 0);
    assert_true(repo_wal_hwm_add(&m, 5, false, 0));
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 6ull * SEG);
    assert_false(repo_wal_hwm_add(&m, 4, false, 0));
    assert_false(repo_wal_hwm_add(&m, 5, false, 0));
    assert_false(repo_wal_hwm_add(&m, 5, true, 100)); /* that segment is complete */
    assert_true(repo_wal_hwm_add(&m, 6, true, 100));
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 6ull * SEG + 100);
    assert_false(repo_wal_hwm_add(&m, 6, true, 100));
    assert_false(repo_wal_hwm_add(&m, 6, true, 50)); /* an older copy never takes it back */
    assert_false(repo_wal_hwm_add(&m, 6, true, 0));
    assert_true(repo_wal_hwm_add(&m, 6, true, 200));
    assert_true(repo_wal_hwm_add(&m, 8, true, 10));
    assert_true(repo_wal_hwm_add(&m, 7, false, 0)); /* the partial past it stays */
    assert_true(m.has_partial);
    assert_int_equal(m.partial_segno, 8);
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 8ull * SEG + 10);
    assert_true(repo_wal_hwm_add(&m, 8, false, 0));
    assert_false(m.has_partial);
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 9ull * SEG);

    struct repo_wal_hwm o = {.tli = 1, .seq = 9, .has_segment = true, .segno = 3};
    assert_false(repo_wal_hwm_merge(&m, &o)); /* behind: only the seq is taken */
    assert_int_equal(m.seq, 9);
    o.segno = 9;
    o.has_partial = true;
    o.partial_segno = 10;
    o.partial_bytes = 7;
    assert_true(repo_wal_hwm_merge(&m, &o));
    assert_int_equal(repo_wal_hwm_end(&m, SEG), 10ull * SEG + 7);
}

/* Stored and read back in every mode; in an encrypted repository the object shows nothing
 * of it, and in every mode a mark copied over another timeline's is refused. */
static void test_wal_hwm_round_trip(void **state)
{
    (void)state;
    for (int mode = 0; mode < M_COUNT; mode++) {
        struct repo *r = open_mode((enum mode)mode);
        struct repo_wal_hwm m = {.tli = 1,
                                 .seq = 42,
                                 .time_us = 1790000000123456,
                                 .has_segment = true,
                                 .segno = 0x1FF,
                                 .has_partial = true,
                                 .partial_segno = 0x200,
                                 .partial_bytes = 8192};
        snprintf(m.writer, sizeof(m.writer), "receive");
        struct repo_wal_hwm got;
        assert_int_equal(repo_wal_hwm_get(r, 1, &got), -ERR_NOT_FOUND);
        err_clear();
        check_ok(repo_wal_hwm_put(r, &m), "put");
        check_ok(repo_wal_hwm_get(r, 1, &got), "get");
        assert_memory_equal(&got, &m, sizeof(m));

        uint8_t *text;
        size_t len;
        check_ok(repo_get_all(r, "wal/00000001.hwm", &text, &len), "plaintext");
        assert_non_null(strstr((char *)text, "\"segment\":\"0000000100000000000001FF\""));
        assert_non_null(strstr((char *)text, "\"end_lsn\":\"0/20002000\""));
        free(text);
        size_t raw_len;
        uint8_t *raw = read_disk(modes[mode].cluster, "wal/00000001.hwm", &raw_len);
        bool shows = memmem(raw, raw_len, "end_lsn", 7) != NULL;
        assert_true(modes[mode].pass ? !shows : mode == M_PLAIN ? shows : true);

        /* Timeline 2's mark replaced by timeline 1's: refused, not read as timeline 2's. */
        write_disk(modes[mode].cluster, "wal/00000002.hwm", raw, raw_len);
        free(raw);
        assert_true(repo_wal_hwm_get(r, 2, &got) < 0);
        assert_int_equal(err_kind(), ERR_INTEGRITY);
        err_clear();
        repo_close(r);
    }
}

/* Whatever else a mark says must agree with itself; one that does not is ERR_INTEGRITY
 * naming the field. */
static void test_wal_hwm_parse(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } bad[] = {
        {"{\"format\":2,\"timeline\":1,\"seq\":1,\"time_us\":1,\"writer\":\"x\",\"segment\":null,"
         "\"partial\":null,\"end_lsn\":\"0/0\"}",
         "format"},
        {"{\"format\":1,\"timeline\":1,\"seq\":0,\"time_us\":1,\"writer\":\"x\",\"segment\":null,"
         "\"partial\":null,\"end_lsn\":\"0/0\"}",
         "seq"},
        {"{\"format\":1,\"timeline\":1,\"seq\":1,\"time_us\":1,\"writer\":\"x\",\"segment\":"
         "\"000000020000000000000003\",\"partial\":null,\"end_lsn\":\"0/400000\"}",
         "segment"},
        {"{\"format\":1,\"timeline\":1,\"seq\":1,\"time_us\":1,\"writer\":\"x\",\"segment\":"
         "\"000000010000000000000003\",\"partial\":{\"segment\":\"000000010000000000000003\","
         "\"bytes\":5},\"end_lsn\":\"0/400000\"}",
         "partial"},
        {"{\"format\":1,\"timeline\":1,\"seq\":1,\"time_us\":1,\"writer\":\"x\",\"segment\":"
         "\"000000010000000000000003\",\"partial\":null,\"end_lsn\":\"0/500000\"}",
         "end_lsn"},
    };
    struct repo_wal_hwm m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "WAL high-water mark M is invalid: field \"%s\"",
                 bad[i].field);
        expect_err(repo_wal_hwm_parse(bad[i].json, strlen(bad[i].json), SEG, "M", &m),
                   ERR_INTEGRITY, want, NULL);
    }
    const char *good = "{\"format\":1,\"timeline\":1,\"seq\":1,\"time_us\":1,\"writer\":\"x\","
                       "\"segment\":\"000000010000000000000003\",\"partial\":null,"
                       "\"end_lsn\":\"0/400000\"}";
    check_ok(repo_wal_hwm_parse(good, strlen(good), SEG, "M", &m), "good");
    assert_int_equal(m.segno, 3);
    expect_err(repo_wal_hwm_parse("[", 1, SEG, "M", &m), ERR_INTEGRITY,
               "WAL high-water mark M is not JSON: ']' expected near end of file", NULL);
}

/* wal-push's way: each push moves the mark and its seq; one below it writes nothing; a
 * damaged mark is replaced by a new one (it protected nothing). */
static void test_wal_hwm_advance(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ENC_ZSTD);
    struct repo_wal_hwm got;
    check_ok(repo_wal_hwm_advance(r, "wal-push", 1, 3, false, 0), "first");
    check_ok(repo_wal_hwm_get(r, 1, &got), "get 1");
    assert_int_equal(got.seq, 1);
    assert_int_equal(got.segno, 3);
    assert_string_equal(got.writer, "wal-push");
    check_ok(repo_wal_hwm_advance(r, "wal-push", 1, 2, false, 0), "behind");
    check_ok(repo_wal_hwm_get(r, 1, &got), "get 2");
    assert_int_equal(got.seq, 1);
    check_ok(repo_wal_hwm_advance(r, "wal-push", 1, 4, true, SEG), "partial");
    check_ok(repo_wal_hwm_get(r, 1, &got), "get 3");
    assert_int_equal(got.seq, 2);
    assert_int_equal(repo_wal_hwm_end(&got, SEG), 5ull * SEG);

    write_disk(modes[M_ENC_ZSTD].cluster, "wal/00000001.hwm", "junk", 4);
    check_ok(repo_wal_hwm_advance(r, "wal-push", 1, 4, false, 0), "over damage");
    check_ok(repo_wal_hwm_get(r, 1, &got), "get 4");
    assert_int_equal(got.seq, 1);
    assert_int_equal(got.segno, 4);
    repo_close(r);
}

static struct repo_wal_prepared *prepare(struct repo_wal_preparer *p, const char *name,
                                         bool partial, const uint8_t *data, size_t len)
{
    struct repo_wal_prepared *s = NULL;
    int fd = make_fd(data, len);
    check_ok(repo_wal_prepare(p, name, partial, fd, len, &s), "prepare");
    close(fd); /* the preparation keeps its own descriptor */
    return s;
}

/* One preparation serves repositories of every mode: those compressing as it does get
 * its payload in their own envelope (with their own key and nonce), the others the
 * ordinary push from the segment; a re-push is a no-op and different content under the
 * name is refused, as with repo_wal_push_fd. */
static void test_wal_push_prepared(void **state)
{
    (void)state;
    struct repo *r[M_COUNT];
    for (int m = 0; m < M_COUNT; m++)
        r[m] = open_mode((enum mode)m);
    struct repo_codecs codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                                 .level = 3};
    struct repo_wal_preparer *p = repo_wal_preparer_new(&ident, &codecs, fx.base);
    assert_non_null(p);
    uint8_t *seg = xmalloc(SEG);
    char path[96], want[256];

    /* The payload path never reads the segment again: with it emptied after the
     * preparation, only the repositories that compress otherwise fail. */
    fill_random(seg, SEG / 2, 40);
    fill_text(seg + SEG / 2, SEG / 2);
    const char *name = seg_name(1, 40);
    int fd = make_fd(seg, SEG);
    struct repo_wal_prepared *s = NULL;
    check_ok(repo_wal_prepare(p, name, false, fd, SEG, &s), "prepare");
    assert_int_equal(ftruncate(fd, 0), 0);
    close(fd);
    for (int m = 0; m < M_COUNT; m++) {
        if (m == M_ZSTD || m == M_ENC_ZSTD)
            check_ok(repo_wal_push_prepared(r[m], s), "push prepared");
        else
            expect_err(repo_wal_push_prepared(r[m], s), ERR_IO,
                       "WAL file to archive is shorter than 1048576 bytes", NULL);
    }
    repo_wal_prepared_free(s);

    /* The preparer serves one segment after another. */
    for (uint64_t segno = 40; segno < 43; segno++) {
        fill_random(seg, SEG / 2, segno);
        fill_text(seg + SEG / 2, SEG / 2);
        name = seg_name(1, segno);
        repo_wal_path(1, name, false, path, sizeof(path));
        s = prepare(p, name, false, seg, SEG);
        for (int m = 0; m < M_COUNT; m++) {
            check_ok(repo_wal_push_prepared(r[m], s), "push");
            struct stat st0 = stat_disk(modes[m].cluster, path);
            check_ok(repo_wal_push_prepared(r[m], s), "push again"); /* a no-op */
            struct stat st1 = stat_disk(modes[m].cluster, path);
            assert_int_equal(st0.st_ino, st1.st_ino);
            check_content(r[m], path, seg, SEG, "get");
        }
        repo_wal_prepared_free(s);
    }

    /* Different content under an archived name. */
    seg[SEG - 100] ^= 1;
    s = prepare(p, name, false, seg, SEG);
    snprintf(want, sizeof(want),
             "segment %s is already in repository \"local\" with different content", name);
    for (int m = 0; m < M_COUNT; m++)
        expect_err(repo_wal_push_prepared(r[m], s), ERR_EXISTS, want,
                   "two servers may be archiving into one repository; nothing was overwritten");
    repo_wal_prepared_free(s);

    /* Partial copies replace each other. */
    name = seg_name(1, 50);
    repo_wal_path(1, name, true, path, sizeof(path));
    for (size_t len = 1000; len <= 5000; len += 4000) {
        s = prepare(p, name, true, seg, len);
        check_ok(repo_wal_push_prepared(r[M_ENC_ZSTD], s), "push partial");
        repo_wal_prepared_free(s);
        check_content(r[M_ENC_ZSTD], path, seg, len, "get partial");
    }

    /* Bad sizes are refused before any work. */
    fd = make_fd(seg, SEG);
    snprintf(want, sizeof(want),
             "segment %s has 1048575 bytes, not 1048576\n  while preparing %s for archiving", name,
             name);
    expect_err(repo_wal_prepare(p, name, false, fd, SEG - 1, &s), ERR_IO, want, NULL);
    assert_null(s);
    close(fd);

    free(seg);
    repo_wal_preparer_free(p);
    for (int m = 0; m < M_COUNT; m++)
        repo_close(r[m]);
}

#define HIST2 "1\t0/3000000\tno recovery target specified\n"

static void test_wal_history(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    check_ok(repo_wal_push_history(r, 2, HIST2, strlen(HIST2)), "history");
    uint8_t *got;
    size_t len;
    check_ok(repo_get_all(r, "wal/00000002.history", &got, &len), "get");
    assert_int_equal(len, strlen(HIST2));
    assert_memory_equal(got, HIST2, len);
    free(got);
    struct stat st0 = stat_disk("c-zstd", "wal/00000002.history");

    check_ok(repo_wal_push_history(r, 2, HIST2, strlen(HIST2)), "identical");
    struct stat st1 = stat_disk("c-zstd", "wal/00000002.history");
    assert_int_equal(st0.st_ino, st1.st_ino);

    const char *other = "1\t0/4000000\tno recovery target specified\n";
    expect_err(repo_wal_push_history(r, 2, other, strlen(other)), ERR_EXISTS,
               "history file 00000002.history is already in repository \"local\" with different "
               "content",
               "two servers may be archiving into one repository; nothing was overwritten");
    check_ok(repo_get_all(r, "wal/00000002.history", &got, &len), "get");
    assert_int_equal(len, strlen(HIST2));
    assert_memory_equal(got, HIST2, len);
    free(got);

    /* invalid content is refused and nothing is stored */
    const char *bad = "3\t0/3000000\tparent after child\n";
    expect_err(repo_wal_push_history(r, 3, bad, strlen(bad)), ERR_INTEGRITY,
               "invalid timeline history file \"00000003.history\" line 1: parent timeline 3 is "
               "not below timeline 3",
               NULL);
    assert_int_equal(repo_wal_push_history(r, 4, "", 0), -ERR_INTEGRITY);
    expect_err(-ERR_INTEGRITY, ERR_INTEGRITY,
               "invalid timeline history file \"00000004.history\": no entries", NULL);
    assert_int_equal(storage_exists(fx.s, "c-zstd/wal/00000003.history"), 0);
    assert_int_equal(storage_exists(fx.s, "c-zstd/wal/00000004.history"), 0);
    repo_close(r);
}

static void push_seg(struct repo *r, timeline_t tli, uint64_t segno, const uint8_t *seg)
{
    int fd = make_fd(seg, SEG);
    check_ok(repo_wal_push_fd(r, seg_name(tli, segno), fd, SEG), "push");
    close(fd);
}

static void push_partial(struct repo *r, timeline_t tli, uint64_t segno, const uint8_t *seg)
{
    int fd = make_fd(seg, 8192);
    check_ok(repo_wal_push_partial_fd(r, seg_name(tli, segno), fd, 8192), "partial");
    close(fd);
}

static int sum_sizes(const char *fpath, const struct stat *st, int flag, struct FTW *ftw);
static uint64_t wal_bytes;
static int sum_sizes(const char *fpath, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    const char *base = strrchr(fpath, '/') + 1;
    if (flag == FTW_F &&
        (wal_is_segment_name(base) || wal_is_partial_name(base) || wal_is_history_name(base)))
        wal_bytes += (uint64_t)st->st_size;
    return 0;
}

static void test_wal_summary(void **state)
{
    (void)state;
    struct repo *r = open_mode(M_ZSTD);
    struct repo_wal_summary sum;
    check_ok(repo_wal_summary(r, &sum), "empty summary");
    assert_int_equal(sum.ntimelines, 0);
    assert_null(sum.timelines);
    assert_int_equal(sum.segments, 0);
    assert_int_equal(sum.histories, 0);
    assert_int_equal(sum.stored_bytes, 0);
    assert_int_equal(sum.newest_mtime_us, 0);
    repo_wal_summary_free(&sum);

    uint8_t *seg = xmalloc(SEG);
    fill_text(seg, SEG);
    int64_t t0 = time_now_us();
    /* timeline 1: 1 2 3 _ 5 6, partial 7 (and an older partial 4) */
    for (uint64_t s = 1; s <= 6; s++)
        if (s != 4)
            push_seg(r, 1, s, seg);
    push_partial(r, 1, 4, seg);
    push_partial(r, 1, 7, seg);
    /* timeline 2: 6 _ _ 9 across an xlogid boundary later; partial 10 */
    push_seg(r, 2, 6, seg);
    push_seg(r, 2, 9, seg);
    push_partial(r, 2, 10, seg);
    /* timeline 0x10: segments in two xlogids (4096 segments each at 1 MiB) */
    push_seg(r, 0x10, 4095, seg);
    push_seg(r, 0x10, 4097, seg);
    /* timeline 3: only a partial */
    push_partial(r, 3, 11, seg);
    check_ok(repo_wal_push_history(r, 2, HIST2, strlen(HIST2)), "history");
    const char *h3 = "1\t0/3000000\tx\n2\t0/9800000\ty\n";
    check_ok(repo_wal_push_history(r, 3, h3, strlen(h3)), "history 3");
    /* things that are not WAL are ignored */
    check_ok(storage_write_all(fx.s, "c-zstd/wal/00000001/README", "x", 1), "junk");
    check_ok(storage_write_all(fx.s, "c-zstd/wal/notes.txt", "x", 1), "junk");
    check_ok(storage_write_all(fx.s, "c-zstd/chunks/aa/bb", "x", 1), "junk");
    int64_t t1 = time_now_us();

    check_ok(repo_wal_summary(r, &sum), "summary");
    assert_int_equal(sum.ntimelines, 4);
    assert_int_equal(sum.segments, 9);
    assert_int_equal(sum.histories, 2);

    struct repo_wal_timeline *t = &sum.timelines[0];
    assert_int_equal(t->tli, 1);
    assert_int_equal(t->segments, 5);
    assert_int_equal(t->first_segno, 1);
    assert_int_equal(t->last_segno, 6);
    assert_int_equal(t->gaps, 1);
    assert_true(t->has_partial);
    assert_int_equal(t->partial_segno, 7);

    t = &sum.timelines[1];
    assert_int_equal(t->tli, 2);
    assert_int_equal(t->segments, 2);
    assert_int_equal(t->first_segno, 6);
    assert_int_equal(t->last_segno, 9);
    assert_int_equal(t->gaps, 2);
    assert_true(t->has_partial);
    assert_int_equal(t->partial_segno, 10);

    t = &sum.timelines[2];
    assert_int_equal(t->tli, 3);
    assert_int_equal(t->segments, 0);
    assert_int_equal(t->gaps, 0);
    assert_true(t->has_partial);
    assert_int_equal(t->partial_segno, 11);

    t = &sum.timelines[3];
    assert_int_equal(t->tli, 0x10);
    assert_int_equal(t->segments, 2);
    assert_int_equal(t->first_segno, 4095);
    assert_int_equal(t->last_segno, 4097);
    assert_int_equal(t->gaps, 1);
    assert_false(t->has_partial);

    wal_bytes = 0;
    char *dir = disk_path("c-zstd", "wal");
    assert_int_equal(nftw(dir, sum_sizes, 16, FTW_PHYS), 0);
    free(dir);
    assert_int_equal(sum.stored_bytes, wal_bytes);
    assert_true(sum.newest_mtime_us >= t0 - 2000000 && sum.newest_mtime_us <= t1 + 2000000);
    repo_wal_summary_free(&sum);
    assert_null(sum.timelines);
    assert_int_equal(sum.ntimelines, 0);
    free(seg);
    repo_close(r);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_round_trip_plain),
        T(test_round_trip_zstd),
        T(test_round_trip_encrypted),
        T(test_round_trip_encrypted_zstd),
        T(test_put_payload),
        T(test_fresh_handle_reads),
        T(test_concurrent_create),
        T(test_writer_length),
        T(test_stored_plain),
        T(test_stored_zstd_smaller),
        T(test_stored_encrypted),
        T(test_corruption_plain),
        T(test_corruption_zstd),
        T(test_corruption_encrypted),
        T(test_corruption_encrypted_zstd),
        T(test_foreign_objects),
        T(test_missing_object),
        T(test_json_created),
        T(test_json_mismatch),
        T(test_json_missing),
        T(test_json_damaged),
        T(test_json_encryption),
        T(test_deferred_key),
        T(test_wal_path),
        T(test_wal_push_plain),
        T(test_wal_push_encrypted),
        T(test_wal_push_bad_input),
        T(test_wal_partial_replaces),
        T(test_wal_push_prepared),
        T(test_wal_hwm_rules),
        T(test_wal_hwm_round_trip),
        T(test_wal_hwm_parse),
        T(test_wal_hwm_advance),
        T(test_wal_history),
        T(test_wal_summary),
        T(test_chunk_into_plain),
        T(test_chunk_into_zstd),
        T(test_chunk_into_encrypted),
        T(test_chunk_into_encrypted_zstd),
        T(test_chunk_into_damaged),
        T(test_into_payload_bound),
        T(test_chunk_into_missing),
#undef T
    };
    return cmocka_run_group_tests_name("repo", tests, NULL, NULL);
}
