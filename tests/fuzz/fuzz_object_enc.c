/* fuzz_object_enc.c — the object envelope of an encrypted repository. AES-GCM rejects
 * any ciphertext the fuzzer could make up, so this harness encrypts what the fuzzer
 * gives as the payload (what zstd made of plaintext and digest, or the plaintext itself)
 * with the repository's key, under a header built from the input, and may then damage
 * the result: the decoder sees authentic frames with arbitrary content, and damaged
 * ones. Input: compression id, cipher id, header flags, the header's plaintext length
 * (8 bytes), a damage byte (0: none, 1: flip a bit, 2: cut, 3: append), a 4-byte
 * position, then the payload. */
#define FUZZ_SCRATCH_IMPL
#include "fuzz.h"

#include "../../src/repo/repo_int.h"
#include "pgark/codec.h"
#include "pgark/crypto.h"
#include "pgark/hash.h"
#include "pgark/storage.h"

#include <fcntl.h>

#define PATH "obj"
#define INTO_CAP (128 * 1024)

static struct storage *st;
static struct repo *repo;
static char file[256];
static uint8_t *into;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    st = storage_posix_new("fuzz", fuzz_scratch());
    struct repo_options o = {.cluster = "e",
                             .codecs = {.compression = codec_by_name(CODEC_COMPRESSION, "zstd"),
                                        .level = 1,
                                        .passphrase = "fuzz"},
                             .kdf_n = 1024};
    struct repo_identity id = {1, 15, 16u << 20};
    repo = repo_open(st, &o, &id, true);
    FUZZ_CHECK(st && repo && repo_encrypted(repo));
    snprintf(file, sizeof(file), "%s/e/" PATH, fuzz_scratch());
    into = malloc(INTO_CAP);
    return 0;
}

static int discard(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    *(uint64_t *)ctx += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t header[ENVELOPE_HEADER_LEN] = {0};
    memcpy(header, ENVELOPE_MAGIC, 4);
    header[4] = ENVELOPE_VERSION;
    header[5] = fuzz_u8(&in) % 3;         /* 2: unknown */
    header[6] = fuzz_u8(&in) % 3 ? 1 : 0; /* mostly encrypted */
    header[7] = fuzz_u8(&in) % 16 ? 0 : 1;
    uint64_t plain_len = fuzz_u64(&in);
    for (int i = 0; i < 8; i++)
        header[8 + i] = (uint8_t)(plain_len >> (56 - 8 * i));
    for (int i = 0; i < CRYPTO_NONCE_LEN; i++)
        header[16 + i] = (uint8_t)(i * 17 + 1);
    uint8_t tag[SHA256_LEN];
    sha256(PATH, strlen(PATH), tag);
    memcpy(header + 28, tag, 4);
    uint8_t damage = fuzz_u8(&in) % 4;
    uint32_t at = fuzz_u32(&in);

    /* the ciphertext of the payload under the repository's key, as writer_open makes it */
    uint8_t aad[ENVELOPE_HEADER_LEN + sizeof(PATH) - 1];
    memcpy(aad, header, ENVELOPE_HEADER_LEN);
    memcpy(aad + ENVELOPE_HEADER_LEN, PATH, sizeof(PATH) - 1);
    struct filter *enc = crypto_gcm_encryptor_new(crypto_keyring_data_key(repo->keyring),
                                                  header + 16, aad, sizeof(aad));
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    FUZZ_CHECK(filter_run(enc, in.p, in.n, &ct, &ct_len) == 0);
    filter_free(enc);
    FUZZ_CHECK(ct_len == crypto_gcm_ciphertext_len(in.n));

    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    size_t keep = ct_len;
    if (damage == 1 && ct_len)
        ct[at % ct_len] ^= (uint8_t)(1u << (at >> 29));
    else if (damage == 2)
        keep = ct_len ? at % ct_len : 0;
    FUZZ_CHECK(write(fd, header, sizeof(header)) == (ssize_t)sizeof(header));
    FUZZ_CHECK(write(fd, ct, keep) == (ssize_t)keep);
    if (damage == 3)
        FUZZ_CHECK(write(fd, &at, sizeof(at)) == (ssize_t)sizeof(at));
    close(fd);
    free(ct);

    uint8_t sha[SHA256_LEN], sha_into[SHA256_LEN];
    uint64_t len = 0, streamed = 0;
    int rc = repo_object_digest(repo, PATH, sha, &len);
    err_clear();
    int rc2 = repo_get(repo, PATH, discard, &streamed);
    err_clear();
    size_t got = 0;
    int rc3 = repo_object_read_into(repo, PATH, into, INTO_CAP, &got, sha_into);
    err_clear();
    FUZZ_CHECK((rc == 0) == (rc2 == 0));
    if (damage || header[6] == 0 || header[7])
        FUZZ_CHECK(rc < 0 && rc3 < 0); /* nothing damaged or foreign is ever read */
    if (rc == 0) {
        FUZZ_CHECK(streamed == len);
        if (len <= INTO_CAP)
            FUZZ_CHECK(rc3 == 0 && got == len && memcmp(sha_into, sha, SHA256_LEN) == 0);
    } else {
        FUZZ_CHECK(rc3 < 0);
    }
    return 0;
}
