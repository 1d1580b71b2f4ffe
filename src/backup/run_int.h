/* run_int.h — what the files of one backup run share: run.c (the stream, the lifecycle,
 * the end), store.c (temporary files, the workers that store chunks) and confirm.c
 * (every chunk still stored before the manifests). */
#ifndef PGARK_BACKUP_RUN_INT_H
#define PGARK_BACKUP_RUN_INT_H

#include "backup_int.h"

#include "pgark/chunker.h"

#include <pthread.h>
#include <stdio.h>

#define COPY_BUF (1024 * 1024)

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

enum entry_kind { ENTRY_SKIP = 0, ENTRY_PLAIN, ENTRY_WAL, ENTRY_HISTORY };

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
};

/* --- store.c ------------------------------------------------------------------------- */

/* An unlinked temporary file in dir (what: for messages), as an fd or a FILE. */
int backup_temp_fd(const char *dir, const char *what, int *out);
FILE *backup_temp_file(const char *dir, const char *what);
/* Store the first len bytes of fd as object path of r. */
int backup_put_fd(struct repo *r, const char *path, int fd, uint64_t len);
/* The pool's work on one chunk of a file (chunk_pool_fn). */
int backup_store_chunk(void *arg, void *job, struct chunk *chunk, bool skipped);
void backup_file_free(struct bk_file *f);
/* The files at the head of the list whose chunks are all named, into the manifests. */
int backup_flush_files(struct backup_run *run);

/* --- confirm.c ----------------------------------------------------------------------- */

/* Before the manifests: every chunk the backup names still stored in every repository
 * left, under a fresh lease, then the server's backup_manifest stored (json: each
 * target's spooled manifest; mlen: the server's backup_manifest's length). */
int backup_confirm_stored(struct backup_run *run, FILE **json, long mlen);

#endif
