/*
 * rpohist.h — the receiver's RPO history: one sample a minute, each the worst RPO of
 * each tier (local, off-site) during that minute, kept by the receiver in its spool
 * (<spool>/<cluster>/RPOHIST_FILE, a line per sample) and shipped to every repository
 * (the record receiver/RPOHIST_RECORD.json), so that `report` can tell the worst RPO of a
 * period from the host of the receiver or from any repository.
 *
 * Promise: pure text handling, no I/O. A line is "UNIX_SECONDS LOCAL_MS OFFSITE_MS", a
 * tier without a value (no repository of that tier, not known) written "-"; a line that
 * does not parse is skipped, so a file cut short by a crash loses one sample at most.
 */
#ifndef PGARK_RPOHIST_H
#define PGARK_RPOHIST_H

#include <stddef.h>
#include <stdint.h>

#define RPOHIST_FILE "rpo-history"
#define RPOHIST_RECORD "rpo-history"
/* How long the history goes back (older samples are dropped when the file is rewritten). */
#define RPOHIST_KEEP_S (35 * 86400)

enum rpohist_tier { RPOHIST_LOCAL = 0, RPOHIST_OFFSITE, RPOHIST_TIERS };

struct rpohist_sample {
    int64_t time_s;            /* Unix seconds: the end of the minute it covers */
    int64_t ms[RPOHIST_TIERS]; /* worst RPO in that minute, ms; -1: no value */
};

/* The sample as its line, newline included, into buf (>= 64). Returns buf. */
char *rpohist_format_line(const struct rpohist_sample *s, char *buf, size_t cap);
/* The samples of a history file's text at or after since_s, in the file's order. *out is
 * malloc'd (free it), also when none (n 0). */
void rpohist_parse(const char *text, int64_t since_s, struct rpohist_sample **out, size_t *n);
/* The samples as the record's JSON: {"format":1,"samples":[[t,local_ms,offsite_ms],...]},
 * null for no value. Caller frees. */
char *rpohist_to_json(const struct rpohist_sample *s, size_t n);
/* Parse that JSON (samples at or after since_s). ERR_INTEGRITY when it is not such a
 * record; *out is malloc'd on success. */
int rpohist_from_json(const char *text, int64_t since_s, struct rpohist_sample **out, size_t *n);

#endif
