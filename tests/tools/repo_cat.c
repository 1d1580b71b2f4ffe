/*
 * repo_cat — read one object of a repository through src/repo, for the
 * integration tests.
 *
 *   repo_cat ROOT CLUSTER PATH      write the object's verified plaintext to stdout
 *   repo_cat ROOT CLUSTER -h PATH   print the envelope header: "version=N compression=N
 *                                   cipher=N length=N stored=N key=N" (read raw, to show
 *                                   what is on disk; key: the data key id a version 2
 *                                   header names, 0 for version 1)
 *   repo_cat ROOT CLUSTER -w PATH   write stdin as the object PATH, a proper envelope
 *                                   (tests plant foreign content the way another
 *                                   writer of the repository would)
 *
 * ROOT is a posix repository's directory, or "config:FILE:REPO" for any repository of
 * a pgark configuration (an S3 bucket too), opened as the commands open it.
 *
 * The repository is opened as restore would (no expected identity, no creation); the
 * passphrase, if any, comes from $PGARK_PASSPHRASE. Errors go through the error slot
 * and the exit code is err_exit_code()'s. Nothing reaches stdout unless the whole
 * object was verified.
 */
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_header(struct storage *s, const char *cluster, const char *path)
{
    char *full = xasprintf("%s/%s", cluster, path);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = storage_read_all(s, full, &data, &len);
    if (rc == 0 && (len < 32 || memcmp(data, "PGAO", 4) != 0))
        rc = err_set(ERR_INTEGRITY, "\"%s\" is not an envelope", full);
    if (rc == 0) {
        uint64_t plain = 0;
        for (int i = 8; i < 16; i++)
            plain = plain << 8 | data[i];
        uint32_t key = 0;
        if (data[4] == 2 && len >= 36)
            key = (uint32_t)data[32] << 24 | (uint32_t)data[33] << 16 | (uint32_t)data[34] << 8 |
                  data[35];
        printf("version=%u compression=%u cipher=%u length=%" PRIu64 " stored=%zu key=%" PRIu32
               "\n",
               data[4], data[5], data[6], plain, len, key);
    }
    free(data);
    free(full);
    return rc;
}

/* A posix directory, or "config:FILE:REPO". */
static struct storage *open_root(const char *root, struct config **cfg)
{
    if (strncmp(root, "config:", 7) != 0)
        return storage_posix_new("test", root);
    char *file = xstrdup(root + 7);
    char *name = strrchr(file, ':');
    struct storage *s = NULL;
    if (!name) {
        err_set(ERR_USAGE, "\"%s\" is not config:FILE:REPO", root);
        goto out;
    }
    *name++ = '\0';
    if (config_load(file, cfg) < 0)
        goto out;
    const struct config_repo *repo = config_repo_find(*cfg, name);
    if (repo)
        s = cli_open_storage(repo);
out:
    free(file);
    return s;
}

int main(int argc, char **argv)
{
    struct config *cfg = NULL;
    struct storage *s = NULL;
    struct repo *r = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = 0;
    bool header = argc == 5 && strcmp(argv[3], "-h") == 0;
    bool write = argc == 5 && strcmp(argv[3], "-w") == 0;

    if (argc != 4 && !header && !write) {
        fprintf(stderr, "usage: repo_cat ROOT CLUSTER [-h|-w] PATH\n");
        return 2;
    }
    s = open_root(argv[1], &cfg);
    if (!s) {
        rc = -1;
        goto out;
    }
    if (header) {
        rc = print_header(s, argv[2], argv[4]);
        goto out;
    }
    struct repo_options ro = {.cluster = argv[2],
                              .codecs = {.passphrase = getenv("PGARK_PASSPHRASE")}};
    r = repo_open(s, &ro, NULL, false);
    if (!r) {
        rc = -1;
        goto out;
    }
    if (write) {
        struct buf in = BUF_INIT;
        char piece[65536];
        size_t n;
        while ((n = fread(piece, 1, sizeof(piece), stdin)) > 0)
            buf_append(&in, piece, n);
        rc = repo_put(r, argv[4], in.data ? in.data : (uint8_t *)"", in.len);
        buf_free(&in);
        goto out;
    }
    rc = repo_get_all(r, argv[3], &data, &len);
    if (rc == 0 && fwrite(data, 1, len, stdout) != len)
        rc = err_set(ERR_IO, "could not write to stdout");
out:
    free(data);
    repo_close(r);
    storage_free(s);
    config_free(cfg);
    if (rc < 0 || fflush(stdout) != 0) {
        int code = err_exit_code();
        err_print();
        return code ? code : 1;
    }
    return 0;
}
