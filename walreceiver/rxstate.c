/*
 * rxstate.c — the lifetime of the receiver's shared state.
 *
 * The receive loop and every shipper thread hold a reference. A shipper stuck in an
 * upload to a dead server may outlive receiver_run (it is left behind after the stop
 * deadline); it then still uses the receiver, its repository, the storage under it
 * and the options, so all of them are owned here, copied from the caller's, and freed
 * by whoever lets go last.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct receiver *receiver_new(const struct receiver_options *o)
{
    struct receiver *rx = xcalloc(1, sizeof(*rx));
    struct receiver_options *c = &rx->opts;
    *c = *o;
    c->repo.cluster = dup_or_null(o->repo.cluster);
    c->conninfo = dup_or_null(o->conninfo);
    c->slot = dup_or_null(o->slot);
    c->application_name = dup_or_null(o->application_name);
    c->spool_dir = dup_or_null(o->spool_dir);
    c->metrics_host = dup_or_null(o->metrics_host);
    c->repo.codecs.passphrase = dup_or_null(o->repo.codecs.passphrase);
    c->repos = xcalloc((size_t)o->nrepos + 1, sizeof(*c->repos));
    for (int i = 0; i < o->nrepos; i++) {
        c->repos[i] = o->repos[i];
        c->repos[i].name = xstrdup(o->repos[i].name);
    }
    rx->o = c;
    atomic_init(&rx->refs, 1);
    pthread_mutex_init(&rx->lock, NULL);
    pthread_cond_init(&rx->wake, NULL);
    pthread_mutex_init(&rx->status_lock, NULL);
    return rx;
}

void receiver_hold(struct receiver *rx)
{
    atomic_fetch_add(&rx->refs, 1);
}

static void free_secret(const char *s)
{
    if (s)
        secure_free((char *)s, strlen(s));
}

void receiver_release(struct receiver *rx)
{
    if (!rx || atomic_fetch_sub(&rx->refs, 1) != 1)
        return;
    for (int i = 0; i < rx->nshippers; i++) {
        repo_close(rx->shippers[i].repo);
        free(rx->shippers[i].last_error);
        if (rx->shippers[i].open_fatal) {
            struct err_saved *mine = err_save();
            err_restore(rx->shippers[i].open_fatal);
            err_restore(mine);
        }
    }
    free(rx->shippers);
    prep_cache_free(rx->prep);
    spool_close(rx->spool);
    free(rx->last_error);
    free(rx->bad_page_error);
    struct receiver_options *c = &rx->opts;
    for (int i = 0; i < c->nrepos; i++) {
        storage_free(c->repos[i].storage);
        free((char *)c->repos[i].name);
    }
    free(c->repos);
    free((char *)c->repo.cluster);
    free((char *)c->conninfo);
    free((char *)c->slot);
    free((char *)c->application_name);
    free((char *)c->spool_dir);
    free((char *)c->metrics_host);
    free_secret(c->repo.codecs.passphrase);
    pthread_cond_destroy(&rx->wake);
    pthread_mutex_destroy(&rx->status_lock);
    pthread_mutex_destroy(&rx->lock);
    free(rx);
}
