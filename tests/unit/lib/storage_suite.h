/*
 * storage_suite.h — the shared test suite every storage driver must pass.
 *
 * A driver's test binary describes how to get a fresh, empty storage (a "target")
 * and hands it to storage_suite_run, with its own driver-only tests if any; the
 * suite runs everything as ONE cmocka group (one TAP plan per binary):
 *
 *     static struct storage *make(void *ctx) { ... return storage_posix_new(...); }
 *     static void drop(struct storage *s, void *ctx) { storage_free(s); rm -rf ... }
 *     static const struct storage_suite_target target = {"posix", make, drop, NULL};
 *     static const struct CMUnitTest extra[] = {
 *         cmocka_unit_test_setup_teardown(test_x, storage_suite_setup,
 *                                         storage_suite_teardown),
 *     };
 *     int main(void) { return storage_suite_run(&target, extra, 1); }
 *
 * Every shared test runs against its own fresh storage: create() before, destroy()
 * after. The tests only use the generic API of storage.h and assert what a user
 * would see: bytes equal after a round trip, error kinds, and that error messages
 * name the object path and carry the "in repository" context.
 */
#ifndef PGARK_TEST_STORAGE_SUITE_H
#define PGARK_TEST_STORAGE_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/storage.h"

struct storage_suite_target {
    const char *name; /* the group name in the TAP output: "posix", "s3" */
    /* A fresh, empty storage for one test, or NULL with the error set. */
    struct storage *(*create)(void *ctx);
    /* Free s (may be NULL) and remove whatever create made. */
    void (*destroy)(struct storage *s, void *ctx);
    void *ctx;
    /* How many objects the listing test writes under one prefix; 0: 2500, three pages
     * of S3's 1000. A server that pages by fewer keys proves the same with fewer. */
    int list_many;
};

/* Run the shared tests followed by extra[0..n_extra) as one group; returns the
 * number of failures (cmocka's result), suitable as main's exit code. */
int storage_suite_run(const struct storage_suite_target *target, const struct CMUnitTest *extra,
                      size_t n_extra);

/* Fixture for a driver's extra tests: a fresh storage from the running target. */
int storage_suite_setup(void **state);
int storage_suite_teardown(void **state);
/* The storage of the current test (state as passed to the test function). */
struct storage *storage_suite_storage(void **state);
/* The target being run (its ctx, for driver-specific checks). */
const struct storage_suite_target *storage_suite_target(void);

/* Helpers, failing the current test on any error. */
void storage_suite_put(struct storage *s, const char *path, const void *data, size_t len);
/* Whole object as a NUL-terminated string; caller frees. */
char *storage_suite_get(struct storage *s, const char *path, size_t *len);
/* Assert rc is -kind and that the full error text (message and context) contains
 * want (if not NULL); clears the error. Reports the caller's line on failure. */
#define assert_storage_error(rc, kind, want)                                                       \
    storage_suite_assert_error((rc), (kind), (want), __FILE__, __LINE__)
void storage_suite_assert_error(int rc, int kind, const char *want, const char *file, int line);

#endif
