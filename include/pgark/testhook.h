/*
 * testhook.h — pauses the test suite uses to reach a moment exactly, without sleeps.
 *
 * testhook_pause(VAR, what): with VAR=FILE in the environment, create FILE (holding the
 * pid), log that the process is paused at `what`, and wait, polling every 50 ms, until
 * FILE is removed. It pauses once per variable in a process: later calls return at once
 * (verify lists each repository's archive in turn; the test pauses the first). Without VAR
 * (or with it empty) it returns at once. Each variable is named where its pause is;
 * nothing else reads them.
 */
#ifndef PGARK_TESTHOOK_H
#define PGARK_TESTHOOK_H

void testhook_pause(const char *var, const char *what);

#endif
