/* posix_int.h — what the posix driver's files share (posix.c, path.c, write.c, list.c). */
#ifndef PGARK_STORAGE_POSIX_INT_H
#define PGARK_STORAGE_POSIX_INT_H

#include "pgark/storage.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct storage_posix {
    struct storage base;
    char *root;
    int root_fd;
    int no_openat2; /* set (atomically) when openat2 is unavailable: walk instead */
    /* Deferred directory syncs (sync.c), under sync_lock: the directories (relative,
     * "" for the root) holding entries of deferred writes not yet made durable, each
     * once; and the first failure to make one durable, which every later sync reports. */
    pthread_mutex_t sync_lock;
    char **dirty;
    size_t ndirty, dirty_cap;
    char *sync_failed; /* the directory; NULL while none failed */
    const char *sync_failed_what;
    int sync_failed_errno;
    char *fail_dir; /* tests (PGARK_TEST_FAIL_DIR_FSYNC): syncs of dirs below fail */
    /* Directories that deferred writes published in, kept open (under sync_lock) until
     * the handle is freed: the next write there and the sync use the descriptor
     * instead of walking the path again (a chunk store's 256 fan-out directories). */
    struct posix_kept_dir {
        char *rel;
        int fd;
    } * kept;
    size_t nkept, kept_cap;
    /* fsyncs made, of files and of directories (atomic; read by the unit tests) */
    unsigned long fsyncs_file, fsyncs_dir;
};

static inline struct storage_posix *posix_of(struct storage *s)
{
    return (struct storage_posix *)s;
}

/* --- path.c ------------------------------------------------------------------ */

/* Full filesystem path for messages. Caller frees. */
char *posix_full_path(struct storage_posix *p, const char *rel);
/* A repository pgark may not write in: one hint, however it showed (sets it on rc). */
int posix_access_hint(int rc, const char *name);
/* ERR_IO "could not WHAT \"FULL PATH\"" with errnum's text; returns its code. */
int posix_errno_error(struct storage_posix *p, int errnum, const char *what, const char *rel);
/* As posix_errno_error, but ENOTDIR (a file on the way) is ERR_NOT_FOUND. */
int posix_lookup_error(struct storage_posix *p, int errnum, const char *what, const char *rel);
/* The kind of a non-object entry met with this mode. */
enum storage_entry posix_entry_of(mode_t mode);
/* Open rel ("" for the root) beneath the root without following any symbolic link.
 * The descriptor, or -1 with errno set (ELOOP or ENOTDIR when a link or a file is in
 * the way). */
int posix_open_beneath(struct storage_posix *p, const char *rel, int flags, mode_t mode);
/* Whether rel, or a directory on the way to it, is neither a directory nor a regular
 * file: its relative path (malloc'd) and kind in *where and *entry. */
bool posix_find_foreign(struct storage_posix *p, const char *rel, char **where,
                        enum storage_entry *entry);
/* The refusal when rel leads to or through a link or special file, else 0. */
int posix_refuse_foreign(struct storage_posix *p, const char *rel);
/* An operation on rel failed with errnum: refused when a link or special file is in
 * the way, else posix_lookup_error. */
int posix_path_error(struct storage_posix *p, int errnum, const char *what, const char *rel);
/* rel as an object met by fstatat: 0 for a regular file, ERR_NOT_FOUND for a
 * directory, refused for anything else. */
int posix_check_object(struct storage_posix *p, const char *rel, mode_t mode);
/* Open the directory "dir" (relative, "" for the root) beneath the root, creating
 * missing components 0700 when create is set (*made is then set when anything was
 * created). The descriptor, or -1 with errno set. */
int posix_dir_open(struct storage_posix *p, const char *dir, bool create, bool *made);
/* fsync the root and every directory above the last component of "dir", itself
 * excluded. */
int posix_fsync_chain(struct storage_posix *p, const char *dir);
/* Split "a/b/c" into dir "a/b" (malloc'd; "" for a top-level name) and name "c". */
void posix_split_path(const char *path, char **dir, const char **name);
/* A name of a write's temporary file, which list skips. */
bool posix_is_temp_name(const char *name);

/* --- sync.c --------------------------------------------------------------------- */

void posix_sync_init(struct storage_posix *p);
/* fsync fd (a file, or a directory when dir is set), counted; -1 with errno set. */
int posix_fsync(struct storage_posix *p, int fd, bool dir);
/* A deferred write was published in dir (relative): its entry waits for posix_sync;
 * made: the write created directories on the way, so the root and every directory
 * above dir wait too. */
void posix_sync_note(struct storage_posix *p, const char *dir, bool made);
/* The descriptor kept for directory dir (relative), or -1: the handle owns it. */
int posix_kept_dir(struct storage_posix *p, const char *dir);
/* Keep fd, a descriptor of dir that a deferred write published in, for the handle's
 * life; false (fd stays the caller's) when dir has one already or enough are kept. */
bool posix_keep_dir(struct storage_posix *p, const char *dir, int fd);
/* The driver's sync: fsync each noted directory once (see storage_ops.sync). */
int posix_sync(struct storage *s);
/* Sync what is still noted (a failure is logged as a warning, the error slot is left
 * as it was), then release what sync.c holds. */
void posix_sync_free(struct storage_posix *p);

/* --- write.c, list.c: the driver's operations --------------------------------- */

struct storage_write *posix_write_open(struct storage *s, const char *path, uint64_t size_hint);
int posix_write_data(struct storage_write *sw, const uint8_t *data, size_t len);
int posix_write_commit(struct storage_write *sw);
void posix_write_abort(struct storage_write *sw);
int posix_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx);
int posix_sweep(struct storage *s, const char *prefix, int64_t before_us, bool count_only,
                uint64_t *n, uint64_t *bytes);

#endif
