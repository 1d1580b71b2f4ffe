/* error.c — the per-thread error slot (see include/pgark/error.h). */
#include "pgark/error.h"

#include "pgark/log.h"
#include "pgark/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MAX_CONTEXT 16

struct err_saved {
    enum err_kind kind;
    char *message;
    char *hint;
    char *context[ERR_MAX_CONTEXT];
    int ncontext;
};

static __thread struct err_saved slot;

static void slot_release(struct err_saved *s)
{
    free(s->message);
    free(s->hint);
    for (int i = 0; i < s->ncontext; i++)
        free(s->context[i]);
    memset(s, 0, sizeof(*s));
}

int err_setv(enum err_kind kind, const char *fmt, va_list ap)
{
    if (kind <= ERR_OK || kind >= ERR_KIND_COUNT)
        kind = ERR_RUNTIME;
    char *message = xvasprintf(fmt, ap);
    slot_release(&slot);
    slot.kind = kind;
    slot.message = message;
    return -(int)kind;
}

int err_set(enum err_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = err_setv(kind, fmt, ap);
    va_end(ap);
    return rc;
}

int err_set_errno(enum err_kind kind, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = xvasprintf(fmt, ap);
    va_end(ap);
    if (kind == ERR_IO || kind == ERR_RUNTIME) {
        if (errnum == ENOSPC || errnum == EDQUOT)
            kind = ERR_NO_SPACE;
        else if (errnum == EACCES || errnum == EPERM)
            kind = ERR_AUTH;
        else if (errnum == ENOENT)
            kind = ERR_NOT_FOUND;
    }
    int rc = err_set(kind, "%s: %s", text, strerror(errnum));
    free(text);
    return rc;
}

int err_code(void)
{
    return slot.kind == ERR_OK ? -(int)ERR_RUNTIME : -(int)slot.kind;
}

int err_context(const char *fmt, ...)
{
    if (slot.kind == ERR_OK) {
        slot.kind = ERR_RUNTIME;
        slot.message = xstrdup("unknown error");
    }
    if (slot.ncontext < ERR_MAX_CONTEXT) {
        va_list ap;
        va_start(ap, fmt);
        slot.context[slot.ncontext++] = xvasprintf(fmt, ap);
        va_end(ap);
    }
    return err_code();
}

int err_hint(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *hint = xvasprintf(fmt, ap);
    va_end(ap);
    free(slot.hint);
    slot.hint = hint;
    return err_code();
}

enum err_kind err_kind(void)
{
    return slot.kind;
}

const char *err_kind_name(enum err_kind kind)
{
    static const char *const names[ERR_KIND_COUNT] = {
        [ERR_OK] = "ok",
        [ERR_RUNTIME] = "runtime",
        [ERR_USAGE] = "usage",
        [ERR_CONFIG] = "config",
        [ERR_INTEGRITY] = "integrity",
        [ERR_NOT_FOUND] = "not_found",
        [ERR_EXISTS] = "exists",
        [ERR_IO] = "io",
        [ERR_NO_SPACE] = "no_space",
        [ERR_AUTH] = "auth",
        [ERR_PROTOCOL] = "protocol",
        [ERR_CONNECT] = "connect",
        [ERR_TRANSIENT] = "transient",
        [ERR_MISMATCH] = "mismatch",
        [ERR_CANCELED] = "canceled",
        [ERR_UNSUPPORTED] = "unsupported",
    };
    return (kind >= 0 && kind < ERR_KIND_COUNT) ? names[kind] : "unknown";
}

const char *err_message(void)
{
    return slot.message ? slot.message : "";
}

const char *err_hint_text(void)
{
    return slot.hint;
}

char *err_format(void)
{
    struct buf b = BUF_INIT;
    buf_append_str(&b, err_message());
    for (int i = 0; i < slot.ncontext; i++)
        buf_appendf(&b, "\n  %s", slot.context[i]);
    return buf_steal(&b);
}

bool err_is_set(void)
{
    return slot.kind != ERR_OK;
}

void err_clear(void)
{
    slot_release(&slot);
}

int err_exit_code(void)
{
    switch (slot.kind) {
    case ERR_OK:
        return 0;
    case ERR_USAGE:
    case ERR_CONFIG:
        return 2;
    case ERR_INTEGRITY:
        return 3;
    default:
        return 1;
    }
}

static void print_at(enum log_level level)
{
    if (slot.kind == ERR_OK)
        return;
    char *text = err_format();
    log_msg(level, "%s", text);
    if (slot.hint)
        log_msg(level, "hint: %s", slot.hint);
    free(text);
    err_clear();
}

void err_print(void)
{
    print_at(LOG_ERROR);
}

void err_print_warn(void)
{
    print_at(LOG_WARN);
}

struct err_saved *err_save(void)
{
    struct err_saved *s = xmalloc(sizeof(*s));
    *s = slot;
    memset(&slot, 0, sizeof(slot));
    return s;
}

void err_restore(struct err_saved *saved)
{
    if (!saved)
        return;
    slot_release(&slot);
    slot = *saved;
    free(saved);
}

struct err_saved *err_saved_copy(const struct err_saved *saved)
{
    if (!saved)
        return NULL;
    struct err_saved *c = xcalloc(1, sizeof(*c));
    c->kind = saved->kind;
    c->message = saved->message ? xstrdup(saved->message) : NULL;
    c->hint = saved->hint ? xstrdup(saved->hint) : NULL;
    for (int i = 0; i < saved->ncontext; i++)
        c->context[i] = xstrdup(saved->context[i]);
    c->ncontext = saved->ncontext;
    return c;
}

void err_saved_free(struct err_saved *saved)
{
    if (!saved)
        return;
    slot_release(saved);
    free(saved);
}
