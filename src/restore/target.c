/*
 * target.c — recovery targets from the command line, and the recovery settings that
 * tell the server where to stop and how to fetch WAL.
 */
#include "pgark/restore.h"

#include "pgark/error.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_u32(const char *text, int base, uint32_t *out)
{
    if (!text || !*text || !isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, base);
    if (errno || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int restore_target_set(struct restore_target *t, const char *option, const char *value)
{
    if (t->kind_set)
        return err_set(ERR_USAGE,
                       "only one recovery target may be given (\"--target-%s\" "
                       "comes after another)",
                       option);
    if (!strcmp(option, "time")) {
        if (time_parse(value, &t->time_us) < 0) {
            err_clear();
            err_set(ERR_USAGE, "invalid --target-time \"%s\"", value);
            return err_hint("give a timestamp such as \"2026-11-25 14:03:27.5+00\"; "
                            "without an offset it is UTC");
        }
        t->kind = RESTORE_TARGET_TIME;
        /* After the date (10 characters), a zone is 'Z' or a signed offset. */
        t->zone_assumed = strlen(value) <= 10 || !strpbrk(value + 10, "Z+-");
    } else if (!strcmp(option, "xid")) {
        if (parse_u32(value, 10, &t->xid) < 0 || t->xid < 3)
            return err_set(ERR_USAGE,
                           "invalid --target-xid \"%s\": expected a transaction "
                           "id (a decimal number >= 3)",
                           value);
        t->kind = RESTORE_TARGET_XID;
    } else if (!strcmp(option, "lsn")) {
        if (lsn_parse(value, &t->lsn) < 0) {
            err_clear();
            return err_set(ERR_USAGE, "invalid --target-lsn \"%s\": expected X/X", value);
        }
        t->kind = RESTORE_TARGET_LSN;
    } else if (!strcmp(option, "name")) {
        if (!value[0] || strlen(value) >= 64)
            return err_set(ERR_USAGE,
                           "invalid --target-name \"%s\": a restore point name "
                           "has 1 to 63 bytes",
                           value);
        free(t->name);
        t->name = xstrdup(value);
        t->kind = RESTORE_TARGET_NAME;
    } else if (!strcmp(option, "target")) {
        if (!strcmp(value, "immediate"))
            t->kind = RESTORE_TARGET_IMMEDIATE;
        else if (!strcmp(value, "latest"))
            t->kind = RESTORE_TARGET_LATEST;
        else
            return err_set(ERR_USAGE, "invalid --target \"%s\": expected immediate or latest",
                           value);
    } else {
        return err_set(ERR_USAGE, "unknown recovery target \"%s\"", option);
    }
    t->kind_set = true;
    return 0;
}

int restore_action_parse(const char *text, enum restore_action *out)
{
    if (!strcmp(text, "pause"))
        *out = RESTORE_ACTION_PAUSE;
    else if (!strcmp(text, "promote"))
        *out = RESTORE_ACTION_PROMOTE;
    else if (!strcmp(text, "shutdown"))
        *out = RESTORE_ACTION_SHUTDOWN;
    else
        return err_set(ERR_USAGE,
                       "invalid --target-action \"%s\": expected promote, pause or shutdown", text);
    return 0;
}

int restore_timeline_parse(const char *text, timeline_t *out)
{
    uint32_t v = 0;
    int rc;
    if (!strcmp(text, "latest")) {
        *out = 0;
        return 0;
    }
    if (!strncmp(text, "0x", 2) || !strncmp(text, "0X", 2))
        rc = parse_u32(text + 2, 16, &v);
    else
        rc = parse_u32(text, 10, &v);
    if (rc < 0 || v == 0)
        return err_set(ERR_USAGE,
                       "invalid --target-timeline \"%s\": expected latest or a timeline >= 1",
                       text);
    *out = v;
    return 0;
}

void restore_target_free(struct restore_target *t)
{
    if (!t)
        return;
    free(t->name);
    t->name = NULL;
}

char *restore_target_describe(const struct restore_target *t, char *buf, size_t cap)
{
    char text[64];
    switch (t->kind) {
    case RESTORE_TARGET_LATEST:
        snprintf(buf, cap, "latest");
        break;
    case RESTORE_TARGET_IMMEDIATE:
        snprintf(buf, cap, "immediate");
        break;
    case RESTORE_TARGET_TIME:
        snprintf(buf, cap, "time %s", time_format_pg(t->time_us, text, sizeof(text)));
        break;
    case RESTORE_TARGET_XID:
        snprintf(buf, cap, "xid %u", t->xid);
        break;
    case RESTORE_TARGET_LSN:
        snprintf(buf, cap, "lsn %s", lsn_format(t->lsn, text));
        break;
    case RESTORE_TARGET_NAME:
        snprintf(buf, cap, "restore point \"%s\"", t->name);
        break;
    }
    return buf;
}

void restore_conf_quote(struct buf *b, const char *value)
{
    buf_append_str(b, "'");
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            buf_append_str(b, "''");
        else if (*p == '\\')
            buf_append_str(b, "\\\\");
        else if (*p == '\n')
            buf_append_str(b, "\\n");
        else
            buf_append(b, p, 1);
    }
    buf_append_str(b, "'");
}

static bool shell_safe(const char *word)
{
    if (!*word)
        return false;
    for (const char *p = word; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("/._-+=:,@%", *p))
            return false;
    }
    return true;
}

void restore_shell_quote(struct buf *b, const char *word)
{
    if (shell_safe(word)) {
        buf_append_str(b, word);
        return;
    }
    buf_append_str(b, "'");
    for (const char *p = word; *p; p++) {
        if (*p == '\'')
            buf_append_str(b, "'\\''");
        else
            buf_append(b, p, 1);
    }
    buf_append_str(b, "'");
}

/* Shell-quote word and double every '%' so that the server leaves it alone. */
static void command_word(struct buf *b, const char *word)
{
    struct buf q = BUF_INIT;
    restore_shell_quote(&q, word);
    for (size_t i = 0; i < q.len; i++) {
        if (q.data[i] == '%')
            buf_append_str(b, "%%");
        else
            buf_append(b, &q.data[i], 1);
    }
    buf_free(&q);
}

char *restore_command_text(const char *program, const char *config_path, const char *cluster,
                           const char *repo)
{
    struct buf b = BUF_INIT;
    command_word(&b, program);
    buf_append_str(&b, " --config ");
    command_word(&b, config_path);
    buf_append_str(&b, " --cluster ");
    command_word(&b, cluster);
    buf_append_str(&b, " wal-fetch");
    if (repo) {
        buf_append_str(&b, " --repo ");
        command_word(&b, repo);
    }
    buf_append_str(&b, " \"%f\" \"%p\"");
    return buf_steal(&b);
}

const char *restore_target_outcome(const struct restore_target *t)
{
    if (t->kind == RESTORE_TARGET_LATEST)
        return "it replays all the archived WAL, then promotes (opens for writes on a new "
               "timeline)";
    switch (t->action) {
    case RESTORE_ACTION_PROMOTE:
        return "it replays the archived WAL to the target, then promotes (opens for writes on a "
               "new timeline)";
    case RESTORE_ACTION_SHUTDOWN:
        return "it replays the archived WAL to the target, then shuts down (start it again to "
               "promote)";
    case RESTORE_ACTION_PAUSE:
    case RESTORE_ACTION_DEFAULT:
        break;
    }
    return "it replays the archived WAL to the target, then pauses there, read-only (the "
           "default --target-action): check the data, then SELECT pg_wal_replay_resume(); "
           "promotes it";
}

static const char *action_name(enum restore_action a)
{
    switch (a) {
    case RESTORE_ACTION_PAUSE:
        return "pause";
    case RESTORE_ACTION_PROMOTE:
        return "promote";
    case RESTORE_ACTION_SHUTDOWN:
        return "shutdown";
    case RESTORE_ACTION_DEFAULT:
        break;
    }
    return NULL;
}

static void setting(struct buf *b, const char *name, const char *value)
{
    buf_appendf(b, "%s = ", name);
    restore_conf_quote(b, value);
    buf_append_str(b, "\n");
}

char *restore_recovery_conf(const struct restore_target *t, const char *restore_command)
{
    struct buf b = BUF_INIT;
    char text[64];
    buf_append_str(&b, "\n# Recovery settings written by pgark restore\n");
    setting(&b, "restore_command", restore_command);
    switch (t->kind) {
    case RESTORE_TARGET_LATEST:
        break;
    case RESTORE_TARGET_IMMEDIATE:
        setting(&b, "recovery_target", "immediate");
        break;
    case RESTORE_TARGET_TIME:
        setting(&b, "recovery_target_time", time_format_pg(t->time_us, text, sizeof(text)));
        break;
    case RESTORE_TARGET_XID:
        snprintf(text, sizeof(text), "%u", t->xid);
        setting(&b, "recovery_target_xid", text);
        break;
    case RESTORE_TARGET_LSN:
        setting(&b, "recovery_target_lsn", lsn_format(t->lsn, text));
        break;
    case RESTORE_TARGET_NAME:
        setting(&b, "recovery_target_name", t->name);
        break;
    }
    if (t->exclusive && (t->kind == RESTORE_TARGET_TIME || t->kind == RESTORE_TARGET_XID ||
                         t->kind == RESTORE_TARGET_LSN))
        setting(&b, "recovery_target_inclusive", "off");
    if (action_name(t->action) && t->kind != RESTORE_TARGET_LATEST)
        setting(&b, "recovery_target_action", action_name(t->action));
    if (t->timeline) {
        snprintf(text, sizeof(text), "%u", t->timeline);
        setting(&b, "recovery_target_timeline", text);
    } else {
        setting(&b, "recovery_target_timeline", "latest");
    }
    return buf_steal(&b);
}

/* The settings restore_recovery_conf writes, in any case (GUC names are not
 * case-sensitive). */
static bool managed_setting(const char *name, size_t len)
{
    static const char *const names[] = {
        "restore_command",           "recovery_target",        "recovery_target_time",
        "recovery_target_xid",       "recovery_target_lsn",    "recovery_target_name",
        "recovery_target_inclusive", "recovery_target_action", "recovery_target_timeline",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    }
    return false;
}

char *restore_conf_strip(const char *text, size_t len)
{
    struct buf b = BUF_INIT;
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - line) + 1 : len - pos;
        size_t i = 0;
        while (i < line_len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t start = i;
        while (i < line_len &&
               (isalnum((unsigned char)line[i]) || line[i] == '_' || line[i] == '.'))
            i++;
        /* "name = value" or "name value": the name ends at '=' or blank space. */
        bool named =
            i > start && i < line_len && (line[i] == '=' || line[i] == ' ' || line[i] == '\t');
        if (named && managed_setting(line + start, i - start))
            buf_append_str(&b, "# removed by pgark restore: ");
        buf_append(&b, line, line_len);
        pos += line_len;
    }
    if (len && text[len - 1] != '\n' && b.len)
        buf_append_str(&b, "\n");
    return buf_steal(&b);
}

/* --- choosing a backup ------------------------------------------------------------ */

bool restore_timeline_leads(timeline_t tli, lsn_t stop_lsn, timeline_t target_tli,
                            const struct timeline_history *h)
{
    if (tli == target_tli)
        return true;
    if (!h)
        return false;
    for (size_t i = 0; i < h->count; i++) {
        /* The backup's timeline was left at switchpoint: WAL up to there is shared. */
        if (h->entries[i].tli == tli)
            return stop_lsn <= h->entries[i].switchpoint;
    }
    return false;
}

bool restore_backup_fits(const struct restore_backup *b, const struct restore_target *t)
{
    switch (t->kind) {
    case RESTORE_TARGET_TIME:
        return manifest_earliest_target_us(b->stop_time, b->consistent_time_us, t->exclusive) <=
               t->time_us;
    case RESTORE_TARGET_LSN:
        return b->stop_lsn <= t->lsn;
    default:
        return true;
    }
}

int restore_backup_pick(const struct restore_backup *backups, size_t n,
                        const struct restore_target *t, timeline_t target_tli,
                        const struct timeline_history *h)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        const struct restore_backup *b = &backups[i];
        if (!restore_backup_fits(b, t) ||
            !restore_timeline_leads(b->timeline, b->stop_lsn, target_tli, h))
            continue;
        if (best < 0 || b->stop_lsn > backups[best].stop_lsn ||
            (b->stop_lsn == backups[best].stop_lsn && b->stop_time > backups[best].stop_time))
            best = (int)i;
    }
    return best;
}
