/* zstd.c — zstd compressor and decompressor filters (see include/pgark/compress.h). */
#include "pgark/compress.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* For ZSTD_d_forceIgnoreChecksum (zstd >= 1.4.7), passed through the stable
 * ZSTD_DCtx_setParameter: a library that does not know it refuses it, and the checksum
 * is then checked as usual. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

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

/*
 * One spare compression context per thread, with an output buffer for whole-buffer
 * compression, and one spare decompression context. A backup worker compresses
 * thousands of chunk-sized objects and a restore worker decompresses as many, and a
 * fresh context allocates and initialises its tables (about a megabyte at level 3) for
 * each one; a reused context keeps them. A compressor or decompressor takes its
 * thread's spare and gives it back when freed; the spares go when the thread ends.
 */
struct spare {
    ZSTD_CCtx *cctx;
    uint8_t *out; /* compress_zstd_buffer's output */
    size_t cap;
    ZSTD_DCtx *dctx;
    ZSTD_DCtx *bdctx; /* compress_zstd_decompress_buffer's: content checksums not checked */
};

static _Atomic uint64_t contexts_made;

uint64_t compress_zstd_contexts_made(void)
{
    return contexts_made;
}

static void spare_destroy(void *arg)
{
    struct spare *sp = arg;
    ZSTD_freeCCtx(sp->cctx);
    ZSTD_freeDCtx(sp->dctx);
    ZSTD_freeDCtx(sp->bdctx);
    free(sp->out);
    free(sp);
}

static struct thread_slot spare_slot = THREAD_SLOT_INIT(sizeof(struct spare), spare_destroy);

/* This thread's spare; its context is NULL while a compressor filter has it. */
static struct spare *thread_spare(void)
{
    return thread_slot_get(&spare_slot);
}

/* cctx reset, or a new context when NULL, set to level (valid) with content checksums. */
static ZSTD_CCtx *cctx_ready(ZSTD_CCtx *cctx, int level)
{
    if (cctx) {
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    } else {
        cctx = ZSTD_createCCtx();
        if (!cctx)
            abort(); /* zstd only fails here when out of memory */
        contexts_made++;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)))
        abort(); /* both values are valid by construction */
    return cctx;
}

/* This thread's spare context, or a new one, ready for level. */
static ZSTD_CCtx *cctx_take(int level)
{
    struct spare *sp = thread_spare();
    ZSTD_CCtx *cctx = sp->cctx;
    sp->cctx = NULL;
    return cctx_ready(cctx, level);
}

static void cctx_give_back(ZSTD_CCtx *cctx)
{
    struct spare *sp = thread_spare();
    if (!sp->cctx)
        sp->cctx = cctx;
    else
        ZSTD_freeCCtx(cctx);
}

static int check_level(int level)
{
    if (level < COMPRESS_ZSTD_LEVEL_MIN || level > COMPRESS_ZSTD_LEVEL_MAX)
        return err_set(ERR_CONFIG, "zstd compression level %d is out of range (%d to %d)", level,
                       COMPRESS_ZSTD_LEVEL_MIN, COMPRESS_ZSTD_LEVEL_MAX);
    return 0;
}

/*
 * Whole-buffer compressions run at most one per CPU at a time, on contexts shared by all
 * threads, the most recently used first. A backup has four workers per CPU (they wait on
 * fsync or the network more than they compute); with a context each, every chunk was
 * compressed with tables another worker's chunk had pushed out of the cache: measured on
 * 1.5 GB of pgbench data in 1 MiB pieces on 2 CPUs, 8 threads with their own contexts
 * took 4.1 s of CPU, 2 threads 2.4-2.7 s, 8 threads sharing 2 warm contexts 3.2-3.4 s.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    ZSTD_CCtx *warm[64]; /* free contexts, the most recently used last */
    int nwarm;
    int busy;
    int limit; /* 0 until first use */
} shared = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {NULL}, 0, 0, 0};

static ZSTD_CCtx *shared_take(int level)
{
    ZSTD_CCtx *cctx = NULL;

    pthread_mutex_lock(&shared.lock);
    if (shared.limit == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        shared.limit = n < 1 ? 1 : n > 64 ? 64 : (int)n;
    }
    while (shared.busy >= shared.limit)
        pthread_cond_wait(&shared.freed, &shared.lock);
    shared.busy++;
    if (shared.nwarm > 0)
        cctx = shared.warm[--shared.nwarm];
    pthread_mutex_unlock(&shared.lock);
    return cctx_ready(cctx, level);
}

static void shared_give_back(ZSTD_CCtx *cctx)
{
    pthread_mutex_lock(&shared.lock);
    shared.warm[shared.nwarm++] = cctx; /* at most limit exist: busy bounds them */
    shared.busy--;
    pthread_cond_signal(&shared.freed);
    pthread_mutex_unlock(&shared.lock);
}

int compress_zstd_buffer(int level, const void *in, size_t len, const uint8_t **out,
                         size_t *out_len)
{
    int rc = check_level(level);
    if (rc < 0)
        return rc;
    ZSTD_CCtx *cctx = shared_take(level);
    struct spare *sp = thread_spare();
    size_t bound = ZSTD_compressBound(len);
    if (sp->cap < bound) {
        free(sp->out);
        sp->out = xmalloc(bound);
        sp->cap = bound;
    }
    size_t n = ZSTD_compress2(cctx, sp->out, sp->cap, in, len);
    shared_give_back(cctx);
    if (ZSTD_isError(n))
        return err_set(ERR_RUNTIME, "zstd compression failed: %s", ZSTD_getErrorName(n));
    *out = sp->out;
    *out_len = n;
    return 0;
}

static void zstd_enc_free(struct filter *f)
{
    struct zstd_enc *z = (struct zstd_enc *)f;
    cctx_give_back(z->cctx);
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

struct filter *compress_zstd_compressor_new(int level)
{
    if (check_level(level) < 0)
        return NULL;
    struct zstd_enc *z = xcalloc(1, sizeof(*z));
    z->base.ops = &zstd_enc_ops;
    z->cctx = cctx_take(level);
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

static ZSTD_DCtx *dctx_take(void)
{
    struct spare *sp = thread_spare();
    ZSTD_DCtx *d = sp->dctx;
    if (d) {
        sp->dctx = NULL;
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
    struct spare *sp = thread_spare();
    if (!sp->dctx && !ZSTD_isError(ZSTD_DCtx_reset(d, ZSTD_reset_session_only)))
        sp->dctx = d;
    else
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

struct filter *compress_zstd_decompressor_new(void)
{
    struct zstd_dec *z = xcalloc(1, sizeof(*z));
    z->base.ops = &zstd_dec_ops;
    z->dctx = dctx_take();
    return &z->base;
}

int compress_zstd_decompress_buffer(const void *in, size_t len, void *out, size_t cap,
                                    size_t *out_len)
{
    struct spare *sp = thread_spare();
    int rc = 0;
    *out_len = 0;
    /* Exactly one frame, all of it here: ZSTD_decompressDCtx would go on to a second. */
    size_t frame = ZSTD_findFrameCompressedSize(in, len);
    if (ZSTD_isError(frame)) {
        rc = err_set(ERR_INTEGRITY, "compressed data is %s",
                     ZSTD_getErrorCode(frame) == ZSTD_error_srcSize_wrong
                         ? "truncated"
                         : "corrupt: not one zstd frame");
        goto out;
    }
    if (frame != len) {
        rc = err_set(ERR_INTEGRITY,
                     "compressed data is corrupt: unexpected data after the end of the frame");
        goto out;
    }
    unsigned long long content = ZSTD_getFrameContentSize(in, len);
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != ZSTD_CONTENTSIZE_ERROR && content > cap) {
        rc = err_set(ERR_INTEGRITY,
                     "compressed data is longer than expected: %llu bytes, more than %zu", content,
                     cap);
        goto out;
    }
    if (!sp->bdctx) {
        sp->bdctx = ZSTD_createDCtx();
        if (!sp->bdctx)
            abort(); /* zstd only fails here when out of memory */
        (void)ZSTD_DCtx_setParameter(sp->bdctx, ZSTD_d_forceIgnoreChecksum, ZSTD_d_ignoreChecksum);
    }
    size_t n = ZSTD_decompressDCtx(sp->bdctx, out, cap, in, len);
    if (ZSTD_isError(n)) {
        rc = err_set(ERR_INTEGRITY, "compressed data is %s: %s",
                     ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? "longer than expected"
                                                                         : "corrupt",
                     ZSTD_getErrorName(n));
        goto out;
    }
    *out_len = n;
out:
    return rc;
}

/* --- a frame kept open (compress.h) ----------------------------------------------- */

struct compress_zstd_open {
    ZSTD_CCtx *cctx;
    uint8_t *out;
    size_t cap;
};

struct compress_zstd_open *compress_zstd_open_new(int level)
{
    if (check_level(level) < 0)
        return NULL;
    struct compress_zstd_open *z = xcalloc(1, sizeof(*z));
    z->cctx = cctx_ready(NULL, level);
    /* Its end is written by hand: no checksum of the content to put there. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 0)))
        abort();
    z->cap = 256 * 1024; /* any size does: feeding loops until all is out */
    z->out = xmalloc(z->cap);
    return z;
}

void compress_zstd_open_free(struct compress_zstd_open *z)
{
    if (!z)
        return;
    ZSTD_freeCCtx(z->cctx);
    free(z->out);
    free(z);
}

int compress_zstd_open_feed(struct compress_zstd_open *z, const void *in, size_t len, bool flush,
                            filter_sink_fn sink, void *ctx)
{
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {z->out, z->cap, 0};
        size_t left =
            ZSTD_compressStream2(z->cctx, &ob, &ib, flush ? ZSTD_e_flush : ZSTD_e_continue);
        if (ZSTD_isError(left))
            return err_set(ERR_RUNTIME, "zstd compression failed: %s", ZSTD_getErrorName(left));
        if (ob.pos) {
            int rc = sink(ctx, z->out, ob.pos);
            if (rc < 0)
                return rc;
        }
        /* Continuing, zstd keeps what it has not output yet; it is done with the input
         * once it took all of it and left room in the output. */
        if (ib.pos == ib.size && (flush ? left == 0 : ob.pos < ob.size))
            return 0;
    }
}

size_t compress_zstd_frame_end(const void *data, size_t len, uint8_t *out)
{
    /* A block header: bit 0 last block, bits 1-2 type (0: raw), the rest the size. */
    uint32_t h = 1u | (uint32_t)len << 3;
    out[0] = (uint8_t)h;
    out[1] = (uint8_t)(h >> 8);
    out[2] = (uint8_t)(h >> 16);
    memcpy(out + 3, data, len);
    return COMPRESS_ZSTD_FRAME_END_LEN(len);
}
