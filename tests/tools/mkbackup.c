/*
 * mkbackup — store a plain-format base backup (pg_basebackup -Fp -X fetch --manifest)
 * in a posix repository the way `pgark backup` does, for restore tests that must not
 * depend on the backup command: chunks under chunks/, the server's backup_manifest, and
 * pgark's manifest (written last).
 *
 *   mkbackup REPO_ROOT CLUSTER DATADIR LABEL CHUNK_SIZE [PASSPHRASE]
 *
 * The start LSN comes from backup_label, the stop LSN from backup_manifest's WAL range,
 * the stop time is now (the backup has just finished), the start time a second before.
 */
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/units.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct ctx {
    struct repo *r;
    struct manifest_writer *w;
    const char *root;
    uint64_t chunk_size;
    struct manifest_tablespace ts[16];
    size_t nts;
};

static int read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set_errno(ERR_IO, errno, "could not open \"%s\"", path);
    struct buf b = BUF_INIT;
    uint8_t chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    *data = (uint8_t *)buf_steal(&b);
    return 0;
}

static int add_path(struct ctx *c, const char *rel);

static int add_dir(struct ctx *c, const char *rel)
{
    char *full = rel[0] ? xasprintf("%s/%s", c->root, rel) : xstrdup(c->root);
    DIR *d = opendir(full);
    free(full);
    if (!d)
        return err_set_errno(ERR_IO, errno, "could not open \"%s\"", rel);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!rel[0] && !strcmp(de->d_name, "backup_manifest"))
            continue;
        char *sub = rel[0] ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        rc = add_path(c, sub);
        free(sub);
    }
    closedir(d);
    return rc;
}

static int add_path(struct ctx *c, const char *rel)
{
    char *full = xasprintf("%s/%s", c->root, rel);
    struct stat st;
    int rc = 0;
    struct manifest_file f;
    memset(&f, 0, sizeof(f));
    f.path = rel;
    if (lstat(full, &st) < 0) {
        rc = err_set_errno(ERR_IO, errno, "could not stat \"%s\"", full);
        goto out;
    }
    f.mode = st.st_mode & 07777;
    f.mtime = st.st_mtime;
    if (S_ISLNK(st.st_mode)) {
        char link[4096];
        ssize_t n = readlink(full, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        f.type = MANIFEST_TYPE_SYMLINK;
        f.link = link;
        unsigned oid;
        if (sscanf(rel, "pg_tblspc/%u", &oid) == 1 && c->nts < 16) {
            c->ts[c->nts].oid = oid;
            c->ts[c->nts].location = xstrdup(link);
            c->nts++;
        }
        rc = manifest_writer_add(c->w, &f);
        if (rc == 0) {
            /* Files of the tablespace are listed under the symlink's path. */
            char *sub = xstrdup(rel);
            rc = add_dir(c, sub);
            free(sub);
        }
    } else if (S_ISDIR(st.st_mode)) {
        f.type = MANIFEST_TYPE_DIR;
        rc = manifest_writer_add(c->w, &f);
        if (rc == 0)
            rc = add_dir(c, rel);
    } else if (S_ISREG(st.st_mode)) {
        uint8_t *data = NULL;
        size_t len = 0;
        if ((rc = read_file(full, &data, &len)) < 0)
            goto out;
        f.type = MANIFEST_TYPE_FILE;
        f.size = len;
        sha256(data, len, f.sha256);
        f.n_chunks = (len + c->chunk_size - 1) / c->chunk_size;
        uint8_t *names = xmalloc(f.n_chunks * SHA256_LEN + 1);
        for (size_t i = 0; i < f.n_chunks && rc == 0; i++) {
            size_t off = i * c->chunk_size;
            size_t n = len - off < c->chunk_size ? len - off : c->chunk_size;
            char name[REPO_CHUNK_NAME_LEN + 1];
            repo_chunk_name(c->r, data + off, n, name);
            hex_decode(name, names + i * SHA256_LEN, SHA256_LEN);
            rc = repo_chunk_put(c->r, name, data + off, n);
        }
        f.chunks = names;
        if (rc == 0)
            rc = manifest_writer_add(c->w, &f);
        free(names);
        free(data);
    }
out:
    free(full);
    return rc;
}

static int sink_buf(void *arg, const void *data, size_t len)
{
    buf_append(arg, data, len);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: mkbackup REPO_ROOT CLUSTER DATADIR LABEL CHUNK_SIZE [PASS]\n");
        return 2;
    }
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.root = argv[3];
    c.chunk_size = strtoull(argv[5], NULL, 10);
    int rc = 1;
    struct storage *s = storage_posix_new("local", argv[1]);
    struct repo_options ro = {.cluster = argv[2], .passphrase = argc > 6 ? argv[6] : NULL};
    c.r = s ? repo_open(s, &ro, NULL, false) : NULL;
    uint8_t *label = NULL, *bm = NULL;
    size_t label_len = 0, bm_len = 0;
    struct buf out = BUF_INIT;
    if (!c.r)
        goto out;
    char *p = xasprintf("%s/backup_label", c.root);
    int e = read_file(p, &label, &label_len);
    free(p);
    if (e < 0)
        goto out;
    p = xasprintf("%s/backup_manifest", c.root);
    e = read_file(p, &bm, &bm_len);
    free(p);
    if (e < 0)
        goto out;
    unsigned hi, lo, tli = 1;
    const char *sl = strstr((char *)label, "START WAL LOCATION: ");
    const char *st = strstr((char *)label, "START TIMELINE: ");
    if (!sl || sscanf(sl, "START WAL LOCATION: %X/%X", &hi, &lo) != 2 ||
        (st && sscanf(st, "START TIMELINE: %u", &tli) != 1)) {
        err_set(ERR_INTEGRITY, "bad backup_label");
        goto out;
    }
    json_error_t jerr;
    json_t *m = json_loadb((char *)bm, bm_len, 0, &jerr);
    json_t *ranges = json_object_get(m, "WAL-Ranges");
    const char *end = json_string_value(
        json_object_get(json_array_get(ranges, json_array_size(ranges) - 1), "End-LSN"));
    lsn_t stop = 0;
    if (!end || lsn_parse(end, &stop) < 0) {
        err_set(ERR_INTEGRITY, "bad backup_manifest");
        json_decref(m);
        goto out;
    }
    json_decref(m);
    c.w = manifest_writer_new("/tmp", c.chunk_size);
    if (!c.w || add_dir(&c, "") < 0)
        goto out;
    struct manifest_header h;
    memset(&h, 0, sizeof(h));
    h.format = MANIFEST_FORMAT;
    h.label = argv[4];
    h.start_lsn = (uint64_t)hi << 32 | lo;
    h.stop_lsn = stop;
    h.stop_time = time(NULL);
    h.start_time = h.stop_time - 1;
    h.timeline = tli;
    h.pg_version = repo_identity(c.r)->pg_major * 10000;
    h.system_identifier = repo_identity(c.r)->system_identifier;
    h.chunk_size = c.chunk_size;
    h.tablespaces = c.ts;
    h.n_tablespaces = c.nts;
    h.compression = "zstd";
    h.encrypted = repo_encrypted(c.r);
    if (manifest_writer_finish(c.w, &h, sink_buf, &out) < 0)
        goto out;
    char path[128];
    snprintf(path, sizeof(path), "backups/%s/backup_manifest", argv[4]);
    if (repo_put(c.r, path, bm, bm_len) < 0)
        goto out;
    snprintf(path, sizeof(path), "backups/%s/manifest.json", argv[4]);
    if (repo_put(c.r, path, out.data, out.len) < 0)
        goto out;
    printf("stored backup %s: %llu files\n", argv[4], (unsigned long long)h.files);
    rc = 0;
out:
    if (err_is_set())
        err_print();
    for (size_t i = 0; i < c.nts; i++)
        free((char *)c.ts[i].location);
    manifest_writer_free(c.w);
    buf_free(&out);
    free(label);
    free(bm);
    repo_close(c.r);
    storage_free(s);
    return rc;
}
