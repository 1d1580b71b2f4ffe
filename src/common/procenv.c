/* procenv.c — a clean environment for the programs pgark starts (see procenv.h). */
#include "pgark/procenv.h"

#include "pgark/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Exact names: a pattern such as LC_* would let LC_MY_TOKEN through. */
static const char *const allowed[] = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_COLLATE",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_ADDRESS",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_NAME",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LD_LIBRARY_PATH",
    "PG_OOM_ADJUST_FILE",
    "PG_OOM_ADJUST_VALUE",
    NULL,
};

/* Does entry ("NAME=VALUE") have this name? */
static bool named(const char *entry, const char *name, size_t len)
{
    return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

/* Is entry's name one of names? names are bare names, or "NAME=VALUE" entries when
 * entries is set. */
static bool listed(const char *const *names, const char *entry, bool entries)
{
    const char *eq = strchr(entry, '=');
    if (!eq || !names)
        return false;
    size_t len = (size_t)(eq - entry);
    for (const char *const *n = names; *n; n++) {
        size_t nlen = entries ? strcspn(*n, "=") : strlen(*n);
        if (nlen == len && strncmp(*n, entry, len) == 0)
            return true;
    }
    return false;
}

char **procenv_clean(char *const *from, const char *const *drop, const char *const *set)
{
    size_t cap = 1, n = 0;

    for (char *const *e = from; e && *e; e++)
        cap++;
    for (const char *const *s = set; s && *s; s++)
        cap++;
    char **env = xcalloc(cap, sizeof(*env));
    for (char *const *e = from; e && *e; e++)
        if (listed(allowed, *e, false) && !listed(drop, *e, false) && !listed(set, *e, true))
            env[n++] = xstrdup(*e);
    for (const char *const *s = set; s && *s; s++)
        if (strchr(*s, '='))
            env[n++] = xstrdup(*s);
    env[n] = NULL;
    return env;
}

void procenv_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

const char *procenv_get(char *const *env, const char *name)
{
    size_t len = strlen(name);
    for (char *const *e = env; e && *e; e++)
        if (named(*e, name, len))
            return *e + len + 1;
    return NULL;
}
