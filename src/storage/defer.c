/*
 * defer.c — deferred directory syncs of the generic storage layer.
 *
 * Writes a thread opens between storage_defer_sync_begin and _end on a handle (chunks:
 * content-addressed and named by nothing until a manifest is written) leave their
 * directory fsyncs to the driver's sync; every other write or rename through the handle
 * runs that sync first (storage_sync_before), so nothing that may name those objects is
 * published before they are durable. Moved out of storage.c whole.
 */
#include "storage_int.h"

#include "pgark/error.h"

#include <stdbool.h>

/* The handle whose writes this thread is deferring (storage_defer_sync_begin), if any. */
static _Thread_local struct storage *defer_scope;

void storage_defer_sync_begin(struct storage *s)
{
    defer_scope = s;
}

void storage_defer_sync_end(struct storage *s)
{
    if (defer_scope == s)
        defer_scope = NULL;
}

bool storage_deferring(struct storage *s)
{
    return defer_scope == s && s->ops->sync != NULL;
}

/* Before a write or rename that is not deferred: what was deferred becomes durable
 * first, since the new object may name it (a manifest naming chunks). */
int storage_sync_before(struct storage *s, const char *path)
{
    if (!s->ops->sync)
        return 0;
    int rc = s->ops->sync(s);
    if (rc < 0)
        err_context("while making earlier writes durable before writing \"%s\"", path);
    return rc;
}

int storage_sync(struct storage *s)
{
    if (!s->ops->sync)
        return 0;
    int rc = s->ops->sync(s);
    if (rc < 0)
        storage_add_context(s);
    return rc;
}
