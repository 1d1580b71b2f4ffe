/* test_error_log.c — the per-thread error slot and the redacting logger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <unistd.h>

#include "pgark/error.h"
#include "pgark/log.h"

/* ---- capture of log output ---- */

static FILE *cap;
static char *cap_data;
static size_t cap_len;

static int setup(void **state)
{
    (void)state;
    cap = open_memstream(&cap_data, &cap_len);
    log_set_stream(cap);
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_TEXT);
    err_clear();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_stream(NULL);
    fclose(cap);
    free(cap_data);
    cap_data = NULL;
    err_clear();
    return 0;
}

/* Everything logged since setup; caller frees. */
static char *captured(void)
{
    fflush(cap);
    return strndup(cap_data, cap_len);
}

/* The text after "<timestamp> <level> " of a single text-format line, without "\n". */
static char *only_message(void)
{
    char *all = captured();
    assert_true(strlen(all) > 32);
    assert_int_equal(all[strlen(all) - 1], '\n');
    assert_ptr_equal(strchr(all, '\n'), all + strlen(all) - 1);
    char *m = strndup(all + 32, strlen(all) - 33);
    free(all);
    return m;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("\"%s\" does not match /%s/", text, pattern);
}

/* ---- error slot ---- */

static void test_set_and_format(void **state)
{
    (void)state;
    assert_false(err_is_set());
    assert_string_equal(err_message(), "");
    assert_null(err_hint_text());
    assert_int_equal(err_code(), -ERR_RUNTIME);
    assert_int_equal(err_exit_code(), 0);

    assert_int_equal(err_set(ERR_INTEGRITY, "checksum mismatch in \"%s\"", "base.tar"),
                     -ERR_INTEGRITY);
    assert_true(err_is_set());
    assert_int_equal(err_kind(), ERR_INTEGRITY);
    assert_int_equal(err_code(), -ERR_INTEGRITY);
    assert_string_equal(err_message(), "checksum mismatch in \"base.tar\"");
    assert_int_equal(err_context("while verifying backup \"%s\"", "20260101T000000Z"),
                     -ERR_INTEGRITY);
    assert_int_equal(err_context("while running %s", "verify"), -ERR_INTEGRITY);
    assert_int_equal(err_hint("run \"pgark backup\" to take a new one"), -ERR_INTEGRITY);
    char *text = err_format();
    assert_string_equal(text, "checksum mismatch in \"base.tar\"\n"
                              "  while verifying backup \"20260101T000000Z\"\n"
                              "  while running verify");
    free(text);
    /* The message alone stays the detector's. */
    assert_string_equal(err_message(), "checksum mismatch in \"base.tar\"");
    assert_string_equal(err_hint_text(), "run \"pgark backup\" to take a new one");
    assert_int_equal(err_hint("second hint"), -ERR_INTEGRITY);
    assert_string_equal(err_hint_text(), "second hint");

    /* A new error replaces message, context and hint; it may quote the old message. */
    assert_int_equal(err_set(ERR_IO, "cleanup failed after: %s", err_message()), -ERR_IO);
    text = err_format();
    assert_string_equal(text, "cleanup failed after: checksum mismatch in \"base.tar\"");
    free(text);
    assert_null(err_hint_text());

    /* Out-of-range kinds become runtime errors. */
    assert_int_equal(err_set(ERR_OK, "x"), -ERR_RUNTIME);
    assert_int_equal(err_set(ERR_KIND_COUNT, "x"), -ERR_RUNTIME);
    err_clear();
    assert_false(err_is_set());
    assert_string_equal(err_message(), "");

    /* Context without an error still yields a message and a failure code. */
    assert_int_equal(err_context("while doing %d things", 3), -ERR_RUNTIME);
    text = err_format();
    assert_string_equal(text, "unknown error\n  while doing 3 things");
    free(text);
    err_clear();
}

static void test_exit_codes_and_names(void **state)
{
    (void)state;
    const struct {
        enum err_kind kind;
        int exit_code;
        const char *name;
    } kinds[] = {
        {ERR_RUNTIME, 1, "runtime"},
        {ERR_USAGE, 2, "usage"},
        {ERR_CONFIG, 2, "config"},
        {ERR_INTEGRITY, 3, "integrity"},
        {ERR_NOT_FOUND, 1, "not_found"},
        {ERR_EXISTS, 1, "exists"},
        {ERR_IO, 1, "io"},
        {ERR_NO_SPACE, 1, "no_space"},
        {ERR_AUTH, 1, "auth"},
        {ERR_PROTOCOL, 1, "protocol"},
        {ERR_CONNECT, 1, "connect"},
        {ERR_TRANSIENT, 1, "transient"},
        {ERR_MISMATCH, 1, "mismatch"},
        {ERR_CANCELED, 1, "canceled"},
        {ERR_UNSUPPORTED, 1, "unsupported"},
    };
    assert_int_equal(sizeof(kinds) / sizeof(kinds[0]), ERR_KIND_COUNT - 1);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        err_set(kinds[i].kind, "x");
        assert_int_equal(err_exit_code(), kinds[i].exit_code);
        assert_string_equal(err_kind_name(kinds[i].kind), kinds[i].name);
    }
    err_clear();
    assert_string_equal(err_kind_name(ERR_OK), "ok");
    assert_string_equal(err_kind_name(ERR_KIND_COUNT), "unknown");
    assert_string_equal(err_kind_name((enum err_kind) - 1), "unknown");
}

static void test_set_errno_mapping(void **state)
{
    (void)state;
    const struct {
        enum err_kind given;
        int errnum;
        enum err_kind expect;
    } cases[] = {
        {ERR_IO, ENOSPC, ERR_NO_SPACE},
        {ERR_IO, EDQUOT, ERR_NO_SPACE},
        {ERR_IO, EACCES, ERR_AUTH},
        {ERR_IO, EPERM, ERR_AUTH},
        {ERR_IO, ENOENT, ERR_NOT_FOUND},
        {ERR_IO, EIO, ERR_IO},
        {ERR_IO, EISDIR, ERR_IO},
        {ERR_RUNTIME, ENOSPC, ERR_NO_SPACE},
        /* A kind the caller chose on purpose is kept. */
        {ERR_CONFIG, ENOENT, ERR_CONFIG},
        {ERR_PROTOCOL, EACCES, ERR_PROTOCOL},
        {ERR_INTEGRITY, ENOSPC, ERR_INTEGRITY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = err_set_errno(cases[i].given, cases[i].errnum, "could not write \"%s\"", "f");
        assert_int_equal(rc, -(int)cases[i].expect);
        assert_int_equal(err_kind(), cases[i].expect);
        char expect[256];
        snprintf(expect, sizeof(expect), "could not write \"f\": %s", strerror(cases[i].errnum));
        assert_string_equal(err_message(), expect);
    }
    err_set_errno(ERR_IO, ENOSPC, "could not write \"%s\"", "/spool/x.partial");
    assert_string_equal(err_message(),
                        "could not write \"/spool/x.partial\": No space left on device");
    err_clear();
}

struct thread_result {
    bool saw_error_at_start;
    char message[128];
    int code;
};

static void *error_thread(void *arg)
{
    struct thread_result *r = arg;
    r->saw_error_at_start = err_is_set();
    err_set(ERR_CONNECT, "could not connect to \"%s\"", "db2");
    err_context("while streaming");
    snprintf(r->message, sizeof(r->message), "%s", err_message());
    r->code = err_code();
    err_clear(); /* the slot belongs to this thread: release it before leaving */
    return NULL;
}

static void test_thread_local(void **state)
{
    (void)state;
    err_set(ERR_AUTH, "password authentication failed");
    struct thread_result r[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, error_thread, &r[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_false(r[i].saw_error_at_start);
        assert_string_equal(r[i].message, "could not connect to \"db2\"");
        assert_int_equal(r[i].code, -ERR_CONNECT);
    }
    /* This thread's error is untouched. */
    assert_int_equal(err_kind(), ERR_AUTH);
    assert_string_equal(err_message(), "password authentication failed");
    char *text = err_format();
    assert_string_equal(text, "password authentication failed");
    free(text);
    err_clear();
}

static void test_save_restore(void **state)
{
    (void)state;
    err_set(ERR_NO_SPACE, "disk full");
    err_context("while writing segment");
    err_hint("free some space");
    struct err_saved *saved = err_save();
    assert_false(err_is_set()); /* cleanup code starts with a clean slot */
    err_set(ERR_IO, "could not remove temporary file");
    err_context("while cleaning up");
    err_restore(saved);
    assert_int_equal(err_kind(), ERR_NO_SPACE);
    assert_string_equal(err_hint_text(), "free some space");
    char *text = err_format();
    assert_string_equal(text, "disk full\n  while writing segment");
    free(text);
    err_restore(NULL); /* no-op */
    assert_int_equal(err_kind(), ERR_NO_SPACE);
    err_clear();

    /* Saving an empty slot restores an empty slot. */
    saved = err_save();
    err_set(ERR_IO, "x");
    err_restore(saved);
    assert_false(err_is_set());
}

static void test_err_print(void **state)
{
    (void)state;
    err_set(ERR_NOT_FOUND, "segment \"%s\" not found", "000000010000000000000003");
    err_context("while fetching from repo \"%s\"", "offsite");
    err_hint("check restore_command");
    err_print();
    assert_false(err_is_set());
    char *all = captured();
    /* Message with its context, continuation aligned under the message, then the hint. */
    assert_matches(all, "^[0-9-]{10} [0-9:.]{12}Z error  segment \"000000010000000000000003\" "
                        "not found\n {32}  while fetching from repo \"offsite\"\n"
                        "[0-9-]{10} [0-9:.]{12}Z error  hint: check restore_command\n$");
    err_print(); /* nothing set: nothing printed */
    char *again = captured();
    assert_string_equal(again, all);
    free(again);
    free(all);
}

/* ---- logger ---- */

static void test_levels(void **state)
{
    (void)state;
    enum log_level l;
    const char *names[] = {"error", "warn", "info", "detail", "debug"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(log_level_parse(names[i], &l), 0);
        assert_int_equal(l, i);
        assert_string_equal(log_level_name(l), names[i]);
    }
    assert_int_equal(log_level_parse("verbose", &l), -ERR_USAGE);
    assert_string_equal(err_message(), "invalid log level \"verbose\" (expected error, warn, "
                                       "info, detail or debug)");
    assert_int_equal(log_level_parse("INFO", &l), -ERR_USAGE);
    enum log_format f;
    assert_int_equal(log_format_parse("json", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("text", &f), 0);
    assert_int_equal(f, LOG_FORMAT_TEXT);
    assert_int_equal(log_format_parse("xml", &f), -ERR_USAGE);
    assert_string_equal(err_message(), "invalid log format \"xml\" (expected text or json)");
    err_clear();

    log_set_level(LOG_WARN);
    assert_int_equal(log_get_level(), LOG_WARN);
    assert_true(log_enabled(LOG_ERROR));
    assert_true(log_enabled(LOG_WARN));
    assert_false(log_enabled(LOG_INFO));
    log_info("not shown %d", 1);
    log_detail("not shown");
    log_debug("not shown");
    log_warn("shown %d", 2);
    log_error("shown %d", 3);
    log_set_level(LOG_DEBUG);
    log_debug("debug %s", "too");
    char *all = captured();
    assert_matches(all, "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                        "warn   shown 2\n"
                        "[0-9-]{10} [0-9:.]{12}Z error  shown 3\n"
                        "[0-9-]{10} [0-9:.]{12}Z debug  debug too\n$");
    free(all);
}

/* What a stream logged to, read back whole. */
static char *read_back(FILE *f)
{
    fflush(f);
    long len = ftell(f);
    char *text = calloc(1, (size_t)len + 1);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    return text;
}

/* Under systemd ($JOURNAL_STREAM names the very file logged to): "<N>" priorities, no
 * time stamp, every line of a message prefixed; another file: the usual lines. */
static void test_journal_format(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    struct stat st;
    assert_int_equal(fstat(fileno(f), &st), 0);
    char env[64];
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    log_set_stream(f);
    log_set_level(LOG_DEBUG);
    log_error("e %d", 1);
    log_warn("w");
    log_info("i");
    log_detail("d");
    log_debug("g");
    log_info("two\nlines");
    char *text = read_back(f);
    assert_string_equal(text, "<3>e 1\n<4>w\n<6>i\n<6>d\n<7>g\n<6>two\n<6>  lines\n");
    free(text);
    fclose(f);

    /* The variable inherited, but stderr sent elsewhere (another inode). */
    f = tmpfile();
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", env, 1);
    log_set_stream(f);
    log_warn("elsewhere");
    text = read_back(f);
    assert_matches(text, "^[0-9-]{10} [0-9:.]{12}Z warn   elsewhere\n$");
    free(text);
    fclose(f);

    /* Not DEVICE:INODE. */
    f = tmpfile();
    setenv("JOURNAL_STREAM", "garbage", 1);
    log_set_stream(f);
    log_warn("plain");
    text = read_back(f);
    assert_matches(text, "^[0-9-]{10} [0-9:.]{12}Z warn   plain\n$");
    free(text);
    fclose(f);
    unsetenv("JOURNAL_STREAM");
    log_set_stream(cap);
}

static void test_json_format(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_info("copied \"%s\"\n\tsecond line \\ done", "base.tar");
    log_warn("caf\xc3\xa9");
    log_error("bad \xff\xfe byte"); /* a file name in another encoding: must not vanish */
    log_set_format(LOG_FORMAT_TEXT);
    char *all = captured();
    char *save = NULL;
    const char *expect_level[] = {"info", "warn", "error"};
    const char *expect_msg[] = {"copied \"base.tar\"\n\tsecond line \\ done", "caf\xc3\xa9",
                                "bad \xef\xbf\xbd\xef\xbf\xbd byte"};
    int n = 0;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        assert_true(n < 3);
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("not JSON: %s (%s)", line, jerr.text);
        assert_true(json_is_object(o));
        assert_int_equal(json_object_size(o), 3);
        assert_string_equal(json_string_value(json_object_get(o, "level")), expect_level[n]);
        assert_string_equal(json_string_value(json_object_get(o, "message")), expect_msg[n]);
        assert_matches(json_string_value(json_object_get(o, "time")),
                       "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$");
        json_decref(o);
    }
    assert_int_equal(n, 3);
    free(all);
}

static void expect_redacted(const char *in, const char *out)
{
    char *r = log_redact(in);
    assert_string_equal(r, out);
    free(r);
}

static void test_redaction(void **state)
{
    (void)state;
    log_add_secret("Sup3rS3cret!");
    log_add_secret("Sup3rS3cret!"); /* twice: no effect */
    log_add_secret("");
    log_add_secret(NULL);
    expect_redacted("key Sup3rS3cret! and again Sup3rS3cret!.", "key ******** and again ********.");
    expect_redacted("Sup3rS3cret!Sup3rS3cret!", "****************");
    expect_redacted("nothing here", "nothing here");
    expect_redacted("", "");
    /* A secret that contains, or is part of, the mask must not loop forever. */
    log_add_secret("**");
    expect_redacted("a ** b", "a ******** b");
    log_add_secret("*");
    expect_redacted("x*y", "x********y");
    /* When one secret is part of another, the longer one is masked whole. */
    log_add_secret("tokenABC");
    log_add_secret("tokenABCDEF123");
    expect_redacted("k=tokenABCDEF123 j=tokenABC", "k=******** j=********");

    /* conninfo */
    expect_redacted("host=db port=5432 password=xyz user=replicator",
                    "host=db port=5432 password=******** user=replicator");
    expect_redacted("host=db PASSWORD=xyz", "host=db PASSWORD=********");
    expect_redacted("password = xyz dbname=postgres", "password = ******** dbname=postgres");
    expect_redacted("host=a password=xyz host=b password=abc",
                    "host=a password=******** host=b password=********");
    expect_redacted("user=u password=", "user=u password=");
    /* Quoted conninfo values may hold blanks and escaped quotes. */
    expect_redacted("host=db password='correct horse' user=u", "host=db password=******** user=u");
    expect_redacted("password='it\\'s \\\\ ok' dbname=x", "password=******** dbname=x");
    expect_redacted("password='unterminated secret", "password=********");
    /* URIs carry the password between ':' and '@'. */
    expect_redacted("postgresql://replicator:hunter2@db.example:5432/postgres",
                    "postgresql://replicator:********@db.example:5432/postgres");
    expect_redacted("postgres://u:p%40ss@h/db?sslmode=require",
                    "postgres://u:********@h/db?sslmode=require");
    expect_redacted("postgresql://replicator@db/postgres", "postgresql://replicator@db/postgres");
    expect_redacted("https://s3.example.com:9000/bucket", "https://s3.example.com:9000/bucket");

    /* S3 */
    expect_redacted("Authorization: AWS4-HMAC-SHA256 "
                    "Credential=AKIAEXAMPLE/20260101/us-east-1/s3/aws4_request, "
                    "SignedHeaders=host;x-amz-date, Signature=abc123def\nHost: s3",
                    "Authorization: ********\nHost: s3");
    expect_redacted("x-amz-security-token: FQoGZXIvYXdzEXAMPLE\nx-amz-date: 20260101T000000Z",
                    "x-amz-security-token: ********\nx-amz-date: 20260101T000000Z");
    expect_redacted("GET /b/k?X-Amz-Security-Token=FQo%2Bx&X-Amz-Signature=abcdef&x=1",
                    "GET /b/k?X-Amz-Security-Token=********&X-Amz-Signature=********&x=1");
    expect_redacted("secret_access_key: wJalrXUtnFEMI\nregion: x",
                    "secret_access_key: ********\nregion: x");

    /* Through the logger. */
    log_info("connecting with \"host=db password=hunter2\" key Sup3rS3cret!");
    char *m = only_message();
    assert_string_equal(m, "connecting with \"host=db password=********\" key ********");
    free(m);
}

static void test_set_stream_null_restores_stderr(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    log_set_stream(NULL);
    log_warn("to stderr");
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    log_set_stream(cap);
    log_warn("to capture");

    char buf[256] = {0};
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, tmp);
    fclose(tmp);
    assert_true(n > 0);
    assert_matches(buf, "^[0-9-]{10} [0-9:.]{12}Z warn   to stderr\n$");
    char *m = only_message();
    assert_string_equal(m, "to capture");
    free(m);
}

#define LOG_THREADS 4
#define LOG_LINES 300

static void *log_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LOG_LINES; i++)
        log_info("thread %d line %d %s", id, i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    (void)state;
    pthread_t t[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    char *all = captured();
    int next[LOG_THREADS] = {0};
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int id, n;
        char tail[64];
        assert_matches(line, "^[0-9-]{10} [0-9:.]{12}Z info   thread [0-9] line [0-9]+ x+$");
        assert_int_equal(sscanf(line + 32, "thread %d line %d %63s", &id, &n, tail), 3);
        assert_in_range(id, 0, LOG_THREADS - 1);
        assert_int_equal(n, next[id]); /* each thread's lines in order, none lost */
        next[id]++;
        assert_string_equal(tail, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        lines++;
    }
    assert_int_equal(lines, LOG_THREADS * LOG_LINES);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_and_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_codes_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_errno_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thread_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_print, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_stream_null_restores_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_do_not_interleave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_format, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
