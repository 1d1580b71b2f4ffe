/* restore_int.h — what the files of src/restore share. */
#ifndef PGARK_RESTORE_INT_H
#define PGARK_RESTORE_INT_H

#include "pgark/cli.h"
#include "pgark/hash.h"
#include "pgark/pgbin.h"
#include "pgark/repo.h"
#include "pgark/restore.h"

#include <stdbool.h>
#include <stdint.h>

struct cli_context;
struct config;
struct config_cluster;

/* --- what the cluster's repositories hold, together (catalog.c) ------------------- */

struct catalog_entry {
    struct restore_backup b; /* label points into label_buf */
    char label_buf[64];
    size_t repo; /* index in the cli_repos */
    uint64_t logical_bytes;
    uint64_t files;
    uint32_t *ts_oid; /* the backup's tablespaces (owned) */
    char **ts_location;
    size_t n_ts;
};

struct catalog {
    struct catalog_entry *e;
    size_t n;
};

/* Every complete backup (backups/<LABEL>/manifest.json present) of every repo, read from
 * the manifests' first lines. A repo that cannot be opened or listed is warned about and
 * skipped; ERR_NOT_FOUND when no repo holds a backup. */
int catalog_load(struct cli_repos *set, struct catalog *out);
void catalog_free(struct catalog *c);

/* The timeline history of tli from the first repo that has it, NULL for tli 1 or when
 * none has it (then *out is NULL and 0 is returned). */
int catalog_history(struct cli_repos *set, timeline_t tli, struct timeline_history **out);
/* The newest timeline with WAL or a history file in any repo (0 when none). */
int catalog_newest_timeline(struct cli_repos *set, timeline_t *out);

/* Where the WAL archive of timeline tli (and ancestors) ends: the last transaction
 * (commit or abort) time and the start of the last record, decoded from the newest
 * segment or partial of tli in any repo. */
struct catalog_end {
    bool found;
    bool have_xact;
    int64_t last_xact_us; /* Unix microseconds */
    lsn_t last_record;    /* start of the last complete record */
    lsn_t end_lsn;        /* where valid WAL ends */
    lsn_t reach;          /* where the bytes of the newest object end */
    size_t repo;          /* the repository holding it (index in the set) */
    char object[64];      /* the segment decoded, for messages */
};
int catalog_wal_end(struct cli_repos *set, timeline_t tli, struct catalog_end *out);

/* The furthest WAL high-water mark of timeline tli in the set's repositories (found false
 * when none has one; a mark that cannot be read is warned about and passed over). */
struct catalog_hwm {
    bool found;
    struct repo_wal_hwm m;
    lsn_t end;
    size_t repo; /* index in the set */
};
int catalog_wal_hwm(struct cli_repos *set, timeline_t tli, struct catalog_hwm *out);

/* --- beneath a directory, never through a symlink (confine.c) ----------------------- */

/* Directory rel (relative, "" for root itself) beneath directory fd root, opened one
 * component at a time O_NOFOLLOW: no symlink in rel is ever followed. With create,
 * missing components are made (0700) and whatever else stands where a directory goes
 * (a file, a symlink) is removed first: the link itself, never what it points to.
 * shown names root in messages. A new fd, or negative with the error set. */
int confine_dir(int root, const char *rel, bool create, const char *shown);
/* Remove name in directory dfd and, when it is a directory, everything beneath it,
 * following no symlink; counts the non-directories removed (removed may be NULL). A
 * missing name is not an error. */
int confine_remove(int dfd, const char *name, const char *shown, uint64_t *removed);
/* Make name in dfd a symlink to target, replacing whatever is there (never followed). */
int confine_symlink(int dfd, const char *name, const char *target, const char *shown);
/* path with every symlink resolved, for the part that exists (the rest appended as it
 * is); *out is the caller's. ERR_USAGE when a missing part is "." or "..". */
int confine_resolve(const char *path, char **out);
/* Whether resolved path is dir or beneath it. */
bool confine_within(const char *path, const char *dir);

/* --- the data directory (pgdata.c) ------------------------------------------------- */

/* 1 if dir exists and holds anything, 0 if empty or missing, negative on error. */
int pgdata_nonempty(const char *dir);
/* ERR_USAGE when postmaster.pid names a live process. */
int pgdata_check_postmaster(const char *dir);

/* A set of relative paths (the files of the manifest), to remove the others. */
struct path_set;
struct path_set *path_set_new(void);
void path_set_add(struct path_set *s, const char *path);
bool path_set_has(const struct path_set *s, const char *path);
void path_set_free(struct path_set *s);
/* Remove everything beneath directory fd dfd (taken over: closed) whose path, prefix
 * "/" name..., is not in keep (prefix "" for the data directory itself), following no
 * symlink: a kept directory is entered, a kept symlink (a tablespace's, pg_wal) is
 * left as it is and not entered. With top_kept_only, what is not kept at the top is left
 * alone too (a tablespace directory, where other clusters keep their own version
 * directories). shown names dfd in messages; counts the non-directories removed. */
int pgdata_prune(int dfd, const char *prefix, const char *shown, const struct path_set *keep,
                 bool top_kept_only, uint64_t *removed);

/* --- laying down files (writer.c) ---------------------------------------------------- */

struct writer_options {
    const char *pgdata;
    struct repo *repo;
    int threads;
    bool delta;    /* keep chunks whose content already matches */
    bool progress; /* draw a progress line */
    uint64_t total_bytes;
    /* the backup's tablespaces as its header lists them, and the directory each goes to
     * (absolute, checked by the caller: outside the data directory and each other) */
    const uint32_t *ts_oid;
    const char *const *ts_location;
    const char *const *ts_dir;
    size_t n_ts;
    /* pg_wal as a symlink: the WAL directory (absolute, checked like a tablespace's) and
     * the link's text; NULL: pg_wal is a directory in the data directory */
    const char *waldir;
    const char *wal_link;
    struct path_set *seen; /* when not NULL: every manifest path is added, and what is
                              not in it is removed (--delta, --force) */
    uint64_t piece_bytes;  /* work unit per thread; 0: the default (tests use small ones) */
    /* Other repositories of the cluster that name chunks as repo does, opened: a chunk
     * damaged or missing in repo is read from the first of them that holds it sound
     * (warned about, naming both). */
    struct repo *const *alts;
    size_t nalts;
    /* writer_vet, when set: every chunk the manifest names must be in held (repo's
     * listing) or in one of alts (asked with a HEAD each), else ERR_INTEGRITY naming the
     * first that is in none, before anything is written. */
    const struct chunkset *held;
    /* When set: the chunks found in no repository (vet) or sound in none (restore). */
    struct chunkset *bad_out;
    /* When set (one per restore, fresh): writer_vet counts each chunk's references in it,
     * and writer_restore fetches a chunk the manifest names more than once only once,
     * keeping its plaintext until its last reference (within the cache's cap). */
    struct chunkcache *cache;
};

struct writer_stats {
    uint64_t files, bytes;                 /* in the manifest */
    uint64_t files_written, bytes_written; /* rewritten (delta) or written */
    uint64_t chunks_fetched;               /* read from a repository */
    uint64_t chunks_reused;                /* written from the cache of repeated chunks instead */
    uint64_t files_removed;                /* not in the backup (with seen) */
};

/* The newest backup of cat other than label whose manifest names none of the chunks in
 * bad and, when held is set and the backup is in repository held_repo, only chunks held
 * lists; NULL when none. Caller frees. */
struct chunkset;
char *restore_newest_intact(struct cli_repos *set, const struct catalog *cat, const char *label,
                            const struct chunkset *bad, size_t held_repo,
                            const struct chunkset *held);

/* Read the manifest of backup label through restore_vet, writing nothing, and check that
 * its header lists the tablespaces o does. digest: the SHA-256 of the manifest's bytes,
 * for writer_restore. ERR_INTEGRITY naming the entry (context: the backup, the
 * repository, the line) when the manifest is refused. */
int writer_vet(const struct writer_options *o, const char *label, uint8_t digest[SHA256_LEN]);

/* Lay the backup down: make the data directory, the tablespace and WAL directories and
 * their symlinks, stream the manifest again (each entry vetted again before it is acted
 * on; ERR_INTEGRITY at the end when its bytes are not those writer_vet read), write
 * every file beneath its directory without following a symlink, and with seen remove
 * what the backup does not hold. */
int writer_restore(const struct writer_options *o, const char *label,
                   const uint8_t digest[SHA256_LEN], struct writer_stats *st);

/* --- chunks named more than once, fetched once (chunkcache.c) ------------------------- */

/* The cap on the plaintext the cache keeps: restore's RSS is the pieces' buffers
 * (PIECE_BUDGET), this, and the manifest's chunk counts. */
#define RESTORE_CACHE_BYTES (32ull << 20)

struct chunkcache;
/* An empty cache keeping at most limit bytes of plaintext. */
struct chunkcache *chunkcache_new(uint64_t limit);
void chunkcache_free(struct chunkcache *c);
/* One more reference to chunk name (the manifest's first reading). */
void chunkcache_count(struct chunkcache *c, const uint8_t name[SHA256_LEN]);
/* Counting done: forget the chunks referenced once. */
void chunkcache_seal(struct chunkcache *c);
/* How many chunks are referenced more than once (after chunkcache_seal). */
size_t chunkcache_repeated(struct chunkcache *c);
/* Before chunk name (len bytes) is fetched for one of its references. 1: its plaintext
 * was copied into dst, its SHA-256 into plain (when not NULL), and the reference is
 * served. 0: the caller fetches it itself and then calls chunkcache_done; *owner true
 * when the caller holds the claim on it (others needing it wait for chunkcache_done).
 * Waits while another thread fetches it, until chunkcache_cancel. */
int chunkcache_get(struct chunkcache *c, const uint8_t name[SHA256_LEN], uint8_t *dst, size_t len,
                   uint8_t plain[SHA256_LEN], bool *owner);
/* After a chunkcache_get that returned 0: the reference is served. data: the verified
 * plaintext (copied when owner and later references remain, within the cap), or NULL
 * when the fetch failed (the claim is given up). */
void chunkcache_done(struct chunkcache *c, const uint8_t name[SHA256_LEN], bool owner,
                     const uint8_t *data, size_t len, const uint8_t plain[SHA256_LEN]);
/* A reference served without a fetch (--delta: the bytes on disk already have its name,
 * verified data): kept for later references as chunkcache_done keeps them. */
void chunkcache_kept(struct chunkcache *c, const uint8_t name[SHA256_LEN], const uint8_t *data,
                     size_t len, const uint8_t plain[SHA256_LEN]);
/* The restore failed: no one waits any more. */
void chunkcache_cancel(struct chunkcache *c);
/* Bytes of plaintext kept now. */
uint64_t chunkcache_held(struct chunkcache *c);

/* --- starting the server (start.c) --------------------------------------------------- */

struct start_options {
    const char *pgdata;
    int port; /* 0: as configured */
    bool wait;
    const struct restore_target *target;
    int pg_major;
    /* Left out of the server's environment besides what procenv.h leaves out: the
     * variables the configuration read through ${VAR} (config->env_vars). */
    const char *const *env_drop;
    const struct pgbin *bin;
};
/* Start the server with pg_ctl in an environment from pgbin_server_environ: none of
 * pgark's secrets reach it, its children or /proc/<pid>/environ. */
int restore_start(const struct start_options *o);

/* --- wal-fetch's read-ahead cache (prefetch.c) --------------------------------------- */

#define PREFETCH_DIR ".pgark-prefetch"

/* The read-ahead cache beside dest: <dest's directory>/PREFETCH_DIR. Caller frees. */
char *prefetch_cache_dir(const char *dest);
/* Move a cached, verified copy of name into dest (in cache_dir's parent). 1 when served,
 * 0 when not cached. Removes cached files the server has gone past. */
int prefetch_consume(const char *cache_dir, const char *name, const char *dest);
/* When the running read-ahead is fetching name, wait for its copy and serve it as
 * prefetch_consume does (1); 0 when it is not fetching it or ends without a copy. */
int prefetch_await(const char *cache_dir, const char *name, const char *dest);
/* Record that segment `segno` was served and make sure a detached read-ahead process
 * keeps the `depth` segments after it in cache_dir (starts one unless one runs; none
 * when depth is 0). */
void prefetch_spawn(struct cli_repos *set, const char *cache_dir, timeline_t tli, uint64_t segno,
                    uint64_t seg_size, unsigned depth);
/* Remove the cache directory and everything in it. */
void prefetch_drop(const char *cache_dir);

/* --- one WAL object into a file (walobject.c) ------------------------------------------ */

/* How walobject_fetch lays its copy down. */
enum walobject_flags {
    /* the object may be shorter than a segment (a .partial): zero-pad it to seg_size */
    WALOBJECT_PAD = 1,
    /* write the copy out to disk before it is renamed into place (the read-ahead cache:
     * the server fsyncs every segment it restores, in its startup process, and a copy
     * already on disk makes that fsync cheap) */
    WALOBJECT_FLUSH = 2,
};
/* Fetch one WAL object of any repo (posix first) into dest atomically (temp name in
 * dest's directory, renamed; fsynced only with WALOBJECT_FLUSH: the server asks again
 * after a crash). With seg_size non-zero the object must be a whole segment, or with
 * WALOBJECT_PAD at most one. 1 found, 0 not found in any repo, negative when a copy was
 * damaged and no repo had a good one. */
int walobject_fetch(struct cli_repos *set, const char *path, const char *dest, uint64_t seg_size,
                    unsigned flags, const char *what);

/* --- confrestore.c ------------------------------------------------------------------ */

/* restore --config-only: the configuration backup of label (NULL: the newest) from the
 * first repository of set that has it, written under dest (confsnap_write_tree). */
int restore_config_only(struct cli_repos *set, const char *label, const char *dest);
/* After a restore of label from r: its configuration backup, if any, into
 * PGDATA/pgark-restored-config/ with a README. 0 (also when there is none) or negative. */
int restore_config_beside(struct repo *r, const char *repo_name_shown, const char *cluster,
                          const char *label, const char *pgdata);
/* ERR_USAGE (with a hint) when label is a configuration-only backup in some repository
 * of set; 0 otherwise. */
int restore_refuse_config_only(struct cli_repos *set, const char *label);

/* --- the restore command's pieces (args.c, window.c, places.c, recovery.c) ------------ */

struct ts_map {
    uint32_t oid;
    char *dir;
};

struct restore_args {
    const char *pgdata_arg;
    char *pgdata; /* absolute */
    const char *backup;
    const char *repo;
    struct restore_target target;
    bool delta, force, start, wait, json, no_progress;
    bool no_chunk_check; /* --no-chunk-check */
    int port;
    struct ts_map *map;
    size_t nmap;
    const char *ts_dir; /* --tablespace-dir */
    const char *waldir; /* --waldir */
    bool config_only;   /* --config-only */
    const char *dest;   /* --dest, with --config-only */
};

/* The command line into a (zeroed by the caller): 0, 1 when --help was printed, negative
 * (ERR_USAGE) for an unknown option, a bad value or options that do not go together.
 * a->pgdata is made absolute. restore_args_free releases what a holds, even on failure. */
int restore_parse_args(struct restore_args *a, int argc, char **argv);
void restore_args_free(struct restore_args *a);

/* ERR_USAGE with a hint when a time or LSN target lies before the oldest backup leading
 * to timeline tli (history h) or after the end of its WAL archive; xid and name targets
 * are left to the server. */
int restore_check_window(struct restore_args *a, struct cli_repos *set, const struct catalog *cat,
                         timeline_t tli, const struct timeline_history *h);
/* For a restore to latest: ERR_INTEGRITY with a hint when the WAL archive of tli ends
 * before a high-water mark says it reached. */
int restore_check_reach(const struct restore_args *a, struct cli_repos *set, timeline_t tli);
/* The restore of chosen failed on the chunks in bad: add a hint naming the newest backup
 * that does not need them (the error set stays). */
void restore_hint_intact(struct cli_repos *set, const struct catalog *cat,
                         const struct catalog_entry *chosen, const struct chunkset *bad,
                         const struct chunkset *held);

/* Where restore writes besides the data directory. */
struct outer;
struct restore_places {
    const char **ts_dir; /* per tablespace of the backup: where it goes */
    char **ts_owned;     /* the --tablespace-dir ones (owned) */
    size_t n_ts;
    struct outer *outer; /* the tablespaces' directories, then the WAL directory */
    size_t n_outer;
    char *waldir, *wal_link; /* NULL: pg_wal is a directory in the data directory */
    bool nonempty;           /* some of them holds anything */
};
/* Fill p (zeroed by the caller) for backup chosen: where each tablespace and the WAL go,
 * each absolute and apart from the data directory (nonempty: it holds anything) and from
 * each other, and empty unless --delta or --force reuse it as this data directory's own.
 * Negative with the error set (ERR_USAGE; ERR_INTEGRITY, context naming the backup and
 * repo_shown, when the manifest's location is refused); nothing is written. */
int restore_places_plan(struct restore_places *p, const struct restore_args *a,
                        const struct catalog_entry *chosen, bool nonempty, const char *repo_shown);
void restore_places_free(struct restore_places *p);

/* backup_manifest (from r), postgresql.auto.conf with the recovery settings (the
 * restore_command running program with config_path and cluster), recovery.signal and no
 * standby.signal, in the data directory opened once: none of it through a symlink. */
int restore_write_recovery(const struct restore_args *a, struct repo *r, const char *label,
                           const char *program, const char *config_path, const char *cluster);

#endif
