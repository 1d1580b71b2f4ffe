/* zstd.c — zstd compressor and decompressor filters (see include/pgark/compress.h). */
#include "pgark/compress.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <zstd.h>

struct zstd_enc {
    struct filter base;
    ZSTD_CCtx *cctx;
    bool done;
};

struct zstd_dec {
    struct filter base;
    ZSTD_DCtx *dctx;
    bool frame_done; /* the frame ended and every byte of it was handed out */
    bool failed;
};

static int zstd_enc_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct zstd_enc *z = (struct zstd_enc *)f;
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_cap, 0};
    int rc = 0;

    *in_used = *out_len = 0;
    *done = z->done;
    if (z->done || !out_cap)
        goto out;
    size_t left = ZSTD_compressStream2(z->cctx, &ob, &ib, finish ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) {
        rc = err_set(ERR_RUNTIME, "zstd compression failed: %s", ZSTD_getErrorName(left));
        goto out;
    }
    *in_used = ib.pos;
    *out_len = ob.pos;
    if (finish && left == 0 && ib.pos == in_len)
        *done = z->done = true;
out:
    return rc;
}

static void zstd_enc_free(struct filter *f)
{
    struct zstd_enc *z = (struct zstd_enc *)f;
    ZSTD_freeCCtx(z->cctx);
    free(z);
}

static int zstd_enc_reset(struct filter *f)
{
    struct zstd_enc *z = (struct zstd_enc *)f;
    /* The session only: the level and the checksum flag stay, and so does the memory. */
    size_t r = ZSTD_CCtx_reset(z->cctx, ZSTD_reset_session_only);
    if (ZSTD_isError(r))
        return err_set(ERR_RUNTIME, "zstd compression could not restart: %s", ZSTD_getErrorName(r));
    z->done = false;
    return 0;
}

static const struct filter_ops zstd_enc_ops = {FILTER_OPS_VERSION, "zstd compress",
                                               zstd_enc_process, zstd_enc_free, zstd_enc_reset};

struct filter *filter_zstd_compress_new(int level)
{
    if (level < COMPRESS_ZSTD_LEVEL_MIN || level > COMPRESS_ZSTD_LEVEL_MAX) {
        err_set(ERR_CONFIG, "zstd compression level %d is out of range (%d to %d)", level,
                COMPRESS_ZSTD_LEVEL_MIN, COMPRESS_ZSTD_LEVEL_MAX);
        return NULL;
    }
    struct zstd_enc *z = xcalloc(1, sizeof(*z));
    z->base.ops = &zstd_enc_ops;
    z->cctx = ZSTD_createCCtx();
    if (!z->cctx)
        abort(); /* zstd only fails here when out of memory */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1)))
        abort(); /* both values are valid by construction */
    return &z->base;
}

static int zstd_dec_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done)
{
    struct zstd_dec *z = (struct zstd_dec *)f;
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_cap, 0};
    int rc = 0;

    *in_used = *out_len = 0;
    *done = false;
    if (z->failed) {
        rc = err_set(ERR_INTEGRITY, "zstd decompressor used after a failure");
        goto out;
    }
    if (!z->frame_done && out_cap) {
        size_t hint = ZSTD_decompressStream(z->dctx, &ob, &ib);
        if (ZSTD_isError(hint)) {
            rc = err_set(ERR_INTEGRITY, "compressed data is corrupt: %s", ZSTD_getErrorName(hint));
            goto fail;
        }
        *in_used = ib.pos;
        *out_len = ob.pos;
        /* 0 means the frame is complete and fully flushed. */
        z->frame_done = hint == 0;
    }
    if (z->frame_done && ib.pos < in_len) {
        rc = err_set(ERR_INTEGRITY,
                     "compressed data is corrupt: unexpected data after the end of the frame");
        goto fail;
    }
    if (finish && ib.pos == in_len) {
        if (z->frame_done)
            *done = true;
        else if (ob.pos < ob.size) {
            /* All input is in, and zstd left room in out: it is waiting for more. */
            rc = err_set(ERR_INTEGRITY, "compressed data is truncated");
            goto fail;
        }
    }
    goto out;
fail:
    z->failed = true;
    *in_used = *out_len = 0;
out:
    return rc;
}

/* A decompression context is worth keeping: making one allocates its tables and
 * window each time. Each thread keeps the last one it freed (reset) for its next
 * decompressor; the thread's exit frees it. */
static pthread_key_t spare_dctx;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ok;

static void spare_free(void *p)
{
    ZSTD_freeDCtx(p);
}

static void spare_init(void)
{
    spare_ok = pthread_key_create(&spare_dctx, spare_free) == 0;
}

static ZSTD_DCtx *dctx_take(void)
{
    pthread_once(&spare_once, spare_init);
    ZSTD_DCtx *d = spare_ok ? pthread_getspecific(spare_dctx) : NULL;
    if (d) {
        (void)pthread_setspecific(spare_dctx, NULL);
        return d;
    }
    d = ZSTD_createDCtx();
    if (!d)
        abort(); /* zstd only fails here when out of memory */
    if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, COMPRESS_ZSTD_MAX_WINDOW_LOG)))
        abort();
    return d;
}

static void dctx_give_back(ZSTD_DCtx *d)
{
    /* A session reset keeps the parameters (the window limit) and the memory. */
    if (spare_ok && !pthread_getspecific(spare_dctx) &&
        !ZSTD_isError(ZSTD_DCtx_reset(d, ZSTD_reset_session_only)) &&
        pthread_setspecific(spare_dctx, d) == 0)
        return;
    ZSTD_freeDCtx(d);
}

static void zstd_dec_free(struct filter *f)
{
    struct zstd_dec *z = (struct zstd_dec *)f;
    dctx_give_back(z->dctx);
    free(z);
}

static const struct filter_ops zstd_dec_ops = {FILTER_OPS_VERSION, "zstd decompress",
                                               zstd_dec_process, zstd_dec_free, NULL};

struct filter *filter_zstd_decompress_new(void)
{
    struct zstd_dec *z = xcalloc(1, sizeof(*z));
    z->base.ops = &zstd_dec_ops;
    z->dctx = dctx_take();
    return &z->base;
}
