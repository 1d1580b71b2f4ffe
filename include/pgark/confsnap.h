/*
 * confsnap.h — configuration backups: the server's configuration files and pgark's own
 * configuration (secrets redacted), kept in each repository as the record
 * configs/<LABEL>.json (repo.h, records: an envelope, compressed and encrypted like any
 * other object). Every `backup` writes one under its label; `backup --config-only`
 * writes one alone (a configuration-only backup). `restore --config-only` writes one
 * out under a directory, a normal restore flat into PGDATA/pgark-restored-config/.
 *
 * The record, one JSON object:
 *   {"format":1,"label":"...","kind":"backup"|"config-only","time":"<UTC>",
 *    "server":{"data_directory":"...","config_file":"...","hba_file":"...",
 *              "ident_file":"..."},
 *    "files":[{"path":"/etc/postgresql/15/main/postgresql.conf","source":"config_file",
 *              "size":N,"sha256":"<hex>","data_hex":"<hex>"}, ...],
 *    "warnings":["..."]}
 * "path" is absolute as the server (or, for "source":"pgark", this host) knows it;
 * "source" is config_file, hba_file, ident_file, include (a file pg_file_settings
 * names) or pgark.
 *
 * The server's files are read over a normal SQL connection with pg_read_binary_file,
 * so pgark may run on another host: the role needs superuser or pg_read_server_files
 * (and pg_read_all_settings to see the file names). A file it cannot read is a warning
 * naming it, kept in the record's "warnings"; it never fails a backup.
 */
#ifndef PGARK_CONFSNAP_H
#define PGARK_CONFSNAP_H

#include "pgark/repo.h"

#include <stdbool.h>
#include <stddef.h>

#define CONFSNAP_KIND_BACKUP "backup"
#define CONFSNAP_KIND_CONFIG_ONLY "config-only"
/* The directory of PGDATA a normal restore writes the configuration into. */
#define CONFSNAP_RESTORED_DIR "pgark-restored-config"

/* pgark's configuration text with every secret value replaced by <redacted>: the values
 * of the keys passphrase, access_key_id, secret_access_key, session_token and url, and
 * password=... inside any value (a conninfo). Caller frees. */
char *confsnap_redact(const char *text);

/* The record for label (kind as above): the server's configuration files read over
 * conninfo, and pgark's configuration file at pgark_config (redacted; NULL: none).
 * Each warning is logged and kept; *nfiles receives the number of files. Returns the
 * JSON text (caller frees), or NULL when no connection could be made (error set). */
char *confsnap_gather(const char *conninfo, const char *pgark_config, const char *label,
                      const char *kind, size_t *nfiles);
/* The same over conn, a normal connection the caller made (and keeps): the backup reads
 * the files on the connection it asks the WAL summaries on, one backend for both. Never
 * NULL: what it cannot read is a warning in the record. */
struct pg_conn;
char *confsnap_gather_on(struct pg_conn *conn, const char *pgark_config, const char *label,
                         const char *kind, size_t *nfiles);

/* Write the record to r; 0 or negative (error set). */
int confsnap_put(struct repo *r, const char *label, const char *text);
/* Read the record of label from r: 0 and *text (caller frees), or negative
 * (ERR_NOT_FOUND when r has none). */
int confsnap_get(struct repo *r, const char *label, char **text);
/* The labels of r's records, sorted (free with repo_record_names_free). */
int confsnap_list(struct repo *r, char ***labels, size_t *n);

/*
 * Write the files of record text under dir (created 0700 if missing), mode 0600: each at
 * its absolute path below dir (dir/etc/postgresql/15/main/pg_hba.conf), or with flat as
 * dir/NN-<name> (NN its place in the record: short names, for a directory inside PGDATA
 * that later backups carry) with a README saying where they came from (origin) and the
 * path each had. Refuses (ERR_INTEGRITY) a record whose path is not absolute and
 * normalized, or whose content does not match its sha256, before anything is written.
 * *nfiles receives the number written.
 */
int confsnap_write_tree(const char *text, const char *dir, const char *origin, bool flat,
                        size_t *nfiles);

#endif
