/* dl.c — shared libraries loaded on first use (see include/pgark/dl.h). */
#include "pgark/dl.h"

#include "pgark/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int failure_status = 1;

void dl_set_failure_status(int status)
{
    failure_status = status;
}

/* Threads may be running and a forked read-ahead may be the caller: _exit once the
 * message is out, rather than run atexit handlers under other threads' feet. */
static void fail(const struct dl_library *lib)
{
    const char *why = dlerror();
    err_set(ERR_RUNTIME, "could not load \"%s\": %s", lib->soname, why ? why : "unknown error");
    err_hint("install the package %s (apt-get install %s)", lib->package, lib->package);
    err_print();
    fflush(NULL);
    _exit(failure_status);
}

static void load(struct dl_library *lib)
{
    void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        fail(lib);
    for (size_t i = 0; i < lib->n; i++) {
        (void)dlerror();
        lib->syms[i] = dlsym(handle, lib->names[i]);
        if (!lib->syms[i])
            fail(lib);
    }
    atomic_store_explicit(&lib->loaded, true, memory_order_release);
}

void *dl_sym(struct dl_library *lib, size_t i)
{
    if (!atomic_load_explicit(&lib->loaded, memory_order_acquire)) {
        pthread_mutex_lock(&load_lock);
        if (!atomic_load_explicit(&lib->loaded, memory_order_relaxed))
            load(lib);
        pthread_mutex_unlock(&load_lock);
    }
    return lib->syms[i];
}
