/*
 * keycache.c — the key-encryption key cache: what scrypt derived from the passphrase,
 * kept in a private file of the host so that the next command that opens the
 * repository does not derive it again (0.5 s of CPU and 128 MiB of memory each time).
 *
 * One file per repository, "<spool>/<cluster>/kek.<repository>", mode 0600, in
 * directories the user running pgark owns (privfs): the crypto_keyring cache entry
 * (crypto.h), bound to the salt and KDF parameters of repo.json and to the passphrase.
 * A rotated passphrase (another salt) or another configured passphrase makes the entry
 * not apply: the key is derived as without a cache, so a wrong passphrase fails with
 * the same error as ever, and the new entry replaces the old one. A damaged entry is a
 * warning, then the same. The entry is used only after its key has unwrapped the data
 * keys (AES-GCM authenticates them): it can save a derivation, never yield another key.
 *
 * Anything wrong with the cache itself (no spool directory, another owner, a full disk)
 * costs a derivation and a "detail" line, never the command.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/privfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *repo_keycache_path(const char *spool, const char *cluster, const char *repo)
{
    return spool ? xasprintf("%s/%s/kek.%s", spool, cluster, repo) : NULL;
}

/* The cache's directory and its parent (the spool) are ours, or cannot be used. */
static int check_dirs(const char *path, bool make)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    char *parent = NULL;
    int rc = 0;

    if (slash)
        *slash = '\0';
    parent = xstrdup(dir);
    slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    else {
        free(parent);
        parent = NULL;
    }
    /* A key written where another user can reach it would be theirs too. */
    if ((parent && (rc = privfs_check_dir(parent, "spool directory")) < 0) ||
        (rc = privfs_check_dir(dir, "spool directory")) < 0)
        goto out;
    if (make && ((parent && mkdir(parent, 0700) < 0 && errno != EEXIST) ||
                 (mkdir(dir, 0700) < 0 && errno != EEXIST)))
        rc = err_set_errno(ERR_IO, errno, "could not create the directory of \"%s\"", path);
out:
    free(parent);
    free(dir);
    return rc;
}

/* The entry at path into buf (at most cap bytes; one more tells a longer file): its
 * length (*found false when there is no file), <0 when it cannot be read or is not
 * private (*damaged says whether that is the file's fault, worth a warning). */
static ssize_t read_entry(const char *path, uint8_t *buf, size_t cap, bool *found, bool *damaged)
{
    struct stat st;
    ssize_t n = -1, got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    *damaged = false;
    *found = fd >= 0;
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return 0;
        err_set_errno(ERR_IO, e, "could not open \"%s\"", path);
        *damaged = e == ELOOP; /* a symlink: not one pgark made */
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        err_set_errno(ERR_IO, errno, "could not examine \"%s\"", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
        err_set(ERR_CONFIG, "\"%s\" is not a private file of this user (mode %04o, uid %u)", path,
                (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
        *damaged = true;
        goto out;
    }
    while ((size_t)got < cap) {
        ssize_t k = read(fd, buf + got, cap - (size_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            err_set_errno(ERR_IO, errno, "could not read \"%s\"", path);
            goto out;
        }
        if (k == 0)
            break;
        got += k;
    }
    n = got;
out:
    close(fd);
    return n;
}

int repo_keycache_open(struct repo *r, const struct crypto_key_record *rec, const char *passphrase,
                       struct crypto_keyring **kr)
{
    uint8_t entry[CRYPTO_KEK_CACHE_LEN + 1];
    const char *why = NULL;
    bool damaged = false, found = false;
    ssize_t len;
    int rc = 1;

    *kr = NULL;
    if (!r->key_cache)
        return 1;
    if (check_dirs(r->key_cache, false) < 0 ||
        (len = read_entry(r->key_cache, entry, sizeof(entry), &found, &damaged)) < 0) {
        if (damaged)
            log_warn("repository \"%s\": key cache ignored: %s", repo_name(r), err_message());
        else
            log_detail("repository \"%s\": key cache not used: %s", repo_name(r), err_message());
        err_clear();
        goto out;
    }
    if (!found)
        goto out;
    rc = crypto_keyring_open_cached(rec, passphrase, strlen(passphrase), entry, (size_t)len, kr,
                                    &why);
    if (rc < 0) { /* a malformed record: deriving reports it as always */
        err_clear();
        rc = 1;
    } else if (rc == 2) {
        log_warn("repository \"%s\": key cache \"%s\" ignored: %s; deriving the key again",
                 repo_name(r), r->key_cache, why);
        rc = 1;
    } else if (rc == 1) {
        log_detail("repository \"%s\": key cache \"%s\" is for another passphrase or salt",
                   repo_name(r), r->key_cache);
    } else {
        log_detail("repository \"%s\": key from the key cache \"%s\", no scrypt", repo_name(r),
                   r->key_cache);
    }
out:
    secure_zero(entry, sizeof(entry));
    return rc;
}

void repo_keycache_store(struct repo *r, const struct crypto_keyring *kr, const char *passphrase)
{
    uint8_t entry[CRYPTO_KEK_CACHE_LEN];
    char *tmp = NULL;
    FILE *f = NULL;

    if (!r->key_cache)
        return;
    crypto_keyring_cache_entry(kr, passphrase, strlen(passphrase), entry);
    if (check_dirs(r->key_cache, true) < 0)
        goto fail;
    /* Written aside and renamed over: a reader sees a whole entry or the previous one. */
    tmp = xasprintf("%s.tmp.%ld", r->key_cache, (long)getpid());
    if (!(f = privfs_fopen_w(tmp))) {
        err_set_errno(ERR_IO, errno, "could not create \"%s\"", tmp);
        goto fail;
    }
    if (fwrite(entry, 1, sizeof(entry), f) != sizeof(entry) || fflush(f) != 0) {
        err_set_errno(ERR_IO, errno, "could not write \"%s\"", tmp);
        goto fail;
    }
    int rc = fclose(f);
    f = NULL;
    if (rc != 0 || rename(tmp, r->key_cache) < 0) {
        err_set_errno(ERR_IO, errno, "could not write \"%s\"", r->key_cache);
        goto fail;
    }
    log_detail("repository \"%s\": key kept in the key cache \"%s\"", repo_name(r), r->key_cache);
    goto out;
fail:
    log_detail("repository \"%s\": key cache not written: %s", repo_name(r), err_message());
    err_clear();
    if (f)
        fclose(f);
    if (tmp)
        unlink(tmp);
out:
    secure_zero(entry, sizeof(entry));
    free(tmp);
}

void repo_keycache_forget(const struct repo *r)
{
    if (r->key_cache && unlink(r->key_cache) < 0 && errno != ENOENT)
        log_warn("repository \"%s\": could not remove the key cache \"%s\": %s", repo_name(r),
                 r->key_cache, strerror(errno));
}
