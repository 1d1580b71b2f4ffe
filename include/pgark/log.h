/*
 * log.h — leveled logging to stderr.
 *
 * Promise: one line per message, with timestamp and level ("text"), or one JSON
 * object per line ("json"). Registered secrets and anything that looks like a
 * password=, secret, token or Authorization value are replaced by "********" before a
 * line is written. Thread-safe: lines from several threads never interleave.
 */
#ifndef PGARK_LOG_H
#define PGARK_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DETAIL, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* Parse "error|warn|info|detail|debug"; returns 0 or -ERR_USAGE with the error set. */
int log_level_parse(const char *text, enum log_level *out);
int log_format_parse(const char *text, enum log_format *out);
const char *log_level_name(enum log_level level);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_format(enum log_format format);
/* Send lines to another stream (tests); NULL restores stderr. Not owned. */
void log_set_stream(FILE *stream);
bool log_enabled(enum log_level level);

/* Register a secret (copied) to be masked in every later line; empty strings ignored. */
void log_add_secret(const char *secret);
/* Mask secrets in text: returns a new string the caller frees. */
char *log_redact(const char *text);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msgv(enum log_level level, const char *fmt, va_list ap);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_detail(...) log_msg(LOG_DETAIL, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
