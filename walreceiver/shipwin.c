/*
 * shipwin.c — the order in which segments pushed at once may move a shipper's cursor
 * (see struct ship_window in receiver_int.h).
 */
#include "receiver_int.h"

#include <string.h>

void ship_window_start(struct ship_window *w, int n)
{
    memset(w, 0, sizeof(*w));
    w->n = n < 0 ? 0 : n > SHIP_QUEUE_MAX ? SHIP_QUEUE_MAX : n;
}

void ship_window_end(struct ship_window *w, int i, bool ok)
{
    if (i >= 0 && i < w->n)
        w->state[i] = ok ? SHIP_SLOT_DONE : SHIP_SLOT_FAILED;
}

int ship_window_take(struct ship_window *w)
{
    int from = w->settled;
    while (w->settled < w->n && w->state[w->settled] == SHIP_SLOT_DONE)
        w->settled++;
    return w->settled - from;
}
