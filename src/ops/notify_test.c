/*
 * notify_test.c — `pgark notify --test [--event NAME]`: send a sample event to every
 * configured endpoint now and report each one's answer, so that a webhook is known to
 * work before an incident needs it. Without --event the sample is notify.test; with it,
 * a sample of that event (marked as a test), sent to every endpoint, subscribed or
 * not, and the report says which ones subscribe. Exit 0 when every endpoint answered
 * 2xx, 1 when one did not, 2 for usage and configuration (no endpoint configured).
 */
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Long: the options, the sample event, and its delivery to each configured endpoint with
 * a line for each; one level.
 */
int cmd_notify(struct cli_context *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"test", no_argument, NULL, 't'},
                                            {"event", required_argument, NULL, 'e'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    bool test = false;
    const char *event = NULL;
    int opt, failed = 0;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 't':
            test = true;
            break;
        case 'e':
            event = optarg;
            break;
        case 'h':
            printf("usage: pgark notify --test [--event NAME]\n");
            return 0;
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for notify", argv[optind - 1]);
            err_hint("run \"pgark help notify\"");
            return 2;
        }
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for notify", argv[optind]);
        return 2;
    }
    if (!test) {
        err_set(ERR_USAGE, "notify needs --test");
        err_hint("run \"pgark notify --test\" to send a sample to every endpoint");
        return 2;
    }
    unsigned kind = CONFIG_EVENT_NOTIFY_TEST;
    if (event) {
        kind = config_event_parse(event);
        if (!config_event_name(kind)) {
            err_set(ERR_USAGE, "unknown event \"%s\" for notify --test", event);
            err_hint("name one event, such as rpo.breach or backup.failed");
            return 2;
        }
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);
    if (cfg->nnotify == 0) {
        err_set(ERR_CONFIG, "\"%s\" configures no notify endpoint", cfg->path);
        err_hint("add a notify entry (url, format, events): see conf/pgark.yaml");
        return 2;
    }
    const char *timeout = getenv("PGARK_TEST_NOTIFY_TIMEOUT_S");
    struct notify_event *e = notify_event_sample(cl->name, kind);
    for (size_t i = 0; i < cfg->nnotify; i++) {
        struct notify_endpoint ep = {cfg->notify[i].url, cfg->notify[i].format,
                                     cfg->notify[i].events};
        char *label = notify_endpoint_label(&ep, i);
        long status = 0;
        const char *sub = kind == CONFIG_EVENT_NOTIFY_TEST ? ""
                          : (ep.events & kind)             ? " (subscribed)"
                                                           : " (not subscribed)";
        if (notify_send(&ep, e, timeout ? strtoll(timeout, NULL, 10) : 0, &status) == 0) {
            printf("%s: %s sent%s, answered %ld\n", label, config_event_name(kind), sub, status);
        } else {
            char *raw = err_format();
            char *text = log_redact(raw);
            printf("%s: %s failed%s: %s\n", label, config_event_name(kind), sub, text);
            free(text);
            free(raw);
            err_clear();
            failed++;
        }
        free(label);
    }
    notify_event_free(e);
    if (failed) {
        err_set(ERR_RUNTIME, "%d of %zu endpoints did not take the test", failed, cfg->nnotify);
        return 1;
    }
    return 0;
}
