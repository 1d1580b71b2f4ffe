/* syncnames.c — does synchronous_standby_names name a standby (see pg.h)? */
#include "pg_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pg.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One name of the list starting at *p: a quoted identifier (exact, "" for a quote) or
 * a bare word (case-insensitive, as PostgreSQL compares unquoted names). Advances *p
 * past it. */
static bool next_name(const char **p, char *name, size_t cap, bool *quoted)
{
    const char *s = *p;
    while (*s && (isspace((unsigned char)*s) || *s == ',' || *s == '(' || *s == ')'))
        s++;
    if (!*s)
        return false;
    size_t n = 0;
    *quoted = *s == '"';
    if (*quoted) {
        for (s++; *s; s++) {
            if (*s == '"') {
                if (s[1] != '"')
                    break;
                s++;
            }
            if (n + 1 < cap)
                name[n++] = *s;
        }
        if (*s == '"')
            s++;
    } else {
        for (; *s && !isspace((unsigned char)*s) && !strchr(",()\"", *s); s++) {
            if (n + 1 < cap)
                name[n++] = *s;
        }
    }
    name[n] = '\0';
    *p = s;
    return true;
}

bool pg_sync_names_list(const char *setting, const char *application_name)
{
    char name[256];
    bool quoted;
    const char *p = setting;
    /* The keywords FIRST and ANY and the number before the list are read as names too:
     * they never equal an application_name that pgark would wait on in practice, and a
     * false "listed" only costs a warning. */
    while (next_name(&p, name, sizeof(name), &quoted)) {
        if (!quoted && strcmp(name, "*") == 0)
            return true;
        if (quoted ? strcmp(name, application_name) == 0 : strcasecmp(name, application_name) == 0)
            return true;
    }
    return false;
}

int pg_sync_standby_listed(struct pg_conn *conn, const char *application_name, bool *listed)
{
    struct pg_rows *rows = NULL;
    int rc = pg_exec_simple(conn, "SHOW synchronous_standby_names", &rows);
    *listed = false;
    if (rc < 0)
        goto out;
    const char *v = pg_rows_value(rows, 0, 0);
    if (!v) {
        rc = err_set(ERR_PROTOCOL,
                     "SHOW synchronous_standby_names on server \"%s\" returned no value",
                     pg_conn_target(conn));
        goto out;
    }
    *listed = pg_sync_names_list(v, application_name);
out:
    pg_rows_free(rows);
    return rc;
}
