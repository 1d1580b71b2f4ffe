/*
 * chunkcache.c — the chunks a restore needs more than once, fetched once.
 *
 * A backup names the same chunk from many places: the catalogs that template0,
 * template1 and postgres share byte for byte, every database created from them, files
 * and ranges of zeros. writer_vet's reading of the manifest counts the references of
 * each chunk here; chunkcache_seal keeps only those referenced more than once. During
 * the restore the first piece to need such a chunk claims it and fetches it; pieces
 * that need it meanwhile wait for that fetch rather than make their own; the verified
 * plaintext (and its SHA-256) is then kept in memory until its last reference has been
 * served, and freed there. The plaintext kept is bounded by the cap given to
 * chunkcache_new: a chunk that does not fit is not kept, and its later references fetch
 * it again, as if there were no cache. A claim is held only across one fetch (never
 * while waiting for anything else), so waiting cannot deadlock; a failed fetch gives the
 * claim up and the next piece tries in its turn.
 */
#include "writer_int.h"

#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

enum { CC_FREE, CC_IDLE, CC_FETCHING, CC_READY };

struct cc_entry {
    uint8_t name[SHA256_LEN];
    uint32_t refs; /* references not served yet */
    uint8_t state;
    bool has_plain; /* CC_READY: its SHA-256 was given */
    size_t len;     /* CC_READY: the plaintext's length */
    uint8_t *bytes; /* CC_READY: the plaintext, then its SHA-256 */
};

struct chunkcache {
    struct cc_entry *slot;
    size_t mask; /* slots - 1, a power of two minus one */
    size_t n;
    uint64_t held, limit;
    bool canceled;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a fetch ended, or the restore failed */
};

static size_t slot_of(const struct chunkcache *c, const uint8_t name[SHA256_LEN])
{
    uint64_t h;
    memcpy(&h, name, sizeof(h)); /* names are digests: their bytes are the hash */
    return (size_t)h & c->mask;
}

static struct cc_entry *find(const struct chunkcache *c, const uint8_t name[SHA256_LEN])
{
    for (size_t i = slot_of(c, name);; i = (i + 1) & c->mask) {
        struct cc_entry *e = &c->slot[i];
        if (e->state == CC_FREE)
            return NULL;
        if (memcmp(e->name, name, SHA256_LEN) == 0)
            return e;
    }
}

/* The slot for name, free or its own (the table has room). */
static struct cc_entry *place(struct chunkcache *c, const uint8_t name[SHA256_LEN])
{
    for (size_t i = slot_of(c, name);; i = (i + 1) & c->mask) {
        struct cc_entry *e = &c->slot[i];
        if (e->state == CC_FREE || memcmp(e->name, name, SHA256_LEN) == 0)
            return e;
    }
}

static void alloc_slots(struct chunkcache *c, size_t slots)
{
    c->slot = xcalloc(slots, sizeof(*c->slot));
    c->mask = slots - 1;
    c->n = 0;
}

/* The entries that keep_min or more references still need, in a table sized for them
 * (load at most one half). */
static void rebuild(struct chunkcache *c, uint32_t keep_min)
{
    struct cc_entry *old = c->slot;
    size_t nold = c->mask + 1, keep = 0;
    for (size_t i = 0; i < nold; i++)
        keep += old[i].state != CC_FREE && old[i].refs >= keep_min;
    size_t slots = 16;
    while (slots < 2 * keep + 2)
        slots *= 2;
    alloc_slots(c, slots);
    for (size_t i = 0; i < nold; i++) {
        if (old[i].state == CC_FREE)
            continue;
        if (old[i].refs < keep_min) {
            free(old[i].bytes);
            continue;
        }
        *place(c, old[i].name) = old[i];
        c->n++;
    }
    free(old);
}

struct chunkcache *chunkcache_new(uint64_t limit)
{
    struct chunkcache *c = xcalloc(1, sizeof(*c));
    alloc_slots(c, 16);
    c->limit = limit;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    return c;
}

void chunkcache_free(struct chunkcache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        free(c->slot[i].bytes);
    free(c->slot);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void chunkcache_count(struct chunkcache *c, const uint8_t name[SHA256_LEN])
{
    pthread_mutex_lock(&c->lock);
    if (2 * (c->n + 1) > c->mask + 1)
        rebuild(c, 0);
    struct cc_entry *e = place(c, name);
    if (e->state == CC_FREE) {
        memcpy(e->name, name, SHA256_LEN);
        e->state = CC_IDLE;
        c->n++;
    }
    if (e->refs < UINT32_MAX)
        e->refs++;
    pthread_mutex_unlock(&c->lock);
}

void chunkcache_seal(struct chunkcache *c)
{
    pthread_mutex_lock(&c->lock);
    rebuild(c, 2);
    pthread_mutex_unlock(&c->lock);
}

size_t chunkcache_repeated(struct chunkcache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* One reference of e served: its bytes go with the last. */
static void served(struct chunkcache *c, struct cc_entry *e)
{
    if (e->refs > 0)
        e->refs--;
    if (e->refs == 0 && e->state == CC_READY) {
        free(e->bytes);
        e->bytes = NULL;
        c->held -= e->len;
        e->state = CC_IDLE;
    }
}

/* Keep a copy of the verified plaintext of e when a reference is still to come and it
 * fits under the cap. */
static void keep(struct chunkcache *c, struct cc_entry *e, const uint8_t *data, size_t len,
                 const uint8_t plain[SHA256_LEN])
{
    if (e->refs == 0 || c->held + len > c->limit)
        return;
    e->bytes = xmalloc(len + SHA256_LEN);
    memcpy(e->bytes, data, len);
    e->has_plain = plain != NULL;
    if (plain)
        memcpy(e->bytes + len, plain, SHA256_LEN);
    e->len = len;
    e->state = CC_READY;
    c->held += len;
}

int chunkcache_get(struct chunkcache *c, const uint8_t name[SHA256_LEN], uint8_t *dst, size_t len,
                   uint8_t plain[SHA256_LEN], bool *owner)
{
    int hit = 0;
    *owner = false;
    pthread_mutex_lock(&c->lock);
    struct cc_entry *e = find(c, name);
    while (e && e->state == CC_FETCHING && !c->canceled)
        pthread_cond_wait(&c->changed, &c->lock);
    if (e && e->state == CC_READY && e->len == len) {
        memcpy(dst, e->bytes, len);
        if (plain && e->has_plain)
            memcpy(plain, e->bytes + len, SHA256_LEN);
        else if (plain)
            sha256(dst, len, plain); /* kept for a file digested whole */
        served(c, e);
        hit = 1;
    } else if (e && e->state == CC_IDLE) {
        e->state = CC_FETCHING;
        *owner = true;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void chunkcache_done(struct chunkcache *c, const uint8_t name[SHA256_LEN], bool owner,
                     const uint8_t *data, size_t len, const uint8_t plain[SHA256_LEN])
{
    pthread_mutex_lock(&c->lock);
    struct cc_entry *e = find(c, name);
    if (e) {
        if (e->refs > 0)
            e->refs--;
        if (owner) {
            e->state = CC_IDLE;
            if (data)
                keep(c, e, data, len, plain);
            pthread_cond_broadcast(&c->changed);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void chunkcache_kept(struct chunkcache *c, const uint8_t name[SHA256_LEN], const uint8_t *data,
                     size_t len, const uint8_t plain[SHA256_LEN])
{
    pthread_mutex_lock(&c->lock);
    struct cc_entry *e = find(c, name);
    if (e) {
        if (e->refs > 0)
            e->refs--;
        if (e->state == CC_IDLE)
            keep(c, e, data, len, plain);
        else if (e->state == CC_READY && e->refs == 0)
            served(c, e); /* frees it */
    }
    pthread_mutex_unlock(&c->lock);
}

void chunkcache_cancel(struct chunkcache *c)
{
    pthread_mutex_lock(&c->lock);
    c->canceled = true;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

uint64_t chunkcache_held(struct chunkcache *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t h = c->held;
    pthread_mutex_unlock(&c->lock);
    return h;
}
