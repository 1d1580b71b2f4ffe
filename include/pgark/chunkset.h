/*
 * chunkset.h — a set of 32-byte chunk names: what a repository holds, what a backup or
 * an expire has marked.
 *
 * Promise: an open-addressing hash set of raw 32-byte names (uniformly distributed
 * digests, so their first eight bytes are the hash), memory about 64 bytes per name
 * (load factor at most one half). Not locked: callers serialise.
 */
#ifndef PGARK_CHUNKSET_H
#define PGARK_CHUNKSET_H

#include "pgark/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunkset;
struct chunkset *chunkset_new(void);
void chunkset_free(struct chunkset *set);
/* Add name; true if it was not there before. */
bool chunkset_add(struct chunkset *set, const uint8_t name[SHA256_LEN]);
bool chunkset_has(const struct chunkset *set, const uint8_t name[SHA256_LEN]);
size_t chunkset_count(const struct chunkset *set);
/* A repo_chunk_fn (repo_chunk_list) that adds each listed chunk to the set ctx; a name
 * that is not 64 hex digits is skipped. Always 0. */
int chunkset_add_listed(void *ctx, const char *name, uint64_t stored_size);

#endif
