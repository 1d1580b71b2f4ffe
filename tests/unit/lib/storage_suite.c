/* storage_suite.c — the shared storage driver test suite (see storage_suite.h). */
#include "storage_suite.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct storage_suite_target *current;

const struct storage_suite_target *storage_suite_target(void)
{
    return current;
}

int storage_suite_setup(void **state)
{
    struct storage *s = current->create(current->ctx);
    if (!s) {
        char *text = err_format();
        print_error("could not create a %s storage: %s\n", current->name, text);
        free(text);
        err_clear();
        return -1;
    }
    *state = s;
    return 0;
}

int storage_suite_teardown(void **state)
{
    current->destroy(*state, current->ctx);
    *state = NULL;
    err_clear();
    return 0;
}

struct storage *storage_suite_storage(void **state)
{
    return *state;
}

void storage_suite_assert_error(int rc, int kind, const char *want, const char *file, int line)
{
    char *text = err_format();
    bool ok = rc == -kind && (int)err_kind() == kind && (!want || strstr(text, want));
    if (!ok)
        print_error("expected %s error containing \"%s\", got rc %d (%s): %s\n",
                    err_kind_name((enum err_kind)kind), want ? want : "", rc,
                    err_kind_name(err_kind()), text);
    free(text);
    err_clear();
    if (!ok)
        _fail(file, line);
}

static void check_rc(int rc, const char *what, const char *file, int line)
{
    if (rc >= 0)
        return;
    char *text = err_format();
    print_error("%s failed: %s\n", what, text);
    free(text);
    err_clear();
    _fail(file, line);
}

#define CHECK(expr) check_rc((expr), #expr, __FILE__, __LINE__)

void storage_suite_put(struct storage *s, const char *path, const void *data, size_t len)
{
    CHECK(storage_write_all(s, path, data, len));
}

char *storage_suite_get(struct storage *s, const char *path, size_t *len)
{
    uint8_t *data = NULL;
    size_t n = 0;
    CHECK(storage_read_all(s, path, &data, &n));
    if (len)
        *len = n;
    return (char *)data;
}

/* --- deterministic content --------------------------------------------------- */

/* Byte i of test content number seed: any shift, repeat or swap shows up. */
static uint8_t gen_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint8_t)x;
}

static uint8_t *gen(uint64_t seed, size_t len)
{
    uint8_t *p = xmalloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        p[i] = gen_byte(seed, i);
    return p;
}

/* A sink checking bytes against gen_byte(seed, pos...) without holding them. */
struct verify {
    uint64_t seed;
    uint64_t pos; /* offset in the object of the next expected byte */
    uint64_t received;
    uint64_t first_bad; /* UINT64_MAX when all matched */
    size_t calls;
};

static void verify_init(struct verify *v, uint64_t seed, uint64_t offset)
{
    memset(v, 0, sizeof(*v));
    v->seed = seed;
    v->pos = offset;
    v->first_bad = UINT64_MAX;
}

static int verify_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct verify *v = ctx;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != gen_byte(v->seed, v->pos + i) && v->first_bad == UINT64_MAX)
            v->first_bad = v->pos + i;
    }
    v->pos += len;
    v->received += len;
    v->calls++;
    return 0;
}

/* Write len bytes of content seed through the streaming API in odd pieces. */
static void put_streamed(struct storage *s, const char *path, uint64_t seed, size_t len)
{
    static const size_t pieces[] = {1, 4093, 65537, 7, 1048573, 0, 333331};
    size_t chunk_max = 1048573;
    uint8_t *chunk = xmalloc(chunk_max);
    struct storage_write *w = storage_write_open(s, path, len);
    if (!w)
        CHECK(err_code());
    size_t done = 0;
    for (size_t k = 0; done < len; k++) {
        size_t n = pieces[k % (sizeof(pieces) / sizeof(pieces[0]))];
        if (n > len - done)
            n = len - done;
        for (size_t i = 0; i < n; i++)
            chunk[i] = gen_byte(seed, done + i);
        int rc = storage_write_data(w, chunk, n);
        if (rc < 0) {
            storage_write_abort(w);
            free(chunk);
            CHECK(rc);
        }
        done += n;
    }
    free(chunk);
    CHECK(storage_write_commit(w));
}

static void assert_content(struct storage *s, const char *path, uint64_t seed, uint64_t len)
{
    struct verify v;
    verify_init(&v, seed, 0);
    CHECK(storage_read(s, path, 0, STORAGE_TO_END, verify_sink, &v));
    assert_int_equal(v.received, len);
    assert_true(v.first_bad == UINT64_MAX);
}

/* --- list helpers ------------------------------------------------------------ */

struct listing {
    char **paths;
    uint64_t *sizes;
    size_t count;
    size_t stop_after; /* return an error after this many; 0 = never */
};

static int listing_cb(void *ctx, const struct storage_info *info)
{
    struct listing *l = ctx;
    l->paths = xrealloc(l->paths, (l->count + 1) * sizeof(*l->paths));
    l->sizes = xrealloc(l->sizes, (l->count + 1) * sizeof(*l->sizes));
    l->paths[l->count] = xstrdup(info->path);
    l->sizes[l->count] = info->size;
    l->count++;
    if (l->stop_after && l->count == l->stop_after)
        return err_set(ERR_CANCELED, "listing stopped by the caller");
    return 0;
}

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->sizes);
    memset(l, 0, sizeof(*l));
}

static void list_into(struct storage *s, const char *prefix, struct listing *l)
{
    memset(l, 0, sizeof(*l));
    CHECK(storage_list(s, prefix, listing_cb, l));
}

/* Assert the listing holds exactly want[0..n) in this order. */
static void assert_listing(const struct listing *l, const char *const *want, size_t n)
{
    if (l->count != n) {
        for (size_t i = 0; i < l->count; i++)
            print_error("  listed \"%s\"\n", l->paths[i]);
    }
    assert_int_equal(l->count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->paths[i], want[i]);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* --- tests --------------------------------------------------------------------- */

static void roundtrip(struct storage *s, const char *path, uint64_t seed, size_t len)
{
    put_streamed(s, path, seed, len);
    struct storage_info info;
    CHECK(storage_info(s, path, &info));
    assert_int_equal(info.size, len);
    assert_null(info.path);
    assert_content(s, path, seed, len);
}

static void test_roundtrip_small(void **state)
{
    struct storage *s = *state;
    roundtrip(s, "empty", 1, 0);
    roundtrip(s, "one", 2, 1);

    /* read_all hands back a NUL-terminated copy, also for an empty object */
    size_t len = 99;
    char *data = storage_suite_get(s, "empty", &len);
    assert_non_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(data[0], '\0');
    free(data);
    storage_suite_put(s, "text", "hello", 5);
    data = storage_suite_get(s, "text", &len);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    free(data);
}

static void test_roundtrip_1mib_plus_1(void **state)
{
    roundtrip(*state, "dir/one-mib-plus-one", 3, 1024 * 1024 + 1);
}

static void test_roundtrip_20mib_streamed(void **state)
{
    roundtrip(*state, "big/twenty", 4, 20 * 1024 * 1024);
}

static void test_write_all_roundtrip(void **state)
{
    struct storage *s = *state;
    size_t len = 3 * 1024 * 1024 + 17;
    uint8_t *data = gen(5, len);
    storage_suite_put(s, "whole/buffer", data, len);
    size_t got_len;
    char *got = storage_suite_get(s, "whole/buffer", &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    free(data);
}

static void check_range(struct storage *s, const char *path, uint64_t seed, uint64_t offset,
                        uint64_t length, uint64_t expect)
{
    struct verify v;
    verify_init(&v, seed, offset);
    CHECK(storage_read(s, path, offset, length, verify_sink, &v));
    assert_int_equal(v.received, expect);
    assert_true(v.first_bad == UINT64_MAX);
}

static void test_ranges(void **state)
{
    struct storage *s = *state;
    const uint64_t size = 100000;
    put_streamed(s, "r/obj", 6, size);
    check_range(s, "r/obj", 6, 0, 10, 10);                           /* start */
    check_range(s, "r/obj", 6, 4093, 50000, 50000);                  /* middle */
    check_range(s, "r/obj", 6, size - 10, 10, 10);                   /* end */
    check_range(s, "r/obj", 6, size - 10, STORAGE_TO_END, 10);       /* end, open */
    check_range(s, "r/obj", 6, 12345, STORAGE_TO_END, size - 12345); /* to the end */
    check_range(s, "r/obj", 6, 0, size, size);                       /* exactly all */
    check_range(s, "r/obj", 6, 0, 0, 0);                             /* empty, start */
    check_range(s, "r/obj", 6, 500, 0, 0);                           /* empty, middle */
    check_range(s, "r/obj", 6, size, 0, 0);                          /* empty, at end */
    check_range(s, "r/obj", 6, size, STORAGE_TO_END, 0);             /* nothing left */

    /* Past the end: a truncated object, named with its size. */
    struct verify v;
    verify_init(&v, 6, size - 5);
    assert_storage_error(storage_read(s, "r/obj", size - 5, 10, verify_sink, &v), ERR_INTEGRITY,
                         "r/obj");
    verify_init(&v, 6, size - 5);
    storage_read(s, "r/obj", size - 5, 10, verify_sink, &v);
    char *text = err_format();
    assert_non_null(strstr(text, "100000"));
    assert_non_null(strstr(text, "in repository \""));
    free(text);
    err_clear();
    verify_init(&v, 6, size + 1);
    assert_storage_error(storage_read(s, "r/obj", size + 1, STORAGE_TO_END, verify_sink, &v),
                         ERR_INTEGRITY, "r/obj");
    verify_init(&v, 6, size);
    assert_storage_error(storage_read(s, "r/obj", size, 1, verify_sink, &v), ERR_INTEGRITY,
                         "r/obj");
    verify_init(&v, 6, 200000);
    assert_storage_error(storage_read(s, "r/obj", 200000, 0, verify_sink, &v), ERR_INTEGRITY,
                         "r/obj");
}

static void test_ranges_empty_object(void **state)
{
    struct storage *s = *state;
    storage_suite_put(s, "r/empty", "", 0);
    check_range(s, "r/empty", 0, 0, 0, 0);
    check_range(s, "r/empty", 0, 0, STORAGE_TO_END, 0);
    struct verify v;
    verify_init(&v, 0, 0);
    assert_storage_error(storage_read(s, "r/empty", 0, 1, verify_sink, &v), ERR_INTEGRITY,
                         "r/empty");
}

static void test_overwrite_is_atomic(void **state)
{
    struct storage *s = *state;
    put_streamed(s, "ow/obj", 7, 300000);

    /* While a new version is being written, readers still see the old one whole. */
    struct storage_write *w = storage_write_open(s, "ow/obj", STORAGE_TO_END);
    assert_non_null(w);
    uint8_t *data = gen(8, 123457);
    CHECK(storage_write_data(w, data, 100000));
    assert_content(s, "ow/obj", 7, 300000);
    CHECK(storage_write_data(w, data + 100000, 23457));
    assert_content(s, "ow/obj", 7, 300000);
    CHECK(storage_write_commit(w));

    /* Afterwards, the whole new one (shorter than the old: no old tail remains). */
    assert_content(s, "ow/obj", 8, 123457);
    struct storage_info info;
    CHECK(storage_info(s, "ow/obj", &info));
    assert_int_equal(info.size, 123457);
    free(data);

    storage_suite_put(s, "ow/obj", "x", 1);
    char *got = storage_suite_get(s, "ow/obj", NULL);
    assert_string_equal(got, "x");
    free(got);
}

static void test_abort_leaves_nothing(void **state)
{
    struct storage *s = *state;
    size_t big = 6 * 1024 * 1024 + 3; /* more than one S3 part */
    uint8_t *data = gen(9, big);

    struct storage_write *w = storage_write_open(s, "ab/new", big);
    assert_non_null(w);
    CHECK(storage_write_data(w, data, big));
    storage_write_abort(w);
    assert_int_equal(storage_exists(s, "ab/new"), 0);
    uint8_t *got = NULL;
    size_t len = 0;
    assert_storage_error(storage_read_all(s, "ab/new", &got, &len), ERR_NOT_FOUND, "ab/new");
    assert_null(got);

    /* Aborting a replacement keeps the old object. */
    storage_suite_put(s, "ab/old", "old content", 11);
    w = storage_write_open(s, "ab/old", STORAGE_TO_END);
    assert_non_null(w);
    CHECK(storage_write_data(w, data, 1000));
    storage_write_abort(w);
    char *old = storage_suite_get(s, "ab/old", NULL);
    assert_string_equal(old, "old content");
    free(old);

    /* An abort right after open, without data. */
    w = storage_write_open(s, "ab/nothing", 0);
    assert_non_null(w);
    storage_write_abort(w);
    storage_write_abort(NULL);

    struct listing l;
    list_into(s, "", &l);
    const char *want[] = {"ab/old"};
    assert_listing(&l, want, 1);
    listing_free(&l);
    free(data);
}

static void test_missing_object(void **state)
{
    struct storage *s = *state;
    char *ctx = xasprintf("in repository \"%s\"", s->name);
    struct verify v;
    verify_init(&v, 0, 0);
    assert_storage_error(storage_read(s, "no/such", 0, STORAGE_TO_END, verify_sink, &v),
                         ERR_NOT_FOUND, "no/such");
    assert_int_equal(v.received, 0);
    storage_read(s, "no/such", 0, 10, verify_sink, &v);
    assert_storage_error(err_code(), ERR_NOT_FOUND, ctx);

    struct storage_info info;
    assert_storage_error(storage_info(s, "no/such", &info), ERR_NOT_FOUND, "no/such");
    storage_info(s, "no/such", &info);
    assert_storage_error(err_code(), ERR_NOT_FOUND, ctx);

    /* A "directory" (common prefix of other objects) is not an object. */
    storage_suite_put(s, "dir/sub/obj", "x", 1);
    assert_storage_error(storage_info(s, "dir/sub", &info), ERR_NOT_FOUND, NULL);
    assert_storage_error(storage_read(s, "dir", 0, STORAGE_TO_END, verify_sink, &v), ERR_NOT_FOUND,
                         NULL);
    assert_int_equal(storage_exists(s, "dir"), 0);
    assert_int_equal(storage_exists(s, "dir/sub"), 0);
    /* Below an object is nothing either. */
    assert_storage_error(storage_info(s, "dir/sub/obj/below", &info), ERR_NOT_FOUND, NULL);
    assert_int_equal(storage_exists(s, "dir/sub/obj/below"), 0);
    assert_false(err_is_set());
    free(ctx);
}

static void test_exists(void **state)
{
    struct storage *s = *state;
    assert_int_equal(storage_exists(s, "e/obj"), 0);
    assert_false(err_is_set());
    storage_suite_put(s, "e/obj", "", 0);
    assert_int_equal(storage_exists(s, "e/obj"), 1);
    assert_int_equal(storage_exists(s, "e/ob"), 0);
    assert_int_equal(storage_exists(s, "e/obj2"), 0);
    CHECK(storage_remove(s, "e/obj"));
    assert_int_equal(storage_exists(s, "e/obj"), 0);
}

static void test_info(void **state)
{
    struct storage *s = *state;
    storage_suite_put(s, "i/seven", "1234567", 7);
    struct storage_info info = {.path = "garbage"};
    CHECK(storage_info(s, "i/seven", &info));
    assert_int_equal(info.size, 7);
    assert_null(info.path);
    /* Unknown (0) or plausible: within an hour of now. */
    int64_t now_us = (int64_t)time(NULL) * 1000000;
    if (info.mtime_us != 0) {
        assert_true(info.mtime_us > now_us - 3600LL * 1000000);
        assert_true(info.mtime_us < now_us + 3600LL * 1000000);
    }
}

static void test_list_prefix(void **state)
{
    struct storage *s = *state;
    const char *all[] = {
        "chunks/ab/abcdef",
        "chunks/ff/ff00",
        "repo.json",
        "wal/00000001.history",
        "wal/00000001/000000010000000000000001",
        "wal/00000001/000000010000000000000002",
        "wal/00000001/000000010000000100000000",
        "wal/00000001/000000010000000100000000.partial",
        "wal/00000002/000000020000000100000003",
        "wal/00000002a",
        "wal0",
    };
    size_t n = sizeof(all) / sizeof(all[0]);
    /* Written out of order, with distinct sizes. */
    char filler[32];
    memset(filler, 'f', sizeof(filler));
    for (size_t i = n; i-- > 0;)
        storage_suite_put(s, all[i], filler, i + 1);

    struct listing l;
    list_into(s, "", &l);
    assert_listing(&l, all, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l.sizes[i], i + 1);
    listing_free(&l);

    /* A partial name is a string prefix: ".history" sorts before "/". */
    list_into(s, "wal/00000001", &l);
    assert_listing(&l, all + 3, 5);
    listing_free(&l);

    list_into(s, "wal/00000001/", &l);
    assert_listing(&l, all + 4, 4);
    listing_free(&l);

    list_into(s, "wal/00000001/0000000100000001", &l);
    assert_listing(&l, all + 6, 2);
    listing_free(&l);

    list_into(s, "wal", &l);
    assert_listing(&l, all + 3, 8);
    listing_free(&l);

    list_into(s, "wal/", &l);
    assert_listing(&l, all + 3, 7);
    listing_free(&l);

    list_into(s, "wal/00000002", &l);
    assert_listing(&l, all + 8, 2);
    listing_free(&l);

    list_into(s, "chunks/ff/ff00", &l);
    assert_listing(&l, all + 1, 1);
    listing_free(&l);

    /* Empty results are not errors. */
    list_into(s, "nothing/", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);
    list_into(s, "wal/00000003", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);
    list_into(s, "repo.json/", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);
    list_into(s, "chunks/ab/abcdef0", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);

    /* A callback error stops the listing and comes back unchanged. */
    memset(&l, 0, sizeof(l));
    l.stop_after = 2;
    assert_storage_error(storage_list(s, "", listing_cb, &l), ERR_CANCELED,
                         "listing stopped by the caller");
    assert_int_equal(l.count, 2);
    listing_free(&l);
}

static void test_list_empty_storage(void **state)
{
    struct listing l;
    list_into(*state, "", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);
}

static void test_list_many(void **state)
{
    struct storage *s = *state;
    const int many = current->list_many > 0 ? current->list_many : 2500;
    char **names = xmalloc((size_t)many * sizeof(*names));
    for (int i = 0; i < many; i++) {
        /* Unpadded numbers: byte order differs from numeric order. */
        names[i] = xasprintf("many/%d", i);
        storage_suite_put(s, names[i], names[i] + 5, strlen(names[i] + 5));
    }
    storage_suite_put(s, "many.txt", "x", 1);
    storage_suite_put(s, "manz", "x", 1);
    qsort(names, (size_t)many, sizeof(*names), cmp_str);

    struct listing l;
    list_into(s, "many/", &l);
    assert_listing(&l, (const char *const *)names, many);
    for (size_t i = 0; i < l.count; i++)
        assert_int_equal(l.sizes[i], strlen(l.paths[i]) - 5);
    listing_free(&l);

    /* Prefix "many/1" (with 2500: 1, 10-19, 100-199, 1000-1999 = 1111 names), in order. */
    size_t ones = 0;
    for (int i = 0; i < many; i++)
        ones += strncmp(names[i], "many/1", 6) == 0;
    list_into(s, "many/1", &l);
    assert_int_equal(l.count, ones);
    for (size_t i = 0; i < l.count; i++) {
        assert_true(strncmp(l.paths[i], "many/1", 6) == 0);
        if (i > 0)
            assert_true(strcmp(l.paths[i - 1], l.paths[i]) < 0);
    }
    listing_free(&l);

    list_into(s, "", &l);
    assert_int_equal(l.count, many + 2);
    assert_string_equal(l.paths[0], "many.txt");
    assert_string_equal(l.paths[many + 1], "manz");
    listing_free(&l);

    for (int i = 0; i < many; i++)
        free(names[i]);
    free(names);
}

static void test_remove(void **state)
{
    struct storage *s = *state;
    storage_suite_put(s, "rm/a", "a", 1);
    storage_suite_put(s, "rm/b", "b", 1);
    CHECK(storage_remove(s, "rm/a"));
    assert_int_equal(storage_exists(s, "rm/a"), 0);
    /* Removing what is already gone, or never was, is fine. */
    CHECK(storage_remove(s, "rm/a"));
    CHECK(storage_remove(s, "never/was/here"));
    CHECK(storage_remove(s, "rm")); /* a prefix, not an object */
    char *b = storage_suite_get(s, "rm/b", NULL);
    assert_string_equal(b, "b");
    free(b);
    struct listing l;
    list_into(s, "", &l);
    const char *want[] = {"rm/b"};
    assert_listing(&l, want, 1);
    listing_free(&l);
}

static void test_rename(void **state)
{
    struct storage *s = *state;
    put_streamed(s, "mv/src", 10, 2 * 1024 * 1024 + 5);
    CHECK(storage_rename(s, "mv/src", "mv/dst"));
    assert_int_equal(storage_exists(s, "mv/src"), 0);
    assert_content(s, "mv/dst", 10, 2 * 1024 * 1024 + 5);

    /* Onto an existing object: replaces it. */
    storage_suite_put(s, "mv/other", "other", 5);
    CHECK(storage_rename(s, "mv/other", "mv/dst"));
    char *got = storage_suite_get(s, "mv/dst", NULL);
    assert_string_equal(got, "other");
    free(got);

    /* Into a new nested place. */
    CHECK(storage_rename(s, "mv/dst", "deep/er/still/dst"));
    got = storage_suite_get(s, "deep/er/still/dst", NULL);
    assert_string_equal(got, "other");
    free(got);

    /* Onto itself: nothing happens, nothing is lost. */
    CHECK(storage_rename(s, "deep/er/still/dst", "deep/er/still/dst"));
    got = storage_suite_get(s, "deep/er/still/dst", NULL);
    assert_string_equal(got, "other");
    free(got);

    /* A missing source. */
    assert_storage_error(storage_rename(s, "mv/none", "mv/x"), ERR_NOT_FOUND, "mv/none");
    assert_int_equal(storage_exists(s, "mv/x"), 0);
    assert_storage_error(storage_rename(s, "mv/none", "mv/none"), ERR_NOT_FOUND, "mv/none");

    struct listing l;
    list_into(s, "", &l);
    const char *want[] = {"deep/er/still/dst"};
    assert_listing(&l, want, 1);
    listing_free(&l);
}

static const char *const bad_paths[] = {"../x", "/abs", "a//b", "",  "a/./b",    "a/..",
                                        ".",    "..",   "a/",   "/", "x/../../y"};

static void test_invalid_paths(void **state)
{
    struct storage *s = *state;
    struct verify v;
    struct storage_info info;
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        const char *p = bad_paths[i];
        char *quoted = xasprintf("\"%s\"", p);
        verify_init(&v, 0, 0);
        assert_storage_error(storage_read(s, p, 0, STORAGE_TO_END, verify_sink, &v), ERR_USAGE,
                             quoted);
        uint8_t *data;
        size_t len;
        assert_storage_error(storage_read_all(s, p, &data, &len), ERR_USAGE, quoted);
        assert_null(storage_write_open(s, p, 1));
        assert_storage_error(err_code(), ERR_USAGE, quoted);
        assert_storage_error(storage_write_all(s, p, "x", 1), ERR_USAGE, quoted);
        assert_storage_error(storage_info(s, p, &info), ERR_USAGE, quoted);
        assert_storage_error(storage_exists(s, p), ERR_USAGE, quoted);
        assert_storage_error(storage_remove(s, p), ERR_USAGE, quoted);
        assert_storage_error(storage_rename(s, p, "ok"), ERR_USAGE, quoted);
        storage_suite_put(s, "ok", "x", 1);
        assert_storage_error(storage_rename(s, "ok", p), ERR_USAGE, quoted);
        assert_int_equal(storage_exists(s, "ok"), 1);
        free(quoted);
    }
    assert_storage_error(storage_path_check("a/../b"), ERR_USAGE, "\"a/../b\"");
    CHECK(storage_path_check("a/.b/..c/b.."));

    /* A list prefix may be partial ("", "wal/", "wal/0001") but not climb out. */
    static const char *const bad_prefixes[] = {"../", "../x", "/abs", "a//b", "a/./b", "/"};
    struct listing l;
    for (size_t i = 0; i < sizeof(bad_prefixes) / sizeof(bad_prefixes[0]); i++) {
        char *quoted = xasprintf("\"%s\"", bad_prefixes[i]);
        memset(&l, 0, sizeof(l));
        assert_storage_error(storage_list(s, bad_prefixes[i], listing_cb, &l), ERR_USAGE, quoted);
        assert_int_equal(l.count, 0);
        free(quoted);
    }
    /* Nothing got written anywhere by the refused calls. */
    list_into(s, "", &l);
    const char *want[] = {"ok"};
    assert_listing(&l, want, 1);
    listing_free(&l);
    list_into(s, "o", &l);
    assert_listing(&l, want, 1);
    listing_free(&l);
}

static void test_special_names(void **state)
{
    struct storage *s = *state;
    const char *names[] = {
        "space dir/file with  spaces.txt",
        "unicode/\xC5\xBC\xC3\xB3\xC5\x82w \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
        "enc/a+b=c",
        "enc/100%/x%2Fy%20z",
        "enc/q?x&y#z",
        "enc/tilde~star*paren()!'",
        "enc/semi;colon,comma@at$dollar:colon",
        "enc/plus+/++",
        "enc/=/==",
        "dot/.hidden",
        "dot/a..b",
    };
    size_t n = sizeof(names) / sizeof(names[0]);
    for (size_t i = 0; i < n; i++)
        storage_suite_put(s, names[i], names[i], strlen(names[i]));
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *got = storage_suite_get(s, names[i], &len);
        assert_int_equal(len, strlen(names[i]));
        assert_string_equal(got, names[i]);
        free(got);
        assert_int_equal(storage_exists(s, names[i]), 1);
        struct storage_info info;
        CHECK(storage_info(s, names[i], &info));
        assert_int_equal(info.size, strlen(names[i]));
    }
    const char **sorted = xmalloc(n * sizeof(*sorted));
    memcpy(sorted, names, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    struct listing l;
    list_into(s, "", &l);
    assert_listing(&l, sorted, n);
    listing_free(&l);
    free(sorted);

    list_into(s, "enc/a+", &l);
    assert_listing(&l, names + 2, 1);
    listing_free(&l);
    list_into(s, "enc/100%/x%2F", &l);
    assert_listing(&l, names + 3, 1);
    listing_free(&l);
    list_into(s, "space dir/file with ", &l);
    assert_listing(&l, names, 1);
    listing_free(&l);
    list_into(s, "unicode/\xC5\xBC", &l);
    assert_listing(&l, names + 1, 1);
    listing_free(&l);

    CHECK(storage_rename(s, names[2], "enc/renamed +=%"));
    char *got = storage_suite_get(s, "enc/renamed +=%", NULL);
    assert_string_equal(got, names[2]);
    free(got);
    for (size_t i = 0; i < n; i++)
        CHECK(storage_remove(s, names[i]));
    CHECK(storage_remove(s, "enc/renamed +=%"));
    list_into(s, "", &l);
    assert_int_equal(l.count, 0);
    listing_free(&l);
}

static int stop_sink(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    size_t *calls = ctx;
    (*calls)++;
    if (len == 0)
        return 0;
    return err_set(ERR_CANCELED, "stopped by the sink");
}

static void test_sink_error(void **state)
{
    struct storage *s = *state;
    put_streamed(s, "sink/obj", 11, 3 * 1024 * 1024);
    size_t calls = 0;
    assert_storage_error(storage_read(s, "sink/obj", 0, STORAGE_TO_END, stop_sink, &calls),
                         ERR_CANCELED, "stopped by the sink");
    assert_int_equal(calls, 1);
}

#define THREADS 4
#define PER_THREAD 12

struct writer {
    struct storage *s;
    int id;
    char *error;
};

static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    for (int i = 0; i < PER_THREAD && !wr->error; i++) {
        char *path = xasprintf("par/t%d/obj%02d", wr->id, i);
        uint64_t seed = 1000 + (uint64_t)wr->id * 100 + (uint64_t)i;
        size_t len = 70000 + (size_t)wr->id * 1000 + (size_t)i;
        uint8_t *data = gen(seed, len);
        struct storage_write *w = storage_write_open(wr->s, path, len);
        int rc = w ? 0 : err_code();
        /* Feed in two halves so the threads' writes interleave. */
        if (rc == 0)
            rc = storage_write_data(w, data, len / 2);
        if (rc == 0)
            rc = storage_write_data(w, data + len / 2, len - len / 2);
        if (rc == 0) {
            rc = storage_write_commit(w);
        } else if (w) {
            storage_write_abort(w);
        }
        if (rc < 0)
            wr->error = err_format();
        free(data);
        free(path);
    }
    err_clear();
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct storage *s = *state;
    pthread_t th[THREADS];
    struct writer wr[THREADS];
    for (int t = 0; t < THREADS; t++) {
        wr[t] = (struct writer){.s = s, .id = t};
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &wr[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < THREADS; t++) {
        if (wr[t].error)
            print_error("thread %d: %s\n", t, wr[t].error);
        assert_null(wr[t].error);
    }
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < PER_THREAD; i++) {
            char *path = xasprintf("par/t%d/obj%02d", t, i);
            assert_content(s, path, 1000 + (uint64_t)t * 100 + (uint64_t)i,
                           70000 + (uint64_t)t * 1000 + (uint64_t)i);
            free(path);
        }
    }
    struct listing l;
    list_into(s, "par/", &l);
    assert_int_equal(l.count, THREADS * PER_THREAD);
    listing_free(&l);
}

/* --- many transfers from one thread (storage_batch) ------------------------------- */

#define BATCH_N 24

/* Outcome of each transfer, as its done callback saw it. */
struct outcome {
    int calls;
    int rc;
    char *error;
    int keep; /* what done returns: 1 = rc as given, 0 = forgive */
};

static int record_done(void *ctx, int rc)
{
    struct outcome *o = ctx;
    o->calls++;
    o->rc = rc;
    if (rc < 0 && !o->error)
        o->error = err_format();
    return o->keep ? rc : 0;
}

static void outcomes_free(struct outcome *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].error);
}

/* Sizes from empty to past a part (s3: 5 MiB parts in the tests; such a put is a
 * multipart upload, run synchronously). */
static size_t batch_size(int i)
{
    return i == 0 ? 0 : i == 1 ? 6 * 1024 * 1024 + 3 : (size_t)i * 7777;
}

static void test_batch_put_get(void **state)
{
    struct storage *s = *state;
    uint8_t *data[BATCH_N];
    char *paths[BATCH_N];
    struct outcome put[BATCH_N] = {{0}}, get[BATCH_N] = {{0}};
    struct verify v[BATCH_N];
    struct storage_batch *b = storage_batch_new(s, 4);
    for (int i = 0; i < BATCH_N; i++) {
        paths[i] = xasprintf("batch/obj-%02d", i);
        data[i] = gen(500 + (uint64_t)i, batch_size(i));
        put[i].keep = 1;
        CHECK(storage_batch_put(b, paths[i], data[i], batch_size(i), record_done, &put[i]));
    }
    CHECK(storage_batch_wait(b));
    for (int i = 0; i < BATCH_N; i++) {
        assert_int_equal(put[i].calls, 1);
        assert_int_equal(put[i].rc, 0);
        assert_content(s, paths[i], 500 + (uint64_t)i, batch_size(i));
    }
    /* whole objects, ranges and an empty range, into sinks, in the same batch */
    for (int i = 0; i < BATCH_N; i++) {
        uint64_t off = i % 3 == 1 ? batch_size(i) / 3 : 0;
        uint64_t len = i % 3 == 0 ? STORAGE_TO_END : i % 3 == 1 ? batch_size(i) / 2 : 0;
        verify_init(&v[i], 500 + (uint64_t)i, off);
        get[i].keep = 1;
        CHECK(storage_batch_get(b, paths[i], off, len, verify_sink, &v[i], record_done, &get[i]));
    }
    CHECK(storage_batch_wait(b));
    for (int i = 0; i < BATCH_N; i++) {
        uint64_t want = i % 3 == 0 ? batch_size(i) : i % 3 == 1 ? batch_size(i) / 2 : 0;
        assert_int_equal(get[i].calls, 1);
        assert_int_equal(get[i].rc, 0);
        assert_int_equal(v[i].received, want);
        assert_true(v[i].first_bad == UINT64_MAX);
    }
    storage_batch_free(b);
    for (int i = 0; i < BATCH_N; i++) {
        free(paths[i]);
        free(data[i]);
    }
}

/* len bytes of seed into w in odd pieces, as a filter chain's output would come. */
static void write_pieces(struct storage_write *w, uint64_t seed, size_t len)
{
    uint8_t *piece = xmalloc(65537);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < 65537 ? len - done : 65537;
        for (size_t i = 0; i < n; i++)
            piece[i] = gen_byte(seed, done + i);
        CHECK(storage_write_data(w, piece, n));
        done += n;
    }
    free(piece);
}

/* Objects "<dir>/obj<k>" of lens[k] bytes (seed + k) written through b as streamed
 * writes (the size given when hinted), then one aborted; all checked once b is done:
 * each done called once and well, each object whole, the aborted one absent. */
static void streamed_writes(struct storage *s, struct storage_batch *b, const char *dir,
                            uint64_t seed, const size_t *lens, int n, bool hinted)
{
    struct outcome o[8] = {{0}};
    char path[64];
    assert_true(n <= 8);
    for (int k = 0; k < n; k++) {
        o[k].keep = 1;
        snprintf(path, sizeof(path), "%s/obj%d", dir, k);
        struct storage_write *w = storage_batch_write_open(
            b, path, hinted && k % 2 == 0 ? lens[k] : STORAGE_TO_END, record_done, &o[k]);
        if (!w)
            CHECK(err_code());
        write_pieces(w, seed + (uint64_t)k, lens[k]);
        CHECK(storage_write_commit(w));
    }
    snprintf(path, sizeof(path), "%s/aborted", dir);
    struct storage_write *w = storage_batch_write_open(b, path, 10, record_done, &o[0]);
    assert_non_null(w);
    CHECK(storage_write_data(w, "0123456789", 10));
    storage_write_abort(w);
    CHECK(storage_batch_wait(b));
    storage_batch_free(b);
    assert_int_equal(storage_exists(s, path), 0);
    for (int k = 0; k < n; k++) {
        snprintf(path, sizeof(path), "%s/obj%d", dir, k);
        assert_int_equal(o[k].calls, 1);
        assert_int_equal(o[k].rc, 0);
        assert_content(s, path, seed + (uint64_t)k, lens[k]);
    }
}

/* A streamed write committed asynchronously: bytes in odd pieces, as a filter
 * chain's output would come; an aborted one leaves nothing and reports nothing. */
static void test_batch_streamed_write(void **state)
{
    const size_t lens[3] = {0, 3 * 1024 * 1024 + 5, 200001};
    streamed_writes(*state, storage_batch_new(*state, 2), "bw", 900, lens, 3, true);
}

/* Streamed writes whose bodies wait in spool files (storage_batch_spool): every size,
 * one above the s3 target's part size (then a synchronous multipart write from the
 * file) among them; an aborted one leaves nothing; the files go with their transfers. */
static void test_batch_streamed_write_spooled(void **state)
{
    char dir[] = "/tmp/pgark-bspool-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const size_t lens[4] = {0, 1, 3 * 1024 * 1024 + 5, 6 * 1024 * 1024 + 7};
    struct storage_batch *b = storage_batch_new(*state, 3);
    storage_batch_spool(b, dir);
    streamed_writes(*state, b, "bs", 950, lens, 4, false);
    assert_int_equal(rmdir(dir), 0); /* nothing left in it */
}

/* A streamed write bigger than a batch buffers goes on as an ordinary synchronous
 * write: it has ended (done called) when its commit returns, and reads back whole. */
static void test_batch_streamed_write_too_big(void **state)
{
    struct storage *s = *state;
    struct outcome o = {.keep = 1};
    const size_t len = STORAGE_BATCH_BUFFER_MAX + 3;
    struct storage_batch *b = storage_batch_new(s, 2);
    struct storage_write *w =
        storage_batch_write_open(b, "bt/big", STORAGE_TO_END, record_done, &o);
    if (!w)
        CHECK(err_code());
    write_pieces(w, 990, len);
    CHECK(storage_write_commit(w));
    assert_int_equal(o.calls, 1); /* synchronous: no wait needed */
    assert_int_equal(o.rc, 0);
    CHECK(storage_batch_wait(b));
    storage_batch_free(b);
    assert_content(s, "bt/big", 990, len);
}

/* The first kept failure stops the batch and is reported once; a forgiven one is
 * not; a bad path is refused at once without a done call. */
static void test_batch_errors(void **state)
{
    struct storage *s = *state;
    storage_suite_put(s, "be/here", "abc", 3);
    struct outcome o[4] = {{0}};
    struct verify v[4];
    struct storage_batch *b = storage_batch_new(s, 3);

    assert_storage_error(storage_batch_put(b, "../bad", "x", 1, record_done, &o[0]), ERR_USAGE,
                         "invalid object path \"../bad\"");
    assert_int_equal(o[0].calls, 0);
    storage_batch_free(b);

    b = storage_batch_new(s, 3);
    verify_init(&v[0], 0, 0);
    o[0].keep = 0; /* forgiven: the batch goes on */
    CHECK(storage_batch_get(b, "be/missing", 0, STORAGE_TO_END, verify_sink, &v[0], record_done,
                            &o[0]));
    CHECK(storage_batch_wait(b));
    assert_int_equal(o[0].calls, 1);
    assert_int_equal(o[0].rc, -ERR_NOT_FOUND);
    assert_non_null(strstr(o[0].error, "in repository"));
    assert_false(err_is_set());

    o[1].keep = 1;
    CHECK(storage_batch_get(b, "be/missing", 0, STORAGE_TO_END, verify_sink, &v[1], record_done,
                            &o[1]));
    int rc = storage_batch_wait(b);
    assert_storage_error(rc, ERR_NOT_FOUND, "be/missing");
    assert_int_equal(o[1].calls, 1);
    /* reported once: later calls give the code and leave the slot alone */
    err_set(ERR_IO, "the caller's own error");
    assert_int_equal(storage_batch_put(b, "be/later", "x", 1, record_done, &o[2]), -ERR_NOT_FOUND);
    assert_int_equal(storage_batch_wait(b), -ERR_NOT_FOUND);
    assert_string_equal(err_message(), "the caller's own error");
    err_clear();
    assert_int_equal(o[2].calls, 0);
    storage_batch_free(b);
    assert_int_equal(storage_exists(s, "be/later"), 0);
    outcomes_free(o, 4);
}

static void test_batch_sink_error(void **state)
{
    struct storage *s = *state;
    put_streamed(s, "bsink/obj", 12, 2 * 1024 * 1024);
    struct outcome o = {.keep = 1};
    size_t calls = 0;
    struct storage_batch *b = storage_batch_new(s, 2);
    CHECK(storage_batch_get(b, "bsink/obj", 0, STORAGE_TO_END, stop_sink, &calls, record_done, &o));
    assert_storage_error(storage_batch_wait(b), ERR_CANCELED, "stopped by the sink");
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.rc, -ERR_CANCELED);
    assert_int_equal(calls, 1);
    storage_batch_free(b);
    outcomes_free(&o, 1);
}

/* Freeing a batch with transfers running: each done is still called once. */
static void test_batch_free_running(void **state)
{
    struct storage *s = *state;
    put_streamed(s, "bfree/obj", 13, 3 * 1024 * 1024);
    struct outcome o[6] = {{0}};
    struct verify v[6];
    struct storage_batch *b = storage_batch_new(s, 6);
    for (int i = 0; i < 6; i++) {
        verify_init(&v[i], 13, 0);
        o[i].keep = 1;
        CHECK(storage_batch_get(b, "bfree/obj", 0, STORAGE_TO_END, verify_sink, &v[i], record_done,
                                &o[i]));
    }
    err_set(ERR_IO, "kept across the free");
    storage_batch_free(b);
    assert_string_equal(err_message(), "kept across the free");
    err_clear();
    for (int i = 0; i < 6; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_true(o[i].rc == 0 || o[i].rc == -ERR_CANCELED);
        assert_true(v[i].first_bad == UINT64_MAX);
    }
    outcomes_free(o, 6);
}

#define SUITE_TEST(f)                                                                              \
    cmocka_unit_test_setup_teardown(f, storage_suite_setup, storage_suite_teardown)

static const struct CMUnitTest shared_tests[] = {
    SUITE_TEST(test_roundtrip_small),
    SUITE_TEST(test_roundtrip_1mib_plus_1),
    SUITE_TEST(test_roundtrip_20mib_streamed),
    SUITE_TEST(test_write_all_roundtrip),
    SUITE_TEST(test_ranges),
    SUITE_TEST(test_ranges_empty_object),
    SUITE_TEST(test_overwrite_is_atomic),
    SUITE_TEST(test_abort_leaves_nothing),
    SUITE_TEST(test_missing_object),
    SUITE_TEST(test_exists),
    SUITE_TEST(test_info),
    SUITE_TEST(test_list_prefix),
    SUITE_TEST(test_list_empty_storage),
    SUITE_TEST(test_list_many),
    SUITE_TEST(test_remove),
    SUITE_TEST(test_rename),
    SUITE_TEST(test_invalid_paths),
    SUITE_TEST(test_special_names),
    SUITE_TEST(test_sink_error),
    SUITE_TEST(test_concurrent_writers),
    SUITE_TEST(test_batch_put_get),
    SUITE_TEST(test_batch_streamed_write),
    SUITE_TEST(test_batch_streamed_write_spooled),
    SUITE_TEST(test_batch_streamed_write_too_big),
    SUITE_TEST(test_batch_errors),
    SUITE_TEST(test_batch_sink_error),
    SUITE_TEST(test_batch_free_running),
};

int storage_suite_run(const struct storage_suite_target *target, const struct CMUnitTest *extra,
                      size_t n_extra)
{
    size_t n_shared = sizeof(shared_tests) / sizeof(shared_tests[0]);
    struct CMUnitTest *all = xmalloc((n_shared + n_extra) * sizeof(*all));
    memcpy(all, shared_tests, sizeof(shared_tests));
    if (n_extra)
        memcpy(all + n_shared, extra, n_extra * sizeof(*all));
    current = target;
    int failures = _cmocka_run_group_tests(target->name, all, n_shared + n_extra, NULL, NULL);
    current = NULL;
    free(all);
    return failures;
}
