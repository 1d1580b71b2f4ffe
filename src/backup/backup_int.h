/*
 * backup_int.h — the parts of `pgark backup`, shared by the files of src/backup and
 * their unit tests (not a public interface).
 *
 *   fpcache.c   the fingerprint cache: what the last backup saw, to skip hashing again
 *   chunkpool.c worker threads (pool.h) with a bounded set of chunk buffers
 *   run.c       one backup: the BASE_BACKUP stream's entries cut into chunks, named,
 *               stored, WAL archived, manifests written last (with store.c,
 *               incrrecv.c and finish.c: run_int.h)
 *   incr.c      incremental backups: the parent's files, the backup_manifest kept
 *   backup.c    the command: options, configuration, connection, its phases (with
 *               parent.c and summary.c: command_int.h)
 */
#ifndef PGARK_BACKUP_INT_H
#define PGARK_BACKUP_INT_H

#include "pgark/bbstream.h"
#include "pgark/chunker.h"
#include "pgark/chunkset.h"
#include "pgark/hash.h"
#include "pgark/manifest.h"
#include "pgark/pg_basebackup.h"
#include "pgark/progress.h"
#include "pgark/repo.h"
#include "pgark/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- fpcache.c --------------------------------------------------------------------- */

/*
 * A second backup receives every byte again (PostgreSQL 15 has no incremental
 * BASE_BACKUP), and naming every chunk with SHA-256 was a third of its CPU. The cache,
 * <spool>/<cluster>/backup-fingerprints (mode 0600), keeps for each file of the last
 * backup its size and, per chunk, a GMAC fingerprint (hash.h: about four times as fast
 * as SHA-256) and the chunk's digests (one block per naming key, as run.c keeps them).
 * A chunk whose fingerprint and length equal those at the same path and index takes the
 * cached digests instead of being hashed. That is safe because the GMAC key is random,
 * kept only in the cache, beside the spooled WAL that holds the same data: without it,
 * making different bytes with the same fingerprint has a chance of about 2^-112 per
 * 1 MiB try. run.c takes cached digests only for chunks every repository still holds.
 * The cache is an optimisation: when it cannot be read or written the backup hashes
 * everything and says so; it is never a reason for a backup to fail.
 */
#define FP_TAG_LEN GMAC_TAG_LEN

struct fp_ident {
    uint64_t system_identifier;
    uint64_t chunk_size;
    size_t nblocks;           /* digests kept per chunk */
    const uint8_t *block_ids; /* nblocks * 32 bytes: which naming key each block is for */
};

struct fpcache;
struct fp_file;

/* Open the cache in dir (created 0700, with its parent, if missing): the previous one
 * when it is sound and for ident (else none: a damaged one is warned about), and a new
 * one being written beside it. NULL with the error set when the new one cannot be
 * written (directory, permissions, another backup of the cluster writing it). */
struct fpcache *fpcache_open(const char *dir, const struct fp_ident *id);
/* The previous backup's record of path, or NULL. */
const struct fp_file *fpcache_find(const struct fpcache *c, const char *path);
/* The chunk's fingerprint under the cache's key (its pieces or its data). Thread-safe. */
void fpcache_tag(const struct fpcache *c, const struct chunk *ch, uint8_t out[FP_TAG_LEN]);
/* When chunk index of f had len bytes and this tag: its digests (read with
 * fpcache_digest); else NULL. f may be NULL. Thread-safe. */
const uint8_t *fpcache_match(const struct fpcache *c, const struct fp_file *f, uint64_t index,
                             size_t len, const uint8_t tag[FP_TAG_LEN]);
const uint8_t *fpcache_digest(const struct fp_file *f, const uint8_t *match, size_t block);
/* Record a file of this backup: size, its chunks' tags, and its digests (block-major:
 * nblocks blocks of nchunks). A write failure is warned about once and drops the new
 * cache. Main thread only. */
void fpcache_add(struct fpcache *c, const char *path, uint64_t size, const uint8_t *tags,
                 const uint8_t *digests);
/* A file of this backup whose chunks were not fingerprinted (an incremental's file: the
 * server sent its changed blocks only): the previous backup's record of path, if any, goes
 * into the new cache as it was. Its chunks that did not change still match it; those
 * that did fail their fingerprint and are hashed, as without a cache. Main thread only. */
void fpcache_keep(struct fpcache *c, const char *path);
/* The backup is complete: the new cache replaces the previous one (durably). A failure
 * is warned about and keeps the previous one. */
void fpcache_commit(struct fpcache *c);
/* Without a commit the new cache is removed. */
void fpcache_free(struct fpcache *c);

/* --- chunkpool.c ------------------------------------------------------------------- */

/* Work on one chunk (its buffer, all buf_size bytes of it, is the worker's to use
 * until it returns; the pool takes the buffer back then, and the function must have
 * dropped the chunk's pieces, chunk_release): return 0, or negative with the worker's
 * error slot set. Called for every submitted chunk, also after a failure (skipped
 * true: clean up only). */
typedef int (*chunk_pool_fn)(void *arg, void *job, struct chunk *chunk, bool skipped);

/*
 * nworkers threads (the common pool, pool.h) and at most nbufs buffers of buf_size bytes,
 * each allocated when first needed. The producer takes a free buffer (chunk_pool_buffer
 * blocks while all nbufs are in use: that is what bounds memory), fills it and submits
 * it; a worker runs fn on it and frees the buffer. The first failure of fn stops the
 * pool: later submissions are refused with that error.
 */
struct chunk_pool;
struct chunk_pool *chunk_pool_new(int nworkers, size_t nbufs, size_t buf_size, chunk_pool_fn fn,
                                  void *arg);
/* A free buffer, or NULL with the pool's first failure set in the caller's slot. */
uint8_t *chunk_pool_buffer(struct chunk_pool *p);
/* Queue chunk (its data from chunk_pool_buffer; the pool owns it and its pieces from now
 * on) for job. 0, or the pool's failure (then fn is not called for it: the pool drops
 * it). */
int chunk_pool_submit(struct chunk_pool *p, const struct chunk *chunk, void *job);
/* Give back a buffer that was not submitted. */
void chunk_pool_release(struct chunk_pool *p, uint8_t *buf);
/* Wait until every submitted job ran. 0, or the pool's first failure. */
int chunk_pool_wait(struct chunk_pool *p);
/* How many buffers were allocated so far (the most ever in use at once). */
size_t chunk_pool_buffers_made(struct chunk_pool *p);
/* Stop the workers (the jobs still queued are dropped: fn runs with skipped) and free,
 * wiping every buffer made. */
void chunk_pool_free(struct chunk_pool *p);
/* Default worker count: four per core online (the work waits on I/O), 4..32. */
int chunk_pool_default_workers(void);

/* --- incr.c ------------------------------------------------------------------------ */

/* Paths to values (a hash table; keys copied, values freed by free_value, may be NULL). */
struct incr_map;
struct incr_map *incr_map_new(void (*free_value)(void *));
void incr_map_free(struct incr_map *m);
void *incr_map_get(const struct incr_map *m, const char *key);
void incr_map_put(struct incr_map *m, const char *key, void *value);
size_t incr_map_count(const struct incr_map *m);
/* fn for every entry, in no order, until it returns negative (returned). */
int incr_map_each(const struct incr_map *m, int (*fn)(void *arg, const char *key, void *value),
                  void *arg);

/* A regular file of the parent backup: its size, and its chunk names laid out as run.c
 * keeps a file's (nblocks blocks of nchunks 32-byte names, one block per naming key). */
struct incr_parent_file {
    uint64_t size;
    uint64_t nchunks;
    uint8_t *names;
};

/* The backup an incremental is taken against: every regular file of its manifest.json,
 * in memory (32 bytes per chunk and naming key, about 32 MiB per TiB of data). */
struct incr_parent {
    char *label;
    size_t nblocks;
    uint64_t chunk_size;
    struct incr_map *files; /* path -> struct incr_parent_file */
    uint64_t total_bytes;   /* of its regular files */
    struct repo *read_repo; /* where changed ranges read the parent's chunks from */
    size_t read_block;      /* the block of names that repository's are */
};

struct incr_parent *incr_parent_new(const char *label, size_t nblocks, uint64_t chunk_size);
void incr_parent_free(struct incr_parent *p);
/* Read the parent's manifest.json from r into block `block` of the names. ERR_INTEGRITY
 * when two repositories disagree on a file; ERR_RUNTIME when its chunk size differs. */
int incr_parent_load(struct incr_parent *p, struct repo *r, size_t block);
const struct incr_parent_file *incr_parent_find(const struct incr_parent *p, const char *path);

/* A file the backup keeps other than the server sent it. */
struct incr_restored {
    uint64_t size;
    bool crc_set; /* its CRC-32C is known (backup_label) */
    uint32_t crc;
};

/* Copy the server's backup_manifest `in` to `out`, each file line that `files` (path
 * sent -> struct incr_restored) knows replaced by one for the file restored (an
 * INCREMENTAL.<name> by <name>), and the manifest's checksum recomputed (incr.c says
 * why). */
int incr_manifest_rewrite(FILE *in, FILE *out, const struct incr_map *files);

/* --- run.c ------------------------------------------------------------------------- */

struct backup_target {
    struct repo *repo; /* borrowed */
    /* A local filesystem (posix): there a HEAD (a stat) costs about what one chunk of a
     * listing does (7.7 against 6.5 us measured), on S3 about what a hundred do. How the
     * chunks are confirmed before the manifests depends on it (finish.c). */
    bool local;
    /* filled by the run */
    uint64_t stored_bytes;  /* new chunk objects as stored */
    uint64_t new_chunks;    /* chunks written by this backup */
    uint64_t reused_chunks; /* chunks already in the repository (or written earlier in
                             * this backup) */
    /* A repository that failed during the run is dropped from it, the backup goes on in
     * the others: failed set, error the failure as one line (the target owns it). */
    bool failed;
    char *error;
};

struct backup_params {
    const char *label;
    uint64_t chunk_size;
    int workers;         /* 0: pool_default_workers() */
    const char *tmp_dir; /* spooled manifests and WAL segments */
    const char *fp_dir;  /* the fingerprint cache's directory; NULL: none */
    struct backup_target *targets;
    size_t ntargets;
    int pg_version;
    uint64_t system_identifier;
    uint64_t seg_size;
    const char *compression; /* the codec's name ("zstd", "none"), for the manifest header */
    /* The running markers' heartbeat (borrowed): beaten before the chunks are confirmed,
     * its lease checked before manifest.json. NULL: none (the confirmation alone). */
    struct repo_heartbeat *heartbeat;
    int confirm_by; /* how chunks are confirmed: 0 by the rule, 1 a HEAD each, -1 one listing
                     * (tests pick one) */
};

struct backup_totals {
    uint64_t files;          /* manifest lines */
    uint64_t logical_bytes;  /* sum of file sizes */
    uint64_t chunks;         /* chunks of this backup (each counted once per file) */
    uint64_t wal_segments;   /* pg_wal segments archived */
    uint64_t unchanged;      /* chunks named from the fingerprint cache, not hashed */
    uint64_t incr_files;     /* files the server sent as INCREMENTAL.<name> */
    uint64_t incr_blocks;    /* changed blocks received in them */
    uint64_t parent_chunks;  /* chunks taken from the parent unreceived */
    uint64_t patched;        /* chunks rebuilt from changed blocks (and a parent chunk) */
    uint64_t parent_reads;   /* parent chunks read back for those (every block not sent) */
    uint64_t received_bytes; /* file contents the server sent (INCREMENTAL files as sent) */
    uint64_t confirm_heads;  /* chunks confirmed one by one before the manifests (finish.c) */
    uint64_t confirm_lists;  /* listings of chunks/ made for that */
};

/*
 * The WAL a backup carries, decoded segment after segment by one decoder (so that a
 * record crossing into the next segment is read whole), for the time of its newest
 * transaction end before the stop point: the earliest recovery target time PostgreSQL
 * can reach from the backup (it stops before the first commit or abort later than the
 * target, and refuses to stop before the stop point). The stop point is known only once
 * the WAL is through, and lies in the last segment: the segments before it are folded
 * into a maximum, the last one's transaction ends are kept with their LSNs.
 */
struct waldecode;

struct backup_wal_chain {
    struct waldecode *d;   /* NULL before the first segment, or after one it could not read */
    int64_t newest_before; /* PG time of the newest transaction end in earlier segments; 0 */
    struct backup_xact_end {
        lsn_t lsn;
        int64_t time;
    } * cur; /* those of the segment being decoded */
    size_t ncur, cap;
};

void backup_wal_chain_free(struct backup_wal_chain *c);

/* Unix microseconds of the newest transaction end (commit or abort) that starts before
 * stop in the WAL the chain decoded, or 0 when it saw none. */
int64_t backup_wal_chain_newest(const struct backup_wal_chain *c, lsn_t stop);

/* Decode WAL segment `name` of the backup (len bytes in fd), continuing c's decoding
 * when it follows the last segment: *complete when its valid WAL runs to its end or to a
 * switch record, which is so for every segment of a backup from a primary; from a
 * standby, the last one is as far as the standby had it. *valid_end is where its valid
 * WAL ends, *reason (malloc'd, NULL when complete) why. Errors only for I/O or an
 * unsupported major (walseg.c). */
int backup_wal_complete(struct backup_wal_chain *c, int fd, uint64_t len, const char *name,
                        const struct backup_params *p, bool *complete, lsn_t *valid_end,
                        char **reason);

struct backup_run;

/* Load every target's chunk names and start the workers. NULL with the error set. */
struct backup_run *backup_run_new(const struct backup_params *params);
void backup_run_free(struct backup_run *run);

/* Make the run incremental against backup `label`: read its manifest.json from a
 * repository of each naming key. Every live target must hold it and every chunk it names
 * (verify moves a damaged chunk aside): else the error says why, and the run stays a full
 * one. */
int backup_run_load_parent(struct backup_run *run, const char *label);
/* The parent backup_run_load_parent loaded, or NULL. */
const struct incr_parent *backup_run_parent(const struct backup_run *run);
/* Back to a full run (before the stream). */
void backup_run_load_parent_drop(struct backup_run *run);
/* Whether the stream handed the run any entry. */
bool backup_run_began(const struct backup_run *run);

/* The stream callbacks; pass the run as their arg. */
const struct bbstream_callbacks *backup_run_callbacks(void);

/* Show a progress line (on stderr) once the backup's size is known. */
void backup_run_show_progress(struct backup_run *run, bool enabled);

/* For pg_base_backup's started callback (arg: the run): sizes the progress line. */
int backup_run_started(void *run, const struct pg_bb_info *info);

/* Drop target t from the run, the current error (of this thread) being why: it is logged,
 * kept in t->error and cleared, and the run goes on in the other targets. When no target
 * is left, the error stays set and its code is returned: the backup fails. Thread-safe. */
int backup_run_drop(struct backup_run *run, struct backup_target *t);

/* The stream ended well: wait for the workers; confirm that every chunk and WAL segment
 * the backup names is still in every repository (run.c, "before the manifests"), else
 * fail naming one, with no manifest.json written; store the server's backup_manifest
 * and then, last, every target's manifest.json. Times in Unix microseconds. */
int backup_run_finish(struct backup_run *run, const struct pg_bb_info *info, int64_t start_us,
                      int64_t stop_us);

/* Wait until every chunk queued so far is stored. 0 or the first worker failure. */
int backup_run_wait(struct backup_run *run);

const struct backup_totals *backup_run_totals(const struct backup_run *run);

#endif
