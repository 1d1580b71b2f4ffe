/*
 * test_storage_posix.c — the shared storage suite against the posix driver, plus
 * what only a local filesystem shows (modes, temp files, failed writes, ENOSPC),
 * and the generic layer's retry logic through a scripted flaky driver.
 */
#include "storage_suite.h"

#include "../../src/storage/posix/posix_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "scratch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- target: a fresh directory per test ---------------------------------------- */

struct posix_ctx {
    char base[256]; /* mkdtemp directory holding the root */
    char root[300]; /* root below it, created by the driver */
};

static struct posix_ctx pctx;

static struct storage *posix_create(void *ctx)
{
    struct posix_ctx *c = ctx;
    if (scratch_make(c->base, sizeof(c->base), "storage") < 0) {
        err_set_errno(ERR_IO, errno, "could not create a temporary directory");
        return NULL;
    }
    snprintf(c->root, sizeof(c->root), "%s/repo", c->base);
    return storage_posix_new("local", c->root);
}

static void posix_destroy(struct storage *s, void *ctx)
{
    struct posix_ctx *c = ctx;
    storage_free(s);
    scratch_remove(c->base);
}

static const struct storage_suite_target target = {"posix", posix_create, posix_destroy, &pctx, 0};

/* --- helpers ------------------------------------------------------------------ */

static char *root_path(const char *rel)
{
    return xasprintf("%s/%s", pctx.root, rel);
}

/* Number of entries in a directory (besides . and ..) whose name contains needle. */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strstr(de->d_name, needle))
            n++;
    }
    closedir(d);
    return n;
}

/* The object at dir/obj holds want, and dir has no temporary file left. */
static void assert_kept(struct storage *s, const char *dir, const char *want)
{
    char *path = xasprintf("%s/obj", dir);
    char *got = storage_suite_get(s, path, NULL);
    assert_string_equal(got, want);
    free(got);
    free(path);
    char *full = root_path(dir);
    assert_int_equal(count_entries(full, ".tmp."), 0);
    free(full);
}

static int mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int)(st.st_mode & 07777);
}

static int count_cb(void *ctx, const struct storage_info *info)
{
    (void)info;
    (*(int *)ctx)++;
    return 0;
}

static int list_count(struct storage *s, const char *prefix)
{
    int n = 0;
    assert_int_equal(storage_list(s, prefix, count_cb, &n), 0);
    return n;
}

static int buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    buf_append(ctx, data, len);
    return 0;
}

/* --- posix-only tests ---------------------------------------------------------- */

static void test_modes(void **state)
{
    struct storage *s = storage_suite_storage(state);
    mode_t old = umask(022);
    storage_suite_put(s, "a/b/c/obj", "x", 1);
    storage_suite_put(s, "top", "y", 1);
    umask(old);
    assert_int_equal(mode_of(pctx.root), 0700);
    char *p = root_path("a");
    assert_int_equal(mode_of(p), 0700);
    free(p);
    p = root_path("a/b/c");
    assert_int_equal(mode_of(p), 0700);
    free(p);
    p = root_path("a/b/c/obj");
    assert_int_equal(mode_of(p), 0600);
    free(p);
    p = root_path("top");
    assert_int_equal(mode_of(p), 0600);
    free(p);
}

static void test_root_created_and_refused(void **state)
{
    (void)state;
    char *deep = xasprintf("%s/x/y/z", pctx.base);
    struct storage *s = storage_posix_new("deep", deep);
    assert_non_null(s);
    assert_int_equal(mode_of(deep), 0700);
    storage_free(s);
    /* A second open of an existing root is fine and sees the objects. */
    s = storage_posix_new("deep", deep);
    assert_non_null(s);
    storage_suite_put(s, "o", "1", 1);
    storage_free(s);
    free(deep);

    /* A root that is a file. */
    char *file = xasprintf("%s/plain-file", pctx.base);
    int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_null(storage_posix_new("bad", file));
    char *want = xasprintf("could not open repository directory \"%s\"", file);
    assert_storage_error(err_code(), ERR_IO, want);
    free(want);
    /* A root below a file. */
    char *below = xasprintf("%s/sub", file);
    assert_null(storage_posix_new("bad", below));
    assert_storage_error(err_code(), ERR_IO, "could not create directory");
    free(below);
    free(file);
    assert_null(storage_posix_new("bad", ""));
    assert_storage_error(err_code(), ERR_CONFIG, "repository \"bad\" has an empty path");
}

static void test_error_text(void **state)
{
    struct storage *s = storage_suite_storage(state);
    uint8_t *data;
    size_t len;
    char *want = xasprintf("could not open \"%s/no/such\": No such file or directory\n"
                           "  in repository \"local\"",
                           pctx.root);
    storage_read_all(s, "no/such", &data, &len);
    char *text = err_format();
    assert_string_equal(text, want);
    free(text);
    free(want);
    err_clear();

    storage_suite_put(s, "short", "12345", 5);
    struct buf got = BUF_INIT;
    storage_read(s, "short", 3, 10, buf_sink, &got);
    assert_int_equal(got.len, 0);
    want = xasprintf("object \"%s/short\" is truncated: reading 10 bytes at offset 3 but its "
                     "size is 5",
                     pctx.root);
    assert_string_equal(err_message(), want);
    assert_int_equal(err_kind(), ERR_INTEGRITY);
    free(want);
    err_clear();
}

static void test_temp_files_invisible(void **state)
{
    struct storage *s = storage_suite_storage(state);
    struct storage_write *w = storage_write_open(s, "d/obj", 5);
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, "hello", 5), 0);

    /* The temp file exists, beside the final name, and nobody sees it. */
    char *dir = root_path("d");
    assert_int_equal(count_entries(dir, ".obj.tmp."), 1);
    assert_int_equal(list_count(s, ""), 0);
    assert_int_equal(list_count(s, "d/"), 0);
    assert_int_equal(list_count(s, "d/."), 0);
    assert_int_equal(storage_exists(s, "d/obj"), 0);

    /* A temp file a crash left behind stays invisible too. */
    char *stale = root_path("d/.old.tmp.12345.deadbeef");
    int fd = open(stale, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);

    assert_int_equal(storage_write_commit(w), 0);
    assert_int_equal(count_entries(dir, ".obj.tmp."), 0);
    assert_int_equal(list_count(s, ""), 1);
    assert_int_equal(list_count(s, "d/."), 0);

    /* An abort removes its temp file. */
    w = storage_write_open(s, "d/gone", 5);
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, "hello", 5), 0);
    assert_int_equal(count_entries(dir, ".gone.tmp."), 1);
    storage_write_abort(w);
    assert_int_equal(count_entries(dir, ".gone.tmp."), 0);
    assert_int_equal(list_count(s, ""), 1);

    /* A long name still gets a temp name the filesystem accepts. */
    char name[256];
    memset(name, 'n', 250);
    name[250] = '\0';
    storage_suite_put(s, name, "z", 1);
    assert_int_equal(storage_exists(s, name), 1);
    free(stale);
    free(dir);
}

/* Make a file of len bytes at root-relative rel, last changed age_s seconds ago. */
static void plant(const char *rel, size_t len, time_t age_s)
{
    char *path = root_path(rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    char data[64] = {0};
    assert_true(len <= sizeof(data));
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age_s;
    t[1] = t[0];
    assert_int_equal(futimens(fd, t), 0);
    close(fd);
    free(path);
}

static bool present(const char *rel)
{
    char *path = root_path(rel);
    bool there = access(path, F_OK) == 0;
    free(path);
    return there;
}

/* The sweep takes the temporary files older than its cutoff below its prefix, and
 * nothing else: not a younger one (a write going on), not an object, not a directory,
 * not another prefix's. Counting only removes nothing. */
static void test_sweep_leftovers(void **state)
{
    struct storage *s = storage_suite_storage(state);
    int64_t day_ago_us = ((int64_t)time(NULL) - 86400) * 1000000;
    uint64_t n = 99, bytes = 99;

    storage_suite_put(s, "c/chunks/ab/obj", "x", 1);
    storage_suite_put(s, "other/keep", "y", 1);
    plant("c/chunks/ab/.old.tmp.123.aa", 10, 2 * 86400);
    plant("c/chunks/ab/.young.tmp.123.bb", 20, 3600);
    plant("c/.top.tmp.9.cc", 30, 3 * 86400);
    plant("c/chunks/ab/.notatemp", 5, 3 * 86400);
    plant("other/.far.tmp.1.dd", 40, 3 * 86400);
    char *dir = root_path("c/.dir.tmp.1.ee");
    assert_int_equal(mkdir(dir, 0700), 0);
    /* A link under a temporary name, to an old file outside this prefix: neither goes. */
    char *target = root_path("other/.far.tmp.1.dd");
    char *link = root_path("c/.link.tmp.1.ff");
    assert_int_equal(symlink(target, link), 0);

    assert_int_equal(storage_sweep(s, "c/", day_ago_us, true, &n, &bytes), 0);
    assert_int_equal(n, 2);
    assert_int_equal(bytes, 40);
    assert_true(present("c/chunks/ab/.old.tmp.123.aa"));
    assert_true(present("c/.top.tmp.9.cc"));

    assert_int_equal(storage_sweep(s, "c/", day_ago_us, false, &n, &bytes), 0);
    assert_int_equal(n, 2);
    assert_int_equal(bytes, 40);
    assert_false(present("c/chunks/ab/.old.tmp.123.aa"));
    assert_false(present("c/.top.tmp.9.cc"));
    assert_true(present("c/chunks/ab/.young.tmp.123.bb"));
    assert_true(present("c/chunks/ab/.notatemp"));
    assert_true(present("c/chunks/ab/obj"));
    assert_true(present("c/.dir.tmp.1.ee"));
    assert_true(present("other/.far.tmp.1.dd"));
    assert_true(present("other/keep"));
    struct stat lst;
    assert_int_equal(lstat(link, &lst), 0);
    assert_true(S_ISLNK(lst.st_mode));

    /* Again: nothing left to take; a prefix with nothing below it is not an error. */
    assert_int_equal(storage_sweep(s, "c/", day_ago_us, false, &n, &bytes), 0);
    assert_int_equal(n, 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(storage_sweep(s, "none/", day_ago_us, false, &n, &bytes), 0);
    assert_int_equal(n, 0);
    free(link);
    free(target);
    free(dir);
}

static void test_commit_onto_directory(void **state)
{
    struct storage *s = storage_suite_storage(state);
    storage_suite_put(s, "obj/inside", "x", 1);
    /* "obj" is a directory: the final rename cannot replace it. */
    struct storage_write *w = storage_write_open(s, "obj", 3);
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, "new", 3), 0);
    char *want = xasprintf("could not rename temporary file to \"%s/obj\"", pctx.root);
    assert_storage_error(storage_write_commit(w), ERR_IO, want);
    free(want);
    assert_int_equal(count_entries(pctx.root, ".tmp."), 0);
    char *got = storage_suite_get(s, "obj/inside", NULL);
    assert_string_equal(got, "x");
    free(got);
    assert_storage_error(storage_write_all(s, "obj", "new", 3), ERR_IO, "in repository \"local\"");
    assert_int_equal(count_entries(pctx.root, ".tmp."), 0);
}

static void test_failed_write_keeps_old(void **state)
{
    struct storage *s = storage_suite_storage(state);
    storage_suite_put(s, "keep/obj", "old content", 11);

    /* A file size limit makes the data write fail part way (EFBIG). */
    struct rlimit saved, tiny = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    tiny.rlim_max = saved.rlim_max;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    size_t len = 100000;
    uint8_t *data = xcalloc(1, len);
    int rc = storage_write_all(s, "keep/obj", data, len);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    char *want = xasprintf("could not write \"%s/keep/obj\": File too large", pctx.root);
    assert_storage_error(rc, ERR_IO, want);
    free(want);
    free(data);

    assert_kept(s, "keep", "old content");
}

/* storage_create_all writes where nothing is, and never replaces: the second create
 * fails with ERR_EXISTS, the first content stays, no temporary file is left. */
static void test_create_never_replaces(void **state)
{
    struct storage *s = storage_suite_storage(state);
    assert_int_equal(storage_create_all(s, "new/obj", "first", 5), 0);
    int rc = storage_create_all(s, "new/obj", "second!", 7);
    char *want = xasprintf("\"%s/new/obj\" already exists", pctx.root);
    assert_storage_error(rc, ERR_EXISTS, want);
    free(want);
    assert_kept(s, "new", "first");
    /* an ordinary write still replaces */
    assert_int_equal(storage_write_all(s, "new/obj", "third", 5), 0);
    assert_kept(s, "new", "third");
}

static void test_enospc(void **state)
{
    (void)state;
    /* make check mounts a 256 KiB tmpfs for this (as root) and names it here. */
    const char *tiny = getenv("PGARK_TEST_TINYFS");
    char *mnt = NULL;
    bool mounted = false;
    if (tiny) {
        mnt = xasprintf("%s/enospc-%d", tiny, (int)getpid());
        assert_int_equal(mkdir(mnt, 0700), 0);
    } else {
        if (geteuid() != 0) {
            print_message("skipping: needs PGARK_TEST_TINYFS (make check as root sets it)\n");
            skip();
        }
        mnt = xasprintf("%s/tiny", pctx.base);
        assert_int_equal(mkdir(mnt, 0700), 0);
        if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k,mode=0700") < 0) {
            print_message("skipping: cannot mount a tmpfs here: %s\n", strerror(errno));
            free(mnt);
            skip();
        }
        mounted = true;
    }
    char *root = xasprintf("%s/repo", mnt);
    struct storage *s = storage_posix_new("tiny", root);
    assert_non_null(s);
    storage_suite_put(s, "obj", "old content", 11);
    size_t len = 1024 * 1024;
    uint8_t *data = xcalloc(1, len);
    int rc = storage_write_all(s, "obj", data, len);
    char *text = err_format();
    int kind = err_kind();
    err_clear();
    char *got = storage_suite_get(s, "obj", NULL);
    int temps = count_entries(root, ".tmp.");
    storage_free(s);
    if (mounted)
        umount(mnt);
    else
        scratch_remove(mnt);

    assert_int_equal(rc, -ERR_NO_SPACE);
    assert_int_equal(kind, ERR_NO_SPACE);
    char *want = xasprintf("could not write \"%s/obj\": No space left on device\n"
                           "  in repository \"tiny\"",
                           root);
    assert_string_equal(text, want);
    assert_string_equal(got, "old content");
    assert_int_equal(temps, 0);
    free(want);
    free(got);
    free(text);
    free(data);
    free(root);
    free(mnt);
}

/* Writes of a few bytes are held and go out with the next one (an envelope header with
 * its payload, one call): whatever the mix, the object holds exactly what was written,
 * bytes held until the commit included. */
static void test_small_writes_held(void **state)
{
    struct storage *s = *state;
    static const size_t mixes[][6] = {
        {32, 1, 31, 0},        /* all held until the commit: 64 bytes */
        {32, 100000, 0},       /* a header and its payload */
        {7, 7, 7, 7, 7, 7},    /* held, then out with the write that would overflow */
        {65, 1, 0},            /* too big to hold, then a held byte */
        {0, 5, 0, 70000, 3, 0} /* empty writes among them */
    };
    for (size_t m = 0; m < sizeof(mixes) / sizeof(mixes[0]); m++) {
        struct buf want = BUF_INIT;
        char path[32];
        snprintf(path, sizeof(path), "held/obj%zu", m);
        struct storage_write *w = storage_write_open(s, path, STORAGE_TO_END);
        assert_non_null(w);
        for (size_t i = 0; i < 6; i++) {
            size_t n = mixes[m][i];
            uint8_t *d = xmalloc(n ? n : 1);
            for (size_t k = 0; k < n; k++)
                d[k] = (uint8_t)(want.len + k + m);
            assert_int_equal(storage_write_data(w, d, n), 0);
            buf_append(&want, d, n);
            free(d);
        }
        assert_int_equal(storage_write_commit(w), 0);
        size_t len = 0;
        char *got = storage_suite_get(s, path, &len);
        assert_int_equal(len, want.len);
        assert_memory_equal(got, want.data, want.len);
        free(got);
        buf_free(&want);
    }
}

static void test_rename_fallback_copy(void **state)
{
    struct storage *s = storage_suite_storage(state);
    /* The same driver without rename: the generic layer copies, then removes. */
    struct storage_ops no_rename = *s->ops;
    no_rename.rename = NULL;
    const struct storage_ops *saved = s->ops;
    s->ops = &no_rename;
    size_t len = 3 * 1024 * 1024 + 11;
    uint8_t *data = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 31 + (i >> 9));
    storage_suite_put(s, "from/obj", data, len);
    storage_suite_put(s, "to/obj", "old", 3);
    int rc = storage_rename(s, "from/obj", "to/obj");
    int rc_self = storage_rename(s, "to/obj", "to/obj");
    int rc_missing = storage_rename(s, "from/obj", "else");
    char *text = err_format();
    err_clear();
    s->ops = saved;

    assert_int_equal(rc, 0);
    assert_int_equal(rc_self, 0);
    assert_int_equal(rc_missing, -ERR_NOT_FOUND);
    assert_non_null(strstr(text, "from/obj"));
    free(text);
    assert_int_equal(storage_exists(s, "from/obj"), 0);
    assert_int_equal(storage_exists(s, "else"), 0);
    size_t got_len;
    char *got = storage_suite_get(s, "to/obj", &got_len);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
    free(data);
}

/* --- links and special files inside the repository: never followed --------------- */

static int count_lines(const char *text, const char *needle);

/* Every entry below dir, without following links: "path size bytes" per file,
 * "path -> target" per link, "path/" per directory, sorted, as one string. */
static struct buf *tree_out;
static size_t tree_base;

static int tree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    const char *rel = path + tree_base;
    if (flag == FTW_SL) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n < 0 ? 0 : n] = '\0';
        buf_appendf(tree_out, "%s -> %s\n", rel, target);
    } else if (S_ISDIR(st->st_mode)) {
        buf_appendf(tree_out, "%s/\n", rel);
    } else if (S_ISREG(st->st_mode)) {
        size_t len = 0;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char data[256];
        len = fread(data, 1, sizeof(data), f);
        fclose(f);
        buf_appendf(tree_out, "%s %lld %.*s\n", rel, (long long)st->st_size, (int)len, data);
    } else {
        buf_appendf(tree_out, "%s special\n", rel);
    }
    return 0;
}

static char *tree_of(const char *dir)
{
    struct buf b = BUF_INIT;
    tree_out = &b;
    tree_base = strlen(dir);
    assert_int_equal(nftw(dir, tree_entry, 16, FTW_PHYS), 0);
    tree_out = NULL;
    buf_appendf(&b, "%s", "");
    return buf_steal(&b);
}

static void put_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void make_dir(const char *path)
{
    assert_int_equal(mkdir(path, 0700), 0);
}

static void make_link(const char *target, const char *rel)
{
    char *at = root_path(rel);
    assert_int_equal(symlink(target, at), 0);
    free(at);
}

/* The error text (message and context) and hint, then cleared. */
static void assert_refused(int rc, const char *rel, const char *what)
{
    char *want = xasprintf("\"%s/%s\" is %s\n  in repository \"local\"", pctx.root, rel, what);
    char *text = err_format();
    if (rc != -ERR_IO || strcmp(text, want) != 0)
        fail_msg("rc %d, error:\n%s\nwanted:\n%s", rc, text, want);
    assert_non_null(err_hint_text());
    free(text);
    free(want);
    err_clear();
}

#define LINKED "a symbolic link: refusing to follow it inside a repository"
#define PIPED                                                                                      \
    "a named pipe, not a regular file or directory: refusing to use it inside a repository"

#define CHUNK_AB "main/chunks/ab/ab00000000000000000000000000000000000000000000000000000000000000"
#define CHUNK_CD "main/chunks/cd/cd00000000000000000000000000000000000000000000000000000000000000"
#define SEG1 "main/wal/00000001/000000010000000000000001"
#define SEG2 "main/wal/00000001/000000010000000000000002"

static int paths_cb(void *ctx, const struct storage_info *info)
{
    assert_int_equal(info->entry, STORAGE_ENTRY_OBJECT);
    buf_appendf(ctx, "%s ", info->path);
    return 0;
}

static char *list_paths(struct storage *s, const char *prefix)
{
    struct buf b = BUF_INIT;
    assert_int_equal(storage_list(s, prefix, paths_cb, &b), 0);
    buf_appendf(&b, "%s", "");
    return buf_steal(&b);
}

/*
 * A repository with links planted where pgark's own directories and files go (a
 * backup's folder, a timeline's WAL directory, a chunk directory, a segment, a link
 * from one backup to another) and a FIFO among the chunks; outside it, a live
 * directory those links point to. Through the storage s (on pctx.root): list shows
 * only pgark's own objects and reports each link once; every read, write, stat,
 * rename and removal through a link is refused naming it; nothing outside changes.
 */
static void check_links_refused(struct storage *s)
{
    FILE *log = tmpfile();
    log_set_stream(log);
    char *out = xasprintf("%s/outside", pctx.base);
    char *p;
    make_dir(out);
    p = xasprintf("%s/backup", out);
    make_dir(p);
    free(p);
    p = xasprintf("%s/backup/manifest.json", out);
    put_file(p, "live manifest");
    free(p);
    p = xasprintf("%s/backup/backup_manifest", out);
    put_file(p, "live backup_manifest");
    free(p);
    p = xasprintf("%s/wal", out);
    make_dir(p);
    free(p);
    p = xasprintf("%s/wal/000000020000000000000001", out);
    put_file(p, "live wal");
    free(p);
    p = xasprintf("%s/chunks", out);
    make_dir(p);
    free(p);
    p = xasprintf("%s/chunks/cd00000000000000000000000000000000000000000000000000000000000000",
                  out);
    put_file(p, "live chunk");
    free(p);
    p = xasprintf("%s/file", out);
    put_file(p, "live file");
    free(p);

    storage_suite_put(s, "main/backups/L1/manifest.json", "m1", 2);
    storage_suite_put(s, SEG1, "w1", 2);
    storage_suite_put(s, CHUNK_AB, "c1", 2);
    p = xasprintf("%s/backup", out);
    make_link(p, "main/backups/L2");
    free(p);
    make_link("L1", "main/backups/L3"); /* inside the repository: not followed either */
    p = xasprintf("%s/wal", out);
    make_link(p, "main/wal/00000002");
    free(p);
    p = xasprintf("%s/chunks", out);
    make_link(p, "main/chunks/cd");
    free(p);
    p = xasprintf("%s/file", out);
    make_link(p, SEG2);
    free(p);
    p = root_path("main/chunks/ab/fifo");
    assert_int_equal(mkfifo(p, 0600), 0);
    free(p);
    char *outside_before = tree_of(out);
    char *repo_before = tree_of(pctx.root);

    /* list: pgark's own objects only; each link or FIFO reported once, not followed */
    char *got = list_paths(s, "");
    assert_string_equal(got, "main/backups/L1/manifest.json " CHUNK_AB " " SEG1 " ");
    free(got);
    got = list_paths(s, "main/");
    assert_string_equal(got, "main/backups/L1/manifest.json " CHUNK_AB " " SEG1 " ");
    free(got);
    got = list_paths(s, "main/backups/L2/");
    assert_string_equal(got, "");
    free(got);
    got = list_paths(s, "main/wal/00000002/0000");
    assert_string_equal(got, "");
    free(got);
    got = list_paths(s, "main/chunks/c");
    assert_string_equal(got, "");
    free(got);
    fflush(log);
    rewind(log);
    struct buf text = BUF_INIT;
    char line[1024];
    while (fgets(line, sizeof(line), log))
        buf_append_str(&text, line);
    buf_appendf(&text, "%s", "");
    const char *links[] = {"main/backups/L2", "main/backups/L3", "main/wal/00000002",
                           "main/chunks/cd", SEG2};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        char *want = xasprintf("repository \"local\": skipping \"%s/%s\": it is a symbolic link, "
                               "which pgark does not follow inside a repository\n",
                               pctx.root, links[i]);
        const char *at = strstr((char *)text.data, want);
        if (!at || strstr(at + 1, want))
            fail_msg("wanted once in the log: %s\nlog:\n%s", want, (char *)text.data);
        free(want);
    }
    char *want = xasprintf("repository \"local\": skipping \"%s/main/chunks/ab/fifo\": it is a "
                           "named pipe, not a regular file or directory\n",
                           pctx.root);
    assert_non_null(strstr((char *)text.data, want));
    free(want);
    assert_int_equal(count_lines((char *)text.data, " warn "), 6);
    buf_free(&text);

    /* read, stat: refused, naming the link or the FIFO (which must not hang the read) */
    struct buf b = BUF_INIT;
    assert_refused(
        storage_read(s, "main/backups/L2/manifest.json", 0, STORAGE_TO_END, buf_sink, &b),
        "main/backups/L2", LINKED);
    assert_refused(
        storage_read(s, "main/backups/L3/manifest.json", 0, STORAGE_TO_END, buf_sink, &b),
        "main/backups/L3", LINKED);
    assert_refused(storage_read(s, SEG2, 0, STORAGE_TO_END, buf_sink, &b), SEG2, LINKED);
    assert_refused(storage_read(s, "main/chunks/ab/fifo", 0, 1, buf_sink, &b),
                   "main/chunks/ab/fifo", PIPED);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    uint8_t *data;
    size_t len;
    assert_refused(storage_read_all(s, "main/wal/00000002/000000020000000000000001", &data, &len),
                   "main/wal/00000002", LINKED);
    struct storage_info info;
    assert_refused(storage_info(s, CHUNK_CD, &info), "main/chunks/cd", LINKED);
    assert_refused(storage_exists(s, SEG2), SEG2, LINKED);
    assert_refused(storage_exists(s, "main/backups/L2"), "main/backups/L2", LINKED);

    /* write: refused, whether through a link to a directory, creating directories
     * below one, or over a link to a file */
    assert_refused(storage_write_all(s, "main/wal/00000002/000000020000000000000002", "new", 3),
                   "main/wal/00000002", LINKED);
    assert_refused(storage_write_all(s, "main/chunks/cd/cdnew", "new", 3), "main/chunks/cd",
                   LINKED);
    assert_refused(storage_write_all(s, "main/backups/L2/sub/deeper/obj", "new", 3),
                   "main/backups/L2", LINKED);
    assert_refused(storage_write_all(s, SEG2, "new", 3), SEG2, LINKED);
    assert_refused(storage_create_all(s, "main/backups/L3/backup_manifest", "new", 3),
                   "main/backups/L3", LINKED);
    assert_null(storage_write_open(s, "main/chunks/cd/cdnew", 3));
    assert_refused(err_code(), "main/chunks/cd", LINKED);
    assert_refused(storage_write_all(s, "main/chunks/ab/fifo", "new", 3), "main/chunks/ab/fifo",
                   PIPED);

    /* remove: refused; neither what a link points to nor the link goes */
    assert_refused(storage_remove(s, "main/backups/L2/manifest.json"), "main/backups/L2", LINKED);
    assert_refused(storage_remove(s, "main/wal/00000002/000000020000000000000001"),
                   "main/wal/00000002", LINKED);
    assert_refused(storage_remove(s, CHUNK_CD), "main/chunks/cd", LINKED);
    assert_refused(storage_remove(s, SEG2), SEG2, LINKED);
    assert_refused(storage_remove(s, "main/backups/L2"), "main/backups/L2", LINKED);
    assert_refused(storage_remove(s, "main/chunks/ab/fifo"), "main/chunks/ab/fifo", PIPED);

    /* rename: refused from, into and onto a link */
    assert_refused(
        storage_rename(s, "main/backups/L1/manifest.json", "main/backups/L2/manifest.json"),
        "main/backups/L2", LINKED);
    assert_refused(storage_rename(s, "main/backups/L2/manifest.json", "main/backups/L1/x"),
                   "main/backups/L2", LINKED);
    assert_refused(storage_rename(s, SEG2, "main/wal/00000001/x"), SEG2, LINKED);
    assert_refused(storage_rename(s, SEG1, SEG2), SEG2, LINKED);

    /* a batch goes through the same driver */
    struct storage_batch *batch = storage_batch_new(s, 4);
    assert_int_equal(storage_batch_put(batch, "main/chunks/cd/cdbatch", "new", 3, NULL, NULL), 0);
    assert_refused(storage_batch_wait(batch), "main/chunks/cd", LINKED);
    storage_batch_free(batch);

    /* Nothing changed, outside or inside; no new log line (errors are the caller's). */
    char *outside_after = tree_of(out);
    assert_string_equal(outside_after, outside_before);
    char *repo_after = tree_of(pctx.root);
    assert_string_equal(repo_after, repo_before);
    got = list_paths(s, "");
    assert_string_equal(got, "main/backups/L1/manifest.json " CHUNK_AB " " SEG1 " ");
    free(got);
    got = storage_suite_get(s, SEG1, NULL);
    assert_string_equal(got, "w1");
    free(got);
    fflush(log);
    rewind(log);
    buf_reset(&text);
    while (fgets(line, sizeof(line), log))
        buf_append_str(&text, line);
    buf_appendf(&text, "%s", "");
    assert_int_equal(count_lines((char *)text.data, " warn "), 6);
    buf_free(&text);
    log_set_stream(NULL);
    fclose(log);
    free(outside_after);
    free(outside_before);
    free(repo_after);
    free(repo_before);
    free(out);
}

static void test_links_refused(void **state)
{
    check_links_refused(storage_suite_storage(state));
}

/* The same where the kernel has no openat2: the component walk's turn. */
static void test_links_refused_walk(void **state)
{
    (void)state;
    setenv("PGARK_TEST_NO_OPENAT2", "1", 1);
    struct storage *s = storage_posix_new("local", pctx.root);
    unsetenv("PGARK_TEST_NO_OPENAT2");
    assert_non_null(s);
    check_links_refused(s);
    /* and the walk still does everything else */
    storage_suite_put(s, "main/new/dirs/obj", "walked", 6);
    char *got = storage_suite_get(s, "main/new/dirs/obj", NULL);
    assert_string_equal(got, "walked");
    free(got);
    assert_int_equal(storage_rename(s, "main/new/dirs/obj", "main/other/obj"), 0);
    assert_int_equal(storage_exists(s, "main/other/obj"), 1);
    assert_int_equal(storage_remove(s, "main/other/obj"), 0);
    assert_int_equal(storage_exists(s, "main/other/obj"), 0);
    uint8_t *data;
    size_t len;
    assert_storage_error(storage_read_all(s, "main/no/such", &data, &len), ERR_NOT_FOUND,
                         "main/no/such");
    storage_free(s);
}

/* A link where the cluster's directory goes: nothing below it is listed, read or
 * written; the configured root itself may be a link (the administrator's choice). */
static void test_link_above_and_root(void **state)
{
    struct storage *s = storage_suite_storage(state);
    FILE *log = tmpfile();
    log_set_stream(log);
    char *real = xasprintf("%s/real", pctx.base);
    char *p;
    make_dir(real);
    p = xasprintf("%s/repo.json", real);
    put_file(p, "{}");
    free(p);
    make_link(real, "main");
    assert_int_equal(list_count(s, "main/"), 0);
    assert_int_equal(list_count(s, ""), 0);
    uint8_t *data;
    size_t len;
    assert_refused(storage_read_all(s, "main/repo.json", &data, &len), "main", LINKED);
    assert_refused(storage_write_all(s, "main/wal/00000001/x", "new", 3), "main", LINKED);
    fflush(log);
    rewind(log);
    char line[1024];
    int warns = 0;
    while (fgets(line, sizeof(line), log))
        warns += strstr(line, " warn ") && strstr(line, "/main\": it is a symbolic link");
    assert_int_equal(warns, 1);
    log_set_stream(NULL);
    fclose(log);
    char *outside = tree_of(real);
    assert_string_equal(outside, "/\n/repo.json 2 {}\n");
    free(outside);

    /* A root configured through a link works as any root. */
    char *via = xasprintf("%s/via-link", pctx.base);
    assert_int_equal(symlink(real, via), 0);
    struct storage *r = storage_posix_new("linked", via);
    assert_non_null(r);
    char *got = storage_suite_get(r, "repo.json", NULL);
    assert_string_equal(got, "{}");
    free(got);
    storage_suite_put(r, "wal/00000001/seg", "w", 1);
    assert_int_equal(list_count(r, ""), 2);
    p = xasprintf("%s/wal/00000001/seg", real);
    assert_int_equal(access(p, F_OK), 0);
    free(p);
    storage_free(r);
    free(via);
    free(real);
}

/* --- the retry logic, through a scripted flaky driver ---------------------------- */

/*
 * Wraps a real posix storage and fails the next calls of an operation as scripted.
 * A failing read first delivers partial bytes of what was asked, the way a
 * connection reset in the middle of a GET does; a failing list first delivers
 * partial entries.
 */
enum flaky_op { F_READ, F_OPEN, F_COMMIT, F_LIST, F_INFO, F_REMOVE, F_RENAME, F_COUNT };

struct flaky {
    struct storage base;
    struct storage *inner;
    int fail[F_COUNT];  /* calls still to fail */
    int calls[F_COUNT]; /* calls seen */
    enum err_kind kind; /* kind of the scripted failures */
    uint64_t partial;   /* bytes (read) or entries (list) delivered before failing */
};

struct flaky_write {
    struct storage_write base;
    struct storage_write *inner;
};

static struct flaky *flaky_of(struct storage *s)
{
    return (struct flaky *)s;
}

static bool flaky_fails(struct flaky *f, enum flaky_op op)
{
    f->calls[op]++;
    if (f->fail[op] <= 0)
        return false;
    f->fail[op]--;
    return true;
}

static int scripted(struct flaky *f, enum flaky_op op, const char *what)
{
    return err_set(f->kind, "scripted failure of %s (call %d)", what, f->calls[op]);
}

static int flaky_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                      storage_sink_fn sink, void *ctx)
{
    struct flaky *f = flaky_of(s);
    if (!flaky_fails(f, F_READ))
        return f->inner->ops->read(f->inner, path, offset, length, sink, ctx);
    if (f->partial) {
        uint64_t n = length != STORAGE_TO_END && length < f->partial ? length : f->partial;
        int rc = f->inner->ops->read(f->inner, path, offset, n, sink, ctx);
        if (rc < 0)
            return rc;
    }
    return scripted(f, F_READ, "read");
}

static struct storage_write *flaky_write_open(struct storage *s, const char *path,
                                              uint64_t size_hint)
{
    struct flaky *f = flaky_of(s);
    if (flaky_fails(f, F_OPEN)) {
        scripted(f, F_OPEN, "write open");
        return NULL;
    }
    struct storage_write *inner = f->inner->ops->write_open(f->inner, path, size_hint);
    if (!inner)
        return NULL;
    struct flaky_write *w = xcalloc(1, sizeof(*w));
    w->base.storage = s;
    w->base.path = xstrdup(path);
    w->inner = inner;
    return &w->base;
}

static int flaky_write_data(struct storage_write *sw, const uint8_t *data, size_t len)
{
    struct flaky_write *w = (struct flaky_write *)sw;
    return w->inner->storage->ops->write_data(w->inner, data, len);
}

static int flaky_write_commit(struct storage_write *sw)
{
    struct flaky_write *w = (struct flaky_write *)sw;
    struct flaky *f = flaky_of(sw->storage);
    int rc;
    if (flaky_fails(f, F_COMMIT)) {
        w->inner->storage->ops->write_abort(w->inner);
        rc = scripted(f, F_COMMIT, "commit");
    } else {
        rc = w->inner->storage->ops->write_commit(w->inner);
    }
    free(w->base.path);
    free(w);
    return rc;
}

static void flaky_write_abort(struct storage_write *sw)
{
    struct flaky_write *w = (struct flaky_write *)sw;
    w->inner->storage->ops->write_abort(w->inner);
    free(w->base.path);
    free(w);
}

struct flaky_list {
    storage_list_fn fn;
    void *ctx;
    uint64_t left;
    struct flaky *f;
};

static int flaky_list_cb(void *ctx, const struct storage_info *info)
{
    struct flaky_list *fl = ctx;
    if (fl->left == 0)
        return scripted(fl->f, F_LIST, "list");
    fl->left--;
    return fl->fn(fl->ctx, info);
}

static int flaky_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct flaky *f = flaky_of(s);
    if (!flaky_fails(f, F_LIST))
        return f->inner->ops->list(f->inner, prefix, fn, ctx);
    struct flaky_list fl = {.fn = fn, .ctx = ctx, .left = f->partial, .f = f};
    int rc = f->inner->ops->list(f->inner, prefix, flaky_list_cb, &fl);
    return rc < 0 ? rc : scripted(f, F_LIST, "list");
}

static int flaky_info(struct storage *s, const char *path, struct storage_info *info)
{
    struct flaky *f = flaky_of(s);
    if (flaky_fails(f, F_INFO))
        return scripted(f, F_INFO, "info");
    return f->inner->ops->info(f->inner, path, info);
}

static int flaky_remove(struct storage *s, const char *path)
{
    struct flaky *f = flaky_of(s);
    if (flaky_fails(f, F_REMOVE))
        return scripted(f, F_REMOVE, "remove");
    return f->inner->ops->remove(f->inner, path);
}

static int flaky_rename(struct storage *s, const char *from, const char *to)
{
    struct flaky *f = flaky_of(s);
    if (flaky_fails(f, F_RENAME))
        return scripted(f, F_RENAME, "rename");
    return f->inner->ops->rename(f->inner, from, to);
}

static void flaky_free(struct storage *s)
{
    struct flaky *f = flaky_of(s);
    storage_free(f->inner);
    free(f);
}

static const struct storage_ops flaky_ops = {
    .version = STORAGE_OPS_VERSION,
    .type = "flaky",
    .read = flaky_read,
    .write_open = flaky_write_open,
    .write_data = flaky_write_data,
    .write_commit = flaky_write_commit,
    .write_abort = flaky_write_abort,
    .list = flaky_list,
    .info = flaky_info,
    .remove = flaky_remove,
    .rename = flaky_rename,
    .free = flaky_free,
};

/* The flaky storage wraps the test's posix storage (which it then owns), with
 * short backoffs; warn lines go to a temporary file. */
struct retry_fixture {
    struct flaky *f;
    FILE *log;
};

static int retry_setup(void **state)
{
    if (storage_suite_setup(state) < 0)
        return -1;
    struct retry_fixture *fx = xcalloc(1, sizeof(*fx));
    fx->f = xcalloc(1, sizeof(*fx->f));
    storage_init(&fx->f->base, &flaky_ops, "flaky");
    fx->f->inner = *state;
    fx->f->kind = ERR_TRANSIENT;
    fx->f->base.retry_base_ms = 1;
    fx->log = tmpfile();
    log_set_stream(fx->log);
    *state = fx;
    return 0;
}

static int retry_teardown(void **state)
{
    struct retry_fixture *fx = *state;
    log_set_stream(NULL);
    fclose(fx->log);
    storage_free(&fx->f->base); /* frees the posix storage too */
    *state = NULL;
    free(fx);
    posix_destroy(NULL, &pctx);
    err_clear();
    return 0;
}

/* The log written so far; caller frees. */
static char *log_text(struct retry_fixture *fx)
{
    fflush(fx->log);
    long size = ftell(fx->log);
    char *text = xcalloc(1, (size_t)size + 1);
    rewind(fx->log);
    assert_int_equal(fread(text, 1, (size_t)size, fx->log), (size_t)size);
    return text;
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_retry_read_resumes(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    size_t len = 5000;
    uint8_t *data = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i % 251);
    storage_suite_put(fx->f->inner, "obj", data, len);

    /* Two resets, each after 1000 more bytes: every byte arrives exactly once. */
    fx->f->fail[F_READ] = 2;
    fx->f->partial = 1000;
    struct buf got = BUF_INIT;
    assert_int_equal(storage_read(s, "obj", 0, STORAGE_TO_END, buf_sink, &got), 0);
    assert_int_equal(got.len, len);
    assert_memory_equal(got.data, data, len);
    assert_int_equal(fx->f->calls[F_READ], 3);
    char *log = log_text(fx);
    assert_int_equal(count_lines(log, " warn "), 2);
    assert_non_null(strstr(log, "read of \"obj\" in repository \"flaky\" failed: scripted failure "
                                "of read (call 1); retry 1 of 4 in "));
    assert_non_null(strstr(log, "retry 2 of 4 in "));
    free(log);

    /* A bounded range resumes within its bounds. */
    buf_reset(&got);
    fx->f->fail[F_READ] = 1;
    fx->f->calls[F_READ] = 0;
    assert_int_equal(storage_read(s, "obj", 100, 2500, buf_sink, &got), 0);
    assert_int_equal(got.len, 2500);
    assert_memory_equal(got.data, data + 100, 2500);
    assert_int_equal(fx->f->calls[F_READ], 2);
    buf_free(&got);
    free(data);
}

static void test_retry_gives_up(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    storage_suite_put(fx->f->inner, "obj", "abc", 3);
    s->retries = 2;
    fx->f->fail[F_READ] = 10;
    struct buf got = BUF_INIT;
    assert_storage_error(storage_read(s, "obj", 0, STORAGE_TO_END, buf_sink, &got), ERR_TRANSIENT,
                         "scripted failure of read (call 3)\n  in repository \"flaky\"");
    assert_int_equal(fx->f->calls[F_READ], 3);
    char *log = log_text(fx);
    assert_int_equal(count_lines(log, " warn "), 2);
    free(log);

    /* No retries at all. */
    s->retries = 0;
    fx->f->calls[F_READ] = 0;
    assert_storage_error(storage_read(s, "obj", 0, STORAGE_TO_END, buf_sink, &got), ERR_TRANSIENT,
                         NULL);
    assert_int_equal(fx->f->calls[F_READ], 1);
    buf_free(&got);
}

static void test_retry_only_transient(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    storage_suite_put(fx->f->inner, "obj", "abc", 3);
    fx->f->kind = ERR_IO;
    fx->f->fail[F_READ] = 1;
    struct buf got = BUF_INIT;
    assert_storage_error(storage_read(s, "obj", 0, STORAGE_TO_END, buf_sink, &got), ERR_IO,
                         "scripted failure of read");
    assert_int_equal(fx->f->calls[F_READ], 1);
    fx->f->kind = ERR_TRANSIENT;

    /* A missing object is not retried either. */
    assert_storage_error(storage_read(s, "none", 0, STORAGE_TO_END, buf_sink, &got), ERR_NOT_FOUND,
                         NULL);
    assert_int_equal(fx->f->calls[F_READ], 2);
    char *log = log_text(fx);
    assert_int_equal(count_lines(log, " warn "), 0);
    free(log);
    buf_free(&got);
}

static int transient_sink(void *ctx, const uint8_t *data, size_t len)
{
    (void)data;
    (void)len;
    (*(int *)ctx)++;
    return err_set(ERR_TRANSIENT, "the sink's own transient failure");
}

static void test_retry_not_after_sink_error(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    storage_suite_put(fx->f->inner, "obj", "abc", 3);
    int calls = 0;
    assert_storage_error(storage_read(s, "obj", 0, STORAGE_TO_END, transient_sink, &calls),
                         ERR_TRANSIENT, "the sink's own transient failure");
    assert_int_equal(calls, 1);
    assert_int_equal(fx->f->calls[F_READ], 1);
}

static void test_retry_write_all_and_open(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    fx->f->fail[F_COMMIT] = 2;
    assert_int_equal(storage_write_all(s, "w/obj", "payload", 7), 0);
    assert_int_equal(fx->f->calls[F_OPEN], 3);
    assert_int_equal(fx->f->calls[F_COMMIT], 3);
    char *got = storage_suite_get(fx->f->inner, "w/obj", NULL);
    assert_string_equal(got, "payload");
    free(got);
    assert_int_equal(count_entries(pctx.root, ".tmp."), 0);

    /* The streaming open is retried; a failing streamed commit is not. */
    fx->f->fail[F_OPEN] = 1;
    struct storage_write *w = storage_write_open(s, "w/two", 3);
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, "two", 3), 0);
    fx->f->fail[F_COMMIT] = 1;
    assert_storage_error(storage_write_commit(w), ERR_TRANSIENT, "scripted failure of commit");
    assert_int_equal(storage_exists(s, "w/two"), 0);
}

static int seen_cb(void *ctx, const struct storage_info *info)
{
    buf_appendf(ctx, "%s ", info->path);
    return 0;
}

static void test_retry_list_resumes(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof(name), "l/%02d", i);
        storage_suite_put(fx->f->inner, name, "x", 1);
    }
    fx->f->fail[F_LIST] = 2;
    fx->f->partial = 3;
    struct buf seen = BUF_INIT;
    assert_int_equal(storage_list(s, "l/", seen_cb, &seen), 0);
    assert_string_equal((char *)seen.data, "l/00 l/01 l/02 l/03 l/04 l/05 l/06 l/07 l/08 l/09 ");
    assert_int_equal(fx->f->calls[F_LIST], 3);
    buf_free(&seen);
}

static void test_retry_other_ops(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    storage_suite_put(fx->f->inner, "a", "x", 1);
    fx->f->fail[F_INFO] = 1;
    assert_int_equal(storage_exists(s, "a"), 1);
    assert_int_equal(fx->f->calls[F_INFO], 2);
    fx->f->fail[F_RENAME] = 1;
    assert_int_equal(storage_rename(s, "a", "b"), 0);
    assert_int_equal(fx->f->calls[F_RENAME], 2);
    fx->f->fail[F_REMOVE] = 3;
    assert_int_equal(storage_remove(s, "b"), 0);
    assert_int_equal(fx->f->calls[F_REMOVE], 4);
    assert_int_equal(storage_exists(fx->f->inner, "b"), 0);
    char *log = log_text(fx);
    assert_int_equal(count_lines(log, " warn "), 5);
    assert_non_null(strstr(log, "removal of \"b\" in repository \"flaky\" failed"));
    free(log);
}

static void test_retry_backoff(void **state)
{
    struct retry_fixture *fx = *state;
    struct storage *s = &fx->f->base;
    storage_suite_put(fx->f->inner, "obj", "abc", 3);
    /* 20, 40, 80 ms nominal; with jitter each sleep is between half and all of it. */
    s->retry_base_ms = 20;
    s->retries = 3;
    fx->f->fail[F_INFO] = 3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(storage_exists(s, "obj"), 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 70);
    assert_true(ms < 5000);
    char *log = log_text(fx);
    int64_t waits[3];
    const char *p = log;
    for (int i = 0; i < 3; i++) {
        p = strstr(p, " in repository \"flaky\" failed");
        assert_non_null(p);
        p = strstr(p, "; retry ");
        long long w;
        int n, of;
        assert_int_equal(sscanf(p, "; retry %d of %d in %lld ms", &n, &of, &w), 3);
        assert_int_equal(n, i + 1);
        assert_int_equal(of, 3);
        waits[i] = w;
        p++;
    }
    assert_true(waits[0] >= 10 && waits[0] <= 20);
    assert_true(waits[1] >= 20 && waits[1] <= 40);
    assert_true(waits[2] >= 40 && waits[2] <= 80);
    free(log);
}

/* --- deferred directory syncs --------------------------------------------------- */

static unsigned long fsyncs(struct storage *s, bool dir)
{
    struct storage_posix *p = (struct storage_posix *)s;
    return __atomic_load_n(dir ? &p->fsyncs_dir : &p->fsyncs_file, __ATOMIC_RELAXED);
}

/* A streamed write (storage_write_open .. commit), as the repository writes chunks. */
static void put_streamed(struct storage *s, const char *path, const char *text)
{
    struct storage_write *w = storage_write_open(s, path, strlen(text));
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, text, strlen(text)), 0);
    assert_int_equal(storage_write_commit(w), 0);
}

/* Deferred writes fsync their files and no directory; storage_sync then fsyncs each
 * directory they wrote in once, with those they created above; a write that is not
 * deferred makes what is pending durable before it is published. */
static void test_deferred_dir_syncs(void **state)
{
    struct storage *s = storage_suite_storage(state);
    unsigned long d0 = fsyncs(s, true), f0 = fsyncs(s, false);
    storage_defer_sync_begin(s);
    for (int i = 0; i < 12; i++) {
        char path[64];
        snprintf(path, sizeof(path), "main/chunks/%02x/c%d", i % 3, i);
        if (i % 2)
            storage_suite_put(s, path, "chunk", 5);
        else
            put_streamed(s, path, "chunk");
    }
    storage_defer_sync_end(s);
    assert_int_equal(fsyncs(s, false) - f0, 12);
    assert_int_equal(fsyncs(s, true) - d0, 0);
    char *got = storage_suite_get(s, "main/chunks/02/c11", NULL);
    assert_string_equal(got, "chunk");
    free(got);

    /* main/chunks/00, 01, 02, and the root, main, main/chunks the writes created */
    assert_int_equal(storage_sync(s), 0);
    assert_int_equal(fsyncs(s, true) - d0, 6);
    assert_int_equal(storage_sync(s), 0); /* nothing pending: nothing done */
    assert_int_equal(fsyncs(s, true) - d0, 6);

    /* Outside the scope nothing is deferred: one more chunk, then a manifest. Its
     * commit fsyncs the pending main/chunks/01 first, then its own directory and, as it
     * created main/backups/b1, the root, main and main/backups. */
    storage_defer_sync_begin(s);
    storage_suite_put(s, "main/chunks/01/late", "chunk", 5);
    storage_defer_sync_end(s);
    assert_int_equal(fsyncs(s, true) - d0, 6);
    storage_suite_put(s, "main/backups/b1/manifest.json", "{}", 2);
    assert_int_equal(fsyncs(s, true) - d0, 6 + 1 + 4);
    /* and a rename likewise */
    storage_defer_sync_begin(s);
    storage_suite_put(s, "main/chunks/02/late", "chunk", 5);
    storage_defer_sync_end(s);
    assert_int_equal(storage_rename(s, "main/backups/b1/manifest.json", "main/backups/b1/m2"), 0);
    assert_int_equal(fsyncs(s, true) - d0, 6 + 1 + 4 + 1 + 1);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Deferred writes keep one descriptor per directory they published in, reused by the
 * next write there and by the sync (no descriptor more per write), and the handle
 * closes them; the objects are whole and the directories are made durable as before. */
static void test_deferred_dirs_kept(void **state)
{
    (void)state;
    int before = open_fds();
    struct storage *s = storage_posix_new("local", pctx.root);
    assert_non_null(s);
    int n0 = open_fds();
    unsigned long d0 = fsyncs(s, true);
    for (int round = 0; round < 2; round++) {
        storage_defer_sync_begin(s);
        for (int i = 0; i < 20; i++) {
            char path[64], text[16];
            snprintf(path, sizeof(path), "main/chunks/%02x/r%dc%d", i % 4, round, i);
            snprintf(text, sizeof(text), "chunk %d %d", round, i);
            put_streamed(s, path, text);
        }
        storage_defer_sync_end(s);
        assert_int_equal(open_fds(), n0 + 4); /* the four fan-out directories */
        assert_int_equal(storage_sync(s), 0);
    }
    /* the four each time, and the root, main and main/chunks the first writes created */
    assert_int_equal(fsyncs(s, true) - d0, 4 + 3 + 4);
    /* a write there that is not deferred uses the kept one, and leaves it */
    storage_suite_put(s, "main/chunks/00/plain", "plain", 5);
    assert_int_equal(open_fds(), n0 + 4);
    assert_int_equal(fsyncs(s, true) - d0, 4 + 3 + 4 + 1);
    storage_free(s);
    assert_int_equal(open_fds(), before);

    s = storage_posix_new("local", pctx.root);
    assert_non_null(s);
    char *got = storage_suite_get(s, "main/chunks/03/r1c19", NULL);
    assert_string_equal(got, "chunk 1 19");
    free(got);
    got = storage_suite_get(s, "main/chunks/00/r0c0", NULL);
    assert_string_equal(got, "chunk 0 0");
    free(got);
    storage_free(s);
}

/* Kept descriptors stay within a quarter of the limit on open files, over all handles:
 * beyond it writes open their directory each time, and the objects are whole. */
static void test_deferred_dirs_kept_bounded(void **state)
{
    (void)state;
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int before = open_fds();
    low = old;
    /* room for what is open, the kept quarter and the writes' own */
    low.rlim_cur = (rlim_t)(2 * before + 40);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    long cap = (long)low.rlim_cur / 4;
    struct storage *s1 = storage_posix_new("one", pctx.root);
    struct storage *s2 = storage_posix_new("two", pctx.root);
    assert_non_null(s1);
    assert_non_null(s2);
    int n0 = open_fds();
    int per = before / 2 + 15; /* directories per handle: more than cap in all */
    for (int k = 0; k < 2; k++) {
        struct storage *s = k ? s2 : s1;
        storage_defer_sync_begin(s);
        for (int i = 0; i < per; i++) {
            char path[64], text[32];
            snprintf(path, sizeof(path), "s%d/chunks/%03x/c%d", k, i, i);
            snprintf(text, sizeof(text), "chunk %d %d", k, i);
            put_streamed(s, path, text);
        }
        storage_defer_sync_end(s);
    }
    assert_true(2 * per > cap);
    assert_int_equal(open_fds() - n0, cap);
    assert_int_equal(storage_sync(s1), 0);
    assert_int_equal(storage_sync(s2), 0);
    char path[64], want[32];
    snprintf(path, sizeof(path), "s1/chunks/%03x/c%d", per - 1, per - 1);
    snprintf(want, sizeof(want), "chunk 1 %d", per - 1);
    char *got = storage_suite_get(s2, path, NULL);
    assert_string_equal(got, want);
    free(got);
    storage_free(s1);
    storage_free(s2);
    assert_int_equal(open_fds(), before);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* A directory fsync that fails at the sync: the error names the directory, a record
 * written after it is refused and not published, and the failure stays. */
static void test_deferred_sync_fails(void **state)
{
    (void)state;
    setenv("PGARK_TEST_FAIL_DIR_FSYNC", "main/chunks/01", 1);
    struct storage *s = storage_posix_new("local", pctx.root);
    unsetenv("PGARK_TEST_FAIL_DIR_FSYNC");
    assert_non_null(s);
    storage_defer_sync_begin(s);
    storage_suite_put(s, "main/chunks/00/a", "chunk", 5);
    storage_suite_put(s, "main/chunks/01/b", "chunk", 5);
    storage_defer_sync_end(s);
    char *want =
        xasprintf("could not fsync directory \"%s/main/chunks/01\": Input/output error", pctx.root);
    assert_storage_error(storage_sync(s), ERR_IO, want);
    assert_storage_error(storage_write_all(s, "main/backups/b1/manifest.json", "{}", 2), ERR_IO,
                         want);
    assert_int_equal(storage_exists(s, "main/backups/b1/manifest.json"), 0);
    struct storage_write *w = storage_write_open(s, "main/backups/b1/manifest.json", 2);
    assert_non_null(w);
    assert_int_equal(storage_write_data(w, "{}", 2), 0);
    assert_storage_error(storage_write_commit(w), ERR_IO, want);
    assert_int_equal(storage_exists(s, "main/backups/b1/manifest.json"), 0);
    char *dir = root_path("main/backups/b1");
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    free(dir);
    assert_storage_error(storage_sync(s), ERR_IO, want);
    free(want);
    storage_free(s);
}

/* A sync of a chunk store's 256 fan-out directories (fsynced side by side): each noted
 * directory once, the chain above them once; one that fails is the one named, by this
 * and every later sync, whichever thread met it. */
static void test_deferred_sync_many(void **state)
{
    (void)state;
    for (int fail = 0; fail < 2; fail++) {
        if (fail)
            setenv("PGARK_TEST_FAIL_DIR_FSYNC", "many/chunks/a7", 1);
        struct storage *s = storage_posix_new("local", pctx.root);
        unsetenv("PGARK_TEST_FAIL_DIR_FSYNC");
        assert_non_null(s);
        unsigned long d0 = fsyncs(s, true);
        storage_defer_sync_begin(s);
        for (int i = 0; i < 256; i++) {
            char path[64];
            snprintf(path, sizeof(path), "many/chunks/%02x/c%d", i, fail);
            storage_suite_put(s, path, "chunk", 5);
        }
        storage_defer_sync_end(s);
        assert_int_equal(fsyncs(s, true) - d0, 0);
        if (!fail) {
            /* 256 fan-out directories, then "many/chunks", "many" and the root */
            assert_int_equal(storage_sync(s), 0);
            assert_int_equal(fsyncs(s, true) - d0, 256 + 3);
            assert_int_equal(storage_sync(s), 0);
            assert_int_equal(fsyncs(s, true) - d0, 256 + 3);
        } else {
            char *want = xasprintf(
                "could not fsync directory \"%s/many/chunks/a7\": Input/output error", pctx.root);
            assert_storage_error(storage_sync(s), ERR_IO, want);
            /* the others were still fsynced, only the failed one was not (the directories
             * were made by the first pass: no chain above them this time) */
            assert_int_equal(fsyncs(s, true) - d0, 256 - 1);
            assert_storage_error(storage_sync(s), ERR_IO, want);
            free(want);
        }
        storage_free(s);
    }
}

/* A command that stops before its sync (an error elsewhere) still leaves its deferred
 * entries durable: freeing the handle syncs them. */
static void test_deferred_synced_at_free(void **state)
{
    (void)state;
    struct storage *s = storage_posix_new("local", pctx.root);
    assert_non_null(s);
    storage_defer_sync_begin(s);
    storage_suite_put(s, "main/chunks/00/a", "chunk", 5);
    storage_defer_sync_end(s);
    unsigned long d0 = fsyncs(s, true);
    struct storage_posix *p = (struct storage_posix *)s;
    assert_int_equal(p->ndirty, 4); /* main/chunks/00, the root, main, main/chunks */
    err_set(ERR_RUNTIME, "the command's own error");
    posix_sync_free(p); /* what storage_free runs first */
    assert_int_equal(fsyncs(s, true) - d0, 4);
    assert_string_equal(err_message(), "the command's own error");
    err_clear();
    posix_sync_init(p); /* for storage_free */
    storage_free(s);
}

#define POSIX_TEST(f)                                                                              \
    cmocka_unit_test_setup_teardown(f, storage_suite_setup, storage_suite_teardown)
#define RETRY_TEST(f) cmocka_unit_test_setup_teardown(f, retry_setup, retry_teardown)

int main(void)
{
    static const struct CMUnitTest extra[] = {
        POSIX_TEST(test_modes),
        POSIX_TEST(test_root_created_and_refused),
        POSIX_TEST(test_error_text),
        POSIX_TEST(test_temp_files_invisible),
        POSIX_TEST(test_sweep_leftovers),
        POSIX_TEST(test_commit_onto_directory),
        POSIX_TEST(test_failed_write_keeps_old),
        POSIX_TEST(test_create_never_replaces),
        POSIX_TEST(test_enospc),
        POSIX_TEST(test_small_writes_held),
        POSIX_TEST(test_rename_fallback_copy),
        POSIX_TEST(test_links_refused),
        POSIX_TEST(test_links_refused_walk),
        POSIX_TEST(test_link_above_and_root),
        POSIX_TEST(test_deferred_dir_syncs),
        POSIX_TEST(test_deferred_dirs_kept),
        POSIX_TEST(test_deferred_dirs_kept_bounded),
        POSIX_TEST(test_deferred_sync_fails),
        POSIX_TEST(test_deferred_sync_many),
        POSIX_TEST(test_deferred_synced_at_free),
        RETRY_TEST(test_retry_read_resumes),
        RETRY_TEST(test_retry_gives_up),
        RETRY_TEST(test_retry_only_transient),
        RETRY_TEST(test_retry_not_after_sink_error),
        RETRY_TEST(test_retry_write_all_and_open),
        RETRY_TEST(test_retry_list_resumes),
        RETRY_TEST(test_retry_other_ops),
        RETRY_TEST(test_retry_backoff),
    };
    return storage_suite_run(&target, extra, sizeof(extra) / sizeof(extra[0]));
}
