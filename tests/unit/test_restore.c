/* test_restore.c — recovery targets, the recovery settings text and its quoting, and the
 * choice of a backup for a target and a timeline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/restore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_targets_parse(void **state)
{
    (void)state;
    struct restore_target t = {0};
    assert_int_equal(restore_target_set(&t, "time", "2026-11-25 14:03:27.5+01"), 0);
    assert_int_equal(t.kind, RESTORE_TARGET_TIME);
    /* 13:03:27.5 UTC */
    assert_int_equal(t.time_us, INT64_C(1795611807500000));
    /* A second target is refused. */
    assert_int_equal(restore_target_set(&t, "xid", "1234"), -ERR_USAGE);
    assert_string_equal(err_message(), "only one recovery target may be given "
                                       "(\"--target-xid\" comes after another)");
    err_clear();

    struct restore_target x = {0};
    assert_int_equal(restore_target_set(&x, "xid", "12x"), -ERR_USAGE);
    assert_string_equal(err_message(),
                        "invalid --target-xid \"12x\": expected a transaction id (a decimal "
                        "number >= 3)");
    err_clear();
    assert_int_equal(restore_target_set(&x, "xid", "4294967295"), 0);
    assert_int_equal(x.xid, 4294967295u);

    struct restore_target l = {0};
    assert_int_equal(restore_target_set(&l, "lsn", "0/ZZ"), -ERR_USAGE);
    assert_string_equal(err_message(), "invalid --target-lsn \"0/ZZ\": expected X/X");
    err_clear();
    assert_int_equal(restore_target_set(&l, "lsn", "1/A0"), 0);
    assert_int_equal(l.lsn, UINT64_C(0x1000000A0));

    struct restore_target n = {0};
    assert_int_equal(restore_target_set(&n, "target", "soon"), -ERR_USAGE);
    err_clear();
    assert_int_equal(restore_target_set(&n, "target", "immediate"), 0);
    assert_int_equal(n.kind, RESTORE_TARGET_IMMEDIATE);

    timeline_t tli = 9;
    assert_int_equal(restore_timeline_parse("latest", &tli), 0);
    assert_int_equal(tli, 0);
    assert_int_equal(restore_timeline_parse("0x11", &tli), 0);
    assert_int_equal(tli, 17);
    assert_int_equal(restore_timeline_parse("0", &tli), -ERR_USAGE);
    err_clear();
    enum restore_action a;
    assert_int_equal(restore_action_parse("stop", &a), -ERR_USAGE);
    err_clear();
    restore_target_free(&t);
}

static void test_quoting(void **state)
{
    (void)state;
    char *cmd = restore_command_text("/usr/local/bin/pgark", "/etc/pg ark/it's 100%.yaml", "main");
    /* Shell-quoted, % doubled for the server, the placeholders left as they are. */
    assert_string_equal(cmd, "/usr/local/bin/pgark --config '/etc/pg ark/it'\\''s 100%%.yaml' "
                             "--cluster main wal-fetch \"%f\" \"%p\"");
    struct restore_target t = {0};
    assert_int_equal(restore_target_set(&t, "name", "it's \\ done"), 0);
    t.action = RESTORE_ACTION_PROMOTE;
    char *conf = restore_recovery_conf(&t, cmd);
    assert_string_equal(conf, "\n# Recovery settings written by pgark restore\n"
                              "restore_command = '/usr/local/bin/pgark --config ''/etc/pg ark/"
                              "it''\\\\''''s 100%%.yaml'' --cluster main wal-fetch \"%f\" \"%p\"'\n"
                              "recovery_target_name = 'it''s \\\\ done'\n"
                              "recovery_target_action = 'promote'\n"
                              "recovery_target_timeline = 'latest'\n");
    free(conf);
    restore_target_free(&t);

    struct restore_target x = {0};
    assert_int_equal(restore_target_set(&x, "time", "2026-11-25T14:03:27Z"), 0);
    x.exclusive = true;
    x.timeline = 3;
    conf = restore_recovery_conf(&x, "true");
    assert_non_null(strstr(conf, "recovery_target_time = '2026-11-25 14:03:27.000000+00'\n"
                                 "recovery_target_inclusive = 'off'\n"
                                 "recovery_target_timeline = '3'\n"));
    free(conf);
    free(cmd);
}

static void test_pick(void **state)
{
    (void)state;
    /* Two backups on timeline 1, one on timeline 2 (which left 1 at 0/5000000), one on
     * timeline 3 (a sibling branch that is not an ancestor of 2). */
    struct restore_backup b[] = {
        {"A", 0x1000000, 0x1000100, 1000, 1010, 1},
        {"B", 0x3000000, 0x3000100, 2000, 2010, 1},
        {"C", 0x6000000, 0x6000100, 3000, 3010, 2},
        {"D", 0x7000000, 0x7000100, 3500, 3510, 3},
    };
    struct timeline_entry e[] = {{1, 0x5000000}};
    struct timeline_history h2 = {2, 1, e};
    struct restore_target t = {0};

    /* latest on timeline 2: C */
    assert_int_equal(restore_backup_pick(b, 4, &t, 2, &h2), 2);
    /* a time before C ends (+1 s rule): B; exactly a second after C's stop: C */
    assert_int_equal(restore_target_set(&t, "time", "1970-01-01 00:50:10+00"), 0); /* 3010 */
    assert_int_equal(restore_backup_pick(b, 4, &t, 2, &h2), 1);
    t.kind_set = false;
    assert_int_equal(restore_target_set(&t, "time", "1970-01-01 00:50:11+00"), 0);
    assert_int_equal(restore_backup_pick(b, 4, &t, 2, &h2), 2);
    /* before every backup: none */
    t.kind_set = false;
    assert_int_equal(restore_target_set(&t, "time", "1970-01-01 00:10:00+00"), 0);
    assert_int_equal(restore_backup_pick(b, 4, &t, 2, &h2), -1);
    /* an LSN: the newest whose stop LSN precedes it */
    t.kind_set = false;
    assert_int_equal(restore_target_set(&t, "lsn", "0/3000100"), 0);
    assert_int_equal(restore_backup_pick(b, 4, &t, 2, &h2), 1);
    /* timeline 1 as target: C and D are on other branches */
    struct restore_target latest = {0};
    assert_int_equal(restore_backup_pick(b, 4, &latest, 1, NULL), 1);
    /* a backup on timeline 1 that ended after the switch to 2 does not lead to 2 */
    assert_false(restore_timeline_leads(1, 0x5000001, 2, &h2));
    assert_true(restore_timeline_leads(1, 0x5000000, 2, &h2));
    assert_false(restore_timeline_leads(3, 0x7000100, 2, &h2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets_parse),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
