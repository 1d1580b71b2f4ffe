/*
 * yaml_values.c — the typed values of a configuration document (see config_int.h):
 * scalars with ${VAR} expanded, strings, secrets inline or from a file, booleans,
 * integers, durations, sizes, enums, absolute paths, nested maps and lists. Moved out of
 * yaml.c, which parses the document and walks its maps.
 */
#include "config_int.h"

#include "pgark/config.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECRET_FILE_MAX (64 * 1024)

/* Expand ${VAR} (and $${ to a literal ${) in text. */
static int expand(struct cfg_reader *r, yaml_node_t *node, const char *subject, const char *text,
                  char **out)
{
    struct buf b = BUF_INIT;
    const char *p = text;
    int rc = 0;

    while (*p) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            buf_append_str(&b, "${");
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            buf_append(&b, p, 1);
            p++;
            continue;
        }
        const char *name = p + 2;
        const char *end = strchr(name, '}');
        if (end == NULL) {
            rc = cfg_error(r, node, "%s: unterminated \"${\" (write \"$${\" for a literal \"${\")",
                           subject);
            goto out;
        }
        size_t nlen = (size_t)(end - name);
        bool ok = nlen > 0 && (isalpha((unsigned char)name[0]) || name[0] == '_');
        for (size_t i = 0; ok && i < nlen; i++)
            ok = isalnum((unsigned char)name[i]) || name[i] == '_';
        char *var = xstrndup(name, nlen);
        if (!ok) {
            rc = cfg_error(r, node, "%s: invalid environment variable name \"%s\"", subject, var);
            free(var);
            goto out;
        }
        const char *val = getenv(var);
        if (val == NULL) {
            rc = cfg_error(r, node, "%s: environment variable \"%s\" is not set", subject, var);
            free(var);
            goto out;
        }
        cfg_note_env_var(r, var);
        free(var);
        buf_append_str(&b, val);
        p = end + 1;
    }
    buf_append(&b, "", 0);
    *out = buf_steal(&b);
out:
    if (rc != 0) {
        secure_zero(b.data, b.cap);
        buf_free(&b);
    }
    return rc;
}

int cfg_scalar(struct cfg_reader *r, yaml_node_t *node, const char *subject, char **out)
{
    if (cfg_is_null(node))
        return cfg_error(r, node, "%s has no value", subject);
    if (node->type != YAML_SCALAR_NODE)
        return cfg_error(r, node, "%s must be a string, not %s", subject, cfg_node_kind(node));
    if (strlen(cfg_scalar_text(node)) != node->data.scalar.length)
        return cfg_error(r, node, "%s contains a NUL byte", subject);
    return expand(r, node, subject, cfg_scalar_text(node), out);
}

static char *subject_of(const struct cfg_map *m, const char *key)
{
    return xasprintf("key \"%s\"%s", key, m->where);
}

/* Common start of a typed getter: *node NULL when absent. */
static int get_text(const struct cfg_map *m, const char *key, yaml_node_t **node, char **subject,
                    char **text)
{
    *node = cfg_map_value(m, key);
    *subject = NULL;
    *text = NULL;
    if (*node == NULL)
        return 0;
    *subject = subject_of(m, key);
    return cfg_scalar(m->r, *node, *subject, text);
}

int cfg_get_string(const struct cfg_map *m, const char *key, char **out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        if (*text == '\0') {
            rc = cfg_error(m->r, node, "%s must not be empty", subject);
        } else {
            free(*out);
            *out = text;
            text = NULL;
        }
    }
    free(text);
    free(subject);
    return rc;
}

char *cfg_resolve_path(const struct cfg_reader *r, const char *path)
{
    if (path[0] == '/' || r->base_dir == NULL)
        return xstrdup(path);
    return xasprintf("%s/%s", r->base_dir, path);
}

static int read_secret_file(const struct cfg_map *m, yaml_node_t *node, const char *subject,
                            const char *path, char **out)
{
    char *full = cfg_resolve_path(m->r, path);
    FILE *f = NULL;
    struct buf b = BUF_INIT;
    int rc = 0;

    f = fopen(full, "re");
    if (f == NULL) {
        int e = errno;
        rc = cfg_error(m->r, node, "%s: cannot read \"%s\": %s", subject, full, strerror(e));
        goto out;
    }
    /* A secret its group or other users can read is no secret: said, not refused (the
     * command decides how loudly). Named like an error of the same key. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        char *hint = NULL;
        char *what =
            xasprintf("%s:%zu:%zu: %s: secret file", m->r->file, (size_t)node->start_mark.line + 1,
                      (size_t)node->start_mark.column + 1, subject);
        char *msg = cfg_mode_warning(what, full, st.st_mode, S_IRGRP | S_IROTH, &hint);
        if (msg)
            cfg_warning_add(&m->r->warnings, &m->r->nwarnings, msg, hint);
        free(what);
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&b, chunk, n);
        if (b.len > SECRET_FILE_MAX) {
            rc = cfg_error(m->r, node, "%s: \"%s\" is larger than %d bytes", subject, full,
                           SECRET_FILE_MAX);
            goto out;
        }
    }
    secure_zero(chunk, sizeof(chunk));
    if (ferror(f)) {
        int e = errno;
        rc = cfg_error(m->r, node, "%s: cannot read \"%s\": %s", subject, full, strerror(e));
        goto out;
    }
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    if (b.len > 0 && b.data[b.len - 1] == '\r')
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        rc = cfg_error(m->r, node, "%s: \"%s\" is empty", subject, full);
        goto out;
    }
    if (memchr(b.data, '\0', b.len) != NULL) {
        rc = cfg_error(m->r, node, "%s: \"%s\" contains a NUL byte", subject, full);
        goto out;
    }
    *out = buf_steal(&b);
out:
    if (f)
        fclose(f);
    if (b.data)
        secure_zero(b.data, b.cap);
    buf_free(&b);
    free(full);
    return rc;
}

int cfg_get_secret(const struct cfg_map *m, const char *key, char **out)
{
    return cfg_get_secret_file(m, key, out, NULL);
}

int cfg_get_secret_file(const struct cfg_map *m, const char *key, char **out, char **file)
{
    char *file_key = xasprintf("%s_file", key);
    yaml_node_t *direct = cfg_map_value(m, key);
    yaml_node_t *via_file = cfg_map_value(m, file_key);
    char *value = NULL, *path = NULL, *subject = NULL;
    int rc = 0;

    if (direct && via_file) {
        rc = cfg_error(m->r, cfg_map_key_node(m, file_key),
                       "keys \"%s\" and \"%s\"%s exclude each other", key, file_key, m->where);
        goto out;
    }
    if (direct) {
        rc = cfg_get_string(m, key, &value);
    } else if (via_file) {
        rc = cfg_get_string(m, file_key, &path);
        if (rc == 0) {
            subject = subject_of(m, file_key);
            rc = read_secret_file(m, via_file, subject, path, &value);
            if (rc == 0 && file) {
                free(*file);
                *file = cfg_resolve_path(m->r, path);
            }
        }
    }
    if (rc == 0 && value) {
        log_add_secret(value);
        if (*out) {
            secure_zero(*out, strlen(*out));
            free(*out);
        }
        *out = value;
        value = NULL;
    }
out:
    if (value) {
        secure_zero(value, strlen(value));
        free(value);
    }
    free(path);
    free(subject);
    free(file_key);
    return rc;
}

int cfg_get_bool(const struct cfg_map *m, const char *key, bool *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        /* Only the words true and false: yes/no/on/off/True are YAML 1.1 accidents
         * waiting to happen. Quoting is allowed, as "${VAR}" needs it in { }. */
        if (strcmp(text, "true") == 0)
            *out = true;
        else if (strcmp(text, "false") == 0)
            *out = false;
        else
            rc = cfg_error(m->r, node, "%s must be true or false, not \"%s\"", subject, text);
    }
    free(text);
    free(subject);
    return rc;
}

int cfg_get_int(const struct cfg_map *m, const char *key, long min, long max, int *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        bool ok = text[0] != '\0';
        const char *p = text;
        if (*p == '-')
            p++;
        ok = ok && *p != '\0';
        for (; ok && *p; p++)
            ok = isdigit((unsigned char)*p);
        if (!ok) {
            rc = cfg_error(m->r, node, "%s must be a whole number, not \"%s\"", subject, text);
        } else {
            errno = 0;
            long v = strtol(text, NULL, 10);
            if (errno != 0 || v < min || v > max)
                rc = cfg_error(m->r, node, "%s must be between %ld and %ld, not %s", subject, min,
                               max, text);
            else
                *out = (int)v;
        }
    }
    free(text);
    free(subject);
    return rc;
}

/* The outcome of a value parser (duration_parse, size_parse: 0 or -1 with the error
 * slot set) as the config's own error, which names the file, line and key. */
static int parse_outcome(const struct cfg_map *m, yaml_node_t *node, const char *subject,
                         int parse_rc)
{
    if (parse_rc == 0)
        return 0;
    char *why = xstrdup(err_message());
    int rc = cfg_error(m->r, node, "%s: %s", subject, why);
    free(why);
    return rc;
}

int cfg_get_duration(const struct cfg_map *m, const char *key, int64_t *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL)
        rc = parse_outcome(m, node, subject, duration_parse(text, out));
    free(text);
    free(subject);
    return rc;
}

int cfg_get_size(const struct cfg_map *m, const char *key, uint64_t *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL)
        rc = parse_outcome(m, node, subject, size_parse(text, out));
    free(text);
    free(subject);
    return rc;
}

int cfg_get_size_or_percent(const struct cfg_map *m, const char *key, uint64_t *bytes,
                            double *percent)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        size_t len = strlen(text);
        if (len > 1 && text[len - 1] == '%') {
            char *end;
            errno = 0;
            double p = strtod(text, &end);
            if (errno || end != text + len - 1 || !(p >= 0 && p <= 100))
                rc = cfg_error(m->r, node, "%s: \"%s\" is not a percentage from 0%% to 100%%",
                               subject, text);
            else {
                *percent = p;
                *bytes = 0;
            }
        } else if (size_parse(text, bytes) != 0) {
            err_clear();
            rc = cfg_error(m->r, node,
                           "%s: \"%s\" is neither a size (a whole number and a unit: 2GiB) nor a "
                           "percentage of the filesystem (5%%)",
                           subject, text);
        } else {
            *percent = 0;
        }
    }
    free(text);
    free(subject);
    return rc;
}

int cfg_get_enum(const struct cfg_map *m, const char *key, const char *const *names, int *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        int found = -1, n = 0;
        for (; names[n]; n++) {
            if (strcmp(names[n], text) == 0)
                found = n;
        }
        if (found >= 0) {
            *out = found;
        } else {
            struct buf b = BUF_INIT;
            for (int i = 0; i < n; i++)
                buf_appendf(&b, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
            rc = cfg_error(m->r, node, "%s must be %s, not \"%s\"", subject, (char *)b.data, text);
            buf_free(&b);
        }
    }
    free(text);
    free(subject);
    return rc;
}

int cfg_get_abs_path(const struct cfg_map *m, const char *key, char **out)
{
    char *path = NULL;
    int rc = cfg_get_string(m, key, &path);
    if (rc == 0 && path != NULL) {
        if (path[0] != '/') {
            rc = cfg_error(m->r, cfg_map_value(m, key), "key \"%s\"%s must be an absolute path",
                           key, m->where);
        } else {
            /* "/var/lib/pgark/" and "/var/lib/pgark" are the same directory. */
            size_t len = strlen(path);
            while (len > 1 && path[len - 1] == '/')
                path[--len] = '\0';
            free(*out);
            *out = path;
            path = NULL;
        }
    }
    free(path);
    return rc;
}

int cfg_get_map(const struct cfg_map *m, const char *key, const char *child_where,
                const char *const *allowed, struct cfg_map *child, bool *present)
{
    yaml_node_t *node = cfg_map_value(m, key);
    *present = false;
    if (node == NULL)
        return 0;
    char *subject = subject_of(m, key);
    int rc = cfg_map_open(m->r, node, subject, child_where, allowed, child);
    free(subject);
    if (rc == 0)
        *present = true;
    return rc;
}

int cfg_get_seq(const struct cfg_map *m, const char *key, yaml_node_t **out)
{
    yaml_node_t *node = cfg_map_value(m, key);
    *out = NULL;
    if (node == NULL)
        return 0;
    if (cfg_is_null(node))
        return cfg_error(m->r, node, "key \"%s\"%s has no value", key, m->where);
    if (node->type != YAML_SEQUENCE_NODE)
        return cfg_error(m->r, node, "key \"%s\"%s must be a list, not %s", key, m->where,
                         cfg_node_kind(node));
    *out = node;
    return 0;
}
