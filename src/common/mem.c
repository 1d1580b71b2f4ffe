/* mem.c — allocators that do not return NULL, a growable buffer, shared and per-thread
 * objects. */
#include "pgark/mem.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "pgark: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        oom(count * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        oom(0);
    char *p = xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void secure_zero(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
}

void secure_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0'; /* a fresh buffer too: "always NUL-terminated" */
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_file(struct buf *b, FILE *f)
{
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(b, chunk, n);
}

void buf_append_xml_escaped(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            buf_append_str(b, "&amp;");
            break;
        case '<':
            buf_append_str(b, "&lt;");
            break;
        case '>':
            buf_append_str(b, "&gt;");
            break;
        case '"':
            buf_append_str(b, "&quot;");
            break;
        case '\'':
            buf_append_str(b, "&apos;");
            break;
        default:
            if ((unsigned char)*s < 0x20)
                buf_appendf(b, "&#x%X;", (unsigned)(unsigned char)*s);
            else
                buf_append(b, s, 1);
        }
    }
}

void buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap, copy;
    va_start(ap, fmt);
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        oom(0);
    buf_reserve(b, (size_t)n);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    va_end(ap);
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_steal(struct buf *b)
{
    if (!b->data)
        buf_reserve(b, 0), b->data[0] = '\0';
    char *p = (char *)b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_free(struct buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

struct refbuf {
    atomic_size_t refs;
    void *data;
    void (*release)(void *data);
};

struct refbuf *refbuf_new(void *data, void (*release)(void *data))
{
    struct refbuf *r = xmalloc(sizeof(*r));
    atomic_init(&r->refs, 1);
    r->data = data;
    r->release = release;
    return r;
}

void refbuf_get(struct refbuf *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void refbuf_put(struct refbuf *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (r->release)
        r->release(r->data);
    free(r);
}

void *thread_slot_get(struct thread_slot *s)
{
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
        pthread_mutex_lock(&s->lock);
        if (!atomic_load_explicit(&s->ready, memory_order_relaxed)) {
            if (pthread_key_create(&s->key, s->destroy) != 0)
                abort(); /* only when out of keys or memory */
            atomic_store_explicit(&s->ready, true, memory_order_release);
        }
        pthread_mutex_unlock(&s->lock);
    }
    void *obj = pthread_getspecific(s->key);
    if (!obj) {
        obj = xcalloc(1, s->size);
        if (pthread_setspecific(s->key, obj) != 0)
            abort(); /* out of memory */
    }
    return obj;
}
