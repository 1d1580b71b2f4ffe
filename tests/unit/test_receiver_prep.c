/*
 * test_receiver_prep.c — walreceiver/prep.c, the items prepared once for every shipper:
 * shared between takers, freed once every expected taker has it, trimmed when the
 * spool needs room, and never more slots in use than there are. And walreceiver/shipwin.c:
 * segments pushed at once move the cursor only in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../walreceiver/receiver_int.h"
#include "pgark/codec.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG (1024 * 1024)

static const struct repo_identity ident = {7312345678901234567ull, 15, SEG};

struct fx {
    char dir[64];
    int fd; /* a segment's worth of bytes */
    struct prep_cache *c;
};

static int setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgark-prep-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char path[96];
    snprintf(path, sizeof(path), "%s/seg", f->dir);
    f->fd = open(path, O_RDWR | O_CREAT, 0600);
    uint8_t *data = xcalloc(1, SEG);
    for (size_t i = 0; i < SEG; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 12));
    if (f->fd < 0 || write(f->fd, data, SEG) != SEG)
        return -1;
    free(data);
    unlink(path);
    struct repo_codecs codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                                 .level = 3};
    f->c = prep_cache_new(&ident, &codecs, f->dir, 2); /* two shippers: three slots */
    *state = f;
    return f->c ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    prep_cache_free(f->c);
    close(f->fd);
    rmdir(f->dir);
    free(f);
    err_clear();
    return 0;
}

static const char *seg(uint64_t segno)
{
    static char names[4][WAL_NAME_BUFLEN];
    static int next;
    return wal_segment_name(1, segno, SEG, names[next++ % 4]);
}

static struct repo_wal_prepared *take(struct fx *f, uint64_t segno, int wanted)
{
    struct repo_wal_prepared *p = NULL;
    assert_int_equal(prep_acquire(f->c, seg(segno), false, f->fd, SEG, wanted, &p), 0);
    assert_non_null(p);
    return p;
}

/* Open descriptors on unlinked scratch files: the prepared items still held. */
static int scratch_files(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[300], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strstr(target, "pgark-prep-") && strstr(target, "(deleted)") &&
                 !strstr(target, "/seg ");
        }
    }
    closedir(d);
    return n;
}

/* The second taker gets what the first prepared; it is freed when both have it. */
static void test_shared_then_freed(void **state)
{
    struct fx *f = *state;
    struct repo_wal_prepared *a = take(f, 5, 2);
    struct repo_wal_prepared *b = take(f, 5, 2);
    assert_ptr_equal(a, b);
    assert_int_equal(scratch_files(), 1);
    prep_release(f->c, a);
    assert_int_equal(scratch_files(), 1); /* one taker still pushing */
    prep_release(f->c, b);
    assert_int_equal(scratch_files(), 0);
    prep_release(f->c, NULL);
}

/* An item nobody else is expected to want goes as soon as its one taker is done; one
 * that is expected waits for its taker. */
static void test_freed_when_no_one_else_wants_it(void **state)
{
    struct fx *f = *state;
    prep_release(f->c, take(f, 6, 1));
    assert_int_equal(scratch_files(), 0);
    prep_release(f->c, take(f, 7, 2));
    assert_int_equal(scratch_files(), 1);
    prep_release(f->c, take(f, 7, 2));
    assert_int_equal(scratch_files(), 0);
}

/* Items waiting for a taker that does not come are dropped when the spool needs room,
 * but not while someone pushes from them. */
static void test_trim(void **state)
{
    struct fx *f = *state;
    prep_release(f->c, take(f, 8, 2));
    struct repo_wal_prepared *busy = take(f, 9, 2);
    assert_int_equal(scratch_files(), 2);
    assert_int_equal(prep_cache_trim(f->c), 1);
    assert_int_equal(scratch_files(), 1);
    prep_release(f->c, busy);
    assert_int_equal(prep_cache_trim(f->c), 1);
    assert_int_equal(scratch_files(), 0);
}

/* Waiting items give their slots up to new ones; with every slot in use, the caller
 * is told to push the ordinary way. */
static void test_slots(void **state)
{
    struct fx *f = *state;
    struct repo_wal_prepared *held[3], *p = NULL;
    for (int i = 0; i < 3; i++)
        prep_release(f->c, take(f, 10 + (uint64_t)i, 2)); /* all three wait for a taker */
    assert_int_equal(scratch_files(), 3);
    for (int i = 0; i < 3; i++)
        held[i] = take(f, 20 + (uint64_t)i, 2); /* evicting the waiting ones */
    assert_int_equal(scratch_files(), 3);
    assert_int_equal(prep_acquire(f->c, seg(30), false, f->fd, SEG, 2, &p), 0);
    assert_null(p);
    for (int i = 0; i < 3; i++)
        prep_release(f->c, held[i]);
    assert_int_equal(prep_cache_trim(f->c), 3);
}

/* A failed preparation is the caller's error; the slot is free again. */
static void test_failure(void **state)
{
    struct fx *f = *state;
    struct repo_wal_prepared *p = NULL;
    assert_int_equal(prep_acquire(f->c, seg(40), false, f->fd, SEG - 1, 2, &p), -ERR_IO);
    assert_null(p);
    err_clear();
    prep_release(f->c, take(f, 40, 1));
    assert_int_equal(scratch_files(), 0);
}

/* A later segment that ends first does not move the cursor; once the earlier ones end,
 * it moves over all of them at once. */
static void test_window_later_first(void **state)
{
    (void)state;
    struct ship_window w;
    ship_window_start(&w, 4);
    assert_int_equal(ship_window_take(&w), 0);
    ship_window_end(&w, 2, true);
    ship_window_end(&w, 1, true);
    assert_int_equal(ship_window_take(&w), 0); /* 0 still running */
    ship_window_end(&w, 0, true);
    assert_int_equal(ship_window_take(&w), 3);
    assert_int_equal(ship_window_take(&w), 0); /* each counted once */
    ship_window_end(&w, 3, true);
    assert_int_equal(ship_window_take(&w), 1);
    assert_int_equal(w.settled, 4);
}

/* A segment in the middle that fails holds the cursor before it for good, whatever
 * ends after it. */
static void test_window_middle_fails(void **state)
{
    (void)state;
    struct ship_window w;
    ship_window_start(&w, 5);
    ship_window_end(&w, 3, true);
    ship_window_end(&w, 2, false);
    ship_window_end(&w, 0, true);
    assert_int_equal(ship_window_take(&w), 1);
    ship_window_end(&w, 4, true);
    ship_window_end(&w, 1, true);
    assert_int_equal(ship_window_take(&w), 1);
    assert_int_equal(ship_window_take(&w), 0);
    assert_int_equal(w.settled, 2); /* 2 and everything after it stay pending */
}

/* A window never takes more slots than the queue holds. */
static void test_window_bounds(void **state)
{
    (void)state;
    struct ship_window w;
    ship_window_start(&w, SHIP_QUEUE_MAX + 5);
    assert_int_equal(w.n, SHIP_QUEUE_MAX);
    ship_window_end(&w, SHIP_QUEUE_MAX, true); /* out of range: ignored */
    for (int i = 0; i < SHIP_QUEUE_MAX; i++)
        ship_window_end(&w, i, true);
    assert_int_equal(ship_window_take(&w), SHIP_QUEUE_MAX);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_then_freed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_when_no_one_else_wants_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure, setup, teardown),
        cmocka_unit_test(test_window_later_first),
        cmocka_unit_test(test_window_middle_fails),
        cmocka_unit_test(test_window_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
