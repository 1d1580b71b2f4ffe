/*
 * args.c — `pgark restore`'s command line: the options into a struct restore_args, and
 * the combinations that make no sense refused (ERR_USAGE) before anything is read.
 */
#include "restore_int.h"

#include "pgark/cli.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_map(struct restore_args *a, const char *text)
{
    unsigned oid = 0;
    int end = 0;
    if (sscanf(text, "%u=%n", &oid, &end) != 1 || end == 0 || text[end] != '/' || oid == 0)
        return err_set(ERR_USAGE, "invalid --tablespace-map \"%s\": expected OID=/absolute/dir",
                       text);
    a->map = xrealloc(a->map, (a->nmap + 1) * sizeof(*a->map));
    a->map[a->nmap++] = (struct ts_map){oid, xstrdup(text + end)};
    return 0;
}

enum {
    OPT_PGDATA = 1,
    /* the five that name a target, in the order of target_kinds */
    OPT_TIME,
    OPT_XID,
    OPT_LSN,
    OPT_NAME,
    OPT_TARGET,
    OPT_BACKUP,
    OPT_EXCL,
    OPT_ACTION,
    OPT_TIMELINE,
    OPT_DELTA,
    OPT_FORCE,
    OPT_MAP,
    OPT_TSDIR,
    OPT_WALDIR,
    OPT_REPO,
    OPT_START,
    OPT_PORT,
    OPT_WAIT,
    OPT_JSON,
    OPT_NOPROGRESS,
    OPT_NOCHUNKCHECK,
    OPT_CONFIG_ONLY,
    OPT_DEST,
    OPT_HELP
};

static const char *const target_kinds[] = {"time", "xid", "lsn", "name", "target"};

static const struct option options[] = {{"pgdata", required_argument, NULL, OPT_PGDATA},
                                        {"backup", required_argument, NULL, OPT_BACKUP},
                                        {"target-time", required_argument, NULL, OPT_TIME},
                                        {"target-xid", required_argument, NULL, OPT_XID},
                                        {"target-lsn", required_argument, NULL, OPT_LSN},
                                        {"target-name", required_argument, NULL, OPT_NAME},
                                        {"target", required_argument, NULL, OPT_TARGET},
                                        {"target-exclusive", no_argument, NULL, OPT_EXCL},
                                        {"target-action", required_argument, NULL, OPT_ACTION},
                                        {"target-timeline", required_argument, NULL, OPT_TIMELINE},
                                        {"delta", no_argument, NULL, OPT_DELTA},
                                        {"force", no_argument, NULL, OPT_FORCE},
                                        {"tablespace-map", required_argument, NULL, OPT_MAP},
                                        {"tablespace-dir", required_argument, NULL, OPT_TSDIR},
                                        {"waldir", required_argument, NULL, OPT_WALDIR},
                                        {"repo", required_argument, NULL, OPT_REPO},
                                        {"start", no_argument, NULL, OPT_START},
                                        {"port", required_argument, NULL, OPT_PORT},
                                        {"wait", no_argument, NULL, OPT_WAIT},
                                        {"json", no_argument, NULL, OPT_JSON},
                                        {"no-progress", no_argument, NULL, OPT_NOPROGRESS},
                                        {"no-chunk-check", no_argument, NULL, OPT_NOCHUNKCHECK},
                                        {"config-only", no_argument, NULL, OPT_CONFIG_ONLY},
                                        {"dest", required_argument, NULL, OPT_DEST},
                                        {"help", no_argument, NULL, OPT_HELP},
                                        {0, 0, 0, 0}};

/* The options that only set a flag. */
static bool *flag_of(struct restore_args *a, int opt)
{
    switch (opt) {
    case OPT_EXCL:
        return &a->target.exclusive;
    case OPT_DELTA:
        return &a->delta;
    case OPT_FORCE:
        return &a->force;
    case OPT_START:
        return &a->start;
    case OPT_WAIT:
        return &a->wait;
    case OPT_JSON:
        return &a->json;
    case OPT_CONFIG_ONLY:
        return &a->config_only;
    case OPT_NOPROGRESS:
        return &a->no_progress;
    case OPT_NOCHUNKCHECK:
        return &a->no_chunk_check;
    default:
        return NULL;
    }
}

static int absolute_dir(const char *option, const char *arg)
{
    if (arg[0] == '/')
        return 0;
    return err_set(ERR_USAGE, "invalid %s \"%s\": expected an absolute directory", option, arg);
}

/* One option with its argument (shown: the option as given, for the message on an unknown
 * one): 0, 1 for --help (printed), negative with the error set. */
static int apply_option(struct restore_args *a, int opt, char *arg, const char *shown)
{
    bool *flag = flag_of(a, opt);
    if (flag) {
        *flag = true;
        return 0;
    }
    if (opt >= OPT_TIME && opt <= OPT_TARGET)
        return restore_target_set(&a->target, target_kinds[opt - OPT_TIME], arg);
    switch (opt) {
    case OPT_PGDATA:
        a->pgdata_arg = arg;
        return 0;
    case OPT_BACKUP:
        a->backup = strcmp(arg, "latest") ? arg : NULL;
        return 0;
    case OPT_ACTION:
        return restore_action_parse(arg, &a->target.action);
    case OPT_TIMELINE:
        return restore_timeline_parse(arg, &a->target.timeline);
    case OPT_MAP:
        return parse_map(a, arg);
    case OPT_TSDIR:
        a->ts_dir = arg;
        return absolute_dir("--tablespace-dir", arg);
    case OPT_WALDIR:
        a->waldir = arg;
        return absolute_dir("--waldir", arg);
    case OPT_REPO:
        a->repo = arg;
        return 0;
    case OPT_PORT:
        return cli_parse_port(arg, &a->port) < 0 ? err_code() : 0;
    case OPT_DEST:
        a->dest = arg;
        return 0;
    case OPT_HELP:
        printf("usage: pgark restore --pgdata DIR [--backup LABEL|latest] [TARGET] ...\n"
               "run \"pgark help restore\" for every option\n");
        return 1;
    default:
        err_set(ERR_USAGE, "unknown option or missing value \"%s\" for restore", shown);
        return err_hint("run \"pgark help restore\"");
    }
}

/* The combinations of options that make no sense. */
static int check_combinations(struct restore_args *a)
{
    if (a->config_only) {
        if (!a->dest || !a->dest[0])
            return err_set(ERR_USAGE, "restore --config-only needs --dest DIR");
        if (a->pgdata_arg || a->start || a->delta || a->force || a->target.kind)
            return err_set(ERR_USAGE, "restore --config-only takes --dest, --backup and --repo "
                                      "only");
        return 0;
    }
    if (a->dest)
        return err_set(ERR_USAGE, "--dest goes with --config-only (the data goes to --pgdata)");
    if (!a->pgdata_arg || !a->pgdata_arg[0])
        return err_set(ERR_USAGE, "restore needs --pgdata DIR");
    if ((a->port || a->wait) && !a->start)
        return err_set(ERR_USAGE, "--port and --wait go with --start");
    if (a->target.exclusive && a->target.kind != RESTORE_TARGET_TIME &&
        a->target.kind != RESTORE_TARGET_XID && a->target.kind != RESTORE_TARGET_LSN)
        return err_set(ERR_USAGE, "--target-exclusive needs --target-time, --target-xid or "
                                  "--target-lsn");
    if (a->target.action && (a->target.kind == RESTORE_TARGET_LATEST))
        return err_set(ERR_USAGE, "--target-action needs a recovery target (the server ignores "
                                  "it when replaying to the end of the archive)");
    a->pgdata = cli_absolute_path(a->pgdata_arg);
    return 0;
}

int restore_parse_args(struct restore_args *a, int argc, char **argv)
{
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int rc = apply_option(a, opt, optarg, argv[optind - 1]);
        if (rc != 0)
            return rc;
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for restore", argv[optind]);
    return check_combinations(a);
}

void restore_args_free(struct restore_args *a)
{
    restore_target_free(&a->target);
    for (size_t i = 0; i < a->nmap; i++)
        free(a->map[i].dir);
    free(a->map);
    free(a->pgdata);
}
