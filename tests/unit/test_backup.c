/*
 * test_backup.c — the parts of `pgark backup` that need no server: the chunk-name set,
 * the worker pool (including its failure path), the BASE_BACKUP command text, and a
 * whole backup run fed a synthesised PostgreSQL 15 stream into a plain and an
 * encrypted posix repository, read back the way a restore reads it.
 */
#include "../../src/backup/backup_int.h"
#include "pgark/codec.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/pg_basebackup.h"
#include "pgark/repo.h"
#include "tarbuild.h"
#include "walfixture.h"

#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- chunkset ------------------------------------------------------------------- */

static void test_chunkset(void **state)
{
    (void)state;
    struct chunkset *set = chunkset_new();
    uint8_t name[SHA256_LEN];

    for (uint32_t i = 0; i < 5000; i++) {
        sha256(&i, sizeof(i), name);
        assert_true(chunkset_add(set, name));
    }
    assert_int_equal(chunkset_count(set), 5000);
    for (uint32_t i = 0; i < 5000; i++) {
        sha256(&i, sizeof(i), name);
        assert_true(chunkset_has(set, name));
        assert_false(chunkset_add(set, name));
    }
    uint32_t other = 99999;
    sha256(&other, sizeof(other), name);
    assert_false(chunkset_has(set, name));
    /* the all-zero name is a name like any other */
    memset(name, 0, sizeof(name));
    assert_false(chunkset_has(set, name));
    assert_true(chunkset_add(set, name));
    assert_false(chunkset_add(set, name));
    assert_true(chunkset_has(set, name));
    assert_int_equal(chunkset_count(set), 5001);
    chunkset_free(set);
    chunkset_free(NULL);
}

/* ---- pool -------------------------------------------------------------------------- */

struct pool_test {
    pthread_mutex_t lock;
    uint64_t sum;
    uint64_t calls;
    uint64_t skipped;
    uint64_t fail_tag; /* UINT64_MAX: never */
};

static int pool_work(void *arg, void *job, struct chunk *ch, bool skipped)
{
    struct pool_test *t = arg;
    uint64_t tag = ch->index;
    assert_ptr_equal(job, t);
    assert_int_equal(ch->len, 8);
    pthread_mutex_lock(&t->lock);
    t->calls++;
    if (skipped)
        t->skipped++;
    else
        t->sum += ch->npieces ? ch->pieces[0].data[0] : ch->data[0];
    pthread_mutex_unlock(&t->lock);
    chunk_release(ch);
    if (!skipped && tag == t->fail_tag)
        return err_set(ERR_IO, "job %llu failed", (unsigned long long)tag);
    return 0;
}

static void count_release(void *data)
{
    (*(size_t *)data)++;
}

static void test_pool(void **state)
{
    (void)state;
    struct pool_test t = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, UINT64_MAX};
    struct chunk_pool *p = chunk_pool_new(3, 4, 8, pool_work, &t);
    uint64_t want = 0;

    assert_non_null(p);
    for (uint64_t i = 0; i < 1000; i++) {
        uint8_t *buf = chunk_pool_buffer(p);
        assert_non_null(buf);
        buf[0] = (uint8_t)i;
        want += (uint8_t)i;
        struct chunk ch = {.data = buf, .len = 8, .index = i};
        assert_int_equal(chunk_pool_submit(p, &ch, &t), 0);
    }
    assert_int_equal(chunk_pool_wait(p), 0);
    assert_int_equal(t.sum, want);
    assert_int_equal(t.calls, 1000);
    chunk_pool_free(p);

    /* The first failure stops the pool and reaches the producer's thread. */
    memset(&t, 0, sizeof(t));
    pthread_mutex_init(&t.lock, NULL);
    t.fail_tag = 10;
    p = chunk_pool_new(2, 3, 8, pool_work, &t);
    static uint8_t msg[8] = {1};
    size_t released = 0;
    struct refbuf *ref = refbuf_new(&released, count_release);
    uint64_t submitted = 0;
    int rc = 0;
    for (uint64_t i = 0; i < 1000 && rc == 0; i++) {
        uint8_t *buf = chunk_pool_buffer(p);
        if (!buf) {
            rc = err_code();
            break;
        }
        /* every chunk as a piece of one message: each holds a reference */
        struct chunk ch = {.data = buf, .len = 8, .index = i};
        ch.pieces = xmalloc(sizeof(*ch.pieces));
        ch.pieces[0] = (struct chunk_piece){msg, 8, ref};
        ch.npieces = 1;
        refbuf_get(ref);
        rc = chunk_pool_submit(p, &ch, &t);
        if (rc == 0)
            submitted++;
    }
    assert_int_equal(rc, -ERR_IO);
    assert_string_equal(err_message(), "job 10 failed");
    err_clear();
    assert_int_equal(chunk_pool_wait(p), -ERR_IO);
    assert_string_equal(err_message(), "job 10 failed");
    err_clear();
    assert_true(submitted < 1000);
    chunk_pool_free(p);
    assert_int_equal(t.calls, submitted); /* skipped jobs are still handed back */
    /* the pieces of run, skipped and refused chunks alike were dropped */
    assert_int_equal(released, 0);
    refbuf_put(ref);
    assert_int_equal(released, 1);
}

/* Buffers are made as the producer needs them, never more than the bound: a backup that
 * uses one at a time (it changes little) neither allocates nor wipes the others. */
static void test_pool_buffers_on_demand(void **state)
{
    (void)state;
    struct pool_test t = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, UINT64_MAX};
    struct chunk_pool *p = chunk_pool_new(3, 4, 8, pool_work, &t);
    uint8_t *held[4];

    assert_non_null(p);
    assert_int_equal(chunk_pool_buffers_made(p), 0);
    for (uint64_t i = 0; i < 20; i++) {
        uint8_t *buf = chunk_pool_buffer(p);
        assert_non_null(buf);
        buf[0] = 1;
        struct chunk ch = {.data = buf, .len = 8, .index = i};
        assert_int_equal(chunk_pool_submit(p, &ch, &t), 0);
        assert_int_equal(chunk_pool_wait(p), 0);
    }
    assert_int_equal(t.calls, 20);
    assert_int_equal(chunk_pool_buffers_made(p), 1);
    /* all four in use at once: four made, and no more afterwards */
    for (int i = 0; i < 4; i++)
        assert_non_null(held[i] = chunk_pool_buffer(p));
    assert_int_equal(chunk_pool_buffers_made(p), 4);
    for (int i = 0; i < 4; i++)
        chunk_pool_release(p, held[i]);
    for (int i = 0; i < 4; i++)
        assert_non_null(held[i] = chunk_pool_buffer(p));
    assert_int_equal(chunk_pool_buffers_made(p), 4);
    for (int i = 0; i < 4; i++)
        chunk_pool_release(p, held[i]);
    chunk_pool_free(p);
}

/* ---- command text -------------------------------------------------------------------- */

static void test_command(void **state)
{
    (void)state;
    struct pg_bb_options o = {
        .label = "it's", .fast_checkpoint = true, .wal = true, .progress = true, .manifest = true};
    char *c = pg_bb_command(150018, &o);
    assert_string_equal(c, "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAL, WAIT "
                           "false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client')");
    free(c);
    c = pg_bb_command(140005, &o);
    assert_string_equal(c, "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT MANIFEST 'yes' "
                           "MANIFEST_CHECKSUMS 'CRC32C'");
    free(c);
    struct pg_bb_options spread = {.label = "x", .wal = true, .max_rate_kb = 2048};
    c = pg_bb_command(170000, &spread);
    assert_string_equal(c, "BASE_BACKUP (LABEL 'x', CHECKPOINT 'spread', WAL, WAIT false, "
                           "MAX_RATE 2048, TARGET 'client')");
    free(c);
    c = pg_bb_command(130000, &spread);
    assert_string_equal(c, "BASE_BACKUP LABEL 'x' WAL NOWAIT MAX_RATE 2048");
    free(c);
    /* INCREMENTAL only where the server knows it */
    struct pg_bb_options incr = {.label = "x", .manifest = true, .incremental = true};
    c = pg_bb_command(170000, &incr);
    assert_string_equal(c, "BASE_BACKUP (LABEL 'x', CHECKPOINT 'spread', WAIT false, MANIFEST "
                           "'yes', MANIFEST_CHECKSUMS 'CRC32C', INCREMENTAL, TARGET 'client')");
    free(c);
    c = pg_bb_command(160004, &incr);
    assert_null(strstr(c, "INCREMENTAL"));
    free(c);
}

/* ---- the backup_manifest an incremental keeps --------------------------------------------- */

static void test_manifest_rewrite(void **state)
{
    (void)state;
    const char *head =
        "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
        "\"System-Identifier\": 7447,\n"
        "\"Files\": [\n"
        "{ \"Path\": \"backup_label\", \"Size\": 260, \"Last-Modified\": \"2026-12-07 00:00:01 "
        "GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"00000000\" },\n"
        "{ \"Path\": \"base/5/INCREMENTAL.16384\", \"Size\": 16384, \"Last-Modified\": "
        "\"2026-12-07 00:00:02 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": "
        "\"12345678\" },\n"
        "{ \"Path\": \"base/5/16385\", \"Size\": 8192, \"Last-Modified\": \"2026-12-07 "
        "00:00:03 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"9abcdef0\" }\n"
        "],\n"
        "\"WAL-Ranges\": [\n"
        "{ \"Timeline\": 1, \"Start-LSN\": \"0/4000028\", \"End-LSN\": \"0/4000120\" }\n"
        "],\n";
    char *in_text = xasprintf("%s\"Manifest-Checksum\": \"%064d\"}\n", head, 0);
    FILE *in = tmpfile(), *out = tmpfile();
    fputs(in_text, in);
    struct incr_map *m = incr_map_new(free);
    struct incr_restored *r = xcalloc(1, sizeof(*r));
    r->size = 3 * 8192;
    incr_map_put(m, "base/5/INCREMENTAL.16384", r);
    r = xcalloc(1, sizeof(*r));
    r->size = 216;
    r->crc_set = true;
    r->crc = 0x2a0e4071;
    incr_map_put(m, "backup_label", r);
    assert_int_equal(incr_manifest_rewrite(in, out, m), 0);

    const char *want_head =
        "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
        "\"System-Identifier\": 7447,\n"
        "\"Files\": [\n"
        "{\"Path\":\"backup_label\",\"Size\":216,\"Last-Modified\":\"2026-12-07 00:00:01 "
        "GMT\",\"Checksum-Algorithm\":\"CRC32C\",\"Checksum\":\"71400e2a\"},\n"
        "{\"Path\":\"base/5/16384\",\"Size\":24576,\"Last-Modified\":\"2026-12-07 00:00:02 "
        "GMT\"},\n"
        "{ \"Path\": \"base/5/16385\", \"Size\": 8192, \"Last-Modified\": \"2026-12-07 "
        "00:00:03 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"9abcdef0\" }\n"
        "],\n"
        "\"WAL-Ranges\": [\n"
        "{ \"Timeline\": 1, \"Start-LSN\": \"0/4000028\", \"End-LSN\": \"0/4000120\" }\n"
        "],\n";
    uint8_t d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256(want_head, strlen(want_head), d);
    hex_encode(d, SHA256_LEN, hex);
    char *want = xasprintf("%s\"Manifest-Checksum\": \"%s\"}\n", want_head, hex);
    struct buf got = BUF_INIT;
    rewind(out);
    buf_append_file(&got, out);
    buf_append(&got, "", 1);
    assert_string_equal((char *)got.data, want);

    /* a manifest that ends early is refused */
    FILE *cut = tmpfile(), *out2 = tmpfile();
    fputs(head, cut);
    assert_int_equal(incr_manifest_rewrite(cut, out2, m), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "the server's backup_manifest has no \"Manifest-Checksum\"");
    err_clear();
    fclose(cut);
    fclose(out2);
    buf_free(&got);
    free(want);
    free(in_text);
    incr_map_free(m);
    fclose(in);
    fclose(out);
}

/* ---- a whole run ----------------------------------------------------------------------- */

#define CHUNK 4096
#define SEG (1024 * 1024)

struct fixture {
    char dir[PATH_MAX];
    struct storage *s[2];
    struct repo *r[2];
    struct backup_target t[2];
    uint8_t *rel; /* base/5/16384: 2.5 chunks, the middle one repeated */
    uint8_t *wal; /* pg_wal/00000001000000000000000A, the fixture's (walfixture.h) */
    uint8_t *ts;  /* tablespace file */
    struct buf manifest_text;
    bool copied;    /* feed messages without a reference (as bbstream_copy_data) */
    char *fp_dir;   /* the fingerprint cache's directory, or NULL */
    int confirm_by; /* backup_params.confirm_by */
    uint64_t chunk; /* the chunk size, 0: CHUNK */
};

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i += SHA256_LEN) {
        uint8_t md[SHA256_LEN];
        uint32_t k[2] = {seed, (uint32_t)i};
        sha256(k, sizeof(k), md);
        memcpy(p + i, md, n - i < SHA256_LEN ? n - i : SHA256_LEN);
    }
}

/* The system of the WAL fixture, whose segment 0/A00000 the backups carry. */
static const struct repo_identity ID = {7712208971608537675ULL, 15, SEG};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgark-test-backup-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < 2; i++) {
        char *root = xasprintf("%s/repo%d", f->dir, i);
        f->s[i] = storage_posix_new(i ? "secret" : "plain", root);
        free(root);
        struct repo_options ro = {
            .cluster = "main",
            .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                       .level = 3,
                       .passphrase = i ? "pass phrase" : NULL},
            .kdf_n = 1024};
        f->r[i] = repo_open(f->s[i], &ro, &ID, true);
        assert_non_null(f->r[i]);
        f->t[i].repo = f->r[i];
    }
    f->rel = xmalloc(CHUNK * 5 / 2);
    fill(f->rel, CHUNK * 5 / 2, 1);
    memcpy(f->rel + CHUNK, f->rel, CHUNK); /* chunks 0 and 1 are equal */
    /* Real WAL: a backup decodes its segments before it archives them. */
    uint8_t *both = walfixture_load();
    f->wal = xmalloc(SEG);
    memcpy(f->wal, both + WALFIXTURE_SEG, SEG);
    free(both);
    f->ts = xmalloc(100);
    fill(f->ts, 100, 3);
    buf_append_str(&f->manifest_text,
                   "{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [] }\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        repo_close(f->r[i]);
        storage_free(f->s[i]);
        free(f->t[i].error);
    }
    char *cmd = xasprintf("rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(f->rel);
    free(f->wal);
    free(f->ts);
    buf_free(&f->manifest_text);
    free(f);
    return 0;
}

static void msg(struct buf *out, char type, const void *data, size_t len)
{
    buf_append(out, &type, 1);
    buf_append(out, data, len);
}

/* One message to the stream; lent with a reference, as pg_base_backup does, unless
 * f->copied: then a fresh allocation that lives only as long as its references. */
static int send_msg(struct fixture *f, struct bbstream *s, const struct buf *m)
{
    if (f->copied)
        return bbstream_copy_data(s, m->data, m->len);
    uint8_t *copy = xmalloc(m->len);
    memcpy(copy, m->data, m->len);
    struct refbuf *ref = refbuf_new(copy, free);
    int rc = bbstream_copy_data_ref(s, copy, m->len, ref);
    refbuf_put(ref);
    return rc;
}

/* Feed the stream of a backup with one tablespace, as a 15 server sends it. Stops
 * after `stop_after` bytes of base.tar when not 0. */
static int feed(struct fixture *f, struct backup_run *run, size_t stop_after)
{
    struct bbstream *s = bbstream_new(BBSTREAM_STREAMED, backup_run_callbacks(), run);
    struct buf ts = BUF_INIT, base = BUF_INIT, m = BUF_INIT;
    int rc;

    tb_dir(&ts, "PG_15_202209061");
    tb_file(&ts, "PG_15_202209061/5/16999", f->ts, 100);
    tb_end(&ts);

    tb_file(&base, "backup_label", "START WAL LOCATION: 0/2000028\n", 30);
    tb_dir(&base, "base");
    tb_dir(&base, "base/5");
    tb_file(&base, "base/5/16384", f->rel, CHUNK * 5 / 2);
    tb_file(&base, "base/5/empty", "", 0);
    tb_symlink(&base, "pg_tblspc/16385", "/srv/ts1");
    tb_dir(&base, "pg_wal");
    tb_dir(&base, "pg_wal/archive_status");
    tb_file(&base, "pg_wal/archive_status/00000001000000000000000A.done", "", 0);
    tb_file(&base, "pg_wal/00000001000000000000000A", f->wal, SEG);
    tb_end(&base);

    msg(&m, 'n', "16385.tar\0/srv/ts1", 19);
    rc = send_msg(f, s, &m) < 0 ? err_code() : 0;
    buf_reset(&m);
    for (size_t off = 0; rc == 0 && off < ts.len; off += 1000) {
        buf_reset(&m);
        msg(&m, 'd', ts.data + off, ts.len - off < 1000 ? ts.len - off : 1000);
        rc = send_msg(f, s, &m);
    }
    if (rc == 0) {
        buf_reset(&m);
        msg(&m, 'n', "base.tar\0", 10);
        rc = send_msg(f, s, &m);
    }
    size_t limit = stop_after ? stop_after : base.len;
    for (size_t off = 0; rc == 0 && off < limit; off += 3000) {
        buf_reset(&m);
        size_t n = limit - off < 3000 ? limit - off : 3000;
        msg(&m, 'd', base.data + off, n);
        rc = send_msg(f, s, &m);
    }
    if (rc == 0 && !stop_after) {
        buf_reset(&m);
        msg(&m, 'm', "", 0);
        rc = send_msg(f, s, &m);
        buf_reset(&m);
        msg(&m, 'd', f->manifest_text.data, f->manifest_text.len);
        if (rc == 0)
            rc = send_msg(f, s, &m);
        if (rc == 0)
            rc = bbstream_finish(s);
    }
    bbstream_free(s);
    buf_free(&ts);
    buf_free(&base);
    buf_free(&m);
    return rc;
}

static struct pg_bb_tablespace TS[2] = {{16385, "/srv/ts1", -1}, {0, "", -1}};
static const struct pg_bb_info INFO = {0x2000028, 1, TS, 2, 0x2000100, 1};

/* A run into n of the fixture's repositories, from the first-th. */
static struct backup_run *new_run_into(struct fixture *f, const char *label, size_t first, size_t n)
{
    struct backup_params p = {
        .label = label,
        .chunk_size = f->chunk ? f->chunk : CHUNK,
        .workers = 3,
        .tmp_dir = f->dir,
        .fp_dir = f->fp_dir,
        .targets = f->t + first,
        .ntargets = n,
        .pg_version = 150018,
        .system_identifier = ID.system_identifier,
        .seg_size = SEG,
        .compression = "zstd",
        .confirm_by = f->confirm_by,
    };
    for (int i = 0; i < 2; i++) {
        f->t[i].stored_bytes = f->t[i].new_chunks = f->t[i].reused_chunks = 0;
        f->t[i].failed = false;
        free(f->t[i].error);
        f->t[i].error = NULL;
    }
    struct backup_run *run = backup_run_new(&p);
    assert_non_null(run);
    assert_int_equal(backup_run_started(run, &INFO), 0);
    return run;
}

static struct backup_run *new_run(struct fixture *f, const char *label)
{
    return new_run_into(f, label, 0, 2);
}

struct got_file {
    char path[128];
    int type;
    uint64_t size;
    int digest_kind;
    uint8_t digest[SHA256_LEN];
    char link[64];
    uint8_t chunks[300][SHA256_LEN];
    size_t n;
};

struct read_back {
    struct got_file files[32];
    size_t n;
};

static int on_file(void *arg, const struct manifest_file *mf)
{
    struct read_back *rb = arg;
    assert_true(rb->n < 32);
    struct got_file *g = &rb->files[rb->n++];
    snprintf(g->path, sizeof(g->path), "%s", mf->path);
    g->type = mf->type;
    g->size = mf->size;
    g->digest_kind = mf->digest_kind;
    memcpy(g->digest, mf->digest, SHA256_LEN);
    snprintf(g->link, sizeof(g->link), "%s", mf->link ? mf->link : "");
    assert_true(mf->n_chunks <= 300);
    if (mf->n_chunks)
        memcpy(g->chunks, mf->chunks, mf->n_chunks * SHA256_LEN);
    g->n = mf->n_chunks;
    return 0;
}

static int reader_sink(void *ctx, const uint8_t *d, size_t n)
{
    return manifest_reader_feed(ctx, d, n);
}

static void read_manifest(struct repo *r, const char *label, struct read_back *rb)
{
    char path[320];
    struct manifest_reader *mr = manifest_reader_new(on_file, rb);
    memset(rb, 0, sizeof(*rb));
    assert_int_equal(repo_backup_path(label, "manifest.json", path, sizeof(path)), 0);
    assert_int_equal(repo_get(r, path, reader_sink, mr), 0);
    assert_int_equal(manifest_reader_finish(mr), 0);
    manifest_reader_free(mr);
}

static const struct got_file *find(const struct read_back *rb, const char *path)
{
    for (size_t i = 0; i < rb->n; i++)
        if (strcmp(rb->files[i].path, path) == 0)
            return &rb->files[i];
    return NULL;
}

static int buf_sink(void *ctx, const uint8_t *d, size_t n)
{
    buf_append(ctx, d, n);
    return 0;
}

/* Reassembled from its chunks, g is want; each read gives the chunk's SHA-256. */
static void assert_reassembles(struct repo *r, const struct got_file *g, const void *want)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < g->n; i++) {
        char hex[SHA256_HEX_LEN + 1];
        uint8_t got[SHA256_LEN], sum[SHA256_LEN];
        size_t at = b.len;
        hex_encode(g->chunks[i], SHA256_LEN, hex);
        assert_int_equal(repo_chunk_get(r, hex, buf_sink, &b, got), 0);
        sha256(b.data + at, b.len - at, sum);
        assert_memory_equal(got, sum, SHA256_LEN);
    }
    assert_int_equal(b.len, g->size);
    assert_memory_equal(b.data, want, g->size);
    buf_free(&b);
}

/* The manifest's file digest, computed here: SHA-256 over the SHA-256 of each CHUNK-byte
 * piece of data, in order. */
static void assert_digest_chunked(const struct got_file *g, const uint8_t *data, size_t len,
                                  size_t chunk)
{
    struct buf sums = BUF_INIT;
    uint8_t md[SHA256_LEN];
    for (size_t off = 0; off < len; off += chunk) {
        sha256(data + off, len - off < chunk ? len - off : chunk, md);
        buf_append(&sums, md, SHA256_LEN);
    }
    sha256(sums.len ? sums.data : (const uint8_t *)"", sums.len, md);
    assert_int_equal(g->size, len);
    assert_memory_equal(g->digest, md, SHA256_LEN);
    buf_free(&sums);
}

static void assert_file_digest(const struct got_file *g, const uint8_t *data, size_t len)
{
    assert_int_equal(g->digest_kind, MANIFEST_DIGEST_CHUNKS);
    assert_digest_chunked(g, data, len, CHUNK);
}

static void test_run(void **state)
{
    struct fixture *f = *state;
    struct backup_run *run = new_run(f, "first");
    struct read_back *rb = xcalloc(2, sizeof(*rb));

    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095054000000, 1764095060000000), 0);
    const struct backup_totals *tot = backup_run_totals(run);
    assert_int_equal(tot->files, 12);
    assert_int_equal(tot->wal_segments, 1);
    assert_int_equal(tot->logical_bytes, 30 + CHUNK * 5 / 2 + SEG + 100);
    backup_run_free(run);

    /* rel: 3 chunks with two equal: 2 written; label 1, ts 1, WAL 256 of which the
     * all-zero ones are one chunk */
    for (int i = 0; i < 2; i++) {
        assert_true(f->t[i].new_chunks > 0);
        assert_true(f->t[i].reused_chunks > 0);
        assert_true(f->t[i].stored_bytes > 0);
        read_manifest(f->r[i], "first", &rb[i]);
        assert_int_equal(rb[i].n, 12);
        /* stream order: the tablespace archive first */
        assert_string_equal(rb[i].files[0].path, "pg_tblspc/16385/PG_15_202209061");
        const struct got_file *g = find(&rb[i], "base/5/16384");
        assert_non_null(g);
        assert_int_equal(g->n, 3);
        assert_memory_equal(g->chunks[0], g->chunks[1], SHA256_LEN);
        /* the same digest in both repositories, whatever their chunk names */
        assert_file_digest(g, f->rel, CHUNK * 5 / 2);
        assert_reassembles(f->r[i], g, f->rel);
        g = find(&rb[i], "pg_tblspc/16385/PG_15_202209061/5/16999");
        assert_non_null(g);
        assert_file_digest(g, f->ts, 100);
        assert_reassembles(f->r[i], g, f->ts);
        g = find(&rb[i], "pg_tblspc/16385");
        assert_non_null(g);
        assert_int_equal(g->type, MANIFEST_TYPE_SYMLINK);
        assert_string_equal(g->link, "/srv/ts1");
        g = find(&rb[i], "pg_wal/00000001000000000000000A");
        assert_non_null(g);
        assert_file_digest(g, f->wal, SEG);
        assert_reassembles(f->r[i], g, f->wal);
        assert_non_null(find(&rb[i], "pg_wal/archive_status/00000001000000000000000A.done"));
        assert_int_equal(find(&rb[i], "base/5/empty")->n, 0);
        assert_file_digest(find(&rb[i], "base/5/empty"), NULL, 0);

        /* WAL archived, server manifest verbatim */
        uint8_t *data;
        size_t len;
        assert_int_equal(
            repo_get_all(f->r[i], "wal/00000001/00000001000000000000000A", &data, &len), 0);
        assert_int_equal(len, SEG);
        assert_memory_equal(data, f->wal, SEG);
        free(data);
        assert_int_equal(repo_get_all(f->r[i], "backups/first/backup_manifest", &data, &len), 0);
        assert_int_equal(len, f->manifest_text.len);
        assert_memory_equal(data, f->manifest_text.data, len);
        free(data);

        /* listed, with the header */
        struct repo_backup *list;
        size_t n;
        assert_int_equal(repo_backup_list(f->r[i], &list, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(list[0].label, "first");
        assert_int_equal(list[0].header.start_lsn, 0x2000028);
        assert_int_equal(list[0].header.stop_lsn, 0x2000100);
        assert_int_equal(list[0].header.start_time, 1764095054);
        assert_int_equal(list[0].header.files, 12);
        assert_int_equal(list[0].header.stored_bytes, f->t[i].stored_bytes);
        assert_int_equal(list[0].header.n_tablespaces, 1);
        assert_int_equal(list[0].header.tablespaces[0].oid, 16385);
        assert_string_equal(list[0].header.tablespaces[0].location, "/srv/ts1");
        assert_int_equal(list[0].header.encrypted, i == 1);
        repo_backup_list_free(list, n);
    }
    /* Each encrypted repository names chunks with its own key. */
    const struct got_file *plain = find(&rb[0], "base/5/16384");
    const struct got_file *secret = find(&rb[1], "base/5/16384");
    uint8_t sha0[SHA256_LEN];
    sha256(f->rel, CHUNK, sha0);
    assert_memory_equal(plain->chunks[0], sha0, SHA256_LEN);
    assert_memory_not_equal(secret->chunks[0], sha0, SHA256_LEN);

    /* The same data again: nothing new stored. */
    run = new_run(f, "second");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095070000000, 1764095071000000), 0);
    backup_run_free(run);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->t[i].new_chunks, 0);
        assert_int_equal(f->t[i].stored_bytes, 0);
        assert_int_equal(repo_backup_exists(f->r[i], "second"), 1);
    }
    free(rb);
}

static int count_chunk(void *ctx, const char *name, uint64_t size)
{
    (void)name;
    (void)size;
    (*(size_t *)ctx)++;
    return 0;
}

static void test_interrupted(void **state)
{
    struct fixture *f = *state;
    size_t before = 0, after = 0;

    fill(f->rel, CHUNK * 5 / 2, 42); /* new content */
    memcpy(f->rel + CHUNK, f->rel, CHUNK);
    assert_int_equal(repo_chunk_list(f->r[0], count_chunk, &before), 0);
    struct backup_run *run = new_run(f, "cut");
    /* the stream stops inside the WAL segment: the relation is in, the rest is not */
    assert_int_equal(feed(f, run, 3 * 512 + CHUNK * 3 + 4 * 512 + 10000), 0);
    assert_int_equal(backup_run_wait(run), 0);
    backup_run_free(run);
    assert_int_equal(repo_backup_exists(f->r[0], "cut"), 0);
    assert_int_equal(repo_backup_get(f->r[0], "cut", &(struct repo_backup){0}), -ERR_NOT_FOUND);
    err_clear();
    assert_int_equal(repo_chunk_list(f->r[0], count_chunk, &after), 0);
    assert_int_equal(after, before + 2); /* the relation's two distinct new chunks */

    run = new_run(f, "next");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095080000000, 1764095081000000), 0);
    backup_run_free(run);
    assert_int_equal(f->t[0].new_chunks, 0); /* the cut run's chunks are reused */
    struct read_back *rb = xcalloc(1, sizeof(*rb));
    read_manifest(f->r[0], "next", rb);
    assert_reassembles(f->r[0], find(rb, "base/5/16384"), f->rel);
    free(rb);
}

/* One backup into repository i of the fixture: its files come back whole. */
static void backup_one(struct fixture *f, const char *label, size_t i, int64_t start_us)
{
    struct backup_run *run = new_run_into(f, label, i, 1);
    struct read_back *rb = xcalloc(1, sizeof(*rb));

    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, start_us, start_us + 1000000), 0);
    backup_run_free(run);
    read_manifest(f->r[i], label, rb);
    const struct got_file *g = find(rb, "base/5/16384");
    assert_non_null(g);
    assert_file_digest(g, f->rel, CHUNK * 5 / 2);
    assert_reassembles(f->r[i], g, f->rel);
    assert_file_digest(find(rb, "pg_tblspc/16385/PG_15_202209061/5/16999"), f->ts, 100);
    assert_file_digest(find(rb, "base/5/empty"), NULL, 0);
    free(rb);
}

/* With no unencrypted repository there are no plain names: the workers still keep each
 * chunk's SHA-256 for the envelope and the file digest. */
static void test_encrypted_only(void **state)
{
    struct fixture *f = *state;

    fill(f->rel, CHUNK * 5 / 2, 77); /* new chunks: written with their digest */
    memcpy(f->rel + CHUNK, f->rel, CHUNK);
    backup_one(f, "secret-only", 1, 1764095090000000);
    assert_true(f->t[1].new_chunks > 0);
}

/* Messages fed without a reference (the chunker copies them): the same backup. */
static void test_copied_messages(void **state)
{
    struct fixture *f = *state;

    fill(f->rel, CHUNK * 5 / 2, 78); /* new chunks */
    f->copied = true;
    backup_one(f, "copied", 0, 1764095092000000);
    f->copied = false;
}

/* A run into both repositories with the fingerprint cache: its totals; every file of
 * the data comes back whole from both. */
static struct backup_totals fp_run(struct fixture *f, const char *label, int64_t start_us)
{
    struct backup_run *run = new_run(f, label);
    struct read_back *rb = xcalloc(1, sizeof(*rb));

    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, start_us, start_us + 1000000), 0);
    struct backup_totals tot = *backup_run_totals(run);
    backup_run_free(run);
    for (int i = 0; i < 2; i++) {
        read_manifest(f->r[i], label, rb);
        const struct got_file *g = find(rb, "base/5/16384");
        assert_file_digest(g, f->rel, CHUNK * 5 / 2);
        assert_reassembles(f->r[i], g, f->rel);
        g = find(rb, "pg_wal/00000001000000000000000A");
        assert_file_digest(g, f->wal, SEG);
        assert_reassembles(f->r[i], g, f->wal);
        assert_file_digest(find(rb, "pg_tblspc/16385/PG_15_202209061/5/16999"), f->ts, 100);
    }
    free(rb);
    return tot;
}

/* The path of the chunk holding the first CHUNK bytes at data in the plain repository. */
static char *plain_chunk_path(struct fixture *f, const uint8_t *data)
{
    char hex[SHA256_HEX_LEN + 1];
    chunk_name(NULL, data, CHUNK, hex);
    return xasprintf("%s/repo0/main/chunks/%.2s/%s", f->dir, hex, hex);
}

/* The fingerprint cache: unchanged chunks are named from it, a changed one is hashed and
 * stored, a damaged cache is not used, and a cached name a repository no longer holds is
 * hashed and stored again. Every backup reassembles to the data of its time. */
static void test_fingerprints(void **state)
{
    struct fixture *f = *state;
    struct stat st;

    f->fp_dir = xasprintf("%s/spool/main", f->dir);
    char *cache = xasprintf("%s/backup-fingerprints", f->fp_dir);
    fill(f->rel, CHUNK * 5 / 2, 90);
    memcpy(f->rel + CHUNK, f->rel, CHUNK);

    struct backup_totals t = fp_run(f, "fp1", 1764095100000000);
    assert_int_equal(t.unchanged, 0);
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    t = fp_run(f, "fp2", 1764095110000000);
    assert_true(t.chunks > 4);
    assert_int_equal(t.unchanged, t.chunks);
    assert_int_equal(f->t[0].new_chunks + f->t[1].new_chunks, 0);

    /* one byte of the last chunk (same length), and the first chunk (no longer equal to
     * the second) */
    f->rel[CHUNK * 2 + 5] ^= 1;
    f->rel[7] ^= 1;
    t = fp_run(f, "fp3", 1764095120000000);
    assert_int_equal(t.unchanged, t.chunks - 2);
    assert_int_equal(f->t[0].new_chunks, 2);
    assert_int_equal(f->t[1].new_chunks, 2);

    /* a flipped byte anywhere: the cache is not used, the backup is whole */
    FILE *fh = fopen(cache, "r+");
    assert_non_null(fh);
    assert_int_equal(fseek(fh, 200, SEEK_SET), 0);
    int c = fgetc(fh);
    assert_int_equal(fseek(fh, 200, SEEK_SET), 0);
    fputc(c ^ 0x10, fh);
    fclose(fh);
    t = fp_run(f, "fp4", 1764095130000000);
    assert_int_equal(t.unchanged, 0);

    /* a chunk gone from the plain repository: hashed and stored again there */
    char *gone = plain_chunk_path(f, f->rel);
    assert_int_equal(unlink(gone), 0);
    t = fp_run(f, "fp5", 1764095140000000);
    assert_int_equal(t.unchanged, t.chunks - 1);
    assert_int_equal(f->t[0].new_chunks, 1);
    assert_int_equal(f->t[1].new_chunks, 0);
    assert_int_equal(stat(gone, &st), 0);

    /* written for other repositories (only the plain one: one block of digests, not
     * two): not used, and replaced */
    struct backup_run *run = new_run_into(f, "fp6", 0, 1);
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095150000000, 1764095151000000), 0);
    assert_int_equal(backup_run_totals(run)->unchanged, 0);
    backup_run_free(run);
    run = new_run_into(f, "fp7", 0, 1);
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095160000000, 1764095161000000), 0);
    assert_int_equal(backup_run_totals(run)->unchanged, backup_run_totals(run)->chunks);
    backup_run_free(run);

    /* a run that does not finish leaves the cache as it was, and no temporary file */
    assert_int_equal(stat(cache, &st), 0);
    off_t size = st.st_size;
    time_t mtime = st.st_mtime;
    f->rel[9] ^= 1;
    run = new_run_into(f, "fp8", 0, 1);
    assert_int_equal(feed(f, run, 3 * 512 + CHUNK * 3), 0);
    assert_int_equal(backup_run_wait(run), 0);
    backup_run_free(run);
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_size, size);
    assert_int_equal(st.st_mtime, mtime);
    char *tmp = xasprintf("%s.tmp", cache);
    assert_int_equal(stat(tmp, &st), -1);
    f->rel[9] ^= 1;

    free(tmp);
    free(gone);
    free(cache);
    free(f->fp_dir);
    f->fp_dir = NULL;
}

/* Before its manifests a run confirms that every chunk and WAL segment it names is still
 * stored (an expire that took the backup for dead may have swept them): one missing
 * drops that repository from the run, with an error naming it, its file and the
 * repository, and neither manifest.json nor backup_manifest is written there; the
 * backup completes in the other. Missing in both, the run fails as before. By one
 * listing and by a HEAD per chunk alike. */
static void test_chunk_gone(void **state)
{
    struct fixture *f = *state;
    static const char *const labels[] = {"gone-list", "gone-head"};
    fill(f->rel, CHUNK * 5 / 2, 77);
    memcpy(f->rel + CHUNK, f->rel, CHUNK);
    char hex[SHA256_HEX_LEN + 1];
    chunk_name(NULL, f->rel, CHUNK, hex);
    char *want = xasprintf("chunk %s of \"base/5/16384\" is no longer in repository "
                           "\"plain\": removed while the backup ran",
                           hex);

    /* Gone from "plain" alone: "plain" is dropped, the backup completes in "secret". */
    for (int k = 0; k < 2; k++) {
        f->confirm_by = k ? 1 : -1;
        struct backup_run *run = new_run(f, labels[k]);
        assert_int_equal(feed(f, run, 0), 0);
        assert_int_equal(backup_run_wait(run), 0);
        char *gone = plain_chunk_path(f, f->rel);
        assert_int_equal(unlink(gone), 0); /* chunks 0 and 1 of base/5/16384 */
        free(gone);
        assert_int_equal(backup_run_finish(run, &INFO, 1764095200000000, 1764095201000000), 0);
        assert_true(f->t[0].failed);
        assert_non_null(f->t[0].error);
        assert_non_null(strstr(f->t[0].error, want));
        assert_false(f->t[1].failed);
        backup_run_free(run);
        assert_int_equal(repo_backup_exists(f->r[0], labels[k]), 0);
        assert_int_equal(repo_backup_exists(f->r[1], labels[k]), 1);
        char *bm = xasprintf("backups/%s/backup_manifest", labels[k]);
        uint8_t *data = NULL;
        size_t len;
        assert_int_equal(repo_get_all(f->r[0], bm, &data, &len), -ERR_NOT_FOUND);
        err_clear();
        free(bm);
    }

    /* A WAL segment of the backup gone from the encrypted repository: "secret" dropped. */
    f->confirm_by = 0;
    struct backup_run *run = new_run(f, "wal-gone");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_wait(run), 0);
    char *seg = xasprintf("%s/repo1/main/wal/00000001/00000001000000000000000A", f->dir);
    assert_int_equal(unlink(seg), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095210000000, 1764095211000000), 0);
    assert_true(f->t[1].failed);
    assert_non_null(strstr(f->t[1].error, "WAL segment 00000001000000000000000A of the backup is "
                                          "no longer in repository \"secret\": removed while "
                                          "the backup ran"));
    assert_false(f->t[0].failed);
    backup_run_free(run);
    assert_int_equal(repo_backup_exists(f->r[0], "wal-gone"), 1);
    assert_int_equal(repo_backup_exists(f->r[1], "wal-gone"), 0);

    /* Gone from both: no repository left, the backup fails as it always did, no manifest. */
    run = new_run(f, "both-gone");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_wait(run), 0);
    char *gone = plain_chunk_path(f, f->rel);
    assert_int_equal(unlink(gone), 0);
    free(gone);
    assert_int_equal(unlink(seg), 0);
    free(seg);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095215000000, 1764095216000000),
                     -ERR_RUNTIME);
    assert_string_equal(err_message(), "WAL segment 00000001000000000000000A of the backup is no "
                                       "longer in repository \"secret\": removed while the "
                                       "backup ran");
    assert_non_null(strstr(err_hint_text(), "expire takes a backup for dead"));
    err_clear();
    backup_run_free(run);
    for (int i = 0; i < 2; i++)
        assert_int_equal(repo_backup_exists(f->r[i], "both-gone"), 0);

    /* Nothing gone: the next run completes in both (and stores what was missing again). */
    run = new_run(f, "whole");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095220000000, 1764095221000000), 0);
    backup_run_free(run);
    for (int i = 0; i < 2; i++) {
        assert_false(f->t[i].failed);
        assert_int_equal(repo_backup_exists(f->r[i], "whole"), 1);
    }
    free(want);
}

/* A backup from a standby: the segment of its stop point is only as far as the standby
 * had it (here its valid WAL ends 4 KiB in). It stays in the backup, and is not archived:
 * under its name it would stand for the whole segment, and clash with the whole one a
 * receiver archives (here already in both repositories). */
/* ---- incremental runs ------------------------------------------------------------------ */

#define IBLK 8192
#define ICHUNK (2 * IBLK)

/* An INCREMENTAL file as a 17 server sends it, into the tar. */
static void tb_incremental(struct buf *tar, const char *name, uint32_t truncation,
                           const uint32_t *blocks, uint32_t n, const uint8_t *data)
{
    struct buf b = BUF_INIT;
    uint32_t magic = 0xd3ae1f0du;
    buf_append(&b, &magic, 4);
    buf_append(&b, &n, 4);
    buf_append(&b, &truncation, 4);
    buf_append(&b, blocks, 4 * (size_t)n);
    while (n && b.len % IBLK)
        buf_append(&b, "", 1);
    buf_append(&b, data, (size_t)n * IBLK);
    tb_file(tar, name, b.data, b.len);
    buf_free(&b);
}

/* base.tar and the manifest of a 17 server. */
static int feed_base(struct fixture *f, struct backup_run *run, const struct buf *base,
                     const char *manifest)
{
    struct bbstream *s = bbstream_new(BBSTREAM_STREAMED, backup_run_callbacks(), run);
    struct buf m = BUF_INIT;
    msg(&m, 'n', "base.tar\0", 10);
    int rc = send_msg(f, s, &m);
    for (size_t off = 0; rc == 0 && off < base->len; off += 5000) {
        buf_reset(&m);
        msg(&m, 'd', base->data + off, base->len - off < 5000 ? base->len - off : 5000);
        rc = send_msg(f, s, &m);
    }
    buf_reset(&m);
    msg(&m, 'm', "", 0);
    if (rc == 0)
        rc = send_msg(f, s, &m);
    buf_reset(&m);
    msg(&m, 'd', manifest, strlen(manifest));
    if (rc == 0)
        rc = send_msg(f, s, &m);
    if (rc == 0)
        rc = bbstream_finish(s);
    bbstream_free(s);
    buf_free(&m);
    return rc;
}

static void assert_digest_of(const struct got_file *g, const uint8_t *data, size_t len)
{
    assert_digest_chunked(g, data, len, ICHUNK);
}

static const char *INCR_MANIFEST =
    "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
    "\"Files\": [\n"
    "{ \"Path\": \"backup_label\", \"Size\": 1, \"Last-Modified\": \"x\" },\n"
    "{ \"Path\": \"base/5/INCREMENTAL.100\", \"Size\": 1, \"Last-Modified\": \"x\" },\n"
    "{ \"Path\": \"base/5/INCREMENTAL.200\", \"Size\": 1, \"Last-Modified\": \"x\" }\n"
    "],\n"
    "\"Manifest-Checksum\": \"0\"}\n";

/*
 * A parent with base/5/100 (5 blocks) and base/5/200 (4), chunks of 2 blocks; then an
 * incremental whose INCREMENTAL.100 says: truncated to 3 blocks, blocks 1 and 6 changed
 * (so 7 blocks: the parent's 0 and 2, the new 1 and 6, zeros for 3 to 5 although the
 * parent had 3 and 4), and INCREMENTAL.200: nothing changed. Into both repositories (one
 * plain: the parent's unchanged chunks are taken by name), then into the encrypted one
 * alone (no plain names: every chunk is read back and named again), each file whole.
 */
static void test_incremental(void **state)
{
    struct fixture *f = *state;
    uint8_t *p = xmalloc(5 * IBLK), *q = xmalloc(4 * IBLK), *nb = xmalloc(2 * IBLK);
    uint8_t *want = xcalloc(7, IBLK);
    struct buf base = BUF_INIT;
    struct read_back *rb = xcalloc(1, sizeof(*rb));
    char label_text[] = "START WAL LOCATION: 0/2000028\nINCREMENTAL FROM LSN: 0/1000028\n"
                        "INCREMENTAL FROM TLI: 1\nSTART TIMELINE: 1\n";
    const char *label_kept = "START WAL LOCATION: 0/2000028\nSTART TIMELINE: 1\n";

    fill(p, 5 * IBLK, 21);
    fill(q, 4 * IBLK, 22);
    fill(nb, 2 * IBLK, 23);
    memcpy(want, p, IBLK);
    memcpy(want + IBLK, nb, IBLK);
    memcpy(want + 2 * IBLK, p + 2 * IBLK, IBLK);
    memcpy(want + 6 * IBLK, nb + IBLK, IBLK);

    f->chunk = ICHUNK;
    struct backup_run *run = new_run(f, "parent");
    tb_file(&base, "backup_label", "START WAL LOCATION: 0/1000028\n", 30);
    tb_file(&base, "base/5/100", p, 5 * IBLK);
    tb_file(&base, "base/5/200", q, 4 * IBLK);
    tb_end(&base);
    assert_int_equal(feed_base(f, run, &base, INCR_MANIFEST), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095054000000, 1764095060000000), 0);
    backup_run_free(run);

    static const uint32_t changed[] = {1, 6};
    for (int pass = 0; pass < 2; pass++) {
        const char *label = pass ? "incr-secret" : "incr";
        run = pass ? new_run_into(f, label, 1, 1) : new_run(f, label);
        assert_int_equal(backup_run_load_parent(run, "parent"), 0);
        buf_reset(&base);
        tb_file(&base, "backup_label", label_text, strlen(label_text));
        tb_incremental(&base, "base/5/INCREMENTAL.100", 3, changed, 2, nb);
        tb_incremental(&base, "base/5/INCREMENTAL.200", 4, NULL, 0, NULL);
        tb_end(&base);
        assert_int_equal(feed_base(f, run, &base, INCR_MANIFEST), 0);
        assert_int_equal(backup_run_finish(run, &INFO, 1764095064000000, 1764095070000000), 0);
        const struct backup_totals *t = backup_run_totals(run);
        assert_int_equal(t->incr_files, 2);
        assert_int_equal(t->incr_blocks, 2);
        /* 100: 4 chunks rebuilt; 200: its 2 taken from the parent where names are plain */
        assert_int_equal(t->parent_chunks, pass ? 0 : 2);
        assert_int_equal(t->patched, pass ? 6 : 4);
        /* read back: 100's chunks 0 and 1 (blocks 0 and 2 not sent); 200's where not plain */
        assert_int_equal(t->parent_reads, pass ? 4 : 2);
        backup_run_free(run);

        for (int i = pass; i < 2; i++) {
            read_manifest(f->r[i], label, rb);
            const struct got_file *g = find(rb, "base/5/100");
            assert_non_null(g);
            assert_reassembles(f->r[i], g, want);
            assert_digest_of(g, want, 7 * IBLK);
            g = find(rb, "base/5/200");
            assert_non_null(g);
            assert_reassembles(f->r[i], g, q);
            assert_digest_of(g, q, 4 * IBLK);
            assert_null(find(rb, "base/5/INCREMENTAL.100"));
            g = find(rb, "backup_label");
            assert_reassembles(f->r[i], g, label_kept);
            /* the backup_manifest kept names the restored files, with their sizes */
            char path[320];
            uint8_t *text = NULL;
            size_t len = 0;
            repo_backup_path(label, "backup_manifest", path, sizeof(path));
            assert_int_equal(repo_get_all(f->r[i], path, &text, &len), 0);
            assert_non_null(strstr((char *)text, "{\"Path\":\"base/5/100\",\"Size\":57344,"));
            assert_non_null(strstr((char *)text, "{\"Path\":\"base/5/200\",\"Size\":32768,"));
            assert_null(strstr((char *)text, "INCREMENTAL"));
            free(text);
            struct repo_backup b;
            assert_int_equal(repo_backup_get(f->r[i], label, &b), 0);
            assert_string_equal(b.header.parent, "parent");
            repo_backup_clear(&b);
        }
    }

    /* a file the parent does not have cannot come as changed blocks */
    run = new_run(f, "orphan");
    assert_int_equal(backup_run_load_parent(run, "parent"), 0);
    buf_reset(&base);
    tb_incremental(&base, "base/5/INCREMENTAL.300", 4, NULL, 0, NULL);
    tb_end(&base);
    assert_int_equal(feed_base(f, run, &base, INCR_MANIFEST), -ERR_PROTOCOL);
    assert_non_null(strstr(err_message(), "the server sent \"base/5/INCREMENTAL.300\" as changed "
                                          "blocks, but backup \"parent\" has no \"base/5/300\""));
    err_clear();
    backup_run_free(run);

    /* a parent one of whose chunks is gone (verify moved it aside) is no parent */
    char hex[SHA256_HEX_LEN + 1];
    chunk_name(NULL, q, ICHUNK, hex);
    char *gone = xasprintf("%s/repo0/main/chunks/%.2s/%s", f->dir, hex, hex);
    assert_int_equal(unlink(gone), 0);
    run = new_run(f, "no-parent");
    assert_int_equal(backup_run_load_parent(run, "parent"), -ERR_INTEGRITY);
    assert_non_null(strstr(err_message(), "of \"base/5/200\" of backup \"parent\" is not in "
                                          "repository \"plain\" (did verify find it damaged?)"));
    err_clear();
    backup_run_free(run);
    free(gone);

    f->chunk = 0;
    buf_free(&base);
    free(rb);
    free(p);
    free(q);
    free(nb);
    free(want);
}

static const char *ALL_SENT_MANIFEST =
    "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
    "\"Files\": [\n"
    "{ \"Path\": \"base/5/INCREMENTAL.400\", \"Size\": 1, \"Last-Modified\": \"x\" }\n"
    "],\n"
    "\"Manifest-Checksum\": \"0\"}\n";

/*
 * A 1 MiB range whose every block the server sent needs nothing of the parent: its
 * chunk is not read back. Shown with the parent's chunk gone from the repository after
 * the parent was loaded: base/5/400 (4 blocks, 2 chunks), blocks 0 and 1 sent, so
 * chunk 0 is the sent blocks alone and chunk 1 the parent's by name.
 */
static void test_incremental_all_sent(void **state)
{
    struct fixture *f = *state;
    uint8_t *p = xmalloc(4 * IBLK), *nb = xmalloc(2 * IBLK), *want = xmalloc(4 * IBLK);
    struct buf base = BUF_INIT;
    struct read_back *rb = xcalloc(1, sizeof(*rb));
    static const uint32_t sent[] = {0, 1};
    char hex[SHA256_HEX_LEN + 1];

    fill(p, 4 * IBLK, 31);
    fill(nb, 2 * IBLK, 32);
    memcpy(want, nb, 2 * IBLK);
    memcpy(want + 2 * IBLK, p + 2 * IBLK, 2 * IBLK);
    f->chunk = ICHUNK;
    struct backup_run *run = new_run_into(f, "all-sent-parent", 0, 1);
    tb_file(&base, "base/5/400", p, 4 * IBLK);
    tb_end(&base);
    assert_int_equal(feed_base(f, run, &base, ALL_SENT_MANIFEST), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095300000000, 1764095301000000), 0);
    backup_run_free(run);

    run = new_run_into(f, "all-sent", 0, 1);
    assert_int_equal(backup_run_load_parent(run, "all-sent-parent"), 0);
    chunk_name(NULL, p, ICHUNK, hex);
    char *gone = xasprintf("%s/repo0/main/chunks/%.2s/%s", f->dir, hex, hex);
    assert_int_equal(unlink(gone), 0);
    buf_reset(&base);
    tb_incremental(&base, "base/5/INCREMENTAL.400", 4, sent, 2, nb);
    tb_end(&base);
    assert_int_equal(feed_base(f, run, &base, ALL_SENT_MANIFEST), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095302000000, 1764095303000000), 0);
    const struct backup_totals *t = backup_run_totals(run);
    assert_int_equal(t->patched, 1);
    assert_int_equal(t->parent_chunks, 1);
    assert_int_equal(t->parent_reads, 0);
    backup_run_free(run);
    read_manifest(f->r[0], "all-sent", rb);
    const struct got_file *g = find(rb, "base/5/400");
    assert_non_null(g);
    assert_reassembles(f->r[0], g, want);
    assert_digest_of(g, want, 4 * IBLK);

    f->chunk = 0;
    free(gone);
    buf_free(&base);
    free(rb);
    free(p);
    free(nb);
    free(want);
}

static const char *CONFIRM_MANIFEST =
    "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n"
    "\"Files\": [\n"
    "{ \"Path\": \"backup_label\", \"Size\": 1, \"Last-Modified\": \"x\" },\n"
    "{ \"Path\": \"base/5/INCREMENTAL.500\", \"Size\": 1, \"Last-Modified\": \"x\" }\n"
    "],\n"
    "\"Manifest-Checksum\": \"0\"}\n";

/*
 * Before its manifests an incremental asks about the chunks its parent does not name,
 * one by one where the repository is local and they are few: the parent's are covered
 * by its manifest.json still being there. base/5/500 (8 blocks, 4 chunks of 2) with
 * block 0 changed: chunk 0 and backup_label are asked about, the parent's chunks 1 to 3
 * are not, and no listing is made. A chunk of its own gone is found; and once the
 * parent's manifest.json is gone (as expire removes it before it sweeps), a parent's
 * chunk gone is found too.
 */
static void test_incremental_confirm(void **state)
{
    struct fixture *f = *state;
    uint8_t *p = xmalloc(8 * IBLK), *nb = xmalloc(IBLK), *c0 = xmalloc(ICHUNK);
    struct buf base = BUF_INIT;
    static const uint32_t sent[] = {0};
    static const char *const label_text = "START WAL LOCATION: 0/2000028\n";
    char hex[SHA256_HEX_LEN + 1];

    fill(p, 8 * IBLK, 41);
    fill(nb, IBLK, 42);
    memcpy(c0, nb, IBLK);
    memcpy(c0 + IBLK, p + IBLK, IBLK);
    f->chunk = ICHUNK;
    f->t[0].local = true;
    struct backup_run *run = new_run_into(f, "confirm-parent", 0, 1);
    tb_file(&base, "backup_label", label_text, strlen(label_text));
    tb_file(&base, "base/5/500", p, 8 * IBLK);
    tb_end(&base);
    assert_int_equal(feed_base(f, run, &base, CONFIRM_MANIFEST), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095400000000, 1764095401000000), 0);
    backup_run_free(run);

    /* label: what the incremental's backup_label keeps (new content, not the parent's) */
    for (int k = 0; k < 3; k++) {
        char label[32];
        snprintf(label, sizeof(label), "confirm-%d", k);
        run = new_run_into(f, label, 0, 1);
        assert_int_equal(backup_run_load_parent(run, "confirm-parent"), 0);
        buf_reset(&base);
        char text[96];
        snprintf(text, sizeof(text),
                 "START WAL LOCATION: 0/2000028\nINCREMENTAL FROM LSN: 0/1\n"
                 "LABEL: %d\n",
                 k);
        tb_file(&base, "backup_label", text, strlen(text));
        tb_incremental(&base, "base/5/INCREMENTAL.500", 8, sent, 1, nb);
        tb_end(&base);
        assert_int_equal(feed_base(f, run, &base, CONFIRM_MANIFEST), 0);
        assert_int_equal(backup_run_wait(run), 0);
        char *gone = NULL;
        if (k == 1) { /* its own chunk 0, stored by this run */
            chunk_name(NULL, c0, ICHUNK, hex);
            gone = xasprintf("%s/repo0/main/chunks/%.2s/%s", f->dir, hex, hex);
        } else if (k == 2) { /* the parent's chunk 2, and the parent's manifest.json */
            chunk_name(NULL, p + 2 * ICHUNK, ICHUNK, hex);
            gone = xasprintf("%s/repo0/main/chunks/%.2s/%s", f->dir, hex, hex);
            char *m = xasprintf("%s/repo0/main/backups/confirm-parent/manifest.json", f->dir);
            assert_int_equal(unlink(m), 0);
            free(m);
        }
        if (gone)
            assert_int_equal(unlink(gone), 0);
        free(gone);
        int rc = backup_run_finish(run, &INFO, 1764095402000000, 1764095403000000);
        const struct backup_totals *t = backup_run_totals(run);
        assert_int_equal(t->parent_chunks, 3);
        assert_int_equal(t->confirm_lists, 0);
        if (k == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(t->confirm_heads, 2); /* chunk 0 and backup_label */
            assert_int_equal(repo_backup_exists(f->r[0], label), 1);
        } else {
            assert_int_equal(rc, -ERR_RUNTIME);
            char *want = xasprintf("chunk %s of \"base/5/500\" is no longer in repository "
                                   "\"plain\": removed while the backup ran",
                                   hex);
            assert_string_equal(err_message(), want);
            free(want);
            err_clear();
            assert_int_equal(repo_backup_exists(f->r[0], label), 0);
            /* the parent gone: every chunk named is asked about */
            assert_int_equal(t->confirm_heads, k == 2 ? 5 : 2);
        }
        backup_run_free(run);
    }

    f->t[0].local = false;
    f->chunk = 0;
    buf_free(&base);
    free(p);
    free(nb);
    free(c0);
}

static void test_standby_segment(void **state)
{
    struct fixture *f = *state;
    uint8_t *whole = f->wal;
    f->wal = xcalloc(1, SEG);
    memcpy(f->wal, whole, 4096);
    struct backup_run *run = new_run(f, "standby");
    assert_int_equal(feed(f, run, 0), 0);
    assert_int_equal(backup_run_finish(run, &INFO, 1764095200000000, 1764095201000000), 0);
    assert_int_equal(backup_run_totals(run)->wal_segments, 0);
    backup_run_free(run);
    struct read_back *rb = xcalloc(1, sizeof(*rb));
    for (int i = 0; i < 2; i++) {
        read_manifest(f->r[i], "standby", rb);
        const struct got_file *g = find(rb, "pg_wal/00000001000000000000000A");
        assert_non_null(g);
        assert_reassembles(f->r[i], g, f->wal); /* the backup has it as it came */
        uint8_t *data;
        size_t len;
        assert_int_equal(
            repo_get_all(f->r[i], "wal/00000001/00000001000000000000000A", &data, &len), 0);
        assert_int_equal(len, SEG);
        assert_memory_equal(data, whole, SEG); /* the archive keeps the whole segment */
        free(data);
    }
    free(rb);
    free(f->wal);
    f->wal = whole;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunkset),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_buffers_on_demand),
        cmocka_unit_test(test_command),
        cmocka_unit_test(test_manifest_rewrite),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_interrupted),
        cmocka_unit_test(test_encrypted_only),
        cmocka_unit_test(test_copied_messages),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_chunk_gone),
        cmocka_unit_test(test_standby_segment),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_incremental_all_sent),
        cmocka_unit_test(test_incremental_confirm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
