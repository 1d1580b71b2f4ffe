/* chunkset.c — a set of chunk names (see include/pgark/chunkset.h). */
#include "pgark/chunkset.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>

struct chunkset {
    uint8_t *slots;    /* cap * 32 bytes; an all-zero slot is empty */
    bool zero_present; /* the all-zero name, which cannot live in a slot */
    size_t cap;        /* power of two */
    size_t count;
};

static const uint8_t ZERO[SHA256_LEN];

struct chunkset *chunkset_new(void)
{
    struct chunkset *set = xcalloc(1, sizeof(*set));
    set->cap = 1024;
    set->slots = xcalloc(set->cap, SHA256_LEN);
    return set;
}

void chunkset_free(struct chunkset *set)
{
    if (!set)
        return;
    free(set->slots);
    free(set);
}

static size_t slot_of(const struct chunkset *set, const uint8_t *name)
{
    uint64_t h;
    memcpy(&h, name, sizeof(h));
    size_t i = (size_t)h & (set->cap - 1);
    while (memcmp(set->slots + i * SHA256_LEN, ZERO, SHA256_LEN) != 0 &&
           memcmp(set->slots + i * SHA256_LEN, name, SHA256_LEN) != 0)
        i = (i + 1) & (set->cap - 1);
    return i;
}

static void grow(struct chunkset *set)
{
    uint8_t *old = set->slots;
    size_t old_cap = set->cap;
    set->cap *= 2;
    set->slots = xcalloc(set->cap, SHA256_LEN);
    for (size_t i = 0; i < old_cap; i++) {
        const uint8_t *name = old + i * SHA256_LEN;
        if (memcmp(name, ZERO, SHA256_LEN) != 0)
            memcpy(set->slots + slot_of(set, name) * SHA256_LEN, name, SHA256_LEN);
    }
    free(old);
}

bool chunkset_add(struct chunkset *set, const uint8_t name[SHA256_LEN])
{
    if (memcmp(name, ZERO, SHA256_LEN) == 0) {
        bool added = !set->zero_present;
        set->zero_present = true;
        set->count += added;
        return added;
    }
    if ((set->count + 1) * 2 > set->cap)
        grow(set);
    size_t i = slot_of(set, name);
    uint8_t *slot = set->slots + i * SHA256_LEN;
    if (memcmp(slot, name, SHA256_LEN) == 0)
        return false;
    memcpy(slot, name, SHA256_LEN);
    set->count++;
    return true;
}

bool chunkset_has(const struct chunkset *set, const uint8_t name[SHA256_LEN])
{
    if (memcmp(name, ZERO, SHA256_LEN) == 0)
        return set->zero_present;
    return memcmp(set->slots + slot_of(set, name) * SHA256_LEN, name, SHA256_LEN) == 0;
}

size_t chunkset_count(const struct chunkset *set)
{
    return set->count;
}

int chunkset_add_listed(void *ctx, const char *name, uint64_t stored_size)
{
    uint8_t raw[SHA256_LEN];
    (void)stored_size;
    if (hex_decode(name, raw, SHA256_LEN) == 0)
        chunkset_add(ctx, raw);
    else
        err_clear();
    return 0;
}
