/* test_privfs.c — private files and directories: 0600 whatever the umask, and a
 * directory another user owns named with both owners. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgark-test-privfs-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_fopen_w(void **state)
{
    (void)state;
    mode_t old = umask(022);
    char *path = xasprintf("%s/status.json.tmp", tmpdir);

    FILE *f = privfs_fopen_w(path);
    assert_non_null(f);
    assert_int_equal(fputs("{}\n", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(mode_of(path), 0600);

    /* One left with a wider mode is narrowed and truncated. */
    assert_int_equal(chmod(path, 0644), 0);
    f = privfs_fopen_w(path);
    assert_non_null(f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(mode_of(path), 0600);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);

    char *nodir = xasprintf("%s/no/such/dir/x", tmpdir);
    assert_null(privfs_fopen_w(nodir));
    free(nodir);
    free(path);
    umask(old);
}

static void test_check_dir(void **state)
{
    (void)state;
    char *missing = xasprintf("%s/missing", tmpdir);
    char *file = xasprintf("%s/file", tmpdir);
    char *under_file = xasprintf("%s/file/spool", tmpdir);

    err_clear();
    assert_int_equal(privfs_check_dir(tmpdir, "spool directory"), 0);
    assert_int_equal(privfs_check_dir(missing, "spool directory"), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(privfs_check_dir(under_file, "spool directory"), 0);
    assert_int_equal(privfs_check_dir(file, "spool directory"), -ERR_CONFIG);
    char *want = xasprintf("spool directory \"%s\" is not a directory", file);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();

    if (geteuid() != 0) {
        /* /usr is root's. */
        assert_int_equal(privfs_check_dir("/usr", "read-ahead cache directory"), -ERR_CONFIG);
        assert_non_null(strstr(err_message(), "read-ahead cache directory \"/usr\" is owned by "
                                              "uid 0 (root), not by uid "));
        assert_non_null(strstr(err_message(), " that runs pgark"));
        want = xasprintf("chown -R %u \"/usr\"", (unsigned)geteuid());
        assert_non_null(strstr(err_hint_text(), want));
        free(want);
        err_clear();
    }
    free(missing);
    free(file);
    free(under_file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fopen_w),
        cmocka_unit_test(test_check_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
