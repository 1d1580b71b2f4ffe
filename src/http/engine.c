/*
 * engine.c — every transfer of a process over one curl multi handle (see http.h).
 *
 * Threads. One engine thread owns the multi handle and every easy handle: it alone
 * calls curl (curl_multi_wakeup aside, which is made to be called from elsewhere).
 * Other threads talk to it through the engine's mutex: they append calls to the
 * queue, flag a call for cancelling or resuming and put it on the command list, then
 * wake the engine with curl_multi_wakeup. The engine thread never blocks but in
 * curl_multi_poll, and never takes the mutex around a curl call (curl may run a
 * callback that takes it).
 *
 * A call moves QUEUED (waiting for a slot, or for its retry delay) -> RUNNING (an
 * attempt on an easy handle) -> QUEUED again for a retry, or -> ENDED. Its 2xx body
 * is appended to its inbox by the engine thread; the group's thread swaps the inbox
 * with an empty spare buffer and hands the bytes to the sink without the mutex.
 * When the inbox is full the transfer is paused (CURL_WRITEFUNC_PAUSE keeps the bytes
 * in curl) until the group's thread has taken the inbox and asked for a resume.
 */
#include "http_int.h"

#include "pgark/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_ENGINE_WAKE (512 * 1024)
/* Body buffers kept for reuse: two per transfer slot. */
#define ENGINE_POOL(e) (2 * (e)->concurrency + 2)

enum call_state { CALL_QUEUED, CALL_RUNNING, CALL_ENDED };

struct http_call {
    struct http_call_spec spec;
    struct http_group *g;
    struct http_call *gnext; /* calls of the group */
    struct http_call *qnext; /* engine queue */
    struct http_call *cnext; /* engine command list */
    int64_t not_before_us;   /* a retry waits until then */
    struct http_request req; /* this attempt's, filled by spec.before */
    struct http_xfer x;      /* engine thread only */
    /* under the engine mutex */
    enum call_state state;
    bool urgent; /* started while its thread holds other calls */
    bool in_cmds, want_cancel, want_resume;
    bool paused;    /* the transfer waits for its inbox to be taken */
    bool cancelled; /* no more bytes for the sink */
    struct buf inbox;
    uint64_t received; /* 2xx body bytes queued so far */
    int rc;            /* once ENDED */
    struct err_saved *err;
    struct http_response resp;
    /* the group's thread only */
    struct buf spare;
    int sink_rc;
    struct err_saved *sink_err;
};

struct http_group {
    struct http_engine *e;
    pthread_cond_t cond;
    bool waiting;
    struct http_call *head;
    int ncalls;
};

struct http_engine {
    struct http_options opts;
    char *ca_file;
    int concurrency;
    CURLM *multi;
    pthread_mutex_t lock;
    pthread_t thread;
    bool started, stopping;
    struct http_call *qhead, *qtail; /* waiting to start */
    struct http_call *cmds;          /* cancel or resume wanted */
    int nactive;
    /* body buffers of finished calls, kept with their memory: a fresh buffer per
     * download would cost its page faults every time */
    struct buf *pool;
    int npool;
    size_t inbox_peak; /* the most bytes one inbox held */
    uint64_t pauses;   /* transfers paused for a full inbox */
    /* engine thread only */
    CURL **idle;
    int nidle, cap_idle;
};

/* Set in an engine thread: a request from a callback would wait for itself. */
static _Thread_local struct http_engine *tl_engine;
/* Calls this thread started and has not collected yet, over all its groups. */
static _Thread_local int tl_calls;

struct http_engine *http_engine_new(const struct http_options *o, int concurrency)
{
    http_global_init();
    struct http_engine *e = xcalloc(1, sizeof(*e));
    if (o)
        e->opts = *o;
    e->ca_file = e->opts.ca_file ? xstrdup(e->opts.ca_file) : NULL;
    e->opts.ca_file = e->ca_file;
    e->concurrency = concurrency < 1 ? 1 : concurrency;
    e->multi = curl_multi_init();
    if (!e->multi)
        abort();
    /* the limit on transfers is ours (urgent calls may pass it); curl only keeps
     * that many idle connections for reuse */
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)e->concurrency);
    e->pool = xcalloc((size_t)ENGINE_POOL(e), sizeof(*e->pool));
    pthread_mutex_init(&e->lock, NULL);
    return e;
}

/* --- under the mutex --------------------------------------------------------------- */

static void end_locked(struct http_engine *e, struct http_call *c, int rc, struct err_saved *err)
{
    if (c->in_cmds) {
        struct http_call **pp = &e->cmds;
        while (*pp != c)
            pp = &(*pp)->cnext;
        *pp = c->cnext;
        c->in_cmds = false;
    }
    c->state = CALL_ENDED;
    c->rc = rc;
    c->err = err;
    if (c->g->waiting)
        pthread_cond_signal(&c->g->cond);
}

static void command_locked(struct http_engine *e, struct http_call *c)
{
    if (!c->in_cmds) {
        c->in_cmds = true;
        c->cnext = e->cmds;
        e->cmds = c;
    }
    curl_multi_wakeup(e->multi);
}

static void unqueue_locked(struct http_engine *e, struct http_call *c)
{
    struct http_call **pp = &e->qhead, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp)
        return;
    *pp = c->qnext;
    if (e->qtail == c)
        e->qtail = prev;
    c->qnext = NULL;
}

static void enqueue_locked(struct http_engine *e, struct http_call *c, bool front)
{
    c->state = CALL_QUEUED;
    c->qnext = NULL;
    if (!e->qhead) {
        e->qhead = e->qtail = c;
    } else if (front) {
        c->qnext = e->qhead;
        e->qhead = c;
    } else {
        e->qtail->qnext = c;
        e->qtail = c;
    }
}

static void cancel_locked(struct http_engine *e, struct http_call *c)
{
    if (c->cancelled)
        return;
    c->cancelled = true;
    buf_reset(&c->inbox);
    if (c->state == CALL_QUEUED) {
        unqueue_locked(e, c);
        end_locked(e, c, -ERR_CANCELED, NULL);
    } else if (c->state == CALL_RUNNING) {
        c->want_cancel = true;
        command_locked(e, c);
    }
}

static void pool_put_locked(struct http_engine *e, struct buf *b)
{
    if (b->cap && e->npool < ENGINE_POOL(e)) {
        buf_reset(b);
        e->pool[e->npool++] = *b;
    } else {
        buf_free(b);
    }
}

void http_engine_inbox_stats(struct http_engine *e, size_t *peak, uint64_t *pauses)
{
    pthread_mutex_lock(&e->lock);
    *peak = e->inbox_peak;
    *pauses = e->pauses;
    pthread_mutex_unlock(&e->lock);
}

/* --- engine thread --------------------------------------------------------------- */

/* The body sink of a running attempt: queue the bytes for the group's thread. */
static int inbox_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct http_call *c = ctx;
    struct http_engine *e = c->g->e;
    int rc = 0;
    pthread_mutex_lock(&e->lock);
    if (c->cancelled) {
        rc = err_set(ERR_CANCELED, "transfer cancelled");
    } else if (c->inbox.len && c->inbox.len + len > HTTP_ENGINE_INBOX) {
        c->paused = true;
        e->pauses++;
        rc = HTTP_SINK_PAUSE;
    } else {
        /* the waiting thread is woken once enough has come to be worth a switch of
         * threads (or when the call ends), not for every piece curl hands over */
        bool below = c->inbox.len < HTTP_ENGINE_WAKE;
        if (!c->inbox.cap && e->npool)
            c->inbox = e->pool[--e->npool];
        buf_append(&c->inbox, data, len);
        c->received += len;
        if (c->inbox.len > e->inbox_peak)
            e->inbox_peak = c->inbox.len;
        if (below && c->inbox.len >= HTTP_ENGINE_WAKE && c->g->waiting)
            pthread_cond_signal(&c->g->cond);
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static void slot_release(struct http_engine *e, struct http_call *c)
{
    curl_multi_remove_handle(e->multi, c->x.easy);
    if (e->nidle == e->cap_idle) {
        e->cap_idle = e->cap_idle ? 2 * e->cap_idle : 8;
        e->idle = xrealloc(e->idle, (size_t)e->cap_idle * sizeof(*e->idle));
    }
    e->idle[e->nidle++] = c->x.easy;
    c->x.easy = NULL;
}

/* An attempt is over (rc from the transfer): ask the call what next, then end it or
 * queue its retry. */
static void attempt_over(struct http_engine *e, struct http_call *c, int rc)
{
    int64_t retry_ms = -1;
    rc = c->spec.after(c->spec.ctx, rc, &c->resp, &retry_ms);
    pthread_mutex_lock(&e->lock);
    e->nactive--;
    if (retry_ms >= 0 && !c->want_cancel) {
        err_clear();
        c->not_before_us = http_now_us() + retry_ms * 1000;
        enqueue_locked(e, c, false);
    } else if (c->want_cancel) {
        err_clear();
        end_locked(e, c, -ERR_CANCELED, NULL);
    } else {
        end_locked(e, c, rc, rc < 0 ? err_save() : NULL);
    }
    pthread_mutex_unlock(&e->lock);
}

/* Carry out cancels and resumes asked for by the groups' threads. */
static void run_commands(struct http_engine *e)
{
    while (e->cmds) {
        struct http_call *c = e->cmds;
        e->cmds = c->cnext;
        c->in_cmds = false;
        if (c->state != CALL_RUNNING) {
            c->want_resume = false;
            continue;
        }
        if (c->want_cancel) {
            pthread_mutex_unlock(&e->lock);
            slot_release(e, c);
            http_xfer_drop(&c->x);
            int rc = err_set(ERR_CANCELED, "%s \"%s\" cancelled", c->req.method, c->req.url);
            attempt_over(e, c, rc);
            pthread_mutex_lock(&e->lock);
        } else if (c->want_resume) {
            c->want_resume = false;
            pthread_mutex_unlock(&e->lock);
            curl_easy_pause(c->x.easy, CURLPAUSE_CONT); /* may run inbox_sink */
            pthread_mutex_lock(&e->lock);
        }
    }
}

/* Start due calls while there is a free slot (urgent ones in any case). Returns the
 * delay in ms until a waiting retry is due, -1 when none. Mutex held. */
static long start_due(struct http_engine *e)
{
    for (;;) {
        int64_t now = http_now_us();
        long wait_ms = -1;
        struct http_call *c;
        for (c = e->qhead; c; c = c->qnext) {
            if (c->not_before_us > now) {
                long ms = (long)((c->not_before_us - now + 999) / 1000);
                if (wait_ms < 0 || ms < wait_ms)
                    wait_ms = ms;
                continue;
            }
            if (c->urgent || e->nactive < e->concurrency)
                break;
        }
        if (!c)
            return wait_ms;
        unqueue_locked(e, c);
        c->state = CALL_RUNNING;
        e->nactive++;
        uint64_t received = c->received;
        pthread_mutex_unlock(&e->lock);

        memset(&c->req, 0, sizeof(c->req));
        int rc = c->spec.before(c->spec.ctx, &c->req, received);
        if (rc < 0) {
            struct err_saved *err = err_save();
            pthread_mutex_lock(&e->lock);
            e->nactive--;
            end_locked(e, c, rc, err);
            continue;
        }
        if (c->spec.sink) {
            c->req.sink = inbox_sink;
            c->req.sink_ctx = c;
        }
        CURL *easy = e->nidle ? e->idle[--e->nidle] : curl_easy_init();
        if (!easy)
            abort();
        c->x.easy = easy;
        http_xfer_setup(&c->x, &e->opts, &c->req, &c->resp);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, c);
        curl_multi_add_handle(e->multi, easy);
        pthread_mutex_lock(&e->lock);
    }
}

/* Collect the transfers curl has finished; returns how many. */
static int reap(struct http_engine *e)
{
    CURLMsg *msg;
    int left = 0, n = 0;
    while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_call *c = NULL;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        int rc = http_xfer_finish(&c->x, code);
        slot_release(e, c);
        attempt_over(e, c, rc);
        n++;
    }
    return n;
}

static void *engine_main(void *arg)
{
    struct http_engine *e = arg;
    tl_engine = e;
    pthread_mutex_lock(&e->lock);
    while (!e->stopping) {
        run_commands(e);
        long wait_ms = start_due(e);
        pthread_mutex_unlock(&e->lock);
        int running = 0;
        curl_multi_perform(e->multi, &running);
        if (reap(e) == 0) {
            /* woken early by socket activity or curl_multi_wakeup */
            long timeout = wait_ms >= 0 && wait_ms < 1000 ? wait_ms : 1000;
            curl_multi_poll(e->multi, NULL, 0, (int)timeout, NULL);
        }
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void http_engine_free(struct http_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    curl_multi_wakeup(e->multi);
    bool started = e->started;
    pthread_mutex_unlock(&e->lock);
    if (started)
        pthread_join(e->thread, NULL);
    for (int i = 0; i < e->nidle; i++)
        curl_easy_cleanup(e->idle[i]);
    curl_multi_cleanup(e->multi);
    pthread_mutex_destroy(&e->lock);
    for (int i = 0; i < e->npool; i++)
        buf_free(&e->pool[i]);
    free(e->pool);
    free(e->idle);
    free(e->ca_file);
    free(e);
}

/* --- the groups' threads ------------------------------------------------------------ */

struct http_group *http_group_new(struct http_engine *e)
{
    struct http_group *g = xcalloc(1, sizeof(*g));
    g->e = e;
    pthread_cond_init(&g->cond, NULL);
    return g;
}

struct http_call *http_group_start(struct http_group *g, const struct http_call_spec *spec)
{
    struct http_engine *e = g->e;
    if (tl_engine) {
        err_set(ERR_RUNTIME, "internal error: an HTTP request from inside the transfer engine");
        return NULL;
    }
    struct http_call *c = xcalloc(1, sizeof(*c));
    c->spec = *spec;
    c->g = g;
    c->resp.content_length = -1;
    pthread_mutex_lock(&e->lock);
    if (!e->started) {
        /* process signals (SIGTERM, SIGHUP) stay with the threads that wait for them:
         * the engine thread starts with all of them blocked */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
            abort(); /* as an allocation failure: nothing sensible is left to do */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        e->started = true;
    }
    /* this thread waits on g while it may hold transfers of its other groups, which
     * may be paused until it takes their bytes: c must not wait for their slots */
    c->urgent = tl_calls > g->ncalls;
    c->gnext = g->head;
    g->head = c;
    g->ncalls++;
    tl_calls++;
    enqueue_locked(e, c, c->urgent);
    curl_multi_wakeup(e->multi);
    pthread_mutex_unlock(&e->lock);
    return c;
}

/* Hand c's queued bytes to its sink, without the mutex. Mutex held. */
static void deliver_locked(struct http_engine *e, struct http_call *c)
{
    struct buf got = c->inbox;
    c->inbox = c->spare;
    c->spare = got;
    if (c->paused) {
        c->paused = false;
        c->want_resume = true;
        command_locked(e, c);
    }
    pthread_mutex_unlock(&e->lock);
    int rc = c->spec.sink(c->spec.sink_ctx, c->spare.data, c->spare.len);
    struct err_saved *err = rc < 0 ? err_save() : NULL;
    buf_reset(&c->spare);
    pthread_mutex_lock(&e->lock);
    if (rc < 0 && !c->cancelled) {
        c->sink_rc = rc;
        c->sink_err = err;
        cancel_locked(e, c);
    } else {
        http_err_discard(err);
    }
}

struct http_call *http_group_wait(struct http_group *g)
{
    struct http_engine *e = g->e;
    struct http_call *out = NULL;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct http_call *c, *ended = NULL, **ended_pp = NULL, **pp;
        for (pp = &g->head; (c = *pp) != NULL; pp = &c->gnext) {
            if (c->inbox.len && !c->cancelled)
                break;
            if (c->state == CALL_ENDED && !ended) {
                ended = c;
                ended_pp = pp;
            }
        }
        if (c) {
            deliver_locked(e, c);
            continue;
        }
        if (ended) {
            *ended_pp = ended->gnext;
            g->ncalls--;
            tl_calls--;
            out = ended;
            break;
        }
        if (!g->head)
            break;
        g->waiting = true;
        pthread_cond_wait(&g->cond, &e->lock);
        g->waiting = false;
    }
    pthread_mutex_unlock(&e->lock);
    return out;
}

void http_group_cancel(struct http_group *g)
{
    pthread_mutex_lock(&g->e->lock);
    for (struct http_call *c = g->head; c; c = c->gnext)
        cancel_locked(g->e, c);
    pthread_mutex_unlock(&g->e->lock);
}

void *http_call_ctx(const struct http_call *c)
{
    return c->spec.ctx;
}

int http_call_finish(struct http_call *c, struct http_response *resp)
{
    int rc = c->rc;
    if (c->sink_err) {
        rc = c->sink_rc;
        http_err_discard(c->err);
        err_restore(c->sink_err);
    } else if (c->err) {
        err_restore(c->err);
    } else if (rc < 0) {
        rc = err_set(ERR_CANCELED, "transfer cancelled");
    }
    http_response_free(resp);
    *resp = c->resp;
    struct http_engine *e = c->g->e;
    pthread_mutex_lock(&e->lock);
    pool_put_locked(e, &c->inbox);
    pool_put_locked(e, &c->spare);
    pthread_mutex_unlock(&e->lock);
    free(c);
    return rc;
}

void http_group_free(struct http_group *g)
{
    if (!g)
        return;
    http_group_cancel(g);
    struct err_saved *saved = err_save();
    struct http_call *c;
    while ((c = http_group_wait(g)) != NULL) {
        struct http_response resp = {0};
        http_call_finish(c, &resp);
        http_response_free(&resp);
    }
    err_restore(saved);
    pthread_cond_destroy(&g->cond);
    free(g);
}

int http_engine_run(struct http_engine *e, const struct http_call_spec *spec,
                    struct http_response *resp)
{
    struct http_group *g = http_group_new(e);
    int rc;
    struct http_call *c = http_group_start(g, spec);
    if (!c) {
        rc = err_code();
        goto out;
    }
    c = http_group_wait(g);
    rc = http_call_finish(c, resp);
out:
    http_group_free(g);
    return rc;
}
