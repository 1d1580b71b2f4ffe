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
void cfg_note_env_var(struct cfg_reader *r, const char *name)
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

bool cfg_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *cfg_scalar_text(const yaml_node_t *node)
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
    if (cfg_is_null(node))
        return cfg_error(r, node, "%s has no value", subject);
    if (node->type != YAML_MAPPING_NODE)
        return cfg_error(r, node, "%s must be a mapping, not %s", subject, cfg_node_kind(node));

    yaml_node_pair_t *start = node->data.mapping.pairs.start;
    yaml_node_pair_t *top = node->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        if (k->type != YAML_SCALAR_NODE || cfg_is_null(k))
            return cfg_error(r, k, "a key%s must be a name, not %s", where,
                             cfg_is_null(k) ? "empty" : cfg_node_kind(k));
        const char *name = cfg_scalar_text(k);
        if (strlen(name) != k->data.scalar.length)
            return cfg_error(r, k, "a key%s contains a NUL byte", where);
        for (yaml_node_pair_t *q = start; q < p; q++) {
            yaml_node_t *prev = yaml_document_get_node(&r->doc, q->key);
            if (prev->type == YAML_SCALAR_NODE && strcmp(cfg_scalar_text(prev), name) == 0)
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
        if (strcmp(cfg_scalar_text(k), key) == 0)
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
    return cfg_scalar_text(k);
}

int cfg_require(const struct cfg_map *m, const char *key)
{
    if (find_pair(m, key))
        return 0;
    return cfg_error(m->r, m->node, "missing required key \"%s\"%s", key, m->where);
}
