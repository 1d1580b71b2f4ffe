/* tar.c — streaming tar reader (see include/pgark/tar.h). */
#include "pgark/tar.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum tar_state {
    ST_HEADER, /* gathering a 512-byte header */
    ST_EXT,    /* gathering a pax / GNU extended payload */
    ST_DATA,   /* passing an entry's data through */
    ST_PAD,    /* skipping padding to the next block */
    ST_END,    /* after the end marker: only zero bytes allowed */
    ST_FAILED,
};

struct tar_reader {
    struct tar_callbacks cb;
    void *arg;
    enum tar_state state;
    int failed_code;

    uint8_t hdr[TAR_BLOCK];
    size_t hdr_have;
    bool zero_pending; /* one zero block seen; the next must be zero too */
    uint64_t zero_offset;

    /* extended header being read */
    char ext_type;
    uint64_t ext_size;
    uint64_t ext_have;
    uint64_t ext_offset;
    struct buf ext;

    /* overrides for the next real header */
    bool have_pax_path, have_pax_link, have_pax_size, have_pax_mtime;
    bool have_gnu_path, have_gnu_link;
    struct buf pax_path, pax_link, gnu_path, gnu_link;
    uint64_t pax_size;
    int64_t pax_mtime;

    /* current entry */
    bool pad_is_entry; /* the padding being skipped ends an entry (vs an extended header) */
    uint64_t remaining;
    uint64_t entry_size;
    uint64_t pad;
    struct buf path, link;

    uint64_t offset;
    uint64_t entries;
};

static uint64_t pad_of(uint64_t size)
{
    return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

static int fail(struct tar_reader *r, int code)
{
    r->state = ST_FAILED;
    r->failed_code = code < 0 ? code : -ERR_RUNTIME;
    return r->failed_code;
}

struct tar_reader *tar_reader_new(const struct tar_callbacks *cb, void *arg)
{
    struct tar_reader *r = xcalloc(1, sizeof(*r));
    if (cb)
        r->cb = *cb;
    r->arg = arg;
    r->state = ST_HEADER;
    return r;
}

void tar_reader_free(struct tar_reader *r)
{
    if (!r)
        return;
    buf_free(&r->ext);
    buf_free(&r->pax_path);
    buf_free(&r->pax_link);
    buf_free(&r->gnu_path);
    buf_free(&r->gnu_link);
    buf_free(&r->path);
    buf_free(&r->link);
    free(r);
}

uint64_t tar_reader_offset(const struct tar_reader *r)
{
    return r->offset;
}

uint64_t tar_reader_entries(const struct tar_reader *r)
{
    return r->entries;
}

/* A numeric header field: octal digits (leading spaces allowed, ended by space/NUL or
 * the field's end), or base-256 when the top bit of the first byte is set. */
static int parse_number(const uint8_t *f, size_t n, bool allow_negative, int64_t *out)
{
    if (f[0] & 0x80) {
        bool negative = f[0] == 0xff;
        if (f[0] != 0x80 && !negative)
            return -1;
        if (negative && !allow_negative)
            return -1;
        uint64_t v = 0;
        for (size_t i = 1; i < n; i++) {
            if (v >> 56)
                return -1;
            v = (v << 8) | (uint8_t)(negative ? ~f[i] : f[i]);
        }
        if (v > INT64_MAX)
            return -1;
        /* two's complement: -(~v + 1) for negative */
        *out = negative ? -(int64_t)v - 1 : (int64_t)v;
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    if (i < n && f[i] != ' ' && f[i] != '\0')
        return -1;
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    (void)digits;
    *out = (int64_t)v;
    return 0;
}

static bool block_is_zero(const uint8_t *b)
{
    for (size_t i = 0; i < TAR_BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

static size_t field_len(const uint8_t *f, size_t n)
{
    const uint8_t *z = memchr(f, '\0', n);
    return z ? (size_t)(z - f) : n;
}

static void set_buf(struct buf *b, const void *data, size_t len)
{
    buf_reset(b);
    buf_append(b, data, len);
}

/* Strip "./" prefixes and trailing slashes; refuse empty, absolute and ".." paths. */
static int normalise_path(struct tar_reader *r, struct buf *p, uint64_t hdr_offset)
{
    size_t start = 0;
    while (p->len - start >= 2 && p->data[start] == '.' && p->data[start + 1] == '/') {
        start += 2;
        while (start < p->len && p->data[start] == '/')
            start++;
    }
    size_t end = p->len;
    while (end > start && p->data[end - 1] == '/')
        end--;
    if (start > 0 || end < p->len) {
        memmove(p->data, p->data + start, end - start);
        p->len = end - start;
        p->data[p->len] = '\0';
    }
    if (p->len == 0 && start > 0)
        set_buf(p, ".", 1); /* the archive's own top directory, "./" */
    if (p->len == 0)
        return fail(r, err_set(ERR_INTEGRITY, "tar entry at offset %" PRIu64 " has an empty name",
                               hdr_offset));
    if (memchr(p->data, '\0', p->len))
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar entry name at offset %" PRIu64 " contains a NUL byte",
                               hdr_offset));
    bool unsafe = p->data[0] == '/';
    const char *s = (const char *)p->data;
    for (size_t i = 0; i < p->len && !unsafe; i++) {
        bool starts = i == 0 || s[i - 1] == '/';
        if (starts && i + 1 < p->len && s[i] == '.' && s[i + 1] == '.' &&
            (i + 2 == p->len || s[i + 2] == '/'))
            unsafe = true;
    }
    if (unsafe)
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar entry at offset %" PRIu64 " has an unsafe path \"%s\"",
                               hdr_offset, s));
    return 0;
}

/* Parse "LEN key=value\n" records of a pax extended header. */
static int parse_pax(struct tar_reader *r)
{
    const char *p = (const char *)r->ext.data;
    size_t left = r->ext.len;
    while (left > 0) {
        size_t i = 0;
        uint64_t len = 0;
        while (i < left && i < 20 && p[i] >= '0' && p[i] <= '9')
            len = len * 10 + (uint64_t)(p[i++] - '0');
        if (i == 0 || i >= left || p[i] != ' ' || len <= i + 1 || len > left || p[len - 1] != '\n')
            goto bad;
        const char *key = p + i + 1;
        const char *eq = memchr(key, '=', (size_t)(p + len - 1 - key));
        if (!eq)
            goto bad;
        size_t klen = (size_t)(eq - key);
        const char *val = eq + 1;
        size_t vlen = (size_t)(p + len - 1 - val);
        if (klen == 4 && !memcmp(key, "path", 4)) {
            set_buf(&r->pax_path, val, vlen);
            r->have_pax_path = true;
        } else if (klen == 8 && !memcmp(key, "linkpath", 8)) {
            set_buf(&r->pax_link, val, vlen);
            r->have_pax_link = true;
        } else if (klen == 4 && !memcmp(key, "size", 4)) {
            uint64_t v = 0;
            if (vlen == 0 || vlen > 19)
                goto bad;
            for (size_t k = 0; k < vlen; k++) {
                if (val[k] < '0' || val[k] > '9')
                    goto bad;
                v = v * 10 + (uint64_t)(val[k] - '0');
            }
            r->pax_size = v;
            r->have_pax_size = true;
        } else if (klen == 5 && !memcmp(key, "mtime", 5)) {
            size_t k = 0;
            bool neg = vlen > 0 && val[0] == '-';
            if (neg)
                k++;
            int64_t v = 0;
            size_t digits = 0;
            for (; k < vlen && val[k] >= '0' && val[k] <= '9'; k++, digits++) {
                if (digits >= 18)
                    goto bad;
                v = v * 10 + (val[k] - '0');
            }
            if (digits == 0)
                goto bad;
            if (k < vlen && val[k] == '.')
                for (k++; k < vlen; k++)
                    if (val[k] < '0' || val[k] > '9')
                        goto bad;
            if (k != vlen)
                goto bad;
            r->pax_mtime = neg ? -v : v;
            r->have_pax_mtime = true;
        }
        p += len;
        left -= len;
    }
    return 0;
bad:
    return fail(r,
                err_set(ERR_INTEGRITY, "malformed pax record in extended header at offset %" PRIu64,
                        r->ext_offset));
}

static void clear_overrides(struct tar_reader *r)
{
    r->have_pax_path = r->have_pax_link = r->have_pax_size = r->have_pax_mtime = false;
    r->have_gnu_path = r->have_gnu_link = false;
}

static bool overrides_pending(const struct tar_reader *r)
{
    return r->have_pax_path || r->have_pax_link || r->have_pax_size || r->have_pax_mtime ||
           r->have_gnu_path || r->have_gnu_link;
}

/* The extended payload is complete: record what it says for the next header. */
static int ext_done(struct tar_reader *r)
{
    int rc = 0;
    if (r->ext_type == 'x') {
        rc = parse_pax(r);
    } else if (r->ext_type == 'L' || r->ext_type == 'K') {
        size_t n = field_len(r->ext.data, r->ext.len);
        set_buf(r->ext_type == 'L' ? &r->gnu_path : &r->gnu_link, r->ext.data, n);
        if (r->ext_type == 'L')
            r->have_gnu_path = true;
        else
            r->have_gnu_link = true;
    }
    buf_reset(&r->ext);
    return rc;
}

static int entry_done(struct tar_reader *r)
{
    r->entries++;
    if (r->cb.entry_end) {
        int rc = r->cb.entry_end(r->arg);
        if (rc < 0)
            return fail(r, rc);
    }
    return 0;
}

/* Take the state machine through transitions that need no more input. */
static int settle(struct tar_reader *r)
{
    for (;;) {
        if (r->state == ST_EXT && r->ext_have == r->ext_size) {
            r->state = ST_PAD;
            r->pad = pad_of(r->ext_size);
            r->pad_is_entry = false;
            int rc = ext_done(r);
            if (rc < 0)
                return rc;
        } else if (r->state == ST_DATA && r->remaining == 0) {
            r->state = ST_PAD;
            r->pad = pad_of(r->entry_size);
            r->pad_is_entry = true;
        } else if (r->state == ST_PAD && r->pad == 0) {
            r->state = ST_HEADER;
            if (r->pad_is_entry) {
                int rc = entry_done(r);
                if (rc < 0)
                    return rc;
            }
        } else {
            return 0;
        }
    }
}

/* Long: one header block checked and read in the order the format asks (end marker,
 * checksum, ustar magic, numeric fields, type, name, link target), each check with its
 * own message at the header's offset; the later steps use the fields and the pax or GNU
 * overrides read before them.
 */
static int header_done(struct tar_reader *r)
{
    const uint8_t *h = r->hdr;
    uint64_t at = r->offset - TAR_BLOCK;

    if (block_is_zero(h)) {
        if (!r->zero_pending) {
            r->zero_pending = true;
            r->zero_offset = at;
            return 0;
        }
        if (overrides_pending(r))
            return fail(r, err_set(ERR_INTEGRITY,
                                   "tar extended header is not followed by an entry before "
                                   "the end marker at offset %" PRIu64,
                                   r->zero_offset));
        r->state = ST_END;
        return 0;
    }
    if (r->zero_pending)
        return fail(r, err_set(ERR_INTEGRITY,
                               "lone zero block at offset %" PRIu64 " inside the tar archive",
                               r->zero_offset));

    int64_t stored;
    if (parse_number(h + 148, 8, false, &stored) < 0)
        return fail(r, err_set(ERR_INTEGRITY,
                               "unreadable checksum field in tar header at offset %" PRIu64, at));
    int64_t usum = 0, ssum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++) {
        uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
        usum += c;
        ssum += (int8_t)c;
    }
    if (stored != usum && stored != ssum)
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar header checksum mismatch at offset %" PRIu64 " (stored %" PRIo64
                               ", computed %" PRIo64 ")",
                               at, (uint64_t)stored, (uint64_t)usum));

    bool posix = !memcmp(h + 257, "ustar\0", 6);
    bool gnu = !memcmp(h + 257, "ustar  \0", 8);
    if (!posix && !gnu)
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar header at offset %" PRIu64 " is not in ustar format", at));

    int64_t size, mtime, mode;
    if (parse_number(h + 124, 12, false, &size) < 0 ||
        parse_number(h + 136, 12, true, &mtime) < 0 || parse_number(h + 100, 8, false, &mode) < 0)
        return fail(r, err_set(ERR_INTEGRITY,
                               "unreadable numeric field in tar header at offset %" PRIu64, at));

    char type = (char)h[156];
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
        if (type != 'g' && (uint64_t)size > TAR_EXT_MAX)
            return fail(r, err_set(ERR_INTEGRITY,
                                   "tar extended header at offset %" PRIu64
                                   " is too large (%" PRId64 " bytes)",
                                   at, size));
        r->ext_type = type;
        r->ext_size = (uint64_t)size;
        r->ext_have = 0;
        r->ext_offset = at;
        buf_reset(&r->ext);
        r->state = ST_EXT;
        return settle(r);
    }

    enum tar_type t;
    switch (type) {
    case '0':
    case '\0':
    case '7':
        t = TAR_TYPE_FILE;
        break;
    case '1':
        t = TAR_TYPE_HARDLINK;
        break;
    case '2':
        t = TAR_TYPE_SYMLINK;
        break;
    case '5':
        t = TAR_TYPE_DIR;
        break;
    default:
        return fail(r, err_set(ERR_INTEGRITY,
                               "unsupported tar entry type '%c' (0x%02x) at offset %" PRIu64,
                               type >= 0x20 && type < 0x7f ? type : '?', (uint8_t)type, at));
    }

    /* name */
    if (r->have_pax_path) {
        set_buf(&r->path, r->pax_path.data, r->pax_path.len);
    } else if (r->have_gnu_path) {
        set_buf(&r->path, r->gnu_path.data, r->gnu_path.len);
    } else {
        buf_reset(&r->path);
        size_t plen = posix ? field_len(h + 345, 155) : 0;
        if (plen) {
            buf_append(&r->path, h + 345, plen);
            buf_append(&r->path, "/", 1);
        }
        buf_append(&r->path, h, field_len(h, 100));
    }
    int rc = normalise_path(r, &r->path, at);
    if (rc < 0)
        return rc;

    /* link target */
    bool has_link = t == TAR_TYPE_SYMLINK || t == TAR_TYPE_HARDLINK;
    if (has_link) {
        if (r->have_pax_link)
            set_buf(&r->link, r->pax_link.data, r->pax_link.len);
        else if (r->have_gnu_link)
            set_buf(&r->link, r->gnu_link.data, r->gnu_link.len);
        else
            set_buf(&r->link, h + 157, field_len(h + 157, 100));
        if (r->link.len == 0 || memchr(r->link.data, '\0', r->link.len))
            return fail(r, err_set(ERR_INTEGRITY,
                                   "link entry \"%s\" at offset %" PRIu64
                                   " has an empty or malformed target",
                                   (const char *)r->path.data, at));
    }

    struct tar_entry e = {
        .path = (const char *)r->path.data,
        .link = has_link ? (const char *)r->link.data : NULL,
        .type = t,
        .mode = (uint32_t)mode & 07777,
        .size = r->have_pax_size ? r->pax_size : (uint64_t)size,
        .mtime = r->have_pax_mtime ? r->pax_mtime : mtime,
        .offset = at,
    };
    /* Directories carry no data whatever the size field says (POSIX). */
    if (t == TAR_TYPE_DIR)
        e.size = 0;
    clear_overrides(r);

    r->entry_size = e.size;
    r->remaining = e.size;
    r->state = ST_DATA;
    if (r->cb.entry_begin) {
        rc = r->cb.entry_begin(r->arg, &e);
        if (rc < 0)
            return fail(r, rc);
    }
    return settle(r);
}

int tar_reader_feed(struct tar_reader *r, const void *data, size_t len)
{
    const uint8_t *p = data;
    int rc = 0;

    if (r->state == ST_FAILED)
        return err_set(ERR_RUNTIME, "tar reader used after an earlier error");

    while (len > 0) {
        size_t n;
        switch (r->state) {
        case ST_HEADER:
            n = TAR_BLOCK - r->hdr_have;
            if (n > len)
                n = len;
            memcpy(r->hdr + r->hdr_have, p, n);
            r->hdr_have += n;
            r->offset += n;
            if (r->hdr_have == TAR_BLOCK) {
                r->hdr_have = 0;
                rc = header_done(r);
            }
            break;
        case ST_EXT:
            n = r->ext_size - r->ext_have < len ? (size_t)(r->ext_size - r->ext_have) : len;
            if (r->ext_type != 'g')
                buf_append(&r->ext, p, n);
            r->ext_have += n;
            r->offset += n;
            rc = settle(r);
            break;
        case ST_DATA:
            n = r->remaining < len ? (size_t)r->remaining : len;
            r->remaining -= n;
            r->offset += n;
            if (r->cb.entry_data) {
                rc = r->cb.entry_data(r->arg, p, n);
                if (rc < 0) {
                    fail(r, rc);
                    break;
                }
            }
            rc = settle(r);
            break;
        case ST_PAD:
            n = r->pad < len ? (size_t)r->pad : len;
            r->pad -= n;
            r->offset += n;
            rc = settle(r);
            break;
        case ST_END:
            for (n = 0; n < len; n++) {
                if (p[n]) {
                    rc = fail(r, err_set(ERR_INTEGRITY,
                                         "non-zero data after the end of the tar archive at "
                                         "offset %" PRIu64,
                                         r->offset + n));
                    break;
                }
            }
            r->offset += n;
            break;
        case ST_FAILED:
        default:
            return r->failed_code;
        }
        if (rc < 0)
            return r->state == ST_FAILED ? r->failed_code : fail(r, rc);
        p += n;
        len -= n;
    }
    return 0;
}

int tar_reader_finish(struct tar_reader *r, bool end_marker_required)
{
    switch (r->state) {
    case ST_END:
        return 0;
    case ST_FAILED:
        return err_set(ERR_RUNTIME, "tar reader used after an earlier error");
    case ST_HEADER:
        if (r->hdr_have == 0 && !overrides_pending(r)) {
            if (!end_marker_required)
                return 0;
            return fail(r, err_set(ERR_INTEGRITY,
                                   "tar archive truncated at offset %" PRIu64
                                   ": no end-of-archive marker",
                                   r->offset));
        }
        if (r->hdr_have == 0)
            return fail(r, err_set(ERR_INTEGRITY,
                                   "tar archive truncated at offset %" PRIu64
                                   ": extended header not followed by an entry",
                                   r->offset));
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar archive truncated at offset %" PRIu64 " inside a header",
                               r->offset));
    case ST_EXT:
        return fail(r,
                    err_set(ERR_INTEGRITY,
                            "tar archive truncated at offset %" PRIu64 " inside an extended header",
                            r->offset));
    case ST_DATA:
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar archive truncated at offset %" PRIu64 " inside \"%s\" (%" PRIu64
                               " of %" PRIu64 " bytes read)",
                               r->offset, (const char *)r->path.data, r->entry_size - r->remaining,
                               r->entry_size));
    case ST_PAD:
        return fail(r, err_set(ERR_INTEGRITY,
                               "tar archive truncated at offset %" PRIu64 " inside block padding",
                               r->offset));
    }
    return err_set(ERR_RUNTIME, "tar reader in an unknown state");
}
