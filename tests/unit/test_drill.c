/* test_drill.c — what `pgark drill` decides without a server: how a checks file is split
 * into statements (quotes, comments, dollar quotes, \c), what it refuses and where, how
 * a check is shown in a message, and the receiver's newest commit read from a
 * status.json of any vintage. */
#include "../../src/ops/drill_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pgbin.h"

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

static void test_split(void **state)
{
    (void)state;
    struct drill_sql *s = NULL;
    size_t n = 0;
    const char *text = "-- rows up to the target\n"
                       "SELECT count(*) = 3 FROM t;  -- trailing note\n"
                       "SELECT 'a;b' = E'a;\\'b' OR \"we;ird\" IS NULL\n"
                       "  FROM x;\n"
                       "/* block /* nested; */ still; */ SELECT $f$ ; $f$ <> $$;$$;\n"
                       "\\c other\n"
                       "SELECT true\n";
    assert_int_equal(drill_sql_parse(text, "checks.sql", "postgres", &s, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(s[0].text, "SELECT count(*) = 3 FROM t");
    assert_int_equal(s[0].line, 2);
    assert_string_equal(s[0].database, "postgres");
    assert_string_equal(s[1].text, "SELECT 'a;b' = E'a;\\'b' OR \"we;ird\" IS NULL\n  FROM x");
    assert_int_equal(s[1].line, 3);
    assert_string_equal(s[2].text, "SELECT $f$ ; $f$ <> $$;$$");
    assert_int_equal(s[2].line, 5);
    assert_string_equal(s[3].text, "SELECT true");
    assert_string_equal(s[3].database, "other");
    assert_int_equal(s[3].line, 7);
    drill_sql_free(s, n);

    /* "\connect" and a quoted name; a ';' alone is no statement */
    assert_int_equal(
        drill_sql_parse(";\n\\connect \"my db\"\nSELECT 1 = 1;;\n", "f", "postgres", &s, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(s[0].database, "my db");
    drill_sql_free(s, n);
}

static void expect_refused(const char *text, const char *message)
{
    struct drill_sql *s = (struct drill_sql *)1;
    size_t n = 99;
    assert_int_equal(drill_sql_parse(text, "checks.sql", "postgres", &s, &n), -ERR_USAGE);
    assert_string_equal(err_message(), message);
    assert_null(s);
    assert_int_equal(n, 0);
    err_clear();
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("SELECT 1;\nSELECT 'open\n;\n",
                   "checks.sql:2: a quoted string ('...') is not closed");
    expect_refused("SELECT \"x;\n", "checks.sql:1: a quoted name (\"...\") is not closed");
    expect_refused("\n\nSELECT $body$ x;\n",
                   "checks.sql:3: a dollar-quoted string ($body$...$body$) "
                   "is not closed");
    expect_refused("SELECT 1; /* /* */\n", "checks.sql:1: a comment (/* ... */) is not closed");
    expect_refused("-- nothing but a comment\n\n", "checks.sql holds no SQL statement");
    expect_refused("SELECT 1;\n\\set x 1\n", "checks.sql:2: only \\c DATABASE (or \\connect) is "
                                             "understood, not \"\\set\"");
    expect_refused("SELECT 1\n\\c other\nSELECT 2;\n",
                   "checks.sql:2: \\c inside a statement (the one from line 1 has no ';' yet)");
    expect_refused("\\c   \n", "checks.sql:1: \\c needs a database name");
}

static void test_shown(void **state)
{
    (void)state;
    char *s = drill_sql_shown("SELECT count(*)\n\t  = 3\n FROM t");
    assert_string_equal(s, "SELECT count(*) = 3 FROM t");
    free(s);
    char *long_text = xmalloc(400);
    memset(long_text, 'x', 399);
    long_text[399] = '\0';
    s = drill_sql_shown(long_text);
    assert_int_equal(strlen(s), 103);
    assert_string_equal(s + 100, "...");
    free(s);
    free(long_text);
}

/* The sample checks file the project ships (run from the tree's root, as prove does). */
static void test_sample_file(void **state)
{
    (void)state;
    FILE *f = fopen("conf/drill-checks.sql", "r");
    if (!f)
        skip();
    char text[8192];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    struct drill_sql *s = NULL;
    size_t n = 0;
    assert_int_equal(drill_sql_parse(text, "conf/drill-checks.sql", "postgres", &s, &n), 0);
    assert_int_equal(n, 7);
    assert_string_equal(s[0].text, "SELECT NOT pg_is_in_recovery()");
    assert_string_equal(s[0].database, "postgres");
    assert_string_equal(s[2].database, "app");
    assert_string_equal(s[6].database, "app");
    drill_sql_free(s, n);
}

#define NOW (INT64_C(1800000000) * 1000000)

static void test_status_newest_commit(void **state)
{
    (void)state;
    int64_t us = 0;
    /* A receiver that keeps the newest commit (and fields this reader does not know). */
    const char *fresh = "{\"updated\": \"2027-01-15 08:00:00+00\", \"pid\": 1,"
                        " \"newest_commit\": \"2027-01-15 07:59:58.5+00\","
                        " \"rpo\": {\"local\": {\"seconds\": 0.5}, \"future\": [1, 2]}}";
    assert_int_equal(drill_status_newest_commit(fresh, NOW, 15 * INT64_C(1000000), &us), 1);
    assert_true(us == NOW - 1500000);
    /* Stale: the receiver is not running. */
    assert_int_equal(
        drill_status_newest_commit(fresh, NOW + 16 * INT64_C(1000000), 15 * INT64_C(1000000), &us),
        0);
    /* A receiver that does not say (an older one), a null, garbage. */
    assert_int_equal(drill_status_newest_commit("{\"updated\": \"2027-01-15 08:00:00+00\"}", NOW,
                                                15 * INT64_C(1000000), &us),
                     0);
    assert_int_equal(drill_status_newest_commit("{\"updated\": \"2027-01-15 08:00:00+00\", "
                                                "\"newest_commit\": null}",
                                                NOW, 15 * INT64_C(1000000), &us),
                     0);
    assert_int_equal(drill_status_newest_commit("not json", NOW, 1, &us), 0);
    assert_false(err_is_set());
}

/* The programs a drill runs are found as restore's are, and refused in its own words. */
static void test_pgbin_words(void **state)
{
    (void)state;
    char dir[] = "/tmp/pgark-test-drill-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *prog = xasprintf("%s/pg_ctl", dir);
    FILE *f = fopen(prog, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho 'pg_ctl (PostgreSQL) 16.3'\n");
    fclose(f);
    assert_int_equal(chmod(prog, 0755), 0);
    struct pgbin b;
    assert_int_equal(pgbin_find(dir, "main", 15, "drill", &b), -ERR_CONFIG);
    char *want =
        xasprintf("drill would run PostgreSQL 16.3 (\"%s\") on a backup of PostgreSQL 15", prog);
    assert_string_equal(err_message(), want);
    assert_string_equal(err_hint_text(), "set pg_bindir of cluster \"main\" to the bin directory "
                                         "of PostgreSQL 15; nothing was written");
    err_clear();
    unlink(prog);
    rmdir(dir);
    free(want);
    free(prog);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_shown),
        cmocka_unit_test(test_sample_file),
        cmocka_unit_test(test_status_newest_commit),
        cmocka_unit_test(test_pgbin_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
