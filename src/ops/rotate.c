/*
 * rotate.c — `pgark rotate-key`: the repositories' data keys wrapped under a new
 * passphrase (repo_rekey), or with --data-key a new data key for the objects written
 * from now on (repo_new_data_key), in every repository of the cluster or the one --repo
 * names.
 *
 * A new data key is made in each repository on its own (each has its own keys anyway):
 * a run killed half-way has given some repositories a new key and not the others, and
 * a re-run gives every repository one more; a repository that got two holds one that no
 * object uses, which the next expire drops.
 *
 * The new passphrase comes from --new-passphrase-file or $PGARK_NEW_PASSPHRASE; the
 * current one from the configuration. Each repository is done or not (one atomic
 * replacement of its repo.json), so a run that was killed or failed half-way leaves
 * some repositories under the new passphrase and the rest under the old one, and a
 * re-run with the same arguments completes it: a repository the new passphrase opens
 * already is left alone.
 */
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/repo.h"
#include "pgark/testhook.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEW_PASSPHRASE_MAX 4096

/* The new passphrase from path: one line, its newline dropped. Caller frees (zeroed). */
static char *read_new_passphrase(const char *path)
{
    FILE *f = fopen(path, "re");
    struct buf b = BUF_INIT;
    char chunk[512];
    size_t n;
    char *out = NULL;

    if (!f) {
        err_set_errno(ERR_CONFIG, errno, "cannot read the new passphrase file \"%s\"", path);
        goto out;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= NEW_PASSPHRASE_MAX)
        buf_append(&b, chunk, n);
    secure_zero(chunk, sizeof(chunk));
    if (ferror(f)) {
        err_set_errno(ERR_CONFIG, errno, "cannot read the new passphrase file \"%s\"", path);
        goto out;
    }
    if (b.len > NEW_PASSPHRASE_MAX) {
        err_set(ERR_CONFIG, "the new passphrase file \"%s\" is larger than %d bytes", path,
                NEW_PASSPHRASE_MAX);
        goto out;
    }
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.len--;
    if (b.len > 0 && b.data[b.len - 1] == '\r')
        b.len--;
    if (b.len == 0 || memchr(b.data, '\0', b.len)) {
        err_set(ERR_CONFIG, "the new passphrase file \"%s\" is %s", path,
                b.len ? "not text (a NUL byte)" : "empty");
        goto out;
    }
    out = xstrndup((const char *)b.data, b.len);
out:
    if (b.data)
        secure_zero(b.data, b.cap);
    buf_free(&b);
    if (f)
        fclose(f);
    return out;
}

#define USAGE                                                                                      \
    "usage: pgark rotate-key --new-passphrase-file FILE [--repo NAME]\n"                           \
    "       pgark rotate-key --data-key [--repo NAME]\n"

/* rotate-key's options: --data-key into *data_key, --repo into *only, the new passphrase
 * (from --new-passphrase-file or PGARK_NEW_PASSPHRASE; the caller wipes and frees it)
 * into *fresh. 0 to go on, 1 for --help (printed), 2 with a usage error set. */
static int parse_args(int argc, char **argv, bool *data_key, const char **only, char **fresh)
{
    static const struct option options[] = {{"new-passphrase-file", required_argument, NULL, 'f'},
                                            {"data-key", no_argument, NULL, 'd'},
                                            {"repo", required_argument, NULL, 'r'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    const char *file = NULL;
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'd':
            *data_key = true;
            break;
        case 'r':
            *only = optarg;
            break;
        case 'h':
            printf(USAGE);
            return 1;
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for rotate-key", argv[optind - 1]);
            err_hint("run \"pgark help rotate-key\"");
            return 2;
        }
    }
    if (optind < argc) {
        err_set(ERR_USAGE, "unexpected argument \"%s\" for rotate-key", argv[optind]);
        return 2;
    }
    const char *env = getenv("PGARK_NEW_PASSPHRASE");
    if (*data_key && file) {
        err_set(ERR_USAGE, "rotate-key takes --data-key or --new-passphrase-file, not both");
        err_hint("rotate the passphrase first, then run rotate-key --data-key");
        return 2;
    }
    if (*data_key) {
        /* nothing to read: the configured passphrase wraps the new key */
    } else if (file) {
        if (!(*fresh = read_new_passphrase(file)))
            return 2;
    } else if (env && *env) {
        *fresh = xstrdup(env);
    } else {
        err_set(ERR_USAGE, "rotate-key needs the new passphrase");
        err_hint("give --new-passphrase-file FILE, or set PGARK_NEW_PASSPHRASE");
        return 2;
    }
    return 0;
}

/* Rotate repository cr of cl (a new data key, or the passphrase to fresh) and say so:
 * 0 rotated, 1 already under the new passphrase, <0 with the error logged and cleared. */
static int rotate_one(const struct config *cfg, const struct config_cluster *cl,
                      const struct config_repo *cr, bool data_key, const char *fresh)
{
    struct repo_options ro;
    struct storage *s = NULL;
    int one = cli_repo_options(cfg, cl, CLI_REPO_READ, &ro);
    if (one == 0 && !(s = cli_open_storage(cr)))
        one = err_code();
    uint32_t id = 0;
    if (one == 0)
        one = data_key ? repo_new_data_key(s, &ro, &id) : repo_rekey(s, &ro, fresh);
    storage_free(s);
    if (one < 0) {
        char *text = err_format();
        log_error("%s", text);
        free(text);
        err_clear();
        return one;
    }
    if (data_key)
        printf("repository \"%s\": new data key %" PRIu32 ", current from now on\n", cr->name, id);
    else
        printf("repository \"%s\": %s\n", cr->name,
               one == 1 ? "already under the new passphrase" : "passphrase rotated");
    return one;
}

int cmd_rotate_key(struct cli_context *ctx, int argc, char **argv)
{
    const char *only = NULL;
    char *fresh = NULL;
    bool data_key = false;
    int rc;
    size_t done = 0, already = 0, failed = 0;

    if ((rc = parse_args(argc, argv, &data_key, &only, &fresh)) != 0) {
        rc = rc == 1 ? 0 : rc;
        goto out;
    }
    const struct config_cluster *cl = cli_cluster(ctx);
    if (!cl) {
        rc = 2;
        goto out;
    }
    const struct config *cfg = cli_config(ctx);
    bool named = false;
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *cr = config_cluster_repo(cfg, cl, i);
        if (only && strcmp(only, cr->name) != 0)
            continue;
        named = true;
        int one = rotate_one(cfg, cl, cr, data_key, fresh);
        if (one < 0) {
            failed++;
            continue;
        }
        if (one == 1)
            already++;
        else
            done++;
        testhook_pause("PGARK_TEST_REKEY_PAUSE_NEXT", "after rotating one repository");
    }
    if (!named) {
        err_set(ERR_CONFIG, "repository \"%s\" is not a repository of cluster \"%s\"", only,
                cl->name);
        rc = 2;
        goto out;
    }
    if (failed) {
        err_set(ERR_RUNTIME, "%zu of %zu repositories not rotated", failed,
                failed + done + already);
        err_hint("fix what is named above and run the same rotate-key again: it completes "
                 "the rest");
        rc = 1;
        goto out;
    }
    if (data_key)
        printf("now reload every receiver (SIGHUP): until then it writes under the key it "
               "holds\n");
    else
        printf("now put the new passphrase in encryption.passphrase_file and reload every "
               "receiver (SIGHUP)\n");
out:
    if (fresh) {
        secure_zero(fresh, strlen(fresh));
        free(fresh);
    }
    return rc;
}
