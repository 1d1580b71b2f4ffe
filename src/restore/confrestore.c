/*
 * confrestore.c — `restore --config-only` and the configuration a normal restore puts
 * beside the data (confsnap.h): which record, from which repository, written where.
 */
#include "restore_int.h"

#include "pgark/config.h"
#include "pgark/confsnap.h"
#include "pgark/error.h"
#include "pgark/log.h"
#include "pgark/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The record of label (NULL: the newest label of any repository) from the first
 * repository, in cli_repos order, that has it: 0 with *text and *repo, or negative. */
static int find_record(struct cli_repos *set, const char *label, char **text, size_t *repo,
                       char **found)
{
    char *newest = NULL;
    int rc = 0;

    *text = NULL;
    if (!label) {
        for (size_t i = 0; i < set->n; i++) {
            struct repo *r = cli_repos_get(set, i);
            char **names = NULL;
            size_t n = 0;
            if (!r || confsnap_list(r, &names, &n) < 0) {
                char *why = err_format();
                log_warn("could not list the configuration backups of repository \"%s\": %s",
                         set->r[i].conf->name, why);
                free(why);
                err_clear();
                continue;
            }
            if (n > 0 && (!newest || strcmp(names[n - 1], newest) > 0)) {
                free(newest);
                newest = xstrdup(names[n - 1]);
            }
            repo_record_names_free(names, n);
        }
        if (!newest) {
            rc = err_set(ERR_NOT_FOUND,
                         "no configuration backup of cluster \"%s\" in any repository",
                         set->cluster);
            err_hint("take one with \"pgark backup --config-only\" (every backup takes one)");
            goto out;
        }
        label = newest;
    }
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        if (!r) {
            err_clear();
            continue;
        }
        if (confsnap_get(r, label, text) == 0) {
            *repo = i;
            *found = xstrdup(label);
            goto out;
        }
        if (err_kind() != ERR_NOT_FOUND)
            goto fail;
        err_clear();
    }
    rc = err_set(ERR_NOT_FOUND, "no configuration backup \"%s\" of cluster \"%s\"", label,
                 set->cluster);
    err_hint("\"pgark info\" lists the backups; backups taken before pgark kept the "
             "configuration have none");
    goto out;
fail:
    rc = err_code();
out:
    free(newest);
    return rc;
}

int restore_config_only(struct cli_repos *set, const char *label, const char *dest)
{
    char *text = NULL, *found = NULL, *origin = NULL;
    size_t repo = 0, n = 0;
    int rc = find_record(set, label, &text, &repo, &found);
    if (rc < 0)
        return rc;
    origin = xasprintf("backup \"%s\" of cluster \"%s\" in repository \"%s\"", found, set->cluster,
                       set->r[repo].conf->name);
    rc = confsnap_write_tree(text, dest, origin, false, &n);
    if (rc < 0)
        err_context("while restoring the configuration of %s into \"%s\"", origin, dest);
    else
        printf("restored the configuration of %s into \"%s\": %zu files\n", origin, dest, n);
    free(origin);
    free(found);
    free(text);
    return rc;
}

int restore_config_beside(struct repo *r, const char *repo_name_shown, const char *cluster,
                          const char *label, const char *pgdata)
{
    char *text = NULL, *dir = NULL, *origin = NULL;
    size_t n = 0;
    int rc = confsnap_get(r, label, &text);
    if (rc < 0) {
        if (err_kind() == ERR_NOT_FOUND) {
            err_clear();
            log_info("backup \"%s\" has no configuration backup", label);
            return 0;
        }
        return rc;
    }
    dir = xasprintf("%s/" CONFSNAP_RESTORED_DIR, pgdata);
    origin = xasprintf("backup \"%s\" of cluster \"%s\" in repository \"%s\"", label, cluster,
                       repo_name_shown);
    rc = confsnap_write_tree(text, dir, origin, true, &n);
    if (rc == 0)
        log_info("the configuration of backup \"%s\" (%zu files) is in \"%s\"", label, n, dir);
    free(origin);
    free(dir);
    free(text);
    return rc;
}

int restore_refuse_config_only(struct cli_repos *set, const char *label)
{
    for (size_t i = 0; i < set->n; i++) {
        struct repo *r = cli_repos_get(set, i);
        char *text = NULL;
        if (!r || confsnap_get(r, label, &text) < 0) {
            err_clear();
            continue;
        }
        json_t *o = json_loads(text, 0, NULL);
        bool config_only = o && !strcmp(json_string_value(json_object_get(o, "kind")) ?: "",
                                        CONFSNAP_KIND_CONFIG_ONLY);
        json_decref(o);
        free(text);
        if (config_only) {
            err_set(ERR_USAGE,
                    "backup \"%s\" is a configuration-only backup: it holds no data directory "
                    "to restore",
                    label);
            return err_hint("write its files out with \"pgark restore --config-only --dest DIR "
                            "--backup %s\"; nothing was changed",
                            label);
        }
    }
    return 0;
}
