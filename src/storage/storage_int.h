/* storage_int.h — what the generic storage layer's files share (not drivers). */
#ifndef PGARK_STORAGE_INT_H
#define PGARK_STORAGE_INT_H

#include "pgark/storage.h"

#include <stddef.h>
#include <stdint.h>

/* Add "in repository \"NAME\"" to the current error; returns its code. */
int storage_add_context(struct storage *s);

/* storage_write_data/commit/abort of a handle from storage_batch_write_open. */
int storage_batch_write_data(struct storage_write *w, const void *data, size_t len);
int storage_batch_write_commit(struct storage_write *w);
void storage_batch_write_abort(struct storage_write *w);

#endif
