/*
 * test_repo_keys.c — several data keys in one repository (rotate-key --data-key): the
 * envelope header with and without a key id, repo.json's list of keys (format 1 while
 * there is one key, byte for byte as before; format 2 after), passphrase rotation
 * re-wrapping every key, which key each object uses (repo_key_usage), and dropping a
 * key, never the first or the current one. Against the posix driver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/repo/repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "scratch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PASS "correct horse battery staple"
#define CLUSTER "c"

static const struct repo_identity ident = {7312345678901234567ull, 15, 1024 * 1024};

struct fx {
    char base[256];
    char root[300];
    struct storage *s;
};
static struct fx fx;

static int setup(void **state)
{
    (void)state;
    if (scratch_make(fx.base, sizeof(fx.base), "keys") < 0)
        return -1;
    snprintf(fx.root, sizeof(fx.root), "%s/root", fx.base);
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

static struct repo_options options(const char *pass)
{
    return (struct repo_options){.cluster = CLUSTER, .codecs = {.passphrase = pass}, .kdf_n = 1024};
}

static void check_ok(int rc, const char *what)
{
    if (rc < 0) {
        char *t = err_format();
        fail_msg("%s: %s", what, t);
    }
}

static struct repo *open_with(const char *pass)
{
    struct repo_options o = options(pass);
    struct repo *r = repo_open(fx.s, &o, &ident, true);
    if (!r) {
        char *t = err_format();
        fail_msg("repo_open: %s", t);
    }
    return r;
}

/* rc is -kind and the error text is exactly want; clears it. */
#define expect_err(rc, kind, want) expect_err_at((rc), (kind), (want), __LINE__)
static void expect_err_at(int rc, enum err_kind kind, const char *want, int line)
{
    char *text = err_format();
    if (rc != -(int)kind || err_kind() != kind || strcmp(text, want) != 0) {
        print_error("line %d: want rc %d \"%s\"\n got rc %d %s \"%s\"\n", line, -(int)kind, want,
                    rc, err_kind_name(err_kind()), text);
        free(text);
        fail();
    }
    free(text);
    err_clear();
}

static char *disk(const char *rel)
{
    return xasprintf("%s/" CLUSTER "/%s", fx.root, rel);
}

static uint8_t *slurp(const char *rel, size_t *len)
{
    char *path = disk(rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = xmalloc(*len + 1);
    assert_int_equal(fread(data, 1, *len, f), *len);
    fclose(f);
    free(path);
    return data;
}

static void spit(const char *rel, const void *data, size_t len)
{
    char *path = disk(rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(path);
}

static void check_content(struct repo *r, const char *path, const char *want)
{
    uint8_t *got;
    size_t len;
    check_ok(repo_get_all(r, path, &got, &len), path);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
}

static json_t *repo_json(void)
{
    size_t len;
    uint8_t *text = slurp("repo.json", &len);
    json_t *o = json_loadb((const char *)text, len, 0, NULL);
    assert_non_null(o);
    free(text);
    return o;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One key: repo.json and every object as before several keys existed (format 1, no
 * "data_keys", a 32-byte version 1 header). */
static void test_one_key_unchanged(void **state)
{
    (void)state;
    struct repo *r = open_with(PASS);
    check_ok(repo_put(r, "x/one", "first key", 9), "put");
    json_t *o = repo_json();
    assert_int_equal(json_integer_value(json_object_get(o, "format")), 1);
    assert_null(json_object_get(json_object_get(o, "encryption"), "data_keys"));
    json_decref(o);
    size_t len;
    uint8_t *h = slurp("x/one", &len);
    assert_memory_equal(h, "PGAO", 4);
    assert_int_equal(h[4], 1);
    /* header, then 9 bytes + 32 of trailer in one GCM frame with its tag */
    assert_int_equal(len, 32 + 9 + 32 + 16);
    free(h);
    size_t n;
    const struct repo_data_key *keys = repo_data_keys(r, &n);
    assert_int_equal(n, 1);
    assert_int_equal(keys[0].id, 0);
    assert_true(keys[0].current);
    repo_close(r);
}

/* A new key: objects written by a handle opened afterwards have a version 2 header
 * naming it, the old ones still read, a handle opened before writes on with the key it
 * holds, and chunk names do not change. */
static void test_new_key_envelope(void **state)
{
    (void)state;
    struct repo *before = open_with(PASS);
    char name0[REPO_CHUNK_NAME_LEN + 1], name1[REPO_CHUNK_NAME_LEN + 1];
    repo_chunk_name(before, "chunk", 5, name0);
    check_ok(repo_put(before, "x/old", "under key zero", 14), "put old");

    struct repo_options o = options(PASS);
    uint32_t id = 99;
    check_ok(repo_new_data_key(fx.s, &o, &id), "new data key");
    assert_int_equal(id, 1);
    json_t *j = repo_json();
    assert_int_equal(json_integer_value(json_object_get(j, "format")), 2);
    json_t *list = json_object_get(json_object_get(j, "encryption"), "data_keys");
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), 1);
    assert_non_null(json_object_get(json_array_get(list, 0), "created"));
    json_decref(j);

    /* the handle opened before: still key 0 */
    check_ok(repo_put(before, "x/held", "still key zero", 14), "put held");
    size_t len;
    uint8_t *h = slurp("x/held", &len);
    assert_int_equal(h[4], 1);
    free(h);

    struct repo *after = open_with(PASS);
    check_ok(repo_put(after, "x/new", "under key one", 13), "put new");
    h = slurp("x/new", &len);
    assert_memory_equal(h, "PGAO", 4);
    assert_int_equal(h[4], 2);
    assert_int_equal(be32(h + 32), 1);
    assert_int_equal(len, 36 + 13 + 32 + 16);
    free(h);
    check_content(after, "x/old", "under key zero");
    check_content(after, "x/held", "still key zero");
    check_content(after, "x/new", "under key one");
    /* the handle opened before meets an object under the newer key: it reads repo.json
     * again (no passphrase needed) and writes under the new key from then on */
    check_content(before, "x/new", "under key one");
    check_ok(repo_put(before, "x/later", "now key one", 11), "put later");
    h = slurp("x/later", &len);
    assert_int_equal(h[4], 2);
    assert_int_equal(be32(h + 32), 1);
    free(h);
    repo_chunk_name(before, "chunk", 5, name1);
    assert_string_equal(name0, name1);
    repo_chunk_name(after, "chunk", 5, name1);
    assert_string_equal(name0, name1);

    size_t n;
    const struct repo_data_key *keys = repo_data_keys(after, &n);
    assert_int_equal(n, 2);
    assert_false(keys[0].current);
    assert_true(keys[1].current);
    assert_true(keys[0].retired_us > 0);
    repo_close(before);
    repo_close(after);
}

/* A handle that writes looks at repo.json again once the recheck interval is over
 * (PGARK_TEST_KEY_RECHECK_S; 5 minutes by default) and moves to the new key without
 * meeting an object under it; looking again when nothing changed keeps no copy. */
static void test_writer_rechecks(void **state)
{
    (void)state;
    struct repo_options o = options(PASS);
    struct repo *r = open_with(PASS);
    check_ok(repo_put(r, "x/a", "zero", 4), "put");
    uint32_t id;
    check_ok(repo_new_data_key(fx.s, &o, &id), "new key");
    check_ok(repo_put(r, "x/b", "zero", 4), "put"); /* within the interval: key 0 */
    size_t len;
    uint8_t *h = slurp("x/b", &len);
    assert_int_equal(h[4], 1);
    free(h);
    setenv("PGARK_TEST_KEY_RECHECK_S", "0", 1);
    check_ok(repo_put(r, "x/c", "one", 3), "put");
    h = slurp("x/c", &len);
    assert_int_equal(h[4], 2);
    assert_int_equal(be32(h + 32), 1);
    free(h);
    for (int i = 0; i < 20; i++)
        check_ok(repo_put(r, "x/d", "one", 3), "put");
    assert_int_equal(r->nold_keyrings, 1);
    /* after a passphrase rotation the new keys cannot be read without it: the writer goes
     * on with the keys it holds */
    check_ok(repo_new_data_key(fx.s, &o, &id), "key 2");
    assert_int_equal(repo_rekey(fx.s, &o, "another passphrase"), 0);
    check_ok(repo_put(r, "x/e", "still one", 9), "put after rekey");
    h = slurp("x/e", &len);
    assert_int_equal(be32(h + 32), 1);
    free(h);
    /* and a read of an object under key 2 says what to do */
    struct repo_options now = options("another passphrase");
    struct repo *fresh = repo_open(fx.s, &now, &ident, false);
    assert_non_null(fresh);
    check_ok(repo_put(fresh, "x/f", "two", 3), "put under key 2");
    repo_close(fresh);
    uint8_t *got;
    size_t got_len;
    expect_err(repo_get_all(r, "x/f", &got, &got_len), ERR_AUTH,
               "the data keys of repository \"local\" were wrapped under another passphrase "
               "since it was opened\n  while reading \"c/x/f\" in repository \"local\"");
    unsetenv("PGARK_TEST_KEY_RECHECK_S");
    repo_close(r);
}

/* A header naming a key repo.json does not hold, or another key than the object was
 * written under, or cut inside its key id, is a clear error naming the object. */
static void test_key_id_errors(void **state)
{
    (void)state;
    struct repo_options o = options(PASS);
    struct repo *r0 = open_with(PASS);
    check_ok(repo_put(r0, "x/old", "under key zero", 14), "put old");
    repo_close(r0);
    uint32_t id;
    check_ok(repo_new_data_key(fx.s, &o, &id), "new data key");
    struct repo *r = open_with(PASS);
    check_ok(repo_put(r, "x/new", "under key one", 13), "put new");
    size_t len;
    uint8_t *orig = slurp("x/new", &len);
    uint8_t *bad = xmalloc(len);
    uint8_t *got;
    size_t got_len;

    memcpy(bad, orig, len);
    bad[35] = 7;
    spit("x/new", bad, len);
    expect_err(repo_get_all(r, "x/new", &got, &got_len), ERR_INTEGRITY,
               "object \"c/x/new\" in repository \"local\" is damaged: its header names data key "
               "7, which repo.json does not hold\n  in repository \"local\"");

    bad[35] = 0; /* a key it holds, not the one it was written under */
    spit("x/new", bad, len);
    int rc = repo_get_all(r, "x/new", &got, &got_len);
    assert_int_equal(rc, -ERR_INTEGRITY);
    char *text = err_format();
    assert_non_null(strstr(text, "in object \"c/x/new\" of repository \"local\""));
    free(text);
    err_clear();

    spit("x/new", orig, 34); /* cut inside the key id */
    expect_err(repo_get_all(r, "x/new", &got, &got_len), ERR_INTEGRITY,
               "object \"c/x/new\" in repository \"local\" is damaged: shorter than its header");

    /* a version 1 header on an object written under key 1: read with key 0, refused */
    memcpy(bad, orig, len);
    bad[4] = 1;
    spit("x/new", bad, 32);
    char *newpath = disk("x/new");
    FILE *f = fopen(newpath, "ab");
    free(newpath);
    assert_non_null(f);
    fwrite(orig + 36, 1, len - 36, f);
    fclose(f);
    rc = repo_get_all(r, "x/new", &got, &got_len);
    assert_int_equal(rc, -ERR_INTEGRITY);
    err_clear();

    spit("x/new", orig, len);
    check_content(r, "x/new", "under key one");
    free(orig);
    free(bad);
    repo_close(r);

    /* unencrypted: a version 2 header is refused */
    struct repo_options plain = {.cluster = "p"};
    struct repo *p = repo_open(fx.s, &plain, &ident, true);
    assert_non_null(p);
    check_ok(repo_put(p, "y", "plain", 5), "put plain");
    char *path = xasprintf("%s/p/y", fx.root);
    FILE *pf = fopen(path, "rb");
    uint8_t buf[256];
    size_t plen = fread(buf, 1, sizeof(buf), pf);
    fclose(pf);
    uint8_t v2[260];
    memcpy(v2, buf, 32);
    v2[4] = 2;
    memset(v2 + 32, 0, 4);
    memcpy(v2 + 36, buf + 32, plen - 32);
    pf = fopen(path, "wb");
    fwrite(v2, 1, plen + 4, pf);
    fclose(pf);
    free(path);
    expect_err(repo_get_all(p, "y", &got, &got_len), ERR_INTEGRITY,
               "object \"p/y\" in repository \"local\" is damaged: not encrypted, but its header "
               "names a data key\n  in repository \"local\"");
    repo_close(p);
}

/* Passphrase rotation re-wraps every key: the new passphrase reads objects of both. */
static void test_rekey_wraps_all(void **state)
{
    (void)state;
    struct repo_options o = options(PASS);
    struct repo *r = open_with(PASS);
    check_ok(repo_put(r, "x/old", "under key zero", 14), "put old");
    repo_close(r);
    uint32_t id;
    check_ok(repo_new_data_key(fx.s, &o, &id), "new data key");
    r = open_with(PASS);
    check_ok(repo_put(r, "x/new", "under key one", 13), "put new");
    repo_close(r);

    assert_int_equal(repo_rekey(fx.s, &o, "another passphrase"), 0);
    assert_int_equal(repo_rekey(fx.s, &o, "another passphrase"), 1); /* a re-run */
    r = open_with("another passphrase");
    check_content(r, "x/old", "under key zero");
    check_content(r, "x/new", "under key one");
    size_t n;
    repo_data_keys(r, &n);
    assert_int_equal(n, 2);
    repo_close(r);
    struct repo_options old = options(PASS);
    assert_null(repo_open(fx.s, &old, &ident, false));
    assert_int_equal(err_kind(), ERR_AUTH);
    err_clear();

    /* a wrapped key moved to another id does not open */
    json_t *j = repo_json();
    json_t *k1 = json_array_get(json_object_get(json_object_get(j, "encryption"), "data_keys"), 0);
    json_object_set_new(k1, "id", json_integer(5));
    char *text = json_dumps(j, 0);
    spit("repo.json", text, strlen(text));
    free(text);
    json_decref(j);
    struct repo_options now = options("another passphrase");
    assert_null(repo_open(fx.s, &now, &ident, false));
    char *msg = err_format();
    assert_non_null(strstr(msg, "data key 5 does not unwrap under the passphrase that unwraps "
                                "the first one: its record was altered"));
    free(msg);
    err_clear();
}

/* repo_key_usage counts each key's objects; dropping refuses key 0 and the current key,
 * and a dropped key is gone from repo.json while the others read on. */
static void test_usage_and_drop(void **state)
{
    (void)state;
    struct repo_options o = options(PASS);
    struct repo *r = open_with(PASS);
    check_ok(repo_put(r, "x/a", "zero", 4), "put");
    check_ok(repo_put(r, "x/b", "zero", 4), "put");
    repo_close(r);
    uint32_t id;
    check_ok(repo_new_data_key(fx.s, &o, &id), "key 1"); /* never used */
    check_ok(repo_new_data_key(fx.s, &o, &id), "key 2");
    assert_int_equal(id, 2);
    r = open_with(PASS);
    check_ok(repo_put(r, "x/c", "two", 3), "put");
    spit("x/foreign", "not an envelope", 15);

    size_t n;
    const struct repo_data_key *list = repo_data_keys(r, &n);
    assert_int_equal(n, 3);
    struct repo_data_key keys[3];
    memcpy(keys, list, sizeof(keys));
    uint64_t unknown = 0;
    char *first = NULL;
    check_ok(repo_key_usage(r, keys, n, false, &unknown, &first), "usage");
    assert_int_equal(keys[0].objects, 2);
    assert_int_equal(keys[1].objects, 0);
    assert_int_equal(keys[2].objects, 1);
    assert_true(keys[2].current);
    assert_int_equal(unknown, 0);
    assert_null(first);

    uint32_t two = 2, zero = 0, one = 1;
    expect_err(repo_drop_data_keys(fx.s, &o, &two, 1), ERR_USAGE,
               "data key 2 of repository \"local\" is the current one\n  while dropping data keys "
               "of repository \"local\"");
    expect_err(repo_drop_data_keys(fx.s, &o, &zero, 1), ERR_USAGE,
               "data key 0 of repository \"local\" is the first, which names chunks\n  while "
               "dropping data keys of repository \"local\"");
    check_ok(repo_drop_data_keys(fx.s, &o, &one, 1), "drop 1");
    repo_close(r);

    r = open_with(PASS);
    list = repo_data_keys(r, &n);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, 0);
    assert_int_equal(list[1].id, 2);
    check_content(r, "x/a", "zero");
    check_content(r, "x/c", "two");
    /* ids are not reused: the next key is 3 */
    check_ok(repo_new_data_key(fx.s, &o, &id), "key 3");
    assert_int_equal(id, 3);

    /* an object under a key repo.json no longer holds is counted as unknown */
    memcpy(keys, repo_data_keys(r, &n), 2 * sizeof(*keys));
    size_t len;
    uint8_t *c = slurp("x/c", &len);
    c[35] = 9;
    spit("x/c", c, len);
    free(c);
    check_ok(repo_key_usage(r, keys, 2, false, &unknown, &first), "usage");
    assert_int_equal(unknown, 1);
    assert_string_equal(first, "c/x/c");
    free(first);
    repo_close(r);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_one_key_unchanged), T(test_new_key_envelope), T(test_key_id_errors),
        T(test_rekey_wraps_all),   T(test_usage_and_drop),   T(test_writer_rechecks),
#undef T
    };
    return cmocka_run_group_tests_name("repo_keys", tests, NULL, NULL);
}
