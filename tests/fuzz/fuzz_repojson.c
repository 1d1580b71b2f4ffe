/* fuzz_repojson.c — repo.json, the one plain-JSON object of a repository: identity,
 * format, encryption parameters (the KDF cost among them) and the wrapped key. The input
 * is the file; it is opened with a passphrase (and so unwrapped with scrypt) only when
 * its parameters cost little, as this harness would otherwise spend its time in scrypt;
 * the cap on costly ones is checked all the same. */
#define FUZZ_SCRATCH_IMPL
#include "fuzz.h"

#include "pgark/crypto.h"
#include "pgark/repo.h"
#include "pgark/storage.h"

#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>

#define CHEAP_COST 4096 /* N*r*p: well under a millisecond of scrypt */

static struct storage *st;
static char file[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    st = storage_posix_new("fuzz", fuzz_scratch());
    char dir[200];
    snprintf(dir, sizeof(dir), "%s/c", fuzz_scratch());
    FUZZ_CHECK(st && mkdir(dir, 0700) == 0);
    snprintf(file, sizeof(file), "%s/repo.json", dir);
    return 0;
}

/* Whether text names encryption parameters that are cheap to derive with (or that are
 * refused before any derivation): then the repository is opened with a passphrase. */
static bool cheap(const uint8_t *data, size_t size)
{
    json_t *o = json_loadb((const char *)data, size, 0, NULL);
    json_t *enc = json_object_get(o, "encryption");
    bool ok = json_is_object(enc);
    if (ok) {
        json_int_t n = json_integer_value(json_object_get(enc, "n"));
        json_int_t r = json_integer_value(json_object_get(enc, "r"));
        json_int_t p = json_integer_value(json_object_get(enc, "p"));
        struct crypto_kdf_params kp = {(uint64_t)n, (uint32_t)r, (uint32_t)p};
        ok = n >= 0 && r >= 0 && p >= 0 && n <= CHEAP_COST && r <= CHEAP_COST && p <= CHEAP_COST &&
             n * r * p <= CHEAP_COST;
        if (!ok && crypto_kdf_check(&kp, ERR_INTEGRITY) < 0)
            ok = true; /* refused before any derivation: cheap as well */
        err_clear();
    }
    json_decref(o);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);
    struct repo_options o = {.cluster = "c",
                             .codecs = {.passphrase = cheap(data, size) ? "fuzz" : NULL}};
    struct repo *r = repo_open(st, &o, NULL, false);
    if (r) {
        const struct repo_identity *id = repo_identity(r);
        FUZZ_CHECK(id->seg_size >= 1u << 20 && id->seg_size <= 1u << 30);
        FUZZ_CHECK(repo_encrypted(r) == (o.codecs.passphrase != NULL));
        repo_close(r);
    }
    /* and once with an identity to match against */
    struct repo_identity want = {7312345678901234567u, 15, 16u << 20};
    r = repo_open(st, &o, &want, false);
    repo_close(r);
    err_clear();
    return 0;
}
