/*
 * verify_damage.c — what verify does about a chunk it finds damaged or missing, so that
 * the damage does not spread and the user knows what is still good:
 *
 *   - every backup whose manifest names the chunk is named (the backups scope reads a
 *     file shared by several backups once, so only the first would be), out of scope
 *     ones too (--backup, --days): restoring any of them would fail;
 *   - a chunk whose content is not what its name says is moved to
 *     quarantine/<run>/chunks/<aa>/<name>, with <name>.reason.json beside it (when, why,
 *     which backups): backup deduplicates against a listing of chunks/, so the next
 *     backup stores the chunk again where the data directory still holds those bytes,
 *     and the older backups naming it are whole again. It is read once more first: a
 *     read that fails once (a flipped bit in transit) moves nothing. A chunk that could
 *     not be read for another reason (I/O, a server error) stays where it is;
 *   - the report says which other repositories hold each bad chunk sound (restore reads
 *     it from them), and the newest backup of each repository that no problem concerns.
 *
 * Quarantined objects are kept: expire leaves quarantine/ alone; they are evidence, and
 * removing them is left to the user.
 */
#include "verify_int.h"

#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"
#include "pgark/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const kind_names[] = {"missing", "damaged", "unreadable"};

static void pair_key(const char *label, const char *file, uint8_t key[SHA256_LEN])
{
    struct sha256_ctx *c = sha256_ctx_new();
    sha256_ctx_update(c, label, strlen(label) + 1);
    sha256_ctx_update(c, file, strlen(file));
    sha256_ctx_final(c, key);
    sha256_ctx_free(c);
}

static bool pair_reported_locked(struct verify_repo *vr, const char *label, const char *file)
{
    uint8_t key[SHA256_LEN];
    pair_key(label, file, key);
    if (!vr->reported)
        vr->reported = chunkset_new();
    return !chunkset_add(vr->reported, key);
}

bool verify_pair_reported(struct verify_run *v, struct verify_repo *vr, const char *label,
                          const char *file)
{
    pthread_mutex_lock(&v->lock);
    bool was = pair_reported_locked(vr, label, file);
    pthread_mutex_unlock(&v->lock);
    return was;
}

void verify_bad_chunk(struct verify_run *v, struct verify_repo *vr, const uint8_t *raw,
                      enum verify_bad_kind kind, const char *error, const char *label,
                      const char *file)
{
    pthread_mutex_lock(&v->lock);
    if (label && file)
        (void)pair_reported_locked(vr, label, file);
    if (!vr->bad_set)
        vr->bad_set = chunkset_new();
    if (chunkset_add(vr->bad_set, raw)) {
        vr->bad = xrealloc(vr->bad, (vr->nbad + 1) * sizeof(*vr->bad));
        struct verify_bad_chunk *b = &vr->bad[vr->nbad++];
        memset(b, 0, sizeof(*b));
        memcpy(b->raw, raw, SHA256_LEN);
        b->kind = kind;
        b->error = error ? xstrdup(error) : NULL;
    }
    pthread_mutex_unlock(&v->lock);
}

static int cmp_bad(const void *a, const void *b)
{
    return memcmp(((const struct verify_bad_chunk *)a)->raw,
                  ((const struct verify_bad_chunk *)b)->raw, SHA256_LEN);
}

static struct verify_bad_chunk *find_bad(const struct verify_repo *vr, const uint8_t *raw)
{
    struct verify_bad_chunk key;
    memcpy(key.raw, raw, SHA256_LEN);
    return bsearch(&key, vr->bad, vr->nbad, sizeof(*vr->bad), cmp_bad);
}

/* --- every backup naming a bad chunk -------------------------------------------------- */

struct trace {
    struct verify_run *v;
    struct verify_repo *vr;
    const char *label;
};

static int trace_file(void *arg, const struct manifest_file *f)
{
    struct trace *t = arg;
    if (f->type != MANIFEST_TYPE_FILE)
        return 0;
    for (size_t k = 0; k < f->n_chunks; k++) {
        const uint8_t *raw = f->chunks + k * SHA256_LEN;
        if (!chunkset_has(t->vr->bad_set, raw))
            continue;
        struct verify_bad_chunk *b = find_bad(t->vr, raw);
        if (!b)
            continue;
        if (!b->nbackups || strcmp(b->backups[b->nbackups - 1], t->label) != 0) {
            b->backups = xrealloc(b->backups, (b->nbackups + 1) * sizeof(*b->backups));
            b->backups[b->nbackups++] = xstrdup(t->label);
        }
        if (verify_pair_reported(t->v, t->vr, t->label, f->path))
            continue;
        char name[SHA256_HEX_LEN + 1], path[96];
        hex_encode(raw, SHA256_LEN, name);
        snprintf(path, sizeof(path), "chunks/%.2s/%s", name, name);
        struct verify_where w = {.kind = b->kind == VERIFY_BAD_MISSING ? "missing" : "damaged",
                                 .object = path,
                                 .backup = t->label,
                                 .file = f->path,
                                 .chunk = name};
        verify_problem_at(t->v, t->vr, &w, "file \"%s\" of backup \"%s\": chunk %zu (%s) is %s",
                          f->path, t->label, k, name, kind_names[b->kind]);
    }
    return 0;
}

static int discard(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

/* The reason record beside a quarantined chunk. */
static char *reason_text(const struct verify_run *v, const struct verify_repo *vr,
                         const struct verify_bad_chunk *b, const char *from)
{
    char when[64], host[256] = "unknown";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    json_t *o = json_object();
    json_t *bs = json_array();
    for (size_t i = 0; i < b->nbackups; i++)
        json_array_append_new(bs, json_string(b->backups[i]));
    json_object_set_new(o, "format", json_integer(1));
    json_object_set_new(o, "object", json_string(from));
    json_object_set_new(o, "repository", json_string(vr->name));
    json_object_set_new(o, "time", json_string(time_format_pg(time_now_us(), when, sizeof(when))));
    json_object_set_new(o, "by", json_string("verify"));
    json_object_set_new(o, "run", json_string(v->run_label));
    json_object_set_new(o, "host", json_string(host));
    json_object_set_new(o, "reason", json_string(b->error ? b->error : "damaged"));
    json_object_set_new(o, "backups", bs);
    char *text = cli_json_text(o);
    json_decref(o);
    return text;
}

static void quarantine(struct verify_run *v, struct verify_repo *vr, struct verify_bad_chunk *b)
{
    char name[SHA256_HEX_LEN + 1], rel[96];
    hex_encode(b->raw, SHA256_LEN, name);
    snprintf(rel, sizeof(rel), "chunks/%.2s/%s", name, name);
    struct storage *s = repo_storage(vr->repo);
    char *to_rel = xasprintf("quarantine/%s/%s", v->run_label, rel);
    char *from = xasprintf("%s/%s", vr->cluster, rel);
    char *to = xasprintf("%s/%s", vr->cluster, to_rel);
    char *why = xasprintf("%s.reason.json", to);
    char *text = NULL;

    /* A second read: what failed once only is not moved. */
    if (repo_chunk_get(vr->repo, name, discard, NULL, NULL) == 0) {
        log_warn("repository \"%s\": chunk %s read well the second time: not moved to "
                 "quarantine",
                 vr->name, name);
        goto out;
    }
    if (err_kind() != ERR_INTEGRITY) {
        log_warn("repository \"%s\": chunk %s not moved to quarantine: %s", vr->name, name,
                 err_message());
        err_clear();
        goto out;
    }
    err_clear();
    if (storage_rename(s, from, to) < 0) {
        if (err_kind() == ERR_NOT_FOUND) { /* removed meanwhile (expire) */
            err_clear();
            goto out;
        }
        err_context("while moving damaged chunk %s to \"%s\"", name, to_rel);
        struct verify_where w = {.kind = "repository", .object = rel, .chunk = name};
        verify_problem_err_at(v, vr, &w);
        goto out;
    }
    b->quarantined = to_rel;
    to_rel = NULL;
    log_info("repository \"%s\": damaged chunk %s moved to \"%s\": the next backup stores it "
             "again",
             vr->name, name, b->quarantined);
    text = reason_text(v, vr, b, rel);
    if (storage_write_all(s, why, text, strlen(text)) < 0) {
        log_warn("repository \"%s\": the reason for quarantining chunk %s could not be written: "
                 "%s",
                 vr->name, name, err_message());
        err_clear();
    }
out:
    free(text);
    free(why);
    free(to);
    free(from);
    free(to_rel);
}

void verify_damage_trace(struct verify_run *v, struct verify_repo *vr)
{
    if (!vr->nbad)
        return;
    qsort(vr->bad, vr->nbad, sizeof(*vr->bad), cmp_bad);
    /* Every backup, in or out of this run's scope: restoring any that names one fails. */
    for (size_t i = 0; i < vr->nbackups; i++) {
        const struct ops_backup *ob = &vr->backups[i];
        if (!ob->complete || !ob->readable)
            continue;
        struct trace t = {v, vr, ob->label};
        if (ops_manifest_read(vr->repo, ob->label, trace_file, &t) < 0)
            err_clear(); /* reported by the backups scope when in scope */
    }
    for (size_t i = 0; v->quarantine && i < vr->nbad; i++) {
        if (vr->bad[i].kind == VERIFY_BAD_DAMAGED)
            quarantine(v, vr, &vr->bad[i]);
    }
}

/* --- what is still good ----------------------------------------------------------------- */

void verify_damage_newest(struct verify_run *v, struct verify_repo *vr)
{
    const struct ops_backup *best = NULL;
    pthread_mutex_lock(&v->lock);
    for (size_t i = 0; i < vr->nbackups; i++) {
        const struct ops_backup *ob = &vr->backups[i];
        bool hit = false;
        for (size_t k = 0; k < v->nproblems && !hit; k++)
            hit = v->problems[k].repo_index == vr->index && v->problems[k].backup &&
                  strcmp(v->problems[k].backup, ob->label) == 0;
        for (size_t k = 0; k < vr->nbad && !hit; k++)
            for (size_t j = 0; j < vr->bad[k].nbackups && !hit; j++)
                hit = strcmp(vr->bad[k].backups[j], ob->label) == 0;
        if (hit)
            vr->backup_problems = true;
        if (hit || !ob->complete || !ob->readable || ob->running)
            continue;
        if (!best || ob->b.header.stop_time > best->b.header.stop_time ||
            (ob->b.header.stop_time == best->b.header.stop_time &&
             strcmp(ob->label, best->label) > 0))
            best = ob;
    }
    pthread_mutex_unlock(&v->lock);
    free(vr->newest_intact);
    vr->newest_intact = best ? xstrdup(best->label) : NULL;
}

void verify_damage_good_copies(struct verify_repo *repos, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < repos[i].nbad; k++) {
            struct verify_bad_chunk *b = &repos[i].bad[k];
            for (size_t j = 0; j < n; j++) {
                const struct verify_repo *o = &repos[j];
                /* The same name means the same content only under the same naming key. */
                bool same_names = !repos[i].name_key == !o->name_key &&
                                  (!o->name_key || memcmp(repos[i].name_key, o->name_key, 32) == 0);
                if (j == i || !o->present || !same_names || !chunkset_has(o->present, b->raw) ||
                    (o->bad_set && chunkset_has(o->bad_set, b->raw)))
                    continue;
                b->good_in = xrealloc(b->good_in, (b->ngood + 1) * sizeof(*b->good_in));
                b->good_in[b->ngood++] = o->name;
            }
        }
    }
}

/* --- output ------------------------------------------------------------------------------ */

static void print_list(const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s\"%s\"", i == 0 ? "" : i + 1 == n ? " and " : ", ", items[i]);
}

void verify_damage_print(const struct verify_repo *repos, size_t n)
{
    bool any_bad = false;
    for (size_t i = 0; i < n; i++) {
        const struct verify_repo *vr = &repos[i];
        for (size_t k = 0; k < vr->nbad; k++) {
            const struct verify_bad_chunk *b = &vr->bad[k];
            char name[SHA256_HEX_LEN + 1];
            hex_encode(b->raw, SHA256_LEN, name);
            any_bad = true;
            printf("repository \"%s\": chunk %s is %s", vr->name, name, kind_names[b->kind]);
            if (b->nbackups) {
                printf("; backup%s using it: ", b->nbackups == 1 ? "" : "s");
                print_list((const char *const *)b->backups, b->nbackups);
            }
            if (b->quarantined)
                printf("; moved to \"%s\"", b->quarantined);
            printf("\n");
            if (b->ngood) {
                printf("hint: restore reads this chunk from repository ");
                print_list(b->good_in, b->ngood);
                printf(", which hold%s it sound\n", b->ngood == 1 ? "s" : "");
            }
        }
    }
    if (any_bad)
        printf("hint: take a new backup now: it stores again every chunk the data directory "
               "still holds (a damaged chunk is not reused once moved to quarantine), and "
               "verify again\n");
    for (size_t i = 0; i < n; i++) {
        const struct verify_repo *vr = &repos[i];
        if (!vr->backup_problems)
            continue;
        if (vr->newest_intact)
            printf("hint: the newest backup of repository \"%s\" that no problem concerns is "
                   "\"%s\" (pgark restore --repo %s --backup %s)\n",
                   vr->name, vr->newest_intact, vr->name, vr->newest_intact);
        else
            printf("hint: no backup of repository \"%s\" is free of problems\n", vr->name);
    }
}

json_t *verify_damage_json(const struct verify_repo *repos, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct verify_repo *vr = &repos[i];
        for (size_t k = 0; k < vr->nbad; k++) {
            const struct verify_bad_chunk *b = &vr->bad[k];
            char name[SHA256_HEX_LEN + 1];
            json_t *bs = json_array(), *good = json_array();
            for (size_t j = 0; j < b->nbackups; j++)
                json_array_append_new(bs, json_string(b->backups[j]));
            for (size_t j = 0; j < b->ngood; j++)
                json_array_append_new(good, json_string(b->good_in[j]));
            json_t *o = json_object();
            json_object_set_new(o, "repository", json_string(vr->name));
            json_object_set_new(o, "chunk", json_string(hex_encode(b->raw, SHA256_LEN, name)));
            json_object_set_new(o, "kind", json_string(kind_names[b->kind]));
            json_object_set_new(o, "backups", bs);
            json_object_set_new(o, "quarantined",
                                b->quarantined ? json_string(b->quarantined) : json_null());
            json_object_set_new(o, "sound_in", good);
            json_array_append_new(a, o);
        }
    }
    return a;
}

void verify_damage_free(struct verify_repo *vr)
{
    for (size_t k = 0; k < vr->nbad; k++) {
        struct verify_bad_chunk *b = &vr->bad[k];
        free(b->error);
        for (size_t j = 0; j < b->nbackups; j++)
            free(b->backups[j]);
        free(b->backups);
        free(b->quarantined);
        free(b->good_in);
    }
    free(vr->bad);
    vr->bad = NULL;
    vr->nbad = 0;
    chunkset_free(vr->bad_set);
    chunkset_free(vr->reported);
    chunkset_free(vr->present);
    vr->bad_set = vr->reported = vr->present = NULL;
    free(vr->newest_intact);
    vr->newest_intact = NULL;
}
