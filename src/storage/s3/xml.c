/* xml.c — just enough XML for S3 answers: find an element, unescape its text. */
#include "s3_int.h"

#include <stdlib.h>
#include <string.h>

const char *s3_xml_find(const char *p, const char *end, const char *tag, const char **cend,
                        const char **next)
{
    size_t tlen = strlen(tag);
    while (p && p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (!lt)
            return NULL;
        const char *name = lt + 1;
        if ((size_t)(end - name) > tlen && memcmp(name, tag, tlen) == 0) {
            const char *after = name + tlen;
            if (*after == '/' && after + 1 < end && after[1] == '>') {
                *cend = lt; /* <tag/>: empty */
                *next = after + 2;
                return lt;
            }
            if (*after == '>' || *after == ' ') {
                const char *gt = memchr(after, '>', (size_t)(end - after));
                if (!gt)
                    return NULL;
                const char *content = gt + 1;
                if (gt[-1] == '/') {
                    *cend = content;
                    *next = content;
                    return content;
                }
                /* S3 elements of interest do not nest in themselves */
                const char *q = content;
                while (q < end) {
                    const char *c = memchr(q, '<', (size_t)(end - q));
                    if (!c || (size_t)(end - c) < tlen + 3)
                        return NULL;
                    if (c[1] == '/' && memcmp(c + 2, tag, tlen) == 0 && c[2 + tlen] == '>') {
                        *cend = c;
                        *next = c + 3 + tlen;
                        return content;
                    }
                    q = c + 1;
                }
                return NULL;
            }
        }
        p = lt + 1;
    }
    return NULL;
}

static void put_utf8(struct buf *b, unsigned long cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F)), n = 4;
    }
    buf_append(b, u, n);
}

char *s3_xml_unescape(const char *p, size_t len)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    struct buf b = BUF_INIT;
    const char *end = p + len;
    buf_reserve(&b, len);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp) {
            buf_append(&b, p, (size_t)(end - p));
            break;
        }
        buf_append(&b, p, (size_t)(amp - p));
        p = amp + 1;
        bool done = false;
        for (size_t i = 0; i < sizeof(named) / sizeof(named[0]) && !done; i++) {
            size_t n = strlen(named[i].name);
            if ((size_t)(end - p) >= n && memcmp(p, named[i].name, n) == 0) {
                buf_append(&b, &named[i].c, 1);
                p += n;
                done = true;
            }
        }
        if (!done && p < end && *p == '#') {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            char *num_end = NULL;
            unsigned long cp = 0;
            if (semi && semi - p > 1) {
                if (p[1] == 'x' || p[1] == 'X')
                    cp = strtoul(p + 2, &num_end, 16);
                else
                    cp = strtoul(p + 1, &num_end, 10);
            }
            if (semi && num_end == semi && cp > 0 && cp <= 0x10FFFF) {
                put_utf8(&b, cp);
                p = semi + 1;
                done = true;
            }
        }
        if (!done) {
            buf_free(&b);
            return NULL;
        }
    }
    return buf_steal(&b);
}

char *s3_xml_get(const char *p, const char *end, const char *tag)
{
    const char *cend, *next;
    const char *c = s3_xml_find(p, end, tag, &cend, &next);
    return c ? s3_xml_unescape(c, (size_t)(cend - c)) : NULL;
}
