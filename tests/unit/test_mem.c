/* test_mem.c — per-thread objects (thread_slot); refbuf is tested with its user, test_backup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counter {
    int value;
};

static atomic_int destroyed;

static void counter_destroy(void *obj)
{
    atomic_fetch_add(&destroyed, 1);
    free(obj);
}

static struct thread_slot slot = THREAD_SLOT_INIT(sizeof(struct counter), counter_destroy);

/* A thread's object is made zeroed, the same one on every call. */
static void *use_slot(void *arg)
{
    struct counter *c = thread_slot_get(&slot);
    assert_int_equal(c->value, 0);
    c->value = (int)(intptr_t)arg;
    assert_ptr_equal(thread_slot_get(&slot), c);
    assert_int_equal(((struct counter *)thread_slot_get(&slot))->value, (int)(intptr_t)arg);
    return NULL;
}

static void test_thread_slot(void **state)
{
    (void)state;
    pthread_t t[4];
    atomic_store(&destroyed, 0);
    for (intptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, use_slot, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    /* one object per thread, each destroyed when its thread ended */
    assert_int_equal(atomic_load(&destroyed), 4);
    /* the main thread gets its own, untouched by the others */
    struct counter *mine = thread_slot_get(&slot);
    assert_int_equal(mine->value, 0);
}

/* A file read whole, across several reads, after what the buffer already held; a
 * stream already at its end adds nothing. */
static void test_buf_append_file(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    unsigned char want[10000];
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(fwrite(want, 1, sizeof(want), f), sizeof(want));
    rewind(f);
    struct buf b = BUF_INIT;
    buf_append(&b, "head", 4);
    buf_append_file(&b, f);
    assert_int_equal(b.len, 4 + sizeof(want));
    assert_memory_equal(b.data, "head", 4);
    assert_memory_equal((unsigned char *)b.data + 4, want, sizeof(want));
    buf_append_file(&b, f);
    assert_int_equal(b.len, 4 + sizeof(want));
    fclose(f);
    buf_free(&b);
}

/* A buffer that only had room reserved holds the empty string (s3_xml_unescape of an
 * empty element handed back such a buffer unterminated). */
static void test_buf_reserve_terminated(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_reserve(&b, 10);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.data[0], '\0');
    char *s = buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
    buf_reserve(&b, 100000); /* and after growing */
    buf_append(&b, "abc", 3);
    buf_reserve(&b, 1u << 20);
    assert_string_equal((char *)b.data, "abc");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_slot),
        cmocka_unit_test(test_buf_reserve_terminated),
        cmocka_unit_test(test_buf_append_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
