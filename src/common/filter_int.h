/*
 * filter_int.h — internal extension of filter.h for observers.
 *
 * An observer only looks at bytes. Written as a plain filter it would have to copy
 * every byte from its input to its output buffer; a chain can instead show it the
 * bytes and hand the same pointer to the next stage. Observers built here keep
 * working through the ordinary process() entry point (filter_run, foreign callers):
 * filter_observer_process copies and calls observe. The chain recognises them by that
 * process pointer, so no flag is needed in the public filter_ops.
 */
#ifndef PGARK_FILTER_INT_H
#define PGARK_FILTER_INT_H

#include "pgark/filter.h"

struct filter_observer_ops {
    struct filter_ops base; /* base.process must be filter_observer_process */
    /* See len bytes; finish is true exactly once, with the last (possibly empty) piece. */
    void (*observe)(struct filter *f, const uint8_t *data, size_t len, bool finish);
};

int filter_observer_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done);

/* The observer ops of f, or NULL when f is not an observer built on this file. */
const struct filter_observer_ops *filter_observer_ops(const struct filter *f);

#endif
