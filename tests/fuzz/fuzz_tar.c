/* fuzz_tar.c — the streaming tar reader of BASE_BACKUP archives, fed in pieces. Input:
 * one byte of piece size (0: all at once), one of flags (bit 0: end marker required),
 * then the archive. */
#include "fuzz.h"

#include "pgark/tar.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

struct seen {
    bool in_entry;
    uint64_t size, got, entries;
};

static int begin(void *arg, const struct tar_entry *e)
{
    struct seen *s = arg;
    FUZZ_CHECK(!s->in_entry);
    size_t n = strlen(e->path);
    FUZZ_CHECK(n > 0 && e->path[0] != '/');
    FUZZ_CHECK(strcmp(e->path, "..") != 0 && strncmp(e->path, "../", 3) != 0);
    FUZZ_CHECK(!strstr(e->path, "/../") && (n < 3 || strcmp(e->path + n - 3, "/..") != 0));
    FUZZ_CHECK(e->path[n - 1] != '/' || n == 1);
    if (e->type == TAR_TYPE_SYMLINK || e->type == TAR_TYPE_HARDLINK)
        FUZZ_CHECK(e->link && *e->link);
    else
        FUZZ_CHECK(e->link == NULL);
    if (e->type == TAR_TYPE_DIR)
        FUZZ_CHECK(e->size == 0);
    FUZZ_CHECK(e->mode <= 07777);
    s->in_entry = true;
    s->size = e->size;
    s->got = 0;
    return 0;
}

static int data_cb(void *arg, const uint8_t *d, size_t n)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->in_entry && s->got + n <= s->size);
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) /* the bytes are readable */
        x ^= d[i];
    (void)x;
    s->got += n;
    return 0;
}

static int end(void *arg)
{
    struct seen *s = arg;
    FUZZ_CHECK(s->in_entry && s->got == s->size);
    s->in_entry = false;
    s->entries++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t step = fuzz_u8(&in);
    bool marker = fuzz_u8(&in) & 1;
    struct seen s = {0};
    const struct tar_callbacks cb = {begin, data_cb, end};
    struct tar_reader *r = tar_reader_new(&cb, &s);
    int rc = 0;
    for (size_t off = 0; off < in.n && rc == 0;) {
        size_t n = step && in.n - off > step ? step * 37 % 1031 + 1 : in.n - off;
        if (n > in.n - off)
            n = in.n - off;
        rc = tar_reader_feed(r, in.p + off, n);
        off += n;
    }
    if (rc == 0)
        rc = tar_reader_finish(r, marker);
    if (rc == 0) {
        FUZZ_CHECK(!s.in_entry && tar_reader_entries(r) == s.entries);
        FUZZ_CHECK(tar_reader_offset(r) == in.n);
    }
    tar_reader_free(r);
    err_clear();
    return 0;
}
