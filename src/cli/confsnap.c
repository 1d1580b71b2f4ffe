/*
 * confsnap.c — configuration backups, the taking side (include/pgark/confsnap.h): the
 * server's configuration files read over a normal connection, pgark's own configuration
 * redacted, one record per label in every repository.
 *
 * pg_read_binary_file over SQL and not the local file system: pgark may run on another
 * host than the server (a backup host), and the same query works on both.
 */
#include "pgark/confsnap.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"
#include "pgark/units.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFSNAP_FORMAT 1

/* --- redaction --------------------------------------------------------------------- */

static const char *const secret_keys[] = {"passphrase",    "access_key_id", "secret_access_key",
                                          "session_token", "url",           NULL};

/* Length of the YAML scalar at p: a quoted one to its closing quote, a plain one to the
 * end of the line, or in a flow mapping to the next ',' or '}'. */
static size_t value_len(const char *p, bool flow)
{
    if (*p == '"' || *p == '\'') {
        const char *q = p + 1;
        while (*q && *q != '\n' && !(*q == *p && q[-1] != '\\'))
            q++;
        return (size_t)(q - p) + (*q == *p);
    }
    size_t n = 0;
    while (p[n] && p[n] != '\n' && !(flow && (p[n] == ',' || p[n] == '}')))
        n++;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
        n--;
    return n;
}

/* A secret key starting at p (after the start of a line, a space, '{' or ','): the
 * length up to its value, or 0. */
static size_t secret_key_at(const char *text, const char *p)
{
    if (p > text && !strchr(" \t{,\n-", p[-1]))
        return 0;
    for (size_t i = 0; secret_keys[i]; i++) {
        size_t k = strlen(secret_keys[i]);
        if (strncmp(p, secret_keys[i], k) != 0)
            continue;
        const char *q = p + k;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != ':' || (q[1] != ' ' && q[1] != '\t'))
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        return (size_t)(q - p);
    }
    return 0;
}

char *confsnap_redact(const char *text)
{
    struct buf b = BUF_INIT;
    int flow = 0; /* depth of { } on this line */
    const char *p = text;

    buf_append_str(&b, "");
    while (*p) {
        if (*p == '\n')
            flow = 0;
        else if (*p == '{')
            flow++;
        else if (*p == '}' && flow > 0)
            flow--;
        size_t k = secret_key_at(text, p);
        if (k > 0) {
            size_t v = value_len(p + k, flow > 0);
            buf_append(&b, p, k);
            p += k;
            if (v > 0 && p[0] != '#' && p[0] != '|' && p[0] != '>')
                buf_append_str(&b, "<redacted>");
            else
                buf_append(&b, p, v);
            p += v;
            continue;
        }
        if (strncmp(p, "password=", 9) == 0 && (p == text || !isalnum((unsigned char)p[-1]))) {
            buf_append_str(&b, "password=<redacted>");
            p += 9;
            if (*p == '\'') { /* a quoted conninfo value */
                p++;
                while (*p && *p != '\'' && *p != '\n')
                    p += (*p == '\\' && p[1]) ? 2 : 1;
                if (*p == '\'')
                    p++;
            } else {
                while (*p && !strchr(" \t\n\"',}", *p))
                    p++;
            }
            continue;
        }
        buf_append(&b, p, 1);
        p++;
    }
    return buf_steal(&b);
}

/* --- gathering --------------------------------------------------------------------- */

struct confsnap_found {
    json_t *files, *warnings;
    size_t nfiles;
};

static void warn(struct confsnap_found *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(struct confsnap_found *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    if (!text)
        return;
    log_warn("configuration backup: %s", text);
    json_array_append_new(g->warnings, json_string(text));
    free(text);
}

static void add_file(struct confsnap_found *g, const char *path, const char *source,
                     const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < json_array_size(g->files); i++) {
        if (!strcmp(json_string_value(json_object_get(json_array_get(g->files, i), "path")), path))
            return; /* named twice (config_file and a pg_file_settings line) */
    }
    uint8_t sha[SHA256_LEN];
    char sha_hex[2 * SHA256_LEN + 1];
    char *hex = xmalloc(2 * len + 1);
    sha256(data, len, sha);
    hex_encode(data, len, hex);
    json_array_append_new(g->files,
                          json_pack("{s:s, s:s, s:I, s:s, s:s}", "path", path, "source", source,
                                    "size", (json_int_t)len, "sha256",
                                    hex_encode(sha, SHA256_LEN, sha_hex), "data_hex", hex));
    free(hex);
    g->nfiles++;
}

/* A string literal for SQL: E'...' with quotes and backslashes escaped. */
static char *sql_literal(const char *s)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, "E'");
    for (; *s; s++) {
        if (*s == '\'' || *s == '\\')
            buf_append(&b, "\\", 1);
        buf_append(&b, s, 1);
    }
    buf_append_str(&b, "'");
    return buf_steal(&b);
}

/* One server file through pg_read_binary_file; a failure is a warning naming it. */
static void read_server_file(struct pg_conn *conn, struct confsnap_found *g, const char *path,
                             const char *source)
{
    char *lit = sql_literal(path);
    char *q = xasprintf("SELECT encode(pg_read_binary_file(%s), 'hex')", lit);
    struct pg_rows *rows = NULL;
    uint8_t *data = NULL;
    if (pg_exec_simple(conn, q, &rows) < 0) {
        warn(g, "cannot read \"%s\" (%s) from the server: %s", path, source, err_message());
        err_clear();
        goto out;
    }
    const char *hex = pg_rows_value(rows, 0, 0);
    size_t len = hex ? strlen(hex) / 2 : 0;
    data = xmalloc(len + 1);
    if (!hex || hex_decode(hex, data, len) < 0) {
        err_clear();
        warn(g, "cannot read \"%s\" (%s) from the server: not the answer expected", path, source);
        goto out;
    }
    add_file(g, path, source, data, len);
out:
    free(data);
    pg_rows_free(rows);
    free(q);
    free(lit);
}

static void read_pgark_config(struct confsnap_found *g, const char *path)
{
    FILE *f = fopen(path, "re");
    struct buf b = BUF_INIT;
    if (!f) {
        warn(g, "cannot read pgark's configuration \"%s\": %s", path, strerror(errno));
        return;
    }
    buf_append_file(&b, f);
    fclose(f);
    char *redacted = confsnap_redact(b.len ? (const char *)b.data : "");
    add_file(g, path, "pgark", (const uint8_t *)redacted, strlen(redacted));
    free(redacted);
    if (b.data)
        secure_zero(b.data, b.cap);
    buf_free(&b);
}

char *confsnap_gather(const char *conninfo, const char *pgark_config, const char *label,
                      const char *kind, size_t *nfiles)
{
    *nfiles = 0;
    struct pg_conn *conn = pg_connect_sql(conninfo, "pgark_backup");
    if (!conn) {
        err_context("while connecting to read the server's configuration files");
        return NULL;
    }
    char *text = confsnap_gather_on(conn, pgark_config, label, kind, nfiles);
    pg_conn_free(conn);
    return text;
}

char *confsnap_gather_on(struct pg_conn *conn, const char *pgark_config, const char *label,
                         const char *kind, size_t *nfiles)
{
    struct confsnap_found g = {json_array(), json_array(), 0};
    json_t *server = json_object(), *o = NULL;
    struct pg_rows *rows = NULL;
    char *text = NULL;
    char when[64];

    *nfiles = 0;
    /* The role sees these names with superuser or pg_read_all_settings only: without,
     * pg_settings leaves them out, and that is a warning too. */
    static const char *const sources[] = {"config_file", "hba_file", "ident_file"};
    if (pg_exec_simple(conn,
                       "SELECT name, setting FROM pg_settings WHERE name IN ('data_directory', "
                       "'config_file', 'hba_file', 'ident_file') ORDER BY name",
                       &rows) < 0) {
        warn(&g, "cannot list the server's configuration files: %s", err_message());
        err_clear();
    } else {
        for (int i = 0; i < rows->nrows; i++) {
            const char *name = pg_rows_value(rows, i, 0), *value = pg_rows_value(rows, i, 1);
            if (name && value)
                json_object_set_new(server, name, json_string(value));
        }
    }
    pg_rows_free(rows);
    rows = NULL;
    for (size_t i = 0; i < sizeof(sources) / sizeof(*sources); i++) {
        const char *path = json_string_value(json_object_get(server, sources[i]));
        if (path)
            read_server_file(conn, &g, path, sources[i]);
        else
            warn(&g,
                 "the server does not show %s to this role (it needs superuser or "
                 "pg_read_all_settings)",
                 sources[i]);
    }
    /* Every file a setting comes from: include, include_if_exists, include_dir. */
    if (pg_exec_simple(conn,
                       "SELECT DISTINCT sourcefile FROM pg_file_settings WHERE sourcefile IS "
                       "NOT NULL ORDER BY 1",
                       &rows) < 0) {
        warn(&g, "cannot list the server's included configuration files (pg_file_settings): %s",
             err_message());
        err_clear();
    } else {
        for (int i = 0; i < rows->nrows; i++) {
            const char *path = pg_rows_value(rows, i, 0);
            if (path)
                read_server_file(conn, &g, path, "include");
        }
    }
    if (pgark_config)
        read_pgark_config(&g, pgark_config);
    o = json_pack("{s:i, s:s, s:s, s:s, s:O, s:O, s:O}", "format", CONFSNAP_FORMAT, "label", label,
                  "kind", kind, "time", time_format_pg(time_now_us(), when, sizeof(when)), "server",
                  server, "files", g.files, "warnings", g.warnings);
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    *nfiles = g.nfiles;
    pg_rows_free(rows);
    json_decref(o);
    json_decref(server);
    json_decref(g.files);
    json_decref(g.warnings);
    return text;
}

int confsnap_put(struct repo *r, const char *label, const char *text)
{
    return repo_record_put(r, REPO_RECORD_CONFIGS, label, text);
}

int confsnap_get(struct repo *r, const char *label, char **text)
{
    return repo_record_get(r, REPO_RECORD_CONFIGS, label, text);
}

int confsnap_list(struct repo *r, char ***labels, size_t *n)
{
    return repo_record_list(r, REPO_RECORD_CONFIGS, labels, n);
}
