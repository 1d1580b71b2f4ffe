/* tarbuild.c — in-memory tar writer for tests (see tarbuild.h). */
#include "tarbuild.h"

#include <stdio.h>
#include <string.h>

static void put_octal(uint8_t *f, size_t n, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%0*llo", (int)(n - 1), (unsigned long long)v);
    memcpy(f, tmp, n - 1);
    f[n - 1] = '\0';
}

static void put_base256(uint8_t *f, size_t n, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (size_t i = n; i-- > 1;) {
        f[i] = (uint8_t)u;
        u = v < 0 ? (u >> 8) | (UINT64_C(0xff) << 56) : u >> 8;
    }
    f[0] = v < 0 ? 0xff : 0x80;
}

size_t tb_header(struct buf *out, const struct tb_header *h)
{
    uint8_t b[512];
    memset(b, 0, sizeof(b));
    size_t nl = strlen(h->name);
    memcpy(b, h->name, nl > 100 ? 100 : nl);
    put_octal(b + 100, 8, h->mode);
    put_octal(b + 108, 8, 0);
    put_octal(b + 116, 8, 0);
    if (h->base256) {
        put_base256(b + 124, 12, (int64_t)h->size);
        put_base256(b + 136, 12, h->mtime);
    } else {
        put_octal(b + 124, 12, h->size);
        put_octal(b + 136, 12, (uint64_t)h->mtime);
    }
    b[156] = (uint8_t)h->type;
    if (h->link) {
        size_t ll = strlen(h->link);
        memcpy(b + 157, h->link, ll > 100 ? 100 : ll);
    }
    if (h->gnu_magic)
        memcpy(b + 257, "ustar  \0", 8);
    else
        memcpy(b + 257,
               "ustar\0"
               "00",
               8);
    if (h->prefix) {
        size_t pl = strlen(h->prefix);
        memcpy(b + 345, h->prefix, pl > 155 ? 155 : pl);
    }
    memset(b + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; i++)
        sum += b[i];
    char tmp[16];
    snprintf(tmp, sizeof(tmp), "%06o", sum);
    memcpy(b + 148, tmp, 6);
    b[154] = '\0';
    b[155] = ' ';
    size_t at = out->len;
    buf_append(out, b, sizeof(b));
    return at;
}

void tb_data(struct buf *out, const void *data, size_t len)
{
    static const uint8_t zero[512];
    buf_append(out, data, len);
    if (len % 512)
        buf_append(out, zero, 512 - len % 512);
}

void tb_file(struct buf *out, const char *name, const void *data, size_t len)
{
    struct tb_header h = {
        .name = name, .type = '0', .mode = 0600, .size = len, .mtime = 1700000000};
    tb_header(out, &h);
    tb_data(out, data, len);
}

void tb_dir(struct buf *out, const char *name)
{
    struct tb_header h = {.name = name, .type = '5', .mode = 0700, .mtime = 1700000000};
    tb_header(out, &h);
}

void tb_symlink(struct buf *out, const char *name, const char *target)
{
    struct tb_header h = {
        .name = name, .type = '2', .mode = 0777, .mtime = 1700000000, .link = target};
    tb_header(out, &h);
}

void tb_pax_record(struct buf *rec, const char *key, const char *value)
{
    size_t body = 1 + strlen(key) + 1 + strlen(value) + 1; /* " key=value\n" */
    size_t len = body + 1;
    for (;;) {
        char tmp[24];
        size_t digits = (size_t)snprintf(tmp, sizeof(tmp), "%zu", len);
        if (digits + body == len)
            break;
        len = digits + body;
    }
    buf_appendf(rec, "%zu %s=%s\n", len, key, value);
}

void tb_pax(struct buf *out, char type, const struct buf *rec)
{
    struct tb_header h = {
        .name = "PaxHeaders/x", .type = type, .mode = 0644, .size = rec->len, .mtime = 1700000000};
    tb_header(out, &h);
    tb_data(out, rec->data, rec->len);
}

void tb_gnu_long(struct buf *out, char type, const char *text)
{
    size_t n = strlen(text) + 1;
    struct tb_header h = {
        .name = "././@LongLink", .type = type, .mode = 0644, .size = n, .gnu_magic = true};
    tb_header(out, &h);
    tb_data(out, text, n);
}

void tb_end(struct buf *out)
{
    static const uint8_t zero[1024];
    buf_append(out, zero, sizeof(zero));
}
