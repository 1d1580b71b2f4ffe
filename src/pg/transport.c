/*
 * transport.c — how a conninfo will reach its server, found without connecting: over
 * a Unix socket or TCP, and with which sslmode. libpq's own parser reads the conninfo;
 * what it leaves unset comes from PQconndefaults (PGHOST, PGHOSTADDR, PGSSLMODE, then
 * libpq's built-in defaults), as it would when connecting.
 */
#include "pgark/pg.h"

#include "pg_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entries of a comma-separated list (libpq's host and hostaddr); 0 when empty. */
static size_t list_count(const char *list)
{
    size_t n = 1;
    if (!list || !*list)
        return 0;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* The i-th entry, or "". */
static void list_item(const char *list, size_t i, char *out, size_t cap)
{
    const char *p = list ? list : "";
    for (; i > 0 && p; i--) {
        p = strchr(p, ',');
        if (p)
            p++;
    }
    if (!p) {
        out[0] = '\0';
        return;
    }
    size_t len = strcspn(p, ",");
    snprintf(out, cap, "%.*s", (int)len, p);
}

void pg_int_transport(const char *host, const char *hostaddr, const char *sslmode,
                      const char *sslmode_default, struct pg_transport *out)
{
    size_t nh = list_count(host), na = list_count(hostaddr);
    size_t n = nh > na ? nh : na;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n && !out->tcp; i++) {
        char h[sizeof(out->host)], a[sizeof(out->host)];

        list_item(host, i, h, sizeof(h));
        list_item(hostaddr, i, a, sizeof(a));
        /* A hostaddr is always TCP. A host is a socket directory when it is an
         * absolute path (or "@name", an abstract socket); empty means the default
         * socket directory. */
        if (*a) {
            out->tcp = true;
            snprintf(out->host, sizeof(out->host), "%s", *h ? h : a);
        } else if (*h && h[0] != '/' && h[0] != '@') {
            out->tcp = true;
            snprintf(out->host, sizeof(out->host), "%s", h);
        }
    }
    out->sslmode_set = sslmode && *sslmode;
    snprintf(out->sslmode, sizeof(out->sslmode), "%s",
             out->sslmode_set                      ? sslmode
             : sslmode_default && *sslmode_default ? sslmode_default
                                                   : "prefer");
}

static const char *option(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* The value libpq will use: the conninfo's when it sets one (even empty), else the
 * default's (the environment's, or libpq's built-in one). */
static const char *effective(const PQconninfoOption *parsed, const PQconninfoOption *defs,
                             const char *key)
{
    const char *v = option(parsed, key);
    return v ? v : option(defs, key);
}

/* Set by the conninfo or the environment, not left to libpq's built-in default? */
static const char *sslmode_given(const PQconninfoOption *parsed)
{
    const char *v = option(parsed, "sslmode");
    if (v)
        return v;
    v = getenv("PGSSLMODE");
    return v && *v ? v : NULL;
}

int pg_conninfo_transport(const char *conninfo, struct pg_transport *out)
{
    PQconninfoOption *parsed = NULL, *defs = NULL;
    char **secrets = NULL;
    int rc = 0;

    if (!conninfo)
        conninfo = "";
    if (pg_int_looks_like_conninfo(conninfo)) {
        char *perr = NULL;

        parsed = PQconninfoParse(conninfo, &perr);
        if (!parsed) {
            secrets = pg_int_conninfo_secrets(conninfo);
            char *msg = pg_int_clean_message(perr ? perr : "out of memory", secrets);
            rc = err_set(ERR_CONFIG, "invalid conninfo: %s", msg);
            free(msg);
            PQfreemem(perr);
            goto out;
        }
    }
    defs = PQconndefaults();
    if (!defs) {
        rc = err_set(ERR_RUNTIME, "could not read libpq's connection defaults: out of memory");
        goto out;
    }
    pg_int_transport(effective(parsed, defs, "host"), effective(parsed, defs, "hostaddr"),
                     sslmode_given(parsed), option(defs, "sslmode"), out);
out:
    PQconninfoFree(parsed);
    PQconninfoFree(defs);
    pg_int_secrets_free(secrets);
    return rc;
}

bool pg_sslmode_authenticates(const char *sslmode)
{
    return sslmode && strcmp(sslmode, "verify-full") == 0;
}
