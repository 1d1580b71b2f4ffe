/*
 * rekey.c — changing a repository's keys in repo.json: re-wrapping every data key under
 * a new passphrase (repo_rekey), adding a data key (repo_new_data_key) and dropping keys
 * (repo_drop_data_keys), each one atomic replacement of repo.json. Moved out of repo.c,
 * which opens repositories.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/testhook.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A repository named by storage and cluster alone, for repo_rekey's messages and reads. */
static struct repo *repo_shell(struct storage *s, const struct repo_options *opts)
{
    struct repo *r = xcalloc(1, sizeof(*r));
    r->storage = s;
    pthread_mutex_init(&r->key_lock, NULL);
    r->cluster = xstrdup(opts->cluster);
    r->prefix = xasprintf("%s/", opts->cluster);
    r->cipher = codec_by_name(CODEC_CIPHER, "none");
    r->key_cache = repo_keycache_path(opts->key_cache_spool, opts->cluster, repo_name(r));
    return r;
}

/* Unlock rec with passphrase: 0 (*kr set), 1 when the passphrase is wrong, <0 otherwise. */
static int try_unlock(const struct crypto_key_record *rec, const char *passphrase,
                      struct crypto_keyring **kr)
{
    int rc = crypto_keyring_open(rec, passphrase, strlen(passphrase), kr);
    if (rc < 0 && err_kind() == ERR_AUTH) {
        err_clear();
        rc = 1;
    }
    return rc;
}

/* What update_keys does to the keys of repo.json. */
enum key_op { KEY_REWRAP, KEY_ADD, KEY_DROP };

struct key_update {
    enum key_op op;
    const char *new_passphrase; /* KEY_REWRAP */
    uint32_t new_id;            /* KEY_ADD: the id it made */
    const uint32_t *drop;       /* KEY_DROP */
    size_t ndrop;
};

static bool dropped(const struct key_update *u, uint32_t id)
{
    for (size_t i = 0; u->op == KEY_DROP && i < u->ndrop; i++)
        if (u->drop[i] == id)
            return true;
    return false;
}

/* Put rec's wrapping into enc: key 0's in place, the later keys as "data_keys", each
 * keeping its "created" time (a new one gets now). */
static void set_key_json(json_t *enc, const struct crypto_key_record *rec, const char *now)
{
    json_t *old = json_object_get(enc, "data_keys");
    json_t *keys = json_array();
    json_object_set_new(enc, "n", json_integer((json_int_t)rec->n));
    json_object_set_new(enc, "r", json_integer(rec->r));
    json_object_set_new(enc, "p", json_integer(rec->p));
    json_object_set_new(enc, "salt", json_string(rec->salt));
    json_object_set_new(enc, "wrapped_key", json_string(rec->wrapped_key));
    for (size_t i = 0; i < rec->nextra; i++) {
        const char *created = now;
        for (size_t k = 0; k < json_array_size(old); k++) {
            json_t *o = json_array_get(old, k);
            const char *c = json_string_value(json_object_get(o, "created"));
            if (json_integer_value(json_object_get(o, "id")) == (json_int_t)rec->extra[i].id && c)
                created = c;
        }
        json_array_append_new(keys, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)rec->extra[i].id,
                                              "created", created, "wrapped_key",
                                              rec->extra[i].wrapped_key));
    }
    if (rec->nextra)
        json_object_set_new(enc, "data_keys", keys);
    else {
        json_decref(keys);
        json_object_del(enc, "data_keys");
    }
}

/* repo.json of r (at full) read and parsed into *o, with its "encryption" object *enc
 * and its key record; refused when it is not of a format this pgark rotates or is not
 * encrypted. */
static int read_keys(struct repo *r, const char *full, const struct key_update *u, json_t **o,
                     json_t **enc, struct crypto_key_record *rec)
{
    uint8_t *data = NULL;
    size_t len = 0;
    json_error_t jerr;
    int rc;

    if ((rc = repo_json_read(r, full, &data, &len)) < 0) {
        if (rc == -ERR_NOT_FOUND) {
            err_clear();
            rc = err_set(ERR_NOT_FOUND, "repository \"%s\" holds no cluster \"%s\" (no \"%s\")",
                         repo_name(r), r->cluster, full);
        }
        goto out;
    }
    *o = json_loadb((const char *)data, len, 0, &jerr);
    if (!*o || !json_is_object(*o)) {
        rc = repo_json_bad(r, *o ? "not an object" : jerr.text);
        goto out;
    }
    json_t *format = json_object_get(*o, "format");
    if (!json_is_integer(format) || (json_integer_value(format) != PGARK_REPO_FORMAT &&
                                     json_integer_value(format) != PGARK_REPO_FORMAT_KEYS)) {
        rc = err_set(ERR_MISMATCH,
                     "repository \"%s\" is not of format %d or %d, which this pgark "
                     "rotates",
                     repo_name(r), PGARK_REPO_FORMAT, PGARK_REPO_FORMAT_KEYS);
        goto out;
    }
    *enc = json_object_get(*o, "encryption");
    if (!json_is_object(*enc)) {
        rc = err_set(ERR_CONFIG,
                     "repository \"%s\" is not encrypted: it has no %s to "
                     "rotate",
                     repo_name(r), u->op == KEY_REWRAP ? "passphrase" : "data key");
        goto out;
    }
    rc = repo_json_key_record(r, *enc, rec);
out:
    free(data);
    return rc;
}

/* rec's keys unlocked into *kr for u: 0, 1 for a rewrap the new passphrase already
 * opens (a killed or failed run's), <0 (ERR_AUTH for a wrong passphrase). */
static int unlock_keys(struct repo *r, const struct repo_options *opts, const struct key_update *u,
                       const struct crypto_key_record *rec, struct crypto_keyring **kr)
{
    int rc;
    /* The new passphrase first: a repository a killed or failed run already rotated is
     * done, and a re-run completes the others. */
    if (u->op == KEY_REWRAP && (rc = try_unlock(rec, u->new_passphrase, kr)) <= 0) {
        if (rc == 0) {
            log_info("repository \"%s\": already under the new passphrase", repo_name(r));
            rc = 1;
        }
        return rc;
    }
    if (!opts->codecs.passphrase)
        return err_set(ERR_CONFIG,
                       "repository \"%s\" is encrypted, but no passphrase is configured",
                       repo_name(r));
    if ((rc = try_unlock(rec, opts->codecs.passphrase, kr)) < 0)
        return rc;
    if (rc == 1 && u->op == KEY_REWRAP) {
        rc = err_set(ERR_AUTH,
                     "neither the configured passphrase nor the new one unlocks the encryption "
                     "key of repository \"%s\"",
                     repo_name(r));
        err_hint("encryption.passphrase_file must hold the passphrase the repository is under now");
        return rc;
    }
    if (rc == 1) {
        rc =
            err_set(ERR_AUTH, "wrong passphrase: it does not unlock the repository encryption key");
        err_hint("use the passphrase the repository was created or last rekeyed with");
        return rc;
    }
    return 0;
}

/* u's change made to kr and rec (rewrap, add or drop). */
static int change_keys(struct repo *r, struct key_update *u, struct crypto_keyring *kr,
                       struct crypto_key_record *rec)
{
    int rc;
    if (u->op == KEY_REWRAP) {
        rc = crypto_keyring_rewrap(kr, u->new_passphrase, strlen(u->new_passphrase), NULL);
    } else if (u->op == KEY_ADD) {
        rc = crypto_keyring_add(kr, &u->new_id);
    } else {
        /* Dropping rewrites nothing: the other keys' wrappings stand as they are. */
        uint32_t current = rec->nextra ? rec->extra[rec->nextra - 1].id : 0;
        for (size_t i = 0; i < u->ndrop; i++)
            if (u->drop[i] == 0 || u->drop[i] == current)
                return err_set(ERR_USAGE, "data key %" PRIu32 " of repository \"%s\" is %s",
                               u->drop[i], repo_name(r),
                               u->drop[i] ? "the current one" : "the first, which names chunks");
        size_t keep = 0;
        for (size_t i = 0; i < rec->nextra; i++)
            if (!dropped(u, rec->extra[i].id))
                rec->extra[keep++] = rec->extra[i];
        rec->nextra = keep;
        rc = 0;
    }
    if (rc == 0 && u->op != KEY_DROP)
        crypto_keyring_export(kr, rec);
    return rc;
}

/* text written over repo.json (at full) in one atomic replacement (posix: rename over
 * it; S3: one PUT), so that a reader sees the old record or the new one
 * (docs/architecture.md), and read back: ERR_RUNTIME when another writer's is there. */
static int replace_keys(struct repo *r, const char *full, const char *text)
{
    uint8_t *back = NULL;
    size_t back_len = 0;
    int rc;

    testhook_pause("PGARK_TEST_REKEY_PAUSE", "before replacing repo.json");
    if ((rc = storage_write_all(r->storage, full, text, strlen(text))) < 0)
        goto out;
    if ((rc = repo_json_read(r, full, &back, &back_len)) < 0)
        goto out;
    if (back_len != strlen(text) || memcmp(back, text, back_len) != 0) {
        rc = err_set(ERR_RUNTIME,
                     "\"%s\" in repository \"%s\" changed while it was being rotated: another "
                     "rotate-key wrote it",
                     full, repo_name(r));
        err_hint("run one rotate-key at a time, then again with the passphrase that is to stay");
    }
out:
    free(back);
    return rc;
}

/*
 * The one way repo.json's keys change (passphrase rotation, a new data key, dropped
 * keys): read it, unlock, change, write it back in one atomic replacement (posix: a
 * rename over it; S3: one PUT), and read it back. A reader sees the old file or the
 * new one, never neither (docs/architecture.md). Returns 0, 1 for a rewrap the new
 * passphrase already opens, <0 on failure.
 */
static int update_keys(struct storage *s, const struct repo_options *opts, struct key_update *u)
{
    struct repo *r = repo_shell(s, opts);
    struct crypto_keyring *kr = NULL;
    char *full = repo_full_path(r, REPO_JSON), *text = NULL;
    json_t *o = NULL, *enc = NULL;
    struct crypto_key_record rec;
    int rc;

    if ((rc = read_keys(r, full, u, &o, &enc, &rec)) < 0 ||
        (rc = unlock_keys(r, opts, u, &rec, &kr)) != 0 || (rc = change_keys(r, u, kr, &rec)) < 0)
        goto out;
    char when[64];
    time_format_pg(time_now_us(), when, sizeof(when));
    set_key_json(enc, &rec, when);
    json_object_set_new(enc, u->op == KEY_REWRAP ? "rekeyed" : "keys_changed", json_string(when));
    json_object_set_new(o, "format",
                        json_integer(rec.nextra ? PGARK_REPO_FORMAT_KEYS : PGARK_REPO_FORMAT));
    text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    rc = replace_keys(r, full, text);
    /* The cached key is the old passphrase's: it would no longer apply (another salt),
     * and it opens the old record, which a versioned store may keep. */
    if (rc == 0 && u->op == KEY_REWRAP)
        repo_keycache_forget(r);
out:
    if (rc < 0)
        err_context("while %s of repository \"%s\"",
                    u->op == KEY_REWRAP ? "rotating the passphrase"
                    : u->op == KEY_ADD  ? "making a new data key"
                                        : "dropping data keys",
                    repo_name(r));
    crypto_keyring_free(kr);
    json_decref(o);
    free(text);
    free(full);
    repo_close(r);
    return rc;
}

int repo_rekey(struct storage *s, const struct repo_options *opts, const char *new_passphrase)
{
    struct key_update u = {.op = KEY_REWRAP, .new_passphrase = new_passphrase};
    int rc = update_keys(s, opts, &u);
    if (rc == 0)
        log_info("repository \"%s\": data keys wrapped under the new passphrase",
                 s->name ? s->name : "?");
    return rc;
}

int repo_new_data_key(struct storage *s, const struct repo_options *opts, uint32_t *id)
{
    struct key_update u = {.op = KEY_ADD};
    int rc = update_keys(s, opts, &u);
    if (rc == 0)
        *id = u.new_id;
    return rc;
}

int repo_drop_data_keys(struct storage *s, const struct repo_options *opts, const uint32_t *ids,
                        size_t n)
{
    struct key_update u = {.op = KEY_DROP, .drop = ids, .ndrop = n};
    return n ? update_keys(s, opts, &u) : 0;
}

const struct repo_data_key *repo_data_keys(const struct repo *r, size_t *n)
{
    *n = r->nkeys;
    return r->keys;
}
