/*
 * curl_dl.c — libcurl, loaded on first use.
 *
 * pgark is not linked with libcurl: PostgreSQL runs `pgark wal-fetch` once per WAL
 * segment, serially with replay, and most calls are served from the read-ahead cache
 * without any HTTP. Linking libcurl (and the ~25 libraries it needs: gssapi, ldap,
 * nghttp2, ssh2, ...) cost every such call several ms of dynamic loading. These
 * definitions of the functions pgark uses forward to libcurl.so.4, dlopen'ed by the
 * first of them (pgark/dl.h: a library that cannot be loaded ends the process). They
 * keep libcurl's own names, so src/http reads as libcurl's documented calls (pgark/dl.h
 * says why that is safe).
 */
#define CURL_DISABLE_TYPECHECK /* the header's checking macros would eat the definitions */
#include <curl/curl.h>

#include "pgark/dl.h"

#include <stdarg.h>

#define CURL_FUNCTIONS(X)                                                                          \
    X(curl_easy_cleanup)                                                                           \
    X(curl_easy_getinfo)                                                                           \
    X(curl_easy_init)                                                                              \
    X(curl_easy_pause)                                                                             \
    X(curl_easy_perform)                                                                           \
    X(curl_easy_reset)                                                                             \
    X(curl_easy_setopt)                                                                            \
    X(curl_easy_strerror)                                                                          \
    X(curl_global_init)                                                                            \
    X(curl_multi_add_handle)                                                                       \
    X(curl_multi_cleanup)                                                                          \
    X(curl_multi_info_read)                                                                        \
    X(curl_multi_init)                                                                             \
    X(curl_multi_perform)                                                                          \
    X(curl_multi_poll)                                                                             \
    X(curl_multi_remove_handle)                                                                    \
    X(curl_multi_setopt)                                                                           \
    X(curl_multi_wakeup)                                                                           \
    X(curl_slist_append)                                                                           \
    X(curl_slist_free_all)

DL_LIBRARY(CURL_FUNCTIONS, "libcurl.so.4", "libcurl4");

/* The setopt calls take exactly one argument after the option, whose type the option's
 * number range gives (CURLOPTTYPE_*, the same numbering for CURLMOPT_*): read it as
 * that type and pass it on. */
#define FORWARD_OPTION(rc, fn, handle, option, ap)                                                 \
    do {                                                                                           \
        if ((option) < CURLOPTTYPE_OBJECTPOINT)                                                    \
            rc = DL_REAL(fn)(handle, option, va_arg(ap, long));                                    \
        else if ((option) < CURLOPTTYPE_FUNCTIONPOINT || (option) >= CURLOPTTYPE_BLOB)             \
            rc = DL_REAL(fn)(handle, option, va_arg(ap, void *));                                  \
        else if ((option) < CURLOPTTYPE_OFF_T)                                                     \
            rc = DL_REAL(fn)(handle, option, va_arg(ap, void (*)(void)));                          \
        else                                                                                       \
            rc = DL_REAL(fn)(handle, option, va_arg(ap, curl_off_t));                              \
    } while (0)

/* The names of the variadic ones are parenthesized: curl.h defines them as macros. */

CURLcode(curl_easy_setopt)(CURL *curl, CURLoption option, ...)
{
    CURLcode rc;
    va_list ap;
    va_start(ap, option);
    FORWARD_OPTION(rc, curl_easy_setopt, curl, option, ap);
    va_end(ap);
    return rc;
}

CURLMcode(curl_multi_setopt)(CURLM *multi, CURLMoption option, ...)
{
    CURLMcode rc;
    va_list ap;
    va_start(ap, option);
    FORWARD_OPTION(rc, curl_multi_setopt, multi, option, ap);
    va_end(ap);
    return rc;
}

/* Every CURLINFO_* takes a pointer to where the value goes. */
CURLcode(curl_easy_getinfo)(CURL *curl, CURLINFO info, ...)
{
    va_list ap;
    va_start(ap, info);
    CURLcode rc = DL_REAL(curl_easy_getinfo)(curl, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode curl_global_init(long flags)
{
    return DL_REAL(curl_global_init)(flags);
}

CURL *curl_easy_init(void)
{
    return DL_REAL(curl_easy_init)();
}

void curl_easy_cleanup(CURL *curl)
{
    DL_REAL(curl_easy_cleanup)(curl);
}

void curl_easy_reset(CURL *curl)
{
    DL_REAL(curl_easy_reset)(curl);
}

CURLcode curl_easy_perform(CURL *curl)
{
    return DL_REAL(curl_easy_perform)(curl);
}

CURLcode curl_easy_pause(CURL *curl, int bitmask)
{
    return DL_REAL(curl_easy_pause)(curl, bitmask);
}

const char *curl_easy_strerror(CURLcode code)
{
    return DL_REAL(curl_easy_strerror)(code);
}

CURLM *curl_multi_init(void)
{
    return DL_REAL(curl_multi_init)();
}

CURLMcode curl_multi_cleanup(CURLM *multi)
{
    return DL_REAL(curl_multi_cleanup)(multi);
}

CURLMcode curl_multi_add_handle(CURLM *multi, CURL *curl)
{
    return DL_REAL(curl_multi_add_handle)(multi, curl);
}

CURLMcode curl_multi_remove_handle(CURLM *multi, CURL *curl)
{
    return DL_REAL(curl_multi_remove_handle)(multi, curl);
}

CURLMcode curl_multi_perform(CURLM *multi, int *running)
{
    return DL_REAL(curl_multi_perform)(multi, running);
}

CURLMcode curl_multi_poll(CURLM *multi, struct curl_waitfd extra_fds[], unsigned int extra_nfds,
                          int timeout_ms, int *ret)
{
    return DL_REAL(curl_multi_poll)(multi, extra_fds, extra_nfds, timeout_ms, ret);
}

CURLMcode curl_multi_wakeup(CURLM *multi)
{
    return DL_REAL(curl_multi_wakeup)(multi);
}

CURLMsg *curl_multi_info_read(CURLM *multi, int *msgs_in_queue)
{
    return DL_REAL(curl_multi_info_read)(multi, msgs_in_queue);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *data)
{
    return DL_REAL(curl_slist_append)(list, data);
}

void curl_slist_free_all(struct curl_slist *list)
{
    DL_REAL(curl_slist_free_all)(list);
}
