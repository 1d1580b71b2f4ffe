/*
 * retention.c — which backups retention keeps (ops_int.h). Pure: no I/O, so that the
 * rules are tested on their own.
 */
#include "ops_int.h"

#include <stdlib.h>
#include <string.h>

/* Newest first: later stop time, then the greater label. */
static bool newer(const struct retention_backup *a, const struct retention_backup *b)
{
    if (a->stop_time != b->stop_time)
        return a->stop_time > b->stop_time;
    return strcmp(a->label, b->label) > 0;
}

void retention_apply(struct retention_backup *b, size_t n, int full, int64_t window_ms,
                     int64_t now_us)
{
    for (size_t i = 0; i < n; i++)
        b[i].keep = full <= 0 && window_ms <= 0;
    if (n == 0 || (full <= 0 && window_ms <= 0))
        return;

    /* rank[i]: how many backups are newer than b[i] (n is small: quadratic is fine). */
    size_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        size_t rank = 0;
        for (size_t k = 0; k < n; k++)
            rank += k != i && newer(&b[k], &b[i]);
        if (full > 0 && rank < (size_t)full)
            b[i].keep = true;
        if (newer(&b[i], &b[newest]))
            newest = i;
    }
    if (window_ms > 0) {
        int64_t cutoff = now_us / 1000000 - window_ms / 1000;
        /* The newest backup that ended at or before the cutoff restores its start; every
         * moment after it needs it or a newer one. */
        size_t anchor = n;
        for (size_t i = 0; i < n; i++) {
            if (b[i].stop_time <= cutoff && (anchor == n || newer(&b[i], &b[anchor])))
                anchor = i;
        }
        for (size_t i = 0; i < n; i++) {
            if (b[i].stop_time > cutoff || i == anchor)
                b[i].keep = true;
        }
    }
    b[newest].keep = true;
}
