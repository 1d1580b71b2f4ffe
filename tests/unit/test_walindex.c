/* test_walindex.c — the time index written by every WAL push, and its look-ups.
 *
 * Real PostgreSQL 15 WAL (the waldecode fixture: segments 0/900000 and 0/A00000 of a
 * 1 MiB-segment cluster, see test_waldecode.c for where the expected values come from)
 * pushed through repo_wal_push_fd / repo_wal_push_partial_fd into a posix repository (and
 * again, the *_prep tests, prepared once with repo_wal_prepare and pushed from that);
 * the index read back must tell the commits PostgreSQL made, and a segment that does
 * not decode must still be archived.
 */
#include "pgark/codec.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/units.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
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

#include "walfixture.h"
#include <zstd.h>

#define SEG (1024 * 1024)
#define SYSID UINT64_C(7712208971608537675)
#define SEG9_NAME "000000010000000000000009"
#define SEGA_NAME "00000001000000000000000A"
#define BIG_COMMIT UINT64_C(0x9FE878)
/* Commit times as PostgreSQL reported them (pg_xact_commit_timestamp), in Unix us. */
#define T(pg) (INT64_C(pg) + PG_EPOCH_OFFSET_US)
#define T725 T(848953780246677)
#define T734 T(848953780473837)
#define T3736 T(848953780546087)
#define T3737 T(848953780564230)

static uint8_t *wal; /* segments 9 and A back to back */

static int group_setup(void **state)
{
    (void)state;
    wal = walfixture_load();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(wal);
    return 0;
}

/* ---- a fresh repository per test ------------------------------------------------------ */

struct fx {
    bool prep; /* push through repo_wal_prepare / repo_wal_push_prepared */
    char dir[64];
    char file[96]; /* scratch file holding what is pushed */
    struct storage *s;
    struct repo *r;
    FILE *log;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgark-walindex-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->file, sizeof(f->file), "%s/wal.bin", f->dir);
    char root[96];
    snprintf(root, sizeof(root), "%s/repo", f->dir);
    f->s = storage_posix_new("local", root);
    struct repo_options o = {
        .cluster = "main",
        .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"), .level = 1}};
    struct repo_identity id = {.system_identifier = SYSID, .pg_major = 15, .seg_size = SEG};
    f->r = repo_open(f->s, &o, &id, true);
    if (!f->r)
        return -1;
    f->log = tmpfile();
    log_set_stream(f->log);
    *state = f;
    return 0;
}

static int setup_prep(void **state)
{
    int rc = setup(state);
    if (rc == 0)
        ((struct fx *)*state)->prep = true;
    return rc;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];
    log_set_stream(stderr);
    fclose(f->log);
    repo_close(f->r);
    storage_free(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    err_clear();
    return 0;
}

/* Write len bytes to the scratch file; returns an fd open on it. */
static int scratch(struct fx *f, const uint8_t *data, size_t len)
{
    int fd = open(f->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    return fd;
}

/* Prepared with the repository's level, into scratch files of the fixture's directory;
 * the descriptor is closed before the push (the preparation keeps its own). */
static int push_prepared(struct fx *f, const char *name, bool partial, int fd, size_t len)
{
    struct repo_identity id = {.system_identifier = SYSID, .pg_major = 15, .seg_size = SEG};
    struct repo_codecs codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                                 .level = 1};
    struct repo_wal_preparer *p = repo_wal_preparer_new(&id, &codecs, f->dir);
    struct repo_wal_prepared *s = NULL;
    assert_non_null(p);
    int rc = repo_wal_prepare(p, name, partial, fd, len, &s);
    close(fd);
    if (rc == 0)
        rc = repo_wal_push_prepared(f->r, s);
    repo_wal_prepared_free(s);
    repo_wal_preparer_free(p);
    return rc;
}

static int push(struct fx *f, const char *name, const uint8_t *data)
{
    int fd = scratch(f, data, SEG);
    if (f->prep)
        return push_prepared(f, name, false, fd, SEG);
    int rc = repo_wal_push_fd(f->r, name, fd, SEG);
    close(fd);
    return rc;
}

static int push_partial(struct fx *f, const char *name, const uint8_t *data, size_t len)
{
    int fd = scratch(f, data, len);
    if (f->prep)
        return push_prepared(f, name, true, fd, len);
    int rc = repo_wal_push_partial_fd(f->r, name, fd, len);
    close(fd);
    return rc;
}

static char *log_text(struct fx *f)
{
    static char text[8192];
    fflush(f->log);
    rewind(f->log);
    size_t n = fread(text, 1, sizeof(text) - 1, f->log);
    text[n] = '\0';
    return text;
}

static bool object_exists(struct fx *f, const char *rel)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/repo/main/%s", f->dir, rel);
    return stat(path, &st) == 0;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* Segment 9 alone: nine commits (725..732 and the prepared 734), the abort of 733, the
 * restore point; the big commit 735 starts here but ends in A, so it is in neither. */
static void test_index_of_complete_segment(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_true(object_exists(f, "wal/00000001/" SEG9_NAME));
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), 0);
    assert_int_equal(ix.tli, 1);
    assert_int_equal(ix.segno, 9);
    assert_false(ix.partial);
    assert_int_equal(ix.bytes, SEG);
    assert_int_equal(ix.commits, 9);
    assert_int_equal(ix.aborts, 1);
    assert_int_equal(ix.first_commit.xid, 725);
    assert_int_equal(ix.first_commit.lsn, 0x902618);
    assert_int_equal(ix.first_commit.end_lsn, 0x902640);
    assert_int_equal(ix.first_commit.time_us, T725);
    assert_int_equal(ix.last_commit.xid, 734);
    assert_int_equal(ix.last_commit.lsn, 0x91FA70);
    assert_int_equal(ix.last_commit.time_us, T734);
    assert_int_equal(ix.nrestore_points, 1);
    assert_string_equal(ix.restore_points[0].name, "before_drop");
    assert_int_equal(ix.restore_points[0].lsn, 0x902800);
    assert_int_equal(ix.restore_points[0].end_lsn, 0x902868);
    assert_true(ix.restore_points[0].time_us > T(848953780333960) &&
                ix.restore_points[0].time_us < T(848953780397840));
    assert_false(ix.switch_seen);
    assert_false(ix.end_of_wal);
    assert_int_equal(ix.end_lsn, BIG_COMMIT); /* the last complete record ends there */
    repo_wal_index_free(&ix);
    assert_string_equal(log_text(f), "");
}

/* Segment A: the two commits after the big one, then pg_switch_wal(). */
static void test_index_with_switch(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEGA_NAME, wal + SEG), 0);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEGA_NAME, &ix), 0);
    assert_int_equal(ix.commits, 2);
    assert_int_equal(ix.aborts, 0);
    assert_int_equal(ix.first_commit.xid, 3736);
    assert_int_equal(ix.first_commit.time_us, T3736);
    assert_int_equal(ix.last_commit.xid, 3737);
    assert_int_equal(ix.last_commit.lsn, 0xA01868);
    assert_int_equal(ix.last_commit.time_us, T3737);
    assert_int_equal(ix.nrestore_points, 0);
    assert_true(ix.switch_seen);
    assert_int_equal(ix.switch_lsn, 0xA01890);
    assert_false(ix.end_of_wal);
    assert_int_equal(ix.end_lsn, 0xB00000);
    repo_wal_index_free(&ix);
}

/* The partial copy gets its own index, describing exactly the bytes pushed, and a
 * newer partial replaces it. */
static void test_partial_index(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    /* 0x3000 bytes hold commits 725..729 and the restore point. */
    assert_int_equal(push_partial(f, SEG9_NAME, wal, 0x3000), 0);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME ".partial", &ix), 0);
    assert_true(ix.partial);
    assert_int_equal(ix.bytes, 0x3000);
    assert_int_equal(ix.commits, 5);
    assert_int_equal(ix.last_commit.xid, 729);
    assert_int_equal(ix.nrestore_points, 1);
    repo_wal_index_free(&ix);
    /* No complete segment yet: no plain index. */
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), -ERR_NOT_FOUND);
    err_clear();

    assert_int_equal(push_partial(f, SEG9_NAME, wal, 0x20000), 0);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME ".partial", &ix), 0);
    assert_int_equal(ix.bytes, 0x20000);
    assert_int_equal(ix.commits, 9);
    assert_int_equal(ix.aborts, 1);
    assert_int_equal(ix.last_commit.xid, 734);
    repo_wal_index_free(&ix);
}

/* Finding the segment a time target needs, and the newest commit. */
static void test_find_time_and_latest(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(push(f, SEGA_NAME, wal + SEG), 0);

    assert_int_equal(repo_wal_index_find_time(f->r, 1, T725 - 3600000000LL, &ix), 0);
    assert_int_equal(ix.segno, 9);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T734, &ix), 0);
    assert_int_equal(ix.segno, 9); /* inclusive */
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T734 + 1, &ix), 0);
    assert_int_equal(ix.segno, 10);
    assert_false(ix.partial);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T3737 + 1, &ix), -ERR_NOT_FOUND);
    char when[48];
    char *want = NULL;
    time_format_pg(T3737 + 1, when, sizeof(when));
    if (asprintf(&want, "no commit at or after %s on timeline 1 in repository \"local\"", when) < 0)
        fail();
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();
    assert_int_equal(repo_wal_index_find_time(f->r, 2, T725, &ix), -ERR_NOT_FOUND);
    err_clear();

    assert_int_equal(repo_wal_index_latest(f->r, 1, &ix), 0);
    assert_int_equal(ix.segno, 10);
    assert_int_equal(ix.last_commit.xid, 3737);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_latest(f->r, 2, &ix), -ERR_NOT_FOUND);
    err_clear();
}

/* A quiet database whose archive_timeout still switched segments: a run of indexes
 * without a commit after the last one that has some. "latest" walks back past them (read
 * side by side, a batch at a time) to the newest with a commit, not an older one, a
 * time target's search walks forward past them, and a damaged index in the run is passed
 * over as before. */
static void test_latest_past_quiet_segments(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(push(f, SEGA_NAME, wal + SEG), 0);
    uint8_t *text = NULL;
    size_t len = 0;
    assert_int_equal(repo_get_all(f->r, "wal/00000001/" SEGA_NAME ".idx", &text, &len), 0);
    json_t *o = json_loadb((const char *)text, len, 0, NULL);
    assert_non_null(o);
    free(text);
    json_object_set_new(o, "commits", json_integer(0));
    json_object_set_new(o, "aborts", json_integer(0));
    json_object_set_new(o, "first_commit", json_null());
    json_object_set_new(o, "last_commit", json_null());
    json_object_set_new(o, "restore_points", json_array());
    /* 31 quiet ones: the newest read alone, then batches of 8 from 0x28 down; the last
     * batch holds 0x10..0x0B, then 0A and 09, both with commits: 0A must win. */
    for (int seg = 0x0B; seg <= 0x29; seg++) {
        char name[32], path[64];
        snprintf(name, sizeof(name), "0000000100000000000000%02X", seg);
        snprintf(path, sizeof(path), "wal/00000001/%s.idx", name);
        json_object_set_new(o, "segment", json_string(name));
        char *dump = json_dumps(o, JSON_COMPACT);
        if (seg == 0x11)
            dump[5] = '!'; /* damaged: passed over with a warning */
        assert_int_equal(repo_put(f->r, path, dump, strlen(dump)), 0);
        free(dump);
    }
    json_decref(o);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(repo_wal_index_latest(f->r, 1, &ix), 0);
        assert_int_equal(ix.segno, 10);
        assert_int_equal(ix.last_commit.xid, 3737);
        repo_wal_index_free(&ix);
    }
    /* A time target's search probes the quiet run first (its middle lies there) and
     * walks past it in batches to the segments that answer. */
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T734 + 1, &ix), 0);
    assert_int_equal(ix.segno, 10);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T725 - 3600000000LL, &ix), 0);
    assert_int_equal(ix.segno, 9);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T3737 + 1, &ix), -ERR_NOT_FOUND);
    err_clear();
    assert_non_null(strstr(log_text(f), "skipping the time index of 000000010000000000000011"));
}

/* A newer partial after the complete segments counts for "latest" and for targets
 * past the last complete segment. */
static void test_partial_is_newest(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(push_partial(f, SEGA_NAME, wal + SEG, 0x1000), 0); /* no commit yet */
    assert_int_equal(repo_wal_index_latest(f->r, 1, &ix), 0);
    assert_int_equal(ix.segno, 9);
    repo_wal_index_free(&ix);
    assert_int_equal(push_partial(f, SEGA_NAME, wal + SEG, 0x1900), 0);
    assert_int_equal(repo_wal_index_latest(f->r, 1, &ix), 0);
    assert_int_equal(ix.segno, 10);
    assert_true(ix.partial);
    assert_int_equal(ix.last_commit.xid, 3737);
    repo_wal_index_free(&ix);
    assert_int_equal(repo_wal_index_find_time(f->r, 1, T3736, &ix), 0);
    assert_int_equal(ix.segno, 10);
    assert_true(ix.partial);
    repo_wal_index_free(&ix);
}

/* A segment whose records fail their CRC is archived all the same, without an index,
 * and the warning says why. */
static void test_undecodable_segment_is_archived(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    uint8_t *copy = malloc(SEG);
    memcpy(copy, wal, SEG);
    copy[0x26F8 + 28] ^= 0x10; /* inside the commit of xid 727 */
    assert_int_equal(push(f, SEG9_NAME, copy), 0);
    assert_true(object_exists(f, "wal/00000001/" SEG9_NAME));
    assert_false(object_exists(f, "wal/00000001/" SEG9_NAME ".idx"));
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), -ERR_NOT_FOUND);
    err_clear();
    const char *log = log_text(f);
    assert_non_null(strstr(log, "segment " SEG9_NAME " in repository \"local\" does not decode, so "
                                "it has no time index: invalid WAL record at 0/9026F8: checksum "
                                "mismatch"));
    /* What was archived is the bytes given, not something "repaired". */
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(repo_get_all(f->r, "wal/00000001/" SEG9_NAME, &got, &len), 0);
    assert_int_equal(len, SEG);
    assert_memory_equal(got, copy, SEG);
    free(got);
    free(copy);
}

/* Re-pushing an archived segment whose index is missing (a push cut short before it)
 * stores the index; a different segment under that name is still refused. */
static void test_repush_restores_index(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    char path[256];
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    snprintf(path, sizeof(path), "%s/repo/main/wal/00000001/" SEG9_NAME ".idx", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), 0);
    assert_int_equal(ix.commits, 9);
    repo_wal_index_free(&ix);
    assert_int_equal(push(f, SEG9_NAME, wal + SEG), -ERR_EXISTS);
    err_clear();
}

/* A damaged index is an integrity error on its own, and look-ups pass over it. */
static void test_damaged_index(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    char path[256];
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(push(f, SEGA_NAME, wal + SEG), 0);
    snprintf(path, sizeof(path), "%s/repo/main/wal/00000001/" SEGA_NAME ".idx", f->dir);
    FILE *o = fopen(path, "r+b");
    assert_non_null(o);
    assert_int_equal(fseek(o, 40, SEEK_SET), 0);
    int c = fgetc(o);
    assert_int_equal(fseek(o, 40, SEEK_SET), 0);
    fputc(c ^ 0x40, o);
    fclose(o);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEGA_NAME, &ix), -ERR_INTEGRITY);
    char *text = err_format();
    assert_non_null(strstr(text, "wal/00000001/" SEGA_NAME ".idx"));
    assert_non_null(strstr(text, "repository \"local\""));
    free(text);
    err_clear();
    assert_int_equal(repo_wal_index_latest(f->r, 1, &ix), 0);
    assert_int_equal(ix.segno, 9);
    repo_wal_index_free(&ix);
    assert_non_null(strstr(log_text(f), "skipping the time index of " SEGA_NAME));
}

/* Lengths an index object declares are checked before they size memory: the object's
 * length against REPO_WAL_INDEX_MAX, the number of restore points against what the
 * segment can hold. */
static void test_index_limits(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    const char *path = "wal/00000001/" SEG9_NAME ".idx";
    assert_int_equal(push(f, SEG9_NAME, wal), 0);

    struct buf b = BUF_INIT;
    buf_append_str(&b, "{\"format\":1,\"timeline\":1,\"segment\":\"" SEG9_NAME "\",");
    buf_append_str(&b, "\"partial\":false,\"bytes\":1048576,\"records\":1,\"commits\":0,");
    buf_append_str(&b, "\"aborts\":0,\"first_commit\":null,\"last_commit\":null,");
    buf_append_str(&b, "\"restore_points\":[");
    for (int i = 0; i < SEG / 98 + 1; i++)
        buf_append_str(&b, i ? ",{}" : "{}");
    buf_append_str(&b, "],\"switch\":false,\"switch_lsn\":null,\"end_of_wal\":false,");
    buf_append_str(&b, "\"end_lsn\":\"0/A00000\"}");
    assert_int_equal(repo_put(f->r, path, b.data, b.len), 0);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "time index \"wal/00000001/" SEG9_NAME
                                       ".idx\" in repository \"local\" is invalid: field "
                                       "\"restore_points\"");
    err_clear();
    buf_free(&b);

    uint8_t *big = xcalloc(1, REPO_WAL_INDEX_MAX + 1);
    assert_int_equal(repo_put(f->r, path, big, REPO_WAL_INDEX_MAX + 1), 0);
    free(big);
    assert_int_equal(repo_wal_index_get(f->r, 1, SEG9_NAME, &ix), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "object \"main/wal/00000001/" SEG9_NAME
                                       ".idx\" in repository \"local\" holds 16777217 bytes, "
                                       "more than a time index can have (16777216)");
    err_clear();
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct repo_wal_index ix;
    assert_int_equal(push(f, SEG9_NAME, wal), 0);
    assert_int_equal(repo_wal_index_get(f->r, 2, SEG9_NAME, &ix), -ERR_USAGE);
    assert_string_equal(err_message(), "segment \"" SEG9_NAME "\" is not on timeline 2");
    assert_int_equal(repo_wal_index_get(f->r, 1, "00000001000000000000009", &ix), -ERR_USAGE);
    err_clear();
}

/* ---- the segment being filled, prepared copy after copy -------------------------------- */

static void check_ok(int rc, const char *what)
{
    if (rc < 0) {
        char *t = err_format();
        fail_msg("%s: %s", what, t);
    }
}

static struct repo *open_cluster(struct fx *f, const char *cluster, int level, const char *pass)
{
    struct repo_options o = {
        .cluster = cluster,
        .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, level ? "zstd" : "none"),
                   .level = level,
                   .passphrase = pass},
        .kdf_n = 1024};
    struct repo_identity id = {.system_identifier = SYSID, .pg_major = 15, .seg_size = SEG};
    struct repo *r = repo_open(f->s, &o, &id, true);
    assert_non_null(r);
    return r;
}

static void assert_index_equal(const struct repo_wal_index *a, const struct repo_wal_index *b)
{
    assert_int_equal(a->tli, b->tli);
    assert_int_equal(a->segno, b->segno);
    assert_int_equal(a->partial, b->partial);
    assert_int_equal(a->bytes, b->bytes);
    assert_int_equal(a->records, b->records);
    assert_int_equal(a->commits, b->commits);
    assert_int_equal(a->aborts, b->aborts);
    assert_memory_equal(&a->first_commit, &b->first_commit, sizeof(a->first_commit));
    assert_memory_equal(&a->last_commit, &b->last_commit, sizeof(a->last_commit));
    assert_int_equal(a->nrestore_points, b->nrestore_points);
    for (size_t i = 0; i < a->nrestore_points; i++) {
        assert_string_equal(a->restore_points[i].name, b->restore_points[i].name);
        assert_int_equal(a->restore_points[i].lsn, b->restore_points[i].lsn);
        assert_int_equal(a->restore_points[i].time_us, b->restore_points[i].time_us);
    }
    assert_int_equal(a->switch_seen, b->switch_seen);
    assert_int_equal(a->end_of_wal, b->end_of_wal);
    assert_int_equal(a->end_lsn, b->end_lsn);
}

/* One preparer kept across copies of a file that grows in place (as the spool's segment
 * being filled does), at lengths that end mid-record and mid-page, then past a complete
 * segment's worth and on to a new one: after every copy, what a reader gets from the
 * repository is exactly the first len bytes, and the time index is the one a push of
 * those bytes in one piece (repo_wal_push_partial_fd) makes; and so for the complete
 * segment prepared after them. Compressed, uncompressed and encrypted. */
static void grown_copies(struct fx *f, int level, const char *pass)
{
    static const size_t lens[] = {0x10,    0x1001,  0x2345,  0x3000,  0x3000, 0x7ffd,
                                  0x20000, 0x20001, 0x9e000, SEG - 1, SEG};
    struct repo *grown = open_cluster(f, "grown", level, pass);
    struct repo *once = open_cluster(f, "once", level, pass);
    struct repo_identity id = {.system_identifier = SYSID, .pg_major = 15, .seg_size = SEG};
    struct repo_codecs codecs = {.compression =
                                     codec_by_name(CODEC_COMPRESSION, level ? "zstd" : "none"),
                                 .level = level,
                                 .passphrase = pass};
    struct repo_wal_preparer *p = repo_wal_preparer_new(&id, &codecs, f->dir);
    assert_non_null(p);
    int fd = open(f->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    size_t have = 0;
    for (int round = 0; round < 2; round++) {
        const char *name = round == 0 ? SEG9_NAME : SEGA_NAME;
        const uint8_t *seg = wal + (size_t)round * SEG;
        if (round == 1) { /* the next segment: another file, as the spool's */
            close(fd);
            unlink(f->file);
            fd = open(f->file, O_RDWR | O_CREAT | O_TRUNC, 0600);
            assert_true(fd >= 0);
            have = 0;
        }
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            size_t len = lens[i];
            assert_int_equal(pwrite(fd, seg + have, len - have, (off_t)have),
                             (ssize_t)(len - have));
            have = len;
            struct repo_wal_prepared *s = NULL;
            check_ok(repo_wal_prepare(p, name, true, fd, len, &s), "prepare");
            check_ok(repo_wal_push_prepared(grown, s), "push prepared");
            repo_wal_prepared_free(s);
            check_ok(repo_wal_push_partial_fd(once, name, fd, len), "push in one piece");

            char path[96];
            snprintf(path, sizeof(path), "wal/00000001/%s.partial", name);
            uint8_t *data = NULL;
            size_t n = 0;
            check_ok(repo_get_all(grown, path, &data, &n), "read back");
            assert_int_equal(n, len);
            assert_memory_equal(data, seg, len);
            free(data);
            struct repo_wal_index a, b;
            char seg_partial[40];
            snprintf(seg_partial, sizeof(seg_partial), "%s.partial", name);
            check_ok(repo_wal_index_get(grown, 1, seg_partial, &a), "index");
            check_ok(repo_wal_index_get(once, 1, seg_partial, &b), "index in one piece");
            assert_int_equal(a.bytes, len);
            assert_index_equal(&a, &b);
            repo_wal_index_free(&a);
            repo_wal_index_free(&b);
        }
        /* The segment completed (the same file): carried on from its partial copies. */
        struct repo_wal_prepared *s = NULL;
        check_ok(repo_wal_prepare(p, name, false, fd, SEG, &s), "prepare complete");
        check_ok(repo_wal_push_prepared(grown, s), "push complete");
        repo_wal_prepared_free(s);
        check_ok(repo_wal_push_fd(once, name, fd, SEG), "push complete in one piece");
        char path[96];
        snprintf(path, sizeof(path), "wal/00000001/%s", name);
        uint8_t *data = NULL;
        size_t n = 0;
        /* pushed again the ordinary way: the same content, so a no-op, not a refusal */
        check_ok(repo_wal_push_fd(grown, name, fd, SEG), "re-push");
        check_ok(repo_get_all(grown, path, &data, &n), "read back complete");
        assert_int_equal(n, SEG);
        assert_memory_equal(data, seg, SEG);
        free(data);
        struct repo_wal_index a, b;
        check_ok(repo_wal_index_get(grown, 1, name, &a), "index of complete");
        check_ok(repo_wal_index_get(once, 1, name, &b), "index of complete in one piece");
        assert_false(a.partial);
        assert_index_equal(&a, &b);
        repo_wal_index_free(&a);
        repo_wal_index_free(&b);
    }
    close(fd);
    repo_wal_preparer_free(p);
    repo_close(once);
    repo_close(grown);
}

static void test_grown_copies_zstd(void **state)
{
    grown_copies(*state, 3, NULL);
}

static void test_grown_copies_none(void **state)
{
    grown_copies(*state, 0, NULL);
}

static void test_grown_copies_encrypted(void **state)
{
    grown_copies(*state, 1, "grown secret");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_index_of_complete_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_with_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_time_and_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_is_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_segment_is_archived, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repush_restores_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grown_copies_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grown_copies_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grown_copies_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_of_complete_segment, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_index_with_switch, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_partial_index, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_find_time_and_latest, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_latest_past_quiet_segments, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_segment_is_archived, setup_prep, teardown),
        cmocka_unit_test_setup_teardown(test_repush_restores_index, setup_prep, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
