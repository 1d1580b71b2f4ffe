/* test_chunker.c — fixed-size chunking, chunk names and the whole-file digest. */
#include "pgark/chunker.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const uint8_t KEY[CHUNK_KEY_LEN] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                           11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                           22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

struct got {
    struct buf joined;  /* concatenated chunk bytes */
    const uint8_t *key; /* names the chunks with this key (NULL: SHA-256) */
    char names[64][SHA256_HEX_LEN + 1];
    size_t lens[64];
    uint64_t offsets[64];
    size_t npieces[64]; /* pieces a chunk came with (0: copied) */
    size_t n;
    int fail_at; /* >0: fail on this chunk number (1-based) */
    size_t chunk_size;
    /* buffers lent to the chunker */
    uint8_t *lent[8];
    size_t out;        /* lent and not back */
    size_t gets, puts; /* calls */
    bool refuse;       /* get fails */
};

static uint8_t *lend(void *arg)
{
    struct got *g = arg;
    if (g->refuse) {
        err_set(ERR_RUNTIME, "no buffer");
        return NULL;
    }
    assert_true(g->out < 8);
    uint8_t *b = xmalloc(g->chunk_size);
    g->lent[g->out++] = b;
    g->gets++;
    return b;
}

/* A lent buffer is back: it must be one of ours. */
static void back(struct got *g, uint8_t *b)
{
    for (size_t i = 0; i < g->out; i++) {
        if (g->lent[i] == b) {
            g->lent[i] = g->lent[--g->out];
            free(b);
            return;
        }
    }
    fail_msg("a buffer came back that was not lent");
}

static void put_back(void *arg, uint8_t *b)
{
    struct got *g = arg;
    g->puts++;
    back(g, b);
}

static const struct chunker_buffers BUFS = {lend, put_back};

static int on_chunk(void *arg, struct chunk *ch)
{
    struct got *g = arg;
    assert_int_equal(ch->index, g->n);
    assert_true(ch->len > 0);
    assert_true(ch->len <= g->chunk_size);
    int rc = 0;
    if (g->fail_at && (int)g->n + 1 == g->fail_at) {
        rc = err_set(ERR_IO, "upload failed");
    } else {
        assert_true(g->n < 64);
        /* the digest of the pieces is the digest of the bytes they gather into */
        uint8_t md[SHA256_LEN], md2[SHA256_LEN];
        g->npieces[g->n] = ch->npieces;
        chunk_sha256(ch, md);
        chunk_gather(ch);
        assert_int_equal(ch->npieces, 0);
        sha256(ch->data, ch->len, md2);
        assert_memory_equal(md, md2, SHA256_LEN);
        chunk_name(g->key, ch->data, ch->len, g->names[g->n]);
        g->lens[g->n] = ch->len;
        g->offsets[g->n] = ch->offset;
        buf_append(&g->joined, ch->data, ch->len);
        g->n++;
    }
    chunk_release(ch); /* the pieces of a failed one */
    back(g, ch->data); /* ours now, also on failure */
    return rc;
}

static struct chunker *new_chunker(struct got *g, size_t chunk_size)
{
    g->chunk_size = chunk_size;
    return chunker_new(chunk_size, &BUFS, on_chunk, g);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *d = xmalloc(n ? n : 1);
    uint32_t x = 42;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245 + 12345;
        d[i] = (uint8_t)(x >> 16);
    }
    return d;
}

static void chunk_file(struct chunker *c, const uint8_t *d, size_t n, size_t step, uint64_t *count)
{
    if (step == 0)
        step = n ? n : 1;
    for (size_t off = 0; off < n; off += step)
        assert_int_equal(chunker_feed(c, d + off, n - off < step ? n - off : step), 0);
    assert_int_equal(chunker_finish(c, count), 0);
}

static void test_sizes_and_splits(void **state)
{
    (void)state;
    const size_t cs = 1000;
    const size_t sizes[] = {0, 1, 999, 1000, 1001, 3500, 10000};
    const size_t steps[] = {1, 7, 999, 1000, 1001, 4096, 0};
    for (int keyed = 0; keyed < 2; keyed++) {
        struct got g;
        memset(&g, 0, sizeof(g));
        g.key = keyed ? KEY : NULL;
        struct chunker *c = new_chunker(&g, cs);
        assert_non_null(c);
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            size_t n = sizes[si];
            uint8_t *d = pattern(n);
            for (size_t st = 0; st < sizeof(steps) / sizeof(steps[0]); st++) {
                buf_reset(&g.joined);
                g.n = 0;
                uint64_t count = 99;
                chunk_file(c, d, n, steps[st], &count);
                /* same chunker reused file after file: counts start over */
                size_t expect = (n + cs - 1) / cs;
                assert_int_equal(count, expect);
                assert_int_equal(g.n, expect);
                assert_int_equal(g.joined.len, n);
                if (n)
                    assert_memory_equal(g.joined.data, d, n);
                for (size_t i = 0; i < g.n; i++) {
                    size_t len = i + 1 < g.n ? cs : n - i * cs;
                    assert_int_equal(g.lens[i], len);
                    assert_int_equal(g.offsets[i], i * cs);
                    char name[SHA256_HEX_LEN + 1];
                    uint8_t md[SHA256_LEN];
                    if (keyed)
                        hmac_sha256(KEY, sizeof(KEY), d + i * cs, len, md);
                    else
                        sha256(d + i * cs, len, md);
                    hex_encode(md, SHA256_LEN, name);
                    assert_string_equal(g.names[i], name);
                }
                /* one buffer per chunk, each handed on, none kept between files */
                assert_int_equal(g.gets, g.n);
                assert_int_equal(g.out, 0);
                g.gets = 0;
            }
            free(d);
        }
        assert_int_equal(g.puts, 0);
        chunker_free(c);
        buf_free(&g.joined);
    }
}

static void test_names_known_values(void **state)
{
    (void)state;
    char out[SHA256_HEX_LEN + 1];
    chunk_name(NULL, "abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f */
    chunk_name(KEY, "abc", 3, out);
    assert_string_equal(out, "f0133729c4163dede81e21cd47839256da58171238c8a0d874397c73b14e1e47");

    struct got g;
    memset(&g, 0, sizeof(g));
    g.key = KEY;
    struct chunker *c = new_chunker(&g, 3);
    assert_int_equal(chunker_feed(c, "abcab", 5), 0);
    assert_int_equal(chunker_finish(c, NULL), 0);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.names[0], out);
    chunker_free(c);
    buf_free(&g.joined);
}

/* Every byte is copied once, into a lent buffer; a buffer held when the file is
 * abandoned or the chunker freed goes back through put. */
static void test_buffers_lent_and_returned(void **state)
{
    (void)state;
    struct got g;
    memset(&g, 0, sizeof(g));
    struct chunker *c = new_chunker(&g, 4096);
    uint8_t *d = pattern(8192 + 100);
    assert_int_equal(chunker_feed(c, d, 8192 + 100), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.out, 1); /* the third chunk, being filled */
    chunker_reset(c);
    assert_int_equal(g.out, 0);
    assert_int_equal(g.puts, 1);

    g.n = 0;
    buf_reset(&g.joined);
    assert_int_equal(chunker_feed(c, d, 10), 0);
    assert_int_equal(g.out, 1);
    chunker_free(c); /* gives back the buffer of the file it was in */
    assert_int_equal(g.out, 0);
    assert_int_equal(g.puts, 2);

    /* get failing: feeding fails with its error, nothing is lent */
    c = new_chunker(&g, 4096);
    g.refuse = true;
    assert_int_equal(chunker_feed(c, d, 1), -ERR_RUNTIME);
    assert_string_equal(err_message(), "no buffer");
    assert_int_equal(g.out, 0);
    chunker_reset(c);
    g.refuse = false;
    g.n = 0;
    buf_reset(&g.joined);
    uint64_t count;
    chunk_file(c, d, 5000, 0, &count);
    assert_int_equal(count, 2);
    assert_memory_equal(g.joined.data, d, 5000);
    assert_int_equal(g.out, 0);
    free(d);
    chunker_free(c);
    buf_free(&g.joined);
}

static void test_callback_failure_and_reset(void **state)
{
    (void)state;
    struct got g;
    memset(&g, 0, sizeof(g));
    g.fail_at = 2;
    struct chunker *c = new_chunker(&g, 100);
    uint8_t *d = pattern(350);
    assert_int_equal(chunker_feed(c, d, 350), -ERR_IO);
    assert_string_equal(err_message(), "upload failed");
    chunker_reset(c);
    /* the next file starts clean: index 0, only its own bytes */
    g.fail_at = 0;
    g.n = 0;
    buf_reset(&g.joined);
    uint64_t count;
    chunk_file(c, d + 50, 150, 1, &count);
    assert_int_equal(count, 2);
    assert_int_equal(g.joined.len, 150);
    assert_memory_equal(g.joined.data, d + 50, 150);

    /* failure on the last, short chunk at finish */
    g.fail_at = 1;
    g.n = 0;
    assert_int_equal(chunker_feed(c, d, 10), 0);
    assert_int_equal(chunker_finish(c, &count), -ERR_IO);
    assert_int_equal(g.out, 0);
    g.fail_at = 0;
    g.n = 0;
    chunk_file(c, d, 0, 0, &count);
    assert_int_equal(count, 0);
    assert_int_equal(g.n, 0);
    free(d);
    chunker_free(c);
    buf_free(&g.joined);
}

/* A message with a counter of the times it was released. */
struct msg {
    uint8_t *data;
    size_t released;
};

static void release_msg(void *arg)
{
    struct msg *m = arg;
    m->released++;
}

/* Bytes fed with a reference are kept as pieces, not copied: contiguous feeds from one
 * message make one piece; every reference is dropped once its chunk is done, the file
 * abandoned or the chunker freed; bytes without a reference turn the chunk into a
 * copied one. */
static void test_pieces_by_reference(void **state)
{
    (void)state;
    struct got g;
    memset(&g, 0, sizeof(g));
    struct chunker *c = new_chunker(&g, 1000);
    uint8_t *d = pattern(2100);
    struct msg m[3] = {{d, 0}, {d + 700, 0}, {d + 1400, 0}};
    struct refbuf *ref[3];
    for (int i = 0; i < 3; i++)
        ref[i] = refbuf_new(&m[i], release_msg);

    /* each message of 700 bytes fed in two runs */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(chunker_feed_ref(c, m[i].data, 300, ref[i]), 0);
        assert_int_equal(chunker_feed_ref(c, m[i].data + 300, 400, ref[i]), 0);
    }
    uint64_t count;
    assert_int_equal(chunker_finish(c, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(g.joined.len, 2100);
    assert_memory_equal(g.joined.data, d, 2100);
    assert_int_equal(g.npieces[0], 2); /* 700 of message 0, 300 of message 1 */
    assert_int_equal(g.npieces[1], 2); /* 400 of message 1, 600 of message 2 */
    assert_int_equal(g.npieces[2], 1); /* the last 100 of message 2 */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m[i].released, 0); /* the test still holds its own */
        refbuf_put(ref[i]);
        assert_int_equal(m[i].released, 1); /* so the chunks dropped theirs */
    }

    /* a reference, then bytes without one: the chunk is copied, and right */
    g.n = 0;
    buf_reset(&g.joined);
    m[0].released = 0;
    ref[0] = refbuf_new(&m[0], release_msg);
    assert_int_equal(chunker_feed_ref(c, d, 600, ref[0]), 0);
    assert_int_equal(chunker_feed(c, d + 600, 400), 0);
    assert_int_equal(chunker_feed_ref(c, d + 1000, 200, ref[0]), 0);
    assert_int_equal(chunker_finish(c, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(g.npieces[0], 0);
    assert_int_equal(g.npieces[1], 1); /* the next chunk starts with a piece again */
    assert_memory_equal(g.joined.data, d, 1200);
    refbuf_put(ref[0]);
    assert_int_equal(m[0].released, 1);

    /* an abandoned file and a freed chunker drop the references they hold */
    m[0].released = 0;
    ref[0] = refbuf_new(&m[0], release_msg);
    assert_int_equal(chunker_feed_ref(c, d, 10, ref[0]), 0);
    chunker_reset(c);
    assert_int_equal(chunker_feed_ref(c, d, 10, ref[0]), 0);
    assert_int_equal(g.out, 1);
    chunker_free(c);
    assert_int_equal(g.out, 0);
    refbuf_put(ref[0]);
    assert_int_equal(m[0].released, 1);

    /* a callback failure: the failing chunk's pieces are dropped by the callback, the
     * chunk being filled by the reset */
    c = new_chunker(&g, 100);
    g.fail_at = 2;
    g.n = 0;
    m[0].released = 0;
    ref[0] = refbuf_new(&m[0], release_msg);
    assert_int_equal(chunker_feed_ref(c, d, 250, ref[0]), -ERR_IO);
    chunker_reset(c);
    refbuf_put(ref[0]);
    assert_int_equal(m[0].released, 1);
    assert_int_equal(g.out, 0);
    chunker_free(c);
    free(d);
    buf_free(&g.joined);
}

static void test_zero_chunk_size(void **state)
{
    (void)state;
    assert_null(chunker_new(0, &BUFS, on_chunk, NULL));
    assert_int_equal(err_kind(), ERR_USAGE);
    assert_string_equal(err_message(), "chunk size must be greater than zero");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_splits),
        cmocka_unit_test(test_names_known_values),
        cmocka_unit_test(test_buffers_lent_and_returned),
        cmocka_unit_test(test_callback_failure_and_reset),
        cmocka_unit_test(test_pieces_by_reference),
        cmocka_unit_test(test_zero_chunk_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
