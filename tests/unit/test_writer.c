/*
 * test_writer.c — laying a backup down (src/restore/writer.c) from a plain and an
 * encrypted posix repository, with small pieces so that the pieces of one file go
 * through several threads: the bytes on disk, a flipped byte in a stored chunk and a
 * chunk holding other content (both stop the restore naming the file and the
 * repository), and --delta keeping what matches. Each test runs on a manifest with file
 * digests of either kind: over the chunks' SHA-256s (each piece fills its chunks' slots)
 * and, as older manifests have them, over the whole content (fed by the pieces in turn).
 * Confinement: --delta over symlinks and a hard link pointing outside, and a manifest
 * with a symlink out of the data directory (refused before anything is made).
 */
#include "../../src/restore/writer_int.h"
#include "pgark/codec.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <fcntl.h>
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

#define CHUNK 4096u
#define NFILES 4

static const struct repo_identity ID = {7000000000000000002ULL, 15, 16u << 20};

/* Sizes: empty, less than a chunk, several pieces with a short tail, a few chunks. */
static const size_t SIZES[NFILES] = {0, 1000, 23 * CHUNK + 17, 3 * CHUNK};
static const char *const PATHS[NFILES] = {"empty", "base/1/small", "base/1/big", "global/three"};

struct fixture {
    enum manifest_digest_kind kind;
    char dir[64];
    struct storage *s[2];
    struct repo *r[2];
    uint8_t *data[NFILES];
    char first_big_chunk[2][REPO_CHUNK_NAME_LEN + 1]; /* of base/1/big, per repo */
};

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static int buf_sink(void *arg, const void *data, size_t len)
{
    buf_append(arg, data, len);
    return 0;
}

/* Store the chunks of n files and a manifest naming them under label, as a backup
 * would; first_big_chunk gets the first chunk of base/1/big when there is one. */
static void put_files(struct fixture *f, int i, const char *label, int n_files,
                      const char *const *paths, uint8_t *const *datas, const size_t *sizes)
{
    struct repo *r = f->r[i];
    struct manifest_writer *mw = manifest_writer_new(f->dir, CHUNK);
    assert_non_null(mw);
    struct manifest_file dir = {.path = "base", .type = MANIFEST_TYPE_DIR, .mode = 0700};
    assert_int_equal(manifest_writer_add(mw, &dir), 0);
    for (int k = 0; k < n_files; k++) {
        size_t n = (sizes[k] + CHUNK - 1) / CHUNK;
        uint8_t *names = xmalloc(n ? n * SHA256_LEN : 1);
        uint8_t *sums = xmalloc(n ? n * SHA256_LEN : 1);
        for (size_t c = 0; c < n; c++) {
            size_t len = sizes[k] - c * CHUNK < CHUNK ? sizes[k] - c * CHUNK : CHUNK;
            sha256(datas[k] + c * CHUNK, len, sums + c * SHA256_LEN);
            char name[REPO_CHUNK_NAME_LEN + 1];
            repo_chunk_name(r, datas[k] + c * CHUNK, len, name);
            char rel[96];
            assert_int_equal(repo_chunk_path(name, rel, sizeof(rel)), 0);
            assert_int_equal(repo_put(r, rel, datas[k] + c * CHUNK, len), 0);
            assert_int_equal(hex_decode(name, names + c * SHA256_LEN, SHA256_LEN), 0);
            if (strcmp(paths[k], "base/1/big") == 0 && c == 0)
                memcpy(f->first_big_chunk[i], name, sizeof(name));
        }
        struct manifest_file mf = {.path = paths[k],
                                   .type = MANIFEST_TYPE_FILE,
                                   .mode = 0600,
                                   .size = sizes[k],
                                   .mtime = 1700000000,
                                   .chunks = names,
                                   .n_chunks = n,
                                   .digest_kind = f->kind};
        if (f->kind == MANIFEST_DIGEST_FILE)
            sha256(datas[k], sizes[k], mf.digest);
        else
            sha256(sums, n * SHA256_LEN, mf.digest);
        assert_int_equal(manifest_writer_add(mw, &mf), 0);
        free(names);
        free(sums);
    }
    struct manifest_header h = {.format = MANIFEST_FORMAT,
                                .label = label,
                                .timeline = 1,
                                .pg_version = 150000,
                                .system_identifier = ID.system_identifier,
                                .chunk_size = CHUNK,
                                .compression = "zstd",
                                .encrypted = i == 1};
    struct buf text = BUF_INIT;
    assert_int_equal(manifest_writer_finish(mw, &h, buf_sink, &text), 0);
    manifest_writer_free(mw);
    char *path = xasprintf("backups/%s/manifest.json", label);
    assert_int_equal(repo_put(r, path, text.data, text.len), 0);
    free(path);
    buf_free(&text);
}

/* The fixture's files under L1. */
static void put_backup(struct fixture *f, int i)
{
    put_files(f, i, "L1", NFILES, PATHS, f->data, SIZES);
}

static int setup(void **state, enum manifest_digest_kind kind)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->kind = kind;
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgark-test-writer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int k = 0; k < NFILES; k++) {
        f->data[k] = xmalloc(SIZES[k] ? SIZES[k] : 1);
        fill(f->data[k], SIZES[k], (uint32_t)k + 1);
    }
    for (int i = 0; i < 2; i++) {
        char *root = xasprintf("%s/repo%d", f->dir, i);
        f->s[i] = storage_posix_new(i ? "secret" : "plain", root);
        free(root);
        struct repo_options ro = {
            .cluster = "main",
            .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                       .level = 1,
                       .passphrase = i ? "pass phrase" : NULL},
            .kdf_n = 1024};
        f->r[i] = repo_open(f->s[i], &ro, &ID, true);
        assert_non_null(f->r[i]);
        put_backup(f, i);
    }
    *state = f;
    return 0;
}

static int setup_chunks(void **state)
{
    return setup(state, MANIFEST_DIGEST_CHUNKS);
}

static int setup_file(void **state)
{
    return setup(state, MANIFEST_DIGEST_FILE);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        repo_close(f->r[i]);
        storage_free(f->s[i]);
    }
    char *cmd = xasprintf("rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    for (int k = 0; k < NFILES; k++)
        free(f->data[k]);
    free(f);
    return 0;
}

/* Backup label of repo i into pgdata, as restore does (a cache of repeated chunks
 * keeping at most cache_limit bytes). */
static int restore_label(struct fixture *f, int i, const char *label, const char *pgdata,
                         bool delta, uint64_t cache_limit, struct writer_stats *st)
{
    struct chunkcache *cache = chunkcache_new(cache_limit);
    struct writer_options o = {.pgdata = pgdata,
                               .repo = f->r[i],
                               .threads = 3,
                               .delta = delta,
                               .piece_bytes = 2 * CHUNK,
                               .cache = cache};
    uint8_t digest[SHA256_LEN];
    int rc = writer_vet(&o, label, digest);
    if (rc == 0)
        rc = writer_restore(&o, label, digest, st);
    /* Every reference served: nothing is kept past its last use. */
    if (rc == 0)
        assert_int_equal(chunkcache_held(cache), 0);
    chunkcache_free(cache);
    return rc;
}

static int restore_into(struct fixture *f, int i, const char *pgdata, bool delta,
                        struct writer_stats *st)
{
    return restore_label(f, i, "L1", pgdata, delta, RESTORE_CACHE_BYTES, st);
}

/* Descriptors this process has open. */
/* Flip a bit inside the stored chunk of the CHUNK bytes at data in repository i. */
static void damage_chunk(struct fixture *f, int i, const uint8_t *data)
{
    char name[REPO_CHUNK_NAME_LEN + 1], rel[96];
    repo_chunk_name(f->r[i], data, CHUNK, name);
    assert_int_equal(repo_chunk_path(name, rel, sizeof(rel)), 0);
    char *obj = xasprintf("%s/repo%d/main/%s", f->dir, i, rel);
    FILE *fp = fopen(obj, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 40, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, 40, SEEK_SET), 0);
    fputc(c ^ 1, fp);
    fclose(fp);
    free(obj);
}

static int open_fds(void)
{
    int n = 0;
    char p[32];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        struct stat sb;
        n += lstat(p, &sb) == 0;
    }
    return n;
}

/* A restored file: its bytes, and the backup's mode and mtime (set by the syncer, with
 * the fsync). */
static void assert_file(const char *pgdata, const char *path, const uint8_t *data, size_t size)
{
    char *p = xasprintf("%s/%s", pgdata, path);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    if ((sb.st_mode & 07777) != 0600 || sb.st_mtime != 1700000000)
        fail_msg("\"%s\": mode %o, mtime %lld", p, (unsigned)(sb.st_mode & 07777),
                 (long long)sb.st_mtime);
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    uint8_t *got = xmalloc(size + 1);
    size_t n = fread(got, 1, size + 1, fp);
    fclose(fp);
    assert_int_equal(n, size);
    assert_memory_equal(got, data, size);
    free(got);
    free(p);
}

static void assert_files(struct fixture *f, const char *pgdata)
{
    for (int k = 0; k < NFILES; k++)
        assert_file(pgdata, PATHS[k], f->data[k], SIZES[k]);
}

static void test_restore(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        char *pgdata = xasprintf("%s/pgdata%d", f->dir, i);
        struct writer_stats st;
        assert_int_equal(restore_into(f, i, pgdata, false, &st), 0);
        assert_files(f, pgdata);
        assert_int_equal(st.files, NFILES);
        assert_int_equal(st.chunks_fetched, 1 + 24 + 3);

        /* delta: one byte changed on disk; only its chunk is fetched again */
        char *big = xasprintf("%s/base/1/big", pgdata);
        int fd = open(big, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "?", 1, 5 * CHUNK + 3), 1);
        close(fd);
        assert_int_equal(restore_into(f, i, pgdata, true, &st), 0);
        assert_files(f, pgdata);
        assert_int_equal(st.files_written, 1);
        assert_int_equal(st.chunks_fetched, 1);
        free(big);
        free(pgdata);
    }
}

/* Replace the first chunk of base/1/big in repo i with `stored` bytes. */
static void replace_chunk(struct fixture *f, int i, const uint8_t *stored, size_t len)
{
    char rel[96];
    assert_int_equal(repo_chunk_path(f->first_big_chunk[i], rel, sizeof(rel)), 0);
    char *p = xasprintf("%s/repo%d/main/%s", f->dir, i, rel);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(stored, 1, len, fp), len);
    fclose(fp);
    free(p);
}

static uint8_t *read_chunk(struct fixture *f, int i, size_t *len)
{
    char rel[96];
    assert_int_equal(repo_chunk_path(f->first_big_chunk[i], rel, sizeof(rel)), 0);
    char *p = xasprintf("%s/repo%d/main/%s", f->dir, i, rel);
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    uint8_t *b = xmalloc(1 << 16);
    *len = fread(b, 1, 1 << 16, fp);
    fclose(fp);
    free(p);
    return b;
}

/* Whether files in dir can be opened O_DIRECT and allocated ahead (fallocate). */
static bool direct_falloc(const char *dir)
{
    char *p = xasprintf("%s/probe", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0600);
    bool ok = fd >= 0 && fallocate(fd, 0, 0, CHUNK) == 0;
    if (fd >= 0)
        close(fd);
    unlink(p);
    free(p);
    return ok;
}

static void expect_failure(struct fixture *f, int i, const char *tag, const char *why)
{
    char *pgdata = xasprintf("%s/bad-%s-%d", f->dir, tag, i);
    struct writer_stats st;
    int fds = open_fds();
    assert_int_equal(restore_into(f, i, pgdata, false, &st), -ERR_INTEGRITY);
    /* Every file the restore opened is closed, the pieces' and the syncer's. */
    assert_int_equal(open_fds(), fds);
    char *msg = err_format();
    char *repo = xasprintf("repository \"%s\"", i ? "secret" : "plain");
    if (!strstr(msg, "base/1/big") || !strstr(msg, repo) || (why && !strstr(msg, why)))
        fail_msg("%s, repo %d: %s", tag, i, msg);
    free(repo);
    free(msg);
    err_clear();
    /* What the failure left: the file of the bad chunk at its size (up to its last 4 KiB
     * block when its padded O_DIRECT tail went down before the failure) and, written
     * O_DIRECT, with all its blocks allocated whichever of its pieces landed (its space
     * taken before its data: a full disk fails a restore before the writes). */
    char *big = xasprintf("%s/base/1/big", pgdata);
    struct stat sb;
    assert_int_equal(stat(big, &sb), 0);
    if ((size_t)sb.st_size != SIZES[2] && (size_t)sb.st_size != (SIZES[2] + 4095) / 4096 * 4096)
        fail_msg("%s, repo %d: \"%s\" has %lld bytes", tag, i, big, (long long)sb.st_size);
    if (direct_falloc(f->dir) && (uint64_t)sb.st_blocks * 512 < SIZES[2])
        fail_msg("%s, repo %d: \"%s\" has %lld bytes allocated of its %zu", tag, i, big,
                 (long long)sb.st_blocks * 512, SIZES[2]);
    free(big);
    free(pgdata);
}

static void test_damaged_chunk(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *good = read_chunk(f, i, &len);
        uint8_t *bad = xmalloc(len);
        memcpy(bad, good, len);
        bad[len / 2] ^= 0x01;
        replace_chunk(f, i, bad, len);
        expect_failure(f, i, "flip", NULL);
        replace_chunk(f, i, good, len);
        free(bad);
        free(good);
    }
}

/* A well-formed object under the name of the first chunk of base/1/big, but with the
 * content of its second chunk: a swapped or misnamed chunk. */
static void test_wrong_chunk(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *good = read_chunk(f, i, &len);
        char rel[96];
        assert_int_equal(repo_chunk_path(f->first_big_chunk[i], rel, sizeof(rel)), 0);
        assert_int_equal(repo_put(f->r[i], rel, f->data[2] + CHUNK, CHUNK), 0);
        /* plain: the name is the digest; encrypted: the file's digest catches it */
        expect_failure(f, i, "wrong", i ? "does not match the SHA-256" : "holds other content");
        replace_chunk(f, i, good, len);
        free(good);
    }
}

/* A well-formed object under the name of the first chunk of base/1/big, longer than the
 * manifest says the chunk is: by less than the room a chunk gets after its place (decoded,
 * then refused by its length) and by more (refused from its header, nothing decoded). */
static void test_long_chunk(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *good = read_chunk(f, i, &len);
        char rel[96];
        assert_int_equal(repo_chunk_path(f->first_big_chunk[i], rel, sizeof(rel)), 0);
        assert_int_equal(repo_put(f->r[i], rel, f->data[2], CHUNK + 10), 0);
        /* plain: the name is checked first */
        expect_failure(f, i, "long",
                       i ? "has 4106 bytes, the manifest expects 4096" : "holds other content");
        assert_int_equal(repo_put(f->r[i], rel, f->data[2], 2 * CHUNK), 0);
        expect_failure(f, i, "longer", "holds 8192 bytes, more than the");
        replace_chunk(f, i, good, len);
        free(good);
    }
}

/* Sound chunks, but a manifest whose file digest is not theirs: the combined digest
 * catches it, in a plain repository too (32 bytes a chunk, no second pass). */
static void test_wrong_digest(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        uint8_t *text;
        size_t len;
        assert_int_equal(repo_get_all(f->r[i], "backups/L1/manifest.json", &text, &len), 0);
        /* the first file with chunks is base/1/small: its digest's first hex digit */
        char *at = strstr((char *)text, "\"path\":\"base/1/small\"");
        assert_non_null(at);
        at = strstr(at, "\"sha256_chunks\":\"");
        assert_non_null(at);
        at += strlen("\"sha256_chunks\":\"");
        *at = *at == '0' ? '1' : '0';
        assert_int_equal(repo_put(f->r[i], "backups/L1/manifest.json", text, len), 0);
        free(text);
        char *pgdata = xasprintf("%s/bad-digest-%d", f->dir, i);
        struct writer_stats st;
        assert_int_equal(restore_into(f, i, pgdata, false, &st), -ERR_INTEGRITY);
        char *msg = err_format();
        if (!strstr(msg, "base/1/small") || !strstr(msg, "does not match the SHA-256"))
            fail_msg("repo %d: %s", i, msg);
        free(msg);
        err_clear();
        free(pgdata);
    }
}

static void put_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    fclose(fp);
}

static void assert_text(const char *path, const char *text)
{
    char got[256];
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(got, 1, sizeof(got) - 1, fp);
    fclose(fp);
    got[n] = '\0';
    assert_string_equal(got, text);
}

/* --delta over a directory where an earlier life (or someone) left symlinks and a hard
 * link pointing outside, where the backup has a directory or a file: each is replaced,
 * never written through, and what they point to is neither changed nor removed. */
static void test_delta_links(void **state)
{
    struct fixture *f = *state;
    char *pgdata = xasprintf("%s/pgdata-links", f->dir);
    char *out = xasprintf("%s/outside", f->dir);
    char *p;
    struct writer_stats st;
    assert_int_equal(restore_into(f, 0, pgdata, false, &st), 0);

    assert_int_equal(mkdir(out, 0700), 0);
    p = xasprintf("%s/1", out);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/1/small", out);
    put_text(p, "outside small");
    free(p);
    p = xasprintf("%s/three", out);
    put_text(p, "outside three");
    free(p);
    p = xasprintf("%s/hard", out);
    put_text(p, "outside hard");
    free(p);
    /* base -> outside (the backup has a directory there), global/three -> outside/three
     * (a file), empty hard-linked to outside/hard, extra -> outside (not in the backup) */
    char *cmd = xasprintf("cd '%s' && rm -rf base global/three empty && ln -s '%s' base && "
                          "ln -s '%s/three' global/three && ln '%s/hard' empty && "
                          "ln -s '%s' extra",
                          pgdata, out, out, out, out);
    assert_int_equal(system(cmd), 0);
    free(cmd);

    struct path_set *seen = path_set_new();
    struct writer_options o = {.pgdata = pgdata,
                               .repo = f->r[0],
                               .threads = 3,
                               .delta = true,
                               .piece_bytes = 2 * CHUNK,
                               .seen = seen};
    uint8_t digest[SHA256_LEN];
    assert_int_equal(writer_vet(&o, "L1", digest), 0);
    assert_int_equal(writer_restore(&o, "L1", digest, &st), 0);
    path_set_free(seen);
    assert_files(f, pgdata);

    struct stat sb;
    p = xasprintf("%s/base", pgdata);
    assert_int_equal(lstat(p, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    free(p);
    p = xasprintf("%s/extra", pgdata);
    assert_int_equal(lstat(p, &sb), -1);
    free(p);
    p = xasprintf("%s/1/small", out);
    assert_text(p, "outside small");
    free(p);
    p = xasprintf("%s/three", out);
    assert_text(p, "outside three");
    free(p);
    p = xasprintf("%s/hard", out);
    assert_text(p, "outside hard");
    free(p);
    free(out);
    free(pgdata);
}

/* A manifest with a symlink out of the data directory and a file beneath it: refused by
 * writer_vet, naming the entry, with nothing made (not even the data directory); and
 * writer_restore, handed such a manifest anyway (as if it had changed after the vet),
 * refuses the entry before acting on it. */
static void test_hostile_manifest(void **state)
{
    struct fixture *f = *state;
    char *out = xasprintf("%s/outside", f->dir);
    assert_int_equal(mkdir(out, 0700), 0);
    char *sentinel = xasprintf("%s/sentinel", out);
    put_text(sentinel, "sentinel");

    struct manifest_writer *mw = manifest_writer_new(f->dir, CHUNK);
    struct manifest_file dir = {.path = "base", .type = MANIFEST_TYPE_DIR, .mode = 0700};
    struct manifest_file link = {
        .path = "escape", .type = MANIFEST_TYPE_SYMLINK, .mode = 0777, .link = out};
    struct manifest_file file = {
        .path = "escape/sentinel", .type = MANIFEST_TYPE_FILE, .mode = 0600};
    manifest_chunks_digest(NULL, 0, file.digest);
    assert_int_equal(manifest_writer_add(mw, &dir), 0);
    assert_int_equal(manifest_writer_add(mw, &link), 0);
    assert_int_equal(manifest_writer_add(mw, &file), 0);
    struct manifest_header h = {.format = MANIFEST_FORMAT,
                                .label = "L2",
                                .timeline = 1,
                                .pg_version = 150000,
                                .system_identifier = ID.system_identifier,
                                .chunk_size = CHUNK,
                                .compression = "zstd"};
    struct buf text = BUF_INIT;
    assert_int_equal(manifest_writer_finish(mw, &h, buf_sink, &text), 0);
    manifest_writer_free(mw);
    assert_int_equal(repo_put(f->r[0], "backups/L2/manifest.json", text.data, text.len), 0);
    buf_free(&text);

    char *pgdata = xasprintf("%s/pgdata-hostile", f->dir);
    struct writer_options o = {.pgdata = pgdata, .repo = f->r[0], .threads = 2};
    uint8_t digest[SHA256_LEN] = {0};
    struct writer_stats st;
    assert_int_equal(writer_vet(&o, "L2", digest), -ERR_INTEGRITY);
    char *msg = err_format();
    assert_string_equal(msg, "manifest entry \"escape\" is a symlink: restore makes symlinks "
                             "only for the tablespaces the manifest header lists "
                             "(pg_tblspc/<oid>)\n"
                             "  at line 3 of the manifest\n"
                             "  in object \"main/backups/L2/manifest.json\" of repository "
                             "\"plain\"\n"
                             "  in repository \"plain\"\n"
                             "  while checking the manifest of backup \"L2\"");
    free(msg);
    err_clear();
    struct stat sb;
    assert_int_equal(stat(pgdata, &sb), -1);

    assert_int_equal(writer_restore(&o, "L2", digest, &st), -ERR_INTEGRITY);
    msg = err_format();
    if (!strstr(msg, "manifest entry \"escape\" is a symlink"))
        fail_msg("%s", msg);
    free(msg);
    err_clear();
    char *esc = xasprintf("%s/escape", pgdata);
    assert_int_equal(lstat(esc, &sb), -1);
    assert_text(sentinel, "sentinel");
    free(esc);
    free(pgdata);
    free(sentinel);
    free(out);
}

/* Files that share chunks, as template0, template1 and postgres share their catalogs,
 * and ranges of zeros: A (5 chunks) in three databases, Z (6 zero chunks), and M (A's
 * first two chunks, then a zero chunk and a short tail of zeros). */
#define NREP 5
static const char *const REP_PATHS[NREP] = {"base/1/a", "base/4/a", "base/5/a", "base/5/zero",
                                            "base/5/mixed"};
static const size_t REP_SIZES[NREP] = {5 * CHUNK, 5 * CHUNK, 5 * CHUNK, 6 * CHUNK, 3 * CHUNK + 100};
#define REP_DISTINCT 7 /* A0..A4, a zero chunk, the zero tail */
#define REP_REFS 25    /* 15 + 6 + 4 */

static void assert_rep_files(uint8_t *const *data, const char *pgdata)
{
    for (int k = 0; k < NREP; k++) {
        char *p = xasprintf("%s/%s", pgdata, REP_PATHS[k]);
        FILE *fp = fopen(p, "rb");
        assert_non_null(fp);
        uint8_t *got = xmalloc(REP_SIZES[k] + 1);
        size_t n = fread(got, 1, REP_SIZES[k] + 1, fp);
        fclose(fp);
        assert_int_equal(n, REP_SIZES[k]);
        assert_memory_equal(got, data[k], REP_SIZES[k]);
        free(got);
        free(p);
    }
}

/* Each distinct chunk is fetched once, the others are served from memory, and the bytes
 * are the backup's; with a cap too small for them the restore fetches again and is still
 * right; a damaged chunk that others wait for stops the restore (no one waits forever). */
static void test_repeated_chunks(void **state)
{
    struct fixture *f = *state;
    uint8_t *a = xmalloc(5 * CHUNK);
    fill(a, 5 * CHUNK, 11);
    uint8_t *zero = xcalloc(1, 6 * CHUNK);
    uint8_t *mixed = xcalloc(1, 3 * CHUNK + 100);
    memcpy(mixed, a, 2 * CHUNK);
    uint8_t *data[NREP] = {a, a, a, zero, mixed};
    for (int i = 0; i < 2; i++) {
        put_files(f, i, "L3", NREP, REP_PATHS, data, REP_SIZES);
        struct writer_stats st;
        char *pgdata = xasprintf("%s/rep-%d", f->dir, i);
        assert_int_equal(restore_label(f, i, "L3", pgdata, false, RESTORE_CACHE_BYTES, &st), 0);
        assert_rep_files(data, pgdata);
        assert_int_equal(st.chunks_fetched, REP_DISTINCT);
        assert_int_equal(st.chunks_reused, REP_REFS - REP_DISTINCT);
        free(pgdata);

        /* Room for one chunk only: some are fetched again, the bytes are right. */
        pgdata = xasprintf("%s/rep-small-%d", f->dir, i);
        assert_int_equal(restore_label(f, i, "L3", pgdata, false, CHUNK, &st), 0);
        assert_rep_files(data, pgdata);
        assert_true(st.chunks_fetched >= REP_DISTINCT);
        assert_int_equal(st.chunks_fetched + st.chunks_reused, REP_REFS);
        free(pgdata);

        /* No room at all: every reference fetched, as without a cache. */
        pgdata = xasprintf("%s/rep-none-%d", f->dir, i);
        assert_int_equal(restore_label(f, i, "L3", pgdata, false, 0, &st), 0);
        assert_rep_files(data, pgdata);
        assert_int_equal(st.chunks_fetched, REP_REFS);
        assert_int_equal(st.chunks_reused, 0);
        free(pgdata);

        /* --delta over the first restore with one chunk of base/4/a changed: only that
         * chunk is written, once: from memory when base/1/a's piece kept its copy first,
         * else fetched (the pieces of the two files run side by side). */
        pgdata = xasprintf("%s/rep-%d", f->dir, i);
        char *p = xasprintf("%s/base/4/a", pgdata);
        int fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "?", 1, 3 * CHUNK + 5), 1);
        close(fd);
        free(p);
        assert_int_equal(restore_label(f, i, "L3", pgdata, true, RESTORE_CACHE_BYTES, &st), 0);
        assert_rep_files(data, pgdata);
        assert_int_equal(st.files_written, 1);
        assert_int_equal(st.chunks_fetched + st.chunks_reused, 1);
        free(pgdata);

        /* A0, needed by every copy of A and by M, damaged: the restore stops with the
         * error of the file that read it. */
        damage_chunk(f, i, a);
        pgdata = xasprintf("%s/rep-bad-%d", f->dir, i);
        assert_int_equal(restore_label(f, i, "L3", pgdata, false, RESTORE_CACHE_BYTES, &st),
                         -ERR_INTEGRITY);
        char *msg = err_format();
        if (!strstr(msg, "base/") || !strstr(msg, i ? "\"secret\"" : "\"plain\""))
            fail_msg("repo %d: %s", i, msg);
        free(msg);
        err_clear();
        free(pgdata);
    }
    free(a);
    free(zero);
    free(mixed);
}

/* More files than the syncer holds at once (SYNC_QUEUE waiting, SYNC_THREADS in fsync),
 * in three directories, from empty to a few pieces: the pieces wait for room in its
 * queue, and every file ends with its bytes, mode and mtime, no descriptor left open.
 * Then a damaged chunk in a file late in the manifest, after many were handed over: the
 * restore stops with that file's error, every file it opened closed. */
#define NMANY (3 * (SYNC_QUEUE + SYNC_THREADS))
static void test_many_files(void **state)
{
    struct fixture *f = *state;
    char *paths[NMANY];
    uint8_t *data[NMANY];
    size_t sizes[NMANY];
    for (int k = 0; k < NMANY; k++) {
        paths[k] = xasprintf("base/%d/f%d", k % 3, k);
        sizes[k] = (size_t)(k % 7) * CHUNK / 2 + (size_t)(k % 5);
        data[k] = xmalloc(sizes[k] + 1);
        fill(data[k], sizes[k], 100u + (uint32_t)k);
    }
    for (int i = 0; i < 2; i++) {
        put_files(f, i, "L4", NMANY, (const char *const *)paths, data, sizes);
        char *pgdata = xasprintf("%s/many-%d", f->dir, i);
        struct writer_stats st;
        int fds = open_fds();
        assert_int_equal(restore_label(f, i, "L4", pgdata, false, RESTORE_CACHE_BYTES, &st), 0);
        assert_int_equal(open_fds(), fds);
        for (int k = 0; k < NMANY; k++)
            assert_file(pgdata, paths[k], data[k], sizes[k]);
        assert_int_equal(st.files, NMANY);
        free(pgdata);

        /* The first chunk of the last file with a whole chunk, damaged. */
        int last = NMANY - 1;
        while (sizes[last] < CHUNK)
            last--;
        damage_chunk(f, i, data[last]);
        pgdata = xasprintf("%s/many-bad-%d", f->dir, i);
        assert_int_equal(restore_label(f, i, "L4", pgdata, false, RESTORE_CACHE_BYTES, &st),
                         -ERR_INTEGRITY);
        assert_int_equal(open_fds(), fds);
        char *msg = err_format();
        if (!strstr(msg, paths[last]) || !strstr(msg, i ? "\"secret\"" : "\"plain\""))
            fail_msg("repo %d: %s", i, msg);
        free(msg);
        err_clear();
        free(pgdata);
    }
    for (int k = 0; k < NMANY; k++) {
        free(paths[k]);
        free(data[k]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restore, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_chunk, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_chunk, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_long_chunk, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_digest, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_delta_links, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_manifest, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_chunks, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_chunks, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_restore, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_chunk, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_chunk, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_long_chunk, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_many_files, setup_chunks, teardown),
        cmocka_unit_test_setup_teardown(test_many_files, setup_file, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
