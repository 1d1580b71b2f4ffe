/* log.c — leveled, redacting, thread-safe logging (see include/pgark/log.h). */
#include "pgark/log.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_level current_level = LOG_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
static FILE *current_stream;
static char **secrets;
static size_t nsecrets;

static const char *const level_names[] = {"error", "warn", "info", "detail", "debug"};

#define MASK "********"

int log_level_parse(const char *text, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return err_set(ERR_USAGE, "invalid log level \"%s\" (expected error, warn, info, detail or debug)",
                   text);
}

int log_format_parse(const char *text, enum log_format *out)
{
    if (strcmp(text, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(text, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return err_set(ERR_USAGE, "invalid log format \"%s\" (expected text or json)", text);
    return 0;
}

const char *log_level_name(enum log_level level)
{
    return (level >= LOG_ERROR && level <= LOG_DEBUG) ? level_names[level] : "unknown";
}

void log_set_level(enum log_level level)
{
    __atomic_store_n(&current_level, level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
    return __atomic_load_n(&current_level, __ATOMIC_RELAXED);
}

void log_set_format(enum log_format format)
{
    current_format = format;
}

void log_set_stream(FILE *stream)
{
    pthread_mutex_lock(&log_lock);
    current_stream = stream;
    pthread_mutex_unlock(&log_lock);
}

bool log_enabled(enum log_level level)
{
    return level <= log_get_level();
}

void log_add_secret(const char *secret)
{
    if (!secret || !*secret)
        return;
    pthread_mutex_lock(&log_lock);
    for (size_t i = 0; i < nsecrets; i++) {
        if (strcmp(secrets[i], secret) == 0)
            goto out;
    }
    secrets = xrealloc(secrets, (nsecrets + 1) * sizeof(*secrets));
    secrets[nsecrets++] = xstrdup(secret);
out:
    pthread_mutex_unlock(&log_lock);
}

/* Keys whose value is masked up to the next delimiter, wherever they appear. */
static const struct {
    const char *key;
    const char *stop; /* characters that end the value */
} masked_keys[] = {
    {"password=", " \t\n'\""},     {"password:", "\n"},
    {"authorization:", "\n"},      {"x-amz-security-token:", "\n"},
    {"signature=", " \t\n,&\"'"},  {"secret_access_key:", "\n"},
    {"x-amz-security-token=", " \t\n&\"'"},
};

static void mask_keys(struct buf *b)
{
    char *s = (char *)b->data;
    for (size_t k = 0; k < sizeof(masked_keys) / sizeof(masked_keys[0]); k++) {
        size_t klen = strlen(masked_keys[k].key);
        char *p = s;
        while ((p = strcasestr(p, masked_keys[k].key)) != NULL) {
            char *v = p + klen;
            while (*v == ' ')
                v++;
            size_t vlen = strcspn(v, masked_keys[k].stop);
            if (vlen == 0 || (vlen == strlen(MASK) && strncmp(v, MASK, vlen) == 0)) {
                p = v;
                continue;
            }
            size_t off = (size_t)(v - s);
            struct buf n = BUF_INIT;
            buf_append(&n, s, off);
            buf_append_str(&n, MASK);
            buf_append_str(&n, v + vlen);
            buf_free(b);
            *b = n;
            s = (char *)b->data;
            p = s + off + strlen(MASK);
        }
    }
}

static char *redact_locked(const char *text)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, text);
    for (size_t i = 0; i < nsecrets; i++) {
        size_t slen = strlen(secrets[i]);
        char *p;
        while ((p = strstr((char *)b.data, secrets[i])) != NULL) {
            size_t off = (size_t)(p - (char *)b.data);
            struct buf n = BUF_INIT;
            buf_append(&n, b.data, off);
            buf_append_str(&n, MASK);
            buf_append_str(&n, (char *)b.data + off + slen);
            buf_free(&b);
            b = n;
        }
    }
    mask_keys(&b);
    return buf_steal(&b);
}

char *log_redact(const char *text)
{
    pthread_mutex_lock(&log_lock);
    char *r = redact_locked(text);
    pthread_mutex_unlock(&log_lock);
    return r;
}

void log_msgv(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    char *raw = xvasprintf(fmt, ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char stamp[64];
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02d %02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));

    pthread_mutex_lock(&log_lock);
    char *text = redact_locked(raw);
    FILE *out = current_stream ? current_stream : stderr;
    if (current_format == LOG_FORMAT_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "time", stamp, "level", level_names[level],
                              "message", text);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (line) {
            fprintf(out, "%s\n", line);
            free(line);
        }
        json_decref(o);
    } else {
        /* Continuation lines of a multi-line message are indented under the first. */
        fprintf(out, "%s %-6s ", stamp, level_names[level]);
        for (const char *p = text; *p; p++) {
            fputc(*p, out);
            if (*p == '\n' && p[1])
                fputs("                               ", out);
        }
        fputc('\n', out);
    }
    fflush(out);
    pthread_mutex_unlock(&log_lock);
    free(text);
    free(raw);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_msgv(level, fmt, ap);
    va_end(ap);
}
