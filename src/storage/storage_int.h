/* storage_int.h — what the generic storage layer's files share (not drivers). */
#ifndef PGARK_STORAGE_INT_H
#define PGARK_STORAGE_INT_H

#include "pgark/storage.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Add "in repository \"NAME\"" to the current error; returns its code. */
int storage_add_context(struct storage *s);

/* storage_write_data/commit/abort of a handle from storage_batch_write_open. */
int storage_batch_write_data(struct storage_write *w, const void *data, size_t len);
int storage_batch_write_commit(struct storage_write *w);
void storage_batch_write_abort(struct storage_write *w);

/* defer.c: this thread defers the directory syncs of writes through s (its driver
 * has a sync); and the sync a write or rename that is not deferred runs first, with
 * context naming path. */
bool storage_deferring(struct storage *s);
int storage_sync_before(struct storage *s, const char *path);

#endif
