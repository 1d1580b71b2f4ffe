/* fuzz_manifest.c — a backup's manifest.json (JSON Lines), fed in pieces. Input: one
 * byte of piece size (0: all at once), then the manifest. */
#include "fuzz.h"

#include "pgark/manifest.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    return 0;
}

struct seen {
    struct manifest_reader *r;
    uint64_t files, bytes;
};

static int on_file(void *arg, const struct manifest_file *f)
{
    struct seen *s = arg;
    const struct manifest_header *h = manifest_reader_header(s->r);
    FUZZ_CHECK(h != NULL && h->chunk_size > 0);
    FUZZ_CHECK(f->path && *f->path && f->path[0] != '/');
    FUZZ_CHECK(strlen(f->path) == strcspn(f->path, "")); /* a C string */
    if (f->type == MANIFEST_TYPE_FILE) {
        FUZZ_CHECK(f->n_chunks == (f->size + h->chunk_size - 1) / h->chunk_size);
        /* every chunk name is readable */
        uint8_t sum = 0;
        for (size_t i = 0; i < f->n_chunks * SHA256_LEN; i++)
            sum ^= f->chunks[i];
        (void)sum;
    } else {
        FUZZ_CHECK(f->size == 0 && f->n_chunks == 0);
    }
    FUZZ_CHECK((f->type == MANIFEST_TYPE_SYMLINK) == (f->link != NULL));
    s->files++;
    s->bytes += f->size;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t step = fuzz_u8(&in);
    struct seen s = {0};
    s.r = manifest_reader_new(on_file, &s);
    int rc = 0;
    for (size_t off = 0; off < in.n && rc == 0;) {
        size_t n = step && in.n - off > step ? step : in.n - off;
        rc = manifest_reader_feed(s.r, in.p + off, n);
        off += n;
    }
    if (rc == 0 && manifest_reader_finish(s.r) == 0) {
        const struct manifest_header *h = manifest_reader_header(s.r);
        FUZZ_CHECK(h && h->files == s.files && h->logical_bytes == s.bytes);
    }
    manifest_reader_free(s.r);
    err_clear();
    return 0;
}
