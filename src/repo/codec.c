/* codec.c — the table of compression and cipher algorithms (see include/pgark/codec.h). */
#include "pgark/codec.h"

#include "pgark/compress.h"
#include "pgark/crypto.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <string.h>

static const struct codec codecs[] = {
    {.type = CODEC_COMPRESSION, .name = "none", .id = CODEC_ID_COMPRESSION_NONE},
    {
        .type = CODEC_COMPRESSION,
        .name = "zstd",
        .id = CODEC_ID_COMPRESSION_ZSTD,
        .level_min = COMPRESS_ZSTD_LEVEL_MIN,
        .level_max = COMPRESS_ZSTD_LEVEL_MAX,
        .level_default = COMPRESS_ZSTD_LEVEL_DEFAULT,
        .compress_new = compress_zstd_compressor_new,
        .decompress_new = compress_zstd_decompressor_new,
        .compress_buffer = compress_zstd_buffer,
        .decompress_buffer = compress_zstd_decompress_buffer,
        .open_new = compress_zstd_open_new,
        .open_free = compress_zstd_open_free,
        .open_feed = compress_zstd_open_feed,
        .frame_end = compress_zstd_frame_end,
    },
    {.type = CODEC_CIPHER, .name = "none", .id = CODEC_ID_CIPHER_NONE},
    {
        .type = CODEC_CIPHER,
        .name = "aes-256-gcm",
        .id = CODEC_ID_CIPHER_AES_256_GCM,
        .key_len = CRYPTO_KEY_LEN,
        .nonce_len = CRYPTO_NONCE_LEN,
        .encrypt_new = crypto_gcm_encryptor_new,
        .decrypt_new = crypto_gcm_decryptor_new,
    },
};

#define NCODECS (sizeof(codecs) / sizeof(codecs[0]))

static const char *type_name(enum codec_type type)
{
    return type == CODEC_COMPRESSION ? "compression" : "encryption";
}

const struct codec *codec_by_name(enum codec_type type, const char *name)
{
    struct buf valid = BUF_INIT;

    for (size_t i = 0; i < NCODECS; i++)
        if (codecs[i].type == type && strcmp(codecs[i].name, name) == 0)
            return &codecs[i];
    for (size_t i = 0; i < NCODECS; i++)
        if (codecs[i].type == type)
            buf_appendf(&valid, "%s\"%s\"", valid.len ? ", " : "", codecs[i].name);
    err_set(ERR_CONFIG, "unknown %s algorithm \"%s\" (valid: %s)", type_name(type), name,
            (char *)valid.data);
    buf_free(&valid);
    return NULL;
}

const struct codec *codec_by_id(enum codec_type type, unsigned id)
{
    for (size_t i = 0; i < NCODECS; i++)
        if (codecs[i].type == type && codecs[i].id == id)
            return &codecs[i];
    err_set(ERR_INTEGRITY, "unknown %s id %u", type_name(type), id);
    return NULL;
}

bool codec_is_none(const struct codec *c)
{
    return !c->compress_new && !c->encrypt_new;
}

static int check_type(const struct codec *c, enum codec_type type)
{
    if (c->type != type)
        return err_set(ERR_RUNTIME, "\"%s\" is not %s", c->name,
                       type == CODEC_COMPRESSION ? "a compression algorithm" : "a cipher");
    return 0;
}

static int add(struct filter_chain *chain, struct filter *f)
{
    if (!f || !filter_chain_add(chain, f))
        return err_code();
    return 0;
}

int codec_add_compress(struct filter_chain *chain, const struct codec *c, int level)
{
    int rc = check_type(c, CODEC_COMPRESSION);
    if (rc < 0 || !c->compress_new)
        return rc;
    if (level < c->level_min || level > c->level_max)
        return err_set(ERR_CONFIG, "%s compression level %d is out of range (%d to %d)", c->name,
                       level, c->level_min, c->level_max);
    return add(chain, c->compress_new(level));
}

int codec_add_decompress(struct filter_chain *chain, const struct codec *c)
{
    int rc = check_type(c, CODEC_COMPRESSION);
    if (rc < 0 || !c->decompress_new)
        return rc;
    return add(chain, c->decompress_new());
}

int codec_add_encrypt(struct filter_chain *chain, const struct codec *c, const uint8_t *key,
                      const uint8_t *nonce, const void *aad, size_t aad_len)
{
    int rc = check_type(c, CODEC_CIPHER);
    if (rc < 0 || !c->encrypt_new)
        return rc;
    return add(chain, c->encrypt_new(key, nonce, aad, aad_len));
}

int codec_add_decrypt(struct filter_chain *chain, const struct codec *c, const uint8_t *key,
                      const uint8_t *nonce, const void *aad, size_t aad_len)
{
    int rc = check_type(c, CODEC_CIPHER);
    if (rc < 0 || !c->decrypt_new)
        return rc;
    return add(chain, c->decrypt_new(key, nonce, aad, aad_len));
}
