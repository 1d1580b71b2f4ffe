/* log.c — leveled, redacting, thread-safe logging (see include/pgark/log.h). */
#include "pgark/log.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_level current_level = LOG_INFO;
static enum log_format current_format = LOG_FORMAT_TEXT;
static FILE *current_stream;
/* Whether the stream is the journal's ($JOURNAL_STREAM names it): -1 not looked yet. */
static int to_journal = -1;
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
    return err_set(ERR_USAGE,
                   "invalid log level \"%s\" (expected error, warn, info, detail or debug)", text);
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
    to_journal = -1;
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

/*
 * Keys whose value is masked wherever they appear: the key (any case), blanks, the
 * separator, blanks, then the value up to a stop character. Blanks around '=' are
 * legal in a libpq conninfo string, and so is a value in single quotes with
 * backslash escapes, which is then masked whole.
 */
static const struct {
    const char *key;
    char sep;
    const char *stop; /* characters that end an unquoted value */
    bool quoted;      /* a value opening with ' runs to the closing ' */
} masked_keys[] = {
    {"password", '=', " \t\n'\"", true},
    {"password", ':', "\n", false},
    {"authorization", ':', "\n", false},
    {"x-amz-security-token", ':', "\n", false},
    {"x-amz-security-token", '=', " \t\n&\"'", false},
    {"signature", '=', " \t\n,&\"'", false},
    {"secret_access_key", ':', "\n", false},
};

/* Replace len bytes at off with the mask; returns the offset just after the mask. */
static size_t mask_range(struct buf *b, size_t off, size_t len)
{
    struct buf n = BUF_INIT;
    buf_append(&n, b->data, off);
    buf_append_str(&n, MASK);
    buf_append_str(&n, (char *)b->data + off + len);
    buf_free(b);
    *b = n;
    return off + strlen(MASK);
}

static bool is_mask(const char *v, size_t len)
{
    return len == strlen(MASK) && strncmp(v, MASK, len) == 0;
}

static size_t value_len(const char *v, size_t k)
{
    if (masked_keys[k].quoted && *v == '\'') {
        size_t i = 1;
        while (v[i] && v[i] != '\'')
            i += (v[i] == '\\' && v[i + 1]) ? 2 : 1;
        return v[i] == '\'' ? i + 1 : i; /* an unterminated value runs to the end */
    }
    return strcspn(v, masked_keys[k].stop);
}

static void mask_keys(struct buf *b)
{
    for (size_t k = 0; k < sizeof(masked_keys) / sizeof(masked_keys[0]); k++) {
        size_t klen = strlen(masked_keys[k].key);
        size_t pos = 0;
        const char *p;
        while ((p = strcasestr((char *)b->data + pos, masked_keys[k].key)) != NULL) {
            const char *s = (char *)b->data;
            const char *v = p + klen;
            v += strspn(v, " \t");
            if (*v != masked_keys[k].sep) {
                pos = (size_t)(p - s) + klen;
                continue;
            }
            v++;
            v += strspn(v, " \t");
            size_t vlen = value_len(v, k);
            if (vlen == 0 || is_mask(v, vlen)) {
                pos = (size_t)(v - s);
                continue;
            }
            pos = mask_range(b, (size_t)(v - s), vlen);
        }
    }
}

/* "scheme://user:password@host": the password part of a URI's user info. */
static void mask_uri_passwords(struct buf *b)
{
    size_t pos = 0;
    const char *p;
    while ((p = strstr((char *)b->data + pos, "://")) != NULL) {
        const char *s = (char *)b->data;
        const char *user = p + 3;
        size_t n = strcspn(user, "/?#@ \t\n\"'");
        pos = (size_t)(user - s);
        if (user[n] != '@')
            continue;
        const char *colon = memchr(user, ':', n);
        if (!colon || colon + 1 == user + n || is_mask(colon + 1, (size_t)(user + n - colon - 1)))
            continue;
        pos = mask_range(b, (size_t)(colon + 1 - s), (size_t)(user + n - colon - 1));
    }
}

/*
 * Registered secrets in one left-to-right pass, the longest match first at each place:
 * a secret that is part of another cannot leave the rest of the longer one readable,
 * and a secret made of mask characters cannot match its own replacement.
 */
static void mask_secrets(struct buf *b)
{
    if (nsecrets == 0)
        return;
    struct buf n = BUF_INIT;
    const char *s = (const char *)b->data;
    for (size_t i = 0; s[i];) {
        size_t best = 0;
        for (size_t k = 0; k < nsecrets; k++) {
            size_t len = strlen(secrets[k]);
            if (len > best && strncmp(s + i, secrets[k], len) == 0)
                best = len;
        }
        if (best) {
            buf_append_str(&n, MASK);
            i += best;
        } else {
            buf_append(&n, s + i, 1);
            i++;
        }
    }
    buf_append(&n, "", 0); /* an empty result still needs its terminator */
    buf_free(b);
    *b = n;
}

static char *redact_locked(const char *text)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, text);
    buf_append(&b, "", 0);
    mask_secrets(&b);
    mask_keys(&b);
    mask_uri_passwords(&b);
    return buf_steal(&b);
}

char *log_redact(const char *text)
{
    pthread_mutex_lock(&log_lock);
    char *r = redact_locked(text);
    pthread_mutex_unlock(&log_lock);
    return r;
}

/* Length of the valid UTF-8 sequence at s, 0 if it is not one (overlong forms,
 * surrogates and code points past U+10FFFF included). */
static size_t utf8_seq_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp, min;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* syslog priorities (sd-daemon.h's SD_ERR ...) of the levels: detail is information
 * asked for, so it shows at info. */
static const int journal_priority[] = {3, 4, 6, 6, 7};

/* Caller holds log_lock. systemd sets $JOURNAL_STREAM to "DEVICE:INODE" of the stream it
 * connects stdout and stderr to; it is ours only when out is that very file (a child
 * whose stderr was redirected inherits the variable, not the stream). */
static bool journal_locked(FILE *out)
{
    if (to_journal < 0) {
        const char *env = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        char tail;
        to_journal = env && sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
                     fstat(fileno(out), &st) == 0 && (unsigned long long)st.st_dev == dev &&
                     (unsigned long long)st.st_ino == ino;
    }
    return to_journal == 1;
}

/* Copy of text with every byte that is not valid UTF-8 replaced by U+FFFD. */
static char *utf8_clean(const char *text)
{
    struct buf b = BUF_INIT;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        size_t n = utf8_seq_len(s);
        if (n) {
            buf_append(&b, s, n);
            s += n;
        } else {
            buf_append(&b, "\xEF\xBF\xBD", 3);
            s++;
        }
    }
    return buf_steal(&b);
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
    /* The line is made whole and written at once: stderr is unbuffered, and a character
     * at a time was a write(2) each (a backup's debug log: 1,200 of them). */
    struct buf line = BUF_INIT;
    if (journal_locked(out)) {
        /* The journal stamps each line itself and takes "<N>" as its priority: every
         * line of a multi-line message gets it (each line is an entry there). */
        int prio = journal_priority[level];
        buf_appendf(&line, "<%d>", prio);
        for (const char *p = text; *p; p++) {
            buf_append(&line, p, 1);
            if (*p == '\n' && p[1])
                buf_appendf(&line, "<%d>  ", prio);
        }
        buf_append(&line, "\n", 1);
    } else if (current_format == LOG_FORMAT_JSON) {
        /* jansson refuses invalid UTF-8 (a path in another encoding); the line must
         * not vanish, so such bytes become U+FFFD. */
        char *clean = utf8_clean(text);
        json_t *o = json_pack("{s:s, s:s, s:s}", "time", stamp, "level", level_names[level],
                              "message", clean);
        free(clean);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (line) {
            fprintf(out, "%s\n", line);
            free(line);
        }
        json_decref(o);
    } else {
        /* Continuation lines of a multi-line message are indented under the first:
         * the stamp (24), a blank, the level padded to 6 and a blank make 32 columns. */
        buf_appendf(&line, "%s %-6s ", stamp, level_names[level]);
        for (const char *p = text; *p; p++) {
            buf_append(&line, p, 1);
            if (*p == '\n' && p[1])
                buf_appendf(&line, "%32s", "");
        }
        buf_append(&line, "\n", 1);
    }
    if (line.len)
        fwrite(line.data, 1, line.len, out);
    buf_free(&line);
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
