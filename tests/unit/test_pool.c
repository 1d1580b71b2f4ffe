/* test_pool.c — the common worker pool: every job runs once, the first failure (message,
 * context and hint) reaches the caller's thread, later jobs are cancelled, per-thread
 * state is made and released once per worker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct count {
    atomic_int ran, canceled, inits, finis;
    atomic_long sum;
    long fail_at; /* -1: never */
};

static void *count_init(void *arg)
{
    struct count *c = arg;
    atomic_fetch_add(&c->inits, 1);
    return xstrdup("local");
}

static void count_fini(void *arg, void *local)
{
    struct count *c = arg;
    assert_string_equal(local, "local");
    free(local);
    atomic_fetch_add(&c->finis, 1);
}

static int count_run(void *arg, void *local, void *job, bool canceled)
{
    struct count *c = arg;
    long v = (long)(intptr_t)job;
    assert_string_equal(local, "local");
    if (canceled) {
        atomic_fetch_add(&c->canceled, 1);
        return 0;
    }
    atomic_fetch_add(&c->ran, 1);
    atomic_fetch_add(&c->sum, v);
    if (v == c->fail_at) {
        err_set(ERR_INTEGRITY, "job %ld failed", v);
        err_context("while testing");
        return err_hint("a hint from the worker");
    }
    return 0;
}

static const struct pool_ops count_ops = {
    .what = "test",
    .run = count_run,
    .thread_init = count_init,
    .thread_fini = count_fini,
};

static void test_all_jobs_run(void **state)
{
    (void)state;
    struct count c = {.fail_at = -1};
    struct pool *p = pool_new(&count_ops, &c, 3, 2);
    assert_non_null(p);
    assert_int_equal(pool_threads(p), 3);
    long want = 0;
    for (long i = 1; i <= 5000; i++) {
        assert_int_equal(pool_submit(p, (void *)(intptr_t)i), 0);
        want += i;
    }
    assert_int_equal(pool_wait(p), 0);
    assert_int_equal(atomic_load(&c.ran), 5000);
    assert_int_equal(atomic_load(&c.sum), want);
    assert_false(pool_canceled(p));
    assert_int_equal(pool_raise(p), 0);
    pool_free(p);
    assert_int_equal(atomic_load(&c.inits), 3);
    assert_int_equal(atomic_load(&c.finis), 3);
    assert_int_equal(atomic_load(&c.canceled), 0);
}

/* pool_run_each: every job of the array runs once, on the workers or, with no pool, on
 * the calling thread, and all have run when it returns. */
struct each_slot {
    atomic_int runs;
    pthread_t thread;
};

static int each_run(void *arg, void *local, void *job, bool canceled)
{
    (void)arg;
    (void)local;
    assert_false(canceled);
    struct each_slot *slot = job;
    slot->thread = pthread_self();
    atomic_fetch_add(&slot->runs, 1);
    return 0;
}

static void test_run_each(void **state)
{
    (void)state;
    static const struct pool_ops ops = {.what = "each", .run = each_run};
    enum { N = 100 };
    struct each_slot *slots = xcalloc(N, sizeof(*slots));
    struct pool *p = pool_new(&ops, NULL, 4, 8);
    assert_non_null(p);
    pool_run_each(p, &ops, NULL, slots, sizeof(*slots), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&slots[i].runs), 1);
        assert_false(pthread_equal(slots[i].thread, pthread_self()));
    }
    pool_free(p);
    memset(slots, 0, N * sizeof(*slots));
    pool_run_each(NULL, &ops, NULL, slots, sizeof(*slots), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&slots[i].runs), 1);
        assert_true(pthread_equal(slots[i].thread, pthread_self()));
    }
    assert_false(err_is_set());
    free(slots);
}

static void test_first_failure_reaches_caller(void **state)
{
    (void)state;
    struct count c = {.fail_at = 7};
    struct pool *p = pool_new(&count_ops, &c, 2, 4);
    int rc = 0;
    long submitted = 0;
    for (long i = 1; i <= 100000 && rc == 0; i++) {
        rc = pool_submit(p, (void *)(intptr_t)i);
        if (rc == 0)
            submitted++;
    }
    if (rc == 0)
        rc = pool_wait(p);
    assert_int_equal(rc, -ERR_INTEGRITY);
    assert_true(pool_canceled(p));
    char *text = err_format();
    assert_string_equal(text, "job 7 failed\n  while testing");
    free(text);
    assert_string_equal(err_hint_text(), "a hint from the worker");
    err_clear();
    /* raised again, as often as asked */
    assert_int_equal(pool_wait(p), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "job 7 failed");
    err_clear();
    assert_int_equal(pool_submit(p, (void *)(intptr_t)1), -ERR_INTEGRITY);
    err_clear();
    pool_free(p);
    /* every job queued ran once, or was handed back cancelled */
    assert_int_equal(atomic_load(&c.ran) + atomic_load(&c.canceled), submitted);
    assert_true(submitted < 100000);
}

static void test_caller_cancels(void **state)
{
    (void)state;
    struct count c = {.fail_at = -1};
    struct pool *p = pool_new(&count_ops, &c, 1, 8);
    err_set(ERR_IO, "the producer failed");
    pool_fail(p);
    assert_false(err_is_set()); /* moved into the pool */
    assert_int_equal(pool_submit(p, (void *)(intptr_t)1), -ERR_IO);
    assert_string_equal(err_message(), "the producer failed");
    err_clear();
    /* a later failure does not replace the first */
    err_set(ERR_AUTH, "second");
    pool_fail(p);
    assert_int_equal(pool_raise(p), -ERR_IO);
    err_clear();
    pool_free(p);
    pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_jobs_run),
        cmocka_unit_test(test_run_each),
        cmocka_unit_test(test_first_failure_reaches_caller),
        cmocka_unit_test(test_caller_cancels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
