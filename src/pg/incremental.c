/* incremental.c — INCREMENTAL files and UPLOAD_MANIFEST (see include/pgark/pg_incremental.h). */
#include "pgark/pg_incremental.h"

#include "conn_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

enum incr_state { IS_FIXED, IS_NUMBERS, IS_PAD, IS_BLOCKS, IS_DONE, IS_FAILED };

struct pg_incr_parser {
    char *path;
    pg_incr_header_fn on_header;
    pg_incr_block_fn on_block;
    void *arg;
    enum incr_state state;
    int failed;
    uint8_t fixed[12];
    size_t have; /* bytes of the current part gathered */
    uint32_t nblocks, truncation;
    uint32_t *blocks;
    uint32_t next; /* blocks received */
    uint64_t pad;  /* padding bytes left */
    uint8_t *block;
};

struct pg_incr_parser *pg_incr_parser_new(const char *path, pg_incr_header_fn on_header,
                                          pg_incr_block_fn on_block, void *arg)
{
    struct pg_incr_parser *p = xcalloc(1, sizeof(*p));
    p->path = xstrdup(path);
    p->on_header = on_header;
    p->on_block = on_block;
    p->arg = arg;
    return p;
}

void pg_incr_parser_free(struct pg_incr_parser *p)
{
    if (!p)
        return;
    free(p->path);
    free(p->blocks);
    free(p->block);
    free(p);
}

static int fail(struct pg_incr_parser *p, int rc)
{
    p->state = IS_FAILED;
    p->failed = rc < 0 ? rc : -ERR_RUNTIME;
    return p->failed;
}

static int bad(struct pg_incr_parser *p, const char *what)
{
    return fail(p, err_set(ERR_PROTOCOL, "incremental file \"%s\" of the backup is malformed: %s",
                           p->path, what));
}

static uint32_t u32_at(const uint8_t *b)
{
    uint32_t v;
    memcpy(&v, b, sizeof(v));
    return v;
}

/* The header is complete: check the numbers, hand it on, and go on to the blocks. */
static int header_done(struct pg_incr_parser *p)
{
    for (uint32_t i = 0; i < p->nblocks; i++) {
        if (p->blocks[i] >= PG_INCR_RELSEG_SIZE) {
            char what[128];
            snprintf(what, sizeof(what), "block number %u is beyond a segment file (%u blocks)",
                     p->blocks[i], PG_INCR_RELSEG_SIZE);
            return bad(p, what);
        }
        if (i > 0 && p->blocks[i] <= p->blocks[i - 1]) {
            char what[128];
            snprintf(what, sizeof(what), "block numbers out of order (%u after %u)", p->blocks[i],
                     p->blocks[i - 1]);
            return bad(p, what);
        }
    }
    int rc = p->on_header ? p->on_header(p->arg, p->nblocks, p->truncation, p->blocks) : 0;
    if (rc < 0)
        return fail(p, rc);
    uint64_t hlen = 12 + 4 * (uint64_t)p->nblocks;
    p->pad = p->nblocks && hlen % PG_INCR_BLCKSZ ? PG_INCR_BLCKSZ - hlen % PG_INCR_BLCKSZ : 0;
    p->have = 0;
    p->state = p->nblocks == 0 ? IS_DONE : p->pad ? IS_PAD : IS_BLOCKS;
    if (p->nblocks)
        p->block = xmalloc(PG_INCR_BLCKSZ);
    return 0;
}

/* Long: a state machine over the file's parts in order (fixed header, block numbers,
 * padding, blocks); each case takes what it can of the input and moves to the next part,
 * and the cases read best together.
 */
int pg_incr_parser_feed(struct pg_incr_parser *p, const void *data, size_t len)
{
    const uint8_t *d = data;

    if (p->state == IS_FAILED)
        return err_set(ERR_RUNTIME, "incremental file parser used after an error");
    while (len > 0) {
        size_t take;
        switch (p->state) {
        case IS_FIXED:
            take = sizeof(p->fixed) - p->have < len ? sizeof(p->fixed) - p->have : len;
            memcpy(p->fixed + p->have, d, take);
            p->have += take;
            if (p->have == sizeof(p->fixed)) {
                uint32_t magic = u32_at(p->fixed);
                if (magic != PG_INCR_MAGIC) {
                    char what[96];
                    snprintf(what, sizeof(what), "magic number 0x%08x, expected 0x%08x", magic,
                             PG_INCR_MAGIC);
                    return bad(p, what);
                }
                p->nblocks = u32_at(p->fixed + 4);
                p->truncation = u32_at(p->fixed + 8);
                if (p->nblocks > PG_INCR_RELSEG_SIZE) {
                    char what[96];
                    snprintf(what, sizeof(what), "block count %u is beyond a segment file (%u)",
                             p->nblocks, PG_INCR_RELSEG_SIZE);
                    return bad(p, what);
                }
                if (p->truncation > PG_INCR_RELSEG_SIZE) {
                    char what[112];
                    snprintf(what, sizeof(what),
                             "truncation length %u blocks is beyond a segment file (%u)",
                             p->truncation, PG_INCR_RELSEG_SIZE);
                    return bad(p, what);
                }
                p->have = 0;
                p->blocks = xcalloc(p->nblocks + 1, sizeof(*p->blocks));
                p->state = IS_NUMBERS;
                if (p->nblocks == 0) {
                    int rc = header_done(p);
                    if (rc < 0)
                        return rc;
                }
            }
            break;
        case IS_NUMBERS: {
            size_t want = 4 * (size_t)p->nblocks;
            take = want - p->have < len ? want - p->have : len;
            memcpy((uint8_t *)p->blocks + p->have, d, take);
            p->have += take;
            if (p->have == want) {
                int rc = header_done(p);
                if (rc < 0)
                    return rc;
            }
            break;
        }
        case IS_PAD:
            take = p->pad < len ? (size_t)p->pad : len;
            for (size_t i = 0; i < take; i++)
                if (d[i] != 0)
                    return bad(p, "the header's padding is not zeros");
            p->pad -= take;
            if (p->pad == 0)
                p->state = IS_BLOCKS;
            break;
        case IS_BLOCKS:
            take = PG_INCR_BLCKSZ - p->have < len ? PG_INCR_BLCKSZ - p->have : len;
            memcpy(p->block + p->have, d, take);
            p->have += take;
            if (p->have == PG_INCR_BLCKSZ) {
                int rc = p->on_block ? p->on_block(p->arg, p->blocks[p->next], p->block) : 0;
                if (rc < 0)
                    return fail(p, rc);
                p->have = 0;
                if (++p->next == p->nblocks)
                    p->state = IS_DONE;
            }
            break;
        case IS_DONE:
            return bad(p, "bytes after its last block");
        default:
            return p->failed;
        }
        d += take;
        len -= take;
    }
    return 0;
}

int pg_incr_parser_finish(struct pg_incr_parser *p)
{
    char what[128];

    switch (p->state) {
    case IS_DONE:
        return 0;
    case IS_FAILED:
        return p->failed;
    case IS_FIXED:
    case IS_NUMBERS:
    case IS_PAD:
        return bad(p, "it ends within its header");
    default:
        snprintf(what, sizeof(what), "it ends after %u of its %u blocks", p->next, p->nblocks);
        return bad(p, what);
    }
}

char *pg_incr_target_path(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t plen = strlen(PG_INCR_PREFIX);

    if (strncmp(base, PG_INCR_PREFIX, plen) != 0 || base[plen] == '\0')
        return NULL;
    return xasprintf("%.*s%s", (int)(base - path), path, base + plen);
}

int pg_upload_manifest(struct pg_conn *conn, const void *manifest, size_t len)
{
    PGresult *res = NULL;
    const char *d = manifest;
    int rc = 0;

    if (!PQsendQuery(conn->pq, "UPLOAD_MANIFEST"))
        goto lost;
    res = PQgetResult(conn->pq);
    if (!res)
        goto lost;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = pg_conn_command_error(conn, "UPLOAD_MANIFEST", res);
        PQclear(res);
        goto drain;
    }
    PQclear(res);
    res = NULL;
    while (len > 0) {
        int n = len > 65536 ? 65536 : (int)len;
        if (PQputCopyData(conn->pq, d, n) != 1)
            goto lost;
        d += n;
        len -= (size_t)n;
    }
    if (PQputCopyEnd(conn->pq, NULL) != 1)
        goto lost;
drain:
    while ((res = PQgetResult(conn->pq)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (rc == 0 && (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR))
            rc = pg_conn_command_error(conn, "UPLOAD_MANIFEST", res);
        PQclear(res);
    }
    if (rc == 0 && PQstatus(conn->pq) == CONNECTION_BAD)
        goto lost;
    return rc;
lost:
    PQclear(res);
    return err_set(ERR_CONNECT, "lost connection to server \"%s\" during UPLOAD_MANIFEST",
                   conn->target);
}
