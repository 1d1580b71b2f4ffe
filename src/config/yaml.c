/* yaml.c — typed, strict access to a libyaml document (see config_int.h). */
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

static int error_at(struct cfg_reader *r, size_t line, size_t col, const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    int rc = err_set(ERR_CONFIG, "%s:%zu:%zu: %s", r->file, line, col, msg);
    free(msg);
    return rc;
}

int cfg_error(struct cfg_reader *r, const yaml_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_at(r, node ? node->start_mark.line + 1 : 1,
                      node ? node->start_mark.column + 1 : 1, fmt, ap);
    va_end(ap);
    return rc;
}

static int error_mark(struct cfg_reader *r, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int error_mark(struct cfg_reader *r, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_at(r, mark.line + 1, mark.column + 1, fmt, ap);
    va_end(ap);
    return rc;
}

static int syntax_error(struct cfg_reader *r, const yaml_parser_t *p, const char *text, size_t len)
{
    yaml_mark_t mark = p->problem_mark;
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        mark.line = 0;
        mark.column = 0;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
                mark.column++;
            }
        }
    }
    const char *problem = p->problem ? p->problem : "unknown error";
    int rc;
    if (p->context)
        rc = error_mark(r, mark, "invalid YAML: %s (%s)", problem, p->context);
    else
        rc = error_mark(r, mark, "invalid YAML: %s", problem);
    /* "${VAR}" unquoted inside { } or [ ] is the classic way to get here. */
    const char *line = text;
    for (size_t n = 0; n < mark.line && line; n++) {
        line = memchr(line, '\n', len - (size_t)(line - text));
        if (line)
            line++;
    }
    if (line && p->context && strstr(p->context, "flow") != NULL) {
        size_t l = strcspn(line, "\n");
        char *copy = xstrndup(line, l);
        if (strstr(copy, "${") != NULL)
            err_hint("inside { } or [ ], quote values that use ${VAR}: key: \"${VAR}\"");
        free(copy);
    }
    return rc;
}

int cfg_reader_parse(struct cfg_reader *r, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        return err_set(ERR_RUNTIME, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &r->doc)) {
        rc = syntax_error(r, &parser, text, len);
        goto out;
    }
    r->have_doc = true;
    if (yaml_document_get_root_node(&r->doc) == NULL) {
        rc = err_set(ERR_CONFIG, "%s:1:1: configuration is empty", r->file);
        goto out;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        rc = syntax_error(r, &parser, text, len);
        goto out;
    }
    yaml_node_t *root2 = yaml_document_get_root_node(&extra);
    if (root2 != NULL)
        rc = cfg_error(r, root2, "more than one YAML document (only one is read)");
    yaml_document_delete(&extra);
out:
    yaml_parser_delete(&parser);
    return rc;
}

void cfg_reader_release(struct cfg_reader *r)
{
    if (r->have_doc)
        yaml_document_delete(&r->doc);
    r->have_doc = false;
    for (size_t i = 0; i < r->nenv_vars; i++)
        free(r->env_vars[i]);
    free(r->env_vars);
    r->env_vars = NULL;
    r->nenv_vars = 0;
    cfg_warnings_free(r->warnings, r->nwarnings);
    r->warnings = NULL;
    r->nwarnings = 0;
}

void cfg_warning_add(struct config_warning **list, size_t *n, char *message, char *hint)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[*n].message = message;
    (*list)[*n].hint = hint;
    (*n)++;
}

void cfg_warnings_free(struct config_warning *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].message);
        free(list[i].hint);
    }
    free(list);
}

char *cfg_mode_warning(const char *what, const char *path, unsigned mode, unsigned readers,
                       char **hint)
{
    unsigned open_to = mode & readers & (S_IRGRP | S_IROTH);

    *hint = NULL;
    if (!open_to)
        return NULL;
    *hint = xasprintf("chmod 600 \"%s\"", path);
    return xasprintf("%s \"%s\" is readable by %s (mode %04o)", what, path,
                     open_to == (S_IRGRP | S_IROTH) ? "its group and other users"
                     : open_to == S_IROTH           ? "other users"
                                                    : "its group",
                     mode & 07777);
}

/* Remember that the file read ${name} (once per name). */
static void note_env_var(struct cfg_reader *r, const char *name)
{
    for (size_t i = 0; i < r->nenv_vars; i++)
        if (strcmp(r->env_vars[i], name) == 0)
            return;
    r->env_vars = xrealloc(r->env_vars, (r->nenv_vars + 2) * sizeof(*r->env_vars));
    r->env_vars[r->nenv_vars++] = xstrdup(name);
    r->env_vars[r->nenv_vars] = NULL;
}

const char *cfg_node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a string";
    }
}

static bool is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static void unknown_key_hint(const char *key, const char *const *allowed)
{
    const char *best = NULL;
    size_t best_d = 3; /* only suggest close matches */
    for (size_t i = 0; allowed[i]; i++) {
        size_t d = edit_distance(key, allowed[i]);
        if (d < best_d) {
            best_d = d;
            best = allowed[i];
        }
    }
    if (best) {
        err_hint("did you mean \"%s\"?", best);
        return;
    }
    struct buf b = BUF_INIT;
    for (size_t i = 0; allowed[i]; i++)
        buf_appendf(&b, "%s%s", i ? ", " : "", allowed[i]);
    err_hint("valid keys here: %s", b.len ? (char *)b.data : "(none)");
    buf_free(&b);
}

int cfg_map_open(struct cfg_reader *r, yaml_node_t *node, const char *subject, const char *where,
                 const char *const *allowed, struct cfg_map *m)
{
    if (is_null(node))
        return cfg_error(r, node, "%s has no value", subject);
    if (node->type != YAML_MAPPING_NODE)
        return cfg_error(r, node, "%s must be a mapping, not %s", subject, cfg_node_kind(node));

    yaml_node_pair_t *start = node->data.mapping.pairs.start;
    yaml_node_pair_t *top = node->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        if (k->type != YAML_SCALAR_NODE || is_null(k))
            return cfg_error(r, k, "a key%s must be a name, not %s", where,
                             is_null(k) ? "empty" : cfg_node_kind(k));
        const char *name = scalar_text(k);
        if (strlen(name) != k->data.scalar.length)
            return cfg_error(r, k, "a key%s contains a NUL byte", where);
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *prev = yaml_document_get_node(&r->doc, q->key);
            if (prev->type == YAML_SCALAR_NODE && strcmp(scalar_text(prev), name) == 0)
                return cfg_error(r, k, "duplicate key \"%s\"%s (first given at line %zu)", name,
                                 where, prev->start_mark.line + 1);
        }
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(allowed[i], name) == 0;
        if (!known) {
            int rc = cfg_error(r, k, "unknown key \"%s\"%s", name, where);
            unknown_key_hint(name, allowed);
            return rc;
        }
    }
    m->r = r;
    m->node = node;
    m->where = xstrdup(where);
    return 0;
}

void cfg_map_close(struct cfg_map *m)
{
    free(m->where);
    m->where = NULL;
}

static yaml_node_pair_t *find_pair(const struct cfg_map *m, const char *key)
{
    for (yaml_node_pair_t *p = m->node->data.mapping.pairs.start;
         p < m->node->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&m->r->doc, p->key);
        if (strcmp(scalar_text(k), key) == 0)
            return p;
    }
    return NULL;
}

yaml_node_t *cfg_map_value(const struct cfg_map *m, const char *key)
{
    yaml_node_pair_t *p = find_pair(m, key);
    return p ? yaml_document_get_node(&m->r->doc, p->value) : NULL;
}

yaml_node_t *cfg_map_key_node(const struct cfg_map *m, const char *key)
{
    yaml_node_pair_t *p = find_pair(m, key);
    return p ? yaml_document_get_node(&m->r->doc, p->key) : NULL;
}

size_t cfg_map_size(const struct cfg_map *m)
{
    return (size_t)(m->node->data.mapping.pairs.top - m->node->data.mapping.pairs.start);
}

const char *cfg_map_key_at(const struct cfg_map *m, size_t i, yaml_node_t **key_node,
                           yaml_node_t **value)
{
    yaml_node_pair_t *p = m->node->data.mapping.pairs.start + i;
    yaml_node_t *k = yaml_document_get_node(&m->r->doc, p->key);
    if (key_node)
        *key_node = k;
    if (value)
        *value = yaml_document_get_node(&m->r->doc, p->value);
    return scalar_text(k);
}

int cfg_require(const struct cfg_map *m, const char *key)
{
    if (find_pair(m, key))
        return 0;
    return cfg_error(m->r, m->node, "missing required key \"%s\"%s", key, m->where);
}

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
        note_env_var(r, var);
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
    if (is_null(node))
        return cfg_error(r, node, "%s has no value", subject);
    if (node->type != YAML_SCALAR_NODE)
        return cfg_error(r, node, "%s must be a string, not %s", subject, cfg_node_kind(node));
    if (strlen(scalar_text(node)) != node->data.scalar.length)
        return cfg_error(r, node, "%s contains a NUL byte", subject);
    return expand(r, node, subject, scalar_text(node), out);
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

int cfg_get_duration(const struct cfg_map *m, const char *key, int64_t *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        if (duration_parse(text, out) != 0) {
            char *why = xstrdup(err_message());
            rc = cfg_error(m->r, node, "%s: %s", subject, why);
            free(why);
        }
    }
    free(text);
    free(subject);
    return rc;
}

int cfg_get_size(const struct cfg_map *m, const char *key, uint64_t *out)
{
    yaml_node_t *node;
    char *subject, *text;
    int rc = get_text(m, key, &node, &subject, &text);
    if (rc == 0 && node != NULL) {
        if (size_parse(text, out) != 0) {
            char *why = xstrdup(err_message());
            rc = cfg_error(m->r, node, "%s: %s", subject, why);
            free(why);
        }
    }
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
    if (is_null(node))
        return cfg_error(m->r, node, "key \"%s\"%s has no value", key, m->where);
    if (node->type != YAML_SEQUENCE_NODE)
        return cfg_error(m->r, node, "key \"%s\"%s must be a list, not %s", key, m->where,
                         cfg_node_kind(node));
    *out = node;
    return 0;
}
