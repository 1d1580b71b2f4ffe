/*
 * test_pg.c — the server-free parts of src/pg: password masking, message cleaning,
 * failure classification and parsing of replication answers. The live-server half
 * is tests/t/001_pg_connect.pl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/pg/pg_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/pg.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t count(char **list)
{
    size_t n = 0;

    while (list[n])
        n++;
    return n;
}

static bool has(char **list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static void test_secrets_keyword(void **state)
{
    (void)state;
    char **s = pg_int_conninfo_secrets("host=db user=bob password=hunter2 port=5432");

    assert_int_equal(count(s), 1);
    assert_string_equal(s[0], "hunter2");
    pg_int_secrets_free(s);

    s = pg_int_conninfo_secrets("password = 'it\\'s secret' host=db");
    assert_true(has(s, "it\\'s secret"));
    assert_true(has(s, "it's secret"));
    pg_int_secrets_free(s);

    /* Other keywords that merely contain the word are not passwords. */
    s = pg_int_conninfo_secrets("host=db passwordx=a xpassword=b passfile=/p");
    assert_int_equal(count(s), 0);
    pg_int_secrets_free(s);

    s = pg_int_conninfo_secrets(NULL);
    assert_int_equal(count(s), 0);
    pg_int_secrets_free(s);
}

static void test_secrets_uri(void **state)
{
    (void)state;
    char **s = pg_int_conninfo_secrets("postgresql://bob:p%40ss@db.example:5432/x");

    assert_true(has(s, "p%40ss"));
    assert_true(has(s, "p@ss"));
    pg_int_secrets_free(s);

    s = pg_int_conninfo_secrets("postgres://bob@db/x?sslmode=require&password=q1w2&a=b");
    assert_int_equal(count(s), 1);
    assert_string_equal(s[0], "q1w2");
    pg_int_secrets_free(s);

    s = pg_int_conninfo_secrets("postgresql://bob@db:5432/x");
    assert_int_equal(count(s), 0);
    pg_int_secrets_free(s);
}

static void test_clean_message(void **state)
{
    (void)state;
    char *m = pg_int_clean_message(
        "connection to server on socket \"/tmp/.s.PGSQL.1\" failed: No such file or "
        "directory\n\tIs the server running locally and accepting connections on that "
        "socket?\n",
        NULL);

    assert_string_equal(m, "connection to server on socket \"/tmp/.s.PGSQL.1\" failed: No "
                           "such file or directory; Is the server running locally and "
                           "accepting connections on that socket?");
    free(m);

    m = pg_int_clean_message("FATAL:  password authentication failed for user \"bob\"\n", NULL);
    assert_string_equal(m, "FATAL: password authentication failed for user \"bob\"");
    free(m);

    m = pg_int_clean_message("\n \n", NULL);
    assert_string_equal(m, "unknown error");
    free(m);
}

static void test_clean_message_masks(void **state)
{
    (void)state;
    char *secrets[] = {"pw", "pwlong", NULL};
    char *m = pg_int_clean_message("missing \"=\" after \"pwlong\" near pw", secrets);

    /* The longer secret is masked whole, not left as "********long". */
    assert_string_equal(m, "missing \"=\" after \"********\" near ********");
    free(m);

    char **s = pg_int_conninfo_secrets("postgresql://u:s%4@h/x");
    m = pg_int_clean_message("invalid percent-encoded token: \"s%4\"", s);
    assert_null(strstr(m, "s%4"));
    free(m);
    pg_int_secrets_free(s);
}

/* pg_int_clean_message(msg, secrets) in a child that has 10 s: a masking that never
 * ends (it once rewrote its own "********" forever) fails the test instead of hanging
 * it. Returns the child's result (caller frees); fails when the child did not finish. */
static char *clean_in_child(const char *msg, char *const *secrets)
{
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(10);
        char *m = pg_int_clean_message(msg, secrets);
        size_t len = strlen(m), off = 0;

        while (off < len) {
            ssize_t w = write(fds[1], m + off, len - off);
            if (w <= 0)
                _exit(1);
            off += (size_t)w;
        }
        free(m);
        _exit(0);
    }
    close(fds[1]);

    struct buf b = BUF_INIT;
    char chunk[512];
    ssize_t n;
    int wstatus;

    while ((n = read(fds[0], chunk, sizeof(chunk))) > 0)
        buf_append(&b, chunk, (size_t)n);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    if (WIFSIGNALED(wstatus))
        fail_msg("masking \"%s\" did not finish: killed by signal %d (%s)", msg, WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    assert_true(WIFEXITED(wstatus));
    assert_int_equal(WEXITSTATUS(wstatus), 0);
    buf_append(&b, "", 0);
    return buf_steal(&b);
}

/* Secrets that are, or overlap, the mask itself; an empty one; several occurrences. */
static void test_clean_message_mask_chars(void **state)
{
    (void)state;
    static const struct {
        const char *secrets[3];
        const char *msg, *want;
    } cases[] = {
        /* password=* and a host with a '*' in it */
        {{"*", NULL},
         "could not translate host name \"db*1\" to address: Name or service not known",
         "could not translate host name \"db********1\" to address: Name or service not known"},
        /* each occurrence, and a run of them (overlapping ones too) as one mask */
        {{"**", NULL}, "a ** b *** c **** d * e", "a ******** b ******** c ******** d * e"},
        {{"********", NULL}, "x ******** y", "x ******** y"},
        {{"*", "p*w"}, "p*w and *, p*w", "******** and ********, ********"},
        /* overlapping secrets: neither leaves a part of itself readable */
        {{"abc", "bcdef"}, "xabcdefy", "x********y"},
        /* an empty password hides nothing */
        {{"", NULL}, "password authentication failed", "password authentication failed"},
        {{"", "s3cr3t"}, "s3cr3t s3cr3ts3cr3t", "******** ********"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *m = clean_in_child(cases[i].msg, (char *const *)cases[i].secrets);

        assert_string_equal(m, cases[i].want);
        free(m);
    }

    /* As found in a conninfo: "password=*" with a host that contains '*'. */
    char **s = pg_int_conninfo_secrets("host=db*1 user=bob password=*");
    assert_int_equal(count(s), 1);
    char *m = clean_in_child("could not translate host name \"db*1\" to address", s);
    assert_string_equal(m, "could not translate host name \"db********1\" to address");
    free(m);
    pg_int_secrets_free(s);

    /* An empty quoted password is no secret; the message comes through whole. */
    s = pg_int_conninfo_secrets("host=db password='' user=bob");
    assert_int_equal(count(s), 0);
    m = clean_in_child("fe_sendauth: no password supplied", s);
    assert_string_equal(m, "fe_sendauth: no password supplied");
    free(m);
    pg_int_secrets_free(s);
}

static void test_connect_error_kind(void **state)
{
    (void)state;
    assert_int_equal(
        pg_int_connect_error_kind("connection to server on socket \"/tmp/.s.PGSQL.1\" failed: "
                                  "No such file or directory",
                                  false),
        ERR_CONNECT);
    assert_int_equal(pg_int_connect_error_kind("connection to server at \"127.0.0.1\", port 1 "
                                               "failed: Connection refused",
                                               false),
                     ERR_CONNECT);
    assert_int_equal(
        pg_int_connect_error_kind("connection to server at \"127.0.0.1\", port 5432 failed: "
                                  "FATAL:  password authentication failed for user \"bob\"",
                                  false),
        ERR_AUTH);
    assert_int_equal(pg_int_connect_error_kind("FATAL:  must be superuser or replication role "
                                               "to start walsender",
                                               false),
                     ERR_AUTH);
    assert_int_equal(pg_int_connect_error_kind("FATAL:  no pg_hba.conf entry for replication "
                                               "connection from host \"[local]\"",
                                               false),
                     ERR_AUTH);
    assert_int_equal(pg_int_connect_error_kind("fe_sendauth: no password supplied", true),
                     ERR_AUTH);
    assert_int_equal(pg_int_connect_error_kind("FATAL:  the database system is starting up", false),
                     ERR_TRANSIENT);
    assert_int_equal(pg_int_connect_error_kind("FATAL:  sorry, too many clients already", false),
                     ERR_TRANSIENT);
    assert_int_equal(pg_int_connect_error_kind(NULL, false), ERR_CONNECT);
}

static void test_sqlstate_kind(void **state)
{
    (void)state;
    assert_int_equal(pg_int_sqlstate_kind("42710", true), ERR_EXISTS);
    assert_int_equal(pg_int_sqlstate_kind("42704", true), ERR_NOT_FOUND);
    assert_int_equal(pg_int_sqlstate_kind("42501", true), ERR_AUTH);
    assert_int_equal(pg_int_sqlstate_kind("28P01", true), ERR_AUTH);
    assert_int_equal(pg_int_sqlstate_kind("08006", true), ERR_CONNECT);
    assert_int_equal(pg_int_sqlstate_kind("57P01", true), ERR_TRANSIENT);
    assert_int_equal(pg_int_sqlstate_kind("42601", true), ERR_RUNTIME);
    assert_int_equal(pg_int_sqlstate_kind(NULL, true), ERR_RUNTIME);
    /* A dead connection wins over whatever SQLSTATE the last message had. */
    assert_int_equal(pg_int_sqlstate_kind("42601", false), ERR_CONNECT);
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;

    assert_int_equal(pg_int_parse_u64("systemid", "7441234567890123456", &v), 0);
    assert_true(v == 7441234567890123456ULL);
    assert_int_equal(pg_int_parse_u64("systemid", "18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);

    v = 7;
    assert_int_equal(pg_int_parse_u64("systemid", "18446744073709551616", &v), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "server sent an invalid systemid \"18446744073709551616\"");
    assert_true(v == 7);
    assert_int_equal(pg_int_parse_u64("systemid", "-1", &v), -ERR_PROTOCOL);
    assert_int_equal(pg_int_parse_u64("systemid", "12a", &v), -ERR_PROTOCOL);
    assert_int_equal(pg_int_parse_u64("systemid", " 12", &v), -ERR_PROTOCOL);
    assert_int_equal(pg_int_parse_u64("systemid", "", &v), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "server sent an empty systemid");
    assert_int_equal(pg_int_parse_u64("systemid", NULL, &v), -ERR_PROTOCOL);
    err_clear();
}

static void test_parse_tli(void **state)
{
    (void)state;
    timeline_t t = 0;

    assert_int_equal(pg_int_parse_tli("timeline", "1", &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(pg_int_parse_tli("timeline", "4294967295", &t), 0);
    assert_int_equal(t, UINT32_MAX);
    assert_int_equal(pg_int_parse_tli("timeline", "0", &t), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "server sent an invalid timeline \"0\"");
    assert_int_equal(pg_int_parse_tli("timeline", "4294967296", &t), -ERR_PROTOCOL);
    err_clear();
}

static void test_parse_lsn(void **state)
{
    (void)state;
    lsn_t l = 1;

    assert_int_equal(pg_int_parse_lsn("xlogpos", "0/0", &l), 0);
    assert_true(l == 0);
    assert_int_equal(pg_int_parse_lsn("xlogpos", "16/B374D848", &l), 0);
    assert_true(l == 0x16B374D848ULL);
    assert_int_equal(pg_int_parse_lsn("xlogpos", "ffffffff/FFFFFFFF", &l), 0);
    assert_true(l == UINT64_MAX);

    static const char *const bad[] = {"",     "0",    "1/",   "/1",   "123456789/0", "0/1x",
                                      "0/1 ", " 0/1", "0/-1", "0//1", "g/0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l = 5;
        assert_int_equal(pg_int_parse_lsn("xlogpos", bad[i], &l), -ERR_PROTOCOL);
        assert_true(l == 5);
    }
    assert_string_equal(err_message(), "server sent an invalid xlogpos \"g/0\"");
    err_clear();
}

static void test_parse_seg_size(void **state)
{
    (void)state;
    uint64_t v = 0;

    assert_int_equal(pg_int_parse_seg_size("16MB", &v), 0);
    assert_true(v == 16777216);
    assert_int_equal(pg_int_parse_seg_size("1MB", &v), 0);
    assert_true(v == 1048576);
    assert_int_equal(pg_int_parse_seg_size("1GB", &v), 0);
    assert_true(v == 1073741824);
    assert_int_equal(pg_int_parse_seg_size("1024kB", &v), 0);
    assert_true(v == 1048576);
    assert_int_equal(pg_int_parse_seg_size("64MB", &v), 0);
    assert_true(v == 67108864);

    static const char *const bad[] = {"",     "MB",    "16",    "16 MB",
                                      "16mb", "3MB",   "512kB", "2GB",
                                      "1TB",  "-16MB", "16MBx", "99999999999999999999MB"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 9;
        assert_int_equal(pg_int_parse_seg_size(bad[i], &v), -ERR_PROTOCOL);
        assert_true(v == 9);
    }
    assert_int_equal(pg_int_parse_seg_size("3MB", &v), -ERR_PROTOCOL);
    assert_string_equal(err_message(), "server sent an invalid wal_segment_size \"3MB\"");
    err_clear();
}

/* Which conninfos reach their server over TCP, and with which sslmode. */
static void test_transport_judgement(void **state)
{
    (void)state;
    static const struct {
        const char *host, *hostaddr, *sslmode;
        bool tcp;
        const char *shown;
    } cases[] = {
        {NULL, NULL, NULL, false, ""},                  /* the default socket */
        {"", NULL, NULL, false, ""},                    /* likewise */
        {"/var/run/postgresql", NULL, NULL, false, ""}, /* a socket directory */
        {"@abstract", NULL, NULL, false, ""},           /* an abstract socket */
        {"db.example", NULL, NULL, true, "db.example"}, /* a host name */
        {"localhost", NULL, NULL, true, "localhost"},   /* loopback is TCP too */
        {"127.0.0.1", NULL, NULL, true, "127.0.0.1"},   /* an address */
        {NULL, "10.0.0.5", NULL, true, "10.0.0.5"},     /* hostaddr alone */
        {"/tmp", "10.0.0.5", NULL, true, "/tmp"},       /* hostaddr wins */
        {"/tmp,db2", NULL, NULL, true, "db2"},          /* any TCP host counts */
        {"/tmp,/run", NULL, NULL, false, ""},           /* all sockets */
        {"a,,", ",,10.1.1.1", NULL, true, "a"},         /* first one named */
        {",/tmp", "10.1.1.1,", NULL, true, "10.1.1.1"}, /* no host name: address */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pg_transport t;

        pg_int_transport(cases[i].host, cases[i].hostaddr, cases[i].sslmode, "prefer", &t);
        if (t.tcp != cases[i].tcp || strcmp(t.host, cases[i].shown) != 0)
            fail_msg("case %zu: host \"%s\" hostaddr \"%s\": tcp %d host \"%s\"", i + 1,
                     cases[i].host ? cases[i].host : "(null)",
                     cases[i].hostaddr ? cases[i].hostaddr : "(null)", t.tcp, t.host);
        assert_string_equal(t.sslmode, "prefer");
        assert_false(t.sslmode_set);
    }

    struct pg_transport t;
    pg_int_transport("db", NULL, "verify-full", "prefer", &t);
    assert_string_equal(t.sslmode, "verify-full");
    assert_true(t.sslmode_set);
    pg_int_transport("db", NULL, NULL, NULL, &t);
    assert_string_equal(t.sslmode, "prefer");

    assert_true(pg_sslmode_authenticates("verify-full"));
    static const char *const weak[] = {"disable",   "allow", "prefer",     "require",
                                       "verify-ca", "",      "VERIFY-FULL"};
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++)
        assert_false(pg_sslmode_authenticates(weak[i]));
    assert_false(pg_sslmode_authenticates(NULL));
}

/* Through libpq's parser and its defaults: the conninfo first, then PGHOST, PGHOSTADDR
 * and PGSSLMODE. */
static void test_conninfo_transport(void **state)
{
    (void)state;
    struct pg_transport t;

    unsetenv("PGHOST");
    unsetenv("PGHOSTADDR");
    unsetenv("PGSSLMODE");
    unsetenv("PGSERVICE");
    assert_int_equal(pg_conninfo_transport("host=/var/run/postgresql port=5432", &t), 0);
    assert_false(t.tcp);
    assert_int_equal(pg_conninfo_transport("", &t), 0);
    assert_false(t.tcp);
    assert_int_equal(pg_conninfo_transport("mydb", &t), 0); /* a database name */
    assert_false(t.tcp);
    assert_int_equal(pg_conninfo_transport("host=db.example user=u", &t), 0);
    assert_true(t.tcp);
    assert_string_equal(t.host, "db.example");
    assert_string_equal(t.sslmode, "prefer");
    assert_false(t.sslmode_set);
    assert_int_equal(pg_conninfo_transport("host = db.example sslmode = 'verify-full'", &t), 0);
    assert_string_equal(t.sslmode, "verify-full");
    assert_true(t.sslmode_set);
    assert_int_equal(pg_conninfo_transport("postgresql://u@db.example:5433/x?sslmode=require", &t),
                     0);
    assert_true(t.tcp);
    assert_string_equal(t.host, "db.example");
    assert_string_equal(t.sslmode, "require");
    assert_int_equal(pg_conninfo_transport("postgresql://%2Fvar%2Frun%2Fpostgresql/x", &t), 0);
    assert_false(t.tcp);

    /* The environment fills what the conninfo leaves unset, and only that. */
    setenv("PGHOST", "env-db.example", 1);
    setenv("PGSSLMODE", "verify-ca", 1);
    assert_int_equal(pg_conninfo_transport("port=5432", &t), 0);
    assert_true(t.tcp);
    assert_string_equal(t.host, "env-db.example");
    assert_string_equal(t.sslmode, "verify-ca");
    assert_true(t.sslmode_set);
    assert_int_equal(pg_conninfo_transport("host=/tmp sslmode=disable", &t), 0);
    assert_false(t.tcp);
    assert_string_equal(t.sslmode, "disable");
    unsetenv("PGHOST");
    setenv("PGHOSTADDR", "192.0.2.7", 1);
    assert_int_equal(pg_conninfo_transport("dbname=x", &t), 0);
    assert_true(t.tcp);
    assert_string_equal(t.host, "192.0.2.7");
    unsetenv("PGHOSTADDR");
    unsetenv("PGSSLMODE");

    /* A conninfo libpq cannot parse is a configuration error, its password masked. */
    err_clear();
    assert_int_equal(pg_conninfo_transport("host=db password=s3cr3t-pw nosuchkey=1", &t),
                     -ERR_CONFIG);
    assert_non_null(strstr(err_message(), "invalid conninfo: "));
    assert_non_null(strstr(err_message(), "nosuchkey"));
    assert_null(strstr(err_message(), "s3cr3t-pw"));
    err_clear();
}

/* synchronous_standby_names forms (PostgreSQL's syncrep_gram): a list, FIRST n (...),
 * ANY n (...), "*", quoted names; bare names match case-insensitively. */
static void test_sync_names(void **state)
{
    (void)state;
    static const struct {
        const char *setting;
        bool listed;
    } cases[] = {
        {"", false},
        {"pgark_main", true},
        {"PGARK_Main", true},
        {"s1, pgark_main", true},
        {"FIRST 1 (s1, pgark_main)", true},
        {"ANY 2(s1,pgark_main,s2)", true},
        {"2 (s1, s2)", false},
        {"*", true},
        {"\"*\"", false},
        {"\"pgark_main\"", true},
        {"\"PGARK_MAIN\"", false},
        {"pgark_main2, xpgark_main", false},
        {"\"pgark\"\"main\"", false},
        {"\"unterminated", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (pg_sync_names_list(cases[i].setting, "pgark_main") != cases[i].listed)
            fail_msg("\"%s\": expected %s", cases[i].setting,
                     cases[i].listed ? "listed" : "not listed");
    }
    assert_true(pg_sync_names_list("\"pgark\"\"main\"", "pgark\"main"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secrets_keyword),
        cmocka_unit_test(test_secrets_uri),
        cmocka_unit_test(test_clean_message),
        cmocka_unit_test(test_clean_message_masks),
        cmocka_unit_test(test_clean_message_mask_chars),
        cmocka_unit_test(test_connect_error_kind),
        cmocka_unit_test(test_sqlstate_kind),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_tli),
        cmocka_unit_test(test_parse_lsn),
        cmocka_unit_test(test_parse_seg_size),
        cmocka_unit_test(test_transport_judgement),
        cmocka_unit_test(test_conninfo_transport),
        cmocka_unit_test(test_sync_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
