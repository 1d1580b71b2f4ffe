/*
 * drill_record.c — what a drill leaves behind: its record, drills/<time>-<repo>.json in
 * every repository of the cluster (so that `report` finds it from any of them, and a
 * drill of one repository is known when another is the one left), and its account on
 * the terminal.
 *
 * The record (format 1):
 *   {"format":1, "name", "cluster", "repository", "time" (start, UTC), "finished",
 *    "result": "passed"|"failed"|"error", "exit", "error", "hint",
 *    "backup", "target": {"kind": "latest"|"time", "time", "random"},
 *    "reached": {"lsn", "last_transaction"},
 *    "phases_ms": {"choose", "files", "start", "replay", "validate"},
 *    "rto_ms" (choose to replay: the time to a server at the target), "total_ms",
 *    "rto_target_ms", "rto_met", "rpo_seconds", "rpo_source", "rpo_target_ms", "rpo_met",
 *    "checks": [{"name", "result": "ok"|"skipped"|"failed"|"error", "detail", "ms"}],
 *    "thorough", "kept", "pgark_version", "pg_version", "pg_major", "host"}
 * A value that is not known is null. Readers ignore fields they do not know.
 */
#include "drill_int.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/units.h"
#include "pgark/version.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const phase_names[DRILL_NPHASES] = {"choose", "files", "start", "replay",
                                                       "validate"};
static const char *const outcome_names[] = {"ok", "skipped", "failed", "error"};

static json_t *time_json(int64_t us)
{
    char text[64];
    return us ? json_string(time_format_pg(us, text, sizeof(text))) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static int64_t rto_ms(const struct drill *d)
{
    return d->phase_ms[DRILL_PHASE_CHOOSE] + d->phase_ms[DRILL_PHASE_FILES] +
           d->phase_ms[DRILL_PHASE_START] + d->phase_ms[DRILL_PHASE_REPLAY];
}

static const char *result_of(const struct drill *d)
{
    return d->exit == 0 ? "passed" : d->exit == 3 ? "failed" : "error";
}

char *drill_record_json(const struct drill *d)
{
    char host[256] = "unknown", lsn[LSN_STRLEN];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    json_t *o = json_object();
    json_object_set_new(o, "format", json_integer(1));
    json_object_set_new(o, "name", json_string(d->name));
    json_object_set_new(o, "cluster", json_string(d->cl->name));
    json_object_set_new(o, "repository", json_string(d->conf->name));
    json_object_set_new(o, "time", time_json(d->started_us));
    json_object_set_new(o, "finished", time_json(time_now_us()));
    json_object_set_new(o, "result", json_string(result_of(d)));
    json_object_set_new(o, "exit", json_integer(d->exit));
    json_object_set_new(o, "error", str_or_null(d->error));
    json_object_set_new(o, "hint", str_or_null(d->hint));
    json_object_set_new(o, "backup", str_or_null(d->backup));
    bool latest = d->a->target == DRILL_TARGET_LATEST && !d->target_random;
    json_t *t = json_object();
    json_object_set_new(t, "kind", json_string(latest ? "latest" : "time"));
    json_object_set_new(t, "time", latest ? json_null() : time_json(d->target_us));
    json_object_set_new(t, "random", json_boolean(d->target_random));
    json_object_set_new(o, "target", t);
    json_t *r = json_object();
    json_object_set_new(r, "lsn",
                        d->promoted ? json_string(lsn_format(d->reached_lsn, lsn)) : json_null());
    json_object_set_new(r, "last_transaction",
                        d->promoted ? time_json(d->last_xact_us) : json_null());
    json_object_set_new(o, "reached", r);
    json_t *ph = json_object();
    for (int i = 0; i < DRILL_NPHASES; i++)
        json_object_set_new(ph, phase_names[i], json_integer((json_int_t)d->phase_ms[i]));
    json_object_set_new(o, "phases_ms", ph);
    /* The RTO is known once the server reached the target. */
    json_object_set_new(o, "rto_ms",
                        d->promoted ? json_integer((json_int_t)rto_ms(d)) : json_null());
    json_object_set_new(o, "total_ms",
                        json_integer((json_int_t)((time_mono_us() - d->mono0) / 1000)));
    json_object_set_new(o, "rto_target_ms", json_integer((json_int_t)d->cl->rto_target_ms));
    json_object_set_new(
        o, "rto_met", d->promoted ? json_boolean(rto_ms(d) <= d->cl->rto_target_ms) : json_null());
    json_object_set_new(o, "rpo_seconds",
                        d->rpo_known ? json_real(round(d->rpo_s * 1000) / 1000) : json_null());
    json_object_set_new(o, "rpo_source", str_or_null(d->rpo_known ? d->rpo_source : NULL));
    json_object_set_new(o, "rpo_target_ms", json_integer((json_int_t)d->cl->rpo_target_ms));
    json_object_set_new(o, "rpo_met",
                        d->rpo_known ? json_boolean(d->rpo_s * 1000 <= (double)d->cl->rpo_target_ms)
                                     : json_null());
    json_t *cs = json_array();
    for (size_t i = 0; i < d->nchecks; i++) {
        const struct drill_check *c = &d->checks[i];
        json_array_append_new(cs, json_pack("{s:s, s:s, s:s, s:I}", "name", c->name, "result",
                                            outcome_names[c->outcome], "detail", c->detail, "ms",
                                            (json_int_t)c->ms));
    }
    json_object_set_new(o, "checks", cs);
    json_object_set_new(o, "thorough", json_boolean(d->a->thorough));
    json_object_set_new(o, "kept", json_boolean(d->a->keep && d->server_up));
    json_object_set_new(o, "pgark_version", json_string(PGARK_VERSION));
    json_object_set_new(o, "pg_version",
                        d->pg_version[0] ? json_string(d->pg_version) : json_null());
    json_object_set_new(o, "pg_major", d->pg_major ? json_integer(d->pg_major) : json_null());
    json_object_set_new(o, "host", json_string(host));
    char *text = cli_json_text(o);
    json_decref(o);
    return text;
}

size_t drill_record_write(struct drill *d, const char *text)
{
    size_t stored = 0;
    for (size_t i = 0; i < d->cl->nrepos; i++) {
        const struct config_repo *conf = config_cluster_repo(d->cfg, d->cl, i);
        struct cli_repo o = {0};
        struct repo *r = NULL;
        /* the drilled repository is open already */
        if (conf == d->conf && d->repo)
            r = d->repo;
        else if (cli_repo_open(d->cfg, d->cl, conf, CLI_REPO_READ, NULL, &o) == 0)
            r = o.repo;
        if (!r || repo_record_put(r, REPO_RECORD_DRILLS, d->name, text) < 0) {
            log_warn("the record of the drill could not be written to repository \"%s\": %s",
                     conf->name, err_message());
            err_clear();
        } else {
            stored++;
        }
        cli_repo_close(&o);
    }
    return stored;
}

static char *secs(int64_t ms, char *buf, size_t cap)
{
    return duration_format(ms, buf, cap);
}

void drill_print(const struct drill *d, size_t stored)
{
    char a[32], b[32], c[32], e[32], f[32], g[32], lsn[LSN_STRLEN], when[64];
    printf("drill of repository \"%s\" (cluster \"%s\"): %s\n", d->conf->name, d->cl->name,
           d->exit == 0   ? "passed"
           : d->exit == 3 ? "FAILED"
                          : "could not run");
    if (d->backup) {
        bool latest = d->a->target == DRILL_TARGET_LATEST && !d->target_random;
        printf("  backup %s, target %s", d->backup, latest ? "latest" : "");
        if (!latest)
            printf("%s%s", time_format_pg(d->target_us, when, sizeof(when)),
                   d->target_random ? " (random)" : "");
        printf("\n");
    }
    if (d->promoted) {
        printf("  reached %s, last transaction %s\n", lsn_format(d->reached_lsn, lsn),
               d->last_xact_us ? time_format_pg(d->last_xact_us, when, sizeof(when)) : "none");
        int64_t rto = rto_ms(d);
        printf("  RTO %s (rto_target %s: %s): choose %s, files %s, start %s, replay %s; "
               "validation %s\n",
               secs(rto, a, sizeof(a)), secs(d->cl->rto_target_ms, b, sizeof(b)),
               rto <= d->cl->rto_target_ms ? "met" : "MISSED",
               secs(d->phase_ms[DRILL_PHASE_CHOOSE], c, sizeof(c)),
               secs(d->phase_ms[DRILL_PHASE_FILES], e, sizeof(e)),
               secs(d->phase_ms[DRILL_PHASE_START], f, sizeof(f)),
               secs(d->phase_ms[DRILL_PHASE_REPLAY], g, sizeof(g)),
               secs(d->phase_ms[DRILL_PHASE_VALIDATE], a, sizeof(a)));
        if (d->rpo_known)
            printf("  RPO %.3f s (rpo_target %s: %s), from the %s\n", d->rpo_s,
                   secs(d->cl->rpo_target_ms, b, sizeof(b)),
                   d->rpo_s * 1000 <= (double)d->cl->rpo_target_ms ? "met" : "MISSED",
                   !strcmp(d->rpo_source, "receiver")  ? "receiver's newest commit"
                   : !strcmp(d->rpo_source, "primary") ? "primary's last commit"
                                                       : "target");
        else
            printf("  RPO not known (no receiver running here, and the primary does not track "
                   "commit timestamps)\n");
    }
    for (size_t i = 0; i < d->nchecks; i++) {
        const struct drill_check *ch = &d->checks[i];
        printf("  %-8s %-10s %s\n",
               ch->outcome == DRILL_OK        ? "ok"
               : ch->outcome == DRILL_SKIPPED ? "skipped"
               : ch->outcome == DRILL_FAILED  ? "FAILED"
                                              : "ERROR",
               ch->name, ch->detail);
    }
    if (d->error)
        printf("  %s\n", d->error);
    if (d->hint)
        printf("  hint: %s\n", d->hint);
    if (d->a->keep && d->server_up)
        printf("  the server is left running: psql -h \"%s\" -p %d -d postgres; stop it with "
               "pg_ctl -D \"%s\" stop, then remove \"%s\" and \"%s\"\n",
               d->sockdir, d->port, d->pgdata, d->pgdata, d->ts_root);
    printf("  record drills/%s.json written to %zu of %zu repositories\n", d->name, stored,
           d->cl->nrepos);
    fflush(stdout);
}
