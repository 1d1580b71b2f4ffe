/* sigv4.c — AWS Signature Version 4 (see sigv4_int.h). */
#include "sigv4_int.h"

#include "pgark/hash.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void sigv4_init(struct sigv4 *v, const char *access_key_id, const char *secret, const char *region,
                const char *service)
{
    memset(v, 0, sizeof(*v));
    v->access_key_id = xstrdup(access_key_id);
    v->secret = xstrdup(secret);
    v->region = xstrdup(region);
    v->service = xstrdup(service);
    pthread_mutex_init(&v->lock, NULL);
}

void sigv4_release(struct sigv4 *v)
{
    if (!v->access_key_id)
        return;
    free(v->access_key_id);
    secure_free(v->secret, strlen(v->secret));
    free(v->region);
    free(v->service);
    secure_zero(v->key, sizeof(v->key));
    pthread_mutex_destroy(&v->lock);
    memset(v, 0, sizeof(*v));
}

void sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash)
{
    static const char hexdig[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
            (keep_slash && *p == '/')) {
            buf_append(out, p, 1);
        } else {
            char esc[3] = {'%', hexdig[*p >> 4], hexdig[*p & 15]};
            buf_append(out, esc, 3);
        }
    }
}

struct encoded_pair {
    char *name;
    char *value;
};

static int pair_cmp(const void *a, const void *b)
{
    const struct encoded_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode(const char *s, bool keep_slash)
{
    struct buf b = BUF_INIT;
    sigv4_uri_encode(&b, s ? s : "", keep_slash);
    return buf_steal(&b);
}

char *sigv4_canonical_query(const struct sigv4_pair *query, size_t n)
{
    struct encoded_pair *e = xcalloc(n ? n : 1, sizeof(*e));
    struct buf out = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        e[i].name = encode(query[i].name, false);
        e[i].value = encode(query[i].value, false);
    }
    qsort(e, n, sizeof(*e), pair_cmp);
    for (size_t i = 0; i < n; i++)
        buf_appendf(&out, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
    for (size_t i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    return buf_steal(&out);
}

struct canon_header {
    char *name;  /* lowercased */
    char *value; /* trimmed, inner runs of spaces collapsed */
};

static int header_cmp(const void *a, const void *b)
{
    return strcmp(((const struct canon_header *)a)->name, ((const struct canon_header *)b)->name);
}

static char *canon_value(const char *v)
{
    struct buf b = BUF_INIT;
    bool space = false;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            buf_append(&b, " ", 1);
        space = false;
        buf_append(&b, v, 1);
    }
    return buf_steal(&b);
}

/* Derive (or reuse) the signing key for date (YYYYMMDD) into key. */
static void signing_key(struct sigv4 *v, const char *secret, uint64_t generation, const char *date,
                        uint8_t key[SHA256_LEN])
{
    pthread_mutex_lock(&v->lock);
    if (strcmp(v->key_date, date) != 0 || v->key_generation != generation) {
        size_t klen = strlen(secret) + 4;
        char *k0 = xmalloc(klen + 1);
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, klen - 4 + 1);
        uint8_t a[SHA256_LEN], b[SHA256_LEN];
        hmac_sha256(k0, klen, date, strlen(date), a);
        hmac_sha256(a, sizeof(a), v->region, strlen(v->region), b);
        hmac_sha256(b, sizeof(b), v->service, strlen(v->service), a);
        hmac_sha256(a, sizeof(a), "aws4_request", 12, v->key);
        memcpy(v->key_date, date, 9);
        v->key_generation = generation;
        secure_free(k0, klen);
        secure_zero(a, sizeof(a));
        secure_zero(b, sizeof(b));
    }
    memcpy(key, v->key, SHA256_LEN);
    pthread_mutex_unlock(&v->lock);
}

char *sigv4_authorization(struct sigv4 *v, const char *method, const char *canonical_uri,
                          const struct sigv4_pair *query, size_t nquery,
                          const struct sigv4_pair *headers, size_t nheaders,
                          const char *payload_hash, const char *amz_date, char **canonical_out)
{
    return sigv4_authorization_with(v, v->access_key_id, v->secret, 0, method, canonical_uri, query,
                                    nquery, headers, nheaders, payload_hash, amz_date,
                                    canonical_out);
}

char *sigv4_authorization_with(struct sigv4 *v, const char *access_key_id, const char *secret,
                               uint64_t generation, const char *method, const char *canonical_uri,
                               const struct sigv4_pair *query, size_t nquery,
                               const struct sigv4_pair *headers, size_t nheaders,
                               const char *payload_hash, const char *amz_date, char **canonical_out)
{
    struct canon_header *h = xcalloc(nheaders ? nheaders : 1, sizeof(*h));
    struct buf canon = BUF_INIT, signed_names = BUF_INIT, sts = BUF_INIT;
    char *cquery = sigv4_canonical_query(query, nquery);
    char date[9];
    uint8_t digest[SHA256_LEN], key[SHA256_LEN], sig[SHA256_LEN];
    char hexbuf[SHA256_HEX_LEN + 1];

    for (size_t i = 0; i < nheaders; i++) {
        h[i].name = xstrdup(headers[i].name);
        for (char *p = h[i].name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        h[i].value = canon_value(headers[i].value);
    }
    qsort(h, nheaders, sizeof(*h), header_cmp);

    buf_appendf(&canon, "%s\n%s\n%s\n", method, canonical_uri, cquery);
    for (size_t i = 0; i < nheaders; i++) {
        buf_appendf(&canon, "%s:%s\n", h[i].name, h[i].value);
        buf_appendf(&signed_names, "%s%s", i ? ";" : "", h[i].name);
    }
    buf_appendf(&canon, "\n%s\n%s", signed_names.data ? (char *)signed_names.data : "",
                payload_hash);

    memcpy(date, amz_date, 8);
    date[8] = '\0';
    sha256(canon.data, canon.len, digest);
    buf_appendf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date, date, v->region,
                v->service, hex_encode(digest, sizeof(digest), hexbuf));
    signing_key(v, secret, generation, date, key);
    hmac_sha256(key, sizeof(key), sts.data, sts.len, sig);
    secure_zero(key, sizeof(key));

    char *auth = xasprintf("AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request,"
                           "SignedHeaders=%s,Signature=%s",
                           access_key_id, date, v->region, v->service,
                           signed_names.data ? (char *)signed_names.data : "",
                           hex_encode(sig, sizeof(sig), hexbuf));
    if (canonical_out)
        *canonical_out = buf_steal(&canon);
    for (size_t i = 0; i < nheaders; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
    free(cquery);
    buf_free(&canon);
    buf_free(&signed_names);
    buf_free(&sts);
    return auth;
}
