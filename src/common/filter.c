/* filter.c — filter chains, the observer plumbing and the size observer (see filter.h). */
#include "pgark/filter.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

#define FILTER_DEFAULT_BUF (64 * 1024)

struct stage {
    struct filter *f;
    const struct filter_observer_ops *obs; /* set: shown the bytes, no copy */
    struct holdback *hold;                 /* set: passes on all but its tail, no copy */
    uint8_t *buf;                          /* output buffer (transformers only) */
    bool done;
};

struct filter_chain {
    struct stage *stages;
    size_t n, cap;
    size_t buf_size;
    filter_sink_fn sink;
    void *sink_ctx;
    bool started;  /* a write or finish happened: no more filters */
    bool finished; /* finish was called */
    bool failed;   /* a stage or the sink failed: the chain is unusable */
};

void filter_free(struct filter *f)
{
    if (f && f->ops->free)
        f->ops->free(f);
}

/* --- observers ------------------------------------------------------------- */

int filter_observer_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    const struct filter_observer_ops *ops = (const struct filter_observer_ops *)f->ops;
    size_t n = in_len < out_cap ? in_len : out_cap;
    bool last = finish && n == in_len;

    if (n)
        memcpy(out, in, n);
    if (n || last)
        ops->observe(f, in, n, last);
    *in_used = n;
    *out_len = n;
    *done = last;
    return 0;
}

const struct filter_observer_ops *filter_observer_ops(const struct filter *f)
{
    if (f && f->ops->process == filter_observer_process)
        return (const struct filter_observer_ops *)f->ops;
    return NULL;
}

struct size_filter {
    struct filter base;
    uint64_t bytes;
};

static void size_observe(struct filter *f, const uint8_t *data, size_t len, bool finish)
{
    (void)data;
    (void)finish;
    ((struct size_filter *)f)->bytes += len;
}

static void size_free(struct filter *f)
{
    free(f);
}

static int size_reset(struct filter *f)
{
    ((struct size_filter *)f)->bytes = 0;
    return 0;
}

static const struct filter_observer_ops size_ops = {
    .base = {FILTER_OPS_VERSION, "size", filter_observer_process, size_free, size_reset},
    .observe = size_observe,
};

struct filter *filter_size_new(void)
{
    struct size_filter *s = xcalloc(1, sizeof(*s));
    s->base.ops = &size_ops.base;
    return &s->base;
}

uint64_t filter_size_result(const struct filter *f)
{
    return ((const struct size_filter *)f)->bytes;
}

/* --- hold-back ------------------------------------------------------------- */

struct holdback {
    struct filter base;
    size_t n;    /* how many bytes at the end are held back */
    size_t have; /* bytes in tail: the last ones seen, at most n */
    uint8_t tail[FILTER_HOLDBACK_MAX];
};

/* Of len more bytes: *pass_a (from the tail) then *pass_b (from the new bytes' start) are
 * what may be passed on; the rest of (tail || new bytes) becomes the tail. */
static void holdback_take(const struct holdback *h, size_t len, size_t *pass_a, size_t *pass_b)
{
    size_t total = h->have + len;
    size_t out = total > h->n ? total - h->n : 0;
    *pass_a = out < h->have ? out : h->have;
    *pass_b = out - *pass_a;
}

/* After pass_a bytes of the tail and pass_b of in were passed on: keep the rest. */
static void holdback_keep(struct holdback *h, const uint8_t *in, size_t len, size_t pass_a,
                          size_t pass_b)
{
    if (pass_a) {
        memmove(h->tail, h->tail + pass_a, h->have - pass_a);
        h->have -= pass_a;
    }
    if (len > pass_b) {
        memcpy(h->tail + h->have, in + pass_b, len - pass_b);
        h->have += len - pass_b;
    }
}

static int holdback_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct holdback *h = (struct holdback *)f;
    size_t a, b, n = in_len < out_cap ? in_len : out_cap;

    /* a copy for callers outside a chain: at most out_cap bytes of input at a time */
    holdback_take(h, n, &a, &b);
    if (a)
        memcpy(out, h->tail, a);
    if (b)
        memcpy(out + a, in, b);
    holdback_keep(h, in, n, a, b);
    *in_used = n;
    *out_len = a + b;
    *done = finish && n == in_len;
    return 0;
}

static void holdback_free(struct filter *f)
{
    free(f);
}

static int holdback_reset(struct filter *f)
{
    ((struct holdback *)f)->have = 0;
    return 0;
}

static const struct filter_ops holdback_ops = {FILTER_OPS_VERSION, "hold-back", holdback_process,
                                               holdback_free, holdback_reset};

struct filter *filter_holdback_new(size_t n)
{
    struct holdback *h = xcalloc(1, sizeof(*h));
    h->base.ops = &holdback_ops;
    h->n = n < FILTER_HOLDBACK_MAX ? n : FILTER_HOLDBACK_MAX;
    return &h->base;
}

const uint8_t *filter_holdback_result(const struct filter *f, size_t *len)
{
    const struct holdback *h = (const struct holdback *)f;
    *len = h->have;
    return h->tail;
}

/* --- chains ---------------------------------------------------------------- */

struct filter_chain *filter_chain_new(size_t buf_size, filter_sink_fn sink, void *sink_ctx)
{
    struct filter_chain *c = xcalloc(1, sizeof(*c));
    c->buf_size = buf_size ? buf_size : FILTER_DEFAULT_BUF;
    c->sink = sink;
    c->sink_ctx = sink_ctx;
    return c;
}

struct filter *filter_chain_add(struct filter_chain *c, struct filter *f)
{
    if (!f)
        return NULL;
    if (c->started) {
        err_set(ERR_RUNTIME, "filter \"%s\" added to a chain that is already running",
                f->ops->name);
        filter_free(f);
        return NULL;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4;
        c->stages = xrealloc(c->stages, c->cap * sizeof(*c->stages));
    }
    struct stage *st = &c->stages[c->n++];
    st->f = f;
    st->obs = filter_observer_ops(f);
    st->hold = f->ops == &holdback_ops ? (struct holdback *)f : NULL;
    st->buf = st->obs || st->hold ? NULL : xmalloc(c->buf_size);
    st->done = false;
    return f;
}

/*
 * Feed in to stage i and everything it produces on to the later stages. Each
 * transformer's output buffer is drained downstream before the stage is called
 * again, so one buffer per stage is enough and nothing is copied twice.
 */
static int push(struct filter_chain *c, size_t i, const uint8_t *in, size_t len, bool finish);

/* Stage i holds back its tail: pass on what surely precedes it, straight from the tail and
 * from in, and keep the rest (no copy of what passes). */
static int push_holdback(struct filter_chain *c, size_t i, const uint8_t *in, size_t len,
                         bool finish)
{
    struct stage *st = &c->stages[i];
    struct holdback *h = st->hold;
    size_t a, b;
    int rc = 0;

    holdback_take(h, len, &a, &b);
    if (a && (rc = push(c, i + 1, h->tail, a, false)) < 0)
        goto out;
    if (b && (rc = push(c, i + 1, in, b, false)) < 0)
        goto out;
    holdback_keep(h, in, len, a, b);
    if (finish) {
        st->done = true;
        rc = push(c, i + 1, NULL, 0, true);
    }
out:
    return rc;
}

static int push(struct filter_chain *c, size_t i, const uint8_t *in, size_t len, bool finish)
{
    if (i == c->n)
        return len ? c->sink(c->sink_ctx, in, len) : 0;

    struct stage *st = &c->stages[i];
    struct filter *f = st->f;
    int rc = 0;

    if (st->done) {
        if (len)
            return err_set(ERR_RUNTIME, "filter \"%s\" received data after it finished",
                           f->ops->name);
        return 0;
    }
    if (st->obs) {
        st->obs->observe(f, in, len, finish);
        st->done = finish;
        return push(c, i + 1, in, len, finish);
    }
    if (st->hold)
        return push_holdback(c, i, in, len, finish);
    for (;;) {
        size_t used = 0, out_len = 0;
        bool done = false;

        rc = f->ops->process(f, in, len, &used, st->buf, c->buf_size, &out_len, finish, &done);
        if (rc < 0)
            goto out;
        if (used > len || out_len > c->buf_size) {
            rc = err_set(ERR_RUNTIME, "filter \"%s\" overran its buffers", f->ops->name);
            goto out;
        }
        /* in is NULL at the end of an empty stream: no arithmetic on it, even + 0 */
        if (used) {
            in += used;
            len -= used;
        }
        if (out_len && (rc = push(c, i + 1, st->buf, out_len, false)) < 0)
            goto out;
        if (finish && done) {
            if (len) {
                rc = err_set(ERR_RUNTIME, "filter \"%s\" finished with %zu bytes unread",
                             f->ops->name, len);
                goto out;
            }
            st->done = true;
            rc = push(c, i + 1, NULL, 0, true);
            goto out;
        }
        if (!used && !out_len && (finish || len)) {
            rc = err_set(ERR_RUNTIME, "filter \"%s\" made no progress", f->ops->name);
            goto out;
        }
        if (!finish && !len && !out_len)
            break;
    }
out:
    return rc;
}

static int chain_check(struct filter_chain *c)
{
    if (c->failed)
        return err_set(ERR_RUNTIME, "filter chain used after it failed");
    if (c->finished)
        return err_set(ERR_RUNTIME, "filter chain used after it finished");
    return 0;
}

int filter_chain_write(struct filter_chain *c, const void *data, size_t len)
{
    int rc = chain_check(c);
    if (rc < 0 || !len)
        return rc;
    c->started = true;
    rc = push(c, 0, data, len, false);
    if (rc < 0)
        c->failed = true;
    return rc;
}

int filter_chain_finish(struct filter_chain *c)
{
    int rc = chain_check(c);
    if (rc < 0)
        return rc;
    c->started = true;
    c->finished = true;
    rc = push(c, 0, NULL, 0, true);
    if (rc < 0)
        c->failed = true;
    return rc;
}

void filter_chain_free(struct filter_chain *c)
{
    if (!c)
        return;
    for (size_t i = c->n; i > 0; i--) {
        filter_free(c->stages[i - 1].f);
        free(c->stages[i - 1].buf);
    }
    free(c->stages);
    free(c);
}

int filter_chain_reset(struct filter_chain *c)
{
    int rc = 0;
    c->failed = true; /* until every stage is reset */
    for (size_t i = 0; i < c->n; i++) {
        struct filter *f = c->stages[i].f;
        if (!f->ops->reset) {
            rc = err_set(ERR_RUNTIME, "filter \"%s\" cannot be reset", f->ops->name);
            goto out;
        }
        if ((rc = f->ops->reset(f)) < 0)
            goto out;
        c->stages[i].done = false;
    }
    c->started = c->finished = c->failed = false;
out:
    return rc;
}

int filter_run(struct filter *f, const void *in, size_t in_len, uint8_t **out, size_t *out_len)
{
    struct buf b = BUF_INIT;
    const uint8_t *p = in;
    bool done = false;
    int rc = 0;

    *out = NULL;
    *out_len = 0;
    while (!done) {
        size_t used = 0, produced = 0;
        size_t cap = in_len > FILTER_DEFAULT_BUF ? in_len : FILTER_DEFAULT_BUF;

        buf_reserve(&b, cap);
        rc = f->ops->process(f, p, in_len, &used, b.data + b.len, cap, &produced, true, &done);
        if (rc < 0)
            goto out;
        if (used > in_len || produced > cap) {
            rc = err_set(ERR_RUNTIME, "filter \"%s\" overran its buffers", f->ops->name);
            goto out;
        }
        if (!used && !produced && !done) {
            rc = err_set(ERR_RUNTIME, "filter \"%s\" made no progress", f->ops->name);
            goto out;
        }
        if (used) { /* p is NULL for an empty input */
            p += used;
            in_len -= used;
        }
        b.len += produced;
    }
    if (in_len) {
        rc = err_set(ERR_RUNTIME, "filter \"%s\" finished with %zu bytes unread", f->ops->name,
                     in_len);
        goto out;
    }
    *out_len = b.len;
    *out = b.data ? b.data : xmalloc(1);
    b.data = NULL;
out:
    buf_free(&b);
    return rc;
}
