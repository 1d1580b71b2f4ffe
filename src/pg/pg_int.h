/*
 * pg_int.h — helpers of src/pg that need no server, exposed for the unit tests.
 *
 * Not part of the public contract: only src/pg and tests/unit/test_pg_*.c include it.
 */
#ifndef PGARK_PG_INT_H
#define PGARK_PG_INT_H

#include "pgark/error.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stdint.h>

/* Secrets found in a conninfo: the password keyword's value and a URI's user:password
 * part, found textually so that even a conninfo libpq cannot parse is covered.
 * Returns a NULL-terminated malloc'd array (free with pg_int_secrets_free). */
char **pg_int_conninfo_secrets(const char *conninfo);
void pg_int_secrets_free(char **secrets);

/* A libpq message made fit for one error line: lines trimmed and joined with "; ",
 * runs of blanks squeezed, every secret replaced by "********". Caller frees. */
char *pg_int_clean_message(const char *msg, char *const *secrets);

/* The error kind for a failed connection attempt, from libpq's message and whether
 * the server asked for a password we did not have. */
enum err_kind pg_int_connect_error_kind(const char *msg, bool needs_password);

/* The error kind for a SQLSTATE of a failed command (NULL: none sent). */
enum err_kind pg_int_sqlstate_kind(const char *sqlstate, bool connection_ok);

/* Strict text parsers for server answers; each returns 0 or -ERR_PROTOCOL naming
 * what (e.g. "systemid") and the text. */
int pg_int_parse_u64(const char *what, const char *text, uint64_t *out);
int pg_int_parse_tli(const char *what, const char *text, timeline_t *out);
/* "X/X" hex. To be replaced by wal.h's lsn_parse once it lands. */
int pg_int_parse_lsn(const char *what, const char *text, lsn_t *out);
/* SHOW wal_segment_size ("16MB"). To be replaced by wal_seg_size_parse_show. */
int pg_int_parse_seg_size(const char *text, uint64_t *out);

/* A keyword=value string or a URI (else a plain database name). */
bool pg_int_looks_like_conninfo(const char *s);

/* pg_conninfo_transport's judgement from the values libpq will use (NULL: unset):
 * host and hostaddr are comma-separated lists; sslmode is what the conninfo or
 * PGSSLMODE set, sslmode_default libpq's own default (NULL: "prefer"). */
struct pg_transport;
void pg_int_transport(const char *host, const char *hostaddr, const char *sslmode,
                      const char *sslmode_default, struct pg_transport *out);

/* Does conninfo name a database (or PGDATABASE one)? A plain word is a database name
 * itself. */
bool pg_int_names_dbname(const char *conninfo);

#endif
