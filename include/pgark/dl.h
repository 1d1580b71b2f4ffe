/*
 * dl.h — shared libraries loaded on first use.
 *
 * Promise: dl_sym returns the library's function or does not return. The first call
 * for a library loads it (dlopen RTLD_NOW | RTLD_LOCAL, never closed) and looks up all
 * its names; any thread may call, the loading happens once. A library that cannot be
 * loaded, or lacks a name, is reported once through the logger (the library, dlerror's
 * text, a hint naming the package to install) and the process exits with the status
 * of dl_set_failure_status (1 unless set): the callers are shims standing in for the
 * library's own functions, whose call sites have no way to take such an error.
 */
#ifndef PGARK_DL_H
#define PGARK_DL_H

#include <stdatomic.h>
#include <stddef.h>

struct dl_library {
    const char *soname;       /* "libcurl.so.4" */
    const char *package;      /* the Debian package providing it, for the hint */
    const char *const *names; /* n function names */
    void **syms;              /* n slots, filled on first use */
    size_t n;
    atomic_bool loaded;
};

/* The address of lib->names[i], loading the library on first use (see above). */
void *dl_sym(struct dl_library *lib, size_t i);

/* The exit status for a library that cannot be loaded; a command whose caller reads
 * exit codes its own way (wal-fetch) sets it before anything can load a library. */
void dl_set_failure_status(int status);

/* Helpers for a shim's table: LIST(X) names each function once, and
 *   enum { LIST(DL_ENUM) N };  static const char *const names[] = {LIST(DL_NAME)};  */
#define DL_ENUM(name) DL_##name,
#define DL_NAME(name) #name,

#endif
