/*
 * shipstop.c — the end of the stream and the end of the run, for the shippers: the tail
 * copied everywhere when the stream ends, each repository given its stop_timeout to take
 * what the spool holds before a stop, then the threads joined (or left behind).
 */
#include "receiver_int.h"

#include "pgark/log.h"
#include "pgark/units.h"

#include <stdio.h>
#include <time.h>

void shippers_stream_ended(struct receiver *rx)
{
    pthread_mutex_lock(&rx->lock);
    rx->tail_gen++;
    pthread_cond_broadcast(&rx->wake);
    pthread_mutex_unlock(&rx->lock);
}

void shippers_drain(struct receiver *rx)
{
    int64_t start = time_mono_us();
    int waited_for = 0;
    pthread_mutex_lock(&rx->lock);
    rx->draining = true;
    rx->tail_gen++;
    for (int i = 0; i < rx->nshippers; i++) {
        rx->shippers[i].drained = rx->shippers[i].drain_failed = false;
        if (rx->shippers[i].started && rx->o->repos[i].stop_timeout_ms > 0)
            waited_for++;
    }
    pthread_cond_broadcast(&rx->wake);
    if (waited_for)
        log_detail("waiting for the repositories to take the WAL the spool holds");
    for (;;) {
        int64_t now = time_mono_us(), next = 0;
        for (int i = 0; i < rx->nshippers; i++) {
            struct shipper *sh = &rx->shippers[i];
            int64_t until = start + rx->o->repos[i].stop_timeout_ms * 1000;
            if (sh->started && !sh->drained && now < until && (!next || until < next))
                next = until;
        }
        if (!next)
            break;
        /* Woken when a shipper is drained; a deadline is looked at every 100 ms. */
        if (next > now + 100000)
            next = now + 100000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (next - now) * 1000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&rx->wake, &rx->lock, &ts);
    }
    for (int i = 0; i < rx->nshippers; i++) {
        struct shipper *sh = &rx->shippers[i];
        if (!sh->started || (sh->drained && !sh->drain_failed))
            continue;
        char t[32], a[LSN_STRLEN], b[LSN_STRLEN], why[80], held[80];
        duration_format(rx->o->repos[i].stop_timeout_ms, t, sizeof(t));
        if (sh->drain_failed)
            snprintf(why, sizeof(why), "before the stop (its last attempt failed)");
        else
            snprintf(why, sizeof(why), "within its stop_timeout (%s)", t);
        if (sh->shipped_lsn)
            snprintf(held, sizeof(held), "it holds WAL up to %s", lsn_format(sh->shipped_lsn, a));
        else
            snprintf(held, sizeof(held), "nothing was shipped to it in this run");
        log_warn("repository \"%s\" did not take all the WAL the spool holds %s: %s, the "
                 "spool up to %s; the spool keeps the rest for the next run",
                 sh->name, why, held, lsn_format(rx->flushed, b));
    }
    pthread_mutex_unlock(&rx->lock);
}

void shippers_stop(struct receiver *rx, int64_t grace_ms)
{
    atomic_store(&rx->stopping, true);
    shippers_wake(rx);
    /* An upload to a dead server can take long to time out; the spool keeps what it
     * was shipping, so after a short grace period the receiver goes on without it.
     * The thread keeps its reference: what it uses stays alive until it ends. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    int64_t ns = deadline.tv_nsec + grace_ms * 1000000;
    deadline.tv_sec += ns / 1000000000;
    deadline.tv_nsec = ns % 1000000000;
    for (int i = 0; i < rx->nshippers; i++) {
        struct shipper *sh = &rx->shippers[i];
        if (!sh->started)
            continue;
        if (pthread_timedjoin_np(sh->thread, NULL, &deadline) != 0) {
            log_warn("repository \"%s\": abandoning the upload under way to stop in time",
                     sh->name);
            atomic_store(&sh->abandoned, true);
            pthread_detach(sh->thread);
        }
        sh->started = false;
    }
}
