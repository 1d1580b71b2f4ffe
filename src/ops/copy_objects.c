/*
 * copy_objects.c — what `pgark copy` moves from repository A to B (copy.c says in which
 * order and why): single objects through a temporary file, WAL segments and history
 * files, a backup's chunks and manifest, and --wal's whole archive. Moved out of copy.c,
 * which holds the command.
 */
#include "copy_int.h"
#include "ops_int.h"

#include "pgark/chunkset.h"
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/wal.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_BUF (1024 * 1024)

/* One backup being copied. */
struct copy_job {
    struct repo *a, *b;
    bool same_names;       /* both unencrypted: a chunk has one name in both */
    struct chunkset *held; /* B's chunks: listed, and those copied */
    struct manifest_reader *mr;
    struct manifest_writer *mw; /* rewriting the manifest with B's names */
    uint8_t *buf;               /* one chunk and its SHA-256 */
    size_t cap;
    uint8_t *names; /* B's names of the current file's chunks */
    size_t names_cap;
    const char *tmp_dir;
    struct copy_totals *tot;
};

static const char *tmp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static FILE *temp_file(const char *dir)
{
    char *path = xasprintf("%s/pgark-copy.XXXXXX", dir);
    int fd = mkstemp(path);
    FILE *f = NULL;
    if (fd < 0) {
        err_set_errno(ERR_IO, errno, "could not create a temporary file in \"%s\"", dir);
    } else {
        unlink(path);
        if (!(f = fdopen(fd, "w+"))) {
            err_set_errno(ERR_IO, errno, "could not open a temporary file in \"%s\"", dir);
            close(fd);
        }
    }
    free(path);
    return f;
}

static int sink_file(void *ctx, const uint8_t *data, size_t len)
{
    if (len && fwrite(data, 1, len, ctx) != len)
        return err_set_errno(ERR_IO, errno, "could not write a temporary file");
    return 0;
}

/* Store the whole of f (from its start) as object path of r. */
static int put_file(struct repo *r, const char *path, FILE *f)
{
    if (fflush(f) != 0 || fseek(f, 0, SEEK_END) != 0)
        return err_set_errno(ERR_IO, errno, "could not read back a temporary file");
    long len = ftell(f);
    rewind(f);
    struct repo_writer *w = repo_writer_open(r, path, (uint64_t)len);
    if (!w)
        return err_code();
    uint8_t *buf = xmalloc(COPY_BUF);
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(buf, 1, COPY_BUF, f)) > 0)
        rc = repo_writer_write(w, buf, n);
    if (rc == 0 && ferror(f))
        rc = err_set_errno(ERR_IO, errno, "could not read back a temporary file");
    free(buf);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w);
}

/* Object path from A to B, as it is, unless B has it. *copied set when it was copied. */
static int copy_object(struct repo *a, struct repo *b, const char *path, const char *tmp,
                       bool *copied)
{
    *copied = false;
    int e = repo_object_exists(b, path);
    if (e != 0)
        return e < 0 ? e : 0;
    FILE *f = temp_file(tmp);
    if (!f)
        return err_code();
    int rc = repo_get(a, path, sink_file, f);
    if (rc == 0)
        rc = put_file(b, path, f);
    fclose(f);
    if (rc == 0)
        *copied = true;
    return rc;
}

/* A WAL segment from A to B (B stores it as it stores any segment, time index included),
 * unless B has it. 1 copied, 0 there already, negative on error. */
static int copy_segment(struct repo *a, struct repo *b, timeline_t tli, const char *name)
{
    char path[96];
    uint64_t seg_size = repo_identity(a)->seg_size;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;

    repo_wal_path(tli, name, false, path, sizeof(path));
    if ((rc = repo_object_exists(b, path)) != 0)
        return rc < 0 ? rc : 0;
    rc = repo_get_all_max(a, path, seg_size, "a WAL segment", &data, &len);
    if (rc == -ERR_NOT_FOUND) {
        /* a backup from a standby keeps its last segment in pg_wal only */
        log_info("WAL segment %s is not in repository \"%s\" either: not copied", name,
                 repo_name(a));
        err_clear();
        return 0;
    }
    if (rc < 0)
        return err_context("while reading WAL segment %s from repository \"%s\"", name,
                           repo_name(a));
    FILE *f = temp_file(tmp_dir());
    if (!f) {
        free(data);
        return err_code();
    }
    if (fwrite(data, 1, len, f) != len || fflush(f) != 0)
        rc = err_set_errno(ERR_IO, errno, "could not write a temporary file");
    if (rc == 0 && (rc = repo_wal_push_fd(b, name, fileno(f), len)) < 0)
        err_context("while storing WAL segment %s in repository \"%s\"", name, repo_name(b));
    fclose(f);
    free(data);
    return rc < 0 ? rc : 1;
}

/* History files of timelines 2..tli that A has and B lacks. */
static int copy_histories(struct repo *a, struct repo *b, timeline_t tli)
{
    for (timeline_t t = 2; t <= tli; t++) {
        char name[32], path[64];
        bool copied;
        snprintf(path, sizeof(path), "wal/%s", wal_history_name(t, name));
        int e = repo_object_exists(a, path);
        if (e < 0)
            return e;
        if (e == 0)
            continue;
        if (copy_object(a, b, path, tmp_dir(), &copied) < 0)
            return err_context("while copying history file %s", name);
    }
    return 0;
}

static int tally_segment(struct copy_totals *tot, int rc)
{
    if (rc > 0)
        tot->wal_copied++;
    else if (rc == 0)
        tot->wal_present++;
    return rc < 0 ? rc : 0;
}

/* --- chunks and the manifest ----------------------------------------------------------- */

/* Chunk `name` (raw) of A read into job->buf, its SHA-256 after it. */
static int read_chunk(struct copy_job *job, const uint8_t *name, const char *path, size_t *len)
{
    char hex[SHA256_HEX_LEN + 1];
    hex_encode(name, SHA256_LEN, hex);
    int rc = repo_chunk_get_into(job->a, hex, job->buf, job->cap, len, job->buf + job->cap);
    if (rc < 0)
        return err_context("while reading chunk %s of \"%s\" from repository \"%s\"", hex, path,
                           repo_name(job->a));
    memmove(job->buf + *len, job->buf + job->cap, SHA256_LEN);
    return 0;
}

static int put_chunk(struct copy_job *job, const uint8_t *name_b, size_t len, const char *path)
{
    char hex[SHA256_HEX_LEN + 1];
    uint64_t stored = 0;
    hex_encode(name_b, SHA256_LEN, hex);
    if (repo_chunk_put_payload(job->b, hex, job->buf, len, &stored) < 0)
        return err_context("while storing chunk %s of \"%s\" in repository \"%s\"", hex, path,
                           repo_name(job->b));
    chunkset_add(job->held, name_b);
    job->tot->chunks_copied++;
    job->tot->stored_bytes += stored;
    return 0;
}

static int on_file(void *arg, const struct manifest_file *f)
{
    struct copy_job *job = arg;
    const struct manifest_header *h = manifest_reader_header(job->mr);
    size_t len;
    int rc = 0;

    if (!job->buf) {
        /* the chunk, room for the reader's trailer, and the SHA-256 kept aside */
        job->cap = (size_t)h->chunk_size + REPO_CHUNK_GET_SLACK;
        job->buf = xmalloc(job->cap + SHA256_LEN);
    }
    if (!job->same_names && !job->mw) {
        if (!(job->mw = manifest_writer_new(job->tmp_dir, h->chunk_size)))
            return err_code();
    }
    if (!job->same_names && f->n_chunks > job->names_cap) {
        job->names = xrealloc(job->names, f->n_chunks * SHA256_LEN);
        job->names_cap = f->n_chunks;
    }
    for (size_t k = 0; rc == 0 && k < f->n_chunks; k++) {
        const uint8_t *name = f->chunks + k * SHA256_LEN;
        if (job->same_names) {
            if (chunkset_has(job->held, name)) {
                job->tot->chunks_present++;
                continue;
            }
            if ((rc = read_chunk(job, name, f->path, &len)) == 0)
                rc = put_chunk(job, name, len, f->path);
            continue;
        }
        /* B's name is known only from the bytes */
        uint8_t *name_b = job->names + k * SHA256_LEN;
        char hex[REPO_CHUNK_NAME_LEN + 1];
        if ((rc = read_chunk(job, name, f->path, &len)) < 0)
            break;
        repo_chunk_name(job->b, job->buf, len, hex);
        if (hex_decode(hex, name_b, SHA256_LEN) < 0) {
            rc = err_code();
            break;
        }
        if (chunkset_has(job->held, name_b))
            job->tot->chunks_present++;
        else
            rc = put_chunk(job, name_b, len, f->path);
    }
    if (rc == 0 && !job->same_names) {
        struct manifest_file g = *f;
        g.chunks = f->n_chunks ? job->names : NULL;
        rc = manifest_writer_add(job->mw, &g);
    }
    return rc;
}

/* The WAL of the backup h describes (start to stop segment, and its timeline's history
 * files) from A to B. */
static int copy_backup_wal(struct repo *a, struct repo *b, const struct manifest_header *h,
                           struct copy_totals *tot)
{
    uint64_t seg_size = repo_identity(a)->seg_size;
    uint64_t last = lsn_to_segno(h->stop_lsn ? h->stop_lsn - 1 : 0, seg_size);
    int rc = 0;
    for (uint64_t s = lsn_to_segno(h->start_lsn, seg_size); rc == 0 && s <= last; s++) {
        char name[WAL_NAME_BUFLEN];
        wal_segment_name(h->timeline, s, seg_size, name);
        rc = tally_segment(tot, copy_segment(a, b, h->timeline, name));
    }
    if (rc == 0)
        rc = copy_histories(a, b, h->timeline);
    return rc;
}

/* manifest.json of backup label into B, last, while hb's lease holds: src (A's) as it
 * is when both name chunks alike, else written again with B's names and sizes. */
static int put_manifest(struct copy_job *job, const struct manifest_header *h,
                        struct repo_heartbeat *hb, const char *label, FILE *src)
{
    struct repo *b = job->b;
    struct copy_totals *tot = job->tot;
    FILE *out = NULL;
    char path[320];
    int rc;

    if ((rc = repo_sync_written(b)) < 0 || (rc = repo_heartbeat_beat(hb, NULL)) < 0)
        goto out;
    if ((rc = repo_backup_path(label, "manifest.json", path, sizeof(path))) < 0)
        goto out;
    if (job->same_names) {
        rc = put_file(b, path, src);
    } else {
        struct manifest_header nh = *h;
        nh.encrypted = repo_encrypted(b);
        nh.stored_bytes = tot->stored_bytes;
        if (!job->mw && !(job->mw = manifest_writer_new(job->tmp_dir, h->chunk_size))) {
            rc = err_code();
            goto out;
        }
        if (!(out = temp_file(job->tmp_dir))) {
            rc = err_code();
            goto out;
        }
        rc = manifest_writer_finish(job->mw, &nh, manifest_sink_file, out);
        if (rc == 0 && !repo_heartbeat_held(hb))
            rc = err_set(ERR_RUNTIME,
                         "the running marker of the copy of backup \"%s\" in "
                         "repository \"%s\" went too long without a refresh",
                         label, repo_name(b));
        if (rc == 0)
            rc = put_file(b, path, out);
    }
    if (rc < 0)
        err_context("while writing the manifest of backup \"%s\" in repository \"%s\"", label,
                    repo_name(b));
out:
    if (out)
        fclose(out);
    return rc;
}

/* Backup label from A to B. */
int copy_backup(struct repo *a, struct repo *b, const char *label, struct chunkset *held,
                struct copy_totals *tot)
{
    struct copy_job job = {
        .a = a,
        .b = b,
        .same_names = !repo_chunk_key(a) && !repo_chunk_key(b),
        .held = held,
        .tmp_dir = tmp_dir(),
        .tot = tot,
    };
    struct repo_heartbeat *hb = NULL;
    struct repo *one[1] = {b};
    FILE *src = NULL;
    char path[320];
    bool copied;
    int rc;

    /* Announce it in B before relying on the chunks B holds (repo.h, running markers). */
    const char *ms = getenv("PGARK_TEST_HEARTBEAT_MS");
    if (!(hb = repo_heartbeat_start(one, 1, label, ms ? atoi(ms) : 0, 0))) {
        rc = err_code();
        goto out;
    }
    if ((rc = repo_expire_wait(b, 1000)) < 0)
        goto out;
    if ((rc = repo_backup_path(label, "manifest.json", path, sizeof(path))) < 0)
        goto out;
    if (!(src = temp_file(job.tmp_dir))) {
        rc = err_code();
        goto out;
    }
    if ((rc = repo_get(a, path, sink_file, src)) < 0) {
        err_context("while reading the manifest of backup \"%s\" from repository \"%s\"", label,
                    repo_name(a));
        goto out;
    }
    job.mr = manifest_reader_new(on_file, &job);
    if ((rc = manifest_reader_feed_file(job.mr, src, "the manifest")) < 0) {
        err_context("while copying backup \"%s\"", label);
        goto out;
    }
    const struct manifest_header *h = manifest_reader_header(job.mr);

    if ((rc = repo_backup_path(label, "backup_manifest", path, sizeof(path))) < 0)
        goto out;
    int e = repo_object_exists(a, path);
    if (e < 0 || (e > 0 && copy_object(a, b, path, job.tmp_dir, &copied) < 0)) {
        rc = err_context("while copying the backup_manifest of backup \"%s\"", label);
        goto out;
    }

    /* Its WAL: a backup is complete only with it. */
    if ((rc = copy_backup_wal(a, b, h, tot)) < 0) {
        err_context("while copying the WAL of backup \"%s\"", label);
        goto out;
    }

    /* manifest.json last, while the marker's lease holds. */
    rc = put_manifest(&job, h, hb, label, src);
out:
    if (src)
        fclose(src);
    manifest_reader_free(job.mr);
    manifest_writer_free(job.mw);
    free(job.buf);
    free(job.names);
    repo_heartbeat_stop(hb);
    return rc;
}

/* --- --wal ------------------------------------------------------------------------------ */

struct wal_walk {
    struct repo *a, *b;
    size_t prefix_len;
    struct copy_totals *tot;
};

static int on_wal_object(void *ctx, const struct storage_info *info)
{
    struct wal_walk *w = ctx;
    const char *rel = info->path + w->prefix_len; /* "<TLI>/<SEGMENT>" or "<TLI>.history" */
    char tli_text[9];
    bool copied;

    if (wal_is_history_name(rel)) {
        char path[64];
        snprintf(path, sizeof(path), "wal/%s", rel);
        return copy_object(w->a, w->b, path, tmp_dir(), &copied);
    }
    if (strlen(rel) != 8 + 1 + 24 || rel[8] != '/' || !wal_is_segment_name(rel + 9))
        return 0; /* partial copies, time indexes, high-water marks */
    memcpy(tli_text, rel, 8);
    tli_text[8] = '\0';
    timeline_t tli = (timeline_t)strtoul(tli_text, NULL, 16);
    return tally_segment(w->tot, copy_segment(w->a, w->b, tli, rel + 9));
}

int copy_all_wal(struct repo *a, struct repo *b, const char *cluster, struct copy_totals *tot)
{
    char *prefix = xasprintf("%s/wal/", cluster);
    struct wal_walk w = {a, b, strlen(prefix), tot};
    int rc = storage_list(repo_storage(a), prefix, on_wal_object, &w);
    if (rc == -ERR_NOT_FOUND) {
        err_clear();
        rc = 0;
    }
    free(prefix);
    return rc;
}
