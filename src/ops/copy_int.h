/* copy_int.h — what the command `pgark copy` (copy.c) and its movers (copy_objects.c)
 * share. */
#ifndef PGARK_COPY_INT_H
#define PGARK_COPY_INT_H

#include "pgark/chunkset.h"
#include "pgark/repo.h"

#include <stdint.h>

struct copy_totals {
    uint64_t chunks_copied, chunks_present, stored_bytes, wal_copied, wal_present;
};

/* Backup label from A to B: the chunks B lacks (held: B's, listed, and those copied
 * are added), its WAL, and the manifest last (copy.c's order). */
int copy_backup(struct repo *a, struct repo *b, const char *label, struct chunkset *held,
                struct copy_totals *tot);
/* Every complete segment and history file of cluster's archive in A that B lacks. */
int copy_all_wal(struct repo *a, struct repo *b, const char *cluster, struct copy_totals *tot);

#endif
