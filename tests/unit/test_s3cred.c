/* test_s3cred.c — S3 credentials that follow their files: replaced by rename, written in
 * place, empty, unreadable, missing; no look at them within the interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/storage/s3/cred_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/pgark-s3cred-XXXXXX";
static char *id_path, *secret_path, *token_path;

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* As a rotation tool should: a new file renamed over the old one. */
static void put_by_rename(const char *path, const char *text)
{
    char *tmp = xasprintf("%s.new", path);
    put(tmp, text);
    assert_int_equal(rename(tmp, path), 0);
    free(tmp);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR); /* what the provider says is not what is tested here */
    assert_non_null(mkdtemp(dir));
    id_path = xasprintf("%s/id", dir);
    secret_path = xasprintf("%s/secret", dir);
    token_path = xasprintf("%s/token", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(id_path);
    unlink(secret_path);
    unlink(token_path);
    rmdir(dir);
    free(id_path);
    free(secret_path);
    free(token_path);
    return 0;
}

static int each_setup(void **state)
{
    (void)state;
    put(id_path, "AKIDA\n");
    put(secret_path, "secret-a\n");
    put(token_path, "token-a\n");
    chmod(secret_path, 0600);
    err_clear();
    return 0;
}

/* A provider over the three files, as the config read them. */
static void open_cred(struct s3_cred *c)
{
    const char *values[S3_CRED_PARTS] = {"AKIDA", "secret-a", "token-a"};
    const char *files[S3_CRED_PARTS] = {id_path, secret_path, token_path};
    s3_cred_init(c, "offsite", values, files, 3600 * 1000);
}

static void assert_snap(struct s3_cred *c, const char *id, const char *secret, const char *token,
                        uint64_t generation)
{
    struct s3_cred_snap s;
    s3_cred_get(c, &s);
    assert_string_equal(s.access_key_id, id);
    assert_string_equal(s.secret, secret);
    if (token)
        assert_string_equal(s.token, token);
    else
        assert_null(s.token);
    assert_int_equal(s.generation, generation);
    s3_cred_snap_free(&s);
}

static void test_unchanged_is_not_a_change(void **state)
{
    (void)state;
    struct s3_cred c;
    open_cred(&c);
    /* the first look reads the files (their stamps are unknown): same values, same
     * generation */
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_snap(&c, "AKIDA", "secret-a", "token-a", 1);
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_snap(&c, "AKIDA", "secret-a", "token-a", 1);
    assert_int_equal(s3_cred_look_now(&c), 1);
    s3_cred_release(&c);
}

static void test_replaced_by_rename(void **state)
{
    (void)state;
    struct s3_cred c;
    open_cred(&c);
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    put_by_rename(id_path, "AKIDB\n");
    put_by_rename(secret_path, "secret-b\r\n");
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_snap(&c, "AKIDB", "secret-b", "token-a", 2);
    /* the token alone renewed */
    put_by_rename(token_path, "token-b");
    assert_int_equal(s3_cred_look_now(&c), 3);
    assert_snap(&c, "AKIDB", "secret-b", "token-b", 3);
    s3_cred_release(&c);
}

static void test_interval_bounds_the_looks(void **state)
{
    (void)state;
    struct s3_cred c;
    const char *values[S3_CRED_PARTS] = {"AKIDA", "secret-a", NULL};
    const char *files[S3_CRED_PARTS] = {NULL, secret_path, NULL};
    s3_cred_init(&c, "offsite", values, files, 100);
    assert_snap(&c, "AKIDA", "secret-a", NULL, 1); /* the first get looks */
    put_by_rename(secret_path, "secret-b\n");
    assert_snap(&c, "AKIDA", "secret-a", NULL, 1); /* within the interval: not looked */
    usleep(150 * 1000);
    assert_snap(&c, "AKIDA", "secret-b", NULL, 2);
    s3_cred_release(&c);
}

static void test_partially_written(void **state)
{
    (void)state;
    struct s3_cred c;
    open_cred(&c);
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    /* written in place by a slow writer: first truncated (empty), then half, then all */
    put(secret_path, "");
    assert_int_equal(s3_cred_refresh(&c, true), -ERR_CONFIG);
    char *want =
        xasprintf("repository \"offsite\": S3 credential file \"%s\" is empty", secret_path);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();
    assert_snap(&c, "AKIDA", "secret-a", "token-a", 1);
    put(secret_path, "secr");
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_snap(&c, "AKIDA", "secr", "token-a", 2);
    FILE *f = fopen(secret_path, "a");
    assert_non_null(f);
    fputs("et-b\n", f);
    fclose(f);
    /* the rest came: the size moved, so it is read again */
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_snap(&c, "AKIDA", "secret-b", "token-a", 3);
    s3_cred_release(&c);
}

static void test_bad_files_keep_the_current(void **state)
{
    (void)state;
    struct s3_cred c;
    char *want;
    open_cred(&c);
    assert_int_equal(s3_cred_refresh(&c, true), 0);

    put_by_rename(secret_path, "\n");
    assert_int_equal(s3_cred_refresh(&c, true), -ERR_CONFIG);
    want = xasprintf("repository \"offsite\": S3 credential file \"%s\" is empty", secret_path);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();
    assert_snap(&c, "AKIDA", "secret-a", "token-a", 1);

    {
        FILE *f = fopen(secret_path, "w");
        fwrite("se\0cret", 1, 7, f);
        fclose(f);
    }
    assert_int_equal(s3_cred_refresh(&c, true), -ERR_CONFIG);
    want = xasprintf("repository \"offsite\": S3 credential file \"%s\" contains a NUL byte",
                     secret_path);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();

    char *big = xmalloc(S3_CRED_FILE_MAX + 2);
    memset(big, 'k', S3_CRED_FILE_MAX + 1);
    big[S3_CRED_FILE_MAX + 1] = '\0';
    put_by_rename(secret_path, big);
    free(big);
    assert_int_equal(s3_cred_refresh(&c, true), -ERR_CONFIG);
    want = xasprintf("repository \"offsite\": S3 credential file \"%s\" is larger than 65536 bytes",
                     secret_path);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();

    assert_int_equal(unlink(secret_path), 0);
    assert_int_equal(s3_cred_refresh(&c, true), -ERR_NOT_FOUND);
    want = xasprintf("repository \"offsite\": cannot read S3 credential file \"%s\": No such file "
                     "or directory",
                     secret_path);
    assert_string_equal(err_message(), want);
    free(want);
    err_clear();

    if (geteuid() != 0) { /* root reads anything */
        put(secret_path, "secret-b\n");
        assert_int_equal(chmod(secret_path, 0), 0);
        assert_int_equal(s3_cred_refresh(&c, true), -ERR_AUTH);
        want = xasprintf("repository \"offsite\": cannot read S3 credential file \"%s\": "
                         "Permission denied",
                         secret_path);
        assert_string_equal(err_message(), want);
        free(want);
        err_clear();
        assert_int_equal(chmod(secret_path, 0600), 0);
    }
    /* through every failure: the credentials read before, the error slot untouched by
     * a get or a look */
    assert_snap(&c, "AKIDA", "secret-a", "token-a", 1);
    put_by_rename(secret_path, "\n");
    assert_int_equal(s3_cred_look_now(&c), 1);
    assert_false(err_is_set());

    /* and once the file is good again, it is used */
    put_by_rename(secret_path, "secret-c\n");
    assert_int_equal(s3_cred_look_now(&c), 2);
    assert_snap(&c, "AKIDA", "secret-c", "token-a", 2);
    s3_cred_release(&c);
}

static void test_inline_never_changes(void **state)
{
    (void)state;
    struct s3_cred c;
    const char *values[S3_CRED_PARTS] = {"AKIDA", "secret-a", NULL};
    s3_cred_init(&c, "offsite", values, NULL, 0);
    assert_int_equal(s3_cred_refresh(&c, true), 0);
    assert_int_equal(s3_cred_look_now(&c), 1);
    assert_snap(&c, "AKIDA", "secret-a", NULL, 1);
    s3_cred_release(&c);
    s3_cred_release(&c); /* a released one is zeroed: safe again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_unchanged_is_not_a_change, each_setup),
        cmocka_unit_test_setup(test_replaced_by_rename, each_setup),
        cmocka_unit_test_setup(test_interval_bounds_the_looks, each_setup),
        cmocka_unit_test_setup(test_partially_written, each_setup),
        cmocka_unit_test_setup(test_bad_files_keep_the_current, each_setup),
        cmocka_unit_test_setup(test_inline_never_changes, each_setup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
