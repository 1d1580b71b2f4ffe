/*
 * repo_dump — read a posix repository the way a restore would, for the integration
 * tests of backup.
 *
 *   repo_dump [-p PASSPHRASE_FILE] ROOT CLUSTER get OBJECT
 *       the verified plaintext of one object (e.g. backups/L/manifest.json)
 *   repo_dump [-p PASSPHRASE_FILE] ROOT CLUSTER cat LABEL PATH
 *       file PATH of backup LABEL reassembled from its chunks; exit 3 when the bytes
 *       do not have the digest the manifest gives (SHA-256 over the SHA-256s of its
 *       chunks, each computed here from the bytes read; or, in a manifest of an older
 *       pgark, the SHA-256 of the whole content)
 *   repo_dump [-p PASSPHRASE_FILE] ROOT CLUSTER sums LABEL
 *       "path<TAB>crc32c" per regular file of backup LABEL, reassembled from its chunks,
 *       the CRC-32C as PostgreSQL's backup_manifest writes it (hex of its 4 bytes in
 *       memory order); exit 3 when a file does not have the manifest's digest
 *   repo_dump [-p PASSPHRASE_FILE] ROOT CLUSTER backups
 *       "label<TAB>stored_bytes<TAB>logical_bytes" per complete backup
 *
 * Errors go through the error slot; the exit code is err_exit_code()'s.
 */
#include "pgark/crc32c.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/repo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int to_stdout(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (fwrite(data, 1, len, stdout) != len)
        return err_set(ERR_IO, "could not write to stdout");
    return 0;
}

/* Every regular file of the manifest (sums) or the one named path (cat). */
struct find {
    const char *path; /* NULL: all */
    struct manifest_file *files;
    size_t n;
};

static int on_file(void *arg, const struct manifest_file *f)
{
    struct find *fd = arg;
    if (f->type != MANIFEST_TYPE_FILE || (fd->path && strcmp(f->path, fd->path) != 0))
        return 0;
    fd->files = xrealloc(fd->files, (fd->n + 1) * sizeof(*fd->files));
    struct manifest_file *c = &fd->files[fd->n++];
    *c = *f;
    c->path = xstrdup(f->path);
    c->link = NULL;
    uint8_t *chunks = xmalloc(f->n_chunks * SHA256_LEN + 1);
    memcpy(chunks, f->chunks, f->n_chunks * SHA256_LEN);
    c->chunks = chunks;
    return 0;
}

static int feed_reader(void *ctx, const uint8_t *data, size_t len)
{
    return manifest_reader_feed(ctx, data, len);
}

static int find_files(struct repo *r, const char *label, struct find *fd)
{
    char object[320];
    struct manifest_reader *mr = manifest_reader_new(on_file, fd);
    int rc = repo_backup_path(label, "manifest.json", object, sizeof(object));

    if (rc == 0)
        rc = repo_get(r, object, feed_reader, mr);
    if (rc == 0)
        rc = manifest_reader_finish(mr);
    manifest_reader_free(mr);
    return rc;
}

static void find_free(struct find *fd)
{
    for (size_t i = 0; i < fd->n; i++) {
        free((char *)fd->files[i].path);
        free((uint8_t *)fd->files[i].chunks);
    }
    free(fd->files);
}

struct reassembly {
    struct sha256_ctx *sha;   /* the whole content */
    struct sha256_ctx *chunk; /* the current chunk's */
    uint32_t crc;
    bool print; /* the bytes to stdout */
};

static int reassembled(void *ctx, const uint8_t *data, size_t len)
{
    struct reassembly *ra = ctx;
    sha256_ctx_update(ra->sha, data, len);
    sha256_ctx_update(ra->chunk, data, len);
    ra->crc = crc32c_update(ra->crc, data, len);
    return ra->print ? to_stdout(NULL, data, len) : 0;
}

/* Read f's chunks through ra; ERR_INTEGRITY when they do not make the file's digest. */
static int reassemble(struct repo *r, const struct manifest_file *f, struct reassembly *ra)
{
    uint8_t *sums = xmalloc(f->n_chunks * SHA256_LEN + 1);
    int rc = 0;
    ra->crc = CRC32C_INIT;
    for (size_t i = 0; rc == 0 && i < f->n_chunks; i++) {
        char hex[SHA256_HEX_LEN + 1];
        hex_encode(f->chunks + i * SHA256_LEN, SHA256_LEN, hex);
        rc = repo_chunk_get(r, hex, reassembled, ra, NULL);
        sha256_ctx_final(ra->chunk, sums + i * SHA256_LEN);
    }
    if (rc == 0) {
        uint8_t got[SHA256_LEN];
        sha256_ctx_final(ra->sha, got);
        if (f->digest_kind == MANIFEST_DIGEST_CHUNKS)
            sha256(sums, f->n_chunks * SHA256_LEN, got);
        if (memcmp(got, f->digest, SHA256_LEN) != 0)
            rc = err_set(ERR_INTEGRITY, "file \"%s\" reassembled does not match its digest",
                         f->path);
    }
    free(sums);
    return rc;
}

static int cat_file(struct repo *r, const char *label, const char *path)
{
    struct find fd = {.path = path};
    struct reassembly ra = {.sha = sha256_ctx_new(), .chunk = sha256_ctx_new(), .print = true};
    int rc = find_files(r, label, &fd);

    if (rc == 0 && fd.n == 0)
        rc = err_set(ERR_NOT_FOUND, "no file \"%s\" in backup \"%s\"", path, label);
    if (rc == 0)
        rc = reassemble(r, &fd.files[0], &ra);
    sha256_ctx_free(ra.sha);
    sha256_ctx_free(ra.chunk);
    find_free(&fd);
    return rc;
}

static int sum_files(struct repo *r, const char *label)
{
    struct find fd = {0};
    struct reassembly ra = {.sha = sha256_ctx_new(), .chunk = sha256_ctx_new()};
    int rc = find_files(r, label, &fd);

    for (size_t i = 0; rc == 0 && i < fd.n; i++) {
        if ((rc = reassemble(r, &fd.files[i], &ra)) == 0) {
            uint32_t crc = crc32c_final(ra.crc);
            char hex[9];
            hex_encode((const uint8_t *)&crc, sizeof(crc), hex);
            printf("%s\t%s\n", fd.files[i].path, hex);
        }
    }
    sha256_ctx_free(ra.sha);
    sha256_ctx_free(ra.chunk);
    find_free(&fd);
    return rc;
}

static int list_backups(struct repo *r)
{
    struct repo_backup *list;
    size_t n;
    int rc = repo_backup_list(r, &list, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        printf("%s\t%llu\t%llu\n", list[i].label, (unsigned long long)list[i].header.stored_bytes,
               (unsigned long long)list[i].header.logical_bytes);
    repo_backup_list_free(list, n);
    return 0;
}

static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f || !fgets(line, sizeof(line), f)) {
        if (f)
            fclose(f);
        err_set(ERR_CONFIG, "cannot read passphrase file \"%s\"", path);
        return NULL;
    }
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    return xstrdup(line);
}

int main(int argc, char **argv)
{
    char *passphrase = NULL;
    struct storage *s = NULL;
    struct repo *r = NULL;
    int rc = -ERR_USAGE;
    int i = 1;

    if (argc > 2 && strcmp(argv[1], "-p") == 0) {
        if (!(passphrase = read_secret(argv[2])))
            goto out;
        i = 3;
    }
    if (argc - i < 3) {
        err_set(ERR_USAGE, "usage: repo_dump [-p FILE] ROOT CLUSTER get OBJECT | cat LABEL "
                           "PATH | sums LABEL | backups");
        goto out;
    }
    s = storage_posix_new("test", argv[i]);
    if (!s)
        goto out;
    struct repo_options ro = {.cluster = argv[i + 1], .codecs = {.passphrase = passphrase}};
    r = repo_open(s, &ro, NULL, false);
    if (!r)
        goto out;
    const char *cmd = argv[i + 2];
    if (strcmp(cmd, "get") == 0 && argc - i == 4)
        rc = repo_get(r, argv[i + 3], to_stdout, NULL);
    else if (strcmp(cmd, "cat") == 0 && argc - i == 5)
        rc = cat_file(r, argv[i + 3], argv[i + 4]);
    else if (strcmp(cmd, "sums") == 0 && argc - i == 4)
        rc = sum_files(r, argv[i + 3]);
    else if (strcmp(cmd, "backups") == 0 && argc - i == 3)
        rc = list_backups(r);
    else
        err_set(ERR_USAGE, "unknown command or wrong arguments");
out:
    fflush(stdout);
    repo_close(r);
    storage_free(s);
    free(passphrase);
    if (rc < 0 || err_is_set()) {
        int code = err_exit_code();
        err_print();
        return code;
    }
    return 0;
}
