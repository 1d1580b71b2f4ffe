/*
 * test_repo_create.c — repo.json created once on a store that cannot refuse to replace
 * an object (src/repo/create.c), and how pgark finds out that a store is one.
 *
 * The store is the posix driver behind a thin "lax" wrapper that behaves as those S3
 * servers do with a write that must not replace (If-None-Match: *): it ignores the
 * condition (s3rver) or answers 501 NotImplemented (Swift's S3 API). Hooks in the
 * wrapper play the other creator at exact points of the protocol (its candidate
 * appears at our listing, its repo.json at a later one, ours is replaced right after
 * it was written), so each interleaving is tested deterministically; forked processes
 * racing for real check the whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../src/repo/repo_int.h"

#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/storage_s3.h"
#include "s3peer.h"
#include "scratch.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PASS "correct horse battery staple"
#define SEG (16 * 1024 * 1024)

static const struct repo_identity ident = {7312345678901234567ull, 15, SEG};

/* --- the lax store ------------------------------------------------------------------ */

enum lax_mode { LAX_HONOURED, LAX_IGNORED, LAX_501 };

struct lax;
typedef void (*lax_hook)(struct lax *l, int nth);

struct lax {
    struct storage base;
    struct storage *inner;
    enum lax_mode mode;
    lax_hook before_list;  /* before each list of a candidate folder (nth from 1) */
    lax_hook after_commit; /* after each commit of a path ending in "/repo.json" */
    int lists, commits, conditional;
    bool refuse_repo_json; /* writes of ".../repo.json" fail (access denied) */
};

static struct lax *lax_of(struct storage *s)
{
    return (struct lax *)s;
}

static int lax_read(struct storage *s, const char *path, uint64_t offset, uint64_t length,
                    storage_sink_fn sink, void *ctx)
{
    struct storage *in = lax_of(s)->inner;
    return in->ops->read(in, path, offset, length, sink, ctx);
}

static struct storage_write *lax_write_open(struct storage *s, const char *path, uint64_t hint)
{
    struct storage *in = lax_of(s)->inner;
    return in->ops->write_open(in, path, hint);
}

static int lax_write_data(struct storage_write *w, const uint8_t *data, size_t len)
{
    return w->storage->ops->write_data(w, data, len);
}

static struct lax *current;

static int lax_write_commit(struct storage_write *w)
{
    struct lax *l = current;
    bool repo_json =
        strlen(w->path) > 10 && strcmp(w->path + strlen(w->path) - 10, "/repo.json") == 0;
    if (w->no_replace) {
        l->conditional++;
        if (l->mode == LAX_501) {
            char *path = xstrdup(w->path);
            w->storage->ops->write_abort(w);
            int rc = err_set(ERR_UNSUPPORTED,
                             "s3 PUT of object \"%s\" in repository \"lax\" failed: HTTP 501 "
                             "NotImplemented: Conditional object PUTs are not supported",
                             path);
            free(path);
            return rc;
        }
        if (l->mode == LAX_IGNORED)
            w->no_replace = false;
    }
    if (repo_json && l->refuse_repo_json) {
        w->storage->ops->write_abort(w);
        return err_set(ERR_AUTH, "s3 PUT of object \"c/repo.json\" in repository \"lax\" refused: "
                                 "AccessDenied");
    }
    int rc = w->storage->ops->write_commit(w);
    if (rc == 0 && repo_json) {
        l->commits++;
        if (l->after_commit)
            l->after_commit(l, l->commits);
    }
    return rc;
}

static void lax_write_abort(struct storage_write *w)
{
    w->storage->ops->write_abort(w);
}

static int lax_list(struct storage *s, const char *prefix, storage_list_fn fn, void *ctx)
{
    struct lax *l = lax_of(s);
    if (strstr(prefix, REPO_CANDIDATE_DIR)) {
        l->lists++;
        if (l->before_list)
            l->before_list(l, l->lists);
    }
    return l->inner->ops->list(l->inner, prefix, fn, ctx);
}

static int lax_info(struct storage *s, const char *path, struct storage_info *info)
{
    struct storage *in = lax_of(s)->inner;
    return in->ops->info(in, path, info);
}

static int lax_remove(struct storage *s, const char *path)
{
    struct storage *in = lax_of(s)->inner;
    return in->ops->remove(in, path);
}

static void lax_free(struct storage *s)
{
    free(s);
}

static const struct storage_ops lax_ops = {
    .version = STORAGE_OPS_VERSION,
    .type = "lax",
    .read = lax_read,
    .write_open = lax_write_open,
    .write_data = lax_write_data,
    .write_commit = lax_write_commit,
    .write_abort = lax_write_abort,
    .list = lax_list,
    .info = lax_info,
    .remove = lax_remove,
    .free = lax_free,
};

/* --- fixture ------------------------------------------------------------------------ */

static char base[256], root[300];
static struct storage *posix;
static char *logtext;
static size_t loglen;
static FILE *logmem;

static int setup(void **state)
{
    (void)state;
    if (scratch_make(base, sizeof(base), "create") < 0)
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    posix = storage_posix_new("lax", root);
    current = NULL;
    logmem = open_memstream(&logtext, &loglen);
    log_set_stream(logmem);
    log_set_level(LOG_DETAIL);
    return posix ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    log_set_stream(NULL);
    log_set_level(LOG_WARN);
    fclose(logmem);
    free(logtext);
    logtext = NULL;
    storage_free(posix);
    if (current)
        storage_free(&current->base);
    current = NULL;
    scratch_remove(base);
    err_clear();
    return 0;
}

static struct storage *lax_new(enum lax_mode mode)
{
    struct lax *l = xcalloc(1, sizeof(*l));
    storage_init(&l->base, &lax_ops, "lax");
    l->inner = posix;
    l->mode = mode;
    current = l;
    return &l->base;
}

static struct repo *open_on(struct storage *s, const char *cluster, const char *pass, int wait_ms)
{
    struct repo_options o = {.cluster = cluster,
                             .codecs = {.passphrase = pass},
                             .kdf_n = 1024,
                             .create_wait_ms = wait_ms};
    return repo_open(s, &o, &ident, true);
}

static const char *log_so_far(void)
{
    fflush(logmem);
    return logtext ? logtext : "";
}

static char *disk(const char *rel)
{
    return xasprintf("%s/%s", root, rel);
}

static char *slurp(const char *rel, size_t *len)
{
    char *p = disk(rel);
    FILE *f = fopen(p, "rb");
    free(p);
    if (!f)
        return NULL;
    struct buf b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    buf_append(&b, "", 1);
    if (len)
        *len = b.len - 1;
    return (char *)b.data;
}

static void spit(const char *rel, const char *text)
{
    char *p = disk(rel);
    char *dir = xstrdup(p);
    *strrchr(dir, '/') = '\0';
    char *cmd = xasprintf("mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    free(cmd);
    free(dir);
    free(p);
}

/* Entries of a folder under the root (0 when it does not exist). */
static int entries(const char *rel)
{
    char *p = disk(rel);
    DIR *d = opendir(p);
    free(p);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* What a handle writes, another handle of the same repository reads: one data key. */
static void assert_same_key(struct repo *a, struct repo *b, const char *path)
{
    assert_int_equal(repo_put(a, path, path, strlen(path)), 0);
    uint8_t *got = NULL;
    size_t len = 0;
    int rc = repo_get_all(b, path, &got, &len);
    if (rc < 0) {
        char *t = err_format();
        fail_msg("reading \"%s\" written by another handle: %s", path, t);
    }
    assert_int_equal(len, strlen(path));
    assert_memory_equal(got, path, len);
    free(got);
}

/* A reference repository made on the honest posix store: its repo.json is "theirs". */
static char *their_repo_json(const char *cluster)
{
    struct repo_options o = {.cluster = cluster, .codecs = {.passphrase = PASS}, .kdf_n = 1024};
    struct repo *r = repo_open(posix, &o, &ident, true);
    assert_non_null(r);
    repo_close(r);
    char *rel = xasprintf("%s/repo.json", cluster);
    char *text = slurp(rel, NULL);
    free(rel);
    assert_non_null(text);
    return text;
}

/* --- how pgark finds out ------------------------------------------------------------ */

/* A store that keeps the promise: the conditional write is used, the probe leaves
 * nothing behind, and nothing is said about candidates. */
static void test_honoured_store_uses_condition(void **state)
{
    (void)state;
    struct storage *s = lax_new(LAX_HONOURED);
    struct repo *r = open_on(s, "c", NULL, 0);
    assert_non_null(r);
    repo_close(r);
    assert_int_equal(current->conditional, 2); /* the probe's and repo.json's */
    assert_int_equal(current->lists, 0);
    assert_int_equal(entries("c"), 1); /* repo.json alone */
    assert_null(strstr(log_so_far(), "candidates"));
    char *why = NULL;
    assert_int_equal(storage_create_honoured(s, "probe-again", &why), 1);
    assert_null(why);
    assert_int_equal(current->conditional, 2); /* the answer was kept */
}

/* s3rver: the write meant not to replace replaced the probe. Said once, at info. */
static void test_ignored_condition_found_and_said(void **state)
{
    (void)state;
    struct storage *s = lax_new(LAX_IGNORED);
    struct repo *r = open_on(s, "c", PASS, 0);
    assert_non_null(r);
    assert_true(repo_encrypted(r));
    repo_close(r);
    const char *log = log_so_far();
    assert_non_null(strstr(log, "info   repository \"lax\": the store replaced an object that a "
                                "write with If-None-Match: * was not to replace; creating "
                                "\"c/repo.json\" through candidates in \"c/repo.json.new/\" "
                                "instead"));
    assert_non_null(strstr(log, "created repository for cluster \"c\" in \"lax\" (encrypted)"));
    assert_int_equal(current->conditional, 1); /* the probe only */
    assert_int_equal(entries("c"), 2);         /* repo.json and the empty candidates folder */
    assert_int_equal(entries("c/repo.json.new"), 0);
    /* a fresh handle reads what this one wrote */
    r = open_on(s, "c", PASS, 0);
    struct repo *r2 = open_on(s, "c", PASS, 0);
    assert_same_key(r, r2, "x/one");
    repo_close(r);
    repo_close(r2);
}

/* Swift's S3 API: 501 NotImplemented to the conditional PUT. */
static void test_501_condition_found_and_said(void **state)
{
    (void)state;
    struct storage *s = lax_new(LAX_501);
    struct repo *r = open_on(s, "c", NULL, 0);
    assert_non_null(r);
    repo_close(r);
    const char *log = log_so_far();
    const char *line = strstr(log, "repository \"lax\": the store does not implement conditional "
                                   "writes (s3 PUT of object \"c/repo.json.probe-");
    assert_non_null(line);
    assert_non_null(strstr(line, "HTTP 501 NotImplemented: Conditional object PUTs are not "
                                 "supported); creating \"c/repo.json\" through candidates"));
    char *made = slurp("c/repo.json", NULL);
    assert_non_null(made);
    free(made);
    char *why = NULL;
    assert_int_equal(storage_create_honoured(s, "c/another-probe", &why), 0);
    assert_non_null(strstr(why, "does not implement conditional writes"));
    free(why);
    assert_int_equal(current->conditional, 1); /* asked once */
}

/* --- the protocol, step by step ----------------------------------------------------- */

static char *theirs;

/* Another creator's candidate appears just before our first listing; before the
 * second, it has written its repo.json and removed its candidate. We adopt its
 * repo.json. */
static void other_wins(struct lax *l, int nth)
{
    (void)l;
    if (nth == 1)
        spit("c/repo.json.new/0other", "their candidate");
    if (nth == 2) {
        spit("c/repo.json", theirs);
        char *p = disk("c/repo.json.new/0other");
        unlink(p);
        free(p);
    }
}

static void test_yields_to_another_creator(void **state)
{
    (void)state;
    theirs = their_repo_json("ref");
    struct storage *s = lax_new(LAX_IGNORED);
    current->before_list = other_wins;
    struct repo *r = open_on(s, "c", PASS, 0);
    if (!r) {
        char *t = err_format();
        fail_msg("%s", t);
    }
    /* theirs, byte for byte, and its data key is the one we use */
    char *now = slurp("c/repo.json", NULL);
    assert_string_equal(now, theirs);
    free(now);
    struct repo *fresh = open_on(s, "c", PASS, 0);
    assert_non_null(fresh);
    assert_same_key(r, fresh, "x/from-the-one-who-yielded");
    repo_close(fresh);
    repo_close(r);
    assert_int_equal(current->commits, 0); /* we never wrote repo.json */
    assert_int_equal(entries("c/repo.json.new"), 0);
    assert_non_null(strstr(log_so_far(), "another process is creating it too"));
    assert_non_null(strstr(log_so_far(), "another process created repo.json first; using it"));
    free(theirs);
}

/* Both saw each other and stepped back: the other's candidate is gone at our next
 * look, so we try again, alone this time, and create it. */
static void other_steps_back(struct lax *l, int nth)
{
    (void)l;
    char *p = disk("c/repo.json.new/0other");
    if (nth == 1)
        spit("c/repo.json.new/0other", "their candidate");
    if (nth == 2)
        unlink(p);
    free(p);
}

static void test_both_step_back_then_one_creates(void **state)
{
    (void)state;
    struct storage *s = lax_new(LAX_IGNORED);
    current->before_list = other_steps_back;
    struct repo *r = open_on(s, "c", NULL, 0);
    assert_non_null(r);
    repo_close(r);
    assert_int_equal(current->commits, 1);
    assert_int_equal(current->lists, 3); /* round 1 (theirs there), the poll (gone), round 2 */
    assert_int_equal(entries("c/repo.json.new"), 0);
    assert_non_null(strstr(log_so_far(), "created repository for cluster \"c\""));
}

/* A candidate that never goes away (its creator died a moment ago): we wait, then
 * fail naming it, having written nothing and removed our own. */
static void test_young_leftover_blocks_with_clear_error(void **state)
{
    (void)state;
    spit("c/repo.json.new/0dead", "a creator that died");
    struct storage *s = lax_new(LAX_IGNORED);
    struct repo *r = open_on(s, "c", NULL, 300);
    assert_null(r);
    assert_int_equal(err_kind(), ERR_TRANSIENT);
    char *t = err_format();
    assert_non_null(strstr(t, "repository \"lax\": another process is creating \"c/repo.json\" "
                              "and has not finished (its candidate \"c/repo.json.new/0dead\""));
    free(t);
    assert_non_null(strstr(err_hint_text(), "remove it (it is ignored once 15 minutes old)"));
    err_clear();
    assert_null(slurp("c/repo.json", NULL));
    assert_int_equal(entries("c/repo.json.new"), 1); /* theirs only */
    assert_int_equal(current->commits, 0);
}

/* The same leftover, 20 minutes older than our candidate: ignored, and tidied away. */
static void test_stale_leftover_ignored_and_removed(void **state)
{
    (void)state;
    spit("c/repo.json.new/0dead", "a creator that died");
    char *p = disk("c/repo.json.new/0dead");
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= 20 * 60;
    tv[1] = tv[0];
    assert_int_equal(utimes(p, tv), 0);
    free(p);
    struct storage *s = lax_new(LAX_IGNORED);
    struct repo *r = open_on(s, "c", NULL, 300);
    assert_non_null(r);
    repo_close(r);
    assert_int_equal(current->commits, 1);
    assert_int_equal(entries("c/repo.json.new"), 0);
    assert_non_null(strstr(log_so_far(), "repository \"lax\": removing "
                                         "\"c/repo.json.new/0dead\", left by a creation of "
                                         "\"c/repo.json\" that did not finish"));
}

/* Our repo.json is replaced right after we wrote it (a creator that does not follow
 * the protocol, or a lagging store): the read-back catches it and we use theirs. */
static void replaced_after_ours(struct lax *l, int nth)
{
    (void)l;
    if (nth == 1)
        spit("c/repo.json", theirs);
}

static void test_replaced_right_after_is_adopted(void **state)
{
    (void)state;
    theirs = their_repo_json("ref");
    struct storage *s = lax_new(LAX_IGNORED);
    current->after_commit = replaced_after_ours;
    struct repo *r = open_on(s, "c", PASS, 0);
    assert_non_null(r);
    char *now = slurp("c/repo.json", NULL);
    assert_string_equal(now, theirs);
    free(now);
    struct repo *fresh = open_on(s, "c", PASS, 0);
    assert_non_null(fresh);
    assert_same_key(r, fresh, "x/after-read-back");
    repo_close(fresh);
    repo_close(r);
    assert_non_null(strstr(log_so_far(), "warn   repository \"lax\": \"c/repo.json\" was replaced "
                                         "right after it was created; using what it holds now"));
    assert_null(strstr(log_so_far(), "created repository for cluster \"c\""));
    free(theirs);
}

/* Our write of repo.json fails: the error is the command's, and our candidate is taken
 * down so that no other creator waits for it. */
static void test_failed_write_takes_candidate_down(void **state)
{
    (void)state;
    struct storage *s = lax_new(LAX_IGNORED);
    current->refuse_repo_json = true;
    struct repo *r = open_on(s, "c", NULL, 0);
    assert_null(r);
    assert_int_equal(err_kind(), ERR_AUTH);
    char *t = err_format();
    assert_non_null(strstr(t, "refused: AccessDenied"));
    free(t);
    err_clear();
    assert_int_equal(entries("c/repo.json.new"), 0);
    assert_null(slurp("c/repo.json", NULL));
}

/* --- over S3, against a scripted peer that ignores If-None-Match -------------------- */

/* The S3 driver in front of the peer; the cluster's objects are under "c/". */
static struct storage *s3_on(struct s3peer *p)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", s3peer_port(p));
    struct storage_s3_options o = {
        .name = "peer",
        .endpoint = ep,
        .region = "us-east-1",
        .bucket = "b",
        .access_key_id = "key",
        .secret_access_key = "secret",
        .part_size = 5 * 1024 * 1024,
    };
    struct storage *s = storage_s3_new(&o);
    assert_non_null(s);
    s->retry_base_ms = 10;
    return s;
}

static int count_of(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* The peer's request log with the random ids of probes and candidates as "*". */
static char *peer_log(struct s3peer *p)
{
    char *t = s3peer_take_log(p);
    struct buf out = BUF_INIT;
    buf_append_str(&out, "");
    for (const char *c = t; *c;) {
        const char *mark = NULL;
        size_t skip = 0;
        const char *pr = strstr(c, "repo.json.probe-");
        const char *cd = strstr(c, "repo.json.new/");
        if (pr && (!cd || pr < cd))
            mark = pr, skip = strlen("repo.json.probe-");
        else if (cd)
            mark = cd, skip = strlen("repo.json.new/");
        if (!mark) {
            buf_append_str(&out, c);
            break;
        }
        buf_append(&out, c, (size_t)(mark - c) + skip);
        c = mark + skip;
        size_t hex = strspn(c, "0123456789abcdef");
        if (hex == 32) {
            buf_append_str(&out, "*");
            c += hex;
        }
    }
    free(t);
    return buf_steal(&out);
}

/* A new repository on a store that replaces what If-None-Match: * was not to replace
 * (s3rver and other S3 servers ignore the header): the probe finds out, says so once,
 * and repo.json is created through a candidate, every request as designed; nothing of
 * the protocol stays. A second opener reads it and probes nothing. */
static void test_s3_peer_ignores_condition(void **state)
{
    (void)state;
    struct s3peer *p = s3peer_start("b");
    assert_non_null(p);
    struct storage *s = s3_on(p);
    struct repo *r = open_on(s, "c", PASS, 0);
    if (!r) {
        char *t = err_format();
        fail_msg("%s", t);
    }
    char *log = peer_log(p);
    assert_string_equal(log, "GET c/repo.json\n"                       /* not there */
                             "PUT c/repo.json.probe-*\n"               /* the probe */
                             "PUT c/repo.json.probe-* if-none-match\n" /* replaced it */
                             "DELETE c/repo.json.probe-*\n"
                             "PUT c/repo.json.new/*\n" /* our candidate */
                             "LIST c/repo.json.new/\n" /* alone */
                             "HEAD c/repo.json\n"      /* still absent */
                             "PUT c/repo.json\n"
                             "DELETE c/repo.json.new/*\n"
                             "GET c/repo.json\n"); /* ours reads back */
    free(log);
    assert_int_equal(s3peer_conditional_puts(p), 1);
    char *keys = s3peer_keys(p);
    assert_string_equal(keys, "c/repo.json\n");
    free(keys);
    const char *said = "info   repository \"peer\": the store replaced an object that a write "
                       "with If-None-Match: * was not to replace; creating \"c/repo.json\" "
                       "through candidates in \"c/repo.json.new/\" instead";
    assert_int_equal(count_of(log_so_far(), said), 1);

    struct storage *s2 = s3_on(p);
    struct repo *r2 = open_on(s2, "c", PASS, 0);
    assert_non_null(r2);
    log = peer_log(p);
    assert_string_equal(log, "GET c/repo.json\n");
    free(log);
    assert_same_key(r, r2, "x/one");
    repo_close(r2);
    repo_close(r);
    storage_free(s2);
    storage_free(s);
    s3peer_stop(p);
}

/* Another creator over the same peer: its candidate is listed beside ours, so we step
 * back; at our next look its repo.json is there and its candidate gone. We adopt its
 * repo.json and never PUT one. */
static void other_creator_over_s3(struct s3peer *p, const char *method, const char *key, int n,
                                  void *ctx)
{
    (void)n, (void)ctx;
    static int lists;
    if (strcmp(method, "LIST") == 0 && strcmp(key, "c/repo.json.new/") == 0 && ++lists == 1)
        s3peer_put(p, "c/repo.json.new/0other", "theirs", 6, 0);
    if (strcmp(method, "HEAD") == 0 && strcmp(key, "c/repo.json") == 0 && lists == 1) {
        s3peer_put(p, "c/repo.json", theirs, strlen(theirs), 0);
        s3peer_remove(p, "c/repo.json.new/0other");
        lists = 0;
    }
}

static void test_s3_peer_yields_to_another_creator(void **state)
{
    (void)state;
    theirs = their_repo_json("ref");
    struct s3peer *p = s3peer_start("b");
    assert_non_null(p);
    s3peer_set_hook(p, other_creator_over_s3, NULL);
    struct storage *s = s3_on(p);
    struct repo *r = open_on(s, "c", PASS, 0);
    if (!r) {
        char *t = err_format();
        fail_msg("%s", t);
    }
    char *log = peer_log(p);
    assert_string_equal(log, "GET c/repo.json\n"
                             "PUT c/repo.json.probe-*\n"
                             "PUT c/repo.json.probe-* if-none-match\n"
                             "DELETE c/repo.json.probe-*\n"
                             "PUT c/repo.json.new/*\n"
                             "LIST c/repo.json.new/\n"    /* theirs beside ours */
                             "DELETE c/repo.json.new/*\n" /* step back */
                             "HEAD c/repo.json\n"         /* theirs is there */
                             "GET c/repo.json\n");        /* and read */
    free(log);
    char *now = s3peer_get(p, "c/repo.json", NULL);
    assert_string_equal(now, theirs);
    free(now);
    char *keys = s3peer_keys(p);
    assert_string_equal(keys, "c/repo.json\n");
    free(keys);
    struct storage *s2 = s3_on(p);
    struct repo *fresh = open_on(s2, "c", PASS, 0);
    assert_non_null(fresh);
    assert_same_key(r, fresh, "x/from-the-one-who-yielded");
    repo_close(fresh);
    repo_close(r);
    assert_null(strstr(log_so_far(), "created repository for cluster \"c\""));
    storage_free(s2);
    storage_free(s);
    s3peer_stop(p);
    free(theirs);
}

/* Candidates left by creators that died, with the ages S3's LastModified gives them:
 * one 20 minutes older than ours is ignored and removed; one 10 s older blocks, and
 * the error names it and its age. */
static void test_s3_peer_leftover_candidates_by_last_modified(void **state)
{
    (void)state;
    struct s3peer *p = s3peer_start("b");
    assert_non_null(p);
    struct storage *s = s3_on(p);
    s3peer_put(p, "c/repo.json.new/0dead", "died", 4, (int64_t)time(NULL) - 20 * 60);
    struct repo *r = open_on(s, "c", NULL, 300);
    assert_non_null(r);
    repo_close(r);
    char *keys = s3peer_keys(p);
    assert_string_equal(keys, "c/repo.json\n");
    free(keys);
    assert_non_null(strstr(log_so_far(), "repository \"peer\": removing "
                                         "\"c/repo.json.new/0dead\", left by a creation of "
                                         "\"c/repo.json\" that did not finish"));

    s3peer_put(p, "d/repo.json.new/0dead", "died", 4, (int64_t)time(NULL) - 10);
    r = open_on(s, "d", NULL, 300);
    assert_null(r);
    assert_int_equal(err_kind(), ERR_TRANSIENT);
    char *t = err_format();
    const char *want = "repository \"peer\": another process is creating \"d/repo.json\" and has "
                       "not finished (its candidate \"d/repo.json.new/0dead\", written ";
    const char *at = strstr(t, want);
    if (!at)
        fail_msg("%s", t);
    /* 10 s before ours, plus however long ours took to go up on a loaded machine */
    int age = -1;
    assert_int_equal(sscanf(at + strlen(want), "%ds before ours)", &age), 1);
    assert_true(age >= 10 && age < 60);
    free(t);
    err_clear();
    keys = s3peer_keys(p);
    assert_string_equal(keys, "c/repo.json\nd/repo.json.new/0dead\n");
    free(keys);
    storage_free(s);
    s3peer_stop(p);
}

/* --- for real: processes racing ----------------------------------------------------- */

/* Six processes open the same new encrypted repository at once on a store that
 * ignores the condition: every object each wrote is readable through a fresh handle,
 * so they all used one data key. Without the protocol each "created" repo.json with
 * its own key and the last one stayed. */
static void race(enum lax_mode mode)
{
    enum { N = 6 };
    int go[2];
    pid_t pids[N];
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            struct storage *s = lax_new(mode);
            struct repo *r = open_on(s, "race", PASS, 20000);
            char path[32];
            snprintf(path, sizeof(path), "x/from-%d", i);
            int rc = r ? repo_put(r, path, path, strlen(path)) : -1;
            if (rc < 0)
                err_print();
            repo_close(r);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < N; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    struct repo_options o = {.cluster = "race", .codecs = {.passphrase = PASS}, .kdf_n = 1024};
    struct repo *r = repo_open(posix, &o, NULL, false);
    assert_non_null(r);
    for (int i = 0; i < N; i++) {
        char path[32];
        uint8_t *got = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "x/from-%d", i);
        if (repo_get_all(r, path, &got, &len) < 0) {
            char *t = err_format();
            fail_msg("%s: %s", path, t);
        }
        assert_int_equal(len, strlen(path));
        free(got);
    }
    repo_close(r);
    assert_int_equal(entries("race/repo.json.new"), 0);
}

static void test_race_ignored(void **state)
{
    (void)state;
    race(LAX_IGNORED);
}

static void test_race_501(void **state)
{
    (void)state;
    race(LAX_501);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_honoured_store_uses_condition),
        T(test_ignored_condition_found_and_said),
        T(test_501_condition_found_and_said),
        T(test_yields_to_another_creator),
        T(test_both_step_back_then_one_creates),
        T(test_young_leftover_blocks_with_clear_error),
        T(test_stale_leftover_ignored_and_removed),
        T(test_replaced_right_after_is_adopted),
        T(test_failed_write_takes_candidate_down),
        T(test_s3_peer_ignores_condition),
        T(test_s3_peer_yields_to_another_creator),
        T(test_s3_peer_leftover_candidates_by_last_modified),
        T(test_race_ignored),
        T(test_race_501),
#undef T
    };
    return cmocka_run_group_tests_name("repo_create", tests, NULL, NULL);
}
