/* testhook.c — pauses for the test suite (see include/pgark/testhook.h). */
#include "pgark/testhook.h"
#include "pgark/log.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t paused_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *paused[8]; /* the variables paused for already */

/* Whether var was paused for before; records it if not. */
static bool paused_before(const char *var)
{
    bool seen = false;
    size_t i = 0;
    pthread_mutex_lock(&paused_lock);
    for (; i < sizeof(paused) / sizeof(*paused) && paused[i]; i++)
        seen = seen || strcmp(paused[i], var) == 0;
    if (!seen && i < sizeof(paused) / sizeof(*paused))
        paused[i] = var;
    pthread_mutex_unlock(&paused_lock);
    return seen;
}

void testhook_pause(const char *var, const char *what)
{
    const char *path = getenv(var);
    if (!path || !*path || paused_before(var))
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        log_warn("%s: cannot create \"%s\": %s", var, path, strerror(errno));
        return;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    log_info("paused %s until \"%s\" is removed", what, path);
    struct timespec ts = {0, 50 * 1000000L};
    while (access(path, F_OK) == 0)
        nanosleep(&ts, NULL);
}
