/* bbstream.c — BASE_BACKUP result stream parser (see include/pgark/bbstream.h). */
#include "pgark/bbstream.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bbstream {
    enum bbstream_protocol protocol;
    struct bbstream_callbacks cb;
    void *arg;

    struct tar_reader *tar; /* current archive's reader, NULL between archives */
    struct buf name;        /* current archive's name */
    struct buf location;
    uint32_t spcoid;
    struct buf path; /* entry path with the tablespace prefix */

    bool in_manifest;
    bool manifest_seen;
    bool base_seen;
    bool finished;
    int failed;         /* first failure code, 0 while healthy */
    struct refbuf *ref; /* the message being parsed, if the caller lends it */
};

static int fail(struct bbstream *s, int rc)
{
    s->failed = rc < 0 ? rc : -ERR_RUNTIME;
    return s->failed;
}

static struct bbstream_archive archive_of(const struct bbstream *s)
{
    struct bbstream_archive a = {
        .name = (const char *)s->name.data,
        .spcoid = s->spcoid,
        .location = (const char *)s->location.data,
    };
    return a;
}

/* tar reader callbacks: add the tablespace prefix and pass on */
static int tar_begin(void *arg, const struct tar_entry *e)
{
    struct bbstream *s = arg;
    if (!s->cb.entry_begin)
        return 0;
    if (s->spcoid == 0)
        return s->cb.entry_begin(s->arg, e);
    struct tar_entry copy = *e;
    buf_reset(&s->path);
    buf_appendf(&s->path, "pg_tblspc/%" PRIu32, s->spcoid);
    if (strcmp(e->path, ".") != 0) {
        buf_append(&s->path, "/", 1);
        buf_append_str(&s->path, e->path);
    }
    copy.path = (const char *)s->path.data;
    return s->cb.entry_begin(s->arg, &copy);
}

static int tar_data(void *arg, const uint8_t *d, size_t n)
{
    struct bbstream *s = arg;
    if (s->cb.entry_data_ref)
        return s->cb.entry_data_ref(s->arg, d, n, s->ref);
    return s->cb.entry_data ? s->cb.entry_data(s->arg, d, n) : 0;
}

static int tar_end(void *arg)
{
    struct bbstream *s = arg;
    return s->cb.entry_end ? s->cb.entry_end(s->arg) : 0;
}

static const struct tar_callbacks TAR_CB = {tar_begin, tar_data, tar_end};

struct bbstream *bbstream_new(enum bbstream_protocol protocol, const struct bbstream_callbacks *cb,
                              void *arg)
{
    struct bbstream *s = xcalloc(1, sizeof(*s));
    s->protocol = protocol;
    if (cb)
        s->cb = *cb;
    s->arg = arg;
    return s;
}

void bbstream_free(struct bbstream *s)
{
    if (!s)
        return;
    tar_reader_free(s->tar);
    buf_free(&s->name);
    buf_free(&s->location);
    buf_free(&s->path);
    free(s);
}

bool bbstream_manifest_seen(const struct bbstream *s)
{
    return s->manifest_seen;
}

/* Close the current archive, if any: its tar must be complete. */
static int end_archive(struct bbstream *s)
{
    if (!s->tar)
        return 0;
    int rc = tar_reader_finish(s->tar, s->protocol == BBSTREAM_STREAMED);
    tar_reader_free(s->tar);
    s->tar = NULL;
    if (rc < 0) {
        err_context("while reading archive \"%s\" of the base backup", (const char *)s->name.data);
        return fail(s, rc);
    }
    if (s->cb.archive_end) {
        struct bbstream_archive a = archive_of(s);
        rc = s->cb.archive_end(s->arg, &a);
        if (rc < 0)
            return fail(s, rc);
    }
    return 0;
}

static int begin_archive(struct bbstream *s, uint32_t spcoid, const char *name,
                         const char *location)
{
    int rc = end_archive(s);
    if (rc < 0)
        return rc;
    if (spcoid == 0)
        s->base_seen = true;
    s->spcoid = spcoid;
    buf_reset(&s->name);
    buf_append_str(&s->name, name);
    buf_reset(&s->location);
    buf_append_str(&s->location, location);
    s->tar = tar_reader_new(&TAR_CB, s);
    if (s->cb.archive_begin) {
        struct bbstream_archive a = archive_of(s);
        rc = s->cb.archive_begin(s->arg, &a);
        if (rc < 0)
            return fail(s, rc);
    }
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* "base.tar" with location "", or "<oid>.tar" with a location. */
static int parse_archive_name(struct bbstream *s, const char *name, const char *location,
                              uint32_t *spcoid)
{
    if (ends_with(name, ".tar.gz") || ends_with(name, ".tar.zst") || ends_with(name, ".tar.lz4"))
        return fail(s, err_set(ERR_PROTOCOL,
                               "archive \"%s\" is compressed by the server, which pgark does "
                               "not support",
                               name));
    if (!strcmp(name, "base.tar")) {
        if (*location)
            return fail(s, err_set(ERR_PROTOCOL,
                                   "archive \"base.tar\" announced with tablespace location "
                                   "\"%s\"",
                                   location));
        *spcoid = 0;
        return 0;
    }
    uint64_t oid = 0;
    size_t i = 0;
    for (; name[i] >= '0' && name[i] <= '9' && i < 10; i++)
        oid = oid * 10 + (uint64_t)(name[i] - '0');
    if (i == 0 || strcmp(name + i, ".tar") != 0 || oid == 0 || oid > UINT32_MAX)
        return fail(
            s, err_set(ERR_PROTOCOL, "unexpected archive name \"%s\" in the backup stream", name));
    if (!*location)
        return fail(s, err_set(ERR_PROTOCOL,
                               "archive \"%s\" announced without a tablespace location", name));
    *spcoid = (uint32_t)oid;
    return 0;
}

static int msg_new_archive(struct bbstream *s, const uint8_t *p, size_t n)
{
    const uint8_t *z1 = memchr(p, '\0', n);
    if (!z1)
        return fail(s, err_set(ERR_PROTOCOL, "malformed archive message in the backup stream: "
                                             "archive name is not terminated"));
    const uint8_t *loc = z1 + 1;
    const uint8_t *z2 = memchr(loc, '\0', (size_t)(p + n - loc));
    if (!z2)
        return fail(s, err_set(ERR_PROTOCOL, "malformed archive message in the backup stream: "
                                             "tablespace location is not terminated"));
    if (z2 + 1 != p + n)
        return fail(s, err_set(ERR_PROTOCOL,
                               "malformed archive message in the backup stream: %zu bytes after "
                               "the tablespace location",
                               (size_t)(p + n - (z2 + 1))));
    const char *name = (const char *)p;
    const char *location = (const char *)loc;
    if (s->in_manifest)
        return fail(
            s, err_set(ERR_PROTOCOL, "archive \"%s\" started after the backup manifest", name));
    uint32_t oid;
    int rc = parse_archive_name(s, name, location, &oid);
    if (rc < 0)
        return rc;
    return begin_archive(s, oid, name, location);
}

static int data(struct bbstream *s, const uint8_t *p, size_t n)
{
    int rc;
    if (s->in_manifest) {
        rc = s->cb.manifest_data ? s->cb.manifest_data(s->arg, p, n) : 0;
        return rc < 0 ? fail(s, rc) : 0;
    }
    if (!s->tar)
        return fail(
            s, err_set(ERR_PROTOCOL, "backup stream sent archive data before any archive started"));
    rc = tar_reader_feed(s->tar, p, n);
    if (rc < 0) {
        err_context("while reading archive \"%s\" of the base backup", (const char *)s->name.data);
        return fail(s, rc);
    }
    return 0;
}

static int begin_manifest(struct bbstream *s)
{
    if (s->manifest_seen)
        return fail(s, err_set(ERR_PROTOCOL, "backup stream started the manifest twice"));
    int rc = end_archive(s);
    if (rc < 0)
        return rc;
    s->in_manifest = true;
    s->manifest_seen = true;
    return 0;
}

static int check_usable(struct bbstream *s)
{
    if (s->failed)
        return err_set(ERR_RUNTIME, "backup stream parser used after an earlier error");
    if (s->finished)
        return err_set(ERR_RUNTIME, "backup stream parser used after the stream ended");
    return 0;
}

int bbstream_copy_data_ref(struct bbstream *s, const void *msg, size_t len, struct refbuf *ref)
{
    s->ref = ref;
    int rc = bbstream_copy_data(s, msg, len);
    s->ref = NULL;
    return rc;
}

int bbstream_copy_data(struct bbstream *s, const void *msg, size_t len)
{
    const uint8_t *p = msg;
    int rc = check_usable(s);
    if (rc < 0)
        return rc;
    if (s->protocol == BBSTREAM_LEGACY)
        return len ? data(s, p, len) : 0;
    if (len == 0)
        return fail(s, err_set(ERR_PROTOCOL, "empty message in the backup stream"));
    switch (p[0]) {
    case 'n':
        return msg_new_archive(s, p + 1, len - 1);
    case 'd':
        return len > 1 ? data(s, p + 1, len - 1) : 0;
    case 'p': {
        if (len != 9)
            return fail(s, err_set(ERR_PROTOCOL,
                                   "progress message in the backup stream has %zu bytes of "
                                   "payload, expected 8",
                                   len - 1));
        uint64_t v = 0;
        for (int i = 1; i <= 8; i++)
            v = (v << 8) | p[i];
        rc = s->cb.progress ? s->cb.progress(s->arg, v) : 0;
        return rc < 0 ? fail(s, rc) : 0;
    }
    case 'm':
        if (len != 1)
            return fail(s, err_set(ERR_PROTOCOL,
                                   "manifest message in the backup stream carries %zu unexpected "
                                   "bytes",
                                   len - 1));
        return begin_manifest(s);
    default:
        return fail(s, err_set(ERR_PROTOCOL,
                               "unexpected message type '%c' (0x%02x) in the backup stream",
                               p[0] >= 0x20 && p[0] < 0x7f ? p[0] : '?', p[0]));
    }
}

int bbstream_legacy_archive(struct bbstream *s, uint32_t spcoid, const char *location)
{
    int rc = check_usable(s);
    if (rc < 0)
        return rc;
    if (s->protocol != BBSTREAM_LEGACY)
        return err_set(ERR_RUNTIME, "bbstream_legacy_archive on a streamed-protocol parser");
    if (s->in_manifest)
        return fail(
            s, err_set(ERR_PROTOCOL, "backup stream sent a tablespace after the backup manifest"));
    if ((spcoid == 0) != (location == NULL || *location == '\0'))
        return fail(s,
                    err_set(ERR_PROTOCOL, "tablespace %" PRIu32 " announced with location \"%s\"",
                            spcoid, location ? location : ""));
    char name[32];
    if (spcoid)
        snprintf(name, sizeof(name), "%" PRIu32 ".tar", spcoid);
    else
        snprintf(name, sizeof(name), "base.tar");
    return begin_archive(s, spcoid, name, location ? location : "");
}

int bbstream_legacy_manifest(struct bbstream *s)
{
    int rc = check_usable(s);
    if (rc < 0)
        return rc;
    if (s->protocol != BBSTREAM_LEGACY)
        return err_set(ERR_RUNTIME, "bbstream_legacy_manifest on a streamed-protocol parser");
    return begin_manifest(s);
}

int bbstream_finish(struct bbstream *s)
{
    int rc = check_usable(s);
    if (rc < 0)
        return rc;
    rc = end_archive(s);
    if (rc < 0)
        return rc;
    s->finished = true;
    if (!s->base_seen)
        return fail(s, err_set(ERR_PROTOCOL,
                               "backup stream ended without the main data directory archive "
                               "(base.tar)"));
    return 0;
}
