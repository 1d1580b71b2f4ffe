/*
 * scratch.h — a scratch directory for a unit test: made under $TMPDIR (else /tmp), and
 * removed with everything beneath it, whatever the modes the test left there.
 */
#ifndef PGARK_TEST_SCRATCH_H
#define PGARK_TEST_SCRATCH_H

#include <stddef.h>

/* Makes "<tmp>/pgark-<name>-XXXXXX" into out (len bytes); 0, or -1 with errno set. */
int scratch_make(char *out, size_t len, const char *name);

/* Removes path and everything beneath it (directories made writable first); a path that
 * is not there is no error. */
void scratch_remove(const char *path);

#endif
