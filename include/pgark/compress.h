/*
 * compress.h — zstd compression as filters (filter.h).
 *
 * Promise: the compressor writes exactly one zstd frame with a content checksum, for
 * any input including empty input. The decompressor accepts exactly one such frame:
 * a truncated frame, bytes after its end, a bad checksum or any corruption zstd
 * detects fail with ERR_INTEGRITY, and it refuses frames needing a window larger than
 * COMPRESS_ZSTD_MAX_WINDOW_LOG, so decoding memory is bounded (about 8 MiB per decoder).
 * Normally built through the codec table (codec.h) rather than called directly.
 */
#ifndef PGARK_COMPRESS_H
#define PGARK_COMPRESS_H

#include "pgark/filter.h"

#include <stdint.h>

/* Levels accepted by compress_zstd_compressor_new; higher levels would need bigger windows. */
#define COMPRESS_ZSTD_LEVEL_MIN 1
#define COMPRESS_ZSTD_LEVEL_MAX 19
#define COMPRESS_ZSTD_LEVEL_DEFAULT 3
/* Largest window (log2 bytes) the decompressor accepts; level 19 uses 23. */
#define COMPRESS_ZSTD_MAX_WINDOW_LOG 23

/* A compressor at level (COMPRESS_ZSTD_LEVEL_MIN..COMPRESS_ZSTD_LEVEL_MAX). Returns NULL with
 * ERR_CONFIG set for a level out of range. The caller owns the filter (or hands it to a chain).
 * Its zstd context is reused: freeing the filter keeps the context for the next compressor
 * the same thread creates (one spare per thread, freed when the thread ends). */
struct filter *compress_zstd_compressor_new(int level);

/*
 * One frame of in (len bytes) at level, as the compressor filter makes it (content
 * checksum; the frame also records its content size), compressed in one piece without
 * copying the input. At most one such compression per CPU runs at a time (a caller waits
 * for its turn), on contexts shared by all threads and reused warm. *out points into a
 * buffer of the calling thread, valid until its next call (it keeps the largest size
 * needed). 0, ERR_CONFIG for a level out of range, ERR_RUNTIME if zstd fails.
 */
int compress_zstd_buffer(int level, const void *in, size_t len, const uint8_t **out,
                         size_t *out_len);

/* Compression contexts created so far by this process (tests: reuse shows here). */
uint64_t compress_zstd_contexts_made(void);

/* A decompressor; never NULL. */
struct filter *compress_zstd_decompressor_new(void);

/*
 * The one frame that in (len bytes, the whole frame and nothing after it) holds,
 * decompressed in one piece straight into out (cap bytes), with a context the calling
 * thread keeps. Output past cap is never written: a frame that would need more is
 * ERR_INTEGRITY, as are a truncated or corrupt frame and bytes after its end. The
 * frame's content checksum is NOT checked (zstd >= 1.4.7; older libraries still check
 * it): this is for callers that verify a stronger digest of the output themselves,
 * which makes the checksum a second pass over every byte for nothing. 0 with
 * *out_len set, or ERR_INTEGRITY.
 */
int compress_zstd_decompress_buffer(const void *in, size_t len, void *out, size_t cap,
                                    size_t *out_len);

#endif
