/* privfs.c — files and directories private to pgark's user (see privfs.h). */
#include "pgark/privfs.h"

#include "pgark/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* "uid 0 (root)", or "uid 1234" for a uid with no name. */
static void describe_uid(uid_t uid, char *buf, size_t cap)
{
    struct passwd pw, *found = NULL;
    char tmp[1024];

    if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &found) == 0 && found)
        snprintf(buf, cap, "uid %u (%s)", (unsigned)uid, found->pw_name);
    else
        snprintf(buf, cap, "uid %u", (unsigned)uid);
}

int privfs_check_dir(const char *dir, const char *what)
{
    struct stat st;
    char owner[300], me[300];

    if (stat(dir, &st) < 0) {
        /* Not there (or under a file): nothing to refuse; making it will say what is
         * wrong. */
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return err_set_errno(ERR_IO, errno, "could not examine %s \"%s\"", what, dir);
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(ERR_CONFIG, "%s \"%s\" is not a directory", what, dir);
    if (st.st_uid == geteuid())
        return 0;
    describe_uid(st.st_uid, owner, sizeof(owner));
    describe_uid(geteuid(), me, sizeof(me));
    err_set(ERR_CONFIG, "%s \"%s\" is owned by %s, not by %s that runs pgark", what, dir, owner,
            me);
    return err_hint("another user could read or replace what pgark keeps there: run pgark as its "
                    "owner, or give it to this user (chown -R %u \"%s\")",
                    (unsigned)geteuid(), dir);
}

FILE *privfs_fopen_w(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0)
        return NULL;
    /* One left from before (an older pgark, a crash) keeps its mode otherwise. */
    if (fstat(fd, &st) < 0 || ((st.st_mode & 077) && fchmod(fd, 0600) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}
