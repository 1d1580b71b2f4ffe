/* test_ops.c — what src/ops decides without a server: which backups retention keeps
 * (full, window, both), the listing of backups that survives a damaged manifest, and
 * the running markers by which backup and expire see each other: judged by their
 * heartbeat alone, kept fresh by a thread, and the lease that says a writer may still
 * count on being seen alive. */
#include "../../src/ops/ops_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define DAY INT64_C(86400)
#define NOW_S INT64_C(1800000000)
#define NOW_US (NOW_S * 1000000)

/* Backups ending 10, 8, 6, 4, 2 days ago (oldest first), labels a..e. */
static void five(struct retention_backup *b)
{
    static const char *labels[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        b[i] = (struct retention_backup){NOW_S - (10 - 2 * i) * DAY, labels[i], false};
}

static const char *kept(const struct retention_backup *b, size_t n)
{
    static char out[16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].keep)
            out[k++] = b[i].label[0];
    }
    out[k] = '\0';
    return out;
}

static void test_full(void **state)
{
    (void)state;
    struct retention_backup b[5];
    five(b);
    retention_apply(b, 5, 2, 0, NOW_US);
    assert_string_equal(kept(b, 5), "de");
    five(b);
    retention_apply(b, 5, 1, 0, NOW_US);
    assert_string_equal(kept(b, 5), "e");
    five(b);
    retention_apply(b, 5, 9, 0, NOW_US);
    assert_string_equal(kept(b, 5), "abcde");
}

static void test_window(void **state)
{
    (void)state;
    struct retention_backup b[5];
    /* Window 5 days: the cutoff (5 days ago) needs the backup that ended 6 days ago. */
    five(b);
    retention_apply(b, 5, 0, 5 * DAY * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "cde");
    /* A backup ending exactly at the cutoff restores it by itself. */
    five(b);
    retention_apply(b, 5, 0, 6 * DAY * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "cde");
    /* Nothing that old: everything is needed. */
    five(b);
    retention_apply(b, 5, 0, 30 * DAY * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "abcde");
    /* A window shorter than the newest backup's age: the newest alone. */
    five(b);
    retention_apply(b, 5, 0, 3600 * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "e");
}

static void test_both_is_union(void **state)
{
    (void)state;
    struct retention_backup b[5];
    five(b);
    retention_apply(b, 5, 4, 5 * DAY * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "bcde"); /* full keeps more */
    five(b);
    retention_apply(b, 5, 1, 7 * DAY * 1000, NOW_US);
    assert_string_equal(kept(b, 5), "bcde"); /* window keeps more */
}

static void test_order_and_ties(void **state)
{
    (void)state;
    /* Given in any order; equal stop times ordered by label. */
    struct retention_backup b[3] = {
        {NOW_S - DAY, "y", false}, {NOW_S - 3 * DAY, "x", false}, {NOW_S - DAY, "z", false}};
    retention_apply(b, 3, 1, 0, NOW_US);
    assert_false(b[0].keep);
    assert_false(b[1].keep);
    assert_true(b[2].keep);
    retention_apply(b, 3, 0, 0, NOW_US);
    assert_true(b[0].keep && b[1].keep && b[2].keep); /* no rule: keep everything */
    retention_apply(b, 0, 1, 0, NOW_US);              /* nothing: no crash */
}

/* --- a repository on disk ------------------------------------------------------------ */

static char root[PATH_MAX];
static struct storage *st;
static struct repo *repo;

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "%s/pgark-test-ops-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(root));
    st = storage_posix_new("r", root);
    struct repo_options ro = {.cluster = "main"};
    struct repo_identity id = {42, 15, 16 * 1024 * 1024};
    repo = repo_open(st, &ro, &id, true);
    assert_non_null(repo);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    repo_close(repo);
    storage_free(st);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static int put_manifest(const char *label, const char *text)
{
    char path[320];
    snprintf(path, sizeof(path), "backups/%s/manifest.json", label);
    return repo_put(repo, path, text, strlen(text));
}

static const char *HEADER_FMT =
    "{\"format\":1,\"label\":\"%s\",\"start_lsn\":\"0/2000028\",\"stop_lsn\":\"0/2000100\","
    "\"start_time\":\"2026-11-25T18:24:14Z\",\"stop_time\":\"2026-11-25T18:24:20Z\","
    "\"timeline\":1,\"pg_version\":150018,\"system_identifier\":\"42\",\"chunk_size\":65536,"
    "\"tablespaces\":[],\"logical_bytes\":3,\"stored_bytes\":3,\"files\":1,"
    "\"compression\":\"zstd\",\"encrypted\":false}\n"
    "{\"path\":\"PG_VERSION\",\"type\":\"file\",\"mode\":600,\"size\":3,\"mtime\":1,"
    "\"sha256\":\"%064d\",\"chunks\":[\"%064d\"]}\n";

static int count_file(void *arg, const struct manifest_file *f)
{
    (void)f;
    (*(int *)arg)++;
    return 0;
}

static void test_scan_survives_damage(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof(text), HEADER_FMT, "A", 0, 0);
    assert_int_equal(put_manifest("A", text), 0);
    assert_int_equal(put_manifest("B", "{\"format\":1,"), 0); /* cut in its header */
    snprintf(text, sizeof(text), HEADER_FMT, "C", 0, 0);
    text[strlen(text) - 20] = '\0'; /* cut in its file line */
    assert_int_equal(put_manifest("C", text), 0);
    assert_int_equal(repo_put(repo, "backups/D/backup_manifest", "{}", 2), 0); /* died */

    struct ops_backup *list = NULL;
    size_t n = 0;
    assert_int_equal(ops_backup_scan(repo, "main", &list, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(list[0].label, "A");
    assert_true(list[0].complete && list[0].readable);
    assert_int_equal(list[0].b.header.stop_lsn, 0x2000100);
    assert_string_equal(list[1].label, "B");
    assert_true(list[1].complete);
    assert_false(list[1].readable);
    assert_non_null(strstr(list[1].error, "\"B\""));
    assert_true(list[2].complete && list[2].readable); /* its header is whole */
    assert_string_equal(list[3].label, "D");
    assert_false(list[3].complete);
    assert_false(list[3].running);

    int files = 0;
    assert_int_equal(ops_manifest_read(repo, "A", count_file, &files), 0);
    assert_int_equal(files, 1);
    files = 0;
    assert_int_equal(ops_manifest_read(repo, "C", count_file, &files), -ERR_INTEGRITY);
    assert_int_equal(files, 0);
    err_clear();
    ops_backup_scan_free(list, n);
}

/* Headers are read side by side (repo_backup_get_many); each backup still gets its own
 * header, and the listing's error is the first damaged backup in label order, whichever
 * thread met it first. */
static void test_headers_side_by_side(void **state)
{
    (void)state;
    struct repo_options ro = {.cluster = "many"};
    struct repo_identity id = {42, 15, 16 * 1024 * 1024};
    struct repo *r = repo_open(st, &ro, &id, true);
    assert_non_null(r);
    enum { N = 40 };
    char label[N][8], text[2048], path[320];
    for (int i = 0; i < N; i++) {
        snprintf(label[i], sizeof(label[i]), "L%02d", i);
        snprintf(text, sizeof(text), HEADER_FMT, label[i], i, i);
        if (i == 17 || i == 31)
            snprintf(text, sizeof(text), "{\"format\":1,"); /* cut in its header */
        snprintf(path, sizeof(path), "backups/%s/manifest.json", label[i]);
        assert_int_equal(repo_put(r, path, text, strlen(text)), 0);
    }

    struct repo_backup *bl = NULL;
    size_t nbl = 0;
    for (int round = 0; round < 5; round++) {
        assert_int_equal(repo_backup_list(r, &bl, &nbl), -ERR_INTEGRITY);
        char *msg = err_format();
        assert_non_null(strstr(msg, "\"L17\""));
        free(msg);
        err_clear();
        assert_null(bl);
        assert_int_equal(nbl, 0);
    }

    /* The scan keeps going: every backup its own header or its own error. */
    struct ops_backup *list = NULL;
    size_t n = 0;
    assert_int_equal(ops_backup_scan(r, "many", &list, &n), 0);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(list[i].label, label[i]);
        assert_true(list[i].complete);
        if (i == 17 || i == 31) {
            assert_false(list[i].readable);
            assert_non_null(strstr(list[i].error, label[i]));
            assert_null(list[i].b.label);
        } else {
            assert_true(list[i].readable);
            assert_null(list[i].error);
            assert_string_equal(list[i].b.label, label[i]);
            assert_string_equal(list[i].b.header.label, label[i]);
        }
    }
    ops_backup_scan_free(list, n);

    /* Mended, the listing has all of them in order, each with its own header. */
    for (int i = 17; i <= 31; i += 14) {
        snprintf(text, sizeof(text), HEADER_FMT, label[i], i, i);
        snprintf(path, sizeof(path), "backups/%s/manifest.json", label[i]);
        assert_int_equal(repo_put(r, path, text, strlen(text)), 0);
    }
    assert_int_equal(repo_backup_list(r, &bl, &nbl), 0);
    assert_int_equal(nbl, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(bl[i].label, label[i]);
        assert_string_equal(bl[i].header.label, label[i]);
    }
    repo_backup_list_free(bl, nbl);
    repo_close(r);
}

/* The marker's file in the posix repository, its mtime set to t seconds. */
static void set_mtime(const char *rel, int64_t t)
{
    char *path = xasprintf("%s/main/%s", root, rel);
    struct timespec ts[2] = {{(time_t)t, 0}, {(time_t)t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    free(path);
}

/* Plant marker rel with text, written (by the storage's clock) at mtime. */
static void plant_marker(const char *rel, const char *text, int64_t mtime)
{
    assert_int_equal(repo_put(repo, rel, text, strlen(text)), 0);
    set_mtime(rel, mtime);
}

static const struct repo_marker *find_marker(const struct repo_marker *m, size_t n,
                                             const char *label)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].label && strcmp(m[i].label, label) == 0)
            return &m[i];
    fail_msg("no marker \"%s\"", label);
    return NULL;
}

static void test_markers(void **state)
{
    (void)state;
    struct repo_marker *m = NULL;
    size_t n = 0;
    int64_t now_s = time(NULL);

    assert_int_equal(repo_marker_put(repo, "D"), 0);
    assert_int_equal(repo_marker_put(repo, NULL), 0);
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].label, "D"); /* backups' first */
    assert_int_equal(m[0].pid, (long)getpid());
    assert_true(m[0].beat_us / 1000000 >= now_s - 1 && m[0].beat_us / 1000000 <= now_s + 1);
    assert_false(m[0].stale);
    assert_null(m[1].label);
    assert_false(m[1].stale);
    repo_markers_free(m, n);

    /* The scan says a folder with a live marker is being written. */
    struct ops_backup *list = NULL;
    size_t nb = 0;
    assert_int_equal(ops_backup_scan(repo, "main", &list, &nb), 0);
    assert_string_equal(list[nb - 1].label, "D");
    assert_true(list[nb - 1].running);
    ops_backup_scan_free(list, nb);
    /* ...and is not listed as a backup by the repository either. */
    struct repo_backup *bl = NULL;
    size_t nbl = 0;
    assert_int_equal(repo_backup_list(repo, &bl, &nbl), -ERR_INTEGRITY); /* B is damaged */
    err_clear();

    assert_int_equal(repo_marker_remove(repo, NULL), 0);
    assert_int_equal(repo_marker_remove(repo, NULL), 0); /* gone already: fine */
    assert_int_equal(repo_expire_wait(repo, 10), 0);     /* no expire: no wait */
    /* An expire marker not refreshed for 11 minutes does not hold a backup up. */
    char text[512];
    snprintf(text, sizeof(text), "{\"host\":\"h\",\"pid\":1,\"heartbeat_ms\":%lld}",
             (long long)(now_s - 660) * 1000);
    plant_marker("expire.running", text, now_s - 660);
    assert_int_equal(repo_expire_wait(repo, 10), 0);
    assert_int_equal(repo_marker_remove(repo, NULL), 0);

    /* The pid says nothing any more: a marker naming a process that is gone (or one in
     * another PID namespace) is alive while it beats. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    int status;
    waitpid(child, &status, 0);
    char host[256];
    gethostname(host, sizeof(host));
    snprintf(text, sizeof(text), "{\"host\":\"%s\",\"pid\":%ld,\"heartbeat_ms\":%lld}", host,
             (long)child, (long long)now_s * 1000);
    plant_marker("backups/F.running", text, now_s);
    /* Not refreshed for 11 minutes by both witnesses: stale, whatever the pid. */
    snprintf(text, sizeof(text), "{\"host\":\"%s\",\"pid\":%ld,\"heartbeat_ms\":%lld}", host,
             (long)getpid(), (long long)(now_s - 660) * 1000);
    plant_marker("backups/G.running", text, now_s - 660);
    /* One witness young is enough: the writer's clock behind ours (old heartbeat, fresh
     * storage time), or the storage's (old storage time, fresh heartbeat). */
    plant_marker("backups/H.running", text, now_s - 5);
    snprintf(text, sizeof(text), "{\"host\":\"x\",\"pid\":7,\"heartbeat_ms\":%lld}",
             (long long)(now_s - 5) * 1000);
    plant_marker("backups/I.running", text, now_s - 3600);
    /* Written by an earlier pgark (no heartbeat): three days by its storage time. */
    plant_marker("backups/J.running", "{\"host\":\"x\",\"pid\":7}", now_s - 2 * DAY);
    plant_marker("backups/K.running", "{\"host\":\"x\",\"pid\":7}", now_s - 4 * DAY);
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 7); /* D, F..K */
    assert_false(find_marker(m, n, "D")->stale);
    assert_false(find_marker(m, n, "F")->stale);
    const struct repo_marker *g = find_marker(m, n, "G");
    assert_true(g->stale);
    assert_true(g->age_s >= 659 && g->age_s <= 662);
    assert_false(find_marker(m, n, "H")->stale);
    assert_true(find_marker(m, n, "H")->age_s <= 7);
    assert_false(find_marker(m, n, "I")->stale);
    assert_false(find_marker(m, n, "J")->stale);
    assert_true(find_marker(m, n, "K")->stale);
    repo_markers_free(m, n);
    for (const char *l = "FGHIJK"; *l; l++) {
        char label[2] = {*l, 0};
        assert_int_equal(repo_marker_remove(repo, label), 0);
    }
    assert_int_equal(repo_marker_remove(repo, "D"), 0);
    assert_int_equal(repo_marker_remove(repo, "bad/label"), -ERR_USAGE);
    err_clear();
}

/* The rule alone, at a fixed now: the limit, and a heartbeat from the future. */
static void test_marker_judge(void **state)
{
    (void)state;
    struct repo_marker m = {.beat_us = NOW_US - 600 * INT64_C(1000000)};
    repo_marker_judge(&m, NOW_US);
    assert_false(m.stale); /* at the limit: still alive */
    m.beat_us -= 1000000;
    repo_marker_judge(&m, NOW_US);
    assert_true(m.stale);
    assert_int_equal(m.age_s, 601);
    m.mtime_us = NOW_US - 30 * INT64_C(1000000);
    repo_marker_judge(&m, NOW_US);
    assert_false(m.stale);
    assert_int_equal(m.age_s, 30);
    /* The writer's clock an hour ahead: younger than fresh, not stale for an hour. */
    m = (struct repo_marker){.beat_us = NOW_US + 3600 * INT64_C(1000000),
                             .mtime_us = NOW_US - 7200 * INT64_C(1000000)};
    repo_marker_judge(&m, NOW_US);
    assert_false(m.stale);
    assert_int_equal(m.age_s, -3600);
}

static int64_t read_beat(const char *label)
{
    struct repo_marker *m = NULL;
    size_t n = 0;
    int64_t beat = -1;
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (m[i].label && strcmp(m[i].label, label) == 0)
            beat = m[i].beat_us;
    repo_markers_free(m, n);
    return beat;
}

static void test_heartbeat(void **state)
{
    (void)state;
    struct repo *repos[1] = {repo};

    /* A thread rewrites the marker every interval, whatever the caller does. */
    struct repo_heartbeat *hb = repo_heartbeat_start(repos, 1, "L", 20, 0);
    assert_non_null(hb);
    int64_t first = read_beat("L");
    assert_true(first > 0);
    int64_t later = first;
    for (int i = 0; i < 500 && later == first; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        later = read_beat("L");
    }
    assert_true(later > first);
    assert_true(repo_heartbeat_held(hb));
    repo_heartbeat_stop(hb);
    assert_int_equal(read_beat("L"), -1); /* removed */

    /* No beat for longer than the lease (here 1 s, so that "held" right after a beat
     * holds on a loaded machine too; the thread waits an hour): lost, until the caller
     * beats again. */
    hb = repo_heartbeat_start(repos, 1, "M", 3600 * 1000, 1000);
    assert_non_null(hb);
    assert_true(repo_heartbeat_held(hb));
    bool held = true;
    for (int i = 0; i < 3000 && held; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        held = repo_heartbeat_held(hb);
    }
    assert_false(held);
    assert_int_equal(repo_heartbeat_beat(hb, NULL), 0);
    assert_true(repo_heartbeat_held(hb));
    repo_heartbeat_stop(hb);
    assert_int_equal(read_beat("M"), -1);

    /* A label that cannot be a marker: no heartbeat, nothing written. */
    assert_null(repo_heartbeat_start(repos, 1, "bad/label", 0, 0));
    assert_int_equal(err_kind(), ERR_USAGE);
    err_clear();
    repo_heartbeat_stop(NULL);
}

/* A repository that fails does not stop the beat in the others (a backup that lost one
 * repository keeps its markers fresh in the rest), the caller learns which one failed,
 * once dropped it is beaten no more, and the stop tries its marker once. */
static void test_heartbeat_failing_repo(void **state)
{
    (void)state;
    if (geteuid() == 0)
        skip(); /* root writes into a read-only directory */
    char root2[PATH_MAX + 8], dir[PATH_MAX + 32], cmd[PATH_MAX + 32];
    snprintf(root2, sizeof(root2), "%s-bad", root);
    struct storage *st2 = storage_posix_new("bad", root2);
    struct repo_options ro = {.cluster = "main"};
    struct repo_identity id = {42, 15, 16 * 1024 * 1024};
    struct repo *bad = repo_open(st2, &ro, &id, true);
    assert_non_null(bad);
    struct repo *repos[2] = {bad, repo}; /* the failing one first */

    struct repo_heartbeat *hb = repo_heartbeat_start(repos, 2, "D", 3600 * 1000, 0);
    assert_non_null(hb);
    int64_t first = read_beat("D");
    assert_true(first > 0);
    snprintf(dir, sizeof(dir), "%s/main/backups", root2);
    assert_int_equal(chmod(dir, 0500), 0);
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);

    struct repo *failed = NULL;
    assert_true(repo_heartbeat_beat(hb, &failed) < 0);
    assert_ptr_equal(failed, bad);
    assert_non_null(strstr(err_message(), "D"));
    err_clear();
    assert_true(read_beat("D") > first); /* the other one was beaten all the same */
    assert_false(repo_heartbeat_held(hb));

    repo_heartbeat_drop(hb, bad);
    failed = repo;
    assert_int_equal(repo_heartbeat_beat(hb, &failed), 0);
    assert_null(failed);
    assert_true(repo_heartbeat_held(hb));
    repo_heartbeat_stop(hb);
    assert_int_equal(read_beat("D"), -1);
    /* The dropped one's marker was tried once at the stop; it could not go (warned). */
    char marker[PATH_MAX + 64];
    snprintf(marker, sizeof(marker), "%s/D.running", dir);
    assert_int_equal(access(marker, F_OK), 0);

    /* A dropped repository that works again by the stop loses its marker there too
     * (expire would wait for it to go stale otherwise). */
    hb = repo_heartbeat_start(&repo, 1, "E", 3600 * 1000, 0);
    assert_non_null(hb);
    assert_true(read_beat("E") > 0);
    repo_heartbeat_drop(hb, repo);
    repo_heartbeat_stop(hb);
    assert_int_equal(read_beat("E"), -1);

    assert_int_equal(chmod(dir, 0700), 0);
    repo_close(bad);
    storage_free(st2);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root2);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_both_is_union),
        cmocka_unit_test(test_order_and_ties),
        cmocka_unit_test_setup_teardown(test_scan_survives_damage, NULL, NULL),
        cmocka_unit_test(test_headers_side_by_side),
        cmocka_unit_test(test_markers),
        cmocka_unit_test(test_marker_judge),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_heartbeat_failing_repo),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
