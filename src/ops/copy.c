/*
 * copy.c — `pgark copy --from A --to B [--backup LABEL] [--wal] [--json]`: bring to
 * repository B of a cluster the backups that A has and B lacks (all of them, or the one
 * named), with the WAL each needs, so that a repository that was down during a backup
 * catches up (issue 19, item 7).
 *
 * Order, as a backup writes: the running marker in B (an expire in B then leaves the
 * chunks it already holds alone), the chunks B lacks, the server's backup_manifest, the
 * WAL segments start..stop of the backup (and the history files of its timeline), and
 * manifest.json last, only while the marker's lease holds: a copy stopped at any point
 * leaves no manifest.json, and a new run completes it (what is there is skipped).
 *
 * Everything goes through the repository layer: each object is read (verified) from A
 * and written as B writes it, with B's compression and encryption. Unencrypted
 * repositories name chunks by their SHA-256, so the names and manifest.json are the
 * same in both, and a chunk B holds is not read at all. An encrypted repository names
 * chunks with its own key: each chunk is read from A to learn its name in B, and B gets
 * manifest.json written again with those names (and its own "encrypted" and
 * "stored_bytes").
 *
 * --wal also copies every complete segment and history file of A's archive that B
 * lacks (time indexes are built by B as it stores them; .partial copies are not taken).
 * Without --from and --to (catch_up): every repository gets what it lacks from the
 * others, for a timer to run; a repository that cannot be reached is reported and the
 * others go on.
 * Exit: 0 done (also when there was nothing to copy); 1 a failure (the error names the
 * object), or a repository that could not be caught up; 2 usage (unknown repository or
 * backup).
 */
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

struct copy_cmd {
    const char *from, *to, *backup;
    bool wal, json;
};

struct copy_totals {
    uint64_t chunks_copied, chunks_present, stored_bytes, wal_copied, wal_present;
};

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

static int parse_args(int argc, char **argv, struct copy_cmd *a)
{
    static const struct option options[] = {{"from", required_argument, NULL, 'f'},
                                            {"to", required_argument, NULL, 't'},
                                            {"backup", required_argument, NULL, 'b'},
                                            {"wal", no_argument, NULL, 'w'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    int opt;

    memset(a, 0, sizeof(*a));
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            a->from = optarg;
            break;
        case 't':
            a->to = optarg;
            break;
        case 'b':
            if (!repo_backup_label_valid(optarg))
                return err_set(ERR_USAGE, "invalid backup label \"%s\"", optarg);
            a->backup = optarg;
            break;
        case 'w':
            a->wal = true;
            break;
        case 'j':
            a->json = true;
            break;
        case 'h':
            printf("usage: pgark copy [--from REPO --to REPO] [--backup LABEL] [--wal] [--json]\n");
            return 1;
        case ':':
            err_set(ERR_USAGE, "option \"%s\" of copy needs a value", argv[optind - 1]);
            return err_hint("run \"pgark help copy\"");
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for copy", argv[optind - 1]);
            return err_hint("run \"pgark help copy\"");
        }
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for copy", argv[optind]);
    if (!a->from != !a->to) {
        err_set(ERR_USAGE, "copy needs both --from and --to, or neither");
        return err_hint("pgark copy [--from REPO --to REPO] [--backup LABEL] [--wal]");
    }
    if (a->from && strcmp(a->from, a->to) == 0)
        return err_set(ERR_USAGE, "copy --from and --to name the same repository \"%s\"", a->from);
    return 0;
}

static const struct config_repo *cluster_repo(const struct config *cfg,
                                              const struct config_cluster *cl, const char *name)
{
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *r = config_cluster_repo(cfg, cl, i);
        if (strcmp(r->name, name) == 0)
            return r;
    }
    struct buf names = BUF_INIT;
    for (size_t i = 0; i < cl->nrepos; i++)
        buf_appendf(&names, "%s\"%s\"", i ? ", " : "", config_cluster_repo(cfg, cl, i)->name);
    err_set(ERR_USAGE, "repository \"%s\" is not a repository of cluster \"%s\"", name, cl->name);
    err_hint("the cluster's repositories are %s", names.data ? (char *)names.data : "none");
    buf_free(&names);
    return NULL;
}

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

/* Backup label from A to B. */
static int copy_backup(struct repo *a, struct repo *b, const char *label, struct chunkset *held,
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
    FILE *src = NULL, *out = NULL;
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
    uint64_t seg_size = repo_identity(a)->seg_size;
    uint64_t last = lsn_to_segno(h->stop_lsn ? h->stop_lsn - 1 : 0, seg_size);
    for (uint64_t s = lsn_to_segno(h->start_lsn, seg_size); rc == 0 && s <= last; s++) {
        char name[WAL_NAME_BUFLEN];
        wal_segment_name(h->timeline, s, seg_size, name);
        rc = tally_segment(tot, copy_segment(a, b, h->timeline, name));
    }
    if (rc == 0)
        rc = copy_histories(a, b, h->timeline);
    if (rc < 0) {
        err_context("while copying the WAL of backup \"%s\"", label);
        goto out;
    }

    /* manifest.json last, while the marker's lease holds. */
    if ((rc = repo_sync_written(b)) < 0 || (rc = repo_heartbeat_beat(hb, NULL)) < 0)
        goto out;
    if ((rc = repo_backup_path(label, "manifest.json", path, sizeof(path))) < 0)
        goto out;
    if (job.same_names) {
        rc = put_file(b, path, src);
    } else {
        struct manifest_header nh = *h;
        nh.encrypted = repo_encrypted(b);
        nh.stored_bytes = tot->stored_bytes;
        if (!job.mw && !(job.mw = manifest_writer_new(job.tmp_dir, h->chunk_size))) {
            rc = err_code();
            goto out;
        }
        if (!(out = temp_file(job.tmp_dir))) {
            rc = err_code();
            goto out;
        }
        rc = manifest_writer_finish(job.mw, &nh, manifest_sink_file, out);
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

static int copy_all_wal(struct repo *a, struct repo *b, const char *cluster,
                        struct copy_totals *tot)
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

/* --- the command ------------------------------------------------------------------------ */

/* The backups of A that B lacks (or only `only`), into B; their labels appended to done.
 * `only` missing from A is ERR_USAGE. */
static int copy_backups(struct repo *a, struct repo *b, const char *only, bool *found_only,
                        struct copy_totals *tot, json_t *done)
{
    struct repo_backup *list = NULL;
    size_t nlist = 0;
    struct chunkset *held = NULL;
    int rc;

    if ((rc = repo_backup_list(a, &list, &nlist)) < 0) {
        err_context("while listing the backups of repository \"%s\"", repo_name(a));
        goto out;
    }
    for (size_t i = 0; i < nlist; i++) {
        const char *label = list[i].label;
        if (only && strcmp(label, only) != 0)
            continue;
        if (only)
            *found_only = true;
        int e = repo_backup_exists(b, label);
        if (e < 0) {
            rc = e;
            goto out;
        }
        if (e > 0) {
            log_detail("backup \"%s\" is in repository \"%s\" already", label, repo_name(b));
            continue;
        }
        if (!held) {
            held = chunkset_new();
            if ((rc = repo_chunk_list(b, chunkset_add_listed, held)) < 0 &&
                err_kind() != ERR_NOT_FOUND) {
                err_context("while listing the chunks of repository \"%s\"", repo_name(b));
                goto out;
            }
            err_clear();
            rc = 0;
        }
        struct copy_totals before = *tot;
        log_info("copying backup \"%s\" from repository \"%s\" to \"%s\"", label, repo_name(a),
                 repo_name(b));
        if ((rc = copy_backup(a, b, label, held, tot)) < 0)
            goto out;
        log_info("backup \"%s\" copied to repository \"%s\": %llu chunks copied, %llu there "
                 "already, %llu WAL segments copied",
                 label, repo_name(b),
                 (unsigned long long)(tot->chunks_copied - before.chunks_copied),
                 (unsigned long long)(tot->chunks_present - before.chunks_present),
                 (unsigned long long)(tot->wal_copied - before.wal_copied));
        json_array_append_new(done, json_pack("{s:s, s:s, s:s}", "label", label, "from",
                                              repo_name(a), "to", repo_name(b)));
    }
out:
    chunkset_free(held);
    repo_backup_list_free(list, nlist);
    return rc;
}

static void print_result(json_t *o)
{
    json_t *done = json_object_get(o, "backups_copied");
    json_t *failed = json_object_get(o, "failed_repositories");
    size_t i;
    json_t *l;

    json_array_foreach(done, i, l)
    {
        printf("copied backup \"%s\" from repository \"%s\" to \"%s\"\n",
               json_string_value(json_object_get(l, "label")),
               json_string_value(json_object_get(l, "from")),
               json_string_value(json_object_get(l, "to")));
    }
    json_array_foreach(failed, i, l)
    {
        printf("repository \"%s\" FAILED: %s\n", json_string_value(json_object_get(l, "name")),
               json_string_value(json_object_get(l, "error")));
    }
    long long wal = json_integer_value(json_object_get(o, "wal_segments_copied"));
    if (json_array_size(done) == 0 && wal == 0 && json_array_size(failed) == 0) {
        printf("nothing to copy\n");
        return;
    }
    printf("  %lld chunks copied, %lld there already; %lld WAL segments copied\n",
           (long long)json_integer_value(json_object_get(o, "chunks_copied")),
           (long long)json_integer_value(json_object_get(o, "chunks_present")), wal);
}

/*
 * Without --from and --to: every repository of the cluster gets the backups it lacks
 * from the others (in configuration order), for a timer to run. A repository that
 * cannot be opened is reported and the others go on; exit 1 then.
 */
static int catch_up(const struct config *cfg, const struct config_cluster *cl,
                    const struct copy_cmd *args, struct copy_totals *tot, json_t *done,
                    json_t *failed)
{
    struct cli_repo *r = xcalloc(cl->nrepos + 1, sizeof(*r));
    const struct repo_identity *id = NULL;
    bool found_only = false;
    int rc = 0;

    /* Those that exist first, for the identity a missing one is created with. Each is
     * opened to be written (CLI_REPO_ARCHIVE: the configured compression), as it may be. */
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *c = config_cluster_repo(cfg, cl, i);
        if (cli_repo_open(cfg, cl, c, CLI_REPO_ARCHIVE, NULL, &r[i]) == 0) {
            id = id ? id : repo_identity(r[i].repo);
            continue;
        }
        cli_repo_close(&r[i]);
        if (err_kind() == ERR_NOT_FOUND) { /* not created yet */
            err_clear();
            continue;
        }
        err_context("while opening repository \"%s\"", c->name);
        char *line = cli_error_line(false);
        log_error("%s", line);
        json_array_append_new(failed, json_pack("{s:s, s:s}", "name", c->name, "error", line));
        free(line);
    }
    for (size_t i = 0; id && i < cl->nrepos; i++) {
        const struct config_repo *c = config_cluster_repo(cfg, cl, i);
        if (r[i].repo)
            continue;
        bool reported = false;
        for (size_t k = 0; k < json_array_size(failed); k++)
            reported =
                reported ||
                !strcmp(json_string_value(json_object_get(json_array_get(failed, k), "name")),
                        c->name);
        if (reported)
            continue;
        if (cli_repo_open(cfg, cl, c, CLI_REPO_ARCHIVE, id, &r[i]) < 0) {
            cli_repo_close(&r[i]);
            err_context("while creating repository \"%s\"", c->name);
            char *line = cli_error_line(false);
            log_error("%s", line);
            json_array_append_new(failed, json_pack("{s:s, s:s}", "name", c->name, "error", line));
            free(line);
        }
    }
    for (size_t to = 0; to < cl->nrepos; to++) {
        for (size_t from = 0; from < cl->nrepos; from++) {
            if (from == to || !r[from].repo || !r[to].repo)
                continue;
            if (copy_backups(r[from].repo, r[to].repo, args->backup, &found_only, tot, done) < 0 ||
                (args->wal && copy_all_wal(r[from].repo, r[to].repo, cl->name, tot) < 0)) {
                err_context("while copying from repository \"%s\" to \"%s\"",
                            repo_name(r[from].repo), repo_name(r[to].repo));
                char *line = cli_error_line(false);
                log_error("%s", line);
                json_array_append_new(
                    failed, json_pack("{s:s, s:s}", "name", repo_name(r[to].repo), "error", line));
                free(line);
                cli_repo_close(&r[to]); /* no more for it this run */
            }
        }
    }
    if (args->backup && !found_only) {
        err_set(ERR_USAGE, "backup \"%s\" is in no repository of cluster \"%s\"", args->backup,
                cl->name);
        rc = err_code();
    }
    for (size_t i = 0; i < cl->nrepos; i++)
        cli_repo_close(&r[i]);
    free(r);
    return rc;
}

int cmd_copy(struct cli_context *ctx, int argc, char **argv)
{
    struct copy_cmd args;
    struct cli_repo ra = {0}, rb = {0};
    struct copy_totals tot = {0};
    json_t *done = json_array(), *failed = json_array();
    int rc = parse_args(argc, argv, &args);

    if (rc != 0) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    rc = 2;
    const struct config_cluster *cl = cli_cluster(ctx);
    const struct config *cfg = cl ? cli_config(ctx) : NULL;
    if (!cl)
        goto out;
    bool pair = args.from && args.to;
    const struct config_repo *ca = pair ? cluster_repo(cfg, cl, args.from) : NULL;
    const struct config_repo *cb = ca ? cluster_repo(cfg, cl, args.to) : NULL;
    if (pair && !cb)
        goto out;
    if (!pair) {
        if (catch_up(cfg, cl, &args, &tot, done, failed) < 0)
            goto fail;
    } else {
        bool found = false;
        if (cli_repo_open(cfg, cl, ca, CLI_REPO_READ, NULL, &ra) < 0) {
            err_context("while opening repository \"%s\"", ca->name);
            goto fail;
        }
        /* B is created for A's system when it does not exist yet, and must belong to it. */
        if (cli_repo_open(cfg, cl, cb, CLI_REPO_ARCHIVE, repo_identity(ra.repo), &rb) < 0) {
            err_context("while opening repository \"%s\"", cb->name);
            goto fail;
        }
        if (copy_backups(ra.repo, rb.repo, args.backup, &found, &tot, done) < 0)
            goto fail;
        if (args.backup && !found) {
            err_set(ERR_USAGE, "backup \"%s\" is not in repository \"%s\"", args.backup, ca->name);
            err_hint("\"pgark info\" lists the backups of each repository");
            goto fail;
        }
        if (args.wal && copy_all_wal(ra.repo, rb.repo, cl->name, &tot) < 0) {
            err_context("while copying the WAL archive of repository \"%s\"", ca->name);
            goto fail;
        }
    }

    json_t *o =
        json_pack("{s:s, s:O, s:O, s:I, s:I, s:I, s:I, s:I}", "cluster", cl->name, "backups_copied",
                  done, "failed_repositories", failed, "chunks_copied",
                  (json_int_t)tot.chunks_copied, "chunks_present", (json_int_t)tot.chunks_present,
                  "stored_bytes", (json_int_t)tot.stored_bytes, "wal_segments_copied",
                  (json_int_t)tot.wal_copied, "wal_segments_present", (json_int_t)tot.wal_present);
    if (args.json)
        cli_print_json(o);
    else
        print_result(o);
    json_decref(o);
    rc = json_array_size(failed) ? 1 : 0;
    goto out;
fail:
    if (pair)
        err_context("copy from repository \"%s\" to \"%s\" failed", args.from, args.to);
    else
        err_context("copy between the repositories of cluster \"%s\" failed", cl->name);
    rc = err_exit_code();
out:
    json_decref(done);
    json_decref(failed);
    cli_repo_close(&rb);
    cli_repo_close(&ra);
    return rc;
}
