/* test_filter.c — filter chains, filter_run, the size observer and the hold-back stage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/error.h"
#include "pgark/filter.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

/* --- helpers ----------------------------------------------------------------------- */

struct sink {
    struct buf out;
    size_t calls;
    int fail_after; /* fail on this call (1-based); 0 never */
};

static int sink_fn(void *ctx, const uint8_t *data, size_t len)
{
    struct sink *s = ctx;
    s->calls++;
    if (s->fail_after && (int)s->calls == s->fail_after)
        return err_set(ERR_IO, "could not write to \"sink\": disk on fire");
    buf_append(&s->out, data, len);
    return 0;
}

static uint8_t *pattern(size_t len)
{
    uint8_t *p = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + (i >> 8));
    return p;
}

/*
 * A test transformer writing each input byte twice, with a held-back byte when the
 * output has room for only one: exercises full output buffers between stages.
 */
struct dup_filter {
    struct filter base;
    bool pending;
    uint8_t held;
};

static int dup_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                       uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct dup_filter *d = (struct dup_filter *)f;
    size_t used = 0, n = 0;

    if (d->pending && n < out_cap) {
        out[n++] = d->held;
        d->pending = false;
    }
    while (!d->pending && used < in_len && n < out_cap) {
        out[n++] = in[used];
        d->held = in[used++];
        d->pending = true;
        if (n < out_cap) {
            out[n++] = d->held;
            d->pending = false;
        }
    }
    *in_used = used;
    *out_len = n;
    *done = finish && used == in_len && !d->pending;
    return 0;
}

static void dup_free(struct filter *f)
{
    free(f);
}

static int dup_reset(struct filter *f)
{
    struct dup_filter *d = (struct dup_filter *)f;
    d->pending = false;
    return 0;
}

static const struct filter_ops dup_ops = {FILTER_OPS_VERSION, "dup", dup_process, dup_free,
                                          dup_reset};

static struct filter *dup_new(void)
{
    struct dup_filter *d = xcalloc(1, sizeof(*d));
    d->base.ops = &dup_ops;
    return &d->base;
}

/* A broken filter that never consumes anything. */
static int stuck_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                         uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    (void)f, (void)in, (void)in_len, (void)out, (void)out_cap, (void)finish;
    *in_used = *out_len = 0;
    *done = false;
    return 0;
}

static const struct filter_ops stuck_ops = {FILTER_OPS_VERSION, "stuck", stuck_process, dup_free,
                                            NULL};

static struct filter *stuck_new(void)
{
    struct filter *f = xcalloc(1, sizeof(struct dup_filter));
    f->ops = &stuck_ops;
    return f;
}

/* Write data into c in pieces of step bytes (0: all at once), then finish. */
static int feed(struct filter_chain *c, const uint8_t *data, size_t len, size_t step)
{
    int rc = 0;
    if (!step)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = filter_chain_write(c, data + off, len - off < step ? len - off : step);
    return rc ? rc : filter_chain_finish(c);
}

/* --- tests ------------------------------------------------------------------------- */

static const size_t sizes[] = {0, 1, 4095, 1024 * 1024 + 1};

static void test_size_observer_passes_bytes_unchanged(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t bufs[] = {0, 1, 7};
        for (size_t b = 0; b < 3; b++) {
            size_t step = bufs[b] == 1 && sizes[i] > 5000 ? 4093 : bufs[b];
            uint8_t *data = pattern(sizes[i]);
            struct sink s = {BUF_INIT, 0, 0};
            struct filter_chain *c = filter_chain_new(bufs[b], sink_fn, &s);
            struct filter *a = filter_chain_add(c, filter_size_new());
            struct filter *z = filter_chain_add(c, filter_size_new());

            assert_int_equal(feed(c, data, sizes[i], step), 0);
            assert_int_equal(filter_size_result(a), sizes[i]);
            assert_int_equal(filter_size_result(z), sizes[i]);
            assert_int_equal(s.out.len, sizes[i]);
            if (sizes[i])
                assert_memory_equal(s.out.data, data, sizes[i]);
            filter_chain_free(c);
            buf_free(&s.out);
            free(data);
        }
    }
}

/* An empty object is a finish with no bytes at all (in is NULL): the chain and filter_run
 * must not do arithmetic on that NULL, not even + 0 (undefined behaviour, which clang's
 * UBSan in the sanitizer build stops at). */
static void test_empty_input_from_null(void **state)
{
    (void)state;
    struct sink s = {BUF_INIT, 0, 0};
    struct filter_chain *c = filter_chain_new(1, sink_fn, &s);
    filter_chain_add(c, dup_new());
    filter_chain_add(c, filter_size_new());
    filter_chain_add(c, dup_new());
    assert_int_equal(filter_chain_write(c, NULL, 0), 0);
    assert_int_equal(filter_chain_finish(c), 0);
    assert_int_equal(s.out.len, 0);
    filter_chain_free(c);
    buf_free(&s.out);

    struct filter *f = dup_new();
    uint8_t *out = NULL;
    size_t out_len = 1;
    assert_int_equal(filter_run(f, NULL, 0, &out, &out_len), 0);
    assert_non_null(out);
    assert_int_equal(out_len, 0);
    free(out);
    filter_free(f);
}

static void test_empty_chain_is_a_pipe(void **state)
{
    (void)state;
    struct sink s = {BUF_INIT, 0, 0};
    struct filter_chain *c = filter_chain_new(1, sink_fn, &s);
    assert_int_equal(feed(c, (const uint8_t *)"hello", 5, 2), 0);
    assert_int_equal(s.out.len, 5);
    assert_memory_equal(s.out.data, "hello", 5);
    filter_chain_free(c);
    buf_free(&s.out);
}

static void test_transformers_with_one_byte_buffers(void **state)
{
    (void)state;
    size_t bufs[] = {1, 2, 3, 0};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t b = 0; b < 4; b++) {
            uint8_t *data = pattern(sizes[i]);
            struct sink s = {BUF_INIT, 0, 0};
            struct filter_chain *c = filter_chain_new(bufs[b], sink_fn, &s);
            filter_chain_add(c, dup_new());
            struct filter *mid = filter_chain_add(c, filter_size_new());
            filter_chain_add(c, dup_new());
            struct filter *end = filter_chain_add(c, filter_size_new());

            assert_int_equal(feed(c, data, sizes[i], sizes[i] > 5000 ? 0 : 1), 0);
            assert_int_equal(filter_size_result(mid), 2 * sizes[i]);
            assert_int_equal(filter_size_result(end), 4 * sizes[i]);
            assert_int_equal(s.out.len, 4 * sizes[i]);
            for (size_t k = 0; k < sizes[i]; k++)
                for (size_t r = 0; r < 4; r++)
                    if (s.out.data[4 * k + r] != data[k])
                        fail_msg("byte %zu copy %zu differs (size %zu, buf %zu)", k, r, sizes[i],
                                 bufs[b]);
            filter_chain_free(c);
            buf_free(&s.out);
            free(data);
        }
    }
}

static void test_sink_error_stops_the_chain(void **state)
{
    (void)state;
    uint8_t *data = pattern(100);
    struct sink s = {BUF_INIT, 0, 3};
    struct filter_chain *c = filter_chain_new(10, sink_fn, &s);
    filter_chain_add(c, dup_new());

    assert_int_equal(filter_chain_write(c, data, 100), -ERR_IO);
    assert_string_equal(err_message(), "could not write to \"sink\": disk on fire");
    assert_int_equal(s.out.len, 20); /* two calls of 10 bytes went through */
    assert_int_equal(filter_chain_write(c, data, 1), -ERR_RUNTIME);
    assert_string_equal(err_message(), "filter chain used after it failed");
    assert_int_equal(filter_chain_finish(c), -ERR_RUNTIME);
    err_clear();
    filter_chain_free(c);
    buf_free(&s.out);
    free(data);
}

static void test_chain_rules(void **state)
{
    (void)state;
    struct sink s = {BUF_INIT, 0, 0};
    struct filter_chain *c = filter_chain_new(0, sink_fn, &s);
    assert_int_equal(filter_chain_write(c, "ab", 2), 0);
    /* Adding once bytes flowed is refused and the filter is freed (leak checkers see it). */
    assert_null(filter_chain_add(c, filter_size_new()));
    assert_string_equal(err_message(), "filter \"size\" added to a chain that is already running");
    assert_int_equal(filter_chain_finish(c), 0);
    assert_int_equal(filter_chain_finish(c), -ERR_RUNTIME);
    assert_string_equal(err_message(), "filter chain used after it finished");
    assert_int_equal(s.out.len, 2);
    err_clear();
    filter_chain_free(c);
    filter_chain_free(NULL);
    filter_free(NULL);
    buf_free(&s.out);
}

static void test_stuck_filter_is_reported(void **state)
{
    (void)state;
    struct sink s = {BUF_INIT, 0, 0};
    struct filter_chain *c = filter_chain_new(0, sink_fn, &s);
    filter_chain_add(c, stuck_new());
    assert_int_equal(filter_chain_write(c, "x", 1), -ERR_RUNTIME);
    assert_string_equal(err_message(), "filter \"stuck\" made no progress");
    err_clear();
    filter_chain_free(c);

    uint8_t *out = NULL;
    size_t out_len = 0;
    struct filter *f = stuck_new();
    assert_int_equal(filter_run(f, "x", 1, &out, &out_len), -ERR_RUNTIME);
    assert_null(out);
    err_clear();
    filter_free(f);
}

static void test_filter_run(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *data = pattern(sizes[i]), *out = NULL;
        size_t out_len = 99;
        struct filter *f = dup_new();
        assert_int_equal(filter_run(f, data, sizes[i], &out, &out_len), 0);
        assert_non_null(out);
        assert_int_equal(out_len, 2 * sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_true(out[2 * k] == data[k] && out[2 * k + 1] == data[k]);
        free(out);
        filter_free(f);

        f = filter_size_new();
        assert_int_equal(filter_run(f, data, sizes[i], &out, &out_len), 0);
        assert_int_equal(out_len, sizes[i]);
        assert_int_equal(filter_size_result(f), sizes[i]);
        if (sizes[i])
            assert_memory_equal(out, data, sizes[i]);
        free(out);
        filter_free(f);
        free(data);
    }
}

/* One chain, many streams: a reset chain gives what a new one would, also after a
 * stream left a byte held back or failed in its sink. */
static void test_chain_reset(void **state)
{
    (void)state;
    uint8_t *data = pattern(1000);
    struct sink s = {BUF_INIT, 0, 2};
    struct filter_chain *c = filter_chain_new(3, sink_fn, &s);
    filter_chain_add(c, dup_new());
    struct filter *size = filter_chain_add(c, filter_size_new());

    assert_int_equal(filter_chain_write(c, data, 1000), -ERR_IO); /* the sink fails */
    err_clear();
    for (int round = 0; round < 3; round++) {
        assert_int_equal(filter_chain_reset(c), 0);
        buf_free(&s.out);
        s.fail_after = 0;
        /* 1-byte writes into 3-byte buffers leave the dup filter holding a byte. */
        assert_int_equal(filter_chain_write(c, data, 1), 0);
        if (round == 1)
            continue; /* abandoned mid-stream: the next reset must drop the held byte */
        assert_int_equal(feed(c, data + 1, 999 - (size_t)round, 1), 0);
        size_t n = 1000 - (size_t)round;
        assert_int_equal(filter_size_result(size), 2 * n);
        assert_int_equal(s.out.len, 2 * n);
        for (size_t k = 0; k < n; k++)
            assert_true(s.out.data[2 * k] == data[k] && s.out.data[2 * k + 1] == data[k]);
    }
    filter_chain_free(c);
    buf_free(&s.out);

    /* A filter that cannot be reset leaves the chain unusable, and says which. */
    c = filter_chain_new(0, sink_fn, &s);
    filter_chain_add(c, stuck_new());
    assert_int_equal(filter_chain_reset(c), -ERR_RUNTIME);
    assert_string_equal(err_message(), "filter \"stuck\" cannot be reset");
    assert_int_equal(filter_chain_write(c, "x", 1), -ERR_RUNTIME);
    assert_string_equal(err_message(), "filter chain used after it failed");
    err_clear();
    filter_chain_free(c);
    buf_free(&s.out);
    free(data);
}

/* The hold-back stage passes on all but the last n bytes, in any pieces, behind a
 * transformer and in front of an observer (an object's read chain: ... -> hold-back ->
 * sha256), through filter_run too, and again after a reset. */
static void test_holdback(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 31, 32, 33, 100, 70000};
    static const size_t steps[] = {1, 3, 32, 33, 0};
    uint8_t *data = pattern(70000);
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t len = lens[li], kept = len < 32 ? len : 32;
        for (size_t si = 0; si < sizeof(steps) / sizeof(steps[0]); si++) {
            struct sink s = {BUF_INIT, 0, 0};
            struct filter_chain *c = filter_chain_new(si == 0 ? 1 : 0, sink_fn, &s);
            filter_chain_add(c, dup_new());
            struct filter *h = filter_chain_add(c, filter_holdback_new(32));
            struct filter *size = filter_chain_add(c, filter_size_new());
            for (int round = 0; round < 2; round++) {
                buf_free(&s.out);
                assert_int_equal(feed(c, data, len, steps[si]), 0);
                /* the dup filter made 2 * len bytes: all but the last 32 reached the sink */
                size_t out = 2 * len > 32 ? 2 * len - 32 : 0;
                size_t tail_len;
                const uint8_t *tail = filter_holdback_result(h, &tail_len);
                assert_int_equal(tail_len, 2 * len < 32 ? 2 * len : 32);
                assert_int_equal(s.out.len, out);
                assert_int_equal(filter_size_result(size), out);
                for (size_t k = 0; k < out + tail_len; k++) {
                    uint8_t got = k < out ? s.out.data[k] : tail[k - out];
                    assert_int_equal(got, data[k / 2]);
                }
                assert_int_equal(filter_chain_reset(c), 0);
            }
            filter_chain_free(c);
            buf_free(&s.out);
        }
        /* outside a chain: filter_run copies what passes */
        struct filter *h = filter_holdback_new(32);
        uint8_t *out = NULL;
        size_t out_len = 0, tail_len = 0;
        assert_int_equal(filter_run(h, data, len, &out, &out_len), 0);
        const uint8_t *tail = filter_holdback_result(h, &tail_len);
        assert_int_equal(out_len, len - kept);
        assert_int_equal(tail_len, kept);
        assert_memory_equal(out, data, out_len);
        assert_memory_equal(tail, data + out_len, kept);
        free(out);
        filter_free(h);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_observer_passes_bytes_unchanged),
        cmocka_unit_test(test_empty_chain_is_a_pipe),
        cmocka_unit_test(test_empty_input_from_null),
        cmocka_unit_test(test_transformers_with_one_byte_buffers),
        cmocka_unit_test(test_sink_error_stops_the_chain),
        cmocka_unit_test(test_chain_rules),
        cmocka_unit_test(test_stuck_filter_is_reported),
        cmocka_unit_test(test_filter_run),
        cmocka_unit_test(test_chain_reset),
        cmocka_unit_test(test_holdback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
