/*
 * cmd_receive.c — `pgark receive`: the configuration turned into receiver options,
 * signals, and reloads.
 *
 * SIGTERM and SIGINT stop cleanly. SIGHUP re-reads the configuration: the receiver
 * returns, its stream resumes from the spool with the new settings, no gap. A
 * configuration that no longer loads is reported and the old one is kept.
 *
 * One receiver per spool: the spool's lock (spool_lock) is taken before anything
 * else, before a connection, a slot or a status.json, and held until the process
 * ends, across reloads; a reload that moves the spool takes the new spool's lock
 * before it lets go of the old one (and is refused, keeping the old settings, when
 * another receiver holds it).
 */
#include "spool_int.h"

#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/notify.h"
#include "pgark/units.h"
#include "pgark/walreceiver.h"

#include "spool_int.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_stop(int sig)
{
    (void)sig;
    receiver_request_stop();
}

static void on_hup(int sig)
{
    (void)sig;
    receiver_request_reload();
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

struct receive_run {
    struct receiver_options o;
    struct storage **storages;
    int nstorages;
    char *spool_dir;
    struct notifier *notifier;
};

/* How long a stopping (or reloading) receiver gives its last events to go out. */
#define NOTIFY_STOP_WAIT_MS 5000

/* receiver_run took the storages. */
static void run_disown_storages(struct receive_run *r)
{
    r->nstorages = 0;
}

static void run_free(struct receive_run *r)
{
    for (int i = 0; i < r->nstorages; i++)
        storage_free(r->storages[i]);
    free(r->storages);
    free(r->o.repos);
    free(r->spool_dir);
    notifier_free(r->notifier, NOTIFY_STOP_WAIT_MS);
    memset(r, 0, sizeof(*r));
}

static int run_prepare(const struct config *cfg, const struct config_cluster *cl,
                       struct receive_run *r)
{
    memset(r, 0, sizeof(*r));
    if (cli_repo_options(cfg, cl, CLI_REPO_ARCHIVE, &r->o.repo) < 0)
        return err_code();
    r->o.conninfo = cl->conninfo;
    r->o.slot = cl->slot;
    r->o.create_slot = cl->create_slot;
    r->o.application_name = cl->application_name;
    r->o.synchronous = cl->synchronous;
    r->o.flush_interval_ms = cl->flush_interval_ms;
    r->spool_dir = xasprintf("%s/%s", cfg->spool, cl->name);
    r->o.spool_dir = r->spool_dir;
    /* Said before any connection is tried (the spool is opened once one works). */
    if (spool_check_owner(r->spool_dir) < 0)
        return err_code();
    r->o.spool_max = cfg->spool_max;
    r->o.disk_free_min = cfg->disk_free_min;
    r->o.disk_free_min_percent = cfg->disk_free_min_percent;
    r->o.metrics_host = cfg->metrics_host;
    r->o.metrics_port = cfg->metrics_listen ? cfg->metrics_port : 0;
    r->o.status_interval_ms = 10000;
    const char *interval = getenv("PGARK_TEST_STATUS_INTERVAL_MS"); /* tests: shorter */
    if (interval)
        r->o.status_interval_ms = strtoll(interval, NULL, 10);
    r->notifier = cli_notifier(cfg, cl);
    r->o.notifier = r->notifier;
    r->o.rpo_target_ms = cl->rpo_target_ms;
    r->o.notify_repeat_ms = cfg->notify_repeat_ms;
    const char *silence = getenv("PGARK_TEST_SILENCE_TIMEOUT_MS"); /* tests: shorter */
    r->o.silence_timeout_ms = silence ? strtoll(silence, NULL, 10) : 0;
    const char *retries = getenv("PGARK_TEST_MAX_RETRIES");
    r->o.max_retries = retries ? atoi(retries) : 0;
    r->o.repos = xcalloc(cl->nrepos, sizeof(*r->o.repos));
    r->storages = xcalloc(cl->nrepos, sizeof(*r->storages));
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *repo = config_cluster_repo(cfg, cl, i);
        struct storage *s = cli_open_storage(repo);
        if (!s)
            return err_context("while opening repository \"%s\"", repo->name);
        r->storages[r->nstorages++] = s;
        r->o.repos[i].name = repo->name;
        r->o.repos[i].storage = s;
        r->o.repos[i].offsite = repo->type == CONFIG_REPO_S3;
        r->o.repos[i].local_path = repo->type == CONFIG_REPO_POSIX ? repo->path : NULL;
        r->o.repos[i].concurrency = repo->type == CONFIG_REPO_S3 ? repo->concurrency : 1;
        /* A local copy twice a second keeps the local tier's RPO within a second; off-site,
         * each copy costs a request: the cluster's partial_upload_interval. */
        int64_t partial = repo->partial_upload_interval_ms;
        if (partial < 0)
            partial = repo->type == CONFIG_REPO_S3 ? cl->partial_upload_interval_ms
                                                   : CONFIG_DEFAULT_LOCAL_PARTIAL_INTERVAL_MS;
        r->o.repos[i].partial_interval_ms = partial;
        r->o.repos[i].stop_timeout_ms = repo->stop_timeout_ms;
    }
    r->o.nrepos = (int)cl->nrepos;
    return 0;
}

/* The spool the receiver holds locked. */
struct held {
    char *dir; /* <spool>/<cluster> */
    int fd;
};

/* Hold the spool of cluster cl in cfg locked, giving up the one held before, if
 * another. 0, or the error with h unchanged. */
static int hold_spool(struct held *h, const struct config *cfg, const struct config_cluster *cl)
{
    char *dir = xasprintf("%s/%s", cfg->spool, cl->name);
    if (h->dir && strcmp(h->dir, dir) == 0) {
        free(dir);
        return 0;
    }
    int fd = spool_lock(dir);
    if (fd < 0) {
        free(dir);
        return fd;
    }
    spool_unlock(h->fd);
    free(h->dir);
    h->dir = dir;
    h->fd = fd;
    return 0;
}

/* Long: the options and the checks before starting (TLS, the spool's lock, the run's
 * options and storages), then the loop that runs the receiver and, on SIGHUP, swaps in a
 * fresh configuration or keeps the old one; the configuration, the cluster and the held
 * spool cross from one part to the other and are released on the one exit.
 */
int cmd_receive(struct cli_context *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    struct config *owned = NULL;
    struct receive_run run = {0};
    struct held held = {.fd = -1};
    int rc, opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: pgark receive\n");
            return 0;
        }
        err_set(ERR_USAGE, "unknown option for receive");
        err_hint("run \"pgark help receive\"");
        return 2;
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for receive", argv[optind]);
        return 2;
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl)
        return 2;
    const struct config *cfg = cli_config(ctx);
    if (cli_require_tls(cfg, cl) < 0) {
        rc = 2;
        goto out;
    }
    if (hold_spool(&held, cfg, cl) < 0) {
        rc = err_exit_code();
        goto out;
    }
    if (run_prepare(cfg, cl, &run) < 0) {
        rc = err_exit_code();
        goto out;
    }
    install_signals();
    char batch[64] = ", synchronous";
    if (!cl->synchronous) {
        char shown[32];
        snprintf(batch, sizeof(batch), ", flushing every %s",
                 duration_format(cl->flush_interval_ms, shown, sizeof(shown)));
    }
    log_info("pgark receive starting for cluster \"%s\" (%d repositories%s)", cl->name,
             run.o.nrepos, batch);
    for (;;) {
        rc = receiver_run(&run.o);
        run_disown_storages(&run);
        run_free(&run);
        if (rc != RECEIVER_RELOAD)
            break;
        /* SIGHUP: load the file again; keep the old settings if it is broken. Every
         * run gets storages of its own: the last one's may still be in use by an
         * upload it left behind. */
        const char *path = ctx->config_path ? ctx->config_path : config_default_path();
        struct config *fresh = NULL;
        const struct config_cluster *fresh_cl = NULL;
        if (config_load(path, &fresh) < 0 || !(fresh_cl = config_cluster_find(fresh, cl->name)) ||
            cli_require_tls(fresh, fresh_cl) < 0 || run_prepare(fresh, fresh_cl, &run) < 0 ||
            hold_spool(&held, fresh, fresh_cl) < 0) {
            char *text = err_format();
            log_error("configuration not reloaded: %s", text);
            free(text);
            err_clear();
            run_free(&run);
            config_free(fresh);
            if (run_prepare(cfg, cl, &run) < 0) {
                rc = err_exit_code();
                goto out;
            }
            continue;
        }
        cli_config_warnings(fresh, ctx->config_warn_level);
        config_free(owned);
        owned = fresh;
        cfg = fresh;
        cl = fresh_cl;
        log_set_level(ctx->log_level_set ? log_get_level() : fresh->log_level);
        log_info("configuration reloaded from \"%s\"", path);
    }
    if (rc == 0)
        log_info("pgark receive stopped");
    else
        rc = err_exit_code();
out:
    run_free(&run);
    config_free(owned);
    spool_unlock(held.fd);
    free(held.dir);
    return rc;
}
