/* cli.c — what every command shares: loading the configuration once, choosing the
 * cluster, opening its repositories' storage. */
#include "pgark/cli.h"

#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/pg.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config *loaded;

const struct config *cli_config(struct cli_context *ctx)
{
    if (loaded)
        return loaded;
    const char *path = ctx->config_path ? ctx->config_path : config_default_path();
    if (config_load(path, &loaded) < 0) {
        loaded = NULL;
        return NULL;
    }
    /* The command line's --log-level wins over the file's. */
    if (!ctx->log_level_set)
        log_set_level(loaded->log_level);
    if (!ctx->log_format_set)
        log_set_format(loaded->log_format);
    cli_config_warnings(loaded, ctx->config_warn_level);
    return loaded;
}

static char *error_line(bool with_hint, bool clear)
{
    char *text = err_format();
    const char *hint = with_hint ? err_hint_text() : NULL;
    char *hint_copy = hint ? xstrdup(hint) : NULL;
    if (clear)
        err_clear();
    for (char *p; (p = strstr(text, "\n  ")) != NULL;) {
        p[0] = ';';
        p[1] = ' ';
        memmove(p + 2, p + 3, strlen(p + 3) + 1);
    }
    if (hint_copy) {
        char *both = xasprintf("%s (hint: %s)", text, hint_copy);
        free(text);
        free(hint_copy);
        text = both;
    }
    return text;
}

char *cli_error_line(bool with_hint)
{
    return error_line(with_hint, true);
}

char *cli_absolute_path(const char *path)
{
    if (path[0] == '/')
        return xstrdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return xstrdup(path);
    return xasprintf("%s/%s", cwd, path);
}

char *cli_error_text(void)
{
    return error_line(false, false);
}

int cli_json_args(int argc, char **argv, const char *command, bool *as_json)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int opt;
    *as_json = false;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'j':
            *as_json = true;
            break;
        case 'h':
            printf("usage: pgark %s [--json]\n", command);
            return 1;
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for %s", argv[optind - 1], command);
            return err_hint("run \"pgark help %s\"", command);
        }
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for %s", argv[optind], command);
    return 0;
}

int cli_parse_port(const char *text, int *out)
{
    char *end = NULL;
    long p = strtol(text, &end, 10);
    if (!*text || *end || p < 1 || p > 65535)
        return err_set(ERR_USAGE, "invalid --port \"%s\"", text);
    *out = (int)p;
    return 0;
}

json_t *cli_json_seconds(double seconds)
{
    return json_real(round(seconds * 1000) / 1000);
}

char *cli_json_text(const json_t *o)
{
    return json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
}

void cli_print_json(const json_t *o)
{
    char *text = cli_json_text(o);
    printf("%s\n", text ? text : "null");
    free(text);
}

void cli_config_warnings(const struct config *cfg, enum log_level level)
{
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        log_msg(level, "%s", cfg->warnings[i].message);
        if (cfg->warnings[i].hint)
            log_msg(level, "hint: %s", cfg->warnings[i].hint);
    }
}

const struct config *cli_config_loaded(void)
{
    return loaded;
}

void cli_config_free(void)
{
    config_free(loaded);
    loaded = NULL;
}

int cli_require_tls(const struct config *cfg, const struct config_cluster *cl)
{
    struct pg_transport t;

    if (!cfg->require_tls)
        return 0;
    if (pg_conninfo_transport(cl->conninfo, &t) < 0)
        return err_context("in the conninfo of cluster \"%s\"", cl->name);
    if (!t.tcp || pg_sslmode_authenticates(t.sslmode))
        return 0;
    err_set(ERR_CONFIG,
            "cluster \"%s\" connects to \"%s\" over TCP with sslmode \"%s\"%s, which does not "
            "authenticate the server; require_tls refuses anything weaker than verify-full",
            cl->name, t.host, t.sslmode,
            t.sslmode_set ? "" : " (libpq's default: nothing sets it)");
    return err_hint("add sslmode=verify-full (and sslrootcert=FILE, the CA that signed the "
                    "server's certificate) to the conninfo of cluster \"%s\", or connect "
                    "through a Unix socket (host=/var/run/postgresql)",
                    cl->name);
}

int cli_refuse_server_env(const struct config *cfg, const char *who, const char *instead)
{
    if (!cfg->env_vars[0])
        return 0;
    struct buf names = BUF_INIT;
    for (char **v = cfg->env_vars; *v; v++)
        buf_appendf(&names, "%s${%s}", v == cfg->env_vars ? "" : ", ", *v);
    err_set(ERR_CONFIG,
            "%s: \"%s\" reads %s from the environment, which the server it starts does "
            "not get: its restore_command (wal-fetch) could not load the configuration",
            who, cfg->path, (const char *)names.data);
    buf_free(&names);
    return err_hint("give secrets with KEY_file keys and other values in the file itself%s%s",
                    instead ? ", or " : "", instead ? instead : "");
}

const struct config_cluster *cli_cluster(struct cli_context *ctx)
{
    const struct config *cfg = cli_config(ctx);
    if (!cfg)
        return NULL;
    return config_cluster_find(cfg, ctx->cluster_name);
}

struct storage *cli_open_storage(const struct config_repo *repo)
{
    switch (repo->type) {
    case CONFIG_REPO_POSIX:
        return storage_posix_new(repo->name, repo->path);
    case CONFIG_REPO_S3:
        return cli_open_s3(repo);
    }
    err_set(ERR_CONFIG, "repository \"%s\" has an unknown type", repo->name);
    return NULL;
}
