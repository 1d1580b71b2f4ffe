/* test_rpohist.c — the receiver's RPO history as text and as the shipped JSON: a round
 * trip keeps every sample and the tiers without a value; a line cut short or mangled is
 * skipped, never misread; samples before the period are left out. */
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/rpohist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_lines(void **state)
{
    (void)state;
    char line[64];
    struct rpohist_sample s = {.time_s = 1800000060, .ms = {250, -1}};
    assert_string_equal(rpohist_format_line(&s, line, sizeof(line)), "1800000060 250 -\n");
    const char *text = "1800000000 0 1200\n"
                       "1800000060 250 -\n"
                       "garbage\n"
                       "1800000120 x 5\n"
                       "1800000180 7 8 9\n"
                       "1800000240 -5 3\n"
                       "1800000300 12 13\n"
                       "1800000360 99 9"; /* cut short by a crash: no newline */
    struct rpohist_sample *out;
    size_t n;
    rpohist_parse(text, 0, &out, &n);
    assert_int_equal(n, 3);
    assert_true(out[0].time_s == 1800000000 && out[0].ms[0] == 0 && out[0].ms[1] == 1200);
    assert_true(out[1].ms[0] == 250 && out[1].ms[1] == -1);
    assert_true(out[2].time_s == 1800000300 && out[2].ms[1] == 13);
    free(out);
    rpohist_parse(text, 1800000060, &out, &n);
    assert_int_equal(n, 2);
    free(out);
    rpohist_parse("", 0, &out, &n);
    assert_int_equal(n, 0);
    free(out);
}

static void test_json(void **state)
{
    (void)state;
    struct rpohist_sample s[3] = {
        {1800000000, {0, 1200}}, {1800000060, {250, -1}}, {1800000120, {-1, -1}}};
    char *json = rpohist_to_json(s, 3);
    assert_string_equal(json, "{\"format\":1,\"samples\":[[1800000000,0,1200],[1800000060,250,"
                              "null],[1800000120,null,null]]}");
    struct rpohist_sample *out;
    size_t n;
    assert_int_equal(rpohist_from_json(json, 1800000060, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_true(out[0].ms[0] == 250 && out[0].ms[1] == -1 && out[1].ms[0] == -1);
    free(out);
    free(json);
    assert_int_equal(rpohist_from_json("{\"format\":2,\"samples\":[]}", 0, &out, &n),
                     -ERR_INTEGRITY);
    assert_null(out);
    err_clear();
    assert_int_equal(rpohist_from_json("[1,2]", 0, &out, &n), -ERR_INTEGRITY);
    err_clear();
    /* rows of the wrong shape are passed over */
    assert_int_equal(
        rpohist_from_json("{\"format\":1,\"samples\":[[1,2],\"x\",[5,6,7],[8,-3,\"a\"]]}", 0, &out,
                          &n),
        0);
    assert_int_equal(n, 2);
    assert_true(out[0].time_s == 5 && out[0].ms[1] == 7);
    assert_true(out[1].ms[0] == -1 && out[1].ms[1] == -1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
