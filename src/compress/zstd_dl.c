/*
 * zstd_dl.c — libzstd, loaded on first use: a wal-fetch that finds its segment in the
 * read-ahead's cache only renames it (see src/crypto/crypto_dl.c for why pgark loads
 * its libraries this way). These definitions forward to libzstd.so.1, under libzstd's
 * own names (pgark/dl.h says why).
 */
#include <zstd.h>
#include <zstd_errors.h>

#include "pgark/dl.h"

#define ZSTD_FUNCTIONS(X)                                                                          \
    X(ZSTD_CCtx_reset)                                                                             \
    X(ZSTD_CCtx_setParameter)                                                                      \
    X(ZSTD_DCtx_reset)                                                                             \
    X(ZSTD_DCtx_setParameter)                                                                      \
    X(ZSTD_compress2)                                                                              \
    X(ZSTD_compressBound)                                                                          \
    X(ZSTD_compressStream2)                                                                        \
    X(ZSTD_createCCtx)                                                                             \
    X(ZSTD_createDCtx)                                                                             \
    X(ZSTD_decompressDCtx)                                                                         \
    X(ZSTD_decompressStream)                                                                       \
    X(ZSTD_findFrameCompressedSize)                                                                \
    X(ZSTD_freeCCtx)                                                                               \
    X(ZSTD_freeDCtx)                                                                               \
    X(ZSTD_getErrorCode)                                                                           \
    X(ZSTD_getErrorName)                                                                           \
    X(ZSTD_getFrameContentSize)                                                                    \
    X(ZSTD_isError)

DL_LIBRARY(ZSTD_FUNCTIONS, "libzstd.so.1", "libzstd1");

size_t ZSTD_CCtx_reset(ZSTD_CCtx *cctx, ZSTD_ResetDirective reset)
{
    return DL_REAL(ZSTD_CCtx_reset)(cctx, reset);
}

size_t ZSTD_CCtx_setParameter(ZSTD_CCtx *cctx, ZSTD_cParameter param, int value)
{
    return DL_REAL(ZSTD_CCtx_setParameter)(cctx, param, value);
}

size_t ZSTD_DCtx_reset(ZSTD_DCtx *dctx, ZSTD_ResetDirective reset)
{
    return DL_REAL(ZSTD_DCtx_reset)(dctx, reset);
}

size_t ZSTD_DCtx_setParameter(ZSTD_DCtx *dctx, ZSTD_dParameter param, int value)
{
    return DL_REAL(ZSTD_DCtx_setParameter)(dctx, param, value);
}

size_t ZSTD_compress2(ZSTD_CCtx *cctx, void *dst, size_t dstCapacity, const void *src,
                      size_t srcSize)
{
    return DL_REAL(ZSTD_compress2)(cctx, dst, dstCapacity, src, srcSize);
}

size_t ZSTD_compressBound(size_t srcSize)
{
    return DL_REAL(ZSTD_compressBound)(srcSize);
}

size_t ZSTD_compressStream2(ZSTD_CCtx *cctx, ZSTD_outBuffer *output, ZSTD_inBuffer *input,
                            ZSTD_EndDirective endOp)
{
    return DL_REAL(ZSTD_compressStream2)(cctx, output, input, endOp);
}

ZSTD_CCtx *ZSTD_createCCtx(void)
{
    return DL_REAL(ZSTD_createCCtx)();
}

ZSTD_DCtx *ZSTD_createDCtx(void)
{
    return DL_REAL(ZSTD_createDCtx)();
}

size_t ZSTD_decompressDCtx(ZSTD_DCtx *dctx, void *dst, size_t dstCapacity, const void *src,
                           size_t srcSize)
{
    return DL_REAL(ZSTD_decompressDCtx)(dctx, dst, dstCapacity, src, srcSize);
}

size_t ZSTD_decompressStream(ZSTD_DStream *zds, ZSTD_outBuffer *output, ZSTD_inBuffer *input)
{
    return DL_REAL(ZSTD_decompressStream)(zds, output, input);
}

size_t ZSTD_findFrameCompressedSize(const void *src, size_t srcSize)
{
    return DL_REAL(ZSTD_findFrameCompressedSize)(src, srcSize);
}

size_t ZSTD_freeCCtx(ZSTD_CCtx *cctx)
{
    return DL_REAL(ZSTD_freeCCtx)(cctx);
}

size_t ZSTD_freeDCtx(ZSTD_DCtx *dctx)
{
    return DL_REAL(ZSTD_freeDCtx)(dctx);
}

ZSTD_ErrorCode ZSTD_getErrorCode(size_t functionResult)
{
    return DL_REAL(ZSTD_getErrorCode)(functionResult);
}

const char *ZSTD_getErrorName(size_t code)
{
    return DL_REAL(ZSTD_getErrorName)(code);
}

unsigned long long ZSTD_getFrameContentSize(const void *src, size_t srcSize)
{
    return DL_REAL(ZSTD_getFrameContentSize)(src, srcSize);
}

unsigned ZSTD_isError(size_t code)
{
    return DL_REAL(ZSTD_isError)(code);
}
