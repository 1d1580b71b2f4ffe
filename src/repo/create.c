/*
 * create.c — creating repo.json once on a store that cannot refuse to replace an
 * object (see storage_create_honoured): a 501 to If-None-Match: * (Swift's S3 API,
 * older Ceph RGW, several appliances), or the header ignored (s3rver).
 *
 * There, creators racing to create a new repository (a receiver and the first backup,
 * or two hosts) would each PUT their own repo.json and the last one would stay; with
 * encryption each has its own data key, and everything the others wrote would be
 * unreadable. So each creator, with plain PUT, GET, LIST and DELETE:
 *
 *   1. PUTs a candidate <cluster>/repo.json.new/<random id> (its repo.json);
 *   2. LISTs <cluster>/repo.json.new/;
 *   3. when the list shows its own candidate and no other live one: GETs repo.json;
 *      there → adopts it; absent → PUTs its own, then DELETEs its candidate, then
 *      reads repo.json back and adopts whatever it holds;
 *   4. otherwise (another creator, or its own candidate not listed yet) it DELETEs its
 *      candidate and polls: repo.json there → adopts it; no other live candidate
 *      left → back to 1 after a random pause; after the wait (30 s) it fails, naming
 *      the candidate in its way.
 *
 * At most one creator writes repo.json, on a store where a request sees the effect of
 * every request that completed before it began (AWS S3 since December 2020, for GET
 * and LIST alike). Suppose A and B both wrote it and A's LIST began first. B's
 * candidate was not in A's LIST, so B's candidate PUT completed after A's LIST began;
 * A's candidate was not in B's LIST, so A's DELETE of it completed before B's LIST
 * began, and A deletes it only once its repo.json PUT has completed. B's GET came
 * after B's LIST, so it saw A's repo.json, and B adopted it instead of writing. When
 * both see each other both back off; random pauses make them diverge.
 *
 * A creator that died leaves its candidate. The others wait for it, fail naming it
 * (hint: remove it), and ignore it once it is STALE_US older than their own candidate
 * (both times the server's, from one listing). For that to be safe a live creator
 * writes repo.json only within LATE_US (its own clock) of putting up its candidate,
 * and the write (a small object: a few attempts bounded by the transport's timeouts)
 * ends well before STALE_US.
 */
#include "repo_int.h"

#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STALE_US (15LL * 60 * 1000000)
#define LATE_US (5LL * 60 * 1000000)
#define WAIT_DEFAULT_MS 30000

struct candidate {
    char *path;
    int64_t mtime_us;
};

struct candidate_scan {
    const char *mine;
    int64_t mine_mtime_us; /* from the last listing that showed it; 0 unknown */
    bool seen_mine;
    struct candidate *others; /* live ones first, then the stale ones */
    size_t nothers, cap, nlive;
};

static void scan_reset(struct candidate_scan *sc)
{
    for (size_t i = 0; i < sc->nothers; i++)
        free(sc->others[i].path);
    sc->nothers = 0;
    sc->nlive = 0;
    sc->seen_mine = false;
}

static int on_candidate(void *ctx, const struct storage_info *info)
{
    struct candidate_scan *sc = ctx;
    if (strcmp(info->path, sc->mine) == 0) {
        sc->seen_mine = true;
        sc->mine_mtime_us = info->mtime_us;
        return 0;
    }
    if (sc->nothers == sc->cap) {
        sc->cap = sc->cap ? 2 * sc->cap : 4;
        sc->others = xrealloc(sc->others, sc->cap * sizeof(*sc->others));
    }
    sc->others[sc->nothers++] = (struct candidate){xstrdup(info->path), info->mtime_us};
    return 0;
}

/* A candidate is stale when it is STALE_US older than ours, both by the server's clock;
 * without both times, it is live. */
static bool is_stale(const struct candidate_scan *sc, const struct candidate *c)
{
    return sc->mine_mtime_us > 0 && c->mtime_us > 0 && c->mtime_us < sc->mine_mtime_us - STALE_US;
}

/* List the candidates; live ones first in sc->others. */
static int scan_candidates(struct storage *s, const char *dir, struct candidate_scan *sc)
{
    scan_reset(sc);
    int rc = storage_list(s, dir, on_candidate, sc);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sc->nothers; i++) {
        if (!is_stale(sc, &sc->others[i])) {
            struct candidate t = sc->others[sc->nlive];
            sc->others[sc->nlive++] = sc->others[i];
            sc->others[i] = t;
        }
    }
    return 0;
}

static void pause_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Between base and 2 * base milliseconds. */
static int64_t jitter_ms(int64_t base)
{
    uint32_t x = 0;
    if (random_bytes(&x, sizeof(x)) < 0) {
        err_clear();
        x = (uint32_t)time_mono_us();
    }
    return base + (int64_t)(x % (uint32_t)(base + 1));
}

/* A removal that fails only delays the others: say so and go on. */
static void remove_quietly(struct storage *s, const char *path, const char *what)
{
    if (storage_remove(s, path) < 0) {
        char *t = err_format();
        log_warn("could not remove %s \"%s\": %s", what, path, t);
        free(t);
        err_clear();
    }
}

/* Ours is written: read it back; 0 when it holds what we wrote, 1 when another's. */
static int read_back(struct repo *r, const char *full, const char *text)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = storage_read_all(r->storage, full, &data, &len);
    if (rc == 0 && (len != strlen(text) || memcmp(data, text, len) != 0)) {
        log_warn("repository \"%s\": \"%s\" was replaced right after it was created; using "
                 "what it holds now (a creator that does not follow the protocol, or a store "
                 "whose reads lag its writes)",
                 repo_name(r), full);
        rc = 1;
    }
    free(data);
    return rc;
}

/* Long: the protocol create.c's opening comment describes is one loop whose steps share
 * their state (our candidate up or not, the deadline, the back-off); split, all of it
 * would be passed around.
 */
int repo_create_racing(struct repo *r, const char *full, const char *text, int wait_ms)
{
    struct storage *s = r->storage;
    uint8_t raw[16];
    char id[2 * sizeof(raw) + 1];
    size_t len = strlen(text);
    int rc;

    if ((rc = random_bytes(raw, sizeof(raw))) < 0)
        return rc;
    hex_encode(raw, sizeof(raw), id);
    char *dir = repo_full_path(r, REPO_CANDIDATE_DIR);
    char *mine = xasprintf("%s%s", dir, id);
    struct candidate_scan sc = {.mine = mine};
    bool up = false; /* our candidate may be in the store */
    int64_t deadline = time_mono_us() + (int64_t)(wait_ms > 0 ? wait_ms : WAIT_DEFAULT_MS) * 1000;
    int64_t pause = 50;

    for (;;) {
        int64_t put_at = time_mono_us();
        up = true;
        if ((rc = storage_write_all(s, mine, text, len)) < 0)
            goto out;
        if ((rc = scan_candidates(s, dir, &sc)) < 0)
            goto out;
        if (sc.seen_mine && sc.nlive == 0 && time_mono_us() - put_at < LATE_US) {
            if ((rc = storage_exists(s, full)) < 0)
                goto out;
            bool written = rc == 0;
            if (written && (rc = storage_write_all(s, full, text, len)) < 0)
                goto out;
            remove_quietly(s, mine, "the candidate");
            up = false;
            for (size_t i = sc.nlive; i < sc.nothers; i++) {
                log_info("repository \"%s\": removing \"%s\", left by a creation of \"%s\" that "
                         "did not finish",
                         repo_name(r), sc.others[i].path, full);
                remove_quietly(s, sc.others[i].path, "the stale candidate");
            }
            rc = written ? read_back(r, full, text) : 1;
            goto out;
        }
        /* Someone else is at it, or our candidate is not listed yet: step back. */
        if ((rc = storage_remove(s, mine)) < 0)
            goto out;
        up = false;
        log_detail("repository \"%s\": %s; waiting for \"%s\"", repo_name(r),
                   sc.nlive ? "another process is creating it too"
                            : "the listing does not show our candidate yet",
                   full);
        for (;;) {
            if (time_mono_us() >= deadline) {
                if (sc.nlive) {
                    int64_t age_s = sc.mine_mtime_us > 0 && sc.others[0].mtime_us > 0
                                        ? (sc.mine_mtime_us - sc.others[0].mtime_us) / 1000000
                                        : -1;
                    char agebuf[48] = "";
                    if (age_s >= 0)
                        snprintf(agebuf, sizeof(agebuf), ", written %llds before ours",
                                 (long long)age_s);
                    rc = err_set(ERR_TRANSIENT,
                                 "repository \"%s\": another process is creating \"%s\" and has "
                                 "not finished (its candidate \"%s\"%s)",
                                 repo_name(r), full, sc.others[0].path, agebuf);
                    err_hint("run the command again; if no other pgark is creating this "
                             "repository, that candidate was left by one that stopped: remove "
                             "it (it is ignored once 15 minutes old)");
                } else {
                    rc = err_set(ERR_TRANSIENT,
                                 "repository \"%s\": could not create \"%s\": the store's "
                                 "listing of \"%s\" does not show an object just written",
                                 repo_name(r), full, dir);
                    err_hint("pgark needs a store whose listings show what was written "
                             "(list-after-write consistency) to create a repository there");
                }
                goto out;
            }
            pause_ms(jitter_ms(pause));
            if (pause < 500)
                pause *= 2;
            if ((rc = storage_exists(s, full)) < 0)
                goto out;
            if (rc == 1)
                goto out; /* theirs: adopt it */
            if ((rc = scan_candidates(s, dir, &sc)) < 0)
                goto out;
            if (sc.nlive == 0)
                break; /* they stepped back too, or gave up: try again */
        }
    }
out:
    if (up) {
        /* failed with our candidate up: take it down, or the others wait for it */
        struct err_saved *saved = err_save();
        remove_quietly(s, mine, "the candidate");
        err_restore(saved);
    }
    scan_reset(&sc);
    free(sc.others);
    free(mine);
    free(dir);
    return rc;
}
