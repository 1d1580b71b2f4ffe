/*
 * test_repo_keycache.c — the key-encryption key cache (src/repo/keycache.c): the second
 * opening of an encrypted repository takes the key from "<spool>/<cluster>/kek.<repo>"
 * without scrypt and reads what the first wrote; a changed passphrase fails exactly as
 * without a cache; a rotated passphrase removes the entry and the next opening derives
 * again; a damaged, truncated or non-private entry is a warning and a derivation, never
 * a wrong key; with the cache off nothing is written. Against the posix driver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/crypto.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PASS "correct horse battery staple"
#define CLUSTER "c"
#define DERIVED "deriving the key from the passphrase (scrypt)"
#define CACHED "no scrypt"

static const struct repo_identity ident = {7312345678901234567ull, 15, 1024 * 1024};

struct fx {
    char base[256];
    char root[300];
    char spool[300];
    char cache[400];
    struct storage *s;
    char *log;
    size_t log_len;
    FILE *log_f;
};
static struct fx fx;

static int setup(void **state)
{
    (void)state;
    if (scratch_make(fx.base, sizeof(fx.base), "kc") < 0)
        return -1;
    snprintf(fx.root, sizeof(fx.root), "%s/root", fx.base);
    snprintf(fx.spool, sizeof(fx.spool), "%s/spool", fx.base);
    snprintf(fx.cache, sizeof(fx.cache), "%s/" CLUSTER "/kek.local", fx.spool);
    fx.s = storage_posix_new("local", fx.root);
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

/* The log lines of what runs between log_begin and log_end, in fx.log. */
static void log_begin(void)
{
    free(fx.log);
    fx.log = NULL;
    fx.log_f = open_memstream(&fx.log, &fx.log_len);
    log_set_stream(fx.log_f);
    log_set_level(LOG_DETAIL);
}

static void log_end(void)
{
    log_set_stream(NULL);
    log_set_level(LOG_WARN);
    fclose(fx.log_f);
}

static bool logged(const char *text)
{
    return fx.log && strstr(fx.log, text);
}

static struct repo_options options(const char *pass, bool cache)
{
    return (struct repo_options){.cluster = CLUSTER,
                                 .codecs = {.passphrase = pass},
                                 .kdf_n = 1024,
                                 .key_cache_spool = cache ? fx.spool : NULL};
}

/* repo_open with pass (creating the repository when it is not there), logs kept. */
static struct repo *open_logged(const char *pass, bool cache)
{
    struct repo_options o = options(pass, cache);
    log_begin();
    struct repo *r = repo_open(fx.s, &o, &ident, true);
    log_end();
    return r;
}

static struct repo *open_ok(const char *pass, bool cache)
{
    struct repo *r = open_logged(pass, cache);
    if (!r) {
        char *t = err_format();
        fail_msg("repo_open: %s", t);
    }
    return r;
}

static void check_content(struct repo *r, const char *path, const char *want)
{
    uint8_t *got;
    size_t len;
    if (repo_get_all(r, path, &got, &len) < 0) {
        char *t = err_format();
        fail_msg("get %s: %s", path, t);
    }
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
}

static uint8_t *read_cache(size_t *len)
{
    FILE *f = fopen(fx.cache, "rb");
    assert_non_null(f);
    uint8_t *data = xmalloc(1024);
    *len = fread(data, 1, 1024, f);
    fclose(f);
    return data;
}

static void write_cache(const uint8_t *data, size_t len)
{
    FILE *f = fopen(fx.cache, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    chmod(fx.cache, 0600);
}

/* The repository made with the cache on, one object written. */
static void make_repo(void)
{
    struct repo *r = open_ok(PASS, true);
    assert_true(logged("key kept in the key cache"));
    assert_int_equal(repo_put(r, "x/one", "secret bytes", 12), 0);
    repo_close(r);
}

/* Made: the entry is a 0600 file of the right length. Opened again: from the cache, no
 * scrypt, and what the first handle wrote reads. */
static void test_second_open_uses_cache(void **state)
{
    (void)state;
    make_repo();
    struct stat st;
    assert_int_equal(stat(fx.cache, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, CRYPTO_KEK_CACHE_LEN);
    struct repo *r = open_ok(PASS, true);
    assert_true(logged(CACHED));
    assert_false(logged(DERIVED));
    check_content(r, "x/one", "secret bytes");
    repo_close(r);
}

/* Another passphrase in the configuration: the exact error of a wrong passphrase, and
 * the entry still serves the right one afterwards. */
static void test_changed_passphrase_fails(void **state)
{
    (void)state;
    make_repo();
    size_t before_len;
    uint8_t *before = read_cache(&before_len);
    assert_null(open_logged("not the passphrase", true));
    assert_true(logged(DERIVED));
    assert_int_equal(err_kind(), ERR_AUTH);
    char *msg = err_format();
    assert_string_equal(msg, "wrong passphrase: it does not unlock the repository encryption key\n"
                             "  while opening repository \"local\"");
    assert_string_equal(err_hint_text(),
                        "use the passphrase the repository was created or last rekeyed with");
    free(msg);
    err_clear();
    size_t after_len;
    uint8_t *after = read_cache(&after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(before);
    free(after);
    struct repo *r = open_ok(PASS, true);
    assert_true(logged(CACHED));
    repo_close(r);
}

/* A passphrase rotation removes the entry; the new passphrase derives and is cached; an
 * old entry put back (another salt) is passed over and the old passphrase fails. */
static void test_rotation_rederives(void **state)
{
    (void)state;
    make_repo();
    size_t old_len;
    uint8_t *old = read_cache(&old_len);
    struct repo_options o = options(PASS, true);
    assert_int_equal(repo_rekey(fx.s, &o, "the new one"), 0);
    assert_int_not_equal(access(fx.cache, F_OK), 0);
    struct repo *r = open_ok("the new one", true);
    assert_true(logged(DERIVED));
    check_content(r, "x/one", "secret bytes");
    repo_close(r);
    r = open_ok("the new one", true);
    assert_true(logged(CACHED));
    repo_close(r);

    write_cache(old, old_len); /* the old passphrase's entry, for the old salt */
    assert_null(open_logged(PASS, true));
    assert_true(logged("is for another passphrase or salt"));
    assert_int_equal(err_kind(), ERR_AUTH);
    err_clear();
    r = open_ok("the new one", true);
    assert_true(logged(DERIVED));
    check_content(r, "x/one", "secret bytes");
    repo_close(r);
    free(old);
}

/* Damaged entries: warned, derived again, the object reads, and the entry is rewritten
 * whole. */
static void test_damaged_entry_rederives(void **state)
{
    (void)state;
    make_repo();
    size_t len;
    uint8_t *good = read_cache(&len);
    struct {
        size_t cut;  /* length written */
        size_t flip; /* byte flipped (len: none) */
        const char *why;
    } cases[] = {
        {100, CRYPTO_KEK_CACHE_LEN, "ignored: it is truncated; deriving the key again"},
        {0, CRYPTO_KEK_CACHE_LEN, "ignored: it is truncated; deriving the key again"},
        {CRYPTO_KEK_CACHE_LEN, 50, "ignored: its checksum does not match"},
        {CRYPTO_KEK_CACHE_LEN, 0, "ignored: its checksum does not match"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t bad[CRYPTO_KEK_CACHE_LEN];
        memcpy(bad, good, sizeof(bad));
        if (cases[i].flip < sizeof(bad))
            bad[cases[i].flip] ^= 0x01;
        write_cache(bad, cases[i].cut);
        struct repo *r = open_ok(PASS, true);
        if (!logged(cases[i].why) || !logged(DERIVED))
            fail_msg("case %zu: log was:\n%s", i, fx.log);
        check_content(r, "x/one", "secret bytes");
        repo_close(r);
        size_t now_len;
        uint8_t *now = read_cache(&now_len);
        assert_int_equal(now_len, CRYPTO_KEK_CACHE_LEN);
        assert_memory_equal(now, good + 0, 24 + 16 + 32); /* same salt, same key */
        free(now);
    }
    /* readable by others: not trusted, and replaced by a private one */
    write_cache(good, len);
    chmod(fx.cache, 0644);
    struct repo *r = open_ok(PASS, true);
    assert_true(logged("is not a private file of this user (mode 0644"));
    assert_true(logged(DERIVED));
    repo_close(r);
    struct stat st;
    assert_int_equal(stat(fx.cache, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    free(good);
}

/* Cache off: no file, every opening derives. */
static void test_cache_off(void **state)
{
    (void)state;
    struct repo *r = open_ok(PASS, false);
    repo_close(r);
    r = open_ok(PASS, false);
    assert_true(logged(DERIVED));
    repo_close(r);
    assert_int_not_equal(access(fx.cache, F_OK), 0);
}

/* An intact entry bound to this passphrase and salt whose key is another: refused by
 * the unwrap (AES-GCM), never used. */
static void test_entry_with_other_key(void **state)
{
    (void)state;
    make_repo();
    size_t len;
    uint8_t *e = read_cache(&len);
    uint8_t *kek = e + 24 + CRYPTO_SALT_LEN, *bind = kek + CRYPTO_KEY_LEN;
    kek[0] ^= 0x80;
    size_t mlen = sizeof("pgark kek cache v1") + strlen(PASS);
    uint8_t *msg = xmalloc(mlen);
    memcpy(msg, "pgark kek cache v1", sizeof("pgark kek cache v1"));
    memcpy(msg + sizeof("pgark kek cache v1"), PASS, strlen(PASS));
    hmac_sha256(kek, CRYPTO_KEY_LEN, msg, mlen, bind);
    sha256(e, CRYPTO_KEK_CACHE_LEN - 32, e + CRYPTO_KEK_CACHE_LEN - 32);
    free(msg);
    write_cache(e, len);
    struct repo *r = open_ok(PASS, true);
    assert_true(logged("ignored: its key does not unwrap the repository's data key"));
    assert_true(logged(DERIVED));
    check_content(r, "x/one", "secret bytes");
    repo_close(r);
    free(e);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_second_open_uses_cache),
        T(test_changed_passphrase_fails),
        T(test_rotation_rederives),
        T(test_damaged_entry_rederives),
        T(test_cache_off),
        T(test_entry_with_other_key),
#undef T
    };
    int rc = cmocka_run_group_tests_name("repo_keycache", tests, NULL, NULL);
    free(fx.log);
    return rc;
}
