/*
 * verify_backup.c — the backups of one repository, re-read and checked:
 *
 *   - each backup's manifest.json is read whole (as a stream): envelope, tag, SHA-256,
 *     every line, the line count and byte total of its header;
 *   - every chunk a manifest names exists (one listing of chunks/ into a set, not one
 *     request per chunk);
 *   - every chunk of every file is read (repo_chunk_get: envelope, tag, SHA-256 and
 *     that the content still has its name) and the file's digest is recomputed from its
 *     chunks in order and compared with the manifest's: from the chunks' verified
 *     SHA-256s ("sha256_chunks", manifest_chunks_digest), so each byte is hashed once,
 *     or, for a manifest of an older pgark ("sha256"), over the whole content;
 *   - the server's backup_manifest is readable;
 *   - the WAL from the backup's start to its stop is in the archive (read too under
 *     --backup, where the WAL scope does not run).
 *
 * Files are checked by the worker pool in batches, as the manifest streams by, so
 * memory stays bounded whatever the size of the manifest. A file identical to one
 * already checked (same digest, same chunks: most files of the next backup) is not
 * read again.
 */
#include "verify_int.h"

#include "pgark/chunkset.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_FILES 512
#define BATCH_CHUNKS 4096

struct file_task {
    char *path;
    uint64_t size;
    enum manifest_digest_kind digest_kind;
    uint8_t digest[SHA256_LEN];
    uint8_t *chunks;
    size_t n_chunks;
};

struct seglist {
    timeline_t tli;
    uint64_t *segnos; /* sorted */
    size_t n;
};

struct bk_verify {
    struct verify_run *v;
    struct verify_repo *vr;
    struct chunkset *present;     /* chunks the repository holds */
    struct chunkset *files_done;  /* digests of (file digest, chunk names) checked */
    struct chunkset *chunks_read; /* under lock */
    pthread_mutex_t lock;
    const char *label;
    char manifest_path[320];
    struct file_task *batch;
    size_t nbatch;
    uint64_t batch_chunks;
    struct seglist *wal;
    size_t nwal;
    size_t wal_prefix_len;
};

/* --- chunks of one file ------------------------------------------------------------- */

struct file_read {
    struct sha256_ctx *sha; /* MANIFEST_DIGEST_FILE: the whole content */
    uint8_t *plain;         /* MANIFEST_DIGEST_CHUNKS: each chunk's SHA-256 */
    uint64_t bytes, chunk_bytes;
};

static int file_sink(void *ctx, const uint8_t *data, size_t len)
{
    struct file_read *f = ctx;
    if (f->sha)
        sha256_ctx_update(f->sha, data, len);
    f->bytes += len;
    f->chunk_bytes += len;
    return 0;
}

static void check_file(void *arg, size_t i)
{
    struct bk_verify *bv = arg;
    struct file_task *t = &bv->batch[i];
    bool whole = t->digest_kind == MANIFEST_DIGEST_FILE;
    struct file_read fr = {whole ? sha256_ctx_new() : NULL,
                           whole || !t->n_chunks ? NULL : xmalloc(t->n_chunks * SHA256_LEN), 0, 0};
    struct verify_counts add = {.files = 1};
    bool failed = false;

    for (size_t k = 0; k < t->n_chunks && !failed; k++) {
        char name[SHA256_HEX_LEN + 1], path[96];
        hex_encode(t->chunks + k * SHA256_LEN, SHA256_LEN, name);
        snprintf(path, sizeof(path), "chunks/%.2s/%s", name, name);
        fr.chunk_bytes = 0;
        if (repo_chunk_get(bv->vr->repo, name, file_sink, &fr,
                           fr.plain ? fr.plain + k * SHA256_LEN : NULL) < 0) {
            enum err_kind ek = err_kind();
            verify_bad_chunk(bv->v, bv->vr, t->chunks + k * SHA256_LEN,
                             ek == ERR_NOT_FOUND   ? VERIFY_BAD_MISSING
                             : ek == ERR_INTEGRITY ? VERIFY_BAD_DAMAGED
                                                   : VERIFY_BAD_UNREADABLE,
                             err_message(), bv->label, t->path);
            struct verify_where w = {.kind = err_kind() == ERR_NOT_FOUND ? "missing" : "damaged",
                                     .object = path,
                                     .backup = bv->label,
                                     .file = t->path,
                                     .chunk = name};
            err_context("in chunk %zu of file \"%s\" of backup \"%s\"", k, t->path, bv->label);
            verify_problem_err_at(bv->v, bv->vr, &w);
            failed = true;
            break;
        }
        pthread_mutex_lock(&bv->lock);
        bool fresh = chunkset_add(bv->chunks_read, t->chunks + k * SHA256_LEN);
        pthread_mutex_unlock(&bv->lock);
        if (fresh) {
            add.chunks++;
            add.objects++;
            add.bytes += fr.chunk_bytes;
        }
    }
    if (!failed) {
        uint8_t got[SHA256_LEN];
        if (whole)
            sha256_ctx_final(fr.sha, got);
        else
            manifest_chunks_digest(fr.plain, t->n_chunks, got);
        struct verify_where w = {
            .kind = "damaged", .object = bv->manifest_path, .backup = bv->label, .file = t->path};
        if (fr.bytes != t->size) {
            verify_problem_at(bv->v, bv->vr, &w,
                              "file \"%s\" of backup \"%s\": its chunks hold %" PRIu64
                              " bytes, the manifest says %" PRIu64,
                              t->path, bv->label, fr.bytes, t->size);
        } else if (memcmp(got, t->digest, SHA256_LEN) != 0) {
            char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];
            verify_problem_at(bv->v, bv->vr, &w,
                              "file \"%s\" of backup \"%s\": its chunks have %s %s, the "
                              "manifest says %s",
                              t->path, bv->label, whole ? "SHA-256" : "digest",
                              hex_encode(got, SHA256_LEN, a), hex_encode(t->digest, SHA256_LEN, b));
        }
    }
    sha256_ctx_free(fr.sha);
    free(fr.plain);
    verify_count(bv->v, bv->vr, &add);
}

static void flush_batch(struct bk_verify *bv)
{
    verify_parallel(bv->v, bv->nbatch, check_file, bv);
    for (size_t i = 0; i < bv->nbatch; i++) {
        free(bv->batch[i].path);
        free(bv->batch[i].chunks);
    }
    bv->nbatch = 0;
    bv->batch_chunks = 0;
}

static int on_file(void *arg, const struct manifest_file *f)
{
    struct bk_verify *bv = arg;
    if (f->type != MANIFEST_TYPE_FILE)
        return 0;
    size_t missing = 0, first = 0;
    for (size_t k = 0; k < f->n_chunks; k++) {
        if (chunkset_has(bv->present, f->chunks + k * SHA256_LEN))
            continue;
        verify_bad_chunk(bv->v, bv->vr, f->chunks + k * SHA256_LEN, VERIFY_BAD_MISSING, NULL,
                         bv->label, f->path);
        if (missing++ == 0)
            first = k;
    }
    if (missing) {
        char name[SHA256_HEX_LEN + 1], path[96];
        hex_encode(f->chunks + first * SHA256_LEN, SHA256_LEN, name);
        snprintf(path, sizeof(path), "chunks/%.2s/%s", name, name);
        struct verify_where w = {
            .kind = "missing", .object = path, .backup = bv->label, .file = f->path, .chunk = name};
        if (missing == 1)
            verify_problem_at(bv->v, bv->vr, &w,
                              "file \"%s\" of backup \"%s\": chunk %zu (%s) is missing", f->path,
                              bv->label, first, name);
        else
            verify_problem_at(bv->v, bv->vr, &w,
                              "file \"%s\" of backup \"%s\": %zu chunks are missing, the first "
                              "is chunk %zu (%s)",
                              f->path, bv->label, missing, first, name);
        return 0;
    }
    /* The same file with the same chunks was checked already (an earlier backup). */
    struct sha256_ctx *c = sha256_ctx_new();
    uint8_t key[SHA256_LEN];
    uint8_t kind = (uint8_t)f->digest_kind;
    sha256_ctx_update(c, &kind, 1);
    sha256_ctx_update(c, f->digest, SHA256_LEN);
    sha256_ctx_update(c, &f->size, sizeof(f->size));
    if (f->n_chunks)
        sha256_ctx_update(c, f->chunks, f->n_chunks * SHA256_LEN);
    sha256_ctx_final(c, key);
    sha256_ctx_free(c);
    if (!chunkset_add(bv->files_done, key))
        return 0;

    bv->batch = xrealloc(bv->batch, (bv->nbatch + 1) * sizeof(*bv->batch));
    struct file_task *t = &bv->batch[bv->nbatch++];
    t->path = xstrdup(f->path);
    t->size = f->size;
    t->digest_kind = f->digest_kind;
    memcpy(t->digest, f->digest, SHA256_LEN);
    t->n_chunks = f->n_chunks;
    t->chunks = f->n_chunks ? xmalloc(f->n_chunks * SHA256_LEN) : NULL;
    if (f->n_chunks)
        memcpy(t->chunks, f->chunks, f->n_chunks * SHA256_LEN);
    bv->batch_chunks += f->n_chunks;
    if (bv->nbatch >= BATCH_FILES || bv->batch_chunks >= BATCH_CHUNKS)
        flush_batch(bv);
    return 0;
}

/* --- listings ---------------------------------------------------------------------- */

static int on_segment(void *ctx, const struct storage_info *info)
{
    struct bk_verify *bv = ctx;
    struct seglist *l = &bv->wal[bv->nwal - 1];
    const char *name = info->path + bv->wal_prefix_len;
    timeline_t tli;
    uint64_t segno;
    if (!wal_is_segment_name(name) ||
        wal_segment_parse(name, repo_identity(bv->vr->repo)->seg_size, &tli, &segno) < 0 ||
        tli != l->tli) {
        err_clear();
        return 0;
    }
    l->segnos = xrealloc(l->segnos, (l->n + 1) * sizeof(*l->segnos));
    l->segnos[l->n++] = segno;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The complete segments of tli, listed once. NULL with the error set. */
static struct seglist *wal_of(struct bk_verify *bv, timeline_t tli)
{
    for (size_t i = 0; i < bv->nwal; i++) {
        if (bv->wal[i].tli == tli)
            return &bv->wal[i];
    }
    bv->wal = xrealloc(bv->wal, (bv->nwal + 1) * sizeof(*bv->wal));
    struct seglist *l = &bv->wal[bv->nwal++];
    memset(l, 0, sizeof(*l));
    l->tli = tli;
    char *prefix = xasprintf("%s/wal/%08X/", bv->vr->cluster, tli);
    bv->wal_prefix_len = strlen(prefix);
    int rc = storage_list(repo_storage(bv->vr->repo), prefix, on_segment, bv);
    free(prefix);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0) {
        bv->nwal--;
        free(l->segnos);
        return NULL;
    }
    qsort(l->segnos, l->n, sizeof(*l->segnos), cmp_u64);
    return l;
}

static int count_sink(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    *(uint64_t *)ctx += len;
    return 0;
}

/* --- one backup -------------------------------------------------------------------- */

static void check_wal(struct bk_verify *bv, const struct repo_backup *b)
{
    const struct manifest_header *h = &b->header;
    uint64_t seg_size = repo_identity(bv->vr->repo)->seg_size;
    uint64_t first = lsn_to_segno(h->start_lsn, seg_size);
    uint64_t last =
        lsn_to_segno(h->stop_lsn > h->start_lsn ? h->stop_lsn - 1 : h->start_lsn, seg_size);
    struct seglist *l = wal_of(bv, h->timeline);
    if (!l) {
        struct verify_where w = {.kind = "repository", .backup = b->label};
        err_context("while listing the WAL of backup \"%s\"", b->label);
        verify_problem_err_at(bv->v, bv->vr, &w);
        return;
    }
    for (uint64_t s = first; s <= last; s++) {
        char name[WAL_NAME_BUFLEN], path[64];
        wal_segment_name(h->timeline, s, seg_size, name);
        snprintf(path, sizeof(path), "wal/%08X/%s", h->timeline, name);
        struct verify_where w = {.kind = "missing",
                                 .object = path,
                                 .segment = name,
                                 .tli = h->timeline,
                                 .backup = b->label};
        if (!bsearch(&s, l->segnos, l->n, sizeof(*l->segnos), cmp_u64)) {
            verify_problem_at(bv->v, bv->vr, &w,
                              "segment %s is missing: backup \"%s\" needs the WAL from its start "
                              "to its stop",
                              name, b->label);
            continue;
        }
        if (!bv->v->backup)
            continue; /* the WAL scope reads it */
        uint64_t bytes = 0;
        if (repo_get(bv->vr->repo, path, count_sink, &bytes) < 0) {
            w.kind = err_kind() == ERR_NOT_FOUND ? "missing" : "damaged";
            verify_problem_err_at(bv->v, bv->vr, &w);
            continue;
        }
        struct verify_counts add = {.objects = 1, .bytes = bytes, .segments = 1};
        verify_count(bv->v, bv->vr, &add);
    }
}

static void check_backup(struct bk_verify *bv, const struct ops_backup *ob)
{
    const struct repo_backup *b = &ob->b;
    char path[320];
    struct verify_where w = {.kind = "damaged", .object = bv->manifest_path, .backup = ob->label};
    uint64_t bytes = 0;

    bv->label = ob->label;
    snprintf(bv->manifest_path, sizeof(bv->manifest_path), "backups/%s/manifest.json", ob->label);
    if (!ob->readable) {
        verify_problem_at(bv->v, bv->vr, &w, "manifest of backup \"%s\" cannot be read: %s",
                          ob->label, ob->error ? ob->error : "unknown error");
        return;
    }
    log_detail("verifying backup \"%s\" in repository \"%s\"", ob->label, bv->vr->name);
    if (b->header.system_identifier != repo_identity(bv->vr->repo)->system_identifier)
        verify_problem_at(bv->v, bv->vr, &w,
                          "manifest of backup \"%s\" is for database system %" PRIu64
                          ", the repository for %" PRIu64,
                          ob->label, b->header.system_identifier,
                          repo_identity(bv->vr->repo)->system_identifier);
    int rc = ops_manifest_read(bv->vr->repo, ob->label, on_file, bv);
    flush_batch(bv);
    if (rc < 0) {
        err_context("while reading the manifest of backup \"%s\"", ob->label);
        verify_problem_err_at(bv->v, bv->vr, &w);
    } else {
        struct verify_counts add = {.objects = 1, .backups = 1};
        verify_count(bv->v, bv->vr, &add);
    }

    snprintf(path, sizeof(path), "backups/%s/backup_manifest", ob->label);
    if (repo_get(bv->vr->repo, path, count_sink, &bytes) < 0) {
        struct verify_where wm = {.kind = err_kind() == ERR_NOT_FOUND ? "missing" : "damaged",
                                  .object = path,
                                  .backup = ob->label};
        err_context("while reading the server's backup_manifest of backup \"%s\"", ob->label);
        verify_problem_err_at(bv->v, bv->vr, &wm);
    } else {
        struct verify_counts add = {.objects = 1, .bytes = bytes};
        verify_count(bv->v, bv->vr, &add);
    }
    check_wal(bv, b);
}

static bool in_scope(const struct verify_run *v, const struct ops_backup *b)
{
    if (v->backup)
        return strcmp(v->backup, b->label) == 0;
    if (!b->complete || b->running)
        return false;
    if (v->since_us && b->readable)
        return b->b.header.stop_time >= v->since_us / 1000000;
    return true;
}

int verify_backups(struct verify_run *v, struct verify_repo *vr)
{
    struct bk_verify bv = {.v = v, .vr = vr};
    size_t nscope = 0;
    int rc = 0;

    for (size_t i = 0; i < vr->nbackups; i++)
        nscope += in_scope(v, &vr->backups[i]);
    if (v->backup) {
        const struct ops_backup *b = NULL;
        for (size_t i = 0; i < vr->nbackups; i++) {
            if (strcmp(vr->backups[i].label, v->backup) == 0)
                b = &vr->backups[i];
        }
        char path[320];
        snprintf(path, sizeof(path), "backups/%s/manifest.json", v->backup);
        struct verify_where w = {.kind = "missing", .object = path, .backup = v->backup};
        if (!b) {
            verify_problem_at(v, vr, &w, "backup \"%s\" is not in the repository", v->backup);
            return 0;
        }
        if (!b->complete) {
            verify_problem_at(v, vr, &w, "backup \"%s\" is not complete: it has no manifest.json%s",
                              v->backup, b->running ? " (it is being written)" : "");
            return 0;
        }
    }
    if (nscope == 0)
        return 0;

    pthread_mutex_init(&bv.lock, NULL);
    bv.present = chunkset_new();
    bv.files_done = chunkset_new();
    bv.chunks_read = chunkset_new();
    rc = repo_chunk_list(vr->repo, chunkset_add_listed, bv.present);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    if (rc < 0) {
        err_context("while listing the chunks");
        goto out;
    }
    for (size_t i = 0; i < vr->nbackups; i++) {
        if (in_scope(v, &vr->backups[i]))
            check_backup(&bv, &vr->backups[i]);
    }
    /* Kept: the other repositories' bad chunks are looked up in it (verify_damage.c). */
    vr->present = bv.present;
    bv.present = NULL;
    verify_damage_trace(v, vr);
out:
    chunkset_free(bv.present);
    chunkset_free(bv.files_done);
    chunkset_free(bv.chunks_read);
    for (size_t i = 0; i < bv.nwal; i++)
        free(bv.wal[i].segnos);
    free(bv.wal);
    free(bv.batch);
    pthread_mutex_destroy(&bv.lock);
    return rc;
}
