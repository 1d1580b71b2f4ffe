/*
 * prep.c — spool items prepared once for every shipper (see receiver_int.h).
 *
 * Every shipper pushes the same items, and most of the work of a push (reading the
 * segment, its SHA-256, its time index, compressing it) does not depend on the
 * repository: the first shipper that needs an item prepares it (repo_wal_prepare) and
 * the others push from what it prepared. A few slots hold prepared items: one more
 * than there are shippers, so that however the shippers are spread over items, one
 * slot is free to prepare into. An item leaves its slot once every shipper expected
 * to want it took it (those behind it and not failing, said the one that prepared it),
 * when its slot is needed and nobody is using it, or when the receiver needs room in
 * the spool: its scratch file must never be what keeps the spool full. A shipper
 * that lags behind, its repository down, prepares for itself when it catches up.
 */
#include "receiver_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

enum slot_state { SLOT_EMPTY, SLOT_BUILDING, SLOT_READY };

struct prep_slot {
    enum slot_state state;
    char name[WAL_NAME_BUFLEN];
    bool partial;
    uint64_t len;
    struct repo_wal_prepared *p;
    int users;  /* shippers pushing from it now (the builder too, while building) */
    int taken;  /* shippers that took it so far */
    int wanted; /* shippers expected to take it */
};

struct prep_cache {
    pthread_mutex_t lock; /* guards the slots */
    pthread_cond_t built;
    pthread_mutex_t build; /* one preparation at a time: the preparer has one context */
    struct repo_wal_preparer *preparer;
    int nshippers;
    int nslots;
    struct prep_slot *slots;
};

struct prep_cache *prep_cache_new(const struct repo_identity *id, const struct repo_codecs *codecs,
                                  const char *scratch_dir, int nshippers)
{
    struct repo_wal_preparer *preparer = repo_wal_preparer_new(id, codecs, scratch_dir);
    if (!preparer)
        return NULL;
    struct prep_cache *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->built, NULL);
    pthread_mutex_init(&c->build, NULL);
    c->preparer = preparer;
    c->nshippers = nshippers;
    c->nslots = nshippers + 1;
    c->slots = xcalloc((size_t)c->nslots, sizeof(*c->slots));
    return c;
}

void prep_cache_free(struct prep_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nslots; i++)
        repo_wal_prepared_free(c->slots[i].p);
    free(c->slots);
    repo_wal_preparer_free(c->preparer);
    pthread_mutex_destroy(&c->build);
    pthread_cond_destroy(&c->built);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct prep_slot *find(struct prep_cache *c, const char *name, bool partial, uint64_t len)
{
    for (int i = 0; i < c->nslots; i++) {
        struct prep_slot *s = &c->slots[i];
        if (s->state != SLOT_EMPTY && s->partial == partial && s->len == len &&
            strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

/* A slot nobody uses: an empty one, else the one holding the oldest item. */
static struct prep_slot *victim(struct prep_cache *c)
{
    struct prep_slot *best = NULL;
    for (int i = 0; i < c->nslots; i++) {
        struct prep_slot *s = &c->slots[i];
        if (s->state == SLOT_EMPTY)
            return s;
        if (s->state == SLOT_READY && s->users == 0 && (!best || strcmp(s->name, best->name) < 0))
            best = s;
    }
    return best;
}

int prep_acquire(struct prep_cache *c, const char *name, bool partial, int fd, uint64_t len,
                 int wanted, struct repo_wal_prepared **out)
{
    struct repo_wal_prepared *old = NULL, *made = NULL;
    struct prep_slot *s;
    int rc = 0;

    *out = NULL;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        s = find(c, name, partial, len);
        if (!s || s->state == SLOT_READY)
            break;
        pthread_cond_wait(&c->built, &c->lock); /* another shipper is preparing it */
    }
    if (s) {
        s->users++;
        s->taken++;
        if (wanted > s->wanted)
            s->wanted = wanted;
        *out = s->p;
        pthread_mutex_unlock(&c->lock);
        goto out;
    }
    s = victim(c);
    if (!s) { /* cannot happen with a slot more than shippers; push the ordinary way */
        pthread_mutex_unlock(&c->lock);
        goto out;
    }
    old = s->p;
    s->p = NULL;
    s->state = SLOT_BUILDING;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->partial = partial;
    s->len = len;
    s->users = 1;
    s->taken = 1;
    s->wanted = wanted;
    pthread_mutex_unlock(&c->lock);

    repo_wal_prepared_free(old);
    pthread_mutex_lock(&c->build);
    rc = repo_wal_prepare(c->preparer, name, partial, fd, len, &made);
    pthread_mutex_unlock(&c->build);

    pthread_mutex_lock(&c->lock);
    if (rc == 0) {
        s->p = made;
        s->state = SLOT_READY;
        *out = made;
    } else {
        s->state = SLOT_EMPTY; /* whoever waits for it prepares it again */
        s->users = s->taken = 0;
    }
    pthread_cond_broadcast(&c->built);
    pthread_mutex_unlock(&c->lock);
out:
    return rc;
}

void prep_release(struct prep_cache *c, struct repo_wal_prepared *p)
{
    struct repo_wal_prepared *done = NULL;
    if (!p)
        return;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->nslots; i++) {
        struct prep_slot *s = &c->slots[i];
        if (s->p != p)
            continue;
        s->users--;
        if (s->users == 0 && s->taken >= s->wanted) { /* nobody else is expected */
            done = s->p;
            s->p = NULL;
            s->state = SLOT_EMPTY;
        }
        break;
    }
    pthread_mutex_unlock(&c->lock);
    repo_wal_prepared_free(done);
}

int prep_cache_trim(struct prep_cache *c)
{
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->nslots; i++) {
        struct prep_slot *s = &c->slots[i];
        if (s->state == SLOT_READY && s->users == 0) {
            repo_wal_prepared_free(s->p); /* closes two descriptors: quick */
            s->p = NULL;
            s->state = SLOT_EMPTY;
            n++;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}
