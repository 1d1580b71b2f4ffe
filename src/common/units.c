/* units.c — durations, sizes and timestamps (see include/pgark/units.h).
 *
 * The accepted grammar, kept deliberately narrow so that a typo never becomes a value:
 *   duration  := DIGITS [" "] UNIT          UNIT ms s m h d w
 *   size      := DIGITS [" " UNIT] | DIGITS UNIT   UNIT B KB MB GB TB KiB MiB GiB TiB
 * No sign, no fraction, no leading or trailing white space; at most one space between
 * number and unit (so that what size_format/duration_format print for exact values is
 * read back unchanged).
 */
#include "pgark/units.h"

#include "pgark/error.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct unit {
    const char *name;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
    {"w", 7 * 24 * 60 * 60 * 1000},
};

static const struct unit size_units[] = {
    {"B", 1},
    {"KB", UINT64_C(1000)},
    {"MB", UINT64_C(1000000)},
    {"GB", UINT64_C(1000000000)},
    {"TB", UINT64_C(1000000000000)},
    {"KiB", UINT64_C(1) << 10},
    {"MiB", UINT64_C(1) << 20},
    {"GiB", UINT64_C(1) << 30},
    {"TiB", UINT64_C(1) << 40},
};

#define NUNITS(a) (sizeof(a) / sizeof((a)[0]))

/* Split "<digits>[ ]<unit>" into a number and the unit text. Returns false on anything
 * but that shape; *overflow is set when the digits alone exceed UINT64_MAX. */
static bool split_number(const char *text, uint64_t *num, const char **unit, bool *overflow)
{
    const char *p = text;
    uint64_t n = 0;

    *overflow = false;
    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            n = n * 10 + d;
        p++;
    }
    if (*p == ' ') {
        p++;
        if (*p == '\0')
            return false; /* "10 " */
    }
    *num = n;
    *unit = p;
    return true;
}

static const struct unit *find_unit(const struct unit *units, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(units[i].name, name) == 0)
            return &units[i];
    }
    return NULL;
}

int duration_parse(const char *text, int64_t *ms_out)
{
    uint64_t n;
    const char *unit_text;
    bool overflow;
    const struct unit *u;

    if (text == NULL)
        text = "";
    if (!split_number(text, &n, &unit_text, &overflow) ||
        (u = find_unit(duration_units, NUNITS(duration_units), unit_text)) == NULL)
        return err_set(ERR_CONFIG,
                       "invalid duration \"%s\" (expected a whole number and a unit: ms, s, m, "
                       "h, d or w)",
                       text);
    if (overflow || n > (uint64_t)INT64_MAX / u->factor)
        return err_set(ERR_CONFIG, "duration \"%s\" is out of range", text);
    *ms_out = (int64_t)(n * u->factor);
    return 0;
}

int size_parse(const char *text, uint64_t *bytes_out)
{
    uint64_t n;
    const char *unit_text;
    bool overflow;
    const struct unit *u = &size_units[0];

    if (text == NULL)
        text = "";
    if (!split_number(text, &n, &unit_text, &overflow) ||
        (*unit_text != '\0' &&
         (u = find_unit(size_units, NUNITS(size_units), unit_text)) == NULL) ||
        (*unit_text == '\0' && text[strlen(text) - 1] == ' '))
        return err_set(ERR_CONFIG,
                       "invalid size \"%s\" (expected a whole number and an optional unit: B, "
                       "KB, MB, GB, TB, KiB, MiB, GiB or TiB)",
                       text);
    if (overflow || n > UINT64_MAX / u->factor)
        return err_set(ERR_CONFIG, "size \"%s\" is out of range", text);
    *bytes_out = n * u->factor;
    return 0;
}

char *size_format(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    size_t i = 0;
    uint64_t unit = 1;

    while (i + 1 < NUNITS(names) && bytes / unit >= 1024) {
        unit <<= 10;
        i++;
    }
    if (bytes % unit == 0) {
        snprintf(buf, cap, "%llu %s", (unsigned long long)(bytes / unit), names[i]);
    } else {
        /* One decimal, truncated: a size shown never claims more than there is. */
        unsigned long long whole = bytes / unit;
        unsigned long long tenth = (unsigned long long)((bytes % unit) * 10 / unit);
        snprintf(buf, cap, "%llu.%llu %s", whole, tenth, names[i]);
    }
    return buf;
}

char *duration_format(int64_t ms, char *buf, size_t cap)
{
    static const struct unit parts[] = {
        {"d", 24 * 60 * 60 * 1000}, {"h", 60 * 60 * 1000}, {"m", 60 * 1000}, {"s", 1000}};
    uint64_t left;
    size_t len = 0;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (ms < 0) {
        len += (size_t)snprintf(buf, cap, "-");
        left = (uint64_t)(-(ms + 1)) + 1; /* INT64_MIN safe */
    } else {
        left = (uint64_t)ms;
    }
    if (left < 1000) {
        snprintf(buf + len, cap - len, "%llums", (unsigned long long)left);
        return buf;
    }
    if (left < 60 * 1000 && left % 1000 != 0) {
        /* Under a minute the tenths matter (a checkpoint took 2.4s). */
        snprintf(buf + len, cap - len, "%llu.%llus", (unsigned long long)(left / 1000),
                 (unsigned long long)(left % 1000 / 100));
        return buf;
    }
    for (size_t i = 0; i < NUNITS(parts) && len < cap; i++) {
        uint64_t n = left / parts[i].factor;
        left %= parts[i].factor;
        if (n == 0)
            continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%llu%s",
                                (len > 0 && buf[len - 1] != '-') ? " " : "", (unsigned long long)n,
                                parts[i].name);
    }
    return buf;
}

int64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (Hinnant's algorithms,
 * valid over the whole int64 range we use). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

struct civil {
    int64_t year;
    unsigned month, day, hour, minute, second;
    unsigned usec;
};

static void split_time(int64_t unix_us, struct civil *c)
{
    int64_t secs = unix_us / 1000000;
    int64_t us = unix_us % 1000000;
    if (us < 0) {
        us += 1000000;
        secs--;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    civil_from_days(days, &c->year, &c->month, &c->day);
    c->hour = (unsigned)(sod / 3600);
    c->minute = (unsigned)(sod % 3600 / 60);
    c->second = (unsigned)(sod % 60);
    c->usec = (unsigned)us;
}

char *time_format_pg(int64_t unix_us, char *buf, size_t cap)
{
    struct civil c;
    split_time(unix_us, &c);
    snprintf(buf, cap, "%04lld-%02u-%02u %02u:%02u:%02u.%06u+00", (long long)c.year, c.month, c.day,
             c.hour, c.minute, c.second, c.usec);
    return buf;
}

char *time_format_label(int64_t unix_us, char *buf, size_t cap)
{
    struct civil c;
    split_time(unix_us, &c);
    snprintf(buf, cap, "%04lld%02u%02uT%02u%02u%02uZ", (long long)c.year, c.month, c.day, c.hour,
             c.minute, c.second);
    return buf;
}

/* Read exactly n digits. */
static bool digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + (unsigned)((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

int time_parse(const char *text, int64_t *unix_us_out)
{
    const char *p = text ? text : "";
    unsigned year, month, day, hour = 0, minute = 0, second = 0, usec = 0;
    int64_t offset_s = 0;

    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
        !digits(&p, 2, &day))
        goto bad;
    if (month < 1 || month > 12 || day < 1 || day > month_days(year, month))
        goto bad;
    if (*p == ' ' || *p == 'T') {
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &minute))
            goto bad;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &second))
                goto bad;
            if (*p == '.') {
                unsigned scale = 100000;
                p++;
                if (!isdigit((unsigned char)*p))
                    goto bad;
                /* Digits past microseconds are accepted and truncated. */
                while (isdigit((unsigned char)*p)) {
                    usec += (unsigned)(*p - '0') * scale;
                    scale /= 10;
                    p++;
                }
            }
        }
        if (hour > 23 || minute > 59 || second > 59)
            goto bad;
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        unsigned oh, om = 0;
        if (!digits(&p, 2, &oh))
            goto bad;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &om))
                goto bad;
        } else if (isdigit((unsigned char)*p)) {
            if (!digits(&p, 2, &om))
                goto bad;
        }
        if (oh > 15 || om > 59)
            goto bad;
        offset_s = sign * (int64_t)(oh * 3600 + om * 60);
    }
    if (*p != '\0')
        goto bad;

    int64_t days = days_from_civil(year, month, day);
    int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
    *unix_us_out = secs * 1000000 + usec;
    return 0;

bad:
    return err_set(ERR_USAGE,
                   "invalid timestamp \"%s\" (expected YYYY-MM-DD[ HH:MM[:SS[.FFFFFF]]][Z|+HH|"
                   "+HH:MM])",
                   text ? text : "");
}
