/* test_units.c — durations, sizes and timestamps: every unit, every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/error.h"
#include "pgark/units.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DURATION_HELP "(expected a whole number and a unit: ms, s, m, h, d or w)"
#define SIZE_HELP                                                                                  \
    "(expected a whole number and an optional unit: B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
#define TIME_HELP "(expected YYYY-MM-DD[ HH:MM[:SS[.FFFFFF]]][Z|+HH|+HH:MM])"

static void test_duration_units(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"0ms", 0},
        {"500ms", 500},
        {"0s", 0},
        {"10s", 10000},
        {"15m", 900000},
        {"2h", 7200000},
        {"14d", 14LL * 86400000},
        {"1w", 7LL * 86400000},
        {"10 s", 10000},
        {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
        {"106751991167d", 106751991167LL * 86400000},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ms = -1;
        err_clear();
        if (duration_parse(ok[i].text, &ms) != 0)
            fail_msg("\"%s\": %s", ok[i].text, err_message());
        assert_int_equal(ms, ok[i].ms);
    }
}

static void test_duration_rejects(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "",     "10",    "s",   "ms",  "10x",   "10sec", "1.5h",  "-5s",  "+5s",   " 10s",
        "10s ", "10  s", "10S", "10M", "1h30m", "10 ",   "0x10s", "1e3s", "10s\n", "∞s",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        int64_t ms = 42;
        char want[256];
        assert_int_equal(duration_parse(junk[i], &ms), -ERR_CONFIG);
        assert_int_equal(ms, 42);
        snprintf(want, sizeof(want), "invalid duration \"%s\" " DURATION_HELP, junk[i]);
        assert_string_equal(err_message(), want);
    }
    static const char *const big[] = {"9223372036854775808ms", "106751991168d",
                                      "99999999999999999999999999s", "15250284452472w"};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        int64_t ms = 42;
        char want[256];
        assert_int_equal(duration_parse(big[i], &ms), -ERR_CONFIG);
        assert_int_equal(ms, 42);
        snprintf(want, sizeof(want), "duration \"%s\" is out of range", big[i]);
        assert_string_equal(err_message(), want);
    }
    int64_t ms;
    assert_int_equal(duration_parse(NULL, &ms), -ERR_CONFIG);
    assert_string_equal(err_message(), "invalid duration \"\" " DURATION_HELP);
}

static void test_size_units(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"0", 0},
        {"100", 100},
        {"100B", 100},
        {"1KB", 1000},
        {"1MB", 1000000},
        {"2GB", 2000000000},
        {"3TB", 3000000000000ULL},
        {"64KiB", 65536},
        {"1MiB", 1048576},
        {"16 MiB", 16777216},
        {"1GiB", 1073741824},
        {"5TiB", 5ULL << 40},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ULL << 40},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t b = 1;
        err_clear();
        if (size_parse(ok[i].text, &b) != 0)
            fail_msg("\"%s\": %s", ok[i].text, err_message());
        assert_true(b == ok[i].bytes);
    }
}

static void test_size_rejects(void **state)
{
    (void)state;
    static const char *const junk[] = {"",    "MiB",   "1mib",  "1 mb", "1.5MiB", "-1",
                                       "+1",  " 1MiB", "1MiB ", "1 ",   "1  MiB", "1KIB",
                                       "1kb", "1PiB",  "1 B ",  "1b",   "0x10",   "1,000"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        uint64_t b = 42;
        char want[256];
        assert_int_equal(size_parse(junk[i], &b), -ERR_CONFIG);
        assert_true(b == 42);
        snprintf(want, sizeof(want), "invalid size \"%s\" " SIZE_HELP, junk[i]);
        assert_string_equal(err_message(), want);
    }
    static const char *const big[] = {"18446744073709551616", "16777216TiB", "17179869184GiB",
                                      "18446744073709552KB", "999999999999999999999999"};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        uint64_t b = 42;
        char want[256];
        assert_int_equal(size_parse(big[i], &b), -ERR_CONFIG);
        assert_true(b == 42);
        snprintf(want, sizeof(want), "size \"%s\" is out of range", big[i]);
        assert_string_equal(err_message(), want);
    }
}

static void test_size_format(void **state)
{
    (void)state;
    static const struct {
        uint64_t bytes;
        const char *text;
    } cases[] = {
        {0, "0 B"},
        {1, "1 B"},
        {1023, "1023 B"},
        {1024, "1 KiB"},
        {1536, "1.5 KiB"},
        {1048575, "1023.9 KiB"},
        {16ULL << 20, "16 MiB"},
        {(3ULL << 30) + (1ULL << 29), "3.5 GiB"},
        {1ULL << 40, "1 TiB"},
        {1ULL << 50, "1 PiB"},
        {UINT64_MAX, "15.9 EiB"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        assert_string_equal(size_format(cases[i].bytes, buf, sizeof(buf)), cases[i].text);
    }
    /* What size_format prints for an exact multiple reads back unchanged. */
    static const uint64_t exact[] = {0, 100, 64ULL << 10, 1ULL << 20, 7ULL << 30, 5ULL << 40};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        char buf[32];
        uint64_t back = 1;
        assert_int_equal(size_parse(size_format(exact[i], buf, sizeof(buf)), &back), 0);
        assert_true(back == exact[i]);
    }
}

static void test_duration_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "0ms"},
        {350, "350ms"},
        {999, "999ms"},
        {1000, "1s"},
        {2400, "2.4s"},
        {59999, "59.9s"},
        {60000, "1m"},
        {61500, "1m 1s"},
        {900000, "15m"},
        {3723000, "1h 2m 3s"},
        {7200000, "2h"},
        {90061000, "1d 1h 1m 1s"},
        {14LL * 86400000, "14d"},
        {-1500, "-1.5s"},
        {-3723000, "-1h 2m 3s"},
        {-5, "-5ms"},
        {INT64_MAX, "106751991167d 7h 12m 55s"},
        {INT64_MIN, "-106751991167d 7h 12m 55s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        assert_string_equal(duration_format(cases[i].ms, buf, sizeof(buf)), cases[i].text);
    }
    /* A single-unit value reads back unchanged. */
    static const int64_t single[] = {0, 350, 1000, 10000, 900000, 7200000, 14LL * 86400000};
    for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
        char buf[64];
        int64_t back = -1;
        assert_int_equal(duration_parse(duration_format(single[i], buf, sizeof(buf)), &back), 0);
        assert_int_equal(back, single[i]);
    }
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t now = time_now_us();
    int64_t t = (int64_t)time(NULL);
    assert_true(now / 1000000 >= t - 1 && now / 1000000 <= t + 1);
    int64_t a = time_mono_us();
    int64_t b = time_mono_us();
    assert_true(a > 0 && b >= a);
}

static const struct {
    int64_t us;
    const char *pg;
    const char *label;
} known_times[] = {
    {0, "1970-01-01 00:00:00.000000+00", "19700101T000000Z"},
    {1795615407123456LL, "2026-11-25 14:03:27.123456+00", "20261125T140327Z"},
    {1709251199000000LL, "2024-02-29 23:59:59.000000+00", "20240229T235959Z"},
    {PG_EPOCH_OFFSET_US, "2000-01-01 00:00:00.000000+00", "20000101T000000Z"},
    {-1000000, "1969-12-31 23:59:59.000000+00", "19691231T235959Z"},
    {-1, "1969-12-31 23:59:59.999999+00", "19691231T235959Z"},
    {4107542400000000LL, "2100-03-01 00:00:00.000000+00", "21000301T000000Z"},
    {253402300799999999LL, "9999-12-31 23:59:59.999999+00", "99991231T235959Z"},
};

static void test_time_format(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(known_times) / sizeof(known_times[0]); i++) {
        char buf[40];
        assert_string_equal(time_format_pg(known_times[i].us, buf, sizeof(buf)), known_times[i].pg);
        assert_string_equal(time_format_label(known_times[i].us, buf, 17), known_times[i].label);
    }
}

static void test_time_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(known_times) / sizeof(known_times[0]); i++) {
        int64_t us = 0;
        assert_int_equal(time_parse(known_times[i].pg, &us), 0);
        assert_int_equal(us, known_times[i].us);
    }
    /* Every second of a leap year's February end and a year boundary. */
    for (int64_t us = 1709164800000000LL; us < 1709424000000000LL; us += 3600000000LL + 7) {
        char buf[40];
        int64_t back = 0;
        assert_int_equal(time_parse(time_format_pg(us, buf, sizeof(buf)), &back), 0);
        assert_int_equal(back, us);
    }
}

static void test_time_parse_forms(void **state)
{
    (void)state;
    const int64_t base = 1795615407000000LL; /* 2026-11-25 14:03:27 UTC */
    static const struct {
        const char *text;
        int64_t delta_us;
    } ok[] = {
        {"2026-11-25 14:03:27", 0},
        {"2026-11-25T14:03:27", 0},
        {"2026-11-25 14:03:27Z", 0},
        {"2026-11-25T14:03:27Z", 0},
        {"2026-11-25 14:03:27+00", 0},
        {"2026-11-25 14:03:27-00:00", 0},
        {"2026-11-25 16:03:27+02", 0},
        {"2026-11-25 19:33:27+05:30", 0},
        {"2026-11-25 19:33:27+0530", 0},
        {"2026-11-25 06:03:27-08", 0},
        {"2026-11-25 03:03:27-11:00", 0},
        {"2026-11-26 00:03:27+10", 0},
        {"2026-11-25 14:03:27.5", 500000},
        {"2026-11-25 14:03:27.123456", 123456},
        {"2026-11-25 14:03:27.1234567", 123456},
        {"2026-11-25 14:03:27.000001Z", 1},
        {"2026-11-25T16:03:27.25+02:00", 250000},
        {"2026-11-25 14:03", -27000000},
        {"2026-11-25", -(14 * 3600 + 3 * 60 + 27) * 1000000LL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t us = 0;
        err_clear();
        if (time_parse(ok[i].text, &us) != 0)
            fail_msg("\"%s\": %s", ok[i].text, err_message());
        if (us != base + ok[i].delta_us)
            fail_msg("\"%s\": got %lld", ok[i].text, (long long)us);
    }
}

static void test_time_parse_rejects(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "",
        "yesterday",
        "2026-11-25 14:03:27 ",
        " 2026-11-25 14:03:27",
        "2026-11-25  14:03:27",
        "2026/11/25 14:03:27",
        "26-11-25 14:03:27",
        "2026-13-01 00:00:00",
        "2026-00-01 00:00:00",
        "2026-11-31 00:00:00",
        "2026-02-29 00:00:00",
        "1900-02-29 00:00:00",
        "2026-11-00 00:00:00",
        "2026-11-25 24:00:00",
        "2026-11-25 14:60:00",
        "2026-11-25 14:03:60",
        "2026-11-25 14:03:27.",
        "2026-11-25 14:03:27+2",
        "2026-11-25 14:03:27+16",
        "2026-11-25 14:03:27+05:60",
        "2026-11-25 14:03:27+05:3",
        "2026-11-25 14:03:27 UTC",
        "2026-11-25 14:03:27ZZ",
        "2026-11-25 14",
        "2026-11-25T",
        "20261125T140327Z",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        int64_t us = 42;
        char want[256];
        if (time_parse(junk[i], &us) != -ERR_USAGE)
            fail_msg("\"%s\" accepted", junk[i]);
        assert_int_equal(us, 42);
        snprintf(want, sizeof(want), "invalid timestamp \"%s\" " TIME_HELP, junk[i]);
        assert_string_equal(err_message(), want);
    }
    /* Leap years are accepted where they exist. */
    int64_t us;
    assert_int_equal(time_parse("2000-02-29 12:00:00", &us), 0);
    assert_int_equal(time_parse("2024-02-29", &us), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_rejects),
        cmocka_unit_test(test_size_units),
        cmocka_unit_test(test_size_rejects),
        cmocka_unit_test(test_size_format),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_time_round_trip),
        cmocka_unit_test(test_time_parse_forms),
        cmocka_unit_test(test_time_parse_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
