/* test_procenv.c — the environment of the servers pgark starts: only allowed names,
 * never a secret nor a variable the configuration read, and the overrides last. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/pgbin.h"
#include "pgark/mem.h"
#include "pgark/procenv.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t count(char **env)
{
    size_t n = 0;
    while (env[n])
        n++;
    return n;
}

static void test_allow_list(void **state)
{
    (void)state;
    char *from[] = {"PATH=/usr/bin:/bin",
                    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI",
                    "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
                    "HOME=/var/lib/postgresql",
                    "PGARK_PASSPHRASE=correct horse",
                    "PGPASSWORD=hunter2",
                    "LC_TIME=C.UTF-8",
                    "LC_MY_TOKEN=not-a-locale", /* a pattern LC_* would let it in */
                    "LANG=en_US.UTF-8",
                    "MY_DB_SECRET=from-the-config",
                    "TZ=UTC",
                    "LD_PRELOAD=/tmp/evil.so",
                    "PATHX=/nope",
                    "NOEQUALSIGN",
                    "LC_ALL=de_DE.UTF-8",
                    NULL};
    const char *drop[] = {"MY_DB_SECRET", "HOME", NULL};
    const char *set[] = {"LC_ALL=C", NULL};
    char **env = procenv_clean(from, drop, set);

    static const char *const want[] = {"PATH=/usr/bin:/bin", "LC_TIME=C.UTF-8", "LANG=en_US.UTF-8",
                                       "TZ=UTC", "LC_ALL=C"};
    assert_int_equal(count(env), sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(env[i], want[i]);
    assert_string_equal(procenv_get(env, "LC_ALL"), "C");
    assert_null(procenv_get(env, "HOME"));
    assert_null(procenv_get(env, "LC_TIM"));
    procenv_free(env);

    /* Without drop and set, an allowed name comes through. */
    env = procenv_clean(from, NULL, NULL);
    assert_string_equal(procenv_get(env, "HOME"), "/var/lib/postgresql");
    assert_string_equal(procenv_get(env, "LC_ALL"), "de_DE.UTF-8");
    assert_null(procenv_get(env, "MY_DB_SECRET"));
    assert_null(procenv_get(env, "AWS_ACCESS_KEY_ID"));
    procenv_free(env);

    /* Nothing in, nothing out. */
    env = procenv_clean(NULL, NULL, NULL);
    assert_non_null(env);
    assert_null(env[0]);
    procenv_free(env);
    procenv_free(NULL);
}

/* What restore --start hands pg_ctl, from this process's real environment. */
static void test_server_environ(void **state)
{
    (void)state;
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", 1);
    setenv("AWS_SESSION_TOKEN", "session-token", 1);
    setenv("PGARK_PASSPHRASE", "correct horse battery staple", 1);
    setenv("PGARK_CONFIG", "/etc/pgark/pgark.yaml", 1);
    setenv("TZ", "Europe/Paris", 1);
    setenv("LANG", "fr_FR.UTF-8", 1); /* read through ${LANG} below: dropped */
    setenv("LC_ALL", "fr_FR.UTF-8", 1);
    const char *drop[] = {"LANG", NULL};
    char **env = pgbin_server_environ(drop);

    for (char **e = env; *e; e++) {
        assert_true(strncmp(*e, "AWS_", 4) != 0);
        assert_true(strncmp(*e, "PGARK_", 6) != 0);
    }
    assert_string_equal(procenv_get(env, "TZ"), "Europe/Paris");
    assert_null(procenv_get(env, "LANG"));
    assert_string_equal(procenv_get(env, "LC_ALL"), "C");
    if (getenv("PATH"))
        assert_string_equal(procenv_get(env, "PATH"), getenv("PATH"));
    procenv_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_server_environ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
