/* test_pgbin.c — which programs restore --start runs (found where the configuration or
 * the usual layouts say, refused when of another major than the backup's) and the state
 * read from a control file of each layout (13 to 17, and 18's). */
#include "pgark/pgbin.h"
#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/mem.h"

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

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/pgark-test-pgbin-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char *cmd = xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A data directory whose global/pg_control has version, state, and its CRC at crc_off. */
static char *pgdata_with_control(const char *name, uint32_t version, uint32_t state, size_t crc_off)
{
    char *pgdata = xasprintf("%s/%s", dir, name);
    char *global = xasprintf("%s/global", pgdata);
    char *path = xasprintf("%s/pg_control", global);
    uint8_t buf[8192] = {0};
    put32(buf, 0x12345678);
    put32(buf + 8, version);
    put32(buf + 12, 202307071);
    put32(buf + 16, state);
    put32(buf + crc_off, crc32c_final(crc32c_update(CRC32C_INIT, buf, crc_off)));
    assert_int_equal(mkdir(pgdata, 0700), 0);
    assert_int_equal(mkdir(global, 0700), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, sizeof(buf), f), sizeof(buf));
    fclose(f);
    free(global);
    free(path);
    return pgdata;
}

static void expect_state(const char *name, uint32_t version, uint32_t state, size_t crc_off,
                         const char *want)
{
    char *pgdata = pgdata_with_control(name, version, state, crc_off);
    char *got = pgbin_control_state(pgdata);
    if (want) {
        assert_non_null(got);
        assert_string_equal(got, want);
    } else {
        assert_null(got);
    }
    free(got);
    free(pgdata);
}

static void test_control_state(void **state)
{
    (void)state;
    expect_state("v13", 1300, 2, 288, "shut down in recovery"); /* 13 to 16 */
    expect_state("v17", 1700, 6, 288, "in production");
    expect_state("v18", 1800, 2, 292, "shut down in recovery"); /* 18 moved the CRC */
    expect_state("v18at288", 1800, 2, 288, NULL);               /* the CRC must check out */
    expect_state("v17at292", 1700, 2, 292, NULL);
    expect_state("v99", 9900, 2, 288, NULL); /* a layout not known */
    expect_state("badstate", 1300, 42, 288, NULL);
    char *none = xasprintf("%s/nothing", dir);
    assert_null(pgbin_control_state(none));
    free(none);
}

/* An executable script dir/name printing line for --version. */
static void fake_program(const char *d, const char *name, const char *line)
{
    char *path = xasprintf("%s/%s", d, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho '%s'\n", line);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
    free(path);
}

static void test_find(void **state)
{
    (void)state;
    char *bin18 = xasprintf("%s/bin18", dir);
    char *empty = xasprintf("%s/empty", dir);
    assert_int_equal(mkdir(bin18, 0700), 0);
    assert_int_equal(mkdir(empty, 0700), 0);
    fake_program(bin18, "pg_ctl", "pg_ctl (PostgreSQL) 18.4");
    fake_program(bin18, "psql", "psql (PostgreSQL) 18.4");

    struct pgbin b;
    assert_int_equal(pgbin_find(bin18, "main", 18, "restore --start", &b), 0);
    char *want = xasprintf("%s/pg_ctl", bin18);
    assert_string_equal(b.pg_ctl, want);
    free(want);
    want = xasprintf("%s/psql", bin18);
    assert_string_equal(b.psql, want);
    free(want);
    assert_int_equal(b.major, 18);
    assert_string_equal(b.version, "18.4");
    pgbin_free(&b);

    /* Another major: refused, naming both. */
    assert_int_equal(pgbin_find(bin18, "main", 17, "restore --start", &b), -ERR_CONFIG);
    char *msg = xasprintf("restore --start would run PostgreSQL 18.4 (\"%s/pg_ctl\") on a backup "
                          "of PostgreSQL 17",
                          bin18);
    assert_string_equal(err_message(), msg);
    free(msg);
    assert_non_null(strstr(err_hint_text(), "set pg_bindir of cluster \"main\""));
    err_clear();
    assert_null(b.pg_ctl);

    assert_int_equal(pgbin_find(empty, "main", 18, "restore --start", &b), -ERR_CONFIG);
    msg = xasprintf("pg_bindir \"%s\" of cluster \"main\" has no pg_ctl", empty);
    assert_string_equal(err_message(), msg);
    free(msg);
    err_clear();

    /* Without pg_bindir, PATH is the last place looked in (no major 99 is installed in
     * the distributions' layouts); psql too, when none is beside pg_ctl. */
    char *bin99 = xasprintf("%s/bin99", dir);
    assert_int_equal(mkdir(bin99, 0700), 0);
    fake_program(bin99, "pg_ctl", "pg_ctl (PostgreSQL) 99.1 (Something 99.1-1)");
    char *saved = xstrdup(getenv("PATH"));
    char *path = xasprintf("%s:%s", empty, bin99);
    setenv("PATH", path, 1);
    assert_int_equal(pgbin_find(NULL, "main", 99, "restore --start", &b), -ERR_CONFIG);
    msg = xasprintf("restore --start --wait needs psql, and there is none beside \"%s/pg_ctl\" or "
                    "in PATH",
                    bin99);
    assert_string_equal(err_message(), msg);
    free(msg);
    err_clear();
    fake_program(empty, "psql", "psql (PostgreSQL) 15.1");
    assert_int_equal(pgbin_find(NULL, "main", 99, "restore --start", &b), 0);
    assert_int_equal(b.major, 99);
    want = xasprintf("%s/psql", empty);
    assert_string_equal(b.psql, want);
    free(want);
    pgbin_free(&b);
    setenv("PATH", empty, 1);
    char *gone = xasprintf("%s/psql", empty);
    unlink(gone);
    free(gone);
    assert_int_equal(pgbin_find(NULL, "main", 99, "restore --start", &b), -ERR_CONFIG);
    assert_string_equal(err_message(), "restore --start needs PostgreSQL 99's pg_ctl, and there "
                                       "is none in /usr/lib/postgresql/99/bin, "
                                       "/usr/pgsql-99/bin or PATH");
    err_clear();
    setenv("PATH", saved, 1);
    free(saved);
    free(path);
    free(bin99);
    free(bin18);
    free(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_state),
        cmocka_unit_test(test_find),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
