/* test_progress.c — the progress line: exact text, rate limit, silence when disabled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>

#include "pgark/progress.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

/* Output captured in memory; `seen` marks what earlier checks consumed. */
struct capture {
    FILE *f;
    char *data;
    size_t len;
    size_t seen;
};

static void capture_open(struct capture *c)
{
    memset(c, 0, sizeof(*c));
    c->f = open_memstream(&c->data, &c->len);
    assert_non_null(c->f);
}

/* What was written since the last call (progress flushes after each write). */
static char *capture_new(struct capture *c)
{
    fflush(c->f);
    char *s = strndup(c->data + c->seen, c->len - c->seen);
    c->seen = c->len;
    return s;
}

static void capture_close(struct capture *c)
{
    fclose(c->f);
    free(c->data);
}

#define EXPECT_OUTPUT(c, text)                                                                     \
    do {                                                                                           \
        char *got_ = capture_new(c);                                                               \
        assert_string_equal(got_, text);                                                           \
        free(got_);                                                                                \
    } while (0)

static struct progress *fake_progress(struct capture *c, const char *what, uint64_t total)
{
    fake_now = 1000000000;
    struct progress *p = progress_new(what, total, true);
    progress_set_stream(p, c->f);
    progress_set_clock(p, fake_clock);
    return p;
}

static void test_line_text_and_rate_limit(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    struct progress *p = fake_progress(&c, "backup", 3 * GiB);

    /* Nothing in the first quarter second. */
    fake_now += 100000;
    progress_update(p, 1 * MiB);
    EXPECT_OUTPUT(&c, "");

    /* 1200 MiB of 3072 MiB after 8 s: 39%, 150 MiB/s, 1872 MiB left = 12.48 s -> 13s. */
    fake_now += 8000000 - 100000;
    progress_update(p, 1200 * MiB);
    EXPECT_OUTPUT(&c, "\rbackup: 1.2 GiB of 3.0 GiB (39%), 150 MiB/s, ETA 13s");

    /* Updates within 250 ms of that draw are counted but not drawn. */
    fake_now += 249999;
    progress_add(p, 100 * MiB);
    EXPECT_OUTPUT(&c, "");
    assert_true(progress_get(p) == 1300 * MiB);

    /* 2700 MiB after 18 s: 150 MiB/s, 372 MiB left = 2.48 s -> 3s. The line is shorter
     * than the last one, so spaces blank the leftover characters. */
    fake_now = 1000000000 + 18000000;
    progress_update(p, 2700 * MiB);
    EXPECT_OUTPUT(&c, "\rbackup: 2.6 GiB of 3.0 GiB (87%), 150 MiB/s, ETA 3s ");

    /* Final line: total reached, elapsed and average rate, newline. */
    fake_now = 1000000000 + 20480000;
    progress_update(p, 3 * GiB);
    progress_done(p);
    char *out = capture_new(&c);
    /* 44 characters after 51: 7 blanks; then 33 after 44: 11 blanks. */
    assert_string_equal(out, "\rbackup: 3.0 GiB of 3.0 GiB (100%), 150 MiB/s       "
                             "\rbackup: 3.0 GiB in 20s, 150 MiB/s           \n");
    free(out);

    /* After done: silence, and done again is a no-op; free adds nothing. */
    fake_now += 10000000;
    progress_add(p, 5);
    progress_done(p);
    progress_free(p);
    EXPECT_OUTPUT(&c, "");
    capture_close(&c);
}

static void test_unknown_total_and_small_sizes(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    struct progress *p = fake_progress(&c, "wal", 0);
    fake_now += 2000000;
    progress_update(p, 1000);
    EXPECT_OUTPUT(&c, "\rwal: 1000 B, 500 B/s");
    fake_now += 125000000; /* 2m 7s after start */
    progress_update(p, 1000 + 1536 * 1024);
    EXPECT_OUTPUT(&c, "\rwal: 1.5 MiB, 12.1 KiB/s");
    progress_done(p);
    EXPECT_OUTPUT(&c, "\rwal: 1.5 MiB in 2m 7s, 12.1 KiB/s\n");
    progress_free(p);
    capture_close(&c);
}

static void test_done_short_of_total_and_fast_work(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    /* Nothing drawn during work under 250 ms; the final line still says what was done. */
    struct progress *p = fake_progress(&c, "restore", 10 * MiB);
    fake_now += 200000;
    progress_update(p, 4 * MiB);
    EXPECT_OUTPUT(&c, "");
    progress_done(p);
    EXPECT_OUTPUT(&c, "\rrestore: 4.0 MiB of 10.0 MiB (40%) in 200ms, 20.0 MiB/s\n");
    progress_free(p);

    /* Hours in the ETA; more than the total never shows more than 100%. */
    p = fake_progress(&c, "big", 1000 * GiB);
    fake_now += 10000000;
    progress_update(p, 1 * GiB);
    EXPECT_OUTPUT(&c, "\rbig: 1.0 GiB of 1000 GiB (0%), 102 MiB/s, ETA 2h 46m 30s");
    fake_now += 10000000;
    progress_update(p, 1001 * GiB);
    /* 44 characters after 56: 12 blanks. */
    EXPECT_OUTPUT(&c, "\rbig: 1001 GiB of 1000 GiB (100%), 50.0 GiB/s            ");
    progress_free(p);
    capture_close(&c);
}

static void test_disabled_writes_nothing(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    fake_now = 0;
    struct progress *p = progress_new("backup", 100, false);
    progress_set_stream(p, c.f);
    progress_set_clock(p, fake_clock);
    for (int i = 1; i <= 100; i++) {
        fake_now += 1000000;
        progress_add(p, 1);
    }
    assert_int_equal(progress_get(p), 100);
    progress_done(p);
    progress_free(p);
    EXPECT_OUTPUT(&c, "");
    capture_close(&c);

    /* NULL is accepted everywhere. */
    progress_update(NULL, 1);
    progress_add(NULL, 1);
    progress_done(NULL);
    progress_free(NULL);
    assert_int_equal(progress_get(NULL), 0);
}

static void test_free_without_done_ends_the_line(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    struct progress *p = fake_progress(&c, "backup", 0);
    fake_now += 1000000;
    progress_update(p, 2048);
    EXPECT_OUTPUT(&c, "\rbackup: 2.0 KiB, 2.0 KiB/s");
    progress_free(p); /* error path: the next message must start on its own line */
    EXPECT_OUTPUT(&c, "\n");
    capture_close(&c);
}

#define WORKERS 4
#define ADDS 50000

static void *worker(void *arg)
{
    struct progress *p = arg;
    for (int i = 0; i < ADDS; i++)
        progress_add(p, 3);
    return NULL;
}

/* A clock that moves 100 us each time anyone reads it, so the workers draw often. */
static int64_t ticking_clock(void)
{
    return __atomic_add_fetch(&fake_now, 100, __ATOMIC_RELAXED);
}

/* Several threads add and draw at once: no byte is lost and every drawn line is whole. */
static void test_threads(void **state)
{
    (void)state;
    struct capture c;
    capture_open(&c);
    struct progress *p = progress_new("copy", 3 * WORKERS * ADDS, true);
    progress_set_stream(p, c.f);
    fake_now = 0;
    progress_set_clock(p, ticking_clock);
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, p), 0);
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(progress_get(p), 3 * WORKERS * ADDS);
    progress_done(p);
    progress_free(p);
    char *out = capture_new(&c);
    /* Each draw starts with "\r<what>: ", the last one is the final line. */
    assert_true(out[0] == '\r');
    for (char *s = out; (s = strchr(s, '\r')) != NULL; s++)
        assert_memory_equal(s, "\rcopy: ", 7);
    size_t draws = 0;
    for (char *s = out; (s = strchr(s, '\r')) != NULL; s++)
        draws++;
    /* 200000 clock reads of 100 us = 20 s: about 80 draws, never more than 4 a second. */
    assert_in_range(draws, 10, 20 * 4 + 1);
    char *last = strrchr(out, '\r');
    assert_memory_equal(last, "\rcopy: 586 KiB in 20s, 29.3 KiB/s", 33);
    assert_int_equal(out[strlen(out) - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1); /* one newline, at the end */
    free(out);
    capture_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_text_and_rate_limit),
        cmocka_unit_test(test_unknown_total_and_small_sizes),
        cmocka_unit_test(test_done_short_of_total_and_fast_work),
        cmocka_unit_test(test_disabled_writes_nothing),
        cmocka_unit_test(test_free_without_done_ends_the_line),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
