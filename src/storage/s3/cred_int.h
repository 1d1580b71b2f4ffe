/*
 * cred_int.h — the S3 driver's credentials, re-read when the files they came from change.
 *
 * Promise: an access key id, secret and session token given as files (the config's
 * KEY_file) follow those files: a rotated key or a renewed short-lived token is used
 * without a restart. The files are looked at (stat: device, inode, size, mtime, ctime)
 * at most once per interval, or at once when asked (a request refused for its
 * credentials); when any of them changed, all are read again, checked as the config
 * checks them (not empty, no NUL byte, at most S3_CRED_FILE_MAX bytes) and, if good and
 * different, replace the current ones under a new generation. A file that cannot be
 * used leaves the current credentials in place (said once per distinct reason). Values
 * given inline never change. Thread-safe; secrets are registered with the logger's
 * redaction and wiped on release.
 */
#ifndef PGARK_S3_CRED_INT_H
#define PGARK_S3_CRED_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum s3_cred_part { S3_CRED_ID = 0, S3_CRED_SECRET, S3_CRED_TOKEN, S3_CRED_PARTS };

#define S3_CRED_FILE_MAX 65536
/* How often the files are looked at without a refused request: a rotation is picked up
 * this long after it at most, and a refused request looks at once. */
#define S3_CRED_DEFAULT_INTERVAL_MS 5000

/* What a file looked like when it was last read; equal means "not changed". */
struct s3_cred_stamp {
    bool known;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
};

struct s3_cred {
    pthread_mutex_t lock;
    char *name;                 /* repository, for messages */
    char *file[S3_CRED_PARTS];  /* NULL: given inline, never re-read */
    char *value[S3_CRED_PARTS]; /* current; token may be NULL */
    struct s3_cred_stamp stamp[S3_CRED_PARTS];
    uint64_t generation; /* 1 at start, +1 at each change */
    int64_t interval_ms; /* between looks at the files */
    int64_t looked_us;   /* monotonic time of the last look; 0: never */
    char *said;          /* the last failure logged, so it is said once */
};

/* A copy of the current credentials, for one signature. */
struct s3_cred_snap {
    char *access_key_id;
    char *secret;
    char *token; /* NULL: none */
    uint64_t generation;
};

/* value[] as read at start (the config read the files once already), file[] where
 * they came from (NULL entries: inline). Everything is copied. The files' stamps are
 * unknown until the first look, so the first look reads them again: a change between
 * the config's read and this one is not missed. interval_ms <= 0: the default. */
void s3_cred_init(struct s3_cred *c, const char *name, const char *const value[S3_CRED_PARTS],
                  const char *const file[S3_CRED_PARTS], int64_t interval_ms);
/* Wipes and frees; safe on a zeroed struct. */
void s3_cred_release(struct s3_cred *c);

/* Look at the files now if force or if the interval has passed: 0 when the current
 * credentials stand (changed or not); negative with the error set (ERR_NOT_FOUND,
 * ERR_AUTH or ERR_IO for a file that cannot be read; ERR_CONFIG for one that is empty,
 * too large or holds a NUL byte), the current credentials kept. */
int s3_cred_refresh(struct s3_cred *c, bool force);

/* The current credentials into out (copied; free with s3_cred_snap_free), after a
 * refresh if one is due; a refresh that fails is logged (a warning, once per distinct
 * reason) and the current credentials are given. */
void s3_cred_get(struct s3_cred *c, struct s3_cred_snap *out);
void s3_cred_snap_free(struct s3_cred_snap *snap);

/* The current generation (changes whenever the credentials do). */
uint64_t s3_cred_generation(struct s3_cred *c);

/* After a request was refused for its credentials: look at the files now (a failure
 * logged as by s3_cred_get; the error slot is left as it was) and return the
 * generation then current. */
uint64_t s3_cred_look_now(struct s3_cred *c);

#endif
