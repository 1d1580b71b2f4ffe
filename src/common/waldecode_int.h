/* waldecode_int.h — what the WAL decoder's stream (waldecode.c) and its reading of
 * record contents (waldecode_rec.c) share: the layout constants, the decoder's state. */
#ifndef PGARK_WALDECODE_INT_H
#define PGARK_WALDECODE_INT_H

#include "pgark/error.h"
#include "pgark/waldecode.h"

#include <stdbool.h>
#include <stdint.h>

/* Page header (see PROTOCOL.md section 4). */
#define SHORT_PHDR 24
#define LONG_PHDR 40
#define XLP_FIRST_IS_CONTRECORD 0x0001
#define XLP_LONG_HEADER 0x0002
#define XLP_FIRST_IS_OVERWRITE_CONTRECORD 0x0008
#define XLP_ALL_FLAGS 0x000F

/* XLogRecord: xl_tot_len @0, xl_xid @4, xl_prev @8, xl_info @16, xl_rmid @17, xl_crc @20. */
#define REC_HDR 24
#define REC_CRC_OFF 20
/* No record can be larger than PostgreSQL's largest allocation. */
#define REC_MAX 0x3FFFFFFFu

/* Record body layout. */
#define XLR_MAX_BLOCK_ID 32
#define XLR_BLOCK_ID_DATA_SHORT 255
#define XLR_BLOCK_ID_DATA_LONG 254
#define XLR_BLOCK_ID_ORIGIN 253
#define XLR_BLOCK_ID_TOPLEVEL_XID 252
#define BKPBLOCK_HAS_IMAGE 0x10
#define BKPBLOCK_HAS_DATA 0x20
#define BKPBLOCK_SAME_REL 0x80
#define BKPIMAGE_HAS_HOLE 0x01
#define BKPIMAGE_COMPRESSED_13 0x02 /* 13, 14: IS_COMPRESSED */
#define BKPIMAGE_COMPRESSED_15 0x1C /* 15+: PGLZ | LZ4 | ZSTD */
#define RELFILENODE_SIZE 12         /* RelFileNode / RelFileLocator */

/* Resource managers and their record kinds. */
#define RM_XLOG_ID 0
#define RM_XACT_ID 1
#define XLOG_SWITCH 0x40
#define XLOG_RESTORE_POINT 0x70
#define XLOG_XACT_COMMIT 0x00
#define XLOG_XACT_PREPARE 0x10
#define XLOG_XACT_ABORT 0x20
#define XLOG_XACT_COMMIT_PREPARED 0x30
#define XLOG_XACT_ABORT_PREPARED 0x40
#define XLOG_XACT_OPMASK 0x70
#define XLOG_XACT_HAS_INFO 0x80
#define XACT_XINFO_HAS_DBINFO (1u << 0)
#define XACT_XINFO_HAS_SUBXACTS (1u << 1)
#define XACT_XINFO_HAS_RELFILENODES (1u << 2)
#define XACT_XINFO_HAS_INVALS (1u << 3)
#define XACT_XINFO_HAS_TWOPHASE (1u << 4)
#define XACT_XINFO_HAS_ORIGIN (1u << 5)
#define XACT_XINFO_HAS_GID (1u << 7)
#define XACT_XINFO_HAS_DROPPED_STATS (1u << 8) /* 15+ */
#define INVAL_MSG_SIZE 16                      /* SharedInvalidationMessage */
/* xl_xact_stats_item: kind, dboid, objoid (15..17); 18 made the object id 64 bits
 * (objid_lo, objid_hi) */
#define STATS_ITEM_SIZE_15 12
#define STATS_ITEM_SIZE_18 16
#define RESTORE_POINT_SIZE (8 + WALDECODE_RP_NAME_MAX)

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)

enum state {
    ST_RECORD,     /* at or inside a record */
    ST_SKIP_CONT,  /* skipping the rest of a record that began before the start */
    ST_SWITCH_PAD, /* after a switch record: the rest of the segment is padding */
    ST_ENDED,      /* end of valid WAL found: ignore the rest */
    ST_FAILED,
};

struct waldecode {
    struct waldecode_config cfg;
    uint16_t magic;
    enum state st;
    lsn_t pos; /* LSN of the next byte */
    uint8_t phdr[LONG_PHDR];
    bool seen_page;
    timeline_t last_tli;
    uint64_t cont_left; /* ST_SKIP_CONT */
    /* record being reassembled across pages (in_rec) */
    bool in_rec;
    lsn_t rec_lsn;
    uint32_t rec_tot; /* valid once rec_have >= 4 */
    uint8_t *rec;
    size_t rec_have, rec_cap;
    lsn_t prev_lsn; /* start of the last complete record */
    enum err_kind fail_kind;
    char *fail_msg;
    struct waldecode_summary sum;
};

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Fail d with an ERR_INTEGRITY error (d is then ST_FAILED); returns the error code. */
int waldecode_fail(struct waldecode *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A record's length tot at lsn is possible: 0, or waldecode_fail. */
int waldecode_check_length(struct waldecode *d, lsn_t lsn, uint32_t tot);
/* The record header hdr at lsn points back at the previous record: 0, or waldecode_fail. */
int waldecode_check_prev(struct waldecode *d, lsn_t lsn, const uint8_t *hdr);
/* A whole record r of tot bytes that started at lsn and ended just before end
 * (waldecode_rec.c). */
int waldecode_record_done(struct waldecode *d, lsn_t lsn, const uint8_t *r, uint32_t tot,
                          lsn_t end);

#endif
