/*
 * progress.h — a one-line progress display for long work on a terminal.
 *
 * Promise: while enabled, the line "\r<what>: 1.2 GiB of 3.0 GiB (40%), 150 MiB/s, ETA 14s"
 * is redrawn at most four times a second, and progress_done() leaves a final line ending
 * in a newline. When not enabled nothing at all is written, so callers never test
 * whether a terminal is attached beyond the flag they pass in. Any number of threads
 * may report progress on one object at once; only one of them draws at a time.
 * Every function accepts NULL and then does nothing.
 */
#ifndef PGARK_PROGRESS_H
#define PGARK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress;

/* New display for `what` ("backup", copied). total is the expected byte count, 0 when
 * unknown (then no percentage and no ETA). enabled is the caller's decision, normally
 * isatty(2) && !--no-progress. Never returns NULL. */
struct progress *progress_new(const char *what, uint64_t total, bool enabled);
/* Write to stream (not owned) instead of stderr; for tests. */
void progress_set_stream(struct progress *p, FILE *stream);
/* Replace the monotonic clock (microseconds) the display uses for rate limiting, rate
 * and ETA; for tests. */
void progress_set_clock(struct progress *p, int64_t (*now_us)(void));

/* Set the bytes done so far, and redraw if the last draw is 250 ms old. */
void progress_update(struct progress *p, uint64_t done);
/* Add n bytes done (atomically; for worker threads), redrawing as progress_update. */
void progress_add(struct progress *p, uint64_t n);
/* Bytes done so far. */
uint64_t progress_get(const struct progress *p);

/* Print the final line ("<what>: 3.0 GiB in 20s, 150 MiB/s") and a newline. Later
 * updates draw nothing; calling it again does nothing. */
void progress_done(struct progress *p);
/* Free. If a line was drawn and progress_done() was not called (an error path), the
 * line is ended first so that the next message starts on a line of its own. */
void progress_free(struct progress *p);

#endif
