/*
 * error.h — the per-thread error slot.
 *
 * Promise: a function that fails records what went wrong here exactly once, at the
 * place that detected it (err_set*), and returns a negative code; every caller on the
 * way up may add context (err_context) and returns the same code. The top level
 * prints the whole chain once (err_print) and maps the kind to an exit code.
 * The slot is thread-local: each thread has its own, nothing is shared.
 */
#ifndef PGARK_ERROR_H
#define PGARK_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

enum err_kind {
    ERR_OK = 0,
    ERR_RUNTIME,     /* generic runtime failure (exit 1) */
    ERR_USAGE,       /* bad command line (exit 2) */
    ERR_CONFIG,      /* bad configuration (exit 2) */
    ERR_INTEGRITY,   /* corrupt, truncated or unauthenticated data (exit 3 in verify/check) */
    ERR_NOT_FOUND,   /* object/file/segment does not exist */
    ERR_EXISTS,      /* object exists with other content */
    ERR_IO,          /* local I/O failure */
    ERR_NO_SPACE,    /* disk full or quota */
    ERR_AUTH,        /* wrong credentials, wrong passphrase, permission denied */
    ERR_PROTOCOL,    /* peer spoke something unexpected */
    ERR_CONNECT,     /* could not reach a server */
    ERR_TRANSIENT,   /* worth retrying (5xx, timeouts, resets) */
    ERR_MISMATCH,    /* repository belongs to another cluster, wrong version, ... */
    ERR_CANCELED,    /* stopped by a signal */
    ERR_UNSUPPORTED, /* the server does not implement what was asked (HTTP 501) */
    ERR_KIND_COUNT
};

/* Record an error (replacing any earlier one) and return -kind. */
int err_set(enum err_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int err_setv(enum err_kind kind, const char *fmt, va_list ap);

/* As err_set, appending ": <strerror(errnum)>"; ENOSPC/EDQUOT turn ERR_IO into
 * ERR_NO_SPACE, EACCES/EPERM into ERR_AUTH, ENOENT into ERR_NOT_FOUND. */
int err_set_errno(enum err_kind kind, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Add a context line ("while shipping segment X to repo \"offsite\"") to the current
 * error and return its code (-kind; -ERR_RUNTIME if no error was set). */
int err_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Attach a hint line the user can act on; returns the current code. */
int err_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

enum err_kind err_kind(void);
const char *err_kind_name(enum err_kind kind);
/* The detector's message alone (no context), "" when none. */
const char *err_message(void);
/* The hint, or NULL. */
const char *err_hint_text(void);
/* Full text: message, then each context line as "\n  while ...", caller frees. */
char *err_format(void);
/* Code for return statements: -kind of the current error, or -ERR_RUNTIME. */
int err_code(void);
bool err_is_set(void);
void err_clear(void);

/* Exit code (README.md) for the current error: usage/config 2, integrity 3, else 1. */
int err_exit_code(void);

/* Print the current error (and hint) through the logger at level error, then clear. */
void err_print(void);
/* The same at level warn: a failure the command goes on past (one repository of
 * several), said as err_print would say it, hint included. */
void err_print_warn(void);

/* Save and restore the slot around cleanup code that may itself fail. */
struct err_saved;
struct err_saved *err_save(void);
void err_restore(struct err_saved *saved);
/* A copy of saved (NULL for NULL), e.g. to set one thread's error in several others
 * (pool.h); err_saved_free releases one that is not restored. */
struct err_saved *err_saved_copy(const struct err_saved *saved);
void err_saved_free(struct err_saved *saved);

#endif
