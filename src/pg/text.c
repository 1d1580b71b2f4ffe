/*
 * text.c — the server-free half of src/pg: cleaning libpq messages, masking
 * passwords, classifying failures and parsing the text of replication answers.
 */
#include "pg_int.h"

#include "pgark/mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MASK "********"

static void secrets_add(char ***list, size_t *n, const char *start, size_t len)
{
    if (len == 0)
        return;
    *list = xrealloc(*list, (*n + 2) * sizeof(**list));
    (*list)[(*n)++] = xstrndup(start, len);
    (*list)[*n] = NULL;
}

/* The value after "password =" in keyword=value syntax: quoted (with \' and \\) or up
 * to the next blank. Both the raw text and the unescaped value are returned, since a
 * message may echo either. */
static void find_keyword_passwords(const char *s, char ***list, size_t *n)
{
    const char *p = s;

    while ((p = strstr(p, "password")) != NULL) {
        bool word_start = (p == s) || isspace((unsigned char)p[-1]);
        const char *q = p + strlen("password");

        p = q;
        if (!word_start)
            continue;
        while (isspace((unsigned char)*q))
            q++;
        if (*q != '=')
            continue;
        q++;
        while (isspace((unsigned char)*q))
            q++;
        if (*q == '\'') {
            const char *v = ++q;
            struct buf unq = BUF_INIT;

            while (*q && *q != '\'') {
                if (*q == '\\' && q[1])
                    q++;
                buf_append(&unq, q, 1);
                q++;
            }
            secrets_add(list, n, v, (size_t)(q - v));
            if (unq.len && (size_t)(q - v) != unq.len)
                secrets_add(list, n, (const char *)unq.data, unq.len);
            buf_free(&unq);
        } else {
            const char *v = q;

            while (*q && !isspace((unsigned char)*q))
                q++;
            secrets_add(list, n, v, (size_t)(q - v));
        }
        p = q;
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* postgresql://user:secret@host/...?password=secret2 */
static void find_uri_passwords(const char *s, char ***list, size_t *n)
{
    const char *scheme = strstr(s, "://");
    const char *q;

    if (!scheme)
        return;
    const char *auth = scheme + 3;
    const char *end = auth + strcspn(auth, "/?");
    const char *at = NULL;

    for (q = auth; q < end; q++)
        if (*q == '@')
            at = q; /* the last '@' ends the user info */
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));

        if (colon) {
            const char *v = colon + 1;
            size_t len = (size_t)(at - v);
            struct buf dec = BUF_INIT;

            secrets_add(list, n, v, len);
            for (size_t i = 0; i < len; i++) {
                int hi, lo;

                if (v[i] == '%' && i + 2 < len && (hi = hexval((unsigned char)v[i + 1])) >= 0 &&
                    (lo = hexval((unsigned char)v[i + 2])) >= 0) {
                    char c = (char)(hi * 16 + lo);

                    buf_append(&dec, &c, 1);
                    i += 2;
                } else {
                    buf_append(&dec, &v[i], 1);
                }
            }
            if (dec.len && dec.len != len)
                secrets_add(list, n, (const char *)dec.data, dec.len);
            buf_free(&dec);
        }
    }
    const char *query = strchr(auth, '?');

    for (q = query; q && *q; q = strchr(q, '&')) {
        q++;
        if (strncmp(q, "password=", 9) == 0) {
            const char *v = q + 9;

            secrets_add(list, n, v, strcspn(v, "&"));
        }
    }
}

bool pg_int_looks_like_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

char **pg_int_conninfo_secrets(const char *conninfo)
{
    char **list = xcalloc(1, sizeof(*list));
    size_t n = 0;

    if (conninfo) {
        find_keyword_passwords(conninfo, &list, &n);
        find_uri_passwords(conninfo, &list, &n);
    }
    return list;
}

void pg_int_secrets_free(char **secrets)
{
    if (!secrets)
        return;
    for (char **s = secrets; *s; s++)
        secure_free(*s, strlen(*s));
    free(secrets);
}

/*
 * Every byte that is part of any occurrence of any secret is hidden, and each run of
 * hidden bytes becomes one "********". The marks are made on the text as it came, in
 * one pass per secret, and the text is rebuilt once: a secret that overlaps or
 * contains another cannot leave part of either readable, and a secret made of mask
 * characters ("*") cannot match its own replacement (rewriting the text until no
 * secret was left in it never ended then, growing until allocation failed). An
 * empty secret hides nothing.
 */
static char *mask_secrets(const char *text, char *const *secrets)
{
    size_t n = strlen(text);
    bool *hide = NULL;
    struct buf out = BUF_INIT;
    bool any = false;

    if (!secrets || n == 0)
        return xstrdup(text);
    hide = xcalloc(n, sizeof(*hide));
    for (char *const *s = secrets; *s; s++) {
        size_t len = strlen(*s);

        if (len == 0)
            continue;
        /* Each start, so that overlapping occurrences ("**" in "***") are all found. */
        for (const char *hit = strstr(text, *s); hit; hit = strstr(hit + 1, *s)) {
            memset(hide + (hit - text), true, len);
            any = true;
        }
    }
    if (!any) {
        free(hide);
        return xstrdup(text);
    }
    for (size_t i = 0; i < n;) {
        if (!hide[i]) {
            size_t run = 1;

            while (i + run < n && !hide[i + run])
                run++;
            buf_append(&out, text + i, run);
            i += run;
            continue;
        }
        buf_append_str(&out, MASK);
        while (i < n && hide[i])
            i++;
    }
    free(hide);
    return buf_steal(&out);
}

char *pg_int_clean_message(const char *msg, char *const *secrets)
{
    struct buf out = BUF_INIT;
    const char *p = msg ? msg : "";

    while (*p) {
        size_t len = strcspn(p, "\n");
        const char *s = p, *e = p + len;

        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            if (out.len)
                buf_append_str(&out, "; ");
            for (const char *c = s; c < e; c++) {
                bool blank = isspace((unsigned char)*c);

                if (blank && out.len && out.data[out.len - 1] == ' ')
                    continue;
                buf_append(&out, blank ? " " : c, 1);
            }
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    if (out.len == 0)
        buf_append_str(&out, "unknown error");

    char *raw = buf_steal(&out);
    char *masked = mask_secrets(raw, secrets);

    secure_free(raw, strlen(raw));
    return masked;
}

enum err_kind pg_int_connect_error_kind(const char *msg, bool needs_password)
{
    static const char *const auth[] = {
        "authentication failed", "no pg_hba.conf entry",
        "pg_hba.conf rejects",   "must be superuser or replication role",
        "permission denied",     "no password supplied",
        "password is required",  "role \"",
        "certificate",           NULL,
    };
    static const char *const transient[] = {
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "the database system is not yet accepting connections",
        "the database system is not accepting connections",
        "too many clients",
        "connection slots are reserved",
        NULL,
    };

    if (needs_password)
        return ERR_AUTH;
    if (!msg)
        return ERR_CONNECT;
    for (int i = 0; auth[i]; i++)
        if (strstr(msg, auth[i]))
            return ERR_AUTH;
    for (int i = 0; transient[i]; i++)
        if (strstr(msg, transient[i]))
            return ERR_TRANSIENT;
    return ERR_CONNECT;
}

enum err_kind pg_int_sqlstate_kind(const char *sqlstate, bool connection_ok)
{
    if (!connection_ok)
        return ERR_CONNECT;
    if (!sqlstate || strlen(sqlstate) != 5)
        return ERR_RUNTIME;
    if (strcmp(sqlstate, "42710") == 0) /* duplicate_object */
        return ERR_EXISTS;
    if (strcmp(sqlstate, "42704") == 0) /* undefined_object */
        return ERR_NOT_FOUND;
    if (strcmp(sqlstate, "42501") == 0 || strncmp(sqlstate, "28", 2) == 0)
        return ERR_AUTH;
    if (strncmp(sqlstate, "08", 2) == 0) /* connection exception */
        return ERR_CONNECT;
    if (strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P03") == 0 ||
        strcmp(sqlstate, "53300") == 0 || strcmp(sqlstate, "40001") == 0)
        return ERR_TRANSIENT;
    if (strcmp(sqlstate, "58P01") == 0) /* undefined_file: requested WAL removed */
        return ERR_NOT_FOUND;
    return ERR_RUNTIME;
}

int pg_int_parse_u64(const char *what, const char *text, uint64_t *out)
{
    uint64_t v = 0;

    if (!text || !*text)
        return err_set(ERR_PROTOCOL, "server sent an empty %s", what);
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return err_set(ERR_PROTOCOL, "server sent an invalid %s \"%s\"", what, text);
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

int pg_int_parse_tli(const char *what, const char *text, timeline_t *out)
{
    uint64_t v;
    int rc = pg_int_parse_u64(what, text, &v);

    if (rc < 0)
        return rc;
    if (v == 0 || v > UINT32_MAX)
        return err_set(ERR_PROTOCOL, "server sent an invalid %s \"%s\"", what, text);
    *out = (timeline_t)v;
    return 0;
}

/* Server answers are checked with wal.h's parsers; what the server sent wrong is a
 * protocol error, named as such, not a usage error. */
int pg_int_parse_lsn(const char *what, const char *text, lsn_t *out)
{
    if (!text || lsn_parse(text, out) < 0) {
        err_clear();
        return err_set(ERR_PROTOCOL, "server sent an invalid %s \"%s\"", what, text ? text : "");
    }
    return 0;
}

int pg_int_parse_seg_size(const char *text, uint64_t *out)
{
    if (!text || wal_seg_size_parse_show(text, out) < 0) {
        err_clear();
        return err_set(ERR_PROTOCOL, "server sent an invalid wal_segment_size \"%s\"",
                       text ? text : "");
    }
    return 0;
}
