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

/*
 * A frame kept open across calls, for a file that grows and is copied again and again (the
 * WAL segment being filled): each compress_zstd_open_feed compresses only the new bytes
 * and flushes, so that everything output so far is a prefix of one frame ending at a block
 * boundary; compress_zstd_frame_end then makes any such prefix a whole frame. The frame
 * has no content checksum (the content it ends with is not known until then): for payloads
 * that carry their own digest. Any zstd decoder, the decompressor above included, reads
 * prefix || end as one frame of everything fed followed by the end's bytes.
 * compress_zstd_open_new: NULL with ERR_CONFIG for a level out of range. The context is
 * the object's own (it may be fed from any thread, one at a time).
 */
struct compress_zstd_open;
struct compress_zstd_open *compress_zstd_open_new(int level);
void compress_zstd_open_free(struct compress_zstd_open *z);
/* Compress in (len bytes, may be 0), and with flush everything fed so far; the output
 * goes to sink. 0, the sink's error, or ERR_RUNTIME if zstd fails (then z is of no further
 * use: free it). */
int compress_zstd_open_feed(struct compress_zstd_open *z, const void *in, size_t len, bool flush,
                            filter_sink_fn sink, void *ctx);
/* How many bytes compress_zstd_frame_end writes for len bytes of content. */
#define COMPRESS_ZSTD_FRAME_END_LEN(len) ((len) + 3)
/* The last block of a frame whose prefix was flushed (once at least one byte was fed: before,
 * there is no prefix, not even the frame's header): data (len bytes, at most 128 KiB),
 * stored raw, into out (COMPRESS_ZSTD_FRAME_END_LEN(len) bytes). Returns that length. */
size_t compress_zstd_frame_end(const void *data, size_t len, uint8_t *out);

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
