/* fuzz_bbstream.c — the BASE_BACKUP result stream: CopyData messages of either
 * protocol, through bbstream.c and the tar reader. Input: one byte choosing the protocol
 * (bit 0: legacy), then records of a 2-byte length and a message. In the legacy protocol
 * a message whose first byte is 0xFF announces the next archive (4 bytes of tablespace
 * OID, then its location) and one of 0xFE alone the manifest, as the caller does from
 * the result sets it sees. */
#include "fuzz.h"

#include "pgark/bbstream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

struct seen {
    bool in_archive, in_entry;
    uint32_t spcoid;
    uint64_t size, got;
    bool base;
};

static int archive_begin(void *arg, const struct bbstream_archive *a)
{
    struct seen *s = arg;
    FUZZ_CHECK(!s->in_archive);
    FUZZ_CHECK(a->name && a->location);
    FUZZ_CHECK((a->spcoid == 0) == (*a->location == '\0'));
    s->in_archive = true;
    s->spcoid = a->spcoid;
    s->base |= a->spcoid == 0;
    return 0;
}

static int archive_end(void *arg, const struct bbstream_archive *a)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->in_archive && !s->in_entry && a->spcoid == s->spcoid);
    s->in_archive = false;
    return 0;
}

static int entry_begin(void *arg, const struct tar_entry *e)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->in_archive && !s->in_entry);
    if (s->spcoid) {
        char prefix[32];
        int n = snprintf(prefix, sizeof(prefix), "pg_tblspc/%u", s->spcoid);
        FUZZ_CHECK(strncmp(e->path, prefix, (size_t)n) == 0);
        FUZZ_CHECK(e->path[n] == '\0' || e->path[n] == '/');
    }
    s->in_entry = true;
    s->size = e->size;
    s->got = 0;
    return 0;
}

static int entry_data(void *arg, const uint8_t *d, size_t n)
{
    struct seen *s = arg;
    (void)d;
    FUZZ_CHECK(s->in_entry && s->got + n <= s->size);
    s->got += n;
    return 0;
}

static int entry_end(void *arg)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->in_entry && s->got == s->size);
    s->in_entry = false;
    return 0;
}

static int manifest_data(void *arg, const uint8_t *d, size_t n)
{
    struct seen *s = arg;
    (void)d, (void)n;
    FUZZ_CHECK(!s->in_archive);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    bool legacy = fuzz_u8(&in) & 1;
    struct seen s = {0};
    const struct bbstream_callbacks cb = {
        .archive_begin = archive_begin,
        .archive_end = archive_end,
        .entry_begin = entry_begin,
        .entry_data = entry_data,
        .entry_end = entry_end,
        .manifest_data = manifest_data,
    };
    struct bbstream *b = bbstream_new(legacy ? BBSTREAM_LEGACY : BBSTREAM_STREAMED, &cb, &s);
    int rc = 0;
    while (in.n && rc == 0) {
        size_t len = (size_t)fuzz_take(&in, 2);
        if (len > in.n)
            len = in.n;
        /* each message in its own allocation, as libpq hands them over */
        uint8_t *msg = malloc(len ? len : 1);
        if (len)
            memcpy(msg, in.p, len);
        in.p += len;
        in.n -= len;
        if (legacy && len >= 5 && msg[0] == 0xFF) {
            uint32_t oid =
                (uint32_t)msg[1] << 24 | (uint32_t)msg[2] << 16 | (uint32_t)msg[3] << 8 | msg[4];
            char *loc = fuzz_string(msg + 5, len - 5);
            rc = bbstream_legacy_archive(b, oid, loc);
            free(loc);
        } else if (legacy && len == 1 && msg[0] == 0xFE) {
            rc = bbstream_legacy_manifest(b);
        } else {
            rc = bbstream_copy_data(b, msg, len);
        }
        free(msg);
    }
    if (rc == 0 && bbstream_finish(b) == 0) {
        FUZZ_CHECK(s.base && !s.in_archive && !s.in_entry);
    }
    bbstream_free(b);
    err_clear();
    return 0;
}
