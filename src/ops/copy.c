/*
 * copy.c — `pgark copy --from A --to B [--backup LABEL] [--wal] [--json]`: bring to
 * repository B of a cluster the backups that A has and B lacks (all of them, or the one
 * named), with the WAL each needs, so that a repository that was down during a backup
 * catches up (issue 19, item 7).
 *
 * Order, as a backup writes: the running marker in B (an expire in B then leaves the
 * chunks it already holds alone), the chunks B lacks, the server's backup_manifest, the
 * WAL segments start..stop of the backup (and the history files of its timeline), and
 * manifest.json last, only while the marker's lease holds: a copy stopped at any point
 * leaves no manifest.json, and a new run completes it (what is there is skipped).
 *
 * Everything goes through the repository layer: each object is read (verified) from A
 * and written as B writes it, with B's compression and encryption. Unencrypted
 * repositories name chunks by their SHA-256, so the names and manifest.json are the
 * same in both, and a chunk B holds is not read at all. An encrypted repository names
 * chunks with its own key: each chunk is read from A to learn its name in B, and B gets
 * manifest.json written again with those names (and its own "encrypted" and
 * "stored_bytes").
 *
 * --wal also copies every complete segment and history file of A's archive that B
 * lacks (time indexes are built by B as it stores them; .partial copies are not taken).
 * Without --from and --to (catch_up): every repository gets what it lacks from the
 * others, for a timer to run; a repository that cannot be reached is reported and the
 * others go on.
 * Exit: 0 done (also when there was nothing to copy); 1 a failure (the error names the
 * object), or a repository that could not be caught up; 2 usage (unknown repository or
 * backup).
 */
#include "copy_int.h"
#include "ops_int.h"

#include "pgark/chunkset.h"
#include "pgark/cli.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/log.h"
#include "pgark/manifest.h"
#include "pgark/mem.h"
#include "pgark/ops.h"
#include "pgark/repo.h"
#include "pgark/storage.h"
#include "pgark/wal.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct copy_cmd {
    const char *from, *to, *backup;
    bool wal, json;
};

static int parse_args(int argc, char **argv, struct copy_cmd *a)
{
    static const struct option options[] = {{"from", required_argument, NULL, 'f'},
                                            {"to", required_argument, NULL, 't'},
                                            {"backup", required_argument, NULL, 'b'},
                                            {"wal", no_argument, NULL, 'w'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"help", no_argument, NULL, 'h'},
                                            {0, 0, 0, 0}};
    int opt;

    memset(a, 0, sizeof(*a));
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            a->from = optarg;
            break;
        case 't':
            a->to = optarg;
            break;
        case 'b':
            if (!repo_backup_label_valid(optarg))
                return err_set(ERR_USAGE, "invalid backup label \"%s\"", optarg);
            a->backup = optarg;
            break;
        case 'w':
            a->wal = true;
            break;
        case 'j':
            a->json = true;
            break;
        case 'h':
            printf("usage: pgark copy [--from REPO --to REPO] [--backup LABEL] [--wal] [--json]\n");
            return 1;
        case ':':
            err_set(ERR_USAGE, "option \"%s\" of copy needs a value", argv[optind - 1]);
            return err_hint("run \"pgark help copy\"");
        default:
            err_set(ERR_USAGE, "unknown option \"%s\" for copy", argv[optind - 1]);
            return err_hint("run \"pgark help copy\"");
        }
    }
    if (optind < argc)
        return err_set(ERR_USAGE, "unexpected argument \"%s\" for copy", argv[optind]);
    if (!a->from != !a->to) {
        err_set(ERR_USAGE, "copy needs both --from and --to, or neither");
        return err_hint("pgark copy [--from REPO --to REPO] [--backup LABEL] [--wal]");
    }
    if (a->from && strcmp(a->from, a->to) == 0)
        return err_set(ERR_USAGE, "copy --from and --to name the same repository \"%s\"", a->from);
    return 0;
}

static const struct config_repo *cluster_repo(const struct config *cfg,
                                              const struct config_cluster *cl, const char *name)
{
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *r = config_cluster_repo(cfg, cl, i);
        if (strcmp(r->name, name) == 0)
            return r;
    }
    struct buf names = BUF_INIT;
    for (size_t i = 0; i < cl->nrepos; i++)
        buf_appendf(&names, "%s\"%s\"", i ? ", " : "", config_cluster_repo(cfg, cl, i)->name);
    err_set(ERR_USAGE, "repository \"%s\" is not a repository of cluster \"%s\"", name, cl->name);
    err_hint("the cluster's repositories are %s", names.data ? (char *)names.data : "none");
    buf_free(&names);
    return NULL;
}

/* --- the command ------------------------------------------------------------------------ */

/* The backups of A that B lacks (or only `only`), into B; their labels appended to done.
 * `only` missing from A is ERR_USAGE. */
static int copy_backups(struct repo *a, struct repo *b, const char *only, bool *found_only,
                        struct copy_totals *tot, json_t *done)
{
    struct repo_backup *list = NULL;
    size_t nlist = 0;
    struct chunkset *held = NULL;
    int rc;

    if ((rc = repo_backup_list(a, &list, &nlist)) < 0) {
        err_context("while listing the backups of repository \"%s\"", repo_name(a));
        goto out;
    }
    for (size_t i = 0; i < nlist; i++) {
        const char *label = list[i].label;
        if (only && strcmp(label, only) != 0)
            continue;
        if (only)
            *found_only = true;
        int e = repo_backup_exists(b, label);
        if (e < 0) {
            rc = e;
            goto out;
        }
        if (e > 0) {
            log_detail("backup \"%s\" is in repository \"%s\" already", label, repo_name(b));
            continue;
        }
        if (!held) {
            held = chunkset_new();
            if ((rc = repo_chunk_list(b, chunkset_add_listed, held)) < 0 &&
                err_kind() != ERR_NOT_FOUND) {
                err_context("while listing the chunks of repository \"%s\"", repo_name(b));
                goto out;
            }
            err_clear();
            rc = 0;
        }
        struct copy_totals before = *tot;
        log_info("copying backup \"%s\" from repository \"%s\" to \"%s\"", label, repo_name(a),
                 repo_name(b));
        if ((rc = copy_backup(a, b, label, held, tot)) < 0)
            goto out;
        log_info("backup \"%s\" copied to repository \"%s\": %llu chunks copied, %llu there "
                 "already, %llu WAL segments copied",
                 label, repo_name(b),
                 (unsigned long long)(tot->chunks_copied - before.chunks_copied),
                 (unsigned long long)(tot->chunks_present - before.chunks_present),
                 (unsigned long long)(tot->wal_copied - before.wal_copied));
        json_array_append_new(done, json_pack("{s:s, s:s, s:s}", "label", label, "from",
                                              repo_name(a), "to", repo_name(b)));
    }
out:
    chunkset_free(held);
    repo_backup_list_free(list, nlist);
    return rc;
}

static void print_result(json_t *o)
{
    json_t *done = json_object_get(o, "backups_copied");
    json_t *failed = json_object_get(o, "failed_repositories");
    size_t i;
    json_t *l;

    json_array_foreach(done, i, l)
    {
        printf("copied backup \"%s\" from repository \"%s\" to \"%s\"\n",
               json_string_value(json_object_get(l, "label")),
               json_string_value(json_object_get(l, "from")),
               json_string_value(json_object_get(l, "to")));
    }
    json_array_foreach(failed, i, l)
    {
        printf("repository \"%s\" FAILED: %s\n", json_string_value(json_object_get(l, "name")),
               json_string_value(json_object_get(l, "error")));
    }
    long long wal = json_integer_value(json_object_get(o, "wal_segments_copied"));
    if (json_array_size(done) == 0 && wal == 0 && json_array_size(failed) == 0) {
        printf("nothing to copy\n");
        return;
    }
    printf("  %lld chunks copied, %lld there already; %lld WAL segments copied\n",
           (long long)json_integer_value(json_object_get(o, "chunks_copied")),
           (long long)json_integer_value(json_object_get(o, "chunks_present")), wal);
}

/*
 * Without --from and --to: every repository of the cluster gets the backups it lacks
 * from the others (in configuration order), for a timer to run. A repository that
 * cannot be opened is reported and the others go on; exit 1 then.
 */
static int catch_up(const struct config *cfg, const struct config_cluster *cl,
                    const struct copy_cmd *args, struct copy_totals *tot, json_t *done,
                    json_t *failed)
{
    struct cli_repo *r = xcalloc(cl->nrepos + 1, sizeof(*r));
    const struct repo_identity *id = NULL;
    bool found_only = false;
    int rc = 0;

    /* Those that exist first, for the identity a missing one is created with. Each is
     * opened to be written (CLI_REPO_ARCHIVE: the configured compression), as it may be. */
    for (size_t i = 0; i < cl->nrepos; i++) {
        const struct config_repo *c = config_cluster_repo(cfg, cl, i);
        if (cli_repo_open(cfg, cl, c, CLI_REPO_ARCHIVE, NULL, &r[i]) == 0) {
            id = id ? id : repo_identity(r[i].repo);
            continue;
        }
        cli_repo_close(&r[i]);
        if (err_kind() == ERR_NOT_FOUND) { /* not created yet */
            err_clear();
            continue;
        }
        err_context("while opening repository \"%s\"", c->name);
        char *line = cli_error_line(false);
        log_error("%s", line);
        json_array_append_new(failed, json_pack("{s:s, s:s}", "name", c->name, "error", line));
        free(line);
    }
    for (size_t i = 0; id && i < cl->nrepos; i++) {
        const struct config_repo *c = config_cluster_repo(cfg, cl, i);
        if (r[i].repo)
            continue;
        bool reported = false;
        for (size_t k = 0; k < json_array_size(failed); k++)
            reported =
                reported ||
                !strcmp(json_string_value(json_object_get(json_array_get(failed, k), "name")),
                        c->name);
        if (reported)
            continue;
        if (cli_repo_open(cfg, cl, c, CLI_REPO_ARCHIVE, id, &r[i]) < 0) {
            cli_repo_close(&r[i]);
            err_context("while creating repository \"%s\"", c->name);
            char *line = cli_error_line(false);
            log_error("%s", line);
            json_array_append_new(failed, json_pack("{s:s, s:s}", "name", c->name, "error", line));
            free(line);
        }
    }
    for (size_t to = 0; to < cl->nrepos; to++) {
        for (size_t from = 0; from < cl->nrepos; from++) {
            if (from == to || !r[from].repo || !r[to].repo)
                continue;
            if (copy_backups(r[from].repo, r[to].repo, args->backup, &found_only, tot, done) < 0 ||
                (args->wal && copy_all_wal(r[from].repo, r[to].repo, cl->name, tot) < 0)) {
                err_context("while copying from repository \"%s\" to \"%s\"",
                            repo_name(r[from].repo), repo_name(r[to].repo));
                char *line = cli_error_line(false);
                log_error("%s", line);
                json_array_append_new(
                    failed, json_pack("{s:s, s:s}", "name", repo_name(r[to].repo), "error", line));
                free(line);
                cli_repo_close(&r[to]); /* no more for it this run */
            }
        }
    }
    if (args->backup && !found_only) {
        err_set(ERR_USAGE, "backup \"%s\" is in no repository of cluster \"%s\"", args->backup,
                cl->name);
        rc = err_code();
    }
    for (size_t i = 0; i < cl->nrepos; i++)
        cli_repo_close(&r[i]);
    free(r);
    return rc;
}

int cmd_copy(struct cli_context *ctx, int argc, char **argv)
{
    struct copy_cmd args;
    struct cli_repo ra = {0}, rb = {0};
    struct copy_totals tot = {0};
    json_t *done = json_array(), *failed = json_array();
    int rc = parse_args(argc, argv, &args);

    if (rc != 0) {
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    rc = 2;
    const struct config_cluster *cl = cli_cluster(ctx);
    const struct config *cfg = cl ? cli_config(ctx) : NULL;
    if (!cl)
        goto out;
    bool pair = args.from && args.to;
    const struct config_repo *ca = pair ? cluster_repo(cfg, cl, args.from) : NULL;
    const struct config_repo *cb = ca ? cluster_repo(cfg, cl, args.to) : NULL;
    if (pair && !cb)
        goto out;
    if (!pair) {
        if (catch_up(cfg, cl, &args, &tot, done, failed) < 0)
            goto fail;
    } else {
        bool found = false;
        if (cli_repo_open(cfg, cl, ca, CLI_REPO_READ, NULL, &ra) < 0) {
            err_context("while opening repository \"%s\"", ca->name);
            goto fail;
        }
        /* B is created for A's system when it does not exist yet, and must belong to it. */
        if (cli_repo_open(cfg, cl, cb, CLI_REPO_ARCHIVE, repo_identity(ra.repo), &rb) < 0) {
            err_context("while opening repository \"%s\"", cb->name);
            goto fail;
        }
        if (copy_backups(ra.repo, rb.repo, args.backup, &found, &tot, done) < 0)
            goto fail;
        if (args.backup && !found) {
            err_set(ERR_USAGE, "backup \"%s\" is not in repository \"%s\"", args.backup, ca->name);
            err_hint("\"pgark info\" lists the backups of each repository");
            goto fail;
        }
        if (args.wal && copy_all_wal(ra.repo, rb.repo, cl->name, &tot) < 0) {
            err_context("while copying the WAL archive of repository \"%s\"", ca->name);
            goto fail;
        }
    }

    json_t *o =
        json_pack("{s:s, s:O, s:O, s:I, s:I, s:I, s:I, s:I}", "cluster", cl->name, "backups_copied",
                  done, "failed_repositories", failed, "chunks_copied",
                  (json_int_t)tot.chunks_copied, "chunks_present", (json_int_t)tot.chunks_present,
                  "stored_bytes", (json_int_t)tot.stored_bytes, "wal_segments_copied",
                  (json_int_t)tot.wal_copied, "wal_segments_present", (json_int_t)tot.wal_present);
    if (args.json)
        cli_print_json(o);
    else
        print_result(o);
    json_decref(o);
    rc = json_array_size(failed) ? 1 : 0;
    goto out;
fail:
    if (pair)
        err_context("copy from repository \"%s\" to \"%s\" failed", args.from, args.to);
    else
        err_context("copy between the repositories of cluster \"%s\" failed", cl->name);
    rc = err_exit_code();
out:
    json_decref(done);
    json_decref(failed);
    cli_repo_close(&rb);
    cli_repo_close(&ra);
    return rc;
}
