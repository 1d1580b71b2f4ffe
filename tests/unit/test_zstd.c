/* test_zstd.c — zstd compressor and decompressor filters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pgark/compress.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static int sink_fn(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

/* Half random, half repeated text, so zstd has something to compress. */
static uint8_t *mixed_data(size_t len, uint64_t seed)
{
    static const char text[] = "INSERT INTO accounts VALUES (42, 'pgark', now());\n";
    uint8_t *p = xmalloc(len);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t run = 64 + (x & 255);
        bool random = x & 0x100;
        for (size_t k = 0; k < run && i < len; k++, i++)
            p[i] = random ? (uint8_t)(x >> (8 * (k % 7))) ^ (uint8_t)k : (uint8_t)text[k % 50];
    }
    return p;
}

static int run_chain(struct filter *f, size_t buf_size, const uint8_t *data, size_t len,
                     size_t step, struct buf *out)
{
    struct filter_chain *c = filter_chain_new(buf_size, sink_fn, out);
    int rc = 0;
    filter_chain_add(c, f);
    if (!step)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = filter_chain_write(c, data + off, len - off < step ? len - off : step);
    if (rc == 0)
        rc = filter_chain_finish(c);
    filter_chain_free(c);
    return rc;
}

static void compress(const uint8_t *data, size_t len, struct buf *z)
{
    assert_int_equal(run_chain(compress_zstd_compressor_new(3), 0, data, len, 0, z), 0);
}

static int decompress(const uint8_t *z, size_t len, size_t buf_size, struct buf *out)
{
    return run_chain(compress_zstd_decompressor_new(), buf_size, z, len, 0, out);
}

static void test_round_trips(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 4095, 1024 * 1024 + 1};
    for (size_t i = 0; i < 4; i++) {
        size_t len = sizes[i];
        uint8_t *data = mixed_data(len, i);
        size_t bufs[] = {1, 0};
        for (size_t b = 0; b < 2; b++) {
            size_t step = bufs[b] == 1 && len < 5000 ? 1 : 0;
            struct buf z = BUF_INIT, out = BUF_INIT;
            assert_int_equal(
                run_chain(compress_zstd_compressor_new(3), bufs[b], data, len, step, &z), 0);
            assert_true(z.len > 0);
            if (len > 4000)
                assert_true(z.len < len * 3 / 4); /* it did compress */
            /* A standard zstd frame: the library itself reads it back. */
            unsigned long long content = ZSTD_getFrameContentSize(z.data, z.len);
            assert_true(content == len || content == ZSTD_CONTENTSIZE_UNKNOWN);
            assert_int_equal(
                run_chain(compress_zstd_decompressor_new(), bufs[b], z.data, z.len, step, &out), 0);
            assert_int_equal(out.len, len);
            if (len)
                assert_memory_equal(out.data, data, len);
            buf_free(&z);
            buf_free(&out);
        }
        free(data);
    }
}

static void test_filter_run_and_levels(void **state)
{
    (void)state;
    uint8_t *data = mixed_data(200000, 9), *z = NULL, *out = NULL;
    size_t z_len = 0, out_len = 0;
    int levels[] = {1, 3, 19};
    for (size_t i = 0; i < 3; i++) {
        struct filter *c = compress_zstd_compressor_new(levels[i]);
        struct filter *d = compress_zstd_decompressor_new();
        assert_int_equal(filter_run(c, data, 200000, &z, &z_len), 0);
        assert_int_equal(filter_run(d, z, z_len, &out, &out_len), 0);
        assert_int_equal(out_len, 200000);
        assert_memory_equal(out, data, 200000);
        free(z);
        free(out);
        filter_free(c);
        filter_free(d);
    }
    assert_null(compress_zstd_compressor_new(0));
    assert_int_equal(err_kind(), ERR_CONFIG);
    assert_string_equal(err_message(), "zstd compression level 0 is out of range (1 to 19)");
    assert_null(compress_zstd_compressor_new(22));
    err_clear();
    free(data);
}

static void test_truncated_frames_rejected(void **state)
{
    (void)state;
    uint8_t *data = mixed_data(4095, 4);
    struct buf z = BUF_INIT;
    compress(data, 4095, &z);
    /* Every prefix, including the empty one, is truncated. */
    for (size_t cut = 0; cut < z.len; cut++) {
        struct buf out = BUF_INIT;
        int rc = decompress(z.data, cut, cut % 2 ? 1 : 0, &out);
        if (rc != -ERR_INTEGRITY || strcmp(err_message(), "compressed data is truncated") != 0)
            fail_msg("prefix of %zu/%zu bytes: rc %d \"%s\"", cut, z.len, rc, err_message());
        err_clear();
        buf_free(&out);
    }
    buf_free(&z);
    free(data);
}

static void test_trailing_data_rejected(void **state)
{
    (void)state;
    uint8_t *data = mixed_data(100000, 5);
    struct buf z = BUF_INIT, out = BUF_INIT;
    compress(data, 100000, &z);
    size_t one = z.len;
    buf_append(&z, "\0", 1);
    for (size_t buf_size = 0; buf_size < 2; buf_size++) {
        assert_int_equal(decompress(z.data, z.len, buf_size, &out), -ERR_INTEGRITY);
        assert_string_equal(err_message(),
                            "compressed data is corrupt: unexpected data after the end of the "
                            "frame");
        buf_reset(&out);
    }
    /* A second valid frame after the first is trailing data too. */
    uint8_t *frame = xmalloc(one);
    memcpy(frame, z.data, one);
    z.len = one;
    buf_append(&z, frame, one);
    free(frame);
    assert_int_equal(decompress(z.data, z.len, 0, &out), -ERR_INTEGRITY);
    assert_string_equal(err_message(),
                        "compressed data is corrupt: unexpected data after the end of the frame");
    err_clear();
    buf_free(&z);
    buf_free(&out);
    free(data);
}

static void test_corruption_rejected(void **state)
{
    (void)state;
    /* Garbage that is not zstd at all. */
    struct buf out = BUF_INIT;
    assert_int_equal(decompress((const uint8_t *)"this is not zstd data", 21, 0, &out),
                     -ERR_INTEGRITY);
    assert_string_equal(err_message(), "compressed data is corrupt: Unknown frame descriptor");
    assert_int_equal(out.len, 0);

    /* A flipped bit anywhere in a small frame never yields different data: it is caught
     * (format checks or the content checksum), or it hit a bit the format ignores (the
     * descriptor's unused bit) and the output is still exact. */
    uint8_t *data = mixed_data(3000, 6);
    struct buf z = BUF_INIT;
    size_t caught = 0;
    compress(data, 3000, &z);
    for (size_t pos = 0; pos < z.len; pos++) {
        z.data[pos] ^= (uint8_t)(1u << (pos % 8));
        buf_reset(&out);
        int rc = decompress(z.data, z.len, 0, &out);
        if (rc == -ERR_INTEGRITY)
            caught++;
        else if (rc != 0 || out.len != 3000 || memcmp(out.data, data, 3000) != 0)
            fail_msg("flip at %zu/%zu gave rc %d and %zu bytes", pos, z.len, rc, out.len);
        z.data[pos] ^= (uint8_t)(1u << (pos % 8));
    }
    assert_true(caught >= z.len - 2);
    err_clear();
    buf_free(&z);
    buf_free(&out);
    free(data);
}

struct level_job {
    int level;
    const uint8_t *data;
    size_t len;
    struct buf z;
};

static void *compress_at_level(void *arg)
{
    struct level_job *j = arg;
    if (run_chain(compress_zstd_compressor_new(j->level), 0, j->data, j->len, 4096, &j->z) < 0)
        fail_msg("compression failed on a fresh thread");
    return NULL;
}

/* One context per thread, reused: freeing a compressor keeps its context for the next
 * one, which starts from a clean state (its own level, nothing of the last input). Two
 * alive at once have a context each; a thread's spare goes with the thread (ASan). */
static void test_context_reused(void **state)
{
    (void)state;
    size_t len = 300000;
    uint8_t *data = mixed_data(len, 3), *other = mixed_data(len, 4);
    int levels[] = {19, 1, 3};
    struct buf warm = BUF_INIT;
    compress(other, len, &warm); /* this thread has a spare now */
    uint64_t made = compress_zstd_contexts_made();
    for (size_t i = 0; i < 3; i++) {
        struct buf reused = BUF_INIT;
        assert_int_equal(
            run_chain(compress_zstd_compressor_new(levels[i]), 0, data, len, 4096, &reused), 0);
        struct level_job fresh = {levels[i], data, len, BUF_INIT};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, compress_at_level, &fresh), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(reused.len, fresh.z.len);
        assert_memory_equal(reused.data, fresh.z.data, reused.len);
        buf_free(&reused);
        buf_free(&fresh.z);
    }
    /* Three fresh threads made one context each; this thread made none. */
    assert_int_equal(compress_zstd_contexts_made(), made + 3);

    struct filter *a = compress_zstd_compressor_new(3), *b = compress_zstd_compressor_new(3);
    assert_int_equal(compress_zstd_contexts_made(), made + 4);
    filter_free(a);
    filter_free(b); /* the spare slot is taken: b's context is freed */
    buf_free(&warm);
    free(data);
    free(other);
}

/* Whole-buffer compression: a frame the decompressor filter reads back, made with a
 * shared context that is reused; the output buffer is the thread's and grows as needed. */
static void test_compress_buffer(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 4095, 1024 * 1024 + 32, 3 * 1024 * 1024, 100};
    const uint8_t *first;
    size_t first_len;
    assert_int_equal(compress_zstd_buffer(3, "x", 1, &first, &first_len), 0); /* one shared */
    uint64_t made = compress_zstd_contexts_made();
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint8_t *data = mixed_data(len, i + 20);
        const uint8_t *z = NULL;
        size_t z_len = 0;
        assert_int_equal(compress_zstd_buffer(i % 2 ? 1 : 3, data, len, &z, &z_len), 0);
        assert_int_equal(ZSTD_getFrameContentSize(z, z_len), len);
        if (len > 4000)
            assert_true(z_len < len * 3 / 4);
        struct buf out = BUF_INIT;
        assert_int_equal(decompress(z, z_len, 0, &out), 0);
        assert_int_equal(out.len, len);
        if (len)
            assert_memory_equal(out.data, data, len);
        buf_free(&out);
        free(data);
    }
    assert_int_equal(compress_zstd_contexts_made(), made);
    const uint8_t *z;
    size_t z_len;
    assert_int_equal(compress_zstd_buffer(20, "a", 1, &z, &z_len), -ERR_CONFIG);
}

struct buffer_job {
    uint32_t seed;
    int failures;
};

/* Ten buffers of its own, each compressed and read back. */
static void *compress_buffers(void *arg)
{
    struct buffer_job *job = arg;
    for (uint32_t i = 0; i < 10; i++) {
        size_t len = 200000 + i * 1000;
        uint8_t *data = mixed_data(len, job->seed * 100 + i);
        const uint8_t *z = NULL;
        size_t z_len = 0;
        struct buf out = BUF_INIT;
        if (compress_zstd_buffer(3, data, len, &z, &z_len) != 0 || decompress(z, z_len, 0, &out) ||
            out.len != len || memcmp(out.data, data, len) != 0)
            job->failures++;
        buf_free(&out);
        free(data);
    }
    return NULL;
}

/* Sixteen threads at once: every frame right, and no more contexts than CPUs in all (a
 * context per thread pushed each other's tables out of the cache). */
static void test_compress_buffer_shared(void **state)
{
    (void)state;
    enum { N = 16 };
    pthread_t t[N];
    struct buffer_job jobs[N];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t made = compress_zstd_contexts_made();
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct buffer_job){(uint32_t)i + 1, 0};
        assert_int_equal(pthread_create(&t[i], NULL, compress_buffers, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
    }
    assert_true(compress_zstd_contexts_made() - made <= (uint64_t)(cpus < 1 ? 1 : cpus));
}

/* Decompress z into a buffer of cap bytes followed by canary bytes that must survive. */
static int into(const uint8_t *z, size_t z_len, size_t cap, uint8_t **out, size_t *out_len)
{
    *out = xmalloc(cap + 64);
    memset(*out, 0xC3, cap + 64);
    int rc = compress_zstd_decompress_buffer(z, z_len, *out, cap, out_len);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal((*out)[cap + i], 0xC3);
    return rc;
}

static void expect_into_error(const uint8_t *z, size_t z_len, size_t cap, const char *want)
{
    uint8_t *out;
    size_t n = 99;
    assert_int_equal(into(z, z_len, cap, &out, &n), -ERR_INTEGRITY);
    if (!strstr(err_message(), want))
        fail_msg("got \"%s\", want \"%s\"", err_message(), want);
    err_clear();
    free(out);
}

static void test_decompress_buffer(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 4095, 1024 * 1024 + 32, 3 * 1024 * 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint8_t *data = mixed_data(len, i + 40);
        struct buf z = BUF_INIT, two = BUF_INIT;
        compress(data, len, &z);
        /* exact room, and more */
        for (size_t extra = 0; extra <= 100; extra += 100) {
            uint8_t *out;
            size_t n = 99;
            assert_int_equal(into(z.data, z.len, len + extra, &out, &n), 0);
            assert_int_equal(n, len);
            if (len)
                assert_memory_equal(out, data, len);
            free(out);
        }
        /* one byte short: refused, nothing written past cap */
        if (len)
            expect_into_error(z.data, z.len, len - 1, "longer than expected");
        /* truncated, junk after the frame, a second frame */
        expect_into_error(z.data, z.len - 1, len + 1, "truncated");
        buf_append(&two, z.data, z.len);
        buf_append(&two, z.data, z.len);
        expect_into_error(two.data, two.len, 2 * len + 1, "after the end of the frame");
        /* corrupt block data (past the frame header): refused */
        if (len > 4000) {
            uint8_t *bad = xmalloc(z.len);
            memcpy(bad, z.data, z.len);
            for (size_t k = 20; k < z.len - 8; k += 97)
                bad[k] ^= 0x5A;
            uint8_t *out;
            size_t n;
            assert_int_equal(into(bad, z.len, len, &out, &n), -ERR_INTEGRITY);
            err_clear();
            free(out);
            free(bad);
        }
        /* the frame's content checksum (its last 4 bytes) is left to the caller */
        if (len) {
            ((uint8_t *)z.data)[z.len - 1] ^= 0xFF;
            uint8_t *out;
            size_t n = 0;
            assert_int_equal(into(z.data, z.len, len, &out, &n), 0);
            assert_int_equal(n, len);
            assert_memory_equal(out, data, len);
            free(out);
        }
        buf_free(&z);
        buf_free(&two);
        free(data);
    }
    /* not zstd at all */
    expect_into_error((const uint8_t *)"not a zstd frame", 16, 100, "corrupt");
}

static void test_window_too_large_rejected(void **state)
{
    (void)state;
    /* A frame that asks for a 32 MiB window, made directly with libzstd. */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    uint8_t src[1000], dst[2000];
    memset(src, 'a', sizeof(src));
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 25);
    ZSTD_inBuffer in = {src, sizeof(src), 0};
    ZSTD_outBuffer out = {dst, sizeof(dst), 0};
    assert_false(ZSTD_isError(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_continue)));
    assert_int_equal(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end), 0);
    ZSTD_freeCCtx(cctx);

    struct buf plain = BUF_INIT;
    assert_int_equal(decompress(dst, out.pos, 0, &plain), -ERR_INTEGRITY);
    assert_string_equal(err_message(),
                        "compressed data is corrupt: Frame requires too much memory for decoding");
    assert_int_equal(plain.len, 0);
    err_clear();
    buf_free(&plain);
}

/* A compressor reset between streams (a reused context) writes one complete frame per
 * stream, also when the previous stream was abandoned half way. */
static void test_reset_reuses_the_compressor(void **state)
{
    (void)state;
    struct buf z = BUF_INIT, out = BUF_INIT;
    struct filter_chain *c = filter_chain_new(0, sink_fn, &z);
    filter_chain_add(c, compress_zstd_compressor_new(3));
    for (uint64_t round = 0; round < 4; round++) {
        size_t len = round == 2 ? 0 : 300000 + (size_t)round;
        uint8_t *data = mixed_data(len, round);
        assert_int_equal(filter_chain_reset(c), 0);
        buf_free(&z);
        assert_int_equal(filter_chain_write(c, data, len), 0);
        if (round == 1) { /* abandoned */
            free(data);
            continue;
        }
        assert_int_equal(filter_chain_finish(c), 0);
        assert_int_equal(decompress(z.data, z.len, 0, &out), 0);
        assert_int_equal(out.len, len);
        if (len)
            assert_memory_equal(out.data, data, len);
        buf_free(&out);
        free(data);
    }
    filter_chain_free(c);
    buf_free(&z);
}

/* A frame kept open: after each flushed piece (1 byte, 0 bytes, more than a block), the
 * prefix output so far ended by compress_zstd_frame_end is one frame holding everything
 * fed then the end's bytes, for the filter and for the whole-buffer decompressor; the
 * prefix never changes once written. */
static void test_open_frame(void **state)
{
    (void)state;
    static const size_t pieces[] = {1, 7, 4096, 0, 200000, 131072, 3, 0, 600000};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
        total += pieces[i];
    uint8_t *data = mixed_data(total, 7);
    static const uint8_t end[32] = "0123456789abcdef0123456789ABCDEF";
    struct compress_zstd_open *z = compress_zstd_open_new(3);
    assert_non_null(z);
    struct buf prefix = BUF_INIT, before = BUF_INIT;
    size_t fed = 0;
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        /* in two calls, the first not flushed */
        size_t half = pieces[i] / 2;
        assert_int_equal(compress_zstd_open_feed(z, data + fed, half, false, sink_fn, &prefix), 0);
        assert_int_equal(
            compress_zstd_open_feed(z, data + fed + half, pieces[i] - half, true, sink_fn, &prefix),
            0);
        fed += pieces[i];
        assert_true(prefix.len >= before.len);
        assert_memory_equal(prefix.data, before.data, before.len);
        buf_free(&before);
        buf_append(&before, prefix.data, prefix.len);

        struct buf frame = BUF_INIT, out = BUF_INIT;
        uint8_t tail[COMPRESS_ZSTD_FRAME_END_LEN(sizeof(end))];
        buf_append(&frame, prefix.data, prefix.len);
        buf_append(&frame, tail, compress_zstd_frame_end(end, sizeof(end), tail));
        assert_int_equal(decompress(frame.data, frame.len, 1000, &out), 0);
        assert_int_equal(out.len, fed + sizeof(end));
        assert_memory_equal(out.data, data, fed);
        assert_memory_equal((uint8_t *)out.data + fed, end, sizeof(end));
        uint8_t *got;
        size_t got_len;
        assert_int_equal(into(frame.data, frame.len, fed + sizeof(end), &got, &got_len), 0);
        assert_int_equal(got_len, fed + sizeof(end));
        assert_memory_equal(got, data, fed);
        free(got);
        buf_free(&out);
        buf_free(&frame);
    }
    compress_zstd_open_free(z);
    compress_zstd_open_free(NULL);
    assert_null(compress_zstd_open_new(COMPRESS_ZSTD_LEVEL_MAX + 1));
    err_clear();
    buf_free(&before);
    buf_free(&prefix);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_filter_run_and_levels),
        cmocka_unit_test(test_truncated_frames_rejected),
        cmocka_unit_test(test_trailing_data_rejected),
        cmocka_unit_test(test_corruption_rejected),
        cmocka_unit_test(test_window_too_large_rejected),
        cmocka_unit_test(test_reset_reuses_the_compressor),
        cmocka_unit_test(test_context_reused),
        cmocka_unit_test(test_compress_buffer),
        cmocka_unit_test(test_compress_buffer_shared),
        cmocka_unit_test(test_decompress_buffer),
        cmocka_unit_test(test_open_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
