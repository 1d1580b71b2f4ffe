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
 *
 * Why the shims keep the library's names. A call such as ZSTD_compressStream2(...) in
 * src/compress goes through this table, yet reads as the library's documented call,
 * not as zstd->compressStream2(...). That is on purpose, and safe for three reasons
 * the build enforces: each shim file (zstd_dl.c, crypto_dl.c, curl_dl.c, pq_dl.c) is
 * compiled against the library's own header, so a shim's prototype is the library's
 * and a mismatch does not compile; pgark is not linked with these libraries (the
 * Makefile's DL_PKGS give their headers only), so a call to a function that has no
 * shim fails to link rather than reach the library some other way; and only the
 * folder that owns a library includes its header (tests/harness/layers.pl), so these
 * names appear nowhere else in pgark (unit tests aside). Reading a libzstd,
 * libcrypto, libcurl or libpq call in its folder is reading a call through its shim:
 * one indirect call, as through the PLT, with the library loaded by the first one.
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

/* A shim's library, one per file: LIST(X) names each function once. Defines the
 * table (DL_<name> indexes it) and DL_REAL(name): the library's own function of that
 * name, loaded on first use, for the shim's definition of name to forward to. */
#define DL_ENUM(name) DL_##name,
#define DL_NAME(name) #name,
#define DL_LIBRARY(LIST, SONAME, PACKAGE)                                                          \
    enum { LIST(DL_ENUM) DL_NFUNCTIONS };                                                          \
    static const char *const dl_names[] = {LIST(DL_NAME)};                                         \
    static void *dl_syms[DL_NFUNCTIONS];                                                           \
    static struct dl_library dl_library = {.soname = SONAME,                                       \
                                           .package = PACKAGE,                                     \
                                           .names = dl_names,                                      \
                                           .syms = dl_syms,                                        \
                                           .n = DL_NFUNCTIONS}
#define DL_REAL(name) ((__typeof__(&name))dl_sym(&dl_library, DL_##name))

#endif
