/* writer_int.h — what writer.c (the manifest, the directories) and pieces.c (the
 * pieces of files, on the pool's threads) share. */
#ifndef PGARK_RESTORE_WRITER_INT_H
#define PGARK_RESTORE_WRITER_INT_H

#include "restore_int.h"

#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PIECE_BYTES (8u << 20)     /* work unit: at most this many bytes of a file */
#define PIECE_BUDGET (64ull << 20) /* all threads' piece buffers together */
#define QUEUE_PER_THREAD 4
/* The syncer (syncer.c): threads that make finished files durable, and the files that may
 * wait for them (each holds its descriptor open meanwhile). */
#define SYNC_THREADS 8
#define SYNC_QUEUE 32
/* Files of at least DIRECT_ALIGN bytes are written with O_DIRECT (see pieces.c): offsets,
 * lengths and buffers aligned to it. */
#define DIRECT_ALIGN 4096u

struct wfile {
    char *path; /* relative */
    int fd;
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    enum manifest_digest_kind digest_kind;
    uint8_t digest[SHA256_LEN];
    uint8_t *chunks; /* n_chunks * 32 raw names */
    uint8_t *plain;  /* MANIFEST_DIGEST_CHUNKS: n_chunks * 32 plaintext SHA-256s, each
                        written by the piece holding the chunk */
    size_t n_chunks;
    size_t pieces;           /* in all */
    size_t pieces_left;      /* not done yet (under lock): the last one frees the file */
    atomic_size_t hash_next; /* the piece whose turn it is to feed sha (moves under
                                writer.lock) */
    struct sha256_ctx *sha;  /* MANIFEST_DIGEST_FILE in an encrypted repository only */
    atomic_bool changed;
    bool checked; /* its digest matched (set by the piece that checked it) */
    bool direct;  /* opened O_DIRECT: a short tail is written padded, the file cut at the end */
    pthread_mutex_t lock;
};

struct job {
    struct wfile *f;
    size_t piece;
    size_t first, count;
};

struct dir_entry {
    char *path; /* as in the manifest, for messages */
    int base;   /* the directory it is beneath (root, a tablespace's, the WAL one) */
    char *rel;  /* beneath base; "" for base itself */
    uint32_t mode;
    int64_t mtime;
};

struct writer {
    const struct writer_options *o;
    bool vet_only; /* writer_vet: read and check, nothing else */
    uint64_t chunk_size;
    int root_fd;
    int *ts_fd; /* o->n_ts tablespace directories */
    int wal_fd; /* o->waldir, or -1 */
    struct progress *progress;
    struct restore_vet *vet;
    struct sha256_ctx *digest;  /* of the manifest's bytes */
    struct chunkset *elsewhere; /* vet with o->held: chunks found in another repository */
    bool chunk_absent;          /* vet: failed on a chunk in no repository */

    /* the directory of the last file created (files come directory by directory) */
    int parent_fd;
    int parent_base;
    char *parent_rel;

    size_t per_piece;   /* chunks in a piece */
    atomic_bool direct; /* large files O_DIRECT (off with delta, an unaligned chunk size,
                           or once the file system refuses it) */
    atomic_bool falloc; /* O_DIRECT files allocated ahead (off once the file system
                           refuses fallocate) */

    pthread_mutex_t lock; /* o->bad_out, and the hash turn */
    pthread_cond_t turn;  /* a file's hash_next moved, or the pool failed */
    struct pool *pool;    /* started with the first file (pieces.c) */
    struct pool *syncer;  /* started with it: fsyncs finished files (syncer.c) */

    atomic_uint_fast64_t files_written, bytes_written, chunks_fetched, chunks_reused;
    uint64_t files, bytes;

    struct dir_entry *dirs;
    size_t ndirs;

    struct manifest_reader *reader;
    int nthreads;
};

/* Whether a worker, the syncer or the reading (pool_fail) failed: everything stops. */
static inline bool writer_failed(const struct writer *w)
{
    return (w->pool && pool_canceled(w->pool)) || (w->syncer && pool_canceled(w->syncer));
}

/* --- pieces.c ------------------------------------------------------------------------ */

/* Start the pool, with the chunk size the manifest's header gives. */
int writer_start_pool(struct writer *w);
/* Queue the pieces of f (its chunks set, pieces counted), which the pool owns from now
 * on: the last piece done frees it. 0, or the pool's failure (f freed when no piece is
 * left). */
int writer_queue_pieces(struct writer *w, struct wfile *f);
/* Every piece done (and hashed): check the whole file's digest and give it its size
 * back (a padded O_DIRECT tail); f->checked when it passed. */
int writer_file_check(struct writer *w, struct wfile *f);
void writer_file_free(struct wfile *f);
/* A failure (the pools' on_cancel; arg is the writer): wake the pieces waiting for their
 * hash turn or for a repeated chunk. */
void writer_wake(void *arg);

/* --- syncer.c ------------------------------------------------------------------------ */

/* Start the syncer's threads. */
int writer_start_syncer(struct writer *w);
/* Hand f over (checked, every piece done, no one else holding it): its mode and mtime
 * set, then fsynced (when written to), closed and freed on a syncer thread. The syncer
 * owns f from now on, also when this fails: 0, or the syncer's failure. */
int writer_sync_file(struct writer *w, struct wfile *f);
/* Wait until every file handed over is durable, and stop the syncer: 0, or its first
 * failure. */
int writer_sync_wait(struct writer *w);

#endif
