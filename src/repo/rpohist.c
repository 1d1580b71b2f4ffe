/*
 * rpohist.c — the receiver's RPO history as text (its spool file) and as JSON (the record
 * shipped to the repositories): see rpohist.h.
 */
#include "pgark/rpohist.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *rpohist_format_line(const struct rpohist_sample *s, char *buf, size_t cap)
{
    char v[RPOHIST_TIERS][24];
    for (int t = 0; t < RPOHIST_TIERS; t++) {
        if (s->ms[t] < 0)
            snprintf(v[t], sizeof(v[t]), "-");
        else
            snprintf(v[t], sizeof(v[t]), "%" PRId64, s->ms[t]);
    }
    snprintf(buf, cap, "%" PRId64 " %s %s\n", s->time_s, v[0], v[1]);
    return buf;
}

/* One field: a number, or "-" (-1). False when it is neither. */
static bool field(const char **p, int64_t *out)
{
    while (**p == ' ')
        (*p)++;
    if (**p == '-' && ((*p)[1] == ' ' || (*p)[1] == '\n' || (*p)[1] == '\0')) {
        (*p)++;
        *out = -1;
        return true;
    }
    if (!isdigit((unsigned char)**p))
        return false;
    char *end;
    long long v = strtoll(*p, &end, 10);
    if (end == *p || v < 0)
        return false;
    *p = end;
    *out = v;
    return true;
}

static void push(struct rpohist_sample **out, size_t *n, size_t *cap,
                 const struct rpohist_sample *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *out = xrealloc(*out, *cap * sizeof(**out));
    }
    (*out)[(*n)++] = *s;
}

void rpohist_parse(const char *text, int64_t since_s, struct rpohist_sample **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        struct rpohist_sample s;
        const char *q = p;
        bool ok = eol && field(&q, &s.time_s) && s.time_s >= 0 && field(&q, &s.ms[0]) &&
                  field(&q, &s.ms[1]);
        while (ok && *q == ' ')
            q++;
        /* A whole line only: one cut short by a crash has no newline yet. */
        if (ok && q == eol && s.time_s >= since_s)
            push(out, n, &cap, &s);
        if (!eol)
            break;
        p = eol + 1;
    }
    if (!*out)
        *out = xcalloc(1, sizeof(**out));
}

char *rpohist_to_json(const struct rpohist_sample *s, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array();
        json_array_append_new(row, json_integer(s[i].time_s));
        for (int t = 0; t < RPOHIST_TIERS; t++)
            json_array_append_new(row, s[i].ms[t] < 0 ? json_null() : json_integer(s[i].ms[t]));
        json_array_append_new(arr, row);
    }
    json_t *o = json_pack("{s:i, s:o}", "format", 1, "samples", arr);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

int rpohist_from_json(const char *text, int64_t since_s, struct rpohist_sample **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    json_t *o = json_loads(text, 0, NULL);
    json_t *arr = json_object_get(o, "samples");
    if (!json_is_array(arr) || json_integer_value(json_object_get(o, "format")) != 1) {
        json_decref(o);
        return err_set(ERR_INTEGRITY, "not an RPO history (format 1)");
    }
    size_t i;
    json_t *row;
    json_array_foreach(arr, i, row)
    {
        if (!json_is_array(row) || json_array_size(row) != 1 + RPOHIST_TIERS ||
            !json_is_integer(json_array_get(row, 0)))
            continue;
        struct rpohist_sample s = {.time_s = json_integer_value(json_array_get(row, 0))};
        for (int t = 0; t < RPOHIST_TIERS; t++) {
            json_t *v = json_array_get(row, (size_t)t + 1);
            s.ms[t] = json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
        }
        if (s.time_s >= since_s)
            push(out, n, &cap, &s);
    }
    json_decref(o);
    if (!*out)
        *out = xcalloc(1, sizeof(**out));
    return 0;
}
