/*
 * repo.c — opening a repository: repo.json, which binds it to one PostgreSQL system
 * and holds the encryption parameters (KDF salt and cost, wrapped data key).
 *
 * repo.json is plain JSON, not an envelope: it is what unlocks the envelopes. Nothing
 * in it is secret without the passphrase.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pgark writes under 1 KiB; a longer repo.json is not one to hold in memory */
#define REPO_JSON_MAX (64 * 1024)

const struct repo_identity *repo_identity(const struct repo *r)
{
    return &r->identity;
}

const char *repo_name(const struct repo *r)
{
    return r->storage->name ? r->storage->name : "?";
}

struct storage *repo_storage(struct repo *r)
{
    return r->storage;
}

bool repo_encrypted(const struct repo *r)
{
    return r->encrypted;
}

/* Forget what a deferred opening kept to unlock the keys. */
static void drop_key_source(struct repo *r)
{
    if (r->passphrase)
        secure_zero(r->passphrase, strlen(r->passphrase));
    free(r->passphrase);
    free(r->key_rec);
    r->passphrase = NULL;
    r->key_rec = NULL;
}

void repo_close(struct repo *r)
{
    if (!r)
        return;
    crypto_keyring_free(r->keyring);
    for (size_t i = 0; i < r->nold_keyrings; i++)
        crypto_keyring_free(r->old_keyrings[i]);
    free(r->old_keyrings);
    drop_key_source(r);
    free(r->key_msg);
    free(r->key_hint);
    free(r->key_cache);
    free(r->keys);
    pthread_mutex_destroy(&r->key_lock);
    free(r->cluster);
    free(r->prefix);
    free(r);
}

static char *identity_json(const struct repo *r)
{
    char sysid[32], created[64];
    snprintf(sysid, sizeof(sysid), "%llu", (unsigned long long)r->identity.system_identifier);
    json_t *o = json_pack(
        "{s:i, s:s, s:s, s:i, s:I, s:s, s:s}", "format", PGARK_REPO_FORMAT, "cluster", r->cluster,
        "system_identifier", sysid, "pg_major", r->identity.pg_major, "wal_segment_size",
        (json_int_t)r->identity.seg_size, "created",
        time_format_pg(time_now_us(), created, sizeof(created)), "pgark_version", PGARK_VERSION);
    if (r->keyring) {
        struct crypto_key_record rec;
        crypto_keyring_export(r->keyring, &rec);
        json_object_set_new(o, "encryption",
                            json_pack("{s:s, s:s, s:I, s:i, s:i, s:s, s:s}", "cipher",
                                      "aes-256-gcm", "kdf", rec.kdf, "n", (json_int_t)rec.n, "r",
                                      (int)rec.r, "p", (int)rec.p, "salt", rec.salt, "wrapped_key",
                                      rec.wrapped_key));
    } else {
        json_object_set_new(o, "encryption", json_null());
    }
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

int repo_json_bad(const struct repo *r, const char *what)
{
    return err_set(ERR_INTEGRITY, "\"%s%s\" in repository \"%s\" is not valid: %s", r->prefix,
                   REPO_JSON, repo_name(r), what);
}

/* The key record of repo.json's "encryption" object: key 0's wrapping, and the later
 * keys of "data_keys" (absent until rotate-key --data-key adds one). */
int repo_json_key_record(const struct repo *r, json_t *enc, struct crypto_key_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    const char *kdf = json_string_value(json_object_get(enc, "kdf"));
    const char *salt = json_string_value(json_object_get(enc, "salt"));
    const char *wrapped = json_string_value(json_object_get(enc, "wrapped_key"));
    json_t *n = json_object_get(enc, "n"), *rr = json_object_get(enc, "r"),
           *p = json_object_get(enc, "p"), *keys = json_object_get(enc, "data_keys");
    if (!kdf || !salt || !wrapped || !json_is_integer(n) || !json_is_integer(rr) ||
        !json_is_integer(p) || strlen(kdf) >= sizeof(rec->kdf) ||
        strlen(salt) >= sizeof(rec->salt) || strlen(wrapped) >= sizeof(rec->wrapped_key))
        return repo_json_bad(r, "incomplete encryption parameters");
    /* r and p are 32-bit: 2^32 + 8 must not read as 8 */
    if (json_integer_value(n) < 0 || json_integer_value(rr) < 0 ||
        json_integer_value(rr) > UINT32_MAX || json_integer_value(p) < 0 ||
        json_integer_value(p) > UINT32_MAX)
        return repo_json_bad(r, "encryption parameters out of range");
    if (keys && (!json_is_array(keys) || json_array_size(keys) > CRYPTO_KEYS_MAX - 1))
        return repo_json_bad(r, "\"data_keys\" is not a list of at most 63 keys");
    for (size_t i = 0; keys && i < json_array_size(keys); i++) {
        json_t *k = json_array_get(keys, i), *id = json_object_get(k, "id");
        const char *w = json_string_value(json_object_get(k, "wrapped_key"));
        if (!json_is_integer(id) || json_integer_value(id) < 1 ||
            json_integer_value(id) > UINT32_MAX || !w ||
            strlen(w) >= sizeof(rec->extra[i].wrapped_key))
            return repo_json_bad(r, "a data key without a valid id or wrapped key");
        rec->extra[i].id = (uint32_t)json_integer_value(id);
        strcpy(rec->extra[i].wrapped_key, w);
        rec->nextra++;
    }
    strcpy(rec->kdf, kdf);
    strcpy(rec->salt, salt);
    strcpy(rec->wrapped_key, wrapped);
    rec->n = (uint64_t)json_integer_value(n);
    rec->r = (uint32_t)json_integer_value(rr);
    rec->p = (uint32_t)json_integer_value(p);
    return 0;
}

/* When key id was created, from "data_keys" (0 when unknown: key 0, or not recorded). */
static int64_t key_created(json_t *enc, uint32_t id)
{
    json_t *keys = json_object_get(enc, "data_keys");
    int64_t us = 0;
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *k = json_array_get(keys, i);
        const char *when = json_string_value(json_object_get(k, "created"));
        if (json_integer_value(json_object_get(k, "id")) == (json_int_t)id && when &&
            time_parse(when, &us) < 0) {
            err_clear();
            us = 0;
        }
    }
    return us;
}

/* Keep what r needs to tell its keys apart (repo_data_keys) from rec and enc. */
static void note_keys(struct repo *r, const struct crypto_key_record *rec, json_t *enc)
{
    r->nkeys = 1 + rec->nextra;
    r->keys = xcalloc(r->nkeys, sizeof(*r->keys));
    for (size_t i = 0; i < r->nkeys; i++) {
        r->keys[i].id = i ? rec->extra[i - 1].id : 0;
        r->keys[i].current = i == r->nkeys - 1;
        if (i + 1 < r->nkeys)
            r->keys[i].retired_us = key_created(enc, rec->extra[i].id);
    }
}

/* Derive the keys of r from rec and passphrase (scrypt, then the data key unwrapped). */
static int unlock_with(struct repo *r, const struct crypto_key_record *rec, const char *passphrase)
{
    int rc = repo_keycache_open(r, rec, passphrase, &r->keyring);
    if (rc == 1) {
        log_detail("repository \"%s\": deriving the key from the passphrase (scrypt)",
                   repo_name(r));
        if ((rc = crypto_keyring_open(rec, passphrase, strlen(passphrase), &r->keyring)) == 0)
            repo_keycache_store(r, r->keyring, passphrase);
    }
    r->keys_read_us = time_mono_us();
    if (rc < 0) {
        if (err_kind() == ERR_INTEGRITY)
            err_context("in the encryption parameters of \"%s%s\"", r->prefix, REPO_JSON);
        err_context("while opening repository \"%s\"", repo_name(r));
    }
    return rc;
}

int repo_unlock(struct repo *r)
{
    int rc = 0;

    if (!r->encrypted)
        return 0;
    pthread_mutex_lock(&r->key_lock);
    if (r->keyring) {
        /* unlocked */
    } else if (r->key_msg) {
        rc = err_set(r->key_err, "%s", r->key_msg);
        if (r->key_hint)
            err_hint("%s", r->key_hint);
    } else if ((rc = unlock_with(r, r->key_rec, r->passphrase)) < 0) {
        r->key_err = err_kind();
        r->key_msg = err_format();
        r->key_hint = err_hint_text() ? xstrdup(err_hint_text()) : NULL;
    }
    drop_key_source(r);
    pthread_mutex_unlock(&r->key_lock);
    return rc;
}

/* Parse repo.json into r (identity, keyring: with defer, only what unlocks it).
 * Long: each field of repo.json read and checked in turn (format, identity, encryption),
 * each with its own error; one level.
 */
static int load_json(struct repo *r, const char *text, size_t len, const char *passphrase,
                     bool defer)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    int rc = 0;
    if (!o || !json_is_object(o)) {
        rc = repo_json_bad(r, o ? "not an object" : jerr.text);
        goto out;
    }
    json_t *format = json_object_get(o, "format");
    if (!json_is_integer(format)) {
        rc = repo_json_bad(r, "no format version");
        goto out;
    }
    if (json_integer_value(format) != PGARK_REPO_FORMAT &&
        json_integer_value(format) != PGARK_REPO_FORMAT_KEYS) {
        rc = err_set(ERR_MISMATCH,
                     "repository \"%s\" has format %lld; this pgark reads formats %d and %d",
                     repo_name(r), (long long)json_integer_value(format), PGARK_REPO_FORMAT,
                     PGARK_REPO_FORMAT_KEYS);
        goto out;
    }
    const char *sysid = json_string_value(json_object_get(o, "system_identifier"));
    json_t *major = json_object_get(o, "pg_major"), *seg = json_object_get(o, "wal_segment_size");
    if (!sysid || !json_is_integer(major) || !json_is_integer(seg)) {
        rc = repo_json_bad(r, "system_identifier, pg_major or wal_segment_size missing");
        goto out;
    }
    /* strtoull alone takes "", " 1", "+1" and "-1" (wrapped): digits only */
    char *end = NULL;
    errno = 0;
    if (sysid[0] >= '0' && sysid[0] <= '9')
        r->identity.system_identifier = strtoull(sysid, &end, 10);
    r->identity.pg_major = (int)json_integer_value(major);
    r->identity.seg_size = (uint64_t)json_integer_value(seg);
    if (!end || *end || errno == ERANGE || !wal_seg_size_valid(r->identity.seg_size)) {
        rc = repo_json_bad(r, "bad system_identifier or wal_segment_size");
        goto out;
    }
    json_t *enc = json_object_get(o, "encryption");
    /* Absent or of another type would read as "not encrypted": a stripped repo.json must
     * not turn an encrypted repository into one that takes plaintext objects. */
    if (!json_is_object(enc) && !json_is_null(enc)) {
        rc = repo_json_bad(r, "\"encryption\" missing (an object, or null when not encrypted)");
        goto out;
    }
    if (json_is_object(enc)) {
        if (!passphrase) {
            rc = err_set(ERR_CONFIG,
                         "repository \"%s\" is encrypted, but no passphrase is "
                         "configured",
                         repo_name(r));
            err_hint("set encryption.passphrase_file to the passphrase the repository was "
                     "created with");
            goto out;
        }
        struct crypto_key_record rec;
        if ((rc = repo_json_key_record(r, enc, &rec)) < 0)
            goto out;
        r->encrypted = true;
        r->cipher = codec_by_name(CODEC_CIPHER, "aes-256-gcm");
        note_keys(r, &rec, enc);
        if (defer) {
            r->key_rec = xmalloc(sizeof(rec));
            *r->key_rec = rec;
            r->passphrase = xstrdup(passphrase);
        } else if ((rc = unlock_with(r, &rec, passphrase)) < 0) {
            goto out;
        }
    } else if (passphrase) {
        rc = err_set(ERR_CONFIG,
                     "repository \"%s\" is not encrypted, but encryption.passphrase "
                     "is set",
                     repo_name(r));
        err_hint("a repository is encrypted or not from its creation; remove the passphrase or "
                 "use a new repository");
        goto out;
    }
out:
    json_decref(o);
    return rc;
}

/* Create repo.json: 0, or 1 when another process created it first (the error is
 * clear; the caller reads theirs). Two first commands of a new cluster often start
 * together (a receiver and the first backup); with encryption each makes its own data
 * key, and a repo.json that replaced another would leave everything written with the
 * other key unreadable: so it is created only where none exists — by a write that
 * does not replace, where the store can do one, else by the protocol of create.c. */
static int create_json(struct repo *r, const struct repo_options *opts)
{
    int rc = 0;
    char *full = repo_full_path(r, REPO_JSON);
    char *text = NULL, *probe = NULL, *why = NULL;
    uint8_t raw[16];
    char id[2 * sizeof(raw) + 1];
    const char *passphrase = opts->codecs.passphrase;
    if (passphrase) {
        struct crypto_kdf_params params = {opts->kdf_n ? opts->kdf_n : CRYPTO_KDF_DEFAULT_N,
                                           CRYPTO_KDF_DEFAULT_R, CRYPTO_KDF_DEFAULT_P};
        rc = crypto_keyring_create(passphrase, strlen(passphrase), &params, &r->keyring);
        if (rc < 0)
            goto out;
        r->cipher = codec_by_name(CODEC_CIPHER, "aes-256-gcm");
        r->encrypted = true;
        r->nkeys = 1;
        r->keys = xcalloc(1, sizeof(*r->keys));
        r->keys[0].current = true;
    }
    text = identity_json(r);
    if ((rc = random_bytes(raw, sizeof(raw))) < 0)
        goto out;
    probe = xasprintf("%s" REPO_PROBE_PREFIX "%s", r->prefix, hex_encode(raw, sizeof(raw), id));
    if ((rc = storage_create_honoured(r->storage, probe, &why)) < 0)
        goto out;
    if (rc == 1) {
        rc = storage_create_all(r->storage, full, text, strlen(text));
    } else {
        log_info(
            "repository \"%s\": %s; creating \"%s\" through candidates in \"%s" REPO_CANDIDATE_DIR
            "\" instead",
            repo_name(r), why ? why : "the store cannot refuse to replace an object", full,
            r->prefix);
        rc = repo_create_racing(r, full, text, opts->create_wait_ms);
    }
    if (rc < 0 && err_kind() == ERR_EXISTS) {
        err_clear();
        rc = 1;
    }
    if (rc == 1) {
        crypto_keyring_free(r->keyring);
        r->keyring = NULL;
        free(r->keys);
        r->keys = NULL;
        r->nkeys = 0;
        r->encrypted = false;
        r->cipher = codec_by_name(CODEC_CIPHER, "none");
        goto out;
    }
    if (rc == 0 && r->keyring)
        repo_keycache_store(r, r->keyring, passphrase);
    if (rc == 0)
        log_info("created repository for cluster \"%s\" in \"%s\"%s", r->cluster, repo_name(r),
                 r->keyring ? " (encrypted)" : "");
out:
    free(why);
    free(probe);
    free(text);
    free(full);
    return rc;
}

struct json_sink {
    struct buf b;
    bool too_long;
};

static int json_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct json_sink *js = ctx;
    if (js->b.len + len > REPO_JSON_MAX) {
        js->too_long = true;
        return err_set(ERR_INTEGRITY, "too long"); /* replaced below */
    }
    buf_append(&js->b, data, len);
    return 0;
}

/* repo.json into memory (malloc'd), at most REPO_JSON_MAX bytes of it. */
int repo_json_read(const struct repo *r, const char *full, uint8_t **data, size_t *len)
{
    struct json_sink js = {BUF_INIT, false};
    int rc = storage_read(r->storage, full, 0, STORAGE_TO_END, json_sink, &js);
    if (rc < 0) {
        if (js.too_long) {
            err_clear();
            rc = repo_json_bad(r, "longer than 64 KiB");
        }
        buf_free(&js.b);
        return rc;
    }
    *len = js.b.len;
    *data = (uint8_t *)buf_steal(&js.b);
    return 0;
}

const struct codec *repo_codecs_compression(const struct repo_codecs *c)
{
    return c->compression ? c->compression : codec_by_name(CODEC_COMPRESSION, "none");
}

static int ignore_listed(void *ctx, const struct storage_info *info)
{
    (void)ctx;
    (void)info;
    return 0;
}

struct repo *repo_open(struct storage *s, const struct repo_options *opts,
                       const struct repo_identity *expect, bool create)
{
    struct repo *r = xcalloc(1, sizeof(*r));
    uint8_t *data = NULL;
    size_t len = 0;
    char *full = NULL;
    int rc;

    r->storage = s;
    pthread_mutex_init(&r->key_lock, NULL);
    r->cluster = xstrdup(opts->cluster);
    r->prefix = xasprintf("%s/", opts->cluster);
    r->compression = repo_codecs_compression(&opts->codecs);
    r->compress_level = opts->codecs.level;
    r->cipher = codec_by_name(CODEC_CIPHER, "none");
    r->key_cache = repo_keycache_path(opts->key_cache_spool, opts->cluster, repo_name(r));
    full = repo_full_path(r, REPO_JSON);

    rc = repo_json_read(r, full, &data, &len);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        if (!create || !expect) {
            /* A missing bucket also reads as "not found": a listing tells the two apart
             * (it fails for the bucket, and lists nothing for a missing object). The
             * prefix is repo.json's own name, so that little is listed either way. */
            if (storage_list(s, full, ignore_listed, NULL) < 0)
                goto fail;
            err_set(ERR_NOT_FOUND, "repository \"%s\" holds no cluster \"%s\" (no \"%s\")",
                    repo_name(r), r->cluster, full);
            err_hint("the first \"pgark receive\" or \"pgark backup\" of the cluster creates it");
            goto fail;
        }
        r->identity = *expect;
        rc = create_json(r, opts);
        if (rc < 0)
            goto fail;
        if (rc == 0)
            goto done;
        log_detail("repository \"%s\": another process created repo.json first; using it",
                   repo_name(r));
        rc = repo_json_read(r, full, &data, &len);
    }
    if (rc < 0)
        goto fail;
    if (load_json(r, (const char *)data, len, opts->codecs.passphrase, opts->defer_key) < 0)
        goto fail;
    if (expect) {
        if (expect->system_identifier != r->identity.system_identifier) {
            err_set(ERR_MISMATCH,
                    "repository \"%s\" belongs to database system %llu, but the server is "
                    "system %llu",
                    repo_name(r), (unsigned long long)r->identity.system_identifier,
                    (unsigned long long)expect->system_identifier);
            err_hint("a repository holds one cluster; give this one another path, prefix or "
                     "cluster name");
            goto fail;
        }
        if (expect->pg_major != r->identity.pg_major || expect->seg_size != r->identity.seg_size) {
            err_set(ERR_MISMATCH,
                    "repository \"%s\" holds PostgreSQL %d with %llu-byte WAL segments, but the "
                    "server is PostgreSQL %d with %llu-byte segments",
                    repo_name(r), r->identity.pg_major, (unsigned long long)r->identity.seg_size,
                    expect->pg_major, (unsigned long long)expect->seg_size);
            goto fail;
        }
    }
done:
    free(data);
    free(full);
    return r;
fail:
    free(data);
    free(full);
    repo_close(r);
    return NULL;
}

/* Whether kr holds exactly the keys rec lists. */
static bool same_keys(const struct crypto_keyring *kr, const struct crypto_key_record *rec)
{
    if (crypto_keyring_current_id(kr) != (rec->nextra ? rec->extra[rec->nextra - 1].id : 0))
        return false;
    for (size_t i = 0; i < rec->nextra; i++)
        if (!crypto_keyring_key(kr, rec->extra[i].id))
            return false;
    return true;
}

/* How often a handle that writes reads repo.json again to learn of a newer data key:
 * well within the hour expire leaves a replaced key alone (expire.c). */
#define KEY_RECHECK_US (300 * INT64_C(1000000))

static int64_t key_recheck_us(void)
{
    const char *env = getenv("PGARK_TEST_KEY_RECHECK_S"); /* tests: another interval */
    return env && *env ? atoll(env) * INT64_C(1000000) : KEY_RECHECK_US;
}

int repo_refresh_keys(struct repo *r, bool if_stale)
{
    char *full = repo_full_path(r, REPO_JSON);
    uint8_t *data = NULL;
    size_t len = 0;
    json_t *o = NULL;
    struct crypto_keyring *next = NULL;
    struct crypto_key_record *rec = xmalloc(sizeof(*rec));
    int rc = 0;

    pthread_mutex_lock(&r->key_lock);
    if (if_stale && time_mono_us() - r->keys_read_us < key_recheck_us())
        goto out; /* another thread just did */
    if ((rc = repo_json_read(r, full, &data, &len)) < 0)
        goto out;
    o = json_loadb((const char *)data, len, 0, NULL);
    json_t *enc = json_object_get(o, "encryption");
    if (!json_is_object(enc)) {
        rc = repo_json_bad(r, "\"encryption\" missing");
        goto out;
    }
    if ((rc = repo_json_key_record(r, enc, rec)) < 0)
        goto out;
    r->keys_read_us = time_mono_us();
    if (same_keys(r->keyring, rec))
        goto out; /* nothing new: the keyring stays (no copy kept per look) */
    if ((rc = crypto_keyring_refresh(r->keyring, rec, &next)) < 0) {
        err_context("in the encryption parameters of \"%s%s\"", r->prefix, REPO_JSON);
        goto out;
    }
    if (rc == 1) {
        rc = err_set(ERR_AUTH,
                     "the data keys of repository \"%s\" were wrapped under another passphrase "
                     "since it was opened",
                     repo_name(r));
        err_hint("put the new passphrase in encryption.passphrase_file and reload (SIGHUP)");
        goto out;
    }
    if (crypto_keyring_current_id(next) != crypto_keyring_current_id(r->keyring))
        log_info("repository \"%s\": data key %" PRIu32 " is current now (read again from \"%s\")",
                 repo_name(r), crypto_keyring_current_id(next), full);
    r->old_keyrings = xrealloc(r->old_keyrings, (r->nold_keyrings + 1) * sizeof(*r->old_keyrings));
    r->old_keyrings[r->nold_keyrings++] = r->keyring;
    __atomic_store_n(&r->keyring, next, __ATOMIC_RELEASE);
    next = NULL;
    free(r->keys);
    note_keys(r, rec, enc);
out:
    pthread_mutex_unlock(&r->key_lock);
    crypto_keyring_free(next);
    secure_free(rec, sizeof(*rec));
    json_decref(o);
    free(data);
    free(full);
    return rc;
}

void repo_recheck_keys(struct repo *r)
{
    int64_t last;
    pthread_mutex_lock(&r->key_lock);
    last = r->keys_read_us;
    pthread_mutex_unlock(&r->key_lock);
    if (!r->encrypted || time_mono_us() - last < key_recheck_us())
        return;
    if (repo_refresh_keys(r, true) < 0) {
        /* The keys held still write readable objects: go on with them, say why. */
        char *text = err_format();
        log_warn("repository \"%s\": could not look for a newer data key: %s", repo_name(r), text);
        free(text);
        err_clear();
    }
}
