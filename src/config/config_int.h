/*
 * config_int.h — the typed YAML reader under config.c (internal to src/config).
 *
 * A reader holds one parsed YAML document. Mappings are opened against the list of
 * keys they may hold (unknown and duplicate keys fail there), then typed getters pull
 * each value out, expanding ${VAR}, reading KEY_file secrets and reporting every
 * problem as "FILE:LINE:COL: MESSAGE" (see config.h).
 */
#ifndef PGARK_CONFIG_INT_H
#define PGARK_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

struct config_warning;

struct cfg_reader {
    const char *file;     /* name used in messages */
    const char *base_dir; /* for relative *_file paths; NULL: current directory */
    yaml_document_t doc;
    bool have_doc;
    /* Collected while reading; the loader hands them to the config (or frees them). */
    char **env_vars; /* NULL-terminated once one is added */
    size_t nenv_vars;
    struct config_warning *warnings;
    size_t nwarnings;
};

/* An opened mapping: the node, and the phrase that says where it is, appended after
 * a key name in messages (" in cluster \"main\"", or "" at the top level). */
struct cfg_map {
    struct cfg_reader *r;
    yaml_node_t *node;
    char *where; /* owned */
};

/* Parse text into r->doc. Syntax errors, empty input and several documents fail. */
int cfg_reader_parse(struct cfg_reader *r, const char *text, size_t len);
/* Free the document and whatever of env_vars and warnings was not taken. */
void cfg_reader_release(struct cfg_reader *r);

/* Append a warning (message and hint are taken over). */
void cfg_warning_add(struct config_warning **list, size_t *n, char *message, char *hint);

/* The warning for a file holding secrets whose mode lets others read it, or NULL:
 * `readers` are the permission bits that count (S_IROTH for the configuration file,
 * S_IRGRP | S_IROTH for a KEY_file); what names the file. Caller frees both. */
char *cfg_mode_warning(const char *what, const char *path, unsigned mode, unsigned readers,
                       char **hint);

/* Record ERR_CONFIG "FILE:LINE:COL: <fmt>" at node (r->file:1:1 when node is NULL). */
int cfg_error(struct cfg_reader *r, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "a mapping", "a list", "a string" for messages. */
const char *cfg_node_kind(const yaml_node_t *node);

/* Open node as a mapping whose keys must be among allowed (NULL-terminated). subject
 * names the value in a type error ("key \"log\""); where is copied into m->where. */
int cfg_map_open(struct cfg_reader *r, yaml_node_t *node, const char *subject, const char *where,
                 const char *const *allowed, struct cfg_map *m);
void cfg_map_close(struct cfg_map *m);

/* Value (and key) nodes of key, NULL when absent. */
yaml_node_t *cfg_map_value(const struct cfg_map *m, const char *key);
yaml_node_t *cfg_map_key_node(const struct cfg_map *m, const char *key);
size_t cfg_map_size(const struct cfg_map *m);
/* The i-th pair: key text and value node. */
const char *cfg_map_key_at(const struct cfg_map *m, size_t i, yaml_node_t **key_node,
                           yaml_node_t **value);

/* Fail with "missing required key" when key is absent. */
int cfg_require(const struct cfg_map *m, const char *key);

/* Scalar text of node (${VAR} expanded), for a value named by subject. Caller frees.
 * A null value, a non-scalar, or text with a NUL byte fail. */
int cfg_scalar(struct cfg_reader *r, yaml_node_t *node, const char *subject, char **out);

/* The "clusters" section of top into cfg (config_clusters.c; config.c's load_top). */
struct config;
int cfg_load_clusters(struct cfg_map *top, struct config *cfg);

/* Shared by yaml.c and yaml_values.c: remember that the file read ${name} (once per
 * name); whether node is YAML's null (plain "", "~", "null"); a scalar's text. */
void cfg_note_env_var(struct cfg_reader *r, const char *name);
bool cfg_is_null(const yaml_node_t *node);
const char *cfg_scalar_text(const yaml_node_t *node);

/* Typed getters: absent key leaves *out untouched and returns 0; present values are
 * checked. Strings must not be empty. */
int cfg_get_string(const struct cfg_map *m, const char *key, char **out);
/* A secret: KEY or KEY_file (not both). The value is registered with log_add_secret. */
int cfg_get_secret(const struct cfg_map *m, const char *key, char **out);
/* As cfg_get_secret, and *file gets the resolved path of KEY_file when the value came
 * from one (else stays NULL): what follows the file keeps its name. */
int cfg_get_secret_file(const struct cfg_map *m, const char *key, char **out, char **file);
int cfg_get_bool(const struct cfg_map *m, const char *key, bool *out);
int cfg_get_int(const struct cfg_map *m, const char *key, long min, long max, int *out);
int cfg_get_duration(const struct cfg_map *m, const char *key, int64_t *out);
int cfg_get_size(const struct cfg_map *m, const char *key, uint64_t *out);
/* A size ("2GiB": *bytes set, *percent 0) or a percentage ("5%": *percent set, *bytes 0). */
int cfg_get_size_or_percent(const struct cfg_map *m, const char *key, uint64_t *bytes,
                            double *percent);
/* One of names (NULL-terminated); *out is the index. */
int cfg_get_enum(const struct cfg_map *m, const char *key, const char *const *names, int *out);
/* An absolute path (a file need not exist). */
int cfg_get_abs_path(const struct cfg_map *m, const char *key, char **out);
/* A nested mapping; *present false (and child untouched) when absent. */
int cfg_get_map(const struct cfg_map *m, const char *key, const char *child_where,
                const char *const *allowed, struct cfg_map *child, bool *present);
/* A list; NULL when absent. */
int cfg_get_seq(const struct cfg_map *m, const char *key, yaml_node_t **out);

/* Resolve path against r->base_dir when relative. Caller frees. */
char *cfg_resolve_path(const struct cfg_reader *r, const char *path);

/* Shared by the sections (values.c). */
/* Fail unless name is 1 to 48 of [A-Za-z0-9_-]; what is "repo" or "cluster". */
int cfg_check_name(struct cfg_reader *r, yaml_node_t *key_node, const char *what, const char *name);
/* "http://host..." or "https://host...", no white space. */
bool cfg_is_http_url(const char *s);
/* The top-level "repos" mapping into cfg->repos (required, at least one; repos.c). */
struct config;
int cfg_load_repos(struct cfg_map *top, struct config *cfg);
/* Free a warning list. */
void cfg_warnings_free(struct config_warning *list, size_t n);

#endif
