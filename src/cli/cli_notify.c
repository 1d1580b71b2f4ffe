/* cli_notify.c — the notifier of a cluster from the configuration (see cli.h). */
#include "pgark/cli.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"

#include <stdlib.h>

/* Tests: a shorter first retry (the backoff doubles from it). */
static int64_t env_ms(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strtoll(v, NULL, 10) : 0;
}

struct notifier *cli_notifier(const struct config *cfg, const struct config_cluster *cl)
{
    if (cfg->nnotify == 0)
        return NULL;
    struct notify_endpoint *eps = xcalloc(cfg->nnotify, sizeof(*eps));
    for (size_t i = 0; i < cfg->nnotify; i++) {
        eps[i].url = cfg->notify[i].url;
        eps[i].format = cfg->notify[i].format;
        eps[i].events = cfg->notify[i].events;
    }
    char *dead = xasprintf("%s/%s/notify-dead.jsonl", cfg->spool, cl->name);
    struct notify_options o = {
        .endpoints = eps,
        .nendpoints = cfg->nnotify,
        .dead_letter = dead,
        .first_retry_ms = env_ms("PGARK_TEST_NOTIFY_RETRY_MS"),
        .timeout_s = env_ms("PGARK_TEST_NOTIFY_TIMEOUT_S"),
    };
    struct notifier *n = notifier_new(&o);
    free(dead);
    free(eps);
    return n;
}

void cli_notify(const struct config *cfg, const struct config_cluster *cl, struct notify_event *e)
{
    struct notifier *n = cli_notifier(cfg, cl);
    if (!n) {
        notify_event_free(e);
        return;
    }
    struct err_saved *saved = err_save();
    int64_t wait = env_ms("PGARK_TEST_NOTIFY_WAIT_MS");
    notifier_post(n, e);
    notifier_free(n, wait > 0 ? wait : CLI_NOTIFY_WAIT_MS);
    err_restore(saved);
}

void cli_notify_error(const struct config *cfg, const struct config_cluster *cl, unsigned kind,
                      const char *what)
{
    cli_notify_error_with(cfg, cl, kind, what, NULL);
}

void cli_notify_error_with(const struct config *cfg, const struct config_cluster *cl, unsigned kind,
                           const char *what, json_t *extra)
{
    if (cfg->nnotify == 0) {
        json_decref(extra);
        return;
    }
    char *raw = err_format();
    char *text = log_redact(raw);
    char *message = log_redact(err_message() ? err_message() : "unknown error");
    struct notify_event *e = notify_event_new(cl->name, kind, "%s failed: %s", what, message);
    json_object_set_new(e->details, "error", json_string(text));
    if (err_hint_text())
        json_object_set_new(e->details, "hint", json_string(err_hint_text()));
    if (extra)
        json_object_update(e->details, extra);
    json_decref(extra);
    free(message);
    free(text);
    free(raw);
    cli_notify(cfg, cl, e);
}
