/*
 * sigv4_int.h — AWS Signature Version 4 for the S3 driver (internal).
 *
 * Promise: builds the canonical request exactly as AWS specifies (sorted,
 * percent-encoded query with "name=" for valueless parameters; the path encoded
 * once per segment; headers lowercased, trimmed, sorted) and returns the value of
 * the Authorization header. The signing key is derived once per day and region.
 * The secret never leaves this object and is wiped on free. Thread-safe.
 */
#ifndef PGARK_SIGV4_INT_H
#define PGARK_SIGV4_INT_H

#include "pgark/mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sigv4_pair {
    const char *name;
    const char *value; /* query: NULL or "" both give "name=" */
};

struct sigv4 {
    char *access_key_id;
    char *secret;
    char *region;
    char *service;
    pthread_mutex_t lock;    /* guards the cached key */
    char key_date[9];        /* YYYYMMDD of key, "" when none */
    uint64_t key_generation; /* of the secret key was derived from (0: v->secret) */
    uint8_t key[32];
};

/* Credentials and scope are copied. */
void sigv4_init(struct sigv4 *v, const char *access_key_id, const char *secret, const char *region,
                const char *service);
/* Wipes the secret and the cached key; safe on a zeroed struct. */
void sigv4_release(struct sigv4 *v);

/* Percent-encode s into out per AWS (keep A-Z a-z 0-9 - _ . ~, and '/' if keep_slash). */
void sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash);

/* The canonical query string (sorted by encoded name, then value); caller frees.
 * Also the exact query to put in the URL, so what is sent is what was signed. */
char *sigv4_canonical_query(const struct sigv4_pair *query, size_t n);

/* The Authorization header value (without "Authorization: "); caller frees.
 * canonical_uri is already encoded (sigv4_uri_encode with keep_slash); headers are
 * every header to sign, including host, x-amz-date and x-amz-content-sha256;
 * amz_date is "YYYYMMDDTHHMMSSZ"; payload_hash is the hex SHA-256 of the body.
 * If canonical_out is not NULL it receives the canonical request (tests). */
char *sigv4_authorization(struct sigv4 *v, const char *method, const char *canonical_uri,
                          const struct sigv4_pair *query, size_t nquery,
                          const struct sigv4_pair *headers, size_t nheaders,
                          const char *payload_hash, const char *amz_date, char **canonical_out);

/* As sigv4_authorization, signed with these credentials instead of the ones given at
 * init: the cached signing key is reused only for the same day and generation, so a
 * new secret must come with a new generation (> 0; 0 stands for v's own secret). */
char *sigv4_authorization_with(struct sigv4 *v, const char *access_key_id, const char *secret,
                               uint64_t generation, const char *method, const char *canonical_uri,
                               const struct sigv4_pair *query, size_t nquery,
                               const struct sigv4_pair *headers, size_t nheaders,
                               const char *payload_hash, const char *amz_date,
                               char **canonical_out);

#endif
