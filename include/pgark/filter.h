/*
 * filter.h — streaming byte filters and chains of them.
 *
 * Promise: a filter is a step that consumes bytes and produces bytes (transformer:
 * zstd, AES-256-GCM), passes them through unchanged while looking at them (observer:
 * SHA-256, size), or passes on all but the last few (hold-back: an object's trailer).
 * Filters work with any buffer sizes, down to one byte in and one byte out, and with
 * empty input. A chain owns its filters, runs bytes through them in order and hands the
 * result to a sink. Every chain of the repository is made by one builder
 * (src/repo/envelope.c: "sha256 -> zstd -> encrypt" on the way in, "decrypt -> zstd ->
 * hold back the trailer -> sha256" on the way out, the stored size counted by the sink; a
 * stage that does not apply is left out): one per object read or written, and one kept
 * across objects, reset with filter_chain_reset, by the WAL preparer (walprep.c). The
 * measured fast paths take the compression out of the chain and call the codec's
 * whole-buffer operations instead (a chunk compressed in one piece, a payload
 * decompressed straight into the caller's buffer; the builder's "whole" shape), and a
 * partial segment's open zstd frame (codec.h) is fed by hand, outside any chain. Errors
 * are recorded in the error slot (error.h).
 */
#ifndef PGARK_FILTER_H
#define PGARK_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct filter;

struct filter_ops {
    unsigned version; /* FILTER_OPS_VERSION */
    const char *name;
    /*
     * Consume up to in_len bytes of in (reporting *in_used) and write up to out_cap
     * bytes to out (reporting *out_len). finish is true once no input will follow
     * the in given in this call; the filter then sets *done when it has produced all
     * its output. The caller calls again while output was produced or input remains.
     * Must make progress (consume or produce) unless it is done or out_cap is 0.
     * Returns 0 or a negative error.
     */
    int (*process)(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                   uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done);
    void (*free)(struct filter *f);
    /* Optional (NULL: the filter cannot be reused). Make the filter ready for a new
     * stream, as if just built, keeping what it allocated (a zstd context): long loops
     * reset one chain instead of building one per item. Returns 0 or a negative error. */
    int (*reset)(struct filter *f);
};

#define FILTER_OPS_VERSION 1

/* Common header embedded first in every filter. */
struct filter {
    const struct filter_ops *ops;
};

/* Free a filter not owned by a chain; NULL is a no-op. */
void filter_free(struct filter *f);

/* A sink receives the chain's output; returns 0 or a negative error (recorded). */
typedef int (*filter_sink_fn)(void *ctx, const uint8_t *data, size_t len);

struct filter_chain;

/* buf_size is the size of each stage's output buffer (0 = 64 KiB; tests use 1). */
struct filter_chain *filter_chain_new(size_t buf_size, filter_sink_fn sink, void *sink_ctx);
/* Append a filter (the chain takes ownership, also on failure). Returns the filter. */
struct filter *filter_chain_add(struct filter_chain *c, struct filter *f);
/* Push bytes through the chain to the sink. */
int filter_chain_write(struct filter_chain *c, const void *data, size_t len);
/* Signal end of input, flush every stage to the sink. Call once. */
int filter_chain_finish(struct filter_chain *c);
void filter_chain_free(struct filter_chain *c);
/* Make the chain ready for a new stream (also after a failure): every stage is reset
 * (filter_ops.reset). ERR_RUNTIME, and the chain stays unusable, when a stage has no
 * reset. */
int filter_chain_reset(struct filter_chain *c);

/* Run whole input through one filter (no chain) into a new buffer: for tests and
 * small objects. *out is malloc'd; caller frees. */
int filter_run(struct filter *f, const void *in, size_t in_len, uint8_t **out, size_t *out_len);

/* --- observers -------------------------------------------------------------- */

/*
 * An observer only looks at bytes. Written as a plain filter it would have to copy
 * every byte from its input to its output buffer; a chain can instead show it the
 * bytes and hand the same pointer to the next stage. Observers keep working through
 * the ordinary process() entry point (filter_run, foreign callers):
 * filter_observer_process copies and calls observe. The chain recognises them by that
 * process pointer, so no flag is needed in filter_ops.
 */
struct filter_observer_ops {
    struct filter_ops base; /* base.process must be filter_observer_process */
    /* See len bytes; finish is true exactly once, with the last (possibly empty) piece. */
    void (*observe)(struct filter *f, const uint8_t *data, size_t len, bool finish);
};

int filter_observer_process(struct filter *f, const uint8_t *in, size_t in_len, size_t *in_used,
                            uint8_t *out, size_t out_cap, size_t *out_len, bool finish, bool *done);

/* The observer ops of f, or NULL when f is not an observer. */
const struct filter_observer_ops *filter_observer_ops(const struct filter *f);

struct filter *filter_size_new(void);
uint64_t filter_size_result(const struct filter *f);

/* --- hold-back ---------------------------------------------------------------- */

/*
 * A stage that passes on every byte of its stream but the last n (at most
 * FILTER_HOLDBACK_MAX) and keeps those: a trailer that follows the content (an object's
 * SHA-256, object.c) is held back from everything after it. In a chain it passes on
 * pointers into its input, as an observer does, and copies only the tail it keeps;
 * through process() (filter_run) it copies.
 */
#define FILTER_HOLDBACK_MAX 64
struct filter *filter_holdback_new(size_t n);
/* The bytes held back, *len of them: n once the stream had at least n, else all of it. */
const uint8_t *filter_holdback_result(const struct filter *f, size_t *len);

#endif
