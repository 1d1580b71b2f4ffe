/*
 * rpolog_int.h — the receiver's RPO history (rpolog.c): a sample a minute of the worst
 * RPO of each tier, appended to <spool>/<cluster>/rpo-history (pgark/rpohist.h), and
 * shipped to every repository, for `pgark report`.
 */
#ifndef PGARK_RPOLOG_INT_H
#define PGARK_RPOLOG_INT_H

#include "pgark/repo.h"

#include <jansson.h>
#include <stdint.h>

/* status.json was just written with rpo (its "rpo" object, of any vintage: a tier's
 * {"seconds"} or "<tier>_seconds"): keep the worst of each tier for the minute, and
 * append the minute's sample when it is over (the first one at once). Thread-safe; a
 * failure to write is logged at detail and forgotten. */
void receiver_rpo_note(const char *spool_dir, int64_t now_us, json_t *rpo);
/* From a shipper's thread, between two steps: store the history in repository r (named
 * name) as the record receiver/rpo-history.json when it changed, at most every 10
 * minutes. A failure is logged at detail and tried again at the next interval. */
void receiver_rpo_ship(struct repo *r, const char *name, const char *spool_dir);

#endif
