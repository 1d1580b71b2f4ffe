/*
 * run_int.h — what the files of one backup run share (not a public interface):
 *
 *   run.c       the stream's entries cut into chunks, WAL archived, the run's lifecycle
 *   store.c     temporary files; the workers that name and store each chunk
 *   incrrecv.c  an incremental's side of the stream: the parent loaded, the
 *               INCREMENTAL.<name> files made into chunks as their blocks arrive
 *   finish.c    the end: every chunk still stored, then the manifests
 */
#ifndef PGARK_BACKUP_RUN_INT_H
#define PGARK_BACKUP_RUN_INT_H

#include "backup_int.h"

#include "pgark/chunker.h"
#include "pgark/pg_incremental.h"

#include <pthread.h>
#include <stdio.h>

/* One manifest line, kept until all its chunks are named. */
struct bk_file {
    struct bk_file *next;
    char *path;
    char *link;
    enum manifest_file_type type;
    uint32_t mode;
    uint64_t size;
    int64_t mtime;
    uint64_t nchunks;
    uint8_t *names;            /* nblocks blocks of nchunks raw 32-byte digests */
    uint8_t *tags;             /* nchunks fingerprints, when there is a fingerprint cache */
    const struct fp_file *old; /* its record in the fingerprint cache */
    uint64_t pending;          /* chunks queued and not done (under run->lock) */
    bool fed;                  /* the main thread is done with it */
};

enum entry_kind { ENTRY_SKIP = 0, ENTRY_PLAIN, ENTRY_WAL, ENTRY_HISTORY, ENTRY_INCR, ENTRY_LABEL };

/* The INCREMENTAL.<name> file being received: its chunks are made as its blocks arrive
 * (in ascending order), each either the parent's unchanged or rebuilt in a pool buffer. */
struct incr_file {
    struct pg_incr_parser *parser;
    char *sent_path; /* INCREMENTAL.<name>'s path */
    const struct incr_parent_file *pf;
    uint64_t truncation; /* bytes */
    uint64_t next;       /* the next chunk to hand on */
    uint8_t *buf;        /* chunk `next` being patched, or NULL */
    size_t buf_len;
    struct rebuild *rebuild; /* what a worker adds to buf */
};

/*
 * A chunk of an incremental file that a worker completes: the main thread copies the
 * changed blocks into the buffer (marked in `changed`), the worker reads the parent's
 * chunk (verified, decrypted, decompressed) and lays its first `keep` bytes under the
 * blocks not changed, zeros after them. The reads run on the workers, side by side, not
 * on the thread that reads the stream.
 */
struct rebuild {
    bool from_parent;
    uint8_t name[SHA256_LEN]; /* the parent's chunk, as the reading repository names it */
    size_t keep;              /* bytes of it below the truncation length */
    uint8_t *changed;         /* a bit per block of the chunk */
    size_t changed_kept;      /* blocks changed below keep: all of them, no read */
};

struct target_state {
    struct backup_target *t;
    size_t group;           /* index of its naming key */
    struct chunkset *known; /* names in the repository or written by this backup */
    struct manifest_writer *mw;
};

struct backup_run {
    struct backup_params p;
    struct target_state *ts;
    const uint8_t **group_keys; /* NULL entries: plain SHA-256 */
    size_t ngroups;
    /* A file's digests: one block of names per group, and the block of plaintext
     * SHA-256s, which is the unkeyed group's when there is one, else one more block. */
    size_t nblocks, plain;
    bool keyed; /* some repository names chunks with a key */
    pthread_mutex_t lock;
    struct chunk_pool *pool;
    struct chunker *chunker;
    struct fpcache *fp; /* NULL: every chunk is hashed */
    struct progress *progress;
    bool show_progress;
    struct backup_totals totals;

    struct bk_file *head, *tail; /* files in stream order, not yet in the manifests */
    struct bk_file *cur;
    enum entry_kind kind;

    int wal_fd; /* the current pg_wal segment, to archive at its end */
    uint64_t wal_len;
    char wal_name[WAL_NAME_BUFLEN];
    char (*archived)[WAL_NAME_BUFLEN]; /* the segments archived, confirmed at the end */
    struct backup_wal_chain chain;     /* the decoding of those segments, in order */
    size_t narchived;
    struct buf history;

    FILE *server_manifest; /* the server's backup_manifest, spooled */

    struct incr_parent *parent; /* incremental: the backup it is taken against */
    struct incr_file inc;
    struct incr_map *incr_sizes; /* path sent -> struct incr_restored */
    struct buf label_text;       /* an incremental's backup_label, being received */
    uint64_t entries;            /* tar entries begun */
};

/* --- store.c ------------------------------------------------------------------------- */

/* An unlinked temporary file in dir (what: for messages), as an fd or a FILE. */
int backup_temp_fd(const char *dir, const char *what, int *out);
FILE *backup_temp_file(const char *dir, const char *what);
/* Where digest block `group` of chunk `index` of f is kept. */
uint8_t *backup_name_slot(struct bk_file *f, size_t group, uint64_t index);
/* The pool's work on one chunk of a file (chunk_pool_fn). */
int backup_store_chunk(void *arg, void *job, struct chunk *ch, bool skipped);

/* --- run.c --------------------------------------------------------------------------- */

/* The files at the head of the list whose chunks are all named, into the manifests. */
int backup_flush_files(struct backup_run *run);

/* --- incrrecv.c ---------------------------------------------------------------------- */

void backup_rebuild_free(struct rebuild *rb);
/* Forget the INCREMENTAL.<name> file being received, giving its buffer back. */
void backup_incr_file_reset(struct backup_run *run);
/* An INCREMENTAL.<name> entry begins: f stands for <name> (target, taken). */
int backup_incr_begin(struct backup_run *run, struct bk_file *f, const char *sent, char *target);
/* The received backup_label of an incremental, without its INCREMENTAL lines, into f. */
int backup_incr_label(struct backup_run *run, struct bk_file *f);
/* The INCREMENTAL.<name> entry ends: its remaining chunks handed on. */
int backup_incr_end(struct backup_run *run, struct bk_file *f);
/* Every chunk name of the parent (run->parent, loaded) as repositories of naming group
 * `group` name them: a new set, the caller's. */
struct chunkset *backup_parent_names(const struct backup_run *run, size_t group);

#endif
