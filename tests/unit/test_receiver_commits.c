/*
 * test_receiver_commits.c — walreceiver/commits.c, the commit times behind each
 * repository's RPO: the newest commit at or before a position is found exactly while the
 * marks are few, never newer than the truth once they are thinned, and "not known"
 * wherever a commit could have been missed (before the decoding began, after it stopped).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../walreceiver/receiver_int.h"
#include "pgark/mem.h"

#include <stdlib.h>

#define SEG (16 * 1024 * 1024)

static struct commit_marks *fresh(void)
{
    return xcalloc(1, sizeof(struct commit_marks));
}

static void test_find_exact(void **state)
{
    (void)state;
    struct commit_marks *c = fresh();
    struct commit_mark m;
    assert_int_equal(commit_marks_find(c, SEG, &m), -1); /* nothing decoded yet */
    commit_marks_restart(c, SEG);
    commit_marks_decoded(c, SEG);
    assert_int_equal(commit_marks_find(c, SEG, &m), 0);
    /* Commits 20 ms apart: each its own mark. */
    for (int i = 1; i <= 5; i++) {
        commit_marks_add(c, SEG + (lsn_t)i * 100, (int64_t)i * 20000, 0);
        commit_marks_decoded(c, SEG + (lsn_t)i * 100 + 40);
    }
    assert_int_equal(commit_marks_find(c, SEG + 99, &m), 0);
    assert_int_equal(commit_marks_find(c, SEG + 100, &m), 1);
    assert_true(m.end == SEG + 100 && m.time_us == 20000);
    assert_int_equal(commit_marks_find(c, SEG + 399, &m), 1);
    assert_true(m.end == SEG + 300 && m.time_us == 60000);
    assert_int_equal(commit_marks_find(c, SEG + 540, &m), 1);
    assert_true(m.end == SEG + 500 && m.time_us == 100000);
    /* Past what was decoded: a commit there would not be known. */
    assert_int_equal(commit_marks_find(c, SEG + 541, &m), -1);
    assert_int_equal(commit_marks_find(c, SEG - 1, &m), -1);
    free(c);
}

/* Concurrent commits take their times out of LSN order: a mark says the newest commit up
 * to it. Commits within one step share a mark, which always ends at the newest one. */
static void test_monotonic_and_steps(void **state)
{
    (void)state;
    struct commit_marks *c = fresh();
    struct commit_mark m;
    commit_marks_restart(c, 0x1000000);
    commit_marks_add(c, 0x1000100, 500000, 0);
    commit_marks_add(c, 0x1000200, 400000, 0); /* took its time before the one above */
    commit_marks_decoded(c, 0x1000300);
    assert_int_equal(commit_marks_find(c, 0x1000200, &m), 1);
    assert_true(m.time_us == 500000);
    /* A burst within 10 ms: its first commit is a mark, and one more mark follows the
     * rest along to the newest. */
    commit_marks_add(c, 0x1000300, 600000, 0);
    for (int i = 1; i <= 50; i++)
        commit_marks_add(c, 0x1000300 + (lsn_t)i * 8, 600000 + i * 100, 0);
    commit_marks_decoded(c, 0x1000300 + 50 * 8);
    assert_int_equal(c->n, 4);
    assert_int_equal(commit_marks_find(c, 0x1000300 + 50 * 8, &m), 1);
    assert_true(m.time_us == 605000 && m.end == 0x1000300 + 50 * 8);
    /* In between, an older mark: never a newer time than the truth. */
    assert_int_equal(commit_marks_find(c, 0x1000300 + 25 * 8, &m), 1);
    assert_true(m.time_us <= 602500);
    /* The same commit seen again (a stream that starts over) is not a new mark. */
    commit_marks_add(c, 0x1000300, 600000, 0);
    assert_int_equal(c->n, 4);
    free(c);
}

/* A new stream inside what was decoded continues it (the marks after its start are
 * dropped and come again); one past it, or before what is known, starts afresh. A
 * decoder that failed leaves nothing known past where it got. */
static void test_restart_and_gap(void **state)
{
    (void)state;
    struct commit_marks *c = fresh();
    struct commit_mark m;
    commit_marks_restart(c, SEG);
    for (int i = 1; i <= 4; i++)
        commit_marks_add(c, SEG + (lsn_t)i * 0x100000, (int64_t)i * 1000000, 0);
    commit_marks_decoded(c, SEG + 0x480000);

    commit_marks_restart(c, SEG + 0x280000); /* a server that lost its last bytes */
    assert_int_equal(c->n, 2);
    assert_int_equal(commit_marks_find(c, SEG + 0x280000, &m), 1);
    assert_true(m.time_us == 2000000);
    assert_int_equal(commit_marks_find(c, SEG + 0x280001, &m), -1);
    commit_marks_add(c, SEG + 0x300000, 9000000, 0);
    commit_marks_decoded(c, SEG + 0x300000);
    assert_int_equal(commit_marks_find(c, SEG + 0x300000, &m), 1);
    assert_true(m.time_us == 9000000);

    commit_marks_gap(c);
    commit_marks_decoded(c, SEG + 0x400000); /* not after a gap */
    commit_marks_add(c, SEG + 0x380000, 9500000, 0);
    assert_int_equal(commit_marks_find(c, SEG + 0x300001, &m), -1);
    assert_int_equal(commit_marks_find(c, SEG + 0x300000, &m), 1);

    commit_marks_restart(c, 2 * SEG); /* past what was decoded: afresh */
    assert_int_equal(c->n, 0);
    assert_int_equal(commit_marks_find(c, SEG + 0x300000, &m), -1);
    commit_marks_decoded(c, 2 * SEG + 10);
    assert_int_equal(commit_marks_find(c, 2 * SEG + 10, &m), 0);
    free(c);
}

/* Far more commits than marks: the array stays bounded, marks nobody can ask about
 * (before keep_from) go first, the newest commit is exact, and no lookup answers a
 * newer commit than the truth, nor one a lot older near the stream's end. */
static void test_bounded(void **state)
{
    (void)state;
    struct commit_marks *c = fresh();
    struct commit_mark m;
    const int n = 200000;
    commit_marks_restart(c, SEG);
    for (int i = 1; i <= n; i++) {
        lsn_t end = SEG + (lsn_t)i * 64;
        lsn_t keep = i > 100000 ? SEG + 100000 * 64 : 0;
        commit_marks_add(c, end, (int64_t)i * 11000, keep); /* 11 ms apart: one mark each */
        commit_marks_decoded(c, end);
        assert_true(c->n <= COMMIT_MARKS_MAX);
    }
    assert_int_equal(commit_marks_find(c, SEG + (lsn_t)n * 64, &m), 1);
    assert_true(m.time_us == (int64_t)n * 11000);
    for (int i = 100000; i <= n; i += 997) {
        assert_int_equal(commit_marks_find(c, SEG + (lsn_t)i * 64 + 3, &m), 1);
        assert_true(m.time_us <= (int64_t)i * 11000);
    }
    /* The last thousand commits are all still marks of their own. */
    for (int i = n - 1000; i <= n; i++) {
        assert_int_equal(commit_marks_find(c, SEG + (lsn_t)i * 64, &m), 1);
        assert_true(m.time_us == (int64_t)i * 11000);
    }
    /* Below what the slowest repository holds: let go, so not known. */
    assert_int_equal(commit_marks_find(c, SEG + 1000 * 64, &m), -1);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_exact),
        cmocka_unit_test(test_monotonic_and_steps),
        cmocka_unit_test(test_restart_and_gap),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
