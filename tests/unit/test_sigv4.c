/* test_sigv4.c — SigV4 against AWS's published S3 examples, and encoding rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../src/storage/s3/sigv4_int.h"

#include <stdlib.h>
#include <string.h>

#define AKID "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE "20130524T000000Z"
#define HOST "examplebucket.s3.amazonaws.com"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define CRED "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"

static struct sigv4 signer;

static int setup(void **state)
{
    (void)state;
    sigv4_init(&signer, AKID, SECRET, "us-east-1", "s3");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sigv4_release(&signer);
    return 0;
}

static void test_get_object(void **state)
{
    (void)state;
    const struct sigv4_pair h[] = {{"Host", HOST},
                                   {"Range", "bytes=0-9"},
                                   {"x-amz-content-sha256", EMPTY_SHA},
                                   {"x-amz-date", DATE}};
    char *canon = NULL;
    char *auth =
        sigv4_authorization(&signer, "GET", "/test.txt", NULL, 0, h, 4, EMPTY_SHA, DATE, &canon);
    assert_string_equal(canon, "GET\n/test.txt\n\n"
                               "host:examplebucket.s3.amazonaws.com\n"
                               "range:bytes=0-9\n"
                               "x-amz-content-sha256:" EMPTY_SHA "\n"
                               "x-amz-date:20130524T000000Z\n\n"
                               "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA);
    assert_string_equal(
        auth, CRED "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                   "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(auth);
    free(canon);
}

static void test_put_object(void **state)
{
    (void)state;
    const char *body_sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    const struct sigv4_pair h[] = {{"Host", HOST},
                                   {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                   {"x-amz-date", DATE},
                                   {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                   {"x-amz-content-sha256", body_sha}};
    struct buf path = BUF_INIT;
    sigv4_uri_encode(&path, "/test$file.text", true);
    assert_string_equal((char *)path.data, "/test%24file.text");
    char *auth =
        sigv4_authorization(&signer, "PUT", (char *)path.data, NULL, 0, h, 5, body_sha, DATE, NULL);
    assert_string_equal(
        auth, CRED "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
                   "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    free(auth);
    buf_free(&path);
}

static void test_get_lifecycle(void **state)
{
    (void)state;
    const struct sigv4_pair q[] = {{"lifecycle", NULL}};
    const struct sigv4_pair h[] = {
        {"Host", HOST}, {"x-amz-date", DATE}, {"x-amz-content-sha256", EMPTY_SHA}};
    char *canon = NULL;
    char *auth = sigv4_authorization(&signer, "GET", "/", q, 1, h, 3, EMPTY_SHA, DATE, &canon);
    assert_non_null(strstr(canon, "GET\n/\nlifecycle=\nhost:"));
    assert_string_equal(
        auth, CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                   "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    free(auth);
    free(canon);
}

static void test_list_objects(void **state)
{
    (void)state;
    /* given out of order: the signer sorts */
    const struct sigv4_pair q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    const struct sigv4_pair h[] = {
        {"Host", HOST}, {"x-amz-date", DATE}, {"x-amz-content-sha256", EMPTY_SHA}};
    char *auth = sigv4_authorization(&signer, "GET", "/", q, 2, h, 3, EMPTY_SHA, DATE, NULL);
    assert_string_equal(
        auth, CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                   "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    free(auth);
}

/* The key is cached per day: signing another day and coming back gives the same result. */
static void test_key_cache_per_day(void **state)
{
    (void)state;
    const struct sigv4_pair h[] = {
        {"Host", HOST}, {"x-amz-date", DATE}, {"x-amz-content-sha256", EMPTY_SHA}};
    const struct sigv4_pair h2[] = {
        {"Host", HOST}, {"x-amz-date", "20130525T000000Z"}, {"x-amz-content-sha256", EMPTY_SHA}};
    const struct sigv4_pair q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    char *other =
        sigv4_authorization(&signer, "GET", "/", q, 2, h2, 3, EMPTY_SHA, "20130525T000000Z", NULL);
    assert_non_null(strstr(other, "/20130525/us-east-1/s3/aws4_request,"));
    assert_null(strstr(other, "34b48302e7b5fa45"));
    char *again = sigv4_authorization(&signer, "GET", "/", q, 2, h, 3, EMPTY_SHA, DATE, NULL);
    assert_non_null(strstr(again, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db66"));
    free(other);
    free(again);
}

static void test_query_encoding(void **state)
{
    (void)state;
    const struct sigv4_pair q[] = {{"prefix", "a b+c=d/e~f"}, {"continuation-token", "1/2+3=="},
                                   {"uploads", NULL},         {"delete", ""},
                                   {"list-type", "2"},        {"key", "\xc3\xa9t\xc3\xa9"}};
    char *s = sigv4_canonical_query(q, 6);
    assert_string_equal(s, "continuation-token=1%2F2%2B3%3D%3D&delete=&key=%C3%A9t%C3%A9&"
                           "list-type=2&prefix=a%20b%2Bc%3Dd%2Fe~f&uploads=");
    free(s);
    s = sigv4_canonical_query(NULL, 0);
    assert_string_equal(s, "");
    free(s);
    /* same name: sorted by value */
    const struct sigv4_pair dup[] = {{"a", "z"}, {"a", "b"}};
    s = sigv4_canonical_query(dup, 2);
    assert_string_equal(s, "a=b&a=z");
    free(s);
}

static void test_path_encoding(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    sigv4_uri_encode(&b, "/bucket/dir one/a+b=c~d_e-f.g/\xe2\x82\xac%?#&*", true);
    assert_string_equal((char *)b.data,
                        "/bucket/dir%20one/a%2Bb%3Dc~d_e-f.g/%E2%82%AC%25%3F%23%26%2A");
    buf_reset(&b);
    sigv4_uri_encode(&b, "a/b", false);
    assert_string_equal((char *)b.data, "a%2Fb");
    buf_free(&b);
}

static void test_header_canonical_values(void **state)
{
    (void)state;
    const struct sigv4_pair h[] = {{"X-Amz-Meta-Note", "  two   spaces\tand tab  "},
                                   {"host", "h"},
                                   {"x-amz-date", DATE},
                                   {"x-amz-content-sha256", EMPTY_SHA}};
    char *canon = NULL;
    char *auth = sigv4_authorization(&signer, "HEAD", "/k", NULL, 0, h, 4, EMPTY_SHA, DATE, &canon);
    assert_non_null(strstr(canon, "\nx-amz-meta-note:two spaces and tab\n"));
    assert_non_null(strstr(auth, "SignedHeaders=host;x-amz-content-sha256;x-amz-date;"
                                 "x-amz-meta-note,"));
    free(auth);
    free(canon);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object),        cmocka_unit_test(test_put_object),
        cmocka_unit_test(test_get_lifecycle),     cmocka_unit_test(test_list_objects),
        cmocka_unit_test(test_key_cache_per_day), cmocka_unit_test(test_query_encoding),
        cmocka_unit_test(test_path_encoding),     cmocka_unit_test(test_header_canonical_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
