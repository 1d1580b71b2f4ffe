/* test_ops.c — what src/ops decides without a server: which backups retention keeps
 * (full, window, both), the listing of backups that survives a damaged manifest, and
 * the running markers by which backup and expire see each other. */
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

static void test_markers(void **state)
{
    (void)state;
    struct repo_marker *m = NULL;
    size_t n = 0;

    assert_int_equal(repo_marker_put(repo, "D"), 0);
    assert_int_equal(repo_marker_put(repo, NULL), 0);
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].label, "D"); /* backups' first */
    assert_int_equal(m[0].pid, (long)getpid());
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
    assert_int_equal(repo_marker_remove(repo, NULL), 0);   /* gone already: fine */
    assert_int_equal(repo_backup_begin(repo, "E", 10), 0); /* no expire: no wait */
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(m[1].label, "E");
    repo_markers_free(m, n);

    /* A marker of a process that is gone is stale. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    int status;
    waitpid(child, &status, 0);
    char host[256];
    gethostname(host, sizeof(host));
    char text[512];
    snprintf(text, sizeof(text), "{\"host\":\"%s\",\"pid\":%ld}", host, (long)child);
    assert_int_equal(repo_put(repo, "backups/F.running", text, strlen(text)), 0);
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(m[2].label, "F");
    assert_true(m[2].stale);
    assert_false(m[1].stale);
    repo_markers_free(m, n);

    /* A pid that is no pid_t (here: 2^32 + a pid that is gone) is no pid at all: the
     * marker is judged by its age, and kill() is not asked about another number. */
    snprintf(text, sizeof(text), "{\"host\":\"%s\",\"pid\":%lld}", host,
             (long long)child + (1LL << 32));
    assert_int_equal(repo_put(repo, "backups/F.running", text, strlen(text)), 0);
    assert_int_equal(repo_markers_list(repo, &m, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(m[2].pid, 0);
    assert_false(m[2].stale);
    repo_markers_free(m, n);
    assert_int_equal(repo_marker_remove(repo, "bad/label"), -ERR_USAGE);
    err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_both_is_union),
        cmocka_unit_test(test_order_and_ties),
        cmocka_unit_test_setup_teardown(test_scan_survives_damage, NULL, NULL),
        cmocka_unit_test(test_markers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
